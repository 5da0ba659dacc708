//! Security against the real 6-node cluster and the mock Kafka:
//! - a cluster with `requirepass`/`masterauth` and an ACL user limited to the worker's commands
//!   and keys: the worker is exact under it, and the user can do nothing else;
//! - a wrong password, a user missing a permission, a TLS cluster, an untrusted CA: the worker
//!   works, or fails at start with an error naming the problem (never a hang);
//! - verdict spoofing: a verdict on the transaction topic, or with an action this worker does
//!   not know, is dead-lettered and changes no blacklist;
//! - secrets never appear in logs, `--help` or `check-config --print`, including a worker's
//!   debug logs over a real SASL session (Kafka's own security: `kafka_security.rs`).

mod common;

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::worker::{
    assert_enriched, assert_ground_truth, publish, read_all, run_error, start_stack_with,
    start_worker, test_config, traffic, wait_for_enrichment,
};
use fds_testkit::demo::{KafkaSetup, LocalStack};
use fds_testkit::localstack::{ClusterOptions, TestPki};
use fds_worker::codec::Codec;
use fds_worker::config::{Config, Secret};
use fds_worker::event::{EntityKind, FraudVerdict, Subject, ThreatLevel, VerdictAction};
use fds_worker::sink::dead_letter::header;
use fds_worker::store::acl::worker_acl_rule;
use proptest::prelude::*;
use rdkafka::producer::FutureRecord;

/// The cluster admin's password (`requirepass`, `masterauth`; the harness's `default` user).
const ADMIN_PASSWORD: &str = "admin-Pa55-never-logged";
/// The worker's ACL user and password.
const WORKER_USER: &str = "fds-worker";
const WORKER_PASSWORD: &str = "worker-Pa55-never-logged";
/// A user allowed everything the worker needs except `FUNCTION LOAD`.
const NO_LOAD_USER: &str = "no-function-load";

/// A hang detector, not a performance bound: start-up fails in about a connect timeout.
const START_BOUND: Duration = Duration::from_secs(60);

fn acl_cluster_options() -> ClusterOptions {
    let no_load = worker_acl_rule(NO_LOAD_USER, WORKER_PASSWORD).replace(" +function|load", "");
    ClusterOptions {
        password: Some(ADMIN_PASSWORD.into()),
        acl_users: vec![worker_acl_rule(WORKER_USER, WORKER_PASSWORD), no_load],
        ..ClusterOptions::default()
    }
}

/// The worker's config for the ACL cluster, as the worker user.
fn worker_config(stack: &LocalStack) -> Config {
    let mut config = test_config(stack);
    config.redis.username = Some(WORKER_USER.into());
    config.redis.password = Some(Secret::new(WORKER_PASSWORD));
    config
}

