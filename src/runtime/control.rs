//! What the processing thread shares with the rest of the process: shutdown and policy
//! reload requests going in, readiness and liveness coming out, and ticket queries for the
//! admin API.
//!
//! Ticket queries are answered by the processing thread itself (a request/response channel
//! drained after every poll) rather than from a concurrently-updated `DashMap` of views:
//! the engine state is already in memory once, a second per-ticket copy would double the
//! memory of a million open tickets and cost a view rebuild per changed ticket on the hot
//! path, while a query waits at most one poll interval (≤ 50 ms) and sees exactly the state
//! the engine acts on.
use crate::core::policy::PolicySet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

/// A read-only question for the processing thread.
pub struct TicketQuery {
    /// Empty for a ticket without tenant.
    pub tenant: String,
    pub ticket_id: String,
    pub reply: tokio::sync::oneshot::Sender<Option<serde_json::Value>>,
}

/// Shared state between the processing thread and its owners.
pub struct Control {
    shutdown: AtomicBool,
    reload: Mutex<Option<Arc<PolicySet>>>,
    queries_tx: Mutex<mpsc::Sender<TicketQuery>>,
    queries_rx: Mutex<Option<mpsc::Receiver<TicketQuery>>>,
    /// Every assigned partition restored (and the group joined).
    pub ready: AtomicBool,
    /// The processing thread runs.
    pub alive: AtomicBool,
    /// Input partitions assigned.
    pub assigned_partitions: AtomicUsize,
    /// Repartition-topic partitions assigned (the surge stage).
    pub assigned_surge_partitions: AtomicUsize,
    pub restoring_partitions: AtomicUsize,
    pub transactions_committed: AtomicU64,
    /// Input records consumed (the surge stage's repartition records are not counted:
    /// tests and the stop summary read this as "input seen").
    pub records_consumed: AtomicU64,
    pub outputs_produced: AtomicU64,
    pub dead_letters_produced: AtomicU64,
    /// Restores finished, and their total duration in microseconds (for reports).
    pub restores: AtomicU64,
    pub restore_micros: AtomicU64,
    pub restored_tickets: AtomicU64,
    /// Processing-loop accounting (for benchmarks): iterations, microseconds in input
    /// polls that returned nothing, in polls that returned records (incl. handling them),
    /// and in the after-batch work (watermarks, commits).
    pub loop_iterations: AtomicU64,
    pub idle_poll_micros: AtomicU64,
    pub busy_poll_micros: AtomicU64,
    pub after_batch_micros: AtomicU64,
    /// Of which: moving watermarks and producing what fires.
    pub advance_micros: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// What start-up is doing while it has not handed over to the processing thread (e.g.
    /// "connecting to Kafka at …: attempt 3 failed: …"); `None` afterwards.
    starting: Mutex<Option<String>>,
    /// Durations of the most recent commits (for reports and benchmarks).
    /// Finished commits: when each ended (wall clock) and how long it took.
    commit_times: Mutex<std::collections::VecDeque<(std::time::SystemTime, std::time::Duration)>>,
}

/// Commit durations kept by [`Control::record_commit`].
const COMMIT_TIMES_KEPT: usize = 100_000;

impl Control {
    pub fn new() -> Arc<Control> {
        let (tx, rx) = mpsc::channel();
        Arc::new(Control {
            shutdown: AtomicBool::new(false),
            reload: Mutex::new(None),
            queries_tx: Mutex::new(tx),
            queries_rx: Mutex::new(Some(rx)),
            ready: AtomicBool::new(false),
            alive: AtomicBool::new(false),
            assigned_partitions: AtomicUsize::new(0),
            assigned_surge_partitions: AtomicUsize::new(0),
            restoring_partitions: AtomicUsize::new(0),
            transactions_committed: AtomicU64::new(0),
            records_consumed: AtomicU64::new(0),
            outputs_produced: AtomicU64::new(0),
            dead_letters_produced: AtomicU64::new(0),
            restores: AtomicU64::new(0),
            restore_micros: AtomicU64::new(0),
            restored_tickets: AtomicU64::new(0),
            loop_iterations: AtomicU64::new(0),
            idle_poll_micros: AtomicU64::new(0),
            busy_poll_micros: AtomicU64::new(0),
            after_batch_micros: AtomicU64::new(0),
            advance_micros: AtomicU64::new(0),
            last_error: Mutex::new(None),
            starting: Mutex::new(None),
            commit_times: Mutex::new(std::collections::VecDeque::new()),
        })
    }

