//! What a failed publish means, decided once from librdkafka's own error codes: try again
//! (within the retry budget), give up on this record, or stop — the producer can publish
//! nothing more.

use std::time::{Duration, SystemTime};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// How a failed publish is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SinkErrorKind {
    /// A condition that passes: the producer's queue is full, brokers are unreachable or
    /// electing a leader, too few replicas are in sync, a request or the delivery timed out.
    /// Tried again with backoff, within the retry budget.
    Retryable,
    /// This topic will not take this record as it is: too large, invalid, not authorized,
    /// the topic or partition does not exist (librdkafka reports that only after waiting for
    /// it: `topic.metadata.propagation.max.ms`, or its own retries). Another topic (the
    /// dead-letter topic) may take the record.
    Permanent,
    /// The producer itself cannot publish anything more: a fatal idempotence error, fenced,
    /// not authorized on the cluster, authentication failed, or closed. The worker stops.
    Fatal,
}

impl SinkErrorKind {
    /// The kind of a librdkafka error code. Codes not listed are retryable: the retry budget
    /// bounds them, so an unknown code costs time, never a record.
    pub fn of_code(code: RDKafkaErrorCode) -> SinkErrorKind {
        use RDKafkaErrorCode as C;
        match code {
            C::MessageSizeTooLarge
            | C::InvalidMessageSize
            | C::MessageBatchTooLarge
            | C::InvalidMessage
            | C::InvalidRecord
            | C::InvalidTimestamp
            | C::InvalidArgument
            | C::UnsupportedForMessageFormat
            | C::UnsupportedCompressionType
            | C::PolicyViolation
            | C::TopicAuthorizationFailed
            | C::InvalidTopic
            | C::UnknownTopic
            | C::UnknownPartition
            | C::UnknownTopicOrPartition
            | C::UnknownTopicId => SinkErrorKind::Permanent,
            C::Fatal
            | C::Fenced
            | C::ProducerFenced
            | C::InvalidProducerEpoch
            | C::InvalidProducerIdMapping
            | C::OutOfOrderSequenceNumber
            | C::TransactionCoordinatorFenced
            | C::TransactionalIdAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::Authentication
            | C::SaslAuthenticationFailed
            | C::UnsupportedSASLMechanism
            | C::IllegalSASLState
            | C::SSL
            | C::BrokerDestroy => SinkErrorKind::Fatal,
            // Listed for the reader (and the tests); the default says the same.
            C::QueueFull
            | C::MessageTimedOut
            | C::TimedOutQueue
            | C::OperationTimedOut
            | C::RequestTimedOut
            | C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::Resolve
            | C::NetworkException
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::BrokerNotAvailable
            | C::ReplicaNotAvailable
            | C::PreferredLeaderNotAvailable
            | C::EligibleLeadersNotAvailable
            | C::FencedLeaderEpoch
            | C::UnknownLeaderEpoch
            | C::NotEnoughReplicas
            | C::NotEnoughReplicasAfterAppend
            | C::ISRInsufficient
            | C::KafkaStorageError
            | C::ThrottlingQuotaExceeded
            | C::CoordinatorLoadInProgress
            | C::CoordinatorNotAvailable
            | C::NotCoordinator
            | C::Retry
            | C::PurgeQueue
            | C::PurgeInflight => SinkErrorKind::Retryable,
            _ => SinkErrorKind::Retryable,
        }
    }

    /// The kind of an rdkafka error: by its code where it has one, else by its variant.
    pub fn of(error: &KafkaError) -> SinkErrorKind {
        match error {
            // Transactional errors carry librdkafka's own verdict.
            KafkaError::Transaction(error) if error.is_fatal() => SinkErrorKind::Fatal,
            KafkaError::Transaction(error) if error.is_retriable() => SinkErrorKind::Retryable,
            // The producer was dropped, or could not be made.
            KafkaError::Canceled | KafkaError::ClientCreation(_) | KafkaError::ClientConfig(..) => {
                SinkErrorKind::Fatal
            }
            // A topic name with a NUL byte.
            KafkaError::Nul(_) => SinkErrorKind::Permanent,
            other => other
                .rdkafka_error_code()
                .map_or(SinkErrorKind::Retryable, SinkErrorKind::of_code),
        }
    }

