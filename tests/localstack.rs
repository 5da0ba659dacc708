//! The local stack really does what tests rely on: a 6-node Redis Cluster that fails over when
//! a master dies or hangs and takes restarted nodes back, and a mock Kafka that serves consumer
//! groups, commits and the idempotent producer to clients in this and other processes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{WAIT, poll_until, random_name, start_cluster, wait_for};
use fds_testkit::localstack::{MockKafka, RedisCluster, Role};
use fds_worker::slot::key_slot;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol,
};
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

// ---------------------------------------------------------------------------------------------
// Redis Cluster
// ---------------------------------------------------------------------------------------------

/// What these tests check is librdkafka's mock cluster itself (the demo's no-Java Kafka and
/// the tests' error injection): 3 brokers and the standard topics, `partitions` each.
fn start_kafka(partitions: i32) -> MockKafka {
    common::init_tracing();
    MockKafka::with_standard_topics(3, partitions).unwrap_or_else(|e| panic!("mock kafka: {e}"))
}

#[test]
fn cluster_starts_with_three_masters_three_replicas_and_every_slot_covered() {
    let started = Instant::now();
    let cluster = start_cluster();
    eprintln!("cluster started in {:?}", started.elapsed());
    assert_eq!(cluster.node_count(), 6);
    assert_eq!(cluster.seed_urls().len(), 6);

    let masters = cluster.masters();
    assert_eq!(masters.len(), 3, "masters: {masters:?}");
    let mut all: BTreeSet<usize> = masters.iter().copied().collect();
    for &master in &masters {
        let replicas = cluster.replicas_of(master);
        assert_eq!(replicas.len(), 1, "replicas of {master}: {replicas:?}");
        assert_eq!(cluster.role(replicas[0]), Some(Role::Replica));
        all.extend(replicas);
    }
    assert_eq!(all.len(), 6, "every node is a master or a replica");

    let topology = cluster.wait_for_state_ok(WAIT).unwrap();
    assert_eq!(topology.covered_slots(), 16384);
    for slot in 0..16384 {
        let owner = topology.master_for_slot(slot).and_then(|n| n.index);
        assert!(owner.is_some_and(|o| masters.contains(&o)), "slot {slot}");
    }
    for index in 0..6 {
        let info = cluster.cli(index, &["CLUSTER", "INFO"]).unwrap();
        assert!(info.contains("cluster_state:ok"), "node {index}: {info}");
        assert!(
            info.contains("cluster_slots_ok:16384"),
            "node {index}: {info}"
        );
        assert!(
            info.contains("cluster_known_nodes:6"),
            "node {index}: {info}"
        );
        let timeout: Vec<String> = cluster
            .query(
                index,
                redis::cmd("CONFIG").arg("GET").arg("cluster-node-timeout"),
            )
            .unwrap();
        assert_eq!(timeout[1], "2000");
        let aof: Vec<String> = cluster
            .query(index, redis::cmd("CONFIG").arg("GET").arg("appendonly"))
            .unwrap();
        assert_eq!(aof[1], "yes");
    }
    let nodes = cluster.cli(0, &["CLUSTER", "NODES"]).unwrap();
    for port in cluster.ports() {
        let bus = format!("127.0.0.1:{port}@{}", port + 10000);
        assert!(nodes.contains(&bus), "{bus} in\n{nodes}");
    }
}

#[test]
fn killing_a_master_promotes_its_replica_and_the_slot_takes_writes_again() {
    let cluster = start_cluster();
    let key = "kill-test";
    let slot = key_slot(key.as_bytes());
    let master = cluster.master_for_slot(slot).unwrap();
    let replica = cluster.replicas_of(master)[0];

    let killed = Instant::now();
    cluster.kill(master).unwrap();
    assert!(!cluster.is_running(master));
    let promoted = cluster.wait_for_failover_of(master, WAIT).unwrap();
    eprintln!("failover after kill -9 took {:?}", killed.elapsed());

    assert_eq!(promoted, replica);
    assert_eq!(cluster.role(replica), Some(Role::Master));
    assert_eq!(cluster.master_for_slot(slot), Some(replica));
    let reply: String = cluster
        .query(replica, redis::cmd("SET").arg(key).arg("after-failover"))
        .unwrap();
    assert_eq!(reply, "OK");
}

