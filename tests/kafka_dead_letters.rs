//! Bad input never crashes the processor and is never dropped silently: each kind of bad
//! record lands in the dead-letter topic with its reason and source headers, and the
//! engine's own rejections (capacity, pre-open overflow and expiry) do too.
mod common;
mod kafka_rt;

use common::kafka::*;
use kafka_rt::*;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use slawatch::codec;
use slawatch::core::model::*;
use slawatch::core::time::{Dur, Ts};
use slawatch::runtime::time_source::ManualClock;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

struct Bad {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    content_type: Option<&'static str>,
    /// Expected reason when the record itself is rejected (None = accepted).
    reason: Option<&'static str>,
}

fn json_event(ev: &Event) -> Vec<u8> {
    codec::event_to_json(ev).into_bytes()
}

fn event(ticket: &str, id: &str, at: Ts, body: Body) -> Event {
    Event {
        event_id: id.into(),
        ticket_id: ticket.into(),
        occurred_at: at,
        tenant: "acme".into(),
        body,
    }
}

#[test]
fn every_bad_record_is_dead_lettered_with_its_reason() {
    let names = Names::new("dlq");
    let extra = "max_record_bytes = 2000\n[engine]\npreopen_max_tickets = 1\npreopen_max_age_secs = 60\nmax_open_tickets_per_partition = 1\n";
    let cfg = config(&names, "i0", true, extra);
    let t0 = t("10:00:00");
    let at = |s: i64| t0.saturating_add(Dur::from_secs(s));
    let opened = Body::Opened {
        channel: Channel::Email,
        category: Category::Inquiry,
        urgency: Urgency::General,
        tier: Tier::Standard,
        team: "".into(),
    };
    let good = |ticket: &str, id: &str, s: i64, body: Body| {
        let ev = event(ticket, id, at(s), body);
        Bad {
            key: Some(ticket.as_bytes().to_vec()),
            value: codec::event_to_protobuf(&ev),
            content_type: None,
            reason: None,
        }
    };
    let mut pad = codec::event_to_json(&event("P1", "p1", at(0), Body::CustomerMessage));
    pad.insert_str(1, &format!("\"pad\":\"{}\",", "x".repeat(2500)));
    let records = vec![
        Bad { key: Some(b"K1".to_vec()), value: b"{nope".to_vec(), content_type: Some("application/json"), reason: Some("undecodable") },
        Bad { key: Some(b"K2".to_vec()), value: vec![0xff, 0xff, 0xff], content_type: None, reason: Some("undecodable") },
        Bad {
            key: Some(b"C1".to_vec()),
            value: json_event(&event("C1", "c1", at(0), Body::CustomerMessage)),
            content_type: Some("text/plain"),
            reason: Some("content_type"),
        },
        Bad {
            key: Some(b"K4".to_vec()),
            value: br#"{"eventId":"x","occurredAt":"2024-03-04T10:00:00Z","resolved":{}}"#.to_vec(),
            content_type: Some("application/json"),
            reason: Some("missing_field"),
        },
        Bad {
            key: Some(b"K5".to_vec()),
            value: br#"{"ticketId":"K5","eventId":"x","occurredAt":"2024-03-04T10:00:00Z","urgencyChanged":{}}"#.to_vec(),
            content_type: Some("application/json"),
            reason: Some("invalid_value"),
        },
        Bad {
            key: Some(b"B".to_vec()),
            value: codec::event_to_protobuf(&event("A", "a", at(0), Body::CustomerMessage)),
            content_type: None,
            reason: Some("key_mismatch"),
        },
        Bad {
            key: None,
            value: codec::event_to_protobuf(&event("A", "a2", at(0), Body::CustomerMessage)),
            content_type: None,
            reason: Some("key_mismatch"),
        },
        Bad {
            key: Some(b"S1".to_vec()),
            value: codec::event_to_protobuf(&event("S1", "s1", now().saturating_add(Dur::from_secs(3600)), Body::CustomerMessage)),
            content_type: None,
            reason: Some("clock_skew"),
        },
        Bad { key: Some(b"P1".to_vec()), value: pad.into_bytes(), content_type: Some("application/json"), reason: Some("oversize") },
        // Engine rejections: capacity (one open ticket per partition), pre-open overflow
        // (one waiting ticket) and expiry (60 s).
        good("A1", "a1-1", 0, opened.clone()),
        good("A2", "a2-1", 1, opened.clone()),
        good("U1", "u1-1", 2, Body::CustomerMessage),
        good("U2", "u2-1", 3, Body::CustomerMessage),
        good("A1", "a1-2", 600, Body::CustomerMessage),
    ];

    let clock = Arc::new(ManualClock::new(Ts::from_secs(0)));
    let h = start(&cfg, clock);
    wait_ready(&h);
    let producer: BaseProducer = producer_config(&bootstrap()).create().unwrap();
    for r in &records {
        let mut rec: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(&names.input).partition(0).payload(&r.value);
        if let Some(k) = &r.key {
            rec = rec.key(k.as_slice());
        }
        if let Some(ct) = r.content_type {
            rec = rec.headers(OwnedHeaders::new().insert(Header {
                key: "content-type",
                value: Some(ct),
            }));
        }
        send(&producer, rec);
    }
    producer.flush(TIMEOUT).unwrap();
    wait_for("all records consumed", WAIT, || {
        h.control.records_consumed.load(Ordering::Relaxed) >= records.len() as u64
    });

    let expected_record_level = records.iter().filter(|r| r.reason.is_some()).count();
    let dlq = reader(&[format!("{}.dlq", names.prefix)], "read_committed");
    let got = read_n(
        &dlq,
        expected_record_level + 3,
        WAIT,
        Duration::from_millis(500),
    );
    assert_eq!(
        got.len(),
        expected_record_level + 3,
        "dead letters: {:?}",
        got.iter()
            .map(|m| header(m, "slawatch.reason"))
            .collect::<Vec<_>>()
    );
    for (offset, r) in records.iter().enumerate() {
        let Some(reason) = r.reason else { continue };
        let m = got
            .iter()
            .find(|m| {
                header(m, "slawatch.source.offset").as_deref() == Some(offset.to_string().as_str())
            })
            .unwrap_or_else(|| panic!("no dead letter for offset {offset} ({reason})"));
        assert_eq!(
            header(m, "slawatch.reason").as_deref(),
            Some(reason),
            "offset {offset}"
        );
        assert_eq!(
            header(m, "slawatch.source.topic").as_deref(),
            Some(names.input.as_str())
        );
        assert_eq!(header(m, "slawatch.source.partition").as_deref(), Some("0"));
        assert!(!header(m, "slawatch.error").unwrap_or_default().is_empty());
        assert_eq!(
            m.payload().unwrap_or(&[]),
            r.value.as_slice(),
            "original bytes kept ({reason})"
        );
    }
    for (reason, ticket) in [
        ("capacity", "A2"),
        ("preopen_overflow", "U2"),
        ("preopen_expired", "U1"),
    ] {
        let m = got
            .iter()
            .find(|m| header(m, "slawatch.reason").as_deref() == Some(reason))
            .unwrap_or_else(|| panic!("no {reason} dead letter"));
        let ev = codec::decode_protobuf(m.payload().unwrap())
            .expect("engine dead letters carry the event as protobuf")
            .event;
        assert_eq!(ev.ticket_id.as_str(), ticket, "{reason}");
        assert_eq!(
            header(m, "slawatch.source.topic").as_deref(),
            Some(names.input.as_str())
        );
        assert_eq!(
            header(m, "slawatch.source.offset"),
            None,
            "{reason}: no offset once buffered"
        );
    }
    assert!(!h.is_finished(), "bad input never stops the processor");
    assert_eq!(
        h.control.dead_letters_produced.load(Ordering::Relaxed),
        (expected_record_level + 3) as u64
    );
    h.stop().unwrap();
}
