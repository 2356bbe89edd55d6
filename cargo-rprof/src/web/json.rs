//! The JSON bodies of the web UI's API: engine results as the page reads them, with each value
//! both raw (for widths, sums and sorting) and formatted the way the CLI prints it.

use std::collections::HashMap;
use std::fmt::Write as _;

use rprof_core::report::flame::FlameNode;
use rprof_core::report::list::FunctionListing;
use rprof_core::report::{format_value, PeekEdge, TopTable, TreeReport};
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
    /// The base profile, if any.
    base: Option<String>,
    /// `base` (subtracted) or `diff_base` (compared), when a base is given.
    base_mode: Option<&'a str>,
    sample_types: Vec<SampleType<'a>>,
    default_sample_index: &'a str,
    /// Whether the profile holds a base's samples (`diff_base`): the page colors by delta.
    diff: bool,
    /// The command line's options, under their query names: the page starts with them.
    start: HashMap<&'a str, String>,
}

pub(super) fn meta(shown: &Shown, start: &[(&'static str, String)]) -> String {
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
    let meta = Meta {
        files: shown
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect(),
        base: shown.base.as_ref().map(|(b, _)| b.display().to_string()),
        base_mode: shown.base.as_ref().map(|(_, mode)| *mode),
        sample_types,
        default_sample_index: default,
        diff: shown
            .base
            .as_ref()
            .is_some_and(|(_, mode)| *mode == "diff_base"),
        start: start.iter().cloned().collect(),
    };
    serde_json::to_string(&meta).expect("plain data serializes")
}

/// One row of `/api/top`.
#[derive(Serialize)]
struct TopRow<'a> {
    name: &'a str,
    inline: &'a str,
    flat: i64,
    cum: i64,
    flat_label: String,
    cum_label: String,
}

/// `/api/top`: `top`'s table, values raw and as `top` prints them.
#[derive(Serialize)]
struct Top<'a> {
    labels: &'a [String],
    sample_type: &'a str,
    unit: &'a str,
    total: i64,
    total_label: String,
    rows: Vec<TopRow<'a>>,
}

pub(super) fn top(table: &TopTable) -> String {
    let rows = table
        .rows
        .iter()
        .map(|r| TopRow {
            name: &r.name,
            inline: r.inline,
            flat: r.flat,
            cum: r.cum,
            flat_label: table.format(r.flat),
            cum_label: table.format(r.cum),
        })
        .collect();
    let top = Top {
        labels: &table.labels,
        sample_type: &table.type_name,
        unit: &table.unit,
        total: table.total,
        total_label: table.format(table.total),
        rows,
    };
    serde_json::to_string(&top).expect("plain data serializes")
}

/// A caller or callee of a `/api/peek` entry.
#[derive(Serialize)]
struct Edge<'a> {
    name: &'a str,
    value: i64,
    label: String,
    inline: bool,
}

/// One entry of `/api/peek`.
#[derive(Serialize)]
struct Entry<'a> {
    name: &'a str,
    flat: i64,
    cum: i64,
    flat_label: String,
    cum_label: String,
    callers: Vec<Edge<'a>>,
    callees: Vec<Edge<'a>>,
}

/// `/api/peek`.
#[derive(Serialize)]
struct Peek<'a> {
    labels: &'a [String],
    sample_type: &'a str,
    unit: &'a str,
    total: i64,
    entries: Vec<Entry<'a>>,
}

pub(super) fn peek<'a>(report: &'a TreeReport) -> String {
    let table = &report.table;
    let edges = |edges: &'a [PeekEdge]| -> Vec<Edge<'a>> {
        edges
            .iter()
            .map(|e| Edge {
                name: &e.name,
                value: e.value,
                label: table.format(e.value),
                inline: e.inline,
            })
            .collect()
    };
    let entries = report
        .entries
        .iter()
        .map(|e| Entry {
            name: &e.name,
            flat: e.flat,
            cum: e.cum,
            flat_label: table.format(e.flat),
            cum_label: table.format(e.cum),
            callers: edges(&e.callers),
            callees: edges(&e.callees),
        })
        .collect();
    let peek = Peek {
        labels: &table.labels,
        sample_type: &table.type_name,
        unit: &table.unit,
        total: table.total,
        entries,
    };
    serde_json::to_string(&peek).expect("plain data serializes")
}

/// The sample type a flame graph is about; its total is the root's.
#[derive(Serialize)]
struct FlameHead<'a> {
    sample_type: &'a str,
    unit: &'a str,
    total: i64,
    total_label: String,
}

/// `/api/flame`: `{sample_type, unit, total, total_label, names: [...], tree: NODE}` with
/// `NODE = [name index, value, base, [NODE...]]`; names are sent once, nodes as arrays, so a
/// big tree stays small.
pub(super) fn flame(p: &Profile, index: usize, tree: &FlameNode) -> String {
    let vt = &p.sample_type[index];
    let unit = p.str(vt.unit);
    let head = FlameHead {
        sample_type: p.str(vt.r#type),
        unit,
        total: tree.value,
        total_label: format_value(tree.value, unit),
    };
    let mut head = serde_json::to_string(&head).expect("plain data serializes");
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

/// One line of a `/api/source` listing.
#[derive(Serialize)]
struct Line<'a> {
    number: i64,
    flat: i64,
    cum: i64,
    flat_label: String,
    cum_label: String,
    /// `None` when the source was not found.
    text: Option<&'a str>,
}

/// One listing of `/api/source`: a function in one file.
#[derive(Serialize)]
struct Listing<'a> {
    name: &'a str,
    file: &'a str,
    /// Where the source was read, `None` when it was not found.
    path: Option<String>,
    flat: i64,
    cum: i64,
    flat_label: String,
    cum_label: String,
    lines: Vec<Line<'a>>,
}

/// `/api/source`.
#[derive(Serialize)]
struct Source<'a> {
    sample_type: &'a str,
    unit: &'a str,
    listings: Vec<Listing<'a>>,
}

pub(super) fn source(p: &Profile, index: usize, listings: &[FunctionListing]) -> String {
    let vt = &p.sample_type[index];
    let unit = p.str(vt.unit);
    let label = |v: i64| {
        if v == 0 {
            ".".to_owned()
        } else {
            format_value(v, unit)
        }
    };
    let listings = listings
        .iter()
        .map(|l| Listing {
            name: &l.name,
            file: &l.file,
            path: l.path.as_ref().map(|p| p.display().to_string()),
            flat: l.flat,
            cum: l.cum,
            flat_label: label(l.flat),
            cum_label: label(l.cum),
            lines: l
                .lines
                .iter()
                .map(|line| Line {
                    number: line.number,
                    flat: line.flat,
                    cum: line.cum,
                    flat_label: label(line.flat),
                    cum_label: label(line.cum),
                    text: line.text.as_deref(),
                })
                .collect(),
        })
        .collect();
    let source = Source {
        sample_type: p.str(vt.r#type),
        unit,
        listings,
    };
    serde_json::to_string(&source).expect("plain data serializes")
}
