//! `slawatch explain`: one ticket's audit trail under a policy — its events in applied
//! order (out-of-order and rejected ones marked), its policy and overlays, each clock run
//! (start, pauses, counted time, deadline, warnings, breach, escalations, stop) and its
//! outputs with their `event_id`s.
//!
//! The ticket's events are replayed alone: tickets never influence each other's clocks,
//! so its outputs are those of a replay of the whole file (only the partition-wide limits —
//! capacity and the pre-open buffer's size — cannot be reproduced for a single ticket).
use crate::codec::rfc3339_z;
use crate::core::engine::EngineConfig;
use crate::core::model::{Body, OutputBody, SlaOutput};
use crate::core::plan::Plan;
use crate::core::policy::{ClockKind, PolicySet};
use crate::core::ticket::Ticket;
use crate::core::time::{Dur, Ts};
use crate::whatif::trace::{self, ClockRun, History, InputEvent, RejectedLine, RunEnd, TicketLog};
use crate::whatif::PolicyInput;
use compact_str::CompactString;
use rustc_hash::FxHashMap;
use serde::Serialize;
use std::fmt::Write as _;
use std::sync::Arc;

/// A ticket's trail under one policy file.
pub struct Timeline {
    /// The policy file's display name.
    pub policy: String,
    pub log: TicketLog,
    pub set: Arc<PolicySet>,
    pub rejected: Vec<RejectedLine>,
    pub until: Ts,
}

/// The events of one ticket (by tenant and id) and its rejected lines.
pub fn ticket_history(
    history: &History,
    tenant: &str,
    id: &str,
) -> (Vec<InputEvent>, Vec<RejectedLine>) {
    let events = history
        .events
        .iter()
        .filter(|e| e.event.tenant == tenant && e.event.ticket_id == id)
        .cloned()
        .collect();
    let rejected = history
        .rejected
        .iter()
        .filter(|r| r.ticket_id.as_deref() == Some(id))
        .cloned()
        .collect();
    (events, rejected)
}

