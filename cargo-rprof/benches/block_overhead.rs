//! Overhead of the block profiler (and of the block and mutex profilers together): a lock-heavy
//! workload run with and without the preload library, side by side in one run, at
//! `RPROF_BLOCKPROFILERATE=1` (every wait recorded) and `RPROF_MUTEXPROFILEFRACTION=1`.
//!
//! ```text
//! cargo bench -p cargo-rprof --bench block_overhead
//! RPROF_BENCH_ROUNDS=2 cargo bench -p cargo-rprof --bench block_overhead     # quick smoke run
//! ```
//!
//! The workload is a small Rust program compiled once with `rustc` as `cargo rprof` compiles
//! test binaries (frame pointers, line tables). It runs three phases, each sized to a third of
//! the target time: four threads updating a table behind one `std::sync::Mutex` (critical
//! sections longer than std's spin, so waiters park on the futex), an `mpsc` ping-pong between
//! two threads, and a one-item buffer handed from a producer to a consumer with a `Mutex` and two
//! `Condvar`s. Each hand-off is a futex wait and wake-up (a few 100 000 futex calls a second);
//! the mutex phase parks less often than its contention suggests (hundreds to thousands of times
//! a second on a 2-CPU VM), as a running thread usually re-takes the lock before a parked one
//! wakes up. The workload reports, per phase, its operation count, the phase's time and the
//! time its threads spent waiting (contended `lock()`, `recv()`, `Condvar::wait`), measured by
//! itself.
//!
//! The two hand-off phases run pinned to one CPU by default, so every hand-off is a same-CPU
//! context switch: the fastest a hand-off gets, hence the largest relative overhead, and a
//! stable one. Across CPUs, a hand-off's time is mostly the time it takes to wake an idle CPU
//! (tens of µs on a VM, or nothing when another process keeps it busy), which swings the phase
//! by a factor of several from run to run, profiled or not, and drowns the profiler's cost.
//!
//! Runs are interleaved round-robin (plain, block, block+mutex, plain, ...; the starting
//! configuration rotates every round), so drift of the machine hits every configuration alike.
//! Each run's wall time, the child's CPU time (user + sys, from `wait4`), the time the workload
//! measures around its phases and each phase's throughput are recorded; every profiled run must
//! leave decodable block (and mutex) profiles with Go's sample types `contentions/count` and
//! `delay/nanoseconds` and some contentions, or the bench fails.
//!
//! The phases do a fixed number of operations, so the throughput of the whole work loop
//! (plain ÷ profiled operations per second) is the ratio of work-loop times. It is reported as
//! the headline next to the wall-time ratio: it leaves out process start-up and exit, which
//! `outside` reports separately.
//!
//! Settings (environment):
//! - `RPROF_BENCH_ROUNDS` (default 10): runs per configuration;
//! - `RPROF_BENCH_SECONDS` (default 1.0): target work-loop seconds of an unprofiled run;
//! - `RPROF_BENCH_BLOCKRATE` (default 1): `RPROF_BLOCKPROFILERATE` of the profiled runs; e.g.
//!   `1000000000` keeps few events, so the table updates drop out of the cost (the interposers,
//!   their clock reads and the stack walk, which re-waits are recognised by, remain); the block
//!   profile may then be empty, which is reported but not an error;
//! - `RPROF_BENCH_PIN` (default 1): 0 lets the hand-off phases' threads run on any CPU.
//!
//! Without the `--bench` argument that `cargo bench` passes (`cargo test --benches`, or the binary
//! run by hand) the defaults shrink to one round of 0.15 s: a smoke run that still checks every
//! profiled run wrote its profiles. Other arguments are ignored.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{build_workload, env_or, median, min, ratio_line, spawn_and_reap, timeval, Reaped};

const PRELOAD_SO: &str = env!("RPROF_PRELOAD_SO");

/// The workload's phases, in the order it runs and reports them.
const PHASES: [&str; 3] = ["mutex", "channel", "condvar"];

