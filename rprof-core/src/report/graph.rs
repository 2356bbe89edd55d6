//! The function-level call graph pprof's `top` is computed from (`internal/graph` in
//! google/pprof, at its default `functions` granularity).
//!
//! A node is a function, identified by name; frames of unnamed functions and locations without
//! line information become one node per binary, printed `[binary]`, or `<unknown>` when the
//! location has no mapping either. Samples are first merged the way pprof merges a profile it
//! loads: samples whose values are all zero are dropped and samples with the same stack and
//! labels are summed, keeping the order of first appearance.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// Maps keyed by ids and stacks, hashed with foldhash's fast fixed-seed hasher: these tables see
/// millions of lookups per report, where SipHash's DoS resistance buys nothing (the input is a
/// file the user chose) and costs a third of the run.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;
/// The set counterpart of [`FastMap`].
pub(crate) type FastSet<K> = HashSet<K, foldhash::fast::FixedState>;

use crate::proto::{Function, Label, Profile};

/// How finely frames are told apart: pprof's `-functions` (the default), `-filefunctions`,
/// `-files`, `-lines` and `-addresses`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Granularity {
    /// One node per function name.
    #[default]
    Functions,
    /// One node per function and source file.
    FileFunctions,
    /// One node per source file.
    Files,
    /// One node per function, file and line.
    Lines,
    /// One node per instruction address (with its function, file and line).
    Addresses,
}

impl Granularity {
    /// pprof's name of the granularity (`functions`, `lines`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Granularity::Functions => "functions",
            Granularity::FileFunctions => "filefunctions",
            Granularity::Files => "files",
            Granularity::Lines => "lines",
            Granularity::Addresses => "addresses",
        }
    }

    /// The granularity called `name` (as pprof spells it), if any.
    pub fn from_name(name: &str) -> Option<Granularity> {
        [
            Granularity::Functions,
            Granularity::FileFunctions,
            Granularity::Files,
            Granularity::Lines,
            Granularity::Addresses,
        ]
        .into_iter()
        .find(|g| g.name() == name)
    }

    /// What a frame keeps at this granularity: (function, file, line, address), as pprof's
    /// `Profile.Aggregate` leaves them.
    fn keeps(self) -> (bool, bool, bool, bool) {
        match self {
            Granularity::Functions => (true, false, false, false),
            Granularity::FileFunctions => (true, true, false, false),
            Granularity::Files => (false, true, false, false),
            Granularity::Lines => (true, true, true, false),
            Granularity::Addresses => (true, true, true, true),
        }
    }
}

/// What identifies a node, as pprof's `NodeInfo` does after aggregation: address, function
/// name, file and line as the granularity keeps them; unnamed code is told apart by its binary
/// and function start line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct NodeKey {
    pub name: String,
    pub address: u64,
    pub file: String,
    pub start_line: i64,
    pub lineno: i64,
    pub objfile: String,
}

impl NodeKey {
    /// Go's `fmt.Sprint` of pprof's `NodeInfo`, which pprof's last tie-break compares.
    fn go_sprint(&self) -> String {
        format!(
            "{{{}  {} {} {} {} {}}}",
            self.name, self.address, self.file, self.start_line, self.lineno, self.objfile
        )
    }

    /// pprof's `PrintableName`: address, name, then `file:line`, the file, the binary or
    /// `<unknown>`, joined by spaces.
    fn printable(&self) -> String {
        let mut parts = Vec::with_capacity(2);
        if self.address != 0 {
            parts.push(format!("{:016x}", self.address));
        }
        if !self.name.is_empty() {
            parts.push(self.name.clone());
        }
        if self.lineno != 0 {
            parts.push(format!("{}:{}", self.file, self.lineno));
        } else if !self.file.is_empty() {
            parts.push(self.file.clone());
        } else if !self.name.is_empty() {
        } else if !self.objfile.is_empty() {
            parts.push(format!("[{}]", base_name(&self.objfile)));
        } else {
            parts.push("<unknown>".to_owned());
        }
        parts.join(" ")
    }
}

