//! One clock's state and its due-time arithmetic.
//!
//! Every output of a clock is "the instant at which its counted time reaches X":
//!
//! | output                | X                              |
//! |-----------------------|--------------------------------|
//! | Warning f             | f · target                     |
//! | Breach                | target                         |
//! | Escalation level k    | target + ladder[k-1].after     |
//! | ProgressReminder nth  | nth · every (since last reset) |
//!
//! Counted time runs in the clock's calendar and not while paused, so one function,
//! [`instant_of`], gives every due time, and re-matching a ticket to another policy only
//! re-evaluates X under the new spec (docs/sla-semantics.md §2 rules 2, 3, 6).
//!
//! Transitions (per event, in this order: stop/end, pause/resume, start):
//!
//! | state    | input                   | next state / effect                                |
//! |----------|-------------------------|----------------------------------------------------|
//! | Idle     | start matcher, allowed  | Running(start = t); FollowUpDue if follow-up clock |
//! | Running  | stop matcher (deadline) | Stopped; Cleared if breached                       |
//! | Running  | stop matcher (recurring)| Running, period reset (start = t, nth = 0)         |
//! | Running  | end matcher (recurring) | Stopped                                            |
//! | Running  | pause / resume          | paused interval opened / closed                    |
//! | Running  | timer at due            | outputs whose X is reached                         |
//! | Stopped  | start matcher, allowed  | Running again (unless `once` used this cycle)      |
//! | any      | closed (not survivor)   | Cancelled, silently                                |
//! | any      | reopen, `restart`       | Running(start = t), outputs re-armed               |
use crate::core::calendar::Calendar;
use crate::core::policy::{ClockKind, ClockSpec, Phase, PhaseSet};
use crate::core::time::{Dur, Ts};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ClockStatus {
    #[default]
    Idle,
    Running,
    Stopped,
    Cancelled,
}

/// Paused intervals since the clock's start (rare, so boxed).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Pauses {
    pub closed: Vec<(Ts, Ts)>,
    pub open: Option<Ts>,
}

/// A clock's whole state: as the ticket record encodes it, and as views, `explain` and
/// `whatif` see it (`Ticket::clock`). A ticket holds it as [`ClockCore`] plus intervals.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClockState {
    pub status: ClockStatus,
    /// Started in this cycle (for `once`).
    pub once_used: bool,
    pub breached: bool,
    /// Warnings fired, one bit per `warn_at` index.
    pub warned: u8,
    /// Ladder levels fired (a prefix of the ladder).
    pub escalated: u8,
    /// Recurring: reminders fired since the last reset (a clock that reaches 65 535 missed
    /// periods — 455 days at 10 min — ends; idle tickets are dropped long before).
    pub nth: u16,
    /// Start, or for a recurring clock the last reset.
    pub start: Ts,
    pub pauses: Option<Box<Pauses>>,
}

/// A clock's state as a ticket holds it: [`ClockState`] without its paused intervals
/// (16 bytes, not 24: 1 M open tickets hold ~6 each). The intervals of the rare clock that
/// paused live beside the ticket's clocks (`Ticket`'s extras, by clock index); `paused`
/// says whether one is open, and the arithmetic takes the intervals as an argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ClockCore {
    pub status: ClockStatus,
    pub once_used: bool,
    pub breached: bool,
    pub warned: u8,
    pub escalated: u8,
    /// A paused interval is open (its `Pauses::open` is set).
    pub paused: bool,
    pub nth: u16,
    pub start: Ts,
}

/// What a due item of a clock is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Item {
    Warning(usize),
    Breach,
    Escalation(usize),
    Reminder(u32),
}

