//! The frame-pointer unwinder: from a signal's interrupted context or from the current frame.
//!
//! Hazards, and how each is met:
//! - a garbage frame pointer: every frame address must lie inside the thread's stack bounds
//!   (recorded when the thread started, see [`crate::thread`]), be 8-byte aligned and grow
//!   strictly, so a bad chain ends the walk instead of faulting;
//! - unknown bounds (a thread the harness did not see start): frames are read through
//!   `process_vm_readv`, which reports unmapped memory instead of faulting;
//! - leaf functions without a frame (libc's): the return address at the stack pointer is
//!   recorded when it points into code and differs from the frame's own return address;
//! - depth is bounded by [`MAX_DEPTH`]; nothing allocates, nothing locks.
//!
//! Every address recorded is a *return address*: the interrupted PC is stored as `pc + 1`, so
//! the symbolizer can look up `address - 1` for every frame uniformly.

/// The deepest stack recorded; deeper stacks are truncated at the root end.
pub const MAX_DEPTH: usize = 128;

/// The registers a walk starts from.
#[derive(Debug, Clone, Copy)]
pub struct Regs {
    /// Instruction pointer of the innermost frame.
    pub pc: u64,
    /// Frame pointer.
    pub fp: u64,
    /// Stack pointer.
    pub sp: u64,
}

/// Read the interrupted registers out of a signal handler's `ucontext`.
///
/// # Safety
/// `ucontext` must be the third argument the kernel passed to an `SA_SIGINFO` handler.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub unsafe fn regs_from_ucontext(ucontext: *const libc::c_void) -> Regs {
    // SAFETY: the caller guarantees a valid ucontext_t from the kernel.
    let uc = unsafe { &*(ucontext as *const libc::ucontext_t) };
    let g = &uc.uc_mcontext.gregs;
    Regs {
        pc: g[libc::REG_RIP as usize] as u64,
        fp: g[libc::REG_RBP as usize] as u64,
        sp: g[libc::REG_RSP as usize] as u64,
    }
}

/// Read the interrupted registers out of a signal handler's `ucontext`.
///
/// # Safety
/// `ucontext` must be the third argument the kernel passed to an `SA_SIGINFO` handler.
#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
pub unsafe fn regs_from_ucontext(ucontext: *const libc::c_void) -> Regs {
    // SAFETY: the caller guarantees a valid ucontext_t from the kernel.
    let uc = unsafe { &*(ucontext as *const libc::ucontext_t) };
    let m = &uc.uc_mcontext;
    Regs {
        pc: m.pc,
        fp: m.regs[29],
        sp: m.sp,
    }
}

/// Walk the frame chain starting at `regs`, writing return addresses (leaf first) into `out`.
/// `bounds` is the thread's stack `[low, high)`, or `(0, 0)` when unknown: frames are then read
/// with `process_vm_readv`, which fails cleanly on unmapped memory instead of faulting.
/// Returns the depth.
///
/// # Safety
/// `regs` must describe a frame of the calling thread (or of the thread this signal
/// interrupted, when called from its handler), and `bounds`, when known, must be that thread's
/// mapped stack.
pub unsafe fn walk(regs: Regs, bounds: (usize, usize), out: &mut [u64; MAX_DEPTH]) -> usize {
    out[0] = regs.pc.wrapping_add(1);
    let mut n = 1;
    let reader = if bounds.0 < bounds.1 {
        Reader::Bounded(bounds.0 as u64, bounds.1 as u64)
    } else {
        // Unknown bounds: no frame may lie below the stack pointer or absurdly far above it.
        Reader::Checked(regs.sp, regs.sp.saturating_add(64 << 20))
    };
    let mut fp = regs.fp;
    // A leaf without a frame: the caller's return address is still at the stack pointer.
    if !crate::maps::is_framed_code(regs.pc) {
        if let Some(at_sp) = reader.read(regs.sp) {
            let frame_ret = if fp >= regs.sp {
                reader.read(fp.wrapping_add(8)).unwrap_or(0)
            } else {
                0
            };
            if at_sp != frame_ret && crate::maps::is_code(at_sp) {
                out[n] = at_sp;
                n += 1;
            }
        }
    }
    let mut floor = regs.sp;
    while n < MAX_DEPTH {
        if fp < floor {
            break;
        }
        let (Some(next), Some(ret)) = (reader.read(fp), reader.read(fp.wrapping_add(8))) else {
            break;
        };
        if ret == 0 {
            break;
        }
        out[n] = ret;
        n += 1;
        if next <= fp {
            break;
        }
        floor = fp + 16;
        fp = next;
    }
    n
}

