//! `cargo rprof top|traces|flamegraph FILE`: read any pprof file and print what
//! `go tool pprof -top/-traces` prints, or write a flame graph.

use std::path::Path;

use rprof_core::report::{self, ReportOptions};
use rprof_core::{codec, Profile};

use crate::cli::{FlamegraphArgs, ReportArgs, TopArgs};

pub mod disasm;
pub mod list;

/// Print a report; a closed pipe (`| head`) ends the output quietly, as with other tools.
fn emit(text: &str) -> Result<(), CliError> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::io("cannot write to standard output", e))
        }
        _ => Ok(()),
    }
}
use crate::CliError;

fn load(path: &Path) -> Result<Profile, CliError> {
    codec::read_file(path).map_err(|source| CliError::Profile {
        path: path.to_path_buf(),
        source,
    })
}

fn options(a: &ReportArgs) -> ReportOptions {
    ReportOptions {
        sample_index: a.sample_index.clone(),
        filters: a.filters.filters(),
        ..Default::default()
    }
}

/// Load the profile and say, as pprof does, which filters matched no sample.
fn load_filtered(a: &ReportArgs) -> Result<Profile, CliError> {
    let filters = a.filters.filters();
    filters
        .check()
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let profile = load(&a.file)?;
    if !filters.is_empty() {
        let (_, matched) = rprof_core::report::filter::apply(&profile, &filters)
            .map_err(|e| report_error(a, e))?;
        for name in matched.unmatched {
            crate::term::warning(format!("the {name} expression matched no samples"));
        }
    }
    Ok(profile)
}

fn report_error(a: &ReportArgs, source: rprof_core::Error) -> CliError {
    CliError::Profile {
        path: a.file.clone(),
        source,
    }
}

/// `cargo rprof top`.
pub fn top(a: &TopArgs) -> Result<(), CliError> {
    let profile = load_filtered(&a.report)?;
    let opts = ReportOptions {
        nodecount: a.nodecount,
        sort_by_cum: a.cum,
        ..options(&a.report)
    };
    let text = report::top(&profile, &opts).map_err(|e| report_error(&a.report, e))?;
    emit(&text)
}

/// `cargo rprof traces`.
pub fn traces(a: &ReportArgs) -> Result<(), CliError> {
    let profile = load_filtered(a)?;
    let text = report::traces(&profile, &options(a)).map_err(|e| report_error(a, e))?;
    emit(&text)
}

/// `cargo rprof flamegraph`.
pub fn flamegraph(a: &FlamegraphArgs) -> Result<(), CliError> {
    let profile = load_filtered(&a.report)?;
    let opts = ReportOptions {
        title: a.title.clone(),
        ..options(&a.report)
    };
    let mut svg = Vec::new();
    report::flamegraph(&profile, &opts, &mut svg).map_err(|e| report_error(&a.report, e))?;
    std::fs::write(&a.output, svg).map_err(|source| CliError::Write {
        path: a.output.clone(),
        source,
    })?;
    crate::term::status("Wrote", a.output.display());
    Ok(())
}
