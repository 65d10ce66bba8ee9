//! Committed offsets a restore found held: reported by the restore threads to the processing
//! thread, which releases what its own producers may have left pending.
//!
//! A restore fetches the group's committed offsets with read_committed (require-stable): the
//! broker answers only once no transaction holds offsets of the partition. A transaction of
//! another process ends by itself (committed, aborted, or timed out by the coordinator). But
//! after a broker outage the group coordinator can keep a transactional offset commit of one
//! of *our* producers pending although the transaction coordinator has closed that
//! transaction (a `TxnOffsetCommit` retried past its transaction's end; seen in CI as
//! offsets held for over ten minutes). No marker ever comes for it, and the restore waits
//! for ever, as does everything after it. The way out is a marker of the same producer: an
//! empty transaction that sends the group's last committed offsets and is aborted drops
//! every offset commit that producer left pending in the group, and changes no committed
//! offset ([`crate::runtime::kafka::pipeline::Pipeline::release_orphaned_offsets`]).
use std::sync::Mutex;

/// One held partition of a consumer group, with the offset last committed for it (as read
/// without require-stable: the stable value, pending commits left out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldOffset {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
}

/// What the restore threads found held and the processing thread has not taken yet.
#[derive(Default)]
pub struct HeldOffsets {
    entries: Mutex<Vec<HeldOffset>>,
}

impl HeldOffsets {
    /// Records held partitions; a partition reported again keeps only its latest offset.
    pub fn report(&self, held: impl IntoIterator<Item = HeldOffset>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for h in held {
            entries.retain(|e| {
                (e.group.as_str(), e.topic.as_str(), e.partition)
                    != (h.group.as_str(), h.topic.as_str(), h.partition)
            });
            entries.push(h);
        }
    }

    /// Takes everything reported so far.
    pub fn take(&self) -> Vec<HeldOffset> {
        std::mem::take(&mut *self.entries.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn is_empty(&self) -> bool {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(group: &str, partition: i32, committed: i64) -> HeldOffset {
        HeldOffset {
            group: group.into(),
            topic: "in".into(),
            partition,
            committed,
        }
    }

    #[test]
    fn a_partition_reported_twice_is_taken_once_with_its_latest_offset() {
        let h = HeldOffsets::default();
        assert!(h.is_empty());
        h.report([held("g", 0, 5), held("g", 1, 7)]);
        h.report([held("g", 0, 9), held("g.surge", 0, 3)]);
        let mut taken = h.take();
        taken.sort_by_key(|e| (e.group.clone(), e.partition));
        assert_eq!(
            taken,
            [held("g", 0, 9), held("g", 1, 7), held("g.surge", 0, 3)]
        );
        assert!(h.is_empty(), "taken");
    }
}
