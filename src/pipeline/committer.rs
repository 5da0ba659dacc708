//! Exactly-once delivery in the live loop: one Kafka transaction at a time carries the
//! [`Outbox`]'s committable outputs and offsets, every `kafka.transactions.interval` (or as
//! soon as the previous one is done, whichever is later).
//!
//! The transaction runs on a blocking thread under the [`Ownership`] fence. When it returns:
//! - committed: its records are counted as delivered;
//! - aborted or not begun: it goes back to the outbox and is tried again after a backoff
//!   (records the brokers refused for good are dead-lettered instead, `publish_failed`); a
//!   refused dead letter, or failures for longer than `kafka.produce_retry_budget`, stop the
//!   worker (a restart resumes from the last committed transaction);
//! - fatal (fenced by a newer worker with the same transactional id, not authorized): the
//!   worker stops at once;
//! - of unknown outcome (`commit_transaction` sent, never answered): the worker stops, since
//!   trying again could write the records twice; a restart resumes from the committed offsets.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rdkafka::TopicPartitionList;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::outbox::{Outbox, Transaction};
use super::stage::Stage;
use super::{RunError, RunSummary};
use crate::config::{GroupProtocol, KafkaConfig};
use crate::metrics::{OutcomeLabel, PublishFailureLabels};
use crate::retry::{Backoff, Budget};
// A failed transaction backs off like a failed publish.
use crate::sink::retry::{INITIAL_BACKOFF, MAX_BACKOFF};
use crate::sink::{
    DeadLetterReason, Outgoing, PublishError, SinkError, TransactionFailure, TransactionOffsets,
    TransactionalSink, commit_bound, init_bound,
};
use crate::source::Ownership;

/// One transaction attempt, as it came back from its thread.
pub(super) struct Attempt {
    txn: Transaction,
    result: Result<(), Box<TransactionFailure>>,
    took: Duration,
    /// The new producer the attempt started with (after a fatal error of the last one).
    replacement: Option<Arc<TransactionalSink>>,
}

/// The transactions of one run.
pub(super) struct Committer {
    sink: Arc<TransactionalSink>,
    kafka: KafkaConfig,
    /// The producer had a fatal error: the next attempt starts a new one.
    reinit: bool,
    ownership: Arc<Ownership>,
    /// Outputs waiting for a transaction.
    pub(super) outbox: Outbox,
    interval: Duration,
    next_at: Instant,
    in_flight: Option<JoinHandle<Attempt>>,
    /// The longest the transaction in flight can take while librdkafka keeps its own timeouts
    /// ([`commit_bound`], and [`init_bound`] if it starts a new producer), and its start.
    bound: (Duration, Instant),
    backoff: Backoff,
    /// Set while transactions fail: the budget of consecutive failures.
    failing: Option<Budget>,
    retry_budget: Duration,
    enrichment_topic: String,
    /// The group protocol's generation can move on without a rebalance callback (KIP-848's
    /// member epochs): the group metadata is refreshed before each transaction (see
    /// [`Ownership::refresh`]). Never under the classic protocol, whose every rebalance ends
    /// in a callback — and where a member dropped by the coordinator rejoins under a new
    /// member id and generation *before* librdkafka revokes the partitions it no longer
    /// owns: metadata read then would let it commit for them.
    pub(super) refreshes_group_metadata: bool,
}

