//! The Redis side: the cluster client, the `fds` function library, and running slot units
//! with retries, a per-slot budget and per-slot ordering.
//!
//! - [`wire`]: the unit ↔ `FCALL` contract with `fds.lua`.
//! - [`error`]: one classification of every Redis failure ([`FailureKind`]).
//! - [`health`]: which slots are failing, and whether anything succeeded lately (is the whole
//!   cluster down, or only some slots?).
//! - [`Store`]: connects, loads the library on every master, and runs units.
//!
//! Units of one slot run in submission order (a unit waits for the previous unit of its slot),
//! so an entity's apply-once marks only ever see increasing offsets; units of different slots
//! run concurrently up to `max_inflight_units`.

pub mod error;
pub mod health;
pub mod wire;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared, join_all};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use redis::Value;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use tokio::sync::{Semaphore, oneshot};

pub use error::{FailureKind, StoreError};
pub use health::Health;

use crate::metrics::{ErrorLabels, Metrics};
use crate::plan::{SlotUnit, UnitAnswer};
use crate::slot::{SLOT_COUNT, Slot};

/// How a unit is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Give up on a slot after this long (should outlast a failover: ≈ 2 × node-timeout + 2 s).
    pub budget: Duration,
    /// …or after this many attempts.
    pub max_attempts: u32,
    /// First backoff; doubles per attempt, with full jitter.
    pub initial_backoff: Duration,
    /// Backoff cap.
    pub max_backoff: Duration,
    /// Retries per second across all units (`governor`), so a sick cluster is not hammered.
    pub max_retries_per_second: u32,
}

/// Connection and execution settings (built from the `redis` config section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// Seed node URLs.
    pub nodes: Vec<String>,
    /// ACL user name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
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
}

type Tail = Shared<oneshot::Receiver<()>>;

/// The current cluster connection and when it was made.
struct Connection {
    connection: ClusterConnection,
    since: Instant,
}

