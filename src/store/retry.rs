//! The retry state of one unit: its attempts, first and last failure, backoff and budget.
//!
//! [`UnitRetry`] only counts and decides; [`Store::execute`](super::Store::execute) does the
//! I/O (the attempt, the outage check, the sleep). The budget's clock starts at the unit's
//! first failure — it measures how long the slot stays unavailable, not how long the unit
//! queued before its first attempt (behind the slot's earlier units and the in-flight bound,
//! seconds to tens of seconds in a backlog) — and starts again each time the whole cluster is
//! found down: a unit waits through an outage, then gets a full budget once the cluster is back.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{FailureKind, UnitFailure};
use crate::retry::{Backoff, Budget};
use crate::slot::Slot;

/// How a unit is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Give up on a slot after this long (should outlast a failover: ≈ 2 × node-timeout + 2 s).
    pub budget: Duration,
    /// …or after this many attempts.
    pub max_attempts: u32,
    /// First backoff; doubles per attempt, with jitter (each wait in `[base/2, base]`).
    pub initial_backoff: Duration,
    /// Backoff cap.
    pub max_backoff: Duration,
    /// Retries per second across all units (`governor`), so a sick cluster is not hammered.
    pub max_retries_per_second: u32,
}

/// What the cluster says about a slot whose units keep failing (`Store::outage` asks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// The cluster as a whole refuses: wait.
    ClusterDown,
    /// The other masters agree the slot's node failed (or nobody serves the slot).
    NodeFailed,
    /// The other masters serve, but have not yet agreed on the node.
    Undecided,
}

/// The retry state of one unit.
#[derive(Debug, Clone)]
pub struct UnitRetry {
    budget: Budget,
    backoff: Backoff,
    attempts: u32,
    first_failure: Option<SystemTime>,
    last_failure: Option<SystemTime>,
    undecided_since: Option<Instant>,
    waited_for_outage: bool,
}

impl UnitRetry {
    /// A unit starting now under `policy`.
    pub fn new(policy: &RetryPolicy) -> UnitRetry {
        UnitRetry {
            budget: Budget::new(policy.budget, policy.max_attempts),
            backoff: Backoff::new(policy.initial_backoff, policy.max_backoff),
            attempts: 0,
            first_failure: None,
            last_failure: None,
            undecided_since: None,
            waited_for_outage: false,
        }
    }

    /// An attempt is being sent.
    pub fn attempt(&mut self) {
        self.attempts = self.attempts.saturating_add(1);
        self.budget.attempt();
    }

    /// Attempts sent so far, over every budget.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The unit (or its wait for a probe turn) failed at `at` (wall-clock time, for the
    /// dead-letter headers). The first failure starts the budget's clock (keeping the attempts
    /// counted so far).
    pub fn failed(&mut self, at: SystemTime) {
        if self.first_failure.is_none() {
            self.budget.restart_clock();
        }
        self.first_failure.get_or_insert(at);
        self.last_failure = Some(at);
    }

    /// Whether the current budget is used up (time or attempts).
    pub fn over_budget(&self) -> bool {
        self.budget.exhausted()
    }

    /// Whether to give up now, out of budget (or on a node that already used one up), given
    /// what the cluster says: its node failed → yes; the whole cluster is down → no, wait; not
    /// decided yet → wait, but for one budget at most (counted across checks, and from
    /// scratch after the cluster was seen down).
    pub fn give_up_on(&mut self, outage: Outage) -> bool {
        match outage {
            Outage::NodeFailed => true,
            Outage::Undecided => {
                let since = *self.undecided_since.get_or_insert_with(Instant::now);
                since.elapsed() >= self.budget.limit()
            }
            Outage::ClusterDown => {
                self.undecided_since = None;
                false
            }
        }
    }

    /// Out of budget but waiting (the cluster is down or undecided): a full budget again, from
    /// now. True the first time, so the wait is logged once.
    pub fn wait_for_outage(&mut self) -> bool {
        self.budget.restart();
        !std::mem::replace(&mut self.waited_for_outage, true)
    }

    /// The wait before the next attempt (doubling, with jitter).
    pub fn next_wait(&mut self) -> Duration {
        self.backoff.next_wait()
    }

