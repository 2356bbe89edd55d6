//! Turning collected stacks into an unsymbolized pprof profile: address-only locations, one
//! mapping per executable segment of every loaded binary (path and build id kept, so the
//! profile can be symbolized later, against a kept copy of the binary).

use std::time::UNIX_EPOCH;

use rprof_core::builder::ProfileBuilder;
use rprof_core::labels::raw as raw_labels;
use rprof_core::proto::Label;
use rprof_core::Profile;

use crate::cpu::CpuData;
use crate::maps::{mapping_infos, LoadedObject};
use crate::mem::MemData;
use crate::sync::EventData;

/// Add the mappings of `objects` to `b` and return a sorted list of (start, limit, mapping id).
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

/// Build the unsymbolized `stacks` (each with the serial of its thread and its values) into
/// `b`, and the thread registry's records after them, so that the labels can be computed.
pub(crate) fn add_stacks<'a>(
    b: &mut ProfileBuilder,
    objects: &[LoadedObject],
    stacks: impl Iterator<Item = (&'a [u64], u32, Vec<i64>)>,
) {
    let ranges = add_mappings(b, objects);
    let mut ids = Vec::new();
    for (stack, thread, values) in stacks {
        locations(b, &ranges, stack, &mut ids);
        let labels = thread_label(b, thread).into_iter().collect();
        b.add_labeled_sample(&ids, &values, labels);
    }
    add_thread_records(b, &ranges, &crate::threads::snapshot());
}

fn locations(
    b: &mut ProfileBuilder,
    ranges: &[(u64, u64, u64)],
    stack: &[u64],
    ids: &mut Vec<u64>,
) {
    ids.clear();
    ids.extend(
        stack
            .iter()
            .map(|&addr| b.location(mapping_of(ranges, addr), addr, &[])),
    );
}

/// The numeric label naming the thread a sample was taken on (none for an unknown thread).
fn thread_label(b: &mut ProfileBuilder, thread: u32) -> Option<Label> {
    (thread != crate::threads::UNKNOWN).then(|| Label {
        key: b.string(raw_labels::THREAD),
        num: i64::from(thread),
        ..Default::default()
    })
}

