//! Where a partition's tickets live: a chunked slab (no doubling waste, stable slot
//! numbers for timers), an index that stores only the 4-byte slot, hashing the ticket's
//! identity (tenant, id; rule 11) kept inside the ticket itself (stored once), and the
//! tenant and team names the tickets hold by id ([`Names`]), and the timer queue, keyed by
//! slot (a slot's queued instant goes with its ticket: removed or replaced, it is
//! unqueued).
use crate::core::model::{TicketAttrs, TicketKey};
use crate::core::names::{name_seed, Names};
use crate::core::ticket::{CompactAttrs, Ticket};
use crate::core::time::Ts;
use crate::core::timers::TimerQueue;
use compact_str::CompactString;
use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

/// Slots per [`Page`]: 64 of 64 bytes.
const PAGE: usize = 4096 / std::mem::size_of::<Slot>();
/// Slots per chunk: 64 pages, 256 KiB (4 096 slots). A chunk of 4 096 slots of 72 bytes
/// (288 KiB) took 341 KiB under mimalloc, the binary's allocator (session 13; 3 640 slots
/// fitted 256 KiB); a chunk of 8-byte alignment of exactly 256 KiB would take 320 KiB
/// (mimalloc over-allocates `alignment - 1` bytes for it, see [`crate::core::page`]).
const CHUNK: usize = 64 * PAGE;

struct Slot {
    ticket: Option<Ticket>,
}

/// 64 slots: a chunk is an array of 4 KiB-aligned pages, held exactly by mimalloc.
type Page = crate::core::page::Page<Slot, PAGE>;

const _: () = assert!(std::mem::size_of::<Page>() == 4096 && PAGE == 64);

type Chunk = Box<[Page; CHUNK / PAGE]>;

/// The slot `slot` of the chunks.
#[inline]
fn at(chunks: &[Chunk], slot: u32) -> &Slot {
    let s = slot as usize;
    &chunks[s / CHUNK][s % CHUNK / PAGE].0[s % PAGE]
}

#[inline]
fn at_mut(chunks: &mut [Chunk], slot: u32) -> &mut Slot {
    let s = slot as usize;
    &mut chunks[s / CHUNK][s % CHUNK / PAGE].0[s % PAGE]
}

#[derive(Default)]
pub struct TicketStore {
    index: HashTable<u32>,
    chunks: Vec<Chunk>,
    free: Vec<u32>,
    len: usize,
    names: Names,
    /// Each slot's earliest queued timer.
    pub(super) timers: TimerQueue,
}

/// Hash of (tenant, id): the id hashed with the tenant name's [`name_seed`] as seed. The
/// store keeps each name's seed, so hashing a held ticket hashes its id only, and a lookup
/// by name hashes the (short) tenant name and the id, with no probe of the name table for
/// the tenant's id first (issue 14: that probe was ~105 instructions per event). In memory
/// only: nothing iterates the index, so its order is never observed.
fn hash_key(tenant_seed: u64, id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(id.as_bytes(), tenant_seed)
}

fn hash_ticket(names: &Names, t: &Ticket) -> u64 {
    hash_key(names.seed(t.attrs.tenant), &t.id)
}

