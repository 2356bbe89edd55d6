//! Mutation fuzzing of the decoder and every report: seed profiles (CPU-like and heap-like,
//! labelled, inlined, with sparse ids) are encoded, mutated at random (bit flips, random bytes,
//! insertions, deletions, duplications, truncations, varints made huge) and decoded; whatever
//! decodes is run through every report with several options. Nothing may panic; decode errors
//! and report errors are fine. A fixed seed makes the run reproducible; a failing case is
//! written to the temporary directory and named in the failure.
//!
//! `RPROF_FUZZ_CASES` sets the number of cases (default 100,000, split over the cores),
//! `RPROF_FUZZ_SEED` the random seed (default fixed), for longer campaigns.

use std::panic::AssertUnwindSafe;

use prost::Message;
use rprof_core::builder::{MappingInfo, ProfileBuilder};
use rprof_core::proto::Label;
use rprof_core::report::{self, filter::Filters, Granularity, ReportOptions};
use rprof_core::{codec, Profile};

/// xorshift64*: small, fast, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for kind in 0..3 {
        let (types, period): (&[(&str, &str)], _) = match kind {
            0 => (
                &[("samples", "count"), ("cpu", "nanoseconds")],
                ("cpu", "nanoseconds"),
            ),
            1 => (
                &[
                    ("alloc_objects", "count"),
                    ("alloc_space", "bytes"),
                    ("inuse_objects", "count"),
                    ("inuse_space", "bytes"),
                ],
                ("space", "bytes"),
            ),
            _ => (
                &[("contentions", "count"), ("delay", "nanoseconds")],
                ("contentions", "count"),
            ),
        };
        let mut b = ProfileBuilder::new(types, period, 10_000_000);
        let m = b.mapping(&MappingInfo {
            memory_start: 0x1000,
            memory_limit: 0x9000,
            file_offset: 0,
            filename: "/bin/app".into(),
            build_id: "abcd".into(),
            symbolized: true,
        });
        let funcs: Vec<u64> = [
            "main",
            "app::run",
            "app::hot",
            "<T as Tr>::f",
            "alloc::alloc",
        ]
        .iter()
        .enumerate()
        .map(|(i, n)| b.function(n, n, &format!("/src/f{i}.rs"), i as i64 * 10))
        .collect();
        let locs: Vec<u64> = (0..6)
            .map(|i| {
                let lines: Vec<(u64, i64)> = (0..1 + i % 2)
                    .map(|j| (funcs[(i + j) % funcs.len()], 3 + i as i64))
                    .collect();
                b.location(m, 0x1100 + 0x40 * i as u64, &lines)
            })
            .collect();
        for s in 0..5 {
            let stack: Vec<u64> = (0..2 + s % 4).map(|k| locs[(s + k) % locs.len()]).collect();
            let values: Vec<i64> = (0..types.len())
                .map(|v| (s as i64 + 1) * (v as i64 + 7))
                .collect();
            let key = b.string("test");
            let value = b.string(&format!("t{s}"));
            b.add_labeled_sample(
                &stack,
                &values,
                vec![Label {
                    key,
                    str: value,
                    ..Default::default()
                }],
            );
        }
        let mut p = b.build();
        p.comment.push(p.string_table.len() as i64 - 1);
        if kind == 2 {
            // Sparse ids, as other writers may number them.
            for l in &mut p.location {
                l.id *= 1000;
            }
            for s in &mut p.sample {
                for id in &mut s.location_id {
                    *id *= 1000;
                }
            }
        }
        out.push(p.encode_to_vec());
    }
    out
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        if b.is_empty() {
            b.push(rng.next() as u8);
        }
        let at = rng.below(b.len());
        match rng.below(8) {
            0 => b[at] ^= 1 << rng.below(8),
            1 => b[at] = rng.next() as u8,
            2 => b.insert(at, rng.next() as u8),
            3 => {
                let end = (at + 1 + rng.below(8)).min(b.len());
                b.drain(at..end);
            }
            4 => {
                let end = (at + 1 + rng.below(16)).min(b.len());
                let chunk = b[at..end].to_vec();
                let to = rng.below(b.len());
                b.splice(to..to, chunk);
            }
            5 => b.truncate(at),
            6 => {
                // A varint made huge (or negative, as a signed value).
                let n = 1 + rng.below(9);
                for k in 0..n {
                    if at + k < b.len() {
                        b[at + k] = 0xff;
                    }
                }
                if at + n < b.len() {
                    b[at + n] = 0x01;
                }
            }
            _ => b[at] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)],
        }
    }
    b
}

