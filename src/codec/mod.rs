//! The edge between bytes and the domain: protobuf and proto3-JSON decoding of
//! `ConversationEvent` with the input hygiene of docs/sla-semantics.md §2 rule 9, and encoding of
//! `SlaEvent`. The only module that touches generated code.
mod diagnose;
pub mod output;

use crate::core::model::{
    Audience, Body, Category, Channel, Event, OutputBody, ReplyKind, Role, SlaOutput, Tier, Urgency,
};
use crate::core::time::{Dur, Ts};
use crate::proto::v1 as pb;
use compact_str::CompactString;
use prost::Message;

pub mod framing;
pub mod wire;

/// Wire format of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Protobuf,
}

impl Format {
    /// From a `content-type` header: JSON for `application/json` (parameters allowed),
    /// protobuf for `application/x-protobuf`, `application/protobuf` or no header.
    pub fn from_content_type(ct: Option<&str>) -> Result<Format, DecodeError> {
        let Some(ct) = ct else {
            return Ok(Format::Protobuf);
        };
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "application/json" => Ok(Format::Json),
            "application/x-protobuf" | "application/protobuf" | "" => Ok(Format::Protobuf),
            other => Err(DecodeError::ContentType(other.to_string())),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Protobuf => "protobuf",
        }
    }
}

/// Why a record was rejected. `reason()` is the stable label used in dead-letter headers
/// and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("undecodable {format}: {detail}")]
    Undecodable {
        format: &'static str,
        detail: String,
    },
    #[error("unsupported content type {0:?}")]
    ContentType(String),
    #[error("missing {0}")]
    MissingField(&'static str),
    #[error("invalid value: {0}")]
    InvalidValue(String),
    /// Bytes `auto` recognises as none of the input formats (framing::decode_record).
    #[error("{0}")]
    Unrecognised(String),
}

impl DecodeError {
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Undecodable { .. } | DecodeError::Unrecognised(_) => "undecodable",
            DecodeError::ContentType(_) => "content_type",
            DecodeError::MissingField(_) => "missing_field",
            DecodeError::InvalidValue(_) => "invalid_value",
        }
    }
}

/// A decoded event, plus how many enum values were unknown (accepted as unspecified).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub event: Event,
    pub unknown_enums: u32,
}

pub fn decode(bytes: &[u8], format: Format) -> Result<Decoded, DecodeError> {
    match format {
        Format::Json => decode_json(bytes),
        Format::Protobuf => decode_protobuf(bytes),
    }
}

/// Protobuf `ConversationEvent`: the borrowing decoder of [`wire`] when it understands the
/// record (every record this contract's producers write), else prost — same result.
pub fn decode_protobuf(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    if let Some(d) = wire::decode(bytes) {
        return d;
    }
    decode_protobuf_prost(bytes)
}

/// Protobuf through prost's generated code (owned strings): the reference decoder.
pub fn decode_protobuf_prost(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let msg = pb::ConversationEvent::decode(bytes).map_err(|e| DecodeError::Undecodable {
        format: "protobuf",
        detail: e.to_string(),
    })?;
    from_proto(msg, None)
}

pub fn decode_json(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let msg: pb::ConversationEvent = serde_json::from_slice(bytes).map_err(|e| {
        diagnose::timestamp_error(bytes).unwrap_or_else(|| DecodeError::Undecodable {
            format: "json",
            detail: e.to_string(),
        })
    })?;
    from_proto(msg, Some(bytes))
}

/// Counts enum values that decoded to UNSPECIFIED while the JSON named something else
/// (pbjson maps unknown names to the default; we want to count them). Only runs when some
/// enum field is 0, so ordinary traffic pays nothing.
fn count_unknown_json_enums(raw: &[u8], fields: &[(&str, &str)]) -> u32 {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(raw) else {
        return 0;
    };
    let mut n = 0;
    for (body, field) in fields {
        let body_v = v.get(body).or_else(|| v.get(snake(body).as_str()));
        let Some(b) = body_v else { continue };
        let f = b.get(field).or_else(|| b.get(snake(field).as_str()));
        match f {
            Some(serde_json::Value::String(s)) if !s.ends_with("_UNSPECIFIED") => n += 1,
            Some(serde_json::Value::Number(x)) if x.as_i64() != Some(0) => n += 1,
            _ => {}
        }
    }
    n
}

fn snake(camel: &str) -> String {
    let mut s = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            s.push('_');
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}

