//! The worker on a real Schema Registry (the test kit's Apicurio), Redis Cluster and Apache
//! Kafka: `Transaction` v1 and v2 records, both registered, are processed without a restart;
//! while the registry is frozen (SIGSTOP) for 10 s under load the records of an unseen id wait
//! (their partitions hold, cached ids keep flowing) and nothing is dead-lettered or lost; an id
//! the registry does not know is dead-lettered with its answer, and one whose registered schema
//! does not resolve against the reader as `resolution`; a downstream consumer that
//! knows only the registry decodes the enrichment topic; `redrive` and `replay` decode v1 and
//! v2 records by the registry's ids. A registry down while the worker starts stops it with a
//! retryable error; an enrichment schema the subject's compatibility rule refuses stops it at
//! start with the registry's message (fatal). `/readyz`
//! answers not ready while an id waits for a frozen registry, and ready again after it. A
//! worker that leaves while its partitions hold loses nothing: the other one takes them over.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::keys::{differences, snapshot};
use common::ops::{self, sample};
use common::worker::{
    PARTITIONS, enrichment_counts, read_all, run_error, start_stack, start_worker, test_config,
    traffic, verification,
};
use fds_testkit::demo::LocalStack;
use fds_testkit::localstack::Apicurio;
use fds_worker::cli::run::Service;
use fds_worker::codec::registry::{RegistryErrorKind, SchemaRegistry};
use fds_worker::codec::{
    Codec, DEFAULT_MAX_MESSAGE_BYTES, ENRICHMENT_AVSC, FRAUD_VERDICT_AVSC, SchemaCatalog,
    SchemaIds, TRANSACTION_AVSC, wire,
};
use fds_worker::config::{Config, RegistryConfig};
use fds_worker::generate::{GeneratedEvent, Traffic, produce};
use fds_worker::metrics::Metrics;
use fds_worker::pipeline::RunError;
use fds_worker::redrive::{RedriveOptions, redrive};
use fds_worker::replay::progress::Quiet;
use fds_worker::replay::{ReplayOptions, StartBound, replay};
use fds_worker::sink::dead_letter::header;
use fds_worker::sink::{DeadLetterKind, DeadLetterReason, dead_letter_headers};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

/// One test at a time: each starts a Redis Cluster and a registry of its own (together they
/// would starve 2 cores).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Transaction v2: v1 plus an optional field (a compatible evolution).
fn transaction_v2() -> String {
    let mut json: serde_json::Value = serde_json::from_str(TRANSACTION_AVSC).unwrap();
    json["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "name": "channel", "type": ["null", "string"], "default": null
        }));
    json.to_string()
}

fn client(registry: &Apicurio) -> SchemaRegistry {
    SchemaRegistry::new(&RegistryConfig {
        urls: vec![registry.ccompat_url()],
        ..RegistryConfig::default()
    })
    .expect("client")
}

