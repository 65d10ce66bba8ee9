//! The processing thread: two `BaseConsumer`s (cooperative-sticky, static membership,
//! read_committed, manual offsets) — one for the input topics (group `group_id`), one for
//! the surge repartition topic (group `<group_id>.surge`, so each stage's partitions are
//! balanced across replicas on their own) — and the producers (two transactional ones used
//! alternately with exactly-once, see [`Pipeline`]; one idempotent one otherwise); one SLA
//! engine per assigned input partition and one surge detector per assigned repartition
//! partition.
//!
//! # The loop
//! poll (timeout: the earliest of the next commit, the next engine wake-up of a caught-up
//! partition, 50 ms) → for each record: input hygiene (dead letters), `Engine::ingest`, and
//! for accepted `opened` events a record re-keyed by tenant into the repartition topic →
//! after the batch: every partition's watermark moves to max(event watermark, and while
//! caught up, wall clock − allowed lateness) and what fires is produced; input partitions
//! announce their watermark to every surge partition (at most once a second), and a surge
//! partition evaluates minute boundaries below the minimum announced → every
//! `commit_interval_ms` (10× that while draining a backlog), the commit.
//!
//! # Commit (exactly-once)
//! Changed tickets (`take_changes`) and the partition state go to the state topic (same
//! partition number), surge detectors to the surge-state topic, in-flight deliveries are
//! drained (a commit with records in flight costs ≥ 100 ms), the consumed offsets of both
//! groups are added with `send_offsets_to_transaction`, and the transaction commits — on the
//! committer thread ([`Pipeline`]), while this thread goes on into the next transaction on
//! the other producer, so a timer due meanwhile is produced at once. A commit still in
//! flight when the next one is due is not waited for: processing goes on, and the next
//! commit starts once it is done (commit order). One in flight at a rebalance, an
//! assignment, the graceful stop or an abort is waited for. An abortable error of either
//! transaction aborts both and *resets*: every partition is paused, its state restored from
//! the state topics and its input re-read from the committed offset, so memory never runs
//! ahead of what Kafka holds. A fatal error (e.g. fenced by a newer replica with the same
//! transactional id) stops the processor — unless it follows a broker outage (librdkafka
//! reports some outages as fencing, see [`Trouble`]): then the clients are recreated and
//! every partition is restored, as after an abort. Without exactly-once: outputs are
//! flushed, then the state records, then the offsets are committed (at-least-once; a
//! failed delivery also resets).
//!
//! # Rebalances
//! The consumer contexts' callbacks run inside `poll` on this thread and share [`Processor`]
//! through a mutex that is never held across `poll`. Revoke: commit the open transaction
//! (so the revoked partitions' outputs, state and offsets are committed), then drop their
//! engines. Lost: abort, drop them, and reset the others (the abort discarded their
//! uncommitted work too). Assign: commit what is open, pause the new partitions and restore
//! each on a worker thread; the result is installed after a later poll: seek to the
//! committed offset, resume. Readiness is true only when nothing is restoring.
use crate::codec;
use crate::codec::framing::InputFormat;
use crate::core::engine::{Emitted, Engine, EngineConfig};
use crate::core::model::{Body, SlaOutput};
use crate::core::policy::PolicySet;
use crate::core::ticket::Observation;
use crate::core::time::{Dur, Ts};
use crate::runtime::changelog::{
    self, partition_key, surge_key as surge_state_key, RestoreEnv, RestoreRequest, RestoreResult,
    SurgeRecord, SURGE_RECORD_VERSION,
};
use crate::runtime::commit_policy::{
    commit_plan, partition_lag, CommitPace, CommitPlan, CommitSettings, PartitionLag,
};
use crate::runtime::config::{Config, OutputFormat};
use crate::runtime::control::{Control, TicketQuery};
use crate::runtime::kafka::pipeline::{GroupOffsets, Pipeline};
use crate::runtime::kafka::recovery::{self, Trouble};
use crate::runtime::kafka::txn::{self, ProducerCtx, Recovery, TxnError, TxnOp};
use crate::runtime::kafka::{cached_watermarks, consumer_config, producer_config, AuthFailure};
use crate::runtime::partitions::{Key as PartKey, Partitions, RestorePlan, Source};
use crate::runtime::records::{self, check_input, InputLimits, CONTENT_TYPE};
use crate::runtime::tasks::{InputTask, SurgeTask, WatermarkMark};
use crate::runtime::time_source::Clock;
use crate::runtime::topics::{ensure_topics, TopicError, Topics};
use crate::runtime::view::ticket_view;
use crate::telemetry;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, ConsumerGroupMetadata, Rebalance,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message, OwnedHeaders};
use rdkafka::producer::BaseProducer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest poll; bounds how long a query, a reload or a shutdown request waits.
const IDLE_POLL: Duration = Duration::from_millis(50);
/// Records handled between two watermark / commit checks.
const MAX_BATCH: usize = 4096;
/// Longest poll while a commit is in flight.
const COMMITTING_POLL: Duration = Duration::from_millis(2);
/// Bound on one broker operation of the commit path.
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one partition's restore.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(600);

/// Called with every observation (a stopped clock's counted time) and every output handed to
/// the producer; the demo and the benchmarks use them.
pub type ObservationHook = Arc<dyn Fn(&Observation) + Send + Sync>;
pub type OutputHook = Arc<dyn Fn(&SlaOutput, Ts) + Send + Sync>;

/// Everything the processor needs.
pub struct ProcessorOptions {
    pub cfg: Config,
    pub topics: Topics,
    pub policy: Arc<PolicySet>,
    pub clock: Arc<dyn Clock>,
    /// `--rebuild-from-input`: ignore the state topic; rebuild from the input's first offset
    /// with outputs suppressed up to the committed offset.
    pub rebuild_from_input: bool,
    pub on_observation: Option<ObservationHook>,
    /// Called with each output and the clock's `now` when it was handed to the producer.
    pub on_output: Option<OutputHook>,
    /// Check the state topic's cleanup policy with DescribeConfigs (advisory; off for
    /// librdkafka's mock cluster, which does not answer it).
    pub describe_topic_configs: bool,
}

/// Errors that stop the processor.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error(transparent)]
    Topics(#[from] TopicError),
    #[error("{what}: {source}")]
    Kafka {
        what: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("fatal Kafka error: {0} (a newer replica with the same instance_id may have fenced this one)")]
    Fatal(String),
    #[error("processing thread panicked")]
    Panicked,
    /// Bad credentials or a failed TLS handshake (retrying cannot cure them).
    #[error(
        "Kafka authentication failed: {0} (check security.protocol, sasl.mechanism, \
         sasl.username, the password in SLAWATCH_KAFKA_SASL_PASSWORD and the ssl.* settings)"
    )]
    Authentication(String),
    /// The commit at shutdown failed: what it held is processed again after a restart.
    #[error("the final commit failed: {0}; the records since the previous commit will be processed again after a restart (nothing is lost)")]
    FinalCommit(String),
}

fn kerr(what: &'static str) -> impl FnOnce(KafkaError) -> ProcessorError {
    move |source| ProcessorError::Kafka { what, source }
}

/// A running processor.
pub struct ProcessorHandle {
    pub control: Arc<Control>,
    thread: Option<std::thread::JoinHandle<Result<(), ProcessorError>>>,
}

impl ProcessorHandle {
    /// Waits for the processing thread to end.
    pub fn join(mut self) -> Result<(), ProcessorError> {
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(ProcessorError::Panicked),
            None => Ok(()),
        }
    }
    /// Requests a graceful stop and waits for it.
    pub fn stop(self) -> Result<(), ProcessorError> {
        self.control.request_shutdown();
        self.join()
    }
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for ProcessorHandle {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.control.request_shutdown();
            let _ = t.join();
        }
    }
}