/// Go's `filepath.Base`: the last element of a slash-separated path.
pub(crate) fn base_name(path: &str) -> &str {
    if path.is_empty() {
        return ".";
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/";
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed)
}

/// Go's `filepath.Clean` for the slash-separated paths profiles hold.
pub(crate) fn clean_path(path: &str) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|&p| p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// The name pprof shows for a function: its name, else its system name (pprof's demangling step
/// fills an empty name from the system name).
fn function_name<'p>(profile: &'p Profile, f: &Function) -> &'p str {
    match profile.str(f.name) {
        "" => profile.str(f.system_name),
        name => name,
    }
}

/// A sample after pprof's load-time merge.
#[derive(Debug)]
pub(crate) struct MergedSample<'p> {
    /// Location ids, leaf first (each location merged as pprof merges them).
    pub locations: Cow<'p, [u64]>,
    /// Summed values, one per sample type.
    pub values: Vec<i64>,
    /// The labels of the first sample merged in (all merged samples have equal labels).
    pub labels: &'p [Label],
}

/// A profile resolved into nodes: each location's frames and the merged samples.
#[derive(Debug)]
pub(crate) struct Prepared<'p> {
    keys: Vec<NodeKey>,
    /// Printable name of each node, by node index.
    pub names: Vec<String>,
    /// Node index of each frame of each location, innermost first; every location has at
    /// least one frame.
    loc_nodes: FastMap<u64, Vec<usize>>,
    /// The merged samples, in order of first appearance.
    pub samples: Vec<MergedSample<'p>>,
}

/// One node's values in a graph.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeStat {
    pub flat: i64,
    pub cum: i64,
    /// Incoming edges by caller node: summed weight, and whether every occurrence was an
    /// inlined call.
    pub callers: FastMap<usize, (i64, bool)>,
}

impl NodeStat {
    /// pprof's rule for keeping a node in a graph.
    pub fn present(&self) -> bool {
        self.flat != 0 || self.cum != 0
    }
}

impl<'p> Prepared<'p> {
    /// Resolve `profile`'s locations into nodes at the default (`functions`) granularity and
    /// merge its samples.
    pub fn new(profile: &'p Profile) -> Self {
        Self::with_granularity(profile, Granularity::Functions)
    }

