//! Config → the settings of each stage.

use std::sync::Arc;

use crate::codec::registry::SchemaRegistry;
use crate::codec::{Codec, Limits, SchemaCatalog, SchemaIds};
use crate::config::{Config, RedisConfig};
use crate::event::ThreatLevel;
use crate::plan::{BreachRule, PlanSettings};
use crate::retry::Backoff;
use crate::slot::keys::KeyBuilder;
use crate::store::{RetryPolicy, StoreSettings};

use super::RunError;
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

/// Attempts at registering the enrichment schema at start while the registry's answers are
/// retryable (see [`registry_codec`]).
pub const START_REGISTER_ATTEMPTS: u32 = 5;

/// With a Schema Registry: registers (or finds) the enrichment schema (the catalog's
/// `schemas.enrichment_id` entry) under its subject (`schemas.registry.subject_strategy`:
/// `<enrichment topic>-value` by default) and returns the codec that writes enrichment records
/// with the registry's id and takes every writer schema a message names from the registry.
/// A refusal (an incompatible schema: 409) is [`RunError::Registry`] with the registry's
/// message, fatal; a registry still unreachable (or answering 5xx) after
/// [`START_REGISTER_ATTEMPTS`] attempts with backoff is a retryable one.
pub async fn registry_codec(config: &Config, registry: &SchemaRegistry) -> Result<Codec, RunError> {
    let catalog = SchemaCatalog::from_files(config.schema_catalog())
        .map_err(|e| RunError::Schemas(e.to_string()))?;
    let id = config.schemas.enrichment_id;
    let text = catalog
        .text(id)
        .ok_or_else(|| RunError::Schemas(format!("no enrichment schema under id {id}")))?;
    let subject = config
        .schemas
        .registry
        .subject_strategy
        .subject(&config.kafka.enrichment_topic, &record_full_name(text));
    let registered = register_at_start(config, registry, &subject, text).await?;
    tracing::info!(%subject, id = registered, "enrichment schema registered");
    Codec::for_registry(registered, text, config.limits.max_message_bytes as usize)
        .map_err(|e| RunError::Schemas(e.to_string()))
}

/// Registers (or finds) `text` under `subject`, tried again a few times while the registry's
/// answers are retryable: replicas starting together race to register the same schema
/// (Apicurio 2.x answers one of them 500), or the registry is restarting.
async fn register_at_start(
    config: &Config,
    registry: &SchemaRegistry,
    subject: &str,
    text: &str,
) -> Result<u32, RunError> {
    let registry_config = &config.schemas.registry;
    let mut delays = Backoff::new(
        registry_config.retry_backoff,
        registry_config.retry_backoff_max,
    );
    let mut attempt = 1;
    let registered = loop {
        match registry.register(subject, text).await {
            Ok(id) => break id,
            Err(error) if error.is_retryable() && attempt < START_REGISTER_ATTEMPTS => {
                let delay = delays.next_wait();
                tracing::warn!(%error, attempt, ?delay, subject, "registering a schema");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(error) => return Err(RunError::Registry(error)),
        }
    };
    Ok(registered)
}

/// The codec the ops commands that *produce* source records write with (`generate`,
/// `blacklist add`): the catalog's ids without a Schema Registry; with one, the catalog's
/// transaction and verdict schemas registered (or found) under the subjects of
/// `transactions_topic` and `verdict_topic`, written under the registry's ids — the ids the
/// worker resolves through the registry.
pub async fn producer_codec(
    config: &Config,
    transactions_topic: &str,
    verdict_topic: &str,
) -> Result<Codec, RunError> {
    let decoder = decoder_from_config(config).map_err(RunError::Schemas)?;
    let Some(registry) = decoder.registry else {
        return Ok(decoder.codec);
    };
    let schemas = &config.schemas;
    let local = SchemaCatalog::from_files(config.schema_catalog())
        .map_err(|e| RunError::Schemas(e.to_string()))?;
    let text = |id: u32, what: &str| {
        local
            .text(id)
            .map(str::to_owned)
            .ok_or_else(|| RunError::Schemas(format!("no {what} schema under id {id}")))
    };
    let (transaction, verdict, enrichment) = (
        text(schemas.transaction_id, "transaction")?,
        text(schemas.verdict_id, "verdict")?,
        text(schemas.enrichment_id, "enrichment")?,
    );
    let strategy = &schemas.registry.subject_strategy;
    let mut ids = SchemaIds::default();
    let mut catalog = SchemaCatalog::empty();
    for (topic, text, id) in [
        (transactions_topic, &transaction, &mut ids.transaction),
        (verdict_topic, &verdict, &mut ids.verdict),
        (
            config.kafka.enrichment_topic.as_str(),
            &enrichment,
            &mut ids.enrichment,
        ),
    ] {
        let subject = strategy.subject(topic, &record_full_name(text));
        *id = register_at_start(config, &registry, &subject, text).await?;
        catalog
            .register_str(*id, text, "schema registry")
            .map_err(|e| RunError::Schemas(e.to_string()))?;
    }
    Codec::new(&catalog, ids, config.limits.max_message_bytes as usize)
        .map_err(|e| RunError::Schemas(e.to_string()))
}

/// `namespace.name` of a record schema's JSON text (just `name` without a namespace, or if the
/// name already has dots).
fn record_full_name(text: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let name = json["name"].as_str().unwrap_or_default();
    match json["namespace"].as_str() {
        Some(namespace) if !namespace.is_empty() && !name.contains('.') => {
            format!("{namespace}.{name}")
        }
        _ => name.to_owned(),
    }
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

    #[test]
    fn record_full_names() {
        let enrichment = crate::codec::ENRICHMENT_AVSC;
        assert_eq!(record_full_name(enrichment), "io.fds.events.Enrichment");
        assert_eq!(record_full_name(r#"{"type":"record","name":"a.B"}"#), "a.B");
    }
}
