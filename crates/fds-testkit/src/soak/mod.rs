//! `fds-worker soak`: a randomized nemesis soak. The local stack (a 6-node Redis Cluster and
//! 3 Apache Kafka brokers, and a Schema Registry unless told otherwise), worker processes in
//! one group (exactly-once delivery), seeded
//! traffic at a steady rate, and a [`nemesis::Nemesis`] throwing faults from the whole catalog
//! at random for the whole run. At the end everything is healed, the workers drain, and the
//! [`ledger`] checks the model: every transaction enriched exactly once, no dead letter, every
//! counter, feature and blacklist entry equal to the ground truth, and the workers' memory
//! within [`RSS_FACTOR`] of its warm-up. The report (JSON and a PNG timeline) says what
//! happened and when; the seed replays the same traffic and the same fault schedule.

pub mod ledger;
pub mod nemesis;
pub mod report;
pub mod timeline;
pub mod workers;

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use fds_worker::config::{Config, Delivery};
use fds_worker::generate::{TrafficSettings, generate};
use fds_worker::pipeline::{plan_settings, producer_codec};
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;

use crate::demo::{KafkaSetup, LocalStack};
use crate::localstack::{Apicurio, CUT_UID, ClusterOptions, KafkaOptions, NetworkCut};
use ledger::Ledger;
use nemesis::{FaultRecord, Nemesis};
use timeline::{LagProbe, LatencyTail, Sample};
use workers::{RssRecord, WorkerGroup};

/// A worker that runs to the end of the soak may hold at most this many times its RSS after
/// warm-up (20 s, under load), measured [`SETTLE`] after the drain. Not 1: a worker that took
/// over every partition, or caught up on a backlog after a fault, holds more (librdkafka's
/// queues, the allocator's high-water mark); a leak grows without bound over a long soak
/// instead. Workers killed or stopped during the run are not held to it (their last sample
/// may be in the middle of a catch-up); the report lists their memory too.
pub const RSS_FACTOR: f64 = 4.0;

/// How long the workers idle after the drain before their memory is compared: longer than
/// jemalloc's 10 s decay of freed pages, so what a catch-up allocated and freed is returned.
pub const SETTLE: Duration = Duration::from_secs(15);

/// How a soak runs.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// How long traffic flows and faults are thrown.
    pub duration: Duration,
    /// Seeds the traffic and the fault schedule.
    pub seed: u64,
    /// Offered rate, events/s.
    pub rate: u32,
    /// Worker processes at the start (the nemesis adds one at times).
    pub workers: usize,
    /// Partitions per topic.
    pub partitions: i32,
    /// Mean time between faults.
    pub fault_every: Duration,
    /// Where the report, the timeline and the worker logs go.
    pub report_dir: PathBuf,
    /// The `fds-worker` binary.
    pub binary: PathBuf,
    /// With a Schema Registry (the local Apicurio): workers, generator and ledger use its ids,
    /// and the nemesis freezes it among the faults.
    pub registry: bool,
    /// Exactly these faults instead of random ones (see [`nemesis::Planned`]); `fault_every`
    /// is then unused.
    pub schedule: Option<Vec<nemesis::Planned>>,
}

/// What a soak found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SoakReport {
    /// The seed (replays the traffic and the fault schedule).
    pub seed: u64,
    /// Traffic and faults lasted this long (s).
    pub duration_s: f64,
    /// Offered rate (events/s).
    pub rate: u32,
    /// Events published (transactions and verdicts).
    pub events: usize,
    /// Every fault, in order.
    pub faults: Vec<FaultRecord>,
    /// Faults of the catalog this run could not inject, each with the reason.
    pub unavailable: Vec<String>,
    /// Time from the end of the traffic to every record finished (s).
    pub drain_s: f64,
    /// The end check.
    pub ledger: Ledger,
    /// p99 and maximum latency over the run (ms): source record → committed enrichment.
    pub p99_ms: Option<u64>,
    /// See `p99_ms`.
    pub max_latency_ms: Option<u64>,
    /// Every worker incarnation's memory.
    pub rss: Vec<RssRecord>,
    /// Once a second.
    pub timeline: Vec<Sample>,
    /// Every broken promise; empty when the soak passed.
    pub violations: Vec<String>,
}

