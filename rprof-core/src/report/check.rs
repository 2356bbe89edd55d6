//! The regression gate behind `cargo rprof check BASE NEW`: group both profiles' values by a
//! label (each test) or by function, and report the keys whose value grew past a threshold.
//!
//! A key regresses when `new > base * (1 + max_increase_pct / 100)` and
//! `new - base >= min_delta`; a key only NEW has counts with base 0 (so it regresses when its
//! value is positive and at least `min_delta`). Keys only BASE has never regress.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::bylabel::{self, ProfileKindGuess};
use super::filter::{self, Filters};
use crate::proto::Profile;
use crate::{Error, Result};

/// The default `--max-increase` for CPU profiles: CPU time of a test varies from run to run
/// (scheduling, caches, frequency scaling, sampling), and a gate must not fail on that noise.
/// Measured (`tests/labels.rs`, 20 unchanged runs of a fixture with tests of 0.2–0.9 s at
/// 100 Hz against one base, 2-core VM): the largest per-test change was 10.5% on a quiet machine;
/// under a concurrent build, lost timer samples made tests look up to 42% *cheaper*, never
/// dearer. 25% leaves that quiet noise a margin of more than two.
pub const DEFAULT_CPU_MAX_INCREASE_PCT: f64 = 25.0;

/// The default `--min-delta` for CPU profiles: a change smaller than this is within what a few
/// samples at the default 100 Hz weigh, whatever the percentage (one sample is 10 ms; a test of
/// 100 ms moves by a sample or two between runs).
pub const DEFAULT_CPU_MIN_DELTA: Duration = Duration::from_millis(50);

/// When a key counts as regressed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// How much larger than base NEW may be, in percent (0: any increase regresses).
    pub max_increase_pct: f64,
    /// The smallest increase that can regress, in the sample type's unit.
    pub min_delta: i64,
}

impl Threshold {
    /// The defaults for sample type `index` of `profile`: for a CPU profile
    /// [`DEFAULT_CPU_MAX_INCREASE_PCT`] and [`DEFAULT_CPU_MIN_DELTA`] (in samples, by the
    /// profile's period, when the sample type is `samples`); for others 0% and 0, since memory
    /// profiles at `--memprofilerate 1` and block profiles count exactly.
    pub fn defaults(profile: &Profile, index: usize) -> Threshold {
        if ProfileKindGuess::guess(profile, None) != Some(ProfileKindGuess::Cpu) {
            return Threshold {
                max_increase_pct: 0.0,
                min_delta: 0,
            };
        }
        let nanos = DEFAULT_CPU_MIN_DELTA.as_nanos() as i64;
        let unit = profile
            .sample_type
            .get(index)
            .map_or("", |vt| profile.str(vt.unit));
        let period_in_ns = profile
            .period_type
            .is_some_and(|vt| profile.str(vt.unit) == "nanoseconds")
            && profile.period > 0;
        let min_delta = if unit == "nanoseconds" || !period_in_ns {
            nanos
        } else {
            (nanos + profile.period - 1) / profile.period
        };
        Threshold {
            max_increase_pct: DEFAULT_CPU_MAX_INCREASE_PCT,
            min_delta,
        }
    }

    /// Whether going from `base` to `new` regresses.
    pub fn regresses(&self, base: i64, new: i64) -> bool {
        let delta = i128::from(new) - i128::from(base);
        delta > 0
            && delta as f64 > base as f64 * self.max_increase_pct / 100.0
            && delta >= i128::from(self.min_delta)
    }
}

/// `text` (`10ms`, `1MB`, `3`) in `unit`, the unit of the sample type compared: for
/// `--min-delta`. A bare number is already in `unit`.
pub fn parse_delta(text: &str, unit: &str) -> Result<i64> {
    super::units::parse_quantity(text, unit)
        .filter(|&v| v >= 0)
        .ok_or_else(|| {
            Error::BadOption(format!(
                "`{text}` is not an amount of {unit} (e.g. `10ms`, `1MB`, `3`)"
            ))
        })
}

/// One key whose value changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// A test's name (a label value) or a function's.
    pub key: String,
    /// Its value in BASE (0 when BASE lacks it).
    pub base: i64,
    /// Its value in NEW.
    pub new: i64,
}

impl Change {
    /// `new - base`.
    pub fn delta(&self) -> i64 {
        self.new - self.base
    }

    /// The increase in percent of base; `None` when base is 0.
    pub fn percent(&self) -> Option<f64> {
        (self.base != 0).then(|| self.delta() as f64 * 100.0 / self.base as f64)
    }
}

/// What a comparison found.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// How many keys were compared (those of BASE and NEW together).
    pub compared: usize,
    /// The keys that regressed, largest delta first, ties by key.
    pub regressions: Vec<Change>,
}

