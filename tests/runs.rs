//! End-to-end tests of a whole `cargo rprof test` run on a crate with three test binaries:
//! merging, `--outputdir`, failing tests, child processes, the user's RUSTFLAGS and target dir.

use std::path::Path;

use rprof::{cum_of, function_values, read_profile, run, Fixture};

/// The raw profiles of every session (the kept vDSO image beside them is not one).
fn raw_profiles(fixture: &Fixture) -> Vec<std::path::PathBuf> {
    let sessions = fixture.path("target/rprof/sessions");
    let mut raws = Vec::new();
    for session in std::fs::read_dir(sessions).unwrap() {
        for raw in std::fs::read_dir(session.unwrap().path().join("raw")).unwrap() {
            let raw = raw.unwrap().path();
            if raw.to_string_lossy().ends_with(".pb.gz") {
                raws.push(raw);
            }
        }
    }
    raws
}

#[test]
fn three_binaries_merge_into_one_profile_in_outputdir() {
    let fixture = Fixture::copy("multi");
    std::fs::create_dir(fixture.path("out")).unwrap();
    let ran = run({
        let mut cmd = fixture.rprof(&["test", "--cpuprofile", "cpu.prof", "--outputdir", "out"]);
        cmd.env("RUSTFLAGS", "--cfg rprof_probe")
            .env("MULTI_EXPECT_PROBE", "1");
        cmd
    });
    // `user_rustflags_are_kept` passes only if `--cfg rprof_probe` reached the build.
    ran.expect_code(0);
    assert!(ran.stdout.contains("user_rustflags_are_kept ... ok"));
    let profile = read_profile(&fixture.path("out/cpu.prof"));
    assert!(!fixture.path("cpu.prof").exists());
    let values = function_values(&profile, "cpu");
    for hot in ["multi::lib_hot", "alpha::alpha_hot", "beta::beta_hot"] {
        let cum = cum_of(&values, hot);
        assert!(
            cum >= 200_000_000,
            "{hot} has {cum} ns in the merged profile"
        );
    }
    // One mapping per binary: three executables.
    let exes: std::collections::BTreeSet<&str> = profile
        .mapping
        .iter()
        .map(|m| profile.str(m.filename))
        .filter(|f| f.contains("/deps/"))
        .collect();
    assert_eq!(exes.len(), 3, "{exes:?}");

    // The child processes (/bin/true and the test binary itself) ran unprofiled: the test
    // checked their environment; no raw profile but the three binaries'; no child_hot.
    assert!(
        ran.stdout.contains("spawns_children ... ok"),
        "{}",
        ran.stdout
    );
    assert_eq!(raw_profiles(&fixture).len(), 3);
    assert_eq!(cum_of(&values, "multi::child_hot"), 0);

    // The user's own build is untouched: everything went to target/rprof.
    assert!(!fixture.path("target/debug").exists());
    assert!(fixture.path("target/rprof/debug").is_dir());
}

#[test]
fn failing_test_still_yields_the_profile_and_exit_101() {
    let fixture = Fixture::copy("multi");
    let ran = run({
        let mut cmd = fixture.rprof(&["test", "--no-fail-fast", "--cpuprofile", "cpu.prof"]);
        cmd.env("MULTI_FAIL", "1");
        cmd
    });
    ran.expect_code(101);
    assert!(ran.stdout.contains("fails_when_asked ... FAILED"));
    let profile = read_profile(&fixture.path("cpu.prof"));
    let values = function_values(&profile, "cpu");
    for hot in ["multi::lib_hot", "alpha::alpha_hot", "beta::beta_hot"] {
        assert!(
            cum_of(&values, hot) > 0,
            "{hot} missing after a failing test"
        );
    }
}

#[test]
fn demo_quick_start_reports_the_hot_function_first() {
    let fixture = Fixture::copy("examples/demo");
    let ran = run(fixture.rprof(&["test", "--cpuprofile", "cpu.prof"]));
    ran.expect_code(0);
    let first_row = ran
        .stderr
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .nth(1)
        .unwrap_or_else(|| panic!("no report table in\n{}", ran.stderr));
    assert!(
        first_row.trim_end().ends_with("demo::collatz_steps"),
        "{first_row}"
    );
    assert!(Path::new(&fixture.path("cpu.prof")).is_file());
}

#[test]
fn bench_without_harness_is_profiled_in_release() {
    let fixture = Fixture::copy("examples/demo");
    let ran = run(fixture.rprof(&["bench", "--cpuprofile", "bench.prof"]));
    ran.expect_code(0);
    assert!(
        ran.stdout.contains("longest chain below 2,000,000"),
        "{}",
        ran.stdout
    );
    let profile = read_profile(&fixture.path("bench.prof"));
    let values = function_values(&profile, "cpu");
    let total = profile.total(profile.sample_index("cpu").unwrap());
    assert!(total > 0);
    assert!(cum_of(&values, "demo::collatz_steps") as f64 >= 0.8 * total as f64);
    // Release build, with line tables: the hot function has its file and line.
    assert!(fixture.path("target/rprof/release").is_dir());
    let f = profile
        .function
        .iter()
        .find(|f| profile.str(f.name) == "demo::collatz_steps")
        .unwrap();
    assert!(profile.str(f.filename).ends_with("src/lib.rs"));
}
