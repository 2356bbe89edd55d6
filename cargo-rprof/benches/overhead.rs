//! Overhead of the CPU profiler: two workloads run with and without the preload library, side by
//! side in one run, at 100 Hz and 1000 Hz.
//!
//! ```text
//! cargo bench -p cargo-rprof --bench overhead
//! RPROF_BENCH_ROUNDS=2 cargo bench -p cargo-rprof --bench overhead     # quick smoke run
//! RPROF_BENCH_WORKLOADS=alloc cargo bench -p cargo-rprof --bench overhead
//! ```
//!
//! The workloads are small Rust programs compiled once with `rustc` as `cargo rprof` compiles
//! test binaries (frame pointers, line tables):
//! - `hash`: CPU-bound hashing under a ~20-deep stack of non-inlined calls: every sampled frame
//!   has a frame pointer;
//! - `alloc`: allocation-heavy under the same stack: `Vec::with_capacity(24..=224)` and drops
//!   (glibc's malloc and free), with some `copy_from_slice` (glibc's memcpy) and `Instant::now()`
//!   (the vDSO's clock): most samples land in code built without frame pointers, which the
//!   unwinder crosses by its DWARF CFI. The preload interposes glibc's malloc family whether or
//!   not the memory profiler runs, so its ratios include that wrapper's cost on every `malloc`
//!   and `free`, not only the CPU profiler's.
//!
//! Runs are interleaved round-robin (plain, 100 Hz, 1000 Hz, plain, ...; the starting
//! configuration rotates every round; every workload and thread count takes its turn in every
//! round), so drift of the machine hits every configuration alike. Each run's wall time, the
//! child's CPU time (user + sys, from `wait4`) and the time the workload itself measures around
//! its work loop are recorded; every profiled run must leave a non-empty, decodable profile, or
//! the bench fails. For `alloc` the profile is also symbolized and the share of its CPU time
//! whose stack reaches a thread's entry (its root frame is `_start`, `start_thread`, `clone3`,
//! ...: the unwinder got from the sampled frame, often inside glibc, all the way up) is printed
//! (column `entry`); on x86_64, where the unwinder has CFI, a run below [`MIN_ENTRY_SHARE`]
//! fails the bench.
//!
//! Settings (environment):
//! - `RPROF_BENCH_ROUNDS` (default 10): runs per configuration;
//! - `RPROF_BENCH_SECONDS` (default 1.0): target CPU seconds of one run, per thread;
//! - `RPROF_BENCH_THREADS` (default `1,2`): workload variants, by number of threads;
//! - `RPROF_BENCH_WORKLOADS` (default `hash,alloc`): which workloads.
//!
//! Without the `--bench` argument that `cargo bench` passes (`cargo test --benches`, or the binary
//! run by hand) the defaults shrink to one round of 0.1 s: a smoke run that still checks every
//! profiled run wrote a profile. Other arguments are ignored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use rprof_core::symbolize::Symbolizer;
use rprof_core::Profile;

mod support;
use support::{build_workload, env_or, median, min, ratio_line, spawn_and_reap, timeval, Reaped};

/// The library `cargo rprof --cpuprofile` runs under: without the malloc interposer, which only
/// memory profiles need.
const PRELOAD_SO: &str = env!("RPROF_PRELOAD_LIGHT_SO");

/// The least share of an `alloc` profile's CPU time whose stack must reach a thread's entry.
const MIN_ENTRY_SHARE: f64 = 0.95;

/// Root functions of complete stacks: a thread's (glibc's `clone3`/`clone` and `start_thread`)
/// and the main thread's (the executable's `_start`, glibc's `__libc_start_main`).
const ENTRY_FUNCTIONS: [&str; 8] = [
    "_start",
    "__libc_start_main",
    "__libc_start_call_main",
    "start_thread",
    "clone3",
    "__clone3",
    "clone",
    "__clone",
];

/// The `hash` workload: deterministic hashing under a ~20-deep stack of non-inlined calls.
/// Arguments: `<threads> <units>`; prints `<checksum> <work-loop nanoseconds>`.
const HASH_WORKLOAD: &str = r#"
use std::hint::black_box;
use std::time::Instant;

