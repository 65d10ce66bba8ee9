//! The timer queue: one entry per (due instant, ticket slot), popped in time order.
//!
//! Millions of open deadlines make a binary heap pay a cache miss per level on every pop.
//! Here entries are bucketed by due second: a push links its entry into its second's list
//! (or, for the earliest second, inserts into the sorted "current" bucket), and pops walk
//! the current bucket sequentially. Cancellation is lazy: the engine keeps each slot's
//! queued due time and skips entries that no longer match it.
//!
//! Nothing here allocates in steady state (issue 14): entries live in a chunked slab with
//! a free list, each second's bucket is a list threaded through it, and the seconds are a
//! heap plus a hash map whose capacities are kept. A `Vec` per second (in a `BTreeMap`)
//! grew 4 → 8 → 16 … and was freed once popped, and the map's nodes came and went with
//! the seconds: ~0.2 allocations per event in the engine bench.
use crate::core::time::{Ts, NANOS_PER_SEC};
use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Entries per slab chunk (48 KiB): the slab grows without copying or doubling slack.
const CHUNK: usize = 4096;
/// End of a list.
const NIL: u32 = u32::MAX;

/// An entry of a second's list: 12 bytes, not 16 (issue 14, bytes per open ticket: ~1.5
/// entries per open ticket, stale ones included). The due instant is its list's second
/// and `nanos` into it, so the list's head, not the entry, holds the second.
#[derive(Clone, Copy)]
struct Entry {
    /// Nanoseconds into its list's second.
    nanos: u32,
    slot: u32,
    /// Next entry of the same second's list, or of the free list.
    next: u32,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 12);

#[derive(Default)]
pub struct TimerQueue {
    /// Entries of later seconds; freed entries form a list from `free`.
    slab: Vec<Box<[Entry]>>,
    /// Entries ever taken from the slab's end (the rest of the last chunk is untouched).
    used: u32,
    free: Option<u32>,
    /// Later second → head of its list (unsorted).
    heads: FxHashMap<i64, u32>,
    /// The seconds in `heads`, earliest first.
    seconds: BinaryHeap<Reverse<i64>>,
    /// The earliest second's entries, sorted descending (pop from the end).
    current: Vec<(Ts, u32)>,
    /// The second `current` holds (entries ≤ it may be inserted there too).
    current_second: Option<i64>,
    len: usize,
}

fn second_of(t: Ts) -> i64 {
    t.0.div_euclid(NANOS_PER_SEC)
}

/// Nanoseconds of `t` into its second ([`second_of`]): below 10^9, so a `u32`.
fn nanos_of(t: Ts) -> u32 {
    t.0.rem_euclid(NANOS_PER_SEC) as u32
}

/// The instant `nanos` into second `s` (the inverse of [`second_of`] and [`nanos_of`]).
fn instant(s: i64, nanos: u32) -> Ts {
    Ts(s * NANOS_PER_SEC + nanos as i64)
}

impl TimerQueue {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn entry(&self, i: u32) -> &Entry {
        &self.slab[i as usize / CHUNK][i as usize % CHUNK]
    }
    fn entry_mut(&mut self, i: u32) -> &mut Entry {
        &mut self.slab[i as usize / CHUNK][i as usize % CHUNK]
    }

    /// A slab entry holding `e`: from the free list, else the slab's end.
    fn take_entry(&mut self, e: Entry) -> u32 {
        if let Some(i) = self.free {
            let next = self.entry(i).next;
            self.free = (next != NIL).then_some(next);
            *self.entry_mut(i) = e;
            return i;
        }
        let i = self.used;
        if i as usize == self.slab.len() * CHUNK {
            self.slab.push(vec![e; CHUNK].into_boxed_slice());
        }
        self.used += 1;
        *self.entry_mut(i) = e;
        i
    }

    fn free_entry(&mut self, i: u32) {
        self.entry_mut(i).next = self.free.unwrap_or(NIL);
        self.free = Some(i);
    }

    pub fn push(&mut self, due: Ts, slot: u32) {
        self.len += 1;
        let s = second_of(due);
        match self.current_second {
            Some(c) if s <= c => {
                // Keep `current` sorted descending.
                let pos = self.current.partition_point(|e| *e > (due, slot));
                self.current.insert(pos, (due, slot));
            }
            _ => {
                let head = self.heads.get(&s).copied();
                let i = self.take_entry(Entry {
                    nanos: nanos_of(due),
                    slot,
                    next: head.unwrap_or(NIL),
                });
                self.heads.insert(s, i);
                if head.is_none() {
                    self.seconds.push(Reverse(s));
                }
            }
        }
    }

