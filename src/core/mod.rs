//! The pure SLA core: no Kafka, no tokio, no wall clock. Time is an input.
pub mod calendar;
pub mod clock;
pub mod clocks;
pub mod engine;
pub mod model;
pub mod names;
pub mod order;
pub mod pending;
pub mod plan;
pub mod policy;
pub mod snapshot;
pub mod stable_sort;
pub mod store;
pub mod surge;
pub mod ticket;
pub mod time;
pub mod timers;