/// Records that pretend to be verdicts without being valid ones for this worker: a valid
/// FraudVerdict sent to the transaction topic, and a verdict whose writer schema has an action
/// this worker does not know. Returns `(topic, payload)` and registers the writer schema.
#[allow(deprecated)] // apache-avro's one-shot datum functions are the simplest way to forge one
fn spoofed_verdicts(dir: &Path, config: &mut Config) -> Vec<(String, Vec<u8>)> {
    use apache_avro::types::Value;
    let codec = Codec::builtin();
    let spoof = |user: &str| FraudVerdict {
        verdict_id: format!("spoof-{user}"),
        subject: Subject {
            kind: EntityKind::User,
            value: user.into(),
        },
        action: VerdictAction::Add,
        threat_level: ThreatLevel::Permanent,
        reason: "spoofed".into(),
        source: "attacker".into(),
        event_time_ms: common::worker::now_ms(),
    };
    let on_transactions = codec.encode_verdict(&spoof("victim-1")).unwrap();

    let text = fds_worker::codec::FRAUD_VERDICT_AVSC.replace("\"REMOVE\"", "\"REMOVE\", \"BAN\"");
    assert_ne!(text, fds_worker::codec::FRAUD_VERDICT_AVSC, "enum extended");
    let path = dir.join("fraud_verdict-with-ban.avsc");
    std::fs::write(&path, &text).unwrap();
    let newer = apache_avro::Schema::parse_str(&text).unwrap();
    let builtin = apache_avro::Schema::parse_str(fds_worker::codec::FRAUD_VERDICT_AVSC).unwrap();
    let valid = codec.encode_verdict(&spoof("victim-2")).unwrap();
    let Value::Record(fields) =
        apache_avro::from_avro_datum(&builtin, &mut &valid[5..], None).unwrap()
    else {
        panic!("a record")
    };
    let fields = fields
        .into_iter()
        .map(|(name, value)| match name.as_str() {
            "action" => (name, Value::Enum(2, "BAN".into())),
            _ => (name, value),
        })
        .collect();
    let body = apache_avro::to_avro_datum(&newer, Value::Record(fields)).unwrap();
    let mut unknown_action = vec![0u8];
    unknown_action.extend_from_slice(&97u32.to_be_bytes());
    unknown_action.extend_from_slice(&body);
    config
        .schemas
        .catalog
        .push(fds_worker::config::SchemaEntry { id: 97, path });
    vec![
        (config.kafka.transactions_topic.clone(), on_transactions),
        (config.kafka.verdict_topics[0].clone(), unknown_action),
    ]
}

/// (a) + verdict spoofing: the worker as an ACL user with only its commands and keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_user_runs_the_worker_exactly_and_spoofed_verdicts_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start_stack_with(acl_cluster_options()).await;
    let mut config = worker_config(&stack);
    // Exercise WAIT too.
    config.redis.wait_replicas = 1;
    config.redis.wait_timeout = Duration::from_secs(1);
    let spoofed = spoofed_verdicts(dir.path(), &mut config);
    let traffic = traffic(&config, 400, 91, Duration::from_secs(10));
    publish(&stack, &config, &traffic, None).await;
    let producer = stack.producer().unwrap();
    for (topic, payload) in &spoofed {
        producer
            .send(
                FutureRecord::<str, [u8]>::to(topic)
                    .key("spoof")
                    .payload(payload),
                Duration::from_secs(10),
            )
            .await
            .expect("spoofed record published");
    }

    let worker = start_worker(&config);
    let counts = wait_for_enrichment(&stack, &config, &traffic, || 0).await;
    let records = (traffic.events.len() + spoofed.len()) as u64;
    worker
        .wait_finished(&config, records, Duration::from_secs(60))
        .await;
    worker.stop().await;
    assert_enriched(&counts, &traffic, false);
    assert_ground_truth(&stack, &traffic).await;

    // The spoofed verdicts were dead-lettered with the reason, and wrote nothing.
    let mut kinds = Vec::new();
    for topic in [
        &config.kafka.transactions_topic,
        &config.kafka.verdict_topics[0],
    ] {
        for letter in read_all(&stack, &config.kafka.dlq_topic(topic)) {
            let message = letter.header(header::MESSAGE).unwrap_or_default();
            assert!(!message.is_empty(), "a reason");
            kinds.push(letter.header(header::KIND).unwrap().to_owned());
        }
    }
    kinds.sort();
    assert_eq!(
        kinds,
        ["resolution", "resolution"],
        "both spoofs, nothing else"
    );
    let cluster = &stack.cluster;
    for victim in ["victim-1", "victim-2"] {
        let key = format!("bl:{{u:{victim}}}");
        let slot = fds_worker::slot::key_slot(key.as_bytes());
        let master = cluster.master_for_slot(slot).unwrap();
        let exists: i64 = cluster
            .query(master, redis::cmd("EXISTS").arg(&key))
            .unwrap();
        assert_eq!(exists, 0, "{key} was not written");
    }

    // No command of the run was denied, and the user can do nothing beyond the worker's job.
    for node in cluster.masters() {
        let log: Vec<redis::Value> = cluster.query(node, redis::cmd("ACL").arg("LOG")).unwrap();
        // redis-rs's `CLIENT SETINFO` (Redis >= 7.2) is optional and its refusal ignored.
        let denied: Vec<String> = log
            .iter()
            .map(|entry| format!("{entry:?}"))
            .filter(|entry| !entry.contains("setinfo"))
            .collect();
        assert!(
            denied.is_empty(),
            "node {node} denied the worker: {denied:?}"
        );
    }
    let node = cluster.masters()[0];
    let port = cluster.port(node).unwrap();
    let url = format!("redis://{WORKER_USER}:{WORKER_PASSWORD}@127.0.0.1:{port}");
    let mut as_worker = redis::Client::open(url)
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap();
    let mut denied = |cmd: &mut redis::Cmd| {
        let error = cmd.query::<redis::Value>(&mut as_worker).unwrap_err();
        assert_eq!(error.code(), Some("NOPERM"), "{cmd:?}: {error}");
    };
    denied(redis::cmd("FLUSHALL").arg("ASYNC"));
    denied(redis::cmd("CONFIG").arg("GET").arg("requirepass"));
    denied(redis::cmd("KEYS").arg("*"));
    denied(redis::cmd("EVAL").arg("return 1").arg(0));
    denied(redis::cmd("FUNCTION").arg("DELETE").arg("fds"));
    // A key outside the worker's patterns, with a hash tag of this node's slots.
    denied(redis::cmd("SET").arg("{x}session:1").arg("v"));
    let mut as_worker_ok = |cmd: &mut redis::Cmd| {
        cmd.query::<redis::Value>(&mut as_worker)
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    };
    as_worker_ok(&mut redis::cmd("PING"));
    as_worker_ok(redis::cmd("CLUSTER").arg("INFO"));
    println!(
        "[security] ACL user {WORKER_USER}: {} transactions enriched, ground truth exact, {} spoofed verdicts dead-lettered, 0 ACL denials",
        counts.len(),
        kinds.len()
    );
}

