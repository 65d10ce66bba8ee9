//! Shared helpers of the Kafka runtime's integration tests (tests/kafka_*.rs): configs with
//! unique names, producing events, reading outputs, and the reference (`replay`) to compare
//! with.
#![allow(dead_code)]

use crate::common::kafka::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use slawatch::codec::{self, Format};
use slawatch::core::model::*;
use slawatch::core::policy::parse::load_policy_file;
use slawatch::core::policy::PolicySet;
use slawatch::core::time::{Dur, Ts};
use slawatch::replay::{replay, Order, ReplayOptions};
use slawatch::runtime::config::Config;
use slawatch::runtime::control::Control;
use slawatch::runtime::processor::{self, ProcessorHandle, ProcessorOptions};
use slawatch::runtime::time_source::{Clock, ManualClock};
use slawatch::runtime::topics::Topics;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(60);

pub fn repo_path(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

pub fn default_policy() -> Arc<PolicySet> {
    Arc::new(load_policy_file(&repo_path("deploy/policies/default.toml")).expect("default policy"))
}

/// One test's names: input topic, group, instance, and prefixed output topics.
#[derive(Clone, Debug)]
pub struct Names {
    pub prefix: String,
    pub input: String,
    pub group: String,
}

impl Names {
    /// The input topic, created with 3 partitions (to produce before a processor runs).
    pub fn input_topic_created(&self) -> String {
        create_topic(&bootstrap(), &self.input, 3, &[]);
        self.input.clone()
    }

    pub fn new(tag: &str) -> Names {
        let prefix = unique_name(tag);
        Names {
            input: format!("{prefix}.in"),
            group: format!("{prefix}.g"),
            prefix,
        }
    }
}

/// A config for the test broker with every topic named after `names`.
pub fn config(names: &Names, instance: &str, exactly_once: bool, extra: &str) -> Config {
    let text = config_text(names, instance, exactly_once, extra);
    Config::from_sources(&text, "test config", Vec::new()).expect("test config")
}

/// The TOML of [`config`].
pub fn config_text(names: &Names, instance: &str, exactly_once: bool, extra: &str) -> String {
    let p = &names.prefix;
    let text = format!(
        r#"
brokers = "{bs}"
group_id = "{group}"
instance_id = "{instance}"
input_topics = ["{input}"]
policy_file = "{policy}"
exactly_once = {exactly_once}
commit_interval_ms = 100
admin_listen = "127.0.0.1:0"
{extra}
[topics]
breaches = "{p}.breaches"
warnings = "{p}.warnings"
escalations = "{p}.escalations"
reminders = "{p}.reminders"
surges = "{p}.surges"
dead_letters = "{p}.dlq"
state = "{p}.state"
surge_repartition = "{p}.rep"
surge_state = "{p}.surge-state"
partitions = 3
output_partitions = 2
replication_factor = 1
[kafka]
"broker.address.family" = "v4"
"session.timeout.ms" = "6000"
"#,
        bs = bootstrap(),
        group = names.group,
        input = names.input,
        policy = repo_path("deploy/policies/default.toml").display(),
    );
    text
}

pub fn output_topics(names: &Names) -> Vec<String> {
    ["breaches", "warnings", "escalations", "reminders", "surges"]
        .iter()
        .map(|k| format!("{}.{k}", names.prefix))
        .collect()
}

/// Starts a processor on a manual clock.
pub fn start(cfg: &Config, clock: Arc<ManualClock>) -> ProcessorHandle {
    start_with(cfg, clock, false)
}

pub fn start_with(cfg: &Config, clock: Arc<ManualClock>, rebuild: bool) -> ProcessorHandle {
    // RUST_LOG=slawatch=debug shows the processor's log in a failing test's output.
    if std::env::var_os("RUST_LOG").is_some() {
        slawatch::runtime::service::init_logging();
    }
    let c: Arc<dyn Clock> = clock;
    processor::start(
        ProcessorOptions {
            cfg: cfg.clone(),
            topics: Topics::new(cfg, false),
            policy: default_policy(),
            clock: c,
            rebuild_from_input: rebuild,
            on_observation: None,
            on_output: None,
            describe_topic_configs: true,
        },
        Control::new(),
    )
    .expect("processor starts")
}

/// Waits until `cond` holds or panics after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn wait_ready(h: &ProcessorHandle) {
    wait_for("readiness", WAIT, || {
        assert!(
            !h.is_finished(),
            "processor stopped: {:?}",
            h.control.last_error()
        );
        h.control.is_ready()
            && h.control.assigned_partitions.load(Ordering::Relaxed)
                + h.control.assigned_surge_partitions.load(Ordering::Relaxed)
                > 0
    });
}

