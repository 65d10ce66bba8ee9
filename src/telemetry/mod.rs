//! The metric catalogue: every metric slawatch exports, its type, unit and labels, and the
//! only functions that record them.
//!
//! # Rules
//! - Names are `slawatch_<what>_<unit>`; counters end in `_total`. They are `pub const`s here
//!   and nowhere else; [`CATALOGUE`] lists them with their help text, unit and labels, and
//!   [`describe`] registers that with the recorder. The Prometheus rules and the Grafana
//!   dashboard in `deploy/` use these names; `tests/promtool.rs` checks they exist here.
//! - **Labels come from small fixed sets.** Callers never pass a free-form label: they pass
//!   typed values ([`Channel`], [`Urgency`], [`RejectReason`], [`RebalanceKind`], …) whose
//!   label text is a `&'static str`. Three labels take runtime values, each bounded:
//!   `policy` and `rule` (ids from the loaded policy file; interned, at most
//!   [`MAX_POLICY_LABELS`] / [`MAX_RULE_LABELS`] distinct values, the rest read `other`) and
//!   `partition` (the Kafka partition number, bounded by the input topic's partition count;
//!   numbers at or above [`MAX_PARTITION_LABELS`] read `overflow`).
//! - **Never** a ticket id, tenant, team, event id, topic offset, error text or anything else
//!   that grows with the input. Tenants in particular are unbounded: surges are counted by
//!   dimension (`channel` | `category`), not by tenant; the tenant is on the SurgeStarted
//!   output event itself. Secrets and configuration values never appear in labels.
//! - So the series count is a small constant times the number of policies, rules and
//!   partitions, and rendering `/metrics` stays cheap however much traffic flows.
//!
//! # Histograms
//! The SLA latency histograms (`slawatch_first_response_seconds`, `…next_response…`,
//! `…resolution…`) record the clock's counted time (what the SLA judged) with buckets
//! [`SLA_LATENCY_BUCKETS`] that resolve 1 s … 24 h (and a 2 d / 7 d tail), so
//! `histogram_quantile(0.95, sum by (le, channel) (rate(slawatch_first_response_seconds_bucket[5m])))`
//! gives the p95 across replicas to within one bucket. A policy clock feeds the histogram its
//! `metric` names (no clock id is special here). Every ticket counts once per cycle (rule 12):
//! a clock that ends without its stop (closed, cancelled, dropped idle unanswered) is recorded
//! as censored, at [`CENSORED_SAMPLE_SECONDS`], above every finite bucket — so it lands in the
//! `+Inf` bucket only and a p95 among unanswered tickets reads as "above the largest bucket",
//! never as a fast answer. (`_sum` counts a censored ticket at that value: use the buckets.)
//! The target of each policy's clock is published as [`SLA_TARGET_SECONDS`], so the p95 alert
//! compares against the policy, not against constants. Internal latencies (event-to-decision,
//! output delay, transaction commit) use the millisecond-scale [`INTERNAL_LATENCY_BUCKETS`].
//!
//! # Single-instance quantiles
//! Beside the histograms every SLA latency sample also goes into a small per-(policy, channel,
//! urgency) ring buffer ([`LatencyWindows`]); on every refresh tick the nearest-rank p50 and
//! p95 of each window are published as gauges (`slawatch_first_response_p50_seconds`, …).
//! They describe this replica only; use the histograms for the fleet.
//!
//! # Wiring
//! Call [`install_exporter`] (own HTTP listener) or [`install_recorder`] (render the returned
//! handle from the admin server's `/metrics`) once, inside a tokio runtime. Both describe every
//! metric, pre-register the fixed-label counters at zero (so `rate()` and `increase()` see
//! their first increment) and spawn the quantile refresher. Call
//! [`register_policy_series`] when a policy set is loaded.
mod quantiles;
pub use quantiles::*;

use crate::core::model::{Channel, OutputBody, SlaOutput, Urgency};
use crate::core::policy::LatencyMetric;
use crate::core::ticket::Observation;
use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, SharedString,
    Unit,
};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

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

const PCU: &[&str] = &["policy", "channel", "urgency"];
const PART: &[&str] = &["partition"];

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
    def!(ERRORS_TOTAL, Counter, Count, &["reason"],
        "Failures of the processor's Kafka work by reason (the operation that failed: begin_transaction, send_offsets, commit_transaction, abort_transaction, commit_offsets, produce, delivery, undelivered, no_group_metadata, consumer_fatal, restore); each one aborts and restores, stops, or retries."),
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

// ---------------------------------------------------------------------------------------------
// Label sets
// ---------------------------------------------------------------------------------------------

macro_rules! label_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vm])* $variant),+
        }
        impl $name {
            /// Every value, i.e. the whole label set.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The label value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }
    };
}

label_enum!(
    /// The SLA latency a sample belongs to.
    LatencyKind { FirstResponse => "first_response", NextResponse => "next_response", Resolution => "resolution" }
);

impl LatencyKind {
    /// The histogram this kind records into.
    pub const fn histogram(self) -> &'static str {
        match self {
            LatencyKind::FirstResponse => FIRST_RESPONSE_SECONDS,
            LatencyKind::NextResponse => NEXT_RESPONSE_SECONDS,
            LatencyKind::Resolution => RESOLUTION_SECONDS,
        }
    }
    /// The (p50, p95) in-process gauges of this kind.
    pub const fn quantile_gauges(self) -> (&'static str, &'static str) {
        match self {
            LatencyKind::FirstResponse => (FIRST_RESPONSE_P50_SECONDS, FIRST_RESPONSE_P95_SECONDS),
            LatencyKind::NextResponse => (NEXT_RESPONSE_P50_SECONDS, NEXT_RESPONSE_P95_SECONDS),
            LatencyKind::Resolution => (RESOLUTION_P50_SECONDS, RESOLUTION_P95_SECONDS),
        }
    }
    /// The histogram a clock's `metric` names.
    pub const fn of(metric: LatencyMetric) -> LatencyKind {
        match metric {
            LatencyMetric::FirstResponse => LatencyKind::FirstResponse,
            LatencyMetric::NextResponse => LatencyKind::NextResponse,
            LatencyMetric::Resolution => LatencyKind::Resolution,
        }
    }
}

