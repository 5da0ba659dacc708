//! `fds-worker generate`: synthetic traffic with ground truth.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use rdkafka::ClientConfig;
use rdkafka::producer::FutureProducer;

use crate::codec::Codec;
use crate::config::Config;
use crate::generate::{TrafficSettings, generate, produce};
use crate::pipeline::{plan_settings, producer_codec, unix_ms};

/// Publish synthetic transactions and verdicts (seeded, reproducible) and optionally write the
/// ground truth: the value every velocity counter must reach.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  fds-worker generate --count 100000 --rate 5000 --truth /tmp/truth.json
  fds-worker generate --count 1000 --seed 7 --users 50   (small, bursty)")]
pub struct GenerateArgs {
    /// Transactions to generate (verdicts come on top, see --verdict-ratio).
    #[arg(long, default_value_t = 10_000)]
    pub count: usize,
    /// User population (default: count / 10).
    #[arg(long)]
    pub users: Option<usize>,
    /// RNG seed: the same seed gives the same traffic.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Events per second to publish at (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub rate: u32,
    /// Probability that a transaction starts a burst that breaches the velocity threshold.
    #[arg(long, default_value_t = 0.01)]
    pub burst_probability: f64,
    /// Verdicts per transaction, on average.
    #[arg(long, default_value_t = 0.02)]
    pub verdict_ratio: f64,
    /// Write the ground truth (JSON) here.
    #[arg(long)]
    pub truth: Option<PathBuf>,
}

/// Event times end now and span the time publishing takes at `rate` (or one minute).
pub fn traffic_settings(args: &GenerateArgs) -> TrafficSettings {
    let span = match args.rate {
        0 => Duration::from_secs(60),
        rate => Duration::from_secs_f64(args.count as f64 / f64::from(rate)),
    };
    let now = unix_ms(SystemTime::now());
    TrafficSettings {
        seed: args.seed,
        transactions: args.count,
        users: args.users.unwrap_or(args.count / 10).max(1),
        burst_probability: args.burst_probability,
        verdict_ratio: args.verdict_ratio,
        start_ms: if args.rate == 0 {
            now - span.as_millis() as i64
        } else {
            now
        },
        span_ms: span.as_millis() as i64,
    }
}

/// Generates and publishes.
pub async fn run(args: GenerateArgs, config: Config) -> anyhow::Result<()> {
    let traffic = generate(&traffic_settings(&args), &plan_settings(&config, ""));
    if let Some(path) = &args.truth {
        let json = serde_json::to_vec_pretty(&traffic.truth)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    // With a Schema Registry, written under the registry's ids.
    let codec: Codec = producer_codec(
        &config,
        &config.kafka.transactions_topic,
        &config.kafka.verdict_topics[0],
    )
    .await?;
    let mut client = ClientConfig::new();
    for (key, value) in config.kafka.producer_client_options() {
        client.set(key, value);
    }
    let producer: FutureProducer = crate::generate::traffic_producer(client)?;
    produce(
        &producer,
        &codec,
        &traffic.events,
        &config.kafka.transactions_topic,
        &config.kafka.verdict_topics[0],
        NonZeroU32::new(args.rate),
    )
    .await?;
    println!(
        "published {} transactions and {} verdicts ({} counters in the ground truth)",
        traffic.truth.transactions,
        traffic.truth.verdicts,
        traffic.truth.counters.len()
    );
    Ok(())
}
