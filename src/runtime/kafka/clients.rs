//! librdkafka client settings slawatch owns, and small helpers around rust-rdkafka (the
//! processor's clients are created from these; the transactional producer is driven by
//! [`super::txn`]).
use crate::runtime::config::Config;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::types::RDKafkaErrorCode;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake};
use std::time::{Duration, Instant};

/// Initialises OpenSSL (once) without its exit-time cleanup: call before the first client
/// or configuration is made. By default OpenSSL frees its global state in an `atexit`
/// handler; a process that exits while a librdkafka thread still uses TLS (a restore worker,
/// a client being destroyed) then crashes with SIGSEGV instead of exiting with its status.
pub fn init_tls() {
    openssl_sys::init();
}

/// Every client: brokers, then the `[kafka]` passthrough (security, tuning).
pub fn base_config(cfg: &Config) -> ClientConfig {
    init_tls();
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    for (k, v) in &cfg.kafka {
        c.set(k, v);
    }
    c
}

/// The processing consumer: static member of `group_id`, cooperative-sticky, manual
/// offsets, read_committed, earliest when the group has no offset.
pub fn consumer_config(cfg: &Config, group_id: &str) -> ClientConfig {
    let mut c = base_config(cfg);
    c.set("group.id", group_id)
        .set("group.instance.id", &cfg.instance_id)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    if !cfg.kafka.contains_key("session.timeout.ms") {
        c.set("session.timeout.ms", "10000");
    }
    if !cfg.kafka.contains_key("heartbeat.interval.ms") {
        c.set("heartbeat.interval.ms", "1000");
    }
    for (k, v) in fetch_sizes(cfg) {
        if !cfg.kafka.contains_key(k) {
            c.set(k, v.to_string());
        }
    }
    set_fetch_backoff(&mut c, cfg, "10");
    c
}

/// A processing consumer's memory bounds, from `fetch_queue_kbytes` (each one a `[kafka]`
/// key overrides). librdkafka's defaults let one consumer hold 64 MiB of pre-fetched
/// records plus a 50 MB fetch in flight, which was most of a backlog drain's peak RSS.
/// - `queued.max.messages.kbytes` = `fetch_queue_kbytes`: the pre-fetched records of all
///   the consumer's partitions (they share the consumer's queue);
/// - `fetch.max.bytes` = an eighth of it: librdkafka decodes a whole fetch response into
///   its queue whatever the bounds, each record as a ~0.3 KiB op pointing into its
///   decompressed batch, so a response of small compressed records costs ~10× its size. At
///   half the queue (4 MiB) one response held ~45 MiB (heaptrack of a backlog drain: the
///   largest share of the process's peak); at an eighth the drain's peak RSS fell by
///   ~20 MiB at the same rate (docs/performance.md);
/// - `max.partition.fetch.bytes` = a quarter of `fetch.max.bytes`, so one fetch carries
///   several partitions and they are drained side by side rather than one after another
///   (which let half the partitions catch up while the rest held most of the backlog).
///
/// - `queued.min.messages` = one record per KiB of `fetch_queue_kbytes`: librdkafka
///   counts only a record's payload against the byte bound, yet keeps ~0.5 KiB per queued
///   record (its op and the decompressed batch it points into). With its default of
///   100 000 records, a queue of ~60-byte events held ~90 MiB under an 8 MiB byte bound
///   (heaptrack of a backlog drain); the count bound keeps the real footprint near the
///   byte bound whatever the records' size.
///
/// Each fetch size is at least `max_record_bytes` (librdkafka returns a larger record
/// anyway, but a fetch sized below one record makes no progress per round trip).
pub fn fetch_sizes(cfg: &Config) -> [(&'static str, u64); 4] {
    let queue = cfg.fetch_queue_kbytes * 1024;
    let floor = cfg.max_record_bytes as u64;
    let fetch = (queue / 8).max(floor);
    let partition = (fetch / 4).max(floor);
    [
        ("queued.max.messages.kbytes", cfg.fetch_queue_kbytes),
        ("queued.min.messages", cfg.fetch_queue_kbytes),
        ("fetch.max.bytes", fetch),
        ("max.partition.fetch.bytes", partition),
    ]
}

/// librdkafka postpones a partition's next fetch by `fetch.queue.backoff.ms` (default 1 s)
/// once its local queue holds `queued.min.messages` (100 000) records — a single large
/// fetch of small records does — so a reader that drains its queue quickly then sits idle
/// for up to a second per fetch (a 1 M-ticket restore spent ~70 % of its time waiting so).
fn set_fetch_backoff(c: &mut ClientConfig, cfg: &Config, ms: &str) {
    if !cfg.kafka.contains_key("fetch.queue.backoff.ms") {
        c.set("fetch.queue.backoff.ms", ms);
    }
}

/// How long the output producer lets records gather into a batch. A transaction's records
/// are visible only at its commit, and the commit has them sent at once
/// ([`crate::runtime::kafka::txn::TxnProducer::hurry`]), so under exactly-once a longer
/// linger costs no latency and buys larger batches: in a 1 M-event drain (~50 partitions
/// written, ~10 records per partition per 2 ms) 20 ms instead of 2 took librdkafka's threads
/// from ~0.77 to ~0.68 µs per event and the broker from ~0.93 to ~0.61 (docs/performance.md);
/// 50 ms bought nothing more. Without transactions a record is visible once delivered, so
/// the linger stays short.
pub fn linger_ms(transactional: bool) -> &'static str {
    if transactional {
        "20"
    } else {
        "2"
    }
}

