//! Every metric slawatch exports: its name, type, unit, labels and help (the rules are in
//! [`super`]), and the histogram buckets.
use super::*;

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

/// Histogram {policy, channel, urgency}: first-response time, clock-counted seconds.
pub const FIRST_RESPONSE_SECONDS: &str = "slawatch_first_response_seconds";
/// Histogram {policy, channel, urgency}: next-response time, clock-counted seconds.
pub const NEXT_RESPONSE_SECONDS: &str = "slawatch_next_response_seconds";
/// Histogram {policy, channel, urgency}: resolution time, clock-counted seconds.
pub const RESOLUTION_SECONDS: &str = "slawatch_resolution_seconds";
/// Gauge {policy, metric}: the target of the policy's clock that feeds `metric`, seconds of
/// counted time (from the loaded policy file; the p95 alerts compare against it).
pub const SLA_TARGET_SECONDS: &str = "slawatch_sla_target_seconds";
/// Gauge {policy, channel, urgency}: in-process nearest-rank p50 of recent first responses.
pub const FIRST_RESPONSE_P50_SECONDS: &str = "slawatch_first_response_p50_seconds";
/// Gauge {policy, channel, urgency}: in-process nearest-rank p95 of recent first responses.
pub const FIRST_RESPONSE_P95_SECONDS: &str = "slawatch_first_response_p95_seconds";
/// Gauge {policy, channel, urgency}: in-process p50 of recent next responses.
pub const NEXT_RESPONSE_P50_SECONDS: &str = "slawatch_next_response_p50_seconds";
/// Gauge {policy, channel, urgency}: in-process p95 of recent next responses.
pub const NEXT_RESPONSE_P95_SECONDS: &str = "slawatch_next_response_p95_seconds";
/// Gauge {policy, channel, urgency}: in-process p50 of recent resolutions.
pub const RESOLUTION_P50_SECONDS: &str = "slawatch_resolution_p50_seconds";
/// Gauge {policy, channel, urgency}: in-process p95 of recent resolutions.
pub const RESOLUTION_P95_SECONDS: &str = "slawatch_resolution_p95_seconds";

/// Counter {kind, policy, rule}: SLA output events published.
pub const SLA_OUTPUTS_TOTAL: &str = "slawatch_sla_outputs_total";
/// Counter {policy, rule, level}: escalations published, by ladder level.
pub const ESCALATIONS_TOTAL: &str = "slawatch_escalations_total";
/// Counter {dimension, transition}: surge transitions (SurgeStarted / SurgeEnded).
pub const SURGE_TRANSITIONS_TOTAL: &str = "slawatch_surge_transitions_total";
/// Gauge {dimension}: surges currently active on this replica.
pub const SURGES_ACTIVE: &str = "slawatch_surges_active";

/// Gauge {partition}: tickets held in live state that are not closed.
pub const OPEN_TICKETS: &str = "slawatch_open_tickets";
/// Gauge {partition}: SLA clocks running.
pub const RUNNING_CLOCKS: &str = "slawatch_running_clocks";
/// Gauge {partition}: tickets waiting in the pre-open buffer.
pub const PREOPEN_BUFFERED_TICKETS: &str = "slawatch_preopen_buffered_tickets";
/// Gauge {partition}: wall clock minus the partition's watermark, seconds.
pub const WATERMARK_DELAY_SECONDS: &str = "slawatch_watermark_delay_seconds";
/// Gauge {partition}: consumer lag in records (high watermark − position, summed over the
/// co-partitioned input topics).
pub const CONSUMER_LAG_MESSAGES: &str = "slawatch_consumer_lag_messages";
/// Gauge: partitions currently assigned to this replica.
pub const ASSIGNED_PARTITIONS: &str = "slawatch_assigned_partitions";

/// Counter {format}: input records read (including those later rejected).
pub const EVENTS_CONSUMED_TOTAL: &str = "slawatch_events_consumed_total";
/// Counter: events ignored because their event id was already seen for the ticket.
pub const EVENTS_DUPLICATE_TOTAL: &str = "slawatch_events_duplicate_total";
/// Counter: events whose occurred_at was below the watermark on arrival.
pub const EVENTS_LATE_TOTAL: &str = "slawatch_events_late_total";
/// Counter {reason}: records rejected and written to the dead-letter topic.
pub const EVENTS_REJECTED_TOTAL: &str = "slawatch_events_rejected_total";
/// Counter: unknown enum values accepted as UNSPECIFIED (the event is kept, not rejected).
pub const UNKNOWN_ENUM_VALUES_TOTAL: &str = "slawatch_unknown_enum_values_total";
/// Counter: second `opened` events for a ticket, ignored.
pub const SECOND_OPENED_IGNORED_TOTAL: &str = "slawatch_second_opened_ignored_total";
/// Counter: idle tickets dropped after `idle_ttl`.
pub const IDLE_TICKETS_DROPPED_TOTAL: &str = "slawatch_idle_tickets_dropped_total";

