//! pprof's sample filters — `focus`, `ignore`, `hide`, `show`, `show_from`, `tagfocus`,
//! `tagignore` — with pprof's semantics, applied to a profile before any report is built, so
//! every report sees the same samples.
//!
//! - A location *matches* a regular expression when one of its lines' function name or file
//!   name does, or its mapping's file name does (pprof's `matchesName`).
//! - `focus` keeps the samples with at least one matching location; `ignore` drops those with
//!   any; a location matching `ignore` is not counted for `focus`.
//! - `hide` removes the matching lines from every location (a location left without lines is
//!   removed from the stacks; a stack left empty drops its sample); `show` keeps only the
//!   matching lines.
//! - `show_from` cuts every stack above (rootward of) its outermost matching frame and drops
//!   samples without one.
//! - `tagfocus`/`tagignore` take `key=regex` (a string label `key` whose value matches) or
//!   `regex` (any string label's value matches).
//!
//! Order, as pprof's driver applies them: names (focus, ignore, hide, show), then `show_from`,
//! then tags.

use std::collections::{HashMap, HashSet};

use regex::Regex;

use crate::proto::{Location, Profile, Sample};
use crate::{Error, Result};

/// The filters as given on the command line (uncompiled, so options compare and print).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// Keep samples with a frame matching this.
    pub focus: Option<String>,
    /// Drop samples with a frame matching this.
    pub ignore: Option<String>,
    /// Remove matching frames from the stacks.
    pub hide: Option<String>,
    /// Keep only matching frames in the stacks.
    pub show: Option<String>,
    /// Cut stacks above their outermost matching frame.
    pub show_from: Option<String>,
    /// Keep samples with a label matching `key=regex` or `regex`.
    pub tagfocus: Option<String>,
    /// Drop samples with a label matching `key=regex` or `regex`.
    pub tagignore: Option<String>,
    /// Cut stacks below (leafward of) their innermost frame whose function matches.
    pub prune_from: Option<String>,
}

impl Filters {
    /// The set filters as `name=value`, in the order `go tool pprof` lists them under
    /// "Active filters:".
    pub fn active(&self) -> Vec<String> {
        [
            ("focus", &self.focus),
            ("ignore", &self.ignore),
            ("hide", &self.hide),
            ("show", &self.show),
            ("show_from", &self.show_from),
            ("tagfocus", &self.tagfocus),
            ("tagignore", &self.tagignore),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.as_ref().map(|v| format!("{name}={v}")))
        .collect()
    }

    /// Whether no filter at all is set, `prune_from` (which pprof does not list as active)
    /// included.
    pub fn is_empty(&self) -> bool {
        self.active().is_empty() && self.prune_from.is_none()
    }
}

fn compile(name: &str, re: &Option<String>) -> Result<Option<Regex>> {
    re.as_deref()
        .map(|re| {
            Regex::new(re).map_err(|e| {
                // regex's syntax errors draw the pattern over several lines; the last says why.
                let text = e.to_string();
                let why = text
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim_start_matches("error: ");
                Error::Filter(format!("bad --{name} regular expression {re:?}: {why}"))
            })
        })
        .transpose()
}

impl Filters {
    /// Check that every regular expression compiles, so a command can fail before it reads
    /// anything; the error is one line naming the flag.
    pub fn check(&self) -> Result<()> {
        for (name, re) in [
            ("focus", &self.focus),
            ("ignore", &self.ignore),
            ("hide", &self.hide),
            ("show", &self.show),
            ("show-from", &self.show_from),
            ("prune-from", &self.prune_from),
        ] {
            compile(name, re)?;
        }
        TagMatch::new("tagfocus", &self.tagfocus)?;
        TagMatch::new("tagignore", &self.tagignore)?;
        Ok(())
    }
}

/// A tag filter, as pprof's `compileTagFilter` reads `[key=]value`: a numeric range of a
/// numeric label (`bytes=1kB:64kB`, `:4MB`, `16`), else comma-separated regular expressions
/// matched against a string label's value (with a key) or against `key:value` of any label.
enum TagMatch {
    Numeric {
        key: Option<String>,
        range: NumRange,
    },
    Strings {
        key: Option<String>,
        values: Vec<Regex>,
    },
}

/// A range of numeric label values in one unit: `lo..=hi` after scaling to `unit`.
struct NumRange {
    unit: String,
    lo: Option<f64>,
    hi: Option<f64>,
}

