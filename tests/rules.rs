//! Every timed rule of docs/policy-rules.md where docs/sla-semantics.md §3 places it, fired
//! through the engine with exact outputs (E1–E8 in tests/examples.rs cover R1, R5, R9, R14, R18–R23).
//! Times are UTC on 2024-03-04; 10:00 UTC is 18:00 in Asia/Shanghai, inside after-sales
//! hours (08:30–24:00), so after-sales clocks of a few hours count like 24×7 here.
mod support;
use slawatch::core::engine::{EngineConfig, Refusal};
use slawatch::core::model::*;
use slawatch::core::time::Dur;
use support::*;

fn chat(urgency: Urgency) -> Opened {
    Opened {
        channel: Channel::Chat,
        urgency,
        ..Opened::default()
    }
}

fn clock_lines(r: &Run, clock: &str) -> Vec<String> {
    r.outputs
        .iter()
        .filter(|o| &*o.clock == clock)
        .map(line)
        .collect()
}

#[test]
fn r2_urgent_chat_first_response_30s_with_ladder() {
    let p = default_policy();
    let mut s = Scenario::new();
    s.opened("A", "10:00:00", chat(Urgency::Urgent));
    let r = run(&p, &s.events);
    let d = "deadline=2024-03-04T10:00:30Z";
    assert_eq!(
        clock_lines(&r, "first_response"),
        vec![
            format!("A 2024-03-04T10:00:24Z warning R2 first_response {d} f=0.8"),
            format!("A 2024-03-04T10:00:30Z breach R2 first_response {d} overdue=0s"),
            format!("A 2024-03-04T10:00:30Z escalation R2 first_response {d} L1 [team_lead] breach"),
            format!("A 2024-03-04T10:01:00Z escalation R2 first_response {d} L2 [supervisor] breach"),
            format!("A 2024-03-04T10:02:00Z escalation R2 first_response {d} L3 [department_head] breach"),
        ]
    );
    assert!(r.outputs.iter().all(|o| &*o.policy_id == "chat-urgent"));
}

#[test]
fn r3_strict_preset_chat_inquiry_30s() {
    let p = policy("deploy/policies/strict.toml");
    let mut s = Scenario::new();
    s.opened("A", "10:00:00", chat(Urgency::General));
    let r = run(&p, &s.events);
    assert_has(
        &r.outputs,
        &["A 2024-03-04T10:00:30Z breach R3 first_response deadline=2024-03-04T10:00:30Z overdue=0s"],
    );
}

#[test]
fn r4_complaint_first_feedback_5m_after_sales() {
    let p = default_policy();
    let mut s = Scenario::new();
    s.opened(
        "A",
        "10:00:00",
        Opened {
            category: Category::Complaint,
            ..Opened::default()
        },
    );
    let r = run(&p, &s.events);
    assert_has(
        &r.outputs,
        &[
            "A 2024-03-04T10:04:00Z warning R4 first_response deadline=2024-03-04T10:05:00Z f=0.8",
            "A 2024-03-04T10:05:00Z breach R4 first_response deadline=2024-03-04T10:05:00Z overdue=0s",
        ],
    );
}

#[test]
fn r6_chat_next_response_3m_only_after_first_response() {
    let p = default_policy();
    let mut s = Scenario::new();
    s.opened("A", "10:00:00", chat(Urgency::General))
        // Before the first reply a customer message starts nothing (after = first_response).
        .event("A", "10:00:05", Body::CustomerMessage)
        .reply("A", "10:00:10", ReplyKind::Answer)
        .event("A", "10:01:00", Body::CustomerMessage);
    let r = run(&p, &s.events);
    assert_eq!(
        clock_lines(&r, "next_response")[..2],
        [
            "A 2024-03-04T10:03:24Z warning R6 next_response deadline=2024-03-04T10:04:00Z f=0.8".to_string(),
            "A 2024-03-04T10:04:00Z breach R6 next_response deadline=2024-03-04T10:04:00Z overdue=0s".to_string(),
        ]
    );
}

