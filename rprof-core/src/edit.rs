//! Edits of whole profiles.

use crate::builder::{MappingInfo, ProfileBuilder};
use crate::proto::Profile;

/// A copy of `profile` whose stacks no longer start with frames `plumbing` matches: leading
/// locations all of whose lines name such functions are dropped (e.g. the allocator's own
/// frames at the leaf of a heap profile, as Go leaves out `runtime.mallocgc`). A stack made only
/// of such frames keeps its last one, so no value is lost.
pub fn trim_leaf_frames(profile: &Profile, plumbing: impl Fn(&str) -> bool) -> Profile {
    let is_plumbing = |id: &u64| {
        profile.location_by_id(*id).is_some_and(|l| {
            !l.line.is_empty()
                && l.line.iter().all(|ln| {
                    profile
                        .function_by_id(ln.function_id)
                        .is_some_and(|f| plumbing(profile.str(f.name)))
                })
        })
    };
    let mut trimmed = profile.clone();
    for s in &mut trimmed.sample {
        let n = s
            .location_id
            .iter()
            .take_while(|id| is_plumbing(id))
            .count();
        let n = n.min(s.location_id.len().saturating_sub(1));
        s.location_id.drain(..n);
    }
    // Re-intern, so locations no sample uses any more are gone and equal stacks are folded.
    let types: Vec<(String, String)> = trimmed
        .sample_type
        .iter()
        .map(|vt| trimmed.value_type_name(vt))
        .collect();
    let refs: Vec<(&str, &str)> = types
        .iter()
        .map(|(t, u)| (t.as_str(), u.as_str()))
        .collect();
    let period_type = trimmed
        .period_type
        .map(|vt| trimmed.value_type_name(&vt))
        .unwrap_or_default();
    let mut b = ProfileBuilder::new(&refs, (&period_type.0, &period_type.1), trimmed.period);
    if trimmed.default_sample_type != 0 {
        b.default_sample_type(trimmed.str(trimmed.default_sample_type));
    }
    for &c in &trimmed.comment {
        b.comment(trimmed.str(c));
    }
    b.time(trimmed.time_nanos, trimmed.duration_nanos);
    for m in &trimmed.mapping {
        b.mapping(&MappingInfo {
            memory_start: m.memory_start,
            memory_limit: m.memory_limit,
            file_offset: m.file_offset,
            filename: trimmed.str(m.filename).to_owned(),
            build_id: trimmed.str(m.build_id).to_owned(),
            symbolized: m.has_functions,
        });
    }
    crate::merge::add_profile(&mut b, &trimmed);
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;

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
