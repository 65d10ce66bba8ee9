//! One log line per distinct Kafka client complaint, not one per client per retry.
//!
//! librdkafka reports an unreachable broker twice (its log callback's `FAIL` line and the
//! error callback) from every client (admin probe, producer, both consumers), and again on
//! every reconnect attempt — every 0.5 s. An operator needs the first line and a count. The
//! filter keys a complaint by its error code and its reason with the volatile parts removed
//! (numbers, librdkafka's "(after 0ms in state CONNECT, 1 identical error(s) suppressed)"),
//! logs the first of a key, suppresses repeats for [`REPEAT_WINDOW`], and then logs it again
//! with how often it was seen meanwhile.
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a repeated complaint stays quiet.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(30);

/// Keys remembered at most (oldest forgotten first): distinct complaints are few.
const MAX_KEYS: usize = 256;

/// The filter's state; time is an input so the rule is testable.
#[derive(Debug, Default)]
pub struct RepeatFilter {
    seen: HashMap<String, Seen>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    logged_at: Duration,
    suppressed: u64,
}

/// What to do with one complaint.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `repeats` were suppressed since it was last logged.
    Log {
        repeats: u64,
    },
    Suppress,
}

impl RepeatFilter {
    /// `now` is any monotonic instant (time since process start).
    pub fn admit(&mut self, key: &str, now: Duration, window: Duration) -> Verdict {
        if let Some(s) = self.seen.get_mut(key) {
            if now.saturating_sub(s.logged_at) < window {
                s.suppressed += 1;
                return Verdict::Suppress;
            }
            let repeats = s.suppressed;
            *s = Seen {
                logged_at: now,
                suppressed: 0,
            };
            return Verdict::Log { repeats };
        }
        if self.seen.len() >= MAX_KEYS {
            if let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, s)| s.logged_at)
                .map(|(k, _)| k.clone())
            {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(
            key.to_string(),
            Seen {
                logged_at: now,
                suppressed: 0,
            },
        );
        Verdict::Log { repeats: 0 }
    }
}

/// A complaint's identity: `what` with digit runs collapsed and librdkafka's trailing
/// "(after …)" note dropped, so "1/1 brokers are down" and "0/1 brokers are down", or the
/// same refused connection 0 ms and 3 ms into its attempt, are one complaint.
pub fn complaint_key(kind: &str, what: &str) -> String {
    let what = match what.rfind(" (after ") {
        Some(i) => &what[..i],
        None => what,
    };
    let mut key = String::with_capacity(kind.len() + what.len() + 1);
    key.push_str(kind);
    key.push('|');
    let mut in_digits = false;
    for ch in what.chars() {
        if ch.is_ascii_digit() {
            if !in_digits {
                key.push('#');
            }
            in_digits = true;
        } else {
            in_digits = false;
            key.push(ch);
        }
    }
    key
}

fn verdict(key: &str) -> Verdict {
    static FILTER: OnceLock<(Instant, Mutex<RepeatFilter>)> = OnceLock::new();
    let (origin, filter) =
        FILTER.get_or_init(|| (Instant::now(), Mutex::new(RepeatFilter::default())));
    let now = origin.elapsed();
    filter
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .admit(key, now, REPEAT_WINDOW)
}

/// A client's error callback (`client` names it: "producer", "consumer", …).
pub fn client_error(client: &str, error: &KafkaError, reason: &str) {
    let key = complaint_key(&format!("{:?}", error.rdkafka_error_code()), reason);
    if let Verdict::Log { repeats } = verdict(&key) {
        if repeats > 0 {
            tracing::warn!(client, %error, reason, repeats, "Kafka client error (repeated since last logged)");
        } else {
            tracing::warn!(client, %error, reason, "Kafka client error");
        }
    }
}

/// A client's log callback. librdkafka's `FAIL` lines repeat what the error callback says
/// (debug only); other warnings and errors go through the repeat filter.
pub fn client_log(level: RDKafkaLogLevel, fac: &str, message: &str) {
    use RDKafkaLogLevel as L;
    let serious = matches!(
        level,
        L::Emerg | L::Alert | L::Critical | L::Error | L::Warning
    );
    if !serious || fac == "FAIL" {
        tracing::debug!(target: "librdkafka", fac, "{message}");
        return;
    }
    if let Verdict::Log { repeats } = verdict(&complaint_key(fac, message)) {
        match level {
            L::Warning => tracing::warn!(target: "librdkafka", fac, repeats, "{message}"),
            _ => tracing::error!(target: "librdkafka", fac, repeats, "{message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = REPEAT_WINDOW;

    #[test]
    fn first_complaint_logs_repeats_within_the_window_are_counted_then_reported() {
        let mut f = RepeatFilter::default();
        let k = "refused";
        assert_eq!(f.admit(k, Duration::ZERO, W), Verdict::Log { repeats: 0 });
        for s in 1..10 {
            assert_eq!(
                f.admit(k, Duration::from_millis(500 * s), W),
                Verdict::Suppress
            );
        }
        assert_eq!(f.admit(k, W, W), Verdict::Log { repeats: 9 });
        assert_eq!(f.admit(k, W + Duration::from_secs(1), W), Verdict::Suppress);
    }

    #[test]
    fn distinct_complaints_are_logged_independently() {
        let mut f = RepeatFilter::default();
        assert_eq!(f.admit("a", Duration::ZERO, W), Verdict::Log { repeats: 0 });
        assert_eq!(f.admit("b", Duration::ZERO, W), Verdict::Log { repeats: 0 });
        assert_eq!(f.admit("a", Duration::from_secs(1), W), Verdict::Suppress);
    }

    #[test]
    fn the_key_ignores_counts_and_librdkafkas_attempt_note() {
        let a = complaint_key(
            "BrokerTransportFailure",
            "localhost:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused (after 0ms in state CONNECT)",
        );
        let b = complaint_key(
            "BrokerTransportFailure",
            "localhost:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused (after 3ms in state CONNECT, 1 identical error(s) suppressed)",
        );
        assert_eq!(a, b);
        assert_eq!(
            complaint_key("AllBrokersDown", "1/1 brokers are down"),
            complaint_key("AllBrokersDown", "0/1 brokers are down")
        );
        assert_ne!(
            complaint_key("AllBrokersDown", "1/1 brokers are down"),
            complaint_key("BrokerTransportFailure", "1/1 brokers are down")
        );
    }

    #[test]
    fn the_filter_forgets_the_oldest_key_when_full() {
        let mut f = RepeatFilter::default();
        for i in 0..MAX_KEYS {
            f.admit(&format!("k{i}"), Duration::from_millis(i as u64), W);
        }
        f.admit("new", Duration::from_secs(1), W);
        assert_eq!(f.seen.len(), MAX_KEYS);
        assert!(!f.seen.contains_key("k0"));
        // k0 is new again.
        assert_eq!(
            f.admit("k0", Duration::from_secs(2), W),
            Verdict::Log { repeats: 0 }
        );
    }
}
