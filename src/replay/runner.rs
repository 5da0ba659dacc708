//! The replay loop: read the partitions from their start offsets until every one reached its
//! end bound (a [`RangeReader`]), keep the records inside the event-time range, and send them
//! in batches — rate-limited — through the same [`Stage`] as the live worker (or, in a dry run,
//! through the planner only).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rdkafka::ClientConfig;
use rdkafka::consumer::StreamConsumer;

use super::bounds::TimeWindow;
use super::positions::{Cursor, Decision};
use super::progress::{ReplayProgress, TopicProgress};
use super::seek::{PartitionRange, partition_ranges};
use super::summary::{KeyCounter, PartitionSummary, ReplaySummary, TopicSummary};
use super::{LIVE_NAMESPACE, ReplayError, ReplayOptions, key_namespace};
use crate::codec::Codec;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::{
    Decoder, RunError, Stage, decode, decoder_from_config, plan_settings, resolve_batch, unix_ms,
};
use crate::plan::{EventBody, Planner};
use crate::source::SourceMessage;
use crate::source::range::{End, PartitionEnd, RangeReader, Read, Span, Start};

/// What batches go through.
enum Engine {
    /// Decode and plan only.
    DryRun(Box<DryRun>),
    /// The live path, paced.
    Apply {
        stage: Box<Stage>,
        limiter: DefaultDirectRateLimiter,
    },
}

/// What a dry run decodes and plans with.
struct DryRun {
    decoder: Decoder,
    planner: Planner,
    /// With a Schema Registry: how unseen ids are asked for (see [`resolve_batch`]).
    registry_backoff: (Duration, Duration),
    metrics: Metrics,
}

impl Engine {
    fn decoder(&self) -> &Decoder {
        match self {
            Engine::DryRun(dry) => &dry.decoder,
            Engine::Apply { stage, .. } => &stage.decoder,
        }
    }
}

/// One partition being read.
struct PartitionState {
    range: PartitionRange,
    topic: usize,
    cursor: Cursor,
    next: i64,
    stopped: Option<String>,
}

impl PartitionState {
    /// Records counted as read for progress: all of them once stopped.
    fn progress(&self) -> u64 {
        if self.stopped.is_some() {
            self.range.len()
        } else {
            (self.next - self.range.start).max(0) as u64
        }
    }
}

struct Replay<'a> {
    reader: RangeReader,
    engine: Engine,
    batch: Vec<SourceMessage>,
    batch_size: usize,
    partitions: Vec<PartitionState>,
    index: HashMap<(Arc<str>, i32), usize>,
    summary: ReplaySummary,
    keys: KeyCounter,
    progress: &'a mut dyn ReplayProgress,
}

pub(super) async fn run(
    config: &Config,
    options: &ReplayOptions,
    metrics: Metrics,
    progress: &mut dyn ReplayProgress,
) -> Result<ReplaySummary, ReplayError> {
    let started = Instant::now();
    let namespace = key_namespace(&options.namespace)?;
    for topic in &options.topics {
        if topic != &config.kafka.transactions_topic && !config.kafka.is_verdict_topic(topic) {
            return Err(ReplayError::NotASourceTopic(topic.clone()));
        }
    }
    let lateness_ms = options.max_lateness.as_millis() as i64;
    let window = TimeWindow::new(&options.from, options.to, lateness_ms)?;
    let consumer = replay_consumer(config)?;
    let live = namespace.is_empty();
    let ranges = partition_ranges(
        &consumer,
        config,
        &options.topics,
        &options.from,
        options.max_lateness,
        live,
    )?;
    let shown_namespace = if live {
        LIVE_NAMESPACE.to_owned()
    } else {
        namespace.clone()
    };
    let engine = if options.dry_run {
        let mut decoder = decoder_from_config(config).map_err(RunError::Schemas)?;
        if decoder.registry.is_some() {
            // Every id is the registry's; a dry run registers nothing (no enrichment written).
            decoder.codec = Codec::registry_reader(config.limits.max_message_bytes as usize)
                .map_err(|e| RunError::Schemas(e.to_string()))?;
        }
        let registry = &config.schemas.registry;
        Engine::DryRun(Box::new(DryRun {
            decoder,
            planner: Planner::new(plan_settings(config, &namespace)),
            registry_backoff: (registry.retry_backoff, registry.retry_backoff_max),
            metrics,
        }))
    } else {
        let mut stage =
            Stage::from_config(config, &namespace, metrics, Some(shown_namespace.clone())).await?;
        stage.publish_enrichment = options.publish_enrichment;
        stage.open_transactions(&config.kafka, "-replay").await?;
        Engine::Apply {
            stage: Box::new(stage),
            limiter: RateLimiter::direct(Quota::per_second(options.rate)),
        }
    };
    let topics: Vec<Arc<str>> = options
        .topics
        .iter()
        .map(|t| Arc::from(t.as_str()))
        .collect();
    let mut summary = ReplaySummary {
        namespace: shown_namespace,
        dry_run: options.dry_run,
        from: match &options.from {
            super::StartBound::Time(time) => time.to_string(),
            super::StartBound::Earliest => "earliest".to_owned(),
            super::StartBound::Offsets(_) => "given offsets".to_owned(),
        },
        to: options.to.map(|t| t.to_string()),
        ..ReplaySummary::default()
    };
    summary.topics = topics
        .iter()
        .map(|t| TopicSummary {
            topic: t.to_string(),
            ..TopicSummary::default()
        })
        .collect();
    let mut partitions = Vec::with_capacity(ranges.len());
    let mut index = HashMap::new();
    for range in ranges {
        let topic = topics
            .iter()
            .position(|t| **t == *range.topic)
            .expect("ranges are of the replayed topics");
        summary.topics[topic].partitions += 1;
        summary.topics[topic].total += range.len();
        tracing::info!(
            topic = %range.topic,
            partition = range.partition,
            start = range.start,
            end = range.end,
            start_reason = %range.start_reason,
            end_reason = %range.end_reason,
            "replay range"
        );
        index.insert(
            (Arc::clone(&topics[topic]), range.partition),
            partitions.len(),
        );
        partitions.push(PartitionState {
            next: range.start,
            stopped: range.is_empty().then(|| range.end_reason.to_string()),
            cursor: Cursor::new(window),
            topic,
            range,
        });
    }
    let spans: Vec<Span> = partitions
        .iter()
        .filter(|state| state.stopped.is_none())
        .map(|state| Span {
            topic: Arc::clone(&topics[state.topic]),
            partition: state.range.partition,
            start: Start::Offset(state.range.start),
            end: End::Offset(state.range.end),
        })
        .collect();
    let reader = RangeReader::open(consumer, &spans)?;
    let mut replay = Replay {
        reader,
        engine,
        batch: Vec::new(),
        batch_size: options.batch_size.clamp(1, options.rate.get() as usize),
        partitions,
        index,
        summary,
        keys: KeyCounter::default(),
        progress,
    };
    replay.read().await?;
    let mut summary = replay.finish().await?;
    summary.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(summary)
}

