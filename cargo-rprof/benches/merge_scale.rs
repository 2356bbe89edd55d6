//! Post-processing at the scale of a nextest run: N raw CPU profiles of one binary (one process
//! per test) symbolized and merged by `cargo rprof`'s post-processing, side by side with merging
//! the same raw files with `go tool pprof -proto` (its pprof binary run directly, with
//! `-symbolize=none`, so it only merges), for N = 100, 1,000 and 5,000.
//!
//! ```text
//! cargo bench -p cargo-rprof --bench merge_scale
//! RPROF_BENCH_SIZES=100,1000 cargo bench -p cargo-rprof --bench merge_scale
//! ```
//!
//! The raw profiles are real: a small workload (each process spins ~10 ms of CPU in one of 50
//! functions, chosen by its index, under a few frames of its own) is run N times under the
//! preload library, two at a time as nextest runs on two cores, and its files are laid out as a
//! session (`raw/<pid>.cpu.pb.gz`, the manifest, one kept binary). Post-processing runs in a
//! child process (this bench binary re-executed) so that its wall time and peak memory (`wait4`'s
//! `ru_maxrss`) are its own. Printed per size: the time running the N processes took,
//! post-processing's time and peak memory, the same for Go's merge, and whether
//! post-processing took less time than running (the target for 5,000). The merged profile must
//! hold every sample of the raw files, or the bench fails.
//!
//! Without the `--bench` argument (`cargo test --benches`) it is a smoke run of 20 processes.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod support;
use support::{build_workload, env_or, spawn_and_reap, timeval};

/// The library `cargo rprof --cpuprofile` runs under.
const PRELOAD_SO: &str = env!("RPROF_PRELOAD_LIGHT_SO");
/// The argument that makes this binary the post-processing child.
const POSTPROCESS_ARG: &str = "__postprocess";

const WORKLOAD: &str = r#"
use std::hint::black_box;

fn thread_cpu_ns() -> u64 {
    let mut ts = [0i64; 2];
    extern "C" { fn clock_gettime(c: i32, t: *mut [i64; 2]) -> i32; }
    unsafe { clock_gettime(3, &mut ts) };
    ts[0] as u64 * 1_000_000_000 + ts[1] as u64
}

#[inline(never)]
fn spin(ns: u64, salt: u64) -> u64 {
    let start = thread_cpu_ns();
    let mut x = salt | 1;
    while thread_cpu_ns() - start < ns {
        for _ in 0..2_000 { x = black_box(x.rotate_left(7) ^ x.wrapping_mul(31)); }
    }
    x
}