/// Tenants that have a ticket with this id.
pub fn tenants_of(history: &History, id: &str) -> Vec<String> {
    let mut v: Vec<String> = history
        .events
        .iter()
        .filter(|e| e.event.ticket_id == id)
        .map(|e| e.event.tenant.to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The ticket to explain: its key, its events (rule-4 order) and its rejected lines.
pub struct Subject<'a> {
    pub tenant: &'a str,
    pub id: &'a str,
    pub events: &'a [InputEvent],
    pub rejected: Vec<RejectedLine>,
}

/// One ticket's timeline under `set`, its events replayed alone up to `until`.
pub fn explain(
    policy: &str,
    set: Arc<PolicySet>,
    cfg: &EngineConfig,
    subject: Subject,
    until: Ts,
) -> Timeline {
    let (tenant, id) = (subject.tenant, subject.id);
    let mut t = trace::trace(
        set.clone(),
        cfg.clone(),
        subject.events,
        Some(until),
        true,
        || {},
    );
    let log = match t
        .tickets
        .iter()
        .position(|l| l.tenant == tenant && l.id == id)
    {
        Some(i) => t.tickets.swap_remove(i),
        None => TicketLog::new(tenant.into(), id.into()),
    };
    Timeline {
        policy: policy.to_string(),
        log,
        set,
        rejected: subject.rejected,
        until: t.until,
    }
}

/// Timelines of several tickets under every policy (whatif's ticket pages), each ticket
/// replayed alone up to the end of the history.
pub fn timelines(
    history: &History,
    policies: &[PolicyInput],
    cfg: &EngineConfig,
    tickets: &[(String, String)],
) -> Vec<Vec<Timeline>> {
    let until = history.last_instant().unwrap_or(Ts(0));
    let mut by_key: FxHashMap<(&str, &str), Vec<InputEvent>> = FxHashMap::default();
    for (tenant, id) in tickets {
        by_key.insert((tenant.as_str(), id.as_str()), Vec::new());
    }
    for e in &history.events {
        if let Some(v) = by_key.get_mut(&(e.event.tenant.as_str(), e.event.ticket_id.as_str())) {
            v.push(e.clone());
        }
    }
    tickets
        .iter()
        .map(|(tenant, id)| {
            let events = &by_key[&(tenant.as_str(), id.as_str())];
            policies
                .iter()
                .map(|p| {
                    let subject = Subject {
                        tenant,
                        id,
                        events,
                        rejected: Vec::new(),
                    };
                    explain(&p.name, p.set.clone(), cfg, subject, until)
                })
                .collect()
        })
        .collect()
}

/// An event's type as the policy language names it, e.g. `agent_reply:eta`.
pub fn body_name(b: &Body) -> String {
    match b {
        Body::Opened { .. } => "opened".into(),
        Body::CustomerMessage => "customer_message".into(),
        Body::AgentMessage { kind, audience } => {
            let mut s = match kind {
                crate::core::model::ReplyKind::Unspecified => "agent_reply".to_string(),
                k => format!("agent_reply:{}", k.as_str()),
            };
            if *audience == crate::core::model::Audience::Internal {
                s.push_str(" (internal)");
            }
            s
        }
        Body::AutoReply => "auto_reply".into(),
        Body::Assigned => "assigned".into(),
        Body::Transferred { misrouted } => {
            if *misrouted {
                "transferred:misrouted".into()
            } else {
                "transferred".into()
            }
        }
        Body::UrgencyChanged(u) => format!("urgency_changed:{}", u.as_str()),
        Body::Escalated(r) => format!("escalated:{}", r.as_str()),
        Body::EscalationAnswered(r) => format!("escalation_answered:{}", r.as_str()),
        Body::DepartmentRequested => "department_requested".into(),
        Body::HandedToDepartment => "handed_to_department".into(),
        Body::DepartmentStarted => "department_started".into(),
        Body::WaitingOnCustomer => "waiting_on_customer".into(),
        Body::Resolved => "resolved".into(),
        Body::Feedback { satisfied } => match satisfied {
            Some(true) => "feedback:satisfied".into(),
            Some(false) => "feedback:unsatisfied".into(),
            None => "feedback".into(),
        },
        Body::Reopened => "reopened".into(),
        Body::FollowUpDone => "follow_up_done".into(),
        Body::Closed => "closed".into(),
        Body::OnHold => "on_hold".into(),
        Body::Resumed => "resumed".into(),
    }
}

/// An output's details beyond its kind, e.g. `level 2 → supervisor`.
pub fn output_detail(o: &SlaOutput) -> String {
    match &o.body {
        OutputBody::Warning { fraction } => format!("at {:.0} % of target", fraction * 100.0),
        OutputBody::Breach { overdue } | OutputBody::Cleared { overdue } => {
            if overdue.0 > 0 {
                format!("overdue {}", dur(*overdue))
            } else {
                String::new()
            }
        }
        OutputBody::Escalation {
            level,
            notify,
            reason,
        } => format!(
            "level {level} → {} ({reason})",
            notify
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        OutputBody::ProgressReminder { nth, interval } => {
            format!("nth {nth}, every {}", dur(*interval))
        }
        OutputBody::FollowUpDue => String::new(),
        OutputBody::SurgeStarted { .. } | OutputBody::SurgeEnded { .. } => String::new(),
    }
}

/// `1h 02m 03s`-style duration.
pub fn dur(d: Dur) -> String {
    let total = d.0 / 1_000_000_000;
    let ms = (d.0 % 1_000_000_000) / 1_000_000;
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    let mut out = if h >= 48 {
        format!("{}d {:02}h {:02}m", h / 24, h % 24, m)
    } else if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    };
    if ms != 0 && h == 0 {
        let _ = write!(out, " {ms}ms");
    }
    out
}

#[derive(Serialize)]
pub struct EventView {
    pub line: u64,
    pub occurred_at: String,
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub taken: trace::Taken,
    pub reason: Option<&'static str>,
    pub out_of_order: bool,
}

#[derive(Serialize)]
pub struct OutputView {
    pub fired_at: String,
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub rule: String,
    pub clock: String,
    pub deadline: String,
    pub detail: String,
}

#[derive(Serialize)]
pub struct Pause {
    pub from: String,
    pub to: Option<String>,
}

#[derive(Serialize)]
pub struct Fired {
    pub fired_at: String,
    pub level: Option<u32>,
}

#[derive(Serialize)]
pub struct ClockView {
    pub clock: String,
    pub rule: String,
    pub target_seconds: f64,
    pub recurring: bool,
    pub start: String,
    pub pauses: Vec<Pause>,
    /// Counted time at the stop, or up to the end (more than that when not stopped).
    pub counted_seconds: f64,
    pub deadline: Option<String>,
    pub warnings: Vec<Fired>,
    pub breach: Option<String>,
    pub escalations: Vec<Fired>,
    pub reminders: u32,
    pub end: RunEnd,
    pub ended_at: Option<String>,
}

#[derive(Serialize)]
pub struct Attributes {
    pub channel: &'static str,
    pub category: &'static str,
    pub urgency: &'static str,
    pub tier: &'static str,
    pub team: String,
}

#[derive(Serialize)]
pub struct RejectedView {
    pub line: u64,
    pub reason: String,
}

/// The JSON form of a timeline (`explain --format json`, the admin API's shape).
#[derive(Serialize)]
pub struct TimelineView {
    pub tenant: String,
    pub ticket_id: String,
    pub policy_file: String,
    pub policy_id: String,
    pub overlays: Vec<String>,
    pub opened_at: Option<String>,
    pub attributes: Attributes,
    pub events: Vec<EventView>,
    pub rejected_lines: Vec<RejectedView>,
    pub clocks: Vec<ClockView>,
    pub outputs: Vec<OutputView>,
    pub until: String,
}

/// The run of `o`'s clock it belongs to: the last run of that clock started at or before it.
fn run_of<'a>(runs: &'a [ClockRun], o: &SlaOutput) -> Option<&'a ClockRun> {
    runs.iter().rfind(|r| {
        r.clock == o.clock && r.start <= o.fired_at && r.end_at.is_none_or(|e| e >= o.fired_at)
    })
}

