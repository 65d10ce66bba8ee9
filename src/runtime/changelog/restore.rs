//! Reading a state partition back: the committed offsets, then every record to the end,
//! decoded on a builder thread while the reader reads (see [`super`] for the protocol).
use super::held::{held_by_committed, HeldOffset, HeldReporter, HeldState, Undecided};
use super::keys::{partition_key, split_tenant_key, surge_key, ticket_key};
use super::slots::{RestoreSlot, RestoreSlots};
use super::write::{parse_covers, COVERS_HEADER};
use super::write::{SurgeRecord, SurgeRecordError};
use crate::core::engine::{Engine, EngineConfig};
use crate::core::model::TicketKey;
use crate::core::policy::PolicySet;
use crate::core::snapshot::{Restorer, SnapshotError};
use crate::core::surge::SurgeDetector;
use crate::runtime::config::Config;
use crate::runtime::kafka::clients::QuickClose;
use crate::runtime::kafka::{reader_config, short_lived_config};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to restore for one partition number.
#[derive(Clone, Debug)]
pub struct RestoreRequest {
    pub partition: i32,
    /// Input topics whose partition `partition` was assigned.
    pub inputs: Vec<String>,
    /// Whether the repartition topic's partition was assigned (surge state).
    pub surge: bool,
    /// `--rebuild-from-input`: ignore the inputs' state records (their keys are returned so
    /// they can be tombstoned) and start the engines empty.
    pub rebuild: bool,
    /// Ties the answer to the assignment that asked (stale answers are dropped).
    pub epoch: u64,
}

/// Everything a restore needs besides the request.
#[derive(Clone)]
pub struct RestoreEnv {
    pub cfg: Config,
    pub group_id: String,
    pub surge_group_id: String,
    pub state_topic: String,
    pub repartition_topic: String,
    pub surge_state_topic: String,
    pub policy: Arc<PolicySet>,
    pub engine_cfg: EngineConfig,
    /// Bound on one restore (committed offsets + reading the state partition).
    pub timeout: Duration,
    /// Where a restore reports committed offsets and state partitions it finds held for
    /// seconds (see [`super::held`]).
    pub held: Arc<HeldReporter>,
    /// The restores still waited for: one no longer wanted stops at its next step.
    pub wanted: Arc<WantedRestores>,
    /// The process's bound on restores running at once.
    pub slots: Arc<RestoreSlots>,
}

/// The epochs of the restores the processing thread still waits for. A restore whose
/// partition was revoked, lost or reset meanwhile stops at its next step (an offset fetch
/// step, an empty poll, or every [`CANCEL_CHECK_RECORDS`] records) instead of running on to
/// its bound with a consumer and a thread of its own — after a failed commit every
/// partition restores again, and the earlier round's restores would otherwise pile up.
#[derive(Default)]
pub struct WantedRestores(std::sync::Mutex<HashSet<u64>>);

impl WantedRestores {
    /// Adds a restore about to start.
    pub fn add(&self, epoch: u64) {
        self.lock().insert(epoch);
    }

    /// Keeps exactly `epochs` (the partitions' restoring states).
    pub fn set(&self, epochs: impl Iterator<Item = u64>) {
        let mut wanted = self.lock();
        wanted.clear();
        wanted.extend(epochs);
    }

