//! A ticket's clock states and its dedup hashes in one heap block (issue 14, bytes per
//! open ticket): `[header | last event | prefix words | stored ClockCore × k | 48-bit hash
//! × seen | room]`, the prefix being the dense form's clock count, a closed ticket's closing
//! instant (`clocks/closed.rs`) and the hash of the first action the ticket fired
//! (`clocks/fired.rs`), each only when present. The last event's instant
//! ([`Clocks::last_event`]) is the ticket's, kept here rather than in the ticket (session
//! 14: `Ticket` 72 → 64 bytes; mimalloc's size class of every block the engine bench
//! allocates had the 8 bytes spare). A `Box<[ClockCore]>`
//! and a `Vec<u64>` were two allocations (two malloc headers and roundings) and 40 bytes of
//! the ticket; this is one allocation and an 8-byte pointer, the lengths in the header.
//!
//! Only clocks that are not idle are stored (issue 14, session 11: 1.6 of a ticket's ~5
//! clocks never start in the engine bench): a clock equal to [`IDLE`] (never started, or
//! back to the default state) is absent, and a bit per clock in the header says which are
//! stored (plans of up to [`SPARSE_MAX`] clocks; larger plans store every clock). Reads
//! go through `clocks[i]` / [`Clocks::iter`] (an absent clock reads as [`IDLE`]); a change
//! is made on a dense copy ([`Clocks::dense`]) written back with [`Clocks::store`].
//!
//! The room after the hashes is shared, counted in bytes: a hash takes [`HASH`] bytes of
//! it, a clock that starts 16 (the hashes move up), a closing instant 8. A new ticket gets room for its dedup hashes and for
//! the clocks its plan may start in an ordinary life ([`Clocks::open`]); a clock that
//! starts without room (one started by a rare event: an escalation, a department handoff)
//! reallocates the block, as a first pause allocates its intervals.
use crate::core::clock::{ClockCore, ClockStatus};
use crate::core::time::Ts;
use smallvec::SmallVec;
use std::alloc::{alloc, dealloc, handle_alloc_error, realloc, Layout};
use std::ptr::NonNull;

/// The state of a clock that never started: what an absent clock reads as (equal to
/// `ClockCore::default()`, `idle_is_the_default` checks).
pub const IDLE: ClockCore = ClockCore {
    status: ClockStatus::Idle,
    once_used: false,
    breached: false,
    warned: 0,
    escalated: 0,
    paused: false,
    nth: 0,
    start: Ts(0),
};

/// Plans of up to this many clocks store only the clocks that are not idle.
pub const SPARSE_MAX: usize = 15;

/// A ticket's clock states as a dense, changeable copy (every default plan fits inline).
pub type Dense = SmallVec<[ClockCore; 16]>;

/// The block's first 8 bytes (aligned as the clock states and hashes after it: the shared
/// [`EMPTY`] block's zero-length slices must be aligned too). The ticket's last event
/// follows it.
#[repr(C, align(8))]
struct Header {
    /// Sparse form (at most [`SPARSE_MAX`] clocks): bit `i` set when clock `i` is stored,
    /// and a marker bit at the plan's clock count (so the count needs no field of its
    /// own). 0: dense form, every clock stored, the count in the word after the header.
    bits: u16,
    /// Room after the hashes, in bytes: for hashes ([`HASH`] bytes each), clocks that
    /// start and a closing instant.
    room: u16,
    /// Low 22 bits: hashes after the clock states ([`Header::seen`]). Bit 22: [`FIRED`],
    /// bit 23: [`CLOSED`].
    /// High 8 bits: the clock states stored, in the sparse form ([`Header::stored`]):
    /// kept, not counted from `bits` (the default x86-64 target has no `popcnt`: a
    /// software popcount was ~15 instructions each time the hashes or the stored states
    /// were found).
    counts: u32,
}

/// The hashes' share of [`Header::counts`] (a ticket of more than 4 M event hashes is
/// refused: `contains` over them per event would be the problem long before).
const SEEN_MASK: u32 = (1 << 22) - 1;
/// In [`Header::counts`]: the block holds a fired action's hash (`clocks/fired.rs`).
const FIRED: u32 = 1 << 22;
/// In [`Header::counts`]: the block holds a closing instant (`clocks/closed.rs`).
const CLOSED: u32 = 1 << 23;
/// One stored state in [`Header::counts`].
const ONE_STORED: u32 = 1 << 24;

