//! [`MockKafka`]: librdkafka's in-process mock cluster, as a Kafka for tests and the demo.
//!
//! The mock brokers listen on real loopback TCP ports, so any Kafka client — in this process or
//! a child process — connects to [`MockKafka::bootstrap_servers`] as to a real cluster. The
//! cluster lives as long as the [`MockKafka`] value (and so as long as the process that owns
//! it).
//!
//! # What the mock does (checked by `tests/localstack.rs` against librdkafka 2.12.1)
//! Works like Kafka:
//! - produce and fetch, keys, headers, timestamps; explicit topic creation with N partitions
//!   ([`MockKafka::create_topic`]; the CreateTopics admin API is *not* implemented);
//! - the idempotent producer (`enable.idempotence=true`, `acks=all`): InitProducerId, sequence
//!   numbers, no duplicates when produce requests are retried after injected errors;
//! - consumer groups with `partition.assignment.strategy=cooperative-sticky` (incremental
//!   rebalances between members, [`rebalance_protocol`] reports `Cooperative`);
//! - manual offset storage (`enable.auto.offset.store=false` + `store_offset`) and sync commits;
//!   a new member of the same group resumes from the committed offsets; `committed()` reads
//!   them back;
//! - fault injection: brokers down/up (clients see transport errors and reconnect; delivery
//!   resumes), round-trip delay, per-API error stacks, partition leader changes.
//!
//! Does not behave like Kafka:
//! - `offsets_for_times` ignores the timestamp: the mock answers every ListOffsets lookup by
//!   time with the *end* offset, so time-bounded replay must use its fallback (earliest offset,
//!   skip by event time) on the mock;
//! - broker down does not move partition leadership (set it with
//!   [`MockKafka::set_partition_leader`]);
//! - no log retention, compaction or quotas; topic configs are ignored.
//!
//! Kafka transactions are supported by the mock's protocol subset (InitProducerId with a
//! transactional id, AddPartitionsToTxn, EndTxn) but were not relied on by the design; see the
//! test `mock_kafka_transactions_commit_and_abort` for what was observed.
//!
//! [`rebalance_protocol`]: rdkafka::consumer::Consumer::rebalance_protocol

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaResult;
use rdkafka::mocking::{MockCluster, MockCoordinator};
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use super::{LocalStackError, Result};

/// The topics fds-worker reads and writes, in the order: input transactions, input verdicts,
/// enrichment output, and the two dead-letter topics.
pub const STANDARD_TOPICS: [&str; 5] = [
    "transactions",
    "fraud-verdicts",
    "transactions-enriched",
    "transactions.dlq",
    "fraud-verdicts.dlq",
];

type Mock = MockCluster<'static, DefaultProducerContext>;
type Op = Box<dyn FnOnce(&Mock) + Send>;

/// A librdkafka mock cluster with `brokers` brokers (ids `1..=brokers`), owned by a dedicated
/// thread so that this handle is `Send + Sync` (the mock itself is a raw C handle, neither).
///
/// Every method is a short blocking round trip to that thread (microseconds), safe to call from
/// async code. Dropping it destroys the cluster: connected clients see their brokers vanish.
///
/// ```no_run
/// use fds_testkit::localstack::MockKafka;
/// let kafka = MockKafka::with_standard_topics(3, 4)?;
/// let producer: rdkafka::producer::BaseProducer = kafka.client_config().create()?;
/// kafka.broker_down(2)?; // fault injection
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct MockKafka {
    ops: Option<mpsc::Sender<Op>>,
    owner: Option<JoinHandle<()>>,
    bootstrap: String,
    brokers: i32,
}

impl MockKafka {
    /// Starts a mock cluster with `brokers` brokers and no topics.
    pub fn start(brokers: u16) -> Result<MockKafka> {
        let brokers = i32::from(brokers.max(1));
        let (ops, inbox) = mpsc::channel::<Op>();
        let (ready, started) = mpsc::channel::<Result<String>>();
        let owner = std::thread::Builder::new()
            .name("mock-kafka".into())
            .spawn(move || {
                let cluster = match MockCluster::new(brokers) {
                    Ok(cluster) => cluster,
                    Err(e) => {
                        let _ = ready.send(Err(e.into()));
                        return;
                    }
                };
                let _ = ready.send(Ok(cluster.bootstrap_servers()));
                // Ends when the handle drops its sender; the cluster is destroyed on return.
                for op in inbox {
                    op(&cluster);
                }
            })
            .map_err(|e| LocalStackError::io("spawning the mock-kafka thread", e))?;
        let bootstrap = started
            .recv()
            .map_err(|_| LocalStackError::MockKafkaGone)??;
        tracing::debug!(%bootstrap, brokers, "mock kafka cluster started");
        Ok(MockKafka {
            ops: Some(ops),
            owner: Some(owner),
            bootstrap,
            brokers,
        })
    }

