//! The dedup hashes of a ticket's clock block (`core::clocks`): after the stored clock
//! states, with the room the block shares between hashes and clocks that start.
use super::{layout, realloc_block, Clocks, SEEN_MASK};

impl Clocks {
    /// The dedup hashes (rule 9), in the order recorded.
    pub fn seen(&self) -> &[u64] {
        // SAFETY: `seen` initialised hashes follow the clock states.
        unsafe { std::slice::from_raw_parts(self.seen_ptr(), self.header().seen()) }
    }

    /// Hashes the block holds room for (recorded ones included; a clock that starts takes
    /// the room of two).
    pub fn seen_capacity(&self) -> usize {
        let h = self.header();
        h.seen() + h.room as usize
    }

    /// The block's size in bytes (0 for a ticket holding nothing), for the bench's
    /// breakdown.
    pub fn heap_bytes(&self) -> usize {
        if self.is_shared_empty() {
            return 0;
        }
        layout(self.prefix(), self.stored_len(), self.seen_capacity()).size()
    }

    /// Room for `additional` more hashes (exactly, as `Vec::reserve_exact`).
    pub fn reserve_seen_exact(&mut self, additional: usize) {
        let (len, cap) = (self.header().seen(), self.seen_capacity());
        if cap - len >= additional {
            return;
        }
        let new_cap = len + additional;
        assert!(
            additional <= u16::MAX as usize && new_cap <= SEEN_MASK as usize,
            "clock block too large"
        );
        if self.is_shared_empty() {
            *self = Clocks::build(&[], &[], new_cap);
            return;
        }
        let (prefix, stored) = (self.prefix(), self.stored_len());
        let old = layout(prefix, stored, cap);
        let new = layout(prefix, stored, new_cap);
        // SAFETY: the block was allocated with `old`; `realloc` keeps its prefix (header,
        // clocks, hashes).
        unsafe {
            self.ptr = realloc_block(self.ptr, old, new);
            self.ptr.as_mut().room = additional as u16;
        }
    }

    /// Records a hash; the caller made room ([`Clocks::reserve_seen_exact`]).
    pub fn push_seen(&mut self, h: u64) {
        assert!(self.header().room > 0, "no room for a dedup hash");
        // SAFETY: not `EMPTY` (it has no room); the slot is inside the block.
        unsafe {
            let len = self.header().seen();
            self.seen_ptr().add(len).write(h);
            let hd = self.ptr.as_mut();
            // Below `SEEN_MASK`: the room was made by `reserve_seen_exact` or `build`.
            hd.counts += 1;
            hd.room -= 1;
        }
    }

    /// Records up to `n` hashes from `next` into room the block has (a restore decoding a
    /// record's hashes straight into it), stopping at the first `None`; `None` then.
    /// The length is written once, not per hash as [`Clocks::push_seen`] does.
    pub fn fill_seen(&mut self, n: usize, mut next: impl FnMut() -> Option<u64>) -> Option<()> {
        assert!(
            self.header().room as usize >= n,
            "no room for the dedup hashes"
        );
        if n == 0 {
            return Some(());
        }
        let len = self.header().seen();
        let dst = self.seen_ptr();
        let mut done = 0;
        let mut ok = true;
        while done < n {
            let Some(h) = next() else {
                ok = false;
                break;
            };
            // SAFETY: `len + done < len + room`, inside the block (not `EMPTY`: it has no
            // room and `n > 0`).
            unsafe { dst.add(len + done).write(h) };
            done += 1;
        }
        // SAFETY: a block this owns (see above).
        let hd = unsafe { self.ptr.as_mut() };
        hd.counts += done as u32;
        hd.room -= done as u16;
        ok.then_some(())
    }
}
