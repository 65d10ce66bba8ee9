//! The contract's amendments for real-world input (issue 12) that live in the clocks and the
//! default policy: holds that end only on `resumed` (§1 `paused_in`, §3 resolution), the
//! complaint overlay and overlay de-duplication (§3), and honest latency distributions
//! (rule 12). Times are UTC on 2024-03-04 unless written otherwise; 10:00 UTC is 18:00 in
//! Asia/Shanghai, inside after-sales hours.
mod support;
use slawatch::core::engine::EngineConfig;
use slawatch::core::model::*;
use slawatch::core::policy::LatencyMetric;
use slawatch::core::time::Dur;
use slawatch::replay::{Percentile, Summary};
use support::*;

fn complaint(channel: Channel, urgency: Urgency, tier: Tier) -> Opened {
    Opened {
        channel,
        category: Category::Complaint,
        urgency,
        tier,
    }
}

fn clock_lines(r: &Run, clock: &str) -> Vec<String> {
    r.outputs
        .iter()
        .filter(|o| &*o.clock == clock)
        .map(line)
        .collect()
}

/// The FollowUpDue and Breach lines of the `follow_up` clock (its warning and ladder fire
/// too, as for every non-recurring clock).
fn follow_up_lines(r: &Run) -> Vec<String> {
    r.outputs
        .iter()
        .filter(|o| &*o.clock == "follow_up")
        .filter(|o| matches!(o.body, OutputBody::FollowUpDue | OutputBody::Breach { .. }))
        .map(line)
        .collect()
}

// ---- §3 overlays: every complaint gets its R23 follow-up, once ---------------------------

#[test]
fn complaint_overlay_follow_up_for_chat_urgent_and_important_complaints() {
    let p = default_policy();
    for (ticket, channel, urgency, policy_id) in [
        ("C", Channel::Chat, Urgency::General, "chat"),
        ("U", Channel::Email, Urgency::Urgent, "urgent"),
        ("I", Channel::Phone, Urgency::Important, "important"),
    ] {
        // Given a complaint that a non-complaint policy matches,
        let mut s = Scenario::new();
        s.opened(
            ticket,
            "10:00:00",
            complaint(channel, urgency, Tier::Standard),
        )
        // when it is resolved and closed without a follow-up visit,
        .event(ticket, "11:00:00", Body::Resolved)
        .event(ticket, "11:01:00", Body::Closed);
        let r = run(&p, &s.events);
        // then the follow-up is due at once and breaches 24 h later (R23), under the
        // matched policy's id.
        assert_eq!(
            follow_up_lines(&r),
            vec![
                format!("{ticket} 2024-03-04T11:00:00Z follow_up_due R23 follow_up deadline=2024-03-05T11:00:00Z"),
                format!("{ticket} 2024-03-05T11:00:00Z breach R23 follow_up deadline=2024-03-05T11:00:00Z overdue=0s"),
            ],
            "{policy_id}"
        );
        assert!(r.outputs.iter().all(|o| &*o.policy_id == policy_id));
    }
}

#[test]
fn complaint_overlay_one_follow_up_for_vip_complaint() {
    let p = default_policy();
    // Given VIP complaints: one matched by the complaint policy (which has its own
    // follow_up), one by the chat policy (both overlays add a follow_up),
    for (ticket, channel) in [("E", Channel::Email), ("C", Channel::Chat)] {
        let mut s = Scenario::new();
        s.opened(
            ticket,
            "10:00:00",
            complaint(channel, Urgency::General, Tier::Vip),
        )
        // when each is resolved and never visited,
        .event(ticket, "11:00:00", Body::Resolved);
        let r = run(&p, &s.events);
        // then there is one FollowUpDue and one Breach, not two of each.
        assert_eq!(
            follow_up_lines(&r),
            vec![
                format!("{ticket} 2024-03-04T11:00:00Z follow_up_due R23 follow_up deadline=2024-03-05T11:00:00Z"),
                format!("{ticket} 2024-03-05T11:00:00Z breach R23 follow_up deadline=2024-03-05T11:00:00Z overdue=0s"),
            ]
        );
    }
}

#[test]
fn complaint_overlay_not_for_other_categories() {
    let p = default_policy();
    // Given a standard-tier chat inquiry, resolved,
    let mut s = Scenario::new();
    s.opened(
        "Q",
        "10:00:00",
        Opened {
            channel: Channel::Chat,
            ..Opened::default()
        },
    )
    .event("Q", "10:00:30", Body::Resolved);
    let r = run(&p, &s.events);
    // then no follow-up is due.
    assert!(clock_lines(&r, "follow_up").is_empty());
}

