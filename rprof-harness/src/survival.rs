//! Profiles that outlive the process they describe: what is kept when a program ends without
//! running `exit`'s writer.
//!
//! - **A terminating signal** (SIGINT, SIGTERM, SIGHUP; taken over with
//!   `RPROF_WRITE_ON_SIGNAL=1`, and only where its action is the default): the watcher writes
//!   the profiles, restores the default action and raises the signal again, so the process ends
//!   exactly as it would have without rprof. Further such signals during the writing are
//!   ignored: the writing is bounded, and a second Ctrl-C must not lose the run.
//! - **A crash** (SIGABRT, SIGILL, SIGFPE, SIGSYS where their action is the default; SIGSEGV and
//!   SIGBUS chained behind the handler Rust's runtime installs, which reports stack overflows):
//!   the crashing thread wakes the watcher and waits, at most [`CRASH_WAIT`], while it writes
//!   the profiles; then the crash goes on as it would have. The previous SIGSEGV/SIGBUS handler
//!   runs first and decides: only when it gives up (resets the default action, as Rust's does
//!   for any fault that is not a stack overflow) is the fault a crash. A program's own handler
//!   that recovers from faults (a JIT's, a wasm runtime's) is not disturbed.
//! - **SIGKILL, or anything else nobody can catch** (a timeout kill, the OOM killer): the watcher
//!   writes a checkpoint of every profile every [`CHECKPOINT_EVERY`] while samples arrive
//!   (less often when a checkpoint costs more than 1/[`CHECKPOINT_COST_SHARE`] of the time
//!   between two), and post-processing uses it when the final file is missing.
//!
//! The handlers do only what is safe in a handler: atomics, `write` of one byte to a pipe,
//! `nanosleep`, `sigaction`, `raise`; errno is preserved. One harness thread, the watcher, does
//! every write. A forked child (which has no watcher) gets the default action at once; the
//! harness's own threads never wait for the watcher (it may be waiting for them).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Signals that end the process, taken over with `RPROF_WRITE_ON_SIGNAL=1`.
const TERMINATING: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
/// Crash signals taken over at start where their action is the default (Rust's runtime leaves
/// them so).
const CRASHES_AT_START: [libc::c_int; 4] =
    [libc::SIGABRT, libc::SIGILL, libc::SIGFPE, libc::SIGSYS];
/// Fault signals chained behind the handler already there (Rust's stack-overflow reporter).
const FAULTS: [libc::c_int; 2] = [libc::SIGSEGV, libc::SIGBUS];

/// How long a crashing thread waits for the profiles to be written before the crash goes on.
pub const CRASH_WAIT: Duration = Duration::from_secs(10);
/// How often the profiles are checkpointed while samples arrive.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// Checkpoints are spaced at least this many times their own cost apart (≤ 2% of one core).
pub const CHECKPOINT_COST_SHARE: u32 = 50;

/// The pipe's write end (-1 until started).
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
/// The first signal received (0: none yet).
static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// The process that started the watcher (a forked child is another).
static OWNER: AtomicI32 = AtomicI32::new(0);
/// Set by the watcher once the profiles are written after a signal.
static WRITTEN: AtomicBool = AtomicBool::new(false);
/// Whether SIGSEGV and SIGBUS are chained.
static FAULTS_CHAINED: AtomicBool = AtomicBool::new(false);
/// Held while chaining them (pthread_create on several threads at once).
static CHAINING: AtomicBool = AtomicBool::new(false);
/// The actions SIGSEGV and SIGBUS had before ours (in [`FAULTS`]'s order).
static PREVIOUS: [OnceLock<libc::sigaction>; 2] = [OnceLock::new(), OnceLock::new()];

/// What the watcher runs.
#[derive(Clone, Copy)]
pub struct Writers {
    /// Write the final profiles (once; a second call waits for the first).
    pub write: fn(),
    /// Write a checkpoint of every profile whose data changed since the last one.
    pub checkpoint: fn(),
}

/// The signal that is ending the process, if one is (for the profiles' comments).
pub fn ending_signal() -> Option<i32> {
    Some(RECEIVED.load(Ordering::Acquire)).filter(|&s| s != 0)
}

