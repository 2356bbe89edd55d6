//! `cargo rprof nextest run`: nextest runs a process per test; each is profiled, labelled with
//! nextest's own name for its test (and attempt), and merged into one file per kind. Shards of
//! a `--partition`ed run merged with `cargo rprof merge` add up to one whole run.

use std::collections::HashMap;

use rprof::{
    assert_test_costs_allocations, assert_test_costs_cpu, function_cum, label_totals, nextest_tool,
    read_profile, run, Fixture,
};

/// Held by the tests that measure CPU time: run side by side they would share the two cores of
/// CI with each other's spinning fixtures, and CPU-timer signals come late under contention.
static MEASURING_CPU: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn measuring_cpu() -> std::sync::MutexGuard<'static, ()> {
    MEASURING_CPU.lock().unwrap_or_else(|e| e.into_inner())
}

const TESTS: [&str; 7] = [
    "tests::burn_03",
    "tests::burn_06",
    "tests::burn_09",
    "tests::spawns_two",
    "tests::uses_pool",
    "tests::allocs_1001",
    "tests::allocs_501",
];

/// Per-test CPU within ±5% of what each test measured (as under `cargo rprof test`),
/// allocations exact at rate 1, one `test` label per test and nothing else but `(shared)` and
/// `(harness)`; then the two halves of `--partition count:N/2`, merged, equal the whole run's
/// allocations per test exactly.
#[test]
fn each_test_process_is_labelled_and_shards_merge_to_the_whole() {
    if nextest_tool().is_none() {
        return;
    }
    let _alone = measuring_cpu();
    let fixture = Fixture::copy("test_costs");
    let profile_flags = [
        "--cpuprofile",
        "cpu.prof",
        "--cpuprofilerate",
        "1000",
        "--memprofile",
        "mem.prof",
        "--memprofilerate",
        "1",
    ];
    let mut args = vec!["nextest", "run"];
    args.extend(profile_flags);
    args.push("--no-capture");
    let ran = run(fixture.rprof(&args));
    ran.expect_code(0);
    let truth = ran.truth();
    assert!(
        ran.stderr.contains("from 7 processes of 1 binary)"),
        "one profile per test process:\n{}",
        ran.stderr
    );
    let cpu = read_profile(&fixture.path("cpu.prof"));
    let by_test = assert_test_costs_cpu(&cpu, &truth);
    let hot = function_cum(&cpu, "cpu", "test_costs::burn") as f64;
    let measured: u64 = TESTS[..4]
        .iter()
        .map(|t| truth[&format!("cpu_ns.{t}")])
        .sum::<u64>()
        + truth["cpu_ns.pool"];
    assert!(
        (hot / measured as f64 - 1.0).abs() <= 0.05,
        "burn: {hot} ns in the profile, {measured} ns measured"
    );
    for label in by_test.keys() {
        assert!(
            TESTS.contains(&label.as_str()) || label == "(shared)" || label == "(harness)",
            "unexpected test label {label:?}"
        );
    }

    let mem = read_profile(&fixture.path("mem.prof"));
    assert_test_costs_allocations(&mem);
    // A process per test: each test's peak is its own. The allocation tests hold everything
    // they allocate until their vector drops, so the peak is every byte of it (rate 1: exact),
    // and `cargo rprof tests --sort peak_bytes` ranks them by it.
    let report = run(fixture.rprof(&[
        "tests",
        "mem.prof",
        "--sort",
        "peak_bytes",
        "--format",
        "json",
    ]));
    report.expect_code(0);
    let rows: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    let position = |test: &str| rows.iter().position(|r| r["test"] == test);
    for (test, bytes) in [
        ("tests::allocs_1001", 108_000),
        ("tests::allocs_501", 36_000),
    ] {
        let row = position(test).map(|i| &rows[i]);
        assert_eq!(
            row.map(|r| r["peak_bytes"].clone()),
            Some(bytes.into()),
            "{test}'s peak in {}",
            report.stdout
        );
    }
    assert!(
        position("tests::allocs_1001") < position("tests::allocs_501"),
        "sorted by peak_bytes, largest first: {}",
        report.stdout
    );
    let peaks: Vec<u64> = rows
        .iter()
        .map(|r| r["peak_bytes"].as_u64().unwrap_or(0))
        .collect();
    assert!(peaks.windows(2).all(|w| w[0] >= w[1]), "{peaks:?}");

    // Two shards, merged, against the whole run.
    for shard in ["1", "2"] {
        let partition = format!("count:{shard}/2");
        let (cpu_file, mem_file) = (format!("cpu{shard}.prof"), format!("mem{shard}.prof"));
        let ran = run(fixture.rprof(&[
            "nextest",
            "run",
            "--partition",
            &partition,
            "--cpuprofile",
            &cpu_file,
            "--memprofile",
            &mem_file,
            "--memprofilerate",
            "1",
        ]));
        ran.expect_code(0);
    }
    let merged = run(fixture.rprof(&[
        "merge",
        "-o",
        "merged.prof",
        "--label",
        "shard",
        "mem1.prof",
        "mem2.prof",
    ]));
    merged.expect_code(0);
    let merged = read_profile(&fixture.path("merged.prof"));
    for index in ["alloc_objects", "alloc_space"] {
        let whole = label_totals(&mem, "test", mem.sample_index(index).unwrap());
        let halves = label_totals(&merged, "test", merged.sample_index(index).unwrap());
        for test in TESTS {
            assert_eq!(
                halves.get(test),
                whole.get(test),
                "{test}: {index} of the merged shards vs the whole run"
            );
        }
    }
    let shards = label_totals(&merged, "shard", 0);
    assert_eq!(
        shards.keys().filter(|k| !k.is_empty()).count(),
        2,
        "one shard label per input: {shards:?}"
    );
    // Kinds that do not mix are refused, naming the file.
    let refused = run(fixture.rprof(&["merge", "-o", "bad.prof", "mem1.prof", "cpu1.prof"]));
    refused.expect_code(1);
    assert!(
        refused.stderr.contains("cpu1.prof") && refused.stderr.contains("sample types differ"),
        "{}",
        refused.stderr
    );
    assert!(!fixture.path("bad.prof").exists());
}

