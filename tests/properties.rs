//! Property tests of the engine's determinism (docs/sla-semantics.md §2 rules 4 and 5): outputs do
//! not depend on batching, on arrival order within the allowed lateness, or on a snapshot
//! and restore at any point; arbitrary input never panics.
mod support;
use proptest::prelude::*;
use slawatch::core::engine::{Emitted, Engine, EngineConfig};
use slawatch::core::model::*;
use slawatch::core::policy::PolicySet;
use slawatch::core::time::{Dur, Ts};
use std::sync::Arc;
use std::sync::OnceLock;
use support::*;

fn policy() -> Arc<PolicySet> {
    static P: OnceLock<Arc<PolicySet>> = OnceLock::new();
    P.get_or_init(default_policy).clone()
}

const BASE: i64 = 1_709_546_400; // 2024-03-04T10:00:00Z

fn body_strategy() -> impl Strategy<Value = Body> {
    prop_oneof![
        4 => Just(Body::CustomerMessage),
        4 => prop_oneof![Just(ReplyKind::Answer), Just(ReplyKind::Eta), Just(ReplyKind::Progress), Just(ReplyKind::Solution)]
            .prop_map(|kind| Body::AgentMessage { kind, audience: Audience::Customer }),
        1 => Just(Body::AgentMessage { kind: ReplyKind::Progress, audience: Audience::Internal }),
        1 => Just(Body::AutoReply),
        1 => Just(Body::Assigned),
        1 => any::<bool>().prop_map(|misrouted| Body::Transferred { misrouted }),
        1 => prop_oneof![Just(Urgency::General), Just(Urgency::Important), Just(Urgency::Urgent)].prop_map(Body::UrgencyChanged),
        1 => prop_oneof![Just(Role::Supervisor), Just(Role::DepartmentHead), Just(Role::TeamLead)].prop_map(Body::Escalated),
        1 => prop_oneof![Just(Role::Supervisor), Just(Role::DepartmentHead)].prop_map(Body::EscalationAnswered),
        1 => Just(Body::DepartmentRequested),
        1 => Just(Body::HandedToDepartment),
        1 => Just(Body::DepartmentStarted),
        1 => Just(Body::WaitingOnCustomer),
        1 => Just(Body::OnHold),
        1 => Just(Body::Resumed),
        2 => Just(Body::Resolved),
        1 => proptest::option::of(any::<bool>()).prop_map(|satisfied| Body::Feedback { satisfied }),
        1 => Just(Body::Reopened),
        1 => Just(Body::FollowUpDone),
        1 => Just(Body::Closed),
    ]
}

fn opened_strategy() -> impl Strategy<Value = Body> {
    (0u8..6, 0u8..6, 0u8..4, 0u8..3).prop_map(|(c, k, u, t)| Body::Opened {
        channel: Channel::from_i32(c as i32).unwrap(),
        category: Category::from_i32(k as i32).unwrap(),
        urgency: Urgency::from_i32(u as i32).unwrap(),
        tier: Tier::from_i32(t as i32).unwrap(),
        team: "".into(),
    })
}

/// A few tickets, each opened then followed by events at increasing times (seconds apart
/// drawn from a wide range, so short and long clocks both fire). Sorted by time.
fn scenario() -> impl Strategy<Value = Vec<Event>> {
    proptest::collection::vec(
        (
            0i64..600,
            opened_strategy(),
            proptest::collection::vec(
                (
                    prop_oneof![0i64..120, 0i64..7200, 0i64..90_000],
                    body_strategy(),
                ),
                0..12,
            ),
        ),
        1..5,
    )
    .prop_map(|tickets| {
        let mut events = Vec::new();
        for (i, (start, opened, rest)) in tickets.into_iter().enumerate() {
            let id = format!("T{i}");
            let mut t = BASE + start;
            let mut push = |t: i64, body: Body, n: usize| {
                events.push(Event {
                    event_id: format!("{id}-{n}").into(),
                    ticket_id: id.clone().into(),
                    occurred_at: Ts::from_secs(t),
                    tenant: "acme".into(),
                    body,
                })
            };
            push(t, opened, 0);
            for (n, (gap, body)) in rest.into_iter().enumerate() {
                t += gap;
                push(t, body, n + 1);
            }
        }
        events.sort_by(|a, b| (a.occurred_at, &a.event_id).cmp(&(b.occurred_at, &b.event_id)));
        events
    })
}

fn until(events: &[Event]) -> Ts {
    events
        .iter()
        .map(|e| e.occurred_at)
        .max()
        .unwrap()
        .saturating_add(Dur::from_secs(3 * 86_400))
}

