//! The timer queue: one entry per (due instant, ticket slot), popped in time order.
//!
//! Millions of open deadlines make a binary heap pay a cache miss per level on every pop.
//! Here entries are bucketed by due second: a push appends to its second's vector (or,
//! for the earliest second, inserts into the sorted "current" bucket), and pops walk the
//! current bucket sequentially. Cancellation is lazy: the engine keeps each slot's
//! queued due time and skips entries that no longer match it.
use crate::core::time::{Ts, NANOS_PER_SEC};
use std::collections::BTreeMap;

#[derive(Default)]
pub struct TimerQueue {
    /// Later seconds, unsorted within a bucket.
    later: BTreeMap<i64, Vec<(Ts, u32)>>,
    /// The earliest second's entries, sorted descending (pop from the end).
    current: Vec<(Ts, u32)>,
    /// The second `current` holds (entries ≤ it may be inserted there too).
    current_second: Option<i64>,
    len: usize,
}

fn second_of(t: Ts) -> i64 {
    t.0.div_euclid(NANOS_PER_SEC)
}

impl TimerQueue {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
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
            _ => self.later.entry(s).or_default().push((due, slot)),
        }
    }

    fn refill(&mut self) {
        while self.current.is_empty() {
            let Some((s, mut bucket)) = self.later.pop_first() else {
                self.current_second = None;
                return;
            };
            bucket.sort_unstable_by(|a, b| b.cmp(a));
            self.current = bucket;
            self.current_second = Some(s);
        }
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
        self.later
            .first_key_value()
            .and_then(|(_, b)| b.iter().map(|e| e.0).min())
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
        for bucket in self.later.values_mut() {
            bucket.retain(|&(t, s)| keep(t, s));
        }
        self.later.retain(|_, b| !b.is_empty());
        self.len = self.current.len() + self.later.values().map(|b| b.len()).sum::<usize>();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn pops_in_order_like_a_heap(ops in proptest::collection::vec((any::<bool>(), 0i64..5_000_000_000_000, 0u32..50), 1..300)) {
            let mut q = TimerQueue::default();
            let mut model = std::collections::BinaryHeap::new();
            for (push, t, s) in ops {
                if push || model.is_empty() {
                    q.push(Ts(t), s);
                    model.push(std::cmp::Reverse((Ts(t), s)));
                } else {
                    let std::cmp::Reverse(expected) = model.pop().unwrap();
                    prop_assert_eq!(q.pop(), Some(expected));
                }
                prop_assert_eq!(q.len(), model.len());
            }
            while let Some(std::cmp::Reverse(e)) = model.pop() {
                prop_assert_eq!(q.pop(), Some(e));
            }
            prop_assert_eq!(q.pop(), None);
        }
    }
}
