//! A real local stack for tests and the `demo` command: a 6-node Redis Cluster run from Debian's
//! `redis-server`, and Kafka — a real Apache Kafka 4.x cluster run from Maven Central jars, or
//! librdkafka's in-process mock cluster where Java is absent.
//!
//! [`RedisCluster`] starts real `redis-server` processes on loopback ports, creates the cluster
//! with `redis-cli --cluster create`, and can kill, pause, resume and restart nodes to provoke
//! real failovers. [`ApacheKafka`] starts 1 or 3 combined broker+controller KRaft nodes from the
//! jars `scripts/kafka-jars.sh` fetches (no Kafka tarball or image can be downloaded on the
//! machines this project is built on), with TLS, SASL and ACLs when asked, and kills, pauses and
//! restarts brokers the same way. [`MockKafka`] wraps librdkafka's mock cluster, whose brokers
//! speak the Kafka protocol on real loopback TCP ports; see [`kafka`] for what it does and does
//! not implement faithfully — the demo's no-Java default, and the tests that need its error
//! injection.
//!
//! # Layout
//! | file | job |
//! |---|---|
//! | `redis_cluster.rs` | [`RedisCluster`]: lifecycle, fault injection, health waits |
//! | `node.rs` | one `redis-server` process: config file, spawn, readiness |
//! | `ports.rs` | loopback port reservation that is safe across threads and processes |
//! | `tls.rs` | [`TestPki`]: a throw-away CA and certificates (rcgen) for TLS clusters |
//! | `apache_kafka/` | [`ApacheKafka`]: broker processes, listeners (TLS, SASL, mTLS), faults, ACLs |
//! | `apicurio/` | [`Apicurio`]: a real Apicurio Registry 2.4 (Confluent-compatible API), its process and faults |
//! | `any_kafka.rs` | [`Kafka`]: either of the two behind one set of calls |
//! | `kafka.rs` | [`MockKafka`]: the mock cluster on an owner thread, topics, fault injection |
//! | `network_cut.rs` | [`NetworkCut`]: an nftables partition between one uid's processes and some ports |
//!
//! # Sync API
//! Everything here is synchronous (it sleeps and blocks on processes and sockets). From async
//! code call it before the runtime starts or through `tokio::task::spawn_blocking`; the
//! individual fault-injection calls ([`RedisCluster::kill`], [`MockKafka::broker_down`], …) return
//! within milliseconds, but the `start` and `wait_*` calls block for seconds.
//!
//! # Leaks
//! Nodes are killed (SIGKILL) and their directory removed when the [`RedisCluster`] is dropped,
//! also while a test panics. If the whole process dies without unwinding (SIGKILL, abort), the
//! nodes still die with it when util-linux `setpriv` is installed: each node is started through
//! `setpriv --pdeathsig KILL` from a thread that lives as long as the process. Set
//! `LOCALSTACK_KEEP=1` to keep the node directories (logs, `nodes.conf`, AOF) for debugging.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

mod any_kafka;
pub mod apache_kafka;
pub mod apicurio;
pub mod kafka;
pub mod network_cut;
mod node;
mod ports;
pub mod redis_cluster;
pub mod tls;

pub use any_kafka::Kafka;
pub use apache_kafka::{ApacheKafka, KafkaOptions};
pub use apicurio::Apicurio;
/// The parsed `CLUSTER NODES` the stack's health checks read ([`fds_worker::store::admin`]).
pub use fds_worker::store::admin::{NodeView, Role, Topology};
pub use kafka::{MockKafka, STANDARD_TOPICS};
pub use network_cut::{CUT_UID, NetworkCut};
pub use redis_cluster::{ClusterOptions, RedisCluster, cluster_create_with_replicas};
pub use tls::{ClusterTls, TestPki};