#[test]
fn pausing_a_master_past_the_node_timeout_fails_it_over_and_resuming_demotes_it() {
    let cluster = start_cluster();
    let master = cluster.master_for_slot(8000).unwrap();
    let replica = cluster.replicas_of(master)[0];

    let paused = Instant::now();
    cluster.pause(master).unwrap();
    assert!(cluster.is_paused(master) && cluster.is_running(master));
    let promoted = cluster.wait_for_failover_of(master, WAIT).unwrap();
    eprintln!("failover after SIGSTOP took {:?}", paused.elapsed());
    assert_eq!(promoted, replica);

    cluster.resume(master).unwrap();
    assert!(!cluster.is_paused(master));
    cluster.wait_for_state_ok(WAIT).unwrap();
    assert_eq!(cluster.role(master), Some(Role::Replica));
    assert_eq!(cluster.replicas_of(replica), [master]);
    let role = cluster.cli(master, &["ROLE"]).unwrap();
    assert!(role.starts_with("slave"), "ROLE of the old master: {role}");
}

#[test]
fn a_killed_master_restarted_from_its_directory_rejoins_as_a_replica_with_its_data() {
    let cluster = start_cluster();
    let key = "restart-test";
    let master = cluster.master_for_slot(key_slot(key.as_bytes())).unwrap();
    let id: String = cluster
        .query(master, redis::cmd("CLUSTER").arg("MYID"))
        .unwrap();
    let mut con = cluster.connection(master).unwrap();
    let () = redis::cmd("SET")
        .arg(key)
        .arg("kept")
        .query(&mut con)
        .unwrap();
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut con).unwrap();
    assert_eq!(acked, 1, "the replica has the key before the kill");

    cluster.kill(master).unwrap();
    let promoted = cluster.wait_for_failover_of(master, WAIT).unwrap();
    cluster.restart(master).unwrap();
    assert!(cluster.is_running(master));
    cluster.wait_for_state_ok(WAIT).unwrap();

    let same_id: String = cluster
        .query(master, redis::cmd("CLUSTER").arg("MYID"))
        .unwrap();
    assert_eq!(same_id, id, "it rejoined as itself, from nodes.conf");
    assert_eq!(cluster.role(master), Some(Role::Replica));
    assert_eq!(cluster.replicas_of(promoted), [master]);
    let value: String = cluster.query(promoted, redis::cmd("GET").arg(key)).unwrap();
    assert_eq!(value, "kept");
    let mut replica = cluster.connection(master).unwrap();
    let () = redis::cmd("READONLY").query(&mut replica).unwrap();
    let value: String = redis::cmd("GET").arg(key).query(&mut replica).unwrap();
    assert_eq!(
        value, "kept",
        "the restarted node resynced from its new master"
    );
}

#[test]
fn clusters_started_at_the_same_time_get_distinct_ports() {
    let starts: Vec<_> = (0..2).map(|_| std::thread::spawn(start_cluster)).collect();
    let clusters: Vec<RedisCluster> = starts.into_iter().map(|t| t.join().unwrap()).collect();
    let mut ports = BTreeSet::new();
    for cluster in &clusters {
        for &port in cluster.ports() {
            assert!(ports.insert(port), "port {port} used twice");
            assert!(
                ports.insert(port + 10000),
                "bus port {} used twice",
                port + 10000
            );
        }
    }
}

#[test]
fn dropping_the_cluster_kills_every_node_even_while_panicking() {
    let seen: Arc<Mutex<(Vec<u32>, std::path::PathBuf)>> = Arc::default();
    let recorder = Arc::clone(&seen);
    let result = std::panic::catch_unwind(move || {
        let cluster = start_cluster();
        cluster.pause(0).unwrap();
        let pids = (0..6).map(|i| cluster.pid(i).unwrap().unwrap()).collect();
        *recorder.lock().unwrap() = (pids, cluster.root_dir().to_owned());
        panic!("a failing test");
    });
    assert!(result.is_err());
    let (pids, root) = seen.lock().unwrap().clone();
    assert_eq!(pids.len(), 6);
    for pid in pids {
        assert!(!process_exists(pid), "redis-server {pid} survived");
    }
    assert!(!root.exists(), "{} was not removed", root.display());
}