/// The workload. Arguments: `<mutex iterations per thread> <ping-pongs> <handoffs> <pin>` (0
/// skips a phase; pin 1 runs the hand-off phases on one CPU); prints
/// `phase <name> <operations> <phase ns> <waited ns> <checksum>` for each phase run, then
/// `total <work-loop ns>`.
const WORKLOAD: &str = r#"
use std::hint::black_box;
use std::sync::mpsc;
use std::sync::{Condvar, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

const MUTEX_THREADS: u64 = 4;
/// Work inside the critical section (~7 µs): longer than std's spin, so waiters park.
const CRITICAL: u32 = 2000;
/// Work between two critical sections.
const OUTSIDE: u32 = 1000;

#[inline(never)]
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[inline(never)]
fn compute(seed: u64, n: u32) -> u64 {
    let mut h = seed;
    for i in 0..black_box(n) {
        h = mix(h ^ i as u64);
    }
    h
}

/// The state behind the contended lock.
struct Table {
    slots: [u64; 64],
    updates: u64,
}

#[inline(never)]
fn lock_table<'a>(m: &'a Mutex<Table>, waited: &mut Duration) -> MutexGuard<'a, Table> {
    match m.try_lock() {
        Ok(g) => g,
        Err(TryLockError::WouldBlock) => {
            let t = Instant::now();
            let g = m.lock().unwrap();
            *waited += t.elapsed();
            g
        }
        Err(TryLockError::Poisoned(_)) => panic!("poisoned lock"),
    }
}

#[inline(never)]
fn update_table(m: &Mutex<Table>, key: u64, waited: &mut Duration) -> u64 {
    let mut t = lock_table(m, waited);
    let i = (key % 64) as usize;
    t.slots[i] = compute(t.slots[i] ^ key, CRITICAL);
    t.updates += 1;
    t.slots[i]
}

#[inline(never)]
fn mutex_worker(m: &Mutex<Table>, iters: u64, seed: u64) -> (u64, Duration) {
    let mut waited = Duration::ZERO;
    let mut acc = seed;
    for i in 0..iters {
        acc ^= update_table(m, acc ^ i, &mut waited);
        acc = compute(acc, OUTSIDE);
    }
    (acc, waited)
}

