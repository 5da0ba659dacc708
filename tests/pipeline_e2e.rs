//! End to end on a real 6-node Redis Cluster and the Kafka mock cluster: generated traffic →
//! worker → every transaction enriched exactly once, every counter equal to ground truth,
//! blacklist entries with their tier's expiry; also across a worker crash and a rebalance.

mod common;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fds_worker::codec::Codec;
use fds_worker::config::Config;
use fds_worker::demo::{LocalStack, Progress, wait_until_finished};
use fds_worker::generate::{Traffic, TrafficSettings, generate, produce, verify};
use fds_worker::metrics::Metrics;
use fds_worker::pipeline::{RunSummary, plan_settings, run};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const PARTITIONS: i32 = 4;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn start_stack() -> LocalStack {
    common::init_tracing();
    tokio::task::spawn_blocking(|| {
        LocalStack::start(common::test_cluster_options(), PARTITIONS).expect("local stack")
    })
    .await
    .unwrap()
}

fn test_config(stack: &LocalStack) -> Config {
    let mut config = stack.config(Config::default(), &common::random_name("group"));
    config.pipeline.batch_size = 200;
    config.pipeline.batch_linger = Duration::from_millis(5);
    config.redis.retry.budget = Duration::from_secs(6);
    config
}

fn traffic(config: &Config, transactions: usize, seed: u64) -> Traffic {
    let settings = TrafficSettings {
        seed,
        transactions,
        users: transactions / 10,
        burst_probability: 0.02,
        verdict_ratio: 0.05,
        start_ms: now_ms() - 20_000,
        span_ms: 20_000,
    };
    generate(&settings, &plan_settings(config, ""))
}

async fn publish(stack: &LocalStack, config: &Config, traffic: &Traffic) {
    publish_at(stack, config, traffic, None).await;
}

async fn publish_at(
    stack: &LocalStack,
    config: &Config,
    traffic: &Traffic,
    rate: Option<std::num::NonZeroU32>,
) {
    let producer = stack.producer().unwrap();
    produce(
        &producer,
        &Codec::builtin(),
        &traffic.events,
        &config.kafka.transactions_topic,
        &config.kafka.verdict_topics[0],
        rate,
    )
    .await
    .expect("traffic published");
}

struct Worker {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<RunSummary>,
    metrics: Metrics,
}

fn start_worker(config: &Config) -> Worker {
    let (stop, stopped) = oneshot::channel::<()>();
    let metrics = Metrics::unregistered();
    let config = config.clone();
    let run_metrics = metrics.clone();
    let handle = tokio::spawn(async move {
        run(&config, run_metrics, async {
            let _ = stopped.await;
        })
        .await
        .expect("worker runs")
    });
    Worker {
        stop,
        handle,
        metrics,
    }
}

impl Worker {
    async fn stop(self) -> RunSummary {
        let _ = self.stop.send(());
        self.handle.await.unwrap()
    }
}

/// Every record of `topic`, read from the start to the current end of every partition.
fn read_all(stack: &LocalStack, topic: &str) -> Vec<Vec<u8>> {
    let consumer: BaseConsumer = stack
        .kafka
        .client_config()
        .set("group.id", common::random_name("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for partition in 0..PARTITIONS {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .unwrap();
        ends.insert(partition, high);
        list.add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut done: HashMap<i32, bool> = ends.iter().map(|(p, h)| (*p, *h == 0)).collect();
    while done.values().any(|d| !d) && std::time::Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.unwrap();
            records.push(message.payload().unwrap_or_default().to_vec());
            if message.offset() + 1 >= ends[&message.partition()] {
                done.insert(message.partition(), true);
            }
        }
    }
    assert!(done.values().all(|d| *d), "read {topic} to its end");
    records
}

/// `cmdstat_fcall` calls summed over every master.
fn fcall_count(stack: &LocalStack) -> u64 {
    let cluster = &stack.cluster;
    cluster
        .masters()
        .into_iter()
        .map(|node| {
            let info: String = cluster
                .query(node, redis::cmd("INFO").arg("commandstats"))
                .unwrap();
            info.lines()
                .find_map(|l| l.strip_prefix("cmdstat_fcall:calls="))
                .and_then(|rest| rest.split(',').next())
                .map_or(0, |n| n.parse::<u64>().unwrap())
        })
        .sum()
}

/// Enrichment records per event id.
fn enrichment_counts(stack: &LocalStack, config: &Config) -> HashMap<String, usize> {
    let codec = Codec::builtin();
    let mut counts = HashMap::new();
    for payload in read_all(stack, &config.kafka.enrichment_topic) {
        let enrichment = codec.decode_enrichment(&payload).expect("valid enrichment");
        *counts.entry(enrichment.event_id).or_default() += 1;
    }
    counts
}

