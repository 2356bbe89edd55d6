//! Live sampled allocations at rate 1: address → bucket through a direct map laid out as the
//! heap is.
//!
//! At rate 1 every block is remembered, and a hashed table puts each one in a random cache line
//! and page: every `malloc` and every `free` paid a cache and TLB miss there, most of the cost of
//! recording every allocation. This map keeps one 32-bit entry (bucket + 1; 0 = none) per
//! 16-byte granule of address space, so blocks allocated together are remembered in the same
//! cache lines, and a free touches an entry four times denser than the heap it describes.
//! Two live blocks that are 16-byte aligned (as all of glibc's are) never start in one granule;
//! [`covers`] sends any other address to the hashed table.
//!
//! Three levels: address bits 35..47 index a static root of directories, bits 22..35 a
//! directory of leaves, bits 4..22 a leaf of 2^18 entries (1 MiB, describing 4 MiB of heap).
//! Directories and leaves are mapped on first use and never unmapped; only the pages written
//! take memory (one 4 KiB page per 16 KiB of heap that held a sampled block).
//!
//! Hazards: [`insert`] and [`remove`] run inside `malloc` and `free`. They allocate nothing but
//! anonymous mappings, take no lock (a new directory or leaf is published with one CAS; a
//! thread that loses the race unmaps its copy) and never wait. An entry is written only by the
//! thread that owns the block at that address: after the real allocation returned it, before
//! the real free gives it back.

use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

/// Address bits the map covers (x86-64 and aarch64 user space with 4-level page tables).
const ADDRESS_BITS: u32 = 47;
const GRANULE_BITS: u32 = 4;
const LEAF_BITS: u32 = 18;
const DIRECTORY_BITS: u32 = 13;
const ROOT_BITS: u32 = ADDRESS_BITS - GRANULE_BITS - LEAF_BITS - DIRECTORY_BITS;

const LEAF_ENTRIES: usize = 1 << LEAF_BITS;
const DIRECTORY_ENTRIES: usize = 1 << DIRECTORY_BITS;
const ROOT_ENTRIES: usize = 1 << ROOT_BITS;

type Leaf = AtomicU32;
type Directory = AtomicPtr<Leaf>;

static ROOT: [AtomicPtr<Directory>; ROOT_ENTRIES] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; ROOT_ENTRIES];

/// Whether `addr` can be kept in this map: 16-byte aligned and inside the covered space.
#[inline]
pub(crate) fn covers(addr: u64) -> bool {
    addr & ((1 << GRANULE_BITS) - 1) == 0 && addr >> ADDRESS_BITS == 0
}

fn root_index(addr: u64) -> usize {
    (addr >> (GRANULE_BITS + LEAF_BITS + DIRECTORY_BITS)) as usize & (ROOT_ENTRIES - 1)
}

fn directory_index(addr: u64) -> usize {
    (addr >> (GRANULE_BITS + LEAF_BITS)) as usize & (DIRECTORY_ENTRIES - 1)
}

fn leaf_index(addr: u64) -> usize {
    (addr >> GRANULE_BITS) as usize & (LEAF_ENTRIES - 1)
}

/// The table `slot` points at, mapping (`entries` zeroed `T`s) and publishing one if `create`
/// and there is none. Null when there is none and none was made.
fn level<T>(slot: &AtomicPtr<T>, entries: usize, create: bool) -> *mut T {
    let p = slot.load(Ordering::Acquire);
    if !p.is_null() || !create {
        return p;
    }
    let bytes = entries * std::mem::size_of::<T>();
    let fresh = crate::sys::map_zeroed(bytes) as *mut T;
    if fresh.is_null() {
        return fresh;
    }
    match slot.compare_exchange(
        std::ptr::null_mut(),
        fresh,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => fresh,
        Err(winner) => {
            // SAFETY: `fresh` is our own mapping of `bytes`, never published.
            unsafe { crate::sys::unmap(fresh as *mut u8, bytes) };
            winner
        }
    }
}

/// The entry of `addr` (which [`covers`] accepted), mapping its levels if `create`.
fn entry(addr: u64, create: bool) -> Option<&'static AtomicU32> {
    let directory = level(&ROOT[root_index(addr)], DIRECTORY_ENTRIES, create);
    if directory.is_null() {
        return None;
    }
    // SAFETY: a published directory is a mapping of DIRECTORY_ENTRIES atomics (all-zero is
    // valid) that is never unmapped; the index is masked to that count.
    let directory = unsafe { &*directory.add(directory_index(addr)) };
    let leaf = level(directory, LEAF_ENTRIES, create);
    if leaf.is_null() {
        return None;
    }
    // SAFETY: as above, for a leaf of LEAF_ENTRIES entries.
    Some(unsafe { &*leaf.add(leaf_index(addr)) })
}

/// Remember that the live block at `addr` (which [`covers`] accepted) belongs to `bucket`.
/// False when the kernel refused memory for the map.
pub(crate) fn insert(addr: u64, bucket: u32) -> bool {
    match entry(addr, true) {
        Some(e) => {
            e.store(bucket + 1, Ordering::Release);
            true
        }
        None => false,
    }
}

/// Forget the block at `addr` (which [`covers`] accepted), returning its bucket if it was
/// remembered.
pub(crate) fn remove(addr: u64) -> Option<u32> {
    let e = entry(addr, false)?;
    // Only the thread freeing the block touches its entry now: no read-modify-write needed.
    let value = e.load(Ordering::Acquire);
    if value == 0 {
        return None;
    }
    e.store(0, Ordering::Relaxed);
    Some(value - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_and_far_addresses_keep_their_buckets() {
        let base = 0x5555_0000_0000u64;
        // Adjacent granules, a leaf boundary, a directory boundary, the top of the space.
        let addrs = [
            base,
            base + 16,
            base + (4 << 20) - 16,
            base + (4 << 20),
            base + (1 << 35),
            (1 << ADDRESS_BITS) - 16,
            16,
        ];
        for (n, &a) in addrs.iter().enumerate() {
            assert!(covers(a));
            assert!(insert(a, n as u32 * 7));
        }
        for (n, &a) in addrs.iter().enumerate() {
            assert_eq!(remove(a), Some(n as u32 * 7), "{a:#x}");
            assert_eq!(remove(a), None, "{a:#x} twice");
        }
        assert_eq!(remove(base + 32), None);
        assert_eq!(remove(0x7000_0000_0000), None);
    }

    #[test]
    fn threads_racing_for_new_leaves_lose_nothing() {
        // Eight threads interleave granules of 64 leaves no other test uses, so every leaf and
        // the directory are created by a race.
        let base = 0x3a00_0000_0000u64;
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                std::thread::spawn(move || {
                    for round in 0..3 {
                        for i in 0..4096u64 {
                            let a = base + ((i % 64) << 22) + (i * 8 + t) * 16;
                            assert!(insert(a, (i * 8 + t) as u32));
                        }
                        for i in 0..4096u64 {
                            let a = base + ((i % 64) << 22) + (i * 8 + t) * 16;
                            assert_eq!(remove(a), Some((i * 8 + t) as u32), "round {round}");
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }

    #[test]
    fn unaligned_and_high_addresses_are_not_covered() {
        assert!(!covers(0x5555_0000_0008));
        assert!(!covers(1 << ADDRESS_BITS));
        assert!(covers(0x5555_0000_0010));
    }
}