impl TicketStore {
    fn slot(&self, slot: u32) -> &Slot {
        at(&self.chunks, slot)
    }
    fn slot_mut(&mut self, slot: u32) -> &mut Slot {
        at_mut(&mut self.chunks, slot)
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The slot of `tenant`'s ticket `id` (empty tenant: a ticket without tenant).
    pub fn slot_of(&self, tenant: &str, id: &str) -> Option<u32> {
        // `iter_hash` rather than `find`: `find` calls its test through a `dyn FnMut`, which
        // cannot be inlined; the candidates and the result are the same.
        self.index
            .iter_hash(hash_key(name_seed(tenant), id))
            .copied()
            .find(|&s| {
                self.slot(s).ticket.as_ref().is_some_and(|t| {
                    same_bytes(t.id.as_bytes(), id.as_bytes())
                        && same_bytes(self.names.get(t.attrs.tenant).as_bytes(), tenant.as_bytes())
                })
            })
    }

    pub fn get(&self, slot: u32) -> Option<&Ticket> {
        self.slot(slot).ticket.as_ref()
    }
    pub fn get_mut(&mut self, slot: u32) -> Option<&mut Ticket> {
        self.slot_mut(slot).ticket.as_mut()
    }
    /// The ticket in `slot` with the name table (to name its tenant while changing it).
    pub fn get_mut_named(&mut self, slot: u32) -> Option<(&mut Ticket, &Names)> {
        let ticket = at_mut(&mut self.chunks, slot).ticket.as_mut()?;
        Some((ticket, &self.names))
    }

    /// The id of a name, counting the ticket about to hold it (see [`Names::intern`]).
    pub fn intern(&mut self, name: &str) -> u32 {
        self.names.intern(name)
    }
    pub fn names(&self) -> &Names {
        &self.names
    }
    pub fn tenant(&self, t: &Ticket) -> &CompactString {
        self.names.get(t.attrs.tenant)
    }
    /// `attrs` with their names interned for a ticket about to be inserted.
    pub fn intern_attrs(&mut self, attrs: &TicketAttrs) -> CompactAttrs {
        CompactAttrs::interned(attrs, &mut self.names)
    }
    /// A ticket's attributes with their names.
    pub fn attrs(&self, a: &CompactAttrs) -> TicketAttrs {
        a.named(&self.names)
    }
    /// The instant the ticket in `slot` is queued at (`Ts::MAX`: none).
    pub fn due(&self, slot: u32) -> Ts {
        self.timers.due(slot)
    }

    /// Room for `additional` more tickets in the index: a restore that knows roughly how
    /// many tickets come avoids rehashing the index (a cache miss per ticket) as it grows.
    pub fn reserve(&mut self, additional: usize) {
        let (chunks, names) = (&self.chunks, &self.names);
        self.index.reserve(additional, |&s| {
            hash_ticket(names, at(chunks, s).ticket.as_ref().unwrap())
        });
    }

    /// Inserts a ticket whose id is not present; returns its slot. Its tenant and team ids
    /// come from [`TicketStore::intern`] (released when it is removed).
    pub fn insert(&mut self, ticket: Ticket) -> u32 {
        let slot = take_slot(&mut self.chunks, &mut self.free);
        let h = hash_ticket(&self.names, &ticket);
        *self.slot_mut(slot) = Slot {
            ticket: Some(ticket),
        };
        self.timers.cancel(slot);
        let (chunks, names) = (&self.chunks, &self.names);
        self.index.insert_unique(h, slot, |&s| {
            hash_ticket(names, at(chunks, s).ticket.as_ref().unwrap())
        });
        self.len += 1;
        slot
    }

    /// Inserts a ticket, or replaces the one with its (tenant, id) in place (that one's
    /// names released, its queued timer forgotten); returns its slot. One hash and one
    /// index probe: a restore replacing or adding a record looked the ticket up, removed
    /// it and inserted again, two of each (issue 14, restore per ticket).
    pub fn upsert(&mut self, ticket: Ticket) -> u32 {
        let h = hash_ticket(&self.names, &ticket);
        let (chunks, names) = (&self.chunks, &self.names);
        let entry = self.index.entry(
            h,
            |&s| {
                ticket_at(chunks, s)
                    .is_some_and(|t| t.attrs.tenant == ticket.attrs.tenant && t.id == ticket.id)
            },
            |&s| ticket_at(chunks, s).map_or(0, |t| hash_ticket(names, t)),
        );
        match entry {
            Entry::Occupied(o) => {
                let slot = *o.get();
                let old = std::mem::replace(
                    self.slot_mut(slot),
                    Slot {
                        ticket: Some(ticket),
                    },
                );
                self.timers.cancel(slot);
                if let Some(old) = old.ticket {
                    self.names.release(old.attrs.tenant);
                    self.names.release(old.attrs.team);
                }
                slot
            }
            Entry::Vacant(v) => {
                let slot = take_slot(&mut self.chunks, &mut self.free);
                v.insert(slot);
                *self.slot_mut(slot) = Slot {
                    ticket: Some(ticket),
                };
                self.timers.cancel(slot);
                self.len += 1;
                slot
            }
        }
    }

    /// Frees the ticket in `slot`; returns its key.
    pub fn remove(&mut self, slot: u32) -> Option<TicketKey> {
        let ticket = self.slot_mut(slot).ticket.take()?;
        self.timers.cancel(slot);
        if let Ok(entry) = self
            .index
            .find_entry(hash_ticket(&self.names, &ticket), |&s| s == slot)
        {
            entry.remove();
        }
        self.free.push(slot);
        self.len -= 1;
        let key = TicketKey {
            tenant: self.names.get(ticket.attrs.tenant).clone(),
            id: ticket.id.to_compact(),
        };
        self.names.release(ticket.attrs.tenant);
        self.names.release(ticket.attrs.team);
        Some(key)
    }

    /// Bytes the slab and the index hold (capacity, not use), for the bench's breakdown.
    pub fn table_bytes(&self) -> (usize, usize) {
        let slab = self.chunks.len() * CHUNK * std::mem::size_of::<Slot>();
        let buckets = if self.index.capacity() == 0 {
            0
        } else {
            (self.index.capacity() * 8 / 7).next_power_of_two()
        };
        (slab, buckets * (std::mem::size_of::<u32>() + 1))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Ticket> {
        self.chunks
            .iter()
            .flat_map(|c| c.iter())
            .flat_map(|p| p.0.iter())
            .filter_map(|s| s.ticket.as_ref())
    }
}

/// `a == b`, without a `bcmp` call for 4 to 16 bytes (most ticket ids and tenant names):
/// two overlapping word loads per side.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if (8..=16).contains(&n) {
        let w = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().unwrap());
        w(a, 0) == w(b, 0) && w(a, n - 8) == w(b, n - 8)
    } else if (4..8).contains(&n) {
        let w = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().unwrap());
        w(a, 0) == w(b, 0) && w(a, n - 4) == w(b, n - 4)
    } else {
        a == b
    }
}

