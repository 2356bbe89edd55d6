//! `fork` while other threads allocate under the in-process memory profiler (`ProfiledAlloc`
//! and the runtime API, no preload): a child must never inherit a shard lock another thread
//! held at the fork and spin on it forever.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: rprof_harness::ProfiledAlloc<std::alloc::System> =
    rprof_harness::ProfiledAlloc::new(std::alloc::System);

#[test]
fn forks_while_threads_allocate_never_hang_a_child() {
    // Every allocation recorded: the shard locks are taken as often as they can be.
    rprof_harness::pprof::start_heap_profile(1).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let churners: Vec<_> = (0..4)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                // Known stack bounds: stacks are read directly, not through process_vm_readv.
                rprof_harness::thread::record_stack_bounds();
                let mut keep = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    keep.push(vec![i as u8; 64 + keep.len() % 512]);
                    if keep.len() > 1000 {
                        keep.clear();
                    }
                }
            })
        })
        .collect();
    rprof_harness::thread::record_stack_bounds();
    let mut hung = 0;
    for _ in 0..300 {
        // SAFETY: the child only allocates (through the profiler) and exits with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // Enough allocations to touch every shard of the live table.
            let v: Vec<Vec<u64>> = (0..4000).map(|i| vec![i; 1 + i as usize % 7]).collect();
            std::hint::black_box(&v);
            drop(v);
            // SAFETY: ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(0) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut status = 0;
            // SAFETY: waiting for our own child, without blocking.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
                break;
            }
            if Instant::now() > deadline {
                hung += 1;
                // SAFETY: killing and reaping our own hung child.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in churners {
        c.join().unwrap();
    }
    assert_eq!(hung, 0, "children hung after fork");
}