// ---- §1 `paused_in`, §3 resolution: a hold ends only on `resumed` --------------------------

fn urgent_email() -> Opened {
    Opened {
        urgency: Urgency::Urgent,
        ..Opened::default()
    }
}

#[test]
fn paused_in_hold_ends_only_on_resumed() {
    let p = default_policy();
    // Given an urgent email (resolution 4 h, 24×7) put on hold after 30 min,
    let mut s = Scenario::new();
    s.opened("H", "10:00:00", urgent_email())
        .event("H", "10:30:00", Body::OnHold)
        // when the customer writes during the hold and the hold ends at 12:00,
        .event("H", "11:00:00", Body::CustomerMessage)
        .event("H", "12:00:00", Body::Resumed);
    let r = run(&p, &s.events);
    // then the customer message did not resume the clock: 30 min counted before the hold,
    // 3 h 30 after it, so the deadline is 15:30 (not 14:30).
    assert_has(
        &r.outputs,
        &["H 2024-03-04T15:30:00Z breach R21 resolution deadline=2024-03-04T15:30:00Z overdue=0s"],
    );
    assert_none(
        &r.outputs,
        |o| &*o.clock == "resolution" && o.deadline != t("15:30:00"),
        "resolution output with another deadline",
    );
}

#[test]
fn paused_in_waiting_ends_on_customer_message() {
    let p = default_policy();
    // Given an urgent email waiting on the customer from 10:30,
    let mut s = Scenario::new();
    s.opened("W", "10:00:00", urgent_email())
        .event("W", "10:30:00", Body::WaitingOnCustomer)
        // when the customer answers at 11:00,
        .event("W", "11:00:00", Body::CustomerMessage);
    let r = run(&p, &s.events);
    // then the phase is open again and the clock counts from 11:00: deadline 14:30.
    assert_has(
        &r.outputs,
        &["W 2024-03-04T14:30:00Z breach R21 resolution deadline=2024-03-04T14:30:00Z overdue=0s"],
    );
}

#[test]
fn paused_in_clock_started_in_a_paused_phase_waits_for_the_phase_to_end() {
    use slawatch::core::policy::parse::parse_policy;
    let p = std::sync::Arc::new(
        parse_policy(
            r#"
[[policy]]
id = "p"
[[policy.clock]]
id = "answer_after_hold"
rule = "RX"
start = "customer_message"
stop = "agent_reply"
paused_in = ["on_hold"]
target = "10m"
warn_at = []
escalate = []
"#,
            "p.toml",
        )
        .unwrap(),
    );
    // Given a ticket on hold, when the customer writes at 10:05 and the hold ends at 11:00,
    let mut s = Scenario::new();
    s.opened("P", "10:00:00", Opened::default())
        .event("P", "10:01:00", Body::OnHold)
        .event("P", "10:05:00", Body::CustomerMessage)
        .event("P", "11:00:00", Body::Resumed);
    let r = run(&p, &s.events);
    // then the clock started paused and counts from 11:00.
    assert_eq!(
        lines(&r.outputs),
        vec!["P 2024-03-04T11:10:00Z breach RX answer_after_hold deadline=2024-03-04T11:10:00Z overdue=0s"]
    );
}

