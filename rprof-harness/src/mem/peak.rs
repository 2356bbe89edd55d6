//! The peak-heap snapshot: how many of each bucket's sampled allocations were live when the
//! process's sampled live bytes were highest.
//!
//! Every sampled allocation adds its size to the live total, every sampled free subtracts it.
//! When a sampled free is about to take the total down from the highest value seen, and that
//! value is at least [`PEAK_STEP`] above the last snapshot's, every bucket's live count is
//! copied into its peak counter: the snapshot is the state at the top, just before the free.
//! So the recorded peak is within a factor `1 + PEAK_STEP` of the true one (exact when the top
//! is followed by a free before the heap grows again by that much, as when a phase builds up a
//! structure and then drops it), and snapshots happen at most once per 1% of growth, never on
//! the path of an allocation. A top reached at the end, with no free after it, is taken from
//! the live counts when the profile is written.
//!
//! Hazards: [`freeing`] runs inside `free`. It allocates nothing (the list of buckets is mapped
//! memory) and never waits: while one thread copies the counters, another that would snapshot
//! skips it.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::sync::OnceLock;

use super::tables::{Bucket, Table};

/// Growth of the live total between two snapshots: the peak's precision.
pub const PEAK_STEP: f64 = 0.01;

/// Sampled bytes live now.
static LIVE: AtomicI64 = AtomicI64::new(0);
/// The highest value of [`LIVE`] seen.
static HIGH: AtomicI64 = AtomicI64::new(0);
/// [`LIVE`] at the last snapshot (0: none yet).
static SNAPPED: AtomicI64 = AtomicI64::new(0);
/// When the last snapshot was taken (Unix nanoseconds).
static SNAPPED_AT: AtomicI64 = AtomicI64::new(0);
/// [`HIGH`] last passed this mark at [`HIGH_AT`]; the mark then moves up by [`PEAK_STEP`].
static HIGH_MARK: AtomicI64 = AtomicI64::new(0);
static HIGH_AT: AtomicI64 = AtomicI64::new(0);
/// Held while a thread copies the counters.
static SNAPPING: AtomicBool = AtomicBool::new(false);

/// The ids of every bucket created, in mapped memory, so a snapshot visits only those.
struct Used {
    ids: *mut AtomicU32,
    capacity: usize,
    len: AtomicUsize,
}

// SAFETY: the ids are atomics in memory that lives for the whole process.
unsafe impl Sync for Used {}
// SAFETY: as above.
unsafe impl Send for Used {}

static USED: OnceLock<Used> = OnceLock::new();

/// Map the list of buckets (at most `capacity`). False when no memory could be had.
pub(crate) fn init(capacity: usize) -> bool {
    if USED.get().is_some() {
        return true;
    }
    let ids = crate::sys::map_zeroed(capacity * std::mem::size_of::<AtomicU32>());
    if ids.is_null() {
        return false;
    }
    let _ = USED.set(Used {
        ids: ids as *mut AtomicU32,
        capacity,
        len: AtomicUsize::new(0),
    });
    true
}

/// Note a bucket just created.
pub(crate) fn bucket_created(id: u32) {
    let Some(used) = USED.get() else { return };
    let i = used.len.fetch_add(1, Ordering::AcqRel);
    if i < used.capacity {
        // SAFETY: `i` is inside the mapping, which is never unmapped.
        unsafe { (*used.ids.add(i)).store(id + 1, Ordering::Release) };
    }
}

/// Every bucket created so far, in creation order (a peak snapshot and [`super::snapshot`]
/// visit only these, not the whole table).
pub(crate) fn used_buckets() -> impl Iterator<Item = u32> {
    let used = USED.get();
    let n = used.map_or(0, |u| u.len.load(Ordering::Acquire).min(u.capacity));
    (0..n).filter_map(move |i| {
        let used = used?;
        // SAFETY: `i` < capacity, inside the mapping.
        let id = unsafe { (*used.ids.add(i)).load(Ordering::Acquire) };
        id.checked_sub(1)
    })
}

/// A sampled allocation of `size` bytes was recorded.
#[inline]
pub(crate) fn allocated(size: u64) {
    let live = LIVE.fetch_add(size as i64, Ordering::Relaxed) + size as i64;
    if live > HIGH.load(Ordering::Relaxed) {
        HIGH.fetch_max(live, Ordering::Relaxed);
        if live > HIGH_MARK.load(Ordering::Relaxed) {
            HIGH_MARK.store((live as f64 * (1.0 + PEAK_STEP)) as i64, Ordering::Relaxed);
            HIGH_AT.store(now_ns(), Ordering::Relaxed);
        }
    }
}

/// A sampled allocation of `size` bytes is about to be freed: if the live total is at its top,
/// and the top has grown enough since the last snapshot, take one first.
#[inline]
pub(crate) fn freeing(size: u64, buckets: &Table<Bucket>) {
    let live = LIVE.load(Ordering::Relaxed);
    if live >= HIGH.load(Ordering::Relaxed)
        && live as f64 >= SNAPPED.load(Ordering::Relaxed) as f64 * (1.0 + PEAK_STEP)
        && live > 0
        && !SNAPPING.swap(true, Ordering::Acquire)
    {
        for id in used_buckets() {
            let b = buckets.get(id);
            let allocs = b.first.load(Ordering::Relaxed);
            let frees = b.second.load(Ordering::Relaxed).min(allocs);
            b.third.store(allocs - frees, Ordering::Relaxed);
        }
        SNAPPED.store(live, Ordering::Relaxed);
        SNAPPED_AT.store(now_ns(), Ordering::Relaxed);
        SNAPPING.store(false, Ordering::Release);
    }
    LIVE.fetch_sub(size as i64, Ordering::Relaxed);
}

/// The peak as the profile reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Peak {
    /// Sampled live bytes at the peak (not unbiased).
    pub bytes: u64,
    /// When (Unix nanoseconds; 0 when nothing was sampled).
    pub at_ns: i64,
    /// The peak is the state now: take each bucket's live count, not its snapshot.
    pub is_now: bool,
}

/// Where the peak stands.
pub(crate) fn peak() -> Peak {
    let (live, high, snapped) = (
        LIVE.load(Ordering::Relaxed),
        HIGH.load(Ordering::Relaxed),
        SNAPPED.load(Ordering::Relaxed),
    );
    if live >= high && high > snapped || snapped == 0 {
        Peak {
            bytes: live.max(0) as u64,
            at_ns: HIGH_AT.load(Ordering::Relaxed),
            is_now: true,
        }
    } else {
        Peak {
            bytes: snapped as u64,
            at_ns: SNAPPED_AT.load(Ordering::Relaxed),
            is_now: false,
        }
    }
}

fn now_ns() -> i64 {
    crate::sys::clock_ns(libc::CLOCK_REALTIME).unwrap_or(0) as i64
}