/// Maps a wire enum; values outside the contract become `Unspecified` and are counted.
fn enum_or_unknown<T: Default>(v: i32, conv: fn(i32) -> Option<T>, unknown: &mut u32) -> T {
    conv(v).unwrap_or_else(|| {
        *unknown += 1;
        T::default()
    })
}

/// Validates and converts (rule 9): ticket id, event id, timestamp and body are required;
/// `urgency_changed` to UNSPECIFIED and `escalated` to an UNSPECIFIED role are refused.
pub fn from_proto(
    msg: pb::ConversationEvent,
    raw_json: Option<&[u8]>,
) -> Result<Decoded, DecodeError> {
    let head = Head {
        event_id: &msg.event_id,
        ticket_id: &msg.ticket_id,
        occurred_at: msg.occurred_at,
        tenant: &msg.tenant,
    };
    from_parts(head, msg.body, raw_json)
}

/// The scalar fields of a `ConversationEvent`, strings borrowed (from a decoded message or
/// straight from the record's bytes).
pub(crate) struct Head<'a> {
    pub event_id: &'a str,
    pub ticket_id: &'a str,
    pub occurred_at: Option<pbjson_types::Timestamp>,
    pub tenant: &'a str,
}

/// [`from_proto`] over borrowed fields: ids of up to 24 bytes are stored inline, so a
/// typical event is converted without a heap allocation.
pub(crate) fn from_parts(
    msg: Head<'_>,
    body: Option<pb::conversation_event::Body>,
    raw_json: Option<&[u8]>,
) -> Result<Decoded, DecodeError> {
    use pb::conversation_event::Body as B;
    let occurred_at = head_instant(&msg)?;
    let body = body.ok_or(DecodeError::MissingField("body"))?;
    let mut unknown = 0u32;
    let mut zero_enum_fields: Vec<(&str, &str)> = Vec::new();
    let body = match body {
        B::Opened(o) => {
            for (name, v) in [
                ("channel", o.channel),
                ("category", o.category),
                ("urgency", o.urgency),
                ("tier", o.tier),
            ] {
                if v == 0 {
                    zero_enum_fields.push(("opened", name));
                }
            }
            Body::Opened {
                channel: enum_or_unknown(o.channel, Channel::from_i32, &mut unknown),
                category: enum_or_unknown(o.category, Category::from_i32, &mut unknown),
                urgency: enum_or_unknown(o.urgency, Urgency::from_i32, &mut unknown),
                tier: enum_or_unknown(o.tier, Tier::from_i32, &mut unknown),
                team: CompactString::from(o.team),
            }
        }
        B::CustomerMessage(_) => Body::CustomerMessage,
        B::AgentMessage(m) => {
            if m.kind == 0 {
                zero_enum_fields.push(("agentMessage", "kind"));
            }
            if m.audience == 0 {
                zero_enum_fields.push(("agentMessage", "audience"));
            }
            Body::AgentMessage {
                kind: enum_or_unknown(m.kind, ReplyKind::from_i32, &mut unknown),
                audience: enum_or_unknown(m.audience, Audience::from_i32, &mut unknown),
            }
        }
        B::AutoReply(_) => Body::AutoReply,
        B::Assigned(_) => Body::Assigned,
        B::Transferred(t) => Body::Transferred {
            misrouted: t.misrouted,
        },
        B::UrgencyChanged(u) => {
            Body::UrgencyChanged(enum_or_unknown(u.urgency, Urgency::from_i32, &mut unknown))
        }
        B::Escalated(e) => {
            Body::Escalated(enum_or_unknown(e.to_role, Role::from_i32, &mut unknown))
        }
        B::EscalationAnswered(e) => {
            if e.role == 0 {
                zero_enum_fields.push(("escalationAnswered", "role"));
            }
            Body::EscalationAnswered(enum_or_unknown(e.role, Role::from_i32, &mut unknown))
        }
        B::DepartmentRequested(_) => Body::DepartmentRequested,
        B::HandedToDepartment(_) => Body::HandedToDepartment,
        B::DepartmentStarted(_) => Body::DepartmentStarted,
        B::WaitingOnCustomer(_) => Body::WaitingOnCustomer,
        B::Resolved(_) => Body::Resolved,
        B::CustomerFeedback(f) => Body::Feedback {
            satisfied: f.satisfied,
        },
        B::Reopened(_) => Body::Reopened,
        B::FollowUpDone(_) => Body::FollowUpDone,
        B::Closed(_) => Body::Closed,
        B::OnHold(_) => Body::OnHold,
        B::Resumed(_) => Body::Resumed,
    };
    check_body(&body)?;
    if let (Some(raw), false) = (raw_json, zero_enum_fields.is_empty()) {
        unknown += count_unknown_json_enums(raw, &zero_enum_fields);
    }
    Ok(decoded(&msg, occurred_at, body, unknown))
}

