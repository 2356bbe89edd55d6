//! The module table the unwinder reads: every loaded object's code range and DWARF call-frame
//! information (CFI), published so that signal handlers and allocation hooks read it without
//! locks or allocation; and the pool of unwinder caches they borrow.
//!
//! Hazards, and how each is met:
//! - a handler can run at any instruction of any thread, also while the table is being
//!   replaced: a reader announces itself in a striped counter *before* it loads the table
//!   pointer and withdraws after its last use; a replaced table is freed only when every stripe
//!   has been seen at zero after the swap (no reader can still hold it), otherwise it waits on a
//!   retired list for a later try;
//! - a library can be unloaded (`dlclose`) while a handler reads its CFI: the CFI of every
//!   object that can be unloaded is *copied* into the table (shared between tables while the
//!   object stays loaded); only the main executable, the vDSO and the harness's own library,
//!   which are never unmapped, are read in place;
//! - building a table allocates and calls `dl_iterate_phdr` (it takes the loader's lock): only
//!   outside handlers: at start, from the watcher thread (which checks the loader's
//!   load/unload counters every [`WATCH_PERIOD`], or at once when a walk met an address outside
//!   every known object, [`note_unknown_address`]: a library loaded since), and in a
//!   single-threaded process from the memory sampler ([`refresh_if_news`]);
//! - framehop's cache (its scratch space, about 40 KiB) and the walk's own cache of which
//!   return addresses step by frame pointer come from a pool filled at start,
//!   claimed with one compare-and-swap; a walk that finds none free falls back to frame
//!   pointers, never allocates.

use std::cell::UnsafeCell;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use framehop::x86_64::{CacheX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, Module, MustNotAllocateDuringUnwind, Unwinder};

use crate::maps::{self, LoadedObject};
use crate::thread;

/// How often the watcher thread looks for objects loaded or unloaded since the last table. A
/// walk that meets an unknown address wakes it at once, so this bounds only how long the
/// table may still list a library after its `dlclose`.
pub const WATCH_PERIOD: Duration = Duration::from_millis(100);

/// CFI bytes of one object: read in place (objects never unmapped) or an owned copy.
#[derive(Clone)]
pub enum CfiData {
    /// Mapped memory of an object that stays loaded for the life of the process.
    InPlace(&'static [u8]),
    /// A copy, for objects that `dlclose` may unmap.
    Copied(Arc<[u8]>),
}

impl Deref for CfiData {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            CfiData::InPlace(s) => s,
            CfiData::Copied(a) => a,
        }
    }
}

/// framehop's unwinder over our CFI data, with unwinding that never allocates.
pub type CfiUnwinder = UnwinderX86_64<CfiData, MustNotAllocateDuringUnwind>;
/// framehop's per-walk scratch space and rule cache.
pub type CfiCache = CacheX86_64<MustNotAllocateDuringUnwind>;

/// One object of a table, kept so the next table can reuse its CFI copy.
struct Entry {
    path: String,
    base: u64,
    code: (u64, u64),
    eh_frame_hdr: CfiData,
    eh_frame: CfiData,
}

/// A published set of modules.
pub struct Table {
    /// framehop's unwinder with one module per object that has CFI.
    pub unwinder: CfiUnwinder,
    /// Code ranges of every object in the table, sorted.
    code: Vec<(u64, u64)>,
    entries: Vec<Entry>,
}

impl Table {
    /// Whether `addr` lies in the code of an object of this table. Async-signal-safe.
    pub fn is_code(&self, addr: u64) -> bool {
        let i = self.code.partition_point(|r| r.0 <= addr);
        i > 0 && addr < self.code[i - 1].1
    }

    /// Bytes this table owns: CFI copies (counted in full, though tables share them) and its
    /// bookkeeping.
    pub fn owned_bytes(&self) -> usize {
        let copied = |d: &CfiData| match d {
            CfiData::InPlace(_) => 0,
            CfiData::Copied(a) => a.len(),
        };
        self.entries
            .iter()
            .map(|e| copied(&e.eh_frame_hdr) + copied(&e.eh_frame) + e.path.len() + 128)
            .sum::<usize>()
            + std::mem::size_of::<Table>()
    }

    /// How many objects have CFI in this table.
    pub fn modules(&self) -> usize {
        self.entries.len()
    }
}

#[repr(align(64))]
struct Stripe(AtomicUsize);

const STRIPES: usize = 16;
static READERS: [Stripe; STRIPES] = [const { Stripe(AtomicUsize::new(0)) }; STRIPES];
static CURRENT: AtomicPtr<Table> = AtomicPtr::new(std::ptr::null_mut());

/// Publisher state: tables waiting to be freed and the loader counters the table was built at.
struct Publisher {
    retired: Vec<usize>,
    counters: (u64, u64),
}

