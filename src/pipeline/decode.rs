//! Record → event, or the reason it is poison (dead-lettered at once, never retried).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::codec::registry::SchemaRegistry;
use crate::codec::validate::{Limits, validate_transaction, validate_verdict};
use crate::codec::{Codec, CodecKind, DecodeError};
use crate::plan::{EventBody, PlannedEvent, SourceRef};
use crate::sink::DeadLetterKind;
use crate::source::SourceMessage;

/// Why a record is poison: a stable kind (metric label, `fds.error.kind`) and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison {
    /// Stable error kind.
    pub kind: DeadLetterKind,
    /// What is wrong, naming the field where there is one.
    pub message: String,
}

impl Poison {
    fn new(kind: DeadLetterKind, message: impl Into<String>) -> Poison {
        Poison {
            kind,
            message: message.into(),
        }
    }
}

/// What decoding needs: the codec, the limits, and which topic carries what.
pub struct Decoder {
    /// Avro + Confluent framing.
    pub codec: Codec,
    /// Field limits.
    pub limits: Limits,
    /// The transaction topic.
    pub transactions_topic: String,
    /// The topics allowed to change blacklists.
    pub verdict_topics: Vec<String>,
    /// Events timestamped further than this in the future are invalid (milliseconds).
    pub max_future_skew_ms: i64,
    /// The Schema Registry that supplies writer schemas the codec does not know (`None`:
    /// offline, the local catalog alone). The live loop resolves ids through it before
    /// decoding (see `resolve.rs`).
    pub registry: Option<Arc<SchemaRegistry>>,
    /// Writer schema ids the registry could not supply for good (404, or a schema that does
    /// not resolve against the reader), with the reason their records are dead-lettered with.
    pub misses: WriterMisses,
}

/// Writer schema ids that could not be had, and why (bounded: forgotten past [`Self::MAX`],
/// then asked for again).
#[derive(Debug, Default)]
pub struct WriterMisses(Mutex<HashMap<u32, String>>);

impl WriterMisses {
    /// Most ids kept.
    pub const MAX: usize = 10_000;

    /// Notes that `id` cannot be had, and why.
    pub fn insert(&self, id: u32, reason: String) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= Self::MAX {
            map.clear();
        }
        map.insert(id, reason);
    }

    /// Why `id` cannot be had, if it cannot.
    pub fn get(&self, id: u32) -> Option<String> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&id).cloned()
    }

    /// Whether `id` is known to be missing.
    pub fn contains(&self, id: u32) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&id)
    }
}

impl Decoder {
    /// The poison a decode error stands for; an unknown id the registry could not supply says
    /// why.
    fn poison(&self, error: &DecodeError) -> Poison {
        let mut message = error.to_string();
        if let DecodeError::UnknownSchema { id } = error
            && let Some(reason) = self.misses.get(*id)
        {
            message = format!("{message}: {reason}");
        }
        Poison::new(CodecKind::from(error).into(), message)
    }
}

/// Decodes and validates one record.
pub fn decode(
    decoder: &Decoder,
    message: &SourceMessage,
    now_ms: i64,
) -> Result<PlannedEvent, Poison> {
    let Some(payload) = message.payload.as_deref() else {
        return Err(Poison::new(CodecKind::Empty.into(), "record has no value"));
    };
    let topic: &str = &message.topic;
    let body = if topic == decoder.transactions_topic {
        let tx = decoder
            .codec
            .decode_transaction(payload)
            .map_err(|e| decoder.poison(&e))?;
        validate_transaction(&tx, &decoder.limits)
            .map_err(|e| Poison::new(CodecKind::from(&e).into(), e.to_string()))?;
        check_time(tx.event_time_ms, now_ms, decoder.max_future_skew_ms)?;
        EventBody::Transaction(tx)
    } else if decoder.verdict_topics.iter().any(|t| t == topic) {
        let verdict = decoder
            .codec
            .decode_verdict(payload)
            .map_err(|e| decoder.poison(&e))?;
        validate_verdict(&verdict, &decoder.limits)
            .map_err(|e| Poison::new(CodecKind::from(&e).into(), e.to_string()))?;
        check_time(verdict.event_time_ms, now_ms, decoder.max_future_skew_ms)?;
        EventBody::Verdict(verdict)
    } else {
        // Only the configured verdict topics may change blacklists.
        return Err(Poison::new(
            DeadLetterKind::UnexpectedTopic,
            format!("topic `{topic}` is neither the transaction topic nor a verdict topic"),
        ));
    };
    Ok(PlannedEvent {
        source: SourceRef {
            topic: Arc::clone(&message.topic),
            partition: message.partition,
            offset: message.offset,
        },
        body,
        redrive: None,
    })
}

fn check_time(event_time_ms: i64, now_ms: i64, max_skew_ms: i64) -> Result<(), Poison> {
    if event_time_ms > now_ms + max_skew_ms {
        return Err(Poison::new(
            CodecKind::InvalidField.into(),
            format!("event_time {event_time_ms} is more than {max_skew_ms} ms in the future"),
        ));
    }
    Ok(())
}
