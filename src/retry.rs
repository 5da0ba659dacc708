//! The pure pieces every retry loop of the worker is built from: a [`Backoff`] with jitter and
//! a [`Budget`] of time and attempts. No I/O and no sleeping here: the loops (a Redis unit in
//! [`crate::store`], a publish in [`crate::sink`]) ask what to wait and whether to go on. Time
//! is tokio's, so tests run them under paused time.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// Exponential backoff with jitter: the base wait starts at `initial` and doubles per wait up
/// to `max`; each wait is drawn uniformly from `[base/2, base]`, so workers that failed
/// together do not retry together, and no wait is shorter than half its base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `initial`, capped at `max` (`initial` if `max` is smaller).
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            base: initial,
            max: max.max(initial),
        }
    }

    /// The next wait, with jitter from the thread's random generator.
    pub fn next_wait(&mut self) -> Duration {
        self.next_wait_with(&mut rand::rng())
    }

    /// The next wait, with jitter from `rng`.
    pub fn next_wait_with(&mut self, rng: &mut impl Rng) -> Duration {
        let wait = jitter(self.base, rng);
        self.base = self.base.saturating_mul(2).min(self.max);
        wait
    }

    /// The base of the next wait (before jitter).
    pub fn base(&self) -> Duration {
        self.base
    }
}

/// A uniformly random wait in `[base/2, base]`.
fn jitter(base: Duration, rng: &mut impl Rng) -> Duration {
    let half = base / 2;
    half + rng.random_range(Duration::ZERO..=half)
}

/// How long, and how many attempts, a failing operation may keep trying. It starts when
/// created and may be [restarted](Budget::restart) (a Redis unit gets a fresh budget once a
/// cluster-wide outage is over).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    limit: Duration,
    max_attempts: u32,
    started: Instant,
    attempts: u32,
}

impl Budget {
    /// A budget of `limit` from now and `max_attempts` attempts (`u32::MAX`: time only).
    pub fn new(limit: Duration, max_attempts: u32) -> Budget {
        Budget {
            limit,
            max_attempts,
            started: Instant::now(),
            attempts: 0,
        }
    }

    /// Counts one attempt against the budget.
    pub fn attempt(&mut self) {
        self.attempts = self.attempts.saturating_add(1);
    }

    /// Whether the time or the attempts are used up.
    pub fn exhausted(&self) -> bool {
        self.elapsed() >= self.limit || self.attempts >= self.max_attempts
    }

    /// Whether waiting `wait` and trying once more still fits in the budget.
    pub fn allows(&self, wait: Duration) -> bool {
        self.elapsed() + wait < self.limit && self.attempts < self.max_attempts
    }

    /// Attempts counted since the budget (re)started.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Time left (zero once used up).
    pub fn remaining(&self) -> Duration {
        self.limit.saturating_sub(self.elapsed())
    }

    /// Time since the budget (re)started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The time limit.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// A full budget again, from now.
    pub fn restart(&mut self) {
        self.started = Instant::now();
        self.attempts = 0;
    }

    /// Starts the time limit again from now, keeping the attempts counted.
    pub fn restart_clock(&mut self) {
        self.started = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_every_wait_is_within_half_of_its_base() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let mut bases = Vec::new();
        for _ in 0..8 {
            let base = backoff.base();
            let wait = backoff.next_wait_with(&mut rng);
            assert!(
                wait >= base / 2 && wait <= base,
                "{wait:?} for base {base:?}"
            );
            bases.push(base.as_millis());
        }
        assert_eq!(bases, [100, 200, 400, 800, 1000, 1000, 1000, 1000]);
    }

    #[test]
    fn jitter_spreads_the_waits() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let waits: std::collections::HashSet<Duration> = (0..50)
            .map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(1)))
            .map(|mut b| b.next_wait_with(&mut rng))
            .collect();
        assert!(waits.len() > 40, "waits differ: {}", waits.len());
    }

    #[test]
    fn a_cap_below_the_start_keeps_the_start() {
        let mut backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        backoff.next_wait();
        assert_eq!(backoff.base(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_runs_out_by_time_or_by_attempts_and_restarts_whole() {
        let mut budget = Budget::new(Duration::from_secs(10), 3);
        assert!(!budget.exhausted());
        assert!(budget.allows(Duration::from_secs(9)));
        assert!(!budget.allows(Duration::from_secs(10)));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(budget.remaining(), Duration::from_secs(6));
        for _ in 0..3 {
            budget.attempt();
        }
        assert!(budget.exhausted(), "three attempts of three");
        budget.restart();
        assert!(!budget.exhausted());
        assert_eq!(budget.remaining(), Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(budget.exhausted(), "ten seconds of ten");
        assert_eq!(budget.remaining(), Duration::ZERO);
    }
}
