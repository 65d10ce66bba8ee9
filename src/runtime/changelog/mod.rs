//! The state topics: compacted changelogs written in the same transaction as the outputs
//! and the consumed offsets, and the restore that reads them back.
//!
//! # Records
//! State topic, partition p = input partition p's state:
//!
//! | key                         | value                                              |
//! |-----------------------------|----------------------------------------------------|
//! | `t/<input topic>/<ticket>`  | `Engine::ticket_record` of a ticket without tenant (versioned postcard); NULL = freed (tombstone) |
//! | `T/<input topic>/<tenant length>/<tenant>/<ticket>` | the same, of a tenant's ticket (rule 11) |
//! | `p/<input topic>`           | `Engine::partition_state`: watermark, pending and pre-open events, counters |
//! | `x/release`                 | NULL, only in aborted transactions: the release of a held partition ([`held`]) |
//!
//! Surge-state topic, partition p = repartition partition p's detector (kept apart so the
//! surge stage, a consumer group of its own, restores without scanning ticket state):
//!
//! | key                         | value                                              |
//! |-----------------------------|----------------------------------------------------|
//! | `s/<repartition topic>`     | [`SurgeRecord`] (versioned postcard)                |
//! | `x/release`                 | as above                                            |
//!
//! The input topic is part of the ticket key because several co-partitioned input topics
//! each have their own engine per partition number, and a restore must know which engine a
//! ticket belongs to (topic names cannot contain `/`, so the key splits unambiguously).
//! Every format carries a version; older versions are read or refused with a named error,
//! never misread.
//!
//! Versions before rule 11 keyed every ticket `t/<topic>/<ticket>`, its tenant only inside
//! the record. Such a record restores as the ticket of the tenant it names, and the first
//! state write after the restore moves it to its `T/…` key and tombstones the old key
//! ([`RestoredInput::stale_keys`], [`RestoredInput::rewrite`]): nothing is lost and
//! tickets without tenant keep their keys.
//!
//! # Restore
//! On assignment a worker thread (1) fetches the group's committed offsets of the
//! partition (read_committed makes the broker wait until no transaction holds them), then
//! (2) reads the state partition from the beginning to its end with a read_committed
//! `assign`ed consumer, and hands the records in chunks to a builder thread that feeds a [`Restorer`] (a later record of a ticket replaces the
//! earlier one, a tombstone removes it, the partition record is applied last), so
//! decoding overlaps reading and no copy of the whole partition is held. The processing thread keeps
//! the input partition paused until the result arrives, then seeks it to the committed
//! offset and resumes it.
//!
//! | module      | what                                                               |
//! |-------------|--------------------------------------------------------------------|
//! | [`keys`]    | the key layout above                                               |
//! | [`write`]   | the records a commit writes (ticket changes, surge state)          |
//! | [`restore`] | reading a state partition back into engines and detectors          |
//! | [`held`]    | offsets and state partitions a restore found held, for release     |
//! | [`slots`]   | the bound on restores running at once in a process                 |
pub mod held;
pub mod keys;
pub mod restore;
pub mod slots;
pub mod write;

pub use held::{HeldInbox, HeldOffset, HeldReport, HeldReporter, HeldState};
pub use keys::{partition_key, surge_key, ticket_key};
pub use restore::{
    restore, surge_detector, ReaderCtx, RestoreEnv, RestoreError, RestoreRequest, RestoreResult,
    RestoredInput, RestoredSurge, WantedRestores,
};
pub use slots::{RestoreSlot, RestoreSlots};
pub use write::{ticket_records, StateRecord, SurgeRecord, SurgeRecordError, SURGE_RECORD_VERSION};
