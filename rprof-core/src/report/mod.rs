//! Reports in `go tool pprof`'s layout: `top`, `traces` and flame graphs.
//!
//! The text reports reproduce what `go tool pprof -top` and `-traces` print for the same file,
//! column for column: the same header lines, the same node trimming (nodes whose cum is below
//! 0.5% of the total are dropped, as pprof's default `-nodefraction=0.005` does), the same sort
//! orders and the same unit scaling (`1.88s`, `10ms`, `1.50MB` with 1024-based memory units).
//! Functions are identified by name; cum counts a sample once per function even when the
//! function recurses.
//!
//! Deliberate differences from pprof:
//! - `Time:` is printed in UTC, where pprof uses the local time zone.
//! - Names are shown as the profile has them. pprof, when a function's name equals its system
//!   name, "simplifies" it with C++ heuristics that cut everything between `<>` and `()`, which
//!   turns Rust's `<Vec<T> as Drop>::drop` into `::drop`; profiles whose system names are the
//!   mangled symbols (as rprof's symbolizer writes them) look the same in both tools.
//! - Nothing is symbolized or demangled here: `[binary]` stays `[binary]`.
//!
//! Flame graphs are SVG drawn by inferno from the profile's stacks folded root first.

pub mod base;
pub mod bylabel;
pub mod check;
#[cfg(feature = "disasm")]
pub mod disasm;
pub mod filter;
pub mod flame;
mod flamegraph;
mod graph;
pub mod list;
mod units;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::proto::Profile;
use crate::{Error, Result};

pub use flamegraph::flamegraph;
pub use graph::Granularity;
use graph::{base_name, Prepared};
use units::{percentage, scale, scaled_label};

/// What a report shows and how, as the command line's flags say it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportOptions {
    /// The sample type to report (`alloc_space`, `cpu`, ... or its index); `None` for the
    /// profile's default, as pprof chooses it.
    pub sample_index: Option<String>,
    /// `top` shows at most this many functions; `None` (or 0) shows all that survive trimming.
    pub nodecount: Option<usize>,
    /// Sort `top` by cum instead of flat.
    pub sort_by_cum: bool,
    /// The name shown on the `File:` line of the header (and as a flame graph's subtitle);
    /// `None` shows the profile's main binary, as pprof does.
    pub title: Option<String>,
    /// pprof's sample filters (`focus`, `ignore`, `hide`, ...), applied before the report.
    pub filters: filter::Filters,
    /// How finely frames are told apart (`functions` by default).
    pub granularity: Granularity,
    /// The unit values are printed in (`ms`, `MB`, `s`, ...); `None` or `minimum` lets pprof's
    /// rule pick the coarsest unit that keeps the smallest value readable.
    pub unit: Option<String>,
}

/// `peek`'s callers-and-callees tables, as data for renderers other than the text report.
pub mod peek {
    use super::{tree_report, ReportOptions};
    pub use super::{PeekEdge, PeekEntry};
    use crate::proto::Profile;
    use crate::Result;

    /// The nodes whose name matches `regex` with their callers and callees, as `peek` prints
    /// them.
    pub fn entries(profile: &Profile, opts: &ReportOptions, regex: &str) -> Result<Vec<PeekEntry>> {
        Ok(tree_report(profile, opts, Some(regex))?.entries)
    }
}

/// The profile a report draws: `profile` itself, or (with filters) the filtered copy kept in
/// `keep`.
fn drawn<'a>(
    profile: &'a Profile,
    opts: &ReportOptions,
    keep: &'a mut Option<Profile>,
) -> Result<&'a Profile> {
    if opts.filters.is_empty() {
        return Ok(profile);
    }
    Ok(keep.insert(filter::apply(profile, &opts.filters)?.0))
}

/// The total pprof's header shows: of the whole profile, filters or not.
fn unfiltered_total(profile: &Profile, opts: &ReportOptions, sel: &Selected<'_>) -> i64 {
    if opts.filters.is_empty() {
        return sel.total;
    }
    compute_total(profile, &graph::merged_samples(profile), sel.index)
}

