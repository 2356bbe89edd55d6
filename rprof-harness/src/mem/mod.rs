//! The memory profiler: which stacks allocate, how much, and what is still live.
//!
//! Each thread counts down the bytes to its next sample, drawn from an exponential distribution
//! with mean = rate (rate 1: every allocation), so an unsampled allocation costs a thread-local
//! subtraction. A sampled allocation records its stack into a (stack, size) bucket, as Go's
//! runtime does, and is remembered by address ([`live`]) so its free is counted too. Unbiasing
//! happens when the profile is written ([`crate::raw::mem_profile`]).
//!
//! Hazards: [`on_alloc`] and [`on_free`] run inside `malloc`/`free`. They allocate nothing (the
//! tables are mapped memory), never wait on a lock another thread may hold for long (see
//! [`live`] and [`tables`]), never panic, and do nothing on harness threads or while the calling
//! thread is inside harness code (which is how the harness's own allocations stay out).

pub(crate) mod direct;
pub(crate) mod live;
pub mod peak;
pub(crate) mod tables;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::thread;
use crate::unwind::{self, MAX_DEPTH};
use tables::{Bucket, StackEntry, Table};

/// `go test`'s default: one sample per 512 KiB allocated, on average.
pub const DEFAULT_RATE: u64 = 512 * 1024;

const STACKS: usize = 1 << 16;
const BUCKETS: usize = 1 << 20;

static RATE: AtomicU64 = AtomicU64::new(0);
static LOST: AtomicU64 = AtomicU64::new(0);
/// The rate of the last session, for snapshots taken after `stop`.
static LAST_RATE: AtomicU64 = AtomicU64::new(0);

struct Tables {
    stacks: Table<StackEntry>,
    buckets: Table<Bucket>,
}

static TABLES: OnceLock<Tables> = OnceLock::new();

/// Why the memory profiler could not start.
#[derive(Debug, PartialEq, Eq)]
pub enum MemError {
    /// The kernel refused memory for the sample tables.
    NoMemory,
}

impl std::fmt::Display for MemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cannot map memory for the memory profiler's tables")
    }
}

impl std::error::Error for MemError {}

/// Start sampling allocations at `rate` bytes per sample (1 = every allocation; 0 = the
/// default). Restarting keeps what was recorded.
pub fn start(rate: u64) -> Result<(), MemError> {
    let rate = if rate == 0 { DEFAULT_RATE } else { rate };
    thread::with_harness_guard(|| {
        if TABLES.get().is_none() {
            let stacks = Table::new(STACKS).ok_or(MemError::NoMemory)?;
            let buckets = Table::new(BUCKETS).ok_or(MemError::NoMemory)?;
            let _ = TABLES.set(Tables { stacks, buckets });
        }
        let slots = if rate == 1 {
            live::DIRECT
        } else {
            live::FILTER_SLOTS_SPARSE
        };
        if !live::init(slots) || !peak::init(BUCKETS) {
            return Err(MemError::NoMemory);
        }
        // The preload registers these (with its own child handler); in-process, we do: a child
        // forked while another thread holds a shard lock would otherwise spin on it forever.
        if !cfg!(feature = "preload") {
            static FORK_HANDLERS: std::sync::Once = std::sync::Once::new();
            FORK_HANDLERS.call_once(|| {
                // SAFETY: registering plain extern "C" functions without arguments.
                unsafe {
                    libc::pthread_atfork(Some(before_fork), Some(after_fork), Some(after_fork))
                };
            });
        }
        LAST_RATE.store(rate, Ordering::Relaxed);
        RATE.store(rate, Ordering::Release);
        Ok(())
    })
}

/// Stop sampling (what was recorded stays for [`snapshot`]).
pub fn stop() {
    let rate = RATE.swap(0, Ordering::AcqRel);
    if rate != 0 {
        LAST_RATE.store(rate, Ordering::Relaxed);
    }
}

/// The sampling rate in bytes, or 0 when the profiler is off.
pub fn rate() -> u64 {
    RATE.load(Ordering::Relaxed)
}

/// Draw the bytes until the next sample: exponential with mean `rate`.
fn next_sample_distance(rate: u64) -> i64 {
    if rate <= 1 {
        return 0;
    }
    // u in (0, 1]; -ln(u) is exponential with mean 1.
    let u = 1.0 - crate::rng::next_f64();
    let d = -u.ln() * rate as f64;
    d.min(i64::MAX as f64 / 2.0) as i64 + 1
}

/// Account an allocation of `size` bytes at `ptr` (call after the real allocation).
#[inline]
pub fn on_alloc(ptr: *mut u8, size: usize) {
    let rate = RATE.load(Ordering::Relaxed);
    if rate == 0 || ptr.is_null() {
        return;
    }
    // Bytes until this thread's next sample, stored XOR i64::MIN (see ThreadBlock): i64::MIN
    // until first drawn.
    let next = &crate::tls::block().next_sample;
    let mut left = next.get() ^ i64::MIN;
    if left == i64::MIN {
        left = next_sample_distance(rate);
    }
    left -= size as i64;
    let sample = left <= 0;
    if sample {
        left = next_sample_distance(rate);
    }
    next.set(left ^ i64::MIN);
    if sample && !thread::in_harness() {
        thread::with_harness_guard(|| record(ptr as u64, size as u64));
    }
}

