//! Merging profiles of one kind, e.g. the CPU profiles of every test binary of a run.

use crate::builder::{MappingInfo, ProfileBuilder};
use crate::proto::Profile;
use crate::{Error, Result};

/// Merge `profiles` into one. They must have the same sample types (names and units, in order).
/// Each binary keeps its own mapping, one per image however many processes loaded it at
/// however many addresses (addresses are moved into the first one's); equal functions,
/// locations and stacks are folded.
/// The period is the largest of the inputs', the time span covers all of them.
pub fn merge(profiles: &[Profile]) -> Result<Profile> {
    let mut merger = Merger::new();
    for p in profiles {
        merger.add(p)?;
    }
    merger.finish()
}

/// A merge fed one profile at a time, as [`merge`] does it: a caller with thousands of inputs
/// (a process per test) holds one input and the merged tables, never all inputs at once, so
/// memory follows the distinct stacks, not the number of processes.
#[derive(Default)]
pub struct Merger {
    builder: Option<ProfileBuilder>,
    types: Vec<(String, String)>,
    period: i64,
    /// The earliest start of the inputs, and the latest end of those that span a time (CPU
    /// profiles; block, mutex and heap profiles carry only when they were taken).
    start: i64,
    end: i64,
    /// Comments that count something (`rprof: 3 samples lost ...`), summed across inputs:
    /// (the text after the count, the sum), in order of first appearance.
    counted: Vec<(String, u64)>,
}

/// A comment of the form `rprof: <count> <what>`: (count, what).
fn counted_comment(text: &str) -> Option<(u64, &str)> {
    let rest = text.strip_prefix("rprof: ")?;
    let (count, what) = rest.split_once(' ')?;
    Some((count.parse().ok()?, what))
}

impl Merger {
    /// An empty merge.
    pub fn new() -> Merger {
        Merger {
            start: i64::MAX,
            end: i64::MIN,
            ..Merger::default()
        }
    }

    /// Whether nothing was added yet.
    pub fn is_empty(&self) -> bool {
        self.builder.is_none()
    }

    /// Add `p`'s samples; an error, and nothing added, when its sample types differ from the
    /// first profile's.
    pub fn add(&mut self, p: &Profile) -> Result<()> {
        let these = sample_types(p);
        let b = match &mut self.builder {
            Some(b) => {
                if these != self.types {
                    return Err(Error::Merge(format!(
                        "sample types differ: [{}] vs [{}]",
                        describe(&self.types),
                        describe(&these)
                    )));
                }
                b
            }
            None => {
                self.types = these;
                self.builder
                    .insert(ProfileBuilder::like(p).without_comments())
            }
        };
        self.period = self.period.max(p.period);
        if p.time_nanos != 0 {
            self.start = self.start.min(p.time_nanos);
            if p.duration_nanos > 0 {
                self.end = self.end.max(p.time_nanos + p.duration_nanos);
            }
        }
        for &c in &p.comment {
            let text = p.str(c);
            match counted_comment(text) {
                Some((n, what)) => match self.counted.iter_mut().find(|(w, _)| w == what) {
                    Some((_, sum)) => *sum += n,
                    None => self.counted.push((what.to_owned(), n)),
                },
                None => b.comment(text),
            }
        }
        add_profile(b, p);
        Ok(())
    }

    /// The merged profile; an error when nothing was added.
    pub fn finish(self) -> Result<Profile> {
        let mut b = self
            .builder
            .ok_or_else(|| Error::Merge("no profiles to merge".into()))?;
        for (what, n) in &self.counted {
            b.comment(&format!("rprof: {n} {what}"));
        }
        b.set_period(self.period);
        if self.start != i64::MAX {
            // Without a span among the inputs, the merged profile has none either: the gap
            // between when two block profiles were written is no duration of anything.
            let duration = if self.end > self.start {
                self.end - self.start
            } else {
                0
            };
            b.time(self.start, duration);
        }
        Ok(b.build())
    }
}

/// Copy every sample of `p` into `b`, re-interning its tables.
pub(crate) fn add_profile(b: &mut ProfileBuilder, p: &Profile) {
    // Source mapping id → (merged id, what to add to its addresses).
    let mut mapping_ids = std::collections::HashMap::new();
    for m in &p.mapping {
        let relocated = b.mapping_relocated(&MappingInfo {
            memory_start: m.memory_start,
            memory_limit: m.memory_limit,
            file_offset: m.file_offset,
            filename: p.str(m.filename).to_owned(),
            build_id: p.str(m.build_id).to_owned(),
            symbolized: m.has_functions,
        });
        mapping_ids.insert(m.id, relocated);
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
        let (mapping, shift) = mapping_ids.get(&l.mapping_id).copied().unwrap_or((0, 0));
        let address = if l.address == 0 {
            0
        } else {
            l.address.wrapping_add(shift)
        };
        location_ids.insert(l.id, b.location(mapping, address, &lines));
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
    fn profiles_without_a_duration_merge_without_one() {
        let at = |time| {
            let mut p = one("a", 1, time);
            p.duration_nanos = 0;
            p
        };
        let merged = merge(&[at(300), at(100)]).unwrap();
        assert_eq!((merged.time_nanos, merged.duration_nanos), (100, 0));
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

    #[test]
    fn counted_comments_are_summed_and_others_kept_once() {
        let mut a = one("f", 1, 10);
        let mut b = one("f", 2, 20);
        for (p, n) in [(&mut a, 3), (&mut b, 4)] {
            let lost = p.intern(&format!("rprof: {n} samples lost (sample buffer full)"));
            let note = p.intern("rprof: ended by SIGTERM");
            p.comment.extend([lost, note]);
        }
        let m = merge(&[a, b]).unwrap();
        let comments: Vec<&str> = m.comment.iter().map(|&c| m.str(c)).collect();
        assert_eq!(
            comments,
            [
                "rprof: ended by SIGTERM",
                "rprof: 7 samples lost (sample buffer full)"
            ]
        );
    }

    #[test]
    fn one_binary_loaded_at_two_addresses_folds_into_one_mapping() {
        // The same image in two processes, moved by ASLR: 0x1000 and 0x7000.
        let at = |base: u64, value: i64| {
            let mut b = ProfileBuilder::new(&[("samples", "count")], ("cpu", "nanoseconds"), 10);
            let m = b.mapping(&MappingInfo {
                memory_start: base,
                memory_limit: base + 0x1000,
                filename: "/bin/t".into(),
                build_id: "abcd".into(),
                ..Default::default()
            });
            let f = b.function("f", "f", "a.rs", 1);
            let l = b.location(m, base + 0x100, &[(f, 2)]);
            b.add_sample(&[l], &[value]);
            b.build()
        };
        let merged = merge(&[at(0x1000, 3), at(0x7000, 4)]).unwrap();
        crate::codec::validate(&merged).unwrap();
        assert_eq!(merged.mapping.len(), 1);
        assert_eq!(merged.location.len(), 1);
        assert_eq!(merged.location[0].address, 0x1100);
        assert_eq!(merged.sample.len(), 1);
        assert_eq!(merged.sample[0].value, [7]);
    }
}