/// Events sorted by (occurred_at, ticket, event id): the order a live system would see,
/// so no event is late in replay or live.
pub fn sorted(mut events: Vec<Event>) -> Vec<Event> {
    events.sort_by(|a, b| {
        (a.occurred_at, &a.ticket_id, &a.event_id).cmp(&(b.occurred_at, &b.ticket_id, &b.event_id))
    });
    events
}

/// Produces events keyed by ticket id; `json_every`: every n-th as proto3 JSON (0 = none).
pub fn produce_events(topic: &str, events: &[Event], json_every: usize) {
    let producer: BaseProducer = producer_config(&bootstrap()).create().expect("producer");
    produce_with(&producer, topic, events, json_every);
    producer.flush(TIMEOUT).expect("flush");
}

/// [`produce_events`] with a given producer (not flushed).
pub fn produce_with(producer: &BaseProducer, topic: &str, events: &[Event], json_every: usize) {
    for (i, ev) in events.iter().enumerate() {
        let json = json_every > 0 && i % json_every == 0;
        let value = if json {
            codec::event_to_json(ev).into_bytes()
        } else {
            codec::event_to_protobuf(ev)
        };
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
            .key(ev.ticket_id.as_bytes())
            .payload(&value);
        if json {
            rec = rec.headers(OwnedHeaders::new().insert(Header {
                key: "content-type",
                value: Some("application/json"),
            }));
        }
        send(producer, rec);
    }
}

pub fn send(producer: &BaseProducer, mut rec: BaseRecord<'_, [u8], [u8]>) {
    loop {
        match producer.send(rec) {
            Ok(()) => return,
            Err((
                KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                r,
            )) => {
                rec = r;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => panic!("produce: {e}"),
        }
    }
}

/// The reference: `slawatch replay` over the same events (JSON lines), until `until`.
pub fn reference(events: &[Event], until: Ts) -> Vec<String> {
    let input: String = events
        .iter()
        .map(|e| codec::event_to_json(e) + "\n")
        .collect();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    // Line order with the lateness rules: what the live processor does with the topic.
    let opts = ReplayOptions {
        format: Format::Json.into(),
        until: Some(until),
        order: Order::Stream,
        ..ReplayOptions::default()
    };
    let report = replay(
        default_policy(),
        &opts,
        &mut input.as_bytes(),
        &mut out,
        &mut errors,
    )
    .expect("replay");
    assert_eq!(report.rejected, 0, "{}", String::from_utf8_lossy(&errors));
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| l.to_string())
        .collect()
}

/// A consumer of the test broker assigned to every partition of `topics` from the
/// beginning, with the given `isolation.level`.
pub fn reader(topics: &[String], isolation: &str) -> BaseConsumer {
    reader_at(&bootstrap(), topics, isolation)
}

/// [`reader`] against the broker at `bs` (a dedicated one).
pub fn reader_at(bs: &str, topics: &[String], isolation: &str) -> BaseConsumer {
    let consumer: BaseConsumer = consumer_config(bs, &unique_name("reader"))
        .set("isolation.level", isolation)
        .create()
        .expect("reader");
    let md = consumer.fetch_metadata(None, TIMEOUT).expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        let topic = md
            .topics()
            .iter()
            .find(|x| x.name() == t)
            .unwrap_or_else(|| panic!("no topic {t}"));
        for p in topic.partitions() {
            tpl.add_partition_offset(t, p.id(), Offset::Beginning)
                .unwrap();
        }
    }
    consumer.assign(&tpl).expect("assign");
    consumer
}

