//! The unwinder: from a signal's interrupted context or from the current frame, by DWARF CFI
//! (framehop over the [`crate::modules`] table) with frame pointers as the fallback.
//!
//! Hazards, and how each is met:
//! - a garbage frame pointer or a bad CFI row: every stack read must lie inside the thread's
//!   stack bounds (recorded when the thread started, see [`crate::thread`]) and be 8-byte
//!   aligned, and every step must move the stack pointer up, so a bad walk ends instead of
//!   faulting or looping; CFI itself is read from bounds-checked slices of the table;
//! - unknown bounds (a thread the harness did not see start): stack words are read through
//!   `process_vm_readv`, which reports unmapped memory instead of faulting;
//! - the table being replaced, or a library unloaded, mid-walk: see [`crate::modules`];
//! - depth is bounded by [`MAX_DEPTH`]; nothing allocates (framehop runs with
//!   `MustNotAllocateDuringUnwind` and a preallocated cache), nothing locks.
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

/// Stack a [`walk`] from a signal handler needs below the handler's frame: the measured high
/// water mark with a wide margin (the `handler_stack` test measures it: about 18 KiB optimised,
/// kernel signal frame included, and 57 KiB when everything is built at opt-level 0, as a
/// program's debug build that links the harness may be).
pub const UNWIND_ROOM: usize = if cfg!(debug_assertions) {
    96 * 1024
} else {
    32 * 1024
};

/// [`walk`] when the stack the caller runs on has [`UNWIND_ROOM`] left below it; otherwise only
/// the interrupted instruction, so that a handler on a nearly full stack (a thread near its
/// limit, a program's small alternate signal stack) keeps the sample's leaf function instead of
/// overflowing. Returns the depth and whether the stack was walked.
///
/// # Safety
/// As [`walk`].
pub unsafe fn walk_if_room(
    regs: Regs,
    bounds: (usize, usize),
    out: &mut [u64; MAX_DEPTH],
) -> (usize, bool) {
    if crate::thread::stack_room() < UNWIND_ROOM {
        out[0] = regs.pc;
        return (1, false);
    }
    // SAFETY: as guaranteed by our caller.
    (unsafe { walk(regs, bounds, out) }, true)
}

/// Walk the stack starting at `regs`, writing return addresses (leaf first) into `out`.
/// `bounds` is the thread's stack `[low, high)`, or `(0, 0)` when unknown: frames are then read
/// with `process_vm_readv`, which fails cleanly on unmapped memory instead of faulting.
/// Returns the depth.
///
/// Each frame is stepped by the DWARF CFI of the object that holds its address (framehop, over
/// the [`crate::modules`] table): a function with a frame pointer has the rule "caller's frame
/// at `rbp`" and costs what a frame-pointer step costs once the rule is cached; a function
/// without one (glibc, the vDSO, C built without frame pointers) is stepped by its own CFA rule.
/// Without a table or a free cache the walk follows frame pointers alone.
///
/// # Safety
/// `regs` must describe a frame of the calling thread (or of the thread this signal
/// interrupted, when called from its handler), and `bounds`, when known, must be that thread's
/// mapped stack.
pub unsafe fn walk(regs: Regs, bounds: (usize, usize), out: &mut [u64; MAX_DEPTH]) -> usize {
    // SAFETY: as guaranteed by our caller.
    unsafe { walk_from(regs, bounds, out, false) }
}

