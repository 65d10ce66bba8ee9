//! The emit stage: what an engine or a surge detector emitted → records in the outbox.
//! SLA events are encoded straight into the outbox's buffer (JSON or protobuf, with their
//! `content-type` and `slawatch.kind` headers); events the engine refused after buffering
//! them become dead letters naming the reason.
use crate::codec;
use crate::core::engine::Refusal;
use crate::core::model::{Event, SlaOutput};
use crate::runtime::config::OutputFormat;
use crate::runtime::records;
use crate::runtime::stage::outbox::{Outbox, Routes};

/// Writes each output as a record of its kind's topic, keyed by ticket (or tenant for a
/// surge), in order.
pub fn outputs(outputs: &[SlaOutput], format: OutputFormat, routes: &Routes, outbox: &mut Outbox) {
    for o in outputs {
        let key = records::output_key(o);
        outbox.push_written(routes.for_output(&o.body), None, key.as_bytes(), |buf| {
            let ct = records::encode_output_into(o, format, buf);
            Some(records::output_headers(ct, o.body.kind_name()))
        });
    }
}

/// Writes each event the engine refused as a dead letter of partition `partition` of
/// `topic` (its record offset is no longer known), keyed by ticket, the event as protobuf.
pub fn engine_dead_letters(
    refused: &[(Event, Refusal)],
    topic: &str,
    partition: i32,
    routes: &Routes,
    outbox: &mut Outbox,
) {
    for (ev, reason) in refused {
        let reason = records::engine_reason(*reason);
        let error = format!("rejected by the engine: {}", reason.as_str());
        let headers = records::dead_letter_headers(
            reason,
            &error,
            topic,
            partition,
            None,
            Some(records::PROTOBUF.as_bytes()),
        );
        outbox.push_written(routes.dead_letters, None, ev.ticket_id.as_bytes(), |buf| {
            codec::event_to_protobuf_into(ev, buf);
            Some(headers)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::engine::{Emitted, Engine, EngineConfig};
    use crate::core::policy::builtin::PolicySource;
    use crate::core::time::{Dur, Ts};
    use crate::runtime::config::Config;
    use crate::runtime::records::{CONTENT_TYPE, H_REASON, JSON, PROTOBUF};
    use crate::runtime::topics::Topics;
    use crate::telemetry::RejectReason;
    use rdkafka::message::Headers;
    use std::sync::Arc;

    fn topics_and_outbox() -> (Topics, Routes, Outbox) {
        let cfg =
            Config::from_sources("brokers = \"b\"\ninstance_id = \"i1\"", "t", Vec::new()).unwrap();
        let topics = Topics::new(&cfg, false);
        let mut outbox = Outbox::default();
        let routes = Routes::new(&topics, &mut outbox);
        (topics, routes, outbox)
    }

    fn header(h: Option<&rdkafka::message::OwnedHeaders>, name: &str) -> Option<String> {
        h?.iter()
            .find(|x| x.key == name)
            .and_then(|x| x.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// What the default policy emits for a chat ticket left unanswered for two hours.
    fn outputs() -> Vec<SlaOutput> {
        let policy = Arc::new(PolicySource::BuiltIn.load().unwrap());
        let mut engine = Engine::new(policy, EngineConfig::default());
        let at = Ts::parse_rfc3339("2026-03-02T10:00:00Z").unwrap();
        let json = r#"{"eventId":"e1","ticketId":"T1","occurredAt":"2026-03-02T10:00:00Z","tenant":"acme","opened":{"channel":"CHANNEL_CHAT"}}"#;
        let ev = codec::decode_json(json.as_bytes()).unwrap().event;
        let mut out = Emitted::default();
        engine.ingest(ev, &mut out);
        engine.advance_to(at.saturating_add(Dur::from_secs(7200)), &mut out);
        assert!(out.outputs.len() >= 2, "a warning and a breach at least");
        out.outputs
    }

    #[test]
    fn each_output_goes_to_its_kinds_topic_keyed_by_ticket_with_its_headers() {
        let (topics, routes, mut outbox) = topics_and_outbox();
        let outs = outputs();
        for (format, ct) in [
            (OutputFormat::Json, JSON),
            (OutputFormat::Protobuf, PROTOBUF),
        ] {
            super::outputs(&outs, format, &routes, &mut outbox);
            let recs: Vec<_> = outbox.records().collect();
            assert_eq!(recs.len(), outs.len());
            for (r, o) in recs.iter().zip(&outs) {
                assert_eq!(r.topic, topics.for_output(&o.body));
                assert_eq!(r.key, b"T1");
                assert_eq!(header(r.headers, CONTENT_TYPE).as_deref(), Some(ct));
                assert_eq!(
                    header(r.headers, "slawatch.kind").as_deref(),
                    Some(o.body.kind_name())
                );
                let (expected, _) = records::encode_output(o, format);
                assert_eq!(r.value, Some(&expected[..]), "encoded as on its own");
            }
            outbox.clear();
        }
    }

    #[test]
    fn an_event_the_engine_refused_becomes_a_dead_letter_naming_the_reason() {
        let (topics, routes, mut outbox) = topics_and_outbox();
        let json = r#"{"eventId":"e2","ticketId":"T9","occurredAt":"2026-03-02T10:00:00Z","tenant":"acme","agentMessage":{}}"#;
        let ev = codec::decode_json(json.as_bytes()).unwrap().event;
        engine_dead_letters(
            &[(ev.clone(), Refusal::PreopenExpired)],
            "in",
            4,
            &routes,
            &mut outbox,
        );
        let recs: Vec<_> = outbox.records().collect();
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert_eq!(r.topic, topics.dead_letters);
        assert_eq!(r.key, b"T9");
        assert_eq!(
            header(r.headers, H_REASON).as_deref(),
            Some(RejectReason::PreopenExpired.as_str())
        );
        assert_eq!(header(r.headers, CONTENT_TYPE).as_deref(), Some(PROTOBUF));
        let back = codec::decode_protobuf(r.value.unwrap()).unwrap().event;
        assert_eq!(back, ev);
    }
}