/// (b) Wrong password, unknown user, a user without `FUNCTION LOAD`: start fails, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_fail_at_start_with_a_clear_error() {
    let stack = start_stack_with(acl_cluster_options()).await;
    let base = worker_config(&stack);

    let mut wrong_password = base.clone();
    wrong_password.redis.password = Some(Secret::new("not-the-password"));
    let mut unknown_user = base.clone();
    unknown_user.redis.username = Some("nobody".into());
    let mut no_user = base.clone();
    no_user.redis.username = None;
    no_user.redis.password = None;
    for (case, config) in [
        ("wrong password", &wrong_password),
        ("unknown user", &unknown_user),
        ("no credentials", &no_user),
    ] {
        let error = run_error(config).await.to_string();
        println!("[security] {case}: {error}");
        assert!(
            error.contains("redis.password") || error.contains("NOAUTH"),
            "{case}: the error names what to check: {error}"
        );
        assert!(
            !error.contains("not-the-password") && !error.contains(WORKER_PASSWORD),
            "{case}: no secret in {error}"
        );
    }

    let mut no_load = base.clone();
    no_load.redis.username = Some(NO_LOAD_USER.into());
    let error = run_error(&no_load).await.to_string();
    println!("[security] user without FUNCTION LOAD: {error}");
    assert!(
        error.contains("FUNCTION LOAD") && error.to_lowercase().contains("no permissions"),
        "names the denied command: {error}"
    );
}

fn tls_stack_options(pki: &TestPki) -> ClusterOptions {
    ClusterOptions {
        password: Some(ADMIN_PASSWORD.into()),
        tls: Some(pki.cluster_tls(true)),
        ..ClusterOptions::default()
    }
}

