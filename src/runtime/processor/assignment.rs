//! Rebalances: partitions assigned (paused, restored on a worker thread, installed),
//! revoked (committed first) or lost (aborted), and the resets after a failed commit.
use super::*;

impl Processor {
    /// The (source, partition) keys of a partition list (unknown topics skipped).
    pub(super) fn keys_of(&self, tpl: &TopicPartitionList) -> Vec<PartKey> {
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

    pub(super) fn on_assign(&mut self, consumer: &Consumer, tpl: &TopicPartitionList) {
        telemetry::rebalance(telemetry::RebalanceKind::Assign);
        let keys = self.keys_of(tpl);
        let plans = self.parts.assign(consumer.context().role, keys);
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
    pub(super) fn partition_list(&self, plans: &[RestorePlan], role: Role) -> TopicPartitionList {
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

    pub(super) fn on_revoke(
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
            self.parts.lost(role, keys, aborted)
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
    pub(super) fn reset_all(&mut self) {
        let plans = self.parts.reset();
        self.restore_again(plans);
        self.update_ready();
    }

    /// Drops the tasks of live partitions going back to restoring, pauses them and
    /// requests their restores.
    pub(super) fn restore_again(&mut self, plans: Vec<RestorePlan>) {
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
    pub(super) fn request_restore(&mut self, plan: RestorePlan, delay: Duration) {
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
            held: self.held_reporter.clone(),
            wanted: self.wanted_restores.clone(),
            slots: self.restore_slots.clone(),
        };
        // Wanted before its thread starts (the next readiness update keeps it while the
        // partition restores under this epoch).
        self.wanted_restores.add(req.epoch);
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
    pub(super) fn install(&mut self, r: RestoreResult) {
        let Some(c) = self.consumers.clone() else {
            return;
        };
        let p = r.partition;
        let (restored, surge) = match r.outcome {
            Ok(x) => x,
            Err(e) => {
                // A cancelled restore was no longer wanted: no failure (and no retry, unless
                // its partition still waits for it after all).
                if !matches!(e, RestoreError::Cancelled { .. }) {
                    telemetry::error(telemetry::ErrorReason::Restore);
                }
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
                queued_ms = r.queued.as_millis() as u64,
                "restored"
            );
        }
        self.update_ready();
    }

    pub(super) fn update_assigned(&mut self) {
        let Some(c) = &self.consumers else { return };
        let count = |consumer: &Consumer| consumer.assignment().map(|a| a.count()).unwrap_or(0);
        let (n, surge) = (count(&c.main), count(&c.surge));
        self.report_assigned(n, surge);
    }

    /// Adds this thread's change of assigned partitions to the process's counts.
    fn report_assigned(&mut self, n: usize, surge: usize) {
        let total =
            Control::move_count(&self.control.assigned_partitions, self.reported.assigned, n);
        Control::move_count(
            &self.control.assigned_surge_partitions,
            self.reported.assigned_surge,
            surge,
        );
        (self.reported.assigned, self.reported.assigned_surge) = (n, surge);
        telemetry::set_assigned_partitions(total as u64);
    }

    pub(super) fn update_ready(&mut self) {
        self.wanted_restores.set(self.parts.restoring_epochs());
        self.report_restoring(self.parts.restoring_partitions());
        let ready = self.parts.ready() && self.fatal.is_none();
        self.report_ready(ready);
    }

    /// Adds this thread's change of restoring partitions to the process's count.
    fn report_restoring(&mut self, n: usize) {
        let total = Control::move_count(
            &self.control.restoring_partitions,
            self.reported.restoring,
            n,
        );
        self.reported.restoring = n;
        telemetry::set_restoring_partitions(total as u64);
    }

    fn report_ready(&mut self, ready: bool) {
        if self.reported.ready != ready {
            self.reported.ready = ready;
            let process = self.control.thread_ready(ready);
            telemetry::set_ready(process);
            tracing::info!(
                thread = self.thread,
                ready,
                process_ready = process,
                "readiness changed"
            );
        }
    }

    /// The thread ends: it no longer counts as ready nor holds partitions.
    pub(super) fn leave(&mut self) {
        self.report_ready(false);
        self.report_assigned(0, 0);
        self.report_restoring(0);
    }
}