    pub fn wants(&self, epoch: u64) -> bool {
        self.lock().contains(&epoch)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Records read between two checks whether a restore is still wanted.
const CANCEL_CHECK_RECORDS: u64 = 1 << 16;

/// One restored input partition.
pub struct RestoredInput {
    pub topic: String,
    pub engine: Engine,
    /// The group's committed offset (next to consume); `None` = start from the beginning.
    pub committed: Option<i64>,
    /// Keys to tombstone unless rewritten: with `rebuild`, the ticket keys present in the
    /// state topic; otherwise the pre-rule-11 keys of [`RestoredInput::rewrite`].
    pub stale_keys: Vec<Vec<u8>>,
    /// Tickets restored from a pre-rule-11 key: to be written under their current key.
    pub rewrite: Vec<TicketKey>,
    pub tickets: usize,
}

/// One restored surge partition.
pub struct RestoredSurge {
    pub record: Option<SurgeRecord>,
    pub committed: Option<i64>,
}

pub struct RestoreResult {
    pub partition: i32,
    pub epoch: u64,
    pub outcome: Result<(Vec<RestoredInput>, Option<RestoredSurge>), RestoreError>,
    pub bytes: u64,
    pub records: u64,
    /// From taking a restore slot to the answer.
    pub elapsed: Duration,
    /// Waiting for a restore slot, before `elapsed`.
    pub queued: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("restore consumer: {0}")]
    Kafka(#[from] KafkaError),
    #[error("restore of state partition {partition} did not finish within {timeout:?}")]
    Timeout { partition: i32, timeout: Duration },
    #[error("ticket or partition state of {topic}: {source}")]
    Snapshot {
        topic: String,
        #[source]
        source: SnapshotError,
    },
    #[error("surge state: {0}")]
    Surge(#[from] SurgeRecordError),
    #[error("the restore builder stopped")]
    BuilderStopped,
    #[error("cannot start the restore builder thread: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("the restore builder panicked")]
    BuilderPanicked,
    #[error("restore of state partition {partition} no longer wanted (revoked, lost or reset meanwhile)")]
    Cancelled { partition: i32 },
}

/// The restore reader's context: end-of-partition is how it knows it is done, not an error.
pub struct ReaderCtx;

impl rdkafka::ClientContext for ReaderCtx {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_))
            && !matches!(&error, KafkaError::Global(c) if *c == rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        {
            crate::runtime::kafka::client_log::client_error("state reader", &error, reason);
        }
    }
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::runtime::kafka::client_log::client_log(level, fac, message);
    }
}
impl rdkafka::consumer::ConsumerContext for ReaderCtx {}

/// Runs one restore once a restore slot is free (blocking; call on a worker thread).
pub fn restore(env: &RestoreEnv, req: &RestoreRequest) -> RestoreResult {
    let queued = Instant::now();
    let slot = env.slots.acquire(|| env.wanted.wants(req.epoch));
    let started = Instant::now();
    let mut bytes = 0u64;
    let mut records = 0u64;
    let outcome = match slot {
        Some(mut slot) => run(env, req, &mut slot, &mut bytes, &mut records),
        None => Err(RestoreError::Cancelled {
            partition: req.partition,
        }),
    };
    RestoreResult {
        partition: req.partition,
        epoch: req.epoch,
        outcome,
        bytes,
        records,
        elapsed: started.elapsed(),
        queued: started - queued,
    }
}

fn run(
    env: &RestoreEnv,
    req: &RestoreRequest,
    slot: &mut RestoreSlot,
    bytes: &mut u64,
    records: &mut u64,
) -> Result<(Vec<RestoredInput>, Option<RestoredSurge>), RestoreError> {
    let deadline = Instant::now() + env.timeout;
    let p = req.partition;
    let mut out = Vec::with_capacity(req.inputs.len());
    if !req.inputs.is_empty() {
        let inputs: Vec<InputRestore> = req
            .inputs
            .iter()
            .map(|t| InputRestore::new(&env.policy, &env.engine_cfg, t, req.rebuild))
            .collect();
        // The reader (this thread) copies records into chunks; a builder thread decodes them
        // into the engines meanwhile, so decoding overlaps reading on a second core.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Feed>(16);
        let (read, built) = std::thread::scope(|s| {
            let spawned = std::thread::Builder::new()
                .name(format!("restore-build-{p}"))
                .spawn_scoped(s, move || -> Result<Vec<InputRestore>, RestoreError> {
                    let mut inputs = inputs;
                    for feed in rx {
                        let chunk = match feed {
                            Feed::Expect(records) => {
                                for input in inputs.iter_mut() {
                                    input.reserve(records);
                                }
                                continue;
                            }
                            Feed::Records(chunk) => chunk,
                        };
                        for (key, value) in chunk.records() {
                            for input in inputs.iter_mut() {
                                if input.offer(key, value)? {
                                    break;
                                }
                            }
                        }
                    }
                    Ok(inputs)
                });
            let builder = match spawned {
                Ok(b) => b,
                // Reported like any failed restore: the partition is retried, not the
                // process brought down.
                Err(e) => {
                    return (
                        Err(RestoreError::BuilderStopped),
                        Err(RestoreError::Spawn(e)),
                    )
                }
            };
            let mut chunk = Chunk::default();
            let read = read_partition(
                env,
                req.epoch,
                slot,
                &env.group_id,
                &req.inputs,
                &env.state_topic,
                p,
                deadline,
                |records| {
                    let _ = tx.send(Feed::Expect(records));
                },
                |key, value| {
                    chunk.push(key, value);
                    if chunk.spans.len() >= CHUNK_RECORDS {
                        tx.send(Feed::Records(std::mem::take(&mut chunk)))
                            .map_err(|_| RestoreError::BuilderStopped)?;
                    }
                    Ok(())
                },
                bytes,
                records,
            );
            if read.is_ok() && !chunk.spans.is_empty() {
                let _ = tx.send(Feed::Records(chunk));
            }
            drop(tx);
            let built = builder
                .join()
                .unwrap_or_else(|_| Err(RestoreError::BuilderPanicked));
            (read, built)
        });
        // The builder's error is the cause when both failed (the reader only saw it stop).
        let inputs = built?;
        let committed = read?;
        let started = Instant::now();
        for input in inputs {
            let committed = committed.get(&input.topic).copied().flatten();
            out.push(input.finish(committed)?);
        }
        tracing::debug!(
            partition = p,
            build_ms = started.elapsed().as_millis() as u64,
            "engines built"
        );
    }
    let surge = if req.surge {
        let key = surge_key(&env.repartition_topic);
        let mut latest: Option<Vec<u8>> = None;
        let committed = read_partition(
            env,
            req.epoch,
            slot,
            &env.surge_group_id,
            std::slice::from_ref(&env.repartition_topic),
            &env.surge_state_topic,
            p,
            deadline,
            |_| {},
            |k, v| {
                if k == key.as_slice() {
                    latest = v.map(<[u8]>::to_vec);
                }
                Ok(())
            },
            bytes,
            records,
        )?;
        let record = match latest {
            Some(b) => Some(SurgeRecord::decode(&b)?),
            None => None,
        };
        Some(RestoredSurge {
            record,
            committed: committed.get(&env.repartition_topic).copied().flatten(),
        })
    } else {
        None
    };
    Ok((out, surge))
}

