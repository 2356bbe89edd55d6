//! Which live allocations were sampled: address → bucket.
//!
//! At rate 1 ([`DIRECT`]) nearly every block is sampled, and addresses go to the direct map of
//! [`super::direct`], laid out as the heap is; only addresses it cannot hold come here. At
//! sampling rates `free` must answer "was this pointer sampled?" for every pointer, so at sampling rates the
//! common answer (no) comes from a lock-free counting filter: one counter per hash slot, raised on insert and
//! lowered on removal. Only a pointer whose slot counter is non-zero takes a shard's lock (256
//! shards by address hash, each an open-addressing table with backward-shift deletion, in mapped
//! memory that grows by remapping).
//!
//! Hazards: the shard locks are spin locks held for a few dozen instructions by code that never
//! allocates or waits; `fork` is made safe by [`lock_all`] / [`unlock_all`], registered with
//! `pthread_atfork`, so a child never inherits a held lock. Insertion happens after the real
//! allocation and removal before the real free, so an address is never reused while recorded.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use super::direct;
use crate::sys;

const SHARDS: usize = 256;
/// Every allocation is sampled (rate 1): blocks go to the direct map, and no filter, since
/// nearly every free finds its block and a filter would only add a cache miss to each.
pub(crate) const DIRECT: usize = 0;
/// Filter slots when few are (the default rate): 64 KiB, small enough to stay in cache, since
/// every `free` reads it.
pub(crate) const FILTER_SLOTS_SPARSE: usize = 1 << 14;
const FIRST_CAPACITY: usize = 1 << 10;

#[derive(Clone, Copy)]
#[repr(C)]
struct Slot {
    addr: u64,
    bucket: u32,
}

struct Shard {
    lock: AtomicBool,
    inner: UnsafeCell<ShardTable>,
}

struct ShardTable {
    slots: *mut Slot,
    capacity: usize,
    len: usize,
}

// SAFETY: `inner` is only touched with `lock` held.
unsafe impl Sync for Shard {}

static SHARD_TABLES: [Shard; SHARDS] = [const {
    Shard {
        lock: AtomicBool::new(false),
        inner: UnsafeCell::new(ShardTable {
            slots: std::ptr::null_mut(),
            capacity: 0,
            len: 0,
        }),
    }
}; SHARDS];

static FILTER: AtomicPtr<AtomicU32> = AtomicPtr::new(std::ptr::null_mut());
/// Slot count of the filter minus one (set before `FILTER` is published).
static FILTER_MASK: AtomicUsize = AtomicUsize::new(0);
/// Whether [`init`] ran (with or without a filter).
static READY: AtomicBool = AtomicBool::new(false);
/// Whether [`init`] chose [`DIRECT`].
static USE_DIRECT: AtomicBool = AtomicBool::new(false);

fn hash(addr: u64) -> u64 {
    let h = (addr >> 4).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 32)
}

/// Map the filter with `slots` (a power of two) counters, or choose the direct map for
/// [`DIRECT`]. Call once before the first insert; the first call decides. False when the kernel
/// refuses memory.
pub(crate) fn init(slots: usize) -> bool {
    if READY.load(Ordering::Acquire) {
        return true;
    }
    if slots == DIRECT {
        USE_DIRECT.store(true, Ordering::Release);
    } else {
        let p = sys::map_zeroed(slots * 4) as *mut AtomicU32;
        if p.is_null() {
            return false;
        }
        FILTER_MASK.store(slots - 1, Ordering::Release);
        if FILTER
            .compare_exchange(std::ptr::null_mut(), p, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // SAFETY: we just mapped it and lost the race; nobody else saw it.
            unsafe { sys::unmap(p as *mut u8, slots * 4) };
        }
    }
    READY.store(true, Ordering::Release);
    true
}

fn filter_slot(h: u64) -> Option<&'static AtomicU32> {
    let f = FILTER.load(Ordering::Acquire);
    if f.is_null() {
        return None;
    }
    let mask = FILTER_MASK.load(Ordering::Relaxed);
    // SAFETY: the filter is mapped for mask + 1 entries (stored before it was published) and
    // never unmapped.
    Some(unsafe { &*f.add((h >> 20) as usize & mask) })
}

struct Guard(&'static Shard);

impl Guard {
    fn lock(shard: &'static Shard) -> Guard {
        let mut spins = 0u32;
        while shard
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
            }
        }
        Guard(shard)
    }

    fn table(&mut self) -> &mut ShardTable {
        // SAFETY: we hold the shard's lock.
        unsafe { &mut *self.0.inner.get() }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.lock.store(false, Ordering::Release);
    }
}

fn shard_of(h: u64) -> &'static Shard {
    &SHARD_TABLES[(h >> 56) as usize % SHARDS]
}

impl ShardTable {
    fn slot(&mut self, i: usize) -> &mut Slot {
        // SAFETY: `i` is masked to the capacity of the mapping `slots` points at.
        unsafe { &mut *self.slots.add(i & (self.capacity - 1)) }
    }

