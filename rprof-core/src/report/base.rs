//! Several inputs and base profiles, as `go tool pprof A B` and `-base`/`-diff_base` combine
//! them: inputs are merged into one profile; a base is merged in with its values negated, so a
//! report shows the change. With `diff_base` the base's samples are also labelled
//! `pprof::base=true`; reports then take percentages relative to the base's total, and a
//! renderer can tell the two sides apart.

use crate::builder::ProfileBuilder;
use crate::merge::{add_profile, describe, sample_types};
use crate::proto::{Label, Profile};
use crate::{Error, Result};

/// The label pprof puts on the samples of a `diff_base` profile.
pub const BASE_LABEL: &str = "pprof::base";

/// How a base profile is combined with the profile under study.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseMode {
    /// pprof's `-base`: the base is subtracted; equal stacks cancel out.
    Subtract,
    /// pprof's `-diff_base`: the base is subtracted but its samples stay apart (labelled), and
    /// percentages are relative to the base.
    Diff,
}

/// Merge several input profiles into one as pprof does when given several files: their sample
/// types (and period types) must be equal; samples with equal stacks and labels are summed; the
/// period is the largest, the time the earliest, durations add up, comments are kept once.
pub fn merge_inputs(mut profiles: Vec<Profile>) -> Result<Profile> {
    match profiles.len() {
        0 => return Err(Error::Merge("no profiles to merge".into())),
        1 => return Ok(profiles.swap_remove(0)),
        _ => {}
    }
    let first = &profiles[0];
    let period_type = first
        .period_type
        .as_ref()
        .map(|vt| first.value_type_name(vt));
    let types = sample_types(first);
    let mut b = ProfileBuilder::like(first);
    let (mut time, mut duration, mut period) = (0i64, 0i64, 0i64);
    for p in &profiles {
        let these = sample_types(p);
        let their_period = p.period_type.as_ref().map(|vt| p.value_type_name(vt));
        if these != types || their_period != period_type {
            return Err(Error::Merge(format!(
                "incompatible profiles: sample types [{}] and [{}]",
                describe(&types),
                describe(&these)
            )));
        }
        if time == 0 || p.time_nanos < time {
            time = p.time_nanos;
        }
        duration += p.duration_nanos;
        period = period.max(p.period);
        for &c in &p.comment {
            b.comment(p.str(c));
        }
        add_profile(&mut b, p);
    }
    b.set_period(period);
    b.time(time, duration);
    Ok(b.build())
}

/// Combine `new` with `base` as pprof's `-base` or `-diff_base` does: the base's values are
/// negated (and, for `Diff`, its samples labelled [`BASE_LABEL`]) and the two are merged.
pub fn with_base(new: Profile, base: &Profile, mode: BaseMode) -> Result<Profile> {
    let mut base = base.clone();
    let label = if mode == BaseMode::Diff {
        let key = base.intern(BASE_LABEL);
        let value = base.intern("true");
        Some(Label {
            key,
            str: value,
            num: 0,
            num_unit: 0,
        })
    } else {
        None
    };
    for s in &mut base.sample {
        for v in &mut s.value {
            *v = -*v;
        }
        if let Some(l) = &label {
            // pprof's SetLabel: the key's old values are replaced.
            s.label.retain(|old| old.key != l.key);
            s.label.push(l.clone());
        }
    }
    merge_inputs(vec![new, base])
}

/// Whether a sample came from a `diff_base` profile (carries `pprof::base=true`).
pub(crate) fn is_base_sample(profile: &Profile, labels: &[Label]) -> bool {
    labels
        .iter()
        .any(|l| profile.str(l.key) == BASE_LABEL && profile.str(l.str) == "true")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::MappingInfo;

    fn one(values: &[(&str, i64)], time: i64) -> Profile {
        let mut b = ProfileBuilder::new(&[("cpu", "nanoseconds")], ("cpu", "nanoseconds"), 10);
        let m = b.mapping(&MappingInfo {
            memory_start: 0x1000,
            memory_limit: 0x2000,
            filename: "/bin/app".into(),
            ..Default::default()
        });
        for (i, &(name, value)) in values.iter().enumerate() {
            let f = b.function(name, name, "a.rs", 1);
            let l = b.location(m, 0x1100 + i as u64, &[(f, 2)]);
            b.add_sample(&[l], &[value]);
        }
        b.time(time, 5);
        b.build()
    }

    #[test]
    fn inputs_merge_with_pprof_headers() {
        let merged = merge_inputs(vec![one(&[("a", 3)], 200), one(&[("a", 4)], 100)]).unwrap();
        crate::codec::validate(&merged).unwrap();
        assert_eq!(merged.total(0), 7);
        assert_eq!((merged.time_nanos, merged.duration_nanos), (100, 10));
        let mut other = one(&[("a", 1)], 1);
        other.sample_type[0].unit = 0;
        assert!(matches!(
            merge_inputs(vec![one(&[("a", 1)], 1), other]),
            Err(Error::Merge(_))
        ));
    }

    #[test]
    fn base_is_negated_and_labelled_in_diff_mode() {
        let new = one(&[("a", 10), ("b", 5)], 1);
        let base = one(&[("a", 4)], 1);
        let sub = with_base(new.clone(), &base, BaseMode::Subtract).unwrap();
        assert_eq!(sub.total(0), 11);
        assert!(sub.sample.iter().all(|s| s.label.is_empty()));
        let diff = with_base(new, &base, BaseMode::Diff).unwrap();
        let based: Vec<i64> = diff
            .sample
            .iter()
            .filter(|s| is_base_sample(&diff, &s.label))
            .map(|s| s.value[0])
            .collect();
        assert_eq!(based, vec![-4]);
    }
}
