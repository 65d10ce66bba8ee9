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
//!
//! **Rolled forward** (session 16). The same skip can leave *every* partition of a
//! transaction of ours without its marker: the group's offsets held by its pending offset
//! commit, the state partitions by its records, its outputs pending too. No partition then
//! shows its fate, and its outputs do not wait for one: the same producer's next commit
//! that writes to an output partition ends them there as committed (a marker ends all of a
//! producer's undecided records in a partition). Releasing offsets and state by an abort
//! then makes the input be processed again while those outputs stand: duplicates (seen once
//! in 26 fault-test runs). So such a transaction is rolled forward everywhere: when a
//! restore finds the offsets held and the state partition held by records written by one
//! of our producers ([`super::write::COVERS_HEADER`] names the writer) covering offsets
//! beyond the stable committed ones, that producer's release commits, in one transaction,
//! a tombstone to the state partition and the offsets its records cover
//! ([`commit_release`]). Only one of our own producers' records are rolled forward this
//! way: another process's open transaction (a crashed previous owner's) is ended by the
//! coordinator, committed or aborted, and committing offsets its state covers would lose
//! its input if it aborted.
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
    /// The [`super::write::COVERS_HEADER`]s of its undecided records (as many as a bounded
    /// read found).
    pub undecided: Vec<Undecided>,
    /// Reported by a restore that found the group's offsets of the partition held too.
    pub offsets_held: bool,
}

/// An undecided state write's [`super::write::Covers`]: the source offset its transaction
/// would commit, and the producer that wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undecided {
    pub source: String,
    pub offset: i64,
    pub txn: Option<String>,
}

impl From<super::write::Covers<'_>> for Undecided {
    fn from(c: super::write::Covers<'_>) -> Undecided {
        Undecided {
            source: c.topic.to_string(),
            offset: c.offset,
            txn: c.txn.map(str::to_string),
        }
    }
}

/// What one idle producer's committed release ends: held state partitions (topic,
/// partition), and the offsets committed with them (`committed`: the offset to commit).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitRelease {
    pub states: Vec<(String, i32)>,
    pub offsets: Vec<HeldOffset>,
}

impl CommitRelease {
    pub fn is_empty(&self) -> bool {
        self.states.is_empty() && self.offsets.is_empty()
    }
}

/// What the aborted release of every idle producer ends: held offsets, released at their
/// stable committed values, and held state partitions, except what a committed release
/// of `ours` ends (a state partition rolled forward must not get an abort marker of the
/// producer whose records it holds, and its offsets are committed by that release).
pub fn abort_release(report: &HeldReport, ours: &[&str]) -> (Vec<HeldOffset>, Vec<(String, i32)>) {
    let rolled: Vec<&HeldState> = report
        .states
        .iter()
        .filter(|h| ours.iter().any(|id| rolls_forward(h, &report.offsets, id)))
        .collect();
    let offsets = report
        .offsets
        .iter()
        .filter(|o| {
            !rolled.iter().any(|h| {
                h.partition == o.partition && h.undecided.iter().any(|u| u.source == o.topic)
            })
        })
        .cloned()
        .collect();
    let states = report
        .states
        .iter()
        .filter(|h| !h.commit && !rolled.contains(h))
        .map(|h| (h.topic.clone(), h.partition))
        .collect();
    (offsets, states)
}

/// The committed release of the producer with transactional id `txn` (see above): every
/// state partition held by a committed transaction, and every one it rolls forward
/// ([`rolls_forward`]) with the held offsets its records cover. An offset rolled forward is
/// the furthest one covered by the records of any of `ours` (this thread's producers; they
/// commit in turn, so the furthest is the last, and each producer's release commits the
/// same value whatever their order).
pub fn commit_release(report: &HeldReport, txn: Option<&str>, ours: &[&str]) -> CommitRelease {
    let mut out = CommitRelease::default();
    for h in &report.states {
        let rolled = txn.is_some_and(|id| rolls_forward(h, &report.offsets, id));
        if !(h.commit || rolled) {
            continue;
        }
        out.states.push((h.topic.clone(), h.partition));
        if !rolled {
            continue;
        }
        for o in held_offsets_of(h, &report.offsets) {
            let furthest = h
                .undecided
                .iter()
                .filter(|u| {
                    u.source == o.topic && u.txn.as_deref().is_some_and(|t| ours.contains(&t))
                })
                .map(|u| u.offset)
                .max();
            if let Some(offset) = furthest.filter(|&f| f > o.committed) {
                if !out.offsets.iter().any(|e| same_partition(e, o)) {
                    out.offsets.push(HeldOffset {
                        committed: offset,
                        ..o.clone()
                    });
                }
            }
        }
    }
    out
}

/// Whether producer `txn` rolls held state partition `h` forward: reported while the
/// group's offsets were held, it holds records of `txn` covering an offset beyond the
/// stable committed one of a held partition (`offsets`) of the same source.
pub fn rolls_forward(h: &HeldState, offsets: &[HeldOffset], txn: &str) -> bool {
    h.offsets_held
        && h.undecided.iter().any(|u| {
            u.txn.as_deref() == Some(txn)
                && held_offsets_of(h, offsets)
                    .any(|o| o.topic == u.source && u.offset > o.committed)
        })
}

/// The held offsets of state partition `h`'s source partition (state partition p holds
/// source partition p's state).
fn held_offsets_of<'a>(
    h: &'a HeldState,
    offsets: &'a [HeldOffset],
) -> impl Iterator<Item = &'a HeldOffset> + 'a {
    offsets.iter().filter(move |o| o.partition == h.partition)
}

