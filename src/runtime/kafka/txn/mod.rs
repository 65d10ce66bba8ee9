//! The only code that drives the producer: records are sent into a transaction opened
//! lazily, delivery failures are remembered, and a commit drains what is in flight, adds the
//! consumed offsets and commits (retrying what librdkafka calls retriable). [`Txn`] is
//! generic over [`TxnProducer`], so its rules are unit-tested against a fake producer; the
//! Kafka tests (tests/kafka_*.rs) prove the real one.
//!
//! Failures are typed ([`TxnError`]) and say what to do about them ([`Recovery`]): reset
//! (abort, restore every partition from the state topics) or fatal (stop, or recreate the
//! clients after a broker outage) — decided from librdkafka's flags, never from a message.
mod producer;

pub use producer::{new_producer, OutputProducer, ProducerCtx};

use crate::telemetry::ErrorReason;
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;
use rdkafka::topic_partition_list::TopicPartitionList;
use std::time::{Duration, Instant};

/// A producer-side or commit-path operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnOp {
    BeginTransaction,
    SendOffsetsToTransaction,
    CommitTransaction,
    AbortTransaction,
    /// Offsets committed by the consumer (at-least-once).
    CommitOffsets,
}

impl TxnOp {
    pub fn as_str(self) -> &'static str {
        match self {
            TxnOp::BeginTransaction => "begin_transaction",
            TxnOp::SendOffsetsToTransaction => "send_offsets_to_transaction",
            TxnOp::CommitTransaction => "commit_transaction",
            TxnOp::AbortTransaction => "abort_transaction",
            TxnOp::CommitOffsets => "committing offsets",
        }
    }
}

impl std::fmt::Display for TxnOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong.
#[derive(Clone, Debug, thiserror::Error)]
pub enum TxnError {
    /// A producer or consumer operation failed; `fatal` and `retriable` are librdkafka's
    /// flags for transactional errors (both false for other errors).
    #[error("{op}: {source}")]
    Op {
        op: TxnOp,
        #[source]
        source: KafkaError,
        fatal: bool,
        retriable: bool,
    },
    /// `send` refused a record (not for a full queue: that is waited out).
    #[error("producing to {topic}: {source}")]
    Produce {
        topic: String,
        #[source]
        source: KafkaError,
    },
    /// A delivery report said a record was not written.
    #[error("delivery to {topic} failed: {source}")]
    Delivery {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("{count} records still undelivered after {waited:?}")]
    Undelivered { count: i32, waited: Duration },
    #[error("no consumer group metadata")]
    NoGroupMetadata,
    /// A pipelined commit did not return within twice its operation bound: librdkafka can
    /// block in `send_offsets_to_transaction` for ever after a broker restart, its timeout
    /// unheeded (librdkafka issues #5456, #5511; seen in the broker-restart fault test,
    /// the committer thread waiting in `rd_kafka_txn_op_req0` with no timeout). The
    /// producer is given up: new clients, as after a fatal error.
    #[error("the commit in flight has not returned after {waited:?} (the producer is given up)")]
    CommitStuck { waited: Duration },
}

/// What the processor does about a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Abort (exactly-once) and restore every partition from the state topics: memory may
    /// hold what Kafka does not.
    Reset,
    /// The producer cannot go on (fenced by a newer replica with the same transactional id,
    /// or librdkafka's fatal state): stop, or recreate the clients after an outage.
    Fatal,
}

impl TxnError {
    /// An operation's error, with librdkafka's fatal / retriable flags.
    pub fn op(op: TxnOp) -> impl FnOnce(KafkaError) -> TxnError {
        move |source| {
            let (fatal, retriable) = match &source {
                KafkaError::Transaction(e) => (e.is_fatal(), e.is_retriable()),
                _ => (false, false),
            };
            TxnError::Op {
                op,
                source,
                fatal,
                retriable,
            }
        }
    }

    pub fn recovery(&self) -> Recovery {
        match self {
            TxnError::Op { fatal: true, .. } | TxnError::CommitStuck { .. } => Recovery::Fatal,
            _ => Recovery::Reset,
        }
    }

    /// The metric label of this failure.
    pub fn reason(&self) -> ErrorReason {
        match self {
            TxnError::Op { op, .. } => match op {
                TxnOp::BeginTransaction => ErrorReason::BeginTransaction,
                TxnOp::SendOffsetsToTransaction => ErrorReason::SendOffsets,
                TxnOp::CommitTransaction => ErrorReason::CommitTransaction,
                TxnOp::AbortTransaction => ErrorReason::AbortTransaction,
                TxnOp::CommitOffsets => ErrorReason::CommitOffsets,
            },
            TxnError::Produce { .. } => ErrorReason::Produce,
            TxnError::Delivery { .. } => ErrorReason::Delivery,
            TxnError::Undelivered { .. } => ErrorReason::Undelivered,
            TxnError::NoGroupMetadata => ErrorReason::NoGroupMetadata,
            TxnError::CommitStuck { .. } => ErrorReason::CommitStuck,
        }
    }

