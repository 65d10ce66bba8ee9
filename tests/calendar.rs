//! Business-calendar arithmetic (docs/sla-semantics.md §2 rule 2): worked examples, DST, midnight
//! wraps, overlaps, holidays, special dates, closed calendars and property tests.
use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use proptest::prelude::*;
use slawatch::core::calendar::*;
use slawatch::core::time::*;

fn hm(h: u32, m: u32) -> u32 {
    h * 3600 + m * 60
}

fn iv(sh: u32, sm: u32, eh: u32, em: u32) -> LocalInterval {
    LocalInterval {
        start: hm(sh, sm),
        end: hm(eh, em),
    }
}

fn every_day(ivs: &[LocalInterval]) -> [Vec<LocalInterval>; 7] {
    std::array::from_fn(|_| ivs.to_vec())
}

fn weekdays(ivs: &[LocalInterval]) -> [Vec<LocalInterval>; 7] {
    std::array::from_fn(|i| if i < 5 { ivs.to_vec() } else { vec![] })
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// A local wall-clock time that exists exactly once (asserted).
fn lt(tz: Tz, s: &str) -> Ts {
    let ndt = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
    Ts::from_chrono(&tz.from_local_datetime(&ndt).single().unwrap())
}

fn utc(s: &str) -> Ts {
    Ts::parse_rfc3339(s).unwrap()
}

fn h(x: f64) -> Dur {
    Dur((x * 3600.0 * 1e9).round() as i64)
}

fn mins(m: i64) -> Dur {
    Dur::from_secs(m * 60)
}

const SH: Tz = chrono_tz::Asia::Shanghai;
const NY: Tz = chrono_tz::America::New_York;
const BER: Tz = chrono_tz::Europe::Berlin;

fn after_sales() -> Calendar {
    Calendar::business(
        "after-sales",
        SH,
        every_day(&[iv(8, 30, 24, 0)]),
        vec![],
        vec![],
    )
}

// ---------------------------------------------------------------- worked examples

#[test]
fn e3_two_minutes_before_midnight_then_from_0830() {
    let cal = after_sales();
    let start = lt(SH, "2024-06-03 23:58:00");
    assert_eq!(cal.advance(start, mins(5)), lt(SH, "2024-06-04 08:33:00"));
    assert_eq!(cal.advance(start, mins(4)), lt(SH, "2024-06-04 08:32:00"));
    // Exactly at the closing time: 24:00, not the next opening at 08:30.
    assert_eq!(cal.advance(start, mins(2)), lt(SH, "2024-06-04 00:00:00"));
    assert_eq!(cal.advance(start, mins(1)), lt(SH, "2024-06-03 23:59:00"));
    assert_eq!(cal.advance(start, Dur::ZERO), start);
    assert_eq!(cal.counted(start, lt(SH, "2024-06-04 08:33:00")), mins(5));
    assert_eq!(cal.counted(start, lt(SH, "2024-06-04 08:30:00")), mins(2));
    // Warning at 0.8 of 5 min = 4 min.
    assert_eq!(
        cal.advance(start, mins(5).mul_f64(0.8)),
        lt(SH, "2024-06-04 08:32:00")
    );
}

#[test]
fn e5_24h_target_and_pause() {
    let cal = after_sales();
    let opened = utc("2024-06-03T10:00:00Z"); // 18:00 Shanghai
    let deadline = cal.advance(opened, h(24.0));
    assert_eq!(deadline, utc("2024-06-05T03:00:00Z"));
    assert_eq!(cal.counted(opened, deadline), h(24.0));
    // Paused 11:00–13:00 UTC (19:00–21:00 Shanghai, open time): the deadline moves 2 h.
    let before_pause = cal.counted(opened, utc("2024-06-03T11:00:00Z"));
    assert_eq!(before_pause, h(1.0));
    let resumed = utc("2024-06-03T13:00:00Z");
    assert_eq!(
        cal.advance(resumed, Dur(h(24.0).0 - before_pause.0)),
        utc("2024-06-05T05:00:00Z")
    );
}

#[test]
fn always_open_is_plain_arithmetic() {
    let cal = Calendar::always_open("24x7");
    assert!(cal.is_always_open());
    let t = utc("2024-03-10T06:30:00Z");
    assert_eq!(cal.advance(t, h(5.0)), utc("2024-03-10T11:30:00Z"));
    assert_eq!(cal.counted(t, utc("2024-03-10T11:30:00Z")), h(5.0));
    assert_eq!(cal.counted(t, t), Dur::ZERO);
    assert_eq!(cal.counted(t, Ts(t.0 - 1)), Dur::ZERO);
    assert!(cal.is_open(t));
    assert_eq!(cal.next_open(t), t);
}

// ---------------------------------------------------------------- DST

#[test]
fn new_york_spring_forward_counts_real_time() {
    // 2024-03-10 02:00 EST -> 03:00 EDT at 07:00 UTC.
    let cal = Calendar::business("ny", NY, every_day(&[iv(0, 0, 5, 0)]), vec![], vec![]);
    let midnight = lt(NY, "2024-03-10 00:00:00");
    assert_eq!(midnight, utc("2024-03-10T05:00:00Z"));
    let close = lt(NY, "2024-03-10 05:00:00");
    assert_eq!(close, utc("2024-03-10T09:00:00Z"));
    assert_eq!(cal.counted(midnight, close), h(4.0));
    assert_eq!(cal.counted(midnight, utc("2024-03-11T00:00:00Z")), h(4.0));
    assert_eq!(cal.advance(midnight, h(4.0)), close);
    // 5 h goes into the next day: 1 h from 00:00 EDT on 03-11.
    assert_eq!(cal.advance(midnight, h(5.0)), lt(NY, "2024-03-11 01:00:00"));
    // A normal day counts 5 h.
    assert_eq!(
        cal.counted(lt(NY, "2024-03-09 00:00:00"), lt(NY, "2024-03-10 00:00:00")),
        h(5.0)
    );
}

#[test]
fn new_york_boundary_in_gap_maps_to_gap_end() {
    let gap_end = utc("2024-03-10T07:00:00Z"); // 03:00 EDT
                                               // Opening at 02:30 (does not exist on 03-10): opens at the transition.
    let cal = Calendar::business("ny", NY, every_day(&[iv(2, 30, 4, 0)]), vec![], vec![]);
    let day = lt(NY, "2024-03-10 00:00:00");
    assert_eq!(cal.next_open(day), gap_end);
    assert!(!cal.is_open(Ts(gap_end.0 - 1)));
    assert!(cal.is_open(gap_end));
    assert_eq!(cal.counted(day, lt(NY, "2024-03-10 12:00:00")), h(1.0));
    assert_eq!(cal.advance(day, mins(30)), lt(NY, "2024-03-10 03:30:00"));
    // Closing at 02:30 (in the gap): closes at the transition.
    let cal = Calendar::business("ny", NY, every_day(&[iv(1, 0, 2, 30)]), vec![], vec![]);
    assert_eq!(cal.counted(day, lt(NY, "2024-03-10 12:00:00")), h(1.0));
    assert_eq!(cal.advance(day, h(1.0)), gap_end);
    // An interval wholly inside the gap is empty that day.
    let cal = Calendar::business("ny", NY, every_day(&[iv(2, 10, 2, 50)]), vec![], vec![]);
    assert_eq!(cal.counted(day, lt(NY, "2024-03-11 00:00:00")), Dur::ZERO);
    assert_eq!(cal.advance(day, mins(10)), lt(NY, "2024-03-11 02:20:00"));
}

#[test]
fn new_york_fall_back_counts_real_time_and_takes_first_occurrence() {
    // 2024-11-03 02:00 EDT -> 01:00 EST at 06:00 UTC; 01:xx happens twice.
    let day = lt(NY, "2024-11-03 00:00:00");
    assert_eq!(day, utc("2024-11-03T04:00:00Z"));
    let cal = Calendar::business("ny", NY, every_day(&[iv(0, 0, 5, 0)]), vec![], vec![]);
    assert_eq!(cal.counted(day, lt(NY, "2024-11-04 00:00:00")), h(6.0));
    assert_eq!(cal.advance(day, h(6.0)), utc("2024-11-03T10:00:00Z"));
    // Opening at 01:30: the first occurrence (EDT, 05:30 UTC).
    let cal = Calendar::business("ny", NY, every_day(&[iv(1, 30, 3, 0)]), vec![], vec![]);
    assert_eq!(cal.next_open(day), utc("2024-11-03T05:30:00Z"));
    assert_eq!(cal.counted(day, lt(NY, "2024-11-04 00:00:00")), h(2.5));
    assert!(cal.is_open(utc("2024-11-03T06:10:00Z"))); // 01:10 EST, second pass
                                                       // Closing at 01:30: the first occurrence too.
    let cal = Calendar::business("ny", NY, every_day(&[iv(0, 0, 1, 30)]), vec![], vec![]);
    assert_eq!(cal.counted(day, lt(NY, "2024-11-04 00:00:00")), h(1.5));
    assert_eq!(cal.advance(day, h(1.5)), utc("2024-11-03T05:30:00Z"));
    assert!(!cal.is_open(utc("2024-11-03T06:10:00Z")));
}

#[test]
fn berlin_transitions() {
    // 2024-03-31 02:00 CET -> 03:00 CEST at 01:00 UTC.
    let cal = Calendar::business("ber", BER, every_day(&[iv(1, 0, 4, 0)]), vec![], vec![]);
    let spring = lt(BER, "2024-03-31 00:00:00");
    assert_eq!(cal.counted(spring, lt(BER, "2024-04-01 00:00:00")), h(2.0));
    assert_eq!(cal.advance(spring, h(2.0)), utc("2024-03-31T02:00:00Z"));
    let cal = Calendar::business("ber", BER, every_day(&[iv(2, 30, 4, 0)]), vec![], vec![]);
    assert_eq!(cal.next_open(spring), utc("2024-03-31T01:00:00Z"));
    assert_eq!(cal.counted(spring, lt(BER, "2024-04-01 00:00:00")), h(1.0));
    // 2024-10-27 03:00 CEST -> 02:00 CET at 01:00 UTC; 02:xx happens twice.
    let cal = Calendar::business("ber", BER, every_day(&[iv(1, 0, 4, 0)]), vec![], vec![]);
    let autumn = lt(BER, "2024-10-27 00:00:00");
    assert_eq!(cal.counted(autumn, lt(BER, "2024-10-28 00:00:00")), h(4.0));
    let cal = Calendar::business("ber", BER, every_day(&[iv(2, 30, 4, 0)]), vec![], vec![]);
    assert_eq!(cal.next_open(autumn), utc("2024-10-27T00:30:00Z"));
    assert_eq!(cal.counted(autumn, lt(BER, "2024-10-28 00:00:00")), h(2.5));
    assert_eq!(cal.advance(autumn, h(2.5)), utc("2024-10-27T03:00:00Z"));
}

#[test]
fn night_shift_over_spring_forward() {
    // 22:00–06:00 on Saturday 2024-03-09 in New York spans the 02:00 gap: 7 real hours.
    let mut weekly: [Vec<LocalInterval>; 7] = Default::default();
    weekly[5] = vec![iv(22, 0, 30, 0)];
    let cal = Calendar::business("ny-night", NY, weekly, vec![], vec![]);
    let start = lt(NY, "2024-03-09 22:00:00");
    assert_eq!(cal.counted(start, lt(NY, "2024-03-10 12:00:00")), h(7.0));
    assert_eq!(cal.advance(start, h(7.0)), lt(NY, "2024-03-10 06:00:00"));
}

// ---------------------------------------------------------------- wraps and overlaps

#[test]
fn midnight_wrap_belongs_to_start_day() {
    // Mon–Fri 17:00–01:00 (UTC zone for readability). 2024-06-07 is a Friday.
    let cal = Calendar::business(
        "late",
        chrono_tz::UTC,
        weekdays(&[iv(17, 0, 25, 0)]),
        vec![],
        vec![],
    );
    let fri_23 = utc("2024-06-07T23:00:00Z");
    assert!(cal.is_open(fri_23));
    assert!(cal.is_open(utc("2024-06-08T00:30:00Z"))); // Saturday 00:30, Friday's shift
    assert!(!cal.is_open(utc("2024-06-08T01:00:00Z")));
    assert!(!cal.is_open(utc("2024-06-10T00:30:00Z"))); // Monday 00:30: Sunday had none
    assert_eq!(cal.advance(fri_23, h(2.0)), utc("2024-06-08T01:00:00Z"));
    assert_eq!(cal.advance(fri_23, h(3.0)), utc("2024-06-10T18:00:00Z"));
    assert_eq!(
        cal.counted(utc("2024-06-03T00:00:00Z"), utc("2024-06-10T00:00:00Z")),
        h(40.0)
    );
    // A holiday on Saturday does not cut Friday's shift; a holiday on Friday removes it
    // (Thursday's shift still runs to Friday 01:00).
    let sat_holiday = Calendar::business(
        "late",
        chrono_tz::UTC,
        weekdays(&[iv(17, 0, 25, 0)]),
        vec![date("2024-06-08")],
        vec![],
    );
    assert_eq!(
        sat_holiday.advance(fri_23, h(2.0)),
        utc("2024-06-08T01:00:00Z")
    );
    let fri_holiday = Calendar::business(
        "late",
        chrono_tz::UTC,
        weekdays(&[iv(17, 0, 25, 0)]),
        vec![date("2024-06-07")],
        vec![],
    );
    assert!(fri_holiday.is_open(utc("2024-06-07T00:30:00Z")));
    assert!(!fri_holiday.is_open(fri_23));
    assert_eq!(
        fri_holiday.advance(utc("2024-06-07T00:00:00Z"), h(2.0)),
        utc("2024-06-10T18:00:00Z")
    );
}

#[test]
fn split_shift_overlap_is_unioned() {
    // Day shift 08:30–17:30 and night shift 17:00–24:00 overlap 17:00–17:30: 15.5 h a day.
    let cal = Calendar::business(
        "after-sales-shifts",
        SH,
        every_day(&[iv(8, 30, 17, 30), iv(17, 0, 24, 0)]),
        vec![],
        vec![],
    );
    let d0 = lt(SH, "2024-06-03 00:00:00");
    assert_eq!(cal.counted(d0, lt(SH, "2024-06-04 00:00:00")), h(15.5));
    assert_eq!(
        cal.counted(d0, lt(SH, "2024-06-10 00:00:00")),
        h(7.0 * 15.5)
    );
    assert_eq!(
        cal.counted(lt(SH, "2024-06-03 17:00:00"), lt(SH, "2024-06-03 17:30:00")),
        h(0.5)
    );
    assert_eq!(
        cal.advance(lt(SH, "2024-06-03 17:00:00"), h(1.0)),
        lt(SH, "2024-06-03 18:00:00")
    );
    // Same deadlines as the merged after-sales calendar.
    let merged = after_sales();
    let start = lt(SH, "2024-06-03 23:58:00");
    for m in [1, 2, 3, 5, 600, 930, 931, 2000] {
        assert_eq!(
            cal.advance(start, mins(m)),
            merged.advance(start, mins(m)),
            "{m} min"
        );
    }
}

#[test]
fn overlap_across_days_is_unioned() {
    // Friday 17:00–01:00 and Saturday 00:00–02:00 overlap Saturday 00:00–01:00.
    let mut weekly: [Vec<LocalInterval>; 7] = Default::default();
    weekly[4] = vec![iv(17, 0, 25, 0)];
    weekly[5] = vec![iv(0, 0, 2, 0)];
    let cal = Calendar::business("x", chrono_tz::UTC, weekly, vec![], vec![]);
    let fri = utc("2024-06-07T17:00:00Z");
    assert_eq!(cal.counted(fri, utc("2024-06-08T12:00:00Z")), h(9.0));
    assert_eq!(cal.advance(fri, h(9.0)), utc("2024-06-08T02:00:00Z"));
    assert_eq!(cal.advance(fri, h(8.5)), utc("2024-06-08T01:30:00Z"));
    assert_eq!(
        cal.counted(utc("2024-06-08T00:30:00Z"), utc("2024-06-08T01:30:00Z")),
        h(1.0)
    );
    // Overlap fully contained: Friday 17:00–03:00 covers Saturday 00:00–02:00.
    let mut weekly: [Vec<LocalInterval>; 7] = Default::default();
    weekly[4] = vec![iv(17, 0, 27, 0)];
    weekly[5] = vec![iv(0, 0, 2, 0)];
    let cal = Calendar::business("x", chrono_tz::UTC, weekly, vec![], vec![]);
    assert_eq!(cal.counted(fri, utc("2024-06-08T12:00:00Z")), h(10.0));
    assert_eq!(cal.advance(fri, h(10.0)), utc("2024-06-08T03:00:00Z"));
}

// ---------------------------------------------------------------- holidays, special dates

/// China 2024 style: Mon–Fri 09:00–18:00, Labour Day holidays 05-01..05-05, adjusted
/// working days Sunday 04-28 and Saturday 05-11.
fn china_office() -> Calendar {
    Calendar::business(
        "cn-office",
        SH,
        weekdays(&[iv(9, 0, 18, 0)]),
        [
            "2024-05-01",
            "2024-05-02",
            "2024-05-03",
            "2024-05-04",
            "2024-05-05",
        ]
        .into_iter()
        .map(date)
        .collect(),
        vec![
            (date("2024-04-28"), vec![iv(9, 0, 18, 0)]),
            (date("2024-05-11"), vec![iv(9, 0, 18, 0)]),
        ],
    )
}

#[test]
fn adjusted_working_weekend_days() {
    let cal = china_office();
    // Friday 05-10 17:00 + 2 h: 1 h Friday, 1 h on the working Saturday.
    assert_eq!(
        cal.advance(lt(SH, "2024-05-10 17:00:00"), h(2.0)),
        lt(SH, "2024-05-11 10:00:00")
    );
    // Saturday 04-27 (a normal weekend day) is closed, Sunday 04-28 works.
    assert_eq!(
        cal.advance(lt(SH, "2024-04-27 10:00:00"), h(1.0)),
        lt(SH, "2024-04-28 10:00:00")
    );
    assert_eq!(
        cal.counted(lt(SH, "2024-04-27 00:00:00"), lt(SH, "2024-04-29 00:00:00")),
        h(9.0)
    );
}

#[test]
fn multi_day_closure() {
    let cal = china_office();
    // Tuesday 04-30 17:00 + 2 h: 1 h, then closed 05-01..05-05, Monday 05-06 10:00.
    assert_eq!(
        cal.advance(lt(SH, "2024-04-30 17:00:00"), h(2.0)),
        lt(SH, "2024-05-06 10:00:00")
    );
    // Exactly at closing: stays at Tuesday 18:00.
    assert_eq!(
        cal.advance(lt(SH, "2024-04-30 17:00:00"), h(1.0)),
        lt(SH, "2024-04-30 18:00:00")
    );
    assert_eq!(
        cal.counted(lt(SH, "2024-04-30 00:00:00"), lt(SH, "2024-05-07 00:00:00")),
        h(18.0)
    );
    // Started during the closure.
    assert_eq!(
        cal.advance(lt(SH, "2024-05-03 12:00:00"), mins(5)),
        lt(SH, "2024-05-06 09:05:00")
    );
    assert_eq!(
        cal.next_open(lt(SH, "2024-05-03 12:00:00")),
        lt(SH, "2024-05-06 09:00:00")
    );
}

#[test]
fn special_beats_holiday_beats_weekly() {
    // A date both a holiday and special: the special hours apply.
    let d = "2024-06-05"; // Wednesday
    let cal = Calendar::business(
        "x",
        SH,
        weekdays(&[iv(9, 0, 18, 0)]),
        vec![date(d), date("2024-06-06")],
        vec![(date(d), vec![iv(10, 0, 12, 0)])],
    );
    let day = lt(SH, "2024-06-05 00:00:00");
    assert_eq!(cal.counted(day, lt(SH, "2024-06-06 00:00:00")), h(2.0));
    assert_eq!(cal.counted(day, lt(SH, "2024-06-07 00:00:00")), h(2.0));
    assert_eq!(cal.counted(day, lt(SH, "2024-06-08 00:00:00")), h(11.0));
    assert_eq!(
        cal.advance(lt(SH, "2024-06-05 11:00:00"), h(2.0)),
        lt(SH, "2024-06-07 10:00:00")
    );
    // A special date with no hours closes the day, like a holiday.
    let cal = Calendar::business(
        "x",
        SH,
        weekdays(&[iv(9, 0, 18, 0)]),
        vec![],
        vec![(date(d), vec![])],
    );
    assert_eq!(cal.counted(day, lt(SH, "2024-06-06 00:00:00")), Dur::ZERO);
    // Two entries for one special date are unioned.
    let cal = Calendar::business(
        "x",
        SH,
        weekdays(&[]),
        vec![],
        vec![
            (date(d), vec![iv(10, 0, 12, 0)]),
            (date(d), vec![iv(11, 0, 13, 0)]),
        ],
    );
    assert_eq!(cal.counted(day, lt(SH, "2024-06-06 00:00:00")), h(3.0));
}

// ---------------------------------------------------------------- closed calendars

#[test]
fn never_open_calendars_terminate() {
    let t = utc("2024-06-03T10:00:00Z");
    let closed = Calendar::business("closed", SH, Default::default(), vec![], vec![]);
    assert_eq!(closed.advance(t, mins(1)), Ts::MAX);
    assert_eq!(closed.next_open(t), Ts::MAX);
    assert_eq!(closed.counted(t, Ts::MAX), Dur::ZERO);
    assert_eq!(closed.advance(t, Dur::ZERO), t);
    // Only a special date in the past.
    let past = Calendar::business(
        "past",
        SH,
        Default::default(),
        vec![],
        vec![(date("2024-01-02"), vec![iv(9, 0, 18, 0)])],
    );
    assert_eq!(past.advance(t, mins(1)), Ts::MAX);
    assert_eq!(past.counted(utc("2024-01-01T00:00:00Z"), Ts::MAX), h(9.0));
    // Only special dates, in the future: usable, then never.
    assert_eq!(
        past.advance(utc("2023-12-01T00:00:00Z"), h(9.0)),
        lt(SH, "2024-01-02 18:00:00")
    );
    assert_eq!(past.advance(utc("2023-12-01T00:00:00Z"), h(9.5)), Ts::MAX);
    // Weekly hours, but every day of the next 4 years a holiday: gives up (documented).
    let start = date("2024-06-01");
    let holidays: Vec<NaiveDate> = (0..4 * 366).map(|i| start + chrono::Days::new(i)).collect();
    let blocked = Calendar::business(
        "blocked",
        SH,
        every_day(&[iv(9, 0, 18, 0)]),
        holidays,
        vec![],
    );
    let began = std::time::Instant::now();
    assert_eq!(blocked.advance(t, mins(1)), Ts::MAX);
    assert!(began.elapsed() < std::time::Duration::from_secs(1));
    // Interval beyond the range of Ts.
    let cal = after_sales();
    assert_eq!(cal.advance(Ts(i64::MAX - 1_000), h(1.0)), Ts::MAX);
}

#[test]
fn invalid_intervals_are_ignored() {
    let cal = Calendar::business(
        "x",
        SH,
        every_day(&[
            iv(9, 0, 9, 0),
            iv(12, 0, 10, 0),
            LocalInterval {
                start: 90_000,
                end: 95_000,
            },
            iv(13, 0, 14, 0),
        ]),
        vec![],
        vec![],
    );
    let d = lt(SH, "2024-06-03 00:00:00");
    assert_eq!(cal.counted(d, lt(SH, "2024-06-04 00:00:00")), h(1.0));
}

// ---------------------------------------------------------------- properties

/// Minute-resolution reference: open iff the local wall clock at `t` lies inside an interval
/// of its own day or of an earlier day that wraps past midnight. Exact for zones without DST
/// (no gaps or folds), which is where it is used.
fn reference_open(cal: &RefCal, t: Ts) -> bool {
    let local = t.to_chrono().with_timezone(&cal.tz).naive_local();
    let sec = (local.and_utc().timestamp()).rem_euclid(86_400) as u32;
    let day = local.date();
    (0..3u32).any(|back| {
        let d = day - chrono::Days::new(back as u64);
        cal.day(d).iter().any(|iv| {
            iv.start < 86_400 && iv.start <= sec + back * 86_400 && sec + back * 86_400 < iv.end
        })
    })
}

#[derive(Debug, Clone)]
struct RefCal {
    tz: Tz,
    weekly: [Vec<LocalInterval>; 7],
    holidays: Vec<NaiveDate>,
    special: Vec<(NaiveDate, Vec<LocalInterval>)>,
}

impl RefCal {
    fn day(&self, d: NaiveDate) -> Vec<LocalInterval> {
        use chrono::Datelike;
        let sp: Vec<LocalInterval> = self
            .special
            .iter()
            .filter(|(sd, _)| *sd == d)
            .flat_map(|(_, ivs)| ivs.iter().copied())
            .collect();
        if self.special.iter().any(|(sd, _)| *sd == d) {
            sp
        } else if self.holidays.contains(&d) {
            vec![]
        } else {
            self.weekly[d.weekday().num_days_from_monday() as usize].clone()
        }
    }
    fn build(&self) -> Calendar {
        Calendar::business(
            "prop",
            self.tz,
            self.weekly.clone(),
            self.holidays.clone(),
            self.special.clone(),
        )
    }
}

impl RefCal {
    /// The same calendar with holidays and special dates moved by `days`.
    fn shifted(mut self, days: i64) -> RefCal {
        for d in &mut self.holidays {
            *d += chrono::Duration::days(days);
        }
        for (d, _) in &mut self.special {
            *d += chrono::Duration::days(days);
        }
        self
    }
}

/// Reference local→UTC (in seconds) by the contract's words, found differently from the
/// implementation: earliest occurrence, and for a time in a gap the first existing local
/// second after it (stepping second by second).
fn ref_to_utc(tz: Tz, local: NaiveDateTime) -> i64 {
    let mut x = local;
    loop {
        if let Some(t) = tz.from_local_datetime(&x).earliest() {
            return t.timestamp();
        }
        x += chrono::Duration::seconds(1);
    }
}

/// Reference counted time: map every interval of every nearby day to UTC, sort, union, and
/// measure the part inside `[from, to)` (seconds).
fn ref_counted(cal: &RefCal, from: i64, to: i64) -> i64 {
    let day_of = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .unwrap()
            .with_timezone(&cal.tz)
            .date_naive()
    };
    let (first, last) = (
        day_of(from) - chrono::Days::new(3),
        day_of(to) + chrono::Days::new(2),
    );
    let mut spans = Vec::new();
    let mut d = first;
    while d <= last {
        let midnight = d.and_hms_opt(0, 0, 0).unwrap();
        for iv in cal.day(d) {
            let s = ref_to_utc(
                cal.tz,
                midnight + chrono::Duration::seconds(iv.start as i64),
            );
            let e = ref_to_utc(cal.tz, midnight + chrono::Duration::seconds(iv.end as i64));
            spans.push((s, e));
        }
        d = d + chrono::Days::new(1);
    }
    spans.sort();
    let mut merged: Vec<(i64, i64)> = Vec::new();
    for (s, e) in spans {
        match merged.last_mut() {
            Some(m) if s <= m.1 => m.1 = m.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
        .iter()
        .map(|&(s, e)| (e.min(to) - s.max(from)).max(0))
        .sum()
}

fn arb_interval() -> impl Strategy<Value = LocalInterval> {
    // Quarter-hour boundaries; up to 30 h long so intervals cross midnight and overlap.
    (0u32..96, 1u32..120).prop_map(|(s, len)| LocalInterval {
        start: s * 900,
        end: s * 900 + len * 900,
    })
}

fn arb_day() -> impl Strategy<Value = Vec<LocalInterval>> {
    prop::collection::vec(arb_interval(), 0..3)
}

fn base_date() -> NaiveDate {
    date("2024-06-01")
}

fn arb_refcal(zones: &'static [Tz]) -> impl Strategy<Value = RefCal> {
    (
        prop::sample::select(zones),
        prop::array::uniform7(arb_day()),
        prop::collection::vec(0u64..40, 0..6),
        prop::collection::vec((0u64..40, arb_day()), 0..4),
        any::<bool>(),
    )
        .prop_map(|(tz, mut weekly, hol, mut sp, same_day)| {
            if same_day {
                // No interval past 24:00 (nothing reaches into the next day).
                for iv in weekly
                    .iter_mut()
                    .chain(sp.iter_mut().map(|(_, v)| v))
                    .flatten()
                {
                    iv.end = iv.end.min(86_400);
                }
            }
            RefCal {
                tz,
                weekly,
                holidays: hol
                    .into_iter()
                    .map(|d| base_date() + chrono::Days::new(d))
                    .collect(),
                special: sp
                    .into_iter()
                    .map(|(d, ivs)| (base_date() + chrono::Days::new(d), ivs))
                    .collect(),
            }
        })
}

static NO_DST: &[Tz] = &[
    chrono_tz::UTC,
    chrono_tz::Asia::Shanghai,
    chrono_tz::Asia::Kolkata,
    chrono_tz::Asia::Kathmandu,
    chrono_tz::America::Bogota,
];
/// Zones with a day two days before one of their 2024 transitions.
static DST_DAYS: &[(Tz, &str)] = &[
    (chrono_tz::America::New_York, "2024-03-08"),
    (chrono_tz::America::New_York, "2024-11-01"),
    (chrono_tz::Europe::Berlin, "2024-03-29"),
    (chrono_tz::Europe::Berlin, "2024-10-25"),
    (chrono_tz::Australia::Lord_Howe, "2024-04-05"),
    (chrono_tz::Australia::Lord_Howe, "2024-10-04"),
    (chrono_tz::America::Santiago, "2024-04-04"),
    (chrono_tz::America::Santiago, "2024-09-05"),
];
static ALL: &[Tz] = &[
    chrono_tz::UTC,
    chrono_tz::Asia::Shanghai,
    chrono_tz::America::New_York,
    chrono_tz::Europe::Berlin,
    chrono_tz::Australia::Lord_Howe, // 30-minute DST
    chrono_tz::America::Santiago,
    chrono_tz::Asia::Kathmandu,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Against the minute-level reference (zones without DST, minute-aligned instants).
    #[test]
    fn counted_matches_reference(cal in arb_refcal(NO_DST), a in 0i64..(40 * 1440), len in 0i64..(3 * 1440)) {
        let c = cal.build();
        let from = Ts::from_secs(base_date().and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp() + a * 60);
        let mut expected = 0i64;
        for m in 0..len {
            if reference_open(&cal, Ts(from.0 + m * 60 * NANOS_PER_SEC)) {
                expected += 60;
            }
        }
        let to = Ts(from.0 + len * 60 * NANOS_PER_SEC);
        prop_assert_eq!(c.counted(from, to), Dur::from_secs(expected));
        prop_assert_eq!(c.is_open(from), reference_open(&cal, from));
    }

    /// counted and advance are inverse, advance is monotonic, counted is additive.
    #[test]
    fn advance_inverts_counted(
        cal in arb_refcal(ALL),
        from_s in 0i64..(60 * 86_400),
        nanos in 0i64..1_000_000_000,
        a1 in 0i64..(20 * 86_400 * 1_000_000_000),
        a2 in 0i64..(20 * 86_400 * 1_000_000_000),
    ) {
        let c = cal.build();
        let origin = base_date().and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp() - 10 * 86_400;
        let from = Ts((origin + from_s) * NANOS_PER_SEC + nanos);
        let (lo, hi) = (a1.min(a2), a1.max(a2));
        let t_lo = c.advance(from, Dur(lo));
        let t_hi = c.advance(from, Dur(hi));
        prop_assert!(t_lo >= from);
        prop_assert!(t_lo <= t_hi);
        if t_lo != Ts::MAX {
            prop_assert_eq!(c.counted(from, t_lo), Dur(lo));
            // First instant: one nanosecond earlier has counted less.
            if lo > 0 {
                prop_assert_eq!(c.counted(from, Ts(t_lo.0 - 1)), Dur(lo - 1));
            }
        }
        if t_hi != Ts::MAX {
            prop_assert_eq!(c.counted(from, t_hi), Dur(hi));
            prop_assert_eq!(c.counted(from, t_lo).0 + c.counted(t_lo, t_hi).0, hi);
            // Re-advancing from the intermediate point lands at the same instant.
            prop_assert_eq!(c.advance(t_lo, Dur(hi - lo)), t_hi);
        }
    }

    /// Against the union-of-mapped-intervals reference, around DST transitions (2024).
    #[test]
    fn counted_matches_dst_reference(
        cal in arb_refcal(ALL),
        zone_base in prop::sample::select(DST_DAYS),
        a in 0i64..(4 * 86_400),
        len in 0i64..(3 * 86_400),
    ) {
        let (tz, base) = zone_base;
        let base = date(base);
        let mut cal = cal.shifted((base - base_date()).num_days());
        cal.tz = tz;
        let from = base.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp() + a;
        let to = from + len;
        let expected = ref_counted(&cal, from, to);
        let c = cal.build();
        prop_assert_eq!(c.counted(Ts::from_secs(from), Ts::from_secs(to)), Dur::from_secs(expected));
        let t = c.advance(Ts::from_secs(from), Dur::from_secs(expected));
        prop_assert!(t <= Ts::from_secs(to));
        if expected > 0 {
            prop_assert!(ref_counted(&cal, from, t.0 / NANOS_PER_SEC - 1) < expected);
        }
    }

    /// A calendar answers from the open interval its last answer fell in when a call's range
    /// lies inside it (a per-thread cache): a run of nearby calls, as a ticket's clocks
    /// make, answers as a freshly built calendar (whose first call walks the days) does.
    #[test]
    fn answers_from_the_last_open_interval_match_fresh_ones(
        cal in arb_refcal(ALL),
        zone_base in prop::sample::select(DST_DAYS),
        calls in prop::collection::vec((0u8..3, 0i64..(3 * 86_400), 0i64..(8 * 3_600), 0i64..1_000), 1..12),
    ) {
        let (tz, base) = zone_base;
        let base = date(base);
        let mut cal = cal.shifted((base - base_date()).num_days());
        cal.tz = tz;
        let c = cal.build();
        let origin = base.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp();
        for (kind, at, len, nanos) in calls {
            let from = Ts::from_secs(origin + at);
            let from = Ts(from.0 + nanos * 1_000_000);
            let fresh = cal.build();
            match kind {
                0 => prop_assert_eq!(c.advance(from, Dur::from_secs(len)), fresh.advance(from, Dur::from_secs(len))),
                1 => {
                    let to = Ts(from.0 + len * NANOS_PER_SEC);
                    prop_assert_eq!(c.counted(from, to), fresh.counted(from, to));
                }
                _ => prop_assert_eq!(c.next_open(from), fresh.next_open(from)),
            }
        }
    }

    /// Additivity over arbitrary cut points (including DST zones).
    #[test]
    fn counted_is_additive(cal in arb_refcal(ALL), a in 0i64..(50 * 86_400), b in 0i64..(50 * 86_400), c in 0i64..(50 * 86_400)) {
        let cal = cal.build();
        let mut v = [a, b, c];
        v.sort();
        let origin = base_date().and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp() - 5 * 86_400;
        let [x, y, z] = v.map(|s| Ts::from_secs(origin + s));
        prop_assert_eq!(cal.counted(x, y).0 + cal.counted(y, z).0, cal.counted(x, z).0);
        prop_assert!(cal.counted(x, z) <= z.since(x));
    }
}

/// Whole DST years: each day of 2024 counts its real length of 00:00–24:00 in New York, and the
/// year totals 366 × 24 h (the lost and the regained hour cancel).
#[test]
fn dst_year_totals() {
    let cal = Calendar::business("ny", NY, every_day(&[iv(0, 0, 24, 0)]), vec![], vec![]);
    let y0 = lt(NY, "2024-01-01 00:00:00");
    let y1 = lt(NY, "2025-01-01 00:00:00");
    assert_eq!(cal.counted(y0, y1), h(366.0 * 24.0));
    assert_eq!(cal.advance(y0, h(366.0 * 24.0)), y1);
    assert_eq!(
        cal.counted(lt(NY, "2024-03-10 00:00:00"), lt(NY, "2024-03-11 00:00:00")),
        h(23.0)
    );
    assert_eq!(
        cal.counted(lt(NY, "2024-11-03 00:00:00"), lt(NY, "2024-11-04 00:00:00")),
        h(25.0)
    );
}

/// Rough per-call cost; run with `cargo test --release --test calendar -- --ignored --nocapture`.
#[test]
#[ignore = "a timing printout, not a check: run by hand with --release -- --ignored --nocapture"]
fn bench_per_call() {
    let cal = after_sales();
    let ny = Calendar::business(
        "ny-shifts",
        NY,
        weekdays(&[iv(8, 30, 17, 30), iv(17, 0, 24, 0)]),
        vec![date("2024-07-04")],
        vec![],
    );
    let n = 1_000_000i64;
    for (name, c) in [("after-sales", &cal), ("ny-shifts", &ny)] {
        let base = utc("2024-06-03T10:00:00Z").0;
        let began = std::time::Instant::now();
        let mut acc = 0i64;
        for i in 0..n {
            let from = Ts(base + (i % 100_000) * 7_777 * NANOS_PER_SEC);
            acc ^= c.advance(from, h(24.0)).0;
        }
        let adv = began.elapsed().as_nanos() as f64 / n as f64;
        let began = std::time::Instant::now();
        for i in 0..n {
            let from = Ts(base + (i % 100_000) * 7_777 * NANOS_PER_SEC);
            acc ^= c.counted(from, Ts(from.0 + 86_400 * NANOS_PER_SEC)).0;
        }
        let cnt = began.elapsed().as_nanos() as f64 / n as f64;
        let began = std::time::Instant::now();
        for i in 0..n {
            let from = Ts(base + (i % 100_000) * 7_777 * NANOS_PER_SEC);
            acc ^= c.advance(from, mins(5)).0;
        }
        let adv5 = began.elapsed().as_nanos() as f64 / n as f64;
        // Scattered over 20 years: the per-thread memo mostly misses.
        let mut x: u64 = 1;
        let began = std::time::Instant::now();
        for _ in 0..n {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let from = Ts(base + ((x >> 20) % (20 * 365 * 86_400)) as i64 * NANOS_PER_SEC);
            acc ^= c.advance(from, h(24.0)).0;
        }
        let cold = began.elapsed().as_nanos() as f64 / n as f64;
        println!("{name}: advance 24h {adv:.0} ns, counted 1 day {cnt:.0} ns, advance 5 min {adv5:.0} ns, advance 24h scattered {cold:.0} ns ({acc})");
    }
}
