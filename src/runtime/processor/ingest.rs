//! Records in: input hygiene (dead letters), the engine, the re-keyed `opened` events for
//! the surge stage, and what the engines emit, encoded and handed to the producer.
use super::*;

fn header<'a, M: Message>(m: &'a M, name: &str) -> Option<&'a [u8]> {
    let h = m.headers()?;
    h.iter()
        .find(|h| h.key.eq_ignore_ascii_case(name))
        .and_then(|h| h.value)
}

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
                self.meters.event_consumed(Some(acc.format).into());
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
                self.meters.event_consumed(rej.format.into());
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
    pub(super) fn emit(&mut self, idx: usize, p: i32, suppressed: bool, caught_up: bool) {
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

    pub(super) fn produce_output(&mut self, o: &SlaOutput, now: Ts, caught_up: bool) {
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