impl Header {
    #[inline]
    fn seen(&self) -> usize {
        (self.counts & SEEN_MASK) as usize
    }
    /// Stored states of the sparse form.
    #[inline]
    fn stored(&self) -> usize {
        (self.counts >> 24) as usize
    }
}

/// Bytes of a stored dedup hash: its low 48 bits (session 15; 64 before). Two event ids
/// of one ticket collide with a chance of about n²/2⁴⁹ for n events: 1.6·10⁻¹³ for a
/// ticket of 10 events, 2·10⁻⁹ for one of 1 000 (docs/semantics.md, Duplicates). The
/// hashes are the largest part of an open ticket (9 of them were 72 of ~290 bytes).
pub const HASH: usize = 6;
/// The bits of a hash that are stored and compared.
pub const HASH_MASK: u64 = (1 << (8 * HASH)) - 1;

/// The header and the last event's word: where the prefix words (or the states) start.
const HEADER: usize = std::mem::size_of::<Header>() + 8;
const CORE: usize = std::mem::size_of::<ClockCore>();
const _: () = assert!(HEADER == 16 && std::mem::align_of::<ClockCore>() <= 8);
// The hashes start right after the clock states: their size keeps them 8-byte aligned.
const _: () = assert!(CORE == 16);

/// A header and a last event (`Ts(0)`, as in every new block): [`EMPTY`].
#[repr(C, align(8))]
struct Empty {
    header: Header,
    last_event: i64,
}

/// The block of a ticket with no clocks and no hashes (never written, never freed): its
/// last event is `Ts(0)`, that of every new block, so a block replacing it keeps it.
static EMPTY: Empty = Empty {
    header: Header {
        bits: 1,
        room: 0,
        counts: 0,
    },
    last_event: 0,
};

pub struct Clocks {
    ptr: NonNull<Header>,
}

// SAFETY: `Clocks` owns its block like a `Box` (the shared `EMPTY` is never written).
unsafe impl Send for Clocks {}
unsafe impl Sync for Clocks {}

/// The block's size: header and last event, `prefix` words before the states (the dense
/// form's count, a closing instant), `stored` clock states, `seen` hashes and `room` bytes.
fn layout(prefix: usize, stored: usize, seen: usize, room: usize) -> Layout {
    let size = HEADER + 8 * prefix + stored * CORE + seen * HASH + room;
    Layout::from_size_align(size, 8).expect("clock block layout")
}

/// `*c == IDLE`, as two word tests: an idle state is 16 zero bytes (status `Idle` is 0,
/// `false`, 0, `Ts(0)`), and `ClockCore` has no padding (its fields fill its 16 bytes),
/// so every byte is a field's and all zero means every field is its idle value.
#[inline]
fn is_idle(c: &ClockCore) -> bool {
    // SAFETY: 16 initialised bytes (no padding, see above) read as two integers.
    let w: [u64; 2] = unsafe { std::mem::transmute(*c) };
    w[0] | w[1] == 0
}
const _: () = assert!(
    CORE == std::mem::size_of::<crate::core::clock::ClockStatus>()
        + 5 * std::mem::size_of::<u8>()
        + std::mem::size_of::<u16>()
        + std::mem::size_of::<Ts>()
        && std::mem::size_of::<crate::core::clock::ClockStatus>() == 1
        && ClockStatus::Idle as u8 == 0
);

/// A new block of layout `l`, its last event `Ts(0)` (its header uninitialised).
fn alloc_block(l: Layout) -> NonNull<Header> {
    // SAFETY: every layout here has a non-zero size (the header and the last event).
    let p = unsafe { alloc(l) };
    match NonNull::new(p.cast::<Header>()) {
        Some(ptr) => {
            // SAFETY: the block's second word (every layout holds it).
            unsafe { ptr.as_ptr().cast::<i64>().add(1).write(0) };
            ptr
        }
        None => handle_alloc_error(l),
    }
}

