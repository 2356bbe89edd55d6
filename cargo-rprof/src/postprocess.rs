//! After cargo returns: symbolize each binary's raw profile against its kept copy, merge them
//! into one file per profile kind, write it, and print the short report.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rprof_core::report::bylabel::{self, ProfileKindGuess};
use rprof_core::report::{self, ReportOptions};
use rprof_core::symbolize::Symbolizer;
use rprof_core::{codec, edit, labels, merge, Profile};

use crate::session::{self, ProfileKind, Request, RunRecord};
use crate::{runner, term, CliError};

/// Post-process `session` for every request; returns the exit code to use (cargo's, or 1 when
/// cargo succeeded but a requested profile could not be produced).
pub fn finish(session: &Path, requests: &[Request], cargo_code: i32) -> Result<i32, CliError> {
    let runs = session::read_manifest(session);
    let mut code = cargo_code;
    for request in requests {
        match finish_one(session, &runs, request) {
            Ok(()) => {}
            Err(e) if cargo_code != 0 => {
                term::warning(format!("{e} (cargo exited with status {cargo_code})"))
            }
            Err(e) => {
                term::error(&e);
                code = 1;
            }
        }
    }
    Ok(code)
}

fn finish_one(session: &Path, runs: &[RunRecord], request: &Request) -> Result<(), CliError> {
    let kind = request.kind.name();
    let mut symbolizer = Symbolizer::new();
    // Each binary's profile is merged as soon as it is symbolized and then dropped: a run of
    // thousands of processes (nextest) holds one of them at a time.
    let mut merger = merge::Merger::new();
    let mut merged_count = 0;
    let mut kept_binaries = BTreeSet::new();
    let mut peak: Option<Peak> = None;
    let mut missing = Vec::new();
    let mut warnings = BTreeSet::new();
    for run in runs {
        let mut raw = runner::raw_path(session, run.pid, request.kind);
        if !raw.exists() {
            // Killed without a chance to write: what it checkpointed while it ran.
            raw = rprof_core::checkpoint_path(&raw);
            if !raw.exists() {
                missing.push(run);
                continue;
            }
        }
        let mut profile = codec::read_file(&raw).map_err(|source| CliError::Profile {
            path: raw.clone(),
            source,
        })?;
        explain_ending(&mut profile, &run_name(run), kind);
        let original = run.original.to_string_lossy().into_owned();
        let raw_dir = raw.parent().unwrap_or(session);
        let resolve = |filename: &str, build_id: &str| -> Option<PathBuf> {
            if filename == rprof_core::VDSO_MAPPING {
                // The preload kept the vDSO's image beside the raw profile.
                return Some(raw_dir.join(rprof_core::kept_vdso_name(build_id)));
            }
            (filename == original).then(|| run.kept.clone())
        };
        let symbolized = symbolizer.symbolize(&profile, &resolve);
        warnings.extend(symbolized.warnings);
        let profile = match request.kind {
            ProfileKind::Cpu => symbolized.profile,
            ProfileKind::Mem => {
                warnings.extend(check_allocator(run, &symbolized.profile));
                edit::trim_leaf_frames(&symbolized.profile, edit::is_allocator_frame)
            }
            // std's and libc's thread machinery goes too: `top` then shows who spawned.
            ProfileKind::Block | ProfileKind::Mutex | ProfileKind::ThreadCreate => {
                edit::trim_leaf_frames(&symbolized.profile, edit::is_sync_frame)
            }
        };
        let binary = target_name(&run.original);
        let mut labelled = match &run.test {
            Some(t) => {
                let test = labels::ProcessTest {
                    name: &t.name,
                    attempt: (t.attempts > 1).then_some(t.attempt),
                };
                labels::apply_for_test(&profile, Some(&binary), test)
            }
            None => labels::apply(&profile, Some(&binary)),
        };
        if let Some((bytes, at_ns)) = take_peak(&mut labelled) {
            if peak.as_ref().is_none_or(|p: &Peak| bytes > p.bytes) {
                peak = Some(Peak {
                    bytes,
                    at_ns,
                    process: run_name(run),
                });
            }
        }
        merger.add(&labelled).map_err(|source| CliError::Profile {
            path: raw.clone(),
            source,
        })?;
        merged_count += 1;
        kept_binaries.insert(run.kept.clone());
    }
    for run in &missing {
        term::warning(format!(
            "{} wrote no {kind} profile (it ended within its first checkpoint's time, or it exec'd another program)",
            run_name(run)
        ));
    }
    for w in &warnings {
        term::warning(w);
    }
    if merger.is_empty() {
        let mut why = if missing.is_empty() {
            format!("no {kind} profile written: no test or bench binary ran under rprof")
        } else {
            format!("no {kind} profile written: every binary that ran ended without writing one")
        };
        if request.output.exists() {
            why.push_str(&format!(
                " ({} is an older file, left as it was)",
                request.output.display()
            ));
        }
        return Err(CliError::NoProfile(why));
    }
    let merged = merger.finish().map_err(|source| CliError::Profile {
        path: request.output.clone(),
        source,
    })?;
    codec::write_file(&request.output, &merged).map_err(|source| CliError::Profile {
        path: request.output.clone(),
        source,
    })?;
    print_report(&merged, request, merged_count, kept_binaries.len(), session);
    if let Some(p) = peak.filter(|p| p.bytes > 0) {
        term::status(
            "Peak heap",
            format!(
                "{} live in {} at {} UTC (sample type peak_space)",
                report::format_value(p.bytes, "bytes"),
                p.process,
                time_of_day(p.at_ns)
            ),
        );
    }
    Ok(())
}