    /// Resolve `profile`'s locations into nodes at `granularity` and merge its samples.
    pub fn with_granularity(profile: &'p Profile, granularity: Granularity) -> Self {
        let (keep_function, keep_file, keep_line, keep_address) = granularity.keeps();
        let mut prepared = Prepared {
            keys: Vec::new(),
            names: Vec::new(),
            loc_nodes: FastMap::default(),
            samples: Vec::new(),
        };
        let mut index: FastMap<NodeKey, usize> = FastMap::default();
        let mut node = |key: NodeKey, p: &mut Prepared<'p>| -> usize {
            *index.entry(key).or_insert_with_key(|key| {
                p.names.push(key.printable());
                p.keys.push(key.clone());
                p.keys.len() - 1
            })
        };
        let objfiles: HashMap<u64, &str> = profile
            .mapping
            .iter()
            .map(|m| (m.id, profile.str(m.filename)))
            .collect();
        let (merged_locations, samples) = merge_profile(profile);
        for loc in &profile.location {
            let Some(&(canonical, display_address)) = merged_locations.get(&loc.id) else {
                continue; // in no sample, or the same as another location
            };
            if canonical != loc.id {
                continue;
            }
            let objfile = match loc.mapping_id {
                0 => "",
                id => objfiles.get(&id).copied().unwrap_or(""),
            };
            let address = if keep_address { display_address } else { 0 };
            let keys: Vec<NodeKey> = if loc.line.is_empty() {
                vec![NodeKey {
                    address,
                    objfile: objfile.to_owned(),
                    ..NodeKey::default()
                }]
            } else {
                loc.line
                    .iter()
                    .map(|line| match profile.function_by_id(line.function_id) {
                        Some(f) => {
                            let name = if keep_function {
                                function_name(profile, f)
                            } else {
                                ""
                            };
                            let file = profile.str(f.filename);
                            let named = !name.is_empty();
                            NodeKey {
                                name: name.to_owned(),
                                address,
                                file: if keep_file && !file.is_empty() {
                                    clean_path(file)
                                } else {
                                    String::new()
                                },
                                start_line: if named { 0 } else { f.start_line },
                                lineno: if keep_line { line.line } else { 0 },
                                objfile: if named {
                                    String::new()
                                } else {
                                    objfile.to_owned()
                                },
                            }
                        }
                        None => NodeKey {
                            address,
                            objfile: objfile.to_owned(),
                            ..NodeKey::default()
                        },
                    })
                    .collect()
            };
            let nodes = keys.into_iter().map(|k| node(k, &mut prepared)).collect();
            prepared.loc_nodes.insert(loc.id, nodes);
        }
        prepared.samples = samples;
        prepared
    }

    /// The frames of a location, innermost first (empty for an unknown location id).
    pub fn frames(&self, location_id: u64) -> &[usize] {
        self.loc_nodes.get(&location_id).map_or(&[], Vec::as_slice)
    }

    /// Flat and cum of every node for sample value `index`, counting only nodes in `kept` when
    /// given (frames of other nodes are skipped, as pprof does when it rebuilds a trimmed
    /// graph). Cum counts each sample once per node, even under recursion.
    pub fn graph(&self, index: usize, kept: Option<&[bool]>) -> Vec<NodeStat> {
        let mut stats = vec![NodeStat::default(); self.names.len()];
        // Per-sample "seen" marks: the sample number that last touched the node.
        let mut seen = vec![usize::MAX; self.names.len()];
        let mut seen_edges: FastSet<(usize, usize)> = FastSet::default();
        for (sample_no, sample) in self.samples.iter().enumerate() {
            let w = sample.values.get(index).copied().unwrap_or(0);
            if w == 0 {
                continue;
            }
            seen_edges.clear();
            let mut parent: Option<usize> = None;
            let mut residual = false;
            for &loc in sample.locations.iter().rev() {
                let frames = self.frames(loc);
                for (i, &n) in frames.iter().enumerate().rev() {
                    if kept.is_some_and(|k| !k[n]) {
                        residual = true;
                        continue;
                    }
                    if seen[n] != sample_no {
                        seen[n] = sample_no;
                        stats[n].cum += w;
                    }
                    if let Some(p) = parent.filter(|&p| p != n) {
                        if seen_edges.insert((p, n)) {
                            let inline = i != frames.len() - 1;
                            let edge = stats[n].callers.entry(p).or_insert((0, true));
                            edge.0 += w;
                            edge.1 &= inline;
                        }
                    }
                    parent = Some(n);
                    residual = false;
                }
            }
            if let (Some(leaf), false) = (parent, residual) {
                stats[leaf].flat += w;
            }
        }
        stats
    }

    /// pprof's node order: by `|flat|` (or `|cum|` when `by_cum`) descending, then name, then
    /// the other value descending.
    pub fn sort(&self, nodes: &mut [usize], stats: &[NodeStat], by_cum: bool) {
        nodes.sort_by(|&a, &b| {
            let (sa, sb) = (&stats[a], &stats[b]);
            let (first, second) = if by_cum {
                ((sa.cum, sb.cum), (sa.flat, sb.flat))
            } else {
                ((sa.flat, sb.flat), (sa.cum, sb.cum))
            };
            first
                .1
                .unsigned_abs()
                .cmp(&first.0.unsigned_abs())
                .then_with(|| self.names[a].cmp(&self.names[b]))
                .then_with(|| second.1.unsigned_abs().cmp(&second.0.unsigned_abs()))
                .then_with(|| self.keys[a].go_sprint().cmp(&self.keys[b].go_sprint()))
        });
    }
}