impl ClockState {
    /// The state without its intervals.
    pub fn core(&self) -> ClockCore {
        ClockCore {
            status: self.status,
            once_used: self.once_used,
            breached: self.breached,
            warned: self.warned,
            escalated: self.escalated,
            paused: self.is_paused(),
            nth: self.nth,
            start: self.start,
        }
    }
    /// A clock's whole state from what a ticket holds.
    pub fn from_parts(c: ClockCore, pauses: Option<Box<Pauses>>) -> ClockState {
        ClockState {
            status: c.status,
            once_used: c.once_used,
            breached: c.breached,
            warned: c.warned,
            escalated: c.escalated,
            nth: c.nth,
            start: c.start,
            pauses,
        }
    }
    pub fn is_running(&self) -> bool {
        self.status == ClockStatus::Running
    }
    pub fn is_paused(&self) -> bool {
        self.pauses.as_ref().is_some_and(|p| p.open.is_some())
    }
    /// Satisfies another clock's `after`: stopped, or breached while running.
    pub fn done_or_breached(&self) -> bool {
        self.core().done_or_breached()
    }
    /// (Re)starts the clock at `t`, re-arming all its outputs.
    pub fn start_at(&mut self, t: Ts) {
        let mut c = ClockCore::default();
        c.start_at(t);
        *self = ClockState::from_parts(c, None);
    }
    pub fn pause_at(&mut self, t: Ts) {
        let mut c = self.core();
        c.pause_at(&mut self.pauses, t);
    }
    pub fn resume_at(&mut self, t: Ts) {
        let mut c = self.core();
        c.resume_at(&mut self.pauses, t);
    }
    /// See [`ClockCore::follow_phase`].
    pub fn follow_phase(&mut self, paused_in: PhaseSet, phase: Phase, t: Ts) {
        let mut c = self.core();
        c.follow_phase(&mut self.pauses, paused_in, phase, t);
    }
    /// See [`ClockCore::counted_until`].
    pub fn counted_until(&self, cal: &Calendar, t: Ts) -> Dur {
        self.core().counted_until(self.pauses.as_deref(), cal, t)
    }
    /// See [`ClockCore::instant_of`].
    pub fn instant_of(&self, cal: &Calendar, x: Dur) -> Option<Ts> {
        self.core().instant_of(self.pauses.as_deref(), cal, x)
    }
    /// See [`ClockCore::next_item`].
    pub fn next_item(&self, spec: &ClockSpec) -> Option<(Item, Dur)> {
        self.core().next_item(spec)
    }
    /// See [`ClockCore::next_due`].
    pub fn next_due(&self, spec: &ClockSpec, cal: &Calendar) -> Option<Ts> {
        self.core().next_due(self.pauses.as_deref(), spec, cal)
    }
    /// See [`ClockCore::deadline`].
    pub fn deadline(&self, spec: &ClockSpec, cal: &Calendar) -> Option<Ts> {
        self.core().deadline(self.pauses.as_deref(), spec, cal)
    }
}

impl ClockCore {
    /// `self == other`, as two word compares: every field packed into one integer beside
    /// the start (the derived comparison goes field by field, ~15 instructions per clock,
    /// and rescheduling after each event compares a ticket's clocks with their copy).
    #[inline]
    pub fn same_as(&self, other: &ClockCore) -> bool {
        self.packed() == other.packed() && self.start == other.start
    }

    #[inline]
    fn packed(&self) -> u64 {
        self.status as u64
            | (self.once_used as u64) << 8
            | (self.breached as u64) << 16
            | (self.warned as u64) << 24
            | (self.escalated as u64) << 32
            | (self.paused as u64) << 40
            | (self.nth as u64) << 48
    }

    pub fn is_running(&self) -> bool {
        self.status == ClockStatus::Running
    }
    pub fn is_paused(&self) -> bool {
        self.paused
    }
    /// Satisfies another clock's `after`: stopped, or breached while running.
    pub fn done_or_breached(&self) -> bool {
        self.status == ClockStatus::Stopped || (self.is_running() && self.breached)
    }

    /// (Re)starts the clock at `t`, re-arming all its outputs.
    pub fn start_at(&mut self, t: Ts) {
        *self = ClockCore {
            status: ClockStatus::Running,
            once_used: true,
            start: t,
            ..ClockCore::default()
        };
    }

    /// Opens a paused interval at `t` in `pauses` (this clock's), unless one is open.
    pub fn pause_at(&mut self, pauses: &mut Option<Box<Pauses>>, t: Ts) {
        let p = pauses.get_or_insert_with(Default::default);
        if p.open.is_none() {
            p.open = Some(t);
        }
        self.paused = true;
    }

    /// Closes the open paused interval of `pauses` (this clock's) at `t`, if any.
    pub fn resume_at(&mut self, pauses: &mut Option<Box<Pauses>>, t: Ts) {
        if let Some(p) = pauses.as_mut() {
            if let Some(from) = p.open.take() {
                if t > from {
                    p.closed.push((from, t));
                }
            }
        }
        self.paused = false;
    }

    /// `paused_in`: paused at `t` exactly while `phase` is one of `paused_in` (a no-op for
    /// an empty set, i.e. a clock that pauses on events or not at all).
    pub fn follow_phase(
        &mut self,
        pauses: &mut Option<Box<Pauses>>,
        paused_in: PhaseSet,
        phase: Phase,
        t: Ts,
    ) {
        if paused_in.is_empty() {
            return;
        }
        match (paused_in.contains(phase), self.is_paused()) {
            (true, false) => self.pause_at(pauses, t),
            (false, true) => self.resume_at(pauses, t),
            _ => {}
        }
    }

    /// Counted time from the start to `t`, excluding `pauses` (this clock's).
    pub fn counted_until(&self, pauses: Option<&Pauses>, cal: &Calendar, t: Ts) -> Dur {
        let mut acc = 0i64;
        let mut seg = self.start;
        if let Some(p) = pauses {
            for &(from, to) in &p.closed {
                if t <= from {
                    return Dur(acc + cal.counted(seg, t).0);
                }
                acc += cal.counted(seg, from).0;
                seg = to;
                if t <= to {
                    return Dur(acc);
                }
            }
            if let Some(from) = p.open {
                return Dur(acc + cal.counted(seg, t.min(from)).0);
            }
        }
        Dur(acc + cal.counted(seg, t).0)
    }

