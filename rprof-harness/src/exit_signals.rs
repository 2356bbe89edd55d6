//! Profiles written when the program is ended by a signal (SIGINT, SIGTERM, SIGHUP), then the
//! signal's own ending: what a program under `cargo rprof run` gets when a user presses Ctrl-C
//! or a supervisor stops it.
//!
//! Only signals whose disposition is the default (terminate) when the profilers start are taken
//! over; a program that installs its own handler later replaces ours and ends as it chooses
//! (through `exit`, when the exit-time writer runs). The handler does only what is safe in a
//! handler: it records the signal and writes one byte to a pipe. A harness thread blocked on the
//! pipe writes the profiles, restores the default disposition and raises the signal again, so
//! the process ends exactly as it would have without rprof (killed by that signal). Further
//! such signals while the profiles are written are ignored: the writing is bounded, and a
//! second Ctrl-C (or a forwarded copy of the first) must not lose the run. A forked child
//! (which has no watcher) gets the default action at once.

use std::sync::atomic::{AtomicI32, Ordering};

/// The signals taken over.
const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The pipe's write end (-1 until installed).
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
/// The first signal received (0: none yet).
static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// The process that installed the handlers (a forked child is another).
static OWNER: AtomicI32 = AtomicI32::new(0);

/// Take over the default-terminating signals: on one, run `write` on a harness thread, then
/// end by that signal. Does nothing for signals the program already handles or ignores.
pub fn install(write: fn()) -> std::io::Result<()> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let (read_end, write_end) = (fds[0], fds[1]);
    crate::thread::spawn_harness_thread(move || watch(read_end, write))?;
    PIPE_WRITE.store(write_end, Ordering::Release);
    // SAFETY: getpid has no preconditions.
    OWNER.store(unsafe { libc::getpid() }, Ordering::Release);
    for sig in SIGNALS {
        // SAFETY: a zeroed sigaction is a valid out-parameter; reading the current action.
        let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: querying only (null new action).
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut current) } != 0
            || current.sa_sigaction != libc::SIG_DFL
        {
            continue;
        }
        // SAFETY: as above, then filled in field by field.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        // Restart the program's interrupted system calls: without rprof the signal would have
        // ended it, so it never expects EINTR from this one.
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: `action.sa_mask` is a valid sigset to fill.
        unsafe { libc::sigfillset(&mut action.sa_mask) };
        // SAFETY: installing a handler that only does async-signal-safe work.
        unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) };
    }
    Ok(())
}

/// The handler: note the first signal and wake the watcher. Async-signal-safe: atomics,
/// `getpid`, `write`, `signal`, `raise`; errno is preserved.
extern "C" fn on_signal(sig: libc::c_int) {
    // SAFETY: reading this thread's errno location is always valid.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: getpid has no preconditions.
    if OWNER.load(Ordering::Acquire) != unsafe { libc::getpid() } {
        // A forked child: no watcher here; end as the signal would have.
        // SAFETY: restoring the default action and raising are async-signal-safe.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
        return;
    }
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
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// The watcher thread: wait for a signal, write, end by it.
fn watch(read_end: libc::c_int, write: fn()) {
    let mut byte = 0u8;
    loop {
        // SAFETY: reading one byte into a live local from our own pipe.
        let n = unsafe { libc::read(read_end, (&mut byte as *mut u8).cast(), 1) };
        if n == 1 {
            break;
        }
        if n == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
    let sig = RECEIVED.load(Ordering::Acquire);
    let _ = std::panic::catch_unwind(write);
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
