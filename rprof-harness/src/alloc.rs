//! [`ProfiledAlloc`]: a `GlobalAlloc` wrapper for programs whose `#[global_allocator]` bypasses
//! malloc (jemalloc, mimalloc, a custom one), so that their allocations reach the memory
//! profiler all the same.
//!
//! Under `cargo rprof` the profiler lives in the preload library: the wrapper finds its entry
//! points with `dlsym` on first use. Without the preload it feeds this crate's own profiler
//! (started through the library API). The inner allocator runs inside the harness guard, so an
//! inner allocator built on malloc is not counted twice.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Wraps any global allocator so its allocations are sampled by rprof's memory profiler.
///
/// ```
/// use rprof_harness::ProfiledAlloc;
/// use std::alloc::System; // or jemallocator::Jemalloc, mimalloc::MiMalloc, ...
///
/// #[global_allocator]
/// static GLOBAL: ProfiledAlloc<System> = ProfiledAlloc::new(System);
///
/// let v = vec![0u8; 1024];
/// assert_eq!(v.len(), 1024);
/// ```
#[derive(Debug, Default)]
pub struct ProfiledAlloc<A> {
    inner: A,
}

impl<A> ProfiledAlloc<A> {
    /// Wrap `inner`.
    pub const fn new(inner: A) -> Self {
        ProfiledAlloc { inner }
    }
}

type OnAlloc = extern "C" fn(*mut u8, usize);
type OnFree = extern "C" fn(*mut u8);
type Guard = extern "C" fn(bool) -> bool;

struct Hooks {
    on_alloc: OnAlloc,
    on_free: OnFree,
    guard: Guard,
}

extern "C" fn local_on_alloc(p: *mut u8, size: usize) {
    note_wrapper_used();
    crate::mem::on_alloc(p, size);
}

extern "C" fn local_on_free(p: *mut u8) {
    crate::mem::on_free(p);
}

extern "C" fn local_guard(enter: bool) -> bool {
    crate::thread::set_in_harness(enter)
}

static ON_ALLOC: AtomicUsize = AtomicUsize::new(0);
static ON_FREE: AtomicUsize = AtomicUsize::new(0);
static GUARD: AtomicUsize = AtomicUsize::new(0);
static WRAPPER_USED: AtomicBool = AtomicBool::new(false);

/// Record that a program's allocator wrapper reached this profiler.
pub(crate) fn note_wrapper_used() {
    if !WRAPPER_USED.load(Ordering::Relaxed) {
        WRAPPER_USED.store(true, Ordering::Relaxed);
    }
}

/// Whether a [`ProfiledAlloc`] has reported allocations to this profiler.
pub fn wrapper_used() -> bool {
    WRAPPER_USED.load(Ordering::Relaxed)
}

fn hooks() -> Hooks {
    let mut a = ON_ALLOC.load(Ordering::Acquire);
    if a == 0 {
        let find = |name: &std::ffi::CStr| {
            // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name is always valid.
            unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) as usize }
        };
        let (on_alloc, on_free, guard) = (
            find(c"rprof_harness_on_alloc"),
            find(c"rprof_harness_on_free"),
            find(c"rprof_harness_guard"),
        );
        let (on_alloc, on_free, guard) = if on_alloc != 0 && on_free != 0 && guard != 0 {
            (on_alloc, on_free, guard)
        } else {
            (
                local_on_alloc as OnAlloc as usize,
                local_on_free as OnFree as usize,
                local_guard as Guard as usize,
            )
        };
        GUARD.store(guard, Ordering::Relaxed);
        ON_FREE.store(on_free, Ordering::Relaxed);
        ON_ALLOC.store(on_alloc, Ordering::Release);
        a = on_alloc;
    }
    // SAFETY: the three statics hold addresses of functions with these exact signatures
    // (ours, or the preload's `#[no_mangle]` ones), stored before ON_ALLOC was published.
    unsafe {
        Hooks {
            on_alloc: std::mem::transmute::<usize, OnAlloc>(a),
            on_free: std::mem::transmute::<usize, OnFree>(ON_FREE.load(Ordering::Relaxed)),
            guard: std::mem::transmute::<usize, Guard>(GUARD.load(Ordering::Relaxed)),
        }
    }
}

// SAFETY: every method forwards to the inner allocator with the caller's arguments unchanged and
// returns its result unchanged; the profiler hooks only observe pointers and sizes.
unsafe impl<A: GlobalAlloc> GlobalAlloc for ProfiledAlloc<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let h = hooks();
        let was = (h.guard)(true);
        // SAFETY: forwarding the caller's layout.
        let p = unsafe { self.inner.alloc(layout) };
        (h.guard)(was);
        if !was {
            (h.on_alloc)(p, layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let h = hooks();
        let was = (h.guard)(true);
        // SAFETY: forwarding the caller's layout.
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        (h.guard)(was);
        if !was {
            (h.on_alloc)(p, layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        let h = hooks();
        (h.on_free)(p);
        let was = (h.guard)(true);
        // SAFETY: forwarding the caller's pointer and layout.
        unsafe { self.inner.dealloc(p, layout) };
        (h.guard)(was);
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let h = hooks();
        (h.on_free)(p);
        let was = (h.guard)(true);
        // SAFETY: forwarding the caller's arguments.
        let q = unsafe { self.inner.realloc(p, layout, new_size) };
        (h.guard)(was);
        if !was && !q.is_null() {
            (h.on_alloc)(q, new_size);
        }
        q
    }
}
