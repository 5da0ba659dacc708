//! [`Apicurio`]: a real Apicurio Registry 2.4.2.Final (in-memory storage) on a loopback port, whose
//! Confluent-compatible API ([`Apicurio::ccompat_url`], `/apis/ccompat/v7`) is what fds-worker's
//! `[schemas.registry]` talks to. Started like the brokers: a free port, readiness by a real
//! HTTP request, its log kept in a file whose tail start errors carry; killed, stopped, paused
//! (SIGSTOP) and restarted by the tests.
//!
//! Storage is in memory, so a restart starts empty: ids registered before are gone (what a
//! test of an outage wants is [`Apicurio::pause`] or a kill followed by re-registration).

mod app;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::node;
use super::ports::{BUS_OFFSET, PortLease, reserve_port_pair};
use super::{LocalStackError, Result};

pub use app::JAR_ENV;

/// How long a start may take (a cold JVM + Quarkus: seconds).
const START_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);

/// One Apicurio Registry process. Killed (SIGKILL) and its directory removed on drop.
pub struct Apicurio {
    jar: PathBuf,
    root: PathBuf,
    port: u16,
    management_port: u16,
    heap_mb: u32,
    process: Mutex<Process>,
    _lease: PortLease,
}

#[derive(Default)]
struct Process {
    child: Option<Child>,
    paused: bool,
}

