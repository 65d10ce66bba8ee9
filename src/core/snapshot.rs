//! The engine's state format: one ticket record per ticket (compacted changelog), a small
//! partition-level record (watermark, pending and pre-open events, surge windows, counters),
//! and the whole-partition snapshot `replay` and tests use. Every format is versioned and
//! postcard-encoded; a record of another version is refused with a named error, never
//! misread. Plans are named by policy and overlay ids, so a ticket restores under any
//! plan table.
use crate::core::clock::{ClockCore, ClockState, ClockStatus, Pauses};
use crate::core::clocks::Clocks;
use crate::core::engine::{Engine, EngineConfig, EngineStats};
use crate::core::model::{Category, Channel, Tier, Urgency};
use crate::core::model::{Event, TicketKey};
use crate::core::plan::{OverlayIndices, Plan, PlanKey};
use crate::core::policy::{Phase, PolicySet};
use crate::core::store::TicketStore;
use crate::core::surge::{SurgeDetector, SurgeState};
use crate::core::ticket::{dedup_capacity, pauses_of, CompactAttrs, Extras, Ticket};
use crate::core::ticket_id::TicketId;
use crate::core::time::Ts;
use compact_str::CompactString;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::sync::Arc;

mod decode;

/// The capacity a ticket record is written into.
const TICKET_RECORD_CAPACITY: usize = 256;

impl Engine {
    /// One ticket's state with its plan named (so it restores under any plan table).
    pub fn ticket_record(&self, t: &Ticket) -> Vec<u8> {
        let plan = &self.registry.plans[t.plan as usize];
        let rec = TicketRecordRef {
            version: SNAPSHOT_VERSION,
            plan: PlanKeyRef {
                policy_id: &plan.policy_id,
                overlay_ids: plan.overlay_ids.iter().map(|s| &**s).collect(),
            },
            ticket: TicketOut::of(t, &self.tickets),
        };
        // Sized for a usual record (~100-200 bytes), so it is not grown byte by byte.
        postcard::to_extend(&rec, Vec::with_capacity(TICKET_RECORD_CAPACITY))
            .expect("ticket serialises")
    }

    /// Partition-level state (watermark, pending and pre-open events, surge windows,
    /// counters): small, written with every changelog commit.
    pub fn partition_state(&self) -> Vec<u8> {
        self.encode_snapshot(false)
    }

    /// Rebuilds an engine from a changelog: the partition record (if any) and the latest
    /// record of every live ticket.
    pub fn restore_parts<'a>(
        policy: Arc<PolicySet>,
        cfg: EngineConfig,
        partition_state: Option<&[u8]>,
        tickets: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Engine, SnapshotError> {
        let mut r = Restorer::new(policy, cfg);
        let tickets = tickets.into_iter();
        // Sized once (as the Kafka restore does from the partition's offsets): growing the
        // index rehashes every ticket at each doubling, a cache miss each at 1 M tickets.
        r.reserve(tickets.size_hint().0);
        for bytes in tickets {
            r.upsert(bytes)?;
        }
        r.finish(partition_state)
    }

    /// Serialises the whole partition state (versioned, compact).
    pub fn snapshot(&self) -> Vec<u8> {
        self.encode_snapshot(true)
    }

    /// The snapshot format, with the plans and tickets or (the partition record) without.
    fn encode_snapshot(&self, with_tickets: bool) -> Vec<u8> {
        let snap = SnapshotRef {
            version: SNAPSHOT_VERSION,
            watermark: self.watermark,
            max_seen: self.max_seen,
            seq: self.seq,
            plans: if with_tickets {
                self.registry.plans.iter().map(|p| p.key()).collect()
            } else {
                Vec::new()
            },
            tickets: if with_tickets {
                self.tickets
                    .iter()
                    .map(|t| TicketOut::of(t, &self.tickets))
                    .collect()
            } else {
                Vec::new()
            },
            pending: self.pending_sorted(),
            preopen: self.preopen.by_ticket.values().flatten().collect(),
            surge: self.surge.as_ref().map(|s| s.state()),
            stats: &self.stats,
        };
        let mut bytes = SNAPSHOT_MAGIC.to_vec();
        bytes.extend(postcard::to_stdvec(&snap).expect("snapshot serialises"));
        bytes
    }

