//! End-to-end tests of `cargo rprof test --cpuprofile`: fixture crates with a known CPU truth are
//! profiled, and the decoded profile is compared with what the fixtures measured themselves.

use std::path::Path;
use std::process::Command;

use rprof::{cargo_rprof, cum_of, function_values, go_tool, read_profile, run, Fixture};

/// Fraction of the split's CPU that the profile gives `hot_three`, and what the fixture measured.
///
/// Tolerance: the timer fires every period of CPU time with a random phase, so each of the 20
/// runs of a hot function (300 or 100 ms of CPU) is counted within one sample of its length:
/// the count error has a standard deviation of at most sqrt(20)/2 = 2.2 samples of 400 at 100 Hz
/// (0.6 points; at 1000 Hz the kernel's 4 ms tick gives the same bound). ±4 points is over
/// 6 standard deviations.
fn split_at(hz: &str) -> Fixture {
    let fixture = Fixture::copy("cpu_split");
    let ran = run(fixture.rprof(&[
        "test",
        "--cpuprofile",
        "cpu.prof",
        "--cpuprofilerate",
        hz,
        "--",
        "split_three_to_one",
        "--nocapture",
    ]));
    ran.expect_code(0);
    let truth = ran.truth();
    let (three, one) = (truth["hot_three"] as f64, truth["hot_one"] as f64);
    let measured = three / (three + one);
    let profile = read_profile(&fixture.path("cpu.prof"));
    let values = function_values(&profile, "cpu");
    let (p3, p1) = (
        cum_of(&values, "cpu_split::hot_three") as f64,
        cum_of(&values, "cpu_split::hot_one") as f64,
    );
    let reported = p3 / (p3 + p1);
    eprintln!(
        "{hz} Hz: measured {measured:.4}, reported {reported:.4}, samples {}",
        (p3 + p1) / 1e7
    );
    assert!(
        (measured - 0.75).abs() < 0.01,
        "the fixture itself is off: {measured}"
    );
    assert!(
        (reported - 0.75).abs() <= 0.04,
        "{hz} Hz: hot_three has {:.1}% of the split, want 75 ± 4",
        reported * 100.0
    );
    fixture
}

#[test]
fn split_three_to_one_at_100_hz() {
    let fixture = split_at("100");
    same_report_as_go_pprof(&fixture.path("cpu.prof"));
}

/// The `flat` and name columns of a `-top` table.
fn top_rows(text: &str) -> Vec<(String, String)> {
    text.lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .skip(1)
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            (words[0].to_owned(), words[5..].join(" "))
        })
        .collect()
}

/// `go tool pprof` reads our file without the binary and shows what `cargo rprof top` shows;
/// `-raw` shows names with file and line, and inlined frames as lines of one location.
fn same_report_as_go_pprof(file: &Path) {
    let Some(go) = go_tool() else { return };
    let theirs = run({
        let mut cmd = Command::new(&go);
        cmd.args(["tool", "pprof", "-top"]).arg(file);
        cmd
    });
    theirs.expect_code(0);
    let ours = run({
        let mut cmd = Command::new(cargo_rprof());
        cmd.args(["rprof", "top"]).arg(file);
        cmd
    });
    ours.expect_code(0);
    let (theirs, ours) = (top_rows(&theirs.stdout), top_rows(&ours.stdout));
    assert!(ours.len() >= 3, "{ours:?}");
    assert_eq!(theirs, ours);

    let raw = run({
        let mut cmd = Command::new(&go);
        cmd.args(["tool", "pprof", "-raw"]).arg(file);
        cmd
    });
    raw.expect_code(0);
    let lines: Vec<&str> = raw.stdout.lines().collect();
    // `spin` is inlined into `hot_three`: one location, two lines, innermost first.
    let inlined = lines.windows(2).any(|w| {
        w[0].contains("cpu_split::spin ")
            && w[0].contains("src/lib.rs:")
            && !w[1].trim_start().starts_with(char::is_numeric)
            && w[1].contains("cpu_split::hot_three ")
            && w[1].contains("src/lib.rs:")
    });
    assert!(inlined, "no inlined location in\n{}", raw.stdout);
}

#[test]
fn split_three_to_one_at_1000_hz() {
    split_at("1000");
}

/// Two threads busy for 1.5 s of CPU each: the profile's total CPU is the process's.
///
/// Tolerance: each thread's count is within one period of its CPU time (per-thread timers,
/// random phase), so the error is at most a few periods of 3 s: well under 1%; ±7% holds with a
/// wide margin for threads too short-lived to be sampled.
fn total_at(hz: &str) {
    let fixture = Fixture::copy("cpu_split");
    let ran = run(fixture.rprof(&[
        "test",
        "--cpuprofile",
        "cpu.prof",
        "--cpuprofilerate",
        hz,
        "--",
        "two_busy_threads",
        "--nocapture",
        "--test-threads=1",
    ]));
    ran.expect_code(0);
    let process = ran.truth()["process_cpu"] as f64;
    let profile = read_profile(&fixture.path("cpu.prof"));
    let total = profile.total(profile.sample_index("cpu").unwrap()) as f64;
    eprintln!("{hz} Hz: process {process:.0} ns, profile {total:.0} ns");
    assert!(
        (total / process - 1.0).abs() <= 0.07,
        "{hz} Hz: profile total {total} ns vs process CPU {process} ns"
    );
    let busy = cum_of(
        &function_values(&profile, "cpu"),
        "cpu_split::busy_thread_work",
    ) as f64;
    assert!(
        busy >= 0.9 * total,
        "busy_thread_work has only {busy} of {total}"
    );
    // Go's cpu profile layout.
    let names: Vec<(String, String)> = profile
        .sample_type
        .iter()
        .map(|vt| profile.value_type_name(vt))
        .collect();
    assert_eq!(
        names,
        [
            ("samples".to_owned(), "count".to_owned()),
            ("cpu".to_owned(), "nanoseconds".to_owned())
        ]
    );
    let period = 1_000_000_000 / hz.parse::<i64>().unwrap();
    assert_eq!(profile.period, period);
    assert!(profile.duration_nanos > 0);
}

#[test]
fn total_cpu_of_two_threads_at_100_hz() {
    total_at("100");
}

#[test]
fn total_cpu_of_two_threads_at_1000_hz() {
    total_at("1000");
}
