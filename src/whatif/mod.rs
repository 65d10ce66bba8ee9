//! `slawatch whatif`: replays the same history under two or more policies (one thread per
//! policy) and writes `report.json`, a self-contained `index.html` and per-ticket pages, so
//! a team can see what a new policy would have done to last month without touching live
//! data. See docs/whatif.md.
//!
//! - `trace`: drives the engine event by event and records per-ticket clock runs and outputs
//!   (shared with `explain`);
//! - `report`: the figures of report.json;
//! - `html`: index.html and the ticket pages.
pub mod html;
pub mod report;
pub mod trace;

use crate::core::engine::EngineConfig;
use crate::core::policy::PolicySet;
use crate::core::time::Ts;
use report::{DifferingTicket, InputSummary, PolicyAcc, PolicyReport, Report};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use trace::{History, Trace};

/// One policy to compare: a display name (the file stem) and its file.
pub struct PolicyInput {
    pub name: String,
    pub file: String,
    pub set: Arc<PolicySet>,
}

pub struct WhatifOptions {
    pub engine: EngineConfig,
    /// Only tickets opened at or after this instant.
    pub from: Option<Ts>,
    /// Only tickets opened before this instant; the watermark ends here.
    pub until: Option<Ts>,
    pub out: PathBuf,
    /// Most differing tickets given their own page (all are in report.json).
    pub max_pages: usize,
    /// Worst tickets per policy given their own page.
    pub worst: usize,
}

/// Everything a whatif run computed (the files are written from it).
pub struct Whatif {
    pub report: Report,
    /// (tenant, ticket id) of the tickets given a page.
    pub pages: Vec<(String, String)>,
    pub traces: Vec<Trace>,
    pub accs: Vec<PolicyAcc>,
}