/// The worker's config for a TLS cluster, trusting `ca` and presenting the PKI's client
/// certificate.
fn tls_config(stack: &LocalStack, pki: &TestPki, ca: &Path) -> Config {
    let mut config = test_config(stack);
    config.redis.password = Some(Secret::new(ADMIN_PASSWORD));
    config.redis.tls.enabled = true;
    config.redis.tls.ca_file = Some(ca.to_owned());
    config.redis.tls.cert_file = Some(pki.client_cert.clone());
    config.redis.tls.key_file = Some(pki.client_key.clone());
    config.validate().expect("a valid TLS config");
    config
}

/// (c) + (d) A TLS-only cluster (`port 0`, `tls-port`, `tls-cluster yes`,
/// `tls-replication yes`, client certificates required): the worker is exact over TLS; an
/// untrusted CA or a missing client certificate fails at start, naming `redis.tls`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_works_and_untrusted_certificates_fail_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path(), "cluster").expect("the test PKI is made");
    let stranger = TestPki::generate(dir.path(), "stranger").expect("another PKI");
    let stack = start_stack_with(tls_stack_options(&pki)).await;
    assert!(stack.cluster.seed_urls()[0].starts_with("rediss://"));
    // No plaintext port: the leased port speaks TLS only.
    let port = stack.cluster.ports()[0];
    let plain = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    assert!(
        plain.is_err(),
        "plaintext PING on a TLS-only node: {plain:?}"
    );

    // (d) first: the worker must not start against a cluster it cannot verify.
    let untrusted = tls_config(&stack, &pki, &stranger.ca_cert);
    let error = run_error(&untrusted).await.to_string();
    println!("[security] untrusted CA: {error}");
    assert!(
        error.contains("redis.tls") && error.to_lowercase().contains("certificate"),
        "names the TLS setting: {error}"
    );
    let mut no_client_cert = tls_config(&stack, &pki, &pki.ca_cert);
    no_client_cert.redis.tls.cert_file = None;
    no_client_cert.redis.tls.key_file = None;
    let error = run_error(&no_client_cert).await.to_string();
    println!("[security] no client certificate: {error}");

    // (c) the worker over TLS, exact.
    let config = tls_config(&stack, &pki, &pki.ca_cert);
    let traffic = traffic(&config, 300, 92, Duration::from_secs(10));
    publish(&stack, &config, &traffic, None).await;
    let worker = start_worker(&config);
    let counts = wait_for_enrichment(&stack, &config, &traffic, || 0).await;
    let summary = worker.stop().await;
    assert_eq!(summary.dead_lettered, 0, "{summary:?}");
    assert_enriched(&counts, &traffic, false);
    assert_ground_truth(&stack, &traffic).await;
    // Replication runs over TLS too: every replica's link is up.
    for node in 0..stack.cluster.node_count() {
        let info: String = stack
            .cluster
            .query(node, redis::cmd("INFO").arg("replication"))
            .unwrap();
        if info.contains("role:slave") {
            assert!(
                info.contains("master_link_status:up"),
                "node {node}: {info}"
            );
        }
    }
    println!(
        "[security] TLS cluster: {} transactions enriched over TLS, ground truth exact",
        counts.len()
    );
}

