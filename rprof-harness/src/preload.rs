//! The LD_PRELOAD entry points: a load-time constructor, the exit-time writer and the
//! `pthread_create` interposer.
//!
//! Hazards, and how each is met:
//! - the constructor runs before `main` and before Rust's runtime: it only reads the
//!   environment, removes `RPROF_*` and `LD_PRELOAD` from it (so the test's children run
//!   unprofiled and cannot clobber our files) and starts the profilers;
//! - a forked child inherits the exit handler: the writer checks the pid it was started in, and
//!   an atfork handler stops sampling in the child;
//! - nothing here may unwind into C: panics are caught at each `extern "C"` boundary;
//! - `pthread_create` must behave exactly as libc's: we forward every argument and result, and
//!   only wrap the start routine so the new thread records its stack and arms its timer first.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::{cpu, maps, mem, modules, raw, survival, sync, thread, threads};

/// Settings read from the environment by the constructor.
struct Settings {
    cpu_profile: Option<PathBuf>,
    cpu_rate: u32,
    mem_profile: Option<PathBuf>,
    mem_rate: u64,
    block_profile: Option<PathBuf>,
    block_rate: u64,
    mutex_profile: Option<PathBuf>,
    mutex_fraction: u64,
    threadcreate_profile: Option<PathBuf>,
    /// Whether samples carry their thread (for the labels); `RPROF_LABELS=0` turns it off, to
    /// measure what labels cost.
    labels: bool,
    /// Whether SIGINT, SIGTERM and SIGHUP write the profiles before they end the process
    /// (`RPROF_WRITE_ON_SIGNAL=1`, set by `cargo rprof run`).
    write_on_signal: bool,
    /// Where to serve the live endpoints (`RPROF_HTTP`, from `cargo rprof run --http`): the
    /// memory, block and mutex profilers then run whether or not their files are asked for.
    http: Option<String>,
    /// Serve beyond loopback, with a random token (`RPROF_HTTP_ALLOW_REMOTE=1`).
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    http_allow_remote: bool,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();
static PID: AtomicI32 = AtomicI32::new(0);

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

extern "C" fn init() {
    let _ = std::panic::catch_unwind(|| thread::with_harness_guard(start));
}

fn start() {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let settings = Settings {
        cpu_profile: env("RPROF_CPUPROFILE").map(PathBuf::from),
        cpu_rate: env("RPROF_CPUPROFILERATE")
            .and_then(|v| v.to_str()?.parse().ok())
            .unwrap_or(100),
        mem_profile: env("RPROF_MEMPROFILE").map(PathBuf::from),
        mem_rate: env("RPROF_MEMPROFILERATE")
            .and_then(|v| v.to_str()?.parse().ok())
            .unwrap_or(0),
        block_profile: env("RPROF_BLOCKPROFILE").map(PathBuf::from),
        block_rate: env("RPROF_BLOCKPROFILERATE")
            .and_then(|v| v.to_str()?.parse().ok())
            .unwrap_or(1),
        mutex_profile: env("RPROF_MUTEXPROFILE").map(PathBuf::from),
        mutex_fraction: env("RPROF_MUTEXPROFILEFRACTION")
            .and_then(|v| v.to_str()?.parse().ok())
            .unwrap_or(1),
        threadcreate_profile: env("RPROF_THREADCREATEPROFILE").map(PathBuf::from),
        labels: env("RPROF_LABELS").is_none_or(|v| v != "0"),
        write_on_signal: env("RPROF_WRITE_ON_SIGNAL").is_some_and(|v| v == "1"),
        http: env("RPROF_HTTP")
            .filter(|_| cfg!(feature = "http"))
            .map(|v| v.to_string_lossy().into_owned()),
        http_allow_remote: env("RPROF_HTTP_ALLOW_REMOTE").is_some_and(|v| v == "1"),
    };
    scrub_environment();
    if settings.http.is_none()
        && settings.cpu_profile.is_none()
        && settings.mem_profile.is_none()
        && settings.block_profile.is_none()
        && settings.mutex_profile.is_none()
        && settings.threadcreate_profile.is_none()
    {
        return;
    }
    // SAFETY: getpid has no preconditions.
    PID.store(unsafe { libc::getpid() }, Ordering::Relaxed);
    create_exit_key();
    thread::record_stack_bounds();
    // Before any handler is installed: they all run on alternate stacks from now on.
    thread::use_alt_stacks();
    let http = settings.http.is_some();
    if settings.labels || settings.threadcreate_profile.is_some() || http {
        threads::start();
    }
    modules::start();
    if settings.cpu_profile.is_some() {
        if let Err(e) = cpu::start(settings.cpu_rate) {
            eprintln!("rprof: {e}");
        }
    }
    if settings.mem_profile.is_some() || http {
        if let Err(e) = mem::start(settings.mem_rate) {
            eprintln!("rprof: {e}");
        }
    }
    if settings.block_profile.is_some() || http {
        if let Err(e) = sync::start_block(settings.block_rate) {
            eprintln!("rprof: {e}");
        }
    }
    if settings.mutex_profile.is_some() || http {
        if let Err(e) = sync::start_mutex(settings.mutex_fraction) {
            eprintln!("rprof: {e}");
        }
    }
    #[cfg(feature = "http")]
    if let Some(addr) = &settings.http {
        serve(addr, settings.http_allow_remote, settings.cpu_rate);
    }
    let write_on_signal = settings.write_on_signal;
    let _ = SETTINGS.set(settings);
    let writers = survival::Writers {
        write: write_profiles_once,
        checkpoint: write_checkpoints,
    };
    if let Err(e) = survival::start(writers, write_on_signal) {
        eprintln!("rprof: profiles will not be kept if a signal or a crash ends the program: {e}");
    }
    // SAFETY: registering plain extern "C" functions without arguments.
    unsafe {
        libc::atexit(at_exit);
        libc::pthread_atfork(
            Some(mem::before_fork),
            Some(mem::after_fork),
            Some(in_forked_child),
        );
    }
}

/// Start the live endpoints on `addr` (beyond loopback, with a token, when `allow_remote`;
/// `profile` requests sample
/// at `cpu_rate`), saying where on stderr;
/// `cargo rprof run` reads that line to tell the user.
#[cfg(feature = "http")]
fn serve(addr: &str, allow_remote: bool, cpu_rate: u32) {
    let mut builder = crate::http::Builder::new(addr).cpu_rate(cpu_rate);
    if allow_remote {
        builder = builder.allow_remote(None);
    }
    match builder.start() {
        Ok(server) => eprintln!("rprof: serving live profiles at {}", server.url()),
        Err(e) => eprintln!("rprof: no live profiles: {e}"),
    }
}

/// Remove `LD_PRELOAD` and every `RPROF_*` variable from this process's environment.
fn scrub_environment() {
    let doomed: Vec<OsString> = std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| k == "LD_PRELOAD" || k.to_string_lossy().starts_with("RPROF_"))
        .collect();
    for k in doomed {
        std::env::remove_var(k);
    }
}

