//! The surge stage's input record: an accepted `opened` event re-keyed by tenant (the
//! record key) into the repartition topic, carrying only what surge detection counts
//! (rule 10): channel, category and occurred_at.
//!
//! Value, 18 bytes: `0x00`, format version `1`, channel and category as `i32`
//! little-endian, occurred_at as `i64` nanoseconds little-endian. A protobuf message never
//! starts with a zero byte (field number 0 is invalid), so a record written by an earlier
//! version — the whole event as `slawatch.v1.ConversationEvent` — is still read, as such.
use crate::codec;
use crate::core::model::{Body, Category, Channel};
use crate::core::time::Ts;

const MAGIC: u8 = 0x00;
const VERSION: u8 = 1;
const LEN: usize = 18;

/// What the surge stage counts of an `opened` event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    pub channel: Channel,
    pub category: Category,
    pub occurred_at: Ts,
}

/// Appends the record's value to `out`.
pub fn write(o: &Opened, out: &mut Vec<u8>) {
    out.reserve(LEN);
    out.push(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&(o.channel as i32).to_le_bytes());
    out.extend_from_slice(&(o.category as i32).to_le_bytes());
    out.extend_from_slice(&o.occurred_at.0.to_le_bytes());
}

/// Why a repartition record was not read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RekeyError {
    #[error("compact opened record of {0} bytes (expected {LEN})")]
    Length(usize),
    #[error("compact opened record of version {0} (this build reads version {VERSION})")]
    Version(u8),
    #[error("compact opened record with {field} = {value} (not a known enum value)")]
    Enum { field: &'static str, value: i32 },
    #[error("repartition record that is not an `opened` event")]
    NotOpened,
    #[error("undecodable repartition record: {0}")]
    Protobuf(String),
}

/// Reads a record's value: the compact form, or an earlier version's protobuf event.
pub fn read(value: &[u8]) -> Result<Opened, RekeyError> {
    if value.first() != Some(&MAGIC) {
        let d = codec::decode_protobuf(value).map_err(|e| RekeyError::Protobuf(e.to_string()))?;
        return match d.event.body {
            Body::Opened {
                channel, category, ..
            } => Ok(Opened {
                channel,
                category,
                occurred_at: d.event.occurred_at,
            }),
            _ => Err(RekeyError::NotOpened),
        };
    }
    if value.len() != LEN {
        return Err(RekeyError::Length(value.len()));
    }
    if value[1] != VERSION {
        return Err(RekeyError::Version(value[1]));
    }
    let i32_at =
        |i: usize| i32::from_le_bytes([value[i], value[i + 1], value[i + 2], value[i + 3]]);
    let (ch, cat) = (i32_at(2), i32_at(6));
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&value[10..18]);
    Ok(Opened {
        channel: Channel::from_i32(ch).ok_or(RekeyError::Enum {
            field: "channel",
            value: ch,
        })?,
        category: Category::from_i32(cat).ok_or(RekeyError::Enum {
            field: "category",
            value: cat,
        })?,
        occurred_at: Ts(i64::from_le_bytes(ts)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{Event, Tier, Urgency};

    fn opened() -> Opened {
        Opened {
            channel: Channel::Email,
            category: Category::Complaint,
            occurred_at: Ts::from_parts(1_780_000_000, 123_456_789),
        }
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let mut v = Vec::new();
        write(&opened(), &mut v);
        assert_eq!(v.len(), LEN);
        assert_eq!(read(&v), Ok(opened()));
        for o in [
            Opened {
                channel: Channel::Unspecified,
                category: Category::Unspecified,
                occurred_at: Ts(i64::MIN),
            },
            Opened {
                channel: Channel::Web,
                category: Category::Suggestion,
                occurred_at: Ts(-1),
            },
        ] {
            v.clear();
            write(&o, &mut v);
            assert_eq!(read(&v), Ok(o));
        }
    }

    #[test]
    fn an_earlier_versions_protobuf_event_is_still_read() {
        let ev = Event {
            event_id: "e1".into(),
            ticket_id: "T1".into(),
            occurred_at: opened().occurred_at,
            tenant: "acme".into(),
            body: Body::Opened {
                channel: Channel::Email,
                category: Category::Complaint,
                urgency: Urgency::Urgent,
                tier: Tier::Vip,
                team: "billing".into(),
            },
        };
        let v = codec::event_to_protobuf(&ev);
        assert_ne!(v[0], MAGIC);
        assert_eq!(read(&v), Ok(opened()));
        let other = Event {
            body: Body::Resolved,
            ..ev
        };
        assert_eq!(
            read(&codec::event_to_protobuf(&other)),
            Err(RekeyError::NotOpened)
        );
    }

    #[test]
    fn a_malformed_record_is_an_error_naming_what_is_wrong() {
        let mut v = Vec::new();
        write(&opened(), &mut v);
        assert_eq!(read(&v[..10]), Err(RekeyError::Length(10)));
        let mut w = v.clone();
        w[1] = 2;
        assert_eq!(read(&w), Err(RekeyError::Version(2)));
        let mut w = v.clone();
        w[2] = 99;
        assert_eq!(
            read(&w),
            Err(RekeyError::Enum {
                field: "channel",
                value: 99
            })
        );
        assert!(matches!(read(&[0x0a, 0xff]), Err(RekeyError::Protobuf(_))));
    }
}
