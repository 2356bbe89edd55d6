//! Cost of the criterion hook (`rprof_harness::criterion::Profiler`) to the code it profiles:
//! one CPU-bound workload benchmarked side by side in one criterion run, without and with
//! rprof's CPU profiler sampling it at 1000 Hz.
//!
//! ```text
//! cargo bench -p rprof-harness --features criterion --bench hook_cost
//! RPROF_BENCH_ROUNDS=8 cargo bench -p rprof-harness --features criterion --bench hook_cost
//! cargo test -p rprof-harness --features criterion --benches       # criterion's test mode
//! ```
//!
//! The hook only acts in `--profile-time` mode, where criterion reports no time, so this bench
//! measures what the hook does to the benchmark's iterations. Three variants, interleaved
//! round-robin (`workload/plain/1`, `workload/profiled/1`, `workload/hook/1`, `workload/plain/2`,
//! ...; the starting variant rotates every round, so drift of the machine hits all alike):
//!
//! - `plain`: the workload, no profiler;
//! - `profiled`: the CPU profiler runs for the whole benchmark (warm-up and every sample), as
//!   the hook runs it around a `--profile-time` run: `pprof::start_cpu_profile(1000)` before
//!   criterion starts the benchmark, `CpuProfile::stop()` (which symbolizes) after it ends, both
//!   outside every timed region. The profile must hold samples of the workload, or the bench
//!   fails;
//! - `hook`: the hook object itself, `start_profiling` / `stop_profiling` around the timed
//!   iterations of every sample (`iter_custom`), writing `cpu.pb.gz` and `cpu.svg` into a
//!   temporary directory: start, stop, symbolization and writing stay outside the measured
//!   region, and their cost is timed separately. This restarts the profiler for every sample, a
//!   harsher regime than the hook's one profile per benchmark.
//!
//! After criterion's run the bench reads criterion's own estimates
//! (`target/criterion/workload/*/*/new/estimates.json`, written by this run) and prints the
//! ratios profiled / plain and hook / plain of criterion's reported time (the slope), the mean
//! and the median, per round and pooled, with the spread of `plain` across rounds as the noise
//! floor, and the hook's start and stop costs. Every variant times its batches with the same
//! loop (`iter_custom`), and also in the thread's CPU time: on a busy machine wall time swings
//! with preemption by other processes, CPU time does not, yet it includes the profiler's signal
//! handler, which runs on the benchmark's thread. Those CPU-time ratios are printed too, with
//! the share of wall time each variant spent on a CPU.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use criterion::profiler::Profiler as _;
use criterion::{criterion_group, BenchmarkId, Criterion};
use rprof_core::Profile;
use rprof_harness::pprof;

/// The hook's rate, and its default.
const HZ: u32 = 1000;
/// Rounds of (plain, profiled, hook) in a full run, unless `RPROF_BENCH_ROUNDS` says otherwise.
const ROUNDS: usize = 5;
const GROUP: &str = "workload";
const VARIANTS: [&str; 3] = ["plain", "profiled", "hook"];
const SEED: u64 = 0x5eed;
/// Criterion's samples per benchmark.
const SAMPLES: usize = 40;

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
        h = mix(h ^ u64::from(i));
    }
    h
}

/// The code under test: deterministic hashing, about 50-100 µs per call.
#[inline(never)]
fn workload(seed: u64) -> u64 {
    let mut h = seed;
    for k in 0..16 {
        h = hash_block(black_box(h ^ k), 2048);
    }
    h
}

/// One timed batch of criterion's: its iterations, their wall time (what criterion gets) and
/// this thread's CPU time over the same span.
#[derive(Clone, Copy)]
struct Batch {
    iters: u64,
    wall: Duration,
    cpu: Duration,
}

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is valid for writes; the clock id is a constant every Linux has.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// `iters` calls of the workload, timed as `Bencher::iter` times them (every variant uses this
/// through `iter_custom`, so they run the same loop).
fn run_batch(iters: u64) -> Batch {
    let cpu = thread_cpu_time();
    let start = Instant::now();
    for _ in 0..iters {
        black_box(workload(black_box(SEED)));
    }
    let wall = start.elapsed();
    Batch {
        iters,
        wall,
        cpu: thread_cpu_time() - cpu,
    }
}