#[inline(never)]
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[inline(never)]
fn hash_block(seed: u64, n: u32) -> u64 {
    let mut h = seed;
    for i in 0..n {
        h = mix(h ^ i as u64);
    }
    h
}

#[inline(never)]
fn churn(seed: u64, n: u32) -> u64 {
    let mut x = seed | 1;
    let mut acc = 0u64;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        acc = acc.rotate_left(5) ^ x.wrapping_mul(0x2545_f491_4f6c_dd1d);
    }
    acc
}

#[inline(never)]
fn leaf(seed: u64, n: u32) -> u64 {
    if seed % 4 == 0 {
        churn(seed, 2 * n)
    } else {
        hash_block(seed, n)
    }
}

#[inline(never)]
fn descend(depth: u32, seed: u64, n: u32) -> u64 {
    if depth == 0 {
        return leaf(seed, n);
    }
    let r = descend(depth - 1, mix(seed), n);
    black_box(r) ^ depth as u64
}

#[inline(never)]
fn work(units: u64, seed: u64) -> u64 {
    let mut acc = seed;
    for u in 0..units {
        acc = acc.wrapping_add(descend(black_box(20), acc ^ u, 400));
    }
    acc
}

"#;

/// The `alloc` workload: malloc/free-dominated, under the same ~20-deep stack. Each leaf call
/// replaces blocks of 24..=224 bytes in a small ring (so frees are not in allocation order),
/// copies into a scratch buffer every 4th step (`copy_from_slice`: glibc's memcpy) and reads the
/// clock every 16th (`Instant::now()`: the vDSO). Arguments: `<threads> <units>`; prints
/// `<checksum> <work-loop nanoseconds>`.
const ALLOC_WORKLOAD: &str = r#"
use std::hint::black_box;
use std::time::Instant;

#[inline(never)]
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[inline(never)]
fn leaf(seed: u64, n: u32, ring: &mut [Vec<u8>; 8], scratch: &mut [u8; 256]) -> u64 {
    let source = black_box([0xa5u8; 256]);
    let mut x = seed | 1;
    let mut acc = 0u64;
    for i in 0..n as usize {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = 24 + (x % 201) as usize;
        // The old block is freed, a new one allocated.
        ring[i % 8] = black_box(Vec::with_capacity(len));
        if i % 4 == 0 {
            scratch[..len].copy_from_slice(&source[..len]);
            acc = acc.wrapping_add(black_box(&scratch[..])[len - 1] as u64);
        }
        if i % 16 == 0 {
            acc ^= black_box(Instant::now()).elapsed().subsec_nanos() as u64 & 1;
        }
        acc = acc.wrapping_add(ring[i % 8].capacity() as u64);
    }
    acc
}

#[inline(never)]
fn descend(depth: u32, seed: u64, n: u32, ring: &mut [Vec<u8>; 8], scratch: &mut [u8; 256]) -> u64 {
    if depth == 0 {
        return leaf(seed, n, ring, scratch);
    }
    let r = descend(depth - 1, mix(seed), n, ring, scratch);
    black_box(r) ^ depth as u64
}

#[inline(never)]
fn work(units: u64, seed: u64) -> u64 {
    let mut ring: [Vec<u8>; 8] = Default::default();
    let mut scratch = [0u8; 256];
    let mut acc = seed;
    for u in 0..units {
        acc = acc.wrapping_add(descend(black_box(20), acc ^ u, 64, &mut ring, &mut scratch));
    }
    acc
}

"#;

/// The `main` both workloads share: `work(units, seed)` on `<threads>` threads, timed.
const WORKLOAD_MAIN: &str = r#"
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: u64 = args[1].parse().unwrap();
    let units: u64 = args[2].parse().unwrap();
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| std::thread::spawn(move || work(units, t)))
        .collect();
    let sum = handles
        .into_iter()
        .fold(0u64, |a, h| a.wrapping_add(h.join().unwrap()));
    let elapsed = start.elapsed().as_nanos();
    println!("{sum} {elapsed}");
}
"#;

/// A workload program.
#[derive(Clone, Copy, PartialEq)]
enum Workload {
    Hash,
    Alloc,
}

