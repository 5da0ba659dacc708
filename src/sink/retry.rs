//! The retry state of one publish: attempts, first and last failure, backoff and the budget
//! (`kafka.produce_retry_budget`, from the first attempt). Pure: the producer loop in
//! [`super::Sink`] does the sending and the sleeping.

use std::time::{Duration, SystemTime};

use super::error::{PublishError, SinkError};
use crate::retry::{Backoff, Budget};

/// First wait after a failed publish; doubles per attempt.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between publish attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Wait this long, then try again.
    Retry(Duration),
    /// Give up on the record.
    GiveUp(PublishError),
}

/// The retry state of one record's publish.
#[derive(Debug, Clone)]
pub struct PublishRetry {
    budget: Budget,
    backoff: Backoff,
    first_failure: Option<SystemTime>,
}

impl PublishRetry {
    /// A publish starting now, with `budget` for retryable errors.
    pub fn new(budget: Duration) -> PublishRetry {
        PublishRetry {
            budget: Budget::new(budget, u32::MAX),
            backoff: Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF),
            first_failure: None,
        }
    }

    /// An attempt is being sent.
    pub fn attempt(&mut self) {
        self.budget.attempt();
    }

    /// How long the producer may wait for room in its queue on this attempt (the budget
    /// left: a full queue is waited out, not failed, within the budget).
    pub fn queue_timeout(&self) -> Duration {
        self.budget.remaining()
    }

    /// Attempts sent so far.
    pub fn attempts(&self) -> u32 {
        self.budget.attempts()
    }

    /// After the last attempt to `topic` failed with `error` at `at` (wall clock, for the
    /// dead-letter headers): retry after a backoff if the error is retryable and the wait
    /// still fits in the budget, else give up.
    pub fn after(&mut self, topic: &str, error: SinkError, at: SystemTime) -> Next {
        let first_failure = *self.first_failure.get_or_insert(at);
        let budget_spent = if error.retryable() {
            let wait = self.backoff.next_wait();
            if self.budget.allows(wait) {
                return Next::Retry(wait);
            }
            true
        } else {
            false
        };
        Next::GiveUp(PublishError {
            topic: topic.to_owned(),
            error,
            attempts: self.budget.attempts(),
            elapsed: self.budget.elapsed(),
            budget_spent,
            first_failure,
            last_failure: at,
        })
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    use super::*;

    fn error(code: RDKafkaErrorCode) -> SinkError {
        SinkError::from(KafkaError::MessageProduction(code))
    }

    /// Fails every attempt with `code`, sleeping the waits under paused time; returns the
    /// waits and how it gave up.
    async fn fail_until_given_up(
        retry: &mut PublishRetry,
        code: RDKafkaErrorCode,
    ) -> (Vec<Duration>, PublishError) {
        let mut waits = Vec::new();
        loop {
            retry.attempt();
            match retry.after("transactions-enriched", error(code), SystemTime::now()) {
                Next::Retry(wait) => {
                    waits.push(wait);
                    tokio::time::sleep(wait).await;
                }
                Next::GiveUp(failure) => return (waits, failure),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_error_gives_up_at_the_first_attempt() {
        let mut retry = PublishRetry::new(Duration::from_secs(300));
        let (waits, failure) =
            fail_until_given_up(&mut retry, RDKafkaErrorCode::MessageSizeTooLarge).await;
        assert!(waits.is_empty());
        assert_eq!(failure.attempts, 1);
        assert!(!failure.budget_spent);
        assert_eq!(failure.topic, "transactions-enriched");
    }

    #[tokio::test(start_paused = true)]
    async fn a_retryable_error_is_retried_with_growing_jittered_waits_until_the_budget_is_spent() {
        let budget = Duration::from_secs(30);
        let started = tokio::time::Instant::now();
        let mut retry = PublishRetry::new(budget);
        let (waits, failure) =
            fail_until_given_up(&mut retry, RDKafkaErrorCode::NotEnoughReplicas).await;
        assert!(failure.budget_spent, "{failure}");
        assert!(started.elapsed() < budget, "never sleeps past the budget");
        assert!(
            started.elapsed() >= budget - MAX_BACKOFF,
            "gives up only when the next wait no longer fits: {:?}",
            started.elapsed()
        );
        assert_eq!(failure.attempts as usize, waits.len() + 1);
        let mut base = INITIAL_BACKOFF;
        for wait in &waits {
            assert!(*wait >= base / 2 && *wait <= base, "{wait:?} for {base:?}");
            base = (base * 2).min(MAX_BACKOFF);
        }
        assert!(failure.first_failure <= failure.last_failure);
    }

    #[tokio::test(start_paused = true)]
    async fn the_queue_may_be_waited_for_as_long_as_the_budget_lasts() {
        let mut retry = PublishRetry::new(Duration::from_secs(10));
        assert_eq!(retry.queue_timeout(), Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(retry.queue_timeout(), Duration::from_secs(6));
        tokio::time::advance(Duration::from_secs(7)).await;
        assert_eq!(retry.queue_timeout(), Duration::ZERO);
        retry.attempt();
        let next = retry.after("t", error(RDKafkaErrorCode::QueueFull), SystemTime::now());
        assert!(
            matches!(next, Next::GiveUp(ref f) if f.budget_spent),
            "{next:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_fatal_error_gives_up_at_once_too() {
        let mut retry = PublishRetry::new(Duration::from_secs(300));
        let (waits, failure) = fail_until_given_up(&mut retry, RDKafkaErrorCode::Fatal).await;
        assert!(waits.is_empty());
        assert!(!failure.error.retryable());
    }
}
