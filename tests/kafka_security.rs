//! Kafka security end to end, on a real Apache Kafka broker with the `StandardAuthorizer` on:
//! - SASL/SCRAM-SHA-512 and SASL/PLAIN, each over `SASL_PLAINTEXT` and `SASL_SSL`, and mutual TLS:
//!   each a full authenticated session in which the worker consumes, writes Redis exactly and
//!   publishes, with its principal allowed exactly the README's ACL set;
//! - a missing ACL (on the enrichment topic, on the group) stops the worker with an error naming
//!   the topic or the group;
//! - a wrong password, an unknown CA, a missing client certificate: the worker exits at start
//!   naming the setting to check, bounded in time.

mod common;

use std::time::Duration;

use common::secure_kafka::{Auth, SecureKafka, secure_kafka};
use common::worker::{
    assert_enriched, assert_ground_truth, publish, run_error, start_worker, test_config, traffic,
    wait_for_enrichment,
};
use fds_testkit::demo::{KafkaSetup, LocalStack};
use fds_testkit::localstack::{ClusterOptions, TestPki};
use fds_worker::config::{SaslMechanism, Secret};
use fds_worker::pipeline::RunError;
use fds_worker::source::access::AccessError;

async fn stack_on(secure: &SecureKafka) -> LocalStack {
    let kafka = KafkaSetup::Shared(secure.kafka.clone());
    tokio::task::spawn_blocking(move || {
        LocalStack::start_with(ClusterOptions::default(), kafka, common::worker::PARTITIONS)
            .expect("local stack")
    })
    .await
    .unwrap()
}

/// A worker authenticating with `auth`, allowed exactly the README's ACLs, runs a full session.
async fn full_session(auth: Auth) {
    let secure = tokio::task::spawn_blocking(secure_kafka).await.unwrap();
    let stack = stack_on(secure).await;
    let mut config = test_config(&stack);
    secure.secure(&mut config, auth);
    let grant = config.clone();
    tokio::task::spawn_blocking(move || secure_kafka().grant(&auth.principal(), &grant, None))
        .await
        .unwrap();
    let traffic = traffic(&config, 300, 71, Duration::from_secs(5));
    publish(&stack, &config, &traffic, None).await;
    let worker = start_worker(&config);
    let counts = wait_for_enrichment(&stack, &config, &traffic, || 0).await;
    let summary = worker.stop().await;
    println!("[kafka security] {auth:?}: {summary:?}");
    assert_enriched(&counts, &traffic, false);
    assert_ground_truth(&stack, &traffic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_512_over_sasl_plaintext_runs_a_full_session() {
    full_session(Auth::Sasl(SaslMechanism::ScramSha512)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_over_sasl_plaintext_runs_a_full_session() {
    full_session(Auth::Sasl(SaslMechanism::Plain)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_512_over_sasl_ssl_runs_a_full_session() {
    full_session(Auth::SaslTls(SaslMechanism::ScramSha512)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_over_sasl_ssl_runs_a_full_session() {
    full_session(Auth::SaslTls(SaslMechanism::Plain)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_runs_a_full_session() {
    full_session(Auth::MutualTls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_acl_stops_the_worker_naming_the_topic_or_the_group() {
    let secure = tokio::task::spawn_blocking(secure_kafka).await.unwrap();
    let stack = stack_on(secure).await;
    let auth = Auth::Sasl(SaslMechanism::ScramSha512);

    // No ACL on the enrichment topic: refused at start, naming it.
    let mut config = test_config(&stack);
    secure.secure(&mut config, auth);
    let (grant, topic) = (config.clone(), config.kafka.enrichment_topic.clone());
    tokio::task::spawn_blocking(move || {
        secure_kafka().grant(&auth.principal(), &grant, Some(&topic))
    })
    .await
    .unwrap();
    let error = run_error(&config).await;
    println!("[kafka security] no ACL on the enrichment topic: {error}");
    assert!(
        matches!(&error, RunError::KafkaAccess(AccessError::Topic { topic, .. })
            if *topic == config.kafka.enrichment_topic),
        "{error}"
    );
    assert!(error.is_fatal());

    // No ACL on the group: the group join is refused, the worker stops naming the group.
    let mut config = test_config(&stack);
    secure.secure(&mut config, auth);
    let (grant, group) = (config.clone(), config.kafka.group_id.clone());
    tokio::task::spawn_blocking(move || {
        secure_kafka().grant(&auth.principal(), &grant, Some(&group))
    })
    .await
    .unwrap();
    let error = run_error(&config).await;
    println!("[kafka security] no ACL on the group: {error}");
    assert!(
        error.to_string().contains(&config.kafka.group_id),
        "{error}"
    );
    assert!(error.is_fatal());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_unknown_ca_and_missing_client_certificate_fail_at_start() {
    let secure = tokio::task::spawn_blocking(secure_kafka).await.unwrap();
    let stack = stack_on(secure).await;

    let mut config = test_config(&stack);
    secure.secure(&mut config, Auth::Sasl(SaslMechanism::ScramSha512));
    config.kafka.security.sasl_password = Some(Secret::new("wrong-Pa55"));
    let error = run_error(&config).await.to_string();
    println!("[kafka security] wrong password: {error}");
    assert!(error.contains("sasl_password"), "{error}");
    assert!(!error.contains("wrong-Pa55"), "{error}");

    let other = tempfile::tempdir().unwrap();
    let other = TestPki::generate(other.path(), "other").unwrap();
    let mut config = test_config(&stack);
    secure.secure(&mut config, Auth::SaslTls(SaslMechanism::ScramSha512));
    config.kafka.security.ssl_ca_location = Some(other.ca_cert.clone());
    let error = run_error(&config).await.to_string();
    println!("[kafka security] unknown CA: {error}");
    assert!(error.contains("ssl_ca_location"), "{error}");

    let mut config = test_config(&stack);
    secure.secure(&mut config, Auth::MutualTls);
    config.kafka.security.ssl_certificate_location = None;
    config.kafka.security.ssl_key_location = None;
    let error = run_error(&config).await.to_string();
    println!("[kafka security] no client certificate: {error}");
    assert!(error.contains("ssl_certificate_location"), "{error}");
}
