//! Typed codec errors. Every variant has a short, stable [`DecodeError::kind`] string used in
//! DLQ headers (`error_kind`) and as a metrics label.

use thiserror::Error;

/// Why a message could not be decoded. Decoding errors are *poison*: the message goes to the DLQ
/// at once and is never retried (retrying cannot change the bytes).
///
/// The checks run in this order: size limit, header (empty / too short / magic), schema id,
/// Avro body, schema resolution, typed fields.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The message value is empty (zero bytes, e.g. a tombstone).
    #[error("empty message")]
    Empty,
    /// The message is shorter than the 5-byte Confluent header.
    #[error("message of {len} bytes is shorter than the 5-byte Confluent header")]
    TooShort {
        /// The message length in bytes.
        len: usize,
    },
    /// The first byte is not the Confluent magic byte 0.
    #[error("wrong magic byte {found:#04x}, expected 0x00 (not Confluent-framed Avro)")]
    WrongMagic {
        /// The byte found.
        found: u8,
    },
    /// The schema id is not in the local schema catalog.
    #[error("unknown schema id {id}: not in the local schema catalog")]
    UnknownSchema {
        /// The schema id from the header.
        id: u32,
    },
    /// The message is larger than the configured maximum; rejected before any decoding.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    Oversize {
        /// The message length in bytes.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The Avro body does not match its writer schema: truncated, trailing bytes, or garbage.
    #[error("malformed Avro body (writer schema id {schema_id}): {message}")]
    MalformedAvro {
        /// The writer schema id from the header.
        schema_id: u32,
        /// What apache-avro (or the framing check) reported.
        message: String,
    },
    /// The writer schema cannot be resolved to the reader schema: a different record type, an
    /// enum symbol the reader does not know, a missing field without a default, …
    #[error("cannot resolve writer schema id {schema_id} to the {record} reader schema: {message}")]
    Resolution {
        /// The writer schema id from the header.
        schema_id: u32,
        /// The reader record name (`Transaction`, `FraudVerdict`, `Enrichment`).
        record: &'static str,
        /// What apache-avro (or the record-name check) reported.
        message: String,
    },
    /// The decoded record lacks a field or carries a value of the wrong type or out of range.
    #[error("field `{field}`: {reason}")]
    InvalidField {
        /// The field path, e.g. `event_time` or `velocity[2].dimension`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The stable kind of a codec error: the DLQ header value (`fds.error.kind`) and metrics
/// label of a record the codec rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecKind {
    /// [`DecodeError::Empty`].
    Empty,
    /// [`DecodeError::TooShort`].
    TooShort,
    /// [`DecodeError::WrongMagic`].
    WrongMagic,
    /// [`DecodeError::UnknownSchema`] and [`EncodeError::UnknownSchema`].
    UnknownSchema,
    /// [`DecodeError::Oversize`].
    Oversize,
    /// [`DecodeError::MalformedAvro`].
    MalformedAvro,
    /// [`DecodeError::Resolution`].
    Resolution,
    /// [`DecodeError::InvalidField`] and every
    /// [`ValidationError`](super::validate::ValidationError).
    InvalidField,
    /// [`EncodeError::Schema`].
    EncodeSchema,
}

impl CodecKind {
    /// The stable label.
    pub const fn as_str(self) -> &'static str {
        match self {
            CodecKind::Empty => "empty",
            CodecKind::TooShort => "too_short",
            CodecKind::WrongMagic => "wrong_magic",
            CodecKind::UnknownSchema => "unknown_schema",
            CodecKind::Oversize => "oversize",
            CodecKind::MalformedAvro => "malformed_avro",
            CodecKind::Resolution => "resolution",
            CodecKind::InvalidField => "invalid_field",
            CodecKind::EncodeSchema => "encode_schema",
        }
    }
}

