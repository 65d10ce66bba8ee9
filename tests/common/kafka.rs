//! A real Apache Kafka broker for integration tests, and small client helpers.
//!
//! [`bootstrap`] returns `$KAFKA_BOOTSTRAP` when it is set (a broker you run yourself,
//! e.g. `scripts/kafka/broker.sh start`). Otherwise the first call starts ONE single-node
//! KRaft broker for the whole test process with `scripts/kafka/broker.sh start`, in a run
//! directory of its own (`$CARGO_TARGET_TMPDIR/kafka-<pid>`), and every later call returns
//! the same address. The broker is tied to this process by a pipe: `broker.sh` leaves a
//! watchdog whose stdin is a pipe whose only writer is this process; when the process
//! exits — normally, by panic, or killed with SIGKILL — the kernel closes the pipe, the
//! watchdog sees end-of-file and stops the broker (SIGTERM, then SIGKILL). It never
//! outlives the test binary.
//!
//! The broker is shared by every test in the binary (they run in parallel threads), so
//! each test must use its own topics, groups and transactional ids: [`unique_name`].
//! Topics are not auto-created: use [`create_topic`].
//!
//! All helpers here are blocking and need no async runtime; they can be called from
//! `#[test]` and `#[tokio::test]` alike. For async clients build from the configs:
//! `consumer_config(..).create::<StreamConsumer>()`, or
//! `transactional_producer::<FutureProducer, _, _>(..)`.
#![allow(dead_code)]

use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::{ClientConfig, FromClientConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{BaseProducer, BaseRecord, Partitioner, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// Default bound for one broker round trip in these helpers (topic creation, transaction
/// commit, offset fetch). Generous: the first transaction of a run also creates
/// `__transaction_state`.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The bootstrap address (`127.0.0.1:PORT`) of the test broker; see the module docs.
///
/// Panics with `broker.sh`'s log when the broker cannot be started (no `java`, no jars
/// and no Maven Central, ...). A failed start is not retried by later calls.
pub fn bootstrap() -> String {
    if let Ok(b) = std::env::var("KAFKA_BOOTSTRAP") {
        if !b.trim().is_empty() {
            return b.trim().to_string();
        }
    }
    static BROKER: OnceLock<Result<String, String>> = OnceLock::new();
    match BROKER.get_or_init(start_broker) {
        Ok(b) => b.clone(),
        Err(e) => panic!("test Kafka broker unavailable: {e}"),
    }
}

fn repo_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn start_broker() -> Result<String, String> {
    let started = Instant::now();
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    prune_dead_run_dirs(&base);
    let run_dir = base.join(format!("kafka-{}", std::process::id()));
    std::fs::create_dir_all(&run_dir).map_err(|e| format!("mkdir {}: {e}", run_dir.display()))?;
    let addr = broker_sh("start", &run_dir, &[])?;
    if addr.is_empty() {
        return Err(format!(
            "broker.sh start printed no address (log: {})",
            run_dir.join("start.log").display()
        ));
    }
    eprintln!(
        "[kafka] broker at {addr} started in {:.1} s (run dir {})",
        started.elapsed().as_secs_f64(),
        run_dir.display()
    );
    Ok(addr)
}

/// Removes `kafka-<pid>` run directories of test processes that no longer exist (their
/// brokers were stopped by their watchdogs; only logs remain).
fn prune_dead_run_dirs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("kafka-")) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let broker_alive = std::fs::read_to_string(entry.path().join("broker.pid"))
            .ok()
            .map(|p| Path::new("/proc").join(p.trim()).exists())
            .unwrap_or(false);
        if pid != std::process::id()
            && !Path::new("/proc").join(pid.to_string()).exists()
            && !broker_alive
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A name no other test (in this process or another one sharing the broker) uses:
/// `<prefix>-<pid>-<counter>-<nanos>`. Valid as a topic, group or transactional id.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos:09}", std::process::id())
}

/// Settings every client of the test broker gets.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4");
    c
}

