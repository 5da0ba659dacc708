//! The worker on a local stack with synthetic traffic: used by `fds-worker demo` and by the
//! end-to-end tests, so both exercise exactly the same path.
//!
//! [`LocalStack`] starts a real 6-node Redis Cluster and a Kafka — Apache Kafka (KRaft, from
//! Maven Central jars) or librdkafka's mock cluster — and points a [`Config`] at them;
//! [`Progress`] reads the worker's metrics to tell when every generated event has been
//! finished.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::FutureProducer;

use crate::localstack::{
    ApacheKafka, ClusterOptions, Kafka, KafkaOptions, LocalStackError, MockKafka, RedisCluster,
};
use fds_worker::cli::demo::KafkaKind;
use fds_worker::config::Config;
use fds_worker::metrics::{Metrics, TopicLabel};

/// The Kafka a [`LocalStack`] starts or joins.
#[derive(Debug, Clone)]
pub enum KafkaSetup {
    /// A mock cluster of its own, 3 brokers.
    Mock,
    /// An Apache Kafka cluster of its own.
    Apache(KafkaOptions),
    /// A running Apache Kafka cluster shared with other stacks: this stack's topics get a
    /// unique prefix, so stacks sharing it do not see each other's records.
    Shared(Arc<ApacheKafka>),
}

impl From<KafkaKind> for KafkaSetup {
    fn from(kind: KafkaKind) -> KafkaSetup {
        match kind {
            KafkaKind::Mock => KafkaSetup::Mock,
            KafkaKind::Apache => KafkaSetup::Apache(KafkaOptions::default()),
        }
    }
}

/// The names of a stack's topics (dead-letter topics are `<source>` + the config's suffix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackTopics {
    /// Transactions.
    pub transactions: String,
    /// Fraud verdicts.
    pub verdicts: String,
    /// Enrichment output.
    pub enrichment: String,
}

impl StackTopics {
    /// The standard names behind `prefix` (`""`: `transactions`, `fraud-verdicts`,
    /// `transactions-enriched`).
    pub fn with_prefix(prefix: &str) -> StackTopics {
        StackTopics {
            transactions: format!("{prefix}transactions"),
            verdicts: format!("{prefix}fraud-verdicts"),
            enrichment: format!("{prefix}transactions-enriched"),
        }
    }
}

/// A running local stack.
pub struct LocalStack {
    /// The Redis Cluster (3 masters + 3 replicas).
    pub cluster: RedisCluster,
    /// The Kafka cluster, with the stack's topics.
    pub kafka: Kafka,
    /// The stack's topic names.
    pub topics: StackTopics,
}

impl LocalStack {
    /// Starts a Redis Cluster and a mock Kafka (blocking: call from `spawn_blocking` or before
    /// the runtime).
    pub fn start(options: ClusterOptions, partitions: i32) -> Result<LocalStack, LocalStackError> {
        LocalStack::start_with(options, KafkaSetup::Mock, partitions)
    }

    /// Starts a Redis Cluster and the Kafka of `kafka`, and creates the topics (transactions,
    /// verdicts, enrichment and both dead-letter topics, `partitions` each).
    pub fn start_with(
        options: ClusterOptions,
        kafka: KafkaSetup,
        partitions: i32,
    ) -> Result<LocalStack, LocalStackError> {
        let (kafka, prefix) = match kafka {
            KafkaSetup::Mock => (Kafka::Mock(MockKafka::start(3)?), String::new()),
            KafkaSetup::Apache(opts) => (
                Kafka::Apache(Arc::new(ApacheKafka::start(opts)?)),
                String::new(),
            ),
            KafkaSetup::Shared(apache) => {
                let prefix = format!("s{}-{:08x}-", std::process::id(), rand::random::<u32>());
                (Kafka::Apache(apache), prefix)
            }
        };
        let topics = StackTopics::with_prefix(&prefix);
        let dlq_suffix = fds_worker::config::KafkaConfig::default().dlq_suffix;
        for topic in [&topics.transactions, &topics.verdicts] {
            kafka.create_topic(topic, partitions)?;
            kafka.create_topic(&format!("{topic}{dlq_suffix}"), partitions)?;
        }
        kafka.create_topic(&topics.enrichment, partitions)?;
        let cluster = RedisCluster::start(options)?;
        Ok(LocalStack {
            cluster,
            kafka,
            topics,
        })
    }

