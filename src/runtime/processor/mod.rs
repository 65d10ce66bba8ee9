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
//! flight when the next is due is not waited for: processing goes on, and the next commit
//! starts once it is done (commit order). One in flight at a rebalance, an assignment, the
//! graceful stop or an abort is waited for; a commit, retries included, is bounded by one
//! operation timeout (then the committer aborts it). An abortable error of either
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
//!
//! # Layout
//! This file: the clients, the loop and the state ([`Processor`]); the consumer groups and
//! their rebalance callbacks in `group`; `Processor`'s work by phase in `ingest` (records
//! in, outputs out, through the stages of [`crate::runtime::stage`] into the pipeline's
//! outbox, which is handed to the producer at the end of each batch), `timekeeping` (after
//! each batch: positions, watermarks, timers), `commit`, `assignment` (assign, revoke,
//! lost, restore) and `upkeep` (admin queries, reloads, metrics).
use crate::codec::framing::InputFormat;
use crate::core::engine::{Emitted, Engine, EngineConfig};
use crate::core::model::SlaOutput;
use crate::core::policy::PolicySet;
use crate::core::ticket::Observation;
use crate::core::time::{Dur, Ts};
use crate::runtime::changelog::{
    self, partition_key, surge_key as surge_state_key, HeldInbox, HeldReporter, RestoreEnv,
    RestoreError, RestoreRequest, RestoreResult, RestoreSlots, SurgeRecord, WantedRestores,
    SURGE_RECORD_VERSION,
};
use crate::runtime::commit_policy::{
    commit_plan, partition_lag, CommitPace, CommitPlan, CommitSettings, PartitionLag,
};
use crate::runtime::config::{Config, OutputFormat};
use crate::runtime::control::{Control, TicketQuery};
use crate::runtime::heartbeat::Heartbeat;
use crate::runtime::kafka::consume::{ConsumerQueue, Polled};
use crate::runtime::kafka::pipeline::{GroupOffsets, Pipeline};
use crate::runtime::kafka::recovery::{self, Trouble};
use crate::runtime::kafka::txn::{self, OutputProducer, ProducerCtx, Recovery, TxnError, TxnOp};
use crate::runtime::kafka::{
    cached_positions, cached_watermarks, consumer_config, producer_config, AuthFailure,
};
use crate::runtime::partitions::{Key as PartKey, Partitions, RestorePlan, Source};
use crate::runtime::records::{self, InputLimits};
use crate::runtime::stage::{self, Routes};
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
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rustc_hash::FxHashMap;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

mod assignment;
mod commit;
mod group;
mod ingest;
mod timekeeping;
mod upkeep;

use group::{new_consumers, Clients, Consumer, Consumers, Role};

/// Longest poll; bounds how long a query, a reload or a shutdown request waits.
const IDLE_POLL: Duration = Duration::from_millis(50);
/// Records handled between two watermark / commit checks.
const MAX_BATCH: usize = 4096;
/// Records the outbox holds before a batch hands them to the producer (they are handed over
/// at the end of every batch anyway).
const OUTBOX_RECORDS: usize = 1024;
/// Longest poll while a commit is in flight.
const COMMITTING_POLL: Duration = Duration::from_millis(2);
/// Bound on one broker operation of the commit path.
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one partition's restore.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(600);

