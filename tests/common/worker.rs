//! Running the worker in tests: the local stack, traffic, in-process workers, reading topics
//! back, and the ledger checks against ground truth.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fds_testkit::demo::{KafkaSetup, LocalStack, Progress};
use fds_testkit::localstack::ClusterOptions;
use fds_worker::codec::Codec;
use fds_worker::config::Config;
use fds_worker::generate::{Traffic, TrafficSettings, Verification, generate, produce, verify};
use fds_worker::metrics::Metrics;
use fds_worker::pipeline::{RunError, RunSummary, plan_settings, run};
use fds_worker::source::SourceMessage;
use fds_worker::source::range::{self, BlockingRangeReader, End, Start};
use rdkafka::consumer::BaseConsumer;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

/// Partitions per topic in these tests.
pub const PARTITIONS: i32 = 4;

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Starts a Redis Cluster with `options`, with topics of its own on the binary's shared Apache
/// Kafka cluster ([`super::shared_kafka`]).
pub async fn start_stack_with(options: ClusterOptions) -> LocalStack {
    super::init_tracing();
    tokio::task::spawn_blocking(move || {
        let kafka = KafkaSetup::Shared(super::shared_kafka());
        LocalStack::start_with(options, kafka, PARTITIONS).expect("local stack")
    })
    .await
    .unwrap()
}

/// Starts a Redis Cluster with `options` and the Kafka of `kafka` (a cluster of its own, for
/// tests that break brokers, or the mock, for tests that need its error injection).
pub async fn start_stack_on(options: ClusterOptions, kafka: KafkaSetup) -> LocalStack {
    super::init_tracing();
    tokio::task::spawn_blocking(move || {
        LocalStack::start_with(options, kafka, PARTITIONS).expect("local stack")
    })
    .await
    .unwrap()
}

/// [`start_stack_with`] the default test cluster.
pub async fn start_stack() -> LocalStack {
    start_stack_with(super::test_cluster_options()).await
}

/// The default config pointed at `stack`, in a fresh consumer group, with small batches.
pub fn test_config(stack: &LocalStack) -> Config {
    let mut config = stack.config(Config::default(), &super::random_name("group"));
    config.pipeline.batch_size = 200;
    config.pipeline.batch_linger = Duration::from_millis(5);
    // The retry budget rule of thumb: 2 × node-timeout (2 s in tests) + 2 s.
    config.redis.retry.budget = Duration::from_secs(6);
    // librdkafka's debug contexts for the worker's clients (e.g. `cgrp,eos`), when diagnosing.
    if let Ok(debug) = std::env::var("FDS_TEST_KAFKA_DEBUG") {
        for options in [
            &mut config.kafka.consumer_options,
            &mut config.kafka.producer_options,
        ] {
            options.insert("debug".to_owned(), debug.clone());
        }
    }
    config
}

/// Seeded traffic whose event times end now.
pub fn traffic(config: &Config, transactions: usize, seed: u64, span: Duration) -> Traffic {
    let settings = TrafficSettings::ending_now(transactions, seed, span);
    generate(&settings, &plan_settings(config, ""))
}

/// Publishes `traffic` at `rate` events/s (`None` = at once).
pub async fn publish(stack: &LocalStack, config: &Config, traffic: &Traffic, rate: Option<u32>) {
    stack
        .publish(config, &traffic.events, rate.and_then(NonZeroU32::new))
        .await
        .expect("publish traffic");
}

/// [`publish`] in the background.
pub fn publish_in_background(
    stack: &LocalStack,
    config: &Config,
    traffic: &Traffic,
    rate: u32,
) -> JoinHandle<()> {
    let producer = stack.producer().unwrap();
    let config = config.clone();
    let events = traffic.events.clone();
    tokio::spawn(async move {
        produce(
            &producer,
            &Codec::builtin(),
            &events,
            &config.kafka.transactions_topic,
            &config.kafka.verdict_topics[0],
            NonZeroU32::new(rate),
        )
        .await
        .expect("traffic published");
    })
}

/// Runs the worker on `config` and expects it to stop with an error (at start, or soon after:
/// a refused credential, certificate or ACL); panics if it runs on past 90 s — a hang
/// detector, not a performance bound.
pub async fn run_error(config: &Config) -> RunError {
    let ran = tokio::time::timeout(
        Duration::from_secs(90),
        run(config, Metrics::unregistered(), std::future::pending()),
    )
    .await;
    match ran {
        Err(_) => panic!("the worker hung instead of stopping"),
        Ok(Ok(summary)) => panic!("the worker ran: {summary:?}"),
        Ok(Err(error)) => error,
    }
}

