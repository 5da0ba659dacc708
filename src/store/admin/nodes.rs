//! `CLUSTER NODES`: one node's view of every node of the cluster.

use super::Role;
use crate::slot::Slot;

/// One line of `CLUSTER NODES`: how the asked node sees one node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The node's 40-character id (stable across restarts: it lives in `nodes.conf`).
    pub id: String,
    /// The node's client address, `ip:port`, as the line gives it (without the bus port or
    /// hostname).
    pub addr: String,
    /// The node's client port (its bus is at `port + 10000`).
    pub port: u16,
    /// An index the caller assigns (the test kit's local stack numbers its nodes); `None` from
    /// a parse.
    pub index: Option<usize>,
    /// Master or replica, as the asked node believes.
    pub role: Role,
    /// For a replica, the id of its master.
    pub master_id: Option<String>,
    /// This line describes the asked node itself.
    pub myself: bool,
    /// Flagged `fail`: a majority of masters agreed the node is unreachable.
    pub failed: bool,
    /// Flagged `fail?`: the asked node alone cannot reach it.
    pub pfail: bool,
    /// The cluster bus link to it is connected.
    pub connected: bool,
    /// Slot ranges it serves, inclusive, in the order listed (importing and migrating markers
    /// are not included).
    pub slots: Vec<(Slot, Slot)>,
}

impl NodeView {
    /// Whether the node serves `slot` according to this view.
    pub fn serves(&self, slot: Slot) -> bool {
        self.slots.iter().any(|&(lo, hi)| lo <= slot && slot <= hi)
    }

    /// Number of slots in [`NodeView::slots`].
    pub fn slot_count(&self) -> usize {
        self.slots
            .iter()
            .map(|&(lo, hi)| usize::from(hi - lo) + 1)
            .sum()
    }
}

/// The whole of one node's `CLUSTER NODES` reply. Nodes still in handshake or without an
/// address are left out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Topology {
    /// One entry per known node, in the order the reply listed them.
    pub nodes: Vec<NodeView>,
}

impl Topology {
    /// Parses a `CLUSTER NODES` reply.
    pub fn parse(cluster_nodes: &str) -> Result<Topology, String> {
        let mut nodes = Vec::new();
        for line in cluster_nodes
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            if let Some(node) = parse_line(line)? {
                nodes.push(node);
            }
        }
        Ok(Topology { nodes })
    }

    /// The master serving `slot`, unless it is flagged `fail`.
    pub fn master_for_slot(&self, slot: Slot) -> Option<&NodeView> {
        self.live_masters().find(|n| n.serves(slot))
    }

    /// Masters that serve at least one slot and are not flagged `fail`.
    pub fn live_masters(&self) -> impl Iterator<Item = &NodeView> {
        self.nodes
            .iter()
            .filter(|n| n.role == Role::Master && !n.failed && !n.slots.is_empty())
    }

    /// Replicas (failed or not) of the master with id `master_id`.
    pub fn replicas_of<'a>(&'a self, master_id: &'a str) -> impl Iterator<Item = &'a NodeView> {
        self.nodes
            .iter()
            .filter(move |n| n.role == Role::Replica && n.master_id.as_deref() == Some(master_id))
    }

    /// The node listening on `port`.
    pub fn by_port(&self, port: u16) -> Option<&NodeView> {
        self.nodes.iter().find(|n| n.port == port)
    }

    /// The node whose client address is `addr` (`ip:port`).
    pub fn by_addr(&self, addr: &str) -> Option<&NodeView> {
        self.nodes.iter().find(|n| n.addr == addr)
    }

    /// The node with id `id`.
    pub fn by_id(&self, id: &str) -> Option<&NodeView> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Who serves what: `(first, last, master id)` for every range of every live master, sorted.
    /// Two nodes agree on the slot map when these are equal.
    pub fn slot_map(&self) -> Vec<(Slot, Slot, &str)> {
        let mut map: Vec<(Slot, Slot, &str)> = self
            .live_masters()
            .flat_map(|n| n.slots.iter().map(move |&(lo, hi)| (lo, hi, n.id.as_str())))
            .collect();
        map.sort_unstable();
        map
    }

    /// Total number of slots served by live masters.
    pub fn covered_slots(&self) -> usize {
        self.live_masters().map(NodeView::slot_count).sum()
    }
}

