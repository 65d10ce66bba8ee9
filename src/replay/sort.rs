//! History order for `replay`: events sorted by (occurred_at, causal rank, event_id) — the
//! order of rule 4 ([`crate::core::order::order_key`]) — whatever their line order, under a
//! memory budget. Events are collected until the budget is reached, then sorted and written
//! to an anonymous temporary file as a run; at the end the runs are merged (k-way, in passes
//! of at most [`FAN_IN`] files so a huge input never opens thousands of files).
//!
//! The order is total on an event's content (tenant, ticket and the encoded event break the
//! last ties), so the events reach the engine in the same sequence whatever the input's
//! line order, and the replay output is byte-identical. External-sort crates count their
//! budget in items rather than bytes; this one is small enough to keep here.
use crate::core::model::Event;
use crate::core::order::order_key;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};

/// Runs merged at once; more runs are merged in passes.
pub const FAN_IN: usize = 64;
/// Read buffer of each run during a merge.
const RUN_BUFFER: usize = 64 * 1024;

/// The total history order: rule 4's key, then tenant, ticket and the encoded event, so
/// only byte-identical events compare equal.
pub fn history_cmp(a: &Event, b: &Event) -> Ordering {
    order_key(a)
        .cmp(&order_key(b))
        .then_with(|| a.tenant.cmp(&b.tenant))
        .then_with(|| a.ticket_id.cmp(&b.ticket_id))
        .then_with(|| encode(a).cmp(&encode(b)))
}

fn encode(ev: &Event) -> Vec<u8> {
    postcard::to_stdvec(ev).expect("an event serialises")
}

/// Heap bytes of a compact string (inline up to 24 bytes).
fn heap(s: &str) -> usize {
    if s.len() > 24 {
        s.len()
    } else {
        0
    }
}

/// Bytes an event holds outside its `size_of` (the strings that did not fit inline).
fn heap_bytes(ev: &Event) -> usize {
    let team = match &ev.body {
        crate::core::model::Body::Opened { team, .. } => heap(team),
        _ => 0,
    };
    heap(&ev.event_id) + heap(&ev.ticket_id) + heap(&ev.tenant) + team
}

/// Collects events and yields them in history order, spilling sorted runs to temporary
/// files when the events held would exceed `budget` bytes.
pub struct HistorySorter {
    budget: usize,
    buf: Vec<Event>,
    heap_bytes: usize,
    runs: Vec<File>,
}

impl HistorySorter {
    pub fn new(budget: usize) -> HistorySorter {
        HistorySorter {
            budget,
            buf: Vec::new(),
            heap_bytes: 0,
            runs: Vec::new(),
        }
    }

    /// Bytes the buffered events hold (vector capacity and their heap strings).
    fn held(&self, capacity: usize) -> usize {
        capacity * std::mem::size_of::<Event>() + self.heap_bytes
    }

    pub fn push(&mut self, ev: Event) -> io::Result<()> {
        let extra = heap_bytes(&ev);
        if self.buf.len() == self.buf.capacity() {
            // Grow by doubling, but only as far as the budget allows; spill when full.
            let room =
                self.budget.saturating_sub(self.heap_bytes + extra) / std::mem::size_of::<Event>();
            let grown = (self.buf.capacity() * 2).max(1024).min(room);
            if grown > self.buf.len() {
                self.buf.reserve_exact(grown - self.buf.len());
            } else if !self.buf.is_empty() {
                self.spill()?;
            }
        } else if !self.buf.is_empty() && self.held(self.buf.capacity()) + extra > self.budget {
            self.spill()?;
        }
        self.heap_bytes += extra;
        self.buf.push(ev);
        Ok(())
    }

    /// Sorted runs written so far.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    fn spill(&mut self) -> io::Result<()> {
        self.buf.sort_unstable_by(history_cmp);
        let mut w = RunWriter::new()?;
        for ev in self.buf.drain(..) {
            w.write(&ev)?;
        }
        self.runs.push(w.finish()?);
        self.heap_bytes = 0;
        Ok(())
    }

    /// The events in history order.
    pub fn finish(mut self) -> io::Result<Sorted> {
        if self.runs.is_empty() {
            self.buf.sort_unstable_by(history_cmp);
            return Ok(Sorted::Memory(std::mem::take(&mut self.buf).into_iter()));
        }
        if !self.buf.is_empty() {
            self.spill()?;
        }
        self.buf = Vec::new();
        let mut runs = std::mem::take(&mut self.runs);
        while runs.len() > FAN_IN {
            let rest = runs.split_off(FAN_IN);
            let mut merged = Merge::new(runs)?;
            let mut w = RunWriter::new()?;
            for ev in &mut merged {
                w.write(&ev?)?;
            }
            runs = rest;
            runs.push(w.finish()?);
        }
        Ok(Sorted::Merge(Merge::new(runs)?))
    }
}

/// Events in history order, from memory or merged from runs.
pub enum Sorted {
    Memory(std::vec::IntoIter<Event>),
    Merge(Merge),
}

impl Iterator for Sorted {
    type Item = io::Result<Event>;
    fn next(&mut self) -> Option<io::Result<Event>> {
        match self {
            Sorted::Memory(it) => it.next().map(Ok),
            Sorted::Merge(m) => m.next(),
        }
    }
}

