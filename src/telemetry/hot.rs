//! Handles of the metrics recorded per record, per output and per observation, registered
//! once.
//!
//! `counter!(name, labels…)` looks its key up in the recorder's registry on every call:
//! it hashes the name and labels, takes a read lock and compares keys. Per record that was
//! ~5 % of a backlog drain's CPU (perf, docs/performance.md). A processing thread holds one
//! [`HotMeters`], made after the recorder is installed, and records through its handles.
//! Handles whose labels vary (policy, rule, level; the latency histograms' policy, channel,
//! urgency) are found by a hash of the label values, without building a key; the latency
//! windows' samples are handed over in one lock per batch ([`HotMeters::flush_windows`]).

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashTable;
use metrics::{counter, histogram, Counter, Histogram};
use rustc_hash::FxHasher;

use super::{
    channel_label, clean_secs, level_label, policy_label, rule_label, surge_transition,
    urgency_label, windows, FormatLabel, LatencyKind, OutputKind, SurgeDimension, SurgeTransition,
    WindowKey, CENSORED_SAMPLE_SECONDS, ESCALATIONS_TOTAL, EVENTS_CONSUMED_TOTAL,
    EVENT_TO_DECISION_SECONDS, OUTPUT_DELAY_SECONDS, SLA_OUTPUTS_TOTAL,
};
use crate::core::model::{Channel, OutputBody, SlaOutput, Urgency};
use crate::core::ticket::Observation;

/// The per-record metrics of one processing thread (see the module docs).
pub struct HotMeters {
    /// `slawatch_events_consumed_total` by format, indexed by `FormatLabel as usize`.
    consumed: Vec<Counter>,
    decision: Histogram,
    output_delay: Histogram,
    /// `slawatch_sla_outputs_total` (and `slawatch_escalations_total`) by kind, policy, rule
    /// and level (ids are bounded as labels are, so the table is too).
    outputs: HashTable<OutputMeters>,
    /// The SLA latency histograms by kind, policy, channel and effective urgency.
    latencies: HashTable<LatencyMeters>,
    /// Latency samples not yet handed to this replica's windows.
    window_samples: Vec<(WindowKey, f64)>,
}

/// The counters one output adds to.
struct OutputMeters {
    kind: OutputKind,
    policy: Arc<str>,
    rule: Arc<str>,
    /// The escalation level (0 for other kinds).
    level: u32,
    outputs: Counter,
    /// `slawatch_escalations_total` for escalations.
    escalations: Option<Counter>,
}

/// The histogram and window of one latency label set.
struct LatencyMeters {
    kind: LatencyKind,
    policy: Arc<str>,
    channel: Channel,
    urgency: Urgency,
    histogram: Histogram,
    window: WindowKey,
}

fn output_hash(kind: OutputKind, policy: &str, rule: &str, level: u32) -> u64 {
    let mut h = FxHasher::default();
    (kind, policy, rule, level).hash(&mut h);
    h.finish()
}

fn latency_hash(kind: LatencyKind, policy: &str, channel: Channel, urgency: Urgency) -> u64 {
    let mut h = FxHasher::default();
    (kind, policy, channel, urgency).hash(&mut h);
    h.finish()
}

impl HotMeters {
    /// Registers the handles with the recorder installed now (a no-op recorder before one is).
    pub fn new() -> HotMeters {
        HotMeters {
            consumed: FormatLabel::ALL
                .iter()
                .map(|f| counter!(EVENTS_CONSUMED_TOTAL, "format" => f.as_str()))
                .collect(),
            decision: histogram!(EVENT_TO_DECISION_SECONDS),
            output_delay: histogram!(OUTPUT_DELAY_SECONDS),
            outputs: HashTable::new(),
            latencies: HashTable::new(),
            window_samples: Vec::new(),
        }
    }

    /// One input record consumed.
    pub fn event_consumed(&self, format: FormatLabel) {
        self.consumed[format as usize].increment(1);
    }

    /// Poll-to-decision latency of one record.
    pub fn event_to_decision(&self, latency: Duration) {
        self.decision.record(latency.as_secs_f64());
    }

    /// Delay of one output past its due time.
    pub fn output_delay(&self, delay: Duration) {
        self.output_delay.record(delay.as_secs_f64());
    }