/// `block`, allocated with `from`, resized to `to` (the prefix kept, as `realloc` does).
///
/// # Safety
/// `block` must have been allocated with layout `from`.
unsafe fn realloc_block(block: NonNull<Header>, from: Layout, to: Layout) -> NonNull<Header> {
    // SAFETY: the caller's promise; `to` has `from`'s alignment and a non-zero size.
    let p = unsafe { realloc(block.as_ptr().cast(), from, to.size()) };
    match NonNull::new(p.cast::<Header>()) {
        Some(ptr) => ptr,
        None => handle_alloc_error(to),
    }
}

/// Room for every idle clock of `clocks` to start (as many bytes as when every clock was
/// stored); none for a plan too large for the sparse form, which stores them all.
fn start_room(clocks: &[ClockCore]) -> usize {
    if clocks.len() > SPARSE_MAX {
        return 0;
    }
    CORE * clocks.iter().filter(|c| is_idle(c)).count()
}

/// Where clock `i` sits among the stored states of a sparse block: the stored clocks
/// before it.
#[inline]
fn rank(bits: u16, i: usize) -> usize {
    (bits & ((1u16 << i) - 1)).count_ones() as usize
}

impl Default for Clocks {
    fn default() -> Clocks {
        Clocks {
            ptr: NonNull::from(&EMPTY.header),
        }
    }
}

impl Clocks {
    /// A block holding `clocks` and `seen`, with room for `capacity` hashes in all and for
    /// every idle clock to start (as many bytes as when every clock was stored).
    pub fn new(clocks: &[ClockCore], seen: &[u64], capacity: usize) -> Clocks {
        Clocks::with_words(clocks, seen, capacity, 0)
    }

    /// [`Clocks::new`] with room for `words` prefix words more.
    fn with_words(clocks: &[ClockCore], seen: &[u64], capacity: usize, words: usize) -> Clocks {
        let room = (capacity.max(seen.len()) - seen.len()) * HASH + start_room(clocks) + 8 * words;
        Clocks::build(clocks, seen.len(), [None, None], room, |c| {
            for (k, &h) in seen.iter().enumerate() {
                // SAFETY: the block holds `seen.len()` hashes.
                unsafe { c.write_hash(k, h) };
            }
        })
    }

    /// A restored ticket's block, its `seen` hashes to be written next
    /// ([`Clocks::fill_seen`]): `clocks`, the closing instant and first fired action's
    /// hash written in place as prefix words, room for `capacity` hashes in all (one of
    /// them given to a closing instant's word) and for every idle clock to start. Built
    /// as a new ticket's block and then given the words by `set_closed_at` and
    /// `set_fired`, every word moved the states after it, and the fired hash's
    /// reallocated the block (`set_fired` keeps the room; 16 % of the engine bench's
    /// tickets; issue 14, restore per ticket).
    pub fn restored(
        clocks: &[ClockCore],
        seen: usize,
        capacity: usize,
        closed_at: Option<Ts>,
        fired: Option<u64>,
    ) -> Clocks {
        let room = (capacity * HASH + start_room(clocks))
            .saturating_sub(8 * closed_at.is_some() as usize)
            .max(seen * HASH);
        Clocks::build(
            clocks,
            0,
            [closed_at.map(|t| t.0), fired.map(|h| h as i64)],
            room,
            |_| {},
        )
    }

    /// A new ticket's block: `n` idle clocks, room for `capacity` hashes and for `starts`
    /// clocks to start (the clocks its plan may start in an ordinary life,
    /// `Plan::routine_starts`).
    pub fn open(n: usize, starts: usize, capacity: usize) -> Clocks {
        if n > SPARSE_MAX {
            let v: Dense = std::iter::repeat_n(IDLE, n).collect();
            return Clocks::build(&v, 0, [None, None], capacity * HASH, |_| {});
        }
        let room = capacity * HASH + CORE * starts.min(n);
        if n == 0 && room == 0 {
            return Clocks::default();
        }
        assert!(room <= u16::MAX as usize, "clock block too large");
        let ptr = alloc_block(layout(0, 0, 0, room));
        // SAFETY: a new block of at least a header, which is all this writes.
        unsafe {
            ptr.as_ptr().write(Header {
                bits: 1 << n,
                room: room as u16,
                counts: 0,
            })
        };
        Clocks { ptr }
    }

