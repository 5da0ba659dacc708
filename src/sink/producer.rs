//! The producer for enrichment records and dead letters.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use super::dead_letter::{DeadLetterReason, dead_letter_headers};
use crate::config::KafkaConfig;
use crate::source::SourceMessage;

/// The longest wait before reconnecting to a broker, for the producer and the consumer.
/// librdkafka's default (10 s) let a 4 s broker outage cost the consumer its group session
/// (10 s) and a rebalance; Kafka's Java clients use 1 s.
pub const RECONNECT_BACKOFF_MAX_MS: &str = "1000";

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

/// Publishes enrichment records and dead letters; every send resolves when the broker acks.
#[derive(Clone)]
pub struct Sink {
    producer: FutureProducer,
    enrichment_topic: String,
}

impl Sink {
    /// A sink over a new producer.
    pub fn new(kafka: &KafkaConfig) -> Result<Sink, KafkaError> {
        Ok(Sink {
            producer: producer_config(kafka).create()?,
            enrichment_topic: kafka.enrichment_topic.clone(),
        })
    }

    /// The underlying producer.
    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// Publishes an enrichment record keyed by user id; resolves when acked. On failure after
    /// librdkafka's own retries, retries again (the caller's offsets wait meanwhile).
    pub async fn publish_enrichment(&self, user_id: &str, payload: &[u8]) {
        let record = || {
            FutureRecord::to(&self.enrichment_topic)
                .key(user_id)
                .payload(payload)
        };
        self.deliver(record).await;
    }

    /// Publishes the dead letter of `message` to `topic`; resolves when acked.
    pub async fn publish_dead_letter(
        &self,
        topic: &str,
        message: &SourceMessage,
        reason: &DeadLetterReason,
    ) {
        let mut headers = OwnedHeaders::new();
        for (key, value) in dead_letter_headers(message, reason) {
            headers = headers.insert(Header {
                key: &key,
                value: value.as_deref(),
            });
        }
        let record = || {
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(topic).headers(headers.clone());
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
        };
        self.deliver(record).await;
    }

    async fn deliver<'a, K, P>(&'a self, record: impl Fn() -> FutureRecord<'a, K, P>)
    where
        K: rdkafka::message::ToBytes + ?Sized + 'a,
        P: rdkafka::message::ToBytes + ?Sized + 'a,
    {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.producer.send(record(), Timeout::Never).await {
                Ok(_) => return,
                Err((error, _)) => {
                    tracing::warn!(%error, topic = record().topic, "publish failed, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Waits up to `timeout` for every queued record to be acked.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(Timeout::After(timeout))
    }
}
