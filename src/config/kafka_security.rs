//! `[kafka.security]`: SASL and TLS settings, and their librdkafka options.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::check::Check;
use super::{ConfigError, Secret, de};

/// `security.protocol` in librdkafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// No TLS, no SASL.
    #[default]
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL without TLS.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// The librdkafka value.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    /// Whether the protocol authenticates with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    /// Whether the protocol encrypts with TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
}

/// `sasl.mechanism` in librdkafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    /// Username and password in the clear (use with `sasl_ssl`).
    #[serde(rename = "PLAIN")]
    Plain,
    /// SCRAM with SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// SCRAM with SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// The librdkafka value.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// Kafka authentication and TLS. Paths are used as given (relative to the working directory).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSecurity {
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`. Default: `plaintext`.
    pub protocol: SecurityProtocol,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`; required with the `sasl_*` protocols.
    /// Default: unset.
    pub sasl_mechanism: Option<SaslMechanism>,
    /// SASL username. Default: unset.
    #[serde(deserialize_with = "de::opt_string")]
    pub sasl_username: Option<String>,
    /// SASL password (secret: printed as `***`); better given as
    /// `FDS_KAFKA__SECURITY__SASL_PASSWORD` or `sasl_password_file`. Default: unset.
    pub sasl_password: Option<Secret>,
    /// File holding the SASL password (one trailing newline is dropped); exclusive with
    /// `sasl_password`. Default: unset.
    pub sasl_password_file: Option<PathBuf>,
    /// CA certificate(s) to verify the brokers (librdkafka `ssl.ca.location`). Default: unset
    /// (the system store).
    pub ssl_ca_location: Option<PathBuf>,
    /// Client certificate for mutual TLS (`ssl.certificate.location`). Default: unset.
    pub ssl_certificate_location: Option<PathBuf>,
    /// Client private key for mutual TLS (`ssl.key.location`). Default: unset.
    pub ssl_key_location: Option<PathBuf>,
    /// Passphrase of `ssl_key_location` (secret: printed as `***`). Default: unset.
    pub ssl_key_password: Option<Secret>,
    /// File holding the key passphrase; exclusive with `ssl_key_password`. Default: unset.
    pub ssl_key_password_file: Option<PathBuf>,
}

impl KafkaSecurity {
    /// The librdkafka options for this section (secrets exposed: never log the result).
    pub fn librdkafka_options(&self) -> Vec<(String, String)> {
        let mut out = vec![(
            "security.protocol".to_owned(),
            self.protocol.as_librdkafka().to_owned(),
        )];
        let mut push = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                out.push((key.to_owned(), value));
            }
        };
        push(
            "sasl.mechanism",
            self.sasl_mechanism.map(|m| m.as_librdkafka().to_owned()),
        );
        push("sasl.username", self.sasl_username.clone());
        push(
            "sasl.password",
            self.sasl_password.as_ref().map(|s| s.expose().to_owned()),
        );
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        push("ssl.ca.location", path(&self.ssl_ca_location));
        push(
            "ssl.certificate.location",
            path(&self.ssl_certificate_location),
        );
        push("ssl.key.location", path(&self.ssl_key_location));
        push(
            "ssl.key.password",
            self.ssl_key_password
                .as_ref()
                .map(|s| s.expose().to_owned()),
        );
        out
    }

    /// Reads `*_file` secrets into their fields.
    pub(crate) fn resolve_secret_files(&mut self) -> Result<(), ConfigError> {
        super::resolve_secret(
            "kafka.security.sasl_password",
            &mut self.sasl_password,
            self.sasl_password_file.as_deref(),
        )?;
        super::resolve_secret(
            "kafka.security.ssl_key_password",
            &mut self.ssl_key_password,
            self.ssl_key_password_file.as_deref(),
        )
    }

    pub(crate) fn validate(&self, check: &mut Check) {
        let protocol = self.protocol.as_librdkafka();
        if self.protocol.uses_sasl() {
            check.ensure(
                self.sasl_mechanism.is_some(),
                "kafka.security.sasl_mechanism",
                format!("is required with protocol `{protocol}`"),
            );
            check.ensure(
                self.sasl_username.is_some(),
                "kafka.security.sasl_username",
                format!("is required with protocol `{protocol}`"),
            );
            check.ensure(
                self.sasl_password.is_some() || self.sasl_password_file.is_some(),
                "kafka.security.sasl_password",
                format!("is required with protocol `{protocol}` (or `sasl_password_file`)"),
            );
        } else {
            let sasl_set = [
                ("sasl_mechanism", self.sasl_mechanism.is_some()),
                ("sasl_username", self.sasl_username.is_some()),
                ("sasl_password", self.sasl_password.is_some()),
                ("sasl_password_file", self.sasl_password_file.is_some()),
            ];
            for (name, set) in sasl_set {
                check.ensure(
                    !set,
                    format!("kafka.security.{name}"),
                    format!("is only used with protocol `sasl_plaintext` or `sasl_ssl`, not `{protocol}`"),
                );
            }
        }
        if !self.protocol.uses_tls() {
            let ssl_set = [
                ("ssl_ca_location", self.ssl_ca_location.is_some()),
                (
                    "ssl_certificate_location",
                    self.ssl_certificate_location.is_some(),
                ),
                ("ssl_key_location", self.ssl_key_location.is_some()),
                ("ssl_key_password", self.ssl_key_password.is_some()),
                (
                    "ssl_key_password_file",
                    self.ssl_key_password_file.is_some(),
                ),
            ];
            for (name, set) in ssl_set {
                check.ensure(
                    !set,
                    format!("kafka.security.{name}"),
                    format!("is only used with protocol `ssl` or `sasl_ssl`, not `{protocol}`"),
                );
            }
        }
        check.ensure(
            self.ssl_certificate_location.is_some() == self.ssl_key_location.is_some(),
            "kafka.security.ssl_key_location",
            "`ssl_certificate_location` and `ssl_key_location` must be set together",
        );
        check.ensure(
            self.ssl_key_location.is_some()
                || (self.ssl_key_password.is_none() && self.ssl_key_password_file.is_none()),
            "kafka.security.ssl_key_password",
            "is only used with `ssl_key_location`",
        );
    }
}
