//! The frame-pointer unwinder: from a signal's interrupted context or from the current frame.
//!
//! Hazards, and how each is met:
//! - a garbage frame pointer: every frame address must lie inside the thread's stack bounds
//!   (recorded when the thread started, see [`crate::thread`]), be 8-byte aligned and grow
//!   strictly, so a bad chain ends the walk instead of faulting;
//! - unknown bounds (a thread the harness did not see start): only the leaf is recorded;
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
/// `bounds` is the thread's stack `[low, high)`, or `(0, 0)` when unknown. Returns the depth.
///
/// # Safety
/// `regs` must describe a frame of the calling thread (or of the thread this signal
/// interrupted, when called from its handler), and `bounds` must be that thread's mapped stack.
pub unsafe fn walk(regs: Regs, bounds: (usize, usize), out: &mut [u64; MAX_DEPTH]) -> usize {
    let (lo, hi) = (bounds.0 as u64, bounds.1 as u64);
    out[0] = regs.pc.wrapping_add(1);
    let mut n = 1;
    if lo >= hi {
        return n;
    }
    let in_stack =
        |addr: u64, len: u64| addr >= lo && addr.saturating_add(len) <= hi && addr % 8 == 0;
    let mut fp = regs.fp;
    // A leaf without a frame: the caller's return address is still at the stack pointer.
    if !crate::maps::is_framed_code(regs.pc) && in_stack(regs.sp, 8) {
        // SAFETY: `sp` lies inside this thread's recorded stack, which is mapped.
        let at_sp = unsafe { *(regs.sp as *const u64) };
        let frame_ret = if in_stack(fp, 16) && fp >= regs.sp {
            // SAFETY: `fp + 8` lies inside the stack (checked just above).
            unsafe { *((fp + 8) as *const u64) }
        } else {
            0
        };
        if at_sp != frame_ret && crate::maps::is_code(at_sp) {
            out[n] = at_sp;
            n += 1;
        }
    }
    let mut floor = regs.sp;
    while n < MAX_DEPTH {
        if fp < floor || !in_stack(fp, 16) {
            break;
        }
        // SAFETY: `fp .. fp + 16` lies inside the thread's mapped stack (checked above).
        let (next, ret) = unsafe { (*(fp as *const u64), *((fp + 8) as *const u64)) };
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
