//! `replay` on a real 6-node Redis Cluster and Apache Kafka: a replay into a shadow
//! namespace reproduces the live worker's keys exactly (with the 18 features of
//! `config/features-full.toml` too: sums per currency, and distinct counts whose HyperLogLogs are
//! compared by PFCOUNT), repeating it changes nothing, replaying
//! into the live keys double counts nothing, event-time bounds select exactly the generator's
//! events in range, a dry run writes nothing, and a poison record in the range is dead-lettered
//! with the replay marker.
//!
//! The mock cluster answers `offsets_for_times` with no usable offset, so these runs take the
//! fallback path (earliest offset, skip by event time); the choice of start offsets from a real
//! broker's answers is unit-tested in `replay::positions`.

mod common;

use std::num::NonZeroU32;
use std::time::Duration;

use common::keys::{differences, keys_matching, snapshot};
use common::worker::{
    assert_ground_truth, enrichment_counts, now_ms, read_all, start_stack, start_worker,
    test_config,
};
use fds_testkit::demo::{KafkaSetup, LocalStack, wait_until_finished};
use fds_worker::codec::Codec;
use fds_worker::config::Config;
use fds_worker::generate::{
    GeneratedEvent, Traffic, TrafficSettings, generate, ground_truth, produce_at_event_time,
};
use fds_worker::metrics::Metrics;
use fds_worker::pipeline::plan_settings;
use fds_worker::replay::progress::{Bars, LogLines, Quiet, ReplayProgress};
use fds_worker::replay::{EventTime, ReplayOptions, ReplaySummary, StartBound, replay};
use fds_worker::sink::dead_letter::header;
use rdkafka::producer::FutureRecord;

/// The default test config with counters that outlive the test (the live run and the replays
/// all happen while every bucket of the traffic is still alive).
fn replay_config(stack: &LocalStack) -> Config {
    let mut config = test_config(stack);
    config.velocity.grace = Duration::from_secs(600);
    config
}

/// The generator's settings for `transactions` over `[start_ms, start_ms + span_ms)`.
fn settings_at(transactions: usize, seed: u64, start_ms: i64, span_ms: i64) -> TrafficSettings {
    TrafficSettings {
        seed,
        transactions,
        users: transactions / 10,
        burst_probability: 0.02,
        verdict_ratio: 0.05,
        start_ms,
        span_ms,
    }
}

/// Seeded traffic over `[start_ms, start_ms + span_ms)` with keys in the live namespace.
fn traffic_at(
    config: &Config,
    transactions: usize,
    seed: u64,
    start_ms: i64,
    span_ms: i64,
) -> Traffic {
    let settings = settings_at(transactions, seed, start_ms, span_ms);
    generate(&settings, &plan_settings(config, ""))
}

/// [`traffic_at`] without bursts, whose events are up to
/// [`MAX_BURST_LAG_MS`](fds_worker::generate::MAX_BURST_LAG_MS) older than the stream.
fn traffic_without_bursts(
    config: &Config,
    transactions: usize,
    seed: u64,
    start_ms: i64,
    span_ms: i64,
) -> Traffic {
    let settings = TrafficSettings {
        burst_probability: 0.0,
        ..settings_at(transactions, seed, start_ms, span_ms)
    };
    generate(&settings, &plan_settings(config, ""))
}

/// The generator's ground truth of `events`, with keys in `namespace`.
fn truth_in(config: &Config, events: Vec<GeneratedEvent>, namespace: &str) -> Traffic {
    let truth = ground_truth(&events, &plan_settings(config, namespace));
    Traffic { events, truth }
}

fn event_time(event: &GeneratedEvent) -> i64 {
    match event {
        GeneratedEvent::Transaction(tx) => tx.event_time_ms,
        GeneratedEvent::Verdict(verdict) => verdict.event_time_ms,
    }
}

