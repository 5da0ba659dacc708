//! Configuration: every file in `config/` parses, `config/fds-worker.toml` equals the defaults,
//! invalid values fail naming the key and the reason, env overrides work, secrets stay hidden.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use fds_worker::config::{
    Aggregate, CLASSIC_ONLY_KEYS, Config, ConfigError, GroupProtocol, REDACTED, Secret,
};
use fds_worker::event::{EntityKind, ThreatLevel};

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The error `text` fails with; panics if it is accepted.
fn error_of(text: &str) -> ConfigError {
    match Config::from_toml_str(text) {
        Ok(config) => panic!("accepted invalid config:\n{text}\n→ {config:?}"),
        Err(e) => e,
    }
}

/// Asserts the error names `key` (as `` `key` ``) and mentions `reason`.
fn assert_names(err: &ConfigError, key: &str, reason: &str) {
    let message = err.to_string();
    assert!(
        message.contains(&format!("`{key}`")),
        "error does not name `{key}`: {message}"
    );
    assert!(
        message.contains(reason),
        "error does not say {reason:?}: {message}"
    );
}

#[test]
fn every_file_in_config_dir_parses_and_validates() {
    let mut seen = 0;
    for entry in std::fs::read_dir(manifest_dir().join("config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            if let Err(e) = Config::from_toml_str(&text) {
                panic!("{}: {e}", path.display());
            }
            seen += 1;
        }
    }
    assert!(seen >= 1, "no config files found");
}

#[test]
fn shipped_config_file_equals_the_built_in_defaults() {
    let text = std::fs::read_to_string(manifest_dir().join("config/fds-worker.toml")).unwrap();
    assert_eq!(Config::from_toml_str(&text).unwrap(), Config::default());
}

#[test]
fn defaults_match_the_documented_values() {
    let c = Config::default();
    assert_eq!(c.kafka.brokers, "127.0.0.1:9092");
    assert_eq!(c.kafka.dlq_topic("transactions"), "transactions.dlq");
    assert!(c.kafka.is_verdict_topic("fraud-verdicts"));
    assert!(!c.kafka.is_verdict_topic("transactions"));
    assert_eq!(c.redis.retry.budget, Duration::from_secs(12));
    assert_eq!(c.features.len(), 12, "4 entities x 3 windows");
    let user: Vec<_> = c
        .features
        .iter()
        .filter(|f| f.entity == EntityKind::User)
        .map(|f| {
            (
                f.name.as_str(),
                f.aggregate,
                f.window.as_secs(),
                f.tile.as_secs(),
                f.threshold,
            )
        })
        .collect();
    assert_eq!(
        user,
        vec![
            ("user_tx_1m", Aggregate::Count, 60, 5, Some(5)),
            ("user_tx_1h", Aggregate::Count, 3600, 60, None),
            ("user_tx_24h", Aggregate::Count, 86_400, 3600, None),
        ]
    );
    assert_eq!(c.velocity.grace, Duration::from_secs(60));
    assert!(c.velocity.breach_blacklists(EntityKind::User));
    assert!(!c.velocity.breach_blacklists(EntityKind::Ip));
    assert_eq!(c.velocity.breach_blacklist.level, ThreatLevel::Temporary);
    assert_eq!(
        c.blacklist.ttl.for_level(ThreatLevel::Fraud),
        Some(Duration::from_secs(7 * 86_400))
    );
    assert_eq!(c.blacklist.ttl.for_level(ThreatLevel::Permanent), None);
}

#[test]
fn unknown_key_is_named_with_the_valid_ones() {
    let err = error_of("[kafka]\nbrokerz = \"b:9092\"\n");
    assert_names(&err, "kafka.brokerz", "unknown key");
    assert!(err.to_string().contains("brokers"), "{err}");
    assert_names(&error_of("[kafkaa]\n"), "kafkaa", "unknown key");
    assert_names(
        &error_of(&format!("{USER_MINUTE}limit = 3\n")),
        "features[0].limit",
        "unknown key",
    );
    assert_names(
        &error_of("[velocity]\nwindows = []\n"),
        "velocity.windows",
        "unknown key",
    );
}

#[test]
fn bad_duration_is_named_with_the_value() {
    let err = error_of("[kafka]\nsession_timeout = \"5 parsecs\"\n");
    assert_names(&err, "kafka.session_timeout", "5 parsecs");
    assert!(err.to_string().contains("duration"), "{err}");
}

#[test]
fn wrong_type_is_named() {
    assert_names(
        &error_of("[pipeline]\nbatch_size = \"many\"\n"),
        "pipeline.batch_size",
        "invalid type",
    );
    assert_names(
        &error_of("[redis]\nmax_inflight_units = -1\n"),
        "redis.max_inflight_units",
        "-1",
    );
}

