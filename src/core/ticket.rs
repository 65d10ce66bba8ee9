//! One ticket's state and how an event or a timer changes it. Pure: the engine hands in
//! the plan and collects what is emitted.
use crate::core::clock::{ClockCore, ClockState, ClockStatus, Item, Pauses};
use crate::core::clocks::{Clocks, Dense};
use crate::core::model::{
    Body, Category, Channel, Emitter, Event, OutputBody, SlaOutput, TicketAttrs, Tier, Urgency,
};
use crate::core::names::Names;
use crate::core::plan::Plan;
use crate::core::policy::{
    ClockKind, ClockSpec, LatencyMetric, Matcher, MatcherSet, OnReopen, Phase, PhaseSet,
};
use crate::core::ticket_id::TicketId;
use crate::core::time::{Dur, Ts};
use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::sync::Arc;

/// A stopped deadline clock's counted time: what the SLA judged (for latency metrics and
/// the replay summary). A clock with a `metric` that ends without its stop (closed,
/// cancelled by a reopen or a re-match, its ticket dropped idle) is observed too, as
/// `censored`: rule 12 counts every ticket once per cycle, so a distribution is never
/// computed over the answered tickets alone.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub policy_id: Arc<str>,
    pub clock: Arc<str>,
    pub rule_id: Arc<str>,
    /// The latency distribution the clock feeds (`metric`), if any.
    pub metric: Option<LatencyMetric>,
    pub channel: crate::core::model::Channel,
    pub urgency: Urgency,
    /// Counted time at the stop; for a censored clock, counted time until it ended (the
    /// latency is more than that).
    pub counted: Dur,
    /// Ended without its stop (unanswered): above every bucket of its histogram.
    pub censored: bool,
    pub breached: bool,
    pub at: Ts,
}

impl Observation {
    fn of(
        attrs: &CompactAttrs,
        plan: &Plan,
        i: usize,
        c: &ClockCore,
        p: Option<&Pauses>,
        t: Ts,
        censored: bool,
    ) -> Self {
        let spec = &plan.clocks[i];
        Observation {
            policy_id: plan.policy_id.clone(),
            clock: spec.id.clone(),
            rule_id: spec.rule.clone(),
            metric: spec.metric,
            channel: attrs.channel,
            urgency: attrs.urgency.effective(),
            counted: c.counted_until(p, plan.calendar(i), t),
            censored,
            breached: c.breached,
            at: t,
        }
    }
}

/// Rule 12: a running clock with a `metric` that ends at `t` without its stop is counted as
/// censored. Call before changing its state.
#[allow(clippy::too_many_arguments)]
fn censor(
    attrs: &CompactAttrs,
    plan: &Plan,
    i: usize,
    c: &ClockCore,
    p: Option<&Pauses>,
    t: Ts,
    sink: &mut Sink,
) {
    if c.is_running() && plan.clocks[i].metric.is_some() {
        sink.observations
            .push(Observation::of(attrs, plan, i, c, p, t, true));
    }
}

/// Clock `i`'s paused intervals, if it ever paused since its start.
pub fn pauses_of(x: &Option<Box<Extras>>, i: usize) -> Option<&Pauses> {
    x.as_ref()?.pauses.get(i)?.as_deref()
}

/// Clock `i`'s place for paused intervals, made on first use (the extras too).
fn pauses_slot(x: &mut Option<Box<Extras>>, i: usize) -> &mut Option<Box<Pauses>> {
    let p = x.get_or_insert_with(Default::default).pauses.vec_mut();
    if p.len() <= i {
        p.resize_with(i + 1, || None);
    }
    &mut p[i]
}

/// Clock `i` (re)started at `t`: its state reset, its paused intervals dropped (extras that
/// held nothing else too, as if it never paused: a restored ticket has none either).
fn start_clock(c: &mut ClockCore, x: &mut Option<Box<Extras>>, i: usize, t: Ts) {
    c.start_at(t);
    drop_pauses(x, i);
}

/// Drops clock `i`'s paused intervals (see [`start_clock`]); the caller clears `paused`.
fn drop_pauses(x: &mut Option<Box<Extras>>, i: usize) {
    let Some(e) = x.as_mut() else {
        return;
    };
    if e.pauses.is_empty() {
        return;
    }
    if let Some(p) = e.pauses.get_mut(i) {
        *p = None;
    }
    while e.pauses.last().is_some_and(|p| p.is_none()) {
        e.pauses.vec_mut().pop();
    }
    e.pauses.drop_if_empty();
    if e.pauses.is_empty() && e.actions_fired.is_empty() && e.check_since.is_empty() {
        *x = None;
    }
}

/// [`ClockCore::pause_at`] for clock `i` (nothing allocated if already paused).
fn pause_clock(c: &mut ClockCore, x: &mut Option<Box<Extras>>, i: usize, t: Ts) {
    if !c.is_paused() {
        c.pause_at(pauses_slot(x, i), t);
    }
}

/// [`ClockCore::resume_at`] for clock `i`.
fn resume_clock(c: &mut ClockCore, x: &mut Option<Box<Extras>>, i: usize, t: Ts) {
    if c.is_paused() {
        c.resume_at(pauses_slot(x, i), t);
    }
}

/// [`ClockCore::follow_phase`] for clock `i` (nothing allocated unless it pauses).
fn follow_phase(
    c: &mut ClockCore,
    x: &mut Option<Box<Extras>>,
    i: usize,
    paused_in: PhaseSet,
    phase: Phase,
    t: Ts,
) {
    if paused_in.is_empty() {
        return;
    }
    match (paused_in.contains(phase), c.is_paused()) {
        (true, false) => pause_clock(c, x, i, t),
        (false, true) => resume_clock(c, x, i, t),
        _ => {}
    }
}

