//! `[kafka]`: brokers, topics, consumer-group timing, security and librdkafka pass-through.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check::Check;
use super::de;
use super::kafka_delivery::{Delivery, TransactionsConfig};
use super::kafka_group::GroupProtocol;
use super::kafka_security::KafkaSecurity;

/// Kafka connection, topics and consumer-group settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port`, comma-separated (librdkafka `bootstrap.servers`); a TOML
    /// list is accepted and joined. Default: `"127.0.0.1:9092"`.
    #[serde(deserialize_with = "de::comma_joined")]
    pub brokers: String,
    /// Consumer group id; every worker replica uses the same one to share partitions.
    /// Default: `"fds-worker"`.
    #[serde(deserialize_with = "de::string")]
    pub group_id: String,
    /// Topic of `Transaction` events. Default: `"transactions"`.
    #[serde(deserialize_with = "de::string")]
    pub transactions_topic: String,
    /// Topics of `FraudVerdict` events. Only events from these topics may add to or remove from
    /// blacklists; an empty list leaves blacklists read-only. Default: `["fraud-verdicts"]`.
    #[serde(deserialize_with = "de::string_list")]
    pub verdict_topics: Vec<String>,
    /// Topic the worker publishes one `Enrichment` per transaction to.
    /// Default: `"transactions-enriched"`.
    #[serde(deserialize_with = "de::string")]
    pub enrichment_topic: String,
    /// Suffix appended to a source topic to name its dead-letter topic
    /// (`transactions` → `transactions.dlq`). Default: `".dlq"`.
    #[serde(deserialize_with = "de::string")]
    pub dlq_suffix: String,
    /// Consumer group protocol (librdkafka `group.protocol`): `"classic"`, or `"consumer"`
    /// (KIP-848, needs Kafka >= 4.0 brokers), where the broker assigns partitions and its
    /// `group.consumer.*` settings decide the session timeout and heartbeats — then
    /// `session_timeout` is not used, and `consumer_options` may not set
    /// `partition.assignment.strategy`, `session.timeout.ms`, `heartbeat.interval.ms` or
    /// `group.protocol.type`. Default: `"classic"`.
    pub group_protocol: GroupProtocol,
    /// Consumer group session timeout (librdkafka `session.timeout.ms`): a worker silent this
    /// long loses its partitions; the worker heartbeats every third of it (at most 3 s, see
    /// [`heartbeat_interval`](Self::heartbeat_interval)). Classic protocol only (with
    /// `"consumer"` the broker's `group.consumer.session.timeout.ms` decides). Default: `10s`.
    #[serde(with = "de::duration")]
    pub session_timeout: Duration,
    /// Longest time between polls before librdkafka leaves the group
    /// (`max.poll.interval.ms`); with the classic protocol at least `session_timeout`. The
    /// worker keeps polling while paused, so only a stuck worker hits it. Default: `300s`.
    #[serde(with = "de::duration")]
    pub max_poll_interval: Duration,
    /// How long the worker keeps trying to publish one record (enrichment or dead letter)
    /// while the producer reports retryable errors (queue full, brokers unreachable, leader
    /// elections, too few in-sync replicas, timeouts), with exponential backoff and jitter
    /// between attempts. Permanent errors (record too large, topic not authorized, topic gone,
    /// invalid record) end the attempts at once. Then an enrichment record's source record is
    /// dead-lettered (`publish_failed`), and a dead letter that cannot be published stops the
    /// worker with an error naming the topic. It is also librdkafka's `message.timeout.ms`
    /// (unless `producer_options` sets that), so a single attempt does not outlast it.
    /// Default: `5m`.
    #[serde(with = "de::duration")]
    pub produce_retry_budget: Duration,
    /// How output and offsets reach Kafka: `"exactly_once"` (one Kafka transaction per
    /// `transactions.interval`, see [`Delivery`]) or `"at_least_once"`. Default:
    /// `"exactly_once"`.
    pub delivery: Delivery,
    /// The transactional producer of exactly-once delivery. Default: see
    /// [`TransactionsConfig`].
    pub transactions: TransactionsConfig,
    /// Authentication and encryption. Default: plaintext, no credentials.
    pub security: KafkaSecurity,
    /// Raw librdkafka consumer options (`"fetch.min.bytes" = "1"`), applied after the worker's
    /// own. Keys that have a setting above, or that offset safety depends on
    /// (see [`MANAGED_KEYS`]), are rejected. Default: empty.
    #[serde(deserialize_with = "de::string_map")]
    pub consumer_options: BTreeMap<String, String>,
    /// Raw librdkafka producer options (`"linger.ms" = "5"`), same rules as `consumer_options`.
    /// Default: empty.
    #[serde(deserialize_with = "de::string_map")]
    pub producer_options: BTreeMap<String, String>,
}