/// pprof's `computeTotal`: the sum of the absolute values; with a `diff_base`, the sum over the
/// base's samples only, so percentages are relative to the base.
fn compute_total(profile: &Profile, samples: &[graph::MergedSample<'_>], index: usize) -> i64 {
    let (mut total, mut base_total) = (0i64, 0i64);
    for s in samples {
        let v = s.values.get(index).copied().unwrap_or(0).abs();
        total += v;
        if base::is_base_sample(profile, s.labels) {
            base_total += v;
        }
    }
    if base_total > 0 {
        base_total
    } else {
        total
    }
}

/// One function's flat and cum values for one sample type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRow {
    /// The function name as pprof prints it (`[binary]` or `<unknown>` for unsymbolized code).
    pub name: String,
    /// Value of the samples whose leaf frame is this function.
    pub flat: i64,
    /// Value of the samples with this function anywhere in their stack, each sample once.
    pub cum: i64,
}

/// Per-function flat and cum values for the chosen sample type, sorted as `top` shows them
/// (by flat, then name, then cum), without `top`'s trimming: every function with a nonzero
/// value is there. Tests and the CLI's short report use this. An out-of-range `sample_index`
/// gives no rows.
pub fn function_rows(profile: &Profile, sample_index: usize) -> Vec<FunctionRow> {
    let prepared = Prepared::new(profile);
    let stats = prepared.graph(sample_index, None);
    let mut nodes: Vec<usize> = (0..stats.len()).filter(|&n| stats[n].present()).collect();
    prepared.sort(&mut nodes, &stats, false);
    nodes
        .into_iter()
        .map(|n| FunctionRow {
            name: prepared.names[n].clone(),
            flat: stats[n].flat,
            cum: stats[n].cum,
        })
        .collect()
}

/// `value` in `unit` scaled to the unit pprof would print it in: `1.88s`, `10ms`, `1.50MB`
/// (memory units are powers of 1024), `12345` for counts; two decimals unless they are zeros.
pub fn format_value(value: i64, unit: &str) -> String {
    scaled_label(value, unit, "auto")
}

/// pprof's default `-nodefraction`: `top` drops nodes whose cum is below this share of the total.
const NODE_FRACTION: f64 = 0.005;
/// pprof's default `-edgefraction`: calls below this share are ignored for `(inline)` marks.
const EDGE_FRACTION: f64 = 0.001;

/// The sample type a report is about, and the profile's total for it.
struct Selected<'p> {
    index: usize,
    type_name: &'p str,
    unit: &'p str,
    /// Sum of the absolute values of all samples (pprof's `computeTotal`).
    total: i64,
}

