//! `cargo rprof tests FILE...`: one row per test (or other label value) with a column per
//! measure of the given profiles, as rprof-core's per-label table computes it.

use std::path::Path;

use rprof_core::report::bylabel::{self, Column, LabelOptions, LabelTable, ProfileKindGuess};
use rprof_core::Profile;

use super::{emit, load};
use crate::cli::{Format, TestsArgs};
use crate::CliError;

/// A file's name up to its first dot: `mutex` for `mutex.pb.gz`.
pub(crate) fn stem(path: &Path) -> String {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    name.split('.').next().unwrap_or_default().to_owned()
}

/// The kind of each profile, or an error naming a file of no kind `tests` knows.
fn kinds<'p>(
    files: &[std::path::PathBuf],
    profiles: &'p [Profile],
) -> Result<Vec<(ProfileKindGuess, &'p Profile)>, CliError> {
    files
        .iter()
        .zip(profiles)
        .map(|(path, p)| {
            let kind = ProfileKindGuess::guess(p, Some(&stem(path))).ok_or_else(|| {
                let types: Vec<String> = p
                    .sample_type
                    .iter()
                    .map(|vt| p.str(vt.r#type).to_owned())
                    .collect();
                CliError::Usage(format!(
                    "{}: not a CPU, memory, block or mutex profile (sample types: {})",
                    path.display(),
                    types.join(", ")
                ))
            })?;
            Ok((kind, p))
        })
        .collect()
}

/// A core error of a per-label report, naming the file it is about.
pub(crate) fn label_error(files: &[&Path], source: rprof_core::Error) -> CliError {
    use rprof_core::Error as E;
    match source {
        E::NoLabel { key, input } => CliError::NoLabel {
            path: files
                .get(input)
                .copied()
                .unwrap_or(Path::new(""))
                .to_path_buf(),
            key,
        },
        E::BadOption(msg) | E::Filter(msg) | E::NoMatch(msg) => CliError::Usage(msg),
        e @ E::NoSuchSampleType { .. } => CliError::Usage(e.to_string()),
        source => CliError::Profile {
            path: files
                .first()
                .copied()
                .unwrap_or(Path::new(""))
                .to_path_buf(),
            source,
        },
    }
}

/// The table as JSON: an array of objects, the label under its key, each column's value under
/// its JSON name.
fn json(table: &LabelTable, limit: Option<usize>) -> String {
    let shown = match limit {
        Some(n) if n > 0 => n.min(table.rows.len()),
        _ => table.rows.len(),
    };
    let rows: Vec<serde_json::Value> = table.rows[..shown]
        .iter()
        .map(|row| {
            let mut object = serde_json::Map::new();
            object.insert(table.key.clone(), row.label.clone().into());
            for (c, &v) in table.columns.iter().zip(&row.values) {
                object.insert(c.json_name().to_owned(), v.into());
            }
            serde_json::Value::Object(object)
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&rows).unwrap_or_default();
    text.push('\n');
    text
}

/// `cargo rprof tests`.
pub fn tests(a: &TestsArgs) -> Result<(), CliError> {
    let filters = a.filters.filters();
    filters
        .check()
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let sort = a
        .sort
        .as_deref()
        .map(|s| {
            Column::parse(s).ok_or_else(|| {
                let names: Vec<&str> = Column::ALL.iter().map(|c| c.name()).collect();
                CliError::Usage(format!(
                    "--sort {s}: no such column (one of: {})",
                    names.join(", ")
                ))
            })
        })
        .transpose()?;
    let profiles = a
        .files
        .iter()
        .map(|f| load(f))
        .collect::<Result<Vec<_>, _>>()?;
    let inputs = kinds(&a.files, &profiles)?;
    let opts = LabelOptions { filters, sort };
    let files: Vec<&Path> = a.files.iter().map(|f| f.as_path()).collect();
    let table =
        bylabel::per_label_rows(&inputs, &a.by, &opts).map_err(|e| label_error(&files, e))?;
    match a.format {
        Format::Text => emit(&table.text(a.nodecount)),
        Format::Json => emit(&json(&table, a.nodecount)),
    }
}
