//! The timer queue: at most one due instant per ticket slot, popped in (instant, slot)
//! order.
//!
//! Millions of open deadlines make a binary heap pay a cache miss per level on every pop.
//! Here slots are bucketed by due second: a slot's node links it into its second's list
//! (or, for the earliest second, it sits in the sorted "current" bucket), and pops walk
//! the current bucket sequentially.
//!
//! Issue 14 (bytes per open ticket), session 13: the queue is keyed by slot. Each slot
//! has a 16-byte node (its due instant and its list's two links) in an array indexed by
//! slot, so a due moving earlier unlinks the slot from its old second instead of leaving
//! a stale entry behind. The queue used to hold (due, slot) entries of 12 bytes in a slab,
//! stale ones included, with the slot's due kept by the ticket store (8 bytes per slot):
//! 1.56 entries per ticket (0.52 free, from the high-water mark) plus the 8 bytes, ~28 B
//! per ticket in the engine bench, against 16 now.
//!
//! Nothing here allocates in steady state (issue 14): nodes live in chunks that are never
//! freed, the seconds are a heap plus a hash map whose capacities are kept, and the current
//! bucket is a `Vec` that keeps its capacity.
use crate::core::time::{Ts, NANOS_PER_SEC};
use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Nodes per chunk (64 KiB): the array grows without copying or doubling slack.
const CHUNK: usize = 4096;
/// Nodes per [`Page`].
const PAGE: usize = 256;

/// 256 nodes: a chunk is an array of 4 KiB-aligned pages, held exactly by mimalloc (a
/// 64 KiB chunk of 8-byte alignment took 80 KiB, see [`crate::core::page`]).
type Page = crate::core::page::Page<Node, PAGE>;

const _: () = assert!(std::mem::size_of::<Page>() == 4096 && CHUNK.is_multiple_of(PAGE));

type Chunk = Box<[Page; CHUNK / PAGE]>;
/// End of a list.
const NIL: u32 = u32::MAX;
/// Entries of the current bucket's capacity kept once it is empty (64 KiB): a second with
/// more due (a burst: in the engine bench, the 65 536 timers due when the clock jumps past
/// the opening span, 1 MiB) grows it for that second only; at 1 M open tickets a second
/// holds ~500 (issue 14, bytes per open ticket).
const CURRENT_KEEP: usize = 4096;
/// `prev` of a list's first node (the list's head is in `heads`, keyed by the second).
const HEAD: u32 = u32::MAX - 1;
/// `prev` of a node in the current bucket.
const CURRENT: u32 = u32::MAX - 2;

/// A slot's place in the queue: `due == Ts::MAX` when it has none.
#[derive(Clone, Copy)]
struct Node {
    due: Ts,
    /// Previous node of its second's list, [`HEAD`], or [`CURRENT`].
    prev: u32,
    /// Next node of its second's list, or [`NIL`].
    next: u32,
}

const _: () = assert!(std::mem::size_of::<Node>() == 16);

const UNQUEUED: Node = Node {
    due: Ts::MAX,
    prev: NIL,
    next: NIL,
};

#[derive(Default)]
pub struct TimerQueue {
    /// Node of each slot, by slot (chunks added as higher slots are queued).
    nodes: Vec<Chunk>,
    /// Later second → first node of its list (unsorted), [`NIL`] once its list emptied.
    heads: FxHashMap<i64, u32>,
    /// The seconds in `heads`, earliest first; while `current` is empty, the earliest
    /// one's list is not empty (for [`TimerQueue::peek_cached`]).
    seconds: BinaryHeap<Reverse<i64>>,
    /// The earliest second's entries, sorted descending (pop from the end).
    current: Vec<(Ts, u32)>,
    /// The second `current` holds (entries ≤ it are inserted there too).
    current_second: Option<i64>,
    len: usize,
}

fn second_of(t: Ts) -> i64 {
    t.0.div_euclid(NANOS_PER_SEC)
}

