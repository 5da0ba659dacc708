//! [`RedisCluster`]: a real Redis Cluster of `redis-server` processes on loopback ports, with
//! fault injection (kill, pause, resume, restart) and bounded waits for health and failover.
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | [`RedisCluster`]: start, nodes, connections, `redis-cli` |
//! | `faults.rs` | kill, pause, resume, restart a node |
//! | `health.rs` | topology, roles, slot owners; waits for health and failover |
//! | `create.rs` | `redis-cli --cluster create`; commands bounded in time |

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::node::{self, Access, NodeConfig, NotReady};
use super::ports::{PortLease, reserve_port_pair};
use super::tls::{self, ClusterTls};
use super::{LocalStackError, Result};

mod create;
mod faults;
mod health;

pub use create::cluster_create_with_replicas;
use create::create_cluster;
pub(crate) use create::run_with_timeout;
use fds_worker::store::admin::{Role, Topology};

const POLL: Duration = Duration::from_millis(50);
// A paused node accepts connections and never answers; every probe is bounded by this.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(10);
const CLI_TIMEOUT: Duration = Duration::from_secs(10);
const BIND_ATTEMPTS: u32 = 5;
const INSTALL_SERVER: &str = "apt-get install -y redis-server";
const INSTALL_CLI: &str = "apt-get install -y redis-tools (comes with redis-server)";

/// How to build a [`RedisCluster`]. `Default` is the test setup: 3 masters with 1 replica each,
/// node timeout 2000 ms, full coverage required, no password.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Number of masters; `redis-cli --cluster create` needs at least 3.
    pub masters: usize,
    /// Replicas per master.
    pub replicas_per_master: usize,
    /// `cluster-node-timeout`. A failover takes about twice this: failure detection after one
    /// timeout, then gossip to FAIL and the replica election (≈4 s at the default 2000 ms).
    pub node_timeout: Duration,
    /// `cluster-require-full-coverage`: when `true`, every node rejects all commands while any
    /// slot is unserved.
    pub require_full_coverage: bool,
    /// `requirepass` and `masterauth` for every node.
    pub password: Option<String>,
    /// Bound on the whole of [`RedisCluster::start`].
    pub start_timeout: Duration,
    /// More `redis.conf` lines as `(directive, value)`, written verbatim after the defaults
    /// (later lines win), e.g. `("maxmemory".into(), "64mb".into())`.
    pub extra_config: Vec<(String, String)>,
    /// ACL users, each an `ACL SETUSER`-style rule written as a `user <rule>` line, e.g.
    /// `"fds-worker on >secret ~vel:* +get"`. The harness itself uses the `default` user (with
    /// `password`, if set). Default: none.
    pub acl_users: Vec<String>,
    /// TLS-only nodes (`port 0`, `tls-port`, `tls-cluster yes`, `tls-replication yes`) with
    /// these files (see [`TestPki`](super::TestPki)); the harness then talks TLS too and
    /// [`RedisCluster::seed_urls`] are `rediss://`. Default: `None` (plaintext).
    pub tls: Option<ClusterTls>,
}

impl Default for ClusterOptions {
    fn default() -> ClusterOptions {
        ClusterOptions {
            masters: 3,
            replicas_per_master: 1,
            node_timeout: Duration::from_millis(2000),
            require_full_coverage: true,
            password: None,
            start_timeout: Duration::from_secs(30),
            extra_config: Vec::new(),
            acl_users: Vec::new(),
            tls: None,
        }
    }
}

impl ClusterOptions {
    /// Total number of nodes.
    pub fn node_count(&self) -> usize {
        self.masters * (1 + self.replicas_per_master)
    }
}

#[derive(Debug)]
struct Node {
    port: u16,
    dir: PathBuf,
    conf: PathBuf,
    child: Option<Child>,
    paused: bool,
    // Held for the cluster's lifetime so a restart finds its port still free of other clusters.
    _lease: PortLease,
}