    /// What the dead letter says when the unit gives up on `slot` with this error.
    pub fn give_up(
        &self,
        slot: Slot,
        kind: FailureKind,
        message: &str,
        node: Option<String>,
    ) -> UnitFailure {
        let now = SystemTime::now();
        let last_failure = self.last_failure.unwrap_or(now);
        UnitFailure {
            kind,
            message: message.to_owned(),
            slot,
            node,
            attempts: self.attempts,
            first_failure: self.first_failure.unwrap_or(last_failure),
            last_failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            budget: Duration::from_secs(12),
            max_attempts: 5,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            max_retries_per_second: 200,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_runs_out_after_its_time() {
        let mut retry = UnitRetry::new(&policy());
        retry.attempt();
        tokio::time::advance(Duration::from_millis(11_999)).await;
        assert!(!retry.over_budget());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(retry.over_budget());
    }

    /// The soak's dead letters (seed 20261201): in a backlog a unit waited ~30 s behind the
    /// in-flight bound, then met a 2-s failover, and was out of budget at its first failure.
    #[tokio::test(start_paused = true)]
    async fn the_budget_counts_from_the_first_failure_not_from_the_queue() {
        let mut retry = UnitRetry::new(&policy());
        tokio::time::advance(Duration::from_secs(30)).await; // queued, then sent
        retry.attempt();
        retry.failed(SystemTime::now());
        assert!(
            !retry.over_budget(),
            "the clock starts at the first failure"
        );
        tokio::time::advance(Duration::from_millis(11_999)).await;
        retry.attempt();
        retry.failed(SystemTime::now());
        assert!(!retry.over_budget());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(retry.over_budget(), "12 s after the first failure");
        assert_eq!(retry.attempts(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_runs_out_after_its_attempts() {
        let mut retry = UnitRetry::new(&policy());
        for _ in 0..4 {
            retry.attempt();
        }
        assert!(!retry.over_budget());
        retry.attempt();
        assert!(retry.over_budget(), "five attempts of five");
        assert_eq!(retry.attempts(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_out_an_outage_gives_a_full_budget_but_keeps_the_attempt_count() {
        let mut retry = UnitRetry::new(&policy());
        for _ in 0..5 {
            retry.attempt();
        }
        tokio::time::advance(Duration::from_secs(12)).await;
        assert!(retry.over_budget());
        assert!(retry.wait_for_outage(), "the first wait is logged");
        assert!(!retry.over_budget());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!retry.over_budget(), "a whole new budget");
        retry.attempt();
        assert_eq!(retry.attempts(), 6, "attempts count over every budget");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!retry.wait_for_outage(), "later waits are not logged again");
    }

    #[tokio::test(start_paused = true)]
    async fn an_undecided_cluster_is_waited_for_one_budget_unless_it_goes_down() {
        let mut retry = UnitRetry::new(&policy());
        assert!(retry.give_up_on(Outage::NodeFailed));
        assert!(!retry.give_up_on(Outage::Undecided), "undecided from now");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!retry.give_up_on(Outage::Undecided));
        assert!(
            !retry.give_up_on(Outage::ClusterDown),
            "a cluster down is waited for"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!retry.give_up_on(Outage::Undecided), "the clock restarted");
        tokio::time::advance(Duration::from_secs(12)).await;
        assert!(retry.give_up_on(Outage::Undecided));
    }

    #[tokio::test(start_paused = true)]
    async fn waits_double_with_jitter_up_to_the_cap() {
        let mut retry = UnitRetry::new(&policy());
        let waits: Vec<Duration> = (0..7).map(|_| retry.next_wait()).collect();
        let bases = [50, 100, 200, 400, 800, 1000, 1000].map(Duration::from_millis);
        for (wait, base) in waits.iter().zip(bases) {
            assert!(*wait >= base / 2 && *wait <= base, "{wait:?} for {base:?}");
        }
    }

    #[test]
    fn the_dead_letter_carries_attempts_and_the_first_and_last_failure() {
        let mut retry = UnitRetry::new(&policy());
        let first = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let last = first + Duration::from_secs(7);
        retry.attempt();
        retry.failed(first);
        retry.attempt();
        retry.failed(last);
        let failure = retry.give_up(
            42,
            FailureKind::Timeout,
            "unit call timed out",
            Some("a:1".into()),
        );
        assert_eq!(failure.attempts, 2);
        assert_eq!(failure.first_failure, first);
        assert_eq!(failure.last_failure, last);
        assert_eq!(failure.slot, 42);
        assert_eq!(failure.node.as_deref(), Some("a:1"));
    }
}