fn clock_view(set: &PolicySet, r: &ClockRun, outputs: &[SlaOutput]) -> ClockView {
    let mine: Vec<&SlaOutput> = outputs
        .iter()
        .filter(|o| run_of(std::slice::from_ref(r), o).is_some())
        .collect();
    let mut pauses = Vec::new();
    if let Some(p) = &r.state.pauses {
        for (from, to) in &p.closed {
            pauses.push(Pause {
                from: rfc3339_z(*from),
                to: Some(rfc3339_z(*to)),
            });
        }
        if let Some(from) = p.open {
            pauses.push(Pause {
                from: rfc3339_z(from),
                to: None,
            });
        }
    }
    let deadline = (!r.recurring)
        .then(|| r.state.instant_of(set.calendar(r.calendar), r.target))
        .flatten()
        .map(rfc3339_z);
    ClockView {
        clock: r.clock.to_string(),
        rule: r.rule.to_string(),
        target_seconds: r.target.as_secs_f64(),
        recurring: r.recurring,
        start: rfc3339_z(r.start),
        pauses,
        counted_seconds: r.counted.as_secs_f64(),
        deadline,
        warnings: mine
            .iter()
            .filter(|o| matches!(o.body, OutputBody::Warning { .. }))
            .map(|o| Fired {
                fired_at: rfc3339_z(o.fired_at),
                level: None,
            })
            .collect(),
        breach: mine
            .iter()
            .find(|o| matches!(o.body, OutputBody::Breach { .. }))
            .map(|o| rfc3339_z(o.fired_at)),
        escalations: mine
            .iter()
            .filter_map(|o| match o.body {
                OutputBody::Escalation { level, .. } => Some(Fired {
                    fired_at: rfc3339_z(o.fired_at),
                    level: Some(level),
                }),
                _ => None,
            })
            .collect(),
        reminders: mine
            .iter()
            .filter(|o| matches!(o.body, OutputBody::ProgressReminder { .. }))
            .count() as u32,
        end: r.end,
        ended_at: r.end_at.map(rfc3339_z),
    }
}