impl Committer {
    pub(super) fn new(
        sink: Arc<TransactionalSink>,
        ownership: Arc<Ownership>,
        kafka: &KafkaConfig,
    ) -> Committer {
        Committer {
            sink,
            kafka: kafka.clone(),
            reinit: false,
            ownership,
            outbox: Outbox::default(),
            interval: kafka.transactions.interval,
            next_at: Instant::now(),
            in_flight: None,
            bound: (Duration::ZERO, Instant::now()),
            backoff: Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF),
            failing: None,
            retry_budget: kafka.produce_retry_budget,
            enrichment_topic: kafka.enrichment_topic.clone(),
            refreshes_group_metadata: kafka.group_protocol == GroupProtocol::Consumer,
        }
    }

    /// When the next transaction should start: `None` while one is in flight or nothing
    /// is committable.
    pub(super) fn due(&self) -> Option<Instant> {
        (self.in_flight.is_none() && self.outbox.has_work()).then_some(self.next_at)
    }

    /// Whether a transaction is in flight.
    pub(super) fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Whether anything is left to commit or committing.
    pub(super) fn busy(&self) -> bool {
        self.in_flight.is_some() || self.outbox.has_work()
    }

    /// Starts a transaction of everything committable, under the group metadata of the last
    /// rebalance (see [`Ownership`]).
    pub(super) fn start(&mut self) {
        let mut txn = self.outbox.take();
        if txn.is_empty() {
            return;
        }
        self.next_at = Instant::now() + self.interval;
        let sink = Arc::clone(&self.sink);
        let reinit = self.reinit.then(|| self.kafka.clone());
        let timeout = self.kafka.transactions.timeout;
        let init = match self.reinit {
            true => init_bound(timeout, self.retry_budget),
            false => Duration::ZERO,
        };
        self.bound = (commit_bound(timeout) + init, Instant::now());
        let ownership = Arc::clone(&self.ownership);
        // The thread's logs belong to the run's span (a test's worker, say).
        let span = tracing::Span::current();
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let started = std::time::Instant::now();
            let (sink, replacement) = match reinit {
                None => (sink, None),
                // init_transactions with the same id: a new epoch, the old one's open
                // transaction aborted.
                Some(kafka) => match TransactionalSink::new(&kafka, "") {
                    Ok(new) => {
                        let new = Arc::new(new);
                        (Arc::clone(&new), Some(new))
                    }
                    Err(failure) => {
                        return Attempt {
                            txn,
                            result: Err(failure),
                            took: started.elapsed(),
                            replacement: None,
                        };
                    }
                },
            };
            let wanted: Vec<_> = txn
                .offsets
                .iter()
                .map(|(p, e, _)| (p.clone(), *e))
                .collect();
            let (guard, committable) = ownership.commit(wanted);
            txn.keep_only(&committable.owned);
            let result = match committable.group {
                Some(group) if !txn.is_empty() => {
                    sink.commit(&txn.records, Some(Arc::new((txn.offset_list(), group))))
                }
                _ => Ok(()),
            };
            drop(guard);
            Attempt {
                txn,
                result,
                took: started.elapsed(),
                replacement,
            }
        }));
    }

    /// Waits for the transaction in flight (pending forever if none); an error if its thread
    /// is still running past its bound: blocked in librdkafka (as in confluentinc/librdkafka#5456),
    /// with an outcome nobody can know — the run stops, and a restart resumes from the offsets
    /// the brokers hold. (The thread is left to finish on its own.)
    pub(super) async fn finished(&mut self) -> Result<Attempt, RunError> {
        let Some(handle) = &mut self.in_flight else {
            return std::future::pending().await;
        };
        let (bound, started) = self.bound;
        let attempt = tokio::time::timeout_at(started + bound, handle).await;
        self.in_flight = None;
        match attempt {
            Ok(attempt) => Ok(attempt.expect("the transaction thread does not panic")),
            Err(_) => Err(stalled(self.sink.transactional_id(), bound)),
        }
    }

    /// Books a finished attempt: counts a committed one and returns the offsets it committed,
    /// puts a failed one back (returning none), or says why the run must stop.
    pub(super) fn settle(
        &mut self,
        stage: &Stage,
        attempt: Attempt,
        summary: &mut RunSummary,
    ) -> Result<TopicPartitionList, RunError> {
        let Attempt {
            mut txn,
            result,
            took,
            replacement,
        } = attempt;
        if let Some(new) = replacement {
            self.reinit = false;
            let old = std::mem::replace(&mut self.sink, new);
            // Dropping a producer waits for librdkafka's threads: not on the loop's thread.
            tokio::task::spawn_blocking(move || drop(old));
        }
        let outcome = if result.is_ok() {
            "committed"
        } else {
            "aborted"
        };
        stage
            .metrics
            .transactions
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
        stage
            .metrics
            .transaction_duration
            .observe(took.as_secs_f64());
        let failure = match result {
            Ok(()) => {
                self.failing = None;
                self.backoff = Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF);
                let (enriched, dead_lettered) = count_committed(stage, &txn);
                summary.enriched += enriched;
                summary.dead_lettered += dead_lettered;
                return Ok(txn.offset_list());
            }
            Err(failure) => failure,
        };
        if failure.outcome_unknown {
            tracing::error!(
                error = %failure,
                "stopping: a transaction's commit never answered (it may have committed); a \
                 restart resumes from the offsets the brokers hold"
            );
            return Err(RunError::Transaction(failure));
        }
        if failure.is_fatal() {
            if failure.is_refused() {
                tracing::error!(error = %failure, "stopping: the brokers refuse the transactional producer");
                return Err(RunError::Transaction(failure));
            }
            // Fenced (its transaction timed out while a coordinator was away, or another
            // producer took the id) or in a fatal state: a new producer with the same id gets
            // a new epoch; the outputs are tried again from the outbox. Two workers sharing an
            // id fence each other until the budget is spent: then this one stops.
            tracing::warn!(
                error = %failure,
                "the transactional producer cannot go on: starting a new one (if another \
                 worker uses this transactional id, give each its own kafka.transactions.id)"
            );
            self.reinit = true;
        }
        for (index, error) in &failure.refused {
            dead_letter_refused(stage, &self.enrichment_topic, &mut txn, *index, error)?;
        }
        let budget = self
            .failing
            .get_or_insert_with(|| Budget::new(self.retry_budget, u32::MAX));
        budget.attempt();
        let wait = self.backoff.next_wait();
        if !budget.allows(wait) {
            tracing::error!(
                error = %failure,
                attempts = budget.attempts(),
                "stopping: transactions kept failing for the whole retry budget"
            );
            return Err(RunError::Transaction(failure));
        }
        tracing::warn!(
            error = %failure,
            records = txn.records.len(),
            retry_in_ms = wait.as_millis() as u64,
            "transaction aborted, trying again"
        );
        self.outbox.put_back(txn);
        let ownership = &self.ownership;
        self.outbox
            .retain(|partition, epoch| ownership.epoch(partition) == Some(epoch));
        self.next_at = Instant::now() + wait;
        Ok(TopicPartitionList::new())
    }
}