    /// Rebuilds an engine from [`Engine::snapshot`] bytes, binding tickets to `policy` by
    /// policy and overlay ids.
    pub fn restore(
        policy: Arc<PolicySet>,
        cfg: EngineConfig,
        bytes: &[u8],
    ) -> Result<Engine, SnapshotError> {
        let body = bytes
            .strip_prefix(SNAPSHOT_MAGIC)
            .ok_or(SnapshotError::BadMagic)?;
        let snap: SnapshotIn =
            postcard::from_bytes(body).map_err(|e| SnapshotError::Decode(e.to_string()))?;
        if snap.version != SNAPSHOT_VERSION {
            return Err(SnapshotError::UnsupportedVersion(snap.version));
        }
        let mut e = Engine::new(policy.clone(), cfg);
        for key in &snap.plans {
            let plan = Plan::from_key(&policy, key);
            // Keep indices stable even when two keys resolve to the same plan.
            let i = e.registry.plans.len() as u32;
            let overlays: OverlayIndices = plan
                .overlay_ids
                .iter()
                .filter_map(|id| policy.overlays.iter().position(|o| o.id == *id))
                .collect();
            e.registry
                .index
                .entry((Arc::as_ptr(&policy) as usize, plan.policy_index, overlays))
                .or_insert(i);
            e.registry.plans.push(Arc::new(plan));
        }
        e.watermark = snap.watermark;
        e.max_seen = snap.max_seen;
        e.seq = snap.seq;
        e.stats = snap.stats;
        for t in snap.tickets {
            let mut t = t.decoded().into_ticket(&mut e.tickets);
            let plan = &e.registry.plans[t.plan as usize];
            if t.clocks.len() != plan.clocks.len() && t.phase != Phase::Expired {
                t.clocks.resize(plan.clocks.len());
            }
            let slot = e.tickets.insert(t);
            e.schedule(slot);
        }
        for (i, ev) in snap.pending.into_iter().enumerate() {
            e.pending.push(i as u64, ev);
        }
        for ev in snap.preopen {
            let key = TicketKey::of(&ev);
            match e.preopen.by_ticket.get_mut(&key) {
                Some(list) => list.push(ev),
                None => {
                    e.preopen.expiry.insert((ev.occurred_at, key.clone()));
                    e.preopen.by_ticket.insert(key, vec![ev]);
                }
            }
        }
        if let (Some(state), true) = (snap.surge, e.cfg.surge) {
            e.surge = Some(SurgeDetector::from_state(policy.surge.clone(), state));
        }
        Ok(e)
    }
}

const SNAPSHOT_MAGIC: &[u8] = b"SLAW";
/// Bumped on any incompatible change of the snapshot layout; older versions are refused
/// with a clear error rather than misread.
pub const SNAPSHOT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("not a slawatch snapshot (bad magic bytes)")]
    BadMagic,
    #[error("snapshot format version {0} is not supported (this build reads {SNAPSHOT_VERSION})")]
    UnsupportedVersion(u32),
    #[error("snapshot could not be decoded: {0}")]
    Decode(String),
}

#[derive(Serialize)]
struct SnapshotRef<'a> {
    version: u32,
    watermark: Ts,
    max_seen: Ts,
    seq: u64,
    plans: Vec<PlanKey>,
    tickets: Vec<TicketOut<'a>>,
    pending: Vec<&'a Event>,
    preopen: Vec<&'a Event>,
    surge: Option<&'a SurgeState>,
    stats: &'a EngineStats,
}

/// A plan key as written and read in ticket records: borrowed, so neither side allocates
/// per record (same wire form as [`PlanKey`]).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct PlanKeyRef<'a> {
    #[serde(borrow)]
    policy_id: &'a str,
    #[serde(borrow)]
    overlay_ids: SmallVec<[&'a str; 4]>,
}

#[derive(Serialize)]
struct TicketRecordRef<'a> {
    version: u32,
    plan: PlanKeyRef<'a>,
    ticket: TicketOut<'a>,
}

/// A ticket record as postcard decodes it (the fallback of `decode::ticket_record`).
#[derive(Debug, PartialEq, Deserialize)]
struct TicketRecordIn<'a> {
    version: u32,
    #[serde(borrow)]
    plan: PlanKeyRef<'a>,
    #[serde(borrow)]
    ticket: TicketIn<'a>,
}

/// A ticket record decoded into what a ticket holds, by either decoder.
#[derive(Debug, PartialEq)]
struct RecordIn<'a> {
    version: u32,
    plan: PlanKeyRef<'a>,
    ticket: TicketDecoded<'a>,
}