    fn insert_unchecked(&mut self, h: u64, addr: u64, bucket: u32) {
        let mut i = h as usize;
        loop {
            let s = self.slot(i);
            if s.addr == 0 || s.addr == addr {
                *s = Slot { addr, bucket };
                return;
            }
            i = i.wrapping_add(1);
        }
    }

    /// Make room for one more entry (load at most 1/2). False when memory is refused.
    fn reserve(&mut self) -> bool {
        if (self.len + 1) * 2 <= self.capacity {
            return true;
        }
        let capacity = (self.capacity * 2).max(FIRST_CAPACITY);
        let bytes = capacity * std::mem::size_of::<Slot>();
        let slots = sys::map_zeroed(bytes) as *mut Slot;
        if slots.is_null() {
            return false;
        }
        let old = std::mem::replace(
            self,
            ShardTable {
                slots,
                capacity,
                len: self.len,
            },
        );
        for i in 0..old.capacity {
            // SAFETY: `i` < old capacity, inside the old mapping.
            let s = unsafe { *old.slots.add(i) };
            if s.addr != 0 {
                self.insert_unchecked(hash(s.addr), s.addr, s.bucket);
            }
        }
        if !old.slots.is_null() {
            // SAFETY: the old mapping was made by map_zeroed with this size and is no longer used.
            unsafe {
                sys::unmap(
                    old.slots as *mut u8,
                    old.capacity * std::mem::size_of::<Slot>(),
                )
            };
        }
        true
    }

    fn remove(&mut self, h: u64, addr: u64) -> Option<u32> {
        if self.capacity == 0 {
            return None;
        }
        let mask = self.capacity - 1;
        let mut i = h as usize & mask;
        loop {
            let s = *self.slot(i);
            if s.addr == 0 {
                return None;
            }
            if s.addr == addr {
                break;
            }
            i = (i + 1) & mask;
        }
        let bucket = self.slot(i).bucket;
        // Backward-shift deletion: pull later members of the cluster into the hole.
        let mut hole = i;
        let mut j = (i + 1) & mask;
        loop {
            let s = *self.slot(j);
            if s.addr == 0 {
                break;
            }
            let home = hash(s.addr) as usize & mask;
            // Move `s` if its home is not in (hole, j] (cyclically).
            let between = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !between {
                *self.slot(hole) = s;
                hole = j;
            }
            j = (j + 1) & mask;
        }
        *self.slot(hole) = Slot { addr: 0, bucket: 0 };
        self.len -= 1;
        Some(bucket)
    }
}

/// Remember that `addr` (a live sampled allocation) belongs to `bucket`. False when no memory
/// could be had for the table (the sample is then not remembered).
pub(crate) fn insert(addr: u64, bucket: u32) -> bool {
    if !READY.load(Ordering::Acquire) {
        return false;
    }
    if USE_DIRECT.load(Ordering::Relaxed) && direct::covers(addr) {
        return direct::insert(addr, bucket);
    }
    let h = hash(addr);
    let mut g = Guard::lock(shard_of(h));
    let t = g.table();
    if !t.reserve() {
        return false;
    }
    t.insert_unchecked(h, addr, bucket);
    t.len += 1;
    if let Some(counter) = filter_slot(h) {
        counter.fetch_add(1, Ordering::Release);
    }
    true
}

/// Forget `addr` if it was sampled, returning its bucket. Lock-free when the filter says it was
/// not.
pub(crate) fn remove(addr: u64) -> Option<u32> {
    if !READY.load(Ordering::Acquire) {
        return None;
    }
    if USE_DIRECT.load(Ordering::Relaxed) && direct::covers(addr) {
        return direct::remove(addr);
    }
    let h = hash(addr);
    let counter = filter_slot(h);
    if counter.is_some_and(|c| c.load(Ordering::Acquire) == 0) {
        return None;
    }
    let bucket = Guard::lock(shard_of(h)).table().remove(h, addr)?;
    if let Some(c) = counter {
        c.fetch_sub(1, Ordering::Release);
    }
    Some(bucket)
}

/// Take every shard lock (before `fork`).
pub(crate) extern "C" fn lock_all() {
    for s in &SHARD_TABLES {
        std::mem::forget(Guard::lock(s));
    }
}

/// Release every shard lock (after `fork`, in parent and child).
pub(crate) extern "C" fn unlock_all() {
    for s in &SHARD_TABLES {
        s.lock.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_many_with_collisions() {
        assert!(init(FILTER_SLOTS_SPARSE));
        // Addresses chosen to share shards and clusters.
        let addrs: Vec<u64> = (1..20_000u64).map(|i| 0x7f00_0000_0000 + i * 16).collect();
        for (n, &a) in addrs.iter().enumerate() {
            assert!(insert(a, n as u32));
        }
        for (n, &a) in addrs.iter().enumerate().step_by(2) {
            assert_eq!(remove(a), Some(n as u32));
        }
        for (n, &a) in addrs.iter().enumerate() {
            let expect = (n % 2 == 1).then_some(n as u32);
            assert_eq!(remove(a), expect, "addr {a:#x}");
        }
        assert_eq!(remove(0x1234_5670), None);
    }
}