#[inline(never)]
fn mutex_phase(iters: u64) -> (u64, Duration) {
    let m = Mutex::new(Table { slots: [0; 64], updates: 0 });
    let results: Vec<(u64, Duration)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..MUTEX_THREADS)
            .map(|t| {
                let m = &m;
                s.spawn(move || mutex_worker(m, iters, t))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(m.lock().unwrap().updates, iters * MUTEX_THREADS);
    results
        .iter()
        .fold((0, Duration::ZERO), |(a, w), &(x, d)| (a ^ x, w + d))
}

#[inline(never)]
fn timed_recv(rx: &mpsc::Receiver<u64>, waited: &mut Duration) -> Option<u64> {
    let t = Instant::now();
    let v = rx.recv().ok();
    *waited += t.elapsed();
    v
}

#[inline(never)]
fn ping(tx: mpsc::Sender<u64>, rx: mpsc::Receiver<u64>, n: u64) -> (u64, Duration) {
    let mut waited = Duration::ZERO;
    let mut v = 1;
    for _ in 0..n {
        tx.send(compute(v, 8)).unwrap();
        v = timed_recv(&rx, &mut waited).unwrap();
    }
    (v, waited)
}

#[inline(never)]
fn pong(tx: mpsc::Sender<u64>, rx: mpsc::Receiver<u64>) -> Duration {
    let mut waited = Duration::ZERO;
    while let Some(v) = timed_recv(&rx, &mut waited) {
        tx.send(compute(v, 8)).unwrap();
    }
    waited
}

#[inline(never)]
fn channel_phase(n: u64) -> (u64, Duration) {
    let (tx1, rx1) = mpsc::channel();
    let (tx2, rx2) = mpsc::channel();
    let ponger = std::thread::spawn(move || pong(tx2, rx1));
    let (v, w1) = ping(tx1, rx2, n);
    let w2 = ponger.join().unwrap();
    (v, w1 + w2)
}

/// A one-item buffer handed from a producer to a consumer.
struct Slot {
    item: Mutex<Option<u64>>,
    filled: Condvar,
    emptied: Condvar,
}

#[inline(never)]
fn put(slot: &Slot, v: u64, waited: &mut Duration) {
    let mut g = slot.item.lock().unwrap();
    while g.is_some() {
        let t = Instant::now();
        g = slot.emptied.wait(g).unwrap();
        *waited += t.elapsed();
    }
    *g = Some(v);
    drop(g);
    slot.filled.notify_one();
}

#[inline(never)]
fn take(slot: &Slot, waited: &mut Duration) -> u64 {
    let mut g = slot.item.lock().unwrap();
    loop {
        if let Some(v) = g.take() {
            drop(g);
            slot.emptied.notify_one();
            return v;
        }
        let t = Instant::now();
        g = slot.filled.wait(g).unwrap();
        *waited += t.elapsed();
    }
}

#[inline(never)]
fn producer(slot: &Slot, n: u64) -> Duration {
    let mut waited = Duration::ZERO;
    for i in 0..n {
        put(slot, compute(i, 8), &mut waited);
    }
    waited
}

#[inline(never)]
fn consumer(slot: &Slot, n: u64) -> (u64, Duration) {
    let mut waited = Duration::ZERO;
    let mut acc = 0;
    for _ in 0..n {
        acc ^= compute(take(slot, &mut waited), 8);
    }
    (acc, waited)
}

#[inline(never)]
fn condvar_phase(n: u64) -> (u64, Duration) {
    let slot = Slot {
        item: Mutex::new(None),
        filled: Condvar::new(),
        emptied: Condvar::new(),
    };
    std::thread::scope(|s| {
        let c = s.spawn(|| consumer(&slot, n));
        let w1 = producer(&slot, n);
        let (v, w2) = c.join().unwrap();
        (v, w1 + w2)
    })
}

fn phase(name: &str, ops: u64, f: impl FnOnce() -> (u64, Duration)) {
    let start = Instant::now();
    let (sum, waited) = f();
    let ns = start.elapsed().as_nanos();
    println!("phase {name} {ops} {ns} {} {sum}", waited.as_nanos());
}

extern "C" {
    fn sched_getaffinity(pid: i32, size: usize, mask: *mut u64) -> i32;
    fn sched_setaffinity(pid: i32, size: usize, mask: *const u64) -> i32;
}

/// Pin the calling thread, and so the threads it starts from now on, to the last CPU it may
/// run on.
fn pin_to_one_cpu() {
    let mut mask = [0u64; 16];
    // SAFETY: the mask is 128 writable bytes, as told.
    if unsafe { sched_getaffinity(0, 128, mask.as_mut_ptr()) } != 0 {
        return;
    }
    if let Some(cpu) = (0..1024).rev().find(|&c| mask[c / 64] >> (c % 64) & 1 == 1) {
        let mut one = [0u64; 16];
        one[cpu / 64] = 1 << (cpu % 64);
        // SAFETY: the mask is 128 readable bytes, as told.
        unsafe { sched_setaffinity(0, 128, one.as_ptr()) };
    }
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let (iters, pings, handoffs, pin) = (args[0], args[1], args[2], args[3] != 0);
    let start = Instant::now();
    if iters > 0 {
        phase("mutex", iters * MUTEX_THREADS, || mutex_phase(iters));
    }
    if pin {
        pin_to_one_cpu();
    }
    if pings > 0 {
        phase("channel", pings, || channel_phase(pings));
    }
    if handoffs > 0 {
        phase("condvar", handoffs, || condvar_phase(handoffs));
    }
    println!("total {}", start.elapsed().as_nanos());
}
"#;

/// One way of running the workload.
#[derive(Clone, Copy, PartialEq)]
enum Config {
    Plain,
    Block,
    BlockMutex,
}

impl Config {
    fn label(self) -> &'static str {
        match self {
            Config::Plain => "plain",
            Config::Block => "block",
            Config::BlockMutex => "block+mutex",
        }
    }
}

