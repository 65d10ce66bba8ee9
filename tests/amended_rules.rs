//! The contract's amendments for real-world input (issue 12) that live in the clocks and the
//! default policy: holds that end only on `resumed` (§1 `paused_in`, §3 resolution), the
//! complaint overlay and overlay de-duplication (§3), and honest latency distributions
//! (rule 12). Times are UTC on 2024-03-04 unless written otherwise; 10:00 UTC is 18:00 in
//! Asia/Shanghai, inside after-sales hours.
mod support;
use slawatch::core::model::*;
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
