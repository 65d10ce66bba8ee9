//! The monitoring stack end to end: the real `slawatch run` binary processes support traffic
//! from the real Kafka test broker, a real Prometheus server (Debian's `prometheus`) scrapes
//! its admin `/metrics` every second with deploy/prometheus/alerts.yml loaded, and then:
//!
//! 1. **Quantiles agree.** `histogram_quantile(0.95, sum by (le)
//!    (slawatch_first_response_seconds_bucket{channel="chat"}))` over the cumulative bucket
//!    counts lies within one bucket of the exact nearest-rank p95 the test computes from the
//!    events it produced (counted time = reply − opened, every chat policy runs on the 24×7
//!    calendar). The same holds for p50 and for the `urgent` policy (24×7, other channels),
//!    and for the dashboard's form over `rate(…[5m])` (against the exact p95 of the replies
//!    that form can see: those after the first slice). `_count` and `_sum` match the
//!    produced latencies exactly, and so do the in-process sliding-window gauges
//!    (`slawatch_first_response_p50/p95_seconds`) per (policy, channel, urgency).
//! 2. **Every expression evaluates.** Every rule Prometheus loaded from alerts.yml (recording
//!    and alerting, as `/api/v1/rules` reports them) is healthy and its expression evaluates
//!    without error through `/api/v1/query`; so does every target `expr` of every panel of
//!    deploy/grafana/dashboards/slawatch.json (Grafana variables substituted: `$__rate_interval`
//!    → 5m, template variables → their current value or `.*` for All) and every query
//!    variable.
//! 3. **Every panel has data.** Each panel target returns a non-empty result, and each panel
//!    at least one finite value. The traffic is built for it: ~270 chat tickets (reply
//!    latencies from 1 s to 10 min: ~22 % of general chat over R1's 60 s, about half of
//!    urgent chat over R2's 30 s) plus urgent, important, complaint and general tickets on
//!    other channels, follow-up messages (next response), resolutions, ETAs (progress
//!    reminders), VIPs (follow-ups), duplicates, undecodable records (dead letters) and a
//!    chat surge (R26: 12/min for 5 minutes after 70 minutes at ~2.6/min) that starts and
//!    ends. It is produced in nine slices, each consumed and scraped before the next, so
//!    `rate()` over every counter and histogram sees increases. Metrics the runtime does not
//!    feed yet are listed in [`KNOWN_RUNTIME_GAPS`]: reported on every run, tolerated, and
//!    held to the full standard again once fed.
//!
//! # Time
//! The traffic spans about two and a half hours of event time, so it is replayed from the
//! past: the processor runs with `wall_clock_watermark = false` (event time alone moves the
//! watermark, as for shadow replays; the config documents it for tests), slices are in
//! event-time order, and a last "flush" ticket per partition moves every partition's
//! watermark past the final events. Consequently the watermark-delay and output-delay panels
//! show how old the replayed history is rather than live latencies; they still must return
//! data. The rule groups' `interval: 1m` is rewritten to `1s` in the copy Prometheus loads,
//! so recording rules exist within the test's lifetime (the expressions are unchanged).
//!
//! # Requirements
//! The Kafka test broker (tests/common/kafka.rs) and `prometheus` on PATH (or
//! `PROMETHEUS=/path`). Without Prometheus the test fails with install instructions unless
//! `SLAWATCH_SKIP_PROMETHEUS=1`. Logs of the processor and Prometheus are kept under
//! `target/tmp/` when the test fails.
mod common;
mod prom;

use common::kafka::{bootstrap, create_topic, producer_config, unique_name, TIMEOUT};
use prom::{http_get, poll, prometheus_binary, Guarded, Prometheus, Sample};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;
use slawatch::codec;
use slawatch::core::model::*;
use slawatch::core::time::Ts;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MIN: i64 = 60_000;
const PARTITIONS: i32 = 3;
/// Event-time cut points (minutes) of the slices; the last slice takes the rest.
const CUTS: &[i64] = &[12, 24, 36, 48, 60, 70, 76, 86];
/// The slice after which the surge has started (its burst is 70–75 min).
const SURGE_SLICE: usize = 6;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

// ---------------------------------------------------------------------------------------------
// Traffic
// ---------------------------------------------------------------------------------------------

/// splitmix64: deterministic traffic without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo) as u64) as i64
    }
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
    /// Milliseconds from one of the `(lo_s, hi_s, weight)` ranges, picked by weight.
    fn latency(&mut self, ranges: &[(i64, i64, u64)]) -> i64 {
        let total: u64 = ranges.iter().map(|r| r.2).sum();
        let mut x = self.next() % total;
        for &(lo, hi, w) in ranges {
            if x < w {
                return self.range(lo * 1000, hi * 1000);
            }
            x -= w;
        }
        unreachable!()
    }
}

/// Chat first replies: 1 s … 10 min, ~22 % over R1's 60 s.
const CHAT_REPLY: &[(i64, i64, u64)] = &[
    (1, 5, 10),
    (5, 15, 20),
    (15, 30, 20),
    (30, 45, 14),
    (45, 60, 14),
    (60, 120, 12),
    (120, 600, 10),
];
/// Urgent tickets on other channels: 20 s … 12 min (R5: 5 min).
const URGENT_REPLY: &[(i64, i64, u64)] =
    &[(20, 60, 20), (60, 180, 35), (180, 300, 25), (300, 720, 20)];

/// An event at a time relative to the traffic's origin (ms).
struct Planned {
    at: i64,
    ticket: String,
    n: u32,
    tenant: &'static str,
    body: Body,
    /// Explicit input partition (flush tickets); else by key.
    partition: Option<i32>,
}

