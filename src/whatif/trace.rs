//! Drives the engine over history one event at a time and records, per ticket, what
//! happened: each clock run (start, pauses, stop or end, counted time), every output and,
//! when asked, every event with how it was taken. `whatif` aggregates these logs and
//! `explain` prints one.
//!
//! Stepping event by event (advance the watermark to the event's instant, ingest, advance
//! again) attributes every observation and state change to the event that caused it
//! without an engine hook; the engine's own contract (rule 5) makes the outputs those of
//! any other batching, so they equal `replay`'s for the same ordered history.
use crate::codec::framing::InputFormat;
use crate::core::clock::{ClockState, ClockStatus};
use crate::core::engine::{Emitted, Engine, EngineConfig, Notice};
use crate::core::model::{Event, OutputBody, SlaOutput, TicketAttrs};
use crate::core::order::order_key;
use crate::core::policy::{CalendarId, PolicySet};
use crate::core::time::{Dur, Ts};
use crate::replay::input::Records;
use crate::replay::sort::history_cmp;
use compact_str::CompactString;
use rustc_hash::FxHashMap;
use std::io::BufRead;
use std::sync::Arc;

/// The latency distributions of a report. Until clocks name their metric in the policy
/// file, the metric of a clock is derived from its id here, and only here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    FirstResponse,
    NextResponse,
    Resolution,
}

impl Metric {
    pub const ALL: [Metric; 3] = [
        Metric::FirstResponse,
        Metric::NextResponse,
        Metric::Resolution,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::FirstResponse => "first_response",
            Metric::NextResponse => "next_response",
            Metric::Resolution => "resolution",
        }
    }
}

/// The metric a clock feeds, if any (see [`Metric`]).
pub fn metric_of(clock_id: &str) -> Option<Metric> {
    match clock_id {
        "first_response" => Some(Metric::FirstResponse),
        "next_response" => Some(Metric::NextResponse),
        "resolution" => Some(Metric::Resolution),
        _ => None,
    }
}

/// One input line that decoded to an event.
#[derive(Clone, Debug)]
pub struct InputEvent {
    /// 1-based line number in the input.
    pub line: u64,
    pub event: Event,
    /// An earlier line of the file applies after this one.
    pub out_of_order: bool,
}

/// One input line that did not decode.
#[derive(Clone, Debug)]
pub struct RejectedLine {
    pub line: u64,
    pub reason: String,
    /// The ticket the line names, when it is readable JSON with a ticket id.
    pub ticket_id: Option<String>,
}

/// History read from a file of ConversationEvent JSON lines, in rule-4 order.
#[derive(Debug, Default)]
pub struct History {
    pub events: Vec<InputEvent>,
    pub rejected: Vec<RejectedLine>,
    pub lines: u64,
    /// Lines that came after a line applied later (the file was not in applied order).
    pub out_of_order: u64,
}

impl History {
    /// Reads a file as `slawatch replay` does (the same reader: JSON lines or
    /// length-delimited records, `--format auto`; docs/replay.md) and sorts its events into
    /// replay's history order ([`history_cmp`]: rule 4's key, then tenant, ticket and
    /// content), so `whatif` and `explain` apply exactly the sequence replay applies —
    /// the same copy of a re-sent event included.
    pub fn read(input: &mut dyn BufRead) -> std::io::Result<Self> {
        let mut h = History::default();
        let mut records = Records::new(InputFormat::Auto, input);
        while let Some(record) = records.next_record()? {
            match record {
                Ok(d) => h.events.push(InputEvent {
                    line: records.count,
                    event: d.event,
                    out_of_order: false,
                }),
                Err(r) => h.rejected.push(RejectedLine {
                    line: r.number,
                    reason: format!("{} ({})", r.reason, r.detail),
                    ticket_id: r.ticket_id,
                }),
            }
        }
        h.lines = records.count;
        let mut latest: Option<usize> = None;
        for i in 0..h.events.len() {
            match latest {
                Some(j) if order_key(&h.events[j].event) > order_key(&h.events[i].event) => {
                    h.events[i].out_of_order = true;
                    h.out_of_order += 1;
                }
                _ => latest = Some(i),
            }
        }
        h.events
            .sort_by(|a, b| history_cmp(&a.event, &b.event).then(a.line.cmp(&b.line)));
        Ok(h)
    }

