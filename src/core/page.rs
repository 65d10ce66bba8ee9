//! A 4 KiB page of values, aligned to 4 KiB, for the engine's large arrays (the ticket
//! slab, the timer nodes), which are allocated as arrays of pages. The binary's allocator,
//! mimalloc (through the `mimalloc` crate's `mi_malloc_aligned`), serves a request of more
//! than 1 KiB whose size class is not a power of two of at most 4 KiB by over-allocating
//! `alignment - 1` bytes: a 64 KiB or 256 KiB array of 8-byte alignment took the next size
//! class (80 / 320 KiB, issue 14). A multiple of 4 KiB asked with 4 KiB alignment is held
//! exactly. Each user asserts that its `Page<T, N>` is 4 096 bytes.
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
pub struct Page<T, const N: usize>(pub [T; N]);
