//! Where a partition's tickets live: a chunked slab (no doubling waste, stable slot
//! numbers for timers) and an index that stores only the 4-byte slot, hashing the ticket's
//! identity (tenant, id; rule 11) kept inside the ticket itself (stored once).
use crate::core::ticket::Ticket;
use crate::core::time::Ts;
use hashbrown::HashTable;

const CHUNK: usize = 4096;

struct Slot {
    ticket: Option<Ticket>,
    /// Earliest queued timer for this slot (Ts::MAX when none).
    due: Ts,
}

#[derive(Default)]
pub struct TicketStore {
    index: HashTable<u32>,
    chunks: Vec<Box<[Slot]>>,
    free: Vec<u32>,
    len: usize,
}

/// Hash of (tenant, id); a ticket without tenant hashes its id alone.
fn hash_key(tenant: &str, id: &str) -> u64 {
    let h = xxhash_rust::xxh3::xxh3_64(id.as_bytes());
    if tenant.is_empty() {
        h
    } else {
        xxhash_rust::xxh3::xxh3_64_with_seed(tenant.as_bytes(), h)
    }
}

fn hash_ticket(t: &Ticket) -> u64 {
    hash_key(&t.attrs.tenant, &t.id)
}

impl TicketStore {
    fn slot(&self, slot: u32) -> &Slot {
        &self.chunks[slot as usize / CHUNK][slot as usize % CHUNK]
    }
    fn slot_mut(&mut self, slot: u32) -> &mut Slot {
        &mut self.chunks[slot as usize / CHUNK][slot as usize % CHUNK]
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn slot_of(&self, tenant: &str, id: &str) -> Option<u32> {
        self.index
            .find(hash_key(tenant, id), |&s| {
                self.slot(s)
                    .ticket
                    .as_ref()
                    .is_some_and(|t| t.id == id && t.attrs.tenant == tenant)
            })
            .copied()
    }

    pub fn get(&self, slot: u32) -> Option<&Ticket> {
        self.slot(slot).ticket.as_ref()
    }
    pub fn get_mut(&mut self, slot: u32) -> Option<&mut Ticket> {
        self.slot_mut(slot).ticket.as_mut()
    }
    pub fn due(&self, slot: u32) -> Ts {
        self.slot(slot).due
    }
    pub fn set_due(&mut self, slot: u32, due: Ts) {
        self.slot_mut(slot).due = due;
    }

    /// Room for `additional` more tickets in the index: a restore that knows roughly how
    /// many tickets come avoids rehashing the index (a cache miss per ticket) as it grows.
    pub fn reserve(&mut self, additional: usize) {
        let chunks = &self.chunks;
        self.index.reserve(additional, |&s| {
            hash_ticket(
                chunks[s as usize / CHUNK][s as usize % CHUNK]
                    .ticket
                    .as_ref()
                    .unwrap(),
            )
        });
    }

    /// Inserts a ticket whose id is not present; returns its slot.
    pub fn insert(&mut self, ticket: Ticket) -> u32 {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                let n = self.chunks.len() * CHUNK;
                self.chunks.push(
                    (0..CHUNK)
                        .map(|_| Slot {
                            ticket: None,
                            due: Ts::MAX,
                        })
                        .collect(),
                );
                self.free.extend((n as u32 + 1..(n + CHUNK) as u32).rev());
                n as u32
            }
        };
        let h = hash_ticket(&ticket);
        *self.slot_mut(slot) = Slot {
            ticket: Some(ticket),
            due: Ts::MAX,
        };
        let chunks = &self.chunks;
        self.index.insert_unique(h, slot, |&s| {
            hash_ticket(
                chunks[s as usize / CHUNK][s as usize % CHUNK]
                    .ticket
                    .as_ref()
                    .unwrap(),
            )
        });
        self.len += 1;
        slot
    }

    pub fn remove(&mut self, slot: u32) -> Option<Ticket> {
        let ticket = self.slot_mut(slot).ticket.take()?;
        self.slot_mut(slot).due = Ts::MAX;
        if let Ok(entry) = self.index.find_entry(hash_ticket(&ticket), |&s| s == slot) {
            entry.remove();
        }
        self.free.push(slot);
        self.len -= 1;
        Some(ticket)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Ticket> {
        self.chunks
            .iter()
            .flat_map(|c| c.iter())
            .filter_map(|s| s.ticket.as_ref())
    }
}
