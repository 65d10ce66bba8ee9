//! The pure SLA core: no Kafka, no tokio, no wall clock. Time is an input.
pub mod calendar;
pub mod model;
pub mod policy;
pub mod time;