/// Starts the real `slawatch run --config <config>` binary, its stderr appended to `log`,
/// with `RUST_LOG=info` (or the test's `TEST_PROCESSOR_LOG`, e.g.
/// `info,slawatch::runtime=debug`, for a post-mortem) and `env` added. The test process's own `SLAWATCH_…` variables
/// (test knobs such as `SLAWATCH_FLOOD_IDS`, broker settings such as
/// `SLAWATCH_KAFKA_HEAP`) are removed: slawatch reads every such variable as its
/// configuration and refuses unknown ones.
pub fn spawn_run(config: &Path, log: &Path, env: &[(&str, &str)]) -> std::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_slawatch"));
    cmd.args(["run", "--config"])
        .arg(config)
        .env(
            "RUST_LOG",
            std::env::var("TEST_PROCESSOR_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(log));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SLAWATCH_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn slawatch run")
}

/// (committed, end) offsets of `names.input` summed over its partitions, at broker `bs`.
pub fn progress_at(bs: &str, names: &Names, partitions: i32) -> (i64, i64) {
    let c: BaseConsumer = consumer_config(bs, &unique_name("probe")).create().unwrap();
    let mut committed = 0;
    let mut end = 0;
    for p in 0..partitions {
        end += c.fetch_watermarks(&names.input, p, TIMEOUT).unwrap().1;
        committed += committed_offset(bs, &names.group, &names.input, p).unwrap_or(0);
    }
    (committed, end)
}

/// One `opened` per input partition an hour after `last`: moves every partition's
/// event-time watermark past a whole workload to the same instant (sub-second, so no timer
/// is due exactly there). Returns that instant and the (partition, event) pairs.
pub fn sentinels(last: Ts, partitions: i32) -> (Ts, Vec<(i32, Event)>) {
    let t_end = last
        .saturating_add(Dur::from_secs(3600))
        .saturating_add(Dur(123_456_789));
    let events = (0..partitions)
        .map(|p| {
            (
                p,
                Event {
                    event_id: format!("Z{p}-1").into(),
                    ticket_id: format!("Z{p}").into(),
                    occurred_at: t_end,
                    tenant: "zeta".into(),
                    body: Body::Opened {
                        channel: Channel::Email,
                        category: Category::Inquiry,
                        urgency: Urgency::General,
                        tier: Tier::Standard,
                        team: "".into(),
                    },
                },
            )
        })
        .collect();
    (t_end, events)
}

/// Produces each event (protobuf, keyed by ticket) to its given partition; not flushed.
pub fn produce_to_partitions(producer: &BaseProducer, topic: &str, events: &[(i32, Event)]) {
    for (partition, ev) in events {
        let v = codec::event_to_protobuf(ev);
        send(
            producer,
            BaseRecord::to(topic)
                .partition(*partition)
                .key(ev.ticket_id.as_bytes())
                .payload(v.as_slice()),
        );
    }
}

/// Reads until `n` records arrived, then `settle` more to catch extras.
pub fn read_n(
    consumer: &BaseConsumer,
    n: usize,
    timeout: Duration,
    settle: Duration,
) -> Vec<OwnedMessage> {
    let mut got = try_collect_messages(consumer, n, timeout);
    got.extend(try_collect_messages(consumer, 1_000_000, settle));
    got
}

/// Output records' JSON payloads.
pub fn payloads(msgs: &[OwnedMessage]) -> Vec<String> {
    msgs.iter().map(payload_str).collect()
}