impl From<&DecodeError> for CodecKind {
    fn from(error: &DecodeError) -> CodecKind {
        match error {
            DecodeError::Empty => CodecKind::Empty,
            DecodeError::TooShort { .. } => CodecKind::TooShort,
            DecodeError::WrongMagic { .. } => CodecKind::WrongMagic,
            DecodeError::UnknownSchema { .. } => CodecKind::UnknownSchema,
            DecodeError::Oversize { .. } => CodecKind::Oversize,
            DecodeError::MalformedAvro { .. } => CodecKind::MalformedAvro,
            DecodeError::Resolution { .. } => CodecKind::Resolution,
            DecodeError::InvalidField { .. } => CodecKind::InvalidField,
        }
    }
}

impl DecodeError {
    /// A short stable label: `empty`, `too_short`, `wrong_magic`, `unknown_schema`, `oversize`,
    /// `malformed_avro`, `resolution` or `invalid_field` (see [`CodecKind`]).
    pub fn kind(&self) -> &'static str {
        CodecKind::from(self).as_str()
    }

    /// Every label [`DecodeError::kind`] can return (e.g. to pre-register metric series).
    pub const KINDS: [&'static str; 8] = [
        CodecKind::Empty.as_str(),
        CodecKind::TooShort.as_str(),
        CodecKind::WrongMagic.as_str(),
        CodecKind::UnknownSchema.as_str(),
        CodecKind::Oversize.as_str(),
        CodecKind::MalformedAvro.as_str(),
        CodecKind::Resolution.as_str(),
        CodecKind::InvalidField.as_str(),
    ];

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> DecodeError {
        DecodeError::InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Why an event could not be encoded.
///
/// Encoding with the built-in schemas cannot fail for well-formed events; these errors come from
/// a configured writer schema that differs from the built-in one (an older or newer version)
/// and cannot represent the event.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// The writer schema id is not in the catalog.
    #[error("unknown schema id {id}: not in the local schema catalog")]
    UnknownSchema {
        /// The requested writer schema id.
        id: u32,
    },
    /// The writer schema is for another record type, or cannot represent this value (e.g. it
    /// lacks an enum symbol or a field that has no default).
    #[error("cannot write a {record} with schema id {schema_id}: {message}")]
    Schema {
        /// The requested writer schema id.
        schema_id: u32,
        /// The record being written (`Transaction`, `FraudVerdict`, `Enrichment`).
        record: &'static str,
        /// What apache-avro (or the record-name check) reported.
        message: String,
    },
}

impl From<&EncodeError> for CodecKind {
    fn from(error: &EncodeError) -> CodecKind {
        match error {
            EncodeError::UnknownSchema { .. } => CodecKind::UnknownSchema,
            EncodeError::Schema { .. } => CodecKind::EncodeSchema,
        }
    }
}

impl EncodeError {
    /// A short stable label: `unknown_schema` or `encode_schema` (see [`CodecKind`]).
    pub fn kind(&self) -> &'static str {
        CodecKind::from(self).as_str()
    }
}

/// Why the schema catalog could not be built (a startup / configuration error).
#[derive(Debug, Error)]
pub enum CatalogError {
    /// A schema file could not be read.
    #[error("cannot read schema file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A schema does not parse as Avro.
    #[error("schema id {id} ({origin}) is not a valid Avro schema: {message}")]
    Parse {
        /// The schema id it was registered under.
        id: u32,
        /// Where it came from (a path, or `built-in`).
        origin: String,
        /// The apache-avro message.
        message: String,
    },
    /// A schema id configured for a record type is missing from the catalog.
    #[error("schema id {id} configured for {record} is not in the catalog")]
    MissingId {
        /// The configured id.
        id: u32,
        /// The record type (`Transaction`, `FraudVerdict`, `Enrichment`).
        record: &'static str,
    },
    /// A schema id configured for a record type holds another record type.
    #[error("schema id {id} configured for {record} holds `{found}`")]
    WrongRecord {
        /// The configured id.
        id: u32,
        /// The expected record type.
        record: &'static str,
        /// The full name of the schema found.
        found: String,
    },
}
