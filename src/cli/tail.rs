//! `fds-worker tail`: follow a topic, decode its records with the codec and print them as JSON
//! lines (the enrichment topic by default).

use std::io::Write as _;

use anyhow::Context as _;
use clap::Args;
use rdkafka::ClientConfig;
use rdkafka::consumer::StreamConsumer;
use serde_json::{Value, json};

use crate::codec::Codec;
use crate::config::Config;
use crate::event::{Enrichment, FraudVerdict, Transaction};
use crate::pipeline::decoder_from_config;
use crate::source::SourceMessage;
use crate::source::range::{self, End, RangeReader, Read, Start};

/// Arguments of `fds-worker tail`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  fds-worker tail                                   new enrichment records as they come
  fds-worker tail --user 42                         only user 42's
  fds-worker tail --from-beginning --count 10       the first 10 records
  fds-worker tail --topic transactions.dlq --from-beginning | jq '._kafka.offset'

Each line is one record as JSON, with the Avro field names of its schema (times in Unix
milliseconds) and a `_kafka` object (topic, partition, offset, key, timestamp_ms). The record
type follows the topic (enrichment, transactions, verdict topics and their dead-letter topics);
on other topics every type is tried. A record that does not decode prints as `_error`.
Nothing is committed: tail reads outside any consumer group's offsets. Stops after --count
records, or on Ctrl-C.")]
pub struct TailArgs {
    /// Topic to follow (default: kafka.enrichment_topic).
    #[arg(long)]
    pub topic: Option<String>,
    /// Only records of this user (`user_id`, or a verdict whose subject is this user).
    #[arg(long, value_name = "ID")]
    pub user: Option<String>,
    /// Stop after printing this many records.
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<u64>,
    /// Start at the oldest retained record instead of the end.
    #[arg(long)]
    pub from_beginning: bool,
    /// Also show records of open and aborted Kafka transactions (`isolation.level =
    /// read_uncommitted`). By default tail reads like a downstream consumer should:
    /// `read_committed`, where exactly-once output has one record per transaction.
    #[arg(long)]
    pub read_uncommitted: bool,
}

/// Which record type a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Enrichment,
    Transaction,
    Verdict,
    Any,
}

fn kind_of(topic: &str, config: &Config) -> Kind {
    let kafka = &config.kafka;
    let source = topic
        .strip_suffix(kafka.dlq_suffix.as_str())
        .unwrap_or(topic);
    if topic == kafka.enrichment_topic {
        Kind::Enrichment
    } else if source == kafka.transactions_topic {
        Kind::Transaction
    } else if kafka.is_verdict_topic(source) {
        Kind::Verdict
    } else {
        Kind::Any
    }
}

/// Runs `tail`.
pub async fn run(args: TailArgs, config: &Config) -> anyhow::Result<()> {
    let topic = args
        .topic
        .clone()
        .unwrap_or_else(|| config.kafka.enrichment_topic.clone());
    let kind = kind_of(&topic, config);
    let decoder = decoder_from_config(config).map_err(anyhow::Error::msg)?;
    // With a Schema Registry every id in a record is the registry's (the catalog's ids are
    // not writer ids then): a decoding codec fed from the registry by id. A reader registers
    // nothing (its credentials may well be read-only).
    let (codec, registry) = match decoder.registry {
        Some(registry) => (
            Codec::registry_reader(config.limits.max_message_bytes as usize)?,
            Some(registry),
        ),
        None => (decoder.codec, None),
    };
    let mut client = ClientConfig::new();
    for (key, value) in config.kafka.common_options() {
        client.set(key, value);
    }
    let consumer: StreamConsumer = client
        .set(
            "group.id",
            format!(
                "fds-worker-tail-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set(
            "isolation.level",
            if args.read_uncommitted {
                "read_uncommitted"
            } else {
                "read_committed"
            },
        )
        .create()
        .context("creating the Kafka consumer")?;
    let start = if args.from_beginning {
        Start::Earliest
    } else {
        Start::Latest
    };
    // Followed until --count records were printed or Ctrl-C: no end offset.
    let spans = range::whole_topic(&consumer, &topic, start, End::Never)?;
    let mut reader = RangeReader::open(consumer, &spans)?;
    let mut printed = 0u64;
    let mut stdout = std::io::stdout().lock();
    while args.count.is_none_or(|n| printed < n) {
        let step = tokio::select! {
            step = reader.next() => step,
            _ = tokio::signal::ctrl_c() => break,
        };
        let message = match step.transpose()? {
            Some(Read::Record(message)) => message,
            Some(Read::Ended(_) | Read::Idle) => continue,
            // Every partition ended: only with an end offset, which tail has not.
            None => break,
        };
        // A record whose writer schema the registry does not give is shown with its
        // decoding error.
        if let Some(registry) = &registry
            && let Err(error) = registry
                .learn_writer_schema(&codec, message.payload.as_deref().unwrap_or_default())
                .await
        {
            tracing::warn!(%error, "the record's writer schema is not known");
        }
        let Some(line) = render(&message, kind, &codec, args.user.as_deref()) else {
            continue;
        };
        if writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            break; // stdout closed (`| head`)
        }
        printed += 1;
    }
    Ok(())
}