/// Least-squares slope through the origin of time against iterations (criterion's estimator),
/// in nanoseconds per iteration: (wall, cpu).
fn slopes(batches: &[Batch]) -> (f64, f64) {
    let xx: f64 = batches.iter().map(|b| (b.iters as f64).powi(2)).sum();
    let slope = |f: fn(&Batch) -> Duration| {
        batches
            .iter()
            .map(|b| b.iters as f64 * f(b).as_nanos() as f64)
            .sum::<f64>()
            / xx
    };
    (slope(|b| b.wall), slope(|b| b.cpu))
}

/// What the profiled variants saw, for the report after criterion's run.
#[derive(Default)]
struct Observed {
    /// Per round and variant: (wall, cpu) ns per iteration of criterion's measured batches.
    clocks: Vec<[Option<(f64, f64)>; 3]>,
    /// Per `profiled` round: (samples, samples in the workload, cpu ns, stop + symbolize time).
    profiled: Vec<(i64, i64, i64, Duration)>,
    /// Every `hook.start_profiling` and `hook.stop_profiling` call's duration.
    hook_starts: Vec<Duration>,
    hook_stops: Vec<Duration>,
    /// Per `hook` round: samples in the last (largest) sample's profile.
    hook_samples: Vec<i64>,
}

static OBSERVED: Mutex<Option<Observed>> = Mutex::new(None);

fn observed<R>(f: impl FnOnce(&mut Observed) -> R) -> R {
    f(OBSERVED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(Observed::default))
}

/// `cargo bench` passes `--bench`; without it criterion runs each benchmark once (test mode),
/// too short for a profile to be expected to hold samples.
fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn hook_cost(c: &mut Criterion) {
    let full = full_run();
    let rounds = match std::env::var("RPROF_BENCH_ROUNDS") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("RPROF_BENCH_ROUNDS={v}: want a number >= 1")),
        _ if full => ROUNDS,
        _ => 1,
    };
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("rprof-hook-cost-{}", std::process::id()));
    let mut group = c.benchmark_group(GROUP);
    for round in 1..=rounds {
        for k in 0..VARIANTS.len() {
            let v = (k + round - 1) % VARIANTS.len();
            let id = BenchmarkId::new(VARIANTS[v], round);
            let mut batches = Vec::new();
            match VARIANTS[v] {
                "plain" => {
                    group.bench_function(id, |b| {
                        b.iter_custom(|iters| {
                            let batch = run_batch(iters);
                            batches.push(batch);
                            batch.wall
                        })
                    });
                }
                "profiled" => {
                    let cpu = pprof::start_cpu_profile(HZ).expect("start the CPU profile");
                    group.bench_function(id, |b| {
                        b.iter_custom(|iters| {
                            let batch = run_batch(iters);
                            batches.push(batch);
                            batch.wall
                        })
                    });
                    let stop = Instant::now();
                    let profile = cpu.stop().expect("stop the CPU profile");
                    let stop = stop.elapsed();
                    let (samples, in_workload, cpu_ns) = counts(&profile);
                    if full {
                        assert!(
                            in_workload > 0 && cpu_ns > 0,
                            "profiled/{round}: the profile has no samples of the workload"
                        );
                    }
                    observed(|o| o.profiled.push((samples, in_workload, cpu_ns, stop)));
                }
                _ => {
                    let dir = tmp.join(format!("hook-{round}"));
                    let name = format!("{GROUP}/hook/{round}");
                    let mut hook = rprof_harness::criterion::Profiler::new(HZ);
                    let (mut starts, mut stops) = (Vec::new(), Vec::new());
                    group.bench_function(id, |b| {
                        b.iter_custom(|iters| {
                            let t = Instant::now();
                            hook.start_profiling(&name, &dir);
                            starts.push(t.elapsed());
                            let batch = run_batch(iters);
                            batches.push(batch);
                            let t = Instant::now();
                            // The hook reports every file it writes on stderr; keep criterion's
                            // output readable.
                            quiet_stderr(|| hook.stop_profiling(&name, &dir));
                            stops.push(t.elapsed());
                            batch.wall
                        })
                    });
                    let file = dir.join("cpu.pb.gz");
                    let samples = rprof_core::codec::read_file(&file)
                        .map(|p| counts(&p).1)
                        .unwrap_or_else(|e| panic!("hook/{round}: {}: {e}", file.display()));
                    if full {
                        assert!(
                            samples > 0,
                            "hook/{round}: {} has no samples of the workload",
                            file.display()
                        );
                    }
                    observed(|o| {
                        o.hook_starts.extend(starts);
                        o.hook_stops.extend(stops);
                        o.hook_samples.push(samples);
                    });
                }
            }
            // Criterion's measured batches are the last SAMPLES (warm-up calls come first).
            let measured = &batches[batches.len().saturating_sub(SAMPLES)..];
            observed(|o| {
                if o.clocks.len() < round {
                    o.clocks.resize(round, [None; 3]);
                }
                o.clocks[round - 1][v] = Some(slopes(measured));
            });
        }
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&tmp);
}