/// The ticket in `slot`, if any (for the index's closures, which cannot borrow the store).
fn ticket_at(chunks: &[Chunk], slot: u32) -> Option<&Ticket> {
    at(chunks, slot).ticket.as_ref()
}

/// A free slot: from the free list, else a new chunk's first.
fn take_slot(chunks: &mut Vec<Chunk>, free: &mut Vec<u32>) -> u32 {
    if let Some(s) = free.pop() {
        return s;
    }
    let n = chunks.len() * CHUNK;
    let pages: Box<[Page]> = (0..CHUNK / PAGE)
        .map(|_| crate::core::page::Page(std::array::from_fn(|_| Slot { ticket: None })))
        .collect();
    chunks.push(
        pages
            .try_into()
            .unwrap_or_else(|_| unreachable!("a chunk's pages")),
    );
    free.extend((n as u32 + 1..(n + CHUNK) as u32).rev());
    n as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_is_equality() {
        let base: Vec<u8> = (1..=20).collect();
        for n in 0..=20 {
            let a = &base[..n];
            assert!(same_bytes(a, a));
            for m in 0..=20 {
                assert_eq!(same_bytes(a, &base[..m]), n == m, "{n} {m}");
            }
            for i in 0..n {
                let mut b = a.to_vec();
                b[i] ^= 0x80;
                assert!(!same_bytes(a, &b), "length {n}, byte {i} differs");
            }
        }
    }

    #[test]
    fn slot_layout_size() {
        assert_eq!(std::mem::size_of::<Slot>(), 64);
    }
}
