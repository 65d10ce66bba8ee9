//! `slawatch explain` on the worked examples E1–E8 of docs/sla-semantics.md §4: the JSON
//! trail shows each example's outputs (with their rule, clock, time and details) and the
//! clock runs behind them (start, pauses, deadline, breach, escalations, stop).
mod support;
use serde_json::Value;
use slawatch::core::model::*;
use slawatch::core::time::Dur;
use std::process::Command;
use support::*;

/// Runs `explain --format json` over the scenario, until 48 h after its last event.
fn explain(s: &Scenario, ticket: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let text: String = s
        .events
        .iter()
        .map(|e| slawatch::codec::event_to_json(e) + "\n")
        .collect();
    std::fs::write(&input, text).unwrap();
    let until = slawatch::codec::rfc3339_z(s.last_time().saturating_add(Dur::from_secs(48 * 3600)));
    let out = Command::new(env!("CARGO_BIN_EXE_slawatch"))
        .args(["explain", "--format", "json", "--until", &until, "--policy"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/policies/default.toml"
        ))
        .arg("--input")
        .arg(&input)
        .arg(ticket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The outputs as `time kind rule clock detail` lines.
fn outputs(v: &Value) -> Vec<String> {
    v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "{} {} {} {} {}",
                o["fired_at"].as_str().unwrap(),
                o["type"].as_str().unwrap(),
                o["rule"].as_str().unwrap(),
                o["clock"].as_str().unwrap(),
                o["detail"].as_str().unwrap()
            )
            .trim_end()
            .to_string()
        })
        .collect()
}

fn assert_outputs(v: &Value, expected: &[&str]) {
    let got = outputs(v);
    for e in expected {
        assert!(got.iter().any(|g| g == e), "missing {e:?} in {got:#?}");
    }
}

/// The runs of a clock.
fn runs<'a>(v: &'a Value, clock: &str) -> Vec<&'a Value> {
    v["clocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["clock"] == clock)
        .collect()
}

fn chat() -> Opened {
    Opened {
        channel: Channel::Chat,
        ..Opened::default()
    }
}

#[test]
fn e1_explains_the_first_response_breach_and_ladder() {
    let mut s = Scenario::new();
    s.opened("T1", "10:00:00", chat())
        .event("T1", "10:00:01", Body::AutoReply);
    let v = explain(&s, "T1");
    assert_eq!(v["policy_id"], "chat");
    assert_outputs(
        &v,
        &[
            "2024-03-04T10:00:48Z warning R1 first_response at 80 % of target",
            "2024-03-04T10:01:00Z breach R1 first_response",
            "2024-03-04T10:01:00Z escalation R1 first_response level 1 → team_lead (breach)",
            "2024-03-04T10:02:00Z escalation R1 first_response level 2 → supervisor (breach)",
            "2024-03-04T10:04:00Z escalation R1 first_response level 3 → department_head (breach)",
        ],
    );
    let fr = runs(&v, "first_response");
    assert_eq!(fr.len(), 1);
    assert_eq!(fr[0]["start"], "2024-03-04T10:00:00Z");
    assert_eq!(fr[0]["deadline"], "2024-03-04T10:01:00Z");
    assert_eq!(fr[0]["breach"], "2024-03-04T10:01:00Z");
    assert_eq!(fr[0]["escalations"].as_array().unwrap().len(), 3);
    // The auto-reply did not stop it (rule 1): still running at the end.
    assert_eq!(fr[0]["end"], "open");
    let events = v["events"].as_array().unwrap();
    assert_eq!(events[1]["type"], "auto_reply");
    assert_eq!(events[1]["taken"], "applied");
}

#[test]
fn e2_explains_an_answer_in_time() {
    let mut s = Scenario::new();
    let urgent_chat = Opened {
        channel: Channel::Chat,
        urgency: Urgency::Urgent,
        ..Opened::default()
    };
    s.opened("T2", "10:00:00", urgent_chat)
        .reply("T2", "10:00:20", ReplyKind::Answer);
    let v = explain(&s, "T2");
    assert_eq!(v["policy_id"], "chat-urgent");
    assert!(outputs(&v).iter().all(|o| !o.contains("first_response")));
    let fr = runs(&v, "first_response");
    assert_eq!(fr[0]["end"], "stopped");
    assert_eq!(fr[0]["ended_at"], "2024-03-04T10:00:20Z");
    assert_eq!(fr[0]["counted_seconds"], 20.0);
    assert_eq!(fr[0]["breach"], Value::Null);
}

#[test]
fn e3_explains_business_hours_across_midnight() {
    let mut s = Scenario::new();
    s.opened("T3", "2024-03-04T23:58:00+08:00", Opened::default());
    let v = explain(&s, "T3");
    assert_outputs(
        &v,
        &[
            "2024-03-05T00:32:00Z warning R5 first_response at 80 % of target",
            "2024-03-05T00:33:00Z breach R5 first_response",
        ],
    );
    assert_eq!(
        runs(&v, "first_response")[0]["deadline"],
        "2024-03-05T00:33:00Z"
    );
}