/// The head's checks (rule 9), in the order every decoder reports them: ticket id, event
/// id, then the timestamp (present, nanoseconds in range, seconds within `Ts`'s range).
pub(crate) fn head_instant(msg: &Head<'_>) -> Result<Ts, DecodeError> {
    if msg.ticket_id.is_empty() {
        return Err(DecodeError::MissingField("ticket_id"));
    }
    if msg.event_id.is_empty() {
        return Err(DecodeError::MissingField("event_id"));
    }
    let ts = msg
        .occurred_at
        .ok_or(DecodeError::MissingField("occurred_at"))?;
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(DecodeError::InvalidValue(format!(
            "occurred_at nanos {} out of range",
            ts.nanos
        )));
    }
    // Keep within i64 nanoseconds (years 1678–2262).
    if ts.seconds.abs() > 9_000_000_000 {
        return Err(DecodeError::InvalidValue(format!(
            "occurred_at seconds {} out of range",
            ts.seconds
        )));
    }
    Ok(Ts::from_parts(ts.seconds, ts.nanos))
}

/// A converted body's refusals (rule 9), checked after the head's: `urgency_changed` to
/// UNSPECIFIED and `escalated` to an UNSPECIFIED role (unknown values included: they
/// convert to UNSPECIFIED).
pub(crate) fn check_body(body: &Body) -> Result<(), DecodeError> {
    match body {
        Body::UrgencyChanged(Urgency::Unspecified) => Err(DecodeError::InvalidValue(
            "urgency_changed to URGENCY_UNSPECIFIED".into(),
        )),
        Body::Escalated(Role::Unspecified) => Err(DecodeError::InvalidValue(
            "escalated to ROLE_UNSPECIFIED".into(),
        )),
        _ => Ok(()),
    }
}

/// The decoded event of a checked head and body.
#[inline]
pub(crate) fn decoded(msg: &Head<'_>, occurred_at: Ts, body: Body, unknown: u32) -> Decoded {
    Decoded {
        event: Event {
            event_id: CompactString::from(msg.event_id),
            ticket_id: CompactString::from(msg.ticket_id),
            occurred_at,
            tenant: CompactString::from(msg.tenant),
            body,
        },
        unknown_enums: unknown,
    }
}

fn ts_pb(t: Ts) -> pbjson_types::Timestamp {
    let (seconds, nanos) = t.to_parts();
    pbjson_types::Timestamp { seconds, nanos }
}
fn dur_pb(d: Dur) -> pbjson_types::Duration {
    let (seconds, nanos) = d.to_parts();
    pbjson_types::Duration { seconds, nanos }
}

