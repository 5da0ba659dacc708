//! One poll's answers merged into one picture of the cluster: nodes, roles, slot ranges,
//! coverage, memory. Pure: [`ClusterSnapshot::from_reports`] does no I/O.
//!
//! The cluster-wide figures (`cluster_state`, slot counts, known nodes) and the topology come
//! from one node's view, the *reference*: a node that answered, preferring masters, then the
//! highest `cluster_current_epoch` (the view that has seen the latest failover), then the
//! lowest address. A slot is **covered** when the reference view assigns it to a master that is
//! not flagged `failed` and that answered this poll — a slot the worker cannot write to is not
//! covered, whatever the cluster believes.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::ranges::ranges;
use crate::slot::{SLOT_COUNT, Slot};
use crate::store::admin::{ClusterInfo, NodeInfo, Role, Shard, ShardNode};

/// What one node answered to a poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAnswer {
    /// `CLUSTER MYID`.
    pub myid: String,
    /// `CLUSTER INFO`, parsed.
    pub cluster_info: ClusterInfo,
    /// `CLUSTER SHARDS`, parsed.
    pub shards: Vec<Shard>,
    /// `INFO` (default sections), parsed.
    pub info: NodeInfo,
}

/// One node asked: its answer or why there was none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    /// The address asked (`host:port`).
    pub addr: String,
    /// The answer, or the error text.
    pub answer: Result<NodeAnswer, String>,
}

/// One node as the snapshot sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    /// `host:port` (as the cluster announces it, when it does).
    pub addr: String,
    /// Node id, when known.
    pub id: Option<String>,
    /// It answered this poll.
    pub up: bool,
    /// Why it did not answer.
    pub error: Option<String>,
    /// Master or replica (the reference view's; the node's own `INFO` if it is not in it).
    #[serde(serialize_with = "role_name")]
    pub role: Option<Role>,
    /// For a replica: its master's address.
    pub replica_of: Option<String>,
    /// For a master: the slot ranges it serves.
    pub slots: Vec<(Slot, Slot)>,
    /// `online`, `failed` or `loading`, in the reference view.
    pub health: Option<String>,
    /// `INFO used_memory`.
    pub used_memory: Option<u64>,
    /// `INFO maxmemory` (0 = no limit).
    pub maxmemory: Option<u64>,
    /// `INFO connected_clients`.
    pub connected_clients: Option<u64>,
    /// `INFO keyspace_hits`.
    pub keyspace_hits: Option<u64>,
    /// `INFO keyspace_misses`.
    pub keyspace_misses: Option<u64>,
    /// `INFO evicted_keys` (since the node started).
    pub evicted_keys: Option<u64>,
    /// `INFO maxmemory_policy`.
    pub maxmemory_policy: Option<String>,
}

fn role_name<S: serde::Serializer>(role: &Option<Role>, s: S) -> Result<S::Ok, S::Error> {
    match role {
        Some(role) => s.serialize_str(role.as_str()),
        None => s.serialize_none(),
    }
}

impl NodeStatus {
    fn new(addr: String) -> NodeStatus {
        NodeStatus {
            addr,
            id: None,
            up: false,
            error: None,
            role: None,
            replica_of: None,
            slots: Vec::new(),
            health: None,
            used_memory: None,
            maxmemory: None,
            connected_clients: None,
            keyspace_hits: None,
            keyspace_misses: None,
            evicted_keys: None,
            maxmemory_policy: None,
        }
    }

    /// Number of slots in [`NodeStatus::slots`].
    pub fn slot_count(&self) -> u32 {
        self.slots
            .iter()
            .map(|&(lo, hi)| u32::from(hi.saturating_sub(lo)) + 1)
            .sum()
    }

    /// Does it serve slots the worker can reach (a master, up, not flagged failed)?
    pub fn serves(&self) -> bool {
        self.up && self.role == Some(Role::Master) && self.health.as_deref() != Some("failed")
    }
}

