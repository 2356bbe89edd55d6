//! A criterion profiler hook: one symbolized pprof file and one flame graph per benchmark, in
//! the benchmark's own directory under `target/criterion/`. Every sample carries the label
//! `bench=<benchmark id>`.
//!
//! ```ignore
//! use criterion::{criterion_group, criterion_main, Criterion};
//!
//! fn bench(c: &mut Criterion) { /* ... */ }
//!
//! criterion_group! {
//!     name = benches;
//!     config = Criterion::default().with_profiler(rprof_harness::criterion::Profiler::new(1000));
//!     targets = bench
//! }
//! criterion_main!(benches);
//! ```
//!
//! Then `cargo bench --bench NAME -- --profile-time 5` writes, for each benchmark,
//! `target/criterion/<id>/profile/cpu.pb.gz` and `cpu.svg` (and `heap.pb.gz`, `heap.svg` with
//! the allocations made during the benchmark when the memory profiler is on: under
//! `cargo rprof --memprofile`, or with a `ProfiledAlloc` global allocator).

use std::path::Path;

use rprof_core::report::{self, ReportOptions};
use rprof_core::{codec, edit, labels, Profile};

use crate::pprof::{self, CpuProfile};

/// The criterion profiler hook. See the module documentation.
#[derive(Debug)]
pub struct Profiler {
    hz: u32,
    cpu: Option<CpuProfile>,
    heap_before: Option<Profile>,
}

impl Profiler {
    /// A hook sampling the CPU at `hz` samples per CPU-second while criterion profiles.
    pub fn new(hz: u32) -> Self {
        Profiler {
            hz,
            cpu: None,
            heap_before: None,
        }
    }
}

impl Default for Profiler {
    /// 1000 Hz: benchmarks are profiled for a few seconds, so a high rate pays.
    fn default() -> Self {
        Profiler::new(1000)
    }
}

impl criterion::profiler::Profiler for Profiler {
    fn start_profiling(&mut self, benchmark_id: &str, _benchmark_dir: &Path) {
        self.heap_before = pprof::heap_profile().ok();
        match pprof::start_cpu_profile(self.hz) {
            Ok(cpu) => self.cpu = Some(cpu),
            Err(e) => eprintln!("rprof: {benchmark_id}: {e}"),
        }
    }

    fn stop_profiling(&mut self, benchmark_id: &str, benchmark_dir: &Path) {
        let mut written = Vec::new();
        if let Err(e) = std::fs::create_dir_all(benchmark_dir) {
            eprintln!("rprof: {}: {e}", benchmark_dir.display());
            return;
        }
        if let Some(cpu) = self.cpu.take() {
            match cpu.stop() {
                Ok(mut p) => {
                    labels::add_label(&mut p, labels::BENCH, benchmark_id);
                    written.extend(write(benchmark_dir, "cpu", benchmark_id, &p))
                }
                Err(e) => eprintln!("rprof: {benchmark_id}: {e}"),
            }
        }
        if let Some(before) = self.heap_before.take() {
            match pprof::heap_profile().map(|after| edit::subtract(&after, &before)) {
                Ok(Ok(mut delta)) => {
                    labels::add_label(&mut delta, labels::BENCH, benchmark_id);
                    written.extend(write(benchmark_dir, "heap", benchmark_id, &delta))
                }
                Ok(Err(e)) => eprintln!("rprof: {benchmark_id}: {e}"),
                Err(e) => eprintln!("rprof: {benchmark_id}: {e}"),
            }
        }
        if !written.is_empty() {
            eprintln!("rprof: {benchmark_id}: wrote {}", written.join(", "));
        }
    }
}

/// Write `<name>.pb.gz` and `<name>.svg` into `dir`; returns what was written.
fn write(dir: &Path, name: &str, id: &str, profile: &Profile) -> Vec<String> {
    let mut written = Vec::new();
    let file = dir.join(format!("{name}.pb.gz"));
    match codec::write_file(&file, profile) {
        Ok(()) => written.push(file.display().to_string()),
        Err(e) => eprintln!("rprof: {e}"),
    }
    let svg = dir.join(format!("{name}.svg"));
    let opts = ReportOptions {
        title: Some(format!("{id} ({name})")),
        ..Default::default()
    };
    let mut out = Vec::new();
    match report::flamegraph(profile, &opts, &mut out) {
        Ok(()) => match std::fs::write(&svg, out) {
            Ok(()) => written.push(svg.display().to_string()),
            Err(e) => eprintln!("rprof: {}: {e}", svg.display()),
        },
        // An empty profile (a benchmark too short to sample) has no flame graph.
        Err(e) => eprintln!("rprof: {id}: no {name} flame graph: {e}"),
    }
    written
}
