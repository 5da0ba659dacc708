//! The codec's behaviour: Confluent framing, round trips, schema evolution by Avro resolution,
//! typed errors for bad input, and no panics on any input.

use apache_avro::Schema;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use fds_worker::codec::{
    Codec, DecodeError, ENRICHMENT_AVSC, ENRICHMENT_V1_AVSC, FRAUD_VERDICT_AVSC, SchemaCatalog,
    SchemaIds, TRANSACTION_AVSC, wire,
};
use fds_worker::event::{
    BlacklistHit, Enrichment, EntityKind, FeatureValue, FraudVerdict, Subject, ThreatLevel,
    Transaction, VelocityCount, VerdictAction,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// fixtures

fn tx() -> Transaction {
    Transaction {
        event_id: "0b9d2c1e-6f0a-4c55-9a57-3f2d8f1e0c11".into(),
        user_id: "user-42".into(),
        amount_minor: 129_900,
        currency: "KRW".into(),
        card_bin: Some("457173".into()),
        ip: Some("203.0.113.7".into()),
        email: Some("kim@example.com".into()),
        device_id: Some("dev-a1b2".into()),
        merchant_id: Some("merchant-9".into()),
        event_time_ms: 1_718_000_000_123,
    }
}

fn bare_tx() -> Transaction {
    Transaction {
        card_bin: None,
        ip: None,
        email: None,
        device_id: None,
        merchant_id: None,
        ..tx()
    }
}

fn verdict() -> FraudVerdict {
    FraudVerdict {
        verdict_id: "v-1001".into(),
        subject: Subject {
            kind: EntityKind::Email,
            value: "fraudster@example.net".into(),
        },
        action: VerdictAction::Add,
        threat_level: ThreatLevel::SuspiciousEmail,
        reason: "disposable domain".into(),
        source: "rule-engine".into(),
        event_time_ms: 1_718_000_000_000,
    }
}

fn enrichment() -> Enrichment {
    Enrichment {
        event_id: tx().event_id,
        user_id: "user-42".into(),
        velocity: vec![
            VelocityCount {
                dimension: EntityKind::User,
                window_seconds: 60,
                count: 6,
                threshold: Some(5),
                exceeded: true,
            },
            VelocityCount {
                dimension: EntityKind::CardBin,
                window_seconds: 3600,
                count: 2,
                threshold: None,
                exceeded: false,
            },
        ],
        velocity_exceeded: true,
        blacklist_hits: vec![
            BlacklistHit {
                kind: EntityKind::Ip,
                value: "203.0.113.7".into(),
                threat_level: ThreatLevel::Temporary,
                reason: "velocity breach".into(),
                source: "fds-worker".into(),
                ttl_remaining_s: Some(3512),
            },
            BlacklistHit {
                kind: EntityKind::Device,
                value: "dev-a1b2".into(),
                threat_level: ThreatLevel::Permanent,
                reason: "known mule device".into(),
                source: "analyst".into(),
                ttl_remaining_s: None,
            },
        ],
        source_topic: "transactions".into(),
        source_partition: 7,
        source_offset: 123_456_789,
        event_time_ms: 1_718_000_000_123,
        processed_at_ms: 1_718_000_000_456,
        features: vec![
            FeatureValue {
                name: "user_tx_1m".into(),
                value: 6,
                currency: None,
                threshold: Some(5),
                exceeded: true,
            },
            FeatureValue {
                name: "user_spend_24h".into(),
                value: 250_000,
                currency: Some("KRW".into()),
                threshold: None,
                exceeded: false,
            },
        ],
        rule_version: Some("r-0123456789abcdef".into()),
    }
}

fn codec() -> Codec {
    Codec::builtin()
}

/// A built-in schema edited as JSON (to make older / newer versions of it).
fn edit_schema(avsc: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut json: serde_json::Value = serde_json::from_str(avsc).unwrap();
    edit(&mut json);
    json.to_string()
}

fn fields(json: &mut serde_json::Value) -> &mut Vec<serde_json::Value> {
    json["fields"].as_array_mut().unwrap()
}

/// Encodes `value` with `schema` and frames it under `id`, bypassing the codec (a foreign
/// producer with another schema version).
fn foreign_message(id: u32, schema: &str, value: Value) -> Vec<u8> {
    let schema = Schema::parse_str(schema).unwrap();
    let mut out = wire::frame_header(id, 64);
    GenericDatumWriter::builder(&schema)
        .build()
        .unwrap()
        .write_value_ref(&mut out, &value)
        .unwrap();
    out
}

// ---------------------------------------------------------------------------------------------
// round trips

#[test]
fn transaction_round_trip() {
    let codec = codec();
    for t in [tx(), bare_tx()] {
        let bytes = codec.encode_transaction(&t).unwrap();
        assert_eq!(bytes[0], wire::MAGIC_BYTE);
        assert_eq!(&bytes[1..5], &1u32.to_be_bytes());
        assert_eq!(codec.decode_transaction(&bytes).unwrap(), t);
    }
    // unicode and extremes survive (content rules are validation's job, not the codec's)
    let odd = Transaction {
        user_id: "사용자-🦀".into(),
        amount_minor: i64::MIN,
        event_time_ms: i64::MAX,
        email: Some(String::new()),
        ..tx()
    };
    let bytes = codec.encode_transaction(&odd).unwrap();
    assert_eq!(codec.decode_transaction(&bytes).unwrap(), odd);
}

#[test]
fn verdict_round_trip_every_symbol() {
    let codec = codec();
    for kind in EntityKind::ALL {
        for level in ThreatLevel::ALL {
            for action in [VerdictAction::Add, VerdictAction::Remove] {
                let v = FraudVerdict {
                    subject: Subject {
                        kind,
                        value: format!("{kind}-value"),
                    },
                    action,
                    threat_level: level,
                    ..verdict()
                };
                let bytes = codec.encode_verdict(&v).unwrap();
                assert_eq!(&bytes[1..5], &2u32.to_be_bytes());
                assert_eq!(codec.decode_verdict(&bytes).unwrap(), v);
            }
        }
    }
}

#[test]
fn enrichment_round_trip() {
    let codec = codec();
    let e = enrichment();
    let bytes = codec.encode_enrichment(&e).unwrap();
    assert_eq!(&bytes[1..5], &4u32.to_be_bytes(), "version 2 is written");
    assert_eq!(codec.decode_enrichment(&bytes).unwrap(), e);

    let empty = Enrichment {
        velocity: vec![],
        blacklist_hits: vec![],
        velocity_exceeded: false,
        ..enrichment()
    };
    let bytes = codec.encode_enrichment(&empty).unwrap();
    assert_eq!(codec.decode_enrichment(&bytes).unwrap(), empty);
}

#[test]
fn configured_ids_are_used_for_encoding() {
    let mut catalog = SchemaCatalog::empty();
    catalog
        .register_str(100, TRANSACTION_AVSC, "t")
        .unwrap()
        .register_str(200, FRAUD_VERDICT_AVSC, "v")
        .unwrap()
        .register_str(300, ENRICHMENT_AVSC, "e")
        .unwrap();
    let ids = SchemaIds {
        transaction: 100,
        verdict: 200,
        enrichment: 300,
    };
    let codec = Codec::new(&catalog, ids, 1 << 20).unwrap();
    let bytes = codec.encode_verdict(&verdict()).unwrap();
    assert_eq!(&bytes[1..5], &200u32.to_be_bytes());
    assert_eq!(codec.decode_verdict(&bytes).unwrap(), verdict());
    // the default ids are not in this catalog
    let err = codec
        .decode_verdict(&Codec::builtin().encode_verdict(&verdict()).unwrap())
        .unwrap_err();
    assert_eq!(err, DecodeError::UnknownSchema { id: 2 });
}

// ---------------------------------------------------------------------------------------------
// schema evolution

/// `Transaction` v0: before `merchant_id` was added.
fn transaction_v0() -> String {
    edit_schema(TRANSACTION_AVSC, |s| {
        fields(s).retain(|f| f["name"] != "merchant_id");
    })
}

#[test]
fn older_writer_schema_from_a_file_decodes_with_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("transaction.v0.avsc");
    std::fs::write(&path, transaction_v0()).unwrap();
    let catalog = SchemaCatalog::from_files([(11, &path)]).unwrap();
    assert_eq!(catalog.ids().collect::<Vec<_>>(), vec![1, 2, 3, 4, 11]);
    let codec = Codec::new(&catalog, SchemaIds::default(), 1 << 20).unwrap();

    // a v0 producer cannot carry merchant_id: it is dropped on the way out …
    let bytes = codec.encode_transaction_with(11, &tx()).unwrap();
    assert_eq!(&bytes[1..5], &11u32.to_be_bytes());
    let current = codec.encode_transaction(&tx()).unwrap();
    assert!(bytes.len() < current.len());
    // … and the reader fills in the default
    let decoded = codec.decode_transaction(&bytes).unwrap();
    assert_eq!(
        decoded,
        Transaction {
            merchant_id: None,
            ..tx()
        }
    );
}

