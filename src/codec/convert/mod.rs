//! Hand-written conversions between apache-avro [`Value`]s (shaped by the built-in reader
//! schemas) and the typed events. No serde round trip: fields are matched by name, strings are
//! moved out of the value, and every error names the field.
//!
//! `decode.rs`: Avro → typed; `encode.rs`: typed → Avro, shaped exactly like the built-in
//! schemas (union and enum indices included).

use apache_avro::types::Value;

mod decode;
mod encode;

pub(crate) use decode::{to_enrichment, to_transaction, to_verdict};
pub(crate) use encode::{
    action_index, enrichment_value, entity_kind_index, threat_level_index, transaction_value,
    verdict_value,
};

/// A record's fields, in schema order.
type Fields = Vec<(String, Value)>;
