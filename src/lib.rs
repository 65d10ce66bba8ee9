//! slawatch: real-time response-time SLA enforcement for support conversations.
//!
//! Module map:
//! - `core`: the pure, deterministic SLA engine (policy language, calendars, clocks, timers,
//!   watermarks, surge detection, snapshots). No I/O.
//! - `codec`: protobuf / proto3-JSON ↔ domain conversion and input validation.
//! - `proto`: generated code, used only by `codec`.
//! - `runtime`: the Kafka runtime (`slawatch run`): consumer group, exactly-once outputs,
//!   changelog restore, admin HTTP. See its module map.
//! - `demo`: `slawatch demo` (the same processor on librdkafka's mock cluster), its
//!   synthetic traffic (also the Kafka tests' and benchmarks' load), the one-line feed
//!   format, and the quick start's clients `slawatch publish` and `slawatch tail`.
//! - `whatif`, `explain`: compare policies over history (report.json, HTML) and show one
//!   ticket's audit trail.
pub mod codec;
pub mod convert;
pub mod core;
pub mod demo;
pub mod explain;
pub mod proto;
pub mod replay;
pub mod runtime;
pub mod telemetry;
pub mod whatif;
