//! The nemesis: faults picked at random (from a seed, so a schedule can be replayed) from the
//! whole catalog, applied to the running stack and workers, and healed after a random hold.
//!
//! It never takes away more than the stack survives: one Redis fault at a time, and a new
//! one only once the cluster is whole again (every node up, every master with a replica); one
//! broker fault at a time (replication factor 3, `min.insync.replicas` 2), a new one only
//! once every replica is back in sync; one worker fault at a time, and never the last worker
//! running; one registry freeze at a time. Faults of different kinds do overlap: that is the
//! point.
//!
//! What blocks for long — a broker's controlled shutdown and JVM start, a reshard — runs on a
//! thread of its own ([`Heal::Await`]), so the nemesis heals every other fault on time
//! meanwhile (a 5 s master pause must not last as long as a broker restart).

use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::workers::WorkerGroup;
use crate::demo::LocalStack;
use crate::localstack::redis_cluster::run_with_timeout;
use crate::localstack::{Apicurio, LocalStackError, NetworkCut};

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// `kill -9` a Redis master; healed by restarting it (it rejoins as a replica).
    RedisMasterKill,
    /// `SIGSTOP` a Redis master past `cluster-node-timeout` (its replica takes over), then
    /// `SIGCONT` (it comes back as a zombie master and is demoted).
    RedisMasterPause,
    /// `CLUSTER FAILOVER` on a replica (a clean hand-over).
    RedisManualFailover,
    /// Slots moved from one master to another (`redis-cli --cluster reshard`: MOVED and ASK).
    RedisSlotMigration,
    /// A partition between the workers and one Redis master ([`NetworkCut`]: what the
    /// workers send to its port is dropped; the cluster sees nothing and keeps it master);
    /// healed by lifting it. Only where nftables can be used.
    RedisPartition,
    /// A master out of memory under `noeviction` (`CONFIG SET maxmemory 1`: every write is
    /// answered `OOM`, as a full node answers); healed by restoring its `maxmemory`.
    RedisMemoryFull,
    /// `kill -9` a broker; healed by restarting it with its data.
    BrokerKill,
    /// `SIGSTOP` a broker past the controller's session timeout, then `SIGCONT`.
    BrokerPause,
    /// A controlled shutdown (SIGTERM) and restart of a broker, as a rolling upgrade does.
    BrokerRestart,
    /// `kill -9` a worker process; healed by starting it again (same transactional id).
    WorkerKill,
    /// SIGTERM a worker (it drains and exits 0), then start it again.
    WorkerStop,
    /// `SIGSTOP` a worker past its session (a zombie), then `SIGCONT`.
    WorkerPause,
    /// One more worker joins the group; healed by it leaving (SIGTERM).
    WorkerJoin,
    /// `SIGSTOP` the Schema Registry (requests time out), then `SIGCONT`: cached ids flow, a
    /// worker starting meanwhile waits for it.
    RegistryPause,
}

impl FaultKind {
    const REDIS: [FaultKind; 6] = [
        FaultKind::RedisMasterKill,
        FaultKind::RedisMasterPause,
        FaultKind::RedisManualFailover,
        FaultKind::RedisSlotMigration,
        FaultKind::RedisPartition,
        FaultKind::RedisMemoryFull,
    ];
    const BROKER: [FaultKind; 3] = [
        FaultKind::BrokerKill,
        FaultKind::BrokerPause,
        FaultKind::BrokerRestart,
    ];

    fn class(self) -> Class {
        if Self::REDIS.contains(&self) {
            Class::Redis
        } else if Self::BROKER.contains(&self) {
            Class::Broker
        } else if self == FaultKind::RegistryPause {
            Class::Registry
        } else {
            Class::Worker
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Redis,
    Broker,
    Worker,
    Registry,
}

/// A fault at a set time instead of one drawn at random: a schedule that once went wrong,
/// replayed on purpose (a regression test, `fds-worker soak --faults`). Its target is the
/// first candidate (e.g. the first master of `CLUSTER NODES` order), so two planned Redis
/// faults in a row hit the same master unless the first one moved it.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// What.
    pub kind: FaultKind,
    /// When (s since the soak started); later if the stack is not whole enough for it then
    /// (the same rules as a random fault).
    pub at_s: f64,
    /// How long it is held before it is healed (s).
    pub hold_s: f64,
}

impl std::str::FromStr for Planned {
    type Err = String;

