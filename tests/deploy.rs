//! The deployment files (docker-compose.yml, the Helm chart, the alert rules and the dashboard)
//! agree with the code: every metric they query is one the worker exports, the Redis ACL they
//! give the worker is the one `src/store/acl.rs` defines, and the configs they ship are valid.
//! The tools-based checks (helm, promtool, docker-compose, kubernetes schemas) are in
//! `scripts/validate-deploy.sh`.

use std::collections::BTreeSet;
use std::path::Path;

use fds_worker::config::Config;
use fds_worker::metrics::{
    BlacklistLabels, ClusterMetrics, ErrorLabels, Metrics, NodeLabel, NodeRoleLabels, OutcomeLabel,
    PartitionLabels, PublishFailureLabels, SlotStateLabel, TopicLabel, TopicReasonLabels,
};
use fds_worker::store::acl::worker_acl_rule;
use prometheus_client::registry::Registry;

const CHART_FILES: &str = "helm/fds-worker/files";

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

/// Every sample name the worker exposes: every family gets one child (families without
/// children are not printed), then the names come from the `# TYPE` lines, expanded by type the
/// way Prometheus names samples. The destructuring is exhaustive on purpose: a new metric does
/// not compile here until it is given a child, and then needs a dashboard panel.
fn exported_sample_names() -> BTreeSet<String> {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let Metrics {
        events_consumed,
        records_redelivered,
        events_enriched,
        verdicts_applied,
        events_dead_lettered,
        late_events,
        velocity_breaches,
        blacklist_hits,
        blacklist_adds,
        blacklist_removes,
        redis_units_sent,
        redis_units_retried,
        redis_units_failed,
        publish_failures,
        batch_duration,
        event_to_enriched,
        inflight_batches,
        paused,
        assigned_partitions,
        ready,
        consumer_lag,
        cluster,
        transactions,
        transaction_duration,
        schema_registry_requests,
        schema_registry_unavailable,
        dead_lettered_sum: _,
    } = &metrics;
    let topic = TopicLabel {
        topic: "transactions".into(),
    };
    let blacklist = BlacklistLabels {
        kind: "user".into(),
        level: "FRAUD".into(),
    };
    let error = ErrorLabels {
        kind: "connection".into(),
        node: "10.0.0.1:6379".into(),
    };
    let node = NodeLabel {
        node: "10.0.0.1:6379".into(),
    };
    events_consumed.get_or_create(&topic).inc();
    records_redelivered.get_or_create(&topic).inc();
    events_enriched.get_or_create(&topic).inc();
    verdicts_applied.get_or_create(&topic).inc();
    events_dead_lettered
        .get_or_create(&TopicReasonLabels {
            topic: "transactions".into(),
            reason: "poison".into(),
        })
        .inc();
    late_events.inc();
    velocity_breaches.inc();
    blacklist_hits.get_or_create(&blacklist).inc();
    blacklist_adds.get_or_create(&blacklist).inc();
    blacklist_removes.get_or_create(&blacklist).inc();
    redis_units_sent.inc();
    redis_units_retried.get_or_create(&error).inc();
    redis_units_failed.get_or_create(&error).inc();
    publish_failures
        .get_or_create(&PublishFailureLabels {
            topic: "transactions-enriched".into(),
            kind: "permanent".into(),
            error: "message_size_too_large".into(),
            decision: "gave_up".into(),
        })
        .inc();
    batch_duration.observe(0.01);
    event_to_enriched.observe(0.01);
    transactions
        .get_or_create(&OutcomeLabel {
            outcome: "committed".into(),
        })
        .inc();
    transaction_duration.observe(0.01);
    schema_registry_requests
        .get_or_create(&OutcomeLabel {
            outcome: "ok".into(),
        })
        .inc();
    schema_registry_unavailable.set(0);
    inflight_batches.set(1);
    paused.set(0);
    assigned_partitions.set(6);
    ready.set(1);
    consumer_lag
        .get_or_create(&PartitionLabels {
            topic: "transactions".into(),
            partition: 0,
        })
        .set(3);
    let ClusterMetrics {
        state,
        slots,
        slot_coverage_ratio,
        known_nodes,
        node_up,
        node_role,
        used_memory,
        maxmemory,
        connected_clients,
        keyspace_hits,
        keyspace_misses,
        evicted_keys,
    } = cluster;
    state.set(1);
    slots
        .get_or_create(&SlotStateLabel { state: "ok".into() })
        .set(16384);
    slot_coverage_ratio.set(1.0);
    known_nodes.set(6);
    node_up.get_or_create(&node).set(1);
    node_role
        .get_or_create(&NodeRoleLabels {
            node: node.node.clone(),
            role: "master".into(),
        })
        .set(1);
    used_memory.get_or_create(&node).set(1);
    maxmemory.get_or_create(&node).set(2);
    connected_clients.get_or_create(&node).set(3);
    keyspace_hits.get_or_create(&node).inc();
    keyspace_misses.get_or_create(&node).inc();
    evicted_keys.get_or_create(&node).inc();

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap();
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    // Every sample line's name is one of them (the expansion above is how the encoder names them).
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line.split(['{', ' ']).next().unwrap();
        assert!(
            names.contains(name),
            "sample {name} not derived from a # TYPE line:\n{text}"
        );
    }
    names
}

