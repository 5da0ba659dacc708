//! Per-message cost of the codec: `cargo bench --bench codec`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use fds_worker::codec::{Codec, SchemaCatalog, SchemaIds, TRANSACTION_AVSC};
use fds_worker::event::{
    BlacklistHit, Enrichment, EntityKind, FeatureValue, FraudVerdict, Subject, ThreatLevel,
    Transaction, VelocityCount, VerdictAction,
};

fn transaction() -> Transaction {
    Transaction {
        event_id: "0b9d2c1e-6f0a-4c55-9a57-3f2d8f1e0c11".into(),
        user_id: "user-0000042".into(),
        amount_minor: 129_900,
        currency: "KRW".into(),
        card_bin: Some("457173".into()),
        ip: Some("203.0.113.7".into()),
        email: Some("kim@example.com".into()),
        device_id: Some("dev-a1b2c3d4".into()),
        merchant_id: Some("merchant-9".into()),
        event_time_ms: 1_718_000_000_123,
    }
}

fn verdict() -> FraudVerdict {
    FraudVerdict {
        verdict_id: "9f1c7a52-3f0e-4e8b-a1d2-0c5e7b9a1f33".into(),
        subject: Subject {
            kind: EntityKind::CardBin,
            value: "457173".into(),
        },
        action: VerdictAction::Add,
        threat_level: ThreatLevel::StolenCard,
        reason: "issuer reported stolen".into(),
        source: "chargeback-feed".into(),
        event_time_ms: 1_718_000_000_000,
    }
}

/// A typical record: 4 dimensions × 2 windows, 12 features, one blacklist hit.
fn enrichment() -> Enrichment {
    let velocity = [
        EntityKind::User,
        EntityKind::CardBin,
        EntityKind::Ip,
        EntityKind::Device,
    ]
    .into_iter()
    .flat_map(|dimension| {
        [(60, 5), (3600, 50)].map(|(window_seconds, threshold)| VelocityCount {
            dimension,
            window_seconds,
            count: 3,
            threshold: Some(threshold),
            exceeded: false,
        })
    })
    .collect();
    Enrichment {
        event_id: "0b9d2c1e-6f0a-4c55-9a57-3f2d8f1e0c11".into(),
        user_id: "user-0000042".into(),
        velocity,
        velocity_exceeded: false,
        blacklist_hits: vec![BlacklistHit {
            kind: EntityKind::Ip,
            value: "203.0.113.7".into(),
            threat_level: ThreatLevel::Temporary,
            reason: "velocity breach".into(),
            source: "fds-worker".into(),
            ttl_remaining_s: Some(3512),
        }],
        source_topic: "transactions".into(),
        source_partition: 7,
        source_offset: 123_456_789,
        event_time_ms: 1_718_000_000_123,
        processed_at_ms: 1_718_000_000_456,
        features: (0..12)
            .map(|i| FeatureValue {
                name: format!("feature_{i}"),
                value: 3,
                currency: None,
                threshold: Some(5),
                exceeded: false,
            })
            .collect(),
        rule_version: Some("r-0123456789abcdef".into()),
    }
}

fn bench(c: &mut Criterion) {
    // id 11: an older Transaction schema without merchant_id, to price schema resolution
    let mut v0: serde_json::Value = serde_json::from_str(TRANSACTION_AVSC).unwrap();
    v0["fields"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["name"] != "merchant_id");
    let mut catalog = SchemaCatalog::builtin();
    catalog.register_str(11, &v0.to_string(), "v0").unwrap();
    let codec = Codec::new(&catalog, SchemaIds::default(), 1 << 20).unwrap();

    let tx = codec.encode_transaction(&transaction()).unwrap();
    let tx_v0 = codec.encode_transaction_with(11, &transaction()).unwrap();
    let verdict = codec.encode_verdict(&verdict()).unwrap();
    let enrichment = enrichment();

    c.bench_function("decode_transaction", |b| {
        b.iter(|| codec.decode_transaction(black_box(&tx)).unwrap())
    });
    c.bench_function("decode_transaction_resolved_v0", |b| {
        b.iter(|| codec.decode_transaction(black_box(&tx_v0)).unwrap())
    });
    c.bench_function("decode_verdict", |b| {
        b.iter(|| codec.decode_verdict(black_box(&verdict)).unwrap())
    });
    c.bench_function("encode_enrichment", |b| {
        b.iter(|| codec.encode_enrichment(black_box(&enrichment)).unwrap())
    });
    c.bench_function("encode_transaction", |b| {
        let t = transaction();
        b.iter(|| codec.encode_transaction(black_box(&t)).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
