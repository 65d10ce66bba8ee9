//! Checks the monitoring assets in deploy/ with Prometheus' own tool, and keeps them in step
//! with the metric catalogue (`slawatch::telemetry`):
//! - `promtool check config deploy/prometheus/prometheus.yml`
//! - `promtool check rules deploy/prometheus/alerts.yml`
//! - `promtool test rules deploy/prometheus/alerts_test.yml` (every alert fires on a series
//!   that should fire it and stays silent on one that should not)
//! - the Grafana dashboard parses, every panel target has a PromQL `expr`, and every expr is
//!   valid PromQL (checked by promtool as a recording rule)
//! - every `slawatch_*` metric the rules and the dashboard use exists in the catalogue
//! - the exporter's real `/metrics` output passes `promtool check metrics`
//!
//! promtool comes with Debian's `prometheus` package (CI installs it). Without it these tests
//! fail, unless `SLAWATCH_SKIP_PROMTOOL=1` is set. `PROMTOOL=/path/to/promtool` picks a
//! binary outside PATH.
use serde_json::Value;
use slawatch::core::model::{Channel, Urgency};
use slawatch::telemetry::{self, MetricType};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy(path: &str) -> PathBuf {
    root().join("deploy").join(path)
}

fn find_promtool() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PROMTOOL") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("promtool"))
        .find(|p| p.is_file())
}

/// The promtool binary; `None` (test skipped) only when `SLAWATCH_SKIP_PROMTOOL=1`.
fn promtool() -> Option<PathBuf> {
    if let Some(p) = find_promtool() {
        return Some(p);
    }
    if std::env::var("SLAWATCH_SKIP_PROMTOOL").as_deref() == Ok("1") {
        eprintln!("promtool not found; skipped because SLAWATCH_SKIP_PROMTOOL=1");
        return None;
    }
    panic!(
        "promtool not found on PATH. Install Debian's `prometheus` package, which ships it \
         (CI does this): `sudo apt-get install -y --no-install-recommends prometheus`, or set \
         PROMTOOL=/path/to/promtool. To skip these checks set SLAWATCH_SKIP_PROMTOOL=1."
    );
}

fn run_promtool(promtool: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut cmd = Command::new(promtool);
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", promtool.display()));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed ({}):\n{text}",
        args.join(" "),
        out.status
    );
    text
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn promtool_check_config() {
    let Some(pt) = promtool() else { return };
    let cfg = deploy("prometheus/prometheus.yml");
    run_promtool(&pt, &["check", "config", path_str(&cfg)], None);
}

#[test]
fn promtool_check_rules() {
    let Some(pt) = promtool() else { return };
    let rules = deploy("prometheus/alerts.yml");
    run_promtool(&pt, &["check", "rules", path_str(&rules)], None);
}