/// Publishes `events` with their event times as record timestamps, as producers of event data
/// do, so the brokers' time index answers `offsets_for_times` by event time.
async fn publish(stack: &LocalStack, config: &Config, events: &[GeneratedEvent]) {
    let producer = stack.producer().unwrap();
    produce_at_event_time(
        &producer,
        &Codec::builtin(),
        events,
        &config.kafka.transactions_topic,
        &config.kafka.verdict_topics[0],
    )
    .await
    .expect("traffic published");
}

/// Runs the live worker until it finished every event of `traffic`, then stops it (it
/// commits its offsets on the way out).
async fn run_live(config: &Config, traffic: &Traffic) {
    let worker = start_worker(config);
    let (progress, finished) = wait_until_finished(
        &worker.metrics,
        config,
        traffic.events.len() as u64,
        Duration::from_secs(120),
        Duration::from_millis(50),
        |_, _| {},
    )
    .await;
    assert!(finished, "live worker finished: {progress:?}");
    assert_eq!(progress.dead_lettered, 0);
    worker.stop().await;
}

fn options(config: &Config, from: StartBound, namespace: &str) -> ReplayOptions {
    let mut options = ReplayOptions::new(config, from);
    options.namespace = namespace.to_owned();
    options.rate = NonZeroU32::new(20_000).unwrap();
    options
}

async fn run_replay(config: &Config, options: &ReplayOptions) -> ReplaySummary {
    run_replay_with(config, options, &mut Quiet).await
}

async fn run_replay_with(
    config: &Config,
    options: &ReplayOptions,
    progress: &mut dyn ReplayProgress,
) -> ReplaySummary {
    let summary = replay(config, options, Metrics::unregistered(), progress)
        .await
        .expect("replay runs");
    eprintln!("{summary}");
    summary
}

/// Tiles (hash fields) of every count and sum feature key under `prefix`.
fn feature_tiles(stack: &LocalStack, prefix: &str) -> usize {
    keys_matching(stack, &format!("{prefix}ft:*"))
        .into_iter()
        .map(|(master, key)| {
            // Tiles only: a count or sum hash also holds its window's running total (`ws`,
            // `we`, `wt`, `wv`).
            stack
                .cluster
                .query::<Vec<String>>(master, redis::cmd("HKEYS").arg(&key))
                .unwrap()
                .iter()
                .filter(|field| field.parse::<i64>().is_ok())
                .count()
        })
        .sum()
}

