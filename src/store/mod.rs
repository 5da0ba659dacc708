//! The Redis side: the cluster client, the `fds` function library, and running slot units
//! with retries, a per-slot budget and per-slot ordering.
//!
//! - [`admin`]: Redis's administrative replies (`INFO`, `CLUSTER NODES|SLOTS|SHARDS`), parsed.
//! - [`wire`]: the unit ↔ `FCALL` contract with `fds.lua`.
//! - [`error`]: one classification of every Redis failure ([`FailureKind`]).
//! - [`health`]: which slots are failing, and whether anything succeeded lately (is the whole
//!   cluster down, or only some slots?).
//! - [`retry`]: one unit's retry state (attempts, failures, backoff, budget), pure.
//! - `nodes`: a connection per node; units go to the master our slot map names, so a dead
//!   node fails only its own units (redis-rs's cluster connection can stall every request
//!   while it repairs its map).
//! - [`Store`]: connects, loads the library on every master, and runs units (this file:
//!   ordering per slot, the retry loop); `attempt.rs`: one attempt (`FCALL`, `MOVED` and `ASK`,
//!   then `WAIT`); `replication.rs`: `WAIT` coalesced per connection; `slot_map.rs`: our slot map from `CLUSTER SLOTS`;
//!   `outage.rs`: whole cluster down or the slot's node failed; `connect.rs`: the cluster
//!   client and why a start failed.
//! - [`tls`]: the CA and client certificate for `rediss://` nodes; [`acl`]: the least-privilege
//!   ACL rule for the worker's Redis user.
//!
//! Units of one slot run in submission order (a unit waits for the previous unit of its slot),
//! so an entity's apply-once marks only ever see increasing offsets; units of different slots
//! run concurrently up to `max_inflight_units`.

pub mod acl;
pub mod admin;
mod attempt;
mod connect;
pub mod error;
pub mod health;
mod nodes;
mod outage;
mod replication;
pub mod retry;
mod slot_map;
pub mod tls;
pub mod wire;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared, join_all};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use redis::Value;
use redis::cluster_async::ClusterConnection;
use tokio::sync::{Semaphore, oneshot};

pub use connect::connect_cluster;
pub use error::{FailureKind, StoreError};
pub use health::Health;
pub use nodes::Nodes;
pub use retry::{Outage, RetryPolicy, UnitRetry};
pub use slot_map::slot_ranges;
pub use tls::TlsFiles;

use crate::metrics::{ErrorLabels, Metrics};
use crate::plan::{SlotUnit, UnitAnswer};
use crate::slot::{SLOT_COUNT, Slot};

/// Connection and execution settings (built from the `redis` config section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// Seed node URLs.
    pub nodes: Vec<String>,
    /// ACL user name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// CA and client certificate files for `rediss://` nodes (none set: web PKI roots).
    pub tls: TlsFiles,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Per-request response timeout.
    pub response_timeout: Duration,
    /// Units in flight at once.
    pub max_inflight_units: usize,
    /// Retry behaviour.
    pub retry: RetryPolicy,
    /// `WAIT <replicas>` after each unit; 0 = off.
    pub wait_replicas: u32,
    /// `WAIT` timeout.
    pub wait_timeout: Duration,
    /// Units per second (`governor`); 0 = unlimited.
    pub max_units_per_second: u32,
    /// The function library, under its configured name.
    pub library: wire::Library,
}

/// A unit that could not be applied: everything a dead-letter record says about it.
#[derive(Debug, Clone)]
pub struct UnitFailure {
    /// Classification of the last error.
    pub kind: FailureKind,
    /// Text of the last error.
    pub message: String,
    /// The unit's slot.
    pub slot: Slot,
    /// The node that served the slot when the unit gave up, if known.
    pub node: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// When the first attempt failed.
    pub first_failure: SystemTime,
    /// When the last attempt failed.
    pub last_failure: SystemTime,
}

/// Counters of what the store did (exported as metrics by the pipeline).
#[derive(Debug, Default)]
pub struct StoreStats {
    /// `FCALL`s sent, including retries.
    pub calls: std::sync::atomic::AtomicU64,
    /// Retries after a failure.
    pub retries: std::sync::atomic::AtomicU64,
    /// Units given up on.
    pub failed_units: std::sync::atomic::AtomicU64,
    /// `WAIT`s sent (with `wait_replicas`: one per round of a connection, not per unit).
    pub replication_waits: std::sync::atomic::AtomicU64,
}

