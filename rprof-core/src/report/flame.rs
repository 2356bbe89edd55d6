//! Flame graph data as a tree, for renderers that draw it themselves (the web UI): the filtered
//! profile's stacks root first, one node per function per stack level, siblings with the same
//! function merged, exactly as the function graph behind `top` names them (so a frame's name
//! and value are the ones `top` shows).
//!
//! [`flame_tree`] is the usual flame graph (root = all samples, children = callees);
//! [`caller_tree`] is the inverted one of a single function: its root is that function, its
//! children the functions that called it, and so on towards the threads' entry points.
//!
//! In a diff profile (a base given as `diff_base`, see `base::with_base`), the base's samples
//! carry the label `pprof::base=true` and negated values; their part of a node is kept apart in
//! [`FlameNode::base`] (as a positive amount) so a renderer can show both runs and their delta.

use super::base::is_base_sample;
use super::graph::FastMap;
use super::{ReportOptions, Setup};
use crate::proto::Profile;
use crate::{Error, Result};

/// One frame of a flame graph: a node of the report's graph (a function at the default
/// granularity) at one position in the stacks below its parent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlameNode {
    /// The function name as `top` prints it (`root` for the tree's root).
    pub name: String,
    /// Value of the samples through this frame (of the new profile in a diff), in the sample
    /// unit; the children's values sum to at most this, the rest is the frame's own (flat) part.
    pub value: i64,
    /// In a diff profile, the base's value through this frame, as a positive amount; 0
    /// otherwise.
    pub base: i64,
    /// The callees (callers, in a [`caller_tree`]), sorted by name.
    pub children: Vec<FlameNode>,
}

impl FlameNode {
    /// The number of nodes in this tree.
    pub fn len(&self) -> usize {
        1 + self.children.iter().map(FlameNode::len).sum::<usize>()
    }

    /// Always false: a tree has at least its root. (For clippy's `len_without_is_empty`.)
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Which part of a flame graph to build, for renderers that show a part at a time: the frames
/// on a zoom path and the subtree below its end, without the frames too narrow to be seen.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FlameScope<'a> {
    /// Names from the root (not included) to the zoomed frame, followed as far as they exist;
    /// the frames on the path keep their values but lose their other children.
    pub zoom: &'a [String],
    /// Subtrees whose value and base are both below this share of the zoomed frame's are left
    /// out (their value stays in their parent, as its own part); 0 keeps everything.
    pub min_fraction: f64,
}

/// The flame graph of the chosen sample type, after the filters of `opts`: the root holds the
/// total of all samples, each node its callees. Samples with a zero value are left out.
pub fn flame_tree(profile: &Profile, opts: &ReportOptions) -> Result<FlameNode> {
    flame_scoped(profile, opts, None, &FlameScope::default())
}

/// The inverted flame graph (an icicle of callers) of the function named exactly `function`:
/// the root is that function with the value of every sample it is in (once per sample, at its
/// innermost occurrence), its children are its callers, theirs their callers, up to the
/// threads' entry points. An unknown name is [`Error::Filter`].
pub fn caller_tree(profile: &Profile, opts: &ReportOptions, function: &str) -> Result<FlameNode> {
    flame_scoped(profile, opts, Some(function), &FlameScope::default())
}