/// Checks the topics, creates the clients (with exactly-once: `init_transactions`, which
/// fences a zombie with the same transactional id), subscribes, and starts the processing
/// thread.
pub fn start(
    opts: ProcessorOptions,
    control: Arc<Control>,
) -> Result<ProcessorHandle, ProcessorError> {
    let cfg = &opts.cfg;
    let report = ensure_topics(cfg, &opts.topics, opts.describe_topic_configs)?;
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    if !report.created.is_empty() {
        tracing::info!(topics = ?report.created, "created topics");
    }
    let exactly_once = cfg.exactly_once;
    let trouble = Arc::new(Trouble::new());
    // Authentication / TLS failures of any client stop the processing loop.
    let auth = AuthFailure::default();
    let (producer, second) = new_producers(cfg, &opts.topics, &trouble, &auth)?;
    let io = Pipeline::new(producer, second, exactly_once, OP_TIMEOUT)
        .map_err(|e| ProcessorError::Fatal(format!("cannot spawn the committer thread: {e}")))?;
    register_policy(&opts.policy);
    let (restore_tx, restore_rx) = mpsc::channel();
    let engine_cfg = engine_config(cfg);
    let processor = Arc::new(Mutex::new(Processor {
        io,
        auth: auth.clone(),
        cfg: cfg.clone(),
        topics: opts.topics.clone(),
        lateness: Dur::from_millis(cfg.allowed_lateness_ms as i64),
        limits: InputLimits {
            max_record_bytes: cfg.max_record_bytes,
            max_clock_skew: Dur::from_secs(cfg.max_clock_skew_secs as i64),
        },
        input_formats: opts
            .topics
            .inputs
            .iter()
            .map(|t| cfg.input_format(t))
            .collect(),
        output_format: cfg.output_format,
        commit_interval: Duration::from_millis(cfg.commit_interval_ms),
        engine_cfg,
        policy: opts.policy.clone(),
        clock: opts.clock.clone(),
        rebuild: opts.rebuild_from_input,
        rebuilt: HashSet::new(),
        on_observation: opts.on_observation.clone(),
        on_output: opts.on_output.clone(),
        control: control.clone(),
        inputs: HashMap::new(),
        surges: HashMap::new(),
        parts: Partitions::new(),
        restore_tx,
        last_commit: Instant::now(),
        out: Emitted::default(),
        surge_out: Vec::new(),
        fatal: None,
        stray: 0,
        input_partitions: report.partitions,
        last_metrics: Instant::now(),
        last_clock_scan: Instant::now() - Duration::from_secs(60),
        capacity_log: (0, None),
        consumers: None,
        trouble: trouble.clone(),
        recoveries: Vec::new(),
        committed_since_live: false,
        committing_inputs: Vec::new(),
        commit_failure: None,
        commit_pace: CommitPace::Live,
        scratch: Vec::with_capacity(1024),
    }));
    let (main, surge) = new_consumers(cfg, &opts.topics, &processor, &trouble, &auth)?;
    let subscribed: Vec<&str> = opts.topics.inputs.iter().map(|s| s.as_str()).collect();
    tracing::info!(
        group = %opts.topics.group_id,
        surge_group = %opts.topics.surge_group_id,
        instance = %cfg.instance_id,
        transactional_ids = ?opts.topics.transactional_ids,
        topics = ?subscribed,
        guarantee = if exactly_once { "exactly-once" } else { "at-least-once" },
        "processor started"
    );
    let query_rx = control.take_query_receiver();
    let thread_control = control.clone();
    let thread = std::thread::Builder::new()
        .name("slawatch-processor".into())
        .spawn(move || {
            thread_control.alive.store(true, Ordering::SeqCst);
            let mut clients = (main, surge);
            let r = loop {
                let r = run_loop(
                    clients.0,
                    clients.1,
                    processor.clone(),
                    &thread_control,
                    &restore_rx,
                    query_rx.as_ref(),
                );
                match r {
                    Err(ProcessorError::Fatal(e)) if lock(&processor).may_recover() => {
                        tracing::warn!(error = %e, "fatal Kafka client error after a broker outage; recreating the clients and restoring every partition from the state topics");
                        match reconnect(&processor, &thread_control) {
                            Ok(Some(c)) => clients = c,
                            Ok(None) => break Ok(()),
                            Err(e) => break Err(e),
                        }
                    }
                    r => break r,
                }
            };
            if let Err(e) = &r {
                thread_control.set_error(e.to_string());
                tracing::error!(error = %e, "processor stopped");
            }
            thread_control.ready.store(false, Ordering::SeqCst);
            telemetry::set_ready(false);
            thread_control.alive.store(false, Ordering::SeqCst);
            r
        })
        .expect("spawn processing thread");
    Ok(ProcessorHandle {
        control,
        thread: Some(thread),
    })
}

/// The engine limits of a config (surge detection runs in the surge stage, not here).
pub fn engine_config(cfg: &Config) -> EngineConfig {
    let e = &cfg.engine;
    EngineConfig {
        allowed_lateness: Dur::from_millis(cfg.allowed_lateness_ms as i64),
        preopen_max_tickets: e.preopen_max_tickets,
        preopen_max_age: Dur::from_secs(e.preopen_max_age_secs as i64),
        closed_retention: Dur::from_secs(e.closed_retention_secs as i64),
        idle_ttl: Dur::from_secs(e.idle_ttl_secs as i64),
        max_open_tickets: if e.max_open_tickets_per_partition == 0 {
            usize::MAX
        } else {
            e.max_open_tickets_per_partition
        },
        surge: false,
    }
}

/// The output producers (see [`txn::new_producer`]): with exactly-once two, for pipelined
/// transactions ([`Pipeline`]), both initialised here so a restart fences both zombies;
/// at-least-once one.
fn new_producers(
    cfg: &Config,
    topics: &Topics,
    trouble: &Arc<Trouble>,
    auth: &AuthFailure,
) -> Result<(OutProducer, Option<OutProducer>), ProcessorError> {
    let new = |which| {
        txn::new_producer(
            producer_settings(cfg, topics, which),
            cfg.exactly_once,
            ProducerCtx::new(auth.clone(), trouble.clone()),
            OP_TIMEOUT,
        )
        .map_err(|(what, source)| ProcessorError::Kafka { what, source })
    };
    let first = new(0)?;
    let second = if cfg.exactly_once {
        Some(new(1)?)
    } else {
        None
    };
    Ok((first, second))
}

/// Output producer `which`'s settings: with exactly-once, the transactional id [`Topics`]
/// derives for it (`shadow.`-prefixed under `--dry-run`).
fn producer_settings(cfg: &Config, topics: &Topics, which: usize) -> rdkafka::ClientConfig {
    producer_config(
        cfg,
        cfg.exactly_once
            .then_some(topics.transactional_ids[which].as_str()),
    )
}

type OutProducer = BaseProducer<ProducerCtx>;

/// Both consumers, subscribed, and handed to the processor.
fn new_consumers(
    cfg: &Config,
    topics: &Topics,
    processor: &Arc<Mutex<Processor>>,
    trouble: &Arc<Trouble>,
    auth: &AuthFailure,
) -> Result<Clients, ProcessorError> {
    let ctx = |role| ConsumerCtx {
        processor: processor.clone(),
        role,
        trouble: trouble.clone(),
        auth: auth.clone(),
    };
    let main: Arc<Consumer> = Arc::new(
        consumer_config(cfg, &topics.group_id)
            .create_with_context(ctx(Role::Input))
            .map_err(kerr("creating the consumer"))?,
    );
    let surge: Arc<Consumer> = Arc::new(
        consumer_config(cfg, &topics.surge_group_id)
            .create_with_context(ctx(Role::Surge))
            .map_err(kerr("creating the surge consumer"))?,
    );
    let subscribed: Vec<&str> = topics.inputs.iter().map(|s| s.as_str()).collect();
    main.subscribe(&subscribed).map_err(kerr("subscribing"))?;
    surge
        .subscribe(&[&topics.repartition])
        .map_err(kerr("subscribing to the repartition topic"))?;
    lock(processor).consumers = Some(Consumers {
        main: main.clone(),
        surge: surge.clone(),
    });
    Ok((main, surge))
}