/// Compares live outputs with the reference: the same multiset of JSON lines (byte for
/// byte), no duplicates, and per (ticket, topic) the reference's order.
pub fn assert_same_outputs(live: &[OwnedMessage], reference: &[String]) {
    let mut want: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reference {
        *want.entry(r.as_str()).or_default() += 1;
    }
    let live_lines = payloads(live);
    let mut got: BTreeMap<&str, usize> = BTreeMap::new();
    for l in &live_lines {
        *got.entry(l.as_str()).or_default() += 1;
    }
    let dup: Vec<_> = got
        .iter()
        .filter(|(_, &n)| n > 1)
        .map(|(l, n)| format!("{n}× {l}"))
        .collect();
    let missing: Vec<_> = want.keys().filter(|l| !got.contains_key(*l)).collect();
    let extra: Vec<_> = got.keys().filter(|l| !want.contains_key(*l)).collect();
    assert!(
        dup.is_empty() && missing.is_empty() && extra.is_empty(),
        "live ≠ replay: {} duplicates, {} missing, {} extra (live {}, replay {})\nduplicates: {:#?}\nmissing: {:#?}\nextra: {:#?}",
        dup.len(),
        missing.len(),
        extra.len(),
        live_lines.len(),
        reference.len(),
        dup.iter().take(5).collect::<Vec<_>>(),
        missing.iter().take(5).collect::<Vec<_>>(),
        extra.iter().take(5).collect::<Vec<_>>()
    );
    // Order per (ticket, topic): the reference order restricted to that topic.
    let id = |line: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        v["eventId"].as_str().unwrap_or("").to_string()
    };
    let mut topic_of: HashMap<String, String> = HashMap::new();
    let mut live_seq: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for m in live {
        let line = payload_str(m);
        let key = key_str(m);
        let eid = id(&line);
        topic_of.insert(eid.clone(), m.topic().to_string());
        live_seq
            .entry((key, m.topic().to_string()))
            .or_default()
            .push(eid);
    }
    let mut ref_seq: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for r in reference {
        let v: serde_json::Value = serde_json::from_str(r).unwrap();
        let eid = v["eventId"].as_str().unwrap().to_string();
        let ticket = v["ticketId"].as_str().unwrap_or("").to_string();
        let topic = topic_of.get(&eid).cloned().unwrap_or_default();
        if ticket.is_empty() {
            continue; // surges: keyed by tenant and dimension
        }
        ref_seq.entry((ticket, topic)).or_default().push(eid);
    }
    for (k, seq) in &ref_seq {
        assert_eq!(live_seq.get(k), Some(seq), "order of {k:?}");
    }
}

