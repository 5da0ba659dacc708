//! Readiness: may this worker take traffic? Ready when partitions are assigned, Redis answers
//! and all 16384 slots are covered (see [`ClusterSnapshot`]), and it is not shutting down.
//! Otherwise the reasons name the degraded state, e.g.
//! `not ready: 5461 of 16384 slots uncovered (cluster_state fail): 0-5460`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

use super::ranges::format_ranges;
use super::snapshot::ClusterSnapshot;
use crate::metrics::Metrics;
use crate::slot::SLOT_COUNT;

/// The verdict and its reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// Ready for traffic.
    pub ready: bool,
    /// Why not (empty when ready).
    pub reasons: Vec<String>,
}

impl Assessment {
    /// The `/readyz` body: `ready`, or `not ready: <reason>; <reason>`.
    pub fn body(&self) -> String {
        if self.ready {
            "ready\n".to_owned()
        } else {
            format!("not ready: {}\n", self.reasons.join("; "))
        }
    }
}

/// Assesses readiness from the last cluster snapshot (`None`: not polled yet), the number of
/// assigned partitions, whether the worker is draining, and how many writer schema ids wait
/// for an unreachable Schema Registry.
pub fn assess(
    snapshot: Option<&ClusterSnapshot>,
    assigned_partitions: i64,
    draining: bool,
    registry_waiting: i64,
) -> Assessment {
    let mut reasons = Vec::new();
    if draining {
        reasons.push("shutting down".to_owned());
    }
    match snapshot {
        None => reasons.push("Redis Cluster not polled yet".to_owned()),
        Some(s) if !s.reachable() => {
            let error = s
                .nodes
                .iter()
                .find_map(|n| n.error.as_deref())
                .unwrap_or("no node known");
            reasons.push(format!("Redis unreachable: no node answered ({error})"));
        }
        Some(s) if s.uncovered_slots() > 0 => {
            let state = s.view.as_ref().map_or("unknown", |v| v.state.as_str());
            reasons.push(format!(
                "{} of {SLOT_COUNT} slots uncovered (cluster_state {state}): {}",
                s.uncovered_slots(),
                format_ranges(&s.uncovered, 8)
            ));
        }
        Some(_) => {}
    }
    if assigned_partitions <= 0 {
        reasons.push("no partitions assigned".to_owned());
    }
    if registry_waiting > 0 {
        reasons.push(format!(
            "Schema Registry unavailable: {registry_waiting} writer schema id(s) waiting, \
             their partitions hold"
        ));
    }
    Assessment {
        ready: reasons.is_empty(),
        reasons,
    }
}

/// Live readiness: the monitor's latest snapshot, the assigned-partitions gauge and a draining
/// flag. Every [`Readiness::check`] also sets the `fds_ready` gauge.
#[derive(Debug, Clone)]
pub struct Readiness {
    metrics: Metrics,
    snapshot: watch::Receiver<Option<Arc<ClusterSnapshot>>>,
    draining: Arc<AtomicBool>,
}

impl Readiness {
    /// Readiness over a monitor's snapshots and the worker's metrics.
    pub fn new(
        metrics: Metrics,
        snapshot: watch::Receiver<Option<Arc<ClusterSnapshot>>>,
    ) -> Readiness {
        Readiness {
            metrics,
            snapshot,
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// From now on the worker is shutting down: not ready.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.check();
    }

    /// Assesses now and sets `fds_ready`.
    pub fn check(&self) -> Assessment {
        let snapshot = self.snapshot.borrow().clone();
        let assessment = assess(
            snapshot.as_deref(),
            self.metrics.assigned_partitions.get(),
            self.draining.load(Ordering::Relaxed),
            self.metrics.schema_registry_unavailable.get(),
        );
        self.metrics.ready.set(i64::from(assessment.ready));
        assessment
    }
}

#[cfg(test)]
mod tests {
    use super::super::snapshot::{NodeReport, NodeStatus};
    use super::*;

    fn snapshot(covered: u32, uncovered: Vec<(u16, u16)>, reachable: bool) -> ClusterSnapshot {
        let mut s = ClusterSnapshot::from_reports(
            &[NodeReport {
                addr: "127.0.0.1:7000".into(),
                answer: Err("connection refused".into()),
            }],
            false,
        );
        if reachable {
            s.view = Some(super::super::snapshot::ClusterView {
                from: "127.0.0.1:7000".into(),
                state: "fail".into(),
                slots_assigned: 16384,
                slots_ok: covered,
                slots_pfail: 0,
                slots_fail: 16384 - covered,
                known_nodes: 6,
                current_epoch: 1,
            });
        }
        s.covered_slots = covered;
        s.uncovered = uncovered;
        s
    }

    #[test]
    fn ready_needs_coverage_partitions_and_no_drain() {
        let full = snapshot(16384, vec![], true);
        assert!(assess(Some(&full), 4, false, 0).ready);
        assert_eq!(assess(Some(&full), 4, false, 0).body(), "ready\n");
        assert!(
            assess(Some(&full), 4, false, 2)
                .body()
                .starts_with("not ready: Schema Registry unavailable: 2 writer schema id(s)")
        );
        assert_eq!(
            assess(Some(&full), 0, false, 0).body(),
            "not ready: no partitions assigned\n"
        );
        assert_eq!(
            assess(Some(&full), 4, true, 0).body(),
            "not ready: shutting down\n"
        );
        assert_eq!(
            assess(None, 4, false, 0).reasons,
            ["Redis Cluster not polled yet"]
        );
    }

    #[test]
    fn the_body_names_uncovered_slots_and_an_unreachable_cluster() {
        let partial = snapshot(16384 - 5461, vec![(0, 5460)], true);
        assert_eq!(
            assess(Some(&partial), 4, false, 0).body(),
            "not ready: 5461 of 16384 slots uncovered (cluster_state fail): 0-5460\n"
        );
        let gone = snapshot(0, vec![(0, 16383)], false);
        let body = assess(Some(&gone), 0, false, 0).body();
        assert_eq!(
            body,
            "not ready: Redis unreachable: no node answered (connection refused); no partitions assigned\n"
        );
        let _: &NodeStatus = &gone.nodes[0];
    }
}