const CONFIGS: [Config; 3] = [Config::Plain, Config::Block, Config::BlockMutex];

/// What the workload reported about one phase.
#[derive(Clone, Copy, Default)]
struct Phase {
    ops: u64,
    time: Duration,
    /// Time its threads spent in contended waits, by their own clocks (summed over threads).
    waited: Duration,
}

impl Phase {
    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.time.as_secs_f64()
    }
}

/// Totals of a block or mutex profile.
#[derive(Clone, Copy, Default)]
struct Totals {
    contentions: i64,
    delay_ns: i64,
    /// Whether the profile says events were lost (tables full).
    lost: bool,
}

/// What one run measured.
#[derive(Clone, Copy, Default)]
struct Run {
    wall: Duration,
    cpu: Duration,
    /// CPU time the rest of the machine used during the run (all of it, from `/proc/stat`,
    /// less the child's): other processes competing for the cores.
    others: Duration,
    /// The workload's own measurement of its phases (no process start-up or exit).
    work: Duration,
    phases: [Phase; 3],
    /// From the profiles (profiled runs only; `mutex` for block+mutex only).
    block: Totals,
    mutex: Totals,
}

impl Run {
    fn waited(&self) -> Duration {
        self.phases.iter().map(|p| p.waited).sum()
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("block_overhead bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`, or run by hand) this
    // is a smoke run, as with criterion. Other arguments are ignored.
    let full = std::env::args().any(|a| a == "--bench");
    let rounds: usize = env_or("RPROF_BENCH_ROUNDS", if full { 10 } else { 1 })?;
    let seconds: f64 = env_or("RPROF_BENCH_SECONDS", if full { 1.0 } else { 0.15 })?;
    let rate: u64 = env_or("RPROF_BENCH_BLOCKRATE", 1)?;
    let pin: u8 = env_or("RPROF_BENCH_PIN", 1)?;
    if rounds == 0 || seconds <= 0.0 || rate == 0 {
        return Err(
            "need RPROF_BENCH_ROUNDS >= 1, RPROF_BENCH_SECONDS > 0, RPROF_BENCH_BLOCKRATE >= 1"
                .into(),
        );
    }
    let so = Path::new(PRELOAD_SO);
    if !so.is_file() {
        return Err(format!("preload library {} is missing", so.display()));
    }

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("rprof-block-overhead-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = build_workload(&dir, WORKLOAD).and_then(|exe| {
        let setup = Setup {
            exe,
            so: so.to_owned(),
            rate,
            pin: pin != 0,
        };
        bench(&dir, &setup, rounds, seconds)
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// What every run of the workload shares.
struct Setup {
    exe: PathBuf,
    so: PathBuf,
    /// `RPROF_BLOCKPROFILERATE` of the profiled runs.
    rate: u64,
    /// Whether the hand-off phases run on one CPU.
    pin: bool,
}

fn bench(dir: &Path, setup: &Setup, rounds: usize, seconds: f64) -> Result<(), String> {
    let counts = calibrate(setup, seconds)?;
    println!(
        "workload: {} mutex iterations x 4 threads, {} ping-pongs, {} condvar handoffs{} \
         (~{seconds} s unprofiled), {rounds} rounds, block rate {}, mutex fraction 1, {} cores",
        counts[0],
        counts[1],
        counts[2],
        if setup.pin { " on one CPU" } else { "" },
        setup.rate,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("preload:  {}", setup.so.display());
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load:     {}", load.trim());
    }

    // results[config] = runs
    let mut results = vec![Vec::with_capacity(rounds); CONFIGS.len()];
    let started = Instant::now();
    let mut n = 0usize;
    for round in 0..rounds {
        for k in 0..CONFIGS.len() {
            // Rotate the starting configuration so none always runs first after a switch.
            let ci = (k + round) % CONFIGS.len();
            let files = Files {
                block: dir.join(format!("block-{n}.prof")),
                mutex: dir.join(format!("mutex-{n}.prof")),
            };
            n += 1;
            let run = run_once(setup, counts, CONFIGS[ci], &files)?;
            results[ci].push(run);
        }
        eprint!(
            "\rround {}/{rounds} ({:.0} s)",
            round + 1,
            started.elapsed().as_secs_f64()
        );
    }
    eprintln!();
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load:     {} (after)", load.trim());
    }

    report(&results, setup.rate);
    Ok(())
}

/// Operation counts of each phase that take about a third of `seconds` each, unprofiled.
fn calibrate(setup: &Setup, seconds: f64) -> Result<[u64; 3], String> {
    let target = seconds / PHASES.len() as f64;
    let none = Files {
        block: PathBuf::new(),
        mutex: PathBuf::new(),
    };
    let mut counts = [0u64; 3];
    for (i, start) in [100u64, 1000, 1000].into_iter().enumerate() {
        let time = |n: u64| -> Result<f64, String> {
            let mut c = [0u64; 3];
            c[i] = n;
            let run = run_once(setup, c, Config::Plain, &none)?;
            Ok(run.phases[i].time.as_secs_f64())
        };
        let scale = |n: u64, t: f64| ((n as f64) * target / t).max(1.0) as u64;
        let mut n = start;
        loop {
            let t = time(n)?;
            if t >= target * 0.4 {
                // One more at the estimated size, as contention depends on the run's length.
                let n = scale(n, t);
                counts[i] = scale(n, time(n)?);
                break;
            }
            n *= 4;
        }
    }
    Ok(counts)
}

/// Where a profiled run writes its profiles.
struct Files {
    block: PathBuf,
    mutex: PathBuf,
}

/// Run the workload once and reap it with `wait4` for its resource usage.
fn run_once(setup: &Setup, counts: [u64; 3], config: Config, files: &Files) -> Result<Run, String> {
    let mut cmd = Command::new(&setup.exe);
    cmd.args(counts.map(|c| c.to_string()))
        .arg(if setup.pin { "1" } else { "0" })
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .env_remove("LD_PRELOAD");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("RPROF_") {
            cmd.env_remove(k);
        }
    }
    if config != Config::Plain {
        let _ = std::fs::remove_file(&files.block);
        cmd.env("LD_PRELOAD", &setup.so)
            .env("RPROF_BLOCKPROFILE", &files.block)
            .env("RPROF_BLOCKPROFILERATE", setup.rate.to_string());
    }
    if config == Config::BlockMutex {
        let _ = std::fs::remove_file(&files.mutex);
        cmd.env("RPROF_MUTEXPROFILE", &files.mutex)
            .env("RPROF_MUTEXPROFILEFRACTION", "1");
    }
    let busy = machine_busy();
    let Reaped {
        stdout,
        status,
        usage,
        wall,
    } = spawn_and_reap(&mut cmd, &setup.exe.display().to_string())?;
    let busy = machine_busy().zip(busy).map(|(b, a)| b.saturating_sub(a));
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(format!(
            "workload ({}) failed: wait status {status:#x}",
            config.label()
        ));
    }
    let mut run = parse_output(&stdout, counts)?;
    run.wall = wall;
    run.cpu = timeval(usage.ru_utime) + timeval(usage.ru_stime);
    run.others = busy.map_or(Duration::ZERO, |b| b.saturating_sub(run.cpu));
    if config != Config::Plain {
        run.block = check_profile(&files.block, "block", setup.rate == 1)?;
        let _ = std::fs::remove_file(&files.block);
    }
    if config == Config::BlockMutex {
        run.mutex = check_profile(&files.mutex, "mutex", true)?;
        let _ = std::fs::remove_file(&files.mutex);
    }
    Ok(run)
}

/// Read the workload's `phase ...` and `total ...` lines; every phase asked for must be there.
fn parse_output(stdout: &str, counts: [u64; 3]) -> Result<Run, String> {
    let bad = || format!("unexpected workload output {stdout:?}");
    let mut run = Run::default();
    let mut seen = [false; 3];
    let mut total = None;
    for line in stdout.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["phase", name, ops, ns, waited, _checksum] => {
                let i = PHASES.iter().position(|p| p == name).ok_or_else(bad)?;
                let num = |s: &str| s.parse::<u64>().map_err(|_| bad());
                run.phases[i] = Phase {
                    ops: num(ops)?,
                    time: Duration::from_nanos(num(ns)?),
                    waited: Duration::from_nanos(num(waited)?),
                };
                seen[i] = true;
            }
            ["total", ns] => total = Some(ns.parse::<u64>().map_err(|_| bad())?),
            _ => return Err(bad()),
        }
    }
    let complete = (0..PHASES.len()).all(|i| seen[i] == (counts[i] > 0));
    match total {
        Some(ns) if complete => {
            run.work = Duration::from_nanos(ns);
            Ok(run)
        }
        _ => Err(bad()),
    }
}

