//! Client listeners beyond the harness's plaintext one: TLS, SASL (PLAIN, SCRAM) and mutual
//! TLS, written as `server.properties` lines (pure, no I/O).

use std::path::PathBuf;

/// A SASL mechanism a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// `PLAIN`: users and passwords in the listener's JAAS config.
    Plain,
    /// `SCRAM-SHA-256`: credentials stored in the cluster metadata.
    ScramSha256,
    /// `SCRAM-SHA-512`: credentials stored in the cluster metadata.
    ScramSha512,
}

impl SaslMechanism {
    /// The mechanism's name, as Kafka and librdkafka spell it.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// How a listener secures its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerSecurity {
    /// TLS; with `client_auth` every client must present a certificate signed by the CA
    /// (`ssl.client.auth=required`, mutual TLS).
    Ssl {
        /// Require a client certificate.
        client_auth: bool,
    },
    /// SASL without TLS.
    SaslPlaintext {
        /// Accepted mechanisms.
        mechanisms: Vec<SaslMechanism>,
    },
    /// SASL over TLS (no client certificate required).
    SaslSsl {
        /// Accepted mechanisms.
        mechanisms: Vec<SaslMechanism>,
    },
}

impl ListenerSecurity {
    /// The `security.protocol` of the listener.
    pub fn protocol(&self) -> &'static str {
        match self {
            ListenerSecurity::Ssl { .. } => "SSL",
            ListenerSecurity::SaslPlaintext { .. } => "SASL_PLAINTEXT",
            ListenerSecurity::SaslSsl { .. } => "SASL_SSL",
        }
    }

    fn uses_tls(&self) -> bool {
        !matches!(self, ListenerSecurity::SaslPlaintext { .. })
    }

    fn mechanisms(&self) -> &[SaslMechanism] {
        match self {
            ListenerSecurity::Ssl { .. } => &[],
            ListenerSecurity::SaslPlaintext { mechanisms }
            | ListenerSecurity::SaslSsl { mechanisms } => mechanisms,
        }
    }
}

/// A client listener every broker opens besides the harness's `PLAINTEXT` one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Listener name: upper case letters, digits and `_`, unique, not `PLAINTEXT` or
    /// `CONTROLLER` (e.g. `SCRAM`, `MTLS`).
    pub name: String,
    /// Its security.
    pub security: ListenerSecurity,
}

/// A user the brokers know: a SCRAM credential for both SHA-256 and SHA-512 (stored in the
/// metadata log at format time) and a PLAIN user on every SASL listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaUser {
    /// User name (the principal is `User:<name>`).
    pub name: String,
    /// Password.
    pub password: String,
}

/// The brokers' TLS material, as PEM files (Kafka's PEM key store type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerTls {
    /// The brokers' certificate (for `127.0.0.1`/`localhost`).
    pub cert_file: PathBuf,
    /// Its private key, unencrypted PKCS#8.
    pub key_file: PathBuf,
    /// The CA that verifies client certificates (the trust store).
    pub ca_file: PathBuf,
}