label_enum!(
    /// Kind of an SLA output event (`kind` on `slawatch_sla_outputs_total`).
    OutputKind {
        Warning => "warning",
        Breach => "breach",
        Escalation => "escalation",
        ProgressReminder => "progress_reminder",
        FollowUpDue => "follow_up_due",
        Cleared => "cleared",
        SurgeStarted => "surge_started",
        SurgeEnded => "surge_ended",
    }
);

impl OutputKind {
    pub fn of(body: &OutputBody) -> OutputKind {
        match body {
            OutputBody::Warning { .. } => OutputKind::Warning,
            OutputBody::Breach { .. } => OutputKind::Breach,
            OutputBody::Escalation { .. } => OutputKind::Escalation,
            OutputBody::ProgressReminder { .. } => OutputKind::ProgressReminder,
            OutputBody::FollowUpDue => OutputKind::FollowUpDue,
            OutputBody::Cleared { .. } => OutputKind::Cleared,
            OutputBody::SurgeStarted { .. } => OutputKind::SurgeStarted,
            OutputBody::SurgeEnded { .. } => OutputKind::SurgeEnded,
        }
    }
    /// Kinds emitted by a ticket's clocks (all but the surge kinds).
    pub const TICKET_KINDS: &'static [OutputKind] = &[
        OutputKind::Warning,
        OutputKind::Breach,
        OutputKind::Escalation,
        OutputKind::ProgressReminder,
        OutputKind::FollowUpDue,
        OutputKind::Cleared,
    ];
}

label_enum!(
    /// Wire format of an input record, as read (codec::framing::WireFormat).
    FormatLabel {
        Json => "json",
        Protobuf => "protobuf",
        SchemaRegistryJson => "schema-registry-json",
        SchemaRegistryProtobuf => "schema-registry-protobuf",
        /// None of them (dead-lettered), or a content-type header slawatch does not read.
        Unrecognised => "unrecognised",
    }
);

label_enum!(
    /// Why a record went to the dead-letter topic. The same text is the dead-letter record's
    /// `reason` header.
    RejectReason {
        /// Bytes that decode as neither protobuf nor proto3 JSON.
        Undecodable => "undecodable",
        /// A content-type header slawatch does not read.
        ContentType => "content_type",
        /// No body, ticket id, event id or timestamp.
        MissingField => "missing_field",
        /// E.g. `urgency_changed` to UNSPECIFIED, `escalated` to an UNSPECIFIED role.
        InvalidValue => "invalid_value",
        /// Record key ≠ ticket id.
        KeyMismatch => "key_mismatch",
        /// occurred_at too far ahead of the Kafka record timestamp.
        ClockSkew => "clock_skew",
        /// Record larger than the configured maximum.
        Oversize => "oversize",
        /// Pre-open buffer full.
        PreopenOverflow => "preopen_overflow",
        /// Waited in the pre-open buffer longer than its bound.
        PreopenExpired => "preopen_expired",
        /// Open-ticket cap of the partition reached.
        Capacity => "capacity",
        /// The ticket was dropped by `idle_ttl` or is past `closed_retention` (rule 9).
        TicketExpired => "ticket_expired",
    }
);

impl RejectReason {
    /// The reason of a label text (the dead-letter `reason` header), if it is one.
    pub fn from_label(s: &str) -> Option<RejectReason> {
        RejectReason::ALL.iter().copied().find(|r| r.as_str() == s)
    }
}

impl From<&crate::codec::DecodeError> for RejectReason {
    fn from(e: &crate::codec::DecodeError) -> RejectReason {
        use crate::codec::DecodeError as E;
        match e {
            E::Undecodable { .. } | E::Unrecognised(_) => RejectReason::Undecodable,
            E::ContentType(_) => RejectReason::ContentType,
            E::MissingField(_) => RejectReason::MissingField,
            E::InvalidValue(_) => RejectReason::InvalidValue,
        }
    }
}

impl From<Option<crate::codec::framing::WireFormat>> for FormatLabel {
    fn from(f: Option<crate::codec::framing::WireFormat>) -> FormatLabel {
        use crate::codec::framing::WireFormat as W;
        match f {
            Some(W::Json) => FormatLabel::Json,
            Some(W::Protobuf) => FormatLabel::Protobuf,
            Some(W::SchemaRegistryJson) => FormatLabel::SchemaRegistryJson,
            Some(W::SchemaRegistryProtobuf) => FormatLabel::SchemaRegistryProtobuf,
            None => FormatLabel::Unrecognised,
        }
    }
}

impl From<crate::codec::Format> for FormatLabel {
    fn from(f: crate::codec::Format) -> FormatLabel {
        match f {
            crate::codec::Format::Json => FormatLabel::Json,
            crate::codec::Format::Protobuf => FormatLabel::Protobuf,
        }
    }
}

label_enum!(
    /// Consumer-group rebalance callback.
    RebalanceKind { Assign => "assign", Revoke => "revoke", Lost => "lost" }
);