impl NumRange {
    /// pprof's `parseTagFilterRange`: `32kB`, `:64kB`, `4MB:`, `12kB:64MB`; `None` when the text
    /// is not a range.
    fn parse(text: &str) -> Option<NumRange> {
        let number = |s: &str| -> Option<(i64, String)> {
            let digits_at = s.find(|c: char| c.is_ascii_digit())?;
            let sign_ok =
                digits_at == 0 || (digits_at == 1 && (s.starts_with('+') || s.starts_with('-')));
            if !sign_ok {
                return None;
            }
            let end_digits = s[digits_at..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(s.len(), |i| digits_at + i);
            let unit = &s[end_digits..];
            if !unit.chars().all(|c| c.is_ascii_alphabetic()) {
                return None;
            }
            Some((s[..end_digits].parse().ok()?, unit.to_owned()))
        };
        let (lo, hi) = match text.split_once(':') {
            Some((lo, hi)) => (lo, hi),
            None => {
                let (v, unit) = number(text)?;
                let (scaled, unit) = super::units::scale(v, &unit, &unit);
                return Some(NumRange {
                    unit,
                    lo: Some(scaled),
                    hi: Some(scaled),
                });
            }
        };
        let lo = if lo.is_empty() {
            None
        } else {
            Some(number(lo)?)
        };
        let hi = if hi.is_empty() {
            None
        } else {
            Some(number(hi)?)
        };
        let unit_of = |(v, u): &(i64, String), to: &str| super::units::scale(*v, u, to);
        match (lo, hi) {
            (Some(lo), Some(hi)) => {
                let (lo_v, unit) = unit_of(&lo, &lo.1);
                let (hi_v, hi_unit) = unit_of(&hi, &unit);
                (hi_unit == unit).then_some(NumRange {
                    unit,
                    lo: Some(lo_v),
                    hi: Some(hi_v),
                })
            }
            (Some(lo), None) => {
                let (v, unit) = unit_of(&lo, &lo.1);
                Some(NumRange {
                    unit,
                    lo: Some(v),
                    hi: None,
                })
            }
            (None, Some(hi)) => {
                let (v, unit) = unit_of(&hi, &hi.1);
                Some(NumRange {
                    unit,
                    lo: None,
                    hi: Some(v),
                })
            }
            (None, None) => None,
        }
    }

    fn contains(&self, value: i64, unit: &str) -> bool {
        let (v, u) = super::units::scale(value, unit, &self.unit);
        u == self.unit && self.lo.is_none_or(|lo| v >= lo) && self.hi.is_none_or(|hi| v <= hi)
    }
}

impl TagMatch {
    fn new(name: &str, spec: &Option<String>) -> Result<Option<TagMatch>> {
        let Some(spec) = spec else { return Ok(None) };
        let (key, value) = match spec.split_once('=') {
            Some((k, v)) => (Some(k.to_owned()), v),
            None => (None, spec.as_str()),
        };
        if let Some(range) = NumRange::parse(value) {
            return Ok(Some(TagMatch::Numeric { key, range }));
        }
        let values = value
            .split(',')
            .map(|re| compile(name, &Some(re.to_owned())).map(|r| r.expect("compiled a Some")))
            .collect::<Result<_>>()?;
        Ok(Some(TagMatch::Strings { key, values }))
    }

    /// pprof's note when a tag filter is read as a number range.
    fn note(&self, name: &str, spec: &Option<String>) -> Option<String> {
        let value = spec.as_deref()?;
        let value = value.split_once('=').map_or(value, |(_, v)| v);
        matches!(self, TagMatch::Numeric { .. })
            .then(|| format!("{name}: interpreted '{value}' as a range, not a regular expression"))
    }

    fn matches(&self, profile: &Profile, units: &HashMap<&str, String>, sample: &Sample) -> bool {
        match self {
            TagMatch::Numeric { key, range } => sample.label.iter().any(|l| {
                let k = profile.str(l.key);
                // The identity `traces` gives samples is no label of the profile's.
                l.str == 0
                    && k != super::graph::LOADED_SAMPLE
                    && key.as_deref().is_none_or(|want| want == k)
                    && range.contains(l.num, units.get(k).map_or("", String::as_str))
            }),
            TagMatch::Strings {
                key: Some(key),
                values,
            } => values.iter().any(|re| {
                sample.label.iter().any(|l| {
                    l.str != 0 && profile.str(l.key) == key && re.is_match(profile.str(l.str))
                })
            }),
            TagMatch::Strings { key: None, values } => values.iter().all(|re| {
                sample.label.iter().any(|l| {
                    l.str != 0
                        && re.is_match(&format!("{}:{}", profile.str(l.key), profile.str(l.str)))
                })
            }),
        }
    }
}

/// What a filter matched, for pprof's "matched no samples" warnings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matched {
    /// Names of the filters that matched nothing (e.g. `focus`).
    pub unmatched: Vec<&'static str>,
    /// How a filter was read when that is worth saying (a tag filter taken as a number range).
    pub notes: Vec<String>,
}

