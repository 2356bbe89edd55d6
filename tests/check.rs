//! `cargo rprof tests` and `cargo rprof check` end to end, on small labelled profiles built here
//! (as the profiler writes them: a `test` and a `thread` label on every sample) and written
//! with rprof-core's codec: the exact table rows, the JSON, and the gate's exit status.

use std::path::{Path, PathBuf};
use std::process::Command;

use rprof::{cargo_rprof, codec, run, Profile, ProfileBuilder, Ran};
use rprof_core::proto::Label;

const CPU: &[(&str, &str)] = &[("samples", "count"), ("cpu", "nanoseconds")];
const MEM: &[(&str, &str)] = &[
    ("alloc_objects", "count"),
    ("alloc_space", "bytes"),
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
];
const DELAY: &[(&str, &str)] = &[("contentions", "count"), ("delay", "nanoseconds")];

/// A profile of `types` whose samples are `(test label, leaf function, values)`; `None` leaves
/// the sample without a `test` label.
fn profile(types: &[(&str, &str)], samples: &[(Option<&str>, &str, &[i64])]) -> Profile {
    let mut b = ProfileBuilder::new(types, types[types.len() - 1], 1);
    b.default_sample_type(types[types.len() - 1].0);
    if types == MEM {
        b.default_sample_type("alloc_space");
    }
    let main = b.function("main", "main", "src/main.rs", 1);
    let l_main = b.location(0, 0x100, &[(main, 2)]);
    let (test, thread) = (b.string("test"), b.string("thread"));
    for (i, &(label, leaf, values)) in samples.iter().enumerate() {
        let f = b.function(leaf, leaf, "src/lib.rs", 10);
        let l = b.location(0, 0x1000 + i as u64, &[(f, 11)]);
        let mut labels = vec![Label {
            key: thread,
            str: b.string(label.unwrap_or("main")),
            num: 0,
            num_unit: 0,
        }];
        if let Some(t) = label {
            labels.push(Label {
                key: test,
                str: b.string(t),
                num: 0,
                num_unit: 0,
            });
        }
        b.add_labeled_sample(&[l, l_main], values, labels);
    }
    b.build()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rprof-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn write(name: &str, p: &Profile) -> PathBuf {
    let path = scratch(name);
    codec::write_file(&path, p).unwrap();
    path
}

fn rprof(args: &[&str], files: &[&Path]) -> Ran {
    run({
        let mut cmd = Command::new(cargo_rprof());
        cmd.arg("rprof")
            .args(&args[..1])
            .args(files)
            .args(&args[1..]);
        cmd
    })
}

/// CPU: tests::a 30ms, tests::b 10ms, (shared) 10ms.
fn cpu() -> Profile {
    profile(
        CPU,
        &[
            (Some("tests::a"), "hot", &[3, 30_000_000]),
            (Some("tests::b"), "warm", &[1, 10_000_000]),
            (Some("(shared)"), "pool", &[1, 10_000_000]),
        ],
    )
}

/// Memory at rate 1: tests::a allocates `a_objects` 64-byte objects, tests::b one of 1 kB,
/// and a sample without a `test` label 16 bytes (8 still live).
fn mem(a_objects: i64) -> Profile {
    profile(
        MEM,
        &[
            (
                Some("tests::a"),
                "alloc_a",
                &[a_objects, a_objects * 64, 0, 0],
            ),
            (Some("tests::b"), "alloc_b", &[1, 1024, 1, 1024]),
            (None, "runtime_init", &[2, 16, 1, 8]),
        ],
    )
}

#[test]
fn tests_tabulates_every_profile_kind_per_test() {
    let cpu = write("cpu.prof", &cpu());
    let mem = write("mem.prof", &mem(3));
    let block = write(
        "block.prof",
        &profile(DELAY, &[(Some("tests::b"), "park", &[2, 1_500_000])]),
    );
    let ran = rprof(&["tests"], &[&cpu, &mem, &block]);
    ran.expect_code(0);
    assert_eq!(
        ran.stdout,
        "       cpu    cpu% alloc_bytes alloc_bytes% alloc_objects alloc_objects% inuse_bytes inuse_bytes%      block  block%  test\n\
         \x20     30ms  60.00%        192B       15.58%             3         50.00%           0           0%          0      0%  tests::a\n\
         \x20     10ms  20.00%           0           0%             0             0%           0           0%          0      0%  (shared)\n\
         \x20     10ms  20.00%         1kB       83.12%             1         16.67%         1kB       99.22%     1.50ms    100%  tests::b\n\
         \x20        0      0%         16B        1.30%             2         33.33%          8B        0.78%          0      0%  (unlabelled)\n"
    );

    let ran = rprof(
        &[
            "tests",
            "--sort",
            "alloc_objects",
            "-n",
            "2",
            "--format",
            "json",
        ],
        &[&mem, &block],
    );
    ran.expect_code(0);
    let json: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(
        json,
        serde_json::json!([
            {"test": "tests::a", "alloc_bytes": 192, "alloc_objects": 3, "inuse_bytes": 0, "block_ns": 0},
            {"test": "(unlabelled)", "alloc_bytes": 16, "alloc_objects": 2, "inuse_bytes": 8, "block_ns": 0},
        ])
    );

    // The usual filters apply; a delay profile named neither block nor mutex is `delay`.
    let waits = write(
        "waits.prof",
        &profile(DELAY, &[(Some("tests::b"), "park", &[2, 1_500_000])]),
    );
    let ran = rprof(
        &["tests", "--tagfocus", "test=tests::b", "--format", "json"],
        &[&cpu, &waits],
    );
    ran.expect_code(0);
    let json: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{"test": "tests::b", "cpu_ns": 10_000_000, "delay_ns": 1_500_000}])
    );
}