#[test]
fn r7_general_next_response_10m_and_cleared_after_breach() {
    let p = default_policy();
    let mut s = Scenario::new();
    s.opened("A", "10:00:00", Opened::default())
        .reply("A", "10:01:00", ReplyKind::Answer)
        .event("A", "10:02:00", Body::CustomerMessage)
        .reply("A", "10:12:30", ReplyKind::Answer);
    let r = run(&p, &s.events);
    assert_eq!(
        clock_lines(&r, "next_response"),
        vec![
            "A 2024-03-04T10:10:00Z warning R7 next_response deadline=2024-03-04T10:12:00Z f=0.8",
            "A 2024-03-04T10:12:00Z breach R7 next_response deadline=2024-03-04T10:12:00Z overdue=0s",
            "A 2024-03-04T10:12:00Z escalation R7 next_response deadline=2024-03-04T10:12:00Z L1 [team_lead] breach",
            "A 2024-03-04T10:12:30Z cleared R7 next_response deadline=2024-03-04T10:12:00Z overdue=30s",
        ]
    );
}

#[test]
fn r8_eta_within_10m_of_first_response() {
    let p = default_policy();
    let mut s = Scenario::new();
    s.opened("A", "10:00:00", chat(Urgency::General))
        .reply("A", "10:00:10", ReplyKind::Answer);
    let r = run(&p, &s.events);
    assert_has(
        &r.outputs,
        &["A 2024-03-04T10:10:10Z breach R8 eta deadline=2024-03-04T10:10:10Z overdue=0s"],
    );
    // An ETA in time stops it.
    let mut s = Scenario::new();
    s.opened("B", "10:00:00", chat(Urgency::General))
        .reply("B", "10:00:10", ReplyKind::Answer)
        .reply("B", "10:05:00", ReplyKind::Eta);
    let r = run(&p, &s.events);
    assert!(clock_lines(&r, "eta").iter().all(|l| l.contains("warning")));
}

#[test]
fn r10_progress_every_10m_after_eta_reset_by_progress_reply() {
    let p = default_policy();
    let mut s = Scenario::new();
    s.opened("A", "10:00:00", chat(Urgency::General))
        .reply("A", "10:00:10", ReplyKind::Answer)
        .reply("A", "10:05:00", ReplyKind::Eta)
        .reply("A", "10:20:00", ReplyKind::Progress)
        .event("A", "10:45:00", Body::Resolved);
    let r = run(&p, &s.events);
    assert_eq!(
        clock_lines(&r, "progress"),
        vec![
            "A 2024-03-04T10:15:00Z progress_reminder R10 progress deadline=2024-03-04T10:15:00Z nth=1",
            "A 2024-03-04T10:30:00Z progress_reminder R10 progress deadline=2024-03-04T10:30:00Z nth=1",
            "A 2024-03-04T10:40:00Z progress_reminder R10 progress deadline=2024-03-04T10:40:00Z nth=2",
        ]
    );
}

#[test]
fn r11_supervisor_answers_escalation_within_5m() {
    let p = default_policy();
    let mut s = Scenario::new();
    s.opened("A", "10:00:00", chat(Urgency::General)).event(
        "A",
        "10:01:00",
        Body::Escalated(Role::Supervisor),
    );
    let r = run(&p, &s.events);
    assert_has(
        &r.outputs,
        &["A 2024-03-04T10:06:00Z breach R11 supervisor_answer deadline=2024-03-04T10:06:00Z overdue=0s"],
    );
    let mut s = Scenario::new();
    s.opened("B", "10:00:00", chat(Urgency::General))
        .event("B", "10:01:00", Body::Escalated(Role::Supervisor))
        .event("B", "10:03:00", Body::EscalationAnswered(Role::Supervisor));
    let r = run(&p, &s.events);
    assert!(clock_lines(&r, "supervisor_answer").is_empty());
}

