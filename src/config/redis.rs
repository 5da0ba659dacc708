//! `[redis]`: cluster seed nodes, auth, TLS, timeouts, retries and rate limits.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check::Check;
use super::{ConfigError, Secret, de};

/// Redis Cluster connection and write behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Seed nodes, `redis://host:port` (`rediss://` with TLS); any reachable one is enough to
    /// discover the cluster, more survive a seed being down. A TOML list, or a comma-separated
    /// string (`FDS_REDIS__NODES=redis://a:7000,redis://b:7001`).
    /// Default: `["redis://127.0.0.1:7000"]`.
    #[serde(deserialize_with = "de::string_list")]
    pub nodes: Vec<String>,
    /// ACL username (`AUTH username password`); needs `password`. Default: unset (`default`
    /// user).
    #[serde(deserialize_with = "de::opt_string")]
    pub username: Option<String>,
    /// Password (secret: printed as `***`); better given as `FDS_REDIS__PASSWORD` or
    /// `password_file`. Default: unset.
    pub password: Option<Secret>,
    /// File holding the password (one trailing newline is dropped); exclusive with `password`.
    /// Default: unset.
    pub password_file: Option<PathBuf>,
    /// TLS to every node. Default: off.
    pub tls: RedisTls,
    /// Timeout of one TCP/TLS connect. Default: `1s`.
    #[serde(with = "de::duration")]
    pub connect_timeout: Duration,
    /// Timeout of one command (one unit) on an established connection. Default: `1s`.
    #[serde(with = "de::duration")]
    pub response_timeout: Duration,
    /// Most per-slot units in flight at once, across all nodes (each node's share is pipelined
    /// on its connection). Default: `1024` (`bench` measured 16k events/s at 64, 20k at 256,
    /// 21–23k at 1,024 and no more at 4,096).
    pub max_inflight_units: u32,
    /// Retrying failed units (MOVED/ASK are followed, not counted).
    pub retry: RedisRetry,
    /// Most units sent per second, a `governor` limit so a worker cannot flatten the cluster;
    /// `0` = unlimited. Default: `0`.
    pub max_units_per_second: u32,
    /// After writes, `WAIT <wait_replicas> <wait_timeout>` so a write acknowledged by a master
    /// that dies before replicating is detected; `0` = off. The units of a node share one
    /// `WAIT` per round (see `store/replication.rs`). Default: `0`.
    pub wait_replicas: u32,
    /// Timeout of the `WAIT` above. Default: `100ms`.
    #[serde(with = "de::duration")]
    pub wait_timeout: Duration,
    /// Name of the Redis Function library (`FUNCTION LOAD`) holding the worker's units; its
    /// function is `<name>_apply_v1` (function names are global on a server, so deployments
    /// sharing a cluster need different names). Default: `"fds"`.
    #[serde(deserialize_with = "de::string")]
    pub function_library: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            nodes: default_nodes(),
            username: None,
            password: None,
            password_file: None,
            tls: RedisTls::default(),
            connect_timeout: default_connect_timeout(),
            response_timeout: default_response_timeout(),
            max_inflight_units: default_max_inflight_units(),
            retry: RedisRetry::default(),
            max_units_per_second: 0,
            wait_replicas: 0,
            wait_timeout: default_wait_timeout(),
            function_library: default_function_library(),
        }
    }
}

fn default_nodes() -> Vec<String> {
    vec!["redis://127.0.0.1:7000".into()]
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_response_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_max_inflight_units() -> u32 {
    1024
}
fn default_wait_timeout() -> Duration {
    Duration::from_millis(100)
}
fn default_function_library() -> String {
    DEFAULT_LIBRARY.into()
}

/// The default of `redis.function_library`: the library name `fds.lua` is written with (the
/// store renames it when another is configured).
pub const DEFAULT_LIBRARY: &str = "fds";

/// TLS settings for every Redis node. Paths are used as given (relative to the working
/// directory).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisTls {
    /// Use TLS; the `nodes` must then be `rediss://` URLs (and `redis://` without it).
    /// Default: `false`.
    pub enabled: bool,
    /// CA certificate (PEM) to verify the nodes. Default: unset (the built-in web PKI roots).
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs `key_file`. Default: unset.
    pub cert_file: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS; needs `cert_file`. Default: unset.
    pub key_file: Option<PathBuf>,
}

