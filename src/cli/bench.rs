//! `fds-worker bench`: its arguments. The benchmark runs in the test kit's binary (see
//! [`super::testkit`]) on a local stack; see `BENCHMARKS.md`.

use std::path::PathBuf;
use std::time::Duration;

use super::demo::KafkaKind;
use crate::config::Delivery;

/// Which delivery modes `bench` measures (`--delivery`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchDelivery {
    /// `kafka.delivery = "exactly_once"` only.
    #[value(name = "exactly_once", alias = "exactly-once")]
    ExactlyOnce,
    /// `kafka.delivery = "at_least_once"` only.
    #[value(name = "at_least_once", alias = "at-least-once")]
    AtLeastOnce,
    /// Both, on the same stack: at-least-once first (its maximum sets the offered rates of the
    /// latency runs), then exactly-once.
    Both,
}

impl BenchDelivery {
    /// The modes to run, in order.
    pub fn modes(self) -> Vec<Delivery> {
        match self {
            BenchDelivery::ExactlyOnce => vec![Delivery::ExactlyOnce],
            BenchDelivery::AtLeastOnce => vec![Delivery::AtLeastOnce],
            BenchDelivery::Both => vec![Delivery::AtLeastOnce, Delivery::ExactlyOnce],
        }
    }
}

/// Which Kafka `bench` runs on (`--kafka`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchKafka {
    /// librdkafka's in-process mock cluster only (no Java needed).
    Mock,
    /// The local 3-node Apache Kafka cluster only.
    Apache,
    /// Both, one after the other in the same invocation, each on a fresh stack with its own
    /// figures: the mock first, then Apache Kafka.
    Both,
}

impl BenchKafka {
    /// The stacks to run, in order.
    pub fn kinds(self) -> Vec<KafkaKind> {
        match self {
            BenchKafka::Mock => vec![KafkaKind::Mock],
            BenchKafka::Apache => vec![KafkaKind::Apache],
            BenchKafka::Both => vec![KafkaKind::Mock, KafkaKind::Apache],
        }
    }
}

/// Measure the worker against the cluster's own ceiling on a fresh local stack: redis-benchmark
/// INCR/SET, then throughput, apply-once memory, a naive per-event client on the same records,
/// latency at fixed rates and worker RSS, for exactly-once and at-least-once delivery side by
/// side.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  fds-worker bench                               the figures in BENCHMARKS.md (mock Kafka)
  fds-worker bench --kafka apache --transactions 20000 --latency-run 10s \\
      --transaction-intervals 50ms,100ms,250ms   exactly-once vs at-least-once on Apache Kafka
  fds-worker bench --delivery at_least_once --rate 2000
  fds-worker bench --plot bench-plots            the same, and the figures as PNG charts
  fds-worker bench --scaling                     also throughput by batch size and partitions
  fds-worker bench --kafka both                  the mock, then Apache Kafka, in one invocation

Each delivery mode gets a throughput run (published first, then consumed from the start) and
latency runs at 25 %, 50 % and 75 % of the at-least-once maximum measured in the same
invocation (or at --rate), every run on fresh topics and a fresh consumer group. Latency is
source record → enrichment record visible to a read_committed consumer. A naive baseline reads
the at-least-once throughput run's records again and applies them per event (INCR + EXPIRE per
counter, GET per lookup, 256 events in flight, no slot units, no apply-once), for the worker's
events/s as a multiple of it.

Prints Markdown tables on stdout (progress on stderr). Needs redis-server and redis-benchmark
(apt-get install -y redis-server redis-tools); --kafka apache needs Java and the jars of
scripts/kafka-jars.sh. Build with --release for meaningful numbers.")]
pub struct BenchArgs {
    /// Transactions in each throughput run (published first, then consumed from the start).
    /// The rate is taken from the first to the last enrichment record, so use many batches'
    /// worth (≥ 10 × pipeline.batch_size).
    #[arg(long, default_value_t = 100_000)]
    pub transactions: usize,
    /// Offered rate (events/s) of every latency run, instead of 25 %, 50 % and 75 % of the
    /// at-least-once maximum.
    #[arg(long)]
    pub rate: Option<u32>,
    /// Length of each latency run.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub latency_run: Duration,
    /// Requests per redis-benchmark test.
    #[arg(long, default_value_t = 2_000_000)]
    pub ceiling_requests: u64,
    /// Partitions per topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// The Kafka to run: librdkafka's in-process mock cluster (no Java needed), a local
    /// 3-node Apache Kafka 4.x cluster (KRaft; Java, jars via `scripts/kafka-jars.sh` or
    /// `LOCALSTACK_KAFKA_JARS`), or both in turn (each on a fresh stack, with its own figures;
    /// with --plot, charts in DIR/mock and DIR/apache).
    #[arg(long, value_enum, default_value_t = BenchKafka::Mock)]
    pub kafka: BenchKafka,
    /// The delivery modes to measure (`kafka.delivery`).
    #[arg(long, value_enum, default_value_t = BenchDelivery::Both)]
    pub delivery: BenchDelivery,
    /// Also repeat the exactly-once latency run at the lower offered rate once per
    /// `kafka.transactions.interval` given (comma-separated, e.g. `50ms,100ms,250ms`).
    #[arg(long, value_delimiter = ',', value_parser = humantime::parse_duration)]
    pub transaction_intervals: Vec<Duration>,
    /// Also draw the figures as PNG charts into this directory: latency.png (p50/p99/max per
    /// second of each latency run), throughput.png (events/s over each throughput run),
    /// comparison.png (ceiling, worker and naive client, commands/s and events/s).
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,
    /// Also the scaling runs: at-least-once throughput at batch sizes 250, 1,000 and 4,000
    /// (with --partitions) and at 1, 2 and 4 partitions per topic (with the configured batch
    /// size), each with events/s, Redis commands/s and per event, events per unit.
    #[arg(long)]
    pub scaling: bool,
}
