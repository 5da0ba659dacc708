//! `fds-worker bench`: the worker measured against the cluster's own ceiling and a naive
//! client, in one run, for each delivery mode (`kafka.delivery`) side by side.
//!
//! On a fresh local stack (6-node Redis Cluster + Kafka: librdkafka's mock cluster or 3 Apache
//! Kafka brokers):
//! 1. **Ceiling**: `redis-benchmark --cluster -t incr,set -P 32 -c 50` on the same cluster.
//! 2. **Throughput**, once per delivery mode (at-least-once first): N transactions (+ verdicts)
//!    are published first, then a worker *process* (`fds-worker run`, so its memory is its own)
//!    consumes them from the start; events/s come from the enrichment records' timestamps
//!    (first to last), Redis commands/s from `INFO commandstats` deltas over the masters,
//!    FCALLs vs the units the worker sent.
//! 3. **Memory**: `MEMORY USAGE` of the apply-once marks per tracked user and per event.
//! 4. **Naive baseline** ([`naive`]): the records of the reference throughput run (the
//!    at-least-once one, else the first) read again from their topics and applied per event
//!    with plain commands (`INCR` + `EXPIRE` per counter, `GET` per lookup, keys from the
//!    worker's own plan), many events in flight, no slot units, no apply-once; events/s and
//!    commands/s measured as in step 2, and the worker's events/s as a multiple of it.
//! 5. **Latency**, per mode at 25 %, 50 % and 75 % of the at-least-once maximum measured in
//!    step 2 (or at a given rate), and for exactly-once once more per extra transaction
//!    interval: a worker process on fresh topics while traffic is published at a fixed rate;
//!    per transaction, the time from its source record (Kafka create time) to its enrichment
//!    record arriving at a `read_committed` consumer (what a downstream service sees; in
//!    exactly-once mode that includes the transaction's commit), as p50/p99/max; the worker's
//!    RSS is sampled every 100 ms.
//!
//! With a plot directory the figures are drawn as well ([`plot`]: latency per second of each
//! latency run, events/s over each throughput run, the comparison bars).
//!
//! Every run has its own topics (`<run>-transactions` …), consumer group and transactional id,
//! and starts on a flushed Redis, so each starts from an empty group with the same work to do
//! (the naive run reads the reference run's topics, on a flushed Redis too).

mod arrivals;
mod naive;
mod plot;
pub(crate) mod process;
pub mod redis_stats;
mod report;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::BaseConsumer;

use crate::demo::{KafkaSetup, LocalStack, StackTopics, publish_with};
use crate::localstack::ClusterOptions;
use fds_worker::codec::Codec;
use fds_worker::config::{Config, Delivery};
use fds_worker::generate::{Traffic, TrafficSettings, generate};
use fds_worker::pipeline::plan_settings;
use fds_worker::source::range::{self, BlockingRangeReader, End, Start};

use arrivals::Arrivals;
use process::WorkerProcess;
use report::{LatencyRun, Naive, Report, Throughput};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Transactions in each throughput run.
    pub transactions: usize,
    /// Offered rate (events/s) of every latency run; `None`: 25 %, 50 % and 75 % of the
    /// at-least-once maximum measured in the same invocation (of the first mode's, without an
    /// at-least-once run).
    pub rate: Option<u32>,
    /// Length of each latency run.
    pub latency_run: Duration,
    /// Requests per `redis-benchmark` test.
    pub ceiling_requests: u64,
    /// Partitions per topic.
    pub partitions: i32,
    /// The Kafka of the stack.
    pub kafka: KafkaSetup,
    /// The delivery modes to measure, in order.
    pub deliveries: Vec<Delivery>,
    /// Extra exactly-once latency runs at the lower rate, one per `kafka.transactions.interval`.
    pub transaction_intervals: Vec<Duration>,
    /// The `fds-worker` binary to run as the worker process.
    pub binary: PathBuf,
    /// Where to write the PNG charts ([`plot`]), if anywhere.
    pub plot: Option<PathBuf>,
    /// Also the scaling runs: at-least-once throughput at each of [`SCALING_BATCH_SIZES`]
    /// (with `partitions`) and each of [`SCALING_PARTITIONS`] (with the configured batch size).
    pub scaling: bool,
}

