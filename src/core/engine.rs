//! The per-partition SLA engine: orders events by (occurred_at, causal rank, event_id)
//! behind the watermark (rule 4, [`crate::core::order`]), applies them to tickets, fires timers, buffers events of tickets not yet
//! opened, frees closed and idle tickets, and (for `replay`) detects surges.
//!
//! Time only moves through [`Engine::advance_to`]; nothing here reads a clock.
//! Events at time t apply once the watermark reaches t; timers due at d fire once the
//! watermark passes d, so at equal times events always apply first (rule 4), whatever
//! the batching. [`Engine::finish`] closes the input and fires timers at the final instant
//! too.
use crate::core::clock::ClockCore;
use crate::core::model::{Body, Event, SlaOutput, TicketAttrs, TicketKey};
use crate::core::order::order_key;
use crate::core::pending::PendingQueue;
use crate::core::plan::{OverlayIndices, Plan};
use crate::core::policy::{MatcherSet, Phase, PolicySet};
use crate::core::store::TicketStore;
use crate::core::surge::SurgeDetector;
use crate::core::ticket::{CompactAttrs, Observation, Sink, Ticket};
use crate::core::time::{Dur, Ts};
use compact_str::CompactString;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Engine limits and retention (event time). Defaults are docs/sla-semantics.md §2's.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    pub allowed_lateness: Dur,
    pub preopen_max_tickets: usize,
    pub preopen_max_age: Dur,
    pub closed_retention: Dur,
    pub idle_ttl: Dur,
    /// Open tickets per partition; a new ticket beyond it is rejected with `capacity`.
    pub max_open_tickets: usize,
    /// Run surge detection inside this engine (replay; the Kafka runtime repartitions).
    pub surge: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            allowed_lateness: Dur::from_secs(1),
            preopen_max_tickets: 10_000,
            preopen_max_age: Dur::from_secs(3600),
            closed_retention: Dur::from_secs(7 * 86_400),
            idle_ttl: Dur::from_secs(30 * 86_400),
            max_open_tickets: usize::MAX,
            surge: true,
        }
    }
}

/// Why the engine refused an event (it goes to the dead-letter topic with this reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The ticket was never opened within the pre-open buffer's age bound.
    PreopenExpired,
    /// The pre-open buffer was full.
    PreopenOverflow,
    /// The partition holds `max_open_tickets` tickets.
    Capacity,
    /// The ticket was dropped by `idle_ttl` or is past `closed_retention`: its tombstone
    /// refuses every later event at once (rule 9).
    TicketExpired,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::PreopenExpired => "preopen_expired",
            Refusal::PreopenOverflow => "preopen_overflow",
            Refusal::Capacity => "capacity",
            Refusal::TicketExpired => "ticket_expired",
        }
    }
}

/// Something worth a log line and a metric.
#[derive(Clone, Debug, PartialEq)]
pub enum Notice {
    IdleDropped { ticket: TicketKey, last_event: Ts },
}

/// Everything one call emits. Outputs of one call are in rule-3 order.
#[derive(Default, Debug)]
pub struct Emitted {
    pub outputs: Vec<SlaOutput>,
    pub dead_letters: Vec<(Event, Refusal)>,
    pub observations: Vec<Observation>,
    pub notices: Vec<Notice>,
}