impl Timeline {
    pub fn view(&self) -> TimelineView {
        let l = &self.log;
        TimelineView {
            tenant: l.tenant.to_string(),
            ticket_id: l.id.to_string(),
            policy_file: self.policy.clone(),
            policy_id: l.policy_id.to_string(),
            overlays: l.overlays.iter().map(|s| s.to_string()).collect(),
            opened_at: l.opened_at.map(rfc3339_z),
            attributes: Attributes {
                channel: l.attrs.channel.as_str(),
                category: l.attrs.category.as_str(),
                urgency: l.attrs.urgency.effective().as_str(),
                tier: l.attrs.tier.effective().as_str(),
                team: l.attrs.team.to_string(),
            },
            events: l
                .events
                .iter()
                .map(|n| EventView {
                    line: n.line,
                    occurred_at: rfc3339_z(n.event.occurred_at),
                    event_id: n.event.event_id.to_string(),
                    kind: body_name(&n.event.body),
                    taken: n.taken,
                    reason: n.reason,
                    out_of_order: n.out_of_order,
                })
                .collect(),
            rejected_lines: self
                .rejected
                .iter()
                .map(|r| RejectedView {
                    line: r.line,
                    reason: r.reason.clone(),
                })
                .collect(),
            clocks: l
                .runs
                .iter()
                .map(|r| clock_view(&self.set, r, &l.outputs))
                .collect(),
            outputs: l
                .outputs
                .iter()
                .map(|o| OutputView {
                    fired_at: rfc3339_z(o.fired_at),
                    event_id: o.event_id.to_string(),
                    kind: o.body.kind_name(),
                    rule: o.rule_id.to_string(),
                    clock: o.clock.to_string(),
                    deadline: rfc3339_z(o.deadline),
                    detail: output_detail(o),
                })
                .collect(),
            until: rfc3339_z(self.until),
        }
    }

