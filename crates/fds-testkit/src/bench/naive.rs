//! The naive baseline: the records of a throughput run applied the way a team without slot
//! units writes it. Per event, one command at a time: per velocity counter the worker would
//! update, `INCR` (`INCRBY` for a sum, `PFADD` for a distinct tile) + `EXPIRE`; per blacklist
//! lookup, `GET`; per verdict, `SET … EXAT` or `DEL`. Through redis-rs's async cluster client
//! (one multiplexed connection per node, as the worker's), with [`IN_FLIGHT`] events at once.
//! No grouping by slot, no apply-once marks, no Lua — so not exact under redelivery: a record
//! read twice, or a command re-sent after a lost reply, counts twice. It also does less than
//! the worker: no read of the window's tiles (the counter's reply is the tile's count only),
//! no breach rule, no merge of blacklist entries, no enrichment record published.
//!
//! The keys are the worker's: each record is decoded by the worker's [`decode`] and planned by
//! its [`Planner`] as a batch of one; every tile the plan writes becomes one counter, named by
//! [`tile_counter`] (the feature hash's key and the tile, as the ground truth names it), and
//! every lookup is a `GET` of the entity's blacklist key. The records are read from the
//! throughput run's topics with a plain consumer (assigned from the start, no group).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use futures::{StreamExt as _, TryStreamExt as _};
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use redis::Value;
use redis::cluster_async::ClusterConnection;

use crate::demo::LocalStack;
use fds_worker::config::Config;
use fds_worker::generate::tile_counter;
use fds_worker::pipeline::{
    Decoder, decode, decoder_from_config, plan_settings, store_settings, unix_ms,
};
use fds_worker::plan::{BatchPlan, FeatureWrite, Planner};
use fds_worker::source::SourceMessage;
use fds_worker::source::range;
use fds_worker::store::connect_cluster;

/// Events in flight at once (each one's commands sent one after the other).
pub const IN_FLIGHT: usize = 256;

/// What the naive run measured.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// Events applied (transactions + verdicts).
    pub events: u64,
    /// From the first record received to the last event's last reply.
    pub seconds: f64,
    /// Commands the client sent (each awaited before the event's next).
    pub commands: u64,
}

/// Reads the `events` records of `config`'s transaction and verdict topics from the start and
/// applies them the naive way (see the module docs); fails after `timeout`.
pub async fn run(
    stack: &LocalStack,
    config: &Config,
    events: usize,
    mock: bool,
    timeout: Duration,
) -> anyhow::Result<Measured> {
    let mut client = super::reader_config(stack);
    if mock {
        // As for the worker (see `process.rs`): the mock holds an empty fetch for its MaxWait.
        client.set("fetch.wait.max.ms", "1");
    }
    let consumer: StreamConsumer = client.create()?;
    let mut assignment = TopicPartitionList::new();
    let topics = std::iter::once(&config.kafka.transactions_topic)
        .chain(&config.kafka.verdict_topics)
        .collect::<Vec<_>>();
    for topic in &topics {
        for partition in range::partitions(&consumer, topic)? {
            assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
        }
    }
    consumer.assign(&assignment)?;
    let interned: Vec<Arc<str>> = topics.iter().map(|t| Arc::from(t.as_str())).collect();
    let decoder = decoder_from_config(config).map_err(anyhow::Error::msg)?;
    let planner = Planner::new(plan_settings(config, ""));
    let connection = connect_cluster(&store_settings(&config.redis))
        .await
        .map_err(|e| anyhow::anyhow!("connecting to the Redis Cluster: {e}"))?;

    let applying = async {
        let mut records = consumer.stream().take(events);
        let Some(first) = records.next().await else {
            bail!("no record in {topics:?}");
        };
        let started = Instant::now();
        let commands = futures::stream::iter([first])
            .chain(records)
            .map(|record| {
                let record = record.context("consuming")?;
                let topic = interned
                    .iter()
                    .find(|t| &***t == record.topic())
                    .cloned()
                    .unwrap_or_else(|| Arc::from(record.topic()));
                let message = SourceMessage::from_borrowed(&record, topic);
                let plan = plan_one(&decoder, &planner, &message)?;
                Ok(apply(connection.clone(), plan))
            })
            .try_buffer_unordered(IN_FLIGHT)
            .try_fold(0u64, |sum, n| futures::future::ready(Ok(sum + n)))
            .await?;
        Ok(Measured {
            events: events as u64,
            seconds: started.elapsed().as_secs_f64().max(0.001),
            commands,
        })
    };
    tokio::time::timeout(timeout, applying)
        .await
        .with_context(|| format!("the naive run did not finish within {timeout:?}"))?
}

