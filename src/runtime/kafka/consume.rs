//! The consumer's poll, one event at a time from librdkafka's consumer queue, without
//! rust-rdkafka's per-record costs.
//!
//! `BaseConsumer::poll` reads the clock, allocates an `Arc` around each record's event and
//! frees it again: ~3 % of the processing thread in a drain (docs/performance.md, session
//! 18). [`ConsumerQueue::poll`] takes the same events from the same queue and serves the
//! ones that are not records as rust-rdkafka does: a rebalance goes to the context's
//! `rebalance` (so the assign and revoke hooks run on this thread, as before), errors come
//! back typed, the rest is dropped.
//!
//! A batch API (`rd_kafka_consume_batch_queue`) would save librdkafka's per-event lock as
//! well, but it serves a rebalance by its own callback, which rust-rdkafka does not set: it
//! would unassign behind the context's back.
use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedHeaders, Message, Timestamp};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use std::ffi::CStr;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::time::Duration;

/// A handle on a consumer's queue (`rd_kafka_queue_get_consumer`). Drop it before the
/// consumer: librdkafka wants its queue handles back before the client is destroyed.
pub struct ConsumerQueue<'c> {
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    _consumer: PhantomData<&'c ()>,
}

/// What one poll found.
pub enum Polled<'q> {
    /// Nothing arrived within the timeout.
    Nothing,
    /// An event that is not a record was served (a rebalance) or dropped.
    Served,
    Record(InRecord<'q>),
    Error(KafkaError),
}

impl<'c> ConsumerQueue<'c> {
    /// `None` without a consumer group (no consumer queue).
    pub fn of<C: ConsumerContext>(consumer: &'c BaseConsumer<C>) -> Option<ConsumerQueue<'c>> {
        // SAFETY: the client is alive for 'c; the call only takes a reference on its queue.
        let q = unsafe { rdsys::rd_kafka_queue_get_consumer(consumer.client().native_ptr()) };
        NonNull::new(q).map(|queue| ConsumerQueue {
            queue,
            _consumer: PhantomData,
        })
    }

    /// The next event, waiting up to `timeout`. `consumer` must be the one the queue is of.
    pub fn poll<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        timeout: Duration,
    ) -> Polled<'_> {
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: the queue is alive for 'c; the event is ours until destroyed.
        let Some(event) =
            NonNull::new(unsafe { rdsys::rd_kafka_queue_poll(self.queue.as_ptr(), ms) })
        else {
            return Polled::Nothing;
        };
        let event = Event(event);
        // SAFETY (each arm): `event` is a live event of the type read.
        match unsafe { rdsys::rd_kafka_event_type(event.0.as_ptr()) } {
            rdsys::RD_KAFKA_EVENT_FETCH => {
                let msg = unsafe { rdsys::rd_kafka_event_message_next(event.0.as_ptr()) };
                let Some(msg) = NonNull::new(msg as *mut rdsys::rd_kafka_message_t) else {
                    return Polled::Served;
                };
                let m = unsafe { msg.as_ref() };
                if m.err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    return Polled::Error(match m.err {
                        rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF => {
                            KafkaError::PartitionEOF(m.partition)
                        }
                        e => KafkaError::MessageConsumption(e.into()),
                    });
                }
                Polled::Record(InRecord {
                    _event: event,
                    msg,
                    _queue: PhantomData,
                })
            }
            rdsys::RD_KAFKA_EVENT_REBALANCE => {
                let err = unsafe { rdsys::rd_kafka_event_error(event.0.as_ptr()) };
                if !matches!(
                    err,
                    rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS
                        | rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS
                ) {
                    // As rust-rdkafka: no hook runs for a rebalance event of another kind.
                    tracing::warn!(error = %RDKafkaErrorCode::from(err), "invalid rebalance event");
                    return Polled::Served;
                }
                let native =
                    unsafe { rdsys::rd_kafka_event_topic_partition_list(event.0.as_ptr()) };
                let mut tpl = unsafe { copy_list(native) };
                consumer.context().rebalance(consumer, err, &mut tpl);
                Polled::Served
            }
            rdsys::RD_KAFKA_EVENT_ERROR => {
                let err = unsafe { rdsys::rd_kafka_event_error(event.0.as_ptr()) };
                if err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    return Polled::Served;
                }
                if err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF {
                    let tp = unsafe { rdsys::rd_kafka_event_topic_partition(event.0.as_ptr()) };
                    let partition = if tp.is_null() {
                        -1
                    } else {
                        let p = unsafe { (*tp).partition };
                        unsafe { rdsys::rd_kafka_topic_partition_destroy(tp) };
                        p
                    };
                    return Polled::Error(KafkaError::PartitionEOF(partition));
                }
                if unsafe { rdsys::rd_kafka_event_error_is_fatal(event.0.as_ptr()) } != 0 {
                    Polled::Error(KafkaError::MessageConsumptionFatal(err.into()))
                } else {
                    Polled::Error(KafkaError::MessageConsumption(err.into()))
                }
            }
            // Offset-commit results (slawatch commits through transactions), statistics
            // and token refreshes (not configured): rust-rdkafka's poll drops them too.
            _ => Polled::Served,
        }
    }
}

