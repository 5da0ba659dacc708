//! `fds-worker cluster status`: the Redis Cluster as the worker's monitor sees it — nodes,
//! roles, slot ranges, coverage, failing slots, memory — as a table or JSON.

use std::fmt::Write as _;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::table;
use crate::config::Config;
use crate::monitor::ranges::format_ranges;
use crate::monitor::{ClusterSnapshot, NodeStatus, Prober};
use crate::slot::SLOT_COUNT;
use crate::store::admin::Role;

/// Arguments of `fds-worker cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// What to show.
    #[command(subcommand)]
    pub command: ClusterCommand,
}

/// `fds-worker cluster` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Nodes, roles, slot ranges, coverage, failing slots and memory of the Redis Cluster.
    Status(StatusArgs),
}

/// Arguments of `fds-worker cluster status`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  fds-worker cluster status
  FDS_REDIS__NODES=redis://10.0.0.1:7000 fds-worker cluster status
  fds-worker cluster status --json | jq '.uncovered'

Every node is asked CLUSTER MYID, CLUSTER INFO, CLUSTER SHARDS and INFO (the nodes of
redis.nodes, then every node they list), with the credentials and timeouts of [redis]. The
cluster-wide line is the view of the answering master with the newest epoch. A slot is covered
when its master answered and is not flagged failed; uncovered slots are listed.

Exit status: 0 when some node answered (even if the cluster is degraded), 1 when none did.")]
pub struct StatusArgs {
    /// Print the snapshot as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `cluster`.
pub async fn run(args: ClusterArgs, config: &Config) -> anyhow::Result<()> {
    match args.command {
        ClusterCommand::Status(args) => status(args, config).await,
    }
}

async fn status(args: StatusArgs, config: &Config) -> anyhow::Result<()> {
    let prober = Prober::from_config(&config.redis).context("redis.nodes")?;
    let snapshot = prober.poll().await;
    if args.json {
        println!("{}", serde_json::to_string(&snapshot)?);
    } else {
        print!("{}", render(&snapshot));
    }
    if !snapshot.reachable() {
        let errors: Vec<String> = snapshot
            .nodes
            .iter()
            .map(|n| format!("{}: {}", n.addr, n.error.as_deref().unwrap_or("no answer")))
            .collect();
        anyhow::bail!("no Redis node answered ({})", errors.join("; "));
    }
    Ok(())
}

/// The status table.
pub fn render(snapshot: &ClusterSnapshot) -> String {
    let mut out = String::new();
    match &snapshot.view {
        Some(view) => {
            let _ = writeln!(
                out,
                "cluster_state: {}   slots: {} assigned, {} ok, {} pfail, {} fail   known nodes: {}   (view of {}, epoch {})",
                view.state,
                view.slots_assigned,
                view.slots_ok,
                view.slots_pfail,
                view.slots_fail,
                view.known_nodes,
                view.from,
                view.current_epoch
            );
        }
        None => out.push_str("cluster_state: unknown (no node answered)\n"),
    }
    let _ = writeln!(
        out,
        "coverage: {}/{SLOT_COUNT} slots ({:.1}%) served by reachable masters",
        snapshot.covered_slots,
        snapshot.coverage_ratio() * 100.0
    );
    if snapshot.uncovered.is_empty() {
        out.push_str("uncovered slots: none\n");
    } else {
        let _ = writeln!(
            out,
            "uncovered slots: {} ({})",
            snapshot.uncovered_slots(),
            format_ranges(&snapshot.uncovered, 16)
        );
    }
    out.push('\n');
    let header = [
        "NODE", "ID", "ROLE", "STATE", "SLOTS", "MASTER", "MEMORY", "EVICTED", "CLIENTS",
        "HIT RATE",
    ];
    let rows = ordered(&snapshot.nodes).into_iter().map(row);
    out.push_str(&table::render(header, rows, &[]));
    for node in ordered(&snapshot.nodes) {
        if let Some(evicted) = node.evicted_keys.filter(|n| *n > 0) {
            let _ = writeln!(
                out,
                "{}: {evicted} keys evicted (maxmemory-policy {}): feature tiles, blacklist \
                 entries with a TTL and apply-once marks may be gone early, and a redelivered \
                 event then counts twice; add memory or masters, or use noeviction",
                node.addr,
                node.maxmemory_policy.as_deref().unwrap_or("?")
            );
        }
    }
    for node in snapshot.nodes.iter().filter(|n| n.error.is_some()) {
        let _ = writeln!(
            out,
            "{}: {}",
            node.addr,
            node.error.as_deref().unwrap_or_default()
        );
    }
    out
}

/// Masters by first slot, each followed by its replicas; then the rest by address.
fn ordered(nodes: &[NodeStatus]) -> Vec<&NodeStatus> {
    let mut masters: Vec<&NodeStatus> = nodes
        .iter()
        .filter(|n| n.role == Some(Role::Master))
        .collect();
    masters.sort_by_key(|n| {
        (
            n.slots.first().map_or(u32::MAX, |r| u32::from(r.0)),
            &n.addr,
        )
    });
    let mut out = Vec::new();
    for master in masters {
        out.push(master);
        out.extend(nodes.iter().filter(|n| {
            n.role == Some(Role::Replica) && n.replica_of.as_ref() == Some(&master.addr)
        }));
    }
    for node in nodes {
        if !out.iter().any(|n| std::ptr::eq(*n, node)) {
            out.push(node);
        }
    }
    out
}

fn row(node: &NodeStatus) -> [String; 10] {
    let state = if !node.up {
        "down"
    } else {
        match node.health.as_deref() {
            Some("failed") => "failed",
            Some("loading") => "loading",
            _ => "up",
        }
    };
    let slots = if node.slots.is_empty() {
        "-".to_owned()
    } else {
        format!("{} ({})", format_ranges(&node.slots, 4), node.slot_count())
    };
    let memory = match (node.used_memory, node.maxmemory) {
        (Some(used), Some(max)) if max > 0 => format!(
            "{} / {} ({:.0}%)",
            bytes(used),
            bytes(max),
            used as f64 * 100.0 / max as f64
        ),
        (Some(used), _) => format!("{} / no limit", bytes(used)),
        _ => "-".to_owned(),
    };
    let hit_rate = match (node.keyspace_hits, node.keyspace_misses) {
        (Some(hits), Some(misses)) if hits + misses > 0 => {
            format!("{:.1}%", hits as f64 * 100.0 / (hits + misses) as f64)
        }
        _ => "-".to_owned(),
    };
    [
        node.addr.clone(),
        node.id
            .as_deref()
            .map_or("-", |id| &id[..id.len().min(8)])
            .to_owned(),
        node.role.map_or("?", Role::as_str).to_owned(),
        state.to_owned(),
        slots,
        node.replica_of.clone().unwrap_or_else(|| "-".to_owned()),
        memory,
        node.evicted_keys
            .map_or_else(|| "-".to_owned(), |n| n.to_string()),
        node.connected_clients
            .map_or_else(|| "-".to_owned(), |c| c.to_string()),
        hit_rate,
    ]
}

/// Bytes in binary units with one decimal (`1.5 MiB`).
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::snapshot::{NodeAnswer, NodeReport};
    use crate::store::admin::{ClusterInfo, NodeInfo};

