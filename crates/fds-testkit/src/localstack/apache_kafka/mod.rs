//! [`ApacheKafka`]: a real Apache Kafka 4.x cluster of 1 or 3 combined broker+controller KRaft
//! nodes on loopback ports, run from the jars `scripts/kafka-jars.sh` fetches from Maven
//! Central (no Kafka tarball or image can be downloaded on the machines this is built on).
//!
//! Each node is a `java kafka.Kafka server.properties` process in its own directory
//! (`server.properties`, `log4j2.properties`, `server.log`, `stdout.log`, `data/`), formatted
//! with `kafka.tools.StorageTool format` against a static quorum (`controller.quorum.voters`).
//! A node is ready when the cluster's metadata lists it as a live broker — a real metadata
//! request, not a sleep. Like the Redis nodes, a broker can be stopped (SIGTERM: controlled
//! shutdown), killed (SIGKILL), paused (SIGSTOP), resumed and restarted with its data.
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | [`ApacheKafka`]: start, topics, faults (kill, stop, pause, resume, restart), tools, ACLs |
//! | `properties.rs` | each node's `server.properties`, the cluster id |
//! | `metadata.rs` | leaders, coordinators, and the waits on the cluster's metadata |
//! | `listeners.rs` | TLS, SASL and mTLS listeners and their client settings |
//! | `broker.rs` | one broker process: files, spawn, signals |
//! | `jars.rs` | the broker jars and `java` |
//!
//! # Test-speed settings (not production values)
//! - `broker.session.timeout.ms=3000`, `broker.heartbeat.interval.ms=500`: a dead or paused
//!   broker is fenced (its leaderships move) after 3 s instead of 9 s; `replica.lag.time.max.ms`
//!   5 s instead of 30 s.
//! - Classic groups accept session timeouts from 1 s (`group.min.session.timeout.ms`); KIP-848
//!   (`group.protocol=consumer`) groups use a 6 s session and 1 s heartbeats decided by the
//!   broker (`group.consumer.session.timeout.ms`, `group.consumer.heartbeat.interval.ms`, their
//!   minimums lowered), so their rebalances take seconds, as the classic tests' do.
//! - `group.initial.rebalance.delay.ms=0`; 10 partitions for `__consumer_offsets` and
//!   `__transaction_state` instead of 50.
//! - On 3 nodes every topic — the standard ones, auto-created ones and the internal ones — has
//!   replication factor 3 and `min.insync.replicas=2`; on 1 node, 1 and 1.

mod broker;
mod jars;
pub mod listeners;
mod metadata;
mod properties;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use self::broker::BrokerNode;
pub use self::jars::JARS_ENV;
pub(crate) use self::jars::java;
pub use self::listeners::{BrokerTls, KafkaUser, Listener, ListenerSecurity, SaslMechanism};
pub use self::metadata::{INTERNAL_TOPIC_PARTITIONS, internal_partition};
use super::ports::reserve_port_pair;
use super::{LocalStackError, Result};

const POLL: Duration = Duration::from_millis(200);
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const RESTART_TIMEOUT: Duration = Duration::from_secs(60);
/// How to build an [`ApacheKafka`]. `Default`: 3 nodes, 384 MiB heap each, plaintext only.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// Number of combined broker+controller nodes (1 or 3).
    pub brokers: usize,
    /// JVM heap per node, MiB.
    pub heap_mb: u32,
    /// Client listeners besides the harness's `PLAINTEXT` one (TLS, SASL, mutual TLS).
    pub listeners: Vec<Listener>,
    /// Users: SCRAM credentials (added at format time) and PLAIN users of SASL listeners.
    pub users: Vec<KafkaUser>,
    /// TLS material for the TLS listeners.
    pub tls: Option<BrokerTls>,
    /// Turns on `StandardAuthorizer` (deny unless an ACL allows). The harness's `PLAINTEXT`
    /// listener (its principal is `User:ANONYMOUS`), inter-broker and controller traffic stay
    /// super users.
    pub authorizer: bool,
    /// More `server.properties` lines, written last (they win).
    pub extra_properties: Vec<(String, String)>,
    /// Bound on the whole of [`ApacheKafka::start`].
    pub start_timeout: Duration,
}

