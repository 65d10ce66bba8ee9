//! Business calendars: weekly open hours in an IANA time zone, holidays and special dates.
//! Counted time runs only inside open intervals (docs/sla-semantics.md §2 rule 2).
//!
//! # Contract (what the engine relies on)
//! - [`Calendar::counted`]`(from, to)`: counted (open) time in `[from, to)`; zero when
//!   `to <= from`.
//! - [`Calendar::advance`]`(from, amount)`: the first instant `t >= from` at which
//!   `counted(from, t) == amount`; when that is a closing time (e.g. 24:00) the result is the
//!   closing time itself, not the next opening. `amount <= 0` returns `from`.
//!   `counted(from, advance(from, a)) == a` for every `a >= 0` whose result is not
//!   [`Ts::MAX`], and `advance` is monotonic in `amount`.
//!
//! # Semantics of a business calendar
//! - **Open set.** For every *local* date `D` the calendar picks that date's intervals
//!   (precedence: special date > holiday > weekly hours of `D`'s weekday). Each interval
//!   `[start, end)` is the local wall-clock range `D 00:00 + start .. D 00:00 + end`; the open
//!   set is the union of all these ranges, converted to UTC. Overlapping intervals (within a
//!   day, or a late shift of one day running into the next day's hours) are unioned, never
//!   counted twice.
//! - **Midnight-crossing intervals belong to the day they start on.** `17:00–01:00` on a
//!   Friday is written as `61_200..90_000` in Friday's hours and runs until Saturday 01:00
//!   even when Saturday is a holiday; a holiday or special date governs only the intervals
//!   that *start* on that date.
//! - **Real time.** Counted time is measured in real UTC nanoseconds between the UTC images
//!   of the boundaries, so a DST change neither adds nor removes counted time (00:00–05:00 on
//!   a spring-forward night in New York counts 4 hours, on a fall-back night 6 hours).
//! - **DST boundaries.** A local boundary inside a DST gap maps to the gap's end (the
//!   transition instant, found exactly from the tz database); a boundary inside a fold maps to
//!   its first occurrence (the earlier instant). An interval lying wholly inside a gap is
//!   therefore empty. After a fall-back (01:00–02:00 twice in New York) an interval ending
//!   at 01:30 ends at the first 01:30, while one starting at 01:30 starts at the first 01:30
//!   and so also covers the whole repeated hour.
//! - **Input normalisation** (done once in [`Calendar::business`]): intervals with
//!   `end <= start` are empty and dropped; intervals with `start >= 86_400` are invalid and
//!   dropped (the policy parser is expected to reject them); `end` is capped at 8 days
//!   (`691_200`). Several special entries for the same date are unioned. Holidays and special
//!   dates are local dates in the calendar's zone.
//! - **No open time in the future.** `advance` returns [`Ts::MAX`] ("never") when the
//!   calendar has no weekly hours and the target is not reached by the last special date, or
//!   when it finds more than [`MAX_CLOSED_DAYS`] (about 3 years) of consecutive local days
//!   without open time (e.g. a holiday list closing everything for years). The same
//!   `Ts::MAX` is returned when the result would lie beyond the range of [`Ts`] (year 2262).
//!
//! # Cost
//! Per-weekday intervals are merged and sorted once at construction; holidays and special
//! dates are one sorted table. A call walks the local days it touches (cost linear in the
//! number of local days spanned), converting each interval boundary local→UTC, and stops at
//! the first interval past the answer; it allocates nothing. Conversions go through a small
//! per-thread memo (1 024 slots, keyed by zone and local second; the conversion is a pure
//! function, so this is exact) because nearly every call converts the same few boundaries
//! (today's 08:30 and 24:00, ...); a miss costs a chrono-tz lookup (~40–60 ns). Measured
//! (release, one core, `tests/calendar.rs` `bench_per_call`): a 24 h target on the
//! 08:30–24:00 Asia/Shanghai calendar ~35–60 ns for clock starts near one another in time,
//! ~250–350 ns for starts scattered over 20 years (memo misses); `counted` over a day ~50 ns.
use crate::core::time::{Dur, Ts};
use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeZone};
use chrono_tz::{GapInfo, Tz};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// An open interval of one local day, in seconds since that day's local midnight.
/// `end` may exceed 86 400 (an interval crossing midnight, e.g. 17:00–01:00 is
/// 61 200..90 000); `end == 86 400` is 24:00.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalInterval {
    pub start: u32,
    pub end: u32,
}