#[test]
fn nodes_die_with_a_process_that_is_killed_without_unwinding() {
    let mut child = self_as_child("child_starts_a_cluster_and_waits_to_be_killed")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let line = stdout
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("CLUSTER "))
        .expect("the child reports its cluster");
    let mut words = line.split_whitespace().skip(1);
    let root = std::path::PathBuf::from(words.next().unwrap());
    let pids: Vec<u32> = words.map(|p| p.parse().unwrap()).collect();
    assert_eq!(pids.len(), 6);

    child.kill().unwrap(); // SIGKILL: no unwinding, no Drop
    child.wait().unwrap();
    let gone = poll_until(Duration::from_secs(10), || {
        let alive: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|&p| process_exists(p))
            .collect();
        if alive.is_empty() { Ok(()) } else { Err(alive) }
    });
    let _ = std::fs::remove_dir_all(&root);
    if let Err(alive) = gone {
        panic!("redis-server processes outlived their parent: {alive:?} of {pids:?}");
    }
}

#[test]
#[ignore = "run as a child process by nodes_die_with_a_process_that_is_killed_without_unwinding"]
fn child_starts_a_cluster_and_waits_to_be_killed() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let cluster = start_cluster();
    let pids: Vec<String> = (0..6)
        .map(|i| cluster.pid(i).unwrap().unwrap().to_string())
        .collect();
    println!(
        "CLUSTER {} {}",
        cluster.root_dir().display(),
        pids.join(" ")
    );
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_missing_redis_server_is_an_error_that_says_how_to_install_it() {
    let output = self_as_child("child_starts_a_cluster_without_redis_on_path")
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
#[ignore = "run as a child process by a_missing_redis_server_is_an_error_that_says_how_to_install_it"]
fn child_starts_a_cluster_without_redis_on_path() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let error = RedisCluster::start_default().unwrap_err().to_string();
    assert!(
        error.contains("apt-get install -y redis-server"),
        "error: {error}"
    );
}

// ---------------------------------------------------------------------------------------------
// Mock Kafka
// ---------------------------------------------------------------------------------------------

#[test]
fn mock_kafka_resumes_a_group_from_its_committed_offsets() {
    let kafka = start_kafka(3);
    let topic = random_name("resume");
    let group = random_name("resume-group");
    kafka.create_topic(&topic, 3).unwrap();
    let producer = idempotent_producer(&kafka);
    produce(&producer, &topic, 3, 10);

    let first = group_consumer(&kafka, &group);
    first.subscribe(&[&topic]).unwrap();
    let records = consume(&first, 30);
    assert_eq!(offsets_by_partition(&records), expected_offsets(3, 0..10));
    // Done with offsets 0..=4 of every partition: commit 5, "the next one to read".
    for partition in 0..3 {
        first.store_offset(&topic, partition, 4).unwrap();
    }
    first.commit_consumer_state(CommitMode::Sync).unwrap();
    let committed = first.committed(Duration::from_secs(10)).unwrap();
    for partition in 0..3 {
        let offset = committed
            .find_partition(&topic, partition)
            .unwrap()
            .offset();
        assert_eq!(offset, Offset::Offset(5), "partition {partition}");
    }
    // Leave the group (serving the revoke). Dropping a `BaseConsumer` waits for librdkafka's
    // consumer close, which the mock cluster does not complete after a synchronous commit, so
    // the closed consumer is leaked instead of dropped (the process ends soon anyway).
    first.unsubscribe();
    for _ in 0..5 {
        let _ = first.poll(Duration::from_millis(100));
    }
    std::mem::forget(first);

    let second = group_consumer(&kafka, &group);
    second.subscribe(&[&topic]).unwrap();
    let records = consume(&second, 15);
    assert_eq!(offsets_by_partition(&records), expected_offsets(3, 5..10));
    assert!(
        second.poll(Duration::from_millis(500)).is_none(),
        "nothing more"
    );
}

#[test]
fn mock_kafka_rebalances_cooperatively_between_group_members() {
    let kafka = start_kafka(1);
    let topic = random_name("coop");
    let group = random_name("coop-group");
    kafka.create_topic(&topic, 4).unwrap();

    let first = recording_consumer(&kafka, &group);
    first.subscribe(&[&topic]).unwrap();
    wait_for("the first member to own 4 partitions", WAIT, || {
        first.poll(Duration::from_millis(50));
        (assigned(&first).len() == 4).then_some(())
    });
    assert!(matches!(
        first.rebalance_protocol(),
        RebalanceProtocol::Cooperative
    ));

    let second = recording_consumer(&kafka, &group);
    second.subscribe(&[&topic]).unwrap();
    wait_for("the partitions to be split 2/2", WAIT, || {
        first.poll(Duration::from_millis(50));
        second.poll(Duration::from_millis(50));
        let (a, b) = (assigned(&first), assigned(&second));
        (a.len() == 2 && b.len() == 2 && a.is_disjoint(&b)).then_some(())
    });
    // Cooperative: the first member gave up only what moved, never its whole assignment.
    let revoked = first.context().revoked.lock().unwrap().clone();
    assert_eq!(revoked, [2], "revocations of the first member");

    drop(second);
    wait_for("the first member to get all 4 back", WAIT, || {
        first.poll(Duration::from_millis(50));
        (assigned(&first).len() == 4).then_some(())
    });
}

