//! The target-runner role: cargo starts every test and bench binary as
//! `cargo-rprof __rprof-runner BINARY ARGS...`.
//!
//! The runner keeps a copy of the binary (cargo may rebuild over the original before we
//! symbolize), records the run in the session manifest, and replaces itself with the binary
//! under the preload library. Because it `exec`s, stdio, signals, the pid and the exit status are
//! the binary's own, exactly as without rprof.

use std::ffi::OsString;
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
    match std::env::var_os(session::USER_WRAPPER_ENV) {
        Some(w) if !w.is_empty() => cmd.env("RUSTC_WRAPPER", w),
        _ => cmd.env_remove("RUSTC_WRAPPER"),
    };
    if let Some(dir) = std::env::var_os(session::SESSION_ENV) {
        if let Err(e) = prepare(&mut cmd, Path::new(binary), Path::new(&dir)) {
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

/// Keep a copy of `binary`, record the run, and point the preload at this run's raw files.
fn prepare(cmd: &mut Command, binary: &Path, dir: &Path) -> std::io::Result<()> {
    let pid = std::process::id();
    let name = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "binary".into());
    let kept = dir.join("bin").join(format!("{name}.{pid}"));
    std::fs::copy(binary, &kept)?;
    let original = std::fs::canonicalize(binary).unwrap_or_else(|_| binary.to_path_buf());
    let record = session::RunRecord {
        pid,
        original,
        kept,
    };
    let mut manifest = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.join(session::MANIFEST))?;
    // One write of one short line: appends from concurrent runners do not interleave.
    manifest.write_all(record.to_line().as_bytes())?;
    let preload = std::env::var_os(session::PRELOAD_ENV)
        .ok_or_else(|| std::io::Error::other("the preload library path is not set"))?;
    let preload = match std::env::var_os("LD_PRELOAD").filter(|p| !p.is_empty()) {
        Some(existing) => {
            let mut p = preload;
            p.push(":");
            p.push(existing);
            p
        }
        None => preload,
    };
    cmd.env("LD_PRELOAD", preload);
    for kind in ProfileKind::ALL {
        if std::env::var_os(kind.enabled_env()).is_some() {
            cmd.env(kind.output_env(), raw_path(dir, pid, kind));
        }
    }
    Ok(())
}

/// Where the run with `pid` writes its raw profile of `kind`.
pub fn raw_path(dir: &Path, pid: u32, kind: ProfileKind) -> PathBuf {
    dir.join("raw").join(format!("{pid}.{}.pb.gz", kind.name()))
}
