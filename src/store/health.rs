//! Cluster health shared by every unit:
//! - which **node** used up a retry budget without recovering: units for the slots it serves get
//!   one probe attempt instead of a fresh budget each (a dead shard serves thousands of slots);
//! - when anything last **succeeded**, and when a node last said the whole cluster is down
//!   (`CLUSTERDOWN The cluster is down`): a unit that saw no success since it started, or runs
//!   while the cluster declares itself down, waits instead of dead-lettering — the worker pauses
//!   rather than flooding the DLQ;
//! - a cached slot → master map (from `CLUSTER SLOTS`), to attribute failures to nodes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::slot::{SLOT_COUNT, Slot};

/// How long a slot map is trusted before the store refreshes it (on the error path only).
pub const OWNERS_MAX_AGE: Duration = Duration::from_secs(1);

/// Shared health.
#[derive(Debug)]
pub struct Health {
    epoch: Instant,
    last_success_nanos: AtomicU64,
    last_cluster_down_nanos: AtomicU64,
    failing: Mutex<HashSet<Arc<str>>>,
    suspects: Mutex<HashMap<Arc<str>, Suspect>>,
    owners: RwLock<Owners>,
}

/// A node that just failed a request: only one probe at a time goes to it.
#[derive(Debug, Clone, Copy)]
struct Suspect {
    next_probe: Instant,
    probing: bool,
}