/// `fds_…` identifiers in a text (metric names; `fds-worker` with a hyphen is not one).
fn fds_identifiers(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut found = BTreeSet::new();
    let mut i = 0;
    while let Some(at) = text[i..].find("fds_") {
        let start = i + at;
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        if !preceded {
            found.insert(text[start..end].to_owned());
        }
        i = end;
    }
    found
}

#[test]
fn alert_rules_and_dashboard_query_only_exported_metrics() {
    let exported = exported_sample_names();
    assert!(
        exported.contains("fds_events_consumed_total")
            && exported.contains("fds_batch_duration_seconds_bucket")
            && exported.contains("fds_redis_used_memory_bytes"),
        "the registry's names are not what this test expects: {exported:?}"
    );
    for file in ["alerts.yml", "alerts_test.yml", "dashboard.json"] {
        let used = fds_identifiers(&read(&format!("{CHART_FILES}/{file}")));
        assert!(used.len() >= 5, "{file} uses only {used:?}");
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics the worker does not export: {unknown:?}\nexported: {exported:?}"
        );
    }
}

/// The dashboard shows every metric the worker exports (a new metric needs a panel).
#[test]
fn dashboard_shows_every_exported_metric() {
    let used = fds_identifiers(&read(&format!("{CHART_FILES}/dashboard.json")));
    let families: BTreeSet<String> = exported_sample_names()
        .into_iter()
        .filter(|n| !n.ends_with("_sum") && !n.ends_with("_count"))
        .collect();
    let missing: Vec<_> = families.difference(&used).collect();
    assert!(missing.is_empty(), "no dashboard panel for {missing:?}");
}

/// The seed's alert table is covered: cluster down, slots fail, known nodes < 6, memory > 80 %,
/// plus dead letters, consumer lag, paused and not ready.
#[test]
fn alert_rules_cover_the_seed_table_and_the_worker() {
    let rules = read(&format!("{CHART_FILES}/alerts.yml"));
    for needle in [
        "min(fds_redis_cluster_state) == 0",
        "max(fds_redis_cluster_slots{state=\"fail\"}) > 0",
        "max(fds_redis_known_nodes) < 6",
        "fds_redis_maxmemory_bytes > 0) > 0.8",
        "fds_events_dead_lettered_total",
        "fds_consumer_lag",
        "fds_paused == 1",
        "fds_ready == 0",
    ] {
        assert!(
            rules.contains(needle),
            "alerts.yml has no rule with `{needle}`"
        );
    }
}

/// The quoted value after `key` on its line, e.g. `workerAcl: "…"`.
fn quoted_value_after(text: &str, key: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(key))
        .unwrap_or_else(|| panic!("no line starting with {key}"));
    let value = line.split_once('"').expect("a quoted value").1;
    value.rsplit_once('"').expect("closing quote").0.to_owned()
}

#[test]
fn deployments_grant_the_worker_exactly_the_acl_of_the_code() {
    let rule = worker_acl_rule("U", "P");
    let expected = rule.strip_prefix("U on >P ").expect("rule prefix");
    let chart = quoted_value_after(&read("helm/fds-worker/values.yaml"), "workerAcl:");
    assert_eq!(
        chart, expected,
        "helm/fds-worker/values.yaml redisCluster.workerAcl"
    );
    let compose = quoted_value_after(&read("docker-compose.yml"), "REDIS_WORKER_ACL:");
    assert_eq!(compose, expected, "docker-compose.yml REDIS_WORKER_ACL");
}

#[test]
fn chart_default_config_is_the_repository_config() {
    assert_eq!(
        read(&format!("{CHART_FILES}/fds-worker.toml")),
        read("config/fds-worker.toml"),
        "helm/fds-worker/files/fds-worker.toml must be a symlink to config/fds-worker.toml"
    );
}

#[test]
fn compose_worker_config_is_valid_and_points_at_the_stack() {
    // The password comes from the compose environment (FDS_REDIS__PASSWORD).
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/compose/fds-worker.toml");
    let config: Config = Config::figment(Some(&path))
        .merge(("redis.password", "stand-in"))
        .extract()
        .unwrap();
    config.validate().unwrap();
    assert_eq!(config.kafka.brokers, "kafka:9092");
    assert_eq!(config.redis.nodes.len(), 6);
    assert_eq!(config.redis.username.as_deref(), Some("fds-worker"));
    assert_eq!(config.metrics.listen.to_string(), "0.0.0.0:9464");
    let compose = read("docker-compose.yml");
    for node in &config.redis.nodes {
        let service = node
            .trim_start_matches("redis://")
            .split(':')
            .next()
            .unwrap();
        assert!(
            compose.contains(&format!("\n  {service}:\n")),
            "{node} is not a service of docker-compose.yml"
        );
    }
}
