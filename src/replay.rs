//! `slawatch replay`: runs the engine over a file of events (one partition, surge detection
//! included) and writes the SLA events in rule-3 order, so a user can replay last month
//! under a new policy before deploying it.
//!
//! A file is history, not a stream: by default its events apply in rule 4's order
//! (occurred_at, causal rank, event_id) whatever the line order ([`sort`], spilling to
//! temporary files beyond a memory budget), so an export grouped per ticket gives the same
//! bytes as the same export sorted. [`Order::Stream`] applies them in line order with the
//! lateness rules instead, as the live processor sees a topic.
pub(crate) mod input;
pub mod sort;

use crate::codec;
use crate::codec::framing::InputFormat;
use crate::core::engine::{Emitted, Engine, EngineConfig};
use crate::core::model::OutputBody;
use crate::core::order::order_key;
use crate::core::policy::{LatencyMetric, PolicySet};
use crate::core::ticket::Observation;
use crate::core::time::Ts;
use compact_str::CompactString;
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::sync::Arc;

/// The order in which a replay applies its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Rule 4's order whatever the line order; events held up to `sort_memory` bytes, then
    /// sorted runs spill to temporary files.
    History { sort_memory: usize },
    /// Line order, with the watermark and lateness rules of a live run (`--as-stream`).
    Stream,
}

/// The default sort budget of [`Order::History`]: 256 MiB.
pub const DEFAULT_SORT_MEMORY: usize = 256 << 20;

pub struct ReplayOptions {
    /// How records are framed (`--format`; docs/replay.md "Input formats").
    pub format: InputFormat,
    /// Where the watermark ends; before the watermark the input reaches (its last event less
    /// the allowed lateness) it is an error.
    pub until: Option<Ts>,
    /// Engine limits and lateness (`--config` takes them from `run`'s `[engine]`).
    pub engine: EngineConfig,
    pub order: Order,
    pub summary: bool,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            format: InputFormat::Auto,
            until: None,
            engine: EngineConfig::default(),
            order: Order::History {
                sort_memory: DEFAULT_SORT_MEMORY,
            },
            summary: false,
        }
    }
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The input moves the watermark past `--until`, which would then be ignored (the
    /// watermark never moves back).
    #[error(
        "--until {until} is before the watermark the input reaches ({watermark}: its latest \
         event read, {latest}, less the allowed lateness); give an instant at or after it, or \
         leave --until out"
    )]
    UntilBeforeData {
        until: String,
        watermark: String,
        latest: String,
    },
}

/// What a replay saw, for the exit code and the report.
#[derive(Default, Debug)]
pub struct ReplayReport {
    /// Lines (JSON) or records (protobuf) read, blank lines included.
    pub lines: u64,
    /// Events decoded and not refused by the engine (duplicates included).
    pub accepted: u64,
    /// Records that did not decode plus events the engine refused.
    pub rejected: u64,
    /// Decoded events the engine refused (counted in `rejected`, not in `accepted`).
    pub refused: u64,
    /// `rejected` by reason (`undecodable`, `missing_field`, `capacity`, …).
    pub rejected_by_reason: BTreeMap<&'static str, u64>,
    /// Events whose rule-4 key sorts before that of an earlier line.
    pub out_of_order: u64,
    /// Events whose id the ticket had already seen (applied once, rule 10).
    pub duplicates: u64,
    /// Events applied below the watermark (only in stream order).
    pub late: u64,
    /// Sorted runs spilled to temporary files (history order).
    pub spilled_runs: usize,
    pub outputs: u64,
    pub unknown_enums: u64,
    /// Records decoded, by the wire format they were read as (`auto` tells them apart).
    pub formats: BTreeMap<&'static str, u64>,
    /// The input held length-delimited records rather than lines.
    pub delimited: bool,
    /// Events of tickets never opened, still waiting in the pre-open buffer at the end
    /// (not yet expired: the input ended within `preopen_max_age` of their first event).
    pub never_opened_events: u64,
    /// The tickets of those events.
    pub never_opened_tickets: u64,
    pub summary: Summary,
}

