//! Publishing generated traffic to Kafka.

use std::num::NonZeroU32;
use std::time::Duration;

use futures::StreamExt;
use governor::{Quota, RateLimiter};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use super::GeneratedEvent;
use crate::codec::Codec;

/// Publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// The broker did not ack a record.
    #[error("publishing generated traffic: {0}")]
    Kafka(#[from] KafkaError),
    /// A generated event could not be encoded.
    #[error("encoding generated traffic: {0}")]
    Encode(#[from] crate::codec::EncodeError),
}

/// Publishes `events` in order: transactions to `transactions_topic` keyed by user id,
/// verdicts to `verdict_topic` keyed by subject value. `rate` limits events per second
/// (`None` = as fast as possible). Returns when every record is acked.
pub async fn produce(
    producer: &FutureProducer,
    codec: &Codec,
    events: &[GeneratedEvent],
    transactions_topic: &str,
    verdict_topic: &str,
    rate: Option<NonZeroU32>,
) -> Result<(), ProduceError> {
    let limiter = rate.map(|r| RateLimiter::direct(Quota::per_second(r)));
    let mut records = Vec::with_capacity(events.len());
    for event in events {
        records.push(match event {
            GeneratedEvent::Transaction(tx) => (
                transactions_topic.to_owned(),
                tx.user_id.clone(),
                codec.encode_transaction(tx)?,
            ),
            GeneratedEvent::Verdict(verdict) => (
                verdict_topic.to_owned(),
                verdict.subject.value.clone(),
                codec.encode_verdict(verdict)?,
            ),
        });
    }
    let sends = futures::stream::iter(records.into_iter().map(|(topic, key, payload)| {
        let limiter = limiter.as_ref();
        async move {
            if let Some(limiter) = limiter {
                limiter.until_ready().await;
            }
            let record = FutureRecord::to(&topic).key(&key).payload(&payload);
            producer
                .send(record, Timeout::After(Duration::from_secs(30)))
                .await
                .map(|_| ())
                .map_err(|(error, _)| ProduceError::Kafka(error))
        }
    }))
    // Enqueue in order (ordered buffering keeps per-key order), many in flight at once.
    .buffered(1_024);
    futures::pin_mut!(sends);
    while let Some(result) = sends.next().await {
        result?;
    }
    Ok(())
}
