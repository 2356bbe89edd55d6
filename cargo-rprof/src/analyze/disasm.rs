//! `cargo rprof disasm REGEX FILE`: the instructions of the symbols matching REGEX with the
//! flat and cum value at each address, as `go tool pprof -disasm=REGEX FILE` lays them out.
//!
//! A profile names the binaries cargo built (`<target>/rprof/<profile>/deps/NAME`), which the
//! next build overwrites; `cargo rprof test` keeps a copy of each under
//! `<target>/rprof/sessions/<id>/bin/NAME.<pid>`. The copy with the profile's build id is read
//! when the original is gone or is another build.

use std::path::{Path, PathBuf};

use rprof_core::report::disasm::{self, Binaries};

use super::{emit, load_report_input, options, report_error};
use crate::cli::DisasmArgs;
use crate::CliError;

/// `cargo rprof disasm`.
pub fn disasm(a: &DisasmArgs) -> Result<(), CliError> {
    rprof_core::report::list::check_regex(&a.regex).map_err(|e| CliError::Usage(e.to_string()))?;
    let profile = load_report_input(&a.report)?;
    let binaries = Binaries {
        resolve: &kept_binary,
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

fn same_build(path: &Path, build_id: &str) -> bool {
    matches!(rprof_core::symbolize::build_id(path), Ok(Some(id)) if id == build_id)
}