/// Start the watcher and take over the crash signals (and, with `terminating`, SIGINT, SIGTERM
/// and SIGHUP) where their action is the default.
pub fn start(writers: Writers, terminating: bool) -> std::io::Result<()> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let (read_end, write_end) = (fds[0], fds[1]);
    PIPE_WRITE.store(write_end, Ordering::Release);
    // SAFETY: getpid has no preconditions.
    OWNER.store(unsafe { libc::getpid() }, Ordering::Release);
    crate::thread::spawn_harness_thread(c"rprof-watcher", move || watch(read_end, writers))?;
    let mut handlers: Vec<(libc::c_int, usize)> = CRASHES_AT_START
        .iter()
        .map(|&s| (s, on_crash as SiginfoHandler as usize))
        .collect();
    if terminating {
        handlers.extend(
            TERMINATING
                .iter()
                .map(|&s| (s, on_terminating as SiginfoHandler as usize)),
        );
    }
    for (sig, handler) in handlers {
        if crate::sys::signal_handler(sig) == Some(libc::SIG_DFL) {
            install(sig, handler, None);
        }
    }
    Ok(())
}

type SiginfoHandler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// Install `handler` for `sig` (on the alternate stack where the thread has one), blocking
/// every signal while it runs, or `mask` when given.
fn install(sig: libc::c_int, handler: usize, mask: Option<libc::sigset_t>) -> bool {
    // SAFETY: sigaction is plain data; zeroed is a valid starting value.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler;
    // Restart the program's interrupted system calls: without rprof the signal would have
    // ended it, so it never expects EINTR from this one.
    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
    match mask {
        Some(mask) => action.sa_mask = mask,
        // SAFETY: `action.sa_mask` is a valid sigset to fill.
        None => unsafe {
            libc::sigfillset(&mut action.sa_mask);
        },
    }
    // SAFETY: installing a handler that only does async-signal-safe work.
    unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) == 0 }
}

/// Chain SIGSEGV and SIGBUS behind the handlers Rust's runtime installed before `main`, once
/// they are there. Called when the program starts a thread and on the watcher's ticks; cheap
/// once done. Installing ours first would make the runtime skip its own (it installs only over
/// the default action), and stack overflows would go unreported.
pub fn chain_fault_handlers() {
    if FAULTS_CHAINED.load(Ordering::Acquire) || OWNER.load(Ordering::Acquire) == 0 {
        return;
    }
    if CHAINING
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }
    let ours = on_crash as SiginfoHandler as usize;
    let mut chained = true;
    for (i, &sig) in FAULTS.iter().enumerate() {
        // SAFETY: sigaction is plain data; zeroed is a valid out-parameter.
        let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: querying only (null new action).
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut current) } != 0 {
            chained = false;
            continue;
        }
        let handler = current.sa_sigaction;
        if handler == ours || PREVIOUS[i].get().is_some() {
            continue;
        }
        if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
            chained = false;
            continue;
        }
        let mask = current.sa_mask;
        if PREVIOUS[i].set(current).is_ok() {
            install(sig, ours, Some(mask));
        }
    }
    if chained {
        FAULTS_CHAINED.store(true, Ordering::Release);
    }
    CHAINING.store(false, Ordering::Release);
}

/// The action a fault signal had before ours, if we chained it.
fn previous(sig: libc::c_int) -> Option<&'static libc::sigaction> {
    let i = FAULTS.iter().position(|&s| s == sig)?;
    PREVIOUS[i].get()
}

/// Note `sig` as the ending signal (the first wins) and wake the watcher.
fn wake_watcher(sig: libc::c_int) {
    if RECEIVED
        .compare_exchange(0, sig, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        let byte = 1u8;
        // SAFETY: writing one byte from a live local to our pipe.
        unsafe {
            libc::write(
                PIPE_WRITE.load(Ordering::Acquire),
                (&byte as *const u8).cast(),
                1,
            )
        };
    }
}

/// Whether this process is the one the watcher runs in.
fn is_owner() -> bool {
    // SAFETY: getpid has no preconditions.
    OWNER.load(Ordering::Acquire) == unsafe { libc::getpid() }
}

