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
    /// Since when a probe is out, if one is.
    probing: Option<Instant>,
}

/// A probe out for longer than this is taken as lost (its unit gone without an answer), and
/// the next unit probes instead: a node must never wait on a probe that will not come back.
pub const PROBE_LOST_AFTER: Duration = Duration::from_secs(30);

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

    /// A unit's attempt on `domain` (what [`Health::may_attempt`] gave it) succeeded.
    pub fn record_success(&self, domain: &Arc<str>) {
        self.last_success_nanos
            .fetch_max(self.nanos(Instant::now()), Ordering::Relaxed);
        self.suspects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(domain);
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        if failing.remove(domain) {
            tracing::info!(node = %domain, "node recovered");
        }
    }

    /// May a unit on `slot` send a request now? Always, unless its node is suspect; then only
    /// the one unit that takes the next probe turn. `Some(domain)`: yes, to the node `domain`,
    /// which the attempt's outcome is to be booked against (its slot may move to another node
    /// meanwhile — a `MOVED` during a migration — and a probe booked against the new node would
    /// leave the old one waiting for it forever).
    pub fn may_attempt(&self, slot: Slot) -> Option<Arc<str>> {
        let domain = self.domain(slot);
        let mut suspects = self.suspects.lock().unwrap_or_else(|e| e.into_inner());
        let Some(suspect) = suspects.get_mut(&domain) else {
            return Some(domain);
        };
        let now = Instant::now();
        let probe_out = suspect
            .probing
            .is_some_and(|since| now.duration_since(since) < PROBE_LOST_AFTER);
        if probe_out || now < suspect.next_probe {
            return None;
        }
        suspect.probing = Some(now);
        Some(domain)
    }

    /// The attempt [`Health::may_attempt`] allowed on `domain`, until its outcome is booked
    /// ([`AttemptTurn::book`]). Dropped unbooked — the unit's future cancelled mid-request,
    /// e.g. its batch given up at a rebalance — it ends the probe at once
    /// ([`Health::end_probe`]): the node's other units would otherwise wait
    /// [`PROBE_LOST_AFTER`] for a probe that never answers (one suspected cause of a soak's
    /// "waiting for its next probe" dead letters; not observed directly).
    pub fn turn(&self, domain: Arc<str>) -> AttemptTurn<'_> {
        AttemptTurn {
            health: self,
            domain: Some(domain),
        }
    }

    /// A request to `domain` failed in a way that says the node is unreachable.
    pub fn mark_suspect(&self, domain: &Arc<str>) {
        let mut suspects = self.suspects.lock().unwrap_or_else(|e| e.into_inner());
        suspects.insert(
            Arc::clone(domain),
            Suspect {
                next_probe: Instant::now() + PROBE_INTERVAL,
                probing: None,
            },
        );
    }

    /// A probe of suspect `domain` failed in a way that does not say it is unreachable (it
    /// answered `LOADING`, `CLUSTERDOWN` …): the next probe is due after the interval, as for
    /// any failed probe. (Without this the node would stay "being probed" forever.)
    pub fn end_probe(&self, domain: &Arc<str>) {
        let mut suspects = self.suspects.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(suspect) = suspects.get_mut(domain) {
            suspect.probing = None;
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

/// See [`Health::turn`].
pub struct AttemptTurn<'a> {
    health: &'a Health,
    domain: Option<Arc<str>>,
}

impl AttemptTurn<'_> {
    /// The attempt's outcome is about to be booked against the returned node.
    pub fn book(mut self) -> Arc<str> {
        self.domain.take().expect("a turn is booked once")
    }
}