impl<'p> Selected<'p> {
    fn new(profile: &'p Profile, prepared: &Prepared<'_>, opts: &ReportOptions) -> Result<Self> {
        if profile.sample_type.is_empty() {
            return Err(Error::Invalid("the profile has no sample types".into()));
        }
        let index = match &opts.sample_index {
            Some(name) => profile.sample_index(name)?,
            None => profile.default_sample_index(),
        };
        let vt = &profile.sample_type[index];
        let total = compute_total(profile, &prepared.samples, index);
        Ok(Selected {
            index,
            type_name: profile.str(vt.r#type),
            unit: profile.str(vt.unit),
            total,
        })
    }
}

/// pprof's `ProfileLabels`: the header lines above every text report. `format` prints a value
/// in the report's output unit.
fn profile_labels(
    profile: &Profile,
    sel: &Selected<'_>,
    opts: &ReportOptions,
    format: &dyn Fn(i64) -> String,
) -> Vec<String> {
    let mut labels = Vec::new();
    if let Some(title) = &opts.title {
        labels.push(format!("File: {title}"));
    }
    if let Some(main) = profile.mapping.first() {
        let file = profile.str(main.filename);
        if opts.title.is_none() && !file.is_empty() {
            labels.push(format!("File: {}", base_name(file)));
        }
        let build_id = profile.str(main.build_id);
        if !build_id.is_empty() {
            labels.push(format!("Build ID: {build_id}"));
        }
    }
    for &c in &profile.comment {
        let c = profile.str(c);
        if !c.starts_with('#') {
            labels.push(c.to_owned());
        }
    }
    labels.push(format!("Type: {}", sel.type_name));
    if profile.time_nanos != 0 {
        labels.push(format!("Time: {}", format_time(profile.time_nanos)));
    }
    if profile.duration_nanos != 0 {
        let duration = format_value(profile.duration_nanos, "nanoseconds");
        let (total_nanos, total_unit) = scale(sel.total, sel.unit, "nanoseconds");
        let ratio = if total_unit == "ns" && total_nanos != 0.0 {
            format!(
                "({})",
                percentage(total_nanos as i64, profile.duration_nanos)
            )
        } else {
            String::new()
        };
        labels.push(format!(
            "Duration: {duration}, Total samples = {} {ratio}",
            format(sel.total)
        ));
    }
    labels
}

/// Go's `Jan 2, 2006 at 3:04pm (MST)` layout, in UTC.
fn format_time(nanos: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = nanos.div_euclid(1_000_000_000);
    let (days, secs_of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (hour, minute) = (secs_of_day / 3600, secs_of_day % 3600 / 60);
    let (hour12, meridiem) = match hour {
        0 => (12, "am"),
        1..=11 => (hour, "am"),
        12 => (12, "pm"),
        _ => (hour - 12, "pm"),
    };
    format!(
        "{} {day}, {year} at {hour12}:{minute:02}{meridiem} (UTC)",
        MONTHS[(month - 1) as usize]
    )
}

/// One row of `top`: a node's flat and cum values and whether its callers inlined it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopRow {
    /// The node's printable name (a function, or `file:line`, ... at other granularities).
    pub name: String,
    /// Value of the samples whose leaf is this node.
    pub flat: i64,
    /// Value of the samples with this node anywhere in their stack, each sample once.
    pub cum: i64,
    /// `""`, `" (inline)"` or `" (partial-inline)"`, as pprof marks inlined functions.
    pub inline: &'static str,
}

/// What `top` shows, before it is laid out as text: the web UI draws the same table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopTable {
    /// The header lines (`File:`, `Type:`, ..., `Showing nodes accounting for ...`).
    pub labels: Vec<String>,
    /// The unit of the sample type (`nanoseconds`, `bytes`, `count`).
    pub unit: String,
    /// The unit values are printed in (`ms`, `MB`, ...), as pprof chooses it.
    pub output_unit: String,
    /// The sample type's name (`cpu`, `alloc_space`, ...).
    pub type_name: String,
    /// The total percentages are relative to.
    pub total: i64,
    /// The rows, in `top`'s order.
    pub rows: Vec<TopRow>,
}

impl TopTable {
    /// `value` formatted as the table prints it.
    pub fn format(&self, value: i64) -> String {
        scaled_label(value, &self.unit, &self.output_unit)
    }

    /// `value` as a percentage of `of`, as the table prints it (`75.02%`, `0.5%`, `100%`):
    /// renderers take it from here so every view rounds the same way.
    pub fn percent(value: i64, of: i64) -> String {
        percentage(value, of).trim_start().to_owned()
    }
}

/// How a report trims its graph: pprof trims `top` and `tree` (dropping nodes below 0.5% of the
/// total and edges below 0.1%) but not `peek`, `list` or `disasm`.
#[derive(Debug, Clone, Copy)]
struct Trim {
    /// Whether to drop low-value nodes and edges.
    fractions: bool,
    /// Keep at most this many nodes (0: all).
    nodecount: usize,
}

