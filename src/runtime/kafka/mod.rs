//! Everything that talks to librdkafka's clients directly.
//!
//! | module       | what                                                                     |
//! |--------------|--------------------------------------------------------------------------|
//! | [`clients`]  | librdkafka settings slawatch owns; cached watermarks; `block_on`; auth   |
//! | [`client_log`] | client errors and librdkafka logs: one line per distinct complaint |
//! | [`close_echo`] | drops rust-rdkafka's false error after a [`clients::QuickClose`] |
//! | [`consume`] | the consumer's poll: records and rebalances from its queue, one event at a time |
//! | [`connect`] | start-up: wait for the brokers with back-off, interruptible  |
//! | [`txn`]      | the producer: records into a transaction, commit / abort, typed errors   |
//! | [`pipeline`] | two transactional producers used alternately: a commit runs on its own thread |
//! | [`recovery`] | trouble reaching the brokers, and when a fatal error is recovered from  |
pub mod client_log;
pub mod clients;
pub mod close_echo;
pub mod connect;
pub mod consume;
pub mod pipeline;
pub mod recovery;
pub mod txn;

pub use clients::*;