impl Workload {
    fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "hash" => Ok(Workload::Hash),
            "alloc" => Ok(Workload::Alloc),
            other => Err(format!(
                "RPROF_BENCH_WORKLOADS: unknown workload {other:?} (hash, alloc)"
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Workload::Hash => "hash",
            Workload::Alloc => "alloc",
        }
    }

    fn source(self) -> String {
        let body = match self {
            Workload::Hash => HASH_WORKLOAD,
            Workload::Alloc => ALLOC_WORKLOAD,
        };
        format!("{body}{WORKLOAD_MAIN}")
    }

    /// Whether its profiles are checked for stacks reaching a thread's entry.
    fn checks_stacks(self) -> bool {
        self == Workload::Alloc
    }

    /// The CPU-time ratio (profiled / plain) it should stay under, per rate.
    fn target(self, hz: u32) -> Option<f64> {
        match (self, hz) {
            (Workload::Alloc, 100) => Some(1.01),
            (Workload::Alloc, 1000) => Some(1.03),
            _ => None,
        }
    }
}

/// One way of running the workload.
#[derive(Clone, Copy, PartialEq)]
enum Config {
    Plain,
    Profiled(u32),
}

impl Config {
    fn label(self) -> String {
        match self {
            Config::Plain => "plain".to_owned(),
            Config::Profiled(hz) => format!("{hz} Hz"),
        }
    }
}

const CONFIGS: [Config; 3] = [Config::Plain, Config::Profiled(100), Config::Profiled(1000)];

/// What one run measured.
#[derive(Clone, Copy, Default)]
struct Run {
    wall: Duration,
    cpu: Duration,
    /// The workload's own measurement of its work loop (no process start-up or exit).
    work: Duration,
    /// From the profile: sample count and CPU time (profiled runs only).
    samples: i64,
    profiled_cpu: Duration,
    /// Share of the profile's CPU time whose stack reaches a thread's entry (checked runs only).
    entry_share: Option<f64>,
}