/// A graph as pprof's `newTrimmedGraph` leaves it: low-cum nodes dropped, at most `nodecount`
/// kept, sorted, low-weight edges removed.
struct Trimmed {
    stats: Vec<graph::NodeStat>,
    /// The kept nodes in report order.
    nodes: Vec<usize>,
    /// How many nodes survived the cum cutoff, before `nodecount`.
    orig_count: usize,
    /// How many the cum cutoff dropped.
    dropped: usize,
}

fn trimmed_graph(prepared: &Prepared<'_>, index: usize, trim: Trim, by_cum: bool) -> Trimmed {
    let mut stats = prepared.graph(index, None);
    let present = |stats: &[graph::NodeStat]| -> Vec<usize> {
        (0..stats.len()).filter(|&n| stats[n].present()).collect()
    };
    let mut nodes = present(&stats);
    let total_value: i64 = nodes.iter().map(|&n| stats[n].flat).sum();
    let (node_fraction, edge_fraction) = if trim.fractions {
        (NODE_FRACTION, EDGE_FRACTION)
    } else {
        (0.0, 0.0)
    };
    let node_cutoff = ((total_value as f64 * node_fraction) as i64).abs();
    let edge_cutoff = ((total_value as f64 * edge_fraction) as i64).abs();
    let mut dropped = 0;
    if node_cutoff > 0 {
        let kept: Vec<usize> = nodes
            .iter()
            .copied()
            .filter(|&n| stats[n].cum.abs() >= node_cutoff)
            .collect();
        if kept.len() != nodes.len() {
            dropped = nodes.len() - kept.len();
            stats = prepared.graph(index, Some(&mask(&kept, stats.len())));
            nodes = present(&stats);
        }
    }
    let orig_count = nodes.len();
    prepared.sort(&mut nodes, &stats, by_cum);
    if trim.nodecount > 0 && trim.nodecount < nodes.len() {
        nodes.truncate(trim.nodecount);
        stats = prepared.graph(index, Some(&mask(&nodes, stats.len())));
        nodes = present(&stats);
        prepared.sort(&mut nodes, &stats, by_cum);
    }
    if edge_cutoff > 0 {
        // pprof trims the edges into the graph's nodes only.
        for &n in &nodes {
            stats[n]
                .callers
                .retain(|_, &mut (w, _)| w.abs() >= edge_cutoff);
        }
    }
    Trimmed {
        stats,
        nodes,
        orig_count,
        dropped,
    }
}

/// pprof's `reportLabels`: the profile's header, active filters, and what the graph shows.
fn report_labels(
    profile: &Profile,
    sel: &Selected<'_>,
    opts: &ReportOptions,
    g: &Trimmed,
    format: &dyn Fn(i64) -> String,
) -> Vec<String> {
    let mut labels = profile_labels(profile, sel, opts, format);
    let active = opts.filters.active();
    if !active.is_empty() {
        labels.push("Active filters:".to_owned());
        labels.extend(active.iter().map(|f| format!("   {f}")));
    }
    let flat_sum: i64 = g.nodes.iter().map(|&n| g.stats[n].flat).sum();
    labels.push(format!(
        "Showing nodes accounting for {}, {} of {} total",
        format(flat_sum),
        percentage(flat_sum, sel.total).trim(),
        format(sel.total)
    ));
    if sel.total != 0 {
        if g.dropped > 0 {
            let cutoff = ((sel.total as f64 * NODE_FRACTION) as i64).abs();
            labels.push(format!(
                "Dropped {} {} (cum <= {})",
                g.dropped,
                if g.dropped > 1 { "nodes" } else { "node" },
                format(cutoff)
            ));
        }
        if !g.nodes.is_empty() && g.nodes.len() < g.orig_count {
            labels.push(format!(
                "Showing top {} nodes out of {}",
                g.nodes.len(),
                g.orig_count
            ));
        }
    }
    labels
}

/// A report's inputs after filtering: the drawn profile, its nodes and the chosen sample type.
struct Setup<'p> {
    prepared: Prepared<'p>,
    sel: Selected<'p>,
}