/// A worker running in this process.
pub struct Worker {
    stop: oneshot::Sender<()>,
    /// The run; resolves when it stopped.
    pub handle: JoinHandle<RunSummary>,
    /// Its metrics.
    pub metrics: Metrics,
}

/// Starts `run` on `config` in a task. Workers of one test process are distinct workers: each
/// gets its own transactional id (`<group_id>-worker-…`, the README's ACL prefix) unless the
/// config names one.
pub fn start_worker(config: &Config) -> Worker {
    let (stop, stopped) = oneshot::channel::<()>();
    let metrics = Metrics::unregistered();
    let mut config = config.clone();
    if config.kafka.transactions.id.is_empty() {
        config.kafka.transactions.id =
            super::random_name(&format!("{}-worker", config.kafka.group_id));
    }
    let run_metrics = metrics.clone();
    // Several workers share the test's log: each one's lines name its transactional id.
    let span = tracing::info_span!("worker", id = %config.kafka.transactions.id);
    let handle = tokio::spawn(
        async move {
            run(&config, run_metrics, async {
                let _ = stopped.await;
            })
            .await
            .expect("worker runs")
        }
        .instrument(span),
    );
    Worker {
        stop,
        handle,
        metrics,
    }
}

impl Worker {
    /// Graceful stop; returns the run's summary.
    pub async fn stop(self) -> RunSummary {
        let _ = self.stop.send(());
        self.handle.await.unwrap()
    }

    /// Progress read from the metrics.
    pub fn progress(&self, config: &Config) -> Progress {
        Progress::read(&self.metrics, config)
    }

    /// Polls the progress every 100 ms until `records` are finished (enriched, applied or
    /// dead-lettered) and returns it, or returns the last progress as `Err` at `timeout`.
    pub async fn poll_finished(
        &self,
        config: &Config,
        records: u64,
        timeout: Duration,
    ) -> Result<Progress, Progress> {
        super::poll_until_async(timeout, Duration::from_millis(100), || async {
            let progress = self.progress(config);
            if progress.finished(records) {
                Ok(progress)
            } else {
                Err(progress)
            }
        })
        .await
    }

    /// [`Worker::poll_finished`], panicking at `timeout` with the last progress.
    pub async fn wait_finished(
        &self,
        config: &Config,
        records: u64,
        timeout: Duration,
    ) -> Progress {
        self.poll_finished(config, records, timeout)
            .await
            .unwrap_or_else(|last| {
                panic!("{records} records not finished after {timeout:?}; last: {last:?}")
            })
    }
}

/// Every record of `topic`, from the start to the current end of every partition. A broker
/// moving a leader meanwhile (a loaded machine's brokers miss heartbeats too) is waited out.
pub fn read_all(stack: &LocalStack, topic: &str) -> Vec<SourceMessage> {
    let consumer: BaseConsumer = stack
        .kafka
        .client_config()
        .set("group.id", super::random_name("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let spans = super::wait_until(
        &format!("the partitions and watermarks of {topic}"),
        Duration::from_secs(30),
        || range::whole_topic(&consumer, topic, Start::Earliest, End::HighWatermark),
    );
    BlockingRangeReader::open(consumer, &spans)
        .unwrap()
        .read_to_end(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("read {topic} to its end: {e}"))
}

/// Enrichment records per event id.
pub fn enrichment_counts(stack: &LocalStack, config: &Config) -> HashMap<String, usize> {
    enrichment_copies(stack, config)
        .into_iter()
        .map(|(id, copies)| (id, copies.len()))
        .collect()
}

/// Where each event id's enrichment records are: (partition, offset, create time) per copy.
pub fn enrichment_copies(
    stack: &LocalStack,
    config: &Config,
) -> HashMap<String, Vec<(i32, i64, Option<i64>)>> {
    let codec = Codec::builtin();
    let mut copies: HashMap<String, Vec<_>> = HashMap::new();
    for record in read_all(stack, &config.kafka.enrichment_topic) {
        let enrichment = codec
            .decode_enrichment(record.payload.as_deref().unwrap_or_default())
            .expect("valid enrichment");
        copies.entry(enrichment.event_id).or_default().push((
            record.partition,
            record.offset,
            record.timestamp_ms,
        ));
    }
    copies
}

/// Waits until every transaction of `traffic` has an enrichment record, or — if
/// `dead_letters` counts any — is enriched or dead-lettered; returns the enrichment counts.
/// Panics after 120 s with how many were enriched and dead-lettered.
pub async fn wait_for_enrichment(
    stack: &LocalStack,
    config: &Config,
    traffic: &Traffic,
    dead_letters: impl Fn() -> usize,
) -> HashMap<String, usize> {
    let transactions = traffic.truth.transactions;
    let dead_letters = &dead_letters;
    super::wait_until_async(
        "every transaction enriched or dead-lettered",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || async move {
            let counts = enrichment_counts(stack, config);
            let dead = dead_letters();
            if counts.len() + dead >= transactions {
                Ok(counts)
            } else {
                Err(format!(
                    "{} of {transactions} transactions enriched, {dead} dead-lettered",
                    counts.len()
                ))
            }
        },
    )
    .await
}

/// Compares Redis with the ground truth.
pub async fn verification(stack: &LocalStack, traffic: &Traffic) -> Verification {
    // Bounded: a read of a slot nobody serves fails instead of retrying forever.
    let mut builder = redis::cluster::ClusterClient::builder(stack.cluster.seed_urls())
        .connection_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(5));
    // As the cluster's admin (the `default` user), over TLS for a TLS cluster.
    if let Some(password) = stack.cluster.password() {
        builder = builder.password(password);
    }
    if let Some(tls) = stack.cluster.tls() {
        fds_worker::store::tls::install_crypto_provider();
        builder = builder.certs(redis::TlsCertificates {
            client_tls: Some(redis::ClientTlsConfig {
                client_cert: std::fs::read(&tls.cert_file).unwrap(),
                client_key: std::fs::read(&tls.key_file).unwrap(),
            }),
            root_cert: Some(std::fs::read(&tls.ca_file).unwrap()),
        });
    }
    let client = builder.build().unwrap();
    let connection = client.get_async_connection().await.unwrap();
    verify(&connection, &traffic.truth).await.unwrap()
}

