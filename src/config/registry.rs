//! `[schemas.registry]`: a Confluent-compatible Schema Registry that supplies writer schemas by
//! id (and registers the enrichment schema); off (the local catalog alone) while `urls` is empty.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check::Check;
use super::{ConfigError, Secret, de};

/// The Schema Registry client. With `urls` empty (the default) the worker runs offline on the
/// local catalog (`[schemas]`); with a registry the catalog's files are the **reader** schemas
/// and the registry supplies the **writer** schema of every id it sees, fetched once and cached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Base URLs of the registry's Confluent-compatible API (`http(s)://host:port[/path]`; for
    /// Apicurio `…/apis/ccompat/v7`); tried in order, the next after a connection failure. A
    /// TOML list or a comma-separated string. Default: `[]` (no registry: offline mode).
    #[serde(deserialize_with = "de::string_list")]
    pub urls: Vec<String>,
    /// HTTP basic-auth username; needs `password`. Default: unset (no authentication).
    #[serde(deserialize_with = "de::opt_string")]
    pub username: Option<String>,
    /// Basic-auth password (secret: printed as `***`); better given as
    /// `FDS_SCHEMAS__REGISTRY__PASSWORD` or `password_file`. Default: unset.
    pub password: Option<Secret>,
    /// File holding the password (one trailing newline is dropped); exclusive with `password`.
    /// Default: unset.
    pub password_file: Option<PathBuf>,
    /// TLS for `https://` URLs. Default: the built-in web PKI roots, no client certificate.
    pub tls: RegistryTls,
    /// Timeout of one HTTP request (connect + answer). Default: `5s`.
    #[serde(with = "de::duration")]
    pub request_timeout: Duration,
    /// Most writer schemas kept in the cache (least recently used evicted first). Default:
    /// `1000`.
    pub cache_capacity: u32,
    /// First wait before asking again for an id while the registry is unreachable or answers
    /// 5xx (doubling, with jitter, up to `retry_backoff_max`). Default: `200ms`.
    #[serde(with = "de::duration")]
    pub retry_backoff: Duration,
    /// Longest wait between two such requests. Default: `5s`.
    #[serde(with = "de::duration")]
    pub retry_backoff_max: Duration,
    /// The subject the enrichment schema is registered under at start: `topic_name`
    /// (`<enrichment topic>-value`, Confluent's `TopicNameStrategy`) or `record_name` (the
    /// record's full name, `io.fds.events.Enrichment`, `RecordNameStrategy`). Default:
    /// `topic_name`.
    pub subject_strategy: SubjectStrategy,
}

/// How the enrichment schema's subject is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectStrategy {
    /// `<topic>-value`.
    #[default]
    TopicName,
    /// The record's full name.
    RecordName,
}

impl SubjectStrategy {
    /// The subject of a value schema named `record_full_name` written to `topic`.
    pub fn subject(self, topic: &str, record_full_name: &str) -> String {
        match self {
            SubjectStrategy::TopicName => format!("{topic}-value"),
            SubjectStrategy::RecordName => record_full_name.to_owned(),
        }
    }
}

/// TLS to the registry. Paths are used as given (relative to the working directory).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryTls {
    /// CA certificate (PEM) to verify the registry. Default: unset (the built-in web PKI
    /// roots).
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs `key_file`. Default: unset.
    pub cert_file: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS; needs `cert_file`. Default: unset.
    pub key_file: Option<PathBuf>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            urls: Vec::new(),
            username: None,
            password: None,
            password_file: None,
            tls: RegistryTls::default(),
            request_timeout: Duration::from_secs(5),
            cache_capacity: 1000,
            retry_backoff: Duration::from_millis(200),
            retry_backoff_max: Duration::from_secs(5),
            subject_strategy: SubjectStrategy::default(),
        }
    }
}

/// A registry URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryScheme {
    /// `http://`.
    Http,
    /// `https://`.
    Https,
}

/// Checks one registry base URL: `http://` or `https://`, a host, no credentials inside it
/// (they belong in `username`/`password`, which are redacted), no query or fragment.
pub fn parse_registry_url(url: &str) -> Result<RegistryScheme, String> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (RegistryScheme::Https, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (RegistryScheme::Http, rest)
    } else {
        return Err(format!("`{url}` is not an http:// or https:// URL"));
    };
    let authority = rest.split('/').next().unwrap_or("");
    if authority.contains('@') {
        return Err(
            "must not hold credentials; use `schemas.registry.username` and `password`".into(),
        );
    }
    if authority.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    if rest.contains('?') || rest.contains('#') {
        return Err(format!("`{url}` must not have a query or fragment"));
    }
    Ok(scheme)
}