/// [`flame_tree`] (or, with `callers_of`, [`caller_tree`]) limited to `scope`: what a
/// renderer draws, built without allocating the frames it would not draw.
pub fn flame_scoped(
    profile: &Profile,
    opts: &ReportOptions,
    callers_of: Option<&str>,
    scope: &FlameScope<'_>,
) -> Result<FlameNode> {
    let mut keep = None;
    let (profile, setup) = Setup::new(profile, opts, &mut keep)?;
    let (prepared, sel) = (&setup.prepared, &setup.sel);
    let target = match callers_of {
        None => None,
        Some(name) => match prepared.names.iter().position(|n| n == name) {
            Some(n) => Some(n),
            None => {
                return Err(Error::Filter(format!(
                    "no function named {name:?} in the profile"
                )))
            }
        },
    };
    let diff = profile
        .string_table
        .iter()
        .any(|s| s == super::base::BASE_LABEL);

    // The tree as a flat arena: each node's graph node, parent, value and base; children are
    // found through one map from (parent, graph node).
    const ROOT: usize = usize::MAX;
    let mut arena = Arena {
        node: vec![target.unwrap_or(ROOT)],
        parent: vec![0],
        value: vec![0],
        base: vec![0],
    };
    let mut child_of: FastMap<(u32, u32), u32> = FastMap::default();
    let mut stack: Vec<usize> = Vec::new();
    for sample in &prepared.samples {
        let v = sample.values.get(sel.index).copied().unwrap_or(0);
        if v == 0 {
            continue;
        }
        // The frames root first.
        stack.clear();
        for &loc in sample.locations.iter().rev() {
            stack.extend(prepared.frames(loc).iter().rev());
        }
        let path: &mut dyn Iterator<Item = &usize> = match target {
            None => &mut stack.iter(),
            Some(t) => match stack.iter().rposition(|&n| n == t) {
                // From the caller of the innermost occurrence, towards the root.
                Some(at) => &mut stack[..at].iter().rev(),
                None => continue,
            },
        };
        let (value, base) = if diff && is_base_sample(profile, sample.labels) {
            (0, -v)
        } else {
            (v, 0)
        };
        let mut at = 0usize;
        arena.value[0] += value;
        arena.base[0] += base;
        for &n in path {
            let next = *child_of.entry((at as u32, n as u32)).or_insert_with(|| {
                arena.node.push(n);
                arena.parent.push(at);
                arena.value.push(0);
                arena.base.push(0);
                (arena.node.len() - 1) as u32
            });
            at = next as usize;
            arena.value[at] += value;
            arena.base[at] += base;
        }
    }
    drop(child_of);
    let children = arena.children();
    let name = |n: usize| -> String {
        if n == ROOT {
            "root".to_owned()
        } else {
            prepared.names[n].clone()
        }
    };
    let names = |ids: &[usize]| -> Vec<(usize, &str)> {
        ids.iter()
            .map(|&c| (c, prepared.names[arena.node[c]].as_str()))
            .collect()
    };

    // Follow the zoom path, then build the subtree below it, pruned relative to it.
    let mut path = vec![0usize];
    for want in scope.zoom {
        let here = *path.last().expect("the root");
        match names(&children[here]).into_iter().find(|(_, n)| n == want) {
            Some((c, _)) => path.push(c),
            None => break,
        }
    }
    let end = *path.last().expect("the root");
    let span = arena.value[end].abs().max(arena.base[end].abs());
    let min = (span as f64 * scope.min_fraction) as i64;
    let mut tree = arena.assemble(end, &children, min, &name);
    for &above in path.iter().rev().skip(1) {
        tree = FlameNode {
            name: name(arena.node[above]),
            value: arena.value[above],
            base: arena.base[above],
            children: vec![tree],
        };
    }
    Ok(tree)
}

/// A tree under construction, one entry per node in each column.
struct Arena {
    node: Vec<usize>,
    parent: Vec<usize>,
    value: Vec<i64>,
    base: Vec<i64>,
}

impl Arena {
    /// Each node's children (the root is its own parent and not its own child).
    fn children(&self) -> Vec<Vec<usize>> {
        let mut children = vec![Vec::new(); self.node.len()];
        for (c, &p) in self.parent.iter().enumerate().skip(1) {
            children[p].push(c);
        }
        children
    }

