//! Publishing generated traffic to Kafka.

use std::num::NonZeroU32;
use std::time::Duration;

use futures::StreamExt;
use governor::{Quota, RateLimiter};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

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

/// A producer for generated traffic on `base` (brokers and security set): idempotent with
/// `acks=all`, as Kafka's own clients are by default since 3.0. librdkafka's default is not
/// idempotent: a leader that dies after replicating a batch but before acking it makes the
/// retry a duplicate with a new offset — an event the ground truth holds once, counted twice.
pub fn traffic_producer(mut base: rdkafka::ClientConfig) -> Result<FutureProducer, KafkaError> {
    base.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
}

/// Publishes `events` in order: transactions to `transactions_topic` keyed by user id,
/// verdicts to `verdict_topic` keyed by subject value. `rate` limits events per second
/// (`None` = as fast as possible). Records are enqueued in order, so per-key order holds.
/// Their timestamps are the publish time (what the benchmarks measure latency from).
/// Returns when every record is acked.
pub async fn produce(
    producer: &FutureProducer,
    codec: &Codec,
    events: &[GeneratedEvent],
    transactions_topic: &str,
    verdict_topic: &str,
    rate: Option<NonZeroU32>,
) -> Result<(), ProduceError> {
    let topics = (transactions_topic, verdict_topic);
    produce_records(producer, codec, events, topics, rate, false).await
}

/// [`produce`] with each record's timestamp set to its event's time, as producers of event
/// data do (CreateTime = event time): the brokers' time index then answers
/// `offsets_for_times` by event time.
pub async fn produce_at_event_time(
    producer: &FutureProducer,
    codec: &Codec,
    events: &[GeneratedEvent],
    transactions_topic: &str,
    verdict_topic: &str,
) -> Result<(), ProduceError> {
    let topics = (transactions_topic, verdict_topic);
    produce_records(producer, codec, events, topics, None, true).await
}

async fn produce_records(
    producer: &FutureProducer,
    codec: &Codec,
    events: &[GeneratedEvent],
    (transactions_topic, verdict_topic): (&str, &str),
    rate: Option<NonZeroU32>,
    at_event_time: bool,
) -> Result<(), ProduceError> {
    let limiter = rate.map(|r| RateLimiter::direct(even_pace(r)));
    // Records are enqueued one by one, in order (a rate limiter shared by concurrent sends
    // would let later records overtake earlier ones); acks are awaited in the background.
    let mut acks = futures::stream::FuturesOrdered::new();
    for event in events {
        let (topic, key, payload, event_time_ms) = match event {
            GeneratedEvent::Transaction(tx) => (
                transactions_topic,
                tx.user_id.as_str(),
                codec.encode_transaction(tx)?,
                tx.event_time_ms,
            ),
            GeneratedEvent::Verdict(verdict) => (
                verdict_topic,
                verdict.subject.value.as_str(),
                codec.encode_verdict(verdict)?,
                verdict.event_time_ms,
            ),
        };
        if let Some(limiter) = &limiter {
            limiter.until_ready().await;
        }
        let mut record = FutureRecord::to(topic).key(key).payload(&payload);
        if at_event_time {
            record = record.timestamp(event_time_ms);
        }
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    acks.push_back(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    // Let acks drain the queue.
                    match acks.next().await {
                        Some(ack) => settle(ack)?,
                        None => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
                Err((error, _)) => return Err(ProduceError::Kafka(error)),
            }
        }
        while acks.len() > MAX_UNACKED {
            if let Some(ack) = acks.next().await {
                settle(ack)?;
            }
        }
    }
    while let Some(ack) = acks.next().await {
        settle(ack)?;
    }
    Ok(())
}

/// Records in flight before publishing waits for acks.
const MAX_UNACKED: usize = 10_000;

/// `rate` events per second, evenly: a burst of at most 10 ms worth. (`Quota::per_second`
/// alone allows a whole second's events at once, which a fixed-rate benchmark must not offer.)
fn even_pace(rate: NonZeroU32) -> Quota {
    let burst = NonZeroU32::new(rate.get() / 100).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst)
}

fn settle(
    ack: Result<
        rdkafka::producer::future_producer::OwnedDeliveryResult,
        futures::channel::oneshot::Canceled,
    >,
) -> Result<(), ProduceError> {
    match ack {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((error, _))) => Err(ProduceError::Kafka(error)),
        Err(_) => Err(ProduceError::Kafka(KafkaError::Canceled)),
    }
}

#[cfg(test)]
mod tests {
    use governor::RateLimiter;

    use super::*;

    #[test]
    fn an_even_pace_allows_10_ms_of_events_at_once_not_a_second() {
        let limiter = RateLimiter::direct(even_pace(NonZeroU32::new(5_000).unwrap()));
        assert!(limiter.check_n(NonZeroU32::new(51).unwrap()).is_err());
        assert!(limiter.check_n(NonZeroU32::new(50).unwrap()).is_ok());
        let slow = RateLimiter::direct(even_pace(NonZeroU32::new(10).unwrap()));
        assert!(slow.check().is_ok());
        assert!(slow.check().is_err());
    }
}