struct Inner {
    client: ClusterClient,
    connection: std::sync::RwLock<Connection>,
    reconnecting: tokio::sync::Mutex<()>,
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
        let mut builder = ClusterClientBuilder::new(settings.nodes.clone())
            // The client's own retries only follow redirects and ride over blips; the budget
            // and backoff are ours (the default of 16 retries would hide failures).
            .retries(2)
            .min_retry_wait(10)
            .max_retry_wait(200)
            // Stop background reconnects to a dead node after a few tries; it returns to the
            // map with the next topology refresh.
            .max_connection_attempts(std::num::NonZeroUsize::new(3).expect("3 > 0"))
            .connection_timeout(settings.connect_timeout)
            .response_timeout(settings.response_timeout);
        if let Some(username) = &settings.username {
            builder = builder.username(username);
        }
        if let Some(password) = &settings.password {
            builder = builder.password(password);
        }
        let client = builder.build()?;
        let connection = tokio::time::timeout(
            settings.connect_timeout * 4 + settings.response_timeout,
            client.get_async_connection(),
        )
        .await
        .map_err(|_| {
            StoreError::new(FailureKind::Timeout, "connecting to the cluster timed out")
        })??;
        let connection = Connection {
            connection,
            since: Instant::now(),
        };
        let per_second = |n: u32| std::num::NonZeroU32::new(n).map(Quota::per_second);
        let retry_quota = per_second(settings.retry.max_retries_per_second)
            .unwrap_or_else(|| Quota::per_second(std::num::NonZeroU32::MAX));
        let store = Store {
            inner: Arc::new(Inner {
                client,
                connection: std::sync::RwLock::new(connection),
                reconnecting: tokio::sync::Mutex::new(()),
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
        store.load_library().await?;
        store.refresh_owners().await;
        Ok(store)
    }

    /// `FUNCTION LOAD REPLACE` of `fds.lua` on every master (replicas get it by replication).
    pub async fn load_library(&self) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let _: Value = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(wire::LIBRARY_SOURCE)
            .query_async(&mut connection)
            .await?;
        Ok(())
    }

    /// A clone of the cluster connection, for reads outside units (lookups, monitoring).
    pub fn connection(&self) -> ClusterConnection {
        let current = self
            .inner
            .connection
            .read()
            .unwrap_or_else(|e| e.into_inner());
        current.connection.clone()
    }

    /// Replaces the cluster connection with a fresh one when requests time out and nothing has
    /// succeeded since the current connection was made or for two response timeouts. redis-rs
    /// can stall every request while it repairs its slot map after a node dies; a new
    /// connection rebuilds the map from the seed nodes instead.
    async fn reconnect_if_stuck(&self) {
        let inner = &self.inner;
        let Ok(_single) = inner.reconnecting.try_lock() else {
            return;
        };
        let patience = inner.settings.response_timeout * 2;
        let since = inner
            .connection
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .since;
        if since.elapsed() < patience || inner.health.succeeded_within(patience) {
            return;
        }
        tracing::warn!("cluster connection stalled: reconnecting from the seed nodes");
        let fresh = tokio::time::timeout(
            inner.settings.connect_timeout * 4 + inner.settings.response_timeout,
            inner.client.get_async_connection(),
        )
        .await;
        match fresh {
            Ok(Ok(connection)) => {
                *inner.connection.write().unwrap_or_else(|e| e.into_inner()) = Connection {
                    connection,
                    since: Instant::now(),
                };
            }
            Ok(Err(error)) => tracing::warn!(%error, "reconnecting to the cluster"),
            Err(_) => tracing::warn!("reconnecting to the cluster timed out"),
        }
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
                    let result = store.execute(&unit).await;
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
        let policy = &inner.settings.retry;
        let command = wire::unit_command(unit);
        let started = Instant::now();
        let mut attempts = 0u32;
        let mut first_failure = None;
        let mut backoff = policy.initial_backoff;
        let mut waiting_logged = false;
        let mut last_kind = FailureKind::Connection;
        loop {
            let attempted = inner.health.may_attempt(unit.slot);
            let attempt = if attempted {
                attempts += 1;
                let _permit = inner
                    .inflight
                    .acquire()
                    .await
                    .expect("semaphore is never closed");
                self.call(&command, unit).await
            } else {
                Err(StoreError::new(
                    last_kind,
                    "node unreachable: waiting for its next probe",
                ))
            };
            let error = match attempt {
                Ok(answer) => {
                    inner.health.record_success(unit.slot);
                    return Ok(answer);
                }
                Err(error) => error,
            };
            last_kind = error.kind;
            if attempted && error.kind.node_unreachable() {
                inner.health.mark_suspect(unit.slot);
            }
            let now = SystemTime::now();
            let first = *first_failure.get_or_insert(now);
            if error.kind.cluster_wide() {
                inner.health.record_cluster_down();
            }
            if attempted && matches!(error.kind, FailureKind::Timeout | FailureKind::Connection) {
                self.reconnect_if_stuck().await;
            }
            self.refresh_owners().await;
            let give_up = |kind: FailureKind| UnitFailure {
                kind,
                message: error.message.clone(),
                slot: unit.slot,
                node: inner.health.owner(unit.slot).map(|n| n.to_string()),
                attempts,
                first_failure: first,
                last_failure: now,
            };
            if !error.kind.retryable() {
                return Err(self.failed(give_up(error.kind)));
            }
            if error.kind == FailureKind::FunctionMissing {
                let _ = self.load_library().await;
            }
            let failing = inner.health.is_failing(unit.slot);
            let over_budget = started.elapsed() >= policy.budget || attempts >= policy.max_attempts;
            // A node that already used up a budget gets no new one (this was its probe); a
            // unit out of budget gives up — unless the whole cluster is down, then it waits.
            if (failing || over_budget) && !self.cluster_wide_outage(unit.slot, started).await {
                if over_budget {
                    inner.health.mark_failing(unit.slot);
                }
                return Err(self.failed(give_up(error.kind)));
            }
            if over_budget && !waiting_logged {
                tracing::warn!(
                    slot = unit.slot,
                    error.kind = error.kind.as_str(),
                    "the whole cluster looks down: waiting for it instead of dead-lettering"
                );
                waiting_logged = true;
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
            tracing::debug!(slot = unit.slot, attempts, error = %error, "retrying unit");
            inner.retry_limiter.until_ready().await;
            tokio::time::sleep(jitter(backoff)).await;
            backoff = (backoff * 2).min(policy.max_backoff);
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

    /// Is the whole cluster unavailable (wait), rather than `slot`'s node (dead-letter)? Yes
    /// if a node said so more recently than anything succeeded; no if anything succeeded since
    /// `started`; otherwise ask the other masters for `CLUSTER INFO`: a master answering
    /// `cluster_state:ok` means only this slot's node is out.
    async fn cluster_wide_outage(&self, slot: Slot, started: Instant) -> bool {
        let health = &self.inner.health;
        if health.cluster_down_reported() {
            return true;
        }
        if health.succeeded_since(started) {
            return false;
        }
        let own = health.domain(slot);
        let mut connection = self.connection();
        for master in health.masters().into_iter().filter(|m| *m != own) {
            let Some((host, port)) = master.rsplit_once(':') else {
                continue;
            };
            let Ok(port) = port.parse() else {
                continue;
            };
            let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                host: host.to_owned(),
                port,
            });
            let info = tokio::time::timeout(
                self.inner.settings.response_timeout,
                connection.route_command(redis::cmd("CLUSTER").arg("INFO").clone(), route),
            )
            .await;
            let text = match info {
                Ok(Ok(Value::BulkString(bytes))) => String::from_utf8_lossy(&bytes).into_owned(),
                Ok(Ok(Value::VerbatimString { text, .. })) => text,
                _ => continue,
            };
            return !text.contains("cluster_state:ok");
        }
        true
    }

    /// Refreshes the cached slot map if it is stale (error path only; best effort).
    async fn refresh_owners(&self) {
        let health = &self.inner.health;
        if !health.owners_stale() {
            return;
        }
        let mut connection = self.connection();
        let query = redis::cmd("CLUSTER").arg("SLOTS").clone();
        let reply = tokio::time::timeout(
            self.inner.settings.response_timeout,
            query.query_async::<Value>(&mut connection),
        )
        .await;
        if let Ok(Ok(reply)) = reply {
            health.set_owners(&slot_ranges(&reply));
        }
    }

    /// One attempt: `FCALL`, the optional `WAIT`, and decoding the reply.
    async fn call(&self, command: &redis::Cmd, unit: &SlotUnit) -> Result<UnitAnswer, StoreError> {
        let inner = &self.inner;
        let settings = &inner.settings;
        inner.stats.calls.fetch_add(1, Ordering::Relaxed);
        let mut connection = self.connection();
        // redis-rs has its own response timeout; this guards the whole call, redirects included.
        let deadline = settings.connect_timeout + settings.response_timeout * 3;
        let reply: Value = tokio::time::timeout(deadline, command.query_async(&mut connection))
            .await
            .map_err(|_| StoreError::new(FailureKind::Timeout, "unit call timed out"))??;
        if settings.wait_replicas > 0 {
            let wait = redis::cmd("WAIT")
                .arg(settings.wait_replicas)
                .arg(settings.wait_timeout.as_millis() as u64)
                .clone();
            let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
                unit.slot,
                SlotAddr::Master,
            )));
            // The slot's master may have changed since the FCALL (a failover, or a demoted
            // zombie answering "WAIT cannot be used with replica instances"): either way the
            // write's durability is unknown, so it is retried (apply-once makes that safe).
            let acknowledged = match connection.route_command(wait, route).await? {
                Value::Int(acknowledged) => acknowledged,
                other => {
                    return Err(StoreError::new(
                        FailureKind::MasterDown,
                        format!("WAIT: unexpected reply {other:?}"),
                    ));
                }
            };
            if acknowledged < i64::from(settings.wait_replicas) {
                return Err(StoreError::new(
                    FailureKind::NotReplicated,
                    format!(
                        "WAIT: {acknowledged} of {} replicas acknowledged",
                        settings.wait_replicas
                    ),
                ));
            }
        }
        wire::decode_reply(unit, reply).map_err(|e| StoreError::new(FailureKind::Script, e.0))
    }
}

/// `(first, last, master host:port)` ranges of a `CLUSTER SLOTS` reply.
pub fn slot_ranges(reply: &Value) -> Vec<(Slot, Slot, String)> {
    let Value::Array(ranges) = reply else {
        return Vec::new();
    };
    ranges
        .iter()
        .filter_map(|range| {
            let Value::Array(fields) = range else {
                return None;
            };
            let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Array(master))) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                return None;
            };
            let host = match master.first()? {
                Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                Value::SimpleString(text) => text.clone(),
                _ => return None,
            };
            let Value::Int(port) = master.get(1)? else {
                return None;
            };
            Some((*first as Slot, *last as Slot, format!("{host}:{port}")))
        })
        .collect()
}

/// Full jitter: a uniformly random wait in `[backoff/2, backoff]`.
fn jitter(backoff: Duration) -> Duration {
    let half = backoff / 2;
    half + rand::rng().random_range(Duration::ZERO..=half)
}