/// The cluster-wide figures of the reference node's `CLUSTER INFO`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterView {
    /// The reference node's address.
    pub from: String,
    /// `cluster_state` (`ok` or `fail`).
    pub state: String,
    /// `cluster_slots_assigned`.
    pub slots_assigned: u32,
    /// `cluster_slots_ok`.
    pub slots_ok: u32,
    /// `cluster_slots_pfail`.
    pub slots_pfail: u32,
    /// `cluster_slots_fail`.
    pub slots_fail: u32,
    /// `cluster_known_nodes`.
    pub known_nodes: u32,
    /// `cluster_current_epoch`.
    pub current_epoch: u64,
}

impl ClusterView {
    /// `cluster_state:ok`.
    pub fn is_ok(&self) -> bool {
        self.state == "ok"
    }
}

/// The cluster as one poll saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterSnapshot {
    /// The reference view; `None` when no node answered.
    pub view: Option<ClusterView>,
    /// Every node known (from the reference view, or asked), by address.
    pub nodes: Vec<NodeStatus>,
    /// Slots served by a master that answered and is not flagged failed.
    pub covered_slots: u32,
    /// The other slots, as inclusive ranges.
    pub uncovered: Vec<(Slot, Slot)>,
}

impl ClusterSnapshot {
    /// Merges one poll's reports; `tls` picks the TLS client ports from `CLUSTER SHARDS`.
    pub fn from_reports(reports: &[NodeReport], tls: bool) -> ClusterSnapshot {
        let answered: Vec<(&str, &NodeAnswer)> = reports
            .iter()
            .filter_map(|r| Some((r.addr.as_str(), r.answer.as_ref().ok()?)))
            .collect();
        let reference = answered.iter().max_by_key(|(addr, answer)| {
            (
                answer.info.role == Some(Role::Master),
                answer.cluster_info.current_epoch,
                Reverse(*addr),
            )
        });
        let mut nodes: BTreeMap<String, NodeStatus> = BTreeMap::new();
        let mut by_id: HashMap<&str, String> = HashMap::new();
        if let Some((reference_addr, reference)) = reference {
            for shard in &reference.shards {
                let address = |node: &ShardNode| {
                    node.address(tls)
                        .or_else(|| (node.id == reference.myid).then(|| reference_addr.to_string()))
                };
                let master = shard
                    .nodes
                    .iter()
                    .find(|n| n.role == Role::Master)
                    .and_then(address);
                for node in &shard.nodes {
                    let Some(addr) = address(node) else {
                        continue;
                    };
                    by_id.insert(node.id.as_str(), addr.clone());
                    let status = nodes
                        .entry(addr.clone())
                        .or_insert_with(|| NodeStatus::new(addr));
                    status.id = Some(node.id.clone());
                    status.role = Some(node.role);
                    status.health = Some(node.health.clone());
                    if node.role == Role::Master {
                        status.slots = shard.slots.clone();
                    } else {
                        status.replica_of = master.clone();
                    }
                }
            }
        }
        for report in reports {
            match &report.answer {
                Ok(answer) => {
                    let addr = by_id
                        .get(answer.myid.as_str())
                        .cloned()
                        .unwrap_or_else(|| report.addr.clone());
                    let status = nodes
                        .entry(addr.clone())
                        .or_insert_with(|| NodeStatus::new(addr));
                    status.id.get_or_insert_with(|| answer.myid.clone());
                    status.up = true;
                    status.error = None;
                    let info = &answer.info;
                    status.used_memory = info.used_memory;
                    status.maxmemory = info.maxmemory;
                    status.connected_clients = info.connected_clients;
                    status.keyspace_hits = info.keyspace_hits;
                    status.keyspace_misses = info.keyspace_misses;
                    status.evicted_keys = info.evicted_keys;
                    status.maxmemory_policy = info.maxmemory_policy.clone();
                    if status.role.is_none() {
                        status.role = info.role;
                    }
                }
                Err(error) => {
                    let status = nodes
                        .entry(report.addr.clone())
                        .or_insert_with(|| NodeStatus::new(report.addr.clone()));
                    if !status.up {
                        status.error = Some(error.clone());
                    }
                }
            }
        }
        let mut covered = vec![false; SLOT_COUNT as usize];
        for node in nodes.values().filter(|n| n.serves()) {
            for &(lo, hi) in &node.slots {
                for slot in lo..=hi.min(SLOT_COUNT - 1) {
                    covered[slot as usize] = true;
                }
            }
        }
        let view = reference.map(|(addr, answer)| {
            let info = &answer.cluster_info;
            let field = |value: Option<u64>| value.unwrap_or(0) as u32;
            ClusterView {
                from: by_id
                    .get(answer.myid.as_str())
                    .cloned()
                    .unwrap_or_else(|| addr.to_string()),
                state: info.state.clone().unwrap_or_else(|| "unknown".to_owned()),
                slots_assigned: field(info.slots_assigned),
                slots_ok: field(info.slots_ok),
                slots_pfail: field(info.slots_pfail),
                slots_fail: field(info.slots_fail),
                known_nodes: field(info.known_nodes),
                current_epoch: info.current_epoch.unwrap_or(0),
            }
        });
        ClusterSnapshot {
            view,
            nodes: nodes.into_values().collect(),
            covered_slots: covered.iter().filter(|c| **c).count() as u32,
            uncovered: ranges(&covered, false),
        }
    }

