//! Nothing lost, nothing disturbed: concurrent runs, hostile programs, bad outputs.

use rprof::*;

/// Bytes `alloc_<k>` of the concurrent_runs fixture allocates: 100 vectors of 1000..1100 bytes.
const ALLOC_BYTES: i64 = 100 * 1000 + 99 * 100 / 2;

#[test]
fn concurrent_runs_in_one_target_dir_each_keep_their_own_profile() {
    let fixture = Fixture::copy("concurrent_runs");
    // Build once, so that the concurrent runs race on sessions, not on cargo's build lock.
    run(fixture.rprof(&[
        "test",
        "--memprofile",
        "warm.prof",
        "--memprofilerate",
        "1",
        "--",
        "--exact",
        "tests::t1",
    ]))
    .expect_code(0);
    for round in 0..10 {
        // Eight runs at once, t0 the long one (4 s): each prunes sessions as it starts.
        let children: Vec<_> = (0..8)
            .map(|k| {
                let mut cmd = fixture.rprof(&[
                    "test",
                    "--memprofile",
                    &format!("m{k}.prof"),
                    "--memprofilerate",
                    "1",
                    "--",
                    "--exact",
                    &format!("tests::t{k}"),
                ]);
                cmd.stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
                cmd.spawn().expect("cannot start cargo rprof")
            })
            .collect();
        for (k, child) in children.into_iter().enumerate() {
            let out = child.wait_with_output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(0),
                "round {round}, run {k}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let p = read_profile(&fixture.path(&format!("m{k}.prof")));
            for j in 0..8 {
                let bytes = function_cum(&p, "alloc_space", &format!("concurrent_runs::alloc_{j}"));
                let want = if j == k { ALLOC_BYTES } else { 0 };
                assert_eq!(bytes, want, "round {round}: run {k}'s profile, alloc_{j}");
            }
        }
    }
}

/// The pid in `file` once the test has written it (bounded wait).
fn wait_for_pid(file: &std::path::Path) -> i32 {
    for _ in 0..6000 {
        if let Some(pid) = std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return pid;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the test never started");
}

fn alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
}

#[test]
fn sigterm_to_cargo_rprof_alone_stops_the_run_and_keeps_the_profile() {
    use std::os::unix::process::ExitStatusExt;
    let fixture = Fixture::copy("hostile");
    let pid_file = fixture.path("test.pid");
    let mut cmd = fixture.rprof(&[
        "test",
        "--cpuprofile",
        "cpu.prof",
        "--",
        "--exact",
        "tests::spin_until_stopped",
    ]);
    cmd.env("HOSTILE_PID_FILE", &pid_file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let test_pid = wait_for_pid(&pid_file);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let sent = std::time::Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let took = sent.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGTERM), "{stderr}");
    assert!(took.as_secs_f64() < 2.0, "took {took:?}: {stderr}");
    assert!(
        !alive(test_pid),
        "the test binary {test_pid} outlived the run"
    );
    // The 2 s of spinning before the signal are in the profile (100 Hz: about 200 samples).
    let p = read_profile(&fixture.path("cpu.prof"));
    let spun = function_cum(&p, "cpu", "hostile::spin_here");
    assert!(spun >= 1_500_000_000, "{spun} ns of spin_here: {stderr}");
}

#[test]
fn bad_outputs_are_refused_before_anything_runs() {
    let fixture = Fixture::copy("hostile");
    std::fs::create_dir(fixture.path("adir")).unwrap();
    for (flag, path, expect) in [
        ("--cpuprofile", "adir", "cannot write the cpu profile to adir: it is a directory"),
        ("--memprofile", "/proc/rprof-no.prof", "cannot write the memory profile to /proc/rprof-no.prof: its directory refuses new files"),
        ("--blockprofile", "nowhere/b.prof", "directory nowhere does not exist"),
    ] {
        let out = run(fixture.rprof(&["test", flag, path]));
        assert_eq!(out.code, Some(1), "{flag} {path}: {}", out.stderr);
        assert!(out.stderr.contains(expect), "{flag} {path}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
        assert!(!out.stderr.contains("Compiling"), "{}", out.stderr);
    }
    // --no-run builds, profiles nothing, and says so.
    let built = run(fixture.rprof(&["test", "--cpuprofile", "cpu.prof", "--no-run"]));
    built.expect_code(0);
    assert!(
        built.stderr.contains("nothing was profiled"),
        "{}",
        built.stderr
    );
    assert!(!fixture.path("cpu.prof").exists());
}

#[test]
fn a_flame_graph_replaces_a_symlink_instead_of_writing_through_it() {
    let dir = std::env::temp_dir().join(format!("rprof-symlink-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let profile = dir.join("p.prof");
    let mut b = rprof_core::builder::ProfileBuilder::new(
        &[("samples", "count")],
        ("cpu", "nanoseconds"),
        1,
    );
    let f = b.function("f", "f", "", 0);
    let l = b.location(0, 0x10, &[(f, 0)]);
    b.add_sample(&[l], &[3]);
    rprof_core::codec::write_file(&profile, &b.build()).unwrap();
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, "keep me").unwrap();
    let link = dir.join("out.svg");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    run({
        let mut c = std::process::Command::new(cargo_rprof());
        c.args(["rprof", "flamegraph"])
            .arg(&profile)
            .arg("-o")
            .arg(&link);
        c
    })
    .expect_code(0);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    assert!(!std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::read_to_string(&link).unwrap().contains("<svg"));
    let _ = std::fs::remove_dir_all(&dir);
}
