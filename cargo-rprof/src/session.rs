//! One `cargo rprof test|bench` run: its directory, the cargo command with rprof's runner and
//! rustc wrapper in place, and the records the runners leave for post-processing.
//!
//! Layout under `<target-dir>/rprof/`: `debug/`, `release/` (cargo's build, with frame pointers,
//! separate from the user's own), `preload/` (the preload library), and `sessions/<id>/` with
//! `bin/` (kept copies of every binary run), `raw/` (unsymbolized profiles) and `runs.tsv`.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{postprocess, preload, signals, term, wrapper, CliError};

/// Names the session directory for runners.
pub const SESSION_ENV: &str = "RPROF_SESSION_DIR";
/// Names the preload library for runners.
pub const PRELOAD_ENV: &str = "RPROF_PRELOAD_LIBRARY";
/// The user's own target runner, chained by ours.
pub const CHAIN_RUNNER_ENV: &str = "RPROF_CHAIN_RUNNER";
/// The user's own rustc wrapper, restored for the binaries we run.
pub const USER_WRAPPER_ENV: &str = wrapper::USER_WRAPPER_ENV;
/// The manifest file of a session: one line per binary run.
pub const MANIFEST: &str = "runs.tsv";

/// A kind of profile rprof collects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProfileKind {
    /// CPU time, sampled by per-thread CPU timers.
    Cpu,
    /// Allocations, sampled by bytes allocated.
    Mem,
    /// Time spent waiting on synchronization primitives.
    Block,
    /// Delay caused by contended lock releases.
    Mutex,
    /// Stacks that created threads.
    ThreadCreate,
}

impl ProfileKind {
    /// Every kind.
    pub const ALL: [ProfileKind; 5] = [
        ProfileKind::Cpu,
        ProfileKind::Mem,
        ProfileKind::Block,
        ProfileKind::Mutex,
        ProfileKind::ThreadCreate,
    ];

    /// Short name, used in file names and messages.
    pub fn name(self) -> &'static str {
        match self {
            ProfileKind::Cpu => "cpu",
            ProfileKind::Mem => "memory",
            ProfileKind::Block => "block",
            ProfileKind::Mutex => "mutex",
            ProfileKind::ThreadCreate => "threadcreate",
        }
    }

    /// Set (to anything) in the runner's environment when this kind is requested.
    pub fn enabled_env(self) -> &'static str {
        match self {
            ProfileKind::Cpu => "RPROF_WANT_CPU",
            ProfileKind::Mem => "RPROF_WANT_MEM",
            ProfileKind::Block => "RPROF_WANT_BLOCK",
            ProfileKind::Mutex => "RPROF_WANT_MUTEX",
            ProfileKind::ThreadCreate => "RPROF_WANT_THREADCREATE",
        }
    }

    /// The variable the preload reads for this kind's raw output file.
    pub fn output_env(self) -> &'static str {
        match self {
            ProfileKind::Cpu => "RPROF_CPUPROFILE",
            ProfileKind::Mem => "RPROF_MEMPROFILE",
            ProfileKind::Block => "RPROF_BLOCKPROFILE",
            ProfileKind::Mutex => "RPROF_MUTEXPROFILE",
            ProfileKind::ThreadCreate => "RPROF_THREADCREATEPROFILE",
        }
    }

    /// The variable the preload reads for this kind's rate (`None`: every event is counted).
    pub fn rate_env(self) -> Option<&'static str> {
        match self {
            ProfileKind::Cpu => Some("RPROF_CPUPROFILERATE"),
            ProfileKind::Mem => Some("RPROF_MEMPROFILERATE"),
            ProfileKind::Block => Some("RPROF_BLOCKPROFILERATE"),
            ProfileKind::Mutex => Some("RPROF_MUTEXPROFILEFRACTION"),
            ProfileKind::ThreadCreate => None,
        }
    }

    /// The flag that asks for this kind.
    pub fn flag(self) -> &'static str {
        match self {
            ProfileKind::Cpu => "--cpuprofile",
            ProfileKind::Mem => "--memprofile",
            ProfileKind::Block => "--blockprofile",
            ProfileKind::Mutex => "--mutexprofile",
            ProfileKind::ThreadCreate => "--threadcreateprofile",
        }
    }
}

/// One profile the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Which profiler.
    pub kind: ProfileKind,
    /// Where the merged, symbolized file goes (already joined with `--outputdir`).
    pub output: PathBuf,
    /// The profiler's rate, as given.
    pub rate: u64,
}

