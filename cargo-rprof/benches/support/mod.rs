//! What the overhead benchmarks share: building the workload, reaping it with its resource
//! usage, reading settings from the environment, and simple statistics.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The value of the environment variable `key`, parsed, or `default` when unset or empty.
pub fn env_or<T: std::str::FromStr>(key: &str, default: T) -> Result<T, String> {
    match std::env::var(key) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| format!("{key}={v}: not a valid value")),
        _ => Ok(default),
    }
}

/// Reap the child `pid`, returning its wait status and resource usage.
pub fn wait4(pid: libc::pid_t) -> Result<(libc::c_int, libc::rusage), String> {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data; zeroed is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `usage` are valid for writes; `pid` is our unreaped child.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            return Ok((status, usage));
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4: {err}"));
        }
    }
}

/// A `timeval` as a `Duration`.
pub fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

/// The median of `v`.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The smallest value of `v`.
pub fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// The order in which round `round` runs `n` configurations: a rotation that moves every
/// second round, run forwards on even rounds and backwards on odd ones, so that drift hits every
/// configuration alike and each runs as often just before as just after each other (the run
/// after a heavy one can be faster or slower, whatever is measured).
pub fn round_order(round: usize, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).map(|k| (round / 2 + k) % n).collect();
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

/// Compile `source` (one Rust file) optimised, with frame pointers and line tables, in `dir`.
pub fn build_workload(dir: &Path, source: &str) -> Result<PathBuf, String> {
    let src = dir.join("workload.rs");
    let exe = dir.join("workload");
    std::fs::write(&src, source).map_err(|e| format!("{}: {e}", src.display()))?;
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(&rustc)
        .args(["--edition", "2021", "-O", "-C", "force-frame-pointers=yes"])
        .args(["-C", "debuginfo=line-tables-only", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", rustc.to_string_lossy()))?;
    if !out.status.success() {
        return Err(format!(
            "compiling the workload failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(exe)
}

/// One `ratio LABEL  wall: med .. min .. paired ..  cpu: ..  outside: +x ms` line. `metrics`
/// holds, per metric, the profiled and the plain runs' seconds, round by round; the metric
/// named `outside` is shown as the median extra milliseconds instead of a ratio.
pub fn ratio_line(label: &str, width: usize, metrics: &[(&str, Vec<f64>, Vec<f64>)]) -> String {
    let mut line = format!("  ratio {label:<width$}");
    for (name, p, q) in metrics {
        if *name == "outside" {
            let extra = median(p.iter().zip(q).map(|(a, b)| a - b).collect());
            line += &format!("  {name}: {:+.1} ms", extra * 1e3);
            continue;
        }
        let paired = median(p.iter().zip(q).map(|(a, b)| a / b).collect());
        line += &format!(
            "  {name}: med {:.3} min {:.3} paired {:.3}",
            median(p.clone()) / median(q.clone()),
            min(p) / min(q),
            paired
        );
    }
    line
}

/// What a finished child left behind.
pub struct Reaped {
    /// Its standard output.
    pub stdout: String,
    /// Its wait status.
    pub status: libc::c_int,
    /// Its resource usage (CPU time).
    pub usage: libc::rusage,
    /// Wall time from start to reaping.
    pub wall: Duration,
}

/// Start `cmd` (`what` names it in errors), read its standard output to the end and reap it
/// with `wait4`, so its resource usage is its own.
pub fn spawn_and_reap(cmd: &mut Command, what: &str) -> Result<Reaped, String> {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().expect("piped"), &mut stdout)
        .map_err(|e| format!("reading the workload's output: {e}"))?;
    let (status, usage) = wait4(child.id() as libc::pid_t)?;
    let wall = start.elapsed();
    // The child is reaped; `child` must not be waited on again (dropping it does not wait).
    drop(child);
    Ok(Reaped {
        stdout,
        status,
        usage,
        wall,
    })
}
