//! The sample buffer between signal handlers (many producers) and the drain thread (one consumer).
//!
//! A bounded lock-free queue of fixed-size slots (Vyukov's array queue): producers claim a slot
//! with one CAS and publish it with a release store of its sequence number; nothing allocates and
//! nothing blocks. A full queue makes `push` return `false` and the caller counts a lost sample.
//!
//! Hazards: `push` runs in a signal handler that may have interrupted anything, including another
//! `push` on the same thread; the CAS protocol makes that safe because a slot is owned by the one
//! producer whose CAS won until it publishes.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::unwind::MAX_DEPTH;

/// One captured stack with its weight.
#[derive(Clone, Copy)]
pub struct StackSample {
    /// How many units this sample stands for (CPU: periods; block: nanoseconds ...).
    pub weight: u64,
    /// A second value carried along (e.g. a count).
    pub extra: u64,
    /// The sampled thread's serial in the thread registry.
    pub thread: u32,
    /// How many entries of `frames` are used.
    pub depth: usize,
    /// Return addresses, leaf first.
    pub frames: [u64; MAX_DEPTH],
}

impl StackSample {
    /// An empty sample.
    pub const EMPTY: StackSample = StackSample {
        weight: 0,
        extra: 0,
        thread: 0,
        depth: 0,
        frames: [0; MAX_DEPTH],
    };

    /// The used frames, leaf first.
    pub fn stack(&self) -> &[u64] {
        &self.frames[..self.depth.min(MAX_DEPTH)]
    }
}

struct Slot {
    seq: AtomicUsize,
    sample: UnsafeCell<StackSample>,
}

/// A bounded multi-producer single-consumer queue of [`StackSample`]s.
pub struct SampleQueue {
    slots: Box<[Slot]>,
    mask: usize,
    enqueue: AtomicUsize,
    dequeue: AtomicUsize,
}

// SAFETY: a slot's sample is written only by the producer that won its CAS and read only by the
// consumer after the producer's release store of `seq`; the sequence protocol orders them.
unsafe impl Sync for SampleQueue {}
// SAFETY: as above; the queue owns its slots.
unsafe impl Send for SampleQueue {}

impl SampleQueue {
    /// A queue of `capacity` slots (rounded up to a power of two). Allocates; call it outside
    /// any signal handler.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.next_power_of_two().max(2);
        let slots = (0..capacity)
            .map(|i| Slot {
                seq: AtomicUsize::new(i),
                sample: UnsafeCell::new(StackSample::EMPTY),
            })
            .collect();
        SampleQueue {
            slots,
            mask: capacity - 1,
            enqueue: AtomicUsize::new(0),
            dequeue: AtomicUsize::new(0),
        }
    }

    /// Try to enqueue the sample `fill` writes. Returns `false` when the queue is full.
    /// Async-signal-safe: no allocation, no lock.
    pub fn push(&self, fill: impl FnOnce(&mut StackSample)) -> bool {
        let mut pos = self.enqueue.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[pos & self.mask];
            let seq = slot.seq.load(Ordering::Acquire);
            let diff = seq as isize - pos as isize;
            if diff == 0 {
                match self.enqueue.compare_exchange_weak(
                    pos,
                    pos + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: winning the CAS for `pos` makes this producer the slot's only
                        // writer until it publishes `pos + 1` below; the consumer does not read
                        // it before then.
                        fill(unsafe { &mut *slot.sample.get() });
                        slot.seq.store(pos + 1, Ordering::Release);
                        return true;
                    }
                    Err(actual) => pos = actual,
                }
            } else if diff < 0 {
                return false;
            } else {
                pos = self.enqueue.load(Ordering::Relaxed);
            }
        }
    }

    /// Dequeue one sample into `f`. Only one thread may pop at a time.
    pub fn pop(&self, f: impl FnOnce(&StackSample)) -> bool {
        let pos = self.dequeue.load(Ordering::Relaxed);
        let slot = &self.slots[pos & self.mask];
        let seq = slot.seq.load(Ordering::Acquire);
        if seq != pos + 1 {
            return false;
        }
        // SAFETY: `seq == pos + 1` means the producer published this slot (acquire above) and no
        // producer can reuse it before we store `pos + capacity` below.
        f(unsafe { &*slot.sample.get() });
        self.dequeue.store(pos + 1, Ordering::Relaxed);
        slot.seq.store(pos + self.mask + 1, Ordering::Release);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn full_queue_refuses_and_order_is_kept() {
        let q = SampleQueue::new(4);
        for i in 0..4 {
            assert!(q.push(|s| s.weight = i));
        }
        assert!(!q.push(|s| s.weight = 99));
        for i in 0..4 {
            assert!(q.pop(|s| assert_eq!(s.weight, i)));
        }
        assert!(!q.pop(|_| unreachable!()));
    }

    #[test]
    fn concurrent_producers_lose_nothing_that_was_accepted() {
        let q = Arc::new(SampleQueue::new(64));
        let producers: Vec<_> = (0..4)
            .map(|t| {
                let q = q.clone();
                std::thread::spawn(move || {
                    let mut accepted = 0u64;
                    for i in 0..20_000u64 {
                        if q.push(|s| {
                            s.weight = t * 1_000_000 + i;
                            s.depth = 1;
                            s.frames[0] = s.weight;
                        }) {
                            accepted += 1;
                        }
                    }
                    accepted
                })
            })
            .collect();
        let mut popped = 0u64;
        let mut done = false;
        while !done {
            done = producers.iter().all(|p| p.is_finished());
            while q.pop(|s| assert_eq!(s.frames[0], s.weight)) {
                popped += 1;
            }
        }
        let accepted: u64 = producers.into_iter().map(|p| p.join().unwrap()).sum();
        assert_eq!(popped, accepted);
    }
}