impl TimerQueue {
    /// Slots queued.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn node(&self, slot: u32) -> &Node {
        let (c, i) = (slot as usize / CHUNK, slot as usize % CHUNK);
        self.nodes
            .get(c)
            .map_or(&UNQUEUED, |chunk| &chunk[i / PAGE].0[i % PAGE])
    }

    #[inline]
    fn node_mut(&mut self, slot: u32) -> &mut Node {
        let c = slot as usize / CHUNK;
        if self.nodes.len() <= c {
            self.grow(c);
        }
        let i = slot as usize % CHUNK;
        &mut self.nodes[c][i / PAGE].0[i % PAGE]
    }

    /// Chunks of nodes up to chunk `c` (out of line: the node array grows 4 096 slots at a
    /// time).
    #[cold]
    #[inline(never)]
    fn grow(&mut self, c: usize) {
        while self.nodes.len() <= c {
            let pages =
                vec![crate::core::page::Page([UNQUEUED; PAGE]); CHUNK / PAGE].into_boxed_slice();
            self.nodes.push(
                pages
                    .try_into()
                    .unwrap_or_else(|_| unreachable!("a chunk's pages")),
            );
        }
    }

    /// The instant `slot` is queued at (`Ts::MAX` when it is not queued).
    #[inline]
    pub fn due(&self, slot: u32) -> Ts {
        self.node(slot).due
    }

    /// Queues `slot` at `due`, in place of the instant it was queued at (`Ts::MAX`:
    /// unqueues it).
    pub fn schedule(&mut self, slot: u32, due: Ts) {
        self.cancel(slot);
        if due == Ts::MAX {
            return;
        }
        self.len += 1;
        let s = second_of(due);
        match self.current_second {
            Some(c) if s <= c => {
                // Keep `current` sorted descending.
                let pos = self.current.partition_point(|e| *e > (due, slot));
                self.current.insert(pos, (due, slot));
                *self.node_mut(slot) = Node {
                    due,
                    prev: CURRENT,
                    next: NIL,
                };
            }
            _ => {
                // One probe of the seconds' map: the slot becomes its list's head.
                let head = match self.heads.entry(s) {
                    std::collections::hash_map::Entry::Occupied(mut o) => o.insert(slot),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(slot);
                        self.seconds.push(Reverse(s));
                        NIL
                    }
                };
                *self.node_mut(slot) = Node {
                    due,
                    prev: HEAD,
                    next: head,
                };
                if head != NIL {
                    self.node_mut(head).prev = slot;
                }
            }
        }
    }

    /// Unqueues `slot` (nothing when it is not queued).
    #[inline]
    pub fn cancel(&mut self, slot: u32) {
        let n = *self.node(slot);
        if n.due != Ts::MAX {
            self.unqueue(slot, n);
        }
    }

    /// Takes `slot`, queued as `n`, out of its list or of the current bucket.
    fn unqueue(&mut self, slot: u32, n: Node) {
        self.len -= 1;
        *self.node_mut(slot) = UNQUEUED;
        if n.prev == CURRENT {
            let pos = self.current.partition_point(|e| *e > (n.due, slot));
            debug_assert_eq!(self.current.get(pos), Some(&(n.due, slot)));
            self.current.remove(pos);
            self.drop_emptied_seconds();
            return;
        }
        if n.next != NIL {
            self.node_mut(n.next).prev = n.prev;
        }
        if n.prev != HEAD {
            self.node_mut(n.prev).next = n.next;
            return;
        }
        self.heads.insert(second_of(n.due), n.next);
        self.drop_emptied_seconds();
    }

    /// While `current` is empty, drops the earliest seconds whose lists were emptied by
    /// [`TimerQueue::cancel`], so that the earliest second left has entries. (Emptied
    /// seconds further on stay until they come up: a binary heap drops its top only.)
    fn drop_emptied_seconds(&mut self) {
        if !self.current.is_empty() {
            return;
        }
        while let Some(&Reverse(top)) = self.seconds.peek() {
            if self.heads.get(&top) != Some(&NIL) {
                break;
            }
            self.seconds.pop();
            self.heads.remove(&top);
        }
    }

    /// Refills the current bucket from the earliest queued second when it is empty. Inlined
    /// test, the work out of line: `peek` and `pop` call it ~2.7 times per event and find
    /// the bucket full nearly every time (issue 14: a call with prologue and epilogue each).
    #[inline]
    fn refill(&mut self) {
        if self.current.is_empty() {
            self.refill_from_seconds();
        }
    }

    #[inline(never)]
    fn refill_from_seconds(&mut self) {
        if self.current.capacity() > CURRENT_KEEP {
            self.current.shrink_to(CURRENT_KEEP);
        }
        while self.current.is_empty() {
            let Some(Reverse(s)) = self.seconds.pop() else {
                self.current_second = None;
                return;
            };
            let mut i = self.heads.remove(&s).unwrap_or(NIL);
            while i != NIL {
                let n = self.node_mut(i);
                n.prev = CURRENT;
                let (due, next) = (n.due, n.next);
                n.next = NIL;
                self.current.push((due, i));
                i = next;
            }
            self.current.sort_unstable_by(|a, b| b.cmp(a));
            self.current_second = Some(s);
        }
    }

    /// (node slots allocated, current bucket's capacity, seconds queued), for the bench's
    /// breakdown.
    pub fn usage(&self) -> (usize, usize, usize) {
        (
            self.nodes.len() * CHUNK,
            self.current.capacity(),
            self.heads.len(),
        )
    }

    pub fn peek(&mut self) -> Option<Ts> {
        self.refill();
        self.current.last().map(|e| e.0)
    }

    /// The earliest due instant without reorganising (for read-only callers).
    pub fn peek_cached(&self) -> Option<Ts> {
        if let Some(e) = self.current.last() {
            return Some(e.0);
        }
        let Reverse(s) = self.seconds.peek()?;
        let mut i = self.heads.get(s).copied().unwrap_or(NIL);
        let mut min = None;
        while i != NIL {
            let n = self.node(i);
            min = Some(min.map_or(n.due, |m: Ts| m.min(n.due)));
            i = n.next;
        }
        min
    }

    /// The earliest (due, slot), unqueued.
    pub fn pop(&mut self) -> Option<(Ts, u32)> {
        self.refill();
        let e = self.current.pop()?;
        self.len -= 1;
        *self.node_mut(e.1) = UNQUEUED;
        self.drop_emptied_seconds();
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// A burst's current bucket is given back to [`CURRENT_KEEP`] entries once it is empty.
    #[test]
    fn a_bursts_current_bucket_is_given_back() {
        let mut q = TimerQueue::default();
        for slot in 0..10_000u32 {
            q.schedule(slot, Ts(1_000_000_000 + slot as i64));
        }
        q.schedule(10_000, Ts(5_000_000_000));
        for slot in 0..10_000u32 {
            assert_eq!(q.pop(), Some((Ts(1_000_000_000 + slot as i64), slot)));
        }
        assert!(q.usage().1 >= 10_000);
        assert_eq!(q.pop(), Some((Ts(5_000_000_000), 10_000)));
        assert!(q.usage().1 <= CURRENT_KEEP);
    }

    /// A slot's due across chunk boundaries, and slots never queued read as unqueued.
    #[test]
    fn slots_past_the_nodes_are_unqueued() {
        let mut q = TimerQueue::default();
        assert_eq!(q.due(5 * CHUNK as u32), Ts::MAX);
        q.schedule(3 * CHUNK as u32 + 1, Ts(7));
        assert_eq!(q.due(3 * CHUNK as u32 + 1), Ts(7));
        assert_eq!(q.due(3 * CHUNK as u32), Ts::MAX);
        assert_eq!(q.due(9 * CHUNK as u32), Ts::MAX);
        q.cancel(9 * CHUNK as u32);
        assert_eq!((q.len(), q.pop()), (1, Some((Ts(7), 3 * CHUNK as u32 + 1))));
        assert_eq!(q.pop(), None);
    }

    /// A second whose list a reschedule emptied, reached after the seconds before it
    /// popped, is skipped by `peek_cached` as by `pop` (found by the property test below).
    #[test]
    fn an_emptied_second_is_skipped_when_it_comes_up() {
        let mut q = TimerQueue::default();
        let s = |n: i64| Ts(n * NANOS_PER_SEC);
        q.schedule(9, s(2));
        q.schedule(1, s(1));
        q.schedule(2, s(0));
        assert_eq!(q.pop(), Some((s(0), 2)));
        q.schedule(9, s(3)); // second 2 emptied, not the earliest
        assert_eq!(q.pop(), Some((s(1), 1)));
        assert_eq!(q.peek_cached(), Some(s(3)));
        assert_eq!(q.pop(), Some((s(3), 9)));
        assert_eq!((q.peek_cached(), q.pop(), q.len()), (None, None, 0));
    }

    proptest! {
        /// Schedules, cancels and pops as a map slot → due with its entries in (due, slot)
        /// order: each pop the least entry, `due`, `len` and both peeks agree after every
        /// step. Instants within a few seconds and slots few, so lists, the current bucket
        /// and rescheduling among them all happen.
        #[test]
        fn a_map_of_slots_to_dues(ops in proptest::collection::vec((0u8..10, 0i64..6_000_000_000, 0u32..40), 1..400)) {
            let mut q = TimerQueue::default();
            let mut due: BTreeMap<u32, Ts> = BTreeMap::new();
            let mut order: BTreeSet<(Ts, u32)> = BTreeSet::new();
            for (op, t, slot) in ops {
                // Slots spread over chunks: every eighth one far out.
                let slot = if slot % 8 == 7 { slot * CHUNK as u32 } else { slot };
                match op {
                    0..=4 => {
                        q.schedule(slot, Ts(t));
                        if let Some(old) = due.insert(slot, Ts(t)) {
                            order.remove(&(old, slot));
                        }
                        order.insert((Ts(t), slot));
                    }
                    5 => {
                        q.cancel(slot);
                        if let Some(old) = due.remove(&slot) {
                            order.remove(&(old, slot));
                        }
                    }
                    6 => {
                        // A peek moves the next second into the current bucket.
                        prop_assert_eq!(q.peek(), order.first().map(|e| e.0));
                    }
                    _ => {
                        let expected = order.pop_first();
                        if let Some((_, s)) = expected {
                            due.remove(&s);
                        }
                        prop_assert_eq!(q.pop(), expected);
                    }
                }
                prop_assert_eq!(q.len(), order.len());
                prop_assert_eq!(q.peek_cached(), order.first().map(|e| e.0));
                prop_assert_eq!(q.due(slot), due.get(&slot).copied().unwrap_or(Ts::MAX));
            }
            while let Some(e) = order.pop_first() {
                prop_assert_eq!(q.pop(), Some(e));
            }
            prop_assert_eq!(q.pop(), None);
            prop_assert!(q.is_empty());
        }
    }
}
