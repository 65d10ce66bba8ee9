//! Given / when / then helpers for engine scenarios: build events, run them through the
//! engine as `replay --until` would, and render outputs as one compact line each.
#![allow(dead_code)]
use slawatch::core::engine::{Emitted, Engine, EngineConfig};
use slawatch::core::model::*;
use slawatch::core::policy::parse::load_policy_file;
use slawatch::core::policy::PolicySet;
use slawatch::core::ticket::Observation;
use slawatch::core::time::{Dur, Ts};
use std::path::Path;
use std::sync::Arc;

pub fn policy(path: &str) -> Arc<PolicySet> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    Arc::new(load_policy_file(&full).unwrap_or_else(|d| {
        panic!(
            "{path}: {}",
            d.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    }))
}

pub fn default_policy() -> Arc<PolicySet> {
    policy("deploy/policies/default.toml")
}

/// `2024-03-04T10:00:00Z`-style instant; a bare `10:00:00` is on 2024-03-04 UTC, and a
/// `+08:00` suffix is Asia/Shanghai.
pub fn t(s: &str) -> Ts {
    let full = if s.len() <= 8 {
        format!("2024-03-04T{s}Z")
    } else {
        s.to_string()
    };
    Ts::parse_rfc3339(&full).unwrap()
}

pub struct Scenario {
    pub events: Vec<Event>,
    seq: u32,
    /// Tenant of the events added next ("acme" unless set).
    tenant: String,
}

pub struct Opened {
    pub channel: Channel,
    pub category: Category,
    pub urgency: Urgency,
    pub tier: Tier,
}

impl Default for Opened {
    fn default() -> Self {
        Opened {
            channel: Channel::Email,
            category: Category::Inquiry,
            urgency: Urgency::General,
            tier: Tier::Standard,
        }
    }
}

impl Scenario {
    pub fn new() -> Self {
        Scenario {
            events: Vec::new(),
            seq: 0,
            tenant: "acme".into(),
        }
    }
    /// Events added from now on belong to `tenant` (rule 11 scenarios).
    pub fn tenant(&mut self, tenant: &str) -> &mut Self {
        self.tenant = tenant.into();
        self
    }
    pub fn event(&mut self, ticket: &str, at: &str, body: Body) -> &mut Self {
        self.seq += 1;
        self.events.push(Event {
            event_id: format!("{ticket}-e{}", self.seq).into(),
            ticket_id: ticket.into(),
            occurred_at: t(at),
            tenant: self.tenant.as_str().into(),
            body,
        });
        self
    }
    pub fn opened(&mut self, ticket: &str, at: &str, o: Opened) -> &mut Self {
        self.event(
            ticket,
            at,
            Body::Opened {
                channel: o.channel,
                category: o.category,
                urgency: o.urgency,
                tier: o.tier,
                team: "".into(),
            },
        )
    }
    pub fn reply(&mut self, ticket: &str, at: &str, kind: ReplyKind) -> &mut Self {
        self.event(
            ticket,
            at,
            Body::AgentMessage {
                kind,
                audience: Audience::Customer,
            },
        )
    }
    pub fn last_time(&self) -> Ts {
        self.events.iter().map(|e| e.occurred_at).max().unwrap()
    }
}

pub struct Run {
    pub outputs: Vec<SlaOutput>,
    pub observations: Vec<Observation>,
    pub emitted: Emitted,
}

/// Runs events in the given order, pumping after each, then `finish(until)` with until =
/// last event + 48 h (docs/sla-semantics.md §4).
pub fn run(policy: &Arc<PolicySet>, events: &[Event]) -> Run {
    let until = events
        .iter()
        .map(|e| e.occurred_at)
        .max()
        .unwrap()
        .saturating_add(Dur::from_secs(48 * 3600));
    run_until(policy, events, until, EngineConfig::default())
}

pub fn run_until(policy: &Arc<PolicySet>, events: &[Event], until: Ts, cfg: EngineConfig) -> Run {
    let mut engine = Engine::new(policy.clone(), cfg);
    let mut out = Emitted::default();
    for e in events {
        engine.ingest(e.clone(), &mut out);
        engine.pump(&mut out);
    }
    engine.finish(Some(until), &mut out);
    Run {
        outputs: std::mem::take(&mut out.outputs),
        observations: std::mem::take(&mut out.observations),
        emitted: out,
    }
}

/// One line per output: `fired_at kind rule clock deadline=…` (+ level/nth/fraction).
pub fn line(o: &SlaOutput) -> String {
    let detail = match &o.body {
        OutputBody::Warning { fraction } => format!(" f={fraction}"),
        OutputBody::Escalation {
            level,
            notify,
            reason,
        } => format!(
            " L{level} [{}] {reason}",
            notify
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ),
        OutputBody::ProgressReminder { nth, .. } => format!(" nth={nth}"),
        OutputBody::Breach { overdue } => format!(" overdue={overdue}"),
        OutputBody::Cleared { overdue } => format!(" overdue={overdue}"),
        _ => String::new(),
    };
    format!(
        "{} {} {} {} {} deadline={}{}",
        o.ticket_id,
        o.fired_at,
        o.body.kind_name(),
        o.rule_id,
        o.clock,
        o.deadline,
        detail
    )
}

pub fn lines(outputs: &[SlaOutput]) -> Vec<String> {
    outputs.iter().map(line).collect()
}

/// Asserts that every expected line is present exactly once.
pub fn assert_has(outputs: &[SlaOutput], expected: &[&str]) {
    let got = lines(outputs);
    for e in expected {
        let n = got.iter().filter(|g| g == e).count();
        assert_eq!(
            n,
            1,
            "expected exactly one {e:?}\n-- got:\n{}",
            got.join("\n")
        );
    }
}

/// Asserts no output of `clock` (or rule) is present.
pub fn assert_none(outputs: &[SlaOutput], pred: impl Fn(&SlaOutput) -> bool, what: &str) {
    let bad: Vec<_> = outputs.iter().filter(|o| pred(o)).map(line).collect();
    assert!(bad.is_empty(), "unexpected {what}:\n{}", bad.join("\n"));
}