    /// Stable lowercase label (metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            SinkErrorKind::Retryable => "retryable",
            SinkErrorKind::Permanent => "permanent",
            SinkErrorKind::Fatal => "fatal",
        }
    }
}

/// A failed publish attempt, classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error} ({kind})", kind = kind.as_str())]
pub struct SinkError {
    /// What to do about it.
    pub kind: SinkErrorKind,
    /// rdkafka's error.
    #[source]
    pub error: KafkaError,
}

impl From<KafkaError> for SinkError {
    fn from(error: KafkaError) -> SinkError {
        SinkError {
            kind: SinkErrorKind::of(&error),
            error,
        }
    }
}

impl SinkError {
    /// Worth another attempt (within the budget).
    pub fn retryable(&self) -> bool {
        self.kind == SinkErrorKind::Retryable
    }

    /// A low-cardinality label for the error: librdkafka's code in snake case
    /// (`message_size_too_large`, `queue_full`), or the rdkafka variant without one.
    pub fn code_label(&self) -> String {
        match (&self.error, self.error.rdkafka_error_code()) {
            (_, Some(code)) => snake_case(&format!("{code:?}")),
            (KafkaError::Canceled, None) => "canceled".to_owned(),
            (KafkaError::ClientCreation(_) | KafkaError::ClientConfig(..), None) => {
                "client_creation".to_owned()
            }
            (KafkaError::Nul(_), None) => "nul_in_name".to_owned(),
            _ => "other".to_owned(),
        }
    }
}

/// `MessageSizeTooLarge` → `message_size_too_large`, `ISRInsufficient` → `isr_insufficient`.
fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let previous = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if previous.is_ascii_lowercase()
                || previous.is_ascii_digit()
                || (previous.is_ascii_uppercase() && next_lower)
            {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// A record the sink gave up on: where it was going, the last error, and how long it tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishError {
    /// The topic it was published to.
    pub topic: String,
    /// The last error.
    pub error: SinkError,
    /// Attempts made.
    pub attempts: u32,
    /// From the first attempt to giving up.
    pub elapsed: Duration,
    /// Gave up because the retry budget was spent (the error itself was retryable).
    pub budget_spent: bool,
    /// When the first attempt failed.
    pub first_failure: SystemTime,
    /// When the last attempt failed.
    pub last_failure: SystemTime,
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let elapsed = Duration::from_millis(self.elapsed.as_millis() as u64);
        write!(
            f,
            "publishing to `{}` failed after {} attempt(s) in {}",
            self.topic,
            self.attempts,
            humantime::format_duration(elapsed)
        )?;
        if self.budget_spent {
            f.write_str(" (retry budget spent)")?;
        }
        write!(f, ": {}", self.error)
    }
}

