//! `cargo rprof list REGEX FILE`: the source of the functions matching REGEX with the flat and
//! cum value of each line, as `go tool pprof -list=REGEX FILE` prints it.

use rprof_core::report::list::{self, RustSrc, SourceSearch};

use super::{emit, load_report_input, options, report_error};
use crate::cli::ListArgs;
use crate::CliError;

/// `cargo rprof list`.
pub fn list(a: &ListArgs) -> Result<(), CliError> {
    list::check_regex(&a.regex).map_err(|e| CliError::Usage(e.to_string()))?;
    let profile = load_report_input(&a.report)?;
    let sources = SourceSearch::new(
        a.sources.source_path.clone(),
        a.sources.trim_path.clone(),
        RustSrc::Toolchain,
    );
    let text = list::list(&profile, &options(&a.report), &a.regex, &sources)
        .map_err(|e| report_error(&a.report, e))?;
    emit(&text)
}
