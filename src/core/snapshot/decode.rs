//! A ticket record decoded without serde: postcard's reader takes every byte through a
//! bounds-checked flavour and a visitor, ~4 400 instructions per restored ticket (two thirds
//! of a restore), most of them in the varints of the dedup hashes and timestamps. This
//! reader walks the same encoding over a slice; anything it does not take as plain (an
//! unknown enum index, a bad bool, a truncated or overlong record) returns `None` and the
//! caller decodes with postcard, so results and error texts are postcard's in every case
//! (`fast_decoder_agrees_with_postcard` checks that on encoded, mutated and arbitrary
//! bytes).
use super::{restored_dedup_capacity, AttrsWire, PlanKeyRef, RecordIn, TicketDecoded};
use crate::core::clock::{ClockCore, ClockStatus, Pauses};
use crate::core::clocks::Clocks;
use crate::core::model::{Category, Channel, Tier, Urgency};
use crate::core::policy::Phase;
use crate::core::ticket::{Extras, Fired};
use crate::core::ticket_id::TicketId;
use crate::core::time::Ts;
use smallvec::SmallVec;

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&x, rest) = self.b.split_first()?;
        self.b = rest;
        Some(x)
    }

    /// Postcard's varint of an integer of `bytes` bytes: at most `max` bytes, the last one
    /// no larger than `last_max` (as postcard checks).
    #[inline]
    fn varint(&mut self, max: usize, last_max: u8) -> Option<u64> {
        let mut out = 0u64;
        for i in 0..max {
            let v = self.byte()?;
            out |= ((v & 0x7f) as u64) << (7 * i);
            if v & 0x80 == 0 {
                return (i != max - 1 || v <= last_max).then_some(out);
            }
        }
        None
    }
    /// A `u64` varint, eight bytes at a time when the record has them: the dedup hashes
    /// take 10 bytes each and timestamps 9, so a byte loop is most of a restore. The last
    /// value of a record (fewer than 10 bytes left) takes the byte loop. Inlined at its
    /// ~24 calls per record (a call each was ~6 of its ~40 instructions).
    #[inline(always)]
    fn u64(&mut self) -> Option<u64> {
        // Lengths and small numbers take one byte.
        if let Some((&x, rest)) = self.b.split_first() {
            if x < 0x80 {
                self.b = rest;
                return Some(x as u64);
            }
        }
        // One bounds check for the longest varint, then array reads.
        let Some(c) = self.b.first_chunk::<10>() else {
            return self.varint(10, 0x01);
        };
        let word = u64::from_le_bytes(*c.first_chunk::<8>().unwrap());
        let stops = !word & 0x8080_8080_8080_8080;
        if stops != 0 {
            let n = stops.trailing_zeros() / 8 + 1;
            self.b = &self.b[n as usize..];
            return Some(gather7(word & (u64::MAX >> (64 - 8 * n))));
        }
        let low = gather7(word);
        let b8 = c[8];
        if b8 & 0x80 == 0 {
            self.b = &self.b[9..];
            return Some(low | (b8 as u64) << 56);
        }
        // The tenth byte holds the top bit only (postcard refuses more, or a continuation).
        let b9 = c[9];
        if b9 > 1 {
            return None;
        }
        self.b = &self.b[10..];
        Some(low | ((b8 & 0x7f) as u64) << 56 | (b9 as u64) << 63)
    }
    /// A `u32` varint: one byte inlined (a record's plan, phase, cycle and enum values),
    /// longer ones out of line.
    #[inline(always)]
    fn u32(&mut self) -> Option<u32> {
        if let Some((&x, rest)) = self.b.split_first() {
            if x < 0x80 {
                self.b = rest;
                return Some(x as u32);
            }
        }
        self.u32_long()
    }
    #[inline(never)]
    fn u32_long(&mut self) -> Option<u32> {
        self.varint(5, 0x0f).map(|v| v as u32)
    }
    fn u16(&mut self) -> Option<u16> {
        self.varint(3, 0x03).map(|v| v as u16)
    }
    #[inline(always)]
    fn len(&mut self) -> Option<usize> {
        self.u64().map(|v| v as usize)
    }
    #[inline(always)]
    fn i64(&mut self) -> Option<i64> {
        let n = self.u64()?;
        Some(((n >> 1) as i64) ^ -((n & 1) as i64))
    }
    /// Inlined, as `u64` is (an out-of-line call at each of a record's ~8 instants).
    #[inline(always)]
    fn ts(&mut self) -> Option<Ts> {
        self.i64().map(Ts)
    }
    fn bool(&mut self) -> Option<bool> {
        match self.byte()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
    fn option(&mut self) -> Option<bool> {
        self.bool()
    }
    #[inline(always)]
    fn str(&mut self) -> Option<&'a str> {
        let n = self.len()?;
        if n > self.b.len() {
            return None;
        }
        let (s, rest) = self.b.split_at(n);
        self.b = rest;
        // Ids and names are short and nearly always ASCII (as in `codec::wire`).
        if s.is_ascii() {
            // SAFETY: ASCII bytes are valid UTF-8.
            return Some(unsafe { std::str::from_utf8_unchecked(s) });
        }
        std::str::from_utf8(s).ok()
    }
    /// A sequence's length, refused when the record cannot hold that many elements of at
    /// least `min` bytes each (postcard would fail on it too; this only keeps a corrupt
    /// length from reserving memory).
    #[inline(always)]
    fn seq(&mut self, min: usize) -> Option<usize> {
        let n = self.len()?;
        (n.checked_mul(min)? <= self.b.len()).then_some(n)
    }
    fn opt_ts(&mut self) -> Option<Option<Ts>> {
        Some(if self.option()? {
            Some(self.ts()?)
        } else {
            None
        })
    }
    fn u64s(&mut self) -> Option<Fired> {
        let n = self.seq(1)?;
        let mut v = Fired::None;
        for _ in 0..n {
            v.push(self.u64()?);
        }
        Some(v)
    }
}

