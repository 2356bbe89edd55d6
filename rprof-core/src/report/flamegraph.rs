//! Flame graphs: the profile's stacks folded root first (`main;work;leaf 42`) and drawn as SVG
//! by inferno.

use std::collections::BTreeMap;

use inferno::flamegraph::color::{BasicPalette, Palette};
use inferno::flamegraph::{self as inferno_fg, Options};

use super::graph::Prepared;
use super::{ReportOptions, Selected};
use crate::proto::Profile;
use crate::{Error, Result};

/// Write an SVG flame graph of the chosen sample type to `out`: one box per function per stack
/// level, width proportional to the value, titled with the sample type (and `opts.title` as
/// subtitle), counts in the sample unit (`nanoseconds`, `bytes`, ...). Memory profiles get
/// inferno's memory palette, the rest its hot one.
///
/// Stacks whose value is zero or negative (diff profiles) are left out; when nothing is left,
/// this returns [`Error::Invalid`] without writing anything. A `;` inside a function name
/// (`[u8; 8]`) would split the frame in the folded format, so it is drawn as `；`.
pub fn flamegraph(
    profile: &Profile,
    opts: &ReportOptions,
    out: &mut dyn std::io::Write,
) -> Result<()> {
    let mut keep = None;
    let profile = super::drawn(profile, opts, &mut keep)?;
    let prepared = Prepared::with_granularity(profile, opts.granularity);
    let sel = Selected::new(profile, &prepared, opts)?;
    let lines = folded_stacks(&prepared, sel.index);
    if lines.is_empty() {
        return Err(Error::Invalid(format!(
            "the profile has no samples with a positive `{}` value: no flame graph to draw",
            sel.type_name
        )));
    }

    let mut options = Options::default();
    options.title = if sel.type_name.is_empty() {
        "Flame Graph".to_owned()
    } else {
        sel.type_name.to_owned()
    };
    options.subtitle = opts.title.clone();
    options.count_name = if sel.unit.is_empty() {
        "samples".to_owned()
    } else {
        sel.unit.to_owned()
    };
    options.colors = Palette::Basic(if is_memory(sel.type_name, sel.unit) {
        BasicPalette::Mem
    } else {
        BasicPalette::Hot
    });
    // Colors from function names, not a random generator: the same profile, the same picture.
    options.hash = true;
    options.deterministic = true;

    inferno_fg::from_lines(&mut options, lines.iter().map(String::as_str), out)
        .map_err(|e| Error::io("<flame graph output>", e))
}

/// Whether a sample type measures memory: byte units, or object counts of a heap profile.
fn is_memory(type_name: &str, unit: &str) -> bool {
    let unit = unit.to_lowercase();
    matches!(unit.as_str(), "bytes" | "byte" | "b")
        || type_name.starts_with("alloc_")
        || type_name.starts_with("inuse_")
}

/// The samples' stacks root first, `;`-separated, with their summed positive values, sorted.
fn folded_stacks(prepared: &Prepared<'_>, index: usize) -> Vec<String> {
    let mut folded: BTreeMap<String, i64> = BTreeMap::new();
    for sample in &prepared.samples {
        let value = sample.values.get(index).copied().unwrap_or(0);
        if value <= 0 {
            continue;
        }
        let mut stack = String::new();
        for &loc in sample.locations.iter().rev() {
            for &n in prepared.frames(loc).iter().rev() {
                if !stack.is_empty() {
                    stack.push(';');
                }
                stack.push_str(&prepared.names[n].replace(';', "；"));
            }
        }
        if !stack.is_empty() {
            *folded.entry(stack).or_insert(0) += value;
        }
    }
    folded
        .into_iter()
        .map(|(stack, value)| format!("{stack} {value}"))
        .collect()
}

#[cfg(test)]
pub(super) fn folded_for_test(profile: &Profile, index: usize) -> Vec<String> {
    folded_stacks(&Prepared::new(profile), index)
}