/// Records handed from the restore reader to the builder at a time.
const CHUNK_RECORDS: usize = 4096;

/// What the restore reader hands the builder.
enum Feed {
    /// The state partition holds about this many records (an upper bound on tickets).
    Expect(usize),
    Records(Chunk),
}

/// Records copied out of librdkafka's buffers: keys and values back to back in `data`.
#[derive(Default)]
struct Chunk {
    data: Vec<u8>,
    /// (key start, key end = value start, value end; `None` = tombstone).
    spans: Vec<(usize, usize, Option<usize>)>,
}

impl Chunk {
    fn push(&mut self, key: &[u8], value: Option<&[u8]>) {
        let start = self.data.len();
        self.data.extend_from_slice(key);
        let key_end = self.data.len();
        let value_end = value.map(|v| {
            self.data.extend_from_slice(v);
            self.data.len()
        });
        self.spans.push((start, key_end, value_end));
    }

    fn records(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.spans
            .iter()
            .map(|&(s, k, v)| (&self.data[s..k], v.map(|v| &self.data[k..v])))
    }
}

/// One input topic's share of a state partition, rebuilt record by record as it is read.
struct InputRestore {
    topic: String,
    /// `t/<topic>/`: its tenant-less ticket records' key prefix.
    prefix: Vec<u8>,
    /// `T/<topic>/`: its tenants' ticket records' key prefix.
    tenant_prefix: Vec<u8>,
    /// `p/<topic>`: its partition record's key.
    partition_key: Vec<u8>,
    partition_state: Option<Vec<u8>>,
    target: Target,
}

enum Target {
    Engine(Restorer),
    /// `--rebuild-from-input`: an empty engine, and the keys still live (to tombstone).
    Rebuild(Engine, HashSet<Vec<u8>>),
}

impl InputRestore {
    fn new(
        policy: &Arc<PolicySet>,
        engine_cfg: &EngineConfig,
        topic: &str,
        rebuild: bool,
    ) -> InputRestore {
        InputRestore {
            topic: topic.to_string(),
            prefix: ticket_key(topic, "", ""),
            tenant_prefix: format!("T/{topic}/").into_bytes(),
            partition_key: partition_key(topic),
            partition_state: None,
            target: if rebuild {
                Target::Rebuild(
                    Engine::new(policy.clone(), engine_cfg.clone()),
                    HashSet::new(),
                )
            } else {
                Target::Engine(Restorer::new(policy.clone(), engine_cfg.clone()))
            },
        }
    }

    fn reserve(&mut self, records: usize) {
        if let Target::Engine(r) = &mut self.target {
            r.reserve(records);
        }
    }

