//! Start-up's first step: wait until the brokers answer, one log line per attempt with the
//! delay before the next, the reason on `/readyz`, and a shutdown request honoured within
//! [`SLICE`] at any point (a metadata request is made of short slices, the back-off sleeps
//! in slices too).
//!
//! Without it the first metadata request of `slawatch run` blocked for its whole timeout,
//! Ctrl-C meanwhile did nothing, and librdkafka's own retries logged every 0.5 s per client.
use crate::runtime::config::Config;
use crate::runtime::control::Control;
use crate::runtime::kafka::clients::{base_config, is_auth_failure};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer as _};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one attempt waits for a metadata answer.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// The granularity at which a shutdown request is noticed.
pub const SLICE: Duration = Duration::from_millis(100);
/// Back-off between attempts: doubling from [`FIRST_DELAY`] up to [`MAX_DELAY`].
pub const FIRST_DELAY: Duration = Duration::from_millis(500);
pub const MAX_DELAY: Duration = Duration::from_secs(30);

/// The delay after failed attempt `attempt` (1-based).
pub fn backoff(attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    (FIRST_DELAY * factor).min(MAX_DELAY)
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A shutdown was requested before the brokers answered.
    #[error("stopped before Kafka at {0} answered")]
    Stopped(String),
    /// Credentials or TLS are wrong: retrying cannot cure it.
    #[error("{0}")]
    Authentication(String),
    #[error("cannot create a Kafka client: {0}")]
    Client(KafkaError),
}

/// The probe client's context: remembers the latest complaint instead of logging it (the
/// attempt's line says it once).
#[derive(Default)]
struct Quiet {
    last: Mutex<Option<String>>,
    auth: Mutex<Option<String>>,
}

impl rdkafka::ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        if is_auth_failure(&error) {
            *self.auth.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(format!("{error}: {reason}"));
        }
        // "All brokers are down" follows every refused connection: keep the connection's
        // own reason (refused, unresolvable host, timed out) when there is one.
        let summary =
            error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if !summary || last.is_none() {
            *last = Some(reason.to_string());
        }
    }
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(target: "librdkafka", ?level, fac, "{message}");
    }
}
impl rdkafka::producer::ProducerContext for Quiet {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::producer::DeliveryResult<'_>, _: ()) {}
}

/// Blocks until the brokers of `cfg` answer a metadata request; returns how many brokers
/// the cluster has. Retries forever (a broker may come up later, as under an orchestrator)
/// unless the credentials are refused or `control` asks for a shutdown.
pub fn wait_for_brokers(cfg: &Config, control: &Control) -> Result<usize, ConnectError> {
    let probe: BaseProducer<Quiet> = base_config(cfg)
        .create_with_context(Quiet::default())
        .map_err(ConnectError::Client)?;
    let brokers = cfg.brokers.as_str();
    let mut attempt = 0u32;
    let mut failed: Option<String> = None;
    loop {
        attempt += 1;
        control.set_starting(Some(match &failed {
            None => format!("connecting to Kafka at {brokers}"),
            Some(f) => format!("{f}; attempt {attempt} in progress"),
        }));
        let deadline = Instant::now() + ATTEMPT_TIMEOUT;
        let failure = loop {
            if control.shutdown_requested() {
                return Err(ConnectError::Stopped(brokers.to_string()));
            }
            let r = probe.client().fetch_metadata(None, SLICE);
            probe.poll(Duration::ZERO);
            if let Some(why) = probe
                .context()
                .auth
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                return Err(ConnectError::Authentication(why));
            }
            match r {
                Ok(md) if !md.brokers().is_empty() => {
                    let n = md.brokers().len();
                    tracing::info!(brokers, cluster_brokers = n, attempt, "Kafka reachable");
                    return Ok(n);
                }
                Ok(_) => {}
                Err(e) if Instant::now() >= deadline => break e,
                Err(_) => {}
            }
        };
        let reason = probe
            .context()
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| failure.to_string());
        let delay = backoff(attempt);
        tracing::warn!(
            brokers,
            attempt,
            retry_in_ms = delay.as_millis() as u64,
            reason = %reason,
            "cannot reach Kafka; retrying in {:.1} s",
            delay.as_secs_f64()
        );
        let f = format!("cannot reach Kafka at {brokers}: attempt {attempt} failed ({reason})");
        control.set_starting(Some(format!(
            "{f}; next attempt in {:.1} s",
            delay.as_secs_f64()
        )));
        failed = Some(f);
        let until = Instant::now() + delay;
        while Instant::now() < until {
            if control.shutdown_requested() {
                return Err(ConnectError::Stopped(brokers.to_string()));
            }
            std::thread::sleep(SLICE.min(until.saturating_duration_since(Instant::now())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second_and_caps_at_thirty() {
        let d: Vec<u64> = (1..=9).map(|a| backoff(a).as_millis() as u64).collect();
        assert_eq!(d, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
        assert_eq!(backoff(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn a_shutdown_request_ends_the_wait_without_a_broker() {
        let cfg = Config::from_sources("brokers = \"127.0.0.1:1\"\n", "test", []).unwrap();
        let control = Control::new();
        control.request_shutdown();
        let t = Instant::now();
        let r = wait_for_brokers(&cfg, &control);
        assert!(
            matches!(r, Err(ConnectError::Stopped(ref b)) if b == "127.0.0.1:1"),
            "{r:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }
}
