//! `kafka.group_protocol`: which consumer group protocol the worker's group consumer speaks.

use serde::{Deserialize, Serialize};

/// librdkafka `group.protocol`.
///
/// With [`Consumer`](GroupProtocol::Consumer) (KIP-848) the group coordinator on the broker
/// assigns partitions and owns the session: librdkafka refuses to create a consumer that sets
/// any of [`CLASSIC_ONLY_KEYS`], and the broker's `group.consumer.*` settings
/// (`group.consumer.session.timeout.ms`, `group.consumer.heartbeat.interval.ms`,
/// `group.consumer.assignors`) decide instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupProtocol {
    /// The classic protocol: one worker, the group leader, assigns partitions with the
    /// cooperative-sticky assignor; the session timeout is the client's
    /// (`kafka.session_timeout`). Every broker version supports it.
    #[default]
    Classic,
    /// The KIP-848 protocol: the broker assigns partitions (incrementally, so rebalances never
    /// stop the whole group) and decides the session timeout. Needs Kafka >= 4.0 brokers;
    /// `kafka.session_timeout` is not used.
    Consumer,
}

/// Client-side group settings of the classic protocol that librdkafka rejects with
/// `group.protocol=consumer` (the broker decides them).
pub const CLASSIC_ONLY_KEYS: &[&str] = &[
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "group.protocol.type",
];

impl GroupProtocol {
    /// The librdkafka value.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            GroupProtocol::Classic => "classic",
            GroupProtocol::Consumer => "consumer",
        }
    }

    /// Whether a consumer speaking this protocol may set librdkafka option `key`.
    pub fn allows_client_key(self, key: &str) -> bool {
        match self {
            GroupProtocol::Classic => true,
            GroupProtocol::Consumer => !CLASSIC_ONLY_KEYS.contains(&key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_consumer_protocol_forbids_the_classic_group_keys() {
        for key in CLASSIC_ONLY_KEYS {
            assert!(GroupProtocol::Classic.allows_client_key(key));
            assert!(!GroupProtocol::Consumer.allows_client_key(key), "{key}");
        }
        assert!(GroupProtocol::Consumer.allows_client_key("max.poll.interval.ms"));
        assert!(GroupProtocol::Consumer.allows_client_key("group.remote.assignor"));
    }
}
