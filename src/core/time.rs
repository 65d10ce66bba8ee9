//! Event time. Instants and durations are integer nanoseconds (UTC), so arithmetic is exact
//! and independent of the machine; the wall clock never enters the core.
use serde::{Deserialize, Serialize};
use std::fmt;

/// An instant: nanoseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Ts(pub i64);

/// A span of time in nanoseconds (may be negative in intermediate arithmetic).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Dur(pub i64);

pub const NANOS_PER_SEC: i64 = 1_000_000_000;

impl Ts {
    pub const MIN: Ts = Ts(i64::MIN);
    pub const MAX: Ts = Ts(i64::MAX);

    pub fn from_secs(secs: i64) -> Ts {
        Ts(secs * NANOS_PER_SEC)
    }
    pub fn from_parts(secs: i64, nanos: i32) -> Ts {
        Ts(secs
            .saturating_mul(NANOS_PER_SEC)
            .saturating_add(nanos as i64))
    }
    /// (seconds, nanos) with nanos in 0..1e9, as protobuf Timestamp wants.
    pub fn to_parts(self) -> (i64, i32) {
        (
            self.0.div_euclid(NANOS_PER_SEC),
            self.0.rem_euclid(NANOS_PER_SEC) as i32,
        )
    }
    pub fn to_chrono(self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_nanos(self.0)
    }
    pub fn from_chrono<Tz: chrono::TimeZone>(t: &chrono::DateTime<Tz>) -> Ts {
        Ts::from_parts(t.timestamp(), t.timestamp_subsec_nanos() as i32)
    }
    /// Parses RFC 3339 (e.g. `2024-03-01T10:00:00Z`).
    pub fn parse_rfc3339(s: &str) -> Result<Ts, String> {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| Ts::from_chrono(&t))
            .map_err(|e| {
                format!(
                    "invalid RFC 3339 time {s:?}: {e} (expected a date, 'T', a time and a zone, \
                     e.g. \"2024-03-04T10:00:00Z\" or \"2024-03-04T18:00:00+08:00\")"
                )
            })
    }
    pub fn saturating_add(self, d: Dur) -> Ts {
        Ts(self.0.saturating_add(d.0))
    }
    pub fn saturating_sub(self, d: Dur) -> Ts {
        Ts(self.0.saturating_sub(d.0))
    }
    pub fn since(self, earlier: Ts) -> Dur {
        Dur(self.0.saturating_sub(earlier.0))
    }
}

impl Dur {
    pub const ZERO: Dur = Dur(0);
    pub fn from_secs(secs: i64) -> Dur {
        Dur(secs * NANOS_PER_SEC)
    }
    pub fn from_millis(ms: i64) -> Dur {
        Dur(ms * 1_000_000)
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_SEC as f64
    }
    pub fn to_parts(self) -> (i64, i32) {
        // protobuf Duration: seconds and nanos share the sign.
        (self.0 / NANOS_PER_SEC, (self.0 % NANOS_PER_SEC) as i32)
    }
    /// `self × f`, rounded to the nearest nanosecond (warnings at a fraction of the target).
    pub fn mul_f64(self, f: f64) -> Dur {
        Dur((self.0 as f64 * f).round() as i64)
    }
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.0.max(0) as u64)
    }

    /// Parses `30s`, `5m`, `4h`, `2d`, combinations such as `1h30m`, and `0`/`0s`.
    /// Units: `d`, `h`, `m`, `s`, `ms`. Whitespace and signs are refused.
    pub fn parse(s: &str) -> Result<Dur, DurationError> {
        let err = |why: &'static str| DurationError {
            input: s.to_string(),
            why,
        };
        if s.is_empty() {
            return Err(err("empty duration"));
        }
        if s == "0" {
            return Ok(Dur::ZERO);
        }
        if s.trim().contains(char::is_whitespace) {
            return Err(err(
                "no space allowed between number and unit: write them together, as in \"30s\"",
            ));
        }
        if s.contains(char::is_whitespace) {
            return Err(err("leading or trailing space"));
        }
        let bytes = s.as_bytes();
        let mut i = 0;
        let mut total: i64 = 0;
        let mut last_rank = u8::MAX;
        while i < bytes.len() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if start == i {
                return Err(err(if bytes[i] == b'-' {
                    "negative durations are not allowed"
                } else {
                    "expected a number before each unit"
                }));
            }
            let n: i64 = s[start..i].parse().map_err(|_| err("number too large"))?;
            let unit_start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            let (nanos, rank) = match &s[unit_start..i] {
                "d" => (86_400 * NANOS_PER_SEC, 5),
                "h" => (3_600 * NANOS_PER_SEC, 4),
                "m" => (60 * NANOS_PER_SEC, 3),
                "s" => (NANOS_PER_SEC, 2),
                "ms" => (1_000_000, 1),
                "" => return Err(err("missing unit (use d, h, m, s or ms)")),
                _ => return Err(err("unknown unit (use d, h, m, s or ms)")),
            };
            if rank >= last_rank {
                return Err(err("units must go from largest to smallest, each once"));
            }
            last_rank = rank;
            total = n
                .checked_mul(nanos)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| err("duration too large"))?;
        }
        Ok(Dur(total))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {why}")]