/// Histogram: seconds from polling a record to its outputs being decided (includes the wait
/// for the watermark).
pub const EVENT_TO_DECISION_SECONDS: &str = "slawatch_event_to_decision_seconds";
/// Histogram: seconds from an output being due (deadline + allowed lateness, or its event's
/// arrival) to its hand-over to the producer.
pub const OUTPUT_DELAY_SECONDS: &str = "slawatch_output_delay_seconds";
/// Histogram: Kafka transaction commit time, seconds.
pub const TRANSACTION_COMMIT_SECONDS: &str = "slawatch_transaction_commit_seconds";
/// Counter {outcome}: transactions committed / aborted.
pub const TRANSACTIONS_TOTAL: &str = "slawatch_transactions_total";
/// Counter {kind}: releases of what a broker outage left held (see
/// `runtime::changelog::held`), one per producer transaction.
pub const HELD_RELEASES_TOTAL: &str = "slawatch_held_releases_total";
/// Counter {reason}: failures of the processor's Kafka work, by typed reason.
pub const ERRORS_TOTAL: &str = "slawatch_errors_total";
/// Gauge: the commit interval the commit policy chose for the last commit, seconds.
pub const COMMIT_INTERVAL_SECONDS: &str = "slawatch_commit_interval_seconds";

/// Histogram: time to restore one partition's state, seconds.
pub const RESTORE_DURATION_SECONDS: &str = "slawatch_restore_duration_seconds";
/// Counter: bytes of state read during restores.
pub const RESTORED_BYTES_TOTAL: &str = "slawatch_restored_bytes_total";
/// Counter: tickets restored.
pub const RESTORED_TICKETS_TOTAL: &str = "slawatch_restored_tickets_total";
/// Gauge: partitions whose state is being restored.
pub const RESTORING_PARTITIONS: &str = "slawatch_restoring_partitions";
/// Gauge: 1 when every assigned partition is restored and consuming (what /readyz says).
pub const READY: &str = "slawatch_ready";
/// Counter {kind}: rebalance callbacks.
pub const REBALANCES_TOTAL: &str = "slawatch_rebalances_total";
/// Gauge {version}: always 1; carries the build version.
pub const BUILD_INFO: &str = "slawatch_build_info";

// ---------------------------------------------------------------------------------------------
// Catalogue
// ---------------------------------------------------------------------------------------------

/// Prometheus metric type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

/// One entry of the catalogue.
#[derive(Clone, Copy, Debug)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: MetricType,
    pub unit: Unit,
    /// The label keys, always all present, in this order.
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

pub(super) const PCU: &[&str] = &["policy", "channel", "urgency"];
pub(super) const PART: &[&str] = &["partition"];

macro_rules! def {
    ($name:expr, $kind:ident, $unit:ident, $labels:expr, $help:literal) => {
        MetricDef {
            name: $name,
            kind: MetricType::$kind,
            unit: Unit::$unit,
            labels: $labels,
            help: $help,
        }
    };
}