impl<'p> Setup<'p> {
    /// Filter (into `keep`), resolve nodes at the chosen granularity and select the sample
    /// type; the total is the unfiltered profile's, as pprof computes it before filtering.
    fn new(
        original: &'p Profile,
        opts: &ReportOptions,
        keep: &'p mut Option<Profile>,
    ) -> Result<(&'p Profile, Setup<'p>)> {
        let profile = drawn(original, opts, keep)?;
        let prepared = Prepared::with_granularity(profile, opts.granularity);
        let mut sel = Selected::new(profile, &prepared, opts)?;
        sel.total = unfiltered_total(original, opts, &sel);
        Ok((profile, Setup { prepared, sel }))
    }

    /// The unit values are printed in: `opts.unit`, or pprof's `minimum` choice for `nodes`.
    fn output_unit(&self, opts: &ReportOptions, g: &Trimmed) -> String {
        match opts.unit.as_deref() {
            Some(unit) if unit != "minimum" => unit.to_owned(),
            _ => select_output_unit(&g.nodes, &g.stats, &self.sel),
        }
    }
}

/// The table pprof's `-top` report prints: rows trimmed and sorted as
/// `go tool pprof -top [-cum] [-nodecount=N]` does, with the header lines above them.
pub fn top_table(profile: &Profile, opts: &ReportOptions) -> Result<TopTable> {
    let mut keep = None;
    let (drawn_profile, setup) = Setup::new(profile, opts, &mut keep)?;
    let trim = Trim {
        fractions: true,
        nodecount: opts.nodecount.unwrap_or(0),
    };
    let g = trimmed_graph(&setup.prepared, setup.sel.index, trim, opts.sort_by_cum);
    let output_unit = setup.output_unit(opts, &g);
    let sel = &setup.sel;
    let format = |v: i64| scaled_label(v, sel.unit, &output_unit);
    let labels = report_labels(drawn_profile, sel, opts, &g, &format);
    let rows = g
        .nodes
        .iter()
        .map(|&n| {
            let s = &g.stats[n];
            let (mut inline, mut not_inline) = (false, false);
            for &(_, is_inline) in s.callers.values() {
                if is_inline {
                    inline = true;
                } else {
                    not_inline = true;
                }
            }
            TopRow {
                name: setup.prepared.names[n].clone(),
                flat: s.flat,
                cum: s.cum,
                inline: match (inline, not_inline) {
                    (true, true) => " (partial-inline)",
                    (true, false) => " (inline)",
                    _ => "",
                },
            }
        })
        .collect();
    Ok(TopTable {
        labels,
        unit: sel.unit.to_owned(),
        output_unit,
        type_name: sel.type_name.to_owned(),
        total: sel.total,
        rows,
    })
}

/// pprof's `-top` report: the header, then one row per node with flat, flat%, sum%, cum and
/// cum%.
pub fn top(profile: &Profile, opts: &ReportOptions) -> Result<String> {
    let table = top_table(profile, opts)?;
    let mut out = String::new();
    for l in &table.labels {
        out.push_str(l);
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "{:>10} {:>5}% {:>5}% {:>10} {:>5}%",
        "flat", "flat", "sum", "cum", "cum"
    );
    let mut sum = 0;
    for row in &table.rows {
        sum += row.flat;
        let _ = writeln!(
            out,
            "{:>10} {} {} {:>10} {}  {}{}",
            table.format(row.flat),
            percentage(row.flat, table.total),
            percentage(sum, table.total),
            table.format(row.cum),
            percentage(row.cum, table.total),
            row.name,
            row.inline,
        );
    }
    Ok(out)
}

/// One edge of a `peek` or `tree` entry: a caller or callee and the value that flowed through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeekEdge {
    /// The caller's or callee's printable name.
    pub name: String,
    /// The value of the samples with this call.
    pub value: i64,
    /// Whether every such call was inlined.
    pub inline: bool,
}