/// One record as a JSON line, or `None` if `user` filters it out.
fn render(
    message: &SourceMessage,
    kind: Kind,
    codec: &Codec,
    user: Option<&str>,
) -> Option<String> {
    let meta = json!({
        "topic": &*message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "key": message.key.as_deref().map(String::from_utf8_lossy),
        "timestamp_ms": message.timestamp_ms,
    });
    let payload = message.payload.as_deref().unwrap_or_default();
    let decoded = decode(payload, kind, codec);
    let mut value = match decoded {
        Ok((value, owner)) => {
            if user.is_some_and(|u| owner.as_deref() != Some(u)) {
                return None;
            }
            value
        }
        Err(error) => {
            if user.is_some() {
                return None;
            }
            json!({ "_error": error })
        }
    };
    if let Value::Object(map) = &mut value {
        map.insert("_kafka".into(), meta);
    }
    Some(value.to_string())
}

/// The record as JSON and the user it belongs to (for `--user`).
fn decode(payload: &[u8], kind: Kind, codec: &Codec) -> Result<(Value, Option<String>), String> {
    let kinds: &[Kind] = match kind {
        Kind::Any => &[Kind::Enrichment, Kind::Transaction, Kind::Verdict],
        one => std::slice::from_ref(match one {
            Kind::Enrichment => &Kind::Enrichment,
            Kind::Transaction => &Kind::Transaction,
            _ => &Kind::Verdict,
        }),
    };
    let mut last = String::new();
    for kind in kinds {
        let result = match kind {
            Kind::Enrichment => codec.decode_enrichment(payload).map(|e| {
                let user = e.user_id.clone();
                (enrichment_json(&e), Some(user))
            }),
            Kind::Transaction => codec.decode_transaction(payload).map(|t| {
                let user = t.user_id.clone();
                (transaction_json(&t), Some(user))
            }),
            _ => codec.decode_verdict(payload).map(|v| {
                let user = (v.subject.kind == crate::event::EntityKind::User)
                    .then(|| v.subject.value.clone());
                (verdict_json(&v), user)
            }),
        };
        match result {
            Ok(decoded) => return Ok(decoded),
            Err(error) => last = error.to_string(),
        }
    }
    Err(last)
}

/// An enrichment record with its schema's field names.
pub fn enrichment_json(e: &Enrichment) -> Value {
    json!({
        "event_id": e.event_id,
        "user_id": e.user_id,
        "velocity": e.velocity.iter().map(|v| json!({
            "dimension": v.dimension.as_str(),
            "window_seconds": v.window_seconds,
            "count": v.count,
            "threshold": v.threshold,
            "exceeded": v.exceeded,
        })).collect::<Vec<_>>(),
        "velocity_exceeded": e.velocity_exceeded,
        "blacklist_hits": e.blacklist_hits.iter().map(|h| json!({
            "kind": h.kind.as_str(),
            "value": h.value,
            "threat_level": h.threat_level.as_str(),
            "reason": h.reason,
            "source": h.source,
            "ttl_remaining_s": h.ttl_remaining_s,
        })).collect::<Vec<_>>(),
        "source_topic": e.source_topic,
        "source_partition": e.source_partition,
        "source_offset": e.source_offset,
        "event_time": e.event_time_ms,
        "processed_at": e.processed_at_ms,
        "features": e.features.iter().map(|f| json!({
            "name": f.name,
            "value": f.value,
            "currency": f.currency,
            "threshold": f.threshold,
            "exceeded": f.exceeded,
        })).collect::<Vec<_>>(),
        "rule_version": e.rule_version,
    })
}

/// A transaction with its schema's field names.
pub fn transaction_json(t: &Transaction) -> Value {
    json!({
        "event_id": t.event_id,
        "user_id": t.user_id,
        "amount_minor": t.amount_minor,
        "currency": t.currency,
        "card_bin": t.card_bin,
        "ip": t.ip,
        "email": t.email,
        "device_id": t.device_id,
        "merchant_id": t.merchant_id,
        "event_time": t.event_time_ms,
    })
}

/// A verdict with its schema's field names.
pub fn verdict_json(v: &FraudVerdict) -> Value {
    json!({
        "verdict_id": v.verdict_id,
        "subject": { "kind": v.subject.kind.as_str(), "value": v.subject.value },
        "action": v.action.as_str(),
        "threat_level": v.threat_level.as_str(),
        "reason": v.reason,
        "source": v.source,
        "event_time": v.event_time_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EntityKind, Subject, ThreatLevel, VerdictAction};

    #[test]
    fn topics_pick_their_record_type() {
        let config = Config::default();
        assert_eq!(kind_of("transactions-enriched", &config), Kind::Enrichment);
        assert_eq!(kind_of("transactions", &config), Kind::Transaction);
        assert_eq!(kind_of("transactions.dlq", &config), Kind::Transaction);
        assert_eq!(kind_of("fraud-verdicts.dlq", &config), Kind::Verdict);
        assert_eq!(kind_of("other", &config), Kind::Any);
    }

    #[test]
    fn any_topic_tries_every_type_and_reports_garbage() {
        let codec = Codec::builtin();
        let verdict = FraudVerdict {
            verdict_id: "v1".into(),
            subject: Subject {
                kind: EntityKind::User,
                value: "42".into(),
            },
            action: VerdictAction::Add,
            threat_level: ThreatLevel::Fraud,
            reason: "r".into(),
            source: "s".into(),
            event_time_ms: 5,
        };
        let bytes = codec.encode_verdict(&verdict).unwrap();
        let (value, user) = decode(&bytes, Kind::Any, &codec).unwrap();
        assert_eq!(value["subject"]["value"], "42");
        assert_eq!(value["threat_level"], "FRAUD");
        assert_eq!(user.as_deref(), Some("42"));
        assert!(decode(b"garbage", Kind::Enrichment, &codec).is_err());
    }
}