/// Compare per-key values of BASE and NEW under `threshold`.
pub fn compare(
    base: &BTreeMap<String, i64>,
    new: &BTreeMap<String, i64>,
    threshold: &Threshold,
) -> Comparison {
    let keys: BTreeSet<&String> = base.keys().chain(new.keys()).collect();
    let mut regressions: Vec<Change> = keys
        .iter()
        .map(|&key| Change {
            key: key.clone(),
            base: base.get(key).copied().unwrap_or(0),
            new: new.get(key).copied().unwrap_or(0),
        })
        .filter(|c| threshold.regresses(c.base, c.new))
        .collect();
    // Stable: ties keep the key order.
    regressions.sort_by_key(|c| std::cmp::Reverse(c.delta()));
    Comparison {
        compared: keys.len(),
        regressions,
    }
}

/// What the keys of a comparison are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    /// The values of this string label (`test`); samples without it under
    /// [`bylabel::UNLABELLED`].
    Label(String),
    /// Functions, by flat value (each sample counts for its leaf function only, so the keys
    /// add up to the total, as in `top`), untrimmed.
    Function,
}

/// Whether `key` of a comparison grouped `by` is gated. Grouped by test, the rows that are not
/// rows that no test owns are not: `(shared)` is libtest's own bookkeeping (its allocations and
/// waits vary with the order in which tests finish) and `(harness)` is rprof's. `(unlabelled)`
/// (a binary without libtest, in a merged run) is gated: its work is the program's.
pub fn is_gated(by: &GroupBy, key: &str) -> bool {
    if *by != GroupBy::Label(crate::labels::TEST.to_owned()) {
        return true;
    }
    ![crate::labels::SHARED, crate::labels::HARNESS]
        .iter()
        .any(|row| key == *row || key.strip_suffix(row).is_some_and(|k| k.ends_with(' ')))
}

