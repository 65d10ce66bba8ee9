//! Record-level rules of the Kafka edge: input hygiene before the engine (size, content
//! type, decoding, key = ticket id, clock skew), dead-letter records with their headers, and
//! the encoding and key of SLA events.
use crate::codec;
use crate::codec::framing::{self, InputFormat, WireFormat};
use crate::core::engine::Refusal;
use crate::core::model::{Category, Channel, Event, OutputBody, SlaOutput};
use crate::core::surge::{surge_key, Dimension};
use crate::core::time::{Dur, Ts};
use crate::runtime::config::OutputFormat;
use crate::telemetry::RejectReason;
use rdkafka::message::{Header, OwnedHeaders};

pub const CONTENT_TYPE: &str = "content-type";
pub const JSON: &str = "application/json";
pub const PROTOBUF: &str = "application/x-protobuf";

/// Dead-letter headers.
pub const H_REASON: &str = "slawatch.reason";
pub const H_ERROR: &str = "slawatch.error";
pub const H_TOPIC: &str = "slawatch.source.topic";
pub const H_PARTITION: &str = "slawatch.source.partition";
pub const H_OFFSET: &str = "slawatch.source.offset";

/// Input limits from the config.
#[derive(Clone, Copy, Debug)]
pub struct InputLimits {
    pub max_record_bytes: usize,
    pub max_clock_skew: Dur,
}

/// A record that passed every check.
#[derive(Debug)]
pub struct Accepted {
    pub event: Event,
    pub format: WireFormat,
    pub unknown_enums: u32,
}

/// A record that goes to the dead-letter topic.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub reason: RejectReason,
    pub error: String,
    /// The wire format the record was read as; None when it was not read as any.
    pub format: Option<WireFormat>,
}

fn reject(reason: RejectReason, error: impl Into<String>, format: Option<WireFormat>) -> Rejected {
    Rejected {
        reason,
        error: error.into(),
        format,
    }
}

/// The checks of docs/sla-semantics.md rule 9 that need the Kafka record, in order: size,
/// content type and framing as the topic's `format` says (codec::framing), decoding (with
/// the codec's own hygiene), key = ticket id, and occurred_at not more than
/// `max_clock_skew` ahead of the record timestamp.
pub fn check_input(
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    content_type: Option<&[u8]>,
    timestamp_ms: Option<i64>,
    format: InputFormat,
    limits: &InputLimits,
) -> Result<Accepted, Rejected> {
    let bytes = payload.unwrap_or(&[]);
    if bytes.len() > limits.max_record_bytes {
        return Err(reject(
            RejectReason::Oversize,
            format!(
                "record of {} bytes exceeds max_record_bytes = {}",
                bytes.len(),
                limits.max_record_bytes
            ),
            None,
        ));
    }
    // Only `auto` reads the header; a fixed format ignores it.
    let header = content_type.filter(|_| format == InputFormat::Auto);
    let ct = match header.map(std::str::from_utf8) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(_)) => {
            return Err(reject(
                RejectReason::ContentType,
                "content-type header is not UTF-8",
                None,
            ))
        }
    };
    let (format, decoded) = framing::decode_record(bytes, ct, format)
        .map_err(|u| reject(RejectReason::from(&u.error), u.error.to_string(), u.format))?;
    let ev = decoded.event;
    match key {
        Some(k) if k == ev.ticket_id.as_bytes() => {}
        Some(k) => {
            return Err(reject(
                RejectReason::KeyMismatch,
                format!(
                    "record key {:?} is not the ticket id {:?}",
                    String::from_utf8_lossy(k),
                    ev.ticket_id.as_str()
                ),
                Some(format),
            ))
        }
        None => {
            return Err(reject(
                RejectReason::KeyMismatch,
                format!(
                    "record has no key (expected the ticket id {:?})",
                    ev.ticket_id.as_str()
                ),
                Some(format),
            ))
        }
    }
    if let Some(ms) = timestamp_ms {
        let record_ts = Ts(ms.saturating_mul(1_000_000));
        if ev.occurred_at > record_ts.saturating_add(limits.max_clock_skew) {
            return Err(reject(
                RejectReason::ClockSkew,
                format!(
                    "occurred_at {} is {} ahead of the record timestamp {} (max_clock_skew_secs = {})",
                    ev.occurred_at,
                    ev.occurred_at.since(record_ts),
                    record_ts,
                    limits.max_clock_skew.0 / 1_000_000_000
                ),
                Some(format),
            ));
        }
    }
    Ok(Accepted {
        event: ev,
        format,
        unknown_enums: decoded.unknown_enums,
    })
}