fn parse_line(line: &str) -> Result<Option<NodeView>, String> {
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    if fields.len() < 8 {
        return Err(format!(
            "CLUSTER NODES line has {} fields: {line}",
            fields.len()
        ));
    }
    let flags: Vec<&str> = fields[2].split(',').collect();
    if flags.contains(&"handshake") || flags.contains(&"noaddr") {
        return Ok(None);
    }
    // `ip:port@cport[,hostname]`
    let addr = fields[1].split('@').next().unwrap_or_default();
    let port = addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(|| format!("bad address {:?} in: {line}", fields[1]))?;
    let role = if flags.contains(&"slave") {
        Role::Replica
    } else {
        Role::Master
    };
    let master_id = (fields[3] != "-").then(|| fields[3].to_owned());
    let mut slots = Vec::new();
    for token in &fields[8..] {
        if token.starts_with('[') {
            continue;
        }
        let (lo, hi) = token.split_once('-').unwrap_or((token, token));
        let lo = lo
            .parse::<Slot>()
            .map_err(|_| format!("bad slot {token:?}"))?;
        let hi = hi
            .parse::<Slot>()
            .map_err(|_| format!("bad slot {token:?}"))?;
        slots.push((lo, hi));
    }
    Ok(Some(NodeView {
        id: fields[0].to_owned(),
        addr: addr.to_owned(),
        port,
        index: None,
        role,
        master_id,
        myself: flags.contains(&"myself"),
        failed: flags.contains(&"fail"),
        pfail: flags.contains(&"fail?"),
        connected: fields[7] == "connected",
        slots,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER_FAILOVER: &str = "\
fb8bc41320fcd4d0b71d45cd02d2415ca8a677d8 127.0.0.1:31002@41002 myself,master - 0 1795588100000 2 connected 5461-10922
c123dc5b2913ae212fc546d1caec5c9c79c755c6 127.0.0.1:31005@41005 master - 0 1795588101067 7 connected 0-5460
8258e82465f8947c33730c739f13e287e1a1dd60 127.0.0.1:31001@41001 master,fail - 1795588097107 1795588096101 1 disconnected
f12c89df391607d9a5fa6d8514de7f558af9cc64 127.0.0.1:31006@41006 slave fb8bc41320fcd4d0b71d45cd02d2415ca8a677d8 0 1795588100130 2 connected
a5b593f901233afaa8be9001e369d2acc34cd163 127.0.0.1:31004@41004 slave d12ae50533a1bfc3ecd4527b71fcc77e31a2bf76 0 1795588101000 3 connected
d12ae50533a1bfc3ecd4527b71fcc77e31a2bf76 127.0.0.1:31003@41003 master - 0 1795588101035 3 connected 10923-16383 [42->-abc]
";

    #[test]
    fn parses_a_view_after_a_failover() {
        let topology = Topology::parse(AFTER_FAILOVER).unwrap();
        assert_eq!(topology.nodes.len(), 6);
        assert_eq!(topology.covered_slots(), 16384);
        assert_eq!(topology.master_for_slot(0).unwrap().port, 31005);
        assert_eq!(topology.master_for_slot(16383).unwrap().port, 31003);
        let old = topology.by_port(31001).unwrap();
        assert!(old.failed && !old.connected && old.slots.is_empty());
        assert!(topology.by_port(31002).unwrap().myself);
        assert_eq!(topology.by_addr("127.0.0.1:31002").unwrap().port, 31002);
        let master = topology.by_port(31003).unwrap();
        let replicas: Vec<u16> = topology.replicas_of(&master.id).map(|n| n.port).collect();
        assert_eq!(replicas, [31004]);
        assert_eq!(topology.live_masters().count(), 3);
        assert_eq!(topology.slot_map().first().unwrap().0, 0);
    }

    #[test]
    fn pfail_is_not_fail_and_hostnames_are_ignored() {
        let line = "abc 127.0.0.1:7000@17000,host.example master,fail? - 0 0 1 connected 7";
        let node = &Topology::parse(line).unwrap().nodes[0];
        assert!(node.pfail && !node.failed);
        assert_eq!(node.port, 7000);
        assert_eq!(node.addr, "127.0.0.1:7000");
        assert_eq!(node.slots, [(7, 7)]);
    }

    #[test]
    fn handshake_nodes_are_skipped_and_garbage_is_an_error() {
        let line = "abc 127.0.0.1:7000@17000 handshake - 0 0 0 disconnected";
        assert!(Topology::parse(line).unwrap().nodes.is_empty());
        assert!(Topology::parse("not a cluster nodes line").is_err());
    }
}