#[test]
fn r12_cross_department_policy_file() {
    let p = policy("tests/policies/r12_cross_department.toml");
    let mut s = Scenario::new();
    s.opened("A", "10:00:00", Opened::default())
        .event("A", "10:00:00", Body::DepartmentRequested);
    let r = run(&p, &s.events);
    let got = lines(&r.outputs);
    assert!(
        got.iter()
            .any(|l| l.starts_with("A 2024-03-04T10:15:00Z breach R12")),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|l| l.starts_with("A 2024-03-04T12:00:00Z breach R12")),
        "{got:#?}"
    );
}

#[test]
fn r13_handoff_to_department_30m() {
    let p = default_policy();
    let mut s = Scenario::new();
    s.opened("A", "10:00:00", Opened::default())
        .reply("A", "10:01:00", ReplyKind::Answer)
        .event("A", "10:10:00", Body::DepartmentRequested);
    let r = run(&p, &s.events);
    assert_has(
        &r.outputs,
        &["A 2024-03-04T10:40:00Z breach R13 handoff deadline=2024-03-04T10:40:00Z overdue=0s"],
    );
}

#[test]
fn r14_first_solution_2h_after_handoff() {
    let p = default_policy();
    let mut s = Scenario::new();
    s.opened("A", "10:00:00", Opened::default())
        .reply("A", "10:01:00", ReplyKind::Answer)
        .event("A", "10:10:00", Body::HandedToDepartment);
    let r = run(&p, &s.events);
    assert_has(
        &r.outputs,
        &["A 2024-03-04T12:10:00Z breach R14 first_solution deadline=2024-03-04T12:10:00Z overdue=0s"],
    );
}

fn important() -> Opened {
    Opened {
        urgency: Urgency::Important,
        ..Opened::default()
    }
}

#[test]
fn r15_important_reported_to_supervisor_15m() {
    let p = default_policy();
    let mut s = Scenario::new();
    s.opened("A", "10:00:00", important());
    let r = run(&p, &s.events);
    assert_has(
        &r.outputs,
        &["A 2024-03-04T10:15:00Z breach R15 supervisor_report deadline=2024-03-04T10:15:00Z overdue=0s"],
    );
    let mut s = Scenario::new();
    s.opened("B", "10:00:00", important()).event(
        "B",
        "10:10:00",
        Body::Escalated(Role::Supervisor),
    );
    let r = run(&p, &s.events);
    assert!(clock_lines(&r, "supervisor_report")
        .iter()
        .all(|l| l.contains("warning")));
}

#[test]
fn r16_department_start_4h_and_internal_progress_every_2h() {
    let p = default_policy();
    let mut s = Scenario::new();
    s.opened("A", "10:00:00", important())
        .event("A", "10:00:00", Body::HandedToDepartment);
    let r = run(&p, &s.events);
    assert_has(
        &r.outputs,
        &["A 2024-03-04T14:00:00Z breach R16 department_start deadline=2024-03-04T14:00:00Z overdue=0s"],
    );
    let mut s = Scenario::new();
    s.opened("B", "10:00:00", important())
        .event("B", "10:00:00", Body::HandedToDepartment)
        .event("B", "10:30:00", Body::DepartmentStarted)
        .event(
            "B",
            "11:00:00",
            Body::AgentMessage {
                kind: ReplyKind::Progress,
                audience: Audience::Internal,
            },
        )
        .event("B", "15:30:00", Body::Resolved);
    let r = run(&p, &s.events);
    // 11:00 resets; 13:00 missed; 15:00 missed (23:00 Shanghai, still open); resolved ends it.
    assert_eq!(
        clock_lines(&r, "internal_progress"),
        vec![
            "B 2024-03-04T13:00:00Z progress_reminder R16 internal_progress deadline=2024-03-04T13:00:00Z nth=1",
            "B 2024-03-04T15:00:00Z progress_reminder R16 internal_progress deadline=2024-03-04T15:00:00Z nth=2",
        ]
    );
}

#[test]
fn r17_important_resolution_24h_after_sales() {
    let p = default_policy();
    let mut s = Scenario::new();
    s.opened("A", "10:00:00", important());
    let r = run(&p, &s.events);
    assert_has(
        &r.outputs,
        &["A 2024-03-06T03:00:00Z breach R17 resolution deadline=2024-03-06T03:00:00Z overdue=0s"],
    );
}