/// A node of `peek` or `tree` with its callers and callees, each sorted by value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeekEntry {
    /// The node's printable name.
    pub name: String,
    /// Its flat value.
    pub flat: i64,
    /// Its cum value.
    pub cum: i64,
    /// Who called it, heaviest first.
    pub callers: Vec<PeekEdge>,
    /// What it called, heaviest first.
    pub callees: Vec<PeekEdge>,
}

/// A tree-shaped report's content: the header and the entries, with their formatter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeReport {
    /// The same table header as `top` (rows empty); its `format` prints values.
    pub table: TopTable,
    /// The entries in report order.
    pub entries: Vec<PeekEntry>,
}

/// The entries of pprof's `-tree` (`regex` None, trimmed, at most `nodecount` nodes, 80 by
/// default) or `-peek=REGEX` (untrimmed, only nodes whose name matches).
pub fn tree_report(
    profile: &Profile,
    opts: &ReportOptions,
    regex: Option<&str>,
) -> Result<TreeReport> {
    let rx = regex
        .map(|re| {
            regex::Regex::new(re).map_err(|e| {
                Error::Filter(format!(
                    "bad regular expression {re:?}: {}",
                    e.to_string().lines().last().unwrap_or_default()
                ))
            })
        })
        .transpose()?;
    let mut keep = None;
    let (drawn_profile, setup) = Setup::new(profile, opts, &mut keep)?;
    let trim = Trim {
        fractions: rx.is_none(),
        nodecount: if rx.is_none() {
            opts.nodecount.unwrap_or(80)
        } else {
            0
        },
    };
    let g = trimmed_graph(&setup.prepared, setup.sel.index, trim, opts.sort_by_cum);
    let output_unit = setup.output_unit(opts, &g);
    let sel = &setup.sel;
    let format = |v: i64| scaled_label(v, sel.unit, &output_unit);
    let labels = report_labels(drawn_profile, sel, opts, &g, &format);
    let names = &setup.prepared.names;
    let edge_order = |a: &(usize, usize, i64, bool), b: &(usize, usize, i64, bool)| {
        b.2.unsigned_abs()
            .cmp(&a.2.unsigned_abs())
            .then_with(|| names[a.0].cmp(&names[b.0]))
            .then_with(|| names[a.1].cmp(&names[b.1]))
    };
    // (caller, callee, weight, inline), grouped by caller. As in pprof, a node that left the
    // graph because its values sum to zero (a diff) still shows as a caller or callee.
    let mut callees: Vec<Vec<(usize, usize, i64, bool)>> = vec![Vec::new(); g.stats.len()];
    for (n, stat) in g.stats.iter().enumerate() {
        for (&caller, &(w, inline)) in &stat.callers {
            callees[caller].push((caller, n, w, inline));
        }
    }
    let edge = |name: usize, (_, _, value, inline): (usize, usize, i64, bool)| PeekEdge {
        name: names[name].clone(),
        value,
        inline,
    };
    let mut entries = Vec::new();
    for &n in &g.nodes {
        if rx.as_ref().is_some_and(|rx| !rx.is_match(&names[n])) {
            continue;
        }
        let mut ins: Vec<(usize, usize, i64, bool)> = g.stats[n]
            .callers
            .iter()
            .map(|(&c, &(w, inline))| (c, n, w, inline))
            .collect();
        ins.sort_by(edge_order);
        let mut outs = std::mem::take(&mut callees[n]);
        outs.sort_by(edge_order);
        entries.push(PeekEntry {
            name: names[n].clone(),
            flat: g.stats[n].flat,
            cum: g.stats[n].cum,
            callers: ins.into_iter().map(|e| edge(e.0, e)).collect(),
            callees: outs.into_iter().map(|e| edge(e.1, e)).collect(),
        });
    }
    if let (Some(re), true) = (regex, entries.is_empty()) {
        return Err(Error::NoMatch(format!("no matches found for regexp: {re}")));
    }
    Ok(TreeReport {
        table: TopTable {
            labels,
            unit: sel.unit.to_owned(),
            output_unit,
            type_name: sel.type_name.to_owned(),
            total: sel.total,
            rows: Vec::new(),
        },
        entries,
    })
}