/// Apply `filters` to `profile`: a new profile with the kept samples, their stacks cut or
/// thinned as the filters say. Fails on a bad regular expression.
pub fn apply(profile: &Profile, filters: &Filters) -> Result<(Profile, Matched)> {
    if filters.is_empty() {
        return Ok((profile.clone(), Matched::default()));
    }
    let (out, matched) = run(profile, filters, true)?;
    Ok((out.expect("built"), matched))
}

/// What [`apply`] would report as matched, without building the filtered profile: for a
/// command that warns about filters before a report applies them.
pub fn matched(profile: &Profile, filters: &Filters) -> Result<Matched> {
    if filters.is_empty() {
        return Ok(Matched::default());
    }
    Ok(run(profile, filters, false)?.1)
}

/// Per function id, whether its name or file matches a regular expression (each function is
/// tested once, however many locations use it).
fn function_matches(profile: &Profile, re: &Regex) -> HashMap<u64, bool> {
    profile
        .function
        .iter()
        .map(|f| {
            let hit = re.is_match(profile.str(f.name)) || re.is_match(profile.str(f.filename));
            (f.id, hit)
        })
        .collect()
}

/// Per mapping id, whether its file matches.
fn mapping_matches(profile: &Profile, re: &Regex) -> HashMap<u64, bool> {
    profile
        .mapping
        .iter()
        .map(|m| (m.id, re.is_match(profile.str(m.filename))))
        .collect()
}

/// One name filter, its matches precomputed per function and mapping.
struct NameMatch {
    functions: HashMap<u64, bool>,
    mappings: HashMap<u64, bool>,
}

impl NameMatch {
    fn new(profile: &Profile, re: Option<Regex>) -> Option<NameMatch> {
        re.map(|re| NameMatch {
            functions: function_matches(profile, &re),
            mappings: mapping_matches(profile, &re),
        })
    }

    fn line(&self, function_id: u64) -> bool {
        self.functions.get(&function_id).copied().unwrap_or(false)
    }

    fn mapping(&self, loc: &Location) -> bool {
        loc.mapping_id != 0 && self.mappings.get(&loc.mapping_id).copied().unwrap_or(false)
    }

    /// pprof's `matchesName`: a line's function or file, or the location's mapping.
    fn location(&self, loc: &Location) -> bool {
        loc.line.iter().any(|l| self.line(l.function_id)) || self.mapping(loc)
    }
}