#[test]
fn mock_kafka_idempotent_producer_retries_injected_errors_without_duplicates() {
    let kafka = start_kafka(1);
    let topic = random_name("idempotent");
    kafka.create_topic(&topic, 1).unwrap();
    let producer = idempotent_producer(&kafka);
    kafka
        .push_request_errors(
            RDKafkaApiKey::Produce,
            &[
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT,
            ],
        )
        .unwrap();
    produce(&producer, &topic, 1, 50);

    let consumer = group_consumer(&kafka, &random_name("idempotent-group"));
    consumer.subscribe(&[&topic]).unwrap();
    let records = consume(&consumer, 50);
    let payloads: BTreeSet<&[u8]> = records.iter().map(|r| r.payload.as_slice()).collect();
    assert_eq!(payloads.len(), 50, "each message exactly once");
    assert!(
        consumer.poll(Duration::from_millis(500)).is_none(),
        "no duplicates"
    );
}

#[test]
fn mock_kafka_delivers_after_all_brokers_come_back() {
    let kafka = start_kafka(1);
    let topic = random_name("down");
    kafka.create_topic(&topic, 2).unwrap();
    let producer = idempotent_producer(&kafka);
    produce(&producer, &topic, 2, 1); // connected and warmed up

    kafka.all_brokers_down().unwrap();
    for i in 0..10 {
        let payload = format!("while-down-{i}");
        producer
            .send(
                BaseRecord::to(&topic)
                    .partition(i % 2)
                    .key("k")
                    .payload(&payload),
            )
            .unwrap();
    }
    assert!(
        producer.flush(Duration::from_secs(2)).is_err(),
        "nothing can be delivered"
    );
    kafka.all_brokers_up().unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();

    let consumer = group_consumer(&kafka, &random_name("down-group"));
    consumer.subscribe(&[&topic]).unwrap();
    let records = consume(&consumer, 12);
    assert_eq!(records.len(), 12);
}

#[test]
fn mock_kafka_serves_a_client_in_a_child_process() {
    let kafka = start_kafka(1);
    let topic = random_name("child");
    let group = random_name("child-group");
    kafka.create_topic(&topic, 2).unwrap();
    let output = self_as_child("child_produces_consumes_and_commits")
        .env("FDS_CHILD_BOOTSTRAP", kafka.bootstrap_servers())
        .env("FDS_CHILD_TOPIC", &topic)
        .env("FDS_CHILD_GROUP", &group)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "child failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // What the child produced and committed is visible here.
    let consumer = group_consumer(&kafka, &group);
    let mut partitions = TopicPartitionList::new();
    partitions.add_partition(&topic, 0);
    partitions.add_partition(&topic, 1);
    let committed = consumer
        .committed_offsets(partitions, Duration::from_secs(10))
        .unwrap();
    for partition in 0..2 {
        let offset = committed
            .find_partition(&topic, partition)
            .unwrap()
            .offset();
        assert_eq!(offset, Offset::Offset(5), "partition {partition}");
    }
}

#[test]
#[ignore = "run as a child process by mock_kafka_serves_a_client_in_a_child_process"]
fn child_produces_consumes_and_commits() {
    let (Ok(bootstrap), Ok(topic), Ok(group)) = (
        std::env::var("FDS_CHILD_BOOTSTRAP"),
        std::env::var("FDS_CHILD_TOPIC"),
        std::env::var("FDS_CHILD_GROUP"),
    ) else {
        return;
    };
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", &bootstrap);
    let producer: BaseProducer = idempotent_config(config.clone()).create().unwrap();
    produce(&producer, &topic, 2, 5);
    let consumer: BaseConsumer = group_config(config, &group).create().unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let records = consume(&consumer, 10);
    for record in &records {
        consumer
            .store_offset(&topic, record.partition, record.offset)
            .unwrap();
    }
    consumer.commit_consumer_state(CommitMode::Sync).unwrap();
}

