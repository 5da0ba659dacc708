//! The worker as its own process (so its memory is its own), with its RSS sampled.

use std::io::Read as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;

use fds_worker::config::Config;

/// A running `fds-worker run` and its RSS samples.
pub struct WorkerProcess {
    child: Child,
    started: std::time::Instant,
    sampler: Option<(Arc<AtomicBool>, JoinHandle<Vec<u64>>)>,
    _config: tempfile::NamedTempFile,
    log: tempfile::NamedTempFile,
}

/// What a stopped worker process left behind.
pub struct Stopped {
    /// RSS samples (bytes), every 100 ms.
    pub rss: Vec<u64>,
    /// Peak RSS (`VmHWM`, bytes).
    pub peak_rss: u64,
    /// `units` and `batches` of its final summary line, if found.
    pub units_and_batches: Option<(u64, u64)>,
    /// CPU seconds (user + system) the process used.
    pub cpu_seconds: f64,
}

impl WorkerProcess {
    /// Starts `binary run` with `config` written to a temporary file and `env` (`FDS_*`
    /// overrides of it) in its environment. `mock`: the Kafka is librdkafka's mock broker.
    pub fn start(
        binary: &Path,
        config: &Config,
        env: &[(String, String)],
        mock: bool,
    ) -> anyhow::Result<WorkerProcess> {
        let mut config = config.clone();
        if mock {
            // The mock broker holds an empty fetch for its whole MaxWait even when records
            // arrive meanwhile (a real broker answers as soon as `fetch.min.bytes` are there),
            // adding up to `fetch.wait.max.ms` to every record's latency; 1 ms makes it answer
            // like a real one.
            config
                .kafka
                .consumer_options
                .entry("fetch.wait.max.ms".to_owned())
                .or_insert_with(|| "1".to_owned());
        }
        // Any free port: the bench must not collide with a worker already on the default.
        config.metrics.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        // The file lives in a temporary directory: relative schema paths stay relative to here.
        if config.schemas.base_dir.is_none() {
            config.schemas.base_dir = Some(std::env::current_dir()?);
        }
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile()?;
        std::io::Write::write_all(&mut file, toml::to_string(&config)?.as_bytes())?;
        let log = tempfile::Builder::new().suffix(".log").tempfile()?;
        let child = Command::new(binary)
            .arg("--config")
            .arg(file.path())
            .arg("run")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env(
                "RUST_LOG",
                std::env::var("WORKER_RUST_LOG")
                    .unwrap_or_else(|_| "warn,fds_worker::pipeline=info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log.reopen()?)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id();
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if let Some(rss) = status_bytes(pid, "VmRSS:") {
                        samples.push(rss);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                samples
            })
        };
        Ok(WorkerProcess {
            child,
            started: std::time::Instant::now(),
            sampler: Some((stop, sampler)),
            _config: file,
            log,
        })
    }

    /// SIGTERM, wait for exit, collect the samples and the summary line.
    pub fn stop(mut self) -> anyhow::Result<Stopped> {
        let peak_rss = status_bytes(self.child.id(), "VmHWM:").unwrap_or(0);
        let cpu_seconds = cpu_seconds(self.child.id()).unwrap_or(0.0);
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        self.child.wait()?;
        let stderr = self.log_text();
        if std::env::var_os("WORKER_RUST_LOG").is_some() {
            let path =
                std::env::temp_dir().join(format!("fds-bench-worker-{}.log", self.child.id()));
            std::fs::write(&path, &stderr)?;
            eprintln!("worker log: {}", path.display());
        }
        let rss = match self.sampler.take() {
            Some((stop, handle)) => {
                stop.store(true, Ordering::Relaxed);
                handle.join().unwrap_or_default()
            }
            None => Vec::new(),
        };
        Ok(Stopped {
            rss,
            peak_rss,
            units_and_batches: summary_counts(&stderr),
            cpu_seconds,
        })
    }
}

impl WorkerProcess {
    /// Time since the process started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Fails with the worker's log if the process has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!("the worker exited ({status}):\n{}", self.log_text());
        }
        Ok(())
    }

    fn log_text(&self) -> String {
        let mut text = String::new();
        let _ = self
            .log
            .reopen()
            .and_then(|mut file| file.read_to_string(&mut text));
        text
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some((stop, _)) = &self.sampler {
            stop.store(true, Ordering::Relaxed);
        }
    }
}

/// A `kB` field of `/proc/<pid>/status`, in bytes.
pub(crate) fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// utime + stime of `/proc/<pid>/stat`, in seconds (at the usual 100 ticks per second).
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// `units: N, batches: M` from the worker's final `RunSummary` log line.
fn summary_counts(stderr: &str) -> Option<(u64, u64)> {
    let line = stderr.lines().rev().find(|l| l.contains("RunSummary"))?;
    let number = |name: &str| -> Option<u64> {
        let start = line.find(&format!("{name}: "))? + name.len() + 2;
        line[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .ok()
    };
    Some((number("units")?, number("batches")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_summary_line() {
        let log = "x\n{\"fields\":{\"summary\":\"RunSummary { consumed: 10, enriched: 9, \
                   dead_lettered: 0, units: 1234, batches: 56 }\"}}\n";
        assert_eq!(summary_counts(log), Some((1234, 56)));
    }

    #[test]
    fn reads_this_process_rss() {
        assert!(status_bytes(std::process::id(), "VmRSS:").unwrap() > 0);
    }
}