/// A built and calibrated workload.
struct Built {
    workload: Workload,
    exe: PathBuf,
    units: u64,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("overhead bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`, or run by hand) this
    // is a smoke run, as with criterion. Other arguments are ignored.
    let full = std::env::args().any(|a| a == "--bench");
    let rounds: usize = env_or("RPROF_BENCH_ROUNDS", if full { 10 } else { 1 })?;
    let seconds: f64 = env_or("RPROF_BENCH_SECONDS", if full { 1.0 } else { 0.1 })?;
    let variants: Vec<u32> = env_or("RPROF_BENCH_THREADS", "1,2".to_owned())?
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| format!("RPROF_BENCH_THREADS: bad {s:?}"))
        })
        .collect::<Result<_, _>>()?;
    let mut workloads: Vec<Workload> = Vec::new();
    for s in env_or("RPROF_BENCH_WORKLOADS", "hash,alloc".to_owned())?.split(',') {
        let w = Workload::parse(s)?;
        if !workloads.contains(&w) {
            workloads.push(w);
        }
    }
    if rounds == 0 || variants.is_empty() || variants.contains(&0) || seconds <= 0.0 {
        return Err("need RPROF_BENCH_ROUNDS >= 1, RPROF_BENCH_SECONDS > 0, threads >= 1".into());
    }
    let so = Path::new(PRELOAD_SO);
    if !so.is_file() {
        return Err(format!("preload library {} is missing", so.display()));
    }

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("rprof-overhead-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = bench(&dir, so, rounds, seconds, &variants, &workloads);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn bench(
    dir: &Path,
    so: &Path,
    rounds: usize,
    seconds: f64,
    variants: &[u32],
    workloads: &[Workload],
) -> Result<(), String> {
    let mut checker = StackCheck::new()?;
    let mut built = Vec::new();
    for &workload in workloads {
        let wdir = dir.join(workload.name());
        std::fs::create_dir_all(&wdir).map_err(|e| format!("{}: {e}", wdir.display()))?;
        let exe = build_workload(&wdir, &workload.source())?;
        let units = calibrate(&exe, seconds)?;
        println!(
            "workload {}: {units} units per thread (~{seconds} s per thread)",
            workload.name()
        );
        built.push(Built {
            workload,
            exe,
            units,
        });
    }
    println!(
        "{rounds} rounds, variants {variants:?} threads, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("preload:  {}", so.display());

    // results[workload][variant][config] = runs
    let mut results =
        vec![vec![vec![Vec::with_capacity(rounds); CONFIGS.len()]; variants.len()]; built.len()];
    let started = Instant::now();
    let mut n = 0usize;
    for round in 0..rounds {
        for (wi, b) in built.iter().enumerate() {
            for (vi, &threads) in variants.iter().enumerate() {
                for k in 0..CONFIGS.len() {
                    // Rotate the starting configuration so none always runs first after a
                    // switch.
                    let ci = (k + round) % CONFIGS.len();
                    let profile = dir.join(format!("cpu-{n}.prof"));
                    n += 1;
                    let check = b.workload.checks_stacks().then_some(&mut checker);
                    let run = run_once(&b.exe, threads, b.units, CONFIGS[ci], so, &profile, check)?;
                    results[wi][vi][ci].push(run);
                }
            }
        }
        eprint!(
            "\rround {}/{rounds} ({:.0} s)",
            round + 1,
            started.elapsed().as_secs_f64()
        );
    }
    eprintln!();

    for (wi, b) in built.iter().enumerate() {
        for (vi, &threads) in variants.iter().enumerate() {
            report(b.workload, threads, &results[wi][vi]);
        }
    }
    summary(&built, variants, &results, rounds >= 3);
    Ok(())
}

/// Units of work per thread that take about `seconds` of CPU on one thread.
fn calibrate(exe: &Path, seconds: f64) -> Result<u64, String> {
    let plain = |units| {
        let none = Path::new("");
        run_once(exe, 1, units, Config::Plain, none, none, None)
    };
    let mut units = 1000u64;
    loop {
        let t = plain(units)?.cpu.as_secs_f64();
        if t >= 0.2 {
            // One more at the estimated size, to settle clocks and caches.
            let units = ((units as f64) * seconds / t).max(1.0) as u64;
            let t = plain(units)?.cpu.as_secs_f64();
            return Ok(((units as f64) * seconds / t).max(1.0) as u64);
        }
        units *= 4;
    }
}

/// Run the workload once and reap it with `wait4` for its resource usage. With `check`, the
/// profile's stacks are checked too.
fn run_once(
    exe: &Path,
    threads: u32,
    units: u64,
    config: Config,
    so: &Path,
    profile: &Path,
    check: Option<&mut StackCheck>,
) -> Result<Run, String> {
    let mut cmd = Command::new(exe);
    cmd.arg(threads.to_string())
        .arg(units.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .env_remove("LD_PRELOAD")
        .env_remove("RPROF_CPUPROFILE")
        .env_remove("RPROF_CPUPROFILERATE");
    if let Config::Profiled(hz) = config {
        let _ = std::fs::remove_file(profile);
        cmd.env("LD_PRELOAD", so)
            .env("RPROF_CPUPROFILE", profile)
            .env("RPROF_CPUPROFILERATE", hz.to_string());
    }
    let Reaped {
        stdout,
        status,
        usage,
        wall,
    } = spawn_and_reap(&mut cmd, &exe.display().to_string())?;
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(format!(
            "workload ({}) failed: wait status {status:#x}",
            config.label()
        ));
    }
    let work_ns: u64 = stdout
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("unexpected workload output {stdout:?}"))?;
    let cpu = timeval(usage.ru_utime) + timeval(usage.ru_stime);
    let mut run = Run {
        wall,
        cpu,
        work: Duration::from_nanos(work_ns),
        ..Run::default()
    };
    if let Config::Profiled(hz) = config {
        let p = check_profile(profile, hz)?;
        let samples = p.sample_index("samples").map_err(|e| e.to_string())?;
        let cpu = p.sample_index("cpu").map_err(|e| e.to_string())?;
        run.samples = p.total(samples);
        run.profiled_cpu = Duration::from_nanos(p.total(cpu).max(0) as u64);
        if let Some(check) = check {
            let share = check.entry_share(&p, profile)?;
            // Elsewhere the walk follows frame pointers alone and loses glibc's callers.
            if share < MIN_ENTRY_SHARE && cfg!(target_arch = "x86_64") {
                return Err(format!(
                    "{hz} Hz profile {}: only {:.1}% of its CPU time has a stack reaching a \
                     thread's entry (at least {:.0}% expected); roots of the others: {}",
                    profile.display(),
                    share * 100.0,
                    MIN_ENTRY_SHARE * 100.0,
                    check.other_roots(&p, profile)
                ));
            }
            run.entry_share = Some(share);
        }
        let _ = std::fs::remove_file(profile);
    }
    Ok(run)
}