/// librdkafka keys the worker sets itself; the pass-through maps may not override them.
pub const MANAGED_KEYS: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "group.protocol",
    "session.timeout.ms",
    "max.poll.interval.ms",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.idempotence",
    "isolation.level",
    "transactional.id",
    "transaction.timeout.ms",
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.key.password",
];

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: default_brokers(),
            group_id: default_group_id(),
            transactions_topic: default_transactions_topic(),
            verdict_topics: default_verdict_topics(),
            enrichment_topic: default_enrichment_topic(),
            dlq_suffix: default_dlq_suffix(),
            group_protocol: GroupProtocol::default(),
            session_timeout: default_session_timeout(),
            max_poll_interval: default_max_poll_interval(),
            produce_retry_budget: default_produce_retry_budget(),
            delivery: Delivery::default(),
            transactions: TransactionsConfig::default(),
            security: KafkaSecurity::default(),
            consumer_options: BTreeMap::new(),
            producer_options: BTreeMap::new(),
        }
    }
}

fn default_brokers() -> String {
    "127.0.0.1:9092".into()
}
fn default_group_id() -> String {
    "fds-worker".into()
}
fn default_transactions_topic() -> String {
    "transactions".into()
}
fn default_verdict_topics() -> Vec<String> {
    vec!["fraud-verdicts".into()]
}
fn default_enrichment_topic() -> String {
    "transactions-enriched".into()
}
fn default_dlq_suffix() -> String {
    ".dlq".into()
}
fn default_session_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_poll_interval() -> Duration {
    Duration::from_secs(300)
}
fn default_produce_retry_budget() -> Duration {
    Duration::from_secs(300)
}

/// librdkafka's largest `message.timeout.ms` (a 32-bit count of milliseconds).
const MAX_MESSAGE_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

impl KafkaConfig {
    /// The dead-letter topic for events read from `source` (`transactions.dlq`).
    pub fn dlq_topic(&self, source: &str) -> String {
        format!("{source}{}", self.dlq_suffix)
    }

    /// Whether events from `topic` may change blacklists.
    pub fn is_verdict_topic(&self, topic: &str) -> bool {
        self.verdict_topics.iter().any(|t| t == topic)
    }

    /// Every topic the worker consumes: transactions first, then the verdict topics.
    pub fn source_topics(&self) -> Vec<&str> {
        std::iter::once(self.transactions_topic.as_str())
            .chain(self.verdict_topics.iter().map(String::as_str))
            .collect()
    }

    /// librdkafka options shared by consumers and producers: brokers and security.
    /// Contains exposed secrets: pass it to `ClientConfig::set`, never log it.
    pub fn common_options(&self) -> Vec<(String, String)> {
        let mut out = vec![("bootstrap.servers".to_owned(), self.brokers.clone())];
        out.extend(self.security.librdkafka_options());
        out
    }

    /// librdkafka consumer options: [`common_options`](Self::common_options), group protocol
    /// and timing, then `consumer_options`. Offset handling (`enable.auto.offset.store` …) is
    /// the source's. With the `consumer` group protocol no [`CLASSIC_ONLY_KEYS`] are set
    /// (librdkafka would refuse to create the consumer).
    ///
    /// [`CLASSIC_ONLY_KEYS`]: super::CLASSIC_ONLY_KEYS
    pub fn consumer_client_options(&self) -> Vec<(String, String)> {
        let mut out = self.common_options();
        out.push(("group.id".into(), self.group_id.clone()));
        out.push((
            "group.protocol".into(),
            self.group_protocol.as_librdkafka().to_owned(),
        ));
        if self.group_protocol == GroupProtocol::Classic {
            out.push((
                "session.timeout.ms".into(),
                self.session_timeout.as_millis().to_string(),
            ));
            out.push((
                "heartbeat.interval.ms".into(),
                self.heartbeat_interval().as_millis().to_string(),
            ));
        }
        out.push((
            "max.poll.interval.ms".into(),
            self.max_poll_interval.as_millis().to_string(),
        ));
        out.extend(self.consumer_options.clone());
        out
    }