/// Runs every policy over `history` (already windowed) in parallel.
pub fn run(
    history: &History,
    input_file: &str,
    policies: &[PolicyInput],
    opts: &WhatifOptions,
    progress: &(dyn Fn() + Sync),
) -> Whatif {
    let until = opts
        .until
        .or_else(|| history.last_instant())
        .unwrap_or(Ts(0));
    let traces: Vec<Trace> = std::thread::scope(|s| {
        let handles: Vec<_> = policies
            .iter()
            .map(|p| {
                let set = p.set.clone();
                let cfg = opts.engine.clone();
                s.spawn(move || {
                    trace::trace(set, cfg, &history.events, Some(until), false, progress)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a policy's replay panicked"))
            .collect()
    });
    let accs: Vec<PolicyAcc> = traces.iter().map(PolicyAcc::of).collect();
    let reports: Vec<PolicyReport> = policies
        .iter()
        .zip(&traces)
        .zip(&accs)
        .map(|((p, t), a)| PolicyReport::new(p.name.clone(), p.file.clone(), t, a))
        .collect();
    let differing = differing(policies, &traces);
    let mut pages: Vec<(String, String)> = differing
        .iter()
        .take(opts.max_pages)
        .map(|d| (d.tenant.clone(), d.ticket_id.clone()))
        .collect();
    let mut worst = BTreeMap::new();
    for (p, t) in policies.iter().zip(&traces) {
        let mut v: Vec<(usize, String, String)> = t
            .tickets
            .iter()
            .map(|l| (l.breaches().count(), l.tenant.to_string(), l.id.to_string()))
            .filter(|(n, _, _)| *n > 0)
            .collect();
        v.sort_by(|a, b| b.0.cmp(&a.0).then((&a.1, &a.2).cmp(&(&b.1, &b.2))));
        v.truncate(opts.worst);
        worst.insert(
            p.name.clone(),
            v.iter()
                .map(|(_, tenant, id)| format!("tickets/{}.html", page_name(tenant, id)))
                .collect(),
        );
        pages.extend(v.into_iter().map(|(_, tenant, id)| (tenant, id)));
    }
    pages.sort();
    pages.dedup();
    let tickets = traces.first().map_or(0, |t| {
        t.tickets.iter().filter(|l| l.opened_at.is_some()).count()
    });
    Whatif {
        report: Report {
            input: InputSummary {
                file: input_file.to_string(),
                lines: history.lines,
                events: history.events.len() as u64,
                rejected: history.rejected.len() as u64,
                out_of_order: history.out_of_order,
                tickets: tickets as u64,
                from: opts.from.map(crate::codec::rfc3339_z),
                until: crate::codec::rfc3339_z(until),
            },
            policies: reports,
            differing_tickets: differing,
            worst_tickets: worst,
        },
        pages,
        traces,
        accs,
    }
}

/// Tickets breached under some policies but not all.
fn differing(policies: &[PolicyInput], traces: &[Trace]) -> Vec<DifferingTicket> {
    let mut by_key: BTreeMap<(String, String), Vec<Option<usize>>> = BTreeMap::new();
    for (k, t) in traces.iter().enumerate() {
        for (i, l) in t.tickets.iter().enumerate() {
            if l.opened_at.is_none() {
                continue;
            }
            by_key
                .entry((l.tenant.to_string(), l.id.to_string()))
                .or_insert_with(|| vec![None; traces.len()])[k] = Some(i);
        }
    }
    let mut out = Vec::new();
    for ((tenant, id), idx) in by_key {
        let logs: Vec<_> = idx
            .iter()
            .enumerate()
            .filter_map(|(k, i)| i.map(|i| (k, &traces[k].tickets[i])))
            .collect();
        let breached: Vec<bool> = logs
            .iter()
            .map(|(_, l)| l.breaches().next().is_some())
            .collect();
        if breached.iter().all(|b| *b) || breached.iter().all(|b| !*b) {
            continue;
        }
        let first = logs[0].1;
        out.push(DifferingTicket {
            page: format!("tickets/{}.html", page_name(&tenant, &id)),
            channel: first.attrs.channel.as_str().to_string(),
            urgency: first.attrs.urgency.effective().as_str().to_string(),
            team: first.attrs.team.to_string(),
            outcomes: logs
                .iter()
                .map(|(k, l)| report::outcome(&policies[*k].name, l))
                .collect(),
            tenant,
            ticket_id: id,
        });
    }
    out
}

/// A file-system-safe page name for a ticket: `[tenant__]id`, other characters as `_`,
/// plus a short hash when anything was replaced (so two ids never share a page).
pub fn page_name(tenant: &str, id: &str) -> String {
    let raw = if tenant.is_empty() {
        id.to_string()
    } else {
        format!("{tenant}__{id}")
    };
    let safe: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe == raw && !raw.starts_with('.') {
        safe
    } else {
        let h = xxhash_rust::xxh3::xxh3_64(raw.as_bytes());
        format!("{}-{:08x}", safe.trim_start_matches('.'), h as u32)
    }
}

/// Writes report.json, index.html and the ticket pages under `opts.out`.
pub fn write(
    w: &Whatif,
    history: &History,
    policies: &[PolicyInput],
    opts: &WhatifOptions,
) -> std::io::Result<WriteSummary> {
    let out: &Path = &opts.out;
    std::fs::create_dir_all(out.join("tickets"))?;
    let json = serde_json::to_vec_pretty(&w.report).map_err(std::io::Error::other)?;
    std::fs::write(out.join("report.json"), json)?;
    std::fs::write(
        out.join("index.html"),
        html::index(&w.report, &w.accs, &w.traces, opts.max_pages),
    )?;
    let pages = &w.pages;
    let timelines = crate::explain::timelines(history, policies, &opts.engine, pages);
    for ((tenant, id), per_policy) in pages.iter().zip(&timelines) {
        std::fs::write(
            out.join("tickets")
                .join(format!("{}.html", page_name(tenant, id))),
            html::ticket_page(tenant, id, per_policy),
        )?;
    }
    Ok(WriteSummary { pages: pages.len() })
}

pub struct WriteSummary {
    pub pages: usize,
}