/// Decode a profiled run's file. Fails if the profiler was off: no file, an empty one, or no
/// samples.
fn check_profile(path: &Path, hz: u32) -> Result<Profile, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("{hz} Hz run wrote no profile at {}: {e}", path.display()))?;
    if meta.len() == 0 {
        return Err(format!(
            "{hz} Hz run wrote an empty profile {}",
            path.display()
        ));
    }
    let p = rprof_core::codec::read_file(path).map_err(|e| format!("{hz} Hz profile: {e}"))?;
    let samples = p.sample_index("samples").map_err(|e| e.to_string())?;
    let cpu = p.sample_index("cpu").map_err(|e| e.to_string())?;
    if p.total(samples) <= 0 || p.total(cpu) <= 0 {
        return Err(format!("{hz} Hz profile {} has no samples", path.display()));
    }
    Ok(p)
}

/// Decides whether a raw profile's stacks reach a thread's entry: symbolizes it (the workload,
/// libc, the preload, the vDSO image the preload kept beside the profile) and looks at each
/// stack's root frame.
struct StackCheck {
    symbolizer: Symbolizer,
    /// File offsets in libc of the return address that roots a thread's stack (inside
    /// `clone3`), as libgcc's unwinder reports it for a thread of this process: without libc's
    /// separate debug file (Debian's `libc6-dbg`) its exported symbols do not cover `clone3`,
    /// so the root may have no name.
    libc_thread_roots: Vec<u64>,
}

impl StackCheck {
    fn new() -> Result<Self, String> {
        Ok(StackCheck {
            symbolizer: Symbolizer::new(),
            libc_thread_roots: libc_thread_root().into_iter().collect(),
        })
    }

    /// Symbolize `raw` (read from `path`), then the share of its CPU time whose root frame is a
    /// thread's entry.
    fn entry_share(&mut self, raw: &Profile, path: &Path) -> Result<f64, String> {
        let roots = self.roots(raw, path)?;
        let cpu = raw.sample_index("cpu").map_err(|e| e.to_string())?;
        let (mut entry, mut all) = (0i64, 0i64);
        for (root, value) in roots.iter().map(|(r, s)| (r, s.value[cpu])) {
            all += value;
            if root.is_entry {
                entry += value;
            }
        }
        Ok(if all > 0 {
            entry as f64 / all as f64
        } else {
            0.0
        })
    }