    /// The classic protocol's heartbeat interval (librdkafka `heartbeat.interval.ms`): a third
    /// of `session_timeout`, at most librdkafka's default of 3 s, at least 100 ms. Kafka's rule
    /// of thumb; librdkafka's fixed 3 s with a 3 s session let every session expire (the
    /// coordinator saw no heartbeat in time, the group rebalanced every few seconds).
    /// `consumer_options."heartbeat.interval.ms"` overrides it.
    pub fn heartbeat_interval(&self) -> Duration {
        (self.session_timeout / 3).clamp(Duration::from_millis(100), Duration::from_secs(3))
    }

    /// librdkafka producer options: [`common_options`](Self::common_options), the delivery
    /// timeout (`message.timeout.ms` = `produce_retry_budget`), then `producer_options`.
    ///
    /// With exactly-once delivery the delivery timeout is the transaction's
    /// (`transactions.timeout`: librdkafka refuses a longer one); the retry budget then
    /// bounds the consecutive failed transactions instead.
    pub fn producer_client_options(&self) -> Vec<(String, String)> {
        let mut out = self.common_options();
        let delivery_timeout = match self.delivery {
            Delivery::AtLeastOnce => self.produce_retry_budget,
            Delivery::ExactlyOnce => self.transactions.timeout.min(self.produce_retry_budget),
        };
        out.push((
            "message.timeout.ms".into(),
            delivery_timeout.as_millis().to_string(),
        ));
        out.extend(self.producer_options.clone());
        out
    }

    pub(crate) fn validate(&self, check: &mut Check) {
        check.not_blank("kafka.brokers", &self.brokers);
        for broker in self.brokers.split(',').map(str::trim) {
            if !broker.is_empty() && !is_host_port(broker) {
                check.fail(
                    "kafka.brokers",
                    format!("`{broker}` is not host:port with a port in 1..=65535"),
                );
            }
        }
        check.not_blank("kafka.group_id", &self.group_id);
        check_topic(check, "kafka.transactions_topic", &self.transactions_topic);
        check_topic(check, "kafka.enrichment_topic", &self.enrichment_topic);
        for (i, topic) in self.verdict_topics.iter().enumerate() {
            let key = format!("kafka.verdict_topics[{i}]");
            check_topic(check, &key, topic);
            check.ensure(
                topic != &self.transactions_topic,
                key,
                "must differ from `kafka.transactions_topic`",
            );
        }
        // The worker would consume its own output.
        check.ensure(
            !self
                .source_topics()
                .contains(&self.enrichment_topic.as_str()),
            "kafka.enrichment_topic",
            "must differ from the transactions and verdict topics",
        );
        // An empty suffix would dead-letter events into the topic they came from.
        check.not_blank("kafka.dlq_suffix", &self.dlq_suffix);
        if !self.dlq_suffix.is_empty() {
            check_topic(
                check,
                "kafka.dlq_suffix",
                &self.dlq_topic(&self.transactions_topic),
            );
        }
        check.positive("kafka.session_timeout", self.session_timeout);
        // librdkafka refuses to start otherwise; with the consumer protocol the session
        // timeout is the broker's, and librdkafka does not compare them.
        check.ensure(
            self.group_protocol != GroupProtocol::Classic
                || self.max_poll_interval >= self.session_timeout,
            "kafka.max_poll_interval",
            "must be at least `kafka.session_timeout`",
        );
        check.positive("kafka.produce_retry_budget", self.produce_retry_budget);
        check.ensure(
            self.produce_retry_budget <= MAX_MESSAGE_TIMEOUT,
            "kafka.produce_retry_budget",
            "must be at most 24d (it is also librdkafka's message.timeout.ms)",
        );
        for (name, map, consumer) in [
            ("consumer_options", &self.consumer_options, true),
            ("producer_options", &self.producer_options, false),
        ] {
            for key in map.keys() {
                // Before MANAGED_KEYS: `session.timeout.ms` is managed too, but its dedicated
                // setting is no remedy under the consumer protocol.
                let reason = if consumer && !self.group_protocol.allows_client_key(key) {
                    format!(
                        "is not allowed with `kafka.group_protocol` = \"{}\" (KIP-848: the \
                         broker's group.consumer.* settings decide it)",
                        self.group_protocol.as_librdkafka()
                    )
                } else if MANAGED_KEYS.contains(&key.as_str()) {
                    "is set by the worker (use the dedicated setting, if any)".to_owned()
                } else {
                    continue;
                };
                check.fail(format!("kafka.{name}.\"{key}\""), reason);
            }
        }
        if self.delivery == Delivery::ExactlyOnce {
            let message_timeout = self.producer_options.get("message.timeout.ms");
            self.transactions
                .validate(check, message_timeout.map(String::as_str));
        }
        self.security.validate(check);
    }
}