impl Default for KafkaOptions {
    fn default() -> KafkaOptions {
        KafkaOptions {
            brokers: 3,
            heap_mb: 384,
            listeners: Vec::new(),
            users: Vec::new(),
            tls: None,
            authorizer: false,
            extra_properties: Vec::new(),
            start_timeout: Duration::from_secs(120),
        }
    }
}

impl KafkaOptions {
    /// One node.
    pub fn single() -> KafkaOptions {
        KafkaOptions {
            brokers: 1,
            ..KafkaOptions::default()
        }
    }
}

/// An Apache Kafka cluster of real broker processes on 127.0.0.1, in a temporary directory.
///
/// Brokers are numbered `1..=broker_count()` (their `node.id`), like [`MockKafka`]'s. Dropping
/// it kills every broker with SIGKILL and removes the directory (`LOCALSTACK_KEEP=1` keeps
/// it). It is `Send + Sync`; every method blocks (see the [module docs](super)).
///
/// [`MockKafka`]: super::MockKafka
#[derive(Debug)]
pub struct ApacheKafka {
    opts: KafkaOptions,
    root: PathBuf,
    jar_dir: PathBuf,
    bootstrap: String,
    nodes: Mutex<Vec<BrokerNode>>,
}

impl ApacheKafka {
    /// Formats and starts `opts.brokers` nodes and waits (bounded by `opts.start_timeout`)
    /// until the metadata lists every broker.
    pub fn start(opts: KafkaOptions) -> Result<ApacheKafka> {
        let started = Instant::now();
        if opts.brokers != 1 && opts.brokers != 3 {
            return Err(LocalStackError::Protocol {
                command: "starting apache kafka".into(),
                detail: format!("1 or 3 brokers, not {}", opts.brokers),
            });
        }
        let jar_dir = jars::jar_dir()?;
        let root = make_root_dir()?;
        let mut nodes = Vec::new();
        for id in 1..=opts.brokers as i32 {
            nodes.push(new_node(id, &root, &opts.listeners)?);
        }
        let bootstrap = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",");
        // From here on, an early return drops `kafka`, which kills what was started.
        let kafka = ApacheKafka {
            opts,
            root,
            jar_dir,
            bootstrap,
            nodes: Mutex::new(nodes),
        };
        kafka.write_configs()?;
        let cluster_id = kafka.random_cluster_id()?;
        let scram = listeners::scram_arguments(&kafka.opts.users);
        let nodes = kafka.lock_nodes();
        std::thread::scope(|scope| {
            let formats: Vec<_> = nodes
                .iter()
                .map(|n| scope.spawn(|| n.format(&kafka.jar_dir, &cluster_id, &scram)))
                .collect();
            formats
                .into_iter()
                .try_for_each(|f| f.join().expect("format thread"))
        })?;
        drop(nodes);
        for node in kafka.lock_nodes().iter_mut() {
            node.spawn(&kafka.jar_dir, kafka.opts.heap_mb)?;
        }
        let remaining = kafka.opts.start_timeout.saturating_sub(started.elapsed());
        let ids: Vec<i32> = (1..=kafka.opts.brokers as i32).collect();
        kafka.wait_for_brokers(&ids, remaining)?;
        tracing::debug!(
            bootstrap = %kafka.bootstrap,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "local apache kafka started"
        );
        Ok(kafka)
    }

    /// The options it was started with.
    pub fn options(&self) -> &KafkaOptions {
        &self.opts
    }

    /// The `bootstrap.servers` of the `PLAINTEXT` listeners, e.g. `127.0.0.1:14001,…`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// The `bootstrap.servers` of the extra listener `name`.
    pub fn listener_bootstrap(&self, name: &str) -> Result<String> {
        let nodes = self.lock_nodes();
        let addrs: Vec<String> = nodes
            .iter()
            .filter_map(|n| {
                n.listener_ports
                    .iter()
                    .find(|(l, _)| l == name)
                    .map(|(_, port)| format!("127.0.0.1:{port}"))
            })
            .collect();
        if addrs.is_empty() {
            return Err(LocalStackError::Protocol {
                command: "listener_bootstrap".into(),
                detail: format!("no listener named {name}"),
            });
        }
        Ok(addrs.join(","))
    }

    /// Number of brokers; their ids are `1..=broker_count()`.
    pub fn broker_count(&self) -> i32 {
        self.opts.brokers as i32
    }

    /// A client config with `bootstrap.servers` set to the `PLAINTEXT` listeners.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        config
    }

    /// The directory holding every node's directory.
    pub fn root_dir(&self) -> &Path {
        &self.root
    }

    /// The last `lines` lines of broker `id`'s `server.log` and of its JVM output.
    pub fn log_tail(&self, id: i32, lines: usize) -> Result<String> {
        self.with_node(id, |n| Ok(n.tails(lines)))
    }

    /// Every broker's log tail, for a failing test's message.
    pub fn all_log_tails(&self, lines: usize) -> String {
        self.lock_nodes()
            .iter()
            .map(|n| format!("=== broker {} ===\n{}", n.id, n.tails(lines)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The process id of broker `id`, if it runs.
    pub fn pid(&self, id: i32) -> Result<Option<u32>> {
        self.with_node(id, |n| Ok(n.child.as_ref().map(|c| c.id())))
    }

    /// Creates `topic` with `partitions` partitions — replication factor 3 and
    /// `min.insync.replicas=2` on 3 nodes — and waits until every partition has a leader.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        self.create_topic_with(topic, partitions, &[])
    }

    /// [`ApacheKafka::create_topic`] with more topic configs (e.g. `max.message.bytes`).
    pub fn create_topic_with(
        &self,
        topic: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = self.client_config().create()?;
        let min_isr = self.min_insync_replicas().to_string();
        let mut new = NewTopic::new(
            topic,
            partitions,
            TopicReplication::Fixed(self.broker_count()),
        )
        .set("min.insync.replicas", &min_isr);
        for (key, value) in configs {
            new = new.set(key, value);
        }
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = futures::executor::block_on(admin.create_topics([&new], &options))?;
        for result in results {
            match result {
                // The admin client resends a request that timed out (a loaded machine, a
                // controller busy electing): the first one may have created the topic. A topic
                // that existed before with other partitions fails the leader check below.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) | Ok(_) => {}
                Err((name, code)) => {
                    return Err(LocalStackError::Protocol {
                        command: format!("CreateTopics {name}"),
                        detail: code.to_string(),
                    });
                }
            }
        }
        self.wait_until(
            &format!("every partition of {topic} to have a leader"),
            Duration::from_secs(30),
            |metadata| {
                let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
                    return Err("not in the metadata yet".into());
                };
                let ready = t.partitions().iter().filter(|p| p.leader() >= 0).count();
                if ready == partitions as usize {
                    Ok(())
                } else {
                    Err(format!("{ready} of {partitions} partitions have a leader"))
                }
            },
        )
    }

    /// Kills broker `id` with SIGKILL (no controlled shutdown) and reaps it.
    pub fn kill(&self, id: i32) -> Result<()> {
        self.with_node(id, |n| {
            n.kill();
            Ok(())
        })
    }

    /// Stops broker `id` with SIGTERM: a controlled shutdown that moves its leaderships
    /// first; returns once it exited.
    pub fn stop(&self, id: i32) -> Result<()> {
        self.with_node(id, |n| n.stop(STOP_TIMEOUT))
    }

    /// Freezes broker `id` with SIGSTOP: sockets open, nothing answers. Past
    /// `broker.session.timeout.ms` the controller fences it and its leaderships move.
    pub fn pause(&self, id: i32) -> Result<()> {
        self.with_node(id, |n| {
            let state = n.state();
            let Some(child) = n.child.as_ref().filter(|_| state == "running") else {
                return Err(node_state(id, state, "pause", "running"));
            };
            super::node::signal(child.id(), Signal::SIGSTOP)?;
            n.paused = true;
            Ok(())
        })
    }

    /// Lets a paused broker go on with SIGCONT.
    pub fn resume(&self, id: i32) -> Result<()> {
        self.with_node(id, |n| {
            let state = n.state();
            let Some(child) = n.child.as_ref().filter(|_| state == "paused") else {
                return Err(node_state(id, state, "resume", "paused"));
            };
            super::node::signal(child.id(), Signal::SIGCONT)?;
            n.paused = false;
            Ok(())
        })
    }

    /// Starts broker `id` again with its data (a running one is killed first) and waits until
    /// the metadata lists it as a live broker.
    pub fn restart(&self, id: i32) -> Result<()> {
        self.with_node(id, |n| {
            n.kill();
            n.spawn(&self.jar_dir, self.opts.heap_mb)
        })?;
        self.wait_for_brokers(&[id], RESTART_TIMEOUT)
    }

    /// Kills every broker (SIGKILL): the whole cluster is unreachable.
    pub fn kill_all(&self) -> Result<()> {
        for n in self.lock_nodes().iter_mut() {
            n.kill();
        }
        Ok(())
    }

    /// Starts every stopped broker again and waits until all are listed.
    pub fn restart_stopped(&self) -> Result<()> {
        let mut ids = Vec::new();
        for n in self.lock_nodes().iter_mut() {
            if !n.alive() {
                n.spawn(&self.jar_dir, self.opts.heap_mb)?;
                ids.push(n.id);
            }
        }
        self.wait_for_brokers(&ids, RESTART_TIMEOUT)
    }

    /// Whether broker `id`'s process runs (paused or not).
    pub fn is_running(&self, id: i32) -> bool {
        self.with_node(id, |n| Ok(n.alive())).unwrap_or(false)
    }

    /// Runs a Kafka command-line tool class (e.g. `org.apache.kafka.tools.AclCommand`) with
    /// `args` from the broker's jars; fails with its output if it exits non-zero.
    pub fn run_tool(&self, class: &str, args: &[&str]) -> Result<()> {
        let mut command = std::process::Command::new(jars::java()?);
        command
            .arg("-Xmx128m")
            .arg("-cp")
            .arg(jars::classpath(&self.jar_dir))
            .arg(class)
            .args(args);
        broker::run_tool(command, class)
    }

    /// Adds an ACL with Kafka's `AclCommand` through the `PLAINTEXT` listener (a super user):
    /// `args` are its resource and operation arguments, e.g.
    /// `["--allow-principal", "User:fds", "--operation", "Read", "--topic", "t"]`.
    pub fn add_acl(&self, args: &[&str]) -> Result<()> {
        let mut all = vec![
            "--bootstrap-server",
            self.bootstrap.as_str(),
            "--add",
            "--force",
        ];
        all.extend_from_slice(args);
        self.run_tool("org.apache.kafka.tools.AclCommand", &all)
    }

    fn lock_nodes(&self) -> MutexGuard<'_, Vec<BrokerNode>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_node<T>(&self, id: i32, op: impl FnOnce(&mut BrokerNode) -> Result<T>) -> Result<T> {
        let mut nodes = self.lock_nodes();
        let node = nodes
            .iter_mut()
            .find(|n| n.id == id)
            .ok_or(LocalStackError::NoSuchNode(id.max(0) as usize))?;
        op(node)
    }
}