/// Retries of a unit that failed with a retryable error (TRYAGAIN, CLUSTERDOWN, connection
/// loss, timeouts): exponential backoff with jitter, bounded by attempts and by time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisRetry {
    /// How long one slot's unit may keep failing (from its first failure) before its events
    /// go to the DLQ. Must outlast a failover: ≈ 2 × `cluster-node-timeout` (5 s) + 2 s.
    /// Default: `12s`.
    #[serde(with = "de::duration")]
    pub budget: Duration,
    /// Most attempts of one unit within the budget. Default: `60`.
    pub max_attempts: u32,
    /// First backoff; doubles per attempt, with jitter. Default: `50ms`.
    #[serde(with = "de::duration")]
    pub initial_backoff: Duration,
    /// Longest backoff. Default: `1s`.
    #[serde(with = "de::duration")]
    pub max_backoff: Duration,
    /// Most retries per second across the worker (`governor`), so a failover does not turn
    /// into a retry storm. Default: `200`.
    pub max_retries_per_second: u32,
}

impl Default for RedisRetry {
    fn default() -> Self {
        RedisRetry {
            budget: default_budget(),
            max_attempts: default_max_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            max_retries_per_second: default_max_retries_per_second(),
        }
    }
}

fn default_budget() -> Duration {
    Duration::from_secs(12)
}
fn default_max_attempts() -> u32 {
    60
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(50)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_max_retries_per_second() -> u32 {
    200
}

/// A seed node URL, checked: scheme, host and explicit port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddr {
    /// `true` for `rediss://`.
    pub tls: bool,
    /// Host name or IP.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// `url` with its password (if any) replaced by `***`, for display.
pub fn redact_url(url: &str) -> String {
    match ::redis::parse_redis_url(url) {
        Some(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some(super::REDACTED));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Parses a seed node URL; the reason on failure is user-facing.
pub fn parse_node(url: &str) -> Result<NodeAddr, String> {
    let shown = redact_url(url);
    let parsed = redis::parse_redis_url(url)
        .ok_or_else(|| format!("`{shown}` is not a redis:// or rediss:// URL"))?;
    let tls = match parsed.scheme() {
        "redis" | "valkey" => false,
        "rediss" | "valkeys" => true,
        other => {
            return Err(format!(
                "`{shown}`: scheme `{other}` is not a TCP node address"
            ));
        }
    };
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("`{shown}` has no host"))?;
    let port = parsed
        .port()
        .ok_or_else(|| format!("`{shown}` has no port (cluster nodes have no default port)"))?;
    redis::IntoConnectionInfo::into_connection_info(url).map_err(|e| format!("`{shown}`: {e}"))?;
    Ok(NodeAddr {
        tls,
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
    })
}

impl RedisConfig {
    /// The parsed seed nodes (valid after [`Config::validate`](super::Config::validate)).
    pub fn node_addrs(&self) -> Result<Vec<NodeAddr>, ConfigError> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                parse_node(n).map_err(|r| ConfigError::invalid(format!("redis.nodes[{i}]"), r))
            })
            .collect()
    }

    /// Reads `password_file` into `password`.
    pub(crate) fn resolve_secret_files(&mut self) -> Result<(), ConfigError> {
        super::resolve_secret(
            "redis.password",
            &mut self.password,
            self.password_file.as_deref(),
        )
    }

    pub(crate) fn validate(&self, check: &mut Check) {
        check.ensure(
            !self.nodes.is_empty(),
            "redis.nodes",
            "must list at least one node",
        );
        for (i, node) in self.nodes.iter().enumerate() {
            let key = format!("redis.nodes[{i}]");
            match parse_node(node) {
                Err(reason) => check.fail(key, reason),
                Ok(addr) => check.ensure(
                    addr.tls == self.tls.enabled,
                    key,
                    if self.tls.enabled {
                        "must be a rediss:// URL because `redis.tls.enabled` is true"
                    } else {
                        "is a rediss:// URL but `redis.tls.enabled` is false"
                    },
                ),
            }
        }
        check.ensure(
            self.username.is_none() || self.password.is_some() || self.password_file.is_some(),
            "redis.username",
            "needs `redis.password` (or `redis.password_file`)",
        );
        check.ensure(
            self.tls.cert_file.is_some() == self.tls.key_file.is_some(),
            "redis.tls.key_file",
            "`cert_file` and `key_file` must be set together",
        );
        // A CA or client certificate that is silently unused would leave the operator
        // believing the connection is verified.
        if !self.tls.enabled {
            for (name, set) in [
                ("ca_file", self.tls.ca_file.is_some()),
                ("cert_file", self.tls.cert_file.is_some()),
                ("key_file", self.tls.key_file.is_some()),
            ] {
                check.ensure(
                    !set,
                    format!("redis.tls.{name}"),
                    "is only used with `redis.tls.enabled = true`",
                );
            }
        }
        check.positive("redis.connect_timeout", self.connect_timeout);
        check.positive("redis.response_timeout", self.response_timeout);
        check.at_least(
            "redis.max_inflight_units",
            self.max_inflight_units.into(),
            1,
        );
        let retry = &self.retry;
        check.positive("redis.retry.budget", retry.budget);
        check.at_least("redis.retry.max_attempts", retry.max_attempts.into(), 1);
        check.positive("redis.retry.initial_backoff", retry.initial_backoff);
        check.ensure(
            retry.max_backoff >= retry.initial_backoff,
            "redis.retry.max_backoff",
            "must be at least `redis.retry.initial_backoff`",
        );
        check.ensure(
            retry.max_backoff <= retry.budget,
            "redis.retry.max_backoff",
            "must not exceed `redis.retry.budget`",
        );
        check.at_least(
            "redis.retry.max_retries_per_second",
            retry.max_retries_per_second.into(),
            1,
        );
        if self.wait_replicas > 0 {
            check.positive("redis.wait_timeout", self.wait_timeout);
        }
        // FUNCTION LOAD's rule for library names.
        check.ensure(
            !self.function_library.is_empty()
                && self
                    .function_library
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "redis.function_library",
            "must be non-empty letters, digits and `_`",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_need_scheme_host_and_port() {
        let addr = parse_node("redis://10.0.0.1:7000").unwrap();
        assert_eq!(
            (addr.tls, addr.host.as_str(), addr.port),
            (false, "10.0.0.1", 7000)
        );
        assert!(
            parse_node("rediss://user:pw@redis-0.redis:6379")
                .unwrap()
                .tls
        );
        assert!(parse_node("redis://[::1]:7000").is_ok());
        assert!(parse_node("127.0.0.1:7000").is_err());
        assert!(
            parse_node("redis://127.0.0.1")
                .unwrap_err()
                .contains("no port")
        );
        assert!(parse_node("http://127.0.0.1:7000").is_err());
        assert!(parse_node("unix:///tmp/redis.sock").is_err());
    }

    #[test]
    fn tls_files_need_tls_enabled() {
        let mut config = crate::config::Config::default();
        config.redis.tls.ca_file = Some("/etc/ca.pem".into());
        let err = config.validate().unwrap_err();
        assert_eq!(err.keys(), vec!["redis.tls.ca_file"]);
        config.redis.tls.enabled = true;
        config.redis.nodes = vec!["rediss://127.0.0.1:7000".into()];
        config.validate().unwrap();
    }
}
