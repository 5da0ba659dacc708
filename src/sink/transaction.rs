//! Exactly-once delivery: a transactional producer that writes a set of output records
//! ([`Outgoing`]) and, optionally, the consumer offsets after their source records in one Kafka
//! transaction (`send_offsets_to_transaction` with the group's metadata: KIP-447 fencing).
//!
//! [`TransactionalSink::commit`] is one attempt, blocking (librdkafka's transaction calls
//! block): run it off the async threads. Its failure says what to do, from librdkafka's own
//! verdicts ([`RDKafkaError::is_fatal`], [`RDKafkaError::txn_requires_abort`],
//! [`RDKafkaError::is_retriable`]): the transaction was aborted and may be tried again (with
//! the records the brokers refused for good replaced by dead letters), or the producer is fenced
//! or refused and the worker must stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

/// Consumer offsets to commit in a transaction, and the group metadata to commit them under
/// (the generation the offsets' records were read in: KIP-447 fencing).
pub type TransactionOffsets = (TopicPartitionList, Arc<ConsumerGroupMetadata>);

use super::dead_letter::{DeadLetterReason, dead_letter_headers};
use super::error::{SinkError, SinkErrorKind};
use super::producer::producer_config;
use crate::config::KafkaConfig;
use crate::source::SourceMessage;

/// A record the worker publishes for one source record.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// The enrichment record of a transaction, keyed by user id.
    Enrichment {
        /// Record key.
        user_id: String,
        /// Encoded enrichment (Confluent wire format).
        payload: Vec<u8>,
        /// The transaction's event time (for the end-to-end latency metric).
        event_time_ms: i64,
        /// The source record: dead-lettered instead if the brokers refuse the enrichment
        /// record for good.
        source: Box<SourceMessage>,
    },
    /// The dead letter of a source record.
    DeadLetter {
        /// The dead-letter topic.
        topic: String,
        /// The source record, copied into the dead letter.
        message: Box<SourceMessage>,
        /// Why.
        reason: Box<DeadLetterReason>,
    },
}

/// A transaction that did not commit.
#[derive(Debug, Clone, thiserror::Error)]
#[error("kafka transaction `{transactional_id}`: {error}")]
pub struct TransactionFailure {
    /// The transactional id.
    pub transactional_id: String,
    /// The error that ended the attempt. [`SinkErrorKind::Fatal`]: the producer can do
    /// nothing more (fenced by another worker with this transactional id, not authorized):
    /// stop. Otherwise the transaction was aborted (or never began) and may be tried again.
    pub error: SinkError,
    /// Records (by index) the brokers refused for good; try them as dead letters instead.
    pub refused: Vec<(usize, SinkError)>,
    /// `commit_transaction` was sent but its outcome never came back (it kept timing out for
    /// twice the transaction timeout): the transaction may have committed. Neither aborting
    /// nor committing the records again is safe; the worker stops, and a restart resumes from
    /// the offsets the brokers hold (committed with the transaction, or not).
    pub outcome_unknown: bool,
}

impl TransactionFailure {
    /// The producer cannot go on.
    pub fn is_fatal(&self) -> bool {
        self.error.kind == SinkErrorKind::Fatal
    }

    /// The brokers refuse this producer for good (authentication, transactional-id or cluster
    /// authorization): a new producer would be refused too.
    pub fn is_refused(&self) -> bool {
        use rdkafka::error::RDKafkaErrorCode as C;
        matches!(
            self.error.error.rdkafka_error_code(),
            Some(
                C::TransactionalIdAuthorizationFailed
                    | C::ClusterAuthorizationFailed
                    | C::TopicAuthorizationFailed
                    | C::GroupAuthorizationFailed
                    | C::SaslAuthenticationFailed
                    | C::Authentication
            )
        )
    }
}

/// The transactional producer of exactly-once delivery.
pub struct TransactionalSink {
    producer: FutureProducer,
    /// An `abort_transaction` did not complete (it timed out): librdkafka wants it called
    /// again before the next transaction may begin.
    abort_pending: AtomicBool,
    enrichment_topic: String,
    transactional_id: String,
    timeout: Duration,
}