/// The worker's plan of one record, as a batch of one.
fn plan_one(
    decoder: &Decoder,
    planner: &Planner,
    message: &SourceMessage,
) -> anyhow::Result<BatchPlan> {
    let now_ms = unix_ms(SystemTime::now());
    let event = decode(decoder, message, now_ms).map_err(|poison| {
        anyhow::anyhow!(
            "record {}:{}@{} is poison: {}",
            message.topic,
            message.partition,
            message.offset,
            poison.message
        )
    })?;
    Ok(planner.plan(&[event], now_ms))
}

/// The naive commands of one planned event, in the order they are sent.
fn commands(plan: &BatchPlan, now_s: i64) -> Vec<redis::Cmd> {
    let mut commands = Vec::new();
    for unit in &plan.units {
        for entity in &unit.entities {
            let blacklist = &unit.keys[entity.blacklist_key as usize];
            for op in &entity.ops {
                for feature in &op.features {
                    let hash = &unit.keys[feature.key as usize];
                    let (write, key) = match &feature.write {
                        FeatureWrite::Count => {
                            let key = tile_counter(hash, feature.tile);
                            (redis::cmd("INCR").arg(&key).clone(), key)
                        }
                        FeatureWrite::Sum { amount } => {
                            let key = tile_counter(hash, feature.tile);
                            (redis::cmd("INCRBY").arg(&key).arg(*amount).clone(), key)
                        }
                        FeatureWrite::Distinct { member } => (
                            redis::cmd("PFADD").arg(hash).arg(member).clone(),
                            hash.clone(),
                        ),
                    };
                    commands.push(write);
                    let ttl = (feature.expire_at_s - now_s).max(1);
                    commands.push(redis::cmd("EXPIRE").arg(key).arg(ttl).clone());
                }
                if let Some(add) = &op.add {
                    let value = serde_json::json!({
                        "threat_level": add.level.as_str(),
                        "reason": add.reason,
                        "source": add.source,
                        "added_at": add.added_at_ms,
                    })
                    .to_string();
                    let mut set = redis::cmd("SET");
                    set.arg(blacklist).arg(value);
                    if add.expire_at_s > 0 {
                        set.arg("EXAT").arg(add.expire_at_s);
                    }
                    commands.push(set);
                }
                if op.remove_before_ms.is_some() {
                    commands.push(redis::cmd("DEL").arg(blacklist).clone());
                }
                if op.lookup {
                    commands.push(redis::cmd("GET").arg(blacklist).clone());
                }
            }
        }
    }
    commands
}

/// Sends one event's commands one after the other; returns how many.
async fn apply(mut connection: ClusterConnection, plan: BatchPlan) -> anyhow::Result<u64> {
    let commands = commands(&plan, unix_ms(SystemTime::now()).div_euclid(1000));
    for command in &commands {
        command
            .query_async::<Value>(&mut connection)
            .await
            .context("a naive command")?;
    }
    Ok(commands.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fds_worker::event::Transaction;
    use fds_worker::plan::{EventBody, PlanSettings, PlannedEvent, SourceRef};

    #[test]
    fn a_transaction_is_incr_and_expire_per_counter_and_get_per_lookup() {
        let now_ms = 1_764_000_000_000;
        let tx = Transaction {
            event_id: "tx-1".into(),
            user_id: "42".into(),
            amount_minor: 100,
            currency: "EUR".into(),
            card_bin: Some("400001".into()),
            ip: Some("10.0.0.1".into()),
            email: Some("a@example.com".into()),
            device_id: None,
            merchant_id: None,
            event_time_ms: now_ms,
        };
        let event = PlannedEvent {
            source: SourceRef {
                topic: Arc::from("transactions"),
                partition: 0,
                offset: 1,
            },
            body: EventBody::Transaction(tx),
            redrive: None,
        };
        let plan = Planner::new(PlanSettings::seed_defaults()).plan(&[event], now_ms);
        let names: Vec<String> = commands(&plan, now_ms / 1000)
            .iter()
            .map(|c| {
                c.args_iter()
                    .take(2)
                    .map(|a| match a {
                        redis::Arg::Simple(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                        _ => "<cursor>".into(),
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        // User, card BIN and IP have three count features each (no device); all four present
        // kinds are looked up.
        assert_eq!(names.iter().filter(|n| n.starts_with("INCR ")).count(), 9);
        assert_eq!(names.iter().filter(|n| n.starts_with("EXPIRE ")).count(), 9);
        assert_eq!(names.iter().filter(|n| n.starts_with("GET ")).count(), 4);
        assert_eq!(names.len(), 22);
        let tile = now_ms.div_euclid(5_000);
        assert!(
            names.contains(&format!("INCR ft:{{u:42}}:user_tx_1m {tile}")),
            "{names:?}"
        );
        assert!(names.contains(&"GET bl:{email:a@example.com}".to_owned()));
    }
}