    /// The roots of stacks that do not reach an entry, most CPU time first (for errors).
    fn other_roots(&mut self, raw: &Profile, path: &Path) -> String {
        let Ok(roots) = self.roots(raw, path) else {
            return "?".into();
        };
        let cpu = raw.sample_index("cpu").unwrap_or(0);
        let mut by_name: HashMap<String, i64> = HashMap::new();
        for (root, s) in roots.iter().filter(|(r, _)| !r.is_entry) {
            *by_name.entry(root.name.clone()).or_default() += s.value[cpu];
        }
        let mut v: Vec<_> = by_name.into_iter().collect();
        v.sort_by_key(|(_, ns)| std::cmp::Reverse(*ns));
        v.iter()
            .take(5)
            .map(|(name, ns)| format!("{name} ({:.1} ms)", *ns as f64 / 1e6))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Each sample of `raw` with its root frame.
    fn roots<'p>(
        &mut self,
        raw: &'p Profile,
        path: &Path,
    ) -> Result<Vec<(Root, &'p rprof_core::proto::Sample)>, String> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let resolve = |filename: &str, build_id: &str| -> Option<PathBuf> {
            // The preload kept the vDSO's image beside the profile.
            (filename == rprof_core::VDSO_MAPPING)
                .then(|| dir.join(rprof_core::kept_vdso_name(build_id)))
        };
        let symbolized = self.symbolizer.symbolize(raw, &resolve).profile;
        // Symbolization keeps the samples, in order, and each location's address.
        if symbolized.sample.len() != raw.sample.len() {
            return Err("symbolization changed the samples".into());
        }
        let p = &symbolized;
        Ok(p.sample
            .iter()
            .zip(&raw.sample)
            .map(|(s, raw_sample)| {
                let root = s
                    .location_id
                    .last()
                    .and_then(|&id| p.location_by_id(id))
                    .map_or_else(
                        || Root {
                            name: "(no stack)".into(),
                            is_entry: false,
                        },
                        |l| self.root(p, l),
                    );
                (root, raw_sample)
            })
            .collect())
    }

    /// What a stack's deepest location is.
    fn root(&self, p: &Profile, l: &rprof_core::proto::Location) -> Root {
        // Innermost inlined frame first: the function itself is the last line.
        let name = l
            .line
            .last()
            .and_then(|line| p.function_by_id(line.function_id))
            .map(|f| p.str(f.name))
            .unwrap_or("");
        if !name.is_empty() {
            return Root {
                name: name.to_owned(),
                is_entry: ENTRY_FUNCTIONS.contains(&name),
            };
        }
        let mapping = p.mapping.iter().find(|m| m.id == l.mapping_id);
        let Some(m) = mapping else {
            return Root {
                name: format!("{:#x}", l.address),
                is_entry: false,
            };
        };
        let file = p.str(m.filename);
        let offset = l.address.wrapping_sub(m.memory_start) + m.file_offset;
        let short = file.rsplit('/').next().unwrap_or(file);
        Root {
            name: format!("{short}+{offset:#x}"),
            is_entry: file.contains("libc.so") && self.libc_thread_roots.contains(&offset),
        }
    }
}

/// A stack's root frame: its function (or `file+offset`) and whether it is a thread's entry.
struct Root {
    name: String,
    is_entry: bool,
}

/// The file offset in libc of the return address at the root of a thread's stack, from glibc's
/// `backtrace(3)` (libgcc's DWARF unwinder) on a thread of this process, or `None`.
fn libc_thread_root() -> Option<u64> {
    extern "C" {
        fn backtrace(buffer: *mut *mut libc::c_void, size: libc::c_int) -> libc::c_int;
    }
    let root = std::thread::spawn(|| {
        let mut frames = [std::ptr::null_mut(); 256];
        // SAFETY: the buffer holds 256 pointers.
        let n = unsafe { backtrace(frames.as_mut_ptr(), frames.len() as libc::c_int) };
        frames[..n.max(0) as usize].last().map(|&p| p as u64)
    })
    .join()
    .ok()??;
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        // start-end perms offset dev inode path
        let mut f = line.split_whitespace();
        let (range, _, offset) = (f.next()?, f.next()?, f.next()?);
        let path = f.nth(2)?;
        let (start, end) = range.split_once('-')?;
        let start = u64::from_str_radix(start, 16).ok()?;
        let end = u64::from_str_radix(end, 16).ok()?;
        let offset = u64::from_str_radix(offset, 16).ok()?;
        ((start..end).contains(&root) && path.contains("libc.so")).then(|| root - start + offset)
    })
}