    /// `kind@at+hold`, e.g. `redis_partition@20s+9s` (durations as `humantime` reads them).
    fn from_str(spec: &str) -> Result<Planned, String> {
        let shape = || format!("`{spec}`: expected kind@at+hold, e.g. redis_partition@20s+9s");
        let (kind, times) = spec.trim().split_once('@').ok_or_else(shape)?;
        let (at, hold) = times.split_once('+').ok_or_else(shape)?;
        let kind: FaultKind = serde_json::from_value(serde_json::Value::String(kind.to_owned()))
            .map_err(|_| format!("`{spec}`: `{kind}` is not a fault kind"))?;
        let seconds = |text: &str| {
            humantime::parse_duration(text)
                .map(|d| d.as_secs_f64())
                .map_err(|e| format!("`{spec}`: `{text}`: {e}"))
        };
        Ok(Planned {
            kind,
            at_s: seconds(at)?,
            hold_s: seconds(hold)?,
        })
    }
}

/// A comma-separated list of [`Planned`] faults, in time order.
pub fn parse_schedule(spec: &str) -> Result<Vec<Planned>, String> {
    let mut planned: Vec<Planned> = spec
        .split(',')
        .filter(|part| !part.trim().is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    planned.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    Ok(planned)
}

/// A fault as it happened, for the report and the timeline.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FaultRecord {
    /// What.
    pub kind: FaultKind,
    /// On what: a Redis node (`redis:<port>`), a broker (`broker:<id>`) or a worker id.
    pub target: String,
    /// When it was applied (s since the soak started).
    pub at_s: f64,
    /// When it was healed (s since the soak started); equal to `at_s` for instant faults.
    pub healed_s: Option<f64>,
}

/// A fault applied and not yet healed.
struct Active {
    record: usize,
    heal_at_s: f64,
    heal: Heal,
}

/// How to heal an active fault.
enum Heal {
    RestartRedis(usize),
    ResumeRedis(usize),
    Reconnect(u16),
    /// The node and the `maxmemory` it had.
    RestoreMaxmemory(usize, String),
    RestartBroker(i32),
    ResumeBroker(i32),
    StartWorker(usize),
    ResumeWorker(usize),
    StopWorker(usize),
    ResumeRegistry,
    /// Blocking work under way on its own thread (a broker restart, a reshard): healed when it
    /// is done; what it returns is added to the fault's target.
    Await(Background),
    /// Nothing to undo (instant faults), but the class stays busy until the stack is whole.
    Nothing,
}

/// Blocking work of the nemesis on a thread of its own; its result may say more about the
/// fault (e.g. a reshard stopped half-way).
type Background = JoinHandle<anyhow::Result<Option<String>>>;

/// What a heal did.
enum Healing {
    /// Healed, with a note for the fault's target, if any.
    Done(Option<String>),
    /// Not yet: try again at the next step with this heal.
    Later(Heal),
}

/// Runs `work` on a thread of its own.
fn background(
    stack: &Arc<LocalStack>,
    work: impl FnOnce(&LocalStack) -> anyhow::Result<Option<String>> + Send + 'static,
) -> Heal {
    let stack = Arc::clone(stack);
    Heal::Await(std::thread::spawn(move || work(&stack)))
}

/// The fault schedule and what is applied now.
pub struct Nemesis {
    rng: ChaCha8Rng,
    mean_gap: Duration,
    next_at_s: f64,
    active: Vec<Active>,
    /// Every fault so far.
    pub faults: Vec<FaultRecord>,
    node_timeout: Duration,
    session_timeout: Duration,
    max_workers: usize,
    /// The Schema Registry, if the soak runs one.
    registry: Option<Arc<Apicurio>>,
    /// The partition between the workers and a Redis node, where nftables can make one.
    cut: Option<Arc<NetworkCut>>,
    /// Planned faults instead of random ones, if set.
    script: Option<std::collections::VecDeque<Planned>>,
}

impl Nemesis {
    /// A nemesis drawing from `rng`, a fault every `mean_gap` on average (uniform in
    /// 0.5–1.5 × `mean_gap`), the first after one gap. Pauses outlast `node_timeout` (Redis) and
    /// `session_timeout` (workers); at most `max_workers` workers run at once; `registry`, if
    /// any, is frozen at times; `cut`, if any, partitions the workers from a Redis master.
    #[allow(clippy::too_many_arguments)] // each is one fact of the soak's stack
    pub fn new(
        rng: ChaCha8Rng,
        mean_gap: Duration,
        node_timeout: Duration,
        session_timeout: Duration,
        max_workers: usize,
        registry: Option<Arc<Apicurio>>,
        cut: Option<Arc<NetworkCut>>,
    ) -> Nemesis {
        let mut nemesis = Nemesis {
            rng,
            mean_gap,
            next_at_s: 0.0,
            active: Vec::new(),
            faults: Vec::new(),
            node_timeout,
            session_timeout,
            max_workers,
            registry,
            cut,
            script: None,
        };
        nemesis.next_at_s = nemesis.gap();
        nemesis
    }