/// A valid feature to start from.
const USER_MINUTE: &str =
    "[[features]]\nname = \"user_tx_1m\"\nentity = \"user\"\nwindow = \"1m\"\ntile = \"5s\"\n";

#[test]
fn zero_threshold_is_rejected_by_index() {
    let err = error_of(&format!(
        "{USER_MINUTE}threshold = 3\n\
         [[features]]\nname = \"user_tx_1h\"\nentity = \"user\"\nwindow = \"1h\"\n\
         tile = \"1m\"\nthreshold = 0\n"
    ));
    assert_names(&err, "features[1].threshold", "at least 1");
    assert_eq!(err.keys(), vec!["features[1].threshold"]);
}

#[test]
fn a_features_list_replaces_the_defaults() {
    let c = Config::from_toml_str(&format!("{USER_MINUTE}threshold = 3\n")).unwrap();
    assert_eq!(c.features.len(), 1);
    assert_eq!(c.features[0].aggregate, Aggregate::Count);
    assert_eq!(c.features[0].threshold, Some(3));
}

#[test]
fn windows_and_tiles_must_be_whole_seconds_and_the_window_a_multiple_of_the_tile() {
    let feature = |window: &str, tile: &str| {
        format!(
            "[[features]]\nname = \"f\"\nentity = \"ip\"\nwindow = \"{window}\"\ntile = \"{tile}\"\n"
        )
    };
    assert_names(
        &error_of(&feature("1500ms", "500ms")),
        "features[0].window",
        "whole number of seconds",
    );
    assert_names(
        &error_of(&feature("1m", "0s")),
        "features[0].tile",
        "longer than 0",
    );
    assert_names(
        &error_of(&feature("1m", "7s")),
        "features[0].window",
        "multiple of the tile (7s)",
    );
    assert_names(
        &error_of(&feature("1h", "1s")),
        "features[0].tile",
        "3600 tiles (at most 1440)",
    );
    assert_names(
        &error_of(&format!("{USER_MINUTE}{USER_MINUTE}")),
        "features[1].name",
        "used by another feature",
    );
    assert_names(
        &error_of(&feature("1m", "5s").replace("\"f\"", "\"User Tx\"")),
        "features[0].name",
        "a-z, 0-9 and _",
    );
}

#[test]
fn of_must_fit_the_aggregate() {
    let feature = |aggregate: &str, of: &str| {
        format!(
            "[[features]]\nname = \"f\"\nentity = \"device\"\naggregate = \"{aggregate}\"\n\
             window = \"1h\"\ntile = \"1m\"\n{of}"
        )
    };
    assert_names(
        &error_of(&feature("count", "of = \"ip\"\n")),
        "features[0].of",
        "remove `of`",
    );
    assert_names(
        &error_of(&feature("sum", "")),
        "features[0].of",
        "amount_minor",
    );
    assert_names(
        &error_of(&feature("sum", "of = \"ip\"\n")),
        "features[0].of",
        "amount_minor",
    );
    assert_names(
        &error_of(&feature("distinct", "")),
        "features[0].of",
        "needs `of`",
    );
    assert_names(
        &error_of(&feature("distinct", "of = \"amount_minor\"\n")),
        "features[0].of",
        "counts ids",
    );
    assert_names(
        &error_of(&feature("distinct", "of = \"device_id\"\n")),
        "features[0].of",
        "always 1",
    );
    assert_names(
        &error_of(&feature("median", "")),
        "features[0].aggregate",
        "unknown variant",
    );
    assert_names(
        &error_of(&feature("distinct", "of = \"phone\"\n")),
        "features[0].of",
        "unknown variant",
    );
    for (aggregate, of) in [("sum", "amount_minor"), ("distinct", "card_bin")] {
        let text = format!(
            "{}[velocity.breach_blacklist]\nenabled = false\n",
            feature(aggregate, &format!("of = \"{of}\"\n"))
        );
        let c = Config::from_toml_str(&text);
        assert!(c.is_ok(), "{aggregate} of {of}: {c:?}");
    }
}

#[test]
fn a_breach_entity_needs_a_feature_with_a_threshold() {
    assert_names(
        &error_of(&format!(
            "{USER_MINUTE}[velocity.breach_blacklist]\ndimensions = [\"user\"]\n"
        )),
        "velocity.breach_blacklist.dimensions[0]",
        "never breaches",
    );
}

#[test]
fn empty_redis_nodes_are_rejected() {
    assert_names(
        &error_of("[redis]\nnodes = []\n"),
        "redis.nodes",
        "at least one node",
    );
}

