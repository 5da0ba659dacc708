//! Raw Kafka values through the worker's decode path: Confluent framing, schema lookup, Avro
//! decoding and resolution, then validation — exactly what `pipeline::decode` does for a record
//! on the transaction topic and on a verdict topic.
//!
//! Invariants: no panic on any input; an input over the size limit is rejected as `oversize`
//! before decoding; whatever decodes re-encodes and decodes to the same event (the encoder and
//! decoder agree); a record accepted on one topic is never accepted on a topic it does not
//! belong to (verdict spoofing through the transaction topic is impossible).

#![no_main]

use std::sync::{Arc, LazyLock};

use fds_worker::codec::{Codec, Limits, SchemaCatalog, SchemaIds};
use fds_worker::config::LimitsConfig;
use fds_worker::pipeline::{Decoder, decode};
use fds_worker::plan::EventBody;
use fds_worker::source::SourceMessage;
use libfuzzer_sys::fuzz_target;

const TRANSACTIONS: &str = "transactions";
const VERDICTS: &str = "fraud-verdicts";
/// Far from any real clock, so the future-skew check is exercised both ways.
const NOW_MS: i64 = 1_700_000_000_000;

static DECODER: LazyLock<Decoder> = LazyLock::new(|| {
    let limits = LimitsConfig::default();
    let codec = Codec::new(
        &SchemaCatalog::builtin(),
        SchemaIds::default(),
        limits.max_message_bytes as usize,
    )
    .expect("built-in catalog");
    Decoder {
        codec,
        limits: Limits {
            max_field_len: limits.max_field_len as usize,
        },
        transactions_topic: TRANSACTIONS.into(),
        verdict_topics: vec![VERDICTS.into()],
        max_future_skew_ms: limits.max_future_skew.as_millis() as i64,
        registry: None,
        misses: Default::default(),
    }
});

fn record(topic: &str, payload: &[u8]) -> SourceMessage {
    SourceMessage {
        topic: Arc::from(topic),
        partition: 0,
        offset: 0,
        key: None,
        payload: Some(payload.to_vec()),
        headers: Vec::new(),
        timestamp_ms: None,
    }
}

fuzz_target!(|data: &[u8]| {
    let decoder = &*DECODER;
    let codec = &decoder.codec;
    let oversize = data.len() > codec.max_message_bytes();

    for topic in [TRANSACTIONS, VERDICTS, "not-a-verdict-topic"] {
        match decode(decoder, &record(topic, data), NOW_MS) {
            Ok(event) => {
                assert!(!oversize, "an oversize record was accepted");
                match &event.body {
                    EventBody::Transaction(tx) => {
                        assert_eq!(topic, TRANSACTIONS, "a transaction from {topic}");
                        let again = codec.encode_transaction(tx).expect("re-encodes");
                        assert_eq!(&codec.decode_transaction(&again).expect("decodes"), tx);
                    }
                    EventBody::Verdict(verdict) => {
                        assert_eq!(topic, VERDICTS, "a verdict from {topic}");
                        let again = codec.encode_verdict(verdict).expect("re-encodes");
                        assert_eq!(&codec.decode_verdict(&again).expect("decodes"), verdict);
                    }
                }
            }
            Err(poison) => {
                assert!(!poison.kind.as_str().is_empty() && !poison.message.is_empty());
                if oversize && topic != "not-a-verdict-topic" {
                    assert_eq!(poison.kind.as_str(), "oversize", "{}", poison.message);
                }
            }
        }
    }
    // Enrichment records are the worker's own output, but `redrive` and consumers decode them.
    let _ = codec.decode_enrichment(data);
});