    /// Did any node answer?
    pub fn reachable(&self) -> bool {
        self.view.is_some()
    }

    /// Covered share of the 16384 slots, 0..1.
    pub fn coverage_ratio(&self) -> f64 {
        f64::from(self.covered_slots) / f64::from(SLOT_COUNT)
    }

    /// Slots not covered.
    pub fn uncovered_slots(&self) -> u32 {
        u32::from(SLOT_COUNT) - self.covered_slots
    }

    /// Addresses of the nodes the reference view lists (the next poll asks them all).
    pub fn cluster_addresses(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.health.is_some())
            .map(|n| n.addr.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::ranges::format_ranges;
    use super::*;

    const INFO_OK: &str = "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:4\r\ncluster_current_epoch:7\r\n";

    fn shard_node(id: &str, port: u16, role: Role, health: &str) -> ShardNode {
        ShardNode {
            id: id.into(),
            endpoint: "127.0.0.1".into(),
            ip: "127.0.0.1".into(),
            port: Some(port),
            tls_port: None,
            role,
            health: health.into(),
        }
    }

    fn shards(health_a: &str) -> Vec<Shard> {
        vec![
            Shard {
                slots: vec![(0, 8191)],
                nodes: vec![
                    shard_node("a", 7000, Role::Master, health_a),
                    shard_node("c", 7002, Role::Replica, "online"),
                ],
            },
            Shard {
                slots: vec![(8192, 16383)],
                nodes: vec![
                    shard_node("b", 7001, Role::Master, "online"),
                    shard_node("d", 7003, Role::Replica, "online"),
                ],
            },
        ]
    }

    fn answer(id: &str, role: &str, cluster_info: &str, shards: Vec<Shard>) -> NodeAnswer {
        NodeAnswer {
            myid: id.into(),
            cluster_info: ClusterInfo::parse(cluster_info),
            shards,
            info: NodeInfo::parse(&format!(
                "role:{role}\r\nused_memory:1000\r\nmaxmemory:0\r\nconnected_clients:3\r\nkeyspace_hits:5\r\nkeyspace_misses:2\r\n"
            )),
        }
    }

    fn up(addr: &str, answer: NodeAnswer) -> NodeReport {
        NodeReport {
            addr: addr.into(),
            answer: Ok(answer),
        }
    }

    fn down(addr: &str) -> NodeReport {
        NodeReport {
            addr: addr.into(),
            answer: Err("connection refused".into()),
        }
    }

    #[test]
    fn a_healthy_cluster_is_fully_covered() {
        let reports = [
            up(
                "127.0.0.1:7000",
                answer("a", "master", INFO_OK, shards("online")),
            ),
            up(
                "127.0.0.1:7001",
                answer("b", "master", INFO_OK, shards("online")),
            ),
            up(
                "127.0.0.1:7002",
                answer("c", "slave", INFO_OK, shards("online")),
            ),
            up(
                "127.0.0.1:7003",
                answer("d", "slave", INFO_OK, shards("online")),
            ),
        ];
        let s = ClusterSnapshot::from_reports(&reports, false);
        assert_eq!(s.covered_slots, 16384);
        assert!(s.uncovered.is_empty());
        assert_eq!(s.coverage_ratio(), 1.0);
        let view = s.view.as_ref().unwrap();
        assert!(view.is_ok());
        assert_eq!(
            view.from, "127.0.0.1:7000",
            "masters first, then the lowest address"
        );
        assert_eq!(view.known_nodes, 4);
        assert_eq!(s.nodes.len(), 4);
        let replica = &s.nodes[2];
        assert_eq!(replica.role, Some(Role::Replica));
        assert_eq!(replica.replica_of.as_deref(), Some("127.0.0.1:7000"));
        assert_eq!(s.nodes[0].slot_count(), 8192);
        assert_eq!(s.nodes[0].used_memory, Some(1000));
        assert_eq!(s.cluster_addresses().len(), 4);
    }

    #[test]
    fn an_unreachable_master_uncovers_its_slots_even_before_the_cluster_notices() {
        let reports = [
            down("127.0.0.1:7000"),
            up(
                "127.0.0.1:7001",
                answer("b", "master", INFO_OK, shards("online")),
            ),
        ];
        let s = ClusterSnapshot::from_reports(&reports, false);
        assert_eq!(s.uncovered, [(0, 8191)]);
        assert_eq!(s.uncovered_slots(), 8192);
        let a = &s.nodes[0];
        assert!(!a.up && a.error.as_deref() == Some("connection refused"));
        assert_eq!(a.id.as_deref(), Some("a"), "known from the view");
        assert_eq!(format_ranges(&s.uncovered, 3), "0-8191");
    }

    #[test]
    fn a_failed_master_is_not_covering_and_the_latest_epoch_wins() {
        let stale = INFO_OK.replace("cluster_current_epoch:7", "cluster_current_epoch:3");
        let failing =
            "cluster_state:fail\r\ncluster_slots_fail:8192\r\ncluster_current_epoch:8\r\n";
        let reports = [
            // A zombie that still calls itself master, with an old epoch.
            up(
                "127.0.0.1:7000",
                answer("a", "master", &stale, shards("online")),
            ),
            up(
                "127.0.0.1:7001",
                answer("b", "master", failing, shards("failed")),
            ),
        ];
        let s = ClusterSnapshot::from_reports(&reports, false);
        let view = s.view.as_ref().unwrap();
        assert_eq!(view.from, "127.0.0.1:7001");
        assert_eq!((view.state.as_str(), view.slots_fail), ("fail", 8192));
        assert_eq!(s.uncovered, [(0, 8191)]);
    }

    #[test]
    fn nobody_answering_means_no_view_and_no_coverage() {
        let s = ClusterSnapshot::from_reports(&[down("127.0.0.1:7000")], false);
        assert!(!s.reachable());
        assert_eq!(s.covered_slots, 0);
        assert_eq!(s.uncovered, [(0, 16383)]);
        assert_eq!(s.nodes.len(), 1);
    }

    #[test]
    fn a_seed_under_another_name_is_merged_by_id() {
        let reports = [
            up(
                "localhost:7000",
                answer("a", "master", INFO_OK, shards("online")),
            ),
            up(
                "127.0.0.1:7001",
                answer("b", "master", INFO_OK, shards("online")),
            ),
        ];
        let s = ClusterSnapshot::from_reports(&reports, false);
        assert!(s.nodes.iter().all(|n| n.addr.starts_with("127.0.0.1")));
        assert_eq!(s.covered_slots, 16384);
    }
}
