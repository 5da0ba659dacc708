//! `fds-worker demo`: its arguments. The demo runs in the test kit's binary (see
//! [`super::testkit`]): the local stack is not part of the product.

use std::time::Duration;

/// Which Kafka a local stack runs (`--kafka` of `demo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KafkaKind {
    /// librdkafka's in-process mock cluster: no Java needed.
    Mock,
    /// A 3-node Apache Kafka 4.x cluster (KRaft) from the jars `scripts/kafka-jars.sh`
    /// fetches: needs Java.
    Apache,
}

/// Start a local stack (6-node Redis Cluster from redis-server + a Kafka: librdkafka's mock
/// cluster or 3 Apache Kafka brokers), publish synthetic traffic, run the worker on it with a
/// live summary, and check every counter against ground truth.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  fds-worker demo                        20,000 transactions at 2,000/s
  fds-worker demo --count 100000 --rate 10000
  fds-worker demo --kafka apache         on 3 Apache Kafka brokers (needs Java; jars fetched once)
  fds-worker demo --kafka apache --registry   and a Schema Registry (Apicurio) for the schema ids
  fds-worker demo --keep                 then try the ops commands it prints against the stack

While it runs, the worker serves /metrics, /healthz and /readyz on metrics.listen (default
127.0.0.1:9464; FDS_METRICS__LISTEN=127.0.0.1:0 picks a free port). Exits 0 when every counter
equals the ground truth and every blacklist entry has its tier's expiry; 1 otherwise.")]
pub struct DemoArgs {
    /// Transactions to generate.
    #[arg(long, default_value_t = 20_000)]
    pub count: usize,
    /// Events per second to publish at.
    #[arg(long, default_value_t = 2_000)]
    pub rate: u32,
    /// RNG seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Partitions per topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// The Kafka to run: librdkafka's in-process mock cluster (no Java needed), or a local
    /// 3-node Apache Kafka 4.x cluster (KRaft; Java, jars from Maven Central via
    /// `scripts/kafka-jars.sh` or `LOCALSTACK_KAFKA_JARS`).
    #[arg(long, value_enum, default_value_t = KafkaKind::Mock)]
    pub kafka: KafkaKind,
    /// Also run a Schema Registry (the local Apicurio Registry, Confluent-compatible API; needs
    /// Java, built once by `scripts/apicurio-registry.sh` or `LOCALSTACK_APICURIO_JAR`): the
    /// demo's producer registers the schemas under the topics' subjects and writes the
    /// registry's ids, the worker resolves them there and writes its enrichment under the
    /// registry's id.
    #[arg(long)]
    pub registry: bool,
    /// Give up waiting for the worker after this long.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// After the check, keep the stack and the worker running until SIGINT/SIGTERM (Ctrl-C),
    /// and print the environment and ops commands (`cluster status`, `blacklist`, `tail`) to
    /// try against it from another terminal.
    #[arg(long)]
    pub keep: bool,
}