/// Clock `i`'s `after` is satisfied by the ticket's `clocks` (or it has none).
fn after_satisfied<C>(clocks: &C, plan: &Plan, i: usize) -> bool
where
    C: std::ops::Index<usize, Output = ClockCore> + ?Sized,
{
    match plan.after[i] {
        Some(j) => clocks[j].done_or_breached(),
        None => plan.clocks[i].after.is_none(),
    }
}

/// A ticket's state in memory. Its changelog form (`core::snapshot`) names the tenant and
/// team; here they are ids of the store's name table.
#[derive(Clone, Debug, PartialEq)]
pub struct Ticket {
    /// 16 bytes, ids of up to 15 bytes inline ([`TicketId`]).
    pub id: TicketId,
    pub attrs: CompactAttrs,
    /// Index into the engine's plan registry.
    pub plan: u32,
    pub phase: Phase,
    pub cycle: u32,
    pub opened_at: Ts,
    /// By the plan's clock index; paused intervals are in `extras` ([`ClockCore`]). The
    /// block also holds the closing instant of a closed ticket ([`Ticket::closed_at`]: a
    /// word of its room, not 9 bytes of every ticket; `core/clocks/closed.rs`) and the
    /// last event's instant ([`Ticket::last_event`]: `Ticket` 72 → 64 bytes). The
    /// same heap block holds the dedup hashes ([`Ticket::seen`]): one allocation and an
    /// 8-byte pointer for both ([`Clocks`]).
    pub clocks: Clocks,
    /// Rarely used state, allocated on first use (most tickets never need it).
    pub extras: Option<Box<Extras>>,
}

/// [`TicketAttrs`] with tenant and team as ids of the store's [`Names`] (12 bytes, not 56).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CompactAttrs {
    pub channel: Channel,
    pub category: Category,
    pub urgency: Urgency,
    pub tier: Tier,
    pub tenant: u32,
    pub team: u32,
}

impl CompactAttrs {
    /// Interns `attrs`' names (counting this holder; see [`Names::intern`]).
    pub fn interned(attrs: &TicketAttrs, names: &mut Names) -> CompactAttrs {
        CompactAttrs {
            channel: attrs.channel,
            category: attrs.category,
            urgency: attrs.urgency,
            tier: attrs.tier,
            tenant: names.intern(&attrs.tenant),
            team: names.intern(&attrs.team),
        }
    }

    pub fn named(&self, names: &Names) -> TicketAttrs {
        TicketAttrs {
            channel: self.channel,
            category: self.category,
            urgency: self.urgency,
            tier: self.tier,
            tenant: names.get(self.tenant).clone(),
            team: names.get(self.team).clone(),
        }
    }
}

/// Ticket state most tickets never need: kept out of line so an open ticket stays small.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Extras {
    /// Hashes of the `clock` names of actions already fired (at most once per ticket).
    /// The first inline ([`Fired`]: 16 bytes, so that the extras of a ticket that fired one
    /// action, the usual ones, are 32 bytes and a 32-byte block, not 40 in a 48-byte one).
    /// Encoded as the `Vec` was (a sequence).
    pub actions_fired: Fired,
    /// Per check of the policy file: the last `since` event not yet judged.
    pub check_since: RareVec<Option<Ts>>,
    /// Paused intervals by clock index, for clocks that paused since their start (kept
    /// out of [`ClockCore`]: 8 bytes per clock of every ticket for what few clocks use).
    /// Not part of the record's `extras`: the record's clocks carry them, as before.
    #[serde(skip)]
    pub pauses: RareVec<Option<Box<Pauses>>>,
}

/// A `Vec` held as one pointer (8 bytes, not a 24-byte header), allocating nothing while
/// empty: the extras' lists that most extras never use (issue 14: the extras of a ticket
/// that fired an action, the usual ones, are 40 bytes and a 48-byte malloc chunk, not 72
/// and 80). Reads as a slice; [`RareVec::vec_mut`] makes the `Vec` on first write. Equal,
/// printed and encoded as the `Vec` (a sequence), so the record's form is unchanged.
// The `Box` is the point: one pointer in the extras instead of a `Vec`'s 24-byte header.
#[allow(clippy::box_collection)]
pub struct RareVec<T>(Option<Box<Vec<T>>>);

impl<T> RareVec<T> {
    /// The `Vec`, made on first use.
    pub fn vec_mut(&mut self) -> &mut Vec<T> {
        self.0.get_or_insert_with(Default::default)
    }

    /// Frees the `Vec` if it is empty (back to one null pointer).
    pub fn drop_if_empty(&mut self) {
        if self.is_empty() {
            self.0 = None;
        }
    }
}

impl<T> Default for RareVec<T> {
    fn default() -> Self {
        RareVec(None)
    }
}

impl<T> From<Vec<T>> for RareVec<T> {
    fn from(v: Vec<T>) -> Self {
        RareVec((!v.is_empty()).then(|| Box::new(v)))
    }
}

impl<T: Clone> Clone for RareVec<T> {
    fn clone(&self) -> Self {
        RareVec::from(self.to_vec())
    }
}

impl<T> std::ops::Deref for RareVec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.0.as_deref().map_or(&[], |v| v.as_slice())
    }
}

impl<T> std::ops::DerefMut for RareVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match &mut self.0 {
            Some(v) => v.as_mut_slice(),
            None => &mut [],
        }
    }
}

impl<T: PartialEq> PartialEq for RareVec<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for RareVec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl<T: Serialize> Serialize for RareVec<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for RareVec<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<T>::deserialize(d).map(RareVec::from)
    }
}

