//! The worked examples E1–E8 of docs/sla-semantics.md §4, each through the engine with the
//! default policy, as `replay --until` (48 h after the last event) would run them.
mod support;
use slawatch::core::model::*;
use support::*;

fn chat() -> Opened {
    Opened {
        channel: Channel::Chat,
        ..Opened::default()
    }
}

#[test]
fn e1_chat_inquiry_auto_reply_does_not_stop_first_response() {
    let p = default_policy();
    let mut s = Scenario::new();
    s.opened("T1", "10:00:00", chat())
        .event("T1", "10:00:01", Body::AutoReply);
    let r = run(&p, &s.events);
    let d = "deadline=2024-03-04T10:01:00Z";
    assert_has(
        &r.outputs,
        &[
            &format!("T1 2024-03-04T10:00:48Z warning R1 first_response {d} f=0.8"),
            &format!("T1 2024-03-04T10:01:00Z breach R1 first_response {d} overdue=0s"),
            &format!("T1 2024-03-04T10:01:00Z escalation R1 first_response {d} L1 [team_lead] breach"),
            &format!("T1 2024-03-04T10:02:00Z escalation R1 first_response {d} L2 [supervisor] breach"),
            &format!("T1 2024-03-04T10:04:00Z escalation R1 first_response {d} L3 [department_head] breach"),
        ],
    );
    // The first-response outputs are exactly those five.
    let fr = r
        .outputs
        .iter()
        .filter(|o| &*o.clock == "first_response")
        .count();
    assert_eq!(fr, 5, "{:#?}", lines(&r.outputs));
    // And the order at 10:01:00 is breach before escalation L1.
    let at = lines(&r.outputs);
    let b = at
        .iter()
        .position(|l| l.contains("10:01:00Z breach R1"))
        .unwrap();
    let e = at
        .iter()
        .position(|l| l.contains("10:01:00Z escalation R1"))
        .unwrap();
    assert!(b < e);
}

#[test]
fn e2_chat_urgent_reply_in_time() {
    let p = default_policy();
    let mut s = Scenario::new();
    s.opened(
        "T2",
        "10:00:00",
        Opened {
            channel: Channel::Chat,
            urgency: Urgency::Urgent,
            ..Opened::default()
        },
    )
    .reply("T2", "10:00:20", ReplyKind::Answer);
    let r = run(&p, &s.events);
    assert_none(
        &r.outputs,
        |o| &*o.clock == "first_response",
        "first_response output",
    );
    let obs: Vec<_> = r
        .observations
        .iter()
        .filter(|o| &*o.clock == "first_response")
        .collect();
    assert_eq!(obs.len(), 1);
    assert_eq!(obs[0].counted.as_secs_f64(), 20.0);
    assert_eq!(&*obs[0].policy_id, "chat-urgent");
    assert_eq!(&*obs[0].rule_id, "R2");
    assert!(!obs[0].breached);
}

#[test]
fn e3_business_hours_cross_midnight_shanghai() {
    let p = default_policy();
    let mut s = Scenario::new();
    s.opened("T3", "2024-03-04T23:58:00+08:00", Opened::default());
    let r = run(&p, &s.events);
    let d = "deadline=2024-03-05T00:33:00Z"; // 08:33 Asia/Shanghai
    assert_has(
        &r.outputs,
        &[
            &format!("T3 2024-03-05T00:32:00Z warning R5 first_response {d} f=0.8"),
            &format!("T3 2024-03-05T00:33:00Z breach R5 first_response {d} overdue=0s"),
        ],
    );
}

