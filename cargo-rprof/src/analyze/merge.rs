//! `cargo rprof merge -o OUT IN...`: one profile from several of the same kind — the shards of a
//! partitioned test run, the jobs of a CI matrix, the machines of a fleet.

use rprof_core::{codec, labels, merge::Merger};

use crate::cli::MergeArgs;
use crate::CliError;

/// Merge the inputs one at a time (memory follows the distinct stacks, not the number of
/// inputs) and write the result atomically.
pub fn merge(a: &MergeArgs) -> Result<(), CliError> {
    let mut merger = Merger::new();
    for input in &a.inputs {
        let mut profile = super::load(input)?;
        if let Some(key) = &a.label {
            let value = input
                .file_name()
                .map_or_else(|| input.to_string_lossy(), |n| n.to_string_lossy());
            labels::add_label(&mut profile, key, &value);
        }
        merger.add(&profile).map_err(|source| CliError::Profile {
            path: input.clone(),
            source,
        })?;
    }
    let merged = merger.finish().map_err(|source| CliError::Profile {
        path: a.output.clone(),
        source,
    })?;
    codec::write_file(&a.output, &merged).map_err(|source| CliError::Profile {
        path: a.output.clone(),
        source,
    })?;
    crate::term::status(
        "Merged",
        format!("{} profiles into {}", a.inputs.len(), a.output.display()),
    );
    Ok(())
}