    /// The text form (`explain`'s default).
    pub fn text(&self) -> String {
        let v = self.view();
        let mut s = String::new();
        let who = if v.tenant.is_empty() {
            format!("ticket {}", v.ticket_id)
        } else {
            format!("ticket {} (tenant {})", v.ticket_id, v.tenant)
        };
        let _ = writeln!(s, "{who} under {}", v.policy_file);
        if v.opened_at.is_none() {
            let _ = writeln!(s, "  never opened (no `opened` event was applied)");
        }
        let overlays = if v.overlays.is_empty() {
            "none".to_string()
        } else {
            v.overlays.join(", ")
        };
        let policy = if v.policy_id.is_empty() {
            "(no policy matched)"
        } else {
            &v.policy_id
        };
        let _ = writeln!(s, "policy {policy}; overlays: {overlays}");
        let a = &v.attributes;
        let _ = writeln!(
            s,
            "channel {}, category {}, urgency {}, tier {}, team {}",
            a.channel,
            a.category,
            a.urgency,
            a.tier,
            if a.team.is_empty() { "-" } else { &a.team }
        );
        let _ = writeln!(s, "\nevents (applied order)");
        for e in &v.events {
            let mut mark = match e.taken {
                trace::Taken::Applied => String::new(),
                trace::Taken::Duplicate => "  [duplicate: ignored]".into(),
                trace::Taken::SecondOpened => "  [second opened: ignored]".into(),
                trace::Taken::Buffered => "  [waiting for opened]".into(),
                trace::Taken::Rejected => {
                    format!("  [rejected: {}]", e.reason.unwrap_or("rejected"))
                }
            };
            if e.out_of_order {
                mark.push_str("  [out of order in the file]");
            }
            let _ = writeln!(
                s,
                "  {}  {:<28} {}  (line {}){mark}",
                e.occurred_at, e.kind, e.event_id, e.line
            );
        }
        for r in &v.rejected_lines {
            let _ = writeln!(s, "  line {}: rejected: {}", r.line, r.reason);
        }
        let _ = writeln!(s, "\nclocks");
        if v.clocks.is_empty() {
            let _ = writeln!(s, "  none started");
        }
        for c in &v.clocks {
            let _ = writeln!(
                s,
                "  {} ({}), target {}{}",
                c.clock,
                c.rule,
                dur(Dur((c.target_seconds * 1e9) as i64)),
                if c.recurring { ", recurring" } else { "" }
            );
            let _ = writeln!(s, "    started   {}", c.start);
            for p in &c.pauses {
                let _ = writeln!(
                    s,
                    "    paused    {} → {}",
                    p.from,
                    p.to.as_deref().unwrap_or("(still paused)")
                );
            }
            if let Some(d) = &c.deadline {
                let _ = writeln!(s, "    deadline  {d}");
            }
            for w in &c.warnings {
                let _ = writeln!(s, "    warning   {}", w.fired_at);
            }
            if let Some(b) = &c.breach {
                let _ = writeln!(s, "    breach    {b}");
            }
            for e in &c.escalations {
                let _ = writeln!(
                    s,
                    "    escalated {} (level {})",
                    e.fired_at,
                    e.level.unwrap_or(0)
                );
            }
            if c.reminders > 0 {
                let _ = writeln!(s, "    reminders {}", c.reminders);
            }
            let counted = dur(Dur((c.counted_seconds * 1e9) as i64));
            let end = c.ended_at.as_deref().unwrap_or("-");
            let _ = match c.end {
                RunEnd::Stopped => writeln!(s, "    stopped   {end}, counted {counted}"),
                RunEnd::Cancelled => writeln!(
                    s,
                    "    ended     {end} without its stop (cancelled), counted {counted}"
                ),
                RunEnd::Dropped => writeln!(
                    s,
                    "    dropped   {end} (ticket idle), counted more than {counted}"
                ),
                RunEnd::Open => writeln!(s, "    running   at {end}, counted so far {counted}"),
            };
        }
        let _ = writeln!(s, "\noutputs");
        if v.outputs.is_empty() {
            let _ = writeln!(s, "  none");
        }
        for o in &v.outputs {
            let _ = writeln!(
                s,
                "  {}  {:<17} {:<4} {:<18} deadline {}  {}  {}",
                o.fired_at, o.kind, o.rule, o.clock, o.deadline, o.event_id, o.detail
            );
        }
        s
    }
}

/// One output a live clock's state says was emitted.
#[derive(Serialize, Debug, PartialEq)]
pub struct LiveOutput {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// When it fell due (its `fired_at`, except for an output decided on an event such as a
    /// re-match's past-due items, which fired at that event).
    pub due: Option<String>,
    pub deadline: Option<String>,
    pub detail: String,
    pub event_id: Option<String>,
}

#[derive(Serialize)]
pub struct LiveClock {
    pub clock: String,
    pub rule: String,
    pub status: &'static str,
    pub start: String,
    pub pauses: Vec<Pause>,
    /// Counted time up to `as_of` while running; null once stopped or cancelled (the state
    /// does not keep when).
    pub counted_seconds: Option<f64>,
    pub deadline: Option<String>,
    pub outputs: Vec<LiveOutput>,
}

