//! The hash of the first action a ticket fired (`Ticket::fire_actions`), kept in its clock
//! block (`core::clocks`) as a flagged prefix word after the closing instant's place (issue
//! 14, bytes per open ticket): a ticket that fired one action, the usual case, needs no
//! extras (a 32-byte block, 16 % of the engine bench's tickets), and the word mostly fits
//! the bytes its block's size class has spare. The word is added to the block, its room
//! kept: the room is what the ticket's ordinary life needs (its plan's routine starts and
//! dedup hashes, `Clocks::open`), and taking the word from it made the block grow again
//! later (under glibc a move, and a hole the bench's run never reused). Further actions'
//! hashes stay in the extras (`Extras::actions_fired`), after this one.
use super::{Clocks, FIRED, HEADER};

impl Clocks {
    /// Where the fired hash's word is (while flagged) or goes: after the header, the last
    /// event, the dense form's count word and the closing instant.
    #[inline]
    fn fired_offset(&self) -> usize {
        let c = self.header().counts;
        HEADER + 8 * (self.is_dense() as usize + (c & super::CLOSED != 0) as usize)
    }

    /// The first fired action's hash, if the ticket fired one.
    #[inline]
    pub fn fired(&self) -> Option<u64> {
        if self.header().counts & FIRED == 0 {
            return None;
        }
        // SAFETY: flagged: the word was written by `set_fired`.
        Some(unsafe { self.word(self.fired_offset()).read() } as u64)
    }

    /// Sets or clears the first fired action's hash: setting it grows the block by a word
    /// (its room kept), clearing it gives the word to the room.
    pub fn set_fired(&mut self, h: Option<u64>) {
        let off = self.fired_offset();
        match (h, self.header().counts & FIRED != 0) {
            // SAFETY: flagged: the word is inside a block this owns.
            (Some(h), true) => unsafe { self.word(off).write(h as i64) },
            (Some(h), false) => self.insert_word(off, FIRED, h as i64, true),
            (None, true) => self.remove_word(off, FIRED),
            (None, false) => {}
        }
    }
}
