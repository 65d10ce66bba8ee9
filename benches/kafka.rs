//! The Kafka runtime against a real Apache Kafka broker (tests/common/kafka.rs starts one, or
//! `KAFKA_BOOTSTRAP`): `cargo bench --bench kafka`. Prints
//! - the drain rate of a pre-loaded backlog with exactly-once on and off (events/s),
//! - commit latency (p50/p99/max),
//! - breach latency after deadline + allowed lateness: emitted (handed to the producer) and
//!   visible (received by a read_committed consumer), p50/p99/max,
//! - restore time of N open tickets and RSS per open ticket.
//!
//! Sizes: `SLAWATCH_BENCH_EVENTS` (backlog, default 1 000 000), `SLAWATCH_BENCH_TICKETS`
//! (restore, default 1 000 000), `SLAWATCH_BENCH_PARTITIONS` (default 6);
//! `SLAWATCH_BENCH_ONLY=engine,alo,eos,eos-process,alo-quiet,eos-quiet,latency,restore`
//! picks parts (`eos-process`: the exactly-once drain by the `slawatch run` binary in a
//! process of its own, for its peak RSS without the bench's memory; `SLAWATCH_BENCH_BIN`
//! names another build of the binary to run there, for A/B comparisons);
//! `SLAWATCH_BENCH_CONFIG` adds top-level config lines (e.g. `producer_queue_kbytes = 16384`;
//! a `commit_interval_ms` replaces the bench's 100) to every processor the bench starts, `SLAWATCH_BENCH_THREADS` its `[runtime] threads`
//! (default 1), `SLAWATCH_BENCH_KAFKA` lines under its `[kafka]` table (librdkafka properties,
//! e.g. `debug = "eos,cgrp"`). Under
//! `cargo test --all-targets` (no `--bench` argument) it runs nothing.
#[path = "../tests/common/kafka.rs"]
mod kafka;

use kafka::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use slawatch::codec;
use slawatch::core::model::*;
use slawatch::core::time::{Dur, Ts};
use slawatch::runtime::config::Config;
use slawatch::runtime::control::Control;
use slawatch::runtime::processor::{self, ProcessorHandle, ProcessorOptions};
use slawatch::runtime::time_source::{Clock, ManualClock, WallClock};
use slawatch::runtime::topics::Topics;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The binary's allocator (src/main.rs), so the in-process processor measures as it runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    if std::env::var_os("RUST_LOG").is_some() {
        slawatch::runtime::service::init_logging();
    }
    let events = env_usize("SLAWATCH_BENCH_EVENTS", 1_000_000);
    let tickets = env_usize("SLAWATCH_BENCH_TICKETS", 1_000_000);
    let partitions = env_usize("SLAWATCH_BENCH_PARTITIONS", 6) as i32;
    let bs = bootstrap();
    println!("broker {bs}; backlog {events} events; restore {tickets} tickets; {partitions} partitions\n");
    let only = std::env::var("SLAWATCH_BENCH_ONLY").unwrap_or_default();
    let run = |what: &str| only.is_empty() || only.split(',').any(|o| o == what);
    if run("engine") {
        engine_only(events, partitions);
    }
    if run("alo") {
        drain(&bs, events, partitions, false, false);
    }
    if run("eos") {
        drain(&bs, events, partitions, true, false);
    }
    if run("eos-process") {
        drain_in_own_process(&bs, events, partitions);
    }
    if run("alo-quiet") {
        drain(&bs, events, partitions, false, true);
    }
    if run("eos-quiet") {
        drain(&bs, events, partitions, true, true);
    }
    if run("latency") {
        latency(&bs, partitions, 2000);
    }
    if run("restore") {
        restore(&bs, tickets, partitions);
    }
}

fn policy() -> Arc<slawatch::core::policy::PolicySet> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/policies/default.toml");
    Arc::new(slawatch::core::policy::parse::load_policy_file(&path).expect("policy"))
}

