//! A closed ticket's closing instant, kept in its clock block (`core::clocks`) rather than
//! in the ticket (issue 14, bytes per open ticket): `Ticket` 80 → 72 bytes, its slab slot
//! 88 → 80, for an instant few tickets hold at a time. The instant is a word between the
//! header (and the dense form's count word) and the clock states, flagged in the header;
//! closing takes the word from the block's room (the states and hashes move up by 8 bytes,
//! no allocation unless the room is empty), reopening gives it back. Moving the instant to
//! the extras cost an allocation per close.
use super::{layout, realloc_block, Clocks, CLOSED, CORE, HASH, HEADER};
use crate::core::time::Ts;

impl Clocks {
    /// Set while the block holds a closing instant.
    #[inline]
    pub(super) fn has_closed(&self) -> bool {
        self.header().counts & CLOSED != 0
    }

    /// The closing instant's word (only while [`Clocks::has_closed`]).
    #[inline]
    fn closed_ptr(&self) -> *mut i64 {
        let off = HEADER + 8 * self.is_dense() as usize;
        // SAFETY: inside the block: the word after the header and the last event (and the
        // count word).
        unsafe { self.ptr.as_ptr().cast::<u8>().add(off).cast() }
    }

    /// When the ticket closed, if it is closed (`Ticket::closed_at`).
    #[inline]
    pub fn closed_at(&self) -> Option<Ts> {
        if !self.has_closed() {
            return None;
        }
        // SAFETY: flagged: the word was written by `set_closed_at`.
        Some(Ts(unsafe { self.closed_ptr().read() }))
    }

    /// Sets or clears the closing instant. Setting it takes a word of the room (grown to
    /// exactly one word when it has less, as a block without clocks and hashes has);
    /// clearing it gives the word back to the room.
    pub fn set_closed_at(&mut self, at: Option<Ts>) {
        match (at, self.has_closed()) {
            (Some(t), true) => {
                // SAFETY: flagged: the word is inside a block this owns.
                unsafe { self.closed_ptr().write(t.0) }
            }
            (Some(t), false) => {
                self.reserve_room(8);
                let bytes = self.stored_len() * CORE + self.header().seen() * HASH;
                let at = self.clocks_ptr().cast::<u8>();
                // SAFETY: a block this owns with a word of room after the hashes: states
                // and hashes move up by one word inside it (`copy` allows the overlap),
                // and the word freed before them takes the instant.
                unsafe {
                    std::ptr::copy(at, at.add(8), bytes);
                    at.cast::<i64>().write(t.0);
                    let h = self.ptr.as_mut();
                    h.room -= 8;
                    h.counts |= CLOSED;
                }
            }
            (None, true) => {
                let (dense, k, seen) = (self.is_dense(), self.stored_len(), self.header().seen());
                let bytes = k * CORE + seen * HASH;
                let from = self.clocks_ptr().cast::<u8>();
                let to = self.closed_ptr().cast::<u8>();
                // SAFETY: states and hashes move down one word inside the block (`copy`
                // allows the overlap); the word they leave at the end joins the room.
                unsafe {
                    std::ptr::copy(from, to, bytes);
                    let h = self.ptr.as_mut();
                    h.counts &= !CLOSED;
                    if h.room as usize + 8 <= u16::MAX as usize {
                        h.room += 8;
                    } else {
                        // The room counts no more: give the word back to the allocator.
                        let (prefix, room) = (dense as usize, h.room as usize);
                        self.ptr = realloc_block(
                            self.ptr,
                            layout(prefix + 1, k, seen, room),
                            layout(prefix, k, seen, room),
                        );
                    }
                }
            }
            (None, false) => {}
        }
    }
}