/// (policy, channel, urgency) label values.
type Group = (&'static str, &'static str, &'static str);

#[derive(Default)]
struct Plan {
    events: Vec<Planned>,
    /// First-response counted times (ms) of every ticket under a 24×7 policy.
    first_response: BTreeMap<Group, Vec<i64>>,
    /// (reply time, first-response time) of every chat ticket, ms.
    chat_replies: Vec<(i64, i64)>,
    next_response: usize,
    resolutions: usize,
    /// Events per ticket so far (event ids are `<ticket>-<n>`).
    numbers: BTreeMap<String, u32>,
}

fn opened(channel: Channel, category: Category, urgency: Urgency, tier: Tier) -> Body {
    Body::Opened {
        channel,
        category,
        urgency,
        tier,
        team: "support".into(),
    }
}

fn reply(kind: ReplyKind) -> Body {
    Body::AgentMessage {
        kind,
        audience: Audience::Customer,
    }
}

impl Plan {
    fn push(&mut self, at: i64, ticket: &str, body: Body) {
        let n = self.numbers.entry(ticket.to_string()).or_default();
        *n += 1;
        self.events.push(Planned {
            at,
            ticket: ticket.to_string(),
            n: *n,
            tenant: "acme",
            body,
            partition: None,
        });
    }

    fn chat_ticket(&mut self, rng: &mut Rng, id: usize, open: i64, urgent: bool) {
        let t = format!("C{id:04}");
        let urgency = if urgent {
            Urgency::Urgent
        } else {
            Urgency::General
        };
        let tier = if rng.chance(0.1) {
            Tier::Vip
        } else {
            Tier::Standard
        };
        let category = if rng.chance(0.2) {
            Category::Technical
        } else {
            Category::Inquiry
        };
        self.push(open, &t, opened(Channel::Chat, category, urgency, tier));
        let l = rng.latency(CHAT_REPLY);
        if l > 1500 && rng.chance(0.5) {
            self.push(open + 1000, &t, Body::AutoReply);
        }
        let kind = match rng.range(0, 10) {
            0..=6 => ReplyKind::Answer,
            7 | 8 => ReplyKind::Eta,
            _ => ReplyKind::Solution,
        };
        self.push(open + l, &t, reply(kind));
        let group = if urgent {
            ("chat-urgent", "chat", "urgent")
        } else {
            ("chat", "chat", "general")
        };
        self.first_response.entry(group).or_default().push(l);
        self.chat_replies.push((open + l, l));
        let mut last = open + l;
        if rng.chance(0.4) {
            let c = rng.range(10_000, 300_000);
            let d = rng.range(5_000, 360_000);
            self.push(last + c, &t, Body::CustomerMessage);
            self.push(last + c + d, &t, reply(ReplyKind::Answer));
            self.next_response += 1;
            last += c + d;
        }
        if rng.chance(0.6) {
            let at = (open + l + rng.range(2 * MIN, 45 * MIN)).max(last + 30_000);
            self.push(at, &t, Body::Resolved);
            self.resolutions += 1;
            if rng.chance(0.3) {
                let satisfied = rng.chance(0.7);
                self.push(
                    at + 20_000,
                    &t,
                    Body::Feedback {
                        satisfied: Some(satisfied),
                    },
                );
            }
            if rng.chance(0.5) {
                self.push(at + MIN, &t, Body::Closed);
            }
        }
    }

    fn other_ticket(&mut self, rng: &mut Rng, id: usize, open: i64) {
        let t = format!("N{id:03}");
        let channels = [
            Channel::Email,
            Channel::Phone,
            Channel::Web,
            Channel::Social,
        ];
        let (channel, category, urgency) = match rng.range(0, 20) {
            0..=11 => (
                channels[rng.range(0, 4) as usize],
                Category::AfterSales,
                Urgency::Urgent,
            ),
            12..=14 => (Channel::Phone, Category::Technical, Urgency::Important),
            15..=17 => (Channel::Email, Category::Complaint, Urgency::General),
            _ => (Channel::Web, Category::Inquiry, Urgency::General),
        };
        self.push(open, &t, opened(channel, category, urgency, Tier::Standard));
        let l = if urgency == Urgency::Urgent {
            rng.latency(URGENT_REPLY)
        } else {
            rng.range(MIN, 20 * MIN)
        };
        self.push(open + l, &t, reply(ReplyKind::Answer));
        if urgency == Urgency::Urgent {
            // Policy `urgent` runs on the 24×7 calendar: counted time = wall time.
            self.first_response
                .entry(("urgent", channel.as_str(), "urgent"))
                .or_default()
                .push(l);
            if rng.chance(0.5) {
                self.push(
                    open + rng.range(MIN, 20 * MIN),
                    &t,
                    Body::EscalationAnswered(Role::DepartmentHead),
                );
            }
        }
        if rng.chance(0.5) {
            self.push(open + l + rng.range(5 * MIN, 60 * MIN), &t, Body::Resolved);
        }
    }

    /// ~270 chat tickets (a surge at 70–75 min) and ~70 on other channels.
    fn generate(seed: u64) -> Plan {
        let mut rng = Rng(seed);
        let mut plan = Plan::default();
        let mut id = 0;
        let spread = |n: usize, from: i64, to: i64, rng: &mut Rng| -> Vec<i64> {
            let step = (to - from) / n as i64;
            (0..n)
                .map(|k| from + k as i64 * step + rng.range(0, step))
                .collect()
        };
        let baseline = spread(182, 0, 70 * MIN, &mut rng);
        let burst = spread(60, 70 * MIN, 75 * MIN, &mut rng);
        let tail = spread(30, 75 * MIN, 95 * MIN, &mut rng);
        let others = spread(72, 0, 95 * MIN, &mut rng);
        for open in baseline.into_iter().chain(tail) {
            let urgent = rng.chance(0.2);
            plan.chat_ticket(&mut rng, id, open, urgent);
            id += 1;
        }
        for open in burst {
            plan.chat_ticket(&mut rng, id, open, false);
            id += 1;
        }
        for (i, open) in others.into_iter().enumerate() {
            plan.other_ticket(&mut rng, i, open);
        }
        // Per ticket, events must be in order of time; they are by construction. Sort all
        // by time (then ticket and number) as a live system would see them.
        plan.events
            .sort_by(|a, b| (a.at, &a.ticket, a.n).cmp(&(b.at, &b.ticket, b.n)));
        // One ticket per input partition, two minutes after everything else: moves every
        // partition's event-time watermark past the last real event.
        let end = plan.events.last().unwrap().at + 2 * MIN;
        for p in 0..PARTITIONS {
            plan.events.push(Planned {
                at: end,
                ticket: format!("FLUSH-{p}"),
                n: 1,
                tenant: "flush",
                body: opened(
                    Channel::Web,
                    Category::Inquiry,
                    Urgency::General,
                    Tier::Standard,
                ),
                partition: Some(p),
            });
        }
        plan
    }

    fn end(&self) -> i64 {
        self.events.last().map(|e| e.at).unwrap_or(0)
    }
}

/// Exact nearest-rank quantile (q in percent): the value at rank ⌈q·n/100⌉.
fn nearest_rank(values: &[i64], q: usize) -> f64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = (q * v.len()).div_ceil(100).max(1);
    v[rank - 1] as f64 / 1000.0
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Produces records and flushes; returns how many.
struct Producing {
    producer: BaseProducer,
    topic: String,
    sent: u64,
}

impl Producing {
    fn send(
        &mut self,
        key: &[u8],
        value: &[u8],
        content_type: Option<&str>,
        partition: Option<i32>,
    ) {
        let mut rec: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(&self.topic).key(key).payload(value);
        if let Some(p) = partition {
            rec = rec.partition(p);
        }
        if let Some(ct) = content_type {
            rec = rec.headers(OwnedHeaders::new().insert(Header {
                key: "content-type",
                value: Some(ct),
            }));
        }
        loop {
            match self.producer.send(rec) {
                Ok(()) => break,
                Err((
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    rec = r;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("produce to {}: {e}", self.topic),
            }
        }
        self.sent += 1;
    }

    /// Every third event as proto3 JSON, the rest as protobuf.
    fn event(&mut self, ev: &Event, partition: Option<i32>) {
        if self.sent.is_multiple_of(3) {
            let json = codec::event_to_json(ev);
            self.send(
                ev.ticket_id.as_bytes(),
                json.as_bytes(),
                Some("application/json"),
                partition,
            );
        } else {
            let pb = codec::event_to_protobuf(ev);
            self.send(ev.ticket_id.as_bytes(), &pb, None, partition);
        }
    }

    fn flush(&self) {
        self.producer
            .flush(TIMEOUT)
            .unwrap_or_else(|e| panic!("flush to {}: {e}", self.topic));
    }
}

/// Metrics in the catalogue that the runtime does not feed yet (found by this test). A
/// dashboard query on one of them may come back empty, and the surge gauge may stay 0,
/// without failing the test; each occurrence is printed as a KNOWN RUNTIME GAP. Once the
/// runtime feeds the metric, the test fails until the entry is removed, so a fixed gap is
/// held to the full standard from then on.
const KNOWN_RUNTIME_GAPS: &[(&str, &str)] = &[];

fn known_gap(expr: &str) -> Option<&'static str> {
    KNOWN_RUNTIME_GAPS
        .iter()
        .find(|(metric, _)| expr.contains(metric))
        .map(|(_, why)| *why)
}

// ---------------------------------------------------------------------------------------------
// Grafana dashboard
// ---------------------------------------------------------------------------------------------

/// One PromQL query of the dashboard: a panel target or a query variable.
struct DashQuery {
    panel: String,
    ref_id: String,
    /// As written.
    raw: String,
    /// With Grafana variables substituted.
    expr: String,
}

/// Values for Grafana's variables: built-ins first, then the dashboard's template
/// variables (current value; `.*` or `allValue` for "All"; multi-values as `(a|b)`).
fn grafana_variables(d: &Value) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = [
        ("__rate_interval", "5m"),
        ("__interval_ms", "60000"),
        ("__interval", "1m"),
        ("__range_s", "3600"),
        ("__range_ms", "3600000"),
        ("__range", "1h"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        let Some(name) = v["name"].as_str() else {
            continue;
        };
        let all = v["allValue"].as_str().unwrap_or(".*").to_string();
        let current = &v["current"]["value"];
        let value = match current {
            Value::String(s) if s == "$__all" || s == "All" => all,
            Value::String(s) => s.clone(),
            Value::Array(a) => {
                let vals: Vec<&str> = a.iter().filter_map(|x| x.as_str()).collect();
                if vals.is_empty() || vals.contains(&"$__all") {
                    all
                } else if vals.len() == 1 {
                    vals[0].to_string()
                } else {
                    format!("({})", vals.join("|"))
                }
            }
            _ => {
                // No current value: the first option, else "All".
                v["options"][0]["value"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or(all)
            }
        };
        vars.push((name.to_string(), value));
    }
    // Longest names first, so `$channel_type` is not read as `$channel` + `_type`.
    vars.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    vars
}

fn substitute(expr: &str, vars: &[(String, String)]) -> String {
    let mut out = expr.to_string();
    for (name, value) in vars {
        // ${name:format} (formats are for other datasources; the value is used as is).
        while let Some(start) = out.find(&format!("${{{name}:")) {
            let end = out[start..]
                .find('}')
                .map(|e| start + e + 1)
                .unwrap_or(out.len());
            out.replace_range(start..end, value);
        }
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("[[{name}]]"), value);
        // $name, unless it is the start of a longer name.
        let pat = format!("${name}");
        let mut from = 0;
        while let Some(i) = out[from..].find(&pat).map(|i| i + from) {
            let end = i + pat.len();
            let longer = out[end..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            if longer {
                from = end;
            } else {
                out.replace_range(i..end, value);
                from = i + value.len();
            }
        }
    }
    out
}

/// Every panel target (rows' nested panels included) and every query variable.
fn dashboard_queries(d: &Value) -> Vec<DashQuery> {
    let vars = grafana_variables(d);
    let mut out = Vec::new();
    fn walk(panels: &[Value], vars: &[(String, String)], out: &mut Vec<DashQuery>) {
        for p in panels {
            if let Some(inner) = p["panels"].as_array() {
                walk(inner, vars, out);
            }
            let title = p["title"].as_str().unwrap_or("(untitled)");
            for t in p["targets"].as_array().into_iter().flatten() {
                let Some(raw) = t["expr"].as_str() else {
                    continue;
                };
                out.push(DashQuery {
                    panel: format!("#{} {title}", p["id"]),
                    ref_id: t["refId"].as_str().unwrap_or("?").to_string(),
                    raw: raw.to_string(),
                    expr: substitute(raw, vars),
                });
            }
        }
    }
    walk(
        d["panels"].as_array().unwrap_or(&Vec::new()),
        &vars,
        &mut out,
    );
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] != "query" {
            continue;
        }
        let raw = match &v["query"] {
            Value::String(s) => s.clone(),
            q => q["query"].as_str().unwrap_or("").to_string(),
        };
        if raw.trim().is_empty() {
            continue;
        }
        out.push(DashQuery {
            panel: format!("variable ${}", v["name"].as_str().unwrap_or("?")),
            ref_id: "query".into(),
            expr: substitute(&raw, &vars),
            raw,
        });
    }
    out
}

/// Evaluates a dashboard query: PromQL, or Grafana's `label_values(…)`, `label_names()`,
/// `metrics(…)`, `query_result(…)` variable functions through the matching API.
fn eval_dashboard_query(prom: &Prometheus, expr: &str) -> Result<Vec<Sample>, String> {
    let e = expr.trim();
    let inner = |f: &str| -> Option<String> {
        e.strip_prefix(f)
            .and_then(|r| r.trim_start().strip_prefix('('))
            .and_then(|r| r.strip_suffix(')'))
            .map(|r| r.trim().to_string())
    };
    let labels_as_samples = |data: Value| -> Vec<Sample> {
        data.as_array()
            .into_iter()
            .flatten()
            .map(|v| Sample {
                labels: [("value".to_string(), v.as_str().unwrap_or("").to_string())].into(),
                value: 1.0,
            })
            .collect()
    };
    if let Some(args) = inner("label_values") {
        // label_values(label) or label_values(selector, label)
        let (selector, label) = match args.rfind(',') {
            Some(i) => (Some(args[..i].trim()), args[i + 1..].trim()),
            None => (None, args.as_str()),
        };
        let mut path = format!("label/{}/values", prom::url_encode(label));
        if let Some(s) = selector {
            path.push_str(&format!("?match[]={}", prom::url_encode(s)));
        }
        return prom.api(&path).map(labels_as_samples);
    }
    if inner("label_names").is_some() {
        return prom.api("labels").map(labels_as_samples);
    }
    if let Some(args) = inner("metrics") {
        let data = prom.api("label/__name__/values")?;
        let re = args.trim_matches('"');
        return Ok(labels_as_samples(data)
            .into_iter()
            .filter(|s| {
                s.label("value")
                    .contains(re.trim_matches(|c| c == '^' || c == '$'))
            })
            .collect());
    }
    if let Some(q) = inner("query_result") {
        return prom.query(&q);
    }
    prom.query(e)
}

// ---------------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------------

/// alerts.yml with every group's `interval:` set to 1 s, so recording rules exist within
/// the test's lifetime. Nothing else changes.
fn fast_rules(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo("deploy/prometheus/alerts.yml")).unwrap();
    let fast: String = text
        .lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("interval:") && !t.contains('#') {
                format!("{}interval: 1s\n", &l[..l.len() - t.len()])
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let path = dir.join("alerts.yml");
    std::fs::write(&path, fast).unwrap();
    path
}

/// (group, name, type, query, health, lastError) of every loaded rule.
fn loaded_rules(prom: &Prometheus) -> Result<Vec<[String; 6]>, String> {
    let data = prom.api("rules")?;
    let mut out = Vec::new();
    for g in data["groups"].as_array().ok_or("no groups")? {
        for r in g["rules"].as_array().ok_or("no rules")? {
            let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
            out.push([
                g["name"].as_str().unwrap_or("").to_string(),
                s("name"),
                s("type"),
                s("query"),
                s("health"),
                s("lastError"),
            ]);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The processor
// ---------------------------------------------------------------------------------------------

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Starts `slawatch run --config FILE` and returns it with its admin address (the config
/// asks for port 0; the bound address is in its start-up log line).
fn start_slawatch(dir: &Path, config: &Path) -> (Guarded, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slawatch"));
    cmd.arg("run")
        .arg("--config")
        .arg(config)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "info,librdkafka=warn,rdkafka=warn")
        .env("NO_COLOR", "1");
    // `slawatch run` refuses unknown SLAWATCH_* variables (SLAWATCH_SKIP_PROMETHEUS, the
    // harness's own): the test's environment is not its configuration.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SLAWATCH_") {
            cmd.env_remove(&k);
        }
    }
    let mut p = Guarded::spawn("slawatch", cmd, &dir.join("slawatch.log"));
    let admin = poll(
        "slawatch's admin listener",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            p.assert_running();
            let log = strip_ansi(&std::fs::read_to_string(&p.log).unwrap_or_default());
            log.find(" admin=")
                .map(|i| {
                    log[i + 7..]
                        .split(|c: char| c.is_whitespace())
                        .next()
                        .unwrap_or("")
                        .to_string()
                })
                .filter(|a| a.contains(':'))
                .ok_or_else(|| "no `admin=` in its log yet".to_string())
        },
    );
    (p, admin)
}

/// Deletes its directory on drop unless the test is failing (then the logs stay).
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("logs kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[test]
fn prometheus_scrapes_slawatch_and_every_dashboard_and_alert_query_works() {
    let Some(prometheus) = prometheus_binary() else {
        return;
    };
    let t_start = Instant::now();
    let work = WorkDir(Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique_name("prometheus-e2e")));
    std::fs::create_dir_all(&work.0).unwrap();

    // --- Kafka and the processor ------------------------------------------------------
    let bs = bootstrap();
    let prefix = unique_name("prom");
    let input = format!("{prefix}.in");
    create_topic(&bs, &input, PARTITIONS, &[]);
    let config = work.0.join("slawatch.toml");
    let q = |s: &str| serde_json::to_string(s).unwrap();
    std::fs::write(
        &config,
        format!(
            r#"brokers = {bs}
group_id = {group}
instance_id = "i0"
input_topics = [{input}]
policy_file = {policy}
commit_interval_ms = 100
admin_listen = "127.0.0.1:0"
# Event time alone moves the watermark: the test replays 2.5 h of history in seconds.
wall_clock_watermark = false
shutdown_timeout_ms = 5000

[topics]
breaches = {breaches}
warnings = {warnings}
escalations = {escalations}
reminders = {reminders}
surges = {surges}
dead_letters = {dlq}
state = {state}
surge_repartition = {rep}
surge_state = {surge_state}
partitions = {PARTITIONS}
output_partitions = 2
replication_factor = 1

[kafka]
"broker.address.family" = "v4"
"session.timeout.ms" = "6000"
"#,
            bs = q(&bs),
            group = q(&format!("{prefix}.g")),
            input = q(&input),
            policy = q(&repo("deploy/policies/default.toml").display().to_string()),
            breaches = q(&format!("{prefix}.breaches")),
            warnings = q(&format!("{prefix}.warnings")),
            escalations = q(&format!("{prefix}.escalations")),
            reminders = q(&format!("{prefix}.reminders")),
            surges = q(&format!("{prefix}.surges")),
            dlq = q(&format!("{prefix}.dlq")),
            state = q(&format!("{prefix}.state")),
            rep = q(&format!("{prefix}.rep")),
            surge_state = q(&format!("{prefix}.surge-state")),
        ),
    )
    .unwrap();
    let (mut slawatch, admin) = start_slawatch(&work.0, &config);
    poll(
        "slawatch /readyz with every input partition assigned",
        Duration::from_secs(90),
        Duration::from_millis(100),
        || {
            slawatch.assert_running();
            let (status, body) = http_get(&admin, "/readyz", Duration::from_secs(5))?;
            let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
            if status == 200 && v["assigned_partitions"] == PARTITIONS {
                Ok(())
            } else {
                Err(format!("{status} {body}"))
            }
        },
    );
    let t_ready = t_start.elapsed();

    // --- Prometheus -------------------------------------------------------------------
    let prom_dir = work.0.join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let rules = fast_rules(&prom_dir);
    let prom = Prometheus::start(&prometheus, &prom_dir, "slawatch", &admin, &[rules]);
    prom.wait_value(
        "Prometheus scraping slawatch (up == 1)",
        r#"up{job="slawatch"}"#,
        Duration::from_secs(60),
        |v| v == 1.0,
    );

    // --- Traffic, slice by slice --------------------------------------------------------
    let plan = Plan::generate(0x5eed_2024);
    // The last event (the flush tickets) two minutes before now: no event is in the future.
    let origin = now_ms() - plan.end() - 2 * MIN;
    let ts = |rel: i64| Ts((origin + rel) * 1_000_000);
    let mut out = Producing {
        producer: producer_config(&bs).create().expect("producer"),
        topic: input.clone(),
        sent: 0,
    };
    let mut slices: Vec<Vec<&Planned>> = vec![Vec::new(); CUTS.len() + 1];
    for e in &plan.events {
        let i = CUTS
            .iter()
            .position(|c| e.at < c * MIN)
            .unwrap_or(CUTS.len());
        slices[i].push(e);
    }
    let event_of = |e: &Planned| Event {
        event_id: format!("{}-{}", e.ticket, e.n).into(),
        ticket_id: e.ticket.as_str().into(),
        occurred_at: ts(e.at),
        tenant: e.tenant.into(),
        body: e.body.clone(),
    };
    let mut duplicates = 0;
    let mut undecodable = 0;
    // Known runtime gaps met (reported, tolerated) and gaps no longer there.
    let mut gaps_seen: Vec<String> = Vec::new();
    let mut gaps_fixed: Vec<String> = Vec::new();
    for (i, slice) in slices.iter().enumerate() {
        for e in slice {
            out.event(&event_of(e), e.partition);
        }
        if i % 3 == 1 {
            // A redelivered event (same id): counted as a duplicate, changes nothing.
            if let Some(e) = slice
                .iter()
                .find(|e| !matches!(e.body, Body::Opened { .. }))
            {
                out.event(&event_of(e), None);
                duplicates += 1;
            }
        }
        if i % 3 == 2 {
            // Undecodable input: dead-lettered with reason `undecodable`.
            let key = format!("BAD-{i}");
            out.send(key.as_bytes(), b"{nope", Some("application/json"), None);
            undecodable += 1;
        }
        out.flush();
        let sent = out.sent as f64;
        poll(
            &format!("slice {i}: {sent} records consumed and scraped"),
            Duration::from_secs(90),
            Duration::from_millis(200),
            || {
                slawatch.assert_running();
                match prom.value("sum(slawatch_events_consumed_total)")? {
                    Some(v) if v >= sent => Ok(()),
                    other => Err(format!("consumed {other:?}")),
                }
            },
        );
        if i == SURGE_SLICE {
            prom.wait_value(
                "the chat surge to start (R26)",
                r#"sum(slawatch_surge_transitions_total{transition="started"})"#,
                Duration::from_secs(60),
                |v| v >= 1.0,
            );
            // The gauge the "Surges active" panel and SlawatchSurgeActive read.
            let gauge = "sum(slawatch_surges_active)";
            let deadline = Instant::now() + Duration::from_secs(8);
            let seen = loop {
                let v = prom.value(gauge).unwrap().unwrap_or(0.0);
                if v >= 1.0 || Instant::now() >= deadline {
                    break v;
                }
                std::thread::sleep(Duration::from_millis(250));
            };
            match (seen >= 1.0, known_gap(gauge)) {
                (true, None) => {}
                (true, Some(_)) => gaps_fixed.push(gauge.to_string()),
                (false, Some(why)) => {
                    gaps_seen.push(format!("{gauge} stayed 0 during the surge: {why}"))
                }
                (false, None) => panic!(
                    "the surge started (SurgeStarted published) but {gauge} stayed {seen} for 8 s"
                ),
            }
        }
    }
    let t_traffic = t_start.elapsed();

    // Everything applied: every first response recorded, the surge over.
    let chat_n: usize = plan
        .first_response
        .iter()
        .filter(|(g, _)| g.1 == "chat")
        .map(|(_, v)| v.len())
        .sum();
    let urgent_n: usize = plan
        .first_response
        .iter()
        .filter(|(g, _)| g.0 == "urgent")
        .map(|(_, v)| v.len())
        .sum();
    for (what, promql, n) in [
        (
            "chat first responses",
            r#"sum(slawatch_first_response_seconds_count{channel="chat"})"#,
            chat_n,
        ),
        (
            "urgent-policy first responses",
            r#"sum(slawatch_first_response_seconds_count{policy="urgent"})"#,
            urgent_n,
        ),
    ] {
        let n = n as f64;
        let got = prom.wait_value(what, promql, Duration::from_secs(60), |v| v >= n);
        assert_eq!(got, n, "{what}: {promql}");
    }
    prom.wait_value(
        "the surge to end",
        r#"sum(slawatch_surge_transitions_total{transition="ended"})"#,
        Duration::from_secs(30),
        |v| v >= 1.0,
    );

    // --- 1. Quantiles -----------------------------------------------------------------------
    let bounds: Vec<f64> = {
        let mut b: Vec<f64> = prom
            .query(r#"count by (le) (slawatch_first_response_seconds_bucket{channel="chat"})"#)
            .unwrap()
            .iter()
            .map(|s| match s.label("le") {
                "+Inf" => f64::INFINITY,
                le => le.parse().unwrap(),
            })
            .collect();
        b.sort_by(f64::total_cmp);
        b
    };
    assert!(
        bounds.len() > 10 && bounds.last() == Some(&f64::INFINITY),
        "buckets: {bounds:?}"
    );
    // Index of the bucket (lower, upper] holding v (`le` is inclusive).
    let bucket = |v: f64| bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
    let bucket_text = |v: f64| {
        let i = bucket(v);
        let lo = if i == 0 { 0.0 } else { bounds[i - 1] };
        format!(
            "({lo}, {}]",
            bounds.get(i).copied().unwrap_or(f64::INFINITY)
        )
    };
    for (what, selector, samples, q) in [
        (
            "chat p95",
            r#"{channel="chat"}"#,
            plan.first_response
                .iter()
                .filter(|(g, _)| g.1 == "chat")
                .flat_map(|(_, v)| v.iter().copied())
                .collect::<Vec<_>>(),
            95,
        ),
        (
            "chat p50",
            r#"{channel="chat"}"#,
            plan.first_response
                .iter()
                .filter(|(g, _)| g.1 == "chat")
                .flat_map(|(_, v)| v.iter().copied())
                .collect(),
            50,
        ),
        (
            "urgent p95",
            r#"{policy="urgent"}"#,
            plan.first_response
                .iter()
                .filter(|(g, _)| g.0 == "urgent")
                .flat_map(|(_, v)| v.iter().copied())
                .collect(),
            95,
        ),
    ] {
        let exact = nearest_rank(&samples, q);
        let promql = format!(
            "histogram_quantile({}, sum by (le) (slawatch_first_response_seconds_bucket{selector}))",
            q as f64 / 100.0
        );
        let est = prom.value(&promql).unwrap().expect("a quantile");
        let (be, bp) = (bucket(exact), bucket(est));
        let line = format!(
            "{what}: exact (nearest rank of {} samples) {exact} s in {}, PromQL {est:.3} s in {}{}",
            samples.len(),
            bucket_text(exact),
            bucket_text(est),
            if be == bp { " (same bucket)" } else { "" }
        );
        eprintln!("[prometheus-e2e] {line}");
        assert!(
            be.abs_diff(bp) <= 1,
            "{line}: more than one bucket apart\n  {promql}"
        );
        // _count and _sum are exact.
        let count = prom
            .value(&format!(
                "sum(slawatch_first_response_seconds_count{selector})"
            ))
            .unwrap();
        assert_eq!(count, Some(samples.len() as f64), "{what}: _count");
        let sum = prom
            .value(&format!(
                "sum(slawatch_first_response_seconds_sum{selector})"
            ))
            .unwrap()
            .unwrap();
        let want: f64 = samples.iter().map(|&ms| ms as f64 / 1000.0).sum();
        assert!(
            (sum - want).abs() < 1e-6 * want.max(1.0),
            "{what}: _sum {sum} ≠ {want}"
        );
    }
    // The dashboard's form, over rate(): it sees only increases between scrapes, so not
    // the samples of the first slice (their series did not exist before it; the first
    // scrape of a series is its baseline). Compared with the exact p95 of the chat
    // replies of the later slices.
    {
        let later: Vec<i64> = plan
            .chat_replies
            .iter()
            .filter(|(at, _)| *at >= CUTS[0] * MIN)
            .map(|(_, l)| *l)
            .collect();
        let exact = nearest_rank(&later, 95);
        let promql = r#"histogram_quantile(0.95, sum by (le) (rate(slawatch_first_response_seconds_bucket{channel="chat"}[5m])))"#;
        let est = prom.value(promql).unwrap().expect("a quantile");
        let line = format!(
            "chat p95 over rate()[5m]: exact (nearest rank of the {} replies after the first slice) {exact} s in {}, PromQL {est:.3} s in {}",
            later.len(),
            bucket_text(exact),
            bucket_text(est),
        );
        eprintln!("[prometheus-e2e] {line}");
        assert!(
            bucket(exact).abs_diff(bucket(est)) <= 1,
            "{line}: more than one bucket apart\n  {promql}"
        );
    }
    // The in-process sliding-window quantiles are exact nearest ranks (each group has fewer
    // samples than the window holds). They refresh every 10 s.
    for (group, samples) in &plan.first_response {
        let (policy, channel, urgency) = group;
        for (q, gauge) in [
            (50, "slawatch_first_response_p50_seconds"),
            (95, "slawatch_first_response_p95_seconds"),
        ] {
            let want = nearest_rank(samples, q);
            let promql =
                format!(r#"{gauge}{{policy="{policy}",channel="{channel}",urgency="{urgency}"}}"#);
            prom.wait_value(
                &format!("{promql} = {want} ({} samples)", samples.len()),
                &promql,
                Duration::from_secs(45),
                |v| (v - want).abs() < 1e-9,
            );
        }
    }

    // --- 2. Every rule expression evaluates ----------------------------------------------------
    let rules_text = std::fs::read_to_string(repo("deploy/prometheus/alerts.yml")).unwrap();
    let declared = rules_text
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("- alert:") || l.starts_with("- record:"))
        .count();
    let rules = poll(
        "every rule evaluated and healthy",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            let rules = loaded_rules(&prom)?;
            let bad: Vec<_> = rules
                .iter()
                .filter(|r| r[4] != "ok")
                .map(|r| format!("{} {}: {} {}", r[0], r[1], r[4], r[5]))
                .collect();
            if rules.len() == declared && bad.is_empty() {
                Ok(rules)
            } else {
                Err(format!(
                    "{} of {declared} rules loaded; not ok: {bad:?}",
                    rules.len()
                ))
            }
        },
    );
    let mut failures = Vec::new();
    let mut firing = Vec::new();
    for [group, name, kind, query, ..] in &rules {
        match prom.query(query) {
            Ok(s) => {
                if kind == "alerting" && !s.is_empty() {
                    firing.push(name.clone());
                }
            }
            Err(e) => failures.push(format!("rule {group}/{name}: {e}\n    {query}")),
        }
    }

    // --- 3. Every dashboard query evaluates and every panel has data ----------------------
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo("deploy/grafana/dashboards/slawatch.json")).unwrap(),
    )
    .expect("dashboard JSON");
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 20, "{} dashboard queries", queries.len());
    let mut panels: BTreeMap<String, (usize, usize)> = BTreeMap::new(); // (targets, finite values)
    let mut table = Vec::new();
    for dq in &queries {
        let subst = if dq.expr == dq.raw {
            String::new()
        } else {
            format!("\n    as written: {}", dq.raw)
        };
        match eval_dashboard_query(&prom, &dq.expr) {
            Err(e) => failures.push(format!(
                "{} {}: {e}\n    {}{subst}",
                dq.panel, dq.ref_id, dq.expr
            )),
            Ok(samples) => {
                let finite = samples.iter().filter(|s| s.value.is_finite()).count();
                let entry = panels.entry(dq.panel.clone()).or_default();
                entry.0 += 1;
                entry.1 += finite;
                table.push(format!(
                    "{:<52} {:<2} {:>3} series, {:>3} finite",
                    dq.panel,
                    dq.ref_id,
                    samples.len(),
                    finite
                ));
                match (samples.is_empty(), known_gap(&dq.expr)) {
                    (true, None) => failures.push(format!(
                        "{} {}: no data\n    {}{subst}",
                        dq.panel, dq.ref_id, dq.expr
                    )),
                    (true, Some(why)) => {
                        gaps_seen.push(format!("{} {}: no data: {why}", dq.panel, dq.ref_id))
                    }
                    (false, Some(_)) if !dq.expr.contains("slawatch_surges_active") => {
                        gaps_fixed.push(dq.expr.clone())
                    }
                    _ => {}
                }
            }
        }
    }
    for (panel, (_, finite)) in &panels {
        if *finite == 0 {
            failures.push(format!("{panel}: no finite value in any of its queries"));
        }
    }
    eprintln!(
        "[prometheus-e2e] dashboard queries:\n  {}",
        table.join("\n  ")
    );
    for g in &gaps_seen {
        eprintln!("[prometheus-e2e] KNOWN RUNTIME GAP (tolerated, see KNOWN_RUNTIME_GAPS): {g}");
    }
    assert!(
        gaps_fixed.is_empty(),
        "a known runtime gap is fixed: remove it from KNOWN_RUNTIME_GAPS so this test holds \
         it to the full standard: {gaps_fixed:?}"
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The traffic did what it was built for (these are what the panels above plot).
    for (what, promql) in [
        (
            "breaches",
            r#"sum(increase(slawatch_sla_outputs_total{kind="breach"}[5m]))"#,
        ),
        (
            "escalations",
            "sum(increase(slawatch_escalations_total[5m]))",
        ),
        (
            "progress reminders",
            r#"sum(slawatch_sla_outputs_total{kind="progress_reminder"})"#,
        ),
        (
            "follow-ups",
            r#"sum(slawatch_sla_outputs_total{kind="follow_up_due"})"#,
        ),
        (
            "next-response samples",
            "sum(increase(slawatch_next_response_seconds_count[5m]))",
        ),
        (
            "resolution samples",
            "sum(increase(slawatch_resolution_seconds_count[5m]))",
        ),
        ("duplicates", "sum(slawatch_events_duplicate_total)"),
        (
            "dead letters",
            r#"sum(slawatch_events_rejected_total{reason="undecodable"})"#,
        ),
        ("open tickets", "sum(slawatch_open_tickets)"),
        ("running clocks", "sum(slawatch_running_clocks)"),
        (
            "transactions",
            r#"sum(slawatch_transactions_total{outcome="committed"})"#,
        ),
    ] {
        let v = prom.value(promql).unwrap().unwrap_or(0.0);
        assert!(v > 0.0, "no {what}: {promql} = {v}");
    }
    assert_eq!(
        prom.value("sum(slawatch_events_duplicate_total)").unwrap(),
        Some(duplicates as f64)
    );
    assert_eq!(
        prom.value(r#"sum(slawatch_events_rejected_total{reason="undecodable"})"#)
            .unwrap(),
        Some(undecodable as f64)
    );
    slawatch.assert_running();

    eprintln!(
        "[prometheus-e2e] {} records ({} chat tickets, {} urgent-policy tickets, {} next responses, {} resolutions); \
         {} rules and {} dashboard queries evaluated; alerts whose condition holds now: {:?}",
        out.sent,
        chat_n,
        urgent_n,
        plan.next_response,
        plan.resolutions,
        rules.len(),
        queries.len(),
        firing
    );
    eprintln!(
        "[prometheus-e2e] ready after {:.1} s, traffic done after {:.1} s, total {:.1} s",
        t_ready.as_secs_f64(),
        t_traffic.as_secs_f64(),
        t_start.elapsed().as_secs_f64()
    );
    slawatch.stop(Duration::from_secs(10));
}

/// Grafana variables in dashboard expressions are substituted the way the test evaluates
/// them (the dashboard has none today; this keeps the substitution honest for when it
/// does).
#[test]
fn grafana_variables_are_substituted() {
    let d: Value = serde_json::json!({
        "templating": {"list": [
            {"name": "channel", "type": "query", "query": "label_values(slawatch_first_response_seconds_bucket, channel)",
             "includeAll": true, "current": {"text": "All", "value": "$__all"}},
            {"name": "urgency", "type": "custom", "current": {"value": ["general", "urgent"]}},
            {"name": "q", "type": "custom", "current": {"value": "0.95"}},
            {"name": "instance", "type": "query", "query": {"query": "label_values(up{job=\"slawatch\"}, instance)"},
             "allValue": ".+", "current": {"value": ["$__all"]}}
        ]},
        "panels": [
            {"id": 1, "type": "row", "title": "r", "panels": [
                {"id": 2, "title": "p", "targets": [{"refId": "A",
                 "expr": "histogram_quantile($q, sum by (le) (rate(x_bucket{channel=~\"$channel\",urgency=~\"${urgency}\",instance=~\"[[instance]]\"}[$__rate_interval])))"}]}
            ]}
        ]
    });
    let qs = dashboard_queries(&d);
    assert_eq!(qs.len(), 3, "one target and two query variables");
    assert_eq!(
        qs[0].expr,
        r#"histogram_quantile(0.95, sum by (le) (rate(x_bucket{channel=~".*",urgency=~"(general|urgent)",instance=~".+"}[5m])))"#
    );
    assert_eq!(qs[0].panel, "#2 p");
    assert_eq!(
        qs[1].expr,
        "label_values(slawatch_first_response_seconds_bucket, channel)"
    );
    assert_eq!(qs[2].expr, r#"label_values(up{job="slawatch"}, instance)"#);
    assert_eq!(
        substitute("${q:raw} $qq $q", &[("q".into(), "1".into())]),
        "1 $qq 1"
    );
}
