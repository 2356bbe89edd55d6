//! The block and mutex profilers: where threads wait, and who makes them wait.
//!
//! The interposers ([`crate::sync_hooks`], preload only) call [`wait_begin`] / [`wait_end`]
//! around every wait on a synchronization primitive (a futex wait made through libc's `syscall`,
//! a contended `pthread_mutex_lock`, `pthread_cond_*wait`, ...) and [`wake`] when a thread
//! wakes waiters (a futex wake, a contended `pthread_mutex_unlock`).
//!
//! **Block**: each wait of `d` ns is an event, sampled as Go does: kept if `d >= rate`, else with
//! probability `d / rate`, then counting `rate / d` contentions and `rate` ns. Consecutive
//! lock-protocol waits (futex value [`LOCK_CONTENDED`]) of one thread on one address from one
//! stack, with no wake of that address by the thread in between, are one event: a lock that was
//! lost to another thread right after a wake-up is waited for again, and to the program that is
//! one contended `lock()`. They add delay, not contentions. A lock acquired after a wait is left
//! "contended", so its unlock always wakes: that wake is what ends the merged event, however
//! long the woken thread took to run (a time window failed under load). Condition variable and park waits are never merged: a
//! consumer loop waits again from the same stack within microseconds, and each is an event.
//!
//! **Mutex**: a thread that wakes waiters is charged with the delay they incurred since they
//! began waiting (or were last charged), see [`waiters`]; about 1 in `fraction` such events is
//! kept and scaled by `fraction`.
//!
//! Hazards: all of this runs inside `syscall` and pthread calls, possibly inside a signal
//! handler's futex use; it allocates nothing (mapped tables), takes no lock, never panics, and
//! does nothing for harness threads or harness code.

pub(crate) mod waiters;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::mem::tables::{hash_stack, Bucket, StackEntry, Table};
use crate::thread;
use crate::unwind::{self, MAX_DEPTH};

/// The futex value a waiter of a 0/1/2 lock (std's `Mutex`, glibc's low-level lock) waits
/// for: "locked, with waiters". Condition variables and parkers wait for other values.
pub const LOCK_CONTENDED: u32 = 2;

static BLOCK_RATE: AtomicU64 = AtomicU64::new(0);
static MUTEX_FRACTION: AtomicU64 = AtomicU64::new(0);

/// Stacks and counters of one event profile (block or mutex).
pub(crate) struct EventTable {
    stacks: Table<StackEntry>,
    buckets: Table<Bucket>,
    lost: AtomicU64,
}

impl EventTable {
    fn new() -> Option<Self> {
        Some(EventTable {
            stacks: Table::new(1 << 14)?,
            buckets: Table::new(1 << 15)?,
            lost: AtomicU64::new(0),
        })
    }

    fn record(&self, stack: &[u64], contentions_milli: u64, delay: u64) {
        let Some(b) = self
            .stacks
            .intern(stack)
            .and_then(|s| self.buckets.intern(s, 0, crate::threads::current()))
        else {
            self.lost.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let b = self.buckets.get(b);
        b.first.fetch_add(contentions_milli, Ordering::Relaxed);
        b.second.fetch_add(delay, Ordering::Relaxed);
    }

    fn snapshot(&self) -> EventData {
        let mut folded: HashMap<(Vec<u64>, u32), (u64, u64)> = HashMap::new();
        for b in self.buckets.iter().filter(|b| b.is_ready()) {
            let (stack, _, thread) = b.key();
            let e = folded
                .entry((self.stacks.frames(stack).to_vec(), thread))
                .or_default();
            e.0 += b.first.load(Ordering::Relaxed);
            e.1 += b.second.load(Ordering::Relaxed);
        }
        EventData {
            events: folded
                .into_iter()
                .map(|((stack, thread), (c, d))| EventStack {
                    stack,
                    thread,
                    contentions: (c + 500) / 1000,
                    delay_ns: d,
                })
                .collect(),
            rate: 0,
            lost: self.lost.load(Ordering::Relaxed),
        }
    }
}

static BLOCK: OnceLock<EventTable> = OnceLock::new();
static MUTEX: OnceLock<EventTable> = OnceLock::new();

/// One stack of a block or mutex profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventStack {
    /// Return addresses, leaf first.
    pub stack: Vec<u64>,
    /// The recording thread's serial in the thread registry.
    pub thread: u32,
    /// Estimated number of events.
    pub contentions: u64,
    /// Estimated delay, nanoseconds.
    pub delay_ns: u64,
}