    /// Applies the record if it is this input's; `Ok(false)` when it is not.
    fn offer(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<bool, RestoreError> {
        if key == self.partition_key.as_slice() {
            self.partition_state = value.map(<[u8]>::to_vec);
            return Ok(true);
        }
        let (ticket, tenant) = if let Some(t) = key.strip_prefix(self.prefix.as_slice()) {
            (t, None)
        } else if let Some(rest) = key.strip_prefix(self.tenant_prefix.as_slice()) {
            (rest, Some(rest))
        } else {
            return Ok(false);
        };
        match &mut self.target {
            Target::Rebuild(_, live) => {
                match value {
                    Some(_) => live.insert(key.to_vec()),
                    None => live.remove(key),
                };
            }
            Target::Engine(r) => {
                let upserted = match (value, tenant) {
                    (Some(v), None) => r.upsert_tenantless_key(v),
                    (Some(v), Some(_)) => r.upsert(v),
                    // Keys are written from ids (UTF-8); anything else is not ours.
                    (None, None) => {
                        if let Ok(id) = std::str::from_utf8(ticket) {
                            r.remove_tenantless_key(id);
                        }
                        Ok(())
                    }
                    (None, Some(rest)) => {
                        if let Some((tenant, id)) = split_tenant_key(rest) {
                            r.remove(tenant, id);
                        }
                        Ok(())
                    }
                };
                upserted.map_err(|source| RestoreError::Snapshot {
                    topic: self.topic.clone(),
                    source,
                })?
            }
        }
        Ok(true)
    }

    fn finish(self, committed: Option<i64>) -> Result<RestoredInput, RestoreError> {
        let topic = self.topic;
        match self.target {
            Target::Rebuild(engine, live) => Ok(RestoredInput {
                engine,
                topic,
                committed,
                stale_keys: live.into_iter().collect(),
                rewrite: Vec::new(),
                tickets: 0,
            }),
            Target::Engine(r) => {
                let tickets = r.tickets();
                let rewrite = r.legacy();
                let stale_keys = rewrite
                    .iter()
                    .map(|k| ticket_key(&topic, "", &k.id))
                    .collect();
                let engine = r
                    .finish(self.partition_state.as_deref())
                    .map_err(|source| RestoreError::Snapshot {
                        topic: topic.clone(),
                        source,
                    })?;
                Ok(RestoredInput {
                    topic,
                    engine,
                    committed,
                    stale_keys,
                    rewrite,
                    tickets,
                })
            }
        }
    }
}

/// Fetches `group`'s committed offsets of `sources` partition `p`, then reads partition `p`
/// of `state_topic` from the beginning to its end, handing each record to `on_record` in
/// log order (a NULL value is a tombstone). `expect` first learns how many records the
/// partition holds (end − start offsets, an upper bound).
#[allow(clippy::too_many_arguments)]
fn read_partition(
    env: &RestoreEnv,
    epoch: u64,
    slot: &mut RestoreSlot,
    group: &str,
    sources: &[String],
    state_topic: &str,
    p: i32,
    deadline: Instant,
    expect: impl FnOnce(usize),
    mut on_record: impl FnMut(&[u8], Option<&[u8]>) -> Result<(), RestoreError>,
    bytes: &mut u64,
    records: &mut u64,
) -> Result<HashMap<String, Option<i64>>, RestoreError> {
    let reader = QuickClose::new(reader_config(&env.cfg, group).create_with_context(ReaderCtx)?);
    // 1. Committed offsets first: with read_committed the broker answers only once no open
    //    transaction (e.g. of a crashed previous owner) holds offsets of the partition.
    let t0 = Instant::now();
    let mut tpl = TopicPartitionList::new();
    for t in sources {
        tpl.add_partition(t, p);
    }
    let committed_tpl = committed_offsets(env, epoch, slot, group, &reader, &tpl, state_topic, p)?;
    let committed: HashMap<String, Option<i64>> = sources
        .iter()
        .map(|t| {
            let o = match committed_tpl.find_partition(t, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) if o >= 0 => Some(o),
                _ => None,
            };
            (t.clone(), o)
        })
        .collect();
    let t_committed = t0.elapsed();
    if t_committed > Duration::from_secs(5) {
        // An open transaction holds offsets of this partition: a crashed previous owner's
        // (the broker ends it at its transaction timeout) or one of ours left unfinished.
        tracing::warn!(
            partition = p,
            waited_ms = t_committed.as_millis() as u64,
            "state restore: the committed offsets were held by an open transaction"
        );
    }
    // 2. The state partition, from the beginning to its end, once every transaction in it
    //    is decided (the one that committed those offsets included).
    // Know the partition's leader before assigning: otherwise librdkafka's first offset
    // lookup fails and is retried only after 500 ms.
    reader.fetch_metadata(Some(state_topic), env.timeout)?;
    let (low, end) = wait_until_state_is_decided(
        env,
        epoch,
        slot,
        &reader,
        group,
        state_topic,
        p,
        &committed,
        deadline,
    )?;
    // A hint (the index is sized once instead of rehashed as it grows).
    expect((end - low).max(0) as usize);
    if end <= low {
        // Nothing in it (a new or fully deleted partition): no fetch to learn its end.
        tracing::debug!(
            topic = state_topic,
            partition = p,
            committed_ms = t_committed.as_millis() as u64,
            read_ms = 0,
            records = 0,
            "state partition empty"
        );
        return Ok(committed);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(state_topic, p, Offset::Beginning)?;
    reader.assign(&tpl)?;
    let cancelled = || RestoreError::Cancelled { partition: p };
    loop {
        if Instant::now() > deadline {
            return Err(RestoreError::Timeout {
                partition: p,
                timeout: env.timeout,
            });
        }
        match reader.poll(Duration::from_millis(100)) {
            None if !env.wanted.wants(epoch) => return Err(cancelled()),
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => {
                // Transient (e.g. a leader change): librdkafka retries; keep polling.
                tracing::warn!(partition = p, error = %e, "state restore: consumer error");
                continue;
            }
            Some(Ok(m)) => {
                let Some(key) = m.key() else { continue };
                *records += 1;
                if records.is_multiple_of(CANCEL_CHECK_RECORDS) && !env.wanted.wants(epoch) {
                    return Err(cancelled());
                }
                *bytes += (key.len() + m.payload_len()) as u64;
                on_record(key, m.payload())?;
            }
        }
    }
    tracing::debug!(
        topic = state_topic,
        partition = p,
        committed_ms = t_committed.as_millis() as u64,
        read_ms = (t0.elapsed() - t_committed).as_millis() as u64,
        records = *records,
        "state partition read"
    );
    Ok(committed)
}

/// How long one committed-offset fetch may wait before the restore logs that it is held.
const OFFSETS_STEP: Duration = Duration::from_secs(5);

/// How long a committed-offset fetch may take before the restore counts it as held and
/// gives its slot back (an unheld fetch answers in milliseconds).
const SLOT_HOLD: Duration = Duration::from_secs(1);

/// The committed offsets of `tpl`, fetched in [`OFFSETS_STEP`]s up to the restore's bound,
/// with a warning at each step: a require-stable fetch is answered only once no open
/// transaction holds offsets of the partition, and an operator (or a failing test's log)
/// should see that wait while it lasts, not only after it. At each step the held partitions
/// are reported with their stable committed offsets, and with state partition `p` of
/// `state_topic` if it is held too ([`report_held`]). A fetch not answered within
/// [`SLOT_HOLD`] gives the restore's slot back.
#[allow(clippy::too_many_arguments)]
fn committed_offsets(
    env: &RestoreEnv,
    epoch: u64,
    slot: &mut RestoreSlot,
    group: &str,
    reader: &BaseConsumer<ReaderCtx>,
    tpl: &TopicPartitionList,
    state_topic: &str,
    p: i32,
) -> Result<TopicPartitionList, RestoreError> {
    let started = Instant::now();
    let mut stable_reader = None;
    // The first step ends early, at SLOT_HOLD; the warnings keep their OFFSETS_STEP cadence.
    let mut step_end = SLOT_HOLD.min(OFFSETS_STEP);
    let mut next_warning = OFFSETS_STEP;
    loop {
        if !env.wanted.wants(epoch) {
            return Err(RestoreError::Cancelled { partition: p });
        }
        let elapsed = started.elapsed();
        let left = env.timeout.saturating_sub(elapsed);
        let wait = step_end
            .saturating_sub(elapsed)
            .max(Duration::from_millis(10))
            .min(left);
        match reader.committed_offsets(tpl.clone(), wait) {
            Err(KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut)) if left > wait => {
                slot.release();
                if started.elapsed() >= next_warning {
                    next_warning += OFFSETS_STEP;
                    tracing::warn!(
                        partition = p,
                        group,
                        waited_s = started.elapsed().as_secs(),
                        "state restore: the committed offsets are still held (an open transaction holds offsets of this partition)"
                    );
                    let held =
                        report_held(env, group, tpl, reader, state_topic, p, &mut stable_reader);
                    if let Err(e) = held {
                        tracing::warn!(partition = p, error = %e, "state restore: reading the stable committed offsets failed");
                    }
                }
                step_end = next_warning;
            }
            r => return Ok(r?),
        }
    }
}

