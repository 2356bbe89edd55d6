//! Per-thread state the handlers need without locks: stack bounds and the harness guard.
//!
//! Everything lives in the [`crate::tls`] block, reached without `__tls_get_addr`, so reading
//! it from a signal handler or the malloc interposer neither allocates nor locks. Bounds are recorded when a thread
//! starts (the preload wraps `pthread_create`) and for the main thread at load time; reading them
//! with `pthread_getattr_np` is not async-signal-safe, which is why the handler never does.

use crate::tls::block;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Record the calling thread's stack bounds. Call at thread start, never in a handler.
pub fn record_stack_bounds() {
    if let Some(bounds) = query_stack_bounds() {
        block().stack.set(bounds);
    }
}

/// Record the calling thread's stack bounds unless already known.
pub fn record_stack_bounds_if_unknown() {
    if stack_bounds() == (0, 0) {
        record_stack_bounds();
    }
}

/// The calling thread's stack `[low, high)`, or `(0, 0)` when not recorded. Async-signal-safe.
pub fn stack_bounds() -> (usize, usize) {
    block().stack.get()
}

fn query_stack_bounds() -> Option<(usize, usize)> {
    // SAFETY: pthread_attr_t is plain data; zeroed is a valid "uninitialised" value that
    // pthread_getattr_np initialises.
    let mut attr: libc::pthread_attr_t = unsafe { std::mem::zeroed() };
    // SAFETY: `attr` is valid for writes; pthread_self is always valid.
    if unsafe { libc::pthread_getattr_np(libc::pthread_self(), &mut attr) } != 0 {
        return None;
    }
    let mut addr: *mut libc::c_void = std::ptr::null_mut();
    let mut size: libc::size_t = 0;
    // SAFETY: `attr` was initialised by pthread_getattr_np; out-pointers are valid.
    let rc = unsafe { libc::pthread_attr_getstack(&attr, &mut addr, &mut size) };
    // SAFETY: `attr` was initialised above and is destroyed once.
    unsafe { libc::pthread_attr_destroy(&mut attr) };
    (rc == 0 && size > 0).then(|| (addr as usize, addr as usize + size))
}

/// Whether the calling thread is inside harness code (its own threads, or a handler already
/// running). Async-signal-safe.
pub fn in_harness() -> bool {
    block().in_harness.get()
}

