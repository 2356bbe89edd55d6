//! The runtime API in a plain test process (no preload): CPU profiles of threads that existed
//! before profiling started and of threads created after, and clean errors on misuse.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rprof_core::report::function_rows;
use rprof_harness::pprof::{self, ProfileError};

/// Burn CPU until `stop` is set.
#[inline(never)]
fn hot_loop(stop: &AtomicBool) -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
    }
    x
}

// The two differ (by the constant they add), so that an optimised build cannot fold them
// into one function with one name.
#[inline(never)]
fn started_before(stop: Arc<AtomicBool>) -> u64 {
    std::hint::black_box(hot_loop(&stop)).wrapping_add(1)
}

#[inline(never)]
fn started_after(stop: Arc<AtomicBool>) -> u64 {
    std::hint::black_box(hot_loop(&stop)).wrapping_add(2)
}

fn cum(profile: &rprof_core::Profile, suffix: &str) -> i64 {
    let index = profile.sample_index("cpu").unwrap();
    function_rows(profile, index)
        .into_iter()
        .find(|r| r.name.ends_with(suffix))
        .map_or(0, |r| r.cum)
}

// One test function: a process has one CPU profiler, and tests run in parallel threads.
#[test]
fn cpu_profile_of_threads_before_and_after_start_and_misuse() {
    // Misuse first: stopping what never started.
    assert!(matches!(
        pprof::stop_cpu_profile(),
        Err(ProfileError::CpuNotRunning)
    ));
    assert!(matches!(
        pprof::start_cpu_profile(0),
        Err(ProfileError::BadRate(0))
    ));
    // Without the preload and without ProfiledAlloc, there is no heap or block profile.
    assert!(matches!(
        pprof::heap_profile(),
        Err(ProfileError::NotActive("memory"))
    ));
    assert!(matches!(
        pprof::block_profile(),
        Err(ProfileError::NotActive("block"))
    ));

    let stop = Arc::new(AtomicBool::new(false));
    let before = {
        let stop = stop.clone();
        std::thread::spawn(move || started_before(stop))
    };
    std::thread::sleep(Duration::from_millis(50));
    let cpu = pprof::start_cpu_profile(1000).unwrap();
    // A second concurrent profile is refused, as Go refuses it.
    let second = pprof::start_cpu_profile(100).unwrap_err();
    assert!(matches!(second, ProfileError::CpuInUse));
    assert_eq!(second.to_string(), "cpu profiling already in use");
    let after = {
        let stop = stop.clone();
        std::thread::spawn(move || started_after(stop))
    };
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    let profile = cpu.stop().unwrap();
    stop.store(true, Ordering::Relaxed);
    before.join().unwrap();
    after.join().unwrap();

    rprof_core::codec::validate(&profile).unwrap();
    let index = profile.sample_index("cpu").unwrap();
    let total = profile.total(index) as f64;
    // The loop is where the CPU went. By cum, not flat: in an unoptimised build the time is
    // spread over the iterator calls it makes.
    let hot = cum(&profile, "api::hot_loop") as f64;
    assert!(
        hot > 0.8 * total,
        "hot_loop has {hot} of {total}; top: {:?}",
        function_rows(&profile, index)
            .iter()
            .take(5)
            .collect::<Vec<_>>()
    );
    let (b, a) = (
        cum(&profile, "started_before") as f64,
        cum(&profile, "started_after") as f64,
    );
    eprintln!("total {total}, thread started before {b}, after {a}");
    assert!(
        b > 0.2 * total,
        "the thread started before profiling has {b} of {total}"
    );
    assert!(
        a > 0.2 * total,
        "the thread started after profiling has {a} of {total}"
    );
    // Symbolized in-process: the profile is self-contained.
    assert!(profile.mapping.iter().any(|m| m.has_functions));
    // Stopped: stopping again fails cleanly, and a new profile can start.
    assert!(matches!(
        pprof::stop_cpu_profile(),
        Err(ProfileError::CpuNotRunning)
    ));
    pprof::start_cpu_profile(100).unwrap().stop().unwrap();
}
