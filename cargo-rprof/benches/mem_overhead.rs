//! Overhead of the memory profiler: an allocation-heavy workload (building and dropping a
//! `BTreeMap<String, Vec<u8>>` of 1M entries) run unprofiled, with the preload library at the
//! default rate and at rate 1, and under heaptrack, side by side in one run.
//!
//! ```text
//! cargo bench -p cargo-rprof --bench mem_overhead
//! RPROF_BENCH_ROUNDS=2 cargo bench -p cargo-rprof --bench mem_overhead     # quick smoke run
//! ```
//!
//! The workload is a small Rust program compiled once with `rustc` as `cargo rprof` compiles
//! test binaries (frame pointers, line tables). Runs are interleaved round-robin (plain, default
//! rate, rate 1, heaptrack, plain, ...; the starting configuration rotates every round), so drift
//! of the machine hits every configuration alike. Each run's wall time, the child's CPU time
//! (user + sys, from `wait4`) and the time the workload itself measures around its work loop are
//! recorded. Every profiled run must leave a decodable memory profile with Go's four sample
//! types, and at rate 1 one that counts at least every allocation the workload knows it made
//! (one per key, one per value), or the bench fails; every heaptrack run must leave a non-empty
//! data file.
//!
//! heaptrack runs as `heaptrack --raw -o FILE WORKLOAD ARGS` by default: it records the raw
//! trace, compressed on the fly by `zstd` (or `gzip`) in a second process, and skips
//! `heaptrack_interpret`, so the comparison is about recording. Its wall time is that of the
//! whole `heaptrack` command (its wrapper script, the workload and the compressor, which the
//! script waits for); its CPU time is that of all of them.
//!
//! Settings (environment):
//! - `RPROF_BENCH_ROUNDS` (default 15): runs per configuration;
//! - `RPROF_BENCH_ENTRIES` (default 1000000): map entries;
//! - `RPROF_BENCH_BASE_SO` (unset): another preload library (a previous build's
//!   `librprof_preload.so`) run at the same rates, interleaved, for a before/after comparison;
//! - `RPROF_BENCH_SECONDS` (default 1.5): at most this many work-loop seconds of an unprofiled
//!   run (the map is built and dropped as many times as fit, at least once; 0 = once);
//! - `RPROF_BENCH_RATES` (default `default,1`): profiled configurations, by
//!   `RPROF_MEMPROFILERATE` (`default` = 0 = 524288 bytes); e.g. `default,1,4611686018427387904`
//!   adds a run that interposes malloc but never samples;
//! - `RPROF_BENCH_HEAPTRACK` (default `raw`): `raw` (record only), `full` (`heaptrack_interpret`
//!   runs alongside, as plain `heaptrack` does), `both`, or `off`. Without `heaptrack` on `PATH`
//!   its configurations are skipped with a notice.
//!
//! Without the `--bench` argument that `cargo bench` passes (`cargo test --benches`, or the binary
//! run by hand) the defaults shrink to one round of 100000 entries built once: a smoke run that
//! still checks every profiled run wrote a profile. Other arguments are ignored.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{build_workload, env_or, median, min, ratio_line, spawn_and_reap, timeval, Reaped};

const PRELOAD_SO: &str = env!("RPROF_PRELOAD_SO");

/// `RPROF_MEMPROFILERATE=0` means this (mirrors `rprof_harness::mem::DEFAULT_RATE`).
const DEFAULT_RATE: u64 = 512 * 1024;

/// What starts the workload's result line (heaptrack prints its own lines on the same stdout).
const RESULT_TAG: &str = "rprof-mem-workload";

/// The workload: build a `BTreeMap<String, Vec<u8>>` in a shuffled key order and drop it,
/// `reps` times, under a few non-inlined calls. Arguments: `<entries> <reps>`; prints
/// `rprof-mem-workload <checksum> <work-loop ns> <known allocations> <known bytes>`, the last two
/// counting the keys and values it allocated (one allocation each, sizes exact).
const WORKLOAD: &str = r#"
use std::collections::BTreeMap;
use std::fmt::Write;
use std::hint::black_box;
use std::time::Instant;

type Map = BTreeMap<String, Vec<u8>>;

/// 0..n in a deterministic shuffled order (Fisher-Yates over xorshift).
#[inline(never)]
fn shuffled(n: u32) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

