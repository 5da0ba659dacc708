//! The Schema Registry client against a real Apicurio Registry (the test kit's
//! [`Apicurio`], its Confluent-compatible API): writer schemas by id, cached; registration and
//! a compatibility rejection with the registry's message; and the classification the decode
//! stage relies on — an unknown id is `NotFound` (poison), a frozen or dead registry is
//! `Unavailable` (waited out) while cached ids are still served.
//!
//! The registry is built once from Maven Central by `scripts/apicurio-registry.sh` (the test
//! kit runs it), or `LOCALSTACK_APICURIO_JAR` names a runner jar built elsewhere.

use std::sync::OnceLock;
use std::time::Duration;

use fds_testkit::localstack::Apicurio;
use fds_worker::codec::registry::{RegistryErrorKind, SchemaRegistry};
use fds_worker::codec::{
    Codec, DEFAULT_MAX_MESSAGE_BYTES, ENRICHMENT_AVSC, FRAUD_VERDICT_AVSC, SchemaCatalog,
    SchemaIds, TRANSACTION_AVSC,
};
use fds_worker::config::{RegistryConfig, SubjectStrategy};
use fds_worker::event::Transaction;

/// Transaction v2: v1 plus an optional field (a compatible evolution).
fn transaction_v2() -> String {
    let mut json: serde_json::Value = serde_json::from_str(TRANSACTION_AVSC).unwrap();
    json["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "name": "channel",
            "type": ["null", "string"],
            "default": null,
            "doc": "Where the payment was made (added in v2)."
        }));
    json.to_string()
}

/// Transaction with a new required field: incompatible under BACKWARD.
fn transaction_incompatible() -> String {
    let mut json: serde_json::Value = serde_json::from_str(TRANSACTION_AVSC).unwrap();
    json["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "name": "risk_score", "type": "int", "doc": "required, no default"
        }));
    json.to_string()
}

fn registry() -> &'static Apicurio {
    static REGISTRY: OnceLock<Apicurio> = OnceLock::new();
    REGISTRY.get_or_init(|| Apicurio::start().expect("start the local Apicurio Registry"))
}

fn client(registry: &Apicurio) -> SchemaRegistry {
    let config = RegistryConfig {
        urls: vec![registry.ccompat_url()],
        request_timeout: Duration::from_secs(2),
        cache_capacity: 16,
        ..RegistryConfig::default()
    };
    SchemaRegistry::new(&config).expect("client")
}

fn sample_transaction() -> Transaction {
    Transaction {
        event_id: "e-1".into(),
        user_id: "u-1".into(),
        amount_minor: 12_345,
        currency: "KRW".into(),
        card_bin: Some("123456".into()),
        ip: Some("10.0.0.1".into()),
        email: None,
        device_id: Some("d-1".into()),
        merchant_id: None,
        event_time_ms: 1_700_000_000_000,
    }
}