/// Run every report over `p`; errors are fine, panics are not.
fn reports(p: &Profile, rng: &mut Rng) {
    let types: Vec<String> = p
        .sample_type
        .iter()
        .map(|t| p.str(t.r#type).to_owned())
        .collect();
    let granularities = [
        Granularity::Functions,
        Granularity::FileFunctions,
        Granularity::Files,
        Granularity::Lines,
        Granularity::Addresses,
    ];
    let filters = [
        Filters::default(),
        Filters {
            focus: Some("app".into()),
            ..Default::default()
        },
        Filters {
            ignore: Some("hot".into()),
            hide: Some("main".into()),
            ..Default::default()
        },
        Filters {
            show_from: Some("run".into()),
            prune_from: Some("f".into()),
            tagfocus: Some("test=t1".into()),
            ..Default::default()
        },
        Filters {
            show: Some(".".into()),
            tagignore: Some("t3".into()),
            ..Default::default()
        },
    ];
    let opts = ReportOptions {
        sample_index: (!types.is_empty() && rng.below(2) == 0)
            .then(|| types[rng.below(types.len())].clone()),
        nodecount: [None, Some(1), Some(3)][rng.below(3)],
        sort_by_cum: rng.below(2) == 0,
        filters: filters[rng.below(filters.len())].clone(),
        granularity: granularities[rng.below(granularities.len())],
        ..Default::default()
    };
    let _ = report::top(p, &opts);
    let _ = report::traces(p, &opts);
    let _ = report::tree(p, &opts);
    let _ = report::peek(p, &opts, "app|main");
    let _ = report::flamegraph(p, &opts, &mut Vec::new());
    let sources = report::list::SourceSearch::new(None, None, report::list::RustSrc::Off);
    let _ = report::list::list(p, &opts, "hot", &sources);
    if let Ok(based) = report::base::with_base(p.clone(), p, report::base::BaseMode::Diff) {
        let _ = report::top(&based, &opts);
    }
    let _ = report::base::merge_inputs(vec![p.clone(), p.clone()]);
    let _ = report::bylabel::values_by_label(p, "test", 0);
}

#[test]
fn no_input_makes_the_decoder_or_a_report_panic() {
    let cases: usize = std::env::var("RPROF_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let seed: u64 = std::env::var("RPROF_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    let seeds = seeds();
    // Every seed decodes and reports cleanly before it is mutated.
    for s in &seeds {
        let p = codec::decode(s).expect("a seed decodes");
        reports(&p, &mut Rng(1));
    }
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8);
    let started = std::time::Instant::now();
    let decoded: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let seeds = &seeds;
                scope.spawn(move || {
                    // splitmix64 of (seed, thread): never the all-zero state xorshift keeps.
                    let mut z =
                        seed.wrapping_add((t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                    let mut rng = Rng((z ^ (z >> 31)) | 1);
                    let mut decoded = 0;
                    for case in (t..cases).step_by(threads) {
                        let input = mutate(&mut rng, &seeds[case % seeds.len()]);
                        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                            match codec::decode(&input) {
                                Ok(p) => {
                                    reports(&p, &mut rng);
                                    true
                                }
                                Err(_) => false,
                            }
                        }));
                        match result {
                            Ok(ok) => decoded += usize::from(ok),
                            Err(_) => {
                                let path =
                                    std::env::temp_dir().join(format!("rprof-fuzz-case-{case}.pb"));
                                let _ = std::fs::write(&path, &input);
                                panic!("case {case} panicked; its input is in {}", path.display());
                            }
                        }
                    }
                    decoded
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    eprintln!(
        "fuzz: {cases} cases in {:.1} s, {decoded} decoded and reported",
        started.elapsed().as_secs_f64()
    );
    // The mutations must reach the reports, not only the decoder's error paths.
    assert!(
        decoded > cases / 100,
        "only {decoded} of {cases} cases decoded"
    );
}