impl std::error::Error for PublishError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use RDKafkaErrorCode as C;

    const PERMANENT: &[RDKafkaErrorCode] = &[
        C::MessageSizeTooLarge,
        C::InvalidMessageSize,
        C::MessageBatchTooLarge,
        C::InvalidMessage,
        C::InvalidRecord,
        C::InvalidTimestamp,
        C::InvalidArgument,
        C::UnsupportedForMessageFormat,
        C::UnsupportedCompressionType,
        C::PolicyViolation,
        C::TopicAuthorizationFailed,
        C::InvalidTopic,
        C::UnknownTopic,
        C::UnknownPartition,
        C::UnknownTopicOrPartition,
        C::UnknownTopicId,
    ];
    const FATAL: &[RDKafkaErrorCode] = &[
        C::Fatal,
        C::Fenced,
        C::ProducerFenced,
        C::InvalidProducerEpoch,
        C::InvalidProducerIdMapping,
        C::OutOfOrderSequenceNumber,
        C::TransactionCoordinatorFenced,
        C::TransactionalIdAuthorizationFailed,
        C::ClusterAuthorizationFailed,
        C::Authentication,
        C::SaslAuthenticationFailed,
        C::UnsupportedSASLMechanism,
        C::IllegalSASLState,
        C::SSL,
        C::BrokerDestroy,
    ];
    const RETRYABLE: &[RDKafkaErrorCode] = &[
        C::QueueFull,
        C::MessageTimedOut,
        C::TimedOutQueue,
        C::OperationTimedOut,
        C::RequestTimedOut,
        C::BrokerTransportFailure,
        C::AllBrokersDown,
        C::Resolve,
        C::NetworkException,
        C::LeaderNotAvailable,
        C::NotLeaderForPartition,
        C::BrokerNotAvailable,
        C::ReplicaNotAvailable,
        C::PreferredLeaderNotAvailable,
        C::EligibleLeadersNotAvailable,
        C::FencedLeaderEpoch,
        C::UnknownLeaderEpoch,
        C::NotEnoughReplicas,
        C::NotEnoughReplicasAfterAppend,
        C::ISRInsufficient,
        C::KafkaStorageError,
        C::ThrottlingQuotaExceeded,
        C::CoordinatorLoadInProgress,
        C::CoordinatorNotAvailable,
        C::NotCoordinator,
        C::Retry,
        C::PurgeQueue,
        C::PurgeInflight,
    ];

    fn produced(code: RDKafkaErrorCode) -> SinkError {
        SinkError::from(KafkaError::MessageProduction(code))
    }

    #[test]
    fn every_mapped_code_has_its_kind() {
        for (codes, kind) in [
            (PERMANENT, SinkErrorKind::Permanent),
            (FATAL, SinkErrorKind::Fatal),
            (RETRYABLE, SinkErrorKind::Retryable),
        ] {
            for code in codes {
                assert_eq!(SinkErrorKind::of_code(*code), kind, "{code:?}");
                assert_eq!(produced(*code).kind, kind, "{code:?} as a delivery error");
            }
        }
    }

    #[test]
    fn codes_not_mapped_are_retried_within_the_budget() {
        for code in [C::Fail, C::Unknown, C::InvalidConfig, C::Conflict] {
            assert!(produced(code).retryable(), "{code:?}");
        }
    }

    #[test]
    fn errors_without_a_code_are_classified_by_variant() {
        assert_eq!(
            SinkError::from(KafkaError::Canceled).kind,
            SinkErrorKind::Fatal
        );
        assert_eq!(
            SinkError::from(KafkaError::ClientCreation("no brokers".into())).kind,
            SinkErrorKind::Fatal
        );
        let nul = std::ffi::CString::new("a\0b").unwrap_err();
        assert_eq!(
            SinkError::from(KafkaError::Nul(nul)).kind,
            SinkErrorKind::Permanent
        );
        assert_eq!(
            SinkError::from(KafkaError::NoMessageReceived).kind,
            SinkErrorKind::Retryable
        );
        // A flush error carries a code too.
        assert_eq!(
            SinkError::from(KafkaError::Flush(C::MessageSizeTooLarge)).kind,
            SinkErrorKind::Permanent
        );
    }

    #[test]
    fn labels_are_the_codes_in_snake_case() {
        assert_eq!(
            produced(C::MessageSizeTooLarge).code_label(),
            "message_size_too_large"
        );
        assert_eq!(produced(C::QueueFull).code_label(), "queue_full");
        assert_eq!(
            produced(C::ISRInsufficient).code_label(),
            "isr_insufficient"
        );
        assert_eq!(produced(C::SSL).code_label(), "ssl");
        assert_eq!(
            produced(C::UnsupportedSASLMechanism).code_label(),
            "unsupported_sasl_mechanism"
        );
        assert_eq!(produced(C::PartitionEOF).code_label(), "partition_eof");
        assert_eq!(
            SinkError::from(KafkaError::Canceled).code_label(),
            "canceled"
        );
    }

    #[test]
    fn a_given_up_publish_names_the_topic_the_error_and_the_budget() {
        let at = SystemTime::UNIX_EPOCH;
        let failure = PublishError {
            topic: "transactions-enriched".into(),
            error: produced(C::MessageSizeTooLarge),
            attempts: 1,
            elapsed: Duration::from_millis(12),
            budget_spent: false,
            first_failure: at,
            last_failure: at,
        };
        let text = failure.to_string();
        assert!(text.contains("`transactions-enriched`"), "{text}");
        assert!(text.contains("MessageSizeTooLarge"), "{text}");
        assert!(text.contains("(permanent)"), "{text}");
        assert!(!text.contains("budget"), "{text}");
        let spent = PublishError {
            error: produced(C::MessageTimedOut),
            budget_spent: true,
            ..failure
        };
        assert!(spent.to_string().contains("retry budget spent"), "{spent}");
    }
}
