//! What labels cost: the thread registry behind the `test` and `thread` labels (a serial per
//! sample, and per `pthread_create` one unwind and a lock), measured side by side in one run
//! against the same profilers with `RPROF_LABELS=0`.
//!
//! ```text
//! cargo bench -p cargo-rprof --bench labels_overhead
//! RPROF_BENCH_ROUNDS=3 cargo bench -p cargo-rprof --bench labels_overhead   # quick look
//! ```
//!
//! The workload is a small Rust program shaped like a test suite, compiled once with `rustc` as
//! `cargo rprof` compiles test binaries: it runs `RPROF_BENCH_TESTS` (default 200) "tests", each
//! on a thread of its own (spawned and joined, as libtest does), each hashing under a ~20-deep
//! stack of non-inlined calls and churning allocations (vectors, strings, a small `BTreeMap`);
//! every tenth test spawns two helper threads of its own. As in a suite, every test is a
//! function of its own, so its stacks differ from other tests' below its frame. Configurations,
//! interleaved (see `support::round_order`: a rotating start, forwards and backwards in turn,
//! so that drift hits all alike and no configuration always follows another): plain; CPU
//! profiling at 100 Hz (the light preload) with labels and without; memory profiling at rate 1
//! (the full preload) with labels and without; and, for the worst case of labels, memory
//! profiling with every test the same function (identical stacks on every thread, where the
//! thread serial multiplies the memory profiler's buckets by the number of threads). Each run's wall time and the child's CPU time (user + sys,
//! from `wait4`) are recorded; ratios are labels-on over labels-off, medians and paired.
//! Timing never fails the bench; a profiled run that leaves no decodable profile does, and so
//! does a labelled run whose samples lack thread serials, or an unlabelled one whose have them.
//!
//! Settings (environment): `RPROF_BENCH_ROUNDS` (default 15), `RPROF_BENCH_TESTS` (default 200).
//! Without the `--bench` argument that `cargo bench` passes, one round of 20 tests: a smoke run.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod support;
use support::{build_workload, env_or, median, ratio_line, round_order, spawn_and_reap, timeval};

const PRELOAD_SO: &str = env!("RPROF_PRELOAD_SO");
const PRELOAD_LIGHT_SO: &str = env!("RPROF_PRELOAD_LIGHT_SO");

const WORKLOAD: &str = r#"
use std::hint::black_box;
#[inline(never)]
fn leaf(seed: u64, n: u32) -> u64 {
    let mut x = seed;
    let mut keep = Vec::new();
    for i in 0..n {
        x = (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9).rotate_left(17);
        if i % 64 == 0 {
            let v: Vec<u8> = vec![x as u8; 24 + (x % 200) as usize];
            keep.push(format!("{}", v.len()));
            if keep.len() > 8 { keep.clear(); }
        }
    }
    x ^ keep.len() as u64
}
#[inline(never)]
fn descend(depth: u32, seed: u64, n: u32) -> u64 {
    if depth == 0 { leaf(seed, n) } else { black_box(descend(depth - 1, seed + 1, n)) ^ depth as u64 }
}
#[inline(never)]
fn one_test(i: u64, units: u32) -> u64 {
    let mut map = std::collections::BTreeMap::new();
    for k in 0..50u64 { map.insert(k ^ i, vec![k; 4]); }
    let helpers: Vec<_> = if i % 10 == 0 {
        (0..2).map(|h| std::thread::spawn(move || descend(20, i * 7 + h, units / 4))).collect()
    } else { Vec::new() };
    let mut x = descend(20, i, units) ^ map.len() as u64;
    for h in helpers { x ^= h.join().unwrap(); }
    x
}
fn main() {
    let mut args = std::env::args().skip(1);
    let tests: u64 = args.next().unwrap().parse().unwrap();
    let units: u32 = args.next().unwrap().parse().unwrap();
    let suite = args.next().unwrap() == "suite";
    let start = std::time::Instant::now();
    let mut x = 0;
    for i in 0..tests {
        let run = move || if suite { TESTS[i as usize % TESTS.len()](units) } else { one_test(i, units) };
        x ^= std::thread::Builder::new().name(format!("tests::t{i}")).spawn(run).unwrap().join().unwrap();
    }
    println!("WORK {} {}", start.elapsed().as_nanos(), x);
}
"#;

