//! Values per label value: the `cargo rprof tests` table (one row per test, one column per
//! measure of the profiles given) and the grouping `cargo rprof check --by test` compares.
//!
//! Every sample rprof writes carries string labels (`test`, `thread`, `binary`, `bench`). A row
//! sums the samples whose label `key` has one value; samples without the label form the row
//! [`UNLABELLED`]. Several profiles of different kinds (CPU, memory, block, mutex) give one
//! table: each kind brings its columns, and profiles of one kind add up into the same columns.
//! pprof's filters apply to each profile before anything is summed, so `--tagfocus` and
//! `--focus` mean what they mean in `top`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::filter::{self, Filters};
use super::units::percentage;
use crate::labels;
use crate::proto::Profile;
use crate::{Error, Result};

/// The row of the samples that lack the label.
pub const UNLABELLED: &str = "(unlabelled)";

pub use crate::{BLOCK_PROFILE_COMMENT, MUTEX_PROFILE_COMMENT};

/// What kind of profile a file holds, as far as its sample types, comments and file name tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProfileKindGuess {
    /// `samples/count cpu/nanoseconds`.
    Cpu,
    /// `alloc_objects/count alloc_space/bytes inuse_objects/count inuse_space/bytes`.
    Memory,
    /// `contentions/count delay/nanoseconds`, known to be a block profile.
    Block,
    /// `contentions/count delay/nanoseconds`, known to be a mutex profile.
    Mutex,
    /// `contentions/count delay/nanoseconds`, block or mutex: nothing says which.
    Delay,
}

impl ProfileKindGuess {
    /// Recognise `profile` by its sample types; a delay profile is a block or mutex profile
    /// when a comment says so, else when `file_stem` (the file's name without extensions)
    /// contains `block` or `mutex`. `None` for profiles of no kind above (threadcreate, ...).
    pub fn guess(profile: &Profile, file_stem: Option<&str>) -> Option<ProfileKindGuess> {
        let has = |t: &str, u: &str| {
            profile
                .sample_type
                .iter()
                .any(|vt| profile.str(vt.r#type) == t && profile.str(vt.unit) == u)
        };
        if has("cpu", "nanoseconds") {
            return Some(ProfileKindGuess::Cpu);
        }
        if has("alloc_space", "bytes")
            && has("alloc_objects", "count")
            && has("inuse_space", "bytes")
        {
            return Some(ProfileKindGuess::Memory);
        }
        if !(has("contentions", "count") && has("delay", "nanoseconds")) {
            return None;
        }
        let says = |block: bool, mutex: bool| match (block, mutex) {
            (true, false) => Some(ProfileKindGuess::Block),
            (false, true) => Some(ProfileKindGuess::Mutex),
            _ => None,
        };
        let comments = profile.comment.iter().map(|&c| profile.str(c));
        let by_comment = says(
            comments.clone().any(|c| c == BLOCK_PROFILE_COMMENT),
            comments.clone().any(|c| c == MUTEX_PROFILE_COMMENT),
        );
        let by_name = file_stem.and_then(|stem| {
            let stem = stem.to_lowercase();
            says(stem.contains("block"), stem.contains("mutex"))
        });
        Some(by_comment.or(by_name).unwrap_or(ProfileKindGuess::Delay))
    }

    /// The columns a profile of this kind brings to a table.
    pub fn columns(self) -> &'static [Column] {
        match self {
            ProfileKindGuess::Cpu => &[Column::Cpu],
            ProfileKindGuess::Memory => &[
                Column::AllocBytes,
                Column::AllocObjects,
                Column::InuseBytes,
                Column::PeakBytes,
            ],
            ProfileKindGuess::Block => &[Column::Block],
            ProfileKindGuess::Mutex => &[Column::Mutex],
            ProfileKindGuess::Delay => &[Column::Delay],
        }
    }
}

/// One measure of a per-label table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Column {
    /// CPU time (`cpu/nanoseconds`).
    Cpu,
    /// Bytes allocated (`alloc_space`).
    AllocBytes,
    /// Objects allocated (`alloc_objects`).
    AllocObjects,
    /// Bytes still live when the profile was written (`inuse_space`).
    InuseBytes,
    /// Bytes live at the process's peak heap (`peak_space`; rprof's memory profiles only).
    PeakBytes,
    /// Time spent blocked (a block profile's `delay`).
    Block,
    /// Time waiters spent on contended locks (a mutex profile's `delay`).
    Mutex,
    /// `delay` of a profile that could be either of the two above.
    Delay,
}