    /// Whether retrying the same operation may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            TxnError::Op {
                retriable: true,
                ..
            }
        )
    }
}

/// One record to produce.
pub struct OutRecord<'a> {
    pub topic: &'a str,
    /// `None`: the producer's partitioner (by key).
    pub partition: Option<i32>,
    pub key: &'a [u8],
    /// `None`: a tombstone.
    pub value: Option<&'a [u8]>,
    pub headers: Option<OwnedHeaders>,
}

/// Why `send` did not take a record.
pub enum SendRefused<'a> {
    /// The local queue is full: serve delivery reports and offer it again.
    QueueFull(OutRecord<'a>),
    Failed(KafkaError),
}

/// What [`Txn`] needs of a producer (librdkafka's, or a fake in tests). Errors come typed
/// (see [`TxnError::op`]).
pub trait TxnProducer {
    /// What `send_offsets` needs of the consumer group (its metadata).
    type Group;
    fn begin(&self) -> Result<(), TxnError>;
    fn send<'a>(&self, rec: OutRecord<'a>) -> Result<(), SendRefused<'a>>;
    /// Serves delivery reports without blocking.
    fn serve(&self);
    /// Waits up to `wait` for what is queued to be delivered, having it sent at once
    /// (regardless of `linger.ms`). A fake has nothing to send: it sleeps.
    fn hurry(&self, wait: Duration) {
        std::thread::sleep(wait);
    }
    fn in_flight(&self) -> i32;
    fn send_offsets(
        &self,
        offsets: &TopicPartitionList,
        group: &Self::Group,
        timeout: Duration,
    ) -> Result<(), TxnError>;
    fn commit(&self, timeout: Duration) -> Result<(), TxnError>;
    fn abort(&self, timeout: Duration) -> Result<(), TxnError>;
    /// The first delivery failure since the last [`TxnProducer::clear_failures`].
    fn delivery_failure(&self) -> Option<TxnError>;
    fn clear_failures(&self);
    /// Its `transactional.id` (`None`: not transactional).
    fn transactional_id(&self) -> Option<&str>;
}

/// Commit attempts of a retriable `commit_transaction` error.
const COMMIT_ATTEMPTS: u32 = 4;

/// One `abort_transaction` call's bound. The abort purges what is queued and then waits for
/// the delivery reports of what is in flight, which only a poll serves: the abort is called
/// in short steps with the reports served between them, until done or the operation bound.
const ABORT_STEP: Duration = Duration::from_millis(20);

/// One wait of [`Txn::drain`] for the queue to empty (it returns as soon as it is).
const HURRY_STEP: Duration = Duration::from_millis(1);

/// What is left of an operation bound (at least a millisecond: librdkafka treats a zero
/// timeout as "do not wait at all", which fails an operation that is already under way).
fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

/// The producer side of the processor: sends records, opening a transaction lazily
/// (exactly-once), and commits or aborts it.
pub struct Txn<P: TxnProducer> {
    pub producer: P,
    pub exactly_once: bool,
    /// A transaction is open.
    open: bool,
    /// Records sent since the last commit.
    pending: bool,
    /// A send failed for another reason than a full queue: the commit must not happen.
    broken: Option<TxnError>,
    /// An abort ran out of time (retriably): librdkafka is still aborting, and the abort
    /// is resumed by [`Txn::tend`] and before the next transaction begins
    /// (`begin_transaction` would fail with "conflicting abort_transaction API call is
    /// already in progress" for ever).
    aborting: bool,
    /// Bound on one broker operation.
    timeout: Duration,
}

impl<P: TxnProducer> Txn<P> {
    pub fn new(producer: P, exactly_once: bool, timeout: Duration) -> Txn<P> {
        Txn {
            producer,
            exactly_once,
            open: false,
            pending: false,
            broken: None,
            aborting: false,
            timeout,
        }
    }

    /// Whether a transaction is open (exactly-once).
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Whether records were sent since the last commit or abort.
    pub fn has_pending(&self) -> bool {
        self.pending
    }

    /// Sends a record (opening a transaction first with exactly-once); waits out a full
    /// queue. After a failure nothing more is sent until the abort.
    pub fn send(&mut self, rec: OutRecord<'_>) {
        if self.broken.is_some() {
            return;
        }
        if self.exactly_once && !self.open {
            if let Err(e) = self.begin() {
                self.broken = Some(e);
                return;
            }
        }
        if let Err(e) = self.offer(rec, None) {
            self.broken = Some(e);
            return;
        }
        self.pending = true;
    }