    /// The subtree at `at` as nested nodes, children sorted by name, leaving out those whose
    /// value and base are both below `min` in absolute value.
    fn assemble(
        &self,
        at: usize,
        children: &[Vec<usize>],
        min: i64,
        name: &dyn Fn(usize) -> String,
    ) -> FlameNode {
        let mut kids: Vec<FlameNode> = children[at]
            .iter()
            .filter(|&&c| self.value[c].abs() >= min || self.base[c].abs() >= min)
            .map(|&c| self.assemble(c, children, min, name))
            .collect();
        kids.sort_by(|a, b| a.name.cmp(&b.name));
        FlameNode {
            name: name(self.node[at]),
            value: self.value[at],
            base: self.base[at],
            children: kids,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::MappingInfo;
    use crate::proto::Label;
    use crate::ProfileBuilder;

    /// main -> work -> leaf (30), main -> work (10), main -> rec -> rec -> leaf (5), and one
    /// sample of the base run (labelled as `diff_base` labels them): main -> work (-4).
    fn profile() -> Profile {
        let mut b = ProfileBuilder::new(&[("samples", "count")], ("cpu", "nanoseconds"), 1);
        let m = b.mapping(&MappingInfo {
            filename: "/bin/prog".into(),
            symbolized: true,
            memory_limit: 0x9000,
            ..Default::default()
        });
        let f = |b: &mut ProfileBuilder, name: &str| b.function(name, name, "src/main.rs", 1);
        let (main, work, leaf, rec) = (
            f(&mut b, "main"),
            f(&mut b, "work"),
            f(&mut b, "leaf"),
            f(&mut b, "rec"),
        );
        let main = b.location(m, 0x100, &[(main, 1)]);
        let work = b.location(m, 0x200, &[(work, 1)]);
        // `leaf` inlined into `rec`: one location, two frames.
        let leaf_in_rec = b.location(m, 0x300, &[(leaf, 1), (rec, 2)]);
        let leaf = b.location(m, 0x310, &[(leaf, 1)]);
        let rec = b.location(m, 0x400, &[(rec, 1)]);
        b.add_sample(&[leaf, work, main], &[30]);
        b.add_sample(&[work, main], &[10]);
        b.add_sample(&[leaf_in_rec, rec, main], &[5]);
        let key = b.string(super::super::base::BASE_LABEL);
        let t = b.string("true");
        let label = Label {
            key,
            str: t,
            ..Default::default()
        };
        b.add_labeled_sample(&[work, main], &[-4], vec![label]);
        b.build()
    }

    fn shape(n: &FlameNode) -> String {
        let mut s = format!("{}={}/{}", n.name, n.value, n.base);
        if !n.children.is_empty() {
            let kids: Vec<String> = n.children.iter().map(shape).collect();
            s.push_str(&format!("[{}]", kids.join(" ")));
        }
        s
    }

    #[test]
    fn stacks_root_first_with_inlined_frames_and_the_base_apart() {
        let tree = flame_tree(&profile(), &ReportOptions::default()).unwrap();
        assert_eq!(
            shape(&tree),
            "root=45/4[main=45/4[rec=5/0[rec=5/0[leaf=5/0]] work=40/4[leaf=30/0]]]"
        );
        assert_eq!(tree.len(), 7);
    }

    #[test]
    fn callers_of_a_function_inverted_and_pruned() {
        let tree = caller_tree(&profile(), &ReportOptions::default(), "leaf").unwrap();
        assert_eq!(
            shape(&tree),
            "leaf=35/0[rec=5/0[rec=5/0[main=5/0]] work=30/0[main=30/0]]"
        );
        let scope = FlameScope {
            zoom: &[],
            min_fraction: 10.0 / 35.0,
        };
        let pruned = flame_scoped(&profile(), &ReportOptions::default(), Some("leaf"), &scope);
        assert_eq!(shape(&pruned.unwrap()), "leaf=35/0[work=30/0[main=30/0]]");
        let e = caller_tree(&profile(), &ReportOptions::default(), "nope").unwrap_err();
        assert_eq!(e.to_string(), r#"no function named "nope" in the profile"#);
    }

    #[test]
    fn a_zoomed_scope_keeps_the_path_and_the_subtree_below() {
        let zoom = ["main".to_owned(), "rec".to_owned(), "nope".to_owned()];
        let scope = FlameScope {
            zoom: &zoom,
            min_fraction: 0.0,
        };
        let tree = flame_scoped(&profile(), &ReportOptions::default(), None, &scope).unwrap();
        assert_eq!(
            shape(&tree),
            "root=45/4[main=45/4[rec=5/0[rec=5/0[leaf=5/0]]]]"
        );
        // Pruning is relative to the zoomed frame: a frame of 5 survives 0.5 of 5.
        let zoom = ["main".to_owned(), "rec".to_owned()];
        let scope = FlameScope {
            zoom: &zoom,
            min_fraction: 0.5,
        };
        let tree = flame_scoped(&profile(), &ReportOptions::default(), None, &scope).unwrap();
        assert_eq!(
            shape(&tree),
            "root=45/4[main=45/4[rec=5/0[rec=5/0[leaf=5/0]]]]"
        );
    }

    #[test]
    fn filters_apply_before_the_tree() {
        let opts = ReportOptions {
            filters: super::super::filter::Filters {
                focus: Some("rec".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let tree = flame_tree(&profile(), &opts).unwrap();
        assert_eq!(
            shape(&tree),
            "root=5/0[main=5/0[rec=5/0[rec=5/0[leaf=5/0]]]]"
        );
    }
}