/// Set `sig`'s action to the default and raise it: delivered when the handler returns (the
/// handler blocks it), it ends the process as it would have ended without rprof.
fn end_by(sig: libc::c_int) {
    // SAFETY: restoring the default action and raising are async-signal-safe.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// The handler of the terminating signals: note the first and wake the watcher.
extern "C" fn on_terminating(sig: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: reading this thread's errno location is always valid.
    let errno = unsafe { *libc::__errno_location() };
    if is_owner() {
        wake_watcher(sig);
    } else {
        end_by(sig);
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// The handler of the crash signals: let the previous handler decide (faults), then have the
/// profiles written while this thread waits, then let the crash go on.
extern "C" fn on_crash(sig: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: reading this thread's errno location is always valid.
    let errno = unsafe { *libc::__errno_location() };
    if let Some(prev) = previous(sig) {
        run_previous(prev, sig, info, context);
        // Still handled: the previous handler recovered (a JIT's trap) or chose to go on.
        // A fault sent by kill(): Rust's handler resets the action and the program goes on
        // (the next one kills it); so it does here, still profiled.
        // SAFETY: `info` is the kernel's siginfo for this delivery.
        let sent = unsafe { (*info).si_code } <= 0;
        if crate::sys::signal_handler(sig) != Some(libc::SIG_DFL) || sent {
            // SAFETY: as above.
            unsafe { *libc::__errno_location() = errno };
            return;
        }
    }
    if is_owner() && !crate::thread::is_harness_tid(crate::thread::gettid()) {
        wake_watcher(sig);
        let step = libc::timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000,
        };
        for _ in 0..CRASH_WAIT.as_millis() {
            if WRITTEN.load(Ordering::Acquire) {
                break;
            }
            // SAFETY: sleeping on a valid timespec; an interruption only shortens the step.
            unsafe { libc::nanosleep(&step, std::ptr::null_mut()) };
        }
    }
    // A fault returns to the faulting instruction, which faults again under the default
    // action; abort() and raise() need the raise.
    end_by(sig);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Run the handler `prev` was, as the kernel would have.
fn run_previous(
    prev: &libc::sigaction,
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    let handler = prev.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        return;
    }
    if prev.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: an SA_SIGINFO handler has this signature; it was installed for this signal
        // and gets the kernel's own arguments.
        let f: SiginfoHandler = unsafe { std::mem::transmute::<usize, SiginfoHandler>(handler) };
        f(sig, info, context);
    } else {
        // SAFETY: a plain handler has this signature.
        let f: extern "C" fn(libc::c_int) =
            unsafe { std::mem::transmute::<usize, extern "C" fn(libc::c_int)>(handler) };
        f(sig);
    }
}

/// CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    Duration::from_nanos(crate::sys::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID).unwrap_or(0))
}

/// The watcher thread: checkpoint while the program runs; on a signal, write the profiles and
/// let it end the process.
fn watch(read_end: libc::c_int, writers: Writers) {
    let mut wait = CHECKPOINT_EVERY;
    loop {
        let mut pfd = libc::pollfd {
            fd: read_end,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, wait.as_millis() as libc::c_int) };
        if n > 0 {
            let mut byte = 0u8;
            // SAFETY: reading one byte into a live local from our own pipe.
            if unsafe { libc::read(read_end, (&mut byte as *mut u8).cast(), 1) } == 1 {
                break;
            }
            return;
        }
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return;
        }
        chain_fault_handlers();
        // Paced by the CPU time a checkpoint costs, not its wall time: on a loaded machine the
        // wall time grows with preemption, and checkpoints must not thin out just then.
        let began = thread_cpu_time();
        let _ = std::panic::catch_unwind(writers.checkpoint);
        wait =
            CHECKPOINT_EVERY.max(thread_cpu_time().saturating_sub(began) * CHECKPOINT_COST_SHARE);
    }
    let sig = RECEIVED.load(Ordering::Acquire);
    let _ = std::panic::catch_unwind(writers.write);
    WRITTEN.store(true, Ordering::Release);
    if !TERMINATING.contains(&sig) {
        // A crash: the crashing thread goes on with it.
        return;
    }
    // SAFETY: restoring the default action, unblocking the signal on this thread and raising
    // it: the process ends as it would have without rprof.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
        // Not reached for a terminating signal; should it be, end with the shell's status.
        libc::_exit(128 + sig);
    }
}