impl<'a> TicketRecordIn<'a> {
    fn decoded(self) -> RecordIn<'a> {
        RecordIn {
            version: self.version,
            plan: self.plan,
            ticket: self.ticket.decoded(),
        }
    }
}

/// A ticket as encoded: its attributes name tenant and team (the in-memory [`Ticket`] holds
/// ids of the store's name table). Field order and types are the encoded form written by
/// every earlier build (`ticket_record_encoding_is_unchanged` pins the bytes).
#[derive(Serialize)]
struct TicketOut<'a> {
    id: &'a str,
    attrs: AttrsWire<'a>,
    plan: u32,
    phase: Phase,
    cycle: u32,
    opened_at: Ts,
    last_event: Ts,
    closed_at: Option<Ts>,
    clocks: ClocksOut<'a>,
    extras: Option<ExtrasOut<'a>>,
    seen: SeenOut<'a>,
}

/// A ticket's extras as the record encodes them ([`Extras`]' fields in its order: the
/// fired actions' hashes, the checks' instants), the first fired hash from the clock block
/// (`Ticket::actions_fired`) ahead of the extras' own.
struct ExtrasOut<'a> {
    first_fired: Option<u64>,
    extras: Option<&'a Extras>,
}

impl<'a> ExtrasOut<'a> {
    /// The record's extras of `t`: present when the extras are
    /// ([`Extras::on_wire`]) or the block holds a fired hash.
    fn of(t: &'a Ticket) -> Option<ExtrasOut<'a>> {
        let first_fired = t.clocks.fired();
        (first_fired.is_some() || Extras::on_wire(&t.extras)).then_some(ExtrasOut {
            first_fired,
            extras: t.extras.as_deref(),
        })
    }
}

impl Serialize for ExtrasOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct FiredOut<'a>(Option<u64>, &'a [u64]);
        impl Serialize for FiredOut<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().chain(self.1))
            }
        }
        let (rest, since) = match self.extras {
            Some(x) => (&x.actions_fired[..], &x.check_since[..]),
            None => (&[][..], &[][..]),
        };
        let mut st = s.serialize_struct("Extras", 2)?;
        st.serialize_field("actions_fired", &FiredOut(self.first_fired, rest))?;
        st.serialize_field("check_since", since)?;
        st.end()
    }
}

/// A ticket's dedup hashes as the record encodes them: a sequence of u64 (the low 48 bits
/// a ticket keeps since session 15; records of earlier builds hold 64-bit hashes, which a
/// restore truncates alike).
enum SeenOut<'a> {
    Ticket(crate::core::clocks::Seen<'a>),
    /// Given whole, for tests that encode a record without a ticket.
    #[cfg(test)]
    Values(&'a [u64]),
}

impl Serialize for SeenOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SeenOut::Ticket(seen) => s.collect_seq(seen.clone()),
            #[cfg(test)]
            SeenOut::Values(v) => v.serialize(s),
        }
    }
}

/// A ticket's clocks as the record encodes them: a sequence of [`ClockState`] (each with
/// its paused intervals), whether from a ticket, which holds the intervals apart
/// ([`crate::core::clock::ClockCore`]), or given whole.
enum ClocksOut<'a> {
    Ticket(&'a Ticket),
    /// Whole states, for tests that encode a record without a ticket.
    #[cfg(test)]
    States(&'a [ClockState]),
}

/// [`ClockState`]'s fields in its order (so encoded alike), the intervals borrowed.
#[derive(Serialize)]
struct ClockOut<'a> {
    status: ClockStatus,
    once_used: bool,
    breached: bool,
    warned: u8,
    escalated: u8,
    nth: u16,
    start: Ts,
    pauses: Option<&'a Pauses>,
}

impl Serialize for ClocksOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            #[cfg(test)]
            ClocksOut::States(c) => c.serialize(s),
            ClocksOut::Ticket(t) => {
                s.collect_seq(t.clocks.iter().enumerate().map(|(i, c)| ClockOut {
                    status: c.status,
                    once_used: c.once_used,
                    breached: c.breached,
                    warned: c.warned,
                    escalated: c.escalated,
                    nth: c.nth,
                    start: c.start,
                    pauses: pauses_of(&t.extras, i),
                }))
            }
        }
    }
}