impl TransactionalSink {
    /// Creates the producer (`transactional.id` from `kafka.transactions`, followed by
    /// `role`: `""` for the live worker, `"-redrive"`, `"-replay"`, so that they never fence
    /// each other) and registers it with its transaction coordinator (`init_transactions`:
    /// fences an earlier producer with the same id and aborts its open transaction). Blocks
    /// up to the transaction timeout per attempt; a retriable failure (the coordinator not
    /// ready) is tried again within `kafka.produce_retry_budget`.
    pub fn new(
        kafka: &KafkaConfig,
        role: &str,
    ) -> Result<TransactionalSink, Box<TransactionFailure>> {
        let transactional_id = format!(
            "{}{role}",
            kafka.transactions.transactional_id(&kafka.group_id)
        );
        let timeout = kafka.transactions.timeout;
        let failure = |error: KafkaError| {
            Box::new(TransactionFailure {
                transactional_id: transactional_id.clone(),
                error: SinkError::from(error),
                refused: Vec::new(),
                outcome_unknown: false,
            })
        };
        let mut config = producer_config(kafka);
        config
            .set("transactional.id", &transactional_id)
            .set("transaction.timeout.ms", timeout.as_millis().to_string());
        let producer: FutureProducer = config.create().map_err(failure)?;
        // A coordinator still loading its log (a broker that just started) makes the call
        // time out, retriably ("retry call to resume"): called again within the budget.
        let give_up_at = Instant::now() + kafka.produce_retry_budget;
        loop {
            let registering = producer.clone();
            let registered = bounded("fds-txn-init", timeout + CALL_GRACE, move || {
                registering.init_transactions(timeout)
            });
            match registered {
                Some(Ok(())) => break,
                Some(Err(KafkaError::Transaction(error)))
                    if error.is_retriable() && Instant::now() < give_up_at =>
                {
                    tracing::warn!(
                        %error,
                        transactional_id,
                        "the transaction coordinator is not ready: registering again"
                    );
                }
                Some(Err(error)) => return Err(failure(error)),
                // Blocked in librdkafka past its timeout (the bug class of #5456): this
                // producer is given up; the caller may start another one.
                None => {
                    return Err(stuck(
                        &transactional_id,
                        "init_transactions (confluentinc/librdkafka#5456)",
                    ));
                }
            }
        }
        tracing::info!(transactional_id, "transactional producer ready");
        Ok(TransactionalSink {
            producer,
            abort_pending: AtomicBool::new(false),
            enrichment_topic: kafka.enrichment_topic.clone(),
            transactional_id,
            timeout,
        })
    }

    /// The transactional id.
    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    /// The transaction timeout (`kafka.transactions.timeout`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Writes `records` and (if given, non-empty) `offsets` for the group of `group` in one
    /// transaction and commits it. Blocking. On failure the transaction is aborted (unless
    /// the failure is fatal) and nothing of it is visible to read_committed consumers.
    pub fn commit(
        &self,
        records: &[Outgoing],
        offsets: Option<Arc<TransactionOffsets>>,
    ) -> Result<(), Box<TransactionFailure>> {
        let started = Instant::now();
        let deadline = started + self.timeout;
        if self.abort_pending.load(Ordering::Acquire) {
            if let Err(error) = self.producer.abort_transaction(self.timeout) {
                // Twice the transaction timeout without finishing: librdkafka can keep
                // retrying a refused batch and never let the abort complete
                // (confluentinc/librdkafka#3444). A new producer with this id aborts the
                // transaction on the coordinator instead.
                if is_fatal(&error) {
                    return Err(self.failure(error, Vec::new()));
                }
                return Err(self.stuck("abort_transaction (confluentinc/librdkafka#3444)"));
            }
            self.abort_pending.store(false, Ordering::Release);
        }
        self.producer
            .begin_transaction()
            .map_err(|error| self.failure(error, Vec::new()))?;
        let mut deliveries = Vec::with_capacity(records.len());
        let mut refused = Vec::new();
        for (index, record) in records.iter().enumerate() {
            match self.enqueue(record, deadline) {
                Ok(delivery) => deliveries.push((index, delivery)),
                Err(error) => {
                    let error = SinkError::from(error);
                    if error.kind == SinkErrorKind::Permanent {
                        refused.push((index, error));
                    } else {
                        return Err(self.abort(error.error, deliveries, refused));
                    }
                }
            }
        }
        if !refused.is_empty() {
            // A record missing from the transaction would be lost with its offset committed.
            let error = refused[0].1.error.clone();
            return Err(self.abort(error, deliveries, refused));
        }
        let enqueued_at = Instant::now();
        if let Some(offsets) = offsets
            && offsets.0.count() > 0
            && let Err(error) = self.send_offsets(offsets, remaining(deadline))
        {
            return Err(match error {
                Some(error) => self.abort(error, deliveries, refused),
                None => self.stuck(
                    "send_offsets_to_transaction (confluentinc/librdkafka#5456: the group \
                     coordinator went away)",
                ),
            });
        }
        let offsets_sent_at = Instant::now();
        // Past the coordinator's own timeout an open transaction is aborted by it, so an
        // answer comes within about twice the timeout if the coordinator is reachable at all.
        let resolve_by = deadline + self.timeout;
        loop {
            match self.producer.commit_transaction(remaining(resolve_by)) {
                Ok(()) => {
                    let now = Instant::now();
                    tracing::debug!(
                        records = records.len(),
                        begin_and_enqueue_ms = ms(enqueued_at - started),
                        send_offsets_ms = ms(offsets_sent_at - enqueued_at),
                        commit_ms = ms(now - offsets_sent_at),
                        "transaction timing"
                    );
                    return Ok(());
                }
                // librdkafka: a retriable commit error (a timeout) may have committed or not;
                // it is retried as is until it answers. Aborting then could abort nothing
                // (the commit went through) and the records would be written twice.
                Err(KafkaError::Transaction(error))
                    if error.is_retriable() && !error.txn_requires_abort() =>
                {
                    if Instant::now() >= resolve_by {
                        tracing::error!(
                            %error,
                            transactional_id = %self.transactional_id,
                            "commit_transaction kept timing out: the transaction's outcome is unknown"
                        );
                        let mut failure = self.failure(KafkaError::Transaction(error), Vec::new());
                        failure.outcome_unknown = true;
                        return Err(failure);
                    }
                    tracing::debug!(%error, "commit_transaction retried");
                }
                Err(error) => return Err(self.abort(error, deliveries, refused)),
            }
        }
    }

