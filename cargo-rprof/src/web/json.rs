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
    /// flat, the running sum and cum as percentages of the total, as `top` prints them.
    flat_pct: String,
    sum_pct: String,
    cum_pct: String,
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
    let mut sum = 0;
    let rows = table
        .rows
        .iter()
        .map(|r| {
            sum += r.flat;
            TopRow {
                name: &r.name,
                inline: r.inline,
                flat: r.flat,
                cum: r.cum,
                flat_label: table.format(r.flat),
                cum_label: table.format(r.cum),
                flat_pct: TopTable::percent(r.flat, table.total),
                sum_pct: TopTable::percent(sum, table.total),
                cum_pct: TopTable::percent(r.cum, table.total),
            }
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
    /// The value as a percentage of its entry's cum.
    pct: String,
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
    flat_pct: String,
    cum_pct: String,
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
    let edges = |edges: &'a [PeekEdge], of: i64| -> Vec<Edge<'a>> {
        edges
            .iter()
            .map(|e| Edge {
                name: &e.name,
                value: e.value,
                label: table.format(e.value),
                pct: TopTable::percent(e.value, of),
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
            flat_pct: TopTable::percent(e.flat, table.total),
            cum_pct: TopTable::percent(e.cum, table.total),
            callers: edges(&e.callers, e.cum),
            callees: edges(&e.callees, e.cum),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The page prints the CLI's percentages: 3001 of 4000 is 75.025% only in exact arithmetic;
    /// `|v / t| * 100` (the CLI's, Go's) gives 75.0249…, so both print 75.02%, where the page's
    /// own `100 * v / t` once rounded to 75.03%.
    #[test]
    fn top_rows_carry_the_clis_percentages() {
        let table = TopTable {
            labels: vec![],
            unit: "nanoseconds".into(),
            output_unit: "ms".into(),
            type_name: "cpu".into(),
            total: 4000,
            rows: vec![
                rprof_core::report::TopRow {
                    name: "a".into(),
                    flat: 999,
                    cum: 3001,
                    inline: "",
                },
                rprof_core::report::TopRow {
                    name: "b".into(),
                    flat: 3001,
                    cum: 3001,
                    inline: "",
                },
            ],
        };
        let json: serde_json::Value = serde_json::from_str(&top(&table)).unwrap();
        let row = |i: usize, key: &str| json["rows"][i][key].as_str().unwrap().to_owned();
        assert_eq!(row(0, "cum_pct"), "75.02%");
        assert_eq!(row(0, "flat_pct"), "24.98%");
        assert_eq!(row(1, "sum_pct"), "100%");
        assert_eq!(row(1, "flat_pct"), "75.02%");
    }
}