/// Domain event → protobuf (test generators, the demo's traffic, dead-letter copies).
pub fn event_to_proto(ev: &Event) -> pb::ConversationEvent {
    use pb::conversation_event::Body as B;
    let body = match &ev.body {
        Body::Opened {
            channel,
            category,
            urgency,
            tier,
            team,
        } => B::Opened(pb::TicketOpened {
            channel: *channel as i32,
            category: *category as i32,
            urgency: *urgency as i32,
            tier: *tier as i32,
            team: team.to_string(),
            tags: vec![],
        }),
        Body::CustomerMessage => B::CustomerMessage(pb::CustomerMessage {}),
        Body::AgentMessage { kind, audience } => B::AgentMessage(pb::AgentMessage {
            agent_id: String::new(),
            kind: *kind as i32,
            audience: *audience as i32,
        }),
        Body::AutoReply => B::AutoReply(pb::AutoReply {}),
        Body::Assigned => B::Assigned(pb::Assigned::default()),
        Body::Transferred { misrouted } => B::Transferred(pb::Transferred {
            misrouted: *misrouted,
            ..Default::default()
        }),
        Body::UrgencyChanged(u) => B::UrgencyChanged(pb::UrgencyChanged { urgency: *u as i32 }),
        Body::Escalated(r) => B::Escalated(pb::Escalated {
            to_role: *r as i32,
            reason: String::new(),
        }),
        Body::EscalationAnswered(r) => {
            B::EscalationAnswered(pb::EscalationAnswered { role: *r as i32 })
        }
        Body::DepartmentRequested => B::DepartmentRequested(Default::default()),
        Body::HandedToDepartment => B::HandedToDepartment(Default::default()),
        Body::DepartmentStarted => B::DepartmentStarted(Default::default()),
        Body::WaitingOnCustomer => B::WaitingOnCustomer(pb::WaitingOnCustomer {}),
        Body::Resolved => B::Resolved(pb::Resolved {}),
        Body::Feedback { satisfied } => B::CustomerFeedback(pb::CustomerFeedback {
            satisfied: *satisfied,
            score: 0,
        }),
        Body::Reopened => B::Reopened(pb::Reopened {}),
        Body::FollowUpDone => B::FollowUpDone(pb::FollowUpDone {}),
        Body::Closed => B::Closed(pb::Closed {}),
        Body::OnHold => B::OnHold(pb::OnHold::default()),
        Body::Resumed => B::Resumed(pb::Resumed {}),
    };
    pb::ConversationEvent {
        event_id: ev.event_id.to_string(),
        ticket_id: ev.ticket_id.to_string(),
        occurred_at: Some(ts_pb(ev.occurred_at)),
        tenant: ev.tenant.to_string(),
        body: Some(body),
    }
}

pub fn event_to_json(ev: &Event) -> String {
    let v = serde_json::to_value(event_to_proto(ev)).expect("event serialises");
    canonical_json(v, &["occurredAt"])
}

pub fn event_to_protobuf(ev: &Event) -> Vec<u8> {
    let mut out = Vec::new();
    event_to_protobuf_into(ev, &mut out);
    out
}

/// [`event_to_protobuf`], appended to `out` (a reused buffer).
pub fn event_to_protobuf_into(ev: &Event, out: &mut Vec<u8>) {
    let msg = event_to_proto(ev);
    out.reserve(msg.encoded_len());
    // A `Vec` grows as needed: encoding into it cannot run out of room.
    let _ = msg.encode(out);
}

/// Domain output → `slawatch.v1.SlaEvent` (decoding tests and the encoders' reference; the
/// runtime writes outputs with [`output`]).
pub fn output_to_proto(o: &SlaOutput) -> pb::SlaEvent {
    use pb::sla_event::Body as B;
    let body = match &o.body {
        OutputBody::Warning { fraction } => B::Warning(pb::Warning {
            fraction: *fraction,
        }),
        OutputBody::Breach { overdue } => B::Breach(pb::Breach {
            overdue: Some(dur_pb(*overdue)),
        }),
        OutputBody::Escalation {
            level,
            notify,
            reason,
        } => B::Escalation(pb::Escalation {
            level: *level,
            notify: notify.iter().map(|r| *r as i32).collect(),
            reason: reason.to_string(),
        }),
        OutputBody::ProgressReminder { nth, interval } => {
            B::ProgressReminder(pb::ProgressReminder {
                nth: *nth,
                interval: Some(dur_pb(*interval)),
            })
        }
        OutputBody::FollowUpDue => B::FollowUpDue(pb::FollowUpDue {}),
        OutputBody::SurgeStarted {
            channel,
            category,
            observed_per_min,
            baseline_per_min,
            ratio,
        } => B::SurgeStarted(pb::SurgeStarted {
            channel: *channel as i32,
            category: *category as i32,
            observed_per_min: *observed_per_min,
            baseline_per_min: *baseline_per_min,
            ratio: *ratio,
        }),
        OutputBody::SurgeEnded {
            channel,
            category,
            observed_per_min,
            baseline_per_min,
        } => B::SurgeEnded(pb::SurgeEnded {
            channel: *channel as i32,
            category: *category as i32,
            observed_per_min: *observed_per_min,
            baseline_per_min: *baseline_per_min,
        }),
        OutputBody::Cleared { overdue } => B::Cleared(pb::Cleared {
            overdue: Some(dur_pb(*overdue)),
        }),
    };
    pb::SlaEvent {
        event_id: o.event_id.to_string(),
        ticket_id: o.ticket_id.to_string(),
        tenant: o.tenant.to_string(),
        policy_id: o.policy_id.to_string(),
        rule_id: o.rule_id.to_string(),
        clock: o.clock.to_string(),
        deadline: Some(ts_pb(o.deadline)),
        target: o.target.map(dur_pb),
        fired_at: Some(ts_pb(o.fired_at)),
        body: Some(body),
    }
}