#[test]
fn bad_redis_urls_are_named_by_index() {
    assert_names(
        &error_of("[redis]\nnodes = [\"redis://a:7000\", \"127.0.0.1:7001\"]\n"),
        "redis.nodes[1]",
        "not a redis:// or rediss:// URL",
    );
    assert_names(
        &error_of("[redis]\nnodes = [\"redis://10.0.0.1\"]\n"),
        "redis.nodes[0]",
        "no port",
    );
    assert_names(
        &error_of("[redis]\nnodes = [\"rediss://10.0.0.1:7000\"]\n"),
        "redis.nodes[0]",
        "tls.enabled",
    );
}

#[test]
fn bad_enum_names_are_named_with_the_valid_ones() {
    let err = error_of("[log]\nformat = \"xml\"\n");
    assert_names(&err, "log.format", "unknown variant");
    assert!(err.to_string().contains("json"), "{err}");
    assert_names(
        &error_of("[kafka.security]\nprotocol = \"tls\"\n"),
        "kafka.security.protocol",
        "unknown variant",
    );
    assert_names(
        &error_of("[velocity.breach_blacklist]\nlevel = \"SEVERE\"\n"),
        "velocity.breach_blacklist.level",
        "STOLEN_CARD",
    );
    assert_names(
        &error_of("[velocity.breach_blacklist]\ndimensions = [\"user\", \"phone\"]\n"),
        "velocity.breach_blacklist.dimensions",
        "`phone`",
    );
    assert_names(
        &error_of(&USER_MINUTE.replace("\"user\"", "\"phone\"")),
        "features[0].entity",
        "`phone`",
    );
}

#[test]
fn group_protocol_takes_classic_or_consumer() {
    assert_eq!(
        Config::default().kafka.group_protocol,
        GroupProtocol::Classic
    );
    for (name, protocol) in [
        ("classic", GroupProtocol::Classic),
        ("consumer", GroupProtocol::Consumer),
    ] {
        let c = Config::from_toml_str(&format!("[kafka]\ngroup_protocol = \"{name}\"\n")).unwrap();
        assert_eq!(c.kafka.group_protocol, protocol);
    }
    let err = error_of("[kafka]\ngroup_protocol = \"kip848\"\n");
    assert_names(&err, "kafka.group_protocol", "unknown variant");
    assert!(err.to_string().contains("consumer"), "{err}");
}

#[test]
fn consumer_group_protocol_rejects_client_side_group_options_by_key() {
    for key in CLASSIC_ONLY_KEYS {
        let text = format!(
            "[kafka]\ngroup_protocol = \"consumer\"\n[kafka.consumer_options]\n\"{key}\" = \"1\"\n"
        );
        let err = error_of(&text);
        assert_names(
            &err,
            &format!("kafka.consumer_options.\"{key}\""),
            "group.consumer.*",
        );
        // One problem per key, not also "set by the worker".
        assert_eq!(err.keys().len(), 1, "{err}");
    }
    // The same options stay allowed with the classic protocol (session.timeout.ms has its
    // own setting there).
    let classic = Config::from_toml_str(
        "[kafka.consumer_options]\n\"partition.assignment.strategy\" = \"range\"\n\"heartbeat.interval.ms\" = \"1000\"\n",
    )
    .unwrap();
    assert_eq!(classic.kafka.group_protocol, GroupProtocol::Classic);
    assert_names(
        &error_of("[kafka.consumer_options]\n\"session.timeout.ms\" = \"1000\"\n"),
        "kafka.consumer_options.\"session.timeout.ms\"",
        "set by the worker",
    );
    // The producer is no group member: the rule is the consumer's only.
    Config::from_toml_str(
        "[kafka]\ngroup_protocol = \"consumer\"\n[kafka.producer_options]\n\"heartbeat.interval.ms\" = \"1000\"\n",
    )
    .unwrap();
    assert_names(
        &error_of("[kafka.consumer_options]\n\"group.protocol\" = \"consumer\"\n"),
        "kafka.consumer_options.\"group.protocol\"",
        "set by the worker",
    );
}

#[test]
fn consumer_group_protocol_leaves_the_session_timeout_to_the_broker() {
    // The classic relation max_poll_interval >= session_timeout does not apply.
    let c = Config::from_toml_str(
        "[kafka]\ngroup_protocol = \"consumer\"\nsession_timeout = \"60s\"\nmax_poll_interval = \"30s\"\n",
    )
    .unwrap();
    let options = c.kafka.consumer_client_options();
    assert!(
        options.contains(&("group.protocol".to_owned(), "consumer".to_owned())),
        "{options:?}"
    );
    assert!(
        options
            .iter()
            .all(|(k, _)| !CLASSIC_ONLY_KEYS.contains(&k.as_str())),
        "{options:?}"
    );
}

