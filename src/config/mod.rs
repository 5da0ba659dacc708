//! The worker's configuration: built-in defaults ← a TOML file ← `FDS_*` environment variables.
//!
//! Every field's `///` doc states its default; `config/fds-worker.toml` lists every setting at
//! its default (a test keeps the two equal). [`Config::load`] reads and merges the sources, then
//! [`Config::validate`] (no I/O) checks values and their relations; every error names the key as
//! a dotted path (`velocity.windows[0].threshold`) and the reason.
//!
//! # Environment variables
//! `FDS_` + the key path in upper case with `__` between sections:
//! `FDS_KAFKA__BROKERS=b1:9092,b2:9092`, `FDS_REDIS__PASSWORD=…`,
//! `FDS_VELOCITY__GRACE=2m`. Lists take a comma-separated string (`FDS_REDIS__NODES=redis://a:7000,redis://b:7001`)
//! or figment's list syntax (`[redis://a:7000, redis://b:7001]`). `FDS_CONFIG` is the config
//! file path (used by the CLI), not a key; any other unknown `FDS_*` variable is an error, so a
//! misspelt override cannot be silently ignored.
//!
//! # Secrets
//! Passwords are [`Secret`]s: they print as `***` in `Debug`, `Display` and
//! [`Config::redacted_toml`]. Give them by env var or by a `*_file` path (read at load time).
//!
//! # Layout
//! | file | section |
//! |---|---|
//! | `kafka.rs`, `kafka_group.rs`, `kafka_delivery.rs`, `kafka_security.rs` | `[kafka]` (its group protocol, its delivery: exactly once or at least once), `[kafka.transactions]`, `[kafka.security]` |
//! | `schemas.rs`, `registry.rs` | `[schemas]`, the Avro catalog; `[schemas.registry]`, the Schema Registry |
//! | `redis.rs` | `[redis]`, `[redis.tls]`, `[redis.retry]` |
//! | `features.rs` | `[[features]]` |
//! | `velocity.rs` | `[velocity]` |
//! | `rules.rs` | the rules file (`velocity.rules_file`), reloaded on SIGHUP |
//! | `blacklist.rs` | `[blacklist]` |
//! | `pipeline.rs` | `[pipeline]`, `[limits]`, `[replay]` |
//! | `telemetry.rs` | `[metrics]`, `[log]` |
//! | `secret.rs`, `error.rs`, `de.rs`, `check.rs` | secrets, errors, serde and validation helpers |

mod blacklist;
mod check;
mod de;
mod error;
mod features;
mod kafka;
mod kafka_delivery;
mod kafka_group;
mod kafka_security;
mod pipeline;
mod redis;
mod registry;
mod rules;
mod schemas;
mod secret;
mod telemetry;
mod velocity;

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

pub use blacklist::{BlacklistConfig, BlacklistTtl};
pub use error::{ConfigError, Problem};
pub use features::{Aggregate, FeatureConfig, Field, MAX_TILES, default_features};
pub use kafka::{KafkaConfig, MANAGED_KEYS};
pub use kafka_delivery::{BROKER_MAX_TRANSACTION_TIMEOUT, Delivery, TransactionsConfig};
pub use kafka_group::{CLASSIC_ONLY_KEYS, GroupProtocol};
pub use kafka_security::{KafkaSecurity, SaslMechanism, SecurityProtocol};
pub use pipeline::{LimitsConfig, PipelineConfig, ReplayConfig};
pub use redis::{
    DEFAULT_LIBRARY, NodeAddr, RedisConfig, RedisRetry, RedisTls, parse_node, redact_url,
};
pub use registry::{
    RegistryConfig, RegistryScheme, RegistryTls, SubjectStrategy, parse_registry_url,
};
pub use rules::{RulesFile, computed_version};
pub use schemas::{SchemaEntry, SchemasConfig};
pub use secret::{REDACTED, Secret};
pub use telemetry::{LogConfig, LogFormat, MetricsConfig};
pub use velocity::{BreachBlacklist, VelocityConfig};

use check::Check;

/// Prefix of environment variables that override config keys.
pub const ENV_PREFIX: &str = "FDS_";

/// The config file used when none is given and it exists (relative to the working directory).
pub const DEFAULT_PATH: &str = "config/fds-worker.toml";

/// The whole configuration. Missing sections and keys take their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Kafka brokers, topics, consumer group, security.
    pub kafka: KafkaConfig,
    /// Avro schema ids and the local catalog.
    pub schemas: SchemasConfig,
    /// Redis Cluster nodes, auth, TLS, timeouts, retries.
    pub redis: RedisConfig,
    /// Batching and concurrency.
    pub pipeline: PipelineConfig,
    /// Sliding-window features (`[[features]]`). Default: [`default_features`].
    #[serde(default = "default_features")]
    pub features: Vec<FeatureConfig>,
    /// Late-event grace and the breach rule of the features.
    pub velocity: VelocityConfig,
    /// Blacklist lookups and TTL tiers.
    pub blacklist: BlacklistConfig,
    /// Input bounds.
    pub limits: LimitsConfig,
    /// The metrics / health endpoint.
    pub metrics: MetricsConfig,
    /// Replay pacing.
    pub replay: ReplayConfig,
    /// Logging.
    pub log: LogConfig,
    /// The file this config was loaded from (absolute), if any. Not a key.
    #[serde(skip)]
    pub source_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            kafka: KafkaConfig::default(),
            schemas: SchemasConfig::default(),
            redis: RedisConfig::default(),
            pipeline: PipelineConfig::default(),
            features: default_features(),
            velocity: VelocityConfig::default(),
            blacklist: BlacklistConfig::default(),
            limits: LimitsConfig::default(),
            metrics: MetricsConfig::default(),
            replay: ReplayConfig::default(),
            log: LogConfig::default(),
            source_file: None,
        }
    }
}