/// Feeds `events` pumping every `batch` events.
fn run_batched(events: &[Event], batch: usize) -> Vec<String> {
    let mut engine = Engine::new(policy(), EngineConfig::default());
    let mut out = Emitted::default();
    for (i, e) in events.iter().enumerate() {
        engine.ingest(e.clone(), &mut out);
        if (i + 1) % batch == 0 {
            engine.pump(&mut out);
        }
    }
    engine.finish(Some(until(events)), &mut out);
    out.outputs
        .iter()
        .map(|o| format!("{} {}", o.event_id, line(o)))
        .collect()
}

/// A scenario with a few re-sent events: some byte-identical, some with the same id at
/// another time (which copy applies must not depend on line order either).
fn with_duplicates() -> impl Strategy<Value = Vec<Event>> {
    (
        scenario(),
        proptest::collection::vec((any::<proptest::sample::Index>(), 0i64..3), 0..4),
    )
        .prop_map(|(mut events, dups)| {
            for (i, shift) in dups {
                let mut e = events[i.index(events.len())].clone();
                e.occurred_at = e.occurred_at.saturating_add(Dur::from_secs(shift));
                events.push(e);
            }
            events
        })
}

/// `slawatch replay` (history order) over `events` as JSON lines: its output bytes.
fn replay_bytes(events: &[Event], until: Ts, sort_memory: usize) -> Vec<u8> {
    use slawatch::replay::{replay, Order, ReplayOptions};
    let input: String = events
        .iter()
        .map(|e| slawatch::codec::event_to_json(e) + "\n")
        .collect();
    let opts = ReplayOptions {
        until: Some(until),
        order: Order::History { sort_memory },
        ..ReplayOptions::default()
    };
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    replay(
        policy(),
        &opts,
        &mut input.as_bytes(),
        &mut out,
        &mut errors,
    )
    .expect("replay");
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn rule4_any_permutation_gives_byte_identical_replay(
        (events, permuted) in with_duplicates()
            .prop_flat_map(|e| (Just(e.clone()), Just(e).prop_shuffle())),
        spill in any::<bool>(),
    ) {
        let until = until(&events);
        let expected = replay_bytes(&events, until, usize::MAX);
        // A history with no output (e.g. a ticket opened and closed at one instant) proves
        // nothing about order: skip it rather than pass it.
        prop_assume!(!expected.is_empty());
        // A budget of a few events spills runs of the permuted copy to temporary files.
        let budget = if spill { 3 * std::mem::size_of::<Event>() } else { usize::MAX };
        prop_assert_eq!(
            String::from_utf8(expected).unwrap(),
            String::from_utf8(replay_bytes(&permuted, until, budget)).unwrap()
        );
    }

    #[test]
    fn batching_does_not_change_outputs(events in scenario(), batch in 2usize..20) {
        let one = run_batched(&events, 1);
        prop_assert_eq!(&one, &run_batched(&events, batch));
        prop_assert_eq!(&one, &run_batched(&events, usize::MAX));
    }

    #[test]
    fn shuffling_within_lateness_does_not_change_outputs(
        events in scenario(),
        jitter in proptest::collection::vec(0i64..1_000, 64),
    ) {
        let sorted = run_batched(&events, 1);
        // Arrival key = occurred_at + jitter < occurred_at + allowed lateness (1 s): no
        // event arrives after the watermark passed it.
        let mut shuffled: Vec<(i64, Event)> = events
            .iter()
            .enumerate()
            .map(|(i, e)| (e.occurred_at.0 + jitter[i % jitter.len()] * 999_000, e.clone()))
            .collect();
        shuffled.sort_by_key(|(k, _)| *k);
        let shuffled: Vec<Event> = shuffled.into_iter().map(|(_, e)| e).collect();
        prop_assert_eq!(sorted, run_batched(&shuffled, 1));
    }

    #[test]
    fn snapshot_restore_at_any_point(events in scenario(), cut in 0usize..64, changelog in any::<bool>()) {
        let expected = run_batched(&events, 1);
        let cut = cut % (events.len() + 1);
        let mut engine = Engine::new(policy(), EngineConfig::default());
        engine.track_changes(true);
        let mut out = Emitted::default();
        let mut records: std::collections::BTreeMap<String, Option<Vec<u8>>> = Default::default();
        for e in &events[..cut] {
            engine.ingest(e.clone(), &mut out);
            engine.pump(&mut out);
            for (id, rec) in engine.take_changes() {
                records.insert(id.to_string(), rec);
            }
        }
        let mut restored = if changelog {
            let part = engine.partition_state();
            let recs: Vec<&[u8]> = records.values().flatten().map(|v| v.as_slice()).collect();
            Engine::restore_parts(policy(), EngineConfig::default(), Some(&part), recs).unwrap()
        } else {
            Engine::restore(policy(), EngineConfig::default(), &engine.snapshot()).unwrap()
        };
        drop(engine);
        for e in &events[cut..] {
            restored.ingest(e.clone(), &mut out);
            restored.pump(&mut out);
        }
        restored.finish(Some(until(&events)), &mut out);
        let got: Vec<String> = out.outputs.iter().map(|o| format!("{} {}", o.event_id, line(o))).collect();
        prop_assert_eq!(expected, got);
    }

    #[test]
    fn arbitrary_input_never_panics(
        events in proptest::collection::vec(
            (0i64..200_000, 0u8..4, prop_oneof![opened_strategy(), body_strategy()], 0u8..40),
            0..80,
        )
    ) {
        let mut engine = Engine::new(policy(), EngineConfig {
            preopen_max_tickets: 2,
            closed_retention: Dur::ZERO,
            idle_ttl: Dur::from_secs(3600),
            max_open_tickets: 3,
            ..EngineConfig::default()
        });
        let mut out = Emitted::default();
        for (t, ticket, body, id) in events {
            // Arbitrary order, repeated ids, late events, unknown tickets.
            engine.ingest(Event {
                event_id: format!("e{id}").into(),
                ticket_id: format!("T{ticket}").into(),
                occurred_at: Ts::from_secs(BASE + t),
                tenant: "t".into(),
                body,
            }, &mut out);
            engine.pump(&mut out);
        }
        engine.finish(None, &mut out);
        let _ = Engine::restore(policy(), EngineConfig::default(), &engine.snapshot()).unwrap();
    }
}

