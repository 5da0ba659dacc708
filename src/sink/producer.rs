//! The producer for enrichment records and dead letters.

use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use super::dead_letter::DeadLetterReason;
use super::error::{PublishError, SinkError};
use super::retry::{Next, PublishRetry};
use super::transaction::{dead_letter_record, headers_of};
use crate::config::KafkaConfig;
use crate::metrics::{Metrics, PublishFailureLabels};
use crate::source::{RECONNECT_BACKOFF_MAX_MS, SourceMessage};

/// librdkafka producer settings: idempotent, acks=all, then the config.
pub fn producer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("compression.type", "lz4")
        // Back to a returning broker within a second (librdkafka backs off up to 10 s).
        .set("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS);
    for (key, value) in kafka.producer_client_options() {
        config.set(key, value);
    }
    config
}

/// Publishes enrichment records and dead letters; every send resolves when the broker acks,
/// or when the sink gave up on the record (see [`Sink::publish_enrichment`]).
#[derive(Clone)]
pub struct Sink {
    producer: FutureProducer,
    enrichment_topic: String,
    retry_budget: Duration,
    failures: Option<Family<PublishFailureLabels, Counter>>,
}

impl Sink {
    /// A sink over a new producer.
    pub fn new(kafka: &KafkaConfig) -> Result<Sink, KafkaError> {
        Ok(Sink {
            producer: producer_config(kafka).create()?,
            enrichment_topic: kafka.enrichment_topic.clone(),
            retry_budget: kafka.produce_retry_budget,
            failures: None,
        })
    }

    /// Counts failed attempts in `metrics` (`fds_publish_failures_total`).
    pub fn with_metrics(mut self, metrics: &Metrics) -> Sink {
        self.failures = Some(metrics.publish_failures.clone());
        self
    }

    /// The underlying producer.
    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// Publishes an enrichment record keyed by user id; resolves when acked. A retryable
    /// error is retried with backoff and jitter within `kafka.produce_retry_budget`; a
    /// permanent one, a fatal one or a spent budget gives the record up (the caller
    /// dead-letters its source record or stops).
    pub async fn publish_enrichment(
        &self,
        user_id: &str,
        payload: &[u8],
    ) -> Result<(), PublishError> {
        let record = || {
            FutureRecord::to(&self.enrichment_topic)
                .key(user_id)
                .payload(payload)
        };
        self.deliver(record).await
    }

    /// Publishes the dead letter of `message` to `topic`; resolves when acked, or gives up as
    /// [`Sink::publish_enrichment`] does.
    pub async fn publish_dead_letter(
        &self,
        topic: &str,
        message: &SourceMessage,
        reason: &DeadLetterReason,
    ) -> Result<(), PublishError> {
        let headers = headers_of(message, reason);
        let record = || dead_letter_record(topic, message, &headers);
        self.deliver(record).await
    }

    async fn deliver<'a, K, P>(
        &'a self,
        record: impl Fn() -> FutureRecord<'a, K, P>,
    ) -> Result<(), PublishError>
    where
        K: rdkafka::message::ToBytes + ?Sized + 'a,
        P: rdkafka::message::ToBytes + ?Sized + 'a,
    {
        let mut retry = PublishRetry::new(self.retry_budget);
        loop {
            retry.attempt();
            // librdkafka retries within one attempt itself (up to `message.timeout.ms`); a full
            // queue is waited out here for as long as the budget lasts.
            let sent = self
                .producer
                .send(record(), Timeout::After(retry.queue_timeout()))
                .await;
            let error = match sent {
                Ok(_) => return Ok(()),
                Err((error, _)) => SinkError::from(error),
            };
            let topic = record().topic;
            match retry.after(topic, error.clone(), SystemTime::now()) {
                Next::Retry(wait) => {
                    self.count(topic, &error, "retried");
                    // Once per record at warn: an outage retries every in-flight record.
                    if retry.attempts() == 1 {
                        tracing::warn!(
                            topic,
                            error = %error,
                            retry_in_ms = wait.as_millis() as u64,
                            "publish failed, retrying within the budget"
                        );
                    } else {
                        tracing::debug!(
                            topic,
                            error = %error,
                            attempts = retry.attempts(),
                            retry_in_ms = wait.as_millis() as u64,
                            "publish failed, retrying"
                        );
                    }
                    tokio::time::sleep(wait).await;
                }
                Next::GiveUp(failure) => {
                    self.count(topic, &error, "gave_up");
                    // The caller dead-letters the record, or stops the worker.
                    tracing::warn!(
                        topic,
                        error = %failure.error,
                        error.kind = failure.error.kind.as_str(),
                        attempts = failure.attempts,
                        budget_spent = failure.budget_spent,
                        "publish failed, giving the record up"
                    );
                    return Err(failure);
                }
            }
        }
    }

    fn count(&self, topic: &str, error: &SinkError, decision: &str) {
        if let Some(failures) = &self.failures {
            failures
                .get_or_create(&PublishFailureLabels {
                    topic: topic.to_owned(),
                    kind: error.kind.as_str().to_owned(),
                    error: error.code_label(),
                    decision: decision.to_owned(),
                })
                .inc();
        }
    }

    /// Waits up to `timeout` for every queued record to be acked.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(Timeout::After(timeout))
    }
}
