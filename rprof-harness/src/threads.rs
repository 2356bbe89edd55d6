//! The thread registry: a serial number for every thread the program creates, who created it
//! and from where, when it ended and what it was called — what the labels of a sample (`thread`,
//! and the `test` a spawned thread inherits) are computed from after the run.
//!
//! A sample carries only its thread's serial, read from a const thread-local (async-signal-safe,
//! no allocation). Everything else is recorded outside handlers and allocators: creation by the
//! preload's `pthread_create` interposer on the creating thread, the start on the new thread
//! before its start routine, the end after it returns. Those paths may lock and allocate. A
//! forked child stops recording (another thread of the parent may have held the lock at the
//! fork), and never writes profiles anyway.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::unwind::MAX_DEPTH;

/// The serial of a thread the registry does not know (created before the harness started, or
/// not through `pthread_create`).
pub const UNKNOWN: u32 = 0;
/// The serial of the main thread.
pub const MAIN: u32 = 1;

static ENABLED: AtomicBool = AtomicBool::new(false);
static NEXT_SERIAL: AtomicU32 = AtomicU32::new(MAIN + 1);
static NEXT_EXIT: AtomicU64 = AtomicU64::new(1);
static RECORDS: Mutex<Vec<ThreadRecord>> = Mutex::new(Vec::new());

/// What the registry knows of one thread.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadRecord {
    /// Its serial (1 is the main thread).
    pub serial: u32,
    /// The serial of the thread that created it ([`UNKNOWN`] for the main thread).
    pub creator: u32,
    /// Its kernel id, once it started.
    pub tid: i32,
    /// The order in which it ended among all threads (1 first), 0 while it runs.
    pub exit_order: u64,
    /// Its name (the kernel's, at most 15 bytes), read when it ended or when profiles were written.
    pub name: String,
    /// Where it was created: the creating thread's stack, leaf first, harness frames left off.
    pub creation: Vec<u64>,
}

/// The calling thread's serial. Async-signal-safe.
#[inline]
pub fn current() -> u32 {
    crate::tls::block().serial.get()
}

/// Start the registry on the main thread (the preload's constructor).
pub fn start() {
    crate::tls::block().serial.set(MAIN);
    let record = ThreadRecord {
        serial: MAIN,
        creator: UNKNOWN,
        tid: crate::thread::gettid(),
        ..Default::default()
    };
    lock().push(record);
    ENABLED.store(true, Ordering::Release);
}

/// Stop recording in a forked child, without touching the records (their lock may be held by a
/// thread that did not survive the fork).
pub fn stop_in_forked_child() {
    ENABLED.store(false, Ordering::Release);
}

fn lock() -> std::sync::MutexGuard<'static, Vec<ThreadRecord>> {
    RECORDS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The calling thread is about to create a thread: give it a serial and record where it was
/// created. Returns the serial to pass to [`thread_started`], or [`UNKNOWN`] when off.
#[inline(never)]
pub fn creating() -> u32 {
    if !ENABLED.load(Ordering::Acquire) {
        return UNKNOWN;
    }
    let serial = NEXT_SERIAL.fetch_add(1, Ordering::Relaxed);
    let mut frames = [0u64; MAX_DEPTH];
    let creation = crate::sync::own_stack(&mut frames).to_vec();
    lock().push(ThreadRecord {
        serial,
        creator: current(),
        creation,
        ..Default::default()
    });
    serial
}

/// The thread created with `serial` did not start after all (`pthread_create` failed).
pub fn not_created(serial: u32) {
    if serial != UNKNOWN {
        lock().retain(|r| r.serial != serial);
    }
}

/// Called first thing on a new thread with the serial [`creating`] gave it.
pub fn thread_started(serial: u32) {
    if serial == UNKNOWN {
        return;
    }
    crate::tls::block().serial.set(serial);
    let tid = crate::thread::gettid();
    if ENABLED.load(Ordering::Acquire) {
        if let Some(r) = lock().iter_mut().rev().find(|r| r.serial == serial) {
            r.tid = tid;
        }
    }
}

/// Called when the calling thread's start routine has returned: note the order of its end and
/// its name.
pub fn thread_ending() {
    let serial = current();
    if serial == UNKNOWN || !ENABLED.load(Ordering::Acquire) {
        return;
    }
    let order = NEXT_EXIT.fetch_add(1, Ordering::Relaxed);
    let name = own_name();
    if let Some(r) = lock().iter_mut().rev().find(|r| r.serial == serial) {
        r.exit_order = order;
        r.name = name;
    }
}

/// The calling thread's kernel name.
fn own_name() -> String {
    let mut buf = [0u8; 16];
    // SAFETY: PR_GET_NAME writes at most 16 bytes, NUL included, into `buf`.
    if unsafe { libc::prctl(libc::PR_GET_NAME, buf.as_mut_ptr()) } != 0 {
        return String::new();
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// Every record so far, with the names of threads still running read now. Allocates.
pub fn snapshot() -> Vec<ThreadRecord> {
    let mut records = lock().clone();
    for r in records
        .iter_mut()
        .filter(|r| r.exit_order == 0 && r.tid > 0)
    {
        if let Ok(name) = std::fs::read_to_string(format!("/proc/self/task/{}/comm", r.tid)) {
            r.name = name.trim_end_matches('\n').to_owned();
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_recorded_with_creator_and_end_order() {
        crate::thread::record_stack_bounds();
        crate::thread::with_harness_guard(start);
        let serial = creating();
        assert!(serial > MAIN);
        let worker = std::thread::Builder::new()
            .name("worker-7".into())
            .spawn(move || {
                thread_started(serial);
                assert_eq!(current(), serial);
                thread_ending();
            })
            .unwrap();
        worker.join().unwrap();
        let records = snapshot();
        let r = records.iter().find(|r| r.serial == serial).unwrap();
        assert_eq!(r.creator, MAIN);
        assert_eq!(r.name, "worker-7");
        assert!(r.exit_order > 0 && r.tid > 0);
        assert!(!r.creation.is_empty());
        let main = records.iter().find(|r| r.serial == MAIN).unwrap();
        assert_eq!(main.exit_order, 0);
        assert!(!main.name.is_empty());
    }
}
