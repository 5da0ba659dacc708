//! `INFO` and `CLUSTER INFO`: `field:value` lines, split by redis-rs's [`InfoDict`] (which also
//! converts a reply with `query`), and the fields the product reads, typed.

pub use redis::InfoDict;

use super::Role;

/// The `CLUSTER INFO` fields the monitor, the store's outage check and the local stack read;
/// `None` when the reply lacks the field.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterInfo {
    /// `cluster_state`: `ok` or `fail`.
    pub state: Option<String>,
    /// `cluster_slots_assigned`.
    pub slots_assigned: Option<u64>,
    /// `cluster_slots_ok`.
    pub slots_ok: Option<u64>,
    /// `cluster_slots_pfail`.
    pub slots_pfail: Option<u64>,
    /// `cluster_slots_fail`.
    pub slots_fail: Option<u64>,
    /// `cluster_known_nodes`.
    pub known_nodes: Option<u64>,
    /// `cluster_current_epoch`.
    pub current_epoch: Option<u64>,
}

impl ClusterInfo {
    /// Parses a `CLUSTER INFO` reply's text.
    pub fn parse(text: &str) -> ClusterInfo {
        ClusterInfo::from(&InfoDict::new(text))
    }

    /// `cluster_state:ok`.
    pub fn is_ok(&self) -> bool {
        self.state.as_deref() == Some("ok")
    }
}

impl From<&InfoDict> for ClusterInfo {
    fn from(info: &InfoDict) -> ClusterInfo {
        ClusterInfo {
            state: info.get("cluster_state"),
            slots_assigned: info.get("cluster_slots_assigned"),
            slots_ok: info.get("cluster_slots_ok"),
            slots_pfail: info.get("cluster_slots_pfail"),
            slots_fail: info.get("cluster_slots_fail"),
            known_nodes: info.get("cluster_known_nodes"),
            current_epoch: info.get("cluster_current_epoch"),
        }
    }
}

/// The `INFO` (default sections) fields the cluster monitor reads; `None` when missing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeInfo {
    /// `role`: `master` or `slave`.
    pub role: Option<Role>,
    /// `used_memory`.
    pub used_memory: Option<u64>,
    /// `maxmemory` (0 = no limit).
    pub maxmemory: Option<u64>,
    /// `connected_clients`.
    pub connected_clients: Option<u64>,
    /// `keyspace_hits`.
    pub keyspace_hits: Option<u64>,
    /// `keyspace_misses`.
    pub keyspace_misses: Option<u64>,
    /// `evicted_keys`: keys removed to stay under `maxmemory` since the node started.
    pub evicted_keys: Option<u64>,
    /// `maxmemory_policy` (`noeviction`, `volatile-lru`, …).
    pub maxmemory_policy: Option<String>,
}

impl NodeInfo {
    /// Parses an `INFO` reply's text.
    pub fn parse(text: &str) -> NodeInfo {
        NodeInfo::from(&InfoDict::new(text))
    }
}

impl From<&InfoDict> for NodeInfo {
    fn from(info: &InfoDict) -> NodeInfo {
        NodeInfo {
            role: info
                .get::<String>("role")
                .and_then(|role| Role::from_name(&role)),
            used_memory: info.get("used_memory"),
            maxmemory: info.get("maxmemory"),
            connected_clients: info.get("connected_clients"),
            keyspace_hits: info.get("keyspace_hits"),
            keyspace_misses: info.get("keyspace_misses"),
            evicted_keys: info.get("evicted_keys"),
            maxmemory_policy: info.get("maxmemory_policy"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_info_finds_values() {
        let info =
            ClusterInfo::parse("# Cluster\r\ncluster_state:ok\r\ncluster_slots_ok:16384\r\n");
        assert_eq!(info.state.as_deref(), Some("ok"));
        assert!(info.is_ok());
        assert_eq!(info.slots_ok, Some(16384));
        assert_eq!(info.known_nodes, None);
        assert!(!ClusterInfo::parse("cluster_state:fail\r\n").is_ok());
    }

    #[test]
    fn node_info_reads_the_role_and_the_figures() {
        let info = NodeInfo::parse(
            "# Replication\r\nrole:slave\r\n# Memory\r\nused_memory:1000\r\nmaxmemory:0\r\n",
        );
        assert_eq!(info.role, Some(Role::Replica));
        assert_eq!((info.used_memory, info.maxmemory), (Some(1000), Some(0)));
        assert_eq!(info.keyspace_hits, None);
        assert_eq!(NodeInfo::parse("role:sentinel\r\n").role, None);
    }
}