#[test]
fn e4_email_urgent_escalation_reminders_resolution() {
    let p = default_policy();
    let mut s = Scenario::new();
    s.opened(
        "T4",
        "10:00:00",
        Opened {
            urgency: Urgency::Urgent,
            ..Opened::default()
        },
    )
    .reply("T4", "10:03:00", ReplyKind::Answer);
    let r = run(&p, &s.events);
    assert_has(
        &r.outputs,
        &[
            "T4 2024-03-04T10:00:00Z escalation R18 urgent_notify deadline=2024-03-04T10:00:00Z L1 [supervisor,department_head] urgent_opened",
            "T4 2024-03-04T10:33:00Z progress_reminder R20 progress deadline=2024-03-04T10:33:00Z nth=1",
            "T4 2024-03-04T11:03:00Z progress_reminder R20 progress deadline=2024-03-04T11:03:00Z nth=2",
            "T4 2024-03-04T13:12:00Z warning R21 resolution deadline=2024-03-04T14:00:00Z f=0.8",
            "T4 2024-03-04T14:00:00Z breach R21 resolution deadline=2024-03-04T14:00:00Z overdue=0s",
        ],
    );
    assert_none(
        &r.outputs,
        |o| &*o.clock == "first_response",
        "first_response output",
    );
    // Reminders never breach or escalate.
    assert_none(
        &r.outputs,
        |o| &*o.clock == "progress" && !matches!(o.body, OutputBody::ProgressReminder { .. }),
        "non-reminder progress output",
    );
}

#[test]
fn e5_waiting_on_customer_pauses_resolution() {
    let p = default_policy();
    let mut s = Scenario::new();
    s.opened("T5", "10:00:00", Opened::default())
        .event("T5", "11:00:00", Body::WaitingOnCustomer)
        .event("T5", "13:00:00", Body::CustomerMessage);
    let r = run(&p, &s.events);
    assert_has(
        &r.outputs,
        &["T5 2024-03-06T05:00:00Z breach R14 resolution deadline=2024-03-06T05:00:00Z overdue=0s"],
    );
    // Without the pause the deadline would have been 03:00 UTC.
    let mut s2 = Scenario::new();
    s2.opened("T5", "10:00:00", Opened::default());
    let r2 = run(&p, &s2.events);
    assert_has(
        &r2.outputs,
        &["T5 2024-03-06T03:00:00Z breach R14 resolution deadline=2024-03-06T03:00:00Z overdue=0s"],
    );
}

#[test]
fn e6_unsatisfied_feedback_restarts_resolution() {
    let p = default_policy();
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
    let r = run(&p, &s.events);
    assert_has(
        &r.outputs,
        &["T6 2024-03-04T10:36:00Z breach R9 resolution deadline=2024-03-04T10:36:00Z overdue=0s"],
    );
    assert_none(
        &r.outputs,
        |o| &*o.clock == "resolution" && o.deadline == t("10:30:00"),
        "resolution output of the first cycle",
    );
}

#[test]
fn e7_complaint_follow_up_survives_close() {
    let p = default_policy();
    let mut s = Scenario::new();
    s.opened(
        "T7",
        "2024-03-04T09:00:00+08:00",
        Opened {
            category: Category::Complaint,
            ..Opened::default()
        },
    )
    .reply("T7", "2024-03-04T09:01:00+08:00", ReplyKind::Answer)
    .event("T7", "2024-03-04T12:00:00+08:00", Body::Resolved)
    .event("T7", "2024-03-04T12:01:00+08:00", Body::Closed);
    let r = run(&p, &s.events);
    assert_has(
        &r.outputs,
        &[
            "T7 2024-03-04T04:00:00Z follow_up_due R23 follow_up deadline=2024-03-05T04:00:00Z",
            "T7 2024-03-05T04:00:00Z breach R23 follow_up deadline=2024-03-05T04:00:00Z overdue=0s",
        ],
    );
}

#[test]
fn e8_urgency_change_rematches() {
    let p = default_policy();
    let mut s = Scenario::new();
    s.opened("T8", "10:00:00", Opened::default()).event(
        "T8",
        "10:02:00",
        Body::UrgencyChanged(Urgency::Urgent),
    );
    let r = run(&p, &s.events);
    assert_has(
        &r.outputs,
        &[
            "T8 2024-03-04T10:02:00Z escalation R18 urgent_notify deadline=2024-03-04T10:00:00Z L1 [supervisor,department_head] urgent_opened",
            "T8 2024-03-04T14:00:00Z breach R21 resolution deadline=2024-03-04T14:00:00Z overdue=0s",
            "T8 2024-03-04T10:15:00Z breach R19 responders_answer deadline=2024-03-04T10:15:00Z overdue=0s",
        ],
    );
    assert_none(&r.outputs, |o| &*o.rule_id == "R14", "R14 output");
    assert!(r
        .outputs
        .iter()
        .filter(|o| o.fired_at > t("10:02:00"))
        .all(|o| &*o.policy_id == "urgent"));
}