fn config(bs: &str, prefix: &str, partitions: i32, eos: bool, extra: &str) -> Config {
    let text = config_text(bs, prefix, partitions, eos, extra);
    Config::from_sources(&text, "bench", Vec::new()).expect("config")
}

/// The TOML of [`config`].
fn config_text(bs: &str, prefix: &str, partitions: i32, eos: bool, extra: &str) -> String {
    let env_extra = std::env::var("SLAWATCH_BENCH_CONFIG").unwrap_or_default();
    let threads = env_usize("SLAWATCH_BENCH_THREADS", 1);
    let kafka_extra = std::env::var("SLAWATCH_BENCH_KAFKA").unwrap_or_default();
    // The bench's commit interval unless SLAWATCH_BENCH_CONFIG sets its own.
    let interval = if env_extra.contains("commit_interval_ms") {
        ""
    } else {
        "commit_interval_ms = 100"
    };
    format!(
        r#"
brokers = "{bs}"
group_id = "{prefix}.g"
instance_id = "bench"
input_topics = ["{prefix}.in"]
exactly_once = {eos}
{interval}
{extra}
{env_extra}
[runtime]
threads = {threads}
[topics]
breaches = "{prefix}.breaches"
warnings = "{prefix}.warnings"
escalations = "{prefix}.escalations"
reminders = "{prefix}.reminders"
surges = "{prefix}.surges"
dead_letters = "{prefix}.dlq"
state = "{prefix}.state"
surge_repartition = "{prefix}.rep"
surge_state = "{prefix}.surge-state"
partitions = {partitions}
output_partitions = {partitions}
replication_factor = 1
[kafka]
"broker.address.family" = "v4"
{kafka_extra}
"#
    )
}

fn start(
    cfg: &Config,
    clock: Arc<dyn Clock>,
    on_output: Option<processor::OutputHook>,
) -> ProcessorHandle {
    processor::start(
        ProcessorOptions {
            cfg: cfg.clone(),
            topics: Topics::new(cfg, false),
            policy: policy(),
            clock,
            rebuild_from_input: false,
            on_observation: None,
            on_output,
            describe_topic_configs: true,
        },
        Control::new(),
    )
    .expect("processor")
}

fn fast_producer(bs: &str) -> BaseProducer {
    producer_config(bs)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("compression.type", "lz4")
        .create()
        .expect("producer")
}

fn send(p: &BaseProducer, mut rec: BaseRecord<'_, [u8], [u8]>) {
    loop {
        match p.send(rec) {
            Ok(()) => return,
            Err((_, r)) => {
                rec = r;
                p.poll(Duration::from_millis(1));
            }
        }
    }
}

fn preload(bs: &str, topic: &str, events: &[Event]) -> Duration {
    let started = Instant::now();
    let p = fast_producer(bs);
    for ev in events {
        let v = codec::event_to_protobuf(ev);
        send(
            &p,
            BaseRecord::to(topic)
                .key(ev.ticket_id.as_bytes())
                .payload(v.as_slice()),
        );
    }
    p.flush(Duration::from_secs(120)).expect("flush");
    started.elapsed()
}

/// The group's committed offsets summed over the topic's partitions; 0 while the group
/// coordinator cannot answer yet (a fresh broker loads `__consumer_offsets` for a moment
/// and answers NOT_COORDINATOR meanwhile), so callers simply poll again.
fn committed_total(bs: &str, group: &str, topic: &str, partitions: i32) -> i64 {
    let c: BaseConsumer = consumer_config(bs, group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let Ok(got) = c.committed_offsets(tpl, TIMEOUT) else {
        return 0;
    };
    got.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((p * sorted.len() as f64).ceil() as usize).max(1) - 1).min(sorted.len() - 1)]
}

fn summary(mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    format!(
        "p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (n = {})",
        pct(&v, 0.5),
        pct(&v, 0.99),
        v.last().copied().unwrap_or(f64::NAN),
        v.len()
    )
}

