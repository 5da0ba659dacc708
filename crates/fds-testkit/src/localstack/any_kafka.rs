//! [`Kafka`]: the local stack's Kafka, either librdkafka's mock cluster or a real Apache Kafka
//! cluster (of its own or shared between stacks), behind one set of calls.

use std::sync::Arc;

use rdkafka::ClientConfig;

use super::{ApacheKafka, MockKafka, Result};

/// The Kafka of a local stack.
#[derive(Debug)]
pub enum Kafka {
    /// librdkafka's in-process mock cluster (no Java needed; no time index, SASL, TLS or
    /// replication — see [`super::kafka`]).
    Mock(MockKafka),
    /// A real Apache Kafka cluster; an `Arc` because tests share one between stacks.
    Apache(Arc<ApacheKafka>),
}

impl Kafka {
    /// The `bootstrap.servers` list.
    pub fn bootstrap_servers(&self) -> &str {
        match self {
            Kafka::Mock(mock) => mock.bootstrap_servers(),
            Kafka::Apache(apache) => apache.bootstrap_servers(),
        }
    }

    /// A client config with `bootstrap.servers` set.
    pub fn client_config(&self) -> ClientConfig {
        match self {
            Kafka::Mock(mock) => mock.client_config(),
            Kafka::Apache(apache) => apache.client_config(),
        }
    }

    /// Creates `topic` with `partitions` partitions (replicated on up to 3 brokers).
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        match self {
            Kafka::Mock(mock) => mock.create_topic(topic, partitions),
            Kafka::Apache(apache) => apache.create_topic(topic, partitions),
        }
    }

    /// Number of brokers; their ids are `1..=broker_count()`.
    pub fn broker_count(&self) -> i32 {
        match self {
            Kafka::Mock(mock) => mock.broker_count(),
            Kafka::Apache(apache) => apache.broker_count(),
        }
    }

    /// The Apache Kafka cluster, if that is what runs.
    pub fn apache(&self) -> Option<&ApacheKafka> {
        match self {
            Kafka::Apache(apache) => Some(apache),
            Kafka::Mock(_) => None,
        }
    }

    /// The mock cluster, if that is what runs.
    pub fn mock(&self) -> Option<&MockKafka> {
        match self {
            Kafka::Mock(mock) => Some(mock),
            Kafka::Apache(_) => None,
        }
    }

    /// Every broker's log tail (empty for the mock, which has none), for failure messages.
    pub fn log_tails(&self, lines: usize) -> String {
        match self {
            Kafka::Mock(_) => String::new(),
            Kafka::Apache(apache) => apache.all_log_tails(lines),
        }
    }
}
