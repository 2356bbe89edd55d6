//! End-to-end tests of `--blockprofile` and `--mutexprofile`: fixture threads time their own
//! waits with `Instant`, and the profiles are compared with that.

use std::collections::HashMap;
use std::process::Command;

use rprof::{cargo_rprof, cum_of, function_values, go_tool, read_profile, run, Fixture, Profile};

struct SyncRun {
    block: Profile,
    mutex: Profile,
    truth: HashMap<String, u64>,
}

fn sync_run(fixture: &Fixture, extra: &[&str], filter: &str) -> SyncRun {
    let mut args = vec![
        "test",
        "--blockprofile",
        "block.prof",
        "--mutexprofile",
        "mutex.prof",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", filter, "--nocapture"]);
    let ran = run(fixture.rprof(&args));
    ran.expect_code(0);
    SyncRun {
        block: read_profile(&fixture.path("block.prof")),
        mutex: read_profile(&fixture.path("mutex.prof")),
        truth: ran.truth(),
    }
}

fn delay(p: &Profile, function: &str) -> f64 {
    cum_of(&function_values(p, "delay"), function) as f64
}

fn contentions(p: &Profile, function: &str) -> f64 {
    cum_of(&function_values(p, "contentions"), function) as f64
}

fn within(got: f64, want: f64, tolerance: f64, what: &str) {
    eprintln!("{what}: got {got:.0}, want {want:.0}");
    assert!(
        (got / want - 1.0).abs() <= tolerance,
        "{what}: got {got}, want {want} ± {}%",
        tolerance * 100.0
    );
}

/// 4 threads contend on one Mutex held ~50 ms, 10 rounds: the block profile's delay and
/// contentions under the locking function match what the threads measured (±10%), and the
/// mutex profile charges the same delay to the function that released the lock (±15%), which
/// is the leaf of its stacks.
#[test]
fn contended_mutex() {
    let fixture = Fixture::copy("sync_waits");
    let r = sync_run(&fixture, &[], "mutex_contention");
    let waited = r.truth["lock_wait_ns"] as f64;
    within(
        delay(&r.block, "sync_waits::lock_and_hold"),
        waited,
        0.10,
        "block delay",
    );
    within(
        contentions(&r.block, "sync_waits::lock_and_hold"),
        r.truth["lock_waits"] as f64,
        0.10,
        "block contentions",
    );
    within(
        delay(&r.mutex, "sync_waits::release"),
        waited,
        0.15,
        "mutex delay",
    );
    let values = function_values(&r.mutex, "delay");
    let release_flat = values
        .iter()
        .find(|(n, _)| n.ends_with("sync_waits::release"))
        .map_or(0, |(_, v)| v.0);
    assert_eq!(release_flat, cum_of(&values, "sync_waits::release"));
    // Go's layout.
    for p in [&r.block, &r.mutex] {
        let types: Vec<String> = p
            .sample_type
            .iter()
            .map(|vt| format!("{}/{}", p.str(vt.r#type), p.str(vt.unit)))
            .collect();
        assert_eq!(types, ["contentions/count", "delay/nanoseconds"]);
    }
    same_tops_as_go_pprof(&fixture.path("block.prof"));
    same_tops_as_go_pprof(&fixture.path("mutex.prof"));
}

/// `go tool pprof -top` reads the file and agrees with `cargo rprof top`.
fn same_tops_as_go_pprof(file: &std::path::Path) {
    let Some(go) = go_tool() else { return };
    let theirs = run({
        let mut c = Command::new(&go);
        c.args(["tool", "pprof", "-top"]).arg(file);
        c
    });
    theirs.expect_code(0);
    let ours = run({
        let mut c = Command::new(cargo_rprof());
        c.args(["rprof", "top"]).arg(file);
        c
    });
    ours.expect_code(0);
    let table = |s: &str| -> Vec<String> {
        s.lines()
            .skip_while(|l| !l.trim_start().starts_with("flat"))
            .map(str::to_owned)
            .collect()
    };
    assert!(table(&ours.stdout).len() > 1, "{}", ours.stdout);
    assert_eq!(table(&theirs.stdout), table(&ours.stdout));
}

/// A receiver blocked on `recv` and a `Condvar::wait`, each for a known time; a 1 s sleep
/// contributes nothing.
#[test]
fn channel_condvar_and_sleep() {
    let fixture = Fixture::copy("sync_waits");
    let r = sync_run(&fixture, &[], "recv_condvar_and_sleep");
    within(
        delay(&r.block, "sync_waits::wait_on_recv"),
        r.truth["recv_ns"] as f64,
        0.10,
        "recv",
    );
    within(
        delay(&r.block, "sync_waits::wait_on_condvar"),
        r.truth["condvar_ns"] as f64,
        0.10,
        "condvar",
    );
    assert_eq!(delay(&r.block, "sync_waits::sleeper"), 0.0);
}

/// With `--blockprofilerate 10000000` (10 ms), 4000 waits of about 1 ms are each kept with
/// probability d/10 ms and scaled up: the estimated total is within ±20% of the measured one.
///
/// Tolerance: about 400 events are kept (binomial, p = 0.1), a relative standard deviation of
/// sqrt(0.9 / 400) = 4.7%; ±20% is over 4 standard deviations.
#[test]
fn block_rate_sampling_is_unbiased() {
    let fixture = Fixture::copy("sync_waits");
    let r = sync_run(
        &fixture,
        &["--blockprofilerate", "10000000"],
        "many_short_waits",
    );
    within(
        delay(&r.block, "sync_waits::wait_on_recv"),
        r.truth["short_wait_ns"] as f64,
        0.20,
        "sampled delay",
    );
}

/// Mutex profiles at fraction 1 and 5 estimate the same delay (±25%), 1200 contended locks.
///
/// Tolerance: at fraction 5 about 240 of the ~1200 releases are kept (p = 0.2), a relative
/// standard deviation of sqrt(0.8 / 240) = 5.8%; ±25% is over 4 standard deviations.
#[test]
fn mutex_fraction_sampling_agrees() {
    let fixture = Fixture::copy("sync_waits");
    let full = sync_run(&fixture, &["--mutexprofilefraction", "1"], "mutex_many");
    let sampled = sync_run(&fixture, &["--mutexprofilefraction", "5"], "mutex_many");
    let d1 = delay(&full.mutex, "sync_waits::release") / full.truth["many_wait_ns"] as f64;
    let d5 = delay(&sampled.mutex, "sync_waits::release") / sampled.truth["many_wait_ns"] as f64;
    within(d5, d1, 0.25, "fraction 5 vs 1 (delay per measured ns)");
    within(d1, 1.0, 0.15, "fraction 1 vs measured");
}

/// A fixture locking a pthread mutex directly (no crates) is profiled too.
#[test]
fn pthread_mutex_directly() {
    let fixture = Fixture::copy("sync_waits");
    let r = sync_run(&fixture, &[], "pthread_mutex");
    let waited = r.truth["c_wait_ns"] as f64;
    within(
        delay(&r.block, "sync_waits::c::c_lock_and_hold"),
        waited,
        0.10,
        "block",
    );
    within(
        delay(&r.mutex, "sync_waits::c::c_lock_and_hold"),
        waited,
        0.15,
        "mutex",
    );
}

/// A consumer loop waiting on a Condvar from one stack every few hundred microseconds: each
/// wait is its own contention (only a lock's re-waits are merged).
#[test]
fn condvar_wait_loop_counts_every_wait() {
    let fixture = Fixture::copy("sync_waits");
    let r = sync_run(&fixture, &[], "condvar_handoffs");
    within(
        contentions(&r.block, "sync_waits::wait_for_handoff"),
        r.truth["handoff_waits"] as f64,
        0.10,
        "condvar waits",
    );
}

/// `--threadcreateprofile`: three call sites create 1, 4 and 16 threads; the profile holds
/// exactly those counts on those sites (the standard library's spawning frames left off the
/// leaf end), libtest's own thread for the test besides, and `go tool pprof` reads it the same.
#[test]
fn thread_creation_sites_counted_exactly() {
    let fixture = Fixture::copy("sync_waits");
    run(fixture.rprof(&[
        "test",
        "--threadcreateprofile",
        "threads.prof",
        "--",
        "thread_sites",
        "--exact",
        "tests::thread_sites",
    ]))
    .expect_code(0);
    let file = fixture.path("threads.prof");
    let p = read_profile(&file);
    let types: Vec<_> = p
        .sample_type
        .iter()
        .map(|vt| p.value_type_name(vt))
        .collect();
    assert_eq!(types, [("threadcreate".to_owned(), "count".to_owned())]);
    let values = function_values(&p, "threadcreate");
    for (site, want) in [
        ("sync_waits::spawn_one", 1),
        ("sync_waits::spawn_four", 4),
        ("sync_waits::spawn_sixteen", 16),
    ] {
        assert_eq!(cum_of(&values, site), want, "{site}: {values:?}");
    }
    assert_eq!(cum_of(&values, "sync_waits::tests::thread_sites"), 21);
    // The test's own thread, started by libtest.
    let total: i64 = p.sample.iter().map(|s| s.value[0]).sum();
    assert_eq!(total, 22, "{values:?}");
    // No standard-library frame is a leaf: the sites are.
    for (name, (flat, _)) in &values {
        if *flat != 0 {
            assert!(!name.starts_with("std::"), "{name} is a leaf: {values:?}");
        }
    }
    let Some(go) = go_tool() else { return };
    let theirs = run({
        let mut cmd = Command::new(go);
        cmd.args(["tool", "pprof", "-top"]).arg(&file);
        cmd
    });
    theirs.expect_code(0);
    let ours = run({
        let mut cmd = Command::new(cargo_rprof());
        cmd.args(["rprof", "top"]).arg(&file);
        cmd
    });
    assert_eq!(ours.stdout, theirs.stdout);
    assert!(
        theirs.stdout.contains("Type: threadcreate"),
        "{}",
        theirs.stdout
    );
}