/// Proto3 canonical JSON of an output (one line, no trailing newline); see [`output`].
pub fn output_to_json(o: &SlaOutput) -> String {
    let mut b = Vec::with_capacity(384);
    output::write_json(o, &mut b);
    // The writer copies `&str`s and writes ASCII: always UTF-8.
    String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Protobuf of an output; see [`output`].
pub fn output_to_protobuf(o: &SlaOutput) -> Vec<u8> {
    let mut b = Vec::with_capacity(256);
    output::write_protobuf(o, &mut b);
    b
}

/// pbjson writes timestamps as `+00:00`; the canonical mapping wants `Z` with 0, 3, 6 or 9
/// fractional digits. Rewrite the named top-level timestamp fields.
fn canonical_json(mut v: serde_json::Value, ts_fields: &[&str]) -> String {
    if let serde_json::Value::Object(map) = &mut v {
        for f in ts_fields {
            if let Some(serde_json::Value::String(s)) = map.get_mut(*f) {
                if let Ok(t) = Ts::parse_rfc3339(s) {
                    *s = rfc3339_z(t);
                }
            }
        }
    }
    serde_json::to_string(&v).expect("json")
}

/// RFC 3339 in UTC with `Z`, fractional seconds only when non-zero (3, 6 or 9 digits).
pub fn rfc3339_z(t: Ts) -> String {
    t.to_chrono()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Decodes an `SlaEvent` from JSON (tests and consumers).
pub fn output_from_json(line: &str) -> Result<pb::SlaEvent, serde_json::Error> {
    serde_json::from_str(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_hygiene() {
        let line = br#"{"eventId":"e1","ticketId":"T1","occurredAt":"2024-03-01T10:00:00Z","tenant":"acme","opened":{"channel":"CHANNEL_CHAT","urgency":"URGENCY_URGENT","category":"CATEGORY_NEW_THING"},"futureField":1}"#;
        let d = decode_json(line).unwrap();
        assert_eq!(d.unknown_enums, 1);
        assert!(matches!(
            d.event.body,
            Body::Opened {
                channel: Channel::Chat,
                urgency: Urgency::Urgent,
                category: Category::Unspecified,
                ..
            }
        ));
        let back = decode_json(event_to_json(&d.event).as_bytes()).unwrap();
        assert_eq!(back.event, d.event);
        let pb = decode_protobuf(&event_to_protobuf(&d.event)).unwrap();
        assert_eq!(pb.event, d.event);
    }

    #[test]
    fn rejects_with_reasons() {
        let cases: &[(&[u8], &str)] = &[
            (b"{not json", "undecodable"),
            (br#"{"eventId":"e","occurredAt":"2024-03-01T10:00:00Z","resolved":{}}"#, "missing_field"),
            (br#"{"ticketId":"t","occurredAt":"2024-03-01T10:00:00Z","resolved":{}}"#, "missing_field"),
            (br#"{"ticketId":"t","eventId":"e","resolved":{}}"#, "missing_field"),
            (br#"{"ticketId":"t","eventId":"e","occurredAt":"2024-03-01T10:00:00Z"}"#, "missing_field"),
            (br#"{"ticketId":"t","eventId":"e","occurredAt":"2024-03-01T10:00:00Z","urgencyChanged":{}}"#, "invalid_value"),
            (br#"{"ticketId":"t","eventId":"e","occurredAt":"2024-03-01T10:00:00Z","escalated":{"toRole":"ROLE_UNSPECIFIED"}}"#, "invalid_value"),
        ];
        for (line, reason) in cases {
            let err = decode_json(line).unwrap_err();
            assert_eq!(err.reason(), *reason, "{}", String::from_utf8_lossy(line));
        }
        assert_eq!(
            decode_protobuf(&[0xff, 0xff, 0xff]).unwrap_err().reason(),
            "undecodable"
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(Format::from_content_type(None).unwrap(), Format::Protobuf);
        assert_eq!(
            Format::from_content_type(Some("application/json; charset=utf-8")).unwrap(),
            Format::Json
        );
        assert_eq!(
            Format::from_content_type(Some("application/x-protobuf")).unwrap(),
            Format::Protobuf
        );
        assert!(Format::from_content_type(Some("text/plain")).is_err());
    }
}