/// Creates `name` with `partitions` partitions (replication factor 1) and the given
/// topic configs, e.g. `&[("cleanup.policy", "compact")]`, then waits until the broker's
/// metadata shows every partition with a leader. Panics on any error.
pub fn create_topic(bootstrap: &str, name: &str, partitions: i32, config: &[(&str, &str)]) {
    let admin = admin_client(bootstrap);
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in config {
        topic = topic.set(k, v);
    }
    let opts = AdminOptions::new()
        .operation_timeout(Some(TIMEOUT))
        .request_timeout(Some(TIMEOUT));
    let results = block_on(admin.create_topics([&topic], &opts))
        .unwrap_or_else(|e| panic!("create_topics({name}) failed: {e}"));
    for r in results {
        if let Err((topic, code)) = r {
            panic!("creating topic {topic} failed: {code:?}");
        }
    }
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let ready = admin
            .inner()
            .fetch_metadata(Some(name), Duration::from_secs(5))
            .ok()
            .and_then(|md| {
                md.topics().iter().find(|t| t.name() == name).map(|t| {
                    t.error().is_none()
                        && t.partitions().len() == partitions as usize
                        && t.partitions()
                            .iter()
                            .all(|p| p.error().is_none() && p.leader() >= 0)
                })
            })
            .unwrap_or(false);
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "topic {name} has no leader after {TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The topic's current configuration as (name, value) pairs (DescribeConfigs).
pub fn topic_config(bootstrap: &str, name: &str) -> Vec<(String, Option<String>)> {
    let admin = admin_client(bootstrap);
    let opts = AdminOptions::new().request_timeout(Some(TIMEOUT));
    let results = block_on(admin.describe_configs([&ResourceSpecifier::Topic(name)], &opts))
        .unwrap_or_else(|e| panic!("describe_configs({name}) failed: {e}"));
    let resource = results
        .into_iter()
        .next()
        .expect("one resource")
        .unwrap_or_else(|code| panic!("describe_configs({name}): {code:?}"));
    resource
        .entries
        .into_iter()
        .map(|e| (e.name, e.value))
        .collect()
}

pub fn admin_client(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    client_config(bootstrap).create().expect("admin client")
}

/// A plain idempotent producer config (acks=all).
pub fn producer_config(bootstrap: &str) -> ClientConfig {
    let mut c = client_config(bootstrap);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    c
}

/// Producer config with `transactional.id` set; transactions time out after 30 s, so a
/// test that dies mid-transaction does not block read_committed readers for long.
pub fn transactional_producer_config(bootstrap: &str, transactional_id: &str) -> ClientConfig {
    let mut c = producer_config(bootstrap);
    c.set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", "30000");
    c
}

/// A transactional producer of any kind (`BaseProducer`, `ThreadedProducer`,
/// `FutureProducer`), created and `init_transactions`-ed, ready for `begin_transaction`:
/// `let p: BaseProducer = transactional_producer(&bs, &unique_name("txn"));`
pub fn transactional_producer<P, C, Part>(bootstrap: &str, transactional_id: &str) -> P
where
    P: FromClientConfig + Producer<C, Part>,
    C: ProducerContext<Part>,
    Part: Partitioner,
{
    let p: P = transactional_producer_config(bootstrap, transactional_id)
        .create()
        .expect("transactional producer");
    p.init_transactions(TIMEOUT)
        .unwrap_or_else(|e| panic!("init_transactions({transactional_id}): {e}"));
    p
}

/// Produces `records` as (key, value) pairs to `topic` with a plain idempotent producer
/// (partition chosen by key), and waits until all are acknowledged.
pub fn produce<K: AsRef<[u8]>, V: AsRef<[u8]>>(bootstrap: &str, topic: &str, records: &[(K, V)]) {
    let producer: BaseProducer = producer_config(bootstrap).create().expect("producer");
    for (k, v) in records {
        let mut record = BaseRecord::to(topic).key(k.as_ref()).payload(v.as_ref());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("producing to {topic}: {e}"),
            }
        }
    }
    producer
        .flush(TIMEOUT)
        .unwrap_or_else(|e| panic!("flushing to {topic}: {e}"));
    assert_eq!(
        producer.in_flight_count(),
        0,
        "undelivered records to {topic}"
    );
}

/// Consumer config: group `group_id`, `isolation.level=read_committed`, start from the
/// earliest offset when the group has none, no auto-commit, short session timeout.
pub fn consumer_config(bootstrap: &str, group_id: &str) -> ClientConfig {
    let mut c = client_config(bootstrap);
    c.set("group.id", group_id)
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("enable.partition.eof", "false");
    c
}

