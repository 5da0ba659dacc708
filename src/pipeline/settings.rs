//! Config → the settings of each stage.

use std::sync::Arc;

use crate::codec::registry::SchemaRegistry;
use crate::codec::{Codec, Limits, SchemaCatalog, SchemaIds};
use crate::config::{Config, RedisConfig};
use crate::event::ThreatLevel;
use crate::plan::{BreachRule, PlanSettings, Window};
use crate::slot::keys::KeyBuilder;
use crate::store::{RetryPolicy, StoreSettings};

use super::decode::Decoder;

/// Planner settings from the `velocity` and `blacklist` sections, in key namespace
/// `namespace` (empty = live).
pub fn plan_settings(config: &Config, namespace: &str) -> PlanSettings {
    let velocity = &config.velocity;
    let breach = &velocity.breach_blacklist;
    PlanSettings {
        windows: velocity
            .windows
            .iter()
            .map(|w| Window {
                seconds: w.seconds(),
                threshold: w.threshold,
            })
            .collect(),
        dimensions: velocity.dimensions.clone(),
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
    }
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

/// The decoder: schema catalog from config (every schema parsed once, here), limits, topics,
/// and the Schema Registry client when `[schemas.registry]` is set (contacts nothing yet).
pub fn decoder_from_config(config: &Config) -> Result<Decoder, String> {
    let registry = if config.schemas.registry.enabled() {
        let registry = SchemaRegistry::new(&config.schemas.registry).map_err(|e| e.to_string())?;
        Some(Arc::new(registry))
    } else {
        None
    };
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
        registry,
        misses: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_registry_gives_the_decoder_a_client() {
        let mut config = Config::default();
        assert!(decoder_from_config(&config).unwrap().registry.is_none());
        config.schemas.registry.urls = vec!["http://registry:8080/apis/ccompat/v7".into()];
        let decoder = decoder_from_config(&config).expect("a client, nothing contacted");
        let registry = decoder.registry.expect("registry client");
        assert_eq!(registry.urls(), ["http://registry:8080/apis/ccompat/v7"]);
    }
}