/// Lay out a tree report as pprof's `printTree` does.
fn print_tree(report: &TreeReport) -> String {
    const SEPARATOR: &str =
        "----------------------------------------------------------+-------------";
    const LEGEND: &str =
        "      flat  flat%   sum%        cum   cum%   calls calls% + context \t \t ";
    let t = &report.table;
    let mut out = String::new();
    for l in &t.labels {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(SEPARATOR);
    out.push('\n');
    out.push_str(LEGEND);
    out.push('\n');
    let mut flat_sum = 0;
    let edge_line = |out: &mut String, e: &PeekEdge, cum: i64| {
        let _ = writeln!(
            out,
            "{:>50} {} |   {}{}",
            t.format(e.value),
            percentage(e.value, cum),
            e.name,
            if e.inline { " (inline)" } else { "" }
        );
    };
    for e in &report.entries {
        out.push_str(SEPARATOR);
        out.push('\n');
        for c in &e.callers {
            edge_line(&mut out, c, e.cum);
        }
        flat_sum += e.flat;
        let _ = writeln!(
            out,
            "{:>10} {} {} {:>10} {}                | {}",
            t.format(e.flat),
            percentage(e.flat, t.total),
            percentage(flat_sum, t.total),
            t.format(e.cum),
            percentage(e.cum, t.total),
            e.name
        );
        for c in &e.callees {
            edge_line(&mut out, c, e.cum);
        }
    }
    if !report.entries.is_empty() {
        out.push_str(SEPARATOR);
        out.push('\n');
    }
    out
}

/// pprof's `-tree` report: every node (trimmed as for a graph, at most `nodecount`, 80 by
/// default) with its callers above and callees below.
pub fn tree(profile: &Profile, opts: &ReportOptions) -> Result<String> {
    Ok(print_tree(&tree_report(profile, opts, None)?))
}

/// pprof's `-peek=REGEX` report: the nodes whose name matches, untrimmed, with their callers and
/// callees. No match is an [`Error::NoMatch`].
pub fn peek(profile: &Profile, opts: &ReportOptions, regex: &str) -> Result<String> {
    Ok(print_tree(&tree_report(profile, opts, Some(regex))?))
}

fn mask(nodes: &[usize], len: usize) -> Vec<bool> {
    let mut m = vec![false; len];
    for &n in nodes {
        m[n] = true;
    }
    m
}

/// pprof's `selectOutputUnit` for `-unit=minimum`: one unit for the whole table, fine enough
/// for the smallest value shown, coarser when that value is under 1% of the total.
fn select_output_unit(nodes: &[usize], stats: &[graph::NodeStat], sel: &Selected<'_>) -> String {
    if nodes.is_empty() {
        return "minimum".to_owned();
    }
    let mut min_value: i64 = 0;
    for &n in nodes {
        let mut v = stats[n].flat.abs();
        if v == 0 {
            v = stats[n].cum.abs();
        }
        if v > 0 && (min_value == 0 || v < min_value) {
            min_value = v;
        }
    }
    let max_value = sel.total;
    if min_value == 0 {
        min_value = max_value;
    }
    let (_, min_unit) = scale(min_value, sel.unit, "minimum");
    let (_, max_unit) = scale(max_value, sel.unit, "minimum");
    let mut unit = min_unit.clone();
    if min_unit != max_unit && min_value.saturating_mul(100) < max_value {
        unit = scale(min_value.saturating_mul(100), sel.unit, "minimum").1;
    }
    if unit.is_empty() {
        sel.unit.to_owned()
    } else {
        unit
    }
}

/// pprof's `-traces` report: the header, then every sample (merged as pprof merges them) with
/// its labels, its value and its stack leaf first, one frame per line, inlined frames marked
/// `(inline)`.
pub fn traces(profile: &Profile, opts: &ReportOptions) -> Result<String> {
    const SEPARATOR: &str = "-----------+-------------------------------------------------------";
    let original = profile;
    // pprof merges samples as it loads a profile, filters, and prints each filtered sample:
    // samples a filter made equal (a pruned leaf) stay apart.
    let identified = (!opts.filters.is_empty()).then(|| graph::with_loaded_identity(original));
    let mut keep = None;
    let profile = drawn(identified.as_ref().unwrap_or(original), opts, &mut keep)?;
    let prepared = Prepared::with_granularity(profile, opts.granularity);
    let mut sel = Selected::new(profile, &prepared, opts)?;
    sel.total = unfiltered_total(original, opts, &sel);
    let output_unit = opts.unit.as_deref().unwrap_or("minimum");
    let format = |v: i64| scaled_label(v, sel.unit, output_unit);
    let num_units = num_label_units(profile);

    let mut out = String::new();
    for l in profile_labels(profile, &sel, opts, &format) {
        out.push_str(&l);
        out.push('\n');
    }
    for sample in &prepared.samples {
        let mut stack: Vec<(usize, bool)> = Vec::new();
        for &loc in sample.locations.iter() {
            let frames = prepared.frames(loc);
            for (i, &n) in frames.iter().enumerate() {
                stack.push((n, i != frames.len() - 1));
            }
        }
        if stack.is_empty() {
            continue;
        }
        out.push_str(SEPARATOR);
        out.push('\n');

        // Labels, grouped by key (values in order), each kind sorted as printed lines.
        let mut strs: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut nums: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for l in sample.labels {
            let key = profile.str(l.key);
            if key == graph::LOADED_SAMPLE {
                continue;
            }
            if l.str != 0 {
                strs.entry(key).or_default().push(profile.str(l.str));
            } else if l.num != 0 || l.num_unit != 0 {
                nums.entry(key).or_default().push(l.num);
            }
        }
        let mut lines: Vec<String> = strs
            .iter()
            .map(|(k, vs)| format!("{k:>10}:  {}\n", vs.join(" ")))
            .collect();
        lines.sort();
        out.extend(lines);
        let mut lines: Vec<String> = nums
            .iter()
            .map(|(k, vs)| {
                let unit = num_units.get(k).map_or(*k, String::as_str);
                let vs: Vec<String> = vs.iter().map(|&v| format_value(v, unit)).collect();
                format!("{k:>10}:  {}\n", vs.join(" "))
            })
            .collect();
        lines.sort();
        out.extend(lines);

        let value = sample.values.get(sel.index).copied().unwrap_or(0);
        for (i, &(n, inline)) in stack.iter().enumerate() {
            let v = if i == 0 { format(value) } else { String::new() };
            let mark = if inline { " (inline)" } else { "" };
            let _ = writeln!(out, "{v:>10}   {}{mark}", prepared.names[n]);
        }
    }
    out.push_str(SEPARATOR);
    out.push('\n');
    Ok(out)
}

/// pprof's `NumLabelUnits`: each numeric label key's unit is the first unit given for it
/// anywhere in the profile, else `bytes` for `alignment` and `request`, else the key itself.
pub(crate) fn num_label_units(profile: &Profile) -> BTreeMap<&str, String> {
    let mut units: BTreeMap<&str, String> = BTreeMap::new();
    for s in &profile.sample {
        for l in &s.label {
            if l.str != 0 || (l.num == 0 && l.num_unit == 0) {
                continue;
            }
            let key = profile.str(l.key);
            let unit = profile.str(l.num_unit);
            let entry = units.entry(key).or_default();
            if entry.is_empty() && !unit.is_empty() {
                *entry = unit.to_owned();
            }
        }
    }
    for (key, unit) in &mut units {
        if unit.is_empty() {
            *unit = match *key {
                "alignment" | "request" => "bytes".to_owned(),
                k => k.to_owned(),
            };
        }
    }
    units
}

#[cfg(test)]
mod tests;
