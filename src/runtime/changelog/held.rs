//! What a restore found held for seconds, reported by the restore threads to the processing
//! thread, which releases what its own producers may have left there.
//!
//! **Committed offsets.** A restore fetches the group's committed offsets with
//! read_committed (require-stable): the broker answers only once no transaction holds
//! offsets of the partition. A transaction of another process ends by itself (committed,
//! aborted, or timed out by the coordinator). But after a broker outage the group
//! coordinator can keep a transactional offset commit of one of *our* producers pending
//! although the transaction coordinator has closed that transaction (a `TxnOffsetCommit`
//! retried past its transaction's end; seen in CI as offsets held for over ten minutes). No
//! marker ever comes for it, and the restore waits for ever, as does everything after it.
//! The way out is a marker of the same producer: an empty transaction that sends the
//! group's last committed offsets and is aborted drops every offset commit that producer
//! left pending in the group, and changes no committed offset
//! ([`crate::runtime::kafka::pipeline::Pipeline::release_orphaned_holds`]).
//!
//! **State partitions.** A restore reads a state partition only once its last stable
//! offset reaches its high watermark (every transaction in it decided). The same outage can
//! leave records of one of our producers in a state partition with no transaction open for
//! them at the coordinator (a produce retried past its transaction's end: a "hanging"
//! transaction, seen in CI as every state partition held for over 90 s after a broker
//! restart, the transaction timeout being 10 s). Only a marker of that producer ends it, and
//! the coordinator writes one to a partition only if the producer's current transaction
//! wrote there: so the same aborted transaction also writes a tombstone of
//! [`crate::runtime::changelog::keys::RELEASE_KEY`] to each such partition, waits for its
//! delivery, and aborts. The abort marker ends whatever that producer left open there; the
//! tombstone, aborted, is never read by a read_committed reader (and is not a key a
//! restore reads). A partition held by another process's transaction stays held until
//! that transaction ends.
//!
//! **Committed, yet held** (session 15). A broker that restarts while a transaction of ours
//! is between its prepare-commit and its markers can write the transaction complete
//! without a marker in some partitions: seen in the fault test as every state partition
//! holding the records of a transaction whose offsets (and marker in the offsets topic)
//! were committed; the coordinator's log read `PrepareCommit`, then `CompleteCommit` at its
//! restart, and no marker ever reached the state partitions. Aborting those records loses
//! the state of events the group counts as consumed (breaches that should not fire, outputs
//! missing or twice after the restore). So the restore reads a held partition's undecided
//! records first: every state write carries the source offset its transaction commits
//! ([`super::write::COVERS_HEADER`]); when one of them is no later than the group's committed
//! offset, that transaction committed, and (commits being in order) so did everything of
//! ours before it. The partition is then reported `commit`, and the release's transaction
//! there is committed rather than aborted: its commit marker ends the records as committed
//! (the tombstone then reaches read_committed readers; no restore reads its key).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One held partition of a consumer group, with the offset last committed for it (as read
/// without require-stable: the stable value, pending commits left out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldOffset {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
}

/// One state partition whose last stable offset stayed below its high watermark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldState {
    pub topic: String,
    pub partition: i32,
    /// Its undecided records include a state write of a transaction that committed (see
    /// above): release it by a commit, not an abort.
    pub commit: bool,
}

/// Whether the undecided records of a held state partition belong to a committed
/// transaction: one of their [`super::write::COVERS_HEADER`]s, `(source topic, offset)`,
/// names an offset no later than the group's committed offset of that source (`committed`:
/// the restore's stable committed offsets of the partition, by source topic).
pub fn held_by_committed<'a>(
    covers: impl IntoIterator<Item = (&'a str, i64)>,
    committed: &HashMap<String, Option<i64>>,
) -> bool {
    covers.into_iter().any(|(topic, offset)| {
        committed
            .get(topic)
            .copied()
            .flatten()
            .is_some_and(|c| c >= offset)
    })
}

/// Everything held, taken at once by the processing thread.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeldReport {
    pub offsets: Vec<HeldOffset>,
    pub states: Vec<HeldState>,
}

impl HeldReport {
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty() && self.states.is_empty()
    }
}

/// What the restores found held and one processing thread has not taken yet.
#[derive(Default)]
pub struct HeldInbox {
    entries: Mutex<HeldReport>,
}

impl HeldInbox {
    /// Records held offsets; a partition reported again keeps only its latest offset.
    pub fn report(&self, held: impl IntoIterator<Item = HeldOffset>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for h in held {
            entries.offsets.retain(|e| {
                (e.group.as_str(), e.topic.as_str(), e.partition)
                    != (h.group.as_str(), h.topic.as_str(), h.partition)
            });
            entries.offsets.push(h);
        }
    }

