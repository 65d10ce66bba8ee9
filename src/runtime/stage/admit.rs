//! The admit stage: one consumed record of an input partition → input hygiene
//! ([`records::check_input`]) → the partition's engine, or a dead letter. An accepted
//! `opened` of a ticket not yet open is also re-keyed by tenant for the surge stage (rule 10).
use crate::codec::framing::{InputFormat, WireFormat};
use crate::core::engine::Emitted;
use crate::core::model::Body;
use crate::runtime::records::{self, check_input, InputLimits, CONTENT_TYPE};
use crate::runtime::stage::outbox::{Outbox, Routes};
use crate::runtime::stage::rekey;
use crate::runtime::tasks::InputTask;
use crate::telemetry::RejectReason;
use rdkafka::message::{Headers, Message};

/// What the input stage needs besides the record and its partition.
pub struct InputCx<'a> {
    pub limits: &'a InputLimits,
    /// The framing of the partition's topic.
    pub format: InputFormat,
    /// The partition's topic (named in dead-letter headers).
    pub topic: &'a str,
    pub routes: &'a Routes,
}

/// What became of a record.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// Below the partition's next offset: processed already (re-delivered after a seek).
    Again,
    /// Given to the engine.
    Accepted {
        format: WireFormat,
        unknown_enums: u32,
    },
    /// Dead-lettered (unless suppressed).
    Rejected {
        format: Option<WireFormat>,
        reason: RejectReason,
    },
}

/// The record's `content-type` header (names compare case-insensitively).
pub fn content_type<M: Message>(m: &M) -> Option<&[u8]> {
    header(m, CONTENT_TYPE)
}

/// The value of header `name` of `m`.
pub fn header<'a, M: Message>(m: &'a M, name: &str) -> Option<&'a [u8]> {
    let h = m.headers()?;
    h.iter()
        .find(|h| h.key.eq_ignore_ascii_case(name))
        .and_then(|h| h.value)
}

