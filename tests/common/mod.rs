//! Helpers shared by the integration tests: a real Redis Cluster, a real Apache Kafka cluster
//! (shared by the tests of a binary), unique names, tracing, and bounded waits.
//!
//! Each test binary compiles this module and uses a subset of it, hence the `dead_code` allows.
//! Everything that starts something is synchronous; from a `#[tokio::test]` call it before the
//! first `.await` or through `tokio::task::spawn_blocking`.

#![allow(dead_code)]

pub mod keys;
pub mod ops;
pub mod scenario;
pub mod secure_kafka;
pub mod worker;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock, Weak};
use std::time::{Duration, Instant};

use fds_testkit::localstack::{ApacheKafka, ClusterOptions, KafkaOptions, RedisCluster};

/// How long a test waits for anything that should take a few seconds (a failover takes ≈4 s
/// with the 2000 ms test node timeout).
pub const WAIT: Duration = Duration::from_secs(30);

/// A name no other test (in this or another process) uses: `<prefix>-<pid>-<n>-<random>`.
/// Use it for topics and consumer groups so tests sharing a broker do not see each other.
pub fn random_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}-{:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    )
}

/// Installs a `tracing` subscriber for tests once per binary; `RUST_LOG` filters (default
/// `info`). Output goes through the test harness's capture.
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// The options of [`start_cluster`]: 3 masters + 3 replicas, node timeout 2000 ms.
pub fn test_cluster_options() -> ClusterOptions {
    ClusterOptions::default()
}

/// Starts a 6-node cluster of its own for one test (use it when the test kills or pauses
/// nodes). Panics with the reason — including how to install `redis-server` — if it cannot.
pub fn start_cluster() -> RedisCluster {
    start_cluster_with(test_cluster_options())
}

/// Like [`start_cluster`], with `opts`.
pub fn start_cluster_with(opts: ClusterOptions) -> RedisCluster {
    init_tracing();
    let started = Instant::now();
    let cluster = RedisCluster::start(opts).unwrap_or_else(|e| panic!("redis cluster: {e}"));
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        ports = ?cluster.ports(),
        "test redis cluster ready"
    );
    cluster
}

/// A cluster shared by the tests of one binary that run at the same time and do not break it
/// (no kill, pause or restart; keys namespaced with [`random_name`]). It is started by the first
/// caller and stopped when the last holder drops its `Arc`.
pub fn shared_cluster() -> Arc<RedisCluster> {
    static SHARED: Mutex<Weak<RedisCluster>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(cluster) = shared.upgrade() {
        return cluster;
    }
    let cluster = Arc::new(start_cluster());
    *shared = Arc::downgrade(&cluster);
    cluster
}

/// The 3-broker Apache Kafka cluster shared by the tests of this binary that do not break it
/// (each uses its own topics and groups: [`random_name`], or a stack's prefixed topics). It is
/// started by the first caller and lives as long as the process; its brokers die with it
/// (`setpriv --pdeathsig`). Tests that kill, pause or restart brokers start their own.
pub fn shared_kafka() -> Arc<ApacheKafka> {
    static SHARED: OnceLock<Arc<ApacheKafka>> = OnceLock::new();
    static STARTING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    SHARED
        .get_or_init(|| Arc::new(start_apache_kafka(KafkaOptions::default())))
        .clone()
}

/// Starts an Apache Kafka cluster of its own for one test (use it when the test kills, pauses
/// or restarts brokers, or needs listeners of its own). Panics with the reason if it cannot.
pub fn start_apache_kafka(options: KafkaOptions) -> ApacheKafka {
    init_tracing();
    let started = Instant::now();
    let kafka = ApacheKafka::start(options).unwrap_or_else(|e| panic!("apache kafka: {e}"));
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        bootstrap = kafka.bootstrap_servers(),
        "test apache kafka ready"
    );
    kafka
}

/// How often the synchronous waits poll.
const POLL: Duration = Duration::from_millis(20);

/// Polls `probe` every 20 ms until it returns `Ok`, and returns that; at `timeout`, the last
/// `Err` (what was observed instead). For a caller that must clean up before it fails; the
/// others use [`wait_until`].
pub fn poll_until<T, E>(
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = probe();
        if last.is_ok() || Instant::now() >= deadline {
            return last;
        }
        std::thread::sleep(POLL);
    }
}

/// Polls `probe` every 20 ms until it returns `Ok`, and returns that; panics after `timeout`
/// naming `what` and the last `Err` (the state observed instead).
pub fn wait_until<T, E: std::fmt::Display>(
    what: &str,
    timeout: Duration,
    probe: impl FnMut() -> Result<T, E>,
) -> T {
    poll_until(timeout, probe).unwrap_or_else(|last| {
        panic!("timed out after {timeout:?} waiting for {what}; last: {last}")
    })
}

/// [`wait_until`] for a probe with nothing to say while it does not hold (`None`).
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    wait_until(what, timeout, || probe().ok_or("not yet"))
}

/// Async [`poll_until`]: awaits `probe()` every `every` until it returns `Ok`, or returns the
/// last `Err` at `timeout`.
pub async fn poll_until_async<T, E, F, Fut>(
    timeout: Duration,
    every: Duration,
    mut probe: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = probe().await;
        if last.is_ok() || tokio::time::Instant::now() >= deadline {
            return last;
        }
        tokio::time::sleep(every).await;
    }
}

/// Async [`wait_until`]: awaits `probe()` every `every` until it returns `Ok`, and returns that;
/// panics after `timeout` naming `what` and the last `Err` (the state observed instead).
pub async fn wait_until_async<T, E, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    probe: F,
) -> T
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    poll_until_async(timeout, every, probe)
        .await
        .unwrap_or_else(|last| {
            panic!("timed out after {timeout:?} waiting for {what}; last: {last}")
        })
}