#[test]
fn paused_in_policy_language_errors_name_the_field() {
    use slawatch::core::policy::parse::parse_policy;
    let clock = |extra: &str| {
        format!(
            "[[policy]]\nid = \"p\"\n[[policy.clock]]\nid = \"c\"\nrule = \"R1\"\nstart = \"opened\"\nstop = \"resolved\"\ntarget = \"1h\"\n{extra}\n"
        )
    };
    let errors = |extra: &str| -> String {
        match parse_policy(&clock(extra), "p.toml") {
            Ok(_) => String::new(),
            Err(d) => d
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    };
    assert_eq!(errors("paused_in = [\"waiting\", \"on_hold\"]"), "");
    let both = errors("paused_in = [\"on_hold\"]\npause = \"on_hold\"\nresume = \"resumed\"");
    assert!(
        both.contains("both \"paused_in\" and \"pause\"/\"resume\""),
        "{both}"
    );
    let closed = errors("paused_in = [\"closed\"]");
    assert!(
        closed.contains("\"closed\" cannot pause a clock"),
        "{closed}"
    );
    let unknown = errors("paused_in = [\"hold\"]");
    assert!(unknown.contains("unknown phase \"hold\""), "{unknown}");
    let metric = errors("metric = \"first_reply\"");
    assert!(
        metric.contains("unknown metric \"first_reply\""),
        "{metric}"
    );
    assert!(metric.contains("first_response"), "{metric}");
}

// ---- Rule 12: honest latency distributions -------------------------------------------------

fn chat_general() -> Opened {
    Opened {
        channel: Channel::Chat,
        ..Opened::default()
    }
}

fn metric_obs(r: &Run, metric: LatencyMetric) -> Vec<(String, bool, Dur)> {
    r.observations
        .iter()
        .filter(|o| o.metric == Some(metric))
        .map(|o| (o.policy_id.to_string(), o.censored, o.counted))
        .collect()
}

#[test]
fn rule12_unanswered_tickets_are_censored() {
    let p = default_policy();
    // Given two chat tickets: A answered after 20 s, B closed unanswered after 10 min,
    let mut s = Scenario::new();
    s.opened("A", "10:00:00", chat_general())
        .reply("A", "10:00:20", ReplyKind::Answer)
        .opened("B", "10:00:00", chat_general())
        .event("B", "10:10:00", Body::Closed);
    let r = run(&p, &s.events);
    // then the first-response distribution counts both: A at 20 s, B censored at 10 min.
    assert_eq!(
        metric_obs(&r, LatencyMetric::FirstResponse),
        vec![
            ("chat".to_string(), false, Dur::from_secs(20)),
            ("chat".to_string(), true, Dur::from_secs(600)),
        ]
    );
    // And the report: p50 is A's 20 s, p95 falls among the unanswered and is a lower bound.
    let mut summary = Summary::default();
    for o in &r.observations {
        summary.observe(o);
    }
    let l = &summary.latencies[&(LatencyMetric::FirstResponse, "chat".to_string())];
    assert_eq!((l.answered.len(), l.censored.len()), (1, 1));
    assert_eq!(l.percentile(50.0), Some(Percentile::Exact(20.0)));
    assert_eq!(l.percentile(95.0), Some(Percentile::MoreThan(600.0)));
    let text = summary.render();
    let row = text
        .lines()
        .find(|l| l.starts_with("first_response  chat "))
        .unwrap_or_else(|| panic!("no first_response row:\n{text}"));
    assert!(row.ends_with("20.0s     > 600.0s"), "{row}");
    assert!(row.contains("       1          1 "), "{row}");
}

#[test]
fn rule12_every_ticket_counts_once_per_cycle() {
    let p = default_policy();
    // Given a chat ticket resolved at 10:05, reopened by unsatisfied feedback at 10:06 and
    // closed at 10:20 without being resolved again,
    let mut s = Scenario::new();
    s.opened("R", "10:00:00", chat_general())
        .reply("R", "10:00:10", ReplyKind::Answer)
        .event("R", "10:05:00", Body::Resolved)
        .event(
            "R",
            "10:06:00",
            Body::Feedback {
                satisfied: Some(false),
            },
        )
        .event("R", "10:20:00", Body::Closed);
    let r = run(&p, &s.events);
    // then resolution counts once per cycle: 5 min answered, then 14 min censored.
    assert_eq!(
        metric_obs(&r, LatencyMetric::Resolution),
        vec![
            ("chat".to_string(), false, Dur::from_secs(300)),
            ("chat".to_string(), true, Dur::from_secs(840)),
        ]
    );
    // and first response once, answered (it stopped in the first cycle).
    assert_eq!(
        metric_obs(&r, LatencyMetric::FirstResponse),
        vec![("chat".to_string(), false, Dur::from_secs(10))]
    );
}

#[test]
fn rule12_idle_dropped_ticket_is_censored() {
    let p = default_policy();
    // Given a chat ticket nobody answers and an idle_ttl of 1 h,
    let mut s = Scenario::new();
    s.opened("D", "10:00:00", chat_general());
    let cfg = EngineConfig {
        idle_ttl: Dur::from_secs(3600),
        ..EngineConfig::default()
    };
    let r = run_until(&p, &s.events, t("12:00:00"), cfg);
    // when it is dropped at 11:00, then its first response and resolution are censored there.
    assert_eq!(
        metric_obs(&r, LatencyMetric::FirstResponse),
        vec![("chat".to_string(), true, Dur::from_secs(3600))]
    );
    assert_eq!(
        metric_obs(&r, LatencyMetric::Resolution),
        vec![("chat".to_string(), true, Dur::from_secs(3600))]
    );
}

#[test]
fn rule12_metric_names_the_histogram_not_the_clock_id() {
    use slawatch::core::policy::parse::parse_policy;
    let p = std::sync::Arc::new(
        parse_policy(
            r#"
[[policy]]
id = "p"
[[policy.clock]]
id = "reply_time"
rule = "R1"
metric = "first_response"
start = "opened"
stop = "agent_reply"
target = "1m"
[[policy.clock]]
id = "first_response"
rule = "R2"
start = "opened"
stop = "agent_reply"
target = "1m"
"#,
            "p.toml",
        )
        .unwrap(),
    );
    // Given a policy whose first-response clock is called reply_time, and a clock called
    // first_response without a metric, when a ticket is answered after 30 s,
    let mut s = Scenario::new();
    s.opened("M", "10:00:00", Opened::default())
        .reply("M", "10:00:30", ReplyKind::Answer);
    let r = run(&p, &s.events);
    // then only reply_time feeds the first-response distribution.
    let fed: Vec<(&str, Option<LatencyMetric>)> = r
        .observations
        .iter()
        .map(|o| (&*o.clock, o.metric))
        .collect();
    assert_eq!(
        fed,
        vec![
            ("reply_time", Some(LatencyMetric::FirstResponse)),
            ("first_response", None)
        ]
    );
}

#[test]
fn rule12_replay_summary_counts_clocks_open_at_the_end_as_unanswered() {
    use slawatch::codec::Format;
    use slawatch::replay::{replay, ReplayOptions};
    // Given one chat ticket answered after 20 s and one still unanswered at the end,
    let input = concat!(
        r#"{"eventId":"a1","ticketId":"A","occurredAt":"2024-03-04T10:00:00Z","opened":{"channel":"CHANNEL_CHAT"}}"#,
        "\n",
        r#"{"eventId":"a2","ticketId":"A","occurredAt":"2024-03-04T10:00:20Z","agentMessage":{"kind":"REPLY_KIND_ANSWER","audience":"AUDIENCE_CUSTOMER"}}"#,
        "\n",
        r#"{"eventId":"b1","ticketId":"B","occurredAt":"2024-03-04T10:00:00Z","opened":{"channel":"CHANNEL_CHAT"}}"#,
        "\n",
    );
    let opts = ReplayOptions {
        format: Format::Json.into(),
        until: Some(t("10:30:00")),
        summary: true,
        ..ReplayOptions::default()
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let report = replay(
        default_policy(),
        &opts,
        &mut input.as_bytes(),
        &mut out,
        &mut err,
    )
    .unwrap();
    // when it is replayed until 10:30, then the summary says 1 answered and 1 unanswered,
    // and the p95 is "more than 30 min" (B's counted time at the end).
    let l = &report.summary.latencies[&(LatencyMetric::FirstResponse, "chat".to_string())];
    assert_eq!(l.answered, vec![20.0]);
    assert_eq!(l.censored, vec![1800.0]);
    assert_eq!(l.percentile(95.0), Some(Percentile::MoreThan(1800.0)));
}

// ---- Rule 3 with late input: a Cleared never precedes its Breach ---------------------------

#[test]
fn rule3_late_stop_cleared_does_not_precede_its_breach() {
    let p = default_policy();
    // Given a chat ticket whose first response (60 s) breached at 10:01 because the
    // watermark moved on (another ticket at 10:05),
    let mut s = Scenario::new();
    s.opened("A", "10:00:00", chat_general())
        .opened("B", "10:05:00", chat_general())
        // when the reply, sent at 10:00:50, arrives late,
        .reply("A", "10:00:50", ReplyKind::Answer);
    let r = run(&p, &s.events);
    // then the Cleared is decided at the Breach's instant, not before it, in stream order
    // and in rule-3 order alike.
    let a: Vec<String> = r
        .outputs
        .iter()
        .filter(|o| &*o.ticket_id == "A" && &*o.clock == "first_response")
        .filter(|o| {
            matches!(
                o.body,
                OutputBody::Breach { .. } | OutputBody::Cleared { .. }
            )
        })
        .map(line)
        .collect();
    let expected = vec![
        "A 2024-03-04T10:01:00Z breach R1 first_response deadline=2024-03-04T10:01:00Z overdue=0s",
        "A 2024-03-04T10:01:00Z cleared R1 first_response deadline=2024-03-04T10:01:00Z overdue=0s",
    ];
    assert_eq!(a, expected);
    let mut sorted = r.outputs.clone();
    slawatch::core::engine::sort_outputs(&mut sorted);
    let a_sorted: Vec<String> = sorted
        .iter()
        .filter(|o| &*o.ticket_id == "A" && &*o.clock == "first_response")
        .filter(|o| {
            matches!(
                o.body,
                OutputBody::Breach { .. } | OutputBody::Cleared { .. }
            )
        })
        .map(line)
        .collect();
    assert_eq!(a_sorted, expected);
}
