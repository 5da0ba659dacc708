//! Operating the worker from tests: HTTP GETs of its endpoints (`ureq`), reading its Prometheus
//! text (`prometheus-parse`), and the `fds-worker` binary as a child process whose stderr (JSON
//! logs) is captured.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_parse::{Sample, Scrape, Value};

/// `GET path` on `addr`: status code (any, not only 2xx) and body; an error only when there is
/// no answer (connect, I/O or a 10 s overall timeout).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut response = agent
        .get(format!("http://{addr}{path}"))
        .call()
        .map_err(std::io::Error::other)?;
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(std::io::Error::other)?;
    Ok((response.status().as_u16(), body))
}

/// The samples of Prometheus text (histogram buckets gathered into one sample per series).
fn parse(text: &str) -> Vec<Sample> {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("reading from a string cannot fail")
        .samples
}

/// A plain sample's value (counter, gauge, untyped, and so `_total`, `_count`, `_sum`); `None`
/// for a histogram's or a summary's buckets.
fn value(sample: &Sample) -> Option<f64> {
    match sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
        Value::Histogram(_) | Value::Summary(_) => None,
    }
}

/// The value of the sample of `series`, a metric name with its exact label set if it has labels
/// (`fds_ready`, `fds_redis_node_up{node="127.0.0.1:7000"}`).
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    let [wanted] = &parse(&format!("{series} 0"))[..] else {
        panic!("`{series}` is not a series name with labels");
    };
    parse(metrics)
        .iter()
        .find(|s| s.metric == wanted.metric && s.labels == wanted.labels)
        .and_then(value)
}

/// Sum of every sample of metric `name` (any labels).
pub fn sum(metrics: &str, name: &str) -> f64 {
    parse(metrics)
        .iter()
        .filter(|s| s.metric == name)
        .filter_map(value)
        .sum()
}

/// [`http_get`] off the async runtime's threads; no answer reads as status 0 and no body.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || http_get(addr, &path))
        .await
        .unwrap()
        .unwrap_or((0, String::new()))
}

/// Polls `GET path` every 100 ms until `done(status, body)` and returns that answer, or the
/// last answer as `Err` at `timeout`.
pub async fn poll_http(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    done: impl Fn(u16, &str) -> bool,
) -> Result<(u16, String), (u16, String)> {
    super::poll_until_async(timeout, Duration::from_millis(100), || async {
        let (status, body) = get(addr, path).await;
        if done(status, &body) {
            Ok((status, body))
        } else {
            Err((status, body))
        }
    })
    .await
}

/// [`poll_http`], panicking at `timeout` naming `what` with the last answer.
pub async fn wait_http(
    addr: SocketAddr,
    path: &str,
    what: &str,
    timeout: Duration,
    done: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    poll_http(addr, path, timeout, done)
        .await
        .unwrap_or_else(|(status, body)| {
            panic!("timed out after {timeout:?} waiting for {what}; last {path} answer {status}:\n{body}")
        })
}

/// [`wait_http`] of `/metrics` until `done(body)`; returns the body.
pub async fn wait_metrics(
    addr: SocketAddr,
    what: &str,
    timeout: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    wait_http(addr, "/metrics", what, timeout, |_, m| done(m))
        .await
        .1
}

/// Builds the test kit's binary `fds-testkit` beside `fds-worker` (same target directory and
/// profile), once per test process: `fds-worker demo` and `bench` hand over to it, and cargo
/// builds another package's binaries for a test only when asked.
pub fn build_testkit_binary() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let profile_dir = Path::new(env!("CARGO_BIN_EXE_fds-worker"))
            .parent()
            .expect("the binary is in a profile directory");
        let target_dir = profile_dir.parent().expect("a target directory");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        let out = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "fds-testkit",
                "--bin",
                "fds-testkit",
            ])
            .args(["--profile", profile, "--target-dir"])
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo runs");
        assert!(
            out.status.success(),
            "building fds-testkit: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// The `fds-worker` binary running as a child, its stderr lines collected.
pub struct Process {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Spawns `fds-worker args…` in the repository (its `config/` and `schemas/`) with `env`
    /// (and JSON logs), stdout and stderr captured. For `demo` and `bench`, which the binary
    /// hands over to the test kit's binary, that one is built first.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Process {
        if matches!(args.first(), Some(&("demo" | "bench"))) {
            build_testkit_binary();
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_fds-worker"));
        command
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("FDS_CONFIG")
            .env_remove("RUST_LOG")
            .env("FDS_LOG__FORMAT", "json")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("the worker binary starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Process { child, lines }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it printed so far (stderr and stdout, interleaved by line).
    pub fn output(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits (bounded) for a line matching `matches`; panics with the output otherwise.
    pub fn wait_for_line(
        &self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.output().into_iter().find(|l| matches(l)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; output:\n{}",
                self.output().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The HTTP address from the "serving /metrics" log line.
    pub fn http_addr(&self, timeout: Duration) -> SocketAddr {
        let line = self.wait_for_line("the HTTP endpoint", timeout, |l| {
            l.contains("serving /metrics")
        });
        let json: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
        json["addr"].as_str().expect("addr field").parse().unwrap()
    }

    /// Sends `signal` (`TERM`, `INT`, `KILL`).
    pub fn signal(&self, signal: &str) {
        let signal: nix::sys::signal::Signal =
            format!("SIG{signal}").parse().expect("a signal name");
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        nix::sys::signal::kill(pid, signal).unwrap_or_else(|e| panic!("{signal} to {pid}: {e}"));
    }

    /// Waits (bounded) for the exit; kills it and panics on timeout.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader threads take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the worker did not exit within {timeout:?}; output:\n{}",
                    self.output().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