#[test]
fn r23_vip_overlay_follow_up_and_done_in_time() {
    let p = default_policy();
    let vip = Opened {
        tier: Tier::Vip,
        ..Opened::default()
    };
    let mut s = Scenario::new();
    s.opened("A", "10:00:00", vip)
        .event("A", "11:00:00", Body::Resolved);
    let r = run(&p, &s.events);
    assert_has(
        &r.outputs,
        &[
            "A 2024-03-04T11:00:00Z follow_up_due R23 follow_up deadline=2024-03-05T11:00:00Z",
            "A 2024-03-05T11:00:00Z breach R23 follow_up deadline=2024-03-05T11:00:00Z overdue=0s",
        ],
    );
    assert!(r.outputs.iter().all(|o| &*o.policy_id == "general"));
    let mut s = Scenario::new();
    s.opened(
        "B",
        "10:00:00",
        Opened {
            tier: Tier::Vip,
            ..Opened::default()
        },
    )
    .event("B", "11:00:00", Body::Resolved)
    .event("B", "20:00:00", Body::FollowUpDone);
    let r = run(&p, &s.events);
    assert_eq!(
        clock_lines(&r, "follow_up"),
        vec!["B 2024-03-04T11:00:00Z follow_up_due R23 follow_up deadline=2024-03-05T11:00:00Z"]
    );
}

#[test]
fn r24_root_cause_policy_file() {
    let p = policy("tests/policies/r24_root_cause.toml");
    let mut s = Scenario::new();
    s.opened("A", "10:00:00", Opened::default())
        .event("A", "11:00:00", Body::Resolved)
        .event("A", "11:05:00", Body::Closed);
    let r = run(&p, &s.events);
    let got = lines(&r.outputs);
    assert!(
        got.iter()
            .any(|l| l.starts_with("A 2024-03-05T11:00:00Z breach R24")),
        "{got:#?}"
    );
}

#[test]
fn r25_misrouted_transfer_after_10s_breaches_on_the_event() {
    let p = default_policy();
    let mut s = Scenario::new();
    s.opened("A", "10:00:00", chat(Urgency::General))
        .event("A", "10:00:02", Body::Assigned)
        .event("A", "10:00:17", Body::Transferred { misrouted: true })
        .event("A", "10:00:20", Body::Assigned)
        .event("A", "10:00:25", Body::Transferred { misrouted: true });
    let r = run(&p, &s.events);
    assert_eq!(
        clock_lines(&r, "misroute"),
        vec!["A 2024-03-04T10:00:17Z breach R25 misroute deadline=2024-03-04T10:00:12Z overdue=5s"]
    );
}

#[test]
fn r26_surge_started_and_ended_per_tenant_channel() {
    let p = default_policy();
    let mut s = Scenario::new();
    // Baseline: one chat ticket a minute for 70 minutes, then 40 in 4 minutes.
    for m in 0..70 {
        s.opened(
            &format!("B{m}"),
            &format!("{:02}:{:02}:05", 9 + m / 60, m % 60),
            chat(Urgency::General),
        );
    }
    for i in 0..40 {
        let m = 70 + i / 10;
        s.opened(
            &format!("S{i}"),
            &format!("{:02}:{:02}:{:02}", 9 + m / 60, m % 60, 10 + i % 10),
            chat(Urgency::General),
        );
    }
    let r = run(&p, &s.events);
    let surge: Vec<_> = r.outputs.iter().filter(|o| &*o.rule_id == "R26").collect();
    assert_eq!(surge.len(), 2, "{:#?}", lines(&r.outputs));
    // At 10:12 the window [10:07, 10:12) holds 3 + 20 = 23 tickets (4.6/min) against a
    // 1/min baseline over [09:07, 10:07): ratio 4.6 > 3 with ≥ 20 tickets.
    assert_eq!(surge[0].fired_at, t("10:12:00"));
    assert!(matches!(
        surge[0].body,
        OutputBody::SurgeStarted {
            channel: Channel::Chat,
            ..
        }
    ));
    assert!(matches!(
        surge[1].body,
        OutputBody::SurgeEnded {
            channel: Channel::Chat,
            ..
        }
    ));
    assert_eq!(&*surge[0].tenant, "acme");
    assert!(surge[0].ticket_id.is_empty());
}

