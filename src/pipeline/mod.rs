//! `run`: the live worker. One consumer loop polls Kafka, forms batches (size or linger),
//! decodes and plans them, submits their slot units in batch order, and hands each batch to a
//! task that waits for its units, publishes the results and reports back. The loop stores
//! offsets up to the contiguous watermark of finished records.
//!
//! Bounds: at most `pipeline.max_inflight_batches` batches are in flight; at the bound the
//! next batch keeps filling (up to `pipeline.batch_size`: a worker that falls behind catches up
//! with bigger batches). Once it is full the loop stops taking records (librdkafka's bounded
//! prefetch queue holds the next ones, and its fetcher waits); if that lasts
//! [`PAUSE_AFTER_STALL`] (an outage, not a busy moment) it pauses the assigned partitions and
//! goes on polling, so rebalances are served, until a batch finishes. (Pausing is not the first
//! resort: a paused partition's prefetched records are dropped and, measured against the mock
//! broker, records flowed again only ~0.9 s after the resume.) Finished-batch reports are
//! handled before new records (`biased` select).

mod committer;
mod decode;
mod outbox;
mod outputs;
mod rebalance;
mod resolve;
pub mod rules;
mod settings;
pub mod stage;
mod turn;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tracing::Instrument as _;

pub use decode::{Decoder, Poison, decode};
pub use resolve::resolve_batch;
pub use settings::{
    decoder_from_config, plan_settings, producer_codec, registry_codec, rule_version,
    store_settings,
};
pub use stage::{BatchDone, PreparedBatch, Stage, unix_ms};

use crate::config::Config;
use crate::config::Delivery;
use crate::metrics::{Metrics, TopicLabel};
use crate::sink::{PublishError, TransactionFailure};
use crate::source::access::{self, AccessError};
use crate::source::{
    Epoch, Partition, Redeliveries, SourceConsumer, SourceContext, SourceMessage, Watermarks,
    consumer_config,
};
use crate::store::StoreError;
use committer::Committer;
use resolve::Resolver;

/// Why the worker could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Redis could not be reached or the function library not loaded.
    #[error("redis: {0}")]
    Redis(#[from] StoreError),
    /// The Kafka client could not be created or subscribed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The brokers refused the worker's credentials, certificates or ACLs.
    #[error("kafka: {0}")]
    KafkaAccess(#[from] AccessError),
    /// The schema catalog could not be loaded.
    #[error("schemas: {0}")]
    Schemas(String),
    /// The Schema Registry refused the enrichment schema at start (its compatibility rule:
    /// the registry's message), refused the credentials, or could not be reached.
    #[error("{0}")]
    Registry(crate::codec::registry::RegistryError),
    /// A dead letter could not be published (nowhere left to put its record): the run stopped
    /// with that record unfinished, its offset not committed.
    #[error("kafka sink: {0}")]
    Sink(Box<PublishError>),
    /// Exactly-once delivery: the transactional producer is fenced or refused, or
    /// transactions kept failing for `kafka.produce_retry_budget`. Nothing past the last
    /// committed transaction is visible; a restart resumes from there.
    #[error("{0}")]
    Transaction(Box<TransactionFailure>),
    /// Exactly-once delivery: a transaction's thread did not return within the longest it can
    /// take while librdkafka keeps its own timeouts (blocked in librdkafka, as in
    /// confluentinc/librdkafka#5456). Its outcome is unknown; a restart resumes from the
    /// offsets the brokers hold.
    #[error(
        "kafka transaction `{transactional_id}` still running after {bound:?}, the longest it \
         can take: librdkafka is blocked past its own timeouts; a restart resumes from the \
         committed offsets"
    )]
    TransactionStalled {
        /// The producer's transactional id.
        transactional_id: String,
        /// The longest the transaction could take ([`crate::sink::commit_bound`]).
        bound: Duration,
    },
}

