//! `[metrics]` and `[log]`: where the worker reports how it is doing.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check::Check;
use super::de;

/// The HTTP endpoint serving `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address to listen on (`0.0.0.0:9464` in a container). Default: `"127.0.0.1:9464"`.
    pub listen: SocketAddr,
    /// How often the cluster monitor polls every Redis node (`CLUSTER INFO`, `CLUSTER SHARDS`,
    /// `INFO`) and librdkafka reports consumer lag (`statistics.interval.ms`). Default: `"5s"`.
    #[serde(with = "de::duration")]
    pub poll_interval: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            poll_interval: Duration::from_secs(5),
        }
    }
}

impl MetricsConfig {
    pub(crate) fn validate(&self, check: &mut Check) {
        check.positive("metrics.poll_interval", self.poll_interval);
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Pretty when stderr is a terminal, JSON otherwise.
    #[default]
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable, coloured.
    Pretty,
}

/// Structured logging (to stderr; stdout is for command output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `auto`, `json` or `pretty`. Default: `auto` (pretty on a terminal, JSON otherwise).
    pub format: LogFormat,
    /// `tracing` filter (`info`, `fds_worker=debug,rdkafka=warn`, …); the `RUST_LOG`
    /// environment variable, when set, replaces it. Default: `"info"`.
    #[serde(deserialize_with = "de::string")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Auto,
            level: "info".into(),
        }
    }
}

impl LogConfig {
    pub(crate) fn validate(&self, check: &mut Check) {
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.level) {
            check.fail(
                "log.level",
                format!("`{}` is not a tracing filter: {e}", self.level),
            );
        }
    }
}