type Tail = Shared<oneshot::Receiver<()>>;

struct Inner {
    /// The cluster connection, for commands to every master and for other tools' reads.
    connection: ClusterConnection,
    /// Unit traffic: one connection per node.
    nodes: Nodes,
    /// One slot-map refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
    /// The last outage check: when, for which node's failure, and the answer.
    outage_check: Mutex<Option<(Instant, Arc<str>, Outage)>>,
    settings: StoreSettings,
    inflight: Semaphore,
    retry_limiter: DefaultDirectRateLimiter,
    unit_limiter: Option<DefaultDirectRateLimiter>,
    health: Health,
    metrics: Option<Metrics>,
    tails: Mutex<Vec<Option<Tail>>>,
    stats: StoreStats,
}

/// The connected store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
    /// Connects to the cluster and loads the function library on every master.
    pub async fn connect(settings: StoreSettings) -> Result<Store, StoreError> {
        Store::connect_with_metrics(settings, None).await
    }

    /// Like [`Store::connect`], counting retries in `metrics`.
    pub async fn connect_with_metrics(
        settings: StoreSettings,
        metrics: Option<Metrics>,
    ) -> Result<Store, StoreError> {
        let connection = connect_cluster(&settings).await?;
        let per_second = |n: u32| std::num::NonZeroU32::new(n).map(Quota::per_second);
        let retry_quota = per_second(settings.retry.max_retries_per_second)
            .unwrap_or_else(|| Quota::per_second(std::num::NonZeroU32::MAX));
        let store = Store {
            inner: Arc::new(Inner {
                connection,
                nodes: Nodes::new(&settings)?,
                refreshing: tokio::sync::Mutex::new(()),
                outage_check: Mutex::new(None),
                inflight: Semaphore::new(settings.max_inflight_units.max(1)),
                retry_limiter: RateLimiter::direct(retry_quota),
                unit_limiter: per_second(settings.max_units_per_second).map(RateLimiter::direct),
                health: Health::new(),
                metrics,
                tails: Mutex::new(vec![None; SLOT_COUNT as usize]),
                stats: StoreStats::default(),
                settings,
            }),
        };
        store.load_library().await.map_err(|e| StoreError {
            message: format!("FUNCTION LOAD: {}", e.message),
            ..e
        })?;
        store.refresh_owners(true).await;
        Ok(store)
    }

    /// `FUNCTION LOAD REPLACE` of `fds.lua` on every master (replicas get it by replication).
    pub async fn load_library(&self) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let _: Value = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(&self.inner.settings.library.source)
            .query_async(&mut connection)
            .await?;
        Ok(())
    }

    /// A clone of the cluster connection, for reads outside units (lookups, monitoring).
    pub fn connection(&self) -> ClusterConnection {
        self.inner.connection.clone()
    }

    /// What the store has done so far.
    pub fn stats(&self) -> &StoreStats {
        &self.inner.stats
    }

    /// Slot health shared by all units.
    pub fn health(&self) -> &Health {
        &self.inner.health
    }

    /// Submits a batch's units. Must be called in batch order: each unit is queued behind the
    /// previous submitted unit of the same slot. The returned future runs them (concurrently
    /// across slots) and yields one result per unit, in order.
    pub fn submit(
        &self,
        units: Vec<SlotUnit>,
    ) -> BoxFuture<'static, Vec<(SlotUnit, Result<UnitAnswer, UnitFailure>)>> {
        let mut runs = Vec::with_capacity(units.len());
        {
            let mut tails = self
                .inner
                .tails
                .lock()
                .expect("tails lock is never poisoned");
            for unit in units {
                let (done, done_signal) = oneshot::channel::<()>();
                let previous = tails[unit.slot as usize].replace(done_signal.shared());
                let store = self.clone();
                runs.push(async move {
                    if let Some(previous) = previous {
                        let _ = previous.await;
                    }
                    // Boxed: a batch holds thousands of these futures, most of them waiting
                    // for their turn, and unboxed each would carry a whole attempt's state.
                    let result = Box::pin(store.execute(&unit)).await;
                    drop(done);
                    (unit, result)
                });
            }
        }
        join_all(runs).boxed()
    }

    /// Runs one unit now, with retries within the budget.
    ///
    /// The in-flight permit is held per attempt, not across backoff sleeps, so units waiting
    /// out a failover do not starve healthy slots.
    pub async fn execute(&self, unit: &SlotUnit) -> Result<UnitAnswer, UnitFailure> {
        let inner = &self.inner;
        if let Some(limiter) = &inner.unit_limiter {
            limiter.until_ready().await;
        }
        // Built once: every attempt sends the same bytes (only an `ASK` needs another pipeline).
        let pipeline = self.unit_pipeline(unit, false);
        let mut retry = UnitRetry::new(&inner.settings.retry);
        let mut last_kind = FailureKind::Connection;
        loop {
            // The in-flight permit first, then the probe turn: a suspect node's probe is out
            // only while its request is (not while it queues for a permit behind a backlog,
            // every other unit of the node waiting on it meanwhile).
            let permit = inner
                .inflight
                .acquire()
                .await
                .expect("semaphore is never closed");
            // The node the attempt goes to (its outcome is booked there), if it may go; the
            // turn ends the probe if this future is dropped before the outcome is booked.
            let turn = inner
                .health
                .may_attempt(unit.slot)
                .map(|node| inner.health.turn(node));
            let attempt = if turn.is_some() {
                retry.attempt();
                Box::pin(self.call(&pipeline, unit)).await
            } else {
                Err(StoreError::new(
                    last_kind,
                    "node unreachable: waiting for its next probe",
                ))
            };
            drop(permit);
            let attempted = turn.map(|turn| turn.book());
            let error = match attempt {
                Ok(answer) => {
                    if let Some(node) = &attempted {
                        inner.health.record_success(node);
                    }
                    return Ok(answer);
                }
                Err(error) => error,
            };
            last_kind = error.kind;
            if let Some(node) = &attempted {
                if error.kind.node_unreachable() {
                    inner.health.mark_suspect(node);
                } else {
                    inner.health.end_probe(node);
                }
            }
            retry.failed(SystemTime::now());
            if error.kind.cluster_wide() {
                inner.health.record_cluster_down();
            }
            self.refresh_owners(false).await;
            let give_up = |retry: &UnitRetry| {
                let node = inner.health.owner(unit.slot).map(|n| n.to_string());
                self.failed(retry.give_up(unit.slot, error.kind, &error.message, node))
            };
            if !error.kind.retryable() {
                return Err(give_up(&retry));
            }
            if error.kind == FailureKind::FunctionMissing {
                let _ = self.load_library().await;
            }
            let failing = inner.health.is_failing(unit.slot);
            let over_budget = retry.over_budget();
            // A node that already used up a budget gets no new one (this was its probe); a
            // unit out of budget gives up if the cluster agrees its node failed (or has not
            // decided within another budget); while the whole cluster is down it waits.
            if failing || over_budget {
                let outage = self.outage(unit.slot).await;
                if retry.give_up_on(outage) {
                    if over_budget {
                        inner.health.mark_failing(unit.slot);
                    }
                    return Err(give_up(&retry));
                }
            }
            if over_budget && retry.wait_for_outage() {
                tracing::warn!(
                    slot = unit.slot,
                    error.kind = error.kind.as_str(),
                    "waiting instead of dead-lettering: the whole cluster is down, or has not \
                     yet agreed that the slot's node failed"
                );
            }
            inner.stats.retries.fetch_add(1, Ordering::Relaxed);
            if let Some(metrics) = &inner.metrics {
                metrics
                    .redis_units_retried
                    .get_or_create(&ErrorLabels {
                        kind: error.kind.as_str().to_owned(),
                        node: inner
                            .health
                            .owner(unit.slot)
                            .map_or_else(|| "unknown".to_owned(), |n| n.to_string()),
                    })
                    .inc();
            }
            tracing::debug!(
                slot = unit.slot,
                attempts = retry.attempts(),
                error = %error,
                "retrying unit"
            );
            inner.retry_limiter.until_ready().await;
            tokio::time::sleep(retry.next_wait()).await;
        }
    }

    fn failed(&self, failure: UnitFailure) -> UnitFailure {
        self.inner
            .stats
            .failed_units
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            slot = failure.slot,
            node = failure.node.as_deref().unwrap_or("unknown"),
            error.kind = failure.kind.as_str(),
            attempts = failure.attempts,
            error = %failure.message,
            "unit failed"
        );
        failure
    }
}