/// The transaction of `transactional_id` was still running after `bound`.
fn stalled(transactional_id: &str, bound: Duration) -> RunError {
    let error = RunError::TransactionStalled {
        transactional_id: transactional_id.to_owned(),
        bound,
    };
    tracing::error!(%error, "stopping");
    error
}

/// Counts a committed transaction's records as delivered: (enrichment records, dead letters).
fn count_committed(stage: &Stage, txn: &Transaction) -> (u64, u64) {
    let (mut enriched, mut dead_lettered) = (0, 0);
    for (record, (partition, _, _)) in txn.records.iter().zip(&txn.origins) {
        if stage.count_delivered(&partition.0, record) {
            enriched += 1;
        } else {
            dead_lettered += 1;
        }
    }
    (enriched, dead_lettered)
}

/// The brokers refused record `index` of `txn` for good: an enrichment record is replaced by
/// its source record's dead letter; a refused dead letter has nowhere to go and stops the run.
fn dead_letter_refused(
    stage: &Stage,
    enrichment_topic: &str,
    txn: &mut Transaction,
    index: usize,
    error: &SinkError,
) -> Result<(), RunError> {
    let now = SystemTime::now();
    let topic = match &txn.records[index] {
        Outgoing::Enrichment { .. } => enrichment_topic.to_owned(),
        Outgoing::DeadLetter { topic, .. } => topic.clone(),
    };
    let failure = PublishError {
        topic,
        error: error.clone(),
        attempts: 1,
        elapsed: Duration::ZERO,
        budget_spent: false,
        first_failure: now,
        last_failure: now,
    };
    stage
        .metrics
        .publish_failures
        .get_or_create(&PublishFailureLabels {
            topic: failure.topic.clone(),
            kind: error.kind.as_str().to_owned(),
            error: error.code_label(),
            decision: "gave_up".to_owned(),
        })
        .inc();
    let placeholder = Outgoing::Enrichment {
        user_id: String::new(),
        payload: Vec::new(),
        event_time_ms: 0,
        source: Box::default(),
    };
    match std::mem::replace(&mut txn.records[index], placeholder) {
        Outgoing::Enrichment { source, .. } => {
            tracing::warn!(
                topic = %failure.topic,
                error = %error,
                "the enrichment record was refused for good: dead-lettering its source record"
            );
            txn.records[index] =
                stage.dead_letter(*source, DeadLetterReason::publish_failed(&failure));
            Ok(())
        }
        Outgoing::DeadLetter { .. } => {
            tracing::error!(
                dlq_topic = %failure.topic,
                error = %failure,
                "the dead letter cannot be published: stopping (its offset stays uncommitted)"
            );
            Err(failure.into())
        }
    }
}

/// Commits `txn` (and `offsets`, if given) in one transaction, trying again within
/// `kafka.produce_retry_budget` as the live loop does: for callers that process one batch at a
/// time (redrive, replay). Returns the enrichment records and the dead letters committed.
pub async fn commit_with_retry(
    stage: &Stage,
    sink: &Arc<TransactionalSink>,
    mut txn: Transaction,
    offsets: Option<TransactionOffsets>,
    retry_budget: Duration,
    enrichment_topic: &str,
) -> Result<(u64, u64), RunError> {
    let mut budget = Budget::new(retry_budget, u32::MAX);
    let mut backoff = Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF);
    let offsets = offsets.map(Arc::new);
    loop {
        budget.attempt();
        let (sink, offsets, records) = (Arc::clone(sink), offsets.clone(), txn.records);
        let transactional_id = sink.transactional_id().to_owned();
        let bound = commit_bound(sink.timeout());
        let attempt = tokio::task::spawn_blocking(move || {
            let result = sink.commit(&records, offsets);
            (records, result)
        });
        let (records, result) = tokio::time::timeout(bound, attempt)
            .await
            .map_err(|_| stalled(&transactional_id, bound))?
            .expect("the transaction thread does not panic");
        txn.records = records;
        let failure = match result {
            Ok(()) => {
                return Ok(count_committed(stage, &txn));
            }
            Err(failure) => failure,
        };
        if failure.is_fatal() || failure.outcome_unknown {
            return Err(RunError::Transaction(failure));
        }
        for (index, error) in &failure.refused {
            dead_letter_refused(stage, enrichment_topic, &mut txn, *index, error)?;
        }
        let wait = backoff.next_wait();
        if !budget.allows(wait) {
            return Err(RunError::Transaction(failure));
        }
        tracing::warn!(error = %failure, retry_in_ms = wait.as_millis() as u64, "transaction aborted, trying again");
        tokio::time::sleep(wait).await;
    }
}