    /// One SLA output handed to the producer: `slawatch_sla_outputs_total`, plus the
    /// escalation or surge-transition counter it also counts for.
    pub fn output(&mut self, out: &SlaOutput) {
        let kind = OutputKind::of(&out.body);
        let level = match out.body {
            OutputBody::Escalation { level, .. } => level,
            _ => 0,
        };
        let (policy, rule) = (&out.policy_id, &out.rule_id);
        let hash = output_hash(kind, policy, rule, level);
        let m = self
            .outputs
            .entry(
                hash,
                |m| {
                    m.kind == kind && m.level == level && *m.policy == **policy && *m.rule == **rule
                },
                |m| output_hash(m.kind, &m.policy, &m.rule, m.level),
            )
            .or_insert_with(|| OutputMeters {
                kind,
                policy: policy.clone(),
                rule: rule.clone(),
                level,
                outputs: counter!(SLA_OUTPUTS_TOTAL,
                    "kind" => kind.as_str(),
                    "policy" => policy_label(policy),
                    "rule" => rule_label(rule)),
                escalations: (kind == OutputKind::Escalation).then(|| {
                    counter!(ESCALATIONS_TOTAL,
                        "policy" => policy_label(policy),
                        "rule" => rule_label(rule),
                        "level" => level_label(level))
                }),
            })
            .into_mut();
        m.outputs.increment(1);
        if let Some(e) = &m.escalations {
            e.increment(1);
        }
        let transition = match out.body {
            OutputBody::SurgeStarted { channel, .. } => Some((channel, SurgeTransition::Started)),
            OutputBody::SurgeEnded { channel, .. } => Some((channel, SurgeTransition::Ended)),
            _ => None,
        };
        // Rare (a tenant's surge starting or ending): through the registry.
        if let Some((channel, t)) = transition {
            surge_transition(SurgeDimension::of(channel), t);
        }
    }

    /// An engine observation, into the histogram its clock's `metric` names (none without a
    /// metric): its counted time when answered, `+Inf` when censored (rule 12); and into this
    /// replica's window at the next [`HotMeters::flush_windows`].
    pub fn observation(&mut self, obs: &Observation) {
        let Some(metric) = obs.metric else {
            return;
        };
        let (recorded, windowed) = if obs.censored {
            (CENSORED_SAMPLE_SECONDS, f64::INFINITY)
        } else {
            match clean_secs(obs.counted.as_secs_f64()) {
                Some(s) => (s, s),
                None => return,
            }
        };
        let kind = LatencyKind::of(metric);
        let (policy, channel, urgency) = (&obs.policy_id, obs.channel, obs.urgency.effective());
        let hash = latency_hash(kind, policy, channel, urgency);
        let m = self
            .latencies
            .entry(
                hash,
                |m| {
                    m.kind == kind
                        && m.channel == channel
                        && m.urgency == urgency
                        && *m.policy == **policy
                },
                |m| latency_hash(m.kind, &m.policy, m.channel, m.urgency),
            )
            .or_insert_with(|| {
                let label = policy_label(policy);
                LatencyMeters {
                    kind,
                    policy: policy.clone(),
                    channel,
                    urgency,
                    histogram: histogram!(kind.histogram(),
                        "policy" => label.clone(),
                        "channel" => channel_label(channel),
                        "urgency" => urgency_label(urgency)),
                    window: WindowKey {
                        kind,
                        policy: label,
                        channel,
                        urgency,
                    },
                }
            })
            .into_mut();
        m.histogram.record(recorded);
        self.window_samples.push((m.window.clone(), windowed));
    }

    /// Hands the latency samples of [`HotMeters::observation`] to this replica's windows, in
    /// one lock.
    pub fn flush_windows(&mut self) {
        if !self.window_samples.is_empty() {
            windows().record_all(self.window_samples.drain(..), Instant::now());
        }
    }

    /// Forgets the handles found by policy and rule ids (after a policy reload, so the
    /// tables hold only the ids in use).
    pub fn forget_labelled(&mut self) {
        self.outputs.clear();
        self.latencies.clear();
    }
}