/// Every metric slawatch exports.
pub const CATALOGUE: &[MetricDef] = &[
    def!(FIRST_RESPONSE_SECONDS, Histogram, Seconds, PCU,
        "First-response time as counted by the SLA clock (calendar time, pauses excluded), recorded when the clock stops; a clock that ends unanswered counts in the +Inf bucket only (censored)."),
    def!(NEXT_RESPONSE_SECONDS, Histogram, Seconds, PCU,
        "Next-response time as counted by the SLA clock, recorded when the clock stops; a clock that ends unanswered counts in the +Inf bucket only (censored)."),
    def!(RESOLUTION_SECONDS, Histogram, Seconds, PCU,
        "Resolution time as counted by the SLA clock, recorded when the clock stops; a clock that ends unanswered counts in the +Inf bucket only (censored)."),
    def!(SLA_TARGET_SECONDS, Gauge, Seconds, &["policy", "metric"],
        "Target of the policy clock that feeds the metric's latency histogram (counted time), from the loaded policy file."),
    def!(FIRST_RESPONSE_P50_SECONDS, Gauge, Seconds, PCU,
        "Nearest-rank p50 of this replica's recent first-response samples (sliding window); NaN when the window is empty."),
    def!(FIRST_RESPONSE_P95_SECONDS, Gauge, Seconds, PCU,
        "Nearest-rank p95 of this replica's recent first-response samples (sliding window); NaN when the window is empty."),
    def!(NEXT_RESPONSE_P50_SECONDS, Gauge, Seconds, PCU,
        "Nearest-rank p50 of this replica's recent next-response samples (sliding window)."),
    def!(NEXT_RESPONSE_P95_SECONDS, Gauge, Seconds, PCU,
        "Nearest-rank p95 of this replica's recent next-response samples (sliding window)."),
    def!(RESOLUTION_P50_SECONDS, Gauge, Seconds, PCU,
        "Nearest-rank p50 of this replica's recent resolution samples (sliding window)."),
    def!(RESOLUTION_P95_SECONDS, Gauge, Seconds, PCU,
        "Nearest-rank p95 of this replica's recent resolution samples (sliding window)."),
    def!(SLA_OUTPUTS_TOTAL, Counter, Count, &["kind", "policy", "rule"],
        "SLA output events handed to the producer, by kind (warning, breach, escalation, progress_reminder, follow_up_due, cleared, surge_started, surge_ended)."),
    def!(ESCALATIONS_TOTAL, Counter, Count, &["policy", "rule", "level"],
        "Escalation events handed to the producer, by ladder level."),
    def!(SURGE_TRANSITIONS_TOTAL, Counter, Count, &["dimension", "transition"],
        "Surge transitions (R26) by dimension (channel | category) and transition (started | ended)."),
    def!(SURGES_ACTIVE, Gauge, Count, &["dimension"],
        "Surges currently active among the surge partitions this replica owns, by dimension."),
    def!(OPEN_TICKETS, Gauge, Count, PART,
        "Tickets held in live state (not closed), per input partition owned by this replica."),
    def!(RUNNING_CLOCKS, Gauge, Count, PART,
        "SLA clocks running, per input partition owned by this replica."),
    def!(PREOPEN_BUFFERED_TICKETS, Gauge, Count, PART,
        "Unknown tickets whose events wait in the pre-open buffer, per partition."),
    def!(WATERMARK_DELAY_SECONDS, Gauge, Seconds, PART,
        "Wall clock minus the partition's watermark; about the allowed lateness when caught up."),
    def!(CONSUMER_LAG_MESSAGES, Gauge, Count, PART,
        "Consumer lag in records (high watermark minus position), per partition owned by this replica."),
    def!(ASSIGNED_PARTITIONS, Gauge, Count, &[],
        "Input partitions currently assigned to this replica."),
    def!(EVENTS_CONSUMED_TOTAL, Counter, Count, &["format"],
        "Input records read, including those later rejected, by wire format as read: json | protobuf | schema-registry-json | schema-registry-protobuf | unrecognised (the topic's format, the content-type header or the bytes decide)."),
    def!(EVENTS_DUPLICATE_TOTAL, Counter, Count, &[],
        "Events ignored because their event id was already applied to the ticket."),
    def!(EVENTS_LATE_TOTAL, Counter, Count, &[],
        "Events whose occurred_at was below the partition watermark on arrival (applied, cannot un-fire)."),
    def!(EVENTS_REJECTED_TOTAL, Counter, Count, &["reason"],
        "Records rejected and written to the dead-letter topic, by reason."),
    def!(UNKNOWN_ENUM_VALUES_TOTAL, Counter, Count, &[],
        "Unknown enum values accepted as UNSPECIFIED (the event is kept, not rejected)."),
    def!(SECOND_OPENED_IGNORED_TOTAL, Counter, Count, &[],
        "Second 'opened' events for an already opened ticket, ignored."),
    def!(IDLE_TICKETS_DROPPED_TOTAL, Counter, Count, &[],
        "Tickets dropped after idle_ttl without events (event time)."),
    def!(EVENT_TO_DECISION_SECONDS, Histogram, Seconds, &[],
        "Seconds from polling an input record to its outputs being decided, including the wait for the watermark."),
    def!(OUTPUT_DELAY_SECONDS, Histogram, Seconds, &[],
        "Seconds from an output being due (deadline + allowed lateness for timers) to its hand-over to the producer."),
    def!(TRANSACTION_COMMIT_SECONDS, Histogram, Seconds, &[],
        "Kafka transaction commit duration."),
    def!(TRANSACTIONS_TOTAL, Counter, Count, &["outcome"],
        "Kafka transactions by outcome (committed | aborted)."),
    def!(HELD_RELEASES_TOTAL, Counter, Count, &["kind"],
        "Releases of committed offsets or state partitions held for seconds after a broker outage, one per producer transaction: aborted (what our producers left open, dropped), committed (records of a transaction that committed without its markers there), rolled_forward (a transaction of ours no partition got a marker of: its state and offsets committed). Any but aborted means the broker skipped transaction markers."),
    def!(ERRORS_TOTAL, Counter, Count, &["reason"],
        "Failures of the processor's Kafka work by reason (the operation that failed: begin_transaction, send_offsets, commit_transaction, abort_transaction, commit_offsets, produce, delivery, undelivered, commit_stuck, no_group_metadata, consumer_fatal, restore); each one aborts and restores, stops, or retries."),
    def!(COMMIT_INTERVAL_SECONDS, Gauge, Seconds, &[],
        "Commit interval chosen for the last commit: commit_interval_ms when caught up (and for the first commit after partitions go live), 10x that while a backlog drains."),
    def!(RESTORE_DURATION_SECONDS, Histogram, Seconds, &[],
        "Time to restore one partition's state after assignment."),
    def!(RESTORED_BYTES_TOTAL, Counter, Bytes, &[],
        "Bytes of state read while restoring partitions."),
    def!(RESTORED_TICKETS_TOTAL, Counter, Count, &[],
        "Tickets restored into live state."),
    def!(RESTORING_PARTITIONS, Gauge, Count, &[],
        "Partitions assigned to this replica whose state is still being restored."),
    def!(READY, Gauge, Count, &[],
        "1 when every assigned partition is restored and consuming (the /readyz answer), else 0."),
    def!(REBALANCES_TOTAL, Counter, Count, &["kind"],
        "Consumer-group rebalance callbacks, by kind (assign | revoke | lost)."),
    def!(BUILD_INFO, Gauge, Count, &["version"],
        "Always 1; the label carries the slawatch version."),
];

