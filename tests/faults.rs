//! The fault suite: real failures of a real 6-node Redis Cluster (kill -9, SIGSTOP, manual
//! failover, a whole shard lost, resharding) and of the worker process, each under load and
//! bounded in time, on Apache Kafka (broker faults are in `broker_faults.rs`). Every scenario ends with the ledger check: each generated event
//! applied exactly once to Redis or present in the dead-letter topic, counters equal to the
//! ground truth, every transaction enriched or dead-lettered.
//!
//! Scenarios run one at a time (each starts its own cluster; together they would starve a
//! 2-core machine). Each prints its figures: events, enriched, dead-lettered, lost, doubled,
//! longest stall.

mod common;

use std::time::Duration;

use common::ops::Process;
use common::scenario::{RATE, Scenario, TRANSACTIONS};
use common::worker::{
    enrichment_counts, publish_in_background, read_all, start_stack_with, start_worker,
    test_config, traffic, verification, wait_for_enrichment,
};
use fds_testkit::demo::LocalStack;
use fds_testkit::localstack::ClusterOptions;
use fds_worker::codec::Codec;
use fds_worker::config::Config;
use fds_worker::metrics::Metrics;
use fds_worker::redrive::{RedriveOptions, redrive};
use fds_worker::sink::dead_letter::header;
use tokio::sync::Mutex;

/// One scenario at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

const WAIT: Duration = Duration::from_secs(60);

fn durable(config: &mut Config) {
    // Writes count only once a replica has them: a master killed right after acking cannot
    // take acknowledged increments with it. The budget covers failover + the replica's return.
    config.redis.wait_replicas = 1;
    config.redis.wait_timeout = Duration::from_millis(250);
    config.redis.retry.budget = Duration::from_secs(15);
}

