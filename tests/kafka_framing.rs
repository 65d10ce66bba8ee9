//! Producers' framing through a real broker (docs/operations.md "Input formats"): on one
//! topic with the default `auto` format, records written by Python confluent-kafka's
//! serializers (Schema Registry protobuf and JSON), header-less proto3 JSON, raw protobuf
//! and a schema id carried in a header are all processed, giving what `replay` gives over
//! the same events; garbage is dead-lettered with the true reason.
mod common;
mod kafka_rt;

use common::kafka::*;
use kafka_rt::*;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use slawatch::codec;
use slawatch::core::time::{Dur, Ts};
use slawatch::runtime::time_source::ManualClock;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The record values of a fixture file (each prefixed with its varint length).
fn fixture(name: &str) -> Vec<Vec<u8>> {
    let path = repo_path("tests/data/framing").join(name);
    let file = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rest = file.as_slice();
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (mut len, mut pos, mut shift) = (0usize, 0usize, 0);
        loop {
            let b = rest[pos];
            pos += 1;
            len |= ((b & 0x7f) as usize) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        out.push(rest[pos..pos + len].to_vec());
        rest = &rest[pos + len..];
    }
    out
}

struct Rec {
    key: String,
    value: Vec<u8>,
    headers: Option<OwnedHeaders>,
    /// For garbage: what the dead letter's error must say.
    error: Option<&'static str>,
}

#[test]
fn headerless_json_and_schema_registry_records_on_one_topic() {
    let names = Names::new("framing");
    let cfg = config(&names, "i0", true, "");
    // The events, as the raw protobuf fixture holds them (each fixture file holds the same
    // events; src/codec/framing.rs checks that byte for byte).
    let events: Vec<_> = fixture("events.protobuf.bin")
        .iter()
        .map(|b| {
            codec::decode_protobuf(b)
                .expect("raw protobuf fixture")
                .event
        })
        .collect();
    let framings = [
        "events.schema-registry-protobuf.bin",
        "events.json.bin",
        "events.schema-registry-json.bin",
        "events.protobuf.bin",
        "events.schema-registry-protobuf-header.bin",
    ];
    let files: Vec<Vec<Vec<u8>>> = framings.iter().map(|f| fixture(f)).collect();
    let mut records = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        let which = i % framings.len();
        let headers = framings[which].ends_with("-header.bin").then(|| {
            // What header_schema_id_serializer adds: magic byte 1, a GUID, index [0].
            let guid: Vec<u8> = [&[1u8][..], &[0x5a; 16], &[0]].concat();
            OwnedHeaders::new().insert(Header {
                key: "__value_schema_id",
                value: Some(guid.as_slice()),
            })
        });
        records.push(Rec {
            key: ev.ticket_id.to_string(),
            value: files[which][i].clone(),
            headers,
            error: None,
        });
        if i == 2 {
            records.push(Rec {
                key: "G1".into(),
                value: b"hello world".to_vec(),
                headers: None,
                error: Some(
                    "not JSON, not Schema Registry framing, not a protobuf ConversationEvent: ",
                ),
            });
            records.push(Rec {
                key: "G2".into(),
                value: vec![0x28, 0x01],
                headers: None,
                error: Some("no ConversationEvent field"),
            });
            records.push(Rec {
                key: "G3".into(),
                value: vec![0, 0, 0],
                headers: None,
                error: Some("Schema Registry header truncated"),
            });
        }
    }
    assert_eq!(
        records.iter().filter(|r| r.error.is_none()).count(),
        events.len()
    );
    let garbage = records.iter().filter(|r| r.error.is_some()).count();
    let until = events
        .iter()
        .map(|e| e.occurred_at)
        .max()
        .unwrap()
        .saturating_add(Dur::from_secs(48 * 3600));
    let want = reference(&events, until);
    assert!(!want.is_empty(), "the events page someone");

    let clock = Arc::new(ManualClock::new(Ts::from_secs(0)));
    let h = start(&cfg, clock.clone());
    wait_ready(&h);
    let producer: BaseProducer = producer_config(&bootstrap()).create().unwrap();
    for r in &records {
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&names.input)
            .partition(0)
            .key(r.key.as_bytes())
            .payload(&r.value);
        if let Some(hs) = &r.headers {
            rec = rec.headers(hs.clone());
        }
        send(&producer, rec);
    }
    producer.flush(TIMEOUT).unwrap();
    wait_for("all records consumed", WAIT, || {
        h.control.records_consumed.load(Ordering::Relaxed) >= records.len() as u64
    });

    // Garbage, and only garbage, is dead-lettered, with the true reason.
    let dlq = reader(&[format!("{}.dlq", names.prefix)], "read_committed");
    let got = read_n(&dlq, garbage, WAIT, Duration::from_millis(500));
    assert_eq!(
        got.iter().map(key_str).collect::<Vec<_>>(),
        vec!["G1", "G2", "G3"]
    );
    for (m, r) in got.iter().zip(records.iter().filter(|r| r.error.is_some())) {
        assert_eq!(header(m, "slawatch.reason").as_deref(), Some("undecodable"));
        let error = header(m, "slawatch.error").unwrap_or_default();
        assert!(error.contains(r.error.unwrap()), "{}: {error}", r.key);
        assert_eq!(m.payload().unwrap_or(&[]), r.value.as_slice());
    }

    // Every event was processed: the SLA events are replay's.
    clock.set(clock_for_until(until));
    let out = reader(&output_topics(&names), "read_committed");
    let got = read_n(&out, want.len(), WAIT, Duration::from_secs(1));
    assert_same_outputs(&got, &want);
    assert_eq!(
        h.control.dead_letters_produced.load(Ordering::Relaxed),
        garbage as u64,
        "nothing but the garbage is dead-lettered"
    );
    h.stop().expect("graceful stop");
}
