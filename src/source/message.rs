//! A consumed Kafka record, owned, so it can outlive the consumer's buffer and be copied
//! verbatim into a dead letter.

use std::sync::Arc;

use rdkafka::Message;
use rdkafka::message::{BorrowedMessage, Headers};

/// A consumed record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceMessage {
    /// Topic it was read from.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Record value.
    pub payload: Option<Vec<u8>>,
    /// Record headers, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Record timestamp (create or log-append time), Unix milliseconds.
    pub timestamp_ms: Option<i64>,
}

impl SourceMessage {
    /// Copies a borrowed record; `topic` is the interned topic name.
    pub fn from_borrowed(message: &BorrowedMessage<'_>, topic: Arc<str>) -> SourceMessage {
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        SourceMessage {
            topic,
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers,
            timestamp_ms: message.timestamp().to_millis(),
        }
    }

    /// The value of the first header named `name`, as UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.as_deref())
            .and_then(|value| std::str::from_utf8(value).ok())
    }
}