    /// Only the events of tickets opened in `[from, until)` (all of their events before
    /// `until`); `None` bounds are open.
    pub fn window(&mut self, from: Option<Ts>, until: Option<Ts>) {
        if from.is_none() && until.is_none() {
            return;
        }
        let mut keep: rustc_hash::FxHashSet<(CompactString, CompactString)> = Default::default();
        for e in &self.events {
            if matches!(e.event.body, crate::core::model::Body::Opened { .. })
                && from.is_none_or(|f| e.event.occurred_at >= f)
                && until.is_none_or(|u| e.event.occurred_at < u)
            {
                keep.insert((e.event.tenant.clone(), e.event.ticket_id.clone()));
            }
        }
        self.events.retain(|e| {
            until.is_none_or(|u| e.event.occurred_at < u)
                && keep.contains(&(e.event.tenant.clone(), e.event.ticket_id.clone()))
        });
    }

    /// The largest `occurred_at`.
    pub fn last_instant(&self) -> Option<Ts> {
        self.events.iter().map(|e| e.event.occurred_at).max()
    }
}

/// How the engine took one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Taken {
    Applied,
    /// Its event id was already applied to the ticket (rule 9).
    Duplicate,
    /// A second `opened` of an open ticket (ignored, rule 9).
    SecondOpened,
    /// Held until the ticket's `opened` arrives (rule 9).
    Buffered,
    /// Dead-lettered by the engine (the reason is in `EventNote::reason`).
    Rejected,
}

/// One event of a ticket as the engine took it.
#[derive(Clone, Debug)]
pub struct EventNote {
    pub line: u64,
    pub event: Event,
    pub taken: Taken,
    pub reason: Option<&'static str>,
    /// It came in the file after a line that applies later.
    pub out_of_order: bool,
}

/// How a clock run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunEnd {
    /// Still running at the end of the data.
    Open,
    /// Its stop event came (a response, for a latency metric).
    Stopped,
    /// Ended without a stop: cancelled by close, a re-match or a restart.
    Cancelled,
    /// The ticket was dropped idle (rule 9) while the clock ran.
    Dropped,
}

/// One run of one clock of one ticket, from a start to a stop or end.
#[derive(Clone, Debug)]
pub struct ClockRun {
    pub clock: Arc<str>,
    pub rule: Arc<str>,
    pub target: Dur,
    pub calendar: CalendarId,
    pub recurring: bool,
    pub start: Ts,
    pub end_at: Option<Ts>,
    pub end: RunEnd,
    /// Counted time at the stop, or up to the end (a lower bound when not stopped).
    pub counted: Dur,
    pub breached: bool,
    /// The clock's last state seen in this run (pauses, fired items).
    pub state: ClockState,
}

impl ClockRun {
    pub fn metric(&self) -> Option<Metric> {
        if self.recurring {
            return None;
        }
        metric_of(&self.clock)
    }
}

/// Everything recorded about one ticket.
#[derive(Clone, Debug)]
pub struct TicketLog {
    pub tenant: CompactString,
    pub id: CompactString,
    pub attrs: TicketAttrs,
    pub opened_at: Option<Ts>,
    pub policy_id: Arc<str>,
    pub overlays: Vec<Arc<str>>,
    pub runs: Vec<ClockRun>,
    pub outputs: Vec<SlaOutput>,
    /// Filled only when events are kept (explain).
    pub events: Vec<EventNote>,
    /// Clock id → index in `runs` of its running run.
    live: FxHashMap<Arc<str>, usize>,
}

impl TicketLog {
    pub fn new(tenant: CompactString, id: CompactString) -> Self {
        TicketLog {
            tenant,
            id,
            attrs: TicketAttrs::default(),
            opened_at: None,
            policy_id: "".into(),
            overlays: Vec::new(),
            runs: Vec::new(),
            outputs: Vec::new(),
            events: Vec::new(),
            live: FxHashMap::default(),
        }
    }

    /// Records an output; a breach marks the clock's running run breached.
    fn note(&mut self, o: &SlaOutput) {
        if matches!(o.body, OutputBody::Breach { .. }) {
            if let Some(&i) = self.live.get(&o.clock) {
                self.runs[i].breached = true;
            }
        }
        self.outputs.push(o.clone());
    }

    pub fn breaches(&self) -> impl Iterator<Item = &SlaOutput> {
        self.outputs
            .iter()
            .filter(|o| matches!(o.body, OutputBody::Breach { .. }))
    }
}

/// The outcome of one traced run.
pub struct Trace {
    pub tickets: Vec<TicketLog>,
    /// Outputs without a ticket (surges).
    pub other_outputs: Vec<SlaOutput>,
    pub until: Ts,
}

