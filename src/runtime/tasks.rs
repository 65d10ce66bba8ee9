//! Per-partition state owned by the processing thread: one [`InputTask`] per assigned input
//! partition (an SLA engine) and one [`SurgeTask`] per assigned partition of the surge
//! repartition topic (a surge detector).
use crate::core::engine::{Engine, EngineStats};
use crate::core::surge::SurgeDetector;
use crate::core::time::Ts;
use std::collections::HashSet;

/// One assigned input partition.
pub struct InputTask {
    pub topic: usize,
    pub partition: i32,
    pub engine: Engine,
    /// Next offset to consume (last processed + 1); `None` before the first record when the
    /// group had no committed offset.
    pub next_offset: Option<i64>,
    /// The next-offset last committed (or found committed at restore).
    pub committed: Option<i64>,
    /// `--rebuild-from-input`: outputs, state records and offsets are suppressed for records
    /// below this offset (the group's committed offset when the rebuild started).
    pub suppress_below: Option<i64>,
    /// `--rebuild-from-input`: state keys found in the state topic, tombstoned when the
    /// rebuild goes live unless rewritten.
    pub stale_keys: Option<HashSet<Vec<u8>>>,
    /// Position ≥ the cached high watermark: no unconsumed input.
    pub caught_up: bool,
    /// Records behind the high watermark; `None` until librdkafka knows the watermark.
    pub lag: Option<u64>,
    /// Engine state changed since the last state write.
    pub changed: bool,
    /// Counters already turned into metrics.
    pub stats_seen: EngineStats,
    /// The watermark last announced to the surge stage, and when.
    pub wm_sent: Ts,
    pub wm_sent_at: Option<std::time::Instant>,
}

impl InputTask {
    pub fn new(topic: usize, partition: i32, engine: Engine, committed: Option<i64>) -> InputTask {
        InputTask {
            topic,
            partition,
            engine,
            next_offset: committed,
            committed,
            suppress_below: None,
            stale_keys: None,
            caught_up: false,
            lag: None,
            changed: false,
            stats_seen: EngineStats::default(),
            wm_sent: Ts::MIN,
            wm_sent_at: None,
        }
    }

    /// Whether the record at `offset` is replayed with its effects suppressed (rebuild).
    pub fn suppressed_at(&self, offset: i64) -> bool {
        self.suppress_below.is_some_and(|s| offset < s)
    }

    /// Whether the partition is still below the rebuild's starting point (the processor
    /// clears `suppress_below` when it gets there).
    pub fn rebuilding(&self) -> bool {
        self.suppress_below.is_some()
    }

    /// The watermark this partition should be at now.
    pub fn target_watermark(&self, wall: Option<Ts>) -> Ts {
        let ev = self.engine.event_watermark();
        match wall {
            Some(w) if self.caught_up => ev.max(w),
            _ => ev,
        }
    }
}

/// One assigned partition of the surge repartition topic.
///
/// Its watermark is not its own records' event time (opened events of many input
/// partitions interleave here in processing order, not event-time order) but the minimum of
/// the watermarks the input partitions announce into it ([`WatermarkMark`]): a minute
/// boundary is evaluated only once every input partition has passed it, so every `opened`
/// before it has arrived — as in `replay`, which sees the whole input in order.
pub struct SurgeTask {
    pub partition: i32,
    pub detector: SurgeDetector,
    pub max_seen: Ts,
    pub watermark: Ts,
    /// Latest watermark announced by each input partition (topic, partition).
    pub sources: std::collections::HashMap<(String, i32), Ts>,
    /// How many input partitions announce (learned from the marks).
    pub expected_sources: usize,
    pub next_offset: Option<i64>,
    pub committed: Option<i64>,
    pub caught_up: bool,
    pub lag: u64,
    /// Detector state changed since the last state write.
    pub dirty: bool,
}

impl SurgeTask {
    /// min over the input partitions' announced watermarks, once all have announced.
    pub fn target_watermark(&self) -> Ts {
        if self.expected_sources == 0 || self.sources.len() < self.expected_sources {
            return Ts::MIN;
        }
        self.sources.values().copied().min().unwrap_or(Ts::MIN)
    }
}

/// A watermark announcement from an input partition to every surge partition, carried by
/// the repartition topic (header [`WatermarkMark::HEADER`]; key `wm/<topic>/<partition>`;
/// value: the watermark as i64 nanoseconds big-endian, then the number of announcing input
/// partitions as u32 big-endian).
pub struct WatermarkMark;

impl WatermarkMark {
    pub const HEADER: &'static str = "slawatch.watermark";

    pub fn key(topic: &str, partition: i32) -> Vec<u8> {
        format!("wm/{topic}/{partition}").into_bytes()
    }
    pub fn value(wm: Ts, sources: u32) -> [u8; 12] {
        let mut v = [0u8; 12];
        v[..8].copy_from_slice(&wm.0.to_be_bytes());
        v[8..].copy_from_slice(&sources.to_be_bytes());
        v
    }
    /// (source topic, source partition, watermark, sources) of a mark.
    pub fn parse(key: &[u8], value: &[u8]) -> Option<(String, i32, Ts, u32)> {
        let key = std::str::from_utf8(key).ok()?.strip_prefix("wm/")?;
        let (topic, p) = key.rsplit_once('/')?;
        let p: i32 = p.parse().ok()?;
        if value.len() != 12 {
            return None;
        }
        let wm = i64::from_be_bytes(value[..8].try_into().ok()?);
        let n = u32::from_be_bytes(value[8..].try_into().ok()?);
        Some((topic.to_string(), p, Ts(wm), n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_marks_round_trip() {
        let k = WatermarkMark::key("conv.in", 7);
        let v = WatermarkMark::value(Ts(-5), 12);
        assert_eq!(
            WatermarkMark::parse(&k, &v),
            Some(("conv.in".into(), 7, Ts(-5), 12))
        );
        assert_eq!(WatermarkMark::parse(b"acme", &v), None);
    }
}