/// What went wrong while starting or driving the local stack.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalStackError {
    /// A required program is not installed.
    #[error("`{program}` was not found on PATH; install it with `{install}`")]
    MissingProgram {
        /// The program that was looked for, e.g. `redis-server`.
        program: &'static str,
        /// The command that installs it, e.g. `apt-get install -y redis-server`.
        install: &'static str,
    },
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// No free pair of loopback ports (client port and cluster bus port) could be reserved.
    #[error("no free loopback port pair (P, P+10000) found after {attempts} attempts")]
    NoFreePorts {
        /// How many candidate ports were tried.
        attempts: u32,
    },
    /// A `redis-server` process exited or never answered while starting.
    #[error(
        "redis node {index} on port {port} failed to start: {reason}\n--- tail of {log} ---\n{log_tail}"
    )]
    NodeStart {
        /// Node index.
        index: usize,
        /// The node's client port.
        port: u16,
        /// Why it is considered failed.
        reason: String,
        /// Path of the node's log file.
        log: PathBuf,
        /// The last lines of the node's log file.
        log_tail: String,
    },
    /// A command-line tool (`redis-cli`, `kill`) failed.
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        /// The command line, without secrets.
        command: String,
        /// Exit status, or `timed out`.
        status: String,
        /// Its stdout and stderr.
        output: String,
    },
    /// The test PKI could not be made (see [`TestPki::generate`]).
    #[error("making the test certificates: {0}")]
    Pki(#[from] rcgen::Error),
    /// A bounded wait ran out.
    #[error("timed out after {waited:?} waiting for {what}; last observation: {last}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        waited: Duration,
        /// The last reason the condition did not hold.
        last: String,
    },
    /// A node index outside `0..node_count`.
    #[error("no node with index {0}")]
    NoSuchNode(usize),
    /// The operation needs the node in another state (e.g. `resume` of a node that is not paused).
    #[error("node {index} is {state}; {operation} needs it {needed}")]
    NodeState {
        /// Node index.
        index: usize,
        /// Its current state.
        state: &'static str,
        /// The rejected operation.
        operation: &'static str,
        /// The state the operation needs.
        needed: &'static str,
    },
    /// A reply from Redis could not be understood.
    #[error("unexpected reply to {command}: {detail}")]
    Protocol {
        /// The command whose reply it was.
        command: String,
        /// What was wrong.
        detail: String,
    },
    /// A Redis command failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The Kafka mock cluster failed.
    #[error("kafka mock cluster: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The thread that owns the Kafka mock cluster is gone.
    #[error("the kafka mock cluster's owner thread has stopped")]
    MockKafkaGone,
}

impl LocalStackError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> LocalStackError {
        LocalStackError::Io {
            context: context.into(),
            source,
        }
    }

    /// [`LocalStackError::NodeState`].
    pub(crate) fn node_state(
        index: usize,
        state: &'static str,
        operation: &'static str,
        needed: &'static str,
    ) -> LocalStackError {
        LocalStackError::NodeState {
            index,
            state,
            operation,
            needed,
        }
    }
}

/// A new directory for one cluster's nodes: `<temp>/<prefix><pid>-<n>-<random>`.
pub(crate) fn make_root_dir(prefix: &str) -> Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "{prefix}{}-{}-{:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    );
    let root = std::env::temp_dir().join(name);
    std::fs::create_dir_all(&root)
        .map_err(|e| LocalStackError::io(format!("creating {}", root.display()), e))?;
    Ok(root)
}

/// Environment variable that, set to `1`, keeps the local stack's directories (node and broker
/// logs, data) instead of removing them.
// Not `FDS_*`: every `FDS_*` variable is read as worker configuration (and an unknown key refused).
pub const KEEP_ENV: &str = "LOCALSTACK_KEEP";

/// Removes a cluster's directory once its processes are dead, or keeps it (logs, data) when
/// [`KEEP_ENV`] is `1`.
pub(crate) fn remove_root_dir(root: &Path) {
    if std::env::var_os(KEEP_ENV).is_some_and(|v| v == "1") {
        eprintln!("{KEEP_ENV}=1: kept {}", root.display());
        return;
    }
    let _ = std::fs::remove_dir_all(root);
}

/// Result alias for this module.
pub type Result<T, E = LocalStackError> = std::result::Result<T, E>;

/// More JVM options for every Java process the stack starts (the Kafka brokers, the Schema
/// Registry), from `LOCALSTACK_JVM_OPTS` (split on whitespace; unset: none).
/// `scripts/test.sh` sets `-XX:TieredStopAtLevel=1` (the C1 compiler only): on 2 cores the
/// JVMs start sooner and burn less CPU compiling while the tests run, at a lower peak
/// throughput that tests do not need (measured: `tests/apache_kafka.rs` 39–41 s → 30–35 s,
/// `tests/registry.rs` 17 s → 10 s). `demo`, `bench` and `soak` leave it unset.
pub(crate) fn jvm_options() -> Vec<OsString> {
    std::env::var("LOCALSTACK_JVM_OPTS")
        .map(|opts| opts.split_whitespace().map(OsString::from).collect())
        .unwrap_or_default()
}
