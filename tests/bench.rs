//! Benchmarks: the criterion profiler hook under plain `cargo bench`, and `cargo rprof bench`
//! on the same crate.

use std::process::Command;

use rprof::{cum_of, function_values, go_tool, read_profile, run, Fixture};

/// `cargo bench --bench crit -- --profile-time 2` with the hook: one profile and one SVG per
/// benchmark, each led by its own hot function, each readable by `go tool pprof` alone.
#[test]
fn criterion_hook_writes_a_profile_and_flame_graph_per_benchmark() {
    let fixture = Fixture::copy_with_harness("crit");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let ran = run({
        let mut c = Command::new(cargo);
        c.current_dir(&fixture.dir)
            .args(["bench", "--bench", "crit", "--", "--profile-time", "2"])
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS");
        c
    });
    ran.expect_code(0);
    for (bench, hot) in [
        ("squares", "crit::squares_hot"),
        ("checksum", "crit::checksum_hot"),
    ] {
        let dir = fixture.path(&format!("target/criterion/{bench}/profile"));
        let file = dir.join("cpu.pb.gz");
        let profile = read_profile(&file);
        let svg = std::fs::read_to_string(dir.join("cpu.svg")).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains(hot),
            "{bench}: flame graph lacks {hot}"
        );
        let benches: Vec<&str> = profile
            .sample
            .iter()
            .map(|s| {
                let label = s.label.iter().find(|l| profile.str(l.key) == "bench");
                label.map_or("", |l| profile.str(l.str))
            })
            .collect();
        assert!(
            !benches.is_empty() && benches.iter().all(|b| *b == bench),
            "{bench}: samples labelled {:?}",
            benches.iter().take(3).collect::<Vec<_>>()
        );
        let index = profile.sample_index("cpu").unwrap();
        let rows = rprof::report::function_rows(&profile, index);
        assert!(
            rows[0].name.ends_with(hot),
            "{bench}: top is {:?}",
            rows.iter().take(3).collect::<Vec<_>>()
        );
        if let Some(go) = go_tool() {
            let tags = run({
                let mut c = Command::new(&go);
                c.args(["tool", "pprof", "-tags"]).arg(&file);
                c
            });
            tags.expect_code(0);
            assert!(
                tags.stdout.contains(" bench: Total")
                    && tags.stdout.contains(&format!("(  100%): {bench}\n")),
                "{bench}: go tool pprof -tags shows\n{}",
                tags.stdout
            );
            let top = run({
                let mut c = Command::new(&go);
                c.args(["tool", "pprof", "-top"]).arg(&file);
                c
            });
            top.expect_code(0);
            let first = top
                .stdout
                .lines()
                .skip_while(|l| !l.trim_start().starts_with("flat"))
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            assert!(
                first.trim_end().ends_with(hot),
                "{bench}: go tool pprof shows {first}"
            );
        }
    }
}

/// `cargo rprof bench --cpuprofile` on the hooked crate profiles the whole bench process.
#[test]
fn cargo_rprof_bench_on_a_criterion_crate() {
    let fixture = Fixture::copy_with_harness("crit");
    let ran = run(fixture.rprof(&[
        "bench",
        "--bench",
        "crit",
        "--cpuprofile",
        "cpu.prof",
        "--",
        "--warm-up-time",
        "0.2",
        "--measurement-time",
        "0.5",
        "--sample-size",
        "10",
    ]));
    ran.expect_code(0);
    let p = read_profile(&fixture.path("cpu.prof"));
    let values = function_values(&p, "cpu");
    let total = p.total(p.sample_index("cpu").unwrap()) as f64;
    let hot = (cum_of(&values, "crit::squares_hot") + cum_of(&values, "crit::checksum_hot")) as f64;
    assert!(hot > 0.5 * total, "hot functions have {hot} of {total}");
    assert!(cum_of(&values, "crit::squares_hot") > 0 && cum_of(&values, "crit::checksum_hot") > 0);
}
