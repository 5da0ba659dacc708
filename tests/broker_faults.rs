//! Broker faults on a 3-node Apache Kafka cluster (replication factor 3, `min.insync.replicas`
//! 2), under load: the broker leading most source partitions and the group's coordinator
//! killed with SIGKILL, a broker frozen with SIGSTOP past the session timeout, a rolling
//! restart, every broker down for 10 s, and the leader of an enrichment partition killed while
//! the producer has records in flight, and the broker coordinating the worker's transactions
//! killed mid-commit. Each scenario has a Kafka cluster of its own and ends
//! with the ledger: every transaction enriched or dead-lettered, every counter and blacklist
//! entry equal to the ground truth (0 lost, 0 double), and — exactly-once delivery, the
//! default — exactly one committed enrichment record per transaction.
//!
//! Scenarios run one at a time; each prints its figures.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::scenario::Scenario;
use common::worker::{assert_enriched, enrichment_counts, start_stack_on};
use fds_testkit::demo::{KafkaSetup, LocalStack};
use fds_testkit::localstack::apache_kafka::{INTERNAL_TOPIC_PARTITIONS, internal_partition};
use fds_testkit::localstack::{ApacheKafka, ClusterOptions, KafkaOptions};
use fds_worker::config::Config;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());
const WAIT: Duration = Duration::from_secs(60);

/// A stack with a 3-broker Apache Kafka cluster of its own.
async fn own_stack() -> LocalStack {
    start_stack_on(
        ClusterOptions::default(),
        KafkaSetup::Apache(KafkaOptions::default()),
    )
    .await
}

fn apache(stack: &LocalStack) -> &ApacheKafka {
    stack.kafka.apache().expect("an Apache Kafka stack")
}

/// Leaders of the source topics' partitions, counted per broker.
fn source_leaders(stack: &LocalStack, config: &Config) -> HashMap<i32, usize> {
    let kafka = apache(stack);
    let mut counts = HashMap::new();
    for topic in config.kafka.source_topics() {
        for partition in 0..common::worker::PARTITIONS {
            if let Some(leader) = kafka.leader_of(topic, partition).unwrap() {
                *counts.entry(leader).or_default() += 1;
            }
        }
    }
    counts
}

/// Makes `__consumer_offsets` exist (an offset commit creates it), so its leaders are known.
fn ensure_offsets_topic(stack: &LocalStack, topic: &str) {
    let kafka = apache(stack);
    let consumer: BaseConsumer = kafka
        .client_config()
        .set("group.id", common::random_name("bootstrap"))
        .create()
        .unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(topic, 0, Offset::Offset(0))
        .unwrap();
    common::wait_for(
        "an offset commit (creates __consumer_offsets)",
        WAIT,
        || consumer.commit(&offsets, CommitMode::Sync).ok(),
    );
    common::wait_for("leaders of __consumer_offsets", WAIT, || {
        (0..INTERNAL_TOPIC_PARTITIONS)
            .all(|p| {
                kafka
                    .leader_of("__consumer_offsets", p)
                    .is_ok_and(|l| l.is_some())
            })
            .then_some(())
    });
}

/// A fresh group name whose coordinator is broker `broker`.
fn group_coordinated_by(stack: &LocalStack, broker: i32) -> String {
    let kafka = apache(stack);
    loop {
        let name = common::random_name("group");
        let partition = internal_partition(&name, INTERNAL_TOPIC_PARTITIONS);
        if kafka.leader_of("__consumer_offsets", partition).unwrap() == Some(broker) {
            return name;
        }
    }
}