/// Replace the harness's notes on how `binary`'s process ended (a signal while it wrote, or a
/// checkpoint read because it never did) with one sentence naming the binary and the signal,
/// which the report shows as a warning and the profile keeps as a comment.
fn explain_ending(profile: &mut Profile, binary: &str, kind: &str) {
    let mut signal = None;
    let mut checkpoint = false;
    profile.comment.retain(|&c| {
        let text = profile
            .string_table
            .get(c as usize)
            .map_or("", String::as_str);
        if text == rprof_core::CHECKPOINT_COMMENT {
            checkpoint = true;
            return false;
        }
        match rprof_core::ended_by_signal(text) {
            Some(sig) => {
                signal = Some(sig);
                false
            }
            None => true,
        }
    });
    let sentence = match (signal, checkpoint) {
        (Some(sig), _) => format!(
            "{binary} was ended by {}: its {kind} profile holds its samples up to then",
            signal_name(sig)
        ),
        (None, true) => format!(
            "{binary} was killed without a chance to write its {kind} profile (SIGKILL, or a signal its own handler turned fatal): the profile holds its samples up to its last checkpoint, at most about {} ms before the end",
            CHECKPOINT_MS
        ),
        (None, false) => return,
    };
    let id = profile.intern(&sentence);
    profile.comment.push(id);
}

/// How often the harness checkpoints a running process's profiles (rprof_harness's
/// `CHECKPOINT_EVERY`).
const CHECKPOINT_MS: u64 = 100;

/// `SIGSEGV (signal 11)`, or `signal N` for a number without a name.
fn signal_name(sig: i32) -> String {
    match crate::signals::signal_name(sig) {
        name if name.starts_with("SIG") => format!("{name} (signal {sig})"),
        other => other,
    }
}

