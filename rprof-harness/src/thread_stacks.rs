//! Every thread's current stack, for the live `threads` endpoint (Go's goroutine profile).
//!
//! A thread cannot be unwound from outside without stopping it, so each one unwinds itself: the
//! requester sends it a real-time signal (one the program leaves at its default, chosen once)
//! and its handler walks the interrupted stack into one shared slot. One thread is asked at a
//! time (the requests are serialized by a lock only requesters take); a thread that does not
//! answer within [`ANSWER_WAIT`] (it blocks the signal, or is stopped) is listed without a
//! stack.
//!
//! Hazards of the handler, and how each is met: it allocates nothing and takes no lock (it
//! writes into a static slot it claimed with a compare-and-swap, so a late answer can never
//! overwrite the next thread's); it saves and restores `errno`; it never panics.

use std::sync::atomic::{AtomicI32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::thread;
use crate::unwind::{self, MAX_DEPTH};

/// How long a thread gets to answer before it is listed without a stack.
pub const ANSWER_WAIT: Duration = Duration::from_millis(100);

/// One thread of the process as the dump saw it.
#[derive(Debug, Clone)]
pub struct ThreadDump {
    /// The kernel's thread id.
    pub tid: i32,
    /// The thread's name (`/proc/self/task/<tid>/comm`).
    pub name: String,
    /// Return addresses, leaf first; `None` when the thread did not answer.
    pub stack: Option<Vec<u64>>,
}

/// The slot is free.
const IDLE: u8 = 0;
/// A thread was asked and has not begun to answer.
const ASKED: u8 = 1;
/// The asked thread's handler is writing.
const WRITING: u8 = 2;
/// The answer is in the slot.
const ANSWERED: u8 = 3;

static STATE: AtomicU8 = AtomicU8::new(IDLE);
static TARGET: AtomicI32 = AtomicI32::new(0);
static DEPTH: AtomicUsize = AtomicUsize::new(0);
static FRAMES: [AtomicU64; MAX_DEPTH] = [const { AtomicU64::new(0) }; MAX_DEPTH];
/// The signal the handler is installed for (0: not yet).
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// Serializes requesters.
static REQUEST: Mutex<()> = Mutex::new(());

/// Every thread of the process but the harness's own, with its current stack. Call from a
/// harness thread; takes about [`ANSWER_WAIT`] per thread that does not answer.
pub fn dump() -> Result<Vec<ThreadDump>, String> {
    let _one_at_a_time = REQUEST.lock().unwrap_or_else(|e| e.into_inner());
    let signal = install()?;
    let me = thread::gettid();
    let mut tids: Vec<i32> = std::fs::read_dir("/proc/self/task")
        .map_err(|e| format!("cannot list threads: {e}"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&tid| tid != me && !thread::is_harness_tid(tid))
        .collect();
    tids.sort_unstable();
    Ok(tids
        .into_iter()
        .map(|tid| ThreadDump {
            tid,
            name: thread_name(tid),
            stack: ask(tid, signal),
        })
        .collect())
}

fn thread_name(tid: i32) -> String {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        .map(|s| s.trim_end_matches('\n').to_owned())
        .unwrap_or_default()
}

/// Ask thread `tid` for its stack; `None` when it has exited or did not answer in time.
fn ask(tid: i32, signal: i32) -> Option<Vec<u64>> {
    TARGET.store(tid, Ordering::Release);
    STATE.store(ASKED, Ordering::Release);
    // SAFETY: tgkill with our own pid, a thread id and a signal whose handler is installed.
    let sent = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, signal) } == 0;
    let deadline = Instant::now() + ANSWER_WAIT;
    let answered = sent
        && loop {
            match STATE.load(Ordering::Acquire) {
                ANSWERED => break true,
                // Being written: the answer is microseconds away.
                WRITING => std::thread::yield_now(),
                _ if Instant::now() >= deadline => {
                    // Take the request back unless the handler has just claimed it.
                    if STATE
                        .compare_exchange(ASKED, IDLE, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        break false;
                    }
                }
                _ => std::thread::sleep(Duration::from_micros(50)),
            }
        };
    let stack = answered.then(|| {
        let depth = DEPTH.load(Ordering::Acquire).min(MAX_DEPTH);
        FRAMES[..depth]
            .iter()
            .map(|f| f.load(Ordering::Relaxed))
            .collect()
    });
    TARGET.store(0, Ordering::Release);
    STATE.store(IDLE, Ordering::Release);
    stack
}

/// Install the handler on the first real-time signal from `SIGRTMIN + 6` that the program
/// leaves at its default action; returns it.
fn install() -> Result<i32, String> {
    let installed = SIGNAL.load(Ordering::Acquire);
    if installed != 0 {
        return Ok(installed);
    }
    let signal = crate::sys::install_on_free_rt_signal(6, on_signal as *const () as usize)
        .ok_or("no free real-time signal to ask threads for their stacks")?;
    SIGNAL.store(signal, Ordering::Release);
    Ok(signal)
}

/// The handler: the asked thread writes its interrupted stack into the slot.
extern "C" fn on_signal(
    _sig: libc::c_int,
    _info: *mut libc::siginfo_t,
    ucontext: *mut libc::c_void,
) {
    // SAFETY: __errno_location returns this thread's errno slot, always valid.
    let errno = unsafe { *libc::__errno_location() };
    if TARGET.load(Ordering::Acquire) == thread::gettid()
        && STATE
            .compare_exchange(ASKED, WRITING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    {
        let mut frames = [0u64; MAX_DEPTH];
        // SAFETY: `ucontext` is the kernel's context for this SA_SIGINFO delivery.
        let regs = unsafe { unwind::regs_from_ucontext(ucontext) };
        // SAFETY: `regs` describe this very thread (the one interrupted), and the bounds are
        // its recorded stack.
        let (depth, _) = unsafe { unwind::walk_if_room(regs, thread::stack_bounds(), &mut frames) };
        for (slot, &f) in FRAMES.iter().zip(&frames[..depth]) {
            slot.store(f, Ordering::Relaxed);
        }
        DEPTH.store(depth, Ordering::Release);
        STATE.store(ANSWERED, Ordering::Release);
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_thread_answers_with_its_own_stack() {
        crate::modules::start();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let parked = std::thread::Builder::new()
            .name("parked-one".into())
            .spawn(move || {
                crate::thread::record_stack_bounds();
                let _ = rx.recv();
            })
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let dump = std::thread::spawn(dump).join().unwrap().unwrap();
        let t = dump
            .iter()
            .find(|t| t.name == "parked-one")
            .expect("the parked thread is listed by name");
        let stack = t.stack.as_ref().expect("it answered");
        assert!(stack.len() >= 3, "a real stack: {stack:x?}");
        drop(tx);
        parked.join().unwrap();
    }
}