/// The output producer: transactional (`transactional.id` = `<group>-<instance>`) with
/// exactly-once, else idempotent.
pub fn producer_config(cfg: &Config, transactional_id: Option<&str>) -> ClientConfig {
    let mut c = base_config(cfg);
    // Only failed deliveries are reported: a successful one is freed as soon as it is
    // acknowledged, instead of counting against the producer queue until a poll serves its
    // report (with many partitions that throttled the processing thread on QueueFull).
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("delivery.report.only.error", "true");
    if !cfg.kafka.contains_key("linger.ms") {
        c.set("linger.ms", linger_ms(transactional_id.is_some()));
    }
    // librdkafka's default queue is 1 GiB; a full queue only makes the processing thread
    // wait for deliveries (see `Txn::send`).
    if !cfg.kafka.contains_key("queue.buffering.max.kbytes") {
        c.set(
            "queue.buffering.max.kbytes",
            cfg.producer_queue_kbytes.to_string(),
        );
    }
    // State records (postcard) and outputs (JSON) shrink 3-5× with lz4, which is cheap to
    // compress and almost free to decompress: a restore reads the state partition to its
    // end, so its bytes are its time.
    if !cfg.kafka.contains_key("compression.type") && !cfg.kafka.contains_key("compression.codec") {
        c.set("compression.type", "lz4");
    }
    if let Some(id) = transactional_id {
        c.set("transactional.id", id).set(
            "transaction.timeout.ms",
            cfg.transaction_timeout_ms.to_string(),
        );
    }
    c
}

/// A client that lives for one task (a restore's reader, the start-up's topic check) and
/// opens its connections at once (bootstrap, a partition leader, a coordinator).
/// librdkafka spaces new connections by half of `reconnect.backoff.ms`, so the default
/// 100 ms made each such client wait ~50 ms for its second connection: an empty
/// partition's restore took 108-152 ms, with 10 ms 51-98 ms (docs/performance.md,
/// session 14). A reconnect still backs off exponentially from there.
pub fn short_lived_config(cfg: &Config) -> ClientConfig {
    let mut c = base_config(cfg);
    if !cfg.kafka.contains_key("reconnect.backoff.ms") {
        c.set("reconnect.backoff.ms", "10");
    }
    c
}

