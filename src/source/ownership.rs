//! Which partitions this worker owns, as of the consumer's last rebalance callback, and a
//! fence between giving a partition up and committing output for it.
//!
//! Each assignment of a partition gets a new **epoch**. Work done under one epoch is only
//! committed while the partition still has that epoch: a record processed before its partition
//! was revoked (and perhaps assigned back, and redelivered) is never committed twice.
//!
//! The fence: a commit ([`Ownership::commit`]) holds the epochs it commits for, and a
//! revocation ([`Ownership::revoke`], called from the rebalance callback, before the consumer
//! lets the partitions go) waits until that commit is done. So a commit either completes while
//! the group still gives this worker the partition, or does not include it — the next owner
//! never starts from offsets that a late commit of this worker moves (KIP-447's zombie
//! fencing covers the worker that lost its session and does not know it yet).
//!
//! The group metadata a commit sends (`send_offsets_to_transaction`) is the one captured at
//! the last rebalance callback ([`Ownership::joined`]), never the consumer's live one: once a
//! member's session has expired, librdkafka resets its own metadata to generation −1 and no
//! member id until it rejoins, and the group coordinator accepts a *transactional* offset
//! commit carrying those without any check (older producers sent neither). A zombie asking
//! for the live metadata would commit its late work over the new owner's; with the captured
//! generation its commit is refused (`ILLEGAL_GENERATION` / `UNKNOWN_MEMBER_ID`).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::consumer::ConsumerGroupMetadata;

use super::watermark::Partition;

/// The assignment epoch of a partition: which assignment of it a record was read under.
pub type Epoch = u64;

/// Owned partitions and their epochs, shared by the consumer's rebalance callbacks and the
/// committing side.
#[derive(Debug, Default)]
pub struct Ownership {
    state: Mutex<State>,
    commit_done: Condvar,
}

#[derive(Default)]
struct State {
    owned: HashMap<Partition, Epoch>,
    next_epoch: Epoch,
    committing: bool,
    /// The group's metadata as of the last rebalance callback; `None` before the first
    /// assignment and after an assignment was lost.
    group: Option<Arc<ConsumerGroupMetadata>>,
}

impl Ownership {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The epoch of `partition` if this worker owns it.
    pub fn epoch(&self, partition: &Partition) -> Option<Epoch> {
        self.lock().owned.get(partition).copied()
    }

    /// The group's metadata as of a rebalance callback (`None`: the assignment was lost):
    /// what every commit sends until the next callback or [`Ownership::refresh`].
    pub fn joined(&self, group: Option<ConsumerGroupMetadata>) {
        self.lock().group = group.map(Arc::new);
    }

    /// The consumer's live metadata, read *before* checking that its assignment is not lost:
    /// replaces the captured one, so a KIP-848 member epoch that moved on without a rebalance
    /// callback is committed under (the classic protocol must not: see the committer). Never revives a lost assignment's
    /// (`None` stays until the next assignment).
    ///
    /// Why reading first makes this safe: librdkafka answers the metadata request on its main
    /// thread, which resets the member (generation −1, no member id) and marks the
    /// assignment lost in one step; so metadata of a reset member is only ever seen after
    /// the lost flag is up — and the flag only comes down once the revocation callback has
    /// taken the partitions from this [`Ownership`].
    pub fn refresh(&self, live: ConsumerGroupMetadata, lost_after_reading: bool) {
        let mut state = self.lock();
        if !lost_after_reading && state.group.is_some() {
            state.group = Some(Arc::new(live));
        }
    }

    /// `partitions` were assigned: each gets a new epoch.
    pub fn assign(&self, partitions: &[Partition]) {
        let mut state = self.lock();
        for partition in partitions {
            state.next_epoch += 1;
            let epoch = state.next_epoch;
            state.owned.insert(partition.clone(), epoch);
        }
    }

    /// `partitions` are being revoked: no commit starting from now includes them, and this
    /// waits (up to `wait`) for a commit in progress to finish. Returns false if the wait
    /// ran out (the commit then fails its own way: the group fences it).
    pub fn revoke(&self, partitions: &[Partition], wait: Duration) -> bool {
        let mut state = self.lock();
        for partition in partitions {
            state.owned.remove(partition);
        }
        let (state, timeout) = self
            .commit_done
            .wait_timeout_while(state, wait, |state| state.committing)
            .unwrap_or_else(|e| e.into_inner());
        drop(state);
        !timeout.timed_out()
    }

    /// Starts a commit of work done under `wanted` (partition → epoch). Revocations wait for
    /// the returned guard to drop. One commit at a time (a second waits for the first).
    pub fn commit<'a>(
        &'a self,
        wanted: impl IntoIterator<Item = (Partition, Epoch)>,
    ) -> (CommitGuard<'a>, Committable) {
        let mut state = self
            .commit_done
            .wait_while(self.lock(), |state| state.committing)
            .unwrap_or_else(|e| e.into_inner());
        state.committing = true;
        let committable = match state.group.clone() {
            Some(group) => Committable {
                owned: wanted
                    .into_iter()
                    .filter(|(partition, epoch)| state.owned.get(partition) == Some(epoch))
                    .collect(),
                group: Some(group),
            },
            // No generation to commit under: nothing is owned for a commit.
            None => Committable::default(),
        };
        (CommitGuard { ownership: self }, committable)
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("owned", &self.owned)
            .field("next_epoch", &self.next_epoch)
            .field("committing", &self.committing)
            .field("group", &self.group.is_some())
            .finish()
    }
}

