//! What the cluster says about itself, through [`fds_worker::store::admin`]: the topology,
//! roles, the slots' masters, and the bounded waits for a healthy cluster and for a failover.

use std::time::{Duration, Instant};

use super::{POLL, PROBE_TIMEOUT, RedisCluster, node};
use crate::localstack::{LocalStackError, Result};
use fds_worker::slot::{SLOT_COUNT, Slot};
use fds_worker::store::admin::{ClusterInfo, InfoDict, Role, Topology};

impl RedisCluster {
    /// The cluster as seen by the first running, unpaused node that answers `CLUSTER NODES`,
    /// with [`NodeView::index`](fds_worker::store::admin::NodeView::index) filled in.
    pub fn topology(&self) -> Result<Topology> {
        let mut last = None;
        for index in self.live_nodes() {
            match self.view_of(index) {
                Ok(topology) => return Ok(topology),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| LocalStackError::Protocol {
            command: "CLUSTER NODES".into(),
            detail: "no node is running".into(),
        }))
    }

    /// The node currently serving `slot` as master, in [`RedisCluster::topology`]'s view; `None`
    /// if no live master serves it or no node answers.
    pub fn master_for_slot(&self, slot: Slot) -> Option<usize> {
        self.topology().ok()?.master_for_slot(slot)?.index
    }

    /// The masters serving at least one slot and not flagged `fail`, sorted; empty if no node
    /// answers.
    pub fn masters(&self) -> Vec<usize> {
        let Ok(topology) = self.topology() else {
            return Vec::new();
        };
        let mut masters: Vec<usize> = topology.live_masters().filter_map(|n| n.index).collect();
        masters.sort_unstable();
        masters
    }

    /// The replicas of node `master`, sorted; empty if it has none or no node answers.
    pub fn replicas_of(&self, master: usize) -> Vec<usize> {
        let Ok(topology) = self.topology() else {
            return Vec::new();
        };
        let Some(id) = self
            .ports
            .get(master)
            .and_then(|&p| topology.by_port(p))
            .map(|n| n.id.clone())
        else {
            return Vec::new();
        };
        let mut replicas: Vec<usize> = topology.replicas_of(&id).filter_map(|n| n.index).collect();
        replicas.sort_unstable();
        replicas
    }

    /// Node `index`'s role in [`RedisCluster::topology`]'s view (a stopped node keeps the role
    /// the others last saw, flagged `fail`).
    pub fn role(&self, index: usize) -> Option<Role> {
        let port = *self.ports.get(index)?;
        Some(self.topology().ok()?.by_port(port)?.role)
    }

    /// Waits until the cluster is healthy and returns the agreed topology. Healthy means: every
    /// running, unpaused node reports `cluster_state:ok` and `cluster_slots_ok:16384`, knows all
    /// nodes, and lists the same slot → master map; every master in that map is running and
    /// unpaused; every running node is either a master serving slots or a replica whose link to
    /// its master is up. A freshly killed master therefore makes this wait for its failover, and
    /// a restarted one for it to become a replica.
    pub fn wait_for_state_ok(&self, timeout: Duration) -> Result<Topology> {
        self.wait_for_health("cluster_state:ok on every live node", timeout, |_| Ok(()))
    }

    /// Waits until the slots that `old_master` served in the last healthy topology are served
    /// by another node and the cluster is healthy (see [`RedisCluster::wait_for_state_ok`]);
    /// returns the new master. Call it after [`kill`](RedisCluster::kill) or
    /// [`pause`](RedisCluster::pause) of a node that was a master when the cluster was last seen
    /// healthy (by `start` or a `wait_*` call).
    pub fn wait_for_failover_of(&self, old_master: usize, timeout: Duration) -> Result<usize> {
        let old_port = self.port(old_master)?;
        let first_slot = self
            .lock_last_healthy()
            .as_ref()
            .and_then(|t| t.by_port(old_port))
            .and_then(|n| n.slots.first().map(|&(lo, _)| lo))
            .ok_or_else(|| LocalStackError::Protocol {
                command: "wait_for_failover_of".into(),
                detail: format!("node {old_master} served no slots when last seen healthy"),
            })?;
        let topology = self.wait_for_health(
            &format!("slot {first_slot} to move off node {old_master}"),
            timeout,
            |topology| match topology.master_for_slot(first_slot) {
                Some(n) if n.port != old_port => Ok(()),
                _ => Err(format!("slot {first_slot} is still on node {old_master}")),
            },
        )?;
        topology
            .master_for_slot(first_slot)
            .and_then(|n| n.index)
            .ok_or_else(|| LocalStackError::Protocol {
                command: "CLUSTER NODES".into(),
                detail: format!("slot {first_slot} is served by a node outside this cluster"),
            })
    }

