//! The target-runner role: cargo starts every test and bench binary as
//! `cargo-rprof __rprof-runner BINARY ARGS...`.
//!
//! The runner keeps a copy of the binary (cargo may rebuild over the original before we
//! symbolize), records the run in the session manifest, and replaces itself with the binary
//! under the preload library. Because it `exec`s, stdio, signals, the pid and the exit status are
//! the binary's own, exactly as without rprof.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::session::{self, ProfileKind};

/// The first argument that selects the runner role.
pub const RUNNER_ARG: &str = "__rprof-runner";

/// Run `BINARY ARGS...` under the profilers named in the environment. Returns only on failure.
pub fn run(args: &[OsString]) -> i32 {
    let Some((binary, rest)) = args.split_first() else {
        eprintln!("error: rprof runner: no binary to run");
        return 101;
    };
    let mut cmd = match std::env::var_os(session::CHAIN_RUNNER_ENV).filter(|r| !r.is_empty()) {
        Some(chain) => {
            let chain = chain.to_string_lossy().into_owned();
            let mut words = chain.split_whitespace();
            let mut c = Command::new(words.next().unwrap_or_default());
            c.args(words).arg(binary);
            c
        }
        None => Command::new(binary),
    };
    cmd.args(rest);
    // nextest lists a binary's tests by running it with `--list` first: not a test run.
    let listing = std::env::var_os("NEXTEST_TEST_PHASE").is_some_and(|p| p == "list");
    match std::env::var_os(session::USER_WRAPPER_ENV) {
        Some(w) if !w.is_empty() => cmd.env("RUSTC_WRAPPER", w),
        _ => cmd.env_remove("RUSTC_WRAPPER"),
    };
    if let Some(dir) = std::env::var_os(session::SESSION_ENV).filter(|_| !listing) {
        let kinds: Vec<ProfileKind> = ProfileKind::ALL
            .into_iter()
            .filter(|k| std::env::var_os(k.enabled_env()).is_some())
            .collect();
        let prepared = std::env::var_os(session::PRELOAD_ENV)
            .ok_or_else(|| std::io::Error::other("the preload library path is not set"))
            .and_then(|preload| {
                prepare(
                    &mut cmd,
                    Path::new(binary),
                    Path::new(&dir),
                    &preload,
                    &kinds,
                )
            });
        if let Err(e) = prepared {
            eprintln!(
                "warning: rprof: {} runs unprofiled: {e}",
                binary.to_string_lossy()
            );
        }
    }
    let e = cmd.exec();
    eprintln!("error: rprof: cannot run {}: {e}", binary.to_string_lossy());
    101
}

/// Keep a copy of `binary`, record the run as the process `pid` (this one, which will exec it),
/// and point the preload at this run's raw files of `kinds`.
fn prepare(
    cmd: &mut Command,
    binary: &Path,
    dir: &Path,
    preload: &OsStr,
    kinds: &[ProfileKind],
) -> std::io::Result<()> {
    record_run(
        binary,
        dir,
        std::process::id(),
        session::TestIdentity::from_nextest_env(),
    )?;
    inject(cmd, dir, std::process::id(), preload, kinds);
    Ok(())
}

/// Keep a copy of `binary` in the session `dir` and record it as run by `pid` (for `test`,
/// when a process-per-test runner named it).
pub fn record_run(
    binary: &Path,
    dir: &Path,
    pid: u32,
    test: Option<session::TestIdentity>,
) -> std::io::Result<()> {
    let kept = keep_binary(binary, dir)?;
    let original = std::fs::canonicalize(binary).unwrap_or_else(|_| binary.to_path_buf());
    let record = session::RunRecord {
        pid,
        original,
        kept,
        test,
    };
    let mut manifest = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.join(session::MANIFEST))?;
    // One write of one short line: appends from concurrent runners do not interleave.
    manifest.write_all(record.to_line().as_bytes())?;
    Ok(())
}

/// Copy `binary` into the session `dir` once per distinct file: runs of the same binary (a
/// process per test under nextest: thousands) share one copy, so it is stored and symbolized
/// once. The copy is named by the file's identity (device, inode, size, modification time),
/// which changes when cargo rebuilds it, and made under a temporary name then renamed, so
/// concurrent runners never see half a copy.
fn keep_binary(binary: &Path, dir: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let name = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "binary".into());
    let meta = std::fs::metadata(binary)?;
    let identity = format!(
        "{:x}-{:x}-{:x}-{:x}.{:x}",
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec()
    );
    let kept = dir.join("bin").join(format!("{name}.{identity}"));
    if kept.exists() {
        return Ok(kept);
    }
    let partial = dir
        .join("bin")
        .join(format!(".{name}.{identity}.{}", std::process::id()));
    std::fs::copy(binary, &partial)?;
    std::fs::rename(&partial, &kept).inspect_err(|_| {
        let _ = std::fs::remove_file(&partial);
    })?;
    Ok(kept)
}

/// Set `cmd` to run under `preload` (before the user's own `LD_PRELOAD`), writing the raw
/// profiles of `kinds` of the process `pid` into the session `dir`.
pub fn inject(cmd: &mut Command, dir: &Path, pid: u32, preload: &OsStr, kinds: &[ProfileKind]) {
    let preload = match std::env::var_os("LD_PRELOAD").filter(|p| !p.is_empty()) {
        Some(existing) => {
            let mut p = preload.to_os_string();
            p.push(":");
            p.push(existing);
            p
        }
        None => preload.to_os_string(),
    };
    cmd.env("LD_PRELOAD", preload);
    for &kind in kinds {
        cmd.env(kind.output_env(), raw_path(dir, pid, kind));
    }
}

/// Where the run with `pid` writes its raw profile of `kind`.
pub fn raw_path(dir: &Path, pid: u32, kind: ProfileKind) -> PathBuf {
    dir.join("raw").join(format!("{pid}.{}.pb.gz", kind.name()))
}