impl RegistryConfig {
    /// True when a registry is configured (`urls` not empty).
    pub fn enabled(&self) -> bool {
        !self.urls.is_empty()
    }

    /// Reads `password_file` into `password`.
    pub(crate) fn resolve_secret_files(&mut self) -> Result<(), ConfigError> {
        super::resolve_secret(
            "schemas.registry.password",
            &mut self.password,
            self.password_file.as_deref(),
        )
    }

    pub(crate) fn validate(&self, check: &mut Check) {
        let mut any_https = false;
        for (i, url) in self.urls.iter().enumerate() {
            match parse_registry_url(url) {
                Ok(scheme) => any_https |= scheme == RegistryScheme::Https,
                Err(reason) => check.fail(format!("schemas.registry.urls[{i}]"), reason),
            }
        }
        check.ensure(
            self.username.is_none() || self.password.is_some() || self.password_file.is_some(),
            "schemas.registry.username",
            "needs `schemas.registry.password` (or `password_file`)",
        );
        check.ensure(
            self.username.is_some() || (self.password.is_none() && self.password_file.is_none()),
            "schemas.registry.password",
            "needs `schemas.registry.username`",
        );
        check.ensure(
            self.tls.cert_file.is_some() == self.tls.key_file.is_some(),
            "schemas.registry.tls.key_file",
            "`cert_file` and `key_file` must be set together",
        );
        // A CA or client certificate that is silently unused would leave the operator
        // believing the connection is verified.
        if !any_https {
            for (name, set) in [
                ("ca_file", self.tls.ca_file.is_some()),
                ("cert_file", self.tls.cert_file.is_some()),
                ("key_file", self.tls.key_file.is_some()),
            ] {
                check.ensure(
                    !set,
                    format!("schemas.registry.tls.{name}"),
                    "is only used with https:// registry URLs",
                );
            }
        }
        check.positive("schemas.registry.request_timeout", self.request_timeout);
        check.at_least(
            "schemas.registry.cache_capacity",
            self.cache_capacity.into(),
            1,
        );
        check.positive("schemas.registry.retry_backoff", self.retry_backoff);
        check.ensure(
            self.retry_backoff <= self.retry_backoff_max,
            "schemas.registry.retry_backoff_max",
            "must not be shorter than `schemas.registry.retry_backoff`",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(config: &RegistryConfig) -> Vec<String> {
        let mut check = Check::default();
        config.validate(&mut check);
        match check.finish() {
            Ok(()) => Vec::new(),
            Err(e) => e.keys().into_iter().map(str::to_owned).collect(),
        }
    }

    #[test]
    fn default_is_off_and_valid() {
        let config = RegistryConfig::default();
        assert!(!config.enabled());
        assert!(problems(&config).is_empty());
    }

    #[test]
    fn urls_are_checked() {
        assert_eq!(
            parse_registry_url("http://127.0.0.1:8080/apis/ccompat/v7"),
            Ok(RegistryScheme::Http)
        );
        assert_eq!(
            parse_registry_url("https://registry"),
            Ok(RegistryScheme::Https)
        );
        for bad in [
            "registry:8081",
            "http://",
            "http://u:pw@host",
            "http://h/x?y",
        ] {
            assert!(parse_registry_url(bad).is_err(), "{bad}");
        }
        let config = RegistryConfig {
            urls: vec!["http://ok".into(), "ftp://no".into()],
            ..RegistryConfig::default()
        };
        assert_eq!(problems(&config), vec!["schemas.registry.urls[1]"]);
    }

    #[test]
    fn relations_are_checked() {
        let config = RegistryConfig {
            urls: vec!["http://r".into()],
            username: Some("u".into()),
            tls: RegistryTls {
                ca_file: Some("ca.pem".into()),
                cert_file: Some("c.pem".into()),
                key_file: None,
            },
            request_timeout: Duration::ZERO,
            cache_capacity: 0,
            retry_backoff: Duration::from_secs(10),
            ..RegistryConfig::default()
        };
        assert_eq!(
            problems(&config),
            vec![
                "schemas.registry.username",
                "schemas.registry.tls.key_file",
                "schemas.registry.tls.ca_file",
                "schemas.registry.tls.cert_file",
                "schemas.registry.request_timeout",
                "schemas.registry.cache_capacity",
                "schemas.registry.retry_backoff_max",
            ]
        );
    }

    #[test]
    fn subjects_follow_the_strategy() {
        let record = "io.fds.events.Enrichment";
        assert_eq!(
            SubjectStrategy::TopicName.subject("transactions-enriched", record),
            "transactions-enriched-value"
        );
        assert_eq!(
            SubjectStrategy::RecordName.subject("transactions-enriched", record),
            record
        );
    }
}
