//! Overhead of the CPU profiler: a CPU-bound workload run with and without the preload library,
//! side by side in one run, at 100 Hz and 1000 Hz.
//!
//! ```text
//! cargo bench -p cargo-rprof --bench overhead
//! RPROF_BENCH_ROUNDS=2 cargo bench -p cargo-rprof --bench overhead     # quick smoke run
//! ```
//!
//! The workload is a small Rust program compiled once with `rustc` as `cargo rprof` compiles
//! test binaries (frame pointers, line tables). Runs are interleaved round-robin (plain, 100 Hz,
//! 1000 Hz, plain, ...; the starting configuration rotates every round), so drift of the machine
//! hits every configuration alike. Each run's wall time, the child's CPU time (user + sys, from
//! `wait4`) and the time the workload itself measures around its work loop are recorded; every
//! profiled run must leave a non-empty, decodable profile, or the bench fails.
//!
//! Settings (environment):
//! - `RPROF_BENCH_ROUNDS` (default 10): runs per configuration;
//! - `RPROF_BENCH_SECONDS` (default 1.0): target CPU seconds of one run, per thread;
//! - `RPROF_BENCH_THREADS` (default `1,2`): workload variants, by number of threads.
//!
//! Without the `--bench` argument that `cargo bench` passes (`cargo test --benches`, or the binary
//! run by hand) the defaults shrink to one round of 0.1 s: a smoke run that still checks every
//! profiled run wrote a profile. Other arguments are ignored.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{build_workload, env_or, median, min, ratio_line, spawn_and_reap, timeval, Reaped};

const PRELOAD_SO: &str = env!("RPROF_PRELOAD_SO");

/// The workload: deterministic hashing under a ~20-deep stack of non-inlined calls.
/// Arguments: `<threads> <units>`; prints `<checksum> <work-loop nanoseconds>`.
const WORKLOAD: &str = r#"
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
    let result = bench(&dir, so, rounds, seconds, &variants);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn bench(
    dir: &Path,
    so: &Path,
    rounds: usize,
    seconds: f64,
    variants: &[u32],
) -> Result<(), String> {
    let exe = build_workload(dir, WORKLOAD)?;
    let units = calibrate(&exe, seconds)?;
    println!(
        "workload: {units} units per thread (~{seconds} s per thread), {rounds} rounds, \
         variants {variants:?} threads, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("preload:  {}", so.display());

    // results[variant][config] = runs
    let mut results = vec![vec![Vec::with_capacity(rounds); CONFIGS.len()]; variants.len()];
    let started = Instant::now();
    let mut n = 0usize;
    for round in 0..rounds {
        for (vi, &threads) in variants.iter().enumerate() {
            for k in 0..CONFIGS.len() {
                // Rotate the starting configuration so none always runs first after a switch.
                let ci = (k + round) % CONFIGS.len();
                let profile = dir.join(format!("cpu-{n}.prof"));
                n += 1;
                let run = run_once(&exe, threads, units, CONFIGS[ci], so, &profile)?;
                results[vi][ci].push(run);
            }
        }
        eprint!(
            "\rround {}/{rounds} ({:.0} s)",
            round + 1,
            started.elapsed().as_secs_f64()
        );
    }
    eprintln!();

    for (vi, &threads) in variants.iter().enumerate() {
        report(threads, &results[vi]);
    }
    Ok(())
}

/// Units of work per thread that take about `seconds` of CPU on one thread.
fn calibrate(exe: &Path, seconds: f64) -> Result<u64, String> {
    let mut units = 1000u64;
    loop {
        let run = run_once(exe, 1, units, Config::Plain, Path::new(""), Path::new(""))?;
        let t = run.cpu.as_secs_f64();
        if t >= 0.2 {
            // One more at the estimated size, to settle clocks and caches.
            let units = ((units as f64) * seconds / t).max(1.0) as u64;
            let run = run_once(exe, 1, units, Config::Plain, Path::new(""), Path::new(""))?;
            let t = run.cpu.as_secs_f64();
            return Ok(((units as f64) * seconds / t).max(1.0) as u64);
        }
        units *= 4;
    }
}

/// Run the workload once and reap it with `wait4` for its resource usage.
fn run_once(
    exe: &Path,
    threads: u32,
    units: u64,
    config: Config,
    so: &Path,
    profile: &Path,
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
        let (samples, profiled_ns) = check_profile(profile, hz)?;
        run.samples = samples;
        run.profiled_cpu = Duration::from_nanos(profiled_ns.max(0) as u64);
        let _ = std::fs::remove_file(profile);
    }
    Ok(run)
}

/// Decode a profiled run's file: (sample count, CPU nanoseconds). Fails if the profiler was off.
fn check_profile(path: &Path, hz: u32) -> Result<(i64, i64), String> {
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
    let (samples, cpu) = (p.total(samples), p.total(cpu));
    if samples <= 0 || cpu <= 0 {
        return Err(format!("{hz} Hz profile {} has no samples", path.display()));
    }
    Ok((samples, cpu))
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

fn report(threads: u32, runs: &[Vec<Run>]) {
    let secs = |runs: &[Run], f: fn(&Run) -> Duration| -> Vec<f64> {
        runs.iter().map(|r| f(r).as_secs_f64()).collect()
    };
    println!();
    println!(
        "== {threads} thread{} ({} runs per configuration) ==",
        if threads == 1 { "" } else { "s" },
        runs[0].len()
    );
    println!(
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
        }
        println!("{line}");
    }
    println!(
        "profiled / plain: med = ratio of medians, min = of minimums, paired = median of \
         per-round ratios; outside = extra ms of start-up + exit"
    );
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