    /// Serves the producer without blocking: its delivery reports, and one step of an abort
    /// that ran out of time. Such an abort only proceeds while someone serves the producer,
    /// and until it does the broker keeps the transaction open: its consumed offsets stay
    /// pending, and a restore's require-stable offset fetch for those partitions waits
    /// until the broker times the transaction out (a minute and more).
    pub fn tend(&mut self) {
        self.producer.serve();
        if self.exactly_once && self.aborting {
            match self.producer.abort(Duration::ZERO) {
                Ok(()) => {
                    self.aborting = false;
                    tracing::info!("a transaction left aborting is aborted");
                }
                Err(e) if e.is_retriable() => {}
                Err(e) => {
                    self.aborting = false;
                    tracing::warn!(error = %e, "resuming an abort failed");
                }
            }
        }
    }

    /// Waits until nothing is in flight, serving delivery reports in short steps. (A
    /// `commit_transaction` with records in flight waits in 100 ms steps; and rust-rdkafka's
    /// `poll(1 ms)` busy-loops for its sub-millisecond remainder, which on a small box takes
    /// the CPU the broker and librdkafka's threads need — so: serve, then wait up to a
    /// [`HURRY_STEP`] for the queue to empty, with what lingers sent at once.)
    pub fn drain(&self) -> Result<(), TxnError> {
        self.drain_until(Instant::now() + self.timeout)
    }