/// `host:port`, `[v6]:port`, optionally with a `scheme://` prefix librdkafka also accepts.
fn is_host_port(s: &str) -> bool {
    let s = s.split_once("://").map_or(s, |(_, rest)| rest);
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

/// Kafka's topic name rule: 1–249 of `[a-zA-Z0-9._-]`, and not `.` or `..`.
fn check_topic(check: &mut Check, key: &str, topic: &str) {
    let valid = !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    check.ensure(
        valid,
        key,
        format!("`{topic}` is not a valid topic name (1-249 of a-z A-Z 0-9 . _ -)"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_accepts_names_ipv6_and_scheme_prefixes() {
        assert!(is_host_port("127.0.0.1:9092"));
        assert!(is_host_port("kafka-0.kafka:9092"));
        assert!(is_host_port("[::1]:9092"));
        assert!(is_host_port("PLAINTEXT://broker:9092"));
        assert!(!is_host_port("broker"));
        assert!(!is_host_port(":9092"));
        assert!(!is_host_port("broker:0"));
        assert!(!is_host_port("broker:99999"));
    }

    #[test]
    fn dlq_topic_appends_the_suffix() {
        assert_eq!(
            KafkaConfig::default().dlq_topic("transactions"),
            "transactions.dlq"
        );
    }

    #[test]
    fn consumer_options_carry_group_timing_and_pass_through() {
        let mut k = KafkaConfig::default();
        k.consumer_options
            .insert("fetch.min.bytes".into(), "1".into());
        let opts = k.consumer_client_options();
        let get = |key: &str| opts.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        assert_eq!(get("bootstrap.servers"), Some("127.0.0.1:9092"));
        assert_eq!(get("session.timeout.ms"), Some("10000"));
        assert_eq!(get("max.poll.interval.ms"), Some("300000"));
        assert_eq!(get("security.protocol"), Some("plaintext"));
        assert_eq!(get("fetch.min.bytes"), Some("1"));
        assert_eq!(get("group.protocol"), Some("classic"));
    }

    #[test]
    fn consumer_protocol_options_leave_the_session_to_the_broker() {
        let k = KafkaConfig {
            group_protocol: GroupProtocol::Consumer,
            ..KafkaConfig::default()
        };
        let opts = k.consumer_client_options();
        let get = |key: &str| opts.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        assert_eq!(get("group.protocol"), Some("consumer"));
        assert_eq!(get("session.timeout.ms"), None);
        assert_eq!(get("max.poll.interval.ms"), Some("300000"));
    }

    #[test]
    fn producer_options_bound_a_delivery_by_the_retry_budget_unless_overridden() {
        let mut k = KafkaConfig {
            delivery: Delivery::AtLeastOnce,
            ..KafkaConfig::default()
        };
        let get = |opts: &[(String, String)], key: &str| {
            opts.iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let opts = k.producer_client_options();
        assert_eq!(get(&opts, "message.timeout.ms").as_deref(), Some("300000"));
        k.producer_options
            .insert("message.timeout.ms".into(), "1000".into());
        let opts = k.producer_client_options();
        assert_eq!(get(&opts, "message.timeout.ms").as_deref(), Some("1000"));
        // Exactly once: one delivery lasts at most one transaction.
        k.delivery = Delivery::ExactlyOnce;
        k.producer_options.clear();
        let opts = k.producer_client_options();
        assert_eq!(get(&opts, "message.timeout.ms").as_deref(), Some("10000"));
    }
}