/// Reports `tpl`'s partitions as held, each with its stable committed offset (read without
/// require-stable, which leaves pending commits out and answers at once). A partition
/// without a committed offset is not reported: releasing needs an offset that leaves the
/// group as it is. State partition `p` is reported with them when it is held too (its last
/// stable offset, what `reader` is answered, below its high watermark), with the covers of
/// its undecided records: a transaction of ours that no partition got a marker of is
/// rolled forward from there (see [`super::held`]).
fn report_held(
    env: &RestoreEnv,
    group: &str,
    tpl: &TopicPartitionList,
    reader: &BaseConsumer<ReaderCtx>,
    state_topic: &str,
    p: i32,
    stable_reader: &mut Option<QuickClose<ReaderCtx>>,
) -> Result<(), KafkaError> {
    let uncommitted = match stable_reader {
        Some(r) => r,
        None => stable_reader.insert(uncommitted_reader(env, group)?),
    };
    let stable = uncommitted.committed_offsets(tpl.clone(), OFFSETS_STEP)?;
    let held: Vec<HeldOffset> = stable
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) if o >= 0 => Some(HeldOffset {
                group: group.to_string(),
                topic: e.topic().to_string(),
                partition: e.partition(),
                committed: o,
            }),
            _ => None,
        })
        .collect();
    let mut states = Vec::new();
    // The offsets are reported even when the state partition's ends cannot be read.
    let ends = uncommitted
        .fetch_watermarks(state_topic, p, OFFSETS_STEP)
        .and_then(|(_, end)| {
            Ok((
                end,
                reader.fetch_watermarks(state_topic, p, OFFSETS_STEP)?.1,
            ))
        });
    let (end, last_stable) = ends.unwrap_or_else(|e| {
        tracing::warn!(partition = p, error = %e, "state restore: cannot tell whether the state partition is held too");
        (0, 0)
    });
    if last_stable < end {
        let undecided = undecided_covers(env, group, state_topic, p, last_stable, end);
        let committed: HashMap<String, Option<i64>> = held
            .iter()
            .map(|h| (h.topic.clone(), Some(h.committed)))
            .collect();
        let commit = held_by_committed(
            undecided.iter().map(|u| (u.source.as_str(), u.offset)),
            &committed,
        );
        tracing::warn!(
            partition = p,
            last_stable,
            end,
            undecided = ?undecided,
            committed_transaction = commit,
            "state restore: the state partition is held too"
        );
        states.push(HeldState {
            topic: state_topic.to_string(),
            partition: p,
            commit,
            undecided,
            offsets_held: true,
        });
    }
    env.held.report_all(&held, &states);
    Ok(())
}