/// [`walk`], where `in_body` says that `regs.pc` is past its function's prologue and before its
/// epilogue (a capture from inside a function body), so that its frame may take the
/// frame-pointer step like a caller's frame.
///
/// # Safety
/// As [`walk`].
unsafe fn walk_from(
    regs: Regs,
    bounds: (usize, usize),
    out: &mut [u64; MAX_DEPTH],
    in_body: bool,
) -> usize {
    let reader = if bounds.0 < bounds.1 {
        Reader::Bounded(bounds.0 as u64, bounds.1 as u64)
    } else {
        // Unknown bounds: no frame may lie below the stack pointer or absurdly far above it.
        Reader::Checked(regs.sp, regs.sp.saturating_add(64 << 20))
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = in_body;
    #[cfg(target_arch = "x86_64")]
    if let Some(Some(n)) = crate::modules::with_table(|table| {
        crate::modules::with_cache(|cache| cfi_walk(table, cache, regs, &reader, out, in_body))
    }) {
        return n;
    }
    fp_walk(regs, &reader, out)
}

/// The CFI walk of [`walk`]. Ends at the thread's entry (its CFI marks the return address
/// undefined), at a read outside the stack, or when a step does not move the stack pointer up.
///
/// The interrupted frame is always stepped by framehop (its PC may be in a prologue or an
/// epilogue). A caller's frame is at a return address, past its prologue: when that address's
/// CFI rule is "the frame pointer's frame" (learned once per address, see [`FrameKinds`]) the
/// step is a frame-pointer step, about a quarter of the cost of framehop's generic one.
#[cfg(target_arch = "x86_64")]
fn cfi_walk(
    table: &crate::modules::Table,
    cache: &mut crate::modules::WalkCache,
    regs: Regs,
    reader: &Reader,
    out: &mut [u64; MAX_DEPTH],
    in_body: bool,
) -> usize {
    use framehop::x86_64::UnwindRegsX86_64;
    use framehop::{FrameAddress, Unwinder};

    let crate::modules::WalkCache { cfi, kinds } = cache;
    kinds.use_table(table);
    out[0] = regs.pc.wrapping_add(1);
    let mut n = 1;
    let mut uregs = UnwindRegsX86_64::new(regs.pc, regs.sp, regs.fp);
    let mut read = |addr: u64| reader.read(addr).ok_or(());
    // A pc inside a body has its body's CFI row, as a return address does: look it up as one.
    let mut address = match in_body {
        true => FrameAddress::from_return_address(regs.pc.wrapping_add(1))
            .unwrap_or(FrameAddress::from_instruction_pointer(regs.pc)),
        false => FrameAddress::from_instruction_pointer(regs.pc),
    };
    let mut complete = false;
    while n < MAX_DEPTH {
        let sp = uregs.sp();
        let by_frame_pointer = match address {
            FrameAddress::ReturnAddress(ret) => kinds.steps_by_frame_pointer(ret.get(), |addr| {
                probe_frame_pointer_rule(table, cfi, addr)
            }),
            FrameAddress::InstructionPointer(_) => false,
        };
        let step = if by_frame_pointer {
            let bp = uregs.bp();
            match (reader.read(bp), reader.read(bp.wrapping_add(8))) {
                (Some(next_bp), Some(ret)) => {
                    uregs.set_sp(bp.wrapping_add(16));
                    uregs.set_bp(next_bp);
                    Ok(Some(ret))
                }
                _ => Err(()),
            }
        } else {
            table
                .unwinder
                .unwind_frame(address, &mut uregs, cfi, &mut read)
                .map_err(|_| ())
        };
        match step {
            Ok(Some(ret)) if uregs.sp() > sp => {
                let Some(next) = FrameAddress::from_return_address(ret) else {
                    break;
                };
                out[n] = ret;
                n += 1;
                address = next;
            }
            Ok(None) => {
                complete = true;
                break;
            }
            _ => break,
        }
    }
    // A walk that stopped short at (or, from a signal, started from) an address outside every
    // known object has met a library loaded since the table was built: have the table rebuilt
    // now. A capture starts in the harness's own code, always known.
    let last = out[n - 1].wrapping_sub(1);
    if (!in_body && !table.is_code(regs.pc)) || (!complete && n < MAX_DEPTH && !table.is_code(last))
    {
        crate::modules::note_unknown_address();
    }
    n
}

/// Whether the frame at return address `ret` is stepped exactly as a frame-pointer step
/// (caller's sp = bp + 16, bp = [bp], return address = [bp + 8]): its CFI rule is run on
/// made-up registers far apart and a made-up stack whose words name their own address, so only
/// the frame-pointer rule can give those three results. Reads no real memory.
#[cfg(target_arch = "x86_64")]
fn probe_frame_pointer_rule(
    table: &crate::modules::Table,
    cfi: &mut crate::modules::CfiCache,
    ret: u64,
) -> bool {
    use framehop::x86_64::UnwindRegsX86_64;
    use framehop::{FrameAddress, Unwinder};

    const SP: u64 = 0x1000_0000_0000;
    const BP: u64 = 0x3000_0000_0000;
    const MARK: u64 = 0x0505_0505_0505_0505;
    let Some(address) = FrameAddress::from_return_address(ret) else {
        return false;
    };
    let mut regs = UnwindRegsX86_64::new(ret, SP, BP);
    let mut word_at = |addr: u64| Ok(addr ^ MARK);
    matches!(
        table.unwinder.unwind_frame(address, &mut regs, cfi, &mut word_at),
        Ok(Some(r)) if r == (BP + 8) ^ MARK
    ) && regs.sp() == BP + 16
        && regs.bp() == BP ^ MARK
}

/// Per cache: which return addresses' frames step by frame pointer, learned once per address
/// and table (a direct-mapped table of `address << 1 | is_frame_pointer`, 0 = empty).
pub struct FrameKinds {
    table: usize,
    slots: [u64; FRAME_KINDS],
}

const FRAME_KINDS: usize = 2048;

impl FrameKinds {
    /// An empty one.
    pub fn new() -> Self {
        FrameKinds {
            table: 0,
            slots: [0; FRAME_KINDS],
        }
    }

    /// Forget what was learned under another table (objects may have moved).
    #[cfg(target_arch = "x86_64")]
    fn use_table(&mut self, table: &crate::modules::Table) {
        let id = table as *const _ as usize;
        if self.table != id {
            self.slots.fill(0);
            self.table = id;
        }
    }

    /// Whether `ret`'s frame steps by frame pointer, asking `learn` the first time.
    #[cfg(target_arch = "x86_64")]
    fn steps_by_frame_pointer(&mut self, ret: u64, learn: impl FnOnce(u64) -> bool) -> bool {
        let slot = (ret.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 53) as usize % FRAME_KINDS;
        let entry = self.slots[slot];
        if entry >> 1 == ret && entry != 0 {
            return entry & 1 == 1;
        }
        let fp = learn(ret);
        self.slots[slot] = ret << 1 | fp as u64;
        fp
    }
}

impl Default for FrameKinds {
    fn default() -> Self {
        Self::new()
    }
}

/// Follow the frame-pointer chain from `regs`: the fallback when no CFI table or cache is at
/// hand. Loses the caller of any frame without a frame pointer.
fn fp_walk(regs: Regs, reader: &Reader, out: &mut [u64; MAX_DEPTH]) -> usize {
    out[0] = regs.pc.wrapping_add(1);
    let mut n = 1;
    let mut fp = regs.fp;
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
    let regs = current_regs();
    let bounds = crate::thread::stack_bounds();
    let mut tmp = [0u64; MAX_DEPTH];
    // SAFETY: `regs` are this very function's registers, taken in its body, on the calling
    // thread's stack, and `bounds` are that thread's recorded bounds.
    let n = unsafe { walk_from(regs, bounds, &mut tmp, true) };
    // tmp[0] is a pc inside this function; tmp[1] is our caller.
    let skip = (1 + skip).min(n);
    let depth = n - skip;
    out[..depth].copy_from_slice(&tmp[skip..n]);
    depth
}

/// The registers of the calling function at this point (inlined into it): a pc inside it and
/// the stack and frame pointers that hold at that pc, as its CFI describes them.
#[inline(always)]
fn current_regs() -> Regs {
    let (pc, sp, fp): (u64, u64, u64);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads registers, no memory access, no stack use.
    unsafe {
        std::arch::asm!(
            "lea {pc}, [rip]",
            "mov {sp}, rsp",
            "mov {fp}, rbp",
            pc = out(reg) pc,
            sp = out(reg) sp,
            fp = out(reg) fp,
            options(nomem, nostack, preserves_flags)
        )
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: reads registers, no memory access, no stack use.
    unsafe {
        std::arch::asm!(
            "adr {pc}, .",
            "mov {sp}, sp",
            "mov {fp}, x29",
            pc = out(reg) pc,
            sp = out(reg) sp,
            fp = out(reg) fp,
            options(nomem, nostack, preserves_flags)
        )
    };
    Regs { pc, fp, sp }
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

    extern "C" {
        /// glibc's backtrace(3): libgcc's DWARF unwinder, an implementation independent of ours.
        fn backtrace(buffer: *mut *mut libc::c_void, size: libc::c_int) -> libc::c_int;
    }

    /// What the comparator saw: our stack and libgcc's, both taken inside it.
    static SEEN: std::sync::Mutex<Option<(Vec<u64>, Vec<u64>)>> = std::sync::Mutex::new(None);

    extern "C" fn compare(a: *const libc::c_void, b: *const libc::c_void) -> libc::c_int {
        let mut seen = SEEN.lock().unwrap();
        if seen.is_none() {
            let mut ours = [0u64; MAX_DEPTH];
            let n = capture_current(0, &mut ours);
            let mut theirs = [std::ptr::null_mut(); MAX_DEPTH];
            // SAFETY: the buffer holds MAX_DEPTH pointers.
            let m = unsafe { backtrace(theirs.as_mut_ptr(), MAX_DEPTH as libc::c_int) };
            *seen = Some((
                ours[..n].to_vec(),
                theirs[..m as usize].iter().map(|&p| p as u64).collect(),
            ));
        }
        // SAFETY: qsort passes pointers to two elements of our i32 array.
        let (a, b) = unsafe { (*(a as *const i32), *(b as *const i32)) };
        a.cmp(&b) as libc::c_int
    }

    /// Our stack inside a callback from glibc's `qsort` (built without frame pointers) is the
    /// stack libgcc's unwinder reports, frame for frame, to the thread's entry.
    #[test]
    fn stacks_through_libc_match_libgcc() {
        crate::thread::record_stack_bounds();
        crate::modules::start();
        let mut values: Vec<i32> = (0..256).map(|i| (i * 7919) % 256).collect();
        // SAFETY: a valid array of i32 with a comparator for i32.
        unsafe {
            libc::qsort(
                values.as_mut_ptr() as *mut libc::c_void,
                values.len(),
                4,
                Some(compare),
            )
        };
        let (ours, theirs) = SEEN.lock().unwrap().take().unwrap();
        // ours[0] and theirs[0] are the two call sites inside `compare`; from its caller on
        // both must agree.
        assert!(theirs.len() > 4, "{theirs:x?}");
        assert_eq!(
            &ours[1..],
            &theirs[1..],
            "ours {ours:x?}\ntheirs {theirs:x?}"
        );
        // The walk crossed libc: frames in qsort, then this test's in the executable.
        let objects = crate::maps::loaded_objects();
        let libc = objects.iter().find(|o| o.path.contains("libc.so")).unwrap();
        let in_libc = |a: u64| {
            libc.segments
                .iter()
                .any(|s| (s.start..s.limit).contains(&a))
        };
        let in_main = |a: u64| {
            objects[0]
                .segments
                .iter()
                .any(|s| (s.start..s.limit).contains(&a))
        };
        let first_libc = ours
            .iter()
            .position(|&a| in_libc(a))
            .expect("no frame in libc");
        let caller = ours[first_libc..].iter().find(|&&a| !in_libc(a));
        assert!(caller.is_some_and(|&a| in_main(a)), "{ours:x?}");
    }
}
