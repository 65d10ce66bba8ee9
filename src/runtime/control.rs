//! What the processing threads share with the rest of the process: shutdown and policy
//! reload requests going in, readiness and liveness coming out, and ticket queries for the
//! admin API.
//!
//! Ticket queries are answered by the processing threads themselves (a request/response
//! channel per thread, drained after every poll; each is asked, the one holding the ticket
//! answers with it) rather than from a concurrently-updated `DashMap` of views:
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

/// Shared state between the processing threads and their owners. With `[runtime] threads`
/// above 1 every figure is the process's: the threads' sums, ready and alive only when every
/// thread is.
pub struct Control {
    shutdown: AtomicBool,
    /// The latest reloaded policy and its generation (each thread applies every generation
    /// it has not seen).
    reload: Mutex<(u64, Option<Arc<PolicySet>>)>,
    /// One query channel per processing thread (a ticket is held by at most one of them).
    queries: Mutex<Vec<mpsc::Sender<TicketQuery>>>,
    /// Processing threads started, and how many of them are ready (every assigned partition
    /// restored, the group joined) and alive.
    threads: AtomicUsize,
    ready_threads: AtomicUsize,
    alive_threads: AtomicUsize,
    /// Input partitions assigned.
    pub assigned_partitions: AtomicUsize,
    /// Repartition-topic partitions assigned (the surge stage).
    pub assigned_surge_partitions: AtomicUsize,
    pub restoring_partitions: AtomicUsize,
    /// Per thread: active surges by channel and by category, and the commit interval in
    /// use, for the process-wide gauges.
    thread_gauges: Mutex<Vec<ThreadGauges>>,
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
    /// Each processing thread's progress (`/healthz` fails on a stalled one).
    pub heartbeats: crate::runtime::heartbeat::Heartbeats,
    /// What start-up is doing while it has not handed over to the processing thread (e.g.
    /// "connecting to Kafka at …: attempt 3 failed: …"); `None` afterwards.
    starting: Mutex<Option<String>>,
    /// Durations of the most recent commits (for reports and benchmarks).
    /// Finished commits: when each ended (wall clock) and how long it took.
    commit_times: Mutex<std::collections::VecDeque<(std::time::SystemTime, std::time::Duration)>>,
}

/// Commit durations kept by [`Control::record_commit`].
const COMMIT_TIMES_KEPT: usize = 100_000;

/// What one processing thread last reported for a process-wide gauge.
#[derive(Clone, Copy, Default)]
struct ThreadGauges {
    surges: (u64, u64),
    commit_interval: std::time::Duration,
}