static PUBLISHER: Mutex<Publisher> = Mutex::new(Publisher {
    retired: Vec::new(),
    counters: (0, 0),
});

/// A stripe for the calling thread: threads' stacks lie megabytes apart, so the address of a
/// local spreads them without a thread-local lookup.
fn stripe() -> &'static AtomicUsize {
    let here = 0u8;
    let addr = &here as *const u8 as usize;
    &READERS[((addr >> 16) ^ (addr >> 23)) % STRIPES].0
}

/// Run `f` with the current table, or return `None` when there is none yet. Async-signal-safe
/// and re-entrant (a handler may interrupt a reader on the same thread).
pub fn with_table<R>(f: impl FnOnce(&Table) -> R) -> Option<R> {
    let stripe = stripe();
    stripe.fetch_add(1, Ordering::SeqCst);
    let table = CURRENT.load(Ordering::SeqCst);
    // SAFETY: a table is freed only after every stripe was seen at zero after it was replaced;
    // our stripe counts us from before the load until after the last use of `table`.
    let r = (!table.is_null()).then(|| f(unsafe { &*table }));
    stripe.fetch_sub(1, Ordering::SeqCst);
    r
}

/// Free retired tables if no reader is inside any table right now.
fn reclaim(p: &mut Publisher) {
    for _ in 0..64 {
        if p.retired.is_empty() {
            return;
        }
        if READERS.iter().all(|s| s.0.load(Ordering::SeqCst) == 0) {
            for t in p.retired.drain(..) {
                // SAFETY: `t` came from Box::into_raw, was swapped out of CURRENT before the
                // stripes were seen at zero, so no reader holds it; it is freed once (drained).
                drop(unsafe { Box::from_raw(t as *mut Table) });
            }
            return;
        }
        std::thread::yield_now();
    }
}

/// Build a table of `objects`, reusing the CFI copies of `previous` for objects still loaded.
fn build(objects: &[LoadedObject], previous: Option<&Table>) -> Table {
    let harness = maps::is_harness_code as *const () as u64;
    let mut unwinder = CfiUnwinder::new();
    let mut code = Vec::new();
    let mut entries = Vec::new();
    for o in objects {
        let Some(start) = o.segments.iter().map(|s| s.start).min() else {
            continue;
        };
        let end = o.segments.iter().map(|s| s.limit).max().unwrap_or(start);
        code.push((start, end));
        let Some(cfi) = o.cfi else { continue };
        let reused = previous.and_then(|t| {
            t.entries
                .iter()
                .find(|e| e.path == o.path && e.base == o.base && e.code == (start, end))
        });
        let (eh_frame_hdr, eh_frame) = match reused {
            Some(e) => (e.eh_frame_hdr.clone(), e.eh_frame.clone()),
            None => {
                let never_unmapped = o.is_main
                    || o.path == rprof_core::VDSO_MAPPING
                    || (start..end).contains(&harness);
                let data = |(addr, len): (u64, u64)| {
                    // SAFETY: `maps::loaded_objects` found both sections inside loaded segments of
                    // this object, which is loaded now (we are outside any dlclose of it: the
                    // loader listed it).
                    let bytes: &'static [u8] =
                        unsafe { std::slice::from_raw_parts(addr as *const u8, len as usize) };
                    if never_unmapped {
                        CfiData::InPlace(bytes)
                    } else {
                        CfiData::Copied(Arc::from(bytes))
                    }
                };
                (data(cfi.eh_frame_hdr), data(cfi.eh_frame))
            }
        };
        let svma = |(addr, len): (u64, u64)| addr - o.base..addr - o.base + len;
        let info = ExplicitModuleSectionInfo {
            base_svma: 0,
            eh_frame_hdr_svma: Some(svma(cfi.eh_frame_hdr)),
            eh_frame_hdr: Some(eh_frame_hdr.clone()),
            eh_frame_svma: Some(svma(cfi.eh_frame)),
            eh_frame: Some(eh_frame.clone()),
            text_svma: None,
            text: None,
            stubs_svma: None,
            stub_helper_svma: None,
            got_svma: None,
            unwind_info: None,
            debug_frame: None,
            text_segment_svma: None,
            text_segment: None,
        };
        unwinder.add_module(Module::new(o.path.clone(), start..end, o.base, info));
        entries.push(Entry {
            path: o.path.clone(),
            base: o.base,
            code: (start, end),
            eh_frame_hdr,
            eh_frame,
        });
    }
    code.sort_unstable();
    Table {
        unwinder,
        code,
        entries,
    }
}