/// How often a suspect node is probed. Every request to a dead node makes redis-rs refresh
/// its whole slot map under a lock that stalls requests to healthy nodes, so requests to a
/// suspect node are limited to one probe per interval.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug)]
struct Owners {
    refreshed: Option<Instant>,
    by_slot: Vec<Option<Arc<str>>>,
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    /// Nothing known yet.
    pub fn new() -> Health {
        Health {
            epoch: Instant::now(),
            last_success_nanos: AtomicU64::new(0),
            last_cluster_down_nanos: AtomicU64::new(0),
            failing: Mutex::new(HashSet::new()),
            suspects: Mutex::new(HashMap::new()),
            owners: RwLock::new(Owners {
                refreshed: None,
                by_slot: vec![None; SLOT_COUNT as usize],
            }),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// The failure domain of `slot`: its master's address, or the slot itself if unknown.
    pub fn domain(&self, slot: Slot) -> Arc<str> {
        self.owner(slot)
            .unwrap_or_else(|| Arc::from(format!("slot {slot}")))
    }

    /// The cached master of `slot`.
    pub fn owner(&self, slot: Slot) -> Option<Arc<str>> {
        let owners = self.owners.read().unwrap_or_else(|e| e.into_inner());
        owners.by_slot[slot as usize].clone()
    }

    /// Is the slot map older than [`OWNERS_MAX_AGE`]?
    pub fn owners_stale(&self) -> bool {
        let owners = self.owners.read().unwrap_or_else(|e| e.into_inner());
        owners
            .refreshed
            .is_none_or(|at| at.elapsed() > OWNERS_MAX_AGE)
    }

    /// Replaces the slot map with `(first, last, master)` ranges.
    pub fn set_owners(&self, ranges: &[(Slot, Slot, String)]) {
        let mut by_slot = vec![None; SLOT_COUNT as usize];
        for (first, last, node) in ranges {
            let node: Arc<str> = Arc::from(node.as_str());
            for slot in *first..=*last.min(&(SLOT_COUNT - 1)) {
                by_slot[slot as usize] = Some(Arc::clone(&node));
            }
        }
        let mut owners = self.owners.write().unwrap_or_else(|e| e.into_inner());
        owners.by_slot = by_slot;
        owners.refreshed = Some(Instant::now());
    }

    /// Records that `slot` moved to `node` (a `MOVED` reply); the rest of the map is marked
    /// stale so the next failure refreshes it.
    pub fn set_owner(&self, slot: Slot, node: &Arc<str>) {
        let mut owners = self.owners.write().unwrap_or_else(|e| e.into_inner());
        owners.by_slot[slot as usize] = Some(Arc::clone(node));
        owners.refreshed = None;
    }

    /// A unit on `slot` succeeded.
    pub fn record_success(&self, slot: Slot) {
        self.last_success_nanos
            .fetch_max(self.nanos(Instant::now()), Ordering::Relaxed);
        let domain = self.domain(slot);
        self.suspects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&domain);
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        if failing.remove(&domain) {
            tracing::info!(node = %domain, "node recovered");
        }
    }

    /// May a unit on `slot` send a request now? Always, unless its node is suspect; then only
    /// the one unit that takes the next probe turn.
    pub fn may_attempt(&self, slot: Slot) -> bool {
        let domain = self.domain(slot);
        let mut suspects = self.suspects.lock().unwrap_or_else(|e| e.into_inner());
        let Some(suspect) = suspects.get_mut(&domain) else {
            return true;
        };
        if suspect.probing || Instant::now() < suspect.next_probe {
            return false;
        }
        suspect.probing = true;
        true
    }

    /// A request to `slot`'s node failed in a way that says the node is unreachable.
    pub fn mark_suspect(&self, slot: Slot) {
        let domain = self.domain(slot);
        let mut suspects = self.suspects.lock().unwrap_or_else(|e| e.into_inner());
        suspects.insert(
            domain,
            Suspect {
                next_probe: Instant::now() + PROBE_INTERVAL,
                probing: false,
            },
        );
    }

    /// A probe of a suspect node failed in a way that does not say it is unreachable (it
    /// answered `LOADING`, `CLUSTERDOWN` …): the next probe is due after the interval, as for
    /// any failed probe. (Without this the node would stay "being probed" forever.)
    pub fn end_probe(&self, slot: Slot) {
        let domain = self.domain(slot);
        let mut suspects = self.suspects.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(suspect) = suspects.get_mut(&domain) {
            suspect.probing = false;
            suspect.next_probe = Instant::now() + PROBE_INTERVAL;
        }
    }

    /// A node answered that the whole cluster is down.
    pub fn record_cluster_down(&self) {
        self.last_cluster_down_nanos
            .fetch_max(self.nanos(Instant::now()), Ordering::Relaxed);
    }

    /// Was "the cluster is down" heard more recently than any success?
    pub fn cluster_down_reported(&self) -> bool {
        let success = self.last_success_nanos.load(Ordering::Relaxed);
        let down = self.last_cluster_down_nanos.load(Ordering::Relaxed);
        down > success
    }

    /// All distinct masters in the slot map.
    pub fn masters(&self) -> Vec<Arc<str>> {
        let owners = self.owners.read().unwrap_or_else(|e| e.into_inner());
        let mut masters: Vec<Arc<str>> = owners.by_slot.iter().flatten().cloned().collect();
        masters.sort();
        masters.dedup();
        masters
    }

    /// `slot`'s node used up a budget.
    pub fn mark_failing(&self, slot: Slot) {
        let domain = self.domain(slot);
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        if failing.insert(Arc::clone(&domain)) {
            tracing::warn!(node = %domain, "node marked failing: its units get one attempt each");
        }
    }

    /// Is `slot`'s node marked failing?
    pub fn is_failing(&self, slot: Slot) -> bool {
        let domain = self.domain(slot);
        let failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        failing.contains(&domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_is_per_node_and_a_success_on_any_of_its_slots_clears_it() {
        let health = Health::new();
        health.set_owners(&[(0, 100, "a:1".into()), (101, 16383, "b:2".into())]);
        health.mark_failing(5);
        assert!(health.is_failing(99), "same node");
        assert!(!health.is_failing(200));
        health.record_success(42);
        assert!(!health.is_failing(5));
    }

    #[test]
    fn a_suspect_node_gets_one_probe_per_interval() {
        let health = Health::new();
        health.set_owners(&[(0, 16383, "a:1".into())]);
        assert!(health.may_attempt(1));
        health.mark_suspect(1);
        assert!(!health.may_attempt(2), "no request right after a failure");
        std::thread::sleep(PROBE_INTERVAL);
        assert!(health.may_attempt(3), "one probe");
        assert!(!health.may_attempt(4), "only one probe at a time");
        health.end_probe(3);
        assert!(
            !health.may_attempt(4),
            "a failed probe waits for the interval"
        );
        std::thread::sleep(PROBE_INTERVAL);
        assert!(health.may_attempt(4), "then probes again");
        health.record_success(3);
        assert!(health.may_attempt(5));
    }

    #[test]
    fn a_cluster_down_heard_after_the_last_success_is_reported() {
        let health = Health::new();
        std::thread::sleep(Duration::from_millis(2));
        health.record_success(1);
        assert!(!health.cluster_down_reported());
        std::thread::sleep(Duration::from_millis(2));
        health.record_cluster_down();
        assert!(health.cluster_down_reported());
        std::thread::sleep(Duration::from_millis(2));
        health.record_success(2);
        assert!(
            !health.cluster_down_reported(),
            "a later success means it is back"
        );
    }
}
