//! Raw memory from the kernel, for tables that code inside `malloc` uses: it cannot come from
//! `malloc` itself. Anonymous, zero-filled, reserved lazily (untouched pages cost nothing).
//! And raw system calls, which bypass libc's `syscall` (the preload interposes it).

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
