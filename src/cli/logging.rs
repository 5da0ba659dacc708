//! `tracing` setup from the `[log]` section: JSON or human-readable lines on stderr.

use std::io::IsTerminal as _;

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. The filter is `RUST_LOG` when set, else `log.level`; output
/// goes to stderr so a command's stdout stays machine-readable.
pub fn init(config: &LogConfig) -> anyhow::Result<()> {
    let filter = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::builder()
            .parse(&directives)
            .with_context(|| format!("RUST_LOG=`{directives}` is not a tracing filter"))?,
        _ => EnvFilter::builder()
            .parse(&config.level)
            .with_context(|| format!("log.level `{}` is not a tracing filter", config.level))?,
    };
    let json = match config.format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.try_init()
    };
    installed.map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}