#[derive(Clone, Copy, PartialEq)]
enum Config {
    Plain,
    Cpu { labels: bool },
    Mem { labels: bool },
}

/// How the workload's tests are made.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// As libtest runs a suite: every test a function of its own, so that every test's stacks
    /// differ below its own frame (the measure the budgets apply to).
    Suite,
    /// Every test the same function: identical stacks on 200 threads, the worst case for
    /// labels (the memory profiler keeps one bucket per thread where it kept one in all).
    Same,
}

impl Shape {
    fn arg(self) -> &'static str {
        match self {
            Shape::Suite => "suite",
            Shape::Same => "same",
        }
    }
}

impl Config {
    fn name(self) -> &'static str {
        match self {
            Config::Plain => "plain",
            Config::Cpu { labels: true } => "cpu 100 Hz, labels",
            Config::Cpu { labels: false } => "cpu 100 Hz, RPROF_LABELS=0",
            Config::Mem { labels: true } => "mem rate 1, labels",
            Config::Mem { labels: false } => "mem rate 1, RPROF_LABELS=0",
        }
    }
}

/// What is run each round, interleaved.
const CONFIGS: [(Shape, Config); 7] = [
    (Shape::Suite, Config::Plain),
    (Shape::Suite, Config::Cpu { labels: true }),
    (Shape::Suite, Config::Cpu { labels: false }),
    (Shape::Suite, Config::Mem { labels: true }),
    (Shape::Suite, Config::Mem { labels: false }),
    (Shape::Same, Config::Mem { labels: true }),
    (Shape::Same, Config::Mem { labels: false }),
];