/// The filters' work: location-level decisions first (locations are few), then one pass over
/// the samples that builds the kept stacks when `build`, or only decides what survives.
fn run(profile: &Profile, filters: &Filters, build: bool) -> Result<(Option<Profile>, Matched)> {
    let mut matched = Matched::default();
    let focus = NameMatch::new(profile, compile("focus", &filters.focus)?);
    let ignore = NameMatch::new(profile, compile("ignore", &filters.ignore)?);
    let hide = NameMatch::new(profile, compile("hide", &filters.hide)?);
    let show = NameMatch::new(profile, compile("show", &filters.show)?);
    let show_from = NameMatch::new(profile, compile("show-from", &filters.show_from)?);
    let tagfocus = TagMatch::new("tagfocus", &filters.tagfocus)?;
    let tagignore = TagMatch::new("tagignore", &filters.tagignore)?;
    let prune_from = compile("prune-from", &filters.prune_from)?;
    let mut locations = profile.location.clone();

    // Names: focus, ignore, hide, show (pprof's FilterSamplesByName).
    let (mut fm, mut im, mut hm, mut sm) = (false, false, false, false);
    let mut focus_or_ignore: HashMap<u64, bool> = HashMap::new();
    let mut hidden: HashSet<u64> = HashSet::new();
    let names_set = focus.is_some() || ignore.is_some() || hide.is_some() || show.is_some();
    if names_set {
        for loc in &mut locations {
            if ignore.as_ref().is_some_and(|m| m.location(loc)) {
                im = true;
                focus_or_ignore.insert(loc.id, false);
            } else if focus.as_ref().is_none_or(|m| m.location(loc)) {
                fm = true;
                focus_or_ignore.insert(loc.id, true);
            }
            if let Some(m) = &hide {
                if m.location(loc) {
                    hm = true;
                    if m.mapping(loc) {
                        loc.line.clear();
                    } else {
                        loc.line.retain(|l| !m.line(l.function_id));
                    }
                    if loc.line.is_empty() {
                        hidden.insert(loc.id);
                    }
                }
            }
            if let Some(m) = &show {
                if !m.mapping(loc) {
                    loc.line.retain(|l| m.line(l.function_id));
                }
                if loc.line.is_empty() {
                    hidden.insert(loc.id);
                } else {
                    sm = true;
                }
            }
        }
    }

    // show_from: the locations stacks are cut above.
    let mut from: HashSet<u64> = HashSet::new();
    if let Some(m) = &show_from {
        for loc in &mut locations {
            if m.mapping(loc) {
                from.insert(loc.id);
            } else if let Some(i) = loc.line.iter().rposition(|l| m.line(l.function_id)) {
                loc.line.truncate(i + 1);
                from.insert(loc.id);
            }
        }
    }
    let sfm = !from.is_empty();

    let tags_set = tagfocus.is_some() || tagignore.is_some();
    if tags_set {
        for (name, t, spec) in [
            ("tagfocus", &tagfocus, &filters.tagfocus),
            ("tagignore", &tagignore, &filters.tagignore),
        ] {
            matched
                .notes
                .extend(t.as_ref().and_then(|t| t.note(name, spec)));
        }
    }
    let units: HashMap<&str, String> = if tags_set {
        super::num_label_units(profile).into_iter().collect()
    } else {
        HashMap::new()
    };

    // The samples: names, then show_from, then tags, as pprof's driver runs them.
    let (mut tfm, mut tim) = (false, false);
    let mut kept = Vec::new();
    let mut stack: Vec<u64> = Vec::new();
    'samples: for s in &profile.sample {
        if names_set {
            let mut focused = false;
            for id in &s.location_id {
                match focus_or_ignore.get(id) {
                    Some(true) => focused = true,
                    Some(false) => continue 'samples,
                    None => {}
                }
            }
            if !focused {
                continue;
            }
        }
        stack.clear();
        stack.extend(s.location_id.iter().filter(|id| !hidden.contains(id)));
        if stack.is_empty() && names_set {
            continue;
        }
        if show_from.is_some() {
            match stack.iter().rposition(|id| from.contains(id)) {
                Some(i) => stack.truncate(i + 1),
                None => continue,
            }
        }
        if tags_set {
            let focused = tagfocus
                .as_ref()
                .is_none_or(|t| t.matches(profile, &units, s));
            let ignored = tagignore
                .as_ref()
                .is_some_and(|t| t.matches(profile, &units, s));
            tfm |= focused;
            tim |= ignored;
            if !focused || ignored {
                continue;
            }
        }
        if build {
            let mut sample = s.clone();
            sample.location_id.clone_from(&stack);
            kept.push(sample);
        }
    }

    for (name, set, hit) in [
        ("focus", filters.focus.is_some(), fm),
        ("ignore", filters.ignore.is_some(), im),
        ("hide", filters.hide.is_some(), hm),
        ("show", filters.show.is_some(), sm),
        ("show_from", filters.show_from.is_some(), sfm),
        ("tagfocus", filters.tagfocus.is_some(), tfm),
        ("tagignore", filters.tagignore.is_some(), tim),
    ] {
        if set && !hit {
            matched.unmatched.push(name);
        }
    }
    if !build {
        return Ok((None, matched));
    }
    let mut out = Profile {
        sample: kept,
        location: locations,
        ..Profile::default()
    };
    // Everything else is the input's (small tables: functions, mappings, strings). The pattern
    // names every field, so a new one cannot be forgotten here.
    let Profile {
        sample: _,
        location: _,
        doc_url,
        sample_type,
        mapping,
        function,
        string_table,
        drop_frames,
        keep_frames,
        time_nanos,
        duration_nanos,
        period_type,
        period,
        comment,
        default_sample_type,
    } = profile;
    out.sample_type.clone_from(sample_type);
    out.mapping.clone_from(mapping);
    out.function.clone_from(function);
    out.string_table.clone_from(string_table);
    out.drop_frames = *drop_frames;
    out.keep_frames = *keep_frames;
    out.time_nanos = *time_nanos;
    out.duration_nanos = *duration_nanos;
    out.period_type.clone_from(period_type);
    out.period = *period;
    out.comment.clone_from(comment);
    out.default_sample_type = *default_sample_type;
    out.doc_url = *doc_url;
    if let Some(re) = &prune_from {
        prune_beneath(&mut out, re);
    }
    Ok((Some(out), matched))
}