/// Build a table from the objects loaded now and publish it. Not for handlers.
pub fn refresh() {
    let mut p = PUBLISHER.lock().unwrap_or_else(|e| e.into_inner());
    p.counters = load_counters();
    let objects = maps::loaded_objects();
    maps::remember(&objects);
    let previous = CURRENT.load(Ordering::Acquire);
    // SAFETY: only a publisher (we hold its lock) replaces or frees tables, so `previous`
    // stays valid while we read it.
    let table = build(&objects, unsafe { previous.as_ref() });
    let old = CURRENT.swap(Box::into_raw(Box::new(table)), Ordering::SeqCst);
    if !old.is_null() {
        p.retired.push(old as usize);
    }
    reclaim(&mut p);
}

/// [`refresh`] when an object was loaded or unloaded since the last table (the loader's
/// `dlpi_adds`/`dlpi_subs` counters moved). Not for handlers.
pub fn refresh_if_changed() {
    let changed = {
        let mut p = PUBLISHER.lock().unwrap_or_else(|e| e.into_inner());
        reclaim(&mut p);
        load_counters() != p.counters
    };
    if changed {
        refresh();
    }
}

/// The loader's count of objects ever added and removed.
fn load_counters() -> (u64, u64) {
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        let needed = std::mem::offset_of!(libc::dl_phdr_info, dlpi_subs) + 8;
        if size >= needed {
            // SAFETY: dl_iterate_phdr passes a valid info of `size` bytes, large enough for
            // both counters; `data` is the tuple we passed in.
            unsafe {
                *(data as *mut (u64, u64)) = ((*info).dlpi_adds, (*info).dlpi_subs);
            }
        }
        1
    }
    let mut counters = (0u64, 0u64);
    // SAFETY: `first` writes only through `data`, for the duration of the call.
    unsafe { libc::dl_iterate_phdr(Some(first), &mut counters as *mut _ as *mut libc::c_void) };
    counters
}

/// Build the first table and fill the cache pool, once per process. Not for handlers.
///
/// The watcher thread is not started here: a process with a second thread pays for it in
/// glibc's malloc, which takes a faster path while the process is single-threaded (measured:
/// 5–10% of an allocation-bound loop). [`start_watcher`] is called where the process has more
/// threads anyway (a CPU profile's drain thread, the program's first `pthread_create`); until
/// then [`refresh_if_news`] keeps the table current from the memory sampler.
pub fn start() {
    static STARTED: AtomicBool = AtomicBool::new(false);
    if STARTED.swap(true, Ordering::AcqRel) {
        refresh_if_changed();
        return;
    }
    thread::with_harness_guard(|| {
        pool();
        refresh();
    });
}

static WATCHING: AtomicBool = AtomicBool::new(false);

/// Start the watcher thread (once): it rebuilds the table every [`WATCH_PERIOD`] when objects
/// were loaded or unloaded, and at once when a walk met an unknown address. Not for handlers.
pub fn start_watcher() {
    // A load first: this runs at every thread creation, the swap only the first time.
    if POOL.get().is_none()
        || WATCHING.load(Ordering::Acquire)
        || WATCHING.swap(true, Ordering::AcqRel)
    {
        return;
    }
    let spawned = thread::with_harness_guard(|| {
        thread::spawn_harness_thread(c"rprof-modules", || loop {
            wait_for_news(WATCH_PERIOD);
            refresh_if_changed();
            // At most one rebuild a millisecond, so code outside every object (JIT code),
            // which reports itself on every sample, cannot keep the watcher busy.
            std::thread::sleep(Duration::from_millis(1));
        })
    });
    if spawned.is_err() {
        WATCHING.store(false, Ordering::Release);
    }
}

/// Without a watcher thread (a single-threaded process): rebuild the table if a walk met an
/// unknown address since the last one. For the memory sampler's sampled path, which runs
/// outside glibc's malloc and inside the harness guard, so the table's own allocations are
/// neither profiled nor re-entrant. Not for signal handlers.
pub fn refresh_if_news() {
    // Plain loads first: this runs on every sampled allocation, the swap only with news.
    if !WATCHING.load(Ordering::Acquire)
        && NEWS.load(Ordering::Relaxed) != 0
        && POOL.get().is_some()
        && NEWS.swap(0, Ordering::AcqRel) != 0
    {
        refresh_if_changed();
    }
}

/// Set when a walk met an address outside every module of the table (a library loaded since):
/// the watcher is woken to look at once instead of at its next period. A futex word.
static NEWS: AtomicU32 = AtomicU32::new(0);

/// Tell the watcher that the table may be stale. Async-signal-safe: one atomic swap and, the
/// first time only, one raw futex wake (libc's `syscall` may be the preload's interposer).
pub fn note_unknown_address() {
    if NEWS.swap(1, Ordering::AcqRel) == 0 {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: FUTEX_WAKE on a valid, aligned u32 that lives for the whole process.
        unsafe {
            crate::sys::raw_syscall(
                libc::SYS_futex,
                NEWS.as_ptr() as libc::c_long,
                (libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG) as libc::c_long,
                1,
                0,
                0,
                0,
            )
        };
    }
}