impl Control {
    pub fn new() -> Arc<Control> {
        Arc::new(Control {
            shutdown: AtomicBool::new(false),
            reload: Mutex::new((0, None)),
            queries: Mutex::new(Vec::new()),
            threads: AtomicUsize::new(0),
            ready_threads: AtomicUsize::new(0),
            alive_threads: AtomicUsize::new(0),
            assigned_partitions: AtomicUsize::new(0),
            assigned_surge_partitions: AtomicUsize::new(0),
            restoring_partitions: AtomicUsize::new(0),
            thread_gauges: Mutex::new(Vec::new()),
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
            heartbeats: Default::default(),
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

    /// Hands a validated policy set to the processing threads (each applies it at its next
    /// loop).
    pub fn reload_policy(&self, set: Arc<PolicySet>) {
        let mut r = lock(&self.reload);
        *r = (r.0 + 1, Some(set));
    }
    /// The policy reloaded since generation `seen` (which it advances), if any.
    pub(crate) fn take_reload(&self, seen: &mut u64) -> Option<Arc<PolicySet>> {
        let r = lock(&self.reload);
        if r.0 == *seen {
            return None;
        }
        *seen = r.0;
        r.1.clone()
    }

    /// Sends a ticket query to every processing thread: one reply each (`Some` from the
    /// thread holding the ticket). `None` when no processing thread runs.
    pub fn query_ticket(
        &self,
        tenant: &str,
        ticket_id: &str,
    ) -> Option<Vec<tokio::sync::oneshot::Receiver<Option<serde_json::Value>>>> {
        let replies: Vec<_> = lock(&self.queries)
            .iter()
            .filter_map(|tx| {
                let (reply, rx) = tokio::sync::oneshot::channel();
                let q = TicketQuery {
                    tenant: tenant.to_string(),
                    ticket_id: ticket_id.to_string(),
                    reply,
                };
                tx.send(q).ok().map(|()| rx)
            })
            .collect();
        (!replies.is_empty()).then_some(replies)
    }

    /// Registers `n` processing threads (before they start) and opens their query channels.
    pub(crate) fn start_threads(&self, n: usize) -> Vec<mpsc::Receiver<TicketQuery>> {
        self.threads.store(n, Ordering::SeqCst);
        *lock(&self.thread_gauges) = vec![ThreadGauges::default(); n];
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel()).unzip();
        *lock(&self.queries) = txs;
        rxs
    }

    /// Every processing thread started is ready.
    pub fn is_ready(&self) -> bool {
        let n = self.threads.load(Ordering::SeqCst);
        n > 0 && self.ready_threads.load(Ordering::SeqCst) == n
    }
    /// Every processing thread started runs.
    pub fn is_alive(&self) -> bool {
        let n = self.threads.load(Ordering::SeqCst);
        n > 0 && self.alive_threads.load(Ordering::SeqCst) == n
    }
    /// A thread's readiness changed from `!ready` to `ready`; returns the process's.
    pub(crate) fn thread_ready(&self, ready: bool) -> bool {
        if ready {
            self.ready_threads.fetch_add(1, Ordering::SeqCst);
        } else {
            self.ready_threads.fetch_sub(1, Ordering::SeqCst);
        }
        self.is_ready()
    }
    /// A thread started (`true`) or ended.
    pub(crate) fn thread_alive(&self, alive: bool) {
        if alive {
            self.alive_threads.fetch_add(1, Ordering::SeqCst);
        } else {
            self.alive_threads.fetch_sub(1, Ordering::SeqCst);
        }
    }
    /// Moves a process-wide count by what one thread's count changed by (`was` → `now`);
    /// returns the new total.
    pub(crate) fn move_count(counter: &AtomicUsize, was: usize, now: usize) -> usize {
        if now >= was {
            counter.fetch_add(now - was, Ordering::Relaxed) + (now - was)
        } else {
            counter.fetch_sub(was - now, Ordering::Relaxed) - (was - now)
        }
    }
    /// Thread `k`'s active surges (by channel, by category); returns the process's.
    pub(crate) fn report_surges(&self, k: usize, by_channel: u64, by_category: u64) -> (u64, u64) {
        let mut g = lock(&self.thread_gauges);
        if let Some(slot) = g.get_mut(k) {
            slot.surges = (by_channel, by_category);
        }
        g.iter()
            .fold((0, 0), |(a, b), s| (a + s.surges.0, b + s.surges.1))
    }
    /// Thread `k`'s commit interval; returns the widest in the process.
    pub(crate) fn report_commit_interval(
        &self,
        k: usize,
        interval: std::time::Duration,
    ) -> std::time::Duration {
        let mut g = lock(&self.thread_gauges);
        if let Some(slot) = g.get_mut(k) {
            slot.commit_interval = interval;
        }
        g.iter()
            .map(|s| s.commit_interval)
            .max()
            .unwrap_or(interval)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_is_ready_and_alive_only_when_every_thread_is() {
        let c = Control::new();
        assert!(!c.is_ready() && !c.is_alive(), "nothing started");
        let _queries = c.start_threads(2);
        c.thread_alive(true);
        assert!(!c.is_alive(), "one of two threads runs");
        c.thread_alive(true);
        assert!(c.is_alive());
        assert!(!c.thread_ready(true), "one of two threads ready");
        assert!(c.thread_ready(true));
        assert!(c.is_ready());
        assert!(!c.thread_ready(false), "a rebalance in one thread");
        c.thread_alive(false);
        assert!(!c.is_alive());
    }

    #[test]
    fn counts_add_up_over_threads() {
        let c = Control::new();
        assert_eq!(Control::move_count(&c.assigned_partitions, 0, 3), 3);
        assert_eq!(Control::move_count(&c.assigned_partitions, 0, 2), 5);
        assert_eq!(Control::move_count(&c.assigned_partitions, 3, 1), 3);
        assert_eq!(Control::move_count(&c.assigned_partitions, 2, 0), 1);
        let _queries = c.start_threads(2);
        assert_eq!(c.report_surges(0, 2, 1), (2, 1));
        assert_eq!(c.report_surges(1, 1, 0), (3, 1));
        assert_eq!(c.report_surges(0, 0, 0), (1, 0));
        let ms = std::time::Duration::from_millis;
        assert_eq!(c.report_commit_interval(0, ms(100)), ms(100));
        assert_eq!(c.report_commit_interval(1, ms(1000)), ms(1000));
        assert_eq!(c.report_commit_interval(1, ms(100)), ms(100));
    }

    #[test]
    fn every_thread_applies_each_reload_once() {
        let c = Control::new();
        let (mut a, mut b) = (0, 0);
        assert!(c.take_reload(&mut a).is_none());
        let set = Arc::new(
            crate::core::policy::builtin::PolicySource::BuiltIn
                .load()
                .unwrap(),
        );
        c.reload_policy(set.clone());
        assert!(c.take_reload(&mut a).is_some());
        assert!(c.take_reload(&mut a).is_none(), "applied once");
        assert!(
            c.take_reload(&mut b).is_some(),
            "the other thread applies it too"
        );
        c.reload_policy(set);
        assert!(c.take_reload(&mut a).is_some());
    }

    #[test]
    fn a_ticket_query_reaches_every_thread() {
        let c = Control::new();
        assert!(c.query_ticket("t", "1").is_none(), "no thread runs");
        let queries = c.start_threads(2);
        let replies = c.query_ticket("t", "1").expect("threads run");
        assert_eq!(replies.len(), 2);
        for rx in &queries {
            let q = rx.try_recv().expect("each thread is asked");
            assert_eq!((q.tenant.as_str(), q.ticket_id.as_str()), ("t", "1"));
        }
        drop(queries);
        assert!(c.query_ticket("t", "1").is_none(), "every thread gone");
    }
}
