//! `fds-worker bench`: its arguments. The benchmark runs in the test kit's binary (see
//! [`super::testkit`]) on a local stack; see `BENCHMARKS.md`.

use std::time::Duration;

/// Measure the worker against the cluster's own ceiling on a fresh local stack: redis-benchmark
/// INCR/SET, then throughput, latency at a fixed rate, worker RSS and apply-once memory.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  fds-worker bench                               the figures in BENCHMARKS.md
  fds-worker bench --transactions 20000 --rate 2000 --latency-run 10s

Prints a Markdown table on stdout (progress on stderr). Needs redis-server and redis-benchmark
(apt-get install -y redis-server redis-tools). Build with --release for meaningful numbers.")]
pub struct BenchArgs {
    /// Transactions in the throughput run (published first, then consumed from the start). The
    /// rate is taken from the first to the last enrichment record, so use many batches' worth
    /// (≥ 10 × pipeline.batch_size).
    #[arg(long, default_value_t = 100_000)]
    pub transactions: usize,
    /// Offered rate (events/s) of the latency run.
    #[arg(long, default_value_t = 5_000)]
    pub rate: u32,
    /// Length of the latency run.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub latency_run: Duration,
    /// Requests per redis-benchmark test.
    #[arg(long, default_value_t = 2_000_000)]
    pub ceiling_requests: u64,
    /// Partitions per topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
}