    /// The same nemesis throwing exactly `planned` (in time order), nothing at random.
    pub fn with_schedule(mut self, planned: Vec<Planned>) -> Nemesis {
        self.script = Some(planned.into());
        self
    }

    fn gap(&mut self) -> f64 {
        self.mean_gap.as_secs_f64() * self.rng.random_range(0.5..1.5)
    }

    /// One step at `now_s` (blocking: call from a blocking thread): heals what is due, and
    /// applies the next fault if it is time and `inject` (false once the soak's time is up).
    pub fn step(
        &mut self,
        now_s: f64,
        inject: bool,
        stack: &Arc<LocalStack>,
        workers: &Mutex<WorkerGroup>,
    ) -> anyhow::Result<()> {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.active)
            .into_iter()
            .partition(|a| a.heal_at_s <= now_s || !inject);
        self.active = later;
        for active in due {
            match heal(active.heal, stack, workers, self)? {
                Healing::Done(note) => {
                    let fault = &mut self.faults[active.record];
                    fault.healed_s = Some(now_s);
                    if let Some(note) = note {
                        fault.target.push_str(&format!(" ({note})"));
                    }
                }
                // Not yet possible (a stopped worker still drains, a restart still runs):
                // next step.
                Healing::Later(heal) => self.active.push(Active { heal, ..active }),
            }
        }
        if !inject {
            return Ok(());
        }
        if let Some(script) = &self.script {
            let Some(planned) = script.front().filter(|p| p.at_s <= now_s).cloned() else {
                return Ok(());
            };
            // Not before the stack is whole enough for it: next step.
            if self.allowed(stack, workers).contains(&planned.kind) {
                self.script.as_mut().map(|script| script.pop_front());
                self.inject(now_s, planned.kind, Some(planned.hold_s), stack, workers)?;
            }
        } else if now_s >= self.next_at_s {
            self.next_at_s = now_s + self.gap();
            let allowed = self.allowed(stack, workers);
            if allowed.is_empty() {
                // Everything is still recovering: try again soon.
                self.next_at_s = now_s + 1.0;
            } else {
                let kind = allowed[self.rng.random_range(0..allowed.len())];
                self.inject(now_s, kind, None, stack, workers)?;
            }
        }
        Ok(())
    }

    /// Heals every active fault now.
    pub fn heal_all(
        &mut self,
        now_s: f64,
        stack: &Arc<LocalStack>,
        workers: &Mutex<WorkerGroup>,
    ) -> anyhow::Result<()> {
        self.step(now_s, false, stack, workers)
    }

    /// Faults applied and not healed yet.
    pub fn active(&self) -> usize {
        self.active.len()
    }

    fn busy(&self, class: Class) -> bool {
        self.active
            .iter()
            .any(|a| self.faults[a.record].kind.class() == class)
    }