impl Column {
    /// Every column, in the order tables show them.
    pub const ALL: [Column; 8] = [
        Column::Cpu,
        Column::AllocBytes,
        Column::AllocObjects,
        Column::InuseBytes,
        Column::PeakBytes,
        Column::Block,
        Column::Mutex,
        Column::Delay,
    ];

    /// The column's name in a text table's header and for `--sort`.
    pub fn name(self) -> &'static str {
        match self {
            Column::Cpu => "cpu",
            Column::AllocBytes => "alloc_bytes",
            Column::AllocObjects => "alloc_objects",
            Column::InuseBytes => "inuse_bytes",
            Column::PeakBytes => "peak_bytes",
            Column::Block => "block",
            Column::Mutex => "mutex",
            Column::Delay => "delay",
        }
    }

    /// The column's key in JSON output, with its unit (`cpu_ns`, `alloc_bytes`, ...).
    pub fn json_name(self) -> &'static str {
        match self {
            Column::Cpu => "cpu_ns",
            Column::Block => "block_ns",
            Column::Mutex => "mutex_ns",
            Column::Delay => "delay_ns",
            other => other.name(),
        }
    }

    /// The column called `name` (its [`name`](Self::name) or [`json_name`](Self::json_name)).
    pub fn parse(name: &str) -> Option<Column> {
        Column::ALL
            .into_iter()
            .find(|c| c.name() == name || c.json_name() == name)
    }

    /// The sample type the column reads.
    pub fn sample_type(self) -> &'static str {
        match self {
            Column::Cpu => "cpu",
            Column::AllocBytes => "alloc_space",
            Column::AllocObjects => "alloc_objects",
            Column::InuseBytes => "inuse_space",
            Column::PeakBytes => "peak_space",
            Column::Block | Column::Mutex | Column::Delay => "delay",
        }
    }

    /// The unit of its values.
    pub fn unit(self) -> &'static str {
        match self {
            Column::AllocBytes | Column::InuseBytes | Column::PeakBytes => "bytes",
            Column::AllocObjects => "count",
            _ => "nanoseconds",
        }
    }
}

/// What a per-label table shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelOptions {
    /// pprof's filters, applied to each profile first.
    pub filters: Filters,
    /// The column rows are sorted by (descending); `None` for the table's first column.
    pub sort: Option<Column>,
}

/// One row: a label value and its value in each of the table's columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRow {
    /// The label's value (a test's path, `(shared)`, ...) or [`UNLABELLED`].
    pub label: String,
    /// One value per column of the table, in the table's column order.
    pub values: Vec<i64>,
}

/// A per-label table: what `cargo rprof tests` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelTable {
    /// The label key the rows are grouped by (`test`, ...).
    pub key: String,
    /// The columns present, in [`Column::ALL`] order.
    pub columns: Vec<Column>,
    /// Each column's total over all rows (what percentages are of).
    pub totals: Vec<i64>,
    /// The column the rows are sorted by.
    pub sort: Column,
    /// The rows, sorted by `sort` descending, ties by label.
    pub rows: Vec<LabelRow>,
}

/// The value of string label `key` on a sample, if it has one.
fn label_value<'p>(
    profile: &'p Profile,
    labels: &[crate::proto::Label],
    key: &str,
) -> Option<&'p str> {
    labels
        .iter()
        .find(|l| l.str != 0 && profile.str(l.key) == key)
        .map(|l| profile.str(l.str))
}

/// Whether `profile` has samples but none of them carries string label `key`: a profile a
/// per-label report cannot say anything about. An empty profile lacks nothing.
pub fn lacks_label(profile: &Profile, key: &str) -> bool {
    !profile.sample.is_empty()
        && profile
            .sample
            .iter()
            .all(|s| label_value(profile, &s.label, key).is_none())
}

