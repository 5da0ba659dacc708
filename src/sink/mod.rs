//! The Kafka sinks: an idempotent producer (acks=all) for enrichment records and dead letters
//! (at-least-once delivery), or a transactional one (exactly-once delivery).
//!
//! - `producer`: [`Sink`], the producer and its publish loop.
//! - [`error`]: what a failed publish means ([`SinkError`]: retryable, permanent, fatal), from
//!   librdkafka's error codes; [`PublishError`]: a record the sink gave up on.
//! - [`retry`]: one publish's retry state (backoff with jitter, `kafka.produce_retry_budget`).
//! - [`dead_letter`]: the dead-letter record: headers and [`DeadLetterKind`].
//! - [`transaction`]: exactly-once delivery: [`TransactionalSink`] writes [`Outgoing`] records
//!   and consumer offsets in one Kafka transaction.

pub mod dead_letter;
pub mod error;
mod producer;
pub mod retry;
pub mod transaction;

pub use dead_letter::{DeadLetterKind, DeadLetterReason, dead_letter_headers};
pub use error::{PublishError, SinkError, SinkErrorKind};
pub use producer::{Sink, producer_config};
pub use transaction::{
    Outgoing, TransactionFailure, TransactionOffsets, TransactionalSink, commit_bound, init_bound,
};
