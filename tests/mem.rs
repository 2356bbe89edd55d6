//! End-to-end tests of `cargo rprof test --memprofile`: fixtures with a known allocation truth.

use std::collections::HashMap;
use std::process::Command;

use rprof::{function_cum, go_tool, read_profile, run, Fixture, Profile};

fn mem_run(fixture: &Fixture, rate: &str, filter: &str) -> (Profile, HashMap<String, u64>) {
    let ran = run(fixture.rprof(&[
        "test",
        "--memprofile",
        "mem.prof",
        "--memprofilerate",
        rate,
        "--",
        filter,
        "--nocapture",
    ]));
    ran.expect_code(0);
    (read_profile(&fixture.path("mem.prof")), ran.truth())
}

#[test]
fn rate_1_is_exact_to_the_byte() {
    let fixture = Fixture::copy("mem_sites");
    let (p, truth) = mem_run(&fixture, "1", "exact");
    assert_eq!(
        function_cum(&p, "alloc_objects", "mem_sites::boxes") as u64,
        truth["boxes_objects"]
    );
    assert_eq!(
        function_cum(&p, "alloc_space", "mem_sites::boxes") as u64,
        truth["boxes_space"]
    );
    assert_eq!(function_cum(&p, "inuse_space", "mem_sites::boxes"), 0);
    assert_eq!(
        function_cum(&p, "inuse_space", "mem_sites::leak") as u64,
        truth["leak_space"]
    );
    assert_eq!(function_cum(&p, "inuse_objects", "mem_sites::leak"), 1);
    // Go's heap profile layout.
    let types: Vec<String> = p
        .sample_type
        .iter()
        .map(|vt| format!("{}/{}", p.str(vt.r#type), p.str(vt.unit)))
        .collect();
    assert_eq!(
        types,
        [
            "alloc_objects/count",
            "alloc_space/bytes",
            "inuse_objects/count",
            "inuse_space/bytes",
            "peak_objects/count",
            "peak_space/bytes"
        ]
    );
    assert_eq!(p.str(p.default_sample_type), "alloc_space");
    assert_eq!(p.period, 1);
    let pt = p.period_type.unwrap();
    assert_eq!((p.str(pt.r#type), p.str(pt.unit)), ("space", "bytes"));
    // The allocator's own frames are left off: the leaf is never __rust_alloc or malloc.
    for s in &p.sample {
        let leaf = p.location_by_id(s.location_id[0]).unwrap();
        for line in &leaf.line {
            let name = p.str(p.function_by_id(line.function_id).unwrap().name);
            assert!(!name.contains("__rust_alloc") && name != "malloc", "{name}");
        }
    }
    same_tops_as_go_pprof(&fixture.path("mem.prof"));
}

/// `go tool pprof -sample_index=X -top` agrees with `cargo rprof top --sample-index X`.
fn same_tops_as_go_pprof(file: &std::path::Path) {
    let Some(go) = go_tool() else { return };
    for index in ["alloc_space", "inuse_space"] {
        let theirs = run({
            let mut c = Command::new(&go);
            c.args(["tool", "pprof", &format!("-sample_index={index}"), "-top"])
                .arg(file);
            c
        });
        theirs.expect_code(0);
        let ours = run({
            let mut c = Command::new(rprof::cargo_rprof());
            c.args(["rprof", "top", "--sample-index", index]).arg(file);
            c
        });
        ours.expect_code(0);
        let table = |s: &str| -> Vec<String> {
            s.lines()
                .skip_while(|l| !l.trim_start().starts_with("flat"))
                .map(str::to_owned)
                .collect()
        };
        assert!(table(&ours.stdout).len() > 2, "{}", ours.stdout);
        assert_eq!(table(&theirs.stdout), table(&ours.stdout), "{index}");
    }
}

/// At the default rate (512 KiB), 8 GiB allocated in three sites (50/30/20, sizes 16 B ..
/// 64 KiB) is estimated within ±10% per site and ±5% in all, in each of 5 runs.
///
/// Tolerance: sampling is a Poisson process over bytes, so an estimate of B bytes has a
/// relative standard deviation of about sqrt(rate / B): 1.8% for the smallest site (1.6 GiB),
/// 0.8% for the total. ±10% and ±5% are over 5 standard deviations.
/// The peak-heap types: at rate 1 `peak_space` holds the 64 MiB `build_up` had live at the
/// peak, exactly, and nothing of `keep` (not yet called then), while `inuse_space` holds what
/// `keep` kept; at the default rate the peak's estimate is within ±10%.
#[test]
fn the_peak_is_what_was_live_at_the_top() {
    const MIB: i64 = 1 << 20;
    let fixture = Fixture::copy("mem_sites");
    let ran = run(fixture.rprof(&[
        "test",
        "--memprofile",
        "mem.prof",
        "--memprofilerate",
        "1",
        "--",
        "--exact",
        "tests::peak_then_keep",
    ]));
    ran.expect_code(0);
    let p = read_profile(&fixture.path("mem.prof"));
    assert_eq!(
        function_cum(&p, "peak_space", "mem_sites::build_up"),
        64 * MIB + 16 * 24
    );
    assert_eq!(function_cum(&p, "peak_objects", "mem_sites::build_up"), 17);
    assert_eq!(function_cum(&p, "peak_space", "mem_sites::keep"), 0);
    assert_eq!(function_cum(&p, "inuse_space", "mem_sites::build_up"), 0);
    assert_eq!(
        function_cum(&p, "inuse_space", "mem_sites::keep"),
        16 * MIB + 4 * 24
    );
    // Whatever else was live at the peak (libtest's own) is small and listed with its stacks.
    let index = p.sample_index("peak_space").unwrap();
    let total = p.total(index);
    assert!(
        (64 * MIB..65 * MIB).contains(&total),
        "peak_space total {total}"
    );
    assert!(
        ran.stderr.contains("Peak heap") && ran.stderr.contains("64.0"),
        "the run summary names the peak:
{}",
        ran.stderr
    );

    let (p, _) = mem_run(&fixture, "0", "peak_then_keep");
    let estimate = function_cum(&p, "peak_space", "mem_sites::build_up") as f64;
    assert!(
        (estimate / (64 * MIB) as f64 - 1.0).abs() <= 0.10,
        "peak estimate at the default rate: {estimate} bytes"
    );
}

#[test]
fn default_rate_is_unbiased() {
    let fixture = Fixture::copy("mem_sites");
    for round in 0..5 {
        let (p, truth) = mem_run(&fixture, "0", "split");
        assert_eq!(p.period, 512 * 1024);
        let mut total_est = 0.0;
        let mut total_true = 0.0;
        for site in ["site_fifty", "site_thirty", "site_twenty"] {
            let est = function_cum(&p, "alloc_space", &format!("mem_sites::{site}")) as f64;
            let truth = truth[site] as f64;
            eprintln!("round {round}: {site} estimated {est:.0}, true {truth:.0}");
            assert!(
                (est / truth - 1.0).abs() <= 0.10,
                "round {round}: {site} estimated {est} for {truth}"
            );
            total_est += est;
            total_true += truth;
        }
        assert!(
            (total_est / total_true - 1.0).abs() <= 0.05,
            "round {round}: total estimated {total_est} for {total_true}"
        );
    }
}

/// 8 threads allocate 1M blocks each, half freed by another thread: no crash, no hang, and
/// nothing of the freed sites is left in use; at rate 1 and at the default rate. With the CPU
/// profiler on at the same time, both files come out right.
#[test]
fn stress_across_threads_with_cpu_profile_too() {
    let fixture = Fixture::copy("mem_sites");
    for (rate, rounds) in [("1", "50"), ("0", "50")] {
        let ran = run({
            let mut c = fixture.rprof(&[
                "test",
                "--memprofile",
                "mem.prof",
                "--memprofilerate",
                rate,
                "--cpuprofile",
                "cpu.prof",
                "--",
                "stress_rounds",
                "--nocapture",
            ]);
            c.env("MEM_STRESS_ROUNDS", rounds);
            c
        });
        ran.expect_code(0);
        assert_eq!(ran.truth()["stress_rounds"], rounds.parse::<u64>().unwrap());
        let p = read_profile(&fixture.path("mem.prof"));
        let allocated = function_cum(&p, "alloc_space", "mem_sites::stress_alloc");
        assert!(allocated > 0, "rate {rate}: no allocation recorded");
        assert_eq!(
            function_cum(&p, "inuse_space", "mem_sites::stress_alloc"),
            0,
            "rate {rate}"
        );
        if rate == "1" {
            let n: i64 = rounds.parse::<i64>().unwrap() * 8 * 1_000_000;
            assert_eq!(
                function_cum(&p, "alloc_objects", "mem_sites::stress_alloc"),
                n
            );
        }
        let cpu = read_profile(&fixture.path("cpu.prof"));
        assert_eq!(cpu.str(cpu.sample_type[1].r#type), "cpu");
        assert!(function_cum(&cpu, "cpu", "mem_sites::stress_worker") > 0);
    }
}

#[test]
fn forked_children_do_not_deadlock() {
    let fixture = Fixture::copy("mem_sites");
    let (p, _) = mem_run(&fixture, "1", "forks");
    assert!(p.total(1) > 0);
}

#[test]
fn profiled_alloc_feeds_the_profiler_and_its_absence_is_reported() {
    let fixture = Fixture::copy_with_harness("custom_alloc");
    let ran = run(fixture.rprof(&[
        "test",
        "--features",
        "wrapped",
        "--memprofile",
        "mem.prof",
        "--memprofilerate",
        "1",
    ]));
    ran.expect_code(0);
    let p = read_profile(&fixture.path("mem.prof"));
    assert_eq!(
        function_cum(&p, "alloc_space", "custom_alloc::bump_hot"),
        500 * 4000
    );
    assert!(!ran.stderr.contains("bypasses malloc"), "{}", ran.stderr);

    let ran = run(fixture.rprof(&["test", "--memprofile", "mem.prof", "--memprofilerate", "1"]));
    ran.expect_code(0);
    assert!(ran.stderr.contains("bypasses malloc"), "{}", ran.stderr);
    assert!(ran.stderr.contains("ProfiledAlloc"), "{}", ran.stderr);
    let p = read_profile(&fixture.path("mem.prof"));
    assert_eq!(function_cum(&p, "alloc_space", "custom_alloc::bump_hot"), 0);
}

#[test]
fn bench_binary_at_rate_1() {
    let fixture = Fixture::copy("examples/demo");
    let ran = run(fixture.rprof(&["bench", "--memprofile", "mem.prof", "--memprofilerate", "1"]));
    ran.expect_code(0);
    let p = read_profile(&fixture.path("mem.prof"));
    assert_eq!(p.period, 1);
    assert!(function_cum(&p, "alloc_space", "chains::main") > 0);
}

#[test]
fn criterion_bench_at_rate_1_with_cpu_profile_too() {
    let fixture = Fixture::copy_with_harness("crit");
    let ran = run(fixture.rprof(&[
        "bench",
        "--bench",
        "allocs",
        "--memprofile",
        "mem.prof",
        "--memprofilerate",
        "1",
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
    assert!(ran.stdout.contains("strings"), "{}", ran.stdout);
    let mem = read_profile(&fixture.path("mem.prof"));
    let strings = function_cum(&mem, "alloc_objects", "crit::strings_hot");
    // Each call allocates 1000 strings and the vector holding them.
    assert!(strings >= 1001, "{strings}");
    assert_eq!(
        strings % 1001,
        0,
        "{strings} is not a whole number of calls"
    );
    let cpu = read_profile(&fixture.path("cpu.prof"));
    assert!(function_cum(&cpu, "cpu", "crit::strings_hot") > 0);
}