/// The sum of sample type `index` per value of label `key` (samples without it under
/// [`UNLABELLED`]). Rows whose samples sum to zero are still there.
///
/// Tests of a profile merged from several binaries are named `<binary> <test>`, as nextest
/// names them: `recv` of `tests/bounded.rs` and `recv` of `tests/unbounded.rs` are two tests.
pub fn values_by_label(profile: &Profile, key: &str, index: usize) -> BTreeMap<String, i64> {
    let qualify = key == labels::TEST && several_binaries(profile);
    let mut out = BTreeMap::new();
    let mut qualified = String::new();
    for s in &profile.sample {
        let mut label = label_value(profile, &s.label, key).unwrap_or(UNLABELLED);
        if qualify && !label.starts_with('(') {
            if let Some(binary) = label_value(profile, &s.label, labels::BINARY) {
                qualified.clear();
                qualified.push_str(binary);
                qualified.push(' ');
                qualified.push_str(label);
                label = &qualified;
            }
        }
        let v = s.value.get(index).copied().unwrap_or(0);
        match out.get_mut(label) {
            Some(acc) => *acc += v,
            None => {
                out.insert(label.to_owned(), v);
            }
        }
    }
    out
}

/// Whether the samples of `profile` come from more than one binary (by their `binary` label).
fn several_binaries(profile: &Profile) -> bool {
    let mut first = None;
    for s in &profile.sample {
        if let Some(b) = label_value(profile, &s.label, labels::BINARY) {
            match first {
                None => first = Some(b),
                Some(f) if f != b => return true,
                _ => {}
            }
        }
    }
    false
}

/// The columns of `kind` whose sample type `profile` has (a memory profile written by Go has no
/// `peak_space`).
fn present_columns(kind: ProfileKindGuess, profile: &Profile) -> impl Iterator<Item = Column> + '_ {
    kind.columns()
        .iter()
        .copied()
        .filter(|c| profile.sample_index(c.sample_type()).is_ok())
}