/// Headers of a dead-letter record. `offset` is `None` for events the engine rejected after
/// buffering (their record offset is no longer known).
pub fn dead_letter_headers(
    reason: RejectReason,
    error: &str,
    topic: &str,
    partition: i32,
    offset: Option<i64>,
    content_type: Option<&[u8]>,
) -> OwnedHeaders {
    let partition = partition.to_string();
    let mut h = OwnedHeaders::new_with_capacity(6)
        .insert(Header {
            key: H_REASON,
            value: Some(reason.as_str()),
        })
        .insert(Header {
            key: H_ERROR,
            value: Some(error),
        })
        .insert(Header {
            key: H_TOPIC,
            value: Some(topic),
        })
        .insert(Header {
            key: H_PARTITION,
            value: Some(partition.as_str()),
        });
    if let Some(o) = offset {
        let o = o.to_string();
        h = h.insert(Header {
            key: H_OFFSET,
            value: Some(o.as_str()),
        });
    }
    if let Some(ct) = content_type {
        h = h.insert(Header {
            key: CONTENT_TYPE,
            value: Some(ct),
        });
    }
    h
}

/// The telemetry reason of an engine rejection.
pub fn engine_reason(r: Refusal) -> RejectReason {
    match r {
        Refusal::PreopenExpired => RejectReason::PreopenExpired,
        Refusal::PreopenOverflow => RejectReason::PreopenOverflow,
        Refusal::Capacity => RejectReason::Capacity,
        Refusal::TicketExpired => RejectReason::TicketExpired,
    }
}

/// Kafka key of an SLA event: the ticket id, or `surge/<tenant>/<dimension>` for surges.
pub fn output_key(o: &SlaOutput) -> std::borrow::Cow<'_, str> {
    match &o.body {
        OutputBody::SurgeStarted {
            channel, category, ..
        }
        | OutputBody::SurgeEnded {
            channel, category, ..
        } => surge_key(&o.tenant, dimension(*channel, *category)).into(),
        // Borrowed: a ticket's outputs are most of the records, and the producer copies it.
        _ => o.ticket_id.as_str().into(),
    }
}

fn dimension(channel: Channel, category: Category) -> Dimension {
    if channel != Channel::Unspecified {
        Dimension::Channel(channel)
    } else {
        Dimension::Category(category)
    }
}

/// Value and content type of an SLA event.
pub fn encode_output(o: &SlaOutput, format: OutputFormat) -> (Vec<u8>, &'static str) {
    let mut value = Vec::with_capacity(384);
    let ct = encode_output_into(o, format, &mut value);
    (value, ct)
}

/// Appends the value of an SLA event to `out` (a reused buffer); returns its content type.
pub fn encode_output_into(o: &SlaOutput, format: OutputFormat, out: &mut Vec<u8>) -> &'static str {
    match format {
        OutputFormat::Json => {
            codec::output::write_json(o, out);
            JSON
        }
        OutputFormat::Protobuf => {
            codec::output::write_protobuf(o, out);
            PROTOBUF
        }
    }
}