/// How many consecutive local days without any open time `advance`/`next_open` walk through
/// before giving up and answering [`Ts::MAX`] (never). About three years.
pub const MAX_CLOSED_DAYS: i64 = 1_100;

const DAY: i64 = 86_400;
const NS: i64 = 1_000_000_000;
/// Longest interval end accepted (seconds after the start day's midnight): 8 days.
const MAX_END: u32 = 8 * 86_400;
/// 1970-01-01 in chrono's days-from-CE numbering.
const EPOCH_DAYS_FROM_CE: i64 = 719_163;

#[derive(Clone, Debug)]
pub struct Calendar {
    pub name: Arc<str>,
    inner: Option<Arc<Business>>,
}

struct Business {
    /// Unique per calendar built (never reused, unlike an address): the key of its entry
    /// in [`LAST_OPEN`]. Not part of its `Debug` form, which two equal calendars share.
    id: u64,
    tz: Tz,
    /// Merged (disjoint, sorted, non-touching) intervals per weekday, `[0]` = Monday.
    weekly: [Box<[LocalInterval]>; 7],
    /// Dates overriding the weekly hours, sorted by local day number (days since
    /// 1970-01-01): special dates with their merged hours, holidays with no hours.
    overrides: Box<[(i64, Box<[LocalInterval]>)]>,
    /// How many earlier days can have intervals reaching into a given day
    /// (`ceil(max end / 86 400) - 1`).
    lookback: i64,
    /// When no weekly hours exist: the last local day that has any interval (`None` when
    /// nothing at all is open). Unused when `has_weekly`.
    last_open_day: Option<i64>,
    has_weekly: bool,
    /// The largest UTC offset seen in the zone in 1990–2040 (a guess for the local day of
    /// an instant; correctness does not depend on it).
    max_offset: i64,
}

impl std::fmt::Debug for Business {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Business {
            id: _,
            tz,
            weekly,
            overrides,
            lookback,
            last_open_day,
            has_weekly,
            max_offset,
        } = self;
        f.debug_struct("Business")
            .field("tz", tz)
            .field("weekly", weekly)
            .field("overrides", overrides)
            .field("lookback", lookback)
            .field("last_open_day", last_open_day)
            .field("has_weekly", has_weekly)
            .field("max_offset", max_offset)
            .finish()
    }
}

/// Slots of the per-thread memo of local→UTC conversions (a power of two).
const MEMO_SLOTS: usize = 1024;
const MEMO_EMPTY: u64 = u64::MAX;

thread_local! {
    /// Direct-mapped memo of `Business::to_utc`, keyed by (zone, local second). The function
    /// is pure, so the memo is exact; it only saves the chrono-tz lookups for the few
    /// boundaries (today's 08:30, 24:00, ...) that nearly every call converts again.
    static MEMO: [Cell<(u64, i64)>; MEMO_SLOTS] =
        const { [const { Cell::new((MEMO_EMPTY, 0)) }; MEMO_SLOTS] };
}

/// Ids of business calendars ([`Business::id`]); 0 marks an empty [`LAST_OPEN`] slot.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Slots of [`LAST_OPEN`] (a power of two), indexed by calendar id.
const LAST_OPEN_SLOTS: usize = 8;

thread_local! {
    /// Per calendar (by id, direct-mapped), the UTC image `[s, e)` (nanoseconds) of the last
    /// interval an answer fell in. Every instant of it is open, so a call whose range lies
    /// inside it is answered without walking days: `advance(from, a)` with `s <= from` and
    /// `from + a <= e` is `from + a`, `counted(from, to)` with `s <= from < to <= e` is
    /// `to - from`, `next_open(t)` with `s <= t < e` is `t`. A ticket's calls (a clock's
    /// due times, its counted time so far) mostly fall in one open interval; walking it
    /// cost ~120 instructions per call, ~420 per event of the engine bench (issue 14).
    static LAST_OPEN: [Cell<(u64, i64, i64)>; LAST_OPEN_SLOTS] =
        const { [const { Cell::new((0, 0, 0)) }; LAST_OPEN_SLOTS] };
}

