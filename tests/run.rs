//! `cargo rprof run`: a program of known cost (`tests/fixtures/run_split`, example `split`) is
//! profiled as accurately as a test, its exit status is kept, and SIGTERM or SIGINT in the
//! middle of its run still leave complete profiles and end `cargo rprof` by the same signal.

use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Stdio;

use rprof::{function_cum, read_profile, run, Fixture};

/// One run at a time: the CPU split is measured, and concurrent runs steal each other's CPU.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_program_is_profiled_like_a_test_and_keeps_its_exit_status() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let fixture = Fixture::copy("run_split");
    let ran = run(fixture.rprof(&[
        "run",
        "--example",
        "split",
        "--cpuprofile",
        "cpu.prof",
        "--cpuprofilerate",
        "1000",
        "--memprofile",
        "mem.prof",
        "--memprofilerate",
        "1",
        "--",
        "split",
    ]));
    // The program ends with exit(3): that is cargo rprof's status, and exit wrote the profiles.
    ran.expect_code(3);
    let truth = ran.truth();
    let cpu = read_profile(&fixture.path("cpu.prof"));
    let hot = ["hot_two", "hot_three", "hot_five"];
    let measured: Vec<f64> = hot.iter().map(|h| truth[*h] as f64).collect();
    let sampled: Vec<f64> = hot
        .iter()
        .map(|h| function_cum(&cpu, "cpu", &format!("split::{h}")) as f64)
        .collect();
    let (m_total, s_total): (f64, f64) = (measured.iter().sum(), sampled.iter().sum());
    for (i, h) in hot.iter().enumerate() {
        let (m, s) = (measured[i] / m_total * 100.0, sampled[i] / s_total * 100.0);
        assert!(
            (m - s).abs() <= 4.0,
            "{h}: {s:.1}% of the sampled CPU, {m:.1}% measured (±4 points)\n{}",
            ran.stderr
        );
    }
    assert!(
        s_total >= 0.8 * m_total,
        "sampled {s_total} ns of {m_total} ns measured"
    );
    // Every allocation of alloc_sites, exactly.
    let mem = read_profile(&fixture.path("mem.prof"));
    assert_eq!(
        function_cum(&mem, "alloc_objects", "split::alloc_sites"),
        1001
    );
    assert_eq!(
        function_cum(&mem, "alloc_space", "split::alloc_sites"),
        72_000
    );
}

/// Start `cargo rprof run ... -- forever` in a process group of its own, wait for the program
/// to say it runs, send `signal` (to cargo rprof alone, or to the whole group as a terminal's
/// Ctrl-C does), and return the status and what was written.
fn interrupted(fixture: &Fixture, signal: i32, to_group: bool) -> std::process::ExitStatus {
    let mut cmd = fixture.rprof(&[
        "run",
        "--example",
        "split",
        "--cpuprofile",
        "cpu.prof",
        "--memprofile",
        "mem.prof",
        "--memprofilerate",
        "1",
        "--",
        "forever",
    ]);
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().map(|l| l.unwrap());
    assert_eq!(first.as_deref(), Some("READY"), "the program did not start");
    // Let it burn for a while, so the profile has something to show.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let pid = child.id() as i32;
    // SAFETY: sending a signal to our own child (or its process group).
    unsafe { libc::kill(if to_group { -pid } else { pid }, signal) };
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(
        status.signal(),
        Some(signal),
        "cargo rprof did not end by the signal: {status:?}\n{stderr}"
    );
    assert!(
        stderr.contains("Profiled cpu.prof") && stderr.contains("Profiled mem.prof"),
        "no summary of the profiles:\n{stderr}"
    );
    status
}

#[test]
fn sigterm_to_cargo_rprof_and_sigint_to_the_group_leave_complete_profiles() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let fixture = Fixture::copy("run_split");
    for (signal, to_group) in [(libc::SIGTERM, false), (libc::SIGINT, true)] {
        let _ = std::fs::remove_file(fixture.path("cpu.prof"));
        let _ = std::fs::remove_file(fixture.path("mem.prof"));
        interrupted(&fixture, signal, to_group);
        let cpu = read_profile(&fixture.path("cpu.prof"));
        let spinning = function_cum(&cpu, "cpu", "split::spin_until_signalled");
        // 0.5 s of spinning at 100 Hz: dozens of samples (some may be lost on a busy machine).
        assert!(
            spinning >= 100_000_000,
            "signal {signal}: {spinning} ns sampled in spin_until_signalled"
        );
        // The memory profile is complete: it holds what the program allocated at start
        // (stdout's buffer, at least), readable.
        let mem = read_profile(&fixture.path("mem.prof"));
        let objects = mem.sample_index("alloc_objects").unwrap();
        assert!(
            mem.total(objects) > 0,
            "signal {signal}: empty memory profile"
        );
    }
}