/// `TicketAttrs` as encoded, names borrowed (decoding one allocates nothing).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct AttrsWire<'a> {
    channel: Channel,
    category: Category,
    urgency: Urgency,
    tier: Tier,
    tenant: &'a str,
    team: &'a str,
}

/// [`TicketOut`] decoded.
#[derive(Debug, PartialEq, Deserialize)]
struct TicketIn<'a> {
    id: CompactString,
    #[serde(borrow)]
    attrs: AttrsWire<'a>,
    plan: u32,
    phase: Phase,
    cycle: u32,
    opened_at: Ts,
    last_event: Ts,
    closed_at: Option<Ts>,
    clocks: ClocksIn,
    extras: Option<Box<Extras>>,
    seen: Vec<u64>,
}

/// A ticket as decoded, its clock states and dedup hashes already in the ticket's block
/// ([`Clocks`], with room for the next event's hash): the slice reader decodes the hashes
/// straight into it, so a restored ticket costs one allocation for both.
#[derive(Debug, PartialEq)]
struct TicketDecoded<'a> {
    id: TicketId,
    attrs: AttrsWire<'a>,
    plan: u32,
    phase: Phase,
    cycle: u32,
    opened_at: Ts,
    last_event: Ts,
    closed_at: Option<Ts>,
    clocks: Clocks,
    /// Paused intervals by clock index, up to the last clock that has any.
    pauses: Vec<Option<Box<Pauses>>>,
    extras: Option<Box<Extras>>,
}

/// The dedup capacity a restored ticket with `n` hashes gets: room for its next event's
/// hash, the capacity a live ticket reaches by the same growth rule (a tombstone, which
/// drops its dedup state, none). Restored with exactly `n`, it reallocated on its first
/// event after a restore.
fn restored_dedup_capacity(phase: Phase, n: usize) -> usize {
    if phase == Phase::Expired {
        n
    } else {
        dedup_capacity(n + 1)
    }
}

/// A record's clocks (a sequence of [`ClockState`]) decoded straight into what a ticket
/// holds: the cores, and the paused intervals by clock index up to the last clock that has
/// any (see [`crate::core::clock::ClockCore`]). Decoding whole states and converting them
/// cost an allocation, a shrinking reallocation and a copy per restored ticket.
#[derive(Debug, Default, PartialEq)]
struct ClocksIn {
    cores: Vec<ClockCore>,
    pauses: Vec<Option<Box<Pauses>>>,
}

impl ClocksIn {
    /// Adds the clock at index `cores.len()` (the caller collects the cores).
    fn split(state: ClockState, cores: &mut Vec<ClockCore>, pauses: &mut Vec<Option<Box<Pauses>>>) {
        let i = cores.len();
        cores.push(state.core());
        if let Some(p) = state.pauses {
            pauses.resize_with(i + 1, || None);
            pauses[i] = Some(p);
        }
    }
}

impl<'de> Deserialize<'de> for ClocksIn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ClocksIn;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a sequence of clock states")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<ClocksIn, A::Error> {
                // As serde's `Vec` does: the size hint is capped (a corrupt length must not
                // reserve memory).
                let mut cores = Vec::with_capacity(a.size_hint().unwrap_or(0).min(4096));
                let mut pauses = Vec::new();
                while let Some(c) = a.next_element::<ClockState>()? {
                    ClocksIn::split(c, &mut cores, &mut pauses);
                }
                Ok(ClocksIn { cores, pauses })
            }
        }
        d.deserialize_seq(V)
    }
}

impl<'a> TicketOut<'a> {
    fn of(t: &'a Ticket, store: &'a TicketStore) -> Self {
        let names = store.names();
        TicketOut {
            id: &t.id,
            attrs: AttrsWire {
                channel: t.attrs.channel,
                category: t.attrs.category,
                urgency: t.attrs.urgency,
                tier: t.attrs.tier,
                tenant: names.get(t.attrs.tenant),
                team: names.get(t.attrs.team),
            },
            plan: t.plan,
            phase: t.phase,
            cycle: t.cycle,
            opened_at: t.opened_at,
            last_event: t.last_event(),
            closed_at: t.closed_at(),
            clocks: ClocksOut::Ticket(t),
            extras: ExtrasOut::of(t),
            seen: SeenOut::Ticket(t.seen()),
        }
    }
}