/// The memo key of local second `local` in zone `tz`: 48 bits of local time (far more than
/// the range of `Ts`), the zone above them.
#[inline]
fn memo_key(tz: Tz, local: i64) -> u64 {
    ((tz as u64) << 48) | (local as u64 & ((1 << 48) - 1))
}

#[inline]
fn memo_slot(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - MEMO_SLOTS.trailing_zeros())) as usize
}

impl PartialEq for Calendar {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

/// Sorts, drops invalid/empty intervals and unions overlapping or touching ones.
fn normalize(ivs: &[LocalInterval]) -> Box<[LocalInterval]> {
    let mut v: Vec<LocalInterval> = ivs
        .iter()
        .filter(|iv| iv.start < DAY as u32)
        .map(|iv| LocalInterval {
            start: iv.start,
            end: iv.end.min(MAX_END),
        })
        .filter(|iv| iv.end > iv.start)
        .collect();
    v.sort_unstable_by_key(|iv| (iv.start, iv.end));
    let mut out: Vec<LocalInterval> = Vec::with_capacity(v.len());
    for iv in v {
        match out.last_mut() {
            Some(last) if iv.start <= last.end => last.end = last.end.max(iv.end),
            _ => out.push(iv),
        }
    }
    out.into_boxed_slice()
}

fn day_number(d: NaiveDate) -> i64 {
    d.num_days_from_ce() as i64 - EPOCH_DAYS_FROM_CE
}

/// Whole UTC seconds to nanoseconds, saturating at the ends of [`Ts`].
fn secs_to_ns(s: i64) -> i64 {
    s.saturating_mul(NS)
}

impl Business {
    /// The open interval `[s, e)` last recorded for this calendar in [`LAST_OPEN`].
    #[inline]
    fn last_open(&self) -> Option<(i64, i64)> {
        LAST_OPEN.with(|slots| {
            let (id, s, e) = slots[self.id as usize % LAST_OPEN_SLOTS].get();
            (id == self.id).then_some((s, e))
        })
    }

    /// Records `[s, e)`, the UTC image of an open interval, in [`LAST_OPEN`] (not an empty
    /// one, nor one whose ends saturated at the range of [`Ts`]).
    #[inline]
    fn record_open(&self, s: i64, e: i64) {
        if s < e && s > i64::MIN && e < i64::MAX {
            LAST_OPEN.with(|slots| slots[self.id as usize % LAST_OPEN_SLOTS].set((self.id, s, e)));
        }
    }

    /// The intervals of local day `day` (days since 1970-01-01), after precedence.
    #[inline]
    fn day_intervals(&self, day: i64) -> &[LocalInterval] {
        if !self.overrides.is_empty() {
            if let Ok(i) = self.overrides.binary_search_by_key(&day, |(d, _)| *d) {
                return &self.overrides[i].1;
            }
        }
        &self.weekly[(day + 3).rem_euclid(7) as usize]
    }

    /// Whether local day `day` lies past every open interval forever.
    #[inline]
    fn past_last_open(&self, day: i64) -> bool {
        !self.has_weekly && self.last_open_day.is_none_or(|last| day > last)
    }

    fn offset_secs(o: &<Tz as TimeZone>::Offset) -> i64 {
        o.fix().local_minus_utc() as i64
    }

    /// The UTC offset (seconds) at UTC second `utc`.
    fn offset_at(tz: Tz, utc: i64) -> i64 {
        DateTime::from_timestamp(utc, 0)
            .map(|t| Self::offset_secs(&tz.offset_from_utc_datetime(&t.naive_utc())))
            .unwrap_or(0)
    }

