//! `fds-worker demo`: the whole system on a local stack, with a ground-truth check at the end.
//! The arguments are the product's ([`DemoArgs`]); this is what runs them.

use std::num::NonZeroU32;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::demo::{LocalStack, Progress, wait_until_finished};
use crate::localstack::{Apicurio, ClusterOptions};
use fds_worker::cli::demo::{DemoArgs, KafkaKind};
use fds_worker::cli::generate::{GenerateArgs, traffic_settings};
use fds_worker::cli::run::Service;
use fds_worker::cli::signals;
use fds_worker::config::Config;
use fds_worker::event::VerdictAction;
use fds_worker::generate::{GeneratedEvent, GroundTruth, generate, produce, verify};
use fds_worker::metrics::Metrics;
use fds_worker::pipeline::{plan_settings, producer_codec};
use fds_worker::slot::keys::{Entity, KeyBuilder};

/// Runs the demo.
pub async fn run(args: DemoArgs, config: Config) -> anyhow::Result<()> {
    let kafka_name = match args.kafka {
        KafkaKind::Mock => "a Kafka mock cluster",
        KafkaKind::Apache => "3 Apache Kafka brokers (KRaft)",
    };
    println!("starting a 6-node Redis Cluster (3 masters + 3 replicas) and {kafka_name}…");
    let (partitions, kafka) = (args.partitions, args.kafka);
    let stack = tokio::task::spawn_blocking(move || {
        LocalStack::start_with(ClusterOptions::default(), kafka.into(), partitions)
    })
    .await?
    .context("starting the local stack")?;
    println!(
        "  redis: {}\n  kafka: {}",
        stack.cluster.seed_urls().join(" "),
        stack.kafka.bootstrap_servers()
    );
    let registry = if args.registry {
        println!("starting a Schema Registry (Apicurio, Confluent-compatible API)…");
        Some(
            tokio::task::spawn_blocking(Apicurio::start)
                .await?
                .context("starting the Schema Registry")?,
        )
    } else {
        None
    };
    let mut config = stack.config(config, "fds-demo");
    if let Some(registry) = &registry {
        config.schemas.registry.urls = vec![registry.ccompat_url()];
        println!("  schema registry: {}", registry.ccompat_url());
    }

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
    println!("features ({}):", config.features.len());
    for f in &config.features {
        println!(
            "  {:<16} {:<8} {:<8} window {:>6} tile {:>5} {}",
            f.name,
            f.entity.as_str(),
            f.aggregate.as_str(),
            format!("{}s", f.window.as_secs()),
            format!("{}s", f.tile.as_secs()),
            f.threshold
                .map(|t| format!("threshold {t}"))
                .unwrap_or_default()
        );
    }
    println!(
        "rule version {}",
        fds_worker::pipeline::rule_version(&config)
    );
    println!(
        "publishing {} transactions + {} verdicts at {}/s; running the worker…",
        traffic.truth.transactions, traffic.truth.verdicts, args.rate
    );
    // With a registry: the schemas registered under the topics' subjects, written with the
    // registry's ids (as `generate` and `blacklist add` do).
    let codec = producer_codec(
        &config,
        &config.kafka.transactions_topic,
        &config.kafka.verdict_topics[0],
    )
    .await?;
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
    let service = Service::start(&config).await?;
    let metrics_addr = service.addr();
    println!("  metrics: http://{metrics_addr}/metrics  (also /healthz, /readyz)");
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
                "  t={:>4}s consumed={:>7} enriched={:>7} ({:>6}/s) verdicts={:>5} breaches={:>5} late={:>4} DLQ={}",
                elapsed.as_secs(),
                p.consumed,
                p.enriched,
                p.enriched.saturating_sub(last.enriched),
                p.verdicts,
                p.breaches,
                metrics.late_events.get(),
                p.dead_lettered
            );
            last = *p;
        },
    )
    .await;
    publisher.await?.context("publishing traffic")?;
    if !finished {
        let _ = stop.send(());
        worker.await?.context("running the worker")?;
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
        "  transactions {}  enriched {}  verdicts {}  dead-lettered {}  redis units {}",
        traffic.truth.transactions,
        progress.enriched,
        progress.verdicts,
        progress.dead_lettered,
        metrics.redis_units_sent.get()
    );
    println!(
        "  counters checked {}  lost increments {}  double-counted {}  blacklist entries checked {}  problems {}",
        report.counters,
        report.lost_increments(),
        report.doubled_increments(),
        report.blacklist,
        report.blacklist_problems.len()
    );
    // Per feature with a threshold: transactions over it by the generator's truth (exact for
    // user features; for shared entities, the least value any delivery order gives).
    for f in config.features.iter().filter(|f| f.threshold.is_some()) {
        let over = traffic
            .truth
            .features
            .values()
            .flatten()
            .filter(|e| e.name == f.name && e.threshold.is_some_and(|t| e.low > t))
            .count();
        println!(
            "  feature {:<16} > {:<4} {over} transactions (ground truth)",
            f.name,
            f.threshold.unwrap_or_default()
        );
    }
    if let Some(registry) = &registry {
        println!(
            "  schema registry subjects: {}",
            registry_subjects(registry).context("listing the registry's subjects")?
        );
    }
    if report.is_exact() {
        println!("OK: every counter equals the ground truth.");
    } else {
        for problem in report.blacklist_problems.iter().take(10) {
            println!("  blacklist: {problem}");
        }
    }
    if args.keep {
        print_try_it(
            &stack,
            registry.as_ref(),
            &config,
            metrics_addr,
            &traffic.events,
            &traffic.truth,
        );
        signals::shutdown().await;
    }
    let _ = stop.send(());
    worker.await?.context("running the worker")?;
    if !report.is_exact() {
        bail!("Redis does not match the ground truth");
    }
    Ok(())
}

