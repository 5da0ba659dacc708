//! Dead-letter records: the original key, value, headers and timestamp, plus headers saying
//! where the record came from and why it could not be processed — the union of Kafka
//! Connect's `__connect.errors.*` headers and fds-worker's own `fds.*` headers.

use std::time::SystemTime;

use super::error::PublishError;
use crate::codec::CodecKind;
use crate::source::SourceMessage;
use crate::store::FailureKind;

/// Header names (shared with `redrive`, which reads them back).
pub mod header {
    /// Source topic.
    pub const TOPIC: &str = "__connect.errors.topic";
    /// Source partition.
    pub const PARTITION: &str = "__connect.errors.partition";
    /// Source offset.
    pub const OFFSET: &str = "__connect.errors.offset";
    /// Error class (e.g. `fds.store.UnitFailed`, `fds.codec.DecodeError`).
    pub const CLASS: &str = "__connect.errors.exception.class.name";
    /// Error message.
    pub const MESSAGE: &str = "__connect.errors.exception.message";
    /// fds-worker's error kind (`slot_down`, `malformed_avro`, …).
    pub const KIND: &str = "fds.error.kind";
    /// Hash slot of the failed unit.
    pub const SLOT: &str = "fds.slot";
    /// Node serving that slot when the unit gave up.
    pub const NODE: &str = "fds.node";
    /// Attempts made.
    pub const ATTEMPTS: &str = "fds.attempts";
    /// First failure (RFC 3339).
    pub const FIRST_FAILURE: &str = "fds.first_failure";
    /// Last failure (RFC 3339).
    pub const LAST_FAILURE: &str = "fds.last_failure";
    /// JSON array of the hash tags whose writes did not happen (what `redrive` applies).
    pub const FAILED_TAGS: &str = "fds.failed_tags";
    /// Set on records dead-lettered by a replay (its value is the replay namespace).
    pub const REPLAY: &str = "fds.replay";
}

/// Why a record is dead-lettered, under one stable name: the `fds.error.kind` header value,
/// the `reason` label of `fds_events_dead_lettered_total`, and what `redrive --filter
/// error_kind=…` matches. The names ([`DeadLetterKind::as_str`]) never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterKind {
    /// The codec rejected the record (`malformed_avro`, `invalid_field`, …), or could not
    /// encode its enrichment record (`encode_schema`, `unknown_schema`).
    Codec(CodecKind),
    /// A record on a topic that is neither the transaction topic nor a verdict topic
    /// (`unexpected_topic`).
    UnexpectedTopic,
    /// A Redis unit gave up, or a write inside it failed: the [`FailureKind`]'s name
    /// (`slot_down`, `wrongtype`, …).
    Store(FailureKind),
    /// The enrichment record could not be published: a permanent producer error, or its retry
    /// budget spent (`publish_failed`). Its Redis writes were applied.
    PublishFailed,
}

impl DeadLetterKind {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::Codec(kind) => kind.as_str(),
            DeadLetterKind::UnexpectedTopic => "unexpected_topic",
            DeadLetterKind::Store(kind) => kind.as_str(),
            DeadLetterKind::PublishFailed => "publish_failed",
        }
    }
}

impl std::fmt::Display for DeadLetterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kind equals its stable name (`kind == "slot_down"`).
impl PartialEq<&str> for DeadLetterKind {
    fn eq(&self, name: &&str) -> bool {
        self.as_str() == *name
    }
}

impl From<CodecKind> for DeadLetterKind {
    fn from(kind: CodecKind) -> DeadLetterKind {
        DeadLetterKind::Codec(kind)
    }
}

impl From<FailureKind> for DeadLetterKind {
    fn from(kind: FailureKind) -> DeadLetterKind {
        DeadLetterKind::Store(kind)
    }
}

/// Why a record is dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterReason {
    /// Error class, Kafka Connect style.
    pub class: &'static str,
    /// Stable error kind (a metric label too).
    pub kind: DeadLetterKind,
    /// Human-readable message.
    pub message: String,
    /// Slot of the failed unit, if a Redis failure.
    pub slot: Option<u16>,
    /// Node serving that slot, if known.
    pub node: Option<String>,
    /// Attempts made (0 for poison).
    pub attempts: u32,
    /// First failure time.
    pub first_failure: SystemTime,
    /// Last failure time.
    pub last_failure: SystemTime,
    /// Hash tags whose writes did not happen.
    pub failed_tags: Vec<String>,
    /// Replay namespace, when dead-lettered by a replay.
    pub replay: Option<String>,
}

impl DeadLetterReason {
    /// A record that cannot be decoded or is invalid: dead-lettered at once, never retried.
    pub fn poison(kind: DeadLetterKind, message: impl Into<String>) -> DeadLetterReason {
        let now = SystemTime::now();
        DeadLetterReason {
            class: "fds.codec.PoisonRecord",
            kind,
            message: message.into(),
            slot: None,
            node: None,
            attempts: 0,
            first_failure: now,
            last_failure: now,
            failed_tags: Vec::new(),
            replay: None,
        }
    }
}

impl DeadLetterReason {
    /// An enrichment record the sink gave up on (`publish_failed`): the message names the
    /// topic and the error.
    pub fn publish_failed(failure: &PublishError) -> DeadLetterReason {
        DeadLetterReason {
            class: "fds.sink.PublishFailed",
            kind: DeadLetterKind::PublishFailed,
            message: failure.to_string(),
            slot: None,
            node: None,
            attempts: failure.attempts,
            first_failure: failure.first_failure,
            last_failure: failure.last_failure,
            failed_tags: Vec::new(),
            replay: None,
        }
    }
}