extern "C" fn in_forked_child() {
    mem::after_fork();
    threads::stop_in_forked_child();
    // The child has only the forking thread and no drain thread; it must not write our files.
    PID.store(0, Ordering::Relaxed);
}

extern "C" fn at_exit() {
    // SAFETY: getpid has no preconditions.
    if PID.load(Ordering::Relaxed) != unsafe { libc::getpid() } {
        return;
    }
    // Write from a thread of our own: glibc gives it a fresh malloc arena, so building the
    // files does not make glibc consolidate the program's millions of freed small blocks in the
    // main arena first (measured: ~290 ms at exit after freeing a 1M-entry map).
    let _ = std::panic::catch_unwind(|| {
        match thread::spawn_harness_thread(c"rprof-writer", || {
            let _ = std::panic::catch_unwind(write_profiles_once);
        }) {
            Ok(writer) => writer.join(),
            Err(_) => thread::with_harness_guard(write_profiles_once),
        }
    });
}

/// Nobody has started writing the profiles.
const UNWRITTEN: u8 = 0;
/// A thread is writing them.
const WRITING: u8 = 1;
/// They are written.
const WRITTEN: u8 = 2;
static WRITE_STATE: AtomicU8 = AtomicU8::new(UNWRITTEN);

/// Write the profiles unless another thread has: then wait (bounded) until it is done, so that
/// an `exit` during a signal's writing does not end the process under the writer.
fn write_profiles_once() {
    if WRITE_STATE
        .compare_exchange(UNWRITTEN, WRITING, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        write_profiles();
        WRITE_STATE.store(WRITTEN, Ordering::Release);
        return;
    }
    for _ in 0..6000 {
        if WRITE_STATE.load(Ordering::Acquire) == WRITTEN {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// One profile's data, taken for the final write or for a checkpoint.
enum Taken {
    Cpu(cpu::CpuData),
    Event(sync::EventData, &'static str),
    Threads(Vec<threads::ThreadRecord>),
    Mem(mem::MemData),
}

impl Taken {
    /// A number that changes when the data does (so unchanged data is not checkpointed again).
    fn fingerprint(&self) -> u64 {
        match self {
            Taken::Cpu(d) => d.stacks.values().sum::<u64>() + d.lost + d.notices.len() as u64,
            Taken::Event(d, _) => d.events.iter().fold(d.lost, |f, e| {
                f.wrapping_add(e.contentions)
                    .wrapping_add(e.delay_ns.wrapping_mul(31))
            }),
            Taken::Threads(records) => records.len() as u64,
            Taken::Mem(d) => d.buckets.iter().fold(d.lost, |f, b| {
                f.wrapping_add(b.allocs)
                    .wrapping_add(b.frees.wrapping_mul(1 << 32))
            }),
        }
    }

    /// The unsymbolized profile of the data.
    fn profile(&self, objects: &[maps::LoadedObject]) -> rprof_core::Profile {
        match self {
            Taken::Cpu(d) => raw::cpu_profile(d, objects),
            Taken::Event(d, what) => raw::event_profile(d, objects, what),
            Taken::Threads(records) => raw::threadcreate_profile(records, objects),
            Taken::Mem(d) => raw::mem_profile(d, objects, crate::alloc::wrapper_used()),
        }
    }
}

/// The data of every profile asked for, with its file and its name for messages: stopped for
/// good (`last`: everything stops first, so that building the files is not itself profiled), or
/// as it stands (a checkpoint).
fn take(settings: &Settings, last: bool) -> Vec<(&PathBuf, Taken, &'static str)> {
    let mut taken = Vec::new();
    if let Some(path) = &settings.cpu_profile {
        match if last { cpu::stop() } else { cpu::snapshot() } {
            Ok(data) => taken.push((path, Taken::Cpu(data), "cpu")),
            Err(e) if last => eprintln!("rprof: {e}"),
            Err(_) => {}
        }
    }
    if let Some(path) = &settings.block_profile {
        let data = if last {
            sync::stop_block()
        } else {
            sync::snapshot_block()
        };
        taken.push((path, Taken::Event(data, "block"), "block"));
    }
    if let Some(path) = &settings.mutex_profile {
        let data = if last {
            sync::stop_mutex()
        } else {
            sync::snapshot_mutex()
        };
        taken.push((path, Taken::Event(data, "mutex"), "mutex"));
    }
    if let Some(path) = &settings.mem_profile {
        if last {
            mem::stop();
        }
        taken.push((path, Taken::Mem(mem::snapshot()), "memory"));
    }
    if let Some(path) = &settings.threadcreate_profile {
        taken.push((path, Taken::Threads(threads::snapshot()), "thread-creation"));
    }
    taken
}

/// Fingerprints of the data last checkpointed, by profile; held while a checkpoint is written,
/// and by the final writer for good.
static CHECKPOINTS: Mutex<Vec<(&'static str, u64)>> = Mutex::new(Vec::new());

/// Write `profile` to `path`, fast (raw profiles are read back once), saying why not.
fn write_raw(path: &Path, profile: &rprof_core::Profile, what: &str) -> bool {
    let written =
        rprof_core::codec::write_file_packed(path, profile, rprof_core::codec::Packing::Fast);
    if let Err(e) = &written {
        eprintln!("rprof: cannot write the {what} profile: {e}");
    }
    written.is_ok()
}

fn write_profiles() {
    let Some(settings) = SETTINGS.get() else {
        return;
    };
    let _no_more_checkpoints = CHECKPOINTS.lock().unwrap_or_else(|e| e.into_inner());
    let taken = take(settings, true);
    let objects = maps::profile_objects();
    for (path, data, what) in &taken {
        let mut profile = data.profile(&objects);
        if let Some(sig) = survival::ending_signal() {
            let text = rprof_core::ended_by_signal_comment(sig);
            let id = profile.intern(&text);
            profile.comment.push(id);
        }
        if write_raw(path, &profile, what) {
            let _ = std::fs::remove_file(rprof_core::checkpoint_path(path));
        }
    }
    keep_vdso(settings);
}

/// Write a checkpoint of every profile whose data changed since the last one, beside its file
/// (see [`survival`]): what is left when the process is killed without a chance to write.
fn write_checkpoints() {
    let Some(settings) = SETTINGS.get() else {
        return;
    };
    let mut last = CHECKPOINTS.lock().unwrap_or_else(|e| e.into_inner());
    if WRITE_STATE.load(Ordering::Acquire) != UNWRITTEN {
        return;
    }
    let mut objects = None;
    let mut wrote = false;
    for (path, data, what) in take(settings, false) {
        let fingerprint = data.fingerprint();
        if last.contains(&(what, fingerprint)) {
            continue;
        }
        let objects = objects.get_or_insert_with(maps::profile_objects);
        let mut profile = data.profile(objects);
        let id = profile.intern(rprof_core::CHECKPOINT_COMMENT);
        profile.comment.push(id);
        if write_raw(&rprof_core::checkpoint_path(path), &profile, what) {
            last.retain(|(w, _)| *w != what);
            last.push((what, fingerprint));
            wrote = true;
        }
    }
    if wrote && !VDSO_KEPT.swap(true, Ordering::Relaxed) {
        keep_vdso(settings);
    }
}

/// Whether the vDSO's image was kept beside the checkpoints.
static VDSO_KEPT: AtomicBool = AtomicBool::new(false);

/// The vDSO is no file: keep its image beside the profiles (once per folder), for
/// symbolization.
fn keep_vdso(settings: &Settings) {
    let mut dirs: Vec<&Path> = [
        &settings.cpu_profile,
        &settings.mem_profile,
        &settings.block_profile,
        &settings.mutex_profile,
        &settings.threadcreate_profile,
    ]
    .into_iter()
    .filter_map(|p| p.as_deref()?.parent())
    .collect();
    dirs.dedup();
    for dir in dirs {
        let _ = maps::keep_vdso(dir);
    }
}

struct StartRoutine {
    start: extern "C" fn(*mut libc::c_void) -> *mut libc::c_void,
    arg: *mut libc::c_void,
    /// The new thread's serial in the thread registry.
    serial: u32,
}

extern "C" fn thread_trampoline(p: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: `p` is the Box<StartRoutine> leaked by our pthread_create, consumed once here.
    let routine = unsafe { Box::from_raw(p as *mut StartRoutine) };
    let slot = thread::with_harness_guard(|| {
        threads::thread_started(routine.serial);
        thread::record_stack_bounds();
        thread::give_alt_stack();
        cpu::thread_started_slot()
    });
    let _guard = ExitGuard::new(slot);
    (routine.start)(routine.arg)
}

/// The key whose destructor ends a thread's profiling however the thread ends: by returning
/// (the guard's drop does it first), by `pthread_exit` or by cancellation (which unwind past
/// this `extern "C"` frame without running its drops).
static EXIT_KEY: OnceLock<libc::pthread_key_t> = OnceLock::new();

/// Create [`EXIT_KEY`] (the constructor, before any thread of ours starts).
fn create_exit_key() {
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: `key` is valid for writes; the destructor has the signature pthread expects.
    if unsafe { libc::pthread_key_create(&mut key, Some(on_thread_exit)) } == 0 {
        let _ = EXIT_KEY.set(key);
    }
}

/// The key's value for a thread with timer slot `slot` (never null: null means "done").
fn exit_value(slot: Option<usize>) -> *mut libc::c_void {
    slot.map_or(usize::MAX, |s| s + 1) as *mut libc::c_void
}

extern "C" fn on_thread_exit(value: *mut libc::c_void) {
    let slot = match value as usize {
        usize::MAX => None,
        v => Some(v - 1),
    };
    let _ = std::panic::catch_unwind(|| thread_ended(slot));
}

/// Release what the thread held: its timer, its waiter slot; record its end.
fn thread_ended(slot: Option<usize>) {
    if let Some(slot) = slot {
        cpu::thread_exiting(slot);
    }
    sync::thread_exiting();
    thread::with_harness_guard(threads::thread_ending);
    thread::take_alt_stack();
}

/// Ends the thread's profiling when its start routine returns (or panics out of it), and
/// clears the exit key so the destructor does not do it again.
struct ExitGuard(Option<usize>);

impl ExitGuard {
    fn new(slot: Option<usize>) -> Self {
        if let Some(&key) = EXIT_KEY.get() {
            // SAFETY: a key we created; the value is an integer, never dereferenced.
            unsafe { libc::pthread_setspecific(key, exit_value(slot)) };
        }
        ExitGuard(slot)
    }
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        if let Some(&key) = EXIT_KEY.get() {
            // SAFETY: as above; null means the destructor will not run.
            unsafe { libc::pthread_setspecific(key, std::ptr::null_mut()) };
        }
        thread_ended(self.0);
    }
}

/// The interposed `pthread_create`: libc's, with the new thread armed for sampling first.
///
/// # Safety
/// Same contract as libc's `pthread_create`.
#[no_mangle]
pub unsafe extern "C" fn pthread_create(
    thread: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    start: extern "C" fn(*mut libc::c_void) -> *mut libc::c_void,
    arg: *mut libc::c_void,
) -> libc::c_int {
    let real = thread::real_pthread_create();
    // Every profiler needs the new thread's stack bounds, not only the CPU one.
    if SETTINGS.get().is_none() {
        // SAFETY: forwarding the caller's arguments unchanged.
        return unsafe { real(thread, attr, start, arg) };
    }
    // The program is becoming multi-threaded: the module watcher costs it nothing more now.
    modules::start_watcher();
    // Rust's runtime has installed its fault handlers by now: chain ours behind them.
    survival::chain_fault_handlers();
    let serial = std::panic::catch_unwind(|| thread::with_harness_guard(threads::creating))
        .unwrap_or(threads::UNKNOWN);
    let routine = Box::into_raw(Box::new(StartRoutine { start, arg, serial })) as *mut libc::c_void;
    // SAFETY: forwarding the caller's arguments, with our trampoline owning `routine`.
    let rc = unsafe { real(thread, attr, thread_trampoline, routine) };
    if rc != 0 {
        // SAFETY: no thread was created, so `routine` is still ours.
        drop(unsafe { Box::from_raw(routine as *mut StartRoutine) });
        let _ = std::panic::catch_unwind(|| {
            thread::with_harness_guard(|| threads::not_created(serial))
        });
    }
    rc
}

/// For the runtime API in the profiled program: whether this library's CPU profiler is running.
#[no_mangle]
pub extern "C" fn rprof_harness_cpu_busy() -> bool {
    crate::cpu::is_running()
}

/// For the runtime API: write the raw profile of `kind` (1 heap, 2 block, 3 mutex) to `path`.
/// Returns 0 on success, 1 when that profiler is off, 2 on a write error.
///
/// # Safety
/// `path` must be a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rprof_harness_write_raw(
    kind: libc::c_int,
    path: *const libc::c_char,
) -> libc::c_int {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: the caller passes a NUL-terminated string.
    let path = unsafe { std::ffi::CStr::from_ptr(path) };
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()));
    crate::raw::write_raw_for_api(kind, path)
}
