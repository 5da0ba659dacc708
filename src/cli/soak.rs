//! `fds-worker soak`: its arguments. The soak runs in the test kit's binary (see
//! [`super::testkit`]) on a local stack; see the README's reliability section.

use std::path::PathBuf;
use std::time::Duration;

/// Throw random faults at a running local stack for a while, then check that every promise
/// held: each transaction enriched exactly once, Redis equal to the ground truth.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  fds-worker soak                            3 minutes, a random seed (printed)
  fds-worker soak --duration 20m --seed 7    a long run; the same seed replays it
  fds-worker soak --rate 2000 --workers 3
  fds-worker soak --duration 90s --faults redis_partition@20s+9s,redis_master_kill@55s+8s

Starts a 6-node Redis Cluster and 3 Apache Kafka brokers (KRaft), worker processes in one
group (exactly-once delivery) and steady seeded traffic. A nemesis picks faults at random —
Redis master kill -9, SIGSTOP past node-timeout, manual failover, slot migration, a
partition between the workers and a master (nftables; the workers then run as uid 64999),
a master out of memory (maxmemory 1 under noeviction); broker kill -9, SIGSTOP, restart;
worker kill -9, SIGTERM and restart, SIGSTOP past its session, a worker joining and leaving; the Schema Registry frozen (SIGSTOP) — never more than the stack
survives. At the end it heals everything, waits for the drain, and checks the ledger. Writes
soak.json, soak.png (the timeline, faults as bands) and the worker logs to --report; exits 1
on any violation, with the seed to reproduce it. Needs redis-server, redis-cli, Java, the
jars of scripts/kafka-jars.sh, (unless --no-registry) scripts/apicurio-registry.sh, and for
the partition root and nft (without them it runs without that fault and says so).")]
pub struct SoakArgs {
    /// How long traffic flows and faults are thrown.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Seeds the traffic and the fault schedule (default: random, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Offered rate, events/s (about a quarter of what `fds-worker bench` measures as the
    /// exactly-once maximum on these 2-core machines).
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// Worker processes at the start (a joining worker adds one at times).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Mean time between faults. 20 s by default: on 2 cores a fault every 8 s outpaces the
    /// stack's recovery (every worker fault is a rebalance, every broker fault a coordinator
    /// move), and the lag then grows for the whole run (README, reliability section).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub fault_every: Duration,
    /// Partitions per topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Directory for soak.json, soak.png and the worker logs.
    #[arg(long, default_value = "soak-report")]
    pub report: PathBuf,
    /// Run without a Schema Registry (the local catalog's ids; no registry faults). By default
    /// the soak starts the local Apicurio Registry (scripts/apicurio-registry.sh builds it) and
    /// freezes it among the faults.
    #[arg(long)]
    pub no_registry: bool,
    /// Exactly these faults, at these times, instead of random ones: `kind@at+hold`, comma
    /// separated, e.g. `redis_partition@20s+9s,redis_master_kill@55s+8s` (kinds as soak.json
    /// names them). A planned fault waits while the stack is not whole enough for it; its
    /// target is the first candidate (the same master twice unless the first fault moved it).
    #[arg(long)]
    pub faults: Option<String>,
}