/// After a fatal client error that followed a broker outage (see [`Trouble`]): new
/// producer (`init_transactions`, retried until the brokers answer) and new consumers, with
/// nothing kept in memory — `run_loop` has aborted what was open and dropped every
/// partition; the new consumers' assignment restores them from the state topics. `None`
/// when a shutdown was requested meanwhile.
fn reconnect(
    processor: &Arc<Mutex<Processor>>,
    control: &Control,
) -> Result<Option<Clients>, ProcessorError> {
    let (cfg, topics, trouble, auth) = {
        let mut c = lock(processor);
        c.parts.clear();
        c.update_ready();
        (
            c.cfg.clone(),
            c.topics.clone(),
            c.trouble.clone(),
            c.auth.clone(),
        )
    };
    let mut delay = Duration::from_millis(500);
    let (producer, second) = loop {
        if control.shutdown_requested() {
            return Ok(None);
        }
        std::thread::sleep(delay);
        match new_producers(&cfg, &topics, &trouble, &auth) {
            Ok(p) => break p,
            Err(e) => {
                tracing::warn!(error = %e, "recreating the producer failed; retrying");
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    };
    {
        let mut c = lock(processor);
        c.io.replace(producer, second);
        c.out = Emitted::default();
        c.surge_out.clear();
        c.fatal = None;
    }
    new_consumers(&cfg, &topics, processor, &trouble, &auth).map(Some)
}

/// The processor state; a panic while it was held already ended the processing thread, so a
/// poisoned lock is taken over rather than panicking again (admin queries, shutdown).
fn lock(processor: &Mutex<Processor>) -> std::sync::MutexGuard<'_, Processor> {
    processor.lock().unwrap_or_else(|p| p.into_inner())
}

fn register_policy(set: &PolicySet) {
    for p in &set.policies {
        telemetry::register_policy_series(&p.id, p.clocks.iter().map(|c| &*c.rule));
        // The first clock of the policy that feeds a metric sets that metric's target.
        let mut seen = Vec::new();
        for c in &p.clocks {
            if let Some(m) = c.metric.filter(|m| !seen.contains(m)) {
                seen.push(m);
                telemetry::register_policy_target(&p.id, m, c.target.as_secs_f64());
            }
        }
    }
}

fn run_loop(
    main: Arc<Consumer>,
    surge: Arc<Consumer>,
    processor: Arc<Mutex<Processor>>,
    control: &Control,
    restore_rx: &mpsc::Receiver<RestoreResult>,
    query_rx: Option<&mpsc::Receiver<TicketQuery>>,
) -> Result<(), ProcessorError> {
    let mut result = loop {
        if control.shutdown_requested() {
            break Ok(());
        }
        let timeout = {
            let mut c = lock(&processor);
            if let Some(set) = control.take_reload() {
                c.reload(set);
            }
            while let Ok(r) = restore_rx.try_recv() {
                c.install(r);
            }
            if let Some(rx) = query_rx {
                while let Ok(q) = rx.try_recv() {
                    let answer = c.query(&q.tenant, &q.ticket_id);
                    let _ = q.reply.send(answer);
                }
            }
            if let Some(e) = c.fatal.take() {
                break Err(e);
            }
            if let Some(why) = c.auth.get() {
                break Err(ProcessorError::Authentication(why));
            }
            c.poll_timeout()
        };
        // The input consumer may block for the timeout; the surge stage's consumer is then
        // drained without blocking (surges work on minute boundaries).
        let t0 = Instant::now();
        let n = poll_batch(&main, &processor, timeout);
        let t1 = Instant::now();
        poll_batch(&surge, &processor, Duration::ZERO);
        lock(&processor).after_batch();
        let t2 = Instant::now();
        control.loop_stats(n, t1 - t0, t2 - t1);
    };
    // Graceful end: commit (or abort) what is open, then close the consumers (their revoke
    // callbacks find nothing left to commit). With static membership the group keeps the
    // partitions for session.timeout.ms, so a restart within it causes no rebalance.
    {
        let mut c = lock(&processor);
        if result.is_ok() {
            c.commit_sync();
            if let Some(e) = c.fatal.take() {
                result = Err(e);
            } else if let Some(e) = c.commit_failure.take() {
                result = Err(ProcessorError::FinalCommit(e));
            }
        } else {
            c.abort_open();
        }
        c.inputs.clear();
        c.surges.clear();
        c.consumers = None;
    }
    drop(main);
    drop(surge);
    result
}

/// Polls up to [`MAX_BATCH`] records (the first poll may wait `timeout`).
fn poll_batch(consumer: &Consumer, processor: &Mutex<Processor>, timeout: Duration) -> usize {
    let mut msg = consumer.poll(timeout);
    let polled = Instant::now();
    let mut n = 0;
    loop {
        match msg {
            None => break,
            Some(Ok(m)) => {
                lock(processor).on_message(&m);
                // From the poll that returned the record to the engine having taken it in.
                telemetry::event_to_decision(polled.elapsed());
                n += 1;
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(KafkaError::MessageConsumptionFatal(code))) => {
                telemetry::error(telemetry::ErrorReason::ConsumerFatal);
                lock(processor).fatal = Some(ProcessorError::Fatal(format!("consumer: {code}")));
                break;
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "consumer error");
                break;
            }
        }
        if n >= MAX_BATCH {
            break;
        }
        msg = consumer.poll(Duration::ZERO);
    }
    n
}

/// Which stage a consumer feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Input topics → SLA engines.
    Input,
    /// The repartition topic → surge detectors (consumer group `<group>.surge`).
    Surge,
}

struct ConsumerCtx {
    processor: Arc<Mutex<Processor>>,
    role: Role,
    auth: AuthFailure,
    trouble: Arc<Trouble>,
}

#[derive(Clone)]
struct Consumers {
    main: Arc<Consumer>,
    surge: Arc<Consumer>,
}

impl ClientContext for ConsumerCtx {
    fn error(&self, error: KafkaError, reason: &str) {
        self.trouble.note(&error);
        if !self.auth.record(&error, reason) {
            let client = match self.role {
                Role::Input => "consumer",
                Role::Surge => "surge consumer",
            };
            crate::runtime::kafka::client_log::client_error(client, &error, reason);
        }
    }
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::runtime::kafka::client_log::client_log(level, fac, message);
    }
}

impl ConsumerContext for ConsumerCtx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let lost = consumer.assignment_lost();
                if lost {
                    self.trouble.mark();
                }
                lock(&self.processor).on_revoke(consumer, self.role, tpl, lost);
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
            Rebalance::Assign(_) => {}
        }
    }
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => lock(&self.processor).on_assign(consumer, tpl),
            Rebalance::Revoke(_) => lock(&self.processor).update_assigned(),
            Rebalance::Error(_) => {}
        }
    }
}

type Consumer = BaseConsumer<ConsumerCtx>;
/// The input stage's consumer and the surge stage's.
type Clients = (Arc<Consumer>, Arc<Consumer>);

struct Processor {
    /// The output producers: one transaction open for sending, the previous one committing.
    io: Pipeline<OutProducer>,
    /// Authentication failures of any client (the producers' contexts record them too).
    auth: AuthFailure,
    cfg: Config,
    topics: Topics,
    lateness: Dur,
    limits: InputLimits,
    /// The framing of each input topic's records, by input index.
    input_formats: Vec<InputFormat>,
    output_format: OutputFormat,
    commit_interval: Duration,
    engine_cfg: EngineConfig,
    policy: Arc<PolicySet>,
    clock: Arc<dyn Clock>,
    rebuild: bool,
    /// Input partitions already rebuilt (a later reset restores them from the state topic).
    rebuilt: HashSet<(usize, i32)>,
    on_observation: Option<ObservationHook>,
    on_output: Option<OutputHook>,
    control: Arc<Control>,
    inputs: HashMap<(usize, i32), InputTask>,
    surges: HashMap<i32, SurgeTask>,
    /// Owned partitions: restoring or live.
    parts: Partitions,
    restore_tx: mpsc::Sender<RestoreResult>,
    last_commit: Instant,
    out: Emitted,
    surge_out: Vec<SlaOutput>,
    fatal: Option<ProcessorError>,
    /// Records of partitions without a task (should not happen: they are paused).
    stray: u64,
    /// Partitions of each input topic (and of the repartition topic).
    input_partitions: usize,
    last_metrics: Instant,
    last_clock_scan: Instant,
    /// Capacity rejections not yet logged, and when the last log line was written (at most
    /// one line per 10 s, however hard a flood of new ticket ids pushes).
    capacity_log: (u64, Option<Instant>),
    /// Both consumers, for the commit path (which needs both groups' metadata) and for
    /// pausing, seeking and resuming; `None` once shutting down.
    consumers: Option<Consumers>,
    trouble: Arc<Trouble>,
    /// When the clients were recreated after a fatal error (see [`Trouble`]).
    recoveries: Vec<Instant>,
    /// A commit succeeded since the last partition went live (see [`commit_plan`]).
    committed_since_live: bool,
    /// The input partitions live when the commit in flight started: its success counts for
    /// `committed_since_live` only if no partition went live meanwhile.
    committing_inputs: Vec<(usize, i32)>,
    /// The mode of the last commit's plan (a drain keeps its interval while the lag lasts).
    commit_pace: CommitPace,
    /// Reused buffer for encoding an output.
    scratch: Vec<u8>,
    /// The last commit's failure (cleared by a successful commit): a graceful stop reports
    /// it instead of claiming everything was committed.
    commit_failure: Option<String>,
}