#[test]
fn promtool_test_rules() {
    let Some(pt) = promtool() else { return };
    let tests = deploy("prometheus/alerts_test.yml");
    let out = run_promtool(&pt, &["test", "rules", path_str(&tests)], None);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Every alert in alerts.yml has at least one test that expects it to fire and one
/// evaluation at which it must not.
#[test]
fn every_alert_has_a_firing_and_a_silent_test() {
    let rules = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(deploy("prometheus/alerts_test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(str::trim)
        .collect();
    assert!(alerts.len() >= 10, "{alerts:?}");
    // Walk the alert_rule_test entries: `alertname: X` followed by `exp_alerts: []` (silent)
    // or `exp_alerts:` with a list (firing).
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    let mut firing = std::collections::HashSet::new();
    let mut silent = std::collections::HashSet::new();
    for (i, l) in lines.iter().enumerate() {
        if let Some(name) = l.strip_prefix("alertname:") {
            let name = name.trim();
            match lines.get(i + 1) {
                Some(&"exp_alerts: []") => {
                    silent.insert(name);
                }
                Some(&"exp_alerts:") => {
                    firing.insert(name);
                }
                other => panic!("unexpected line after alertname {name}: {other:?}"),
            }
        }
    }
    for a in &alerts {
        assert!(firing.contains(a), "no test makes {a} fire");
        assert!(silent.contains(a), "no test shows {a} silent");
    }
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(deploy("grafana/dashboards/slawatch.json")).unwrap();
    serde_json::from_str(&text).expect("dashboard JSON parses")
}

/// (panel title, refId, expr) of every target of every panel, rows' nested panels included.
fn dashboard_exprs(d: &Value) -> Vec<(String, String, String)> {
    fn walk(panels: &[Value], out: &mut Vec<(String, String, String)>) {
        for p in panels {
            let title = p["title"].as_str().unwrap_or("").to_string();
            if p["type"] == "row" {
                if let Some(inner) = p["panels"].as_array() {
                    walk(inner, out);
                }
                continue;
            }
            let targets = p["targets"]
                .as_array()
                .unwrap_or_else(|| panic!("panel {title:?} has no targets"));
            assert!(!targets.is_empty(), "panel {title:?} has no targets");
            for t in targets {
                let expr = t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("panel {title:?} target {} has no expr", t["refId"]));
                assert!(!expr.trim().is_empty(), "panel {title:?} has an empty expr");
                assert!(
                    !expr.contains('$'),
                    "panel {title:?}: expr uses a Grafana variable, keep it plain PromQL: {expr}"
                );
                assert_eq!(
                    t["datasource"]["uid"], "prometheus",
                    "panel {title:?}: datasource must be the provisioned one"
                );
                out.push((
                    title.clone(),
                    t["refId"].as_str().unwrap_or("?").to_string(),
                    expr.to_string(),
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(
        d["panels"].as_array().expect("dashboard has panels"),
        &mut out,
    );
    out
}

#[test]
fn dashboard_parses_and_every_panel_target_has_an_expr() {
    let d = dashboard();
    assert_eq!(d["uid"], "slawatch");
    let exprs = dashboard_exprs(&d);
    assert!(exprs.len() >= 20, "{} exprs", exprs.len());
    let all: String = exprs.iter().map(|(_, _, e)| e.as_str()).collect();
    for needed in [
        "slawatch_first_response_seconds_bucket",
        "kind=\"breach\"",
        "slawatch_escalations_total",
        "slawatch_open_tickets",
        "slawatch_consumer_lag_messages",
        "slawatch_surges_active",
        "up{job=\"slawatch\"}",
        "slawatch_transaction_commit_seconds_bucket",
        "slawatch_watermark_delay_seconds",
        "slawatch_events_rejected_total",
        "slawatch_rebalances_total",
    ] {
        assert!(all.contains(needed), "no dashboard panel uses {needed}");
    }
    // Grid sanity: no panel wider than the grid, ids unique.
    let mut ids = std::collections::HashSet::new();
    for p in d["panels"].as_array().unwrap() {
        let g = &p["gridPos"];
        assert!(g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24);
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate id");
    }
}

#[test]
fn dashboard_exprs_are_valid_promql() {
    let Some(pt) = promtool() else { return };
    let exprs = dashboard_exprs(&dashboard());
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, _, expr)) in exprs.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:expr_{i}\n        expr: {}\n",
            serde_json::to_string(expr).unwrap()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard_rules.yml");
    std::fs::write(&file, rules).unwrap();
    run_promtool(&pt, &["check", "rules", path_str(&file)], None);
}

/// Metric names (`slawatch_…`) in `text`, with histogram series suffixes mapped to the
/// histogram's name.
fn metric_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("slawatch_") {
        let start = i + pos;
        let boundary = start == 0 || {
            let b = bytes[start - 1];
            !(b.is_ascii_alphanumeric() || b == b'_' || b == b':')
        };
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            out.push(text[start..end].to_string());
        }
        i = end;
    }
    out
}

fn known_metric(name: &str) -> bool {
    if telemetry::lookup(name).is_some() {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .and_then(telemetry::lookup)
            .is_some_and(|d| d.kind == MetricType::Histogram)
    })
}

#[test]
fn rules_and_dashboard_use_only_catalogued_metrics() {
    let mut sources: Vec<(String, String)> = Vec::new();
    for f in ["prometheus/alerts.yml", "prometheus/alerts_test.yml"] {
        let text = std::fs::read_to_string(deploy(f)).unwrap();
        // Comments may talk about metrics loosely; rules and series may not.
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        sources.push((f.to_string(), code));
    }
    for (title, refid, expr) in dashboard_exprs(&dashboard()) {
        sources.push((format!("dashboard panel {title:?} {refid}"), expr));
    }
    let mut used = 0;
    for (origin, text) in &sources {
        for name in metric_names(text) {
            used += 1;
            assert!(
                known_metric(&name),
                "{origin} uses {name}, which src/telemetry.rs does not define"
            );
        }
    }
    assert!(used > 50);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("HTTP response");
    (head.to_string(), body.to_string())
}

/// Installs the real exporter (the only test in this binary that sets the global recorder),
/// records one of everything, scrapes it over HTTP and lets promtool lint the exposition.
#[test]
fn exporter_serves_metrics_that_pass_promtool_check_metrics() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let opts = telemetry::TelemetryOptions {
        refresh_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let handle = rt.block_on(async { telemetry::install_exporter(addr, &opts) });
    let handle = handle.expect("exporter installs");
    rt.block_on(async {
        telemetry::register_policy_series("chat", ["R1", "R6"]);
        telemetry::register_policy_target(
            "chat",
            slawatch::core::policy::LatencyMetric::FirstResponse,
            60.0,
        );
        for secs in [10.0, 20.0, 45.0, 70.0] {
            telemetry::record_first_response("chat", Channel::Chat, Urgency::General, secs);
        }
        telemetry::record_next_response("chat", Channel::Chat, Urgency::General, 100.0);
        telemetry::record_resolution("chat", Channel::Chat, Urgency::General, 1800.0);
        telemetry::sla_output(telemetry::OutputKind::Breach, "chat", "R1");
        telemetry::escalation("chat", "R1", 1);
        telemetry::surge_transition(
            telemetry::SurgeDimension::Channel,
            telemetry::SurgeTransition::Started,
        );
        telemetry::set_surges_active(telemetry::SurgeDimension::Channel, 1);
        telemetry::set_open_tickets(0, 12);
        telemetry::set_running_clocks(0, 30);
        telemetry::set_preopen_buffered(0, 1);
        telemetry::set_watermark_delay(0, 1.2);
        telemetry::set_consumer_lag(0, 5);
        telemetry::set_assigned_partitions(1);
        let meters = telemetry::HotMeters::new();
        meters.event_consumed(telemetry::FormatLabel::Json);
        telemetry::event_duplicate();
        telemetry::event_late();
        telemetry::event_rejected(telemetry::RejectReason::Oversize);
        telemetry::unknown_enum_values(1);
        telemetry::second_opened_ignored();
        telemetry::idle_tickets_dropped(2);
        meters.event_to_decision(Duration::from_micros(800));
        meters.output_delay(Duration::from_millis(2));
        telemetry::transaction(
            telemetry::TxnOutcome::Committed,
            Some(Duration::from_millis(3)),
        );
        telemetry::restore_finished(Duration::from_millis(250), 4096, 12);
        telemetry::set_restoring_partitions(0);
        telemetry::set_ready(true);
        telemetry::rebalance(telemetry::RebalanceKind::Assign);
        // Let the refresher publish the window quantiles.
        tokio::time::sleep(Duration::from_millis(400)).await;
    });

    let (head, body) = http_get(addr, "/metrics");
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200"),
        "{head}"
    );
    // The handle renders the same registry the listener serves.
    assert!(handle.render().contains("# TYPE slawatch_ready gauge"));
    for def in telemetry::CATALOGUE {
        assert!(
            body.contains(&format!("# TYPE {} ", def.name)),
            "{} not exported:\n{body}",
            def.name
        );
    }
    assert!(body.contains(
        "slawatch_first_response_p50_seconds{policy=\"chat\",channel=\"chat\",urgency=\"general\"} 20"
    ), "{body}");
    assert!(body.contains(
        "slawatch_first_response_p95_seconds{policy=\"chat\",channel=\"chat\",urgency=\"general\"} 70"
    ), "{body}");
    assert!(body.contains(
        "slawatch_first_response_seconds_bucket{policy=\"chat\",channel=\"chat\",urgency=\"general\",le=\"45\"} 3"
    ), "{body}");

    if let Some(pt) = promtool() {
        let out = run_promtool(&pt, &["check", "metrics"], Some(&body));
        assert!(!out.contains("problem") && !out.contains("error"), "{out}");
    }
    rt.shutdown_background();
}
