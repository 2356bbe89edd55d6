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
    // Let the test spin for a second of CPU (however busy the machine is), then stop the run.
    while cpu_seconds(test_pid) < 1.0 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let spent = cpu_seconds(test_pid);
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
    // The CPU the test had spent when the signal was sent is in the profile (the binary's
    // start-up and libtest's work before the spin are a few percent of it).
    let p = read_profile(&fixture.path("cpu.prof"));
    let spun = function_cum(&p, "cpu", "hostile::spin_here") as f64 / 1e9;
    assert!(
        spun >= 0.85 * spent,
        "{spun:.2} s of spin_here, {spent:.2} s of CPU spent: {stderr}"
    );
}

/// CPU seconds (user + system) process `pid` has used, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, r)| r.split_whitespace().collect());
    // After `(comm)`: state is field 3, utime and stime are fields 14 and 15.
    let ticks: u64 = fields
        .get(11..13)
        .map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    // SAFETY: sysconf has no preconditions.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
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

/// Run `cargo rprof top FILE`; returns (exit code, stderr, peak resident memory in bytes).
fn top_with_peak_memory(file: &std::path::Path) -> (Option<i32>, String, u64) {
    use std::os::unix::process::ExitStatusExt;
    // Reaped below with wait4 (for its resource usage), not with `Child::wait`.
    #[allow(clippy::zombie_processes)]
    let child = std::process::Command::new(cargo_rprof())
        .args(["rprof", "top"])
        .arg(file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.unwrap(), &mut stderr).unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child with valid out-pointers.
    assert_eq!(unsafe { libc::wait4(pid, &mut status, 0, &mut usage) }, pid);
    let code = std::process::ExitStatus::from_raw(status).code();
    (code, stderr, usage.ru_maxrss as u64 * 1024)
}

