//! The JSON bodies of the web UI's API: engine results as the page reads them, with each value
//! both raw (for widths, sums and sorting) and formatted the way the CLI prints it.

use std::collections::HashMap;
use std::fmt::Write as _;

use rprof_core::report::flame::FlameNode;
use rprof_core::report::{format_value, FunctionRow};
use rprof_core::Profile;
use serde::Serialize;

use super::Shown;

/// One sample type.
#[derive(Serialize)]
struct SampleType<'a> {
    name: &'a str,
    unit: &'a str,
}

/// `/api/meta`.
#[derive(Serialize)]
struct Meta<'a> {
    files: Vec<String>,
    sample_types: Vec<SampleType<'a>>,
    default_sample_index: &'a str,
    /// Whether the profile holds a base's samples (`diff_base`): the page colors by delta.
    diff: bool,
}

pub(super) fn meta(shown: &Shown) -> String {
    let p = &shown.profile;
    let sample_types = p
        .sample_type
        .iter()
        .map(|vt| SampleType {
            name: p.str(vt.r#type),
            unit: p.str(vt.unit),
        })
        .collect::<Vec<_>>();
    let default = p
        .sample_type
        .get(p.default_sample_index())
        .map_or("", |vt| p.str(vt.r#type));
    let diff = p
        .string_table
        .iter()
        .any(|s| s == rprof_core::report::flame::BASE_LABEL);
    let meta = Meta {
        files: shown
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect(),
        sample_types,
        default_sample_index: default,
        diff,
    };
    serde_json::to_string(&meta).expect("plain data serializes")
}

/// The sample type a result is about.
#[derive(Serialize)]
struct Unit<'a> {
    sample_type: &'a str,
    unit: &'a str,
    /// The total of the sample type over the whole profile (as pprof's percentages use).
    total: i64,
    total_label: String,
}

fn unit(p: &Profile, index: usize) -> Unit<'_> {
    let vt = &p.sample_type[index];
    let unit = p.str(vt.unit);
    let total = p
        .sample
        .iter()
        .map(|s| s.value.get(index).copied().unwrap_or(0).abs())
        .sum();
    Unit {
        sample_type: p.str(vt.r#type),
        unit,
        total,
        total_label: format_value(total, unit),
    }
}

/// One row of `/api/top`.
#[derive(Serialize)]
struct TopRow<'a> {
    name: &'a str,
    flat: i64,
    cum: i64,
    flat_label: String,
    cum_label: String,
}

/// `/api/top`.
#[derive(Serialize)]
struct Top<'a> {
    #[serde(flatten)]
    unit: Unit<'a>,
    rows: Vec<TopRow<'a>>,
}

pub(super) fn top<'a>(p: &'a Profile, index: usize, rows: &'a [FunctionRow]) -> String {
    let unit = unit(p, index);
    let rows = rows
        .iter()
        .map(|r| TopRow {
            name: &r.name,
            flat: r.flat,
            cum: r.cum,
            flat_label: format_value(r.flat, unit.unit),
            cum_label: format_value(r.cum, unit.unit),
        })
        .collect();
    serde_json::to_string(&Top { unit, rows }).expect("plain data serializes")
}

/// `/api/flame`: `{sample_type, unit, total, total_label, names: [...], tree: NODE}` with
/// `NODE = [name index, value, base, [NODE...]]`; names are sent once, nodes as arrays, so a
/// big tree stays small.
pub(super) fn flame(p: &Profile, index: usize, tree: &FlameNode) -> String {
    let mut head = serde_json::to_string(&unit(p, index)).expect("plain data serializes");
    head.pop(); // the closing brace
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    let mut body = String::with_capacity(tree.len() * 16);
    node(tree, &mut names, &mut order, &mut body);
    let names = serde_json::to_string(&order).expect("strings serialize");
    format!("{head},\"names\":{names},\"tree\":{body}}}")
}

fn node<'t>(
    n: &'t FlameNode,
    names: &mut HashMap<&'t str, usize>,
    order: &mut Vec<&'t str>,
    out: &mut String,
) {
    let id = *names.entry(&n.name).or_insert_with(|| {
        order.push(&n.name);
        order.len() - 1
    });
    let _ = write!(out, "[{id},{},{},[", n.value, n.base);
    for (i, c) in n.children.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        node(c, names, order, out);
    }
    out.push_str("]]");
}
