//! Slot health shared by every unit: which slots used up a retry budget without recovering
//! (their next unit gets one probe attempt instead of a new budget), and when anything last
//! succeeded (no success anywhere since a unit started means the whole cluster is down: wait,
//! don't dead-letter).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::slot::{SLOT_COUNT, Slot};

/// Shared slot health.
#[derive(Debug)]
pub struct Health {
    epoch: Instant,
    last_success_nanos: AtomicU64,
    failing: Box<[AtomicBool]>,
    failing_count: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    /// All slots healthy, nothing succeeded yet.
    pub fn new() -> Health {
        Health {
            epoch: Instant::now(),
            last_success_nanos: AtomicU64::new(0),
            failing: (0..SLOT_COUNT).map(|_| AtomicBool::new(false)).collect(),
            failing_count: AtomicU64::new(0),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// A unit on `slot` succeeded.
    pub fn record_success(&self, slot: Slot) {
        self.last_success_nanos
            .fetch_max(self.nanos(Instant::now()), Ordering::Relaxed);
        if self.failing[slot as usize].swap(false, Ordering::Relaxed) {
            self.failing_count.fetch_sub(1, Ordering::Relaxed);
            tracing::info!(slot, "slot recovered");
        }
    }

    /// Did any unit succeed after `since`?
    pub fn succeeded_since(&self, since: Instant) -> bool {
        self.last_success_nanos.load(Ordering::Relaxed) > self.nanos(since)
    }

    /// `slot` used up its budget.
    pub fn mark_failing(&self, slot: Slot) {
        if !self.failing[slot as usize].swap(true, Ordering::Relaxed) {
            self.failing_count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Is `slot` marked failing?
    pub fn is_failing(&self, slot: Slot) -> bool {
        self.failing[slot as usize].load(Ordering::Relaxed)
    }

    /// How many slots are marked failing.
    pub fn failing_slots(&self) -> u64 {
        self.failing_count.load(Ordering::Relaxed)
    }
}
