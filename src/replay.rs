//! `slawatch replay`: runs the engine over a file of events (one partition, surge detection
//! included) and writes the SLA events in rule-3 order, so a user can replay last month
//! under a new policy before deploying it.
use crate::codec::{self, Format};
use crate::core::engine::{Emitted, Engine, EngineConfig};
use crate::core::model::{Channel, OutputBody, Urgency};
use crate::core::policy::PolicySet;
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

#[derive(Default, Debug)]
pub struct Summary {
    /// (policy, channel, urgency) → first-response counted seconds.
    first_response: BTreeMap<(String, Channel, Urgency), Vec<f64>>,
    /// rule → (met, breached, reminders).
    rules: BTreeMap<String, (u64, u64, u64)>,
}

impl Summary {
    fn observe(&mut self, o: &Observation) {
        if &*o.clock == "first_response" {
            self.first_response
                .entry((o.policy_id.to_string(), o.channel, o.urgency))
                .or_default()
                .push(o.counted.as_secs_f64());
        }
        if !o.breached {
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

    /// Nearest-rank percentile of a sorted, non-empty slice.
    pub fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
        let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
        sorted[rank.min(sorted.len()) - 1]
    }

    pub fn render(&self) -> String {
        let mut s = String::from(
            "first response (counted time, nearest rank)\n\
             policy               channel  urgency      n        p50        p95\n",
        );
        for ((policy, channel, urgency), v) in &self.first_response {
            let mut v = v.clone();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            s.push_str(&format!(
                "{:<20} {:<8} {:<9} {:>6} {:>9.1}s {:>9.1}s\n",
                policy,
                channel.as_str(),
                urgency.as_str(),
                v.len(),
                Self::nearest_rank(&v, 50.0),
                Self::nearest_rank(&v, 95.0)
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