/// A reader that sees what is not committed yet: committed offsets without require-stable,
/// and the high watermark (a read_committed client's ListOffsets answers the last stable
/// offset instead).
fn uncommitted_reader(env: &RestoreEnv, group: &str) -> Result<QuickClose<ReaderCtx>, KafkaError> {
    let mut c = reader_config(&env.cfg, group);
    c.set("isolation.level", "read_uncommitted");
    Ok(QuickClose::new(c.create_with_context(ReaderCtx)?))
}

/// A reader of high watermarks (read_uncommitted: a read_committed client's ListOffsets
/// answers the last stable offset). It needs no group, and a consumer without one drops at
/// once (no group close to wait for).
fn high_watermark_reader(env: &RestoreEnv) -> Result<BaseConsumer<ReaderCtx>, KafkaError> {
    let mut c = short_lived_config(&env.cfg);
    c.set("isolation.level", "read_uncommitted");
    c.create_with_context(ReaderCtx)
}

/// Waits until every transaction with records in state partition `p` below its current end
/// is decided: the last stable offset (what `reader`, read_committed, is answered) has
/// reached the high watermark measured first. The committed offsets read before are
/// stable, but the transaction that committed them writes its markers partition by
/// partition: after a broker restart the offsets' marker can land well before the state
/// partition's (that partition's leader not ready yet), and reading the state up to the
/// stable end then would miss the transaction's state records while the offsets already
/// count its input — those events lost. A zombie's open transaction is waited for too (its
/// abort comes at its transaction timeout at the latest). While it waits, the restore's
/// slot is given back, and at each warning the partition is reported held, for the
/// processing thread to end what our own producers may have left open there, by a commit
/// when its undecided records belong to a transaction that committed (`committed`: the
/// group's stable committed offsets of the partition by source topic; see
/// [`super::held`]). Returns the partition's (start, stable end) offsets.
#[allow(clippy::too_many_arguments)]
fn wait_until_state_is_decided(
    env: &RestoreEnv,
    epoch: u64,
    slot: &mut RestoreSlot,
    reader: &BaseConsumer<ReaderCtx>,
    group: &str,
    state_topic: &str,
    p: i32,
    committed: &HashMap<String, Option<i64>>,
    deadline: Instant,
) -> Result<(i64, i64), RestoreError> {
    let (_, end) = high_watermark_reader(env)?.fetch_watermarks(state_topic, p, env.timeout)?;
    let started = Instant::now();
    let mut next_warning = OFFSETS_STEP;
    loop {
        let (low, stable) = reader.fetch_watermarks(state_topic, p, env.timeout)?;
        if stable >= end {
            return Ok((low, stable));
        }
        slot.release();
        if !env.wanted.wants(epoch) {
            return Err(RestoreError::Cancelled { partition: p });
        }
        if Instant::now() > deadline {
            return Err(RestoreError::Timeout {
                partition: p,
                timeout: env.timeout,
            });
        }
        if started.elapsed() >= next_warning {
            next_warning += OFFSETS_STEP;
            let undecided = undecided_covers(env, group, state_topic, p, stable, end);
            let commit = held_by_committed(
                undecided.iter().map(|u| (u.source.as_str(), u.offset)),
                committed,
            );
            tracing::warn!(
                partition = p,
                stable,
                end,
                waited_s = started.elapsed().as_secs(),
                committed_transaction = commit,
                "state restore: an undecided transaction holds the state partition (waiting for its marker)"
            );
            env.held.report_state(&HeldState {
                topic: state_topic.to_string(),
                partition: p,
                commit,
                undecided,
                offsets_held: false,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The [`COVERS_HEADER`]s of state partition `p`'s records from
/// `stable` (its last stable offset) to `end`, read uncommitted: what the undecided
/// transactions there would commit. Best effort within [`COVERS_READ_BOUND`] (none read:
/// the partition is released by an abort, as before this existed).
fn undecided_covers(
    env: &RestoreEnv,
    group: &str,
    state_topic: &str,
    p: i32,
    stable: i64,
    end: i64,
) -> Vec<Undecided> {
    let mut covers = Vec::new();
    // `assign` needs a group id (nothing is joined or committed).
    let reader = match uncommitted_reader(env, group) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(partition = p, error = %e, "state restore: cannot read the undecided records");
            return covers;
        }
    };
    let mut tpl = TopicPartitionList::new();
    if let Err(e) = tpl
        .add_partition_offset(state_topic, p, Offset::Offset(stable))
        .and_then(|()| reader.assign(&tpl))
    {
        tracing::warn!(partition = p, error = %e, "state restore: cannot read the undecided records");
        return covers;
    }
    let until = Instant::now() + COVERS_READ_BOUND;
    while Instant::now() < until {
        match reader.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                if let Some(h) = m.headers() {
                    for header in
                        rdkafka::message::Headers::iter(h).filter(|h| h.key == COVERS_HEADER)
                    {
                        if let Some(c) = header.value.and_then(parse_covers) {
                            covers.push(Undecided::from(c));
                        }
                    }
                }
                if m.offset() + 1 >= end {
                    break;
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(_)) | None => {}
        }
    }
    covers
}

/// How long [`undecided_covers`] reads.
const COVERS_READ_BOUND: Duration = Duration::from_secs(3);

/// A detector from a restored record (or a fresh one).
pub fn surge_detector(policy: &PolicySet, record: Option<&SurgeRecord>) -> SurgeDetector {
    match record {
        Some(r) => SurgeDetector::from_state(policy.surge.clone(), r.state.clone()),
        None => SurgeDetector::new(policy.surge.clone()),
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_is_wanted_from_its_start_until_its_epoch_leaves_the_set() {
        let w = WantedRestores::default();
        assert!(!w.wants(7));
        w.add(7);
        assert!(w.wants(7), "wanted before the next readiness update");
        w.set([7, 9].into_iter());
        assert!(w.wants(7) && w.wants(9));
        w.set([9].into_iter());
        assert!(
            !w.wants(7),
            "revoked, lost or reset: cancelled at its next step"
        );
    }

    use crate::core::engine::Emitted;
    use crate::core::model::{Body, Event};
    use crate::core::policy::builtin::PolicySource;
    use crate::core::time::Ts;

    fn opened(tenant: &str, id: &str, at: i64) -> Event {
        Event {
            event_id: format!("{tenant}-{id}-open").into(),
            ticket_id: id.into(),
            occurred_at: Ts::from_secs(1_700_000_000 + at),
            tenant: tenant.into(),
            body: Body::Opened {
                channel: Default::default(),
                category: Default::default(),
                urgency: Default::default(),
                tier: Default::default(),
                team: "".into(),
            },
        }
    }

    /// Ticket records of `events` as `(tenant, id, record)`, as the engine emits them.
    fn records(policy: &Arc<PolicySet>, events: &[Event]) -> Vec<(TicketKey, Vec<u8>)> {
        let mut e = Engine::new(policy.clone(), EngineConfig::default());
        e.track_changes(true);
        let mut out = Emitted::default();
        for ev in events {
            e.ingest(ev.clone(), &mut out);
        }
        e.finish(None, &mut out);
        e.take_changes()
            .into_iter()
            .map(|(k, r)| (k, r.expect("live")))
            .collect()
    }

    fn restore_from(policy: &Arc<PolicySet>, log: &[(Vec<u8>, Option<Vec<u8>>)]) -> RestoredInput {
        let mut input = InputRestore::new(policy, &EngineConfig::default(), "conv", false);
        for (k, v) in log {
            assert!(input.offer(k, v.as_deref()).unwrap(), "{k:?} is conv's");
        }
        input.finish(None).unwrap()
    }

    #[test]
    fn rule11_two_tenants_same_ticket_id_restore_as_two_tickets() {
        let policy = Arc::new(PolicySource::BuiltIn.load().unwrap());
        let log: Vec<_> = records(
            &policy,
            &[
                opened("acme", "1234", 0),
                opened("globex", "1234", 1),
                opened("", "1234", 2),
            ],
        )
        .into_iter()
        .map(|(k, r)| (ticket_key("conv", &k.tenant, &k.id), Some(r)))
        .collect();
        assert_eq!(log.len(), 3);
        let r = restore_from(&policy, &log);
        for tenant in ["acme", "globex", ""] {
            assert!(r.engine.ticket(tenant, "1234").is_some(), "{tenant:?}");
        }
        assert!(r.rewrite.is_empty() && r.stale_keys.is_empty());
        // A tombstone frees its own tenant's ticket only.
        let mut log = log;
        log.push((ticket_key("conv", "globex", "1234"), None));
        log.push((ticket_key("conv", "", "1234"), None));
        let r = restore_from(&policy, &log);
        assert!(r.engine.ticket("acme", "1234").is_some());
        assert!(r.engine.ticket("globex", "1234").is_none());
        assert!(r.engine.ticket("", "1234").is_none());
    }

    #[test]
    fn rule11_changelog_of_the_previous_version_restores_and_moves_to_tenant_keys() {
        // Given a changelog as versions before rule 11 wrote it: every ticket keyed
        // `t/<topic>/<id>`, the tenant only inside the record; 55 was freed (tombstone).
        let policy = Arc::new(PolicySource::BuiltIn.load().unwrap());
        let recs = records(
            &policy,
            &[
                opened("acme", "1234", 0),
                opened("", "77", 1),
                opened("globex", "55", 2),
            ],
        );
        let mut log: Vec<_> = recs
            .iter()
            .map(|(k, r)| (ticket_key("conv", "", &k.id), Some(r.clone())))
            .collect();
        log.push((ticket_key("conv", "", "55"), None));
        // When it is restored,
        let r = restore_from(&policy, &log);
        // then acme's ticket comes back as acme's, 77 without tenant, 55 stays freed,
        assert!(r.engine.ticket("acme", "1234").is_some());
        assert!(r.engine.ticket("", "77").is_some());
        assert!(r.engine.ticket("globex", "55").is_none());
        assert_eq!(r.tickets, 2);
        // and acme's record is to move to its tenant key, the old key to be tombstoned.
        let acme = TicketKey {
            tenant: "acme".into(),
            id: "1234".into(),
        };
        assert_eq!(r.rewrite, vec![acme.clone()]);
        assert_eq!(r.stale_keys, vec![ticket_key("conv", "", "1234")]);
        // After the move (new record, then the old key's tombstone) a restore is clean.
        let mut engine = r.engine;
        engine.track_changes(true);
        engine.touch(&acme);
        for (k, rec) in engine.take_changes() {
            log.push((ticket_key("conv", &k.tenant, &k.id), rec));
        }
        log.push((ticket_key("conv", "", "1234"), None));
        let r = restore_from(&policy, &log);
        assert!(r.engine.ticket("acme", "1234").is_some());
        assert!(r.engine.ticket("", "77").is_some());
        assert!(r.rewrite.is_empty());
        assert_eq!(r.tickets, 2);
    }
}
