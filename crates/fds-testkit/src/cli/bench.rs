//! `fds-worker bench`: the reproducible benchmark (see `BENCHMARKS.md`). The arguments are the
//! product's ([`BenchArgs`]); this is what runs them.

use fds_worker::cli::bench::BenchArgs;
use fds_worker::cli::demo::KafkaKind;
use fds_worker::config::Config;

use crate::bench::{BenchOptions, run as run_bench};

/// Runs the benchmark on each Kafka asked for and prints the reports.
pub async fn run(args: BenchArgs, config: Config) -> anyhow::Result<()> {
    let binary = super::worker_binary()?;
    let kinds = args.kafka.kinds();
    for kind in &kinds {
        let plot = match (&args.plot, kinds.len()) {
            (Some(dir), 1) => Some(dir.clone()),
            (Some(dir), _) => Some(dir.join(match kind {
                KafkaKind::Mock => "mock",
                KafkaKind::Apache => "apache",
            })),
            (None, _) => None,
        };
        let options = BenchOptions {
            transactions: args.transactions,
            rate: args.rate,
            latency_run: args.latency_run,
            ceiling_requests: args.ceiling_requests,
            partitions: args.partitions,
            kafka: (*kind).into(),
            deliveries: args.delivery.modes(),
            transaction_intervals: args.transaction_intervals.clone(),
            binary: binary.clone(),
            plot,
            scaling: args.scaling,
        };
        let report = run_bench(options, config.clone()).await?;
        println!("{report}");
    }
    Ok(())
}
