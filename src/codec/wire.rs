//! A protobuf decoder for `ConversationEvent` that borrows its strings from the record
//! instead of allocating a `String` per field (prost's generated code allocates three to
//! four per event, about a third of the decode cost).
//!
//! It accepts exactly the records whose meaning is unambiguous and simple: each known
//! field once with its declared wire type (string fields may repeat: the last wins, as in
//! prost), valid UTF-8, well-formed varints and lengths, unknown fields of the varint,
//! 64-bit, length-delimited and 32-bit wire types (skipped, as prost does). Anything else —
//! a repeated message field (prost merges those), a group, a malformed record — answers
//! `None`, and the caller decodes with prost, so the result (or the error's wording) is
//! prost's in every case. `tests` checks that on arbitrary and mutated bytes.
use super::{check_body, decoded, enum_or_unknown, head_instant, DecodeError, Decoded, Head};
use crate::core::model::{Audience, Body, Category, Channel, ReplyKind, Role, Tier, Urgency};

/// Decodes `bytes`, or `None` when the record needs prost (see the module doc).
///
/// The body is read straight into the domain's [`Body`] (issue 14: going through prost's
/// message types and converting them was ~290 instructions per event); the checks and
/// their order are [`super::from_parts`]'s (head, body present, body refusals).
pub fn decode(bytes: &[u8]) -> Option<Result<Decoded, DecodeError>> {
    let mut r = Reader(bytes);
    let mut head = Head {
        event_id: "",
        ticket_id: "",
        occurred_at: None,
        tenant: "",
    };
    let mut body = None;
    let mut unknown = 0u32;
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        match (field, wire) {
            (1, LEN) => head.event_id = r.str()?,
            (2, LEN) => head.ticket_id = r.str()?,
            (4, LEN) => head.tenant = r.str()?,
            (3, LEN) if head.occurred_at.is_none() => head.occurred_at = Some(timestamp(r.len()?)?),
            (10..=29, LEN) if body.is_none() => {
                body = Some(body_of(field, r.len()?, &mut unknown)?)
            }
            (1..=4 | 10..=29, _) => return None,
            _ => r.skip(wire)?,
        }
    }
    Some(finish(&head, body, unknown))
}

/// The checks of [`super::from_parts`] over a body already converted.
#[inline]
fn finish(head: &Head<'_>, body: Option<Body>, unknown: u32) -> Result<Decoded, DecodeError> {
    let occurred_at = head_instant(head)?;
    let body = body.ok_or(DecodeError::MissingField("body"))?;
    check_body(&body)?;
    Ok(decoded(head, occurred_at, body, unknown))
}

const VARINT: u8 = 0;
const LEN: u8 = 2;

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A varint of at most 10 bytes whose value fits 64 bits (prost's rule).
    /// Keys, lengths and enum values are almost all one byte: that case is inlined at the
    /// ~14 calls per event (an out-of-line call each was ~16 instructions; issue 14), longer
    /// varints go to [`Reader::varint_long`].
    #[inline(always)]
    fn varint(&mut self) -> Option<u64> {
        if let Some((&b, rest)) = self.0.split_first() {
            if b < 0x80 {
                self.0 = rest;
                return Some(u64::from(b));
            }
        }
        self.varint_long()
    }

    /// [`Reader::varint`] past a first byte of value 0x80 or more (or none).
    #[inline(never)]
    fn varint_long(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for (i, &b) in self.0.iter().enumerate().take(10) {
            if i == 9 && b > 1 {
                return None;
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.0 = &self.0[i + 1..];
                return Some(v);
            }
        }
        None
    }

    /// A field key: (field number ≥ 1, wire type ≤ 5).
    fn key(&mut self) -> Option<(u32, u8)> {
        let k = self.varint()?;
        let (field, wire) = (k >> 3, (k & 7) as u8);
        if k > u64::from(u32::MAX) || field == 0 || wire > 5 {
            return None;
        }
        Some((field as u32, wire))
    }

    /// A length-delimited field's bytes.
    fn len(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.varint()?).ok()?;
        if n > self.0.len() {
            return None;
        }
        let (v, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(v)
    }

    fn str(&mut self) -> Option<&'a str> {
        let bytes = self.len()?;
        // Ids, tenants and teams are short and nearly always ASCII: a word-at-a-time ASCII
        // check is a fraction of `from_utf8`'s byte-by-byte walk over so few bytes.
        if bytes.is_ascii() {
            // SAFETY: ASCII bytes are valid UTF-8.
            return Some(unsafe { std::str::from_utf8_unchecked(bytes) });
        }
        std::str::from_utf8(bytes).ok()
    }

    fn int32(&mut self) -> Option<i32> {
        Some(self.varint()? as i32)
    }

    /// Skips an unknown field (groups, wire types 3 and 4, are left to prost).
    fn skip(&mut self, wire: u8) -> Option<()> {
        let n = match wire {
            VARINT => return self.varint().map(drop),
            1 => 8,
            LEN => return self.len().map(drop),
            5 => 4,
            _ => return None,
        };
        if self.0.len() < n {
            return None;
        }
        self.0 = &self.0[n..];
        Some(())
    }
}

