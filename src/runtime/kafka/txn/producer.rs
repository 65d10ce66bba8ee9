//! librdkafka's producer behind [`TxnProducer`]: its context (delivery failures, client
//! errors), its creation (`init_transactions` after a warm-up), and the send path.
//!
//! Records go out through `rd_kafka_producev` with a topic handle the producer keeps per
//! topic ([`TopicHandles`]), not through rust-rdkafka's `BaseProducer::send`: that one
//! allocates a C string of the topic per record, and librdkafka then finds the topic by
//! name under the client's write lock, which its broker threads take too (~4 % of the
//! processing thread in a drain, docs/performance.md, session 18).
use super::{OutRecord, SendRefused, TxnError, TxnOp, TxnProducer};
use crate::runtime::kafka::clients::AuthFailure;
use crate::runtime::kafka::recovery::Trouble;
use rdkafka::bindings as rdsys;
use rdkafka::client::ClientContext;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use rdkafka::Message as _;
use std::cell::RefCell;
use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The producer's context: delivery failures (counted by the delivery callback), and client
/// errors noted for the authentication check and the outage judgement.
pub struct ProducerCtx {
    /// The producer's `transactional.id` (set by [`new_producer`] from its settings).
    transactional_id: Option<String>,
    failed: AtomicU64,
    first_error: Mutex<Option<TxnError>>,
    /// Shared with the consumers' contexts.
    pub auth: AuthFailure,
    pub trouble: Arc<Trouble>,
}

impl ProducerCtx {
    pub fn new(auth: AuthFailure, trouble: Arc<Trouble>) -> ProducerCtx {
        ProducerCtx {
            transactional_id: None,
            failed: AtomicU64::new(0),
            first_error: Mutex::new(None),
            auth,
            trouble,
        }
    }
}

impl ClientContext for ProducerCtx {
    fn error(&self, error: KafkaError, reason: &str) {
        self.trouble.note(&error);
        if !self.auth.record(&error, reason) {
            crate::runtime::kafka::client_log::client_error("producer", &error, reason);
        }
    }
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::runtime::kafka::client_log::client_log(level, fac, message);
    }
}

impl ProducerContext for ProducerCtx {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, m)) = result {
            self.trouble.note(e);
            self.failed.fetch_add(1, Ordering::SeqCst);
            let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
            if first.is_none() {
                *first = Some(TxnError::Delivery {
                    topic: m.topic().to_string(),
                    source: e.clone(),
                });
            }
        }
    }
}

/// How long each warm-up request before `init_transactions` may take (brokers that do not
/// answer fail start-up in `init_transactions`, not much later).
const WARM_UP_BOUND: Duration = Duration::from_secs(5);

/// The output producer; with exactly-once, `init_transactions` (which fences a zombie with
/// the same transactional id and aborts its open transaction), after a connection to the
/// leader of `known_topic`'s partition 0 (an existing topic: the state topic).
pub fn new_producer(
    settings: ClientConfig,
    exactly_once: bool,
    mut ctx: ProducerCtx,
    timeout: Duration,
    known_topic: &str,
) -> Result<OutputProducer, (&'static str, KafkaError)> {
    ctx.transactional_id = settings.get("transactional.id").map(str::to_string);
    let producer: BaseProducer<ProducerCtx> = settings
        .create_with_context(ctx)
        .map_err(|e| ("creating the producer", e))?;
    if exactly_once {
        // Bring up a connection to a broker of the cluster first. librdkafka drops the
        // bootstrap connection once the first metadata names the brokers; an
        // `init_transactions` in the gap finds no broker for its coordinator query and
        // retries it after a fixed 500 ms: a restart's producers took ~0.06 s or ~0.56 s by
        // chance (4 of 6 restarts slow with a metadata request alone). A partition's
        // watermarks are answered by its leader, so that connection is up afterwards: 8 of 8
        // restarts ~0.06 s (docs/performance.md, session 14). Failures here are left to
        // `init_transactions`, which reports them with its own retries.
        let bound = timeout.min(WARM_UP_BOUND);
        let client = producer.client();
        let _ = client.fetch_metadata(Some(known_topic), bound);
        let _ = client.fetch_watermarks(known_topic, 0, bound);
        producer
            .init_transactions(timeout)
            .map_err(|e| ("init_transactions", e))?;
    }
    Ok(OutputProducer {
        topics: TopicHandles::default(),
        producer,
    })
}