label_enum!(
    /// Dimension of a surge (R26): tenant × channel or tenant × complaint category.
    SurgeDimension { Channel => "channel", Category => "category" }
);

impl SurgeDimension {
    /// The dimension of a surge output: by channel when it names one, else by category.
    pub fn of(channel: Channel) -> SurgeDimension {
        if channel != Channel::Unspecified {
            SurgeDimension::Channel
        } else {
            SurgeDimension::Category
        }
    }
}

label_enum!(
    /// Direction of a surge transition.
    SurgeTransition { Started => "started", Ended => "ended" }
);

label_enum!(
    /// Outcome of a Kafka transaction.
    TxnOutcome { Committed => "committed", Aborted => "aborted" }
);

label_enum!(
    /// Why the processor's Kafka work failed (`runtime::kafka::txn::TxnError` and the
    /// consumer / restore failures), by the operation that failed.
    ErrorReason {
        BeginTransaction => "begin_transaction",
        SendOffsets => "send_offsets",
        CommitTransaction => "commit_transaction",
        AbortTransaction => "abort_transaction",
        CommitOffsets => "commit_offsets",
        Produce => "produce",
        Delivery => "delivery",
        Undelivered => "undelivered",
        NoGroupMetadata => "no_group_metadata",
        ConsumerFatal => "consumer_fatal",
        Restore => "restore",
    }
);

/// Distinct `policy` label values before further ones read `other`.
pub const MAX_POLICY_LABELS: usize = 64;
/// Distinct `rule` label values before further ones read `other`.
pub const MAX_RULE_LABELS: usize = 128;
/// Partition numbers at or above this read `overflow`.
pub const MAX_PARTITION_LABELS: i32 = 1024;
/// Label value for values past a cap.
pub const OTHER_LABEL: &str = "other";
/// Label value for an empty policy or rule id (e.g. surge outputs without a policy).
pub const NONE_LABEL: &str = "none";

/// Interns runtime label values up to a fixed number of distinct values; the rest read
/// [`OTHER_LABEL`]. Guards the `policy` and `rule` labels against unbounded input.
pub struct BoundedLabels {
    cap: usize,
    values: RwLock<HashMap<Box<str>, SharedString>>,
}

impl BoundedLabels {
    pub fn new(cap: usize) -> BoundedLabels {
        BoundedLabels {
            cap,
            values: RwLock::new(HashMap::new()),
        }
    }

    /// The label value for `v`: `v` itself while fewer than `cap` distinct values were seen,
    /// `none` for the empty string, `other` past the cap.
    pub fn get(&self, v: &str) -> SharedString {
        if v.is_empty() {
            return SharedString::const_str(NONE_LABEL);
        }
        if let Some(s) = self.values.read().unwrap_or_else(|e| e.into_inner()).get(v) {
            return s.clone();
        }
        let mut map = self.values.write().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get(v) {
            return s.clone();
        }
        if map.len() >= self.cap {
            return SharedString::const_str(OTHER_LABEL);
        }
        let shared = SharedString::from_shared(Arc::<str>::from(v));
        map.insert(v.into(), shared.clone());
        shared
    }

    /// Distinct values interned so far.
    pub fn len(&self) -> usize {
        self.values.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn policy_labels() -> &'static BoundedLabels {
    static P: OnceLock<BoundedLabels> = OnceLock::new();
    P.get_or_init(|| BoundedLabels::new(MAX_POLICY_LABELS))
}

fn rule_labels() -> &'static BoundedLabels {
    static R: OnceLock<BoundedLabels> = OnceLock::new();
    R.get_or_init(|| BoundedLabels::new(MAX_RULE_LABELS))
}

/// `policy` label of a policy id (bounded).
pub fn policy_label(policy: &str) -> SharedString {
    policy_labels().get(policy)
}

/// `rule` label of a rule id (bounded).
pub fn rule_label(rule: &str) -> SharedString {
    rule_labels().get(rule)
}

/// `partition` label: the number, or `overflow` past [`MAX_PARTITION_LABELS`] (or negative).
pub fn partition_label(partition: i32) -> SharedString {
    if (0..MAX_PARTITION_LABELS).contains(&partition) {
        SharedString::from_owned(partition.to_string())
    } else {
        SharedString::const_str("overflow")
    }
}

/// `level` label of an escalation level: `0` … `9`, then `10_plus`.
pub const fn level_label(level: u32) -> &'static str {
    const LEVELS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    if level < 10 {
        LEVELS[level as usize]
    } else {
        "10_plus"
    }
}

/// `channel` label.
pub fn channel_label(channel: Channel) -> &'static str {
    channel.as_str()
}

/// `urgency` label: the effective urgency (UNSPECIFIED counts as general, as in matching).
pub fn urgency_label(urgency: Urgency) -> &'static str {
    urgency.effective().as_str()
}

// ---------------------------------------------------------------------------------------------
// Recording helpers
// ---------------------------------------------------------------------------------------------

fn clean_secs(secs: f64) -> Option<f64> {
    if secs.is_nan() {
        None
    } else {
        Some(secs.max(0.0))
    }
}

/// Records one SLA latency sample (the clock's counted time at its stop): the fleet histogram
/// and this replica's sliding window.
pub fn record_latency(
    kind: LatencyKind,
    policy: &str,
    channel: Channel,
    urgency: Urgency,
    secs: f64,
) {
    let Some(secs) = clean_secs(secs) else {
        return;
    };
    let policy = policy_label(policy);
    histogram!(kind.histogram(),
        "policy" => policy.clone(),
        "channel" => channel_label(channel),
        "urgency" => urgency_label(urgency))
    .record(secs);
    windows().record(
        WindowKey {
            kind,
            policy,
            channel,
            urgency: urgency.effective(),
        },
        secs,
        Instant::now(),
    );
}