/// `server.properties` lines for `listeners`; `keystore` is the PEM file holding the brokers'
/// key and certificate chain (written by the caller from [`BrokerTls`]).
pub(crate) fn listener_properties(
    listeners: &[Listener],
    users: &[KafkaUser],
    tls: Option<(&BrokerTls, &std::path::Path)>,
) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    for listener in listeners {
        let prefix = format!("listener.name.{}", listener.name.to_lowercase());
        let mechanisms = listener.security.mechanisms();
        if !mechanisms.is_empty() {
            let names: Vec<&str> = mechanisms.iter().map(|m| m.name()).collect();
            lines.push((format!("{prefix}.sasl.enabled.mechanisms"), names.join(",")));
        }
        for mechanism in mechanisms {
            let module = match mechanism {
                SaslMechanism::Plain => {
                    let mut module =
                        "org.apache.kafka.common.security.plain.PlainLoginModule required"
                            .to_owned();
                    for user in users {
                        module.push_str(&format!(
                            " user_{}=\"{}\"",
                            user.name,
                            jaas_escape(&user.password)
                        ));
                    }
                    module
                }
                SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                    "org.apache.kafka.common.security.scram.ScramLoginModule required".to_owned()
                }
            };
            lines.push((
                format!(
                    "{prefix}.{}.sasl.jaas.config",
                    mechanism.name().to_lowercase()
                ),
                format!("{module};"),
            ));
        }
        if listener.security.uses_tls()
            && let Some((tls, keystore)) = tls
        {
            lines.push((format!("{prefix}.ssl.keystore.type"), "PEM".into()));
            lines.push((
                format!("{prefix}.ssl.keystore.location"),
                keystore.display().to_string(),
            ));
            lines.push((format!("{prefix}.ssl.truststore.type"), "PEM".into()));
            lines.push((
                format!("{prefix}.ssl.truststore.location"),
                tls.ca_file.display().to_string(),
            ));
            let client_auth = matches!(
                listener.security,
                ListenerSecurity::Ssl { client_auth: true }
            );
            lines.push((
                format!("{prefix}.ssl.client.auth"),
                if client_auth { "required" } else { "none" }.into(),
            ));
        }
    }
    lines
}

/// `--add-scram` arguments of `StorageTool format`: every user for both SCRAM mechanisms.
pub(crate) fn scram_arguments(users: &[KafkaUser]) -> Vec<String> {
    let mut args = Vec::new();
    for user in users {
        for mechanism in [SaslMechanism::ScramSha256, SaslMechanism::ScramSha512] {
            args.push("--add-scram".to_owned());
            args.push(format!(
                "{}=[name={},password={}]",
                mechanism.name(),
                user.name,
                user.password
            ));
        }
    }
    args
}

fn jaas_escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> KafkaUser {
        KafkaUser {
            name: "fds".into(),
            password: "p\"w".into(),
        }
    }

    #[test]
    fn a_sasl_listener_gets_its_mechanisms_and_jaas_modules() {
        let listener = Listener {
            name: "SASL_PLAIN".into(),
            security: ListenerSecurity::SaslPlaintext {
                mechanisms: vec![SaslMechanism::Plain, SaslMechanism::ScramSha512],
            },
        };
        let lines = listener_properties(&[listener], &[user()], None);
        let get = |key: &str| {
            lines
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("{key} missing in {lines:?}"))
        };
        assert_eq!(
            get("listener.name.sasl_plain.sasl.enabled.mechanisms"),
            "PLAIN,SCRAM-SHA-512"
        );
        assert!(
            get("listener.name.sasl_plain.plain.sasl.jaas.config").contains(r#"user_fds="p\"w";"#)
        );
        assert!(
            get("listener.name.sasl_plain.scram-sha-512.sasl.jaas.config")
                .starts_with("org.apache.kafka.common.security.scram.ScramLoginModule")
        );
        assert!(!lines.iter().any(|(k, _)| k.contains("ssl.")));
    }

    #[test]
    fn a_mutual_tls_listener_requires_client_certificates() {
        let tls = BrokerTls {
            cert_file: "/c.pem".into(),
            key_file: "/k.pem".into(),
            ca_file: "/ca.pem".into(),
        };
        let listener = Listener {
            name: "MTLS".into(),
            security: ListenerSecurity::Ssl { client_auth: true },
        };
        let lines = listener_properties(
            &[listener],
            &[],
            Some((&tls, std::path::Path::new("/ks.pem"))),
        );
        assert!(lines.contains(&(
            "listener.name.mtls.ssl.client.auth".into(),
            "required".into()
        )));
        assert!(lines.contains(&(
            "listener.name.mtls.ssl.keystore.location".into(),
            "/ks.pem".into()
        )));
    }

    #[test]
    fn scram_users_are_added_for_both_mechanisms() {
        let args = scram_arguments(&[user()]);
        assert_eq!(
            args,
            [
                "--add-scram",
                "SCRAM-SHA-256=[name=fds,password=p\"w]",
                "--add-scram",
                "SCRAM-SHA-512=[name=fds,password=p\"w]"
            ]
        );
    }
}