/// pprof's `profile.Merge` of locations, as it runs on every profile pprof loads: mappings of
/// the same object (same rounded size, offset, and build id or file) are one mapping, placed
/// where the first of them was seen; locations at the same offset into one mapping with the
/// same lines (functions compared by name, system name, file and start line) are one location.
/// Two processes' copies of libc thus become one. Returns, for each location id used by a
/// sample, its canonical location id and its address in the canonical mapping.
fn merge_locations<'p>(
    profile: &'p Profile,
    samples: &[MergedSample<'p>],
) -> FastMap<u64, (u64, u64)> {
    type MappingKey<'p> = (u64, u64, &'p str);
    let mappings: FastMap<u64, (MappingKey<'p>, u64)> = profile
        .mapping
        .iter()
        .map(|m| {
            let size = m
                .memory_limit
                .wrapping_sub(m.memory_start)
                .wrapping_add(0xfff)
                & !0xfff;
            let id = match (profile.str(m.build_id), profile.str(m.filename)) {
                ("", file) => file,
                (build_id, _) => build_id,
            };
            (m.id, ((size, m.file_offset, id), m.memory_start))
        })
        .collect();
    let mut starts: FastMap<MappingKey<'p>, (usize, u64)> = FastMap::default();
    let mut place = |key: MappingKey<'p>, start: u64| -> (usize, u64) {
        let n = starts.len();
        *starts.entry(key).or_insert((n, start))
    };
    if let Some(first) = profile.mapping.first() {
        let (key, start) = mappings[&first.id];
        place(key, start);
    }
    let mut functions: FastMap<(i64, &str, &str, &str), u64> = FastMap::default();
    let function_key: FastMap<u64, u64> = profile
        .function
        .iter()
        .map(|f| {
            let key = (
                f.start_line,
                profile.str(f.name),
                profile.str(f.system_name),
                profile.str(f.filename),
            );
            (f.id, *functions.entry(key).or_insert(f.id))
        })
        .collect();
    let locations: FastMap<u64, &crate::proto::Location> =
        profile.location.iter().map(|l| (l.id, l)).collect();
    /// Mapping (canonical), offset into it, lines (function, line), folded.
    type LocationKey = (Option<usize>, u64, Vec<(u64, i64)>, bool);
    let mut by_key: FastMap<LocationKey, u64> = FastMap::default();
    let mut merged: FastMap<u64, (u64, u64)> = FastMap::default();
    merged.reserve(profile.location.len());
    for s in samples {
        for id in s.locations.iter() {
            if merged.contains_key(id) {
                continue;
            }
            let Some(loc) = locations.get(id) else {
                continue;
            };
            let (mapping, offset, display) = match mappings.get(&loc.mapping_id) {
                Some(&(key, start)) => {
                    let (n, canonical_start) = place(key, start);
                    let offset = loc.address.wrapping_sub(start);
                    (Some(n), offset, canonical_start.wrapping_add(offset))
                }
                None => (None, loc.address, loc.address),
            };
            let lines = loc
                .line
                .iter()
                .map(|l| {
                    (
                        function_key.get(&l.function_id).copied().unwrap_or(0),
                        l.line,
                    )
                })
                .collect();
            let canonical = *by_key
                .entry((mapping, offset, lines, loc.is_folded))
                .or_insert(loc.id);
            let display = if canonical == loc.id {
                display
            } else {
                merged[&canonical].1
            };
            merged.insert(loc.id, (canonical, display));
        }
    }
    merged
}

/// The label key with which `traces` keeps apart samples that only a filter made equal: pprof
/// merges a profile's samples once, as it loads it, and prints the filtered samples as they are.
pub(crate) const LOADED_SAMPLE: &str = "rprof.loaded_sample";

/// `profile` with every sample labelled [`LOADED_SAMPLE`] by its identity under pprof's
/// load-time merge (samples that loading merges share one), so that the merge after a filter
/// sums only what loading would have summed.
pub(crate) fn with_loaded_identity(profile: &Profile) -> Profile {
    let raw: Vec<MergedSample<'_>> = profile
        .sample
        .iter()
        .map(|s| MergedSample {
            locations: Cow::Borrowed(s.location_id.as_slice()),
            values: Vec::new(),
            labels: &s.label,
        })
        .collect();
    let merged_locations = merge_locations(profile, &raw);
    let mut out = profile.clone();
    out.string_table.push(LOADED_SAMPLE.to_owned());
    let key = out.string_table.len() as i64 - 1;
    let mut ids: FastMap<SampleKey<'_>, i64> = FastMap::default();
    for (s, o) in profile.sample.iter().zip(&mut out.sample) {
        let locations: Vec<u64> = s
            .location_id
            .iter()
            .map(|id| merged_locations.get(id).map_or(*id, |&(c, _)| c))
            .collect();
        let labels = label_keys(profile, &s.label);
        let next = ids.len() as i64 + 1;
        let id = *ids.entry((Cow::Owned(locations), labels)).or_insert(next);
        o.label.push(Label {
            key,
            num: id,
            ..Label::default()
        });
    }
    out
}

