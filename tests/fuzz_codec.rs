//! A stable fuzz harness (proptest) over the decoder and the engine: arbitrary and mutated
//! bytes, in both wire formats, never panic; whatever decodes is fed to an engine, which
//! never panics either. `SLAWATCH_FUZZ_CASES` raises the case count for long runs.
mod support;
use proptest::prelude::*;
use slawatch::codec::{self, Format};
use slawatch::core::engine::{Emitted, Engine, EngineConfig};
use slawatch::core::model::*;
use slawatch::core::time::Ts;
use support::default_policy;

fn cases() -> u32 {
    std::env::var("SLAWATCH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

fn seed_events() -> Vec<Vec<u8>> {
    let ev = |body| Event {
        event_id: "e1".into(),
        ticket_id: "T1".into(),
        occurred_at: Ts::from_secs(1_709_546_400),
        tenant: "acme".into(),
        body,
    };
    vec![
        codec::event_to_protobuf(&ev(Body::Opened {
            channel: Channel::Chat,
            category: Category::Complaint,
            urgency: Urgency::Urgent,
            tier: Tier::Vip,
            team: "t".into(),
        })),
        codec::event_to_protobuf(&ev(Body::AgentMessage {
            kind: ReplyKind::Eta,
            audience: Audience::Customer,
        })),
        codec::event_to_protobuf(&ev(Body::UrgencyChanged(Urgency::Important))),
        codec::event_to_protobuf(&ev(Body::Feedback {
            satisfied: Some(false),
        })),
    ]
}

fn feed(engine: &mut Engine, bytes: &[u8], format: Format, out: &mut Emitted) {
    if let Ok(d) = codec::decode(bytes, format) {
        engine.ingest(d.event, out);
        engine.pump(out);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut engine = Engine::new(default_policy(), EngineConfig::default());
        let mut out = Emitted::default();
        feed(&mut engine, &bytes, Format::Protobuf, &mut out);
        feed(&mut engine, &bytes, Format::Json, &mut out);
        engine.finish(None, &mut out);
    }

    #[test]
    fn mutated_protobuf_never_panics(
        seed in 0usize..4,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut bytes = seed_events()[seed].clone();
        for (pos, v) in flips {
            let n = bytes.len();
            bytes[pos % n] ^= v;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        let mut engine = Engine::new(default_policy(), EngineConfig::default());
        let mut out = Emitted::default();
        feed(&mut engine, &seed_events()[0], Format::Protobuf, &mut out);
        feed(&mut engine, &bytes, Format::Protobuf, &mut out);
        engine.finish(None, &mut out);
    }

    #[test]
    fn mutated_json_never_panics(
        seed in 0usize..4,
        pos in any::<usize>(),
        insert in "[\\PC]{0,12}",
    ) {
        let ev = codec::decode_protobuf(&seed_events()[seed]).unwrap().event;
        let mut json = codec::event_to_json(&ev);
        let mut p = pos % (json.len() + 1);
        while !json.is_char_boundary(p) {
            p -= 1;
        }
        json.insert_str(p, &insert);
        let mut engine = Engine::new(default_policy(), EngineConfig::default());
        let mut out = Emitted::default();
        feed(&mut engine, json.as_bytes(), Format::Json, &mut out);
        engine.finish(None, &mut out);
    }
}

#[test]
fn extreme_values_are_rejected_not_panicking() {
    // Timestamps outside what an i64 of nanoseconds holds (years 1678–2262) are rejected
    // with a reason naming the field, and so is a timestamp that is not RFC 3339.
    for (line, field) in [
        (
            r#"{"eventId":"e","ticketId":"t","occurredAt":"9999-12-31T23:59:59Z","resolved":{}}"#,
            "occurred_at seconds",
        ),
        (
            r#"{"eventId":"e","ticketId":"t","occurredAt":"0001-01-01T00:00:00Z","resolved":{}}"#,
            "occurred_at seconds",
        ),
        (
            r#"{"eventId":"e","ticketId":"t","occurredAt":"2024-03-04 10:00:00","resolved":{}}"#,
            "occurredAt \"2024-03-04 10:00:00\" is not an RFC 3339 timestamp",
        ),
    ] {
        match codec::decode_json(line.as_bytes()) {
            Err(e) => {
                assert_eq!(e.reason(), "invalid_value", "{line}: {e}");
                assert!(e.to_string().contains(field), "{line}: {e}");
            }
            Ok(d) => panic!("{line} was accepted as {:?}", d.event),
        }
    }
    // Extreme values the contract does not constrain are accepted as what they mean: a
    // feedback score at i32::MAX is kept (slawatch reads only `satisfied`), and an enum
    // number outside the contract becomes UNSPECIFIED and is counted.
    let d = codec::decode_json(
        br#"{"eventId":"e","ticketId":"t","occurredAt":"2024-03-04T10:00:00Z","customerFeedback":{"score":2147483647}}"#,
    )
    .expect("an extreme score is not an error");
    assert_eq!(d.event.body, Body::Feedback { satisfied: None });
    assert_eq!(d.unknown_enums, 0);
    let d = codec::decode_json(
        br#"{"eventId":"e","ticketId":"t","occurredAt":"2024-03-04T10:00:00Z","opened":{"channel":99}}"#,
    )
    .expect("an unknown enum number is not an error");
    assert!(
        matches!(
            d.event.body,
            Body::Opened {
                channel: Channel::Unspecified,
                ..
            }
        ),
        "{:?}",
        d.event.body
    );
    assert_eq!(d.unknown_enums, 1);
}
