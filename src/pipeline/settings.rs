//! Config → the settings of each stage.

use crate::codec::{Codec, Limits, SchemaCatalog, SchemaIds};
use crate::config::{Config, RedisConfig};
use crate::event::ThreatLevel;
use crate::plan::{BreachRule, PlanSettings};
use crate::slot::keys::KeyBuilder;
use crate::store::{RetryPolicy, StoreSettings};

use super::decode::Decoder;

/// Planner settings from the `features`, `velocity` and `blacklist` sections, in key namespace
/// `namespace` (empty = live).
pub fn plan_settings(config: &Config, namespace: &str) -> PlanSettings {
    let velocity = &config.velocity;
    let breach = &velocity.breach_blacklist;
    PlanSettings {
        features: config.features.clone(),
        grace_ms: velocity.grace.as_millis() as i64,
        breach: breach.enabled.then(|| BreachRule {
            dimensions: breach.dimensions.clone(),
            level: breach.level,
        }),
        lookup_kinds: config.blacklist.lookup_kinds.clone(),
        ttl_ms: ThreatLevel::ALL.map(|level| {
            config
                .blacklist
                .ttl
                .for_level(level)
                .map(|ttl| ttl.as_millis() as i64)
        }),
        keys: KeyBuilder::namespaced(namespace),
        rule_version: Some(rule_version(config).into()),
    }
}

/// The version of the rules that decide breaches: the rules file's (`velocity.rules_file`)
/// declared or computed version if one was applied, else
/// [`computed_version`](crate::config::computed_version) of the config's own thresholds.
/// Windows and tiles are not rules (changing them changes the features' state, and needs a
/// restart).
pub fn rule_version(config: &Config) -> String {
    config
        .velocity
        .rules_version
        .clone()
        .unwrap_or_else(|| crate::config::computed_version(config))
}

/// Store settings from the `redis` section (secrets exposed only here, to the client).
pub fn store_settings(redis: &RedisConfig) -> StoreSettings {
    StoreSettings {
        nodes: redis.nodes.clone(),
        username: redis.username.clone(),
        password: redis.password.as_ref().map(|p| p.expose().to_owned()),
        tls: crate::store::TlsFiles {
            ca_file: redis.tls.ca_file.clone(),
            cert_file: redis.tls.cert_file.clone(),
            key_file: redis.tls.key_file.clone(),
        },
        connect_timeout: redis.connect_timeout,
        response_timeout: redis.response_timeout,
        max_inflight_units: redis.max_inflight_units.max(1) as usize,
        retry: RetryPolicy {
            budget: redis.retry.budget,
            max_attempts: redis.retry.max_attempts,
            initial_backoff: redis.retry.initial_backoff,
            max_backoff: redis.retry.max_backoff,
            max_retries_per_second: redis.retry.max_retries_per_second,
        },
        wait_replicas: redis.wait_replicas,
        wait_timeout: redis.wait_timeout,
        max_units_per_second: redis.max_units_per_second,
        library: crate::store::wire::Library::named(&redis.function_library),
    }
}

/// The decoder: schema catalog from config (every schema parsed once, here), limits, topics.
pub fn decoder_from_config(config: &Config) -> Result<Decoder, String> {
    let catalog = SchemaCatalog::from_files(config.schema_catalog()).map_err(|e| e.to_string())?;
    let ids = SchemaIds {
        transaction: config.schemas.transaction_id,
        verdict: config.schemas.verdict_id,
        enrichment: config.schemas.enrichment_id,
    };
    let codec = Codec::new(&catalog, ids, config.limits.max_message_bytes as usize)
        .map_err(|e| e.to_string())?;
    Ok(Decoder {
        codec,
        limits: Limits {
            max_field_len: config.limits.max_field_len as usize,
        },
        transactions_topic: config.kafka.transactions_topic.clone(),
        verdict_topics: config.kafka.verdict_topics.clone(),
        max_future_skew_ms: config.limits.max_future_skew.as_millis() as i64,
    })
}