impl Config {
    /// The merged sources, not yet extracted: defaults (from serde) ← `path` ← `FDS_*` env.
    /// `path` must exist; [`Config::load`] checks that.
    pub fn figment(path: Option<&Path>) -> Figment {
        let mut figment = Figment::new();
        if let Some(path) = path {
            // `file_exact`: `Toml::file` would search parent directories for the name.
            figment = figment.merge(Toml::file_exact(path));
        }
        figment.merge(Env::prefixed(ENV_PREFIX).split("__").ignore(&["config"]))
    }

    /// Loads, resolves `*_file` secrets and validates: defaults ← the TOML file at `path` (if
    /// given; it must exist) ← `FDS_*` environment variables.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        if let Some(path) = path
            && !path.is_file()
        {
            return Err(ConfigError::NotFound {
                path: path.to_owned(),
            });
        }
        let mut config: Config = Self::figment(path).extract()?;
        config.source_file = path.map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_owned()));
        config.validate()?;
        config.resolve_secret_files()?;
        config.with_rules_file()
    }

    /// This config under the rules of `velocity.rules_file`, read now; unchanged without one.
    /// The worker calls it at start (an error stops it) and on SIGHUP (an error keeps the
    /// running rules).
    pub fn with_rules_file(&self) -> Result<Config, ConfigError> {
        match &self.velocity.rules_file {
            None => Ok(self.clone()),
            Some(path) => RulesFile::load(path)
                .and_then(|rules| rules.apply(self))
                .map_err(|e| e.in_file(path)),
        }
    }

    /// Parses and validates TOML text alone (no file, no environment, no `*_file` reads):
    /// for tests and tools.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let config: Config = Figment::from(Toml::string(text)).extract()?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value and relation between values, without I/O (files named by the config
    /// are not opened, nodes not contacted). Reports every problem found, each by key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut check = Check::default();
        self.kafka.validate(&mut check);
        self.schemas.validate(&mut check);
        self.redis.validate(&mut check);
        self.pipeline.validate(&mut check);
        features::validate(&self.features, &mut check);
        self.velocity.validate(&self.features, &mut check);
        self.blacklist.validate(&mut check);
        self.limits.validate(&mut check);
        self.replay.validate(&mut check);
        self.metrics.validate(&mut check);
        self.log.validate(&mut check);
        check.finish()
    }

    /// The configuration as TOML, secrets shown as `***` (for `check-config --print`).
    /// A password inside a `redis.nodes` URL (`redis://:pw@host:7000`) is shown as `***` too.
    pub fn redacted_toml(&self) -> Result<String, ConfigError> {
        let mut shown = self.clone();
        for node in &mut shown.redis.nodes {
            *node = redis::redact_url(node);
        }
        toml::to_string_pretty(&shown).map_err(|e| ConfigError::Render(e.to_string()))
    }

    /// The schema catalog with relative paths resolved (see [`SchemasConfig`]).
    pub fn schema_catalog(&self) -> Vec<(u32, PathBuf)> {
        self.schemas.resolved_catalog(self.source_file.as_deref())
    }

    /// Reads every `*_file` secret into its field.
    fn resolve_secret_files(&mut self) -> Result<(), ConfigError> {
        self.kafka.security.resolve_secret_files()?;
        self.schemas.resolve_secret_files()?;
        self.redis.resolve_secret_files()
    }
}

/// Fills `secret` (key `key`) from `file` if one is given; both set is an error.
fn resolve_secret(
    key: &str,
    secret: &mut Option<Secret>,
    file: Option<&Path>,
) -> Result<(), ConfigError> {
    let Some(file) = file else {
        return Ok(());
    };
    let file_key = format!("{key}_file");
    if secret.is_some() {
        return Err(ConfigError::invalid(
            file_key,
            format!("set either `{key}` or `{key}_file`, not both"),
        ));
    }
    *secret = Some(Secret::from_file(&file_key, file)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn redacted_toml_hides_passwords_in_node_urls() {
        let mut c = Config::default();
        c.redis.nodes = vec!["redis://u:hunter2@h:7000".into(), "redis://h:7001".into()];
        let text = c.redacted_toml().unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("redis://u:***@h:7000"), "{text}");
        assert!(text.contains("redis://h:7001"), "{text}");
    }

    #[test]
    fn redacted_toml_parses_back_to_the_same_config() {
        let text = Config::default().redacted_toml().unwrap();
        assert_eq!(Config::from_toml_str(&text).unwrap(), Config::default());
    }

    #[test]
    fn registry_password_is_redacted_and_its_file_exclusive() {
        let mut c = Config::default();
        c.schemas.registry.urls = vec!["http://registry:8080/apis/ccompat/v7".into()];
        c.schemas.registry.username = Some("fds".into());
        c.schemas.registry.password = Some(Secret::new("hunter2"));
        c.validate().unwrap();
        let text = c.redacted_toml().unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(format!("{c:?}").contains("***"));
        c.schemas.registry.password_file = Some("/nonexistent".into());
        let err = c.resolve_secret_files().unwrap_err();
        assert_eq!(err.keys(), vec!["schemas.registry.password_file"]);
    }

    #[test]
    fn password_and_password_file_are_exclusive() {
        let mut c = Config::default();
        c.redis.password = Some(Secret::new("a"));
        c.redis.password_file = Some("/nonexistent".into());
        let err = c.resolve_secret_files().unwrap_err();
        assert_eq!(err.keys(), vec!["redis.password_file"]);
    }
}
