//! Turning collected stacks into an unsymbolized pprof profile: address-only locations, one
//! mapping per executable segment of every loaded binary (path and build id kept, so the
//! profile can be symbolized later, against a kept copy of the binary).

use std::time::UNIX_EPOCH;

use rprof_core::builder::ProfileBuilder;
use rprof_core::Profile;

use crate::cpu::CpuData;
use crate::maps::{mapping_infos, LoadedObject};

/// Add the mappings of `objects` to `b` and return a lookup from address to mapping id.
fn add_mappings(b: &mut ProfileBuilder, objects: &[LoadedObject]) -> Vec<(u64, u64, u64)> {
    let mut ranges: Vec<(u64, u64, u64)> = mapping_infos(objects)
        .iter()
        .map(|m| (m.memory_start, m.memory_limit, b.mapping(m)))
        .collect();
    ranges.sort_unstable();
    ranges
}

fn mapping_of(ranges: &[(u64, u64, u64)], addr: u64) -> u64 {
    let i = ranges.partition_point(|r| r.0 <= addr);
    match i.checked_sub(1).map(|i| ranges[i]) {
        Some((start, limit, id)) if addr >= start && addr <= limit => id,
        _ => 0,
    }
}

/// Build the unsymbolized stacks of `stacks` into `b`, `values(count)` giving each sample's values.
pub(crate) fn add_stacks<'a>(
    b: &mut ProfileBuilder,
    objects: &[LoadedObject],
    stacks: impl Iterator<Item = (&'a Vec<u64>, Vec<i64>)>,
) {
    let ranges = add_mappings(b, objects);
    let mut ids = Vec::new();
    for (stack, values) in stacks {
        ids.clear();
        ids.extend(
            stack
                .iter()
                .map(|&addr| b.location(mapping_of(&ranges, addr), addr, &[])),
        );
        b.add_sample(&ids, &values);
    }
}

/// The unsymbolized CPU profile of `data`: sample types `samples/count` and `cpu/nanoseconds`,
/// period type `cpu/nanoseconds`, period `1e9 / hz`.
pub fn cpu_profile(data: &CpuData, objects: &[LoadedObject]) -> Profile {
    let period = data.period_ns as i64;
    let mut b = ProfileBuilder::new(
        &[("samples", "count"), ("cpu", "nanoseconds")],
        ("cpu", "nanoseconds"),
        period,
    );
    add_stacks(
        &mut b,
        objects,
        data.stacks
            .iter()
            .map(|(stack, &periods)| (stack, vec![periods as i64, periods as i64 * period])),
    );
    let start = data
        .start
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64);
    b.time(start, data.duration.as_nanos() as i64);
    if data.lost > 0 {
        b.comment(&format!(
            "rprof: {} samples lost (sample buffer full)",
            data.lost
        ));
    }
    if data.threads_unprofiled > 0 {
        b.comment(&format!(
            "rprof: {} threads could not be given a CPU timer",
            data.threads_unprofiled
        ));
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_land_in_their_mappings() {
        let objects = crate::maps::loaded_objects();
        let here = addresses_land_in_their_mappings as *const () as usize as u64;
        let mut data = CpuData {
            period_ns: 10_000_000,
            ..Default::default()
        };
        data.stacks.insert(vec![here + 1, 0x10], 3);
        let p = cpu_profile(&data, &objects);
        rprof_core::codec::validate(&p).unwrap();
        assert_eq!(p.total(1), 30_000_000);
        let leaf = p.location_by_id(p.sample[0].location_id[0]).unwrap();
        let m = &p.mapping[leaf.mapping_id as usize - 1];
        assert_eq!(p.str(m.filename), objects[0].path);
        let unknown = p.location_by_id(p.sample[0].location_id[1]).unwrap();
        assert_eq!(unknown.mapping_id, 0);
    }
}