#[inline(never)]
fn record(addr: u64, size: u64) {
    let Some(t) = TABLES.get() else { return };
    // A single-threaded process has no module watcher: catch up here, outside glibc's malloc.
    crate::modules::refresh_if_news();
    let mut frames = [0u64; MAX_DEPTH];
    let depth = unwind::capture_current(0, &mut frames);
    // Leave off the harness's own frames (this function, on_alloc, the interposer).
    let skip = frames[..depth]
        .iter()
        .take_while(|&&f| crate::maps::is_harness_code(f))
        .count();
    let stack = &frames[skip..depth];
    let Some((bucket, created)) = t
        .stacks
        .intern(stack)
        .and_then(|s| t.buckets.intern_new(s, size, crate::threads::current()))
    else {
        LOST.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if created {
        peak::bucket_created(bucket);
    }
    t.buckets.get(bucket).first.fetch_add(1, Ordering::Relaxed);
    if live::insert(addr, bucket) {
        peak::allocated(size);
    } else {
        LOST.fetch_add(1, Ordering::Relaxed);
    }
}

/// Account the free of `ptr` (call before the real free).
#[inline]
pub fn on_free(ptr: *mut u8) {
    if ptr.is_null() || TABLES.get().is_none() {
        return;
    }
    if let Some(bucket) = live::remove(ptr as u64) {
        if let Some(t) = TABLES.get() {
            let b = t.buckets.get(bucket);
            peak::freeing(b.key().1, &t.buckets);
            b.second.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Take every lock of the memory profiler (an atfork `prepare` handler).
pub extern "C" fn before_fork() {
    live::lock_all();
}

/// Release them again (atfork `parent` and `child` handlers).
pub extern "C" fn after_fork() {
    live::unlock_all();
}

/// One (stack, size, thread) bucket of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemBucket {
    /// Index of its stack in [`MemData::stacks`].
    pub stack: usize,
    /// Size of each allocation.
    pub size: u64,
    /// The allocating thread's serial in the thread registry.
    pub thread: u32,
    /// Sampled allocations.
    pub allocs: u64,
    /// Sampled frees.
    pub frees: u64,
    /// Sampled allocations live at the peak (see [`peak`]).
    pub peak: u64,
}

/// What the memory profiler has recorded so far.
#[derive(Debug, Clone, Default)]
pub struct MemData {
    /// The rate in force (1 = every allocation).
    pub rate: u64,
    /// The distinct stacks, return addresses leaf first. Buckets of many threads share one,
    /// so that a profile writer resolves each stack once, not once per bucket.
    pub stacks: Vec<Vec<u64>>,
    /// Buckets, duplicates folded.
    pub buckets: Vec<MemBucket>,
    /// Samples that could not be recorded (tables full).
    pub lost: u64,
    /// The peak of the sampled live bytes.
    pub peak: peak::Peak,
}

/// The recorded buckets now. Allocates: call outside `malloc`.
pub fn snapshot() -> MemData {
    thread::with_harness_guard(|| {
        let mut data = MemData {
            rate: match RATE.load(Ordering::Relaxed) {
                0 => LAST_RATE.load(Ordering::Relaxed),
                r => r,
            },
            lost: LOST.load(Ordering::Relaxed),
            ..MemData::default()
        };
        let Some(t) = TABLES.get() else {
            return data;
        };
        data.peak = peak::peak();
        // A race can intern one stack twice: map stack ids to one index per distinct stack
        // (few), then fold buckets by (index, size, thread) without touching frames again.
        let mut index_of_id: HashMap<u32, usize> = HashMap::new();
        let mut index_of_frames: HashMap<&[u64], usize> = HashMap::new();
        let mut folded: HashMap<(usize, u64, u32), usize> = HashMap::new();
        // The list of created buckets, not the table: a checkpoint every 100 ms must not sweep
        // 48 MiB of mostly empty entries (and the cache with them).
        let created = peak::used_buckets().map(|id| t.buckets.get(id));
        for b in created.filter(|b| b.is_ready()) {
            let (id, size, thread) = b.key();
            let stack = *index_of_id.entry(id).or_insert_with(|| {
                let frames = t.stacks.frames(id);
                *index_of_frames.entry(frames).or_insert_with(|| {
                    data.stacks.push(frames.to_vec());
                    data.stacks.len() - 1
                })
            });
            let allocs = b.first.load(Ordering::Relaxed);
            let frees = b.second.load(Ordering::Relaxed).min(allocs);
            let i = *folded.entry((stack, size, thread)).or_insert_with(|| {
                data.buckets.push(MemBucket {
                    stack,
                    size,
                    thread,
                    allocs: 0,
                    frees: 0,
                    peak: 0,
                });
                data.buckets.len() - 1
            });
            data.buckets[i].allocs += allocs;
            data.buckets[i].frees += frees;
            data.buckets[i].peak += if data.peak.is_now {
                allocs - frees
            } else {
                b.third.load(Ordering::Relaxed).min(allocs)
            };
        }
        data
    })
}
