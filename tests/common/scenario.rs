//! A fault scenario in progress: a local stack, an in-process worker, seeded traffic flowing at
//! a fixed rate, a meter of the longest stall, and the ground-truth ledger at the end.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fds_testkit::demo::{LocalStack, Progress};
use fds_testkit::localstack::ClusterOptions;
use fds_worker::codec::Codec;
use fds_worker::config::{Config, Delivery};
use fds_worker::generate::Traffic;
use fds_worker::metrics::Metrics;

use super::worker::{
    Worker, assert_features, enrichment_counts, publish_in_background, read_all, start_stack_with,
    start_worker, test_config, traffic, verification, wait_for_enrichment,
};

/// Transactions per scenario, published at [`RATE`] per second: ~10 s of load.
pub const TRANSACTIONS: usize = 3_000;
/// Events per second published during a scenario.
pub const RATE: u32 = 300;

/// Samples a worker's progress and records the longest time nothing finished while records
/// were waiting.
pub struct StallMeter {
    longest_ms: Arc<AtomicU64>,
    current_ms: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl StallMeter {
    pub fn start(metrics: &Metrics, config: &Config) -> StallMeter {
        let longest_ms = Arc::new(AtomicU64::new(0));
        let current_ms = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (metrics, config) = (metrics.clone(), config.clone());
        let (longest, current) = (Arc::clone(&longest_ms), Arc::clone(&current_ms));
        let stopped = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut last = (0, Instant::now());
            while !stopped.load(Ordering::Relaxed) {
                let p = Progress::read(&metrics, &config);
                let finished = p.enriched + p.verdicts + p.dead_lettered;
                if finished != last.0 || p.consumed <= finished {
                    last = (finished, Instant::now());
                }
                let stalled = last.1.elapsed().as_millis() as u64;
                current.store(stalled, Ordering::Relaxed);
                longest.fetch_max(stalled, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        StallMeter {
            longest_ms,
            current_ms,
            stop,
        }
    }

    /// How long nothing has finished while records were waiting, as of the last sample (zero
    /// while records finish or none wait).
    pub fn current(&self) -> Duration {
        Duration::from_millis(self.current_ms.load(Ordering::Relaxed))
    }

    pub fn longest(&self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        Duration::from_millis(self.longest_ms.load(Ordering::Relaxed))
    }
}

/// A scenario in progress: a stack, a worker, traffic flowing.
pub struct Scenario {
    /// Its name in the printed figures.
    pub name: &'static str,
    /// The stack under test.
    pub stack: LocalStack,
    /// The worker's config.
    pub config: Config,
    /// The traffic and its ground truth.
    pub traffic: Traffic,
    worker: Option<Worker>,
    stall: Option<StallMeter>,
    publishing: tokio::task::JoinHandle<()>,
}

impl Scenario {
    /// Starts a scenario on a Redis Cluster of its own (with `options`) and the binary's shared
    /// Apache Kafka cluster.
    pub async fn start(
        name: &'static str,
        options: ClusterOptions,
        tweak: impl FnOnce(&mut Config),
        seed: u64,
    ) -> Scenario {
        let stack = start_stack_with(options).await;
        Scenario::start_on(name, stack, tweak, seed).await
    }

    /// Starts a scenario on `stack` (e.g. one with a Kafka cluster of its own, to break).
    pub async fn start_on(
        name: &'static str,
        stack: LocalStack,
        tweak: impl FnOnce(&mut Config),
        seed: u64,
    ) -> Scenario {
        let mut config = test_config(&stack);
        tweak(&mut config);
        // Known to the scenario (e.g. to find its transaction coordinator).
        if config.kafka.transactions.id.is_empty() {
            config.kafka.transactions.id =
                super::random_name(&format!("{}-worker", config.kafka.group_id));
        }
        let span = Duration::from_secs(u64::from(TRANSACTIONS as u32 / RATE));
        let traffic = traffic(&config, TRANSACTIONS, seed, span);
        let publishing = publish_in_background(&stack, &config, &traffic, RATE);
        let worker = start_worker(&config);
        let stall = StallMeter::start(&worker.metrics, &config);
        Scenario {
            name,
            stack,
            config,
            traffic,
            worker: Some(worker),
            stall: Some(stall),
            publishing,
        }
    }

    /// The current stall (see [`StallMeter::current`]).
    pub fn current_stall(&self) -> Duration {
        self.stall.as_ref().expect("meter running").current()
    }

    /// The running worker.
    pub fn worker(&self) -> &Worker {
        self.worker.as_ref().expect("worker running")
    }

    /// Waits until the worker has finished `n` records; panics after 150 s with its last
    /// progress and the tails of the Kafka brokers' logs.
    pub async fn wait_finished(&self, n: u64) -> Progress {
        let timeout = Duration::from_secs(150);
        self.worker()
            .poll_finished(&self.config, n, timeout)
            .await
            .unwrap_or_else(|last| {
                panic!(
                    "{}: {n} records not finished after {timeout:?}; last: {last:?}\n{}",
                    self.name,
                    self.stack.kafka.log_tails(20)
                )
            })
    }

    /// Waits for the publisher, then for every record to be finished; stops the worker.
    pub async fn finish(&mut self) -> (Progress, Duration) {
        (&mut self.publishing).await.expect("publisher");
        self.wait_finished(self.traffic.events.len() as u64).await;
        // The worker's counters include redeliveries (after a rebalance or a Kafka outage), so
        // they can reach the total early: also wait for every transaction to be on a topic.
        wait_for_enrichment(&self.stack, &self.config, &self.traffic, || {
            self.dead_lettered_transactions().len()
        })
        .await;
        let progress = self.worker().progress(&self.config);
        let stall = self.stall.take().expect("meter").longest();
        self.worker.take().expect("worker").stop().await;
        assert!(
            progress.finished(self.traffic.events.len() as u64),
            "{}: every record finished: {progress:?}",
            self.name
        );
        (progress, stall)
    }

    /// Event ids of dead-lettered transactions.
    pub fn dead_lettered_transactions(&self) -> HashSet<String> {
        let dlq = self
            .config
            .kafka
            .dlq_topic(&self.config.kafka.transactions_topic);
        let codec = Codec::builtin();
        read_all(&self.stack, &dlq)
            .into_iter()
            .filter_map(|r| codec.decode_transaction(r.payload.as_deref()?).ok())
            .map(|tx| tx.event_id)
            .collect()
    }

    /// The ledger: every transaction enriched or dead-lettered; counters exact (when `exact`:
    /// with a shard still down its keys cannot be read, so that check waits for the redrive);
    /// prints the scenario's figures.
    pub async fn ledger(&self, progress: Progress, stall: Duration, exact: bool) -> usize {
        let enriched = enrichment_counts(&self.stack, &self.config);
        let dead = self.dead_lettered_transactions();
        let missing: Vec<_> = self
            .traffic
            .events
            .iter()
            .filter_map(|e| match e {
                fds_worker::generate::GeneratedEvent::Transaction(tx) => Some(&tx.event_id),
                _ => None,
            })
            .filter(|id| !enriched.contains_key(*id) && !dead.contains(*id))
            .collect();
        println!(
            "[{}] events {} (transactions {}, verdicts {}) enriched {} dead-lettered {} \
             longest stall {:.1}s",
            self.name,
            self.traffic.events.len(),
            self.traffic.truth.transactions,
            self.traffic.truth.verdicts,
            enriched.len(),
            progress.dead_lettered,
            stall.as_secs_f64()
        );
        assert!(
            missing.is_empty(),
            "{}: {} transactions neither enriched nor dead-lettered",
            self.name,
            missing.len()
        );
        if self.config.kafka.delivery == Delivery::ExactlyOnce {
            // What a read_committed consumer sees: one enrichment record per transaction,
            // whatever the fault redelivered.
            let repeated: Vec<_> = enriched.iter().filter(|(_, n)| **n != 1).collect();
            assert!(
                repeated.is_empty(),
                "{}: exactly once, yet {} transactions have several committed enrichment \
                 records, e.g. {:?}",
                self.name,
                repeated.len(),
                &repeated[..repeated.len().min(3)]
            );
        }
        if exact {
            let report = verification(&self.stack, &self.traffic).await;
            println!(
                "[{}] lost {} double-counted {} blacklist problems {:?}",
                self.name,
                report.lost_increments(),
                report.doubled_increments(),
                report.blacklist_problems,
            );
            assert!(
                report.is_exact(),
                "{}: lost {:?} doubled {:?} blacklist {:?}",
                self.name,
                &report.lost[..report.lost.len().min(3)],
                &report.doubled[..report.doubled.len().min(3)],
                report.blacklist_problems
            );
            if dead.is_empty() {
                // Every feature value of every record within the truth's bounds (redelivered
                // records read their tiles back; distinct within the HyperLogLog bound). With
                // dead letters an earlier event of an entity may be missing when a later one
                // is read, so only the Redis end state above is compared then.
                let flagged = assert_features(&self.stack, &self.config, &self.traffic, false);
                println!(
                    "[{}] features checked; {flagged} records over a threshold",
                    self.name
                );
            }
        }
        dead.len()
    }
}
