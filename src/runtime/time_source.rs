//! Where the processor's "now" comes from. The core never reads time; the runtime reads it
//! only through [`Clock`], so the demo can run an accelerated clock and tests a manual one.
use crate::core::time::{Dur, Ts};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of the current instant (event-time scale).
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Ts;
    /// How long, in real time, until `now()` reaches `t` (zero when already there). The
    /// processor sleeps at most this long before firing a timer due at `t`.
    fn real_time_until(&self, t: Ts) -> Duration {
        let d = t.since(self.now());
        d.to_std()
    }
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct WallClock;

impl Clock for WallClock {
    fn now(&self) -> Ts {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Ts(d.as_nanos() as i64)
    }
}

/// `origin + speed × (real time since start)`: the demo's accelerated clock.
#[derive(Clone, Debug)]
pub struct ScaledClock {
    origin: Ts,
    started: Instant,
    speed: f64,
}

impl ScaledClock {
    pub fn new(origin: Ts, speed: f64) -> ScaledClock {
        ScaledClock {
            origin,
            started: Instant::now(),
            speed: speed.max(1e-3),
        }
    }
    pub fn speed(&self) -> f64 {
        self.speed
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> Ts {
        let real = self.started.elapsed().as_nanos() as f64;
        self.origin.saturating_add(Dur((real * self.speed) as i64))
    }
    fn real_time_until(&self, t: Ts) -> Duration {
        let d = t.since(self.now()).0.max(0) as f64 / self.speed;
        Duration::from_nanos(d as u64)
    }
}

/// A clock tests set by hand.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(t: Ts) -> ManualClock {
        ManualClock(AtomicI64::new(t.0))
    }
    pub fn set(&self, t: Ts) {
        self.0.store(t.0, Ordering::SeqCst);
    }
    pub fn advance(&self, d: Dur) {
        self.0.fetch_add(d.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Ts {
        Ts(self.0.load(Ordering::SeqCst))
    }
    fn real_time_until(&self, t: Ts) -> Duration {
        // Nobody knows when the test moves the clock: look again soon.
        if t <= self.now() {
            Duration::ZERO
        } else {
            Duration::from_millis(5)
        }
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> Ts {
        (**self).now()
    }
    fn real_time_until(&self, t: Ts) -> Duration {
        (**self).real_time_until(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_clock_runs_faster() {
        let c = ScaledClock::new(Ts::from_secs(1000), 100.0);
        std::thread::sleep(Duration::from_millis(20));
        let n = c.now();
        assert!(n >= Ts::from_secs(1002), "{n:?}");
        let wait = c.real_time_until(n.saturating_add(Dur::from_secs(10)));
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
    }

    #[test]
    fn manual_clock_moves_when_told() {
        let c = ManualClock::new(Ts::from_secs(5));
        assert_eq!(c.now(), Ts::from_secs(5));
        c.advance(Dur::from_secs(1));
        assert_eq!(c.now(), Ts::from_secs(6));
        assert_eq!(c.real_time_until(Ts::from_secs(1)), Duration::ZERO);
    }
}
