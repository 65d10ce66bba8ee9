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
//!
//! # Layout
//! | module | what |
//! |---|---|
//! | [`catalogue`] | metric names, the catalogue (type, unit, labels, help), buckets |
//! | [`labels`] | the label sets and the bounded runtime label interners |
//! | this module | the recording functions: the only code that touches a metric |
//! | [`quantiles`] | the sliding-window p50/p95 machinery behind the single-instance gauges |
//! | [`exporter`] | installing the recorder and the gauge refresher |
mod catalogue;
mod exporter;
mod hot;
mod labels;
mod quantiles;
pub use catalogue::*;
pub use exporter::*;
pub use hot::HotMeters;
pub use labels::*;
pub use quantiles::*;

use crate::core::model::{Channel, OutputBody, Urgency};
use crate::core::policy::LatencyMetric;
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

/// A transaction ended; `commit_time` is measured for committed ones.
pub fn transaction(outcome: TxnOutcome, commit_time: Option<Duration>) {
    counter!(TRANSACTIONS_TOTAL, "outcome" => outcome.as_str()).increment(1);
    if let Some(t) = commit_time {
        histogram!(TRANSACTION_COMMIT_SECONDS).record(t.as_secs_f64());
    }
}

/// `count` releases of held offsets or state partitions ended as `kind`.
pub fn held_releases(kind: HeldRelease, count: usize) {
    counter!(HELD_RELEASES_TOTAL, "kind" => kind.as_str()).increment(count as u64);
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
    for k in HeldRelease::ALL {
        counter!(HELD_RELEASES_TOTAL, "kind" => k.as_str()).absolute(0);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::SlaOutput;
    use metrics_exporter_prometheus::PrometheusRecorder;

    fn local_recorder() -> PrometheusRecorder {
        prometheus_builder().unwrap().build_recorder()
    }

    #[test]
    fn histograms_render_with_their_buckets() {
        let recorder = local_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            record_first_response("chat-urgent", Channel::Chat, Urgency::Urgent, 20.0);
            record_first_response("chat-urgent", Channel::Chat, Urgency::Urgent, 50_000.0);
            HotMeters::new().event_to_decision(Duration::from_millis(3));
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
            HotMeters::new().output(&out);
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
}
