//! Unit tests of the codec internals; the behavioural suite is `tests/codec.rs`.

use super::*;
use crate::event::{
    BlacklistHit, EntityKind, FeatureValue, Subject, ThreatLevel, VelocityCount, VerdictAction,
};

fn tx() -> Transaction {
    Transaction {
        event_id: "evt-1".into(),
        user_id: "user-42".into(),
        amount_minor: 990,
        currency: "USD".into(),
        card_bin: Some("457173".into()),
        ip: None,
        email: Some("a@example.com".into()),
        device_id: None,
        merchant_id: Some("m-7".into()),
        event_time_ms: 1_700_000_000_123,
    }
}

fn verdict() -> FraudVerdict {
    FraudVerdict {
        verdict_id: "v-1".into(),
        subject: Subject {
            kind: EntityKind::CardBin,
            value: "457173".into(),
        },
        action: VerdictAction::Remove,
        threat_level: ThreatLevel::StolenCard,
        reason: "false positive".into(),
        source: "analyst".into(),
        event_time_ms: 1_700_000_000_000,
    }
}

fn enrichment() -> Enrichment {
    Enrichment {
        event_id: "evt-1".into(),
        user_id: "user-42".into(),
        velocity: vec![VelocityCount {
            dimension: EntityKind::Device,
            window_seconds: 60,
            count: 6,
            threshold: Some(5),
            exceeded: true,
        }],
        velocity_exceeded: true,
        blacklist_hits: vec![BlacklistHit {
            kind: EntityKind::Email,
            value: "a@example.com".into(),
            threat_level: ThreatLevel::Permanent,
            reason: "r".into(),
            source: "s".into(),
            ttl_remaining_s: None,
        }],
        source_topic: "transactions".into(),
        source_partition: 3,
        source_offset: 77,
        event_time_ms: 1_700_000_000_123,
        processed_at_ms: 1_700_000_000_500,
        features: vec![
            FeatureValue {
                name: "device_tx_1m".into(),
                value: 6,
                currency: None,
                threshold: Some(5),
                exceeded: true,
            },
            FeatureValue {
                name: "user_spend_24h".into(),
                value: 120_000,
                currency: Some("KRW".into()),
                threshold: None,
                exceeded: false,
            },
        ],
        rule_version: Some("r-0123456789abcdef".into()),
    }
}

#[test]
fn added_writer_schemas_decode_like_catalog_ones() {
    let codec = Codec::builtin();
    let tx = tx();
    // A writer with one more optional field, under an id the catalog does not have.
    let mut json: serde_json::Value = serde_json::from_str(TRANSACTION_AVSC).unwrap();
    json["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!(
            {"name": "channel", "type": ["null", "string"], "default": null, "doc": "v2"}
        ));
    let v2 = json.to_string();
    assert!(!codec.knows_schema(70));
    let mut other = SchemaCatalog::builtin();
    other.register_str(70, &v2, "test").unwrap();
    let producer = Codec::new(&other, SchemaIds::default(), DEFAULT_MAX_MESSAGE_BYTES).unwrap();
    let bytes = producer.encode_transaction_with(70, &tx).unwrap();
    assert_eq!(
        codec.decode_transaction(&bytes),
        Err(DecodeError::UnknownSchema { id: 70 })
    );
    codec.add_writer_schema(70, &v2, "registry").unwrap();
    assert!(codec.knows_schema(70));
    assert_eq!(codec.decode_transaction(&bytes).unwrap(), tx);
    // A catalog id is not replaced; a bad schema is a parse error naming the id.
    codec
        .add_writer_schema(1, FRAUD_VERDICT_AVSC, "registry")
        .unwrap();
    assert_eq!(
        codec
            .decode_transaction(&codec.encode_transaction(&tx).unwrap())
            .unwrap(),
        tx
    );
    let err = codec
        .add_writer_schema(71, "{not json", "registry")
        .unwrap_err();
    assert!(matches!(err, CatalogError::Parse { id: 71, .. }), "{err}");
}

#[test]
fn builtin_writers_take_the_fast_path() {
    let codec = Codec::builtin();
    for (id, kind) in [
        (1, RecordKind::Transaction),
        (2, RecordKind::Verdict),
        (4, RecordKind::Enrichment),
    ] {
        let w = &codec.writers[&id];
        assert_eq!(w.kind, Some(kind));
        assert!(w.same_as_reader, "{kind:?}");
    }
    let v1 = &codec.writers[&3];
    assert_eq!(v1.kind, Some(RecordKind::Enrichment));
    assert!(!v1.same_as_reader, "version 1 goes through apache-avro");
}

#[test]
fn round_trips() {
    let codec = Codec::builtin();
    let bytes = codec.encode_transaction(&tx()).unwrap();
    assert_eq!(&bytes[..5], &[0, 0, 0, 0, 1]);
    assert_eq!(codec.decode_transaction(&bytes).unwrap(), tx());
    let bytes = codec.encode_verdict(&verdict()).unwrap();
    assert_eq!(&bytes[..5], &[0, 0, 0, 0, 2]);
    assert_eq!(codec.decode_verdict(&bytes).unwrap(), verdict());
    let bytes = codec.encode_enrichment(&enrichment()).unwrap();
    assert_eq!(&bytes[..5], &[0, 0, 0, 0, 4]);
    assert_eq!(codec.decode_enrichment(&bytes).unwrap(), enrichment());
}

