//! Business calendars: weekly open hours in an IANA time zone, holidays and special dates.
//! Counted time runs only inside open intervals (SLA-SEMANTICS §2 rule 2).
//!
//! CONTRACT for the engine (implementation pending):
//! - `counted(from, to)`: counted (open) time in [from, to); zero when to <= from.
//! - `advance(from, amount)`: the first instant t >= from at which counted(from, t) == amount;
//!   when that is a closing time the closing time itself (not the next opening).
use crate::core::time::{Dur, Ts};
use chrono::NaiveDate;
use chrono_tz::Tz;
use std::sync::Arc;

/// An open interval of one local day, in seconds since that day's local midnight.
/// `end` may exceed 86 400 (an interval crossing midnight, e.g. 17:00–01:00 is
/// 61 200..90 000); `end == 86 400` is 24:00.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalInterval {
    pub start: u32,
    pub end: u32,
}

#[derive(Clone, Debug)]
pub struct Calendar {
    pub name: Arc<str>,
    inner: Option<Arc<Business>>,
}

#[derive(Debug)]
struct Business {
    tz: Tz,
    weekly: [Vec<LocalInterval>; 7],
    holidays: Vec<NaiveDate>,
    special: Vec<(NaiveDate, Vec<LocalInterval>)>,
}

impl PartialEq for Calendar {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
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

    /// `weekly[0]` is Monday. Precedence: special date > holiday > weekly hours.
    pub fn business(
        name: &str,
        tz: Tz,
        weekly: [Vec<LocalInterval>; 7],
        holidays: Vec<NaiveDate>,
        special: Vec<(NaiveDate, Vec<LocalInterval>)>,
    ) -> Calendar {
        Calendar {
            name: name.into(),
            inner: Some(Arc::new(Business {
                tz,
                weekly,
                holidays,
                special,
            })),
        }
    }

    pub fn is_always_open(&self) -> bool {
        self.inner.is_none()
    }

    pub fn counted(&self, from: Ts, to: Ts) -> Dur {
        match &self.inner {
            None => Dur(to.0.saturating_sub(from.0).max(0)),
            Some(_b) => unimplemented!("business calendar counted"),
        }
    }

    pub fn advance(&self, from: Ts, amount: Dur) -> Ts {
        match &self.inner {
            None => from.saturating_add(amount),
            Some(_b) => unimplemented!("business calendar advance"),
        }
    }
}
