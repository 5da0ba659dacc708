//! The Kafka source: the consumer (one group over the transaction and verdict topics,
//! cooperative-sticky or KIP-848, manual offset store), owned records, the contiguous watermark
//! that decides which offsets may be stored, and the bounded [`range`] reader that redrive,
//! replay, tail and bench read partitions with.

pub mod access;
mod consumer;
mod message;
pub mod ownership;
pub mod range;
pub mod redelivery;
pub mod watermark;

pub use consumer::{
    LagGauges, RECONNECT_BACKOFF_MAX_MS, RebalanceNote, SourceConsumer, SourceContext,
    consumer_config,
};
pub use message::SourceMessage;
pub use ownership::{CommitGuard, Epoch, Ownership};
pub use redelivery::Redeliveries;
pub use watermark::{Partition, Watermarks};
