//! Tenant and team names interned to 4-byte ids: an open ticket holds two `u32`s instead of
//! two 24-byte strings (rule 11's tenant is in every lookup, the team only in selectors and
//! views). Names are counted by the tickets holding them and released when the last one is
//! freed, so a stream of distinct names cannot grow the table without bound.
use compact_str::CompactString;
use rustc_hash::FxHashMap;

/// The id of the empty name (no tenant, no team): always present, never released.
pub const EMPTY: u32 = 0;

/// The seed a name gives the ticket index's hash (see `TicketStore`): a hash of the name
/// alone, kept with the name so a ticket's index hash needs no hashing of its tenant, and a
/// lookup by name hashes the name once instead of finding its id first (issue 14).
#[inline]
pub fn name_seed(name: &str) -> u64 {
    if name.is_empty() {
        0
    } else {
        xxhash_rust::xxh3::xxh3_64(name.as_bytes())
    }
}

#[derive(Debug)]
pub struct Names {
    /// By id: the name, how many ticket fields hold it (unused ids are on `free`) and its
    /// [`name_seed`].
    list: Vec<(CompactString, u32, u64)>,
    index: FxHashMap<CompactString, u32>,
    free: Vec<u32>,
}

impl Default for Names {
    fn default() -> Self {
        let mut index = FxHashMap::default();
        index.insert(CompactString::default(), EMPTY);
        Names {
            list: vec![(CompactString::default(), 0, name_seed(""))],
            index,
            free: Vec::new(),
        }
    }
}

impl Names {
    /// The id of `name`, counting one more holder (add it when new).
    pub fn intern(&mut self, name: &str) -> u32 {
        if name.is_empty() {
            return EMPTY;
        }
        if let Some(&id) = self.index.get(name) {
            self.list[id as usize].1 += 1;
            return id;
        }
        let entry = (CompactString::from(name), 1, name_seed(name));
        let id = match self.free.pop() {
            Some(id) => {
                self.list[id as usize] = entry;
                id
            }
            None => {
                self.list.push(entry);
                (self.list.len() - 1) as u32
            }
        };
        self.index.insert(CompactString::from(name), id);
        id
    }

    /// One holder of `id` fewer; the name is dropped with its last holder.
    pub fn release(&mut self, id: u32) {
        if id == EMPTY {
            return;
        }
        let (name, count, _) = &mut self.list[id as usize];
        *count -= 1;
        if *count == 0 {
            let name = std::mem::take(name);
            self.index.remove(&name);
            self.free.push(id);
        }
    }

    /// The id of `name` if some ticket holds it (a lookup never adds a name).
    pub fn find(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    pub fn get(&self, id: u32) -> &CompactString {
        &self.list[id as usize].0
    }

    /// [`name_seed`] of the name `id` (kept, not recomputed).
    pub fn seed(&self, id: u32) -> u64 {
        self.list[id as usize].2
    }

    /// Names held (the empty name excluded).
    pub fn len(&self) -> usize {
        self.index.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_shared_counted_and_released_with_their_last_holder() {
        let mut n = Names::default();
        assert_eq!(n.intern(""), EMPTY);
        let a = n.intern("acme");
        assert_eq!(n.intern("acme"), a);
        let b = n.intern("globex");
        assert_ne!(a, b);
        assert_eq!(
            (n.get(a).as_str(), n.get(b).as_str(), n.get(EMPTY).as_str()),
            ("acme", "globex", "")
        );
        n.release(a);
        assert_eq!(n.find("acme"), Some(a), "one holder left");
        n.release(a);
        assert_eq!(n.find("acme"), None);
        assert_eq!(n.len(), 1);
        // The freed id is reused for the next new name.
        assert_eq!(n.intern("initech"), a);
        assert_eq!(n.get(a).as_str(), "initech");
        n.release(EMPTY);
        assert_eq!(n.find(""), Some(EMPTY));
    }
}