/// What a block or mutex profile recorded.
#[derive(Debug, Clone, Default)]
pub struct EventData {
    /// Stacks with their counts.
    pub events: Vec<EventStack>,
    /// The block rate (ns) or mutex fraction in force.
    pub rate: u64,
    /// Events that could not be recorded (tables full).
    pub lost: u64,
}

/// Why a profiler could not start.
#[derive(Debug, PartialEq, Eq)]
pub struct NoMemory;

impl std::fmt::Display for NoMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cannot map memory for the block/mutex profiler's tables")
    }
}

impl std::error::Error for NoMemory {}

/// Start the block profiler: events of `rate` ns or more are all kept (1 = every event).
pub fn start_block(rate: u64) -> Result<(), NoMemory> {
    thread::with_harness_guard(|| {
        if BLOCK.get().is_none() {
            let _ = BLOCK.set(EventTable::new().ok_or(NoMemory)?);
        }
        BLOCK_RATE.store(rate.max(1), Ordering::Release);
        Ok(())
    })
}

/// Start the mutex profiler, keeping about 1 in `fraction` contended releases.
pub fn start_mutex(fraction: u64) -> Result<(), NoMemory> {
    thread::with_harness_guard(|| {
        if MUTEX.get().is_none() {
            let _ = MUTEX.set(EventTable::new().ok_or(NoMemory)?);
        }
        MUTEX_FRACTION.store(fraction.max(1), Ordering::Release);
        Ok(())
    })
}

/// Stop the block profiler and return what it recorded.
pub fn stop_block() -> EventData {
    let rate = BLOCK_RATE.swap(0, Ordering::AcqRel);
    thread::with_harness_guard(|| {
        let mut data = BLOCK.get().map(EventTable::snapshot).unwrap_or_default();
        data.rate = rate;
        data
    })
}

/// Stop the mutex profiler and return what it recorded.
pub fn stop_mutex() -> EventData {
    let fraction = MUTEX_FRACTION.swap(0, Ordering::AcqRel);
    thread::with_harness_guard(|| {
        let mut data = MUTEX.get().map(EventTable::snapshot).unwrap_or_default();
        data.rate = fraction;
        data
    })
}

/// The block rate in force, or 0 when the block profiler is off.
pub fn block_rate() -> u64 {
    BLOCK_RATE.load(Ordering::Relaxed)
}

/// The mutex fraction in force, or 0 when the mutex profiler is off.
pub fn mutex_fraction() -> u64 {
    MUTEX_FRACTION.load(Ordering::Relaxed)
}

/// What the block profiler has recorded so far (it keeps running).
pub fn snapshot_block() -> EventData {
    thread::with_harness_guard(|| {
        let mut data = BLOCK.get().map(EventTable::snapshot).unwrap_or_default();
        data.rate = block_rate();
        data
    })
}

/// What the mutex profiler has recorded so far (it keeps running).
pub fn snapshot_mutex() -> EventData {
    thread::with_harness_guard(|| {
        let mut data = MUTEX.get().map(EventTable::snapshot).unwrap_or_default();
        data.rate = mutex_fraction();
        data
    })
}

/// Whether either profiler is on (the interposers' fast check).
#[inline]
pub fn is_active() -> bool {
    BLOCK_RATE.load(Ordering::Relaxed) != 0 || MUTEX_FRACTION.load(Ordering::Relaxed) != 0
}

/// Monotonic nanoseconds (vDSO; async-signal-safe).
#[inline]
pub fn now_ns() -> u64 {
    crate::sys::clock_ns(libc::CLOCK_MONOTONIC).unwrap_or(0)
}

/// A wait in progress.
#[derive(Debug, Clone, Copy)]
pub struct Wait {
    addr: u64,
    start: u64,
    /// A lock-protocol wait, which may continue the thread's previous one.
    lock_protocol: bool,
}