/// The values of sample type `index` of `profile` (after `filters`), per key of `by`. A profile
/// whose samples all lack the label is an [`Error::NoLabel`] with input 0.
pub fn grouped_values(
    profile: &Profile,
    by: &GroupBy,
    index: usize,
    filters: &Filters,
) -> Result<BTreeMap<String, i64>> {
    if let GroupBy::Label(key) = by {
        if bylabel::lacks_label(profile, key) {
            return Err(Error::NoLabel {
                key: key.clone(),
                input: 0,
            });
        }
    }
    let filtered;
    let profile = if filters.is_empty() {
        profile
    } else {
        filtered = filter::apply(profile, filters)?.0;
        &filtered
    };
    Ok(match by {
        GroupBy::Label(key) => bylabel::values_by_label(profile, key, index),
        GroupBy::Function => {
            let mut out = BTreeMap::new();
            for row in super::function_rows(profile, index) {
                if row.flat != 0 {
                    *out.entry(row.name).or_insert(0) += row.flat;
                }
            }
            out
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::ProfileBuilder;
    use crate::proto::Label;

    fn map(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
        pairs.iter().map(|&(k, v)| (k.to_owned(), v)).collect()
    }

    const EXACT: Threshold = Threshold {
        max_increase_pct: 0.0,
        min_delta: 0,
    };

    #[test]
    fn the_rule_needs_both_the_percentage_and_the_delta() {
        let t = Threshold {
            max_increase_pct: 25.0,
            min_delta: 50,
        };
        assert!(!t.regresses(200, 250), "+25% exactly is allowed");
        assert!(t.regresses(200, 251), "+25.5% and +51");
        assert!(!t.regresses(100, 149), "+49%, but only +49");
        assert!(t.regresses(100, 150), "+50% and +50");
        assert!(!t.regresses(1000, 1200), "+200, but only +20%");
        assert!(t.regresses(0, 50), "new key: 50 >= min delta");
        assert!(!t.regresses(0, 49));
        assert!(!t.regresses(100, 90) && !t.regresses(5, 5));
        assert!(EXACT.regresses(1000, 1001), "one allocation more");
        assert!(!EXACT.regresses(1000, 1000) && !EXACT.regresses(0, 0));
        assert!(EXACT.regresses(0, 1));
        // Exact for values past f64's integers.
        assert!(EXACT.regresses(i64::MAX - 1, i64::MAX));
    }

    #[test]
    fn comparison_lists_regressions_by_delta() {
        let base = map(&[("a", 10), ("b", 100), ("c", 7), ("gone", 50)]);
        let new = map(&[("a", 11), ("b", 100), ("c", 8), ("fresh", 3), ("z", 6)]);
        let base_z = {
            let mut m = base.clone();
            m.insert("z".into(), 5);
            m
        };
        let c = compare(&base_z, &new, &EXACT);
        assert_eq!(c.compared, 6);
        let got: Vec<(&str, i64, i64, i64)> = c
            .regressions
            .iter()
            .map(|r| (r.key.as_str(), r.base, r.new, r.delta()))
            .collect();
        assert_eq!(
            got,
            [
                ("fresh", 0, 3, 3),
                ("a", 10, 11, 1),
                ("c", 7, 8, 1),
                ("z", 5, 6, 1)
            ]
        );
        assert_eq!(c.regressions[1].percent(), Some(10.0));
        assert_eq!(c.regressions[0].percent(), None);
        let loose = Threshold {
            max_increase_pct: 12.0,
            min_delta: 1,
        };
        let got: Vec<String> = compare(&base_z, &new, &loose)
            .regressions
            .into_iter()
            .map(|r| r.key)
            .collect();
        assert_eq!(got, ["fresh", "c", "z"], "a grew 10%, c 14.3%, z 20%");
        assert!(compare(&base, &base, &EXACT).regressions.is_empty());
    }

    fn cpu_profile(period: i64) -> Profile {
        let mut b = ProfileBuilder::new(
            &[("samples", "count"), ("cpu", "nanoseconds")],
            ("cpu", "nanoseconds"),
            period,
        );
        let f = b.function("work", "work", "src/lib.rs", 1);
        let g = b.function("helper", "helper", "src/lib.rs", 9);
        let lf = b.location(0, 0x10, &[(f, 1)]);
        let lg = b.location(0, 0x20, &[(g, 9)]);
        let key = b.string("test");
        for (stack, n, test) in [
            (vec![lf], 3, "t::a"),
            (vec![lg, lf], 2, "t::a"),
            (vec![lg], 5, "t::b"),
        ] {
            let label = Label {
                key,
                str: b.string(test),
                num: 0,
                num_unit: 0,
            };
            b.add_labeled_sample(&stack, &[n, n * period], vec![label]);
        }
        b.build()
    }

    #[test]
    fn cpu_defaults_allow_noise_and_others_are_exact() {
        let p = cpu_profile(10_000_000);
        let t = Threshold::defaults(&p, 1);
        assert_eq!((t.max_increase_pct, t.min_delta), (25.0, 50_000_000));
        assert_eq!(
            Threshold::defaults(&p, 0).min_delta,
            5,
            "50ms at 10ms a sample"
        );
        assert_eq!(
            Threshold::defaults(&cpu_profile(3_000_000), 0).min_delta,
            17
        );
        let mut b = ProfileBuilder::new(&[("alloc_objects", "count")], ("space", "bytes"), 1);
        b.default_sample_type("alloc_objects");
        assert_eq!(Threshold::defaults(&b.build(), 0), EXACT);
    }

    #[test]
    fn only_tests_are_gated() {
        let by_test = GroupBy::Label("test".into());
        assert!(is_gated(&by_test, "tests::parse"));
        assert!(is_gated(&by_test, "(doctest)"));
        assert!(!is_gated(&by_test, "(shared)"));
        assert!(!is_gated(&by_test, "alpha (harness)"));
        assert!(is_gated(&by_test, "(unlabelled)"));
        assert!(is_gated(&GroupBy::Function, "(shared)"));
    }

    #[test]
    fn values_group_by_label_or_function() {
        let p = cpu_profile(10);
        let none = Filters::default();
        let by_test = grouped_values(&p, &GroupBy::Label("test".into()), 0, &none).unwrap();
        assert_eq!(by_test, map(&[("t::a", 5), ("t::b", 5)]));
        let by_fn = grouped_values(&p, &GroupBy::Function, 1, &none).unwrap();
        assert_eq!(by_fn, map(&[("helper", 70), ("work", 30)]));
        let focus = Filters {
            tagfocus: Some("test=t::b".into()),
            ..Default::default()
        };
        let by_fn = grouped_values(&p, &GroupBy::Function, 0, &focus).unwrap();
        assert_eq!(by_fn, map(&[("helper", 5)]));
        let e = grouped_values(&p, &GroupBy::Label("bench".into()), 0, &none).unwrap_err();
        assert!(matches!(e, Error::NoLabel { .. }), "{e:?}");
    }

    #[test]
    fn deltas_are_read_in_the_sample_unit() {
        assert_eq!(parse_delta("10ms", "nanoseconds").unwrap(), 10_000_000);
        assert_eq!(parse_delta("1MB", "bytes").unwrap(), 1 << 20);
        assert_eq!(parse_delta("1", "count").unwrap(), 1);
        assert_eq!(
            parse_delta("1MB", "nanoseconds").unwrap_err().to_string(),
            "`1MB` is not an amount of nanoseconds (e.g. `10ms`, `1MB`, `3`)"
        );
        assert!(parse_delta("-3", "count").is_err());
    }
}
