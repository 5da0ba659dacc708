//! `fds-worker demo` and `fds-worker bench` start a local stack (a Redis Cluster from
//! `redis-server`, Kafka brokers), which is test equipment, not part of the product: they run
//! in the test kit's binary, [`BINARY`] (package `fds-testkit`, built beside this one by
//! `cargo build` in the repository). This binary parses their arguments (so `--help` and usage
//! errors are its own) and then replaces itself with that binary, same arguments, same
//! process: signals, exit status and output are the demo's own. The container image ships the
//! worker alone, where these two commands say what is missing.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;

use anyhow::anyhow;

/// The test kit's binary: beside this one, else on `PATH`.
pub const BINARY: &str = "fds-testkit";

/// Replaces this process with [`BINARY`] and this process's arguments; returns only if that
/// fails, with the reason.
pub fn exec() -> anyhow::Error {
    let own = std::env::current_exe().ok();
    let beside = own
        .as_deref()
        .and_then(|exe| Some(exe.parent()?.join(BINARY)))
        .filter(|path| path.is_file());
    let program = beside.unwrap_or_else(|| PathBuf::from(BINARY));
    let mut command = std::process::Command::new(&program);
    command.args(std::env::args_os().skip(1));
    let error = command.exec();
    if error.kind() == std::io::ErrorKind::NotFound {
        anyhow!(
            "`demo` and `bench` run in the test kit's binary `{BINARY}`, which is neither beside \
             this binary nor on PATH: build it in the repository with `cargo build -p \
             fds-testkit` (scripts/demo.sh does); the container image has the worker alone"
        )
    } else {
        anyhow!("starting {}: {error}", program.display())
    }
}
