//! The analyzer against `go tool pprof`: every text report (`top`, `traces`, `tree`, `peek`,
//! `diff`), every granularity, filter, base and merge option, on real profiles of the e2e
//! fixtures (CPU, memory, block, mutex, and a CPU profile merged from two test binaries), prints
//! byte for byte what `go tool pprof` prints for the same file and options.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use rprof::{cargo_rprof, go_tool, run, Fixture};

/// The real profiles the cases read, made once per test binary.
struct Profiles {
    /// Keeps the fixture copies (and so the kept binaries) alive.
    _fixtures: Vec<Fixture>,
    files: Vec<(&'static str, PathBuf)>,
}

impl Profiles {
    fn path(&self, name: &str) -> &Path {
        &self.files.iter().find(|(n, _)| *n == name).unwrap().1
    }

    /// `{name}` in an argument becomes that profile's path.
    fn expand(&self, arg: &str) -> String {
        let mut arg = arg.to_owned();
        for (name, path) in &self.files {
            arg = arg.replace(&format!("{{{name}}}"), &path.display().to_string());
        }
        arg
    }
}

fn profiles() -> &'static Profiles {
    static PROFILES: OnceLock<Profiles> = OnceLock::new();
    PROFILES.get_or_init(|| {
        let mut files = Vec::new();
        let cpu = Fixture::shared("cpu_split", "reports");
        // Two runs of one workload at slightly different rates: at 1000 Hz both often sample
        // `hot_three` and `hot_one` exactly alike (the fixture burns exact CPU time), and a diff
        // where every `hot` node cancels leaves pprof nothing to peek; at 997 Hz a sample is
        // 1,003,009 ns, so no count of them equals a count of 1 ms samples.
        for (name, hz) in [("cpu", "1000"), ("cpu2", "997")] {
            let file = format!("{name}.prof");
            run(cpu.rprof(&[
                "test",
                "--cpuprofile",
                &file,
                "--cpuprofilerate",
                hz,
                "--",
                "split_three_to_one",
            ]))
            .expect_code(0);
            files.push((name, cpu.path(&file)));
        }
        let mem = Fixture::shared("mem_sites", "reports");
        run(mem.rprof(&["test", "--memprofile", "mem.prof", "--memprofilerate", "1"]))
            .expect_code(0);
        files.push(("mem", mem.path("mem.prof")));
        let sync = Fixture::shared("sync_waits", "reports");
        run(sync.rprof(&[
            "test",
            "--blockprofile",
            "block.prof",
            "--mutexprofile",
            "mutex.prof",
        ]))
        .expect_code(0);
        files.push(("block", sync.path("block.prof")));
        files.push(("mutex", sync.path("mutex.prof")));
        let multi = Fixture::shared("multi", "reports");
        run(multi.rprof(&[
            "test",
            "--cpuprofile",
            "cpu.prof",
            "--cpuprofilerate",
            "1000",
        ]))
        .expect_code(0);
        files.push(("multi", multi.path("cpu.prof")));
        Profiles {
            _fixtures: vec![cpu, mem, sync, multi],
            files,
        }
    })
}

/// One comparison: `go tool pprof GO...` and `cargo rprof OURS...`, arguments with `{name}`
/// standing for a profile's path.
struct Case {
    go: &'static str,
    ours: &'static str,
}

fn split(args: &str, p: &Profiles) -> Vec<String> {
    args.split_whitespace().map(|a| p.expand(a)).collect()
}

fn go_command(go: &Path, case: &Case, p: &Profiles) -> Command {
    let mut cmd = Command::new(go);
    cmd.args(["tool", "pprof"]).args(split(case.go, p));
    cmd
}

fn go_stdout(go: &Path, case: &Case, p: &Profiles) -> String {
    run(go_command(go, case, p)).stdout
}

