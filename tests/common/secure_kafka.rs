//! A single-broker Apache Kafka with every client security the worker supports, shared by the
//! security tests of a binary: SASL_PLAINTEXT and SASL_SSL listeners accepting PLAIN and
//! SCRAM-SHA-512, an SSL listener requiring client certificates (mutual TLS), the
//! `StandardAuthorizer` on (deny unless an ACL allows), and a certificate authority made by
//! the test. The harness's `PLAINTEXT` listener stays a super user (topics, traffic, ACLs).

use std::sync::{Arc, OnceLock};

use fds_testkit::localstack::apache_kafka::{
    BrokerTls, KafkaUser, Listener, ListenerSecurity, SaslMechanism as BrokerMechanism,
};
use fds_testkit::localstack::{ApacheKafka, KafkaOptions, TestPki};
use fds_worker::config::{Config, SaslMechanism, Secret, SecurityProtocol};

/// The worker's SASL user.
pub const USER: &str = "fds-worker";
/// Its password (never logged).
pub const PASSWORD: &str = "kafka-Pa55-never-logged";
/// The principal of the PKI's client certificate over mutual TLS (`CN=<name>-client`).
pub const TLS_PRINCIPAL: &str = "User:CN=kafka-client";

/// Listener names.
pub const SASL: &str = "SASL";
/// SASL over TLS.
pub const SASL_TLS: &str = "SASLTLS";
/// Mutual TLS.
pub const MTLS: &str = "MTLS";

/// The broker, its PKI and the directory holding the PKI.
pub struct SecureKafka {
    /// The broker.
    pub kafka: Arc<ApacheKafka>,
    /// The CA, the broker's certificate and a client certificate.
    pub pki: TestPki,
    _dir: tempfile::TempDir,
}

/// The binary's secure broker, started on first use.
pub fn secure_kafka() -> &'static SecureKafka {
    static SHARED: OnceLock<SecureKafka> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::generate(dir.path(), "kafka").expect("the test PKI is made");
        let mechanisms = vec![BrokerMechanism::Plain, BrokerMechanism::ScramSha512];
        let options = KafkaOptions {
            listeners: vec![
                Listener {
                    name: SASL.into(),
                    security: ListenerSecurity::SaslPlaintext {
                        mechanisms: mechanisms.clone(),
                    },
                },
                Listener {
                    name: SASL_TLS.into(),
                    security: ListenerSecurity::SaslSsl { mechanisms },
                },
                Listener {
                    name: MTLS.into(),
                    security: ListenerSecurity::Ssl { client_auth: true },
                },
            ],
            users: vec![KafkaUser {
                name: USER.into(),
                password: PASSWORD.into(),
            }],
            tls: Some(BrokerTls {
                cert_file: pki.node_cert.clone(),
                key_file: pki.node_key.clone(),
                ca_file: pki.ca_cert.clone(),
            }),
            authorizer: true,
            ..KafkaOptions::single()
        };
        SecureKafka {
            kafka: Arc::new(super::start_apache_kafka(options)),
            pki,
            _dir: dir,
        }
    })
}

/// How a test's worker authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// SASL_PLAINTEXT with this mechanism.
    Sasl(SaslMechanism),
    /// SASL_SSL with this mechanism.
    SaslTls(SaslMechanism),
    /// SSL with the PKI's client certificate.
    MutualTls,
}

impl Auth {
    /// The ACL principal of the worker under this authentication.
    pub fn principal(self) -> String {
        match self {
            Auth::MutualTls => TLS_PRINCIPAL.to_owned(),
            Auth::Sasl(_) | Auth::SaslTls(_) => format!("User:{USER}"),
        }
    }
}

impl SecureKafka {
    /// Points `config` at the listener of `auth` with its security settings.
    pub fn secure(&self, config: &mut Config, auth: Auth) {
        let security = &mut config.kafka.security;
        let listener = match auth {
            Auth::Sasl(mechanism) => {
                security.protocol = SecurityProtocol::SaslPlaintext;
                security.sasl_mechanism = Some(mechanism);
                SASL
            }
            Auth::SaslTls(mechanism) => {
                security.protocol = SecurityProtocol::SaslSsl;
                security.sasl_mechanism = Some(mechanism);
                security.ssl_ca_location = Some(self.pki.ca_cert.clone());
                SASL_TLS
            }
            Auth::MutualTls => {
                security.protocol = SecurityProtocol::Ssl;
                security.ssl_ca_location = Some(self.pki.ca_cert.clone());
                security.ssl_certificate_location = Some(self.pki.client_cert.clone());
                security.ssl_key_location = Some(self.pki.client_key.clone());
                MTLS
            }
        };
        if matches!(auth, Auth::Sasl(_) | Auth::SaslTls(_)) {
            security.sasl_username = Some(USER.into());
            security.sasl_password = Some(Secret::new(PASSWORD));
        }
        config.kafka.brokers = self.kafka.listener_bootstrap(listener).unwrap();
    }

    /// Grants `principal` the README's ACL set for `config`'s topics and group, except the
    /// ACLs of `except` (a topic or the group).
    pub fn grant(&self, principal: &str, config: &Config, except: Option<&str>) {
        let kafka = &config.kafka;
        let keep = |name: &String| Some(name.as_str()) != except;
        let sources: Vec<String> = kafka
            .source_topics()
            .iter()
            .map(|t| t.to_string())
            .filter(keep)
            .collect();
        let outputs: Vec<String> = kafka
            .source_topics()
            .iter()
            .map(|t| kafka.dlq_topic(t))
            .chain([kafka.enrichment_topic.clone()])
            .filter(keep)
            .collect();
        let mut read = vec!["--allow-principal", principal];
        read.extend(["--operation", "Read", "--operation", "Describe"]);
        for topic in &sources {
            read.extend(["--topic", topic]);
        }
        if keep(&kafka.group_id) {
            read.extend(["--group", &kafka.group_id]);
        }
        self.kafka.add_acl(&read).expect("ACLs for reading");
        let mut write = vec!["--allow-principal", principal];
        write.extend(["--operation", "Write", "--operation", "Describe"]);
        for topic in &outputs {
            write.extend(["--topic", topic]);
        }
        self.kafka.add_acl(&write).expect("ACLs for writing");
        // Exactly-once delivery: the transactional ids (`<group_id>-…`, see start_worker).
        if keep(&kafka.group_id) {
            let prefix = format!("{}-", kafka.group_id);
            let transactional = [
                "--allow-principal",
                principal,
                "--operation",
                "Write",
                "--operation",
                "Describe",
                "--transactional-id",
                &prefix,
                "--resource-pattern-type",
                "prefixed",
            ];
            self.kafka
                .add_acl(&transactional)
                .expect("ACLs for transactions");
        }
    }
}
