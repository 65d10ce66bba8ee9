//! The record path as stages: free functions over data, each testable without a broker.
//!
//! ```text
//! consumed record ─ admit::admit_record ─► engine (per partition) ─ emit::outputs ─► Outbox
//!                   (hygiene, dead letters,                          (SLA events,     │
//!                    surge re-keying: rekey)                          engine refusals) │
//!                                       Pipeline (kafka/pipeline.rs) drains it ◄──────┘
//! ```
//!
//! The stages never touch a producer: they write the [`outbox::Outbox`], and the producer
//! side drains it before it sends anything else, commits or aborts. Metrics and hooks stay
//! with the processor, which calls the stages.
pub mod admit;
pub mod emit;
pub mod outbox;
pub mod rekey;

pub use outbox::{Outbox, Routes, TopicId};