pub struct DurationError {
    pub input: String,
    pub why: &'static str,
}

impl fmt::Debug for Ts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self)
    }
}
impl fmt::Display for Ts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            self.to_chrono()
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        )
    }
}
impl fmt::Debug for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self)
    }
}
impl fmt::Display for Dur {
    /// Formats as the policy language writes it, e.g. `1h30m`, `0s`, `250ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return write!(f, "0s");
        }
        let mut rest = self.0;
        if rest < 0 {
            write!(f, "-")?;
            rest = -rest;
        }
        for (unit, n) in [
            ("d", 86_400 * NANOS_PER_SEC),
            ("h", 3_600 * NANOS_PER_SEC),
            ("m", 60 * NANOS_PER_SEC),
            ("s", NANOS_PER_SEC),
            ("ms", 1_000_000),
            ("ns", 1),
        ] {
            if rest >= n {
                write!(f, "{}{}", rest / n, unit)?;
                rest %= n;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(Dur::parse("30s").unwrap(), Dur::from_secs(30));
        assert_eq!(Dur::parse("1h30m").unwrap(), Dur::from_secs(5400));
        assert_eq!(Dur::parse("2d").unwrap(), Dur::from_secs(172_800));
        assert_eq!(Dur::parse("0").unwrap(), Dur::ZERO);
        assert_eq!(Dur::parse("1s500ms").unwrap(), Dur::from_millis(1500));
        for bad in ["", "-5m", "5", "5x", "30m1h", "1h1h", "h"] {
            assert!(Dur::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn a_space_is_named_as_such_not_as_a_missing_unit() {
        let e = Dur::parse("30 s").unwrap_err();
        assert_eq!(
            e.why,
            "no space allowed between number and unit: write them together, as in \"30s\""
        );
        assert_eq!(Dur::parse("1h 30m").unwrap_err().why, e.why);
        assert_eq!(
            Dur::parse(" 30s").unwrap_err().why,
            "leading or trailing space"
        );
        assert_eq!(
            Dur::parse("30").unwrap_err().why,
            "missing unit (use d, h, m, s or ms)"
        );
    }

    #[test]
    fn formats_durations() {
        assert_eq!(Dur::from_secs(5400).to_string(), "1h30m");
        assert_eq!(Dur::ZERO.to_string(), "0s");
        assert_eq!(Dur::from_millis(250).to_string(), "250ms");
    }

    #[test]
    fn timestamp_parts_roundtrip() {
        let t = Ts::parse_rfc3339("1969-12-31T23:59:59.5Z").unwrap();
        assert_eq!(t.to_parts(), (-1, 500_000_000));
        assert_eq!(Ts::from_parts(-1, 500_000_000), t);
    }
}