    /// `send_offsets_to_transaction`, bounded: librdkafka can block in it past its timeout
    /// when the group coordinator goes away (confluentinc/librdkafka#5456, #5511). `Err(None)`:
    /// it did not return (see [`bounded`]).
    fn send_offsets(
        &self,
        offsets: Arc<TransactionOffsets>,
        timeout: Duration,
    ) -> Result<(), Option<KafkaError>> {
        let producer = self.producer.clone();
        bounded("fds-txn-offsets", timeout + CALL_GRACE, move || {
            let (list, group) = &*offsets;
            producer.send_offsets_to_transaction(list, group, timeout)
        })
        .ok_or(None)?
        .map_err(Some)
    }

    /// The producer is stuck in librdkafka's `call`: give it up (fatal: the caller starts a new
    /// producer with the same id, whose new epoch fences this one).
    fn stuck(&self, call: &str) -> Box<TransactionFailure> {
        stuck(&self.transactional_id, call)
    }

    fn enqueue(&self, record: &Outgoing, deadline: Instant) -> Result<DeliveryFuture, KafkaError> {
        loop {
            let sent = match record {
                Outgoing::Enrichment {
                    user_id, payload, ..
                } => self
                    .producer
                    .send_result(
                        FutureRecord::to(&self.enrichment_topic)
                            .key(user_id.as_str())
                            .payload(payload.as_slice()),
                    )
                    .map_err(|(error, _)| error),
                Outgoing::DeadLetter {
                    topic,
                    message,
                    reason,
                } => self
                    .producer
                    .send_result(dead_letter_record(
                        topic,
                        message,
                        &headers_of(message, reason),
                    ))
                    .map_err(|(error, _)| error),
            };
            match sent {
                Ok(delivery) => return Ok(delivery),
                // The queue drains as the brokers ack: wait for room within the transaction.
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull))
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Aborts the transaction after `error` (unless fatal) and collects the records the
    /// brokers refused for good.
    fn abort(
        &self,
        error: KafkaError,
        deliveries: Vec<(usize, DeliveryFuture)>,
        mut refused: Vec<(usize, SinkError)>,
    ) -> Box<TransactionFailure> {
        if !is_fatal(&error)
            && let Err(abort_error) = self.producer.abort_transaction(self.timeout)
        {
            tracing::warn!(%abort_error, "abort_transaction failed");
            if is_fatal(&abort_error) {
                return self.failure(abort_error, refused);
            }
            // Timed out: to be called again before the next transaction begins.
            self.abort_pending.store(true, Ordering::Release);
        }
        // Aborted: undelivered records fail with a purge error (retryable), those the brokers
        // refused keep their own error.
        let until = Instant::now() + Duration::from_secs(1);
        for (index, mut delivery) in deliveries {
            let result = loop {
                if let Some(result) = (&mut delivery).now_or_never() {
                    break Some(result);
                }
                if Instant::now() >= until {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(2));
            };
            if let Some(Ok(Err((delivery_error, _)))) = result {
                let delivery_error = SinkError::from(delivery_error);
                if delivery_error.kind == SinkErrorKind::Permanent {
                    refused.push((index, delivery_error));
                }
            }
        }
        refused.sort_by_key(|(index, _)| *index);
        self.failure(error, refused)
    }

    fn failure(
        &self,
        error: KafkaError,
        refused: Vec<(usize, SinkError)>,
    ) -> Box<TransactionFailure> {
        Box::new(TransactionFailure {
            transactional_id: self.transactional_id.clone(),
            error: SinkError::from(error),
            refused,
            outcome_unknown: false,
        })
    }
}

/// Producer `transactional_id` is stuck in librdkafka's `call`: a fatal failure, so that the
/// caller gives the producer up.
fn stuck(transactional_id: &str, call: &str) -> Box<TransactionFailure> {
    tracing::error!(
        transactional_id,
        "{call} did not complete within the transaction timeout: giving this producer up"
    );
    Box::new(TransactionFailure {
        transactional_id: transactional_id.to_owned(),
        error: SinkError {
            kind: SinkErrorKind::Fatal,
            error: KafkaError::MessageProduction(RDKafkaErrorCode::OperationTimedOut),
        },
        refused: Vec::new(),
        outcome_unknown: false,
    })
}

/// Runs librdkafka's blocking transaction `call` on a thread of its own (named `name`) and
/// waits for it up to `wait` (its own timeout and [`CALL_GRACE`]): `None` if it did not return
/// by then — the thread, and the producer it holds, are left to finish on their own.
fn bounded<T: Send + 'static>(
    name: &str,
    wait: Duration,
    call: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (sent, result) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = sent.send(call());
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, name, "cannot start a transaction call's thread");
        return None;
    }
    result.recv_timeout(wait).ok()
}