#[test]
fn ttl_tiers_must_increase_with_severity() {
    assert_names(
        &error_of("[blacklist.ttl]\nfraud = \"30m\"\n"),
        "blacklist.ttl.fraud",
        "longer than `blacklist.ttl.temporary`",
    );
}

#[test]
fn cross_field_rules_name_the_key() {
    assert_names(
        &error_of("[kafka]\nsession_timeout = \"60s\"\nmax_poll_interval = \"30s\"\n"),
        "kafka.max_poll_interval",
        "session_timeout",
    );
    assert_names(
        &error_of("[kafka]\nenrichment_topic = \"transactions\"\n"),
        "kafka.enrichment_topic",
        "must differ",
    );
    assert_names(
        &error_of("[kafka]\ndlq_suffix = \"\"\n"),
        "kafka.dlq_suffix",
        "empty",
    );
    assert_names(
        &error_of("[kafka.consumer_options]\n\"enable.auto.offset.store\" = true\n"),
        "kafka.consumer_options.\"enable.auto.offset.store\"",
        "set by the worker",
    );
    assert_names(
        &error_of("[kafka.security]\nprotocol = \"sasl_ssl\"\n"),
        "kafka.security.sasl_mechanism",
        "required",
    );
    assert_names(
        &error_of("[schemas]\ntransaction_id = 9\n"),
        "schemas.transaction_id",
        "not in `schemas.catalog`",
    );
    assert_names(
        &error_of("[log]\nlevel = \"fds_worker=loud\"\n"),
        "log.level",
        "not a tracing filter",
    );
}

#[test]
fn produce_retry_budget_is_a_positive_duration_librdkafka_can_take() {
    assert_eq!(
        Config::default().kafka.produce_retry_budget,
        Duration::from_secs(300)
    );
    assert_names(
        &error_of("[kafka]\nproduce_retry_budget = \"0s\"\n"),
        "kafka.produce_retry_budget",
        "longer than 0",
    );
    assert_names(
        &error_of("[kafka]\nproduce_retry_budget = \"30d\"\n"),
        "kafka.produce_retry_budget",
        "at most 24d",
    );
    assert_names(
        &error_of("[kafka]\nproduce_retry_budget = \"soon\"\n"),
        "kafka.produce_retry_budget",
        "soon",
    );
    let c = Config::from_toml_str("[kafka]\nproduce_retry_budget = \"90s\"\n").unwrap();
    assert_eq!(c.kafka.produce_retry_budget, Duration::from_secs(90));
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = error_of("[redis]\nnodes = []\n[pipeline]\nbatch_size = 0\n");
    assert_eq!(err.keys(), vec!["redis.nodes", "pipeline.batch_size"]);
}

#[test]
fn pass_through_options_take_numbers_and_booleans_as_strings() {
    let c = Config::from_toml_str(
        "[kafka.consumer_options]\n\"fetch.min.bytes\" = 1\n\"check.crcs\" = true\n",
    )
    .unwrap();
    assert_eq!(c.kafka.consumer_options["fetch.min.bytes"], "1");
    assert_eq!(c.kafka.consumer_options["check.crcs"], "true");
}

#[test]
fn load_names_the_file_a_bad_value_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[redis]\nconnect_timeout = \"soon\"\n").unwrap();
    let err = Config::load(Some(&path)).unwrap_err();
    assert_names(&err, "redis.connect_timeout", "soon");
    assert!(err.to_string().contains("bad.toml"), "{err}");
}

#[test]
fn load_of_a_missing_explicit_file_fails() {
    let err = Config::load(Some(Path::new("/nonexistent/fds.toml"))).unwrap_err();
    assert!(matches!(err, ConfigError::NotFound { .. }), "{err}");
}

#[test]
fn schema_paths_resolve_against_the_config_directorys_parent() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    let path = dir.path().join("config/fds-worker.toml");
    std::fs::write(&path, "").unwrap();
    let config = Config::load(Some(&path)).unwrap();
    let catalog = config.schema_catalog();
    assert_eq!(catalog[0], (1, dir.path().join("schemas/transaction.avsc")));
}