#[test]
fn close_cancels_clocks_silently_and_tombstone_allows_reopen() {
    let p = default_policy();
    let mut s = Scenario::new();
    s.opened("A", "10:00:00", chat(Urgency::General))
        .reply("A", "10:00:10", ReplyKind::Solution)
        .event("A", "10:00:20", Body::Resolved)
        .event("A", "10:00:30", Body::Closed)
        .event("A", "12:00:00", Body::Reopened);
    let r = run(&p, &s.events);
    // Only the restarted resolution clock fires (30 min after the reopen).
    assert_has(
        &r.outputs,
        &["A 2024-03-04T12:30:00Z breach R9 resolution deadline=2024-03-04T12:30:00Z overdue=0s"],
    );
    assert!(
        r.outputs.iter().all(|o| o.fired_at >= t("12:00:00")),
        "{:#?}",
        lines(&r.outputs)
    );
}

#[test]
fn hygiene_duplicates_second_opened_and_preopen_buffer() {
    let p = default_policy();
    let mut s = Scenario::new();
    // A reply that arrives before its ticket's opened (pre-open buffer), a duplicate id,
    // and a second opened.
    s.reply("A", "10:00:00", ReplyKind::Answer);
    s.opened("A", "10:00:03", chat(Urgency::General));
    let mut dup = s.events[0].clone();
    dup.occurred_at = t("10:00:04");
    s.events.push(dup);
    s.opened("A", "10:00:05", chat(Urgency::Urgent));
    // A ticket never opened: its events expire after 1 h to dead letters.
    s.event("Z", "10:00:06", Body::CustomerMessage);
    let until = t("12:00:00");
    let r = run_until(&p, &s.events, until, EngineConfig::default());
    // The buffered reply applied after the opening: first_response stopped, not breached.
    assert!(
        clock_lines(&r, "first_response").is_empty(),
        "{:#?}",
        lines(&r.outputs)
    );
    assert_eq!(r.emitted.dead_letters.len(), 1);
    assert_eq!(r.emitted.dead_letters[0].1, Refusal::PreopenExpired);
    assert_eq!(&*r.emitted.dead_letters[0].0.ticket_id, "Z");
}

#[test]
fn eta_given_with_the_first_reply_opens_no_eta_clock() {
    let p = default_policy();
    let mut s = Scenario::new();
    s.opened("A", "10:00:00", chat(Urgency::General))
        .reply("A", "10:00:10", ReplyKind::Eta)
        .reply("A", "10:01:00", ReplyKind::Answer);
    let r = run(&p, &s.events);
    assert!(
        clock_lines(&r, "eta").is_empty(),
        "{:#?}",
        clock_lines(&r, "eta")
    );
    // The ETA started the progress clock (R10): reminders every 10 min from 10:00:10.
    assert_eq!(
        clock_lines(&r, "progress")[0],
        "A 2024-03-04T10:10:10Z progress_reminder R10 progress deadline=2024-03-04T10:10:10Z nth=1"
    );
}

/// Every arrival order of `events` (Heap's algorithm; a handful of events).
fn permutations(events: &[Event]) -> Vec<Vec<Event>> {
    fn heap(k: usize, v: &mut Vec<Event>, out: &mut Vec<Vec<Event>>) {
        if k <= 1 {
            out.push(v.clone());
            return;
        }
        for i in 0..k {
            heap(k - 1, v, out);
            let j = if k.is_multiple_of(2) { i } else { 0 };
            v.swap(j, k - 1);
        }
    }
    let mut out = Vec::new();
    heap(events.len(), &mut events.to_vec(), &mut out);
    out
}

