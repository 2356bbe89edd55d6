//! Who is waiting on what, for the mutex profiler: one slot per waiting thread holding the
//! address it waits on and up to when its wait has been charged, so that the thread that wakes
//! waiters can charge itself with the delay they incurred.
//!
//! A waker is charged with the delay of every waiter of the address since the last wake there,
//! not only of the one the kernel wakes (as Go's mutex profile does since 1.22: a lock held
//! 10 ms while 5 threads wait costs 50 ms). So no guess is needed about which waiter the kernel
//! picks, and every nanosecond of waiting is charged exactly once, to the thread whose release
//! ended the span it fell in.
//!
//! Lock-free: a thread claims its slot once (CAS on the owner), then only it writes the slot's
//! address; wakers read addresses and advance the "charged from" time. Slots are released when a
//! thread the preload saw start exits.

use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};

const SLOTS: usize = 4096;

struct Slot {
    owner: AtomicI32,
    addr: AtomicU64,
    /// Up to when the current wait has been charged to a waker.
    charged_from: AtomicU64,
}

static TABLE: [Slot; SLOTS] = [const {
    Slot {
        owner: AtomicI32::new(0),
        addr: AtomicU64::new(0),
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

/// A thread woke up to `n` waiters of `addr` at `now`: charge the delay every waiter of `addr`
/// incurred since it was last charged. Returns the total delay and the number of contentions:
/// the waiters woken, at most `n`.
pub(crate) fn charge(addr: u64, n: usize, now: u64) -> (u64, u64) {
    if addr == 0 || n == 0 {
        return (0, 0);
    }
    let hw = HIGH_WATER.load(Ordering::Acquire);
    let mut total = 0u64;
    let mut waiting = 0u64;
    for s in &TABLE[..hw] {
        if s.addr.load(Ordering::Acquire) == addr {
            // fetch_max: two wakers racing on one address charge each span once.
            let from = s.charged_from.fetch_max(now, Ordering::AcqRel);
            total += now.saturating_sub(from);
            waiting += 1;
        }
    }
    (total, waiting.min(n as u64))
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

    /// The kernel woke `b` though `a` began waiting first: both waits are still charged in
    /// full, each span once, and a wake with nobody waiting charges nothing.
    #[test]
    fn charges_every_waiter_once_whoever_is_woken() {
        let addr = 0xdead_bee0;
        let (began_tx, began_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let a = std::thread::spawn(move || {
            begin(addr, 100);
            began_tx.send(()).unwrap();
            done_rx.recv().unwrap();
            end();
            release();
        });
        began_rx.recv().unwrap();
        begin(addr, 300);
        // One woken of two waiters: 900 + 700 charged, one contention.
        assert_eq!(charge(addr, 1, 1000), (1600, 1));
        // Charged spans are not charged again; another address is not charged.
        assert_eq!(charge(addr, 1, 1000), (0, 1));
        assert_eq!(charge(addr + 8, 1, 2000), (0, 0));
        // This thread was woken and stopped waiting; `a` waits on, until 1500.
        end();
        assert_eq!(charge(addr, 5, 1500), (500, 1));
        done_tx.send(()).unwrap();
        a.join().unwrap();
        assert_eq!(charge(addr, 1, 2000), (0, 0));
        release();
    }
}