/// `key00001234`: one allocation of exactly 11 bytes.
#[inline(never)]
fn make_key(i: u32) -> String {
    let mut k = String::with_capacity(11);
    write!(k, "key{i:08}").unwrap();
    k
}

/// 1 to 64 bytes, spread by a multiplicative hash: one allocation of exactly that size.
#[inline(never)]
fn make_value(i: u32) -> Vec<u8> {
    let len = 1 + (i.wrapping_mul(2_654_435_761) >> 26) as usize;
    vec![i as u8; len]
}

#[inline(never)]
fn insert_entry(map: &mut Map, i: u32) -> u64 {
    let k = make_key(i);
    let v = make_value(i);
    let bytes = (k.capacity() + v.capacity()) as u64;
    map.insert(k, v);
    bytes
}

#[inline(never)]
fn build_map(order: &[u32], bytes: &mut u64) -> Map {
    let mut map = Map::new();
    for &i in order {
        *bytes += insert_entry(&mut map, i);
    }
    map
}

#[inline(never)]
fn drop_map(map: Map) {
    drop(black_box(map));
}

#[inline(never)]
fn build_and_drop(order: &[u32], bytes: &mut u64) -> u64 {
    let map = build_map(order, bytes);
    let first = map.first_key_value().map_or(0, |(k, v)| k.len() + v.len());
    let last = map.last_key_value().map_or(0, |(k, v)| k.len() + v.len());
    let sum = map.len() as u64 ^ ((first as u64) << 32) ^ ((last as u64) << 16);
    drop_map(map);
    sum
}

#[inline(never)]
fn work(order: &[u32], reps: u64, bytes: &mut u64) -> u64 {
    let mut acc = 0u64;
    for r in 0..reps {
        acc = acc.rotate_left(7) ^ build_and_drop(black_box(order), bytes) ^ r;
    }
    acc
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let entries: u32 = args[1].parse().unwrap();
    let reps: u64 = args[2].parse().unwrap();
    let order = shuffled(entries);
    let mut bytes = 0u64;
    let start = Instant::now();
    let sum = work(&order, reps, &mut bytes);
    let elapsed = start.elapsed().as_nanos();
    let allocs = 2 * entries as u64 * reps;
    println!("rprof-mem-workload {sum} {elapsed} {allocs} {bytes}");
}
"#;

/// One way of running the workload.
#[derive(Clone, Copy, PartialEq)]
enum Config {
    Plain,
    /// The preload library at this `RPROF_MEMPROFILERATE` (0 = the default rate).
    Rate(u64),
    /// Another preload library (`RPROF_BENCH_BASE_SO`, e.g. a previous version's) at this rate:
    /// a before/after comparison in one run.
    BaseRate(u64),
    /// `heaptrack`, with `--raw` (record only) or without (interpreted alongside).
    Heaptrack {
        raw: bool,
    },
}

impl Config {
    /// Label in the table.
    fn label(self) -> String {
        match self {
            Config::Plain => "plain".to_owned(),
            Config::Rate(0) => "rate default".to_owned(),
            Config::Rate(r) => format!("rate {r}"),
            Config::BaseRate(0) => "base default".to_owned(),
            Config::BaseRate(r) => format!("base rate {r}"),
            Config::Heaptrack { raw: true } => "heaptrack -r".to_owned(),
            Config::Heaptrack { raw: false } => "heaptrack".to_owned(),
        }
    }

    /// Name in the headline of ratios.
    fn short(self) -> String {
        match self {
            Config::Plain => "plain".to_owned(),
            Config::Rate(0) => "default".to_owned(),
            Config::Rate(r) => format!("rate-{r}"),
            Config::BaseRate(0) => "base-default".to_owned(),
            Config::BaseRate(r) => format!("base-rate-{r}"),
            Config::Heaptrack { raw: true } => "heaptrack".to_owned(),
            Config::Heaptrack { raw: false } => "heaptrack-full".to_owned(),
        }
    }
}