impl Processor {
    /// Whether a fatal client error is to be recovered from by recreating the clients: it
    /// came soon after trouble reaching the brokers, and not too often.
    fn may_recover(&mut self) -> bool {
        recovery::may_recover(self.trouble.since(), &mut self.recoveries, Instant::now())
    }

    fn input_index(&self, topic: &str) -> Option<usize> {
        self.topics.inputs.iter().position(|t| t == topic)
    }

    fn wall_watermark(&self) -> Option<Ts> {
        self.cfg
            .wall_clock_watermark
            .then(|| self.clock.now().saturating_sub(self.lateness))
    }

    // ---------------------------------------------------------------------------------
    // Records
    // ---------------------------------------------------------------------------------

    fn on_message(&mut self, m: &BorrowedMessage<'_>) {
        if m.topic() == self.topics.repartition {
            self.on_repartition_record(m);
            return;
        }
        self.control
            .records_consumed
            .fetch_add(1, Ordering::Relaxed);
        let Some(idx) = self.input_index(m.topic()) else {
            self.stray += 1;
            return;
        };
        let p = m.partition();
        let offset = m.offset();
        if self
            .inputs
            .get(&(idx, p))
            .is_some_and(|t| t.suppress_below.is_some_and(|s| offset >= s))
        {
            self.finish_rebuild((idx, p));
        }
        let Some(task) = self.inputs.get_mut(&(idx, p)) else {
            self.stray += 1;
            if self.stray.is_power_of_two() {
                tracing::warn!(
                    topic = m.topic(),
                    partition = p,
                    offset,
                    "record of a partition not ready (ignored; it is re-read after its restore)"
                );
            }
            return;
        };
        if let Some(next) = task.next_offset {
            if offset < next {
                return; // already processed (re-delivered after a seek)
            }
            if offset > next && !task.rebuilding() {
                // Gaps are normal (transaction markers, compaction); note them at debug.
                tracing::trace!(partition = p, offset, next, "offset gap");
            }
        }
        task.next_offset = Some(offset + 1);
        let suppressed = task.suppressed_at(offset);
        let content_type = header(m, CONTENT_TYPE);
        let checked = check_input(
            m.key(),
            m.payload(),
            content_type,
            m.timestamp().to_millis(),
            self.input_formats[idx],
            &self.limits,
        );
        let topic = &self.topics.inputs[idx];
        match checked {
            Ok(acc) => {
                telemetry::event_consumed(Some(acc.format).into());
                if acc.unknown_enums > 0 {
                    telemetry::unknown_enum_values(acc.unknown_enums as u64);
                }
                let ev = acc.event;
                if let Body::Opened { .. } = ev.body {
                    // Re-key by tenant for surge detection (rule 10), in the same
                    // transaction. A ticket already open (second `opened`, or a duplicate)
                    // is not counted again.
                    if !suppressed && task.engine.ticket(&ev.tenant, &ev.ticket_id).is_none() {
                        let value = codec::event_to_protobuf(&ev);
                        self.io.produce(
                            &self.topics.repartition,
                            None,
                            ev.tenant.as_bytes(),
                            Some(&value),
                            None,
                        );
                    }
                }
                task.engine.ingest(ev, &mut self.out);
                task.changed = true;
            }
            Err(rej) => {
                telemetry::event_consumed(rej.format.into());
                telemetry::event_rejected(rej.reason);
                if !suppressed {
                    let headers = records::dead_letter_headers(
                        rej.reason,
                        &rej.error,
                        topic,
                        p,
                        Some(offset),
                        content_type,
                    );
                    self.io.produce(
                        &self.topics.dead_letters,
                        None,
                        m.key().unwrap_or(&[]),
                        m.payload(),
                        Some(headers),
                    );
                    self.control
                        .dead_letters_produced
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if !self.out.outputs.is_empty() || !self.out.dead_letters.is_empty() {
            let caught_up = task.caught_up;
            self.emit(idx, p, suppressed, caught_up);
        } else {
            self.forward_observations();
        }
    }

    fn on_repartition_record(&mut self, m: &BorrowedMessage<'_>) {
        let p = m.partition();
        let Some(s) = self.surges.get_mut(&p) else {
            self.stray += 1;
            return;
        };
        let offset = m.offset();
        if s.next_offset.is_some_and(|n| offset < n) {
            return;
        }
        s.next_offset = Some(offset + 1);
        if header(m, WatermarkMark::HEADER).is_some() {
            match WatermarkMark::parse(m.key().unwrap_or(&[]), m.payload().unwrap_or(&[])) {
                Some((topic, source, wm, n)) => {
                    let e = s.sources.entry((topic, source)).or_insert(Ts::MIN);
                    if wm > *e {
                        *e = wm;
                    }
                    s.expected_sources = n as usize;
                }
                None => tracing::warn!(partition = p, offset, "malformed watermark mark skipped"),
            }
            return;
        }
        match codec::decode_protobuf(m.payload().unwrap_or(&[])) {
            Ok(d) => {
                if let Body::Opened {
                    channel, category, ..
                } = d.event.body
                {
                    s.detector.observe_opened(
                        &d.event.tenant,
                        channel,
                        category,
                        d.event.occurred_at,
                    );
                    if d.event.occurred_at > s.max_seen {
                        s.max_seen = d.event.occurred_at;
                    }
                    s.dirty = true;
                }
            }
            Err(e) => {
                tracing::warn!(partition = p, offset, error = %e, "undecodable repartition record skipped")
            }
        }
    }

    /// Produces what an engine emitted (outputs by kind, dead letters, metrics, hooks).
    fn emit(&mut self, idx: usize, p: i32, suppressed: bool, caught_up: bool) {
        let now = self.clock.now();
        let topic_name = self.topics.inputs[idx].clone();
        let mut out = std::mem::take(&mut self.out);
        if !out.outputs.is_empty() || !out.dead_letters.is_empty() {
            if let Some(t) = self.inputs.get_mut(&(idx, p)) {
                t.changed = true;
            }
        }
        if !suppressed {
            for o in &out.outputs {
                self.produce_output(o, now, caught_up);
            }
        }
        for (ev, reason) in out.dead_letters.drain(..) {
            let reason = records::engine_reason(reason);
            telemetry::event_rejected(reason);
            if reason == telemetry::RejectReason::Capacity {
                self.log_capacity(p);
            }
            if suppressed {
                continue;
            }
            let value = codec::event_to_protobuf(&ev);
            let error = format!("rejected by the engine: {}", reason.as_str());
            let headers = records::dead_letter_headers(
                reason,
                &error,
                &topic_name,
                p,
                None,
                Some(records::PROTOBUF.as_bytes()),
            );
            self.io.produce(
                &self.topics.dead_letters,
                None,
                ev.ticket_id.as_bytes(),
                Some(&value),
                Some(headers),
            );
            self.control
                .dead_letters_produced
                .fetch_add(1, Ordering::Relaxed);
        }
        out.outputs.clear();
        self.out = out;
        self.forward_observations();
    }

    fn log_capacity(&mut self, p: i32) {
        let (pending, last) = &mut self.capacity_log;
        *pending += 1;
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            tracing::warn!(
                partition = p,
                max_open_tickets_per_partition = self.engine_cfg.max_open_tickets,
                rejected = *pending,
                "open-ticket capacity reached: new tickets are dead-lettered (reason capacity); open tickets are kept"
            );
            *pending = 0;
            *last = Some(Instant::now());
        }
    }

    fn produce_output(&mut self, o: &SlaOutput, now: Ts, caught_up: bool) {
        self.scratch.clear();
        let ct = records::encode_output_into(o, self.output_format, &mut self.scratch);
        let key = records::output_key(o);
        let headers = records::output_headers(ct, o.body.kind_name());
        let topic = self.topics.for_output(&o.body);
        self.io.produce(
            topic,
            None,
            key.as_bytes(),
            Some(&self.scratch),
            Some(headers),
        );
        self.control
            .outputs_produced
            .fetch_add(1, Ordering::Relaxed);
        telemetry::record_output(o);
        if caught_up {
            let due = o.fired_at.saturating_add(self.lateness);
            telemetry::output_delay(now.since(due).to_std());
        }
        if let Some(h) = &self.on_output {
            h(o, now);
        }
    }

    fn forward_observations(&mut self) {
        for obs in self.out.observations.drain(..) {
            telemetry::record_observation(&obs);
            if let Some(h) = &self.on_observation {
                h(&obs);
            }
        }
        for n in self.out.notices.drain(..) {
            let crate::core::engine::Notice::IdleDropped { ticket, last_event } = n;
            telemetry::idle_tickets_dropped(1);
            tracing::info!(tenant = %ticket.tenant, ticket = %ticket.id, last_event = %last_event, "idle ticket dropped");
        }
    }

    // ---------------------------------------------------------------------------------
    // Time
    // ---------------------------------------------------------------------------------

    fn after_batch(&mut self) {
        let t = Instant::now();
        self.refresh_positions();
        self.advance_time();
        self.control
            .advance_micros
            .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.io.serve();
        self.settle(false);
        // A commit still in flight is not waited for here: timers due meanwhile go into the
        // open transaction at once, and the next commit starts once this one is done
        // (commit order). Only rebalances and the stop wait for it.
        if !self.io.committing() && self.last_commit.elapsed() >= self.effective_commit_interval() {
            self.commit();
        }
        if self.last_metrics.elapsed() >= Duration::from_secs(1) {
            self.publish_metrics();
        }
        self.update_ready();
    }

    /// Caught-up detection: the consumer position (which moves past transaction markers)
    /// against librdkafka's cached high watermark; no network call.
    fn refresh_positions(&mut self) {
        let Some(c) = self.consumers.clone() else {
            return;
        };
        let main_pos = if self.inputs.is_empty() {
            None
        } else {
            c.main.position().ok()
        };
        let surge_pos = if self.surges.is_empty() {
            None
        } else {
            c.surge.position().ok()
        };
        let repartition = self.topics.repartition.clone();
        let pos_of = |topic: &str, p: i32| -> Option<i64> {
            let positions = if topic == repartition {
                &surge_pos
            } else {
                &main_pos
            };
            match positions.as_ref()?.find_partition(topic, p)?.offset() {
                Offset::Offset(o) if o >= 0 => Some(o),
                _ => None,
            }
        };
        let mut rebuilt: Vec<(usize, i32)> = Vec::new();
        for t in self.inputs.values_mut() {
            let topic = &self.topics.inputs[t.topic];
            let pos = pos_of(topic, t.partition).or(t.next_offset);
            if let (Some(s), Some(pos)) = (t.suppress_below, pos.max(t.next_offset)) {
                if pos >= s {
                    rebuilt.push((t.topic, t.partition));
                }
            }
            let l = partition_lag(pos, cached_watermarks(&*c.main, topic, t.partition));
            t.caught_up = l.caught_up;
            t.lag = l.lag;
        }
        for s in self.surges.values_mut() {
            let pos = pos_of(&self.topics.repartition, s.partition).or(s.next_offset);
            let l = partition_lag(
                pos,
                cached_watermarks(&*c.surge, &self.topics.repartition, s.partition),
            );
            s.caught_up = l.caught_up;
            s.lag = l.lag.unwrap_or(0);
        }
        for key in rebuilt {
            self.finish_rebuild(key);
        }
    }

    /// `--rebuild-from-input` reached the committed offset: first advance the engine, still
    /// suppressed, to the watermark the lost replica had reached with the same input (its
    /// event watermark), so what it published is not published again; from here on the
    /// partition is live and its whole rebuilt state is written with the next commit.
    /// (Outputs the lost replica had fired from the wall clock beyond that watermark can be
    /// published a second time: the rebuild is at-least-once in that window.)
    fn finish_rebuild(&mut self, key: (usize, i32)) {
        let Some(t) = self.inputs.get_mut(&key) else {
            return;
        };
        if t.suppress_below.take().is_none() {
            return;
        }
        t.engine.pump(&mut self.out);
        t.changed = true;
        let caught_up = t.caught_up;
        self.emit(key.0, key.1, true, caught_up);
        tracing::info!(topic = %self.topics.inputs[key.0], partition = key.1, "rebuild reached the committed offset; live");
    }

    /// Moves every partition's watermark (rule 5) and produces what fires.
    fn advance_time(&mut self) {
        let wall = self.wall_watermark();
        let keys: Vec<(usize, i32)> = self.inputs.keys().copied().collect();
        for key in keys {
            let Some(t) = self.inputs.get_mut(&key) else {
                continue;
            };
            let wm = t.target_watermark(wall);
            if wm <= t.engine.watermark() && t.engine.next_wakeup().is_none_or(|w| w > wm) {
                continue;
            }
            t.engine.advance_to(wm, &mut self.out);
            let suppressed = t.rebuilding();
            let caught_up = t.caught_up;
            if !self.out.outputs.is_empty()
                || !self.out.dead_letters.is_empty()
                || !self.out.observations.is_empty()
                || !self.out.notices.is_empty()
            {
                self.emit(key.0, key.1, suppressed, caught_up);
            }
        }
        self.announce_watermarks();
        let now = self.clock.now();
        let parts: Vec<i32> = self.surges.keys().copied().collect();
        for p in parts {
            let Some(s) = self.surges.get_mut(&p) else {
                continue;
            };
            let wm = s.target_watermark();
            if wm <= s.watermark {
                continue;
            }
            s.watermark = wm;
            s.detector.advance(wm, false, &mut self.surge_out);
            if self.surge_out.is_empty() {
                continue;
            }
            s.dirty = true;
            let caught_up = s.caught_up;
            let outs = std::mem::take(&mut self.surge_out);
            for o in &outs {
                self.produce_output(o, now, caught_up);
            }
            self.surge_out = outs;
            self.surge_out.clear();
        }
    }

    /// Announces each input partition's watermark to every surge partition when it moved,
    /// at most once a second per input partition (surges work on minute boundaries), and
    /// always in the same transaction as the `opened` records below it.
    fn announce_watermarks(&mut self) {
        let sources = (self.input_partitions * self.topics.inputs.len()) as u32;
        for t in self.inputs.values_mut() {
            let wm = t.engine.watermark();
            if wm <= t.wm_sent || t.rebuilding() {
                continue;
            }
            if t.wm_sent_at
                .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
            {
                continue;
            }
            let topic = &self.topics.inputs[t.topic];
            let key = WatermarkMark::key(topic, t.partition);
            let value = WatermarkMark::value(wm, sources);
            for r in 0..self.input_partitions as i32 {
                let headers = OwnedHeaders::new().insert(rdkafka::message::Header {
                    key: WatermarkMark::HEADER,
                    value: Some("1"),
                });
                self.io.produce(
                    &self.topics.repartition,
                    Some(r),
                    &key,
                    Some(&value),
                    Some(headers),
                );
            }
            t.wm_sent = wm;
            t.wm_sent_at = Some(Instant::now());
        }
    }

    /// The commit interval [`commit_plan`] gives for the input partitions' lag.
    fn effective_commit_interval(&self) -> Duration {
        self.commit_plan().interval
    }

    fn commit_plan(&self) -> CommitPlan {
        let lags: Vec<PartitionLag> = self
            .inputs
            .values()
            .map(|t| PartitionLag {
                lag: t.lag,
                caught_up: t.caught_up,
            })
            .collect();
        commit_plan(
            CommitSettings {
                base: self.commit_interval,
                transaction_timeout: Duration::from_millis(self.cfg.transaction_timeout_ms),
            },
            &lags,
            self.committed_since_live,
            self.commit_pace,
        )
    }

    /// How long the next poll may block.
    fn poll_timeout(&self) -> Duration {
        let mut d = IDLE_POLL;
        if self.io.has_pending() || self.io.is_open() || self.offsets_pending() {
            d = d.min(
                self.effective_commit_interval()
                    .saturating_sub(self.last_commit.elapsed()),
            );
        }
        if self.io.committing() {
            // Its outcome, and the release of records held until its drain, are taken
            // between polls.
            d = d.min(COMMITTING_POLL);
        }
        if self.cfg.wall_clock_watermark {
            for t in self.inputs.values() {
                if !t.caught_up {
                    continue;
                }
                if let Some(w) = t.engine.next_wakeup() {
                    d = d.min(self.clock.real_time_until(w.saturating_add(self.lateness)));
                }
            }
        }
        d
    }

    // ---------------------------------------------------------------------------------
    // Commit
    // ---------------------------------------------------------------------------------

    fn offsets_pending(&self) -> bool {
        self.inputs
            .values()
            .any(|t| !t.rebuilding() && t.next_offset.is_some() && t.next_offset != t.committed)
            || self
                .surges
                .values()
                .any(|s| s.next_offset.is_some() && s.next_offset != s.committed)
    }

    /// Offsets to commit: (the input group's, the surge group's).
    fn offsets(&self) -> (TopicPartitionList, TopicPartitionList) {
        let mut tpl = TopicPartitionList::new();
        let mut surge = TopicPartitionList::new();
        for t in self.inputs.values() {
            if t.rebuilding() {
                continue;
            }
            if let Some(o) = t.next_offset {
                if Some(o) != t.committed {
                    let _ = tpl.add_partition_offset(
                        &self.topics.inputs[t.topic],
                        t.partition,
                        Offset::Offset(o),
                    );
                }
            }
        }
        for s in self.surges.values() {
            if let Some(o) = s.next_offset {
                if Some(o) != s.committed {
                    let _ = surge.add_partition_offset(
                        &self.topics.repartition,
                        s.partition,
                        Offset::Offset(o),
                    );
                }
            }
        }
        (tpl, surge)
    }

    fn mark_committed(&mut self) {
        for t in self.inputs.values_mut() {
            if !t.rebuilding() {
                t.committed = t.next_offset.or(t.committed);
            }
        }
        for s in self.surges.values_mut() {
            s.committed = s.next_offset.or(s.committed);
        }
    }

    /// Sends changed tickets, partition states and surge states to the state topic.
    fn write_state(&mut self) {
        let state_topic = self.topics.state.clone();
        for t in self.inputs.values_mut() {
            if t.rebuilding() {
                continue; // a rebuild writes its state once it reaches the committed offset
            }
            let topic = &self.topics.inputs[t.topic];
            let p = t.partition;
            let records =
                changelog::ticket_records(topic, t.engine.take_changes(), t.stale_keys.take());
            for r in records {
                self.io
                    .produce(&state_topic, Some(p), &r.key, r.value.as_deref(), None);
            }
            if t.changed {
                let ps = t.engine.partition_state();
                self.io.produce(
                    &state_topic,
                    Some(p),
                    &partition_key(topic),
                    Some(&ps),
                    None,
                );
                t.changed = false;
            }
        }
        let key = surge_state_key(&self.topics.repartition);
        let surge_state_topic = self.topics.surge_state.clone();
        for s in self.surges.values_mut() {
            if !s.dirty {
                continue;
            }
            let rec = SurgeRecord {
                version: SURGE_RECORD_VERSION,
                watermark: s.watermark,
                max_seen: s.max_seen,
                state: s.detector.state().clone(),
            };
            match rec.encode() {
                Ok(bytes) => {
                    self.io.produce(
                        &surge_state_topic,
                        Some(s.partition),
                        &key,
                        Some(&bytes),
                        None,
                    );
                    s.dirty = false;
                }
                // Stays dirty: the next commit tries again; the last written state stands.
                Err(e) => {
                    tracing::error!(partition = s.partition, error = %e, "surge state not written")
                }
            }
        }
    }

    /// Commits what is open (outputs, state, offsets): with pipelined transactions the
    /// commit runs on the committer thread while processing goes on into the next
    /// transaction (a commit still in flight is waited for first: commit order); otherwise
    /// here. A failure aborts and resets.
    fn commit(&mut self) {
        let Some(consumers) = self.consumers.clone() else {
            return;
        };
        if !self.settle(true) {
            return; // the previous commit failed: everything was aborted and reset
        }
        self.last_commit = Instant::now();
        let state_dirty = self.inputs.values().any(|t| t.changed && !t.rebuilding())
            || self.surges.values().any(|s| s.dirty);
        if !self.io.has_pending() && !self.io.is_open() && !state_dirty && !self.offsets_pending() {
            return;
        }
        let started = Instant::now();
        let plan = self.commit_plan();
        self.commit_pace = plan.mode;
        telemetry::set_commit_interval(plan.interval);
        tracing::debug!(
            caught_up = self.inputs.values().filter(|t| t.caught_up).count(),
            partitions = self.inputs.len(),
            lag = self.inputs.values().filter_map(|t| t.lag).sum::<u64>(),
            lag_unknown = self.inputs.values().filter(|t| t.lag.is_none()).count(),
            interval_ms = plan.interval.as_millis() as u64,
            mode = plan.mode.as_str(),
            "commit"
        );
        self.committing_inputs = self.inputs.keys().copied().collect();
        if self.io.is_pipelined() {
            self.write_state();
            let groups = match self.group_offsets(&consumers) {
                Ok(g) => g,
                Err(e) => {
                    self.finish_commit(Err(e));
                    return;
                }
            };
            if self.io.start_commit(groups).is_err() {
                // Cannot happen (settled above); a commit out of order must not start.
                self.finish_commit(Err(TxnError::NoGroupMetadata));
                return;
            }
            // Optimistic: a failure of this commit drops every partition's state and
            // restores it, offsets included, from Kafka.
            self.mark_committed();
            return;
        }
        let r = if self.io.exactly_once {
            self.commit_transaction(&consumers)
        } else {
            self.commit_at_least_once(&consumers)
        };
        if r.is_ok() {
            self.mark_committed();
        }
        self.finish_commit(r.map(|()| started.elapsed()));
    }

    /// Commits what is open and waits for it (rebalances, the graceful stop).
    fn commit_sync(&mut self) {
        self.commit();
        self.settle(true);
    }

    /// Takes the outcome of the commit in flight, waiting for it with `block`. `false` when
    /// it failed (everything was aborted and reset, or the processor is stopping).
    fn settle(&mut self, block: bool) -> bool {
        let outcome = if block {
            self.io.wait_commit()
        } else {
            self.io.poll_commit()
        };
        match outcome {
            Some(r) => self.finish_commit(r),
            None => true,
        }
    }

    /// Accounts for a finished commit; on failure aborts the open transaction and resets
    /// (or stops on a fatal error). `false` on failure.
    fn finish_commit(&mut self, r: Result<Duration, TxnError>) -> bool {
        match r {
            Ok(took) => {
                self.commit_failure = None;
                let inputs = std::mem::take(&mut self.committing_inputs);
                if self.inputs.keys().all(|k| inputs.contains(k)) {
                    self.committed_since_live = true;
                }
                self.control
                    .transactions_committed
                    .fetch_add(1, Ordering::Relaxed);
                self.control.record_commit(took);
                telemetry::transaction(telemetry::TxnOutcome::Committed, Some(took));
                true
            }
            Err(e) if e.recovery() == Recovery::Fatal => {
                telemetry::error(e.reason());
                self.fatal = Some(ProcessorError::Fatal(e.to_string()));
                false
            }
            Err(e) => {
                telemetry::error(e.reason());
                tracing::warn!(error = %e, "commit failed; aborting and restoring every partition from the state topic");
                self.commit_failure = Some(e.to_string());
                self.abort_open();
                self.reset_all();
                false
            }
        }
    }

    /// Both groups' offsets to commit, with their group metadata (empty lists left out).
    fn group_offsets(
        &self,
        c: &Consumers,
    ) -> Result<Vec<GroupOffsets<ConsumerGroupMetadata>>, TxnError> {
        let (offsets, surge_offsets) = self.offsets();
        let mut groups = Vec::with_capacity(2);
        for (tpl, consumer) in [(offsets, &c.main), (surge_offsets, &c.surge)] {
            if tpl.count() > 0 {
                let gm = consumer.group_metadata().ok_or(TxnError::NoGroupMetadata)?;
                groups.push((tpl, gm));
            }
        }
        Ok(groups)
    }

    /// An exactly-once commit on this thread (without a second producer).
    fn commit_transaction(&mut self, c: &Consumers) -> Result<(), TxnError> {
        self.write_state();
        let groups = self.group_offsets(c)?;
        let groups: Vec<(&TopicPartitionList, &ConsumerGroupMetadata)> =
            groups.iter().map(|(t, g)| (t, g)).collect();
        self.io.commit_now(&groups)
    }

    fn commit_at_least_once(&mut self, c: &Consumers) -> Result<(), TxnError> {
        // Outputs first: state that says "fired" must never be durable before the output.
        self.io.commit_now(&[])?;
        self.write_state();
        self.io.commit_now(&[])?;
        let (offsets, surge_offsets) = self.offsets();
        for (tpl, consumer) in [(&offsets, &c.main), (&surge_offsets, &c.surge)] {
            if tpl.count() > 0 {
                consumer
                    .commit(tpl, CommitMode::Sync)
                    .map_err(TxnError::op(TxnOp::CommitOffsets))?;
            }
        }
        Ok(())
    }

    /// Aborts the open transaction (exactly-once) and forgets pending failures (a commit
    /// in flight is waited for first).
    fn abort_open(&mut self) {
        match self.io.abort() {
            Ok(true) => telemetry::transaction(telemetry::TxnOutcome::Aborted, None),
            Ok(false) => {}
            Err(e) => {
                telemetry::error(e.reason());
                if e.recovery() == Recovery::Fatal {
                    self.fatal = Some(ProcessorError::Fatal(e.to_string()));
                }
                tracing::error!(error = %e, "abort failed");
            }
        }
    }

    // ---------------------------------------------------------------------------------
    // Assignment and restore
    // ---------------------------------------------------------------------------------

    /// The (source, partition) keys of a partition list (unknown topics skipped).
    fn keys_of(&self, tpl: &TopicPartitionList) -> Vec<PartKey> {
        tpl.elements()
            .iter()
            .filter_map(|e| {
                let source = if e.topic() == self.topics.repartition {
                    Source::Surge
                } else {
                    Source::Input(self.input_index(e.topic())?)
                };
                Some((source, e.partition()))
            })
            .collect()
    }

    fn on_assign(&mut self, consumer: &Consumer, tpl: &TopicPartitionList) {
        telemetry::rebalance(telemetry::RebalanceKind::Assign);
        let keys = self.keys_of(tpl);
        let plans = self.parts.assign(keys);
        if plans.is_empty() {
            self.update_ready();
            return;
        }
        // Commit first, and wait for it: an open transaction of ours writing to a state
        // partition would hold the restore reader at its last stable offset.
        self.commit_sync();
        if let Err(e) = consumer.pause(&self.partition_list(&plans, consumer.context().role)) {
            tracing::error!(error = %e, "pausing newly assigned partitions failed");
        }
        tracing::info!(partitions = tpl.count(), "assigned; restoring state");
        for plan in plans {
            self.request_restore(plan, Duration::ZERO);
        }
        self.update_assigned();
    }

    /// The partitions of `plans` that `role`'s consumer reads.
    fn partition_list(&self, plans: &[RestorePlan], role: Role) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for plan in plans {
            match role {
                Role::Input => {
                    for &i in &plan.inputs {
                        tpl.add_partition(&self.topics.inputs[i], plan.partition);
                    }
                }
                Role::Surge if plan.surge => {
                    tpl.add_partition(&self.topics.repartition, plan.partition);
                }
                Role::Surge => {}
            }
        }
        tpl
    }

    fn on_revoke(
        &mut self,
        _consumer: &Consumer,
        role: Role,
        tpl: &TopicPartitionList,
        lost: bool,
    ) {
        telemetry::rebalance(if lost {
            telemetry::RebalanceKind::Lost
        } else {
            telemetry::RebalanceKind::Revoke
        });
        let keys = self.keys_of(tpl);
        let (dropped, plans) = if lost {
            // Our offsets can no longer be committed for these; the abort discards the
            // uncommitted work of every partition, so the others are restored too. A commit
            // in flight finishes first (if it fails, everything is reset anyway).
            self.settle(true);
            let aborted = self.io.is_open() || self.io.has_pending();
            if aborted {
                self.abort_open();
            }
            self.parts.lost(keys, aborted)
        } else {
            self.commit_sync();
            (self.parts.revoke(keys), Vec::new())
        };
        for (source, p) in dropped {
            match source {
                Source::Surge => {
                    self.surges.remove(&p);
                }
                Source::Input(i) => {
                    self.inputs.remove(&(i, p));
                    telemetry::partition_revoked(p);
                }
            }
        }
        tracing::info!(partitions = tpl.count(), lost, stage = ?role, "revoked");
        self.restore_again(plans);
        self.update_assigned();
        self.update_ready();
    }

    /// Drops every partition's in-memory state and restores it from the state topic (after
    /// an abort: memory ran ahead of what Kafka holds).
    fn reset_all(&mut self) {
        let plans = self.parts.reset();
        self.restore_again(plans);
        self.update_ready();
    }

    /// Drops the tasks of live partitions going back to restoring, pauses them and
    /// requests their restores.
    fn restore_again(&mut self, plans: Vec<RestorePlan>) {
        if plans.is_empty() {
            return;
        }
        for plan in &plans {
            for &i in &plan.inputs {
                self.inputs.remove(&(i, plan.partition));
            }
            if plan.surge {
                self.surges.remove(&plan.partition);
            }
        }
        let Some(c) = self.consumers.clone() else {
            return;
        };
        for (role, consumer) in [(Role::Input, &c.main), (Role::Surge, &c.surge)] {
            let t = self.partition_list(&plans, role);
            if t.count() > 0 {
                if let Err(e) = consumer.pause(&t) {
                    tracing::error!(error = %e, "pausing partitions for a reset failed");
                }
            }
        }
        for plan in plans {
            self.request_restore(plan, Duration::ZERO);
        }
    }

    /// Starts a restore thread for `plan` (after `delay`: a retry).
    fn request_restore(&mut self, plan: RestorePlan, delay: Duration) {
        let p = plan.partition;
        let rebuild = self.rebuild && plan.inputs.iter().any(|&i| !self.rebuilt.contains(&(i, p)));
        let req = RestoreRequest {
            partition: p,
            inputs: plan
                .inputs
                .iter()
                .map(|&i| self.topics.inputs[i].clone())
                .collect(),
            surge: plan.surge,
            rebuild,
            epoch: plan.epoch,
        };
        let env = RestoreEnv {
            cfg: self.cfg.clone(),
            group_id: self.topics.group_id.clone(),
            surge_group_id: self.topics.surge_group_id.clone(),
            state_topic: self.topics.state.clone(),
            repartition_topic: self.topics.repartition.clone(),
            surge_state_topic: self.topics.surge_state.clone(),
            policy: self.policy.clone(),
            engine_cfg: self.engine_cfg.clone(),
            timeout: RESTORE_TIMEOUT,
        };
        let tx = self.restore_tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("slawatch-restore-{p}"))
            .spawn(move || {
                // The retry delay is slept here, not on the processing thread.
                std::thread::sleep(delay);
                let r = changelog::restore(&env, &req);
                let _ = tx.send(r);
            });
        if let Err(e) = spawned {
            self.fatal = Some(ProcessorError::Fatal(format!(
                "cannot spawn a restore thread: {e}"
            )));
        }
        self.update_ready();
    }

