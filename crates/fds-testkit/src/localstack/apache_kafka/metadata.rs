//! What the cluster's metadata says: partition leaders, the coordinators of groups and
//! transactional ids, and the bounded waits on it (brokers live, a healthy cluster).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::metadata::Metadata;

use super::{ApacheKafka, POLL, PROBE_TIMEOUT};
use crate::localstack::{LocalStackError, Result};

/// Partitions of `__consumer_offsets` and `__transaction_state`.
pub const INTERNAL_TOPIC_PARTITIONS: i32 = 10;

impl ApacheKafka {
    /// The leader of `topic`/`partition`, from the metadata (`None`: no leader).
    pub fn leader_of(&self, topic: &str, partition: i32) -> Result<Option<i32>> {
        let metadata = self.metadata()?;
        Ok(metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .and_then(|t| t.partitions().iter().find(|p| p.id() == partition))
            .map(|p| p.leader())
            .filter(|leader| *leader >= 0))
    }

    /// The coordinator of consumer group `group`: the leader of its `__consumer_offsets`
    /// partition (Kafka's rule: `abs(group.hashCode()) % partitions`).
    pub fn group_coordinator(&self, group: &str) -> Result<Option<i32>> {
        self.leader_of(
            "__consumer_offsets",
            internal_partition(group, INTERNAL_TOPIC_PARTITIONS),
        )
    }

    /// The coordinator of transactional id `id`: the leader of its `__transaction_state`
    /// partition.
    pub fn transaction_coordinator(&self, id: &str) -> Result<Option<i32>> {
        self.leader_of(
            "__transaction_state",
            internal_partition(id, INTERNAL_TOPIC_PARTITIONS),
        )
    }

    /// The cluster metadata, from any live broker.
    pub fn metadata(&self) -> Result<Metadata> {
        let consumer: BaseConsumer = self
            .client_config()
            .set("reconnect.backoff.max.ms", "500")
            .create()?;
        Ok(consumer.fetch_metadata(None, PROBE_TIMEOUT)?)
    }

    /// Waits until every broker is live and every partition of every topic has its full
    /// replica set in sync (after a restart, the returning broker has caught up).
    pub fn wait_healthy(&self, timeout: Duration) -> Result<()> {
        let brokers = self.broker_count() as usize;
        self.wait_until("a healthy cluster (all brokers, full ISRs)", timeout, |m| {
            if m.brokers().len() != brokers {
                return Err(format!("{} of {brokers} brokers live", m.brokers().len()));
            }
            for t in m.topics() {
                for p in t.partitions() {
                    if p.leader() < 0 || p.isr().len() < p.replicas().len() {
                        return Err(format!(
                            "{}/{}: leader {}, isr {:?} of {:?}",
                            t.name(),
                            p.id(),
                            p.leader(),
                            p.isr(),
                            p.replicas()
                        ));
                    }
                }
            }
            Ok(())
        })
    }

    /// Waits until the metadata lists every broker in `ids` as live (a broker is listed once
    /// it registered with the controller and is unfenced).
    pub(super) fn wait_for_brokers(&self, ids: &[i32], timeout: Duration) -> Result<()> {
        let what = format!("brokers {ids:?} to be live in the cluster metadata");
        let result = self.wait_until(&what, timeout, |metadata| {
            let live: Vec<i32> = metadata.brokers().iter().map(|b| b.id()).collect();
            let missing: Vec<i32> = ids
                .iter()
                .copied()
                .filter(|id| !live.contains(id))
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("live {live:?}, missing {missing:?}"))
            }
        });
        // A broker whose process exited will never come: say so with its log.
        result.map_err(|error| {
            let exited: Vec<String> = self
                .lock_nodes()
                .iter_mut()
                .filter_map(|n| (ids.contains(&n.id) && !n.alive()).then_some(n))
                .map(|n| format!("broker {} exited\n{}", n.id, n.tails(40)))
                .collect();
            if exited.is_empty() {
                error
            } else {
                LocalStackError::Protocol {
                    command: what.clone(),
                    detail: exited.join("\n"),
                }
            }
        })
    }

    /// Polls the metadata until `check` passes, bounded by `timeout`.
    pub(super) fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Metadata) -> std::result::Result<(), String>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let consumer: BaseConsumer = self
            .client_config()
            .set("reconnect.backoff.max.ms", "500")
            .set("topic.metadata.refresh.interval.ms", "200")
            .create()?;
        loop {
            let last = match consumer.fetch_metadata(None, PROBE_TIMEOUT) {
                Ok(metadata) => match check(&metadata) {
                    Ok(()) => return Ok(()),
                    Err(reason) => reason,
                },
                Err(e) => format!("metadata request failed: {e}"),
            };
            if Instant::now() >= deadline {
                return Err(LocalStackError::Timeout {
                    what: what.to_owned(),
                    waited: timeout,
                    last,
                });
            }
            std::thread::sleep(POLL);
        }
    }
}

/// The `__consumer_offsets` / `__transaction_state` partition of a group or transactional id:
/// Kafka's `Utils.abs(id.hashCode()) % partitions`, with Java's `String.hashCode` (over UTF-16
/// code units) and `Utils.abs` (`i32::MIN` maps to 0).
pub fn internal_partition(id: &str, partitions: i32) -> i32 {
    let hash = id.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_partitions_follow_javas_string_hash() {
        // "fds-worker".hashCode() = 134239446 in Java; 134239446 % 10 = 6.
        assert_eq!(internal_partition("fds-worker", 10), 6);
        // "".hashCode() = 0.
        assert_eq!(internal_partition("", 50), 0);
        // A negative hash: "polygenelubricants".hashCode() = i32::MIN, which Utils.abs maps to 0.
        assert_eq!(internal_partition("polygenelubricants", 10), 0);
    }
}