/// Called with every observation (a stopped clock's counted time) and every output written
/// for the producer; the demo and the benchmarks use them.
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
    /// Called with each output and the clock's `now` when it was written to the outbox (the
    /// producer has it by the end of the same batch).
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
    /// The operating system refused a thread (e.g. a process or memory limit).
    #[error("cannot start the processing thread: {0}")]
    Spawn(#[source] std::io::Error),
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

type ThreadResult = std::thread::JoinHandle<Result<(), ProcessorError>>;

/// A running processor: its processing threads.
pub struct ProcessorHandle {
    pub control: Arc<Control>,
    threads: Vec<ThreadResult>,
}

impl ProcessorHandle {
    /// Waits for every processing thread to end; the first failure is the result (a
    /// failing thread asks the others to stop).
    pub fn join(mut self) -> Result<(), ProcessorError> {
        let mut result = Ok(());
        for t in std::mem::take(&mut self.threads) {
            let r = t.join().unwrap_or(Err(ProcessorError::Panicked));
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
    /// Requests a graceful stop and waits for it.
    pub fn stop(self) -> Result<(), ProcessorError> {
        self.control.request_shutdown();
        self.join()
    }
    /// Every processing thread has ended.
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }
}

impl Drop for ProcessorHandle {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.control.request_shutdown();
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }
}

/// Checks the topics, then starts `[runtime] threads` processing threads: each creates its
/// clients (with exactly-once: `init_transactions`, which fences a zombie with the same
/// transactional id) and subscribes as a group member of its own.
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
    register_policy(&opts.policy);
    let queries = control.start_threads(cfg.runtime.threads);
    let mut handle = ProcessorHandle {
        control: control.clone(),
        threads: Vec::with_capacity(queries.len()),
    };
    let slots = RestoreSlots::new(cfg.runtime.parallel_restores());
    let (held_reporter, mut held_inboxes) = HeldReporter::new(queries.len());
    for (k, query_rx) in queries.into_iter().enumerate() {
        // On an error the handle's drop stops the threads already started.
        let thread = start_thread(
            k,
            &opts,
            report.partitions,
            control.clone(),
            slots.clone(),
            HeldChannels {
                inbox: held_inboxes.remove(0),
                reporter: held_reporter.clone(),
            },
            query_rx,
        )?;
        handle.threads.push(thread);
    }
    Ok(handle)
}

/// A thread's inbox of what the restores found held, and the reporter its restores use.
struct HeldChannels {
    inbox: Arc<HeldInbox>,
    reporter: Arc<HeldReporter>,
}