#[test]
fn rule4_customer_message_and_its_answer_in_one_second_read_as_answered() {
    // Given a chat answered at 10:00:10, then a customer message and the agent's answer to
    // it exported with the same one-second timestamp, the answer's id sorting first.
    let p = default_policy();
    let mut s = Scenario::new();
    s.opened("A", "10:00:00", chat(Urgency::General))
        .reply("A", "10:00:10", ReplyKind::Answer)
        .reply("A", "10:01:00", ReplyKind::Answer)
        .event("A", "10:01:00", Body::CustomerMessage);
    assert!(s.events[2].event_id < s.events[3].event_id);
    // When the two arrive in either order,
    let orders: Vec<Vec<Event>> = permutations(&s.events[2..])
        .into_iter()
        .map(|tail| [&s.events[..2], &tail[..]].concat())
        .collect();
    assert_eq!(orders.len(), 2);
    let first = lines(&run(&p, &orders[0]).outputs);
    for order in &orders {
        let r = run(&p, order);
        // then the message reads as answered (causal rank 2 before 5): no next_response
        // clock runs, so nothing of R6 fires, and every order gives the same outputs.
        assert!(
            clock_lines(&r, "next_response").is_empty(),
            "{:#?}",
            clock_lines(&r, "next_response")
        );
        assert_eq!(lines(&r.outputs), first);
    }
}

#[test]
fn rule4_opened_applies_first_and_closed_last_at_one_instant() {
    // Given a ticket opened, answered and closed within one second, the close's id sorting
    // first and the opening's last,
    let p = default_policy();
    let mut s = Scenario::new();
    s.event("B", "10:00:00", Body::Closed)
        .reply("B", "10:00:00", ReplyKind::Answer)
        .opened("B", "10:00:00", chat(Urgency::General));
    // when they arrive in any order,
    for order in permutations(&s.events) {
        let r = run(&p, &order);
        // then the ticket opens first (nothing waits as pre-open, nothing is dead-lettered),
        // the reply stops first_response at 0 s, and the close comes last and cancels the
        // rest silently.
        assert!(r.emitted.dead_letters.is_empty());
        let answered: Vec<_> = r
            .observations
            .iter()
            .filter(|o| &*o.clock == "first_response")
            .map(|o| (o.counted, o.breached))
            .collect();
        assert_eq!(answered, vec![(Dur::ZERO, false)]);
        assert!(r.outputs.is_empty(), "{:#?}", lines(&r.outputs));
    }
}

#[test]
fn rule9_event_of_an_idle_dropped_ticket_is_ticket_expired_at_once() {
    // Given a ticket answered at 10:00:10 and then silent past an idle_ttl of 1 h,
    let p = default_policy();
    let cfg = EngineConfig {
        idle_ttl: Dur::from_secs(3600),
        ..EngineConfig::default()
    };
    let mut s = Scenario::new();
    s.opened("A", "10:00:00", Opened::default())
        .reply("A", "10:00:10", ReplyKind::Answer)
        // when a customer writes again at 12:00,
        .event("A", "12:00:00", Body::CustomerMessage);
    let r = run_until(&p, &s.events, t("12:00:01"), cfg);
    // then the ticket was dropped at 11:00:10 and its tombstone refuses the message at
    // once as `ticket_expired` (not held an hour as pre-open, then `preopen_expired`).
    assert_eq!(r.emitted.notices.len(), 1, "{:?}", r.emitted.notices);
    let dead: Vec<_> = r
        .emitted
        .dead_letters
        .iter()
        .map(|(e, why)| (e.event_id.to_string(), *why))
        .collect();
    assert_eq!(dead, vec![("A-e3".to_string(), Refusal::TicketExpired)]);
    assert_eq!(Refusal::TicketExpired.as_str(), "ticket_expired");
}

