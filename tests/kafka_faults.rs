//! Faults against the real broker (issue 5): nothing lost, nothing doubled.
//!
//! Each test runs the real `slawatch run` binary over a steady stream of events that arrive
//! within the allowed lateness (event-time watermark only, so the result is comparable with
//! replay), injects faults while the stream flows, then ends every partition's stream with a
//! sentinel `opened` an hour later and compares the read_committed output, event id for
//! event id, with `slawatch replay` over the same input:
//!
//! - `kill_9_loop`: ≥ 20 SIGKILLs at random points (start-up/restore, mid-transaction,
//!   right after a commit), a new process with the same instance id after each;
//! - `scale_1_3_1`: one processor, then three in the same group (6 input partitions), then
//!   one again (one extra stopped by SIGTERM, the other by SIGKILL);
//! - `broker_restart`: a dedicated broker is restarted (SIGTERM) and then crashed (SIGKILL)
//!   and restarted while one processor runs; the processor recovers on its own.
//!
//! The kill points come from a seeded xorshift; the seed is printed, and
//! `FAULTS_SEED=<seed>` repeats a run's choices. Lines starting with `[faults]`
//! report the figures (faults injected, records checked, restart and recovery times).
mod common;
mod kafka_rt;

use common::kafka::*;
use kafka_rt::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, Producer as _};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use slawatch::core::model::*;
use slawatch::core::time::Dur;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// xorshift64*: reproducible kill points without a dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn seed() -> u64 {
    std::env::var("FAULTS_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// A test's input: the steady stream, one sentinel per partition an hour after its end,
/// and replay's output over both.
struct Scenario {
    names: Names,
    partitions: i32,
    events: Vec<Event>,
    sentinels: Vec<(i32, Event)>,
    all_len: usize,
    want: Vec<String>,
}

fn scenario(tag: &str, partitions: i32, minutes: i64, per_min: f64, seed: u64) -> Scenario {
    let names = Names::new(tag);
    let events = sorted(workload(t("01:00:00"), minutes, per_min, seed, "F"));
    let last = events.last().unwrap().occurred_at;
    // Every partition's watermark moves to the same instant (sub-second, so no timer is
    // due exactly there); replay runs until just below it.
    let (t_end, sentinels) = sentinels(last, partitions);
    let mut all = events.clone();
    all.extend(sentinels.iter().map(|(_, e)| e.clone()));
    let want = reference(&all, t_end.saturating_sub(Dur::from_secs(1)));
    Scenario {
        names,
        partitions,
        events,
        sentinels,
        all_len: all.len(),
        want,
    }
}

/// The config file of one processor (event-time watermark only), against `bs`.
fn write_config(dir: &Path, sc: &Scenario, bs: &str, instance: &str) -> PathBuf {
    let text = config_text(&sc.names, instance, true, "wall_clock_watermark = false").replace(
        &format!("brokers = \"{}\"", bootstrap()),
        &format!("brokers = \"{bs}\""),
    );
    assert!(text.contains(&format!("brokers = \"{bs}\"")));
    // FAULTS_DEBUG=cgrp,eos: librdkafka debug contexts in the processes' logs.
    let text = match std::env::var("FAULTS_DEBUG") {
        Ok(d) if !d.is_empty() => format!("{text}\"debug\" = \"{d}\"\n"),
        _ => text,
    };
    let path = dir.join(format!("{instance}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A directory for configs and logs; kept when the test fails (its path is printed), or
/// always with `FAULTS_KEEP=1`.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(tag: &str) -> WorkDir {
        let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique_name(tag));
        std::fs::create_dir_all(&d).unwrap();
        eprintln!("[faults] configs and logs in {}", d.display());
        WorkDir(d)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !std::thread::panicking() && std::env::var_os("FAULTS_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Panics (naming `mode`) when the process has exited.
fn assert_running(child: &mut Child, log: &Path, mode: &str) {
    if let Some(status) = child.try_wait().unwrap() {
        panic!(
            "{mode}: slawatch exited ({status}) when it should be running; log {}:\n{}",
            log.display(),
            log_tail(log)
        );
    }
}

fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success());
}

/// Waits for `child` to exit after a SIGTERM and asserts exit 0.
fn assert_graceful_exit(child: &mut Child, log: &Path, mode: &str) {
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                status.success(),
                "{mode}: SIGTERM gave exit status {status}; log:\n{}",
                log_tail(log)
            );
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{mode}: SIGTERM did not stop slawatch within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The group's committed input offsets and the input's end offsets, from one client.
struct Progress {
    consumer: BaseConsumer,
    tpl: TopicPartitionList,
    topic: String,
    partitions: i32,
}

impl Progress {
    fn new(bs: &str, sc: &Scenario) -> Progress {
        let consumer: BaseConsumer = consumer_config(bs, &sc.names.group).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..sc.partitions {
            tpl.add_partition(&sc.names.input, p);
        }
        Progress {
            consumer,
            tpl,
            topic: sc.names.input.clone(),
            partitions: sc.partitions,
        }
    }

    /// Sum of the committed offsets; `None` while the broker does not answer.
    fn committed(&self) -> Option<i64> {
        let c = self
            .consumer
            .committed_offsets(self.tpl.clone(), Duration::from_secs(5))
            .ok()?;
        let mut sum = 0;
        for e in c.elements() {
            // A partition-level error (e.g. the coordinator still loading) is no answer.
            e.error().ok()?;
            match e.offset() {
                Offset::Offset(o) => sum += o,
                Offset::Invalid => {} // nothing committed yet
                _ => return None,
            }
        }
        Some(sum)
    }

    fn end(&self) -> Option<i64> {
        let mut end = 0;
        for p in 0..self.partitions {
            end += self
                .consumer
                .fetch_watermarks(&self.topic, p, Duration::from_secs(5))
                .ok()?
                .1;
        }
        Some(end)
    }

    /// Waits until the committed offsets exceed `above`; checks `alive` meanwhile.
    fn wait_commit_above(
        &self,
        above: i64,
        timeout: Duration,
        what: &str,
        mut alive: impl FnMut(),
    ) -> i64 {
        let deadline = Instant::now() + timeout;
        loop {
            alive();
            if let Some(c) = self.committed() {
                if c > above {
                    return c;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{what}: no commit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The committed offsets' sum, retried until the coordinator answers.
fn committed_now(progress: &Progress) -> i64 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(c) = progress.committed() {
            return c;
        }
        assert!(Instant::now() < deadline, "committed offsets unavailable");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Produces `events` in chunks every 50 ms (~`per_sec` events a second) until they run out;
/// all at once after `hurry` is set. Idempotent, so order per partition survives retries
/// (and a broker outage shorter than the message timeout).
fn paced_producer(
    bs: String,
    topic: String,
    events: Vec<Event>,
    per_sec: usize,
    hurry: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let p: BaseProducer = producer_config(&bs)
            .set("message.timeout.ms", "120000")
            .create()
            .unwrap();
        let chunk = (per_sec / 20).max(1);
        for c in events.chunks(chunk) {
            produce_with(&p, &topic, c, 3);
            p.poll(Duration::ZERO);
            if !hurry.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        p.flush(Duration::from_secs(120)).expect("flush the stream");
    })
}

fn produce_sentinels(bs: &str, sc: &Scenario) {
    let p: BaseProducer = producer_config(bs).create().unwrap();
    produce_to_partitions(&p, &sc.names.input, &sc.sentinels);
    p.flush(TIMEOUT).unwrap();
}

/// Waits until every input record (stream and sentinels) is committed, then compares the
/// read_committed output with replay's. Returns (SLA events compared, records of aborted
/// transactions seen by read_uncommitted).
fn check_outputs(
    bs: &str,
    sc: &Scenario,
    progress: &Progress,
    mode: &str,
    mut alive: impl FnMut(),
) -> (usize, usize) {
    let n = sc.all_len as i64;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        alive();
        if let (Some(c), Some(e)) = (progress.committed(), progress.end()) {
            if c == e && e == n {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{mode}: input not fully committed within 120 s ({c} of {e} committed, {n} produced)"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let topics = output_topics(&sc.names);
    let committed = read_n(
        &reader_at(bs, &topics, "read_committed"),
        sc.want.len(),
        WAIT,
        Duration::from_secs(2),
    );
    let uncommitted = read_n(
        &reader_at(bs, &topics, "read_uncommitted"),
        sc.want.len(),
        WAIT,
        Duration::from_secs(2),
    );
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_same_outputs(&committed, &sc.want)
    }));
    if let Err(e) = result {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!("{mode}: read_committed output ≠ replay (lost or duplicated SLA events): {msg}");
    }
    (
        committed.len(),
        uncommitted.len() - committed.len().min(uncommitted.len()),
    )
}

// ---------------------------------------------------------------------------------------
// kill -9 loop
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Soon after the partitions were assigned: restoring state, or just after.
    Restore,
    /// 200–1500 ms after the process's first commit: a transaction is open.
    MidTransaction,
    /// As soon as a commit is observed.
    AfterCommit,
}

#[test]
fn kill_9_loop_loses_nothing_and_duplicates_nothing() {
    const MODE: &str = "kill -9 loop";
    const KILLS: usize = 24;
    let seed = seed();
    eprintln!("[faults] {MODE}: seed {seed} (FAULTS_SEED={seed} repeats the kill points)");
    let mut rng = Rng::new(seed);
    let bs = bootstrap();
    let sc = scenario("faults-kill", 3, 150, 40.0, 51);
    let dir = WorkDir::new("faults");
    let config = write_config(dir.path(), &sc, &bs, "k0");
    create_topic(&bs, &sc.names.input, sc.partitions, &[]);
    let progress = Progress::new(&bs, &sc);

    let head = sc.events.len() / 20;
    produce_events(&sc.names.input, &sc.events[..head], 3);
    let hurry = Arc::new(AtomicBool::new(false));
    let stream = paced_producer(
        bs.clone(),
        sc.names.input.clone(),
        sc.events[head..].to_vec(),
        300,
        hurry.clone(),
    );

    let started = Instant::now();
    let mut counts = [0usize; 3];
    let mut restart_costs: Vec<Duration> = Vec::new();
    let mut committed_lives = 0;
    // Every phase KILLS / 3 times, in a random order.
    let mut phases: Vec<Phase> = (0..KILLS)
        .map(|i| [Phase::Restore, Phase::MidTransaction, Phase::AfterCommit][i % 3])
        .collect();
    for i in (1..phases.len()).rev() {
        phases.swap(i, rng.between(0, i as u64) as usize);
    }
    for (i, &phase) in phases.iter().enumerate() {
        let log = dir.path().join(format!("life-{i}.log"));
        let before = committed_now(&progress);
        let mut child = spawn_run(&config, &log, &[]);
        let t0 = Instant::now();
        let what = format!("{MODE}: life {i} ({phase:?})");
        match phase {
            Phase::Restore => {
                wait_for(&format!("{what}: assignment"), WAIT, || {
                    assert_running(&mut child, &log, &what);
                    std::fs::read_to_string(&log)
                        .unwrap_or_default()
                        .contains("assigned; restoring state")
                });
                std::thread::sleep(Duration::from_millis(rng.between(0, 40)));
            }
            Phase::MidTransaction | Phase::AfterCommit => {
                let first = progress.wait_commit_above(before, WAIT, &what, || {
                    assert_running(&mut child, &log, &what)
                });
                restart_costs.push(t0.elapsed());
                if phase == Phase::MidTransaction {
                    std::thread::sleep(Duration::from_millis(rng.between(200, 1500)));
                } else {
                    std::thread::sleep(Duration::from_millis(rng.between(0, 500)));
                    let now = progress.committed().unwrap_or(first);
                    progress.wait_commit_above(now, WAIT, &what, || {
                        assert_running(&mut child, &log, &what)
                    });
                }
            }
        }
        assert_running(&mut child, &log, &what);
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        counts[phase as usize] += 1;
        let after = committed_now(&progress);
        if after > before {
            committed_lives += 1;
        }
        eprintln!(
            "[faults] {MODE}: kill {:2} ({phase:?}) after {:>5} ms; committed {before} → {after}",
            i + 1,
            t0.elapsed().as_millis()
        );
    }
    let loop_time = started.elapsed();
    hurry.store(true, Ordering::Relaxed);
    stream.join().unwrap();
    produce_sentinels(&bs, &sc);

    let log = dir.path().join("final.log");
    let mut last = spawn_run(&config, &log, &[]);
    let t0 = Instant::now();
    let (checked, aborted) = check_outputs(&bs, &sc, &progress, MODE, || {
        assert_running(&mut last, &log, MODE)
    });
    let catch_up = t0.elapsed();
    signal(&last, "-TERM");
    assert_graceful_exit(&mut last, &log, MODE);

    restart_costs.sort();
    let median = restart_costs
        .get(restart_costs.len() / 2)
        .copied()
        .unwrap_or_default();
    let max = restart_costs.last().copied().unwrap_or_default();
    eprintln!(
        "[faults] {MODE}: {KILLS} SIGKILLs in {:.1} s ({} during restore, {} mid-transaction, {} right after a commit; {committed_lives} lives committed something); restart → first commit: median {} ms, max {} ms (n = {})",
        loop_time.as_secs_f64(),
        counts[0],
        counts[1],
        counts[2],
        median.as_millis(),
        max.as_millis(),
        restart_costs.len()
    );
    eprintln!(
        "[faults] {MODE}: {} input records, {checked} SLA events checked against replay ({} expected): 0 missing, 0 duplicates; read_uncommitted also saw {aborted} records of aborted transactions; final process caught up in {:.1} s",
        sc.all_len,
        sc.want.len(),
        catch_up.as_secs_f64()
    );
    assert!(
        committed_lives >= KILLS / 2,
        "{MODE}: only {committed_lives} of {KILLS} processes committed anything (restarts too slow?)"
    );
}

// ---------------------------------------------------------------------------------------
// Scale 1 → 3 → 1
// ---------------------------------------------------------------------------------------

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The admin address a process logged at start-up (`admin_listen` is port 0).
fn admin_addr(log: &Path) -> Option<String> {
    let text = strip_ansi(&std::fs::read_to_string(log).ok()?);
    let at = text.rfind("admin=")?;
    Some(
        text[at + 6..]
            .split(|c: char| c.is_whitespace())
            .next()?
            .to_string(),
    )
}

/// (ready, assigned input partitions) from `/readyz`.
fn readyz(addr: &str) -> Option<(bool, usize)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET /readyz HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let json = &body[body.find('{')?..];
    let v: serde_json::Value = serde_json::from_str(json.trim()).ok()?;
    Some((
        v["ready"].as_bool()?,
        v["assigned_partitions"].as_u64()? as usize,
    ))
}

struct Instance {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Instance {
    fn start(dir: &Path, sc: &Scenario, bs: &str, name: &str) -> Instance {
        let config = write_config(dir, sc, bs, name);
        let log = dir.join(format!("{name}.log"));
        let child = spawn_run(&config, &log, &[]);
        Instance {
            name: name.to_string(),
            child,
            log,
        }
    }
    fn alive(&mut self, mode: &str) {
        let what = format!("{mode} ({})", self.name);
        assert_running(&mut self.child, &self.log, &what);
    }
    fn readyz(&self) -> Option<(bool, usize)> {
        readyz(&admin_addr(&self.log)?)
    }
}

#[test]
fn scale_1_3_1_loses_nothing_and_duplicates_nothing() {
    const MODE: &str = "scale 1 → 3 → 1";
    let bs = bootstrap();
    let sc = scenario("faults-scale", 6, 120, 40.0, 52);
    let dir = WorkDir::new("faults");
    create_topic(&bs, &sc.names.input, sc.partitions, &[]);
    let progress = Progress::new(&bs, &sc);
    let head = sc.events.len() / 20;
    produce_events(&sc.names.input, &sc.events[..head], 3);
    let hurry = Arc::new(AtomicBool::new(false));
    let stream = paced_producer(
        bs.clone(),
        sc.names.input.clone(),
        sc.events[head..].to_vec(),
        300,
        hurry.clone(),
    );
    let started = Instant::now();

    let mut a = Instance::start(dir.path(), &sc, &bs, "s0");
    progress.wait_commit_above(0, WAIT, &format!("{MODE}: first processor"), || {
        a.alive(MODE)
    });
    wait_for(&format!("{MODE}: s0 owns all 6 partitions"), WAIT, || {
        a.alive(MODE);
        a.readyz() == Some((true, 6))
    });

    // 1 → 3
    let up = Instant::now();
    let mut b = Instance::start(dir.path(), &sc, &bs, "s1");
    let mut c = Instance::start(dir.path(), &sc, &bs, "s2");
    let mut owned = Vec::new();
    wait_for(
        &format!("{MODE}: three processors each own input partitions"),
        Duration::from_secs(90),
        || {
            for x in [&mut a, &mut b, &mut c] {
                x.alive(MODE);
            }
            owned = [&a, &b, &c].iter().map(|x| x.readyz()).collect::<Vec<_>>();
            owned.iter().all(|o| matches!(o, Some((true, n)) if *n > 0))
                && owned.iter().map(|o| o.unwrap().1).sum::<usize>() == 6
        },
    );
    let scale_up = up.elapsed();
    let at = progress.committed().unwrap_or(0);
    progress.wait_commit_above(at, WAIT, &format!("{MODE}: progress with 3"), || {
        for x in [&mut a, &mut b, &mut c] {
            x.alive(MODE);
        }
    });
    eprintln!(
        "[faults] {MODE}: 3 processors ready {:.1} s after the 2nd and 3rd started; input partitions owned {:?}",
        scale_up.as_secs_f64(),
        owned.iter().map(|o| o.unwrap().1).collect::<Vec<_>>()
    );
    std::thread::sleep(Duration::from_millis(1500));

    // 3 → 1: s1 stops gracefully, s2 is killed mid-stream.
    let down = Instant::now();
    signal(&b.child, "-TERM");
    c.child.kill().expect("SIGKILL s2");
    c.child.wait().unwrap();
    assert_graceful_exit(&mut b.child, &b.log, MODE);
    wait_for(
        &format!("{MODE}: s0 owns all 6 partitions again"),
        Duration::from_secs(90),
        || {
            a.alive(MODE);
            a.readyz() == Some((true, 6))
        },
    );
    let at = progress.committed().unwrap_or(0);
    progress.wait_commit_above(at, WAIT, &format!("{MODE}: progress with 1"), || {
        a.alive(MODE)
    });
    let scale_down = down.elapsed();
    eprintln!(
        "[faults] {MODE}: back to 1 processor (s1 SIGTERM, s2 SIGKILL): s0 owns and commits all 6 partitions {:.1} s later (static membership: the group waits session.timeout.ms = 6 s for the departed members)",
        scale_down.as_secs_f64()
    );

    hurry.store(true, Ordering::Relaxed);
    stream.join().unwrap();
    produce_sentinels(&bs, &sc);
    let (checked, aborted) = check_outputs(&bs, &sc, &progress, MODE, || a.alive(MODE));
    signal(&a.child, "-TERM");
    assert_graceful_exit(&mut a.child, &a.log, MODE);
    eprintln!(
        "[faults] {MODE}: {} input records over 6 partitions, {checked} SLA events checked against replay: 0 missing, 0 duplicates ({aborted} records of aborted transactions); {:.1} s in all",
        sc.all_len,
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------
// Broker restart
// ---------------------------------------------------------------------------------------

#[test]
fn broker_restart_and_crash_mid_stream_processor_recovers_on_its_own() {
    const MODE: &str = "broker restart";
    // A crashed broker re-registers with its controller only after its old session expired
    // (broker.session.timeout.ms, 9 s by default); shorter, so a crash costs seconds.
    let broker = DedicatedBroker::start(
        "faults-broker",
        "broker.heartbeat.interval.ms=1000\nbroker.session.timeout.ms=4000\n",
    );
    let bs = broker.bootstrap.clone();
    let sc = scenario("faults-broker", 3, 90, 40.0, 53);
    let dir = WorkDir::new("faults");
    create_topic(&bs, &sc.names.input, sc.partitions, &[]);
    let progress = Progress::new(&bs, &sc);
    let head = sc.events.len() / 20;
    let p: BaseProducer = producer_config(&bs).create().unwrap();
    produce_with(&p, &sc.names.input, &sc.events[..head], 3);
    p.flush(TIMEOUT).unwrap();
    let hurry = Arc::new(AtomicBool::new(false));
    let stream = paced_producer(
        bs.clone(),
        sc.names.input.clone(),
        sc.events[head..].to_vec(),
        200,
        hurry.clone(),
    );
    let started = Instant::now();
    let mut a = Instance::start(dir.path(), &sc, &bs, "b0");
    progress.wait_commit_above(0, WAIT, &format!("{MODE}: first commit"), || a.alive(MODE));
    std::thread::sleep(Duration::from_millis(1500));

    let mut outages = Vec::new();
    // Down ~4 s (restart), ~3 s + start-up (crash), and longer than the session timeout
    // (6 s) and the transaction timeout (10 s): librdkafka then reports fatal errors (a
    // fenced static member, a fenced transactional producer) that the processor must
    // recover from on its own.
    for (kind, down_for) in [
        ("graceful restart (SIGTERM)", None),
        ("crash (SIGKILL), down 3 s", Some(3)),
        ("crash (SIGKILL), down 12 s", Some(12)),
    ] {
        let crash = down_for.is_some();
        let what = format!("{MODE}: {kind}");
        let before = progress.committed().unwrap_or(0);
        let down = Instant::now();
        if crash {
            broker.kill();
            std::thread::sleep(Duration::from_secs(down_for.unwrap_or(0)));
            a.alive(&what);
        }
        broker.restart();
        let outage = down.elapsed();
        a.alive(&what);
        let back = Instant::now();
        let after =
            progress.wait_commit_above(before, Duration::from_secs(90), &what, || a.alive(&what));
        // One more commit, past what may have been in flight when the broker went down.
        progress.wait_commit_above(after, Duration::from_secs(90), &what, || a.alive(&what));
        let recovery = back.elapsed();
        eprintln!(
            "[faults] {what}: broker down {:.1} s; the processor committed again {:.1} s after the broker was back",
            outage.as_secs_f64(),
            recovery.as_secs_f64()
        );
        outages.push((kind, outage, recovery));
        std::thread::sleep(Duration::from_millis(1500));
    }

    hurry.store(true, Ordering::Relaxed);
    stream.join().unwrap();
    produce_sentinels(&bs, &sc);
    let (checked, aborted) = check_outputs(&bs, &sc, &progress, MODE, || a.alive(MODE));
    signal(&a.child, "-TERM");
    assert_graceful_exit(&mut a.child, &a.log, MODE);
    let restarts = std::fs::read_to_string(&a.log)
        .map(|l| strip_ansi(&l).matches("processor started").count())
        .unwrap_or(0);
    assert_eq!(
        restarts, 1,
        "{MODE}: slawatch must not restart its processor"
    );
    let recreated = std::fs::read_to_string(&a.log)
        .map(|l| strip_ansi(&l).matches("recreating the clients").count())
        .unwrap_or(0);
    eprintln!(
        "[faults] {MODE}: {} broker faults, one slawatch process throughout ({recreated} times it recreated its Kafka clients after a fatal error); {} input records, {checked} SLA events checked against replay: 0 missing, 0 duplicates ({aborted} records of aborted transactions); {:.1} s in all",
        outages.len(),
        sc.all_len,
        started.elapsed().as_secs_f64()
    );
}