/// A realistic backlog from the demo's traffic generator.
fn backlog(n: usize) -> Vec<Event> {
    use slawatch::demo::traffic::{Traffic, TrafficOptions};
    let origin = Ts::parse_rfc3339("2024-03-04T01:00:00Z").unwrap();
    let mut gen = Traffic::new(
        origin,
        TrafficOptions {
            tickets_per_min: 400.0,
            seed: 5,
            surges: vec![],
            id_prefix: "D".into(),
        },
    );
    let mut out = Vec::with_capacity(n + 10_000);
    let mut t = origin;
    while out.len() < n {
        t = t.saturating_add(Dur::from_secs(600));
        gen.until(t, &mut out);
    }
    out.truncate(n);
    out
}

/// The same backlog through the engines alone (no Kafka): decode, ingest, advance per
/// batch, encode outputs — the processing thread's share of the work.
fn engine_only(n: usize, partitions: i32) {
    use slawatch::core::engine::{Emitted, Engine};
    let events = backlog(n);
    let encoded: Vec<Vec<u8>> = events.iter().map(codec::event_to_protobuf).collect();
    let cfg =
        slawatch::runtime::processor::engine_config(&config("x:1", "x", partitions, false, ""));
    let mut engines: Vec<Engine> = (0..partitions)
        .map(|_| {
            let mut e = Engine::new(policy(), cfg.clone());
            e.track_changes(true);
            e
        })
        .collect();
    let mut out = Emitted::default();
    let started = Instant::now();
    let (mut t_decode, mut t_ingest, mut t_advance, mut t_encode, mut t_changes) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    let mut outputs = 0usize;
    let mut bytes = 0usize;
    for (chunk_i, chunk) in encoded.chunks(4096).enumerate() {
        let t = Instant::now();
        let decoded: Vec<Event> = chunk
            .iter()
            .map(|b| codec::decode_protobuf(b).unwrap().event)
            .collect();
        t_decode += t.elapsed();
        let t = Instant::now();
        for ev in decoded {
            let p =
                (xxhash_rust::xxh3::xxh3_64(ev.ticket_id.as_bytes()) % partitions as u64) as usize;
            engines[p].ingest(ev, &mut out);
        }
        t_ingest += t.elapsed();
        for e in engines.iter_mut() {
            let t = Instant::now();
            e.pump(&mut out);
            t_advance += t.elapsed();
            let t = Instant::now();
            for o in &out.outputs {
                bytes += codec::output_to_json(o).len();
            }
            outputs += out.outputs.len();
            out.clear();
            t_encode += t.elapsed();
        }
        if chunk_i % 24 == 23 {
            let t = Instant::now();
            for e in engines.iter_mut() {
                bytes += e
                    .take_changes()
                    .iter()
                    .map(|(_, r)| r.as_ref().map_or(0, |r| r.len()))
                    .sum::<usize>();
                bytes += e.partition_state().len();
            }
            t_changes += t.elapsed();
        }
    }
    let took = started.elapsed();
    println!(
        "engines alone: {:.0} events/s ({n} events, {outputs} outputs, {:.2} s): decode {:.2} s, ingest {:.2} s, advance {:.2} s, JSON encode {:.2} s, changelog {:.2} s ({} MB)",
        n as f64 / took.as_secs_f64(),
        took.as_secs_f64(),
        t_decode.as_secs_f64(),
        t_ingest.as_secs_f64(),
        t_advance.as_secs_f64(),
        t_encode.as_secs_f64(),
        t_changes.as_secs_f64(),
        bytes / 1_000_000
    );
}