/// Starts a scenario on a stack of its own whose group is coordinated by the broker that leads
/// the most source partitions; returns the scenario and that broker.
async fn scenario_on_busiest_broker(name: &'static str, seed: u64) -> (Scenario, i32) {
    let stack = own_stack().await;
    let probe = common::worker::test_config(&stack);
    let leaders = source_leaders(&stack, &probe);
    let (busiest, led) = leaders
        .iter()
        .max_by_key(|(id, n)| (**n, -**id))
        .map(|(id, n)| (*id, *n))
        .expect("leaders");
    ensure_offsets_topic(&stack, &probe.kafka.transactions_topic);
    let group = group_coordinated_by(&stack, busiest);
    println!(
        "[{name}] broker {busiest} leads {led} of 8 source partitions and coordinates {group}"
    );
    let s = Scenario::start_on(name, stack, |c| c.kafka.group_id = group, seed).await;
    (s, busiest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b1_the_busiest_broker_and_group_coordinator_killed_then_restarted() {
    let _serial = SERIAL.lock().await;
    let (mut s, victim) = scenario_on_busiest_broker("broker kill -9", 21).await;
    s.wait_finished(800).await;
    apache(&s.stack).kill(victim).unwrap();
    let stack = &s.stack;
    let config = s.config.clone();
    // Its leaderships move once the controller fences it (broker.session.timeout.ms = 3 s).
    tokio::task::block_in_place(|| {
        common::wait_for(
            "source leaderships to leave the killed broker",
            WAIT,
            || (!source_leaders(stack, &config).contains_key(&victim)).then_some(()),
        )
    });
    s.wait_finished(1_800).await;
    let kafka = apache(&s.stack);
    tokio::task::block_in_place(|| kafka.restart(victim)).unwrap();
    let (progress, stall) = s.finish().await;
    assert_eq!(
        progress.dead_lettered, 0,
        "a broker failure dead-letters nothing"
    );
    s.ledger(progress, stall, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b2_a_broker_paused_past_the_session_timeout_then_continued() {
    let _serial = SERIAL.lock().await;
    let (mut s, victim) = scenario_on_busiest_broker("broker SIGSTOP", 22).await;
    s.wait_finished(800).await;
    apache(&s.stack).pause(victim).unwrap();
    // Past the consumer's session timeout (10 s) and the broker's (3 s): the controller fences
    // it, its leaderships and the group's coordinator move; the group stays served.
    let paused = s.config.kafka.session_timeout + Duration::from_secs(2);
    tokio::time::sleep(paused).await;
    apache(&s.stack).resume(victim).unwrap();
    let kafka = apache(&s.stack);
    tokio::task::block_in_place(|| kafka.wait_healthy(WAIT)).unwrap();
    let (progress, stall) = s.finish().await;
    assert_eq!(progress.dead_lettered, 0);
    s.ledger(progress, stall, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b3_rolling_restart_of_every_broker_under_load() {
    let _serial = SERIAL.lock().await;
    let stack = own_stack().await;
    let mut s = Scenario::start_on("rolling restart", stack, |_| {}, 23).await;
    s.wait_finished(500).await;
    let kafka = apache(&s.stack);
    for broker in 1..=kafka.broker_count() {
        // As an operator would: a controlled shutdown (SIGTERM), the restart, then wait for
        // every replica to be back in sync before the next broker.
        tokio::task::block_in_place(|| {
            kafka.stop(broker)?;
            kafka.restart(broker)?;
            kafka.wait_healthy(WAIT)
        })
        .unwrap_or_else(|e| panic!("broker {broker}: {e}\n{}", kafka.all_log_tails(30)));
    }
    let (progress, stall) = s.finish().await;
    assert_eq!(progress.dead_lettered, 0);
    s.ledger(progress, stall, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b4_every_broker_down_for_ten_seconds_then_up() {
    let _serial = SERIAL.lock().await;
    let stack = own_stack().await;
    let mut s = Scenario::start_on("all brokers down 10 s", stack, |_| {}, 24).await;
    s.wait_finished(800).await;
    let kafka = apache(&s.stack);
    kafka.kill_all().unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    tokio::task::block_in_place(|| kafka.restart_stopped()).unwrap();
    let (progress, stall) = s.finish().await;
    assert_eq!(progress.dead_lettered, 0);
    s.ledger(progress, stall, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b5_enrichment_partition_leader_killed_with_records_in_flight_no_duplicate_no_gap() {
    let _serial = SERIAL.lock().await;
    let stack = own_stack().await;
    let mut s = Scenario::start_on("enrichment leader kill -9", stack, |_| {}, 25).await;
    // The victim leads an enrichment partition but does not coordinate the group: the fault is
    // the producer's (its in-flight batches to that leader), not the consumer group's.
    s.wait_finished(600).await;
    let kafka = apache(&s.stack);
    let coordinator = kafka.group_coordinator(&s.config.kafka.group_id).unwrap();
    let topic = s.config.kafka.enrichment_topic.clone();
    let victim = (0..common::worker::PARTITIONS)
        .filter_map(|p| kafka.leader_of(&topic, p).unwrap())
        .find(|leader| Some(*leader) != coordinator)
        .expect("an enrichment leader that is not the coordinator");
    let before = enrichment_counts(&s.stack, &s.config).len();
    kafka.kill(victim).unwrap();
    let started = Instant::now();
    s.wait_finished(2_000).await;
    tokio::task::block_in_place(|| kafka.restart(victim)).unwrap();
    let (progress, stall) = s.finish().await;
    println!(
        "[{}] killed broker {victim} with {before} enrichment records published; 2,000 records \
         finished {:.1}s after the kill",
        s.name,
        started.elapsed().as_secs_f64()
    );
    let counts = enrichment_counts(&s.stack, &s.config);
    // Idempotent producer: the retried batches were deduplicated by the broker.
    assert_enriched(&counts, &s.traffic, true);
    assert_eq!(progress.dead_lettered, 0);
    s.ledger(progress, stall, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b6_the_transaction_coordinator_killed_mid_stream_then_restarted_commits_each_record_once()
{
    let _serial = SERIAL.lock().await;
    let stack = own_stack().await;
    let mut s = Scenario::start_on("transaction coordinator kill -9", stack, |_| {}, 26).await;
    s.wait_finished(600).await;
    let kafka = apache(&s.stack);
    let id = s.config.kafka.transactions.id.clone();
    let victim = kafka
        .transaction_coordinator(&id)
        .unwrap()
        .expect("the worker's transactions have a coordinator");
    kafka.kill(victim).unwrap();
    let started = Instant::now();
    // The transaction state partition's leadership moves to a replica; the producer finds
    // the new coordinator and goes on (an open transaction is aborted and tried again).
    tokio::task::block_in_place(|| {
        common::wait_for("a new transaction coordinator", WAIT, || {
            kafka
                .transaction_coordinator(&id)
                .ok()
                .flatten()
                .filter(|c| *c != victim)
        })
    });
    s.wait_finished(2_000).await;
    let recovered = started.elapsed();
    tokio::task::block_in_place(|| kafka.restart(victim)).unwrap();
    let (progress, stall) = s.finish().await;
    println!(
        "[{}] killed broker {victim} (coordinator of `{id}`); 2,000 records finished {:.1}s \
         after the kill",
        s.name,
        recovered.as_secs_f64()
    );
    assert_eq!(progress.dead_lettered, 0);
    s.ledger(progress, stall, true).await;
}
