//! Operating the worker against a real 6-node Redis Cluster and the mock Kafka: `/metrics`
//! carries every metric of the contract after traffic (and its counters move), `/readyz`
//! flips to 503 naming the uncovered slots during a real node outage (a master killed after
//! its replica; a shard paused) and back to 200, and the ops CLI (`cluster status`,
//! `blacklist check|add|remove [--direct]`, `tail`) works against the stack, including the one
//! `demo --keep` leaves running with the commands it prints.

mod common;

use std::net::SocketAddr;
use std::process::Output;
use std::time::{Duration, Instant};

use common::ops::{self, Process, get, sample, sum};
use common::worker::{publish, start_stack, test_config, traffic};
use fds_testkit::demo::LocalStack;
use fds_worker::cli::run::Service;
use fds_worker::config::Config;
use fds_worker::generate::GeneratedEvent;
use fds_worker::pipeline::RunSummary;
use rdkafka::producer::FutureRecord;
use tokio::sync::{Mutex, oneshot};
use tokio::task::JoinHandle;

/// One stack at a time (each test starts its own; together they would starve 2 cores).
static SERIAL: Mutex<()> = Mutex::const_new(());

/// Bound on anything that should take seconds (a failover or rejoin takes ≈4 s).
const WAIT: Duration = Duration::from_secs(60);

/// The test config with the endpoint on a free port and a fast monitor.
fn ops_config(stack: &LocalStack) -> Config {
    let mut config = test_config(stack);
    config.metrics.listen = "127.0.0.1:0".parse().unwrap();
    config.metrics.poll_interval = Duration::from_millis(200);
    config
}

/// A worker with its endpoint and monitor, running in this process.
struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    run: JoinHandle<RunSummary>,
}

async fn start(config: &Config) -> Running {
    let service = Service::start(config).await.expect("service starts");
    let addr = service.addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(async move {
        service
            .run(async {
                let _ = stopped.await;
            })
            .await
            .expect("worker runs")
    });
    Running { addr, stop, run }
}

impl Running {
    async fn stop(self) -> RunSummary {
        let _ = self.stop.send(());
        self.run.await.unwrap()
    }
}