/// `--retries`: each attempt of a flaky test keeps its own `attempt` label; a test nextest times
/// out keeps its profile up to the kill, with a warning naming it; the exit code is nextest's.
#[test]
fn retried_and_timed_out_tests_keep_their_profiles() {
    if nextest_tool().is_none() {
        return;
    }
    let _alone = measuring_cpu();
    let fixture = Fixture::copy("nextest_cases");
    let ran = run(fixture.rprof(&[
        "nextest",
        "run",
        "--retries",
        "1",
        "--cpuprofile",
        "cpu.prof",
    ]));
    // nextest's status for failed tests (the one that timed out).
    ran.expect_code(100);
    let cpu = read_profile(&fixture.path("cpu.prof"));
    let index = cpu.sample_index("cpu").unwrap();
    // flaky: two attempts, each 0.2 s of flaky_work.
    let mut per_attempt: HashMap<String, i64> = HashMap::new();
    for s in &cpu.sample {
        let label = |key: &str| {
            s.label
                .iter()
                .find(|l| cpu.str(l.key) == key)
                .map(|l| cpu.str(l.str).to_owned())
        };
        let in_flaky_work = rprof::stack_functions(&cpu, s)
            .iter()
            .any(|f| f.ends_with("nextest_cases::flaky_work"));
        if label("test").as_deref() == Some("tests::flaky") && in_flaky_work {
            *per_attempt
                .entry(label("attempt").unwrap_or_default())
                .or_default() += s.value[index];
        }
    }
    for attempt in ["1", "2"] {
        let ns = per_attempt.get(attempt).copied().unwrap_or(0) as f64;
        assert!(
            (ns / 2e8 - 1.0).abs() <= 0.15,
            "attempt {attempt} of tests::flaky: {ns} ns of flaky_work, want 0.2 s: {per_attempt:?}"
        );
    }
    // hangs: terminated after 2 s of wall time, twice (it is retried too).
    let hung = function_cum(&cpu, "cpu", "nextest_cases::hang_work") as f64 / 1e9;
    assert!(
        hung >= 1.0,
        "{hung:.2} s of hang_work: the killed attempts' profiles are missing\n{}",
        ran.stderr
    );
    assert!(
        ran.stderr
            .contains("test tests::hangs (attempt 1) was ended by SIGTERM")
            && ran
                .stderr
                .contains("test tests::hangs (attempt 2) was ended by SIGTERM"),
        "{}",
        ran.stderr
    );
}

/// Without cargo-nextest: one line saying how to install it, a non-zero exit, nothing built.
#[test]
fn a_missing_nextest_is_named_with_how_to_install_it() {
    let fixture = Fixture::copy("nextest_cases");
    // A cargo that knows no `nextest` subcommand, as cargo says when cargo-nextest is missing.
    let fake = fixture.path("fake-cargo");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'error: no such command: `nextest`' >&2\nexit 101\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut cmd = fixture.rprof(&["nextest", "run", "--cpuprofile", "cpu.prof"]);
    cmd.env("CARGO", &fake);
    let ran = run(cmd);
    ran.expect_code(1);
    let lines: Vec<&str> = ran.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", ran.stderr);
    assert!(
        lines[0].starts_with("error: cargo-nextest is not installed")
            && lines[0].contains("cargo install cargo-nextest --locked"),
        "{}",
        ran.stderr
    );
    assert!(!fixture.path("target").exists(), "nothing was built");
}