/// The `pipeline.batch_size`s of the scaling runs.
pub const SCALING_BATCH_SIZES: [u32; 3] = [250, 1_000, 4_000];
/// The partitions per topic of the scaling runs.
pub const SCALING_PARTITIONS: [i32; 3] = [1, 2, 4];

/// The shape of a throughput run: batch size and partitions per topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// `pipeline.batch_size`.
    pub batch_size: u32,
    /// Partitions per topic.
    pub partitions: i32,
}

/// The shares of the at-least-once maximum the latency runs offer.
const RELATIVE_RATES: [f64; 3] = [0.25, 0.50, 0.75];

/// Runs the benchmark and returns its report as Markdown.
pub async fn run(options: BenchOptions, base: Config) -> anyhow::Result<String> {
    if options.deliveries.is_empty() {
        bail!("no delivery mode to measure");
    }
    let partitions = options.partitions;
    let setup = options.kafka.clone();
    let mock = matches!(setup, KafkaSetup::Mock);
    let stack = tokio::task::spawn_blocking(move || {
        LocalStack::start_with(ClusterOptions::default(), setup, partitions)
    })
    .await?
    .context("starting the local stack")?;
    let mut report = Report {
        kafka: if mock {
            "librdkafka mock"
        } else {
            "Apache Kafka"
        }
        .into(),
        default_interval: base.kafka.transactions.interval,
        ..Report::default()
    };

    eprintln!("1/5 ceiling: redis-benchmark --cluster -P 32 -c 50 …");
    let requests = options.ceiling_requests;
    let (ceiling, stack) = tokio::task::spawn_blocking(move || {
        let ceiling = redis_stats::ceiling(&stack.cluster, requests);
        (ceiling, stack)
    })
    .await?;
    report.ceiling = ceiling?;
    let bench = Bench {
        stack,
        base,
        options,
        mock,
    };

    // Per throughput run: its mode, its config (topics) and its events, for the naive run.
    let mut sources: Vec<(Delivery, Config, usize)> = Vec::new();
    for (i, &delivery) in bench.options.deliveries.iter().enumerate() {
        eprintln!(
            "2/5 throughput ({}, {} of {}): {} transactions, published first …",
            delivery.as_str(),
            i + 1,
            bench.options.deliveries.len(),
            bench.options.transactions
        );
        let (throughput, traffic, config) = bench
            .throughput(&format!("tp-{}", short(delivery)), delivery, bench.shape())
            .await?;
        report.throughputs.push(throughput);
        sources.push((delivery, config, traffic.events.len()));
        if i + 1 == bench.options.deliveries.len() {
            eprintln!("3/5 memory of the apply-once marks …");
            report.memory = Some(redis_stats::apply_once_memory(&bench.stack.cluster)?);
            report.events = traffic.events.len() as u64;
            report.users = traffic
                .truth
                .counters
                .keys()
                .filter(|k| k.contains("{u:"))
                .count() as u64;
        }
    }

    let reference = report
        .throughputs
        .iter()
        .find(|t| t.delivery == Delivery::AtLeastOnce)
        .unwrap_or(&report.throughputs[0]);
    report.reference = (reference.delivery, reference.events_per_s());
    let (_, source, events) = sources
        .iter()
        .find(|(delivery, _, _)| *delivery == reference.delivery)
        .expect("every throughput run has its source");
    eprintln!(
        "4/5 naive baseline: the {} throughput run's {events} records, per event INCR + EXPIRE / GET, {} events in flight …",
        reference.delivery.as_str(),
        naive::IN_FLIGHT
    );
    report.naive = Some(bench.naive(source, *events).await?);
    let rates: Vec<(u32, Option<f64>)> = match bench.options.rate {
        Some(rate) => vec![(rate, None)],
        None => RELATIVE_RATES
            .iter()
            .map(|&share| {
                (
                    ((reference.events_per_s() * share) as u32).max(1),
                    Some(share),
                )
            })
            .collect(),
    };
    let mut plan: Vec<(Delivery, Option<Duration>, u32, Option<f64>)> = Vec::new();
    for &delivery in &bench.options.deliveries {
        for &(rate, share) in &rates {
            plan.push((delivery, None, rate, share));
        }
    }
    for &interval in &bench.options.transaction_intervals {
        let (rate, share) = rates[0];
        plan.push((Delivery::ExactlyOnce, Some(interval), rate, share));
    }
    for (i, (delivery, interval, rate, share)) in plan.iter().copied().enumerate() {
        eprintln!(
            "5/5 latency ({} of {}): {}{} at {rate} events/s for {:?} …",
            i + 1,
            plan.len(),
            delivery.as_str(),
            interval
                .map(|d| format!(", interval {d:?}"))
                .unwrap_or_default(),
            bench.options.latency_run
        );
        let run = bench
            .latency(&format!("lat{i}"), delivery, interval, rate, share)
            .await?;
        report.latencies.push(run);
    }
    if bench.options.scaling {
        let default = bench.shape();
        let mut shapes: Vec<Shape> = SCALING_BATCH_SIZES
            .iter()
            .map(|&batch_size| Shape {
                batch_size,
                ..default
            })
            .collect();
        shapes.extend(SCALING_PARTITIONS.iter().map(|&partitions| Shape {
            partitions,
            ..default
        }));
        shapes.dedup();
        for (i, shape) in shapes.iter().enumerate() {
            eprintln!(
                "scaling ({} of {}): at-least-once throughput, batch size {}, {} partitions …",
                i + 1,
                shapes.len(),
                shape.batch_size,
                shape.partitions
            );
            let (throughput, _, _) = bench
                .throughput(&format!("sc{i}"), Delivery::AtLeastOnce, *shape)
                .await?;
            report.scaling.push((*shape, throughput));
        }
    }
    if let Some(dir) = &bench.options.plot {
        for path in plot::write(&report, dir)? {
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(report.markdown())
}

/// The stack and what every run needs.
struct Bench {
    stack: LocalStack,
    base: Config,
    options: BenchOptions,
    mock: bool,
}

/// One run's worker config and the `FDS_*` overrides its process gets.
struct RunConfig {
    config: Config,
    env: Vec<(String, String)>,
}

/// A short name of a delivery mode, for topic and group names.
fn short(delivery: Delivery) -> &'static str {
    match delivery {
        Delivery::AtLeastOnce => "alo",
        Delivery::ExactlyOnce => "eos",
    }
}

impl Bench {
    /// The configured shape: the config's batch size, `--partitions`.
    fn shape(&self) -> Shape {
        Shape {
            batch_size: self.base.pipeline.batch_size,
            partitions: self.options.partitions,
        }
    }

    /// Fresh topics (`<name>-transactions` …) of `shape.partitions`, consumer group and
    /// transactional id for a run with `shape.batch_size`, on a flushed Redis.
    fn prepare(
        &self,
        name: &str,
        delivery: Delivery,
        interval: Option<Duration>,
        shape: Shape,
    ) -> anyhow::Result<RunConfig> {
        redis_stats::flush(&self.stack.cluster)?;
        let mut config = self
            .stack
            .config(self.base.clone(), &format!("fds-bench-{name}"));
        let topics = StackTopics::with_prefix(&format!("{name}-"));
        for topic in [&topics.transactions, &topics.verdicts] {
            self.stack.kafka.create_topic(topic, shape.partitions)?;
            self.stack.kafka.create_topic(
                &format!("{topic}{}", config.kafka.dlq_suffix),
                shape.partitions,
            )?;
        }
        self.stack
            .kafka
            .create_topic(&topics.enrichment, shape.partitions)?;
        config.kafka.transactions_topic = topics.transactions;
        config.kafka.verdict_topics = vec![topics.verdicts];
        config.kafka.enrichment_topic = topics.enrichment;
        let id = format!("fds-bench-{name}-{}", std::process::id());
        config.pipeline.batch_size = shape.batch_size;
        config.kafka.delivery = delivery;
        config.kafka.transactions.id = id.clone();
        if let Some(interval) = interval {
            config.kafka.transactions.interval = interval;
        }
        let mut env = vec![
            (
                "FDS_KAFKA__DELIVERY".to_owned(),
                delivery.as_str().to_owned(),
            ),
            ("FDS_KAFKA__TRANSACTIONS__ID".to_owned(), id),
            (
                "FDS_PIPELINE__BATCH_SIZE".to_owned(),
                shape.batch_size.to_string(),
            ),
        ];
        if let Some(interval) = interval {
            env.push((
                "FDS_KAFKA__TRANSACTIONS__INTERVAL".to_owned(),
                format!("{}ms", interval.as_millis()),
            ));
        }
        Ok(RunConfig { config, env })
    }

    fn start_worker(&self, run: &RunConfig) -> anyhow::Result<WorkerProcess> {
        WorkerProcess::start(&self.options.binary, &run.config, &run.env, self.mock)
    }

    /// The throughput run `name` of `delivery` in `shape`, its traffic and its config (topics).
    async fn throughput(
        &self,
        name: &str,
        delivery: Delivery,
        shape: Shape,
    ) -> anyhow::Result<(Throughput, Traffic, Config)> {
        let run = self.prepare(name, delivery, None, shape)?;
        let traffic = make_traffic(
            &run.config,
            self.options.transactions,
            7,
            Duration::from_secs(3600),
        );
        self.stack
            .publish(&run.config, &traffic.events, None)
            .await?;
        let before = redis_stats::command_calls(&self.stack.cluster)?;
        let redis_cpu_before = redis_stats::cpu_seconds(&self.stack.cluster)?;
        let mut worker = self.start_worker(&run)?;
        let timings = wait_for_enriched(
            &self.stack,
            &run.config,
            &mut worker,
            traffic.truth.transactions,
            Duration::from_secs(600),
        )
        .await?;
        let after = redis_stats::command_calls(&self.stack.cluster)?;
        let redis_cpu = redis_stats::cpu_seconds(&self.stack.cluster)? - redis_cpu_before;
        let stopped = worker.stop()?;
        let throughput = Throughput::new(
            delivery,
            &traffic,
            &timings,
            &redis_stats::delta(&before, &after),
            &stopped,
            redis_cpu,
        );
        Ok((throughput, traffic, run.config))
    }

    /// The naive baseline on the `events` records of `source`'s topics, on a flushed Redis.
    async fn naive(&self, source: &Config, events: usize) -> anyhow::Result<Naive> {
        redis_stats::flush(&self.stack.cluster)?;
        let before = redis_stats::command_calls(&self.stack.cluster)?;
        let redis_cpu_before = redis_stats::cpu_seconds(&self.stack.cluster)?;
        let client_cpu_before = process::cpu_seconds(std::process::id()).unwrap_or(0.0);
        let measured = naive::run(
            &self.stack,
            source,
            events,
            self.mock,
            Duration::from_secs(600),
        )
        .await?;
        let client_cpu =
            process::cpu_seconds(std::process::id()).unwrap_or(0.0) - client_cpu_before;
        let after = redis_stats::command_calls(&self.stack.cluster)?;
        let redis_cpu = redis_stats::cpu_seconds(&self.stack.cluster)? - redis_cpu_before;
        Ok(Naive::new(
            &measured,
            &redis_stats::delta(&before, &after),
            client_cpu,
            redis_cpu,
        ))
    }

    /// A latency run: a worker on fresh topics, traffic at `rate` events/s.
    async fn latency(
        &self,
        name: &str,
        delivery: Delivery,
        interval: Option<Duration>,
        rate: u32,
        share: Option<f64>,
    ) -> anyhow::Result<LatencyRun> {
        let run = self.prepare(name, delivery, interval, self.shape())?;
        let config = &run.config;
        let latency_run = self.options.latency_run;
        let count = (rate as f64 * latency_run.as_secs_f64()) as usize;
        // Event times are "now" as they are published, so buckets and expiries are realistic.
        let traffic = make_traffic(config, count, 11, latency_run);
        let arrivals = Arrivals::start(reader_config(&self.stack), &config.kafka.enrichment_topic);
        let source_arrivals =
            Arrivals::start_source(reader_config(&self.stack), &config.kafka.transactions_topic);
        let mut worker = self.start_worker(&run)?;
        // Warm up: the clock starts once the worker has joined its group and enriched a first
        // few transactions (those are left out of the figures), published by the producer that
        // then publishes the measured traffic — with its metadata and producer id in hand, as
        // a long-lived publisher has (a fresh idempotent producer on Apache Kafka held its
        // first records for its start-up, create times set: seconds of "latency" the worker
        // never had).
        let publisher = self.stack.producer()?;
        let warm_up = make_traffic(config, 100, 3, Duration::from_secs(1));
        publish_with(&publisher, config, &warm_up.events, None).await?;
        arrivals
            .wait_for(
                warm_up.truth.transactions,
                &mut worker,
                Duration::from_secs(60),
            )
            .await?;
        let warm_up_done = worker.elapsed();
        let rss_from = Instant::now();
        publish_with(&publisher, config, &traffic.events, NonZeroU32::new(rate)).await?;
        arrivals
            .wait_for(
                warm_up.truth.transactions + traffic.truth.transactions,
                &mut worker,
                Duration::from_secs(120),
            )
            .await?;
        let stopped = worker.stop()?;
        let arrived = arrivals.stop()?;
        let sources_arrived = source_arrivals.stop()?;
        // RSS samples are 100 ms apart from the worker's start: skip the warm-up and the first
        // half of the publishing.
        let steady_from = ((warm_up_done + rss_from.elapsed() / 2).as_millis() / 100) as usize;
        // The first transactions (the warm-up) are left out.
        let mut sources = read_topic(&self.stack, &config.kafka.transactions_topic)?;
        sources.sort_by_key(|(_, _, time, _)| *time);
        let sources: HashMap<(i32, i64), i64> = sources
            .into_iter()
            .skip(warm_up.truth.transactions)
            .map(|(partition, offset, time, _)| ((partition, offset), time))
            .collect();
        let mut visible_ms = Vec::new();
        let mut created_ms = Vec::new();
        let mut timeline = Vec::new();
        for arrival in &arrived {
            if let Some(source) = sources.get(&(arrival.source_partition, arrival.source_offset)) {
                visible_ms.push(arrival.received_ms - source);
                created_ms.push(arrival.created_ms - source);
                timeline.push((*source, arrival.received_ms - source));
            }
        }
        let mut source_visible_ms: Vec<i64> = sources_arrived
            .iter()
            .filter_map(|arrival| {
                let source = sources.get(&(arrival.source_partition, arrival.source_offset))?;
                Some(arrival.received_ms - source)
            })
            .collect();
        source_visible_ms.sort_unstable();
        timeline.sort_unstable();
        visible_ms.sort_unstable();
        created_ms.sort_unstable();
        let steady = &stopped.rss[steady_from.min(stopped.rss.len().saturating_sub(1))..];
        let mut steady = steady.to_vec();
        steady.sort_unstable();
        Ok(LatencyRun {
            delivery,
            interval: config.kafka.transactions.interval,
            interval_given: interval.is_some(),
            rate,
            share,
            visible_ms,
            created_ms,
            source_visible_ms,
            timeline,
            steady_rss: steady.get(steady.len() / 2).copied().unwrap_or(0),
            peak_rss: stopped.peak_rss,
        })
    }
}

/// Seeded traffic whose event times end now.
fn make_traffic(config: &Config, transactions: usize, seed: u64, span: Duration) -> Traffic {
    let settings = TrafficSettings::ending_now(transactions, seed, span);
    generate(&settings, &plan_settings(config, ""))
}

/// The bench's own readers: outside any group's membership, never committing, and
/// `read_committed` (librdkafka's default, made explicit): they see what a downstream consumer
/// of the enrichment topic sees, never the records of an open or aborted transaction.
fn reader_config(stack: &LocalStack) -> ClientConfig {
    let mut config = stack.kafka.client_config();
    config
        .set("group.id", "fds-bench-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed");
    config
}

fn reader(stack: &LocalStack) -> anyhow::Result<BaseConsumer> {
    Ok(reader_config(stack).create()?)
}

/// High watermarks of every partition of `topic`.
fn high_watermarks(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<(i32, i64)>> {
    range::partitions(consumer, topic)?
        .into_iter()
        .map(|p| Ok((p, range::watermarks(consumer, topic, p)?.1)))
        .collect()
}

/// Waits until `transactions` enrichment records are committed and returns their timings.
/// The offsets up to the high watermarks must hold at least that many (cheap to ask while the
/// worker runs), but with transactions some offsets are commit markers: then the topic is read
/// (`read_committed`) and the records counted, until they are all there.
async fn wait_for_enriched(
    stack: &LocalStack,
    config: &Config,
    worker: &mut WorkerProcess,
    transactions: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<(i32, i64, i64)>> {
    let consumer = reader(stack)?;
    let deadline = Instant::now() + timeout;
    loop {
        let total: i64 = high_watermarks(&consumer, &config.kafka.enrichment_topic)?
            .iter()
            .map(|(_, high)| high)
            .sum();
        let mut seen = None;
        if total as usize >= transactions {
            let timings = enrichment_timings(stack, config)?;
            if timings.len() >= transactions {
                return Ok(timings);
            }
            seen = Some(timings.len());
        }
        worker.check_running()?;
        if Instant::now() > deadline {
            bail!(
                "only {} of {transactions} transactions enriched after {timeout:?}",
                seen.unwrap_or(total as usize)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A record read back: `(partition, offset, create time ms, payload)`.
type ReadRecord = (i32, i64, i64, Vec<u8>);

/// Every committed record of `topic`.
fn read_topic(stack: &LocalStack, topic: &str) -> anyhow::Result<Vec<ReadRecord>> {
    let consumer = reader(stack)?;
    let spans = range::whole_topic(&consumer, topic, Start::Earliest, End::HighWatermark)?;
    let records =
        BlockingRangeReader::open(consumer, &spans)?.read_to_end(Duration::from_secs(120))?;
    Ok(records
        .into_iter()
        .map(|r| {
            (
                r.partition,
                r.offset,
                r.timestamp_ms.unwrap_or(0),
                r.payload.unwrap_or_default(),
            )
        })
        .collect())
}

/// Per enrichment record: `(source partition, source offset, its own create time)`.
fn enrichment_timings(stack: &LocalStack, config: &Config) -> anyhow::Result<Vec<(i32, i64, i64)>> {
    let codec = Codec::builtin();
    read_topic(stack, &config.kafka.enrichment_topic)?
        .into_iter()
        .map(|(_, _, time, payload)| {
            let enrichment = codec.decode_enrichment(&payload)?;
            Ok((enrichment.source_partition, enrichment.source_offset, time))
        })
        .collect()
}