/// The fired actions' hashes ([`Extras::actions_fired`]): none, one inline, or more in a
/// boxed `SmallVec` (two of them inline in its box). 16 bytes; the `SmallVec<[u64; 2]>` it
/// replaces was 24, which made the extras 40 bytes, held by mimalloc in its 48-byte class
/// (issue 14: 16 % of the bench's tickets, all with one fired action). Reads as a slice;
/// equal, printed and encoded as the `Vec` (a sequence), so the record's form is unchanged.
#[derive(Clone, Default)]
pub enum Fired {
    #[default]
    None,
    One(u64),
    Many(Box<SmallVec<[u64; 2]>>),
}

impl Fired {
    pub fn push(&mut self, h: u64) {
        *self = match std::mem::take(self) {
            Fired::None => Fired::One(h),
            Fired::One(a) => Fired::Many(Box::new(smallvec::smallvec![a, h])),
            Fired::Many(mut v) => {
                v.push(h);
                Fired::Many(v)
            }
        }
    }

    /// The bytes of the heap blocks holding the hashes (the box, the `SmallVec`'s buffer;
    /// 0 for none), for the engine's memory breakdown.
    pub fn heap_requests(&self) -> [usize; 2] {
        match self {
            Fired::Many(v) if v.spilled() => [24, v.capacity() * 8],
            Fired::Many(_) => [24, 0],
            _ => [0, 0],
        }
    }
}

impl Fired {
    /// The first hash, and the others as a `Fired` (a restored ticket's first goes to its
    /// clock block, [`Ticket::actions_fired`]).
    pub fn split_first(self) -> (Option<u64>, Fired) {
        match self {
            Fired::None => (None, Fired::None),
            Fired::One(h) => (Some(h), Fired::None),
            Fired::Many(v) => (v.first().copied(), v.iter().skip(1).copied().collect()),
        }
    }
}

impl std::ops::Deref for Fired {
    type Target = [u64];
    fn deref(&self) -> &[u64] {
        match self {
            Fired::None => &[],
            Fired::One(h) => std::slice::from_ref(h),
            Fired::Many(v) => v,
        }
    }
}

impl FromIterator<u64> for Fired {
    fn from_iter<I: IntoIterator<Item = u64>>(it: I) -> Self {
        let mut f = Fired::None;
        for h in it {
            f.push(h);
        }
        f
    }
}

impl PartialEq for Fired {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for Fired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl Serialize for Fired {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Fired {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<u64>::deserialize(d).map(|v| v.into_iter().collect())
    }
}

impl Extras {
    /// Whether the record's `extras` is present for these extras (not when they hold
    /// paused intervals only, which the record keeps with the clocks), apart from the
    /// first fired action's hash in the clock block (`core::snapshot`'s `ExtrasOut`).
    pub fn on_wire(x: &Option<Box<Extras>>) -> bool {
        x.as_deref().is_some_and(|e| {
            e.pauses.is_empty() || !e.actions_fired.is_empty() || !e.check_since.is_empty()
        })
    }

    /// Takes the first fired action's hash out of a decoded record's extras (a ticket keeps
    /// it in its clock block, [`Ticket::actions_fired`]); extras then holding nothing are
    /// dropped, as a live ticket that fired one action has none.
    pub fn take_first_fired(x: &mut Option<Box<Extras>>) -> Option<u64> {
        let e = x.as_mut()?;
        let (first, rest) = std::mem::take(&mut e.actions_fired).split_first();
        e.actions_fired = rest;
        if first.is_some()
            && e.actions_fired.is_empty()
            && e.pauses.is_empty()
            && e.check_since.is_empty()
        {
            *x = None;
        }
        first
    }
}

/// Where a ticket's emissions go.
pub struct Sink<'a> {
    /// The ticket's tenant (outputs name it; the ticket holds its id).
    pub tenant: &'a CompactString,
    pub outputs: &'a mut Vec<SlaOutput>,
    pub observations: &'a mut Vec<Observation>,
    /// The event being applied arrived late (below the watermark): timers it would have
    /// stopped may already have fired.
    pub late: bool,
}

/// How an output's `fired_at` is set.
#[derive(Clone, Copy)]
enum Mode {
    /// A timer: `fired_at` = the item's own due time.
    Timer,
    /// Decided on an event at this time (re-match): `fired_at` = the event's time.
    Event(Ts),
}

/// The `reason` of a ladder escalation, shared (a fresh `Arc<str>` per output was an
/// allocation per escalation).
static BREACH_REASON: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| "breach".into());

/// Dedup hashes a new ticket has room for (80 bytes): a ticket's life (opened, first reply,
/// a few exchanges, resolved) fits without reallocating; then it grows by 4. Growing from
/// empty by 2 reallocated every other event, and growing 8 → 12 at the 9th event left an
/// 80-byte hole per ticket that the allocator did not reuse (+38 bytes per ticket in the
/// 1 M-ticket bench).
const DEDUP_INITIAL: usize = 10;

/// The dedup capacity a live ticket holds once it has recorded `n` event hashes (the
/// growth rule of [`Ticket::check_and_record`]: 10, then by 4). A restored ticket is given
/// `dedup_capacity(n + 1)`, the room its next event needs: restored with exactly `n`, it
/// reallocated on its first event after a restore.
pub fn dedup_capacity(n: usize) -> usize {
    if n <= DEDUP_INITIAL {
        DEDUP_INITIAL
    } else {
        DEDUP_INITIAL + (n - DEDUP_INITIAL).div_ceil(4) * 4
    }
}

pub fn id_hash(event_id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(event_id.as_bytes())
}

impl Ticket {
    pub fn open(ev: &Event, attrs: CompactAttrs, plan_index: u32, plan: &Plan) -> Ticket {
        Ticket {
            id: TicketId::from(&ev.ticket_id),
            attrs,
            plan: plan_index,
            phase: Phase::Open,
            cycle: 0,
            opened_at: ev.occurred_at,
            clocks: {
                let mut c = Clocks::open(plan.clocks.len(), plan.routine_starts(), DEDUP_INITIAL);
                c.set_last_event(ev.occurred_at);
                c
            },
            extras: None,
        }
    }

