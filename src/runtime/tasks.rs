//! Per-partition state owned by the processing thread: one [`InputTask`] per assigned input
//! partition (an SLA engine) and one [`SurgeTask`] per assigned partition of the surge
//! repartition topic (a surge detector).
use crate::core::engine::{Engine, EngineStats};
use crate::core::surge::SurgeDetector;
use crate::core::time::{Dur, Ts};
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
    pub lag: u64,
    /// Engine state changed since the last state write.
    pub changed: bool,
    /// Counters already turned into metrics.
    pub stats_seen: EngineStats,
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
            lag: 0,
            changed: false,
            stats_seen: EngineStats::default(),
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
pub struct SurgeTask {
    pub partition: i32,
    pub detector: SurgeDetector,
    pub max_seen: Ts,
    pub watermark: Ts,
    pub next_offset: Option<i64>,
    pub committed: Option<i64>,
    pub caught_up: bool,
    pub lag: u64,
    /// Detector state changed since the last state write.
    pub dirty: bool,
}

impl SurgeTask {
    pub fn target_watermark(&self, lateness: Dur, wall: Option<Ts>) -> Ts {
        let ev = if self.max_seen == Ts::MIN {
            Ts::MIN
        } else {
            self.max_seen.saturating_sub(lateness)
        };
        match wall {
            Some(w) if self.caught_up => ev.max(w),
            _ => ev,
        }
    }
}