macro_rules! workers {
    ($($name:ident = $k:expr),*) => {
        $( #[inline(never)] fn $name(ns: u64) -> u64 { black_box(spin(ns, $k)) + $k } )*
        fn work(i: usize, ns: u64) -> u64 {
            let table: &[fn(u64) -> u64] = &[$($name),*];
            table[i % table.len()](ns)
        }
    };
}

workers!(w00 = 0, w01 = 1, w02 = 2, w03 = 3, w04 = 4, w05 = 5, w06 = 6, w07 = 7, w08 = 8,
    w09 = 9, w10 = 10, w11 = 11, w12 = 12, w13 = 13, w14 = 14, w15 = 15, w16 = 16, w17 = 17,
    w18 = 18, w19 = 19, w20 = 20, w21 = 21, w22 = 22, w23 = 23, w24 = 24, w25 = 25, w26 = 26,
    w27 = 27, w28 = 28, w29 = 29, w30 = 30, w31 = 31, w32 = 32, w33 = 33, w34 = 34, w35 = 35,
    w36 = 36, w37 = 37, w38 = 38, w39 = 39, w40 = 40, w41 = 41, w42 = 42, w43 = 43, w44 = 44,
    w45 = 45, w46 = 46, w47 = 47, w48 = 48, w49 = 49);

fn main() {
    let i: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(0);
    black_box(work(i, 10_000_000));
}
"#;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(POSTPROCESS_ARG) {
        return postprocess_child(&args[2..]);
    }
    match bench(args.iter().any(|a| a == "--bench")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("merge_scale: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `__postprocess SESSION OUT`: what `cargo rprof` does after cargo returns.
fn postprocess_child(args: &[String]) -> ExitCode {
    let [session, out] = args else {
        return ExitCode::FAILURE;
    };
    let request = cargo_rprof::session::Request {
        kind: cargo_rprof::session::ProfileKind::Cpu,
        output: PathBuf::from(out),
        rate: 100,
    };
    match cargo_rprof::postprocess::finish(Path::new(session), &[request], 0) {
        Ok(0) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

fn bench(full: bool) -> Result<(), String> {
    let sizes: Vec<usize> = env_or(
        "RPROF_BENCH_SIZES",
        if full { "100,1000,5000" } else { "20" }.to_owned(),
    )?
    .split(',')
    .map(|s| {
        s.trim()
            .parse()
            .map_err(|_| format!("RPROF_BENCH_SIZES: bad {s:?}"))
    })
    .collect::<Result<_, _>>()?;
    let root = std::env::temp_dir().join(format!("rprof-merge-scale-{}", std::process::id()));
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let result = run_sizes(&root, &sizes);
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn run_sizes(root: &Path, sizes: &[usize]) -> Result<(), String> {
    let exe = build_workload(root, WORKLOAD)?;
    let exe = std::fs::canonicalize(&exe).map_err(|e| e.to_string())?;
    let pprof = go_pprof();
    if pprof.is_none() {
        println!("go tool pprof not found: its column is left empty");
    }
    println!(
        "{:>6}  {:>9}  {:>15}  {:>9}  {:>15}  {:>9}  post < run",
        "raw", "running", "rprof post", "peak", "go pprof merge", "peak"
    );
    for &n in sizes {
        let session = root.join(format!("session-{n}"));
        let running = make_session(&session, &exe, n)?;
        let raws: Vec<PathBuf> = std::fs::read_dir(session.join("raw"))
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.path())
            .collect();
        let raw_samples = raws
            .iter()
            .map(|p| rprof_core::codec::read_file(p).map(|p| total(&p)))
            .sum::<Result<i64, _>>()
            .map_err(|e| e.to_string())?;
        let out = root.join(format!("merged-{n}.prof"));
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let post = spawn_and_reap(
            Command::new(me)
                .arg(POSTPROCESS_ARG)
                .arg(&session)
                .arg(&out)
                .stderr(Stdio::null()),
            "post-processing",
        )?;
        if post.status != 0 {
            return Err(format!("post-processing of {n} profiles failed"));
        }
        let merged = rprof_core::codec::read_file(&out).map_err(|e| e.to_string())?;
        if total(&merged) != raw_samples {
            return Err(format!(
                "the merged profile holds {} samples, the {n} raw files {raw_samples}",
                total(&merged)
            ));
        }
        let go = match &pprof {
            Some(pprof) => {
                let go_out = root.join(format!("go-{n}.prof"));
                let r = spawn_and_reap(
                    Command::new(pprof)
                        .args(["-proto", "-symbolize=none", "-output"])
                        .arg(&go_out)
                        .args(&raws)
                        .stderr(Stdio::null()),
                    "pprof",
                )?;
                (r.status == 0).then_some(r)
            }
            None => None,
        };
        let (go_time, go_peak) = go
            .as_ref()
            .map_or((String::from("-"), String::from("-")), |g| {
                (format!("{:.2} s", g.wall.as_secs_f64()), mib(&g.usage))
            });
        println!(
            "{n:>6}  {:>7.2} s  {:>13.2} s  {:>9}  {:>15}  {:>9}  {}",
            running.as_secs_f64(),
            post.wall.as_secs_f64(),
            mib(&post.usage),
            go_time,
            go_peak,
            if post.wall < running { "yes" } else { "NO" }
        );
        if let Some(g) = &go {
            println!(
                "        rprof / go: time {:.2}, peak memory {:.2} (rprof also symbolizes; go only merges); cpu {:.2} s vs {:.2} s",
                post.wall.as_secs_f64() / g.wall.as_secs_f64(),
                post.usage.ru_maxrss as f64 / g.usage.ru_maxrss as f64,
                cpu(&post.usage),
                cpu(&g.usage)
            );
        }
        let _ = std::fs::remove_dir_all(&session);
    }
    Ok(())
}

/// Run the workload `n` times under the preload, two at a time, laid out as a session.
fn make_session(session: &Path, exe: &Path, n: usize) -> Result<Duration, String> {
    for sub in ["bin", "raw", "tmp"] {
        std::fs::create_dir_all(session.join(sub)).map_err(|e| e.to_string())?;
    }
    let kept = session.join("bin").join("workload.kept");
    std::fs::copy(exe, &kept).map_err(|e| e.to_string())?;
    let next = AtomicUsize::new(0);
    let manifest = Mutex::new(String::new());
    let failure = Mutex::new(None::<String>);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let tmp = session.join("tmp").join(format!("{i}.pb.gz"));
                let ran = Command::new(exe)
                    .arg(i.to_string())
                    .env("LD_PRELOAD", PRELOAD_SO)
                    .env("RPROF_CPUPROFILE", &tmp)
                    .env("RPROF_CPUPROFILERATE", "100")
                    .spawn()
                    .and_then(|mut c| {
                        let pid = c.id();
                        c.wait().map(|st| (pid, st))
                    });
                let placed = ran.map_err(|e| e.to_string()).and_then(|(pid, status)| {
                    if !status.success() {
                        return Err(format!("workload {i} failed: {status}"));
                    }
                    let raw = session.join("raw").join(format!("{pid}.cpu.pb.gz"));
                    std::fs::rename(&tmp, &raw).map_err(|e| format!("workload {i}: {e}"))?;
                    manifest.lock().unwrap().push_str(&format!(
                        "{pid}\t{}\t{}\n",
                        exe.display(),
                        kept.display()
                    ));
                    Ok(())
                });
                if let Err(e) = placed {
                    *failure.lock().unwrap() = Some(e);
                    return;
                }
            });
        }
    });
    let running = start.elapsed();
    if let Some(e) = failure.into_inner().unwrap() {
        return Err(e);
    }
    std::fs::write(
        session.join(cargo_rprof::session::MANIFEST),
        manifest.into_inner().unwrap(),
    )
    .map_err(|e| e.to_string())?;
    Ok(running)
}

/// Sum of every sample's first value.
fn total(p: &rprof_core::Profile) -> i64 {
    p.sample.iter().map(|s| s.value[0]).sum()
}

fn mib(usage: &libc::rusage) -> String {
    format!("{:.1} MiB", usage.ru_maxrss as f64 / 1024.0)
}

fn cpu(usage: &libc::rusage) -> f64 {
    (timeval(usage.ru_utime) + timeval(usage.ru_stime)).as_secs_f64()
}

/// Go's pprof binary (`$(go env GOTOOLDIR)/pprof`), run directly so its resource usage is its own.
fn go_pprof() -> Option<PathBuf> {
    let out = Command::new("go")
        .args(["env", "GOTOOLDIR"])
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?;
    let pprof = Path::new(dir.trim()).join("pprof");
    pprof.is_file().then_some(pprof)
}