#[test]
fn a_gzip_bomb_and_a_huge_length_are_refused_in_little_memory() {
    use std::io::Write;
    let dir = std::env::temp_dir().join(format!("rprof-bomb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // 1 MiB of zeros compressed once, the member repeated: 2 MB of gzip, 2 GB of zeros.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![0u8; 1 << 20]).unwrap();
    let member = gz.finish().unwrap();
    let bomb = dir.join("bomb.pb.gz");
    std::fs::write(&bomb, member.repeat((2 << 20) / member.len())).unwrap();
    // A sample field claiming 2^62 bytes.
    let huge = dir.join("huge.pb");
    std::fs::write(
        &huge,
        [0x12, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40],
    )
    .unwrap();
    for (file, expect) in [
        (&bomb, "not a pprof profile"),
        (&huge, "refused: a field of"),
    ] {
        let (code, stderr, peak) = top_with_peak_memory(file);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains(expect), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(peak < 100 << 20, "peak memory {} MB: {stderr}", peak >> 20);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_programs_own_sigprof_is_left_alone() {
    let fixture = Fixture::copy("hostile");
    let test = [
        "--",
        "--exact",
        "tests::own_sigprof_handler_and_timer",
        "--nocapture",
    ];
    // Unprofiled, as the program's author sees it.
    let plain = run({
        let mut c = std::process::Command::new("cargo");
        c.arg("test").args(test).current_dir(fixture.path("."));
        c
    });
    plain.expect_code(0);
    let plain = plain.truth();
    let mut args = vec![
        "test",
        "--cpuprofile",
        "cpu.prof",
        "--cpuprofilerate",
        "1000",
    ];
    args.extend(test);
    let profiled = run(fixture.rprof(&args));
    profiled.expect_code(0);
    let truth = profiled.truth();
    // ITIMER_PROF fires per 10 ms of the process's CPU time, every thread's: compare signals
    // per second of it (the 1 s of spinning is wall time; a busy machine gives it less CPU,
    // and the profiler's own threads add to the process's, so the spinner's alone is no
    // measure: CI saw 99.0 plain against 111.3 profiled by it).
    let rate = |t: &std::collections::HashMap<String, u64>| {
        t["sigprof_count"] as f64 / (t["process_cpu_ns"] as f64 / 1e9)
    };
    let (a, b) = (rate(&plain), rate(&truth));
    eprintln!("SIGPROFs per process CPU second: {a:.1} plain, {b:.1} profiled");
    assert!(
        (b - a).abs() <= 0.10 * a,
        "SIGPROFs per process CPU second: {a:.1} plain, {b:.1} profiled"
    );
    let p = read_profile(&fixture.path("cpu.prof"));
    let spun = function_cum(&p, "cpu", "hostile::spin_here") as f64;
    let cpu = truth["spin_cpu_ns"] as f64;
    assert!(
        (spun - cpu).abs() <= 0.05 * cpu,
        "profile {spun} ns, thread CPU {cpu} ns"
    );

    // A program that resets SIGPROF to its default is not killed by the profiler.
    cpu_run(&fixture, "cpu2.prof", "sigprof_reset_to_default", &[]).expect_code(0);
    let p = read_profile(&fixture.path("cpu2.prof"));
    assert!(function_cum(&p, "cpu", "hostile::spin_here") > 0);
}

/// `cargo rprof test --cpuprofile FILE -- --exact tests::TEST EXTRA...` in `fixture`.
fn cpu_run(fixture: &Fixture, file: &str, test: &str, extra: &[&str]) -> Ran {
    let exact = format!("tests::{test}");
    let mut args = vec!["test", "--cpuprofile", file, "--", "--exact", &exact];
    args.extend(extra);
    run(fixture.rprof(&args))
}

#[test]
fn a_thread_that_blocks_the_profilers_signal_is_named() {
    let fixture = Fixture::copy("hostile");
    let out = cpu_run(
        &fixture,
        "cpu.prof",
        "a_thread_blocks_every_signal",
        &["--nocapture"],
    );
    out.expect_code(0);
    let warning = out
        .stderr
        .lines()
        .find(|l| l.contains("blocks the profiler's signal"))
        .unwrap_or_else(|| panic!("no warning:\n{}", out.stderr));
    assert!(warning.contains("(blocker)"), "{warning}");
    // One prefix: the profile's comment says `rprof:`, the terminal says `warning:`.
    assert!(
        warning.starts_with("warning: thread "),
        "one prefix, then the notice: {warning}"
    );
    let p = read_profile(&fixture.path("cpu.prof"));
    assert!(p
        .comment
        .iter()
        .any(|&c| p.str(c).contains("(blocker) blocks the profiler's signal")));
    // Its timer's periods fell due and were never signalled (the signal stayed pending until
    // the thread ended): the profile says how much CPU time it is short of, from the thread's
    // own CPU clock.
    let blocked_ms = out.truth()["blocked_cpu_ns"] as f64 / 1e6;
    let short_ms = p
        .comment
        .iter()
        .find_map(|&c| {
            let text = p.str(c);
            let rest = text.strip_prefix("rprof: ")?;
            let (ms, what) = rest.split_once(" ms of CPU time ")?;
            what.starts_with("fell due for samples the kernel never signalled")
                .then(|| ms.parse::<f64>().ok())?
        })
        .unwrap_or_else(|| panic!("no unsignalled-time comment: {:?}", p.comment));
    assert!(
        (short_ms - blocked_ms).abs() <= 20.0 + 0.02 * blocked_ms,
        "{short_ms} ms reported unsignalled, the blocked thread used {blocked_ms} ms"
    );
}

#[test]
fn threads_ending_by_pthread_exit_or_cancel_release_their_timers() {
    let fixture = Fixture::copy("hostile");
    let out = cpu_run(
        &fixture,
        "cpu.prof",
        "threads_that_end_the_hard_way",
        &["--nocapture"],
    );
    out.expect_code(0);
    let t = out.truth();
    assert_eq!(
        t["timers_after"], t["timers_before"],
        "timers left behind by 11,000 ended threads"
    );
    let p = read_profile(&fixture.path("cpu.prof"));
    let late = function_cum(&p, "cpu", "hostile::spin_late") as f64;
    let cpu = t["late_cpu_ns"] as f64;
    assert!(
        (late - cpu).abs() <= 0.10 * cpu,
        "profile {late} ns, thread CPU {cpu} ns"
    );
}

#[test]
fn a_crashing_test_keeps_its_profile_and_its_exit_status() {
    let fixture = Fixture::copy("hostile");
    for (test, signal) in [
        ("crash_by_abort", "SIGABRT"),
        ("crash_by_null_read", "SIGSEGV"),
        ("crash_by_sigkill", "SIGKILL"),
    ] {
        let exact = format!("tests::{test}");
        let plain = run({
            let mut c = std::process::Command::new("cargo");
            c.args(["test", "--", "--exact", &exact, "--nocapture"])
                .current_dir(fixture.path("."));
            c
        });
        let file = format!("{test}.prof");
        let profiled = cpu_run(&fixture, &file, test, &["--nocapture"]);
        assert_eq!(
            profiled.code, plain.code,
            "{test}: exit status {:?} under rprof, {:?} plainly:\n{}",
            profiled.code, plain.code, profiled.stderr
        );
        for ran in [&plain, &profiled] {
            assert!(
                ran.stderr.contains(&format!("{signal}:")),
                "{test}: cargo names no {signal}:\n{}",
                ran.stderr
            );
        }
        let warning = profiled
            .stderr
            .lines()
            .find(|l| l.contains("warning") && l.contains("hostile-") && l.contains(signal))
            .unwrap_or_else(|| panic!("{test}: no warning naming {signal}:\n{}", profiled.stderr));
        let p = read_profile(&fixture.path(&file));
        let work = function_cum(&p, "cpu", "hostile::crash_work") as f64;
        let cpu = profiled.truth()["work_cpu_ns"] as f64;
        assert!(
            (work - cpu).abs() <= 0.10 * cpu,
            "{test}: profile {work} ns, thread CPU {cpu} ns ({warning})"
        );
    }
}

#[test]
fn rusts_own_stack_overflow_report_survives_the_crash_handlers() {
    let fixture = Fixture::copy("hostile");
    let exact = "tests::crash_by_stack_overflow";
    let plain = run({
        let mut c = std::process::Command::new("cargo");
        c.args(["test", "--", "--exact", exact])
            .current_dir(fixture.path("."));
        c
    });
    let profiled = cpu_run(&fixture, "cpu.prof", "crash_by_stack_overflow", &[]);
    assert_eq!(profiled.code, plain.code, "{}", profiled.stderr);
    for ran in [&plain, &profiled] {
        assert!(
            ran.stderr.contains("thread 'overflowing'")
                && ran.stderr.contains("has overflowed its stack")
                && ran.stderr.contains("SIGABRT:"),
            "{}",
            ran.stderr
        );
    }
    assert!(
        profiled.stderr.contains("ended by SIGABRT"),
        "{}",
        profiled.stderr
    );
}
