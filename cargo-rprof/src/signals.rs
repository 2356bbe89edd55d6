//! Signals sent to `cargo rprof` while it runs cargo or a program: passed on to the processes
//! of the run, which write their profiles and end by them; then `cargo rprof` post-processes
//! and ends by the same signal, so a shell or CI runner sees the status it expects (130 for
//! SIGINT).
//!
//! A terminal's Ctrl-C (`si_code == SI_KERNEL`) already reached every process of the
//! foreground group, so it is only noted. A signal sent to `cargo rprof` alone (`kill PID`, a
//! CI runner cancelling a job) is passed on: to the program (`run`), or to cargo and every
//! process below it (`test`, `bench`: cargo does not pass signals on to the test binaries it
//! runs, which would be left running as orphans). `cargo rprof` is a child subreaper for the
//! run, so the test binaries cargo leaves behind when it dies become its children and it can
//! wait for them to finish writing.
//!
//! The handler only stores the signal, calls `kill` and writes one byte to a pipe (all
//! async-signal-safe); a thread of ours walks `/proc` for the processes below.

use std::io::Write;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

const FORWARDED: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The process the run hangs from (0: none).
static ROOT: AtomicI32 = AtomicI32::new(0);
/// The first forwarded signal received (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// Write end of the pipe to the tree-signalling thread (-1: signal the root only).
static TREE_PIPE: AtomicI32 = AtomicI32::new(-1);

/// Whom a signal sent to `cargo rprof` alone goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The root process only (`run`: the program's own children are its business).
    Root,
    /// The root and every process below it (`test`, `bench`: cargo and the test binaries).
    Tree,
}

/// Make this process the reaper of its orphaned descendants (see the module doc).
pub fn become_subreaper() {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag and no pointers.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// Until [`stop`], note SIGINT, SIGTERM and SIGHUP and pass those sent to us alone on to
/// `root` (and, with [`Reach::Tree`], to every process below us).
pub fn forward(root: i32, reach: Reach) {
    ROOT.store(root, Ordering::Release);
    if reach == Reach::Tree && TREE_PIPE.load(Ordering::Acquire) < 0 {
        let mut fds = [0; 2];
        // SAFETY: `fds` is valid for two ints.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == 0 {
            let read_end = fds[0];
            TREE_PIPE.store(fds[1], Ordering::Release);
            std::thread::spawn(move || signal_tree_on_request(read_end));
        }
    }
    for sig in FORWARDED {
        // SAFETY: a zeroed sigaction is valid; filled in below.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_signal
            as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
            as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        // SAFETY: installing a handler that only stores, kills and writes.
        unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) };
    }
}

/// Stop passing signals on (they take their default actions again); returns the first one
/// received while forwarding, if any.
pub fn stop() -> Option<i32> {
    ROOT.store(0, Ordering::Release);
    for sig in FORWARDED {
        // SAFETY: restoring the default action.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    received()
}

/// The first signal received while forwarding, if any.
pub fn received() -> Option<i32> {
    Some(RECEIVED.load(Ordering::Acquire)).filter(|&s| s != 0)
}

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let _ = RECEIVED.compare_exchange(0, sig, Ordering::AcqRel, Ordering::Acquire);
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    // SI_KERNEL: the terminal's; every process of the foreground group got its own copy.
    if code == libc::SI_KERNEL {
        return;
    }
    let root = ROOT.load(Ordering::Acquire);
    if root > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(root, sig) };
    }
    let pipe = TREE_PIPE.load(Ordering::Acquire);
    if pipe >= 0 {
        let byte = sig as u8;
        // SAFETY: writing one byte from a local to a pipe we own; async-signal-safe.
        unsafe { libc::write(pipe, (&byte as *const u8).cast(), 1) };
    }
}

/// The thread behind [`Reach::Tree`]: for each signal byte, signal every process below us.
fn signal_tree_on_request(read_end: i32) {
    let mut byte = 0u8;
    // SAFETY: reading one byte into a local from a pipe we own.
    while unsafe { libc::read(read_end, (&mut byte as *mut u8).cast(), 1) } == 1 {
        for pid in descendants() {
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(pid, i32::from(byte)) };
        }
    }
}

/// Every process below this one (children, their children, ...), from `/proc`.
pub fn descendants() -> Vec<i32> {
    let me = std::process::id() as i32;
    let parents: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid ...`: comm may hold spaces and parentheses.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = vec![me];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|&&(pid, ppid)| ppid == parent && pid != me)
                .map(|&(pid, _)| pid),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// Wait (up to `grace`) for every process below us to end, reaping those that became our
/// children; then kill what is left. For after a forwarded signal: the test binaries write
/// their profiles before they end.
pub fn wait_for_descendants(grace: Duration) {
    let deadline = Instant::now() + grace;
    loop {
        // SAFETY: reaping any exited child, without blocking; no pointers.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        let left = descendants();
        if left.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            for pid in left {
                // SAFETY: kill has no memory preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            // SAFETY: as above.
            while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `SIGTERM` for 15, ...; `signal 40` for those without a name here.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {sig}"),
    };
    name.to_owned()
}

/// End this process by `sig` (after flushing), as the run was ended.
pub fn end_by_signal(sig: i32) {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: restoring the default action and raising: the process ends with that signal.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}
