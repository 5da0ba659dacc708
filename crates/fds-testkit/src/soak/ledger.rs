//! The soak's end check against the generator's ground truth: every transaction enriched
//! exactly once (a `read_committed` reader of the enrichment topic) or dead-lettered, no dead
//! letter at all (the nemesis never takes away more than the stack survives, and the traffic
//! has no poison), and every feature tile and blacklist entry in Redis equal to the truth.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use fds_worker::codec::Codec;
use fds_worker::codec::registry::SchemaRegistry;
use fds_worker::config::Config;
use fds_worker::generate::{GeneratedEvent, Traffic, verify};
use fds_worker::source::range::{self, BlockingRangeReader, End, Start};
use rdkafka::ClientConfig;
use rdkafka::consumer::BaseConsumer;

use crate::demo::LocalStack;

/// What the ledger found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Ledger {
    /// Transactions generated.
    pub transactions: usize,
    /// Transactions with exactly one committed enrichment record.
    pub enriched_once: usize,
    /// Transactions with more than one (double output).
    pub enriched_more_than_once: usize,
    /// Transactions neither enriched nor dead-lettered (lost).
    pub missing: usize,
    /// Dead letters (transactions and verdicts).
    pub dead_letters: usize,
    /// Feature tiles compared with the truth.
    pub counters_checked: usize,
    /// Increments missing from Redis (lost).
    pub lost_increments: i64,
    /// Increments Redis holds beyond the truth (double counted).
    pub doubled_increments: i64,
    /// Blacklist entries that differ from the truth.
    pub blacklist_problems: Vec<String>,
    /// Blacklist entries expiring up to 2 s later than the truth: moved by a slot migration
    /// (see `fds_worker::generate::verify::MIGRATED_EXPIRY_SLACK_S`), not a violation.
    pub expiry_moved_later: usize,
    /// A few examples of what differed, for the report.
    pub examples: Vec<String>,
}

impl Ledger {
    /// What broke a promise, one line each (empty: every promise kept).
    pub fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.missing > 0 {
            out.push(format!(
                "{} transactions neither enriched nor dead-lettered",
                self.missing
            ));
        }
        if self.enriched_more_than_once > 0 {
            out.push(format!(
                "{} transactions have more than one committed enrichment record",
                self.enriched_more_than_once
            ));
        }
        if self.dead_letters > 0 {
            out.push(format!(
                "{} dead letters, where no fault expected any",
                self.dead_letters
            ));
        }
        if self.lost_increments > 0 {
            out.push(format!("{} increments lost in Redis", self.lost_increments));
        }
        if self.doubled_increments > 0 {
            out.push(format!(
                "{} increments double-counted in Redis",
                self.doubled_increments
            ));
        }
        if !self.blacklist_problems.is_empty() {
            out.push(format!(
                "{} blacklist entries differ from the truth",
                self.blacklist_problems.len()
            ));
        }
        out
    }
}

/// Reads the output topics and Redis (blocking reads: call from a blocking thread).
pub async fn check(
    stack: &LocalStack,
    config: &Config,
    traffic: &Traffic,
) -> anyhow::Result<Ledger> {
    // With a registry every id is the registry's: a decoding codec that learns them.
    let registry = match config.schemas.registry.enabled() {
        true => Some(SchemaRegistry::new(&config.schemas.registry)?),
        false => None,
    };
    let codec = match &registry {
        Some(_) => Codec::registry_reader(config.limits.max_message_bytes as usize)?,
        None => Codec::builtin(),
    };
    let learn = async |payload: &[u8]| -> anyhow::Result<()> {
        if let Some(registry) = &registry {
            registry.learn_writer_schema(&codec, payload).await?;
        }
        Ok(())
    };
    let client = stack.kafka.client_config();
    // Every committed copy of each transaction's enrichment record: where it is and what
    // it says about when and from where it was made (to trace a double back to the run).
    let mut enriched: HashMap<String, Vec<String>> = HashMap::new();
    for record in read_to_end(&client, &config.kafka.enrichment_topic)? {
        let payload = record.payload.as_deref().unwrap_or_default();
        learn(payload).await?;
        let enrichment = codec.decode_enrichment(payload)?;
        let copy = format!(
            "{}[{}]@{} from {}[{}]@{} processed at {} ms, appended at {} ms",
            record.topic,
            record.partition,
            record.offset,
            enrichment.source_topic,
            enrichment.source_partition,
            enrichment.source_offset,
            enrichment.processed_at_ms,
            record.timestamp_ms.unwrap_or_default(),
        );
        enriched.entry(enrichment.event_id).or_default().push(copy);
    }
    let mut dead_letters = 0;
    let mut dead: HashSet<String> = HashSet::new();
    for topic in config.kafka.source_topics() {
        for record in read_to_end(&client, &config.kafka.dlq_topic(topic))? {
            dead_letters += 1;
            if let Some(payload) = record.payload.as_deref()
                && learn(payload).await.is_ok()
                && let Ok(tx) = codec.decode_transaction(payload)
            {
                dead.insert(tx.event_id);
            }
        }
    }
    let mut ledger = Ledger {
        transactions: traffic.truth.transactions,
        dead_letters,
        ..Ledger::default()
    };
    let mut doubles = Vec::new();
    for event in &traffic.events {
        let GeneratedEvent::Transaction(tx) = event else {
            continue;
        };
        match enriched.get(&tx.event_id).map(Vec::as_slice) {
            Some([_]) => ledger.enriched_once += 1,
            Some(copies) if !copies.is_empty() => {
                ledger.enriched_more_than_once += 1;
                doubles.push(format!("double: {}: {}", tx.event_id, copies.join("; ")));
            }
            _ if dead.contains(&tx.event_id) => {}
            _ => ledger.missing += 1,
        }
    }
    let redis = redis::cluster::ClusterClient::builder(stack.cluster.seed_urls())
        .connection_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(10))
        .build()?;
    let connection = redis.get_async_connection().await?;
    let report = verify(&connection, &traffic.truth).await?;
    ledger.counters_checked = report.counters;
    ledger.lost_increments = report.lost_increments();
    ledger.doubled_increments = report.doubled_increments();
    ledger.blacklist_problems = report.blacklist_problems.clone();
    ledger.expiry_moved_later = report.expiry_moved_later;
    ledger.examples = report
        .lost
        .iter()
        .map(|m| format!("lost: {} expected {} found {}", m.key, m.expected, m.actual))
        .chain(report.doubled.iter().map(|m| {
            format!(
                "doubled: {} expected {} found {}",
                m.key, m.expected, m.actual
            )
        }))
        .take(5)
        .chain(doubles.into_iter().take(10))
        .collect();
    Ok(ledger)
}

/// Every committed record of `topic`, from the start to the current end.
fn read_to_end(
    client: &ClientConfig,
    topic: &str,
) -> anyhow::Result<Vec<fds_worker::source::SourceMessage>> {
    let consumer: BaseConsumer = client
        .clone()
        .set("group.id", format!("soak-ledger-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let spans = range::whole_topic(&consumer, topic, Start::Earliest, End::HighWatermark)?;
    Ok(BlockingRangeReader::open(consumer, &spans)?.read_to_end(Duration::from_secs(120))?)
}