    fn refill(&mut self) {
        while self.current.is_empty() {
            let Some(Reverse(s)) = self.seconds.pop() else {
                self.current_second = None;
                return;
            };
            let mut i = self.heads.remove(&s).unwrap_or(NIL);
            while i != NIL {
                let e = *self.entry(i);
                self.current.push((instant(s, e.nanos), e.slot));
                self.free_entry(i);
                i = e.next;
            }
            self.current.sort_unstable_by(|a, b| b.cmp(a));
            self.current_second = Some(s);
        }
    }

    /// (entries in the slab, entries free in it, the current second's entries, seconds
    /// queued), for the bench's breakdown.
    pub fn usage(&self) -> (usize, usize, usize, usize) {
        let mut free = 0;
        let mut i = self.free;
        while let Some(k) = i {
            free += 1;
            let n = self.entry(k).next;
            i = (n != NIL).then_some(n);
        }
        (
            self.slab.len() * CHUNK,
            free + (self.slab.len() * CHUNK - self.used as usize),
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
            let e = self.entry(i);
            let due = instant(*s, e.nanos);
            min = Some(min.map_or(due, |m: Ts| m.min(due)));
            i = e.next;
        }
        min
    }

    pub fn pop(&mut self) -> Option<(Ts, u32)> {
        self.refill();
        let e = self.current.pop()?;
        self.len -= 1;
        Some(e)
    }

    /// Drops the entries `keep` rejects (stale after lazy cancellation).
    pub fn retain(&mut self, mut keep: impl FnMut(Ts, u32) -> bool) {
        self.current.retain(|&(t, s)| keep(t, s));
        let mut len = self.current.len();
        let seconds: Vec<i64> = self.heads.keys().copied().collect();
        for s in seconds {
            let mut i = self.heads.get(&s).copied().unwrap_or(NIL);
            let mut head = NIL;
            while i != NIL {
                let e = *self.entry(i);
                if keep(instant(s, e.nanos), e.slot) {
                    self.entry_mut(i).next = head;
                    head = i;
                    len += 1;
                } else {
                    self.free_entry(i);
                }
                i = e.next;
            }
            if head == NIL {
                self.heads.remove(&s);
            } else {
                self.heads.insert(s, head);
            }
        }
        let heads = &self.heads;
        self.seconds.retain(|Reverse(s)| heads.contains_key(s));
        self.len = len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An entry's second and nanoseconds give back its instant, at the ends of the range too.
    #[test]
    fn second_and_nanos_give_back_the_instant() {
        for t in [
            i64::MIN,
            i64::MIN + 1,
            -1_000_000_001,
            -1,
            0,
            1,
            999_999_999,
            1_709_546_400_123_456_789,
            i64::MAX - 1,
            i64::MAX,
        ] {
            assert_eq!(instant(second_of(Ts(t)), nanos_of(Ts(t))), Ts(t), "{t}");
        }
    }

    proptest! {
        /// Pops, and drops by `retain`, in the order and with the contents of a binary heap.
        #[test]
        fn pops_in_order_like_a_heap(ops in proptest::collection::vec((0u8..10, 0i64..5_000_000_000_000, 0u32..50), 1..300)) {
            let mut q = TimerQueue::default();
            let mut model = std::collections::BinaryHeap::new();
            for (op, t, s) in ops {
                if op == 0 {
                    // Drop the entries of odd slots below `s`.
                    let keep = |_: Ts, slot: u32| slot.is_multiple_of(2) || slot >= s;
                    q.retain(keep);
                    model.retain(|std::cmp::Reverse((t, slot))| keep(*t, *slot));
                } else if op < 6 || model.is_empty() {
                    q.push(Ts(t), s);
                    model.push(std::cmp::Reverse((Ts(t), s)));
                } else {
                    let std::cmp::Reverse(expected) = model.pop().unwrap();
                    prop_assert_eq!(q.pop(), Some(expected));
                }
                prop_assert_eq!(q.len(), model.len());
                prop_assert_eq!(q.peek_cached(), model.peek().map(|e| e.0 .0));
            }
            while let Some(std::cmp::Reverse(e)) = model.pop() {
                prop_assert_eq!(q.pop(), Some(e));
            }
            prop_assert_eq!(q.pop(), None);
        }
    }
}