/// The longest one [`TransactionalSink::commit`] takes while librdkafka keeps its own
/// timeouts (`timeout`: the transaction timeout): a pending abort, begin and enqueue within
/// the timeout, the offsets (bounded, with [`CALL_GRACE`]), the commit answered or unknown
/// by twice the timeout, an abort after a failure, and a second for the deliveries. A commit
/// thread still running past this (and [`STALL_SLACK`]) is blocked in librdkafka.
pub fn commit_bound(timeout: Duration) -> Duration {
    4 * timeout + CALL_GRACE + Duration::from_secs(1) + STALL_SLACK
}

/// The longest [`TransactionalSink::new`] takes: `init_transactions` (each call bounded)
/// called again within `retry_budget`.
pub fn init_bound(timeout: Duration, retry_budget: Duration) -> Duration {
    retry_budget + timeout + CALL_GRACE + STALL_SLACK
}

/// Scheduling slack on top of the computed bounds (a loaded machine's threads run late).
const STALL_SLACK: Duration = Duration::from_secs(10);

/// librdkafka's verdict (a fatal transactional error), or a code that is always fatal.
fn is_fatal(error: &KafkaError) -> bool {
    SinkErrorKind::of(error) == SinkErrorKind::Fatal
}

/// How long past its own timeout a bounded transaction call is waited for.
const CALL_GRACE: Duration = Duration::from_secs(5);

fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100))
}

/// The dead letter's headers as librdkafka takes them.
pub(crate) fn headers_of(message: &SourceMessage, reason: &DeadLetterReason) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    for (key, value) in dead_letter_headers(message, reason) {
        headers = headers.insert(Header {
            key: &key,
            value: value.as_deref(),
        });
    }
    headers
}

/// The dead letter of `message` to `topic`: the source record's key, value and timestamp,
/// with `headers`.
pub(crate) fn dead_letter_record<'a>(
    topic: &'a str,
    message: &'a SourceMessage,
    headers: &OwnedHeaders,
) -> FutureRecord<'a, [u8], [u8]> {
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers.clone());
    if let Some(key) = &message.key {
        record = record.key(key.as_slice());
    }
    if let Some(payload) = &message.payload {
        record = record.payload(payload.as_slice());
    }
    if let Some(timestamp) = message.timestamp_ms {
        record = record.timestamp(timestamp);
    }
    record
}

/// Milliseconds, for timing fields.
fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_call_that_returns_in_time_gives_its_result() {
        assert_eq!(bounded("t-quick", Duration::from_secs(30), || 7), Some(7));
    }

    #[test]
    fn a_bounded_call_blocked_past_its_wait_is_given_up_and_left_running() {
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        // (Were it waited for, the test would hang: it is released only afterwards.)
        let given_up = bounded("t-blocked", Duration::from_millis(50), move || {
            // Blocked until released: as librdkafka's call waiting for a coordinator.
            let _ = blocked.recv();
            7
        });
        assert_eq!(given_up, None);
        drop(release);
    }
}
