//! [`Check`]: collects validation problems so `validate()` reports all of them at once.

use std::time::Duration;

use super::{ConfigError, Problem};

/// Accumulates [`Problem`]s; every rule names its key in full (`redis.retry.budget`).
#[derive(Debug, Default)]
pub(crate) struct Check {
    problems: Vec<Problem>,
}

impl Check {
    /// Records a problem.
    pub(crate) fn fail(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(Problem::new(key, reason));
    }

    /// Records a problem unless `ok`.
    pub(crate) fn ensure(&mut self, ok: bool, key: impl Into<String>, reason: impl Into<String>) {
        if !ok {
            self.fail(key, reason);
        }
    }

    /// `value` must not be empty or blank.
    pub(crate) fn not_blank(&mut self, key: impl Into<String>, value: &str) {
        self.ensure(!value.trim().is_empty(), key, "must not be empty");
    }

    /// `value` must be at least `min`.
    pub(crate) fn at_least(&mut self, key: impl Into<String>, value: u64, min: u64) {
        self.ensure(
            value >= min,
            key,
            format!("must be at least {min} (got {value})"),
        );
    }

    /// `value` must be longer than zero.
    pub(crate) fn positive(&mut self, key: impl Into<String>, value: Duration) {
        self.ensure(!value.is_zero(), key, "must be longer than 0");
    }

    /// `value` must be longer than zero and a whole number of seconds (it becomes a Redis
    /// `EXPIREAT`/`EXAT`, or a bucket width, both in seconds).
    pub(crate) fn whole_seconds(&mut self, key: impl Into<String>, value: Duration) {
        let key = key.into();
        if value.is_zero() {
            self.fail(key, "must be longer than 0");
        } else if value.subsec_nanos() != 0 {
            self.fail(
                key,
                format!(
                    "must be a whole number of seconds (got {})",
                    humantime::format_duration(value)
                ),
            );
        }
    }

    /// `Ok` if nothing was recorded, else every problem.
    pub(crate) fn finish(self) -> Result<(), ConfigError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                problems: self.problems,
            })
        }
    }
}
