//! The outbox: what the stages produced, as plain data — records in the order they were
//! written, their keys and values in one reused byte buffer. The stages write it; only the
//! producer side ([`crate::runtime::kafka::pipeline::Pipeline`]) drains it, before anything
//! else it sends and before it commits or aborts, so the records land in the transaction
//! whose offsets cover them.
use crate::core::model::OutputBody;
use crate::runtime::kafka::txn::OutRecord;
use crate::runtime::topics::{OutputTopic, Topics};
use rdkafka::message::OwnedHeaders;
use std::ops::Range;

/// A topic of the outbox's table (see [`Outbox::topic`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicId(u16);

/// One record: where it goes and where its bytes are.
struct Entry {
    topic: TopicId,
    partition: Option<i32>,
    key: Range<usize>,
    /// `None`: a tombstone.
    value: Option<Range<usize>>,
    headers: Option<OwnedHeaders>,
}

/// Records to produce, in order (see the module doc).
#[derive(Default)]
pub struct Outbox {
    names: Vec<String>,
    entries: Vec<Entry>,
    bytes: Vec<u8>,
}

impl Outbox {
    /// The id of topic `name`, added to the table on first use (a thread has a dozen topics).
    pub fn topic(&mut self, name: &str) -> TopicId {
        let i = match self.names.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                self.names.push(name.to_string());
                self.names.len() - 1
            }
        };
        TopicId(i as u16)
    }

    /// The name of a topic of the table.
    pub fn topic_name(&self, id: TopicId) -> &str {
        &self.names[id.0 as usize]
    }

    /// Adds a record.
    pub fn push(
        &mut self,
        topic: TopicId,
        partition: Option<i32>,
        key: &[u8],
        value: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
    ) {
        let key = self.append(key);
        let value = value.map(|v| self.append(v));
        self.entries.push(Entry {
            topic,
            partition,
            key,
            value,
            headers,
        });
    }

    /// Adds a record whose value `write` appends to the buffer it is given (encoded in
    /// place, not into a scratch buffer first); `write` returns the record's headers.
    pub fn push_written(
        &mut self,
        topic: TopicId,
        partition: Option<i32>,
        key: &[u8],
        write: impl FnOnce(&mut Vec<u8>) -> Option<OwnedHeaders>,
    ) {
        let key = self.append(key);
        let start = self.bytes.len();
        let headers = write(&mut self.bytes);
        self.entries.push(Entry {
            topic,
            partition,
            key,
            value: Some(start..self.bytes.len()),
            headers,
        });
    }

    fn append(&mut self, b: &[u8]) -> Range<usize> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(b);
        start..self.bytes.len()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of keys and values held.
    pub fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Forgets every record (an abort discards them with the transaction).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes.clear();
    }

    /// Hands every record to `send`, in order, and empties the outbox (its buffers are kept).
    pub fn drain(&mut self, mut send: impl FnMut(OutRecord<'_>)) {
        for e in self.entries.drain(..) {
            send(OutRecord {
                topic: &self.names[e.topic.0 as usize],
                partition: e.partition,
                key: &self.bytes[e.key],
                value: e.value.map(|v| &self.bytes[v]),
                headers: e.headers,
            });
        }
        self.bytes.clear();
    }

    /// The records held, without taking them (tests and diagnostics).
    pub fn records(&self) -> impl Iterator<Item = Held<'_>> {
        self.entries.iter().map(|e| Held {
            topic: &self.names[e.topic.0 as usize],
            partition: e.partition,
            key: &self.bytes[e.key.clone()],
            value: e.value.clone().map(|v| &self.bytes[v]),
            headers: e.headers.as_ref(),
        })
    }
}

/// A record still in the outbox.
pub struct Held<'a> {
    pub topic: &'a str,
    pub partition: Option<i32>,
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
    pub headers: Option<&'a OwnedHeaders>,
}

/// The topics a processing thread writes, as ids of its outbox's table.
#[derive(Clone, Copy, Debug)]
pub struct Routes {
    /// By [`OutputTopic`], in the order of [`OutputTopic::ALL`].
    outputs: [TopicId; 5],
    pub dead_letters: TopicId,
    pub repartition: TopicId,
    pub state: TopicId,
    pub surge_state: TopicId,
}

impl Routes {
    /// Registers `topics`' output, dead-letter, repartition and state topics in `outbox`.
    pub fn new(topics: &Topics, outbox: &mut Outbox) -> Routes {
        Routes {
            outputs: OutputTopic::ALL.map(|t| outbox.topic(topics.output_topic(t))),
            dead_letters: outbox.topic(&topics.dead_letters),
            repartition: outbox.topic(&topics.repartition),
            state: outbox.topic(&topics.state),
            surge_state: outbox.topic(&topics.surge_state),
        }
    }