/// The output producer: librdkafka's, with a handle per topic it has sent to.
pub struct OutputProducer {
    /// Destroyed before the producer (field order): librdkafka wants every topic handle
    /// given back before the client is.
    topics: TopicHandles,
    producer: BaseProducer<ProducerCtx>,
}

impl std::ops::Deref for OutputProducer {
    type Target = BaseProducer<ProducerCtx>;
    fn deref(&self) -> &BaseProducer<ProducerCtx> {
        &self.producer
    }
}

/// Topic handles (`rd_kafka_topic_new`) by name. A producer sends to a handful of topics
/// (the output topics, the state topics), so a short list searched in order is enough.
#[derive(Default)]
struct TopicHandles {
    list: RefCell<Vec<(Box<str>, TopicHandle)>>,
}

struct TopicHandle(NonNull<rdsys::rd_kafka_topic_t>);

// SAFETY: librdkafka's topic handles are thread-safe reference-counted objects; the handle
// is only used with the client that made it, which `OutputProducer` keeps beside it.
unsafe impl Send for TopicHandle {}

impl TopicHandles {
    /// The handle of `topic` on client `rk`, made on first use, or why librdkafka refused
    /// the name.
    fn get(
        &self,
        rk: *mut rdsys::rd_kafka_t,
        topic: &str,
    ) -> Result<*mut rdsys::rd_kafka_topic_t, RDKafkaErrorCode> {
        let mut list = self.list.borrow_mut();
        if let Some((_, h)) = list.iter().find(|(name, _)| **name == *topic) {
            return Ok(h.0.as_ptr());
        }
        let name = CString::new(topic).map_err(|_| RDKafkaErrorCode::InvalidArgument)?;
        // SAFETY: `rk` is a live client; a NULL configuration takes the client's defaults
        // (as a send by name does). On NULL, the last error is this thread's, just set.
        let rkt = unsafe { rdsys::rd_kafka_topic_new(rk, name.as_ptr(), std::ptr::null_mut()) };
        let handle = NonNull::new(rkt)
            .ok_or_else(|| RDKafkaErrorCode::from(unsafe { rdsys::rd_kafka_last_error() }))?;
        list.push((topic.into(), TopicHandle(handle)));
        Ok(rkt)
    }
}

impl Drop for TopicHandles {
    fn drop(&mut self) {
        for (_, h) in self.list.get_mut().drain(..) {
            // SAFETY: each handle was made by `rd_kafka_topic_new` and is given back once.
            unsafe { rdsys::rd_kafka_topic_destroy(h.0.as_ptr()) };
        }
    }
}