/// The low 7 bits of each of the eight bytes of `x`, packed (a varint's payload).
#[inline]
fn gather7(x: u64) -> u64 {
    let x = x & 0x7f7f_7f7f_7f7f_7f7f;
    let x = (x & 0x007f_007f_007f_007f) | ((x & 0x7f00_7f00_7f00_7f00) >> 1);
    let x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x3fff_0000_3fff_0000) >> 2);
    (x & 0x0000_0000_0fff_ffff) | ((x & 0x0fff_ffff_0000_0000) >> 4)
}

fn domain<T>(r: &mut Reader, of: fn(i32) -> Option<T>) -> Option<T> {
    let i = r.u32()?;
    of(i32::try_from(i).ok()?)
}

fn phase(i: u32) -> Option<Phase> {
    Some(match i {
        0 => Phase::Open,
        1 => Phase::Waiting,
        2 => Phase::OnHold,
        3 => Phase::Resolved,
        4 => Phase::Closed,
        5 => Phase::Expired,
        _ => return None,
    })
}

fn status(i: u32) -> Option<ClockStatus> {
    Some(match i {
        0 => ClockStatus::Idle,
        1 => ClockStatus::Running,
        2 => ClockStatus::Stopped,
        3 => ClockStatus::Cancelled,
        _ => return None,
    })
}

/// One clock of a record: its core and its paused intervals, if any. The usual clock's
/// path is inlined into the ticket's loop (an out-of-line call per clock, ~5 per record,
/// returned its 24-byte result through memory), any other out of line.
#[inline(always)]
fn clock(r: &mut Reader) -> Option<(ClockCore, Option<Box<Pauses>>)> {
    // The usual clock: status, two bools, two bytes and `nth` of one byte each, a
    // timestamp, no pauses. Its six leading bytes are checked at once; anything else takes
    // the field-by-field path.
    if let Some(&[s, once_used, breached, warned, escalated, nth]) = r.b.first_chunk::<6>() {
        if s < 4 && once_used <= 1 && breached <= 1 && nth < 0x80 {
            let mut rest = Reader { b: &r.b[6..] };
            let start = rest.ts()?;
            if rest.byte()? == 0 {
                r.b = rest.b;
                let core = ClockCore {
                    status: status(s as u32)?,
                    once_used: once_used == 1,
                    breached: breached == 1,
                    warned,
                    escalated,
                    paused: false,
                    nth: nth as u16,
                    start,
                };
                return Some((core, None));
            }
        }
    }
    clock_fields(r)
}

/// [`clock`] field by field: any clock, with its paused intervals.
#[inline(never)]
fn clock_fields(r: &mut Reader) -> Option<(ClockCore, Option<Box<Pauses>>)> {
    let status = status(r.u32()?)?;
    let once_used = r.bool()?;
    let breached = r.bool()?;
    let warned = r.byte()?;
    let escalated = r.byte()?;
    let nth = r.u16()?;
    let start = r.ts()?;
    let pauses = if r.option()? {
        let n = r.seq(2)?;
        let mut closed = Vec::with_capacity(n);
        for _ in 0..n {
            closed.push((r.ts()?, r.ts()?));
        }
        let open = r.opt_ts()?;
        Some(Box::new(Pauses { closed, open }))
    } else {
        None
    };
    let core = ClockCore {
        status,
        once_used,
        breached,
        warned,
        escalated,
        paused: pauses.as_ref().is_some_and(|p| p.open.is_some()),
        nth,
        start,
    };
    Some((core, pauses))
}

