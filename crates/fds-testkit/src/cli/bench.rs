//! `fds-worker bench`: the reproducible benchmark (see `BENCHMARKS.md`). The arguments are the
//! product's ([`BenchArgs`]); this is what runs them.

use fds_worker::cli::bench::BenchArgs;
use fds_worker::config::Config;

use crate::bench::{BenchOptions, run as run_bench};

/// Runs the benchmark and prints the report.
pub async fn run(args: BenchArgs, config: Config) -> anyhow::Result<()> {
    let binary = super::worker_binary()?;
    let options = BenchOptions {
        transactions: args.transactions,
        rate: args.rate,
        latency_run: args.latency_run,
        ceiling_requests: args.ceiling_requests,
        partitions: args.partitions,
        kafka: args.kafka.into(),
        deliveries: args.delivery.modes(),
        transaction_intervals: args.transaction_intervals,
        binary,
        plot: args.plot,
    };
    let report = run_bench(options, config).await?;
    println!("{report}");
    Ok(())
}