fn drain(bs: &str, n: usize, partitions: i32, eos: bool, light: bool) {
    let prefix = unique_name(if eos { "bench-eos" } else { "bench-alo" });
    let cfg = config(bs, &prefix, partitions, eos, "");
    let input = format!("{prefix}.in");
    create_topic(bs, &input, partitions, &[]);
    let events = if light {
        let mut e = answered_tickets(n / 2);
        e.sort_by_key(|e| e.occurred_at);
        e
    } else {
        backlog(n)
    };
    let n = events.len();
    let load = preload(bs, &input, &events);
    drop(events);
    println!(
        "drain ({}, {} workload): {} events pre-loaded in {:.1} s",
        if eos { "exactly-once" } else { "at-least-once" },
        if light {
            "quiet: opened + answered in time"
        } else {
            "busy: traffic generator, 0.43 outputs/event"
        },
        n,
        load.as_secs_f64()
    );
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(Ts::from_secs(0)));
    // The peak RSS of the drain alone: the pre-load's producer buffers and events are gone,
    // and the kernel's high-water mark restarts here.
    let rss_base = rss_bytes();
    reset_peak_rss();
    let started = Instant::now();
    let h = start(&cfg, clock, None);
    while !h.control.is_ready() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let ready = started.elapsed();
    let cpu0 = cpu_secs();
    let threads0 = thread_cpu();
    let broker0 = broker_cpu_secs();
    // With several processing threads one may start before the process is ready (all
    // threads joined): only what is consumed from here on is measured.
    let before_ready = h.control.records_consumed.load(Ordering::Relaxed) as usize;
    let measured = n - before_ready.min(n);
    let group = format!("{prefix}.g");
    loop {
        if committed_total(bs, &group, &input, partitions) >= n as i64 {
            break;
        }
        assert!(
            !h.is_finished(),
            "processor died: {:?}",
            h.control.last_error()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = started.elapsed() - ready;
    let commits: Vec<f64> = h
        .control
        .commit_times()
        .iter()
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    let cpu = cpu_secs() - cpu0;
    let by_thread = cpu_by_thread_kind(&threads0, &thread_cpu(), measured);
    let broker = broker_cpu_secs() - broker0;
    println!(
        "  {:.0} events/s ({} events in {:.2} s after {:.2} s start-up, {} consumed before ready; {} processing threads; load average {}); {} outputs, {} commits",
        measured as f64 / took.as_secs_f64(),
        measured,
        took.as_secs_f64(),
        ready.as_secs_f64(),
        before_ready,
        cfg.runtime.threads,
        loadavg(),
        h.control.outputs_produced.load(Ordering::Relaxed),
        commits.len()
    );
    println!(
        "  slawatch CPU {:.2} s = {:.2} µs per event (all its threads: processing, librdkafka); {:.0} events per CPU-second",
        cpu,
        cpu * 1e6 / measured as f64,
        measured as f64 / cpu
    );
    println!("  CPU µs per event by thread: {by_thread}");
    println!(
        "  the broker on this machine: CPU {:.2} s = {:.2} µs per event ({:.2} of the {} cores while draining, slawatch {:.2})",
        broker,
        broker * 1e6 / measured as f64,
        broker / took.as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu / took.as_secs_f64()
    );
    println!("  commit time under load: {}", summary(commits));
    let peak = peak_rss_bytes();
    println!(
        "  peak RSS during the drain {:.0} MiB (process before start {:.0} MiB: the bench's own allocations)",
        peak as f64 / (1u64 << 20) as f64,
        rss_base as f64 / (1u64 << 20) as f64
    );
    let c = &h.control;
    println!(
        "  loop: {} iterations; {:.2} s polling with records, {:.2} s idle polls, {:.2} s after-batch ({:.2} s watermarks and outputs, {:.2} s commits)",
        c.loop_iterations.load(Ordering::Relaxed),
        c.busy_poll_micros.load(Ordering::Relaxed) as f64 / 1e6,
        c.idle_poll_micros.load(Ordering::Relaxed) as f64 / 1e6,
        c.after_batch_micros.load(Ordering::Relaxed) as f64 / 1e6,
        c.advance_micros.load(Ordering::Relaxed) as f64 / 1e6,
        c.commit_times().iter().map(|d| d.as_secs_f64()).sum::<f64>(),
    );
    h.stop().unwrap();
}

/// The exactly-once drain of the busy backlog by `slawatch run` (the release binary, as
/// deployed) in a process of its own: events/s from spawn to everything committed (start-up
/// included), its CPU per event, and its peak RSS (`VmHWM`), which the in-process drain
/// cannot give apart from the bench's own memory.
fn drain_in_own_process(bs: &str, n: usize, partitions: i32) {
    let prefix = unique_name("bench-proc");
    let input = format!("{prefix}.in");
    create_topic(bs, &input, partitions, &[]);
    let events = backlog(n);
    let n = events.len();
    let load = preload(bs, &input, &events);
    drop(events);
    // The manual clock at 0 of the in-process drain: event time alone moves watermarks.
    let text = config_text(
        bs,
        &prefix,
        partitions,
        true,
        "wall_clock_watermark = false\nadmin_listen = \"127.0.0.1:0\"",
    );
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(&prefix);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let (config, log) = (dir.join("slawatch.toml"), dir.join("slawatch.log"));
    std::fs::write(&config, text).expect("config file");
    println!(
        "drain by `slawatch run` in its own process (exactly-once, busy): {n} events pre-loaded in {:.1} s",
        load.as_secs_f64()
    );
    let started = Instant::now();
    let bin = std::env::var_os("SLAWATCH_BENCH_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_slawatch").into());
    let mut cmd = std::process::Command::new(&bin);
    // The bench's own SLAWATCH_BENCH_* knobs are not configuration (slawatch refuses
    // unknown SLAWATCH_* variables).
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SLAWATCH_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn slawatch run");
    let pid = child.id();
    let group = format!("{prefix}.g");
    while committed_total(bs, &group, &input, partitions) < n as i64 {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("slawatch run exited with {status}; log: {}", log.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = started.elapsed();
    let cpu = stat_cpu_secs(&format!("/proc/{pid}/stat"));
    let status = |field: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix(field)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(0.0)
            / 1024.0
    };
    let (peak, now) = (status("VmHWM:"), status("VmRSS:"));
    let (anon, file) = (status("RssAnon:"), status("RssFile:"));
    println!(
        "  {:.0} events/s from spawn to all committed ({:.2} s; load average {}); CPU {:.2} s = {:.2} µs per event",
        n as f64 / took.as_secs_f64(),
        took.as_secs_f64(),
        loadavg(),
        cpu,
        cpu * 1e6 / n as f64
    );
    println!("  peak RSS {peak:.0} MiB (VmHWM; at the end {now:.0} MiB: {anon:.0} anonymous, {file:.0} file-backed)");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let stopped = child.wait().expect("wait for slawatch run");
    assert!(
        stopped.success(),
        "slawatch run stopped with {stopped}; log: {}",
        log.display()
    );
}

fn latency(bs: &str, partitions: i32, n: usize) {
    let prefix = unique_name("bench-lat");
    let cfg = config(bs, &prefix, partitions, true, "");
    let input = format!("{prefix}.in");
    // (when it came due, how late it was handed to the producer in ms)
    let emitted: Arc<Mutex<Vec<(Ts, f64)>>> = Arc::new(Mutex::new(Vec::new()));
    let lateness = Dur::from_secs(1);
    let hook: processor::OutputHook = {
        let emitted = emitted.clone();
        Arc::new(move |o: &SlaOutput, now: Ts| {
            if matches!(o.body, OutputBody::Breach { .. }) && &*o.clock == "first_response" {
                let due = o.fired_at.saturating_add(lateness);
                emitted
                    .lock()
                    .unwrap()
                    .push((due, now.since(due).0 as f64 / 1e6));
            }
        })
    };
    let h = start(&cfg, Arc::new(WallClock), Some(hook));
    while !h.control.is_ready() {
        std::thread::sleep(Duration::from_millis(5));
    }
    // The visible side: a read_committed reader of the breaches topic, on its own thread.
    let breaches = format!("{prefix}.breaches");
    let reader_thread = {
        let bs = bs.to_string();
        std::thread::spawn(move || {
            let reader: BaseConsumer = consumer_config(&bs, &unique_name("lat-reader"))
                .create()
                .unwrap();
            let mut tpl = TopicPartitionList::new();
            for p in 0..partitions {
                tpl.add_partition_offset(&breaches, p, Offset::Beginning)
                    .unwrap();
            }
            reader.assign(&tpl).unwrap();
            let mut visible = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(90);
            while visible.len() < n && Instant::now() < deadline {
                if let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) {
                    let now = WallClock.now();
                    let v: serde_json::Value =
                        serde_json::from_slice(m.payload().unwrap()).unwrap();
                    if v["clock"] == "first_response" {
                        let fired = Ts::parse_rfc3339(v["firedAt"].as_str().unwrap()).unwrap();
                        visible.push(now.since(fired.saturating_add(lateness)).0 as f64 / 1e6);
                    }
                }
            }
            visible
        })
    };
    // Chat tickets opened 55 s ago (first response due in 5 s), one every 5 ms: their
    // breaches come due one by one while the partitions are caught up.
    let p = producer_config(bs)
        .set("linger.ms", "1")
        .create::<BaseProducer>()
        .unwrap();
    let t0 = WallClock.now();
    for i in 0..n {
        let at = WallClock.now().saturating_sub(Dur::from_secs(55));
        let ev = Event {
            event_id: format!("L{i}-1").into(),
            ticket_id: format!("L{i}").into(),
            occurred_at: at,
            tenant: "acme".into(),
            body: Body::Opened {
                channel: Channel::Chat,
                category: Category::Inquiry,
                urgency: Urgency::General,
                tier: Tier::Standard,
                team: "".into(),
            },
        };
        let v = codec::event_to_protobuf(&ev);
        send(
            &p,
            BaseRecord::to(&input)
                .key(ev.ticket_id.as_bytes())
                .payload(v.as_slice()),
        );
        p.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
    }
    p.flush(TIMEOUT).unwrap();
    let visible = reader_thread.join().unwrap();
    println!(
        "breach latency after deadline + allowed lateness ({} chat tickets over {:.1} s, exactly-once, commit interval 100 ms):",
        n,
        WallClock.now().since(t0).as_secs_f64()
    );
    let emitted = emitted.lock().unwrap().clone();
    println!(
        "  emitted (handed to the producer): {}",
        summary(emitted.iter().map(|&(_, ms)| ms).collect())
    );
    // The breaches that came due while a commit was in flight: the ones a design that
    // waits for commits would hold back.
    let windows: Vec<(Ts, Ts)> = h
        .control
        .commit_windows()
        .iter()
        .map(|&(start, end)| (wall_ts(start), wall_ts(end)))
        .collect();
    let during: Vec<f64> = emitted
        .iter()
        .filter(|(due, _)| windows.iter().any(|(s, e)| s <= due && due < e))
        .map(|&(_, ms)| ms)
        .collect();
    println!(
        "  emitted, due while a commit was in flight: {}",
        summary(during)
    );
    println!("  visible (read_committed consumer): {}", summary(visible));
    let commits: Vec<f64> = h
        .control
        .commit_times()
        .iter()
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    println!("  commit time at this load: {}", summary(commits));
    h.stop().unwrap();
}