fn ticket<'a>(r: &mut Reader<'a>) -> Option<TicketDecoded<'a>> {
    let id = TicketId::from(r.str()?);
    let attrs = AttrsWire {
        channel: domain(r, Channel::from_i32)?,
        category: domain(r, Category::from_i32)?,
        urgency: domain(r, Urgency::from_i32)?,
        tier: domain(r, Tier::from_i32)?,
        tenant: r.str()?,
        team: r.str()?,
    };
    let plan = r.u32()?;
    let phase = phase(r.u32()?)?;
    let cycle = r.u32()?;
    let opened_at = r.ts()?;
    let last_event = r.ts()?;
    let closed_at = r.opt_ts()?;
    // On the stack (copied into the ticket's block below); a plan of more clocks than any
    // policy has takes postcard's path.
    let n = r.seq(8)?;
    let mut cores = [ClockCore::default(); MAX_CLOCKS];
    if n > MAX_CLOCKS {
        return None;
    }
    let mut pauses = Vec::new();
    for (i, core) in cores[..n].iter_mut().enumerate() {
        let p;
        (*core, p) = clock(r)?;
        if p.is_some() {
            pauses.resize_with(i + 1, || None);
            pauses[i] = p;
        }
    }
    let mut extras = if r.option()? {
        let actions_fired = r.u64s()?;
        let n = r.seq(1)?;
        let mut check_since = Vec::with_capacity(n);
        for _ in 0..n {
            check_since.push(r.opt_ts()?);
        }
        Some(Box::new(Extras {
            actions_fired,
            check_since: check_since.into(),
            pauses: Default::default(),
        }))
    } else {
        None
    };
    // The hashes straight into the ticket's block, with room for the next event's.
    let seen = r.seq(1)?;
    // The closing instant and the first fired action's hash are prefix words of the block,
    // written as it is built (`Clocks::restored`); the instant takes a hash's room.
    let fired = Extras::take_first_fired(&mut extras);
    let capacity = restored_dedup_capacity(phase, seen) + closed_at.is_some() as usize;
    let mut clocks = Clocks::restored(&cores[..n], seen, capacity, closed_at, fired);
    clocks.fill_seen(seen, || r.u64())?;
    Some(TicketDecoded {
        id,
        attrs,
        plan,
        phase,
        cycle,
        opened_at,
        last_event,
        closed_at,
        clocks,
        pauses,
        extras,
    })
}

/// Clock states a record may have for the slice reader (more: postcard's path).
const MAX_CLOCKS: usize = 16;

/// A ticket record as postcard would decode it (then [`super::TicketRecordIn::decoded`]),
/// or `None` to let postcard decode it.
pub(super) fn ticket_record(bytes: &[u8]) -> Option<RecordIn<'_>> {
    let mut r = Reader { b: bytes };
    let version = r.u32()?;
    let policy_id = r.str()?;
    let n = r.seq(1)?;
    let mut overlay_ids = SmallVec::new();
    for _ in 0..n {
        overlay_ids.push(r.str()?);
    }
    let ticket = ticket(&mut r)?;
    Some(RecordIn {
        version,
        plan: PlanKeyRef {
            policy_id,
            overlay_ids,
        },
        ticket,
    })
}

#[cfg(test)]
mod tests {
    use super::super::TicketOut;
    use super::super::TicketRecordIn;
    use super::*;
    use crate::core::clock::ClockState;
    use proptest::prelude::*;

    fn arb_ts() -> impl Strategy<Value = Ts> {
        prop_oneof![any::<i64>(), 0i64..2_000_000_000_000_000_000].prop_map(Ts)
    }

    fn arb_clock() -> impl Strategy<Value = ClockState> {
        let pauses = proptest::option::of(
            (
                proptest::collection::vec((arb_ts(), arb_ts()), 0..3),
                proptest::option::of(arb_ts()),
            )
                .prop_map(|(closed, open)| Box::new(Pauses { closed, open })),
        );
        (
            0u32..4,
            any::<(bool, bool, u8, u8, u16)>(),
            arb_ts(),
            pauses,
        )
            .prop_map(
                |(s, (once_used, breached, warned, escalated, nth), start, pauses)| ClockState {
                    status: status(s).unwrap(),
                    once_used,
                    breached,
                    warned,
                    escalated,
                    nth,
                    start,
                    pauses,
                },
            )
    }