/// Walks a nested message: `f` handles a known (field, wire type) and answers whether it
/// did; unknown fields are skipped, a known field with another wire type gives up.
fn fields<'a>(
    bytes: &'a [u8],
    known: &[u32],
    mut f: impl FnMut(u32, u8, &mut Reader<'a>) -> Option<bool>,
) -> Option<()> {
    let mut r = Reader(bytes);
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        if !f(field, wire, &mut r)? {
            if known.contains(&field) {
                return None;
            }
            r.skip(wire)?;
        }
    }
    Some(())
}

fn timestamp(bytes: &[u8]) -> Option<pbjson_types::Timestamp> {
    let mut t = pbjson_types::Timestamp::default();
    fields(bytes, &[1, 2], |field, wire, r| {
        Some(match (field, wire) {
            (1, VARINT) => {
                t.seconds = r.varint()? as i64;
                true
            }
            (2, VARINT) => {
                t.nanos = r.int32()?;
                true
            }
            _ => false,
        })
    })?;
    Some(t)
}

/// A message whose fields are all strings the engine does not read (validated, as prost
/// validates them, then dropped).
fn strings_only(bytes: &[u8], known: &[u32]) -> Option<()> {
    fields(bytes, known, |field, wire, r| {
        Some(if known.contains(&field) && wire == LEN {
            r.str()?;
            true
        } else {
            false
        })
    })
}

/// One enum (int32) field at number 1, nothing else the engine reads.
fn enum_only(bytes: &[u8]) -> Option<i32> {
    let mut v = 0;
    fields(bytes, &[1], |field, wire, r| {
        Some(if (field, wire) == (1, VARINT) {
            v = r.int32()?;
            true
        } else {
            false
        })
    })?;
    Some(v)
}

