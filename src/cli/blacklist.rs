//! `fds-worker blacklist check|add|remove`: read an entry (with its remaining TTL), or add /
//! remove one — by publishing a verdict to the verdict topic (the worker applies it with the
//! same ordering rules as any verdict), or with `--direct` through the same atomic unit the
//! worker uses.

use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;

use crate::config::Config;
use crate::event::{EntityKind, FraudVerdict, Subject, ThreatLevel, VerdictAction};
use crate::pipeline::{plan_settings, producer_codec, store_settings, unix_ms};
use crate::plan::{EventBody, PlannedEvent, Planner, SourceRef};
use crate::sink::producer_config;
use crate::slot::keys::{Entity, KeyBuilder};
use crate::slot::{Slot, key_slot};
use crate::store::Store;
use crate::store::wire::parse_entry;

/// Apply-once identity of `--direct` changes: this pseudo topic, partition 0, the time in
/// microseconds as the offset (so a later command is never mistaken for an earlier one).
pub const DIRECT_SOURCE: &str = "fds-worker-cli";

/// Arguments of `fds-worker blacklist`.
#[derive(Debug, Args)]
pub struct BlacklistArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: BlacklistCommand,
}

/// `fds-worker blacklist` subcommands.
#[derive(Debug, Subcommand)]
pub enum BlacklistCommand {
    /// Show an entity's blacklist entry and its remaining TTL.
    Check(CheckArgs),
    /// Blacklist an entity (publishes an ADD verdict; `--direct` writes it at once).
    Add(ChangeArgs),
    /// Remove an entity's entry as a false positive (publishes a REMOVE verdict; `--direct`
    /// deletes at once).
    Remove(ChangeArgs),
}

/// The entity: kind and id.
#[derive(Debug, Args)]
pub struct Target {
    /// Entity kind: user, ip, email, card_bin or device.
    #[arg(value_parser = parse_kind)]
    pub kind: EntityKind,
    /// The entity's id (raw: it is encoded into the key as the worker does).
    pub value: String,
    /// Key namespace (a replay's shadow namespace); empty = the live keys.
    #[arg(long, default_value = "")]
    pub namespace: String,
}

/// Arguments of `fds-worker blacklist check`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  fds-worker blacklist check ip 203.0.113.7
  fds-worker blacklist check user 42 --json
  fds-worker blacklist check device dev-9 --namespace shadow