type Key = (CompactString, CompactString);

struct Tracer {
    policy: Arc<PolicySet>,
    keep_events: bool,
    idle_ttl: Dur,
    index: FxHashMap<Key, usize>,
    logs: Vec<TicketLog>,
    other: Vec<SlaOutput>,
    /// Ticket id → tenant of the open ticket, to name a dropped ticket's log (the engine's
    /// notices carry the ticket id only).
    tenant_of: FxHashMap<CompactString, CompactString>,
}

impl Tracer {
    fn log(&mut self, tenant: &CompactString, id: &CompactString) -> &mut TicketLog {
        let n = self.logs.len();
        let i = *self.index.entry((tenant.clone(), id.clone())).or_insert(n);
        if i == n {
            self.logs.push(TicketLog::new(tenant.clone(), id.clone()));
        }
        &mut self.logs[i]
    }

    /// Outputs and notices of one engine call that no event caused (timers, surges).
    fn outputs(&mut self, out: &Emitted) {
        for o in &out.outputs {
            if o.ticket_id.is_empty() {
                self.other.push(o.clone());
            } else {
                let (tenant, id) = (o.tenant.clone(), o.ticket_id.clone());
                self.log(&tenant, &id).note(o);
            }
        }
        for n in &out.notices {
            let Notice::IdleDropped { ticket, last_event } = n;
            self.tenant_of.remove(&ticket.id);
            let policy = self.policy.clone();
            let at = last_event.saturating_add(self.idle_ttl);
            let log = self.log(&ticket.tenant, &ticket.id);
            let live: Vec<usize> = log.live.drain().map(|(_, i)| i).collect();
            for i in live {
                // Dropped `idle_ttl` after the last event: counted up to then.
                end_run(&policy, &mut log.runs[i], RunEnd::Dropped, at, None);
            }
        }
    }

    /// After the engine applied `ev`: its outputs, and the ticket's clocks compared with
    /// what was seen before.
    fn applied(&mut self, engine: &Engine, ev: &InputEvent, taken: Taken, out: &Emitted) {
        let e = &ev.event;
        let reason = out
            .dead_letters
            .iter()
            .find(|(d, _)| d.event_id == e.event_id && d.ticket_id == e.ticket_id)
            .map(|(_, r)| r.as_str());
        let taken = if reason.is_some() {
            Taken::Rejected
        } else {
            taken
        };
        let policy = self.policy.clone();
        let keep = self.keep_events;
        let ticket = lookup(engine, e);
        if ticket.is_some() {
            self.tenant_of.insert(e.ticket_id.clone(), e.tenant.clone());
        }
        let log = self.log(&e.tenant, &e.ticket_id);
        if keep {
            log.events.push(EventNote {
                line: ev.line,
                event: e.clone(),
                taken,
                reason,
                out_of_order: ev.out_of_order,
            });
        }
        for o in &out.outputs {
            if o.ticket_id == e.ticket_id && o.tenant == e.tenant {
                log.note(o);
            }
        }
        let Some(t) = ticket else {
            return;
        };
        let plan = engine.plan_of(t);
        if log.opened_at.is_none() {
            log.opened_at = Some(t.opened_at);
        }
        log.attrs = engine.attrs_of(t);
        log.policy_id = plan.policy_id.clone();
        log.overlays = plan.overlay_ids.clone();
        let at = e.occurred_at;
        // Runs that ended or restarted.
        let mut ended: Vec<(Arc<str>, usize)> = Vec::new();
        for (id, &i) in &log.live {
            let now = plan
                .clocks
                .iter()
                .position(|s| &s.id == id)
                .map(|k| &t.clocks[k]);
            let run = &log.runs[i];
            let still = now.is_some_and(|c| c.is_running() && c.start == run.state.start)
                || now.is_some_and(|c| c.is_running() && run.recurring);
            if !still {
                ended.push((id.clone(), i));
            }
        }
        for (id, i) in ended {
            log.live.remove(&id);
            let k = plan.clocks.iter().position(|s| s.id == id);
            let now = k.map(|k| &t.clocks[k]);
            let stopped = now.is_some_and(|c| c.status == ClockStatus::Stopped);
            let counted = out
                .observations
                .iter()
                .find(|o| o.clock == id && o.at == at)
                .map(|o| o.counted);
            let how = if stopped {
                RunEnd::Stopped
            } else {
                RunEnd::Cancelled
            };
            let run = &mut log.runs[i];
            if let Some(k) = k.filter(|_| stopped) {
                run.state = t.clock(k);
            }
            end_run(&policy, run, how, at, counted);
        }
        // Runs that started, and the latest state of those running.
        for (k, spec) in plan.clocks.iter().enumerate() {
            let c = &t.clocks[k];
            if !c.is_running() {
                continue;
            }
            match log.live.get(&spec.id) {
                Some(&i) => {
                    // A re-match (rule 6) carries the clock under the new rule and target.
                    let run = &mut log.runs[i];
                    run.state = t.clock(k);
                    run.rule = spec.rule.clone();
                    run.target = spec.target;
                    run.calendar = spec.calendar;
                }
                None => {
                    log.live.insert(spec.id.clone(), log.runs.len());
                    log.runs.push(ClockRun {
                        clock: spec.id.clone(),
                        rule: spec.rule.clone(),
                        target: spec.target,
                        calendar: spec.calendar,
                        recurring: !matches!(spec.kind, crate::core::policy::ClockKind::Deadline),
                        start: c.start,
                        end_at: None,
                        end: RunEnd::Open,
                        counted: Dur::ZERO,
                        breached: c.breached,
                        state: t.clock(k),
                    });
                }
            }
        }
    }

