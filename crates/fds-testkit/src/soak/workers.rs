//! The soak's worker processes: a group of `fds-worker run` processes in one consumer group,
//! each under a transactional id of its own, that the nemesis kills, stops, pauses, restarts,
//! adds and removes. Every incarnation logs to its own file and has its RSS sampled.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::bench::process::status_bytes;

/// One incarnation of a worker (a process; a restart is a new incarnation, same id).
pub struct Incarnation {
    child: Child,
    started: Instant,
    /// RSS (bytes) sampled once the worker has warmed up ([`WorkerGroup::sample_rss`]).
    pub warm_rss: Option<u64>,
    /// The latest RSS sample (bytes).
    pub last_rss: Option<u64>,
    paused: bool,
    /// SIGTERM sent: draining, not counted as running, its exit expected.
    stopping: bool,
}

/// What one incarnation used, for the memory check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RssRecord {
    /// The worker's id (its transactional id).
    pub worker: String,
    /// How long this incarnation ran (s).
    pub lived_s: f64,
    /// RSS after warm-up (bytes).
    pub warm_rss: Option<u64>,
    /// RSS at its end (bytes).
    pub end_rss: Option<u64>,
}

/// The workers of one soak.
pub struct WorkerGroup {
    binary: PathBuf,
    config_file: PathBuf,
    env: Vec<(String, String)>,
    log_dir: PathBuf,
    /// The uid (and gid) the workers run as, if not the soak's own ([`WorkerGroup::run_as`]).
    uid: Option<u32>,
    /// Per worker slot: its id, its running incarnation (`None` while it is down), and
    /// whether it left the group for good (a joined worker that left again).
    slots: Vec<(String, Option<Incarnation>, bool)>,
    /// Slots whose worker exited on its own (a clear stop), to be started again.
    exited: Vec<usize>,
    /// Workers that exited on their own, over the run.
    pub exits_on_their_own: usize,
    /// SIGTERMed workers that did not exit 0.
    pub unclean_stops: usize,
    started_total: usize,
    /// Incarnations that ended, for the memory check.
    pub ended: Vec<RssRecord>,
}

/// A worker counts as warmed up (its RSS a baseline) this long after it started.
pub const WARM_UP: Duration = Duration::from_secs(20);

impl WorkerGroup {
    /// A group of workers running `binary run --config config_file` with `env`, logging into
    /// `log_dir`; none started yet.
    pub fn new(
        binary: &Path,
        config_file: &Path,
        env: Vec<(String, String)>,
        log_dir: &Path,
    ) -> WorkerGroup {
        WorkerGroup {
            binary: binary.to_owned(),
            config_file: config_file.to_owned(),
            env,
            log_dir: log_dir.to_owned(),
            uid: None,
            slots: Vec::new(),
            exited: Vec::new(),
            exits_on_their_own: 0,
            unclean_stops: 0,
            started_total: 0,
            ended: Vec::new(),
        }
    }