/// The headers of the dead letter for `message`: its own headers first (minus any error
/// headers of an earlier dead-lettering, which are replaced), then ours.
pub fn dead_letter_headers(
    message: &SourceMessage,
    reason: &DeadLetterReason,
) -> Vec<(String, Option<Vec<u8>>)> {
    let ours = |name: &str| name.starts_with("__connect.errors.") || name.starts_with("fds.");
    let mut headers: Vec<(String, Option<Vec<u8>>)> = message
        .headers
        .iter()
        .filter(|(name, _)| !ours(name))
        .cloned()
        .collect();
    let mut put =
        |name: &str, value: String| headers.push((name.to_owned(), Some(value.into_bytes())));
    put(header::TOPIC, message.topic.to_string());
    put(header::PARTITION, message.partition.to_string());
    put(header::OFFSET, message.offset.to_string());
    put(header::CLASS, reason.class.to_owned());
    put(header::MESSAGE, reason.message.clone());
    put(header::KIND, reason.kind.as_str().to_owned());
    if let Some(slot) = reason.slot {
        put(header::SLOT, slot.to_string());
    }
    if let Some(node) = &reason.node {
        put(header::NODE, node.clone());
    }
    put(header::ATTEMPTS, reason.attempts.to_string());
    put(header::FIRST_FAILURE, rfc3339(reason.first_failure));
    put(header::LAST_FAILURE, rfc3339(reason.last_failure));
    if !reason.failed_tags.is_empty() {
        put(
            header::FAILED_TAGS,
            serde_json::to_string(&reason.failed_tags).expect("strings serialize"),
        );
    }
    if let Some(namespace) = &reason.replay {
        put(header::REPLAY, namespace.clone());
    }
    headers
}

fn rfc3339(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn headers_carry_origin_and_reason_and_keep_the_originals() {
        let message = SourceMessage {
            topic: Arc::from("transactions"),
            partition: 2,
            offset: 41,
            key: Some(b"u1".to_vec()),
            payload: Some(vec![0, 0, 0, 0, 1]),
            headers: vec![
                ("trace-id".to_owned(), Some(b"abc".to_vec())),
                (header::KIND.to_owned(), Some(b"stale".to_vec())),
            ],
            timestamp_ms: Some(1),
        };
        let mut reason =
            DeadLetterReason::poison(CodecKind::MalformedAvro.into(), "truncated body");
        reason.slot = Some(866);
        reason.failed_tags = vec!["{u:1}".to_owned()];
        let headers = dead_letter_headers(&message, &reason);
        let get = |name: &str| {
            let values: Vec<_> = headers.iter().filter(|(n, _)| n == name).collect();
            assert!(values.len() <= 1, "{name} appears once");
            values
                .first()
                .map(|(_, v)| String::from_utf8(v.clone().unwrap()).unwrap())
        };
        assert_eq!(get("trace-id").as_deref(), Some("abc"));
        assert_eq!(get(header::TOPIC).as_deref(), Some("transactions"));
        assert_eq!(get(header::PARTITION).as_deref(), Some("2"));
        assert_eq!(get(header::OFFSET).as_deref(), Some("41"));
        assert_eq!(get(header::KIND).as_deref(), Some("malformed_avro"));
        assert_eq!(get(header::SLOT).as_deref(), Some("866"));
        assert_eq!(get(header::FAILED_TAGS).as_deref(), Some(r#"["{u:1}"]"#));
        assert!(get(header::FIRST_FAILURE).unwrap().ends_with('Z'));
    }

    #[test]
    fn kinds_keep_the_names_every_dead_letter_carried_so_far() {
        // Header values and metric labels: redrive filters and dashboards read them.
        let names = |kinds: &[DeadLetterKind]| kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>();
        let codec = [
            CodecKind::Empty,
            CodecKind::TooShort,
            CodecKind::WrongMagic,
            CodecKind::UnknownSchema,
            CodecKind::Oversize,
            CodecKind::MalformedAvro,
            CodecKind::Resolution,
            CodecKind::InvalidField,
            CodecKind::EncodeSchema,
        ]
        .map(DeadLetterKind::Codec);
        assert_eq!(
            names(&codec),
            [
                "empty",
                "too_short",
                "wrong_magic",
                "unknown_schema",
                "oversize",
                "malformed_avro",
                "resolution",
                "invalid_field",
                "encode_schema"
            ]
        );
        let store = [
            FailureKind::Redirect,
            FailureKind::TryAgain,
            FailureKind::ClusterDown,
            FailureKind::SlotDown,
            FailureKind::MasterDown,
            FailureKind::Loading,
            FailureKind::Connection,
            FailureKind::Timeout,
            FailureKind::FunctionMissing,
            FailureKind::NotReplicated,
            FailureKind::WrongType,
            FailureKind::OutOfMemory,
            FailureKind::Script,
            FailureKind::Auth,
            FailureKind::Other,
        ]
        .map(DeadLetterKind::Store);
        assert_eq!(
            names(&store),
            [
                "redirect",
                "tryagain",
                "clusterdown",
                "slot_down",
                "masterdown",
                "loading",
                "connection",
                "timeout",
                "function_missing",
                "not_replicated",
                "wrongtype",
                "oom",
                "script",
                "auth",
                "other"
            ]
        );
        assert_eq!(DeadLetterKind::UnexpectedTopic, "unexpected_topic");
        assert_eq!(DeadLetterKind::PublishFailed, "publish_failed");
    }
}
