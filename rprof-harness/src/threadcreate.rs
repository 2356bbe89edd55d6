//! The thread-creation profile (Go's `threadcreate`): the stacks that created threads, one count
//! per `pthread_create` that succeeded.
//!
//! Recorded by the preload's `pthread_create` interposer on the creating thread, outside any
//! signal handler or allocator, so it may allocate and lock. A forked child never records (the
//! preload stops it before it could), so a lock held by a thread that did not survive the fork
//! is never waited for.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::unwind::{self, MAX_DEPTH};

static ENABLED: AtomicBool = AtomicBool::new(false);
static STACKS: Mutex<Option<HashMap<Vec<u64>, u64>>> = Mutex::new(None);

/// What the thread-creation profiler collected: creating stacks (return addresses, leaf first,
/// the harness's own frames left off) with how many threads each created.
#[derive(Debug, Default)]
pub struct ThreadCreateData {
    /// Threads created per stack.
    pub stacks: HashMap<Vec<u64>, u64>,
}

/// Start counting thread creations.
pub fn start() {
    *STACKS.lock().unwrap_or_else(|e| e.into_inner()) = Some(HashMap::new());
    ENABLED.store(true, Ordering::Release);
}

/// Whether creations are being counted.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Acquire)
}

/// Stop counting and hand over what was counted.
pub fn stop() -> ThreadCreateData {
    ENABLED.store(false, Ordering::Release);
    let stacks = STACKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or_default();
    ThreadCreateData { stacks }
}

/// Stop counting in a forked child, without touching the table (another thread of the parent
/// may have held its lock at the fork).
pub fn stop_in_forked_child() {
    ENABLED.store(false, Ordering::Release);
}

/// The calling thread created a thread: count its stack.
#[inline(never)]
pub fn record_creation() {
    if !enabled() {
        return;
    }
    let mut frames = [0u64; MAX_DEPTH];
    let depth = unwind::capture_current(0, &mut frames);
    let skip = frames[..depth]
        .iter()
        .take_while(|&&f| crate::maps::is_harness_code(f))
        .count();
    let stack = &frames[skip..depth];
    let mut table = STACKS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(map) = table.as_mut() {
        match map.get_mut(stack) {
            Some(n) => *n += 1,
            None => {
                map.insert(stack.to_vec(), 1);
            }
        }
    }
}
