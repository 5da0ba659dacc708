//! Kafka access at start and while running: a wrong password, an untrusted CA, a missing client
//! certificate or a missing ACL stop the worker with a message naming the setting or the
//! resource to check — bounded in time, never a silent stall. Decided from librdkafka's error
//! codes (`_AUTHENTICATION`, `_SSL`, `*_AUTHORIZATION_FAILED`), not from message text.
//!
//! Brokers that are merely unreachable are not an access error: the worker starts and waits for
//! them (a whole-Kafka outage is waited out, and `/readyz` says not ready meanwhile).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaConfig;

/// How long the start-up check waits for the brokers' answer before going on without it.
pub const START_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

const SASL_SETTINGS: &str =
    "kafka.security.sasl_mechanism, sasl_username and sasl_password (or sasl_password_file)";
const TLS_SETTINGS: &str = "kafka.security.ssl_ca_location (the CA that signed the brokers' \
     certificates) and, where the brokers require client certificates, \
     kafka.security.ssl_certificate_location and ssl_key_location";

/// The brokers refused the worker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// SASL authentication failed (wrong mechanism, user or password).
    #[error("SASL authentication with the brokers failed: {reason} (check {SASL_SETTINGS})")]
    Authentication {
        /// librdkafka's words.
        reason: String,
    },
    /// The TLS handshake failed (untrusted CA, missing or rejected client certificate).
    #[error("TLS handshake with the brokers failed: {reason} (check {TLS_SETTINGS})")]
    Tls {
        /// librdkafka's words.
        reason: String,
    },
    /// The principal may not use a topic.
    #[error(
        "not authorized for topic `{topic}` ({code}): the worker's principal needs Read and \
         Describe on its source topics, Write and Describe on the enrichment and dead-letter \
         topics (see the README's ACL list)"
    )]
    Topic {
        /// The topic.
        topic: String,
        /// The broker's error code.
        code: String,
    },
    /// The principal may not use the consumer group.
    #[error(
        "not authorized for consumer group `{group}` ({code}): the worker's principal needs Read \
         on it (see the README's ACL list)"
    )]
    Group {
        /// The group (`kafka.group_id`).
        group: String,
        /// The broker's error code.
        code: String,
    },
}

/// Records the errors librdkafka reports on its event queue.
#[derive(Default)]
struct Heard(Mutex<Vec<(RDKafkaErrorCode, String)>>);

impl ClientContext for Heard {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(code) = error.rdkafka_error_code() {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((code, reason.to_owned()));
        }
    }
}

impl ConsumerContext for Heard {}

/// Connects with the worker's consumer settings and checks that the brokers accept its
/// credentials and let it describe every topic in `topics`; waits at most `timeout` for an
/// answer (blocking: call from `spawn_blocking`). Unreachable brokers are logged, not refused.
pub fn check(kafka: &KafkaConfig, topics: &[String], timeout: Duration) -> Result<(), AccessError> {
    let consumer: BaseConsumer<Heard> =
        match super::consumer_config(kafka).create_with_context(Heard::default()) {
            Ok(consumer) => consumer,
            // A config librdkafka refuses surfaces again, with its own message, at the real
            // consumer's creation.
            Err(_) => return Ok(()),
        };
    if let Some(refused) = tls_refusal(kafka) {
        return Err(refused);
    }
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<&String> = topics.iter().collect();
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            tracing::warn!(
                brokers = %kafka.brokers,
                ?timeout,
                "no answer from the Kafka brokers yet; starting anyway and waiting for them"
            );
            return Ok(());
        }
        let topic = pending[0];
        match consumer.fetch_metadata(Some(topic), left.min(Duration::from_secs(1))) {
            Ok(metadata) => {
                let refused = metadata
                    .topics()
                    .iter()
                    .filter_map(|t| t.error().map(RDKafkaErrorCode::from))
                    .find(|code| is_authorization(*code));
                if let Some(code) = refused {
                    return Err(AccessError::Topic {
                        topic: topic.clone(),
                        code: format!("{code:?}"),
                    });
                }
                pending.remove(0);
            }
            Err(_) => {
                // Errors from the handshakes arrive on the event queue.
                let _ = consumer.poll(Duration::from_millis(100));
                if let Some(error) = refusal(&consumer.context().0) {
                    return Err(error);
                }
            }
        }
    }
    Ok(())
}

