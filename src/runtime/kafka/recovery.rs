//! Recovering from fatal client errors that follow a broker outage: when the clients last had
//! trouble reaching the brokers, and whether a fatal error is to be recovered from by
//! recreating the clients.
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// When a Kafka client last had trouble reaching the brokers (transport failures, all
/// brokers down, a lost assignment). librdkafka turns some outages into *fatal* errors
/// although no other replica exists: a static member whose session timed out during the
/// outage is fenced on rejoin (`FencedInstanceId`, librdkafka issue #3437), and a
/// transaction the coordinator timed out meanwhile (`transaction_timeout_ms`) leaves the
/// producer fenced. Such an error shortly after trouble is recovered from by recreating the
/// clients; one out of the blue (a newer replica with the same instance id) still stops
/// the processor.
pub struct Trouble {
    origin: Instant,
    /// Milliseconds since `origin` + 1; 0: never.
    last: AtomicU64,
}

impl Trouble {
    pub fn new() -> Trouble {
        Trouble {
            origin: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    pub fn mark(&self) {
        self.last.store(
            self.origin.elapsed().as_millis() as u64 + 1,
            Ordering::Relaxed,
        );
    }

    /// Marks transport-level errors (not fatal ones: those are what is judged).
    pub fn note(&self, error: &KafkaError) {
        use RDKafkaErrorCode as C;
        if matches!(
            error.rdkafka_error_code(),
            Some(
                C::BrokerTransportFailure
                    | C::AllBrokersDown
                    | C::NetworkException
                    | C::RequestTimedOut
                    | C::OperationTimedOut
                    | C::MessageTimedOut
                    | C::CoordinatorNotAvailable
                    | C::NotCoordinator
            )
        ) {
            self.mark();
        }
    }

    /// Time since the last trouble, if any.
    pub fn since(&self) -> Option<Duration> {
        match self.last.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(
                self.origin
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms - 1)),
            ),
        }
    }
}

/// A fatal error within this long after trouble counts as caused by it.
pub const TROUBLE_WINDOW: Duration = Duration::from_secs(120);
/// At most this many client recreations per [`RECOVERY_PERIOD`]; more stop the processor.
pub const MAX_RECOVERIES: usize = 5;
pub const RECOVERY_PERIOD: Duration = Duration::from_secs(600);

impl Default for Trouble {
    fn default() -> Self {
        Trouble::new()
    }
}

/// Whether a fatal client error is to be recovered from by recreating the clients: it came
/// within [`TROUBLE_WINDOW`] of trouble reaching the brokers (`since_trouble`), and fewer
/// than [`MAX_RECOVERIES`] recoveries happened in the last [`RECOVERY_PERIOD`]
/// (`recoveries`, pruned here; `now` is recorded when the answer is yes).
pub fn may_recover(
    since_trouble: Option<Duration>,
    recoveries: &mut Vec<Instant>,
    now: Instant,
) -> bool {
    if since_trouble.is_none_or(|d| d >= TROUBLE_WINDOW) {
        return false;
    }
    recoveries.retain(|t| now.saturating_duration_since(*t) < RECOVERY_PERIOD);
    if recoveries.len() >= MAX_RECOVERIES {
        return false;
    }
    recoveries.push(now);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_fatal_error_soon_after_trouble_is_recovered_from() {
        let now = Instant::now();
        let mut r = Vec::new();
        assert!(
            !may_recover(None, &mut r, now),
            "out of the blue: a real fence"
        );
        assert!(!may_recover(Some(TROUBLE_WINDOW), &mut r, now));
        assert!(may_recover(Some(Duration::from_secs(3)), &mut r, now));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn recoveries_are_bounded_per_period() {
        let t0 = Instant::now();
        let mut r = Vec::new();
        let soon = Some(Duration::from_secs(1));
        for i in 0..MAX_RECOVERIES {
            assert!(may_recover(
                soon,
                &mut r,
                t0 + Duration::from_secs(i as u64)
            ));
        }
        assert!(!may_recover(soon, &mut r, t0 + Duration::from_secs(60)));
        // Once the first ones are older than the period, recovering is allowed again.
        assert!(may_recover(
            soon,
            &mut r,
            t0 + RECOVERY_PERIOD + Duration::from_secs(1)
        ));
    }

    #[test]
    fn transport_errors_mark_trouble() {
        let t = Trouble::new();
        assert_eq!(t.since(), None);
        t.note(&KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull));
        assert_eq!(t.since(), None, "a full queue is no trouble");
        t.note(&KafkaError::Global(RDKafkaErrorCode::AllBrokersDown));
        assert!(t.since().is_some_and(|d| d < Duration::from_secs(5)));
    }
}