    /// The kinds of fault the stack can take now: one per class at a time, and only once
    /// the class's part of the stack is whole again.
    fn allowed(&self, stack: &Arc<LocalStack>, workers: &Mutex<WorkerGroup>) -> Vec<FaultKind> {
        let kafka = stack.kafka.apache().expect("the soak runs on Apache Kafka");
        let mut allowed: Vec<FaultKind> = Vec::new();
        if !self.busy(Class::Redis) && redis_whole(stack) {
            allowed.extend(
                FaultKind::REDIS
                    .into_iter()
                    .filter(|k| *k != FaultKind::RedisPartition || self.cut.is_some()),
            );
        }
        if !self.busy(Class::Broker) && kafka.wait_healthy(Duration::from_millis(500)).is_ok() {
            allowed.extend(FaultKind::BROKER);
        }
        let mut group = lock(workers);
        if !self.busy(Class::Worker) && group.down().is_empty() {
            if group.running().len() >= 2 {
                allowed.extend([
                    FaultKind::WorkerKill,
                    FaultKind::WorkerStop,
                    FaultKind::WorkerPause,
                ]);
            }
            if group.len() < self.max_workers {
                allowed.push(FaultKind::WorkerJoin);
            }
        }
        drop(group);
        if self.registry.is_some() && !self.busy(Class::Registry) {
            allowed.push(FaultKind::RegistryPause);
        }
        allowed
    }

    /// Applies `kind` now and books it, held for `hold_s` if given (a planned fault), else for
    /// a random time.
    fn inject(
        &mut self,
        now_s: f64,
        kind: FaultKind,
        hold_s: Option<f64>,
        stack: &Arc<LocalStack>,
        workers: &Mutex<WorkerGroup>,
    ) -> anyhow::Result<()> {
        let hold = self.rng.random_range(3.0..12.0);
        let (target, heal, hold) = self.apply(kind, hold, stack, workers)?;
        let hold = hold_s.unwrap_or(hold);
        tracing::info!(?kind, on = %target, at_s = now_s, "fault");
        self.faults.push(FaultRecord {
            kind,
            target,
            at_s: now_s,
            healed_s: None,
        });
        self.active.push(Active {
            record: self.faults.len() - 1,
            heal_at_s: now_s + hold,
            heal,
        });
        Ok(())
    }

    /// Applies `kind`; returns its target, its heal and how long to hold it.
    fn apply(
        &mut self,
        kind: FaultKind,
        hold: f64,
        stack: &Arc<LocalStack>,
        workers: &Mutex<WorkerGroup>,
    ) -> anyhow::Result<(String, Heal, f64)> {
        let cluster = &stack.cluster;
        let kafka = stack.kafka.apache().expect("Apache Kafka");
        let redis_name = |node: usize| format!("redis:{}", cluster.port(node).unwrap_or(0));
        let past_node_timeout = self.node_timeout.as_secs_f64() + 2.0;
        Ok(match kind {
            FaultKind::RedisMasterKill => {
                let node = self.pick(&cluster.masters());
                cluster.kill(node)?;
                (redis_name(node), Heal::RestartRedis(node), hold)
            }
            FaultKind::RedisMasterPause => {
                let node = self.pick(&cluster.masters());
                cluster.pause(node)?;
                let hold = past_node_timeout + self.rng.random_range(0.0..3.0);
                (redis_name(node), Heal::ResumeRedis(node), hold)
            }
            FaultKind::RedisManualFailover => {
                let master = self.pick(&cluster.masters());
                let replica = self.pick(&cluster.replicas_of(master));
                let _: String = cluster.query(replica, redis::cmd("CLUSTER").arg("FAILOVER"))?;
                (redis_name(replica), Heal::Nothing, 2.0)
            }
            FaultKind::RedisSlotMigration => {
                let masters = cluster.masters();
                let from = self.pick(&masters);
                let others: Vec<usize> = masters.into_iter().filter(|m| *m != from).collect();
                let to = self.pick(&others);
                let slots = self.rng.random_range(50..400);
                let target = format!("{slots} slots {} -> {}", redis_name(from), redis_name(to));
                let migrate = background(stack, move |stack| {
                    match reshard(stack, from, to, slots) {
                        Ok(()) => Ok(None),
                        Err(e) => {
                            // redis-cli refuses (or stops half-way) when the nodes do not
                            // agree yet, e.g. just after a failover: the slots left migrating
                            // are fixed and the soak goes on (the half-done migration was a
                            // fault all the same).
                            tracing::warn!(error = %e, "slot migration failed; fixing the cluster");
                            fix(stack, from)?;
                            Ok(Some("stopped half-way, fixed".to_owned()))
                        }
                    }
                });
                (target, migrate, 0.0)
            }
            FaultKind::RedisPartition => {
                let node = self.pick(&cluster.masters());
                let port = cluster.port(node)?;
                let cut = self.cut.as_ref().expect("a partition fault has a cut");
                cut.cut(port)?;
                (redis_name(node), Heal::Reconnect(port), hold)
            }
            FaultKind::RedisMemoryFull => {
                let node = self.pick(&cluster.masters());
                let (_, before): (String, String) =
                    cluster.query(node, redis::cmd("CONFIG").arg("GET").arg("maxmemory"))?;
                let _: () = cluster.query(
                    node,
                    redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(1),
                )?;
                (redis_name(node), Heal::RestoreMaxmemory(node, before), hold)
            }
            FaultKind::BrokerKill => {
                let id = self.rng.random_range(1..=kafka.broker_count());
                kafka.kill(id)?;
                (format!("broker:{id}"), Heal::RestartBroker(id), hold)
            }
            FaultKind::BrokerPause => {
                let id = self.rng.random_range(1..=kafka.broker_count());
                kafka.pause(id)?;
                (format!("broker:{id}"), Heal::ResumeBroker(id), hold)
            }
            FaultKind::BrokerRestart => {
                let id = self.rng.random_range(1..=kafka.broker_count());
                let restart = background(stack, move |stack| {
                    let kafka = stack.kafka.apache().expect("Apache Kafka");
                    kafka.stop(id)?;
                    kafka.restart(id)?;
                    Ok(None)
                });
                (format!("broker:{id}"), restart, 0.0)
            }
            FaultKind::WorkerKill => {
                let mut group = lock(workers);
                let index = self.pick(&group.running());
                group.kill(index);
                (group.id(index).to_owned(), Heal::StartWorker(index), hold)
            }
            FaultKind::WorkerStop => {
                let mut group = lock(workers);
                let index = self.pick(&group.running());
                group.stop(index);
                (group.id(index).to_owned(), Heal::StartWorker(index), hold)
            }
            FaultKind::WorkerPause => {
                let mut group = lock(workers);
                let index = self.pick(&group.running());
                group.pause(index, true);
                let hold = self.session_timeout.as_secs_f64() + self.rng.random_range(2.0..6.0);
                (group.id(index).to_owned(), Heal::ResumeWorker(index), hold)
            }
            FaultKind::WorkerJoin => {
                let mut group = lock(workers);
                let index = group.add()?;
                let hold = hold * 3.0;
                (group.id(index).to_owned(), Heal::StopWorker(index), hold)
            }
            FaultKind::RegistryPause => {
                let registry = self.registry.as_ref().expect("a registry fault has one");
                registry.pause()?;
                (
                    format!("registry:{}", registry.port()),
                    Heal::ResumeRegistry,
                    hold,
                )
            }
        })
    }