/// An open ticket's trail from its live state, for the admin API's
/// `/tickets/{tenant}/{id}/timeline`. The engine keeps no event log per ticket, so this is
/// what the state holds: the policy and overlays, each clock's start, pauses, counted time
/// and deadline, and the outputs its fired-item marks say were emitted, with their due
/// instants and `event_id`s. A warning's `event_id` is exact when no pause came between
/// the warning and now (the deadline it carried is then today's).
#[derive(Serialize)]
pub struct LiveTrail {
    pub ticket_id: String,
    pub tenant: String,
    pub policy_id: String,
    pub overlays: Vec<String>,
    pub phase: &'static str,
    pub opened_at: String,
    pub as_of: String,
    pub clocks: Vec<LiveClock>,
    /// Actions fired on events (e.g. R18's escalation on `opened`); their instant is not kept.
    pub actions_fired: Vec<LiveOutput>,
}

fn status_name(s: crate::core::clock::ClockStatus) -> &'static str {
    use crate::core::clock::ClockStatus as S;
    match s {
        S::Idle => "idle",
        S::Running => "running",
        S::Stopped => "stopped",
        S::Cancelled => "cancelled",
    }
}

/// The live trail of `t` under its plan, with counted time up to `now`.
pub fn live_trail(t: &Ticket, tenant: &CompactString, plan: &Plan, now: Ts) -> LiveTrail {
    use crate::core::model::output_id;
    let mut clocks = Vec::new();
    for (i, c) in t.clock_states().enumerate() {
        let Some(spec) = plan.clocks.get(i) else {
            continue;
        };
        if c.status == crate::core::clock::ClockStatus::Idle {
            continue;
        }
        let cal = plan.calendar(i);
        let deadline = match spec.kind {
            ClockKind::Deadline => c.deadline(spec, cal),
            ClockKind::Recurring { .. } => None,
        };
        let mut outs = Vec::new();
        let mut push = |body: OutputBody, due: Option<Ts>, dl: Option<Ts>| {
            let detail = output_detail(&SlaOutput::ticket(
                &t.id,
                tenant,
                crate::core::ticket::clock_emitter(plan, spec),
                body.clone(),
                dl.unwrap_or(Ts(0)),
                due.unwrap_or(Ts(0)),
            ));
            outs.push(LiveOutput {
                kind: body.kind_name(),
                due: due.map(rfc3339_z),
                deadline: dl.map(rfc3339_z),
                detail,
                event_id: dl.map(|d| {
                    output_id(tenant, &t.id, &plan.policy_id, &spec.id, &body, d).to_string()
                }),
            });
        };
        match spec.kind {
            ClockKind::Deadline => {
                if spec.follow_up {
                    push(OutputBody::FollowUpDue, Some(c.start), deadline);
                }
                for (w, f) in spec.warn_at.iter().enumerate().take(8) {
                    if c.warned & (1 << w) != 0 {
                        let due = c.instant_of(cal, spec.target.mul_f64(*f));
                        push(OutputBody::Warning { fraction: *f }, due, deadline);
                    }
                }
                if c.breached {
                    push(
                        OutputBody::Breach { overdue: Dur::ZERO },
                        deadline,
                        deadline,
                    );
                }
                for (k, step) in spec.escalate.iter().enumerate().take(c.escalated as usize) {
                    let due = c.instant_of(cal, Dur(spec.target.0 + step.after.0));
                    let body = OutputBody::Escalation {
                        level: k as u32 + 1,
                        notify: step.notify.clone(),
                        reason: "breach".into(),
                    };
                    push(body, due, deadline);
                }
            }
            ClockKind::Recurring { every, .. } => {
                for n in 1..=c.nth as u32 {
                    let due = c.instant_of(cal, Dur(every.0.saturating_mul(n as i64)));
                    push(
                        OutputBody::ProgressReminder {
                            nth: n,
                            interval: every,
                        },
                        due,
                        due,
                    );
                }
            }
        }
        let mut pauses = Vec::new();
        if let Some(p) = &c.pauses {
            for (from, to) in &p.closed {
                pauses.push(Pause {
                    from: rfc3339_z(*from),
                    to: Some(rfc3339_z(*to)),
                });
            }
            if let Some(from) = p.open {
                pauses.push(Pause {
                    from: rfc3339_z(from),
                    to: None,
                });
            }
        }
        clocks.push(LiveClock {
            clock: spec.id.to_string(),
            rule: spec.rule.to_string(),
            status: status_name(c.status),
            start: rfc3339_z(c.start),
            pauses,
            counted_seconds: c
                .is_running()
                .then(|| c.counted_until(cal, now.max(c.start)).as_secs_f64()),
            deadline: deadline.map(rfc3339_z),
            outputs: outs,
        });
    }
    let fired: Vec<u64> = t.actions_fired().collect();
    let actions_fired = plan
        .actions
        .iter()
        .filter(|a| fired.contains(&crate::core::ticket::id_hash(&a.clock)))
        .map(|a| LiveOutput {
            kind: "escalation",
            due: None,
            deadline: None,
            detail: format!(
                "{} {}: level {} → {} ({})",
                a.rule,
                a.clock,
                a.level,
                a.notify
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                a.reason
            ),
            event_id: None,
        })
        .collect();
    LiveTrail {
        ticket_id: t.id.to_string(),
        tenant: tenant.to_string(),
        policy_id: plan.policy_id.to_string(),
        overlays: plan.overlay_ids.iter().map(|s| s.to_string()).collect(),
        phase: t.phase.as_str(),
        opened_at: rfc3339_z(t.opened_at),
        as_of: rfc3339_z(now),
        clocks,
        actions_fired,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::engine::{Emitted, Engine};
    use crate::core::model::{Body, Channel, Event};

    fn ev(id: &str, at: &str, body: Body) -> Event {
        Event {
            event_id: id.into(),
            ticket_id: "T1".into(),
            occurred_at: Ts::parse_rfc3339(at).unwrap(),
            tenant: "acme".into(),
            body,
        }
    }

    #[test]
    fn live_trail_names_the_outputs_the_engine_emitted() {
        // E1: a chat inquiry with only an auto-reply, seen at 10:03 (L2 fired, L3 not yet).
        let set = Arc::new(
            crate::core::policy::builtin::PolicySource::BuiltIn
                .load()
                .expect("built-in policy"),
        );
        let mut engine = Engine::new(set, EngineConfig::default());
        let mut out = Emitted::default();
        let opened = Body::Opened {
            channel: Channel::Chat,
            category: Default::default(),
            urgency: Default::default(),
            tier: Default::default(),
            team: "".into(),
        };
        engine.ingest(ev("e1", "2024-03-04T10:00:00Z", opened), &mut out);
        engine.ingest(ev("e2", "2024-03-04T10:00:01Z", Body::AutoReply), &mut out);
        let now = Ts::parse_rfc3339("2024-03-04T10:03:00Z").unwrap();
        engine.advance_to(now, &mut out);
        let t = engine.ticket("acme", "T1").expect("open ticket");
        let trail = live_trail(t, engine.tenant_of(t), engine.plan_of(t), now);
        let fr = trail
            .clocks
            .iter()
            .find(|c| c.clock == "first_response")
            .expect("first_response");
        assert_eq!(fr.status, "running");
        assert_eq!(fr.counted_seconds, Some(180.0));
        let emitted: Vec<(String, String, String)> = out
            .outputs
            .iter()
            .filter(|o| &*o.clock == "first_response")
            .map(|o| {
                (
                    o.body.kind_name().to_string(),
                    rfc3339_z(o.fired_at),
                    o.event_id.to_string(),
                )
            })
            .collect();
        let derived: Vec<(String, String, String)> = fr
            .outputs
            .iter()
            .map(|o| {
                (
                    o.kind.to_string(),
                    o.due.clone().unwrap(),
                    o.event_id.clone().unwrap(),
                )
            })
            .collect();
        assert_eq!(emitted.len(), 4, "warning, breach, L1, L2: {emitted:?}");
        assert_eq!(derived, emitted);
    }
}