impl Emitted {
    pub fn clear(&mut self) {
        self.outputs.clear();
        self.dead_letters.clear();
        self.observations.clear();
        self.notices.clear();
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStats {
    pub applied: u64,
    pub duplicates: u64,
    pub late: u64,
    pub second_opened: u64,
    pub idle_dropped: u64,
    pub freed: u64,
    pub rejected: u64,
}

/// Clocks of a plan whose states an event's rescheduling compares before and after (a
/// copy on the stack; a plan with more clocks reschedules from all of them).
const BEFORE_CLOCKS: usize = 16;

/// Plans are shared by every ticket with the same match, and by index so a ticket stays
/// small and serialisable.
#[derive(Debug)]
pub(super) struct PlanRegistry {
    current: Arc<PolicySet>,
    pub(super) plans: Vec<Arc<Plan>>,
    /// (policy set, policy index, overlay indices) → plan: an `opened` event looks its plan
    /// up by what it matches, without building (and dropping) a plan each time.
    pub(super) index: FxHashMap<(usize, Option<usize>, OverlayIndices), u32>,
}

impl PlanRegistry {
    fn new(current: Arc<PolicySet>) -> Self {
        PlanRegistry {
            current,
            plans: Vec::new(),
            index: FxHashMap::default(),
        }
    }

    pub(super) fn intern(&mut self, plan: Plan) -> u32 {
        let overlays: OverlayIndices = plan
            .overlay_ids
            .iter()
            .filter_map(|id| plan.set.overlays.iter().position(|o| o.id == *id))
            .collect();
        let key = (Arc::as_ptr(&plan.set) as usize, plan.policy_index, overlays);
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        self.insert(key, plan)
    }

    fn insert(&mut self, key: (usize, Option<usize>, OverlayIndices), plan: Plan) -> u32 {
        let i = self.plans.len() as u32;
        self.plans.push(Arc::new(plan));
        self.index.insert(key, i);
        i
    }

    fn for_attrs(&mut self, set: &Arc<PolicySet>, attrs: &TicketAttrs) -> u32 {
        let (policy_index, overlays) = Plan::match_of(set, attrs);
        let key = (Arc::as_ptr(set) as usize, policy_index, overlays);
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let plan = Plan::build(set, policy_index, &key.2);
        self.insert(key, plan)
    }
}

#[derive(Debug, Default)]
pub(super) struct PreOpen {
    pub(super) by_ticket: FxHashMap<TicketKey, Vec<Event>>,
    /// (first event time, ticket) for expiry.
    pub(super) expiry: BTreeSet<(Ts, TicketKey)>,
}

pub struct Engine {
    pub(super) cfg: EngineConfig,
    /// True while a late event (below the watermark on arrival) is applied.
    applying_late: bool,
    pub(super) registry: PlanRegistry,
    pub(super) tickets: TicketStore,
    pub(super) pending: PendingQueue,
    pub(super) seq: u64,
    pub(super) preopen: PreOpen,
    pub(super) watermark: Ts,
    pub(super) max_seen: Ts,
    pub(super) surge: Option<SurgeDetector>,
    pub(super) stats: EngineStats,
    /// Changelog tracking: slots changed and ids freed since the last `take_changes`.
    track_changes: bool,
    dirty: Vec<u32>,
    is_dirty: Vec<bool>,
    freed_ids: Vec<TicketKey>,
    /// Scratch of [`sort_outputs_reusing`], kept between calls.
    sort_order: OutputSortScratch,
    /// Tests: reschedule from every clock after each event and timer (the reference the
    /// incremental rescheduling is checked against).
    #[cfg(test)]
    full_schedule: bool,
}

impl Engine {
    pub fn new(policy: Arc<PolicySet>, cfg: EngineConfig) -> Engine {
        let surge = cfg.surge.then(|| SurgeDetector::new(policy.surge.clone()));
        Engine {
            cfg,
            applying_late: false,
            registry: PlanRegistry::new(policy),
            tickets: TicketStore::default(),
            pending: PendingQueue::default(),
            seq: 0,
            preopen: PreOpen::default(),
            watermark: Ts::MIN,
            max_seen: Ts::MIN,
            surge,
            stats: EngineStats::default(),
            track_changes: false,
            dirty: Vec::new(),
            is_dirty: Vec::new(),
            freed_ids: Vec::new(),
            sort_order: Vec::new(),
            #[cfg(test)]
            full_schedule: false,
        }
    }

    /// Turns on changelog tracking (the Kafka runtime's per-ticket state records).
    pub fn track_changes(&mut self, on: bool) {
        self.track_changes = on;
    }

    fn mark_dirty(&mut self, slot: u32) {
        if !self.track_changes {
            return;
        }
        let i = slot as usize;
        if self.is_dirty.len() <= i {
            self.is_dirty.resize(i + 1, false);
        }
        if !self.is_dirty[i] {
            self.is_dirty[i] = true;
            self.dirty.push(slot);
        }
    }

    /// Tickets changed since the last call: `(ticket, Some(record))`, or `None` when the
    /// ticket was freed (a tombstone). Records are [`Engine::ticket_record`] bytes.
    pub fn take_changes(&mut self) -> Vec<(TicketKey, Option<Vec<u8>>)> {
        let mut out = Vec::with_capacity(self.dirty.len() + self.freed_ids.len());
        for slot in std::mem::take(&mut self.dirty) {
            self.is_dirty[slot as usize] = false;
            if let Some(t) = self.tickets.get(slot) {
                let key = TicketKey {
                    tenant: self.tickets.tenant(t).clone(),
                    id: t.id.to_compact(),
                };
                out.push((key, Some(self.ticket_record(t))));
            }
        }
        let freed = std::mem::take(&mut self.freed_ids);
        if !freed.is_empty() {
            // A freed id that is live again (reopened since) keeps its record.
            let live: FxHashSet<&TicketKey> = out.iter().map(|(k, _)| k).collect();
            let tombstones: Vec<TicketKey> =
                freed.into_iter().filter(|id| !live.contains(id)).collect();
            out.extend(tombstones.into_iter().map(|id| (id, None)));
        }
        out
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }
    pub fn watermark(&self) -> Ts {
        self.watermark
    }
    pub fn max_seen(&self) -> Ts {
        self.max_seen
    }
    pub fn open_tickets(&self) -> usize {
        self.tickets.len()
    }
    pub fn pending_events(&self) -> usize {
        self.pending.len()
    }
    pub fn preopen_tickets(&self) -> usize {
        self.preopen.by_ticket.len()
    }
    /// Events waiting for their ticket's `opened`, in rule 4's order (a replay's end
    /// reports those of tickets never opened).
    pub fn preopen_events(&self) -> Vec<&Event> {
        let mut v: Vec<&Event> = self.preopen.by_ticket.values().flatten().collect();
        v.sort_by(|a, b| {
            (order_key(a), &a.tenant, &a.ticket_id).cmp(&(order_key(b), &b.tenant, &b.ticket_id))
        });
        v
    }
    pub fn running_clocks(&self) -> usize {
        self.tickets.iter().map(|t| t.running_clocks()).sum()
    }
    /// Where the resident bytes of the open tickets go, for the engine bench: estimates, a
    /// heap block of `req` bytes counted as the `held(req)` bytes the bench's allocator
    /// holds for it (glibc's malloc and mimalloc round differently), and the clock blocks'
    /// sizes as requested, most frequent first.
    #[doc(hidden)]
    pub fn memory_breakdown(&self, held: &dyn Fn(usize) -> usize) -> String {
        let n = self.tickets.len().max(1) as f64;
        let (slab, index) = self.tickets.table_bytes();
        let chunk = |req: usize| if req == 0 { 0 } else { held(req) };
        let mut sizes = std::collections::BTreeMap::<usize, usize>::new();
        // A `RareVec`: a boxed `Vec` header and its buffer, nothing when empty.
        let rare = |req: usize| if req == 0 { 0 } else { chunk(24) + chunk(req) };
        let (mut blocks, mut clocks, mut idle, mut seen, mut room, mut extras) = (0, 0, 0, 0, 0, 0);
        let mut id_heap = 0;
        let (mut with_extras, mut paused_open, mut paused_closed) = (0, 0, 0);
        for t in self.tickets.iter() {
            let c = t.clocks.len();
            let cap = t.clocks.seen_capacity();
            blocks += chunk(t.clocks.heap_bytes());
            *sizes.entry(t.clocks.heap_bytes()).or_default() += 1;
            clocks += c;
            idle += t
                .clocks
                .iter()
                .filter(|k| **k == crate::core::clock::ClockCore::default())
                .count();
            seen += t.seen().len();
            room += cap - t.seen().len();
            if let Some(x) = &t.extras {
                extras += chunk(std::mem::size_of::<crate::core::ticket::Extras>())
                    + x.actions_fired
                        .heap_requests()
                        .map(chunk)
                        .iter()
                        .sum::<usize>()
                    + rare(x.check_since.len() * 16)
                    + rare(x.pauses.len() * 8);
                for p in x.pauses.iter().flatten() {
                    extras += chunk(std::mem::size_of::<crate::core::clock::Pauses>())
                        + chunk(p.closed.capacity() * 16);
                    paused_open += p.open.is_some() as usize;
                    paused_closed += p.closed.len();
                }
                with_extras += 1;
            }
            id_heap += if t.id.is_heap_allocated() {
                chunk(t.id.len())
            } else {
                0
            };
        }
        let (nodes, current, seconds) = self.tickets.timers.usage();
        let mut sizes: Vec<(usize, usize)> = sizes.into_iter().collect();
        sizes.sort_by_key(|&(size, count)| (std::cmp::Reverse(count), size));
        let sizes: Vec<String> = sizes
            .iter()
            .take(6)
            .map(|&(size, count)| format!("{size} B {:.0} %", count as f64 * 100.0 / n))
            .collect();
        format!(
            "per open ticket: slab {:.1} B, index {:.1} B, clock blocks {:.1} B ({:.2} clocks of which {:.2} idle, {:.2} hashes, {:.2} room), block sizes {}; extras {:.1} B ({:.3} tickets have them, {:.3} open pauses, {:.3} closed intervals), heap ids {:.1} B; timer nodes {:.1} B ({:.2} per ticket, {:.2} queued), current {:.1} B, {seconds} seconds queued; pending {}",
            slab as f64 / n,
            index as f64 / n,
            blocks as f64 / n,
            clocks as f64 / n,
            idle as f64 / n,
            seen as f64 / n,
            room as f64 / n,
            sizes.join(", "),
            extras as f64 / n,
            with_extras as f64 / n,
            paused_open as f64 / n,
            paused_closed as f64 / n,
            id_heap as f64 / n,
            (nodes * 16) as f64 / n,
            nodes as f64 / n,
            self.tickets.timers.len() as f64 / n,
            (current * 16) as f64 / n,
            self.pending.len(),
        )
    }
    pub fn active_surges(&self) -> usize {
        self.surge.as_ref().map_or(0, |s| s.active())
    }
    /// The ticket `id` of `tenant` (empty for tickets without tenant; rule 11).
    pub fn ticket(&self, tenant: &str, id: &str) -> Option<&Ticket> {
        self.tickets
            .slot_of(tenant, id)
            .and_then(|s| self.tickets.get(s))
    }

    /// A ticket's tenant (empty for a ticket without tenant).
    pub fn tenant_of(&self, t: &Ticket) -> &CompactString {
        self.tickets.tenant(t)
    }
    /// A ticket's attributes with their names (the ticket holds tenant and team by id).
    pub fn attrs_of(&self, t: &Ticket) -> TicketAttrs {
        self.tickets.attrs(&t.attrs)
    }

    /// Marks a held ticket changed, so the next [`Engine::take_changes`] writes it again
    /// (the changelog moves records of an older key form to the current one).
    pub fn touch(&mut self, key: &TicketKey) {
        if let Some(slot) = self.tickets.slot_of(&key.tenant, &key.id) {
            self.mark_dirty(slot);
        }
    }
    /// The plan a ticket runs under (for read-only views such as the admin API).
    pub fn plan_of(&self, t: &Ticket) -> &Plan {
        &self.registry.plans[t.plan as usize]
    }

    /// Policy reload: tickets opened from now on use `policy`; open tickets keep theirs.
    pub fn set_policy(&mut self, policy: Arc<PolicySet>) {
        self.registry.current = policy;
    }

    /// The watermark events alone justify: max occurred_at seen − allowed lateness.
    pub fn event_watermark(&self) -> Ts {
        if self.max_seen == Ts::MIN {
            Ts::MIN
        } else {
            self.max_seen.saturating_sub(self.cfg.allowed_lateness)
        }
    }

    /// The earliest instant at which advancing the watermark would do something.
    pub fn next_wakeup(&self) -> Option<Ts> {
        let ev = self.pending.peek_time().map(|t| Ts(t.0.saturating_add(1)));
        let tm = self.peek_timer().map(|t| Ts(t.0.saturating_add(1)));
        match (ev, tm) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn peek_timer(&self) -> Option<Ts> {
        self.tickets.timers.peek_cached()
    }

    /// Accepts one validated event: buffered until the watermark reaches it, or applied at
    /// once when late (below the watermark on arrival).
    pub fn ingest(&mut self, ev: Event, out: &mut Emitted) {
        if ev.occurred_at > self.max_seen {
            self.max_seen = ev.occurred_at;
        }
        if ev.occurred_at < self.watermark {
            self.stats.late += 1;
            let start = out.outputs.len();
            self.applying_late = true;
            self.apply(ev, out);
            self.applying_late = false;
            self.run(self.watermark, false, out);
            self.sort_outputs_from(start, out);
        } else {
            self.seq += 1;
            self.pending.push(self.seq, ev);
        }
    }

    /// Advances the watermark to the event watermark (max seen − allowed lateness).
    pub fn pump(&mut self, out: &mut Emitted) {
        self.advance_to(self.event_watermark(), out);
    }

    /// Advances the (monotonic) watermark to `wm` and emits everything due.
    pub fn advance_to(&mut self, wm: Ts, out: &mut Emitted) {
        if wm > self.watermark {
            self.watermark = wm;
        }
        let start = out.outputs.len();
        self.run(self.watermark, false, out);
        self.sort_outputs_from(start, out);
    }

    /// [`Engine::advance_to`] that also applies the events at `wm` itself (not the timers
    /// due then): a trace that steps event by event (`whatif::trace`) sees each event's
    /// effect at once. A stream cut so puts an instant's outputs into two calls, so the
    /// live path never does.
    pub fn advance_through_events(&mut self, wm: Ts, out: &mut Emitted) {
        if wm > self.watermark {
            self.watermark = wm;
        }
        let start = out.outputs.len();
        self.run_events(self.watermark, true, false, out);
        self.sort_outputs_from(start, out);
    }

    /// Sorts the outputs from `start` (those of one call) with the kept scratch, which is
    /// freed after a sort that grew it past [`SORT_SCRATCH_KEEP`] entries.
    fn sort_outputs_from(&mut self, start: usize, out: &mut Emitted) {
        sort_outputs_reusing(&mut out.outputs[start..], &mut self.sort_order);
        if self.sort_order.capacity() > SORT_SCRATCH_KEEP {
            self.sort_order = Vec::new();
        }
    }

    /// End of input: the watermark moves to `until` (or the largest occurred_at) and
    /// timers due at that very instant fire too.
    pub fn finish(&mut self, until: Option<Ts>, out: &mut Emitted) {
        let wm = until.unwrap_or(self.max_seen);
        if wm > self.watermark {
            self.watermark = wm;
        }
        let start = out.outputs.len();
        self.run(self.watermark, true, out);
        self.sort_outputs_from(start, out);
    }

    fn run(&mut self, wm: Ts, inclusive: bool, out: &mut Emitted) {
        self.run_events(wm, inclusive, inclusive, out)
    }

    /// Applies the events and fires the timers up to `wm`: those at `wm` itself only when
    /// `events_at` / `inclusive` say so.
    fn run_events(&mut self, wm: Ts, events_at: bool, inclusive: bool, out: &mut Emitted) {
        loop {
            // An event at the watermark's instant waits, as a timer due then does: both are
            // taken once the watermark passes it (or at the end), in one call, so the outputs
            // of one instant are sorted together (rule 3) however the calls are cut.
            let ev_t = self
                .pending
                .peek_time()
                .filter(|t| *t < wm || (events_at && *t <= wm));
            let tm_t = self
                .tickets
                .timers
                .peek()
                .filter(|t| *t < wm || (inclusive && *t <= wm));
            let exp_t = self
                .preopen
                .expiry
                .iter()
                .next()
                .map(|(t, _)| t.saturating_add(self.cfg.preopen_max_age))
                .filter(|t| *t < wm);
            // Surge boundaries up to the next event are evaluated before that event
            // (its window excludes the boundary instant).
            match (ev_t, tm_t) {
                (Some(e), t) if t.is_none_or(|t| e <= t) => {
                    if let Some(s) = self.surge.as_mut() {
                        s.advance(e, false, &mut out.outputs);
                    }
                    // Just peeked: the pop always yields it.
                    if let Some(event) = self.pending.pop() {
                        self.apply(event, out);
                    }
                }
                (_, Some(t)) => {
                    // Unqueued as it pops; a slot's timer leaves with its ticket.
                    if let Some((_, slot)) = self.tickets.timers.pop() {
                        if self.tickets.get(slot).is_some() {
                            self.fire(slot, t, out);
                        }
                    }
                }
                _ => {
                    if exp_t.is_some() {
                        self.expire_preopen(wm, out);
                        continue;
                    }
                    break;
                }
            }
        }
        self.expire_preopen(wm, out);
        if let Some(s) = self.surge.as_mut() {
            s.advance(wm, inclusive, &mut out.outputs);
        }
    }

    fn expire_preopen(&mut self, wm: Ts, out: &mut Emitted) {
        while let Some((first, ticket)) = self.preopen.expiry.iter().next().cloned() {
            if first.saturating_add(self.cfg.preopen_max_age) >= wm {
                break;
            }
            self.preopen.expiry.remove(&(first, ticket.clone()));
            if let Some(events) = self.preopen.by_ticket.remove(&ticket) {
                self.stats.rejected += events.len() as u64;
                out.dead_letters
                    .extend(events.into_iter().map(|e| (e, Refusal::PreopenExpired)));
            }
        }
    }

    fn fire(&mut self, slot: u32, at: Ts, out: &mut Emitted) {
        let Some((ticket, names)) = self.tickets.get_mut_named(slot) else {
            return;
        };
        // Borrowed, not cloned: a clone and drop of the `Arc` per fire was ~1.4 % of a
        // drain's processing thread (docs/performance.md, session 18).
        let plan = &self.registry.plans[ticket.plan as usize];
        let before = out.outputs.len();
        let tenant = names.get(ticket.attrs.tenant);
        let mut sink = Sink {
            tenant,
            outputs: &mut out.outputs,
            observations: &mut out.observations,
            late: false,
        };
        let clock_due = ticket.fire_timers(plan, at, &mut sink);
        // Housekeeping (event time): an idle ticket, or a closed one past its retention,
        // becomes an expired tombstone; an expired tombstone past its retention is freed.
        let tombstone = ticket.phase == Phase::Expired;
        let idle = !tombstone && ticket.last_event().saturating_add(self.cfg.idle_ttl) <= at;
        if idle {
            // Rule 12: clocks dropped unanswered count as censored.
            ticket.censor_running(plan, at, &mut sink);
        }
        let fired = out.outputs.len() != before;
        let retained = ticket.closed_at().is_some_and(|closed| {
            ticket.running_clocks() == 0 && closed.saturating_add(self.cfg.closed_retention) <= at
        });
        let last_event = ticket.last_event();
        if idle {
            self.stats.idle_dropped += 1;
            out.notices.push(Notice::IdleDropped {
                ticket: TicketKey {
                    tenant: tenant.clone(),
                    id: ticket.id.to_compact(),
                },
                last_event,
            });
            self.expire(slot, at);
        } else if retained && !tombstone {
            self.expire(slot, at);
        } else if retained {
            self.stats.freed += 1;
            self.free_ticket(slot);
        } else {
            if fired {
                self.mark_dirty(slot);
            }
            // The clocks are as `fire_timers` left them: their next due is what it found.
            #[cfg(test)]
            if self.full_schedule {
                return self.schedule(slot);
            }
            self.schedule_at(slot, clock_due.unwrap_or(Ts::MAX));
        }
    }

    /// Turns a ticket into an expired tombstone (rule 9): every clock cancelled, dedup and
    /// extras dropped, so it costs little more than its id; it is freed `closed_retention`
    /// later (at once when that is 0). Meanwhile its events are dead-lettered as
    /// `ticket_expired` instead of waiting as pre-open.
    fn expire(&mut self, slot: u32, at: Ts) {
        let t = self.tickets.get_mut(slot).expect("indexed slot");
        t.phase = Phase::Expired;
        // Clock states and dedup hashes (one block) dropped; the closing instant and the
        // last event take a block of their own (24 bytes).
        let last_event = t.last_event();
        t.clocks = Default::default();
        t.set_closed_at(Some(at));
        t.clocks.set_last_event(last_event);
        t.extras = None;
        self.mark_dirty(slot);
        self.schedule(slot);
    }

    fn free_ticket(&mut self, slot: u32) {
        if let Some(key) = self.tickets.remove(slot) {
            if self.track_changes {
                self.freed_ids.push(key);
            }
        }
    }

    /// Recomputes a ticket's next due instant and queues a timer when it is earlier than the
    /// one already queued. A queued timer later found early is harmless (it fires nothing
    /// and reschedules), so a due time that moves later costs no requeue: most events
    /// move deadlines later or stop clocks.
    pub(super) fn schedule(&mut self, slot: u32) {
        let Some(ticket) = self.tickets.get(slot) else {
            return;
        };
        let plan = &self.registry.plans[ticket.plan as usize];
        let next = ticket.next_clock_due(plan).unwrap_or(Ts::MAX);
        self.schedule_at(slot, next);
    }

    /// [`Engine::schedule`] after an event under an unchanged plan: only the clocks that
    /// differ from `before` (their state before the event) can have a due instant earlier
    /// than the one queued, since the queued one is never later than any clock's due (every
    /// path that queues takes the minimum over the clocks it may have moved, and a timer
    /// reschedules from all of them). So only those are computed; the queue ends up as
    /// after a full [`Engine::schedule`]: a push happens exactly when the minimum over all
    /// clocks is earlier than the queued due, and then that minimum is a changed clock's.
    fn schedule_changed(&mut self, slot: u32, plan_before: u32, before: &[ClockCore]) {
        let Some(ticket) = self.tickets.get(slot) else {
            return;
        };
        #[cfg(test)]
        if self.full_schedule {
            return self.schedule(slot);
        }
        if ticket.plan != plan_before || ticket.clocks.len() != before.len() {
            return self.schedule(slot);
        }
        let plan = &self.registry.plans[ticket.plan as usize];
        let next = ticket
            .next_changed_clock_due(plan, before)
            .unwrap_or(Ts::MAX);
        self.schedule_at(slot, next);
    }

    /// Queues a timer for the ticket in `slot` at the earliest of `clock_due` (its clocks'
    /// next due instant, or a lower bound of the ones that may have moved earlier), its
    /// idle limit and its retention, when that is earlier than the one queued.
    fn schedule_at(&mut self, slot: u32, clock_due: Ts) {
        let Some(ticket) = self.tickets.get(slot) else {
            return;
        };
        let mut next = clock_due;
        if ticket.phase != Phase::Expired {
            next = next.min(ticket.last_event().saturating_add(self.cfg.idle_ttl));
        }
        if let Some(closed) = ticket.closed_at() {
            if ticket.running_clocks() == 0 {
                next = next.min(closed.saturating_add(self.cfg.closed_retention));
            }
        }
        if next < self.tickets.due(slot) {
            self.tickets.timers.schedule(slot, next);
        }
    }

    /// Applies one event in order (it has reached the watermark, or is late).
    fn apply(&mut self, ev: Event, out: &mut Emitted) {
        match self.tickets.slot_of(&ev.tenant, &ev.ticket_id) {
            Some(slot)
                if self
                    .tickets
                    .get(slot)
                    .is_some_and(|t| t.phase == Phase::Expired) =>
            {
                self.stats.rejected += 1;
                out.dead_letters.push((ev, Refusal::TicketExpired));
            }
            Some(slot) => self.apply_to(slot, &ev, out),
            None => match &ev.body {
                Body::Opened { .. } => self.open(ev, out),
                _ => self.buffer_preopen(ev, out),
            },
        }
    }

    fn apply_to(&mut self, slot: u32, ev: &Event, out: &mut Emitted) {
        let (ticket, names) = self.tickets.get_mut_named(slot).expect("indexed slot");
        if ticket.check_and_record(&ev.event_id) {
            self.stats.duplicates += 1;
            return;
        }
        if matches!(ev.body, Body::Opened { .. }) {
            self.stats.second_opened += 1;
            return;
        }
        self.stats.applied += 1;
        let plan = self.registry.plans[ticket.plan as usize].clone();
        let matches = MatcherSet::of_event(&ev.body);
        let registry = &mut self.registry;
        let mut rematch = |attrs: &CompactAttrs| {
            let set = plan.set.clone();
            let i = registry.for_attrs(&set, &attrs.named(names));
            (i, registry.plans[i as usize].clone())
        };
        let mut sink = Sink {
            tenant: names.get(ticket.attrs.tenant),
            outputs: &mut out.outputs,
            observations: &mut out.observations,
            late: self.applying_late,
        };
        // The clocks before the event, so that only those it changed are rescheduled.
        let plan_before = ticket.plan;
        let mut before = [ClockCore::default(); BEFORE_CLOCKS];
        let n = ticket.clocks.len();
        if n <= BEFORE_CLOCKS {
            ticket.clocks.copy_to(&mut before[..n]);
        }
        ticket.apply(ev, matches, &plan, &mut rematch, &mut sink);
        self.mark_dirty(slot);
        if n <= BEFORE_CLOCKS {
            self.schedule_changed(slot, plan_before, &before[..n]);
        } else {
            self.schedule(slot);
        }
    }

    fn open(&mut self, ev: Event, out: &mut Emitted) {
        let Body::Opened {
            channel,
            category,
            urgency,
            tier,
            team,
        } = &ev.body
        else {
            unreachable!("open() takes an opened event")
        };
        if self.tickets.len() >= self.cfg.max_open_tickets {
            self.stats.rejected += 1;
            out.dead_letters.push((ev, Refusal::Capacity));
            return;
        }
        let attrs = TicketAttrs {
            channel: *channel,
            category: *category,
            urgency: *urgency,
            tier: *tier,
            tenant: ev.tenant.clone(),
            team: team.clone(),
        };
        let set = self.registry.current.clone();
        let plan_index = self.registry.for_attrs(&set, &attrs);
        let plan = self.registry.plans[plan_index as usize].clone();
        let compact = self.tickets.intern_attrs(&attrs);
        let mut ticket = Ticket::open(&ev, compact, plan_index, &plan);
        ticket.check_and_record(&ev.event_id);
        let slot = self.tickets.insert(ticket);
        self.mark_dirty(slot);
        self.stats.applied += 1;
        if let Some(s) = self.surge.as_mut() {
            s.observe_opened(&ev.tenant, *channel, *category, ev.occurred_at);
        }
        // `opened` starts clocks and fires actions like any other event.
        {
            let (ticket, names) = self.tickets.get_mut_named(slot).expect("inserted");
            let matches = MatcherSet::of_event(&ev.body);
            let mut no_rematch = |_: &CompactAttrs| (plan_index, plan.clone());
            let mut sink = Sink {
                tenant: names.get(ticket.attrs.tenant),
                outputs: &mut out.outputs,
                observations: &mut out.observations,
                late: false,
            };
            ticket.apply(&ev, matches, &plan, &mut no_rematch, &mut sink);
        }
        // Events that waited for this ticket apply now, in rule 4's order, with the
        // ticket's timers due between them fired in between, as if `opened` had come first:
        // a late `opened` must not let a buffered answer stop a clock that had breached.
        // They all reached the watermark already, so none of them is late for this ticket.
        let key = TicketKey::of(&ev);
        self.schedule(slot);
        if let Some(mut waiting) = self.preopen.by_ticket.remove(&key) {
            let first = waiting.iter().map(|e| e.occurred_at).min().unwrap();
            self.preopen.expiry.remove(&(first, key.clone()));
            waiting.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
            let late = std::mem::replace(&mut self.applying_late, false);
            for w in waiting {
                self.fire_due_before(slot, &key, w.occurred_at, out);
                // Through `apply`: a timer may have expired (idle) or freed the ticket.
                self.apply(w, out);
            }
            self.applying_late = late;
        }
        self.schedule(slot);
    }

    /// Fires the timers of the ticket in `slot` due strictly before `t` (events at `t`
    /// apply before timers due at `t`, rule 4), each at its own due instant, as the
    /// watermark would have. Each instant fired here is unqueued first.
    fn fire_due_before(&mut self, slot: u32, key: &TicketKey, t: Ts, out: &mut Emitted) {
        loop {
            match self.tickets.get(slot) {
                Some(tk) if *tk.id == *key.id && *self.tickets.tenant(tk) == key.tenant => {}
                _ => return,
            }
            let due = self.tickets.due(slot);
            if due >= t {
                return;
            }
            self.tickets.timers.cancel(slot);
            self.fire(slot, due, out);
            if self.tickets.get(slot).is_some() && self.tickets.due(slot) <= due {
                // Nothing fired moved the next due past `due` (cannot happen: firing at
                // `due` consumes everything due by then); stop rather than loop.
                return;
            }
        }
    }

    fn buffer_preopen(&mut self, ev: Event, out: &mut Emitted) {
        let key = TicketKey::of(&ev);
        if let Some(list) = self.preopen.by_ticket.get_mut(&key) {
            list.push(ev);
            return;
        }
        if self.preopen.by_ticket.len() >= self.cfg.preopen_max_tickets {
            self.stats.rejected += 1;
            out.dead_letters.push((ev, Refusal::PreopenOverflow));
            return;
        }
        self.preopen.expiry.insert((ev.occurred_at, key.clone()));
        self.preopen.by_ticket.insert(key, vec![ev]);
    }

    /// Pending events in application order (snapshots must not depend on heap layout).
    pub(super) fn pending_sorted(&self) -> Vec<&Event> {
        self.pending.sorted()
    }

    /// Rule 12 for a report that closes its books at `at` (replay's summary): every running
    /// clock with a `metric` observed as censored, in ticket order; no state changes.
    pub fn censor_running(&self, at: Ts, observations: &mut Vec<Observation>) {
        let mut outputs = Vec::new();
        let mut slots: Vec<&Ticket> = self.tickets.iter().collect();
        slots.sort_by(|a, b| a.id.cmp(&b.id));
        for t in slots {
            let mut sink = Sink {
                tenant: self.tickets.tenant(t),
                outputs: &mut outputs,
                observations,
                late: false,
            };
            t.censor_running(&self.registry.plans[t.plan as usize], at, &mut sink);
        }
    }

    /// Ticket ids currently held, in no particular order.
    pub fn ticket_ids(&self) -> impl Iterator<Item = &str> {
        self.tickets.iter().map(|t| t.id.as_str())
    }

    /// Whether a ticket's phase is closed (tombstone).
    pub fn is_closed(&self, tenant: &str, id: &str) -> Option<bool> {
        self.ticket(tenant, id).map(|t| t.phase == Phase::Closed)
    }
}

/// Rule 3 order: fired_at, ticket id, clock position, kind (stable for equal keys).
/// Outputs of one call are mostly in order already (timers fire in time order), so that is
/// checked first.
pub fn sort_outputs(outputs: &mut [SlaOutput]) {
    sort_outputs_reusing(outputs, &mut Vec::new());
}

/// Scratch of [`sort_outputs_reusing`]: each output's leading sort key (its instant and
/// the first 16 bytes of its ticket id) and its index.
pub type OutputSortScratch = Vec<((i64, u128), u32)>;

/// Entries of the engine's output-sorting scratch kept between calls (192 KiB): a call
/// with more outputs out of order (a burst of timers: 1.5 MiB for the 34 k of the engine
/// bench's jump past its opening span) sorts with a scratch freed after it (issue 14,
/// bytes per open ticket).
const SORT_SCRATCH_KEEP: usize = 4096;

/// [`sort_outputs`] with a reusable scratch buffer: the engine sorts every call's outputs,
/// and a stable sort of more than a few outputs allocates its scratch each time. Timers of
/// one instant fire in slot order, so a call's outputs are often out of ticket-id order:
/// they are compared by a cached key (instant, ticket id prefix), and in full only on ties.
pub fn sort_outputs_reusing(outputs: &mut [SlaOutput], scratch: &mut OutputSortScratch) {
    if outputs.is_sorted_by(|a, b| output_order(a, b).is_le()) {
        return;
    }
    let sort = |v: &mut [SlaOutput], scratch: &mut OutputSortScratch| {
        crate::core::stable_sort::stable_sort_by_key_reusing(
            v,
            scratch,
            |o| (o.fired_at.0, crate::core::pending::prefix_of(&o.ticket_id)),
            output_order,
        )
    };
    // Timers fire in due order, so a call's outputs are nearly always in instant order,
    // out of order only among outputs of one instant. The order compares instants first,
    // so sorting each instant's run alone is the whole sort (issue 14: the sort of a burst
    // of timers was ~370 instructions per event of the engine bench).
    if !outputs.is_sorted_by_key(|o| o.fired_at) {
        return sort(outputs, scratch);
    }
    let mut rest = outputs;
    while let Some(first) = rest.first() {
        let t = first.fired_at;
        let n = rest
            .iter()
            .position(|o| o.fired_at != t)
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at_mut(n);
        sort(run, scratch);
        rest = tail;
    }
}

/// [`SlaOutput::order_key`] compared field by field, stopping at the first difference.
fn output_order(a: &SlaOutput, b: &SlaOutput) -> std::cmp::Ordering {
    a.fired_at
        .cmp(&b.fired_at)
        .then_with(|| a.ticket_id.as_str().cmp(b.ticket_id.as_str()))
        .then_with(|| a.tenant.as_str().cmp(b.tenant.as_str()))
        .then_with(|| a.clock_pos.cmp(&b.clock_pos))
        .then_with(|| a.body.rank().cmp(&b.body.rank()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{Audience, Category, Channel, ReplyKind, Role, Tier, Urgency};
    use crate::core::policy::parse::load_policy_file;
    use proptest::prelude::*;

    fn body(k: u8, x: u8) -> Body {
        let urgency = [Urgency::General, Urgency::Important, Urgency::Urgent][x as usize % 3];
        let role = [Role::Supervisor, Role::DepartmentHead, Role::TeamLead][x as usize % 3];
        let kind = [
            ReplyKind::Answer,
            ReplyKind::Eta,
            ReplyKind::Progress,
            ReplyKind::Solution,
        ][x as usize % 4];
        match k {
            0..=3 => Body::CustomerMessage,
            4..=7 => Body::AgentMessage {
                kind,
                audience: Audience::Customer,
            },
            8 => Body::AgentMessage {
                kind: ReplyKind::Progress,
                audience: Audience::Internal,
            },
            9 => Body::AutoReply,
            10 => Body::Assigned,
            11 => Body::Transferred {
                misrouted: x.is_multiple_of(2),
            },
            12 => Body::UrgencyChanged(urgency),
            13 => Body::Escalated(role),
            14 => Body::EscalationAnswered(role),
            15 => Body::DepartmentRequested,
            16 => Body::HandedToDepartment,
            17 => Body::DepartmentStarted,
            18 => Body::WaitingOnCustomer,
            19 => Body::OnHold,
            20 => Body::Resumed,
            21 | 22 => Body::Resolved,
            23 => Body::Feedback {
                satisfied: [None, Some(true), Some(false)][x as usize % 3],
            },
            24 => Body::Reopened,
            25 => Body::FollowUpDone,
            _ => Body::Closed,
        }
    }

    /// Tickets of every policy of the default file, each opened and then given events at
    /// increasing times (gaps short and long, so clocks fire, pause, stop and restart).
    fn scenario() -> impl Strategy<Value = Vec<Event>> {
        let opened = (0u8..6, 0u8..6, 0u8..4, 0u8..3);
        let rest = proptest::collection::vec(
            (
                prop_oneof![0i64..120, 0i64..7200, 0i64..90_000],
                0u8..27,
                any::<u8>(),
            ),
            0..14,
        );
        proptest::collection::vec((0i64..600, opened, rest), 1..6).prop_map(|tickets| {
            let mut events = Vec::new();
            for (i, (start, (c, k, u, tier), rest)) in tickets.into_iter().enumerate() {
                let id = format!("T{i}");
                let mut t = 1_709_546_400 + start;
                let mut push = |t: i64, body: Body, n: usize| {
                    events.push(Event {
                        event_id: format!("{id}-{n}").into(),
                        ticket_id: id.clone().into(),
                        occurred_at: Ts::from_secs(t),
                        tenant: "acme".into(),
                        body,
                    })
                };
                let opened = Body::Opened {
                    channel: Channel::from_i32(c as i32).unwrap(),
                    category: Category::from_i32(k as i32).unwrap(),
                    urgency: Urgency::from_i32(u as i32).unwrap(),
                    tier: Tier::from_i32(tier as i32).unwrap(),
                    team: "".into(),
                };
                push(t, opened, 0);
                for (n, (gap, k, x)) in rest.into_iter().enumerate() {
                    t += gap;
                    push(t, body(k, x), n + 1);
                }
            }
            events.sort_by(|a, b| (a.occurred_at, &a.event_id).cmp(&(b.occurred_at, &b.event_id)));
            events
        })
    }

    /// Every ticket's queued due instant, by ticket id.
    fn dues(e: &Engine) -> Vec<(String, Ts)> {
        let mut v: Vec<(String, Ts)> = e
            .ticket_ids()
            .map(|id| {
                let slot = e.tickets.slot_of("acme", id).expect("held");
                (id.to_string(), e.tickets.due(slot))
            })
            .collect();
        v.sort();
        v
    }

    /// A call's outputs sorted run by run (by instant, when they come in instant order) or
    /// whole are in the order of a stable sort by [`output_order`], ids sharing long
    /// prefixes and instants shared by many outputs included.
    #[test]
    fn outputs_sort_as_a_stable_sort_by_rule_3() {
        let (policy, rule): (Arc<str>, Arc<str>) = ("p".into(), "r".into());
        let clocks: [Arc<str>; 3] = ["a".into(), "b".into(), "c".into()];
        let tenants = [CompactString::from(""), CompactString::from("acme")];
        let mut next = crate::core::xorshift(0x9e37_79b9_7f4a_7c15);
        let mut scratch = Vec::new();
        for case in 0..600 {
            let n = next(40) as usize;
            let mut v: Vec<SlaOutput> = (0..n)
                .map(|_| {
                    let c = next(3) as usize;
                    let id = format!(
                        "{}{}",
                        "T-long-common-prefix-".repeat(next(2) as usize),
                        next(6)
                    );
                    let body = if next(2) == 0 {
                        crate::core::model::OutputBody::Breach { overdue: Dur(0) }
                    } else {
                        crate::core::model::OutputBody::Warning { fraction: 0.5 }
                    };
                    let by = crate::core::model::Emitter {
                        policy_id: &policy,
                        rule_id: &rule,
                        clock: &clocks[c],
                        clock_pos: c as u32,
                        target: None,
                    };
                    let t = Ts(next(4) as i64);
                    SlaOutput::ticket(&id, &tenants[next(2) as usize], by, body, t, t)
                })
                .collect();
            if case % 2 == 0 {
                v.sort_by_key(|o| o.fired_at);
            }
            let mut want = v.clone();
            want.sort_by(output_order);
            sort_outputs_reusing(&mut v, &mut scratch);
            assert_eq!(v, want, "case {case}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Rescheduling only the clocks an event changed, and a fired ticket from the due
        /// instants firing found, queues exactly what rescheduling from every clock queues:
        /// the same due per ticket and the same queue after every step, the same outputs.
        #[test]
        fn incremental_rescheduling_queues_what_a_full_one_does(events in scenario(), late in any::<bool>()) {
            let policy = Arc::new(
                load_policy_file(std::path::Path::new(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/deploy/policies/default.toml"
                )))
                .expect("default policy"),
            );
            let mut fast = Engine::new(policy.clone(), EngineConfig::default());
            let mut full = Engine::new(policy, EngineConfig::default());
            full.full_schedule = true;
            let (mut a, mut b) = (Emitted::default(), Emitted::default());
            for ev in &events {
                fast.ingest(ev.clone(), &mut a);
                full.ingest(ev.clone(), &mut b);
                // Late: the watermark runs ahead of the events (they then apply at once).
                let wm = if late { ev.occurred_at.saturating_add(Dur::from_secs(3600)) } else { ev.occurred_at };
                fast.advance_to(wm, &mut a);
                full.advance_to(wm, &mut b);
                prop_assert_eq!(dues(&fast), dues(&full));
                prop_assert_eq!(fast.tickets.timers.len(), full.tickets.timers.len());
            }
            let end = events.last().unwrap().occurred_at.saturating_add(Dur::from_secs(40 * 86_400));
            fast.finish(Some(end), &mut a);
            full.finish(Some(end), &mut b);
            prop_assert_eq!(dues(&fast), dues(&full));
            prop_assert_eq!(&a.outputs, &b.outputs);
        }
    }
}