/// Run every case; panic listing those whose output differs from go's, with the first
/// differing lines.
fn compare(cases: &[Case]) {
    let p = profiles();
    let Some(go) = go_tool() else { return };
    let mut failures = Vec::new();
    for case in cases {
        let theirs = run(go_command(&go, case, p));
        theirs.expect_code(0);
        let mut theirs = theirs.stdout;
        let ours = run({
            let mut cmd = Command::new(cargo_rprof());
            cmd.arg("rprof").args(split(case.ours, p));
            cmd
        });
        ours.expect_code(0);
        assert!(
            theirs.lines().count() > 3,
            "go printed almost nothing for {}",
            case.go
        );
        // pprof sorts a node's edges by |weight| alone, and takes them from a Go map: in a diff,
        // edges of weights w and -w come out in either order from one run to the next. Such a
        // difference is retried against a few more of go's runs.
        for _ in 0..4 {
            if ours.stdout == theirs || !case.go.contains("base") {
                break;
            }
            theirs = go_stdout(&go, case, p);
        }
        if ours.stdout != theirs {
            let first = theirs
                .lines()
                .zip(ours.stdout.lines())
                .find(|(a, b)| a != b)
                .map(|(a, b)| format!("go:   {a}\nours: {b}"))
                .unwrap_or_else(|| "(one output is a prefix of the other)".into());
            failures.push(format!("`{}` vs `{}`:\n{first}", case.go, case.ours));
        } else {
            eprintln!("same as go: {}", case.ours);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

macro_rules! cases {
    ($($go:literal => $ours:literal),* $(,)?) => {
        &[$(Case { go: $go, ours: $ours }),*]
    };
}

#[test]
fn top_and_traces_at_every_granularity_match_go_pprof() {
    compare(cases![
        "-top {cpu}" => "top {cpu}",
        "-traces {cpu}" => "traces {cpu}",
        "-top -cum -nodecount=5 {cpu}" => "top --cum -n 5 {cpu}",
        "-top -lines {cpu}" => "top --lines {cpu}",
        "-top -files {cpu}" => "top --files {cpu}",
        "-top -filefunctions {cpu}" => "top --filefunctions {cpu}",
        "-top -addresses {cpu}" => "top --addresses {cpu}",
        "-top -unit=s {cpu}" => "top --unit s {cpu}",
        "-top {mem}" => "top {mem}",
        "-top -sample_index=alloc_objects {mem}" => "top --sample_index alloc_objects {mem}",
        "-top -sample_index=inuse_space -lines {mem}" => "top --sample-index inuse_space --lines {mem}",
        "-top -unit=kB {mem}" => "top --unit kB {mem}",
        "-traces {mem}" => "traces {mem}",
        "-top {block}" => "top {block}",
        "-top -addresses {block}" => "top --addresses {block}",
        "-top {mutex}" => "top {mutex}",
        "-top -files {mutex}" => "top --files {mutex}",
        "-top {multi}" => "top {multi}",
        "-top -addresses {multi}" => "top --addresses {multi}",
        "-traces {multi}" => "traces {multi}",
        "-traces -lines {cpu}" => "traces --lines {cpu}",
        "-traces -addresses -focus=burn {multi}" => "traces --addresses --focus burn {multi}",
        "-traces -files {mem}" => "traces --files {mem}",
        "-traces -unit=MB {mem}" => "traces --unit MB {mem}",
        "-tree -unit=us {block}" => "tree --unit us {block}",
    ]);
}

#[test]
fn filters_match_go_pprof() {
    compare(cases![
        "-top -focus=hot_three {cpu}" => "top --focus hot_three {cpu}",
        "-traces -focus=hot_three {cpu}" => "traces --focus hot_three {cpu}",
        "-top -ignore=hot_one {cpu}" => "top --ignore hot_one {cpu}",
        "-traces -ignore=hot_one {cpu}" => "traces --ignore hot_one {cpu}",
        "-top -hide=spin|catch_unwind {cpu}" => "top --hide spin|catch_unwind {cpu}",
        "-traces -hide=spin|catch_unwind {cpu}" => "traces --hide spin|catch_unwind {cpu}",
        "-top -show=cpu_split|test:: {cpu}" => "top --show cpu_split|test:: {cpu}",
        "-traces -show=cpu_split|test:: {cpu}" => "traces --show cpu_split|test:: {cpu}",
        "-top -show_from=cpu_split::split {cpu}" => "top --show-from cpu_split::split {cpu}",
        "-traces -show_from=cpu_split::split {cpu}" => "traces --show_from cpu_split::split {cpu}",
        "-top -prune_from=hot {cpu}" => "top --prune_from hot {cpu}",
        "-traces -prune_from=hot {cpu}" => "traces --prune-from hot {cpu}",
        "-top -focus=cpu_split -hide=std:: -ignore=hot_one {cpu}" => "top --focus cpu_split --hide std:: --ignore hot_one {cpu}",
        "-top -focus=no_such_function {cpu}" => "top --focus no_such_function {cpu}",
        "-tree -focus=hot_three {cpu}" => "tree --focus hot_three {cpu}",
        "-peek=hot -ignore=hot_one {cpu}" => "peek hot --ignore hot_one {cpu}",
        "-top -focus=mem_sites {mem}" => "top --focus mem_sites {mem}",
        "-top -lines -focus=mem_sites {mem}" => "top --lines --focus mem_sites {mem}",
        "-top -hide=std:: {block}" => "top --hide std:: {block}",
        "-top -tagfocus=bytes=1kB:64kB {mem}" => "top --tagfocus bytes=1kB:64kB {mem}",
        "-top -tagignore=bytes=:2kB {mem}" => "top --tagignore bytes=:2kB {mem}",
        "-top -tagfocus=4MB: {mem}" => "top --tagfocus 4MB: {mem}",
        "-traces -tagfocus=1kb:4mb {mem}" => "traces --tagfocus 1kb:4mb {mem}",
    ]);
}

#[test]
fn tree_and_peek_match_go_pprof() {
    compare(cases![
        "-tree {cpu}" => "tree {cpu}",
        "-tree -nodecount=5 {cpu}" => "tree -n 5 {cpu}",
        "-tree -cum {cpu}" => "tree --cum {cpu}",
        "-tree -lines {cpu}" => "tree --lines {cpu}",
        "-peek=split {cpu}" => "peek split {cpu}",
        "-peek=hot {cpu}" => "peek hot {cpu}",
        "-tree {mem}" => "tree {mem}",
        "-peek=alloc {mem}" => "peek alloc {mem}",
        "-peek=mem_sites -sample_index=inuse_space {mem}" => "peek mem_sites --sample_index inuse_space {mem}",
        "-tree {block}" => "tree {block}",
        "-peek=Mutex|lock {mutex}" => "peek Mutex|lock {mutex}",
        "-tree {multi}" => "tree {multi}",
        "-peek=burn {multi}" => "peek burn {multi}",
    ]);
}

#[test]
fn merged_inputs_and_bases_match_go_pprof() {
    compare(cases![
        "-top {cpu} {cpu2}" => "top {cpu} {cpu2}",
        "-traces {cpu} {cpu2}" => "traces {cpu} {cpu2}",
        "-top {cpu} {multi}" => "top {cpu} {multi}",
        "-tree {cpu} {multi}" => "tree {cpu} {multi}",
        "-top -base={cpu2} {cpu}" => "top --base {cpu2} {cpu}",
        "-traces -base={cpu2} {cpu}" => "traces --base {cpu2} {cpu}",
        "-top -diff_base={cpu2} {cpu}" => "top --diff_base {cpu2} {cpu}",
        "-top -diff_base={cpu2} {cpu}" => "diff {cpu2} {cpu}",
        "-top -cum -diff_base={cpu2} {cpu}" => "diff --cum {cpu2} {cpu}",
        "-tree -diff_base={cpu2} {cpu}" => "tree --diff-base {cpu2} {cpu}",
        "-peek=hot -diff_base={cpu2} {cpu}" => "peek hot --diff-base {cpu2} {cpu}",
        "-traces -diff_base={cpu2} {cpu}" => "traces --diff-base {cpu2} {cpu}",
        "-top -lines -diff_base={cpu2} {cpu}" => "diff --lines {cpu2} {cpu}",
    ]);
}

#[test]
fn bad_report_input_is_a_one_line_error() {
    let p = profiles();
    let rprof = |args: &[&str]| {
        run({
            let mut cmd = Command::new(cargo_rprof());
            cmd.arg("rprof").args(args);
            cmd
        })
    };
    let bad_filter = rprof(&["top", "--show-from", "(", "/no/such/file.prof"]);
    assert_eq!(bad_filter.code, Some(2));
    assert_eq!(
        bad_filter.stderr.trim(),
        r#"error: bad --show-from regular expression "(": unclosed group"#
    );
    let cpu = p.path("cpu").to_str().unwrap();
    let mem = p.path("mem").to_str().unwrap();
    for (args, message) in [
        (
            vec!["peek", "no_such_function", cpu],
            "error: no matches found for regexp: no_such_function",
        ),
        (
            vec!["top", cpu, mem],
            "incompatible profiles: sample types [samples/count cpu/nanoseconds] and [alloc_objects/count alloc_space/bytes inuse_objects/count inuse_space/bytes peak_objects/count peak_space/bytes]",
        ),
        (vec!["diff", mem, cpu], "incompatible profiles"),
        (vec!["top", "--lines", "--files", cpu], "cannot be used with"),
        (vec!["top", "--base", cpu, "--diff-base", cpu, cpu], "cannot be used with"),
    ] {
        let ran = rprof(&args);
        assert_ne!(ran.code, Some(0), "{args:?}");
        assert_eq!(ran.stderr.trim().lines().count(), 1, "{args:?}: {}", ran.stderr);
        assert!(ran.stderr.contains(message), "{args:?}: {}", ran.stderr);
        assert!(ran.stdout.is_empty(), "{args:?}");
    }
}
