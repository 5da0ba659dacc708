//! The Kafka source: the consumer (one group over the transaction and verdict topics,
//! cooperative-sticky, manual offset store), owned records, and the contiguous watermark that
//! decides which offsets may be stored.

mod consumer;
mod message;
pub mod watermark;

pub use consumer::{LagGauges, RebalanceNote, SourceConsumer, SourceContext, consumer_config};
pub use message::SourceMessage;
pub use watermark::{Partition, Watermarks};
