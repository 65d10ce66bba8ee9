//! The dedup hashes of a ticket's clock block (`core::clocks`): after the stored clock
//! states, [`HASH`] bytes each (a hash's low 48 bits, little-endian), with the room the
//! block shares between hashes and clocks that start.
use super::{layout, realloc_block, Clocks, HASH, SEEN_MASK};

impl Clocks {
    /// The dedup hashes (rule 9), in the order recorded: their low 48 bits.
    pub fn seen(&self) -> Seen<'_> {
        let n = self.header().seen();
        // SAFETY: `n` initialised hashes of `HASH` bytes follow the clock states.
        Seen(unsafe { std::slice::from_raw_parts(self.seen_ptr(), n * HASH) })
    }

    /// Hashes the block holds room for (recorded ones included; a clock that starts takes
    /// the room of more than two).
    pub fn seen_capacity(&self) -> usize {
        let h = self.header();
        h.seen() + h.room as usize / HASH
    }

    /// The block's size in bytes (0 for a ticket holding nothing), for the bench's
    /// breakdown.
    pub fn heap_bytes(&self) -> usize {
        if self.is_shared_empty() {
            return 0;
        }
        self.block_layout().size()
    }

    /// Room for `additional` more hashes (exactly, as `Vec::reserve_exact`).
    pub fn reserve_seen_exact(&mut self, additional: usize) {
        assert!(
            self.header().seen() + additional <= SEEN_MASK as usize,
            "clock block too large"
        );
        self.reserve_room(additional * HASH);
    }

    /// At least `bytes` of room: exactly that many when the block has less.
    pub(super) fn reserve_room(&mut self, bytes: usize) {
        let (seen, room) = (self.header().seen(), self.header().room as usize);
        if room >= bytes {
            return;
        }
        assert!(bytes <= u16::MAX as usize, "clock block too large");
        if self.is_shared_empty() {
            *self = Clocks::build(&[], 0, [None, None], bytes, |_| {});
            return;
        }
        let (prefix, stored) = (self.prefix(), self.stored_len());
        let old = layout(prefix, stored, seen, room);
        let new = layout(prefix, stored, seen, bytes);
        // SAFETY: the block was allocated with `old`; `realloc` keeps its prefix (header,
        // clocks, hashes).
        unsafe {
            self.ptr = realloc_block(self.ptr, old, new);
            self.ptr.as_mut().room = bytes as u16;
        }
    }

    /// Writes hash `k`'s bytes (`h`'s low 48 bits).
    ///
    /// # Safety
    /// Hash `k`'s bytes must be inside the block.
    #[inline]
    pub(super) unsafe fn write_hash(&self, k: usize, h: u64) {
        let bytes = h.to_le_bytes();
        // SAFETY: the caller's promise.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.seen_ptr().add(k * HASH), HASH)
        }
    }

    /// Records a hash (its low 48 bits); the caller made room
    /// ([`Clocks::reserve_seen_exact`]).
    pub fn push_seen(&mut self, h: u64) {
        assert!(
            self.header().room as usize >= HASH,
            "no room for a dedup hash"
        );
        // SAFETY: not `EMPTY` (it has no room); the hash's bytes are in the room.
        unsafe {
            let len = self.header().seen();
            self.write_hash(len, h);
            let hd = self.ptr.as_mut();
            // Below `SEEN_MASK`: the room was made by `reserve_seen_exact` or `build`.
            hd.counts += 1;
            hd.room -= HASH as u16;
        }
    }

    /// Records up to `n` hashes from `next` into room the block has (a restore decoding a
    /// record's hashes straight into it), stopping at the first `None`; `None` then.
    /// The length is written once, not per hash as [`Clocks::push_seen`] does.
    pub fn fill_seen(&mut self, n: usize, mut next: impl FnMut() -> Option<u64>) -> Option<()> {
        assert!(
            self.header().room as usize >= n * HASH,
            "no room for the dedup hashes"
        );
        if n == 0 {
            return Some(());
        }
        let len = self.header().seen();
        assert!(len + n <= SEEN_MASK as usize, "clock block too large");
        // Where the hashes go, found once: `next` borrows something else mutably, so the
        // compiler re-read the header behind `write_hash`'s pointer at every hash.
        // SAFETY: hash `len` is in the block (its room holds `n > 0` more).
        let mut at = unsafe { self.seen_ptr().add(len * HASH) };
        let mut done = 0;
        let mut ok = true;
        while done < n {
            let Some(h) = next() else {
                ok = false;
                break;
            };
            // SAFETY: hash `len + done < len + n`, inside the room (not `EMPTY`: it has no
            // room and `n > 0`).
            unsafe {
                std::ptr::copy_nonoverlapping(h.to_le_bytes().as_ptr(), at, HASH);
                at = at.add(HASH);
            }
            done += 1;
        }
        // SAFETY: a block this owns (see above).
        let hd = unsafe { self.ptr.as_mut() };
        hd.counts += done as u32;
        hd.room -= (done * HASH) as u16;
        ok.then_some(())
    }
}

/// A ticket's dedup hashes as stored ([`Clocks::seen`]): iterates their values (the low 48
/// bits of each hash recorded).
#[derive(Clone)]
pub struct Seen<'a>(&'a [u8]);

impl Seen<'_> {
    /// Whether a hash with `h`'s low 48 bits was recorded.
    #[inline]
    pub fn contains(&self, h: u64) -> bool {
        let (lo, hi) = (h as u32, (h >> 32) as u16);
        self.0.chunks_exact(HASH).any(|c| {
            u32::from_le_bytes([c[0], c[1], c[2], c[3]]) == lo
                && u16::from_le_bytes([c[4], c[5]]) == hi
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Iterator for Seen<'_> {
    type Item = u64;
    #[inline]
    fn next(&mut self) -> Option<u64> {
        let (c, rest) = self.0.split_first_chunk::<HASH>()?;
        self.0 = rest;
        let mut w = [0u8; 8];
        w[..HASH].copy_from_slice(c);
        Some(u64::from_le_bytes(w))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.0.len() / HASH;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Seen<'_> {}

impl std::fmt::Debug for Seen<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}
