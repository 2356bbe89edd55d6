//! Raw memory from the kernel, for tables that code inside `malloc` uses: it cannot come from
//! `malloc` itself. Anonymous, zero-filled, reserved lazily (untouched pages cost nothing).
//! And raw system calls, which bypass libc's `syscall` (the preload interposes it).
//! And the signal-action plumbing the profilers share (which handler a signal has, installing
//! one, finding a real-time signal nobody uses), and reading a clock from a signal handler.

/// Map `bytes` of zeroed memory, or return null when the kernel refuses.
pub(crate) fn map_zeroed(bytes: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping has no preconditions; failure is MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p as *mut u8
    }
}

/// Return memory from [`map_zeroed`].
///
/// # Safety
/// `p` and `bytes` must be exactly a mapping made by [`map_zeroed`], no longer used.
pub(crate) unsafe fn unmap(p: *mut u8, bytes: usize) {
    // SAFETY: guaranteed by the caller.
    unsafe { libc::munmap(p as *mut libc::c_void, bytes) };
}

/// Issue a system call directly, with libc's `syscall` conventions for the result.
///
/// # Safety
/// As the system call `n` requires of its arguments.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn raw_syscall(
    n: libc::c_long,
    a1: libc::c_long,
    a2: libc::c_long,
    a3: libc::c_long,
    a4: libc::c_long,
    a5: libc::c_long,
    a6: libc::c_long,
) -> libc::c_long {
    let ret: libc::c_long;
    // SAFETY: the Linux x86_64 system call ABI: number in rax, arguments in rdi, rsi, rdx, r10,
    // r8, r9; rcx and r11 are clobbered. The caller vouches for the arguments.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") n => ret,
            in("rdi") a1,
            in("rsi") a2,
            in("rdx") a3,
            in("r10") a4,
            in("r8") a5,
            in("r9") a6,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    if (-4095..0).contains(&ret) {
        // SAFETY: this thread's errno slot.
        unsafe { *libc::__errno_location() = -ret as libc::c_int };
        -1
    } else {
        ret
    }
}

/// The time of `clock` in nanoseconds (a thread's CPU clock, say), or `None` when it cannot be
/// read (the thread is gone). Async-signal-safe: the profilers read their clocks through it.
pub(crate) fn clock_ns(clock: libc::clockid_t) -> Option<u64> {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a clock id and a valid out-pointer; clock_gettime is async-signal-safe.
    (unsafe { libc::clock_gettime(clock, &mut t) } == 0)
        .then(|| t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64)
}

/// The handler of `signal` now (a function's address, or `SIG_DFL`/`SIG_IGN`), `None` when it
/// cannot be read.
pub(crate) fn signal_handler(signal: libc::c_int) -> Option<usize> {
    // SAFETY: sigaction is plain data; zeroed is a valid value to read into.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: reading the action of a signal number into `old`; no new action.
    (unsafe { libc::sigaction(signal, std::ptr::null(), &mut old) } == 0)
        .then_some(old.sa_sigaction)
}

/// Install `handler` (an `SA_SIGINFO` handler, async-signal-safe) for `signal`, restarting
/// interrupted system calls, with nothing else blocked while it runs, on the thread's alternate
/// signal stack where the harness gives every thread one (`thread::on_alt_stacks`). False when
/// refused.
pub(crate) fn install_siginfo_handler(signal: libc::c_int, handler: usize) -> bool {
    // SAFETY: sigaction is plain data; zeroed is a valid starting value.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = handler;
    sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
    if crate::thread::on_alt_stacks() {
        sa.sa_flags |= libc::SA_ONSTACK;
    }
    // SAFETY: `sa.sa_mask` is valid for writes.
    unsafe { libc::sigemptyset(&mut sa.sa_mask) };
    // SAFETY: the caller passes an async-signal-safe handler; `sa` is valid.
    unsafe { libc::sigaction(signal, &sa, std::ptr::null_mut()) == 0 }
}

/// Install `handler` on the first real-time signal from `SIGRTMIN + offset` whose action is the
/// default (nobody in the process uses it); returns that signal.
pub(crate) fn install_on_free_rt_signal(
    offset: libc::c_int,
    handler: usize,
) -> Option<libc::c_int> {
    (libc::SIGRTMIN() + offset..=libc::SIGRTMAX()).find(|&sig| {
        signal_handler(sig) == Some(libc::SIG_DFL) && install_siginfo_handler(sig, handler)
    })
}
