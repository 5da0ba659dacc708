//! The Kafka sinks: one idempotent producer (acks=all) for enrichment records and dead
//! letters.

pub mod dead_letter;
mod producer;

pub use dead_letter::{DeadLetterKind, DeadLetterReason, dead_letter_headers};
pub use producer::{RECONNECT_BACKOFF_MAX_MS, Sink, producer_config};
