//! Events waiting for the watermark, popped in rule 4's order ([`crate::core::order`]:
//! occurred_at, causal rank, event id), then arrival.
//!
//! Small keys (40 bytes) over a slab of events: a heap of whole events moved ~140-byte
//! entries at every level of a push or pop and recomputed each event's causal rank and
//! compared ids through `memcmp` at every comparison. Here a key carries the rank and the
//! id's first 16 bytes as one integer, so comparisons rarely look at the event, and the
//! event itself never moves while it waits. Events arrive nearly in order, so keys not
//! below the last one queued go to a sorted run (push and pop O(1)); only stragglers go
//! to a binary heap, and a pop takes the smaller of the two fronts.
use crate::core::model::Event;
use crate::core::order::causal_rank;
use crate::core::time::Ts;
use std::cmp::Ordering;
use std::collections::VecDeque;

#[derive(Clone, Copy)]
struct Key {
    at: Ts,
    /// The id's first 16 bytes, big-endian, zero-padded: ordered like the ids themselves
    /// whenever the two differ (see [`PendingQueue::cmp`]).
    prefix: u128,
    seq: u64,
    slot: u32,
    rank: u8,
    /// The id's length, capped at 17 ("longer than the prefix").
    len: u8,
}

#[derive(Default)]
pub struct PendingQueue {
    /// Keys in ascending order (pushed at the back, popped at the front).
    run: VecDeque<Key>,
    /// Min-heap by [`PendingQueue::cmp`] of keys that arrived below the run's last key.
    heap: Vec<Key>,
    events: Vec<Option<Event>>,
    free: Vec<u32>,
}

/// The first 16 bytes of `id` as a big-endian integer, zero-padded: where two ids' prefixes
/// differ, they compare as the ids do (a shorter id's padding is below any byte the
/// longer one has there); equal prefixes decide nothing.
///
/// Read by at most two overlapping big-endian loads, shifted into place (the bytes both
/// loads hold land on the same bits): a `copy_from_slice` of a variable length into a
/// zeroed array was a `memcpy` call per pending event and per output sorted (issue 14).
#[inline]
pub(crate) fn prefix_of(id: &str) -> u128 {
    let b = id.as_bytes();
    let n = b.len();
    let be8 = |at: usize| u64::from_be_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
    let be4 = |at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]));
    match n {
        16.. => u128::from(be8(0)) << 64 | u128::from(be8(8)),
        8..=15 => u128::from(be8(0)) << 64 | u128::from(be8(n - 8)) << (8 * (16 - n)),
        4..=7 => u128::from(be4(0)) << 96 | u128::from(be4(n - 4)) << (8 * (16 - n)),
        1..=3 => {
            // First, middle and last byte (for 1 and 2 bytes some are the same byte).
            u128::from(b[0]) << 120
                | u128::from(b[n / 2]) << (8 * (15 - n / 2))
                | u128::from(b[n - 1]) << (8 * (16 - n))
        }
        0 => 0,
    }
}

impl PendingQueue {
    pub fn len(&self) -> usize {
        self.run.len() + self.heap.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rule 4's order, then `seq` (arrival). Ids compare by their padded 16-byte prefixes:
    /// where those differ, the first differing byte is a real byte of both ids, or a
    /// padding zero against a non-zero byte of an id of which the other is a prefix — in
    /// both cases the order of the ids. Equal prefixes of ids both within 16 bytes mean
    /// one is a prefix of the other (it sorts first); otherwise the ids are compared.
    fn cmp(&self, a: &Key, b: &Key) -> Ordering {
        a.at.cmp(&b.at)
            .then(a.rank.cmp(&b.rank))
            .then(a.prefix.cmp(&b.prefix))
            .then_with(|| {
                if a.len <= 16 && b.len <= 16 {
                    a.len.cmp(&b.len)
                } else {
                    self.event(a.slot)
                        .event_id
                        .as_str()
                        .cmp(self.event(b.slot).event_id.as_str())
                }
            })
            .then(a.seq.cmp(&b.seq))
    }

    fn event(&self, slot: u32) -> &Event {
        self.events[slot as usize].as_ref().expect("queued slot")
    }

    fn less(&self, i: usize, j: usize) -> bool {
        self.cmp(&self.heap[i], &self.heap[j]) == Ordering::Less
    }

    pub fn push(&mut self, seq: u64, event: Event) {
        let key = Key {
            at: event.occurred_at,
            prefix: prefix_of(&event.event_id),
            seq,
            slot: 0,
            rank: causal_rank(&event.body),
            len: event.event_id.len().min(17) as u8,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.events[s as usize] = Some(event);
                s
            }
            None => {
                self.events.push(Some(event));
                (self.events.len() - 1) as u32
            }
        };
        let key = Key { slot, ..key };
        if self
            .run
            .back()
            .is_none_or(|last| self.cmp(last, &key) == Ordering::Less)
        {
            self.run.push_back(key);
            return;
        }
        self.heap.push(key);
        let mut i = self.heap.len() - 1;
        while i > 0 {
            let parent = (i - 1) / 2;
            if !self.less(i, parent) {
                break;
            }
            self.heap.swap(i, parent);
            i = parent;
        }
    }

