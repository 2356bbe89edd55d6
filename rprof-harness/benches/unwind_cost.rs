//! Cost of one stack walk (`rprof_harness::unwind::capture_current`), frame pointers against
//! DWARF CFI, on two stacks about as deep:
//!
//! - `rust`: the bottom of a recursion of `#[inline(never)]` Rust functions, every frame with a
//!   frame pointer (the workspace's `.cargo/config.toml` forces them);
//! - `qsort`: inside a comparator called by glibc's `qsort` (its merge sort, built without frame
//!   pointers) at the bottom of a shallower recursion.
//!
//! ```text
//! cargo bench -p rprof-harness --bench unwind_cost
//! cargo test -p rprof-harness --benches                  # smoke run: one short round
//! ```
//!
//! The walk follows frame pointers alone while no module table exists (`fp`), and steps by CFI
//! once `modules::start()` has built one (`cfi`). Each measurement runs in a child process of
//! its own (this binary again, with `--child fp|cfi`), so both walks start equally cold; the
//! rounds alternate `fp` and `cfi` children (the first one rotating), so drift of the machine
//! hits both alike. A child records its stack bounds (walks read the stack with plain loads, as
//! on every thread the preload has seen start), calls `modules::start()` if `cfi`, then per
//! stack: times its first walk on its own (`first`: framehop's rule cache still cold for those
//! frames, the code and data not in the CPU's caches; includes one `Instant::now()`), then
//! batches of back-to-back walks.
//!
//! Reported per (stack, walk), over rounds: the median of the children's median time per walk
//! (`ns/unwind`), that divided by the depth reached (`ns/frame`), the depth, the median first
//! walk and the rule-cache misses it took. Then what the table costs: `modules::footprint()`,
//! the heap `modules::start()` kept (a counting global allocator: table, CFI copies, the cache
//! pool with framehop's boxed scratch space), the objects in the table, the time
//! `modules::start()` took. The bench fails if a walk allocates, if the CFI walk is shallower
//! than the frame-pointer one, or if it does not get through qsort.
//!
//! Without the `--bench` argument that `cargo bench` passes the run shrinks to a smoke run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use rprof_harness::unwind::{capture_current, MAX_DEPTH};
use rprof_harness::{modules, thread};

/// Frames of Rust recursion under the `rust` stack's walk.
const RUST_DEPTH: u32 = 30;
/// Frames of Rust recursion under `qsort`: fewer, as qsort and its merge sort add their own.
const QSORT_DEPTH: u32 = 22;
/// Elements sorted: glibc's merge sort recurses about log2 of this deep.
const QSORT_LEN: usize = 64;

/// Counts live heap bytes and allocations, to see what `modules::start()` keeps and that walks
/// allocate nothing.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's pointer, layout and size, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Batch sizes of this run.
#[derive(Clone, Copy)]
struct Plan {
    batches: usize,
    calls: usize,
}

/// What one child measured on one stack.
#[derive(Clone, Copy, Debug, Default)]
struct Figures {
    /// Depth reached.
    depth: usize,
    /// The first walk alone, ns.
    first_ns: f64,
    /// Rule-cache misses of the first walk (0 for `fp`).
    first_misses: u64,
    /// Median over batches of the time per walk, ns.
    ns: f64,
    /// Allocations made by all the walks.
    allocations: usize,
}

/// Framehop's rule-cache misses so far, summed over the pool's caches: each nested
/// `with_cache` claims the next free cache, until none is left.
fn rule_cache_misses() -> u64 {
    fn sum(total: &mut u64) {
        modules::with_cache(|c| {
            *total += c.cfi.stats().misses();
            sum(total);
        });
    }
    let mut total = 0;
    sum(&mut total);
    total
}