    /// The topic of an output, by kind ([`OutputTopic::of`]).
    pub fn for_output(&self, body: &OutputBody) -> TopicId {
        self.outputs[OutputTopic::of(body) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, Headers};

    #[test]
    fn records_drain_in_order_with_their_bytes_and_headers_and_the_outbox_is_empty_after() {
        let mut ob = Outbox::default();
        let a = ob.topic("a");
        let b = ob.topic("b");
        assert_eq!(ob.topic("a"), a, "a name is registered once");
        ob.push(a, None, b"k1", Some(b"v1"), None);
        ob.push(b, Some(3), b"k2", None, None);
        ob.push_written(a, Some(0), b"k3", |buf| {
            buf.extend_from_slice(b"written");
            Some(OwnedHeaders::new().insert(Header {
                key: "h",
                value: Some("x"),
            }))
        });
        assert_eq!(ob.len(), 3);
        assert_eq!(ob.bytes(), 2 + 2 + 2 + 2 + 7);
        let mut seen = Vec::new();
        ob.drain(|r| {
            let h = r
                .headers
                .as_ref()
                .map(|h| (h.get(0).key.to_string(), h.get(0).value.map(|v| v.to_vec())));
            seen.push((
                r.topic.to_string(),
                r.partition,
                r.key.to_vec(),
                r.value.map(|v| v.to_vec()),
                h,
            ));
        });
        assert_eq!(
            seen,
            vec![
                ("a".into(), None, b"k1".to_vec(), Some(b"v1".to_vec()), None),
                ("b".into(), Some(3), b"k2".to_vec(), None, None),
                (
                    "a".into(),
                    Some(0),
                    b"k3".to_vec(),
                    Some(b"written".to_vec()),
                    Some(("h".into(), Some(b"x".to_vec())))
                ),
            ]
        );
        assert!(ob.is_empty());
        assert_eq!(ob.bytes(), 0);
        let mut after = 0;
        ob.drain(|_| after += 1);
        assert_eq!(after, 0, "a drained outbox sends nothing again");
    }

    #[test]
    fn clear_discards_every_record() {
        let mut ob = Outbox::default();
        let a = ob.topic("a");
        ob.push(a, None, b"k", Some(b"v"), None);
        ob.clear();
        assert!(ob.is_empty());
        assert_eq!(ob.records().count(), 0);
        assert_eq!(ob.topic_name(a), "a", "the topic table is kept");
    }

    #[test]
    fn routes_send_each_kind_where_the_topics_say() {
        use crate::core::model::OutputBody as B;
        let cfg = crate::runtime::config::Config::from_sources(
            "brokers = \"b\"\ninstance_id = \"i1\"",
            "t",
            Vec::new(),
        )
        .unwrap();
        let topics = Topics::new(&cfg, false);
        let mut ob = Outbox::default();
        let routes = Routes::new(&topics, &mut ob);
        for (i, t) in OutputTopic::ALL.iter().enumerate() {
            assert_eq!(*t as usize, i, "ALL is in declaration order");
        }
        let d = crate::core::time::Dur(0);
        let bodies = [
            B::Warning { fraction: 0.5 },
            B::Breach { overdue: d },
            B::Escalation {
                level: 1,
                notify: Vec::new().into(),
                reason: "breach".into(),
            },
            B::ProgressReminder {
                nth: 1,
                interval: d,
            },
            B::FollowUpDue,
            B::SurgeStarted {
                channel: Default::default(),
                category: Default::default(),
                observed_per_min: 1.0,
                baseline_per_min: 1.0,
                ratio: 1.0,
            },
            B::SurgeEnded {
                channel: Default::default(),
                category: Default::default(),
                observed_per_min: 1.0,
                baseline_per_min: 1.0,
            },
            B::Cleared { overdue: d },
        ];
        for body in &bodies {
            assert_eq!(
                ob.topic_name(routes.for_output(body)),
                topics.for_output(body)
            );
        }
        assert_eq!(ob.topic_name(routes.dead_letters), topics.dead_letters);
        assert_eq!(ob.topic_name(routes.repartition), topics.repartition);
        assert_eq!(ob.topic_name(routes.state), topics.state);
        assert_eq!(ob.topic_name(routes.surge_state), topics.surge_state);
    }
}