Reads bl:{<tag>} (e.g. bl:{ip:203.0.113.7}) from the slot's master and shows the level, reason,
source, when it was added (event time) and the remaining TTL. Exit status 0 whether or not the
entity is listed (see \"listed\" in --json).")]
pub struct CheckArgs {
    /// The entity.
    #[command(flatten)]
    pub target: Target,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `fds-worker blacklist add|remove`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  fds-worker blacklist add ip 203.0.113.7 --level FRAUD --reason 'chargeback ring'
  fds-worker blacklist add card_bin 411111 --level STOLEN_CARD --reason 'issuer report' --direct
  fds-worker blacklist remove user 42 --reason 'false positive, ticket 1234'
  fds-worker blacklist remove user 42 --direct

Without --direct a FraudVerdict (ADD or REMOVE, event time now) is published to the verdict
topic, keyed by the entity id, and the worker applies it like any verdict: an ADD never lowers
the level or shortens the expiry; a REMOVE deletes only an entry added at or before it. With
--direct the same change is applied at once through the worker's atomic unit (FCALL), under
the apply-once identity `fds-worker-cli:0` at the current time in microseconds.")]
pub struct ChangeArgs {
    /// The entity.
    #[command(flatten)]
    pub target: Target,
    /// Threat level (decides the TTL tier): TEMPORARY, FRAUD, STOLEN_CARD, SUSPICIOUS_EMAIL,
    /// PERMANENT.
    #[arg(long, value_parser = parse_level, default_value = "TEMPORARY")]
    pub level: ThreatLevel,
    /// Why (stored in the entry).
    #[arg(long, default_value = "set by an operator")]
    pub reason: String,
    /// Who decided (stored in the entry).
    #[arg(long, default_value = "fds-worker-cli")]
    pub source: String,
    /// Apply now through the atomic unit instead of publishing a verdict.
    #[arg(long)]
    pub direct: bool,
    /// Verdict topic to publish to (default: the first of kafka.verdict_topics).
    #[arg(long, conflicts_with = "direct")]
    pub topic: Option<String>,
}

fn parse_kind(name: &str) -> Result<EntityKind, String> {
    EntityKind::parse(name).ok_or_else(|| {
        let kinds: Vec<&str> = EntityKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("unknown kind `{name}`; one of {}", kinds.join(", "))
    })
}

fn parse_level(name: &str) -> Result<ThreatLevel, String> {
    ThreatLevel::parse(&name.to_ascii_uppercase()).ok_or_else(|| {
        let levels: Vec<&str> = ThreatLevel::ALL.iter().map(|l| l.as_str()).collect();
        format!("unknown level `{name}`; one of {}", levels.join(", "))
    })
}

/// Runs `blacklist`.
pub async fn run(args: BlacklistArgs, config: &Config) -> anyhow::Result<()> {
    match args.command {
        BlacklistCommand::Check(args) => {
            let entry = check(&args.target, config).await?;
            if args.json {
                println!("{}", serde_json::to_string(&entry)?);
            } else {
                print!("{}", entry.render());
            }
            Ok(())
        }
        BlacklistCommand::Add(args) => change(args, VerdictAction::Add, config).await,
        BlacklistCommand::Remove(args) => change(args, VerdictAction::Remove, config).await,
    }
}

/// An entry as `check` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shown {
    /// The Redis key.
    pub key: String,
    /// Its slot.
    pub slot: Slot,
    /// Whether an entry exists.
    pub listed: bool,
    /// Threat level.
    pub threat_level: Option<String>,
    /// Reason.
    pub reason: Option<String>,
    /// Who added it.
    pub source: Option<String>,
    /// Event time of the latest addition (Unix ms).
    pub added_at_ms: Option<i64>,
    /// Remaining TTL in seconds; `None` when not listed or never expiring.
    pub ttl_remaining_s: Option<i64>,
}

impl Shown {
    fn render(&self) -> String {
        if !self.listed {
            return format!("not listed: {} (slot {})\n", self.key, self.slot);
        }
        let added = self
            .added_at_ms
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map_or_else(|| "-".to_owned(), |t| t.to_rfc3339());
        let expires = match self.ttl_remaining_s {
            Some(ttl) => format!(
                "in {} (TTL {ttl} s)",
                humantime::format_duration(Duration::from_secs(ttl.max(0) as u64))
            ),
            None => "never".to_owned(),
        };
        format!(
            "key:       {} (slot {})\nlevel:     {}\nreason:    {}\nsource:    {}\nadded at:  {added}\nexpires:   {expires}\n",
            self.key,
            self.slot,
            self.threat_level.as_deref().unwrap_or_default(),
            self.reason.as_deref().unwrap_or_default(),
            self.source.as_deref().unwrap_or_default(),
        )
    }
}

/// Reads the entry of `target` (`GET` + `PTTL` on the slot's master).
pub async fn check(target: &Target, config: &Config) -> anyhow::Result<Shown> {
    let tag = Entity::new(target.kind, target.value.clone()).tag();
    let key = KeyBuilder::namespaced(&target.namespace).blacklist(&tag);
    let slot = key_slot(key.as_bytes());
    // The store's connection settings: credentials, timeouts, TLS files.
    let settings = store_settings(&config.redis);
    let mut connection = crate::store::connect_cluster(&settings)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to the Redis Cluster: {e}"))?;
    let (raw, pttl): (Option<String>, i64) = redis::pipe()
        .get(&key)
        .pttl(&key)
        .query_async(&mut connection)
        .await
        .map_err(|e| anyhow::anyhow!("reading {key}: {e}"))?;
    let entry = raw.as_deref().and_then(|raw| parse_entry(raw, pttl));
    Ok(Shown {
        listed: entry.is_some(),
        threat_level: entry.as_ref().map(|e| e.threat_level.as_str().to_owned()),
        reason: entry.as_ref().map(|e| e.reason.clone()),
        source: entry.as_ref().map(|e| e.source.clone()),
        added_at_ms: entry.as_ref().map(|e| e.added_at_ms),
        ttl_remaining_s: entry
            .as_ref()
            .and_then(|e| e.ttl_ms)
            .map(|ms| (ms + 999) / 1000),
        key,
        slot,
    })
}

