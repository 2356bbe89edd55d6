//! The runtime API, rprof's counterpart of Go's `runtime/pprof`: profile a region of the running
//! program and get a symbolized, self-contained pprof profile back.
//!
//! Works with or without `cargo rprof`. Without it, CPU profiling samples every thread that
//! exists when it starts and, within 10 ms, every thread created later; the heap profile is
//! available when allocations reach the profiler through [`crate::ProfiledAlloc`]. Under
//! `cargo rprof` the heap, block and mutex profiles come from the preload library's profilers
//! when they are on.
//!
//! ```no_run
//! let cpu = rprof_harness::pprof::start_cpu_profile(100)?;
//! // ... the code to profile ...
//! cpu.stop_to_file("cpu.prof".as_ref())?;
//! # Ok::<(), rprof_harness::pprof::ProfileError>(())
//! ```

use std::ffi::{c_char, c_int, CString};
use std::path::{Path, PathBuf};

use rprof_core::symbolize::Symbolizer;
use rprof_core::{codec, edit, Profile};

use crate::{cpu, maps, mem, raw, thread};

/// Why a profile could not be started, stopped or written.
#[derive(Debug)]
pub enum ProfileError {
    /// A CPU profile is already being collected in this process (by this API or by
    /// `cargo rprof --cpuprofile`); as in Go, only one at a time.
    CpuInUse,
    /// `stop` without a running CPU profile.
    CpuNotRunning,
    /// The rate is not in 1..=1_000_000 Hz.
    BadRate(u32),
    /// The named profiler is not on in this process.
    NotActive(&'static str),
    /// The OS refused something (a timer, a signal handler, memory).
    Os(String),
    /// A profile could not be read or written.
    Profile(rprof_core::Error),
}

impl std::fmt::Display for ProfileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProfileError::CpuInUse => f.write_str("cpu profiling already in use"),
            ProfileError::CpuNotRunning => f.write_str("cpu profiling is not running"),
            ProfileError::BadRate(hz) => {
                write!(f, "bad cpu profile rate {hz} Hz (use 1..=1000000)")
            }
            ProfileError::NotActive(what) => write!(
                f,
                "the {what} profiler is not on (run under `cargo rprof --{what}profile`{})",
                if *what == "memory" {
                    ", or allocate through ProfiledAlloc"
                } else {
                    ""
                }
            ),
            ProfileError::Os(e) => f.write_str(e),
            ProfileError::Profile(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ProfileError {}

impl From<cpu::CpuError> for ProfileError {
    fn from(e: cpu::CpuError) -> Self {
        match e {
            cpu::CpuError::AlreadyRunning => ProfileError::CpuInUse,
            cpu::CpuError::NotRunning => ProfileError::CpuNotRunning,
            cpu::CpuError::BadRate(hz) => ProfileError::BadRate(hz),
            cpu::CpuError::Os(e) => ProfileError::Os(e),
        }
    }
}

impl From<rprof_core::Error> for ProfileError {
    fn from(e: rprof_core::Error) -> Self {
        ProfileError::Profile(e)
    }
}

/// A CPU profile being collected; stop it to get the profile.
#[derive(Debug)]
#[must_use = "a CPU profile runs until stopped"]
pub struct CpuProfile {
    _private: (),
}

/// Start a CPU profile of the whole process at `hz` samples per CPU-second per thread.
/// Fails with [`ProfileError::CpuInUse`] when one is already running.
pub fn start_cpu_profile(hz: u32) -> Result<CpuProfile, ProfileError> {
    if hz == 0 || hz > 1_000_000 {
        return Err(ProfileError::BadRate(hz));
    }
    if preload_cpu_busy() {
        return Err(ProfileError::CpuInUse);
    }
    crate::modules::start();
    cpu::start_in_process(hz)?;
    Ok(CpuProfile { _private: () })
}

impl CpuProfile {
    /// Stop and return the symbolized profile.
    pub fn stop(self) -> Result<Profile, ProfileError> {
        stop_cpu_profile()
    }

    /// Stop and write the symbolized profile to `path` (gzip pprof).
    pub fn stop_to_file(self, path: &Path) -> Result<(), ProfileError> {
        let profile = self.stop()?;
        Ok(codec::write_file(path, &profile)?)
    }
}

/// Stop the running CPU profile and return it, symbolized. Fails with
/// [`ProfileError::CpuNotRunning`] when none is running.
pub fn stop_cpu_profile() -> Result<Profile, ProfileError> {
    let data = cpu::stop()?;
    let raw = thread::with_harness_guard(|| raw::cpu_profile(&data, &maps::profile_objects()));
    Ok(symbolize(&raw, None))
}

/// A CPU profile of the next `duration` at `hz` samples per CPU-second, symbolized; what the
/// live `profile?seconds=N` endpoint serves. While a CPU profile already runs in this process
/// (`cargo rprof run --cpuprofile`, or [`start_cpu_profile`]), it is the difference of two
/// snapshots of that one (at its rate); otherwise one is started and stopped around the wait.
pub fn profile_cpu_for(duration: std::time::Duration, hz: u32) -> Result<Profile, ProfileError> {
    if cpu::is_running() {
        let before = cpu::snapshot()?;
        std::thread::sleep(duration);
        let after = cpu::snapshot()?;
        let delta = cpu_delta(before, after);
        let raw = thread::with_harness_guard(|| raw::cpu_profile(&delta, &maps::profile_objects()));
        return Ok(symbolize(&raw, None));
    }
    let running = start_cpu_profile(hz)?;
    std::thread::sleep(duration);
    running.stop()
}

/// `after - before` of one running CPU profile.
fn cpu_delta(before: cpu::CpuData, mut after: cpu::CpuData) -> cpu::CpuData {
    for (stack, periods) in &mut after.stacks {
        *periods -= before.stacks.get(stack).copied().unwrap_or(0).min(*periods);
    }
    after.stacks.retain(|_, periods| *periods > 0);
    after.start = before.start.map(|t| t + before.duration);
    after.duration = after.duration.saturating_sub(before.duration);
    after.lost -= before.lost.min(after.lost);
    after.in_harness -= before.in_harness.min(after.in_harness);
    after
}

/// The heap profile now (allocations so far, and what is live), symbolized.
pub fn heap_profile() -> Result<Profile, ProfileError> {
    let raw = running_profile(RAW_HEAP, "memory")?;
    Ok(symbolize(&raw, Some(edit::is_allocator_frame)))
}

/// The raw profile of `kind` from the profiler that runs in this process: the preload's when
/// there is a preload to ask, else this copy's own (in-process, or inside the preload itself).
fn running_profile(kind: c_int, what: &'static str) -> Result<Profile, ProfileError> {
    match preload_raw(kind)? {
        Some(raw) => Ok(raw),
        None => raw::own_profile(kind).ok_or(ProfileError::NotActive(what)),
    }
}

/// Start sampling allocations in this process at `rate` bytes per sample (1 = every
/// allocation, 0 = 512 KiB). Only allocations through [`crate::ProfiledAlloc`] reach it
/// without `cargo rprof`.
pub fn start_heap_profile(rate: u64) -> Result<(), ProfileError> {
    crate::modules::start();
    mem::start(rate).map_err(|e| ProfileError::Os(e.to_string()))
}

/// The block profile so far, symbolized (under `cargo rprof --blockprofile`).
pub fn block_profile() -> Result<Profile, ProfileError> {
    let raw = running_profile(RAW_BLOCK, "block")?;
    Ok(symbolize(&raw, Some(edit::is_sync_frame)))
}

/// The mutex profile so far, symbolized (under `cargo rprof --mutexprofile`).
pub fn mutex_profile() -> Result<Profile, ProfileError> {
    let raw = running_profile(RAW_MUTEX, "mutex")?;
    Ok(symbolize(&raw, Some(edit::is_sync_frame)))
}

/// Write [`heap_profile`] to `path`.
pub fn write_heap_profile(path: &Path) -> Result<(), ProfileError> {
    Ok(codec::write_file(path, &heap_profile()?)?)
}

/// Write [`block_profile`] to `path`.
pub fn write_block_profile(path: &Path) -> Result<(), ProfileError> {
    Ok(codec::write_file(path, &block_profile()?)?)
}

/// Write [`mutex_profile`] to `path`.
pub fn write_mutex_profile(path: &Path) -> Result<(), ProfileError> {
    Ok(codec::write_file(path, &mutex_profile()?)?)
}

/// One symbolizer for the process, and the vDSO copy it reads: binaries are mapped and
/// indexed once, so a live endpoint's hundredth profile costs what its first one's lookups
/// cost, not a reload of the program's DWARF.
static SYMBOLIZER: std::sync::Mutex<Option<(Symbolizer, Option<PathBuf>)>> =
    std::sync::Mutex::new(None);

/// Symbolize in-process (the binaries are the ones running), trimming leaf frames `trim`
/// matches.
pub(crate) fn symbolize(raw: &Profile, trim: Option<fn(&str) -> bool>) -> Profile {
    thread::with_harness_guard(|| {
        let symbolized = with_symbolizer(|symbolizer, vdso| {
            let resolve = |filename: &str, _: &str| {
                (filename == rprof_core::VDSO_MAPPING)
                    .then(|| vdso.cloned())
                    .flatten()
            };
            symbolizer.symbolize(raw, &resolve).profile
        });
        let trimmed = match trim {
            Some(trim) => edit::trim_leaf_frames(&symbolized, trim),
            None => symbolized,
        };
        rprof_core::labels::apply(&trimmed, None)
    })
}

/// Run `f` with the process's symbolizer and its vDSO image path (kept once, in the temporary
/// directory: the vDSO is no file).
pub(crate) fn with_symbolizer<R>(f: impl FnOnce(&mut Symbolizer, Option<&PathBuf>) -> R) -> R {
    let mut cached = SYMBOLIZER.lock().unwrap_or_else(|e| e.into_inner());
    let (symbolizer, vdso) = cached.get_or_insert_with(|| {
        (
            Symbolizer::new(),
            maps::keep_vdso(&std::env::temp_dir()).ok(),
        )
    });
    f(symbolizer, vdso.as_ref())
}

use raw::{RAW_BLOCK, RAW_HEAP, RAW_MUTEX};

type CpuBusy = extern "C" fn() -> bool;
type WriteRaw = extern "C" fn(c_int, *const c_char) -> c_int;

fn preload_symbol(name: &std::ffi::CStr) -> usize {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name is always valid to call.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) as usize }
}

