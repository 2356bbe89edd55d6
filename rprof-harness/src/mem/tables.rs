//! The memory profiler's insert-only tables: distinct stacks, and buckets of (stack, size) with
//! their counters, as Go keeps them.
//!
//! Both live in memory mapped once at start and never move. An entry is claimed with one CAS of
//! its state (empty → writing), filled, then published (→ ready). Nothing waits: a reader that
//! meets an entry still being written moves on, at worst creating a duplicate entry, which the
//! snapshot folds back together. So a thread stopped anywhere (a fork, a signal) blocks no one.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::unwind::MAX_DEPTH;

const EMPTY: u32 = 0;
const WRITING: u32 = 1;
const READY: u32 = 2;
const MAX_PROBES: usize = 64;

/// A stack of return addresses.
#[repr(C)]
pub(crate) struct StackEntry {
    state: AtomicU32,
    depth: u32,
    hash: u64,
    frames: [u64; MAX_DEPTH],
}

/// Two counters of one (stack, key, thread) bucket. The memory profiler keys by allocation size
/// and counts allocations and frees; the block and mutex profilers key by 0 and count
/// contentions (in thousandths) and delay. The thread is the recording thread's serial in the
/// thread registry, so that every sample keeps its thread (and the labels derived from it).
#[repr(C)]
pub(crate) struct Bucket {
    state: AtomicU32,
    stack: u32,
    thread: u32,
    size: u64,
    /// First counter (allocations; contentions × 1000).
    pub first: AtomicU64,
    /// Second counter (frees; delay in nanoseconds).
    pub second: AtomicU64,
    /// Third counter (the memory profiler's live count at the peak snapshot; unused by the
    /// event profilers).
    pub third: AtomicU64,
}

/// A table of `T` in mapped memory, indexed by hash with bounded linear probing.
pub(crate) struct Table<T> {
    entries: *mut T,
    mask: usize,
}

// SAFETY: entries are only written by the thread whose CAS claimed them, and read after the
// release store that publishes them.
unsafe impl<T> Sync for Table<T> {}
// SAFETY: as above.
unsafe impl<T> Send for Table<T> {}

impl<T> Table<T> {
    /// Map a table of `capacity` (a power of two) zeroed entries.
    pub(crate) fn new(capacity: usize) -> Option<Self> {
        let entries = crate::sys::map_zeroed(capacity * std::mem::size_of::<T>()) as *mut T;
        (!entries.is_null()).then_some(Table {
            entries,
            mask: capacity - 1,
        })
    }

    fn entry(&self, i: usize) -> &T {
        // SAFETY: `i & mask` is inside the mapping, which lives as long as the table; an
        // all-zero T is valid for the entry types here (atomics and integers).
        unsafe { &*self.entries.add(i & self.mask) }
    }

    /// Every entry, for the snapshot.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        (0..=self.mask).map(move |i| self.entry(i))
    }
}

/// 64-bit hash of a stack.
pub(crate) fn hash_stack(frames: &[u64]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ frames.len() as u64;
    for &f in frames {
        h = (h ^ f).wrapping_mul(0x0100_0000_01b3).rotate_left(29);
    }
    h ^ (h >> 31)
}

impl Table<StackEntry> {
    /// The id of `frames`, adding it if new. `None` when the table is full around its slot.
    pub(crate) fn intern(&self, frames: &[u64]) -> Option<u32> {
        let hash = hash_stack(frames);
        let depth = frames.len().min(MAX_DEPTH);
        for probe in 0..MAX_PROBES {
            let i = (hash as usize).wrapping_add(probe) & self.mask;
            let e = self.entry(i);
            match e.state.load(Ordering::Acquire) {
                READY if e.hash == hash && e.depth as usize == depth => return Some(i as u32),
                EMPTY
                    if e.state
                        .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok() =>
                {
                    let p = e as *const StackEntry as *mut StackEntry;
                    // SAFETY: our CAS made us the entry's only writer until we publish.
                    unsafe {
                        (*p).hash = hash;
                        (*p).depth = depth as u32;
                        (&mut (*p).frames)[..depth].copy_from_slice(&frames[..depth]);
                    }
                    e.state.store(READY, Ordering::Release);
                    return Some(i as u32);
                }
                _ => {}
            }
        }
        None
    }

    /// The frames of stack `id` (ready entries only).
    pub(crate) fn frames(&self, id: u32) -> &[u64] {
        let e = self.entry(id as usize);
        if e.state.load(Ordering::Acquire) != READY {
            return &[];
        }
        &e.frames[..e.depth as usize]
    }
}

impl Table<Bucket> {
    /// The bucket of (`stack`, `size`, `thread`), adding it if new.
    pub(crate) fn intern(&self, stack: u32, size: u64, thread: u32) -> Option<u32> {
        self.intern_new(stack, size, thread).map(|(id, _)| id)
    }

    /// [`Table::intern`], saying whether the bucket was created by this call.
    pub(crate) fn intern_new(&self, stack: u32, size: u64, thread: u32) -> Option<(u32, bool)> {
        let hash = (u64::from(stack) << 40 ^ size ^ u64::from(thread) << 20)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let hash = hash ^ (hash >> 29);
        for probe in 0..MAX_PROBES {
            let i = (hash as usize).wrapping_add(probe) & self.mask;
            let e = self.entry(i);
            match e.state.load(Ordering::Acquire) {
                READY if e.stack == stack && e.size == size && e.thread == thread => {
                    return Some((i as u32, false))
                }
                EMPTY
                    if e.state
                        .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok() =>
                {
                    let p = e as *const Bucket as *mut Bucket;
                    // SAFETY: our CAS made us the entry's only writer until we publish.
                    unsafe {
                        (*p).stack = stack;
                        (*p).size = size;
                        (*p).thread = thread;
                    }
                    e.state.store(READY, Ordering::Release);
                    return Some((i as u32, true));
                }
                _ => {}
            }
        }
        None
    }

    /// Bucket `id`.
    pub(crate) fn get(&self, id: u32) -> &Bucket {
        self.entry(id as usize)
    }
}

impl Bucket {
    /// Whether the bucket is published.
    pub(crate) fn is_ready(&self) -> bool {
        self.state.load(Ordering::Acquire) == READY
    }

    /// Its stack id, allocation size and thread serial.
    pub(crate) fn key(&self) -> (u32, u64, u32) {
        (self.stack, self.size, self.thread)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_and_buckets_intern_once() {
        let stacks = Table::<StackEntry>::new(1 << 8).unwrap();
        let a = stacks.intern(&[1, 2, 3]).unwrap();
        let b = stacks.intern(&[1, 2, 4]).unwrap();
        assert_ne!(a, b);
        assert_eq!(stacks.intern(&[1, 2, 3]), Some(a));
        assert_eq!(stacks.frames(a), &[1, 2, 3]);
        let buckets = Table::<Bucket>::new(1 << 8).unwrap();
        let x = buckets.intern(a, 16, 3).unwrap();
        assert_eq!(buckets.intern(a, 16, 3), Some(x));
        assert_ne!(buckets.intern(a, 32, 3), Some(x));
        assert_ne!(buckets.intern(a, 16, 4), Some(x));
        assert_eq!(buckets.get(x).key(), (a, 16, 3));
    }

    #[test]
    fn a_full_neighbourhood_says_so() {
        let stacks = Table::<StackEntry>::new(4).unwrap();
        let ids: Vec<_> = (0..10u64).map(|i| stacks.intern(&[i])).collect();
        assert_eq!(ids.iter().filter(|i| i.is_some()).count(), 4);
    }
}