/// Time the walk from the calling frame: one walk alone, then `plan.batches` batches.
#[inline(never)]
fn measure(plan: Plan) -> Figures {
    let mut per_call = Vec::with_capacity(plan.batches);
    let mut out = [0u64; MAX_DEPTH];
    let misses = rule_cache_misses();
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    let start = Instant::now();
    let depth = capture_current(0, &mut out);
    let first_ns = start.elapsed().as_nanos() as f64;
    let first_misses = rule_cache_misses() - misses;
    for _ in 0..plan.batches {
        let start = Instant::now();
        for _ in 0..plan.calls {
            black_box(capture_current(0, black_box(&mut out)));
        }
        per_call.push(start.elapsed().as_nanos() as f64 / plan.calls as f64);
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocations;
    Figures {
        depth,
        first_ns,
        first_misses,
        ns: median(per_call),
        allocations,
    }
}

/// Recurse `depth` non-inlined frames deep, then call `f` there.
#[inline(never)]
fn descend(depth: u32, f: &mut dyn FnMut()) {
    if depth == 0 {
        f();
    } else {
        descend(black_box(depth - 1), f);
    }
    // Work after the call: no tail call, every level keeps its frame.
    black_box(depth);
}

/// The `rust` stack's figures.
fn rust_stack(plan: Plan) -> Figures {
    let mut figures = Figures::default();
    descend(RUST_DEPTH, &mut || figures = measure(plan));
    figures
}

/// Set when the next comparator call should measure, with the plan; the figures it took.
static MEASURE_NEXT: AtomicBool = AtomicBool::new(false);
static QSORT_PLAN: Mutex<Option<Plan>> = Mutex::new(None);
static QSORT_FIGURES: Mutex<Option<Figures>> = Mutex::new(None);

extern "C" fn compare(a: *const libc::c_void, b: *const libc::c_void) -> libc::c_int {
    if MEASURE_NEXT.swap(false, Ordering::Relaxed) {
        let plan = QSORT_PLAN.lock().unwrap().expect("a plan");
        let figures = measure(plan);
        *QSORT_FIGURES.lock().unwrap() = Some(figures);
    }
    // SAFETY: qsort passes pointers to two elements of our u32 array.
    let (a, b) = unsafe { (*(a as *const u32), *(b as *const u32)) };
    a.cmp(&b) as libc::c_int
}

/// The `qsort` stack's figures: measured in the first comparator call, which glibc's merge
/// sort makes at the bottom of its recursion.
fn qsort_stack(plan: Plan) -> Figures {
    *QSORT_PLAN.lock().unwrap() = Some(plan);
    MEASURE_NEXT.store(true, Ordering::Relaxed);
    let mut values: Vec<u32> = (0..QSORT_LEN as u32)
        .map(|i| i.wrapping_mul(2_654_435_761) >> 7)
        .collect();
    descend(QSORT_DEPTH, &mut || {
        // SAFETY: a valid array of u32 with a comparator for u32.
        unsafe {
            libc::qsort(
                values.as_mut_ptr() as *mut libc::c_void,
                values.len(),
                std::mem::size_of::<u32>(),
                Some(compare),
            )
        }
    });
    assert!(
        values.windows(2).all(|w| w[0] <= w[1]),
        "qsort did not sort"
    );
    QSORT_FIGURES
        .lock()
        .unwrap()
        .take()
        .expect("the comparator measured")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The table's costs, as a `cfi` child saw them.
#[derive(Clone, Copy, Debug, Default)]
struct TableCost {
    objects: usize,
    table_bytes: usize,
    pool_bytes: usize,
    heap_bytes: isize,
    start_ms: f64,
}

/// A child: measure both stacks with one kind of walk and print one line,
/// `depth first_ns first_misses ns allocations` per stack, then the table's costs.
fn child(kind: &str, plan: Plan) -> Result<(), String> {
    thread::record_stack_bounds();
    if modules::with_table(|_| ()).is_some() {
        return Err("a module table exists before modules::start()".into());
    }
    let mut cost = TableCost::default();
    match kind {
        "fp" => {}
        "cfi" => {
            let live = LIVE_BYTES.load(Ordering::Relaxed);
            let start = Instant::now();
            modules::start();
            cost.start_ms = start.elapsed().as_secs_f64() * 1e3;
            cost.heap_bytes = LIVE_BYTES.load(Ordering::Relaxed) - live;
            cost.objects = modules::with_table(|t| t.modules()).ok_or("no table after start")?;
            (cost.table_bytes, cost.pool_bytes) = modules::footprint();
        }
        _ => return Err(format!("unknown walk {kind:?}")),
    }
    let rust = rust_stack(plan);
    let qsort = qsort_stack(plan);
    let mut line = String::new();
    for f in [rust, qsort] {
        line += &format!(
            "{} {} {} {} {} ",
            f.depth, f.first_ns, f.first_misses, f.ns, f.allocations
        );
    }
    line += &format!(
        "{} {} {} {} {}",
        cost.objects, cost.table_bytes, cost.pool_bytes, cost.heap_bytes, cost.start_ms
    );
    println!("{line}");
    Ok(())
}

/// One child's line, parsed: (rust, qsort, table).
fn parse(line: &str) -> Option<(Figures, Figures, TableCost)> {
    let w: Vec<&str> = line.split_whitespace().collect();
    if w.len() != 15 {
        return None;
    }
    let figures = |w: &[&str]| -> Option<Figures> {
        Some(Figures {
            depth: w[0].parse().ok()?,
            first_ns: w[1].parse().ok()?,
            first_misses: w[2].parse().ok()?,
            ns: w[3].parse().ok()?,
            allocations: w[4].parse().ok()?,
        })
    };
    let cost = TableCost {
        objects: w[10].parse().ok()?,
        table_bytes: w[11].parse().ok()?,
        pool_bytes: w[12].parse().ok()?,
        heap_bytes: w[13].parse().ok()?,
        start_ms: w[14].parse().ok()?,
    };
    Some((figures(&w[0..5])?, figures(&w[5..10])?, cost))
}

fn run_child(kind: &str, full: bool) -> Result<(Figures, Figures, TableCost), String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.args(["--child", kind]);
    if full {
        cmd.arg("--bench");
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot start the {kind} child: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "the {kind} child failed ({}):\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    parse(stdout.trim()).ok_or_else(|| format!("the {kind} child printed {stdout:?}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`) this is a smoke run.
    let full = args.iter().any(|a| a == "--bench");
    let plan = if full {
        Plan {
            batches: 41,
            calls: 2000,
        }
    } else {
        Plan {
            batches: 3,
            calls: 100,
        }
    };
    let result = match args.iter().position(|a| a == "--child") {
        Some(i) => child(args.get(i + 1).map_or("", String::as_str), plan),
        None => parent(full, plan),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unwind_cost: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parent(full: bool, plan: Plan) -> Result<(), String> {
    let rounds = if full { 9 } else { 1 };
    const KINDS: [&str; 2] = ["fp", "cfi"];
    // results[kind] = per round (rust, qsort)
    let mut results: [Vec<(Figures, Figures)>; 2] = [Vec::new(), Vec::new()];
    let mut costs = Vec::new();
    for round in 0..rounds {
        for k in 0..KINDS.len() {
            let ki = (k + round) % KINDS.len();
            let (rust, qsort, cost) = run_child(KINDS[ki], full)?;
            results[ki].push((rust, qsort));
            if KINDS[ki] == "cfi" {
                costs.push(cost);
            }
        }
    }

    println!(
        "unwind cost of capture_current: {rounds} rounds of one child per walk, each {} batches \
         of {} walks; medians over rounds",
        plan.batches, plan.calls
    );
    println!(
        "{:<18} {:<4} {:>6} {:>10} {:>9} {:>11} {:>10} {:>10} {:>13}",
        "stack",
        "walk",
        "depth",
        "ns/unwind",
        "ns/frame",
        "range",
        "first ns",
        "first miss",
        "cfi/fp unwind"
    );
    let med = |v: Vec<f64>| median(v);
    let mut table = Vec::new();
    for (si, stack) in ["rust (30 fn deep)", "qsort comparator"].iter().enumerate() {
        for (ki, kind) in KINDS.iter().enumerate() {
            let runs: Vec<Figures> = results[ki]
                .iter()
                .map(|&(r, q)| if si == 0 { r } else { q })
                .collect();
            let ns: Vec<f64> = runs.iter().map(|f| f.ns).collect();
            let lo = ns.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = ns.iter().copied().fold(0.0, f64::max);
            let depth = runs[0].depth;
            if let Some(f) = runs.iter().find(|f| f.depth != depth) {
                return Err(format!("{stack} {kind}: depth {} then {}", depth, f.depth));
            }
            if let Some(f) = runs.iter().find(|f| f.allocations != 0) {
                return Err(format!("{stack} {kind}: walks allocated {f:?}"));
            }
            let ns = med(ns);
            table.push((si, ki, ns, depth));
            let ratio = if ki == 1 {
                let fp = table
                    .iter()
                    .find(|t| t.0 == si && t.1 == 0)
                    .map_or(0.0, |t| t.2);
                format!("{:.2}x", ns / fp)
            } else {
                String::new()
            };
            println!(
                "{stack:<18} {kind:<4} {depth:>6} {ns:>10.1} {:>9.2} {:>11} {:>10.0} {:>10.0} {ratio:>13}",
                ns / depth.max(1) as f64,
                format!("{lo:.0}-{hi:.0}"),
                med(runs.iter().map(|f| f.first_ns).collect()),
                med(runs.iter().map(|f| f.first_misses as f64).collect()),
            );
        }
    }
    let c = |f: fn(&TableCost) -> f64| med(costs.iter().map(f).collect());
    println!(
        "module table: {} objects with CFI; footprint(): table {:.0} bytes ({:.1} KiB), cache \
         pool {:.0} bytes ({:.1} KiB); heap kept by modules::start(): {:.0} bytes ({:.1} KiB); \
         modules::start() took {:.2} ms",
        c(|t| t.objects as f64),
        c(|t| t.table_bytes as f64),
        c(|t| t.table_bytes as f64) / 1024.0,
        c(|t| t.pool_bytes as f64),
        c(|t| t.pool_bytes as f64) / 1024.0,
        c(|t| t.heap_bytes as f64),
        c(|t| t.heap_bytes as f64) / 1024.0,
        c(|t| t.start_ms),
    );
    let depth = |si: usize, ki: usize| {
        table
            .iter()
            .find(|t| t.0 == si && t.1 == ki)
            .map_or(0, |t| t.3)
    };
    // The CFI walk must reach at least as far as frame pointers do, and through qsort.
    if depth(0, 1) < depth(0, 0) || depth(0, 1) < RUST_DEPTH as usize {
        return Err(format!(
            "rust stack: cfi depth {} < fp depth {} or < {RUST_DEPTH}",
            depth(0, 1),
            depth(0, 0)
        ));
    }
    if depth(1, 1) <= QSORT_DEPTH as usize {
        return Err(format!(
            "qsort stack: cfi depth {} does not get through qsort",
            depth(1, 1)
        ));
    }
    Ok(())
}
