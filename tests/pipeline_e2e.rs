//! End to end on a real 6-node Redis Cluster and the Kafka mock cluster: generated traffic →
//! worker → every transaction enriched exactly once, every counter equal to ground truth,
//! blacklist entries with their tier's expiry; also across a worker crash and a rebalance.

mod common;

use std::time::Duration;

use common::worker::{
    assert_enriched, assert_ground_truth, command_calls, enrichment_counts, publish,
    publish_in_background, start_stack, start_worker, test_config, traffic, wait_for_enrichment,
};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_sharing_partitions_through_a_rebalance_count_exactly() {
    let stack = start_stack().await;
    let config = test_config(&stack);
    let traffic = traffic(&config, 4_000, 3, SPAN);
    let half = traffic.events.len() / 2;
    let part = |events: &[_]| Traffic {
        events: events.to_vec(),
        truth: traffic.truth.clone(),
    };
    publish(&stack, &config, &part(&traffic.events[..half]), None).await;

    let first = start_worker(&config);
    while first.progress(&config).enriched < 500 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A second worker joins while the second half is flowing: the group rebalances
    // (cooperative-sticky) mid-stream.
    let second = start_worker(&config);
    let publishing = publish_in_background(&stack, &config, &part(&traffic.events[half..]), 150);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while second.metrics.assigned_partitions.get() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        second.metrics.assigned_partitions.get() > 0,
        "the second worker got partitions"
    );
    publishing.await.unwrap();
    let counts = wait_for_enrichment(&stack, &config, &traffic, || 0).await;
    let first_summary = first.stop().await;
    let second_summary = second.stop().await;
    assert!(
        second_summary.consumed > 0,
        "the second worker consumed records"
    );
    assert!(first_summary.consumed > 0);
    assert_enriched(&counts, &traffic, false);
    assert_ground_truth(&stack, &traffic).await;
}
