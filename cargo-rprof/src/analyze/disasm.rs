//! `cargo rprof disasm REGEX FILE`: the instructions of the symbols matching REGEX with the
//! flat and cum value at each address, as `go tool pprof -disasm=REGEX FILE` lays them out.
//!
//! A profile names the binaries cargo built (`<target>/rprof/<profile>/deps/NAME`), which the
//! next build overwrites; `cargo rprof test` keeps a copy of each under
//! `<target>/rprof/sessions/<id>/bin/NAME.<pid>`. The copy with the profile's build id is read
//! when the original is gone or is another build; the vDSO's image, which is no file, is read
//! from the copy kept beside the session's raw profiles.

use std::path::{Path, PathBuf};

use rprof_core::report::disasm::{self, Binaries};

use super::{emit, load_report_input, options, report_error};
use crate::cli::DisasmArgs;
use crate::CliError;

/// `cargo rprof disasm`.
pub fn disasm(a: &DisasmArgs) -> Result<(), CliError> {
    rprof_core::report::list::check_regex(&a.regex).map_err(|e| CliError::Usage(e.to_string()))?;
    let profile = load_report_input(&a.report)?;
    // The rprof directories the profile's binaries were built in (for the vDSO's kept image).
    let mut rprof_dirs: Vec<PathBuf> = Vec::new();
    for m in &profile.mapping {
        if let Some(dir) = rprof_dir(Path::new(profile.str(m.filename))) {
            if !rprof_dirs.iter().any(|d| d == dir) {
                rprof_dirs.push(dir.to_path_buf());
            }
        }
    }
    let resolve = |filename: &str, build_id: &str| {
        if filename == rprof_core::VDSO_MAPPING {
            return kept_vdso(&rprof_dirs, build_id);
        }
        kept_binary(filename, build_id)
    };
    let binaries = Binaries {
        resolve: &resolve,
        intel_syntax: a.intel_syntax,
    };
    let found = disasm::disassembly(&profile, &options(&a.report), &a.regex, &binaries)
        .map_err(|e| report_error(&a.report, e))?;
    for w in &found.warnings {
        crate::term::warning(w);
    }
    emit(&found.render())
}

/// The file to read for a mapping: `None` (the file itself) when it has the profile's build
/// id, else a kept copy that has it.
fn kept_binary(filename: &str, build_id: &str) -> Option<PathBuf> {
    let original = Path::new(filename);
    if build_id.is_empty() || same_build(original, build_id) {
        return None;
    }
    let name = original.file_name()?.to_str()?;
    let rprof = original
        .ancestors()
        .find(|d| d.file_name().is_some_and(|n| n == "rprof"))?;
    let mut sessions: Vec<PathBuf> = std::fs::read_dir(rprof.join("sessions"))
        .ok()?
        .filter_map(|e| Some(e.ok()?.path()))
        .collect();
    // Session names start with a timestamp: newest first.
    sessions.sort();
    sessions.reverse();
    for session in sessions {
        let Ok(entries) = std::fs::read_dir(session.join("bin")) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let kept_name = entry.file_name();
            let is_copy = kept_name
                .to_str()
                .and_then(|k| k.strip_prefix(name))
                .is_some_and(|rest| rest.starts_with('.'));
            if is_copy && same_build(&path, build_id) {
                return Some(path);
            }
        }
    }
    None
}

/// The `<target>/rprof` directory a binary was built under.
fn rprof_dir(binary: &Path) -> Option<&Path> {
    binary
        .ancestors()
        .find(|d| d.file_name().is_some_and(|n| n == "rprof"))
}

/// The sessions of an rprof directory, newest first (their names start with a timestamp).
fn sessions(rprof: &Path) -> Vec<PathBuf> {
    let mut sessions: Vec<PathBuf> = std::fs::read_dir(rprof.join("sessions"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    sessions.sort();
    sessions.reverse();
    sessions
}

/// The image of the vDSO with `build_id` that a session kept beside its raw profiles.
fn kept_vdso(rprof_dirs: &[PathBuf], build_id: &str) -> Option<PathBuf> {
    let name = rprof_core::kept_vdso_name(build_id);
    rprof_dirs
        .iter()
        .flat_map(|d| sessions(d))
        .map(|s| s.join("raw").join(&name))
        .find(|p| p.is_file())
}

fn same_build(path: &Path, build_id: &str) -> bool {
    matches!(rprof_core::symbolize::build_id(path), Ok(Some(id)) if id == build_id)
}