/// Sleep until `period` has passed or a walk reported an unknown address, and take the news.
fn wait_for_news(period: Duration) {
    #[cfg(target_arch = "x86_64")]
    {
        let timeout = libc::timespec {
            tv_sec: period.as_secs() as libc::time_t,
            tv_nsec: period.subsec_nanos() as libc::c_long,
        };
        // SAFETY: FUTEX_WAIT on a valid u32 with a valid relative timeout; returns at once
        // when the word is not 0.
        unsafe {
            crate::sys::raw_syscall(
                libc::SYS_futex,
                NEWS.as_ptr() as libc::c_long,
                (libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG) as libc::c_long,
                0,
                &timeout as *const libc::timespec as libc::c_long,
                0,
                0,
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    std::thread::sleep(period);
    NEWS.store(0, Ordering::Release);
}

/// A walk's scratch space, one per pool slot.
pub struct WalkCache {
    /// framehop's rule cache and CFI evaluation space.
    pub cfi: CfiCache,
    /// What this cache learned about return addresses: whose frames step by frame pointer.
    pub(crate) kinds: crate::unwind::FrameKinds,
}

#[repr(align(64))]
struct CacheSlot {
    busy: AtomicBool,
    cache: UnsafeCell<Box<WalkCache>>,
}

// SAFETY: the cache inside is only touched by the thread that won `busy` (see `with_cache`).
unsafe impl Sync for CacheSlot {}

static POOL: OnceLock<Box<[CacheSlot]>> = OnceLock::new();
/// Heap bytes one pool slot takes (framehop's boxed parts included), measured when filled.
static CACHE_BYTES: AtomicUsize = AtomicUsize::new(0);

fn pool() -> &'static [CacheSlot] {
    POOL.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
        // glibc's count of bytes in use, around the making of one slot.
        // SAFETY: mallinfo2 has no preconditions.
        let before = unsafe { libc::mallinfo2() }.uordblks;
        let probe = Box::new(WalkCache {
            cfi: CfiCache::new_in(),
            kinds: crate::unwind::FrameKinds::new(),
        });
        // SAFETY: as above.
        let after = unsafe { libc::mallinfo2() }.uordblks;
        drop(probe);
        let floor = std::mem::size_of::<CacheSlot>() + std::mem::size_of::<WalkCache>();
        CACHE_BYTES.store(after.saturating_sub(before).max(floor), Ordering::Relaxed);
        (0..(4 * cpus).clamp(16, 256))
            .map(|_| CacheSlot {
                busy: AtomicBool::new(false),
                cache: UnsafeCell::new(Box::new(WalkCache {
                    cfi: CfiCache::new_in(),
                    kinds: crate::unwind::FrameKinds::new(),
                })),
            })
            .collect()
    })
}

/// Run `f` with a cache from the pool, or return `None` when the pool is not filled yet or every
/// cache is in use. Async-signal-safe and re-entrant.
pub fn with_cache<R>(f: impl FnOnce(&mut WalkCache) -> R) -> Option<R> {
    let slots = POOL.get()?;
    let here = 0u8;
    let first = (&here as *const u8 as usize >> 16) % slots.len();
    for i in 0..slots.len() {
        let slot = &slots[(first + i) % slots.len()];
        if slot
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            // SAFETY: winning `busy` gives this call exclusive use of the cache until the
            // release store below.
            let r = f(unsafe { &mut *slot.cache.get() });
            slot.busy.store(false, Ordering::Release);
            return Some(r);
        }
    }
    None
}

/// The memory the unwinder's tables take: the current table's owned bytes and the cache pool.
pub fn footprint() -> (usize, usize) {
    let table = with_table(Table::owned_bytes).unwrap_or(0);
    let caches = POOL
        .get()
        .map_or(0, |p| p.len() * CACHE_BYTES.load(Ordering::Relaxed));
    (table, caches)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_knows_libc_and_the_vdso() {
        start();
        start_watcher();
        let malloc = libc::malloc as *const () as u64;
        let here = table_knows_libc_and_the_vdso as *const () as u64;
        let (known, modules) =
            with_table(|t| (t.is_code(malloc) && t.is_code(here), t.modules())).unwrap();
        assert!(known);
        assert!(modules >= 3, "{modules}");
        let (table, caches) = footprint();
        assert!(table > 0 && caches > 0);
    }

    #[test]
    fn a_replaced_table_is_freed_once_no_reader_holds_it() {
        start();
        for _ in 0..20 {
            refresh();
        }
        let left = PUBLISHER.lock().unwrap().retired.len();
        assert_eq!(left, 0);
    }
}