impl Node {
    fn log(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn state(&mut self) -> &'static str {
        match (self.alive(), self.paused) {
            (false, _) => "stopped",
            (true, true) => "paused",
            (true, false) => "running",
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }
}

/// A Redis Cluster of real `redis-server` processes on 127.0.0.1, in a temporary directory with
/// one subdirectory per node (`redis.conf`, `redis.log`, `nodes.conf`, the AOF).
///
/// Nodes are numbered `0..node_count()`; an index names the same process (and port and
/// directory) for the cluster's whole life, whatever its role becomes after failovers.
///
/// Dropping it kills every node with SIGKILL (also while a test panics) and removes the
/// directory. It is `Send + Sync`: share it with `Arc` between threads. Every method blocks; see
/// the [module docs](super) for use from async code.
///
/// ```no_run
/// use fds_testkit::localstack::{ClusterOptions, RedisCluster};
/// use std::time::Duration;
///
/// let cluster = RedisCluster::start(ClusterOptions::default())?;
/// let master = cluster.master_for_slot(0).expect("slot 0 is served");
/// cluster.kill(master)?;
/// let promoted = cluster.wait_for_failover_of(master, Duration::from_secs(30))?;
/// assert_ne!(promoted, master);
/// # Ok::<(), fds_testkit::localstack::LocalStackError>(())
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    opts: ClusterOptions,
    root: PathBuf,
    redis_server: PathBuf,
    ports: Vec<u16>,
    nodes: Mutex<Vec<Node>>,
    last_healthy: Mutex<Option<Topology>>,
}

impl RedisCluster {
    /// Starts `opts.node_count()` nodes, creates the cluster with
    /// `redis-cli --cluster create … --cluster-replicas N`, and waits (bounded by
    /// `opts.start_timeout`) until every node reports `cluster_state:ok` with 16384 slots served,
    /// knows every node, agrees on who serves which slot, and every replica's link to its master
    /// is up.
    ///
    /// Fails with [`LocalStackError::MissingProgram`] (saying `apt-get install -y redis-server`)
    /// if `redis-server` or `redis-cli` is not installed.
    pub fn start(opts: ClusterOptions) -> Result<RedisCluster> {
        let started = Instant::now();
        if opts.masters < 3 {
            return Err(LocalStackError::Protocol {
                command: "cluster create".into(),
                detail: format!("a cluster needs at least 3 masters, not {}", opts.masters),
            });
        }
        let redis_server = node::require_program("redis-server", INSTALL_SERVER)?;
        node::require_program("redis-cli", INSTALL_CLI)?;
        let root = make_root_dir()?;
        // From here on, an early return drops `cluster`, which kills what was started.
        let mut cluster = RedisCluster {
            opts,
            root,
            redis_server,
            ports: Vec::new(),
            nodes: Mutex::new(Vec::new()),
            last_healthy: Mutex::new(None),
        };
        for index in 0..cluster.opts.node_count() {
            let node = cluster.spawn_new_node(index)?;
            cluster.lock_nodes().push(node);
        }
        for index in 0..cluster.opts.node_count() {
            cluster.await_new_node(index)?;
        }
        let ports = cluster.lock_nodes().iter().map(|n| n.port).collect();
        cluster.ports = ports;
        let addrs: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let remaining = cluster.opts.start_timeout.saturating_sub(started.elapsed());
        create_cluster(
            &addrs,
            cluster.opts.replicas_per_master,
            cluster.access(),
            remaining,
        )?;
        let remaining = cluster.opts.start_timeout.saturating_sub(started.elapsed());
        let (masters, replicas) = (
            cluster.opts.masters,
            cluster.opts.masters * cluster.opts.replicas_per_master,
        );
        cluster.wait_for_health(
            "the new cluster to be ok with every replica attached",
            remaining,
            |topology| {
                let have_masters = topology.live_masters().count();
                let have_replicas = topology
                    .nodes
                    .iter()
                    .filter(|n| n.role == Role::Replica && !n.failed)
                    .count();
                if have_masters == masters && have_replicas == replicas {
                    Ok(())
                } else {
                    Err(format!(
                        "{have_masters} masters and {have_replicas} replicas, want {masters} and {replicas}"
                    ))
                }
            },
        )?;
        tracing::debug!(
            ports = ?cluster.ports,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "local redis cluster started"
        );
        Ok(cluster)
    }