/// Sends `rec` through topic handle `rkt` (librdkafka copies key and value). On success
/// librdkafka owns the headers.
fn producev<'a>(
    rk: *mut rdsys::rd_kafka_t,
    rkt: *mut rdsys::rd_kafka_topic_t,
    rec: OutRecord<'a>,
) -> Result<(), SendRefused<'a>> {
    use rdsys::rd_kafka_vtype_t::*;
    let (value, value_len) = rec.value.map_or((std::ptr::null_mut(), 0), |v| {
        (v.as_ptr() as *mut std::ffi::c_void, v.len())
    });
    // `OwnedHeaders::as_borrowed` is the native list itself (rust-rdkafka casts the pointer
    // both ways); the test `as_borrowed_is_the_native_header_list` holds it to that.
    let headers = rec.headers.as_ref().map_or(std::ptr::null_mut(), |h| {
        h.as_borrowed() as *const _ as *mut rdsys::rd_kafka_headers_t
    });
    // SAFETY: `rk` and `rkt` are live and belong together; the pointers and lengths come
    // from slices that outlive the call, which copies them (RD_KAFKA_MSG_F_COPY).
    let err = unsafe {
        rdsys::rd_kafka_producev(
            rk,
            RD_KAFKA_VTYPE_RKT,
            rkt,
            RD_KAFKA_VTYPE_PARTITION,
            rec.partition.unwrap_or(-1),
            RD_KAFKA_VTYPE_MSGFLAGS,
            rdsys::RD_KAFKA_MSG_F_COPY as std::ffi::c_int,
            RD_KAFKA_VTYPE_VALUE,
            value,
            value_len,
            RD_KAFKA_VTYPE_KEY,
            rec.key.as_ptr() as *const std::ffi::c_void,
            rec.key.len(),
            RD_KAFKA_VTYPE_HEADERS,
            headers,
            RD_KAFKA_VTYPE_END,
        )
    };
    match RDKafkaErrorCode::from(err) {
        RDKafkaErrorCode::NoError => {
            // librdkafka has taken the header list: it frees it with the message.
            std::mem::forget(rec.headers);
            Ok(())
        }
        RDKafkaErrorCode::QueueFull => Err(SendRefused::QueueFull(rec)),
        code => Err(SendRefused::Failed(KafkaError::MessageProduction(code))),
    }
}

impl TxnProducer for OutputProducer {
    type Group = ConsumerGroupMetadata;

    fn begin(&self) -> Result<(), TxnError> {
        self.begin_transaction()
            .map_err(TxnError::op(TxnOp::BeginTransaction))
    }

