//! A ticket's clock states and its dedup hashes in one heap block (issue 14, bytes per
//! open ticket): `[header | ClockCore × n | u64 × capacity]`. A `Box<[ClockCore]>` and a
//! `Vec<u64>` were two allocations (two malloc headers and roundings) and 40 bytes of the
//! ticket; this is one allocation and an 8-byte pointer, the lengths in the block's header.
//!
//! It dereferences to the clock states (`t.clocks[i]`, `t.clocks.iter()` as before); the
//! hashes are [`Clocks::seen`] and grow at the block's end ([`Clocks::reserve_seen_exact`],
//! [`Clocks::push_seen`]), so a growth reallocates the block as the `Vec` did.
use crate::core::clock::ClockCore;
use std::alloc::{alloc, dealloc, handle_alloc_error, realloc, Layout};
use std::ptr::NonNull;

/// The block's first 8 bytes (aligned as the clock states and hashes after it: the shared
/// [`EMPTY`] block's zero-length slices must be aligned too).
#[repr(C, align(8))]
struct Header {
    /// Clock states after the header.
    clocks: u16,
    /// Room for more hashes after the `seen` ones (capacity − length: at most a growth
    /// step or a restored ticket's room for its next event).
    room: u16,
    /// Hashes after the clock states.
    seen: u32,
}

const HEADER: usize = std::mem::size_of::<Header>();
const _: () = assert!(HEADER == 8 && std::mem::align_of::<ClockCore>() <= 8);
// The hashes start right after the clock states: their size keeps them 8-byte aligned.
const _: () = assert!(std::mem::size_of::<ClockCore>().is_multiple_of(8));

/// The block of a ticket with no clocks and no hashes (never written, never freed).
static EMPTY: Header = Header {
    clocks: 0,
    room: 0,
    seen: 0,
};

pub struct Clocks {
    ptr: NonNull<Header>,
}

// SAFETY: `Clocks` owns its block like a `Box` (the shared `EMPTY` is never written).
unsafe impl Send for Clocks {}
unsafe impl Sync for Clocks {}

fn layout(clocks: usize, capacity: usize) -> Layout {
    let size = HEADER + clocks * std::mem::size_of::<ClockCore>() + capacity * 8;
    Layout::from_size_align(size, 8).expect("clock block layout")
}

impl Default for Clocks {
    fn default() -> Clocks {
        Clocks {
            ptr: NonNull::from(&EMPTY),
        }
    }
}

impl Clocks {
    /// A block holding `clocks` and `seen`, with room for `capacity` hashes in all.
    pub fn new(clocks: &[ClockCore], seen: &[u64], capacity: usize) -> Clocks {
        let capacity = capacity.max(seen.len());
        let room = capacity - seen.len();
        if clocks.is_empty() && capacity == 0 {
            return Clocks::default();
        }
        assert!(
            clocks.len() <= u16::MAX as usize
                && room <= u16::MAX as usize
                && seen.len() <= u32::MAX as usize,
            "clock block too large"
        );
        let l = layout(clocks.len(), capacity);
        // SAFETY: `l` has a non-zero size (the header); the writes stay inside it.
        unsafe {
            let p = alloc(l);
            let Some(ptr) = NonNull::new(p.cast::<Header>()) else {
                handle_alloc_error(l)
            };
            ptr.as_ptr().write(Header {
                clocks: clocks.len() as u16,
                room: room as u16,
                seen: seen.len() as u32,
            });
            let c = p.add(HEADER).cast::<ClockCore>();
            std::ptr::copy_nonoverlapping(clocks.as_ptr(), c, clocks.len());
            let s = c.add(clocks.len()).cast::<u64>();
            std::ptr::copy_nonoverlapping(seen.as_ptr(), s, seen.len());
            Clocks { ptr }
        }
    }

    /// `n` idle clocks and room for `capacity` hashes (a new ticket).
    pub fn idle(n: usize, capacity: usize) -> Clocks {
        // Small plans (every default one) without a heap buffer.
        let mut v = smallvec::SmallVec::<[ClockCore; 16]>::new();
        v.resize(n, ClockCore::default());
        Clocks::new(&v, &[], capacity)
    }

