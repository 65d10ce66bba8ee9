//! Everything that talks to librdkafka's clients directly.
//!
//! | module       | what                                                                     |
//! |--------------|--------------------------------------------------------------------------|
//! | [`clients`]  | librdkafka settings slawatch owns; cached watermarks; `block_on`; auth   |
//! | [`txn`]      | the producer: records into a transaction, commit / abort, typed errors   |
//! | [`recovery`] | trouble reaching the brokers, and when a fatal error is recovered from  |
pub mod clients;
pub mod recovery;
pub mod txn;

pub use clients::*;