/// The registry's records as samples without values (see [`rprof_core::labels`]).
fn add_thread_records(
    b: &mut ProfileBuilder,
    ranges: &[(u64, u64, u64)],
    records: &[crate::threads::ThreadRecord],
) {
    let zeros = vec![0; b.sample_type_count()];
    let mut ids = Vec::new();
    for r in records {
        locations(b, ranges, &r.creation, &mut ids);
        let num = |b: &mut ProfileBuilder, key: &str, num: i64| Label {
            key: b.string(key),
            num,
            ..Default::default()
        };
        let labels = vec![
            num(b, raw_labels::RECORD, i64::from(r.serial)),
            num(b, raw_labels::CREATOR, i64::from(r.creator)),
            num(b, raw_labels::EXIT_ORDER, r.exit_order as i64),
            Label {
                key: b.string(raw_labels::NAME),
                str: b.string(&r.name),
                ..Default::default()
            },
        ];
        b.add_labeled_sample(&ids, &zeros, labels);
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
        data.stacks.iter().map(|(key, &periods)| {
            (
                &key.stack[..],
                key.thread,
                vec![periods as i64, periods as i64 * period],
            )
        }),
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
    if data.leaf_only > 0 {
        b.comment(&format!(
            "rprof: {} samples were taken on a nearly full stack (a thread near its limit, or a small alternate signal stack of the program's) and hold only their leaf function",
            data.leaf_only
        ));
    }
    // A few periods always fall in the memory profiler's recording; say so when they matter.
    let sampled: u64 = data.stacks.values().sum();
    if data.in_harness * 100 > sampled {
        b.comment(&format!(
            "rprof: {} samples fell in the profiler's own code and were not taken",
            data.in_harness
        ));
    }
    // A tick can end a thread between an expiry and its signal: only a share that changes
    // the picture is worth a warning.
    if data.unsignalled * 100 > sampled {
        b.comment(&format!(
            "rprof: {} ms of CPU time fell due for samples the kernel never signalled, so the profile is short by that much: threads that blocked the profiler's signal, or, on a machine with more busy threads than cores, signals still late when their thread ended (late ones are charged to the stack they land on)",
            data.unsignalled * data.period_ns / 1_000_000
        ));
    }
    if data.threads_unprofiled > 0 {
        b.comment(&format!(
            "rprof: {} threads could not be given a CPU timer",
            data.threads_unprofiled
        ));
    }
    for notice in &data.notices {
        b.comment(notice);
    }
    b.build()
}

/// Go's `scaleHeapSample`: undo the sampling of `count` objects of `size` bytes in all, each
/// allocation having been sampled with probability `1 - exp(-avg/rate)`.
pub fn scale_heap_sample(count: u64, size: u64, rate: u64) -> (i64, i64) {
    if count == 0 || size == 0 {
        return (0, 0);
    }
    if rate <= 1 {
        return (count as i64, size as i64);
    }
    let avg = size as f64 / count as f64;
    let scale = 1.0 / (1.0 - (-avg / rate as f64).exp());
    ((count as f64 * scale) as i64, (size as f64 * scale) as i64)
}

/// The unsymbolized heap profile of `data`, laid out as `go test -memprofile` writes it: sample
/// types `alloc_objects/count alloc_space/bytes inuse_objects/count inuse_space/bytes`, period
/// type `space/bytes`, period = rate, default `alloc_space`, a `bytes` label per bucket.
pub fn mem_profile(data: &MemData, objects: &[LoadedObject], wrapper_used: bool) -> Profile {
    let mut b = ProfileBuilder::new(
        &[
            ("alloc_objects", "count"),
            ("alloc_space", "bytes"),
            ("inuse_objects", "count"),
            ("inuse_space", "bytes"),
            ("peak_objects", "count"),
            ("peak_space", "bytes"),
        ],
        ("space", "bytes"),
        data.rate as i64,
    );
    b.default_sample_type("alloc_space");
    let ranges = add_mappings(&mut b, objects);
    let bytes_key = b.string("bytes");
    let stack_ids: Vec<Vec<u64>> = data
        .stacks
        .iter()
        .map(|stack| {
            let mut ids = Vec::new();
            locations(&mut b, &ranges, stack, &mut ids);
            ids
        })
        .collect();
    for bucket in &data.buckets {
        let ids = &stack_ids[bucket.stack];
        let (ao, asp) = scale_heap_sample(bucket.allocs, bucket.allocs * bucket.size, data.rate);
        let live = bucket.allocs - bucket.frees;
        let (io, isp) = scale_heap_sample(live, live * bucket.size, data.rate);
        let (po, psp) = scale_heap_sample(bucket.peak, bucket.peak * bucket.size, data.rate);
        let label = Label {
            key: bytes_key,
            str: 0,
            num: bucket.size as i64,
            num_unit: 0,
        };
        let labels = std::iter::once(label)
            .chain(thread_label(&mut b, bucket.thread))
            .collect();
        b.add_labeled_sample(ids, &[ao, asp, io, isp, po, psp], labels);
    }
    add_thread_records(&mut b, &ranges, &crate::threads::snapshot());
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    b.time(now, 0);
    if data.peak.at_ns != 0 {
        b.comment(&rprof_core::peak_comment(data.peak.at_ns));
    }
    if data.lost > 0 {
        b.comment(&format!(
            "rprof: {} sampled allocations lost (sample tables full)",
            data.lost
        ));
    }
    if wrapper_used {
        b.comment(rprof_core::PROFILED_ALLOC_COMMENT);
    }
    b.build()
}

/// The unsymbolized block or mutex profile of `data`, as Go writes them: sample types
/// `contentions/count delay/nanoseconds`, period type `contentions/count`, period 1.
pub fn event_profile(data: &EventData, objects: &[LoadedObject], what: &str) -> Profile {
    let mut b = ProfileBuilder::new(
        &[("contentions", "count"), ("delay", "nanoseconds")],
        ("contentions", "count"),
        1,
    );
    add_stacks(
        &mut b,
        objects,
        data.events.iter().map(|e| {
            (
                &e.stack[..],
                e.thread,
                vec![e.contentions as i64, e.delay_ns as i64],
            )
        }),
    );
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    b.time(now, 0);
    b.comment(match what {
        "block" => rprof_core::BLOCK_PROFILE_COMMENT,
        _ => rprof_core::MUTEX_PROFILE_COMMENT,
    });
    if data.lost > 0 {
        b.comment(&format!(
            "rprof: {} {what} events lost (tables full)",
            data.lost
        ));
    }
    b.build()
}

/// The unsymbolized thread-creation profile of `records` (the thread registry's), as Go writes
/// it: sample type `threadcreate/count`, period type `threadcreate/count`, period 1; one count
/// per thread created, on the creating stack and thread.
pub fn threadcreate_profile(
    records: &[crate::threads::ThreadRecord],
    objects: &[LoadedObject],
) -> Profile {
    let mut b = ProfileBuilder::new(&[("threadcreate", "count")], ("threadcreate", "count"), 1);
    let mut counts: std::collections::BTreeMap<(&[u64], u32), i64> = Default::default();
    for r in records.iter().filter(|r| r.serial != crate::threads::MAIN) {
        *counts.entry((&r.creation[..], r.creator)).or_default() += 1;
    }
    add_stacks(
        &mut b,
        objects,
        counts
            .into_iter()
            .map(|((stack, thread), n)| (stack, thread, vec![n])),
    );
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    b.time(now, 0);
    b.build()
}

/// The unsymbolized profile of a thread dump (the live `threads` endpoint, Go's goroutine
/// profile): sample type `threads/count`, one sample per thread that answered, with labels
/// `thread` (its name) and `thread_id` (its kernel id).
#[cfg(feature = "http")]
pub fn thread_dump_profile(
    threads: &[crate::thread_stacks::ThreadDump],
    objects: &[LoadedObject],
) -> Profile {
    let mut b = ProfileBuilder::new(&[("threads", "count")], ("threads", "count"), 1);
    let ranges = add_mappings(&mut b, objects);
    let mut ids = Vec::new();
    let mut silent = 0;
    for t in threads {
        let Some(stack) = &t.stack else {
            silent += 1;
            continue;
        };
        locations(&mut b, &ranges, stack, &mut ids);
        let labels = vec![
            Label {
                key: b.string(rprof_core::labels::THREAD),
                str: b.string(&t.name),
                ..Default::default()
            },
            Label {
                key: b.string("thread_id"),
                num: i64::from(t.tid),
                ..Default::default()
            },
        ];
        b.add_labeled_sample(&ids, &[1], labels);
    }
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    b.time(now, 0);
    if silent > 0 {
        b.comment(&format!(
            "rprof: {silent} threads did not answer (they block the signal, or are stopped)"
        ));
    }
    b.build()
}

/// Kinds of raw profile the preload writes for the runtime API.
pub(crate) const RAW_HEAP: std::ffi::c_int = 1;
/// The block profile.
pub(crate) const RAW_BLOCK: std::ffi::c_int = 2;
/// The mutex profile.
pub(crate) const RAW_MUTEX: std::ffi::c_int = 3;

/// The raw profile of `kind` from this copy of the harness's own profilers, or `None` when that
/// profiler is off here. What the preload exports for `pprof::preload_raw`, and what the
/// runtime API reads when there is no other copy to ask.
pub(crate) fn own_profile(kind: std::ffi::c_int) -> Option<Profile> {
    crate::thread::with_harness_guard(|| {
        let objects = crate::maps::profile_objects();
        Some(match kind {
            RAW_HEAP if crate::mem::rate() != 0 => mem_profile(
                &crate::mem::snapshot(),
                &objects,
                crate::alloc::wrapper_used(),
            ),
            RAW_BLOCK if crate::sync::block_rate() != 0 => {
                event_profile(&crate::sync::snapshot_block(), &objects, "block")
            }
            RAW_MUTEX if crate::sync::mutex_fraction() != 0 => {
                event_profile(&crate::sync::snapshot_mutex(), &objects, "mutex")
            }
            _ => return None,
        })
    })
}

/// What the preload exports for `pprof::preload_raw`: write [`own_profile`] of `kind` to
/// `path`. Returns 0 on success, 1 when that profiler is off, 2 when the file could not be
/// written.
#[cfg_attr(not(feature = "preload"), allow(dead_code))]
pub(crate) fn write_raw_for_api(kind: std::ffi::c_int, path: &std::path::Path) -> std::ffi::c_int {
    let Some(profile) = own_profile(kind) else {
        return 1;
    };
    crate::thread::with_harness_guard(|| {
        match rprof_core::codec::write_file_packed(path, &profile, rprof_core::codec::Packing::Fast)
        {
            Ok(()) => 0,
            Err(_) => 2,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_land_in_their_mappings() {
        let objects = crate::maps::profile_objects();
        let here = addresses_land_in_their_mappings as *const () as usize as u64;
        let mut data = CpuData {
            period_ns: 10_000_000,
            ..Default::default()
        };
        let key = crate::cpu::ThreadStack {
            thread: 5,
            stack: vec![here + 1, 0x10],
        };
        data.stacks.insert(key, 3);
        let p = cpu_profile(&data, &objects);
        rprof_core::codec::validate(&p).unwrap();
        assert_eq!(p.total(1), 30_000_000);
        let leaf = p.location_by_id(p.sample[0].location_id[0]).unwrap();
        let m = &p.mapping[leaf.mapping_id as usize - 1];
        assert_eq!(p.str(m.filename), objects[0].path);
        let unknown = p.location_by_id(p.sample[0].location_id[1]).unwrap();
        assert_eq!(unknown.mapping_id, 0);
        let label = &p.sample[0].label[0];
        assert_eq!((p.str(label.key), label.num), (raw_labels::THREAD, 5));
    }
}

#[cfg(test)]
mod scale_tests {
    use super::scale_heap_sample;

    #[test]
    fn go_unbiasing() {
        assert_eq!(scale_heap_sample(0, 0, 512 * 1024), (0, 0));
        assert_eq!(scale_heap_sample(7, 700, 1), (7, 700));
        // One sampled 512 KiB object at rate 512 KiB stands for 1/(1-e^-1) = 1.582 objects.
        let (n, s) = scale_heap_sample(1, 512 * 1024, 512 * 1024);
        assert_eq!(n, 1);
        assert_eq!(s, (512.0 * 1024.0 / (1.0 - (-1.0f64).exp())) as i64);
    }
}