/// CPU time all cores have spent busy since boot (`/proc/stat`; clock-tick resolution).
fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is counted in user).
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| fields.get(i).copied().unwrap_or(0))
        .sum::<u64>();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Some(Duration::from_nanos(busy * 1_000_000_000 / hz))
}

/// Decode a block or mutex profile: Go's sample types, and (if `need_events`) some contentions.
fn check_profile(path: &Path, what: &str, need_events: bool) -> Result<Totals, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("{what} profile was not written at {}: {e}", path.display()))?;
    if meta.len() == 0 {
        return Err(format!("{what} profile {} is empty", path.display()));
    }
    let p = rprof_core::codec::read_file(path).map_err(|e| format!("{what} profile: {e}"))?;
    let types: Vec<(String, String)> = p
        .sample_type
        .iter()
        .map(|vt| p.value_type_name(vt))
        .collect();
    let want = [("contentions", "count"), ("delay", "nanoseconds")];
    if types.len() != want.len()
        || types
            .iter()
            .zip(want)
            .any(|((t, u), (wt, wu))| t != wt || u != wu)
    {
        return Err(format!(
            "{what} profile {} has sample types {types:?}, not contentions/count delay/nanoseconds",
            path.display()
        ));
    }
    let totals = Totals {
        contentions: p.total(0),
        delay_ns: p.total(1),
        lost: p.comment.iter().any(|&c| p.str(c).contains("lost")),
    };
    if totals.contentions < 0 || totals.delay_ns < 0 {
        return Err(format!(
            "{what} profile {} has negative totals",
            path.display()
        ));
    }
    if need_events && totals.contentions == 0 {
        return Err(format!(
            "{what} profile {} recorded no contentions ({} samples)",
            path.display(),
            p.sample.len()
        ));
    }
    Ok(totals)
}