/// The value a censored sample is recorded at: twice the largest finite bucket, so it falls in
/// the `+Inf` bucket only (rule 12).
pub const CENSORED_SAMPLE_SECONDS: f64 = 1_209_600.0;

/// One censored sample (a clock with this metric ended without its stop): the histogram's
/// `+Inf` bucket, and `+Inf` in this replica's window (so its p95 gauge reads `+Inf` when the
/// p95 falls among unanswered tickets).
pub fn record_censored(kind: LatencyKind, policy: &str, channel: Channel, urgency: Urgency) {
    let policy = policy_label(policy);
    histogram!(kind.histogram(),
        "policy" => policy.clone(),
        "channel" => channel_label(channel),
        "urgency" => urgency_label(urgency))
    .record(CENSORED_SAMPLE_SECONDS);
    windows().record(
        WindowKey {
            kind,
            policy,
            channel,
            urgency: urgency.effective(),
        },
        f64::INFINITY,
        Instant::now(),
    );
}

/// Records an engine observation in the histogram its clock's `metric` names (none without
/// a metric): its counted time when answered, `+Inf` when censored.
pub fn record_observation(obs: &Observation) {
    let Some(metric) = obs.metric else {
        return;
    };
    let kind = LatencyKind::of(metric);
    if obs.censored {
        record_censored(kind, &obs.policy_id, obs.channel, obs.urgency);
    } else {
        record_latency(
            kind,
            &obs.policy_id,
            obs.channel,
            obs.urgency,
            obs.counted.as_secs_f64(),
        );
    }
}

/// First response: the first_response clock stopped in time or after its breach.
pub fn record_first_response(policy: &str, channel: Channel, urgency: Urgency, secs: f64) {
    record_latency(LatencyKind::FirstResponse, policy, channel, urgency, secs);
}

/// Next response: a next_response clock stopped.
pub fn record_next_response(policy: &str, channel: Channel, urgency: Urgency, secs: f64) {
    record_latency(LatencyKind::NextResponse, policy, channel, urgency, secs);
}

/// Resolution: the resolution clock stopped.
pub fn record_resolution(policy: &str, channel: Channel, urgency: Urgency, secs: f64) {
    record_latency(LatencyKind::Resolution, policy, channel, urgency, secs);
}

/// One SLA output handed to the producer.
pub fn sla_output(kind: OutputKind, policy: &str, rule: &str) {
    counter!(SLA_OUTPUTS_TOTAL,
        "kind" => kind.as_str(),
        "policy" => policy_label(policy),
        "rule" => rule_label(rule))
    .increment(1);
}

/// One escalation handed to the producer (in addition to its `sla_output`).
pub fn escalation(policy: &str, rule: &str, level: u32) {
    counter!(ESCALATIONS_TOTAL,
        "policy" => policy_label(policy),
        "rule" => rule_label(rule),
        "level" => level_label(level))
    .increment(1);
}

/// Everything an output counts for: `sla_output`, plus `escalation` or `surge_transition`.
/// Call once per output handed to the producer.
pub fn record_output(out: &SlaOutput) {
    let kind = OutputKind::of(&out.body);
    sla_output(kind, &out.policy_id, &out.rule_id);
    match &out.body {
        OutputBody::Escalation { level, .. } => escalation(&out.policy_id, &out.rule_id, *level),
        OutputBody::SurgeStarted { channel, .. } => {
            surge_transition(SurgeDimension::of(*channel), SurgeTransition::Started)
        }
        OutputBody::SurgeEnded { channel, .. } => {
            surge_transition(SurgeDimension::of(*channel), SurgeTransition::Ended)
        }
        _ => {}
    }
}

/// A surge started or ended.
pub fn surge_transition(dimension: SurgeDimension, transition: SurgeTransition) {
    counter!(SURGE_TRANSITIONS_TOTAL,
        "dimension" => dimension.as_str(),
        "transition" => transition.as_str())
    .increment(1);
}

/// Surges currently active on this replica, per dimension.
pub fn set_surges_active(dimension: SurgeDimension, active: u64) {
    gauge!(SURGES_ACTIVE, "dimension" => dimension.as_str()).set(active as f64);
}

/// Open tickets held for a partition.
pub fn set_open_tickets(partition: i32, n: u64) {
    gauge!(OPEN_TICKETS, "partition" => partition_label(partition)).set(n as f64);
}

/// Running clocks for a partition.
pub fn set_running_clocks(partition: i32, n: u64) {
    gauge!(RUNNING_CLOCKS, "partition" => partition_label(partition)).set(n as f64);
}

/// Tickets in a partition's pre-open buffer.
pub fn set_preopen_buffered(partition: i32, n: u64) {
    gauge!(PREOPEN_BUFFERED_TICKETS, "partition" => partition_label(partition)).set(n as f64);
}

/// Wall clock − watermark of a partition, seconds.
pub fn set_watermark_delay(partition: i32, secs: f64) {
    if let Some(secs) = clean_secs(secs) {
        gauge!(WATERMARK_DELAY_SECONDS, "partition" => partition_label(partition)).set(secs);
    }
}

/// Consumer lag of a partition, records.
pub fn set_consumer_lag(partition: i32, lag: u64) {
    gauge!(CONSUMER_LAG_MESSAGES, "partition" => partition_label(partition)).set(lag as f64);
}

