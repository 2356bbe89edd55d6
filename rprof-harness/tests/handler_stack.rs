//! The CPU handler on an alternate signal stack: how much of it one sample uses, measured, and
//! what a stack too small to unwind on still records.

use std::sync::atomic::{AtomicU64, Ordering};

use rprof_harness::{cpu, thread, unwind};

/// Burn about `ns` of CPU time `depth` frames down.
#[inline(never)]
fn spin_deep(depth: u32, ns: u64) -> u64 {
    if depth > 0 {
        return std::hint::black_box(spin_deep(depth - 1, ns)).wrapping_add(1);
    }
    let start = thread_cpu_ns();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    while thread_cpu_ns() - start < ns {
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
    }
    x
}

fn thread_cpu_ns() -> u64 {
    // SAFETY: timespec is plain data, written by clock_gettime.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn alt_stack() -> libc::stack_t {
    // SAFETY: stack_t is plain data; sigaltstack only reads into it.
    let mut s: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: a null new stack only queries.
    assert_eq!(unsafe { libc::sigaltstack(std::ptr::null(), &mut s) }, 0);
    s
}

static SAMPLES: AtomicU64 = AtomicU64::new(0);

// One test function: a process has one CPU profiler.
#[test]
fn one_sample_fits_the_room_the_handler_asks_for_and_a_small_stack_keeps_the_leaf() {
    rprof_harness::modules::start();
    thread::record_stack_bounds();
    // A fresh alternate stack of ALT_STACK_SIZE (replacing the few KiB Rust gave this thread),
    // all zero: the deepest non-zero byte after profiling is the handler's high-water mark.
    thread::use_alt_stacks();
    let alt = alt_stack();
    assert_eq!(alt.ss_size, thread::ALT_STACK_SIZE);
    cpu::start(1000).unwrap();
    spin_deep(60, 400_000_000);
    let data = cpu::stop().unwrap();
    let samples: u64 = data.stacks.values().sum();
    SAMPLES.store(samples, Ordering::Relaxed);
    assert!(samples >= 100, "{samples} samples in 0.4 s at 1000 Hz");
    assert_eq!(
        data.leaf_only, 0,
        "the alternate stack has room for every unwind"
    );
    let deepest = data.stacks.keys().map(|s| s.stack.len()).max().unwrap();
    assert!(
        deepest > 60,
        "the samples were unwound through the recursion ({deepest} frames)"
    );
    // SAFETY: the alternate stack mapped by use_alt_stacks, readable and still mapped.
    let bytes = unsafe { std::slice::from_raw_parts(alt.ss_sp as *const u8, alt.ss_size) };
    let first_used = bytes.iter().position(|&b| b != 0).unwrap();
    let used = alt.ss_size - first_used;
    eprintln!("one sample used {used} bytes of the alternate stack (kernel frame included)");
    assert!(
        used < unwind::UNWIND_ROOM,
        "a sample used {used} bytes, more than the {} the handler asks for",
        unwind::UNWIND_ROOM
    );

    // A stack too small to unwind on: a thread with a 16 KiB alternate stack of its own.
    let small = std::thread::spawn(|| {
        thread::record_stack_bounds();
        let mut mem = vec![0u8; 16 * 1024];
        let stack = libc::stack_t {
            ss_sp: mem.as_mut_ptr() as *mut libc::c_void,
            ss_flags: 0,
            ss_size: mem.len(),
        };
        // SAFETY: `mem` outlives the use below; the stack is disabled before it is freed.
        assert_eq!(
            unsafe { libc::sigaltstack(&stack, std::ptr::null_mut()) },
            0
        );
        cpu::start(1000).unwrap();
        spin_deep(10, 200_000_000);
        let data = cpu::stop().unwrap();
        let off = libc::stack_t {
            ss_sp: std::ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: disabling this thread's alternate stack.
        unsafe { libc::sigaltstack(&off, std::ptr::null_mut()) };
        drop(mem);
        data
    })
    .join()
    .unwrap();
    let samples: u64 = small.stacks.values().sum();
    assert!(samples >= 50, "{samples} samples in 0.2 s at 1000 Hz");
    assert!(
        small.leaf_only * 10 >= samples * 9,
        "{} of {samples} samples on a 16 KiB stack were leaf-only",
        small.leaf_only
    );
    assert!(small.stacks.keys().all(|s| s.stack.len() == 1));
}
