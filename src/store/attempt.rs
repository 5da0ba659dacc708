//! One attempt of a unit: its `FCALL` on the master our slot map names, following
//! `MOVED`/`ASK`, then — when replicas must acknowledge — the connection's coalesced `WAIT`
//! (see `replication.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use redis::Value;

use super::nodes::NodeConnection;
use super::{FailureKind, Store, StoreError, wire};
use crate::plan::{SlotUnit, UnitAnswer};

impl Store {
    /// The unit's `FCALL`, after `ASKING` when `asking`. Error replies come back as values,
    /// unwrapped, so `MOVED`/`ASK` can be followed.
    pub(super) fn unit_pipeline(&self, unit: &SlotUnit, asking: bool) -> redis::Pipeline {
        let settings = &self.inner.settings;
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        if asking {
            pipe.cmd("ASKING").ignore();
        }
        pipe.add_command(wire::unit_command(unit, &settings.library.function));
        pipe
    }

    /// One attempt: `pipeline` (see [`Store::unit_pipeline`]) on the slot's master, following
    /// `MOVED`/`ASK`; then decoding the reply and, with `wait_replicas`, the `WAIT` that covers
    /// it on the connection it came back on.
    pub(super) async fn call(
        &self,
        pipeline: &redis::Pipeline,
        unit: &SlotUnit,
    ) -> Result<UnitAnswer, StoreError> {
        let inner = &self.inner;
        let settings = &inner.settings;
        let mut node = match inner.health.owner(unit.slot) {
            Some(node) => node,
            None => {
                self.refresh_owners(true).await;
                inner.health.owner(unit.slot).ok_or_else(|| {
                    StoreError::new(FailureKind::SlotDown, "no master serves the slot")
                })?
            }
        };
        // After an `ASK`: the same unit behind `ASKING`, for the one node that asked.
        let mut asking: Option<redis::Pipeline> = None;
        for _ in 0..=MAX_REDIRECTS {
            inner.stats.calls.fetch_add(1, Ordering::Relaxed);
            let pipe = asking.as_ref().unwrap_or(pipeline);
            let (replies, connection) = match self.send(&node, pipe).await {
                Ok(sent) => sent,
                Err(Sent::Redirect { to, ask }) => {
                    if !ask {
                        inner.health.set_owner(unit.slot, &to);
                    }
                    node = to;
                    asking = ask.then(|| self.unit_pipeline(unit, true));
                    continue;
                }
                Err(Sent::Failed(error)) => return Err(error),
            };
            let reply = replies.into_iter().last().unwrap_or(Value::Nil);
            let answer = wire::decode_reply(unit, reply)
                .map_err(|e| StoreError::new(FailureKind::Script, e.0))?;
            if settings.wait_replicas > 0 {
                let waited = connection
                    .replication
                    .wait(
                        &connection.connection,
                        settings.wait_replicas,
                        settings.wait_timeout,
                        &inner.stats.replication_waits,
                    )
                    .await;
                if let Err(error) = &waited
                    && matches!(error.kind, FailureKind::Connection | FailureKind::Timeout)
                {
                    inner.nodes.forget(&node);
                }
                waited?;
            }
            return Ok(answer);
        }
        Err(StoreError::new(
            FailureKind::Redirect,
            format!("more than {MAX_REDIRECTS} redirects"),
        ))
    }

    /// Sends a pipeline to `node`; a `MOVED`/`ASK` reply becomes [`Sent::Redirect`]. Returns
    /// the replies and the connection they came back on.
    async fn send(
        &self,
        node: &Arc<str>,
        pipe: &redis::Pipeline,
    ) -> Result<(Vec<Value>, NodeConnection), Sent> {
        let settings = &self.inner.settings;
        let nodes = &self.inner.nodes;
        let call = async {
            let connection = nodes.node_connection(node).await.map_err(Sent::Failed)?;
            let replies: Vec<Value> = pipe
                .query_async(&mut connection.connection.clone())
                .await
                .map_err(Sent::from)?;
            for reply in &replies {
                if let Value::ServerError(error) = reply {
                    return Err(Sent::from(redis::RedisError::from(error.clone())));
                }
            }
            Ok((replies, connection))
        };
        // redis-rs has its own response timeout; this guards connecting and the reply together.
        let deadline = settings.connect_timeout + settings.response_timeout;
        let result = tokio::time::timeout(deadline, call)
            .await
            .unwrap_or_else(|_| {
                Err(Sent::Failed(StoreError::new(
                    FailureKind::Timeout,
                    "unit call timed out",
                )))
            });
        if let Err(Sent::Failed(error)) = &result
            && matches!(error.kind, FailureKind::Connection | FailureKind::Timeout)
        {
            nodes.forget(node);
        }
        result
    }
}

/// Redirects followed within one attempt.
const MAX_REDIRECTS: usize = 5;

/// Why a pipeline did not come back with replies.
enum Sent {
    /// `MOVED` (the slot lives on `to` now) or `ASK` (this once, on `to`, after `ASKING`).
    Redirect { to: Arc<str>, ask: bool },
    /// Anything else.
    Failed(StoreError),
}

impl From<redis::RedisError> for Sent {
    fn from(error: redis::RedisError) -> Sent {
        match error.redirect_node() {
            Some((to, _slot)) => Sent::Redirect {
                to: Arc::from(to),
                ask: error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::Ask),
            },
            None => Sent::Failed(StoreError::from(error)),
        }
    }
}
