//! The worker on a local stack with synthetic traffic: used by `fds-worker demo` and by the
//! end-to-end tests, so both exercise exactly the same path.
//!
//! [`LocalStack`] starts a real 6-node Redis Cluster and a librdkafka mock Kafka cluster and
//! points a [`Config`] at them; [`Progress`] reads the worker's metrics to tell when every
//! generated event has been finished.

use std::time::{Duration, Instant};

use rdkafka::producer::FutureProducer;

use crate::config::Config;
use crate::localstack::{ClusterOptions, LocalStackError, MockKafka, RedisCluster};
use crate::metrics::{Metrics, TopicLabel};

/// A running local stack.
pub struct LocalStack {
    /// The Redis Cluster (3 masters + 3 replicas).
    pub cluster: RedisCluster,
    /// The Kafka mock cluster, with the standard topics.
    pub kafka: MockKafka,
}

impl LocalStack {
    /// Starts both (blocking: call from `spawn_blocking` or before the runtime).
    pub fn start(options: ClusterOptions, partitions: i32) -> Result<LocalStack, LocalStackError> {
        let kafka = MockKafka::with_standard_topics(3, partitions)?;
        let cluster = RedisCluster::start(options)?;
        Ok(LocalStack { cluster, kafka })
    }

    /// `base` pointed at this stack, in consumer group `group`.
    pub fn config(&self, mut base: Config, group: &str) -> Config {
        base.kafka.brokers = self.kafka.bootstrap_servers().to_owned();
        base.kafka.group_id = group.to_owned();
        base.redis.nodes = self.cluster.seed_urls();
        base
    }

    /// A producer for generated traffic.
    pub fn producer(&self) -> Result<FutureProducer, rdkafka::error::KafkaError> {
        self.kafka.client_config().set("linger.ms", "5").create()
    }

    /// Publishes generated `events` in order to `config`'s transaction topic and first verdict
    /// topic, at `rate` events/s (`None`: as fast as possible); returns once all are acked.
    pub async fn publish(
        &self,
        config: &Config,
        events: &[crate::generate::GeneratedEvent],
        rate: Option<std::num::NonZeroU32>,
    ) -> anyhow::Result<()> {
        let producer = self.producer()?;
        crate::generate::produce(
            &producer,
            &crate::codec::Codec::builtin(),
            events,
            &config.kafka.transactions_topic,
            &config.kafka.verdict_topics[0],
            rate,
        )
        .await?;
        Ok(())
    }
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
