use super::*;
use crate::builder::MappingInfo;
use crate::ProfileBuilder;

const MS: i64 = 1_000_000;

/// A CPU profile exercising each rule: recursion (`rec` thrice in one stack), an inlined frame
/// (`inl` inside `work`), equal flat values (`alpha`, `beta`, `zeta`), unsymbolized code with and
/// without a mapping, a node small enough to be dropped and an all-zero sample.
fn cpu_profile() -> Profile {
    let mut b = ProfileBuilder::new(
        &[("samples", "count"), ("cpu", "nanoseconds")],
        ("cpu", "nanoseconds"),
        10 * MS,
    );
    let m = b.mapping(&MappingInfo {
        memory_start: 0x1000,
        memory_limit: 0x9000,
        file_offset: 0,
        filename: "/usr/bin/myprog".into(),
        build_id: "abcd".into(),
        symbolized: true,
    });
    let f = |b: &mut ProfileBuilder, name: &str| b.function(name, name, "src/main.rs", 1);
    let (main, work, rec, inl) = (
        f(&mut b, "main"),
        f(&mut b, "work"),
        f(&mut b, "rec"),
        f(&mut b, "inl"),
    );
    let (alpha, beta, zeta) = (f(&mut b, "alpha"), f(&mut b, "beta"), f(&mut b, "zeta"));
    let main = b.location(m, 0x1100, &[(main, 2)]);
    let work_l = b.location(m, 0x1200, &[(work, 11)]);
    let rec1 = b.location(m, 0x1300, &[(rec, 21)]);
    let rec2 = b.location(m, 0x1310, &[(rec, 22)]);
    let inl = b.location(m, 0x1400, &[(inl, 31), (work, 12)]);
    let alpha = b.location(m, 0x1500, &[(alpha, 1)]);
    let beta = b.location(m, 0x1600, &[(beta, 1)]);
    let zeta = b.location(m, 0x1700, &[(zeta, 1)]);
    let unsym = b.location(m, 0x1800, &[]);
    let nomap = b.location(0, 0x7777, &[]);
    let mut add = |stack: &[u64], ms: i64| b.add_sample(stack, &[ms / 10, ms * MS]);
    add(&[rec2, rec1, rec2, main], 1000);
    add(&[inl, main], 500);
    add(&[work_l, main], 30);
    add(&[alpha, work_l, main], 20);
    add(&[zeta, main], 20);
    add(&[beta, zeta, main], 20);
    add(&[unsym, work_l, main], 10);
    add(&[nomap, main], 1);
    add(&[main], 0);
    b.time(1_700_000_000_000_000_000, 3_010 * MS);
    b.build()
}

/// A heap profile as Go writes them: four sample types, `alloc_space` shown by default.
fn heap_profile() -> Profile {
    let mut b = ProfileBuilder::new(
        &[
            ("alloc_objects", "count"),
            ("alloc_space", "bytes"),
            ("inuse_objects", "count"),
            ("inuse_space", "bytes"),
        ],
        ("space", "bytes"),
        512 * 1024,
    );
    b.default_sample_type("alloc_space");
    let m = b.mapping(&MappingInfo {
        memory_start: 0x1000,
        memory_limit: 0x9000,
        file_offset: 0,
        filename: "/target/debug/server".into(),
        build_id: String::new(),
        symbolized: true,
    });
    let f = |b: &mut ProfileBuilder, name: &str| b.function(name, name, "src/lib.rs", 1);
    let main = f(&mut b, "server::main");
    let handle = f(&mut b, "server::handle");
    let grow = f(&mut b, "alloc::raw_vec::finish_grow");
    let parse = f(&mut b, "server::parse");
    let main = b.location(m, 0x1100, &[(main, 2)]);
    let handle = b.location(m, 0x1200, &[(handle, 2)]);
    let grow = b.location(m, 0x1300, &[(grow, 2)]);
    let parse = b.location(m, 0x1400, &[(parse, 2)]);
    b.add_sample(&[grow, handle, main], &[1200, 3 << 20, 10, 64 << 10]);
    b.add_sample(&[grow, parse, handle, main], &[300, 1 << 19, 0, 0]);
    b.add_sample(&[parse, handle, main], &[4000, 1000 << 10, 2, 100]);
    b.add_sample(&[main], &[1, 64, 1, 64]);
    b.time(1_700_000_000_000_000_000, 0);
    b.build()
}