#[test]
fn tests_refuses_unlabelled_profiles_and_bad_columns_in_one_line() {
    let cpu = write("cpu-plain.prof", &cpu());
    let old = write(
        "old.prof",
        &profile(CPU, &[(None, "hot", &[1, 10_000_000])]),
    );
    let ran = rprof(&["tests"], &[&cpu, &old]);
    assert_eq!(ran.code, Some(1));
    assert_eq!(
        ran.stderr,
        format!(
            "error: {} has no `test` labels: profile it with a cargo rprof that labels samples per test (test, thread, binary, bench)\n",
            old.display()
        )
    );
    let ran = rprof(&["tests", "--sort", "mutex"], &[&cpu]);
    assert_eq!(ran.code, Some(2));
    assert_eq!(
        ran.stderr,
        "error: no `mutex` column in these profiles (they have: cpu)\n"
    );
    let ran = rprof(&["tests", "--sort", "bogus"], &[&cpu]);
    assert_eq!(ran.code, Some(2));
    assert!(ran
        .stderr
        .starts_with("error: --sort bogus: no such column"));
}

#[test]
fn check_reports_exactly_the_test_that_allocated_one_more() {
    let base = write("base-mem.prof", &mem(3));
    let same = write("same-mem.prof", &mem(3));
    let more = write("more-mem.prof", &mem(4));

    let ran = rprof(
        &["check", "--sample-index", "alloc_objects"],
        &[&base, &same],
    );
    ran.expect_code(0);
    assert_eq!(
        ran.stdout,
        "no regression: 3 tests compared (alloc_objects, +0% and min delta 0 allowed)\n"
    );
    assert_eq!(ran.stderr, "");

    let ran = rprof(
        &[
            "check",
            "--sample-index",
            "alloc_objects",
            "--max-increase",
            "0",
        ],
        &[&base, &more],
    );
    ran.expect_code(1);
    assert_eq!(
        ran.stdout,
        "      base        new      delta    change  test\n\
         \x20        3          4         +1   +33.33%  tests::a\n"
    );
    assert_eq!(
        ran.stderr,
        "error: 1 regression past +0% and min delta 0 (alloc_objects, 3 tests compared)\n"
    );

    // The default sample type (alloc_space), per function; a delta below --min-delta passes.
    let ran = rprof(&["check", "--by", "function"], &[&base, &more]);
    ran.expect_code(1);
    assert_eq!(
        ran.stdout,
        "      base        new      delta    change  function\n\
         \x20     192B       256B       +64B   +33.33%  alloc_a\n"
    );
    let ran = rprof(&["check", "--min-delta", "1kB"], &[&base, &more]);
    ran.expect_code(0);
    assert_eq!(
        ran.stdout,
        "no regression: 3 tests compared (alloc_space, +0% and min delta 1kB allowed)\n"
    );
}

#[test]
fn check_on_cpu_allows_noise_and_flags_new_tests() {
    let base = write("base-cpu.prof", &cpu());
    // tests::a +10ms (+33%, under the default 50ms), tests::c new with 60ms.
    let new = write(
        "new-cpu.prof",
        &profile(
            CPU,
            &[
                (Some("tests::a"), "hot", &[4, 40_000_000]),
                (Some("tests::b"), "warm", &[1, 10_000_000]),
                (Some("tests::c"), "fresh", &[6, 60_000_000]),
            ],
        ),
    );
    let ran = rprof(&["check"], &[&base, &new]);
    ran.expect_code(1);
    assert_eq!(
        ran.stdout,
        "      base        new      delta    change  test\n\
         \x20        0       60ms      +60ms       new  tests::c\n"
    );
    assert_eq!(
        ran.stderr,
        "error: 1 regression past +25% and min delta 50ms (cpu, 3 tests compared)\n"
    );
    let ran = rprof(&["check", "--min-delta", "10ms"], &[&base, &new]);
    ran.expect_code(1);
    assert!(ran.stdout.contains("tests::a") && ran.stdout.contains("tests::c"));
}

#[test]
fn check_errors_exit_2_in_one_line() {
    let mem = write("gate-mem.prof", &mem(1));
    let cpu = write("gate-cpu.prof", &cpu());
    let old = write("gate-old.prof", &profile(CPU, &[(None, "hot", &[1, 1])]));
    let missing = scratch("missing.prof");
    let cases: [(&[&str], &[&Path], &str); 5] = [
        (&["check"], &[&mem, &cpu], "are different kinds of profile"),
        (&["check"], &[&old, &cpu], "has no `test` labels"),
        (&["check"], &[&cpu, &missing], "missing.prof"),
        (
            &["check", "--min-delta", "1MB"],
            &[&cpu, &cpu],
            "--min-delta: `1MB` is not an amount of nanoseconds",
        ),
        (
            &["check", "--sample-index", "nope"],
            &[&cpu, &cpu],
            "no sample type `nope`",
        ),
    ];
    for (args, files, mentions) in cases {
        let ran = rprof(args, files);
        assert_eq!(ran.code, Some(2), "{args:?}: {}", ran.stderr);
        assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.stderr);
        assert!(
            ran.stderr.starts_with("error: ") && ran.stderr.contains(mentions),
            "{}",
            ran.stderr
        );
    }
}
