//! Records in and outputs out: routes each record to its partition's task and runs the
//! stages ([`stage::admit`], [`stage::emit`]) into the outbox; the metrics and hooks.
use super::*;

impl Processor {
    pub(super) fn on_message<M: Message>(&mut self, m: &M) {
        // librdkafka hands the topic as a C string: measured and checked once per record.
        let topic_name = m.topic();
        if topic_name == self.topics.repartition {
            self.on_repartition_record(m);
            return;
        }
        self.control
            .records_consumed
            .fetch_add(1, Ordering::Relaxed);
        let Some(idx) = self.input_index(topic_name) else {
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
                    topic = topic_name,
                    partition = p,
                    offset,
                    "record of a partition not ready (ignored; it is re-read after its restore)"
                );
            }
            return;
        };
        let cx = stage::admit::InputCx {
            limits: &self.limits,
            format: self.input_formats[idx],
            topic: &self.topics.inputs[idx],
            routes: &self.routes,
        };
        let suppressed = task.suppressed_at(offset);
        match stage::admit::admit_record(task, m, &cx, &mut self.out, self.io.outbox()) {
            stage::admit::Taken::Again => return,
            stage::admit::Taken::Accepted {
                format,
                unknown_enums,
            } => {
                self.meters.event_consumed(Some(format).into());
                if unknown_enums > 0 {
                    telemetry::unknown_enum_values(unknown_enums as u64);
                }
            }
            stage::admit::Taken::Rejected { format, reason } => {
                self.meters.event_consumed(format.into());
                telemetry::event_rejected(reason);
                if !suppressed {
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

    pub(super) fn on_repartition_record<M: Message>(&mut self, m: &M) {
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
        if stage::admit::header(m, WatermarkMark::HEADER).is_some() {
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
        let Ok(tenant) = std::str::from_utf8(m.key().unwrap_or(&[])) else {
            // We key these records by a (UTF-8) tenant: another key is not ours to count.
            tracing::warn!(
                partition = p,
                offset,
                "repartition record with a non-UTF-8 tenant key skipped"
            );
            return;
        };
        match stage::rekey::read(m.payload().unwrap_or(&[])) {
            Ok(o) => {
                s.detector
                    .observe_opened(tenant, o.channel, o.category, o.occurred_at);
                if o.occurred_at > s.max_seen {
                    s.max_seen = o.occurred_at;
                }
                s.dirty = true;
            }
            Err(e) => {
                tracing::warn!(partition = p, offset, error = %e, "repartition record skipped")
            }
        }
    }

    /// Produces what an engine emitted (outputs by kind, dead letters, metrics, hooks).
    pub(super) fn emit(&mut self, idx: usize, p: i32, suppressed: bool, caught_up: bool) {
        let now = self.clock.now();
        let mut out = std::mem::take(&mut self.out);
        if !out.outputs.is_empty() || !out.dead_letters.is_empty() {
            if let Some(t) = self.inputs.get_mut(&(idx, p)) {
                t.changed = true;
            }
        }
        if !suppressed {
            stage::emit::outputs(
                &out.outputs,
                self.output_format,
                &self.routes,
                self.io.outbox(),
            );
            for o in &out.outputs {
                self.output_sent(o, now, caught_up);
            }
        }
        for (_, reason) in &out.dead_letters {
            let reason = records::engine_reason(*reason);
            telemetry::event_rejected(reason);
            if reason == telemetry::RejectReason::Capacity {
                self.log_capacity(p);
            }
        }
        if !suppressed && !out.dead_letters.is_empty() {
            stage::emit::engine_dead_letters(
                &out.dead_letters,
                &self.topics.inputs[idx],
                p,
                &self.routes,
                self.io.outbox(),
            );
            self.control
                .dead_letters_produced
                .fetch_add(out.dead_letters.len() as u64, Ordering::Relaxed);
        }
        out.dead_letters.clear();
        out.outputs.clear();
        self.out = out;
        self.forward_observations();
    }

    pub(super) fn log_capacity(&mut self, p: i32) {
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

    /// Counts an output written to the outbox (metrics, the emitted latency, the hook).
    pub(super) fn output_sent(&mut self, o: &SlaOutput, now: Ts, caught_up: bool) {
        self.control
            .outputs_produced
            .fetch_add(1, Ordering::Relaxed);
        self.meters.output(o);
        if caught_up {
            let due = o.fired_at.saturating_add(self.lateness);
            self.meters.output_delay(now.since(due).to_std());
        }
        if let Some(h) = &self.on_output {
            h(o, now);
        }
    }

    pub(super) fn forward_observations(&mut self) {
        for obs in self.out.observations.drain(..) {
            self.meters.observation(&obs);
            if let Some(h) = &self.on_observation {
                h(&obs);
            }
        }
        self.meters.flush_windows();
        for n in self.out.notices.drain(..) {
            let crate::core::engine::Notice::IdleDropped { ticket, last_event } = n;
            telemetry::idle_tickets_dropped(1);
            tracing::info!(tenant = %ticket.tenant, ticket = %ticket.id, last_event = %last_event, "idle ticket dropped");
        }
    }
}