    pub(super) fn wait_for_health(
        &self,
        what: &str,
        timeout: Duration,
        extra: impl Fn(&Topology) -> Result<(), String>,
    ) -> Result<Topology> {
        let started = Instant::now();
        loop {
            let last = match self.check_health().and_then(|t| extra(&t).map(|()| t)) {
                Ok(topology) => {
                    *self.lock_last_healthy() = Some(topology.clone());
                    return Ok(topology);
                }
                Err(reason) => reason,
            };
            if started.elapsed() >= timeout {
                return Err(LocalStackError::Timeout {
                    what: what.to_owned(),
                    waited: started.elapsed(),
                    last,
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// One health probe of every live node; `Err` says the first thing that is not right.
    pub(super) fn check_health(&self) -> Result<Topology, String> {
        let live = self.live_nodes();
        let mut agreed: Option<Topology> = None;
        for &index in &live {
            let port = self.ports[index];
            let mut con = node::connect(port, self.access(), PROBE_TIMEOUT)
                .map_err(|e| format!("node {index}: {e}"))?;
            let info: InfoDict = redis::cmd("CLUSTER")
                .arg("INFO")
                .query(&mut con)
                .map_err(|e| format!("node {index}: CLUSTER INFO: {e}"))?;
            let info = ClusterInfo::from(&info);
            let known = self.node_count() as u64;
            if !info.is_ok()
                || info.slots_ok != Some(u64::from(SLOT_COUNT))
                || info.known_nodes != Some(known)
            {
                let shown =
                    |value: Option<u64>| value.map_or_else(|| "?".to_owned(), |n| n.to_string());
                return Err(format!(
                    "node {index}: cluster_state:{} cluster_slots_ok:{} cluster_known_nodes:{} (want ok, {SLOT_COUNT}, {known})",
                    info.state.as_deref().unwrap_or("?"),
                    shown(info.slots_ok),
                    shown(info.known_nodes)
                ));
            }
            let topology = self.view_from(index, &mut con).map_err(|e| e.to_string())?;
            let me = topology
                .nodes
                .iter()
                .find(|n| n.myself)
                .ok_or_else(|| format!("node {index}: CLUSTER NODES has no `myself` line"))?;
            if me.role == Role::Replica {
                let replication: InfoDict =
                    redis::cmd("INFO")
                        .arg("replication")
                        .query(&mut con)
                        .map_err(|e| format!("node {index}: INFO replication: {e}"))?;
                let link: String = replication
                    .get("master_link_status")
                    .unwrap_or_else(|| "?".to_owned());
                if link != "up" {
                    return Err(format!("node {index}: master_link_status:{link}"));
                }
            }
            if let Some(stale) = topology.nodes.iter().find(|n| {
                n.role == Role::Master
                    && n.slots.is_empty()
                    && n.index.is_some_and(|i| live.contains(&i))
            }) {
                // Gossip has not yet told this node that a rejoined ex-master became a replica.
                return Err(format!(
                    "node {index} still sees port {} as a master without slots",
                    stale.port
                ));
            }
            if me.role == Role::Master && me.slots.is_empty() {
                // A restarted ex-master is one until the others tell it it was failed over; this
                // harness never creates slot-less masters, so one is a node still rejoining.
                return Err(format!("node {index} is a master without slots"));
            }
            match &agreed {
                None => {
                    for master in topology.live_masters() {
                        if !master.index.is_some_and(|i| live.contains(&i)) {
                            return Err(format!(
                                "node {index} sees slots on port {} which is not live",
                                master.port
                            ));
                        }
                    }
                    agreed = Some(topology);
                }
                Some(first) if first.slot_map() != topology.slot_map() => {
                    return Err(format!(
                        "node {index} disagrees with node {} on the slot map",
                        live[0]
                    ));
                }
                Some(_) => {}
            }
        }
        agreed.ok_or_else(|| "no node is running".to_owned())
    }

    pub(super) fn view_of(&self, index: usize) -> Result<Topology> {
        let mut con = node::connect(self.port(index)?, self.access(), PROBE_TIMEOUT)?;
        self.view_from(index, &mut con)
    }

    pub(super) fn view_from(&self, index: usize, con: &mut redis::Connection) -> Result<Topology> {
        let text: String = redis::cmd("CLUSTER").arg("NODES").query(con)?;
        let mut topology = Topology::parse(&text).map_err(|detail| LocalStackError::Protocol {
            command: format!("CLUSTER NODES on node {index}"),
            detail,
        })?;
        for n in &mut topology.nodes {
            n.index = self.index_of_port(n.port);
        }
        Ok(topology)
    }
}
