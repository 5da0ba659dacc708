//! A [`ClusterSnapshot`] → the `fds_redis_*` gauges. Series of nodes that left the snapshot,
//! and of a node's former role, are removed; a node that does not answer keeps
//! `fds_redis_node_up 0` and its role, and loses its `INFO` series (no stale values).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use super::snapshot::ClusterSnapshot;
use crate::metrics::{ClusterMetrics, NodeLabel, NodeRoleLabels, SlotStateLabel};

/// Exports snapshots, remembering which per-node series it wrote.
#[derive(Debug, Default)]
pub struct Exporter {
    nodes: BTreeSet<String>,
    roles: BTreeSet<NodeRoleLabels>,
}

impl Exporter {
    /// Writes `snapshot` into `metrics`.
    pub fn export(&mut self, snapshot: &ClusterSnapshot, metrics: &ClusterMetrics) {
        match &snapshot.view {
            Some(view) => {
                metrics.state.set(i64::from(view.is_ok()));
                for (state, value) in [
                    ("assigned", view.slots_assigned),
                    ("ok", view.slots_ok),
                    ("pfail", view.slots_pfail),
                    ("fail", view.slots_fail),
                ] {
                    metrics
                        .slots
                        .get_or_create(&SlotStateLabel {
                            state: state.to_owned(),
                        })
                        .set(i64::from(value));
                }
                metrics.known_nodes.set(i64::from(view.known_nodes));
            }
            None => {
                metrics.state.set(0);
                metrics.slots.clear();
                metrics.known_nodes.set(0);
            }
        }
        metrics.slot_coverage_ratio.set(snapshot.coverage_ratio());

        let mut nodes = BTreeSet::new();
        let mut roles = BTreeSet::new();
        for node in &snapshot.nodes {
            let label = NodeLabel {
                node: node.addr.clone(),
            };
            nodes.insert(node.addr.clone());
            metrics
                .node_up
                .get_or_create(&label)
                .set(i64::from(node.up));
            if let Some(role) = node.role {
                let labels = NodeRoleLabels {
                    node: node.addr.clone(),
                    role: role.as_str().to_owned(),
                };
                metrics.node_role.get_or_create(&labels).set(1);
                roles.insert(labels);
            }
            let gauges = [
                (&metrics.used_memory, node.used_memory),
                (&metrics.maxmemory, node.maxmemory),
                (&metrics.connected_clients, node.connected_clients),
            ];
            for (family, value) in gauges {
                match value {
                    Some(value) => {
                        family.get_or_create(&label).set(value as i64);
                    }
                    None => {
                        family.remove(&label);
                    }
                }
            }
            for (family, value) in [
                (&metrics.keyspace_hits, node.keyspace_hits),
                (&metrics.keyspace_misses, node.keyspace_misses),
                (&metrics.evicted_keys, node.evicted_keys),
            ] {
                match value {
                    // The node's own counter, mirrored (it restarts from 0 with the node, which
                    // Prometheus' rate() treats as a counter reset).
                    Some(value) => family
                        .get_or_create(&label)
                        .inner()
                        .store(value, Ordering::Relaxed),
                    None => {
                        family.remove(&label);
                    }
                }
            }
        }
        for gone in self.nodes.difference(&nodes) {
            let label = NodeLabel { node: gone.clone() };
            metrics.node_up.remove(&label);
            metrics.used_memory.remove(&label);
            metrics.maxmemory.remove(&label);
            metrics.connected_clients.remove(&label);
            metrics.keyspace_hits.remove(&label);
            metrics.keyspace_misses.remove(&label);
            metrics.evicted_keys.remove(&label);
        }
        for gone in self.roles.difference(&roles) {
            metrics.node_role.remove(gone);
        }
        self.nodes = nodes;
        self.roles = roles;
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    use super::super::snapshot::{NodeAnswer, NodeReport};
    use super::*;
    use crate::metrics::Metrics;
    use crate::store::admin::{ClusterInfo, NodeInfo};

    fn report(addr: &str, role: &str) -> NodeReport {
        NodeReport {
            addr: addr.into(),
            answer: Ok(NodeAnswer {
                myid: addr.into(),
                cluster_info: ClusterInfo::parse(
                    "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\ncluster_known_nodes:1\r\n",
                ),
                shards: Vec::new(),
                info: NodeInfo::parse(&format!(
                    "role:{role}\r\nused_memory:2048\r\nmaxmemory:4096\r\nconnected_clients:2\r\nkeyspace_hits:9\r\nkeyspace_misses:1\r\nevicted_keys:7\r\n"
                )),
            }),
        }
    }

    #[test]
    fn exports_every_gauge_and_removes_what_left() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let mut exporter = Exporter::default();
        let snapshot = ClusterSnapshot::from_reports(&[report("n:1", "master")], false);
        exporter.export(&snapshot, &metrics.cluster);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            "fds_redis_cluster_state 1",
            "fds_redis_cluster_slots{state=\"ok\"} 16384",
            "fds_redis_known_nodes 1",
            "fds_redis_node_up{node=\"n:1\"} 1",
            "fds_redis_node_role{node=\"n:1\",role=\"master\"} 1",
            "fds_redis_used_memory_bytes{node=\"n:1\"} 2048",
            "fds_redis_maxmemory_bytes{node=\"n:1\"} 4096",
            "fds_redis_connected_clients{node=\"n:1\"} 2",
            "fds_redis_keyspace_hits_total{node=\"n:1\"} 9",
            "fds_redis_keyspace_misses_total{node=\"n:1\"} 1",
            "fds_redis_evicted_keys_total{node=\"n:1\"} 7",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(text.contains("fds_redis_slot_coverage_ratio 0.0"), "{text}");

        let snapshot = ClusterSnapshot::from_reports(&[report("n:2", "slave")], false);
        exporter.export(&snapshot, &metrics.cluster);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(!text.contains("n:1"), "{text}");
        assert!(text.contains("fds_redis_node_role{node=\"n:2\",role=\"replica\"} 1"));
    }
}