/// The registry's producers' side: Transaction v1 and the verdict registered (ids 1 and 2 of a
/// fresh registry, the ids `Codec::builtin` writes), then v2 (the next id); the worker's config
/// on the registry; and a codec writing v2 transactions and verdicts under those ids.
async fn with_v1_and_v2(
    stack: &LocalStack,
    registry: &Apicurio,
) -> (SchemaRegistry, Config, Codec) {
    let producers = client(registry);
    let mut config = test_config(stack);
    config.schemas.registry.urls = vec![registry.ccompat_url()];
    config.schemas.registry.retry_backoff = Duration::from_millis(100);
    config.schemas.registry.retry_backoff_max = Duration::from_secs(1);

    // The producers register their schemas. A fresh registry numbers from 1, so v1 and the
    // verdict get the ids `Codec::builtin` writes (1, 2); v2 gets the next.
    let tx_subject = format!("{}-value", config.kafka.transactions_topic);
    let verdict_subject = format!("{}-value", config.kafka.verdict_topics[0]);
    let v1 = producers.register(&tx_subject, TRANSACTION_AVSC).await;
    let verdict = producers
        .register(&verdict_subject, FRAUD_VERDICT_AVSC)
        .await;
    assert_eq!((v1, verdict), (Ok(1), Ok(2)));
    let v2_text = transaction_v2();
    let v2 = producers.register(&tx_subject, &v2_text).await.expect("v2");
    // The producers' side: v2 for transactions (the enrichment id is unused by them).
    let mut catalog = SchemaCatalog::empty();
    catalog.register_str(v2, &v2_text, "v2").unwrap();
    catalog
        .register_str(2, FRAUD_VERDICT_AVSC, "verdict")
        .unwrap();
    catalog
        .register_str(u32::MAX, ENRICHMENT_AVSC, "unused")
        .unwrap();
    let v2_writer = Codec::new(
        &catalog,
        SchemaIds {
            transaction: v2,
            verdict: 2,
            enrichment: u32::MAX,
        },
        DEFAULT_MAX_MESSAGE_BYTES,
    )
    .unwrap();
    (producers, config, v2_writer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_and_v2_flow_a_frozen_registry_loses_nothing_and_redrive_and_replay_decode_both() {
    let _serial = SERIAL.lock().await;
    let stack = start_stack().await;
    let registry = tokio::task::spawn_blocking(|| Apicurio::start().expect("registry"))
        .await
        .unwrap();
    let (producers, mut config, v2_writer) = with_v1_and_v2(&stack, &registry).await;
    // The live keys outlive the test, for the replay's comparison at its end.
    config.velocity.grace = Duration::from_secs(600);

    let traffic = traffic(&config, 400, 18, Duration::from_secs(20));
    let half = traffic.events.len() / 2;
    let (first, second) = traffic.events.split_at(half);
    let worker = start_worker(&config);
    let kafka = stack.producer().unwrap();
    let verdict_topic = config.kafka.verdict_topics[0].clone();
    let tx_topic = config.kafka.transactions_topic.clone();
    produce(
        &kafka,
        &Codec::builtin(),
        first,
        &tx_topic,
        &verdict_topic,
        None,
    )
    .await
    .unwrap();
    worker
        .wait_finished(&config, first.len() as u64, Duration::from_secs(120))
        .await;

    // Frozen under load: v2's id is unseen, so its records wait; verdicts (cached id) flow.
    registry.pause().unwrap();
    produce(&kafka, &v2_writer, second, &tx_topic, &verdict_topic, None)
        .await
        .unwrap();
    common::wait_until_async(
        "an id waiting for the frozen registry",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || async {
            match worker.metrics.schema_registry_unavailable.get() {
                0 => Err("no id waiting for the registry yet"),
                _ => Ok(()),
            }
        },
    )
    .await;
    let verdicts_second = second
        .iter()
        .filter(|e| matches!(e, GeneratedEvent::Verdict(_)))
        .count() as u64;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = worker.progress(&config);
    assert_eq!(during.dead_lettered, 0, "nothing dead-lettered: {during:?}");
    let first_transactions = first
        .iter()
        .filter(|e| matches!(e, GeneratedEvent::Transaction(_)))
        .count() as u64;
    assert_eq!(
        during.enriched, first_transactions,
        "v2 records wait for the registry: {during:?}"
    );
    registry.resume().unwrap();
    let after = worker
        .wait_finished(
            &config,
            traffic.events.len() as u64,
            Duration::from_secs(120),
        )
        .await;
    assert_eq!(after.dead_lettered, 0, "{after:?}");
    assert_eq!(worker.metrics.schema_registry_unavailable.get(), 0);
    println!(
        "[registry] events {} (second half: {verdicts_second} verdicts went on while frozen) \
         progress {after:?}",
        traffic.events.len()
    );

    // An id the registry does not know: poison, dead-lettered with the registry's answer.
    let mut poison = wire::frame_header(987_654, 4);
    poison.extend_from_slice(&[2, 0x61, 2, 0x62]);
    // A registered writer schema that does not resolve against the reader (`event_id` an
    // int; no compatibility rule on its subject stops it): dead-lettered with the reason.
    let unresolvable_schema = r#"{"type":"record","name":"Transaction","namespace":"io.fds.events","fields":[{"name":"event_id","type":"int"}]}"#;
    let unresolvable_id = producers
        .register(&format!("{tx_topic}-other-value"), unresolvable_schema)
        .await
        .expect("registered");
    let mut unresolvable = wire::frame_header(unresolvable_id, 1);
    unresolvable.push(2);
    for payload in [&poison, &unresolvable] {
        kafka
            .send(
                FutureRecord::<[u8], [u8]>::to(&tx_topic).payload(payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    worker
        .wait_finished(
            &config,
            traffic.events.len() as u64 + 2,
            Duration::from_secs(60),
        )
        .await;
    worker.stop().await;
    let letters = read_all(&stack, &config.kafka.dlq_topic(&tx_topic));
    assert_eq!(
        letters.len(),
        2,
        "only the two bad records are dead-lettered"
    );
    let letter = |id: u32| {
        letters
            .iter()
            .find(|l| {
                wire::split_frame(l.payload.as_deref().unwrap_or_default())
                    .unwrap()
                    .0
                    == id
            })
            .unwrap_or_else(|| panic!("a dead letter for schema id {id}"))
    };
    let unknown = letter(987_654);
    assert_eq!(unknown.header(header::KIND), Some("unknown_schema"));
    let message = unknown.header(header::MESSAGE).unwrap_or_default();
    assert!(message.contains("HTTP 404"), "{message}");
    let unresolved = letter(unresolvable_id);
    assert_eq!(unresolved.header(header::KIND), Some("resolution"));
    let message = unresolved.header(header::MESSAGE).unwrap_or_default();
    assert!(
        message.contains(&format!(
            "writer schema id {unresolvable_id} to the Transaction reader"
        )),
        "{message}"
    );

    // A downstream consumer that knows only the registry: the id in each record's frame, the
    // schema by that id.
    let consumer = client(&registry);
    let mut enriched = HashSet::new();
    for record in read_all(&stack, &config.kafka.enrichment_topic) {
        let payload = record.payload.as_deref().unwrap_or_default();
        let (id, _) = wire::split_frame(payload).unwrap();
        let schema = consumer
            .schema(id)
            .await
            .expect("the enrichment schema by id");
        let codec = Codec::for_registry(id, &schema.text, DEFAULT_MAX_MESSAGE_BYTES).unwrap();
        let enrichment = codec.decode_enrichment(payload).expect("decodes");
        enriched.insert(enrichment.event_id);
    }
    let missing: Vec<_> = traffic
        .events
        .iter()
        .filter_map(|e| match e {
            GeneratedEvent::Transaction(tx) => Some(&tx.event_id),
            _ => None,
        })
        .filter(|id| !enriched.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} transactions not enriched",
        missing.len()
    );
    let report = verification(&stack, &traffic).await;
    assert!(
        report.is_exact(),
        "lost {:?} doubled {:?} blacklist {:?}",
        &report.lost[..report.lost.len().min(3)],
        &report.doubled[..report.doubled.len().min(3)],
        report.blacklist_problems
    );

    // `fds-worker tail` with the registry configured decodes what it reads by the registry's
    // ids: v1 and v2 transactions (v2's id is the catalog's enrichment id: the catalog's ids
    // are not writer ids with a registry) and the enrichment records.
    // A reader registers nothing: with an enrichment topic of a subject nobody registered,
    // that subject is still not in the registry after the tail.
    let transactions = traffic.truth.transactions;
    let mut reader_config = config.clone();
    reader_config.kafka.enrichment_topic = format!("{tx_topic}-never-written");
    let tx_lines = tail(&reader_config, &tx_topic, transactions + 2);
    let subjects = ureq::get(format!("{}/subjects", registry.ccompat_url()))
        .call()
        .expect("the registry lists its subjects")
        .body_mut()
        .read_to_string()
        .expect("a body");
    assert!(
        !subjects.contains("never-written"),
        "tail registered a schema: {subjects}"
    );
    let errors: Vec<_> = tx_lines
        .iter()
        .filter(|l| l.get("_error").is_some())
        .collect();
    assert_eq!(
        errors.len(),
        2,
        "only the two bad records fail to decode: {errors:?}"
    );
    assert!(
        tx_lines
            .iter()
            .filter(|l| l.get("event_id").is_some())
            .count()
            == transactions,
        "every transaction decoded"
    );
    let enrichment_lines = tail(&config, &config.kafka.enrichment_topic, transactions);
    assert!(
        enrichment_lines.iter().all(|l| l.get("_error").is_none()),
        "{:?}",
        enrichment_lines.iter().find(|l| l.get("_error").is_some())
    );

    // The ids that are not v2's: v1 (1), the unknown one, the unresolvable one.
    let not_v2 = [1, 987_654, unresolvable_id];
    redrive_and_replay_decode_by_the_registry(&stack, &config, &producers, &traffic, &not_v2).await;
}

/// `redrive` and `replay` with the registry configured decode records written under its ids.
/// Redrive: the dead-letter topic holds the two bad records and, added here, a v2 transaction
/// as if its enrichment record had been refused (`publish_failed`, its writes applied): the
/// v2 record is enriched again and counts nothing twice, the bad two are dead-lettered again
/// with the registry's answers. Replay: a dry run decodes all but the bad two; v1 and v2
/// records from the earliest offsets into a shadow namespace reproduce every live feature and
/// blacklist key; the bad two are dead-lettered with the replay marker.
async fn redrive_and_replay_decode_by_the_registry(
    stack: &LocalStack,
    config: &Config,
    registry: &SchemaRegistry,
    traffic: &Traffic,
    not_v2: &[u32],
) {
    let tx_topic = &config.kafka.transactions_topic;
    let v2_record = read_all(stack, tx_topic)
        .into_iter()
        .find(|m| {
            let (id, _) = wire::split_frame(m.payload.as_deref().unwrap_or_default()).unwrap();
            !not_v2.contains(&id)
        })
        .expect("a v2 transaction in the topic");
    let v2_event = Codec::registry_reader(DEFAULT_MAX_MESSAGE_BYTES).unwrap();
    let v2_id = wire::split_frame(v2_record.payload.as_deref().unwrap_or_default())
        .unwrap()
        .0;
    let v2_text = registry.schema(v2_id).await.expect("v2 by id").text;
    v2_event
        .add_writer_schema(v2_id, &v2_text, "registry")
        .unwrap();
    let event_id = v2_event
        .decode_transaction(v2_record.payload.as_deref().unwrap_or_default())
        .expect("a v2 transaction")
        .event_id;
    let reason = DeadLetterReason::poison(DeadLetterKind::PublishFailed, "refused (test)");
    let mut headers = OwnedHeaders::new();
    for (key, value) in dead_letter_headers(&v2_record, &reason) {
        headers = headers.insert(Header {
            key: &key,
            value: value.as_deref(),
        });
    }
    let dlq = config.kafka.dlq_topic(tx_topic);
    stack
        .producer()
        .unwrap()
        .send(
            FutureRecord::<[u8], [u8]>::to(&dlq)
                .payload(v2_record.payload.as_deref().unwrap_or_default())
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let options = RedriveOptions {
        topic: dlq.clone(),
        filters: Vec::new(),
        batch_size: 100,
    };
    let summary = redrive(config, &options, Metrics::unregistered(), |_, _| {})
        .await
        .expect("redrive");
    assert_eq!(
        (
            summary.redriven,
            summary.enriched,
            summary.dead_lettered_again
        ),
        (3, 1, 2),
        "{summary:?}"
    );
    let again: Vec<_> = read_all(stack, &dlq)
        .into_iter()
        .filter(|l| l.header(header::KIND) == Some("unknown_schema"))
        .collect();
    assert_eq!(again.len(), 2, "the unknown id, dead-lettered twice now");
    assert!(
        again.iter().all(|l| l
            .header(header::MESSAGE)
            .unwrap_or_default()
            .contains("HTTP 404")),
        "the registry's answer each time"
    );
    let enriched = enrichment_counts(stack, config);
    assert_eq!(enriched.get(&event_id), Some(&2), "live and redrive");
    let report = verification(stack, traffic).await;
    assert!(report.is_exact(), "the redrive counted nothing twice");

    // A dry run decodes by the registry's ids too: only the two bad records fail.
    let mut replay_options = ReplayOptions::new(config, StartBound::Earliest);
    replay_options.namespace = "shadow".to_owned();
    replay_options.dry_run = true;
    let dry = replay(config, &replay_options, Metrics::unregistered(), &mut Quiet)
        .await
        .expect("a dry run runs");
    assert_eq!(dry.dead_lettered, 2, "{dry}");
    assert_eq!(dry.replayed(), traffic.events.len() as u64 + 2, "{dry}");
    replay_options.dry_run = false;
    let summary = replay(config, &replay_options, Metrics::unregistered(), &mut Quiet)
        .await
        .expect("replay runs");
    assert_eq!(
        summary.replayed(),
        traffic.events.len() as u64 + 2,
        "{summary}"
    );
    assert_eq!(summary.dead_lettered, 2, "{summary}");
    for kind in ["ft", "bl"] {
        let live = snapshot(stack, "", kind);
        let shadow = snapshot(stack, "shadow:", kind);
        assert!(!live.is_empty(), "live {kind} keys exist");
        let diff = differences(&live, &shadow);
        assert!(
            diff.is_empty(),
            "{kind} keys differ: {:?}",
            &diff[..diff.len().min(5)]
        );
    }
}

/// `fds-worker tail --topic <topic> --from-beginning --count <count>` with `config`, its JSON
/// lines.
fn tail(config: &Config, topic: &str, count: usize) -> Vec<serde_json::Value> {
    let count = count.to_string();
    let out = fds_worker_cli(
        config,
        &[
            "tail",
            "--topic",
            topic,
            "--from-beginning",
            "--count",
            &count,
        ],
    );
    out.lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// `fds-worker <args>` with `config` (written to a file), bounded to 2 minutes (a tail that
/// found fewer records would follow the topic for ever); its stdout.
fn fds_worker_cli(config: &Config, args: &[&str]) -> String {
    let dir = std::env::temp_dir().join(common::random_name("cli-config"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("worker.toml");
    let mut config = config.clone();
    // Schema files relative to the repository, not to the config file's directory.
    config.schemas.base_dir = Some(env!("CARGO_MANIFEST_DIR").into());
    std::fs::write(&file, toml::to_string(&config).unwrap()).unwrap();
    let out = std::process::Command::new("timeout")
        .arg("120")
        .arg(env!("CARGO_BIN_EXE_fds-worker"))
        .arg("--config")
        .arg(&file)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("FDS_CONFIG")
        .output()
        .expect("fds-worker runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "fds-worker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `blacklist add` and `generate` with a registry write under the registry's ids (here not
/// the catalog's: other schemas took the first ids), and the worker reading through the
/// registry applies them — none dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producing_ops_commands_write_under_the_registrys_ids() {
    let _serial = SERIAL.lock().await;
    let stack = start_stack().await;
    let registry = tokio::task::spawn_blocking(|| Apicurio::start().expect("registry"))
        .await
        .unwrap();
    let mut config = test_config(&stack);
    config.schemas.registry.urls = vec![registry.ccompat_url()];
    let others = client(&registry);
    for n in 0..3 {
        let schema = format!(r#"{{"type":"record","name":"Other{n}","fields":[]}}"#);
        others
            .register(&format!("other-{n}-value"), &schema)
            .await
            .unwrap();
    }
    let ip = "198.51.100.77";
    let added = fds_worker_cli(&config, &["blacklist", "add", "ip", ip, "--level", "FRAUD"]);
    assert!(added.starts_with("published ADD ip"), "{added}");
    let generated = fds_worker_cli(&config, &["generate", "--count", "200", "--rate", "0"]);
    assert!(generated.starts_with("published"), "{generated}");
    let verdict_topic = config.kafka.verdict_topics[0].clone();
    let ids = |topic: &str| -> HashSet<u32> {
        read_all(&stack, topic)
            .iter()
            .map(|r| {
                wire::split_frame(r.payload.as_deref().unwrap_or_default())
                    .unwrap()
                    .0
            })
            .collect()
    };
    let verdict_id = others
        .register(&format!("{verdict_topic}-value"), FRAUD_VERDICT_AVSC)
        .await
        .unwrap();
    let transaction_id = others
        .register(
            &format!("{}-value", config.kafka.transactions_topic),
            TRANSACTION_AVSC,
        )
        .await
        .unwrap();
    assert!(
        verdict_id > 3 && transaction_id > 3,
        "after the other schemas"
    );
    assert_eq!(ids(&verdict_topic), HashSet::from([verdict_id]));
    assert_eq!(
        ids(&config.kafka.transactions_topic),
        HashSet::from([transaction_id])
    );

    let events = read_all(&stack, &verdict_topic).len()
        + read_all(&stack, &config.kafka.transactions_topic).len();
    let worker = start_worker(&config);
    let done = worker
        .wait_finished(&config, events as u64, Duration::from_secs(120))
        .await;
    worker.stop().await;
    assert_eq!(done.dead_lettered, 0, "{done:?}");
    assert!(done.enriched > 0, "{done:?}");
    let check = fds_worker_cli(&config, &["blacklist", "check", "ip", ip, "--json"]);
    let shown: serde_json::Value = serde_json::from_str(check.trim()).unwrap();
    assert_eq!(shown["listed"], true, "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_down_at_start_is_a_retryable_stop_and_an_incompatible_schema_a_fatal_one() {
    let _serial = SERIAL.lock().await;
    let stack = start_stack().await;
    let registry = tokio::task::spawn_blocking(|| Apicurio::start().expect("registry"))
        .await
        .unwrap();
    let mut config = test_config(&stack);
    config.schemas.registry.urls = vec![registry.ccompat_url()];
    config.schemas.registry.request_timeout = Duration::from_secs(1);
    config.schemas.registry.retry_backoff = Duration::from_millis(100);
    config.schemas.registry.retry_backoff_max = Duration::from_millis(500);

    // Frozen while the worker starts: the enrichment schema cannot be registered. The worker
    // stops after its bounded attempts with a retryable error (a supervisor restarts it),
    // never a fatal one.
    registry.pause().unwrap();
    let started = std::time::Instant::now();
    let down = run_error(&config).await;
    registry.resume().unwrap();
    match &down {
        RunError::Registry(error) => {
            assert_eq!(error.kind, RegistryErrorKind::Unavailable, "{error}");
            assert!(!down.is_fatal(), "{down}");
        }
        other => panic!("expected the registry's unavailability, got {other}"),
    }
    println!(
        "[registry] down at start: stopped after {:?}: {down}",
        started.elapsed()
    );
    // An earlier Enrichment without fields, and BACKWARD: the worker's schema, whose fields
    // have no defaults, cannot read what that one wrote.
    let subject = format!("{}-value", config.kafka.enrichment_topic);
    let earlier =
        r#"{"type":"record","name":"Enrichment","namespace":"io.fds.events","fields":[]}"#;
    client(&registry)
        .register(&subject, earlier)
        .await
        .expect("the earlier enrichment schema");
    let url = format!("{}/config/{subject}", registry.ccompat_url());
    let response = tokio::task::spawn_blocking(move || {
        ureq::put(&url)
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .send(r#"{"compatibility":"BACKWARD"}"#)
            .expect("PUT the subject's compatibility")
            .status()
    })
    .await
    .unwrap();
    assert_eq!(response, 200);
    match run_error(&config).await {
        RunError::Registry(error) => {
            assert_eq!(error.kind, RegistryErrorKind::Rejected, "{error}");
            assert_eq!(error.status, Some(409), "{error}");
            assert!(error.to_string().contains(&subject), "{error}");
            assert!(!error.message.is_empty(), "the registry's message: {error}");
            assert!(RunError::Registry(error).is_fatal());
        }
        other => panic!("expected the registry's refusal, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_not_ready_while_an_id_waits_for_a_frozen_registry() {
    let _serial = SERIAL.lock().await;
    let stack = start_stack().await;
    let registry = tokio::task::spawn_blocking(|| Apicurio::start().expect("registry"))
        .await
        .unwrap();
    let mut config = test_config(&stack);
    config.metrics.listen = "127.0.0.1:0".parse().unwrap();
    config.metrics.poll_interval = Duration::from_millis(200);
    config.schemas.registry.urls = vec![registry.ccompat_url()];
    config.schemas.registry.retry_backoff = Duration::from_millis(100);
    config.schemas.registry.retry_backoff_max = Duration::from_secs(1);
    // Registered first in a fresh registry: id 1, the one `Codec::builtin` writes.
    let tx_subject = format!("{}-value", config.kafka.transactions_topic);
    let v1 = client(&registry)
        .register(&tx_subject, TRANSACTION_AVSC)
        .await;
    assert_eq!(v1, Ok(1));

    let service = Service::start(&config).await.expect("service starts");
    let addr = service.addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(async move {
        service
            .run(async {
                let _ = stopped.await;
            })
            .await
            .expect("worker runs")
    });
    let wait = Duration::from_secs(60);
    ops::wait_http(addr, "/readyz", "ready", wait, |s, b| {
        s == 200 && b == "ready\n"
    })
    .await;

    registry.pause().unwrap();
    let tx = traffic(&config, 1, 7, Duration::from_secs(1))
        .events
        .into_iter()
        .find_map(|e| match e {
            GeneratedEvent::Transaction(tx) => Some(tx),
            _ => None,
        })
        .expect("a transaction");
    let payload = Codec::builtin().encode_transaction(&tx).unwrap();
    stack
        .producer()
        .unwrap()
        .send(
            FutureRecord::<[u8], [u8]>::to(&config.kafka.transactions_topic).payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let (_, body) = ops::wait_http(addr, "/readyz", "503 naming the registry", wait, |s, b| {
        s == 503 && b.contains("Schema Registry unavailable: 1 writer schema id(s) waiting")
    })
    .await;
    assert!(body.starts_with("not ready: "), "{body}");
    let (_, metrics) = ops::wait_http(addr, "/metrics", "the waiting id", wait, |_, m| {
        sample(m, "fds_schema_registry_unavailable") == Some(1.0)
    })
    .await;
    assert_eq!(sample(&metrics, "fds_ready"), Some(0.0), "{metrics}");

    registry.resume().unwrap();
    ops::wait_http(addr, "/readyz", "ready after the resume", wait, |s, _| {
        s == 200
    })
    .await;
    let (_, metrics) = ops::wait_http(addr, "/metrics", "the record enriched", wait, |_, m| {
        ops::sum(m, "fds_events_enriched_total") == 1.0
    })
    .await;
    assert_eq!(
        sample(&metrics, "fds_schema_registry_unavailable"),
        Some(0.0)
    );
    assert_eq!(ops::sum(&metrics, "fds_events_dead_lettered_total"), 0.0);
    let _ = stop.send(());
    run.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_leaving_while_its_partitions_hold_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let stack = start_stack().await;
    let registry = tokio::task::spawn_blocking(|| Apicurio::start().expect("registry"))
        .await
        .unwrap();
    let (_producers, config, v2_writer) = with_v1_and_v2(&stack, &registry).await;

    // Two workers share the partitions; only v2 records, whose id neither has seen.
    let a = start_worker(&config);
    let b = start_worker(&config);
    let traffic = traffic(&config, 300, 19, Duration::from_secs(20));
    // Started (the enrichment schema registered) and sharing the partitions.
    common::wait_until_async(
        "both workers assigned partitions",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || async {
            let assigned = (
                a.metrics.assigned_partitions.get(),
                b.metrics.assigned_partitions.get(),
            );
            match assigned {
                (1.., 1..) if assigned.0 + assigned.1 == 2 * i64::from(PARTITIONS) => Ok(()),
                other => Err(format!("assigned (a, b): {other:?}")),
            }
        },
    )
    .await;
    registry.pause().unwrap();
    let kafka = stack.producer().unwrap();
    let verdict_topic = config.kafka.verdict_topics[0].clone();
    let tx_topic = config.kafka.transactions_topic.clone();
    produce(
        &kafka,
        &v2_writer,
        &traffic.events,
        &tx_topic,
        &verdict_topic,
        None,
    )
    .await
    .unwrap();
    common::wait_until_async(
        "both workers waiting for the frozen registry",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || async {
            let waiting = (
                a.metrics.schema_registry_unavailable.get(),
                b.metrics.schema_registry_unavailable.get(),
            );
            match waiting {
                (1.., 1..) => Ok(()),
                other => Err(format!("waiting ids (a, b): {other:?}")),
            }
        },
    )
    .await;
    // B leaves with its partitions held: its records were never taken, A reads them again.
    let b_summary = b.stop().await;
    assert_eq!(b_summary.enriched, 0, "{b_summary:?}");
    registry.resume().unwrap();
    let done = a
        .wait_finished(
            &config,
            traffic.events.len() as u64,
            Duration::from_secs(120),
        )
        .await;
    assert_eq!(done.dead_lettered, 0, "{done:?}");
    a.stop().await;
    let letters = read_all(&stack, &config.kafka.dlq_topic(&tx_topic));
    assert!(letters.is_empty(), "{} dead letters", letters.len());
    let report = verification(&stack, &traffic).await;
    assert!(
        report.is_exact(),
        "lost {:?} doubled {:?} blacklist {:?}",
        &report.lost[..report.lost.len().min(3)],
        &report.doubled[..report.doubled.len().min(3)],
        report.blacklist_problems
    );
}
