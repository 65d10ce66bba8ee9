//! The engine bench's body, shared by `engine` (glibc's malloc) and `engine_mimalloc`
//! (the product's allocator); see benches/engine.rs.
use slawatch::codec;
use slawatch::core::engine::{Emitted, Engine, EngineConfig};
use slawatch::core::model::*;
use slawatch::core::policy::parse::load_policy_file;
use slawatch::core::snapshot::Restorer;
use slawatch::core::time::{Dur, Ts};
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

/// An allocator counting allocations (and reallocations, which may move) on their way to
/// `A`: the system's (glibc's malloc) in `engine`, mimalloc in `engine_mimalloc`.
pub struct Counting<A>(pub A);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
// SAFETY: every call is passed on unchanged to `A`, itself a `GlobalAlloc`; the counter is
// an atomic and allocates nothing.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { self.0.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { self.0.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { self.0.realloc(p, l, n) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.0.dealloc(p, l) }
    }
}
/// Bytes a `Vec`'s capacity holds.
fn bytes_of<T>(v: &Vec<T>) -> usize {
    v.capacity() * std::mem::size_of::<T>()
}
fn allocs() -> u64 {
    ALLOCS.load(Relaxed)
}

/// A small deterministic PRNG (xorshift), so runs are comparable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Ticket lifecycle events, spread over hours so that all tickets are open at once in the
/// first phase: opened, auto reply, first reply, customer/agent exchanges, resolved, closed.
fn ticket_events(i: u64, rng: &mut Rng, open_span_secs: i64, base: i64) -> Vec<Event> {
    let id: compact_str::CompactString = format!("T{i:08}").into();
    let tenant: compact_str::CompactString = format!("tenant{}", i % 50).into();
    let channel = Channel::ALL[rng.below(5) as usize];
    let category = Category::ALL[rng.below(5) as usize];
    let urgency = [
        Urgency::General,
        Urgency::General,
        Urgency::General,
        Urgency::Important,
        Urgency::Urgent,
    ][rng.below(5) as usize];
    let tier = if rng.below(20) == 0 {
        Tier::Vip
    } else {
        Tier::Standard
    };
    let mut t = base + (rng.below(open_span_secs as u64) as i64);
    let mut evs = Vec::with_capacity(10);
    let mut n = 0;
    let mut push = |t: i64, body: Body| {
        n += 1;
        evs.push(Event {
            event_id: format!("{id}-{n}").into(),
            ticket_id: id.clone(),
            occurred_at: Ts::from_secs(t),
            tenant: tenant.clone(),
            body,
        });
    };
    push(
        t,
        Body::Opened {
            channel,
            category,
            urgency,
            tier,
            team: "".into(),
        },
    );
    push(t + 1, Body::AutoReply);
    // First reply: mostly quick, with a tail that breaches.
    let first = if rng.below(10) == 0 {
        300 + rng.below(900)
    } else {
        5 + rng.below(50)
    };
    let reply = |k: u64| Body::AgentMessage {
        kind: match k {
            0 => ReplyKind::Eta,
            1 => ReplyKind::Progress,
            2 => ReplyKind::Solution,
            _ => ReplyKind::Answer,
        },
        audience: Audience::Customer,
    };
    t += open_span_secs + first as i64; // after every ticket is open
    push(t, reply(3));
    for _ in 0..3 {
        t += 30 + rng.below(120) as i64;
        push(t, Body::CustomerMessage);
        t += 10 + rng.below(90) as i64;
        push(t, reply(rng.below(4)));
    }
    // Resolution after every ticket has had its ninth event, so there is an instant at which
    // all tickets are open with nine events applied (the memory measurement point).
    push(
        base + 2 * open_span_secs + 1500 + rng.below(900) as i64,
        Body::Resolved,
    );
    evs
}