/// Headers of an SLA event record.
pub fn output_headers(content_type: &'static str, kind: &'static str) -> OwnedHeaders {
    OwnedHeaders::new_with_capacity(2)
        .insert(Header {
            key: CONTENT_TYPE,
            value: Some(content_type),
        })
        .insert(Header {
            key: "slawatch.kind",
            value: Some(kind),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: InputLimits = InputLimits {
        max_record_bytes: 4096,
        max_clock_skew: Dur(300_000_000_000),
    };

    fn json(ticket: &str, at: &str) -> Vec<u8> {
        format!(
            r#"{{"eventId":"e1","ticketId":"{ticket}","occurredAt":"{at}","tenant":"acme","opened":{{"channel":"CHANNEL_CHAT"}}}}"#
        )
        .into_bytes()
    }

    fn ms(at: &str) -> i64 {
        Ts::parse_rfc3339(at).unwrap().0 / 1_000_000
    }

    #[test]
    fn accepts_json_and_protobuf() {
        let v = json("T1", "2024-03-04T10:00:00Z");
        let a = check_input(
            Some(b"T1"),
            Some(&v),
            Some(b"application/json"),
            Some(ms("2024-03-04T10:00:00Z")),
            InputFormat::Auto,
            &LIMITS,
        )
        .unwrap();
        assert_eq!(a.format, WireFormat::Json);
        let pb = codec::event_to_protobuf(&a.event);
        let b = check_input(
            Some(b"T1"),
            Some(&pb),
            None,
            None,
            InputFormat::Auto,
            &LIMITS,
        )
        .unwrap();
        assert_eq!(b.event, a.event);
        assert_eq!(b.format, WireFormat::Protobuf);
        // A JSON producer that sets no header.
        let c = check_input(
            Some(b"T1"),
            Some(&v),
            None,
            None,
            InputFormat::Auto,
            &LIMITS,
        )
        .unwrap();
        assert_eq!((c.format, c.event), (WireFormat::Json, a.event));
    }

    #[test]
    fn rejects_each_kind_with_its_reason() {
        let v = json("T1", "2024-03-04T10:00:00Z");
        let at = Some(ms("2024-03-04T10:00:00Z"));
        let r = |k: Option<&[u8]>, p: &[u8], ct: Option<&[u8]>, ts| {
            check_input(k, Some(p), ct, ts, InputFormat::Auto, &LIMITS)
                .unwrap_err()
                .reason
        };
        assert_eq!(
            r(Some(b"T1"), &vec![b' '; 5000], None, at),
            RejectReason::Oversize
        );
        assert_eq!(
            r(Some(b"T1"), &v, Some(b"text/plain"), at),
            RejectReason::ContentType
        );
        assert_eq!(
            r(Some(b"T1"), b"{nope", Some(b"application/json"), at),
            RejectReason::Undecodable
        );
        assert_eq!(
            r(Some(b"T1"), &[0xff, 0xff, 0xff], None, at),
            RejectReason::Undecodable
        );
        assert_eq!(
            r(
                Some(b"T1"),
                br#"{"eventId":"e","occurredAt":"2024-03-04T10:00:00Z","resolved":{}}"#,
                Some(b"application/json"),
                at
            ),
            RejectReason::MissingField
        );
        assert_eq!(
            r(Some(b"T2"), &v, Some(b"application/json"), at),
            RejectReason::KeyMismatch
        );
        assert_eq!(
            r(None, &v, Some(b"application/json"), at),
            RejectReason::KeyMismatch
        );
        // 301 s ahead of the record timestamp.
        assert_eq!(
            r(
                Some(b"T1"),
                &json("T1", "2024-03-04T10:05:01Z"),
                Some(b"application/json"),
                at
            ),
            RejectReason::ClockSkew
        );
        assert!(check_input(
            Some(b"T1"),
            Some(&json("T1", "2024-03-04T10:05:00Z")),
            Some(b"application/json"),
            at,
            InputFormat::Auto,
            &LIMITS
        )
        .is_ok());
        // A fixed format ignores the header, even one slawatch does not read.
        assert!(check_input(
            Some(b"T1"),
            Some(&v),
            Some(b"text/plain"),
            at,
            InputFormat::Json,
            &LIMITS
        )
        .is_ok());
    }
}
