//! One Apache Kafka node (combined KRaft broker + controller): its `server.properties`, its
//! log4j2 config, `StorageTool format`, and the `java kafka.Kafka` process.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use nix::sys::signal::Signal;

use super::super::node;
use super::super::ports::PortLease;
use super::super::{LocalStackError, Result};
use super::jars;

/// One node's fixed identity: id, ports, directory. Its process comes and goes.
#[derive(Debug)]
pub(crate) struct BrokerNode {
    /// `node.id`, `1..=n`.
    pub id: i32,
    /// The `PLAINTEXT` client listener (the harness's own, and inter-broker).
    pub port: u16,
    /// The `CONTROLLER` listener.
    pub controller_port: u16,
    /// Extra client listeners: name and port.
    pub listener_ports: Vec<(String, u16)>,
    pub dir: PathBuf,
    pub child: Option<Child>,
    pub paused: bool,
    // Held for the cluster's lifetime, so a restart finds its ports still free of other stacks.
    pub _leases: Vec<PortLease>,
}

impl BrokerNode {
    pub(crate) fn properties_file(&self) -> PathBuf {
        self.dir.join("server.properties")
    }

    /// The broker's log (log4j2), what a failing test prints the tail of.
    pub(crate) fn log_file(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The JVM's own stdout/stderr (startup errors, crashes).
    pub(crate) fn stdout_file(&self) -> PathBuf {
        self.dir.join("stdout.log")
    }

    fn log4j_file(&self) -> PathBuf {
        self.dir.join("log4j2.properties")
    }

    /// The PEM key store (key + certificate) of a TLS listener.
    pub(crate) fn keystore_file(&self) -> PathBuf {
        self.dir.join("keystore.pem")
    }

    pub(crate) fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub(crate) fn state(&mut self) -> &'static str {
        match (self.alive(), self.paused) {
            (false, _) => "stopped",
            (true, true) => "paused",
            (true, false) => "running",
        }
    }

    /// SIGKILL and reap (a paused JVM dies of SIGKILL too).
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// SIGTERM (Kafka's controlled shutdown: leadership moves first), then waits up to
    /// `timeout` for the exit; SIGKILL after that.
    pub(crate) fn stop(&mut self, timeout: std::time::Duration) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        if self.paused {
            node::signal(child.id(), Signal::SIGCONT)?;
            self.paused = false;
        }
        node::signal(child.id(), Signal::SIGTERM)?;
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                self.child = None;
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        tracing::warn!(
            broker = self.id,
            ?timeout,
            "broker did not stop on SIGTERM; killing it"
        );
        self.kill();
        Ok(())
    }

    /// Writes the log4j2 config: everything at INFO to `server.log`.
    pub(crate) fn write_log4j(&self) -> Result<()> {
        let text = format!(
            "status = warn\n\
             appender.file.type = File\n\
             appender.file.name = file\n\
             appender.file.fileName = {log}\n\
             appender.file.layout.type = PatternLayout\n\
             appender.file.layout.pattern = [%d] %p %m (%c)%n\n\
             rootLogger.level = info\n\
             rootLogger.appenderRef.file.ref = file\n",
            log = self.log_file().display()
        );
        write(&self.log4j_file(), &text)
    }

    /// `StorageTool format` of the node's log directory for `cluster_id`, adding `scram`
    /// (`--add-scram …` arguments) to the metadata.
    pub(crate) fn format(&self, jar_dir: &Path, cluster_id: &str, scram: &[String]) -> Result<()> {
        let mut command = Command::new(jars::java()?);
        command
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.log4j_file().display()
            ))
            .arg("-cp")
            .arg(jars::classpath(jar_dir))
            .args([
                "kafka.tools.StorageTool",
                "format",
                "--ignore-formatted",
                "-t",
            ])
            .arg(cluster_id)
            .arg("-c")
            .arg(self.properties_file())
            .args(scram);
        run_tool(command, "StorageTool format")
    }

    /// Starts the broker process (the node must be stopped).
    pub(crate) fn spawn(&mut self, jar_dir: &Path, heap_mb: u32) -> Result<()> {
        let mut args: Vec<OsString> = vec![
            format!("-Xms{heap_mb}m").into(),
            format!("-Xmx{heap_mb}m").into(),
            "-XX:+UseG1GC".into(),
            "-XX:MaxGCPauseMillis=20".into(),
            "-XX:+ExitOnOutOfMemoryError".into(),
        ];
        args.extend(super::super::jvm_options());
        args.extend::<Vec<OsString>>(vec![
            "-Djava.awt.headless=true".into(),
            format!("-Dlog4j2.configurationFile={}", self.log4j_file().display()).into(),
            "-cp".into(),
            jars::classpath(jar_dir).into(),
            "kafka.Kafka".into(),
            self.properties_file().into(),
        ]);
        let child = node::spawn_process(&jars::java()?, &args, Some(&self.stdout_file()))?;
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    /// The tails of the broker's log and of the JVM's output, for an error message.
    pub(crate) fn tails(&self, lines: usize) -> String {
        format!(
            "--- tail of {} ---\n{}\n--- tail of {} ---\n{}",
            self.log_file().display(),
            node::log_tail(&self.log_file(), lines),
            self.stdout_file().display(),
            node::log_tail(&self.stdout_file(), lines.min(20)),
        )
    }
}

/// Runs a Kafka command-line tool (a JVM) and fails with its output if it exits non-zero.
pub(crate) fn run_tool(mut command: Command, what: &str) -> Result<()> {
    let output = command
        .output()
        .map_err(|e| LocalStackError::io(format!("running {what}"), e))?;
    if output.status.success() {
        return Ok(());
    }
    Err(LocalStackError::Command {
        command: what.to_owned(),
        status: output.status.to_string(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}

/// Writes `text` to `path`, mode 0600 (it may hold passwords).
pub(crate) fn write(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| LocalStackError::io(format!("creating {}", path.display()), e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| LocalStackError::io(format!("writing {}", path.display()), e))
}

/// `server.properties` as text: `(key, value)` lines in order (later keys win in Java's
/// `Properties`, so extras go last).
pub(crate) fn properties_text(lines: &[(String, String)]) -> String {
    let mut text = String::new();
    for (key, value) in lines {
        text.push_str(key);
        text.push('=');
        // Properties files treat `\` as an escape: a literal one (in a path or password) is `\\`.
        text.push_str(&value.replace('\\', "\\\\"));
        text.push('\n');
    }
    text
}
