//! Handles of the metrics recorded per record and per output, registered once.
//!
//! `counter!(name, labels…)` looks its key up in the recorder's registry on every call:
//! it hashes the name and labels, takes a read lock and compares keys. Per record that was
//! ~5 % of a backlog drain's CPU (perf, docs/performance.md). A processing thread holds one
//! [`HotMeters`], made after the recorder is installed, and records through its handles.

use std::collections::HashMap;
use std::time::Duration;

use metrics::{counter, histogram, Counter, Histogram};

use super::{
    policy_label, record_output_kind_counters, rule_label, FormatLabel, OutputKind,
    EVENTS_CONSUMED_TOTAL, EVENT_TO_DECISION_SECONDS, OUTPUT_DELAY_SECONDS, SLA_OUTPUTS_TOTAL,
};
use crate::core::model::SlaOutput;

/// The per-record metrics of one processing thread (see the module docs).
pub struct HotMeters {
    /// `slawatch_events_consumed_total` by format, indexed by `FormatLabel as usize`.
    consumed: Vec<Counter>,
    decision: Histogram,
    output_delay: Histogram,
    /// `slawatch_sla_outputs_total` by "kind\0policy\0rule" (ids are bounded as labels are,
    /// so the map is too).
    outputs: HashMap<String, Counter>,
    /// The key being looked up, reused so a lookup allocates nothing.
    scratch: String,
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
            outputs: HashMap::new(),
            scratch: String::new(),
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
        self.scratch.clear();
        self.scratch.push_str(kind.as_str());
        self.scratch.push('\0');
        self.scratch.push_str(&out.policy_id);
        self.scratch.push('\0');
        self.scratch.push_str(&out.rule_id);
        match self.outputs.get(self.scratch.as_str()) {
            Some(c) => c.increment(1),
            None => {
                let c = counter!(SLA_OUTPUTS_TOTAL,
                    "kind" => kind.as_str(),
                    "policy" => policy_label(&out.policy_id),
                    "rule" => rule_label(&out.rule_id));
                c.increment(1);
                self.outputs.insert(self.scratch.clone(), c);
            }
        }
        record_output_kind_counters(out);
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
    use std::sync::Arc;

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

    #[test]
    fn the_consumed_counters_follow_the_format_labels_order() {
        for (i, f) in FormatLabel::ALL.iter().enumerate() {
            assert_eq!(*f as usize, i, "{f:?}");
        }
    }
}