/// One ticket's events within the pre-open buffer's age bound (1 h): an opening, then up
/// to 10 events from 30 s before it to 58 min after (short clocks fire between them).
fn one_ticket_within_preopen_age() -> impl Strategy<Value = (Event, Vec<Event>)> {
    (
        opened_strategy(),
        proptest::collection::vec((-30i64..3480, body_strategy()), 1..10),
    )
        .prop_map(|(opened, rest)| {
            let ev = |n: usize, t: i64, body: Body| Event {
                event_id: format!("A-{n}").into(),
                ticket_id: "A".into(),
                occurred_at: Ts::from_secs(BASE + t),
                tenant: "acme".into(),
                body,
            };
            let rest = rest
                .into_iter()
                .enumerate()
                .map(|(n, (t, body))| ev(n + 1, t, body))
                .collect();
            (ev(0, 0, opened), rest)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// docs/semantics.md, pre-open buffer: a ticket whose `opened` arrives after all its
    /// other events (they wait as pre-open) gets the outputs of in-order delivery, same
    /// ids, whatever order the others came in — timers due between buffered events fire
    /// between them. With `push`, another ticket's opening moves the watermark past every
    /// buffered event first (so `opened` is late and all the others wait as pre-open).
    #[test]
    fn rule9_opened_delivered_last_gives_the_in_order_outputs(
        ((opened, rest), permuted) in one_ticket_within_preopen_age()
            .prop_flat_map(|(o, r)| (Just((o, r.clone())), Just(r).prop_shuffle())),
        push in any::<bool>(),
    ) {
        let last = rest.iter().map(|e| e.occurred_at).max().unwrap();
        let pusher = Event {
            event_id: "B-0".into(),
            ticket_id: "B".into(),
            occurred_at: last.saturating_add(Dur::from_secs(5)),
            tenant: "acme".into(),
            body: Body::Opened {
                channel: Channel::Email,
                category: Category::Inquiry,
                urgency: Urgency::General,
                tier: Tier::Standard,
                team: "".into(),
            },
        };
        let mut in_order: Vec<Event> = rest.clone();
        in_order.push(opened.clone());
        in_order.sort_by(|a, b| slawatch::core::order::order_key(a).cmp(&slawatch::core::order::order_key(b)));
        let mut opened_last = permuted;
        if push {
            in_order.push(pusher.clone());
            opened_last.push(pusher);
        }
        opened_last.push(opened);
        let expected = run_batched(&in_order, 1);
        let got = run_batched(&opened_last, 1);
        prop_assert_eq!(expected, got);
    }
}
