//! `fds-worker demo`: the whole system on a local stack, with a ground-truth check at the end.

use std::num::NonZeroU32;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::config::Config;
use crate::demo::{LocalStack, Progress, wait_until_finished};
use crate::generate::{generate, produce, verify};
use crate::localstack::ClusterOptions;
use crate::metrics::Metrics;
use crate::pipeline::{decoder_from_config, plan_settings};

use super::generate::{GenerateArgs, traffic_settings};

/// Start a local stack (6-node Redis Cluster from redis-server + Kafka mock cluster), publish
/// synthetic traffic, run the worker on it with a live summary, and check every counter
/// against ground truth.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  fds-worker demo                        20,000 transactions at 2,000/s
  fds-worker demo --count 100000 --rate 10000

While it runs, the worker serves /metrics, /healthz and /readyz on metrics.listen (default
127.0.0.1:9464; FDS_METRICS__LISTEN=127.0.0.1:0 picks a free port). Exits 0 when every counter
equals the ground truth and every blacklist entry has its tier's expiry; 1 otherwise.")]
pub struct DemoArgs {
    /// Transactions to generate.
    #[arg(long, default_value_t = 20_000)]
    pub count: usize,
    /// Events per second to publish at.
    #[arg(long, default_value_t = 2_000)]
    pub rate: u32,
    /// RNG seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Partitions per topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Give up waiting for the worker after this long.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Runs the demo.
pub async fn run(args: DemoArgs, config: Config) -> anyhow::Result<()> {
    println!("starting a 6-node Redis Cluster (3 masters + 3 replicas) and a Kafka mock cluster…");
    let partitions = args.partitions;
    let stack = tokio::task::spawn_blocking(move || {
        LocalStack::start(ClusterOptions::default(), partitions)
    })
    .await?
    .context("starting the local stack")?;
    println!(
        "  redis: {}\n  kafka: {}",
        stack.cluster.seed_urls().join(" "),
        stack.kafka.bootstrap_servers()
    );
    let config = stack.config(config, "fds-demo");

    let generate_args = GenerateArgs {
        count: args.count,
        users: None,
        seed: args.seed,
        rate: args.rate,
        burst_probability: 0.01,
        verdict_ratio: 0.02,
        truth: None,
    };
    let traffic = generate(
        &traffic_settings(&generate_args),
        &plan_settings(&config, ""),
    );
    let records = traffic.events.len() as u64;
    println!(
        "publishing {} transactions + {} verdicts at {}/s; running the worker…",
        traffic.truth.transactions, traffic.truth.verdicts, args.rate
    );
    let codec = decoder_from_config(&config)
        .map_err(anyhow::Error::msg)?
        .codec;
    let producer = stack.producer()?;
    let events = traffic.events.clone();
    let topics = (
        config.kafka.transactions_topic.clone(),
        config.kafka.verdict_topics[0].clone(),
    );
    let rate = NonZeroU32::new(args.rate);
    let publisher = tokio::spawn(async move {
        produce(&producer, &codec, &events, &topics.0, &topics.1, rate).await
    });

    // The worker with its endpoint and cluster monitor, as `fds-worker run` has them.
    let service = super::run::Service::start(&config).await?;
    println!(
        "  metrics: http://{0}/metrics  (also /healthz, /readyz)",
        service.addr()
    );
    let metrics: Metrics = service.metrics().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(service.run(async {
        let _ = stopped.await;
    }));
    let mut last = Progress::default();
    let (progress, finished) = wait_until_finished(
        &metrics,
        &config,
        records,
        args.timeout,
        Duration::from_secs(1),
        |p, elapsed| {
            if p == &last {
                return;
            }
            println!(
                "  t={:>4}s consumed={:>7} enriched={:>7} ({:>6}/s) verdicts={:>5} breaches={:>5} DLQ={}",
                elapsed.as_secs(),
                p.consumed,
                p.enriched,
                p.enriched.saturating_sub(last.enriched),
                p.verdicts,
                p.breaches,
                p.dead_lettered
            );
            last = *p;
        },
    )
    .await;
    publisher.await?.context("publishing traffic")?;
    let _ = stop.send(());
    let summary = worker.await?.context("running the worker")?;
    if !finished {
        bail!(
            "the worker did not finish within {:?}: {progress:?}",
            args.timeout
        );
    }

    println!("checking Redis against ground truth…");
    let client = redis::cluster::ClusterClient::new(stack.cluster.seed_urls())?;
    let connection = client.get_async_connection().await?;
    let report = verify(&connection, &traffic.truth).await?;
    println!(
        "  transactions {}  enriched {}  verdicts {}  dead-lettered {}  redis units {} (in {} batches)",
        traffic.truth.transactions,
        progress.enriched,
        progress.verdicts,
        progress.dead_lettered,
        summary.units,
        summary.batches
    );
    println!(
        "  counters checked {}  lost increments {}  double-counted {}  blacklist entries checked {}  problems {}",
        report.counters,
        report.lost_increments(),
        report.doubled_increments(),
        report.blacklist,
        report.blacklist_problems.len()
    );
    if !report.is_exact() {
        for problem in report.blacklist_problems.iter().take(10) {
            println!("  blacklist: {problem}");
        }
        bail!("Redis does not match the ground truth");
    }
    println!("OK: every counter equals the ground truth.");
    Ok(())
}
