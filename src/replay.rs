//! `slawatch replay`: runs the engine over a file of events (one partition, surge detection
//! included) and writes the SLA events in rule-3 order, so a user can replay last month
//! under a new policy before deploying it.
use crate::codec::{self, Format};
use crate::core::engine::{Emitted, Engine, EngineConfig};
use crate::core::model::OutputBody;
use crate::core::policy::{LatencyMetric, PolicySet};
use crate::core::ticket::Observation;
use crate::core::time::{Dur, Ts};
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::sync::Arc;

pub struct ReplayOptions {
    pub format: Format,
    pub until: Option<Ts>,
    pub allowed_lateness: Dur,
    pub summary: bool,
}

/// What a replay saw, for the exit code and the report.
#[derive(Default, Debug)]
pub struct ReplayReport {
    pub lines: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub outputs: u64,
    pub unknown_enums: u64,
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

/// Reads length-delimited protobuf records (varint length prefix, as protobuf's
/// `writeDelimitedTo`).
fn read_delimited(r: &mut dyn Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len: u64 = 0;
    let mut shift = 0;
    loop {
        let mut b = [0u8; 1];
        if r.read(&mut b)? == 0 {
            return if shift == 0 {
                Ok(None)
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "truncated length prefix",
                ))
            };
        }
        len |= ((b[0] & 0x7f) as u64) << shift;
        if b[0] & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "length prefix too long",
            ));
        }
    }
    if len > 16 * 1024 * 1024 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("record of {len} bytes exceeds 16 MiB"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf)?;
    Ok(Some(buf))
}

/// Runs a replay. Malformed records are reported on `errors` and skipped.
pub fn replay(
    policy: Arc<PolicySet>,
    opts: &ReplayOptions,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
    errors: &mut dyn Write,
) -> std::io::Result<ReplayReport> {
    let cfg = EngineConfig {
        allowed_lateness: opts.allowed_lateness,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(policy, cfg);
    let mut report = ReplayReport::default();
    let mut out = Emitted::default();
    let mut line = Vec::new();
    loop {
        let record = match opts.format {
            Format::Json => {
                line.clear();
                if input.read_until(b'\n', &mut line)? == 0 {
                    break;
                }
                while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    line.pop();
                }
                report.lines += 1;
                if line.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                codec::decode_json(&line)
            }
            Format::Protobuf => match read_delimited(input) {
                Ok(Some(buf)) => {
                    report.lines += 1;
                    codec::decode_protobuf(&buf)
                }
                Ok(None) => break,
                Err(e) => {
                    report.rejected += 1;
                    writeln!(errors, "record {}: {e}", report.lines + 1)?;
                    break;
                }
            },
        };
        match record {
            Ok(d) => {
                report.accepted += 1;
                report.unknown_enums += d.unknown_enums as u64;
                engine.ingest(d.event, &mut out);
                engine.pump(&mut out);
            }
            Err(e) => {
                report.rejected += 1;
                let what = if opts.format == Format::Json {
                    "line"
                } else {
                    "record"
                };
                writeln!(errors, "{what} {}: {} ({e})", report.lines, e.reason())?;
            }
        }
        flush(&mut out, &mut report, output, errors)?;
    }
    engine.finish(opts.until, &mut out);
    flush(&mut out, &mut report, output, errors)?;
    // Rule 12: clocks still running at the end are unanswered as far as the report knows.
    let mut open = Vec::new();
    engine.censor_running(engine.watermark(), &mut open);
    for obs in &open {
        report.summary.observe(obs);
    }
    output.flush()?;
    Ok(report)
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
        report.rejected += 1;
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
