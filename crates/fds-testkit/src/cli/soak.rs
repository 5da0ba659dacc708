//! `fds-worker soak`: the randomized nemesis soak (see [`crate::soak`]). The arguments are the
//! product's ([`SoakArgs`]); this is what runs them.

use anyhow::bail;
use fds_worker::cli::soak::SoakArgs;
use fds_worker::config::Config;

use crate::soak::{SoakOptions, run as run_soak};

/// Runs the soak, prints its summary, and fails on any violation.
pub async fn run(args: SoakArgs, config: Config) -> anyhow::Result<()> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let options = SoakOptions {
        duration: args.duration,
        seed,
        rate: args.rate,
        workers: args.workers,
        partitions: args.partitions,
        fault_every: args.fault_every,
        report_dir: args.report.clone(),
        binary: super::worker_binary()?,
        registry: !args.no_registry,
        schedule: args
            .faults
            .as_deref()
            .map(crate::soak::nemesis::parse_schedule)
            .transpose()
            .map_err(anyhow::Error::msg)?,
    };
    let report = run_soak(options, config).await?;
    println!("{}", crate::soak::report::summary(&report));
    if !report.violations.is_empty() {
        bail!(
            "the soak found {} violations (seed {seed}; reproduce with `fds-worker soak --seed \
             {seed} --duration {}s`)",
            report.violations.len(),
            args.duration.as_secs()
        );
    }
    Ok(())
}
