//! `cargo rprof check BASE NEW`: the regression gate. Values are grouped per test (or label, or
//! function) by rprof-core's [`check`](rprof_core::report::check) engine; the keys that grew past
//! the threshold are printed, largest change first, and the exit status says whether any did.

use std::fmt::Write as _;
use std::path::Path;

use rprof_core::report::check::{self, GroupBy, Threshold};
use rprof_core::report::format_value;

use super::bylabel::label_error;
use super::{emit, load};
use crate::cli::CheckArgs;
use crate::CliError;

/// `count noun`, plural when needed.
fn counted(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// `cargo rprof check`: 0 when nothing regressed, 1 when something did; errors are the caller's
/// to turn into exit status 2.
pub fn check(a: &CheckArgs) -> Result<i32, CliError> {
    let filters = a.filters.filters();
    filters
        .check()
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let (base, new) = (load(&a.base)?, load(&a.new)?);
    let types = |p: &rprof_core::Profile| -> Vec<(String, String)> {
        p.sample_type
            .iter()
            .map(|vt| p.value_type_name(vt))
            .collect()
    };
    if types(&base) != types(&new) {
        let show = |t: Vec<(String, String)>| {
            t.iter()
                .map(|(t, u)| format!("{t}/{u}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        return Err(CliError::Usage(format!(
            "{} and {} are different kinds of profile: sample types [{}] and [{}]",
            a.base.display(),
            a.new.display(),
            show(types(&base)),
            show(types(&new))
        )));
    }
    if new.sample_type.is_empty() {
        return Err(CliError::Usage(format!(
            "{}: the profile has no sample types",
            a.new.display()
        )));
    }
    let index = match &a.sample_index {
        Some(name) => new
            .sample_index(name)
            .map_err(|e| CliError::Usage(e.to_string()))?,
        None => new.default_sample_index(),
    };
    let (type_name, unit) = new.value_type_name(&new.sample_type[index]);
    let defaults = Threshold::defaults(&new, index);
    let threshold = Threshold {
        max_increase_pct: a.max_increase.unwrap_or(defaults.max_increase_pct),
        min_delta: match &a.min_delta {
            Some(text) => check::parse_delta(text, &unit)
                .map_err(|e| CliError::Usage(format!("--min-delta: {e}")))?,
            None => defaults.min_delta,
        },
    };
    let (by, noun) = match a.by.as_str() {
        "function" => (GroupBy::Function, "function".to_owned()),
        "test" => (GroupBy::Label("test".into()), "test".to_owned()),
        key => (GroupBy::Label(key.to_owned()), format!("`{key}` value")),
    };
    let values = |path: &Path, p| {
        let mut values =
            check::grouped_values(p, &by, index, &filters).map_err(|e| label_error(&[path], e))?;
        values.retain(|key, _| check::is_gated(&by, key));
        Ok::<_, CliError>(values)
    };
    let comparison = check::compare(&values(&a.base, &base)?, &values(&a.new, &new)?, &threshold);

    let format = |v: i64| format_value(v, &unit);
    let allowed = format!(
        "+{}% and min delta {}",
        threshold.max_increase_pct,
        format(threshold.min_delta)
    );
    let compared = format!("{} compared", counted(comparison.compared, &noun));
    if comparison.regressions.is_empty() {
        emit(&format!(
            "no regression: {compared} ({type_name}, {allowed} allowed)\n"
        ))?;
        return Ok(0);
    }
    let mut out = String::new();
    let key_header = match &by {
        GroupBy::Function => "function",
        GroupBy::Label(key) => key,
    };
    let _ = writeln!(
        out,
        "{:>10} {:>10} {:>10} {:>9}  {key_header}",
        "base", "new", "delta", "change"
    );
    for r in &comparison.regressions {
        let change = r
            .percent()
            .map_or_else(|| "new".to_owned(), |p| format!("+{p:.2}%"));
        let _ = writeln!(
            out,
            "{:>10} {:>10} {:>10} {change:>9}  {}",
            format(r.base),
            format(r.new),
            format!("+{}", format(r.delta())),
            r.key
        );
    }
    emit(&out)?;
    crate::term::failure(format!(
        "{} past {allowed} ({type_name}, {compared})",
        counted(comparison.regressions.len(), "regression")
    ));
    Ok(1)
}