#[test]
fn older_writer_with_int_amount_is_promoted() {
    let v0 = edit_schema(TRANSACTION_AVSC, |s| {
        for f in fields(s) {
            if f["name"] == "amount_minor" {
                f["type"] = "int".into();
            }
        }
    });
    let mut catalog = SchemaCatalog::builtin();
    catalog.register_str(12, &v0, "v0-int").unwrap();
    let codec = Codec::new(&catalog, SchemaIds::default(), 1 << 20).unwrap();
    let bytes = codec.encode_transaction_with(12, &tx()).unwrap();
    assert_eq!(codec.decode_transaction(&bytes).unwrap(), tx());
}

#[test]
fn newer_writer_with_an_added_field_decodes() {
    let v2 = edit_schema(TRANSACTION_AVSC, |s| {
        fields(s).push(serde_json::json!({
            "name": "channel", "type": "string", "default": "web", "doc": "new in v2"
        }));
    });
    let mut catalog = SchemaCatalog::builtin();
    catalog.register_str(13, &v2, "v2").unwrap();
    let codec = Codec::new(&catalog, SchemaIds::default(), 1 << 20).unwrap();
    let bytes = codec.encode_transaction_with(13, &tx()).unwrap();
    assert_eq!(codec.decode_transaction(&bytes).unwrap(), tx());
}

