//! `fds-testkit`: `fds-worker demo` and `fds-worker bench` on a local stack. `fds-worker`
//! hands these two subcommands over to this binary; it can also be run directly
//! (`fds-testkit demo --keep`).

use std::process::ExitCode;

/// The demo runs the worker in this process: the same allocator as `fds-worker`.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    fds_worker::cli::main(fds_testkit::cli::dispatch)
}
