//! `fds-worker bench`: the worker measured against the cluster's own ceiling, in one run.
//!
//! On a fresh local stack (6-node Redis Cluster + Kafka mock cluster):
//! 1. **Ceiling**: `redis-benchmark --cluster -t incr,set -P 32 -c 50` on the same cluster.
//! 2. **Throughput**: N transactions (+ verdicts) are published first, then a worker *process*
//!    (`fds-worker run`, so its memory is its own) consumes them from the start; events/s come
//!    from the enrichment records' timestamps (first to last), Redis commands/s from
//!    `INFO commandstats` deltas over the masters, FCALLs vs the units the worker sent.
//! 3. **Latency**: a second worker process on fresh topics while traffic is published at a
//!    fixed rate; per transaction, enrichment record time − source record time (both Kafka
//!    create times), as p50/p99/max; the worker's RSS is sampled every 100 ms.
//! 4. **Memory**: `MEMORY USAGE` of the apply-once marks per tracked user and per event.

mod process;
pub mod redis_stats;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rdkafka::consumer::BaseConsumer;

use crate::demo::LocalStack;
use crate::localstack::ClusterOptions;
use fds_worker::codec::Codec;
use fds_worker::config::Config;
use fds_worker::generate::{Traffic, TrafficSettings, generate};
use fds_worker::pipeline::plan_settings;
use fds_worker::source::range::{self, BlockingRangeReader, End, Start};

use process::WorkerProcess;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Transactions in the throughput run.
    pub transactions: usize,
    /// Offered rate (events/s) of the latency run.
    pub rate: u32,
    /// Length of the latency run.
    pub latency_run: Duration,
    /// Requests per `redis-benchmark` test.
    pub ceiling_requests: u64,
    /// Partitions per topic.
    pub partitions: i32,
    /// The `fds-worker` binary to run as the worker process.
    pub binary: PathBuf,
}

/// Runs the benchmark and returns its report as Markdown.
pub async fn run(options: BenchOptions, base: Config) -> anyhow::Result<String> {
    let partitions = options.partitions;
    let stack = tokio::task::spawn_blocking(move || {
        LocalStack::start(ClusterOptions::default(), partitions)
    })
    .await?
    .context("starting the local stack")?;
    let mut report = Report::default();

    eprintln!("1/4 ceiling: redis-benchmark --cluster -P 32 -c 50 …");
    let requests = options.ceiling_requests;
    let (ceiling, stack) = tokio::task::spawn_blocking(move || {
        let ceiling = redis_stats::ceiling(&stack.cluster, requests);
        let _ = redis_stats::flush(&stack.cluster);
        (ceiling, stack)
    })
    .await?;
    report.ceiling = ceiling?;

    eprintln!(
        "2/4 throughput: {} transactions, published first …",
        options.transactions
    );
    let config = stack.config(base.clone(), "fds-bench-throughput");
    let traffic = make_traffic(&config, options.transactions, 7, Duration::from_secs(3600));
    publish(&stack, &config, &traffic, None).await?;
    let before = redis_stats::command_calls(&stack.cluster)?;
    let redis_cpu_before = redis_stats::cpu_seconds(&stack.cluster)?;
    let mut worker = WorkerProcess::start(&options.binary, &config)?;
    wait_for_enriched(
        &stack,
        &config,
        &mut worker,
        traffic.truth.transactions,
        Duration::from_secs(600),
    )
    .await?;
    let after = redis_stats::command_calls(&stack.cluster)?;
    report.redis_cpu = redis_stats::cpu_seconds(&stack.cluster)? - redis_cpu_before;
    let stopped = worker.stop()?;
    let timings = enrichment_timings(&stack, &config)?;
    report.throughput(
        &traffic,
        &timings,
        &redis_stats::delta(&before, &after),
        &stopped,
    );

    eprintln!("3/4 memory of the apply-once marks …");
    report.memory = Some(redis_stats::apply_once_memory(&stack.cluster)?);
    report.events = traffic.events.len() as u64;
    report.users = traffic
        .truth
        .counters
        .keys()
        .filter(|k| k.contains("{u:"))
        .count() as u64;

    eprintln!(
        "4/4 latency: {} events/s for {:?} …",
        options.rate, options.latency_run
    );
    let mut config = stack.config(base, "fds-bench-latency");
    for topic in ["lat-transactions", "lat-verdicts", "lat-enriched"] {
        for name in [
            topic.to_owned(),
            format!("{topic}{}", config.kafka.dlq_suffix),
        ] {
            stack.kafka.create_topic(&name, partitions)?;
        }
    }
    config.kafka.transactions_topic = "lat-transactions".into();
    config.kafka.verdict_topics = vec!["lat-verdicts".into()];
    config.kafka.enrichment_topic = "lat-enriched".into();
    let count = (options.rate as f64 * options.latency_run.as_secs_f64()) as usize;
    // Event times are "now" as they are published, so buckets and expiries are realistic.
    let traffic = make_traffic(&config, count, 11, options.latency_run);
    let mut worker = WorkerProcess::start(&options.binary, &config)?;
    // Warm up: the clock starts once the worker has joined its group and enriched a first
    // few transactions (those are left out of the figures).
    let warm_up = make_traffic(&config, 100, 3, Duration::from_secs(1));
    publish(&stack, &config, &warm_up, None).await?;
    wait_for_enriched(
        &stack,
        &config,
        &mut worker,
        warm_up.truth.transactions,
        Duration::from_secs(60),
    )
    .await?;
    let warm_up_done = worker.elapsed();
    let rss_from = Instant::now();
    publish(&stack, &config, &traffic, NonZeroU32::new(options.rate)).await?;
    wait_for_enriched(
        &stack,
        &config,
        &mut worker,
        warm_up.truth.transactions + traffic.truth.transactions,
        Duration::from_secs(120),
    )
    .await?;
    let stopped = worker.stop()?;
    // RSS samples are 100 ms apart from the worker's start: skip the warm-up and the first
    // half of the publishing.
    let steady_from = ((warm_up_done + rss_from.elapsed() / 2).as_millis() / 100) as usize;
    report.latency(
        &stack,
        &config,
        &stopped,
        steady_from,
        warm_up.truth.transactions,
    )?;
    report.rate = options.rate;
    Ok(report.markdown())
}