/// (address, stack hash) of the calling thread's last lock-protocol wait not yet ended by a
/// wake of that address from this thread, for merging re-waits.
fn last_wait() -> &'static std::cell::Cell<(u64, u64)> {
    &crate::tls::block().last_wait
}

/// The calling thread is about to wake waiters of `addr` (a futex wake): if it last waited for
/// that lock, it has acquired it since and is now releasing it, so its next wait there is a new
/// `lock()` call.
#[inline]
pub fn releasing(addr: u64) {
    if BLOCK_RATE.load(Ordering::Relaxed) == 0 {
        return;
    }
    let l = last_wait();
    if l.get().0 == addr {
        l.set((0, 0));
    }
}

/// The calling thread is about to wait on `addr`; `lock_protocol` when it is a futex wait for
/// [`LOCK_CONTENDED`]. `None` when no profiler wants it.
#[inline]
pub fn wait_begin(addr: u64, lock_protocol: bool) -> Option<Wait> {
    if !is_active() || thread::in_harness() {
        return None;
    }
    let start = now_ns();
    if MUTEX_FRACTION.load(Ordering::Relaxed) != 0 {
        waiters::begin(addr, start);
    }
    Some(Wait {
        addr,
        start,
        lock_protocol,
    })
}

/// The wait `w` ended without blocking (e.g. a futex whose value had already changed): it is
/// not an event.
#[inline]
pub fn wait_cancel(w: Option<Wait>) {
    if w.is_some() && MUTEX_FRACTION.load(Ordering::Relaxed) != 0 {
        waiters::end();
    }
}

/// The wait `w` is over.
#[inline]
pub fn wait_end(w: Option<Wait>) {
    let Some(w) = w else { return };
    let end = now_ns();
    if MUTEX_FRACTION.load(Ordering::Relaxed) != 0 {
        waiters::end();
    }
    let rate = BLOCK_RATE.load(Ordering::Relaxed);
    if rate != 0 {
        thread::with_harness_guard(|| record_block(w, end, rate));
    }
}

#[inline(never)]
fn record_block(w: Wait, end: u64, rate: u64) {
    let Some(table) = BLOCK.get() else { return };
    let d = end.saturating_sub(w.start).max(1);
    let mut frames = [0u64; MAX_DEPTH];
    let stack = own_stack(&mut frames);
    let hash = hash_stack(stack);
    let rewait = w.lock_protocol && last_wait().get() == (w.addr, hash);
    let last = if w.lock_protocol {
        (w.addr, hash)
    } else {
        (0, 0)
    };
    last_wait().set(last);
    let (contentions_milli, delay) = if d >= rate {
        (1000, d)
    } else if crate::rng::next_f64() * (rate as f64) < d as f64 {
        ((rate as f64 / d as f64 * 1000.0) as u64, rate)
    } else {
        return;
    };
    table.record(stack, if rewait { 0 } else { contentions_milli }, delay);
}

/// The calling thread woke up to `n` waiters of `addr` (e.g. a futex wake, a contended unlock).
#[inline]
pub fn wake(addr: u64, n: usize) {
    let fraction = MUTEX_FRACTION.load(Ordering::Relaxed);
    if fraction == 0 || thread::in_harness() {
        return;
    }
    thread::with_harness_guard(|| record_wake(addr, n, fraction));
}

#[inline(never)]
fn record_wake(addr: u64, n: usize, fraction: u64) {
    let Some(table) = MUTEX.get() else { return };
    let (delay, charged) = waiters::charge(addr, n, now_ns());
    if charged == 0 {
        return;
    }
    if fraction > 1 && crate::rng::next_u64() % fraction != 0 {
        return;
    }
    let mut frames = [0u64; MAX_DEPTH];
    let stack = own_stack(&mut frames);
    table.record(stack, charged * 1000 * fraction, delay * fraction);
}

/// The calling thread's stack without the harness's own frames.
pub(crate) fn own_stack(frames: &mut [u64; MAX_DEPTH]) -> &[u64] {
    let depth = unwind::capture_current(0, frames);
    let skip = frames[..depth]
        .iter()
        .take_while(|&&f| crate::maps::is_harness_code(f))
        .count();
    &frames[skip..depth]
}

/// A thread is exiting: give back its waiter slot.
pub fn thread_exiting() {
    waiters::release();
}