/// A running `fds-worker` process and everything it printed so far (stdout + stderr).
struct Process {
    child: std::process::Child,
    output: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Process {
    /// Starts `fds-worker` with `args` and `env` (no `FDS_*` or `RUST_LOG` inherited) in the
    /// repository (so `config/fds-worker.toml` and the schemas are found).
    fn start(args: &[&str], env: &[(&str, &str)]) -> Process {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fds-worker"));
        cmd.args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars() {
            if key.starts_with("FDS_") || key == "RUST_LOG" {
                cmd.env_remove(key);
            }
        }
        for (key, value) in env {
            cmd.env(key, value);
        }
        let mut child = cmd.spawn().unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        let pipes: [Box<dyn std::io::Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for mut pipe in pipes {
            let output = Arc::clone(&output);
            readers.push(std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buffer[..n]);
                    output.lock().unwrap().push_str(&text);
                }
            }));
        }
        Process {
            child,
            output,
            readers,
        }
    }

    /// Waits (bounded) until the output contains `text`.
    fn wait_for_output(&self, text: &str) -> bool {
        common::poll_until(START_BOUND, || {
            self.output
                .lock()
                .unwrap()
                .contains(text)
                .then_some(())
                .ok_or(())
        })
        .is_ok()
    }

    /// Sends SIGTERM.
    fn terminate(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM sent");
    }

    /// Waits for the exit (killed after [`START_BOUND`]): `(exit code, output)`.
    fn finish(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + START_BOUND;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for reader in self.readers {
            let _ = reader.join();
        }
        let output = self.output.lock().unwrap().clone();
        (status, output)
    }
}

/// Runs `fds-worker` to its end: `(exit code, output)`.
fn fds_worker(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    Process::start(args, env).finish()
}

const SASL_SECRET: &str = "kafka-Pa55-never-logged";
const KEY_SECRET: &str = "key-Pa55-never-logged";

/// `--help` and `check-config --print` with every secret set from the environment or a file:
/// the values are used (`check-config` accepts them) but never shown.
#[test]
fn help_and_config_dump_never_show_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let key_password_file = dir.path().join("key-password");
    std::fs::write(&key_password_file, format!("{KEY_SECRET}\n")).unwrap();
    let key_password_file = key_password_file.to_string_lossy().into_owned();
    let env = [
        ("FDS_REDIS__USERNAME", WORKER_USER),
        ("FDS_REDIS__PASSWORD", WORKER_PASSWORD),
        ("FDS_KAFKA__SECURITY__PROTOCOL", "sasl_ssl"),
        ("FDS_KAFKA__SECURITY__SASL_MECHANISM", "SCRAM-SHA-512"),
        ("FDS_KAFKA__SECURITY__SASL_USERNAME", "fds"),
        ("FDS_KAFKA__SECURITY__SASL_PASSWORD", SASL_SECRET),
        (
            "FDS_KAFKA__SECURITY__SSL_CERTIFICATE_LOCATION",
            "/tls/c.pem",
        ),
        ("FDS_KAFKA__SECURITY__SSL_KEY_LOCATION", "/tls/c.key"),
        (
            "FDS_KAFKA__SECURITY__SSL_KEY_PASSWORD_FILE",
            key_password_file.as_str(),
        ),
    ];
    let secrets = [WORKER_PASSWORD, SASL_SECRET, KEY_SECRET];
    let (status, output) = fds_worker(&["check-config", "--print"], &env);
    assert_eq!(status, Some(0), "{output}");
    assert!(output.contains("sasl_password = \"***\""), "{output}");
    assert!(output.contains("ssl_key_password = \"***\""), "{output}");
    assert!(
        output.contains("sasl_mechanism = \"SCRAM-SHA-512\""),
        "{output}"
    );
    for args in [
        &["check-config", "--print"][..],
        &["--help"],
        &["run", "--help"],
        &["check-config", "--help"],
    ] {
        let (_, output) = fds_worker(args, &env);
        for secret in secrets {
            assert!(
                !output.contains(secret),
                "{args:?} shows a secret:\n{output}"
            );
        }
    }
}

