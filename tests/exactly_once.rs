//! Exactly-once output on Apache Kafka, with worker **processes** and a `read_committed`
//! consumer as the ledger: after each fault every transaction has exactly one committed
//! enrichment record, and Redis equals the ground truth.
//! - a worker `kill -9`ed mid-batch and restarted (and the same crash under at-least-once
//!   delivery, which publishes duplicates: the difference measured, not claimed);
//! - two workers, one `SIGSTOP`ped past its session timeout (its partitions move to the
//!   other), then continued: the zombie's late transaction is fenced and shows nothing; and
//!   each of the two a zombie in turn;
//! - a SIGTERM drain, then a new worker.
//!
//! Rebalances (workers joining and leaving) are `pipeline_e2e.rs`'s, broker faults (the
//! transaction coordinator and the enrichment leaders killed) `broker_faults.rs`'s; both
//! assert exactly-once output too.

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::scenario::{RATE, TRANSACTIONS};
use common::worker::{
    enrichment_counts, publish_in_background, read_all, start_stack, test_config, traffic,
    verification,
};
use fds_testkit::demo::LocalStack;
use fds_worker::codec::Codec;
use fds_worker::config::{Config, Delivery};
use fds_worker::generate::Traffic;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rdkafka::consumer::{BaseConsumer, Consumer};

const WAIT: Duration = Duration::from_secs(120);

/// A worker process (`fds-worker run`), killed when dropped.
struct WorkerProcess {
    child: Child,
}

