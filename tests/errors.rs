//! Bad input gets one line on stderr and a non-zero exit, never a panic.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use rprof::{cargo_rprof, run, Fixture, Ran};

fn assert_one_line_error(ran: &Ran, code: i32, mentions: &str) {
    assert_eq!(ran.code, Some(code), "stderr: {}", ran.stderr);
    let lines: Vec<&str> = ran.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "want one line, got:\n{}", ran.stderr);
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    assert!(
        lines[0].contains(mentions),
        "{} lacks {mentions:?}",
        lines[0]
    );
    assert!(!ran.stderr.contains("panicked"));
}

fn top(file: &Path) -> Ran {
    run({
        let mut cmd = Command::new(cargo_rprof());
        cmd.args(["rprof", "top"]).arg(file);
        cmd
    })
}

fn scratch(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rprof-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[test]
fn top_refuses_files_that_are_not_profiles() {
    let empty = scratch("empty.prof", b"");
    assert_one_line_error(&top(&empty), 1, "empty");

    let text = scratch(
        "text.prof",
        b"Showing nodes accounting for 10s, 100% of 10s total\n",
    );
    assert_one_line_error(&top(&text), 1, "text.prof");

    // A real profile, gzip, cut in half.
    let mut b = rprof::ProfileBuilder::new(&[("samples", "count")], ("cpu", "nanoseconds"), 1);
    let f = b.function("f", "f", "f.rs", 1);
    let l = b.location(0, 0x10, &[(f, 1)]);
    for i in 0..200u64 {
        let extra = b.location(0, 0x1000 + i, &[]);
        b.add_sample(&[l, extra], &[i as i64]);
    }
    let whole = rprof::codec::encode(&b.build());
    let truncated = scratch("truncated.prof", &whole[..whole.len() / 2]);
    assert_one_line_error(&top(&truncated), 1, "gzip");

    // A protobuf message of another shape (field 1 a varint), gzip'd.
    let other = scratch("other.prof", &gzip(&[0x08, 0x96, 0x01]));
    assert_one_line_error(&top(&other), 1, "not a pprof profile");
    // A protobuf that decodes as a Profile (field 9, time_nanos) but holds none.
    let hollow = scratch("hollow.prof", &gzip(&[0x48, 0x96, 0x01]));
    assert_one_line_error(&top(&hollow), 1, "not a valid pprof profile");

    let missing = std::env::temp_dir().join("rprof-no-such-file.prof");
    assert_one_line_error(&top(&missing), 1, "No such file");
}

#[test]
fn bad_flag_values_are_refused_before_building() {
    for bad in ["0", "-5", "abc"] {
        let ran = run({
            let mut cmd = Command::new(cargo_rprof());
            cmd.args([
                "rprof",
                "test",
                "--cpuprofile",
                "cpu.prof",
                "--cpuprofilerate",
                bad,
            ]);
            cmd
        });
        assert_one_line_error(&ran, 2, "--cpuprofilerate");
    }
    let ran = run({
        let mut cmd = Command::new(cargo_rprof());
        cmd.args(["rprof", "test", "--cpuprofile", "/no/such/dir/cpu.prof"]);
        cmd
    });
    assert_one_line_error(&ran, 1, "/no/such/dir does not exist");
    let ran = run({
        let mut cmd = Command::new(cargo_rprof());
        cmd.args(["rprof", "test"]);
        cmd
    });
    assert_one_line_error(&ran, 2, "no profile requested");
}

#[test]
fn a_crate_that_does_not_build_exits_like_cargo() {
    let fixture = Fixture::copy("examples/demo");
    std::fs::write(fixture.path("src/lib.rs"), "pub fn broken( {").unwrap();
    let ran = run(fixture.rprof(&["test", "--cpuprofile", "cpu.prof"]));
    assert_eq!(ran.code, Some(101), "{}", ran.stderr);
    assert!(ran.stderr.contains("could not compile"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("no cpu profile written"),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("panicked"));
    assert!(!fixture.path("cpu.prof").exists());
}

#[test]
fn no_manifest_is_a_one_line_error() {
    let dir = std::env::temp_dir().join(format!("rprof-nocrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ran = run({
        let mut cmd = Command::new(cargo_rprof());
        cmd.current_dir(&dir)
            .args(["rprof", "test", "--cpuprofile", "cpu.prof"]);
        cmd
    });
    assert_one_line_error(&ran, 1, "Cargo.toml");
}