    fn finish(mut self, until: Ts) -> Trace {
        let policy = self.policy.clone();
        for log in &mut self.logs {
            let live: Vec<usize> = log.live.drain().map(|(_, i)| i).collect();
            for i in live {
                end_run(&policy, &mut log.runs[i], RunEnd::Open, until, None);
            }
            log.runs.sort_by_key(|r| r.start);
        }
        Trace {
            tickets: self.logs,
            other_outputs: self.other,
            until,
        }
    }
}

/// The engine's ticket for an event (keyed by tenant and ticket id, rule 11).
fn lookup<'e>(engine: &'e Engine, e: &Event) -> Option<&'e crate::core::ticket::Ticket> {
    engine.ticket(&e.tenant, &e.ticket_id)
}

fn end_run(policy: &PolicySet, run: &mut ClockRun, how: RunEnd, at: Ts, counted: Option<Dur>) {
    run.end = how;
    run.end_at = Some(at);
    run.breached |= run.state.breached;
    run.counted = counted.unwrap_or_else(|| {
        run.state
            .counted_until(policy.calendar(run.calendar), at.max(run.start))
    });
}

/// Replays `history` (already in rule-4 order) under `policy`, recording per-ticket logs.
/// `keep_events` records every event too (explain). `progress` is called per event.
pub fn trace(
    policy: Arc<PolicySet>,
    cfg: EngineConfig,
    history: &[InputEvent],
    until: Option<Ts>,
    keep_events: bool,
    mut progress: impl FnMut(),
) -> Trace {
    let idle_ttl = cfg.idle_ttl;
    let mut engine = Engine::new(policy.clone(), cfg);
    let mut tracer = Tracer {
        policy,
        keep_events,
        idle_ttl,
        index: FxHashMap::default(),
        logs: Vec::new(),
        other: Vec::new(),
        tenant_of: FxHashMap::default(),
    };
    let mut out = Emitted::default();
    for ev in history {
        progress();
        let at = ev.event.occurred_at;
        engine.advance_to(at, &mut out);
        tracer.outputs(&out);
        out.clear();
        let before = engine.stats().clone();
        let open_before = lookup(&engine, &ev.event).is_some();
        engine.ingest(ev.event.clone(), &mut out);
        engine.advance_through_events(at, &mut out);
        let after = engine.stats();
        let taken = if after.duplicates > before.duplicates {
            Taken::Duplicate
        } else if after.second_opened > before.second_opened {
            Taken::SecondOpened
        } else if !open_before && lookup(&engine, &ev.event).is_none() {
            Taken::Buffered
        } else {
            Taken::Applied
        };
        tracer.applied(&engine, ev, taken, &out);
        // Notices and outputs of other tickets (surges) from the same call.
        let rest = Emitted {
            outputs: out
                .outputs
                .iter()
                .filter(|o| o.ticket_id != ev.event.ticket_id || o.tenant != ev.event.tenant)
                .cloned()
                .collect(),
            notices: std::mem::take(&mut out.notices),
            ..Emitted::default()
        };
        tracer.outputs(&rest);
        out.clear();
    }
    let end = until
        .or_else(|| history.iter().map(|e| e.event.occurred_at).max())
        .unwrap_or(Ts(0));
    engine.finish(Some(end), &mut out);
    tracer.outputs(&out);
    out.clear();
    tracer.finish(end.max(engine.watermark()))
}