    fn header(&self) -> &Header {
        // SAFETY: `ptr` is `EMPTY` or a block this owns, starting with its header.
        unsafe { self.ptr.as_ref() }
    }

    fn is_shared_empty(&self) -> bool {
        std::ptr::eq(self.ptr.as_ptr(), &EMPTY)
    }

    fn clocks_ptr(&self) -> *mut ClockCore {
        // SAFETY: within the block (or one past `EMPTY`'s header, for zero clocks).
        unsafe { self.ptr.as_ptr().cast::<u8>().add(HEADER).cast() }
    }

    fn seen_ptr(&self) -> *mut u64 {
        // SAFETY: within the block, after the clock states.
        unsafe { self.clocks_ptr().add(self.header().clocks as usize).cast() }
    }

    /// The dedup hashes (rule 9), in the order recorded.
    pub fn seen(&self) -> &[u64] {
        // SAFETY: `seen` initialised hashes follow the clock states.
        unsafe { std::slice::from_raw_parts(self.seen_ptr(), self.header().seen as usize) }
    }

    /// Hashes the block holds room for (recorded ones included).
    pub fn seen_capacity(&self) -> usize {
        let h = self.header();
        h.seen as usize + h.room as usize
    }

    /// Room for `additional` more hashes (exactly, as `Vec::reserve_exact`).
    pub fn reserve_seen_exact(&mut self, additional: usize) {
        let (n, len, cap) = {
            let h = self.header();
            (h.clocks as usize, h.seen as usize, self.seen_capacity())
        };
        if cap - len >= additional {
            return;
        }
        let new_cap = len + additional;
        assert!(additional <= u16::MAX as usize, "clock block too large");
        if self.is_shared_empty() {
            *self = Clocks::new(&[], &[], new_cap);
            return;
        }
        let old = layout(n, cap);
        let new = layout(n, new_cap);
        // SAFETY: the block was allocated with `old`; `realloc` keeps its prefix (header,
        // clocks, hashes).
        unsafe {
            let p = realloc(self.ptr.as_ptr().cast(), old, new.size());
            let Some(ptr) = NonNull::new(p.cast::<Header>()) else {
                handle_alloc_error(new)
            };
            self.ptr = ptr;
            (*ptr.as_ptr()).room = additional as u16;
        }
    }

    /// Records a hash; the caller made room ([`Clocks::reserve_seen_exact`]).
    pub fn push_seen(&mut self, h: u64) {
        assert!(self.header().room > 0, "no room for a dedup hash");
        // SAFETY: not `EMPTY` (it has no room); the slot is inside the block.
        unsafe {
            let len = self.header().seen as usize;
            self.seen_ptr().add(len).write(h);
            let hd = self.ptr.as_mut();
            hd.seen += 1;
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
        let len = self.header().seen as usize;
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
        hd.seen += done as u32;
        hd.room -= done as u16;
        ok.then_some(())
    }

    /// Replaces the clock states with `clocks` (another count: a re-match or a restore
    /// under a plan with other clocks), keeping the hashes and their capacity.
    pub fn set_clocks(&mut self, clocks: &[ClockCore]) {
        let new = Clocks::new(clocks, self.seen(), self.seen_capacity());
        *self = new;
    }

    /// `n` clock states: the first ones kept, idle ones added.
    pub fn resize(&mut self, n: usize) {
        let mut v: smallvec::SmallVec<[ClockCore; 16]> = self.iter().copied().collect();
        v.resize(n, ClockCore::default());
        self.set_clocks(&v);
    }
}

impl Drop for Clocks {
    fn drop(&mut self) {
        if self.is_shared_empty() {
            return;
        }
        let h = self.header();
        let l = layout(h.clocks as usize, h.seen as usize + h.room as usize);
        // SAFETY: allocated with this layout (`new`, `reserve_seen_exact`).
        unsafe { dealloc(self.ptr.as_ptr().cast(), l) }
    }
}

impl std::ops::Deref for Clocks {
    type Target = [ClockCore];
    fn deref(&self) -> &[ClockCore] {
        // SAFETY: `clocks` initialised states follow the header.
        unsafe { std::slice::from_raw_parts(self.clocks_ptr(), self.header().clocks as usize) }
    }
}

impl std::ops::DerefMut for Clocks {
    fn deref_mut(&mut self) -> &mut [ClockCore] {
        let n = self.header().clocks as usize;
        if n == 0 {
            return &mut [];
        }
        // SAFETY: as `deref`, in a block this owns (`EMPTY` has no clocks).
        unsafe { std::slice::from_raw_parts_mut(self.clocks_ptr(), n) }
    }
}

impl Clone for Clocks {
    fn clone(&self) -> Clocks {
        Clocks::new(self, self.seen(), self.seen_capacity())
    }
}

/// Equal clock states and hashes (capacity aside, as `Vec`'s equality).
impl PartialEq for Clocks {
    fn eq(&self, other: &Clocks) -> bool {
        **self == **other && self.seen() == other.seen()
    }
}

impl std::fmt::Debug for Clocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clocks")
            .field("clocks", &&**self)
            .field("seen", &self.seen())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::clock::ClockStatus;
    use crate::core::time::Ts;