/// What a commit may include ([`Ownership::commit`]).
#[derive(Default)]
pub struct Committable {
    /// The wanted entries still owned under the same epoch.
    pub owned: Vec<(Partition, Epoch)>,
    /// The group metadata to commit them with (captured at the last rebalance callback).
    pub group: Option<Arc<ConsumerGroupMetadata>>,
}

/// A commit in progress ([`Ownership::commit`]); revocations wait until it is dropped.
#[derive(Debug)]
pub struct CommitGuard<'a> {
    ownership: &'a Ownership,
}

impl Drop for CommitGuard<'_> {
    fn drop(&mut self) {
        self.ownership.lock().committing = false;
        self.ownership.commit_done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;

    fn p(n: i32) -> Partition {
        (Arc::from("transactions"), n)
    }

    /// A group's metadata (of a consumer that never joined: generation −1).
    fn group() -> ConsumerGroupMetadata {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("group.id", "ownership-test")
            .set("bootstrap.servers", "127.0.0.1:9")
            .create()
            .expect("a consumer is created without connecting");
        consumer
            .group_metadata()
            .expect("a group consumer has metadata")
    }

    /// Owns `partitions` as of a rebalance callback.
    fn assigned(ownership: &Ownership, partitions: &[Partition]) {
        ownership.assign(partitions);
        ownership.joined(Some(group()));
    }

    #[test]
    fn every_assignment_gets_a_new_epoch_and_a_revocation_forgets_it() {
        let ownership = Ownership::default();
        ownership.assign(&[p(0), p(1)]);
        let first = ownership.epoch(&p(0)).unwrap();
        assert_ne!(ownership.epoch(&p(1)), Some(first));
        assert!(ownership.revoke(&[p(0)], Duration::ZERO));
        assert_eq!(ownership.epoch(&p(0)), None);
        ownership.assign(&[p(0)]);
        assert!(ownership.epoch(&p(0)).unwrap() > first);
    }

    #[test]
    fn a_commit_keeps_only_the_partitions_still_owned_under_the_same_epoch() {
        let ownership = Ownership::default();
        assigned(&ownership, &[p(0), p(1), p(2)]);
        let e0 = ownership.epoch(&p(0)).unwrap();
        let e1 = ownership.epoch(&p(1)).unwrap();
        let e2 = ownership.epoch(&p(2)).unwrap();
        ownership.revoke(&[p(1), p(2)], Duration::ZERO);
        ownership.assign(&[p(2)]);
        let (_guard, kept) = ownership.commit([(p(0), e0), (p(1), e1), (p(2), e2)]);
        assert_eq!(kept.owned, vec![(p(0), e0)]);
        assert!(kept.group.is_some());
    }

    #[test]
    fn nothing_is_committable_without_the_metadata_of_a_rebalance_callback() {
        let ownership = Ownership::default();
        ownership.assign(&[p(0)]);
        let e0 = ownership.epoch(&p(0)).unwrap();
        let (guard, kept) = ownership.commit([(p(0), e0)]);
        assert!(
            kept.owned.is_empty() && kept.group.is_none(),
            "never joined"
        );
        drop(guard);
        ownership.joined(Some(group()));
        let (guard, kept) = ownership.commit([(p(0), e0)]);
        assert_eq!(kept.owned, vec![(p(0), e0)]);
        drop(guard);
        // The assignment was lost (session expired): no generation is left to commit under,
        // even before the partitions' revocation is handled, and a refresh does not revive it.
        ownership.joined(None);
        ownership.refresh(group(), false);
        let (_guard, kept) = ownership.commit([(p(0), e0)]);
        assert!(kept.owned.is_empty() && kept.group.is_none(), "lost");
    }

    #[test]
    fn a_refresh_replaces_the_captured_metadata_unless_the_assignment_is_lost() {
        let ownership = Ownership::default();
        assigned(&ownership, &[p(0)]);
        let e0 = ownership.epoch(&p(0)).unwrap();
        let captured = |ownership: &Ownership| {
            let (_guard, kept) = ownership.commit([(p(0), e0)]);
            kept.group.expect("metadata")
        };
        let before = captured(&ownership);
        ownership.refresh(group(), true);
        assert!(Arc::ptr_eq(&before, &captured(&ownership)), "lost: kept");
        ownership.refresh(group(), false);
        assert!(!Arc::ptr_eq(&before, &captured(&ownership)), "replaced");
    }

    #[test]
    fn a_revocation_waits_for_the_commit_in_progress() {
        let ownership = Arc::new(Ownership::default());
        assigned(&ownership, &[p(0)]);
        let epoch = ownership.epoch(&p(0)).unwrap();
        let (guard, kept) = ownership.commit([(p(0), epoch)]);
        assert_eq!(kept.owned.len(), 1);
        let revoker = {
            let ownership = Arc::clone(&ownership);
            std::thread::spawn(move || {
                let waited = ownership.revoke(&[p(0)], Duration::from_secs(30));
                (waited, Instant::now())
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        // The guard is dropped only now: the revocation cannot have ended before.
        let released = Instant::now();
        assert!(
            !revoker.is_finished(),
            "the revocation waits for the commit"
        );
        drop(guard);
        let (waited, ended) = revoker.join().unwrap();
        assert!(waited, "the commit ended before the wait ran out");
        assert!(ended >= released, "the revocation ended after the commit");
        assert_eq!(ownership.epoch(&p(0)), None);
    }

    #[test]
    fn a_revocation_gives_up_waiting_after_its_bound() {
        let ownership = Ownership::default();
        ownership.assign(&[p(0)]);
        let (_guard, _) = ownership.commit([]);
        assert!(!ownership.revoke(&[p(0)], Duration::from_millis(50)));
        assert_eq!(ownership.epoch(&p(0)), None);
    }
}