/// Takes one record of `task`'s partition: what the engine emits goes to `out`, the
/// records to produce (the surge stage's re-keyed `opened`, a dead letter) to `outbox` —
/// none while the partition rebuilds below the record's offset.
pub fn admit_record<M: Message>(
    task: &mut InputTask,
    m: &M,
    cx: &InputCx<'_>,
    out: &mut Emitted,
    outbox: &mut Outbox,
) -> Taken {
    let offset = m.offset();
    if let Some(next) = task.next_offset {
        if offset < next {
            return Taken::Again;
        }
        if offset > next && !task.rebuilding() {
            // Gaps are normal (transaction markers, compaction).
            tracing::trace!(partition = task.partition, offset, next, "offset gap");
        }
    }
    task.next_offset = Some(offset + 1);
    let suppressed = task.suppressed_at(offset);
    let content_type = content_type(m);
    let checked = check_input(
        m.key(),
        m.payload(),
        content_type,
        m.timestamp().to_millis(),
        cx.format,
        cx.limits,
    );
    match checked {
        Ok(acc) => {
            let ev = acc.event;
            if let Body::Opened {
                channel, category, ..
            } = ev.body
            {
                // Re-keyed by tenant in the same transaction. A ticket already open (a
                // second `opened`, or a duplicate) is not counted again.
                if !suppressed && task.engine.ticket(&ev.tenant, &ev.ticket_id).is_none() {
                    outbox.push_written(cx.routes.repartition, None, ev.tenant.as_bytes(), |buf| {
                        let o = rekey::Opened {
                            channel,
                            category,
                            occurred_at: ev.occurred_at,
                        };
                        rekey::write(&o, buf);
                        None
                    });
                }
            }
            task.engine.ingest(ev, out);
            task.changed = true;
            Taken::Accepted {
                format: acc.format,
                unknown_enums: acc.unknown_enums,
            }
        }
        Err(rej) => {
            if !suppressed {
                let headers = records::dead_letter_headers(
                    rej.reason,
                    &rej.error,
                    cx.topic,
                    task.partition,
                    Some(offset),
                    content_type,
                );
                outbox.push(
                    cx.routes.dead_letters,
                    None,
                    m.key().unwrap_or(&[]),
                    m.payload(),
                    Some(headers),
                );
            }
            Taken::Rejected {
                format: rej.format,
                reason: rej.reason,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::engine::{Engine, EngineConfig};
    use crate::core::policy::builtin::PolicySource;
    use crate::core::time::{Dur, Ts};
    use crate::runtime::config::Config;
    use crate::runtime::records::{H_OFFSET, H_REASON, JSON};
    use crate::runtime::topics::Topics;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};
    use std::sync::Arc;

    const AT: &str = "2026-03-02T10:00:00Z";

    /// A record in the outbox: topic, key, value.
    type Written = (String, Vec<u8>, Vec<u8>);
    const LIMITS: InputLimits = InputLimits {
        max_record_bytes: 4096,
        max_clock_skew: Dur(300_000_000_000),
    };

    /// A partition's task (input partition 2, committed offset 10), the thread's topics,
    /// and an outbox with their routes.
    struct Fixture {
        task: InputTask,
        topics: Topics,
        routes: Routes,
        outbox: Outbox,
    }

    impl Fixture {
        fn new() -> Fixture {
            let policy = Arc::new(PolicySource::BuiltIn.load().unwrap());
            let cfg =
                Config::from_sources("brokers = \"b\"\ninstance_id = \"i1\"", "t", Vec::new())
                    .unwrap();
            let topics = Topics::new(&cfg, false);
            let mut outbox = Outbox::default();
            let routes = Routes::new(&topics, &mut outbox);
            Fixture {
                task: InputTask::new(0, 2, Engine::new(policy, EngineConfig::default()), Some(10)),
                topics,
                routes,
                outbox,
            }
        }

        /// Runs the stage on `m`; the outcome and the records it wrote (taken out).
        fn take(&mut self, m: &OwnedMessage) -> (Taken, Vec<Written>) {
            let cx = InputCx {
                limits: &LIMITS,
                format: InputFormat::Auto,
                topic: "in",
                routes: &self.routes,
            };
            let taken = admit_record(
                &mut self.task,
                m,
                &cx,
                &mut Emitted::default(),
                &mut self.outbox,
            );
            let recs = self
                .outbox
                .records()
                .map(|r| {
                    (
                        r.topic.to_string(),
                        r.key.to_vec(),
                        r.value.unwrap_or(&[]).to_vec(),
                    )
                })
                .collect();
            self.outbox.clear();
            (taken, recs)
        }
    }

    fn opened(ticket: &str) -> Vec<u8> {
        format!(r#"{{"eventId":"e-{ticket}","ticketId":"{ticket}","occurredAt":"{AT}","tenant":"acme","opened":{{"channel":"CHANNEL_CHAT"}}}}"#)
            .into_bytes()
    }

    fn record(key: &str, payload: Vec<u8>, offset: i64) -> OwnedMessage {
        let headers = OwnedHeaders::new().insert(Header {
            key: "Content-Type",
            value: Some(JSON),
        });
        let ms = Ts::parse_rfc3339(AT).unwrap().0 / 1_000_000;
        OwnedMessage::new(
            Some(payload),
            Some(key.as_bytes().to_vec()),
            "in".into(),
            Timestamp::CreateTime(ms),
            2,
            offset,
            Some(headers),
        )
    }

    #[test]
    fn an_opened_event_goes_to_the_engine_and_once_rekeyed_by_tenant_for_the_surge_stage() {
        let mut f = Fixture::new();
        let (taken, recs) = f.take(&record("T1", opened("T1"), 10));
        assert_eq!(
            taken,
            Taken::Accepted {
                format: WireFormat::Json,
                unknown_enums: 0
            }
        );
        assert_eq!(f.task.next_offset, Some(11));
        assert!(f.task.changed);
        assert_eq!(recs.len(), 1, "{recs:?}");
        let (topic, key, value) = &recs[0];
        assert_eq!(topic, &f.topics.repartition);
        assert_eq!(key, b"acme");
        let o = rekey::read(value).unwrap();
        assert_eq!(o.channel, crate::core::model::Channel::Chat);
        assert_eq!(o.occurred_at, Ts::parse_rfc3339(AT).unwrap());

        // Once the engine has the ticket open, a second `opened` is not counted again.
        let after = Ts::parse_rfc3339(AT).unwrap().saturating_add(Dur(1));
        f.task.engine.advance_to(after, &mut Emitted::default());
        assert!(f.task.engine.ticket("acme", "T1").is_some());
        let (taken, recs) = f.take(&record("T1", opened("T1"), 11));
        assert!(matches!(taken, Taken::Accepted { .. }));
        assert!(recs.is_empty(), "{recs:?}");
    }

    #[test]
    fn a_record_already_processed_is_skipped() {
        let mut f = Fixture::new();
        let (taken, recs) = f.take(&record("T1", opened("T1"), 9));
        assert_eq!(taken, Taken::Again);
        assert!(recs.is_empty());
        assert_eq!(f.task.next_offset, Some(10));
        assert!(!f.task.changed, "the engine saw nothing");
    }

    #[test]
    fn a_bad_record_becomes_a_dead_letter_naming_the_reason_and_its_offset() {
        let mut f = Fixture::new();
        let cx = InputCx {
            limits: &LIMITS,
            format: InputFormat::Auto,
            topic: "in",
            routes: &f.routes,
        };
        let m = record("OTHER", opened("T1"), 12);
        let taken = admit_record(&mut f.task, &m, &cx, &mut Emitted::default(), &mut f.outbox);
        assert_eq!(
            taken,
            Taken::Rejected {
                format: Some(WireFormat::Json),
                reason: RejectReason::KeyMismatch
            }
        );
        let recs: Vec<_> = f.outbox.records().collect();
        assert_eq!(recs.len(), 1);
        let dl = &recs[0];
        assert_eq!(dl.topic, f.topics.dead_letters);
        assert_eq!(dl.key, b"OTHER");
        assert_eq!(dl.value, Some(&opened("T1")[..]), "the record as it came");
        let h = dl.headers.unwrap();
        let get = |name: &str| {
            h.iter()
                .find(|x| x.key == name)
                .and_then(|x| x.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(
            get(H_REASON).as_deref(),
            Some(RejectReason::KeyMismatch.as_str())
        );
        assert_eq!(get(H_OFFSET).as_deref(), Some("12"));
        assert_eq!(
            f.task.next_offset,
            Some(13),
            "a dead letter is consumed too"
        );
    }

    #[test]
    fn a_rebuild_below_its_starting_offset_feeds_the_engine_and_writes_nothing() {
        let mut f = Fixture::new();
        f.task.suppress_below = Some(20);
        let (taken, recs) = f.take(&record("T1", opened("T1"), 10));
        assert!(matches!(taken, Taken::Accepted { .. }));
        assert!(
            recs.is_empty(),
            "no surge record while suppressed: {recs:?}"
        );
        assert!(f.task.changed, "the engine took the accepted record");
        let (taken, recs) = f.take(&record("OTHER", opened("T2"), 11));
        assert!(matches!(taken, Taken::Rejected { .. }));
        assert!(recs.is_empty(), "no dead letter while suppressed: {recs:?}");
    }
}