    /// Whether the next key is the run's front (rather than the heap's top).
    fn next_from_run(&self) -> Option<bool> {
        match (self.run.front(), self.heap.first()) {
            (Some(r), Some(h)) => Some(self.cmp(r, h) == Ordering::Less),
            (Some(_), None) => Some(true),
            (None, Some(_)) => Some(false),
            (None, None) => None,
        }
    }

    /// The occurred_at of the next event.
    pub fn peek_time(&self) -> Option<Ts> {
        // Both fronts' times: the smaller is the next event's (keys order by time first).
        match (self.run.front(), self.heap.first()) {
            (Some(r), Some(h)) => Some(r.at.min(h.at)),
            (r, h) => r.or(h).map(|k| k.at),
        }
    }

    pub fn pop(&mut self) -> Option<Event> {
        if self.next_from_run()? {
            let top = self.run.pop_front().expect("non-empty run");
            self.free.push(top.slot);
            return self.events[top.slot as usize].take();
        }
        let top = self.heap.swap_remove(0);
        let n = self.heap.len();
        let mut i = 0;
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut m = i;
            if l < n && self.less(l, m) {
                m = l;
            }
            if r < n && self.less(r, m) {
                m = r;
            }
            if m == i {
                break;
            }
            self.heap.swap(i, m);
            i = m;
        }
        self.free.push(top.slot);
        self.events[top.slot as usize].take()
    }

    /// The events in the order they will apply (for snapshots, which must not depend on
    /// the heap's layout).
    pub fn sorted(&self) -> Vec<&Event> {
        let mut keys: Vec<Key> = self.run.iter().chain(&self.heap).copied().collect();
        keys.sort_by(|a, b| self.cmp(a, b));
        keys.iter().map(|k| self.event(k.slot)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::Body;
    use crate::core::order::order_key;
    use proptest::prelude::*;

    fn ev(at: i64, id: &str, opened: bool) -> Event {
        Event {
            event_id: id.into(),
            ticket_id: "T".into(),
            occurred_at: Ts(at),
            tenant: "".into(),
            body: if opened {
                Body::Opened {
                    channel: Default::default(),
                    category: Default::default(),
                    urgency: Default::default(),
                    tier: Default::default(),
                    team: Default::default(),
                }
            } else {
                Body::CustomerMessage
            },
        }
    }

    /// The simple definition `prefix_of` is read differently from.
    fn prefix_by_copy(id: &str) -> u128 {
        let mut b = [0u8; 16];
        let n = id.len().min(16);
        b[..n].copy_from_slice(&id.as_bytes()[..n]);
        u128::from_be_bytes(b)
    }

    /// Every length from 0 to 40, every byte position set to a distinct non-zero value
    /// (so a byte read into the wrong place or dropped changes the result).
    #[test]
    fn prefix_is_the_padded_first_sixteen_bytes() {
        for n in 0..=40usize {
            let id: String = (0..n).map(|i| char::from(1 + i as u8)).collect();
            assert_eq!(prefix_of(&id), prefix_by_copy(&id), "length {n}");
        }
        assert_eq!(prefix_of("\0\0\0\0\0"), 0);
        assert_eq!(prefix_of("é"), prefix_by_copy("é"));
    }

    proptest! {
        #[test]
        fn prefix_equals_the_copied_bytes(id in "(.|\\x00){0,24}") {
            prop_assert_eq!(prefix_of(&id), prefix_by_copy(&id));
        }

        /// Pops in (order_key, arrival) order, as a heap of whole events did, with ids
        /// that share long prefixes, contain NUL bytes or differ only in length.
        #[test]
        fn pops_in_rule4_then_arrival_order(
            ops in proptest::collection::vec(
                (any::<bool>(), 0i64..4, "(a|b|\\x00){0,3}(0123456789abcdef){0,2}[a-c\\x00]{0,2}", any::<bool>()),
                1..200,
            )
        ) {
            let mut q = PendingQueue::default();
            let mut model: Vec<(u64, Event)> = Vec::new();
            let mut seq = 0;
            for (push, at, id, opened) in ops {
                if push || model.is_empty() {
                    seq += 1;
                    q.push(seq, ev(at, &id, opened));
                    model.push((seq, ev(at, &id, opened)));
                } else {
                    model.sort_by(|a, b| (order_key(&a.1), a.0).cmp(&(order_key(&b.1), b.0)));
                    let sorted: Vec<&Event> = model.iter().map(|(_, e)| e).collect();
                    prop_assert_eq!(q.sorted(), sorted);
                    let (_, expected) = model.remove(0);
                    prop_assert_eq!(q.pop(), Some(expected));
                }
                prop_assert_eq!(q.len(), model.len());
            }
        }
    }
}