#[test]
fn rule9_event_past_closed_retention_is_ticket_expired_and_the_tombstone_is_freed() {
    use slawatch::core::engine::{Emitted, Engine};
    // Given a ticket closed at 10:01 with a closed_retention of 1 h,
    let cfg = EngineConfig {
        closed_retention: Dur::from_secs(3600),
        ..EngineConfig::default()
    };
    let mut s = Scenario::new();
    s.opened("A", "10:00:00", chat(Urgency::General))
        .reply("A", "10:00:10", ReplyKind::Solution)
        .event("A", "10:00:30", Body::Resolved)
        .event("A", "10:01:00", Body::Closed)
        // when the customer reopens it at 11:30, past the retention,
        .event("A", "11:30:00", Body::Reopened);
    let mut engine = Engine::new(default_policy(), cfg);
    let mut out = Emitted::default();
    for e in &s.events {
        engine.ingest(e.clone(), &mut out);
        engine.pump(&mut out);
    }
    // (an event at the watermark's instant is applied once the watermark passes it)
    engine.advance_to(t("11:30:00").saturating_add(Dur(1)), &mut out);
    // then the reopen is refused at once as `ticket_expired`, nothing restarts,
    assert_eq!(out.dead_letters.len(), 1);
    assert_eq!(out.dead_letters[0].1, Refusal::TicketExpired);
    assert!(out.outputs.is_empty(), "{:#?}", lines(&out.outputs));
    assert_eq!(engine.open_tickets(), 1, "the expired tombstone is held");
    // and the tombstone itself is freed one retention after it expired (11:01 + 1 h).
    engine.advance_to(t("12:01:01"), &mut out);
    assert_eq!(engine.open_tickets(), 0);
    assert!(engine.ticket("acme", "A").is_none());
}

#[test]
fn rule11_two_tenants_same_ticket_id() {
    // Given two help desks that both number their tickets from 1: acme and globex each open
    // "1234" (email, first response 5 min),
    let p = default_policy();
    let mut s = Scenario::new();
    s.tenant("acme")
        .opened("1234", "10:00:00", Opened::default());
    s.tenant("globex")
        .opened("1234", "10:00:30", Opened::default());
    // when only acme's agent answers,
    s.tenant("acme")
        .reply("1234", "10:01:00", ReplyKind::Answer);
    let r = run_until(&p, &s.events, t("10:06:00"), EngineConfig::default());
    // then both tickets are open (the second `opened` is not taken for a duplicate), acme's
    // reply stops acme's clock only, and globex's first response breaches at 10:05:30.
    let first_response = |tenant: &str| -> Vec<String> {
        r.outputs
            .iter()
            .filter(|o| &*o.clock == "first_response" && o.tenant == tenant)
            .map(line)
            .collect()
    };
    assert!(
        first_response("acme").is_empty(),
        "{:?}",
        first_response("acme")
    );
    assert_eq!(
        first_response("globex"),
        vec![
            "1234 2024-03-04T10:04:30Z warning R5 first_response deadline=2024-03-04T10:05:30Z f=0.8",
            "1234 2024-03-04T10:05:30Z breach R5 first_response deadline=2024-03-04T10:05:30Z overdue=0s",
            "1234 2024-03-04T10:05:30Z escalation R5 first_response deadline=2024-03-04T10:05:30Z L1 [team_lead] breach",
        ]
    );
    let answered: Vec<_> = r
        .observations
        .iter()
        .filter(|o| &*o.clock == "first_response")
        .map(|o| o.counted)
        .collect();
    assert_eq!(answered, vec![Dur::from_secs(60)]);
    assert!(r.emitted.dead_letters.is_empty());
}

#[test]
fn rule11_same_clock_of_two_tenants_has_two_output_ids_and_orders_by_tenant() {
    // Given acme's and globex's ticket "7" opened at the same instant, never answered,
    let p = default_policy();
    let mut s = Scenario::new();
    s.tenant("globex")
        .opened("7", "10:00:00", Opened::default());
    s.tenant("acme").opened("7", "10:00:00", Opened::default());
    let r = run_until(&p, &s.events, t("10:05:00"), EngineConfig::default());
    // then each breaches with its own output id, and at equal fired_at, ticket id and
    // clock the outputs are ordered by tenant (rule 3, ties of rule 11).
    let breaches: Vec<_> = r
        .outputs
        .iter()
        .filter(|o| &*o.clock == "first_response" && o.body.kind_name() == "breach")
        .collect();
    assert_eq!(breaches.len(), 2);
    assert_eq!(breaches[0].tenant, "acme");
    assert_eq!(breaches[1].tenant, "globex");
    assert_ne!(breaches[0].event_id, breaches[1].event_id);
}

