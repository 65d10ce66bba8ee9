//! The Kafka runtime: the thin I/O shell around the pure core.
//!
//! | module        | what                                                                    |
//! |---------------|-------------------------------------------------------------------------|
//! | [`config`]    | strict TOML config + `SLAWATCH_*` env overrides, `[kafka]` passthrough  |
//! | [`topics`]    | topic names (`--dry-run` shadow prefix), routing by kind, creation/check|
//! | [`kafka`]     | librdkafka settings; the producer and its transactions; outage recovery |
//! | [`records`]   | input hygiene, dead-letter headers, output keys and encodings           |
//! | [`changelog`] | state topics: [`changelog::keys`], [`changelog::write`] (what a commit writes), [`changelog::restore`] |
//! | [`commit_policy`] | how long a transaction stays open, from the partitions' lag     |
//! | [`stage`]     | the record path as free functions: input hygiene → engine → outbox      |
//! | [`tasks`]     | per-partition state: an engine per input partition, a surge detector per repartition partition |
//! | [`partitions`] | owned partitions: restoring (epoch) or live; assign / revoke / lost rules |
//! | [`processor`] | the processing thread: poll loop, watermarks, transactions, rebalances  |
//! | [`control`]   | shutdown / reload requests, readiness, ticket queries                   |
//! | [`view`]      | the admin API's view of a ticket's clocks                               |
//! | [`admin`]     | `/metrics`, `/healthz`, `/readyz`, `/tickets/{id}`                       |
//! | [`time_source`] | where "now" comes from: wall, scaled (demo), manual (tests) (an SLA clock is `core::clock`) |
//! | [`service`]   | `slawatch run`: config → telemetry → admin → processor → signals        |
pub mod admin;
pub mod changelog;
pub mod commit_policy;
pub mod config;
pub mod control;
pub mod heartbeat;
pub mod kafka;
pub mod partitions;
pub mod processor;
pub mod records;
pub mod service;
pub mod stage;
pub mod tasks;
pub mod time_source;
pub mod topics;
pub mod view;
