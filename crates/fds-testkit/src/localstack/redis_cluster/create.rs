//! `redis-cli --cluster create`, and running a command-line tool bounded in time.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{INSTALL_CLI, node};
use crate::localstack::node::Access;
use crate::localstack::tls;
use crate::localstack::{LocalStackError, Result};

/// Creates a cluster from running, empty, cluster-enabled nodes at `nodes` (`host:port`) with
/// `redis-cli --cluster create … --cluster-replicas R --cluster-yes`: the first
/// `nodes.len() / (R + 1)` become masters sharing the 16384 slots, the rest their replicas.
/// Returns when redis-cli does (it waits until the nodes agree on the configuration); replicas
/// may still be attaching. The password, if any, is passed through `REDISCLI_AUTH`.
pub fn cluster_create_with_replicas(
    nodes: &[String],
    replicas_per_master: usize,
    password: Option<&str>,
    timeout: Duration,
) -> Result<()> {
    let access = Access {
        password,
        tls: None,
    };
    create_cluster(nodes, replicas_per_master, access, timeout)
}

/// [`cluster_create_with_replicas`], over TLS for a TLS cluster.
pub(super) fn create_cluster(
    nodes: &[String],
    replicas_per_master: usize,
    access: Access<'_>,
    timeout: Duration,
) -> Result<()> {
    node::require_program("redis-cli", INSTALL_CLI)?;
    let mut cmd = Command::new("redis-cli");
    if let Some(tls) = access.tls {
        cmd.args(tls::cli_args(tls));
    }
    cmd.args(["--cluster", "create"])
        .args(nodes)
        .args(["--cluster-replicas", &replicas_per_master.to_string()])
        .arg("--cluster-yes");
    if let Some(password) = access.password {
        cmd.env("REDISCLI_AUTH", password);
    }
    let shown = format!(
        "redis-cli --cluster create {} --cluster-replicas {replicas_per_master} --cluster-yes",
        nodes.join(" ")
    );
    let output = run_with_timeout(cmd, &shown, timeout)?;
    if output.contains("[ERR]") {
        return Err(LocalStackError::Command {
            command: shown,
            status: "exit status 0 with [ERR]".into(),
            output,
        });
    }
    Ok(())
}

/// Runs `cmd`, killing it after `timeout`; its stdout on success, an error with both streams
/// otherwise.
pub(crate) fn run_with_timeout(mut cmd: Command, shown: &str, timeout: Duration) -> Result<String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| LocalStackError::io(format!("running {shown}"), e))?;
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Err(e) => return Err(LocalStackError::io(format!("waiting for {shown}"), e)),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        Some(status) if status.success() => Ok(stdout),
        status => Err(LocalStackError::Command {
            command: shown.to_owned(),
            status: status
                .map_or_else(|| format!("timed out after {timeout:?}"), |s| s.to_string()),
            output: format!("{stdout}{stderr}"),
        }),
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    })
}