/// Seeded traffic whose event times end now.
fn make_traffic(config: &Config, transactions: usize, seed: u64, span: Duration) -> Traffic {
    let settings = TrafficSettings::ending_now(transactions, seed, span);
    generate(&settings, &plan_settings(config, ""))
}

async fn publish(
    stack: &LocalStack,
    config: &Config,
    traffic: &Traffic,
    rate: Option<NonZeroU32>,
) -> anyhow::Result<()> {
    stack.publish(config, &traffic.events, rate).await
}

fn reader(stack: &LocalStack) -> anyhow::Result<BaseConsumer> {
    Ok(stack
        .kafka
        .client_config()
        .set("group.id", "fds-bench-reader")
        .set("enable.auto.commit", "false")
        .create()?)
}

/// High watermarks of every partition of `topic`.
fn high_watermarks(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<(i32, i64)>> {
    range::partitions(consumer, topic)?
        .into_iter()
        .map(|p| Ok((p, range::watermarks(consumer, topic, p)?.1)))
        .collect()
}

async fn wait_for_enriched(
    stack: &LocalStack,
    config: &Config,
    worker: &mut WorkerProcess,
    transactions: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let consumer = reader(stack)?;
    let deadline = Instant::now() + timeout;
    loop {
        let total: i64 = high_watermarks(&consumer, &config.kafka.enrichment_topic)?
            .iter()
            .map(|(_, high)| high)
            .sum();
        if total as usize >= transactions {
            return Ok(());
        }
        worker.check_running()?;
        if Instant::now() > deadline {
            bail!("only {total} of {transactions} transactions enriched after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A record read back: `(partition, offset, create time ms, payload)`.
type ReadRecord = (i32, i64, i64, Vec<u8>);

/// Every record of `topic`.
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

/// The figures, filled in as the runs finish.
#[derive(Debug, Default)]
struct Report {
    ceiling: std::collections::BTreeMap<String, f64>,
    throughput_events: u64,
    throughput_seconds: f64,
    data_commands: u64,
    fcalls: u64,
    units_and_batches: Option<(u64, u64)>,
    peak_rss_throughput: u64,
    worker_cpu: f64,
    redis_cpu: f64,
    memory: Option<((u64, u64), (u64, u64))>,
    events: u64,
    users: u64,
    rate: u32,
    latencies_ms: Vec<i64>,
    steady_rss: u64,
    peak_rss_latency: u64,
}

impl Report {
    fn throughput(
        &mut self,
        traffic: &Traffic,
        timings: &[(i32, i64, i64)],
        delta: &std::collections::BTreeMap<String, u64>,
        stopped: &process::Stopped,
    ) {
        let first = timings.iter().map(|t| t.2).min().unwrap_or(0);
        let last = timings.iter().map(|t| t.2).max().unwrap_or(0);
        self.throughput_events = traffic.events.len() as u64;
        self.throughput_seconds = ((last - first) as f64 / 1000.0).max(0.001);
        self.data_commands = delta
            .iter()
            .filter(|(name, _)| redis_stats::is_data_command(name))
            .map(|(_, n)| n)
            .sum();
        self.fcalls = delta.get("fcall").copied().unwrap_or(0);
        self.units_and_batches = stopped.units_and_batches;
        self.peak_rss_throughput = stopped.peak_rss;
        self.worker_cpu = stopped.cpu_seconds;
    }

    fn latency(
        &mut self,
        stack: &LocalStack,
        config: &Config,
        stopped: &process::Stopped,
        steady_from: usize,
        skip: usize,
    ) -> anyhow::Result<()> {
        // The first `skip` transactions (the warm-up) are left out.
        let mut sources = read_topic(stack, &config.kafka.transactions_topic)?;
        sources.sort_by_key(|(_, _, time, _)| *time);
        let sources: HashMap<(i32, i64), i64> = sources
            .into_iter()
            .skip(skip)
            .map(|(partition, offset, time, _)| ((partition, offset), time))
            .collect();
        self.latencies_ms = enrichment_timings(stack, config)?
            .into_iter()
            .filter_map(|(partition, offset, time)| Some(time - sources.get(&(partition, offset))?))
            .collect();
        self.latencies_ms.sort_unstable();
        let steady = &stopped.rss[steady_from.min(stopped.rss.len().saturating_sub(1))..];
        let mut steady = steady.to_vec();
        steady.sort_unstable();
        self.steady_rss = steady.get(steady.len() / 2).copied().unwrap_or(0);
        self.peak_rss_latency = stopped.peak_rss;
        Ok(())
    }

    /// The latency at quantile `q` (0.5 = p50); 0 without samples.
    fn percentile(&self, q: f64) -> u64 {
        // 3 significant figures: exact below 2048 ms, within 0.1 % above.
        let mut histogram =
            hdrhistogram::Histogram::<u64>::new(3).expect("3 significant figures are allowed");
        for &ms in &self.latencies_ms {
            histogram.saturating_record(ms.max(0) as u64);
        }
        histogram.value_at_quantile(q)
    }

    fn markdown(&self) -> String {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let events_per_s = self.throughput_events as f64 / self.throughput_seconds;
        let commands_per_s = self.data_commands as f64 / self.throughput_seconds;
        let incr = self.ceiling.get("INCR").copied().unwrap_or(f64::NAN);
        let set = self.ceiling.get("SET").copied().unwrap_or(f64::NAN);
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line("| measure | value |".into());
        line("|---|---|".into());
        line(format!(
            "| ceiling: redis-benchmark INCR (-P 32 -c 50) | {incr:.0} ops/s |"
        ));
        line(format!(
            "| ceiling: redis-benchmark SET (-P 32 -c 50) | {set:.0} ops/s |"
        ));
        line(format!(
            "| throughput: events (transactions + verdicts) | {} in {:.2} s = **{events_per_s:.0} events/s** |",
            self.throughput_events, self.throughput_seconds
        ));
        line(format!(
            "| Redis data commands applied (INFO commandstats Δ, inside FCALL) | {} = **{commands_per_s:.0} commands/s** |",
            self.data_commands
        ));
        line(format!(
            "| … as a share of the INCR ceiling | **{:.0} %** |",
            100.0 * commands_per_s / incr
        ));
        if let Some((units, batches)) = self.units_and_batches {
            line(format!(
                "| atomic units: FCALLs seen by Redis / units sent (= distinct slots per batch, summed) | {} / {units} over {batches} batches ({:.1} units/batch, {:.1} events/unit) |",
                self.fcalls,
                units as f64 / batches.max(1) as f64,
                self.throughput_events as f64 / units.max(1) as f64
            ));
        }
        line(format!(
            "| CPU used in the throughput run: worker process / the 6 Redis nodes | {:.1} s / {:.1} s |",
            self.worker_cpu, self.redis_cpu
        ));
        line(format!(
            "| worker peak RSS, throughput run | {:.1} MiB |",
            mib(self.peak_rss_throughput)
        ));
        if let Some(((user_keys, user_bytes), (all_keys, all_bytes))) = self.memory {
            line(format!(
                "| apply-once marks: per tracked user (`ao:{{u:…}}`) | {:.0} bytes ({user_keys} keys) |",
                user_bytes as f64 / user_keys.max(1) as f64
            ));
            line(format!(
                "| apply-once marks: all entities, per event | {:.0} bytes ({all_keys} keys, {:.1} MiB, {} events, {} users) |",
                all_bytes as f64 / self.events.max(1) as f64,
                mib(all_bytes),
                self.events,
                self.users
            ));
        }
        line(format!(
            "| latency at {} events/s offered: p50 / p99 / max (source record → enrichment record) | **{} / {} / {} ms** ({} transactions) |",
            self.rate,
            self.percentile(0.50),
            self.percentile(0.99),
            self.latencies_ms.last().copied().unwrap_or(0),
            self.latencies_ms.len()
        ));
        line(format!(
            "| worker RSS at that rate: steady (median, 2nd half) / peak | **{:.1} MiB** / {:.1} MiB |",
            mib(self.steady_rss),
            mib(self.peak_rss_latency)
        ));
        out
    }
}