/// Starts processing thread `k` with its own clients, as group member
/// [`Config::for_thread`].
fn start_thread(
    k: usize,
    opts: &ProcessorOptions,
    input_partitions: usize,
    control: Arc<Control>,
    restore_slots: Arc<RestoreSlots>,
    held: HeldChannels,
    query_rx: mpsc::Receiver<TicketQuery>,
) -> Result<ThreadResult, ProcessorError> {
    let cfg = &opts.cfg.for_thread(k);
    let topics = opts.topics.for_thread(k);
    let exactly_once = cfg.exactly_once;
    let trouble = Arc::new(Trouble::new());
    // Authentication / TLS failures of any client stop the processing loop.
    let auth = AuthFailure::default();
    let producers_started = Instant::now();
    let (producer, second) = new_producers(cfg, &topics, &trouble, &auth)?;
    let producers_ms = producers_started.elapsed().as_millis() as u64;
    let mut io = Pipeline::new(producer, second, exactly_once, OP_TIMEOUT)
        .map_err(|e| ProcessorError::Fatal(format!("cannot spawn the committer thread: {e}")))?;
    let routes = Routes::new(&topics, io.outbox());
    let (restore_tx, restore_rx) = mpsc::channel();
    let engine_cfg = engine_config(cfg);
    let processor = Arc::new(Mutex::new(Processor {
        thread: k,
        reload_seen: 0,
        reported: Reported::default(),
        meters: telemetry::HotMeters::new(),
        io,
        routes,
        auth: auth.clone(),
        cfg: cfg.clone(),
        topics: topics.clone(),
        lateness: Dur::from_millis(cfg.allowed_lateness_ms as i64),
        limits: InputLimits {
            max_record_bytes: cfg.max_record_bytes,
            max_clock_skew: Dur::from_secs(cfg.max_clock_skew_secs as i64),
        },
        input_formats: topics.inputs.iter().map(|t| cfg.input_format(t)).collect(),
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
        inputs: FxHashMap::default(),
        surges: FxHashMap::default(),
        parts: Partitions::new(),
        restore_tx,
        held: held.inbox,
        held_reporter: held.reporter,
        last_release: None,
        wanted_restores: Arc::default(),
        restore_slots,
        last_commit: Instant::now(),
        out: Emitted::default(),
        surge_out: Vec::new(),
        fatal: None,
        stray: 0,
        input_partitions,
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
    }));
    let (main, surge) = new_consumers(cfg, &topics, &processor, &trouble, &auth)?;
    let subscribed: Vec<&str> = topics.inputs.iter().map(|s| s.as_str()).collect();
    tracing::info!(
        thread = k,
        group = %topics.group_id,
        surge_group = %topics.surge_group_id,
        instance = %cfg.instance_id,
        transactional_ids = ?topics.transactional_ids,
        topics = ?subscribed,
        guarantee = if exactly_once { "exactly-once" } else { "at-least-once" },
        producers_ms,
        "processor started"
    );
    let thread_control = control;
    let heartbeat = thread_control.heartbeats.register(k);
    std::thread::Builder::new()
        .name(format!("slawatch-processor-{k}"))
        .spawn(move || {
            thread_control.thread_alive(true);
            let mut clients = (main, surge);
            let r = loop {
                let r = run_loop(
                    clients.0,
                    clients.1,
                    processor.clone(),
                    &thread_control,
                    &heartbeat,
                    &restore_rx,
                    &query_rx,
                );
                match r {
                    Err(ProcessorError::Fatal(e)) if lock(&processor).may_recover() => {
                        tracing::warn!(error = %e, "fatal Kafka client error after a broker outage; recreating the clients and restoring every partition from the state topics");
                        match reconnect(&processor, &thread_control, &heartbeat) {
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
                tracing::error!(thread = k, error = %e, "processor stopped");
                // The other threads stop too: the process reports the failure.
                thread_control.request_shutdown();
            }
            lock(&processor).leave();
            thread_control.thread_alive(false);
            r
        })
        .map_err(ProcessorError::Spawn)
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
            &topics.state,
        )
        .map_err(|(what, source)| ProcessorError::Kafka { what, source })
    };
    // Each `init_transactions` is a round of broker requests (coordinator lookup, producer
    // id, fencing the previous epoch): the second runs beside the first, not after it.
    let (first, second) = std::thread::scope(|s| {
        let second = cfg.exactly_once.then(|| {
            std::thread::Builder::new()
                .name("slawatch-init".into())
                .spawn_scoped(s, || new(1))
        });
        let first = new(0);
        let second = match second {
            None => Ok(None),
            Some(Err(e)) => Err(ProcessorError::Fatal(format!(
                "cannot spawn a thread to create the second producer: {e}"
            ))),
            Some(Ok(h)) => match h.join() {
                Ok(r) => r.map(Some),
                Err(_) => Err(ProcessorError::Fatal(
                    "creating the second producer panicked".into(),
                )),
            },
        };
        (first, second)
    });
    Ok((first?, second?))
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

type OutProducer = OutputProducer;

/// After a fatal client error that followed a broker outage (see [`Trouble`]): new
/// producer (`init_transactions`, retried until the brokers answer) and new consumers, with
/// nothing kept in memory — `run_loop` has aborted what was open and dropped every
/// partition; the new consumers' assignment restores them from the state topics. `None`
/// when a shutdown was requested meanwhile.
fn reconnect(
    processor: &Arc<Mutex<Processor>>,
    control: &Control,
    heartbeat: &Heartbeat,
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
        heartbeat.beat();
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
    heartbeat: &Heartbeat,
    restore_rx: &mpsc::Receiver<RestoreResult>,
    query_rx: &mpsc::Receiver<TicketQuery>,
) -> Result<(), ProcessorError> {
    // Both consumers are in groups, so each has a consumer queue; the handles are given
    // back before the consumers are dropped below.
    let (Some(main_queue), Some(surge_queue)) =
        (ConsumerQueue::of(&main), ConsumerQueue::of(&surge))
    else {
        return Err(ProcessorError::Fatal(
            "a consumer has no consumer queue".into(),
        ));
    };
    let mut result = loop {
        heartbeat.beat();
        if control.shutdown_requested() {
            break Ok(());
        }
        let timeout = {
            let mut c = lock(&processor);
            if let Some(set) = control.take_reload(&mut c.reload_seen) {
                c.reload(set);
            }
            while let Ok(r) = restore_rx.try_recv() {
                c.install(r);
            }
            while let Ok(q) = query_rx.try_recv() {
                let answer = c.query(&q.tenant, &q.ticket_id);
                let _ = q.reply.send(answer);
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
        let n = poll_batch(&main, &main_queue, &processor, timeout);
        let t1 = Instant::now();
        poll_batch(&surge, &surge_queue, &processor, Duration::ZERO);
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
    drop(main_queue);
    drop(surge_queue);
    drop(main);
    drop(surge);
    result
}

/// Polls up to [`MAX_BATCH`] records from `consumer`'s queue (the first poll may wait
/// `timeout`), then hands what the stages wrote to the producer. The processor is locked
/// per record, not across a poll: a rebalance served by the poll locks it from the
/// consumer's context (and any commit it runs sends the outbox first).
fn poll_batch(
    consumer: &Consumer,
    queue: &ConsumerQueue<'_>,
    processor: &Mutex<Processor>,
    timeout: Duration,
) -> usize {
    let mut polled = queue.poll(consumer, timeout);
    let at = Instant::now();
    let mut n = 0;
    loop {
        match polled {
            Polled::Nothing => break,
            Polled::Served => {}
            Polled::Record(m) => {
                let mut p = lock(processor);
                p.on_message(&m);
                // From the poll that returned the record to the engine having taken it in.
                p.meters.event_to_decision(at.elapsed());
                if p.io.outbox().len() >= OUTBOX_RECORDS {
                    p.io.flush_outbox();
                }
                n += 1;
            }
            Polled::Error(KafkaError::PartitionEOF(_)) => {}
            Polled::Error(KafkaError::MessageConsumptionFatal(code)) => {
                telemetry::error(telemetry::ErrorReason::ConsumerFatal);
                lock(processor).fatal = Some(ProcessorError::Fatal(format!("consumer: {code}")));
                break;
            }
            Polled::Error(e) => {
                tracing::warn!(error = %e, "consumer error");
                break;
            }
        }
        if n >= MAX_BATCH {
            break;
        }
        polled = queue.poll(consumer, Duration::ZERO);
    }
    if n > 0 {
        lock(processor).io.flush_outbox();
    }
    n
}

/// What a processing thread last added to the process-wide counts in [`Control`].
#[derive(Default)]
struct Reported {
    assigned: usize,
    assigned_surge: usize,
    restoring: usize,
    ready: bool,
}

struct Processor {
    /// This processing thread's index (`[runtime] threads`).
    thread: usize,
    /// The policy reload generation last applied ([`Control::take_reload`]).
    reload_seen: u64,
    reported: Reported,
    /// The per-record metrics' handles (registered once, after the recorder is installed).
    meters: telemetry::HotMeters,
    /// The output producers: one transaction open for sending, the previous one committing;
    /// the stages write into its outbox.
    io: Pipeline<OutProducer>,
    /// The topics the stages write, as ids of the outbox's table.
    routes: Routes,
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
    /// Looked up per record: Fx-hashed (std's SipHash was ~1 % of the thread).
    inputs: FxHashMap<(usize, i32), InputTask>,
    surges: FxHashMap<i32, SurgeTask>,
    /// Owned partitions: restoring or live.
    parts: Partitions,
    restore_tx: mpsc::Sender<RestoreResult>,
    /// Committed offsets the restores found held (see [`changelog::held`]), and when the
    /// last release of them ran.
    held: Arc<HeldInbox>,
    /// Where this thread's restores report what they find held: every thread's inbox.
    held_reporter: Arc<HeldReporter>,
    last_release: Option<Instant>,
    /// The restores still waited for (one no longer wanted stops early).
    wanted_restores: Arc<WantedRestores>,
    /// The process's bound on restores running at once (shared by its threads).
    restore_slots: Arc<RestoreSlots>,
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