impl WorkerProcess {
    /// Starts a worker on `stack` in `config`'s group, with `delivery` and transactional id
    /// `id` (the same id for a restart of the same worker), and `env` on top.
    fn spawn(
        stack: &LocalStack,
        config: &Config,
        delivery: Delivery,
        id: &str,
        env: &[(&str, &str)],
    ) -> WorkerProcess {
        let child = Command::new(env!("CARGO_BIN_EXE_fds-worker"))
            .arg("run")
            .envs(stack.env())
            .env("FDS_KAFKA__GROUP_ID", &config.kafka.group_id)
            .env("FDS_KAFKA__DELIVERY", delivery.as_str())
            .env("FDS_KAFKA__TRANSACTIONS__ID", id)
            .env("FDS_PIPELINE__BATCH_SIZE", "200")
            .env("FDS_METRICS__LISTEN", "127.0.0.1:0")
            // `TEST_WORKER_LOG=info` to see more of the workers when debugging a test.
            .env(
                "FDS_LOG__LEVEL",
                std::env::var("TEST_WORKER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .expect("worker binary starts");
        WorkerProcess { child }
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("signal sent");
    }

    /// Waits (bounded) for the process to exit.
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "worker {} did not exit within {timeout:?}",
                self.child.id()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, and the graceful stop's exit status.
    fn terminate(mut self) -> ExitStatus {
        // It may have exited on its own already (a clear stop): then there is no one to tell.
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        self.wait_exit(Duration::from_secs(60))
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (bounded) until at least `n` transactions have a committed enrichment record.
async fn wait_enriched(stack: &LocalStack, config: &Config, n: usize) -> HashMap<String, usize> {
    let deadline = Instant::now() + WAIT;
    loop {
        let counts = enrichment_counts(stack, config);
        if counts.len() >= n {
            return counts;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} transactions enriched after {WAIT:?}",
            counts.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The ledger: every transaction enriched, Redis exact; returns how many transactions have
/// more than one committed enrichment record, and how many records are extra.
async fn ledger(stack: &LocalStack, config: &Config, traffic: &Traffic) -> (usize, usize) {
    let counts = wait_enriched(stack, config, traffic.truth.transactions).await;
    assert_eq!(counts.len(), traffic.truth.transactions);
    let report = verification(stack, traffic).await;
    assert!(
        report.is_exact(),
        "Redis: lost {:?} doubled {:?} blacklist {:?}",
        report.lost.first(),
        report.doubled.first(),
        report.blacklist_problems
    );
    let repeated = counts.values().filter(|n| **n > 1).count();
    let extra = counts.values().map(|n| n - 1).sum();
    if repeated > 0 {
        println!(
            "repeated, per source partition: {}",
            repeated_by_partition(stack, config)
        );
    }
    (repeated, extra)
}

/// Where the repeated enrichment records came from: per source partition, how many
/// transactions and which source offsets — what a failing ledger needs to be debugged.
fn repeated_by_partition(stack: &LocalStack, config: &Config) -> String {
    let codec = Codec::builtin();
    let mut sources: HashMap<String, (i32, i64, usize)> = HashMap::new();
    for record in read_all(stack, &config.kafka.enrichment_topic) {
        let enrichment = codec
            .decode_enrichment(record.payload.as_deref().unwrap_or_default())
            .expect("valid enrichment");
        let entry = sources.entry(enrichment.event_id).or_insert((
            enrichment.source_partition,
            enrichment.source_offset,
            0,
        ));
        entry.2 += 1;
    }
    let mut partitions: std::collections::BTreeMap<i32, (usize, i64, i64)> = Default::default();
    for (partition, offset, n) in sources.into_values() {
        if n > 1 {
            let entry = partitions
                .entry(partition)
                .or_insert((0, i64::MAX, i64::MIN));
            *entry = (entry.0 + 1, entry.1.min(offset), entry.2.max(offset));
        }
    }
    partitions
        .iter()
        .map(|(p, (n, lo, hi))| format!("p{p}: {n} in offsets {lo}..={hi}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A worker `kill -9`ed with ~600 transactions enriched, while traffic flows; the same worker
/// restarted, both with `env` on top. Returns the repeated transactions and extra records.
async fn crash_and_restart(delivery: Delivery, seed: u64, env: &[(&str, &str)]) -> (usize, usize) {
    let stack = start_stack().await;
    let config = test_config(&stack);
    let traffic = traffic(&config, TRANSACTIONS, seed, Duration::from_secs(10));
    let publishing = publish_in_background(&stack, &config, &traffic, RATE);
    let id = common::random_name("worker");
    let mut first = WorkerProcess::spawn(&stack, &config, delivery, &id, env);
    wait_enriched(&stack, &config, 600).await;
    first.signal(Signal::SIGKILL); // mid-batch: nothing drains, nothing commits
    first.wait_exit(Duration::from_secs(10));
    let second = WorkerProcess::spawn(&stack, &config, delivery, &id, env);
    publishing.await.unwrap();
    let result = ledger(&stack, &config, &traffic).await;
    let status = tokio::task::spawn_blocking(move || second.terminate())
        .await
        .unwrap();
    assert!(status.success(), "graceful stop exits 0: {status}");
    println!(
        "[kill -9, {}] {} transactions, {} enriched more than once ({} extra records)",
        delivery.as_str(),
        traffic.truth.transactions,
        result.0,
        result.1
    );
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_batch_and_restarted_commits_each_enrichment_exactly_once() {
    let (repeated, _) = crash_and_restart(Delivery::ExactlyOnce, 31, &[]).await;
    assert_eq!(
        repeated, 0,
        "exactly one committed enrichment per transaction"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_delivery_publishes_duplicates_after_the_same_crash() {
    // The offsets stored since the last auto-commit die with the process: the restart redoes
    // those records and publishes their enrichment again. With the default interval (1 s) that
    // is the last second's records — or none, if the kill falls just after a commit while the
    // worker waits; a minute's interval puts the crash between two commits
    // for sure, so the duplicates measured are the mode's, not the timer's luck.
    let interval = [(
        "FDS_KAFKA__CONSUMER_OPTIONS",
        r#"{"auto.commit.interval.ms"="60000"}"#,
    )];
    let (repeated, extra) = crash_and_restart(Delivery::AtLeastOnce, 31, &interval).await;
    assert!(
        repeated > 0 && extra >= repeated,
        "at-least-once: the crash is visible downstream ({repeated} repeated)"
    );
}

/// Members of `group` as its coordinator sees them (asked through `admin`).
fn group_members(admin: &BaseConsumer, group: &str) -> usize {
    admin
        .fetch_group_list(Some(group), Duration::from_secs(5))
        .ok()
        .and_then(|list| list.groups().first().map(|g| g.members().len()))
        .unwrap_or(0)
}

/// Two workers, with `sessions` (a session timeout each, `None`: the default 10 s). In each of
/// `rounds`, one of them in turn is frozen (`SIGSTOP`) with batches and perhaps a transaction
/// in flight until the group goes on without it, the other takes its partitions and makes
/// progress, and the zombie is continued: its consumer learns it lost the partitions, its late
/// transaction is refused by the group coordinator (KIP-447: its commit carries the generation
/// of its last rebalance callback, never the reset metadata of a member that lost its
/// session, which the coordinator would accept). At the end the ledger: exactly one committed
/// enrichment record per transaction, Redis equal to the ground truth.
/// `rounds` times, one worker of two (in turn) is paused past its session and resumed; with
/// `sessions` per worker and `env` for both on top.
async fn zombies(
    rounds: usize,
    sessions: [Option<&str>; 2],
    env: &[(&str, &str)],
    transactions: usize,
    seed: u64,
) {
    let stack = start_stack().await;
    let config = test_config(&stack);
    let span = Duration::from_secs(10 * transactions.div_ceil(TRANSACTIONS) as u64);
    let traffic = traffic(&config, transactions, seed, span);
    let publishing = publish_in_background(&stack, &config, &traffic, RATE);
    let workers: Vec<WorkerProcess> = ["first", "second"]
        .iter()
        .zip(sessions)
        .map(|(name, session)| {
            let id = common::random_name(name);
            let env: Vec<_> = session
                .map(|timeout| ("FDS_KAFKA__SESSION_TIMEOUT", timeout))
                .into_iter()
                .chain(env.iter().copied())
                .collect();
            WorkerProcess::spawn(&stack, &config, Delivery::ExactlyOnce, &id, &env)
        })
        .collect();
    let group = config.kafka.group_id.clone();
    let admin: BaseConsumer = stack.kafka.client_config().create().unwrap();
    let members_become = |n: usize, what: &str| {
        tokio::task::block_in_place(|| {
            common::wait_until(what, WAIT, || {
                std::thread::sleep(Duration::from_millis(200));
                match group_members(&admin, &group) {
                    members if members == n => Ok(()),
                    members => Err(format!("{members} members")),
                }
            })
        })
    };
    members_become(2, "both workers in the group");
    wait_enriched(&stack, &config, 600).await;
    for round in 0..rounds {
        let (zombie, other) = (round % 2, (round + 1) % 2);
        workers[zombie].signal(Signal::SIGSTOP);
        let frozen = Instant::now();
        members_become(
            1,
            "the zombie's session to expire and the group to go on without it",
        );
        // The other goes on meanwhile (unless the traffic is already all done).
        let before = enrichment_counts(&stack, &config).len();
        wait_enriched(
            &stack,
            &config,
            (before + 300).min(traffic.truth.transactions),
        )
        .await;
        println!(
            "[zombie round {round}] worker {zombie} paused {:.1}s; worker {other} owns every partition",
            frozen.elapsed().as_secs_f64()
        );
        workers[zombie].signal(Signal::SIGCONT);
        if round + 1 < rounds {
            members_become(2, "the zombie to rejoin the group");
        }
    }
    publishing.await.unwrap();
    let (repeated, extra) = ledger(&stack, &config, &traffic).await;
    assert_eq!(
        (repeated, extra),
        (0, 0),
        "nothing of a zombie's late work is visible"
    );
    let statuses = tokio::task::spawn_blocking(move || {
        workers
            .into_iter()
            .map(WorkerProcess::terminate)
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    // The last zombie may have stopped on its own (a fenced producer is a clear stop); the
    // worker that was never frozen last stops cleanly.
    let last_survivor = rounds % 2;
    assert!(
        statuses[last_survivor].success(),
        "the last survivor stops cleanly: {statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_paused_past_its_session_is_fenced_and_its_late_work_shows_nothing() {
    // The zombie's session is short (the test brokers allow 1 s), so the pause outlives it
    // quickly; the survivor keeps the default.
    zombies(1, [Some("3s"), None], &[], TRANSACTIONS, 32).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_a_zombie_in_turn_and_every_late_commit_is_fenced() {
    zombies(2, [None, None], &[], 2 * TRANSACTIONS, 34).await;
}

/// A rebalance storm: 3 s sessions with librdkafka's default 3 s heartbeat (what the worker
/// used before it heartbeat a third of the session), so sessions expire every few seconds and
/// partitions move while the last owner's transaction, offsets included, is still open. A new
/// owner's committed-offset fetch then answers UNSTABLE_OFFSET_COMMIT while its assignment
/// changes — where librdkafka 2.12.1 started the partition from offset 0 and thousands of
/// records were published twice (every run failed). The patched librdkafka
/// (crates/rdkafka-sys/PATCHED.md) asks for the committed offset again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_a_zombie_in_turn_under_a_rebalance_storm_publishes_each_record_once() {
    let storm = [(
        "FDS_KAFKA__CONSUMER_OPTIONS",
        r#"{"heartbeat.interval.ms"="3000"}"#,
    )];
    zombies(2, [Some("3s"), Some("3s")], &storm, 2 * TRANSACTIONS, 34).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_drain_commits_the_last_transaction_and_the_next_worker_goes_on_exactly() {
    let stack = start_stack().await;
    let config = test_config(&stack);
    let traffic = traffic(&config, TRANSACTIONS, 33, Duration::from_secs(10));
    let publishing = publish_in_background(&stack, &config, &traffic, RATE);
    let first_id = common::random_name("first");
    let first = WorkerProcess::spawn(&stack, &config, Delivery::ExactlyOnce, &first_id, &[]);
    wait_enriched(&stack, &config, 600).await;
    let status = tokio::task::spawn_blocking(move || first.terminate())
        .await
        .unwrap();
    assert!(status.success(), "the drain exits 0: {status}");
    let drained = enrichment_counts(&stack, &config).len();
    let second_id = common::random_name("second");
    let second = WorkerProcess::spawn(&stack, &config, Delivery::ExactlyOnce, &second_id, &[]);
    publishing.await.unwrap();
    let (repeated, extra) = ledger(&stack, &config, &traffic).await;
    let status = tokio::task::spawn_blocking(move || second.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    println!("[SIGTERM drain] {drained} enriched when the first worker stopped");
    assert_eq!(
        (repeated, extra),
        (0, 0),
        "exactly once across the handover"
    );
}