/// Warn when a binary's `#[global_allocator]` bypasses malloc and no `ProfiledAlloc` fed the
/// profiler: its Rust allocations are missing.
/// (Returned, so that a binary run as many processes is named once.)
fn check_allocator(run: &RunRecord, profile: &Profile) -> Option<String> {
    let wrapped = profile
        .comment
        .iter()
        .any(|&c| profile.str(c) == rprof_core::PROFILED_ALLOC_COMMENT);
    if wrapped {
        return None;
    }
    matches!(uses_default_allocator(&run.kept), Ok(false)).then(|| {
        format!(
            "{} has a #[global_allocator] that bypasses malloc: no allocation of its Rust code was seen; wrap it in rprof_harness::ProfiledAlloc (see the README)",
            display_name(&run.original)
        )
    })
}

/// Whether `binary` allocates through Rust's default allocator (malloc): it then contains
/// std's `__rdl_alloc`, which a `#[global_allocator]` replaces.
fn uses_default_allocator(binary: &Path) -> std::io::Result<bool> {
    use object::{Object, ObjectSymbol};
    let data = std::fs::read(binary)?;
    let file = object::File::parse(&*data).map_err(std::io::Error::other)?;
    let found = file
        .symbols()
        .chain(file.dynamic_symbols())
        .any(|s| s.name().is_ok_and(|n| n.contains("__rdl_alloc")));
    Ok(found)
}

/// The cargo target a binary was built from: its file name without cargo's `-<hash>` suffix
/// (`integration-0123456789abcdef` → `integration`).
fn target_name(binary: &Path) -> String {
    let name = display_name(binary);
    match name.rsplit_once('-') {
        Some((target, hash)) if hash.len() == 16 && hash.bytes().all(|c| c.is_ascii_hexdigit()) => {
            target.to_owned()
        }
        _ => name,
    }
}

/// The process whose memory profile had the largest peak-heap total.
struct Peak {
    /// Its `peak_space` total (unbiased).
    bytes: i64,
    /// When its peak was (Unix nanoseconds).
    at_ns: i64,
    /// Which process ([`run_name`]).
    process: String,
}

/// A memory profile's peak: its `peak_space` total and the time the harness noted for it,
/// whose comment is removed (the run summary says it once, for the largest).
fn take_peak(profile: &mut Profile) -> Option<(i64, i64)> {
    let at = profile
        .comment
        .iter()
        .position(|&c| rprof_core::peak_at(profile.str(c)).is_some())?;
    let at_ns = rprof_core::peak_at(profile.str(profile.comment[at]))?;
    profile.comment.remove(at);
    let index = profile.sample_index("peak_space").ok()?;
    Some((profile.total(index), at_ns))
}

/// `HH:MM:SS.mmm` of Unix nanoseconds `ns`, in UTC.
fn time_of_day(ns: i64) -> String {
    let ms = ns.div_euclid(1_000_000);
    let (s, ms) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let day = s.rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}.{ms:03}",
        day / 3600,
        day / 60 % 60,
        day % 60
    )
}

/// The binary a run ran, and the test when the process ran one (nextest): `name test
/// tests::slow (attempt 2)`.
fn run_name(run: &RunRecord) -> String {
    let binary = display_name(&run.original);
    match &run.test {
        Some(t) if t.attempts > 1 => format!("{binary} test {} (attempt {})", t.name, t.attempt),
        Some(t) => format!("{binary} test {}", t.name),
        None => binary,
    }
}

