//! A ticket's id in 16 bytes, not a `CompactString`'s 24 (issue 14, bytes per open ticket:
//! `Ticket` 88 → 80 bytes, its slab slot 96 → 88). Ids of up to 15 bytes (the engine
//! bench's `T00000042`, ServiceNow's `INC0000130`, numeric Zendesk and Jira keys) are held
//! inline; longer ones (UUIDs: 36 bytes) in a heap copy, as a `CompactString` holds those
//! past 24 bytes. The cost: an id of 16 to 24 bytes now takes a heap copy where it was
//! inline (the bench's breakdown prints heap id bytes per ticket).
//!
//! Layout (`repr(C)`, no padding): 15 bytes then a tag. Inline, the bytes are the id's
//! (zero after it) and the tag is 1 + its length; on the heap, the first 8 bytes are the
//! copy's pointer, the next 4 its length, and the tag is [`HEAP`]. The tag is never 0, so
//! `Option<Ticket>` still needs no byte of its own.
use compact_str::CompactString;
use std::num::NonZeroU8;

/// Longest id held inline.
pub const INLINE: usize = 15;
/// The tag of an id held on the heap.
const HEAP: u8 = 0xff;

/// The first 8 bytes: inline id bytes, or the heap copy's pointer (kept as a pointer, so
/// it keeps its provenance).
#[repr(C)]
#[derive(Clone, Copy)]
union Head {
    ptr: *mut u8,
    bytes: [u8; 8],
}

#[repr(C)]
pub struct TicketId {
    head: Head,
    tail: [u8; 7],
    tag: NonZeroU8,
}

const _: () = assert!(std::mem::size_of::<TicketId>() == 16);
const _: () = assert!(std::mem::size_of::<Option<TicketId>>() == 16);

// SAFETY: a `TicketId` owns its heap copy alone (as a `Box<str>`): nothing else points to
// it, and it is only read through `&self`.
unsafe impl Send for TicketId {}
unsafe impl Sync for TicketId {}

impl TicketId {
    pub fn new(s: &str) -> TicketId {
        let n = s.len();
        if n <= INLINE {
            let mut b = [0u8; 16];
            b[..n].copy_from_slice(s.as_bytes());
            b[15] = n as u8 + 1;
            // SAFETY: 16 bytes, laid out as `TicketId` (`repr(C)`, no padding): the head
            // as bytes, the tail, and a tag of 1..=16 (not zero).
            return unsafe { std::mem::transmute::<[u8; 16], TicketId>(b) };
        }
        let len = u32::try_from(n).expect("ticket id longer than 4 GiB");
        let copy: Box<[u8]> = s.as_bytes().into();
        let ptr = Box::into_raw(copy).cast::<u8>();
        let mut tail = [0u8; 7];
        tail[..4].copy_from_slice(&len.to_le_bytes());
        TicketId {
            head: Head { ptr },
            tail,
            tag: NonZeroU8::new(HEAP).unwrap(),
        }
    }

    /// The id held on the heap (longer than [`INLINE`] bytes).
    #[inline]
    pub fn is_heap_allocated(&self) -> bool {
        self.tag.get() == HEAP
    }

    #[inline]
    fn heap_len(&self) -> usize {
        u32::from_le_bytes(self.tail[..4].try_into().unwrap()) as usize
    }

    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        if self.is_heap_allocated() {
            // SAFETY: a heap id's head is the pointer of its `heap_len`-byte copy, which
            // it owns for as long as it lives.
            unsafe { std::slice::from_raw_parts(self.head.ptr, self.heap_len()) }
        } else {
            let n = (self.tag.get() - 1) as usize;
            // SAFETY: inline, the struct's first `n` ≤ 15 bytes (head, then tail: `repr(C)`
            // without padding) are the id's, written as bytes.
            unsafe { std::slice::from_raw_parts((self as *const TicketId).cast::<u8>(), n) }
        }
    }

    #[inline]
    pub fn as_str(&self) -> &str {
        // SAFETY: the bytes are those of the `&str` it was made from.
        unsafe { std::str::from_utf8_unchecked(self.as_bytes()) }
    }

    /// The id as a `CompactString` (outputs and keys carry those; no allocation for ids of
    /// up to 24 bytes).
    pub fn to_compact(&self) -> CompactString {
        CompactString::from(self.as_str())
    }
}

impl Drop for TicketId {
    fn drop(&mut self) {
        if self.is_heap_allocated() {
            // SAFETY: made by `Box::into_raw` of a `Box<[u8]>` of `heap_len` bytes in `new`
            // (or `clone`), owned by this id alone, freed once here.
            unsafe {
                drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                    self.head.ptr,
                    self.heap_len(),
                )))
            }
        }
    }
}

impl Clone for TicketId {
    fn clone(&self) -> TicketId {
        if self.is_heap_allocated() {
            return TicketId::new(self.as_str());
        }
        TicketId {
            // SAFETY: inline, the head holds id bytes (`Copy` either way).
            head: Head {
                bytes: unsafe { self.head.bytes },
            },
            tail: self.tail,
            tag: self.tag,
        }
    }
}

impl Default for TicketId {
    fn default() -> TicketId {
        TicketId::new("")
    }
}

impl std::ops::Deref for TicketId {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for TicketId {
    fn from(s: &str) -> TicketId {
        TicketId::new(s)
    }
}

impl From<&CompactString> for TicketId {
    fn from(s: &CompactString) -> TicketId {
        TicketId::new(s)
    }
}

impl PartialEq for TicketId {
    fn eq(&self, other: &TicketId) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Eq for TicketId {}

impl PartialOrd for TicketId {
    fn partial_cmp(&self, other: &TicketId) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TicketId {
    fn cmp(&self, other: &TicketId) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for TicketId {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl std::fmt::Debug for TicketId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl std::fmt::Display for TicketId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn inline_up_to_fifteen_bytes() {
        for n in 0..=40 {
            let s: String = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH"[..n].into();
            let id = TicketId::new(&s);
            assert_eq!(id.as_str(), s);
            assert_eq!(id.is_heap_allocated(), n > INLINE, "{n}");
            assert_eq!(id.clone().as_str(), s);
            assert_eq!(id.to_compact(), s.as_str());
        }
        assert_eq!(TicketId::default().as_str(), "");
        assert_eq!(std::mem::size_of::<Option<TicketId>>(), 16);
    }

    proptest! {
        /// Reads back, clones, compares, orders and hashes as the `String` it was made
        /// from (multi-byte characters and NULs included).
        #[test]
        fn behaves_as_a_string(a in "\\PC{0,24}|[a\\x00é]{0,20}", b in "\\PC{0,24}|[a\\x00é]{0,20}") {
            let (x, y) = (TicketId::new(&a), TicketId::new(&b));
            prop_assert_eq!(x.as_str(), a.as_str());
            prop_assert_eq!(x.clone(), TicketId::new(&a));
            prop_assert_eq!(x == y, a == b);
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            let hash = |v: &dyn Fn(&mut std::collections::hash_map::DefaultHasher)| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                v(&mut h);
                std::hash::Hasher::finish(&h)
            };
            prop_assert_eq!(
                hash(&|h| std::hash::Hash::hash(&x, h)),
                hash(&|h| std::hash::Hash::hash(a.as_str(), h))
            );
            prop_assert_eq!(format!("{x:?}"), format!("{a:?}"));
        }
    }
}