    /// Starts the cluster with [`ClusterOptions::default`].
    pub fn start_default() -> Result<RedisCluster> {
        RedisCluster::start(ClusterOptions::default())
    }

    /// The options the cluster was started with.
    pub fn options(&self) -> &ClusterOptions {
        &self.opts
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.ports.len()
    }

    /// Client port of every node, by index.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// Client port of node `index`.
    pub fn port(&self, index: usize) -> Result<u16> {
        self.ports
            .get(index)
            .copied()
            .ok_or(LocalStackError::NoSuchNode(index))
    }

    /// The node index listening on `port`.
    pub fn index_of_port(&self, port: u16) -> Option<usize> {
        self.ports.iter().position(|&p| p == port)
    }

    /// `redis://127.0.0.1:PORT` for every node (`rediss://` for a TLS cluster), without
    /// credentials (pass [`RedisCluster::password`] to the client separately, so URLs can be
    /// logged).
    pub fn seed_urls(&self) -> Vec<String> {
        let scheme = if self.opts.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        self.ports
            .iter()
            .map(|p| format!("{scheme}://127.0.0.1:{p}"))
            .collect()
    }

    /// The TLS files of a TLS cluster.
    pub fn tls(&self) -> Option<&ClusterTls> {
        self.opts.tls.as_ref()
    }