    /// The UTC second of local wall-clock second `local` (seconds since 1970-01-01 00:00 local):
    /// a time in a DST gap maps to the gap's end, a time in a fold to its first occurrence.
    #[inline]
    fn to_utc(&self, local: i64) -> i64 {
        let key = memo_key(self.tz, local);
        let slot = memo_slot(key);
        MEMO.with(|memo| {
            let (k, utc) = memo[slot].get();
            if k == key {
                return utc;
            }
            let utc = self.to_utc_uncached(local);
            memo[slot].set((key, utc));
            utc
        })
    }

    fn to_utc_uncached(&self, local: i64) -> i64 {
        let Some(ndt) = DateTime::from_timestamp(local, 0).map(|t| t.naive_utc()) else {
            return local; // beyond chrono's range (far outside Ts): no zone applies
        };
        match self.tz.offset_from_local_datetime(&ndt) {
            LocalResult::Single(o) => local - Self::offset_secs(&o),
            LocalResult::Ambiguous(a, b) => {
                local - Self::offset_secs(&a).max(Self::offset_secs(&b))
            }
            LocalResult::None => self.gap_end(local, &ndt),
        }
    }

    /// The transition instant ending the DST gap that contains local second `local`.
    #[cold]
    fn gap_end(&self, local: i64, ndt: &NaiveDateTime) -> i64 {
        if let Some(end) = GapInfo::new(ndt, &self.tz).and_then(|g| g.end) {
            return end.timestamp();
        }
        // Fallback (not reached with chrono-tz's tables): the first UTC second whose local
        // time is past `local`, by binary search on the UTC offset. Offsets are below a
        // day, so the transition lies within a day of `local`.
        let (mut lo, mut hi) = (local - DAY, local + DAY); // p(lo) false, p(hi) true
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if mid + Self::offset_at(self.tz, mid) > local {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    }

    /// UTC nanoseconds of the two ends of interval `iv` of the local day starting at local
    /// second `base`.
    #[inline]
    fn interval_ns(&self, base: i64, iv: LocalInterval) -> (i64, i64) {
        (
            secs_to_ns(self.to_utc(base + iv.start as i64)),
            secs_to_ns(self.to_utc(base + iv.end as i64)),
        )
    }

    /// The first local day whose intervals can reach UTC nanosecond `t`: `d - lookback` for
    /// a day `d` whose local midnight maps to `t` or earlier (intervals of earlier days end by
    /// that midnight). `d` is the local day of `t` when the offset guess is right.
    fn first_day(&self, t: i64) -> i64 {
        let mut d = (t.div_euclid(NS) + self.max_offset).div_euclid(DAY);
        while secs_to_ns(self.to_utc(d * DAY)) > t {
            d -= 1;
        }
        d - self.lookback
    }

    fn counted(&self, from: i64, to: i64) -> i64 {
        if let Some((s, e)) = self.last_open() {
            if s <= from && to <= e {
                return to - from;
            }
        }
        // Every interval of a day after `last_day` starts after `to` (offsets are < 1 day).
        let last_day = (to.div_euclid(NS) + 1 + 2 * DAY).div_euclid(DAY);
        let mut covered = from; // everything before `covered` is already accounted for
        let mut total: i64 = 0;
        let mut day = self.first_day(from);
        'days: while day <= last_day && !self.past_last_open(day) {
            let base = day * DAY;
            for &iv in self.day_intervals(day) {
                let s = secs_to_ns(self.to_utc(base + iv.start as i64));
                if s >= to {
                    break 'days; // intervals start in order: nothing later counts
                }
                let e = secs_to_ns(self.to_utc(base + iv.end as i64));
                if e >= to {
                    self.record_open(s, e);
                }
                if e > covered {
                    let lo = s.max(covered);
                    let hi = e.min(to);
                    if hi > lo {
                        total += hi - lo;
                    }
                    covered = e;
                }
            }
            day += 1;
        }
        total
    }

