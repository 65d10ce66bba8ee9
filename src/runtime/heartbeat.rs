//! Whether each processing thread still makes progress, for `/healthz`. A thread that runs
//! but never comes back from a client call (librdkafka can block for ever in a
//! transactional call after a broker restart: issues #5456, #5511) is alive to every other
//! check; its heartbeat, beaten once per loop iteration and per retry, stops. Longer than
//! [`STALL_BOUND`] without one, the process reports itself not healthy, for the
//! orchestrator's liveness probe to restart it.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a processing thread may go without a heartbeat before `/healthz` fails. Above
/// the longest legitimate wait of one loop iteration: a rebalance callback that waits for
/// the commit in flight (given up after 65 s), then commits (30 s) or aborts (30 s).
pub const STALL_BOUND: Duration = Duration::from_secs(180);

/// The processing threads' heartbeats.
pub struct Heartbeats {
    origin: Instant,
    /// (processing thread, its last heartbeat).
    beats: Mutex<Vec<(usize, Arc<AtomicU64>)>>,
}

/// One processing thread's heartbeat (milliseconds since the origin, + 1).
pub struct Heartbeat {
    origin: Instant,
    last: Arc<AtomicU64>,
}

/// A thread without a heartbeat for longer than the bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stall {
    pub thread: usize,
    pub since: Duration,
}

impl Default for Heartbeats {
    fn default() -> Self {
        Heartbeats {
            origin: Instant::now(),
            beats: Mutex::new(Vec::new()),
        }
    }
}

impl Heartbeats {
    /// A heartbeat for processing thread `thread` (beaten once now).
    pub fn register(&self, thread: usize) -> Heartbeat {
        let h = Heartbeat {
            origin: self.origin,
            last: Arc::new(AtomicU64::new(0)),
        };
        h.beat();
        self.beats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((thread, h.last.clone()));
        h
    }

    /// The thread longest without a heartbeat at `now`, if that is longer than
    /// [`STALL_BOUND`].
    pub fn stalled_at(&self, now: Instant) -> Option<Stall> {
        let now = now.saturating_duration_since(self.origin).as_millis() as u64 + 1;
        let beats = self.beats.lock().unwrap_or_else(|p| p.into_inner());
        longest_stall(
            beats.iter().map(|(k, b)| (*k, b.load(Ordering::Relaxed))),
            now,
            STALL_BOUND,
        )
    }
}

impl Heartbeat {
    pub fn beat(&self) {
        self.last.store(
            self.origin.elapsed().as_millis() as u64 + 1,
            Ordering::Relaxed,
        );
    }
}

/// Of heartbeats `beats` ((thread, milliseconds)), the one oldest at `now` if older than
/// `bound`.
fn longest_stall(
    beats: impl Iterator<Item = (usize, u64)>,
    now: u64,
    bound: Duration,
) -> Option<Stall> {
    beats
        .map(|(thread, last)| Stall {
            thread,
            since: Duration::from_millis(now.saturating_sub(last)),
        })
        .filter(|s| s.since > bound)
        .max_by_key(|s| s.since)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (thread, heartbeat) of heartbeats listed by thread.
    fn beats(b: &[u64]) -> impl Iterator<Item = (usize, u64)> + '_ {
        b.iter().copied().enumerate()
    }

    #[test]
    fn the_thread_longest_without_a_heartbeat_past_the_bound_is_stalled() {
        let bound = Duration::from_secs(180);
        let at = |s: u64| s * 1000;
        assert_eq!(
            longest_stall(beats(&[at(100), at(200)]), at(250), bound),
            None
        );
        assert_eq!(
            longest_stall(beats(&[at(100), at(10), at(50)]), at(250), bound),
            Some(Stall {
                thread: 1,
                since: Duration::from_secs(240)
            }),
            "thread 1, the oldest of two past the bound"
        );
        assert_eq!(
            longest_stall(beats(&[at(70)]), at(250), bound),
            None,
            "exactly the bound is not past it"
        );
        assert_eq!(longest_stall(std::iter::empty(), at(250), bound), None);
    }

    #[test]
    fn a_registered_heartbeat_is_fresh() {
        let h = Heartbeats::default();
        assert_eq!(h.stalled_at(Instant::now()), None, "no thread");
        let beat = h.register(3);
        beat.beat();
        let now = Instant::now();
        assert_eq!(h.stalled_at(now), None);
        let later = h.stalled_at(now + STALL_BOUND + Duration::from_secs(5));
        assert!(
            later.is_some_and(|s| s.thread == 3 && s.since > STALL_BOUND),
            "{later:?}"
        );
    }
}
