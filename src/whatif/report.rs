//! report.json: per policy, per rule and clock and per latency metric, overall and broken
//! down by channel, urgency, team, tenant, day and ISO week; and the tickets whose outcome
//! differs between the policies.
//!
//! Counting (docs/whatif.md): a clock run counts as started on the day it started; a
//! warning, breach or escalation on the day it fired (UTC). Latency samples are clock runs
//! of a metric clock: answered at the stop with the engine's counted time, otherwise
//! censored with the counted time up to where the run ended (docs/sla-semantics.md rule 12).
use crate::core::model::OutputBody;
use crate::core::time::Ts;
use crate::whatif::trace::{Metric, RunEnd, Trace};
use chrono::Datelike;
use serde::Serialize;
use std::collections::BTreeMap;

/// One latency sample: seconds of counted time; `censored` when the clock ended without
/// its stop (the true value is larger).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub secs: f64,
    pub censored: bool,
}

/// A percentile over answered and censored samples (nearest rank; censored ones rank above
/// every answered one, rule 12).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Percentile {
    /// `None` when the rank falls among censored samples.
    pub seconds: Option<f64>,
    /// Set instead of `seconds`: the percentile is larger than this.
    pub lower_bound_seconds: Option<f64>,
}

/// Nearest-rank percentile `p` (0–100) of `samples` (any order).
pub fn percentile(samples: &[Sample], p: f64) -> Percentile {
    let n = samples.len();
    if n == 0 {
        return Percentile {
            seconds: None,
            lower_bound_seconds: None,
        };
    }
    let rank = ((p / 100.0) * n as f64).ceil().max(1.0) as usize;
    let rank = rank.min(n);
    let mut answered: Vec<f64> = samples
        .iter()
        .filter(|s| !s.censored)
        .map(|s| s.secs)
        .collect();
    answered.sort_by(f64::total_cmp);
    if rank <= answered.len() {
        return Percentile {
            seconds: Some(answered[rank - 1]),
            lower_bound_seconds: None,
        };
    }
    // Each true value is at least its sample (exact when answered, elapsed when censored),
    // so the rank-th true value is at least the rank-th sample; and censored ones rank
    // above every answered one.
    let mut all: Vec<f64> = samples.iter().map(|s| s.secs).collect();
    all.sort_by(f64::total_cmp);
    let bound = all[rank - 1].max(answered.last().copied().unwrap_or(0.0));
    Percentile {
        seconds: None,
        lower_bound_seconds: Some(bound),
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RuleStats {
    pub rule: String,
    pub clock: String,
    pub started: u64,
    pub met: u64,
    pub breached: u64,
    /// breached / started; null when nothing started (checks, actions).
    pub breach_rate: Option<f64>,
    pub warnings: u64,
    /// Escalation level → count.
    pub escalations: BTreeMap<u32, u64>,
    /// Progress reminders (recurring clocks).
    pub reminders: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct MetricStats {
    pub answered: u64,
    pub unanswered: u64,
    pub p50_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
    pub p95_seconds: Option<f64>,
    pub p50_lower_bound_seconds: Option<f64>,
    pub p90_lower_bound_seconds: Option<f64>,
    pub p95_lower_bound_seconds: Option<f64>,
}

impl MetricStats {
    pub fn of(samples: &[Sample]) -> MetricStats {
        let [p50, p90, p95] = [50.0, 90.0, 95.0].map(|p| percentile(samples, p));
        let unanswered = samples.iter().filter(|s| s.censored).count() as u64;
        MetricStats {
            answered: samples.len() as u64 - unanswered,
            unanswered,
            p50_seconds: p50.seconds,
            p90_seconds: p90.seconds,
            p95_seconds: p95.seconds,
            p50_lower_bound_seconds: p50.lower_bound_seconds,
            p90_lower_bound_seconds: p90.lower_bound_seconds,
            p95_lower_bound_seconds: p95.lower_bound_seconds,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub tickets: u64,
    pub breaches: u64,
    pub rules: Vec<RuleStats>,
    pub metrics: BTreeMap<&'static str, MetricStats>,
}

/// Accumulates one group's figures.
#[derive(Default)]
pub struct StatsAcc {
    tickets: u64,
    rules: BTreeMap<(String, String), RuleStats>,
    samples: BTreeMap<Metric, Vec<Sample>>,
}

impl StatsAcc {
    fn rule(&mut self, rule: &str, clock: &str) -> &mut RuleStats {
        self.rules
            .entry((rule.to_string(), clock.to_string()))
            .or_insert_with(|| RuleStats {
                rule: rule.to_string(),
                clock: clock.to_string(),
                ..RuleStats::default()
            })
    }

    /// The samples of one metric (for plots).
    pub fn samples(&self, m: Metric) -> &[Sample] {
        self.samples.get(&m).map_or(&[], |v| v.as_slice())
    }

    pub fn finish(&self) -> Stats {
        let mut rules: Vec<RuleStats> = self.rules.values().cloned().collect();
        rules.sort_by_key(|r| (rule_order(&r.rule), r.clock.clone()));
        for r in &mut rules {
            r.breach_rate = (r.started > 0).then(|| r.breached as f64 / r.started as f64);
        }
        Stats {
            tickets: self.tickets,
            breaches: rules.iter().map(|r| r.breached).sum(),
            rules,
            metrics: Metric::ALL
                .iter()
                .map(|m| (m.as_str(), MetricStats::of(self.samples(*m))))
                .collect(),
        }
    }
}

/// R2 before R10; anything not `R<n>` last, by name.
pub fn rule_order(rule: &str) -> (u32, String) {
    (
        rule.strip_prefix('R')
            .and_then(|n| n.parse().ok())
            .unwrap_or(u32::MAX),
        rule.to_string(),
    )
}

/// `2024-03-04` and `2024-W10` of an instant (UTC).
pub fn day_of(t: Ts) -> String {
    t.to_chrono().format("%Y-%m-%d").to_string()
}
pub fn week_of(t: Ts) -> String {
    let w = t.to_chrono().iso_week();
    format!("{}-W{:02}", w.year(), w.week())
}

/// All groups of one policy's run.
#[derive(Default)]
pub struct PolicyAcc {
    pub overall: StatsAcc,
    pub by: BTreeMap<&'static str, BTreeMap<String, StatsAcc>>,
}

pub const BREAKDOWNS: [&str; 6] = ["channel", "urgency", "team", "tenant", "day", "week"];

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "(none)".into()
    } else {
        s.to_string()
    }
}

impl PolicyAcc {
    pub fn of(trace: &Trace) -> PolicyAcc {
        let mut acc = PolicyAcc::default();
        for log in &trace.tickets {
            if log.opened_at.is_none() {
                continue; // never opened: dead-lettered or pre-open events only
            }
            let keys = [
                ("channel", log.attrs.channel.as_str().to_string()),
                (
                    "urgency",
                    log.attrs.urgency.effective().as_str().to_string(),
                ),
                ("team", or_none(&log.attrs.team)),
                ("tenant", or_none(&log.attrs.tenant)),
            ];
            for (dim, key) in &keys {
                let g = acc
                    .by
                    .entry(dim)
                    .or_default()
                    .entry(key.clone())
                    .or_default();
                add_ticket(g, log, |_| true);
            }
            add_ticket(&mut acc.overall, log, |_| true);
            // Time groups: each item on its own day and week.
            for (dim, f) in [("day", day_of as fn(Ts) -> String), ("week", week_of)] {
                let mut keys: Vec<String> = log
                    .runs
                    .iter()
                    .map(|r| f(r.start))
                    .chain(log.outputs.iter().map(|o| f(o.fired_at)))
                    .collect();
                keys.sort();
                keys.dedup();
                for key in keys {
                    let g = acc
                        .by
                        .entry(dim)
                        .or_default()
                        .entry(key.clone())
                        .or_default();
                    add_ticket(g, log, |t| f(t) == key);
                }
            }
        }
        acc
    }
}

/// Adds a ticket's runs and outputs whose instant passes `when` (runs by start, outputs by
/// `fired_at`); the ticket counts once when any passes.
fn add_ticket(g: &mut StatsAcc, log: &crate::whatif::trace::TicketLog, when: impl Fn(Ts) -> bool) {
    let mut any = false;
    for r in &log.runs {
        if !when(r.start) {
            continue;
        }
        any = true;
        let s = g.rule(&r.rule, &r.clock);
        s.started += 1;
        if r.end == RunEnd::Stopped && !r.breached && !r.recurring {
            s.met += 1;
        }
        if let Some(m) = r.metric() {
            g.samples.entry(m).or_default().push(Sample {
                secs: r.counted.as_secs_f64(),
                censored: r.end != RunEnd::Stopped,
            });
        }
    }
    for o in &log.outputs {
        if !when(o.fired_at) {
            continue;
        }
        match &o.body {
            OutputBody::Breach { .. } => g.rule(&o.rule_id, &o.clock).breached += 1,
            OutputBody::Warning { .. } => g.rule(&o.rule_id, &o.clock).warnings += 1,
            OutputBody::ProgressReminder { .. } => g.rule(&o.rule_id, &o.clock).reminders += 1,
            OutputBody::Escalation { level, .. } => {
                *g.rule(&o.rule_id, &o.clock)
                    .escalations
                    .entry(*level)
                    .or_default() += 1
            }
            _ => continue,
        }
        any = true;
    }
    if any || log.runs.is_empty() {
        g.tickets += 1;
    }
}

#[derive(Serialize)]
pub struct PolicyReport {
    pub name: String,
    pub file: String,
    pub outputs: u64,
    pub overall: Stats,
    /// channel | urgency | team | tenant | day | week → key → figures.
    pub by: BTreeMap<&'static str, BTreeMap<String, Stats>>,
}

impl PolicyReport {
    pub fn new(name: String, file: String, trace: &Trace, acc: &PolicyAcc) -> PolicyReport {
        let outputs = trace
            .tickets
            .iter()
            .map(|t| t.outputs.len() as u64)
            .sum::<u64>()
            + trace.other_outputs.len() as u64;
        PolicyReport {
            name,
            file,
            outputs,
            overall: acc.overall.finish(),
            by: acc
                .by
                .iter()
                .map(|(dim, groups)| {
                    (
                        *dim,
                        groups
                            .iter()
                            .map(|(k, g)| (k.clone(), g.finish()))
                            .collect(),
                    )
                })
                .collect(),
        }
    }
}

/// A breach of a ticket under one policy.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct BreachRef {
    pub rule: String,
    pub clock: String,
    pub deadline: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub policy: String,
    pub policy_id: String,
    pub breached: bool,
    pub breaches: Vec<BreachRef>,
    /// First-response counted seconds (first cycle); null if it never started.
    pub first_response_seconds: Option<f64>,
    pub first_response_answered: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct DifferingTicket {
    pub tenant: String,
    pub ticket_id: String,
    pub channel: String,
    pub urgency: String,
    pub team: String,
    /// The per-ticket page, relative to index.html.
    pub page: String,
    pub outcomes: Vec<Outcome>,
}

pub fn outcome(name: &str, log: &crate::whatif::trace::TicketLog) -> Outcome {
    let breaches: Vec<BreachRef> = log
        .breaches()
        .map(|o| BreachRef {
            rule: o.rule_id.to_string(),
            clock: o.clock.to_string(),
            deadline: crate::codec::rfc3339_z(o.deadline),
        })
        .collect();
    let fr = log
        .runs
        .iter()
        .find(|r| r.metric() == Some(Metric::FirstResponse));
    Outcome {
        policy: name.to_string(),
        policy_id: log.policy_id.to_string(),
        breached: !breaches.is_empty(),
        breaches,
        first_response_seconds: fr.map(|r| r.counted.as_secs_f64()),
        first_response_answered: fr.is_some_and(|r| r.end == RunEnd::Stopped),
    }
}

#[derive(Serialize)]
pub struct InputSummary {
    pub file: String,
    pub lines: u64,
    pub events: u64,
    pub rejected: u64,
    pub out_of_order: u64,
    pub tickets: u64,
    pub from: Option<String>,
    pub until: String,
}

#[derive(Serialize)]
pub struct Report {
    pub input: InputSummary,
    pub policies: Vec<PolicyReport>,
    /// Tickets breached under some policies but not all, by tenant and ticket id.
    pub differing_tickets: Vec<DifferingTicket>,
    /// Per policy: the pages of the tickets with the most breaches.
    pub worst_tickets: BTreeMap<String, Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64, censored: bool) -> Sample {
        Sample { secs, censored }
    }

    #[test]
    fn percentile_of_answered_samples_is_nearest_rank() {
        let v: Vec<Sample> = (1..=20).map(|i| s(i as f64, false)).collect();
        assert_eq!(percentile(&v, 50.0).seconds, Some(10.0));
        assert_eq!(percentile(&v, 95.0).seconds, Some(19.0));
        assert_eq!(percentile(&v, 95.0).lower_bound_seconds, None);
    }

    #[test]
    fn rule12_percentile_among_censored_is_a_lower_bound() {
        // Half answered in 1..=10 s, half unanswered after 3 s of counted time.
        let mut v: Vec<Sample> = (1..=10).map(|i| s(i as f64, false)).collect();
        v.extend((0..10).map(|_| s(3.0, true)));
        assert_eq!(percentile(&v, 50.0).seconds, Some(10.0));
        let p95 = percentile(&v, 95.0);
        assert_eq!(p95.seconds, None);
        assert_eq!(p95.lower_bound_seconds, Some(10.0));
        // A censored sample longer than every answer raises the bound.
        v.iter_mut()
            .filter(|x| x.censored)
            .for_each(|x| x.secs = 3600.0);
        assert_eq!(percentile(&v, 95.0).lower_bound_seconds, Some(3600.0));
    }
}
