//! A closed ticket's closing instant, kept in its clock block (`core::clocks`) rather than
//! in the ticket (issue 14, bytes per open ticket): `Ticket` 80 → 72 bytes, its slab slot
//! 88 → 80, for an instant few tickets hold at a time. The instant is a word between the
//! header (and the dense form's count word) and the clock states, flagged in the header;
//! closing takes the word from the block's room (the words, states and hashes after it
//! move up by 8 bytes, no allocation unless the room is empty), reopening gives it back.
//! Moving the instant to the extras cost an allocation per close.
//!
//! The prefix words' insertion and removal ([`Clocks::insert_word`],
//! [`Clocks::remove_word`]) are shared with the fired action's hash (`clocks/fired.rs`).
use super::{layout, realloc_block, Clocks, CLOSED, CORE, HASH, HEADER};
use crate::core::time::Ts;

impl Clocks {
    /// Set while the block holds a closing instant.
    #[inline]
    pub(super) fn has_closed(&self) -> bool {
        self.header().counts & CLOSED != 0
    }

    /// Where the closing instant's word is (while [`Clocks::has_closed`]) or goes: after
    /// the header, the last event and the dense form's count word.
    #[inline]
    fn closed_offset(&self) -> usize {
        HEADER + 8 * self.is_dense() as usize
    }

    /// When the ticket closed, if it is closed (`Ticket::closed_at`).
    #[inline]
    pub fn closed_at(&self) -> Option<Ts> {
        if !self.has_closed() {
            return None;
        }
        // SAFETY: flagged: the word was written by `set_closed_at`.
        Some(Ts(unsafe { self.word(self.closed_offset()).read() }))
    }

    /// Sets or clears the closing instant. Setting it takes a word of the room (grown to
    /// exactly one word when it has less, as a block without clocks and hashes has);
    /// clearing it gives the word back to the room.
    pub fn set_closed_at(&mut self, at: Option<Ts>) {
        let off = self.closed_offset();
        match (at, self.has_closed()) {
            // SAFETY: flagged: the word is inside a block this owns.
            (Some(t), true) => unsafe { self.word(off).write(t.0) },
            (Some(t), false) => self.insert_word(off, CLOSED, t.0, false),
            (None, true) => self.remove_word(off, CLOSED),
            (None, false) => {}
        }
    }

    /// The prefix word at byte offset `off` (a pointer into the block).
    #[inline]
    pub(super) fn word(&self, off: usize) -> *mut i64 {
        // SAFETY: the callers' offsets are inside the block's prefix.
        unsafe { self.ptr.as_ptr().cast::<u8>().add(off).cast() }
    }

    /// Bytes in use: header, last event, prefix words, states and hashes (not the room).
    #[inline]
    fn used(&self) -> usize {
        HEADER + 8 * self.prefix() + self.stored_len() * CORE + self.header().seen() * HASH
    }

    /// Inserts a prefix word holding `value` at byte offset `off` (a word boundary inside
    /// the prefix), flagged by `flag` in the header (not yet set); what follows moves up by
    /// 8 bytes. The word takes 8 bytes of the room (grown to exactly one word when it has
    /// less), or with `keep_room` is added to the block, its room kept as it was.
    pub(super) fn insert_word(&mut self, off: usize, flag: u32, value: i64, keep_room: bool) {
        debug_assert!(self.header().counts & flag == 0);
        let room = self.header().room as usize;
        self.reserve_room(if keep_room && room <= u16::MAX as usize - 8 {
            room + 8
        } else {
            8
        });
        let used = self.used();
        debug_assert!(off >= HEADER && off <= used);
        let at = self.ptr.as_ptr().cast::<u8>();
        // SAFETY: a block this owns (`reserve_room` made one of the shared empty block) with
        // a word of room after its used bytes: the bytes from `off` move up by one word
        // inside it (`copy` allows the overlap), and the word freed takes the value.
        unsafe {
            std::ptr::copy(at.add(off), at.add(off + 8), used - off);
            at.add(off).cast::<i64>().write(value);
            let h = self.ptr.as_mut();
            h.room -= 8;
            h.counts |= flag;
        }
    }

    /// Removes the prefix word at byte offset `off` flagged by `flag` (set): what follows
    /// moves down by 8 bytes, the word joins the room.
    pub(super) fn remove_word(&mut self, off: usize, flag: u32) {
        debug_assert!(self.header().counts & flag != 0);
        let (prefix, k, seen) = (self.prefix(), self.stored_len(), self.header().seen());
        let used = self.used();
        let at = self.ptr.as_ptr().cast::<u8>();
        // SAFETY: the flagged word at `off` is inside a block this owns: the bytes after it
        // move down one word (`copy` allows the overlap); the word they leave at the end
        // joins the room.
        unsafe {
            std::ptr::copy(at.add(off + 8), at.add(off), used - off - 8);
            let h = self.ptr.as_mut();
            h.counts &= !flag;
            if h.room as usize + 8 <= u16::MAX as usize {
                h.room += 8;
            } else {
                // The room counts no more: give the word back to the allocator.
                let room = h.room as usize;
                self.ptr = realloc_block(
                    self.ptr,
                    layout(prefix, k, seen, room),
                    layout(prefix - 1, k, seen, room),
                );
            }
        }
    }
}