/// pprof's `PruneFrom`: in each location, drop the frames inlined below the first frame whose
/// (simplified) function name matches; in each stack, drop the locations below the innermost
/// such location.
fn prune_beneath(profile: &mut Profile, re: &Regex) {
    let mut from: HashSet<u64> = HashSet::new();
    let names: HashMap<u64, String> = profile
        .function
        .iter()
        .map(|f| (f.id, profile.str(f.name).to_owned()))
        .collect();
    for loc in &mut profile.location {
        let hit = loc.line.iter().position(|l| {
            names
                .get(&l.function_id)
                .is_some_and(|n| !n.is_empty() && re.is_match(simplify_function(n)))
        });
        if let Some(i) = hit {
            loc.line.drain(..i);
            from.insert(loc.id);
        }
    }
    for s in &mut profile.sample {
        if let Some(i) = s.location_id.iter().position(|id| from.contains(id)) {
            s.location_id.drain(..i);
        }
    }
}

/// pprof's `simplifyFunc`: a name up to its argument list (the first `(` that does not start
/// `(anonymous namespace)` or `operator()`), without a leading `.`.
fn simplify_function(name: &str) -> &str {
    let name = name.strip_prefix('.').unwrap_or(name);
    let mut at = 0;
    while let Some(i) = name[at..].find(['(', 'o']).map(|i| at + i) {
        let rest = &name[i..];
        if rest.starts_with("(anonymous namespace)") {
            at = i + "(anonymous namespace)".len();
        } else if rest.starts_with("operator()") {
            at = i + "operator()".len();
        } else if rest.starts_with('(') {
            return &name[..i];
        } else {
            at = i + 1;
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{MappingInfo, ProfileBuilder};
    use crate::proto::Label;

    /// Stacks (leaf first) over functions main, work, helper, libc_fn; `work` and `helper` share
    /// one location (helper inlined into work). Values: 1, 10, 100, 1000. The last sample is
    /// labelled test=beta, the others test=alpha.
    fn profile() -> Profile {
        let mut b = ProfileBuilder::new(&[("cpu", "nanoseconds")], ("cpu", "nanoseconds"), 1);
        let m = b.mapping(&MappingInfo {
            memory_start: 0x1000,
            memory_limit: 0x9000,
            filename: "/bin/app".into(),
            symbolized: true,
            ..Default::default()
        });
        let f = |b: &mut ProfileBuilder, name: &str| b.function(name, name, "src/app.rs", 1);
        let (main, work, helper, libc) = (
            f(&mut b, "main"),
            f(&mut b, "app::work"),
            f(&mut b, "app::helper"),
            f(&mut b, "libc_fn"),
        );
        let l_main = b.location(m, 0x1100, &[(main, 1)]);
        let l_work = b.location(m, 0x1200, &[(helper, 2), (work, 3)]);
        let l_libc = b.location(m, 0x1300, &[(libc, 4)]);
        let test = b.string("test");
        let label = |b: &mut ProfileBuilder, v: &str| Label {
            key: test,
            str: b.string(v),
            num: 0,
            num_unit: 0,
        };
        for (stack, value, who) in [
            (vec![l_main], 1, "alpha"),
            (vec![l_work, l_main], 10, "alpha"),
            (vec![l_libc, l_work, l_main], 100, "alpha"),
            (vec![l_libc, l_main], 1000, "beta"),
        ] {
            let l = label(&mut b, who);
            b.add_labeled_sample(&stack, &[value], vec![l]);
        }
        b.build()
    }

    fn total(p: &Profile) -> i64 {
        p.sample.iter().map(|s| s.value[0]).sum()
    }

    /// Apply `f`; [`matched`] (no profile built) must say what `apply` says.
    fn run(f: Filters) -> (Profile, Matched) {
        let (p, m) = apply(&profile(), &f).unwrap();
        assert_eq!(matched(&profile(), &f).unwrap(), m, "{f:?}");
        (p, m)
    }

    /// Function names of a sample's stack, leaf first, inlined frames expanded.
    fn names(p: &Profile, s: &Sample) -> Vec<String> {
        s.location_id
            .iter()
            .flat_map(|&id| p.location_by_id(id).unwrap().line.clone())
            .map(|l| {
                p.str(p.function_by_id(l.function_id).unwrap().name)
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn focus_and_ignore_keep_and_drop_whole_samples() {
        let some = |s: &str| Some(s.to_owned());
        let (p, m) = run(Filters {
            focus: some("helper"),
            ..Default::default()
        });
        assert_eq!((total(&p), m.unmatched.len()), (110, 0));
        let (p, _) = run(Filters {
            ignore: some("libc"),
            ..Default::default()
        });
        assert_eq!(total(&p), 11);
        // A location matching ignore does not count for focus.
        let (p, _) = run(Filters {
            focus: some("libc|work"),
            ignore: some("libc"),
            ..Default::default()
        });
        assert_eq!(total(&p), 10);
        // The mapping's file name matches too.
        let (p, _) = run(Filters {
            focus: some("^/bin/app$"),
            ..Default::default()
        });
        assert_eq!(total(&p), 1111);
        let (p, m) = run(Filters {
            focus: some("nothing"),
            ..Default::default()
        });
        assert_eq!((total(&p), m.unmatched), (0, vec!["focus"]));
    }

    #[test]
    fn hide_and_show_thin_the_stacks() {
        let some = |s: &str| Some(s.to_owned());
        let (p, _) = run(Filters {
            hide: some("helper"),
            ..Default::default()
        });
        assert_eq!(total(&p), 1111);
        assert_eq!(names(&p, &p.sample[1]), ["app::work", "main"]);
        let (p, _) = run(Filters {
            show: some("^app::"),
            ..Default::default()
        });
        // Samples left without frames are dropped: only the two through work remain.
        assert_eq!(total(&p), 110);
        assert_eq!(names(&p, &p.sample[1]), ["app::helper", "app::work"]);
    }

    #[test]
    fn show_from_cuts_above_the_outermost_match() {
        let (p, _) = run(Filters {
            show_from: Some("work|libc".into()),
            ..Default::default()
        });
        assert_eq!(total(&p), 1110);
        let stacks: Vec<Vec<String>> = p.sample.iter().map(|s| names(&p, s)).collect();
        assert_eq!(
            stacks,
            [
                vec!["app::helper", "app::work"],
                vec!["libc_fn", "app::helper", "app::work"],
                vec!["libc_fn"],
            ]
        );
    }

    #[test]
    fn tags_match_by_key_or_any_value() {
        let (p, _) = run(Filters {
            tagfocus: Some("test=^beta$".into()),
            ..Default::default()
        });
        assert_eq!(total(&p), 1000);
        let (p, _) = run(Filters {
            tagignore: Some("alp".into()),
            ..Default::default()
        });
        assert_eq!(total(&p), 1000);
        let (p, m) = run(Filters {
            tagfocus: Some("other=.".into()),
            ..Default::default()
        });
        assert_eq!((total(&p), m.unmatched), (0, vec!["tagfocus"]));
    }

    #[test]
    fn a_bad_expression_is_one_line_naming_its_flag() {
        let e = Filters {
            hide: Some("(".into()),
            ..Default::default()
        }
        .check()
        .unwrap_err()
        .to_string();
        assert_eq!(e, r#"bad --hide regular expression "(": unclosed group"#);
        assert_eq!(
            Filters::default().active(),
            Vec::<String>::new(),
            "no filter, no header lines"
        );
    }
}

#[cfg(test)]
mod tag_tests {
    use super::NumRange;

    #[test]
    fn number_ranges_read_as_pprof_reads_them() {
        let r = NumRange::parse("1kB:64kB").unwrap();
        assert!(r.contains(1024, "bytes") && r.contains(65536, "bytes"));
        assert!(!r.contains(1023, "bytes") && !r.contains(65537, "bytes"));
        let r = NumRange::parse(":2kB").unwrap();
        assert!(r.contains(2048, "bytes") && !r.contains(2049, "bytes"));
        let r = NumRange::parse("16").unwrap();
        assert!(r.contains(16, "") && !r.contains(17, ""));
        assert!(NumRange::parse("4MB:").unwrap().contains(5 << 20, "bytes"));
        assert!(NumRange::parse("1kB:1s").is_none(), "units of two kinds");
        for not_range in ["alpha", "a1", "1kB:2kB:3kB", "1.5kB", ":"] {
            assert!(NumRange::parse(not_range).is_none(), "{not_range}");
        }
    }
}