/// Wall and CPU seconds of each configuration, round by round.
#[derive(Default, Clone)]
struct Times {
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("labels_overhead: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workload's source: the common part and one function per test.
fn workload_source(tests: u64) -> String {
    let mut src = WORKLOAD.to_string();
    for i in 0..tests {
        src += &format!(
            "#[inline(never)]\nfn t{i}(units: u32) -> u64 {{ black_box(one_test({i}, units)) }}\n"
        );
    }
    src += "static TESTS: &[fn(u32) -> u64] = &[";
    src += &(0..tests)
        .map(|i| format!("t{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    src += "];\n";
    src
}

fn name(shape: Shape, config: Config) -> String {
    match shape {
        Shape::Suite => config.name().to_string(),
        Shape::Same => format!("{}, same fn", config.name()),
    }
}

fn run() -> Result<(), String> {
    let full = std::env::args().any(|a| a == "--bench");
    let rounds: usize = env_or("RPROF_BENCH_ROUNDS", if full { 15 } else { 1 })?;
    let tests: u64 = env_or("RPROF_BENCH_TESTS", if full { 200 } else { 20 })?;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("labels-overhead");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let exe = build_workload(&dir, &workload_source(tests.max(1)))?;
    // About 7 ms of hashing per test (1.4 s for 200 tests).
    let units = 1_200_000u32;
    println!("workload: {tests} tests on threads of their own, {rounds} rounds, 2 cores");
    let mut times = vec![Times::default(); CONFIGS.len()];
    for round in 0..rounds {
        for at in round_order(round, CONFIGS.len()) {
            let (shape, config) = CONFIGS[at];
            let (wall, cpu) = run_once(&exe, &dir, shape, config, tests, units)?;
            times[at].wall.push(wall);
            times[at].cpu.push(cpu);
        }
    }
    for (&(shape, config), t) in CONFIGS.iter().zip(&times) {
        println!(
            "  {:<36} wall {:>8.1} ms   cpu {:>8.1} ms   (medians)",
            name(shape, config),
            median(t.wall.clone()) * 1e3,
            median(t.cpu.clone()) * 1e3
        );
    }
    for (on, off, budget) in [(1, 2, Some(1.01)), (3, 4, Some(1.03)), (5, 6, None)] {
        let (a, b) = (&times[on], &times[off]);
        let (on_name, off_name) = (
            name(CONFIGS[on].0, CONFIGS[on].1),
            name(CONFIGS[off].0, CONFIGS[off].1),
        );
        println!(
            "{}",
            ratio_line(
                &format!("{on_name} / {off_name}"),
                72,
                &[
                    ("wall", a.wall.clone(), b.wall.clone()),
                    ("cpu", a.cpu.clone(), b.cpu.clone()),
                ],
            )
        );
        let ratio = median(a.cpu.clone()) / median(b.cpu.clone());
        match budget {
            Some(budget) => println!(
                "  budget {:.0}% on cpu time: {}",
                (budget - 1.0) * 100.0,
                if ratio <= budget { "holds" } else { "exceeded" }
            ),
            None => println!("  (worst case, no budget)"),
        }
    }
    Ok(())
}

/// One run of `config`: (wall seconds, CPU seconds of the child).
fn run_once(
    exe: &Path,
    dir: &Path,
    shape: Shape,
    config: Config,
    tests: u64,
    units: u32,
) -> Result<(f64, f64), String> {
    let profile: PathBuf = dir.join("run.prof");
    let _ = std::fs::remove_file(&profile);
    let mut cmd = Command::new(exe);
    cmd.arg(tests.to_string())
        .arg(units.to_string())
        .arg(shape.arg())
        .env_remove("LD_PRELOAD")
        .env_remove("RPROF_LABELS");
    let labels = match config {
        Config::Plain => None,
        Config::Cpu { labels } => {
            cmd.env("LD_PRELOAD", PRELOAD_LIGHT_SO)
                .env("RPROF_CPUPROFILE", &profile)
                .env("RPROF_CPUPROFILERATE", "100");
            Some(labels)
        }
        Config::Mem { labels } => {
            cmd.env("LD_PRELOAD", PRELOAD_SO)
                .env("RPROF_MEMPROFILE", &profile)
                .env("RPROF_MEMPROFILERATE", "1");
            Some(labels)
        }
    };
    if labels == Some(false) {
        cmd.env("RPROF_LABELS", "0");
    }
    let reaped = spawn_and_reap(&mut cmd, "the workload")?;
    if reaped.status != 0 || !reaped.stdout.starts_with("WORK ") {
        return Err(format!(
            "{}: the workload failed: {}",
            config.name(),
            reaped.stdout
        ));
    }
    if let Some(labels) = labels {
        check_profile(&profile, labels, config.name())?;
    }
    let cpu = timeval(reaped.usage.ru_utime) + timeval(reaped.usage.ru_stime);
    Ok((reaped.wall.as_secs_f64(), cpu.as_secs_f64()))
}

/// The run left a decodable profile whose samples carry thread serials exactly when labels are on.
fn check_profile(path: &Path, labels: bool, what: &str) -> Result<(), String> {
    let p = rprof_core::codec::read_file(path).map_err(|e| format!("{what}: {e}"))?;
    let has_serial = |s: &rprof_core::proto::Sample| {
        s.label
            .iter()
            .any(|l| p.str(l.key) == rprof_core::labels::raw::THREAD)
    };
    let with = p.sample.iter().filter(|s| has_serial(s)).count();
    let valued = p.sample.iter().filter(|s| s.value.iter().any(|&v| v != 0));
    if valued.clone().count() == 0 {
        return Err(format!("{what}: an empty profile"));
    }
    if labels && valued.clone().any(|s| !has_serial(s)) {
        return Err(format!("{what}: samples without a thread serial"));
    }
    if !labels && with > 0 {
        return Err(format!("{what}: {with} samples with a thread serial"));
    }
    Ok(())
}