    /// Records a held state partition (once, however often reported).
    pub fn report_state(&self, held: HeldState) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        // Once per partition, with its latest verdict.
        match entries
            .states
            .iter_mut()
            .find(|h| h.topic == held.topic && h.partition == held.partition)
        {
            Some(h) => *h = held,
            None => entries.states.push(held),
        }
    }

    /// Takes everything reported so far.
    pub fn take(&self) -> HeldReport {
        std::mem::take(&mut *self.entries.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn is_empty(&self) -> bool {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }
}

/// Where the restores report: every processing thread's inbox. What one thread's restore
/// finds held may have been left by any producer of the process (a partition can move
/// between threads), so every thread releases it with its own producers.
#[derive(Default)]
pub struct HeldReporter {
    inboxes: Vec<Arc<HeldInbox>>,
}

impl HeldReporter {
    /// A reporter to `threads` inboxes, and the inboxes, one per thread.
    pub fn new(threads: usize) -> (Arc<HeldReporter>, Vec<Arc<HeldInbox>>) {
        let inboxes: Vec<Arc<HeldInbox>> = (0..threads).map(|_| Arc::default()).collect();
        let reporter = HeldReporter {
            inboxes: inboxes.clone(),
        };
        (Arc::new(reporter), inboxes)
    }

    /// [`HeldInbox::report`] to every inbox.
    pub fn report(&self, held: &[HeldOffset]) {
        for inbox in &self.inboxes {
            inbox.report(held.iter().cloned());
        }
    }

    /// [`HeldInbox::report_state`] to every inbox.
    pub fn report_state(&self, held: &HeldState) {
        for inbox in &self.inboxes {
            inbox.report_state(held.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_records_are_committed_when_the_group_counts_their_offsets() {
        let committed: HashMap<String, Option<i64>> =
            [("in".to_string(), Some(1009)), ("other".to_string(), None)].into();
        assert!(
            held_by_committed([("in", 1009)], &committed),
            "its own offsets"
        );
        assert!(
            held_by_committed([("in", 900), ("in", 1200)], &committed),
            "an earlier one"
        );
        assert!(
            !held_by_committed([("in", 1010)], &committed),
            "offsets not committed"
        );
        assert!(
            !held_by_committed([("other", 0)], &committed),
            "nothing committed"
        );
        assert!(
            !held_by_committed([("unknown", 0)], &committed),
            "another topic"
        );
        assert!(
            !held_by_committed([], &committed),
            "no state write seen: abort"
        );
    }

    fn held(group: &str, partition: i32, committed: i64) -> HeldOffset {
        HeldOffset {
            group: group.into(),
            topic: "in".into(),
            partition,
            committed,
        }
    }

    fn state(topic: &str, partition: i32) -> HeldState {
        HeldState {
            topic: topic.into(),
            partition,
            commit: false,
        }
    }

    #[test]
    fn a_partition_reported_twice_is_taken_once_with_its_latest_offset() {
        let h = HeldInbox::default();
        assert!(h.is_empty());
        h.report([held("g", 0, 5), held("g", 1, 7)]);
        h.report([held("g", 0, 9), held("g.surge", 0, 3)]);
        let mut taken = h.take().offsets;
        taken.sort_by_key(|e| (e.group.clone(), e.partition));
        assert_eq!(
            taken,
            [held("g", 0, 9), held("g", 1, 7), held("g.surge", 0, 3)]
        );
        assert!(h.is_empty(), "taken");
    }

    #[test]
    fn what_one_restore_reports_reaches_every_threads_inbox() {
        let (reporter, inboxes) = HeldReporter::new(2);
        reporter.report(&[held("g", 0, 5)]);
        reporter.report_state(&state("state", 1));
        for inbox in &inboxes {
            let taken = inbox.take();
            assert_eq!(taken.offsets, [held("g", 0, 5)]);
            assert_eq!(taken.states, [state("state", 1)]);
        }
    }

    #[test]
    fn a_state_partition_reported_twice_is_taken_once_beside_the_offsets() {
        let h = HeldInbox::default();
        h.report_state(state("state", 1));
        assert!(
            !h.is_empty(),
            "a held state partition alone is something to release"
        );
        h.report_state(state("state", 1));
        h.report_state(state("surge-state", 1));
        h.report([held("g", 0, 5)]);
        let taken = h.take();
        assert_eq!(taken.states, [state("state", 1), state("surge-state", 1)]);
        assert_eq!(taken.offsets, [held("g", 0, 5)]);
        assert!(h.is_empty() && h.take().is_empty(), "taken");
        h.report_state(state("state", 1));
        assert_eq!(
            h.take().states,
            [state("state", 1)],
            "reported again after a take"
        );
    }
}
