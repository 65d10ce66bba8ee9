//! Reading a ticket's clock states out of its block (`core::clocks`): every clock in the
//! plan's order (absent ones read as [`IDLE`]), or the stored ones with their indices.
use super::{rank, Clocks, IDLE};
use crate::core::clock::ClockCore;

impl Clocks {
    /// Every clock's state, in the plan's order (absent ones read as [`IDLE`]).
    #[inline]
    pub fn iter(&self) -> Iter<'_> {
        let bits = self.header().bits;
        Iter {
            stored: self.stored_slice().iter(),
            i: 0,
            n: self.len(),
            all: bits == 0,
            bits,
        }
    }

    /// (clock index, state) of every stored state, in order: the clocks that are not idle
    /// (every clock in the dense form). What only running clocks matter to (their due
    /// instants) walks these and skips the idle clocks unread.
    #[inline]
    pub fn stored(&self) -> Stored<'_> {
        let bits = self.header().bits;
        Stored {
            states: self.stored_slice().iter(),
            i: 0,
            rest: if bits == 0 {
                0
            } else {
                bits ^ (1 << self.len())
            },
            all: bits == 0,
        }
    }
}

/// [`Clocks::iter`]: the stored states in order, [`IDLE`] for the clocks not stored.
pub struct Iter<'a> {
    stored: std::slice::Iter<'a, ClockCore>,
    i: usize,
    n: usize,
    /// Dense form: every clock is stored.
    all: bool,
    bits: u16,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a ClockCore;
    #[inline]
    fn next(&mut self) -> Option<&'a ClockCore> {
        if self.i == self.n {
            return None;
        }
        let i = self.i;
        self.i += 1;
        if self.all || self.bits & (1 << i) != 0 {
            self.stored.next()
        } else {
            Some(&IDLE)
        }
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.n - self.i, Some(self.n - self.i))
    }
}

impl ExactSizeIterator for Iter<'_> {}

/// [`Clocks::stored`]: the stored states with their clock indices.
pub struct Stored<'a> {
    states: std::slice::Iter<'a, ClockCore>,
    /// Dense form: the next state's index.
    i: usize,
    /// Sparse form: the bits of the stored clocks not yet visited.
    rest: u16,
    all: bool,
}

impl<'a> Iterator for Stored<'a> {
    type Item = (usize, &'a ClockCore);
    #[inline]
    fn next(&mut self) -> Option<(usize, &'a ClockCore)> {
        let c = self.states.next()?;
        let i = if self.all {
            self.i += 1;
            self.i - 1
        } else {
            let i = self.rest.trailing_zeros() as usize;
            self.rest &= self.rest - 1;
            i
        };
        Some((i, c))
    }
}

/// Clock `i`'s state ([`IDLE`] when it is not stored).
impl std::ops::Index<usize> for Clocks {
    type Output = ClockCore;
    fn index(&self, i: usize) -> &ClockCore {
        let bits = self.header().bits;
        if bits == 0 {
            return &self.stored_slice()[i];
        }
        let n = 15 - bits.leading_zeros() as usize;
        assert!(i < n, "clock {i} of {n}");
        if bits & (1 << i) == 0 {
            return &IDLE;
        }
        let k = rank(bits, i);
        // SAFETY: bit `i` is set: the `k`-th stored state (bits below `i` count them).
        unsafe { &*self.clocks_ptr().add(k) }
    }
}
