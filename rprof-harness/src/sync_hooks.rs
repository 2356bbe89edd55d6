//! The interposed waiting primitives (preload only): libc's `syscall` for futex waits and wakes
//! (Rust's `Mutex`, `RwLock`, `Condvar`, channels, `park`, and parking_lot and crossbeam all
//! wait there), and the pthread calls C code waits in. Each forwards to libc's own and reports
//! waits and wake-ups to [`crate::sync`].
//!
//! Hazards, and how each is met:
//! - `syscall` is variadic; on x86_64 its arguments arrive in the same registers (and the
//!   seventh on the stack) as a fixed seven-argument function's, so we take seven and issue the
//!   system call ourselves with the `syscall` instruction, setting `errno` as libc does; no
//!   symbol lookup is needed;
//! - the pthread entry points forward to glibc's exported `__pthread_*` aliases where they exist,
//!   else to the next definition found once with `dlsym(RTLD_NEXT)`, which does not call back
//!   into these functions;
//! - uncontended paths stay uncontended: a `trylock` first, and only a busy lock is timed;
//! - nothing here allocates or locks; when no profiler is on, each call is one extra branch.

use libc::{c_int, c_long, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::sync;
use crate::sys::raw_syscall;

const FUTEX_WAIT: c_long = 0;
const FUTEX_WAKE: c_long = 1;
const FUTEX_WAIT_BITSET: c_long = 9;
const FUTEX_WAKE_BITSET: c_long = 10;
const FUTEX_CMD_MASK: c_long = !(128 | 256);

/// The interposed `syscall`: futex waits and wakes are reported, everything is forwarded.
///
/// # Safety
/// As C's `syscall`.
#[cfg(target_arch = "x86_64")]
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn syscall(
    n: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> c_long {
    if n == libc::SYS_futex && sync::is_active() {
        match a2 & FUTEX_CMD_MASK {
            FUTEX_WAIT | FUTEX_WAIT_BITSET => {
                let w = sync::wait_begin(a1 as u64, a3 as u32 == sync::LOCK_CONTENDED);
                // SAFETY: forwarding the caller's arguments.
                let r = unsafe { raw_syscall(n, a1, a2, a3, a4, a5, a6) };
                // SAFETY: this thread's errno slot.
                let errno = unsafe { *libc::__errno_location() };
                if r == -1 && errno == libc::EAGAIN {
                    sync::wait_cancel(w);
                } else {
                    sync::wait_end(w);
                }
                // SAFETY: restore errno for the caller: our bookkeeping may have changed it.
                unsafe { *libc::__errno_location() = errno };
                return r;
            }
            FUTEX_WAKE | FUTEX_WAKE_BITSET => {
                sync::releasing(a1 as u64);
                // Charge before waking: a woken thread may stop waiting (and leave the table)
                // on another core before this call returns.
                sync::wake(a1 as u64, a3.max(0) as usize);
                // SAFETY: forwarding the caller's arguments.
                return unsafe { raw_syscall(n, a1, a2, a3, a4, a5, a6) };
            }
            _ => {}
        }
    }
    // SAFETY: forwarding the caller's arguments.
    unsafe { raw_syscall(n, a1, a2, a3, a4, a5, a6) }
}

extern "C" {
    fn __pthread_mutex_lock(m: *mut libc::pthread_mutex_t) -> c_int;
    fn __pthread_mutex_unlock(m: *mut libc::pthread_mutex_t) -> c_int;
    fn __pthread_rwlock_rdlock(l: *mut libc::pthread_rwlock_t) -> c_int;
    fn __pthread_rwlock_wrlock(l: *mut libc::pthread_rwlock_t) -> c_int;
}

/// The next definition of `name` after this library, looked up once.
fn next(cache: &AtomicUsize, name: &std::ffi::CStr) -> usize {
    let mut f = cache.load(Ordering::Acquire);
    if f == 0 {
        // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name is always valid to call.
        f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
        cache.store(f, Ordering::Release);
    }
    f
}

macro_rules! real {
    ($name:literal, $ty:ty) => {{
        static CACHE: AtomicUsize = AtomicUsize::new(0);
        let f = next(&CACHE, $name);
        // SAFETY: `f` is libc's definition of this very function, with this signature.
        unsafe { std::mem::transmute::<usize, $ty>(f) }
    }};
}

/// Acquire a lock that `try_lock` tries first: only a busy lock is timed, as a wait on `addr`.
fn timed_if_busy(
    addr: u64,
    try_lock: impl FnOnce() -> c_int,
    lock: impl FnOnce() -> c_int,
) -> c_int {
    if !sync::is_active() {
        return lock();
    }
    let r = try_lock();
    if r != libc::EBUSY {
        return r;
    }
    let w = sync::wait_begin(addr, false);
    let r = lock();
    sync::wait_end(w);
    r
}

/// # Safety
/// As `pthread_mutex_lock`.
#[no_mangle]
pub unsafe extern "C" fn pthread_mutex_lock(m: *mut libc::pthread_mutex_t) -> c_int {
    timed_if_busy(
        m as u64,
        // SAFETY: the caller passes a valid mutex.
        || unsafe { libc::pthread_mutex_trylock(m) },
        // SAFETY: as above.
        || unsafe { __pthread_mutex_lock(m) },
    )
}

/// # Safety
/// As `pthread_mutex_unlock`.
#[no_mangle]
pub unsafe extern "C" fn pthread_mutex_unlock(m: *mut libc::pthread_mutex_t) -> c_int {
    // glibc's lock word (the first int) is 2 while the mutex is locked with waiters.
    // SAFETY: the caller passes a valid, initialised mutex, whose first field is an int.
    if sync::is_active() && unsafe { *(m as *const c_int) } > 1 {
        // Charged before the unlock, as for futex wakes.
        sync::wake(m as u64, 1);
    }
    // SAFETY: as above.
    unsafe { __pthread_mutex_unlock(m) }
}

/// # Safety
/// As `pthread_rwlock_rdlock`.
#[no_mangle]
pub unsafe extern "C" fn pthread_rwlock_rdlock(l: *mut libc::pthread_rwlock_t) -> c_int {
    timed_if_busy(
        l as u64,
        // SAFETY: the caller passes a valid rwlock.
        || unsafe { libc::pthread_rwlock_tryrdlock(l) },
        // SAFETY: as above.
        || unsafe { __pthread_rwlock_rdlock(l) },
    )
}

/// # Safety
/// As `pthread_rwlock_wrlock`.
#[no_mangle]
pub unsafe extern "C" fn pthread_rwlock_wrlock(l: *mut libc::pthread_rwlock_t) -> c_int {
    timed_if_busy(
        l as u64,
        // SAFETY: the caller passes a valid rwlock.
        || unsafe { libc::pthread_rwlock_trywrlock(l) },
        // SAFETY: as above.
        || unsafe { __pthread_rwlock_wrlock(l) },
    )
}

type CondWait =
    unsafe extern "C" fn(*mut libc::pthread_cond_t, *mut libc::pthread_mutex_t) -> c_int;
type CondTimedWait = unsafe extern "C" fn(
    *mut libc::pthread_cond_t,
    *mut libc::pthread_mutex_t,
    *const libc::timespec,
) -> c_int;
type CondWake = unsafe extern "C" fn(*mut libc::pthread_cond_t) -> c_int;
type SemWait = unsafe extern "C" fn(*mut libc::sem_t) -> c_int;
type Join = unsafe extern "C" fn(libc::pthread_t, *mut *mut c_void) -> c_int;

/// # Safety
/// As `pthread_cond_wait`.
#[no_mangle]
pub unsafe extern "C" fn pthread_cond_wait(
    c: *mut libc::pthread_cond_t,
    m: *mut libc::pthread_mutex_t,
) -> c_int {
    let real = real!(c"pthread_cond_wait", CondWait);
    let w = sync::wait_begin(c as u64, false);
    // SAFETY: forwarding the caller's arguments.
    let r = unsafe { real(c, m) };
    sync::wait_end(w);
    r
}

/// # Safety
/// As `pthread_cond_timedwait`.
#[no_mangle]
pub unsafe extern "C" fn pthread_cond_timedwait(
    c: *mut libc::pthread_cond_t,
    m: *mut libc::pthread_mutex_t,
    t: *const libc::timespec,
) -> c_int {
    let real = real!(c"pthread_cond_timedwait", CondTimedWait);
    let w = sync::wait_begin(c as u64, false);
    // SAFETY: forwarding the caller's arguments.
    let r = unsafe { real(c, m, t) };
    sync::wait_end(w);
    r
}

/// # Safety
/// As `pthread_cond_signal`.
#[no_mangle]
pub unsafe extern "C" fn pthread_cond_signal(c: *mut libc::pthread_cond_t) -> c_int {
    let real = real!(c"pthread_cond_signal", CondWake);
    sync::wake(c as u64, 1);
    // SAFETY: forwarding the caller's argument.
    unsafe { real(c) }
}

/// # Safety
/// As `pthread_cond_broadcast`.
#[no_mangle]
pub unsafe extern "C" fn pthread_cond_broadcast(c: *mut libc::pthread_cond_t) -> c_int {
    let real = real!(c"pthread_cond_broadcast", CondWake);
    sync::wake(c as u64, usize::MAX);
    // SAFETY: forwarding the caller's argument.
    unsafe { real(c) }
}

/// # Safety
/// As `sem_wait`.
#[no_mangle]
pub unsafe extern "C" fn sem_wait(s: *mut libc::sem_t) -> c_int {
    let real = real!(c"sem_wait", SemWait);
    if sync::is_active() {
        // SAFETY: the caller passes a valid semaphore.
        if unsafe { libc::sem_trywait(s) } == 0 {
            return 0;
        }
        let w = sync::wait_begin(s as u64, false);
        // SAFETY: as above.
        let r = unsafe { real(s) };
        sync::wait_end(w);
        return r;
    }
    // SAFETY: as above.
    unsafe { real(s) }
}

/// # Safety
/// As `pthread_join`.
#[no_mangle]
pub unsafe extern "C" fn pthread_join(t: libc::pthread_t, out: *mut *mut c_void) -> c_int {
    let real = real!(c"pthread_join", Join);
    let w = sync::wait_begin(t, false);
    // SAFETY: forwarding the caller's arguments.
    let r = unsafe { real(t, out) };
    sync::wait_end(w);
    r
}
