//! pprof's filters (`--focus`, `--ignore`, `--hide`, `--show`, `--show-from`) on a real profile:
//! `cargo rprof top` and `traces` print exactly what `go tool pprof -top`/`-traces` print with
//! the same filters.

use std::path::Path;
use std::process::Command;

use rprof::{cargo_rprof, go_tool, run, Fixture};

/// pprof's spelling of each filter case (`-focus=X`) and ours (`--focus X`).
const CASES: &[&[(&str, &str)]] = &[
    &[("focus", "hot_three")],
    &[("ignore", "hot_one")],
    &[("hide", "spin|catch_unwind")],
    &[("show", "cpu_split|test::")],
    &[("show_from", "cpu_split::split")],
    &[
        ("focus", "cpu_split"),
        ("hide", "std::"),
        ("ignore", "hot_one"),
    ],
    &[("focus", "no_such_function")],
];

fn go_report(go: &Path, report: &str, case: &[(&str, &str)], file: &Path) -> String {
    let mut cmd = Command::new(go);
    cmd.args(["tool", "pprof", report]);
    for (name, re) in case {
        cmd.arg(format!("-{name}={re}"));
    }
    let ran = run({
        cmd.arg(file);
        cmd
    });
    ran.expect_code(0);
    ran.stdout
}

fn our_report(report: &str, case: &[(&str, &str)], file: &Path) -> String {
    let mut cmd = Command::new(cargo_rprof());
    cmd.args(["rprof", report]);
    for (name, re) in case {
        cmd.arg(format!("--{}", name.replace('_', "-"))).arg(re);
    }
    let ran = run({
        cmd.arg(file);
        cmd
    });
    ran.expect_code(0);
    if case.iter().any(|(_, re)| *re == "no_such_function") {
        assert!(
            ran.stderr
                .contains("the focus expression matched no samples"),
            "{}",
            ran.stderr
        );
    }
    ran.stdout
}

#[test]
fn filtered_reports_match_go_pprof() {
    let fixture = Fixture::copy("cpu_split");
    run(fixture.rprof(&[
        "test",
        "--cpuprofile",
        "cpu.prof",
        "--cpuprofilerate",
        "1000",
        "--",
        "split_three_to_one",
    ]))
    .expect_code(0);
    let file = fixture.path("cpu.prof");
    let Some(go) = go_tool() else { return };
    for case in CASES {
        for (go_flag, ours) in [("-top", "top"), ("-traces", "traces")] {
            let theirs = go_report(&go, go_flag, case, &file);
            let mine = our_report(ours, case, &file);
            assert_eq!(mine, theirs, "{ours} with {case:?}");
        }
        eprintln!("{case:?}: top and traces as go tool pprof prints them");
    }
}

#[test]
fn a_bad_filter_is_a_one_line_error_before_reading() {
    let ran = run({
        let mut cmd = Command::new(cargo_rprof());
        cmd.args(["rprof", "top", "--show-from", "(", "/no/such/file.prof"]);
        cmd
    });
    assert_eq!(ran.code, Some(2));
    assert_eq!(
        ran.stderr.trim(),
        r#"error: bad --show-from regular expression "(": unclosed group"#
    );
}
