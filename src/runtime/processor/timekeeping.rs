//! After each batch: consumer positions and lag, watermarks (event time, and wall clock
//! while caught up), the timers they fire, the surge stage's minute boundaries, and when
//! to commit.
use super::*;

impl Processor {
    pub(super) fn after_batch(&mut self) {
        let t = Instant::now();
        self.refresh_positions();
        self.advance_time();
        self.control
            .advance_micros
            .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.io.serve();
        self.settle(false);
        self.release_holds();
        if !self.waits_for_commit()
            && self.last_commit.elapsed() >= self.effective_commit_interval()
        {
            self.commit();
        }
        if self.last_metrics.elapsed() >= Duration::from_secs(1) {
            self.publish_metrics();
        }
        self.update_ready();
    }

    /// Caught-up detection: the consumer position (which moves past transaction markers)
    /// against librdkafka's cached high watermark; no network call.
    pub(super) fn refresh_positions(&mut self) {
        let Some(c) = self.consumers.clone() else {
            return;
        };
        let repartition = self.topics.repartition.clone();
        let main_pos = if self.inputs.is_empty() {
            None
        } else {
            let owned = self
                .inputs
                .values()
                .map(|t| (self.topics.inputs[t.topic].as_str(), t.partition));
            cached_positions(&*c.main, owned)
        };
        let surge_pos = if self.surges.is_empty() {
            None
        } else {
            let owned = self
                .surges
                .values()
                .map(|s| (repartition.as_str(), s.partition));
            cached_positions(&*c.surge, owned)
        };
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
    pub(super) fn finish_rebuild(&mut self, key: (usize, i32)) {
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
    pub(super) fn advance_time(&mut self) {
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
            stage::emit::outputs(&outs, self.output_format, &self.routes, self.io.outbox());
            for o in &outs {
                self.output_sent(o, now, caught_up);
            }
            self.surge_out = outs;
            self.surge_out.clear();
        }
    }

    /// Announces each input partition's watermark to every surge partition when it moved,
    /// at most once a second per input partition (surges work on minute boundaries), and
    /// always in the same transaction as the `opened` records below it.
    pub(super) fn announce_watermarks(&mut self) {
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
                self.io.outbox().push(
                    self.routes.repartition,
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
    pub(super) fn effective_commit_interval(&self) -> Duration {
        self.commit_plan().interval
    }

    pub(super) fn commit_plan(&self) -> CommitPlan {
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

    /// Whether the next commit, once due, waits for the one in flight rather than starting
    /// (or the poll hurrying) now. Live, a commit in flight is not waited for: timers due
    /// meanwhile go into the open transaction at once, and the next commit starts once this
    /// one is done (commit order; rebalances, the graceful stop and aborts still wait for
    /// it). While a backlog drains, the next commit waits for it as before: not waiting
    /// there holds most of the next transaction's records in memory until the previous
    /// one's drain, which cost 1–2 µs of CPU per event in the drain bench (7.0–7.4 against
    /// 5.2–6.3 µs), and a timer's latency then is the backlog's anyway.
    fn waits_for_commit(&self) -> bool {
        self.io.committing() && self.commit_pace == CommitPace::Live
    }

    /// How long the next poll may block.
    pub(super) fn poll_timeout(&self) -> Duration {
        let mut d = IDLE_POLL;
        // While the next commit waits for the one in flight, its due time does not shorten
        // the poll (a zero timeout would spin until that commit is done).
        if !self.waits_for_commit()
            && (self.io.has_pending() || self.io.is_open() || self.offsets_pending())
        {
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
}
