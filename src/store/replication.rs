//! `WAIT` coalesced per connection: one `WAIT` answers every unit whose `FCALL` reply came
//! back on that connection before the `WAIT` was sent (group commit).
//!
//! `WAIT` blocks the client that sends it until its earlier writes reach the replicas, and a
//! node's units share one multiplexed connection: a `WAIT` after every unit's `FCALL` made the
//! node run them one replication round trip at a time (measured: a worker with
//! `wait_replicas = 1` finished ~25 records/s of 600/s offered, and kept up without it). Here a
//! unit sends its `FCALL` alone, then asks the connection's [`ReplicationBarrier`]: while a
//! round (`WAIT`) is in flight, the units that arrive queue behind it and the first of them
//! sends the next round for all. Every unit is covered by a `WAIT` sent after its own reply, on
//! the same connection — what `WAIT`'s guarantee needs — at the cost of at most two rounds.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::Value;
use redis::aio::MultiplexedConnection;

use super::{FailureKind, StoreError};

/// The `WAIT` rounds of one connection (see the module doc). Belongs to exactly one
/// connection: a reconnect makes a new one.
#[derive(Default)]
pub struct ReplicationBarrier {
    /// Held by the unit sending a round; fair, so queued units go in arrival order.
    leader: tokio::sync::Mutex<()>,
    /// Rounds started so far.
    started: AtomicU64,
    /// The last finished round and what its `WAIT` answered.
    last: Mutex<Option<(u64, Result<(), StoreError>)>>,
}

impl ReplicationBarrier {
    /// Returns once a `WAIT replicas timeout`, sent on `connection` after this call began,
    /// was answered by at least `replicas` replicas; its error otherwise (not replicated in
    /// time: retryable; the connection failed: as its error says). A round this call sends
    /// is counted in `rounds`.
    pub async fn wait(
        &self,
        connection: &MultiplexedConnection,
        replicas: u32,
        timeout: Duration,
        rounds: &AtomicU64,
    ) -> Result<(), StoreError> {
        let arrived = self.started.load(Ordering::SeqCst);
        let _leader = self.leader.lock().await;
        if let Some((round, result)) = &*self.last.lock().unwrap_or_else(|e| e.into_inner())
            && *round > arrived
        {
            // A round that started after this unit's reply has finished: it covers the unit.
            return result.clone();
        }
        let round = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        rounds.fetch_add(1, Ordering::Relaxed);
        let mut connection = connection.clone();
        let reply: Result<Value, redis::RedisError> = redis::cmd("WAIT")
            .arg(replicas)
            .arg(timeout.as_millis() as u64)
            .query_async(&mut connection)
            .await;
        let result = match reply {
            Ok(reply) => check_replicated(reply, replicas),
            // The node answered WAIT with an error: it stopped being a master after the unit's
            // reply (a failover between the two: `ERR WAIT cannot be used with replica
            // instances`, or `UNBLOCKED` while WAIT waited). The unit goes again to the
            // slot's master, where apply-once skips what was applied.
            Err(error) if matches!(error.kind(), redis::ErrorKind::Server(_)) => Err(
                StoreError::new(FailureKind::MasterDown, format!("WAIT refused: {error}")),
            ),
            Err(error) => Err(StoreError::from(error)),
        };
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((round, result.clone()));
        result
    }
}

/// `WAIT`'s reply: at least `wanted` replicas acknowledged, or why not.
fn check_replicated(reply: Value, wanted: u32) -> Result<(), StoreError> {
    match reply {
        Value::Int(acknowledged) if acknowledged >= i64::from(wanted) => Ok(()),
        Value::Int(acknowledged) => Err(StoreError::new(
            FailureKind::NotReplicated,
            format!("WAIT: {acknowledged} of {wanted} replicas acknowledged"),
        )),
        Value::ServerError(error) => Err(StoreError::new(
            FailureKind::MasterDown,
            format!("WAIT refused: {error:?}"),
        )),
        other => Err(StoreError::new(
            FailureKind::MasterDown,
            format!("WAIT: unexpected reply {other:?}"),
        )),
    }
}
