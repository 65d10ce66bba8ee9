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

/// mimalloc's `mi_block_visit_fun` (called once per page with a null block when blocks are
/// not visited).
type VisitArea = extern "C" fn(
    *const std::ffi::c_void,
    *const HeapArea,
    *mut std::ffi::c_void,
    usize,
    *mut std::ffi::c_void,
) -> bool;

unsafe extern "C" {
    fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    fn mi_heap_visit_blocks(
        heap: *mut std::ffi::c_void,
        visit_blocks: bool,
        visitor: VisitArea,
        arg: *mut std::ffi::c_void,
    ) -> bool;
}

/// mimalloc's `mi_heap_area_t`: one page's blocks, all of one size.
#[repr(C)]
struct HeapArea {
    blocks: *mut std::ffi::c_void,
    /// Bytes of the blocks the page can hold.
    reserved: usize,
    /// Bytes of the blocks the page has made available (touched).
    committed: usize,
    /// Blocks in use.
    used: usize,
    block_size: usize,
    full_block_size: usize,
    reserved1: *mut std::ffi::c_void,
}

/// By block size: pages, reserved, committed and used bytes.
type Areas = std::collections::BTreeMap<usize, [i64; 4]>;

/// What the walk adds up, in a fixed array: the visitor allocates nothing while mimalloc
/// walks its pages (rows past the last are dropped; mimalloc has ~75 size classes).
struct Tally {
    len: usize,
    rows: [(usize, [i64; 4]); 128],
}

extern "C" fn visit_area(
    _heap: *const std::ffi::c_void,
    area: *const HeapArea,
    _block: *mut std::ffi::c_void,
    _size: usize,
    arg: *mut std::ffi::c_void,
) -> bool {
    // SAFETY: mimalloc passes one of its areas, and `arg` is the `Tally` `heap_report`
    // lent it for the walk.
    let (a, t) = unsafe { (&*area, &mut *arg.cast::<Tally>()) };
    let i = match t.rows[..t.len]
        .iter()
        .position(|r| r.0 == a.full_block_size)
    {
        Some(i) => i,
        None if t.len < t.rows.len() => {
            t.rows[t.len].0 = a.full_block_size;
            t.len += 1;
            t.len - 1
        }
        None => return true,
    };
    let e = &mut t.rows[i].1;
    e[0] += 1;
    e[1] += a.reserved as i64;
    e[2] += a.committed as i64;
    e[3] += (a.used * a.full_block_size) as i64;
    true
}

/// The pages of the first call (the bench's start).
static START: std::sync::Mutex<Option<Areas>> = std::sync::Mutex::new(None);

/// mimalloc's pages by block size, their growth since the first call (sizes that grew by
/// more than 256 KiB): where the resident bytes went, size class by size class.
fn heap_report() -> String {
    let mut t = Tally {
        len: 0,
        rows: [(0, [0; 4]); 128],
    };
    // SAFETY: a walk of the main heap's pages (null: the main heap) on the bench's only
    // thread, which allocates nothing meanwhile (`visit_area` only adds into `t`).
    unsafe {
        mi_heap_visit_blocks(
            std::ptr::null_mut(),
            false,
            visit_area,
            (&mut t as *mut Tally).cast(),
        );
    }
    let now: Areas = t.rows[..t.len].iter().copied().collect();
    let mut start = START.lock().unwrap_or_else(|e| e.into_inner());
    let start = start.get_or_insert_with(|| now.clone());
    let mib = |b: i64| b as f64 / (1 << 20) as f64;
    let mut s = String::new();
    let mut all = [0i64; 4];
    for (size, v) in &now {
        let v0 = start.get(size).copied().unwrap_or_default();
        let d: Vec<i64> = (0..4).map(|k| v[k] - v0[k]).collect();
        for k in 0..4 {
            all[k] += d[k];
        }
        if d[2] > 1 << 18 {
            s += &format!(
                "\n  blocks of {size} B: +{} pages, reserved +{:.1} MiB, committed +{:.1} MiB, used +{:.1} MiB",
                d[0],
                mib(d[1]),
                mib(d[2]),
                mib(d[3])
            );
        }
    }
    s + &format!(
        "\n  all: reserved +{:.1} MiB, committed +{:.1} MiB, used +{:.1} MiB",
        mib(all[1]),
        mib(all[2]),
        mib(all[3])
    )
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
    run::run("mimalloc", &mimalloc_block, &heap_report);
}
