//! The CPU profiler: one CPU-clock timer per thread, a signal handler that records the
//! interrupted stack, and a drain thread that folds stacks into counts.
//!
//! The timers deliver a real-time signal the program leaves at its default action, chosen when
//! profiling starts (`SIGPROF` only if none is free): a program's own `SIGPROF` handler and
//! `setitimer` see exactly what they see unprofiled, and a program that resets `SIGPROF` to
//! its default is not killed by our timers. The drain thread watches the delivery
//! ([`crate::signal_watch`]): threads that block the signal and a program that takes its
//! handler over are named in the profile's comments.
//!
//! Each thread gets a POSIX timer on its own CPU clock (`CLOCK_THREAD_CPUTIME_ID`), delivered to
//! that thread with `SIGEV_THREAD_ID`, first expiry at a random point of the period (as Go does
//! since 1.18: one process-wide `setitimer` loses signals once several cores are busy). The kernel
//! fires CPU-clock timers on its scheduler tick, so above the tick rate one signal stands for
//! several periods: each sample is weighted by `1 + si_overrun`.
//!
//! Hazards of the handler, and how each is met: it allocates nothing and takes no lock (it
//! writes into the preallocated [`SampleQueue`]); it saves and restores `errno`; it never panics
//! (bounds are checked by hand, the unwinder never faults); it ignores harness threads and
//! threads inside harness code; a full queue counts lost samples instead of waiting.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use crate::queue::SampleQueue;
use crate::thread;
use crate::unwind;

/// Errors starting or stopping the CPU profiler.
#[derive(Debug, PartialEq, Eq)]
pub enum CpuError {
    /// A CPU profile is already being collected in this process (Go refuses this too).
    AlreadyRunning,
    /// `stop` without a `start`.
    NotRunning,
    /// The rate must be between 1 and 1_000_000 Hz.
    BadRate(u32),
    /// The OS refused a timer or the signal handler.
    Os(String),
}

impl std::fmt::Display for CpuError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CpuError::AlreadyRunning => f.write_str("cpu profiling already in use"),
            CpuError::NotRunning => f.write_str("cpu profiling is not running"),
            CpuError::BadRate(hz) => write!(f, "bad cpu profile rate {hz} Hz (use 1..=1000000)"),
            CpuError::Os(e) => write!(f, "cannot start cpu profiling: {e}"),
        }
    }
}

impl std::error::Error for CpuError {}

/// A stack (return addresses, leaf first) and the serial of the thread it was sampled on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThreadStack {
    /// The sampled thread's serial in the thread registry.
    pub thread: u32,
    /// Return addresses, leaf first.
    pub stack: Vec<u64>,
}

/// What a finished CPU profile collected: stacks (return addresses, leaf first) with the number
/// of periods each stands for.
#[derive(Debug, Default)]
pub struct CpuData {
    /// Periods per stack.
    pub stacks: HashMap<ThreadStack, u64>,
    /// Nanoseconds of CPU time per period (`1e9 / hz`).
    pub period_ns: u64,
    /// When profiling started.
    pub start: Option<SystemTime>,
    /// How long it ran.
    pub duration: Duration,
    /// Periods that could not be recorded because the buffer was full.
    pub lost: u64,
    /// Periods recorded with their leaf function only (the stack was too full to unwind on).
    pub leaf_only: u64,
    /// Threads that got no timer (the timer table was full, or the OS refused).
    pub threads_unprofiled: u64,
    /// Periods that fell while a thread ran the harness's own code, and were not sampled.
    pub in_harness: u64,
    /// Periods that fell due on threads' CPU clocks but were never signalled (see
    /// `UNSIGNALLED`): the profile is short by this much.
    pub unsignalled: u64,
    /// What kept samples from being taken (threads blocking the signal, a replaced handler),
    /// one sentence each, for the profile's comments.
    pub notices: Vec<String>,
}

const QUEUE_SLOTS: usize = 1024;
const MAX_TIMERS: usize = 8192;
const SI_TIMER: i32 = -2;

