//! This replica's single-instance latency quantiles: every SLA latency sample also goes into
//! a small per-(policy, channel, urgency) ring buffer; on every refresh tick the nearest-rank
//! p50 and p95 of each window are published as gauges (`slawatch_first_response_p50_seconds`,
//! …). The metric catalogue and the recording helpers are in the parent module.
use super::{channel_label, urgency_label, LatencyKind};
use crate::core::model::{Channel, Urgency};
use metrics::{gauge, SharedString};
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A quantile in per-mille, so nearest rank is exact integer arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permille(pub u32);

impl Permille {
    pub const P50: Permille = Permille(500);
    pub const P95: Permille = Permille(950);
}

/// Nearest-rank quantile of ascending `sorted`: the value at 1-based rank ⌈q·n⌉ (at least 1).
/// `None` when empty.
pub fn nearest_rank(sorted: &[f64], q: Permille) -> Option<f64> {
    let n = sorted.len() as u64;
    if n == 0 {
        return None;
    }
    let q = u64::from(q.0.min(1000));
    let rank = (q * n).div_ceil(1000).max(1);
    Some(sorted[(rank - 1) as usize])
}

/// The last `cap` samples not older than `max_age`.
#[derive(Debug)]
pub struct SlidingWindow {
    cap: usize,
    samples: VecDeque<(Instant, f64)>,
}

impl SlidingWindow {
    pub fn new(cap: usize) -> SlidingWindow {
        SlidingWindow {
            cap: cap.max(1),
            samples: VecDeque::new(),
        }
    }

    pub fn push(&mut self, at: Instant, value: f64) {
        if self.samples.len() == self.cap {
            self.samples.pop_front();
        }
        self.samples.push_back((at, value));
    }

    /// Drops samples taken before `cutoff`.
    pub fn evict_before(&mut self, cutoff: Instant) {
        while self.samples.front().is_some_and(|(t, _)| *t < cutoff) {
            self.samples.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Nearest-rank quantiles of the samples, in the order asked.
    pub fn quantiles(&self, qs: &[Permille]) -> Option<Vec<f64>> {
        if self.samples.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = self.samples.iter().map(|(_, x)| *x).collect();
        v.sort_unstable_by(f64::total_cmp);
        Some(qs.iter().filter_map(|q| nearest_rank(&v, *q)).collect())
    }
}

/// Key of one window: the histogram labels plus the latency kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WindowKey {
    pub kind: LatencyKind,
    /// Already bounded by [`policy_label`].
    pub policy: SharedString,
    pub channel: Channel,
    /// Effective urgency.
    pub urgency: Urgency,
}

/// p50 / p95 of one window at a refresh.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowQuantiles {
    pub key: WindowKey,
    pub samples: usize,
    /// `None` when the window is empty (all samples aged out).
    pub p50_p95: Option<(f64, f64)>,
}

/// This replica's sliding windows of SLA latency samples.
pub struct LatencyWindows {
    cap: usize,
    max_age: Duration,
    windows: Mutex<HashMap<WindowKey, SlidingWindow>>,
}

impl LatencyWindows {
    /// Windows of at most `cap` samples each, none older than `max_age`.
    pub fn new(cap: usize, max_age: Duration) -> LatencyWindows {
        LatencyWindows {
            cap,
            max_age,
            windows: Mutex::new(HashMap::new()),
        }
    }

    pub fn record(&self, key: WindowKey, secs: f64, now: Instant) {
        self.record_all([(key, secs)], now);
    }

    /// [`LatencyWindows::record`] for many samples, in one lock.
    pub fn record_all(&self, samples: impl IntoIterator<Item = (WindowKey, f64)>, now: Instant) {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        for (key, secs) in samples {
            w.entry(key)
                .or_insert_with(|| SlidingWindow::new(self.cap))
                .push(now, secs);
        }
    }

    /// Ages samples out and computes every window's p50 / p95 (sorted by key labels).
    pub fn snapshot(&self, now: Instant) -> Vec<WindowQuantiles> {
        let cutoff = now.checked_sub(self.max_age);
        let mut out = {
            let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
            w.iter_mut()
                .map(|(key, win)| {
                    if let Some(c) = cutoff {
                        win.evict_before(c);
                    }
                    WindowQuantiles {
                        key: key.clone(),
                        samples: win.len(),
                        p50_p95: win
                            .quantiles(&[Permille::P50, Permille::P95])
                            .map(|q| (q[0], q[1])),
                    }
                })
                .collect::<Vec<_>>()
        };
        out.sort_by(|a, b| {
            (a.key.kind, &*a.key.policy, a.key.channel, a.key.urgency).cmp(&(
                b.key.kind,
                &*b.key.policy,
                b.key.channel,
                b.key.urgency,
            ))
        });
        out
    }

