//! `fds-worker rules check FILE`: validate a rules file offline against the configuration.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::config::{Config, RulesFile};

/// Arguments of `fds-worker rules`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  fds-worker rules check /etc/fds-worker/rules.toml
  fds-worker --config config/fds-worker.toml rules check rules.toml && kill -HUP <worker pid>

A rules file sets the features' thresholds and the breach rule (see README, \"Features\"):
  version = \"2026-12-01.1\"    # optional; default: r-<hash of the rules>
  [thresholds]                # feature name -> threshold; a feature not listed has none
  user_tx_1m = 5
  [breach_blacklist]          # optional
  dimensions = [\"user\"]

The worker reads velocity.rules_file at start and again on SIGHUP; a file that does not pass
this check is rejected there too, and the running rules stay. Windows and tiles are not rules:
they are in [[features]] and change with a restart.

Exit status: 0 when the file is valid for the configuration; 2 naming every bad key.")]
pub struct RulesArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: RulesCommand,
}

/// `rules` subcommands.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate FILE against the configuration's features; print the rules it gives.
    Check {
        /// The rules file (TOML).
        file: PathBuf,
    },
}

/// Runs `rules`.
pub fn run(args: RulesArgs, config: &Config) -> anyhow::Result<()> {
    match args.command {
        RulesCommand::Check { file } => {
            let ruled = RulesFile::load(&file)
                .and_then(|rules| rules.apply(config))
                .map_err(|e| e.in_file(&file))
                .with_context(|| format!("rules file {}", file.display()))?;
            println!(
                "rules OK: {} (version {})",
                file.display(),
                ruled.velocity.rules_version.as_deref().unwrap_or("-")
            );
            for feature in &ruled.features {
                match feature.threshold {
                    Some(threshold) => println!("  {} > {threshold}", feature.name),
                    None => println!("  {} (no threshold)", feature.name),
                }
            }
            let breach = &ruled.velocity.breach_blacklist;
            if breach.enabled {
                let kinds: Vec<&str> = breach.dimensions.iter().map(|k| k.as_str()).collect();
                println!(
                    "  breach: {} -> {}",
                    kinds.join(", "),
                    breach.level.as_str()
                );
            } else {
                println!("  breach: off");
            }
            Ok(())
        }
    }
}
