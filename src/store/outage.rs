//! Outage detection: when a slot's units keep failing, is the whole cluster down (wait), has
//! the cluster itself failed the slot's node (dead-letter), or has it not decided yet? Asked of
//! the other masters (`CLUSTER INFO`, `CLUSTER NODES`, parsed by [`super::admin`]).

use std::time::{Duration, Instant};

use redis::Value;

use super::{Outage, Store, StoreError, admin};
use crate::slot::Slot;

impl Store {
    /// What is wrong when `slot`'s units keep failing: the whole cluster (wait), its node by
    /// the cluster's own verdict (dead-letter), or not decided yet. A node said `CLUSTERDOWN`
    /// more recently than anything succeeded → down. Otherwise the other masters are asked
    /// (the answer is reused for [`OUTAGE_CHECK_TTL`]): `cluster_state` other than `ok`, or no
    /// master answering → down; `ok` and their `CLUSTER NODES` flags the node `fail` (the
    /// majority agreed) or no node serves the slot → node failed; `ok` but the node only
    /// suspected (`fail?`) or still connected → undecided: the cluster has not finished its own
    /// failure detection, and with full coverage required it may yet go down as a whole.
    pub(super) async fn outage(&self, slot: Slot) -> Outage {
        let health = &self.inner.health;
        if health.cluster_down_reported() {
            return Outage::ClusterDown;
        }
        let own = health.domain(slot);
        {
            let cached = self
                .inner
                .outage_check
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some((at, node, outage)) = cached.as_ref()
                && *node == own
                && at.elapsed() < OUTAGE_CHECK_TTL
            {
                return *outage;
            }
        }
        let mut outage = Outage::ClusterDown;
        for master in health.masters().into_iter().filter(|m| *m != own) {
            let Some(info) = text_of(
                self.on_node(&master, redis::cmd("CLUSTER").arg("INFO").clone())
                    .await,
            ) else {
                continue;
            };
            if !admin::ClusterInfo::parse(&info).is_ok() {
                break;
            }
            let nodes = text_of(
                self.on_node(&master, redis::cmd("CLUSTER").arg("NODES").clone())
                    .await,
            )
            .and_then(|nodes| admin::Topology::parse(&nodes).ok());
            outage = match nodes {
                None => continue,
                Some(nodes) => node_verdict(&nodes, &own),
            };
            break;
        }
        *self
            .inner
            .outage_check
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), own, outage));
        outage
    }
}

/// The text of a bulk or verbatim string reply.
fn text_of(reply: Result<Value, StoreError>) -> Option<String> {
    match reply.ok()? {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Value::VerbatimString { text, .. } => Some(text),
        _ => None,
    }
}

/// The cluster's verdict on `node` (`host:port`, or `slot N` when nobody serves the slot) from
/// a `CLUSTER NODES` reply: unknown to the cluster or flagged `fail` → failed.
fn node_verdict(nodes: &admin::Topology, node: &str) -> Outage {
    match nodes.by_addr(node) {
        Some(view) if !view.failed => Outage::Undecided,
        _ => Outage::NodeFailed,
    }
}

/// How long an outage check is reused.
const OUTAGE_CHECK_TTL: Duration = Duration::from_millis(250);

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001 master,fail - 1 1 2 disconnected 5461-10922
c3 127.0.0.1:7002@17002 master,fail? - 1 1 3 connected 10923-16383
d4 127.0.0.1:7003@17003 slave a1 0 1 1 connected
";

    #[test]
    fn the_cluster_verdict_on_a_node_comes_from_its_flags() {
        let nodes = admin::Topology::parse(NODES).unwrap();
        let node_verdict = |node| node_verdict(&nodes, node);
        assert_eq!(node_verdict("127.0.0.1:7001"), Outage::NodeFailed);
        assert_eq!(node_verdict("127.0.0.1:7002"), Outage::Undecided);
        assert_eq!(node_verdict("127.0.0.1:7003"), Outage::Undecided);
        assert_eq!(node_verdict("slot 42"), Outage::NodeFailed);
    }
}