/// [`ops::wait_http`] bounded by [`WAIT`].
async fn wait_http(
    addr: SocketAddr,
    path: &str,
    what: &str,
    done: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    ops::wait_http(addr, path, what, WAIT, done).await
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Labelled counters that have no series (and so no `# TYPE` line) until a unit is retried or
/// given up on; their names are checked by `metrics::tests` in the library.
const ONLY_AFTER_FAILURES: &[&str] = &["fds_redis_units_retried", "fds_redis_units_failed"];

/// Every metric of the contract (`# TYPE` names; counters without `_total`).
const CONTRACT: &[(&str, &str)] = &[
    ("fds_events_consumed", "counter"),
    ("fds_events_enriched", "counter"),
    ("fds_verdicts_applied", "counter"),
    ("fds_events_dead_lettered", "counter"),
    ("fds_late_events", "counter"),
    ("fds_velocity_breaches", "counter"),
    ("fds_blacklist_hits", "counter"),
    ("fds_blacklist_adds", "counter"),
    ("fds_blacklist_removes", "counter"),
    ("fds_redis_units_sent", "counter"),
    ("fds_redis_units_retried", "counter"),
    ("fds_redis_units_failed", "counter"),
    ("fds_batch_duration_seconds", "histogram"),
    ("fds_event_to_enriched_seconds", "histogram"),
    ("fds_inflight_batches", "gauge"),
    ("fds_paused", "gauge"),
    ("fds_assigned_partitions", "gauge"),
    ("fds_ready", "gauge"),
    ("fds_consumer_lag", "gauge"),
    ("fds_redis_cluster_state", "gauge"),
    ("fds_redis_cluster_slots", "gauge"),
    ("fds_redis_slot_coverage_ratio", "gauge"),
    ("fds_redis_known_nodes", "gauge"),
    ("fds_redis_node_up", "gauge"),
    ("fds_redis_node_role", "gauge"),
    ("fds_redis_used_memory_bytes", "gauge"),
    ("fds_redis_maxmemory_bytes", "gauge"),
    ("fds_redis_connected_clients", "gauge"),
    ("fds_redis_keyspace_hits", "counter"),
    ("fds_redis_keyspace_misses", "counter"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_traffic_carry_every_named_metric_and_counters_move() {
    let _serial = SERIAL.lock().await;
    let stack = start_stack().await;
    let config = ops_config(&stack);
    let worker = start(&config).await;
    let (status, body) = get(worker.addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    let traffic = traffic(&config, 400, 61, Duration::from_secs(20));
    publish(&stack, &config, &traffic, None).await;
    // One poison record, so the dead-letter counter moves too.
    let producer = stack.producer().unwrap();
    producer
        .send(
            FutureRecord::to(&config.kafka.transactions_topic)
                .key("poison")
                .payload(b"not avro"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let transactions = traffic.truth.transactions as f64;
    let verdicts = traffic.truth.verdicts as f64;
    // Consumer lag comes from librdkafka's statistics, every `poll_interval`: the first report
    // that knows the partitions' high watermarks may come after the last record is finished.
    let (_, metrics) = wait_http(worker.addr, "/metrics", "every record finished", |_, m| {
        sum(m, "fds_events_enriched_total") >= transactions
            && sum(m, "fds_verdicts_applied_total") >= verdicts
            && sum(m, "fds_events_dead_lettered_total") >= 1.0
            && m.contains("# TYPE fds_consumer_lag gauge\n")
    })
    .await;
    for (name, kind) in CONTRACT {
        if ONLY_AFTER_FAILURES.contains(name) && !metrics.contains(&format!(" {name}")) {
            continue;
        }
        assert!(
            metrics.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} ({kind}) missing from /metrics:\n{metrics}"
        );
    }
    let consumed = sum(&metrics, "fds_events_consumed_total");
    assert_eq!(consumed, transactions + verdicts + 1.0, "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            &format!(
                "fds_events_dead_lettered_total{{topic=\"{}\",reason=\"bad_magic\"}}",
                config.kafka.transactions_topic
            )
        )
        .or_else(|| Some(sum(&metrics, "fds_events_dead_lettered_total"))),
        Some(1.0)
    );
    for counter in [
        "fds_redis_units_sent_total",
        "fds_batch_duration_seconds_count",
        "fds_event_to_enriched_seconds_count",
        "fds_blacklist_adds_total",
    ] {
        assert!(sum(&metrics, counter) > 0.0, "{counter} moved:\n{metrics}");
    }
    assert_eq!(
        sample(&metrics, "fds_assigned_partitions"),
        Some(8.0),
        "4 partitions of each of 2 source topics"
    );
    assert_eq!(sample(&metrics, "fds_paused"), Some(0.0));

    // The monitor's view of the healthy cluster.
    assert_eq!(sample(&metrics, "fds_redis_cluster_state"), Some(1.0));
    assert_eq!(
        sample(&metrics, "fds_redis_cluster_slots{state=\"ok\"}"),
        Some(16384.0)
    );
    assert_eq!(sample(&metrics, "fds_redis_slot_coverage_ratio"), Some(1.0));
    assert_eq!(sample(&metrics, "fds_redis_known_nodes"), Some(6.0));
    for port in stack.cluster.ports() {
        let node = format!("{{node=\"127.0.0.1:{port}\"}}");
        assert_eq!(
            sample(&metrics, &format!("fds_redis_node_up{node}")),
            Some(1.0)
        );
        assert!(sample(&metrics, &format!("fds_redis_used_memory_bytes{node}")).unwrap() > 0.0);
        assert!(sample(&metrics, &format!("fds_redis_maxmemory_bytes{node}")).is_some());
        assert!(sample(&metrics, &format!("fds_redis_connected_clients{node}")).unwrap() >= 1.0);
    }
    let roles = |role: &str| {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("fds_redis_node_role{") && l.contains(&format!("role=\"{role}\""))
            })
            .count()
    };
    assert_eq!((roles("master"), roles("replica")), (3, 3), "{metrics}");
    // Keyspace reads come from the monitor's next poll after the lookups, which may be later
    // than the snapshot above.
    wait_http(
        worker.addr,
        "/metrics",
        "keyspace reads from the blacklist lookups",
        |_, m| {
            sum(m, "fds_redis_keyspace_hits_total") + sum(m, "fds_redis_keyspace_misses_total")
                > 0.0
        },
    )
    .await;

    // Lag per assigned partition, down to 0 once everything is finished and stored.
    let (_, metrics) = wait_http(worker.addr, "/metrics", "consumer lag 0", |_, m| {
        m.lines()
            .filter(|l| l.starts_with("fds_consumer_lag{"))
            .count()
            == 8
            && sum(m, "fds_consumer_lag") == 0.0
    })
    .await;
    assert!(
        metrics.contains(&format!(
            "fds_consumer_lag{{topic=\"{}\",partition=\"0\"}} 0",
            config.kafka.transactions_topic
        )),
        "{metrics}"
    );
    let (status, body) = wait_http(worker.addr, "/readyz", "ready", |s, _| s == 200).await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let (_, metrics) = get(worker.addr, "/metrics").await;
    assert_eq!(sample(&metrics, "fds_ready"), Some(1.0));

    let summary = worker.stop().await;
    assert_eq!(summary.consumed as f64, consumed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_flips_to_503_naming_uncovered_slots_during_a_node_outage_and_back() {
    let _serial = SERIAL.lock().await;
    let stack = std::sync::Arc::new(start_stack().await);
    let config = ops_config(&stack);
    let worker = start(&config).await;
    let addr = worker.addr;
    wait_http(addr, "/readyz", "ready", |s, b| s == 200 && b == "ready\n").await;

    // A master whose replica is gone: its slots have nobody to fail over to.
    let cluster = std::sync::Arc::clone(&stack);
    let (master, replica, port, slots) = blocking(move || {
        let topology = cluster.cluster.topology().unwrap();
        let master = cluster.cluster.masters()[0];
        let replica = cluster.cluster.replicas_of(master)[0];
        let port = cluster.cluster.port(master).unwrap();
        let slots = topology.by_port(port).unwrap().slot_count();
        cluster.cluster.kill(replica).unwrap();
        cluster.cluster.kill(master).unwrap();
        (master, replica, port, slots)
    })
    .await;
    let uncovered = format!("{slots} of 16384 slots uncovered");
    let (status, body) = wait_http(addr, "/readyz", "503 naming the uncovered slots", |s, b| {
        s == 503 && b.contains(&uncovered)
    })
    .await;
    assert!(body.starts_with("not ready: "), "{status} {body}");
    let node_up = format!("fds_redis_node_up{{node=\"127.0.0.1:{port}\"}}");
    let (_, metrics) = wait_http(
        addr,
        "/metrics",
        "the cluster to declare the slots failed",
        |_, m| {
            sample(m, "fds_redis_cluster_state") == Some(0.0)
                && sample(m, "fds_redis_cluster_slots{state=\"fail\"}") == Some(slots as f64)
        },
    )
    .await;
    assert_eq!(sample(&metrics, &node_up), Some(0.0), "{metrics}");
    assert_eq!(sample(&metrics, "fds_ready"), Some(0.0));
    let ratio = sample(&metrics, "fds_redis_slot_coverage_ratio").unwrap();
    assert!(
        (ratio - (16384 - slots) as f64 / 16384.0).abs() < 1e-9,
        "{ratio}"
    );
    let (_, body) = get(addr, "/readyz").await;
    assert!(body.contains("(cluster_state fail)"), "{body}");
    let (status, _) = get(addr, "/healthz").await;
    assert_eq!(status, 200, "alive while not ready");

    // Restored: ready again.
    let cluster = std::sync::Arc::clone(&stack);
    blocking(move || {
        cluster.cluster.restart(master).unwrap();
        cluster.cluster.restart(replica).unwrap();
        cluster.cluster.wait_for_state_ok(WAIT).unwrap();
    })
    .await;
    wait_http(addr, "/readyz", "ready after the restart", |s, _| s == 200).await;
    let (_, metrics) = wait_http(addr, "/metrics", "the node back up", |_, m| {
        sample(m, &node_up) == Some(1.0) && sample(m, "fds_redis_cluster_state") == Some(1.0)
    })
    .await;
    assert_eq!(sample(&metrics, "fds_redis_slot_coverage_ratio"), Some(1.0));
    assert_eq!(sample(&metrics, "fds_ready"), Some(1.0));

    // A whole shard frozen (SIGSTOP): unreachable at once, before the cluster notices.
    let cluster = std::sync::Arc::clone(&stack);
    let (master, replica, slots) = blocking(move || {
        let topology = cluster.cluster.topology().unwrap();
        let master = *cluster.cluster.masters().last().unwrap();
        let replica = cluster.cluster.replicas_of(master)[0];
        let slots = topology
            .by_port(cluster.cluster.port(master).unwrap())
            .unwrap()
            .slot_count();
        cluster.cluster.pause(replica).unwrap();
        cluster.cluster.pause(master).unwrap();
        (master, replica, slots)
    })
    .await;
    let uncovered = format!("{slots} of 16384 slots uncovered");
    wait_http(addr, "/readyz", "503 with the shard paused", |s, b| {
        s == 503 && b.contains(&uncovered)
    })
    .await;
    let cluster = std::sync::Arc::clone(&stack);
    blocking(move || {
        cluster.cluster.resume(master).unwrap();
        cluster.cluster.resume(replica).unwrap();
        cluster.cluster.wait_for_state_ok(WAIT).unwrap();
    })
    .await;
    wait_http(addr, "/readyz", "ready after the resume", |s, _| s == 200).await;
    worker.stop().await;
}

/// Where the ops CLI points: the `FDS_*` variables naming the Redis nodes, the Kafka brokers
/// and (on a shared Kafka) the topics.
#[derive(Clone)]
struct CliTarget {
    env: Vec<(&'static str, String)>,
}

impl CliTarget {
    fn of(stack: &LocalStack) -> CliTarget {
        CliTarget { env: stack.env() }
    }

    /// Runs the CLI against the target (blocking).
    fn command(&self, args: &[&str]) -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_fds-worker"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("FDS_CONFIG")
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (*k, v)))
            .env("FDS_LOG__LEVEL", "warn")
            .output()
            .expect("the binary runs")
    }
}

fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

async fn run_cli(target: &CliTarget, args: &[&str]) -> String {
    let target = target.clone();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        stdout_of(&target.command(&args))
    })
    .await
}