/// The whole bench; `allocator` names the allocator in its output, `held` gives the bytes
/// it holds for a block of a size (for the breakdown), `heap_report` describes its pages
/// (`SLAWATCH_BENCH_HEAP=1`: printed at the start and at the memory point, with the
/// largest mappings of `/proc/self/smaps`; the run stops there).
pub fn run(allocator: &str, held: &dyn Fn(usize) -> usize, heap_report: &dyn Fn() -> String) {
    let full = std::env::args().any(|a| a == "--bench");
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let short = env("SLAWATCH_BENCH_EVENTS");
    let tickets: u64 = short.map(|e| e.div_ceil(10).max(1)).unwrap_or_else(|| {
        env("SLAWATCH_BENCH_TICKETS").unwrap_or(if full { 1_000_000 } else { 20_000 })
    });
    let policy = Arc::new(
        load_policy_file(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/policies/default.toml"
        )))
        .expect("default policy"),
    );
    let base = 1_709_546_400; // 2024-03-04T10:00:00Z
    let open_span = 600;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Pre-encode as protobuf (decode is part of the measured work), in time order.
    let mut all: Vec<(Ts, Vec<u8>)> = Vec::with_capacity(tickets as usize * 10);
    for i in 0..tickets {
        for e in ticket_events(i, &mut rng, open_span, base) {
            all.push((e.occurred_at, codec::event_to_protobuf(&e)));
        }
    }
    all.sort_by_key(|(t, _)| *t);
    let events = all.len();
    let first_phase_end = Ts::from_secs(base + 2 * open_span + 1499);
    let split = all.partition_point(|(t, _)| *t <= first_phase_end);
    if env("SLAWATCH_BENCH_SETUP_ONLY") == Some(1) {
        println!("set-up only: {events} events");
        return;
    }

    println!("allocator: {allocator}");
    if env("SLAWATCH_BENCH_HEAP") == Some(1) {
        println!("heap before: {}", heap_report());
        smaps_report();
    }
    let rss_before = rss_bytes();
    let mut engine = Engine::new(
        policy,
        EngineConfig {
            surge: true,
            ..EngineConfig::default()
        },
    );
    let mut out = Emitted::default();
    let mut outputs = 0usize;
    // Allocations of `opened` events and of all others (counted around each event: two
    // relaxed loads, noise next to an event's cost).
    let (mut opened, mut opened_allocs, mut other_allocs) = (0u64, 0u64, 0u64);
    // An event applies one pump after it is ingested, so the split above charges some of
    // an `opened`'s allocations to the event after it. Past the memory point every ticket
    // is open and no `opened` is left: allocations there are those of other events alone.
    let mut late_allocs = 0u64;
    // The same by what a step (ingest + pump) applied: steps in which a ticket opened
    // (the open-ticket count rose) and steps that opened none.
    let (mut opening_steps_allocs, mut tickets_opened, mut plain_steps, mut plain_allocs) =
        (0u64, 0u64, 0u64, 0u64);
    let started = Instant::now();
    for (i, (_, bytes)) in all.iter().enumerate() {
        let a0 = allocs();
        let open0 = engine.open_tickets() as u64;
        let d = codec::decode_protobuf(bytes).expect("decodes");
        let is_open = matches!(d.event.body, Body::Opened { .. });
        engine.ingest(d.event, &mut out);
        engine.pump(&mut out);
        if out.outputs.len() > 4096 {
            outputs += out.outputs.len();
            out.clear();
        }
        let n = allocs() - a0;
        if is_open {
            opened += 1;
            opened_allocs += n;
        } else {
            other_allocs += n;
        }
        let opened_now = (engine.open_tickets() as u64).saturating_sub(open0);
        if opened_now > 0 {
            tickets_opened += opened_now;
            opening_steps_allocs += n;
        } else {
            plain_steps += 1;
            plain_allocs += n;
        }
        if i >= split {
            late_allocs += n;
        }
        if i + 1 == split && short.is_none() {
            let open = engine.open_tickets();
            let with_buffers = rss_bytes().saturating_sub(rss_before);
            // The bench's own output buffers keep the capacity of the largest pump so far
            // (65 536 outputs, 12 MiB at 1 M tickets: the timers due while the clock jumps
            // past the opening span fire in one pump). They are not ticket state: released
            // for the reading (the resident figure without them), then reserved again so
            // that the rest of the run allocates as it did.
            outputs += out.outputs.len();
            out.clear();
            let caps = (
                out.outputs.capacity(),
                out.dead_letters.capacity(),
                out.observations.capacity(),
                out.notices.capacity(),
            );
            let buffers = bytes_of(&out.outputs)
                + bytes_of(&out.dead_letters)
                + bytes_of(&out.observations)
                + bytes_of(&out.notices);
            out = Emitted::default();
            let rss = rss_bytes().saturating_sub(rss_before);
            println!(
                "memory: {open} open tickets, {:.1} events each, {} running clocks: RSS +{:.1} MiB = {:.0} bytes per open ticket (timers armed, dedup state)",
                split as f64 / open.max(1) as f64,
                engine.running_clocks(),
                rss as f64 / (1 << 20) as f64,
                rss as f64 / open.max(1) as f64
            );
            println!(
                "memory: with the bench's output buffers ({} outputs, {:.1} MiB of capacity; released for the figure above): RSS +{:.1} MiB = {:.0} bytes per open ticket",
                caps.0,
                buffers as f64 / (1 << 20) as f64,
                with_buffers as f64 / (1 << 20) as f64,
                with_buffers as f64 / open.max(1) as f64
            );
            println!("memory: {}", engine.memory_breakdown(held));
            if env("SLAWATCH_BENCH_HEAP") == Some(1) {
                println!("heap: {}", heap_report());
                smaps_report();
                std::process::exit(0);
            }
            out.outputs.reserve_exact(caps.0);
            out.dead_letters.reserve_exact(caps.1);
            out.observations.reserve_exact(caps.2);
            out.notices.reserve_exact(caps.3);
        }
    }
    engine.finish(
        Some(all.last().unwrap().0.saturating_add(Dur::from_secs(86_400))),
        &mut out,
    );
    outputs += out.outputs.len();
    let elapsed = started.elapsed();
    println!(
        "{events} events for {tickets} tickets in {:.2} s: {:.2} M events/s on one core (decode + engine), {outputs} SLA events",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64() / 1e6
    );
    println!(
        "heap allocations per event: {:.2} (opened: {:.2}, other events: {:.3})",
        (opened_allocs + other_allocs) as f64 / events as f64,
        opened_allocs as f64 / opened.max(1) as f64,
        other_allocs as f64 / (events as u64 - opened).max(1) as f64
    );
    println!(
        "heap allocations by what a step applied: {:.2} per ticket opened, {:.4} per event in steps that opened none ({plain_allocs} in {plain_steps})",
        opening_steps_allocs as f64 / tickets_opened.max(1) as f64,
        plain_allocs as f64 / plain_steps.max(1) as f64
    );
    println!(
        "heap allocations per event once every ticket is open (no opened left, timers firing): {:.4} ({late_allocs} in {} events)",
        late_allocs as f64 / (events - split).max(1) as f64,
        events - split
    );
    println!("stats: {:?}", engine.stats());
    drop(engine);
    if short.is_none() {
        restore_phase(&all[..split]);
    }
}

