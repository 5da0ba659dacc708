//! The label sets of the metrics: low-cardinality values only (topic, reason, error kind,
//! level, partition, node, role, slot state).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// Label: a topic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    /// Topic name.
    pub topic: String,
}

/// Label: how something ended (`committed`, `aborted`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// The outcome.
    pub outcome: String,
}

/// A batch's counts by topic, added to a family at once: one label lookup (and label string)
/// per topic and batch instead of per event.
#[derive(Debug, Default)]
pub struct TopicCounts<'a>(Vec<(&'a str, u64)>);

impl<'a> TopicCounts<'a> {
    /// Counts one event of `topic`.
    pub fn add(&mut self, topic: &'a str) {
        match self.0.iter_mut().find(|(seen, _)| *seen == topic) {
            Some((_, count)) => *count += 1,
            None => self.0.push((topic, 1)),
        }
    }

    /// Adds the counts to `family`.
    pub fn add_to(self, family: &Family<TopicLabel, Counter>) {
        for (topic, count) in self.0 {
            family
                .get_or_create(&TopicLabel {
                    topic: topic.to_owned(),
                })
                .inc_by(count);
        }
    }
}

/// Labels: a topic and a reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicReasonLabels {
    /// Topic name.
    pub topic: String,
    /// Error kind.
    pub reason: String,
}

/// Labels: an error kind and a node.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Error kind.
    pub kind: String,
    /// Node (`host:port`, or `unknown`).
    pub node: String,
}

/// Labels of a failed publish attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PublishFailureLabels {
    /// Topic published to (the enrichment topic or a dead-letter topic).
    pub topic: String,
    /// `retryable`, `permanent` or `fatal`.
    pub kind: String,
    /// librdkafka's error code in snake case (`message_size_too_large`, `queue_full` …).
    pub error: String,
    /// What the sink did: `retried`, or `gave_up` (the record was then dead-lettered, or the
    /// worker stopped).
    pub decision: String,
}

/// Labels: an entity kind and a threat level.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BlacklistLabels {
    /// Entity kind (`user`, `ip` …).
    pub kind: String,
    /// Threat level.
    pub level: String,
}

/// Labels: a topic and a partition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
}

/// Label: a Redis node (`host:port`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct NodeLabel {
    /// The node's address, `host:port`.
    pub node: String,
}

/// Labels: a Redis node and its role (`master` or `replica`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct NodeRoleLabels {
    /// The node's address, `host:port`.
    pub node: String,
    /// `master` or `replica`.
    pub role: String,
}

/// Label: a slot state of `CLUSTER INFO` (`assigned`, `ok`, `pfail`, `fail`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SlotStateLabel {
    /// `assigned`, `ok`, `pfail` or `fail`.
    pub state: String,
}