/// Whether the preload library's CPU profiler is running in this process.
fn preload_cpu_busy() -> bool {
    if cfg!(feature = "preload") {
        return cpu::is_running();
    }
    match preload_symbol(c"rprof_harness_cpu_busy") {
        0 => false,
        f => {
            // SAFETY: the preload exports this symbol with this signature.
            let busy = unsafe { std::mem::transmute::<usize, CpuBusy>(f) };
            busy()
        }
    }
}

/// The preload's raw profile of `kind`, or `None` when there is no preload or that profiler is
/// off there.
fn preload_raw(kind: c_int) -> Result<Option<Profile>, ProfileError> {
    if cfg!(feature = "preload") {
        // This is the preload library: its profilers are this crate's own.
        return Ok(None);
    }
    let f = preload_symbol(c"rprof_harness_write_raw");
    if f == 0 {
        return Ok(None);
    }
    // SAFETY: the preload exports this symbol with this signature.
    let write_raw = unsafe { std::mem::transmute::<usize, WriteRaw>(f) };
    let path = std::env::temp_dir().join(format!(
        "rprof-raw-{}-{}-{kind}.pb.gz",
        std::process::id(),
        thread::gettid()
    ));
    let c_path = CString::new(path.to_string_lossy().into_owned())
        .map_err(|e| ProfileError::Os(e.to_string()))?;
    match write_raw(kind, c_path.as_ptr()) {
        0 => {
            let profile = codec::read_file(&path);
            let _ = std::fs::remove_file(&path);
            Ok(Some(profile?))
        }
        1 => Ok(None),
        _ => Err(ProfileError::Os(format!(
            "the preload library could not write {}",
            PathBuf::from(&path).display()
        ))),
    }
}