impl From<PublishError> for RunError {
    fn from(failure: PublishError) -> RunError {
        RunError::Sink(Box::new(failure))
    }
}

impl RunError {
    /// Errors that a restart will not fix (bad schema files, refused credentials or ACLs, a
    /// dead letter the broker refuses for good); the others may be transient.
    pub fn is_fatal(&self) -> bool {
        match self {
            RunError::Schemas(_) | RunError::KafkaAccess(_) => true,
            RunError::Registry(error) => !error.is_retryable(),
            RunError::Sink(failure) => !failure.error.retryable(),
            RunError::Transaction(failure) => failure.is_fatal(),
            _ => false,
        }
    }
}

/// What a run did, reported when it stops.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// Records consumed.
    pub consumed: u64,
    /// Enrichment records acked.
    pub enriched: u64,
    /// Dead letters acked.
    pub dead_lettered: u64,
    /// Units sent.
    pub units: u64,
    /// Batches finished.
    pub batches: u64,
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the worker until `shutdown` resolves, then drains: in-flight batches finish (up to
/// `pipeline.shutdown_deadline`), offsets are stored and committed, the producer is flushed.
///
/// A dead letter that cannot be published (see [`crate::sink::Sink`]) stops the run the same
/// way, without starting new batches, and returns [`RunError::Sink`]: offsets stay below that
/// record, so the next run processes it again.
pub async fn run(
    config: &Config,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, RunError> {
    // Polled from the start, so a signal while the worker connects, registers its schema or
    // checks its access is a graceful stop.
    tokio::pin!(shutdown);
    let mut stage = tokio::select! {
        stage = Stage::from_config(config, "", metrics, None) => stage?,
        () = &mut shutdown => return Ok(RunSummary::default()),
    };
    // SIGHUP reloads the rules file (and never terminates the worker).
    let reloader = tokio::spawn(rules::reload_on_sighup(Arc::clone(&stage.rules)));
    let _stop_reloader = AbortOnDrop(reloader);
    tokio::select! {
        checked = check_kafka_access(config) => checked?,
        () = &mut shutdown => return Ok(RunSummary::default()),
    }
    let mut client_config = consumer_config(&config.kafka);
    // Consumer lag comes from librdkafka's statistics (unless the operator set their own).
    if client_config.get("statistics.interval.ms").is_none() {
        let interval = config.metrics.poll_interval.as_millis().max(1);
        client_config.set("statistics.interval.ms", interval.to_string());
    }
    let mut context = SourceContext::with_lag(stage.metrics.consumer_lag.clone());
    if config.kafka.delivery == Delivery::ExactlyOnce {
        context = context.transactional(config.kafka.transactions.timeout);
    }
    let consumer: SourceConsumer = client_config.create_with_context(context)?;
    tokio::select! {
        opened = stage.open_transactions(&config.kafka, "") => opened?,
        () = &mut shutdown => return Ok(RunSummary::default()),
    }
    let stage = Arc::new(stage);
    let committer = stage.transactions.as_ref().map(|sink| {
        Committer::new(
            Arc::clone(sink),
            Arc::clone(consumer.context().ownership()),
            &config.kafka,
        )
    });
    let topics = config.kafka.source_topics();
    consumer.subscribe(&topics)?;
    tracing::info!(?topics, group = %config.kafka.group_id, "worker started");
    let registry = &config.schemas.registry;
    let resolver = stage.decoder.registry.clone().map(|client| {
        Resolver::new(
            client,
            registry.retry_backoff,
            registry.retry_backoff_max,
            stage.metrics.clone(),
        )
    });
    let mut worker = Loop {
        stage,
        topics: topics.iter().map(|t| Arc::from(*t)).collect(),
        consumer,
        permits: Arc::new(Semaphore::new(
            config.pipeline.max_inflight_batches.max(1) as usize
        )),
        batch: Vec::new(),
        batch_deadline: None,
        batch_size: config.pipeline.batch_size.max(1) as usize,
        linger: config.pipeline.batch_linger,
        marks: Watermarks::default(),
        redeliveries: Redeliveries::default(),
        paused: false,
        stalled_since: None,
        draining: false,
        stopped: None,
        failed: None,
        committer,
        resolver,
        summary: RunSummary::default(),
    };
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<BatchReport>();
    let mut refused = None;
    while worker.stopped.is_none() && worker.failed.is_none() {
        worker.apply_rebalances();
        if worker.batch_ready() {
            worker.dispatch(&done_tx);
        }
        let linger = worker.batch_deadline;
        let commit_at = worker.committer.as_ref().and_then(Committer::due);
        let pause_at = worker.stalled_since.map(|since| since + PAUSE_AFTER_STALL);
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(done) = done_rx.recv() => worker.finish(done),
            () = sleep_until(linger), if linger.is_some() && worker.has_permit() => {
                worker.dispatch(&done_tx);
            }
            () = sleep_until(pause_at), if pause_at.is_some() && !worker.paused => {
                worker.set_paused(true);
            }
            attempt = finished_transaction(&mut worker.committer) => worker.settle(attempt),
            fetched = registry_answer(&mut worker.resolver) => worker.resolved(fetched),
            () = sleep_until(commit_at), if commit_at.is_some() => worker.start_transaction(),
            // A rebalance happened while polling: applied at the top of the loop.
            () = worker.consumer.context().noted() => {}
            message = worker.consumer.recv(), if worker.accepting() => match message {
                Ok(message) => {
                    let record = worker.own(&message);
                    drop(message);
                    worker.receive(record);
                }
                Err(error) => match access::fatal_consumer_error(&error, &config.kafka) {
                    Some(fatal) => {
                        tracing::error!(%fatal, "stopping: the brokers refuse the worker");
                        refused = Some(fatal);
                        break;
                    }
                    None => tracing::warn!(%error, "consumer error"),
                },
            },
        }
    }
    worker
        .drain(done_tx, done_rx, config.pipeline.shutdown_deadline)
        .await;
    if let Some(fatal) = refused {
        return Err(fatal.into());
    }
    if let Some(failed) = worker.failed {
        return Err(failed);
    }
    match worker.stopped {
        Some(failure) => Err(failure.into()),
        None => Ok(worker.summary),
    }
}

/// Refuses to start when the brokers refuse the worker's credentials, certificates or topic
/// ACLs ([`access::check`], bounded by [`access::START_CHECK_TIMEOUT`]).
async fn check_kafka_access(config: &Config) -> Result<(), AccessError> {
    let kafka = config.kafka.clone();
    let sources = kafka.source_topics();
    let topics: Vec<String> = sources
        .iter()
        .map(|t| t.to_string())
        .chain(sources.iter().map(|t| kafka.dlq_topic(t)))
        .chain([kafka.enrichment_topic.clone()])
        .collect();
    tokio::task::spawn_blocking(move || access::check(&kafka, &topics, access::START_CHECK_TIMEOUT))
        .await
        .unwrap_or(Ok(()))
}

/// `topic/partition:first..=last` per partition of a batch, for its tracing span.
fn offset_ranges(messages: &[SourceMessage]) -> String {
    let mut ranges: std::collections::BTreeMap<(&str, i32), (i64, i64)> = Default::default();
    for m in messages {
        let range = ranges
            .entry((&m.topic, m.partition))
            .or_insert((m.offset, m.offset));
        range.0 = range.0.min(m.offset);
        range.1 = range.1.max(m.offset);
    }
    ranges
        .iter()
        .map(|((topic, partition), (first, last))| format!("{topic}/{partition}:{first}..={last}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// How long the next batch may wait, full, for an in-flight slot before the loop pauses the
/// partitions (so it can go on polling without taking records).
pub const PAUSE_AFTER_STALL: Duration = Duration::from_secs(1);

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A finished batch, with the assignment epochs its records were read under.
struct BatchReport {
    epochs: Vec<(Partition, Epoch)>,
    done: BatchDone,
}

/// Waits for the Schema Registry's next answer, if there is a registry.
async fn registry_answer(resolver: &mut Option<Resolver>) -> resolve::Fetched {
    match resolver {
        Some(resolver) => resolver.next().await,
        None => std::future::pending().await,
    }
}

/// Waits for the transaction in flight, if there is a committer and one is in flight.
async fn finished_transaction(
    committer: &mut Option<Committer>,
) -> Result<committer::Attempt, RunError> {
    match committer {
        Some(committer) if committer.in_flight() => committer.finished().await,
        _ => std::future::pending().await,
    }
}

struct Loop {
    stage: Arc<Stage>,
    topics: Vec<Arc<str>>,
    consumer: SourceConsumer,
    permits: Arc<Semaphore>,
    /// The next batch: records and the epoch of their partition when received.
    batch: Vec<(SourceMessage, Epoch)>,
    batch_deadline: Option<Instant>,
    batch_size: usize,
    linger: Duration,
    marks: Watermarks,
    /// The highest offset received per partition and epoch: what librdkafka delivers again
    /// is dropped.
    redeliveries: Redeliveries,
    paused: bool,
    /// Since when the next batch has been full with every in-flight slot taken.
    stalled_since: Option<Instant>,
    draining: bool,
    /// Why the run stops on its own: a dead letter could not be published.
    stopped: Option<PublishError>,
    /// Why the run stops on its own, exactly-once delivery: see [`Committer`].
    failed: Option<RunError>,
    /// Exactly-once delivery: the transactions.
    committer: Option<Committer>,
    /// With a Schema Registry: the partitions held for a writer schema (see `resolve.rs`).
    resolver: Option<Resolver>,
    summary: RunSummary,
}

impl Loop {
    /// Copies a record out of the consumer's buffer (topic names are interned).
    fn own(&self, message: &rdkafka::message::BorrowedMessage<'_>) -> SourceMessage {
        use rdkafka::Message;
        let topic = self
            .topics
            .iter()
            .find(|t| ***t == *message.topic())
            .cloned()
            .unwrap_or_else(|| Arc::from(message.topic()));
        SourceMessage::from_borrowed(message, topic)
    }

    fn receive(&mut self, record: SourceMessage) {
        let partition = (record.topic.clone(), record.partition);
        // Not owned (never the case after an assignment): epoch 0, dropped at the next
        // rebalance, never committed.
        let epoch = self
            .consumer
            .context()
            .ownership()
            .epoch(&partition)
            .unwrap_or(0);
        if !self.redeliveries.is_new(&partition, epoch, record.offset) {
            tracing::warn!(
                topic = %partition.0,
                partition = partition.1,
                offset = record.offset,
                epoch,
                "a record delivered again within its assignment: dropped (its first copy is \
                 processed)"
            );
            self.stage
                .metrics
                .records_redelivered
                .get_or_create(&TopicLabel {
                    topic: partition.0.to_string(),
                })
                .inc();
            return;
        }
        self.summary.consumed += 1;
        let record = match &mut self.resolver {
            Some(resolver) => {
                let held_before = resolver.is_holding(&partition);
                match resolver.admit(&self.stage.decoder, record, epoch) {
                    Some((record, _)) => record,
                    None => {
                        if !held_before {
                            self.pause_partitions(&[partition], true);
                        }
                        return;
                    }
                }
            }
            None => record,
        };
        self.accept(record, epoch);
    }

    /// Takes a record into the next batch (its offset now counts for the watermark).
    fn accept(&mut self, record: SourceMessage, epoch: Epoch) {
        let partition = (record.topic.clone(), record.partition);
        self.marks.received(&partition, epoch, record.offset);
        if self.batch.is_empty() {
            self.batch_deadline = Some(Instant::now() + self.linger);
        }
        self.batch.push((record, epoch));
    }

    /// Books the registry's answer for an id: the records it lets go on join the batch (those
    /// of partitions revoked meanwhile are dropped), their partitions resume.
    fn resolved(&mut self, fetched: resolve::Fetched) {
        let Some(resolver) = &mut self.resolver else {
            return;
        };
        let released = resolver.answered(&self.stage.decoder, fetched);
        let ownership = Arc::clone(self.consumer.context().ownership());
        for (record, epoch) in released.records {
            if ownership.epoch(&(record.topic.clone(), record.partition)) == Some(epoch) {
                self.accept(record, epoch);
            }
        }
        if !self.paused && !released.unheld.is_empty() {
            self.pause_partitions(&released.unheld, false);
        }
    }

    fn batch_ready(&self) -> bool {
        self.batch.len() >= self.batch_size
    }

    fn has_permit(&self) -> bool {
        self.permits.available_permits() > 0
    }

    /// Takes records unless the next batch is full and waiting for an in-flight slot (while
    /// paused it keeps polling: paused partitions deliver nothing, rebalances are served).
    fn accepting(&self) -> bool {
        self.paused || self.stalled_since.is_none()
    }

    /// Sends the current batch on if an in-flight slot is free. Otherwise the batch keeps
    /// growing while earlier batches run (so a worker that falls behind catches up with bigger
    /// batches); once it is full the loop stops taking records, and pauses the partitions if
    /// that lasts [`PAUSE_AFTER_STALL`]. While draining it pauses at once.
    fn dispatch(&mut self, done_tx: &mpsc::UnboundedSender<BatchReport>) {
        if self.batch.is_empty() {
            self.batch_deadline = None;
            return;
        }
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            if self.draining {
                self.set_paused(true);
            } else if self.batch_ready() && self.stalled_since.is_none() {
                self.stalled_since = Some(Instant::now());
            }
            return;
        };
        self.stalled_since = None;
        let mut epochs: Vec<(Partition, Epoch)> = Vec::new();
        let messages: Vec<SourceMessage> = std::mem::take(&mut self.batch)
            .into_iter()
            .map(|(message, epoch)| {
                if !epochs
                    .iter()
                    .any(|(p, _)| *p.0 == *message.topic && p.1 == message.partition)
                {
                    epochs.push(((message.topic.clone(), message.partition), epoch));
                }
                message
            })
            .collect();
        self.batch_deadline = None;
        let span = tracing::info_span!(
            "batch",
            records = messages.len(),
            offsets = %offset_ranges(&messages)
        );
        let redrives = vec![None; messages.len()];
        let (prepared, units) = self
            .stage
            .prepare(messages, redrives, unix_ms(SystemTime::now()));
        let results = self.stage.store.submit(units);
        let stage = Arc::clone(&self.stage);
        let done_tx = done_tx.clone();
        self.stage.metrics.inflight_batches.inc();
        tokio::spawn(
            async move {
                let done = stage.complete(prepared, results).await;
                tracing::debug!(
                    enriched = done.enriched,
                    dead_lettered = done.dead_lettered,
                    units = done.units,
                    "batch done"
                );
                stage.metrics.inflight_batches.dec();
                drop(permit);
                let _ = done_tx.send(BatchReport { epochs, done });
            }
            .instrument(span),
        );
    }

    fn finish(&mut self, BatchReport { epochs, done }: BatchReport) {
        let epoch_of = |partition: &Partition| {
            epochs
                .iter()
                .find(|(p, _)| p == partition)
                .map_or(0, |(_, e)| *e)
        };
        // Unfinished records are not in `finished`: the watermark stays below them.
        for (partition, offset) in &done.finished {
            self.marks.finished(partition, epoch_of(partition), *offset);
        }
        if let Some(committer) = &mut self.committer {
            for ((partition, offset), output) in done.outputs {
                let epoch = epoch_of(&partition);
                // Only outputs of the partition's current marks: a batch read before a
                // revocation is redone by the partition's owner.
                if self.marks.epoch(&partition) == Some(epoch) {
                    committer.outbox.add(&partition, epoch, offset, output);
                }
            }
        }
        if let Some(failure) = done.stopped
            && self.stopped.is_none()
        {
            tracing::error!(
                topic = %failure.topic,
                error = %failure.error,
                unfinished = done.unfinished,
                "stopping the worker: {failure}"
            );
            self.stopped = Some(failure);
        }
        self.summary.enriched += done.enriched;
        self.summary.dead_lettered += done.dead_lettered;
        self.summary.units += done.units;
        self.summary.batches += 1;
        self.store_offsets();
        if !self.draining && self.has_permit() {
            self.stalled_since = None;
            self.set_paused(false);
        }
    }

    /// Hands the watermarks that moved on: to librdkafka's offset store (at least once), or
    /// to the outbox, for the next transaction (exactly once).
    fn store_offsets(&mut self) {
        let advanced = self.marks.advanced();
        if advanced.is_empty() {
            return;
        }
        if let Some(committer) = &mut self.committer {
            for (partition, next) in &advanced {
                if let Some(epoch) = self.marks.epoch(partition) {
                    committer.outbox.advance(partition, epoch, *next);
                }
            }
            return;
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), next) in &advanced {
            if let Err(error) = list.add_partition_offset(topic, *partition, Offset::Offset(*next))
            {
                tracing::warn!(%error, "building offset list");
            }
        }
        if let Err(error) = self.consumer.store_offsets(&list) {
            // A partition revoked meanwhile can't be stored: its next owner redoes the work.
            tracing::debug!(%error, "storing offsets");
        }
    }

    /// Exactly once: starts the next transaction.
    fn start_transaction(&mut self) {
        if let Some(committer) = &mut self.committer {
            // KIP-848: a member epoch can move on without a rebalance callback. In this order:
            // see `Ownership::refresh`.
            if committer.refreshes_group_metadata
                && let Some(live) = self.consumer.group_metadata()
            {
                let lost = self.consumer.assignment_lost();
                self.consumer.context().ownership().refresh(live, lost);
            }
            committer.start();
        }
    }

    /// Exactly once: books a finished transaction; a failure that ends the run stops it.
    fn settle(&mut self, attempt: Result<committer::Attempt, RunError>) {
        let Some(committer) = &mut self.committer else {
            return;
        };
        let settled =
            attempt.and_then(|attempt| committer.settle(&self.stage, attempt, &mut self.summary));
        match settled {
            // Also in the consumer's offset store (never committed from there: auto-commit is
            // off), so its statistics, and the consumer-lag gauges, see the committed position.
            Ok(committed) if committed.count() > 0 => {
                if let Err(error) = self.consumer.store_offsets(&committed) {
                    tracing::debug!(%error, "storing committed offsets");
                }
            }
            Ok(_) => {}
            Err(failed) => {
                if self.failed.is_none() {
                    self.failed = Some(failed);
                }
            }
        }
    }

    /// Stops fetching, finishes what is in flight (bounded by `deadline`), commits offsets
    /// (the last transaction, with exactly-once delivery), flushes the producer.
    async fn drain(
        &mut self,
        done_tx: mpsc::UnboundedSender<BatchReport>,
        mut done_rx: mpsc::UnboundedReceiver<BatchReport>,
        deadline: Duration,
    ) {
        tracing::info!("shutting down: finishing in-flight batches");
        let until = Instant::now() + deadline;
        self.set_paused(true);
        self.draining = true;
        // After a stop, the batch not yet dispatched is left to the next run.
        let stopping = |this: &Loop| this.stopped.is_some() || this.failed.is_some();
        while !self.batch.is_empty() && !stopping(self) && Instant::now() < until {
            self.dispatch(&done_tx);
            if !self.batch.is_empty() {
                match serving_group(&self.consumer, until, done_rx.recv()).await {
                    Served::Done(Some(report)) => self.finish(report),
                    Served::Rebalanced => self.apply_rebalances(),
                    Served::Done(None) | Served::TimedOut => break,
                }
            }
        }
        // Every batch task holds a sender and reports through it after giving back its
        // permit, so free permits do not mean every report is in: the channel closes (`None`)
        // once the last task has sent its report.
        drop(done_tx);
        loop {
            match serving_group(&self.consumer, until, done_rx.recv()).await {
                Served::Done(Some(report)) => self.finish(report),
                Served::Rebalanced => self.apply_rebalances(),
                Served::Done(None) | Served::TimedOut => break,
            }
        }
        self.apply_rebalances();
        self.store_offsets();
        if self.committer.is_some() {
            self.drain_transactions(until).await;
        } else if let Err(error) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(%error, "final commit");
        }
        if let Err(error) = self.stage.flush(Duration::from_secs(5)) {
            tracing::warn!(%error, "flushing the producer");
        }
        tracing::info!(summary = ?self.summary, "stopped");
    }

    /// Commits what is committable, one transaction after the other, until nothing is left,
    /// the run fails or `until`.
    async fn drain_transactions(&mut self, until: Instant) {
        while self.failed.is_none()
            && self.committer.as_ref().is_some_and(Committer::busy)
            && Instant::now() < until
        {
            let in_flight = self.committer.as_ref().is_some_and(Committer::in_flight);
            if !in_flight {
                let due = self.committer.as_ref().and_then(Committer::due);
                if let Some(due) = due {
                    tokio::time::sleep_until(due.min(until)).await;
                }
                self.start_transaction();
                continue;
            }
            let finished = serving_group(
                &self.consumer,
                until,
                finished_transaction(&mut self.committer),
            );
            match finished.await {
                Served::Done(attempt) => self.settle(attempt),
                Served::TimedOut => tracing::warn!(
                    uncommitted = self.committer.as_ref().map_or(0, |c| c.outbox.len()),
                    "shutdown deadline: the last transaction is still open (its records are \
                     redone by the next owner)"
                ),
                Served::Rebalanced => self.apply_rebalances(),
            }
        }
    }
}

/// Waits for `wanted` until `until` while the group is served (draining): librdkafka runs
/// rebalance callbacks only while the consumer is polled, and a draining worker that stopped
/// polling held up every rebalance of the group for the whole drain — its transactions
/// refused meanwhile (`ILLEGAL_GENERATION`: the group had moved on to a generation this worker
/// was never told of), the partitions it was to give up waiting for it. The partitions are
/// paused, so polling takes no records.
async fn serving_group<T>(
    consumer: &SourceConsumer,
    until: Instant,
    wanted: impl Future<Output = T>,
) -> Served<T> {
    tokio::select! {
        done = tokio::time::timeout_at(until, wanted) => match done {
            Ok(done) => Served::Done(done),
            Err(_) => Served::TimedOut,
        },
        () = consumer.context().noted() => Served::Rebalanced,
        never = serve_group(consumer) => match never {},
    }
}

/// What [`Loop::serving_group`] ended with.
enum Served<T> {
    /// What was waited for.
    Done(T),
    /// A rebalance callback ran: apply it and wait again.
    Rebalanced,
    /// The deadline passed.
    TimedOut,
}

/// Polls `consumer` for ever, for its rebalance callbacks, while every partition is paused
/// (draining): a record that still comes (fetched before the pause took effect) is dropped
/// unread — never processed, its offset never committed, the next owner reads it.
async fn serve_group(consumer: &SourceConsumer) -> std::convert::Infallible {
    loop {
        if let Err(error) = consumer.recv().await {
            tracing::debug!(%error, "consumer error while draining");
        }
    }
}