static QUEUE: OnceLock<SampleQueue> = OnceLock::new();
static ENABLED: AtomicBool = AtomicBool::new(false);
static RUNNING: AtomicBool = AtomicBool::new(false);
static PERIOD_NS: AtomicU64 = AtomicU64::new(0);
static LOST: AtomicU64 = AtomicU64::new(0);
static UNPROFILED: AtomicU64 = AtomicU64::new(0);
/// Periods whose signal found the thread inside harness code (not sampled).
static IN_HARNESS: AtomicU64 = AtomicU64::new(0);
/// Periods sampled on a stack too full to unwind on: only their leaf function was recorded.
static LEAF_ONLY: AtomicU64 = AtomicU64::new(0);
/// Live timers (timer id + 1; 0 = free slot), so `stop` can delete every thread's timer.
static TIMERS: [AtomicUsize; MAX_TIMERS] = [const { AtomicUsize::new(0) }; MAX_TIMERS];
/// The thread each live timer samples (parallel to `TIMERS`).
static TIMER_TIDS: [AtomicI32; MAX_TIMERS] = [const { AtomicI32::new(0) }; MAX_TIMERS];
/// A slot claimed by [`arm_thread`] whose timer is not made yet.
const RESERVED: usize = usize::MAX;
/// Per slot: its thread's CPU clock (ns) when the timer was armed, and the first expiry after
/// that, so that when the timer is deleted the periods that fell due are known exactly.
static SLOT_ARMED_CPU: [AtomicU64; MAX_TIMERS] = [const { AtomicU64::new(0) }; MAX_TIMERS];
static SLOT_FIRST: [AtomicU64; MAX_TIMERS] = [const { AtomicU64::new(0) }; MAX_TIMERS];
/// Per slot: the periods its timer's signals stood for (`1 + si_overrun` each), whatever
/// became of the sample.
static SLOT_SIGNALLED: [AtomicU64; MAX_TIMERS] = [const { AtomicU64::new(0) }; MAX_TIMERS];
/// Periods that fell due on deleted timers but were never signalled: the kernel fires a CPU
/// timer only on a scheduler tick that finds its thread running, so under contention signals
/// come late, and those still due when a thread ends (or profiling stops) never come.
static UNSIGNALLED: AtomicU64 = AtomicU64::new(0);
/// In-process mode: no `pthread_create` wrapper, so the drain thread finds new threads itself.
static SCAN_THREADS: AtomicBool = AtomicBool::new(false);

struct Session {
    start: SystemTime,
    started: std::time::Instant,
    stop: std::sync::Arc<Wake>,
    drain: thread::HarnessThread,
    stacks: std::sync::Arc<Mutex<HashMap<ThreadStack, u64>>>,
}

static SESSION: Mutex<Option<Session>> = Mutex::new(None);
/// The signal the timers deliver (0 until the handler is installed).
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// The signal the CPU timers deliver, once profiling has started (0 before).
pub fn timer_signal() -> i32 {
    SIGNAL.load(Ordering::Acquire)
}

/// Whether a CPU profile is being collected.
pub fn is_running() -> bool {
    RUNNING.load(Ordering::Acquire)
}

/// Start profiling at `hz` samples per CPU-second per thread, arming the calling thread's timer.
/// Other threads must call [`thread_started_slot`] as they start (the preload does this by wrapping
/// `pthread_create`), or be armed with [`arm_thread`].
pub fn start(hz: u32) -> Result<(), CpuError> {
    start_with(hz, false)
}

/// Start profiling without the preload: every thread that exists now gets a timer, and the
/// drain thread gives one to threads created later (within its 10 ms period).
pub fn start_in_process(hz: u32) -> Result<(), CpuError> {
    start_with(hz, true)
}

fn start_with(hz: u32, scan: bool) -> Result<(), CpuError> {
    if hz == 0 || hz > 1_000_000 {
        return Err(CpuError::BadRate(hz));
    }
    if RUNNING
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err(CpuError::AlreadyRunning);
    }
    SCAN_THREADS.store(scan, Ordering::Release);
    let result = thread::with_harness_guard(|| start_session(hz));
    if result.is_err() {
        RUNNING.store(false, Ordering::Release);
    }
    result
}