/// The worker's logs at `debug` (its own, redis-rs's and librdkafka's) carry no secret: a
/// worker that runs (Redis as the ACL user; Kafka over SASL/SCRAM-SHA-512 to a real broker, a
/// full authenticated session), one stopped at start by a wrong Redis password and one by a
/// wrong Kafka password, each naming the setting to check.
#[test]
fn logs_never_show_secrets() {
    use common::secure_kafka::{Auth, secure_kafka};
    common::init_tracing();
    let secure = secure_kafka();
    let stack = LocalStack::start_with(
        acl_cluster_options(),
        KafkaSetup::Shared(secure.kafka.clone()),
        common::worker::PARTITIONS,
    )
    .expect("local stack");
    let mut config = test_config(&stack);
    let auth = Auth::Sasl(fds_worker::config::SaslMechanism::ScramSha512);
    secure.secure(&mut config, auth);
    secure.grant(&auth.principal(), &config, None);
    let nodes = stack.cluster.seed_urls().join(",");
    let wrong = "wrong-Pa55-never-logged";
    let secrets = [
        wrong,
        WORKER_PASSWORD,
        common::secure_kafka::PASSWORD,
        ADMIN_PASSWORD,
    ];
    let mut base: Vec<(&str, String)> = stack.env();
    base.extend([
        ("RUST_LOG", "debug".to_owned()),
        ("FDS_LOG__FORMAT", "json".to_owned()),
        ("FDS_METRICS__LISTEN", "127.0.0.1:0".to_owned()),
        ("FDS_PIPELINE__SHUTDOWN_DEADLINE", "1s".to_owned()),
        ("FDS_KAFKA__BROKERS", config.kafka.brokers.clone()),
        ("FDS_KAFKA__GROUP_ID", config.kafka.group_id.clone()),
        ("FDS_REDIS__NODES", nodes),
        ("FDS_REDIS__USERNAME", WORKER_USER.to_owned()),
        ("FDS_KAFKA__SECURITY__PROTOCOL", "sasl_plaintext".to_owned()),
        (
            "FDS_KAFKA__SECURITY__SASL_MECHANISM",
            "SCRAM-SHA-512".to_owned(),
        ),
        (
            "FDS_KAFKA__SECURITY__SASL_USERNAME",
            common::secure_kafka::USER.to_owned(),
        ),
    ]);
    let run_with = |extra: &[(&'static str, &str)]| {
        let mut env: Vec<(&str, String)> = base.clone();
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        env
    };

    let env = run_with(&[
        ("FDS_REDIS__PASSWORD", WORKER_PASSWORD),
        (
            "FDS_KAFKA__SECURITY__SASL_PASSWORD",
            common::secure_kafka::PASSWORD,
        ),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let worker = Process::start(&["run"], &env);
    let assigned = worker.wait_for_output("partitions assigned");
    worker.terminate();
    let (status, output) = worker.finish();
    println!(
        "[security] run over SASL/SCRAM to Apache Kafka: exit {status:?}, {} bytes of debug logs",
        output.len()
    );
    assert!(
        assigned,
        "an authenticated session joined the group:\n{output}"
    );
    for secret in secrets {
        assert!(!output.contains(secret), "a secret in the logs:\n{output}");
    }

    for (extra, setting) in [
        (
            [
                ("FDS_REDIS__PASSWORD", wrong),
                (
                    "FDS_KAFKA__SECURITY__SASL_PASSWORD",
                    common::secure_kafka::PASSWORD,
                ),
            ],
            "redis.password",
        ),
        (
            [
                ("FDS_REDIS__PASSWORD", WORKER_PASSWORD),
                ("FDS_KAFKA__SECURITY__SASL_PASSWORD", wrong),
            ],
            "sasl_password",
        ),
    ] {
        let env = run_with(&extra);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, output) = fds_worker(&["run"], &env);
        println!("[security] run with a wrong {setting}: exit {status:?}");
        assert!(matches!(status, Some(code) if code != 0), "{output}");
        assert!(output.contains(setting), "names the setting:\n{output}");
        for secret in secrets {
            assert!(
                !output.contains(secret),
                "a secret in the output:\n{output}"
            );
        }
    }
}

/// Unit test of the mapping: every `[kafka.security]` setting lands in the consumer's and the
/// producer's librdkafka config under its librdkafka name; `*_file` secrets are read at load;
/// the configs' `Debug` (what a log line would show) hides the secrets.
#[test]
fn kafka_security_maps_to_librdkafka_options_with_secrets_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let sasl_file = dir.path().join("sasl-password");
    let key_file = dir.path().join("key-password");
    std::fs::write(&sasl_file, format!("{SASL_SECRET}\n")).unwrap();
    std::fs::write(&key_file, KEY_SECRET).unwrap();
    let toml = format!(
        "[kafka.security]\n\
         protocol = \"sasl_ssl\"\n\
         sasl_mechanism = \"SCRAM-SHA-256\"\n\
         sasl_username = \"fds\"\n\
         sasl_password_file = {sasl:?}\n\
         ssl_ca_location = \"/tls/ca.pem\"\n\
         ssl_certificate_location = \"/tls/client.pem\"\n\
         ssl_key_location = \"/tls/client.key\"\n\
         ssl_key_password_file = {key:?}\n",
        sasl = sasl_file.to_string_lossy(),
        key = key_file.to_string_lossy(),
    );
    let path = dir.path().join("fds.toml");
    std::fs::write(&path, toml).unwrap();
    let config = Config::load(Some(&path)).unwrap();
    let expected = [
        ("security.protocol", "sasl_ssl"),
        ("sasl.mechanism", "SCRAM-SHA-256"),
        ("sasl.username", "fds"),
        ("sasl.password", SASL_SECRET),
        ("ssl.ca.location", "/tls/ca.pem"),
        ("ssl.certificate.location", "/tls/client.pem"),
        ("ssl.key.location", "/tls/client.key"),
        ("ssl.key.password", KEY_SECRET),
    ];
    for (name, client) in [
        (
            "consumer",
            fds_worker::source::consumer_config(&config.kafka),
        ),
        ("producer", fds_worker::sink::producer_config(&config.kafka)),
    ] {
        for (key, value) in expected {
            assert_eq!(client.get(key), Some(value), "{name} {key}");
        }
        let shown = format!("{client:?}");
        assert!(
            !shown.contains(SASL_SECRET) && !shown.contains(KEY_SECRET),
            "{name}: {shown}"
        );
    }
    let shown = format!("{config:?}\n{}", config.redacted_toml().unwrap());
    assert!(
        !shown.contains(SASL_SECRET) && !shown.contains(KEY_SECRET),
        "{shown}"
    );
}

/// Pieces an attacker builds ids from: braces, another entity's tag text, the escape
/// character, line breaks, NUL and non-ASCII.
fn hostile_id() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("{u:victim}".to_owned()),
        Just("}{u:victim".to_owned()),
        Just("%7B".to_owned()),
        Just("%".to_owned()),
        Just("\n".to_owned()),
        Just("\r\n".to_owned()),
        Just("\0".to_owned()),
        Just("victim".to_owned()),
        Just("u:".to_owned()),
        "\\PC{0,3}",
        any::<char>().prop_map(String::from),
        // Very long ids (validation would reject them; keys must stay safe regardless).
        (1usize..20_000).prop_map(|n| "{".repeat(n)),
    ];
    proptest::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Hash-tag injection: whatever an id contains, every key built for it hashes exactly the
    /// tag the key builder wrote, so it can never land in another entity's slot by way of the
    /// tag, and it never equals another entity's key.
    #[test]
    fn hostile_ids_cannot_move_keys_into_another_entitys_tag(
        attacker in hostile_id(),
        victim in "[a-z0-9]{1,8}",
        namespace in prop_oneof![Just(String::new()), hostile_id()],
    ) {
        use fds_worker::slot::keys::{Entity, KeyBuilder};
        use fds_worker::slot::{hash_tag, key_slot};
        let keys = KeyBuilder::namespaced(&namespace);
        for kind in EntityKind::ALL {
            let own = Entity::new(kind, attacker.clone());
            let tag = own.tag();
            let inner = &tag.as_bytes()[1..tag.len() - 1];
            // The tag's content is the kind prefix and printable ASCII without braces.
            let printable = inner
                .iter()
                .all(|b| (0x21..=0x7e).contains(b) && !matches!(b, b'{' | b'}'));
            prop_assert!(printable, "tag {:?}", tag);
            let target = Entity::new(kind, victim.clone());
            let their = [
                keys.feature(&target.tag(), "f"),
                keys.blacklist(&target.tag()),
                keys.applied(&target.tag()),
            ];
            for key in [keys.feature(&tag, "f"), keys.blacklist(&tag), keys.applied(&tag)] {
                prop_assert_eq!(hash_tag(key.as_bytes()), inner, "{:?}", key);
                prop_assert_eq!(key_slot(key.as_bytes()), key_slot(inner));
                if attacker != victim {
                    prop_assert!(!their.contains(&key), "{:?} collides with the victim", key);
                    prop_assert_ne!(hash_tag(key.as_bytes()), hash_tag(their[0].as_bytes()));
                }
            }
        }
    }
}

