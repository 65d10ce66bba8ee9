//! The commit: state records, consumed offsets and the transaction (pipelined on the
//! committer thread with exactly-once, see [`Pipeline`]); a failure aborts and restores
//! every partition.
use super::*;
use crate::runtime::changelog::held::{self as held_release, HeldOffset, HeldReport};
use crate::runtime::changelog::write::{covers_value, COVERS_HEADER};

/// The [`COVERS_HEADER`] of a state record whose transaction commits `offset` of `topic`,
/// written by the producer with transactional id `txn`.
fn covers_headers(topic: &str, offset: i64, txn: Option<&str>) -> OwnedHeaders {
    let value = covers_value(topic, offset, txn);
    OwnedHeaders::new().insert(rdkafka::message::Header {
        key: COVERS_HEADER,
        value: Some(value.as_bytes()),
    })
}

/// `offsets` (each at its `committed` value) as partition lists per consumer group of
/// `groups`, with the group's metadata (a group without metadata yet is left for a later
/// release).
fn group_offsets_of(
    groups: &[(String, Arc<Consumer>); 2],
    offsets: &[HeldOffset],
) -> Vec<GroupOffsets<ConsumerGroupMetadata>> {
    let mut out = Vec::with_capacity(2);
    for (group, consumer) in groups {
        let mut tpl = TopicPartitionList::new();
        for h in offsets.iter().filter(|h| &h.group == group) {
            if let Err(e) =
                tpl.add_partition_offset(&h.topic, h.partition, Offset::Offset(h.committed))
            {
                tracing::warn!(error = %e, topic = %h.topic, partition = h.partition, "cannot release a held offset");
            }
        }
        if tpl.count() == 0 {
            continue;
        }
        match consumer.group_metadata() {
            Some(gm) => out.push((tpl, gm)),
            None => {
                tracing::warn!(group = %group, "no group metadata yet; held offsets released later")
            }
        }
    }
    out
}

/// How often what the restores found held is released at most (a restore reports it every
/// 5 s while it stays held).
const RELEASE_EVERY: Duration = Duration::from_secs(5);

impl Processor {
    pub(super) fn offsets_pending(&self) -> bool {
        self.inputs
            .values()
            .any(|t| !t.rebuilding() && t.next_offset.is_some() && t.next_offset != t.committed)
            || self
                .surges
                .values()
                .any(|s| s.next_offset.is_some() && s.next_offset != s.committed)
    }