    /// The latest instant of the events applied (kept in the clock block).
    #[inline]
    pub fn last_event(&self) -> Ts {
        self.clocks.last_event()
    }

    /// When the ticket closed (or expired), if it is closed.
    pub fn closed_at(&self) -> Option<Ts> {
        self.clocks.closed_at()
    }

    pub fn set_closed_at(&mut self, at: Option<Ts>) {
        self.clocks.set_closed_at(at);
    }

    /// 64-bit hashes of every event id applied (rule 9 dedup).
    pub fn seen(&self) -> crate::core::clocks::Seen<'_> {
        self.clocks.seen()
    }

    /// True when the event id was already applied; records it otherwise.
    pub fn check_and_record(&mut self, event_id: &str) -> bool {
        let h = id_hash(event_id);
        let seen = self.clocks.seen();
        if seen.contains(h) {
            return true;
        }
        // Exact growth: a ticket sees ~10 events; doubling would waste a third of the
        // dedup memory, the dominant part of an open ticket.
        let len = seen.len();
        if len == self.clocks.seen_capacity() {
            self.clocks.reserve_seen_exact(if len < 8 { 2 } else { 4 });
        }
        self.clocks.push_seen(h);
        false
    }

    /// The hashes of the actions fired (rule: each at most once per ticket), in the order
    /// fired: the first in the clock block ([`Clocks::fired`]), the others in the extras.
    pub fn actions_fired(&self) -> impl Iterator<Item = u64> + '_ {
        let rest = self
            .extras
            .as_ref()
            .map_or(&[][..], |x| &x.actions_fired[..]);
        self.clocks.fired().into_iter().chain(rest.iter().copied())
    }

    /// Records action hash `h` as fired; false when it already was. The first goes to the
    /// clock block (no extras for a ticket that fires one action), later ones to the extras.
    fn record_fired(&mut self, h: u64) -> bool {
        match self.clocks.fired() {
            None => self.clocks.set_fired(Some(h)),
            Some(first) => {
                if first == h {
                    return false;
                }
                let x = self.extras.get_or_insert_with(Default::default);
                if x.actions_fired.contains(&h) {
                    return false;
                }
                x.actions_fired.push(h);
            }
        }
        true
    }

    fn check_since(&self, k: usize) -> Option<Ts> {
        self.extras
            .as_ref()
            .and_then(|x| x.check_since.get(k).copied().flatten())
    }

    fn set_check_since(&mut self, k: usize, v: Option<Ts>) {
        if v.is_none() && self.extras.is_none() {
            return;
        }
        let x = self.extras.get_or_insert_with(Default::default);
        if x.check_since.len() <= k {
            x.check_since.vec_mut().resize(k + 1, None);
        }
        x.check_since[k] = v;
    }

    pub fn running_clocks(&self) -> usize {
        self.clocks.iter().filter(|c| c.is_running()).count()
    }

    /// The earliest due instant among the ticket's clocks.
    pub fn next_clock_due(&self, plan: &Plan) -> Option<Ts> {
        // Idle clocks have no due instant: only the stored ones are read.
        self.clocks
            .stored()
            .filter_map(|(i, c)| {
                c.next_due(
                    pauses_of(&self.extras, i),
                    &plan.clocks[i],
                    plan.calendar(i),
                )
            })
            .min()
    }

    /// The earliest due instant among the clocks that differ from `before` (the same
    /// ticket's clocks before an event, under the same plan). A clock's due instant is a
    /// function of its core, its paused intervals (which change only with its core) and its
    /// spec, so an unchanged clock's due is unchanged.
    pub fn next_changed_clock_due(&self, plan: &Plan, before: &[ClockCore]) -> Option<Ts> {
        // A clock idle now has no due instant (whatever it was before): only the stored
        // clocks are compared.
        self.clocks
            .stored()
            .filter(|&(i, c)| !c.same_as(&before[i]))
            .filter_map(|(i, c)| {
                c.next_due(
                    pauses_of(&self.extras, i),
                    &plan.clocks[i],
                    plan.calendar(i),
                )
            })
            .min()
    }

    /// Clock `i`'s whole state (its paused intervals copied), for views and traces.
    pub fn clock(&self, i: usize) -> ClockState {
        ClockState::from_parts(
            self.clocks[i],
            pauses_of(&self.extras, i).map(|p| Box::new(p.clone())),
        )
    }

    /// Every clock's whole state (see [`Ticket::clock`]).
    pub fn clock_states(&self) -> impl Iterator<Item = ClockState> + '_ {
        (0..self.clocks.len()).map(|i| self.clock(i))
    }

    /// Applies one event (not `opened` of a new ticket; not a duplicate). `rematch` is
    /// called for `urgency_changed` with the new attributes and must return the new plan's
    /// index and the plan itself (possibly the same).
    pub fn apply(
        &mut self,
        ev: &Event,
        matches: MatcherSet,
        plan: &Arc<Plan>,
        rematch: &mut dyn FnMut(&CompactAttrs) -> (u32, Arc<Plan>),
        sink: &mut Sink,
    ) {
        let t = ev.occurred_at;
        if t > self.clocks.last_event() {
            self.clocks.set_last_event(t);
        }
        // The plan in force: the one given, or the one a re-match moves the ticket to.
        let mut plan = plan;
        let rematched: Arc<Plan>;
        // The block stores only clocks that are not idle (`Clocks`): steps 3–5 change
        // running clocks (stored ones) in place; a reopen and a re-match change every clock
        // on a dense copy written back after; a start writes its one clock.

        // 1. Phase, and reopen (rule 7).
        let reopening = matches!(
            ev.body,
            Body::Reopened
                | Body::Feedback {
                    satisfied: Some(false)
                }
        ) && matches!(self.phase, Phase::Resolved | Phase::Closed);
        self.phase = match (&ev.body, self.phase) {
            (Body::WaitingOnCustomer, Phase::Open) => Phase::Waiting,
            (Body::OnHold, Phase::Open) => Phase::OnHold,
            (Body::CustomerMessage, Phase::Waiting) => Phase::Open,
            (Body::Resumed, Phase::Waiting | Phase::OnHold) => Phase::Open,
            (Body::Resolved, p) if p != Phase::Closed => Phase::Resolved,
            (Body::Closed, _) => Phase::Closed,
            _ if reopening => Phase::Open,
            (_, p) => p,
        };
        if reopening {
            self.cycle += 1;
            self.set_closed_at(None);
            let mut clocks = self.clocks.dense();
            for (i, c) in clocks.iter_mut().enumerate() {
                let spec = &plan.clocks[i];
                c.once_used = false;
                let restart = spec.on_reopen == OnReopen::Restart;
                if (spec.follow_up || restart) && c.is_running() {
                    // The cycle that ends here ends without the clock's stop.
                    let p = pauses_of(&self.extras, i);
                    censor(&self.attrs, plan, i, c, p, t, sink);
                }
                if spec.follow_up && c.is_running() {
                    c.status = ClockStatus::Cancelled;
                }
                if restart {
                    start_clock(c, &mut self.extras, i, t);
                }
            }
            self.clocks.store(&clocks);
        }

        // 2. Re-match on urgency change (rule 6).
        if let Body::UrgencyChanged(u) = ev.body {
            let mut attrs = self.attrs;
            attrs.urgency = u;
            let (new_index, new_plan) = rematch(&attrs);
            self.attrs = attrs;
            if new_index != self.plan {
                let mut clocks = self.clocks.dense();
                self.rematch(&mut clocks, t, new_index, plan, &new_plan, sink);
                self.clocks.store(&clocks);
                rematched = new_plan;
                plan = &rematched;
            }
        }

        // 3. Stops (and recurring resets / ends) first.
        // Running clocks only: stored ones, changed in place (they stay not idle).
        self.clocks.for_each_stored(|i, c| {
            if !c.is_running() {
                return;
            }
            let spec = &plan.clocks[i];
            match spec.kind {
                ClockKind::Recurring { end, .. } => {
                    if end.hits(matches) {
                        c.status = ClockStatus::Stopped;
                    } else if spec.stop.hits(matches) {
                        let paused = c.is_paused();
                        drop_pauses(&mut self.extras, i);
                        c.start = t;
                        c.nth = 0;
                        c.paused = false;
                        if paused {
                            pause_clock(c, &mut self.extras, i, t);
                        }
                    }
                }
                ClockKind::Deadline => {
                    if spec.stop.hits(matches) {
                        let cal = plan.calendar(i);
                        let p = pauses_of(&self.extras, i);
                        let counted = c.counted_until(p, cal, t);
                        sink.observations.push(Observation::of(
                            &self.attrs,
                            plan,
                            i,
                            c,
                            p,
                            t,
                            false,
                        ));
                        c.status = ClockStatus::Stopped;
                        if c.breached {
                            let deadline = deadline_of(c, p, spec, cal, t);
                            let body = OutputBody::Cleared {
                                overdue: Dur((counted.0 - spec.target.0).max(0)),
                            };
                            // A late stop (before the deadline, after the Breach fired)
                            // is cleared at the Breach's instant, so the Cleared never
                            // precedes its Breach in rule-3 order. In-order input keeps the
                            // event's time (rule 3): after a re-match that moved the
                            // deadline later, a Breach emitted under the old deadline is
                            // cleared by a stop before the new one.
                            sink.outputs.push(clock_output(
                                &self.id,
                                sink.tenant,
                                plan,
                                spec,
                                body,
                                deadline,
                                if sink.late { t.max(deadline) } else { t },
                            ));
                        }
                    }
                }
            }
        });

        // 4. Pause / resume: by phase (`paused_in`) or by events.
        let phase = self.phase;
        let extras = &mut self.extras;
        self.clocks.for_each_stored(|i, c| {
            if !c.is_running() {
                return;
            }
            let spec = &plan.clocks[i];
            let x = &mut *extras;
            if !spec.paused_in.is_empty() {
                follow_phase(c, x, i, spec.paused_in, phase, t);
            } else if !c.is_paused() && spec.pause.hits(matches) {
                pause_clock(c, x, i, t);
            } else if c.is_paused() && spec.resume.hits(matches) {
                resume_clock(c, x, i, t);
            }
        });

        // 5. Close cancels all but survivors, silently (rule 8).
        if matches!(ev.body, Body::Closed) {
            self.set_closed_at(Some(t));
            let (attrs, extras) = (&self.attrs, &self.extras);
            self.clocks.for_each_stored(|i, c| {
                if c.is_running() && !plan.clocks[i].survives_close {
                    censor(attrs, plan, i, c, pauses_of(extras, i), t, sink);
                    c.status = ClockStatus::Cancelled;
                }
            });
        }

        // 6. Starts. A deadline clock does not start on an event that is itself what the
        // clock awaits (its own stop matcher): a first reply that already carries the ETA
        // must not open an `eta` clock demanding another one. It still uses up `once`.
        for i in 0..self.clocks.len() {
            let spec = &plan.clocks[i];
            // Nothing below happens to a clock the event does not start.
            if !spec.start.hits(matches) {
                continue;
            }
            let mut c = self.clocks[i];
            if !c.is_running() && spec.kind == ClockKind::Deadline && spec.stop.hits(matches) {
                if spec.once && spec.phases.contains(self.phase) {
                    c.once_used = true;
                    self.clocks.set(i, c);
                }
                continue;
            }
            if c.is_running()
                || (spec.once && c.once_used)
                || !spec.phases.contains(self.phase)
                || !after_satisfied(&self.clocks, plan, i)
            {
                continue;
            }
            start_clock(&mut c, &mut self.extras, i, t);
            follow_phase(&mut c, &mut self.extras, i, spec.paused_in, self.phase, t);
            self.clocks.set(i, c);
            if spec.follow_up {
                let cal = plan.calendar(i);
                let p = pauses_of(&self.extras, i);
                let deadline = deadline_of(&c, p, spec, cal, t);
                sink.outputs.push(clock_output(
                    &self.id,
                    sink.tenant,
                    plan,
                    spec,
                    OutputBody::FollowUpDue,
                    deadline,
                    t,
                ));
            }
        }

        // 7. Actions (at most once per ticket).
        self.fire_actions(plan, matches, t, t, sink);

        // 8. Checks: `on` judges against the last `since`, then `since` re-arms.
        let checks = &plan.set.checks;
        for (k, check) in checks.iter().enumerate() {
            if check.on.hits(matches) {
                if let Some(since) = self.check_since(k) {
                    let deadline = since.saturating_add(check.target);
                    if t > deadline {
                        let body = OutputBody::Breach {
                            overdue: t.since(deadline),
                        };
                        let by = Emitter {
                            policy_id: &plan.policy_id,
                            rule_id: &check.rule,
                            clock: &check.id,
                            clock_pos: check.position,
                            target: Some(check.target),
                        };
                        sink.outputs.push(SlaOutput::ticket(
                            &self.id,
                            sink.tenant,
                            by,
                            body,
                            deadline,
                            t,
                        ));
                        self.set_check_since(k, None);
                    }
                }
            }
            if check.since.hits(matches) {
                self.set_check_since(k, Some(t));
            }
        }
    }

    fn fire_actions(
        &mut self,
        plan: &Plan,
        matches: MatcherSet,
        deadline: Ts,
        t: Ts,
        sink: &mut Sink,
    ) {
        for a in &plan.actions {
            if !a.on.hits(matches) {
                continue;
            }
            let h = id_hash(&a.clock);
            if !self.record_fired(h) {
                continue;
            }
            let body = OutputBody::Escalation {
                level: a.level,
                notify: a.notify.clone(),
                reason: a.reason.clone(),
            };
            let by = Emitter {
                policy_id: &plan.policy_id,
                rule_id: &a.rule,
                clock: &a.clock,
                clock_pos: a.position,
                target: None,
            };
            sink.outputs.push(SlaOutput::ticket(
                &self.id,
                sink.tenant,
                by,
                body,
                deadline,
                t,
            ));
        }
    }

    /// Rule 6: carry clocks by id, cancel old-only ones, start new-only `opened` clocks
    /// retroactively, then fire whatever is past due at the change.
    fn rematch(
        &mut self,
        clocks: &mut Dense,
        t: Ts,
        new_index: u32,
        old: &Plan,
        new: &Plan,
        sink: &mut Sink,
    ) {
        let mut new_clocks: Dense = smallvec::smallvec![ClockCore::default(); new.clocks.len()];
        let mut pauses: Vec<Option<Box<Pauses>>> = Vec::new();
        let mut carried = vec![false; new.clocks.len()];
        for (ni, spec) in new.clocks.iter().enumerate() {
            if let Some(oi) = old.clocks.iter().position(|c| c.id == spec.id) {
                let mut st = std::mem::take(&mut clocks[oi]);
                let p = self
                    .extras
                    .as_mut()
                    .and_then(|x| x.pauses.get_mut(oi)?.take());
                if p.is_some() {
                    pauses.resize_with(ni + 1, || None);
                    pauses[ni] = p;
                }
                let old_spec = &old.clocks[oi];
                let mut warned = 0u8;
                for (nj, f) in spec.warn_at.iter().enumerate().take(8) {
                    if let Some(oj) = old_spec.warn_at.iter().position(|g| g == f) {
                        if oj < 8 && st.warned & (1 << oj) != 0 {
                            warned |= 1 << nj;
                        }
                    }
                }
                st.warned = warned;
                st.escalated = st.escalated.min(spec.escalate.len() as u8);
                new_clocks[ni] = st;
                carried[ni] = true;
            }
        }
        // Clocks only in the old policy are cancelled: their cycle ends without a stop.
        for (oi, c) in clocks.iter().enumerate() {
            censor(
                &self.attrs,
                old,
                oi,
                c,
                pauses_of(&self.extras, oi),
                t,
                sink,
            );
        }
        *clocks = new_clocks;
        if let Some(x) = self.extras.as_mut() {
            // Carried clocks' intervals at their new indices; old-only clocks' dropped.
            let had = !x.pauses.is_empty();
            x.pauses = pauses.into();
            if had && x.pauses.is_empty() && x.actions_fired.is_empty() && x.check_since.is_empty()
            {
                self.extras = None;
            }
        }
        self.plan = new_index;
        for (ni, was_carried) in carried.iter().enumerate() {
            let spec = &new.clocks[ni];
            if !was_carried
                && spec.start.contains(Matcher::Opened)
                && spec.phases.contains(self.phase)
                && after_satisfied(clocks, new, ni)
            {
                let c = &mut clocks[ni];
                start_clock(c, &mut self.extras, ni, self.opened_at);
                // The phase history is not kept: a retroactive clock is paused from the
                // change when the ticket is in one of its `paused_in` phases now.
                follow_phase(c, &mut self.extras, ni, spec.paused_in, self.phase, t);
            }
        }
        for ni in 0..new.clocks.len() {
            let _ = Ticket::fire_clock(
                &self.id,
                &self.extras,
                &mut clocks[ni],
                new,
                ni,
                t,
                Mode::Event(t),
                sink,
            );
        }
        let opened = MatcherSet::of(&[Matcher::Opened]);
        let opened_at = self.opened_at;
        self.fire_actions(new, opened, opened_at, t, sink);
    }

    /// Rule 12: observes every running clock with a `metric` as censored at `t` (the ticket
    /// is being dropped, or a report closes its books), without changing any state.
    pub fn censor_running(&self, plan: &Plan, t: Ts, sink: &mut Sink) {
        for (i, c) in self.clocks.iter().enumerate() {
            censor(&self.attrs, plan, i, c, pauses_of(&self.extras, i), t, sink);
        }
    }

    /// Fires every output of every clock due at or before `until` (a timer at `until`).
    /// Returns the earliest due instant of the clocks afterwards ([`Ticket::next_clock_due`]
    /// of the state it leaves: firing computes it anyway).
    pub fn fire_timers(&mut self, plan: &Plan, until: Ts, sink: &mut Sink) -> Option<Ts> {
        let mut next: Option<Ts> = None;
        // A clock not running owes nothing (`next_item` is `None`); a running one is stored
        // (and stays so: firing marks what it fired).
        let (id, extras) = (&self.id, &self.extras);
        self.clocks.for_each_stored(|i, c| {
            if !c.is_running() {
                return;
            }
            if let Some(due) = Ticket::fire_clock(id, extras, c, plan, i, until, Mode::Timer, sink)
            {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        });
        next
    }

    /// Fires clock `i`'s outputs due at or before `until`; returns its next due instant
    /// afterwards (`ClockCore::next_due` of the state it leaves).
    #[allow(clippy::too_many_arguments)]
    fn fire_clock(
        id: &str,
        extras: &Option<Box<Extras>>,
        clk: &mut ClockCore,
        plan: &Plan,
        i: usize,
        until: Ts,
        mode: Mode,
        sink: &mut Sink,
    ) -> Option<Ts> {
        let spec = &plan.clocks[i];
        let cal = plan.calendar(i);
        loop {
            let c = &*clk;
            let p = pauses_of(extras, i);
            let (item, x) = c.next_item(spec)?;
            let due = c.instant_of(p, cal, x)?;
            if due > until {
                return Some(due);
            }
            let fired_at = match mode {
                Mode::Timer => due,
                Mode::Event(t) => t,
            };
            let (body, deadline) = match item {
                Item::Warning(w) => (
                    OutputBody::Warning {
                        fraction: spec.warn_at[w],
                    },
                    deadline_of(c, p, spec, cal, fired_at),
                ),
                Item::Breach => {
                    let overdue = match mode {
                        Mode::Timer => Dur::ZERO,
                        Mode::Event(t) => {
                            Dur((c.counted_until(p, cal, t).0 - spec.target.0).max(0))
                        }
                    };
                    (OutputBody::Breach { overdue }, due)
                }
                Item::Escalation(k) => (
                    OutputBody::Escalation {
                        level: k as u32 + 1,
                        notify: spec.escalate[k].notify.clone(),
                        reason: BREACH_REASON.clone(),
                    },
                    deadline_of(c, p, spec, cal, fired_at),
                ),
                Item::Reminder(nth) => {
                    let every = match spec.kind {
                        ClockKind::Recurring { every, .. } => every,
                        ClockKind::Deadline => spec.target,
                    };
                    (
                        OutputBody::ProgressReminder {
                            nth,
                            interval: every,
                        },
                        due,
                    )
                }
            };
            sink.outputs.push(clock_output(
                id,
                sink.tenant,
                plan,
                spec,
                body,
                deadline,
                fired_at,
            ));
            clk.mark(item);
        }
    }
}