/// The `body` oneof's message at `field`, as the domain's [`Body`]: the fields
/// [`super::from_parts`] reads, enums converted as it converts them (unknown values become
/// `Unspecified` and are counted in `unknown`).
fn body_of(field: u32, bytes: &[u8], unknown: &mut u32) -> Option<Body> {
    Some(match field {
        10 => {
            let (mut channel, mut category, mut urgency, mut tier) = (0, 0, 0, 0);
            let mut team = "";
            fields(bytes, &[1, 2, 3, 4, 5, 6], |field, wire, r| {
                Some(match (field, wire) {
                    (1, VARINT) => {
                        channel = r.int32()?;
                        true
                    }
                    (2, VARINT) => {
                        category = r.int32()?;
                        true
                    }
                    (3, VARINT) => {
                        urgency = r.int32()?;
                        true
                    }
                    (4, VARINT) => {
                        tier = r.int32()?;
                        true
                    }
                    (5, LEN) => {
                        team = r.str()?;
                        true
                    }
                    (6, LEN) => {
                        r.str()?; // tags: validated, not used
                        true
                    }
                    _ => false,
                })
            })?;
            Body::Opened {
                channel: enum_or_unknown(channel, Channel::from_i32, unknown),
                category: enum_or_unknown(category, Category::from_i32, unknown),
                urgency: enum_or_unknown(urgency, Urgency::from_i32, unknown),
                tier: enum_or_unknown(tier, Tier::from_i32, unknown),
                team: team.into(),
            }
        }
        11 => {
            strings_only(bytes, &[])?;
            Body::CustomerMessage
        }
        12 => {
            let (mut kind, mut audience) = (0, 0);
            fields(bytes, &[1, 2, 3], |field, wire, r| {
                Some(match (field, wire) {
                    (1, LEN) => {
                        r.str()?; // agent_id: not used
                        true
                    }
                    (2, VARINT) => {
                        kind = r.int32()?;
                        true
                    }
                    (3, VARINT) => {
                        audience = r.int32()?;
                        true
                    }
                    _ => false,
                })
            })?;
            Body::AgentMessage {
                kind: enum_or_unknown(kind, ReplyKind::from_i32, unknown),
                audience: enum_or_unknown(audience, Audience::from_i32, unknown),
            }
        }
        13 => {
            strings_only(bytes, &[])?;
            Body::AutoReply
        }
        14 => {
            strings_only(bytes, &[1, 2])?;
            Body::Assigned
        }
        15 => {
            let mut misrouted = false;
            fields(bytes, &[1, 2, 3], |field, wire, r| {
                Some(match (field, wire) {
                    (1 | 2, LEN) => {
                        r.str()?;
                        true
                    }
                    (3, VARINT) => {
                        misrouted = r.varint()? != 0;
                        true
                    }
                    _ => false,
                })
            })?;
            Body::Transferred { misrouted }
        }
        16 => Body::UrgencyChanged(enum_or_unknown(
            enum_only(bytes)?,
            Urgency::from_i32,
            unknown,
        )),
        17 => {
            let mut to_role = 0;
            fields(bytes, &[1, 2], |field, wire, r| {
                Some(match (field, wire) {
                    (1, VARINT) => {
                        to_role = r.int32()?;
                        true
                    }
                    (2, LEN) => {
                        r.str()?;
                        true
                    }
                    _ => false,
                })
            })?;
            Body::Escalated(enum_or_unknown(to_role, Role::from_i32, unknown))
        }
        18 => Body::EscalationAnswered(enum_or_unknown(enum_only(bytes)?, Role::from_i32, unknown)),
        19 => {
            strings_only(bytes, &[1])?;
            Body::DepartmentRequested
        }
        20 => {
            strings_only(bytes, &[1])?;
            Body::HandedToDepartment
        }
        21 => {
            strings_only(bytes, &[1])?;
            Body::DepartmentStarted
        }
        22 => {
            strings_only(bytes, &[])?;
            Body::WaitingOnCustomer
        }
        23 => {
            strings_only(bytes, &[])?;
            Body::Resolved
        }
        24 => {
            let mut satisfied = None;
            fields(bytes, &[1, 2], |field, wire, r| {
                Some(match (field, wire) {
                    (1, VARINT) => {
                        satisfied = Some(r.varint()? != 0);
                        true
                    }
                    (2, VARINT) => {
                        r.int32()?; // score: not used
                        true
                    }
                    _ => false,
                })
            })?;
            Body::Feedback { satisfied }
        }
        25 => {
            strings_only(bytes, &[])?;
            Body::Reopened
        }
        26 => {
            strings_only(bytes, &[])?;
            Body::FollowUpDone
        }
        27 => {
            strings_only(bytes, &[])?;
            Body::Closed
        }
        28 => {
            strings_only(bytes, &[1])?;
            Body::OnHold
        }
        29 => {
            strings_only(bytes, &[])?;
            Body::Resumed
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{decode_protobuf_prost, event_to_protobuf};
    use super::*;
    use crate::core::model::*;
    use crate::core::time::Ts;
    use proptest::prelude::*;

    fn body_strategy() -> impl Strategy<Value = Body> {
        prop_oneof![
            (0usize..5, 0usize..5, 0u8..4, 0u8..3, "[a-z]{0,30}").prop_map(|(c, k, u, t, team)| {
                Body::Opened {
                    channel: Channel::ALL[c],
                    category: Category::ALL[k],
                    urgency: Urgency::from_i32(u as i32).unwrap(),
                    tier: Tier::from_i32(t as i32).unwrap(),
                    team: team.into(),
                }
            }),
            Just(Body::CustomerMessage),
            (0i32..5, 0i32..3).prop_map(|(k, a)| Body::AgentMessage {
                kind: ReplyKind::from_i32(k).unwrap(),
                audience: Audience::from_i32(a).unwrap(),
            }),
            Just(Body::AutoReply),
            Just(Body::Assigned),
            any::<bool>().prop_map(|misrouted| Body::Transferred { misrouted }),
            (1i32..4).prop_map(|u| Body::UrgencyChanged(Urgency::from_i32(u).unwrap())),
            (1i32..5).prop_map(|r| Body::Escalated(Role::from_i32(r).unwrap())),
            (0i32..5).prop_map(|r| Body::EscalationAnswered(Role::from_i32(r).unwrap())),
            Just(Body::DepartmentRequested),
            Just(Body::HandedToDepartment),
            Just(Body::DepartmentStarted),
            Just(Body::WaitingOnCustomer),
            Just(Body::Resolved),
            proptest::option::of(any::<bool>()).prop_map(|satisfied| Body::Feedback { satisfied }),
            Just(Body::Reopened),
            Just(Body::FollowUpDone),
            Just(Body::Closed),
            Just(Body::OnHold),
            Just(Body::Resumed),
        ]
    }

    fn event_strategy() -> impl Strategy<Value = Event> {
        (
            "[A-Za-z0-9-]{0,40}",
            "[A-Za-z0-9é-]{0,30}",
            -9_000_000_000i64..9_000_000_000,
            0u32..1_000_000_000,
            "[a-z0-9]{0,12}",
            body_strategy(),
        )
            .prop_map(|(e, t, s, n, tenant, body)| Event {
                event_id: e.into(),
                ticket_id: t.into(),
                occurred_at: Ts::from_parts(s, n as i32),
                tenant: tenant.into(),
                body,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Every record the encoder writes takes the borrowing path, with prost's result.
        #[test]
        fn encoded_events_decode_like_prost(ev in event_strategy()) {
            let bytes = event_to_protobuf(&ev);
            let fast = decode(&bytes);
            prop_assert!(fast.is_some(), "fell back to prost");
            prop_assert_eq!(fast.unwrap(), decode_protobuf_prost(&bytes));
        }

        /// On damaged records the borrowing path either gives up or agrees with prost.
        #[test]
        fn damaged_records_decode_like_prost_or_fall_back(
            ev in event_strategy(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
        ) {
            let mut bytes = event_to_protobuf(&ev);
            for (at, b, op) in edits {
                if bytes.is_empty() {
                    bytes.push(b);
                    continue;
                }
                let i = at.index(bytes.len());
                match op {
                    0 => bytes[i] = b,
                    1 => bytes.insert(i, b),
                    _ => bytes.truncate(i),
                }
            }
            if let Some(fast) = decode(&bytes) {
                prop_assert_eq!(fast, decode_protobuf_prost(&bytes));
            }
        }

        #[test]
        fn arbitrary_bytes_decode_like_prost_or_fall_back(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Some(fast) = decode(&bytes) {
                prop_assert_eq!(fast, decode_protobuf_prost(&bytes));
            }
        }
    }

    /// Unknown fields are skipped as prost skips them; a repeated timestamp (which prost
    /// merges) is left to prost.
    #[test]
    fn unknown_fields_skip_and_merges_fall_back() {
        let ev = Event {
            event_id: "e1".into(),
            ticket_id: "t1".into(),
            occurred_at: Ts::from_secs(1_700_000_000),
            tenant: "".into(),
            body: Body::Resolved,
        };
        let mut bytes = event_to_protobuf(&ev);
        bytes.extend([0x28, 0x05, 0x3a, 0x02, b'h', b'i', 0x45, 1, 2, 3, 4]); // 5 varint, 7 len, 8 fixed32
        let fast = decode(&bytes).expect("unknown fields are skipped");
        assert_eq!(fast, decode_protobuf_prost(&bytes));
        assert_eq!(fast.unwrap().event.ticket_id, "t1");
        bytes.extend([0x1a, 0x02, 0x10, 0x07]); // occurred_at again, nanos 7: prost merges
        assert!(decode(&bytes).is_none());
        assert_eq!(
            decode_protobuf_prost(&bytes).unwrap().event.occurred_at,
            Ts::from_parts(1_700_000_000, 7)
        );
    }
}