/// The verdict an `add` / `remove` stands for, at event time now.
pub fn verdict(args: &ChangeArgs, action: VerdictAction, now_ms: i64) -> FraudVerdict {
    FraudVerdict {
        verdict_id: format!("cli-{now_ms}-{:08x}", rand::random::<u32>()),
        subject: Subject {
            kind: args.target.kind,
            value: args.target.value.clone(),
        },
        action,
        threat_level: args.level,
        reason: args.reason.clone(),
        source: args.source.clone(),
        event_time_ms: now_ms,
    }
}

async fn change(args: ChangeArgs, action: VerdictAction, config: &Config) -> anyhow::Result<()> {
    let now = SystemTime::now();
    let verdict = verdict(&args, action, unix_ms(now));
    let what = format!(
        "{} {} {}",
        action.as_str(),
        verdict.subject.kind,
        verdict.subject.value
    );
    if args.direct {
        let applied = apply_direct(&verdict, &args.target.namespace, config, now).await?;
        if applied {
            println!("applied {what} directly");
        } else {
            println!("{what}: already applied (apply-once mark), nothing changed");
        }
        let shown = check(&args.target, config).await?;
        print!("{}", shown.render());
        return Ok(());
    }
    let topic = match &args.topic {
        Some(topic) => topic.clone(),
        None => config
            .kafka
            .verdict_topics
            .first()
            .cloned()
            .context("kafka.verdict_topics is empty")?,
    };
    // With a Schema Registry, written under the registry's id for the verdict schema.
    let codec = producer_codec(config, &config.kafka.transactions_topic, &topic).await?;
    let payload = codec.encode_verdict(&verdict)?;
    let producer: FutureProducer = producer_config(&config.kafka)
        .create()
        .context("creating the Kafka producer")?;
    let record = FutureRecord::to(&topic)
        .key(&verdict.subject.value)
        .payload(&payload);
    let delivered = producer
        .send(record, Duration::from_secs(30))
        .await
        .map_err(|(e, _)| anyhow::anyhow!("publishing the verdict to {topic}: {e}"))?;
    println!(
        "published {what} ({}) as verdict {} to {topic} [partition {}, offset {}]",
        verdict.threat_level, verdict.verdict_id, delivered.partition, delivered.offset
    );
    Ok(())
}

/// Plans the verdict as the worker would and runs its unit; `true` if it changed something
/// (not skipped by an apply-once mark).
async fn apply_direct(
    verdict: &FraudVerdict,
    namespace: &str,
    config: &Config,
    now: SystemTime,
) -> anyhow::Result<bool> {
    let micros = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as i64;
    let event = PlannedEvent {
        source: SourceRef {
            topic: DIRECT_SOURCE.into(),
            partition: 0,
            offset: micros,
        },
        body: EventBody::Verdict(verdict.clone()),
        redrive: None,
    };
    let plan = Planner::new(plan_settings(config, namespace)).plan(&[event], unix_ms(now));
    let store = Store::connect(store_settings(&config.redis))
        .await
        .map_err(|e| anyhow::anyhow!("connecting to the Redis Cluster: {e}"))?;
    let mut applied = false;
    for unit in &plan.units {
        let answer = store.execute(unit).await.map_err(|f| {
            anyhow::anyhow!(
                "slot {} ({}): {} after {} attempts",
                f.slot,
                f.kind.as_str(),
                f.message,
                f.attempts
            )
        })?;
        for op in answer.entities.iter().flatten() {
            if let Some(error) = &op.error {
                anyhow::bail!("the unit rejected the change: {error}");
            }
            applied |= op.applied;
        }
    }
    Ok(applied)
}