impl Drop for ConsumerQueue<'_> {
    fn drop(&mut self) {
        // SAFETY: the handle came from `rd_kafka_queue_get_consumer` and is given back once.
        unsafe { rdsys::rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}

/// A copy of a native partition list (the event owns the original; rust-rdkafka does not
/// let a list be borrowed from a pointer).
///
/// # Safety
/// `native` is NULL or a live list.
unsafe fn copy_list(native: *const rdsys::rd_kafka_topic_partition_list_t) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    if native.is_null() {
        return tpl;
    }
    let list = unsafe { &*native };
    if list.cnt <= 0 || list.elems.is_null() {
        return tpl;
    }
    let elems = unsafe { std::slice::from_raw_parts(list.elems, list.cnt as usize) };
    for e in elems {
        let topic = unsafe { CStr::from_ptr(e.topic) }.to_string_lossy();
        // Every offset librdkafka can put here has an `Offset` (raw values included).
        let _ = tpl.add_partition_offset(&topic, e.partition, Offset::from_raw(e.offset));
    }
    tpl
}

/// An event, destroyed when dropped.
struct Event(NonNull<rdsys::rd_kafka_event_t>);

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: the event came from `rd_kafka_queue_poll` and is destroyed once.
        unsafe { rdsys::rd_kafka_event_destroy(self.0.as_ptr()) };
    }
}

/// A consumed record: borrowed from its event, which it destroys when dropped.
pub struct InRecord<'q> {
    _event: Event,
    msg: NonNull<rdsys::rd_kafka_message_t>,
    _queue: PhantomData<&'q ()>,
}

impl InRecord<'_> {
    fn native(&self) -> &rdsys::rd_kafka_message_t {
        // SAFETY: the message lives as long as its event, which `self` holds.
        unsafe { self.msg.as_ref() }
    }
}

/// `len` bytes at `ptr`, `None` for a NULL pointer (librdkafka's absent key or value).
///
/// # Safety
/// A non-NULL `ptr` points to `len` readable bytes that outlive `'a`.
unsafe fn bytes<'a>(ptr: *const std::ffi::c_void, len: usize) -> Option<&'a [u8]> {
    (!ptr.is_null()).then(|| unsafe { std::slice::from_raw_parts(ptr as *const u8, len) })
}