/// The enrichment fixture as a version-1 writer has it: no features, no rule version.
fn enrichment_as_v1() -> Enrichment {
    Enrichment {
        features: vec![],
        rule_version: None,
        ..enrichment()
    }
}

#[test]
fn an_enrichment_record_of_version_1_decodes_with_the_defaults() {
    let codec = codec();
    let bytes = codec.encode_enrichment_with(3, &enrichment()).unwrap();
    assert_eq!(&bytes[1..5], &3u32.to_be_bytes());
    assert_eq!(codec.decode_enrichment(&bytes).unwrap(), enrichment_as_v1());
}

#[test]
fn a_consumer_holding_version_1_reads_version_2_records() {
    let bytes = codec().encode_enrichment(&enrichment()).unwrap();
    assert_eq!(&bytes[1..5], &4u32.to_be_bytes());
    let writer = Schema::parse_str(ENRICHMENT_AVSC).unwrap();
    let reader = Schema::parse_str(ENRICHMENT_V1_AVSC).unwrap();
    let value = apache_avro::reader::datum::GenericDatumReader::builder(&writer)
        .reader_schema(&reader)
        .build()
        .unwrap()
        .read_value(&mut &bytes[5..])
        .unwrap();
    // Read with the version-1 schema: exactly its fields, the new ones skipped.
    let Value::Record(fields) = value else {
        panic!("a record")
    };
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    assert!(!names.contains(&"features") && !names.contains(&"rule_version"));
    // The same bytes as a version-1 writer's, once the new fields are cut off.
    let v1 = codec().encode_enrichment_with(3, &enrichment()).unwrap();
    assert!(
        bytes[5..].starts_with(&v1[5..]),
        "version 2 appends its fields"
    );
}