#[test]
fn mock_kafka_offsets_for_times_ignores_the_timestamp() {
    let kafka = start_kafka(1);
    let topic = random_name("times");
    kafka.create_topic(&topic, 1).unwrap();
    let producer = idempotent_producer(&kafka);
    for i in 0..10i64 {
        let payload = i.to_string();
        producer
            .send(
                BaseRecord::to(&topic)
                    .partition(0)
                    .key("k")
                    .payload(&payload)
                    .timestamp(1_000_000 + i * 1_000),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let consumer = group_consumer(&kafka, &random_name("times-group"));
    consumer.subscribe(&[&topic]).unwrap();
    let records = consume(&consumer, 10);
    assert_eq!(
        records[3].timestamp,
        Timestamp::CreateTime(1_003_000),
        "timestamps are stored"
    );
    let mut query = TopicPartitionList::new();
    query
        .add_partition_offset(&topic, 0, Offset::Offset(1_003_500))
        .unwrap();
    let answer = consumer
        .offsets_for_times(query, Duration::from_secs(10))
        .unwrap();
    let offset = answer.find_partition(&topic, 0).unwrap().offset();
    eprintln!("offsets_for_times(1_003_500) on the mock: {offset:?} (Kafka answers 4)");
    assert_ne!(
        offset,
        Offset::Offset(4),
        "the mock learned offsets_for_times: update the module docs of localstack::kafka"
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const CHILD_ENV: &str = "FDS_LOCALSTACK_CHILD";

/// This test binary, running only the ignored test `name`.
fn self_as_child(name: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        name,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, "1")
    .stdin(Stdio::null());
    cmd
}

fn process_exists(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie would still have one, so this also checks
    // that the harness waited for its children.
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn idempotent_config(mut config: rdkafka::ClientConfig) -> rdkafka::ClientConfig {
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    config
}

fn idempotent_producer(kafka: &MockKafka) -> BaseProducer {
    idempotent_config(kafka.client_config()).create().unwrap()
}

fn group_config(mut config: rdkafka::ClientConfig, group: &str) -> rdkafka::ClientConfig {
    config
        .set("group.id", group)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000");
    config
}

fn group_consumer(kafka: &MockKafka, group: &str) -> BaseConsumer {
    group_config(kafka.client_config(), group).create().unwrap()
}

/// Sends `per_partition` messages to each of `partitions` partitions and waits for delivery.
fn produce(producer: &BaseProducer, topic: &str, partitions: i32, per_partition: usize) {
    for partition in 0..partitions {
        for i in 0..per_partition {
            let payload = format!("p{partition}-m{i}");
            producer
                .send(
                    BaseRecord::to(topic)
                        .partition(partition)
                        .key("k")
                        .payload(&payload),
                )
                .unwrap();
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

#[derive(Debug)]
struct Record {
    partition: i32,
    offset: i64,
    payload: Vec<u8>,
    timestamp: Timestamp,
}

/// Polls until `count` records arrived (panics after [`WAIT`]).
fn consume<C: ConsumerContext>(consumer: &BaseConsumer<C>, count: usize) -> Vec<Record> {
    let mut records = Vec::new();
    let deadline = Instant::now() + WAIT;
    while records.len() < count {
        assert!(
            Instant::now() < deadline,
            "got {} of {count} records",
            records.len()
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => records.push(Record {
                partition: message.partition(),
                offset: message.offset(),
                payload: message.payload().unwrap_or_default().to_vec(),
                timestamp: message.timestamp(),
            }),
            Some(Err(e)) => eprintln!("consumer error (retrying): {e}"),
            None => {}
        }
    }
    records
}

fn offsets_by_partition(records: &[Record]) -> BTreeMap<i32, Vec<i64>> {
    let mut map: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for record in records {
        map.entry(record.partition).or_default().push(record.offset);
    }
    map
}

fn expected_offsets(partitions: i32, offsets: std::ops::Range<i64>) -> BTreeMap<i32, Vec<i64>> {
    (0..partitions)
        .map(|p| (p, offsets.clone().collect()))
        .collect()
}

/// Records how many partitions each revocation took away.
#[derive(Default)]
struct Recorder {
    revoked: Mutex<Vec<usize>>,
}

impl ClientContext for Recorder {}

impl ConsumerContext for Recorder {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            self.revoked.lock().unwrap().push(partitions.count());
        }
    }
}

fn recording_consumer(kafka: &MockKafka, group: &str) -> BaseConsumer<Recorder> {
    group_config(kafka.client_config(), group)
        .create_with_context(Recorder::default())
        .unwrap()
}

fn assigned<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> BTreeSet<i32> {
    consumer
        .assignment()
        .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}
