//! Logs: JSON (or pretty) lines on stderr; per-batch spans name the topic, partition and offset
//! range of every record; secrets given in a config file (Redis password, a password inside a
//! node URL, Kafka SASL password) never appear in logs, `check-config --print`, or the errors
//! of `run`, `cluster status` and `blacklist check`.
//!
//! (`security.rs` checks the same for secrets given by environment variables, with librdkafka's
//! SASL handshake and redis-rs at debug level.)

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::ops::{Process, poll_http, sum};
use common::worker::{PARTITIONS, publish, start_stack_with, test_config, traffic};
use fds_testkit::localstack::ClusterOptions;

const REDIS_SECRET: &str = "redis-Pa55-from-file";
const URL_SECRET: &str = "url-Pa55-in-node-url";
const SASL_SECRET: &str = "sasl-Pa55-from-file";
const WRONG_SECRET: &str = "wrong-Pa55-from-file";
const SECRETS: [&str; 4] = [REDIS_SECRET, URL_SECRET, SASL_SECRET, WRONG_SECRET];

const WAIT: Duration = Duration::from_secs(60);

/// A port nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A config file with every secret in it, pointing at `redis_port` (`url_password`: put
/// [`URL_SECRET`] into the node URL too).
fn secret_config(dir: &Path, redis_port: u16, url_password: bool, kafka_sasl: bool) -> String {
    let userinfo = if url_password {
        format!(":{URL_SECRET}@")
    } else {
        String::new()
    };
    let mut text = format!(
        "[schemas]\nbase_dir = \"{}\"\n[redis]\nnodes = [\"redis://{userinfo}127.0.0.1:{redis_port}\"]\npassword = \"{REDIS_SECRET}\"\nconnect_timeout = \"500ms\"\n",
        env!("CARGO_MANIFEST_DIR")
    );
    if kafka_sasl {
        text.push_str(&format!(
            "[kafka.security]\nprotocol = \"sasl_plaintext\"\nsasl_mechanism = \"PLAIN\"\nsasl_username = \"fds\"\nsasl_password = \"{SASL_SECRET}\"\n"
        ));
    }
    let path = dir.join("fds-worker.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Runs the binary in the repository directory with `args` (stdout and stderr captured).
fn fds_worker(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fds-worker"));
    command
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("FDS_CONFIG")
        .env_remove("RUST_LOG");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_no_secret(what: &str, output: &str) {
    for secret in SECRETS {
        assert!(!output.contains(secret), "{what} shows a secret:\n{output}");
    }
}

#[test]
fn secrets_from_a_config_file_never_reach_the_dump_logs_or_errors_and_formats_apply() {
    let dir = tempfile::tempdir().unwrap();
    let config = secret_config(dir.path(), closed_port(), true, true);

    let out = fds_worker(&["--config", &config, "check-config", "--print"], &[]);
    let dump = text(&out);
    assert!(out.status.success(), "{dump}");
    assert_no_secret("check-config --print", &dump);
    assert!(dump.contains("password = \"***\""), "{dump}");
    assert!(dump.contains("sasl_password = \"***\""), "{dump}");
    assert!(dump.contains("redis://:***@127.0.0.1:"), "{dump}");

    // Nothing answers: each command fails, naming the problem, never a secret.
    for args in [
        &["cluster", "status"][..],
        &["blacklist", "check", "ip", "203.0.113.7"],
        &["run"],
    ] {
        let mut all = vec!["--config", config.as_str()];
        all.extend_from_slice(args);
        let out = fds_worker(
            &all,
            &[
                ("RUST_LOG", "debug"),
                ("FDS_LOG__FORMAT", "json"),
                ("FDS_METRICS__LISTEN", "127.0.0.1:0"),
            ],
        );
        let output = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}:\n{output}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let error = stderr.lines().last().unwrap_or_default();
        assert!(
            error.starts_with("fds-worker: error: "),
            "{args:?}:\n{output}"
        );
        assert!(
            error.contains("onnect") || error.contains("answered"),
            "{args:?} names the problem: {error}"
        );
        assert_no_secret(&format!("{args:?}"), &output);
        // Every log line before the error is one JSON object.
        for line in stderr
            .lines()
            .filter(|l| !l.starts_with("fds-worker: error: "))
        {
            let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
            assert!(parsed.is_ok(), "{args:?}: not JSON: {line}");
        }
    }

    let out = fds_worker(
        &["--config", &config, "run"],
        &[
            ("FDS_LOG__FORMAT", "pretty"),
            ("FDS_METRICS__LISTEN", "127.0.0.1:0"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logs: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("fds-worker: error: ") && !l.trim().is_empty())
        .collect();
    assert!(!logs.is_empty(), "{stderr}");
    assert!(
        logs.iter()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_err()),
        "pretty is not JSON:\n{stderr}"
    );
    assert_no_secret("run (pretty)", &stderr);
}

/// `topic/partition:first..=last` ranges of a batch span.
fn parse_ranges(offsets: &str) -> Vec<(String, i32, i64, i64)> {
    offsets
        .split_whitespace()
        .map(|range| {
            let (topic_partition, span) = range.split_once(':').expect("topic/partition:range");
            let (topic, partition) = topic_partition.rsplit_once('/').expect("topic/partition");
            let (first, last) = span.split_once("..=").expect("first..=last");
            (
                topic.to_owned(),
                partition.parse().unwrap(),
                first.parse().unwrap(),
                last.parse().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_spans_name_every_records_topic_partition_and_offset_and_no_secret_is_logged() {
    let options = ClusterOptions {
        password: Some(REDIS_SECRET.to_owned()),
        ..ClusterOptions::default()
    };
    let stack = start_stack_with(options).await;
    let config = test_config(&stack);
    let dir = tempfile::tempdir().unwrap();
    let port = stack.cluster.ports()[0];
    let config_file = secret_config(dir.path(), port, false, false);
    // The stack's brokers and topics; its Redis nodes come from the config file.
    let mut env: Vec<(&str, String)> = stack
        .env()
        .into_iter()
        .filter(|(key, _)| *key != "FDS_REDIS__NODES")
        .collect();
    env.extend([
        ("FDS_KAFKA__GROUP_ID", config.kafka.group_id.clone()),
        ("FDS_METRICS__LISTEN", "127.0.0.1:0".to_owned()),
        ("FDS_METRICS__POLL_INTERVAL", "200ms".to_owned()),
        ("FDS_PIPELINE__BATCH_SIZE", "100".to_owned()),
        ("RUST_LOG", "debug".to_owned()),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let worker = Process::spawn(&["--config", &config_file, "run"], &env);
    let traffic = traffic(&config, 300, 91, Duration::from_secs(5));
    publish(&stack, &config, &traffic, None).await;
    let events = traffic.events.len();
    let (worker, addr) = tokio::task::spawn_blocking(move || {
        let addr = worker.http_addr(Duration::from_secs(60));
        (worker, addr)
    })
    .await
    .unwrap();
    let finished = |m: &str| {
        sum(m, "fds_events_enriched_total") + sum(m, "fds_verdicts_applied_total") >= events as f64
    };
    if let Err((_, metrics)) = poll_http(addr, "/metrics", WAIT, |_, m| finished(m)).await {
        panic!(
            "every event finished:\n{metrics}\nworker output:\n{}",
            worker.output().join("\n")
        );
    }

    // The ops commands authenticate with the file's password, and never print it.
    for args in [
        &["cluster", "status"][..],
        &["blacklist", "check", "user", "1"],
    ] {
        let mut all = vec!["--config", config_file.as_str()];
        all.extend_from_slice(args);
        let out = fds_worker(&all, &[("RUST_LOG", "debug"), ("FDS_LOG__FORMAT", "json")]);
        let output = text(&out);
        assert!(out.status.success(), "{args:?}:\n{output}");
        assert_no_secret(&format!("{args:?}"), &output);
    }
    let wrong = dir.path().join("wrong.toml");
    let right = std::fs::read_to_string(&config_file).unwrap();
    std::fs::write(&wrong, right.replace(REDIS_SECRET, WRONG_SECRET)).unwrap();
    let wrong = wrong.display().to_string();
    for args in [
        &["cluster", "status"][..],
        &["blacklist", "check", "user", "1"],
    ] {
        let mut all = vec!["--config", wrong.as_str()];
        all.extend_from_slice(args);
        let out = fds_worker(&all, &[("RUST_LOG", "debug"), ("FDS_LOG__FORMAT", "json")]);
        let output = text(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?} with a wrong password:\n{output}"
        );
        assert!(
            output.contains("WRONGPASS") || output.contains("uthentication"),
            "{output}"
        );
        assert_no_secret(&format!("{args:?} with a wrong password"), &output);
    }

    worker.signal("TERM");
    let mut worker = worker;
    let (status, output) = tokio::task::spawn_blocking(move || {
        let status = worker.wait(WAIT);
        (status, worker.output())
    })
    .await
    .unwrap();
    assert!(status.success(), "{status}");
    let all = output.join("\n");
    assert_no_secret("the worker's debug logs", &all);

    // Every record was in exactly one batch, and the batch spans say where each came from.
    let mut covered: BTreeMap<(String, i32), BTreeSet<i64>> = BTreeMap::new();
    let mut records = 0;
    let mut batches = 0;
    for line in &output {
        let Ok(json) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if json["message"] != "batch done" {
            continue;
        }
        let span = &json["span"];
        assert_eq!(span["name"], "batch", "{line}");
        let ranges = parse_ranges(span["offsets"].as_str().expect("offsets field"));
        let size: i64 = ranges.iter().map(|(_, _, a, b)| b - a + 1).sum();
        assert_eq!(
            span["records"].as_i64(),
            Some(size),
            "contiguous ranges: {line}"
        );
        for (topic, partition, first, last) in ranges {
            let seen = covered.entry((topic, partition)).or_default();
            for offset in first..=last {
                assert!(
                    seen.insert(offset),
                    "offset {offset} in two batches: {line}"
                );
            }
        }
        records += size;
        batches += 1;
    }
    println!("[logging] {batches} batch spans covering {records} records");
    assert_eq!(records as usize, events, "{all}");
    for ((topic, partition), offsets) in &covered {
        assert!(
            [
                config.kafka.transactions_topic.as_str(),
                config.kafka.verdict_topics[0].as_str()
            ]
            .contains(&topic.as_str())
                && (0..PARTITIONS).contains(partition),
            "{topic}/{partition}"
        );
        let expected: BTreeSet<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(
            offsets, &expected,
            "{topic}/{partition}: every offset from 0"
        );
    }
}
