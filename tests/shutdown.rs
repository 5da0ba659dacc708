//! Graceful shutdown of the `fds-worker run` binary under load: SIGTERM mid-load drains
//! (in-flight batches finish, offsets are committed, the producer is flushed) and exits 0; a
//! second worker finishes the rest, and nothing is lost, counted twice or enriched twice. A
//! second signal during a drain that cannot finish (the whole cluster frozen) exits at once
//! with 130.
//!
//! (`faults.rs` s7 covers the crash — SIGKILL mid-batch — and a SIGTERM once idle.)

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::ops::{self, Process, sample, sum};
use common::worker::{
    assert_enriched, assert_ground_truth, enrichment_counts, publish, publish_in_background,
    start_stack, test_config, traffic, wait_for_enrichment,
};
use fds_testkit::demo::LocalStack;
use fds_worker::config::Config;
use tokio::sync::Mutex;

/// One stack at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

const WAIT: Duration = Duration::from_secs(120);

/// Environment pointing the binary at `stack` as `config` says.
fn worker_env(stack: &LocalStack, config: &Config) -> Vec<(&'static str, String)> {
    let mut env = stack.env();
    env.extend([
        ("FDS_KAFKA__GROUP_ID", config.kafka.group_id.clone()),
        (
            "FDS_PIPELINE__BATCH_SIZE",
            config.pipeline.batch_size.to_string(),
        ),
        ("FDS_REDIS__RETRY__BUDGET", "6s".to_owned()),
        ("FDS_METRICS__LISTEN", "127.0.0.1:0".to_owned()),
        ("FDS_METRICS__POLL_INTERVAL", "200ms".to_owned()),
        ("FDS_LOG__LEVEL", "info".to_owned()),
    ]);
    env
}