    /// Starts a mock cluster and creates `topics`, each with `partitions` partitions.
    pub fn with_topics(brokers: u16, topics: &[&str], partitions: i32) -> Result<MockKafka> {
        let kafka = MockKafka::start(brokers)?;
        for topic in topics {
            kafka.create_topic(topic, partitions)?;
        }
        Ok(kafka)
    }

    /// Starts a mock cluster with the [`STANDARD_TOPICS`], each with `partitions` partitions.
    pub fn with_standard_topics(brokers: u16, partitions: i32) -> Result<MockKafka> {
        MockKafka::with_topics(brokers, &STANDARD_TOPICS, partitions)
    }

    /// The `bootstrap.servers` list, e.g. `127.0.0.1:40123,127.0.0.1:40125`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Number of brokers; their ids are `1..=broker_count()`.
    pub fn broker_count(&self) -> i32 {
        self.brokers
    }

    /// A client config with `bootstrap.servers` set, to add the rest to.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        config
    }

    /// Creates `topic` with `partitions` partitions, replicated on up to 3 brokers.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        let topic = topic.to_owned();
        let replication = self.brokers.min(3);
        self.call(move |mock| mock.create_topic(&topic, partitions, replication))
    }

    /// Disconnects broker `broker_id` and refuses new connections to it. Its partitions keep
    /// their leader (the mock does not fail over), so they are unavailable until
    /// [`MockKafka::broker_up`] or [`MockKafka::set_partition_leader`].
    pub fn broker_down(&self, broker_id: i32) -> Result<()> {
        self.call(move |mock| mock.broker_down(broker_id))
    }

    /// Lets broker `broker_id` accept connections again.
    pub fn broker_up(&self, broker_id: i32) -> Result<()> {
        self.call(move |mock| mock.broker_up(broker_id))
    }

    /// [`MockKafka::broker_down`] for every broker: the whole cluster is unreachable.
    pub fn all_brokers_down(&self) -> Result<()> {
        self.call(|mock| mock.broker_down(-1))
    }

    /// [`MockKafka::broker_up`] for every broker.
    pub fn all_brokers_up(&self) -> Result<()> {
        self.call(|mock| mock.broker_up(-1))
    }

    /// Delays every response of broker `broker_id` (`None`: every broker) by `delay`.
    pub fn set_round_trip_time(&self, broker_id: Option<i32>, delay: Duration) -> Result<()> {
        let broker = broker_id.unwrap_or(-1);
        self.call(move |mock| mock.broker_round_trip_time(broker, delay))
    }

    /// Makes `broker_id` the leader of `topic`/`partition`, or leaves it leaderless with `None`.
    pub fn set_partition_leader(
        &self,
        topic: &str,
        partition: i32,
        broker_id: Option<i32>,
    ) -> Result<()> {
        let topic = topic.to_owned();
        self.call(move |mock| mock.partition_leader(&topic, partition, broker_id))
    }

    /// Makes the next `errors.len()` requests of kind `api` fail, one error each, in order.
    /// `RD_KAFKA_RESP_ERR__TRANSPORT` makes the broker drop the connection instead.
    pub fn push_request_errors(&self, api: RDKafkaApiKey, errors: &[RDKafkaRespErr]) -> Result<()> {
        let errors = errors.to_vec();
        self.call(move |mock| {
            mock.request_errors(api, &errors);
            Ok(())
        })
    }

    /// Forgets errors pushed with [`MockKafka::push_request_errors`] for `api`.
    pub fn clear_request_errors(&self, api: RDKafkaApiKey) -> Result<()> {
        self.call(move |mock| {
            mock.clear_request_errors(api);
            Ok(())
        })
    }

    /// Makes metadata requests report `error` for `topic` (`RD_KAFKA_RESP_ERR_NO_ERROR` clears it).
    pub fn set_topic_error(&self, topic: &str, error: RDKafkaRespErr) -> Result<()> {
        let topic = topic.to_owned();
        self.call(move |mock| mock.topic_error(&topic, error))
    }

    /// Makes `broker_id` the coordinator of consumer group `group`.
    pub fn set_group_coordinator(&self, group: &str, broker_id: i32) -> Result<()> {
        let group = group.to_owned();
        self.call(move |mock| mock.coordinator(MockCoordinator::Group(group), broker_id))
    }

    fn call<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Mock) -> KafkaResult<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = mpsc::channel();
        let ops = self.ops.as_ref().ok_or(LocalStackError::MockKafkaGone)?;
        ops.send(Box::new(move |mock: &Mock| {
            let _ = reply.send(op(mock));
        }))
        .map_err(|_| LocalStackError::MockKafkaGone)?;
        Ok(answer
            .recv()
            .map_err(|_| LocalStackError::MockKafkaGone)??)
    }
}

impl Drop for MockKafka {
    fn drop(&mut self) {
        drop(self.ops.take());
        if let Some(owner) = self.owner.take() {
            let _ = owner.join();
        }
    }
}