impl<'a> TicketIn<'a> {
    fn decoded(self) -> TicketDecoded<'a> {
        // The closing instant and the first fired action's hash are prefix words of the
        // block, written as it is built (`Clocks::restored`); the instant takes a hash's room.
        let mut extras = self.extras;
        let fired = Extras::take_first_fired(&mut extras);
        let capacity = restored_dedup_capacity(self.phase, self.seen.len())
            + self.closed_at.is_some() as usize;
        let mut clocks = Clocks::restored(
            &self.clocks.cores,
            self.seen.len(),
            capacity,
            self.closed_at,
            fired,
        );
        let mut seen = self.seen.iter();
        clocks.fill_seen(self.seen.len(), || seen.next().copied());
        TicketDecoded {
            id: TicketId::from(&self.id),
            attrs: self.attrs,
            plan: self.plan,
            phase: self.phase,
            cycle: self.cycle,
            opened_at: self.opened_at,
            last_event: self.last_event,
            closed_at: self.closed_at,
            clocks,
            pauses: self.clocks.pauses,
            extras,
        }
    }
}

impl TicketDecoded<'_> {
    /// The in-memory ticket, its names interned in `store` (it is to be inserted there).
    fn into_ticket(self, store: &mut TicketStore) -> Ticket {
        let a = &self.attrs;
        let attrs = CompactAttrs {
            channel: a.channel,
            category: a.category,
            urgency: a.urgency,
            tier: a.tier,
            tenant: store.intern(a.tenant),
            team: store.intern(a.team),
        };
        // Paused intervals go to the extras, by clock index (see `ClockCore`).
        let mut extras = self.extras;
        if !self.pauses.is_empty() {
            extras.get_or_insert_with(Default::default).pauses = self.pauses.into();
        }
        let mut clocks = self.clocks;
        clocks.set_last_event(self.last_event);
        Ticket {
            id: self.id,
            attrs,
            plan: self.plan,
            phase: self.phase,
            cycle: self.cycle,
            opened_at: self.opened_at,
            // The closing instant is in the clocks' block (set when decoded), the last
            // event too (set above).
            clocks,
            extras,
        }
    }
}

/// Rebuilds an engine from changelog records as they are read, in log order: ticket records
/// replace earlier ones of the same ticket, tombstones remove them, and the partition-level
/// record (watermark, pending and pre-open events, counters) is applied last. Streaming
/// lets the Kafka runtime decode while librdkafka is still fetching, with no copy of the
/// partition's records in between.
pub struct Restorer {
    engine: Engine,
    policy: Arc<PolicySet>,
    /// (policy id, overlay ids) → plan index; a handful of entries, scanned linearly.
    plans: Vec<(PlanKey, u32)>,
    /// Ticket id → tenant of tickets restored from a tenant-less key whose record names a
    /// tenant: written before tickets were keyed by tenant (rule 11). Such a key stands for
    /// that ticket until a record under its current key replaces it.
    legacy: FxHashMap<CompactString, CompactString>,
}

impl Restorer {
    pub fn new(policy: Arc<PolicySet>, cfg: EngineConfig) -> Restorer {
        Restorer {
            engine: Engine::new(policy.clone(), cfg),
            policy,
            plans: Vec::new(),
            legacy: FxHashMap::default(),
        }
    }

    /// A ticket record (`Engine::ticket_record`): replaces the ticket's earlier state.
    pub fn upsert(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        self.upsert_keyed(bytes, false)
    }

    /// A ticket record found under a tenant-less key (the changelog's `t/…` form): it
    /// replaces whatever that key held. Versions before rule 11 wrote every ticket under
    /// such a key; a record of theirs that names a tenant restores as that tenant's ticket
    /// and is listed by [`Restorer::legacy`] so it can be rewritten under its current key.
    pub fn upsert_tenantless_key(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        self.upsert_keyed(bytes, true)
    }