/// Sets the subject's compatibility rule through the Confluent API.
fn set_compatibility(registry: &Apicurio, subject: &str, level: &str) {
    let url = format!("{}/config/{subject}", registry.ccompat_url());
    let response = ureq::put(&url)
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .send(format!(r#"{{"compatibility":"{level}"}}"#))
        .unwrap_or_else(|e| panic!("PUT {url}: {e}\n{}", registry.log_tail(40)));
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_schemas_come_from_the_registry_and_evolve() {
    let registry = tokio::task::spawn_blocking(registry).await.unwrap();
    let client = client(registry);
    let subject =
        SubjectStrategy::TopicName.subject("evolve-transactions", "io.fds.events.Transaction");
    let v1 = client
        .register(&subject, TRANSACTION_AVSC)
        .await
        .expect("register v1");
    let v2 = client
        .register(&subject, &transaction_v2())
        .await
        .expect("register v2");
    assert_ne!(v1, v2, "v2 is a new version with its own id");
    assert_eq!(
        client.register(&subject, TRANSACTION_AVSC).await.unwrap(),
        v1,
        "registering a known schema finds its id"
    );

    // A client that knows nothing fetches both by id; the second ask is served from the cache.
    let fresh = self::client(registry);
    let v2_schema = fresh.schema(v2).await.expect("v2 by id");
    assert_eq!(fresh.cached_len(), 1);
    assert!(fresh.cached(v2).is_some());
    let v1_schema = fresh.schema(v1).await.expect("v1 by id");

    // The other two record types under their subjects, as the worker registers what it writes.
    let verdict = client
        .register("evolve-fraud-verdicts-value", FRAUD_VERDICT_AVSC)
        .await
        .unwrap();
    let enrichment = client
        .register("evolve-enriched-value", ENRICHMENT_AVSC)
        .await
        .unwrap();

    // The fetched texts are writer schemas the codec reads with its reader schema (Avro
    // resolution): a v2 record (with the new field) and a v1 record decode to the same event.
    // Only registry ids: the registry numbers schemas itself, so the local catalog's default
    // ids (1, 2, 3) may name other schemas there.
    let mut catalog = SchemaCatalog::empty();
    catalog
        .register_str(v1, &v1_schema.text, "registry")
        .unwrap();
    catalog
        .register_str(v2, &v2_schema.text, "registry")
        .unwrap();
    for id in [verdict, enrichment] {
        let schema = fresh.schema(id).await.unwrap();
        catalog.register_str(id, &schema.text, "registry").unwrap();
    }
    let ids = SchemaIds {
        transaction: v2,
        verdict,
        enrichment,
    };
    let codec = Codec::new(&catalog, ids, DEFAULT_MAX_MESSAGE_BYTES).unwrap();
    let tx = sample_transaction();
    let as_v2 = codec.encode_transaction_with(v2, &tx).unwrap();
    let as_v1 = codec.encode_transaction_with(v1, &tx).unwrap();
    assert_eq!(&as_v2[1..5], &v2.to_be_bytes());
    assert_eq!(codec.decode_transaction(&as_v2).unwrap(), tx);
    assert_eq!(codec.decode_transaction(&as_v1).unwrap(), tx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_schema_is_rejected_with_the_registrys_message() {
    let registry = tokio::task::spawn_blocking(registry).await.unwrap();
    let client = client(registry);
    let subject = "compat-transactions-value";
    client
        .register(subject, TRANSACTION_AVSC)
        .await
        .expect("register v1");
    tokio::task::spawn_blocking(move || set_compatibility(registry, subject, "BACKWARD"))
        .await
        .unwrap();
    let err = client
        .register(subject, &transaction_incompatible())
        .await
        .expect_err("an incompatible schema is refused");
    assert_eq!(err.kind, RegistryErrorKind::Rejected, "{err}");
    assert_eq!(err.status, Some(409), "{err}");
    assert!(!err.message.is_empty(), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_id_is_not_found() {
    let registry = tokio::task::spawn_blocking(registry).await.unwrap();
    let err = client(registry)
        .schema(987_654)
        .await
        .expect_err("no such id");
    assert_eq!(err.kind, RegistryErrorKind::NotFound, "{err}");
    assert_eq!(err.status, Some(404), "{err}");
    assert!(!err.is_retryable());
}

/// A registry of its own: this test freezes and kills it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_or_dead_registry_is_unavailable_and_cached_ids_still_resolve() {
    let registry = tokio::task::spawn_blocking(|| Apicurio::start().expect("start"))
        .await
        .unwrap();
    let client = client(&registry);
    let cached = client
        .register("outage-transactions-value", TRANSACTION_AVSC)
        .await
        .unwrap();
    let unseen = client
        .register("outage-transactions-value", &transaction_v2())
        .await
        .unwrap();
    // A client that has seen only `cached`.
    let worker = self::client(&registry);
    worker.schema(cached).await.unwrap();

    registry.pause().unwrap();
    assert!(
        worker.schema(cached).await.is_ok(),
        "a cached id needs no request"
    );
    let err = worker
        .schema(unseen)
        .await
        .expect_err("the registry is frozen");
    assert_eq!(err.kind, RegistryErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable());
    registry.resume().unwrap();
    assert_eq!(
        worker.schema(unseen).await.unwrap().id,
        unseen,
        "back after resume"
    );

    registry.kill();
    let err = self::client(&registry)
        .schema(cached)
        .await
        .expect_err("the registry is dead");
    assert_eq!(err.kind, RegistryErrorKind::Unavailable, "{err}");
    assert!(worker.schema(cached).await.is_ok());
    assert!(worker.schema(unseen).await.is_ok());

    // Restarted, it answers again (in-memory storage: empty, so an id is not found, not down).
    let registry = tokio::task::spawn_blocking(move || {
        registry.restart().expect("restart");
        registry
    })
    .await
    .unwrap();
    let err = self::client(&registry)
        .schema(unseen + 100)
        .await
        .expect_err("an empty registry");
    assert_eq!(err.kind, RegistryErrorKind::NotFound, "{err}");
}