/// How the walker reads a stack word.
enum Reader {
    /// Known stack bounds: direct loads inside them.
    Bounded(u64, u64),
    /// Unknown bounds: `process_vm_readv` on ourselves, within a plausible window.
    Checked(u64, u64),
}

impl Reader {
    fn read(&self, addr: u64) -> Option<u64> {
        if addr % 8 != 0 {
            return None;
        }
        match *self {
            Reader::Bounded(lo, hi) => {
                if addr < lo || addr.checked_add(8)? > hi {
                    return None;
                }
                // SAFETY: `addr .. addr + 8` lies inside the thread's recorded, mapped stack.
                Some(unsafe { *(addr as *const u64) })
            }
            Reader::Checked(lo, hi) => {
                if addr < lo || addr.checked_add(8)? > hi {
                    return None;
                }
                safe_read(addr)
            }
        }
    }
}

/// Read a word that may be unmapped: the kernel copies it or reports EFAULT. Async-signal-safe.
fn safe_read(addr: u64) -> Option<u64> {
    let mut value = 0u64;
    let local = libc::iovec {
        iov_base: &mut value as *mut u64 as *mut libc::c_void,
        iov_len: 8,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: 8,
    };
    // SAFETY: both iovecs describe 8 bytes; the local one is our own variable. errno may be
    // set, which the signal handler restores.
    let n = unsafe {
        libc::syscall(
            libc::SYS_process_vm_readv,
            libc::getpid(),
            &local as *const libc::iovec,
            1usize,
            &remote as *const libc::iovec,
            1usize,
            0usize,
        )
    };
    (n == 8).then_some(value)
}

/// Capture the calling thread's stack (for allocation and blocking samples), skipping `skip`
/// frames of the harness itself. Returns the depth written to `out`.
#[inline(never)]
pub fn capture_current(skip: usize, out: &mut [u64; MAX_DEPTH]) -> usize {
    let fp: u64;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads a register, no memory access.
    unsafe {
        std::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags))
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: reads a register, no memory access.
    unsafe {
        std::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack, preserves_flags))
    };
    let bounds = crate::thread::stack_bounds();
    let mut tmp = [0u64; MAX_DEPTH];
    // Start from our own frame: its return address is our caller.
    let regs = Regs { pc: 0, fp, sp: fp };
    // SAFETY: `fp` is this very function's frame on the calling thread's stack and `bounds`
    // are that thread's recorded bounds.
    let n = unsafe { walk(regs, bounds, &mut tmp) };
    // tmp[0] is the fake pc; tmp[1] is our caller.
    let skip = (1 + skip).min(n);
    let depth = n - skip;
    out[..depth].copy_from_slice(&tmp[skip..n]);
    depth
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn depth_with(bounds: Option<(usize, usize)>) -> usize {
        let mut out = [0u64; MAX_DEPTH];
        let fp: u64;
        // SAFETY: reads a register.
        unsafe { std::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack)) };
        let regs = Regs { pc: 0, fp, sp: fp };
        // SAFETY: our own frame and stack.
        unsafe { walk(regs, bounds.unwrap_or((0, 0)), &mut out) }
    }

    #[test]
    fn unknown_bounds_walk_as_far_as_known_ones() {
        crate::thread::record_stack_bounds();
        let known = depth_with(Some(crate::thread::stack_bounds()));
        let unknown = depth_with(None);
        assert!(known > 3, "{known}");
        assert_eq!(known, unknown);
        assert_eq!(safe_read(8), None);
    }
}
