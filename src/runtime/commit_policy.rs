//! How long a transaction stays open: a pure function of the assigned partitions' lag and
//! of whether this replica has committed since its partitions went live.
//!
//! - **Live** (caught up, or little to read): `commit_interval_ms`. Outputs become visible
//!   to read_committed consumers within about that.
//! - **Backlog** (most partitions behind and ≥ [`BACKLOG_RECORDS`] records to go: start-up
//!   after downtime, recovery): ten times that, at most a quarter of the transaction
//!   timeout. Nobody waits for outputs that are late anyway; fewer commits mean fewer
//!   pipeline stalls and fewer changelog records (a ticket changed by several events in one
//!   transaction is written once). Once draining, the interval stays wide while
//!   ≥ [`BACKLOG_RECORDS`] records are to go, however many partitions have caught up:
//!   librdkafka serves the partitions unevenly, and a 300 k-record drain measured half its
//!   partitions caught up while 148 k records were still behind.
//! - **First** (nothing committed since the partitions went live, i.e. since start,
//!   assignment or a reset): `commit_interval_ms` whatever the lag, so a replica restarted
//!   shortly after its last start (a crash loop, a rolling restart) makes its first progress
//!   durable within one interval instead of ten, and the next life starts from there.
//!
//! A partition whose lag is not known yet (no fetch response since its assignment, so
//! librdkafka has no high watermark for it) counts as behind, and only known lags count
//! towards [`BACKLOG_RECORDS`]: with nothing known there is no evidence of a backlog.
//!
//! Why a 193 k-record drain once logged `commit caught_up=0 partitions=6 interval_ms=100`:
//! two causes, both seen again in a debug log of a 300 k-record drain. (1) At the first
//! commit only one partition's high watermark was known (the others had not been answered
//! a fetch yet); the code of then counted an unknown lag as 0 records, so the known lag
//! fell below 10 000. (2) From the second commit on, half the partitions had caught up
//! (uneven fetching) while 148 k records were still behind, and "most partitions behind"
//! no longer held, so the drain committed every 100 ms to its end. Unknown lags now count
//! as behind; the first commit is [`CommitPace::First`] on purpose; and a drain keeps its
//! interval while the lag lasts (the `draining` input).
use std::time::Duration;

/// Records behind (summed over the assigned input partitions) from which a drain widens the
/// interval.
pub const BACKLOG_RECORDS: u64 = 10_000;
/// How much a backlog widens the interval.
pub const BACKLOG_FACTOR: u32 = 10;

/// One assigned input partition as the policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionLag {
    /// Records between the position and the high watermark; `None` while unknown.
    pub lag: Option<u64>,
    /// Position ≥ the high watermark.
    pub caught_up: bool,
}

/// Why the interval is what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitPace {
    Live,
    Backlog,
    First,
}

impl CommitPace {
    pub fn as_str(self) -> &'static str {
        match self {
            CommitPace::Live => "live",
            CommitPace::Backlog => "backlog",
            CommitPace::First => "first",
        }
    }
}

/// The settings the policy works from.
#[derive(Clone, Copy, Debug)]
pub struct CommitSettings {
    /// `commit_interval_ms`.
    pub base: Duration,
    /// `transaction_timeout_ms`.
    pub transaction_timeout: Duration,
}

/// The interval to keep a transaction open, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitPlan {
    pub interval: Duration,
    pub mode: CommitPace,
}

/// The commit interval for these partitions. `committed_since_live`: a commit has succeeded
/// since the partitions went live (start, assignment, reset). `previous`: the mode of the
/// last plan (a drain, once begun, continues while the lag lasts).
pub fn commit_plan(
    settings: CommitSettings,
    partitions: &[PartitionLag],
    committed_since_live: bool,
    previous: CommitPace,
) -> CommitPlan {
    let live = CommitPlan {
        interval: settings.base,
        mode: CommitPace::Live,
    };
    if partitions.is_empty() {
        return live;
    }
    let behind = partitions.iter().filter(|p| !p.caught_up).count();
    let lag: u64 = partitions.iter().filter_map(|p| p.lag).sum();
    let draining = previous != CommitPace::Live;
    if lag < BACKLOG_RECORDS || (behind * 2 <= partitions.len() && !draining) {
        return live;
    }
    if !committed_since_live {
        return CommitPlan {
            interval: settings.base,
            mode: CommitPace::First,
        };
    }
    CommitPlan {
        interval: (settings.base * BACKLOG_FACTOR)
            .min(settings.transaction_timeout / 4)
            .max(settings.base),
        mode: CommitPace::Backlog,
    }
}