    fn core(k: i64) -> ClockCore {
        ClockCore {
            status: ClockStatus::Running,
            nth: k as u16,
            start: Ts(k),
            ..Default::default()
        }
    }

    /// The block behaves as a `Box<[ClockCore]>` and a `Vec<u64>` side by side.
    #[test]
    fn block_behaves_as_a_slice_and_a_vec() {
        for n in [0usize, 1, 4, 6] {
            let cores: Vec<ClockCore> = (0..n as i64).map(core).collect();
            let mut c = Clocks::new(&cores, &[], 0);
            let mut model: Vec<u64> = Vec::new();
            for h in 0..40u64 {
                if model.len() == model.capacity() {
                    let add = if model.len() < 8 { 2 } else { 4 };
                    model.reserve_exact(add);
                    c.reserve_seen_exact(add);
                }
                model.push(h * 7919);
                c.push_seen(h * 7919);
                assert_eq!(c.seen(), &model[..]);
                assert_eq!(&*c, &cores[..]);
                // The same hashes written in bulk, stopping where `next` gives `None`.
                let mut f = Clocks::new(&cores, &[], model.len() + 1);
                let mut it = model.iter().copied();
                assert_eq!(f.fill_seen(model.len(), || it.next()), Some(()));
                assert_eq!(f.seen(), &model[..]);
                let mut g = Clocks::new(&cores, &[], model.len() + 1);
                let mut it = model.iter().copied();
                assert_eq!(g.fill_seen(model.len() + 1, || it.next()), None);
                assert_eq!(g.seen(), &model[..]);
                assert_eq!(g.seen_capacity(), model.len() + 1);
                assert!(c.seen_capacity() >= c.seen().len());
            }
            let d = c.clone();
            assert_eq!(c, d);
            c[0..n].iter_mut().for_each(|x| x.warned = 1);
            assert_eq!(c == d, n == 0);
            c.resize(n + 2);
            assert_eq!(c.len(), n + 2);
            assert_eq!(c.seen(), &model[..]);
            assert_eq!(c[n + 1], ClockCore::default());
            c.set_clocks(&[]);
            assert!(c.is_empty());
            assert_eq!(c.seen(), &model[..]);
        }
        let mut e = Clocks::default();
        assert!(e.is_empty() && e.seen().is_empty() && e.seen_capacity() == 0);
        e.reserve_seen_exact(3);
        e.push_seen(5);
        assert_eq!(e.seen(), &[5]);
        assert_eq!(Clocks::idle(3, 10).seen_capacity(), 10);
        assert_eq!(&*Clocks::idle(3, 10), &[ClockCore::default(); 3][..]);
    }
}