/// A consumer that is assigned partitions, never joins a group and never commits.
fn replay_consumer(config: &Config) -> Result<StreamConsumer, ReplayError> {
    let mut client = ClientConfig::new();
    for (key, value) in config.kafka.consumer_client_options() {
        client.set(key, value);
    }
    // A group id of its own: librdkafka wants one, and nothing is ever committed to it.
    client
        .set("group.id", format!("{}-replay", config.kafka.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(|source| ReplayError::Kafka {
            what: "the replay consumer".to_owned(),
            source,
        })
}

fn event_time_ms(body: &EventBody) -> i64 {
    match body {
        EventBody::Transaction(tx) => tx.event_time_ms,
        EventBody::Verdict(verdict) => verdict.event_time_ms,
    }
}

impl Replay<'_> {
    fn reading(&self) -> bool {
        self.partitions.iter().any(|s| s.stopped.is_none())
    }

    /// Reads until every partition stopped, sending full batches as they fill.
    async fn read(&mut self) -> Result<(), ReplayError> {
        self.report();
        while let Some(step) = self.reader.next().await {
            let idle = match step {
                Ok(Read::Record(record)) => {
                    self.receive(record);
                    false
                }
                Ok(Read::Ended(end)) => {
                    self.ended(&end);
                    false
                }
                Ok(Read::Idle) => true,
                Err(error) => {
                    tracing::warn!(%error, "replay consumer");
                    true
                }
            };
            if !self.batch.is_empty()
                && (self.batch.len() >= self.batch_size || idle || !self.reading())
            {
                self.send_batch().await?;
                self.report();
            } else if idle {
                self.report();
            }
        }
        Ok(())
    }

    fn receive(&mut self, record: SourceMessage) {
        let Some(&at) = self
            .index
            .get(&(Arc::clone(&record.topic), record.partition))
        else {
            return;
        };
        if self.partitions[at].stopped.is_some() {
            return;
        }
        let now_ms = unix_ms(SystemTime::now());
        let decision = {
            let state = &mut self.partitions[at];
            state.next = record.offset + 1;
            match decode(self.engine.decoder(), &record, now_ms) {
                Ok(event) => state.cursor.event(event_time_ms(&event.body)),
                Err(_) => state.cursor.poison(),
            }
        };
        let topic = &mut self.summary.topics[self.partitions[at].topic];
        topic.scanned += 1;
        match decision {
            Decision::Replay => {
                topic.replayed += 1;
                self.batch.push(record);
            }
            Decision::Before => topic.before_range += 1,
            Decision::After => topic.after_range += 1,
            Decision::Stop => {
                topic.after_range += 1;
                let reason = format!(
                    "an event past --to + max lateness at offset {}",
                    record.offset
                );
                self.stop(at, Some(reason));
            }
        }
    }

    /// Partition `end` was read to its end offset (its last record, or its position past the
    /// end without a record: transaction markers, compacted offsets).
    fn ended(&mut self, end: &PartitionEnd) {
        let key = (Arc::clone(&end.topic), end.partition);
        if let Some(&at) = self.index.get(&key) {
            let state = &mut self.partitions[at];
            state.next = state.next.max(end.next.min(state.range.end));
            self.stop(at, None);
        }
    }

    /// Finishes partition `at` (`None`: it reached its end offset); the reader stops fetching
    /// it.
    fn stop(&mut self, at: usize, reason: Option<String>) {
        let state = &mut self.partitions[at];
        if state.stopped.is_some() {
            return;
        }
        state.stopped = Some(reason.unwrap_or_else(|| state.range.end_reason.to_string()));
        self.reader
            .finish(&state.range.topic, state.range.partition);
    }

    /// Sends the batch; fails if a dead letter of it could not be published.
    async fn send_batch(&mut self) -> Result<(), ReplayError> {
        let batch = std::mem::take(&mut self.batch);
        let now_ms = unix_ms(SystemTime::now());
        match &self.engine {
            Engine::DryRun(dry) => {
                let DryRun {
                    decoder,
                    planner,
                    registry_backoff,
                    metrics,
                } = &**dry;
                resolve_batch(decoder, &batch, *registry_backoff, metrics).await;
                let mut events = Vec::with_capacity(batch.len());
                for record in &batch {
                    match decode(decoder, record, now_ms) {
                        Ok(event) => events.push(event),
                        Err(_) => self.summary.dead_lettered += 1,
                    }
                }
                let plan = planner.plan(&events, now_ms);
                let late: u32 = plan.events.iter().map(|e| e.late_windows).sum();
                self.keys.add(&plan.units, u64::from(late));
            }
            Engine::Apply { stage, limiter } => {
                let n = NonZeroU32::new(batch.len() as u32).unwrap_or(NonZeroU32::MIN);
                // `n` ≤ batch_size ≤ rate, the limiter's burst, so this cannot fail.
                let _ = limiter.until_n_ready(n).await;
                let late_before = stage.metrics.late_events.get();
                let redrives = vec![None; batch.len()];
                stage.resolve_writer_schemas(&batch).await;
                let (prepared, units) = stage.prepare(batch, redrives, now_ms);
                self.keys
                    .add(&units, stage.metrics.late_events.get() - late_before);
                let results = stage.store.submit(units);
                let mut done = stage.complete(prepared, results).await;
                if stage.collect_outputs && !done.outputs.is_empty() {
                    // Exactly once: the batch's output in one transaction.
                    let (enriched, dead_lettered) = stage
                        .commit_outputs(std::mem::take(&mut done.outputs), None)
                        .await?;
                    done.enriched += enriched;
                    done.dead_lettered += dead_lettered;
                }
                let summary = &mut self.summary;
                summary.dead_lettered += done.dead_lettered;
                summary.enrichment_published += done.enriched;
                summary.enrichment_withheld += done.withheld;
                summary.writes_applied += done.writes_applied;
                summary.writes_skipped += done.writes_skipped;
                summary.units += done.units;
                if let Some(failure) = done.stopped {
                    return Err(RunError::from(failure).into());
                }
            }
        }
        Ok(())
    }

    fn topic_progress(&self) -> Vec<TopicProgress> {
        let mut topics: Vec<TopicProgress> = self
            .summary
            .topics
            .iter()
            .map(|t| TopicProgress {
                topic: t.topic.clone(),
                total: t.total,
                scanned: 0,
                replayed: t.replayed,
            })
            .collect();
        for state in &self.partitions {
            topics[state.topic].scanned += state.progress();
        }
        topics
    }

    fn report(&mut self) {
        let topics = self.topic_progress();
        self.progress.update(&topics);
    }

    async fn finish(mut self) -> Result<ReplaySummary, ReplayError> {
        if !self.batch.is_empty() {
            self.send_batch().await?;
        }
        let topics = self.topic_progress();
        self.progress.finish(&topics);
        if let Engine::Apply { stage, .. } = &self.engine {
            stage
                .flush(Duration::from_secs(10))
                .map_err(|source| ReplayError::Kafka {
                    what: "flushing the producer".to_owned(),
                    source,
                })?;
        }
        let mut summary = self.summary;
        summary.planned = self.keys.counts();
        summary.partitions = self
            .partitions
            .into_iter()
            .map(|state| PartitionSummary {
                topic: state.range.topic.clone(),
                partition: state.range.partition,
                start: state.range.start,
                start_reason: state.range.start_reason.to_string(),
                end: state.range.end,
                end_reason: state.range.end_reason.to_string(),
                next: state.next,
                stopped: state.stopped.unwrap_or_default(),
            })
            .collect();
        tracing::info!(
            namespace = %summary.namespace,
            replayed = summary.replayed(),
            read = summary.scanned(),
            dead_lettered = summary.dead_lettered,
            "replay finished"
        );
        Ok(summary)
    }
}