    /// Installs a finished restore: engines in, seek to the committed offsets, resume.
    fn install(&mut self, r: RestoreResult) {
        let Some(c) = self.consumers.clone() else {
            return;
        };
        let p = r.partition;
        let (restored, surge) = match r.outcome {
            Ok(x) => x,
            Err(e) => {
                telemetry::error(telemetry::ErrorReason::Restore);
                if let Some(plan) = self.parts.restore_failed(p, r.epoch) {
                    tracing::error!(partition = p, error = %e, "restore failed; retrying");
                    self.request_restore(plan, Duration::from_millis(500));
                }
                return;
            }
        };
        let mut tickets = 0u64;
        let mut resume = TopicPartitionList::new();
        let mut resume_surge = TopicPartitionList::new();
        for ri in restored {
            let Some(i) = self.input_index(&ri.topic) else {
                continue;
            };
            if !self.parts.restored((Source::Input(i), p), r.epoch) {
                continue; // revoked or superseded meanwhile
            }
            let rebuild = self.rebuild && !self.rebuilt.contains(&(i, p));
            let mut engine: Engine = ri.engine;
            engine.track_changes(true);
            // Records of a pre-rule-11 key move to their current key at the next write.
            for k in &ri.rewrite {
                engine.touch(k);
            }
            let mut task = InputTask::new(i, p, engine, ri.committed);
            if !ri.rewrite.is_empty() {
                tracing::info!(
                    partition = p,
                    tickets = ri.rewrite.len(),
                    "state written before tickets were keyed by tenant: moving to tenant keys"
                );
                task.stale_keys = Some(ri.stale_keys.iter().cloned().collect());
            }
            let start = if rebuild {
                self.rebuilt.insert((i, p));
                task.next_offset = None;
                // Nothing committed: nothing was published, nothing to suppress.
                task.suppress_below = ri.committed.filter(|&c| c > 0);
                task.stale_keys = Some(ri.stale_keys.into_iter().collect());
                // Every rebuilt ticket is written when the rebuild goes live.
                task.changed = true;
                Offset::Beginning
            } else {
                ri.committed
                    .map(Offset::Offset)
                    .unwrap_or(Offset::Beginning)
            };
            tickets += ri.tickets as u64;
            task.stats_seen = task.engine.stats().clone();
            if let Err(e) = c.main.seek(&ri.topic, p, start, Duration::from_secs(10)) {
                tracing::warn!(topic = %ri.topic, partition = p, error = %e, "seek after restore failed; resuming from the fetch position");
            }
            resume.add_partition(&ri.topic, p);
            self.inputs.insert((i, p), task);
            self.committed_since_live = false;
        }
        if let Some(rs) = surge {
            if self.parts.restored((Source::Surge, p), r.epoch) {
                let detector = changelog::surge_detector(&self.policy, rs.record.as_ref());
                let (watermark, max_seen) = rs
                    .record
                    .as_ref()
                    .map(|r| (r.watermark, r.max_seen))
                    .unwrap_or((Ts::MIN, Ts::MIN));
                let start = rs
                    .committed
                    .map(Offset::Offset)
                    .unwrap_or(Offset::Beginning);
                if let Err(e) =
                    c.surge
                        .seek(&self.topics.repartition, p, start, Duration::from_secs(10))
                {
                    tracing::warn!(partition = p, error = %e, "seek of the repartition topic failed");
                }
                resume_surge.add_partition(&self.topics.repartition, p);
                self.surges.insert(
                    p,
                    SurgeTask {
                        partition: p,
                        detector,
                        max_seen,
                        watermark,
                        sources: HashMap::new(),
                        expected_sources: 0,
                        next_offset: rs.committed,
                        committed: rs.committed,
                        caught_up: false,
                        lag: 0,
                        dirty: false,
                    },
                );
            }
        }
        if resume.count() + resume_surge.count() > 0 {
            for (t, consumer) in [(&resume, &c.main), (&resume_surge, &c.surge)] {
                if t.count() > 0 {
                    if let Err(e) = consumer.resume(t) {
                        tracing::error!(partition = p, error = %e, "resuming a restored partition failed");
                    }
                }
            }
            telemetry::restore_finished(r.elapsed, r.bytes, tickets);
            self.control.restores.fetch_add(1, Ordering::Relaxed);
            self.control
                .restore_micros
                .fetch_add(r.elapsed.as_micros() as u64, Ordering::Relaxed);
            self.control
                .restored_tickets
                .fetch_add(tickets, Ordering::Relaxed);
            tracing::info!(
                partition = p,
                tickets,
                records = r.records,
                bytes = r.bytes,
                ms = r.elapsed.as_millis() as u64,
                "restored"
            );
        }
        self.update_ready();
    }