/// A wall-clock instant as an engine time (as `WallClock` reads it).
fn wall_ts(t: std::time::SystemTime) -> Ts {
    Ts(t.duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i64)
}

/// CPU seconds (user + system) this process has used.
fn cpu_secs() -> f64 {
    stat_cpu_secs("/proc/self/stat")
}

/// CPU seconds (user + system) of a `/proc/…/stat` file.
fn stat_cpu_secs(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields after the command: state is index 0; utime 11, stime 12 (clock ticks, 100/s).
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds used by the Kafka brokers running on this machine (processes whose command
/// line runs `kafka.Kafka`); 0 for a remote broker.
fn broker_cpu_secs() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|arg| arg == b"kafka.Kafka"))
        })
        .map(|pid| stat_cpu_secs(&format!("/proc/{pid}/stat")))
        .sum()
}

/// CPU seconds of each live thread of this process: thread id → (name, seconds).
fn thread_cpu() -> std::collections::HashMap<u32, (String, f64)> {
    let mut out = std::collections::HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        out.insert(
            tid,
            (comm, stat_cpu_secs(&format!("/proc/self/task/{tid}/stat"))),
        );
    }
    out
}

/// Where the CPU went between two [`thread_cpu`] snapshots, by thread kind (the name
/// without its trailing number or broker address), largest first, in µs per event. Threads
/// that ended in between are missing (their CPU shows only in the process total).
fn cpu_by_thread_kind(
    before: &std::collections::HashMap<u32, (String, f64)>,
    after: &std::collections::HashMap<u32, (String, f64)>,
    events: usize,
) -> String {
    let mut kinds: std::collections::BTreeMap<String, (usize, f64)> = Default::default();
    for (tid, (name, secs)) in after {
        let was = before.get(tid).map_or(0.0, |b| b.1);
        let kind = name
            .split(['/', ':', '-'])
            .take(2)
            .collect::<Vec<_>>()
            .join(":")
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .to_string();
        let k = kinds.entry(kind).or_default();
        k.0 += 1;
        k.1 += secs - was;
    }
    let mut v: Vec<_> = kinds.into_iter().filter(|(_, (_, s))| *s > 0.0).collect();
    v.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
    v.iter()
        .map(|(kind, (n, secs))| format!("{kind} ×{n} {:.2}", secs * 1e6 / events as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Load average of the last minute (the box is shared; figures depend on it).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(|x| x.to_string()))
        .unwrap_or_default()
}

/// n email inquiries, each opened and answered 30 s later: first_response stops in time,
/// resolution keeps running — the open-ticket state of a quiet day (few outputs).
fn answered_tickets(n: usize) -> Vec<Event> {
    let origin = Ts::parse_rfc3339("2024-03-04T01:00:00Z").unwrap();
    let mut events = Vec::with_capacity(2 * n);
    for i in 0..n {
        let at = origin.saturating_add(Dur::from_millis(i as i64));
        let id: compact_str::CompactString = format!("O{i}").into();
        events.push(Event {
            event_id: format!("O{i}-1").into(),
            ticket_id: id.clone(),
            occurred_at: at,
            tenant: "acme".into(),
            body: Body::Opened {
                channel: Channel::Email,
                category: Category::Inquiry,
                urgency: Urgency::General,
                tier: Tier::Standard,
                team: "".into(),
            },
        });
        events.push(Event {
            event_id: format!("O{i}-2").into(),
            ticket_id: id,
            occurred_at: at.saturating_add(Dur::from_secs(30)),
            tenant: "acme".into(),
            body: Body::AgentMessage {
                kind: ReplyKind::Answer,
                audience: Audience::Customer,
            },
        });
    }
    events
}

unsafe extern "C" {
    /// mimalloc: frees what its heaps keep cached and returns freed pages to the system.
    fn mi_collect(force: bool);
}

fn rss_bytes() -> u64 {
    status_kb("VmRSS:")
}

/// The process's peak RSS since start or since [`reset_peak_rss`] (VmHWM).
fn peak_rss_bytes() -> u64 {
    status_kb("VmHWM:")
}

/// Restarts the kernel's RSS high-water mark (Linux ≥ 4.0: writing 5 to clear_refs).
fn reset_peak_rss() {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        println!("  (cannot reset the peak RSS: {e}; the figure includes the pre-load)");
    }
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// The floor under a restore: reading every state partition to its end with a bare
/// read_committed consumer that only counts records (no copies, no decoding).
/// Reads every state partition once with a bare read_committed consumer: the floor of a
/// restore's read. Returns the records read.
fn read_floor(cfg: &Config, state_topic: &str, partitions: i32) -> u64 {
    let reader: BaseConsumer = slawatch::runtime::kafka::reader_config(cfg, "bench-floor")
        .create()
        .expect("reader");
    reader
        .fetch_metadata(Some(state_topic), TIMEOUT)
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(state_topic, p, Offset::Beginning)
            .unwrap();
    }
    let started = Instant::now();
    let cpu0 = cpu_secs();
    reader.assign(&tpl).unwrap();
    let (mut records, mut bytes, mut eofs) = (0u64, 0u64, 0);
    while eofs < partitions {
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                records += 1;
                bytes += (m.key_len() + m.payload_len()) as u64;
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => eofs += 1,
            _ => {}
        }
    }
    let took = started.elapsed();
    println!(
        "state read floor: {records} records, {:.0} MB in {:.2} s ({:.2} µs per record, {:.2} µs CPU; one read_committed consumer)",
        bytes as f64 / 1e6,
        took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / records.max(1) as f64,
        (cpu_secs() - cpu0) * 1e6 / records.max(1) as f64
    );
    records
}