/// Looks a metric up in the catalogue.
pub fn lookup(name: &str) -> Option<&'static MetricDef> {
    CATALOGUE.iter().find(|d| d.name == name)
}

/// Registers every metric's description and unit with the installed recorder.
pub fn describe() {
    for d in CATALOGUE {
        match d.kind {
            MetricType::Counter => describe_counter!(d.name, d.unit, d.help),
            MetricType::Gauge => describe_gauge!(d.name, d.unit, d.help),
            MetricType::Histogram => describe_histogram!(d.name, d.unit, d.help),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Buckets
// ---------------------------------------------------------------------------------------------

/// Buckets of the SLA latency histograms, seconds: 1 s … 24 h, plus 2 d and 7 d.
pub const SLA_LATENCY_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 900.0,
    1200.0, 1800.0, 2700.0, 3600.0, 7200.0, 14400.0, 28800.0, 43200.0, 86400.0, 172800.0, 604800.0,
];

/// Buckets of the internal latency histograms, seconds: 0.5 ms … 60 s.
pub const INTERNAL_LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Buckets of the restore-duration histogram, seconds: 10 ms … 10 min.
pub const RESTORE_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_convention() {
        let mut seen = std::collections::HashSet::new();
        for d in CATALOGUE {
            assert!(seen.insert(d.name), "{} listed twice", d.name);
            assert!(d.name.starts_with("slawatch_"), "{}", d.name);
            assert!(
                d.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                d.name
            );
            match d.kind {
                MetricType::Counter => assert!(d.name.ends_with("_total"), "{}", d.name),
                _ => assert!(!d.name.ends_with("_total"), "{}", d.name),
            }
            if d.kind != MetricType::Counter {
                let unit_suffix = match d.unit {
                    Unit::Seconds => "_seconds",
                    Unit::Bytes => "_bytes",
                    _ => "",
                };
                assert!(d.name.ends_with(unit_suffix), "{}", d.name);
            }
            assert!(!d.help.is_empty());
            for l in d.labels {
                assert!(
                    ![
                        "ticket",
                        "ticket_id",
                        "tenant",
                        "team",
                        "event_id",
                        "offset"
                    ]
                    .contains(l),
                    "{} has an unbounded label {l}",
                    d.name
                );
            }
        }
    }
}
