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

pub mod filter;
pub mod flame;
mod flamegraph;
mod graph;
mod units;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::proto::Profile;
use crate::{Error, Result};

pub use flamegraph::flamegraph;
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
    let prepared = Prepared::new(profile);
    prepared
        .samples
        .iter()
        .map(|s| s.values.get(sel.index).copied().unwrap_or(0).abs())
        .sum()
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
        let total = prepared
            .samples
            .iter()
            .map(|s| s.values.get(index).copied().unwrap_or(0).abs())
            .sum();
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

/// pprof's `-top` report: the header, then one row per function with flat, flat%, sum%, cum
/// and cum%, trimmed and sorted as `go tool pprof -top [-cum] [-nodecount=N]` does.
pub fn top(profile: &Profile, opts: &ReportOptions) -> Result<String> {
    let original = profile;
    let mut keep = None;
    let profile = drawn(original, opts, &mut keep)?;
    let prepared = Prepared::new(profile);
    let mut sel = Selected::new(profile, &prepared, opts)?;
    sel.total = unfiltered_total(original, opts, &sel);

    // pprof's newTrimmedGraph: drop low-cum nodes, then keep the first `nodecount`.
    let mut stats = prepared.graph(sel.index, None);
    let present = |stats: &[graph::NodeStat]| -> Vec<usize> {
        (0..stats.len()).filter(|&n| stats[n].present()).collect()
    };
    let mut nodes = present(&stats);
    let total_value: i64 = nodes.iter().map(|&n| stats[n].flat).sum();
    let node_cutoff = ((total_value as f64 * NODE_FRACTION) as i64).abs();
    let edge_cutoff = ((total_value as f64 * EDGE_FRACTION) as i64).abs();
    let mut dropped = 0;
    if node_cutoff > 0 {
        let kept: Vec<usize> = nodes
            .iter()
            .copied()
            .filter(|&n| stats[n].cum.abs() >= node_cutoff)
            .collect();
        if kept.len() != nodes.len() {
            dropped = nodes.len() - kept.len();
            stats = prepared.graph(sel.index, Some(&mask(&kept, stats.len())));
            nodes = present(&stats);
        }
    }
    let orig_count = nodes.len();
    prepared.sort(&mut nodes, &stats, opts.sort_by_cum);
    if let Some(n) = opts.nodecount.filter(|&n| n > 0 && n < nodes.len()) {
        nodes.truncate(n);
        stats = prepared.graph(sel.index, Some(&mask(&nodes, stats.len())));
        nodes = present(&stats);
        prepared.sort(&mut nodes, &stats, opts.sort_by_cum);
    }

    let output_unit = select_output_unit(&nodes, &stats, &sel);
    let format = |v: i64| scaled_label(v, sel.unit, &output_unit);

    let mut labels = profile_labels(profile, &sel, opts, &format);
    let active = opts.filters.active();
    if !active.is_empty() {
        labels.push("Active filters:".to_owned());
        labels.extend(active.iter().map(|f| format!("   {f}")));
    }
    let flat_sum: i64 = nodes.iter().map(|&n| stats[n].flat).sum();
    labels.push(format!(
        "Showing nodes accounting for {}, {} of {} total",
        format(flat_sum),
        percentage(flat_sum, sel.total).trim(),
        format(sel.total)
    ));
    if sel.total != 0 {
        if dropped > 0 {
            let cutoff = ((sel.total as f64 * NODE_FRACTION) as i64).abs();
            labels.push(format!(
                "Dropped {dropped} {} (cum <= {})",
                if dropped > 1 { "nodes" } else { "node" },
                format(cutoff)
            ));
        }
        if !nodes.is_empty() && nodes.len() < orig_count {
            labels.push(format!(
                "Showing top {} nodes out of {orig_count}",
                nodes.len()
            ));
        }
    }

    let mut out = String::new();
    for l in labels {
        out.push_str(&l);
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "{:>10} {:>5}% {:>5}% {:>10} {:>5}%",
        "flat", "flat", "sum", "cum", "cum"
    );
    let mut sum = 0;
    for &n in &nodes {
        let s = &stats[n];
        sum += s.flat;
        let (mut inline, mut not_inline) = (false, false);
        for &(weight, is_inline) in s.callers.values() {
            if weight.abs() < edge_cutoff {
                continue; // pprof trims such edges before looking at them
            }
            if is_inline {
                inline = true;
            } else {
                not_inline = true;
            }
        }
        let mark = match (inline, not_inline) {
            (true, true) => " (partial-inline)",
            (true, false) => " (inline)",
            _ => "",
        };
        let _ = writeln!(
            out,
            "{:>10} {} {} {:>10} {}  {}{mark}",
            format(s.flat),
            percentage(s.flat, sel.total),
            percentage(sum, sel.total),
            format(s.cum),
            percentage(s.cum, sel.total),
            prepared.names[n],
        );
    }
    Ok(out)
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
    let mut keep = None;
    let profile = drawn(original, opts, &mut keep)?;
    let prepared = Prepared::new(profile);
    let mut sel = Selected::new(profile, &prepared, opts)?;
    sel.total = unfiltered_total(original, opts, &sel);
    let format = |v: i64| scaled_label(v, sel.unit, "minimum");
    let num_units = num_label_units(profile);

    let mut out = String::new();
    for l in profile_labels(profile, &sel, opts, &format) {
        out.push_str(&l);
        out.push('\n');
    }
    for sample in &prepared.samples {
        let mut stack: Vec<(usize, bool)> = Vec::new();
        for &loc in sample.locations {
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
fn num_label_units(profile: &Profile) -> BTreeMap<&str, String> {
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
