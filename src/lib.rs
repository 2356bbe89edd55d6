//! Support code for rprof's end-to-end tests (the `tests/` directory of this workspace):
//! build `cargo-rprof` once, copy a fixture crate to a fresh directory, run `cargo rprof` on it,
//! and read what it wrote.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

pub use rprof_core::{codec, report, Profile, ProfileBuilder};

/// The workspace root (where `tests/fixtures` lives).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `cargo-rprof` binary, built once per test process with escargot.
pub fn cargo_rprof() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        escargot::CargoBuild::new()
            .manifest_path(workspace_root().join("Cargo.toml"))
            .package("cargo-rprof")
            .bin("cargo-rprof")
            .current_release()
            .run()
            .expect("building cargo-rprof failed")
            .path()
            .to_path_buf()
    })
}

/// A private copy of a fixture crate, removed when dropped unless the test failed.
pub struct Fixture {
    /// The copy's root directory.
    pub dir: PathBuf,
}

impl Fixture {
    /// Copy `tests/fixtures/<name>` (or any crate directory under the workspace, e.g.
    /// `examples/demo`) to a new temporary directory.
    pub fn copy(name: &str) -> Fixture {
        static N: AtomicUsize = AtomicUsize::new(0);
        let src = if name.contains('/') {
            workspace_root().join(name)
        } else {
            workspace_root().join("tests/fixtures").join(name)
        };
        let leaf = Path::new(name).file_name().unwrap().to_string_lossy();
        let dir = std::env::temp_dir().join(format!(
            "rprof-test-{leaf}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(&src, &dir);
        Fixture { dir }
    }

    /// A copy of `tests/fixtures/<name>` under `target/rprof-e2e/<tag>-<name>`, for a fixture a
    /// test binary keeps in a `static` (never dropped, so never deleted): its `target/` stays
    /// between runs and the next run's build reuses it.
    pub fn shared(name: &str, tag: &str) -> Fixture {
        let dir = workspace_root()
            .join("target/rprof-e2e")
            .join(format!("{tag}-{name}"));
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.file_name() != "target" {
                    let path = entry.path();
                    let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
                }
            }
        }
        copy_dir(&workspace_root().join("tests/fixtures").join(name), &dir);
        Fixture { dir }
    }

    /// Like [`Fixture::copy`], with `RPROF_HARNESS_PATH` in its Cargo.toml pointing at this
    /// workspace's rprof-harness (for fixtures that depend on it).
    pub fn copy_with_harness(name: &str) -> Fixture {
        let fixture = Fixture::copy(name);
        let manifest = fixture.path("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap().replace(
            "RPROF_HARNESS_PATH",
            &workspace_root().join("rprof-harness").display().to_string(),
        );
        std::fs::write(manifest, text).unwrap();
        fixture
    }

    /// `cargo-rprof rprof ARGS...` in the fixture's directory, with `CI`-independent settings.
    pub fn rprof(&self, args: &[&str]) -> Command {
        rprof_in(&self.dir, args)
    }

    /// A path inside the fixture copy.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("fixture kept for inspection: {}", self.dir.display());
        }
    }
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" || name == "Cargo.lock" {
            continue;
        }
        let to = dst.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}