    /// A block holding `clocks` (the idle ones only if the plan is too large for the
    /// sparse form), the prefix `words` present (closing instant, fired hash) and `seen`
    /// hashes, which `fill` writes, with `room` bytes after them.
    fn build(
        clocks: &[ClockCore],
        seen: usize,
        words: [Option<i64>; 2],
        room: usize,
        fill: impl FnOnce(&Clocks),
    ) -> Clocks {
        let n = clocks.len();
        let [closed, fired] = words;
        if n == 0 && seen == 0 && room == 0 && closed.is_none() && fired.is_none() {
            return Clocks::default();
        }
        assert!(
            n <= u16::MAX as usize && room <= u16::MAX as usize && seen <= SEEN_MASK as usize,
            "clock block too large"
        );
        let dense = n > SPARSE_MAX;
        let mut stored: Dense = SmallVec::new();
        let bits = if dense {
            stored.extend_from_slice(clocks);
            0
        } else {
            let mut bits = 1u16 << n;
            for (i, c) in clocks.iter().enumerate() {
                if !is_idle(c) {
                    bits |= 1 << i;
                    stored.push(*c);
                }
            }
            bits
        };
        let prefix = dense as usize + closed.is_some() as usize + fired.is_some() as usize;
        let ptr = alloc_block(layout(prefix, stored.len(), seen, room));
        // SAFETY: a new block of this layout; the writes stay inside it (the prefix words
        // in the order `prefix()` counts them: the dense count, closing instant, fired hash).
        unsafe {
            let p = ptr.as_ptr().cast::<u8>();
            let k = if dense { 0 } else { stored.len() as u32 };
            let flags =
                if closed.is_some() { CLOSED } else { 0 } | if fired.is_some() { FIRED } else { 0 };
            ptr.as_ptr().write(Header {
                bits,
                room: room as u16,
                counts: seen as u32 | (k * ONE_STORED) | flags,
            });
            let mut word = p.add(HEADER).cast::<i64>();
            if dense {
                word.write(n as i64);
                word = word.add(1);
            }
            for w in words.into_iter().flatten() {
                word.write(w);
                word = word.add(1);
            }
            let c = Clocks { ptr };
            std::ptr::copy_nonoverlapping(stored.as_ptr(), c.clocks_ptr(), stored.len());
            fill(&c);
            c
        }
    }

    #[inline]
    fn header(&self) -> &Header {
        // SAFETY: `ptr` is `EMPTY` or a block this owns, starting with its header.
        unsafe { self.ptr.as_ref() }
    }

    #[inline]
    fn is_shared_empty(&self) -> bool {
        std::ptr::eq(self.ptr.as_ptr(), &EMPTY.header)
    }

    /// The ticket's last event instant (`Ticket::last_event`; `Ts(0)` in a new block).
    #[inline]
    pub fn last_event(&self) -> Ts {
        // SAFETY: every block (`EMPTY` too) holds the word after its header.
        Ts(unsafe { self.ptr.as_ptr().cast::<i64>().add(1).read() })
    }

    /// Sets the last event's instant (a block of its own for a ticket that has none, unless
    /// the instant is `EMPTY`'s).
    #[inline]
    pub fn set_last_event(&mut self, t: Ts) {
        if self.is_shared_empty() {
            if t == Ts(0) {
                return;
            }
            let ptr = alloc_block(layout(0, 0, 0, 0));
            // SAFETY: a new block of a header and a last event, which is all this writes.
            unsafe {
                ptr.as_ptr().write(Header {
                    bits: 1,
                    room: 0,
                    counts: 0,
                })
            };
            self.ptr = ptr;
        }
        // SAFETY: a block this owns (not `EMPTY`, handled above); its second word.
        unsafe { self.ptr.as_ptr().cast::<i64>().add(1).write(t.0) }
    }

    #[inline]
    fn is_dense(&self) -> bool {
        self.header().bits == 0
    }

    /// Words between the header and the clock states: the dense form's count, a closing
    /// instant, a fired action's hash.
    #[inline]
    fn prefix(&self) -> usize {
        let c = self.header().counts;
        self.is_dense() as usize + (c & CLOSED != 0) as usize + (c & FIRED != 0) as usize
    }