fn same_partition(a: &HeldOffset, b: &HeldOffset) -> bool {
    (a.group.as_str(), a.topic.as_str(), a.partition)
        == (b.group.as_str(), b.topic.as_str(), b.partition)
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
        self.report_all(held, []);
    }

    /// Records a held state partition (once, however often reported).
    pub fn report_state(&self, held: HeldState) {
        self.report_all([], [held]);
    }

    /// Records held offsets and held state partitions at once: a take sees both or neither
    /// (a state partition reported after its offsets were taken and released by an abort
    /// could no longer be rolled forward with them).
    pub fn report_all(
        &self,
        offsets: impl IntoIterator<Item = HeldOffset>,
        states: impl IntoIterator<Item = HeldState>,
    ) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for h in offsets {
            entries.offsets.retain(|e| !same_partition(e, &h));
            entries.offsets.push(h);
        }
        // Once per partition, with its latest verdict.
        for held in states {
            match entries
                .states
                .iter_mut()
                .find(|h| h.topic == held.topic && h.partition == held.partition)
            {
                Some(h) => *h = held,
                None => entries.states.push(held),
            }
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
        self.report_all(&[], std::slice::from_ref(held));
    }

    /// [`HeldInbox::report_all`] to every inbox.
    pub fn report_all(&self, offsets: &[HeldOffset], states: &[HeldState]) {
        for inbox in &self.inboxes {
            inbox.report_all(offsets.iter().cloned(), states.iter().cloned());
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
            undecided: Vec::new(),
            offsets_held: false,
        }
    }

    fn undecided(source: &str, offset: i64, txn: &str) -> Undecided {
        Undecided {
            source: source.into(),
            offset,
            txn: Some(txn.into()),
        }
    }

    /// Offsets of input partition 1 held at 10, state partition 1 held by records of
    /// `writers` ((producer, covered offset)), reported while the offsets were held or not.
    fn mirror(writers: &[(&str, i64)], offsets_held: bool) -> HeldReport {
        HeldReport {
            offsets: vec![held("g", 1, 10), held("g", 2, 10)],
            states: vec![HeldState {
                undecided: writers
                    .iter()
                    .map(|&(w, o)| undecided("in", o, w))
                    .collect(),
                offsets_held,
                ..state("state", 1)
            }],
        }
    }

    #[test]
    fn a_transaction_of_ours_holding_offsets_and_state_is_rolled_forward_by_its_producer() {
        let ours = ["a", "b"];
        let report = mirror(&[("a", 14)], true);
        let release = commit_release(&report, Some("a"), &ours);
        assert_eq!(
            release,
            CommitRelease {
                states: vec![("state".into(), 1)],
                offsets: vec![held("g", 1, 14)],
            },
            "the state and the offsets its records cover, committed together"
        );
        assert!(
            commit_release(&report, Some("b"), &ours).is_empty(),
            "another producer's marker would not end a's records"
        );
        assert!(commit_release(&report, None, &ours).is_empty());
        let (offsets, states) = abort_release(&report, &ours);
        assert_eq!(
            offsets,
            [held("g", 2, 10)],
            "partition 1 is committed instead"
        );
        assert!(
            states.is_empty(),
            "no abort marker on a rolled-forward state"
        );
    }

    #[test]
    fn the_offset_rolled_forward_is_the_furthest_any_of_our_producers_covers() {
        let ours = ["a", "b"];
        let report = mirror(&[("a", 14), ("b", 17), ("other", 30), ("a", 9)], true);
        for id in ours {
            assert_eq!(
                commit_release(&report, Some(id), &ours).offsets,
                [held("g", 1, 17)],
                "{id}: the same offset whichever producer commits last"
            );
        }
    }

    #[test]
    fn no_roll_forward_without_held_offsets_or_records_of_ours_beyond_them() {
        let ours = ["a", "b"];
        let cases = [
            (mirror(&[("a", 14)], false), "the offsets were not held"),
            (mirror(&[("other", 14)], true), "another process's records"),
            (
                mirror(&[("a", 10)], true),
                "covering no more than is committed",
            ),
            (mirror(&[], true), "no covers read"),
        ];
        for (report, why) in cases {
            assert!(
                commit_release(&report, Some("a"), &ours).is_empty(),
                "{why}"
            );
            assert_eq!(
                abort_release(&report, &ours),
                (
                    vec![held("g", 1, 10), held("g", 2, 10)],
                    vec![("state".to_string(), 1)]
                ),
                "{why}: released by an abort"
            );
        }
        // Another source's offsets (the surge group's) are not the state's to roll forward.
        let mut report = mirror(&[("a", 14)], true);
        report.offsets = vec![HeldOffset {
            topic: "repartition".into(),
            ..held("g.surge", 1, 10)
        }];
        assert!(commit_release(&report, Some("a"), &ours).is_empty());
    }

    #[test]
    fn a_committed_transactions_state_is_committed_by_every_producer_without_offsets() {
        let ours = ["a", "b"];
        let mut report = mirror(&[("other", 9)], false);
        report.states[0].commit = true;
        for id in [Some("a"), Some("b"), None] {
            assert_eq!(
                commit_release(&report, id, &ours),
                CommitRelease {
                    states: vec![("state".into(), 1)],
                    offsets: vec![],
                }
            );
        }
        let (offsets, states) = abort_release(&report, &ours);
        assert_eq!(offsets.len(), 2, "the held offsets are released as before");
        assert!(states.is_empty());
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