/// Every feature tile equals ground truth (distinct tiles within the HyperLogLog bound);
/// every verdict entry is as expected.
pub async fn assert_ground_truth(stack: &LocalStack, traffic: &Traffic) {
    let report = verification(stack, traffic).await;
    assert_eq!(
        report.counters,
        traffic.truth.counters.len() + traffic.truth.distinct.len()
    );
    assert!(
        report.lost.is_empty(),
        "lost {} increments, e.g. {:?}",
        report.lost_increments(),
        &report.lost[..report.lost.len().min(5)]
    );
    assert!(
        report.doubled.is_empty(),
        "double counted {} increments, e.g. {:?}",
        report.doubled_increments(),
        &report.doubled[..report.doubled.len().min(5)]
    );
    assert!(report.blacklist > 0, "some verdict entries are checked");
    assert!(
        report.blacklist_problems.is_empty(),
        "{:?}",
        report.blacklist_problems
    );
}

/// Every transaction has an enrichment record (exactly one if `exactly`).
pub fn assert_enriched(counts: &HashMap<String, usize>, traffic: &Traffic, exactly: bool) {
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

/// Every enrichment record's features against the generator's truth: each feature present,
/// within its bounds (distinct counts within the HyperLogLog bound of
/// `fds_worker::generate::distinct_bound`: 3 × 0.81 %, at least 1), equal to the exact value of
/// a user feature if `first_delivery` (no record was delivered twice), `exceeded` as its
/// threshold says, and the rule version of `config`. Returns how many records had a feature
/// over its threshold.
#[allow(dead_code)] // not every test binary compares features
pub fn assert_features(
    stack: &LocalStack,
    config: &Config,
    traffic: &Traffic,
    first_delivery: bool,
) -> usize {
    let codec = Codec::builtin();
    let plan = plan_settings(config, "");
    let version = fds_worker::pipeline::rule_version(config);
    let mut problems = Vec::new();
    let mut exceeded = 0;
    for record in read_all(stack, &config.kafka.enrichment_topic) {
        let enrichment = codec
            .decode_enrichment(record.payload.as_deref().unwrap_or_default())
            .expect("valid enrichment");
        problems.extend(fds_worker::generate::check_features(
            &enrichment,
            &traffic.truth.features,
            &plan,
            first_delivery,
        ));
        if enrichment.rule_version.as_deref() != Some(version.as_str()) {
            problems.push(format!(
                "{}: rule version {:?}, expected {version}",
                enrichment.event_id, enrichment.rule_version
            ));
        }
        exceeded += usize::from(enrichment.features.iter().any(|f| f.exceeded));
    }
    assert!(
        problems.is_empty(),
        "{} feature problems, e.g. {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
    exceeded
}

/// `cmdstat_<command>` calls summed over every master.
pub fn command_calls(stack: &LocalStack, command: &str) -> u64 {
    let calls = fds_testkit::bench::redis_stats::command_calls(&stack.cluster).unwrap();
    calls.get(command).copied().unwrap_or(0)
}