/// What `--keep` prints: the environment that points every command at the stack, and ops
/// commands to try with ids from the generated traffic.
fn print_try_it(
    stack: &LocalStack,
    registry: Option<&Apicurio>,
    config: &Config,
    metrics_addr: std::net::SocketAddr,
    events: &[GeneratedEvent],
    truth: &GroundTruth,
) {
    let user = events.iter().find_map(|event| match event {
        GeneratedEvent::Transaction(transaction) => Some(transaction.user_id.as_str()),
        GeneratedEvent::Verdict(_) => None,
    });
    // The last ADD whose entry the ground truth expects to be there at the end.
    let listed = events.iter().rev().find_map(|event| match event {
        GeneratedEvent::Verdict(verdict)
            if verdict.action == VerdictAction::Add
                && truth.blacklist.contains_key(&KeyBuilder::live().blacklist(
                    &Entity::new(verdict.subject.kind, verdict.subject.value.clone()).tag(),
                )) =>
        {
            Some(&verdict.subject)
        }
        _ => None,
    });
    // The worker binary's directory first on PATH, so the commands run the same build.
    let path = super::worker_binary()
        .ok()
        .and_then(|exe| Some(format!("PATH={}:$PATH ", exe.parent()?.display())))
        .unwrap_or_default();
    let registry = registry
        .map(|r| format!(" FDS_SCHEMAS__REGISTRY__URLS={}", r.ccompat_url()))
        .unwrap_or_default();
    println!(
        "\nThe stack and the worker keep running until Ctrl-C. In another terminal:\n  \
         export {path}FDS_REDIS__NODES={} FDS_KAFKA__BROKERS={}{registry}\n  \
         fds-worker cluster status",
        stack.cluster.seed_urls().join(","),
        stack.kafka.bootstrap_servers()
    );
    if let Some(subject) = listed {
        println!(
            "  fds-worker blacklist check {} '{}'",
            subject.kind.as_str(),
            subject.value
        );
    }
    println!(
        "  fds-worker blacklist add ip 203.0.113.7 --level FRAUD --reason 'demo'   # via {}\n  \
         fds-worker blacklist check ip 203.0.113.7",
        config.kafka.verdict_topics[0]
    );
    if let Some(user) = user {
        println!("  fds-worker tail --user '{user}' --from-beginning --count 3");
    }
    println!("  curl -s http://{}/metrics | grep '^fds_'", metrics_addr);
}

/// The registry's subjects, each with its versions' count (`GET /subjects`, then
/// `GET /subjects/{subject}/versions`), as one line.
fn registry_subjects(registry: &Apicurio) -> anyhow::Result<String> {
    let get = |path: &str| -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", registry.ccompat_url());
        let text = ureq::get(&url)
            .call()
            .with_context(|| format!("GET {url}"))?
            .body_mut()
            .read_to_string()?;
        Ok(serde_json::from_str(&text)?)
    };
    let subjects = get("/subjects")?;
    let mut listed = Vec::new();
    for subject in subjects.as_array().into_iter().flatten() {
        let name = subject.as_str().unwrap_or_default();
        let versions = get(&format!("/subjects/{name}/versions"))?;
        let count = versions.as_array().map_or(0, Vec::len);
        listed.push(format!(
            "{name} ({count} version{})",
            if count == 1 { "" } else { "s" }
        ));
    }
    Ok(listed.join(", "))
}