    fn update_assigned(&self) {
        let Some(c) = &self.consumers else { return };
        let count = |consumer: &Consumer| consumer.assignment().map(|a| a.count()).unwrap_or(0);
        let (n, surge) = (count(&c.main), count(&c.surge));
        self.control.assigned_partitions.store(n, Ordering::Relaxed);
        self.control
            .assigned_surge_partitions
            .store(surge, Ordering::Relaxed);
        telemetry::set_assigned_partitions(n as u64);
    }

    fn update_ready(&self) {
        let restoring = self.parts.restoring_partitions();
        self.control
            .restoring_partitions
            .store(restoring, Ordering::Relaxed);
        telemetry::set_restoring_partitions(restoring as u64);
        let ready = self.parts.ready() && self.fatal.is_none();
        if self.control.ready.swap(ready, Ordering::SeqCst) != ready {
            telemetry::set_ready(ready);
            tracing::info!(ready, "readiness changed");
        }
    }

    // ---------------------------------------------------------------------------------
    // Admin, reload, metrics
    // ---------------------------------------------------------------------------------

    fn query(&self, tenant: &str, ticket_id: &str) -> Option<serde_json::Value> {
        self.inputs.values().find_map(|t| {
            ticket_view(
                &t.engine,
                &self.topics.inputs[t.topic],
                t.partition,
                tenant,
                ticket_id,
            )
        })
    }

