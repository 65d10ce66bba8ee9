//! index.html and the per-ticket pages: self-contained (inline CSS, inline SVG plots drawn
//! with plotters' SVG backend, no script, no network), templated with maud.
use crate::core::time::Dur;
use crate::explain::{dur, Timeline};
use crate::whatif::report::{rule_order, MetricStats, PolicyAcc, Report, Sample, Stats};
use crate::whatif::trace::{Metric, Trace};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use plotters::prelude::*;
use std::collections::BTreeMap;

const CSS: &str = r#"
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;margin:0;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:28px 0 10px;border-bottom:1px solid #dde1e7;padding-bottom:4px}
.sub{color:#5b6474;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:12px 16px;min-width:200px;flex:1}
.card .k{color:#5b6474;font-size:13px}.card .v{font-size:22px;font-weight:600}
.card .d{font-size:13px}.worse{color:#b3261e}.better{color:#1a7f37}
table{border-collapse:collapse;background:#fff;border:1px solid #dde1e7;width:100%;font-size:14px}
th,td{padding:5px 9px;border-bottom:1px solid #eceff3;text-align:right;vertical-align:top}
th{background:#f0f2f5;font-weight:600}td.l,th.l{text-align:left}
.plot{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:8px;margin:8px 0}
.plot svg{max-width:100%;height:auto}
.note{color:#5b6474;font-size:13px}
.tag{display:inline-block;padding:0 6px;border-radius:4px;font-size:12px;background:#eceff3}
.tag.b{background:#fde2e1;color:#8c1d18}.tag.m{background:#dcf5e3;color:#15603a}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:16px}
code{font-size:12px}
"#;

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

fn secs(s: f64) -> String {
    dur(Dur((s * 1e9) as i64))
}

/// A percentile as text: the value, "> bound" among censored tickets, or "–".
pub fn pct_text(v: Option<f64>, lower: Option<f64>) -> String {
    match (v, lower) {
        (Some(v), _) => secs(v),
        (None, Some(b)) => format!("> {}", secs(b)),
        _ => "–".into(),
    }
}

fn rate(r: Option<f64>) -> String {
    r.map_or("–".into(), |r| format!("{:.1} %", r * 100.0))
}

fn delta_class(a: f64, b: f64) -> &'static str {
    if b > a {
        "worse"
    } else if b < a {
        "better"
    } else {
        ""
    }
}

/// The headline numbers of one policy, in the order shown.
fn headline(st: &Stats) -> Vec<(String, String)> {
    let fr = &st.metrics[Metric::FirstResponse.as_str()];
    vec![
        ("breaches".into(), st.breaches.to_string()),
        (
            "first response p50".into(),
            pct_text(fr.p50_seconds, fr.p50_lower_bound_seconds),
        ),
        (
            "first response p95".into(),
            pct_text(fr.p95_seconds, fr.p95_lower_bound_seconds),
        ),
        (
            "unanswered (first response)".into(),
            format!("{} of {}", fr.unanswered, fr.answered + fr.unanswered),
        ),
    ]
}

/// The CDF of first response: share of all first-response runs (censored included, so a
/// curve tops out at the answered share) answered within x.
fn cdf_plot(names: &[String], samples: &[&[Sample]]) -> String {
    let mut svg = String::new();
    let series: Vec<Vec<(f64, f64)>> = samples
        .iter()
        .map(|s| {
            let n = s.len().max(1) as f64;
            let mut v: Vec<f64> = s
                .iter()
                .filter(|x| !x.censored)
                .map(|x| (x.secs / 60.0).max(1.0 / 60.0))
                .collect();
            v.sort_by(f64::total_cmp);
            v.iter()
                .enumerate()
                .map(|(i, x)| (*x, (i + 1) as f64 / n))
                .collect()
        })
        .collect();
    let xmax = series
        .iter()
        .flat_map(|s| s.last().map(|p| p.0))
        .fold(1.0f64, f64::max)
        * 1.2;
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 380)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(56)
            .build_cartesian_2d((1.0 / 60.0..xmax).log_scale(), 0.0..1.0);
        if let Ok(mut chart) = chart {
            let _ = chart
                .configure_mesh()
                .x_desc("first response, minutes of counted time (log scale)")
                .y_desc("share of tickets answered")
                .x_label_formatter(&|x| {
                    if *x >= 1.0 {
                        format!("{x:.0}")
                    } else {
                        format!("{x:.2}")
                    }
                })
                .y_label_formatter(&|y| format!("{:.0} %", y * 100.0))
                .draw();
            for (k, (name, pts)) in names.iter().zip(series).enumerate() {
                let color = COLORS[k % COLORS.len()];
                if let Ok(s) = chart.draw_series(LineSeries::new(pts, color.stroke_width(2))) {
                    s.label(name.clone()).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                }
            }
            let _ = chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .draw();
        }
        let _ = root.present();
    }
    svg
}

/// Breaches per day, one line per policy.
fn breaches_per_day_plot(names: &[String], days: &[BTreeMap<String, u64>]) -> String {
    let mut svg = String::new();
    let mut all: Vec<&String> = days.iter().flat_map(|d| d.keys()).collect();
    all.sort();
    all.dedup();
    let (Some(first), Some(last)) = (all.first(), all.last()) else {
        return svg;
    };
    let parse = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
    let (Some(d0), Some(d1)) = (parse(first), parse(last)) else {
        return svg;
    };
    let span = (d1 - d0).num_days().max(1) as f64;
    let ymax = days
        .iter()
        .flat_map(|d| d.values())
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 340)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let chart = ChartBuilder::on(&root)
            .margin(12)
            .margin_right(40)
            .x_label_area_size(42)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..span, 0.0..ymax);
        if let Ok(mut chart) = chart {
            let _ = chart
                .configure_mesh()
                .x_desc("day (UTC)")
                .y_desc("breaches")
                .y_label_formatter(&|y| format!("{y:.0}"))
                .x_labels(8)
                .x_label_formatter(&|x| {
                    (d0 + chrono::Duration::days(x.round() as i64))
                        .format("%Y-%m-%d")
                        .to_string()
                })
                .draw();
            for (k, (name, per_day)) in names.iter().zip(days).enumerate() {
                let color = COLORS[k % COLORS.len()];
                let pts: Vec<(f64, f64)> = (0..=span as i64)
                    .map(|i| {
                        let day = (d0 + chrono::Duration::days(i))
                            .format("%Y-%m-%d")
                            .to_string();
                        (i as f64, per_day.get(&day).copied().unwrap_or(0) as f64)
                    })
                    .collect();
                if let Ok(s) = chart.draw_series(LineSeries::new(pts, color.stroke_width(2))) {
                    s.label(name.clone()).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                }
            }
            let _ = chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .draw();
        }
        let _ = root.present();
    }
    svg
}

fn metric_row(name: &str, m: &MetricStats) -> Markup {
    html! {
        td.l { (name) }
        td { (m.answered) } td { (m.unanswered) }
        td { (pct_text(m.p50_seconds, m.p50_lower_bound_seconds)) }
        td { (pct_text(m.p90_seconds, m.p90_lower_bound_seconds)) }
        td { (pct_text(m.p95_seconds, m.p95_lower_bound_seconds)) }
    }
}

/// Top groups of a breakdown by breaches (the largest under any policy), side by side.
fn top_table(report: &Report, dim: &str, n: usize) -> Markup {
    let mut keys: BTreeMap<&String, u64> = BTreeMap::new();
    for p in &report.policies {
        if let Some(groups) = p.by.get(dim) {
            for (k, s) in groups {
                let e = keys.entry(k).or_default();
                *e = (*e).max(s.breaches);
            }
        }
    }
    let mut keys: Vec<(&String, u64)> = keys.into_iter().filter(|(_, b)| *b > 0).collect();
    keys.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    keys.truncate(n);
    html! {
        table {
            tr {
                th.l { (dim) }
                @for p in &report.policies { th { "tickets" } th { "breaches · " (p.name) } }
            }
            @for (k, _) in &keys {
                tr {
                    td.l { (k) }
                    @for p in &report.policies {
                        @let s = p.by.get(dim).and_then(|g| g.get(*k));
                        td { (s.map_or(0, |s| s.tickets)) }
                        td { (s.map_or(0, |s| s.breaches)) }
                    }
                }
            }
        }
    }
}

/// The report's main page.
pub fn index(report: &Report, accs: &[PolicyAcc], _traces: &[Trace], max_rows: usize) -> String {
    let names: Vec<String> = report.policies.iter().map(|p| p.name.clone()).collect();
    let fr: Vec<&[Sample]> = accs
        .iter()
        .map(|a| a.overall.samples(Metric::FirstResponse))
        .collect();
    let cdf = cdf_plot(&names, &fr);
    let days: Vec<BTreeMap<String, u64>> = report
        .policies
        .iter()
        .map(|p| {
            p.by.get("day")
                .map(|g| g.iter().map(|(k, s)| (k.clone(), s.breaches)).collect())
                .unwrap_or_default()
        })
        .collect();
    let per_day = breaches_per_day_plot(&names, &days);
    // Rules side by side.
    let mut rules: Vec<(String, String)> = report
        .policies
        .iter()
        .flat_map(|p| {
            p.overall
                .rules
                .iter()
                .map(|r| (r.rule.clone(), r.clock.clone()))
        })
        .collect();
    rules.sort_by_key(|(r, c)| (rule_order(r), c.clone()));
    rules.dedup();
    let base = &report.policies[0];
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "slawatch what-if: " (names.join(" vs ")) }
                style { (PreEscaped(CSS)) }
            }
            body { main {
                h1 { "What if: " (names.join(" vs "))}
                p.sub {
                    (report.input.tickets) " tickets, " (report.input.events) " events from "
                    code { (report.input.file) }
                    @if let Some(f) = &report.input.from { ", opened from " (f) }
                    ", until " (report.input.until) "."
                    @if report.input.rejected > 0 { " " (report.input.rejected) " lines rejected." }
                }
                h2 { "Headline" }
                div.cards {
                    @for (k, (label, _)) in headline(&base.overall).iter().enumerate() {
                        div.card {
                            div.k { (label) }
                            @for (i, p) in report.policies.iter().enumerate() {
                                @let h = headline(&p.overall);
                                div {
                                    span.v id=(format!("headline-{k}-{i}")) { (h[k].1) }
                                    " " span.k { (p.name) }
                                }
                            }
                            @if k == 0 && report.policies.len() > 1 {
                                @let a = base.overall.breaches as f64;
                                @let b = report.policies[1].overall.breaches as f64;
                                div.d class=(delta_class(a, b)) {
                                    (format!("{:+}", b as i64 - a as i64))
                                    @if a > 0.0 { (format!(" ({:+.1} %)", (b - a) / a * 100.0)) }
                                }
                            }
                        }
                    }
                    div.card {
                        div.k { "tickets with a different outcome" }
                        div.v id="headline-differing" { (report.differing_tickets.len()) }
                        div.k { "breached under one policy only" }
                    }
                }
                h2 { "Latency (counted time)" }
                p.note { "Unanswered tickets count as censored (rule 12): a percentile among them is shown as a lower bound, “> x”." }
                table {
                    tr { th.l { "policy" } th.l { "metric" } th { "answered" } th { "unanswered" } th { "p50" } th { "p90" } th { "p95" } }
                    @for p in &report.policies {
                        @for (m, st) in &p.overall.metrics {
                            tr { td.l { (p.name) } (metric_row(m, st)) }
                        }
                    }
                }
                h2 { "First-response distribution" }
                div.plot id="plot-cdf" { (PreEscaped(cdf)) }
                h2 { "Breach rate per rule" }
                table id="rules" {
                    tr {
                        th.l { "rule" } th.l { "clock" }
                        @for p in &report.policies { th { "started" } th { "breached" } th { "rate · " (p.name) } }
                    }
                    @for (rule, clock) in &rules {
                        tr {
                            td.l { (rule) } td.l { (clock) }
                            @for p in &report.policies {
                                @let r = p.overall.rules.iter().find(|r| &r.rule == rule && &r.clock == clock);
                                td { (r.map_or(0, |r| r.started)) }
                                td { (r.map_or(0, |r| r.breached)) }
                                td { (rate(r.and_then(|r| r.breach_rate))) }
                            }
                        }
                    }
                }
                h2 { "Breaches per day" }
                div.plot id="plot-days" { (PreEscaped(per_day)) }
                h2 { "Where breaches happen" }
                div.cols {
                    div { (top_table(report, "team", 10)) }
                    div { (top_table(report, "channel", 10)) }
                }
                h2 { "Tickets with a different outcome" }
                @if report.differing_tickets.is_empty() {
                    p { "None: every ticket breached under all policies or under none." }
                } @else {
                    p.note { "Breached under one policy only. " (report.differing_tickets.len()) " tickets"
                        @if report.differing_tickets.len() > max_rows { "; the first " (max_rows) " shown, all are in report.json" } "." }
                    table id="differing" {
                        tr { th.l { "ticket" } th.l { "channel" } th.l { "urgency" } th.l { "team" }
                             @for p in &report.policies { th.l { (p.name) } } }
                        @for d in report.differing_tickets.iter().take(max_rows) {
                            tr {
                                td.l { a href=(d.page) { (d.ticket_id) } @if !d.tenant.is_empty() { " " span.tag { (d.tenant) } } }
                                td.l { (d.channel) } td.l { (d.urgency) } td.l { (d.team) }
                                @for o in &d.outcomes {
                                    td.l {
                                        @if o.breached {
                                            @for b in &o.breaches { span.tag.b { (b.rule) " " (b.clock) } " " }
                                        } @else { span.tag.m { "met" } }
                                    }
                                }
                            }
                        }
                    }
                }
                h2 { "Worst tickets" }
                @for (name, pages) in &report.worst_tickets {
                    p { b { (name) ": " }
                        @for p in pages { a href=(p) { (p.trim_start_matches("tickets/").trim_end_matches(".html")) } " " }
                    }
                }
                p.note { "Generated by slawatch whatif. Figures: report.json. Days and weeks are UTC; a clock counts on the day it started, an output on the day it fired." }
            } }
        }
    };
    page.into_string()
}