/// Restore speed of the changelog path: an engine that tracked changes over the first phase
/// (every ticket open, nine events each) hands out one record per ticket; a fresh engine is
/// rebuilt from those records with `Engine::restore_parts`, as a processor does when it is
/// assigned a partition (the Kafka read is measured separately in `benches/kafka.rs`).
fn restore_phase(events: &[(Ts, Vec<u8>)]) {
    let policy = Arc::new(
        load_policy_file(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/policies/default.toml"
        )))
        .expect("default policy"),
    );
    let cfg = EngineConfig {
        surge: true,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(policy.clone(), cfg.clone());
    engine.track_changes(true);
    let mut out = Emitted::default();
    for (_, bytes) in events {
        let d = codec::decode_protobuf(bytes).expect("decodes");
        engine.ingest(d.event, &mut out);
        engine.pump(&mut out);
        out.clear();
    }
    let part = engine.partition_state();
    let records: Vec<Vec<u8>> = engine
        .take_changes()
        .into_iter()
        .filter_map(|(_, v)| v)
        .collect();
    let open = engine.open_tickets();
    drop(engine);
    let bytes: usize = records.iter().map(|r| r.len()).sum();
    let mut runs = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let restored = Engine::restore_parts(
            policy.clone(),
            cfg.clone(),
            Some(&part),
            records.iter().map(|r| r.as_slice()),
        )
        .expect("restores");
        runs.push(started.elapsed());
        assert_eq!(restored.open_tickets(), open);
    }
    runs.sort();
    let mut reserved = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let mut r = Restorer::new(policy.clone(), cfg.clone());
        r.reserve(records.len());
        for rec in &records {
            r.upsert(rec).expect("restores");
        }
        let restored = r.finish(Some(&part)).expect("restores");
        reserved.push(started.elapsed());
        assert_eq!(restored.open_tickets(), open);
    }
    reserved.sort();
    println!(
        "restore with the index reserved up front: {:.3} s median of 3 ({:.2} µs per ticket)",
        reserved[1].as_secs_f64(),
        reserved[1].as_secs_f64() * 1e6 / open.max(1) as f64
    );
    println!(
        "restore: {open} tickets from {} changelog records ({:.0} bytes each) in {:.3} s median of 3 ({:.2} µs per ticket, engine only)",
        records.len(),
        bytes as f64 / records.len().max(1) as f64,
        runs[1].as_secs_f64(),
        runs[1].as_secs_f64() * 1e6 / open.max(1) as f64
    );
}

/// Mappings holding more than 1 MiB resident (`/proc/self/smaps`), with their transparent
/// huge pages.
fn smaps_report() {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let mut head = String::new();
    let mut total = 0u64;
    for line in smaps.lines() {
        if line.starts_with("Rss:") {
            let kb: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            total += kb;
            if kb > 1024 {
                println!("smaps: {kb:>9} kB rss  {head}");
            }
        } else if line.starts_with("AnonHugePages:") {
            let kb: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if kb > 1024 {
                println!("smaps: {line}");
            }
        } else if line
            .split_whitespace()
            .next()
            .is_some_and(|w| w.contains('-') && !w.ends_with(':'))
        {
            head = line.to_string();
        }
    }
    println!("smaps: total {total} kB");
}