    fn upsert_keyed(&mut self, bytes: &[u8], tenantless_key: bool) -> Result<(), SnapshotError> {
        let rec: RecordIn = match decode::ticket_record(bytes) {
            Some(rec) => rec,
            None => postcard::from_bytes::<TicketRecordIn>(bytes)
                .map_err(|err| SnapshotError::Decode(err.to_string()))?
                .decoded(),
        };
        if rec.version != SNAPSHOT_VERSION {
            return Err(SnapshotError::UnsupportedVersion(rec.version));
        }
        let e = &mut self.engine;
        let found = self.plans.iter().find(|(k, _)| {
            k.policy_id == rec.plan.policy_id
                && k.overlay_ids.len() == rec.plan.overlay_ids.len()
                && k.overlay_ids
                    .iter()
                    .zip(rec.plan.overlay_ids.iter())
                    .all(|(a, b)| a == b)
        });
        let plan = match found {
            Some(&(_, p)) => p,
            None => {
                let key = PlanKey {
                    policy_id: rec.plan.policy_id.to_string(),
                    overlay_ids: rec.plan.overlay_ids.iter().map(|s| s.to_string()).collect(),
                };
                let p = e.registry.intern(Plan::from_key(&self.policy, &key));
                self.plans.push((key, p));
                p
            }
        };
        let tenant = rec.ticket.attrs.tenant;
        let id = rec.ticket.id.as_str();
        if tenantless_key {
            let held = self.legacy.remove(id).unwrap_or_default();
            if let Some(old) = e.tickets.slot_of(&held, id) {
                e.tickets.remove(old);
            }
            if !tenant.is_empty() {
                self.legacy.insert(id.into(), tenant.into());
            }
        } else if !self.legacy.is_empty() && self.legacy.get(id).is_some_and(|t| t == tenant) {
            self.legacy.remove(id);
        }
        let mut t = rec.ticket.into_ticket(&mut e.tickets);
        t.plan = plan;
        let n = e.registry.plans[plan as usize].clocks.len();
        if t.clocks.len() != n && t.phase != Phase::Expired {
            t.clocks.resize(n);
        }
        // Replaces an earlier record of the same ticket (one probe for both cases).
        let slot = e.tickets.upsert(t);
        e.schedule(slot);
        Ok(())
    }

    /// Expect up to `tickets` more tickets (see [`TicketStore::reserve`]); capped by the
    /// open-ticket limit and at 8 M, since the caller's count is only a bound (an
    /// uncompacted changelog holds many records per ticket).
    pub fn reserve(&mut self, tickets: usize) {
        let n = tickets.min(self.engine.cfg.max_open_tickets).min(1 << 23);
        self.engine.tickets.reserve(n);
    }

    /// A tombstone: the ticket was freed.
    pub fn remove(&mut self, tenant: &str, ticket_id: &str) {
        if self.legacy.get(ticket_id).is_some_and(|t| t == tenant) {
            self.legacy.remove(ticket_id);
        }
        if let Some(slot) = self.engine.tickets.slot_of(tenant, ticket_id) {
            self.engine.tickets.remove(slot);
        }
    }

    /// A tombstone under a tenant-less key: frees whatever that key held.
    pub fn remove_tenantless_key(&mut self, ticket_id: &str) {
        let held = self.legacy.remove(ticket_id).unwrap_or_default();
        if let Some(slot) = self.engine.tickets.slot_of(&held, ticket_id) {
            self.engine.tickets.remove(slot);
        }
    }

    /// Tickets restored from records written before rule 11 under a tenant-less key,
    /// though they have a tenant: to be rewritten under their current key.
    pub fn legacy(&self) -> Vec<TicketKey> {
        let mut v: Vec<TicketKey> = self
            .legacy
            .iter()
            .map(|(id, tenant)| TicketKey {
                tenant: tenant.clone(),
                id: id.clone(),
            })
            .collect();
        v.sort();
        v
    }

    pub fn tickets(&self) -> usize {
        self.engine.tickets.len()
    }

    /// The engine, with the latest partition-level record if there is one.
    pub fn finish(self, partition_state: Option<&[u8]>) -> Result<Engine, SnapshotError> {
        let Some(bytes) = partition_state else {
            return Ok(self.engine);
        };
        let mut e = Engine::restore(self.policy, self.engine.cfg.clone(), bytes)?;
        debug_assert!(e.tickets.is_empty(), "partition records hold no tickets");
        e.registry = self.engine.registry;
        e.tickets = self.engine.tickets;
        Ok(e)
    }
}