async fn wait_finished(worker_metrics: &[&Metrics], config: &Config, records: u64) -> Progress {
    let started = std::time::Instant::now();
    loop {
        let mut total = Progress::default();
        for metrics in worker_metrics {
            let p = Progress::read(metrics, config);
            total.enriched += p.enriched;
            total.verdicts += p.verdicts;
            total.dead_lettered += p.dead_lettered;
        }
        if total.finished(records) || started.elapsed() > Duration::from_secs(120) {
            return total;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn assert_ground_truth(stack: &LocalStack, traffic: &Traffic) {
    let client = redis::cluster::ClusterClient::new(stack.cluster.seed_urls()).unwrap();
    let connection = client.get_async_connection().await.unwrap();
    let report = verify(&connection, &traffic.truth).await.unwrap();
    assert_eq!(report.counters, traffic.truth.counters.len());
    assert!(
        report.lost.is_empty(),
        "lost increments: {:?}",
        &report.lost[..report.lost.len().min(5)]
    );
    assert!(
        report.doubled.is_empty(),
        "double counted: {:?}",
        &report.doubled[..report.doubled.len().min(5)]
    );
    assert!(report.blacklist > 0, "some verdict entries are checked");
    assert!(
        report.blacklist_problems.is_empty(),
        "{:?}",
        report.blacklist_problems
    );
}

fn assert_enriched_once(counts: &HashMap<String, usize>, traffic: &Traffic, exactly: bool) {
    assert_eq!(
        counts.len(),
        traffic.truth.transactions,
        "every transaction enriched"
    );
    if exactly {
        let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
        assert!(repeated.is_empty(), "enriched more than once: {repeated:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transaction_is_enriched_once_and_counters_equal_ground_truth() {
    let stack = start_stack().await;
    let config = test_config(&stack);
    let traffic = traffic(&config, 3_000, 1);
    publish(&stack, &config, &traffic).await;
    let records = traffic.events.len() as u64;

    let fcalls_before = fcall_count(&stack);
    let worker = start_worker(&config);
    let (progress, finished) = wait_until_finished(
        &worker.metrics,
        &config,
        records,
        Duration::from_secs(120),
        Duration::from_millis(100),
        |_, _| {},
    )
    .await;
    assert!(finished, "worker finished every record: {progress:?}");
    let summary = worker.stop().await;
    assert_eq!(progress.dead_lettered, 0);
    assert!(progress.breaches > 0, "bursts breach the velocity rule");
    // Units are one per distinct slot per batch (the planner's count), and Redis saw exactly
    // that many FCALLs: nothing per event, no hidden retries.
    assert_eq!(fcall_count(&stack) - fcalls_before, summary.units);

    assert_enriched_once(&enrichment_counts(&stack, &config), &traffic, true);
    assert_ground_truth(&stack, &traffic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_stream_and_restarted_loses_and_doubles_nothing() {
    let stack = start_stack().await;
    let config = test_config(&stack);
    let traffic = traffic(&config, 4_000, 2);
    publish(&stack, &config, &traffic).await;
    let records = traffic.events.len() as u64;

    // The first worker is aborted mid-stream: its in-flight batches are dropped, and what it
    // stored but had not committed is lost, so the restart redelivers part of the stream.
    let first = start_worker(&config);
    while Progress::read(&first.metrics, &config).enriched < 1_000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.handle.abort();
    let _ = first.handle.await;

    let second = start_worker(&config);
    wait_finished(&[&second.metrics], &config, 1).await;
    // The restarted worker finishes the stream: wait until every transaction is enriched.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let counts = enrichment_counts(&stack, &config);
        if counts.len() >= traffic.truth.transactions || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let summary = second.stop().await;
    assert!(summary.consumed > 0 && summary.consumed < records * 2);
    // Redelivered transactions may be enriched twice (at-least-once output), never zero times.
    assert_enriched_once(&enrichment_counts(&stack, &config), &traffic, false);
    assert_ground_truth(&stack, &traffic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_sharing_partitions_through_a_rebalance_count_exactly() {
    let stack = start_stack().await;
    let config = test_config(&stack);
    let traffic = traffic(&config, 4_000, 3);
    let half = traffic.events.len() / 2;
    let first_half = Traffic {
        events: traffic.events[..half].to_vec(),
        truth: traffic.truth.clone(),
    };
    publish(&stack, &config, &first_half).await;

    let first = start_worker(&config);
    while Progress::read(&first.metrics, &config).enriched < 500 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A second worker joins while the second half is flowing: the group rebalances
    // (cooperative-sticky) mid-stream.
    let second = start_worker(&config);
    let second_half = Traffic {
        events: traffic.events[half..].to_vec(),
        truth: traffic.truth.clone(),
    };
    let publishing = {
        let config = config.clone();
        let producer = stack.producer().unwrap();
        tokio::spawn(async move {
            produce(
                &producer,
                &Codec::builtin(),
                &second_half.events,
                &config.kafka.transactions_topic,
                &config.kafka.verdict_topics[0],
                std::num::NonZeroU32::new(150),
            )
            .await
            .expect("second half published");
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while second.metrics.assigned_partitions.get() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        second.metrics.assigned_partitions.get() > 0,
        "the second worker got partitions"
    );
    publishing.await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let counts = enrichment_counts(&stack, &config);
        if counts.len() >= traffic.truth.transactions || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let first_summary = first.stop().await;
    let second_summary = second.stop().await;
    assert!(
        second_summary.consumed > 0,
        "the second worker consumed records"
    );
    assert!(first_summary.consumed > 0);
    assert_enriched_once(&enrichment_counts(&stack, &config), &traffic, false);
    assert_ground_truth(&stack, &traffic).await;
}
