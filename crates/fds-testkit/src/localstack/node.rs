//! One `redis-server` process: its config file, spawning it, and knowing when it is ours and up.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use redis::{ConnectionAddr, IntoConnectionInfo as _, RedisConnectionInfo};

use super::tls::ClusterTls;
use super::{LocalStackError, Result};
use fds_worker::store::admin::InfoDict;

const POLL: Duration = Duration::from_millis(20);

/// Everything a node's `redis.conf` needs.
pub(crate) struct NodeConfig<'a> {
    pub port: u16,
    pub dir: &'a Path,
    pub node_timeout: Duration,
    pub require_full_coverage: bool,
    pub password: Option<&'a str>,
    pub extra: &'a [(String, String)],
    /// ACL rules, each written as a `user <rule>` line.
    pub acl_users: &'a [String],
    /// TLS-only node (`port 0`, `tls-port <port>`, TLS on the bus and for replication).
    pub tls: Option<&'a ClusterTls>,
}

/// How the harness reaches a node: its password and, for a TLS cluster, its TLS files.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Access<'a> {
    pub password: Option<&'a str>,
    pub tls: Option<&'a ClusterTls>,
}

impl NodeConfig<'_> {
    /// Writes `<dir>/redis.conf` (mode 0600: it may hold a password) and returns its path.
    pub(crate) fn write(&self) -> Result<PathBuf> {
        let path = self.dir.join("redis.conf");
        let dir = self.dir.to_string_lossy();
        let mut text = format!(
            "port {port}\n\
             bind 127.0.0.1\n\
             daemonize no\n\
             dir {dir}\n\
             logfile {log}\n\
             cluster-enabled yes\n\
             cluster-config-file nodes.conf\n\
             cluster-node-timeout {timeout}\n\
             cluster-require-full-coverage {coverage}\n\
             appendonly yes\n\
             save \"\"\n\
             repl-diskless-sync-delay 0\n\
             enable-debug-command local\n",
            // A TLS node has no plaintext port; the TLS port is the leased one (and the bus is
            // at it + 10000, as for a plaintext node).
            port = if self.tls.is_some() { 0 } else { self.port },
            dir = quote(&dir),
            log = quote(&self.dir.join("redis.log").to_string_lossy()),
            timeout = self.node_timeout.as_millis(),
            coverage = if self.require_full_coverage {
                "yes"
            } else {
                "no"
            },
        );
        // Redis 7 waits 5 s by default before a diskless full sync, in case more replicas come;
        // set to 0 above so a replica is in sync milliseconds after it is attached.
        if let Some(password) = self.password {
            text.push_str(&format!(
                "requirepass {p}\nmasterauth {p}\n",
                p = quote(password)
            ));
        }
        if let Some(tls) = self.tls {
            text.push_str(&format!(
                "tls-port {port}\n\
                 tls-cert-file {cert}\n\
                 tls-key-file {key}\n\
                 tls-ca-cert-file {ca}\n\
                 tls-auth-clients {auth}\n\
                 tls-cluster yes\n\
                 tls-replication yes\n",
                port = self.port,
                cert = quote(&tls.cert_file.to_string_lossy()),
                key = quote(&tls.key_file.to_string_lossy()),
                ca = quote(&tls.ca_file.to_string_lossy()),
                auth = if tls.auth_clients { "yes" } else { "no" },
            ));
        }
        for rule in self.acl_users {
            text.push_str(&format!("user {rule}\n"));
        }
        for (key, value) in self.extra {
            text.push_str(&format!("{key} {value}\n"));
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| LocalStackError::io(format!("creating {}", path.display()), e))?;
        file.write_all(text.as_bytes())
            .map_err(|e| LocalStackError::io(format!("writing {}", path.display()), e))?;
        Ok(path)
    }
}

