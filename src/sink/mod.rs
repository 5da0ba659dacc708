//! The Kafka sinks: one idempotent producer (acks=all) for enrichment records and dead
//! letters.
//!
//! - `producer`: [`Sink`], the producer and its publish loop.
//! - [`error`]: what a failed publish means ([`SinkError`]: retryable, permanent, fatal), from
//!   librdkafka's error codes; [`PublishError`]: a record the sink gave up on.
//! - [`retry`]: one publish's retry state (backoff with jitter, `kafka.produce_retry_budget`).
//! - [`dead_letter`]: the dead-letter record: headers and [`DeadLetterKind`].

pub mod dead_letter;
pub mod error;
mod producer;
pub mod retry;

pub use dead_letter::{DeadLetterKind, DeadLetterReason, dead_letter_headers};
pub use error::{PublishError, SinkError, SinkErrorKind};
pub use producer::{Sink, producer_config};