    fn access(&self) -> Access<'_> {
        Access {
            password: self.password(),
            tls: self.opts.tls.as_ref(),
        }
    }

    /// The password every node requires, if any.
    pub fn password(&self) -> Option<&str> {
        self.opts.password.as_deref()
    }

    /// The temporary directory holding one subdirectory per node.
    pub fn root_dir(&self) -> &Path {
        &self.root
    }

    /// The last `lines` lines of node `index`'s log.
    pub fn log_tail(&self, index: usize, lines: usize) -> Result<String> {
        let log = self.with_node(index, |n| Ok(n.log()))?;
        Ok(node::log_tail(&log, lines))
    }

    /// Process id of node `index`, if it is running (or paused).
    pub fn pid(&self, index: usize) -> Result<Option<u32>> {
        self.with_node(index, |n| {
            let alive = n.alive();
            Ok(n.child.as_ref().filter(|_| alive).map(Child::id))
        })
    }

    /// Whether node `index`'s process exists (running or paused).
    pub fn is_running(&self, index: usize) -> bool {
        self.with_node(index, |n| Ok(n.alive())).unwrap_or(false)
    }

    /// Whether node `index` is stopped with SIGSTOP.
    pub fn is_paused(&self, index: usize) -> bool {
        self.with_node(index, |n| Ok(n.alive() && n.paused))
            .unwrap_or(false)
    }

    /// A synchronous connection to node `index` with 1 s connect and 5 s read/write timeouts,
    /// authenticated if the cluster has a password. Not cluster-aware: it talks to that node only.
    pub fn connection(&self, index: usize) -> Result<redis::Connection> {
        let port = self.port(index)?;
        let con = node::connect(port, self.access(), Duration::from_secs(1))?;
        con.set_read_timeout(Some(Duration::from_secs(5)))?;
        con.set_write_timeout(Some(Duration::from_secs(5)))?;
        Ok(con)
    }

    /// Runs `cmd` on node `index` (see [`RedisCluster::connection`]).
    pub fn query<T: redis::FromRedisValue>(&self, index: usize, cmd: &redis::Cmd) -> Result<T> {
        let mut con = self.connection(index)?;
        Ok(cmd.query(&mut con)?)
    }

    /// Runs `redis-cli -h 127.0.0.1 -p PORT ARGS…` against node `index` (password passed through
    /// `REDISCLI_AUTH`, never on the command line) and returns its stdout. Bounded by 10 s.
    /// Note that redis-cli exits 0 on an error reply: the reply (e.g. `ERR …`) is in the output.
    pub fn cli<S: AsRef<str>>(&self, index: usize, args: &[S]) -> Result<String> {
        let port = self.port(index)?;
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
        if let Some(tls) = self.tls() {
            cmd.args(tls::cli_args(tls));
        }
        cmd.args(args.iter().map(AsRef::as_ref));
        if let Some(password) = self.password() {
            cmd.env("REDISCLI_AUTH", password);
        }
        let shown = format!(
            "redis-cli -p {port} {}",
            args.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(" ")
        );
        run_with_timeout(cmd, &shown, CLI_TIMEOUT)
    }

    /// Indexes of nodes that are running and not paused.
    fn live_nodes(&self) -> Vec<usize> {
        let mut nodes = self.lock_nodes();
        (0..nodes.len())
            .filter(|&i| nodes[i].alive() && !nodes[i].paused)
            .collect()
    }

    fn spawn_new_node(&self, index: usize) -> Result<Node> {
        let lease = reserve_port_pair()?;
        let dir = self.root.join(format!("node-{index}"));
        // A retry after a port clash starts from an empty directory.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| LocalStackError::io(format!("creating {}", dir.display()), e))?;
        let conf = NodeConfig {
            port: lease.port(),
            dir: &dir,
            node_timeout: self.opts.node_timeout,
            require_full_coverage: self.opts.require_full_coverage,
            password: self.password(),
            extra: &self.opts.extra_config,
            acl_users: &self.opts.acl_users,
            tls: self.opts.tls.as_ref(),
        }
        .write()?;
        let child = node::spawn(&self.redis_server, &conf)?;
        Ok(Node {
            port: lease.port(),
            dir,
            conf,
            child: Some(child),
            paused: false,
            _lease: lease,
        })
    }

    /// Waits for a node spawned by `spawn_new_node`, moving it to another port if its port was
    /// taken between the reservation and redis-server's bind.
    fn await_new_node(&self, index: usize) -> Result<()> {
        for _ in 0..BIND_ATTEMPTS {
            let mut nodes = self.lock_nodes();
            let n = &mut nodes[index];
            let (port, log) = (n.port, n.log());
            let Some(child) = n.child.as_mut() else {
                return Err(node_start_error(index, n, "not started".into()));
            };
            match node::wait_ready(child, port, self.access(), &log, NODE_READY_TIMEOUT) {
                Ok(()) => return Ok(()),
                Err(NotReady::Failed(reason)) => return Err(node_start_error(index, n, reason)),
                Err(NotReady::AddressInUse) => {
                    tracing::debug!(index, port = n.port, "port taken; retrying on another");
                    n.kill();
                    drop(nodes);
                    let replacement = self.spawn_new_node(index)?;
                    self.lock_nodes()[index] = replacement;
                }
            }
        }
        let mut nodes = self.lock_nodes();
        let n = &mut nodes[index];
        Err(node_start_error(
            index,
            n,
            format!("ports were taken {BIND_ATTEMPTS} times"),
        ))
    }

    fn with_node<T>(&self, index: usize, f: impl FnOnce(&mut Node) -> Result<T>) -> Result<T> {
        let mut nodes = self.lock_nodes();
        let n = nodes
            .get_mut(index)
            .ok_or(LocalStackError::NoSuchNode(index))?;
        f(n)
    }

    fn lock_nodes(&self) -> MutexGuard<'_, Vec<Node>> {
        // A panic while holding the lock leaves the node list consistent enough to kill.
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_last_healthy(&self) -> MutexGuard<'_, Option<Topology>> {
        self.last_healthy.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in self.lock_nodes().iter_mut() {
            n.kill();
        }
        super::remove_root_dir(&self.root);
    }
}

fn make_root_dir() -> Result<PathBuf> {
    super::make_root_dir("fds-redis-cluster-")
}

fn node_start_error(index: usize, n: &Node, reason: String) -> LocalStackError {
    LocalStackError::NodeStart {
        index,
        port: n.port,
        reason,
        log: n.log(),
        log_tail: node::log_tail(&n.log(), 20),
    }
}