async fn check_json(target: &CliTarget, kind: &str, value: &str) -> serde_json::Value {
    let text = run_cli(target, &["blacklist", "check", kind, value, "--json"]).await;
    serde_json::from_str(text.trim()).unwrap()
}

async fn wait_listed(
    target: &CliTarget,
    kind: &str,
    value: &str,
    listed: bool,
) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let shown = check_json(target, kind, value).await;
        if shown["listed"] == listed {
            return shown;
        }
        assert!(
            Instant::now() < deadline,
            "{kind} {value} listed={listed}: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ops_cli_works_against_the_stack() {
    let _serial = SERIAL.lock().await;
    let stack = start_stack().await;
    let config = ops_config(&stack);
    let worker = start(&config).await;
    let target = CliTarget::of(&stack);

    // cluster status: a table of 6 nodes, fully covered; the same as JSON.
    let table = run_cli(&target, &["cluster", "status"]).await;
    assert!(table.starts_with("cluster_state: ok"), "{table}");
    assert!(
        table.contains("coverage: 16384/16384 slots (100.0%)"),
        "{table}"
    );
    assert!(table.contains("uncovered slots: none"), "{table}");
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("127.0.0.1:"))
        .collect();
    assert_eq!(rows.len(), 6, "{table}");
    assert_eq!(
        rows.iter().filter(|r| r.contains(" master ")).count(),
        3,
        "{table}"
    );
    assert_eq!(
        rows.iter().filter(|r| r.contains(" replica ")).count(),
        3,
        "{table}"
    );
    // A replica that has not replicated anything yet is `loading` (CLUSTER SHARDS health).
    assert!(
        rows.iter()
            .all(|r| (r.contains(" up ") || r.contains(" loading ")) && r.contains("B / ")),
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&run_cli(&target, &["cluster", "status", "--json"]).await).unwrap();
    assert_eq!(json["covered_slots"], 16384);
    assert_eq!(json["view"]["state"], "ok");
    assert_eq!(json["nodes"].as_array().unwrap().len(), 6);

    // blacklist via the verdict topic: the running worker applies it.
    let ip = "203.0.113.7";
    assert_eq!(check_json(&target, "ip", ip).await["listed"], false);
    let text = run_cli(&target, &["blacklist", "check", "ip", ip]).await;
    assert!(
        text.starts_with("not listed: bl:{ip:203.0.113.7}"),
        "{text}"
    );
    let out = run_cli(
        &target,
        &[
            "blacklist",
            "add",
            "ip",
            ip,
            "--level",
            "fraud",
            "--reason",
            "ring 7",
        ],
    )
    .await;
    assert!(
        out.starts_with("published ADD ip 203.0.113.7 (FRAUD)"),
        "{out}"
    );
    let shown = wait_listed(&target, "ip", ip, true).await;
    assert_eq!(shown["threat_level"], "FRAUD");
    assert_eq!(shown["reason"], "ring 7");
    assert_eq!(shown["source"], "fds-worker-cli");
    let ttl = shown["ttl_remaining_s"].as_i64().unwrap();
    let week = 7 * 24 * 3600;
    assert!(
        ttl <= week && ttl > week - 300,
        "FRAUD tier is 7 days: {ttl}"
    );
    let text = run_cli(&target, &["blacklist", "check", "ip", ip]).await;
    // The whole week while the check runs in the second the entry was written, just under it
    // after that.
    let expires = text
        .lines()
        .find(|l| l.starts_with("expires:"))
        .unwrap_or("");
    assert!(
        text.contains("level:     FRAUD")
            && (expires.starts_with("expires:   in 6days 23h")
                || expires == "expires:   in 7days (TTL 604800 s)"),
        "{text}"
    );
    let out = run_cli(&target, &["blacklist", "remove", "ip", ip]).await;
    assert!(out.starts_with("published REMOVE ip 203.0.113.7"), "{out}");
    wait_listed(&target, "ip", ip, false).await;

    // --direct: through the atomic unit at once; an ADD never lowers the level.
    let out = run_cli(
        &target,
        &[
            "blacklist",
            "add",
            "user",
            "u{1}",
            "--level",
            "PERMANENT",
            "--direct",
        ],
    )
    .await;
    assert!(out.starts_with("applied ADD user u{1} directly"), "{out}");
    assert!(
        out.contains("key:       bl:{u:u%7B1%7D}") && out.contains("expires:   never"),
        "{out}"
    );
    run_cli(
        &target,
        &[
            "blacklist",
            "add",
            "user",
            "u{1}",
            "--level",
            "TEMPORARY",
            "--direct",
        ],
    )
    .await;
    let shown = check_json(&target, "user", "u{1}").await;
    assert_eq!(shown["threat_level"], "PERMANENT", "{shown}");
    assert!(shown["ttl_remaining_s"].is_null());
    let out = run_cli(
        &target,
        &["blacklist", "remove", "user", "u{1}", "--direct"],
    )
    .await;
    assert!(
        out.starts_with("applied REMOVE user u{1} directly"),
        "{out}"
    );
    assert!(out.contains("not listed: bl:{u:u%7B1%7D}"), "{out}");

    // tail: the enrichment records of published traffic, decoded.
    let first_traffic = traffic(&config, 40, 62, Duration::from_secs(5));
    publish(&stack, &config, &first_traffic, None).await;
    let ids: std::collections::BTreeSet<String> = first_traffic
        .events
        .iter()
        .filter_map(|e| match e {
            GeneratedEvent::Transaction(tx) => Some(tx.event_id.clone()),
            GeneratedEvent::Verdict(_) => None,
        })
        .collect();
    let count = ids.len().to_string();
    let lines = run_cli(&target, &["tail", "--from-beginning", "--count", &count]).await;
    let records: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seen: std::collections::BTreeSet<String> = records
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, ids, "every enrichment record, decoded");
    let first = &records[0];
    assert_eq!(first["_kafka"]["topic"], config.kafka.enrichment_topic);
    assert!(
        first["velocity"].as_array().is_some_and(|v| !v.is_empty()),
        "{first}"
    );
    let features = first["features"]
        .as_array()
        .expect("features (schema version 2)");
    assert!(
        features
            .iter()
            .any(|f| f["name"] == "user_tx_1m" && f["value"].as_i64() >= Some(1)),
        "{first}"
    );
    assert!(
        first["rule_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("r-")),
        "{first}"
    );
    let user = first["user_id"].as_str().unwrap().to_owned();
    let mine = run_cli(
        &target,
        &["tail", "--from-beginning", "--count", "1", "--user", &user],
    )
    .await;
    let mine: serde_json::Value = serde_json::from_str(mine.trim()).unwrap();
    assert_eq!(mine["user_id"], user);
    let raw = run_cli(
        &target,
        &[
            "tail",
            "--topic",
            &config.kafka.transactions_topic,
            "--from-beginning",
            "-n",
            "2",
        ],
    )
    .await;
    let raw: Vec<serde_json::Value> = raw
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(raw.len(), 2);
    assert!(
        raw.iter()
            .all(|r| r["amount_minor"].is_i64() && r["currency"].is_string())
    );

    // Following: records published after tail started arrive.
    let mut env = stack.env();
    env.push(("FDS_LOG__LEVEL", "warn".to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut follower = Process::spawn(&["tail", "--count", "3"], &env);
    let more = traffic(&config, 10, 63, Duration::from_secs(1));
    let deadline = Instant::now() + WAIT;
    let records = |p: &Process| {
        p.output()
            .iter()
            .filter(|l| l.contains("\"_kafka\""))
            .count()
    };
    while records(&follower) < 3 {
        assert!(
            Instant::now() < deadline,
            "tail follows: {:?}",
            follower.output()
        );
        publish(&stack, &config, &more, None).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = blocking(move || follower.wait(WAIT)).await;
    assert!(
        status.success(),
        "tail --count 3 exits 0 after 3 records: {status}"
    );
    worker.stop().await;
}

/// The environment a `demo --keep` line exports: (name, value) pairs.
fn exported(line: &str) -> Vec<(String, String)> {
    line.trim()
        .strip_prefix("export ")
        .expect("an export line")
        .split(' ')
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_keep_leaves_a_stack_the_printed_ops_commands_work_against() {
    // librdkafka's mock cluster: the README's main command, on a machine without Java.
    demo_keep("mock", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_on_apache_kafka_with_a_registry_keeps_a_stack_the_printed_ops_commands_work_against()
{
    demo_keep("apache", true).await;
}

/// `fds-worker demo --kafka <kafka> [--registry] --keep`: the demo's ground truth holds, and the
/// ops commands work against the stack it leaves (cluster status, a listed subject's check, a
/// verdict published now and applied by the demo's worker; with the registry, the three
/// subjects registered and a `tail` decoding by the registry's ids); Ctrl-C ends it with exit 0.
async fn demo_keep(kafka: &str, registry: bool) {
    let _serial = SERIAL.lock().await;
    let mut args = vec![
        "demo", "--kafka", kafka, "--count", "400", "--rate", "2000", "--keep",
    ];
    if registry {
        args.push("--registry");
    }
    let demo = Process::spawn(&args, &[("FDS_METRICS__LISTEN", "127.0.0.1:0")]);
    let kafka = kafka.to_owned();
    let (mut demo, export) = blocking(move || {
        // Three JVM brokers to start first on Apache Kafka.
        let start = if kafka == "apache" {
            WAIT * 4
        } else {
            WAIT * 2
        };
        let line = demo.wait_for_line("the export line of --keep", start, |l| {
            l.trim_start().starts_with("export ")
        });
        (demo, line)
    })
    .await;
    let output = demo.output().join("\n");
    assert!(
        output.contains("OK: every counter equals the ground truth."),
        "{output}"
    );
    let env = exported(&export);
    let value_of = |name: &str| {
        env.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name} in {export}"))
    };
    let mut target = CliTarget {
        env: vec![
            ("FDS_REDIS__NODES", value_of("FDS_REDIS__NODES")),
            ("FDS_KAFKA__BROKERS", value_of("FDS_KAFKA__BROKERS")),
        ],
    };
    if registry {
        let subjects = output
            .lines()
            .find_map(|l| l.trim().strip_prefix("schema registry subjects: "))
            .unwrap_or_else(|| panic!("the registry's subjects: {output}"));
        for subject in [
            "transactions-value",
            "fraud-verdicts-value",
            "transactions-enriched-value",
        ] {
            assert!(subjects.contains(subject), "{subject} in {subjects}");
        }
        let url = value_of("FDS_SCHEMAS__REGISTRY__URLS");
        target.env.push(("FDS_SCHEMAS__REGISTRY__URLS", url));
    }

    let status = run_cli(&target, &["cluster", "status"]).await;
    assert!(status.starts_with("cluster_state: ok"), "{status}");
    // The printed `blacklist check` of a subject the traffic listed finds its entry.
    let check = output
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("fds-worker blacklist check ") && l.ends_with('\''))
        .unwrap_or_else(|| panic!("a blacklist check of a listed subject: {output}"));
    let (kind, value) = check["fds-worker blacklist check ".len()..]
        .split_once(' ')
        .expect("kind and value");
    let shown = check_json(&target, kind, value.trim_matches('\'')).await;
    assert_eq!(shown["listed"], true, "{shown}");
    // The worker still runs: a verdict published now is applied.
    let ip = "198.51.100.9";
    let added = run_cli(&target, &["blacklist", "add", "ip", ip, "--level", "FRAUD"]).await;
    assert!(
        added.starts_with("published ADD ip 198.51.100.9"),
        "{added}"
    );
    let shown = wait_listed(&target, "ip", ip, true).await;
    assert_eq!(shown["threat_level"], "FRAUD");
    if registry {
        // The enrichment records carry the registry's id: a tail resolves it there.
        let tailed = run_cli(&target, &["tail", "--from-beginning", "--count", "2"]).await;
        assert_eq!(tailed.lines().count(), 2, "{tailed}");
        for line in tailed.lines() {
            let record: serde_json::Value = serde_json::from_str(line).expect("JSON records");
            assert!(record["event_id"].is_string(), "{record}");
        }
    }

    demo.signal("INT");
    let status = blocking(move || demo.wait(WAIT)).await;
    assert!(
        status.success(),
        "demo --keep exits 0 on Ctrl-C: {status:?}"
    );
}