/// Both directions with a second Avro implementation, Python's fastavro: it reads version-2
/// bytes with the version-1 schema and version-1 bytes with the version-2 schema (defaults),
/// and writes both versions for our codec to read.
#[test]
fn fastavro_reads_and_writes_both_versions() {
    const SCRIPT: &str = r#"
import io, json, sys
from fastavro import parse_schema, schemaless_reader, schemaless_writer
v1 = parse_schema(json.load(open(sys.argv[1])))
v2 = parse_schema(json.load(open(sys.argv[2])))
out = {}
with open(sys.argv[3], "rb") as f:
    out["v2_as_v1"] = schemaless_reader(f, v2, v1)
with open(sys.argv[4], "rb") as f:
    out["v1_as_v2"] = schemaless_reader(f, v1, v2)
with open(sys.argv[3], "rb") as f:
    record = schemaless_reader(f, v2, v2)
for (schema, path) in [(v1, sys.argv[5]), (v2, sys.argv[6])]:
    buf = io.BytesIO()
    schemaless_writer(buf, schema, record)
    open(path, "wb").write(buf.getvalue())
print(json.dumps(out, default=str))
"#;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("v1.avsc"), ENRICHMENT_V1_AVSC).unwrap();
    std::fs::write(path("v2.avsc"), ENRICHMENT_AVSC).unwrap();
    let codec = codec();
    let v2 = codec.encode_enrichment(&enrichment()).unwrap();
    let v1 = codec.encode_enrichment_with(3, &enrichment()).unwrap();
    std::fs::write(path("v2.bin"), &v2[5..]).unwrap();
    std::fs::write(path("v1.bin"), &v1[5..]).unwrap();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .args(
            [
                "v1.avsc",
                "v2.avsc",
                "v2.bin",
                "v1.bin",
                "py_v1.bin",
                "py_v2.bin",
            ]
            .map(path),
        )
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "fastavro failed (needs `pip install fastavro`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let old_reader = &json["v2_as_v1"];
    assert_eq!(old_reader["event_id"], enrichment().event_id.as_str());
    assert_eq!(old_reader["velocity"][0]["count"], 6);
    assert!(old_reader.get("features").is_none(), "{old_reader}");
    let new_reader = &json["v1_as_v2"];
    assert_eq!(new_reader["features"], serde_json::json!([]));
    assert_eq!(new_reader["rule_version"], serde_json::Value::Null);
    assert_eq!(new_reader["velocity"][1]["window_seconds"], 3600);

    // What fastavro wrote, framed, decodes with our codec: version 1 with the defaults,
    // version 2 whole.
    let frame = |id: u32, body: Vec<u8>| {
        let mut bytes = vec![0u8];
        bytes.extend_from_slice(&id.to_be_bytes());
        bytes.extend(body);
        bytes
    };
    let py_v1 = frame(3, std::fs::read(path("py_v1.bin")).unwrap());
    let py_v2 = frame(4, std::fs::read(path("py_v2.bin")).unwrap());
    assert_eq!(codec.decode_enrichment(&py_v1).unwrap(), enrichment_as_v1());
    assert_eq!(codec.decode_enrichment(&py_v2).unwrap(), enrichment());
    assert_eq!(py_v2, v2, "the same bytes from both implementations");
}

fn verdict_value(action: &str, action_index: u32, level: &str, level_index: u32) -> Value {
    Value::Record(vec![
        ("verdict_id".into(), Value::String("v-9".into())),
        (
            "subject".into(),
            Value::Record(vec![
                ("kind".into(), Value::Enum(0, "user".into())),
                ("value".into(), Value::String("user-1".into())),
            ]),
        ),
        ("action".into(), Value::Enum(action_index, action.into())),
        (
            "threat_level".into(),
            Value::Enum(level_index, level.into()),
        ),
        ("reason".into(), Value::String("r".into())),
        ("source".into(), Value::String("s".into())),
        ("event_time".into(), Value::TimestampMillis(1)),
    ])
}

/// A newer `FraudVerdict` whose enums have extra symbols (and a different order).
fn verdict_v2() -> String {
    edit_schema(FRAUD_VERDICT_AVSC, |s| {
        for f in fields(s) {
            if f["name"] == "threat_level" {
                f["type"]["symbols"] = serde_json::json!([
                    "PERMANENT",
                    "SUSPICIOUS_EMAIL",
                    "STOLEN_CARD",
                    "FRAUD",
                    "TEMPORARY",
                    "EXTREME"
                ]);
            }
            if f["name"] == "action" {
                f["type"]["symbols"] = serde_json::json!(["ADD", "REMOVE", "ESCALATE"]);
            }
        }
    })
}

#[test]
fn newer_writer_enum_symbols_are_mapped_by_name() {
    let mut catalog = SchemaCatalog::builtin();
    catalog.register_str(21, &verdict_v2(), "v2").unwrap();
    let codec = Codec::new(&catalog, SchemaIds::default(), 1 << 20).unwrap();
    // index 0 in v2 is PERMANENT (index 4 in the reader)
    let bytes = foreign_message(
        21,
        &verdict_v2(),
        verdict_value("REMOVE", 1, "PERMANENT", 0),
    );
    let v = codec.decode_verdict(&bytes).unwrap();
    assert_eq!(v.threat_level, ThreatLevel::Permanent);
    assert_eq!(v.action, VerdictAction::Remove);
    // and the codec writes v2 by symbol name too
    let bytes = codec.encode_verdict_with(21, &verdict()).unwrap();
    assert_eq!(codec.decode_verdict(&bytes).unwrap(), verdict());
}

