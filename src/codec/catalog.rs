//! The local schema catalog: Confluent schema id → parsed Avro writer schema.
//!
//! Every schema is parsed once, when it is registered; decoding only looks ids up.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use apache_avro::Schema;

use super::error::CatalogError;

/// The built-in `Transaction` schema (`schemas/transaction.avsc`), the reader schema for
/// transactions.
pub const TRANSACTION_AVSC: &str = include_str!("../../schemas/transaction.avsc");
/// The built-in `FraudVerdict` schema (`schemas/fraud_verdict.avsc`), the reader schema for
/// verdicts.
pub const FRAUD_VERDICT_AVSC: &str = include_str!("../../schemas/fraud_verdict.avsc");
/// The built-in `Enrichment` schema, version 2 (`schemas/enrichment.avsc`: adds `features`
/// and `rule_version`), the reader schema for enrichment records; id 4.
pub const ENRICHMENT_AVSC: &str = include_str!("../../schemas/enrichment.avsc");
/// The previous `Enrichment` schema, version 1 (`schemas/enrichment_v1.avsc`), kept under
/// id 3 so records written with it still decode (and consumers holding it read version 2).
pub const ENRICHMENT_V1_AVSC: &str = include_str!("../../schemas/enrichment_v1.avsc");

/// One registered writer schema.
#[derive(Debug, Clone)]
pub(crate) struct CatalogEntry {
    /// The parsed schema.
    pub(crate) schema: Arc<Schema>,
    /// The JSON text it was parsed from (the key under which the codec shares it).
    pub(crate) text: Arc<str>,
    /// Where it came from (a path, `built-in`, or a caller-given label), for error messages.
    pub(crate) origin: String,
}

/// Schema id → writer schema, built once at start from config (id → `.avsc` file).
///
/// [`SchemaCatalog::builtin`] holds the compiled-in schemas under the default ids
/// ([`SchemaIds::default`](super::SchemaIds::default): transaction 1, verdict 2, enrichment 4; 3 is enrichment version 1).
/// Registering an id again replaces its schema, so config entries override built-in ids.
#[derive(Debug, Clone, Default)]
pub struct SchemaCatalog {
    entries: BTreeMap<u32, CatalogEntry>,
}

impl SchemaCatalog {
    /// An empty catalog.
    pub fn empty() -> SchemaCatalog {
        SchemaCatalog::default()
    }

    /// The compiled-in schemas under the default ids: 1 = `Transaction`, 2 = `FraudVerdict`,
    /// 3 = `Enrichment` version 1, 4 = `Enrichment` version 2 (written).
    pub fn builtin() -> SchemaCatalog {
        let mut catalog = SchemaCatalog::empty();
        for (id, text) in [
            (1, TRANSACTION_AVSC),
            (2, FRAUD_VERDICT_AVSC),
            (3, ENRICHMENT_V1_AVSC),
            (4, ENRICHMENT_AVSC),
        ] {
            // The built-in schemas are covered by tests; a parse failure here is a build defect.
            if let Ok(schema) = Schema::parse_str(text) {
                catalog.insert(id, schema, text, "built-in".to_owned());
            }
        }
        catalog
    }

    /// The built-in schemas plus one `.avsc` file per `(schema_id, path)` entry (the config's
    /// local catalog); a file registered under a built-in id replaces the built-in schema.
    pub fn from_files<P: AsRef<Path>>(
        entries: impl IntoIterator<Item = (u32, P)>,
    ) -> Result<SchemaCatalog, CatalogError> {
        let mut catalog = SchemaCatalog::builtin();
        for (id, path) in entries {
            catalog.register_file(id, path)?;
        }
        Ok(catalog)
    }

    /// Parses the `.avsc` file at `path` and registers it under `id` (replacing any schema
    /// already there).
    pub fn register_file(
        &mut self,
        id: u32,
        path: impl AsRef<Path>,
    ) -> Result<&mut SchemaCatalog, CatalogError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            path: origin.clone(),
            source,
        })?;
        self.register_str(id, &text, origin)
    }

    /// Parses a schema given as JSON text and registers it under `id` (replacing any schema
    /// already there). `origin` names it in error messages.
    pub fn register_str(
        &mut self,
        id: u32,
        json: &str,
        origin: impl Into<String>,
    ) -> Result<&mut SchemaCatalog, CatalogError> {
        let origin = origin.into();
        let schema = Schema::parse_str(json).map_err(|e| CatalogError::Parse {
            id,
            origin: origin.clone(),
            message: e.to_string(),
        })?;
        self.insert(id, schema, json, origin);
        Ok(self)
    }

    fn insert(&mut self, id: u32, schema: Schema, text: &str, origin: String) {
        self.entries.insert(
            id,
            CatalogEntry {
                schema: Arc::new(schema),
                text: Arc::from(text),
                origin,
            },
        );
    }

    /// The schema registered under `id`.
    pub fn get(&self, id: u32) -> Option<&Schema> {
        self.entries.get(&id).map(|e| e.schema.as_ref())
    }

    /// The registered ids, ascending.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.entries.keys().copied()
    }

    /// Number of registered schemas.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no schema is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The JSON text of schema `id`, as registered.
    pub fn text(&self, id: u32) -> Option<&str> {
        self.entries.get(&id).map(|e| &*e.text)
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = (u32, &CatalogEntry)> {
        self.entries.iter().map(|(id, e)| (*id, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_schemas_parse() {
        for text in [
            TRANSACTION_AVSC,
            FRAUD_VERDICT_AVSC,
            ENRICHMENT_V1_AVSC,
            ENRICHMENT_AVSC,
        ] {
            Schema::parse_str(text).expect("built-in schema parses");
        }
        let catalog = SchemaCatalog::builtin();
        assert_eq!(catalog.ids().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    }

    #[test]
    fn builtin_schemas_document_every_field() {
        for text in [
            TRANSACTION_AVSC,
            FRAUD_VERDICT_AVSC,
            ENRICHMENT_V1_AVSC,
            ENRICHMENT_AVSC,
        ] {
            let json: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(json["namespace"], "io.fds.events");
            check_docs(&json);
        }
    }

    fn check_docs(v: &serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Array(fields)) = map.get("fields") {
                    for f in fields {
                        assert!(f.get("doc").is_some(), "field without doc: {f}");
                    }
                }
                if map.get("type") == Some(&serde_json::Value::from("enum")) {
                    assert!(map.get("default").is_none(), "enum with a default: {v}");
                }
                map.values().for_each(check_docs);
            }
            serde_json::Value::Array(items) => items.iter().for_each(check_docs),
            _ => {}
        }
    }

    #[test]
    fn register_replaces_and_reports_errors() {
        let mut catalog = SchemaCatalog::builtin();
        catalog.register_str(1, FRAUD_VERDICT_AVSC, "test").unwrap();
        assert_eq!(
            catalog.get(1).and_then(|s| s.name()).map(|n| n.name()),
            Some("FraudVerdict")
        );
        let err = catalog.register_str(9, "{not json", "test").unwrap_err();
        assert!(matches!(err, CatalogError::Parse { id: 9, .. }), "{err}");
        let err = catalog.register_file(9, "/nonexistent/x.avsc").unwrap_err();
        assert!(matches!(err, CatalogError::Read { .. }), "{err}");
    }
}