/// The samples of `profile` merged as pprof merges a profile it loads (see [`Prepared::new`]),
/// for what needs values but no nodes.
pub(crate) fn merged_samples(profile: &Profile) -> Vec<MergedSample<'_>> {
    merge_profile(profile).1
}

/// A label as merging compares it: key, string value, number, number unit.
type LabelKey<'p> = (&'p str, &'p str, i64, &'p str);

/// `labels` as merging compares them, ordered by key only: values of one key keep their order,
/// as in pprof's label map.
fn label_keys<'p>(profile: &'p Profile, labels: &[Label]) -> Vec<LabelKey<'p>> {
    let mut keys: Vec<LabelKey<'p>> = labels
        .iter()
        .map(|l| {
            (
                profile.str(l.key),
                profile.str(l.str),
                l.num,
                profile.str(l.num_unit),
            )
        })
        .collect();
    keys.sort_by_key(|l| l.0);
    keys
}
/// What makes two samples one: their locations and labels.
type SampleKey<'p> = (Cow<'p, [u64]>, Vec<LabelKey<'p>>);

/// pprof's `profile.Merge` of a single profile: drop all-zero samples, merge locations (see
/// [`merge_locations`]), sum samples with the same locations and labels, drop the sums that are
/// zero. Returns the merged locations too.
///
/// Samples are first summed by their raw stacks (a million samples usually hold some thousands
/// of stacks), locations are merged over those, and the few stacks that merging locations made
/// equal are summed again: the same result, in the same order of first appearance, as merging
/// sample by sample.
fn merge_profile(profile: &Profile) -> (FastMap<u64, (u64, u64)>, Vec<MergedSample<'_>>) {
    let raw = sum_equal(
        profile
            .sample
            .iter()
            .filter(|s| s.value.iter().any(|&v| v != 0))
            .map(|s| MergedSample {
                locations: Cow::Borrowed(s.location_id.as_slice()),
                values: s.value.clone(),
                labels: &s.label,
            }),
        profile,
    );
    let merged_locations = merge_locations(profile, &raw);
    let canonical = |id: &u64| merged_locations.get(id).map_or(*id, |&(c, _)| c);
    let mut changed = false;
    let remapped: Vec<MergedSample<'_>> = raw
        .into_iter()
        .map(|mut m| {
            if m.locations.iter().any(|id| canonical(id) != *id) {
                changed = true;
                m.locations = Cow::Owned(m.locations.iter().map(canonical).collect());
            }
            m
        })
        .collect();
    let mut merged = if changed {
        sum_equal(remapped.into_iter(), profile)
    } else {
        remapped
    };
    // Samples that cancel out (a base subtracted) are dropped, as pprof's merge drops them.
    merged.retain(|m| m.values.iter().any(|&v| v != 0));
    (merged_locations, merged)
}

/// Sum the samples with equal locations and labels, in order of first appearance.
fn sum_equal<'p>(
    samples: impl Iterator<Item = MergedSample<'p>>,
    profile: &'p Profile,
) -> Vec<MergedSample<'p>> {
    let mut merged: Vec<MergedSample<'p>> = Vec::new();
    let mut index: FastMap<SampleKey<'p>, usize> = FastMap::default();
    for s in samples {
        let labels = label_keys(profile, s.labels);
        match index.entry((s.locations.clone(), labels)) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let m = &mut merged[*e.get()];
                for (acc, v) in m.values.iter_mut().zip(&s.values) {
                    *acc += v;
                }
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(merged.len());
                merged.push(s);
            }
        }
    }
    merged
}
