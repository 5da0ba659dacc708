//! What the cluster says about itself: `redis-benchmark`'s ceiling, `INFO commandstats`
//! deltas, and the memory of the apply-once marks.

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::localstack::RedisCluster;
use fds_worker::store::admin::InfoDict;

/// `redis-benchmark --cluster -t <tests> -P 32 -c 50 -n <requests> -q` on the cluster:
/// requests per second by test name (`INCR`, `SET`).
pub fn ceiling(cluster: &RedisCluster, requests: u64) -> anyhow::Result<BTreeMap<String, f64>> {
    let port = cluster.port(cluster.masters()[0])?;
    let output = Command::new("redis-benchmark")
        .args(["--cluster", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", "incr,set", "-P", "32", "-c", "50", "-q"])
        .args(["-n", &requests.to_string()])
        .output()
        .context("running redis-benchmark (apt-get install -y redis-tools)")?;
    if !output.status.success() {
        bail!(
            "redis-benchmark failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let rates = parse_benchmark(&text);
    if rates.is_empty() {
        bail!("no results in redis-benchmark output: {text}");
    }
    Ok(rates)
}

/// `INCR: 812345.67 requests per second, p50=…` lines (after the last `\r` of each line).
fn parse_benchmark(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter_map(|line| {
            let line = line.rsplit('\r').next()?;
            let (name, rest) = line.split_once(": ")?;
            let rate = rest.split_whitespace().next()?.parse().ok()?;
            rest.contains("requests per second")
                .then(|| (name.trim().to_owned(), rate))
        })
        .collect()
}

/// Calls per command, summed over the masters (`INFO commandstats`).
pub fn command_calls(cluster: &RedisCluster) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut calls = BTreeMap::new();
    for master in cluster.masters() {
        let info: String = cluster.query(master, redis::cmd("INFO").arg("commandstats"))?;
        for (command, n) in parse_commandstats(&info) {
            *calls.entry(command).or_default() += n;
        }
    }
    Ok(calls)
}

/// `cmdstat_incr:calls=12,usec=…` → `("incr", 12)`.
fn parse_commandstats(info: &str) -> Vec<(String, u64)> {
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// Commands that read or write data (what a unit does inside `FCALL`), as opposed to the
/// `FCALL` itself and administration.
pub fn is_data_command(name: &str) -> bool {
    !matches!(
        name.split('|').next().unwrap_or(name),
        "fcall"
            | "function"
            | "cluster"
            | "info"
            | "ping"
            | "wait"
            | "asking"
            | "readonly"
            | "hello"
            | "client"
            | "command"
            | "config"
            | "auth"
            | "select"
            | "memory"
            | "scan"
            | "flushall"
            | "dbsize"
    )
}

/// Difference of two [`command_calls`] snapshots.
pub fn delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(name, n)| (name.clone(), n - before.get(name).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Memory of the apply-once marks: `(keys, bytes)` of `ao:{u:…}` keys, and of all `ao:` keys.
pub fn apply_once_memory(cluster: &RedisCluster) -> anyhow::Result<((u64, u64), (u64, u64))> {
    let (mut users, mut all) = ((0, 0), (0, 0));
    for master in cluster.masters() {
        let mut connection = cluster.connection(master)?;
        let keys: Vec<String> = redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("MATCH")
            .arg("*ao:{*")
            .arg("COUNT")
            .arg(1000)
            .clone()
            .iter(&mut connection)?
            .collect::<Result<_, _>>()?;
        for key in keys {
            let bytes: Option<u64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&key)
                .arg("SAMPLES")
                .arg(0)
                .query(&mut connection)?;
            let bytes = bytes.unwrap_or(0);
            all = (all.0 + 1, all.1 + bytes);
            if key.contains("ao:{u:") {
                users = (users.0 + 1, users.1 + bytes);
            }
        }
    }
    Ok((users, all))
}

/// CPU seconds (user + system) used so far by every node, masters and replicas (`INFO cpu`).
pub fn cpu_seconds(cluster: &RedisCluster) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for node in 0..cluster.node_count() {
        let info: InfoDict = cluster.query(node, redis::cmd("INFO").arg("cpu"))?;
        total += ["used_cpu_sys", "used_cpu_user"]
            .into_iter()
            .filter_map(|field| info.get::<f64>(field))
            .sum::<f64>();
    }
    Ok(total)
}

/// `FLUSHALL` on every master (the benchmark's own keys out of the way).
pub fn flush(cluster: &RedisCluster) -> anyhow::Result<()> {
    for master in cluster.masters() {
        let _: String = cluster.query(master, &redis::cmd("FLUSHALL"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redis_benchmark_quiet_output() {
        let text = "INCR: rps=0.0 (overall: nan) avg_msec=nan\r\
                    INCR: 812345.69 requests per second, p50=0.503 msec\n\
                    SET: 700000.00 requests per second, p50=0.6 msec\n";
        let rates = parse_benchmark(text);
        assert_eq!(rates["INCR"], 812_345.69);
        assert_eq!(rates["SET"], 700_000.0);
    }

    #[test]
    fn parses_commandstats() {
        let info = "# Commandstats\r\ncmdstat_incr:calls=12,usec=30,usec_per_call=2.5\r\n\
                    cmdstat_fcall:calls=3,usec=90\r\n";
        assert_eq!(
            parse_commandstats(info),
            vec![("incr".to_owned(), 12), ("fcall".to_owned(), 3)]
        );
        assert!(is_data_command("incr"));
        assert!(!is_data_command("fcall"));
        assert!(!is_data_command("cluster|info"));
    }
}