/// Keys of every master (all namespaces).
fn db_size(stack: &LocalStack) -> i64 {
    let cluster = &stack.cluster;
    cluster
        .masters()
        .into_iter()
        .map(|m| cluster.query::<i64>(m, &redis::cmd("DBSIZE")).unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_into_a_shadow_namespace_reproduces_every_live_key() {
    let stack = start_stack().await;
    let config = replay_config(&stack);
    let start_ms = now_ms() - 20_000;
    let traffic = traffic_at(&config, 2_000, 11, start_ms, 20_000);
    publish(&stack, &config, &traffic.events).await;
    run_live(&config, &traffic).await;
    assert_ground_truth(&stack, &traffic).await;

    // Progress as log lines (stderr is not a terminal here), every update.
    let summary = run_replay_with(
        &config,
        &options(&config, StartBound::Time(EventTime(start_ms)), "shadow"),
        &mut LogLines::new(Duration::ZERO),
    )
    .await;
    assert_eq!(summary.replayed(), traffic.events.len() as u64);
    assert_eq!(summary.dead_lettered, 0);
    assert!(summary.writes_applied > 0);
    assert_eq!(summary.writes_skipped, 0, "a fresh namespace has no marks");
    assert_eq!(summary.enrichment_published, 0);
    assert_eq!(
        summary.enrichment_withheld,
        traffic.truth.transactions as u64
    );
    assert_eq!(summary.planned.late_windows, 0);

    for kind in ["ft", "bl"] {
        let live = snapshot(&stack, "", kind);
        let shadow = snapshot(&stack, "shadow:", kind);
        assert!(!live.is_empty(), "live {kind} keys exist");
        let diff = differences(&live, &shadow);
        assert!(
            diff.is_empty(),
            "{} of {} {kind} keys differ, e.g. {:?}",
            diff.len(),
            live.len(),
            &diff[..diff.len().min(5)]
        );
    }
    assert_eq!(feature_tiles(&stack, ""), traffic.truth.counters.len());
    // Enrichment was withheld: the topic holds the live worker's records only.
    let enriched = enrichment_counts(&stack, &config);
    assert_eq!(enriched.values().sum::<usize>(), traffic.truth.transactions);
}

/// [`replay_config`] with the 18 features of `config/features-full.toml`: counts, sums per
/// currency and distinct counts (HyperLogLog tiles).
fn full_features_config(stack: &LocalStack) -> Config {
    let mut config = replay_config(stack);
    let full = Config::from_toml_str(include_str!("../config/features-full.toml"))
        .expect("config/features-full.toml parses");
    config.features = full.features;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_reproduces_every_sum_and_distinct_feature_of_the_live_run() {
    let stack = start_stack().await;
    let config = full_features_config(&stack);
    assert!(
        config
            .features
            .iter()
            .any(|f| f.aggregate == fds_worker::config::Aggregate::Distinct)
            && config
                .features
                .iter()
                .any(|f| f.aggregate == fds_worker::config::Aggregate::Sum),
        "the full set has sums and distinct counts"
    );
    let start_ms = now_ms() - 20_000;
    let traffic = traffic_at(&config, 2_000, 23, start_ms, 20_000);
    assert!(!traffic.truth.distinct.is_empty(), "distinct truths exist");
    publish(&stack, &config, &traffic.events).await;
    run_live(&config, &traffic).await;
    // Counts and sums exactly, distinct counts within the HyperLogLog bound.
    assert_ground_truth(&stack, &traffic).await;

    let summary = run_replay(
        &config,
        &options(&config, StartBound::Time(EventTime(start_ms)), "shadow"),
    )
    .await;
    assert_eq!(summary.replayed(), traffic.events.len() as u64);
    assert_eq!(summary.dead_lettered, 0);
    // `ft:` count and sum hashes (sums per currency), `fd:` distinct tiles (HyperLogLogs).
    for kind in ["ft", "fd"] {
        let live = snapshot(&stack, "", kind);
        let shadow = snapshot(&stack, "shadow:", kind);
        assert!(!live.is_empty(), "live {kind} keys exist");
        if kind == "fd" {
            let hyperloglogs = live.values().filter(|(v, _)| v.starts_with("hll:")).count();
            assert_eq!(
                hyperloglogs,
                traffic.truth.distinct.len(),
                "one HyperLogLog per distinct tile of the truth"
            );
        }
        let diff = differences(&live, &shadow);
        assert!(
            diff.is_empty(),
            "{} of {} {kind} keys differ (HyperLogLogs by PFCOUNT), e.g. {:?}",
            diff.len(),
            live.len(),
            &diff[..diff.len().min(5)]
        );
    }
    let sums = snapshot(&stack, "", "ft")
        .keys()
        .filter(|key| key.contains("_spend_"))
        .count();
    assert!(sums > 0, "sum features were written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_range_twice_changes_nothing_the_second_time() {
    let stack = start_stack().await;
    let config = replay_config(&stack);
    let traffic = traffic_at(&config, 1_500, 12, now_ms() - 15_000, 15_000);
    publish(&stack, &config, &traffic.events).await;
    let replay_options = options(&config, StartBound::Earliest, "again");

    let first = run_replay(&config, &replay_options).await;
    assert_eq!(first.replayed(), traffic.events.len() as u64);
    assert_ground_truth(&stack, &truth_in(&config, traffic.events.clone(), "again")).await;
    let before: Vec<_> = ["ft", "bl", "ao"]
        .map(|kind| snapshot(&stack, "again:", kind))
        .into();

    let second = run_replay(&config, &replay_options).await;
    assert_eq!(second.replayed(), first.replayed());
    assert_eq!(second.planned, first.planned);
    assert_eq!(second.writes_applied, 0);
    assert_eq!(second.writes_skipped, first.writes_applied);
    let after: Vec<_> = ["ft", "bl", "ao"]
        .map(|kind| snapshot(&stack, "again:", kind))
        .into();
    for (kind, (before, after)) in ["ft", "bl", "ao"].iter().zip(before.iter().zip(&after)) {
        let diff = differences(before, after);
        assert!(diff.is_empty(), "{kind}: {:?}", &diff[..diff.len().min(5)]);
    }
    // Nothing outside the namespace was written.
    assert!(snapshot(&stack, "", "ft").is_empty());
    assert_ground_truth(&stack, &truth_in(&config, traffic.events.clone(), "again")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_into_the_live_keys_after_the_live_worker_counts_nothing_twice() {
    let stack = start_stack().await;
    let config = replay_config(&stack);
    let traffic = traffic_at(&config, 1_500, 13, now_ms() - 15_000, 15_000);
    publish(&stack, &config, &traffic.events).await;
    run_live(&config, &traffic).await;
    let before: Vec<_> = ["ft", "bl"].map(|kind| snapshot(&stack, "", kind)).into();

    let summary = run_replay(&config, &options(&config, StartBound::Earliest, "live")).await;
    assert_eq!(summary.namespace, "live");
    // The live group committed everything, so the whole range is replayed ...
    assert_eq!(summary.replayed(), traffic.events.len() as u64);
    // ... and apply-once recognises every write as already applied.
    assert_eq!(summary.writes_applied, 0);
    assert!(summary.writes_skipped > 0);
    let after: Vec<_> = ["ft", "bl"].map(|kind| snapshot(&stack, "", kind)).into();
    for (before, after) in before.iter().zip(&after) {
        let diff = differences(before, after);
        assert!(diff.is_empty(), "{:?}", &diff[..diff.len().min(5)]);
    }
    assert_ground_truth(&stack, &traffic).await;

    // A live group that has committed nothing: replaying into the live keys would run ahead
    // of it, so nothing is replayed.
    let mut fresh = config.clone();
    fresh.kafka.group_id = common::random_name("never-ran");
    let summary = run_replay(&fresh, &options(&fresh, StartBound::Earliest, "")).await;
    assert_eq!(summary.scanned(), 0);
    assert!(
        summary
            .partitions
            .iter()
            .all(|p| p.end_reason == "live group has no committed offset"),
        "{:?}",
        summary.partitions
    );
}

/// Replays `[start + 10 s, start + 20 s)` of 30 s of traffic on `stack` into `window`; checks
/// that exactly the events of that range were applied and returns the summary and the number
/// of events before the range.
async fn replay_the_middle_third(stack: &LocalStack) -> (ReplaySummary, u64) {
    let mut config = replay_config(stack);
    config.replay.max_lateness = Duration::from_secs(1);
    let start_ms = now_ms() - 30_000;
    // Without bursts: their events are later than this replay's 1 s lateness allows (see
    // `traffic_without_bursts`), so the range would rightly miss some of them.
    let traffic = traffic_without_bursts(&config, 3_000, 14, start_ms, 30_000);
    publish(stack, &config, &traffic.events).await;

    let (from, to) = (start_ms + 10_000, start_ms + 20_000);
    let in_range: Vec<GeneratedEvent> = traffic
        .events
        .iter()
        .filter(|e| (from..to).contains(&event_time(e)))
        .cloned()
        .collect();
    let before = traffic
        .events
        .iter()
        .filter(|e| event_time(e) < from)
        .count() as u64;
    let expected = truth_in(&config, in_range, "window");
    assert!(expected.truth.transactions > 500 && expected.truth.verdicts > 0);

    let mut replay_options = options(&config, StartBound::Time(EventTime(from)), "window");
    replay_options.to = Some(EventTime(to));
    // Progress bars (drawn only on a terminal).
    let summary = run_replay_with(&config, &replay_options, &mut Bars::default()).await;
    assert_eq!(summary.replayed(), expected.events.len() as u64);
    // Partitions stop at the first event later than `to` + 1 s, not at the high watermark.
    assert!(summary.scanned() < traffic.events.len() as u64);
    assert!(
        summary
            .partitions
            .iter()
            .any(|p| p.stopped.contains("past --to")),
        "{:?}",
        summary.partitions
    );
    // Every counter of the range equals the truth of the range alone (an event outside it
    // would show as double counting), and there are no other counters.
    assert_ground_truth(stack, &expected).await;
    assert_eq!(
        feature_tiles(stack, "window:"),
        expected.truth.counters.len()
    );
    (summary, before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_time_bounds_start_each_partition_at_the_brokers_time_answer() {
    let stack = start_stack().await;
    let (summary, before) = replay_the_middle_third(&stack).await;
    // Apache Kafka answers ListOffsets by time: every partition starts there, past the records
    // before `from - max_lateness`, and only the last second before `from` is read and skipped.
    for p in &summary.partitions {
        assert_eq!(p.start_reason, "by time", "{p:?}");
        assert!(p.start > 0, "not the earliest offset: {p:?}");
    }
    let skipped: u64 = summary.topics.iter().map(|t| t.before_range).sum();
    assert!(
        skipped * 5 < before,
        "skipped {skipped} of the {before} events before the range"
    );
}

/// librdkafka's mock cluster is used here because it is a broker that does not answer
/// ListOffsets by time (it answers every lookup with the end offset): the fallback — the
/// earliest offset, events before `from` skipped — must select exactly the same events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_time_bounds_fall_back_to_the_earliest_offset_where_the_broker_cannot_answer() {
    let stack =
        common::worker::start_stack_on(common::test_cluster_options(), KafkaSetup::Mock).await;
    let (summary, before) = replay_the_middle_third(&stack).await;
    for p in &summary.partitions {
        assert!(p.start_reason.starts_with("earliest"), "{p:?}");
    }
    assert_eq!(
        summary.topics.iter().map(|t| t.before_range).sum::<u64>(),
        before,
        "every event before the range is read and skipped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_writes_nothing_and_reports_the_planned_writes() {
    let stack = start_stack().await;
    let config = replay_config(&stack);
    let traffic = traffic_at(&config, 1_500, 15, now_ms() - 15_000, 15_000);
    publish(&stack, &config, &traffic.events).await;
    let keys_before = db_size(&stack);

    // No Redis at all: a dry run does not connect to it.
    let mut offline = config.clone();
    offline.redis.nodes = vec!["redis://127.0.0.1:1".to_owned()];
    let mut dry = options(&offline, StartBound::Earliest, "dry");
    dry.dry_run = true;
    let summary = run_replay(&offline, &dry).await;

    assert!(summary.dry_run);
    assert_eq!(summary.replayed(), traffic.events.len() as u64);
    let planned = summary.planned;
    let truth = &traffic.truth;
    assert_eq!(
        planned.velocity_increments,
        truth.counters.values().sum::<i64>() as u64
    );
    assert_eq!(planned.velocity_keys, truth.counters.len() as u64);
    let (adds, removes) = traffic.events.iter().fold((0, 0), |(a, r), e| match e {
        GeneratedEvent::Verdict(v) if v.action == fds_worker::event::VerdictAction::Add => {
            (a + 1, r)
        }
        GeneratedEvent::Verdict(_) => (a, r + 1),
        GeneratedEvent::Transaction(_) => (a, r),
    });
    assert_eq!(planned.blacklist_adds, adds);
    assert_eq!(planned.blacklist_removes, removes);
    assert_eq!(planned.late_windows, 0);
    assert!(planned.lookups >= truth.transactions as u64);
    assert!(planned.marks > 0 && planned.mark_keys > 0);
    assert_eq!(summary.dead_lettered, 0);
    assert_eq!((summary.units, summary.writes_applied), (0, 0));

    assert_eq!(db_size(&stack), keys_before, "nothing written to Redis");
    assert!(read_all(&stack, &config.kafka.enrichment_topic).is_empty());
    let dlq = config.kafka.dlq_topic(&config.kafka.transactions_topic);
    assert!(read_all(&stack, &dlq).is_empty());

    // Given offsets: only the listed partition, from that offset.
    let end = read_all(&stack, &config.kafka.transactions_topic)
        .iter()
        .filter(|m| m.partition == 2)
        .count() as i64;
    assert!(end > 10);
    let mut by_offset = options(
        &offline,
        format!("{}/2:10", config.kafka.transactions_topic)
            .parse::<StartBound>()
            .unwrap(),
        "dry",
    );
    by_offset.dry_run = true;
    by_offset.topics = vec![config.kafka.transactions_topic.clone()];
    let summary = run_replay(&offline, &by_offset).await;
    assert_eq!(summary.partitions.len(), 1);
    assert_eq!(
        (summary.partitions[0].partition, summary.partitions[0].start),
        (2, 10)
    );
    assert_eq!(summary.replayed(), (end - 10) as u64);
    assert_eq!(db_size(&stack), keys_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_in_the_range_is_dead_lettered_with_the_replay_marker() {
    let stack = start_stack().await;
    let config = replay_config(&stack);
    let start_ms = now_ms() - 15_000;
    let traffic = traffic_at(&config, 1_500, 16, start_ms, 15_000);
    let producer = stack.producer().unwrap();
    let transactions = config.kafka.transactions_topic.clone();
    let dlq = config.kafka.dlq_topic(&transactions);
    let poison = |label: &'static str| {
        let producer = producer.clone();
        let transactions = transactions.clone();
        async move {
            producer
                .send(
                    FutureRecord::to(&transactions)
                        .partition(0)
                        .key(label)
                        .payload(b"\x00not avro at all"),
                    Duration::from_secs(10),
                )
                .await
                .expect("poison published")
        }
    };
    // One poison record before the range (skipped), one among the range's events.
    let before = poison("before").await;
    publish(&stack, &config, &traffic.events).await;
    let inside = poison("inside").await;

    let summary = run_replay(
        &config,
        &options(&config, StartBound::Time(EventTime(start_ms)), "shadow"),
    )
    .await;
    assert_eq!(summary.dead_lettered, 1);
    assert_eq!(summary.replayed(), traffic.events.len() as u64 + 1);
    assert_eq!(summary.topics[0].before_range, 1);

    let dead_letters = read_all(&stack, &dlq);
    assert_eq!(dead_letters.len(), 1, "{dead_letters:?}");
    let dead_letter = &dead_letters[0];
    assert_eq!(dead_letter.header(header::REPLAY), Some("shadow"));
    assert_eq!(
        dead_letter.header(header::TOPIC),
        Some(transactions.as_str())
    );
    assert_eq!(dead_letter.header(header::PARTITION), Some("0"));
    assert_eq!(
        dead_letter.header(header::OFFSET),
        Some(inside.offset.to_string().as_str())
    );
    assert_ne!(before.offset, inside.offset);
    assert_eq!(dead_letter.key.as_deref(), Some(&b"inside"[..]));
    // The rest of the range was applied.
    assert_ground_truth(&stack, &truth_in(&config, traffic.events.clone(), "shadow")).await;

    // A redrive (which writes the live keys) leaves a shadow replay's dead letter alone.
    let redrive_options = fds_worker::redrive::RedriveOptions {
        topic: dlq.clone(),
        filters: Vec::new(),
        batch_size: 100,
    };
    let redriven = fds_worker::redrive::redrive(
        &config,
        &redrive_options,
        Metrics::unregistered(),
        |_, _| {},
    )
    .await
    .expect("redrive");
    assert_eq!(
        (redriven.read, redriven.other_namespace, redriven.redriven),
        (1, 1, 0),
        "{redriven:?}"
    );
}