/// What a command printed, with its status; panics with both streams when it could not run.
pub struct Ran {
    /// Exit code (None when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Run `cmd` to completion.
pub fn run(mut cmd: Command) -> Ran {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Ran {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

impl Ran {
    /// Panic with both streams unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Values of `TRUTH <key> <n>` lines the fixtures print, summed per key.
    pub fn truth(&self) -> HashMap<String, u64> {
        let mut map = HashMap::new();
        for line in self.stdout.lines() {
            // libtest may print `test name ... ` on the same line first.
            if let Some((_, rest)) = line.split_once("TRUTH ") {
                let mut words = rest.split_whitespace();
                if let (Some(k), Some(v)) = (words.next(), words.next()) {
                    *map.entry(k.to_owned()).or_default() += v.parse::<u64>().unwrap();
                }
            }
        }
        map
    }
}

/// Read a profile, panicking with the reason when it is not one.
pub fn read_profile(path: &Path) -> Profile {
    codec::read_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Flat and cum of every function for the sample type named `sample_type`.
pub fn function_values(p: &Profile, sample_type: &str) -> HashMap<String, (i64, i64)> {
    let index = p.sample_index(sample_type).unwrap();
    report::function_rows(p, index)
        .into_iter()
        .map(|r| (r.name, (r.flat, r.cum)))
        .collect()
}

/// Cum value of the first function whose name ends with `suffix`.
pub fn cum_of(values: &HashMap<String, (i64, i64)>, suffix: &str) -> i64 {
    values
        .iter()
        .find(|(name, _)| name.ends_with(suffix))
        .map_or(0, |(_, v)| v.1)
}

/// Cum value, for the sample type named `sample_type`, of the first function whose name ends
/// with `function`.
pub fn function_cum(p: &Profile, sample_type: &str, function: &str) -> i64 {
    cum_of(&function_values(p, sample_type), function)
}

/// Sum of sample values at `index` per value of label `key` ("" for samples without it).
pub fn label_totals(profile: &Profile, key: &str, index: usize) -> HashMap<String, i64> {
    let mut totals = HashMap::new();
    for s in &profile.sample {
        let value = s
            .label
            .iter()
            .find(|l| profile.str(l.key) == key)
            .map_or("", |l| profile.str(l.str));
        *totals.entry(value.to_owned()).or_default() += s.value[index];
    }
    totals
}

/// The `test_costs` fixture's CPU truths: each CPU test's `test` label in the CPU profile
/// `cpu` holds what the test measured on its own threads (`truth`), within ±5%. Returns the
/// CPU per `test` label.
pub fn assert_test_costs_cpu(cpu: &Profile, truth: &HashMap<String, u64>) -> HashMap<String, i64> {
    let by_test = label_totals(cpu, "test", cpu.sample_index("cpu").unwrap());
    for test in [
        "tests::burn_03",
        "tests::burn_06",
        "tests::burn_09",
        "tests::spawns_two",
    ] {
        let want = truth[&format!("cpu_ns.{test}")] as f64;
        let got = by_test.get(test).copied().unwrap_or(0) as f64;
        eprintln!(
            "{test}: profile {:.1} ms, measured {:.1} ms",
            got / 1e6,
            want / 1e6
        );
        assert!(
            (got / want - 1.0).abs() <= 0.05,
            "{test}: {got} ns in the profile, {want} ns measured (±5%)"
        );
    }
    by_test
}

/// The `test_costs` fixture's allocation truths, exact at rate 1 in the memory profile `mem`:
/// `allocs_1001` makes 1001 allocations of 108,000 bytes, `allocs_501` 501 of 36,000.
pub fn assert_test_costs_allocations(mem: &Profile) {
    let objects = label_totals(mem, "test", mem.sample_index("alloc_objects").unwrap());
    let bytes = label_totals(mem, "test", mem.sample_index("alloc_space").unwrap());
    for (test, n, size) in [
        ("tests::allocs_1001", 1001, 108_000),
        ("tests::allocs_501", 501, 36_000),
    ] {
        assert_eq!(
            (objects.get(test).copied(), bytes.get(test).copied()),
            (Some(n), Some(size)),
            "{test}: objects, bytes"
        );
    }
}

/// `go` for compatibility tests. `None` (the test then skips, saying so) only outside CI:
/// with `CI` set, a missing Go toolchain fails the test.
pub fn go_tool() -> Option<PathBuf> {
    required_tool("go", "golang-go")
}

/// Debian's `chromium`, for the web UI's browser test. `None` (the test then skips, saying so)
/// only outside CI: with `CI` set, a missing chromium fails the test.
pub fn chromium() -> Option<PathBuf> {
    required_tool("chromium", "chromium")
}

/// `cargo-nextest`, for `cargo rprof nextest`. `None` (the test then skips, saying so) only
/// outside CI: with `CI` set, a missing cargo-nextest fails the test.
pub fn nextest_tool() -> Option<PathBuf> {
    required_tool(
        "cargo-nextest",
        "cargo-nextest (cargo install cargo-nextest --locked)",
    )
}

/// The program `name` on `PATH`. Outside CI a missing one is `None` (the caller skips, saying
/// so); with `CI` set it fails the test, naming the Debian `package` to install.
fn required_tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "`{name}` is not on PATH but CI is set: install {package}"
        );
        eprintln!("skipping: `{name}` is not on PATH (install {package})");
    }
    found
}

/// Functions a thread's stack starts in: the main thread's `_start` and glibc's
/// `__libc_start_main` family, other threads' `clone`/`clone3` and `start_thread`. A stack whose
/// outermost frame is one of these was unwound completely.
pub const THREAD_ENTRIES: &[&str] = &[
    "_start",
    "__libc_start_main",
    "__libc_start_main_impl",
    "__libc_start_call_main",
    "start_thread",
    "clone",
    "clone3",
    "__clone",
    "__clone3",
    "__GI___clone3",
];

/// Names of the functions of one location, innermost inlined function first; an unsymbolized
/// location is one name, `<unsymbolized in FILE>` (FILE = its mapping's base name, or `?`).
pub fn location_functions(p: &Profile, location_id: u64) -> Vec<String> {
    let Some(location) = p.location_by_id(location_id) else {
        return vec![format!("<no location {location_id}>")];
    };
    let names: Vec<String> = location
        .line
        .iter()
        .filter_map(|line| p.function_by_id(line.function_id))
        .map(|f| p.str(f.name).to_owned())
        .collect();
    if !names.is_empty() {
        return names;
    }
    let file = p
        .mapping
        .iter()
        .find(|m| m.id == location.mapping_id)
        .map(|m| p.str(m.filename))
        .and_then(|f| f.rsplit('/').next())
        .filter(|f| !f.is_empty())
        .unwrap_or("?");
    vec![format!("<unsymbolized in {file}>")]
}

/// Every function on a sample's stack, leaf first (inlined functions included, innermost first
/// within a location).
pub fn stack_functions(p: &Profile, sample: &rprof_core::proto::Sample) -> Vec<String> {
    sample
        .location_id
        .iter()
        .flat_map(|&id| location_functions(p, id))
        .collect()
}

/// The outermost function of a sample's stack: the last location's last line (its outermost
/// inlined function).
pub fn root_function(p: &Profile, sample: &rprof_core::proto::Sample) -> String {
    sample
        .location_id
        .last()
        .and_then(|&id| location_functions(p, id).pop())
        .unwrap_or_else(|| "<empty stack>".to_owned())
}

/// The share of `sample_type`'s total whose stacks end in a [`THREAD_ENTRIES`] function, and
/// the other roots with their values, largest first.
pub fn root_fraction(p: &Profile, sample_type: &str) -> (f64, Vec<(String, i64)>) {
    let index = p.sample_index(sample_type).unwrap();
    let (mut complete, mut total) = (0i64, 0i64);
    let mut orphans: HashMap<String, i64> = HashMap::new();
    for s in &p.sample {
        let v = s.value[index];
        total += v;
        let root = root_function(p, s);
        if THREAD_ENTRIES.contains(&root.as_str()) {
            complete += v;
        } else {
            *orphans.entry(root).or_default() += v;
        }
    }
    let mut orphans: Vec<(String, i64)> = orphans.into_iter().collect();
    orphans.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let fraction = if total == 0 {
        0.0
    } else {
        complete as f64 / total as f64
    };
    (fraction, orphans)
}

/// `perf` (Linux's profiler) for cross-checks of the unwinder. `None` (the test then skips,
/// saying so) only outside CI: with `CI` set, a missing perf fails the test.
pub fn perf_tool() -> Option<PathBuf> {
    required_tool("perf", "linux-perf")
}

/// `cargo-rprof rprof ARGS...` in `dir` (e.g. [`workspace_root`], to profile this workspace's
/// own tests), with the environment [`Fixture::rprof`] sets.
pub fn rprof_in(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(cargo_rprof());
    cmd.current_dir(dir)
        .arg("rprof")
        .args(args)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTC_WRAPPER")
        .env("CARGO_TERM_COLOR", "never");
    cmd
}

/// Build the unit-test binary of the crate in `dir` with plain cargo (`cargo build --lib
/// --tests`, no rprof, the crate's own target directory) and return its path.
pub fn build_test_binary(dir: &Path) -> PathBuf {
    let messages = escargot::CargoBuild::new()
        .manifest_path(dir.join("Cargo.toml"))
        .arg("--lib")
        .tests()
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTC_WRAPPER")
        .exec()
        .unwrap_or_else(|e| panic!("building the tests of {} failed: {e}", dir.display()));
    let mut found = None;
    for message in messages {
        let message =
            message.unwrap_or_else(|e| panic!("building the tests of {}: {e}", dir.display()));
        if let Ok(escargot::format::Message::CompilerArtifact(artifact)) = message.decode() {
            if artifact.profile.test {
                if let Some(path) = artifact.executable {
                    found = Some(path.into_owned());
                }
            }
        }
    }
    found.unwrap_or_else(|| panic!("no test binary built in {}", dir.display()))
}