/// A measurement of a run, by name.
type Metric = (&'static str, fn(&Run) -> Duration);

const METRICS: [Metric; 4] = [
    ("wall", |r| r.wall),
    ("cpu", |r| r.cpu),
    ("work", |r| r.work),
    // Process start-up and exit: loading the preload, starting and stopping the profiler,
    // writing the profile.
    ("outside", |r| r.wall.saturating_sub(r.work)),
];

fn secs(runs: &[Run], f: fn(&Run) -> Duration) -> Vec<f64> {
    runs.iter().map(|r| f(r).as_secs_f64()).collect()
}

fn report(workload: Workload, threads: u32, runs: &[Vec<Run>]) {
    println!();
    println!(
        "== {}, {threads} thread{} ({} runs per configuration) ==",
        workload.name(),
        if threads == 1 { "" } else { "s" },
        runs[0].len()
    );
    let mut header = format!(
        "{:<8} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>9} {:>8}",
        "config",
        "wall med",
        "wall min",
        "cpu med",
        "cpu min",
        "work med",
        "work min",
        "outside med",
        "outside min",
        "samples",
        "seen"
    );
    if workload.checks_stacks() {
        header += &format!(" {:>15}", "entry med/min");
    }
    println!("{header}");
    for (ci, config) in CONFIGS.iter().enumerate() {
        let r = &runs[ci];
        let mut line = format!("{:<8}", config.label());
        for (_, f) in METRICS {
            let v = secs(r, f);
            line += &format!(" {:>10.4}s {:>10.4}s", median(v.clone()), min(&v));
        }
        if let Config::Profiled(_) = config {
            let samples = median(r.iter().map(|r| r.samples as f64).collect());
            // Share of the child's CPU time the profile accounts for.
            let seen = median(
                r.iter()
                    .map(|r| r.profiled_cpu.as_secs_f64() / r.cpu.as_secs_f64())
                    .collect(),
            );
            line += &format!(" {samples:>9.0} {:>7.1}%", seen * 100.0);
            let shares: Vec<f64> = r.iter().filter_map(|r| r.entry_share).collect();
            if !shares.is_empty() {
                line += &format!(
                    " {:>7.1}%/{:.1}%",
                    median(shares.clone()) * 100.0,
                    min(&shares) * 100.0
                );
            }
        }
        println!("{line}");
    }
    println!(
        "profiled / plain: med = ratio of medians, min = of minimums, paired = median of \
         per-round ratios; outside = extra ms of start-up + exit"
    );
    if workload.checks_stacks() {
        println!(
            "entry = share of the profile's CPU time whose stack reaches a thread's entry \
             (median/min over runs)"
        );
    }
    for (ci, config) in CONFIGS.iter().enumerate().skip(1) {
        let metrics: Vec<_> = METRICS
            .iter()
            .map(|&(name, f)| (name, secs(&runs[ci], f), secs(&runs[0], f)))
            .collect();
        println!("{}", ratio_line(&config.label(), 8, &metrics));
    }
    let headline: Vec<String> = (1..CONFIGS.len())
        .map(|ci| {
            let wall = |ci: usize| median(secs(&runs[ci], |r| r.wall));
            format!("ratio {}: {:.3}", CONFIGS[ci].label(), wall(ci) / wall(0))
        })
        .collect();
    println!("{}  (medians of wall time)", headline.join("  "));
}

/// One line per workload, thread count and rate: the ratios of medians of CPU and wall time,
/// and, with `verdicts` (runs enough to tell), whether the workload's CPU-time target was met.
fn summary(built: &[Built], variants: &[u32], results: &[Vec<Vec<Vec<Run>>>], verdicts: bool) {
    println!();
    println!("== summary: profiled / plain, ratio of medians ==");
    for (wi, b) in built.iter().enumerate() {
        for (vi, &threads) in variants.iter().enumerate() {
            let runs = &results[wi][vi];
            for (ci, config) in CONFIGS.iter().enumerate().skip(1) {
                let Config::Profiled(hz) = *config else {
                    continue;
                };
                let ratio = |f: fn(&Run) -> Duration| {
                    median(secs(&runs[ci], f)) / median(secs(&runs[0], f))
                };
                let cpu = ratio(|r| r.cpu);
                let target = match b.workload.target(hz) {
                    Some(t) if verdicts => format!(
                        "  target cpu <= {t:.2}: {}",
                        if cpu <= t { "met" } else { "MISSED" }
                    ),
                    Some(t) => format!("  target cpu <= {t:.2}"),
                    None => String::new(),
                };
                println!(
                    "{:<6} {threads} thread{} {:>7}  cpu {cpu:.3}  wall {:.3}{target}",
                    b.workload.name(),
                    if threads == 1 { " " } else { "s" },
                    config.label(),
                    ratio(|r| r.wall),
                );
            }
        }
    }
}
