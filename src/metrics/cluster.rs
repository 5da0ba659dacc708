//! The cluster monitor's metrics: `fds_redis_*`.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{NodeLabel, NodeRoleLabels, SlotStateLabel};

/// What the cluster monitor ([`crate::monitor`]) exports: the seed's alert inputs. Per-node
/// series of a node that left the cluster are removed.
#[derive(Clone, Debug, Default)]
pub struct ClusterMetrics {
    /// `fds_redis_cluster_state`: 1 when `cluster_state:ok`, else 0.
    pub state: Gauge,
    /// `fds_redis_cluster_slots{state}`: `cluster_slots_assigned|ok|pfail|fail`.
    pub slots: Family<SlotStateLabel, Gauge>,
    /// `fds_redis_slot_coverage_ratio`: share of the 16384 slots served by a reachable master
    /// not flagged as failed (0..1).
    pub slot_coverage_ratio: Gauge<f64, AtomicU64>,
    /// `fds_redis_known_nodes`: `cluster_known_nodes`.
    pub known_nodes: Gauge,
    /// `fds_redis_node_up{node}`: 1 when the node answered the last poll.
    pub node_up: Family<NodeLabel, Gauge>,
    /// `fds_redis_node_role{node,role}`: 1 for the node's current role.
    pub node_role: Family<NodeRoleLabels, Gauge>,
    /// `fds_redis_used_memory_bytes{node}`.
    pub used_memory: Family<NodeLabel, Gauge>,
    /// `fds_redis_maxmemory_bytes{node}` (0 = no limit).
    pub maxmemory: Family<NodeLabel, Gauge>,
    /// `fds_redis_connected_clients{node}`.
    pub connected_clients: Family<NodeLabel, Gauge>,
    /// `fds_redis_keyspace_hits_total{node}` (the node's own counter, mirrored).
    pub keyspace_hits: Family<NodeLabel, Counter>,
    /// `fds_redis_keyspace_misses_total{node}` (the node's own counter, mirrored).
    pub keyspace_misses: Family<NodeLabel, Counter>,
    /// `fds_redis_evicted_keys_total{node}` (the node's own counter, mirrored): keys Redis
    /// removed to stay under `maxmemory`. Any increase can mean lost feature tiles and
    /// apply-once marks (a redelivery then counts twice).
    pub evicted_keys: Family<NodeLabel, Counter>,
}

impl ClusterMetrics {
    pub(super) fn register(&self, r: &mut Registry) {
        use prometheus_client::registry::Unit;
        r.register(
            "redis_cluster_state",
            "1 when CLUSTER INFO says cluster_state:ok",
            self.state.clone(),
        );
        r.register(
            "redis_cluster_slots",
            "CLUSTER INFO slot counts by state",
            self.slots.clone(),
        );
        r.register(
            "redis_slot_coverage_ratio",
            "Share of slots served by a reachable, non-failed master",
            self.slot_coverage_ratio.clone(),
        );
        r.register(
            "redis_known_nodes",
            "CLUSTER INFO cluster_known_nodes",
            self.known_nodes.clone(),
        );
        r.register(
            "redis_node_up",
            "1 when the node answered the last poll",
            self.node_up.clone(),
        );
        r.register(
            "redis_node_role",
            "1 for the node's current role",
            self.node_role.clone(),
        );
        r.register_with_unit(
            "redis_used_memory",
            "INFO used_memory",
            Unit::Bytes,
            self.used_memory.clone(),
        );
        r.register_with_unit(
            "redis_maxmemory",
            "INFO maxmemory (0 = no limit)",
            Unit::Bytes,
            self.maxmemory.clone(),
        );
        r.register(
            "redis_connected_clients",
            "INFO connected_clients",
            self.connected_clients.clone(),
        );
        r.register(
            "redis_keyspace_hits",
            "INFO keyspace_hits",
            self.keyspace_hits.clone(),
        );
        r.register(
            "redis_keyspace_misses",
            "INFO keyspace_misses",
            self.keyspace_misses.clone(),
        );
        r.register(
            "redis_evicted_keys",
            "INFO evicted_keys: keys removed to stay under maxmemory",
            self.evicted_keys.clone(),
        );
    }
}
