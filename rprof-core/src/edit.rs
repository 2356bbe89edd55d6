//! Edits of whole profiles.

use crate::builder::ProfileBuilder;
use crate::proto::Profile;

/// A copy of `profile` whose stacks no longer start with frames `plumbing` matches: leading
/// locations all of whose lines name such functions are dropped (e.g. the allocator's own
/// frames at the leaf of a heap profile, as Go leaves out `runtime.mallocgc`), and so are such
/// lines inlined at the leaf end of the first location that has other lines too (std's
/// `Builder::spawn` inlined into the caller that spawns). A stack made only of such frames keeps
/// its last one, so no value is lost.
pub fn trim_leaf_frames(profile: &Profile, plumbing: impl Fn(&str) -> bool) -> Profile {
    let line_is_plumbing = |ln: &crate::proto::Line| {
        profile
            .function_by_id(ln.function_id)
            .is_some_and(|f| plumbing(profile.str(f.name)))
    };
    let is_plumbing = |id: &u64| {
        profile
            .location_by_id(*id)
            .is_some_and(|l| !l.line.is_empty() && l.line.iter().all(line_is_plumbing))
    };
    let mut trimmed = profile.clone();
    // Leaf locations with their plumbing lines cut off, by original id: (new id, its copy).
    let mut next_id = profile.location.iter().map(|l| l.id).max().unwrap_or(0);
    let mut cut: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    for s in &mut trimmed.sample {
        let n = s
            .location_id
            .iter()
            .take_while(|id| is_plumbing(id))
            .count();
        let n = n.min(s.location_id.len().saturating_sub(1));
        s.location_id.drain(..n);
        let Some(leaf) = s.location_id.first_mut() else {
            continue;
        };
        let Some(loc) = profile.location_by_id(*leaf) else {
            continue;
        };
        let inlined = loc
            .line
            .iter()
            .take_while(|ln| line_is_plumbing(ln))
            .count();
        if inlined == 0 || inlined == loc.line.len() {
            continue;
        }
        *leaf = *cut.entry(loc.id).or_insert_with(|| {
            next_id += 1;
            let mut copy = loc.clone();
            copy.id = next_id;
            copy.line.drain(..inlined);
            trimmed.location.push(copy);
            next_id
        });
    }
    // Re-intern, so locations no sample uses any more are gone and equal stacks are folded.
    let mut b = ProfileBuilder::like(&trimmed);
    crate::merge::add_profile(&mut b, &trimmed);
    b.build()
}