/// The clock's deadline; while paused, as if it resumed at `at`.
fn deadline_of(
    c: &ClockCore,
    p: Option<&Pauses>,
    spec: &ClockSpec,
    cal: &crate::core::calendar::Calendar,
    at: Ts,
) -> Ts {
    match spec.kind {
        ClockKind::Recurring { every, .. } => {
            let x = Dur(every.0.saturating_mul(c.nth as i64 + 1));
            c.instant_of(p, cal, x).unwrap_or(at)
        }
        ClockKind::Deadline => c.deadline(p, spec, cal).unwrap_or_else(|| {
            let mut resumed = *c;
            let mut rp = p.map(|p| Box::new(p.clone()));
            resumed.resume_at(&mut rp, at);
            resumed.deadline(rp.as_deref(), spec, cal).unwrap_or(at)
        }),
    }
}

/// An output of a clock of the ticket's plan (see [`SlaOutput::ticket`]).
fn clock_output(
    ticket: &str,
    tenant: &CompactString,
    plan: &Plan,
    spec: &ClockSpec,
    body: OutputBody,
    deadline: Ts,
    fired_at: Ts,
) -> SlaOutput {
    SlaOutput::ticket(
        ticket,
        tenant,
        clock_emitter(plan, spec),
        body,
        deadline,
        fired_at,
    )
}

