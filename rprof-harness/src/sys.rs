//! Raw memory from the kernel, for tables that code inside `malloc` uses: it cannot come from
//! `malloc` itself. Anonymous, zero-filled, reserved lazily (untouched pages cost nothing).

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
