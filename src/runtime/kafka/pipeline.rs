//! Pipelined transactions (exactly-once): two transactional producers used alternately, so
//! the processing thread never waits for a commit. Transaction N commits (drain what is in
//! flight, send the consumed offsets, `commit_transaction`) on a committer thread while the
//! processing thread keeps processing into transaction N+1 on the other producer, and a
//! timer due meanwhile is produced at once instead of after the commit.
//!
//! The rules that keep exactly-once (unit-tested below against a fake producer):
//! - **Commit order.** N+1 starts committing only after N has committed: [`Pipeline::start_commit`]
//!   refuses while a commit is in flight, and the caller waits for it first. So offsets sent
//!   in N+1 are always beyond N's, and a state record of N+1 never commits before N's.
//! - **Log order.** Records of N+1 are held in memory until every record of N is delivered
//!   (the committer reports the drain), then sent: with two producers, a record of N+1 could
//!   otherwise land in a partition ahead of one of N (for the same ticket: an output out of
//!   order; in the compacted state topic: an older ticket state winning over a newer one).
//!   A commit's drain takes a few milliseconds; holding more than [`HOLD_LIMIT_BYTES`] waits
//!   for it.
//! - **Failure of N resets N+1.** A failed N is aborted by the pipeline, the records held for
//!   N+1 are dropped, and the outcome tells the caller to abort N+1 and restore every
//!   partition from the state topics, exactly as after a failed commit without pipelining
//!   (N+1 holds work that builds on N's).
//! - **Nothing committed twice.** A transaction is handed to the committer once and comes
//!   back closed (committed or aborted).
//!
//! At-least-once has no transactions: one producer, and the caller flushes synchronously.
//!
//! The stages write their records into the pipeline's [`Outbox`]; it is drained into the
//! active transaction before any other record is sent and before a commit starts, and
//! discarded by an abort (its records belong to the aborted transaction).
use crate::runtime::changelog::keys::RELEASE_KEY;
use crate::runtime::kafka::txn::{OutRecord, Txn, TxnError, TxnProducer};
use crate::runtime::stage::Outbox;
use rdkafka::message::OwnedHeaders;
use rdkafka::topic_partition_list::TopicPartitionList;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Held-back bytes (keys and values) beyond which sending waits for the previous
/// transaction's drain instead of holding more.
pub const HOLD_LIMIT_BYTES: usize = 16 << 20;

/// How often a wait for the committer logs that it still waits (a commit normally takes
/// milliseconds; seconds mean the broker is slow or away).
const WAIT_LOG_EVERY: Duration = Duration::from_secs(5);

/// Consumed offsets of one consumer group, with what `send_offsets` needs of the group.
pub type GroupOffsets<G> = (TopicPartitionList, G);

/// A transaction on its way to the committer thread.
struct Job<P: TxnProducer> {
    txn: Txn<P>,
    offsets: Vec<GroupOffsets<P::Group>>,
}

/// What the committer thread reports, in this order.
enum Report<P: TxnProducer> {
    /// Every record of the transaction is delivered: the next one's may be sent.
    Drained,
    /// The transaction committed, or failed and was aborted (an abort that ran out of time
    /// goes on while the producer is tended).
    Done(Box<(Txn<P>, Result<(), TxnError>)>),
}