#[test]
fn every_truncation_is_malformed() {
    let codec = Codec::builtin();
    let bytes = codec.encode_enrichment(&enrichment()).unwrap();
    for cut in wire::HEADER_LEN..bytes.len() {
        let err = codec.decode_enrichment(&bytes[..cut]).unwrap_err();
        assert_eq!(err.kind(), "malformed_avro", "cut at {cut}: {err}");
    }
    let bytes = codec.encode_transaction(&tx()).unwrap();
    for cut in wire::HEADER_LEN..bytes.len() {
        let err = codec.decode_transaction(&bytes[..cut]).unwrap_err();
        assert_eq!(err.kind(), "malformed_avro", "cut at {cut}: {err}");
    }
}

#[test]
fn trailing_bytes_are_malformed() {
    let codec = Codec::builtin();
    let mut bytes = codec.encode_verdict(&verdict()).unwrap();
    bytes.push(0);
    let err = codec.decode_verdict(&bytes).unwrap_err();
    assert!(
        matches!(&err, DecodeError::MalformedAvro { schema_id: 2, message } if message.contains("trailing")),
        "{err:?}"
    );
}

#[test]
fn wrong_record_type_is_a_resolution_error() {
    let codec = Codec::builtin();
    let bytes = codec.encode_verdict(&verdict()).unwrap();
    let err = codec.decode_transaction(&bytes).unwrap_err();
    assert_eq!(err.kind(), "resolution", "{err}");
    assert!(
        err.to_string().contains("io.fds.events.FraudVerdict"),
        "{err}"
    );
    let err = codec.encode_transaction_with(2, &tx()).unwrap_err();
    assert_eq!(err.kind(), "encode_schema");
    let err = codec.encode_transaction_with(99, &tx()).unwrap_err();
    assert_eq!(err, EncodeError::UnknownSchema { id: 99 });
}

#[test]
fn new_checks_configured_ids() {
    let catalog = SchemaCatalog::builtin();
    let ids = SchemaIds {
        transaction: 2,
        ..SchemaIds::default()
    };
    let err = Codec::new(&catalog, ids, 1024).unwrap_err();
    assert!(
        matches!(err, CatalogError::WrongRecord { id: 2, .. }),
        "{err}"
    );
    let ids = SchemaIds {
        enrichment: 30,
        ..SchemaIds::default()
    };
    let err = Codec::new(&catalog, ids, 1024).unwrap_err();
    assert!(
        matches!(err, CatalogError::MissingId { id: 30, .. }),
        "{err}"
    );
}

#[test]
fn kinds_are_listed() {
    let errors = [
        DecodeError::Empty,
        DecodeError::TooShort { len: 1 },
        DecodeError::WrongMagic { found: 1 },
        DecodeError::UnknownSchema { id: 1 },
        DecodeError::Oversize { len: 2, max: 1 },
        DecodeError::MalformedAvro {
            schema_id: 1,
            message: String::new(),
        },
        DecodeError::Resolution {
            schema_id: 1,
            record: "Transaction",
            message: String::new(),
        },
        DecodeError::invalid("f", "r"),
    ];
    let kinds: Vec<_> = errors.iter().map(DecodeError::kind).collect();
    assert_eq!(kinds, DecodeError::KINDS);
}

#[test]
fn codec_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Codec>();
    let codec = std::sync::Arc::new(Codec::builtin());
    let bytes = codec.encode_transaction(&tx()).unwrap();
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (codec, bytes) = (codec.clone(), bytes.clone());
            std::thread::spawn(move || codec.decode_transaction(&bytes).unwrap())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), tx());
    }
}

#[test]
fn a_registry_fed_codec_knows_only_the_registrys_ids() {
    let codec = Codec::for_registry(42, ENRICHMENT_AVSC, DEFAULT_MAX_MESSAGE_BYTES).unwrap();
    // The catalog's ids mean nothing here: every id a message carries is the registry's.
    for id in [1, 2, 3] {
        assert!(!codec.knows_schema(id), "{id}");
    }
    let bytes = codec.encode_enrichment(&enrichment()).unwrap();
    assert_eq!(wire::split_frame(&bytes).unwrap().0, 42);
    assert_eq!(codec.decode_enrichment(&bytes).unwrap(), enrichment());
    assert!(codec.encode_transaction(&tx()).is_err());
    codec
        .add_writer_schema(1, TRANSACTION_AVSC, "test")
        .unwrap();
    let framed = Codec::builtin().encode_transaction(&tx()).unwrap();
    assert_eq!(codec.decode_transaction(&framed).unwrap(), tx());
    assert!(matches!(
        Codec::for_registry(7, TRANSACTION_AVSC, DEFAULT_MAX_MESSAGE_BYTES),
        Err(CatalogError::WrongRecord { id: 7, .. })
    ));
}