/// `cargo rprof test|bench`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRun {
    /// `test` or `bench`.
    pub subcommand: String,
    /// Arguments for cargo (everything that is not rprof's own flag), before `--`.
    pub cargo_args: Vec<OsString>,
    /// Arguments after `--`, for the binaries.
    pub binary_args: Vec<OsString>,
    /// The profiles to collect.
    pub requests: Vec<Request>,
    /// Where the program serves live profiles (`cargo rprof run --http`).
    pub http: Option<LiveServer>,
}

/// The live endpoints `cargo rprof run --http` asks the program to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveServer {
    /// HOST:PORT.
    pub addr: String,
    /// Whether a non-loopback address is allowed: the program then makes a random token,
    /// prints it, and refuses requests without it.
    pub allow_remote: bool,
    /// The rate settings of every profiler the endpoints serve (`RPROF_*RATE` variables and
    /// values), whether or not a file of that kind is asked for.
    pub rates: Vec<(&'static str, u64)>,
}

impl LiveServer {
    /// Check `addr` before anything is built: it must parse, and be loopback unless
    /// `allow_remote` (the program then makes and prints a token).
    pub fn new(
        addr: &str,
        allow_remote: bool,
        rates: Vec<(&'static str, u64)>,
    ) -> Result<LiveServer, CliError> {
        use std::net::ToSocketAddrs;
        let parsed = addr
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "--http {addr}: not an address; use HOST:PORT, e.g. 127.0.0.1:6060"
                ))
            })?;
        if !allow_remote && !parsed.ip().is_loopback() {
            return Err(CliError::Usage(format!(
                "--http {addr}: not a loopback address; add --http-allow-remote to serve profiles beyond this machine (every request then needs the printed token)"
            )));
        }
        Ok(LiveServer {
            addr: addr.to_owned(),
            allow_remote,
            rates,
        })
    }
}

/// One run of a binary, as the runner recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// Its process id (the runner execs, so the binary keeps the runner's pid).
    pub pid: u32,
    /// The binary cargo built (the path its mappings name).
    pub original: PathBuf,
    /// Our copy of it (one per distinct binary: every run of the same file shares it).
    pub kept: PathBuf,
    /// The one test this process ran, when a runner that starts a process per test (nextest)
    /// named it.
    pub test: Option<TestIdentity>,
}

/// A test as a process-per-test runner (nextest) names it to the process it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestIdentity {
    /// The test's name in its binary (`tests::burn`).
    pub name: String,
    /// Which attempt this is (1 = the first run; more with retries).
    pub attempt: u32,
    /// How many attempts the test may have (1 without retries).
    pub attempts: u32,
}

impl TestIdentity {
    /// What nextest tells a test process in `NEXTEST_TEST_NAME`, `NEXTEST_ATTEMPT` and
    /// `NEXTEST_TOTAL_ATTEMPTS`; `None` outside nextest's run phase.
    pub fn from_nextest_env() -> Option<TestIdentity> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if var("NEXTEST_TEST_PHASE").as_deref() != Some("run") {
            return None;
        }
        let name = var("NEXTEST_TEST_NAME")?;
        if name.contains(['\t', '\n']) {
            return None;
        }
        let number = |k: &str| var(k).and_then(|v| v.parse().ok()).unwrap_or(1);
        Some(TestIdentity {
            name,
            attempt: number("NEXTEST_ATTEMPT"),
            attempts: number("NEXTEST_TOTAL_ATTEMPTS"),
        })
    }
}

impl RunRecord {
    /// The manifest line for this record.
    pub fn to_line(&self) -> String {
        let mut line = format!(
            "{}\t{}\t{}",
            self.pid,
            self.original.display(),
            self.kept.display()
        );
        if let Some(t) = &self.test {
            line.push_str(&format!("\t{}\t{}\t{}", t.name, t.attempt, t.attempts));
        }
        line.push('\n');
        line
    }

    /// Parse a manifest line.
    pub fn parse(line: &str) -> Option<RunRecord> {
        let mut f = line.split('\t');
        Some(RunRecord {
            pid: f.next()?.parse().ok()?,
            original: PathBuf::from(f.next()?),
            kept: PathBuf::from(f.next()?),
            test: match (f.next(), f.next(), f.next()) {
                (Some(name), Some(attempt), Some(attempts)) => Some(TestIdentity {
                    name: name.to_owned(),
                    attempt: attempt.parse().ok()?,
                    attempts: attempts.trim_end().parse().ok()?,
                }),
                _ => None,
            },
        })
    }
}

