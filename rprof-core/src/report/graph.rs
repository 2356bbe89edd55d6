//! The function-level call graph pprof's `top` is computed from (`internal/graph` in
//! google/pprof, at its default `functions` granularity).
//!
//! A node is a function, identified by name; frames of unnamed functions and locations without
//! line information become one node per binary, printed `[binary]`, or `<unknown>` when the
//! location has no mapping either. Samples are first merged the way pprof merges a profile it
//! loads: samples whose values are all zero are dropped and samples with the same stack and
//! labels are summed, keeping the order of first appearance.

use std::collections::{HashMap, HashSet};

use crate::proto::{Function, Label, Profile};

/// What identifies a node: the function name, or for unnamed code the binary (and function
/// start line), as pprof's `NodeInfo` does once file names and addresses are aggregated away.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct NodeKey {
    name: String,
    objfile: String,
    start_line: i64,
}

impl NodeKey {
    fn printable(&self) -> String {
        if !self.name.is_empty() {
            self.name.clone()
        } else if !self.objfile.is_empty() {
            format!("[{}]", base_name(&self.objfile))
        } else {
            "<unknown>".to_owned()
        }
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
    /// Location ids, leaf first.
    pub locations: &'p [u64],
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
    loc_nodes: HashMap<u64, Vec<usize>>,
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
    pub callers: HashMap<usize, (i64, bool)>,
}

impl NodeStat {
    /// pprof's rule for keeping a node in a graph.
    pub fn present(&self) -> bool {
        self.flat != 0 || self.cum != 0
    }
}

impl<'p> Prepared<'p> {
    /// Resolve `profile`'s locations into nodes and merge its samples.
    pub fn new(profile: &'p Profile) -> Self {
        let mut prepared = Prepared {
            keys: Vec::new(),
            names: Vec::new(),
            loc_nodes: HashMap::with_capacity(profile.location.len()),
            samples: Vec::new(),
        };
        let mut index: HashMap<NodeKey, usize> = HashMap::new();
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
        for loc in &profile.location {
            let objfile = match loc.mapping_id {
                0 => "",
                id => objfiles.get(&id).copied().unwrap_or(""),
            };
            let unnamed = |start_line| NodeKey {
                name: String::new(),
                objfile: objfile.to_owned(),
                start_line,
            };
            let keys: Vec<NodeKey> = if loc.line.is_empty() {
                vec![unnamed(0)]
            } else {
                loc.line
                    .iter()
                    .map(|line| match profile.function_by_id(line.function_id) {
                        Some(f) => match function_name(profile, f) {
                            "" => unnamed(f.start_line),
                            name => NodeKey {
                                name: name.to_owned(),
                                objfile: String::new(),
                                start_line: 0,
                            },
                        },
                        None => unnamed(0),
                    })
                    .collect()
            };
            let nodes = keys.into_iter().map(|k| node(k, &mut prepared)).collect();
            prepared.loc_nodes.insert(loc.id, nodes);
        }
        prepared.samples = merge_samples(profile);
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
        let mut seen_edges: HashSet<(usize, usize)> = HashSet::new();
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
                .then_with(|| self.keys[a].cmp(&self.keys[b]))
        });
    }
}

/// A label as merging compares it: key, string value, number, number unit.
type LabelKey<'p> = (&'p str, &'p str, i64, &'p str);
/// What makes two samples one: their locations and labels.
type SampleKey<'p> = (&'p [u64], Vec<LabelKey<'p>>);

/// pprof's `profile.Merge` of a single profile: drop all-zero samples, sum samples with the same
/// locations and labels.
fn merge_samples(profile: &Profile) -> Vec<MergedSample<'_>> {
    let mut merged: Vec<MergedSample<'_>> = Vec::with_capacity(profile.sample.len());
    let mut index: HashMap<SampleKey<'_>, usize> = HashMap::new();
    for s in &profile.sample {
        if s.value.iter().all(|&v| v == 0) {
            continue;
        }
        let mut labels: Vec<_> = s
            .label
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
        // Order by key only: values of one key keep their order, as in pprof's label map.
        labels.sort_by_key(|l| l.0);
        match index.entry((s.location_id.as_slice(), labels)) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let m = &mut merged[*e.get()];
                for (acc, v) in m.values.iter_mut().zip(&s.value) {
                    *acc += v;
                }
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(merged.len());
                merged.push(MergedSample {
                    locations: &s.location_id,
                    values: s.value.clone(),
                    labels: &s.label,
                });
            }
        }
    }
    merged
}