    type Parts = (
        (String, [i32; 4], String, String),
        (u32, u32, u32, Ts, Ts, Option<Ts>),
        Vec<ClockState>,
        Option<(Vec<u64>, Vec<Option<Ts>>)>,
        Vec<u64>,
        (String, Vec<String>),
    );

    fn arb_parts() -> impl Strategy<Value = Parts> {
        (
            (".{0,30}", [0i32..6, 0..6, 0..4, 0..3], ".{0,10}", ".{0,10}"),
            (
                any::<u32>(),
                0u32..6,
                any::<u32>(),
                arb_ts(),
                arb_ts(),
                proptest::option::of(arb_ts()),
            ),
            proptest::collection::vec(arb_clock(), 0..6),
            proptest::option::of((
                proptest::collection::vec(any::<u64>(), 0..3),
                proptest::collection::vec(proptest::option::of(arb_ts()), 0..3),
            )),
            proptest::collection::vec(any::<u64>(), 0..12),
            (
                "[a-z-]{0,12}",
                proptest::collection::vec("[a-z]{0,8}", 0..6),
            ),
        )
    }

    fn encode(p: &Parts) -> Vec<u8> {
        let (
            (id, e, tenant, team),
            (plan, ph, cycle, opened_at, last_event, closed_at),
            clocks,
            extras,
            seen,
            (policy, overlays),
        ) = p;
        let extras = extras.as_ref().map(|(a, c)| {
            Box::new(Extras {
                actions_fired: a.iter().copied().collect(),
                check_since: c.clone().into(),
                pauses: Default::default(),
            })
        });
        let rec = super::super::TicketRecordRef {
            version: 1,
            plan: PlanKeyRef {
                policy_id: policy,
                overlay_ids: overlays.iter().map(|s| s.as_str()).collect(),
            },
            ticket: TicketOut {
                id,
                attrs: AttrsWire {
                    channel: Channel::from_i32(e[0]).unwrap(),
                    category: Category::from_i32(e[1]).unwrap(),
                    urgency: Urgency::from_i32(e[2]).unwrap(),
                    tier: Tier::from_i32(e[3]).unwrap(),
                    tenant,
                    team,
                },
                plan: *plan,
                phase: phase(*ph).unwrap(),
                cycle: *cycle,
                opened_at: *opened_at,
                last_event: *last_event,
                closed_at: *closed_at,
                clocks: super::super::ClocksOut::States(clocks),
                extras: extras.as_deref().map(|x| super::super::ExtrasOut {
                    first_fired: None,
                    extras: Some(x),
                }),
                seen: super::super::SeenOut::Values(seen),
            },
        };
        postcard::to_stdvec(&rec).unwrap()
    }

    /// Whenever the fast reader takes a record, postcard decodes it to the same value.
    fn agrees(bytes: &[u8]) -> Result<(), TestCaseError> {
        if let Some(fast) = ticket_record(bytes) {
            let slow: Result<TicketRecordIn, _> = postcard::from_bytes(bytes);
            prop_assert_eq!(Some(fast), slow.ok().map(TicketRecordIn::decoded));
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn word_varints_equal_the_byte_loop(bytes in proptest::collection::vec(any::<u8>(), 0..24), v in any::<u64>()) {
            let (mut a, mut b) = (Reader { b: &bytes }, Reader { b: &bytes });
            let (x, y) = (a.u64(), b.varint(10, 0x01));
            prop_assert_eq!(x, y);
            if x.is_some() {
                prop_assert_eq!(a.b, b.b);
            }
            let enc = postcard::to_stdvec(&v).unwrap();
            let mut tail = enc.clone();
            tail.extend_from_slice(&bytes);
            let mut r = Reader { b: &tail };
            prop_assert_eq!(r.u64(), Some(v));
            prop_assert_eq!(r.b, &bytes[..]);
        }

        #[test]
        fn fast_decoder_agrees_with_postcard(
            p in arb_parts(),
            cut in any::<prop::sample::Index>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            noise in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let bytes = encode(&p);
            // Every encoded record is taken by the fast reader, equal to postcard's.
            let slow: TicketRecordIn = postcard::from_bytes(&bytes).unwrap();
            prop_assert_eq!(ticket_record(&bytes), Some(slow.decoded()));
            agrees(&bytes[..cut.index(bytes.len() + 1)])?;
            let mut mutated = bytes.clone();
            for (i, b) in flips {
                let i = i.index(mutated.len());
                mutated[i] = b;
            }
            agrees(&mutated)?;
            agrees(&noise)?;
        }
    }
}