/// (samples, samples with the workload on their stack, cpu nanoseconds) of a CPU profile.
fn counts(p: &Profile) -> (i64, i64, i64) {
    let samples = p.sample_index("samples").expect("a CPU profile");
    let cpu = p.sample_index("cpu").expect("a CPU profile");
    let in_workload = p
        .sample
        .iter()
        .filter(|s| {
            s.location_id.iter().any(|&l| {
                p.location_by_id(l).is_some_and(|l| {
                    l.line.iter().any(|line| {
                        p.function_by_id(line.function_id)
                            .is_some_and(|f| p.str(f.name).ends_with("hook_cost::workload"))
                    })
                })
            })
        })
        .map(|s| s.value[samples])
        .sum();
    (p.total(samples), in_workload, p.total(cpu))
}

/// Run `f` with file descriptor 2 on /dev/null.
fn quiet_stderr<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: plain descriptor calls on descriptors this function owns, with a NUL-terminated
    // path; stderr is restored before returning.
    let saved = unsafe { libc::dup(2) };
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if saved < 0 || null < 0 {
        // SAFETY: closing descriptors opened above.
        unsafe {
            if saved >= 0 {
                libc::close(saved);
            }
            if null >= 0 {
                libc::close(null);
            }
        }
        return f();
    }
    // SAFETY: both descriptors are open.
    unsafe {
        libc::dup2(null, 2);
        libc::close(null);
    }
    let r = f();
    // SAFETY: `saved` is the original stderr, open until closed here.
    unsafe {
        libc::dup2(saved, 2);
        libc::close(saved);
    }
    r
}

criterion_group! {
    name = benches;
    // About 4 s per benchmark (1 s warm-up, 3 s of samples; `hook` adds its stops), three per
    // round: about 1.5 minutes for five rounds.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(SAMPLES);
    targets = hook_cost
}

fn main() {
    let started = SystemTime::now();
    benches();
    Criterion::default().configure_from_args().final_summary();
    report(started);
}

/// Point estimates (ns) from criterion's `estimates.json`: (slope or mean, mean, median).
#[derive(Clone, Copy)]
struct Estimates {
    time: f64,
    mean: f64,
    median: f64,
}

/// Where criterion writes its results, by its own rules (`$CRITERION_HOME`,
/// `$CARGO_TARGET_DIR/criterion`, else the target directory this bench was built into).
fn criterion_home() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(home.into());
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(Path::new(&target).join("criterion"));
    }
    // target/<profile>/deps/hook_cost-<hash>
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("criterion"))
}