/// The state reader used during restores: no group membership (it only assigns), reads
/// committed data to the end of the partition, and fetches the group's committed offsets.
pub fn reader_config(cfg: &Config, group_id: &str) -> ClientConfig {
    let mut c = short_lived_config(cfg);
    c.set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true");
    // End-of-partition is only known from a fetch response; do not let the broker hold the
    // last, empty fetch for the default 500 ms.
    if !cfg.kafka.contains_key("fetch.wait.max.ms") {
        c.set("fetch.wait.max.ms", "10");
    }
    if !cfg.kafka.contains_key("fetch.max.bytes") {
        c.set("fetch.max.bytes", "104857600");
    }
    if !cfg.kafka.contains_key("max.partition.fetch.bytes") {
        c.set("max.partition.fetch.bytes", "52428800");
    }
    set_fetch_backoff(&mut c, cfg, "1");
    c
}

/// How long [`QuickClose`] polls for the close before leaving it to rust-rdkafka's drop.
const QUICK_CLOSE_BOUND: Duration = Duration::from_secs(2);

/// A group consumer that closes in milliseconds when dropped. rust-rdkafka's drop of a
/// consumer with a `group.id` closes its queue and then polls in 100 ms steps until it is
/// closed, and the first step waits its whole 100 ms: a restore paid that twice (its two
/// readers), ~200 of the ~290 ms it took for an empty partition, while holding its slot.
/// Polling in 2 ms steps closes the same way, sooner; the inner drop then finds it closed.
pub struct QuickClose<C: ConsumerContext>(BaseConsumer<C>);

impl<C: ConsumerContext> QuickClose<C> {
    pub fn new(consumer: BaseConsumer<C>) -> QuickClose<C> {
        QuickClose(consumer)
    }
}

impl<C: ConsumerContext> std::ops::Deref for QuickClose<C> {
    type Target = BaseConsumer<C>;
    fn deref(&self) -> &BaseConsumer<C> {
        &self.0
    }
}

impl<C: ConsumerContext> Drop for QuickClose<C> {
    fn drop(&mut self) {
        if self.0.close_queue().is_err() {
            return;
        }
        let until = Instant::now() + QUICK_CLOSE_BOUND;
        while !self.0.closed() && Instant::now() < until {
            let _ = self.0.poll(Duration::from_millis(2));
        }
    }
}

/// librdkafka's cached (low, high) watermarks of a partition, updated by every fetch
/// response: no network round trip. `None` before the first fetch.
pub fn cached_watermarks<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    use rdkafka::consumer::Consumer;
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid for the consumer's lifetime; the call only reads
    // the partition's cached offsets under its lock.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    if err != rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || high < 0 {
        return None;
    }
    Some((low, high))
}

/// The consumer's positions (the next offset to consume) of `partitions`, read from
/// librdkafka's partition state under its locks: no round trip. rust-rdkafka's
/// `Consumer::position` first asks for the assignment, a request to librdkafka's main
/// thread and a wait for its reply; twice per batch that was ~1 000 context switches of the
/// processing thread in a 1 M-event drain (docs/performance.md). A partition the consumer
/// does not hold reads `Offset::Invalid`.
pub fn cached_positions<'a, C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    partitions: impl IntoIterator<Item = (&'a str, i32)>,
) -> Option<TopicPartitionList> {
    use rdkafka::consumer::Consumer;
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in partitions {
        tpl.add_partition(topic, partition);
    }
    // SAFETY: the client pointer is valid for the consumer's lifetime and the list is ours;
    // the call only writes the offsets (and per-partition errors) of the list's elements.
    let err =
        unsafe { rdkafka::bindings::rd_kafka_position(consumer.client().native_ptr(), tpl.ptr()) };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR).then_some(tpl)
}

/// Drives a future on this thread. rdkafka's admin futures are completed by librdkafka's
/// threads, so no async runtime is needed.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// Whether a client error means the credentials or the TLS setup are wrong: SASL
/// authentication failed, the mechanism is not enabled on the broker, or the TLS handshake
/// failed (untrusted certificate, wrong host name, TLS against a plaintext port). librdkafka
/// reports these through the client context's error callback and keeps retrying, which
/// would look like a hang; retrying cannot cure them. All brokers being down is not one of
/// them (a broker may come back).
pub fn is_auth_failure(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::UnsupportedSASLMechanism
                | RDKafkaErrorCode::IllegalSASLState
                | RDKafkaErrorCode::SSL
        )
    )
}

