//! `cargo rprof top|traces|tree|peek|diff|flamegraph FILE...`: read pprof files and print what
//! `go tool pprof` prints with the same options, or write a flame graph. Every command loads its
//! inputs the same way ([`load_report_input`]): merge the files, combine a base, check filters.
//! `tests` and `check` ([`bylabel`], [`check`]) read each file on its own: they group by label
//! across profiles of different kinds, or compare two. Wherever a FILE is read, an `http://`
//! URL is fetched instead ([`fetch`]), as `go tool pprof URL` does.

use std::path::Path;

use rprof_core::report::base::{self, BaseMode};
use rprof_core::report::{self, ReportOptions};
use rprof_core::{codec, Profile};

use crate::cli::{DiffArgs, FlamegraphArgs, PeekArgs, ReportArgs, TopArgs};
use crate::CliError;

pub mod bylabel;
pub mod check;
pub mod disasm;
pub(crate) mod fetch;
pub mod list;
pub mod merge;

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

fn load(path: &Path) -> Result<Profile, CliError> {
    load_from(path, None)
}

/// Read the profile `input` names: a file, or an `http://` URL fetched (asking the server for
/// `seconds` of profiling when given) and saved.
fn load_from(input: &Path, seconds: Option<u64>) -> Result<Profile, CliError> {
    if let Some(url) = fetch::url_of(input) {
        return fetch::load_url(url, seconds);
    }
    codec::read_file(input).map_err(|source| CliError::Profile {
        path: input.to_path_buf(),
        source,
    })
}

/// The report options the flags ask for.
pub fn options(a: &ReportArgs) -> ReportOptions {
    ReportOptions {
        sample_index: a.sample_index.clone(),
        filters: a.filters.filters(),
        granularity: a.granularity(),
        unit: a.unit.clone(),
        ..Default::default()
    }
}

/// Load what a report reads: the files merged, the base combined, and (as pprof does) a warning
/// for each filter that matched no sample. Bad regular expressions fail before anything is read.
pub fn load_report_input(a: &ReportArgs) -> Result<Profile, CliError> {
    let filters = a.filters.filters();
    filters
        .check()
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let all_inputs = a.files.iter().chain(&a.base).chain(&a.diff_base);
    let urls: Vec<&str> = all_inputs.filter_map(|f| fetch::url_of(f)).collect();
    // A bad URL fails before another input's (perhaps 30 s) fetch.
    for url in &urls {
        fetch::check_url(url)?;
    }
    if a.seconds.is_some() && urls.is_empty() {
        crate::term::warning("--seconds has no effect on files: it applies to http:// inputs");
    }
    let inputs = a
        .files
        .iter()
        .map(|f| load_from(f, a.seconds))
        .collect::<Result<_, _>>()?;
    let mut profile = base::merge_inputs(inputs).map_err(|e| report_error(a, e))?;
    let based = match (&a.base, &a.diff_base) {
        (Some(b), _) => Some((b, BaseMode::Subtract)),
        (None, Some(b)) => Some((b, BaseMode::Diff)),
        (None, None) => None,
    };
    if let Some((path, mode)) = based {
        let base_profile = load_from(path, a.seconds)?;
        profile =
            base::with_base(profile, &base_profile, mode).map_err(|source| CliError::Profile {
                path: path.clone(),
                source,
            })?;
    }
    if !filters.is_empty() {
        let matched =
            report::filter::matched(&profile, &filters).map_err(|e| report_error(a, e))?;
        for note in matched.notes {
            crate::term::note(note);
        }
        for name in matched.unmatched {
            crate::term::warning(format!("the {name} expression matched no samples"));
        }
    }
    Ok(profile)
}

/// A report's error, named after the (first) input file.
fn report_error(a: &ReportArgs, source: rprof_core::Error) -> CliError {
    if let rprof_core::Error::NoMatch(msg) | rprof_core::Error::Filter(msg) = source {
        return CliError::Usage(msg);
    }
    CliError::Profile {
        path: a.files.first().cloned().unwrap_or_default(),
        source,
    }
}

/// `cargo rprof top`.
pub fn top(a: &TopArgs) -> Result<(), CliError> {
    trimmed_report(a, report::top)
}

/// A report that takes `--cum` and `--nodecount` (`top`, `tree`).
fn trimmed_report(
    a: &TopArgs,
    render: fn(&Profile, &ReportOptions) -> rprof_core::Result<String>,
) -> Result<(), CliError> {
    let profile = load_report_input(&a.report)?;
    let opts = ReportOptions {
        nodecount: a.nodecount,
        sort_by_cum: a.cum,
        ..options(&a.report)
    };
    let text = render(&profile, &opts).map_err(|e| report_error(&a.report, e))?;
    emit(&text)
}

/// `cargo rprof traces`.
pub fn traces(a: &ReportArgs) -> Result<(), CliError> {
    let profile = load_report_input(a)?;
    let text = report::traces(&profile, &options(a)).map_err(|e| report_error(a, e))?;
    emit(&text)
}

/// `cargo rprof tree`.
pub fn tree(a: &TopArgs) -> Result<(), CliError> {
    trimmed_report(a, report::tree)
}

/// `cargo rprof peek`.
pub fn peek(a: &PeekArgs) -> Result<(), CliError> {
    let profile = load_report_input(&a.report)?;
    let text = report::peek(&profile, &options(&a.report), &a.regex)
        .map_err(|e| report_error(&a.report, e))?;
    emit(&text)
}

/// `cargo rprof diff`: `top` of the new profile(s) with BASE as `diff_base`.
pub fn diff(a: &DiffArgs) -> Result<(), CliError> {
    if a.top.report.base.is_some() || a.top.report.diff_base.is_some() {
        return Err(CliError::Usage(
            "`diff BASE NEW` takes its base as the first file: drop --base/--diff-base".into(),
        ));
    }
    let mut top_args = a.top.clone();
    top_args.report.diff_base = Some(a.base_file.clone());
    top(&top_args)
}

/// `cargo rprof flamegraph`.
pub fn flamegraph(a: &FlamegraphArgs) -> Result<(), CliError> {
    let profile = load_report_input(&a.report)?;
    let opts = ReportOptions {
        title: a.title.clone(),
        ..options(&a.report)
    };
    let mut svg = Vec::new();
    report::flamegraph(&profile, &opts, &mut svg).map_err(|e| report_error(&a.report, e))?;
    codec::write_atomically(&a.output, &svg).map_err(|source| CliError::Write {
        path: a.output.clone(),
        source,
    })?;
    crate::term::status("Wrote", a.output.display());
    Ok(())
}
