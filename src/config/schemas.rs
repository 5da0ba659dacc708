//! `[schemas]`: the local Avro schema catalog (Confluent schema id → `.avsc` file), and the
//! optional Schema Registry (`[schemas.registry]`, see [`RegistryConfig`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::check::Check;
use super::registry::RegistryConfig;

/// Which schema id each topic is written with, and where each schema's `.avsc` file is.
///
/// **Relative paths** in `catalog` are resolved against the *base directory*:
/// 1. `base_dir`, if set (itself relative to the working directory);
/// 2. else, when a config file was loaded, the parent of the directory holding it — the
///    repository layout `config/fds-worker.toml` + `schemas/*.avsc`, and the container layout
///    `/etc/fds-worker/config/…` + `/etc/fds-worker/schemas/…`;
/// 3. else the working directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchemasConfig {
    /// Schema id of `Transaction` (read). Default: `1`.
    pub transaction_id: u32,
    /// Schema id of `FraudVerdict` (read). Default: `2`.
    pub verdict_id: u32,
    /// Schema id the worker writes `Enrichment` records with. Default: `4` (version 2, with
    /// `features` and `rule_version`; `3` is version 1).
    pub enrichment_id: u32,
    /// Directory relative catalog paths are resolved against (see the rule above).
    /// Default: unset.
    pub base_dir: Option<PathBuf>,
    /// Every schema the worker can decode, by id; a message whose id is not here is poison.
    /// Older writer schemas of a topic can be listed under their own ids (Avro resolution
    /// reads them with the current reader schema). Default: `1` → `schemas/transaction.avsc`,
    /// `2` → `schemas/fraud_verdict.avsc`, `3` → `schemas/enrichment_v1.avsc`,
    /// `4` → `schemas/enrichment.avsc`.
    pub catalog: Vec<SchemaEntry>,
    /// A Confluent-compatible Schema Registry: with one, the catalog's files are the reader
    /// schemas and the registry supplies writer schemas by id. Default: none (`urls = []`).
    pub registry: RegistryConfig,
}

/// One catalog entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaEntry {
    /// Confluent schema id (the 4 bytes after the magic byte).
    pub id: u32,
    /// The `.avsc` file (relative paths: see [`SchemasConfig`]).
    pub path: PathBuf,
}

impl Default for SchemasConfig {
    fn default() -> Self {
        SchemasConfig {
            transaction_id: 1,
            verdict_id: 2,
            enrichment_id: 4,
            base_dir: None,
            catalog: default_catalog(),
            registry: RegistryConfig::default(),
        }
    }
}

fn default_catalog() -> Vec<SchemaEntry> {
    [
        (1, "schemas/transaction.avsc"),
        (2, "schemas/fraud_verdict.avsc"),
        (3, "schemas/enrichment_v1.avsc"),
        (4, "schemas/enrichment.avsc"),
    ]
    .into_iter()
    .map(|(id, path)| SchemaEntry {
        id,
        path: path.into(),
    })
    .collect()
}

impl SchemasConfig {
    /// The base directory for relative catalog paths, given the config file that was loaded
    /// (see the rule on [`SchemasConfig`]). No I/O; `"."` stands for the working directory.
    pub fn base_dir(&self, config_file: Option<&Path>) -> PathBuf {
        if let Some(dir) = &self.base_dir {
            return dir.clone();
        }
        let config_dir = config_file.and_then(Path::parent);
        match config_dir.map(|d| d.parent().unwrap_or(d)) {
            Some(base) if !base.as_os_str().is_empty() => base.to_owned(),
            _ => PathBuf::from("."),
        }
    }

    /// The catalog with every path resolved (see [`SchemasConfig::base_dir`]).
    pub fn resolved_catalog(&self, config_file: Option<&Path>) -> Vec<(u32, PathBuf)> {
        let base = self.base_dir(config_file);
        self.catalog
            .iter()
            .map(|e| (e.id, base.join(&e.path)))
            .collect()
    }

    /// Reads `schemas.registry.password_file` into its password.
    pub(crate) fn resolve_secret_files(&mut self) -> Result<(), ConfigError> {
        self.registry.resolve_secret_files()
    }

    pub(crate) fn validate(&self, check: &mut Check) {
        self.registry.validate(check);
        check.ensure(
            !self.catalog.is_empty(),
            "schemas.catalog",
            "must list at least one schema",
        );
        let mut seen = BTreeSet::new();
        for (i, entry) in self.catalog.iter().enumerate() {
            check.ensure(
                seen.insert(entry.id),
                format!("schemas.catalog[{i}].id"),
                format!("schema id {} is listed twice", entry.id),
            );
            check.ensure(
                !entry.path.as_os_str().is_empty(),
                format!("schemas.catalog[{i}].path"),
                "must not be empty",
            );
        }
        for (key, id) in [
            ("schemas.transaction_id", self.transaction_id),
            ("schemas.verdict_id", self.verdict_id),
            ("schemas.enrichment_id", self.enrichment_id),
        ] {
            check.ensure(
                seen.contains(&id),
                key,
                format!("schema id {id} is not in `schemas.catalog`"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_against_the_config_directorys_parent() {
        let s = SchemasConfig::default();
        let catalog = s.resolved_catalog(Some(Path::new("/srv/fds/config/fds-worker.toml")));
        assert_eq!(
            catalog[0],
            (1, PathBuf::from("/srv/fds/schemas/transaction.avsc"))
        );
        assert_eq!(
            s.base_dir(Some(Path::new("config/fds-worker.toml"))),
            Path::new(".")
        );
        assert_eq!(s.base_dir(None), Path::new("."));
        let with_dir = SchemasConfig {
            base_dir: Some("/opt/avro".into()),
            ..SchemasConfig::default()
        };
        assert_eq!(
            with_dir.base_dir(Some(Path::new("/x/y/z.toml"))),
            Path::new("/opt/avro")
        );
    }
}