fn spawn_worker(env: &[(&'static str, String)]) -> Process {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Process::spawn(&["run"], &env)
}

/// Scrapes `/metrics` until `done` holds; panics after [`WAIT`] with the last scrape.
async fn wait_metrics(addr: SocketAddr, what: &str, done: impl Fn(&str) -> bool) -> String {
    ops::wait_metrics(addr, what, WAIT, done).await
}

/// Waits (bounded by [`WAIT`]) for `worker` to exit: its status and everything it printed.
async fn exit_of(mut worker: Process) -> (std::process::ExitStatus, Vec<String>) {
    blocking(move || {
        let status = worker.wait(WAIT);
        (status, worker.output())
    })
    .await
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_load_drains_and_exits_0_then_a_second_worker_finishes_exactly() {
    let _serial = SERIAL.lock().await;
    let stack = start_stack().await;
    let config = test_config(&stack);
    let traffic = traffic(&config, 3_000, 81, Duration::from_secs(10));
    let publishing = publish_in_background(&stack, &config, &traffic, 300);
    let env = worker_env(&stack, &config);

    let first = spawn_worker(&env);
    let (first, addr) = blocking(move || {
        let addr = first.http_addr(Duration::from_secs(60));
        (first, addr)
    })
    .await;
    // Mid-load: some work finished, more arriving.
    let metrics = wait_metrics(addr, "600 enriched", |m| {
        sum(m, "fds_events_enriched_total") >= 600.0
    })
    .await;
    assert!(
        !publishing.is_finished(),
        "still publishing when the signal comes"
    );
    first.signal("TERM");
    let mut first = first;
    let status = blocking(move || {
        let status = first.wait(WAIT);
        (status, first.output())
    })
    .await;
    let (status, output) = status;
    let log = output.join("\n");
    assert_eq!(status.code(), Some(0), "graceful stop exits 0:\n{log}");
    assert!(log.contains("signal received: draining"), "{log}");
    assert!(
        log.contains("shutting down: finishing in-flight batches"),
        "{log}"
    );
    let stopped = output
        .iter()
        .find(|l| l.contains("\"message\":\"stopped\""))
        .unwrap_or_else(|| panic!("the drain's summary is logged:\n{log}"));
    println!(
        "[sigterm] first worker: {} enriched when signalled; {stopped}",
        sum(&metrics, "fds_events_enriched_total")
    );

    let second = spawn_worker(&env);
    publishing.await.unwrap();
    // The second worker finishes the rest.
    wait_for_enrichment(&stack, &config, &traffic, || 0).await;
    second.signal("TERM");
    let mut second = second;
    let status = blocking(move || second.wait(WAIT)).await;
    assert!(status.success(), "{status}");

    // Nothing lost, nothing counted twice, and — the first worker having drained and
    // committed — no transaction enriched twice.
    let counts = enrichment_counts(&stack, &config);
    println!(
        "[sigterm] transactions {} enriched {} records {}",
        traffic.truth.transactions,
        counts.len(),
        counts.values().sum::<usize>()
    );
    assert_enriched(&counts, &traffic, true);
    assert_ground_truth(&stack, &traffic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_during_a_stuck_drain_exits_at_once_with_130() {
    let _serial = SERIAL.lock().await;
    let stack = std::sync::Arc::new(start_stack().await);
    let config = test_config(&stack);
    let mut env = worker_env(&stack, &config);
    // The drain would wait this long for the frozen cluster.
    env.push(("FDS_PIPELINE__SHUTDOWN_DEADLINE", "10m".to_owned()));
    let worker = spawn_worker(&env);
    let addr = worker.http_addr(Duration::from_secs(60));
    wait_metrics(addr, "partitions assigned", |m| {
        sample(m, "fds_assigned_partitions").is_some_and(|n| n > 0.0)
    })
    .await;

    // Every node frozen: batches in flight can neither finish nor fail over.
    let cluster = std::sync::Arc::clone(&stack);
    blocking(move || {
        for node in 0..cluster.cluster.node_count() {
            cluster.cluster.pause(node).unwrap();
        }
    })
    .await;
    let traffic = traffic(&config, 50, 82, Duration::from_secs(1));
    publish(&stack, &config, &traffic, None).await;
    wait_metrics(addr, "a batch in flight", |m| {
        sample(m, "fds_inflight_batches").is_some_and(|n| n >= 1.0)
    })
    .await;

    worker.signal("TERM");
    worker.wait_for_line("the drain", WAIT, |l| {
        l.contains("finishing in-flight batches")
    });
    worker.signal("TERM");
    let (status, output) = exit_of(worker).await;
    let log = output.join("\n");
    assert_eq!(status.code(), Some(130), "forced exit:\n{log}");
    assert!(
        log.contains("second signal: exiting without draining"),
        "{log}"
    );
    assert!(
        !output.iter().any(|l| l.contains("\"message\":\"stopped\"")),
        "the drain did not finish:\n{log}"
    );
    let cluster = std::sync::Arc::clone(&stack);
    blocking(move || {
        for node in 0..cluster.cluster.node_count() {
            cluster.cluster.resume(node).unwrap();
        }
    })
    .await;
}

/// A SIGTERM while the worker still starts — here its Schema Registry accepts connections and
/// never answers, so the start waits on registering the enrichment schema — ends the start
/// cleanly: exit 0, not death by the signal (an orchestrator stopping a pod that has not come
/// up yet; seen in a soak: a worker SIGTERMed 5 s into its start, during a registry freeze).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_starting_exits_0() {
    let _serial = SERIAL.lock().await;
    let stack = start_stack().await;
    let config = test_config(&stack);
    // A registry that takes connections and says nothing.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let registry = silent.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let accepted = std::sync::Arc::clone(&accepted);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in silent.incoming().map_while(Result::ok) {
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                held.push(stream);
            }
        });
    }
    let mut env = worker_env(&stack, &config);
    env.push(("FDS_SCHEMAS__REGISTRY__URLS", format!("http://{registry}")));
    let worker = spawn_worker(&env);
    worker.http_addr(Duration::from_secs(60));
    let deadline = std::time::Instant::now() + WAIT;
    while accepted.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never asked its registry:\n{}",
            worker.output().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !worker
            .output()
            .iter()
            .any(|l| l.contains("\"message\":\"worker started\"")),
        "still starting when signalled"
    );
    worker.signal("TERM");
    let (status, output) = exit_of(worker).await;
    let log = output.join("\n");
    assert_eq!(
        status.code(),
        Some(0),
        "a clean stop, not death by SIGTERM:\n{log}"
    );
    assert!(log.contains("signal received"), "{log}");
}