    /// [`Txn::drain`] with the bound given as a deadline.
    fn drain_until(&self, deadline: Instant) -> Result<(), TxnError> {
        let started = Instant::now();
        loop {
            self.producer.serve();
            let count = self.producer.in_flight();
            if count == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(TxnError::Undelivered {
                    count,
                    waited: started.elapsed(),
                });
            }
            self.producer.hurry(HURRY_STEP);
        }
    }

    /// The first failure since the last commit or abort, if any.
    pub fn failure(&self) -> Option<TxnError> {
        self.broken
            .clone()
            .or_else(|| self.producer.delivery_failure())
    }

    /// Drains, checks for failures, then — with exactly-once — adds the consumed offsets
    /// (a transaction is opened for them if none is) and commits. `offsets` pairs each
    /// group's offsets with its metadata; empty lists are skipped. The whole commit, retries
    /// included, is bounded by one operation timeout: while the broker is away, whoever
    /// waits for this commit (a rebalance, the stop) waits that long at most, and then the
    /// transaction is aborted.
    pub fn commit(&mut self, offsets: &[(&TopicPartitionList, &P::Group)]) -> Result<(), TxnError> {
        let t0 = Instant::now();
        let deadline = t0 + self.timeout;
        self.drain_until(deadline)?;
        let t1 = Instant::now();
        if let Some(e) = self.failure() {
            return Err(e);
        }
        if !self.exactly_once {
            self.pending = false;
            return Ok(());
        }
        let has_offsets = offsets.iter().any(|(tpl, _)| tpl.count() > 0);
        if !self.open {
            if !has_offsets {
                self.pending = false;
                return Ok(());
            }
            self.begin()?;
        }
        self.send_offsets(offsets, deadline)?;
        let t2 = Instant::now();
        let mut attempts = 1;
        loop {
            match self.producer.commit(remaining(deadline)) {
                Ok(()) => break,
                Err(e)
                    if e.is_retriable()
                        && attempts < COMMIT_ATTEMPTS
                        && Instant::now() < deadline =>
                {
                    attempts += 1;
                    tracing::warn!(error = %e, "retriable error; retrying");
                }
                Err(e) => return Err(e),
            }
        }
        self.open = false;
        self.pending = false;
        tracing::debug!(
            drain_us = (t1 - t0).as_micros() as u64,
            offsets_us = (t2 - t1).as_micros() as u64,
            commit_us = t2.elapsed().as_micros() as u64,
            "commit phases"
        );
        Ok(())
    }

    /// Aborts the open transaction (exactly-once) and forgets pending failures. `Ok(true)`
    /// when a transaction was aborted.
    pub fn abort(&mut self) -> Result<bool, TxnError> {
        let mut r = Ok(false);
        if self.exactly_once && (self.open || self.aborting) {
            let was_open = self.open;
            r = self.finish_abort().map(|()| was_open);
            self.open = false;
        }
        self.pending = false;
        self.clear_failures();
        r
    }

    /// A transaction that writes a tombstone of `key` to each of `partitions` (topic,
    /// partition), waits for their delivery, sends `offsets`, and is aborted. Its abort
    /// marker ends whatever this producer left undecided in those partitions and drops every
    /// transactional offset commit it left pending in those groups (see
    /// [`crate::runtime::changelog::held`]); nothing it wrote is ever committed. Only while
    /// no transaction is open.
    pub fn discard_orphans(
        &mut self,
        offsets: &[(&TopicPartitionList, &P::Group)],
        partitions: &[(&str, i32)],
        key: &[u8],
    ) -> Result<(), TxnError> {
        if !self.exactly_once || self.open {
            return Ok(());
        }
        let deadline = Instant::now() + self.timeout;
        self.begin()?;
        let sent = self
            .deliver_tombstones(partitions, key, deadline)
            .and_then(|()| self.send_offsets(offsets, deadline));
        sent.and(self.end_release())
    }

    /// Sends a tombstone of `key` to each partition and waits for their delivery, until
    /// `deadline`: the coordinator writes a marker only to partitions the transaction added,
    /// and librdkafka adds one with its first delivered record (a marker before the
    /// delivery would purge the tombstone and leave the partition as it was).
    fn deliver_tombstones(
        &mut self,
        partitions: &[(&str, i32)],
        key: &[u8],
        deadline: Instant,
    ) -> Result<(), TxnError> {
        self.write_tombstones(partitions, key, deadline)
            .and_then(|()| self.drain_until(deadline))
            .and_then(|()| self.producer.delivery_failure().map_or(Ok(()), Err))
    }

    /// Aborts a release's transaction and forgets its failures: the next one starts clean.
    fn end_release(&mut self) -> Result<(), TxnError> {
        let aborted = self.finish_abort();
        self.open = false;
        self.clear_failures();
        aborted
    }

    /// Ends what this producer left undecided in `partitions` as committed (records of a
    /// transaction the coordinator committed whose markers never reached them, or of one
    /// rolled forward; see [`crate::runtime::changelog::held`]): a transaction that writes
    /// a tombstone of `key` to each, waits for its delivery (the coordinator writes a marker
    /// only to partitions the transaction added), sends `offsets` and commits. Nothing while
    /// a transaction is open; on a failure the transaction is aborted and the error
    /// returned.
    pub fn commit_orphans(
        &mut self,
        partitions: &[(&str, i32)],
        offsets: &[(&TopicPartitionList, &P::Group)],
        key: &[u8],
    ) -> Result<(), TxnError> {
        let has_offsets = offsets.iter().any(|(tpl, _)| tpl.count() > 0);
        if !self.exactly_once || self.open || (partitions.is_empty() && !has_offsets) {
            return Ok(());
        }
        let deadline = Instant::now() + self.timeout;
        self.begin()?;
        let committed = self
            .deliver_tombstones(partitions, key, deadline)
            .and_then(|()| self.commit(offsets));
        if committed.is_err() {
            let _ = self.end_release();
        }
        committed
    }

    /// Sends a tombstone of `key` to each partition, waiting out a full queue until
    /// `deadline`.
    fn write_tombstones(
        &self,
        partitions: &[(&str, i32)],
        key: &[u8],
        deadline: Instant,
    ) -> Result<(), TxnError> {
        for &(topic, partition) in partitions {
            let rec = OutRecord {
                topic,
                partition: Some(partition),
                key,
                value: None,
                headers: None,
            };
            self.offer(rec, Some(deadline))?;
        }
        Ok(())
    }

    /// Hands a record to the producer, serving delivery reports while its queue is full,
    /// until `deadline` (`None`: for as long as it takes).
    fn offer(&self, rec: OutRecord<'_>, deadline: Option<Instant>) -> Result<(), TxnError> {
        let topic = rec.topic;
        let mut rec = rec;
        loop {
            match self.producer.send(rec) {
                Ok(()) => return Ok(()),
                Err(SendRefused::QueueFull(r)) if deadline.is_none_or(|d| Instant::now() < d) => {
                    rec = r;
                    self.producer.serve();
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(SendRefused::QueueFull(_)) => {
                    return Err(TxnError::Undelivered {
                        count: self.producer.in_flight(),
                        waited: self.timeout,
                    })
                }
                Err(SendRefused::Failed(e)) => {
                    return Err(TxnError::Produce {
                        topic: topic.to_string(),
                        source: e,
                    })
                }
            }
        }
    }

    /// Adds each group's offsets to the open transaction (empty lists skipped), all within
    /// `deadline`.
    fn send_offsets(
        &self,
        offsets: &[(&TopicPartitionList, &P::Group)],
        deadline: Instant,
    ) -> Result<(), TxnError> {
        offsets
            .iter()
            .filter(|(tpl, _)| tpl.count() > 0)
            .try_for_each(|(tpl, group)| {
                self.producer.send_offsets(tpl, group, remaining(deadline))
            })
    }

    /// Begins a transaction, first finishing an abort that ran out of time.
    fn begin(&mut self) -> Result<(), TxnError> {
        if self.aborting {
            self.finish_abort()?;
        }
        self.producer.begin()?;
        self.open = true;
        Ok(())
    }

    /// Calls `abort_transaction` in [`ABORT_STEP`]s, serving delivery reports between
    /// them, until it completes, fails for good, or the operation bound passes (then
    /// `aborting` stays set and the next [`Txn::begin`] resumes it).
    fn finish_abort(&mut self) -> Result<(), TxnError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            self.producer.serve();
            match self.producer.abort(ABORT_STEP.min(self.timeout)) {
                Ok(()) => {
                    self.aborting = false;
                    return Ok(());
                }
                Err(e) if e.is_retriable() && Instant::now() < deadline => {}
                Err(e) => {
                    self.aborting = e.is_retriable();
                    if self.aborting {
                        tracing::warn!(error = %e, "the abort ran out of time; it is resumed while the producer is served");
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Forgets failures and the open transaction (the producer was replaced).
    pub fn replace(&mut self, producer: P) {
        self.producer = producer;
        self.open = false;
        self.aborting = false;
        self.pending = false;
        self.clear_failures();
    }

    fn clear_failures(&mut self) {
        self.broken = None;
        self.producer.clear_failures();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::types::RDKafkaErrorCode;
    use std::cell::{Cell, RefCell};

    /// A producer that logs calls and fails as told.
    #[derive(Default)]
    struct Fake {
        log: RefCell<Vec<String>>,
        /// Sends answered QueueFull before one is taken.
        queue_full: Cell<u32>,
        fail_send: Cell<bool>,
        fail_begin: Cell<bool>,
        /// Commit errors to return, in order (then Ok).
        commit_errors: RefCell<Vec<TxnError>>,
        in_flight: Cell<i32>,
        delivery: RefCell<Option<TxnError>>,
        /// Abort calls answered with a retriable timeout before one succeeds.
        abort_timeouts: Cell<u32>,
        /// Commits run out their whole timeout and fail retriably (a broker that is away).
        commit_times_out: Cell<bool>,
        /// The timeouts commits were given.
        commit_timeouts: RefCell<Vec<Duration>>,
    }

    impl Fake {
        fn calls(&self) -> Vec<String> {
            self.log.borrow().clone()
        }
    }

    fn err() -> KafkaError {
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)
    }

    fn abort_timeout() -> TxnError {
        TxnError::Op {
            op: TxnOp::AbortTransaction,
            source: KafkaError::Canceled,
            fatal: false,
            retriable: true,
        }
    }

    impl TxnProducer for Fake {
        type Group = ();
        fn begin(&self) -> Result<(), TxnError> {
            self.log.borrow_mut().push("begin".into());
            if self.fail_begin.get() {
                return Err(TxnError::op(TxnOp::BeginTransaction)(err()));
            }
            Ok(())
        }
        fn send<'a>(&self, rec: OutRecord<'a>) -> Result<(), SendRefused<'a>> {
            if self.queue_full.get() > 0 {
                self.queue_full.set(self.queue_full.get() - 1);
                self.log.borrow_mut().push("full".into());
                return Err(SendRefused::QueueFull(rec));
            }
            if self.fail_send.get() {
                return Err(SendRefused::Failed(err()));
            }
            self.log.borrow_mut().push(format!("send {}", rec.topic));
            self.in_flight.set(self.in_flight.get() + 1);
            Ok(())
        }
        fn serve(&self) {
            // Everything in flight is delivered on the first serve.
            self.in_flight.set(0);
        }
        fn in_flight(&self) -> i32 {
            self.in_flight.get()
        }
        fn send_offsets(
            &self,
            offsets: &TopicPartitionList,
            _: &(),
            _: Duration,
        ) -> Result<(), TxnError> {
            self.log
                .borrow_mut()
                .push(format!("offsets {}", offsets.count()));
            Ok(())
        }
        fn commit(&self, timeout: Duration) -> Result<(), TxnError> {
            self.log.borrow_mut().push("commit".into());
            self.commit_timeouts.borrow_mut().push(timeout);
            if self.commit_times_out.get() {
                std::thread::sleep(timeout);
                return Err(TxnError::Op {
                    op: TxnOp::CommitTransaction,
                    source: KafkaError::Canceled,
                    fatal: false,
                    retriable: true,
                });
            }
            let mut errors = self.commit_errors.borrow_mut();
            if errors.is_empty() {
                return Ok(());
            }
            Err(errors.remove(0))
        }
        fn abort(&self, _: Duration) -> Result<(), TxnError> {
            self.log.borrow_mut().push("abort".into());
            // librdkafka's abort waits for the delivery reports of what is in flight.
            if self.in_flight.get() > 0 || self.abort_timeouts.get() > 0 {
                self.abort_timeouts
                    .set(self.abort_timeouts.get().saturating_sub(1));
                return Err(abort_timeout());
            }
            Ok(())
        }
        fn delivery_failure(&self) -> Option<TxnError> {
            self.delivery.borrow().clone()
        }
        fn clear_failures(&self) {
            *self.delivery.borrow_mut() = None;
        }
        fn transactional_id(&self) -> Option<&str> {
            Some("fake")
        }
    }

    fn rec(topic: &str) -> OutRecord<'_> {
        OutRecord {
            topic,
            partition: None,
            key: b"k",
            value: Some(b"v"),
            headers: None,
        }
    }

    fn offsets(n: i32) -> TopicPartitionList {
        let mut t = TopicPartitionList::new();
        for p in 0..n {
            t.add_partition("in", p);
        }
        t
    }

    fn txn() -> Txn<Fake> {
        Txn::new(Fake::default(), true, Duration::from_secs(1))
    }

    #[test]
    fn a_transaction_opens_with_the_first_record_and_commits_with_the_offsets() {
        let mut t = txn();
        assert!(!t.is_open());
        t.send(rec("out"));
        t.send(rec("state"));
        assert!(t.is_open() && t.has_pending());
        let o = offsets(2);
        t.commit(&[(&o, &()), (&offsets(0), &())]).unwrap();
        assert!(!t.is_open() && !t.has_pending());
        assert_eq!(
            t.producer.calls(),
            ["begin", "send out", "send state", "offsets 2", "commit"]
        );
        t.send(rec("out"));
        assert_eq!(t.producer.calls().last().unwrap(), "send out");
        assert_eq!(
            t.producer.calls().iter().filter(|c| *c == "begin").count(),
            2
        );
    }

    #[test]
    fn offsets_alone_get_a_transaction_and_nothing_at_all_commits_nothing() {
        let mut t = txn();
        t.commit(&[(&offsets(0), &())]).unwrap();
        assert!(t.producer.calls().is_empty());
        t.commit(&[(&offsets(1), &())]).unwrap();
        assert_eq!(t.producer.calls(), ["begin", "offsets 1", "commit"]);
    }

    #[test]
    fn a_full_queue_is_waited_out() {
        let mut t = txn();
        t.producer.queue_full.set(3);
        t.send(rec("out"));
        assert_eq!(
            t.producer.calls(),
            ["begin", "full", "full", "full", "send out"]
        );
        assert!(t.failure().is_none());
    }

    #[test]
    fn a_refused_record_breaks_the_transaction_until_the_abort() {
        let mut t = txn();
        t.producer.fail_send.set(true);
        t.send(rec("out"));
        t.producer.fail_send.set(false);
        t.send(rec("state"));
        let e = t.commit(&[(&offsets(1), &())]).unwrap_err();
        assert!(
            matches!(&e, TxnError::Produce { topic, .. } if topic == "out"),
            "{e}"
        );
        assert_eq!(e.recovery(), Recovery::Reset);
        assert_eq!(
            t.producer.calls(),
            ["begin"],
            "nothing sent or committed after it"
        );
        assert!(t.abort().unwrap(), "a transaction was open");
        assert!(t.failure().is_none());
        t.send(rec("out"));
        assert_eq!(t.producer.calls().last().unwrap(), "send out");
    }

    #[test]
    fn a_failed_begin_breaks_the_transaction() {
        let mut t = txn();
        t.producer.fail_begin.set(true);
        t.send(rec("out"));
        assert!(!t.is_open());
        let e = t.failure().unwrap();
        assert!(
            matches!(
                e,
                TxnError::Op {
                    op: TxnOp::BeginTransaction,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn a_delivery_failure_stops_the_commit() {
        let mut t = txn();
        t.send(rec("out"));
        *t.producer.delivery.borrow_mut() = Some(TxnError::Delivery {
            topic: "out".into(),
            source: err(),
        });
        let e = t.commit(&[(&offsets(1), &())]).unwrap_err();
        assert!(matches!(e, TxnError::Delivery { .. }));
        assert!(!t.producer.calls().contains(&"commit".to_string()));
        t.abort().unwrap();
        assert!(t.failure().is_none(), "the abort forgets it");
    }

    #[test]
    fn a_commit_whose_attempts_time_out_gives_up_within_one_operation_bound() {
        let bound = Duration::from_millis(200);
        let mut t = Txn::new(Fake::default(), true, bound);
        t.producer.commit_times_out.set(true);
        t.send(rec("out"));
        let e = t.commit(&[]).unwrap_err();
        assert!(e.is_retriable(), "{e}");
        // Each attempt is given only what is left of the bound, not a bound of its own.
        let given = t.producer.commit_timeouts.borrow().clone();
        let total: Duration = given.iter().sum();
        assert!(
            total <= bound + Duration::from_millis(1) * given.len() as u32,
            "the attempts were given {given:?}, more than one bound ({bound:?}) in all"
        );
        assert!(t.is_open(), "still open: the caller aborts");
    }

    #[test]
    fn retriable_commit_errors_are_retried_a_bounded_number_of_times() {
        let commit_error = |retriable| TxnError::Op {
            op: TxnOp::CommitTransaction,
            source: KafkaError::Canceled,
            fatal: false,
            retriable,
        };
        // Two retriable errors, then success.
        let mut t = txn();
        t.producer
            .commit_errors
            .borrow_mut()
            .extend([commit_error(true), commit_error(true)]);
        t.send(rec("out"));
        t.commit(&[]).unwrap();
        assert_eq!(
            t.producer.calls().iter().filter(|c| *c == "commit").count(),
            3
        );
        assert!(!t.is_open());
        // Retriable errors without end: given up after COMMIT_ATTEMPTS.
        let mut t = txn();
        t.producer
            .commit_errors
            .borrow_mut()
            .extend((0..10).map(|_| commit_error(true)));
        t.send(rec("out"));
        assert!(t.commit(&[]).unwrap_err().is_retriable());
        assert_eq!(
            t.producer.calls().iter().filter(|c| *c == "commit").count(),
            COMMIT_ATTEMPTS as usize
        );
        assert!(t.is_open(), "still open: the caller aborts");
        // A non-retriable error is not retried.
        let mut t = txn();
        t.producer
            .commit_errors
            .borrow_mut()
            .push(commit_error(false));
        t.send(rec("out"));
        assert!(t.commit(&[]).is_err());
        assert_eq!(
            t.producer.calls().iter().filter(|c| *c == "commit").count(),
            1
        );
    }

    #[test]
    fn a_fatal_error_is_fatal() {
        let e = TxnError::Op {
            op: TxnOp::CommitTransaction,
            source: KafkaError::Canceled,
            fatal: true,
            retriable: false,
        };
        assert_eq!(e.recovery(), Recovery::Fatal);
        for e in [
            TxnError::NoGroupMetadata,
            TxnError::Undelivered {
                count: 1,
                waited: Duration::from_secs(1),
            },
        ] {
            assert_eq!(e.recovery(), Recovery::Reset, "{e}");
        }
    }

    #[test]
    fn records_in_flight_are_delivered_before_the_commit() {
        let mut t = txn();
        t.send(rec("out"));
        assert_eq!(t.producer.in_flight(), 1);
        t.commit(&[]).unwrap();
        assert_eq!(t.producer.in_flight(), 0);
    }

    #[test]
    fn an_abort_serves_delivery_reports_and_resumes_until_done() {
        let mut t = txn();
        t.send(rec("out"));
        t.producer.abort_timeouts.set(3);
        assert!(t.abort().unwrap(), "a transaction was aborted");
        assert_eq!(t.producer.in_flight(), 0, "delivery reports served");
        assert_eq!(
            t.producer.calls().iter().filter(|c| *c == "abort").count(),
            4
        );
        t.send(rec("out"));
        assert_eq!(
            t.producer.calls()[t.producer.calls().len() - 2..],
            ["begin", "send out"]
        );
    }

    #[test]
    fn an_abort_out_of_time_is_resumed_before_the_next_begin() {
        let mut t = Txn::new(Fake::default(), true, Duration::from_millis(30));
        t.send(rec("out"));
        t.producer.abort_timeouts.set(u32::MAX);
        assert!(t.abort().unwrap_err().is_retriable());
        assert!(!t.is_open());
        // The broker answers again: the next record first finishes the abort.
        t.producer.abort_timeouts.set(0);
        let aborts = t.producer.calls().iter().filter(|c| *c == "abort").count();
        t.send(rec("out"));
        assert!(t.failure().is_none());
        let calls = t.producer.calls();
        assert_eq!(
            calls.iter().filter(|c| *c == "abort").count(),
            aborts + 1,
            "resumed once"
        );
        assert_eq!(calls[calls.len() - 3..], ["abort", "begin", "send out"]);
        // A later abort with nothing open calls nothing.
        t.commit(&[]).unwrap();
        let n = t.producer.calls().len();
        assert!(!t.abort().unwrap());
        assert_eq!(t.producer.calls().len(), n);
    }

    #[test]
    fn an_idle_producer_left_aborting_finishes_the_abort_when_tended() {
        let mut t = Txn::new(Fake::default(), true, Duration::from_millis(30));
        t.send(rec("out"));
        t.producer.abort_timeouts.set(u32::MAX);
        assert!(t.abort().unwrap_err().is_retriable());
        t.tend();
        assert!(t.aborting, "still out of reach: stays aborting");
        t.producer.abort_timeouts.set(0);
        let aborts = t.producer.calls().iter().filter(|c| *c == "abort").count();
        t.tend();
        assert!(!t.aborting, "finished without a new transaction");
        assert_eq!(
            t.producer.calls().iter().filter(|c| *c == "abort").count(),
            aborts + 1
        );
        // Nothing left to resume: tending calls no abort, and the next record begins at once.
        t.tend();
        t.send(rec("out"));
        let calls = t.producer.calls();
        assert_eq!(calls.iter().filter(|c| *c == "abort").count(), aborts + 1);
        assert_eq!(calls[calls.len() - 2..], ["begin", "send out"]);
    }

    #[test]
    fn discarding_orphans_aborts_even_when_a_tombstone_is_not_delivered() {
        let mut t = txn();
        t.producer.queue_full.set(2);
        t.discard_orphans(&[(&offsets(1), &())], &[("state", 0), ("state", 2)], b"x")
            .unwrap();
        assert_eq!(
            t.producer.calls(),
            [
                "begin",
                "full",
                "full",
                "send state",
                "send state",
                "offsets 1",
                "abort"
            ],
            "a full queue is waited out; the abort comes after the delivery"
        );
        assert!(!t.is_open() && !t.has_pending());
        // A failed delivery: no offsets sent, the transaction still aborted, and the next
        // one starts clean.
        let mut t = txn();
        *t.producer.delivery.borrow_mut() = Some(TxnError::Undelivered {
            count: 1,
            waited: Duration::ZERO,
        });
        assert!(t
            .discard_orphans(&[(&offsets(1), &())], &[("state", 0)], b"x")
            .is_err());
        assert_eq!(t.producer.calls(), ["begin", "send state", "abort"]);
        assert!(!t.is_open() && t.failure().is_none());
        // A refused send: aborted too.
        let mut t = txn();
        t.producer.fail_send.set(true);
        assert!(t.discard_orphans(&[], &[("state", 0)], b"x").is_err());
        assert_eq!(t.producer.calls(), ["begin", "abort"]);
        // Nothing while a transaction is open.
        let mut t = txn();
        t.producer.fail_send.set(false);
        t.send(rec("out"));
        t.discard_orphans(&[], &[("state", 0)], b"x").unwrap();
        assert_eq!(t.producer.calls(), ["begin", "send out"]);
    }

    #[test]
    fn committing_orphans_commits_after_the_delivery_and_aborts_on_a_failure() {
        let mut t = txn();
        t.commit_orphans(&[("state", 0), ("state", 2)], &[], b"x")
            .unwrap();
        assert_eq!(
            t.producer.calls(),
            ["begin", "send state", "send state", "commit"],
            "the commit comes after the delivery, with no offsets"
        );
        assert!(!t.is_open() && !t.has_pending());
        // Rolled forward: the offsets are sent after the delivery, then committed.
        let mut t = txn();
        t.commit_orphans(&[("state", 1)], &[(&offsets(2), &())], b"x")
            .unwrap();
        assert_eq!(
            t.producer.calls(),
            ["begin", "send state", "offsets 2", "commit"]
        );
        // Offsets alone are committed too.
        let mut t = txn();
        t.commit_orphans(&[], &[(&offsets(1), &())], b"x").unwrap();
        assert_eq!(t.producer.calls(), ["begin", "offsets 1", "commit"]);
        // A failed delivery: not committed but aborted, and the next one starts clean.
        let mut t = txn();
        *t.producer.delivery.borrow_mut() = Some(TxnError::Undelivered {
            count: 1,
            waited: Duration::ZERO,
        });
        assert!(t
            .commit_orphans(&[("state", 0)], &[(&offsets(2), &())], b"x")
            .is_err());
        assert_eq!(t.producer.calls(), ["begin", "send state", "abort"]);
        assert!(!t.is_open() && t.failure().is_none());
        // Nothing while a transaction is open, nor for no partition and no offset.
        let mut t = txn();
        t.send(rec("out"));
        t.commit_orphans(&[("state", 0)], &[], b"x").unwrap();
        t.commit_orphans(&[], &[(&offsets(2), &())], b"x").unwrap();
        let mut t2 = txn();
        t2.commit_orphans(&[], &[], b"x").unwrap();
        t2.commit_orphans(&[], &[(&TopicPartitionList::new(), &())], b"x")
            .unwrap();
        assert_eq!(t.producer.calls(), ["begin", "send out"]);
        assert!(t2.producer.calls().is_empty());
    }

    #[test]
    fn at_least_once_never_opens_a_transaction() {
        let mut t = Txn::new(Fake::default(), false, Duration::from_secs(1));
        t.send(rec("out"));
        t.commit(&[(&offsets(2), &())]).unwrap();
        assert_eq!(t.producer.calls(), ["send out"]);
        assert!(!t.abort().unwrap(), "nothing to abort");
    }
}