    /// Clocks of the ticket's plan (stored or not).
    #[inline]
    pub fn len(&self) -> usize {
        let bits = self.header().bits;
        if bits == 0 {
            // SAFETY: the dense form keeps the count in the word after the header.
            unsafe {
                self.ptr
                    .as_ptr()
                    .cast::<u8>()
                    .add(HEADER)
                    .cast::<u64>()
                    .read() as usize
            }
        } else {
            15 - bits.leading_zeros() as usize
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Clock states held in the block.
    #[inline]
    fn stored_len(&self) -> usize {
        let h = self.header();
        if h.bits == 0 {
            self.len()
        } else {
            h.stored()
        }
    }

    #[inline]
    fn clocks_ptr(&self) -> *mut ClockCore {
        let off = HEADER + 8 * self.prefix();
        // SAFETY: within the block (or one past `EMPTY`'s header, for zero clocks).
        unsafe { self.ptr.as_ptr().cast::<u8>().add(off).cast() }
    }

    /// Where the hashes start: right after the clock states.
    #[inline]
    fn seen_ptr(&self) -> *mut u8 {
        // SAFETY: within the block, after the clock states.
        unsafe { self.clocks_ptr().add(self.stored_len()).cast() }
    }

    /// The block's layout, from its header (what it was allocated or last resized with).
    #[inline]
    fn block_layout(&self) -> Layout {
        let h = self.header();
        layout(self.prefix(), self.stored_len(), h.seen(), h.room as usize)
    }

    #[inline]
    fn stored_slice(&self) -> &[ClockCore] {
        // SAFETY: `stored` initialised states follow the header.
        unsafe { std::slice::from_raw_parts(self.clocks_ptr(), self.stored_len()) }
    }

    /// A changeable copy of every clock's state; [`Clocks::store`] writes it back.
    #[inline]
    pub fn dense(&self) -> Dense {
        let mut d = Dense::new();
        let n = self.len();
        if self.is_dense() || n > d.inline_size() {
            d.extend(self.iter().copied());
            return d;
        }
        // SAFETY: `n` fits the inline buffer; `copy_to` writes all `n` states.
        unsafe {
            self.copy_to(std::slice::from_raw_parts_mut(d.as_mut_ptr(), n));
            d.set_len(n);
        }
        d
    }

    /// Writes every clock's state into `out` (as long as [`Clocks::len`]).
    #[inline]
    pub fn copy_to(&self, out: &mut [ClockCore]) {
        let bits = self.header().bits;
        if bits == 0 {
            out.copy_from_slice(self.stored_slice());
            return;
        }
        let n = self.len();
        let out = &mut out[..n];
        let src = self.clocks_ptr();
        let mut k = 0;
        for (i, o) in out.iter_mut().enumerate() {
            *o = if bits & (1 << i) != 0 {
                // SAFETY: bit `i` set: the `k`-th of the stored states (fewer bits than n).
                let c = unsafe { *src.add(k) };
                k += 1;
                c
            } else {
                IDLE
            };
        }
    }

    /// Sets clock `i` to `c`: in place when it stays stored (or stays idle), else through
    /// [`Clocks::store`] (it joins or leaves the block).
    #[inline]
    pub fn set(&mut self, i: usize, c: ClockCore) {
        let n = self.len();
        assert!(i < n, "clock {i} of {n}");
        let bits = self.header().bits;
        let stored = bits == 0 || bits & (1 << i) != 0;
        if stored && (bits == 0 || !is_idle(&c)) {
            let k = if bits == 0 { i } else { rank(bits, i) };
            // SAFETY: clock `i` is the `k`-th stored state of a block this owns.
            unsafe { self.clocks_ptr().add(k).write(c) };
            return;
        }
        if !stored && is_idle(&c) {
            return;
        }
        if !stored && self.header().room as usize >= CORE {
            // Joins the block in its room (a clock starting): the hashes and the states
            // after its place move up by one state.
            let (p, seen) = (self.stored_len(), self.header().seen());
            let k = rank(bits, i);
            // SAFETY: a block this owns (it has room, so it is not `EMPTY`) with a state's
            // room after the hashes: the moves stay inside it (`copy` allows overlap).
            unsafe {
                let base = self.clocks_ptr();
                std::ptr::copy(
                    base.add(p).cast::<u8>(),
                    base.add(p + 1).cast::<u8>(),
                    seen * HASH,
                );
                std::ptr::copy(base.add(k), base.add(k + 1), p - k);
                base.add(k).write(c);
                let h = self.ptr.as_mut();
                h.bits |= 1 << i;
                h.room -= CORE as u16;
                h.counts += ONE_STORED;
            }
            return;
        }
        let mut d = self.dense();
        d[i] = c;
        self.store(&d);
    }

    /// Calls `f` with (clock index, its state) for every stored state, in order: the
    /// clocks that are not idle (every clock in the dense form), changed in place. `f`
    /// must leave them not idle (it changes running clocks); one left idle is stored
    /// until the next [`Clocks::store`] (it still reads as idle).
    #[inline]
    pub fn for_each_stored(&mut self, mut f: impl FnMut(usize, &mut ClockCore)) {
        let bits = self.header().bits;
        let n = self.len();
        let k = self.stored_len();
        if k == 0 {
            return;
        }
        // SAFETY: the `k` stored states of a block this owns (`EMPTY` stores none).
        let states = unsafe { std::slice::from_raw_parts_mut(self.clocks_ptr(), k) };
        // One loop, so that `f` has one call site and is inlined (issue 14: with a loop per
        // form it was an out-of-line call per stored clock). The dense form (`bits` 0)
        // numbers the states in order; the sparse form by its bits, lowest first.
        let dense = bits == 0;
        let mut m = if dense { 0 } else { bits ^ (1 << n) };
        for (j, c) in states.iter_mut().enumerate() {
            let i = if dense {
                j
            } else {
                m.trailing_zeros() as usize
            };
            m &= m.wrapping_sub(1);
            f(i, c);
        }
    }

    /// Writes the clock states back (a dense copy from [`Clocks::dense`], changed): the
    /// clocks that left or reached the idle state leave or join the block, taking their
    /// room from the room after the hashes (reallocating only when it has too little). A
    /// copy of another length (a re-match) rebuilds the block as [`Clocks::set_clocks`].
    pub fn store(&mut self, d: &[ClockCore]) {
        let n = self.len();
        if d.len() != n {
            return self.set_clocks(d);
        }
        if n == 0 {
            return;
        }
        let bits = self.header().bits;
        if bits == 0 {
            // SAFETY: the dense form stores all `n` clocks.
            unsafe { std::ptr::copy_nonoverlapping(d.as_ptr(), self.clocks_ptr(), n) };
            return;
        }
        let marker = 1u16 << n;
        let mut mask = 0u16;
        for (i, c) in d.iter().enumerate() {
            if !is_idle(c) {
                mask |= 1 << i;
            }
        }
        let old = bits ^ marker;
        if mask != old {
            self.relayout(old.count_ones() as usize, mask.count_ones() as usize);
            // SAFETY: a block this owns (`relayout` made it one if it was `EMPTY`).
            let h = unsafe { self.ptr.as_mut() };
            h.bits = mask | marker;
            h.counts = (h.counts & (ONE_STORED - 1)) | (mask.count_ones() * ONE_STORED);
        }
        let dst = self.clocks_ptr();
        let mut m = mask;
        let mut k = 0;
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            // SAFETY: `k` < the `mask.count_ones()` states the block now stores.
            unsafe { dst.add(k).write(d[i]) };
            k += 1;
            m &= m - 1;
        }
    }

    /// Makes the block store `new` clock states instead of `old` (sparse form): the hashes
    /// move, the room pays (or takes back) a state's bytes per clock; the states themselves
    /// are the caller's to write. Reallocates when the room is short.
    fn relayout(&mut self, old: usize, new: usize) {
        let (seen, room) = {
            let h = self.header();
            (h.seen(), h.room as usize)
        };
        let bytes = seen * HASH;
        if new > old && room < CORE * (new - old) {
            // Grow by what is missing: the block then has no room left.
            let from = layout(self.prefix(), old, seen, room);
            let to = layout(self.prefix(), new, seen, 0);
            if self.is_shared_empty() {
                // A plan without clocks has no bits to set; nothing reaches here.
                unreachable!("clocks started in the shared empty block");
            }
            // SAFETY: allocated with `from`; `realloc` keeps the prefix (header, clocks,
            // hashes), which then moves up inside the larger block.
            unsafe {
                let ptr = realloc_block(self.ptr, from, to);
                self.ptr = ptr;
                let c = self.clocks_ptr();
                std::ptr::copy(c.add(old).cast::<u8>(), c.add(new).cast::<u8>(), bytes);
                (*ptr.as_ptr()).room = 0;
            }
            return;
        }
        let room = room + CORE * old - CORE * new;
        // SAFETY: `new` states and `seen` hashes fit the block (the room paid for them);
        // `copy` allows the overlap.
        unsafe {
            let c = self.clocks_ptr();
            std::ptr::copy(c.add(old).cast::<u8>(), c.add(new).cast::<u8>(), bytes);
        }
        if room > u16::MAX as usize {
            // Clocks back to idle freed more room than the header counts: give it back.
            let keep = u16::MAX as usize;
            let from = layout(self.prefix(), new, seen, room);
            let to = layout(self.prefix(), new, seen, keep);
            // SAFETY: allocated with `from`; the prefix kept is header, states, hashes.
            self.ptr = unsafe { realloc_block(self.ptr, from, to) };
        }
        // SAFETY: a block this owns.
        unsafe { self.ptr.as_mut().room = room.min(u16::MAX as usize) as u16 };
    }

    /// Replaces the clock states with `clocks` (another count: a re-match or a restore
    /// under a plan with other clocks), keeping the hashes and their capacity.
    pub fn set_clocks(&mut self, clocks: &[ClockCore]) {
        let (seen, cap) = (self.header().seen(), self.seen_capacity());
        let room = (cap - seen) * HASH + start_room(clocks);
        let mut new = Clocks::build(clocks, seen, [None, None], room, |c| {
            // SAFETY: `seen` hashes in each block, in the same form.
            unsafe { std::ptr::copy_nonoverlapping(self.seen_ptr(), c.seen_ptr(), seen * HASH) }
        });
        new.set_closed_at(self.closed_at());
        new.set_fired(self.fired());
        new.set_last_event(self.last_event());
        *self = new;
    }

    /// `n` clock states: the first ones kept, idle ones added.
    pub fn resize(&mut self, n: usize) {
        let mut v = self.dense();
        v.resize(n, IDLE);
        self.set_clocks(&v);
    }
}

impl Drop for Clocks {
    fn drop(&mut self) {
        if self.is_shared_empty() {
            return;
        }
        let l = self.block_layout();
        // SAFETY: allocated with this layout (the size is kept through every change).
        unsafe { dealloc(self.ptr.as_ptr().cast(), l) }
    }
}

impl Clone for Clocks {
    /// The same states and hashes, with the same room.
    fn clone(&self) -> Clocks {
        if self.is_shared_empty() {
            return Clocks::default();
        }
        let l = self.block_layout();
        // The initialised prefix: header, last event, count word, states, hashes.
        let used = l.size() - self.header().room as usize;
        let ptr = alloc_block(l);
        // SAFETY: a new block of the same layout; the prefix copied is initialised.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().cast::<u8>(),
                ptr.as_ptr().cast::<u8>(),
                used,
            )
        };
        Clocks { ptr }
    }
}

/// Equal clock states, hashes and instants (capacity aside, as `Vec`'s equality).
impl PartialEq for Clocks {
    fn eq(&self, other: &Clocks) -> bool {
        self.len() == other.len()
            && self.iter().zip(other.iter()).all(|(a, b)| a == b)
            && self.seen().eq(other.seen())
            && self.closed_at() == other.closed_at()
            && self.fired() == other.fired()
            && self.last_event() == other.last_event()
    }
}

impl std::fmt::Debug for Clocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clocks")
            .field("clocks", &self.dense().as_slice())
            .field("seen", &self.seen().collect::<Vec<_>>())
            .field("closed_at", &self.closed_at())
            .field("fired", &self.fired())
            .field("last_event", &self.last_event())
            .finish()
    }
}

mod closed;
mod fired;
mod read;
mod seen;
pub use seen::Seen;
#[cfg(test)]
mod tests;