    /// A target among `from`: at random, or the first under a schedule.
    fn pick(&mut self, from: &[usize]) -> usize {
        if self.script.is_some() {
            return from[0];
        }
        from[self.rng.random_range(0..from.len())]
    }
}

/// Heals, or says to try again later (a stopped worker still drains, blocking work runs).
fn heal(
    heal: Heal,
    stack: &Arc<LocalStack>,
    workers: &Mutex<WorkerGroup>,
    nemesis: &Nemesis,
) -> anyhow::Result<Healing> {
    let kafka = stack.kafka.apache().expect("Apache Kafka");
    match heal {
        Heal::RestartRedis(node) => stack.cluster.restart(node)?,
        Heal::ResumeRedis(node) => stack.cluster.resume(node)?,
        Heal::Reconnect(port) => {
            if let Some(cut) = &nemesis.cut {
                cut.heal(port)?;
            }
        }
        Heal::RestoreMaxmemory(node, before) => {
            let _: () = stack.cluster.query(
                node,
                redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(before),
            )?;
        }
        Heal::RestartBroker(id) => {
            // The JVM takes seconds to start: on its own thread, done when the broker is back.
            return Ok(Healing::Later(background(stack, move |stack| {
                let kafka = stack.kafka.apache().expect("Apache Kafka");
                kafka.restart(id)?;
                Ok(None)
            })));
        }
        Heal::ResumeBroker(id) => kafka.resume(id)?,
        Heal::StartWorker(index) => {
            if !lock(workers).start(index)? {
                return Ok(Healing::Later(Heal::StartWorker(index)));
            }
        }
        Heal::ResumeWorker(index) => lock(workers).pause(index, false),
        Heal::StopWorker(index) => lock(workers).retire(index),
        Heal::ResumeRegistry => {
            if let Some(registry) = &nemesis.registry {
                registry.resume()?;
            }
        }
        Heal::Await(work) => {
            if !work.is_finished() {
                return Ok(Healing::Later(Heal::Await(work)));
            }
            let note = work
                .join()
                .map_err(|_| anyhow::anyhow!("the nemesis's background work panicked"))??;
            return Ok(Healing::Done(note));
        }
        Heal::Nothing => {}
    }
    Ok(Healing::Done(None))
}

