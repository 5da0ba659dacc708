//! The schemas, prepared once: the record kinds and their built-in reader schemas, schema
//! interning, and each schema's reader, resolution names and writer (see "Cost" in the module
//! docs).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::ResolvedSchema;
use apache_avro::writer::datum::GenericDatumWriter;

use super::{ENRICHMENT_AVSC, FRAUD_VERDICT_AVSC, TRANSACTION_AVSC};

/// The three records the worker reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RecordKind {
    Transaction,
    Verdict,
    Enrichment,
}

impl RecordKind {
    pub(super) const ALL: [RecordKind; 3] = [
        RecordKind::Transaction,
        RecordKind::Verdict,
        RecordKind::Enrichment,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            RecordKind::Transaction => "Transaction",
            RecordKind::Verdict => "FraudVerdict",
            RecordKind::Enrichment => "Enrichment",
        }
    }

    pub(super) fn avsc(self) -> &'static str {
        match self {
            RecordKind::Transaction => TRANSACTION_AVSC,
            RecordKind::Verdict => FRAUD_VERDICT_AVSC,
            RecordKind::Enrichment => ENRICHMENT_AVSC,
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// Shares each distinct schema text as one `&'static Schema` for the rest of the process.
///
/// apache-avro's prepared readers and writers borrow their schema; keeping them in the codec
/// (instead of rebuilding them — ≈0.2–0.5 µs — for every message) needs a schema that outlives
/// the codec. Interning by text bounds the memory kept to the distinct schemas ever loaded (a
/// few KiB each), however many codecs are built.
pub(super) fn intern(
    text: &str,
    parse: impl FnOnce() -> Result<Schema, String>,
) -> Result<&'static Schema, String> {
    static INTERNED: OnceLock<Mutex<HashMap<String, &'static Schema>>> = OnceLock::new();
    let mut map = INTERNED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(schema) = map.get(text) {
        return Ok(schema);
    }
    let schema: &'static Schema = Box::leak(Box::new(parse()?));
    map.insert(text.to_owned(), schema);
    Ok(schema)
}

/// A schema with everything apache-avro derives from it prepared once.
pub(super) struct Prepared {
    pub(super) schema: &'static Schema,
    /// Named types, for resolving a value *into* this schema.
    pub(super) resolved: ResolvedSchema<'static>,
    /// Decodes data written with this schema (no resolution).
    pub(super) reader: GenericDatumReader<'static>,
    /// Parsing Canonical Form, to detect a writer identical to the reader.
    pub(super) canonical: String,
}

impl Prepared {
    pub(super) fn new(schema: &'static Schema) -> Result<Prepared, String> {
        let err = |e: apache_avro::Error| e.to_string();
        Ok(Prepared {
            schema,
            resolved: ResolvedSchema::try_from(schema).map_err(err)?,
            reader: GenericDatumReader::builder(schema).build().map_err(err)?,
            canonical: schema.canonical_form(),
        })
    }

    /// A writer schema matches this reader if it is a record with the same unqualified name or
    /// one of this reader's aliases (the Avro resolution rule for records).
    pub(super) fn matches_record(&self, writer: &Schema) -> bool {
        let (Schema::Record(reader), Schema::Record(writer)) = (self.schema, writer) else {
            return false;
        };
        let wanted = writer.name.name();
        reader.name.name() == wanted
            || reader
                .aliases
                .iter()
                .flatten()
                .any(|alias| alias.name() == wanted)
    }
}

/// One catalog entry, prepared for decoding and encoding.
pub(super) struct Writer {
    pub(super) prepared: Prepared,
    /// Encodes (validated) values of this schema when it is not the built-in one.
    pub(super) writer: GenericDatumWriter<'static>,
    pub(super) kind: Option<RecordKind>,
    /// Same Parsing Canonical Form as the built-in reader: no resolution needed either way.
    pub(super) same_as_reader: bool,
}

/// The full name of a named schema, else its kind (for messages).
pub(super) fn full_name(schema: &Schema) -> String {
    schema
        .name()
        .map(|n| n.fullname(None))
        .unwrap_or_else(|| format!("{:?}", apache_avro::schema::SchemaKind::from(schema)))
}
