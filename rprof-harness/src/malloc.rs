//! The interposed glibc malloc family (preload only): each call forwards to glibc's own
//! (`__libc_malloc` and friends, bound directly, so no `dlsym` bootstrap is needed) and reports
//! the allocation or free to the memory profiler.
//!
//! Hazards, and how each is met:
//! - re-entrancy: the profiler's own allocations (and everything on harness threads) are skipped
//!   by the thread's harness guard, checked only on the rare sampled path;
//! - allocations before the profiler starts, or of pointers glibc made internally: forwarded
//!   untouched; their frees miss the address filter and are forwarded too;
//! - ordering: a block is recorded after glibc returns it and forgotten before glibc gets it
//!   back, so an address is never reused while recorded;
//! - `malloc_usable_size` needs no wrapper: the pointers are glibc's own, unchanged;
//! - `fork`: see [`crate::mem::live`] (atfork handlers registered by the preload).

use libc::{c_int, c_void, size_t};

use crate::mem;

extern "C" {
    fn __libc_malloc(size: size_t) -> *mut c_void;
    fn __libc_calloc(n: size_t, size: size_t) -> *mut c_void;
    fn __libc_realloc(p: *mut c_void, size: size_t) -> *mut c_void;
    fn __libc_free(p: *mut c_void);
    fn __libc_memalign(align: size_t, size: size_t) -> *mut c_void;
    fn __libc_valloc(size: size_t) -> *mut c_void;
    fn __libc_pvalloc(size: size_t) -> *mut c_void;
}

/// # Safety
/// As C's `malloc`.
#[no_mangle]
pub unsafe extern "C" fn malloc(size: size_t) -> *mut c_void {
    // SAFETY: forwarding the caller's argument to glibc.
    let p = unsafe { __libc_malloc(size) };
    mem::on_alloc(p as *mut u8, size);
    p
}

/// # Safety
/// As C's `calloc`.
#[no_mangle]
pub unsafe extern "C" fn calloc(n: size_t, size: size_t) -> *mut c_void {
    // SAFETY: forwarding the caller's arguments to glibc (which checks the overflow).
    let p = unsafe { __libc_calloc(n, size) };
    if !p.is_null() {
        mem::on_alloc(p as *mut u8, n.wrapping_mul(size));
    }
    p
}

/// # Safety
/// As C's `realloc`.
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: size_t) -> *mut c_void {
    // A realloc is a free and an allocation: forget the old block before glibc may reuse it.
    mem::on_free(p as *mut u8);
    // SAFETY: forwarding the caller's arguments to glibc.
    let q = unsafe { __libc_realloc(p, size) };
    if !q.is_null() {
        mem::on_alloc(q as *mut u8, size);
    }
    q
}

/// # Safety
/// As C's `free`.
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    mem::on_free(p as *mut u8);
    // SAFETY: forwarding the caller's pointer to glibc.
    unsafe { __libc_free(p) }
}

/// # Safety
/// As C's `posix_memalign`.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(
    out: *mut *mut c_void,
    align: size_t,
    size: size_t,
) -> c_int {
    if !align.is_power_of_two() || align % std::mem::size_of::<*mut c_void>() != 0 {
        return libc::EINVAL;
    }
    // SAFETY: alignment checked as posix_memalign requires; glibc's memalign does the rest.
    let p = unsafe { __libc_memalign(align, size) };
    if p.is_null() && size != 0 {
        return libc::ENOMEM;
    }
    mem::on_alloc(p as *mut u8, size);
    // SAFETY: the caller passes a valid out-pointer.
    unsafe { *out = p };
    0
}

/// # Safety
/// As C's `aligned_alloc`.
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: size_t, size: size_t) -> *mut c_void {
    // SAFETY: glibc's aligned_alloc is its memalign.
    let p = unsafe { __libc_memalign(align, size) };
    mem::on_alloc(p as *mut u8, size);
    p
}

/// # Safety
/// As C's `memalign`.
#[no_mangle]
pub unsafe extern "C" fn memalign(align: size_t, size: size_t) -> *mut c_void {
    // SAFETY: forwarding the caller's arguments to glibc.
    let p = unsafe { __libc_memalign(align, size) };
    mem::on_alloc(p as *mut u8, size);
    p
}

/// # Safety
/// As C's `valloc`.
#[no_mangle]
pub unsafe extern "C" fn valloc(size: size_t) -> *mut c_void {
    // SAFETY: forwarding the caller's argument to glibc.
    let p = unsafe { __libc_valloc(size) };
    mem::on_alloc(p as *mut u8, size);
    p
}

/// # Safety
/// As C's `pvalloc`.
#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: size_t) -> *mut c_void {
    // SAFETY: forwarding the caller's argument to glibc.
    let p = unsafe { __libc_pvalloc(size) };
    mem::on_alloc(p as *mut u8, size);
    p
}

/// For [`crate::alloc::ProfiledAlloc`] in the profiled program: account an allocation.
#[no_mangle]
pub extern "C" fn rprof_harness_on_alloc(p: *mut u8, size: usize) {
    crate::alloc::note_wrapper_used();
    mem::on_alloc(p, size);
}

/// For [`crate::alloc::ProfiledAlloc`]: account a free.
#[no_mangle]
pub extern "C" fn rprof_harness_on_free(p: *mut u8) {
    mem::on_free(p);
}

/// For [`crate::alloc::ProfiledAlloc`]: enter (`true`) or leave harness code around the inner
/// allocator, so a malloc-based inner allocator is not counted twice. Returns the old state.
#[no_mangle]
pub extern "C" fn rprof_harness_guard(enter: bool) -> bool {
    crate::thread::set_in_harness(enter)
}
