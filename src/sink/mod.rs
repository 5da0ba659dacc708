//! The Kafka sinks: one idempotent producer (acks=all) for enrichment records and dead
//! letters.

pub mod dead_letter;
mod producer;

pub use dead_letter::{DeadLetterReason, dead_letter_headers};
pub use producer::{Sink, producer_config};