/// Runs a soak on a fresh local stack; `base` is the worker configuration to start from.
pub async fn run(options: SoakOptions, base: Config) -> anyhow::Result<SoakReport> {
    std::fs::create_dir_all(&options.report_dir)
        .with_context(|| format!("creating {}", options.report_dir.display()))?;
    let cluster_options = ClusterOptions::default();
    let node_timeout = cluster_options.node_timeout;
    let partitions = options.partitions;
    eprintln!("soak: starting the local stack (6 Redis nodes, 3 Apache Kafka brokers)");
    let stack = tokio::task::spawn_blocking(move || {
        LocalStack::start_with(
            cluster_options,
            KafkaSetup::Apache(KafkaOptions::default()),
            partitions,
        )
    })
    .await??;
    let registry = if options.registry {
        eprintln!("soak: starting the Schema Registry (Apicurio)");
        Some(Arc::new(
            tokio::task::spawn_blocking(Apicurio::start).await??,
        ))
    } else {
        None
    };
    let group = format!("soak-{}", options.seed);
    let mut config = soak_config(&stack, base, &group, options.duration);
    if let Some(registry) = &registry {
        config.schemas.registry.urls = vec![registry.ccompat_url()];
    }
    let config_file = options.report_dir.join("worker.toml");
    std::fs::write(&config_file, toml::to_string(&config)?)?;

    let transactions = (options.rate as f64 * options.duration.as_secs_f64() / 1.05) as usize;
    // From the start of this minute: the generator aligns bursts to minute edges, so the same
    // seed gives the same traffic whatever second the soak starts in.
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let settings = TrafficSettings {
        start_ms: now_ms.div_euclid(60_000) * 60_000,
        span_ms: options.duration.as_millis() as i64,
        ..TrafficSettings::ending_now(transactions, options.seed, options.duration)
    };
    let traffic = generate(&settings, &plan_settings(&config, ""));
    eprintln!(
        "soak: {} events ({} transactions) at {}/s for {:?}, seed {}",
        traffic.events.len(),
        traffic.truth.transactions,
        options.rate,
        options.duration,
        options.seed
    );

    let env = vec![("FDS_METRICS__LISTEN".to_owned(), "127.0.0.1:0".to_owned())];
    let mut workers = WorkerGroup::new(&options.binary, &config_file, env, &options.report_dir);
    let mut unavailable = Vec::new();
    let cut = match partition_workers(&mut workers) {
        Ok(cut) => Some(Arc::new(cut)),
        Err(e) => {
            let why = format!("RedisPartition: {e:#}");
            eprintln!("soak: no partition fault in this run ({why})");
            unavailable.push(why);
            None
        }
    };
    for _ in 0..options.workers {
        workers.add()?;
    }
    let started = Instant::now();
    let client = stack.kafka.client_config();
    let sources: Vec<String> = config
        .kafka
        .source_topics()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let probe = LagProbe::new(client.clone(), &group, &sources, partitions)?;
    let tail = LatencyTail::start(client, &config.kafka.enrichment_topic, partitions, started)?;

    let publishing = {
        let producer = stack.producer()?;
        // With a registry: the registry's ids (the schemas registered under the topics'
        // subjects), as the ops commands write.
        let codec = producer_codec(
            &config,
            &config.kafka.transactions_topic,
            &config.kafka.verdict_topics[0],
        )
        .await?;
        let (events, config) = (traffic.events.clone(), config.clone());
        let rate = NonZeroU32::new(options.rate);
        tokio::spawn(async move {
            fds_worker::generate::produce(
                &producer,
                &codec,
                &events,
                &config.kafka.transactions_topic,
                &config.kafka.verdict_topics[0],
                rate,
            )
            .await
        })
    };

    let nemesis = Nemesis::new(
        ChaCha8Rng::seed_from_u64(options.seed),
        options.fault_every,
        node_timeout,
        config.kafka.session_timeout,
        options.workers + 1,
        registry.clone(),
        cut,
    );
    let nemesis = match options.schedule.clone() {
        Some(planned) => nemesis.with_schedule(planned),
        None => nemesis,
    };
    let stack = Arc::new(stack);
    let workers = Arc::new(Mutex::new(workers));
    let stop_faults = Arc::new(AtomicBool::new(false));
    // The nemesis on a thread of its own (its blocking work on threads of their own): the
    // timeline goes on meanwhile.
    let nemesis = {
        let (stack, workers, stop) = (
            Arc::clone(&stack),
            Arc::clone(&workers),
            Arc::clone(&stop_faults),
        );
        std::thread::spawn(move || run_nemesis(nemesis, started, &stack, &workers, &stop))
    };
    let mut timeline: Vec<Sample> = Vec::new();
    let mut last = (0.0, 0i64);
    let deadline = options.duration.as_secs_f64();
    let mut nemesis = Some(nemesis);
    let mut faults = Vec::new();
    let mut traffic_done_at = None;
    let drain_limit = Duration::from_secs(300);
    let mut undrained = None;
    loop {
        let now_s = started.elapsed().as_secs_f64();
        if now_s >= deadline
            && let Some(thread) = nemesis.take()
        {
            stop_faults.store(true, Ordering::Relaxed);
            let stack = Arc::clone(&stack);
            let workers = Arc::clone(&workers);
            faults = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<FaultRecord>> {
                let faults = thread
                    .join()
                    .map_err(|_| anyhow::anyhow!("the nemesis panicked"))??;
                heal_stack(&stack, &workers)?;
                Ok(faults)
            })
            .await??;
        }
        let rss = {
            let mut group = nemesis::lock(&workers);
            if nemesis.is_none() {
                // The orchestrator's part, once the nemesis is done.
                group.restart_exited()?;
            }
            group.sample_rss()
        };
        let lag = tokio::task::block_in_place(|| probe.read());
        let mut sample = Sample {
            t_s: now_s,
            rss_mib: rss as f64 / (1024.0 * 1024.0),
            ..Sample::default()
        };
        if let Some((committed, high)) = lag {
            sample.lag = Some(high - committed);
            if now_s > last.0 {
                sample.finished_per_s = Some((committed - last.1).max(0) as f64 / (now_s - last.0));
            }
            last = (now_s, committed);
        }
        if nemesis.is_none() && traffic_done_at.is_none() && publishing.is_finished() {
            traffic_done_at = Some(now_s);
        }
        let drained = lag.is_some_and(|(c, h)| c == h && h >= traffic.events.len() as i64);
        timeline.push(sample);
        if traffic_done_at.is_some() && drained {
            break;
        }
        if started.elapsed() >= options.duration + drain_limit {
            // The ledger still says what was done; the report is written either way.
            undrained = Some(format!(
                "the workers did not drain within {drain_limit:?} after the traffic ended \
                 (lag {:?})",
                lag.map(|(c, h)| h - c)
            ));
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    publishing.await??;
    let drain_s = started.elapsed().as_secs_f64() - traffic_done_at.unwrap_or(deadline);
    let drained_at = Instant::now();
    let ledger = ledger::check(&stack, &config, &traffic).await?;
    let mut workers = Arc::try_unwrap(workers)
        .map_err(|_| anyhow::anyhow!("the worker group is still shared"))?
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    tokio::time::sleep(SETTLE.saturating_sub(drained_at.elapsed())).await;
    workers.sample_rss();
    let at_the_end = workers.running_rss();
    let exits = tokio::task::block_in_place(|| workers.stop_all(Duration::from_secs(60)));
    let (p99_ms, max_latency_ms) = tail.overall();
    let per_second = tail.per_second();
    for sample in &mut timeline {
        sample.p99_ms = per_second.get(&(sample.t_s as u64)).copied();
    }
    let mut violations: Vec<String> = undrained.into_iter().collect();
    violations.extend(ledger.violations());
    if workers.unclean_stops > 0 {
        violations.push(format!(
            "{} SIGTERMed workers did not drain and exit 0",
            workers.unclean_stops
        ));
    }
    if workers.exits_on_their_own > 0 {
        // Not a broken promise by itself (a fenced zombie stops clearly), but worth reading.
        eprintln!(
            "soak: {} worker incarnations exited on their own (logs in {})",
            workers.exits_on_their_own,
            options.report_dir.display()
        );
    }
    for (worker, code) in exits {
        if code != Some(0) {
            violations.push(format!("{worker} did not stop cleanly: exit {code:?}"));
        }
    }
    for record in &at_the_end {
        if let (Some(warm), Some(end)) = (record.warm_rss, record.end_rss)
            && end as f64 > RSS_FACTOR * warm as f64
        {
            violations.push(format!(
                "{}: RSS grew from {} MiB after warm-up to {} MiB, {SETTLE:?} after the drain",
                record.worker,
                warm / (1024 * 1024),
                end / (1024 * 1024)
            ));
        }
    }
    let report = SoakReport {
        seed: options.seed,
        duration_s: deadline,
        rate: options.rate,
        events: traffic.events.len(),
        faults,
        unavailable,
        drain_s,
        ledger,
        p99_ms,
        max_latency_ms,
        rss: workers.ended.clone(),
        timeline,
        violations,
    };
    report::write(&report, &options.report_dir)?;
    Ok(report)
}

/// The worker configuration of a soak: `base` on the stack, exactly once, every write acked
/// by a replica (a killed master must not take acknowledged increments with it), a retry
/// budget that covers a failover plus a broker fault, and a grace long enough that no tile of
/// the run expires before the ledger reads it.
fn soak_config(stack: &LocalStack, base: Config, group: &str, duration: Duration) -> Config {
    let mut config = stack.config(base, group);
    config.kafka.delivery = Delivery::ExactlyOnce;
    config.redis.wait_replicas = 1;
    config.redis.wait_timeout = Duration::from_millis(250);
    config.redis.retry.budget = Duration::from_secs(30);
    config.velocity.grace = (duration + Duration::from_secs(600)).max(config.velocity.grace);
    config.velocity.grace = Duration::from_secs(config.velocity.grace.as_secs());
    if config.schemas.base_dir.is_none() {
        config.schemas.base_dir = std::env::current_dir().ok();
    }
    config
}

/// The partition fault's means: an nftables cut for [`CUT_UID`], with the workers running as
/// that uid. An error (no nftables, not root, a binary that uid cannot run) says why the soak
/// runs without it.
fn partition_workers(workers: &mut WorkerGroup) -> anyhow::Result<NetworkCut> {
    let cut = NetworkCut::new(CUT_UID)?;
    workers.run_as(cut.uid())?;
    Ok(cut)
}

/// The nemesis's thread: a step every 250 ms (workers that exited on their own are started
/// again first, as an orchestrator would) until `stop`, then every fault healed; returns the
/// faults.
fn run_nemesis(
    mut nemesis: Nemesis,
    started: Instant,
    stack: &Arc<LocalStack>,
    workers: &Mutex<WorkerGroup>,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<FaultRecord>> {
    while !stop.load(Ordering::Relaxed) {
        nemesis::lock(workers).restart_exited()?;
        nemesis.step(started.elapsed().as_secs_f64(), true, stack, workers)?;
        std::thread::sleep(Duration::from_millis(250));
    }
    // A heal can wait (a stopped worker still draining): until none is left.
    while nemesis.active() > 0 {
        nemesis.heal_all(started.elapsed().as_secs_f64(), stack, workers)?;
        if nemesis.active() > 0 {
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    Ok(nemesis.faults)
}

/// After the faults: every Redis node and broker up and whole, every worker running.
fn heal_stack(stack: &LocalStack, workers: &Mutex<WorkerGroup>) -> anyhow::Result<()> {
    let mut workers = nemesis::lock(workers);
    let kafka = stack.kafka.apache().expect("Apache Kafka");
    kafka.restart_stopped()?;
    kafka.wait_healthy(Duration::from_secs(120))?;
    for node in 0..stack.cluster.node_count() {
        if stack.cluster.is_paused(node) {
            stack.cluster.resume(node)?;
        }
        if !stack.cluster.is_running(node) {
            stack.cluster.restart(node)?;
        }
    }
    stack.cluster.wait_for_state_ok(Duration::from_secs(60))?;
    for index in workers.down() {
        workers.start(index)?;
    }
    Ok(())
}