#[test]
fn rule11_output_ids_of_tickets_without_tenant_are_unchanged() {
    // Given the id formula of versions before rule 11: xxh3-128 of (ticket, policy, clock,
    // kind, deadline ns, detail) joined by 0x1F,
    let deadline = t("10:05:00");
    let body = OutputBody::Warning { fraction: 0.8 };
    let mut old = xxhash_rust::xxh3::Xxh3::new();
    old.update(
        format!(
            "T1\x1fgeneral\x1ffirst_response\x1fwarning\x1f{}\x1f0.8",
            deadline.0
        )
        .as_bytes(),
    );
    // when an output of a ticket without tenant is hashed, its id is that one; a tenant's
    // ticket of the same id gets another.
    let none = output_id("", "T1", "general", "first_response", &body, deadline);
    assert_eq!(none, OutputId(old.digest128()));
    let acme = output_id("acme", "T1", "general", "first_response", &body, deadline);
    assert_ne!(acme, none);
}

#[test]
fn rule11_preopen_buffer_keeps_tenants_apart() {
    // Given a reply of globex's "9" that arrives before any opening,
    let p = default_policy();
    let mut s = Scenario::new();
    s.tenant("globex").reply("9", "10:00:00", ReplyKind::Answer);
    // when acme (not globex) opens its "9",
    s.tenant("acme").opened("9", "10:00:05", Opened::default());
    let r = run_until(&p, &s.events, t("11:30:00"), EngineConfig::default());
    // then globex's reply does not answer acme's ticket (acme breaches) and expires from
    // the pre-open buffer as globex's.
    assert!(r.outputs.iter().any(|o| o.tenant == "acme"
        && &*o.clock == "first_response"
        && o.body.kind_name() == "breach"));
    assert_eq!(r.emitted.dead_letters.len(), 1);
    assert_eq!(r.emitted.dead_letters[0].0.tenant, "globex");
    assert_eq!(r.emitted.dead_letters[0].1, Refusal::PreopenExpired);
}

#[test]
fn rule9_opened_arriving_last_fires_the_timers_due_between_its_buffered_events() {
    // Given a chat whose customer message and opening are stamped 10:00:00 and whose first
    // answer came at 10:05:00 (first_response target 60 s: a breach at 10:01:00),
    let p = default_policy();
    let mut s = Scenario::new();
    s.opened("A", "10:00:00", chat(Urgency::General))
        .event("A", "10:00:00", Body::CustomerMessage)
        .reply("A", "10:05:00", ReplyKind::Answer)
        .opened("B", "10:06:00", chat(Urgency::General));
    let in_order = run(&p, &s.events);
    assert_has(
        &in_order.outputs,
        &["A 2024-03-04T10:01:00Z breach R1 first_response deadline=2024-03-04T10:01:00Z overdue=0s"],
    );
    // when A's opening is delivered last (its message and answer wait as pre-open, B's
    // opening moved the watermark past both),
    let opened_last = [&s.events[1..], &s.events[..1]].concat();
    let r = run(&p, &opened_last);
    // then the clock breaches before the answer stops it, exactly as in order: same
    // outputs, same ids, nothing dead-lettered.
    let with_ids = |r: &Run| -> Vec<String> {
        r.outputs
            .iter()
            .map(|o| format!("{} {}", o.event_id, line(o)))
            .collect()
    };
    assert_eq!(with_ids(&r), with_ids(&in_order));
    assert!(r.emitted.dead_letters.is_empty());
    assert_eq!(
        r.emitted.dead_letters.len(),
        in_order.emitted.dead_letters.len()
    );
}