/// The per-label table of `profiles` (each with its kind): one row per value of label `key`,
/// one column per measure their kinds bring. A profile with samples of which none has the
/// label is an [`Error::NoLabel`] naming its position; asking to sort by a column the profiles
/// do not have is an [`Error::BadOption`].
pub fn per_label_rows(
    profiles: &[(ProfileKindGuess, &Profile)],
    key: &str,
    opts: &LabelOptions,
) -> Result<LabelTable> {
    if let Some(input) = profiles.iter().position(|(_, p)| lacks_label(p, key)) {
        return Err(Error::NoLabel {
            key: key.to_owned(),
            input,
        });
    }
    let mut columns: Vec<Column> = profiles
        .iter()
        .flat_map(|(kind, p)| present_columns(*kind, p))
        .collect();
    columns.sort();
    columns.dedup();
    let sort = match opts.sort {
        Some(c) if !columns.contains(&c) => {
            return Err(Error::BadOption(format!(
                "no `{}` column in these profiles (they have: {})",
                c.name(),
                columns
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
        Some(c) => c,
        None => *columns
            .first()
            .ok_or_else(|| Error::BadOption("no profiles to tabulate".into()))?,
    };
    let mut sums: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for &(kind, profile) in profiles {
        let filtered;
        let profile = if opts.filters.is_empty() {
            profile
        } else {
            filtered = filter::apply(profile, &opts.filters)?.0;
            &filtered
        };
        for column in present_columns(kind, profile) {
            let at = columns
                .iter()
                .position(|&c| c == column)
                .expect("every kind's columns are in the table");
            let index = profile.sample_index(column.sample_type())?;
            for (label, v) in values_by_label(profile, key, index) {
                sums.entry(label).or_insert_with(|| vec![0; columns.len()])[at] += v;
            }
        }
    }
    let mut totals = vec![0i64; columns.len()];
    for values in sums.values() {
        for (t, v) in totals.iter_mut().zip(values) {
            *t += v;
        }
    }
    let at = columns.iter().position(|&c| c == sort).unwrap_or(0);
    let mut rows: Vec<LabelRow> = sums
        .into_iter()
        .map(|(label, values)| LabelRow { label, values })
        .collect();
    // Stable: ties keep the label order of the BTreeMap.
    rows.sort_by_key(|r| std::cmp::Reverse(r.values[at]));
    Ok(LabelTable {
        key: key.to_owned(),
        columns,
        totals,
        sort,
        rows,
    })
}

impl LabelTable {
    /// The table as text: a header, then one line per row (at most `limit` rows; `None` or 0
    /// for all) with each column's value and its share of the column's total, the label last.
    /// A cut table says so on a first line.
    pub fn text(&self, limit: Option<usize>) -> String {
        let shown = match limit {
            Some(n) if n > 0 => n.min(self.rows.len()),
            _ => self.rows.len(),
        };
        let widths: Vec<(usize, usize)> = self
            .columns
            .iter()
            .map(|c| (c.name().len().max(10), (c.name().len() + 1).max(7)))
            .collect();
        let mut out = String::new();
        if shown < self.rows.len() {
            let _ = writeln!(
                out,
                "Showing top {shown} of {} by {}",
                self.rows.len(),
                self.sort.name()
            );
        }
        for (c, &(w, pw)) in self.columns.iter().zip(&widths) {
            let pct = format!("{}%", c.name());
            let _ = write!(out, "{:>w$} {pct:>pw$} ", c.name());
        }
        let _ = writeln!(out, " {}", self.key);
        for row in &self.rows[..shown] {
            for (i, (c, &(w, pw))) in self.columns.iter().zip(&widths).enumerate() {
                let v = row.values[i];
                let _ = write!(
                    out,
                    "{:>w$} {:>pw$} ",
                    super::format_value(v, c.unit()),
                    percentage(v, self.totals[i]).trim_start()
                );
            }
            let _ = writeln!(out, " {}", row.label);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::ProfileBuilder;
    use crate::proto::Label;

    /// A profile of `types` with one sample per `(test label or None, values)`, all on one
    /// stack.
    fn labelled(
        types: &[(&str, &str)],
        comment: Option<&str>,
        samples: &[(Option<&str>, &[i64])],
    ) -> Profile {
        let mut b = ProfileBuilder::new(types, types[0], 1);
        if let Some(c) = comment {
            b.comment(c);
        }
        let f = b.function("work", "work", "src/lib.rs", 1);
        let l = b.location(0, 0x10, &[(f, 1)]);
        let key = b.string("test");
        let thread = b.string("thread");
        for &(test, values) in samples {
            let main = b.string("main");
            let mut labels = vec![Label {
                key: thread,
                str: main,
                num: 0,
                num_unit: 0,
            }];
            if let Some(t) = test {
                labels.push(Label {
                    key,
                    str: b.string(t),
                    num: 0,
                    num_unit: 0,
                });
            }
            b.add_labeled_sample(&[l], values, labels);
        }
        b.build()
    }

    const CPU: &[(&str, &str)] = &[("samples", "count"), ("cpu", "nanoseconds")];
    const MEM: &[(&str, &str)] = &[
        ("alloc_objects", "count"),
        ("alloc_space", "bytes"),
        ("inuse_objects", "count"),
        ("inuse_space", "bytes"),
    ];
    const DELAY: &[(&str, &str)] = &[("contentions", "count"), ("delay", "nanoseconds")];

    fn cpu() -> Profile {
        labelled(
            CPU,
            None,
            &[
                (Some("tests::a"), &[3, 30_000_000]),
                (Some("tests::b"), &[1, 10_000_000]),
                (Some("tests::a"), &[2, 20_000_000]),
                (Some("(shared)"), &[1, 10_000_000]),
                (None, &[4, 40_000_000]),
            ],
        )
    }

    fn mem() -> Profile {
        labelled(
            MEM,
            None,
            &[
                (Some("tests::a"), &[2, 64, 1, 16]),
                (Some("tests::b"), &[10, 2048, 0, 0]),
            ],
        )
    }

    #[test]
    fn kinds_are_told_by_types_then_comment_then_file_name() {
        use ProfileKindGuess as K;
        assert_eq!(K::guess(&cpu(), Some("mutex")), Some(K::Cpu));
        assert_eq!(K::guess(&mem(), None), Some(K::Memory));
        let delay = labelled(DELAY, None, &[]);
        assert_eq!(K::guess(&delay, None), Some(K::Delay));
        assert_eq!(K::guess(&delay, Some("Block")), Some(K::Block));
        assert_eq!(K::guess(&delay, Some("base-mutex")), Some(K::Mutex));
        assert_eq!(K::guess(&delay, Some("block-mutex")), Some(K::Delay));
        let marked = labelled(DELAY, Some(MUTEX_PROFILE_COMMENT), &[]);
        assert_eq!(K::guess(&marked, Some("block")), Some(K::Mutex));
        let threads = labelled(&[("threads", "count")], None, &[]);
        assert_eq!(K::guess(&threads, None), None);
    }

    #[test]
    fn rows_sum_per_test_across_profile_kinds() {
        let (cpu, mem) = (cpu(), mem());
        let block = labelled(DELAY, None, &[(Some("tests::b"), &[2, 5_000])]);
        let table = per_label_rows(
            &[
                (ProfileKindGuess::Memory, &mem),
                (ProfileKindGuess::Cpu, &cpu),
                (ProfileKindGuess::Block, &block),
            ],
            "test",
            &LabelOptions::default(),
        )
        .unwrap();
        assert_eq!(
            table.columns,
            [
                Column::Cpu,
                Column::AllocBytes,
                Column::AllocObjects,
                Column::InuseBytes,
                Column::Block
            ]
        );
        assert_eq!(table.sort, Column::Cpu);
        assert_eq!(
            table.totals,
            [110_000_000, 2112, 12, 16, 5_000],
            "cpu, alloc bytes, alloc objects, inuse bytes, block"
        );
        let rows: Vec<(&str, &[i64])> = table
            .rows
            .iter()
            .map(|r| (r.label.as_str(), r.values.as_slice()))
            .collect();
        assert_eq!(
            rows,
            [
                ("tests::a", &[50_000_000, 64, 2, 16, 0][..]),
                (UNLABELLED, &[40_000_000, 0, 0, 0, 0][..]),
                ("(shared)", &[10_000_000, 0, 0, 0, 0][..]),
                ("tests::b", &[10_000_000, 2048, 10, 0, 5_000][..]),
            ]
        );
        assert_eq!(
            table.text(Some(2)),
            "Showing top 2 of 4 by cpu\n\
             \x20      cpu    cpu% alloc_bytes alloc_bytes% alloc_objects alloc_objects% inuse_bytes inuse_bytes%      block  block%  test\n\
             \x20     50ms  45.45%         64B        3.03%             2         16.67%         16B         100%          0      0%  tests::a\n\
             \x20     40ms  36.36%           0           0%             0             0%           0           0%          0      0%  (unlabelled)\n"
        );
    }

    #[test]
    fn sorting_by_another_column_breaks_ties_by_name() {
        let (cpu, mem) = (cpu(), mem());
        let opts = LabelOptions {
            sort: Some(Column::AllocObjects),
            ..Default::default()
        };
        let inputs = [
            (ProfileKindGuess::Cpu, &cpu),
            (ProfileKindGuess::Memory, &mem),
        ];
        let table = per_label_rows(&inputs, "test", &opts).unwrap();
        let order: Vec<&str> = table.rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(order, ["tests::b", "tests::a", "(shared)", UNLABELLED]);
        let opts = LabelOptions {
            sort: Some(Column::Mutex),
            ..Default::default()
        };
        let e = per_label_rows(&inputs, "test", &opts).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no `mutex` column in these profiles (they have: cpu, alloc_bytes, alloc_objects, inuse_bytes)"
        );
    }

    #[test]
    fn filters_apply_before_summing() {
        let cpu = cpu();
        let opts = LabelOptions {
            filters: Filters {
                tagfocus: Some("test=^tests::".into()),
                ..Default::default()
            },
            sort: None,
        };
        let table = per_label_rows(&[(ProfileKindGuess::Cpu, &cpu)], "test", &opts).unwrap();
        let rows: Vec<(&str, i64)> = table
            .rows
            .iter()
            .map(|r| (r.label.as_str(), r.values[0]))
            .collect();
        assert_eq!(rows, [("tests::a", 50_000_000), ("tests::b", 10_000_000)]);
        assert_eq!(table.totals, [60_000_000]);
    }

    #[test]
    fn a_profile_without_the_label_is_an_error_naming_it() {
        let (cpu, mem) = (cpu(), mem());
        let old = labelled(MEM, None, &[(None, &[1, 8, 1, 8])]);
        let empty = labelled(MEM, None, &[]);
        let e = per_label_rows(
            &[
                (ProfileKindGuess::Cpu, &cpu),
                (ProfileKindGuess::Memory, &empty),
                (ProfileKindGuess::Memory, &old),
            ],
            "test",
            &LabelOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&e, Error::NoLabel { key, input: 2 } if key == "test"),
            "{e:?}"
        );
        assert!(lacks_label(&mem, "bench") && !lacks_label(&mem, "thread"));
        assert!(
            !lacks_label(&empty, "test"),
            "an empty profile lacks nothing"
        );
    }
}