/// Run cargo with the profilers in place, then post-process. Returns cargo's exit code (or 1
/// when cargo succeeded but no profile could be produced).
pub fn run(run: &TestRun) -> Result<i32, CliError> {
    let nextest = run.subcommand == "nextest";
    if nextest {
        check_nextest()?;
    }
    let setup = Setup::new(run)?;
    let mut cmd = setup.cargo_command(&run.subcommand, run);
    let exe = &setup.exe;
    let runner = format!(
        "[{}, \"{}\"]",
        toml_string(&exe.to_string_lossy()),
        crate::runner::RUNNER_ARG
    );
    let mut triples = vec![env!("RPROF_HOST_TARGET").to_owned()];
    if let Some(t) = flag_value(&run.cargo_args, "--target") {
        if !triples.contains(&t) {
            triples.push(t);
        }
    }
    for triple in &triples {
        let var = format!(
            "CARGO_TARGET_{}_RUNNER",
            triple.to_uppercase().replace(['-', '.'], "_")
        );
        if let Some(chain) = std::env::var_os(&var) {
            cmd.env(CHAIN_RUNNER_ENV, chain).env_remove(&var);
        }
        if nextest {
            // nextest takes target runners from cargo's configuration files and this variable
            // (a command line split at whitespace), not from `--config`.
            let exe = exe.to_string_lossy();
            if exe.contains(char::is_whitespace) {
                return Err(CliError::Cargo(format!(
                    "cannot run nextest with rprof from {exe}: nextest splits a runner's path at spaces; install cargo-rprof in a directory without them"
                )));
            }
            cmd.env(&var, format!("{exe} {}", crate::runner::RUNNER_ARG));
        } else {
            cmd.arg("--config")
                .arg(format!("target.{triple}.runner={runner}"));
        }
    }
    if !run.binary_args.is_empty() {
        cmd.arg("--").args(&run.binary_args);
    }
    cmd.env(SESSION_ENV, &setup.session)
        .env(PRELOAD_ENV, &setup.preload);
    for r in &run.requests {
        cmd.env(r.kind.enabled_env(), "1");
        if let Some(rate) = r.kind.rate_env() {
            cmd.env(rate, r.rate.to_string());
        }
    }
    // Test binaries ended by SIGINT, SIGTERM or SIGHUP write their profiles first.
    cmd.env("RPROF_WRITE_ON_SIGNAL", "1");
    signals::become_subreaper();
    let mut child = cmd.spawn().map_err(|e| {
        CliError::Cargo(format!("cannot run {}: {e}", setup.cargo.to_string_lossy()))
    })?;
    signals::forward(child.id() as i32, signals::Reach::Tree);
    let status = child.wait();
    let signal = signals::received();
    if signal.is_some() {
        // cargo is gone; the test binaries it ran may still be writing their profiles.
        signals::wait_for_descendants(Duration::from_secs(5));
    }
    signals::stop();
    let status = status.map_err(|e| CliError::Cargo(format!("cannot wait for cargo: {e}")))?;
    let code = status.code().unwrap_or(101);
    if let Some(sig) = signal {
        term::status("Interrupted", format!("by {}", signals::signal_name(sig)));
        // Post-process what was written, then end as the run was ended.
        let _ = postprocess::finish(&setup.session, &run.requests, code);
        signals::end_by_signal(sig);
    }
    if code == 0 && run.cargo_args.iter().any(|a| a == "--no-run") {
        term::note("--no-run: the binaries were built and not run, so nothing was profiled");
        return Ok(0);
    }
    postprocess::finish(&setup.session, &run.requests, code)
}

/// Fail before anything is built when `cargo nextest` is not installed.
fn check_nextest() -> Result<(), CliError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let found = Command::new(&cargo)
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        Ok(())
    } else {
        Err(CliError::Cargo(
            "cargo-nextest is not installed: install it with `cargo install cargo-nextest --locked` (or see https://nexte.st)".into(),
        ))
    }
}