    fn reload(&mut self, set: Arc<PolicySet>) {
        for t in self.inputs.values_mut() {
            t.engine.set_policy(set.clone());
        }
        for s in self.surges.values_mut() {
            s.detector = crate::core::surge::SurgeDetector::from_state(
                set.surge.clone(),
                s.detector.state().clone(),
            );
        }
        register_policy(&set);
        tracing::info!(
            version = format!("{:016x}", set.version),
            "policy reloaded; tickets opened from now on use it"
        );
        self.policy = set;
    }

    fn publish_metrics(&mut self) {
        self.last_metrics = Instant::now();
        let now = self.clock.now();
        let scan_clocks = self.last_clock_scan.elapsed() >= Duration::from_secs(10);
        if scan_clocks {
            self.last_clock_scan = Instant::now();
        }
        for t in self.inputs.values_mut() {
            let p = t.partition;
            telemetry::set_open_tickets(p, t.engine.open_tickets() as u64);
            telemetry::set_preopen_buffered(p, t.engine.preopen_tickets() as u64);
            if t.engine.watermark() != Ts::MIN {
                telemetry::set_watermark_delay(p, now.since(t.engine.watermark()).as_secs_f64());
            }
            telemetry::set_consumer_lag(p, t.lag.unwrap_or(0));
            if scan_clocks {
                telemetry::set_running_clocks(p, t.engine.running_clocks() as u64);
            }
            let s = t.engine.stats().clone();
            let d = |a: u64, b: u64| a.saturating_sub(b);
            for _ in 0..d(s.duplicates, t.stats_seen.duplicates) {
                telemetry::event_duplicate();
            }
            for _ in 0..d(s.late, t.stats_seen.late).min(1_000_000) {
                telemetry::event_late();
            }
            for _ in 0..d(s.second_opened, t.stats_seen.second_opened) {
                telemetry::second_opened_ignored();
            }
            t.stats_seen = s;
        }
        let (mut by_channel, mut by_category) = (0, 0);
        for s in self.surges.values() {
            let (ch, cat) = s.detector.active_by_dimension();
            by_channel += ch;
            by_category += cat;
        }
        telemetry::set_surges_active(telemetry::SurgeDimension::Channel, by_channel as u64);
        telemetry::set_surges_active(telemetry::SurgeDimension::Category, by_category as u64);
    }
}