/// This run's estimates of `workload/<variant>/<round>`, or `None` when criterion wrote none
/// (test mode, a filtered-out benchmark) or the file predates the run.
fn estimates(home: &Path, variant: &str, round: usize, since: SystemTime) -> Option<Estimates> {
    let file = home
        .join(GROUP)
        .join(variant)
        .join(round.to_string())
        .join("new")
        .join("estimates.json");
    if std::fs::metadata(&file).ok()?.modified().ok()? < since {
        return None;
    }
    let json = std::fs::read_to_string(&file).ok()?;
    let mean = point_estimate(&json, "mean")?;
    Some(Estimates {
        time: point_estimate(&json, "slope").unwrap_or(mean),
        mean,
        median: point_estimate(&json, "median")?,
    })
}

/// `"<key>":{..."point_estimate":N...}` in criterion's estimates.json (`"slope":null` has none).
fn point_estimate(json: &str, key: &str) -> Option<f64> {
    let rest = &json[json.find(&format!("\"{key}\":"))? + key.len() + 3..];
    if rest.starts_with("null") {
        return None;
    }
    let rest = &rest[rest.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
    let end = rest.find([',', '}'])?;
    rest[..end].trim().parse().ok()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn report(started: SystemTime) {
    let o = OBSERVED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or_default();
    println!();
    println!("== rprof criterion hook cost ({HZ} Hz) ==");
    for (round, (samples, in_workload, cpu_ns, stop)) in o.profiled.iter().enumerate() {
        println!(
            "profiled/{}: profile of {samples} samples ({:.0} ms cpu), {in_workload} in the \
             workload; stop + symbolize {:.1} ms (outside the measurement)",
            round + 1,
            *cpu_ns as f64 / 1e6,
            ms(*stop)
        );
    }
    if !o.hook_stops.is_empty() {
        let starts: Vec<f64> = o.hook_starts.iter().map(|&d| ms(d)).collect();
        let stops: Vec<f64> = o.hook_stops.iter().map(|&d| ms(d)).collect();
        println!(
            "hook: {} start_profiling/stop_profiling pairs (one per sample and warm-up call); \
             start median {:.2} ms, stop (symbolize + write cpu.pb.gz + cpu.svg) median {:.1} \
             ms, max {:.1} ms, all outside the measurement; workload samples in each round's \
             last profile: {:?}",
            stops.len(),
            median(starts),
            median(stops.clone()),
            stops.iter().copied().fold(0.0, f64::max),
            o.hook_samples
        );
    }

    let Some(home) = criterion_home() else {
        println!("(criterion's output directory is unknown: no ratios)");
        return;
    };
    let rounds = o.profiled.len().max(o.hook_samples.len());
    let mut rows: Vec<[Estimates; 3]> = Vec::new();
    for round in 1..=rounds {
        let e = VARIANTS.map(|v| estimates(&home, v, round, started));
        if let [Some(plain), Some(profiled), Some(hook)] = e {
            rows.push([plain, profiled, hook]);
        }
    }
    if rows.is_empty() {
        println!(
            "(no estimates from this run under {}: criterion's test mode or a filter; no ratios)",
            home.display()
        );
        return;
    }
    println!(
        "criterion's estimates (time = slope, as criterion reports it), {} round(s):",
        rows.len()
    );
    println!(
        "{:<6} {:>11} {:>11} {:>11}   {:<20}   {:<20}",
        "round",
        "plain µs",
        "profiled µs",
        "hook µs",
        "profiled/plain: time mean median",
        "hook/plain: time mean median"
    );
    type Field = fn(&Estimates) -> f64;
    let fields: [Field; 3] = [|e| e.time, |e| e.mean, |e| e.median];
    let ratios = |r: &[Estimates; 3], v: usize| fields.map(|f| f(&r[v]) / f(&r[0]));
    for (i, r) in rows.iter().enumerate() {
        let (p, h) = (ratios(r, 1), ratios(r, 2));
        println!(
            "{:<6} {:>11.2} {:>11.2} {:>11.2}   {:>20.3} {:.3} {:>6.3}   {:>17.3} {:.3} {:>6.3}",
            i + 1,
            r[0].time / 1e3,
            r[1].time / 1e3,
            r[2].time / 1e3,
            p[0],
            p[1],
            p[2],
            h[0],
            h[1],
            h[2]
        );
    }
    // Pooled: ratio of the sums over rounds; paired: median (and range) of per-round ratios.
    let pooled = |v: usize| fields.map(|f| rows.iter().map(|r| f(&r[v])).sum::<f64>());
    let paired = |v: usize, k: usize| -> (f64, f64, f64) {
        let per_round: Vec<f64> = rows.iter().map(|r| ratios(r, v)[k]).collect();
        let lo = per_round.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = per_round.iter().copied().fold(0.0, f64::max);
        (median(per_round), lo, hi)
    };
    let plain_times: Vec<f64> = rows.iter().map(|r| r[0].time).collect();
    let spread = plain_times.iter().copied().fold(0.0, f64::max)
        / plain_times.iter().copied().fold(f64::INFINITY, f64::min);
    println!("noise floor: plain's time varies by a factor {spread:.3} across rounds (max / min)");
    let plain = pooled(0);
    println!(
        "ratios of criterion's estimates    time   mean median   (time per round: median, range)"
    );
    for (v, label) in [
        (1, "hook cost ratio (profiled/plain):"),
        (2, "hook object ratio (hook/plain):  "),
    ] {
        let sums = pooled(v);
        let (med, lo, hi) = paired(v, 0);
        println!(
            "{label} {:.3}  {:.3}  {:.3}   ({med:.3}, {lo:.3}..{hi:.3})",
            sums[0] / plain[0],
            sums[1] / plain[1],
            sums[2] / plain[2]
        );
    }
    println!("(pooled over rounds: the ratio of the sums of each variant's estimates)");

    // The same batches in this thread's CPU time: the profiler's own work (its signal handler
    // runs on this thread) counts, time the thread spent preempted by other processes does not.
    let clocks: Vec<[(f64, f64); 3]> = o
        .clocks
        .iter()
        .filter_map(|r| Some([r[0]?, r[1]?, r[2]?]))
        .collect();
    println!();
    println!(
        "the same measured batches in thread CPU time (preemption excluded), slope per iteration:"
    );
    println!(
        "{:<6} {:>11} {:>11} {:>11}   {:>14} {:>10}   on-CPU share: plain profiled   hook",
        "round", "plain µs", "profiled µs", "hook µs", "profiled/plain", "hook/plain"
    );
    for (i, r) in clocks.iter().enumerate() {
        println!(
            "{:<6} {:>11.2} {:>11.2} {:>11.2}   {:>14.3} {:>10.3}   {:>18.1}% {:>7.1}% {:>5.1}%",
            i + 1,
            r[0].1 / 1e3,
            r[1].1 / 1e3,
            r[2].1 / 1e3,
            r[1].1 / r[0].1,
            r[2].1 / r[0].1,
            100.0 * r[0].1 / r[0].0,
            100.0 * r[1].1 / r[1].0,
            100.0 * r[2].1 / r[2].0
        );
    }
    for (v, label) in [
        (1, "cpu-time ratio (profiled/plain):"),
        (2, "cpu-time ratio (hook/plain):    "),
    ] {
        let per_round: Vec<f64> = clocks.iter().map(|r| r[v].1 / r[0].1).collect();
        let lo = per_round.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = per_round.iter().copied().fold(0.0, f64::max);
        let sum = |v: usize| clocks.iter().map(|r| r[v].1).sum::<f64>();
        println!(
            "{label} pooled {:.3}   per round: median {:.3}, {lo:.3}..{hi:.3}",
            sum(v) / sum(0),
            median(per_round)
        );
    }
}