    /// Offsets to commit: (the input group's, the surge group's).
    pub(super) fn offsets(&self) -> (TopicPartitionList, TopicPartitionList) {
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

    pub(super) fn mark_committed(&mut self) {
        for t in self.inputs.values_mut() {
            if !t.rebuilding() {
                t.committed = t.next_offset.or(t.committed);
            }
        }
        for s in self.surges.values_mut() {
            s.committed = s.next_offset.or(s.committed);
        }
    }

    /// Writes changed tickets, partition states and surge states for the state topics into
    /// the outbox (the commit that follows sends them first).
    pub(super) fn write_state(&mut self) {
        let state_topic = self.routes.state;
        let txn_id = self.io.transactional_id().map(str::to_string);
        for t in self.inputs.values_mut() {
            if t.rebuilding() {
                continue; // a rebuild writes its state once it reaches the committed offset
            }
            let topic = &self.topics.inputs[t.topic];
            let p = t.partition;
            let records =
                changelog::ticket_records(topic, t.engine.take_changes(), t.stale_keys.take());
            let outbox = self.io.outbox();
            for r in records {
                outbox.push(state_topic, Some(p), &r.key, r.value.as_deref(), None);
            }
            if t.changed {
                let ps = t.engine.partition_state();
                outbox.push(
                    state_topic,
                    Some(p),
                    &partition_key(topic),
                    Some(&ps),
                    t.next_offset
                        .map(|o| covers_headers(topic, o, txn_id.as_deref())),
                );
                t.changed = false;
            }
        }
        let key = surge_state_key(&self.topics.repartition);
        let surge_state_topic = self.routes.surge_state;
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
                    self.io.outbox().push(
                        surge_state_topic,
                        Some(s.partition),
                        &key,
                        Some(&bytes),
                        s.next_offset.map(|o| {
                            covers_headers(&self.topics.repartition, o, txn_id.as_deref())
                        }),
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
    pub(super) fn commit(&mut self) {
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
        telemetry::set_commit_interval(
            self.control
                .report_commit_interval(self.thread, plan.interval),
        );
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
    pub(super) fn commit_sync(&mut self) {
        self.commit();
        self.settle(true);
    }

    /// Takes the outcome of the commit in flight, waiting for it with `block`. `false` when
    /// it failed (everything was aborted and reset, or the processor is stopping).
    pub(super) fn settle(&mut self, block: bool) -> bool {
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
    pub(super) fn finish_commit(&mut self, r: Result<Duration, TxnError>) -> bool {
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
    pub(super) fn group_offsets(
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
    pub(super) fn commit_transaction(&mut self, c: &Consumers) -> Result<(), TxnError> {
        self.write_state();
        let groups = self.group_offsets(c)?;
        let groups: Vec<(&TopicPartitionList, &ConsumerGroupMetadata)> =
            groups.iter().map(|(t, g)| (t, g)).collect();
        self.io.commit_now(&groups)
    }

    pub(super) fn commit_at_least_once(&mut self, c: &Consumers) -> Result<(), TxnError> {
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

    /// Releases what the restores found held for seconds, in case one of our producers
    /// left what holds it (see [`changelog::held`]): pending offset commits, and undecided
    /// records in state partitions. First what is ended committed (an abort marker of the
    /// producer whose records a state partition holds would end them aborted), then the
    /// rest by aborts; on each producer that is idle, at most every [`RELEASE_EVERY`]. What
    /// is still held afterwards is reported again by its restore.
    pub(super) fn release_holds(&mut self) {
        if !self.io.exactly_once
            || self.held.is_empty()
            || self
                .last_release
                .is_some_and(|t| t.elapsed() < RELEASE_EVERY)
        {
            return;
        }
        let Some(c) = self.consumers.clone() else {
            return;
        };
        self.last_release = Some(Instant::now());
        let held = self.held.take();
        let ids = self.topics.transactional_ids.clone();
        let ours: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.release_committed(&c, &held, &ours);
        self.release_aborted(&c, &held, &ours);
    }

    /// The two consumer groups (name, consumer) whose offsets a release sends.
    fn held_groups(&self, c: &Consumers) -> [(String, Arc<Consumer>); 2] {
        [
            (self.topics.group_id.clone(), c.main.clone()),
            (self.topics.surge_group_id.clone(), c.surge.clone()),
        ]
    }

    /// The committed releases ([`held_release::commit_release`]): each idle producer ends
    /// committed the held state partitions of committed transactions, and those of its own
    /// it rolls forward with the offsets they cover.
    fn release_committed(&mut self, c: &Consumers, held: &HeldReport, ours: &[&str]) {
        let mut planned = Vec::new();
        let groups = self.held_groups(c);
        let plan = |txn: Option<&str>| {
            let release = held_release::commit_release(held, txn, ours);
            let offsets = group_offsets_of(&groups, &release.offsets);
            if !release.is_empty() {
                planned.push((txn.map(str::to_string), release.clone()));
            }
            (release.states, offsets)
        };
        let result = self.io.commit_orphaned_holds(plan);
        match result {
            Ok(0) => {}
            Ok(producers) => {
                for (_, release) in &planned {
                    let kind = if release.offsets.is_empty() {
                        telemetry::HeldRelease::Committed
                    } else {
                        telemetry::HeldRelease::RolledForward
                    };
                    telemetry::held_releases(kind, 1);
                }
                tracing::warn!(
                    releases = ?planned,
                    producers,
                    "held for seconds by a transaction that committed or is rolled forward: ended it committed (a transaction writing a tombstone to each held state partition and the offsets its records cover, committed)"
                )
            }
            Err(e) => {
                telemetry::error(e.reason());
                tracing::warn!(error = %e, releases = ?planned, "releasing what is held failed; tried again while it stays held");
            }
        }
    }

    /// The aborted release ([`held_release::abort_release`]): each idle producer writes a
    /// tombstone to the other held state partitions, sends the held offsets' stable values,
    /// and aborts.
    fn release_aborted(&mut self, c: &Consumers, held: &HeldReport, ours: &[&str]) {
        let (offsets, states) = held_release::abort_release(held, ours);
        let groups = group_offsets_of(&self.held_groups(c), &offsets);
        if groups.is_empty() && states.is_empty() {
            return;
        }
        let partitions: Vec<String> = offsets
            .iter()
            .map(|h| format!("{}:{}[{}]@{}", h.group, h.topic, h.partition, h.committed))
            .collect();
        let state_partitions: Vec<String> =
            states.iter().map(|(t, p)| format!("{t}[{p}]")).collect();
        let states: Vec<(&str, i32)> = states.iter().map(|(t, p)| (t.as_str(), *p)).collect();
        match self.io.release_orphaned_holds(&groups, &states) {
            Ok(producers) => {
                telemetry::held_releases(telemetry::HeldRelease::Aborted, producers);
                tracing::warn!(
                    ?partitions,
                    ?state_partitions,
                    producers,
                    "held for seconds: ended whatever our producers left open there (a transaction writing a tombstone to each held state partition and the stable offsets, aborted)"
                )
            }
            Err(e) => {
                telemetry::error(e.reason());
                tracing::warn!(error = %e, ?partitions, ?state_partitions, "releasing what is held failed; tried again while it stays held");
            }
        }
    }

    /// Aborts the open transaction (exactly-once) and forgets pending failures (a commit
    /// in flight is waited for first).
    pub(super) fn abort_open(&mut self) {
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
}
