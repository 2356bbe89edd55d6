//! The per-thread block the signal handlers and the malloc interposer read: thread-local state
//! reached without `__tls_get_addr`.
//!
//! Rust's `thread_local!` in a shared library (the preload) compiles to the general-dynamic TLS
//! model: every access calls `__tls_get_addr`, whose slow path — taken on a thread's first
//! access after a `dlopen` of any module with thread-locals — may take the loader's lock and
//! call `malloc`. A SIGPROF handler or a malloc interposer that lands there can deadlock or
//! recurse. On x86-64 the block below is instead declared in assembly and addressed with the
//! initial-exec model (`%fs:0` plus a link-time offset from the GOT): one load and an add,
//! nothing to lock or allocate. The preload is loaded at start-up (`LD_PRELOAD`), so its TLS
//! is in the static TLS area, which the initial-exec model requires; in a program that links the
//! harness the linker relaxes the access further to local-exec.
//!
//! Hazard: the block lives in `.tbss`, so every field starts as all-zero bytes on every thread;
//! a field whose natural start value is not zero is stored encoded by its owner (see the field
//! docs). Other architectures use a `const`-initialised `thread_local!` with the same layout
//! (correct, but keeping the general-dynamic hazard).

use std::cell::Cell;

/// One thread's state that async-signal-safe code needs. Each field belongs to one module.
#[repr(C)]
pub struct ThreadBlock {
    /// `thread`: the thread's stack `[low, high)`, `(0, 0)` when not recorded.
    pub stack: Cell<(usize, usize)>,
    /// `thread`: inside harness code (a harness thread, or a handler already running).
    pub in_harness: Cell<bool>,
    /// `threads`: the thread's serial (0 = unknown).
    pub serial: Cell<u32>,
    /// `mem`: bytes until the thread's next memory sample, stored XOR `i64::MIN`, so the
    /// all-zero start reads as `i64::MIN`, "not drawn yet".
    pub next_sample: Cell<i64>,
    /// `sync`: (address, stack hash) of the thread's last lock-protocol wait.
    pub last_wait: Cell<(u64, u64)>,
    /// `sync::waiters`: the thread's waiter slot plus one (0 = none).
    pub waiter_slot: Cell<usize>,
    /// `thread`: the mapping of the alternate signal stack the harness gave the thread (0 =
    /// none).
    pub alt_stack: Cell<usize>,
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod imp {
    use super::ThreadBlock;

    // The block: zero-filled thread-local storage, hidden so that two copies of the harness
    // in one process (a program linking it, run under the preload) keep their own.
    std::arch::global_asm!(
        ".pushsection .tbss,\"awT\",@nobits",
        ".p2align 4",
        ".globl rprof_harness_thread_block_v1",
        ".hidden rprof_harness_thread_block_v1",
        ".type rprof_harness_thread_block_v1, @object",
        ".size rprof_harness_thread_block_v1, {size}",
        "rprof_harness_thread_block_v1:",
        ".zero {size}",
        ".popsection",
        size = const std::mem::size_of::<ThreadBlock>(),
    );

    /// The calling thread's block.
    #[inline(always)]
    pub fn block() -> &'static ThreadBlock {
        let addr: usize;
        // SAFETY: initial-exec TLS access: %fs:0 holds the thread pointer (the TCB's self
        // pointer on x86-64 glibc and musl), and the GOT entry holds the block's offset from
        // it, filled by the loader when the object was loaded with the program. The asm reads
        // memory only (no stack, flags are clobbered by `add`, which asm! assumes).
        unsafe {
            std::arch::asm!(
                "mov {addr}, qword ptr fs:[0]",
                "add {addr}, qword ptr [rip + rprof_harness_thread_block_v1@GOTTPOFF]",
                addr = out(reg) addr,
                options(pure, readonly, nostack, preserves_flags),
            );
        }
        // SAFETY: the address is this thread's block, sized and aligned for ThreadBlock, valid
        // while the thread lives; all-zero bytes are a valid ThreadBlock (Cells of integers and
        // a bool). The reference cannot leave the thread: ThreadBlock is not Sync.
        unsafe { &*(addr as *const ThreadBlock) }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod imp {
    use super::ThreadBlock;
    use std::cell::Cell;

    thread_local! {
        static BLOCK: ThreadBlock = const {
            ThreadBlock {
                stack: Cell::new((0, 0)),
                in_harness: Cell::new(false),
                serial: Cell::new(0),
                next_sample: Cell::new(0),
                last_wait: Cell::new((0, 0)),
                waiter_slot: Cell::new(0),
                alt_stack: Cell::new(0),
            }
        };
    }

    /// The calling thread's block.
    #[inline(always)]
    pub fn block() -> &'static ThreadBlock {
        // SAFETY: the block has no destructor, so it is valid for the whole life of the thread,
        // and ThreadBlock is not Sync, so the reference cannot leave it.
        BLOCK.with(|b| unsafe { &*(b as *const ThreadBlock) })
    }
}

pub use imp::block;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_thread_has_its_own_zeroed_block() {
        block().serial.set(7);
        block().stack.set((1, 2));
        let other = std::thread::spawn(|| {
            let b = block();
            let fresh = (
                b.serial.get(),
                b.stack.get(),
                b.in_harness.get(),
                b.waiter_slot.get(),
            );
            b.serial.set(9);
            fresh
        })
        .join()
        .unwrap();
        assert_eq!(other, (0, (0, 0), false, 0));
        assert_eq!(block().serial.get(), 7);
        assert_eq!(block().stack.get(), (1, 2));
    }
}
