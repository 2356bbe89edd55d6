//! Per-thread state the handlers need without locks: stack bounds and the harness guard.
//!
//! Everything is a const-initialised thread-local without a destructor, so reading it from a
//! signal handler neither allocates nor registers anything. Bounds are recorded when a thread
//! starts (the preload wraps `pthread_create`) and for the main thread at load time; reading them
//! with `pthread_getattr_np` is not async-signal-safe, which is why the handler never does.

use std::cell::Cell;
use std::sync::atomic::{AtomicI32, Ordering};

thread_local! {
    static STACK: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    static IN_HARNESS: Cell<bool> = const { Cell::new(false) };
}

/// Record the calling thread's stack bounds. Call at thread start, never in a handler.
pub fn record_stack_bounds() {
    if let Some(bounds) = query_stack_bounds() {
        STACK.with(|s| s.set(bounds));
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
    STACK.try_with(Cell::get).unwrap_or((0, 0))
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
    IN_HARNESS.try_with(Cell::get).unwrap_or(true)
}

/// Mark the calling thread as a harness thread for the rest of its life (drain, writer).
pub fn mark_harness_thread() {
    IN_HARNESS.with(|g| g.set(true));
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
    IN_HARNESS.try_with(|g| g.replace(inside)).unwrap_or(true)
}

/// Run `f` with the calling thread marked as inside the harness, so that what `f` does (e.g.
/// allocate) is not profiled. Re-entrant.
pub fn with_harness_guard<R>(f: impl FnOnce() -> R) -> R {
    let was = IN_HARNESS.with(|g| g.replace(true));
    let r = f();
    IN_HARNESS.with(|g| g.set(was));
    r
}

/// The kernel's id of the calling thread.
pub fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as libc::pid_t }
}

/// Start a harness thread with the real `pthread_create` (never the preload's wrapper, so it is
/// never sampled), already marked with [`mark_harness_thread`].
pub fn spawn_harness_thread<F: FnOnce() + Send + 'static>(f: F) -> std::io::Result<HarnessThread> {
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