    /// Workers started from now on run as `uid` (and a gid of the same number): the uid a
    /// [`NetworkCut`](crate::localstack::NetworkCut) partitions. Checks first that a process of
    /// that uid can run the binary (`--version`); an error says why not.
    pub fn run_as(&mut self, uid: u32) -> anyhow::Result<()> {
        let status = Command::new(&self.binary)
            .arg("--version")
            .uid(uid)
            .gid(uid)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("running {} as uid {uid}", self.binary.display()))?;
        anyhow::ensure!(
            status.success(),
            "{} --version as uid {uid}: {status}",
            self.binary.display()
        );
        self.uid = Some(uid);
        Ok(())
    }

    /// Adds a worker slot and starts it; returns its index.
    pub fn add(&mut self) -> anyhow::Result<usize> {
        let index = self.slots.len();
        self.slots
            .push((format!("soak-worker-{index}"), None, false));
        self.start(index)?;
        Ok(index)
    }

    /// Starts worker `index` (a new incarnation under the same transactional id), unless it
    /// is running. Returns false (nothing started) while its last incarnation still drains.
    pub fn start(&mut self, index: usize) -> anyhow::Result<bool> {
        self.reap();
        if self.slots[index].1.is_some() {
            return Ok(self.slots[index].1.as_ref().is_some_and(|w| !w.stopping));
        }
        self.exited.retain(|i| *i != index);
        let id = self.slots[index].0.clone();
        self.started_total += 1;
        let log_path = self
            .log_dir
            .join(format!("{id}.{}.log", self.started_total));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut command = Command::new(&self.binary);
        if let Some(uid) = self.uid {
            command.uid(uid).gid(uid);
        }
        let child = command
            .arg("--config")
            .arg(&self.config_file)
            .arg("run")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("FDS_KAFKA__TRANSACTIONS__ID", &id)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.slots[index].1 = Some(Incarnation {
            child,
            started: Instant::now(),
            warm_rss: None,
            last_rss: None,
            paused: false,
            stopping: false,
        });
        Ok(true)
    }

    /// Workers in the group (running, paused or down; not those that left for good).
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| !s.2).count()
    }

    /// Whether the group has no workers.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Worker `index` leaves the group for good (SIGTERM; it drains and exits meanwhile).
    pub fn retire(&mut self, index: usize) {
        self.slots[index].2 = true;
        self.stop(index);
    }

    /// The id of worker `index`.
    pub fn id(&self, index: usize) -> &str {
        &self.slots[index].0
    }

    /// Indexes of the workers running now (not paused), after noticing any that exited.
    pub fn running(&mut self) -> Vec<usize> {
        self.reap();
        (0..self.slots.len())
            .filter(|i| {
                self.slots[*i]
                    .1
                    .as_ref()
                    .is_some_and(|w| !w.paused && !w.stopping)
            })
            .collect()
    }

    /// Indexes of the workers that are down (exited or killed, not retired).
    pub fn down(&mut self) -> Vec<usize> {
        self.reap();
        (0..self.slots.len())
            .filter(|i| self.slots[*i].1.is_none() && !self.slots[*i].2)
            .collect()
    }

    /// Starts again every worker that exited on its own, as an orchestrator would.
    pub fn restart_exited(&mut self) -> anyhow::Result<()> {
        self.reap();
        for index in std::mem::take(&mut self.exited) {
            if !self.slots[index].2 {
                self.start(index)?;
            }
        }
        Ok(())
    }

    /// `kill -9` worker `index`.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut worker) = self.slots[index].1.take() {
            let _ = worker.child.kill();
            let _ = worker.child.wait();
            self.ended(index, worker);
        }
    }

    /// SIGTERM worker `index` and wait (at most `timeout`, then `kill -9`) for it to drain and
    /// exit; returns its exit code (`None`: killed, or ended by a signal).
    pub fn terminate(&mut self, index: usize, timeout: Duration) -> Option<i32> {
        let mut worker = self.slots[index].1.take()?;
        if worker.paused {
            let _ = kill(Pid::from_raw(worker.child.id() as i32), Signal::SIGCONT);
        }
        let _ = kill(Pid::from_raw(worker.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + timeout;
        let code = loop {
            match worker.child.try_wait() {
                Ok(Some(status)) => break status.code(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = worker.child.kill();
                    let _ = worker.child.wait();
                    break None;
                }
            }
        };
        self.ended(index, worker);
        code
    }

    /// SIGTERM worker `index` without waiting: it drains and exits meanwhile (a
    /// [`start`](Self::start) waits for that exit).
    pub fn stop(&mut self, index: usize) {
        if let Some(worker) = &mut self.slots[index].1 {
            let pid = Pid::from_raw(worker.child.id() as i32);
            if worker.paused {
                let _ = kill(pid, Signal::SIGCONT);
                worker.paused = false;
            }
            let _ = kill(pid, Signal::SIGTERM);
            worker.stopping = true;
        }
    }

    /// SIGSTOP (`pause = true`) or SIGCONT worker `index`.
    pub fn pause(&mut self, index: usize, pause: bool) {
        if let Some(worker) = &mut self.slots[index].1 {
            let signal = if pause {
                Signal::SIGSTOP
            } else {
                Signal::SIGCONT
            };
            let _ = kill(Pid::from_raw(worker.child.id() as i32), signal);
            worker.paused = pause;
        }
    }

    /// Samples every running worker's RSS (`VmRSS`); the first sample after [`WARM_UP`] is
    /// its baseline. Returns the sum over the running workers (bytes).
    pub fn sample_rss(&mut self) -> u64 {
        let mut total = 0;
        for (_, worker, _) in &mut self.slots {
            let Some(worker) = worker else { continue };
            let Some(rss) = status_bytes(worker.child.id(), "VmRSS:") else {
                continue;
            };
            total += rss;
            worker.last_rss = Some(rss);
            if worker.warm_rss.is_none() && worker.started.elapsed() >= WARM_UP {
                worker.warm_rss = Some(rss);
            }
        }
        total
    }

    /// Stops every worker (SIGTERM, drain, exit) and returns their exit codes by id.
    pub fn stop_all(&mut self, timeout: Duration) -> Vec<(String, Option<i32>)> {
        (0..self.slots.len())
            .filter(|i| self.slots[*i].1.is_some())
            .collect::<Vec<_>>()
            .into_iter()
            .map(|i| (self.slots[i].0.clone(), self.terminate(i, timeout)))
            .collect()
    }

    /// Notices workers that exited on their own (a clear stop: e.g. a fenced producer).
    fn reap(&mut self) {
        for index in 0..self.slots.len() {
            let exited = match &mut self.slots[index].1 {
                Some(worker) => match worker.child.try_wait() {
                    Ok(Some(status)) => Some((status, worker.stopping)),
                    _ => None,
                },
                None => None,
            };
            let Some((status, stopping)) = exited else {
                continue;
            };
            if let Some(worker) = self.slots[index].1.take() {
                if stopping {
                    if !status.success() {
                        tracing::warn!(worker = %self.slots[index].0, %status, "a drain did not exit 0");
                        self.unclean_stops += 1;
                    }
                } else {
                    tracing::warn!(worker = %self.slots[index].0, %status, "a worker exited on its own");
                    self.exits_on_their_own += 1;
                    self.exited.push(index);
                }
                self.ended(index, worker);
            }
        }
    }

    /// The running incarnations' memory now: warm-up RSS and the latest sample.
    pub fn running_rss(&self) -> Vec<RssRecord> {
        self.slots
            .iter()
            .filter_map(|(id, worker, _)| {
                let worker = worker.as_ref()?;
                Some(RssRecord {
                    worker: id.clone(),
                    lived_s: worker.started.elapsed().as_secs_f64(),
                    warm_rss: worker.warm_rss,
                    end_rss: worker.last_rss,
                })
            })
            .collect()
    }

    fn ended(&mut self, index: usize, worker: Incarnation) {
        self.ended.push(RssRecord {
            worker: self.slots[index].0.clone(),
            lived_s: worker.started.elapsed().as_secs_f64(),
            warm_rss: worker.warm_rss,
            end_rss: worker.last_rss,
        });
    }
}

impl Drop for WorkerGroup {
    fn drop(&mut self) {
        for (_, worker, _) in &mut self.slots {
            if let Some(worker) = worker {
                let _ = worker.child.kill();
                let _ = worker.child.wait();
            }
        }
    }
}