/// A string as a double-quoted redis.conf argument.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The path of `program` if it is an executable file on `PATH`.
pub(crate) fn find_program(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Like [`find_program`], but an error that says how to install it.
pub(crate) fn require_program(program: &'static str, install: &'static str) -> Result<PathBuf> {
    find_program(program).ok_or(LocalStackError::MissingProgram { program, install })
}

struct SpawnRequest {
    command: Command,
    reply: mpsc::Sender<std::io::Result<Child>>,
}

/// A thread that lives as long as the process and spawns every local-stack process. They are
/// started under `setpriv --pdeathsig KILL`, and the kernel sends that signal when the *thread*
/// that spawned them exits — so the spawning thread must never exit before the process does (a
/// test thread or a `spawn_blocking` thread would).
fn spawner() -> Option<&'static mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Option<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<SpawnRequest>();
            std::thread::Builder::new()
                .name("localstack-spawner".into())
                .spawn(move || {
                    for mut request in rx {
                        let _ = request.reply.send(request.command.spawn());
                    }
                })
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

/// Starts `redis-server <conf>`, under `setpriv --pdeathsig KILL` when available.
pub(crate) fn spawn(redis_server: &Path, conf: &Path) -> Result<Child> {
    spawn_process(redis_server, &[conf.into()], None)
}

/// Starts `program args…` with no stdin and stdout + stderr appended to `output` (or
/// discarded), under `setpriv --pdeathsig KILL` when available, so that it dies with this
/// process even when the process dies without unwinding.
pub(crate) fn spawn_process(
    program: &Path,
    args: &[OsString],
    output: Option<&Path>,
) -> Result<Child> {
    let context = || format!("starting {} {:?}", program.display(), args);
    let command = || -> Result<Command> {
        let mut command = match find_program("setpriv") {
            Some(setpriv) => {
                let mut c = Command::new(setpriv);
                c.args(["--pdeathsig", "KILL"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        command.args(args).stdin(Stdio::null());
        match output {
            Some(path) => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| LocalStackError::io(format!("opening {}", path.display()), e))?;
                let copy = file
                    .try_clone()
                    .map_err(|e| LocalStackError::io(format!("opening {}", path.display()), e))?;
                command.stdout(copy).stderr(file);
            }
            None => {
                command.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        Ok(command)
    };
    if let Some(spawner) = spawner() {
        let (reply, answer) = mpsc::channel();
        let request = SpawnRequest {
            command: command()?,
            reply,
        };
        if spawner.send(request).is_ok()
            && let Ok(child) = answer.recv()
        {
            return child.map_err(|e| LocalStackError::io(context(), e));
        }
    }
    command()?
        .spawn()
        .map_err(|e| LocalStackError::io(context(), e))
}

/// Why a node did not become ready.
pub(crate) enum NotReady {
    /// The port was taken between reservation and bind; retry on another port.
    AddressInUse,
    /// Anything else, with a reason.
    Failed(String),
}

/// Waits until the process `child` answers on `port` — checked by its `process_id`, so a foreign
/// server that happens to hold the port is not mistaken for it.
pub(crate) fn wait_ready(
    child: &mut Child,
    port: u16,
    access: Access<'_>,
    log: &Path,
    timeout: Duration,
) -> Result<(), NotReady> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let tail = log_tail(log, 20);
                if tail.contains("Address already in use") {
                    return Err(NotReady::AddressInUse);
                }
                return Err(NotReady::Failed(format!("exited with {status}")));
            }
            Ok(None) => {}
            Err(e) => return Err(NotReady::Failed(format!("cannot poll the process: {e}"))),
        }
        let last = match process_id(port, access) {
            Ok(pid) if pid == child.id() => return Ok(()),
            Ok(pid) => format!("port {port} is answered by another process ({pid})"),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(NotReady::Failed(format!(
                "not ready after {timeout:?}: {last}"
            )));
        }
        std::thread::sleep(POLL);
    }
}

fn process_id(port: u16, access: Access<'_>) -> redis::RedisResult<u32> {
    let mut con = connect(port, access, Duration::from_millis(500))?;
    let info: InfoDict = redis::cmd("INFO").arg("server").query(&mut con)?;
    info.get("process_id")
        .ok_or_else(|| redis::RedisError::from((redis::ErrorKind::Parse, "INFO has no process_id")))
}

/// A synchronous connection to `127.0.0.1:port` whose connect, read and write timeouts are all
/// `timeout` (a paused node accepts TCP connections but never answers); over TLS for a TLS
/// cluster.
pub(crate) fn connect(
    port: u16,
    access: Access<'_>,
    timeout: Duration,
) -> redis::RedisResult<redis::Connection> {
    let mut settings = RedisConnectionInfo::default();
    if let Some(password) = access.password {
        settings = settings.set_password(password);
    }
    let client = match access.tls {
        None => {
            let info = ConnectionAddr::Tcp("127.0.0.1".into(), port)
                .into_connection_info()?
                .set_redis_settings(settings);
            redis::Client::open(info)?
        }
        Some(tls) => {
            fds_worker::store::tls::install_crypto_provider();
            let info = ConnectionAddr::TcpTls {
                host: "127.0.0.1".into(),
                port,
                insecure: false,
                tls_params: None,
            }
            .into_connection_info()?
            .set_redis_settings(settings);
            redis::Client::build_with_tls(info, super::tls::client_certificates(tls)?)?
        }
    };
    let con = client.get_connection_with_timeout(timeout)?;
    con.set_read_timeout(Some(timeout))?;
    con.set_write_timeout(Some(timeout))?;
    Ok(con)
}

/// The last `lines` lines of the file at `path` (at most its last 64 KiB are read).
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return format!("({} is missing)", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Sends `signal` to `pid`.
pub(crate) fn signal(pid: u32, signal: nix::sys::signal::Signal) -> Result<()> {
    let target = nix::unistd::Pid::from_raw(pid as i32);
    nix::sys::signal::kill(target, signal)
        .map_err(|errno| LocalStackError::io(format!("sending {signal} to {pid}"), errno.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_quotes_backslashes_and_newlines() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote("x\ny"), r#""x\ny""#);
    }

    #[test]
    fn missing_programs_are_not_found() {
        assert!(find_program("definitely-not-a-program-fds").is_none());
        assert!(find_program("sh").is_some());
    }
}