#[test]
fn unknown_enum_symbol_from_a_newer_writer_is_a_resolution_error() {
    let mut catalog = SchemaCatalog::builtin();
    catalog.register_str(21, &verdict_v2(), "v2").unwrap();
    let codec = Codec::new(&catalog, SchemaIds::default(), 1 << 20).unwrap();

    let unknown_level = foreign_message(21, &verdict_v2(), verdict_value("ADD", 0, "EXTREME", 5));
    let err = codec.decode_verdict(&unknown_level).unwrap_err();
    assert_eq!(err.kind(), "resolution", "{err}");
    assert!(
        matches!(&err, DecodeError::Resolution { schema_id: 21, record: "FraudVerdict", message } if message.contains("EXTREME")),
        "{err:?}"
    );

    let unknown_action =
        foreign_message(21, &verdict_v2(), verdict_value("ESCALATE", 2, "FRAUD", 3));
    let err = codec.decode_verdict(&unknown_action).unwrap_err();
    assert_eq!(err.kind(), "resolution", "{err}");
    assert!(err.to_string().contains("ESCALATE"), "{err}");
}

#[test]
fn writer_missing_a_required_field_is_a_resolution_error() {
    let no_currency = edit_schema(TRANSACTION_AVSC, |s| {
        fields(s).retain(|f| f["name"] != "currency");
    });
    let mut catalog = SchemaCatalog::builtin();
    catalog
        .register_str(14, &no_currency, "no-currency")
        .unwrap();
    let codec = Codec::new(&catalog, SchemaIds::default(), 1 << 20).unwrap();
    let bytes = codec.encode_transaction_with(14, &tx()).unwrap();
    let err = codec.decode_transaction(&bytes).unwrap_err();
    assert_eq!(err.kind(), "resolution", "{err}");
    assert!(err.to_string().contains("currency"), "{err}");
}

#[test]
fn a_message_of_another_record_type_is_a_resolution_error() {
    let codec = codec();
    let bytes = codec.encode_enrichment(&enrichment()).unwrap();
    let err = codec.decode_transaction(&bytes).unwrap_err();
    assert_eq!(err.kind(), "resolution", "{err}");
}

// ---------------------------------------------------------------------------------------------
// bad bytes

#[test]
fn bad_bytes_give_typed_errors() {
    let codec = codec();
    let good = codec.encode_transaction(&tx()).unwrap();

    assert_eq!(codec.decode_transaction(&[]), Err(DecodeError::Empty));
    assert_eq!(
        codec.decode_transaction(&[0, 0, 0]),
        Err(DecodeError::TooShort { len: 3 })
    );

    let mut wrong_magic = good.clone();
    wrong_magic[0] = 1;
    assert_eq!(
        codec.decode_transaction(&wrong_magic),
        Err(DecodeError::WrongMagic { found: 1 })
    );
    let json = br#"{"event_id":"e","user_id":"u"}"#;
    assert_eq!(
        codec.decode_transaction(json).unwrap_err().kind(),
        "wrong_magic"
    );

    let mut unknown = good.clone();
    unknown[1..5].copy_from_slice(&77u32.to_be_bytes());
    assert_eq!(
        codec.decode_transaction(&unknown),
        Err(DecodeError::UnknownSchema { id: 77 })
    );

    let truncated = &good[..good.len() - 3];
    let err = codec.decode_transaction(truncated).unwrap_err();
    assert!(
        matches!(&err, DecodeError::MalformedAvro { schema_id: 1, .. }),
        "{err:?}"
    );

    let header_only = &good[..5];
    assert_eq!(
        codec.decode_transaction(header_only).unwrap_err().kind(),
        "malformed_avro"
    );

    // garbage body: a huge string length, then junk
    let mut garbage = wire::frame_header(1, 16);
    garbage.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3]);
    assert_eq!(
        codec.decode_transaction(&garbage).unwrap_err().kind(),
        "malformed_avro"
    );
    // a negative string length
    let mut negative = wire::frame_header(1, 4);
    negative.extend_from_slice(&[0x03, b'a']);
    assert_eq!(
        codec.decode_transaction(&negative).unwrap_err().kind(),
        "malformed_avro"
    );
    // invalid UTF-8 in a string
    let mut not_utf8 = wire::frame_header(1, 4);
    not_utf8.extend_from_slice(&[0x04, 0xff, 0xfe]);
    assert_eq!(
        codec.decode_transaction(&not_utf8).unwrap_err().kind(),
        "malformed_avro"
    );
    // trailing bytes after a complete record
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0, 0]);
    assert_eq!(
        codec.decode_transaction(&trailing).unwrap_err().kind(),
        "malformed_avro"
    );
}