impl Drop for ApacheKafka {
    fn drop(&mut self) {
        for n in self.lock_nodes().iter_mut() {
            n.kill();
        }
        super::remove_root_dir(&self.root);
    }
}

fn new_node(id: i32, root: &Path, listeners: &[Listener]) -> Result<BrokerNode> {
    // A pair (P, P + 10000): P for PLAINTEXT, P + 10000 for the controller.
    let lease = reserve_port_pair()?;
    let (port, controller_port) = (lease.port(), lease.port() + super::ports::BUS_OFFSET);
    let mut leases = vec![lease];
    let mut listener_ports = Vec::new();
    for listener in listeners {
        let lease = reserve_port_pair()?;
        listener_ports.push((listener.name.clone(), lease.port()));
        leases.push(lease);
    }
    Ok(BrokerNode {
        id,
        port,
        controller_port,
        listener_ports,
        dir: root.join(format!("broker-{id}")),
        child: None,
        paused: false,
        _leases: leases,
    })
}

const ROOT_PREFIX: &str = "fds-apache-kafka-";

fn make_root_dir() -> Result<PathBuf> {
    remove_dirs_of_dead_processes();
    super::make_root_dir(ROOT_PREFIX)
}

/// A cluster kept for a process's whole life (a test binary's shared one) is never dropped, so
/// its directory outlives the process: remove those of processes that are gone.
fn remove_dirs_of_dead_processes() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(ROOT_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH);
        if gone {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn node_state(
    id: i32,
    state: &'static str,
    operation: &'static str,
    needed: &'static str,
) -> LocalStackError {
    LocalStackError::node_state(id.max(0) as usize, state, operation, needed)
}