#[test]
fn e4_explains_urgent_escalation_reminders_and_resolution() {
    let mut s = Scenario::new();
    let urgent = Opened {
        urgency: Urgency::Urgent,
        ..Opened::default()
    };
    s.opened("T4", "10:00:00", urgent)
        .reply("T4", "10:03:00", ReplyKind::Answer);
    let v = explain(&s, "T4");
    assert_outputs(
        &v,
        &[
            "2024-03-04T10:00:00Z escalation R18 urgent_notify level 1 → supervisor, department_head (urgent_opened)",
            "2024-03-04T10:33:00Z progress_reminder R20 progress nth 1, every 30m 00s",
            "2024-03-04T11:03:00Z progress_reminder R20 progress nth 2, every 30m 00s",
            "2024-03-04T13:12:00Z warning R21 resolution at 80 % of target",
            "2024-03-04T14:00:00Z breach R21 resolution",
        ],
    );
    assert!(outputs(&v).iter().all(|o| !o.contains("first_response")));
    let progress = runs(&v, "progress");
    assert_eq!(progress[0]["recurring"], true);
    assert!(progress[0]["reminders"].as_u64().unwrap() >= 2);
}

#[test]
fn e5_explains_the_pause_that_moves_the_resolution_deadline() {
    let mut s = Scenario::new();
    s.opened("T5", "10:00:00", Opened::default())
        .event("T5", "11:00:00", Body::WaitingOnCustomer)
        .event("T5", "13:00:00", Body::CustomerMessage);
    let v = explain(&s, "T5");
    let r = runs(&v, "resolution");
    assert_eq!(
        r[0]["pauses"],
        serde_json::json!([{"from": "2024-03-04T11:00:00Z", "to": "2024-03-04T13:00:00Z"}])
    );
    assert_eq!(r[0]["deadline"], "2024-03-06T05:00:00Z");
    assert_outputs(&v, &["2024-03-06T05:00:00Z breach R14 resolution"]);
}

#[test]
fn e6_explains_the_restart_after_unsatisfied_feedback() {
    let mut s = Scenario::new();
    s.opened("T6", "10:00:00", chat())
        .reply("T6", "10:00:10", ReplyKind::Answer)
        .event("T6", "10:05:00", Body::Resolved)
        .event(
            "T6",
            "10:06:00",
            Body::Feedback {
                satisfied: Some(false),
            },
        );
    let v = explain(&s, "T6");
    let r = runs(&v, "resolution");
    assert_eq!(r.len(), 2, "{r:#?}");
    assert_eq!(r[0]["end"], "stopped");
    assert_eq!(r[0]["ended_at"], "2024-03-04T10:05:00Z");
    assert_eq!(r[1]["start"], "2024-03-04T10:06:00Z");
    assert_eq!(r[1]["breach"], "2024-03-04T10:36:00Z");
    assert_outputs(&v, &["2024-03-04T10:36:00Z breach R9 resolution"]);
}

#[test]
fn e7_explains_the_follow_up_that_survives_close() {
    let mut s = Scenario::new();
    let complaint = Opened {
        category: Category::Complaint,
        ..Opened::default()
    };
    s.opened("T7", "2024-03-04T09:00:00+08:00", complaint)
        .reply("T7", "2024-03-04T09:01:00+08:00", ReplyKind::Answer)
        .event("T7", "2024-03-04T12:00:00+08:00", Body::Resolved)
        .event("T7", "2024-03-04T12:01:00+08:00", Body::Closed);
    let v = explain(&s, "T7");
    assert_outputs(
        &v,
        &[
            "2024-03-04T04:00:00Z follow_up_due R23 follow_up",
            "2024-03-05T04:00:00Z breach R23 follow_up",
        ],
    );
    let f = runs(&v, "follow_up");
    assert_eq!(f[0]["start"], "2024-03-04T04:00:00Z");
    assert_eq!(f[0]["breach"], "2024-03-05T04:00:00Z");
}

#[test]
fn e8_explains_the_rematch_on_urgency_change() {
    let mut s = Scenario::new();
    s.opened("T8", "10:00:00", Opened::default()).event(
        "T8",
        "10:02:00",
        Body::UrgencyChanged(Urgency::Urgent),
    );
    let v = explain(&s, "T8");
    assert_eq!(v["policy_id"], "urgent");
    assert_eq!(v["attributes"]["urgency"], "urgent");
    assert_outputs(
        &v,
        &[
            "2024-03-04T10:02:00Z escalation R18 urgent_notify level 1 → supervisor, department_head (urgent_opened)",
            "2024-03-04T10:15:00Z breach R19 responders_answer",
            "2024-03-04T14:00:00Z breach R21 resolution",
        ],
    );
    assert!(outputs(&v).iter().all(|o| !o.contains(" R14 ")));
    // The resolution clock kept its 10:00 start under the new rule (rule 6).
    let r = runs(&v, "resolution");
    assert_eq!(r[0]["start"], "2024-03-04T10:00:00Z");
    assert_eq!(r[0]["rule"], "R21");
    // responders_answer started retroactively at the opening.
    assert_eq!(
        runs(&v, "responders_answer")[0]["start"],
        "2024-03-04T10:00:00Z"
    );
}

#[test]
fn explain_text_marks_duplicates_and_out_of_order_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Scenario::new();
    s.opened("T9", "10:00:00", chat())
        .reply("T9", "10:00:30", ReplyKind::Answer);
    let mut lines: Vec<String> = s
        .events
        .iter()
        .map(slawatch::codec::event_to_json)
        .collect();
    lines.reverse(); // the reply's line first: out of order
    lines.push(lines[0].clone()); // the reply again: a duplicate
    lines.push("{\"ticketId\":\"T9\",\"eventId\":\"bad\"}".into());
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_slawatch"))
        .args(["explain", "--policy"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/policies/default.toml"
        ))
        .arg("--input")
        .arg(&input)
        .arg("T9")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("[out of order in the file]"), "{text}");
    assert!(text.contains("[duplicate: ignored]"), "{text}");
    assert!(text.contains("line 4: rejected: missing_field"), "{text}");
    assert!(
        text.contains("stopped   2024-03-04T10:00:30Z, counted 30s"),
        "{text}"
    );
}