    fn advance(&self, from: i64, amount: i64) -> i64 {
        if let Some((s, e)) = self.last_open() {
            if s <= from && from < e && amount <= e - from {
                return from + amount;
            }
        }
        let mut remaining = amount;
        let mut covered = from;
        let mut day = self.first_day(from);
        let mut closed_days: i64 = 0;
        loop {
            if self.past_last_open(day) {
                return i64::MAX;
            }
            let base = day * DAY;
            let mut open_today = false;
            for &iv in self.day_intervals(day) {
                let (s, e) = self.interval_ns(base, iv);
                if e <= covered {
                    continue;
                }
                if s == i64::MAX {
                    return i64::MAX; // beyond the range of Ts
                }
                let lo = s.max(covered);
                let avail = e - lo;
                if remaining <= avail {
                    self.record_open(s, e);
                    return lo.saturating_add(remaining);
                }
                remaining -= avail;
                covered = e;
                open_today = true;
            }
            if open_today {
                closed_days = 0;
            } else {
                closed_days += 1;
                if closed_days > MAX_CLOSED_DAYS {
                    return i64::MAX;
                }
            }
            day += 1;
        }
    }

    /// The first open instant `>= t`, `i64::MAX` if none (see `advance` for the bound).
    fn next_open(&self, t: i64) -> i64 {
        if let Some((s, e)) = self.last_open() {
            if s <= t && t < e {
                return t;
            }
        }
        let mut day = self.first_day(t);
        let mut closed_days: i64 = 0;
        loop {
            if self.past_last_open(day) {
                return i64::MAX;
            }
            let base = day * DAY;
            let mut any = false;
            for &iv in self.day_intervals(day) {
                let (s, e) = self.interval_ns(base, iv);
                if e > t && e > s {
                    self.record_open(s, e);
                    return s.max(t);
                }
                any |= e > s;
            }
            if any {
                closed_days = 0;
            } else {
                closed_days += 1;
                if closed_days > MAX_CLOSED_DAYS {
                    return i64::MAX;
                }
            }
            day += 1;
        }
    }
}

impl Calendar {
    /// The `24x7` calendar: every instant counts.
    pub fn always_open(name: &str) -> Calendar {
        Calendar {
            name: name.into(),
            inner: None,
        }
    }

    /// `weekly[0]` is Monday. Precedence per local date: special date > holiday > weekly
    /// hours; a holiday or special date governs the intervals that start on that date (see the
    /// module documentation for the full semantics and input normalisation).
    pub fn business(
        name: &str,
        tz: Tz,
        weekly: [Vec<LocalInterval>; 7],
        holidays: Vec<NaiveDate>,
        special: Vec<(NaiveDate, Vec<LocalInterval>)>,
    ) -> Calendar {
        let weekly: [Box<[LocalInterval]>; 7] = std::array::from_fn(|i| normalize(&weekly[i]));
        let has_weekly = weekly.iter().any(|w| !w.is_empty());

        // Special dates (unioned per date) win over holidays.
        let mut specials: Vec<(i64, Vec<LocalInterval>)> = special
            .into_iter()
            .map(|(d, ivs)| (day_number(d), ivs))
            .collect();
        specials.sort_by_key(|(d, _)| *d);
        let mut overrides: Vec<(i64, Box<[LocalInterval]>)> = Vec::new();
        let mut i = 0;
        while i < specials.len() {
            let d = specials[i].0;
            let mut all = Vec::new();
            while i < specials.len() && specials[i].0 == d {
                all.extend_from_slice(&specials[i].1);
                i += 1;
            }
            overrides.push((d, normalize(&all)));
        }
        let special_days: Vec<i64> = overrides.iter().map(|(d, _)| *d).collect();
        for h in holidays {
            let d = day_number(h);
            if special_days.binary_search(&d).is_err() {
                overrides.push((d, Box::new([])));
            }
        }
        overrides.sort_by_key(|(d, _)| *d);
        overrides.dedup_by_key(|(d, _)| *d);

        let max_end = weekly
            .iter()
            .chain(overrides.iter().map(|(_, ivs)| ivs))
            .flat_map(|ivs| ivs.iter().map(|iv| iv.end as i64))
            .max()
            .unwrap_or(DAY);
        let lookback = ((max_end + DAY - 1) / DAY - 1).max(0);
        let last_open_day = overrides
            .iter()
            .rev()
            .find(|(_, ivs)| !ivs.is_empty())
            .map(|(d, _)| *d);

        // Quarterly samples 1990–2040; only a hint for `first_day`.
        let max_offset = (0..200)
            .map(|q| Business::offset_at(tz, 631_152_000 + q * 7_889_238))
            .max()
            .unwrap_or(0);

        Calendar {
            name: name.into(),
            inner: Some(Arc::new(Business {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                max_offset,
                tz,
                weekly,
                overrides: overrides.into_boxed_slice(),
                lookback,
                last_open_day,
                has_weekly,
            })),
        }
    }

