//! `slawatch whatif` against figures computed independently here: breach counts per rule
//! and the tickets whose outcome differs, from `slawatch replay`'s outputs under each
//! policy; first-response percentiles and answered / unanswered counts, from the input
//! events themselves (24×7 calendars, so counted time is wall time). On a generated log and
//! on the real UCI log; a censored case (rule 12); and the HTML report rendered in headless
//! Chromium (screenshot kept at target/whatif-screenshot.png).
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_slawatch");

fn slawatch(args: &[&str]) -> std::process::Output {
    let out = Command::new(BIN).args(args).output().expect("run slawatch");
    assert!(
        out.status.success(),
        "slawatch {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A 24×7 chat policy: first response within `fr`, resolution within 30 min.
fn chat_policy(fr: &str) -> String {
    format!(
        r#"
[defaults]
warn_at = [0.8]
escalate = [{{ after = "0x", notify = "team_lead" }}, {{ after = "1x", notify = "supervisor" }}]

[[policy]]
id = "chat"
channel = "chat"

[[policy.clock]]
id = "first_response"
rule = "R1"
start = "opened"
stop = "agent_reply"
target = "{fr}"
calendar = "24x7"

[[policy.clock]]
id = "resolution"
rule = "R9"
start = "opened"
stop = "resolved"
target = "30m"
calendar = "24x7"
"#
    )
}

fn ts(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn event(ticket: &str, n: u32, at: i64, body: Value) -> String {
    let mut v = serde_json::json!({
        "eventId": format!("{ticket}-{n:02}"),
        "ticketId": ticket,
        "tenant": "acme",
        "occurredAt": ts(at),
    });
    for (k, x) in body.as_object().unwrap() {
        v[k] = x.clone();
    }
    v.to_string()
}

fn opened(ticket: &str, at: i64) -> String {
    event(
        ticket,
        0,
        at,
        serde_json::json!({"opened": {"channel": "CHANNEL_CHAT", "category": "CATEGORY_INQUIRY", "urgency": "URGENCY_GENERAL", "team": if ticket.ends_with(['1', '3', '5']) { "red" } else { "blue" }}}),
    )
}

/// `n` chat tickets: most answered after a spread of delays and resolved, every tenth
/// closed unanswered 20 min after opening. Lines grouped per ticket, as exports come.
fn generated_log(n: i64) -> String {
    let base = 1_709_546_400; // 2024-03-04T10:00:00Z
    let mut lines = Vec::new();
    for i in 0..n {
        let id = format!("G{i:04}");
        let t0 = base + i * 2200; // over ten days
        lines.push(opened(&id, t0));
        if i % 10 == 3 {
            lines.push(event(&id, 1, t0 + 1200, serde_json::json!({"closed": {}})));
            continue;
        }
        let reply = t0 + (i * 7919) % 600;
        lines.push(event(
            &id,
            1,
            reply,
            serde_json::json!({"agentMessage": {"kind": "REPLY_KIND_ANSWER"}}),
        ));
        let resolved = reply + (i * 31) % 3000;
        lines.push(event(&id, 2, resolved, serde_json::json!({"resolved": {}})));
    }
    lines.join("\n") + "\n"
}

fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// `slawatch replay`'s outputs (JSON values).
fn replay(policy: &Path, input: &Path, until: &str) -> Vec<Value> {
    let out = slawatch(&[
        "replay",
        "--policy",
        policy.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--until",
        until,
    ]);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn is_breach(o: &Value) -> bool {
    o.get("breach").is_some()
}

fn breaches_per_rule(outputs: &[Value]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for o in outputs.iter().filter(|o| is_breach(o)) {
        *m.entry(o["ruleId"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    m
}

fn breached_tickets(outputs: &[Value]) -> BTreeSet<(String, String)> {
    outputs
        .iter()
        .filter(|o| is_breach(o))
        .map(|o| {
            (
                o["tenant"].as_str().unwrap_or("").to_string(),
                o["ticketId"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn report_breaches_per_rule(policy: &Value) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for r in policy["overall"]["rules"].as_array().unwrap() {
        let b = r["breached"].as_u64().unwrap();
        if b > 0 {
            *m.entry(r["rule"].as_str().unwrap().to_string())
                .or_default() += b;
        }
    }
    m
}

/// Nearest-rank percentile over answered values with `censored` more ranked above them:
/// `Ok(value)` or `Err(())` when the rank falls among the censored.
fn nearest_rank(answered: &[f64], censored: usize, p: f64) -> Result<f64, ()> {
    let mut v = answered.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len() + censored;
    let rank = ((p / 100.0) * n as f64).ceil().max(1.0) as usize;
    if rank <= v.len() {
        Ok(v[rank - 1])
    } else {
        Err(())
    }
}

/// First-response seconds per ticket from the events: the first agent reply to the
/// customer before any `closed`; `None` when there is none (censored).
fn first_responses(jsonl: &str) -> BTreeMap<(String, String), Option<f64>> {
    let mut events: Vec<Value> = jsonl
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let at = |e: &Value| {
        chrono::DateTime::parse_from_rfc3339(e["occurredAt"].as_str().unwrap())
            .unwrap()
            .timestamp() as f64
    };
    events.sort_by(|a, b| at(a).total_cmp(&at(b)));
    let mut opened: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut done: BTreeMap<(String, String), Option<f64>> = BTreeMap::new();
    for e in &events {
        let key = (
            e["tenant"].as_str().unwrap_or("").to_string(),
            e["ticketId"].as_str().unwrap().to_string(),
        );
        if e.get("opened").is_some() {
            opened.entry(key.clone()).or_insert(at(e));
            done.entry(key).or_insert(None);
            continue;
        }
        let Some(t0) = opened.get(&key).copied() else {
            continue;
        };
        let slot = done.entry(key.clone()).or_insert(None);
        if slot.is_some() {
            continue;
        }
        if e.get("closed").is_some() {
            // Closed unanswered: no later reply counts (close cancels the clock).
            opened.remove(&key);
            continue;
        }
        if let Some(r) = e.get("agentMessage") {
            let internal = r.get("audience").and_then(|a| a.as_str()) == Some("AUDIENCE_INTERNAL");
            if !internal {
                *slot = Some(at(e) - t0);
            }
        }
    }
    done
}

fn check_first_response(report_policy: &Value, expected: &BTreeMap<(String, String), Option<f64>>) {
    let answered: Vec<f64> = expected.values().flatten().copied().collect();
    let censored = expected.values().filter(|v| v.is_none()).count();
    let m = &report_policy["overall"]["metrics"]["first_response"];
    assert_eq!(
        m["answered"].as_u64().unwrap() as usize,
        answered.len(),
        "{m}"
    );
    assert_eq!(m["unanswered"].as_u64().unwrap() as usize, censored, "{m}");
    for p in ["50", "90", "95"] {
        let got = &m[format!("p{p}_seconds")];
        match nearest_rank(&answered, censored, p.parse().unwrap()) {
            Ok(v) => assert_eq!(got.as_f64(), Some(v), "p{p}: {m}"),
            Err(()) => {
                assert!(got.is_null(), "p{p}: {m}");
                assert!(
                    m[format!("p{p}_lower_bound_seconds")].is_number(),
                    "p{p}: {m}"
                );
            }
        }
    }
}

/// Runs whatif on `input` with policies a and b; returns report.json.
fn whatif(input: &Path, a: &Path, b: &Path, out: &Path) -> Value {
    slawatch(&[
        "whatif",
        "--input",
        input.to_str().unwrap(),
        "--policy",
        a.to_str().unwrap(),
        "--policy",
        b.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap()
}

/// The shared assertions: breaches per rule and differing tickets against replay.
fn check_against_replay(report: &Value, input: &Path, a: &Path, b: &Path) {
    let until = report["input"]["until"].as_str().unwrap().to_string();
    // Replay gets the history in time order (exports come grouped per ticket; a replay
    // reading them as a stream would count late events).
    let sorted = input.with_extension("sorted.jsonl");
    let mut lines: Vec<(i64, String)> = std::fs::read_to_string(input)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let t = chrono::DateTime::parse_from_rfc3339(v["occurredAt"].as_str().unwrap())
                .unwrap()
                .timestamp_nanos_opt()
                .unwrap();
            (t, l.to_string())
        })
        .collect();
    lines.sort_by_key(|(t, _)| *t);
    let text: String = lines.into_iter().map(|(_, l)| l + "\n").collect();
    std::fs::write(&sorted, text).unwrap();
    let outs = [replay(a, &sorted, &until), replay(b, &sorted, &until)];
    for (k, outputs) in outs.iter().enumerate() {
        let p = &report["policies"][k];
        assert_eq!(
            report_breaches_per_rule(p),
            breaches_per_rule(outputs),
            "policy {}",
            p["name"]
        );
        assert_eq!(
            p["overall"]["breaches"].as_u64().unwrap(),
            outputs.iter().filter(|o| is_breach(o)).count() as u64
        );
    }
    let (ba, bb) = (breached_tickets(&outs[0]), breached_tickets(&outs[1]));
    let expected: BTreeSet<_> = ba.symmetric_difference(&bb).cloned().collect();
    let got: BTreeSet<(String, String)> = report["differing_tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["tenant"].as_str().unwrap().to_string(),
                d["ticket_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert!(
        !expected.is_empty(),
        "the two policies should differ somewhere"
    );
}

#[test]
fn report_matches_replay_and_events_on_a_generated_log() {
    let dir = tmpdir();
    let log = generated_log(400);
    let input = write(dir.path(), "events.jsonl", &log);
    let a = write(dir.path(), "strict.toml", &chat_policy("60s"));
    let b = write(dir.path(), "relaxed.toml", &chat_policy("5m"));
    let report = whatif(&input, &a, &b, &dir.path().join("out"));
    check_against_replay(&report, &input, &a, &b);
    let fr = first_responses(&log);
    check_first_response(&report["policies"][0], &fr);
    check_first_response(&report["policies"][1], &fr);
    // Breakdowns add up: per-team breaches sum to the overall count.
    let p = &report["policies"][0];
    let teams: u64 = p["by"]["team"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| s["breaches"].as_u64().unwrap())
        .sum();
    assert_eq!(teams, p["overall"]["breaches"].as_u64().unwrap());
    let days: u64 = p["by"]["day"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| s["breaches"].as_u64().unwrap())
        .sum();
    assert_eq!(days, p["overall"]["breaches"].as_u64().unwrap());
}

#[test]
fn rule12_half_unanswered_reports_the_p95_as_a_lower_bound() {
    let dir = tmpdir();
    let base = 1_709_546_400;
    let mut lines = Vec::new();
    for i in 0..100i64 {
        let id = format!("C{i:03}");
        let t0 = base + i * 60;
        lines.push(opened(&id, t0));
        if i % 2 == 0 {
            lines.push(event(
                &id,
                1,
                t0 + 10 + i / 2,
                serde_json::json!({"agentMessage": {}}),
            ));
        } else {
            lines.push(event(&id, 1, t0 + 7200, serde_json::json!({"closed": {}})));
        }
    }
    let input = write(dir.path(), "events.jsonl", &(lines.join("\n") + "\n"));
    let a = write(dir.path(), "a.toml", &chat_policy("60s"));
    let b = write(dir.path(), "b.toml", &chat_policy("5m"));
    let report = whatif(&input, &a, &b, &dir.path().join("out"));
    let m = &report["policies"][0]["overall"]["metrics"]["first_response"];
    assert_eq!(m["answered"], 50, "{m}");
    assert_eq!(m["unanswered"], 50, "{m}");
    // p50 is the 50th of 100: the slowest answer (10 + 49 s).
    assert_eq!(m["p50_seconds"].as_f64(), Some(59.0), "{m}");
    // p90 and p95 fall among the unanswered: no number, a lower bound of their 2 h.
    assert!(m["p95_seconds"].is_null(), "{m}");
    assert_eq!(m["p95_lower_bound_seconds"].as_f64(), Some(7200.0), "{m}");
    assert!(m["p90_seconds"].is_null(), "{m}");
    assert_eq!(m["p50_lower_bound_seconds"], Value::Null, "{m}");
    // And the page says so.
    let html = std::fs::read_to_string(dir.path().join("out/index.html")).unwrap();
    assert!(
        html.contains("&gt; 2h 00m 00s"),
        "lower bound shown as “> 2h”"
    );
}

/// Substitutes in a policy file's text, asserting the pattern is there.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} not in the policy");
    text.replace(from, to)
}

#[test]
fn report_matches_replay_and_events_on_the_uci_log() {
    let dir = tmpdir();
    let root = env!("CARGO_MANIFEST_DIR");
    let input = dir.path().join("uci.jsonl");
    let conv = Command::new(BIN)
        .args(["convert", "--from", "uci", "--input"])
        .arg(format!(
            "{root}/tests/data/real/uci_incident_event_log.csv.gz"
        ))
        .arg("--output")
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        conv.status.success(),
        "{}",
        String::from_utf8_lossy(&conv.stderr)
    );
    // The default policy on 24×7 calendars (counted time = wall time, so the first response
    // can be computed from the events), and a proposal with a 1 h general first response.
    let default = std::fs::read_to_string(format!("{root}/deploy/policies/default.toml")).unwrap();
    let a_text = edit(
        &default,
        "calendar = \"after-sales\"",
        "calendar = \"24x7\"",
    );
    let general = a_text.find("id = \"general\"").expect("general policy");
    let b_text = format!(
        "{}{}",
        &a_text[..general],
        edit(&a_text[general..], "target = \"5m\"", "target = \"1h\"")
    );
    let a = write(dir.path(), "default-24x7.toml", &a_text);
    let b = write(dir.path(), "proposed.toml", &b_text);
    let started = std::time::Instant::now();
    let report = whatif(&input, &a, &b, &dir.path().join("out"));
    eprintln!(
        "whatif on the UCI log: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(report["input"]["tickets"], 24_918);
    check_against_replay(&report, &input, &a, &b);
    let log = std::fs::read_to_string(&input).unwrap();
    let fr = first_responses(&log);
    check_first_response(&report["policies"][0], &fr);
    check_first_response(&report["policies"][1], &fr);
}

/// Chromium's console messages in its stderr log (`--enable-logging=stderr`).
fn console_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(":CONSOLE")).collect()
}

fn chromium(args: &[&str], page: &Path) -> (String, String) {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium (Debian package `chromium`, installed by scripts/test.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Points of the `<polyline>`s drawn in `color` inside the element with `id`.
fn series_points(dom: &str, id: &str, color: &str) -> usize {
    let start = dom.find(&format!("id=\"{id}\"")).expect("plot present");
    let end = dom[start..].find("</svg>").expect("svg closed") + start;
    dom[start..end]
        .split("<polyline")
        .skip(1)
        .filter(|p| {
            p.to_ascii_uppercase()
                .contains(&format!("STROKE=\"{color}\""))
        })
        .map(|p| {
            let pts = p.split("points=\"").nth(1).unwrap_or("");
            pts[..pts.find('"').unwrap_or(0)].split_whitespace().count()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn html_report_renders_in_headless_chromium() {
    let dir = tmpdir();
    // The console check must be able to fail: a page that logs an error is caught.
    let bad = write(
        dir.path(),
        "bad.html",
        "<script>console.error('boom')</script>",
    );
    let (_, stderr) = chromium(&["--dump-dom"], &bad);
    assert_eq!(console_lines(&stderr).len(), 1, "{stderr}");

    let input = write(dir.path(), "events.jsonl", &generated_log(400));
    let a = write(dir.path(), "strict.toml", &chat_policy("60s"));
    let b = write(dir.path(), "relaxed.toml", &chat_policy("5m"));
    let out = dir.path().join("out");
    let report = whatif(&input, &a, &b, &out);
    let index = out.join("index.html");
    let html = std::fs::read_to_string(&index).unwrap();
    // Self-contained: nothing fetched (the SVG namespace URI is a name, not a fetch).
    for fetch in ["src=", "<link", "@import", "url(", "<script"] {
        assert!(!html.contains(fetch), "index.html has {fetch}");
    }

    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/whatif-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let (_, stderr) = chromium(
        &[
            "--window-size=1200,2400",
            &format!("--screenshot={}", shot.display()),
        ],
        &index,
    );
    assert_eq!(console_lines(&stderr), Vec::<&str>::new());
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );

    let (dom, stderr) = chromium(&["--dump-dom"], &index);
    assert_eq!(console_lines(&stderr), Vec::<&str>::new());
    // Both policies' curves, with data, in both plots.
    for plot in ["plot-cdf", "plot-days"] {
        for color in ["#1F77B4", "#D62728"] {
            let n = series_points(&dom, plot, color);
            assert!(n >= 10, "{plot} {color}: {n} points");
        }
    }
    // The headline numbers: breaches per policy and the differing count.
    for k in 0..2 {
        let breaches = report["policies"][k]["overall"]["breaches"]
            .as_u64()
            .unwrap();
        assert!(
            dom.contains(&format!("id=\"headline-0-{k}\">{breaches}<")),
            "breaches of policy {k} = {breaches}"
        );
    }
    let differing = report["differing_tickets"].as_array().unwrap();
    assert!(dom.contains(&format!("id=\"headline-differing\">{}<", differing.len())));
    let p50 = report["policies"][0]["overall"]["metrics"]["first_response"]["p50_seconds"]
        .as_f64()
        .unwrap();
    assert!(dom.contains(&format!(
        "id=\"headline-1-0\">{}",
        slawatch::explain::dur(slawatch::core::time::Dur((p50 * 1e9) as i64))
    )));

    // A differing ticket's page, linked from the index.
    let page = differing[0]["page"].as_str().unwrap();
    assert!(dom.contains(&format!("href=\"{page}\"")));
    let (tdom, stderr) = chromium(&["--dump-dom"], &out.join(page));
    assert_eq!(console_lines(&stderr), Vec::<&str>::new());
    let id = differing[0]["ticket_id"].as_str().unwrap();
    assert!(tdom.contains(&format!("Ticket {id}")));
    assert!(
        tdom.contains("first_response") && tdom.contains("breach"),
        "{tdom}"
    );
}

/// whatif and explain read history with replay's reader and order: a re-sent event (same
/// id and instant, other content) applies the same copy as in `replay`, whatever the line
/// order. Read in line order, one of the two files below gave a breach replay does not.
#[test]
fn whatif_history_applies_what_replay_applies_whatever_the_line_order() {
    use slawatch::core::engine::EngineConfig;
    use slawatch::whatif::trace::{trace, History};
    let policy = std::sync::Arc::new(
        slawatch::core::policy::parse::load_policy_file(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/policies/default.toml"
        )))
        .expect("default policy"),
    );
    // Given a chat opened at t0 whose event "A-01" at t0 + 30 s was sent twice with
    // different content: once as the agent's answer, once as an escalation answer (same
    // causal rank, so only the content tells them apart),
    let t0 = 1_709_546_400;
    let answer = event(
        "A",
        1,
        t0 + 30,
        serde_json::json!({"agentMessage": {"kind": "REPLY_KIND_ANSWER", "audience": "AUDIENCE_CUSTOMER"}}),
    );
    let escalation = event(
        "A",
        1,
        t0 + 30,
        serde_json::json!({"escalationAnswered": {"role": "ROLE_SUPERVISOR"}}),
    );
    let until = ts(t0 + 86_400);
    let mut seen = Vec::new();
    for tail in [[&answer, &escalation], [&escalation, &answer]] {
        let text = format!("{}\n{}\n{}\n", opened("A", t0), tail[0], tail[1]);
        // when whatif's reader reads it and the tracer runs it, and replay runs it,
        let history = History::read(&mut text.as_bytes()).expect("read");
        assert!(history.rejected.is_empty(), "{:?}", history.rejected);
        let t = trace(
            policy.clone(),
            EngineConfig::default(),
            &history.events,
            Some(slawatch::core::time::Ts::parse_rfc3339(&until).unwrap()),
            false,
            || {},
        );
        let mut traced: Vec<String> = t
            .tickets
            .iter()
            .flat_map(|log| log.outputs.iter())
            .chain(&t.other_outputs)
            .map(|o| {
                serde_json::from_str::<Value>(&slawatch::codec::output_to_json(o))
                    .unwrap()
                    .to_string()
            })
            .collect();
        traced.sort();
        let dir = tmpdir();
        let input = write(dir.path(), "events.jsonl", &text);
        let policy_path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/policies/default.toml"
        ));
        let mut replayed: Vec<String> = replay(policy_path, &input, &until)
            .iter()
            .map(|v| v.to_string())
            .collect();
        replayed.sort();
        // then both give the same outputs, in either line order.
        assert_eq!(traced, replayed);
        seen.push(traced);
    }
    assert_eq!(seen[0], seen[1]);
}