    /// Asks the processing thread to stop (commit, leave the group).
    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }
    pub fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Hands a validated policy set to the processing thread (applied at its next loop).
    pub fn reload_policy(&self, set: Arc<PolicySet>) {
        *lock(&self.reload) = Some(set);
    }
    pub(crate) fn take_reload(&self) -> Option<Arc<PolicySet>> {
        lock(&self.reload).take()
    }

    /// Sends a ticket query; `None` when the processing thread is gone.
    pub fn query_ticket(
        &self,
        tenant: String,
        ticket_id: String,
    ) -> Option<tokio::sync::oneshot::Receiver<Option<serde_json::Value>>> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        lock(&self.queries_tx)
            .send(TicketQuery {
                tenant,
                ticket_id,
                reply,
            })
            .ok()?;
        Some(rx)
    }
    pub(crate) fn take_query_receiver(&self) -> Option<mpsc::Receiver<TicketQuery>> {
        lock(&self.queries_rx).take()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// One loop iteration: records handled, time in the input poll (incl. handling), time in
    /// the rest (surge poll, watermarks, commit).
    pub(crate) fn loop_stats(
        &self,
        records: usize,
        poll: std::time::Duration,
        rest: std::time::Duration,
    ) {
        self.loop_iterations.fetch_add(1, Ordering::Relaxed);
        if records == 0 {
            self.idle_poll_micros
                .fetch_add(poll.as_micros() as u64, Ordering::Relaxed);
        } else {
            self.busy_poll_micros
                .fetch_add(poll.as_micros() as u64, Ordering::Relaxed);
        }
        self.after_batch_micros
            .fetch_add(rest.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn record_commit(&self, d: std::time::Duration) {
        let mut q = lock(&self.commit_times);
        if q.len() == COMMIT_TIMES_KEPT {
            q.pop_front();
        }
        q.push_back((std::time::SystemTime::now(), d));
    }
    /// The most recent commit durations, oldest first.
    pub fn commit_times(&self) -> Vec<std::time::Duration> {
        lock(&self.commit_times).iter().map(|&(_, d)| d).collect()
    }
    /// The most recent commits as wall-clock windows (start, end), oldest first: which
    /// outputs came due while a commit was in flight (the latency bench).
    pub fn commit_windows(&self) -> Vec<(std::time::SystemTime, std::time::SystemTime)> {
        lock(&self.commit_times)
            .iter()
            .map(|&(end, d)| (end - d, end))
            .collect()
    }

    /// Start-up's progress, shown by `/readyz` until the processing thread runs.
    pub fn set_starting(&self, what: Option<String>) {
        *self.starting.lock().unwrap_or_else(|p| p.into_inner()) = what;
    }

    /// Why the processor is not ready, in words an operator can act on (`None` when ready).
    pub fn not_ready_reason(&self) -> Option<String> {
        if self.is_ready() {
            return None;
        }
        if let Some(e) = self.last_error() {
            return Some(format!("processor stopped: {e}"));
        }
        if self.shutdown_requested() {
            return Some("shutting down".into());
        }
        if let Some(s) = self
            .starting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Some(s);
        }
        if !self.is_alive() {
            return Some("starting".into());
        }
        let assigned = self.assigned_partitions.load(Ordering::Relaxed);
        let restoring = self.restoring_partitions.load(Ordering::Relaxed);
        Some(if restoring > 0 {
            format!("restoring {restoring} of {assigned} assigned partitions from the state topics")
        } else {
            "waiting for the consumer group to assign partitions".into()
        })
    }

    pub fn set_error(&self, e: String) {
        *lock(&self.last_error) = Some(e);
    }
    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }
}

/// A mutex's guard, poisoned or not: every value behind these mutexes is valid whatever a
/// panicking holder left (a slot, a queue of durations, a channel end), and a panic on one
/// thread must not take the admin API or the processor down with it.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
