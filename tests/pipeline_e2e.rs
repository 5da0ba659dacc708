//! End to end on a real 6-node Redis Cluster and Apache Kafka: generated traffic → worker →
//! every transaction enriched exactly once, every counter equal to ground truth, blacklist
//! entries with their tier's expiry; also across a worker crash, and across rebalances as
//! workers join and leave — under both consumer group protocols (classic cooperative-sticky
//! and KIP-848 `consumer`, whose 6 s session the test brokers decide).

mod common;

use std::time::Duration;

use common::worker::{
    assert_enriched, assert_ground_truth, command_calls, enrichment_counts, publish,
    publish_in_background, start_stack, start_worker, test_config, traffic, wait_for_enrichment,
};
use fds_worker::config::GroupProtocol;
use fds_worker::demo::wait_until_finished;
use fds_worker::generate::Traffic;

const SPAN: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transaction_is_enriched_once_and_counters_equal_ground_truth() {
    let stack = start_stack().await;
    let config = test_config(&stack);
    let traffic = traffic(&config, 3_000, 1, SPAN);
    publish(&stack, &config, &traffic, None).await;
    let records = traffic.events.len() as u64;

    let fcalls_before = command_calls(&stack, "fcall");
    let worker = start_worker(&config);
    let (progress, finished) = wait_until_finished(
        &worker.metrics,
        &config,
        records,
        Duration::from_secs(120),
        Duration::from_millis(100),
        |_, _| {},
    )
    .await;
    assert!(finished, "worker finished every record: {progress:?}");
    let summary = worker.stop().await;
    assert_eq!(progress.dead_lettered, 0);
    assert!(progress.breaches > 0, "bursts breach the velocity rule");
    // Units are one per distinct slot per batch (the planner's count), and Redis saw exactly
    // that many FCALLs: nothing per event, no hidden retries.
    assert_eq!(
        command_calls(&stack, "fcall") - fcalls_before,
        summary.units
    );

    assert_enriched(&enrichment_counts(&stack, &config), &traffic, true);
    assert_ground_truth(&stack, &traffic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_aborted_mid_stream_and_restarted_loses_and_doubles_nothing() {
    let stack = start_stack().await;
    let config = test_config(&stack);
    let traffic = traffic(&config, 4_000, 2, SPAN);
    publish(&stack, &config, &traffic, None).await;

    // The first worker is aborted mid-stream: its in-flight batches are dropped, and offsets
    // it stored but had not committed are lost, so the restart redelivers part of the stream.
    let first = start_worker(&config);
    while first.progress(&config).enriched < 1_000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.handle.abort();
    let _ = first.handle.await;

    let second = start_worker(&config);
    let counts = wait_for_enrichment(&stack, &config, &traffic, || 0).await;
    let summary = second.stop().await;
    assert!(summary.consumed > 0);
    // Redelivered transactions may be enriched twice (at-least-once output), never zero times.
    assert_enriched(&counts, &traffic, false);
    assert_ground_truth(&stack, &traffic).await;
}

/// Workers join one by one while traffic flows, then all but one leave (a graceful stop each):
/// the group rebalances at every change, every worker gets partitions, and the result is
/// exact (enrichment at least once: records in flight at a revoke are redone by the next owner).
async fn workers_join_and_leave(protocol: GroupProtocol, workers: usize, seed: u64) {
    let stack = start_stack().await;
    let mut config = test_config(&stack);
    config.kafka.group_protocol = protocol;
    let traffic = traffic(&config, 4_000, seed, SPAN);
    let half = traffic.events.len() / 2;
    let part = |events: &[_]| Traffic {
        events: events.to_vec(),
        truth: traffic.truth.clone(),
    };
    publish(&stack, &config, &part(&traffic.events[..half]), None).await;

    let mut running = vec![start_worker(&config)];
    let started = common::wait_until_async(Duration::from_secs(60), || async {
        running[0].progress(&config).enriched >= 500
    })
    .await;
    assert!(started, "{protocol:?}: the first worker enriched 500 records");
    let publishing = publish_in_background(&stack, &config, &part(&traffic.events[half..]), 150);
    // The others join while the second half is flowing: a rebalance mid-stream for each.
    for _ in 1..workers {
        let joined = start_worker(&config);
        let got = common::wait_until_async(Duration::from_secs(60), || async {
            joined.metrics.assigned_partitions.get() > 0
        })
        .await;
        assert!(got, "{protocol:?}: worker {} got partitions", running.len());
        running.push(joined);
    }
    // Then all but the first leave, one by one, while traffic still flows.
    let mut summaries = Vec::new();
    while running.len() > 1 {
        summaries.push(running.pop().expect("a worker").stop().await);
    }
    publishing.await.unwrap();
    let counts = wait_for_enrichment(&stack, &config, &traffic, || 0).await;
    summaries.push(running.pop().expect("the first worker").stop().await);
    for (i, summary) in summaries.iter().enumerate() {
        assert!(summary.consumed > 0, "{protocol:?}: worker {i} consumed");
    }
    assert_enriched(&counts, &traffic, false);
    assert_ground_truth(&stack, &traffic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_rebalance_exactly_under_the_classic_protocol() {
    workers_join_and_leave(GroupProtocol::Classic, 2, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_rebalance_exactly_under_the_consumer_protocol() {
    workers_join_and_leave(GroupProtocol::Consumer, 2, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_join_and_leave_exactly_under_the_classic_protocol() {
    workers_join_and_leave(GroupProtocol::Classic, 3, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_join_and_leave_exactly_under_the_consumer_protocol() {
    workers_join_and_leave(GroupProtocol::Consumer, 3, 6).await;
}