fn display_name(binary: &Path) -> String {
    binary.file_name().map_or_else(
        || binary.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Comments that mark a profile for tools rather than tell the user something.
const MARKER_COMMENTS: [&str; 3] = [
    rprof_core::PROFILED_ALLOC_COMMENT,
    bylabel::BLOCK_PROFILE_COMMENT,
    bylabel::MUTEX_PROFILE_COMMENT,
];

/// The tests that cost most, when the profile's samples carry `test` labels.
fn print_tests(profile: &Profile, kind: ProfileKind) {
    let guess = match kind {
        ProfileKind::Cpu => ProfileKindGuess::Cpu,
        ProfileKind::Mem => ProfileKindGuess::Memory,
        ProfileKind::Block => ProfileKindGuess::Block,
        ProfileKind::Mutex => ProfileKindGuess::Mutex,
        ProfileKind::ThreadCreate => return,
    };
    if bylabel::lacks_label(profile, labels::TEST) {
        return;
    }
    let Ok(table) = bylabel::per_label_rows(
        &[(guess, profile)],
        labels::TEST,
        &bylabel::LabelOptions::default(),
    ) else {
        return;
    };
    if table.rows.len() < 2 {
        return;
    }
    term::status("Tests", "that cost most (cargo rprof tests FILE for all)");
    for line in table.text(Some(TESTS_SHOWN)).lines() {
        if !line.starts_with("Showing") {
            eprintln!("{line}");
        }
    }
}

/// How many tests the run summary lists.
const TESTS_SHOWN: usize = 5;

/// The run summary: `processes` profiles of `binaries` distinct binaries were merged (many
/// processes per binary under nextest).
fn print_report(
    profile: &Profile,
    request: &Request,
    processes: usize,
    binaries: usize,
    session: &Path,
) {
    let index = profile.default_sample_index();
    let vt = profile.sample_type[index];
    let unit = profile.str(vt.unit).to_owned();
    let total = profile.total(index);
    let samples = profile
        .sample_type
        .iter()
        .position(|t| profile.str(t.r#type) == "samples")
        .map(|i| profile.total(i));
    let mut summary = format!(
        "{} ({} {}",
        request.output.display(),
        report::format_value(total, &unit),
        profile.str(vt.r#type)
    );
    if let Some(n) = samples {
        summary.push_str(&format!(" in {n} samples"));
    }
    let of_binaries = format!(
        "{binaries} binar{}",
        if binaries == 1 { "y" } else { "ies" }
    );
    if processes == binaries {
        summary.push_str(&format!(" from {of_binaries})"));
    } else {
        summary.push_str(&format!(" from {processes} processes of {of_binaries})"));
    }
    term::status("Profiled", summary);
    for c in &profile.comment {
        let text = profile.str(*c);
        if !MARKER_COMMENTS.contains(&text) {
            // The profile's comments say `rprof:` for whoever reads the file; `warning:` says
            // it here.
            term::warning(text.strip_prefix("rprof: ").unwrap_or(text));
        }
    }
    let opts = ReportOptions {
        nodecount: Some(10),
        ..Default::default()
    };
    if let Ok(text) = report::top(profile, &opts) {
        let table: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("flat"))
            .collect();
        for line in table {
            eprintln!("{line}");
        }
    }
    print_tests(profile, request.kind);
    let file = request.output.display();
    term::status(
        "Binaries",
        format!("kept in {}", session.join("bin").display()),
    );
    term::status(
        "Next",
        format!(
            "cargo rprof top {file} --cum | cargo rprof traces {file} | cargo rprof flamegraph {file} -o {}.svg | go tool pprof -http=: {file}",
            match request.kind {
                ProfileKind::Cpu => "cpu",
                ProfileKind::Mem => "mem",
                ProfileKind::Block => "block",
                ProfileKind::Mutex => "mutex",
                ProfileKind::ThreadCreate => "threadcreate",
            }
        ),
    );
    if total == 0 {
        term::warning(match request.kind {
            ProfileKind::Cpu => "the cpu profile is empty: the binaries ran too briefly to be sampled (try a higher --cpuprofilerate)".to_owned(),
            ProfileKind::Mem => "no allocation was seen: the memory profile is empty (a #[global_allocator] that bypasses malloc needs rprof_harness::ProfiledAlloc; or try --memprofilerate 1)".to_owned(),
            ProfileKind::Block => "the block profile is empty: no thread waited on a lock, condition variable, channel, park or join".to_owned(),
            ProfileKind::Mutex => "the mutex profile is empty: no lock release woke a waiting thread".to_owned(),
            ProfileKind::ThreadCreate => "the thread-creation profile is empty: no thread was created".to_owned(),
        });
    }
}