/// How long the TLS probe waits for a broker's answer.
const TLS_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// A TLS handshake with the first bootstrap broker, with the configured CA and client
/// certificate: a broker that refuses the client certificate (missing, or not signed by a CA it
/// trusts) answers with a TLS alert, which librdkafka reports only as a transport failure.
/// rustls gives it as a typed alert. Only the broker's own refusal counts: anything else (no
/// CA file given, unreachable, our own verification) is left to librdkafka.
fn tls_refusal(kafka: &KafkaConfig) -> Option<AccessError> {
    use std::io::Read as _;
    use std::net::ToSocketAddrs as _;

    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    let security = &kafka.security;
    if !security.protocol.uses_tls() {
        return None;
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(security.ssl_ca_location.as_ref()?).ok()? {
        roots.add(cert.ok()?).ok()?;
    }
    // The same `ring` provider the Redis client installs process-wide, named here: the source
    // does not depend on the store.
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots);
    let config = match (
        &security.ssl_certificate_location,
        &security.ssl_key_location,
    ) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .ok()?
                .collect::<Result<Vec<_>, _>>()
                .ok()?;
            let key = PrivateKeyDer::from_pem_file(key).ok()?;
            builder.with_client_auth_cert(chain, key).ok()?
        }
        _ => builder.with_no_client_auth(),
    };
    let broker = kafka.brokers.split(',').next()?.trim();
    let broker = broker.split_once("://").map_or(broker, |(_, rest)| rest);
    let (host, _) = broker.rsplit_once(':')?;
    let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned()).ok()?;
    let address = broker.to_socket_addrs().ok()?.next()?;
    let mut tcp = std::net::TcpStream::connect_timeout(&address, TLS_PROBE_TIMEOUT).ok()?;
    tcp.set_read_timeout(Some(TLS_PROBE_TIMEOUT)).ok()?;
    tcp.set_write_timeout(Some(TLS_PROBE_TIMEOUT)).ok()?;
    let mut connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name).ok()?;
    let mut stream = rustls::Stream::new(&mut connection, &mut tcp);
    // Reading drives the handshake; an accepting broker then waits for a request (a timeout).
    let error = stream.read(&mut [0u8; 1]).err()?;
    match error.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => Some(AccessError::Tls {
            reason: format!("{broker} refused the TLS session with the alert {alert:?}"),
        }),
        _ => None,
    }
}

fn refusal(heard: &Mutex<Vec<(RDKafkaErrorCode, String)>>) -> Option<AccessError> {
    let heard = heard.lock().unwrap_or_else(|e| e.into_inner());
    heard.iter().find_map(|(code, reason)| match code {
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed => {
            Some(AccessError::Authentication {
                reason: reason.clone(),
            })
        }
        RDKafkaErrorCode::SSL => Some(AccessError::Tls {
            reason: reason.clone(),
        }),
        _ => None,
    })
}

fn is_authorization(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
    )
}

/// A consumer error that no retry will fix (an ACL is missing, credentials were revoked), as
/// the error that stops the worker; `None` for the errors librdkafka recovers from itself.
pub fn fatal_consumer_error(error: &KafkaError, kafka: &KafkaConfig) -> Option<AccessError> {
    let code = error.rdkafka_error_code()?;
    let topics = || kafka.source_topics().join("`, `");
    match code {
        RDKafkaErrorCode::GroupAuthorizationFailed => Some(AccessError::Group {
            group: kafka.group_id.clone(),
            code: format!("{code:?}"),
        }),
        RDKafkaErrorCode::TopicAuthorizationFailed => Some(AccessError::Topic {
            topic: topics(),
            code: format!("{code:?}"),
        }),
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed => {
            Some(AccessError::Authentication {
                reason: error.to_string(),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_errors_stop_the_worker_naming_the_group_or_topics() {
        let kafka = KafkaConfig {
            group_id: "fds".into(),
            ..KafkaConfig::default()
        };
        let group = KafkaError::MessageConsumption(RDKafkaErrorCode::GroupAuthorizationFailed);
        let message = fatal_consumer_error(&group, &kafka).unwrap().to_string();
        assert!(message.contains("consumer group `fds`"), "{message}");
        let topic = KafkaError::MessageConsumption(RDKafkaErrorCode::TopicAuthorizationFailed);
        let message = fatal_consumer_error(&topic, &kafka).unwrap().to_string();
        assert!(
            message.contains("`transactions`, `fraud-verdicts`"),
            "{message}"
        );
        let transport = KafkaError::MessageConsumption(RDKafkaErrorCode::BrokerTransportFailure);
        assert_eq!(fatal_consumer_error(&transport, &kafka), None);
    }

    #[test]
    fn handshake_failures_name_the_settings_to_check() {
        let heard = Mutex::new(vec![
            (RDKafkaErrorCode::BrokerTransportFailure, "down".to_owned()),
            (
                RDKafkaErrorCode::SSL,
                "certificate verify failed".to_owned(),
            ),
        ]);
        let message = refusal(&heard).unwrap().to_string();
        assert!(message.contains("ssl_ca_location"), "{message}");
        let heard = Mutex::new(vec![(
            RDKafkaErrorCode::Authentication,
            "Invalid username or password".to_owned(),
        )]);
        let message = refusal(&heard).unwrap().to_string();
        assert!(message.contains("sasl_password"), "{message}");
        assert_eq!(refusal(&Mutex::new(Vec::new())), None);
    }
}