/// A read_committed [`BaseConsumer`] of group `group_id`, subscribed to `topics`.
pub fn read_committed_consumer(bootstrap: &str, group_id: &str, topics: &[&str]) -> BaseConsumer {
    let consumer: BaseConsumer = consumer_config(bootstrap, group_id)
        .create()
        .expect("consumer");
    consumer
        .subscribe(topics)
        .unwrap_or_else(|e| panic!("subscribe {topics:?}: {e}"));
    consumer
}

/// Polls until `n` messages arrived and returns exactly those; panics if fewer arrive
/// within `timeout` (reporting what did arrive and the last client errors).
pub fn collect_messages(consumer: &BaseConsumer, n: usize, timeout: Duration) -> Vec<OwnedMessage> {
    let (msgs, errors) = poll_messages(consumer, n, timeout);
    if msgs.len() < n {
        let got: Vec<String> = msgs.iter().map(describe).collect();
        panic!(
            "expected {n} messages within {timeout:?}, got {}: {got:?}; client errors: {errors:?}",
            msgs.len()
        );
    }
    msgs
}

/// Polls until `n` messages arrived or `timeout` passed; returns what arrived (for
/// asserting that nothing more comes).
pub fn try_collect_messages(
    consumer: &BaseConsumer,
    n: usize,
    timeout: Duration,
) -> Vec<OwnedMessage> {
    poll_messages(consumer, n, timeout).0
}

fn poll_messages(
    consumer: &BaseConsumer,
    n: usize,
    timeout: Duration,
) -> (Vec<OwnedMessage>, Vec<String>) {
    let deadline = Instant::now() + timeout;
    let mut msgs = Vec::with_capacity(n);
    let mut errors: Vec<String> = Vec::new();
    while msgs.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match consumer.poll(left.min(Duration::from_millis(100))) {
            Some(Ok(m)) => msgs.push(m.detach()),
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            // Transient while a just-created topic propagates or the group forms;
            // keep the last few for the failure message.
            Some(Err(e)) => {
                errors.push(e.to_string());
                if errors.len() > 5 {
                    errors.remove(0);
                }
            }
        }
    }
    (msgs, errors)
}

fn is_retriable(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::NotCoordinator
                | C::CoordinatorLoadInProgress
                | C::CoordinatorNotAvailable
                | C::RequestTimedOut
                | C::OperationTimedOut
        )
    )
}

/// The offset committed by `group_id` for `topic`/`partition`, if any.
pub fn committed_offset(
    bootstrap: &str,
    group_id: &str,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let consumer: BaseConsumer = consumer_config(bootstrap, group_id)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    // The group coordinator may be moving or still loading right after a crash or a
    // rebalance (NotCoordinator, CoordinatorLoadInProgress): retry those within TIMEOUT.
    let deadline = Instant::now() + TIMEOUT;
    let committed = loop {
        match consumer.committed_offsets(tpl.clone(), TIMEOUT) {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline && is_retriable(&e) => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("committed offsets of {group_id}: {e}"),
        }
    };
    match committed
        .find_partition(topic, partition)
        .map(|p| p.offset())
    {
        Some(Offset::Offset(o)) => Some(o),
        _ => None,
    }
}

/// Payload as UTF-8 (lossy); "" for none.
pub fn payload_str(m: &OwnedMessage) -> String {
    m.payload()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default()
}

/// Key as UTF-8 (lossy); "" for none.
pub fn key_str(m: &OwnedMessage) -> String {
    m.key()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default()
}

fn describe(m: &OwnedMessage) -> String {
    format!(
        "{}[{}]@{} {}={}",
        m.topic(),
        m.partition(),
        m.offset(),
        key_str(m),
        payload_str(m)
    )
}

/// Drives a future to completion on this thread. rdkafka's admin futures are completed
/// by librdkafka's own threads, so no async runtime is needed (and none is nested when
/// called from inside `#[tokio::test]`).
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

/// A broker of one test's own (the shared [`bootstrap`] broker serves every other test of
/// the binary and must stay up): for tests that stop, crash and restart it, or that need
/// listeners of their own (SASL/TLS). Started by `broker.sh start`, tied to this process by
/// the same watchdog pipe as the shared broker (a new watchdog with each restart), and
/// stopped (data wiped) when dropped.
pub struct DedicatedBroker {
    run_dir: PathBuf,
    /// The PLAINTEXT listener, `127.0.0.1:PORT`; the same across restarts.
    pub bootstrap: String,
    /// `127.0.0.1:@EXTRA_PORT@` when `KAFKA_EXTRA_PROPS` was given (the listener it adds).
    pub extra: Option<String>,
}