fn start_session(hz: u32) -> Result<(), CpuError> {
    let queue = QUEUE.get_or_init(|| SampleQueue::new(QUEUE_SLOTS));
    while queue.pop(|_| ()) {}
    PERIOD_NS.store(1_000_000_000 / hz as u64, Ordering::Relaxed);
    LOST.store(0, Ordering::Relaxed);
    LEAF_ONLY.store(0, Ordering::Relaxed);
    UNPROFILED.store(0, Ordering::Relaxed);
    IN_HARNESS.store(0, Ordering::Relaxed);
    UNSIGNALLED.store(0, Ordering::Relaxed);
    install_handler()?;
    let stop = std::sync::Arc::new(Wake::default());
    let stacks = std::sync::Arc::new(Mutex::new(HashMap::new()));
    let drain = {
        let (stop, stacks) = (stop.clone(), stacks.clone());
        thread::spawn_harness_thread(c"rprof-drain", move || drain_loop(queue, &stop, &stacks))
            .map_err(|e| CpuError::Os(format!("drain thread: {e}")))?
    };
    // The drain thread made the process multi-threaded: the module watcher costs no more.
    crate::modules::start_watcher();
    *SESSION.lock().unwrap_or_else(|e| e.into_inner()) = Some(Session {
        start: SystemTime::now(),
        started: std::time::Instant::now(),
        stop,
        drain,
        stacks,
    });
    ENABLED.store(true, Ordering::Release);
    thread::record_stack_bounds_if_unknown();
    arm_thread(thread::gettid());
    if SCAN_THREADS.load(Ordering::Acquire) {
        arm_all_threads();
    }
    Ok(())
}

/// Stop profiling: delete every thread's timer, drain what is buffered and return the stacks.
pub fn stop() -> Result<CpuData, CpuError> {
    let Some(session) = SESSION.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return Err(CpuError::NotRunning);
    };
    ENABLED.store(false, Ordering::Release);
    for (i, (slot, tid)) in TIMERS.iter().zip(&TIMER_TIDS).enumerate() {
        let thread = tid.swap(0, Ordering::Relaxed);
        let t = slot.swap(0, Ordering::AcqRel);
        if t != 0 && t != RESERVED {
            if let Some(now) = crate::sys::clock_ns(thread_cpu_clock(thread)) {
                account_unsignalled(i, now);
            }
            // SAFETY: `t - 1` is a timer id created by timer_create and not yet deleted: the
            // swap made us its only owner.
            unsafe { libc::timer_delete((t - 1) as libc::timer_t) };
        }
    }
    let duration = session.started.elapsed();
    session.stop.set();
    session.drain.join();
    let stacks = std::mem::take(&mut *session.stacks.lock().unwrap_or_else(|e| e.into_inner()));
    let notices = crate::signal_watch::notices();
    RUNNING.store(false, Ordering::Release);
    Ok(CpuData {
        stacks,
        period_ns: PERIOD_NS.load(Ordering::Relaxed),
        start: Some(session.start),
        duration,
        lost: LOST.load(Ordering::Relaxed),
        leaf_only: LEAF_ONLY.load(Ordering::Relaxed),
        threads_unprofiled: UNPROFILED.load(Ordering::Relaxed),
        in_harness: IN_HARNESS.load(Ordering::Relaxed),
        unsignalled: UNSIGNALLED.load(Ordering::Relaxed),
        notices,
    })
}

/// What the running profile has collected so far (as of the drain thread's last pass, at most
/// 50 ms ago), without stopping it: two snapshots subtracted give the profile of the time
/// between them.
pub fn snapshot() -> Result<CpuData, CpuError> {
    let (stacks, start, started) = {
        let session = SESSION.lock().unwrap_or_else(|e| e.into_inner());
        let Some(session) = session.as_ref() else {
            return Err(CpuError::NotRunning);
        };
        (session.stacks.clone(), session.start, session.started)
    };
    let stacks = stacks.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(CpuData {
        stacks,
        period_ns: PERIOD_NS.load(Ordering::Relaxed),
        start: Some(start),
        duration: started.elapsed(),
        lost: LOST.load(Ordering::Relaxed),
        leaf_only: LEAF_ONLY.load(Ordering::Relaxed),
        threads_unprofiled: UNPROFILED.load(Ordering::Relaxed),
        in_harness: IN_HARNESS.load(Ordering::Relaxed),
        unsignalled: UNSIGNALLED.load(Ordering::Relaxed),
        notices: crate::signal_watch::notices(),
    })
}