/// Starts a processor over the state `cfg` names and prints how long it takes to restore
/// `n` open tickets and be ready.
fn timed_restore(cfg: &Config, clock: Arc<dyn Clock>, n: usize, what: &str) {
    let started = Instant::now();
    let cpu0 = cpu_secs();
    let b = start(cfg, clock, None);
    while !b.control.is_ready() || b.control.restored_tickets.load(Ordering::Relaxed) < n as u64 {
        assert!(
            !b.is_finished(),
            "processor died: {:?}",
            b.control.last_error()
        );
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "restore did not finish"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = started.elapsed();
    let cpu = cpu_secs() - cpu0;
    let restores = b.control.restores.load(Ordering::Relaxed).max(1);
    println!(
        "restore ({what}): {} tickets in {:.2} s from process start to ready ({:.2} s per million, {:.2} s CPU; {} partitions restored in parallel, {:.2} s each on average; load average {})",
        b.control.restored_tickets.load(Ordering::Relaxed),
        took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / n as f64,
        cpu,
        restores,
        b.control.restore_micros.load(Ordering::Relaxed) as f64 / restores as f64 / 1e6,
        loadavg()
    );
    b.stop().unwrap();
}

fn restore(bs: &str, n: usize, partitions: i32) {
    let prefix = unique_name("bench-restore");
    let cfg = config(bs, &prefix, partitions, true, "");
    let input = format!("{prefix}.in");
    create_topic(bs, &input, partitions, &[]);
    let mut events = answered_tickets(n);
    events.sort_by_key(|e| e.occurred_at);
    preload(bs, &input, &events);
    drop(events);
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(Ts::from_secs(0)));
    // The pre-load's freed memory goes back to the system first: mimalloc (which serves
    // librdkafka's allocations too) would otherwise hand it to the engines, and the growth
    // below would leave them out.
    // SAFETY: mimalloc's documented collection entry point; it takes no pointers.
    unsafe { mi_collect(true) };
    let rss0 = rss_bytes();
    let a = start(&cfg, clock.clone(), None);
    let group = format!("{prefix}.g");
    while committed_total(bs, &group, &input, partitions) < 2 * n as i64 {
        assert!(
            !a.is_finished(),
            "processor died: {:?}",
            a.control.last_error()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let rss1 = rss_bytes();
    println!(
        "open tickets: {n} held; RSS grew {:.0} MB, {:.0} bytes per open ticket (engine + allocator + librdkafka buffers)",
        (rss1.saturating_sub(rss0)) as f64 / 1e6,
        rss1.saturating_sub(rss0) as f64 / n as f64
    );
    a.stop().unwrap();
    let state = format!("{prefix}.state");
    read_floor(&cfg, &state, partitions);
    timed_restore(&cfg, clock.clone(), n, "right after the writes");
    // The broker's cleaner (every second in the test broker) compacts the closed segments;
    // the state topic's settings (src/runtime/topics.rs) keep the active one small.
    let waited = Instant::now();
    let mut records = read_floor(&cfg, &state, partitions);
    while records > n as u64 * 5 / 4 && waited.elapsed() < Duration::from_secs(90) {
        std::thread::sleep(Duration::from_secs(3));
        records = read_floor(&cfg, &state, partitions);
    }
    println!(
        "compaction: {:.2} state records per open ticket after {:.0} s",
        records as f64 / n as f64,
        waited.elapsed().as_secs_f64()
    );
    timed_restore(&cfg, clock, n, "after compaction");
}
