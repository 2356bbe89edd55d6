//! Whether the CPU timers' signal still reaches the profiled threads: a thread that blocks it
//! (a C library's worker that blocks every signal, a program's `pthread_sigmask`) is not
//! sampled while it does, and a program that installs its own handler for it ends sampling.
//! The drain thread calls [`check`] every [`PERIOD`]; what it finds becomes one sentence per
//! thread (or per takeover) in the profile's comments, which `cargo rprof` prints as warnings.
//!
//! Runs on the drain thread only (a harness thread): it reads `/proc`, allocates, locks.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the delivery is checked.
pub const PERIOD: Duration = Duration::from_millis(250);
/// Threads looked at per check, so that thousands of threads cost a bounded time per period.
const THREADS_PER_CHECK: usize = 256;

#[derive(Default)]
struct Findings {
    /// Threads seen blocking the signal: name, checks that saw it blocked.
    blocked: BTreeMap<i32, (String, u32)>,
    /// When the handler was first seen replaced, after profiling started.
    taken_over: Option<Duration>,
    started: Option<Instant>,
    /// Where the next check starts in the thread list.
    cursor: usize,
}

static FINDINGS: Mutex<Option<Findings>> = Mutex::new(None);

/// Forget earlier findings (a new profile starts).
pub fn reset() {
    *FINDINGS.lock().unwrap_or_else(|e| e.into_inner()) = Some(Findings {
        started: Some(Instant::now()),
        ..Default::default()
    });
}

/// Look at `tids` (some of them each time) and at the handler of `signal`, which should be
/// `handler`.
pub fn check(signal: i32, handler: usize, tids: &[i32]) {
    if signal == 0 {
        return;
    }
    let mut guard = FINDINGS.lock().unwrap_or_else(|e| e.into_inner());
    let f = guard.get_or_insert_with(Findings::default);
    if f.taken_over.is_none()
        && crate::sys::signal_handler(signal).is_some_and(|now| now != handler)
    {
        f.taken_over = Some(f.started.map_or(Duration::ZERO, |s| s.elapsed()));
    }
    if tids.is_empty() {
        return;
    }
    let start = f.cursor % tids.len();
    let count = tids.len().min(THREADS_PER_CHECK);
    for &tid in tids.iter().cycle().skip(start).take(count) {
        if blocks(tid, signal) {
            let entry = f
                .blocked
                .entry(tid)
                .or_insert_with(|| (thread_name(tid), 0));
            entry.1 += 1;
        }
    }
    f.cursor = start + count;
}

/// Whether thread `tid` of this process has `signal` in its blocked mask (`SigBlk` in its
/// `/proc` status, a hexadecimal mask whose bit `signal - 1` is the signal).
fn blocks(tid: i32, signal: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|mask| mask >> (signal - 1) & 1 == 1)
}

fn thread_name(tid: i32) -> String {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        .map(|s| s.trim_end().to_owned())
        .unwrap_or_default()
}

/// What was found, one sentence each (empty when the signal reached every thread).
pub fn notices() -> Vec<String> {
    let guard = FINDINGS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(f) = guard.as_ref() else {
        return Vec::new();
    };
    let signal = crate::cpu::timer_signal();
    let name = signal_name(signal);
    let mut out: Vec<String> = f
        .blocked
        .iter()
        .map(|(tid, (thread, seen))| {
            format!(
                "rprof: thread {tid} ({thread}) blocks the profiler's signal ({name}): its CPU time was not sampled while it did (seen in {seen} checks, {} ms apart)",
                PERIOD.as_millis()
            )
        })
        .collect();
    if let Some(at) = f.taken_over {
        out.push(format!(
            "rprof: the program installed its own handler for the profiler's signal ({name}) about {:.1} s into profiling: no CPU samples were taken after that",
            at.as_secs_f64()
        ));
    }
    out
}

fn signal_name(signal: i32) -> String {
    if signal == libc::SIGPROF {
        return "SIGPROF".into();
    }
    let offset = signal - libc::SIGRTMIN();
    if (0..=32).contains(&offset) {
        format!("SIGRTMIN+{offset}, signal {signal}")
    } else {
        format!("signal {signal}")
    }
}