#[test]
fn secrets_are_hidden_from_debug_and_the_toml_dump() {
    let mut config = Config::default();
    config.redis.password = Some(Secret::new("hunter2-redis"));
    config.kafka.security.sasl_password = Some(Secret::new("hunter2-kafka"));
    config.kafka.security.ssl_key_password = Some(Secret::new("hunter2-key"));
    let debug = format!("{config:?}");
    let dump = config.redacted_toml().unwrap();
    for shown in [&debug, &dump] {
        assert!(!shown.contains("hunter2"), "secret leaked:\n{shown}");
    }
    assert!(
        dump.contains(&format!("password = \"{REDACTED}\"")),
        "{dump}"
    );
    let opts = config.kafka.common_options();
    assert!(opts.contains(&("sasl.password".into(), "hunter2-kafka".into())));
}

#[test]
fn password_file_is_read_at_load_and_stays_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("redis-password");
    std::fs::write(&secret, "from-a-file\n").unwrap();
    let path = dir.path().join("c.toml");
    let body = format!(
        "[redis]\npassword_file = {:?}\n",
        secret.display().to_string()
    );
    std::fs::write(&path, body).unwrap();
    let config = Config::load(Some(&path)).unwrap();
    let password = config.redis.password.as_ref().expect("password read");
    assert_eq!(password.expose(), "from-a-file");
    assert!(!config.redacted_toml().unwrap().contains("from-a-file"));
}

/// Runs `fds-worker check-config --print` in an empty directory with `env` set.
fn check_config_with_env(env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fds-worker"));
    cmd.args(["check-config", "--print"])
        .current_dir(dir.path())
        .env_remove("FDS_CONFIG")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// The TOML part of `check-config --print` output, parsed back.
fn printed_config(out: &Output) -> Config {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check-config failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml: String = stdout
        .lines()
        .filter(|l| !l.starts_with("config OK"))
        .map(|l| format!("{l}\n"))
        .collect();
    Config::from_toml_str(&toml).unwrap()
}

#[test]
fn env_overrides_scalars_and_lists() {
    let out = check_config_with_env(&[
        ("FDS_KAFKA__BROKERS", "b1:9092,b2:9092"),
        ("FDS_KAFKA__GROUP_ID", "12345"),
        (
            "FDS_REDIS__NODES",
            "redis://10.0.0.1:7000, redis://10.0.0.2:7001",
        ),
        ("FDS_KAFKA__VERDICT_TOPICS", "[verdicts-a, verdicts-b]"),
        ("FDS_VELOCITY__BREACH_BLACKLIST__DIMENSIONS", "user,ip"),
        ("FDS_VELOCITY__GRACE", "2m"),
        ("FDS_REDIS__RETRY__MAX_ATTEMPTS", "7"),
        ("FDS_KAFKA__GROUP_PROTOCOL", "consumer"),
    ]);
    let config = printed_config(&out);
    assert_eq!(config.kafka.brokers, "b1:9092,b2:9092");
    assert_eq!(config.kafka.group_id, "12345");
    assert_eq!(
        config.redis.nodes,
        vec!["redis://10.0.0.1:7000", "redis://10.0.0.2:7001"]
    );
    assert_eq!(
        config.kafka.verdict_topics,
        vec!["verdicts-a", "verdicts-b"]
    );
    assert_eq!(
        config.velocity.breach_blacklist.dimensions,
        vec![EntityKind::User, EntityKind::Ip]
    );
    assert_eq!(config.velocity.grace, Duration::from_secs(120));
    assert_eq!(config.redis.retry.max_attempts, 7);
    assert_eq!(config.kafka.group_protocol, GroupProtocol::Consumer);
}

#[test]
fn env_secret_is_applied_but_never_printed() {
    let out = check_config_with_env(&[("FDS_REDIS__PASSWORD", "123456")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("123456"), "{stdout}");
    let config = printed_config(&out);
    assert_eq!(
        config.redis.password.as_ref().map(Secret::expose),
        Some(REDACTED)
    );
}

#[test]
fn bad_env_values_exit_2_naming_the_variable() {
    let out = check_config_with_env(&[("FDS_KAFKA__SESSION_TIMEOUT", "5 parsecs")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`kafka.session_timeout`"), "{stderr}");
    assert!(stderr.contains("FDS_KAFKA__SESSION_TIMEOUT"), "{stderr}");

    let out = check_config_with_env(&[("FDS_REDIS__NODE", "redis://a:7000")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`redis.node`: unknown key"), "{stderr}");
}

#[test]
fn repository_config_is_picked_up_by_default() {
    let out = Command::new(env!("CARGO_BIN_EXE_fds-worker"))
        .arg("check-config")
        .current_dir(manifest_dir())
        .env_remove("FDS_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: PathBuf = manifest_dir().join("config/fds-worker.toml");
    assert!(
        stdout.contains(&format!("config OK: {}", expected.display())),
        "{stdout}"
    );
}