/// `h` is inlined into `caller` in one stack and called by `main` in another.
fn partial_inline_profile() -> Profile {
    let mut b = ProfileBuilder::new(&[("cpu", "nanoseconds")], ("cpu", "nanoseconds"), MS);
    let f = |b: &mut ProfileBuilder, name: &str| b.function(name, name, "src/main.rs", 1);
    let (main, caller, h) = (f(&mut b, "main"), f(&mut b, "caller"), f(&mut b, "h"));
    let main = b.location(0, 0x10, &[(main, 1)]);
    let inlined = b.location(0, 0x20, &[(h, 1), (caller, 2)]);
    let called = b.location(0, 0x30, &[(h, 3)]);
    b.add_sample(&[inlined, main], &[30 * MS]);
    b.add_sample(&[called, main], &[20 * MS]);
    b.build()
}

fn opts() -> ReportOptions {
    ReportOptions::default()
}

/// Lines joined as a report prints them, each ending in a newline.
fn text(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

const CPU_HEADER: [&str; 5] = [
    "File: myprog",
    "Build ID: abcd",
    "Type: cpu",
    "Time: Nov 14, 2023 at 10:13pm (UTC)",
    "Duration: 3.01s, Total samples = 1.60s (53.19%)",
];

// The expected texts below are `TZ=UTC go tool pprof -top|-traces [flags]` on the same profiles.

#[test]
fn top_sorts_by_flat_then_name_and_counts_recursion_once() {
    let mut want = CPU_HEADER.to_vec();
    want.extend([
        "Showing nodes accounting for 1.60s, 99.94% of 1.60s total",
        "Dropped 1 node (cum <= 0.01s)",
        "      flat  flat%   sum%        cum   cum%",
        "        1s 62.46% 62.46%         1s 62.46%  rec",
        "     0.50s 31.23% 93.69%      0.50s 31.23%  inl (inline)",
        "     0.03s  1.87% 95.57%      0.56s 34.98%  work",
        "     0.02s  1.25% 96.81%      0.02s  1.25%  alpha",
        "     0.02s  1.25% 98.06%      0.02s  1.25%  beta",
        "     0.02s  1.25% 99.31%      0.04s  2.50%  zeta",
        "     0.01s  0.62% 99.94%      0.01s  0.62%  [myprog]",
        "         0     0% 99.94%      1.60s   100%  main",
    ]);
    assert_eq!(top(&cpu_profile(), &opts()).unwrap(), text(&want));
}

#[test]
fn top_by_cum() {
    let mut want = CPU_HEADER.to_vec();
    want.extend([
        "Showing nodes accounting for 1.60s, 99.94% of 1.60s total",
        "Dropped 1 node (cum <= 0.01s)",
        "      flat  flat%   sum%        cum   cum%",
        "         0     0%     0%      1.60s   100%  main",
        "        1s 62.46% 62.46%         1s 62.46%  rec",
        "     0.03s  1.87% 64.33%      0.56s 34.98%  work",
        "     0.50s 31.23% 95.57%      0.50s 31.23%  inl (inline)",
        "     0.02s  1.25% 96.81%      0.04s  2.50%  zeta",
        "     0.02s  1.25% 98.06%      0.02s  1.25%  alpha",
        "     0.02s  1.25% 99.31%      0.02s  1.25%  beta",
        "     0.01s  0.62% 99.94%      0.01s  0.62%  [myprog]",
    ]);
    let o = ReportOptions {
        sort_by_cum: true,
        ..opts()
    };
    assert_eq!(top(&cpu_profile(), &o).unwrap(), text(&want));
}

#[test]
fn top_nodecount_keeps_the_first_rows_and_rescales() {
    let want = text(&[
        "File: myprog",
        "Build ID: abcd",
        "Type: cpu",
        "Time: Nov 14, 2023 at 10:13pm (UTC)",
        "Duration: 3.01s, Total samples = 1601ms (53.19%)",
        "Showing nodes accounting for 1530ms, 95.57% of 1601ms total",
        "Dropped 1 node (cum <= 8.01ms)",
        "Showing top 3 nodes out of 8",
        "      flat  flat%   sum%        cum   cum%",
        "    1000ms 62.46% 62.46%     1000ms 62.46%  rec",
        "     500ms 31.23% 93.69%      500ms 31.23%  inl (inline)",
        "      30ms  1.87% 95.57%      560ms 34.98%  work",
    ]);
    let o = ReportOptions {
        nodecount: Some(3),
        ..opts()
    };
    assert_eq!(top(&cpu_profile(), &o).unwrap(), want);
}

#[test]
fn top_of_a_count_sample_type() {
    let want = text(&[
        "File: myprog",
        "Build ID: abcd",
        "Type: samples",
        "Time: Nov 14, 2023 at 10:13pm (UTC)",
        // pprof leaves a space where the share of the duration would be.
        "Duration: 3.01s, Total samples = 160 ",
        "Showing nodes accounting for 160, 100% of 160 total",
        "      flat  flat%   sum%        cum   cum%",
        "       100 62.50% 62.50%        100 62.50%  rec",
        "        50 31.25% 93.75%         50 31.25%  inl (inline)",
        "         3  1.88% 95.62%         56 35.00%  work",
        "         2  1.25% 96.88%          2  1.25%  alpha",
        "         2  1.25% 98.12%          2  1.25%  beta",
        "         2  1.25% 99.38%          4  2.50%  zeta",
        "         1  0.62%   100%          1  0.62%  [myprog]",
        "         0     0%   100%        160   100%  main",
    ]);
    let o = ReportOptions {
        sample_index: Some("samples".into()),
        ..opts()
    };
    assert_eq!(top(&cpu_profile(), &o).unwrap(), want);
}

#[test]
fn top_marks_partial_inlining() {
    let want = text(&[
        "Type: cpu",
        "Showing nodes accounting for 50ms, 100% of 50ms total",
        "      flat  flat%   sum%        cum   cum%",
        "      50ms   100%   100%       50ms   100%  h (partial-inline)",
        "         0     0%   100%       30ms 60.00%  caller",
        "         0     0%   100%       50ms   100%  main",
    ]);
    assert_eq!(top(&partial_inline_profile(), &opts()).unwrap(), want);
}

#[test]
fn top_of_a_heap_profile_defaults_to_alloc_space_in_bytes() {
    let want = text(&[
        "File: server",
        "Type: alloc_space",
        "Time: Nov 14, 2023 at 10:13pm (UTC)",
        "Showing nodes accounting for 4584.06kB, 100% of 4584.06kB total",
        "      flat  flat%   sum%        cum   cum%",
        "    3584kB 78.18% 78.18%     3584kB 78.18%  alloc::raw_vec::finish_grow",
        "    1000kB 21.81%   100%     1512kB 32.98%  server::parse",
        "    0.06kB 0.0014%   100%  4584.06kB   100%  server::main",
        "         0     0%   100%     4584kB   100%  server::handle",
    ]);
    assert_eq!(top(&heap_profile(), &opts()).unwrap(), want);

    let want = text(&[
        "File: server",
        "Type: inuse_space",
        "Time: Nov 14, 2023 at 10:13pm (UTC)",
        "Showing nodes accounting for 64.06kB, 99.85% of 64.16kB total",
        "Dropped 1 node (cum <= 0.32kB)",
        "      flat  flat%   sum%        cum   cum%",
        "      64kB 99.75% 99.75%       64kB 99.75%  alloc::raw_vec::finish_grow",
        "    0.06kB 0.097% 99.85%    64.16kB   100%  server::main",
        "         0     0% 99.85%    64.10kB 99.90%  server::handle",
    ]);
    let o = ReportOptions {
        sample_index: Some("inuse_space".into()),
        ..opts()
    };
    assert_eq!(top(&heap_profile(), &o).unwrap(), want);

    let want = text(&[
        "File: server",
        "Type: alloc_objects",
        "Time: Nov 14, 2023 at 10:13pm (UTC)",
        "Showing nodes accounting for 5501, 100% of 5501 total",
        "      flat  flat%   sum%        cum   cum%",
        "      4000 72.71% 72.71%       4300 78.17%  server::parse",
        "      1500 27.27%   100%       1500 27.27%  alloc::raw_vec::finish_grow",
        "         1 0.018%   100%       5501   100%  server::main",
        "         0     0%   100%       5500   100%  server::handle",
    ]);
    let o = ReportOptions {
        sample_index: Some("alloc_objects".into()),
        ..opts()
    };
    assert_eq!(top(&heap_profile(), &o).unwrap(), want);
}

#[test]
fn title_replaces_the_binary_name() {
    let o = ReportOptions {
        title: Some("cpu.pb.gz".into()),
        ..opts()
    };
    let report = top(&cpu_profile(), &o).unwrap();
    assert!(
        report.starts_with("File: cpu.pb.gz\nBuild ID: abcd\nType: cpu\n"),
        "{report}"
    );
}

#[test]
fn traces_show_every_stack_leaf_first() {
    let mut want = CPU_HEADER.to_vec();
    let sep = "-----------+-------------------------------------------------------";
    want.extend([
        sep,
        "        1s   rec",
        "             rec",
        "             rec",
        "             main",
        sep,
        "     500ms   inl (inline)",
        "             work",
        "             main",
        sep,
        "      30ms   work",
        "             main",
        sep,
        "      20ms   alpha",
        "             work",
        "             main",
        sep,
        "      20ms   zeta",
        "             main",
        sep,
        "      20ms   beta",
        "             zeta",
        "             main",
        sep,
        "      10ms   [myprog]",
        "             work",
        "             main",
        sep,
        "       1ms   <unknown>",
        "             main",
        sep,
    ]);
    assert_eq!(traces(&cpu_profile(), &opts()).unwrap(), text(&want));
}

#[test]
fn traces_of_a_heap_profile_keep_samples_that_are_zero_for_the_shown_type() {
    let sep = "-----------+-------------------------------------------------------";
    let want = text(&[
        "File: server",
        "Type: inuse_space",
        "Time: Nov 14, 2023 at 10:13pm (UTC)",
        sep,
        "      64kB   alloc::raw_vec::finish_grow",
        "             server::handle",
        "             server::main",
        sep,
        "         0   alloc::raw_vec::finish_grow",
        "             server::parse",
        "             server::handle",
        "             server::main",
        sep,
        "      100B   server::parse",
        "             server::handle",
        "             server::main",
        sep,
        "       64B   server::main",
        sep,
    ]);
    let o = ReportOptions {
        sample_index: Some("inuse_space".into()),
        ..opts()
    };
    assert_eq!(traces(&heap_profile(), &o).unwrap(), want);
}

/// pprof merges samples as it loads a profile, then filters: two samples that differ only in
/// the leaf a `prune_from` cuts off stay two traces, as `go tool pprof -traces` prints them.
#[test]
fn traces_keep_apart_samples_only_a_filter_made_equal() {
    let mut b = ProfileBuilder::new(&[("samples", "count")], ("samples", "count"), 1);
    let (clock, hot, main) = (
        b.function("clock", "", "", 0),
        b.function("hot", "", "", 0),
        b.function("main", "", "", 0),
    );
    let (clock_a, clock_b) = (
        b.location(0, 0x10, &[(clock, 0)]),
        b.location(0, 0x14, &[(clock, 0)]),
    );
    let (hot_site, main_site) = (
        b.location(0, 0x20, &[(hot, 0)]),
        b.location(0, 0x30, &[(main, 0)]),
    );
    b.add_sample(&[clock_a, hot_site, main_site], &[4]);
    b.add_sample(&[clock_b, hot_site, main_site], &[4]);
    let o = ReportOptions {
        filters: crate::report::filter::Filters {
            prune_from: Some("hot".into()),
            ..Default::default()
        },
        ..opts()
    };
    let out = traces(&b.build(), &o).unwrap();
    let values: Vec<&str> = out.lines().filter(|l| l.ends_with("   hot")).collect();
    assert_eq!(values, ["         4   hot", "         4   hot"], "{out}");
}

#[test]
fn traces_print_labels_and_merge_equal_samples() {
    let mut b = ProfileBuilder::new(&[("alloc_space", "bytes")], ("space", "bytes"), 1);
    let f = b.function("f", "", "", 0);
    let loc = b.location(0, 0x10, &[(f, 0)]);
    let label = |b: &mut ProfileBuilder, key: &str, value: &str, num: i64| crate::proto::Label {
        key: b.string(key),
        str: if value.is_empty() { 0 } else { b.string(value) },
        num,
        num_unit: 0,
    };
    let labels = vec![
        label(&mut b, "thread", "worker-1", 0),
        label(&mut b, "bytes", "", 2048),
    ];
    b.add_labeled_sample(&[loc], &[1000], labels.clone());
    b.add_labeled_sample(&[loc], &[20], labels);
    let sep = "-----------+-------------------------------------------------------";
    let want = text(&[
        "Type: alloc_space",
        sep,
        "    thread:  worker-1",
        "     bytes:  2kB",
        "     1020B   f",
        sep,
    ]);
    assert_eq!(traces(&b.build(), &opts()).unwrap(), want);
}

#[test]
fn function_rows_are_untrimmed_and_sorted_like_top() {
    let p = cpu_profile();
    let rows = function_rows(&p, p.sample_index("cpu").unwrap());
    let got: Vec<(&str, i64, i64)> = rows
        .iter()
        .map(|r| (r.name.as_str(), r.flat / MS, r.cum / MS))
        .collect();
    assert_eq!(
        got,
        [
            ("rec", 1000, 1000),
            ("inl", 500, 500),
            ("work", 30, 560),
            ("alpha", 20, 20),
            ("beta", 20, 20),
            ("zeta", 20, 40),
            ("[myprog]", 10, 10),
            ("<unknown>", 1, 1),
            ("main", 0, 1601),
        ]
    );
    assert!(function_rows(&p, 7).is_empty());
}

#[test]
fn format_value_scales_like_pprof() {
    assert_eq!(format_value(1_880_000_000, "nanoseconds"), "1.88s");
    assert_eq!(format_value(10 * MS, "nanoseconds"), "10ms");
    assert_eq!(format_value(3 << 19, "bytes"), "1.50MB");
    assert_eq!(format_value(4096, "count"), "4096");
    assert_eq!(format_value(0, "bytes"), "0");
}

#[test]
fn unknown_sample_type_is_an_error() {
    let o = ReportOptions {
        sample_index: Some("wall".into()),
        ..opts()
    };
    let p = cpu_profile();
    for result in [
        top(&p, &o).map(drop),
        traces(&p, &o).map(drop),
        flamegraph(&p, &o, &mut Vec::new()),
    ] {
        match result {
            Err(Error::NoSuchSampleType { name, available }) => {
                assert_eq!(name, "wall");
                assert_eq!(available, "samples, cpu");
            }
            other => panic!("expected NoSuchSampleType, got {other:?}"),
        }
    }
}

#[test]
fn empty_profile_reports_and_refuses_a_flame_graph() {
    let p = ProfileBuilder::new(&[("cpu", "nanoseconds")], ("cpu", "nanoseconds"), 1).build();
    assert_eq!(
        top(&p, &opts()).unwrap(),
        text(&[
            "Type: cpu",
            "Showing nodes accounting for 0, 0% of 0 total",
            "      flat  flat%   sum%        cum   cum%",
        ])
    );
    assert_eq!(
        traces(&p, &opts()).unwrap(),
        text(&[
            "Type: cpu",
            "-----------+-------------------------------------------------------"
        ])
    );
    let mut svg = Vec::new();
    match flamegraph(&p, &opts(), &mut svg) {
        Err(Error::Invalid(msg)) => assert!(msg.contains("no samples"), "{msg}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(svg.is_empty(), "nothing is written on error");
}

#[test]
fn flame_graph_folds_stacks_root_first() {
    let p = cpu_profile();
    assert_eq!(
        flamegraph::folded_for_test(&p, 1),
        [
            "main;<unknown> 1000000",
            "main;rec;rec;rec 1000000000",
            "main;work 30000000",
            "main;work;[myprog] 10000000",
            "main;work;alpha 20000000",
            "main;work;inl 500000000",
            "main;zeta 20000000",
            "main;zeta;beta 20000000",
        ]
    );
    let mut svg = Vec::new();
    flamegraph(&p, &opts(), &mut svg).unwrap();
    let svg = String::from_utf8(svg).unwrap();
    assert!(svg.starts_with("<?xml"), "{}", &svg[..100.min(svg.len())]);
    assert!(svg.contains(">cpu<"), "titled with the sample type");
    assert!(
        svg.contains("rec (1,000,000,000 nanoseconds"),
        "counts in the unit"
    );
    assert!(svg.trim_end().ends_with("</svg>"));
}

#[test]
fn flame_graph_of_memory_and_odd_names() {
    let mut b = ProfileBuilder::new(&[("inuse_space", "bytes")], ("space", "bytes"), 1);
    let f = b.function("<[u8; 8] as Foo>::bar", "", "", 0);
    let main = b.function("main", "", "", 0);
    let (f, main) = (b.location(0, 1, &[(f, 0)]), b.location(0, 2, &[(main, 0)]));
    b.add_sample(&[f, main], &[4096]);
    b.add_sample(&[main], &[-5]);
    let p = b.build();
    assert_eq!(
        flamegraph::folded_for_test(&p, 0),
        ["main;<[u8； 8] as Foo>::bar 4096"]
    );
    let mut svg = Vec::new();
    flamegraph(&p, &opts(), &mut svg).unwrap();
    let svg = String::from_utf8(svg).unwrap();
    assert!(svg.contains("bytes"));
    assert!(svg.contains("&lt;[u8； 8] as Foo&gt;::bar"));
}

/// A larger pseudo-random profile (fixed seed): many functions, inlined and unsymbolized
/// frames, recursion, values spanning four orders of magnitude, names with spaces and generics.
fn generated_profile(sample_types: &[(&str, &str)], unit_scale: i64) -> Profile {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut rand = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut b = ProfileBuilder::new(sample_types, sample_types[0], 1);
    let m = b.mapping(&MappingInfo {
        memory_start: 0x1000,
        memory_limit: 0x10_0000,
        file_offset: 0,
        filename: "/work/target/release/app".into(),
        build_id: String::new(),
        symbolized: true,
    });
    let libc = b.mapping(&MappingInfo {
        memory_start: 0x7f00_0000,
        memory_limit: 0x7f10_0000,
        file_offset: 0,
        filename: "/lib/x86_64-linux-gnu/libc.so.6".into(),
        build_id: String::new(),
        symbolized: false,
    });
    let functions: Vec<u64> = (0..40)
        .map(|i| {
            let name = match i % 4 {
                0 => format!("app::module{}::function_{i}", i % 3),
                1 => format!("<app::Type{i} as core::ops::Drop>::drop"),
                2 => format!("app::generic::<impl app::Trait for Vec<u{i}>>::call"),
                _ => format!("core::iter::adapters::map_{i}"),
            };
            // A system name distinct from the name, as rprof's symbolizer writes (mangled vs
            // demangled): pprof then keeps the name as it is instead of simplifying it with
            // its C++ heuristics (which would turn `<T as Drop>::drop` into `::drop`).
            let mangled = format!("_ZN3app{}f{i}17h0123456789abcdefE", 1 + i / 10);
            match i {
                // Only a system name (a C function): pprof shows it.
                9 | 19 => b.function("", &format!("c_function_{i}"), "", 0),
                // No name at all: pprof shows the binary.
                39 => b.function("", "", "", 0),
                _ => b.function(&name, &mangled, "src/lib.rs", i),
            }
        })
        .collect();
    let mut locations = Vec::new();
    for i in 0..80u64 {
        let mut pick = || functions[rand(functions.len())];
        let address = 0x1000 + i * 16;
        let location = match i % 8 {
            0 => b.location(m, address, &[(pick(), 1), (pick(), 2)]),
            1 => b.location(m, address, &[(pick(), 1), (pick(), 2), (pick(), 3)]),
            2 if i % 3 == 0 => b.location(libc, 0x7f00_0000 + address, &[]),
            _ => b.location(m, address, &[(pick(), 4)]),
        };
        locations.push(location);
    }
    for _ in 0..400 {
        let depth = 1 + rand(12);
        let mut stack: Vec<u64> = (0..depth)
            .map(|_| locations[rand(locations.len())])
            .collect();
        if rand(4) == 0 {
            stack.push(stack[0]); // recursion
        }
        let values: Vec<i64> = sample_types
            .iter()
            .map(|_| {
                let v = match rand(100) {
                    0..=69 => 1 + rand(10),
                    70..=94 => 10 + rand(1000),
                    _ => rand(100_000),
                };
                v as i64 * unit_scale
            })
            .collect();
        b.add_sample(&stack, &values);
    }
    b.time(1_650_000_000_000_000_000, 5_000 * MS);
    b.build()
}

/// `(flat, name)` of each row of a `top` report, parsed from its text.
fn parse_top_rows(report: &str) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in report.lines() {
        if !in_table {
            in_table = line.trim_start().starts_with("flat  flat%");
            continue;
        }
        let mut rest = line;
        let mut fields = Vec::new();
        for _ in 0..5 {
            rest = rest.trim_start();
            let end = rest.find(' ').unwrap_or(rest.len());
            fields.push(&rest[..end]);
            rest = &rest[end..];
        }
        rows.push((fields[0].to_owned(), rest.trim_start().to_owned()));
    }
    rows
}

/// The oracle: `go tool pprof -top` on the same files must show the same functions with the same
/// flat values. Skipped when Go is not installed, except under CI, where that is a failure.
#[test]
fn top_matches_go_tool_pprof() {
    let go_present = std::process::Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !go_present {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but `go` is not on PATH: install Go so the report can be checked \
             against `go tool pprof`"
        );
        eprintln!("skipping: `go` is not on PATH");
        return;
    }
    let dir = std::env::temp_dir().join(format!("rprof-report-oracle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let profiles = [
        ("cpu", cpu_profile()),
        ("heap", heap_profile()),
        ("partial_inline", partial_inline_profile()),
        (
            "generated_cpu",
            generated_profile(&[("samples", "count"), ("cpu", "nanoseconds")], 1_000_000),
        ),
        (
            "generated_heap",
            generated_profile(
                &[
                    ("alloc_objects", "count"),
                    ("alloc_space", "bytes"),
                    ("inuse_objects", "count"),
                    ("inuse_space", "bytes"),
                ],
                48,
            ),
        ),
    ];
    for (name, profile) in &profiles {
        let path = dir.join(format!("{name}.pb.gz"));
        crate::codec::write_file(&path, profile).unwrap();
        let output = std::process::Command::new("go")
            .args(["tool", "pprof", "-top", "-nodecount=100"])
            .arg(&path)
            .env("TZ", "UTC")
            .output()
            .expect("running go tool pprof");
        assert!(
            output.status.success(),
            "go tool pprof failed on {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let theirs = parse_top_rows(&String::from_utf8(output.stdout).unwrap());
        let o = ReportOptions {
            nodecount: Some(100),
            ..opts()
        };
        let ours = parse_top_rows(&top(profile, &o).unwrap());
        assert!(!ours.is_empty(), "{name}: no rows");
        assert_eq!(ours, theirs, "{name}: rows differ from go tool pprof");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