#[test]
fn oversize_is_checked_before_anything_else() {
    let codec = Codec::new(&SchemaCatalog::builtin(), SchemaIds::default(), 100).unwrap();
    let mut big = tx();
    big.merchant_id = Some("m".repeat(100));
    let bytes = Codec::builtin().encode_transaction(&big).unwrap();
    assert_eq!(
        codec.decode_transaction(&bytes),
        Err(DecodeError::Oversize {
            len: bytes.len(),
            max: 100
        })
    );
    // even when the bytes are not Avro at all
    let junk = vec![0xffu8; 101];
    assert_eq!(
        codec.decode_transaction(&junk).unwrap_err().kind(),
        "oversize"
    );
    // at the limit is fine
    let small = codec.encode_transaction(&bare_tx()).unwrap();
    assert!(small.len() <= 100, "{}", small.len());
    assert_eq!(codec.decode_transaction(&small).unwrap(), bare_tx());
}

#[test]
fn a_bad_enum_index_is_malformed() {
    let codec = codec();
    let mut bytes = codec.encode_verdict(&verdict()).unwrap();
    // body: verdict_id (len + bytes), then subject.kind enum index
    let pos = wire::HEADER_LEN + 1 + verdict().verdict_id.len();
    bytes[pos] = 0x40; // index 32
    let err = codec.decode_verdict(&bytes).unwrap_err();
    assert_eq!(err.kind(), "malformed_avro", "{err}");
}

#[test]
fn errors_have_stable_kinds_and_readable_messages() {
    let codec = codec();
    let err = codec.decode_transaction(&[7, 0, 0, 0, 1]).unwrap_err();
    assert_eq!(err.kind(), "wrong_magic");
    assert_eq!(
        err.to_string(),
        "wrong magic byte 0x07, expected 0x00 (not Confluent-framed Avro)"
    );
    for kind in DecodeError::KINDS {
        assert!(kind.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
    }
}

// ---------------------------------------------------------------------------------------------
// never panic

fn decode_all(codec: &Codec, bytes: &[u8]) {
    let _ = codec.decode_transaction(bytes);
    let _ = codec.decode_verdict(bytes);
    let _ = codec.decode_enrichment(bytes);
}

fn valid_messages() -> Vec<Vec<u8>> {
    let codec = codec();
    vec![
        codec.encode_transaction(&tx()).unwrap(),
        codec.encode_transaction(&bare_tx()).unwrap(),
        codec.encode_verdict(&verdict()).unwrap(),
        codec.encode_enrichment(&enrichment()).unwrap(),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let n = bytes.len().max(1);
    match *m {
        Mutation::Set(i, b) => {
            if !bytes.is_empty() {
                bytes[i % n] = b;
            }
        }
        Mutation::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
        Mutation::Remove(i) => {
            if !bytes.is_empty() {
                bytes.remove(i % n);
            }
        }
        Mutation::Truncate(i) => bytes.truncate(i % n),
    }
}

fn opt_id() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("\\PC{0,12}")
}

prop_compose! {
    fn any_tx()(
        event_id in "\\PC{0,40}", user_id in "\\PC{0,20}", amount_minor in any::<i64>(),
        currency in "[A-Z]{3}", card_bin in opt_id(), ip in opt_id(), email in opt_id(),
        device_id in opt_id(), merchant_id in opt_id(), event_time_ms in any::<i64>(),
    ) -> Transaction {
        Transaction {
            event_id, user_id, amount_minor, currency, card_bin, ip, email, device_id,
            merchant_id, event_time_ms,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        decode_all(&codec(), &bytes);
    }

    #[test]
    fn random_bodies_behind_a_valid_header_never_panic(
        id in 1u32..=3,
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = wire::frame_header(id, body.len());
        bytes.extend_from_slice(&body);
        decode_all(&codec(), &bytes);
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        which in 0usize..4,
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let codec = codec();
        let mut bytes = valid_messages().swap_remove(which);
        for m in &mutations {
            apply(&mut bytes, m);
        }
        decode_all(&codec, &bytes);
    }

    #[test]
    fn any_transaction_round_trips(t in any_tx()) {
        let codec = codec();
        let bytes = codec.encode_transaction(&t).unwrap();
        prop_assert_eq!(codec.decode_transaction(&bytes).unwrap(), t);
    }
}
