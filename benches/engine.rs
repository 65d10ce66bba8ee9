//! Engine benchmark: ≥ 1 M concurrently open tickets, ~10 events each, every default
//! policy; prints events/s on one core (protobuf decode included) and resident bytes per
//! open ticket with its timers armed and its dedup state.
//!
//! `cargo bench --bench engine` runs the full size; `cargo test` runs it at a smoke size.
//! Size override: `SLAWATCH_BENCH_TICKETS=200000 cargo bench --bench engine`.
//!
//! A counting global allocator reports heap allocations per event (split into `opened`,
//! which must allocate the ticket, and every other event, which should not). An event
//! applies one pump after it is ingested, so that split charges some of an `opened`'s
//! allocations to the next event; two more figures do not: by what a step applied (a
//! ticket opened or not), and once every ticket is open.
//! `SLAWATCH_BENCH_EVENTS=100000` runs about that many events and skips the memory and
//! restore phases (the size scripts/cachegrind-engine.sh runs under cachegrind);
//! `SLAWATCH_BENCH_SETUP_ONLY=1` stops after building the input, so the script can
//! subtract the set-up's instructions.
//!
//! This binary measures under the system allocator (glibc's malloc); `engine_mimalloc` runs
//! the same bench under mimalloc, the allocator `slawatch` installs (src/main.rs), whose
//! size classes and lack of a per-block header give other bytes per open ticket.
#[path = "engine/run.rs"]
mod run;

#[global_allocator]
static GLOBAL: run::Counting<std::alloc::System> = run::Counting(std::alloc::System);

fn main() {
    // glibc's malloc: an 8-byte header before each block, 16-byte steps, 32 bytes at least.
    run::run(
        "glibc malloc",
        &|req| (req + 8).div_ceil(16).max(2) * 16,
        &String::new,
    );
}