/// A master serving slots, and its replica.
fn a_shard(stack: &LocalStack) -> (usize, usize) {
    let master = stack.cluster.masters()[0];
    let replica = stack.cluster.replicas_of(master)[0];
    (master, replica)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s1_master_killed_under_load_replica_promoted_nothing_lost_or_doubled() {
    let _serial = SERIAL.lock().await;
    let mut s = Scenario::start("kill -9 master", ClusterOptions::default(), durable, 11).await;
    s.wait_finished(800).await;
    let (master, _) = a_shard(&s.stack);
    s.stack.cluster.kill(master).unwrap();
    let stack = &s.stack;
    let promoted = tokio::task::block_in_place(|| stack.cluster.wait_for_failover_of(master, WAIT))
        .expect("replica promoted");
    // The orchestrator restarts the dead node; it rejoins as a replica of the new master.
    s.stack.cluster.restart(master).unwrap();
    assert_ne!(promoted, master);
    let (progress, stall) = s.finish().await;
    assert_eq!(progress.dead_lettered, 0, "a failover is within the budget");
    s.ledger(progress, stall, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_master_paused_past_node_timeout_then_continued_as_a_zombie() {
    let _serial = SERIAL.lock().await;
    let mut s = Scenario::start("SIGSTOP master", ClusterOptions::default(), durable, 12).await;
    s.wait_finished(800).await;
    let (master, _) = a_shard(&s.stack);
    s.stack.cluster.pause(master).unwrap();
    let stack = &s.stack;
    tokio::task::block_in_place(|| stack.cluster.wait_for_failover_of(master, WAIT))
        .expect("replica promoted while the master is stopped");
    // The zombie wakes up believing it is master; the cluster demotes it.
    s.stack.cluster.resume(master).unwrap();
    let (progress, stall) = s.finish().await;
    assert_eq!(progress.dead_lettered, 0);
    s.ledger(progress, stall, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_manual_cluster_failover_under_load() {
    let _serial = SERIAL.lock().await;
    let mut s = Scenario::start("CLUSTER FAILOVER", ClusterOptions::default(), durable, 13).await;
    s.wait_finished(800).await;
    let (master, replica) = a_shard(&s.stack);
    let _: String = s
        .stack
        .cluster
        .query(replica, redis::cmd("CLUSTER").arg("FAILOVER"))
        .unwrap();
    let stack = &s.stack;
    tokio::task::block_in_place(|| stack.cluster.wait_for_failover_of(master, WAIT))
        .expect("failover done");
    let (progress, stall) = s.finish().await;
    assert_eq!(progress.dead_lettered, 0);
    s.ledger(progress, stall, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_a_whole_shard_lost_without_full_coverage_dead_letters_it_and_redrive_restores_truth() {
    let _serial = SERIAL.lock().await;
    let options = ClusterOptions {
        require_full_coverage: false,
        // The restored shard must come back with every write it acknowledged.
        extra_config: vec![("appendfsync".into(), "always".into())],
        ..ClusterOptions::default()
    };
    let mut s = Scenario::start("shard lost, partial coverage", options, |_| {}, 14).await;
    s.wait_finished(800).await;
    let (master, replica) = a_shard(&s.stack);
    let master_port = s.stack.cluster.port(master).unwrap();
    s.stack.cluster.kill(replica).unwrap();
    s.stack.cluster.kill(master).unwrap();
    let (progress, stall) = s.finish().await;
    assert!(
        progress.dead_lettered > 0,
        "the lost shard's events are dead-lettered"
    );
    assert!(
        progress.enriched > 0,
        "the other shards' events are enriched"
    );

    // Dead letters name the slot and the node that served it.
    let dlq = s.config.kafka.dlq_topic(&s.config.kafka.transactions_topic);
    let letters = read_all(&s.stack, &dlq);
    assert!(!letters.is_empty());
    for letter in &letters {
        assert!(letter.header(header::SLOT).is_some());
        assert_eq!(
            letter.header(header::NODE),
            Some(format!("127.0.0.1:{master_port}").as_str())
        );
        assert!(letter.header(header::KIND).is_some());
        assert!(letter.header(header::FAILED_TAGS).is_some());
        assert_eq!(
            letter.header(header::TOPIC),
            Some(s.config.kafka.transactions_topic.as_str())
        );
    }
    s.ledger(progress, stall, false).await;

    // Restore the shard, then redrive both dead-letter topics.
    let stack = &s.stack;
    tokio::task::block_in_place(|| {
        stack.cluster.restart(master).unwrap();
        stack.cluster.restart(replica).unwrap();
        stack.cluster.wait_for_state_ok(WAIT).unwrap();
    });
    redrive_to_ground_truth(&s, "shard lost").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s5_a_whole_shard_lost_with_full_coverage_pauses_and_catches_up_without_dead_letters() {
    let _serial = SERIAL.lock().await;
    let options = ClusterOptions {
        extra_config: vec![("appendfsync".into(), "always".into())],
        ..ClusterOptions::default()
    };
    let mut s = Scenario::start("cluster down, full coverage", options, |_| {}, 15).await;
    s.wait_finished(800).await;
    let (master, replica) = a_shard(&s.stack);
    s.stack.cluster.kill(replica).unwrap();
    s.stack.cluster.kill(master).unwrap();
    // Down for longer than the retry budget (6 s): the worker must wait, not dead-letter. Wait
    // until nothing has finished for the budget and 2 s more, failing on any dead letter.
    let outlasted = s.config.redis.retry.budget + Duration::from_secs(2);
    common::wait_until_async(
        "the worker stalled past its retry budget",
        WAIT,
        Duration::from_millis(100),
        || async {
            let progress = s.worker().progress(&s.config);
            assert_eq!(progress.dead_lettered, 0, "dead letters during the outage");
            match s.current_stall() {
                stall if stall >= outlasted => Ok(()),
                stall => Err(format!("stalled {stall:?} of {outlasted:?}; {progress:?}")),
            }
        },
    )
    .await;
    assert_eq!(s.worker().progress(&s.config).dead_lettered, 0);
    let stack = &s.stack;
    tokio::task::block_in_place(|| {
        stack.cluster.restart(master).unwrap();
        stack.cluster.restart(replica).unwrap();
    });
    let (progress, stall) = s.finish().await;
    assert_eq!(
        progress.dead_lettered, 0,
        "nothing dead-lettered while the whole cluster was down"
    );
    s.ledger(progress, stall, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s6_resharding_under_load_follows_moved_and_ask_without_double_counting() {
    let _serial = SERIAL.lock().await;
    let mut s = Scenario::start("resharding", ClusterOptions::default(), |_| {}, 16).await;
    s.wait_finished(500).await;
    let masters = s.stack.cluster.masters();
    let id = |node: usize| -> String {
        s.stack
            .cluster
            .query(node, redis::cmd("CLUSTER").arg("MYID"))
            .unwrap()
    };
    let (from, to) = (id(masters[0]), id(masters[1]));
    let entry = format!("127.0.0.1:{}", s.stack.cluster.port(masters[0]).unwrap());
    let output = blocking(move || {
        std::process::Command::new("redis-cli")
            .args([
                "--cluster",
                "reshard",
                &entry,
                "--cluster-from",
                &from,
                "--cluster-to",
                &to,
            ])
            .args([
                "--cluster-slots",
                "1500",
                "--cluster-yes",
                "--cluster-pipeline",
                "10",
            ])
            .output()
            .expect("redis-cli runs")
    })
    .await;
    assert!(
        output.status.success(),
        "reshard: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (progress, stall) = s.finish().await;
    assert_eq!(progress.dead_lettered, 0);
    s.ledger(progress, stall, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s7_worker_process_killed_mid_batch_and_restarted() {
    let _serial = SERIAL.lock().await;
    let stack = start_stack_with(ClusterOptions::default()).await;
    let config = test_config(&stack);
    let span = Duration::from_secs(10);
    let traffic = traffic(&config, TRANSACTIONS, 17, span);
    let publishing = publish_in_background(&stack, &config, &traffic, RATE);
    // Worker processes, killed when dropped (a failed wait leaves none behind).
    let env = stack.env();
    let spawn = || {
        let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.extend([
            ("FDS_KAFKA__GROUP_ID", config.kafka.group_id.as_str()),
            ("FDS_PIPELINE__BATCH_SIZE", "200"),
            ("FDS_METRICS__LISTEN", "127.0.0.1:0"),
            ("FDS_LOG__LEVEL", "warn"),
        ]);
        Process::spawn(&["run"], &env)
    };
    let mut first = spawn();
    common::wait_until_async(
        "600 transactions enriched by the first worker",
        WAIT,
        Duration::from_millis(200),
        || async {
            match enrichment_counts(&stack, &config).len() {
                n if n >= 600 => Ok(()),
                n => Err(format!("{n} enriched")),
            }
        },
    )
    .await;
    first.signal("KILL"); // mid-batch: nothing drains, nothing commits
    first.wait(WAIT);
    let mut second = spawn();
    publishing.await.unwrap();
    wait_for_enrichment(&stack, &config, &traffic, || 0).await;
    second.signal("TERM");
    let status = blocking(move || second.wait(WAIT)).await;
    assert!(status.success(), "graceful stop exits 0: {status}");
    let enriched = enrichment_counts(&stack, &config);
    let report = verification(&stack, &traffic).await;
    println!(
        "[worker kill -9] events {} enriched {} (records {}) lost {} double-counted {}",
        traffic.events.len(),
        enriched.len(),
        enriched.values().sum::<usize>(),
        report.lost_increments(),
        report.doubled_increments()
    );
    assert_eq!(
        enriched.len(),
        traffic.truth.transactions,
        "every transaction enriched"
    );
    assert!(
        report.is_exact(),
        "lost {:?} doubled {:?}",
        report.lost.first(),
        report.doubled.first()
    );
}

/// Redrives both dead-letter topics of `s` (the cause healed) and asserts the ground truth:
/// nothing dead-lettered again, Redis exact, every transaction enriched.
async fn redrive_to_ground_truth(s: &Scenario, name: &str) {
    let dlq = s.config.kafka.dlq_topic(&s.config.kafka.transactions_topic);
    for topic in [
        dlq,
        s.config.kafka.dlq_topic(&s.config.kafka.verdict_topics[0]),
    ] {
        let options = RedriveOptions {
            topic,
            filters: Vec::new(),
            batch_size: 200,
        };
        let summary = redrive(&s.config, &options, Metrics::unregistered(), |_, _| {})
            .await
            .expect("redrive");
        assert_eq!(summary.dead_lettered_again, 0, "{summary:?}");
    }
    let report = verification(&s.stack, &s.traffic).await;
    println!(
        "[{name}, after redrive] lost {} double-counted {}",
        report.lost_increments(),
        report.doubled_increments()
    );
    assert!(
        report.is_exact(),
        "{name}, after redrive: lost {:?} doubled {:?} blacklist {:?}",
        &report.lost[..report.lost.len().min(3)],
        &report.doubled[..report.doubled.len().min(3)],
        report.blacklist_problems
    );
    let enriched = enrichment_counts(&s.stack, &s.config);
    assert_eq!(
        enriched.len(),
        s.traffic.truth.transactions,
        "every transaction enriched after redrive"
    );
}

/// Builds the poison records: each with the error kind it must be dead-lettered with.
#[allow(deprecated)] // apache-avro's one-shot datum functions are the simplest way to forge records
fn poison_records(
    dir: &std::path::Path,
    config: &mut Config,
) -> Vec<(String, Vec<u8>, &'static str)> {
    use apache_avro::types::Value;
    let codec = Codec::builtin();
    let transactions = config.kafka.transactions_topic.clone();
    let verdicts = config.kafka.verdict_topics[0].clone();
    let frame = |id: u32, body: &[u8]| {
        let mut bytes = vec![0u8];
        bytes.extend_from_slice(&id.to_be_bytes());
        bytes.extend_from_slice(body);
        bytes
    };
    let now = common::worker::now_ms();
    let tx = fds_worker::event::Transaction {
        event_id: "poison-tx".into(),
        user_id: "u-1".into(),
        amount_minor: 100,
        currency: "EUR".into(),
        card_bin: None,
        ip: None,
        email: None,
        device_id: None,
        merchant_id: None,
        event_time_ms: now,
    };
    let valid = codec.encode_transaction(&tx).unwrap();
    let mut injected = tx.clone();
    injected.user_id = "victim}{u:42".into();
    let mut records = vec![
        (
            transactions.clone(),
            b"\xff\x00 not avro at all".to_vec(),
            "wrong_magic",
        ),
        (
            transactions.clone(),
            valid[..valid.len() - 3].to_vec(),
            "malformed_avro",
        ),
        (
            transactions.clone(),
            frame(77, &valid[5..]),
            "unknown_schema",
        ),
        (
            transactions.clone(),
            frame(1, &vec![7u8; 70_000]),
            "oversize",
        ),
        (
            transactions.clone(),
            codec.encode_transaction(&injected).unwrap(),
            "invalid_field",
        ),
    ];

    // A writer schema without a required field (user_id has no default): resolution fails.
    let mut missing: serde_json::Value =
        serde_json::from_str(fds_worker::codec::TRANSACTION_AVSC).unwrap();
    missing["fields"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["name"] != "user_id");
    let missing_path = dir.join("transaction-without-user.avsc");
    std::fs::write(&missing_path, missing.to_string()).unwrap();
    let missing_schema = apache_avro::Schema::parse_str(&missing.to_string()).unwrap();
    let builtin_tx = apache_avro::Schema::parse_str(fds_worker::codec::TRANSACTION_AVSC).unwrap();
    let Value::Record(fields) =
        apache_avro::from_avro_datum(&builtin_tx, &mut &valid[5..], None).unwrap()
    else {
        panic!("a record")
    };
    let fields = fields.into_iter().filter(|(n, _)| n != "user_id").collect();
    let body = apache_avro::to_avro_datum(&missing_schema, Value::Record(fields)).unwrap();
    records.push((transactions.clone(), frame(98, &body), "resolution"));

    // A newer verdict schema with a threat level this worker does not know.
    let verdict = fds_worker::event::FraudVerdict {
        verdict_id: "poison-v".into(),
        subject: fds_worker::event::Subject {
            kind: fds_worker::event::EntityKind::Ip,
            value: "9.9.9.9".into(),
        },
        action: fds_worker::event::VerdictAction::Add,
        threat_level: fds_worker::event::ThreatLevel::Permanent,
        reason: "r".into(),
        source: "s".into(),
        event_time_ms: now,
    };
    let valid_verdict = codec.encode_verdict(&verdict).unwrap();
    let text = fds_worker::codec::FRAUD_VERDICT_AVSC
        .replace("\"PERMANENT\"", "\"APOCALYPSE\", \"PERMANENT\"");
    assert_ne!(
        text,
        fds_worker::codec::FRAUD_VERDICT_AVSC,
        "the enum was extended"
    );
    let newer_path = dir.join("fraud_verdict-newer.avsc");
    std::fs::write(&newer_path, &text).unwrap();
    let newer = apache_avro::Schema::parse_str(&text).unwrap();
    let builtin_verdict =
        apache_avro::Schema::parse_str(fds_worker::codec::FRAUD_VERDICT_AVSC).unwrap();
    let Value::Record(fields) =
        apache_avro::from_avro_datum(&builtin_verdict, &mut &valid_verdict[5..], None).unwrap()
    else {
        panic!("a record")
    };
    let fields = fields
        .into_iter()
        .map(|(n, v)| {
            if n == "threat_level" {
                (n, Value::Enum(4, "APOCALYPSE".into()))
            } else {
                (n, v)
            }
        })
        .collect();
    let body = apache_avro::to_avro_datum(&newer, Value::Record(fields)).unwrap();
    records.push((verdicts.clone(), frame(99, &body), "resolution"));

    config
        .schemas
        .catalog
        .push(fds_worker::config::SchemaEntry {
            id: 98,
            path: missing_path,
        });
    config
        .schemas
        .catalog
        .push(fds_worker::config::SchemaEntry {
            id: 99,
            path: newer_path,
        });
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_poison_oversized_and_injected_records_are_dead_lettered_and_the_rest_is_exact() {
    use rdkafka::producer::FutureRecord;
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let stack = start_stack_with(ClusterOptions::default()).await;
    let mut config = test_config(&stack);
    let poison = poison_records(dir.path(), &mut config);
    let traffic = traffic(&config, TRANSACTIONS, 19, Duration::from_secs(10));
    let publishing = publish_in_background(&stack, &config, &traffic, RATE);
    let producer = stack.producer().unwrap();
    for (topic, payload, _) in &poison {
        producer
            .send(
                FutureRecord::<str, [u8]>::to(topic)
                    .key("poison")
                    .payload(payload),
                Duration::from_secs(10),
            )
            .await
            .expect("poison published");
    }
    // A record without a value.
    producer
        .send(
            FutureRecord::<str, [u8]>::to(&config.kafka.transactions_topic).key("empty"),
            Duration::from_secs(10),
        )
        .await
        .expect("empty record published");
    let worker = start_worker(&config);
    publishing.await.unwrap();
    let records = traffic.events.len() as u64 + poison.len() as u64 + 1;
    worker
        .wait_finished(&config, records, Duration::from_secs(120))
        .await;
    let progress = worker.stop().await;
    assert_eq!(
        progress.dead_lettered,
        poison.len() as u64 + 1,
        "{progress:?}"
    );

    let mut kinds: Vec<String> = Vec::new();
    for topic in [
        &config.kafka.transactions_topic,
        &config.kafka.verdict_topics[0],
    ] {
        for letter in read_all(&stack, &config.kafka.dlq_topic(topic)) {
            assert!(
                letter
                    .header(header::MESSAGE)
                    .is_some_and(|m| !m.is_empty()),
                "a clear reason"
            );
            assert_eq!(letter.header(header::TOPIC), Some(topic.as_str()));
            kinds.push(letter.header(header::KIND).unwrap().to_owned());
        }
    }
    kinds.sort();
    let mut expected: Vec<String> = poison.iter().map(|(_, _, k)| (*k).to_owned()).collect();
    expected.push("empty".into());
    expected.sort();
    assert_eq!(kinds, expected);
    let enriched = enrichment_counts(&stack, &config);
    assert_eq!(
        enriched.len(),
        traffic.truth.transactions,
        "valid traffic is untouched"
    );
    let report = verification(&stack, &traffic).await;
    println!(
        "[poison] events {} + poison {} enriched {} dead-lettered {} lost {} double-counted {}",
        traffic.events.len(),
        poison.len() + 1,
        enriched.len(),
        progress.dead_lettered,
        report.lost_increments(),
        report.doubled_increments()
    );
    assert!(report.is_exact());
}

/// The `maxmemory` of every master, set to `value` (`"1"`: full at once; `"0"`: no limit).
fn set_maxmemory(stack: &LocalStack, masters: &[usize], value: &str) {
    for &node in masters {
        let _: () = stack
            .cluster
            .query(
                node,
                redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(value),
            )
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_a_master_out_of_memory_under_noeviction_backs_off_for_the_budget_then_dead_letters() {
    let _serial = SERIAL.lock().await;
    // Redis's default policy, noeviction: a full node answers every write `OOM`.
    let mut s = Scenario::start("master OOM", ClusterOptions::default(), |_| {}, 20).await;
    s.wait_finished(800).await;
    let (master, _) = a_shard(&s.stack);
    let budget = s.config.redis.retry.budget;
    set_maxmemory(&s.stack, &[master], "1");
    let full_since = std::time::Instant::now();
    // Backpressure, not a flood: the full node's units are retried for the budget first.
    common::wait_until_async(
        "the full master's events dead-lettered",
        WAIT,
        Duration::from_millis(50),
        || async {
            match s.worker().progress(&s.config).dead_lettered {
                0 => Err("none yet".to_owned()),
                _ => Ok(()),
            }
        },
    )
    .await;
    let first_letter_after = full_since.elapsed();
    // A unit's budget starts at its first failed attempt, after the fill; the batch may have
    // been read up to a linger before it (slack: 1 s).
    assert!(
        first_letter_after + Duration::from_secs(1) >= budget,
        "the first dead letter {first_letter_after:?} after the node filled, within the \
         retry budget {budget:?}"
    );
    // Full for 2 s more, then memory is added back; the rest of the traffic is applied.
    tokio::time::sleep(Duration::from_secs(2)).await;
    set_maxmemory(&s.stack, &[master], "0");
    let (progress, stall) = s.finish().await;
    assert!(progress.enriched > 0, "the other masters' events enriched");
    let dlq = s.config.kafka.dlq_topic(&s.config.kafka.transactions_topic);
    let master_port = s.stack.cluster.port(master).unwrap();
    for letter in read_all(&s.stack, &dlq) {
        assert_eq!(
            letter.header(header::KIND),
            Some("oom"),
            "dead-lettered as oom"
        );
        assert_eq!(
            letter.header(header::NODE),
            Some(format!("127.0.0.1:{master_port}").as_str()),
            "only the full master's slots"
        );
    }
    println!(
        "[master OOM] first dead letter {:.1}s after the node filled (budget {budget:?})",
        first_letter_after.as_secs_f64()
    );
    s.ledger(progress, stall, false).await;
    redrive_to_ground_truth(&s, "master OOM").await;
}

/// Keys a node evicted, collected from its keyspace notifications (`__keyevent@0__:evicted`,
/// with `notify-keyspace-events Ee`) on a thread per node until dropped.
struct EvictionLog {
    keys: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl EvictionLog {
    fn start(stack: &LocalStack, nodes: &[usize]) -> EvictionLog {
        use std::sync::atomic::Ordering;
        let keys = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut threads = Vec::new();
        for &node in nodes {
            let mut connection = stack.cluster.connection(node).unwrap();
            let (keys, stop) = (keys.clone(), stop.clone());
            let (subscribed, ready) = std::sync::mpsc::channel();
            threads.push(std::thread::spawn(move || {
                let mut pubsub = connection.as_pubsub();
                pubsub.subscribe("__keyevent@0__:evicted").unwrap();
                pubsub
                    .set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                subscribed.send(()).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    match pubsub.get_message() {
                        Ok(message) => keys.lock().unwrap().push(message.get_payload().unwrap()),
                        Err(e) if e.is_timeout() => {}
                        Err(e) => panic!("eviction notifications: {e}"),
                    }
                }
            }));
            ready.recv().unwrap();
        }
        EvictionLog {
            keys,
            stop,
            threads,
        }
    }

    /// Stops listening; every evicted key.
    fn finish(self) -> std::collections::HashSet<String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
        let keys = self.keys.lock().unwrap();
        keys.iter().cloned().collect()
    }
}

/// What a key holds, by its prefix (README "Key schema"): `ao` apply-once marks, `ft` count and
/// sum tiles, `fd` distinct tiles, `bl` blacklist entries.
fn key_type(key: &str) -> &str {
    key.split_once(":{").map_or(key, |(prefix, _)| prefix)
}

/// The hash tag of a key (`{…}` included).
fn hash_tag(key: &str) -> &str {
    match (key.find('{'), key.find('}')) {
        (Some(open), Some(close)) if close > open => &key[open..=close],
        _ => key,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s11_memory_full_under_volatile_lru_evicts_tiles_and_marks_and_the_ledger_counts_the_damage()
 {
    let _serial = SERIAL.lock().await;
    let options = ClusterOptions {
        extra_config: vec![
            ("maxmemory-policy".into(), "volatile-lru".into()),
            ("notify-keyspace-events".into(), "Ee".into()),
        ],
        ..ClusterOptions::default()
    };
    let mut s = Scenario::start("volatile-lru at the limit", options, |_| {}, 21).await;
    s.wait_finished(800).await;
    let masters = s.stack.cluster.masters();
    let evictions = EvictionLog::start(&s.stack, &masters);
    // Each master's limit just above what it holds now: the rest of the traffic evicts.
    for &node in &masters {
        let info: String = s
            .stack
            .cluster
            .query(node, redis::cmd("INFO").arg("memory"))
            .unwrap();
        let used: u64 = info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("INFO used_memory");
        let limit = (used + 256 * 1024).to_string();
        set_maxmemory(&s.stack, &[node], &limit);
    }
    let (progress, stall) = s.finish().await;
    set_maxmemory(&s.stack, &masters, "0");
    let evicted = evictions.finish();
    let mut by_type = std::collections::BTreeMap::<&str, usize>::new();
    for key in &evicted {
        *by_type.entry(key_type(key)).or_default() += 1;
    }
    println!(
        "[volatile-lru] events {} enriched {} dead-lettered {} longest stall {:.1}s; evicted {} \
         keys, by type {by_type:?}",
        s.traffic.events.len(),
        progress.enriched,
        progress.dead_lettered,
        stall.as_secs_f64(),
        evicted.len()
    );
    assert!(!evicted.is_empty(), "the limit made the masters evict");
    // volatile-lru refuses too, once a master has nothing with a TTL left to evict (seen in a
    // CI rehearsal: memory that cannot be evicted — client buffers, the notifications this test
    // reads — grew past the limit). Such events are dead-lettered as `oom`, never applied in
    // part (a unit is atomic); their entities' counters are short by them.
    let mut refused_tags = std::collections::HashSet::new();
    for topic in [
        s.config.kafka.dlq_topic(&s.config.kafka.transactions_topic),
        s.config.kafka.dlq_topic(&s.config.kafka.verdict_topics[0]),
    ] {
        for letter in read_all(&s.stack, &topic) {
            assert_eq!(letter.header(header::KIND), Some("oom"), "refused as oom");
            let tags: Vec<String> = letter
                .header(header::FAILED_TAGS)
                .and_then(|t| serde_json::from_str(t).ok())
                .expect("the refused hash tags");
            refused_tags.extend(tags);
        }
    }

    // The operator sees it: `cluster status` names the evicting nodes.
    let env = s.stack.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut status = Process::spawn(&["cluster", "status"], &env);
    status.wait(WAIT);
    let output = status.output().join("\n");
    assert!(
        output.contains("keys evicted (maxmemory-policy volatile-lru)"),
        "cluster status warns of the evictions:\n{output}"
    );

    // The damage, as the ledger sees it: every lost increment is a tile (or entry) Redis
    // evicted — the worker itself lost nothing.
    let explained_by_eviction = |key: &str| {
        let hash = key.rsplit_once(' ').map_or(key, |(hash, _)| hash);
        evicted.contains(hash) || refused_tags.contains(hash_tag(hash))
    };
    let after_run = verification(&s.stack, &s.traffic).await;
    assert!(after_run.doubled.is_empty(), "nothing redelivered yet");
    for lost in &after_run.lost {
        assert!(
            explained_by_eviction(&lost.key),
            "lost, not evicted: {lost:?}"
        );
    }
    for problem in &after_run.blacklist_problems {
        let key = problem.split(": ").next().unwrap();
        assert!(
            explained_by_eviction(key),
            "blacklist {problem}, not evicted"
        );
    }

    // A redelivery of everything (a new consumer group reading the topics from the start, as
    // after a lost offset commit): an event whose entity lost its apply-once mark counts again.
    let mut again = s.config.clone();
    again.kafka.group_id = common::random_name("group");
    again.kafka.transactions.id = common::random_name(&format!("{}-worker", again.kafka.group_id));
    let worker = start_worker(&again);
    worker
        .wait_finished(&again, s.traffic.events.len() as u64, WAIT)
        .await;
    worker.stop().await;
    let after_redelivery = verification(&s.stack, &s.traffic).await;
    let evicted_marks: std::collections::HashSet<&str> = evicted
        .iter()
        .filter(|k| key_type(k) == "ao")
        .map(|k| hash_tag(k))
        .collect();
    for lost in &after_redelivery.lost {
        assert!(
            explained_by_eviction(&lost.key),
            "lost, not evicted: {lost:?}"
        );
    }
    for doubled in &after_redelivery.doubled {
        assert!(
            evicted_marks.contains(hash_tag(&doubled.key)),
            "counted twice although its apply-once mark was kept: {doubled:?}"
        );
    }
    println!(
        "[volatile-lru] {} events refused as oom (nothing left to evict)",
        progress.dead_lettered
    );
    println!(
        "[volatile-lru] after the run: {} counters lost ({} increments), {} blacklist entries \
         wrong; after a full redelivery: {} lost ({} increments), {} counted twice ({} \
         increments), of {} counters",
        after_run.lost.len(),
        after_run.lost_increments(),
        after_run.blacklist_problems.len(),
        after_redelivery.lost.len(),
        after_redelivery.lost_increments(),
        after_redelivery.doubled.len(),
        after_redelivery.doubled_increments(),
        after_redelivery.counters
    );
}