#[derive(Deserialize)]
struct SnapshotIn<'a> {
    version: u32,
    watermark: Ts,
    max_seen: Ts,
    seq: u64,
    plans: Vec<PlanKey>,
    #[serde(borrow)]
    tickets: Vec<TicketIn<'a>>,
    pending: Vec<Event>,
    preopen: Vec<Event>,
    surge: Option<SurgeState>,
    stats: EngineStats,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::engine::Emitted;
    use crate::core::model::{Audience, Body, Category, Channel, ReplyKind, Tier, Urgency};
    use crate::core::policy::parse::load_policy_file;

    fn policy() -> Arc<PolicySet> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/policies/default.toml");
        Arc::new(load_policy_file(std::path::Path::new(path)).expect("default policy"))
    }

    fn ev(n: u32, secs: i64, body: Body) -> Event {
        Event {
            event_id: format!("e{n}").into(),
            ticket_id: "T1".into(),
            occurred_at: Ts::from_secs(1_709_546_400 + secs),
            tenant: "acme".into(),
            body,
        }
    }

    /// A ticket with a tenant, a team, a closed and an open pause interval, a fired action
    /// (extras), a breach and dedup hashes: every part of the ticket record's encoding.
    fn engine_with_ticket() -> Engine {
        let mut e = Engine::new(policy(), EngineConfig::default());
        let mut out = Emitted::default();
        let evs = [
            ev(
                1,
                0,
                Body::Opened {
                    channel: Channel::Email,
                    category: Category::Complaint,
                    urgency: Urgency::Urgent,
                    tier: Tier::Vip,
                    team: "billing".into(),
                },
            ),
            ev(
                2,
                60,
                Body::AgentMessage {
                    kind: ReplyKind::Eta,
                    audience: Audience::Customer,
                },
            ),
            ev(3, 600, Body::WaitingOnCustomer),
            ev(4, 900, Body::CustomerMessage),
            ev(5, 7200, Body::WaitingOnCustomer),
        ];
        for x in evs {
            e.ingest(x, &mut out);
        }
        e.advance_to(Ts::from_secs(1_709_546_400 + 8000), &mut out);
        e
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The ticket record's bytes: the form of every earlier build (state topics hold their
    /// records, so the encoded form must not change with the in-memory one), with the dedup
    /// hashes' low 48 bits (session 15) where [`GOLDEN_RECORD_64`] has all 64.
    const GOLDEN_RECORD: &str = concat!(
        "0106757267656e740209636f6d706c61696e7403766970025431030203020461636d650762696c6c",
        "696e670001008080e2b095d9c3b92f8080ecc7a1fcc6b92f00050201000000008080e2b095d9c3b9",
        "2f000101010103008080e2b095d9c3b92f0001010000000480e09cb5d4dcc3b92f00010100000000",
        "8080e2b095d9c3b92f010180c0addd8bfcc3b92f80a0d3f3c68dc4b92f018080ecc7a1fcc6b92f00",
        "000000000000000101efb9e3b18080cea99b010005efd5c3daa38009b4afeaa1bd9f169596d4f192",
        "ae2bb4d4c5f6ffaf35cde4a2f890c001",
    );

    /// The same ticket as builds before session 15 wrote it, its dedup hashes of 64 bits.
    const GOLDEN_RECORD_64: &str = concat!(
        "0106757267656e740209636f6d706c61696e7403766970025431030203020461636d650762696c6c",
        "696e670001008080e2b095d9c3b92f8080ecc7a1fcc6b92f00050201000000008080e2b095d9c3b9",
        "2f000101010103008080e2b095d9c3b92f0001010000000480e09cb5d4dcc3b92f00010100000000",
        "8080e2b095d9c3b92f010180c0addd8bfcc3b92f80a0d3f3c68dc4b92f018080ecc7a1fcc6b92f00",
        "000000000000000101efb9e3b18080cea99b010005efd5c3daa38089bf1fb4afeaa1bd9f96b39101",
        "9596d4f192aeabc05ab4d4c5f6ffaff5db49cde4a2f890c081b318",
    );

    /// A later record of a ticket replaces the earlier one in place (one ticket, the later
    /// state, names held once), and a restored dedup vector has room for the next event.
    #[test]
    fn later_record_replaces_earlier_and_dedup_has_room() {
        let mut e = engine_with_ticket();
        let first = e.ticket_record(e.ticket("acme", "T1").expect("ticket"));
        let mut out = Emitted::default();
        e.ingest(ev(6, 7300, Body::CustomerMessage), &mut out);
        e.advance_to(Ts::from_secs(1_709_546_400 + 7400), &mut out);
        let second = e.ticket_record(e.ticket("acme", "T1").expect("ticket"));
        assert_ne!(first, second);
        for (a, b) in [(&first, &second), (&second, &first)] {
            let mut r = Restorer::new(policy(), EngineConfig::default());
            r.upsert(a).expect("restores");
            r.upsert(b).expect("restores");
            assert_eq!(r.tickets(), 1);
            let t = r.engine.ticket("acme", "T1").expect("restored");
            assert_eq!(&r.engine.ticket_record(t), b);
            assert!(
                t.clocks.seen_capacity() > t.seen().len(),
                "room for the next event"
            );
            assert_eq!(r.engine.tickets.names().len(), 2, "acme and billing");
            r.remove("acme", "T1");
            assert_eq!(r.tickets(), 0);
            assert!(r.engine.tickets.names().is_empty(), "names released");
        }
    }

    /// Paused intervals live in the extras, by clock index, apart from the clock states:
    /// a clock that paused holds them there (and the record carries them with its clock),
    /// a restart drops them and extras holding nothing else; a restored ticket equals the
    /// live one at each step.
    #[test]
    fn paused_intervals_sit_in_extras_until_the_clock_restarts() {
        let mut e = Engine::new(policy(), EngineConfig::default());
        let mut out = Emitted::default();
        let opened = Body::Opened {
            channel: Channel::Chat,
            category: Category::Inquiry,
            urgency: Urgency::Urgent,
            tier: Tier::Standard,
            team: "".into(),
        };
        let steps = [
            (ev(1, 0, opened), false),
            (ev(2, 60, Body::WaitingOnCustomer), true),
            (ev(3, 120, Body::CustomerMessage), true),
            (ev(4, 180, Body::Resolved), true),
            (ev(5, 240, Body::Reopened), false),
        ];
        for (n, (x, has_pauses)) in steps.into_iter().enumerate() {
            let at = x.occurred_at;
            e.ingest(x, &mut out);
            // Past the event's instant: an event at the watermark's instant waits.
            e.advance_to(crate::core::time::Ts(at.0 + 1), &mut out);
            let t = e.ticket("acme", "T1").expect("ticket");
            let resolution = e
                .plan_of(t)
                .clocks
                .iter()
                .position(|c| &*c.id == "resolution");
            let i = resolution.expect("a resolution clock");
            assert_eq!(
                crate::core::ticket::pauses_of(&t.extras, i).is_some(),
                has_pauses,
                "step {n}"
            );
            if n == 4 {
                assert!(t.clocks[i].is_running() && t.extras.is_none(), "restarted");
            }
            let rec = e.ticket_record(t);
            let back = Engine::restore_parts(policy(), EngineConfig::default(), None, [&rec[..]])
                .expect("restores");
            assert_eq!(back.ticket("acme", "T1"), Some(t), "step {n}");
        }
    }

    #[test]
    fn ticket_record_encoding_is_unchanged() {
        let e = engine_with_ticket();
        let t = e.ticket("acme", "T1").expect("ticket");
        let rec = e.ticket_record(t);
        assert_eq!(hex(&rec), GOLDEN_RECORD);
        let back = Engine::restore_parts(policy(), EngineConfig::default(), None, [&rec[..]])
            .expect("restores");
        let t2 = back.ticket("acme", "T1").expect("restored ticket");
        assert_eq!(hex(&back.ticket_record(t2)), GOLDEN_RECORD);
    }

    /// A record of an earlier build (64-bit dedup hashes) restores to the same ticket, its
    /// hashes cut to the 48 bits kept, so its events are still recognised as applied.
    #[test]
    fn a_record_with_64_bit_hashes_restores_with_their_low_48_bits() {
        let old: Vec<u8> = (0..GOLDEN_RECORD_64.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&GOLDEN_RECORD_64[i..i + 2], 16).expect("hex"))
            .collect();
        let mut back = Engine::restore_parts(policy(), EngineConfig::default(), None, [&old[..]])
            .expect("restores");
        let t = back.ticket("acme", "T1").expect("restored ticket");
        assert_eq!(hex(&back.ticket_record(t)), GOLDEN_RECORD);
        let fresh = engine_with_ticket();
        assert_eq!(back.ticket("acme", "T1"), fresh.ticket("acme", "T1"));
        // An event the old build applied arrives again: a duplicate, nothing changes.
        let mut out = Emitted::default();
        let dups = back.stats().duplicates;
        back.ingest(ev(6, 7300, Body::CustomerMessage), &mut out);
        back.ingest(ev(4, 7400, Body::CustomerMessage), &mut out);
        back.advance_to(Ts::from_secs(1_709_546_400 + 8000), &mut out);
        assert_eq!(back.stats().duplicates, dups + 1, "e4 again; e6 is new");
    }
}