/// Every Redis node up and unpaused, the cluster `ok`, and every master with a replica.
fn redis_whole(stack: &LocalStack) -> bool {
    let cluster = &stack.cluster;
    (0..cluster.node_count()).all(|n| cluster.is_running(n) && !cluster.is_paused(n))
        && cluster
            .wait_for_state_ok(Duration::from_millis(500))
            .is_ok()
        && {
            let masters = cluster.masters();
            masters.len() == 3 && masters.iter().all(|m| !cluster.replicas_of(*m).is_empty())
        }
}

/// Moves `slots` slots from master `from` to master `to` with `redis-cli --cluster reshard`.
fn reshard(stack: &LocalStack, from: usize, to: usize, slots: u32) -> anyhow::Result<()> {
    let cluster = &stack.cluster;
    let id = |node: usize| -> anyhow::Result<String> {
        Ok(cluster.query(node, redis::cmd("CLUSTER").arg("MYID"))?)
    };
    let entry = format!("127.0.0.1:{}", cluster.port(from)?);
    let mut command = std::process::Command::new("redis-cli");
    if let Some(password) = cluster.password() {
        command.args(["-a", password, "--no-auth-warning"]);
    }
    command
        .args(["--cluster", "reshard", &entry])
        .args(["--cluster-from", &id(from)?, "--cluster-to", &id(to)?])
        .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
        .args(["--cluster-pipeline", "10"]);
    run_cli(command, "reshard")
}

/// `redis-cli --cluster fix` through master `entry`: slots left open by a migration closed.
fn fix(stack: &LocalStack, entry: usize) -> anyhow::Result<()> {
    let cluster = &stack.cluster;
    let mut command = std::process::Command::new("redis-cli");
    if let Some(password) = cluster.password() {
        command.args(["-a", password, "--no-auth-warning"]);
    }
    let entry = format!("127.0.0.1:{}", cluster.port(entry)?);
    command.args(["--cluster", "fix", &entry, "--cluster-yes"]);
    run_cli(command, "fix")
}

/// A `redis-cli --cluster` command that runs longer is stopped (the soak is bounded; a reshard
/// stopped that way is fixed like one that failed).
const CLI_LIMIT: Duration = Duration::from_secs(120);

/// Runs a `redis-cli --cluster` command (at most [`CLI_LIMIT`]); an error carries the end of
/// what it printed (its reasons go to stdout).
fn run_cli(command: std::process::Command, what: &str) -> anyhow::Result<()> {
    let shown = format!("redis-cli --cluster {what}");
    match run_with_timeout(command, &shown, CLI_LIMIT) {
        Ok(_) => Ok(()),
        Err(LocalStackError::Command { status, output, .. }) => {
            let tail: Vec<&str> = output.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            anyhow::bail!("{shown}: {status}: {}", tail.join(" | "))
        }
        Err(e) => Err(e.into()),
    }
}

/// The worker group, even if a thread panicked holding it.
pub fn lock(workers: &Mutex<WorkerGroup>) -> MutexGuard<'_, WorkerGroup> {
    workers.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_reads_kind_time_and_hold_and_comes_out_in_time_order() {
        let planned = parse_schedule("redis_master_kill@1m+8s, redis_partition@20s+9500ms")
            .expect("a valid schedule");
        assert_eq!(
            planned,
            vec![
                Planned {
                    kind: FaultKind::RedisPartition,
                    at_s: 20.0,
                    hold_s: 9.5
                },
                Planned {
                    kind: FaultKind::RedisMasterKill,
                    at_s: 60.0,
                    hold_s: 8.0
                },
            ]
        );
        for bad in [
            "redis_master_kill",
            "redis_master_kill@10s",
            "nope@1s+1s",
            "broker_kill@x+1s",
        ] {
            let error = parse_schedule(bad).expect_err(bad);
            assert!(error.contains(bad), "{error}");
        }
    }
}
