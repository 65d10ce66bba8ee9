//! The engine bench (benches/engine.rs) under mimalloc, the allocator `slawatch` installs
//! (src/main.rs), with the binary's setting that freed pages go back at once.
//!
//! Bytes per open ticket depend on the allocator: glibc's malloc puts an 8-byte header
//! before each block and rounds to 16 bytes; mimalloc has no header but size classes four
//! to a doubling (a 136-byte block takes 160). `cargo bench --bench engine_mimalloc`; the
//! same environment variables as `engine`.
#[path = "engine/run.rs"]
mod run;

#[global_allocator]
static GLOBAL: run::Counting<mimalloc::MiMalloc> = run::Counting(mimalloc::MiMalloc);

/// mimalloc's `mi_option_purge_delay`, as src/main.rs names it.
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

unsafe extern "C" {
    fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// The bytes mimalloc holds for a small block of `req` bytes: 16-byte steps up to 128,
/// then four size classes to a doubling (160, 192, 224, 256, 320, …), no header. Measured
/// here by the resident growth of a million touched blocks of each size.
fn mimalloc_block(req: usize) -> usize {
    if req <= 128 {
        return req.div_ceil(16).max(1) * 16;
    }
    let step = (req - 1).ilog2() - 2; // a quarter of the power of two below
    req.div_ceil(1 << step) << step
}

fn main() {
    // As src/main.rs does: freed pages go back at once unless the environment decides.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: plain reads and writes of a mimalloc option (an integer in its option
        // table); no memory is handed over.
        unsafe {
            if matches!(mi_option_get(MI_OPTION_PURGE_DELAY), 10 | 1000) {
                mi_option_set(MI_OPTION_PURGE_DELAY, 0);
            }
        }
    }
    run::run("mimalloc", &mimalloc_block);
}