/// What every profiled run needs before cargo starts: rprof's target directory, the preload
/// library, a fresh session directory.
pub(crate) struct Setup {
    /// The cargo to run.
    pub cargo: OsString,
    /// This executable (the runner and rustc wrapper).
    pub exe: PathBuf,
    /// `<target-dir>/rprof`.
    pub rprof_dir: PathBuf,
    /// The preload library to inject.
    pub preload: PathBuf,
    /// This run's session directory.
    pub session: PathBuf,
    /// Its lock, held while this run lives, so no concurrent run prunes it.
    _owned: crate::sessions::Session,
}

impl Setup {
    /// Check the outputs, find the target directory, install the preload, open a session.
    pub fn new(run: &TestRun) -> Result<Setup, CliError> {
        for r in &run.requests {
            check_output_dir(r)?;
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let (cargo_args, user_target_dir) = take_target_dir(&run.cargo_args);
        let target_dir = match user_target_dir {
            Some(dir) => dir,
            None => target_directory(&cargo, &cargo_args)?,
        };
        let rprof_dir = target_dir.join("rprof");
        invalidate_stale_builds(&rprof_dir);
        let variant = if run.http.is_some() {
            preload::Variant::Live
        } else if run.requests.iter().any(|r| r.kind == ProfileKind::Mem) {
            preload::Variant::Memory
        } else {
            preload::Variant::Light
        };
        let preload = preload::install(&rprof_dir.join("preload"), variant)?;
        let owned = crate::sessions::create(&rprof_dir.join("sessions"))?;
        let exe = std::env::current_exe()
            .map_err(|e| CliError::io("cannot find the cargo-rprof executable", e))?;
        Ok(Setup {
            cargo,
            exe,
            rprof_dir,
            preload,
            session: owned.dir.clone(),
            _owned: owned,
        })
    }

    /// `cargo SUBCOMMAND <cargo args> --target-dir <rprof dir>` with rprof's rustc wrapper (and
    /// the user's own, chained).
    pub fn cargo_command(&self, subcommand: &str, run: &TestRun) -> Command {
        let (cargo_args, _) = take_target_dir(&run.cargo_args);
        let mut cmd = Command::new(&self.cargo);
        cmd.arg(subcommand);
        cmd.args(cargo_args);
        cmd.arg("--target-dir").arg(&self.rprof_dir);
        if let Some(user) = std::env::var_os("RUSTC_WRAPPER").filter(|w| !w.is_empty()) {
            cmd.env(USER_WRAPPER_ENV, user);
        }
        cmd.env("RUSTC_WRAPPER", &self.exe)
            .env(wrapper::WRAPPER_ENV, "1");
        cmd
    }
}

/// Cargo cannot see the flags the rustc wrapper adds, so it would keep builds made with another
/// version's flags: when they change, drop rprof's builds (never the user's own).
fn invalidate_stale_builds(rprof_dir: &Path) {
    let stamp = rprof_dir.join("wrapper-flags");
    let current = wrapper::extra_flags(&["--crate-name".into(), "x".into()]).join(" ");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(current.as_str()) {
        return;
    }
    if let Ok(entries) = std::fs::read_dir(rprof_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name != "sessions" && name != "preload" && entry.path().is_dir() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let _ = std::fs::create_dir_all(rprof_dir);
    let _ = std::fs::write(&stamp, current);
}

/// Fail early, before a long build, when an output file's directory does not exist.
fn check_output_dir(r: &Request) -> Result<(), CliError> {
    let dir = r
        .output
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(CliError::NoSuchDir {
            what: r.kind.name(),
            path: r.output.clone(),
            dir: dir.to_path_buf(),
        });
    }
    let bad = |reason: String| CliError::BadOutput {
        what: r.kind.name(),
        path: r.output.clone(),
        reason,
    };
    if r.output.is_dir() {
        return Err(bad("it is a directory".into()));
    }
    // The profile is written as a temporary file renamed into place: try that file now.
    let name = r.output.file_name().unwrap_or_default().to_string_lossy();
    let probe = dir.join(format!(".{name}.probe.{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(bad(format!("its directory refuses new files ({e})"))),
    }
}

/// The target directory cargo would use (`cargo metadata`), honouring `--manifest-path`.
fn target_directory(cargo: &OsStr, cargo_args: &[OsString]) -> Result<PathBuf, CliError> {
    let mut cmd = Command::new(cargo);
    cmd.args(["metadata", "--format-version", "1", "--no-deps"]);
    if let Some(m) = flag_value(cargo_args, "--manifest-path") {
        cmd.arg("--manifest-path").arg(m);
    }
    for (i, a) in cargo_args.iter().enumerate() {
        let s = a.to_string_lossy();
        if s == "--config" || s == "-Z" {
            cmd.arg(a);
            if let Some(v) = cargo_args.get(i + 1) {
                cmd.arg(v);
            }
        } else if s.starts_with("--config=")
            || s == "--offline"
            || s == "--frozen"
            || s == "--locked"
        {
            cmd.arg(a);
        }
    }
    let out = cmd
        .output()
        .map_err(|e| CliError::Cargo(format!("cannot run {}: {e}", cargo.to_string_lossy())))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("cargo metadata failed")
            .trim_start_matches("error: ");
        return Err(CliError::Cargo(first.to_owned()));
    }
    let metadata: cargo_metadata::Metadata = serde_json_from(&out.stdout)?;
    Ok(metadata.target_directory.into_std_path_buf())
}

fn serde_json_from(bytes: &[u8]) -> Result<cargo_metadata::Metadata, CliError> {
    cargo_metadata::MetadataCommand::parse(String::from_utf8_lossy(bytes))
        .map_err(|e| CliError::Cargo(format!("cannot read cargo metadata: {e}")))
}

/// Remove `--target-dir DIR` / `--target-dir=DIR` from cargo's arguments, returning DIR.
fn take_target_dir(args: &[OsString]) -> (Vec<OsString>, Option<PathBuf>) {
    let mut out = Vec::with_capacity(args.len());
    let mut dir = None;
    let mut iter = args.iter();
    while let Some(a) = iter.next() {
        let s = a.to_string_lossy();
        if s == "--target-dir" {
            dir = iter.next().map(PathBuf::from);
        } else if let Some(v) = s.strip_prefix("--target-dir=") {
            dir = Some(PathBuf::from(v));
        } else {
            out.push(a.clone());
        }
    }
    (out, dir)
}

/// The value of `--flag VALUE` or `--flag=VALUE` in cargo's arguments.
pub(crate) fn flag_value(args: &[OsString], flag: &str) -> Option<String> {
    let mut iter = args.iter().map(|a| a.to_string_lossy());
    while let Some(a) = iter.next() {
        if a == flag {
            return iter.next().map(|v| v.into_owned());
        }
        if let Some(v) = a.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            return Some(v.to_owned());
        }
    }
    None
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Read the runs a session's runners recorded.
pub fn read_manifest(session: &Path) -> Vec<RunRecord> {
    match std::fs::read_to_string(session.join(MANIFEST)) {
        Ok(text) => text.lines().filter_map(RunRecord::parse).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            term::warning(format!(
                "cannot read {}: {e}",
                session.join(MANIFEST).display()
            ));
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn target_dir_is_taken_out_of_cargo_args() {
        let (rest, dir) = take_target_dir(&os(&["-p", "x", "--target-dir", "/t", "--lib"]));
        assert_eq!(rest, os(&["-p", "x", "--lib"]));
        assert_eq!(dir, Some(PathBuf::from("/t")));
        let (_, dir) = take_target_dir(&os(&["--target-dir=/u"]));
        assert_eq!(dir, Some(PathBuf::from("/u")));
    }

    #[test]
    fn flag_values_in_both_spellings() {
        let args = os(&[
            "--manifest-path",
            "a/Cargo.toml",
            "--target=x86_64-unknown-linux-gnu",
        ]);
        assert_eq!(
            flag_value(&args, "--manifest-path").as_deref(),
            Some("a/Cargo.toml")
        );
        assert_eq!(
            flag_value(&args, "--target").as_deref(),
            Some("x86_64-unknown-linux-gnu")
        );
        assert_eq!(flag_value(&args, "--target-dir"), None);
    }

    #[test]
    fn manifest_lines_round_trip() {
        let r = RunRecord {
            pid: 42,
            original: "/t/debug/deps/a-123".into(),
            kept: "/t/rprof/sessions/1/bin/a-123.42".into(),
            test: None,
        };
        assert_eq!(RunRecord::parse(r.to_line().trim_end()), Some(r.clone()));
        let retried = RunRecord {
            test: Some(TestIdentity {
                name: "tests::flaky".into(),
                attempt: 2,
                attempts: 3,
            }),
            ..r
        };
        assert_eq!(
            RunRecord::parse(retried.to_line().trim_end()),
            Some(retried)
        );
        assert_eq!(RunRecord::parse("garbage"), None);
    }
}
