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

use std::collections::HashMap;

use super::base::is_base_sample;
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

    /// Drop the subtrees whose value and base are both below `min` in absolute value (their
    /// value stays counted in their parent, as its own part). Renderers use it to send only
    /// what can be seen: a frame under a pixel wide at any reasonable zoom.
    pub fn prune(&mut self, min: i64) {
        self.children
            .retain(|c| c.value.abs() >= min || c.base.abs() >= min);
        for c in &mut self.children {
            c.prune(min);
        }
    }
}

/// The flame graph of the chosen sample type, after the filters of `opts`: the root holds the
/// total of all samples, each node its callees. Samples with a zero value are left out.
pub fn flame_tree(profile: &Profile, opts: &ReportOptions) -> Result<FlameNode> {
    build(profile, opts, None)
}

/// The inverted flame graph (an icicle of callers) of the function named exactly `function`:
/// the root is that function with the value of every sample it is in (once per sample, at its
/// innermost occurrence), its children are its callers, theirs their callers, up to the
/// threads' entry points. An unknown name is [`Error::Filter`].
pub fn caller_tree(profile: &Profile, opts: &ReportOptions, function: &str) -> Result<FlameNode> {
    build(profile, opts, Some(function))
}

/// Arena node while building: name index, value, base, children by name index.
struct Building {
    node: usize,
    value: i64,
    base: i64,
    children: HashMap<usize, usize>,
}

fn build(profile: &Profile, opts: &ReportOptions, inverted_at: Option<&str>) -> Result<FlameNode> {
    let mut keep = None;
    let (profile, setup) = Setup::new(profile, opts, &mut keep)?;
    let (prepared, sel) = (&setup.prepared, &setup.sel);
    let target = match inverted_at {
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

    let root_name = match target {
        Some(n) => n,
        None => usize::MAX,
    };
    let mut arena = vec![Building {
        node: root_name,
        value: 0,
        base: 0,
        children: HashMap::new(),
    }];
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
        let path: Box<dyn Iterator<Item = &usize>> = match target {
            None => Box::new(stack.iter()),
            Some(t) => match stack.iter().rposition(|&n| n == t) {
                // From the caller of the innermost occurrence, towards the root.
                Some(at) => Box::new(stack[..at].iter().rev()),
                None => continue,
            },
        };
        let (value, base) = if diff && is_base_sample(profile, sample.labels) {
            (0, -v)
        } else {
            (v, 0)
        };
        let mut at = 0;
        arena[0].value += value;
        arena[0].base += base;
        for &n in path {
            let next = match arena[at].children.get(&n) {
                Some(&c) => c,
                None => {
                    arena.push(Building {
                        node: n,
                        value: 0,
                        base: 0,
                        children: HashMap::new(),
                    });
                    let c = arena.len() - 1;
                    arena[at].children.insert(n, c);
                    c
                }
            };
            at = next;
            arena[at].value += value;
            arena[at].base += base;
        }
    }
    let name = |n: usize| -> String {
        if n == usize::MAX {
            "root".to_owned()
        } else {
            prepared.names[n].clone()
        }
    };
    Ok(assemble(&arena, 0, &name))
}

/// The arena's subtree at `at` as nested nodes, children sorted by name.
fn assemble(arena: &[Building], at: usize, name: &dyn Fn(usize) -> String) -> FlameNode {
    let b = &arena[at];
    let mut children: Vec<FlameNode> = b
        .children
        .values()
        .map(|&c| assemble(arena, c, name))
        .collect();
    children.sort_by(|a, b| a.name.cmp(&b.name));
    FlameNode {
        name: name(b.node),
        value: b.value,
        base: b.base,
        children,
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
        let mut tree = caller_tree(&profile(), &ReportOptions::default(), "leaf").unwrap();
        assert_eq!(
            shape(&tree),
            "leaf=35/0[rec=5/0[rec=5/0[main=5/0]] work=30/0[main=30/0]]"
        );
        tree.prune(10);
        assert_eq!(shape(&tree), "leaf=35/0[work=30/0[main=30/0]]");
        let e = caller_tree(&profile(), &ReportOptions::default(), "nope").unwrap_err();
        assert_eq!(e.to_string(), r#"no function named "nope" in the profile"#);
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