    /// `base` pointed at this stack, in consumer group `group`, with the stack's topics.
    pub fn config(&self, mut base: Config, group: &str) -> Config {
        base.kafka.brokers = self.kafka.bootstrap_servers().to_owned();
        base.kafka.group_id = group.to_owned();
        base.kafka.transactions_topic = self.topics.transactions.clone();
        base.kafka.verdict_topics = vec![self.topics.verdicts.clone()];
        base.kafka.enrichment_topic = self.topics.enrichment.clone();
        base.redis.nodes = self.cluster.seed_urls();
        base
    }

    /// The `FDS_*` environment that points a worker process (or an ops command) at this stack:
    /// brokers, Redis nodes and, when they are not the defaults, the topic names.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            (
                "FDS_KAFKA__BROKERS",
                self.kafka.bootstrap_servers().to_owned(),
            ),
            ("FDS_REDIS__NODES", self.cluster.seed_urls().join(",")),
        ];
        if self.topics != StackTopics::with_prefix("") {
            env.push((
                "FDS_KAFKA__TRANSACTIONS_TOPIC",
                self.topics.transactions.clone(),
            ));
            env.push(("FDS_KAFKA__VERDICT_TOPICS", self.topics.verdicts.clone()));
            env.push((
                "FDS_KAFKA__ENRICHMENT_TOPIC",
                self.topics.enrichment.clone(),
            ));
        }
        env
    }

    /// A producer for generated traffic (idempotent, see [`fds_worker::generate::traffic_producer`]).
    pub fn producer(&self) -> Result<FutureProducer, rdkafka::error::KafkaError> {
        fds_worker::generate::traffic_producer(self.kafka.client_config())
    }

    /// Publishes generated `events` in order to `config`'s transaction topic and first verdict
    /// topic, at `rate` events/s (`None`: as fast as possible); returns once all are acked.
    pub async fn publish(
        &self,
        config: &Config,
        events: &[fds_worker::generate::GeneratedEvent],
        rate: Option<std::num::NonZeroU32>,
    ) -> anyhow::Result<()> {
        publish_with(&self.producer()?, config, events, rate).await
    }
}

/// [`LocalStack::publish`] through `producer`: a long-lived publisher, as a real one is (a new
/// idempotent producer first fetches metadata and its producer id, and every record it is given
/// meanwhile waits, its create time already set).
pub async fn publish_with(
    producer: &rdkafka::producer::FutureProducer,
    config: &Config,
    events: &[fds_worker::generate::GeneratedEvent],
    rate: Option<std::num::NonZeroU32>,
) -> anyhow::Result<()> {
    fds_worker::generate::produce(
        producer,
        &fds_worker::codec::Codec::builtin(),
        events,
        &config.kafka.transactions_topic,
        &config.kafka.verdict_topics[0],
        rate,
    )
    .await?;
    Ok(())
}

/// What the worker has finished so far, read from its metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Records consumed (all topics).
    pub consumed: u64,
    /// Enrichment records acked.
    pub enriched: u64,
    /// Verdicts applied.
    pub verdicts: u64,
    /// Dead letters acked.
    pub dead_lettered: u64,
    /// Velocity breaches.
    pub breaches: u64,
}

impl Progress {
    /// Reads the counters for `config`'s topics.
    pub fn read(metrics: &Metrics, config: &Config) -> Progress {
        let topic = |name: &str| TopicLabel {
            topic: name.to_owned(),
        };
        let kafka = &config.kafka;
        let mut progress = Progress {
            enriched: metrics
                .events_enriched
                .get_or_create(&topic(&kafka.transactions_topic))
                .get(),
            dead_lettered: metrics.dead_lettered_sum.get(),
            breaches: metrics.velocity_breaches.get(),
            ..Progress::default()
        };
        for name in kafka.source_topics() {
            progress.consumed += metrics.events_consumed.get_or_create(&topic(name)).get();
            if kafka.is_verdict_topic(name) {
                progress.verdicts += metrics.verdicts_applied.get_or_create(&topic(name)).get();
            }
        }
        progress
    }

    /// Every record has been finished (enriched, applied or dead-lettered).
    pub fn finished(&self, records: u64) -> bool {
        self.enriched + self.verdicts + self.dead_lettered >= records
    }
}

/// Polls [`Progress`] every `every` until `records` are finished or `timeout` passes, calling
/// `report` each time; returns the last progress and whether it finished.
pub async fn wait_until_finished(
    metrics: &Metrics,
    config: &Config,
    records: u64,
    timeout: Duration,
    every: Duration,
    mut report: impl FnMut(&Progress, Duration),
) -> (Progress, bool) {
    let started = Instant::now();
    loop {
        let progress = Progress::read(metrics, config);
        report(&progress, started.elapsed());
        if progress.finished(records) {
            return (progress, true);
        }
        if started.elapsed() >= timeout {
            return (progress, false);
        }
        tokio::time::sleep(every).await;
    }
}