fn header<'a>(m: &'a BorrowedMessage<'_>, name: &str) -> Option<&'a [u8]> {
    let h = m.headers()?;
    h.iter()
        .find(|h| h.key.eq_ignore_ascii_case(name))
        .and_then(|h| h.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(exactly_once: bool) -> Config {
        let text = format!(
            "brokers = \"b:9092\"\ngroup_id = \"g\"\ninstance_id = \"i1\"\nexactly_once = {exactly_once}"
        );
        Config::from_sources(&text, "test.toml", Vec::new()).unwrap()
    }

    #[test]
    fn the_producer_uses_the_dry_run_prefixed_transactional_id() {
        let cfg = config(true);
        let id = |topics: &Topics, which| {
            producer_settings(&cfg, topics, which)
                .get("transactional.id")
                .map(str::to_string)
        };
        let (live, shadow) = (Topics::new(&cfg, false), Topics::new(&cfg, true));
        assert_eq!(id(&live, 0).as_deref(), Some("g-i1"));
        assert_eq!(id(&live, 1).as_deref(), Some("g-i1:1"));
        assert_eq!(id(&shadow, 0).as_deref(), Some("shadow.g-i1"));
        assert_eq!(id(&shadow, 1).as_deref(), Some("shadow.g-i1:1"));
        let alo = config(false);
        for which in [0, 1] {
            let settings = producer_settings(&alo, &Topics::new(&alo, true), which);
            assert_eq!(settings.get("transactional.id"), None);
        }
    }
}