/// Mark the calling thread as a harness thread for the rest of its life (drain, writer).
pub fn mark_harness_thread() {
    block().in_harness.set(true);
    let tid = gettid();
    let _registered = HARNESS_TIDS.iter().any(|t| {
        t.compare_exchange(0, tid, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    });
}

/// Kernel ids of the harness's own threads, so that no profiler ever looks at them.
static HARNESS_TIDS: [AtomicI32; 16] = [const { AtomicI32::new(0) }; 16];

/// Whether `tid` is one of the harness's own threads.
pub fn is_harness_tid(tid: libc::pid_t) -> bool {
    HARNESS_TIDS
        .iter()
        .any(|t| t.load(Ordering::Acquire) == tid)
}

/// Forget the calling harness thread's id (when it ends).
pub fn unmark_harness_thread() {
    let tid = gettid();
    for t in &HARNESS_TIDS {
        let _ = t.compare_exchange(tid, 0, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// Set whether the calling thread is inside harness code; returns the previous state.
pub fn set_in_harness(inside: bool) -> bool {
    block().in_harness.replace(inside)
}

/// Run `f` with the calling thread marked as inside the harness, so that what `f` does (e.g.
/// allocate) is not profiled. Re-entrant.
pub fn with_harness_guard<R>(f: impl FnOnce() -> R) -> R {
    let was = block().in_harness.replace(true);
    let r = f();
    block().in_harness.set(was);
    r
}

/// The kernel's id of the calling thread.
pub fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as libc::pid_t }
}

/// Size of the alternate signal stack [`give_alt_stack`] gives a thread: room for the kernel's
/// signal frame and an unwind (see `unwind::UNWIND_ROOM`) with a wide margin. Only the pages
/// a handler touches are ever backed by memory.
pub const ALT_STACK_SIZE: usize = 128 * 1024;

/// Whether the profilers' handlers run on alternate signal stacks (`SA_ONSTACK`): set once
/// every thread gets one of [`ALT_STACK_SIZE`], i.e. under the preload. Without it, a program's
/// own small alternate stacks (Rust gives each thread a few KiB for its stack-overflow report)
/// would be too small for an unwind.
static ON_ALT_STACKS: AtomicBool = AtomicBool::new(false);

/// Run the profilers' handlers on alternate signal stacks from now on, and give the calling
/// thread one. Call before any handler is installed (the preload's constructor); every thread
/// started later must call [`give_alt_stack`] first thing.
pub fn use_alt_stacks() {
    give_alt_stack();
    ON_ALT_STACKS.store(true, Ordering::Release);
}

/// Whether handlers should be installed with `SA_ONSTACK` (see [`use_alt_stacks`]).
pub fn on_alt_stacks() -> bool {
    ON_ALT_STACKS.load(Ordering::Acquire)
}

/// Give the calling thread an alternate signal stack of [`ALT_STACK_SIZE`] with a guard page
/// below it, unless it has one at least that big. Rust's runtime, finding one, uses it for its
/// stack-overflow report instead of mapping its own. Not for signal handlers.
pub fn give_alt_stack() {
    // SAFETY: stack_t is plain data; sigaltstack only reads the current one into it.
    let mut now: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: a null new stack only queries.
    if unsafe { libc::sigaltstack(std::ptr::null(), &mut now) } != 0
        || (now.ss_flags & libc::SS_DISABLE == 0 && now.ss_size >= ALT_STACK_SIZE)
        || now.ss_flags & libc::SS_ONSTACK != 0
    {
        return;
    }
    let page = page_size();
    // SAFETY: an anonymous private mapping at an address of the kernel's choice; no memory of
    // ours is touched.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            page + ALT_STACK_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return;
    }
    // SAFETY: the first page of the mapping just made: a guard against overflowing the stack.
    unsafe { libc::mprotect(base, page, libc::PROT_NONE) };
    let stack = libc::stack_t {
        // SAFETY: `page` is inside the mapping.
        ss_sp: unsafe { (base as *mut u8).add(page) } as *mut libc::c_void,
        ss_flags: 0,
        ss_size: ALT_STACK_SIZE,
    };
    // SAFETY: `stack` describes memory mapped above and owned by this thread until
    // `take_alt_stack` unmaps it.
    if unsafe { libc::sigaltstack(&stack, std::ptr::null_mut()) } == 0 {
        block().alt_stack.set(base as usize);
    } else {
        // SAFETY: the mapping made above, used by nothing.
        unsafe { libc::munmap(base, page + ALT_STACK_SIZE) };
    }
}

/// Take back the alternate signal stack [`give_alt_stack`] gave the calling thread (at its
/// end): disable it if it is still the thread's, then unmap it.
pub fn take_alt_stack() {
    let base = block().alt_stack.replace(0);
    if base == 0 {
        return;
    }
    let page = page_size();
    // SAFETY: stack_t is plain data; sigaltstack only reads the current one into it.
    let mut now: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: a null new stack only queries.
    let queried = unsafe { libc::sigaltstack(std::ptr::null(), &mut now) } == 0;
    if !queried || now.ss_flags & libc::SS_ONSTACK != 0 {
        return; // running on it (cannot happen outside a handler): leave it mapped
    }
    if now.ss_sp as usize == base + page && now.ss_flags & libc::SS_DISABLE == 0 {
        let off = libc::stack_t {
            ss_sp: std::ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: disabling the calling thread's alternate stack.
        unsafe { libc::sigaltstack(&off, std::ptr::null_mut()) };
    }
    // SAFETY: the mapping give_alt_stack made for this thread, no longer its signal stack.
    unsafe { libc::munmap(base as *mut libc::c_void, page + ALT_STACK_SIZE) };
}

/// Bytes of stack left below the caller, on whichever stack it runs: the thread's alternate
/// signal stack (inside a handler installed with `SA_ONSTACK`) or its own; `usize::MAX` when
/// the thread's stack bounds are not known. Async-signal-safe (one `sigaltstack` query).
#[inline(never)]
pub fn stack_room() -> usize {
    let marker = 0u8;
    let here = std::hint::black_box(&marker) as *const u8 as usize;
    // SAFETY: stack_t is plain data; sigaltstack only reads the current one into it.
    let mut alt: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: a null new stack only queries; sigaltstack is async-signal-safe.
    let queried = unsafe { libc::sigaltstack(std::ptr::null(), &mut alt) } == 0;
    if queried && alt.ss_flags & libc::SS_ONSTACK != 0 {
        let low = alt.ss_sp as usize;
        if (low..low + alt.ss_size).contains(&here) {
            return here - low;
        }
    }
    match stack_bounds() {
        (low, high) if low < here && here <= high => here - low,
        _ => usize::MAX,
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).max(4096) as usize
}

/// Start a harness thread with the real `pthread_create` (never the preload's wrapper, so it is
/// never sampled), already marked with [`mark_harness_thread`], named `name` (at most 15 bytes:
/// what `top -H`, gdb and `/proc/<pid>/task/*/comm` show for it).
pub fn spawn_harness_thread<F: FnOnce() + Send + 'static>(
    name: &'static std::ffi::CStr,
    f: F,
) -> std::io::Result<HarnessThread> {
    extern "C" fn run(arg: *mut libc::c_void) -> *mut libc::c_void {
        mark_harness_thread();
        // SAFETY: `arg` is the Box<Box<dyn FnOnce()>> leaked by spawn_harness_thread, consumed
        // exactly once here.
        let f = unsafe { Box::from_raw(arg as *mut Box<dyn FnOnce() + Send>) };
        f();
        unmark_harness_thread();
        std::ptr::null_mut()
    }
    let boxed: Box<Box<dyn FnOnce() + Send>> = Box::new(Box::new(f));
    let arg = Box::into_raw(boxed) as *mut libc::c_void;
    let mut handle: libc::pthread_t = 0;
    // SAFETY: `run` has the signature pthread_create expects and takes ownership of `arg`.
    let rc = unsafe { real_pthread_create()(&mut handle, std::ptr::null(), run, arg) };
    if rc != 0 {
        // SAFETY: the thread was not created, so `arg` is still ours.
        drop(unsafe { Box::from_raw(arg as *mut Box<dyn FnOnce() + Send>) });
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    // SAFETY: a live thread's handle and a NUL-terminated name; a name too long is refused
    // (ERANGE) without harm.
    unsafe { libc::pthread_setname_np(handle, name.as_ptr()) };
    Ok(HarnessThread(handle))
}

/// A harness thread to join.
pub struct HarnessThread(libc::pthread_t);

impl HarnessThread {
    /// Wait for the thread to finish.
    pub fn join(self) {
        // SAFETY: the handle came from a successful pthread_create and is joined once.
        unsafe { libc::pthread_join(self.0, std::ptr::null_mut()) };
    }
}

/// The signature of `pthread_create`.
pub type PthreadCreate = unsafe extern "C" fn(
    *mut libc::pthread_t,
    *const libc::pthread_attr_t,
    extern "C" fn(*mut libc::c_void) -> *mut libc::c_void,
    *mut libc::c_void,
) -> libc::c_int;

/// libc's own `pthread_create`, found past any interposer (the preload's included).
pub fn real_pthread_create() -> PthreadCreate {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static REAL: AtomicUsize = AtomicUsize::new(0);
    let mut f = REAL.load(Ordering::Acquire);
    if f == 0 {
        // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name is always valid to call.
        f = unsafe { libc::dlsym(libc::RTLD_NEXT, c"pthread_create".as_ptr()) } as usize;
        if f == 0 {
            // Linked statically into a program with no interposer: the default lookup finds libc's.
            // SAFETY: as above.
            f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"pthread_create".as_ptr()) } as usize;
        }
        REAL.store(f, Ordering::Release);
    }
    assert!(f != 0, "pthread_create not found");
    // SAFETY: `f` is the address of libc's pthread_create, which has this signature.
    unsafe { std::mem::transmute::<usize, PthreadCreate>(f) }
}