    pub fn is_always_open(&self) -> bool {
        self.inner.is_none()
    }

    /// The calendar's time zone (`None` for `24x7`).
    pub fn tz(&self) -> Option<Tz> {
        self.inner.as_ref().map(|b| b.tz)
    }

    /// Counted (open) time in `[from, to)`; zero when `to <= from`.
    pub fn counted(&self, from: Ts, to: Ts) -> Dur {
        if to <= from {
            return Dur::ZERO;
        }
        match &self.inner {
            None => Dur(to.0.saturating_sub(from.0)),
            Some(b) => Dur(b.counted(from.0, to.0)),
        }
    }

    /// The first instant `t >= from` with `counted(from, t) == amount` (a closing time when
    /// the amount is reached exactly there). `amount <= 0` returns `from`; [`Ts::MAX`] means
    /// never (no open time ahead, see the module documentation).
    pub fn advance(&self, from: Ts, amount: Dur) -> Ts {
        if amount.0 <= 0 {
            return from;
        }
        match &self.inner {
            None => from.saturating_add(amount),
            Some(b) => Ts(b.advance(from.0, amount.0)),
        }
    }

    /// Whether time counts at instant `t` (open intervals are closed at the start, open at the
    /// end: 08:30 is open, 24:00 is not).
    pub fn is_open(&self, t: Ts) -> bool {
        self.next_open(t) == t
    }

    /// The first instant `>= t` at which time counts (`t` itself when open); [`Ts::MAX`] when
    /// the calendar never opens again.
    pub fn next_open(&self, t: Ts) -> Ts {
        match &self.inner {
            None => t,
            Some(b) => Ts(b.next_open(t.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(sh: u32, sm: u32, eh: u32, em: u32) -> LocalInterval {
        LocalInterval {
            start: sh * 3600 + sm * 60,
            end: eh * 3600 + em * 60,
        }
    }

    fn every_day(ivs: &[LocalInterval]) -> [Vec<LocalInterval>; 7] {
        std::array::from_fn(|_| ivs.to_vec())
    }

    fn local(tz: Tz, s: &str) -> Ts {
        let ndt = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
        Ts::from_chrono(&tz.from_local_datetime(&ndt).earliest().unwrap())
    }

    #[test]
    fn after_sales_e3() {
        let sh = chrono_tz::Asia::Shanghai;
        let cal = Calendar::business(
            "after-sales",
            sh,
            every_day(&[iv(8, 30, 24, 0)]),
            vec![],
            vec![],
        );
        let start = local(sh, "2024-05-01 23:58:00");
        assert_eq!(
            cal.advance(start, Dur::from_secs(300)),
            local(sh, "2024-05-02 08:33:00")
        );
        assert_eq!(
            cal.advance(start, Dur::from_secs(240)),
            local(sh, "2024-05-02 08:32:00")
        );
        assert_eq!(
            cal.advance(start, Dur::from_secs(120)),
            local(sh, "2024-05-02 00:00:00")
        );
        assert_eq!(
            cal.counted(start, local(sh, "2024-05-02 08:33:00")),
            Dur::from_secs(300)
        );
    }

    #[test]
    fn calendar_is_shareable() {
        fn check<T: Clone + Send + Sync + std::fmt::Debug + 'static>() {}
        check::<Calendar>();
    }

    #[test]
    fn normalization_merges_and_drops() {
        let n = normalize(&[
            iv(17, 0, 24, 0),
            iv(8, 30, 17, 30),
            iv(9, 0, 9, 0),
            LocalInterval {
                start: 90_000,
                end: 95_000,
            },
        ]);
        assert_eq!(&*n, &[iv(8, 30, 24, 0)]);
    }
}