/// Latency samples of one (metric, policy): answered counted times, and the counted time
/// so far of every clock that ended (or was still running at the end) without its stop.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct Latencies {
    pub answered: Vec<f64>,
    pub censored: Vec<f64>,
}

/// A percentile of [`Latencies`] (rule 12).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Percentile {
    /// Falls among answered tickets: exact (unanswered ones count as slower than any answer).
    Exact(f64),
    /// Falls among unanswered tickets: more than this (their counted time so far).
    MoreThan(f64),
}

impl Percentile {
    pub fn render(self) -> String {
        match self {
            Percentile::Exact(v) => format!("{v:.1}s"),
            Percentile::MoreThan(v) => format!("> {v:.1}s"),
        }
    }
}

impl Latencies {
    /// Nearest-rank percentile over every ticket, answered or not. Unanswered tickets rank
    /// after every answered one (as in the Prometheus histogram's `+Inf` bucket): when the
    /// rank falls among them the percentile is only known to exceed the rank-th smallest
    /// of all counted times (a censored time is a lower bound of its latency).
    pub fn percentile(&self, p: f64) -> Option<Percentile> {
        let n = self.answered.len() + self.censored.len();
        if n == 0 {
            return None;
        }
        let rank = ((p / 100.0) * n as f64).ceil().clamp(1.0, n as f64) as usize;
        let mut answered = self.answered.clone();
        answered.sort_by(f64::total_cmp);
        if rank <= answered.len() {
            return Some(Percentile::Exact(answered[rank - 1]));
        }
        let mut all = answered;
        all.extend_from_slice(&self.censored);
        all.sort_by(f64::total_cmp);
        Some(Percentile::MoreThan(all[rank - 1]))
    }
}

impl ReplayReport {
    /// One line for stderr: how the input was read and what was refused.
    pub fn input_line(&self, order: Order) -> String {
        let mut s = format!(
            "replay: {} {}",
            self.lines,
            if self.delimited { "records" } else { "lines" }
        );
        // Which formats the records were read as, unless all were plain JSON lines.
        if !self.formats.is_empty() && (self.delimited || self.formats.len() > 1) {
            let by: Vec<String> = self
                .formats
                .iter()
                .map(|(f, n)| format!("{f}: {n}"))
                .collect();
            s.push_str(&format!(" ({})", by.join(", ")));
        }
        s.push_str(&format!(
            ", {} events accepted, {} out of order, {} duplicates",
            self.accepted, self.out_of_order, self.duplicates
        ));
        match order {
            Order::History { .. } => {
                s.push_str(", applied in time order");
                if self.spilled_runs > 0 {
                    s.push_str(&format!(" ({} sorted runs spilled)", self.spilled_runs));
                }
            }
            Order::Stream => s.push_str(&format!(", {} late (applied in line order)", self.late)),
        }
        if self.never_opened_events > 0 {
            s.push_str(&format!(
                "; {} events of {} tickets never opened (left in the pre-open buffer)",
                self.never_opened_events, self.never_opened_tickets
            ));
        }
        s.push_str(&format!("; {} rejected", self.rejected));
        if self.rejected > 0 {
            let by: Vec<String> = self
                .rejected_by_reason
                .iter()
                .map(|(r, n)| format!("{r}: {n}"))
                .collect();
            s.push_str(&format!(" ({})", by.join(", ")));
        }
        s
    }

    fn reject(&mut self, reason: &'static str) {
        self.rejected += 1;
        *self.rejected_by_reason.entry(reason).or_default() += 1;
    }
}

#[derive(Default, Debug)]
pub struct Summary {
    /// (metric, policy) → samples of the clocks that feed the metric (rule 12).
    pub latencies: BTreeMap<(LatencyMetric, String), Latencies>,
    /// rule → (met, breached, reminders).
    rules: BTreeMap<String, (u64, u64, u64)>,
}