/// A partition's lag from its position and librdkafka's cached (low, high) watermarks:
/// `None` when the watermarks are not known yet.
pub fn partition_lag(position: Option<i64>, watermarks: Option<(i64, i64)>) -> PartitionLag {
    match (position, watermarks) {
        (Some(pos), Some((_, high))) => PartitionLag {
            lag: Some((high - pos).max(0) as u64),
            caught_up: pos >= high,
        },
        (None, Some((low, high))) => PartitionLag {
            lag: Some((high - low).max(0) as u64),
            caught_up: low == high,
        },
        (_, None) => PartitionLag {
            lag: None,
            caught_up: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: CommitSettings = CommitSettings {
        base: Duration::from_millis(100),
        transaction_timeout: Duration::from_secs(10),
    };

    fn behind(lag: u64) -> PartitionLag {
        PartitionLag {
            lag: Some(lag),
            caught_up: false,
        }
    }
    fn caught() -> PartitionLag {
        PartitionLag {
            lag: Some(0),
            caught_up: true,
        }
    }
    const UNKNOWN: PartitionLag = PartitionLag {
        lag: None,
        caught_up: false,
    };

    #[test]
    fn caught_up_commits_at_the_base_interval() {
        let p = commit_plan(S, &[caught(), caught(), caught()], true, CommitPace::Live);
        assert_eq!(p.interval, Duration::from_millis(100));
        assert_eq!(p.mode, CommitPace::Live);
        assert_eq!(
            commit_plan(S, &[], true, CommitPace::Live).mode,
            CommitPace::Live
        );
    }

    #[test]
    fn a_drain_widens_the_interval_tenfold() {
        // The reported case: 193 k records behind on 6 partitions, none caught up.
        let parts = [behind(32_000); 6];
        let p = commit_plan(S, &parts, true, CommitPace::Live);
        assert_eq!(p.mode, CommitPace::Backlog);
        assert_eq!(p.interval, Duration::from_secs(1));
    }

    #[test]
    fn the_backlog_interval_stays_within_a_quarter_of_the_transaction_timeout() {
        let s = CommitSettings {
            base: Duration::from_millis(500),
            transaction_timeout: Duration::from_secs(4),
        };
        assert_eq!(
            commit_plan(s, &[behind(50_000)], true, CommitPace::Live).interval,
            Duration::from_secs(1)
        );
        // ... but never below the base interval.
        let s = CommitSettings {
            base: Duration::from_millis(900),
            transaction_timeout: Duration::from_secs(1),
        };
        assert_eq!(
            commit_plan(s, &[behind(50_000)], true, CommitPace::Live).interval,
            Duration::from_millis(900)
        );
    }

    #[test]
    fn a_small_lag_or_a_minority_behind_is_live() {
        assert_eq!(
            commit_plan(S, &[behind(4_000), behind(5_000)], true, CommitPace::Live).mode,
            CommitPace::Live
        );
        // One hot partition out of four must not delay the other three's outputs.
        let parts = [behind(1_000_000), caught(), caught(), caught()];
        assert_eq!(
            commit_plan(S, &parts, true, CommitPace::Live).mode,
            CommitPace::Live
        );
    }

    #[test]
    fn unknown_lags_count_as_behind_and_known_lags_decide() {
        // Two of six partitions have been fetched and show a backlog; the other four have
        // no high watermark yet: a backlog, not "0 records behind".
        let parts = [
            behind(20_000),
            behind(20_000),
            UNKNOWN,
            UNKNOWN,
            UNKNOWN,
            UNKNOWN,
        ];
        assert_eq!(
            commit_plan(S, &parts, true, CommitPace::Live).mode,
            CommitPace::Backlog
        );
        // Nothing known: no evidence of a backlog.
        assert_eq!(
            commit_plan(S, &[UNKNOWN; 6], true, CommitPace::Live).mode,
            CommitPace::Live
        );
    }

    #[test]
    fn the_first_commit_after_going_live_is_not_widened() {
        let parts = [behind(100_000); 3];
        let p = commit_plan(S, &parts, false, CommitPace::Live);
        assert_eq!(p.mode, CommitPace::First);
        assert_eq!(p.interval, Duration::from_millis(100));
        assert_eq!(
            commit_plan(S, &parts, true, CommitPace::Live).mode,
            CommitPace::Backlog
        );
    }

    #[test]
    fn a_drain_keeps_its_interval_while_partitions_catch_up_unevenly() {
        // Measured (300 k records, 6 partitions): from the second commit on, three
        // partitions were caught up while 148 k records were still behind.
        let parts = [
            behind(50_000),
            behind(50_000),
            behind(48_000),
            caught(),
            caught(),
            caught(),
        ];
        for previous in [CommitPace::First, CommitPace::Backlog] {
            let p = commit_plan(S, &parts, true, previous);
            assert_eq!(p.mode, CommitPace::Backlog, "after {previous:?}");
            assert_eq!(p.interval, Duration::from_secs(1));
        }
        // Not draining before (live traffic, one hot partition): stays live.
        assert_eq!(
            commit_plan(S, &parts, true, CommitPace::Live).mode,
            CommitPace::Live
        );
        // The drain ends when fewer than BACKLOG_RECORDS are to go.
        let tail = [behind(9_999), caught(), caught()];
        assert_eq!(
            commit_plan(S, &tail, true, CommitPace::Backlog).mode,
            CommitPace::Live
        );
    }

    #[test]
    fn lag_from_position_and_watermarks() {
        assert_eq!(partition_lag(Some(5), Some((0, 12))), behind(7));
        assert_eq!(partition_lag(Some(12), Some((0, 12))), caught());
        // Past the cached high watermark (it lags a fetch behind): caught up, lag 0.
        assert_eq!(partition_lag(Some(14), Some((0, 12))), caught());
        // No position yet: everything from the log start is to be read.
        assert_eq!(partition_lag(None, Some((3, 10))), behind(7));
        assert_eq!(partition_lag(None, Some((10, 10))), caught());
        assert_eq!(partition_lag(Some(3), None), UNKNOWN);
    }
}