/// How soon a second authentication or TLS failure must follow the first for the two to
/// stop the processor. One alone is not a verdict: a connection closed by the broker while
/// it re-authenticates (`connections.max.reauth.ms`) fails its handshake with the same
/// error code as a wrong password ("mechanism handshake failed: … Broker transport
/// failure"), and librdkafka simply reconnects. Wrong or revoked credentials fail every
/// reconnect of every client (within librdkafka's reconnect back-off, at most 10 s).
pub const AUTH_CONFIRM_WINDOW: Duration = Duration::from_secs(10);

/// Authentication or TLS failures seen by any client of this process, shared by the
/// clients' contexts (whose error callbacks run on librdkafka's or the polling threads);
/// the processing loop stops on a confirmed one ([`AUTH_CONFIRM_WINDOW`]).
#[derive(Clone, Default)]
pub struct AuthFailure(Arc<Mutex<AuthState>>);

#[derive(Default)]
struct AuthState {
    /// The latest unconfirmed failure and when it was seen.
    pending: Option<(String, Instant)>,
    confirmed: Option<String>,
}

impl AuthFailure {
    /// Records `error` if it is an authentication or TLS failure ([`is_auth_failure`]);
    /// returns whether it was. librdkafka's reason names the broker and the mechanism,
    /// never the password.
    pub fn record(&self, error: &KafkaError, reason: &str) -> bool {
        self.record_at(error, reason, Instant::now())
    }

    fn record_at(&self, error: &KafkaError, reason: &str, now: Instant) -> bool {
        if !is_auth_failure(error) {
            return false;
        }
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if state.confirmed.is_some() {
            return true;
        }
        match state.pending.take() {
            Some((first, at)) if now.saturating_duration_since(at) <= AUTH_CONFIRM_WINDOW => {
                tracing::error!(%error, reason, "Kafka authentication / TLS failure (again)");
                state.confirmed = Some(first);
            }
            _ => {
                tracing::warn!(
                    %error,
                    reason,
                    "Kafka authentication / TLS failure; stopping if it happens again within {}s",
                    AUTH_CONFIRM_WINDOW.as_secs()
                );
                state.pending = Some((format!("{error}: {reason}"), now));
            }
        }
        true
    }

    /// The confirmed failure (its first report), if any.
    pub fn get(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .confirmed
            .clone()
    }
}

/// A client context that records authentication and TLS failures and logs other errors.
#[derive(Clone, Default)]
pub struct AuthWatch {
    pub failure: AuthFailure,
}

impl rdkafka::ClientContext for AuthWatch {
    fn error(&self, error: KafkaError, reason: &str) {
        if !self.failure.record(&error, reason) {
            super::client_log::client_error("client", &error, reason);
        }
    }
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::runtime::kafka::client_log::client_log(level, fac, message);
    }
}