    /// The first instant at which counted time reaches `x`; `None` while paused short of it.
    pub fn instant_of(&self, pauses: Option<&Pauses>, cal: &Calendar, x: Dur) -> Option<Ts> {
        let mut acc = 0i64;
        let mut seg = self.start;
        if let Some(p) = pauses {
            for &(from, to) in &p.closed {
                let c = cal.counted(seg, from).0;
                if acc + c >= x.0 {
                    return Some(cal.advance(seg, Dur(x.0 - acc)));
                }
                acc += c;
                seg = to;
            }
            if let Some(from) = p.open {
                let c = cal.counted(seg, from).0;
                if acc + c >= x.0 {
                    return Some(cal.advance(seg, Dur(x.0 - acc)));
                }
                return None;
            }
        }
        Some(cal.advance(seg, Dur(x.0 - acc)))
    }

    /// The next output this clock owes, with the counted time X at which it falls due.
    pub fn next_item(&self, spec: &ClockSpec) -> Option<(Item, Dur)> {
        if !self.is_running() {
            return None;
        }
        match spec.kind {
            ClockKind::Recurring { every, .. } => Some((
                Item::Reminder(self.nth as u32 + 1),
                Dur(every.0.saturating_mul(self.nth as i64 + 1)),
            )),
            ClockKind::Deadline => {
                for (i, f) in spec.warn_at.iter().enumerate() {
                    if i < 8 && self.warned & (1 << i) == 0 {
                        return Some((Item::Warning(i), spec.target.mul_f64(*f)));
                    }
                }
                if !self.breached {
                    return Some((Item::Breach, spec.target));
                }
                let k = self.escalated as usize;
                spec.escalate
                    .get(k)
                    .map(|step| (Item::Escalation(k), Dur(spec.target.0 + step.after.0)))
            }
        }
    }

    /// Marks an item as emitted.
    pub fn mark(&mut self, item: Item) {
        match item {
            Item::Warning(i) => self.warned |= 1 << i,
            Item::Breach => self.breached = true,
            Item::Escalation(k) => self.escalated = (k + 1) as u8,
            Item::Reminder(n) => {
                self.nth = n.min(u16::MAX as u32) as u16;
                if self.nth == u16::MAX {
                    self.status = ClockStatus::Stopped;
                }
            }
        }
    }

    /// Due instant of the next item, if any (None while paused or not running).
    pub fn next_due(
        &self,
        pauses: Option<&Pauses>,
        spec: &ClockSpec,
        cal: &Calendar,
    ) -> Option<Ts> {
        let (_, x) = self.next_item(spec)?;
        self.instant_of(pauses, cal, x)
    }

    /// The deadline (counted time = target) under `spec`, if reachable now.
    pub fn deadline(
        &self,
        pauses: Option<&Pauses>,
        spec: &ClockSpec,
        cal: &Calendar,
    ) -> Option<Ts> {
        self.instant_of(pauses, cal, spec.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `same_as` is `==`: clocks differing in any one field, and equal ones.
    #[test]
    fn same_as_is_equality() {
        let mut a = ClockCore::default();
        a.start_at(Ts::from_secs(7));
        let variants = [
            ClockCore {
                status: ClockStatus::Stopped,
                ..a
            },
            ClockCore {
                status: ClockStatus::Cancelled,
                ..a
            },
            ClockCore {
                status: ClockStatus::Idle,
                ..a
            },
            ClockCore {
                once_used: false,
                ..a
            },
            ClockCore {
                breached: true,
                ..a
            },
            ClockCore { warned: 0x80, ..a },
            ClockCore { escalated: 3, ..a },
            ClockCore { paused: true, ..a },
            ClockCore { nth: 0x8001, ..a },
            ClockCore {
                start: Ts(7_000_000_001),
                ..a
            },
        ];
        assert!(a.same_as(&a.clone()));
        for v in variants {
            assert_ne!(v, a);
            assert!(!v.same_as(&a) && !a.same_as(&v), "{v:?}");
            assert!(v.same_as(&v.clone()));
        }
    }

    #[test]
    fn pauses_shift_due_times() {
        let cal = Calendar::always_open("24x7");
        let mut c = ClockState::default();
        c.start_at(Ts::from_secs(0));
        c.pause_at(Ts::from_secs(10));
        assert_eq!(c.instant_of(&cal, Dur::from_secs(30)), None);
        assert_eq!(
            c.instant_of(&cal, Dur::from_secs(5)),
            Some(Ts::from_secs(5))
        );
        c.resume_at(Ts::from_secs(100));
        assert_eq!(
            c.instant_of(&cal, Dur::from_secs(30)),
            Some(Ts::from_secs(120))
        );
        assert_eq!(c.counted_until(&cal, Ts::from_secs(50)), Dur::from_secs(10));
        assert_eq!(
            c.counted_until(&cal, Ts::from_secs(130)),
            Dur::from_secs(40)
        );
    }
}