/// The deployment files grant the worker user exactly the permissions the code needs
/// (`store::acl::worker_acl_permissions`): the chart's `redisCluster.workerAcl` and the compose
/// file's `REDIS_WORKER_ACL`.
#[test]
fn deployment_files_grant_exactly_the_workers_acl() {
    let expected = fds_worker::store::acl::worker_acl_permissions();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, key) in [
        ("helm/fds-worker/values.yaml", "workerAcl:"),
        ("docker-compose.yml", "REDIS_WORKER_ACL:"),
    ] {
        // Checked where present (the deployment files are optional to the crate).
        let Ok(text) = std::fs::read_to_string(root.join(file)) else {
            eprintln!("{file} is not there: not checked");
            continue;
        };
        let values: Vec<&str> = text
            .lines()
            .filter_map(|line| line.trim().strip_prefix(key))
            .map(|value| value.trim().trim_matches('"'))
            .collect();
        assert!(!values.is_empty(), "{file} has no {key}");
        for value in values {
            assert_eq!(value, expected, "{file} {key}");
        }
    }
}

/// A valid verdict on a topic that is not in `kafka.verdict_topics` (had the worker been
/// subscribed to it by mistake) is poison, not a blacklist change.
#[test]
fn verdicts_count_only_from_configured_verdict_topics() {
    // Schemas resolve against the repository, as for the shipped config file.
    let mut decoder = fds_worker::pipeline::decoder_from_config(&Config {
        source_file: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/fds-worker.toml")),
        ..Config::default()
    })
    .expect("decoder");
    decoder.max_future_skew_ms = i64::MAX / 2;
    let verdict = FraudVerdict {
        verdict_id: "v-1".into(),
        subject: Subject {
            kind: EntityKind::User,
            value: "victim".into(),
        },
        action: VerdictAction::Add,
        threat_level: ThreatLevel::Permanent,
        reason: "r".into(),
        source: "s".into(),
        event_time_ms: common::worker::now_ms(),
    };
    let payload = decoder.codec.encode_verdict(&verdict).unwrap();
    let record = |topic: &str| fds_worker::source::SourceMessage {
        topic: Arc::from(topic),
        partition: 0,
        offset: 0,
        key: None,
        payload: Some(payload.clone()),
        headers: Vec::new(),
        timestamp_ms: None,
    };
    let now = common::worker::now_ms();
    let accepted = fds_worker::pipeline::decode(&decoder, &record("fraud-verdicts"), now);
    assert!(accepted.is_ok(), "{accepted:?}");
    for topic in ["fraud-verdicts-staging", "transactions"] {
        let poison = fds_worker::pipeline::decode(&decoder, &record(topic), now).unwrap_err();
        println!(
            "[security] verdict on {topic}: {} ({})",
            poison.kind, poison.message
        );
        let expected = if topic == "transactions" {
            "resolution"
        } else {
            "unexpected_topic"
        };
        assert_eq!(poison.kind, expected, "{}", poison.message);
    }
}