    /// Publishes the gauges of every window (NaN for an emptied window).
    pub fn publish(&self, now: Instant) {
        for wq in self.snapshot(now) {
            let (g50, g95) = wq.key.kind.quantile_gauges();
            let (p50, p95) = wq.p50_p95.unwrap_or((f64::NAN, f64::NAN));
            let labels = [
                ("policy", wq.key.policy.clone()),
                (
                    "channel",
                    SharedString::const_str(channel_label(wq.key.channel)),
                ),
                (
                    "urgency",
                    SharedString::const_str(urgency_label(wq.key.urgency)),
                ),
            ];
            gauge!(g50, &labels).set(p50);
            gauge!(g95, &labels).set(p95);
        }
    }
}

/// Default samples per window.
pub const DEFAULT_WINDOW_SAMPLES: usize = 512;
/// Default maximum sample age.
pub const DEFAULT_WINDOW_MAX_AGE: Duration = Duration::from_secs(15 * 60);

static WINDOWS: OnceLock<LatencyWindows> = OnceLock::new();

/// The process-wide windows the recording helpers feed.
pub fn windows() -> &'static LatencyWindows {
    WINDOWS.get_or_init(|| LatencyWindows::new(DEFAULT_WINDOW_SAMPLES, DEFAULT_WINDOW_MAX_AGE))
}

/// Sets the process-wide windows' size (first caller wins; samples recorded before used the
/// defaults).
pub(super) fn init_windows(samples: usize, max_age: Duration) {
    let _ = WINDOWS.set(LatencyWindows::new(samples, max_age));
}

/// Publishes the in-process quantile gauges now (the refresher calls this every tick).
pub fn refresh_window_quantiles() {
    windows().publish(Instant::now());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        assert_eq!(nearest_rank(&[], Permille::P50), None);
        assert_eq!(nearest_rank(&[7.0], Permille::P95), Some(7.0));
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        // ⌈0.5·20⌉ = 10, ⌈0.95·20⌉ = 19
        assert_eq!(nearest_rank(&v, Permille::P50), Some(10.0));
        assert_eq!(nearest_rank(&v, Permille::P95), Some(19.0));
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, Permille::P50), Some(50.0));
        assert_eq!(nearest_rank(&v, Permille::P95), Some(95.0));
        assert_eq!(nearest_rank(&v, Permille(1000)), Some(100.0));
        assert_eq!(nearest_rank(&v, Permille(0)), Some(1.0));
        let v = [1.0, 2.0, 3.0];
        // ⌈1.5⌉ = 2, ⌈2.85⌉ = 3
        assert_eq!(nearest_rank(&v, Permille::P50), Some(2.0));
        assert_eq!(nearest_rank(&v, Permille::P95), Some(3.0));
    }

    #[test]
    fn sliding_window_keeps_last_n_and_ages_out() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(4);
        for (i, x) in [100.0, 1.0, 2.0, 3.0, 4.0].into_iter().enumerate() {
            w.push(t0 + Duration::from_secs(i as u64), x);
        }
        assert_eq!(w.len(), 4);
        // 100 fell out of the window.
        assert_eq!(
            w.quantiles(&[Permille::P50, Permille::P95]),
            Some(vec![2.0, 4.0])
        );
        w.evict_before(t0 + Duration::from_secs(3));
        assert_eq!(w.len(), 2);
        assert_eq!(w.quantiles(&[Permille::P50]), Some(vec![3.0]));
        w.evict_before(t0 + Duration::from_secs(60));
        assert!(w.is_empty());
        assert_eq!(w.quantiles(&[Permille::P50]), None);
    }

    #[test]
    fn latency_windows_snapshot_per_key() {
        let ws = LatencyWindows::new(100, Duration::from_secs(60));
        let t0 = Instant::now();
        let key = |ch| WindowKey {
            kind: LatencyKind::FirstResponse,
            policy: SharedString::const_str("chat"),
            channel: ch,
            urgency: Urgency::General,
        };
        for i in 1..=20 {
            ws.record(key(Channel::Chat), f64::from(i), t0);
        }
        ws.record(key(Channel::Email), 300.0, t0);
        let snap = ws.snapshot(t0 + Duration::from_secs(1));
        assert_eq!(snap.len(), 2);
        assert_eq!(snap[0].key.channel, Channel::Chat);
        assert_eq!(snap[0].samples, 20);
        assert_eq!(snap[0].p50_p95, Some((10.0, 19.0)));
        assert_eq!(snap[1].p50_p95, Some((300.0, 300.0)));
        let later = ws.snapshot(t0 + Duration::from_secs(61));
        assert!(later.iter().all(|w| w.p50_p95.is_none() && w.samples == 0));
    }
}