/// What one run measured.
#[derive(Clone, Copy, Default)]
struct Run {
    wall: Duration,
    cpu: Duration,
    /// The workload's own measurement of its work loop (no process start-up or exit).
    work: Duration,
    /// What the workload knows it allocated (keys and values).
    known_allocs: u64,
    known_bytes: u64,
    /// From the profile (profiled runs): alloc_objects, alloc_space, inuse_objects, inuse_space.
    totals: [i64; 4],
    /// Size of heaptrack's data file.
    trace_bytes: u64,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mem_overhead bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// An executable named `name` on `PATH`.
fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn run() -> Result<(), String> {
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`, or run by hand) this
    // is a smoke run, as with criterion. Other arguments are ignored.
    let full = std::env::args().any(|a| a == "--bench");
    let rounds: usize = env_or("RPROF_BENCH_ROUNDS", if full { 15 } else { 1 })?;
    let entries: u32 = env_or(
        "RPROF_BENCH_ENTRIES",
        if full { 1_000_000 } else { 100_000 },
    )?;
    // 0: build the map once per run.
    let seconds: f64 = env_or("RPROF_BENCH_SECONDS", if full { 1.5 } else { 0.0 })?;
    let rates: Vec<u64> = env_or("RPROF_BENCH_RATES", "default,1".to_owned())?
        .split(',')
        .map(|s| match s.trim() {
            "default" => Ok(0),
            s => s
                .parse::<u64>()
                .map_err(|_| format!("RPROF_BENCH_RATES: bad {s:?}")),
        })
        .collect::<Result<_, _>>()?;
    let heaptrack_modes: &[bool] = match env_or("RPROF_BENCH_HEAPTRACK", "raw".to_owned())?.as_str()
    {
        "raw" => &[true],
        "full" => &[false],
        "both" => &[true, false],
        "off" => &[],
        other => return Err(format!("RPROF_BENCH_HEAPTRACK={other}: raw|full|both|off")),
    };
    if rounds == 0 || entries == 0 || entries > 99_999_999 || seconds.is_nan() || seconds < 0.0 {
        return Err(
            "need RPROF_BENCH_ROUNDS >= 1, 1 <= RPROF_BENCH_ENTRIES <= 99999999, \
             RPROF_BENCH_SECONDS >= 0"
                .into(),
        );
    }
    let so = Path::new(PRELOAD_SO);
    if !so.is_file() {
        return Err(format!("preload library {} is missing", so.display()));
    }
    let heaptrack = if heaptrack_modes.is_empty() {
        None
    } else {
        let found = find_on_path("heaptrack");
        if found.is_none() {
            println!("heaptrack: not on PATH, its configuration is skipped");
        }
        found
    };

    if !full {
        println!("smoke run (no --bench argument): timings and targets are not meaningful");
    }
    let mut configs = vec![Config::Plain];
    configs.extend(rates.iter().map(|&r| Config::Rate(r)));
    let base = std::env::var_os("RPROF_BENCH_BASE_SO").map(PathBuf::from);
    if let Some(base) = &base {
        if !base.is_file() {
            return Err(format!(
                "RPROF_BENCH_BASE_SO: {} is missing",
                base.display()
            ));
        }
        configs.extend(rates.iter().map(|&r| Config::BaseRate(r)));
    }
    if heaptrack.is_some() {
        configs.extend(heaptrack_modes.iter().map(|&raw| Config::Heaptrack { raw }));
    }

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("rprof-mem-overhead-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tools = Tools {
        so,
        base: base.as_deref(),
        heaptrack: heaptrack.as_deref(),
    };
    let result = bench(&dir, &tools, &configs, rounds, entries, seconds);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The profilers a run may use.
struct Tools<'a> {
    so: &'a Path,
    /// `RPROF_BENCH_BASE_SO`, for the `BaseRate` configurations.
    base: Option<&'a Path>,
    heaptrack: Option<&'a Path>,
}

fn bench(
    dir: &Path,
    tools: &Tools,
    configs: &[Config],
    rounds: usize,
    entries: u32,
    seconds: f64,
) -> Result<(), String> {
    let exe = build_workload(dir, WORKLOAD)?;
    let (reps, estimate) = calibrate(&exe, tools, entries, seconds)?;
    println!(
        "workload: {entries} entries, built and dropped {reps} times per run (~{estimate:.2} s \
         of work unprofiled), {rounds} rounds, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("preload:  {}", tools.so.display());
    if let Some(h) = tools.heaptrack {
        let version = Command::new(h)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let modes: Vec<&str> = configs
            .iter()
            .filter_map(|c| match c {
                Config::Heaptrack { raw: true } => Some(
                    "`heaptrack -r` = --raw, record only (trace compressed on the fly, \
                     no heaptrack_interpret)",
                ),
                Config::Heaptrack { raw: false } => {
                    Some("`heaptrack` = heaptrack_interpret + compression running alongside")
                }
                _ => None,
            })
            .collect();
        println!(
            "heaptrack: {} ({version}); {}; wall = the whole heaptrack command",
            h.display(),
            modes.join("; ")
        );
    }

    // results[config] = runs
    let mut results = vec![Vec::with_capacity(rounds); configs.len()];
    let started = Instant::now();
    let mut n = 0usize;
    for round in 0..rounds {
        for k in 0..configs.len() {
            // Rotate the starting configuration so none always runs first after a switch.
            let ci = (k + round) % configs.len();
            let out = dir.join(format!("mem-{n}"));
            n += 1;
            let run = run_once(&exe, entries, reps, configs[ci], tools, &out)?;
            results[ci].push(run);
        }
        eprint!(
            "\rround {}/{rounds} ({:.0} s)",
            round + 1,
            started.elapsed().as_secs_f64()
        );
    }
    eprintln!();

    report(configs, &results);
    Ok(())
}

/// How many times to build and drop the map for about `seconds` of unprofiled work (at least
/// 1), and the seconds of work that makes.
fn calibrate(exe: &Path, tools: &Tools, entries: u32, seconds: f64) -> Result<(u64, f64), String> {
    let none = Path::new("");
    // The first run settles clocks and caches; the second is measured.
    let mut one = 0.0;
    for _ in 0..2 {
        one = run_once(exe, entries, 1, Config::Plain, tools, none)?
            .work
            .as_secs_f64();
        if seconds == 0.0 {
            return Ok((1, one));
        }
    }
    // Rounded down, so the full bench stays in its time budget.
    let reps = (seconds / one).floor().max(1.0) as u64;
    Ok((reps, reps as f64 * one))
}

/// Run the workload once and reap it with `wait4` for its resource usage (for heaptrack: of
/// the script, the workload and the compressor, all reaped by the script).
fn run_once(
    exe: &Path,
    entries: u32,
    reps: u64,
    config: Config,
    tools: &Tools,
    out: &Path,
) -> Result<Run, String> {
    let mut cmd = match config {
        Config::Heaptrack { raw } => {
            let heaptrack = tools.heaptrack.expect("heaptrack configs need heaptrack");
            let mut cmd = Command::new(heaptrack);
            if raw {
                cmd.arg("--raw");
            }
            cmd.arg("-o").arg(out).arg(exe);
            cmd
        }
        _ => Command::new(exe),
    };
    cmd.arg(entries.to_string())
        .arg(reps.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .env_remove("LD_PRELOAD")
        .env_remove("RPROF_CPUPROFILE")
        .env_remove("RPROF_CPUPROFILERATE")
        .env_remove("RPROF_MEMPROFILE")
        .env_remove("RPROF_MEMPROFILERATE");
    // heaptrack's chatter (and its summary without --raw) goes to a file, shown on failure.
    let stderr_file = out.with_extension("stderr");
    if let Config::Heaptrack { .. } = config {
        let f = std::fs::File::create(&stderr_file)
            .map_err(|e| format!("{}: {e}", stderr_file.display()))?;
        cmd.stderr(f);
    } else {
        cmd.stderr(Stdio::inherit());
    }
    if let Config::Rate(rate) | Config::BaseRate(rate) = config {
        let so = match config {
            Config::BaseRate(_) => tools.base.unwrap_or(tools.so),
            _ => tools.so,
        };
        let _ = std::fs::remove_file(out);
        cmd.env("LD_PRELOAD", so)
            .env("RPROF_MEMPROFILE", out)
            .env("RPROF_MEMPROFILERATE", rate.to_string());
    }
    let Reaped {
        stdout,
        status,
        usage,
        wall,
    } = spawn_and_reap(&mut cmd, &config.label().to_string())?;
    let stderr = std::fs::read_to_string(&stderr_file).unwrap_or_default();
    let _ = std::fs::remove_file(&stderr_file);
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(format!(
            "workload ({}) failed: wait status {status:#x}; output:\n{stdout}{stderr}",
            config.label()
        ));
    }
    let fields: Vec<u64> = stdout
        .lines()
        .find_map(|l| l.strip_prefix(RESULT_TAG))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|s| s.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let [_, work_ns, known_allocs, known_bytes] = fields[..] else {
        return Err(format!(
            "unexpected workload output ({}): {stdout:?} {stderr:?}",
            config.label()
        ));
    };
    let mut run = Run {
        wall,
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        work: Duration::from_nanos(work_ns),
        known_allocs,
        known_bytes,
        ..Run::default()
    };
    match config {
        Config::Plain => {}
        Config::Rate(rate) | Config::BaseRate(rate) => {
            run.totals = check_profile(out, rate, &run)?;
            let _ = std::fs::remove_file(out);
        }
        Config::Heaptrack { .. } => {
            run.trace_bytes = check_heaptrack(out)?;
        }
    }
    Ok(run)
}

const SAMPLE_TYPES: [&str; 4] = [
    "alloc_objects",
    "alloc_space",
    "inuse_objects",
    "inuse_space",
];

/// Decode a profiled run's memory profile: totals of its four sample types. Fails if the
/// profiler was off, a sample type is missing, or (rate 1) allocations the workload made are
/// missing.
fn check_profile(path: &Path, rate: u64, run: &Run) -> Result<[i64; 4], String> {
    let label = Config::Rate(rate).label();
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("{label} run wrote no profile at {}: {e}", path.display()))?;
    if meta.len() == 0 {
        return Err(format!(
            "{label} run wrote an empty profile {}",
            path.display()
        ));
    }
    let p = rprof_core::codec::read_file(path).map_err(|e| format!("{label} profile: {e}"))?;
    let mut totals = [0i64; 4];
    for (t, name) in totals.iter_mut().zip(SAMPLE_TYPES) {
        let i = p
            .sample_index(name)
            .map_err(|e| format!("{label} profile: {e}"))?;
        *t = p.total(i);
    }
    let effective = if rate == 0 { DEFAULT_RATE } else { rate };
    if p.period != effective as i64 {
        return Err(format!(
            "{label} profile has period {}, expected {effective}",
            p.period
        ));
    }
    // Expect samples when the workload alone allocated 20 sampling periods or more (no sample
    // then has probability below e^-20); a huge rate (interposition without sampling) may have
    // none.
    if (totals[0] <= 0 || totals[1] <= 0) && run.known_bytes / effective >= 20 {
        return Err(format!(
            "{label} profile {} has no allocations",
            path.display()
        ));
    }
    if rate == 1 && (totals[0] < run.known_allocs as i64 || totals[1] < run.known_bytes as i64) {
        return Err(format!(
            "rate 1 profile counts {} allocations / {} bytes, but the workload made at least \
             {} / {}",
            totals[0], totals[1], run.known_allocs, run.known_bytes
        ));
    }
    Ok(totals)
}

/// Check heaptrack left a non-empty data file `<out>.*` (then remove it); its size.
fn check_heaptrack(out: &Path) -> Result<u64, String> {
    let dir = out.parent().expect("in the bench directory");
    let prefix = format!(
        "{}.",
        out.file_name().expect("a file name").to_string_lossy()
    );
    let file = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .ok_or_else(|| format!("heaptrack wrote no data file {}*", out.display()))?;
    let len = std::fs::metadata(&file).map_or(0, |m| m.len());
    let _ = std::fs::remove_file(&file);
    if len == 0 {
        return Err(format!("heaptrack wrote an empty {}", file.display()));
    }
    Ok(len)
}

/// A measurement of a run, by name.
type Metric = (&'static str, fn(&Run) -> Duration);

const METRICS: [Metric; 4] = [
    ("wall", |r| r.wall),
    ("cpu", |r| r.cpu),
    ("work", |r| r.work),
    // Process start-up and exit: loading the preload, writing the profile; for heaptrack also
    // its script, and waiting for the compressor.
    ("outside", |r| r.wall.saturating_sub(r.work)),
];

fn report(configs: &[Config], runs: &[Vec<Run>]) {
    let secs = |runs: &[Run], f: fn(&Run) -> Duration| -> Vec<f64> {
        runs.iter().map(|r| f(r).as_secs_f64()).collect()
    };
    let first = runs[0][0];
    let w = configs
        .iter()
        .map(|c| c.label().len())
        .max()
        .unwrap_or(0)
        .max(6);
    println!();
    println!(
        "== {} runs per configuration; the workload made {} allocations of {:.1} MB (keys and \
         values; BTreeMap nodes come on top) ==",
        runs[0].len(),
        first.known_allocs,
        first.known_bytes as f64 / 1e6
    );
    println!(
        "{:<w$} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11}  profile (medians)",
        "config",
        "wall med",
        "wall min",
        "cpu med",
        "cpu min",
        "work med",
        "work min",
        "outside med",
        "outside min",
    );
    for (ci, config) in configs.iter().enumerate() {
        let r = &runs[ci];
        let mut line = format!("{:<w$}", config.label());
        for (_, f) in METRICS {
            let v = secs(r, f);
            line += &format!(" {:>10.4}s {:>10.4}s", median(v.clone()), min(&v));
        }
        let med = |f: fn(&Run) -> f64| median(r.iter().map(f).collect());
        match config {
            Config::Plain => {}
            Config::Rate(_) | Config::BaseRate(_) => {
                let ao = med(|r| r.totals[0] as f64);
                line += &format!(
                    "  alloc_objects {ao:.0} ({:.3}/entry-allocation)  alloc_space {:.1} MB  \
                     inuse_objects {:.0}  inuse_space {:.1} KB",
                    ao / first.known_allocs as f64,
                    med(|r| r.totals[1] as f64) / 1e6,
                    med(|r| r.totals[2] as f64),
                    med(|r| r.totals[3] as f64) / 1e3,
                );
            }
            Config::Heaptrack { .. } => {
                line += &format!("  data file {:.1} MB", med(|r| r.trace_bytes as f64) / 1e6);
            }
        }
        println!("{line}");
    }
    println!(
        "profiled / plain: med = ratio of medians, min = of minimums, paired = median of \
         per-round ratios; outside = extra ms of start-up + exit"
    );
    for (ci, config) in configs.iter().enumerate().skip(1) {
        let metrics: Vec<_> = METRICS
            .iter()
            .map(|&(name, f)| (name, secs(&runs[ci], f), secs(&runs[0], f)))
            .collect();
        println!("{}", ratio_line(&config.label(), w, &metrics));
    }
    let wall = |ci: usize| median(secs(&runs[ci], |r| r.wall));
    let ratio = |ci: usize| wall(ci) / wall(0);
    let headline: Vec<String> = (1..configs.len())
        .map(|ci| format!("ratio {}: {:.3}", configs[ci].short(), ratio(ci)))
        .collect();
    println!("{}  (medians of wall time)", headline.join("  "));
    let work = |ci: usize| median(secs(&runs[ci], |r| r.work));
    let inside: Vec<String> = (1..configs.len())
        .map(|ci| format!("{}: {:.3}", configs[ci].short(), work(ci) / work(0)))
        .collect();
    println!(
        "work loop only (timed inside the workload; no start-up, exit or profile writing): {}",
        inside.join("  ")
    );

    // The targets (issue 15): CPU time, default rate <= 1.03x, rate 1 <= 1.5x, and rate 1's
    // added cost at most half of heaptrack's.
    let cpu = |ci: usize| median(secs(&runs[ci], |r| r.cpu));
    let cpu_ratio = |ci: usize| cpu(ci) / cpu(0);
    let find = |c: Config| configs.iter().position(|&x| x == c);
    let heaptrack =
        find(Config::Heaptrack { raw: true }).or(find(Config::Heaptrack { raw: false }));
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    let mut targets = Vec::new();
    if let Some(d) = find(Config::Rate(0)) {
        targets.push(format!(
            "default cpu <= 1.03: {}",
            verdict(cpu_ratio(d) <= 1.03)
        ));
    }
    if let Some(one) = find(Config::Rate(1)) {
        targets.push(format!(
            "rate-1 cpu <= 1.5: {}",
            verdict(cpu_ratio(one) <= 1.5)
        ));
        if let Some(h) = heaptrack {
            let share = (cpu_ratio(one) - 1.0) / (cpu_ratio(h) - 1.0);
            println!(
                "rate-1 / {}: wall {:.3}, cpu {:.3}; rate 1's added cpu is {:.2} of {}'s  \
                 (medians; below 1 = cheaper than heaptrack)",
                configs[h].short(),
                wall(one) / wall(h),
                cpu(one) / cpu(h),
                share,
                configs[h].short(),
            );
            targets.push(format!(
                "rate-1 added cpu <= half heaptrack's: {}",
                verdict(share <= 0.5)
            ));
        }
    }
    if !targets.is_empty() {
        println!("targets: {}", targets.join("  "));
    }
}
