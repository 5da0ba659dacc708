//! Redis's administrative replies, parsed once for the whole product — the cluster monitor,
//! the store's outage check and slot map, the `cluster` and `keyslot` commands — and for the
//! test kit's local stack. Pure: no I/O; the callers send the commands.
//!
//! | file | reply |
//! |---|---|
//! | `info.rs` | `INFO` and `CLUSTER INFO`, through redis-rs's [`InfoDict`]: [`NodeInfo`], [`ClusterInfo`] |
//! | `nodes.rs` | `CLUSTER NODES`: one node's view of every node, [`Topology`] |
//! | `slots.rs` | `CLUSTER SLOTS`: slot ranges and their masters, [`SlotRange`] |
//! | `shards.rs` | `CLUSTER SHARDS` (Redis ≥ 7): shards, their ranges and nodes, [`Shard`] |

mod info;
mod nodes;
mod shards;
mod slots;

pub use info::{ClusterInfo, InfoDict, NodeInfo};
pub use nodes::{NodeView, Topology};
pub use shards::{Shard, ShardNode, parse_shards};
pub use slots::{SlotRange, parse_cluster_slots};

/// A node's role in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Serves slots (or could: a master may own no slots).
    Master,
    /// Replicates a master.
    Replica,
}

impl Role {
    /// The role Redis names `name`: `master`, or `slave` / `replica` (`INFO` and
    /// `CLUSTER NODES` say `slave`, `CLUSTER SHARDS` says `replica`); `None` for anything else.
    pub fn from_name(name: &str) -> Option<Role> {
        match name {
            "master" => Some(Role::Master),
            "slave" | "replica" => Some(Role::Replica),
            _ => None,
        }
    }

    /// The metric label / display name: `master` or `replica`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Replica => "replica",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_named_as_redis_names_them() {
        assert_eq!(Role::from_name("master"), Some(Role::Master));
        assert_eq!(Role::from_name("slave"), Some(Role::Replica));
        assert_eq!(Role::from_name("replica"), Some(Role::Replica));
        assert_eq!(Role::from_name("sentinel"), None);
        assert_eq!(Role::Replica.as_str(), "replica");
    }
}