/// Functions of the allocator itself, left off the leaf end of heap stacks (as Go leaves out
/// `runtime.mallocgc`), so that `top` shows who allocates.
pub fn is_allocator_frame(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "__rustc::",
        "__rust_alloc",
        "__rust_realloc",
        "__rdl_",
        "__rg_",
        "alloc::alloc::",
        "<alloc::alloc::Global as ",
        "<alloc::alloc::Global>::",
        // RawVec is how Vec, String and VecDeque allocate: plumbing, not the allocating code.
        "alloc::raw_vec::",
        "<alloc::raw_vec::",
        "std::alloc::",
        "<std::alloc::System as ",
        "std::sys::alloc::",
        "std::sys::pal::unix::alloc::",
        "rprof_harness::",
        "<rprof_harness::",
        "malloc",
        "calloc",
        "realloc",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Functions of the synchronization machinery and the standard library around it (std's
/// futex, parking and channel code, libc's pthread calls), left off the leaf end of block and
/// mutex stacks so that `top` shows the code that waits and the code that makes others wait.
pub fn is_sync_frame(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "std::",
        "<std::",
        "core::",
        "<core::",
        "alloc::",
        "<alloc::",
        "syscall",
        "pthread_",
        "__pthread_",
        "sem_wait",
        "rprof_harness::",
        "<rprof_harness::",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
}

/// `after - before`: what happened between two snapshots of one cumulative profile (e.g. the
/// allocations during one benchmark). Samples are matched by stack and labels; samples whose
/// values all cancel are dropped.
pub fn subtract(after: &Profile, before: &Profile) -> crate::Result<Profile> {
    let mut negated = before.clone();
    for s in &mut negated.sample {
        for v in &mut s.value {
            *v = -*v;
        }
    }
    let mut merged = crate::merge::merge(&[after.clone(), negated])?;
    // A sample's identity: its stack and its labels (key, string, number).
    type SampleKey = (Vec<u64>, Vec<(i64, i64, i64)>);
    let mut index: std::collections::HashMap<SampleKey, usize> = std::collections::HashMap::new();
    let mut folded: Vec<crate::proto::Sample> = Vec::new();
    for s in merged.sample.drain(..) {
        let key = (
            s.location_id.clone(),
            s.label.iter().map(|l| (l.key, l.str, l.num)).collect(),
        );
        match index.get(&key) {
            Some(&i) => {
                for (acc, v) in folded[i].value.iter_mut().zip(&s.value) {
                    *acc += v;
                }
            }
            None => {
                index.insert(key, folded.len());
                folded.push(s);
            }
        }
    }
    folded.retain(|s| s.value.iter().any(|&v| v != 0));
    merged.sample = folded;
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtract_cancels_what_did_not_change() {
        let build = |extra: i64| {
            let mut b = ProfileBuilder::new(&[("alloc_space", "bytes")], ("space", "bytes"), 1);
            let f = b.function("f", "f", "", 0);
            let g = b.function("g", "g", "", 0);
            let lf = b.location(0, 0x10, &[(f, 0)]);
            let lg = b.location(0, 0x20, &[(g, 0)]);
            b.add_sample(&[lf], &[100]);
            b.add_sample(&[lg], &[7 + extra]);
            b.build()
        };
        let d = subtract(&build(5), &build(0)).unwrap();
        assert_eq!(d.sample.len(), 1);
        assert_eq!(d.total(0), 5);
    }

    #[test]
    fn plumbing_inlined_into_the_leaf_location_goes_too() {
        let mut b = ProfileBuilder::new(&[("threadcreate", "count")], ("threadcreate", "count"), 1);
        let spawn = b.function("std::thread::spawn", "x", "", 0);
        let user = b.function("app::start_pool", "y", "f.rs", 1);
        let main = b.function("app::main", "z", "f.rs", 9);
        // std's spawn inlined into start_pool: one location, leaf line first.
        let mixed = b.location(0, 0x10, &[(spawn, 0), (user, 3)]);
        let m = b.location(0, 0x20, &[(main, 10)]);
        b.add_sample(&[mixed, m], &[4]);
        // The same location further up another stack keeps its lines.
        let leaf = b.location(0, 0x30, &[(main, 11)]);
        b.add_sample(&[leaf, mixed, m], &[1]);
        let p = b.build();
        let t = trim_leaf_frames(&p, |name| name.starts_with("std::"));
        crate::codec::validate(&t).unwrap();
        let names = |s: usize| -> Vec<&str> {
            t.sample[s]
                .location_id
                .iter()
                .flat_map(|&id| &t.location_by_id(id).unwrap().line)
                .map(|l| t.str(t.function_by_id(l.function_id).unwrap().name))
                .collect()
        };
        assert_eq!(names(0), ["app::start_pool", "app::main"]);
        assert_eq!(
            names(1),
            [
                "app::main",
                "std::thread::spawn",
                "app::start_pool",
                "app::main"
            ]
        );
        assert_eq!(t.total(0), 5);
    }

    #[test]
    fn drops_leading_plumbing_only() {
        let mut b = ProfileBuilder::new(&[("alloc_space", "bytes")], ("space", "bytes"), 1);
        let alloc = b.function("__rustc::__rust_alloc", "x", "", 0);
        let user = b.function("app::f", "y", "f.rs", 1);
        let a = b.location(0, 0x10, &[(alloc, 0)]);
        let u = b.location(0, 0x20, &[(user, 3)]);
        b.add_sample(&[a, u, a], &[100]);
        b.add_sample(&[a], &[5]);
        let p = b.build();
        let t = trim_leaf_frames(&p, |name| name.starts_with("__rustc::"));
        crate::codec::validate(&t).unwrap();
        assert_eq!(t.total(0), 105);
        let first = t.location_by_id(t.sample[0].location_id[0]).unwrap();
        assert_eq!(
            t.str(t.function_by_id(first.line[0].function_id).unwrap().name),
            "app::f"
        );
        assert_eq!(t.sample[0].location_id.len(), 2);
        assert_eq!(t.sample[1].location_id.len(), 1);
    }
}
