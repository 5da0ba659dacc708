//! Our own slot map: refreshed from `CLUSTER SLOTS` of a known master or a seed node, and the
//! one-command-on-one-node call that refresh and the outage check share.

use std::sync::Arc;

use redis::Value;

use super::{FailureKind, Store, StoreError, admin};
use crate::slot::Slot;

impl Store {
    /// One command on one node, bounded by the response timeout.
    pub(super) async fn on_node(
        &self,
        node: &Arc<str>,
        command: redis::Cmd,
    ) -> Result<Value, StoreError> {
        let settings = &self.inner.settings;
        let call = async {
            let mut connection = self.inner.nodes.connection(node).await?;
            command
                .query_async::<Value>(&mut connection)
                .await
                .map_err(StoreError::from)
        };
        match tokio::time::timeout(settings.connect_timeout + settings.response_timeout, call).await
        {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                if error.kind.node_unreachable() {
                    self.inner.nodes.forget(node);
                }
                Err(error)
            }
            Err(_) => {
                self.inner.nodes.forget(node);
                Err(StoreError::new(FailureKind::Timeout, "timed out"))
            }
        }
    }

    /// Refreshes the slot map from `CLUSTER SLOTS` of the first known master (or seed node)
    /// that answers — when it is stale, or always with `force`. One refresh at a time.
    pub(super) async fn refresh_owners(&self, force: bool) {
        let inner = &self.inner;
        if !force && !inner.health.owners_stale() {
            return;
        }
        let Ok(_single) = inner.refreshing.try_lock() else {
            return;
        };
        let mut candidates = inner.health.masters();
        candidates.extend(inner.nodes.seeds());
        for node in candidates {
            let reply = self
                .on_node(&node, redis::cmd("CLUSTER").arg("SLOTS").clone())
                .await;
            if let Ok(reply) = reply {
                let ranges = slot_ranges(&reply);
                if !ranges.is_empty() {
                    inner.health.set_owners(&ranges);
                    return;
                }
            }
        }
    }
}

/// `(first, last, master host:port)` ranges of a `CLUSTER SLOTS` reply; none when the reply
/// is not understood.
pub fn slot_ranges(reply: &Value) -> Vec<(Slot, Slot, String)> {
    admin::parse_cluster_slots(reply)
        .unwrap_or_default()
        .into_iter()
        .map(|range| {
            (
                range.first,
                range.last,
                format!("{}:{}", range.host, range.port),
            )
        })
        .collect()
}