/// A clock as the emitter of its outputs.
pub fn clock_emitter<'a>(plan: &'a Plan, spec: &'a ClockSpec) -> Emitter<'a> {
    Emitter {
        policy_id: &plan.policy_id,
        rule_id: &spec.rule,
        clock: &spec.id,
        clock_pos: spec.position,
        target: Some(spec.target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `RareVec` encodes, decodes, compares and prints as the `Vec` it holds.
    #[test]
    fn rare_vec_is_a_vec() {
        for v in [vec![], vec![Some(Ts(1))], vec![None, Some(Ts(-5)), None]] {
            let r = RareVec::from(v.clone());
            let bytes = postcard::to_allocvec(&v).unwrap();
            assert_eq!(postcard::to_allocvec(&r).unwrap(), bytes);
            let back: RareVec<Option<Ts>> = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(back, r);
            assert_eq!(&*r, &v[..]);
            assert_eq!(format!("{r:?}"), format!("{v:?}"));
            assert_eq!(r.clone(), r);
        }
        let mut r = RareVec::<u8>::default();
        r.vec_mut().push(1);
        r.vec_mut().pop();
        assert!(r.0.is_some());
        r.drop_if_empty();
        assert!(r.0.is_none());
        assert_eq!(std::mem::size_of::<Extras>(), 32);
    }

    /// `Fired` reads, compares, prints and encodes as the `Vec` of the hashes pushed, at
    /// every length through its three forms.
    #[test]
    fn fired_is_a_vec() {
        let mut f = Fired::default();
        let mut v: Vec<u64> = Vec::new();
        assert_eq!(std::mem::size_of::<Fired>(), 16);
        for h in [7, u64::MAX, 0, 7, 1 << 63] {
            assert_eq!(&*f, &v[..]);
            assert_eq!(f, v.iter().copied().collect::<Fired>());
            assert_eq!(format!("{f:?}"), format!("{v:?}"));
            let bytes = postcard::to_allocvec(&v).unwrap();
            assert_eq!(postcard::to_allocvec(&f).unwrap(), bytes);
            assert_eq!(postcard::from_bytes::<Fired>(&bytes).unwrap(), f);
            assert_eq!(f.clone(), f);
            assert_eq!(f.heap_requests()[0] > 0, v.len() > 1);
            assert_eq!(f.heap_requests()[1] > 0, v.len() > 2);
            assert!(v.is_empty() || f != Fired::default());
            f.push(h);
            v.push(h);
        }
        assert_eq!(&*f, &v[..]);
        assert_ne!(f, [7, u64::MAX, 0, 7].into_iter().collect::<Fired>());
        for n in 0..5 {
            let (first, rest) = v[..n].iter().copied().collect::<Fired>().split_first();
            assert_eq!(
                (first, &*rest),
                (v.first().copied().filter(|_| n > 0), &v[n.min(1)..n])
            );
        }
    }

    /// A ticket's first fired action's hash sits in its clock block (in the room, no extras),
    /// the others in the extras after it; a decoded record's extras give their first back
    /// to the block and are dropped when that was all they held.
    #[test]
    fn the_first_fired_action_is_in_the_clock_block() {
        let mut t = Ticket {
            id: TicketId::from("T1"),
            attrs: CompactAttrs::default(),
            plan: 0,
            phase: Phase::Open,
            cycle: 0,
            opened_at: Ts(1),
            clocks: Clocks::open(3, 2, DEDUP_INITIAL),
            extras: None,
        };
        let bytes = t.clocks.heap_bytes();
        assert!(t.record_fired(7));
        assert!(!t.record_fired(7));
        assert_eq!((t.clocks.fired(), t.extras.is_none()), (Some(7), true));
        assert_eq!(
            t.clocks.heap_bytes(),
            bytes + 8,
            "a word added, the room kept"
        );
        assert_eq!(
            t.clocks.seen_capacity(),
            DEDUP_INITIAL + 2 * 16 / crate::core::clocks::HASH
        );
        assert!(t.record_fired(u64::MAX));
        assert!(t.record_fired(0));
        assert!(!t.record_fired(u64::MAX) && !t.record_fired(0) && !t.record_fired(7));
        assert_eq!(t.actions_fired().collect::<Vec<_>>(), [7, u64::MAX, 0]);
        assert_eq!(&*t.extras.as_ref().unwrap().actions_fired, &[u64::MAX, 0]);
        let decoded = |fired: &[u64], since: Vec<Option<Ts>>| {
            Some(Box::new(Extras {
                actions_fired: fired.iter().copied().collect(),
                check_since: since.into(),
                pauses: Default::default(),
            }))
        };
        let mut x = decoded(&[7], vec![]);
        assert_eq!((Extras::take_first_fired(&mut x), x), (Some(7), None));
        let mut x = decoded(&[7, 8], vec![]);
        assert_eq!(
            (Extras::take_first_fired(&mut x), x),
            (Some(7), decoded(&[8], vec![]))
        );
        let mut x = decoded(&[7], vec![None]);
        assert_eq!(
            (Extras::take_first_fired(&mut x), x),
            (Some(7), decoded(&[], vec![None]))
        );
        let mut x = decoded(&[], vec![]);
        assert_eq!(
            (Extras::take_first_fired(&mut x), x),
            (None, decoded(&[], vec![]))
        );
    }

    /// An open ticket's fixed part (the slab holds it inline, 1 M of them in the engine
    /// bench): a regression here is bytes per open ticket (docs/performance.md, issue 14).
    #[test]
    fn ticket_layout_sizes() {
        assert_eq!(std::mem::size_of::<CompactAttrs>(), 12);
        assert_eq!(std::mem::size_of::<Ticket>(), 64);
        assert_eq!(std::mem::size_of::<ClockState>(), 24);
        assert_eq!(std::mem::size_of::<ClockCore>(), 16);
    }

    /// `dedup_capacity` is the capacity `check_and_record` reaches from a new ticket's.
    #[test]
    fn dedup_capacity_follows_check_and_record() {
        let mut seen: Vec<u64> = Vec::with_capacity(DEDUP_INITIAL);
        for n in 1..60usize {
            if seen.len() == seen.capacity() {
                seen.reserve_exact(if seen.len() < 8 { 2 } else { 4 });
            }
            seen.push(n as u64);
            assert_eq!(dedup_capacity(n), seen.capacity(), "after {n} events");
        }
    }
}
