//! What a commit writes to the state topics, as plain records: the changed tickets of an
//! input partition (a freed ticket as a tombstone, a stale pre-rule-11 key tombstoned unless
//! rewritten) and a surge partition's [`SurgeRecord`]. The processor hands them to the
//! transaction; building them needs no broker.
use super::keys::ticket_key;
use crate::core::model::TicketKey;
use crate::core::surge::SurgeState;
use crate::core::time::Ts;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

pub const SURGE_RECORD_VERSION: u32 = 1;

/// Header of a partition's or surge detector's state record: `<source topic>@<offset>
/// <transactional id>`, the source offset the transaction writing it commits (the next one
/// to consume) and the producer writing it (records of builds before session 16 have no
/// producer). A restore that finds a state partition held by a transaction nobody ends (the
/// broker can mark a transaction complete without writing its markers to every partition
/// when it restarts in the middle of a commit) reads it to tell whether that transaction
/// committed (its offsets, committed in the group, then count its input, so its state must
/// be kept) or, when the group's offsets are held too, whose it is: one of our own
/// producers' is rolled forward ([`super::held`]).
pub const COVERS_HEADER: &str = "slawatch-covers";

/// The [`COVERS_HEADER`] value for `offset` of `topic`, written by the producer with
/// transactional id `txn` (`None`: not transactional).
pub fn covers_value(topic: &str, offset: i64, txn: Option<&str>) -> String {
    match txn {
        Some(id) => format!("{topic}@{offset} {id}"),
        None => format!("{topic}@{offset}"),
    }
}

/// A parsed [`COVERS_HEADER`] value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Covers<'a> {
    pub topic: &'a str,
    pub offset: i64,
    /// The transactional id of the producer that wrote the record.
    pub txn: Option<&'a str>,
}

/// A [`COVERS_HEADER`] value read back (`None` when malformed). A topic name has no space,
/// so the first space ends the covered offset (a transactional id may hold any character).
pub fn parse_covers(value: &[u8]) -> Option<Covers<'_>> {
    let s = std::str::from_utf8(value).ok()?;
    let (covers, txn) = match s.split_once(' ') {
        Some((c, id)) if !id.is_empty() => (c, Some(id)),
        Some(_) => return None,
        None => (s, None),
    };
    let (topic, offset) = covers.rsplit_once('@')?;
    Some(Covers {
        topic,
        offset: offset.parse().ok()?,
        txn,
    })
}

/// A surge partition's state in the changelog.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SurgeRecord {
    pub version: u32,
    pub watermark: Ts,
    pub max_seen: Ts,
    pub state: SurgeState,
}

/// A surge record that cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum SurgeRecordError {
    #[error("cannot decode the surge record: {0}")]
    Decode(#[source] postcard::Error),
    #[error("surge record version {0} is not supported (this build reads {SURGE_RECORD_VERSION})")]
    Version(u32),
}

impl SurgeRecord {
    /// The record's bytes (postcard). Serialising plain owned data into a growable buffer
    /// has no failure case; an error here would be a serde bug, reported, not unwound.
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_stdvec(self)
    }
    pub fn decode(bytes: &[u8]) -> Result<SurgeRecord, SurgeRecordError> {
        let r: SurgeRecord = postcard::from_bytes(bytes).map_err(SurgeRecordError::Decode)?;
        if r.version != SURGE_RECORD_VERSION {
            return Err(SurgeRecordError::Version(r.version));
        }
        Ok(r)
    }
}

/// One state-topic record: `value` `None` is a tombstone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateRecord {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// The records of one input partition's ticket changes (`Engine::take_changes`), in order,
/// then a tombstone for each of `stale` (keys to drop after a restore: pre-rule-11 keys, or
/// every old key under `--rebuild-from-input`) that no change rewrote.
pub fn ticket_records(
    input_topic: &str,
    changes: Vec<(TicketKey, Option<Vec<u8>>)>,
    mut stale: Option<HashSet<Vec<u8>>>,
) -> Vec<StateRecord> {
    let mut out = Vec::with_capacity(changes.len() + stale.as_ref().map_or(0, |s| s.len()));
    for (k, value) in changes {
        let key = ticket_key(input_topic, &k.tenant, &k.id);
        if let Some(s) = stale.as_mut() {
            s.remove(&key);
        }
        out.push(StateRecord { key, value });
    }
    if let Some(stale) = stale {
        let mut keys: Vec<Vec<u8>> = stale.into_iter().collect();
        keys.sort(); // deterministic order (a HashSet's is not)
        out.extend(keys.into_iter().map(|key| StateRecord { key, value: None }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_values_read_back_and_malformed_ones_are_none() {
        let covers = |topic, offset, txn| Some(Covers { topic, offset, txn });
        let v = covers_value("conv@eu", 1_234, None);
        assert_eq!(parse_covers(v.as_bytes()), covers("conv@eu", 1_234, None));
        let v = covers_value("conv", 7, Some("slawatch-i0 :1"));
        assert_eq!(
            parse_covers(v.as_bytes()),
            covers("conv", 7, Some("slawatch-i0 :1")),
            "the producer's id keeps its own spaces"
        );
        assert_eq!(
            parse_covers(b"conv@7"),
            covers("conv", 7, None),
            "an earlier build's value"
        );
        assert_eq!(parse_covers(b"conv"), None);
        assert_eq!(parse_covers(b"conv@x"), None);
        assert_eq!(parse_covers(b"conv@7 "), None, "an empty producer id");
        assert_eq!(parse_covers(b"conv@x y"), None);
        assert_eq!(parse_covers(&[0xff, b'@', b'1']), None);
    }

    fn key(tenant: &str, id: &str) -> TicketKey {
        TicketKey {
            tenant: tenant.into(),
            id: id.into(),
        }
    }

    #[test]
    fn surge_record_round_trip_and_version() {
        let r = SurgeRecord {
            version: SURGE_RECORD_VERSION,
            watermark: Ts::from_secs(10),
            max_seen: Ts::from_secs(11),
            state: SurgeState::default(),
        };
        let back = SurgeRecord::decode(&r.encode().unwrap()).unwrap();
        assert_eq!(back.watermark, Ts::from_secs(10));
        let mut old = r.clone();
        old.version = 99;
        assert!(matches!(
            SurgeRecord::decode(&old.encode().unwrap()),
            Err(SurgeRecordError::Version(99))
        ));
        assert!(matches!(
            SurgeRecord::decode(b"\xff"),
            Err(SurgeRecordError::Decode(_))
        ));
    }

    #[test]
    fn changes_then_stale_keys_not_rewritten_as_tombstones() {
        let stale: HashSet<Vec<u8>> = [
            ticket_key("conv", "", "1"), // rewritten by the change below: not tombstoned
            ticket_key("conv", "", "9"),
            ticket_key("conv", "", "8"),
        ]
        .into_iter()
        .collect();
        let changes = vec![
            (key("", "1"), Some(b"one".to_vec())),
            (key("acme", "2"), None),
        ];
        let recs = ticket_records("conv", changes, Some(stale));
        assert_eq!(
            recs,
            vec![
                StateRecord {
                    key: ticket_key("conv", "", "1"),
                    value: Some(b"one".to_vec())
                },
                StateRecord {
                    key: ticket_key("conv", "acme", "2"),
                    value: None
                },
                StateRecord {
                    key: ticket_key("conv", "", "8"),
                    value: None
                },
                StateRecord {
                    key: ticket_key("conv", "", "9"),
                    value: None
                },
            ]
        );
        assert!(ticket_records("conv", Vec::new(), None).is_empty());
    }
}