impl Summary {
    pub fn observe(&mut self, o: &Observation) {
        if let Some(metric) = o.metric {
            let l = self
                .latencies
                .entry((metric, o.policy_id.to_string()))
                .or_default();
            if o.censored {
                l.censored.push(o.counted.as_secs_f64());
            } else {
                l.answered.push(o.counted.as_secs_f64());
            }
        }
        if !o.breached && !o.censored {
            self.rules.entry(o.rule_id.to_string()).or_default().0 += 1;
        }
    }
    fn output(&mut self, body: &OutputBody, rule: &str) {
        match body {
            OutputBody::Breach { .. } => self.rules.entry(rule.to_string()).or_default().1 += 1,
            OutputBody::ProgressReminder { .. } => {
                self.rules.entry(rule.to_string()).or_default().2 += 1
            }
            _ => {}
        }
    }

    pub fn render(&self) -> String {
        let mut s = String::from(
            "latency (counted time, nearest rank over answered and unanswered tickets; \
             \"> x\": the percentile falls among unanswered tickets)\n\
             metric          policy               answered unanswered          p50          p95\n",
        );
        for ((metric, policy), l) in &self.latencies {
            let p = |q| l.percentile(q).map(Percentile::render).unwrap_or_default();
            s.push_str(&format!(
                "{:<15} {:<20} {:>8} {:>10} {:>12} {:>12}\n",
                metric.as_str(),
                policy,
                l.answered.len(),
                l.censored.len(),
                p(50.0),
                p(95.0)
            ));
        }
        s.push_str("\nrule        met  breached  reminders\n");
        let mut rules: Vec<_> = self.rules.iter().collect();
        rules.sort_by_key(|(r, _)| {
            (
                r.trim_start_matches('R').parse::<u32>().unwrap_or(u32::MAX),
                r.to_string(),
            )
        });
        for (rule, (met, breached, reminders)) in rules {
            s.push_str(&format!(
                "{rule:<6} {met:>8} {breached:>9} {reminders:>10}\n"
            ));
        }
        s
    }
}

/// Runs a replay. Malformed records and refused events are reported on `errors` and
/// skipped; the report counts them by reason.
pub fn replay(
    policy: Arc<PolicySet>,
    opts: &ReplayOptions,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
    errors: &mut dyn Write,
) -> Result<ReplayReport, ReplayError> {
    let mut engine = Engine::new(policy, opts.engine.clone());
    let mut report = ReplayReport::default();
    let mut out = Emitted::default();
    let mut records = input::Records::new(opts.format, input);
    let mut decoded = 0u64;
    let mut latest = Ts::MIN;
    // The largest rule-4 key so far, to count lines that come before an earlier one.
    let mut max_key: Option<(Ts, u8, CompactString)> = None;
    let mut sorter = match opts.order {
        Order::History { sort_memory } => Some(sort::HistorySorter::new(sort_memory)),
        Order::Stream => None,
    };
    while let Some(record) = records.next_record()? {
        let d = match record {
            Ok(d) => d,
            Err(r) => {
                report.reject(r.reason);
                writeln!(
                    errors,
                    "{} {}: {} ({})",
                    r.what, r.number, r.reason, r.detail
                )?;
                continue;
            }
        };
        decoded += 1;
        report.unknown_enums += d.unknown_enums as u64;
        let ev = d.event;
        let key = order_key(&ev);
        match &max_key {
            Some((t, r, id)) if key < (*t, *r, id.as_str()) => report.out_of_order += 1,
            _ => max_key = Some((key.0, key.1, ev.event_id.clone())),
        }
        latest = latest.max(ev.occurred_at);
        match sorter.as_mut() {
            Some(s) => s.push(ev)?,
            None => {
                check_until(opts, latest)?;
                engine.ingest(ev, &mut out);
                engine.pump(&mut out);
                flush(&mut out, &mut report, output, errors)?;
            }
        }
    }
    report.lines = records.count;
    report.formats = std::mem::take(&mut records.formats);
    report.delimited = records.layout() == Some(input::Layout::Delimited);
    if let Some(s) = sorter {
        check_until(opts, latest)?;
        report.spilled_runs = s.runs();
        for ev in s.finish()? {
            engine.ingest(ev?, &mut out);
            engine.pump(&mut out);
            flush(&mut out, &mut report, output, errors)?;
        }
    }
    engine.finish(opts.until, &mut out);
    flush(&mut out, &mut report, output, errors)?;
    // Events still waiting for an `opened` the input never had: said, not dropped silently.
    let waiting = engine.preopen_events();
    report.never_opened_events = waiting.len() as u64;
    report.never_opened_tickets = engine.preopen_tickets() as u64;
    for ev in waiting {
        writeln!(
            errors,
            "event {} of ticket {}{}: never opened (left in the pre-open buffer at the end)",
            ev.event_id,
            ev.ticket_id,
            if ev.tenant.is_empty() {
                String::new()
            } else {
                format!(" (tenant {})", ev.tenant)
            }
        )?;
    }
    // Rule 12: clocks still running at the end are unanswered as far as the report knows.
    let mut open = Vec::new();
    engine.censor_running(engine.watermark(), &mut open);
    for obs in &open {
        report.summary.observe(obs);
    }
    output.flush()?;
    report.accepted = decoded - report.refused;
    report.duplicates = engine.stats().duplicates;
    report.late = engine.stats().late;
    Ok(report)
}