    #[test]
    fn renders_nodes_masters_first_with_memory_and_hit_rate() {
        let answer = |id: &str, role: &str| NodeAnswer {
            myid: id.into(),
            cluster_info: ClusterInfo::parse(
                "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_known_nodes:2\r\n",
            ),
            shards: Vec::new(),
            info: NodeInfo::parse(&format!(
                "role:{role}\r\nused_memory:1572864\r\nmaxmemory:0\r\nconnected_clients:4\r\nkeyspace_hits:3\r\nkeyspace_misses:1\r\nevicted_keys:{}\r\nmaxmemory_policy:volatile-lru\r\n",
                if role == "master" { 12 } else { 0 }
            )),
        };
        let reports = [
            NodeReport {
                addr: "10.0.0.2:7000".into(),
                answer: Ok(answer("bbbbbbbbbbbb", "slave")),
            },
            NodeReport {
                addr: "10.0.0.1:7000".into(),
                answer: Ok(answer("aaaaaaaaaaaa", "master")),
            },
            NodeReport {
                addr: "10.0.0.3:7000".into(),
                answer: Err("connection refused".into()),
            },
        ];
        let text = render(&ClusterSnapshot::from_reports(&reports, false));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("cluster_state: ok"), "{text}");
        assert!(lines[1].starts_with("coverage: 0/16384"), "{text}");
        assert!(
            lines[2].starts_with("uncovered slots: 16384 (0-16383)"),
            "{text}"
        );
        assert!(lines[4].starts_with("NODE"), "{text}");
        assert!(
            lines[5].starts_with("10.0.0.1:7000  aaaaaaaa  master   up"),
            "{text}"
        );
        assert!(lines[5].contains("1.5 MiB / no limit"), "{text}");
        assert!(lines[5].contains("75.0%"), "{text}");
        assert!(
            text.contains(
                "10.0.0.1:7000: 12 keys evicted (maxmemory-policy volatile-lru): feature tiles"
            ),
            "{text}"
        );
        assert!(!text.contains("10.0.0.2:7000: 0 keys evicted"), "{text}");
        assert!(lines[6].contains("replica"), "{text}");
        assert!(lines[7].contains("down"), "{text}");
        assert!(
            text.ends_with("10.0.0.3:7000: connection refused\n"),
            "{text}"
        );
    }

    #[test]
    fn bytes_are_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