/// Zeroes a revoked or lost partition's gauges, so sums across replicas stay right after the
/// partition moved elsewhere (the recorder cannot delete a series).
pub fn partition_revoked(partition: i32) {
    set_open_tickets(partition, 0);
    set_running_clocks(partition, 0);
    set_preopen_buffered(partition, 0);
    set_watermark_delay(partition, 0.0);
    set_consumer_lag(partition, 0);
}

/// Partitions currently assigned.
pub fn set_assigned_partitions(n: u64) {
    gauge!(ASSIGNED_PARTITIONS).set(n as f64);
}

/// One input record consumed.
pub fn event_consumed(format: FormatLabel) {
    counter!(EVENTS_CONSUMED_TOTAL, "format" => format.as_str()).increment(1);
}

/// A duplicate event id, ignored.
pub fn event_duplicate() {
    counter!(EVENTS_DUPLICATE_TOTAL).increment(1);
}

/// An event below the watermark on arrival.
pub fn event_late() {
    counter!(EVENTS_LATE_TOTAL).increment(1);
}

/// A record sent to the dead-letter topic.
pub fn event_rejected(reason: RejectReason) {
    counter!(EVENTS_REJECTED_TOTAL, "reason" => reason.as_str()).increment(1);
}

/// `n` unknown enum values in one event, accepted as UNSPECIFIED (`Decoded::unknown_enums`).
pub fn unknown_enum_values(n: u64) {
    if n > 0 {
        counter!(UNKNOWN_ENUM_VALUES_TOTAL).increment(n);
    }
}

/// A second `opened`, ignored.
pub fn second_opened_ignored() {
    counter!(SECOND_OPENED_IGNORED_TOTAL).increment(1);
}

/// `n` idle tickets dropped.
pub fn idle_tickets_dropped(n: u64) {
    counter!(IDLE_TICKETS_DROPPED_TOTAL).increment(n);
}

/// Poll-to-decision latency of one record.
pub fn event_to_decision(latency: Duration) {
    histogram!(EVENT_TO_DECISION_SECONDS).record(latency.as_secs_f64());
}

/// Delay of one output past its due time.
pub fn output_delay(delay: Duration) {
    histogram!(OUTPUT_DELAY_SECONDS).record(delay.as_secs_f64());
}

/// A transaction ended; `commit_time` is measured for committed ones.
pub fn transaction(outcome: TxnOutcome, commit_time: Option<Duration>) {
    counter!(TRANSACTIONS_TOTAL, "outcome" => outcome.as_str()).increment(1);
    if let Some(t) = commit_time {
        histogram!(TRANSACTION_COMMIT_SECONDS).record(t.as_secs_f64());
    }
}

/// A failure of the processor's Kafka work.
pub fn error(reason: ErrorReason) {
    counter!(ERRORS_TOTAL, "reason" => reason.as_str()).increment(1);
}

/// The commit interval the commit policy chose.
pub fn set_commit_interval(interval: Duration) {
    gauge!(COMMIT_INTERVAL_SECONDS).set(interval.as_secs_f64());
}

/// One partition's state restored.
pub fn restore_finished(duration: Duration, bytes: u64, tickets: u64) {
    histogram!(RESTORE_DURATION_SECONDS).record(duration.as_secs_f64());
    counter!(RESTORED_BYTES_TOTAL).increment(bytes);
    counter!(RESTORED_TICKETS_TOTAL).increment(tickets);
}

/// Partitions still restoring.
pub fn set_restoring_partitions(n: u64) {
    gauge!(RESTORING_PARTITIONS).set(n as f64);
}

/// Readiness, as `/readyz` reports it.
pub fn set_ready(ready: bool) {
    gauge!(READY).set(if ready { 1.0 } else { 0.0 });
}

/// A rebalance callback.
pub fn rebalance(kind: RebalanceKind) {
    counter!(REBALANCES_TOTAL, "kind" => kind.as_str()).increment(1);
}

/// Sets the build-info gauge.
pub fn set_build_info(version: &'static str) {
    gauge!(BUILD_INFO, "version" => version).set(1.0);
}

/// Registers every series whose labels come only from fixed sets at zero, so the first
/// increment is visible to `rate()` / `increase()` and every dashboard panel has a series.
pub fn register_fixed_series() {
    for f in FormatLabel::ALL {
        counter!(EVENTS_CONSUMED_TOTAL, "format" => f.as_str()).absolute(0);
    }
    for r in RejectReason::ALL {
        counter!(EVENTS_REJECTED_TOTAL, "reason" => r.as_str()).absolute(0);
    }
    for k in RebalanceKind::ALL {
        counter!(REBALANCES_TOTAL, "kind" => k.as_str()).absolute(0);
    }
    for r in ErrorReason::ALL {
        counter!(ERRORS_TOTAL, "reason" => r.as_str()).absolute(0);
    }
    for o in TxnOutcome::ALL {
        counter!(TRANSACTIONS_TOTAL, "outcome" => o.as_str()).absolute(0);
    }
    for d in SurgeDimension::ALL {
        for t in SurgeTransition::ALL {
            counter!(SURGE_TRANSITIONS_TOTAL,
                "dimension" => d.as_str(),
                "transition" => t.as_str())
            .absolute(0);
        }
        gauge!(SURGES_ACTIVE, "dimension" => d.as_str()).increment(0.0);
    }
    for name in [
        EVENTS_DUPLICATE_TOTAL,
        EVENTS_LATE_TOTAL,
        UNKNOWN_ENUM_VALUES_TOTAL,
        SECOND_OPENED_IGNORED_TOTAL,
        IDLE_TICKETS_DROPPED_TOTAL,
        RESTORED_BYTES_TOTAL,
        RESTORED_TICKETS_TOTAL,
    ] {
        counter!(name).absolute(0);
    }
    for name in [
        ASSIGNED_PARTITIONS,
        RESTORING_PARTITIONS,
        READY,
        COMMIT_INTERVAL_SECONDS,
    ] {
        gauge!(name).increment(0.0);
    }
}