struct Committer<P: TxnProducer> {
    jobs: mpsc::Sender<Job<P>>,
    reports: mpsc::Receiver<Report<P>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A commit handed to the committer.
struct InFlight {
    started: Instant,
    drained: bool,
}

/// A record sent while the previous transaction's records were still being delivered.
struct Held {
    topic: String,
    partition: Option<i32>,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    headers: Option<OwnedHeaders>,
}

/// The producer side of the processor: one [`Txn`] open for sending, the other committing.
pub struct Pipeline<P: TxnProducer> {
    /// The transaction the processing thread sends into.
    active: Txn<P>,
    /// The other producer while it is not committing (`None` while it is; always `None`
    /// without pipelining).
    spare: Option<Txn<P>>,
    committer: Option<Committer<P>>,
    in_flight: Option<InFlight>,
    /// Records of the active transaction held back until the previous one is drained.
    held: Vec<Held>,
    held_bytes: usize,
    /// What the stages wrote and the active transaction has not been sent yet.
    outbox: Outbox,
    /// The outcome of the last commit, not yet taken by [`Pipeline::poll_commit`].
    outcome: Option<Result<Duration, TxnError>>,
    pub exactly_once: bool,
    /// Bound on one broker operation (the transactions' own).
    timeout: Duration,
}

impl<P> Pipeline<P>
where
    P: TxnProducer + Send + 'static,
    P::Group: Send + 'static,
{
    /// Pipelined with exactly-once and a second producer (a committer thread is started);
    /// otherwise one producer, committed by the caller on its own thread.
    pub fn new(
        first: P,
        second: Option<P>,
        exactly_once: bool,
        timeout: Duration,
    ) -> std::io::Result<Pipeline<P>> {
        let (spare, committer) = match second.filter(|_| exactly_once) {
            Some(p) => (Some(Txn::new(p, true, timeout)), Some(Committer::start()?)),
            None => (None, None),
        };
        Ok(Pipeline {
            active: Txn::new(first, exactly_once, timeout),
            spare,
            committer,
            in_flight: None,
            held: Vec::new(),
            held_bytes: 0,
            outbox: Outbox::default(),
            outcome: None,
            exactly_once,
            timeout,
        })
    }

    /// Whether commits run on the committer thread.
    pub fn is_pipelined(&self) -> bool {
        self.committer.is_some()
    }

    /// Whether a commit is in flight.
    pub fn committing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Whether the active transaction is open (exactly-once).
    pub fn is_open(&self) -> bool {
        self.active.is_open()
    }

    /// Whether records were sent (or are held, or wait in the outbox) since the active
    /// transaction began.
    pub fn has_pending(&self) -> bool {
        self.active.has_pending() || !self.held.is_empty() || !self.outbox.is_empty()
    }

    /// The outbox the stages write into (drained by [`Pipeline::flush_outbox`], and before
    /// anything else is sent or committed).
    pub fn outbox(&mut self) -> &mut Outbox {
        &mut self.outbox
    }

    /// Sends what waits in the outbox into the active transaction, in order.
    pub fn flush_outbox(&mut self) {
        if self.outbox.is_empty() {
            return;
        }
        let mut outbox = std::mem::take(&mut self.outbox);
        outbox.drain(|rec| self.send_one(rec));
        self.outbox = outbox;
    }

    /// The producer the processing thread sends with (for its context).
    pub fn producer(&self) -> &P {
        &self.active.producer
    }

    /// Sends a record into the active transaction (after what waits in the outbox), or
    /// holds it while the previous transaction's records are still being delivered.
    pub fn send(&mut self, rec: OutRecord<'_>) {
        self.flush_outbox();
        self.send_one(rec);
    }

    fn send_one(&mut self, rec: OutRecord<'_>) {
        if self.in_flight.as_ref().is_some_and(|f| !f.drained) {
            self.take_reports(false);
        }
        if self.in_flight.as_ref().is_some_and(|f| !f.drained)
            && self.held_bytes >= HOLD_LIMIT_BYTES
        {
            self.wait_drained();
        }
        if self.in_flight.as_ref().is_some_and(|f| !f.drained) {
            self.held_bytes += rec.key.len() + rec.value.map_or(0, |v| v.len());
            self.held.push(Held {
                topic: rec.topic.to_string(),
                partition: rec.partition,
                key: rec.key.to_vec(),
                value: rec.value.map(|v| v.to_vec()),
                headers: rec.headers,
            });
            return;
        }
        self.active.send(rec);
    }

    /// [`Pipeline::send`] from parts.
    pub fn produce(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: &[u8],
        value: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
    ) {
        self.send(OutRecord {
            topic,
            partition,
            key,
            value,
            headers,
        });
    }

    /// Tends both producers (delivery reports; an abort that ran out of time goes on, even
    /// while nothing is sent, e.g. while every partition restores after a failed commit,
    /// and the restore's offset fetch would wait for it) and takes the committer's reports
    /// (releasing held records once the previous transaction is drained); never blocks.
    pub fn serve(&mut self) {
        self.flush_outbox();
        self.active.tend();
        if let Some(spare) = &mut self.spare {
            spare.tend();
        }
        self.take_reports(false);
    }

    /// Hands the active transaction and the consumed offsets to the committer and makes the
    /// other producer active. `Err(offsets)` without pipelining, or while a commit is in
    /// flight (wait for it first: commit order).
    #[allow(clippy::type_complexity)]
    pub fn start_commit(
        &mut self,
        offsets: Vec<GroupOffsets<P::Group>>,
    ) -> Result<(), Vec<GroupOffsets<P::Group>>> {
        if self.in_flight.is_some() {
            return Err(offsets);
        }
        if self.committer.is_none() || self.spare.is_none() {
            return Err(offsets);
        }
        self.flush_outbox();
        let (Some(committer), Some(next)) = (&self.committer, self.spare.take()) else {
            return Err(offsets);
        };
        let txn = std::mem::replace(&mut self.active, next);
        if let Err(mpsc::SendError(job)) = committer.jobs.send(Job { txn, offsets }) {
            // The committer is gone (it panicked): undo, and report a failed commit.
            let Job { txn, offsets: _ } = job;
            let next = std::mem::replace(&mut self.active, txn);
            self.spare = Some(next);
            self.outcome = Some(Err(TxnError::Undelivered {
                count: 0,
                waited: Duration::ZERO,
            }));
            return Ok(());
        }
        self.in_flight = Some(InFlight {
            started: Instant::now(),
            drained: false,
        });
        Ok(())
    }

    /// Commits the active transaction on this thread (at-least-once: flushes it).
    pub fn commit_now(
        &mut self,
        offsets: &[(&TopicPartitionList, &P::Group)],
    ) -> Result<(), TxnError> {
        self.flush_outbox();
        self.release_held();
        self.active.commit(offsets)
    }

    /// The outcome of the commit in flight once it has finished (with how long it took),
    /// without blocking.
    pub fn poll_commit(&mut self) -> Option<Result<Duration, TxnError>> {
        self.take_reports(false);
        self.outcome.take()
    }

    /// Waits for the commit in flight, if any, and returns its outcome.
    pub fn wait_commit(&mut self) -> Option<Result<Duration, TxnError>> {
        while self.in_flight.is_some() {
            if !self.take_reports(true) {
                break;
            }
        }
        self.outcome.take()
    }

    /// Aborts the active transaction (exactly-once) and drops held records; a commit in
    /// flight is waited for first (its outcome, if not taken, is logged). `Ok(true)` when a
    /// transaction was aborted.
    pub fn abort(&mut self) -> Result<bool, TxnError> {
        let mut aborted = false;
        if let Some(r) = self.wait_commit() {
            match r {
                Ok(_) => tracing::debug!("the commit in flight finished before the abort"),
                Err(e) => {
                    tracing::warn!(error = %e, "the commit in flight failed (aborted)");
                    aborted = true;
                }
            }
        }
        self.held.clear();
        self.held_bytes = 0;
        self.outbox.clear();
        self.active.abort().map(|a| a || aborted)
    }

    /// Forgets failures, held records and open transactions (the producers were replaced
    /// after an outage; a commit in flight is waited for first). After a stuck commit (the
    /// committer and its producer given up), `second` becomes the spare on a new committer.
    pub fn replace(&mut self, first: P, second: Option<P>) {
        let _ = self.wait_commit();
        self.held.clear();
        self.held_bytes = 0;
        self.outbox.clear();
        self.active.replace(first);
        match (&mut self.spare, second) {
            (Some(spare), Some(p)) => spare.replace(p),
            (None, Some(p)) if self.exactly_once && self.committer.is_none() => {
                match Committer::start() {
                    Ok(c) => {
                        self.committer = Some(c);
                        self.spare = Some(Txn::new(p, true, self.timeout));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start a committer thread: commits are not pipelined")
                    }
                }
            }
            _ => {}
        }
    }

    /// How long a commit in flight may take before its committer is given up: its own
    /// bound (drain, offsets and commit), then the abort's, and a sixth of one as margin
    /// (65 s with the processor's 30 s bound).
    fn stuck_after(&self) -> Duration {
        self.timeout * 2 + self.timeout / 6
    }

    /// Gives the committer up when its commit has been in flight for longer than
    /// [`Pipeline::stuck_after`]: its thread is left blocked where it is (never joined; it
    /// ends by itself if librdkafka ever returns, its reports going nowhere), the commit's
    /// outcome is [`TxnError::CommitStuck`], and the pipeline goes on with the active
    /// producer alone until [`Pipeline::replace`] brings new ones. The new producers'
    /// `init_transactions` fences the given-up one, so its transaction can never commit
    /// after this (the coordinator aborts it).
    fn give_up_if_stuck(&mut self) -> bool {
        let Some(f) = &self.in_flight else {
            return false;
        };
        let waited = f.started.elapsed();
        if waited < self.stuck_after() {
            return false;
        }
        tracing::error!(
            waited_s = waited.as_secs(),
            "the commit in flight has not returned: giving its producer up (librdkafka can block for ever in send_offsets_to_transaction after a broker restart)"
        );
        if let Some(mut c) = self.committer.take() {
            // Detached: dropping the handle does not wait for the thread.
            c.thread.take();
        }
        self.in_flight = None;
        self.held.clear();
        self.held_bytes = 0;
        self.outcome = Some(Err(TxnError::CommitStuck { waited }));
        true
    }

    /// Releases what our producers may have left behind after a broker outage (see
    /// [`crate::runtime::changelog::held`]): pending transactional offset commits, and
    /// undecided records in the state partitions `partitions` (topic, partition). On each
    /// idle producer, a transaction that writes a [`RELEASE_KEY`] tombstone to each of
    /// `partitions`, sends `offsets` (the groups' stable committed offsets) and is aborted.
    /// Idle: the spare (not committing), and the active one while nothing is open or held;
    /// the other one is idle after the next commit, so released by a later call. The number
    /// of producers released (0 without exactly-once).
    pub fn release_orphaned_holds(
        &mut self,
        offsets: &[GroupOffsets<P::Group>],
        partitions: &[(&str, i32)],
    ) -> Result<usize, TxnError> {
        let refs: Vec<(&TopicPartitionList, &P::Group)> =
            offsets.iter().map(|(t, g)| (t, g)).collect();
        self.on_idle(|txn| txn.discard_orphans(&refs, partitions, RELEASE_KEY))
    }

    /// Ends what our producers left undecided in held state partitions as committed: records
    /// of a transaction the coordinator committed without writing their markers there, or of
    /// one rolled forward (see [`crate::runtime::changelog::held`]). On each idle producer
    /// (as [`Pipeline::release_orphaned_holds`]), `plan` names from its transactional id the
    /// state partitions and the offsets to end: a transaction that writes a [`RELEASE_KEY`]
    /// tombstone to each partition, sends the offsets, and is committed. Returns the
    /// producers that committed one.
    pub fn commit_orphaned_holds(
        &mut self,
        mut plan: impl FnMut(Option<&str>) -> (Vec<(String, i32)>, Vec<GroupOffsets<P::Group>>),
    ) -> Result<usize, TxnError> {
        let mut committed = 0;
        self.on_idle(|txn| {
            let (partitions, offsets) = plan(txn.producer.transactional_id());
            if partitions.is_empty() && offsets.iter().all(|(t, _)| t.count() == 0) {
                return Ok(());
            }
            let partitions: Vec<(&str, i32)> =
                partitions.iter().map(|(t, p)| (t.as_str(), *p)).collect();
            let offsets: Vec<(&TopicPartitionList, &P::Group)> =
                offsets.iter().map(|(t, g)| (t, g)).collect();
            committed += 1;
            txn.commit_orphans(&partitions, &offsets, RELEASE_KEY)
        })?;
        Ok(committed)
    }

    /// The transactional id of the producer the processing thread sends with (the one a
    /// record sent now is written by, even if it is held back for a while).
    pub fn transactional_id(&self) -> Option<&str> {
        self.active.producer.transactional_id()
    }

    /// Runs `f` on each idle producer (exactly-once only): the spare, and the active one
    /// while nothing is open or held. Returns how many ran it.
    fn on_idle(
        &mut self,
        mut f: impl FnMut(&mut Txn<P>) -> Result<(), TxnError>,
    ) -> Result<usize, TxnError> {
        if !self.exactly_once {
            return Ok(0);
        }
        let mut used = 0;
        if let Some(spare) = &mut self.spare {
            f(spare)?;
            used += 1;
        }
        if !self.has_pending() && !self.is_open() {
            f(&mut self.active)?;
            used += 1;
        }
        Ok(used)
    }

    /// Takes the committer's reports; `block` waits for one. `false` when the committer
    /// is gone.
    fn take_reports(&mut self, block: bool) -> bool {
        if self.give_up_if_stuck() {
            return false;
        }
        let mut got = Vec::new();
        if block {
            let since = Instant::now();
            let mut next_log = WAIT_LOG_EVERY;
            loop {
                let Some(c) = &self.committer else {
                    return false;
                };
                // Wake for the next log line, or when the commit would count as stuck.
                let until_stuck = self
                    .in_flight
                    .as_ref()
                    .map(|f| self.stuck_after().saturating_sub(f.started.elapsed()));
                let wait = next_log
                    .saturating_sub(since.elapsed())
                    .min(until_stuck.unwrap_or(Duration::MAX))
                    .max(Duration::from_millis(1));
                match c.reports.recv_timeout(wait) {
                    Ok(r) => {
                        got.push(r);
                        break;
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if self.give_up_if_stuck() {
                            return false;
                        }
                        if since.elapsed() >= next_log {
                            next_log += WAIT_LOG_EVERY;
                            tracing::warn!(
                                waited_s = since.elapsed().as_secs(),
                                in_flight_s = self
                                    .in_flight
                                    .as_ref()
                                    .map(|f| f.started.elapsed().as_secs()),
                                "still waiting for the commit in flight"
                            )
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return self.committer_gone(),
                }
            }
        }
        let Some(c) = &self.committer else {
            return false;
        };
        loop {
            match c.reports.try_recv() {
                Ok(r) => got.push(r),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return self.committer_gone(),
            }
        }
        for r in got {
            self.report(r);
        }
        true
    }

    /// The committer thread ended with a transaction in hand (a panic): the commit failed.
    fn committer_gone(&mut self) -> bool {
        if self.in_flight.take().is_some() {
            self.held.clear();
            self.held_bytes = 0;
            self.outcome = Some(Err(TxnError::Undelivered {
                count: 0,
                waited: Duration::ZERO,
            }));
        }
        false
    }

    fn report(&mut self, r: Report<P>) {
        match r {
            Report::Drained => {
                if let Some(f) = &mut self.in_flight {
                    f.drained = true;
                }
                self.release_held();
            }
            Report::Done(done) => {
                let (txn, result) = *done;
                let took = self
                    .in_flight
                    .take()
                    .map(|f| f.started.elapsed())
                    .unwrap_or_default();
                let result = match result {
                    Ok(()) => {
                        self.release_held();
                        Ok(took)
                    }
                    Err(e) => {
                        // The committer aborted the failed transaction. The held records
                        // build on it: the caller aborts the active one and resets.
                        self.held.clear();
                        self.held_bytes = 0;
                        Err(e)
                    }
                };
                self.spare = Some(txn);
                self.outcome = Some(result);
            }
        }
    }

    /// Blocks until the commit in flight has drained (or finished).
    fn wait_drained(&mut self) {
        while self.in_flight.as_ref().is_some_and(|f| !f.drained) {
            if !self.take_reports(true) {
                break;
            }
        }
    }

    /// Sends the held records into the active transaction, in the order they were sent.
    fn release_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
        for h in std::mem::take(&mut self.held) {
            self.active.send(OutRecord {
                topic: &h.topic,
                partition: h.partition,
                key: &h.key,
                value: h.value.as_deref(),
                headers: h.headers,
            });
        }
        self.held_bytes = 0;
    }
}

impl<P> Committer<P>
where
    P: TxnProducer + Send + 'static,
    P::Group: Send + 'static,
{
    fn start() -> std::io::Result<Committer<P>> {
        let (jobs, job_rx) = mpsc::channel::<Job<P>>();
        let (report_tx, reports) = mpsc::channel::<Report<P>>();
        let thread = std::thread::Builder::new()
            .name("slawatch-committer".into())
            .spawn(move || {
                while let Ok(Job { mut txn, offsets }) = job_rx.recv() {
                    let drained = txn.drain();
                    if drained.is_ok() && report_tx.send(Report::Drained).is_err() {
                        break;
                    }
                    let result = drained.and_then(|()| {
                        let refs: Vec<(&TopicPartitionList, &P::Group)> =
                            offsets.iter().map(|(t, g)| (t, g)).collect();
                        txn.commit(&refs)
                    });
                    if tracing::enabled!(tracing::Level::DEBUG) {
                        tracing::debug!(
                            offsets = %offsets_summary(&offsets),
                            ok = result.is_ok(),
                            "pipelined commit finished"
                        );
                    }
                    if result.is_err() {
                        // Aborted here, not on the processing thread: an abort while the
                        // broker is away takes up to the operation bound.
                        if let Err(a) = txn.abort() {
                            tracing::error!(error = %a, "aborting the failed transaction failed");
                        }
                    }
                    if report_tx
                        .send(Report::Done(Box::new((txn, result))))
                        .is_err()
                    {
                        break;
                    }
                }
            })?;
        Ok(Committer {
            jobs,
            reports,
            thread: Some(thread),
        })
    }
}

impl<P: TxnProducer> Drop for Committer<P> {
    fn drop(&mut self) {
        // Closing the job channel ends the thread after the job it may be running.
        let (tx, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.jobs, tx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `topic[partition]@offset …` of every group's offsets, for a debug line.
fn offsets_summary<G>(offsets: &[GroupOffsets<G>]) -> String {
    let mut out = String::new();
    for (tpl, _) in offsets {
        for e in tpl.elements() {
            if let rdkafka::Offset::Offset(o) = e.offset() {
                out.push_str(&format!("{}[{}]@{} ", e.topic(), e.partition(), o));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::kafka::txn::Recovery;
    use rdkafka::error::KafkaError;
    use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
    use std::sync::{Arc, Mutex};

    /// What the test controls of both fake producers, and the calls they saw, in order.
    #[derive(Default)]
    struct Knobs {
        log: Mutex<Vec<String>>,
        /// Records in flight stay undelivered until this is set.
        deliver: AtomicBool,
        /// Commits wait while this is set.
        hold_commit: AtomicBool,
        /// The producer whose commits fail.
        fail_commit_of: Mutex<Option<&'static str>>,
    }

    impl Knobs {
        fn new() -> Arc<Knobs> {
            let k = Knobs::default();
            k.deliver.store(true, Ordering::SeqCst);
            Arc::new(k)
        }
        fn push(&self, s: String) {
            self.log.lock().unwrap().push(s);
        }
        fn calls(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }
        fn position(&self, call: &str) -> Option<usize> {
            self.calls().iter().position(|c| c == call)
        }
        fn count(&self, call: &str) -> usize {
            self.calls().iter().filter(|c| *c == call).count()
        }
    }

    struct Fake {
        name: &'static str,
        knobs: Arc<Knobs>,
        in_flight: AtomicI32,
    }

    impl TxnProducer for Fake {
        type Group = ();
        fn begin(&self) -> Result<(), TxnError> {
            self.knobs.push(format!("{} begin", self.name));
            Ok(())
        }
        fn send<'a>(
            &self,
            rec: OutRecord<'a>,
        ) -> Result<(), crate::runtime::kafka::txn::SendRefused<'a>> {
            let partition = rec.partition.map(|p| format!("[{p}]")).unwrap_or_default();
            let tombstone = if rec.value.is_none() {
                " tombstone"
            } else {
                ""
            };
            self.knobs.push(format!(
                "{} send {}{partition}{tombstone}",
                self.name, rec.topic
            ));
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn serve(&self) {
            if self.knobs.deliver.load(Ordering::SeqCst)
                && self.in_flight.swap(0, Ordering::SeqCst) > 0
            {
                self.knobs.push(format!("{} delivered", self.name));
            }
        }
        fn in_flight(&self) -> i32 {
            self.in_flight.load(Ordering::SeqCst)
        }
        fn send_offsets(
            &self,
            offsets: &TopicPartitionList,
            _: &(),
            _: Duration,
        ) -> Result<(), TxnError> {
            let o: Vec<String> = offsets
                .elements()
                .iter()
                .map(|e| format!("{:?}", e.offset()))
                .collect();
            self.knobs
                .push(format!("{} offsets {}", self.name, o.join(",")));
            Ok(())
        }
        fn commit(&self, _: Duration) -> Result<(), TxnError> {
            while self.knobs.hold_commit.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.knobs.push(format!("{} commit", self.name));
            if *self.knobs.fail_commit_of.lock().unwrap() == Some(self.name) {
                return Err(TxnError::op(
                    crate::runtime::kafka::txn::TxnOp::CommitTransaction,
                )(KafkaError::Canceled));
            }
            Ok(())
        }
        fn abort(&self, _: Duration) -> Result<(), TxnError> {
            self.knobs.push(format!("{} abort", self.name));
            Ok(())
        }
        fn delivery_failure(&self) -> Option<TxnError> {
            None
        }
        fn clear_failures(&self) {}
        fn transactional_id(&self) -> Option<&str> {
            Some(self.name)
        }
    }

    fn pipeline(knobs: &Arc<Knobs>, exactly_once: bool) -> Pipeline<Fake> {
        pipeline_with_timeout(knobs, exactly_once, Duration::from_secs(5))
    }

    fn pipeline_with_timeout(
        knobs: &Arc<Knobs>,
        exactly_once: bool,
        timeout: Duration,
    ) -> Pipeline<Fake> {
        let fake = |name| Fake {
            name,
            knobs: knobs.clone(),
            in_flight: AtomicI32::new(0),
        };
        Pipeline::new(fake("a"), Some(fake("b")), exactly_once, timeout).unwrap()
    }

    fn send(p: &mut Pipeline<Fake>, topic: &str) {
        p.produce(topic, None, b"k", Some(b"v"), None);
    }

    fn offsets(offset: i64) -> Vec<GroupOffsets<()>> {
        let mut t = TopicPartitionList::new();
        t.add_partition_offset("in", 0, rdkafka::Offset::Offset(offset))
            .unwrap();
        vec![(t, ())]
    }

    /// Serves until the commit in flight has drained.
    fn until_drained(p: &mut Pipeline<Fake>) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while p.in_flight.as_ref().is_some_and(|f| !f.drained) {
            assert!(Instant::now() < deadline, "never drained");
            p.serve();
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn the_next_transaction_is_open_while_the_previous_one_commits() {
        let k = Knobs::new();
        let mut p = pipeline(&k, true);
        assert!(p.is_pipelined());
        send(&mut p, "out1");
        k.hold_commit.store(true, Ordering::SeqCst);
        assert!(p.start_commit(offsets(1)).is_ok());
        assert!(p.committing());
        until_drained(&mut p);
        send(&mut p, "out2");
        assert!(p.poll_commit().is_none(), "still committing");
        k.hold_commit.store(false, Ordering::SeqCst);
        assert!(p.wait_commit().unwrap().is_ok());
        assert!(!p.committing());
        let (b_send, a_commit) = (k.position("b send out2"), k.position("a commit"));
        assert!(
            b_send.unwrap() < a_commit.unwrap(),
            "N+1 was sent into while N committed: {:?}",
            k.calls()
        );
        assert_eq!(k.count("b commit"), 0, "N+1 not committed yet");
        assert!(p.is_open() && p.has_pending());
    }

    /// Writes a record for topic `topic` into the pipeline's outbox.
    fn stage(p: &mut Pipeline<Fake>, topic: &str) {
        let ob = p.outbox();
        let t = ob.topic(topic);
        ob.push(t, None, b"k", Some(b"v"), None);
    }

    #[test]
    fn the_outbox_goes_out_first_in_order_and_counts_as_pending() {
        let k = Knobs::new();
        let mut p = pipeline(&k, true);
        stage(&mut p, "staged1");
        stage(&mut p, "staged2");
        assert!(p.has_pending(), "staged records are pending");
        assert_eq!(k.count("a send staged1"), 0, "not sent before a flush");
        send(&mut p, "direct");
        let calls: Vec<String> = k
            .calls()
            .into_iter()
            .filter(|c| c.contains("send"))
            .collect();
        assert_eq!(
            calls,
            ["a send staged1", "a send staged2", "a send direct"],
            "the outbox is sent before a record sent directly"
        );
        assert!(p.outbox().is_empty());
    }

    #[test]
    fn a_commit_takes_what_waits_in_the_outbox_and_an_abort_discards_it() {
        let k = Knobs::new();
        let mut p = pipeline(&k, true);
        stage(&mut p, "out1");
        p.start_commit(offsets(1)).unwrap();
        p.wait_commit().unwrap().unwrap();
        let (sent, committed) = (k.position("a send out1"), k.position("a commit"));
        assert!(
            sent.unwrap() < committed.unwrap(),
            "the staged record is in the committed transaction: {:?}",
            k.calls()
        );
        send(&mut p, "open");
        stage(&mut p, "doomed");
        p.abort().unwrap();
        assert!(p.outbox().is_empty() && !p.has_pending());
        p.serve();
        assert_eq!(
            k.calls()
                .iter()
                .filter(|c| c.ends_with("send doomed"))
                .count(),
            0,
            "an aborted transaction's staged records are never sent: {:?}",
            k.calls()
        );

        // Without pipelining the commit on this thread takes them too.
        let k = Knobs::new();
        let mut p = pipeline(&k, false);
        stage(&mut p, "out");
        p.commit_now(&[]).unwrap();
        assert!(k.position("a send out").is_some(), "{:?}", k.calls());
        assert!(p.outbox().is_empty());
    }

    #[test]
    fn records_of_the_next_transaction_are_held_until_the_previous_ones_are_delivered() {
        let k = Knobs::new();
        let mut p = pipeline(&k, true);
        send(&mut p, "out1");
        k.deliver.store(false, Ordering::SeqCst);
        p.start_commit(offsets(1)).unwrap();
        send(&mut p, "out2");
        p.serve();
        assert_eq!(k.count("b send out2"), 0, "held: {:?}", k.calls());
        assert!(p.has_pending(), "held records count as pending");
        k.deliver.store(true, Ordering::SeqCst);
        p.wait_commit().unwrap().unwrap();
        let (delivered, sent) = (k.position("a delivered"), k.position("b send out2"));
        assert!(
            delivered.unwrap() < sent.unwrap(),
            "N+1's record went out before N's were delivered: {:?}",
            k.calls()
        );
    }

    #[test]
    fn beyond_the_hold_limit_sending_waits_for_the_drain() {
        let k = Knobs::new();
        let mut p = pipeline(&k, true);
        send(&mut p, "out1");
        k.deliver.store(false, Ordering::SeqCst);
        p.start_commit(offsets(1)).unwrap();
        let big = vec![0u8; HOLD_LIMIT_BYTES];
        p.produce("big", None, b"k", Some(&big), None);
        let releaser = {
            let k = k.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                k.deliver.store(true, Ordering::SeqCst);
            })
        };
        let t = Instant::now();
        send(&mut p, "out2");
        assert!(t.elapsed() >= Duration::from_millis(40), "did not wait");
        assert!(k.position("b send out2").is_some(), "{:?}", k.calls());
        assert!(k.position("a delivered").unwrap() < k.position("b send big").unwrap());
        releaser.join().unwrap();
        p.wait_commit().unwrap().unwrap();
    }

    #[test]
    fn commit_order_is_kept_and_nothing_is_committed_twice() {
        let k = Knobs::new();
        let mut p = pipeline(&k, true);
        send(&mut p, "out1");
        k.hold_commit.store(true, Ordering::SeqCst);
        p.start_commit(offsets(1)).unwrap();
        until_drained(&mut p);
        send(&mut p, "out2");
        assert!(
            p.start_commit(offsets(2)).is_err(),
            "N+1 must not start committing before N has committed"
        );
        k.hold_commit.store(false, Ordering::SeqCst);
        p.wait_commit().unwrap().unwrap();
        p.start_commit(offsets(2)).unwrap();
        p.wait_commit().unwrap().unwrap();
        for round in 3..=6 {
            send(&mut p, "out");
            p.start_commit(offsets(round)).unwrap();
            p.wait_commit().unwrap().unwrap();
        }
        let commits: Vec<String> = k
            .calls()
            .into_iter()
            .filter(|c| c.contains("offsets") || c.ends_with("commit"))
            .collect();
        let expected: Vec<String> = (1..=6)
            .flat_map(|n| {
                let who = if n % 2 == 1 { "a" } else { "b" };
                [
                    format!("{who} offsets Offset({n})"),
                    format!("{who} commit"),
                ]
            })
            .collect();
        assert_eq!(commits, expected, "alternating, in order, each once");
    }

    #[test]
    fn a_failed_commit_is_aborted_and_the_next_transaction_aborted_by_the_caller() {
        let k = Knobs::new();
        let mut p = pipeline(&k, true);
        *k.fail_commit_of.lock().unwrap() = Some("a");
        send(&mut p, "out1");
        k.hold_commit.store(true, Ordering::SeqCst);
        p.start_commit(offsets(1)).unwrap();
        until_drained(&mut p);
        send(&mut p, "out2");
        k.hold_commit.store(false, Ordering::SeqCst);
        assert!(p.wait_commit().unwrap().is_err());
        assert!(
            k.position("a abort").is_some(),
            "N aborted: {:?}",
            k.calls()
        );
        assert!(p.abort().unwrap(), "N+1 was open");
        assert!(k.position("b abort").is_some());
        assert_eq!(k.count("b commit"), 0);
        assert!(!p.is_open() && !p.has_pending());
        // Both producers are usable again.
        *k.fail_commit_of.lock().unwrap() = None;
        send(&mut p, "out3");
        p.start_commit(offsets(1)).unwrap();
        p.wait_commit().unwrap().unwrap();
        assert_eq!(k.calls().last().unwrap(), "b commit");
    }

    #[test]
    fn records_held_for_a_transaction_whose_predecessor_failed_are_dropped() {
        let k = Knobs::new();
        // N's records are never delivered: its drain gives up after the timeout.
        let mut p = pipeline_with_timeout(&k, true, Duration::from_millis(50));
        send(&mut p, "out1");
        k.deliver.store(false, Ordering::SeqCst);
        p.start_commit(offsets(1)).unwrap();
        send(&mut p, "held");
        let e = p.wait_commit().unwrap().unwrap_err();
        assert!(matches!(e, TxnError::Undelivered { .. }), "{e}");
        assert_eq!(k.count("a commit"), 0);
        assert!(k.position("a abort").is_some());
        assert_eq!(k.count("b send held"), 0, "{:?}", k.calls());
        assert!(!p.has_pending());
        assert!(!p.abort().unwrap(), "nothing of N+1 reached the producer");
    }

    #[test]
    fn a_stop_waits_for_the_commit_in_flight() {
        let k = Knobs::new();
        let mut p = pipeline(&k, true);
        send(&mut p, "out1");
        k.hold_commit.store(true, Ordering::SeqCst);
        p.start_commit(offsets(1)).unwrap();
        let releaser = {
            let k = k.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                k.hold_commit.store(false, Ordering::SeqCst);
            })
        };
        let t = Instant::now();
        let took = p.wait_commit().unwrap().unwrap();
        assert!(t.elapsed() >= Duration::from_millis(40) && took >= t.elapsed());
        assert_eq!(k.count("a commit"), 1);
        releaser.join().unwrap();
        // An abort also waits for a commit in flight (which then stands).
        send(&mut p, "out2");
        k.hold_commit.store(true, Ordering::SeqCst);
        p.start_commit(offsets(2)).unwrap();
        let releaser = {
            let k = k.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                k.hold_commit.store(false, Ordering::SeqCst);
            })
        };
        assert!(!p.abort().unwrap(), "nothing open to abort");
        assert_eq!(k.count("b commit"), 1);
        assert!(!p.committing());
        releaser.join().unwrap();
    }

    #[test]
    fn orphaned_offsets_are_released_by_an_aborted_transaction_on_each_producer() {
        let k = Knobs::new();
        let mut p = pipeline(&k, true);
        assert_eq!(p.release_orphaned_holds(&offsets(5), &[]).unwrap(), 2);
        assert_eq!(
            k.calls(),
            [
                "b begin",
                "b offsets Offset(5)",
                "b abort",
                "a begin",
                "a offsets Offset(5)",
                "a abort"
            ]
        );
        assert!(!p.is_open() && !p.has_pending());
        // Both producers go on as before.
        send(&mut p, "out");
        p.start_commit(offsets(6)).unwrap();
        p.wait_commit().unwrap().unwrap();
        assert_eq!(k.calls().last().unwrap(), "a commit");
    }

    #[test]
    fn held_state_partitions_get_a_tombstone_delivered_before_the_abort_on_each_producer() {
        let k = Knobs::new();
        let mut p = pipeline(&k, true);
        let held = [("state", 1), ("surge-state", 0)];
        assert_eq!(p.release_orphaned_holds(&[], &held).unwrap(), 2);
        assert_eq!(
            k.calls(),
            [
                "b begin",
                "b send state[1] tombstone",
                "b send surge-state[0] tombstone",
                "b delivered",
                "b abort",
                "a begin",
                "a send state[1] tombstone",
                "a send surge-state[0] tombstone",
                "a delivered",
                "a abort"
            ]
        );
        assert!(!p.is_open() && !p.has_pending());
        // Offsets and partitions together: the offsets are sent after the delivery.
        let k = Knobs::new();
        let mut p = pipeline(&k, true);
        send(&mut p, "out");
        assert_eq!(
            p.release_orphaned_holds(&offsets(5), &held[..1]).unwrap(),
            1
        );
        assert_eq!(
            k.calls()[2..],
            [
                "b begin",
                "b send state[1] tombstone",
                "b delivered",
                "b offsets Offset(5)",
                "b abort"
            ]
        );
        // The active transaction goes on and commits what it had.
        p.start_commit(offsets(6)).unwrap();
        p.wait_commit().unwrap().unwrap();
        assert_eq!(k.calls().last().unwrap(), "a commit");
    }

    #[test]
    fn a_commit_that_never_returns_is_given_up_and_new_producers_pipeline_again() {
        let k = Knobs::new();
        // 30 ms bound: given up after 65 ms.
        let mut p = pipeline_with_timeout(&k, true, Duration::from_millis(30));
        k.hold_commit.store(true, Ordering::SeqCst);
        send(&mut p, "out1");
        p.start_commit(offsets(1)).unwrap();
        let t0 = Instant::now();
        let outcome = p.wait_commit();
        assert!(
            matches!(outcome, Some(Err(TxnError::CommitStuck { .. }))),
            "{outcome:?}"
        );
        assert!(
            t0.elapsed() >= Duration::from_millis(60),
            "not before its bound"
        );
        assert_eq!(
            outcome.unwrap().unwrap_err().recovery(),
            Recovery::Fatal,
            "new clients, as after a fatal error"
        );
        assert!(!p.is_pipelined() && !p.committing());
        assert!(p.wait_commit().is_none(), "nothing in flight any more");
        // The processor recreates the producers: pipelined again, with a new committer.
        let fresh = |name| Fake {
            name,
            knobs: k.clone(),
            in_flight: AtomicI32::new(0),
        };
        p.replace(fresh("c"), Some(fresh("d")));
        assert!(p.is_pipelined());
        send(&mut p, "out2");
        p.start_commit(offsets(2)).unwrap();
        k.hold_commit.store(false, Ordering::SeqCst);
        p.wait_commit().unwrap().unwrap();
        // Not "the last call": the given-up thread's commit, released by the same store,
        // may log after it.
        assert_eq!(k.count("c commit"), 1, "{:?}", k.calls());
        assert_eq!(p.transactional_id(), Some("d"));
        // The given-up thread returns once its commit does; its report reaches nobody.
        let until = Instant::now() + Duration::from_secs(5);
        while k.count("a commit") == 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(k.count("a commit"), 1);
        assert!(
            p.poll_commit().is_none(),
            "its outcome is not the pipeline's"
        );
    }

    #[test]
    fn each_idle_producer_commits_the_release_planned_for_its_own_id() {
        let k = Knobs::new();
        let mut p = pipeline(&k, true);
        assert_eq!(p.transactional_id(), Some("a"), "records sent now are a's");
        let mut asked = Vec::new();
        let used = p
            .commit_orphaned_holds(|id| {
                asked.push(id.map(str::to_string));
                match id {
                    Some("a") => (vec![("state".to_string(), 1)], offsets(14)),
                    _ => (Vec::new(), Vec::new()),
                }
            })
            .unwrap();
        assert_eq!(asked, [Some("b".to_string()), Some("a".to_string())]);
        assert_eq!(used, 1, "b had nothing to commit");
        assert_eq!(
            k.calls(),
            [
                "a begin",
                "a send state[1] tombstone",
                "a delivered",
                "a offsets Offset(14)",
                "a commit"
            ]
        );
        // After a commit, the other producer sends.
        send(&mut p, "out");
        p.start_commit(offsets(15)).unwrap();
        p.wait_commit().unwrap().unwrap();
        assert_eq!(p.transactional_id(), Some("b"));
    }

    #[test]
    fn offsets_are_released_only_on_a_producer_with_nothing_open_or_committing() {
        let k = Knobs::new();
        let mut p = pipeline(&k, true);
        send(&mut p, "out1");
        // "a" has a transaction open: only the spare "b" is released.
        assert_eq!(p.release_orphaned_holds(&offsets(5), &[]).unwrap(), 1);
        assert_eq!(k.count("a offsets Offset(5)"), 0);
        assert_eq!(k.count("b offsets Offset(5)"), 1);
        k.hold_commit.store(true, Ordering::SeqCst);
        p.start_commit(offsets(1)).unwrap();
        until_drained(&mut p);
        // "a" commits, "b" is active and idle.
        assert_eq!(p.release_orphaned_holds(&offsets(6), &[]).unwrap(), 1);
        assert_eq!(
            k.count("a offsets Offset(6)"),
            0,
            "committing: {:?}",
            k.calls()
        );
        assert_eq!(k.count("b offsets Offset(6)"), 1);
        send(&mut p, "out2");
        // "a" still commits, "b" has a record: nothing is idle.
        assert_eq!(p.release_orphaned_holds(&offsets(7), &[]).unwrap(), 0);
        k.hold_commit.store(false, Ordering::SeqCst);
        p.wait_commit().unwrap().unwrap();
        // After the commit, "a" is the spare and is released; "b" keeps its transaction.
        assert_eq!(p.release_orphaned_holds(&offsets(8), &[]).unwrap(), 1);
        assert_eq!(k.count("a offsets Offset(8)"), 1);
        assert!(p.is_open() && p.has_pending(), "b's transaction goes on");
        p.start_commit(offsets(2)).unwrap();
        p.wait_commit().unwrap().unwrap();
        assert_eq!(k.calls().last().unwrap(), "b commit");
        let mut alo = pipeline(&Knobs::new(), false);
        assert_eq!(alo.release_orphaned_holds(&offsets(5), &[]).unwrap(), 0);
    }

    #[test]
    fn at_least_once_is_not_pipelined() {
        let k = Knobs::new();
        let mut p = pipeline(&k, false);
        assert!(!p.is_pipelined());
        send(&mut p, "out");
        assert!(p.start_commit(offsets(1)).is_err());
        p.commit_now(&[]).unwrap();
        assert_eq!(k.calls(), ["a send out", "a delivered"]);
    }
}