impl DedicatedBroker {
    /// Starts a broker in `$CARGO_TARGET_TMPDIR/kafka-<pid>/<name>`; `extra_props`: server
    /// properties appended (`KAFKA_EXTRA_PROPS`). Panics with broker.sh's log if it cannot
    /// start.
    pub fn start(name: &str, extra_props: &str) -> DedicatedBroker {
        let run_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("kafka-{}", std::process::id()))
            .join(name);
        std::fs::create_dir_all(&run_dir).unwrap();
        let props = run_dir.join("extra.properties");
        std::fs::write(&props, extra_props).unwrap();
        let props = props.to_str().unwrap().to_string();
        Self::start_in(&run_dir, &[("KAFKA_EXTRA_PROPS", &props)]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a broker in `run_dir` with `env` added to broker.sh's environment (e.g.
    /// `KAFKA_EXTRA_PROPS`, `SLAWATCH_KAFKA_FORMAT_ARGS`); Err carries broker.sh's log.
    pub fn start_in(run_dir: &Path, env: &[(&str, &str)]) -> Result<DedicatedBroker, String> {
        std::fs::create_dir_all(run_dir)
            .map_err(|e| format!("mkdir {}: {e}", run_dir.display()))?;
        let started = Instant::now();
        let bootstrap = broker_sh("start", run_dir, env)?;
        let extra = std::fs::read_to_string(run_dir.join("extra_port"))
            .ok()
            .map(|p| format!("127.0.0.1:{}", p.trim()));
        eprintln!(
            "[kafka] dedicated broker at {bootstrap} (extra listener {extra:?}) started in {:.1} s (run dir {})",
            started.elapsed().as_secs_f64(),
            run_dir.display()
        );
        Ok(DedicatedBroker {
            run_dir: run_dir.to_path_buf(),
            bootstrap,
            extra,
        })
    }

    /// Graceful restart: SIGTERM, then the same ports and data; returns when the broker
    /// answers metadata requests again.
    pub fn restart(&self) {
        let b = broker_sh("restart", &self.run_dir, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b, self.bootstrap, "the broker came back on another port");
    }

    /// An unclean crash: SIGKILL the broker's JVM (data kept; [`Self::restart`] starts it).
    pub fn kill(&self) {
        broker_sh("crash", &self.run_dir, &[]).unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }
}

impl Drop for DedicatedBroker {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_dir().join("scripts/kafka/broker.sh"))
            .arg("stop")
            .arg(&self.run_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Starts a [`DedicatedBroker`] in `run_dir` with `env` (see [`DedicatedBroker::start_in`]).
pub fn start_dedicated_broker(
    run_dir: &Path,
    env: &[(&str, &str)],
) -> Result<DedicatedBroker, String> {
    DedicatedBroker::start_in(run_dir, env)
}

/// Runs `broker.sh CMD RUN_DIR` with a watchdog pipe (see [`start_broker`]) and `env`;
/// returns the last stdout line (the bootstrap address, for start and restart).
fn broker_sh(cmd: &str, run_dir: &Path, env: &[(&str, &str)]) -> Result<String, String> {
    let script = repo_dir().join("scripts/kafka/broker.sh");
    let log_path = run_dir.join(format!("{cmd}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut command = Command::new("bash");
    command
        .arg(&script)
        .arg(cmd)
        .arg(run_dir)
        .env("SLAWATCH_KAFKA_WATCH_STDIN", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    // The write end of the watchdog's pipe. Take it before `wait()` (which would close
    // it) and never close it: the OS closes it when this process ends, however it ends,
    // and that is the watchdog's signal to stop the broker. std opens it close-on-exec,
    // so processes spawned by tests do not inherit it.
    let watch_pipe = child.stdin.take();
    let mut out = String::new();
    let read = child
        .stdout
        .take()
        .expect("piped stdout")
        .read_to_string(&mut out);
    let status = child
        .wait()
        .map_err(|e| format!("waiting for broker.sh: {e}"))?;
    let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
    if !status.success() || read.is_err() {
        return Err(format!(
            "`broker.sh {cmd} {}` failed ({status}); its log ({}):\n{log_text}",
            run_dir.display(),
            log_path.display()
        ));
    }
    // The new watchdog (start, restart) holds the pipe's read end: never close ours.
    std::mem::forget(watch_pipe);
    Ok(out.lines().last().unwrap_or("").trim().to_string())
}