/// Registers the per-policy output counters at zero for each of the policy's rules, so the
/// first breach of a rule shows in `rate()`. Call when a policy set is loaded (and reloaded).
pub fn register_policy_series<'a>(policy: &str, rules: impl IntoIterator<Item = &'a str>) {
    let policy = policy_label(policy);
    for rule in rules {
        let rule = rule_label(rule);
        for kind in OutputKind::TICKET_KINDS {
            counter!(SLA_OUTPUTS_TOTAL,
                "kind" => kind.as_str(),
                "policy" => policy.clone(),
                "rule" => rule.clone())
            .absolute(0);
        }
    }
}

/// Publishes the target of a policy's clock that feeds `metric` (`slawatch_sla_target_seconds`).
/// Call when a policy set is loaded (and reloaded), for every policy clock with a metric.
pub fn register_policy_target(policy: &str, metric: LatencyMetric, target_secs: f64) {
    gauge!(SLA_TARGET_SECONDS,
        "policy" => policy_label(policy),
        "metric" => metric.as_str())
    .set(target_secs);
}

// ---------------------------------------------------------------------------------------------
// Exporter
// ---------------------------------------------------------------------------------------------

/// Exporter settings (the listen address is passed separately).
#[derive(Clone, Debug)]
pub struct TelemetryOptions {
    /// Samples kept per (latency kind, policy, channel, urgency) window.
    pub window_samples: usize,
    /// Samples older than this leave the window.
    pub window_max_age: Duration,
    /// How often the in-process quantile gauges are refreshed.
    pub refresh_interval: Duration,
    /// How often the recorder's histograms are drained (keeps `/metrics` rendering cheap).
    pub upkeep_interval: Duration,
    /// The `version` label of `slawatch_build_info`.
    pub version: &'static str,
}

impl Default for TelemetryOptions {
    fn default() -> Self {
        TelemetryOptions {
            window_samples: DEFAULT_WINDOW_SAMPLES,
            window_max_age: DEFAULT_WINDOW_MAX_AGE,
            refresh_interval: Duration::from_secs(10),
            upkeep_interval: Duration::from_secs(5),
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// Errors of installing the metrics exporter.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("the metrics exporter must be installed from inside a tokio runtime")]
    NoRuntime,
    #[error("cannot listen for metrics on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("a metrics recorder is already installed in this process")]
    AlreadyInstalled,
    #[error("invalid metrics exporter configuration: {0}")]
    Config(#[source] BuildError),
}

/// The Prometheus builder with slawatch's buckets: [`SLA_LATENCY_BUCKETS`] for the SLA
/// latency histograms, [`RESTORE_BUCKETS`] for restores, [`INTERNAL_LATENCY_BUCKETS`] for the
/// rest. Unit suffixes are off: the names already carry their unit.
pub fn prometheus_builder() -> Result<PrometheusBuilder, TelemetryError> {
    let mut b = PrometheusBuilder::new()
        .set_enable_unit_suffix(false)
        .set_buckets(INTERNAL_LATENCY_BUCKETS)
        .map_err(TelemetryError::Config)?;
    for name in [
        FIRST_RESPONSE_SECONDS,
        NEXT_RESPONSE_SECONDS,
        RESOLUTION_SECONDS,
    ] {
        b = b
            .set_buckets_for_metric(Matcher::Full(name.to_string()), SLA_LATENCY_BUCKETS)
            .map_err(TelemetryError::Config)?;
    }
    b.set_buckets_for_metric(
        Matcher::Full(RESTORE_DURATION_SECONDS.to_string()),
        RESTORE_BUCKETS,
    )
    .map_err(TelemetryError::Config)
}

fn runtime() -> Result<tokio::runtime::Handle, TelemetryError> {
    tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)
}

fn init_windows(opts: &TelemetryOptions) {
    quantiles::init_windows(opts.window_samples, opts.window_max_age);
}

fn after_install(rt: &tokio::runtime::Handle, opts: &TelemetryOptions) {
    describe();
    register_fixed_series();
    set_build_info(opts.version);
    let every = opts.refresh_interval.max(Duration::from_millis(100));
    rt.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            refresh_window_quantiles();
        }
    });
}

/// Installs the global recorder with its own HTTP listener on `listen` (any path answers
/// with the metrics). Must run inside a tokio runtime; spawns the listener, the recorder's
/// upkeep and the quantile refresher on it.
pub fn install_exporter(
    listen: SocketAddr,
    opts: &TelemetryOptions,
) -> Result<PrometheusHandle, TelemetryError> {
    let rt = runtime()?;
    init_windows(opts);
    let (recorder, exporter) = {
        let _guard = rt.enter();
        prometheus_builder()?
            .with_http_listener(listen)
            .upkeep_timeout(opts.upkeep_interval)
            .build()
            .map_err(|e| match e {
                BuildError::FailedToCreateHTTPListener(reason) => TelemetryError::Listen {
                    addr: listen,
                    reason,
                },
                other => TelemetryError::Config(other),
            })?
    };
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| TelemetryError::AlreadyInstalled)?;
    rt.spawn(async move {
        if let Err(e) = exporter.await {
            tracing::error!(error = ?e, "metrics listener stopped");
        }
    });
    after_install(&rt, opts);
    tracing::info!(%listen, "metrics exporter listening");
    Ok(handle)
}

