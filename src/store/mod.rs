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
//! - [`Store`]: connects, loads the library on every master, and runs units.
//! - [`tls`]: the CA and client certificate for `rediss://` nodes; [`acl`]: the least-privilege
//!   ACL rule for the worker's Redis user.
//!
//! Units of one slot run in submission order (a unit waits for the previous unit of its slot),
//! so an entity's apply-once marks only ever see increasing offsets; units of different slots
//! run concurrently up to `max_inflight_units`.

pub mod acl;
pub mod admin;
pub mod error;
pub mod health;
mod nodes;
pub mod retry;
pub mod tls;
pub mod wire;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared, join_all};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{RedisError, Value};
use tokio::sync::{Semaphore, oneshot};

pub use error::{FailureKind, StoreError};
pub use health::Health;

pub use nodes::Nodes;
pub use retry::{Outage, RetryPolicy, UnitRetry};
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
            let attempted = inner.health.may_attempt(unit.slot);
            let attempt = if attempted {
                retry.attempt();
                let _permit = inner
                    .inflight
                    .acquire()
                    .await
                    .expect("semaphore is never closed");
                Box::pin(self.call(&pipeline, unit)).await
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
            if attempted {
                if error.kind.node_unreachable() {
                    inner.health.mark_suspect(unit.slot);
                } else {
                    inner.health.end_probe(unit.slot);
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

    /// What is wrong when `slot`'s units keep failing: the whole cluster (wait), its node by
    /// the cluster's own verdict (dead-letter), or not decided yet. A node said `CLUSTERDOWN`
    /// more recently than anything succeeded → down. Otherwise the other masters are asked
    /// (the answer is reused for [`OUTAGE_CHECK_TTL`]): `cluster_state` other than `ok`, or no
    /// master answering → down; `ok` and their `CLUSTER NODES` flags the node `fail` (the
    /// majority agreed) or no node serves the slot → node failed; `ok` but the node only
    /// suspected (`fail?`) or still connected → undecided: the cluster has not finished its own
    /// failure detection, and with full coverage required it may yet go down as a whole.
    async fn outage(&self, slot: Slot) -> Outage {
        let health = &self.inner.health;
        if health.cluster_down_reported() {
            return Outage::ClusterDown;
        }
        let own = health.domain(slot);
        {
            let cached = self
                .inner
                .outage_check
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some((at, node, outage)) = cached.as_ref()
                && *node == own
                && at.elapsed() < OUTAGE_CHECK_TTL
            {
                return *outage;
            }
        }
        let mut outage = Outage::ClusterDown;
        for master in health.masters().into_iter().filter(|m| *m != own) {
            let Some(info) = text_of(
                self.on_node(&master, redis::cmd("CLUSTER").arg("INFO").clone())
                    .await,
            ) else {
                continue;
            };
            if !admin::ClusterInfo::parse(&info).is_ok() {
                break;
            }
            let nodes = text_of(
                self.on_node(&master, redis::cmd("CLUSTER").arg("NODES").clone())
                    .await,
            )
            .and_then(|nodes| admin::Topology::parse(&nodes).ok());
            outage = match nodes {
                None => continue,
                Some(nodes) => node_verdict(&nodes, &own),
            };
            break;
        }
        *self
            .inner
            .outage_check
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), own, outage));
        outage
    }

    /// One command on one node, bounded by the response timeout.
    async fn on_node(&self, node: &Arc<str>, command: redis::Cmd) -> Result<Value, StoreError> {
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
    async fn refresh_owners(&self, force: bool) {
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

    /// The unit's `FCALL`, after `ASKING` when `asking`, and followed by the optional `WAIT`.
    /// Error replies come back as values, unwrapped, so `MOVED`/`ASK` can be followed.
    fn unit_pipeline(&self, unit: &SlotUnit, asking: bool) -> redis::Pipeline {
        let settings = &self.inner.settings;
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        if asking {
            pipe.cmd("ASKING").ignore();
        }
        pipe.add_command(wire::unit_command(unit, &settings.library.function));
        if settings.wait_replicas > 0 {
            pipe.cmd("WAIT")
                .arg(settings.wait_replicas)
                .arg(settings.wait_timeout.as_millis() as u64);
        }
        pipe
    }

    /// One attempt: `pipeline` (see [`Store::unit_pipeline`]) on the slot's master, following
    /// `MOVED`/`ASK`; then decoding the reply.
    async fn call(
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
            let replies = match self.send(&node, pipe).await {
                Ok(replies) => replies,
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
            let mut replies = replies.into_iter();
            let reply = replies.next().unwrap_or(Value::Nil);
            if settings.wait_replicas > 0 {
                check_replicated(replies.next(), settings.wait_replicas)?;
            }
            return wire::decode_reply(unit, reply)
                .map_err(|e| StoreError::new(FailureKind::Script, e.0));
        }
        Err(StoreError::new(
            FailureKind::Redirect,
            format!("more than {MAX_REDIRECTS} redirects"),
        ))
    }

    /// Sends a pipeline to `node`; a `MOVED`/`ASK` reply becomes [`Sent::Redirect`].
    async fn send(&self, node: &Arc<str>, pipe: &redis::Pipeline) -> Result<Vec<Value>, Sent> {
        let settings = &self.inner.settings;
        let nodes = &self.inner.nodes;
        let call = async {
            let mut connection = nodes.connection(node).await.map_err(Sent::Failed)?;
            let replies: Vec<Value> = pipe
                .query_async(&mut connection)
                .await
                .map_err(Sent::from)?;
            for reply in &replies {
                if let Value::ServerError(error) = reply {
                    return Err(Sent::from(redis::RedisError::from(error.clone())));
                }
            }
            Ok(replies)
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

/// What to check when the worker cannot connect because of its configuration.
const AUTH_HINT: &str = "check redis.username and redis.password (and the user's ACL on the nodes)";
const TLS_HINT: &str =
    "check redis.tls (ca_file must sign the nodes' certificates; rediss:// nodes need TLS)";

/// The setting to check when `error` is a configuration problem (authentication, TLS), not an
/// outage.
fn config_hint(error: &RedisError) -> Option<&'static str> {
    if FailureKind::of(error) == FailureKind::Auth {
        Some(AUTH_HINT)
    } else if tls::is_tls_failure(error) {
        Some(TLS_HINT)
    } else {
        None
    }
}

/// A failed start, with a hint at the setting to check where the cause is configuration.
///
/// redis-rs's cluster client reports a failed first connection as one I/O error that carries
/// the node's own error only as text, so when the error itself says nothing, one seed node is
/// asked directly (connect and `PING`), which gives the typed error.
async fn start_failure(settings: &StoreSettings, error: RedisError) -> StoreError {
    let found = match config_hint(&error) {
        Some(hint) => Some((FailureKind::of(&error), hint)),
        None => seed_error(settings)
            .await
            .and_then(|direct| Some((FailureKind::of(&direct), config_hint(&direct)?))),
    };
    let error = StoreError::from(error);
    match found {
        Some((kind, hint)) => StoreError::new(
            kind,
            format!("connecting to the cluster: {} ({hint})", error.message),
        ),
        None => error,
    }
}

/// The error of a fresh connection and `PING` to the first seed node, if it fails in time.
async fn seed_error(settings: &StoreSettings) -> Option<RedisError> {
    let nodes = Nodes::new(settings).ok()?;
    let seed = nodes.seeds().into_iter().next()?;
    let probe = async {
        let mut connection = nodes.dial(&seed).await?;
        redis::cmd("PING")
            .query_async::<Value>(&mut connection)
            .await
            .map(drop)
    };
    let bound = settings.connect_timeout + settings.response_timeout;
    tokio::time::timeout(bound, probe).await.ok()?.err()
}

/// A cluster connection with the store's settings (credentials, TLS files, timeouts, few
/// client-side retries), bounded in time: for the store and for tools that read the cluster.
pub async fn connect_cluster(settings: &StoreSettings) -> Result<ClusterConnection, StoreError> {
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
    tls::install_crypto_provider();
    if let Some(certificates) = settings.tls.certificates()? {
        builder = builder.certs(certificates);
    }
    let client = match builder.build() {
        Ok(client) => client,
        Err(error) => return Err(start_failure(settings, error).await),
    };
    let connecting = tokio::time::timeout(
        settings.connect_timeout * 4 + settings.response_timeout,
        client.get_async_connection(),
    )
    .await
    .map_err(|_| StoreError::new(FailureKind::Timeout, "connecting to the cluster timed out"))?;
    match connecting {
        Ok(connection) => Ok(connection),
        Err(error) => Err(start_failure(settings, error).await),
    }
}

/// The text of a bulk or verbatim string reply.
fn text_of(reply: Result<Value, StoreError>) -> Option<String> {
    match reply.ok()? {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Value::VerbatimString { text, .. } => Some(text),
        _ => None,
    }
}

/// The cluster's verdict on `node` (`host:port`, or `slot N` when nobody serves the slot) from
/// a `CLUSTER NODES` reply: unknown to the cluster or flagged `fail` → failed.
fn node_verdict(nodes: &admin::Topology, node: &str) -> Outage {
    match nodes.by_addr(node) {
        Some(view) if !view.failed => Outage::Undecided,
        _ => Outage::NodeFailed,
    }
}

/// How long an outage check is reused.
const OUTAGE_CHECK_TTL: Duration = Duration::from_millis(250);

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

/// The `WAIT` reply: enough replicas, or a retryable failure. A node that answers something
/// else (a demoted zombie says "WAIT cannot be used with replica instances") leaves the
/// write's durability unknown, so it is retried too (apply-once makes that safe).
fn check_replicated(reply: Option<Value>, wanted: u32) -> Result<(), StoreError> {
    match reply {
        Some(Value::Int(acknowledged)) if acknowledged >= i64::from(wanted) => Ok(()),
        Some(Value::Int(acknowledged)) => Err(StoreError::new(
            FailureKind::NotReplicated,
            format!("WAIT: {acknowledged} of {wanted} replicas acknowledged"),
        )),
        other => Err(StoreError::new(
            FailureKind::MasterDown,
            format!("WAIT: unexpected reply {other:?}"),
        )),
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

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001 master,fail - 1 1 2 disconnected 5461-10922
c3 127.0.0.1:7002@17002 master,fail? - 1 1 3 connected 10923-16383
d4 127.0.0.1:7003@17003 slave a1 0 1 1 connected
";

    #[test]
    fn the_cluster_verdict_on_a_node_comes_from_its_flags() {
        let nodes = admin::Topology::parse(NODES).unwrap();
        let node_verdict = |node| node_verdict(&nodes, node);
        assert_eq!(node_verdict("127.0.0.1:7001"), Outage::NodeFailed);
        assert_eq!(node_verdict("127.0.0.1:7002"), Outage::Undecided);
        assert_eq!(node_verdict("127.0.0.1:7003"), Outage::Undecided);
        assert_eq!(node_verdict("slot 42"), Outage::NodeFailed);
    }
}
