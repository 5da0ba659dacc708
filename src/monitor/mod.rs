//! The cluster monitor: a task that polls every Redis node each `metrics.poll_interval`
//! (`CLUSTER MYID`, `CLUSTER INFO`, `CLUSTER SHARDS`, `INFO`), keeps the latest
//! [`ClusterSnapshot`] for `/readyz` and `fds-worker cluster status`, and exports the seed's
//! alert inputs as `fds_redis_*` metrics. The replies are parsed by [`crate::store::admin`].
//!
//! | file | job |
//! |---|---|
//! | `snapshot.rs` | one poll's answers → nodes, roles, slot ranges, coverage (pure) |
//! | `ranges.rs` | slot ranges from per-slot flags, and as text |
//! | `probe.rs` | asking every node, over the store's per-node connections |
//! | `export.rs` | snapshot → metrics |
//! | `readiness.rs` | snapshot + partitions + draining → ready or the degraded state |

mod export;
mod probe;
pub mod ranges;
pub mod readiness;
pub mod snapshot;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use export::Exporter;
pub use probe::Prober;
pub use readiness::{Assessment, Readiness, assess};
pub use snapshot::{ClusterSnapshot, ClusterView, NodeStatus};

use crate::metrics::Metrics;

/// The latest snapshot, `None` until the first poll finished.
pub type Latest = watch::Receiver<Option<Arc<ClusterSnapshot>>>;

/// The running monitor task; stopped when dropped.
#[derive(Debug)]
pub struct Monitor {
    latest: Latest,
    task: JoinHandle<()>,
}

impl Monitor {
    /// Starts polling now and then every `interval`, exporting into `metrics`.
    pub fn spawn(prober: Prober, interval: Duration, metrics: Metrics) -> Monitor {
        let (tx, latest) = watch::channel(None);
        let task = tokio::spawn(async move {
            let mut exporter = Exporter::default();
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_ready = None;
            loop {
                ticks.tick().await;
                let snapshot = prober.poll().await;
                exporter.export(&snapshot, &metrics.cluster);
                // The cluster's part of readiness, logged when it changes.
                let cluster = readiness::assess(Some(&snapshot), 1, false, 0);
                if last_ready != Some(cluster.ready) {
                    if cluster.ready {
                        tracing::info!(
                            covered_slots = snapshot.covered_slots,
                            "Redis Cluster fully covered"
                        );
                    } else {
                        tracing::warn!(reasons = ?cluster.reasons, "Redis Cluster degraded");
                    }
                    last_ready = Some(cluster.ready);
                }
                if tx.send(Some(Arc::new(snapshot))).is_err() {
                    return;
                }
            }
        });
        Monitor { latest, task }
    }

    /// A receiver of the latest snapshot.
    pub fn latest(&self) -> Latest {
        self.latest.clone()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}
