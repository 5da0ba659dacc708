//! `fds-worker`: the command line ([`fds_worker::cli::main`]) with the product's subcommands.

use std::process::ExitCode;

/// jemalloc returns freed memory to the system (glibc's arenas kept a burst's peak resident:
/// 138 MiB steady at 5k events/s against 52 MiB with jemalloc; BENCHMARKS.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    fds_worker::cli::main(fds_worker::cli::dispatch)
}