/// A measurement of a run, by name.
type Metric = (&'static str, fn(&Run) -> Duration);

const METRICS: [Metric; 4] = [
    ("wall", |r| r.wall),
    ("cpu", |r| r.cpu),
    ("work", |r| r.work),
    // Process start-up and exit: loading the preload, starting the profilers, writing the
    // profiles.
    ("outside", |r| r.wall.saturating_sub(r.work)),
];

fn report(runs: &[Vec<Run>], rate: u64) {
    let secs = |runs: &[Run], f: fn(&Run) -> Duration| -> Vec<f64> {
        runs.iter().map(|r| f(r).as_secs_f64()).collect()
    };
    let med = |runs: &[Run], f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
    println!();
    println!(
        "== times ({} runs per configuration; cpu = child user + sys; others = CPU the rest \
         of the machine used meanwhile) ==",
        runs[0].len()
    );
    println!(
        "{:<12} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11}",
        "config",
        "wall med",
        "wall min",
        "cpu med",
        "cpu min",
        "work med",
        "work min",
        "outside med",
        "outside min",
        "others med",
        "others max"
    );
    for (ci, config) in CONFIGS.iter().enumerate() {
        let mut line = format!("{:<12}", config.label());
        for (_, f) in METRICS {
            let v = secs(&runs[ci], f);
            line += &format!(" {:>10.4}s {:>10.4}s", median(v.clone()), min(&v));
        }
        let others = secs(&runs[ci], |r| r.others);
        let max = others.iter().copied().fold(0.0, f64::max);
        line += &format!(" {:>10.4}s {max:>10.4}s", median(others));
        println!("{line}");
    }
    // Hand-offs between threads are at the scheduler's mercy when other processes want the
    // cores: say so when they did.
    let busy: Vec<f64> = runs
        .iter()
        .flatten()
        .map(|r| r.others.as_secs_f64() / r.wall.as_secs_f64())
        .collect();
    let loaded = busy.iter().filter(|&&b| b > 0.1).count();
    if loaded > 0 {
        println!(
            "note: other processes used more than 0.1 core during {loaded} of {} runs \
             (median {:.2} cores): expect noise",
            busy.len(),
            median(busy)
        );
    }

    println!();
    println!(
        "== throughput and waits (medians; waited = the workload's own clocks, all threads) =="
    );
    println!(
        "{:<12} {:>10} {:>10} {:>10} {:>9} {:>11} {:>10} {:>11} {:>10}",
        "config",
        "mutex/s",
        "channel/s",
        "condvar/s",
        "waited",
        "block cont",
        "block dly",
        "mutex cont",
        "mutex dly"
    );
    for (ci, config) in CONFIGS.iter().enumerate() {
        let r = &runs[ci];
        let mut line = format!("{:<12}", config.label());
        for i in 0..PHASES.len() {
            line += &format!(" {:>10.0}", med(r, &|run| run.phases[i].ops_per_sec()));
        }
        line += &format!(" {:>8.3}s", med(r, &|run| run.waited().as_secs_f64()));
        let block: Vec<Totals> = r.iter().map(|run| run.block).collect();
        let mutex: Vec<Totals> = r.iter().map(|run| run.mutex).collect();
        for (present, totals) in [
            (*config != Config::Plain, block),
            (*config == Config::BlockMutex, mutex),
        ] {
            if present {
                let c = median(totals.iter().map(|t| t.contentions as f64).collect());
                let d = median(totals.iter().map(|t| t.delay_ns as f64 / 1e9).collect());
                line += &format!(" {c:>11.0} {d:>9.3}s");
            } else {
                line += &format!(" {:>11} {:>10}", "-", "-");
            }
        }
        println!("{line}");
    }
    let lost = runs
        .iter()
        .flatten()
        .filter(|r| r.block.lost || r.mutex.lost)
        .count();
    if lost > 0 {
        println!("note: {lost} runs' profiles say events were lost (tables full)");
    }
    if rate != 1 {
        println!("note: block rate {rate}: the block profile keeps only a sample of the waits");
    }

    println!();
    println!(
        "profiled / plain: med = ratio of medians, min = of minimums, paired = median of \
         per-round ratios; ops/s as plain / profiled (> 1 = slower); outside = extra ms of \
         start-up + exit"
    );
    for (ci, config) in CONFIGS.iter().enumerate().skip(1) {
        let metrics: Vec<_> = METRICS
            .iter()
            .map(|&(name, f)| (name, secs(&runs[ci], f), secs(&runs[0], f)))
            .collect();
        println!("{}", ratio_line(config.label(), 12, &metrics));
        let mut line = format!("  {:<18}", "");
        for (i, phase) in PHASES.iter().enumerate() {
            let per_sec = |ci: usize| -> Vec<f64> {
                runs[ci].iter().map(|r| r.phases[i].ops_per_sec()).collect()
            };
            let (p, q) = (per_sec(ci), per_sec(0));
            let paired = median(p.iter().zip(&q).map(|(a, b)| b / a).collect());
            line += &format!(
                "  {phase} ops/s: med {:.3} paired {:.3}",
                median(q) / median(p),
                paired
            );
        }
        println!("{line}");
    }
    let headline = |f: fn(&Run) -> Duration| -> String {
        (1..CONFIGS.len())
            .map(|ci| {
                let m = |ci: usize| median(secs(&runs[ci], f));
                format!("ratio {}: {:.3}", CONFIGS[ci].label(), m(ci) / m(0))
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!(
        "{}  (headline: throughput of the work loop, plain / profiled ops/s, medians)",
        headline(|r| r.work)
    );
    println!("{}  (medians of wall time)", headline(|r| r.wall));
}