impl Drop for AttemptTurn<'_> {
    fn drop(&mut self) {
        if let Some(domain) = self.domain.take() {
            self.health.end_probe(&domain);
        }
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
        let attempt = health.may_attempt(42).expect("not suspect");
        health.record_success(&attempt);
        assert!(!health.is_failing(5));
    }

    /// The node of `slot`, tried once and failed: suspect.
    fn suspect(health: &Health, slot: Slot) -> Arc<str> {
        let node = health.may_attempt(slot).expect("not suspect yet");
        health.mark_suspect(&node);
        node
    }

    #[test]
    fn a_suspect_node_gets_one_probe_per_interval() {
        let health = Health::new();
        health.set_owners(&[(0, 16383, "a:1".into())]);
        suspect(&health, 1);
        assert!(
            health.may_attempt(2).is_none(),
            "no request right after a failure"
        );
        std::thread::sleep(PROBE_INTERVAL);
        let probe = health.may_attempt(3).expect("one probe");
        assert!(health.may_attempt(4).is_none(), "only one probe at a time");
        health.end_probe(&probe);
        assert!(
            health.may_attempt(4).is_none(),
            "a failed probe waits for the interval"
        );
        std::thread::sleep(PROBE_INTERVAL);
        let probe = health.may_attempt(4).expect("then probes again");
        health.record_success(&probe);
        assert!(health.may_attempt(5).is_some());
    }

    #[test]
    fn a_probe_whose_slot_moved_meanwhile_still_ends_the_probe_of_the_node_it_went_to() {
        // Seen in a soak: a probe of a suspect node took a slot that a migration then moved
        // (MOVED); its success was booked against the new owner, and the old node's other
        // slots waited "for its next probe" for the rest of the run.
        let health = Health::new();
        health.set_owners(&[(0, 100, "a:1".into()), (101, 16383, "b:2".into())]);
        suspect(&health, 7);
        std::thread::sleep(PROBE_INTERVAL);
        let probe = health.may_attempt(7).expect("the probe");
        health.set_owner(7, &Arc::from("b:2"));
        health.record_success(&probe);
        assert_eq!(
            health.may_attempt(8).as_deref(),
            Some("a:1"),
            "a:1 answered its probe: its slots go on"
        );
    }

    #[test]
    fn a_probe_dropped_before_its_outcome_is_booked_lets_the_next_probe_go() {
        // A probing unit cancelled mid-request (its future dropped) must not leave the node's
        // other units waiting PROBE_LOST_AFTER (30 s: a soak's whole budget) for its answer.
        let health = Health::new();
        health.set_owners(&[(0, 16383, "a:1".into())]);
        suspect(&health, 1);
        std::thread::sleep(PROBE_INTERVAL);
        let turn = health.turn(health.may_attempt(2).expect("the probe"));
        assert!(health.may_attempt(3).is_none(), "while it is out, no other");
        drop(turn); // the unit's future cancelled mid-request
        std::thread::sleep(PROBE_INTERVAL);
        let next = health.turn(
            health
                .may_attempt(3)
                .expect("the next probe, an interval later"),
        );
        health.record_success(&next.book());
        assert!(
            health.may_attempt(4).is_some(),
            "answered: the node's units go on"
        );
    }

    #[test]
    fn a_probe_that_never_comes_back_is_taken_as_lost_and_another_unit_probes() {
        let health = Health::new();
        health.set_owners(&[(0, 16383, "a:1".into())]);
        let node = suspect(&health, 1);
        std::thread::sleep(PROBE_INTERVAL);
        let _lost = health.may_attempt(2).expect("a probe, never answered");
        assert!(health.may_attempt(3).is_none(), "while it is out, no other");
        {
            // The probe has been out for PROBE_LOST_AFTER (its unit dropped unanswered).
            let mut suspects = health.suspects.lock().unwrap();
            let out = suspects.get_mut(&node).unwrap().probing.as_mut().unwrap();
            *out -= PROBE_LOST_AFTER;
        }
        assert!(health.may_attempt(3).is_some(), "a new probe");
    }

    #[test]
    fn a_cluster_down_heard_after_the_last_success_is_reported() {
        let health = Health::new();
        std::thread::sleep(Duration::from_millis(2));
        health.record_success(&Arc::from("a:1"));
        assert!(!health.cluster_down_reported());
        std::thread::sleep(Duration::from_millis(2));
        health.record_cluster_down();
        assert!(health.cluster_down_reported());
        std::thread::sleep(Duration::from_millis(2));
        health.record_success(&Arc::from("a:1"));
        assert!(
            !health.cluster_down_reported(),
            "a later success means it is back"
        );
    }
}
