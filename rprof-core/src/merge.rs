//! Merging profiles of one kind, e.g. the CPU profiles of every test binary of a run.

use crate::builder::{MappingInfo, ProfileBuilder};
use crate::proto::Profile;
use crate::{Error, Result};

/// Merge `profiles` into one. They must have the same sample types (names and units, in order).
/// Each binary keeps its own mapping; equal functions, locations and stacks are folded.
/// The period is the largest of the inputs', the time span covers all of them.
pub fn merge(profiles: &[Profile]) -> Result<Profile> {
    let first = profiles
        .first()
        .ok_or_else(|| Error::Merge("no profiles to merge".into()))?;
    let types = sample_types(first);
    let mut b = ProfileBuilder::like(first);
    let mut period = 0;
    let mut start = i64::MAX;
    let mut end = i64::MIN;
    for p in profiles {
        let these = sample_types(p);
        if these != types {
            return Err(Error::Merge(format!(
                "sample types differ: [{}] vs [{}]",
                describe(&types),
                describe(&these)
            )));
        }
        period = period.max(p.period);
        if p.time_nanos != 0 {
            start = start.min(p.time_nanos);
            end = end.max(p.time_nanos + p.duration_nanos);
        }
        for &c in &p.comment {
            b.comment(p.str(c));
        }
        add_profile(&mut b, p);
    }
    b.set_period(period);
    if start <= end {
        b.time(start, end - start);
    }
    Ok(b.build())
}

/// Copy every sample of `p` into `b`, re-interning its tables.
pub(crate) fn add_profile(b: &mut ProfileBuilder, p: &Profile) {
    let mut mapping_ids = std::collections::HashMap::new();
    for m in &p.mapping {
        let id = b.mapping(&MappingInfo {
            memory_start: m.memory_start,
            memory_limit: m.memory_limit,
            file_offset: m.file_offset,
            filename: p.str(m.filename).to_owned(),
            build_id: p.str(m.build_id).to_owned(),
            symbolized: m.has_functions,
        });
        mapping_ids.insert(m.id, id);
    }
    let mut function_ids = std::collections::HashMap::new();
    for f in &p.function {
        let id = b.function(
            p.str(f.name),
            p.str(f.system_name),
            p.str(f.filename),
            f.start_line,
        );
        function_ids.insert(f.id, id);
    }
    let mut location_ids = std::collections::HashMap::new();
    for l in &p.location {
        let lines: Vec<(u64, i64)> = l
            .line
            .iter()
            .map(|ln| (function_ids[&ln.function_id], ln.line))
            .collect();
        let mapping = mapping_ids.get(&l.mapping_id).copied().unwrap_or(0);
        location_ids.insert(l.id, b.location(mapping, l.address, &lines));
    }
    for s in &p.sample {
        let stack: Vec<u64> = s.location_id.iter().map(|id| location_ids[id]).collect();
        let labels = s
            .label
            .iter()
            .map(|l| crate::proto::Label {
                key: b.string(p.str(l.key)),
                str: if l.str != 0 {
                    b.string(p.str(l.str))
                } else {
                    0
                },
                num: l.num,
                num_unit: if l.num_unit != 0 {
                    b.string(p.str(l.num_unit))
                } else {
                    0
                },
            })
            .collect();
        b.add_labeled_sample(&stack, &s.value, labels);
    }
}

/// A profile's sample types as (type, unit) names.
pub(crate) fn sample_types(p: &Profile) -> Vec<(String, String)> {
    p.sample_type
        .iter()
        .map(|vt| p.value_type_name(vt))
        .collect()
}

/// Sample types as `type/unit type/unit`.
pub(crate) fn describe(types: &[(String, String)]) -> String {
    types
        .iter()
        .map(|(t, u)| format!("{t}/{u}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, value: i64, time: i64) -> Profile {
        let mut b = ProfileBuilder::new(&[("samples", "count")], ("cpu", "nanoseconds"), 10);
        let m = b.mapping(&MappingInfo {
            memory_start: 0x1000,
            memory_limit: 0x2000,
            filename: format!("/bin/{name}"),
            ..Default::default()
        });
        let f = b.function(name, name, "a.rs", 1);
        let l = b.location(m, 0x1100, &[(f, 2)]);
        b.add_sample(&[l], &[value]);
        b.time(time, 5);
        b.build()
    }

    #[test]
    fn merges_samples_and_keeps_each_mapping() {
        let merged = merge(&[one("a", 3, 100), one("b", 4, 200), one("a", 5, 300)]).unwrap();
        crate::codec::validate(&merged).unwrap();
        assert_eq!(merged.mapping.len(), 2);
        assert_eq!(merged.sample.len(), 2);
        assert_eq!(merged.total(0), 12);
        assert_eq!((merged.time_nanos, merged.duration_nanos), (100, 205));
    }

    #[test]
    fn refuses_different_kinds() {
        let mut b = ProfileBuilder::new(&[("alloc_space", "bytes")], ("space", "bytes"), 1);
        b.add_sample(&[], &[1]);
        assert!(matches!(
            merge(&[one("a", 1, 1), b.build()]),
            Err(Error::Merge(_))
        ));
    }
}