impl rdkafka::producer::ProducerContext for AuthWatch {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::producer::DeliveryResult<'_>, _: ()) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!("brokers = \"b:9092\"\ninstance_id = \"i1\"\n{extra}");
        Config::from_sources(&text, "test.toml", Vec::new()).unwrap()
    }

    #[test]
    fn an_authentication_failure_stops_only_when_it_happens_again_soon() {
        let auth = KafkaError::Global(RDKafkaErrorCode::Authentication);
        let down = KafkaError::Global(RDKafkaErrorCode::AllBrokersDown);
        let t0 = Instant::now();
        let a = AuthFailure::default();
        assert!(!a.record_at(&down, "all brokers down", t0));
        assert!(a.record_at(&auth, "handshake failed: transport failure", t0));
        assert_eq!(a.get(), None, "one failed handshake is not a verdict");
        // The next one long after: still only one within the window.
        let later = t0 + AUTH_CONFIRM_WINDOW + Duration::from_secs(1);
        assert!(a.record_at(&auth, "invalid credentials", later));
        assert_eq!(a.get(), None);
        // Again soon after: confirmed, naming the failure that started the window.
        assert!(a.record_at(
            &auth,
            "invalid credentials, again",
            later + Duration::from_millis(300)
        ));
        let got = a.get().expect("confirmed");
        assert!(got.ends_with(": invalid credentials"), "{got}");
        assert!(a.record_at(&auth, "more", later + Duration::from_secs(60)));
        assert_eq!(a.get().as_deref(), Some(got.as_str()), "a verdict stays");
    }

    #[test]
    fn queues_are_sized_from_the_config() {
        let c = consumer_config(&config(""), "g");
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("8192"));
        assert_eq!(c.get("queued.min.messages"), Some("8192"));
        assert_eq!(c.get("fetch.max.bytes"), Some("1048576"));
        assert_eq!(c.get("max.partition.fetch.bytes"), Some("1048576"));
        let p = producer_config(&config(""), None);
        assert_eq!(p.get("queue.buffering.max.kbytes"), Some("65536"));

        let cfg = config("fetch_queue_kbytes = 32768\nproducer_queue_kbytes = 8192");
        let c = consumer_config(&cfg, "g");
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("32768"));
        assert_eq!(c.get("queued.min.messages"), Some("32768"));
        assert_eq!(c.get("fetch.max.bytes"), Some("4194304"));
        assert_eq!(c.get("max.partition.fetch.bytes"), Some("1048576"));
        // Smaller queues: each fetch size raised to one record of max_record_bytes.
        let c = consumer_config(&config("fetch_queue_kbytes = 4096"), "g");
        assert_eq!(c.get("fetch.max.bytes"), Some("1048576"));
        assert_eq!(c.get("max.partition.fetch.bytes"), Some("1048576"));
        assert_eq!(
            producer_config(&cfg, None).get("queue.buffering.max.kbytes"),
            Some("8192")
        );
    }

    #[test]
    fn a_transactional_producer_lingers_longer_unless_told() {
        let cfg = config("");
        assert_eq!(
            producer_config(&cfg, Some("g-0")).get("linger.ms"),
            Some("20")
        );
        assert_eq!(producer_config(&cfg, None).get("linger.ms"), Some("2"));
        let told = config("[kafka]\n\"linger.ms\" = \"5\"");
        assert_eq!(
            producer_config(&told, Some("g-0")).get("linger.ms"),
            Some("5")
        );
        assert_eq!(producer_config(&told, None).get("linger.ms"), Some("5"));
    }

    #[test]
    fn the_kafka_passthrough_overrides_the_sized_defaults() {
        let cfg = config(
            "[kafka]\n\"queued.max.messages.kbytes\" = \"65536\"\n\"fetch.max.bytes\" = \"52428800\"\n\"queue.buffering.max.kbytes\" = \"1048576\"",
        );
        let c = consumer_config(&cfg, "g");
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("65536"));
        assert_eq!(c.get("fetch.max.bytes"), Some("52428800"));
        // Not overridden: still from fetch_queue_kbytes.
        assert_eq!(c.get("max.partition.fetch.bytes"), Some("1048576"));
        assert_eq!(
            producer_config(&cfg, None).get("queue.buffering.max.kbytes"),
            Some("1048576")
        );
    }

    #[test]
    fn short_lived_clients_connect_without_the_default_spacing_unless_configured() {
        let c = reader_config(&config(""), "g");
        assert_eq!(c.get("reconnect.backoff.ms"), Some("10"));
        assert_eq!(c.get("group.id"), Some("g"));
        // The long-lived clients keep librdkafka's default.
        assert_eq!(
            consumer_config(&config(""), "g").get("reconnect.backoff.ms"),
            None
        );
        let cfg = config("[kafka]\n\"reconnect.backoff.ms\" = \"250\"");
        assert_eq!(
            reader_config(&cfg, "g").get("reconnect.backoff.ms"),
            Some("250")
        );
    }

    #[test]
    fn queue_sizes_out_of_librdkafkas_range_are_refused() {
        for bad in [
            "fetch_queue_kbytes = 10",
            "fetch_queue_kbytes = 3000000",
            "producer_queue_kbytes = 0",
        ] {
            let text = format!("brokers = \"b:9092\"\n{bad}");
            let err = Config::from_sources(&text, "test.toml", Vec::new()).unwrap_err();
            let key = bad.split(' ').next().unwrap();
            assert!(err.to_string().contains(key), "{bad}: {err}");
        }
    }
}
