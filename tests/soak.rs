//! The randomized nemesis soak (`fds-worker soak`), three minutes with a fixed seed: random
//! Redis, broker and worker faults under steady traffic, then the ledger — every transaction
//! enriched exactly once, no dead letter, Redis equal to the ground truth, the workers' memory
//! within its bound. A failing seed found by a longer run becomes a test here.

use std::path::PathBuf;
use std::time::Duration;

use fds_testkit::soak::{SoakOptions, run};
use fds_worker::config::Config;

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_minutes_of_random_faults_under_load_keep_every_promise() {
    common::init_tracing();
    let report_dir = std::env::temp_dir().join(format!("fds-soak-{}", std::process::id()));
    let options = SoakOptions {
        duration: Duration::from_secs(180),
        seed: 20261201,
        // The debug build the tests run is slower than a release worker: 600 events/s is
        // about a quarter of its exactly-once maximum on these machines.
        rate: 600,
        workers: 2,
        partitions: 4,
        fault_every: Duration::from_secs(6),
        report_dir: report_dir.clone(),
        binary: PathBuf::from(env!("CARGO_BIN_EXE_fds-worker")),
        registry: true,
    };
    let report = run(options, Config::default())
        .await
        .expect("the soak runs");
    println!("{}", fds_testkit::soak::report::summary(&report));
    println!("report, timeline and worker logs: {}", report_dir.display());
    assert!(
        report.faults.len() >= 12,
        "a fault every ~6 s: {} faults",
        report.faults.len()
    );
    let kinds: std::collections::HashSet<_> = report
        .faults
        .iter()
        .map(|f| format!("{:?}", f.kind))
        .collect();
    assert!(
        kinds.len() >= 5,
        "faults of many kinds, not one over and over: {kinds:?}"
    );
    assert!(
        report.ledger.counters_checked > 0 && report.ledger.transactions > 90_000,
        "the ledger compared real work: {:?}",
        report.ledger
    );
    assert!(
        report.violations.is_empty(),
        "seed {}: {:?}",
        report.seed,
        report.violations
    );
    let _ = std::fs::remove_dir_all(&report_dir);
}