/// Called on a new thread before its start routine (after its stack bounds are recorded):
/// while profiling, arm its timer. Returns the timer's slot for [`thread_exiting`].
pub fn thread_started_slot() -> Option<usize> {
    if ENABLED.load(Ordering::Acquire) {
        arm_thread(thread::gettid())
    } else {
        None
    }
}

/// Called when a thread exits: delete its timer if it has one.
pub fn thread_exiting(slot: usize) {
    if let Some(s) = TIMERS.get(slot) {
        let own = TIMER_TIDS[slot].swap(0, Ordering::Relaxed) == thread::gettid();
        let t = s.swap(0, Ordering::AcqRel);
        if t != 0 && t != RESERVED {
            if own {
                if let Some(now) = crate::sys::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID) {
                    account_unsignalled(slot, now);
                }
            }
            // SAFETY: as in `stop`: the swap made us the only owner of this live timer.
            unsafe { libc::timer_delete((t - 1) as libc::timer_t) };
        }
    }
}

/// Arm a CPU-clock timer for thread `tid` of this process. Returns the timer's slot, to pass to
/// [`thread_exiting`], or `None` when no timer could be made.
pub fn arm_thread(tid: libc::pid_t) -> Option<usize> {
    if thread::is_harness_tid(tid) {
        return None;
    }
    if let Some(armed) = TIMER_TIDS
        .iter()
        .position(|t| t.load(Ordering::Acquire) == tid)
    {
        return Some(armed);
    }
    let clock = if tid == thread::gettid() {
        libc::CLOCK_THREAD_CPUTIME_ID
    } else {
        thread_cpu_clock(tid)
    };
    // The slot first: the timer's signals carry it, so the handler can count them per thread.
    let Some(slot) = TIMERS.iter().position(|s| {
        s.compare_exchange(0, RESERVED, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }) else {
        UNPROFILED.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    // SAFETY: sigevent is plain data; zeroed is a valid starting value.
    let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
    sev.sigev_notify = libc::SIGEV_THREAD_ID;
    sev.sigev_signo = SIGNAL.load(Ordering::Acquire);
    sev.sigev_notify_thread_id = tid;
    sev.sigev_value = libc::sigval {
        sival_ptr: (slot + 1) as *mut libc::c_void,
    };
    let mut timer: libc::timer_t = std::ptr::null_mut();
    // SAFETY: `sev` and `timer` are valid for the call.
    if unsafe { libc::timer_create(clock, &mut sev, &mut timer) } != 0 {
        TIMERS[slot].store(0, Ordering::Release);
        // Another thread may have exited since it was listed: that is no loss.
        if clock == libc::CLOCK_THREAD_CPUTIME_ID {
            UNPROFILED.fetch_add(1, Ordering::Relaxed);
        }
        return None;
    }
    let period = PERIOD_NS.load(Ordering::Relaxed).max(1);
    let first = 1 + (crate::rng::next_u64() % period);
    SLOT_SIGNALLED[slot].store(0, Ordering::Relaxed);
    SLOT_FIRST[slot].store(first, Ordering::Relaxed);
    SLOT_ARMED_CPU[slot].store(crate::sys::clock_ns(clock).unwrap_or(0), Ordering::Relaxed);
    TIMERS[slot].store(timer as usize + 1, Ordering::Release);
    TIMER_TIDS[slot].store(tid, Ordering::Release);
    let ts = |ns: u64| libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    let spec = libc::itimerspec {
        it_interval: ts(period),
        it_value: ts(first),
    };
    // SAFETY: `timer` is a live timer id; `spec` is valid.
    unsafe { libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()) };
    Some(slot)
}

/// The threads that have a timer now.
fn armed_tids() -> Vec<libc::pid_t> {
    TIMER_TIDS
        .iter()
        .map(|t| t.load(Ordering::Acquire))
        .filter(|&t| t != 0)
        .collect()
}

/// Give every thread of the process a timer (in-process mode), and delete the timers of threads
/// that have exited.
fn arm_all_threads() {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    let live: Vec<libc::pid_t> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for &tid in &live {
        arm_thread(tid);
    }
    for (slot, tid) in TIMER_TIDS.iter().enumerate() {
        let t = tid.load(Ordering::Acquire);
        if t != 0 && !live.contains(&t) {
            thread_exiting(slot);
        }
    }
}

fn install_handler() -> Result<(), CpuError> {
    let handler = on_timer_signal as *const () as usize;
    let chosen = SIGNAL.load(Ordering::Acquire);
    // Profiling again: the same signal, unless the program has taken it meanwhile. Else the
    // first free real-time signal from SIGRTMIN+4 (glibc and common libraries use the first
    // few); SIGPROF when none is free.
    let first = if chosen != 0 {
        matches!(crate::sys::signal_handler(chosen), Some(h) if h == handler || h == libc::SIG_DFL)
            .then_some(chosen)
            .filter(|&sig| crate::sys::install_siginfo_handler(sig, handler))
    } else {
        crate::sys::install_on_free_rt_signal(4, handler)
    };
    let signal = first.or_else(|| {
        crate::sys::install_siginfo_handler(libc::SIGPROF, handler).then_some(libc::SIGPROF)
    });
    match signal {
        Some(sig) => {
            SIGNAL.store(sig, Ordering::Release);
            Ok(())
        }
        None => Err(CpuError::Os(std::io::Error::last_os_error().to_string())),
    }
}

/// The timers' signal handler. See the module doc for the rules it keeps.
extern "C" fn on_timer_signal(
    _sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ucontext: *mut libc::c_void,
) {
    // SAFETY: __errno_location returns this thread's errno slot, always valid.
    let errno = unsafe { *libc::__errno_location() };
    if ENABLED.load(Ordering::Acquire) {
        // SAFETY: `info` is the kernel's siginfo for this delivery.
        let (slot, overrun) = unsafe { (timer_slot(info), timer_overrun(info)) };
        if let Some(signalled) = slot.and_then(|i| SLOT_SIGNALLED.get(i)) {
            signalled.fetch_add(1 + overrun as u64, Ordering::Relaxed);
        }
    }
    if ENABLED.load(Ordering::Acquire) && thread::in_harness() {
        // SAFETY: `info` is the kernel's siginfo for this delivery.
        let overrun = unsafe { timer_overrun(info) };
        IN_HARNESS.fetch_add(1 + overrun as u64, Ordering::Relaxed);
    } else if ENABLED.load(Ordering::Acquire) {
        if let Some(queue) = QUEUE.get() {
            // SAFETY: `info` is the kernel's siginfo for this delivery.
            let overrun = unsafe { timer_overrun(info) };
            let weight = 1 + overrun as u64;
            // SAFETY: `ucontext` is the kernel's context for this SA_SIGINFO delivery.
            let regs = unsafe { unwind::regs_from_ucontext(ucontext) };
            let bounds = thread::stack_bounds();
            let pushed = queue.push(|s| {
                s.weight = weight;
                s.extra = 1;
                s.thread = crate::threads::current();
                // SAFETY: `regs` describe the thread this signal interrupted, which is the
                // current thread, and `bounds` are its recorded stack.
                let (depth, walked) = unsafe { unwind::walk_if_room(regs, bounds, &mut s.frames) };
                s.depth = depth;
                if !walked {
                    LEAF_ONLY.fetch_add(weight, Ordering::Relaxed);
                }
            });
            if !pushed {
                LOST.fetch_add(weight, Ordering::Relaxed);
            }
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// `si_overrun` of a timer signal: expirations this one signal stands for beyond the first.
///
/// # Safety
/// `info` must point at a valid `siginfo_t`.
unsafe fn timer_overrun(info: *const libc::siginfo_t) -> i32 {
    // SAFETY: the caller guarantees `info` is valid.
    let code = unsafe { (*info).si_code };
    if code != SI_TIMER {
        return 0;
    }
    // Linux's siginfo_t: three ints, padding to 16 bytes, then for timers `si_tid`, `si_overrun`.
    // SAFETY: siginfo_t is 128 bytes; offset 20 is inside it and 4-byte aligned.
    let overrun = unsafe { *((info as *const u8).add(20) as *const i32) };
    overrun.max(0)
}

/// The timer slot a timer signal carries in `si_value` (see [`arm_thread`]).
///
/// # Safety
/// `info` must point at a valid `siginfo_t`.
unsafe fn timer_slot(info: *const libc::siginfo_t) -> Option<usize> {
    // SAFETY: the caller guarantees `info` is valid.
    if unsafe { (*info).si_code } != SI_TIMER {
        return None;
    }
    // For timers `si_value` follows `si_tid` and `si_overrun`, at offset 24.
    // SAFETY: siginfo_t is 128 bytes; offset 24 is inside it and 8-byte aligned.
    let value = unsafe { *((info as *const u8).add(24) as *const usize) };
    value.checked_sub(1)
}

/// The kernel's CPU clock id of thread `tid` of this process:
/// `MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)`.
fn thread_cpu_clock(tid: libc::pid_t) -> libc::clockid_t {
    ((!(tid as libc::clockid_t)) << 3) | 2 | 4
}

/// A slot's timer is being deleted with its thread's CPU clock at `cpu_now`: add the periods
/// that fell due since it was armed and were never signalled to [`UNSIGNALLED`].
fn account_unsignalled(slot: usize, cpu_now: u64) {
    let period = PERIOD_NS.load(Ordering::Relaxed).max(1);
    let elapsed = cpu_now.saturating_sub(SLOT_ARMED_CPU[slot].load(Ordering::Relaxed));
    let first = SLOT_FIRST[slot].load(Ordering::Relaxed);
    let due = if elapsed >= first {
        (elapsed - first) / period + 1
    } else {
        0
    };
    let signalled = SLOT_SIGNALLED[slot].swap(0, Ordering::Relaxed);
    UNSIGNALLED.fetch_add(due.saturating_sub(signalled), Ordering::Relaxed);
}

/// A stop flag the drain thread can sleep on, so that stopping does not wait out its nap.
#[derive(Default)]
struct Wake {
    stopped: Mutex<bool>,
    cond: std::sync::Condvar,
}

impl Wake {
    fn set(&self) {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cond.notify_all();
    }

    fn is_set(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sleep up to `timeout` unless stopped meanwhile.
    fn nap(&self, timeout: Duration) {
        let stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        if !*stopped {
            let _ = self.cond.wait_timeout(stopped, timeout);
        }
    }
}

fn drain_loop(queue: &SampleQueue, stop: &Wake, stacks: &Mutex<HashMap<ThreadStack, u64>>) {
    // A scan may have armed this thread before it was known as a harness thread.
    let me = thread::gettid();
    if let Some(slot) = TIMER_TIDS
        .iter()
        .position(|t| t.load(Ordering::Acquire) == me)
    {
        thread_exiting(slot);
    }
    // The lookup key, reused so that a stack seen before costs no allocation.
    let mut key = ThreadStack::default();
    let mut last_watch = std::time::Instant::now();
    crate::signal_watch::reset();
    loop {
        let stopping = stop.is_set();
        let mut drained = 0;
        {
            let mut map = stacks.lock().unwrap_or_else(|e| e.into_inner());
            while queue.pop(|s| {
                key.thread = s.thread;
                key.stack.clear();
                key.stack.extend_from_slice(s.stack());
                match map.get_mut(&key) {
                    Some(v) => *v += s.weight,
                    None => {
                        map.insert(key.clone(), s.weight);
                    }
                }
            }) {
                drained += 1;
            }
        }
        if stopping {
            return;
        }
        let scan = SCAN_THREADS.load(Ordering::Relaxed);
        if scan && ENABLED.load(Ordering::Acquire) {
            arm_all_threads();
        }
        if last_watch.elapsed() >= crate::signal_watch::PERIOD {
            last_watch = std::time::Instant::now();
            crate::signal_watch::check(
                SIGNAL.load(Ordering::Acquire),
                on_timer_signal as *const () as usize,
                &armed_tids(),
            );
        }
        // Wake-ups cost the profiled program CPU: nap long while few samples arrive (the queue
        // then holds seconds of them), short when many do or new threads must be found soon.
        let busy = drained > QUEUE_SLOTS / 16;
        stop.nap(Duration::from_millis(if scan || busy { 10 } else { 50 }));
    }
}
