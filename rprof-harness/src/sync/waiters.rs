//! Who is waiting on what, for the mutex profiler: one slot per waiting thread holding the
//! address it waits on and since when, so that the thread that wakes waiters can charge itself
//! with the delay they incurred.
//!
//! Lock-free: a thread claims its slot once (CAS on the owner), then only it writes the slot's
//! address; wakers read addresses and swap the "charged from" time. Slots are released when a
//! thread the preload saw start exits.

use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};

const SLOTS: usize = 4096;

struct Slot {
    owner: AtomicI32,
    addr: AtomicU64,
    /// When the current wait began: the kernel wakes waiters in this order.
    start: AtomicU64,
    /// Up to when the current wait has been charged to a waker.
    charged_from: AtomicU64,
}

static TABLE: [Slot; SLOTS] = [const {
    Slot {
        owner: AtomicI32::new(0),
        addr: AtomicU64::new(0),
        start: AtomicU64::new(0),
        charged_from: AtomicU64::new(0),
    }
}; SLOTS];
static HIGH_WATER: AtomicUsize = AtomicUsize::new(0);

fn my_slot() -> Option<&'static Slot> {
    // The thread's slot plus one, 0 = none (see ThreadBlock).
    let mine = &crate::tls::block().waiter_slot;
    if let Some(i) = mine.get().checked_sub(1) {
        return Some(&TABLE[i]);
    }
    let tid = crate::thread::gettid();
    let i = TABLE.iter().position(|s| {
        s.owner
            .compare_exchange(0, tid, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })?;
    HIGH_WATER.fetch_max(i + 1, Ordering::AcqRel);
    mine.set(i + 1);
    Some(&TABLE[i])
}

/// The calling thread starts waiting on `addr` at `now`.
pub(crate) fn begin(addr: u64, now: u64) {
    if let Some(s) = my_slot() {
        s.start.store(now, Ordering::Relaxed);
        s.charged_from.store(now, Ordering::Relaxed);
        s.addr.store(addr, Ordering::Release);
    }
}

/// The calling thread stopped waiting.
pub(crate) fn end() {
    if let Some(s) = my_slot() {
        s.addr.store(0, Ordering::Release);
    }
}

/// A thread woke up to `n` waiters of `addr` at `now`: charge the delay of the `n` that began
/// waiting first (the kernel wakes in FIFO order) since they were last charged. Returns the total
/// delay and the number of waiters charged. A guess that picks a waiter the kernel did not wake
/// loses nothing: that waiter is charged again, from now, when it is woken.
pub(crate) fn charge(addr: u64, n: usize, now: u64) -> (u64, u64) {
    if addr == 0 || n == 0 {
        return (0, 0);
    }
    let hw = HIGH_WATER.load(Ordering::Acquire);
    // One pass per waiter charged, oldest first (`n` is 1 but for broadcasts).
    let mut total = 0u64;
    let mut charged = 0u64;
    let mut remaining = n;
    while remaining > 0 {
        let mut oldest: Option<(usize, u64)> = None;
        for (i, s) in TABLE[..hw].iter().enumerate() {
            if s.addr.load(Ordering::Acquire) == addr
                && s.charged_from.load(Ordering::Relaxed) < now
            {
                let start = s.start.load(Ordering::Relaxed);
                if oldest.is_none_or(|(_, t)| start < t) {
                    oldest = Some((i, start));
                }
            }
        }
        let Some((i, _)) = oldest else { break };
        // A woken waiter either stops waiting or, having lost the race for the lock, queues
        // again at the back of the kernel's queue: move it there.
        TABLE[i].start.store(now, Ordering::Relaxed);
        let from = TABLE[i].charged_from.swap(now, Ordering::AcqRel);
        total += now.saturating_sub(from);
        charged += 1;
        remaining -= 1;
    }
    (total, charged)
}

/// Free the calling thread's slot (at thread exit).
pub(crate) fn release() {
    if let Some(i) = crate::tls::block().waiter_slot.replace(0).checked_sub(1) {
        TABLE[i].addr.store(0, Ordering::Relaxed);
        TABLE[i].owner.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_the_oldest_waiter_once() {
        let addr = 0xdead_bee0;
        let other = std::thread::spawn(move || {
            begin(addr, 100);
            std::thread::sleep(std::time::Duration::from_millis(50));
            end();
            release();
        });
        std::thread::sleep(std::time::Duration::from_millis(10));
        begin(addr, 300);
        assert_eq!(charge(addr, 1, 1000), (900, 1));
        assert_eq!(charge(addr, 1, 1000), (700, 1));
        assert_eq!(charge(addr, 5, 1000), (0, 0));
        end();
        other.join().unwrap();
        assert_eq!(charge(addr, 1, 2000), (0, 0));
        release();
    }
}