/// One ticket's page: its timeline under every policy.
pub fn ticket_page(tenant: &str, id: &str, timelines: &[Timeline]) -> String {
    let views: Vec<_> = timelines.iter().map(|t| t.view()).collect();
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Ticket " (id) }
                style { (PreEscaped(CSS)) }
            }
            body { main {
                p { a href="../index.html" { "← report" } }
                h1 { "Ticket " (id) @if !tenant.is_empty() { " " span.tag { (tenant) } } }
                @if let Some(v) = views.first() {
                    p.sub { (v.attributes.channel) " · " (v.attributes.category) " · " (v.attributes.urgency)
                        " · tier " (v.attributes.tier) " · team " (if v.attributes.team.is_empty() { "–" } else { &v.attributes.team })
                        @if let Some(o) = &v.opened_at { " · opened " (o) } }
                }
                @for v in &views {
                    h2 { "Under " (v.policy_file) ": policy " (v.policy_id)
                         @if !v.overlays.is_empty() { " + " (v.overlays.join(", ")) } }
                    table.clocks {
                        tr { th.l { "clock" } th.l { "rule" } th.l { "started" } th.l { "paused" } th { "counted" }
                             th.l { "deadline" } th.l { "breach" } th.l { "escalations" } th.l { "end" } }
                        @for c in &v.clocks {
                            tr {
                                td.l { (c.clock) } td.l { (c.rule) } td.l { (c.start) }
                                td.l { @for p in &c.pauses { (p.from) " → " (p.to.as_deref().unwrap_or("…")) br; } }
                                td { (secs(c.counted_seconds)) }
                                td.l { (c.deadline.as_deref().unwrap_or("–")) }
                                td.l { @if let Some(b) = &c.breach { span.tag.b { (b) } } @else { "–" } }
                                td.l { @for e in &c.escalations { "L" (e.level.unwrap_or(0)) " " (e.fired_at) br; } }
                                td.l { (format!("{:?}", c.end).to_lowercase()) " " (c.ended_at.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                    h2 { "Events and outputs" }
                    table.timeline {
                        tr { th.l { "time" } th.l { "what" } th.l { "rule / clock" } th.l { "details" } th.l { "event_id" } }
                        @for row in merged(v) {
                            tr { td.l { (row.0) } td.l { (PreEscaped(row.1)) } td.l { (row.2) } td.l { (row.3) } td.l { code { (row.4) } } }
                        }
                    }
                }
            } }
        }
    };
    page.into_string()
}

/// A timeline row: time, what (HTML), rule / clock, details, event_id.
type Row = (String, String, String, String, String);

/// Events and outputs of a timeline in time order (events first at equal times).
fn merged(v: &crate::explain::TimelineView) -> Vec<Row> {
    let mut rows: Vec<(String, u8, usize, Row)> = Vec::new();
    for (i, e) in v.events.iter().enumerate() {
        let mut what = maud::html! { "event " b { (e.kind) } }.into_string();
        if e.taken != crate::whatif::trace::Taken::Applied {
            what.push_str(&format!(" <span class=\"tag\">{:?}</span>", e.taken));
        }
        if e.out_of_order {
            what.push_str(" <span class=\"tag\">out of order</span>");
        }
        rows.push((
            e.occurred_at.clone(),
            0,
            i,
            (
                e.occurred_at.clone(),
                what,
                String::new(),
                e.reason.unwrap_or("").to_string(),
                e.event_id.clone(),
            ),
        ));
    }
    for (i, o) in v.outputs.iter().enumerate() {
        let class = if o.kind == "breach" { "tag b" } else { "tag" };
        rows.push((
            o.fired_at.clone(),
            1,
            i,
            (
                o.fired_at.clone(),
                format!("<span class=\"{class}\">{}</span>", o.kind),
                format!("{} / {}", o.rule, o.clock),
                format!("deadline {} {}", o.deadline, o.detail),
                o.event_id.clone(),
            ),
        ));
    }
    // RFC 3339 Z strings of one format sort as time, except for fractional seconds; compare
    // parsed instants.
    rows.sort_by(|a, b| {
        let pa = chrono::DateTime::parse_from_rfc3339(&a.0).ok();
        let pb = chrono::DateTime::parse_from_rfc3339(&b.0).ok();
        pa.cmp(&pb).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
    });
    rows.into_iter().map(|r| r.3).collect()
}