impl Process {
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

impl Apicurio {
    /// Starts the registry on a free loopback port and waits until its Confluent API answers.
    pub fn start() -> Result<Apicurio> {
        let jar = app::runner_jar()?;
        let root = super::make_root_dir("fds-apicurio-")?;
        // P for the API, P + 10000 for Quarkus's management interface (health).
        let lease = reserve_port_pair()?;
        let registry = Apicurio {
            jar,
            root,
            port: lease.port(),
            management_port: lease.port() + BUS_OFFSET,
            heap_mb: 384,
            process: Mutex::new(Process::default()),
            _lease: lease,
        };
        registry.spawn()?;
        registry.wait_ready(START_TIMEOUT)?;
        Ok(registry)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The Confluent-compatible API: `http://127.0.0.1:<port>/apis/ccompat/v7`.
    pub fn ccompat_url(&self) -> String {
        format!("{}/apis/ccompat/v7", self.base_url())
    }

    /// The API's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The registry's log file (Quarkus's file log).
    pub fn log_file(&self) -> PathBuf {
        self.root.join("registry.log")
    }

    /// The JVM's own stdout/stderr.
    pub fn stdout_file(&self) -> PathBuf {
        self.root.join("stdout.log")
    }

    /// The last `lines` lines of the log and of the JVM's output, for a failing test.
    pub fn log_tail(&self, lines: usize) -> String {
        format!(
            "--- tail of {} ---\n{}\n--- tail of {} ---\n{}",
            self.log_file().display(),
            node::log_tail(&self.log_file(), lines),
            self.stdout_file().display(),
            node::log_tail(&self.stdout_file(), lines.min(20)),
        )
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        let mut process = self.lock();
        if process.alive() {
            process.child.as_ref().map(Child::id)
        } else {
            None
        }
    }

    /// Whether the process runs (paused or not).
    pub fn is_running(&self) -> bool {
        self.lock().alive()
    }

    /// SIGKILL and reap: connections are refused from now on.
    pub fn kill(&self) {
        self.lock().kill();
    }

    /// SIGTERM (Quarkus's graceful shutdown), then SIGKILL after a bound.
    pub fn stop(&self) -> Result<()> {
        let mut process = self.lock();
        let paused = process.paused;
        let Some(child) = process.child.as_mut() else {
            return Ok(());
        };
        if paused {
            node::signal(child.id(), Signal::SIGCONT)?;
        }
        node::signal(child.id(), Signal::SIGTERM)?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                process.child = None;
                process.paused = false;
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
        process.kill();
        Ok(())
    }

    /// Freezes the registry with SIGSTOP: connections are accepted, nothing is answered (a
    /// client's request times out).
    pub fn pause(&self) -> Result<()> {
        let mut process = self.lock();
        let state = process.state();
        let Some(child) = process.child.as_ref().filter(|_| state == "running") else {
            return Err(LocalStackError::node_state(0, state, "pause", "running"));
        };
        node::signal(child.id(), Signal::SIGSTOP)?;
        process.paused = true;
        Ok(())
    }

    /// Lets a paused registry go on with SIGCONT.
    pub fn resume(&self) -> Result<()> {
        let mut process = self.lock();
        let state = process.state();
        let Some(child) = process.child.as_ref().filter(|_| state == "paused") else {
            return Err(LocalStackError::node_state(0, state, "resume", "paused"));
        };
        node::signal(child.id(), Signal::SIGCONT)?;
        process.paused = false;
        Ok(())
    }

    /// Starts it again on the same port (a running one is killed first) and waits until it
    /// answers. Storage is in memory: the restarted registry is empty.
    pub fn restart(&self) -> Result<()> {
        self.lock().kill();
        self.spawn()?;
        self.wait_ready(START_TIMEOUT)
    }

    fn lock(&self) -> MutexGuard<'_, Process> {
        self.process.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn(&self) -> Result<()> {
        let java = super::apache_kafka::java()?;
        let mut args: Vec<OsString> = vec![
            format!("-Xmx{}m", self.heap_mb).into(),
            "-XX:+ExitOnOutOfMemoryError".into(),
        ];
        args.extend(super::jvm_options());
        args.extend::<Vec<OsString>>(vec![
            "-Djava.awt.headless=true".into(),
            "-Dquarkus.http.host=127.0.0.1".into(),
            format!("-Dquarkus.http.port={}", self.port).into(),
            "-Dquarkus.management.host=127.0.0.1".into(),
            format!("-Dquarkus.management.port={}", self.management_port).into(),
            "-Dquarkus.log.level=INFO".into(),
            "-Dquarkus.log.category.\"io.apicurio\".level=INFO".into(),
            "-Dquarkus.log.file.enabled=true".into(),
            format!("-Dquarkus.log.file.path={}", self.log_file().display()).into(),
            // Anonymous access, in-memory storage (the default), no UI.
            "-Dapicurio.auth.enabled=false".into(),
            "-Dregistry.auth.enabled=false".into(),
            "-jar".into(),
            self.jar.clone().into(),
        ]);
        let child = node::spawn_process(&java, &args, Some(&self.stdout_file()))?;
        let mut process = self.lock();
        process.child = Some(child);
        process.paused = false;
        Ok(())
    }

    /// Waits until `GET /apis/ccompat/v7/subjects` answers 200 from our process.
    fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let url = format!("{}/subjects", self.ccompat_url());
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut last = String::from("not asked yet");
        loop {
            {
                let mut process = self.lock();
                if !process.alive() {
                    return Err(self.start_error(format!("the process exited ({last})")));
                }
            }
            match agent.get(&url).call() {
                Ok(response) if response.status() == 200 => return Ok(()),
                Ok(response) => last = format!("GET {url} answered {}", response.status()),
                Err(e) => last = format!("GET {url}: {e}"),
            }
            if Instant::now() >= deadline {
                return Err(self.start_error(format!("not ready after {timeout:?}: {last}")));
            }
            std::thread::sleep(POLL);
        }
    }

    fn start_error(&self, reason: String) -> LocalStackError {
        LocalStackError::NodeStart {
            index: 0,
            port: self.port,
            reason: format!("apicurio registry: {reason}"),
            log: self.log_file(),
            log_tail: self.log_tail(40),
        }
    }

    /// The directory holding its logs.
    pub fn root_dir(&self) -> &Path {
        &self.root
    }
}

impl Drop for Apicurio {
    fn drop(&mut self) {
        self.lock().kill();
        super::remove_root_dir(&self.root);
    }
}

impl std::fmt::Debug for Apicurio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Apicurio")
            .field("url", &self.ccompat_url())
            .field("root", &self.root)
            .finish()
    }
}