    fn send<'a>(&self, rec: OutRecord<'a>) -> Result<(), SendRefused<'a>> {
        let rk = self.client().native_ptr();
        match self.topics.get(rk, rec.topic) {
            Ok(rkt) => producev(rk, rkt, rec),
            Err(code) => Err(SendRefused::Failed(KafkaError::MessageProduction(code))),
        }
    }

    fn serve(&self) {
        for _ in 0..4 {
            self.poll(Duration::ZERO);
        }
    }

    /// `rd_kafka_flush`: while it waits, librdkafka sends what is queued regardless of
    /// `linger.ms` (so a commit does not wait out the linger of its last records), and it
    /// waits on a condition variable, not in a poll loop. Delivery reports are events here
    /// (rust-rdkafka's), so it serves none: [`TxnProducer::serve`] does, between waits.
    fn hurry(&self, wait: Duration) {
        let ms = wait.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: the client pointer is valid for the producer's lifetime; flush only waits
        // on the producer's message count (it returns TIMED_OUT while some remain, which
        // the caller sees from `in_flight`).
        unsafe {
            rdkafka::bindings::rd_kafka_flush(self.client().native_ptr(), ms);
        }
    }

    fn in_flight(&self) -> i32 {
        self.in_flight_count()
    }

    fn send_offsets(
        &self,
        offsets: &TopicPartitionList,
        group: &ConsumerGroupMetadata,
        timeout: Duration,
    ) -> Result<(), TxnError> {
        self.send_offsets_to_transaction(offsets, group, timeout)
            .map_err(TxnError::op(TxnOp::SendOffsetsToTransaction))
    }

    fn commit(&self, timeout: Duration) -> Result<(), TxnError> {
        self.commit_transaction(timeout)
            .map_err(TxnError::op(TxnOp::CommitTransaction))
    }

    fn abort(&self, timeout: Duration) -> Result<(), TxnError> {
        self.abort_transaction(timeout)
            .map_err(TxnError::op(TxnOp::AbortTransaction))
    }

    fn delivery_failure(&self) -> Option<TxnError> {
        let ctx = self.context();
        if ctx.failed.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let first = ctx.first_error.lock().unwrap_or_else(|p| p.into_inner());
        Some(first.clone().unwrap_or(TxnError::Delivery {
            topic: String::new(),
            source: KafkaError::Canceled,
        }))
    }

    fn clear_failures(&self) {
        let ctx = self.context();
        ctx.failed.store(0, Ordering::SeqCst);
        *ctx.first_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn transactional_id(&self) -> Option<&str> {
        self.context().transactional_id.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders};
    use std::sync::mpsc;

    /// A non-transactional producer whose broker is never there: records stay queued.
    fn unconnected() -> OutputProducer {
        let mut settings = ClientConfig::new();
        settings
            .set("bootstrap.servers", "127.0.0.1:9")
            .set("message.timeout.ms", "600000")
            .set("log_level", "0");
        let ctx = ProducerCtx::new(AuthFailure::default(), Arc::new(Trouble::default()));
        new_producer(settings, false, ctx, Duration::from_secs(1), "unused")
            .unwrap_or_else(|(what, e)| panic!("{what}: {e}"))
    }

    fn headers() -> OwnedHeaders {
        OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: "content-type",
                value: Some("application/json"),
            })
            .insert(Header {
                key: "slawatch.kind",
                value: Some("breach"),
            })
    }

    #[test]
    fn as_borrowed_is_the_native_header_list() {
        let h = headers();
        let native = h.as_borrowed() as *const _ as *const rdsys::rd_kafka_headers_t;
        // SAFETY: `native` is `h`'s list (what this test checks), alive for the test.
        unsafe {
            assert_eq!(rdsys::rd_kafka_header_cnt(native), 2);
            let mut value = std::ptr::null();
            let mut len = 0usize;
            let name = CString::new("slawatch.kind").unwrap();
            let err = rdsys::rd_kafka_header_get_last(native, name.as_ptr(), &mut value, &mut len);
            assert_eq!(RDKafkaErrorCode::from(err), RDKafkaErrorCode::NoError);
            assert_eq!(
                std::slice::from_raw_parts(value as *const u8, len),
                b"breach"
            );
        }
    }

    #[test]
    fn records_go_out_through_one_handle_per_topic_and_the_producer_drops_cleanly() {
        let p = unconnected();
        for (topic, key) in [
            ("sla.breach", "a"),
            ("sla.warning", "b"),
            ("sla.breach", "c"),
        ] {
            let sent = p.send(OutRecord {
                topic,
                partition: None,
                key: key.as_bytes(),
                value: Some(b"{}"),
                headers: Some(headers()),
            });
            assert!(sent.is_ok(), "send to {topic}");
        }
        // A tombstone to a fixed partition, without headers.
        let sent = p.send(OutRecord {
            topic: "state",
            partition: Some(3),
            key: b"k",
            value: None,
            headers: None,
        });
        assert!(sent.is_ok(), "tombstone");
        // Purged from the queue, each record comes back as a failed delivery naming its
        // topic: all four were queued, on the topics they were sent to.
        p.purge(rdkafka::producer::PurgeConfig::default().queue());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while p.context().failed.load(Ordering::SeqCst) < 4 && std::time::Instant::now() < deadline
        {
            p.poll(Duration::from_millis(20));
        }
        assert_eq!(p.context().failed.load(Ordering::SeqCst), 4);
        assert!(matches!(
            p.delivery_failure(),
            Some(TxnError::Delivery { ref topic, .. }) if topic == "sla.breach"
        ));
        let names: Vec<String> = p
            .topics
            .list
            .borrow()
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        assert_eq!(names, ["sla.breach", "sla.warning", "state"]);
        // librdkafka wants the topic handles back before the client: dropping in the
        // wrong order leaves `rd_kafka_destroy` waiting for them.
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            drop(p);
            let _ = done.send(());
        });
        assert!(
            finished.recv_timeout(Duration::from_secs(30)).is_ok(),
            "dropping the producer did not finish"
        );
    }

    #[test]
    fn a_topic_name_librdkafka_refuses_is_a_failed_send_not_a_panic() {
        let p = unconnected();
        let sent = p.send(OutRecord {
            topic: "bad\0name",
            partition: None,
            key: b"k",
            value: Some(b"v"),
            headers: None,
        });
        assert!(matches!(
            sent,
            Err(SendRefused::Failed(KafkaError::MessageProduction(
                RDKafkaErrorCode::InvalidArgument
            )))
        ));
        assert!(p.topics.list.borrow().is_empty());
    }
}