impl Message for InRecord<'_> {
    type Headers = BorrowedHeaders;

    fn key(&self) -> Option<&[u8]> {
        let m = self.native();
        // SAFETY: the key belongs to the message.
        unsafe { bytes(m.key, m.key_len) }
    }

    fn payload(&self) -> Option<&[u8]> {
        let m = self.native();
        // SAFETY: the payload belongs to the message.
        unsafe { bytes(m.payload, m.len) }
    }

    unsafe fn payload_mut(&mut self) -> Option<&mut [u8]> {
        let m = self.native();
        (!m.payload.is_null())
            .then(|| unsafe { std::slice::from_raw_parts_mut(m.payload as *mut u8, m.len) })
    }

    /// The topic's name (Kafka's are ASCII; anything else reads as empty, never a panic).
    fn topic(&self) -> &str {
        // SAFETY: a consumed message's topic handle lives as long as the message.
        let name = unsafe { CStr::from_ptr(rdsys::rd_kafka_topic_name(self.native().rkt)) };
        name.to_str().unwrap_or("")
    }

    fn partition(&self) -> i32 {
        self.native().partition
    }

    fn offset(&self) -> i64 {
        self.native().offset
    }

    fn timestamp(&self) -> Timestamp {
        let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: the message is alive; librdkafka only reads it.
        let ms = unsafe { rdsys::rd_kafka_message_timestamp(self.msg.as_ptr(), &mut kind) };
        match kind {
            _ if ms == -1 => Timestamp::NotAvailable,
            rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_CREATE_TIME => {
                Timestamp::CreateTime(ms)
            }
            rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME => {
                Timestamp::LogAppendTime(ms)
            }
            rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE => {
                Timestamp::NotAvailable
            }
        }
    }

    fn headers(&self) -> Option<&BorrowedHeaders> {
        let mut list = std::ptr::null_mut();
        // SAFETY: librdkafka parses the message's headers into a list the message owns.
        let err = unsafe { rdsys::rd_kafka_message_headers(self.msg.as_ptr(), &mut list) };
        if RDKafkaErrorCode::from(err) != RDKafkaErrorCode::NoError || list.is_null() {
            return None;
        }
        // SAFETY: rust-rdkafka's `BorrowedHeaders` is the native list itself, seen through
        // a reference (its own `headers` and `OwnedHeaders::as_borrowed` cast the same
        // way); the list lives as long as the message, which `self` holds.
        Some(unsafe { &*(list as *const BorrowedHeaders) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, Headers, OwnedHeaders};

    #[test]
    fn a_native_list_is_copied_with_topics_partitions_and_offsets() {
        let mut original = TopicPartitionList::new();
        original
            .add_partition_offset("in", 0, Offset::Invalid)
            .unwrap();
        original
            .add_partition_offset("in", 5, Offset::Offset(42))
            .unwrap();
        original
            .add_partition_offset("surge", 2, Offset::Beginning)
            .unwrap();
        // SAFETY: `original` is alive; the copy does not keep the pointer.
        let copy = unsafe { copy_list(original.ptr()) };
        assert_eq!(copy.elements().len(), 3);
        for (a, b) in original.elements().iter().zip(copy.elements().iter()) {
            assert_eq!(
                (a.topic(), a.partition(), a.offset()),
                (b.topic(), b.partition(), b.offset())
            );
        }
        // SAFETY: NULL is allowed.
        assert_eq!(unsafe { copy_list(std::ptr::null()) }.count(), 0);
    }

    #[test]
    fn a_native_header_list_read_as_borrowed_headers_finds_every_header() {
        let owned = OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: "Content-Type",
                value: Some("application/x-protobuf"),
            })
            .insert(Header {
                key: "trace",
                value: None::<&[u8]>,
            });
        let native =
            owned.as_borrowed() as *const BorrowedHeaders as *const rdsys::rd_kafka_headers_t;
        // SAFETY: the same cast `InRecord::headers` makes, on a list alive for the test.
        let seen = unsafe { &*(native as *const BorrowedHeaders) };
        assert_eq!(seen.count(), 2);
        let first = seen.get(0);
        assert_eq!(first.key, "Content-Type");
        assert_eq!(first.value, Some(&b"application/x-protobuf"[..]));
        assert_eq!(seen.get(1).value, None);
    }

    /// Counts the assignments the context was given (its hook runs from the poll).
    #[derive(Default)]
    struct Counting {
        assigned: std::sync::atomic::AtomicUsize,
    }
    impl rdkafka::client::ClientContext for Counting {}
    impl ConsumerContext for Counting {
        fn post_rebalance(&self, _: &BaseConsumer<Self>, r: &rdkafka::consumer::Rebalance<'_>) {
            if let rdkafka::consumer::Rebalance::Assign(tpl) = r {
                self.assigned
                    .fetch_add(tpl.count(), std::sync::atomic::Ordering::SeqCst);
            }
        }
    }

    #[test]
    fn records_and_the_assignment_come_through_the_queue_as_produced() {
        use rdkafka::config::{ClientConfig, FromClientConfigAndContext};
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        let mock = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
        mock.create_topic("in", 2, 1).expect("topic");
        let bootstrap = mock.bootstrap_servers();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .expect("producer");
        let sent = [
            ("t1", 0, Some(&b"one"[..]), 1_700_000_000_000i64),
            ("t2", 1, None, 1_700_000_000_001),
        ];
        for (key, partition, payload, ts) in sent {
            let mut r: BaseRecord<'_, str, [u8]> = BaseRecord::to("in")
                .key(key)
                .partition(partition)
                .timestamp(ts);
            r.payload = payload;
            r = r.headers(OwnedHeaders::new().insert(Header {
                key: "content-type",
                value: Some("application/json"),
            }));
            producer.send(r).map_err(|(e, _)| e).expect("send");
        }
        producer.flush(Duration::from_secs(10)).expect("flush");

        let mut settings = ClientConfig::new();
        settings
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "consume-test")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false");
        let consumer = BaseConsumer::from_config_and_context(&settings, Counting::default())
            .expect("consumer");
        consumer.subscribe(&["in"]).expect("subscribe");
        let queue = ConsumerQueue::of(&consumer).expect("a group consumer has a queue");
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while got.len() < 2 && std::time::Instant::now() < deadline {
            match queue.poll(&consumer, Duration::from_millis(100)) {
                Polled::Record(m) => {
                    let ct = m
                        .headers()
                        .and_then(|h| h.iter().find(|h| h.key == "content-type"))
                        .and_then(|h| h.value.map(<[u8]>::to_vec));
                    got.push((
                        m.topic().to_string(),
                        m.partition(),
                        m.offset(),
                        m.key().map(<[u8]>::to_vec),
                        m.payload().map(<[u8]>::to_vec),
                        m.timestamp(),
                        ct,
                    ));
                }
                Polled::Error(e) => panic!("consumer error: {e}"),
                Polled::Nothing | Polled::Served => {}
            }
        }
        got.sort_by_key(|g| g.1);
        assert_eq!(
            got,
            [
                (
                    "in".to_string(),
                    0,
                    0,
                    Some(b"t1".to_vec()),
                    Some(b"one".to_vec()),
                    Timestamp::CreateTime(1_700_000_000_000),
                    Some(b"application/json".to_vec())
                ),
                (
                    "in".to_string(),
                    1,
                    0,
                    Some(b"t2".to_vec()),
                    None,
                    Timestamp::CreateTime(1_700_000_000_001),
                    Some(b"application/json".to_vec())
                ),
            ]
        );
        // The assignment went through the context's hooks, as rust-rdkafka's poll does it.
        assert_eq!(
            consumer
                .context()
                .assigned
                .load(std::sync::atomic::Ordering::SeqCst),
            2
        );
        assert_eq!(consumer.assignment().expect("assignment").count(), 2);
        drop(queue);
    }
}