/// Header value as a string.
pub fn header(m: &OwnedMessage, name: &str) -> Option<String> {
    let h = m.headers()?;
    h.iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Wall-clock instant (for building events relative to now).
pub fn now() -> Ts {
    slawatch::runtime::time_source::WallClock.now()
}

/// The clock position that makes every partition fire what `replay --until until` fires.
pub fn clock_for_until(until: Ts) -> Ts {
    until
        .saturating_add(Dur::from_secs(1))
        .saturating_add(Dur(1))
}

/// `10:00:00` → 2024-03-04T10:00:00Z; full RFC 3339 otherwise.
pub fn t(s: &str) -> Ts {
    if s.len() <= 8 {
        Ts::parse_rfc3339(&format!("2024-03-04T{s}Z")).unwrap()
    } else {
        Ts::parse_rfc3339(s).unwrap()
    }
}

fn ev(ticket: &str, n: u32, at: &str, body: Body) -> Event {
    Event {
        event_id: format!("{ticket}-e{n}").into(),
        ticket_id: ticket.into(),
        occurred_at: t(at),
        tenant: "acme".into(),
        body,
    }
}

fn opened(channel: Channel, category: Category, urgency: Urgency) -> Body {
    Body::Opened {
        channel,
        category,
        urgency,
        tier: Tier::Standard,
        team: "".into(),
    }
}

fn reply(kind: ReplyKind) -> Body {
    Body::AgentMessage {
        kind,
        audience: Audience::Customer,
    }
}

/// The worked examples E1–E8 of docs/sla-semantics.md §4 (ticket ids E1…E8), sorted by time.
pub fn examples() -> Vec<Event> {
    use Category::*;
    use Channel::*;
    use Urgency::*;
    sorted(vec![
        ev("E1", 1, "10:00:00", opened(Chat, Inquiry, General)),
        ev("E1", 2, "10:00:01", Body::AutoReply),
        ev("E2", 1, "10:00:00", opened(Chat, Inquiry, Urgent)),
        ev("E2", 2, "10:00:20", reply(ReplyKind::Answer)),
        ev(
            "E3",
            1,
            "2024-03-04T23:58:00+08:00",
            opened(Email, Inquiry, General),
        ),
        ev("E4", 1, "10:00:00", opened(Email, Inquiry, Urgent)),
        ev("E4", 2, "10:03:00", reply(ReplyKind::Answer)),
        ev("E5", 1, "10:00:00", opened(Email, Inquiry, General)),
        ev("E5", 2, "11:00:00", Body::WaitingOnCustomer),
        ev("E5", 3, "13:00:00", Body::CustomerMessage),
        ev("E6", 1, "10:00:00", opened(Chat, Inquiry, General)),
        ev("E6", 2, "10:00:10", reply(ReplyKind::Answer)),
        ev("E6", 3, "10:05:00", Body::Resolved),
        ev(
            "E6",
            4,
            "10:06:00",
            Body::Feedback {
                satisfied: Some(false),
            },
        ),
        ev(
            "E7",
            1,
            "2024-03-04T09:00:00+08:00",
            opened(Email, Complaint, General),
        ),
        ev(
            "E7",
            2,
            "2024-03-04T09:01:00+08:00",
            reply(ReplyKind::Answer),
        ),
        ev("E7", 3, "2024-03-04T12:00:00+08:00", Body::Resolved),
        ev("E7", 4, "2024-03-04T12:01:00+08:00", Body::Closed),
        ev("E8", 1, "10:00:00", opened(Email, Inquiry, General)),
        ev("E8", 2, "10:02:00", Body::UrgencyChanged(Urgent)),
    ])
}

/// A deterministic larger workload from the demo's traffic generator.
pub fn workload(origin: Ts, minutes: i64, per_min: f64, seed: u64, prefix: &str) -> Vec<Event> {
    workload_with(origin, minutes, per_min, seed, prefix, vec![])
}

/// [`workload`] with planted surges: (start offset, length, tenant, multiplier) on chat.
pub fn workload_with(
    origin: Ts,
    minutes: i64,
    per_min: f64,
    seed: u64,
    prefix: &str,
    surges: Vec<(Dur, Dur, &'static str, f64)>,
) -> Vec<Event> {
    use slawatch::demo::traffic::{Traffic, TrafficOptions};
    let mut gen = Traffic::new(
        origin,
        TrafficOptions {
            tickets_per_min: per_min,
            seed,
            surges,
            id_prefix: prefix.to_string(),
        },
    );
    let mut out = Vec::new();
    gen.until(
        origin.saturating_add(Dur::from_secs(minutes * 60)),
        &mut out,
    );
    // Cut off at the horizon: drop events of tickets scheduled beyond it (they are not in
    // the output either way; keeps the run short).
    out
}

/// How many members of consumer group `group` hold at least one partition (0 before the group
/// forms; parsed from
/// each member's consumer-protocol assignment: version i16, then topics, each a name and an
/// array of i32 partitions).
pub fn members_holding_partitions(group: &str) -> usize {
    let c: BaseConsumer = consumer_config(&bootstrap(), &unique_name("describe"))
        .create()
        .expect("describer");
    let list = c
        .fetch_group_list(Some(group), TIMEOUT)
        .expect("group list");
    // A group not formed yet holds nothing.
    let Some(g) = list.groups().iter().find(|g| g.name() == group) else {
        return 0;
    };
    g.members()
        .iter()
        .filter(|m| m.assignment().is_some_and(|a| assigned_partitions(a) > 0))
        .count()
}

fn assigned_partitions(a: &[u8]) -> usize {
    let i32_at = |at: usize| i32::from_be_bytes(a[at..at + 4].try_into().unwrap());
    let mut at = 2;
    let topics = i32_at(at).max(0);
    at += 4;
    let mut n = 0;
    for _ in 0..topics {
        let name_len = i16::from_be_bytes([a[at], a[at + 1]]) as usize;
        at += 2 + name_len;
        let parts = i32_at(at).max(0) as usize;
        at += 4 + 4 * parts;
        n += parts;
    }
    n
}
