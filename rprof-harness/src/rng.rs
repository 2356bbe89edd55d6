//! A tiny allocation-free pseudo-random generator (xorshift64*), safe to use in a signal handler.

use std::sync::atomic::{AtomicU64, Ordering};

static STATE: AtomicU64 = AtomicU64::new(0);

/// A pseudo-random 64-bit value. Seeded lazily from the clock and thread id; lock-free.
pub(crate) fn next_u64() -> u64 {
    let mut x = STATE.load(Ordering::Relaxed);
    if x == 0 {
        x = seed();
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    STATE.store(x, Ordering::Relaxed);
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// A value uniform in `[0, 1)`.
pub(crate) fn next_f64() -> f64 {
    (next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn seed() -> u64 {
    let now = crate::sys::clock_ns(libc::CLOCK_MONOTONIC).unwrap_or(0);
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as u64;
    (now ^ tid.rotate_left(17)) | 1
}
