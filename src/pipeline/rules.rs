//! Rules changed without a restart: the planner in use is swapped for one built from the
//! config under the rules file (`velocity.rules_file`), re-read on SIGHUP. A batch plans with
//! the planner current when it starts, whole; a bad file keeps the running rules and logs why.

use std::sync::{Arc, RwLock};

use crate::config::{Config, ConfigError};
use crate::plan::Planner;

use super::settings::plan_settings;

/// The planner in use and what rebuilds it.
#[derive(Debug)]
pub struct LiveRules {
    config: Config,
    namespace: String,
    planner: RwLock<Arc<Planner>>,
}

impl LiveRules {
    /// The rules of `config` (already under its rules file, as [`Config::load`] leaves it),
    /// keys in `namespace`.
    pub fn new(config: &Config, namespace: &str) -> LiveRules {
        LiveRules {
            config: config.clone(),
            namespace: namespace.to_owned(),
            planner: RwLock::new(Arc::new(Planner::new(plan_settings(config, namespace)))),
        }
    }

    /// The planner of the rules in force.
    pub fn planner(&self) -> Arc<Planner> {
        let planner = self.planner.read().unwrap_or_else(|e| e.into_inner());
        Arc::clone(&planner)
    }

    /// The version of the rules in force.
    pub fn version(&self) -> Option<String> {
        self.planner()
            .settings()
            .rule_version
            .as_deref()
            .map(str::to_owned)
    }

    /// Re-reads the rules file and swaps the planner; on an error the running rules stay.
    /// Returns the new version.
    pub fn reload(&self) -> Result<String, ConfigError> {
        let ruled = self.config.with_rules_file()?;
        let planner = Arc::new(Planner::new(plan_settings(&ruled, &self.namespace)));
        let version = planner
            .settings()
            .rule_version
            .as_deref()
            .unwrap_or("")
            .to_owned();
        *self.planner.write().unwrap_or_else(|e| e.into_inner()) = planner;
        Ok(version)
    }
}

/// Reloads `rules` on every SIGHUP until dropped (spawn it; abort it to stop).
pub async fn reload_on_sighup(rules: Arc<LiveRules>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler: rules are not reloadable");
        return;
    };
    while hangups.recv().await.is_some() {
        if rules.config.velocity.rules_file.is_none() {
            tracing::warn!("SIGHUP: no velocity.rules_file configured, nothing to reload");
            continue;
        }
        let running = rules.version();
        match rules.reload() {
            Ok(version) => tracing::info!(
                %version,
                previous = ?running,
                "rules reloaded (thresholds and breach rule; windows and tiles are read at \
                 start: changing them needs a restart)"
            ),
            Err(error) => tracing::error!(
                %error,
                running = ?running,
                "rules file rejected: the running rules stay"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with(dir: &std::path::Path, rules: &str) -> Config {
        let path = dir.join("rules.toml");
        std::fs::write(&path, rules).unwrap();
        let mut config = Config::default();
        config.velocity.rules_file = Some(path);
        config.with_rules_file().unwrap()
    }

    fn threshold(rules: &LiveRules, name: &str) -> Option<u64> {
        rules
            .planner()
            .settings()
            .features
            .iter()
            .find(|f| f.name == name)
            .and_then(|f| f.threshold)
    }

    #[test]
    fn a_reload_swaps_the_thresholds_and_a_bad_file_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_with(
            dir.path(),
            "version = \"v1\"\n[thresholds]\nuser_tx_1m = 5\n",
        );
        let rules = LiveRules::new(&config, "");
        assert_eq!(rules.version().as_deref(), Some("v1"));
        assert_eq!(threshold(&rules, "user_tx_1m"), Some(5));
        assert_eq!(
            threshold(&rules, "ip_tx_1m"),
            None,
            "not listed: no threshold"
        );

        let path = config.velocity.rules_file.clone().unwrap();
        std::fs::write(&path, "[thresholds]\nuser_tx_1m = 3\nip_tx_1m = 40\n").unwrap();
        let version = rules.reload().unwrap();
        assert!(version.starts_with("r-"), "computed: {version}");
        assert_eq!(threshold(&rules, "user_tx_1m"), Some(3));
        assert_eq!(threshold(&rules, "ip_tx_1m"), Some(40));

        for bad in [
            "[thresholds]\nuser_tx_1m = 0\n",
            "[thresholds]\nno_such_feature = 3\n",
            "[thresholds]\nuser_tx_1m = \"many\"\n",
            "[thresholds]\nip_tx_1m = 4\n", // the breach rule's user has no threshold left
            "not toml",
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(rules.reload().is_err(), "{bad}");
            assert_eq!(threshold(&rules, "user_tx_1m"), Some(3), "kept after {bad}");
            assert_eq!(rules.version(), Some(version.clone()));
        }
        std::fs::remove_file(&path).unwrap();
        assert!(
            rules.reload().is_err(),
            "a missing file keeps the rules too"
        );
        assert_eq!(threshold(&rules, "ip_tx_1m"), Some(40));
    }

    #[test]
    fn the_same_rules_give_the_same_version() {
        let dir = tempfile::tempdir().unwrap();
        let a = config_with(dir.path(), "[thresholds]\nuser_tx_1m = 5\n");
        let b = config_with(dir.path(), "[thresholds]\nuser_tx_1m = 5\n");
        let c = config_with(dir.path(), "[thresholds]\nuser_tx_1m = 6\n");
        assert_eq!(a.velocity.rules_version, b.velocity.rules_version);
        assert_ne!(a.velocity.rules_version, c.velocity.rules_version);
    }
}