/// Installs the global recorder without a listener; serve `handle.render()` from the admin
/// server's `/metrics`. Must run inside a tokio runtime; spawns the recorder's upkeep and the
/// quantile refresher on it.
pub fn install_recorder(opts: &TelemetryOptions) -> Result<PrometheusHandle, TelemetryError> {
    let rt = runtime()?;
    init_windows(opts);
    let recorder = prometheus_builder()?.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| TelemetryError::AlreadyInstalled)?;
    let upkeep = handle.clone();
    let every = opts.upkeep_interval.max(Duration::from_millis(100));
    rt.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    after_install(&rt, opts);
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::Category;
    use metrics_exporter_prometheus::PrometheusRecorder;

    fn local_recorder() -> PrometheusRecorder {
        prometheus_builder().unwrap().build_recorder()
    }

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

    #[test]
    fn label_sets_are_fixed_and_distinct() {
        fn check(values: &[&str]) {
            let set: std::collections::HashSet<_> = values.iter().collect();
            assert_eq!(set.len(), values.len());
            for v in values {
                assert!(v.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            }
        }
        check(
            &RejectReason::ALL
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>(),
        );
        check(
            &OutputKind::ALL
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>(),
        );
        assert_eq!(RejectReason::ALL.len(), 11);
        assert_eq!(RejectReason::Capacity.as_str(), "capacity");
        assert_eq!(
            RebalanceKind::ALL
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>(),
            ["assign", "revoke", "lost"]
        );
    }

    #[test]
    fn codec_reasons_and_formats_map_to_the_same_labels() {
        use crate::codec::DecodeError;
        let errors = [
            DecodeError::Undecodable {
                format: "json",
                detail: String::new(),
            },
            DecodeError::ContentType("text/plain".into()),
            DecodeError::MissingField("ticket_id"),
            DecodeError::InvalidValue(String::new()),
            DecodeError::Unrecognised(String::new()),
        ];
        for e in &errors {
            assert_eq!(RejectReason::from(e).as_str(), e.reason());
            assert_eq!(
                RejectReason::from_label(e.reason()),
                Some(RejectReason::from(e))
            );
        }
        for f in [crate::codec::Format::Json, crate::codec::Format::Protobuf] {
            assert_eq!(FormatLabel::from(f).as_str(), f.as_str());
        }
        {
            use crate::codec::framing::WireFormat as W;
            for f in [
                W::Json,
                W::Protobuf,
                W::SchemaRegistryJson,
                W::SchemaRegistryProtobuf,
            ] {
                assert_eq!(FormatLabel::from(Some(f)).as_str(), f.as_str());
            }
            assert_eq!(FormatLabel::from(None).as_str(), "unrecognised");
        }
        assert_eq!(RejectReason::from_label("nope"), None);
    }

    #[test]
    fn output_kind_matches_core_kind_names() {
        let bodies = [
            OutputBody::Warning { fraction: 0.8 },
            OutputBody::Breach {
                overdue: Default::default(),
            },
            OutputBody::Escalation {
                level: 1,
                notify: Arc::from(vec![]),
                reason: Arc::from(""),
            },
            OutputBody::ProgressReminder {
                nth: 1,
                interval: Default::default(),
            },
            OutputBody::FollowUpDue,
            OutputBody::SurgeStarted {
                channel: Channel::Chat,
                category: Category::Unspecified,
                observed_per_min: 0.0,
                baseline_per_min: 0.0,
                ratio: 0.0,
            },
            OutputBody::SurgeEnded {
                channel: Channel::Unspecified,
                category: Category::Complaint,
                observed_per_min: 0.0,
                baseline_per_min: 0.0,
            },
            OutputBody::Cleared {
                overdue: Default::default(),
            },
        ];
        assert_eq!(bodies.len(), OutputKind::ALL.len());
        for b in &bodies {
            assert_eq!(OutputKind::of(b).as_str(), b.kind_name());
        }
    }

    #[test]
    fn label_mapping() {
        assert_eq!(level_label(0), "0");
        assert_eq!(level_label(3), "3");
        assert_eq!(level_label(9), "9");
        assert_eq!(level_label(10), "10_plus");
        assert_eq!(level_label(u32::MAX), "10_plus");
        assert_eq!(&*partition_label(0), "0");
        assert_eq!(&*partition_label(17), "17");
        assert_eq!(&*partition_label(-1), "overflow");
        assert_eq!(&*partition_label(MAX_PARTITION_LABELS), "overflow");
        assert_eq!(urgency_label(Urgency::Unspecified), "general");
        assert_eq!(urgency_label(Urgency::Urgent), "urgent");
        for c in Channel::ALL {
            assert_eq!(channel_label(*c), c.as_str());
        }
        assert_eq!(SurgeDimension::of(Channel::Chat), SurgeDimension::Channel);
        assert_eq!(
            SurgeDimension::of(Channel::Unspecified),
            SurgeDimension::Category
        );
        for (metric, name) in crate::core::policy::LATENCY_METRICS.iter().copied() {
            assert_eq!(LatencyKind::of(metric).as_str(), name);
        }
    }

    #[test]
    fn bounded_labels_cap_distinct_values() {
        let b = BoundedLabels::new(3);
        assert_eq!(&*b.get("chat"), "chat");
        assert_eq!(&*b.get("urgent"), "urgent");
        assert_eq!(&*b.get(""), NONE_LABEL);
        assert_eq!(&*b.get("general"), "general");
        assert_eq!(&*b.get("complaint"), OTHER_LABEL);
        assert_eq!(&*b.get("ticket-123456"), OTHER_LABEL);
        assert_eq!(&*b.get("chat"), "chat");
        assert_eq!(b.len(), 3);
    }

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

    #[test]
    fn histograms_render_with_their_buckets() {
        let recorder = local_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            record_first_response("chat-urgent", Channel::Chat, Urgency::Urgent, 20.0);
            record_first_response("chat-urgent", Channel::Chat, Urgency::Urgent, 50_000.0);
            event_to_decision(Duration::from_millis(3));
            transaction(TxnOutcome::Committed, Some(Duration::from_millis(4)));
            restore_finished(Duration::from_millis(800), 1 << 20, 1000);
        });
        let text = handle.render();
        assert!(
            text.contains("# TYPE slawatch_first_response_seconds histogram"),
            "{text}"
        );
        let bucket = |le: &str| {
            format!(
                "slawatch_first_response_seconds_bucket{{policy=\"chat-urgent\",channel=\"chat\",urgency=\"urgent\",le=\"{le}\"}}"
            )
        };
        assert!(text.contains(&format!("{} 0", bucket("15"))), "{text}");
        assert!(text.contains(&format!("{} 1", bucket("20"))), "{text}");
        assert!(text.contains(&format!("{} 1", bucket("43200"))), "{text}");
        assert!(text.contains(&format!("{} 2", bucket("86400"))), "{text}");
        assert!(text.contains(&format!("{} 2", bucket("+Inf"))), "{text}");
        assert!(text.contains("# HELP slawatch_first_response_seconds First-response"));
        assert!(
            text.contains("slawatch_event_to_decision_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("slawatch_transaction_commit_seconds_bucket{le=\"0.0025\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("slawatch_restore_duration_seconds_bucket{le=\"1\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("slawatch_restored_bytes_total 1048576"),
            "{text}"
        );
        assert!(!text.contains("quantile="), "no summaries: {text}");
    }

    #[test]
    fn fixed_series_and_outputs_render() {
        let recorder = local_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            register_fixed_series();
            register_policy_series("chat", ["R1", "R6"]);
            register_policy_target("chat", LatencyMetric::FirstResponse, 60.0);
            set_build_info("test");
            let out = SlaOutput {
                event_id: crate::core::model::OutputId(0),
                ticket_id: "t-1".into(),
                tenant: "acme".into(),
                policy_id: Arc::from("chat"),
                rule_id: Arc::from("R1"),
                clock: Arc::from("first_response"),
                deadline: crate::core::time::Ts(0),
                target: None,
                fired_at: crate::core::time::Ts(0),
                body: OutputBody::Escalation {
                    level: 2,
                    notify: Arc::from(vec![]),
                    reason: Arc::from(""),
                },
                clock_pos: 0,
            };
            record_output(&out);
            set_open_tickets(3, 42);
            set_consumer_lag(3, 7);
            partition_revoked(4);
            event_rejected(RejectReason::KeyMismatch);
            rebalance(RebalanceKind::Assign);
            set_ready(true);
        });
        let text = handle.render();
        for d in CATALOGUE {
            // Histograms and the window gauges need samples; everything else has a series
            // once the fixed ones are registered and the calls above ran.
            if d.kind == MetricType::Histogram || d.labels == PCU {
                continue;
            }
            assert!(
                text.lines().any(|l| l
                    .strip_prefix(d.name)
                    .is_some_and(|rest| rest.starts_with([' ', '{']))),
                "{} missing from\n{text}",
                d.name
            );
        }
        assert!(text.contains(
            "slawatch_sla_outputs_total{kind=\"escalation\",policy=\"chat\",rule=\"R1\"} 1"
        ));
        assert!(text
            .contains("slawatch_sla_outputs_total{kind=\"breach\",policy=\"chat\",rule=\"R6\"} 0"));
        assert!(
            text.contains("slawatch_escalations_total{policy=\"chat\",rule=\"R1\",level=\"2\"} 1")
        );
        assert!(text.contains("slawatch_open_tickets{partition=\"3\"} 42"));
        assert!(text.contains("slawatch_consumer_lag_messages{partition=\"4\"} 0"));
        assert!(text.contains("slawatch_events_rejected_total{reason=\"key_mismatch\"} 1"));
        assert!(text.contains("slawatch_events_rejected_total{reason=\"capacity\"} 0"));
        assert!(text.contains("slawatch_rebalances_total{kind=\"lost\"} 0"));
        assert!(text.contains("slawatch_ready 1"));
        assert!(text.contains("slawatch_build_info{version=\"test\"} 1"));
        assert!(!text.contains("t-1") && !text.contains("acme"));
    }

    #[test]
    fn window_gauges_publish() {
        let recorder = local_recorder();
        let handle = recorder.handle();
        let ws = LatencyWindows::new(100, Duration::from_secs(600));
        let now = Instant::now();
        for i in 1..=20 {
            ws.record(
                WindowKey {
                    kind: LatencyKind::FirstResponse,
                    policy: policy_label("chat"),
                    channel: Channel::Chat,
                    urgency: Urgency::General,
                },
                f64::from(i),
                now,
            );
        }
        metrics::with_local_recorder(&recorder, || ws.publish(now));
        let text = handle.render();
        assert!(text.contains(
            "slawatch_first_response_p50_seconds{policy=\"chat\",channel=\"chat\",urgency=\"general\"} 10"
        ), "{text}");
        assert!(text.contains(
            "slawatch_first_response_p95_seconds{policy=\"chat\",channel=\"chat\",urgency=\"general\"} 19"
        ), "{text}");
    }

    #[test]
    fn install_needs_a_runtime() {
        assert!(matches!(
            install_recorder(&TelemetryOptions::default()),
            Err(TelemetryError::NoRuntime)
        ));
    }
}
