//! The pure SLA core: no Kafka, no tokio, no wall clock. Time is an input.
pub mod calendar;
pub mod clock;
pub mod clocks;
pub mod engine;
pub mod model;
pub mod names;
pub mod order;
pub mod page;
pub mod pending;
pub mod plan;
pub mod policy;
pub mod snapshot;
pub mod stable_sort;
pub mod store;
pub mod surge;
pub mod ticket;
pub mod ticket_id;
pub mod time;
pub mod timers;

/// A seeded xorshift generator for randomised model tests: `next(k)` is in `0..k`.
#[cfg(test)]
pub(crate) fn xorshift(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut rng = seed;
    move |k| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % k
    }
}