/// `--until` must not be before the watermark the input reaches (its latest event less the
/// allowed lateness): the watermark never moves back, so it would be silently ignored.
/// Between that watermark and the last event it is meaningful: events after it stay
/// pending, as in a live run whose watermark is there.
fn check_until(opts: &ReplayOptions, latest: Ts) -> Result<(), ReplayError> {
    let watermark = latest.saturating_sub(opts.engine.allowed_lateness);
    match opts.until {
        Some(u) if latest != Ts::MIN && u < watermark => Err(ReplayError::UntilBeforeData {
            until: codec::rfc3339_z(u),
            watermark: codec::rfc3339_z(watermark),
            latest: codec::rfc3339_z(latest),
        }),
        _ => Ok(()),
    }
}

fn flush(
    out: &mut Emitted,
    report: &mut ReplayReport,
    output: &mut dyn Write,
    errors: &mut dyn Write,
) -> std::io::Result<()> {
    for o in &out.outputs {
        output.write_all(codec::output_to_json(o).as_bytes())?;
        output.write_all(b"\n")?;
        report.outputs += 1;
        report.summary.output(&o.body, &o.rule_id);
    }
    for obs in &out.observations {
        report.summary.observe(obs);
    }
    for (ev, reason) in &out.dead_letters {
        report.reject(reason.as_str());
        report.refused += 1;
        writeln!(
            errors,
            "event {} of ticket {}: {}",
            ev.event_id,
            ev.ticket_id,
            reason.as_str()
        )?;
    }
    out.clear();
    Ok(())
}

/// Parses a byte size such as `256MiB`, `8MiB`, `1GiB`, `500MB`, `64k` or `1048576`
/// (`k`/`M`/`G` and their `iB` forms are powers of 1024, `kB`/`MB`/`GB` of 1000).
pub fn parse_byte_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (expected e.g. 256MiB, 8MiB, 1GiB)"))?;
    let mult: usize = match unit.trim() {
        "" | "B" => 1,
        "k" | "K" | "KiB" | "kiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?} (expected B, KiB, MiB, GiB, kB, MB or GB)"
            ))
        }
    };
    n.checked_mul(mult)
        .filter(|b| *b > 0)
        .ok_or_else(|| format!("{s:?} must be a positive size that fits in memory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_byte_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_byte_size("8M"), Ok(8 << 20));
        assert_eq!(parse_byte_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_byte_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_byte_size("4096"), Ok(4096));
        assert!(parse_byte_size("0").is_err());
        assert!(parse_byte_size("12 parsecs").is_err());
        assert!(parse_byte_size("MiB").is_err());
    }
}