impl Default for HotMeters {
    fn default() -> HotMeters {
        HotMeters::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::OutputId;
    use crate::core::time::Ts;

    fn breach(policy: &str, rule: &str) -> SlaOutput {
        SlaOutput {
            event_id: OutputId(0),
            ticket_id: "t-1".into(),
            tenant: "acme".into(),
            policy_id: Arc::from(policy),
            rule_id: Arc::from(rule),
            clock: Arc::from("first_response"),
            deadline: Ts(0),
            target: None,
            fired_at: Ts(0),
            body: crate::core::model::OutputBody::Breach {
                overdue: crate::core::time::Dur::from_secs(60),
            },
            clock_pos: 0,
        }
    }

    #[test]
    fn cached_handles_count_every_record_and_output_under_their_own_labels() {
        let recorder = super::super::prometheus_builder().unwrap().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let mut m = HotMeters::new();
            for _ in 0..3 {
                m.event_consumed(FormatLabel::Protobuf);
            }
            m.event_consumed(FormatLabel::Unrecognised);
            m.output(&breach("chat", "R1"));
            m.output(&breach("chat", "R1"));
            m.output(&breach("chat", "R6"));
            m.output(&breach("email", "R1"));
        });
        let text = handle.render();
        for line in [
            "slawatch_events_consumed_total{format=\"protobuf\"} 3",
            "slawatch_events_consumed_total{format=\"unrecognised\"} 1",
            "slawatch_sla_outputs_total{kind=\"breach\",policy=\"chat\",rule=\"R1\"} 2",
            "slawatch_sla_outputs_total{kind=\"breach\",policy=\"chat\",rule=\"R6\"} 1",
            "slawatch_sla_outputs_total{kind=\"breach\",policy=\"email\",rule=\"R1\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    fn escalation(rule: &str, level: u32) -> SlaOutput {
        SlaOutput {
            body: crate::core::model::OutputBody::Escalation {
                level,
                notify: Arc::from(Vec::new()),
                reason: Arc::from("r"),
            },
            ..breach("chat", rule)
        }
    }

    fn observation(policy: &str, counted_secs: i64, censored: bool) -> Observation {
        Observation {
            policy_id: Arc::from(policy),
            clock: Arc::from("first_response"),
            rule_id: Arc::from("R1"),
            metric: Some(crate::core::policy::LatencyMetric::FirstResponse),
            channel: Channel::Chat,
            urgency: Urgency::Unspecified,
            counted: crate::core::time::Dur::from_secs(counted_secs),
            censored,
            breached: false,
            at: Ts(0),
        }
    }

    #[test]
    fn escalations_and_observations_count_under_their_own_labels() {
        let recorder = super::super::prometheus_builder().unwrap().build_recorder();
        let handle = recorder.handle();
        let policy = "hot-meters-test";
        metrics::with_local_recorder(&recorder, || {
            let mut m = HotMeters::new();
            m.output(&escalation("R7", 2));
            m.output(&escalation("R7", 2));
            m.output(&escalation("R7", 3));
            m.output(&SlaOutput {
                body: crate::core::model::OutputBody::SurgeStarted {
                    channel: Channel::Chat,
                    category: crate::core::model::Category::Unspecified,
                    observed_per_min: 30.0,
                    baseline_per_min: 5.0,
                    ratio: 6.0,
                },
                ..breach("chat", "R10")
            });
            m.observation(&observation(policy, 30, false));
            m.observation(&observation(policy, 90, false));
            m.observation(&observation(policy, 10, true));
            m.observation(&Observation {
                metric: None,
                ..observation(policy, 5, false)
            });
            m.flush_windows();
        });
        let text = handle.render();
        let series = format!("{{policy=\"{policy}\",channel=\"chat\",urgency=\"general\"}}");
        for line in [
            "slawatch_sla_outputs_total{kind=\"escalation\",policy=\"chat\",rule=\"R7\"} 3"
                .to_string(),
            "slawatch_escalations_total{policy=\"chat\",rule=\"R7\",level=\"2\"} 2".to_string(),
            "slawatch_escalations_total{policy=\"chat\",rule=\"R7\",level=\"3\"} 1".to_string(),
            "slawatch_surge_transitions_total{dimension=\"channel\",transition=\"started\"} 1"
                .to_string(),
            // Two answered, one censored (above every finite bucket); none without a metric.
            format!("slawatch_first_response_seconds_count{series} 3"),
            format!(
                "slawatch_first_response_seconds_sum{series} {}",
                120.0 + CENSORED_SAMPLE_SECONDS
            ),
        ] {
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
        let window = windows()
            .snapshot(Instant::now())
            .into_iter()
            .find(|w| &*w.key.policy == policy)
            .expect("the observations' window");
        assert_eq!(window.samples, 3);
        assert_eq!(window.key.urgency, Urgency::General);
        assert_eq!(window.p50_p95, Some((90.0, f64::INFINITY)));
    }

    #[test]
    fn the_consumed_counters_follow_the_format_labels_order() {
        for (i, f) in FormatLabel::ALL.iter().enumerate() {
            assert_eq!(*f as usize, i, "{f:?}");
        }
    }
}