/// A run file: records of a little-endian u32 length and the postcard-encoded event.
struct RunWriter {
    w: BufWriter<File>,
    scratch: Vec<u8>,
}

impl RunWriter {
    fn new() -> io::Result<RunWriter> {
        Ok(RunWriter {
            w: BufWriter::with_capacity(RUN_BUFFER, tempfile::tempfile()?),
            scratch: Vec::new(),
        })
    }
    fn write(&mut self, ev: &Event) -> io::Result<()> {
        self.scratch.clear();
        self.scratch = postcard::to_extend(ev, std::mem::take(&mut self.scratch))
            .map_err(|e| io::Error::other(format!("encoding a sort run: {e}")))?;
        self.w
            .write_all(&(self.scratch.len() as u32).to_le_bytes())?;
        self.w.write_all(&self.scratch)
    }
    fn finish(self) -> io::Result<File> {
        let mut f = self.w.into_inner().map_err(|e| e.into_error())?;
        f.seek(SeekFrom::Start(0))?;
        Ok(f)
    }
}

struct RunReader {
    r: BufReader<File>,
    scratch: Vec<u8>,
}

impl RunReader {
    fn next(&mut self) -> io::Result<Option<Event>> {
        let mut len = [0u8; 4];
        match self.r.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        self.scratch.resize(u32::from_le_bytes(len) as usize, 0);
        self.r.read_exact(&mut self.scratch)?;
        postcard::from_bytes(&self.scratch)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("sort run: {e}")))
    }
}

/// The head event of one run in the merge heap.
struct Head {
    event: Event,
    run: usize,
}
impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        history_cmp(&self.event, &other.event).then(self.run.cmp(&other.run))
    }
}

/// A k-way merge of sorted runs.
pub struct Merge {
    readers: Vec<RunReader>,
    heap: BinaryHeap<Reverse<Head>>,
}

impl Merge {
    fn new(runs: Vec<File>) -> io::Result<Merge> {
        let mut m = Merge {
            readers: runs
                .into_iter()
                .map(|f| RunReader {
                    r: BufReader::with_capacity(RUN_BUFFER, f),
                    scratch: Vec::new(),
                })
                .collect(),
            heap: BinaryHeap::new(),
        };
        for run in 0..m.readers.len() {
            if let Some(event) = m.readers[run].next()? {
                m.heap.push(Reverse(Head { event, run }));
            }
        }
        Ok(m)
    }
}

impl Iterator for Merge {
    type Item = io::Result<Event>;
    fn next(&mut self) -> Option<io::Result<Event>> {
        let Reverse(Head { event, run }) = self.heap.pop()?;
        match self.readers[run].next() {
            Ok(Some(next)) => self.heap.push(Reverse(Head { event: next, run })),
            Ok(None) => {}
            Err(e) => return Some(Err(e)),
        }
        Some(Ok(event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::Body;
    use crate::core::time::Ts;

    fn ev(t: i64, id: &str, ticket: &str, body: Body) -> Event {
        Event {
            event_id: id.into(),
            ticket_id: ticket.into(),
            occurred_at: Ts::from_secs(t),
            tenant: "acme".into(),
            body,
        }
    }

    fn events(n: usize) -> Vec<Event> {
        // A deterministic scramble of times, ids, tickets and kinds, with ties.
        (0..n)
            .map(|i| {
                let x = (i * 7919) % n;
                let body = if x.is_multiple_of(3) {
                    Body::CustomerMessage
                } else {
                    Body::Closed
                };
                ev(
                    (x / 5) as i64,
                    &format!("e{}", x % 11),
                    &format!("T-{}", x % 13),
                    body,
                )
            })
            .collect()
    }

    fn sorted(mut v: Vec<Event>) -> Vec<Event> {
        v.sort_by(history_cmp);
        v
    }

    fn through(budget: usize, input: &[Event]) -> (Vec<Event>, usize) {
        let mut s = HistorySorter::new(budget);
        for e in input {
            s.push(e.clone()).unwrap();
        }
        let runs = s.runs();
        let out = s.finish().unwrap().collect::<io::Result<Vec<_>>>().unwrap();
        (out, runs)
    }

    #[test]
    fn in_memory_sort_is_history_order() {
        let input = events(500);
        let (out, runs) = through(1 << 30, &input);
        assert_eq!(runs, 0);
        assert_eq!(out, sorted(input));
    }

    #[test]
    fn spilled_runs_merge_to_the_same_order() {
        let input = events(5000);
        // ~40 events per run: well over FAN_IN runs, so merges run in passes.
        let (out, runs) = through(40 * std::mem::size_of::<Event>(), &input);
        assert!(runs > FAN_IN, "only {runs} runs");
        assert_eq!(out, sorted(input));
    }

    #[test]
    fn rule4_ties_follow_causal_rank_then_event_id() {
        let a = ev(10, "z", "T-1", Body::CustomerMessage);
        let b = ev(10, "a", "T-1", Body::Closed);
        let c = ev(10, "b", "T-1", Body::Closed);
        let (out, _) = through(1 << 20, &[c.clone(), b.clone(), a.clone()]);
        assert_eq!(out, vec![a, b, c]);
    }
}
