//! The command line: `cargo rprof test|bench` (profile), `top|traces|flamegraph` (analyze) and
//! `web` (browse).
//!
//! `test` and `bench` take rprof's own flags anywhere before `--`; every other argument goes to
//! cargo unchanged, and everything after `--` to the binaries, as with `cargo test`. So rprof's
//! flags are picked out first and only they are parsed by clap.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::session::{ProfileKind, Request, TestRun};
use crate::{analyze, session, CliError};

/// Profile a crate's tests and benchmarks, and read pprof profiles.
#[derive(Debug, Parser)]
#[command(name = "cargo", bin_name = "cargo", version, styles = clap::builder::Styles::styled())]
pub enum CargoCli {
    /// Profile tests and benchmarks and analyze pprof profiles.
    Rprof(RprofCli),
}

/// `cargo rprof`'s subcommands.
#[derive(Debug, Args)]
#[command(version, about, long_about = None)]
pub struct RprofCli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// One subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run `cargo test` with profilers on; write pprof files (cargo test options pass through).
    #[command(after_help = PASS_THROUGH_HELP)]
    Test(ProfileArgs),
    /// Run `cargo bench` with profilers on; write pprof files (cargo bench options pass through).
    #[command(after_help = PASS_THROUGH_HELP)]
    Bench(ProfileArgs),
    /// Run `cargo nextest run` with profilers on in every test process; merge them into pprof
    /// files with a `test` label per test (nextest options pass through).
    #[command(after_help = NEXTEST_HELP)]
    Nextest(ProfileArgs),
    /// Build and run a program (like `cargo run`) with profilers on; write pprof files when it
    /// ends, also by Ctrl-C or SIGTERM (cargo build options pass through).
    #[command(after_help = RUN_HELP)]
    Run(RunArgs),
    /// Print the functions with the highest values, like `go tool pprof -top`.
    Top(TopArgs),
    /// Print every distinct stack with its value, like `go tool pprof -traces`.
    Traces(ReportArgs),
    /// Print each function with its callers and callees, like `go tool pprof -tree`.
    Tree(TopArgs),
    /// Print the callers and callees of the functions matching REGEX, like
    /// `go tool pprof -peek`.
    Peek(PeekArgs),
    /// Print `top` of the later profile(s) with BASE subtracted, like
    /// `go tool pprof -top -diff_base BASE NEW`.
    Diff(DiffArgs),
    /// Write a flame graph (SVG) of a profile.
    Flamegraph(FlamegraphArgs),
    /// Print the source of functions matching REGEX with flat/cum per line, like
    /// `go tool pprof -list=REGEX`.
    #[command(after_help = LIST_HELP)]
    List(ListArgs),
    /// Print the instructions of functions matching REGEX with flat/cum per address, like
    /// `go tool pprof -disasm=REGEX`.
    #[command(after_help = DISASM_HELP)]
    Disasm(DisasmArgs),
    /// Browse profiles in a local web UI: top, flame graph, callers, peek; the same filters.
    Web(WebArgs),
    /// Print one row per test (or other label) with its CPU time, allocations and waits, from
    /// any mix of CPU, memory, block and mutex profiles.
    #[command(after_help = TESTS_HELP)]
    Tests(TestsArgs),
    /// Merge profiles of one kind (shards of `nextest run --partition`, CI matrix jobs,
    /// machines) into one file.
    #[command(after_help = MERGE_HELP)]
    Merge(MergeArgs),
    /// Compare two profiles per test (or function) and fail when something grew past a
    /// threshold: a regression gate for CI.
    #[command(after_help = CHECK_HELP)]
    Check(CheckArgs),
}

const NEXTEST_HELP: &str = "\
Usage: cargo rprof nextest run [PROFILE FLAGS] [NEXTEST OPTIONS] [-- FILTERS...]

Every option other than rprof's own is passed to `cargo nextest run` unchanged (-p,
--workspace, --partition count:1/2, --retries N, -E filtersets, --profile, ...). Each test runs
in a process of its own, so every sample carries its test's name as nextest gives it (label
`test`) and, when retries are on, the attempt (label `attempt`). A test nextest kills on timeout
keeps the profile it checkpointed up to about 100 ms before the kill, with a warning naming it.
Needs cargo-nextest (`cargo install cargo-nextest --locked`).

Examples:
  cargo rprof nextest run --cpuprofile cpu.prof
  cargo rprof nextest run --memprofile mem.prof --memprofilerate 1 --partition count:1/2
  cargo rprof nextest run --cpuprofile cpu.prof --retries 2";

const MERGE_HELP: &str = "\
The inputs must be of one kind (all CPU, all memory, ...): profiles whose sample types differ
are refused, naming the file. Labels, mappings and symbols are kept; equal stacks are added up.
An input may be an http:// URL of a live endpoint, fetched as `top` fetches it.

Examples:
  cargo rprof merge -o cpu.prof shard1/cpu.prof shard2/cpu.prof
  cargo rprof merge -o mem.prof --label shard linux.prof macos.prof";

const PASS_THROUGH_HELP: &str = "\
Every other option is passed to cargo unchanged (-p, --workspace, --lib, --test NAME,
--bench NAME, --features, --release, --manifest-path, --no-fail-fast, test name filters, ...),
and everything after `--` to the test or bench binaries.

The crate is built in <target-dir>/rprof with frame pointers and line tables added to your own
rustflags; your usual target/debug is not touched. Each binary is kept for symbolization, the
profiles of all binaries are merged into one file per profile kind, and the exit status is
cargo's.

Examples:
  cargo rprof test --cpuprofile cpu.prof
  cargo rprof test --memprofile mem.prof --memprofilerate 1
  cargo rprof test --blockprofile block.prof --mutexprofile mutex.prof
  cargo rprof test -p mycrate --cpuprofile cpu.prof --cpuprofilerate 1000 -- hot_path
  cargo rprof bench --cpuprofile cpu.prof --bench parse";

const RUN_HELP: &str = "\
Every other option is passed to cargo build unchanged (--bin NAME, --example NAME, -p,
--features, --release, --manifest-path, ...), and everything after `--` to the program.

The program runs as your own child of `cargo rprof`, under the profilers, built in
<target-dir>/rprof with frame pointers and line tables. Its profiles are written when it ends:
when main returns, on exit(), and on SIGINT, SIGTERM or SIGHUP (Ctrl-C, `kill PID` sent to
cargo rprof or to the program) unless the program handles that signal itself. The exit status
is the program's; a program ended by a signal ends cargo rprof by the same signal.

Examples:
  cargo rprof run --cpuprofile cpu.prof -- --input big.json
  cargo rprof run --example demo --memprofile mem.prof --memprofilerate 1
  cargo rprof run --bin server --release --cpuprofile cpu.prof --blockprofile block.prof";

/// `cargo rprof run`'s flags: the profiles, and the live endpoints.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Serve live profiles from inside the program at ADDR (HOST:PORT, port 0 for a free one),
    /// on Go's net/http/pprof paths: /debug/pprof/heap, profile?seconds=N, ... The memory,
    /// block and mutex profilers run for them even without their --*profile flags. Loopback
    /// addresses only, unless --http-allow-remote is given.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// Allow a non-loopback --http address. Every request must then carry the random token
    /// printed at start (`?token=...`).
    #[arg(long, requires = "http")]
    pub http_allow_remote: bool,
}

/// rprof's own flags for `test`, `bench` and `run`.
#[derive(Debug, Clone, Args)]
pub struct ProfileArgs {
    /// Write a CPU profile (pprof format, gzip) to FILE.
    #[arg(long, value_name = "FILE")]
    pub cpuprofile: Option<PathBuf>,
    /// CPU samples per second of CPU time, per thread.
    #[arg(long, value_name = "HZ", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub cpuprofilerate: u32,
    /// Write a memory (heap) profile to FILE: allocations by stack, and what is still live
    /// at exit.
    #[arg(long, value_name = "FILE")]
    pub memprofile: Option<PathBuf>,
    /// Sample one allocation per BYTES allocated on average; 1 records every allocation
    /// exactly; 0 means the default, 524288 (512 KiB), as with `go test`.
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub memprofilerate: u64,
    /// Write a block profile to FILE: where threads waited on locks, condition variables,
    /// channels, park and join, and for how long.
    #[arg(long, value_name = "FILE")]
    pub blockprofile: Option<PathBuf>,
    /// Record every wait of NS nanoseconds or more; shorter ones with probability
    /// duration/NS (1 = every wait).
    #[arg(long, value_name = "NS", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub blockprofilerate: u64,
    /// Write a mutex profile to FILE: the stacks that released contended locks, valued by the
    /// delay their waiters incurred.
    #[arg(long, value_name = "FILE")]
    pub mutexprofile: Option<PathBuf>,
    /// Record about 1 in N contended releases, scaled by N.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub mutexprofilefraction: u64,
    /// Write a thread-creation profile to FILE: the stacks that created threads, one count per
    /// thread (Go's `threadcreate` profile).
    #[arg(long, value_name = "FILE")]
    pub threadcreateprofile: Option<PathBuf>,
    /// Write profile files into DIR instead of the current directory.
    #[arg(long, value_name = "DIR")]
    pub outputdir: Option<PathBuf>,
    /// Options for cargo, and after `--` for the binaries (see below).
    #[arg(value_name = "CARGO_OPTIONS", num_args = 0.., allow_hyphen_values = true)]
    pub passthrough: Vec<OsString>,
}

/// Options shared by the report commands.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("granularity").multiple(false)))]
#[command(group(clap::ArgGroup::new("base_profile").multiple(false)))]
pub struct ReportArgs {
    /// The profiles to read (pprof format, gzip or raw); several are merged, as
    /// `go tool pprof A B` merges them. An http:// URL (e.g.
    /// http://localhost:6060/debug/pprof/heap) is fetched, and a copy saved in $RPROF_DIR
    /// (default ./pprof), wherever a FILE is read.
    #[arg(value_name = "FILE", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// For http:// inputs: ask the server to profile for N seconds (adds `seconds=N` to the
    /// URL, as `go tool pprof -seconds`; a CPU profile URL's default is the server's, 30).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub seconds: Option<u64>,
    /// Which sample type to report, e.g. `samples`, `cpu`, `alloc_space` (default: the
    /// profile's default).
    #[arg(
        long = "sample-index",
        visible_alias = "sample_index",
        value_name = "NAME"
    )]
    pub sample_index: Option<String>,
    /// Subtract this profile: show what changed (equal stacks cancel out).
    #[arg(long, value_name = "FILE", group = "base_profile")]
    pub base: Option<PathBuf>,
    /// Compare with this profile: like --base, with percentages relative to it.
    #[arg(
        long = "diff-base",
        visible_alias = "diff_base",
        value_name = "FILE",
        group = "base_profile"
    )]
    pub diff_base: Option<PathBuf>,
    /// Show values in this unit (`ns`, `ms`, `s`, `B`, `kB`, `MB`, ...; default: the coarsest
    /// unit that keeps the smallest value readable).
    #[arg(long, value_name = "UNIT")]
    pub unit: Option<String>,
    /// Report per function (the default).
    #[arg(long, group = "granularity")]
    pub functions: bool,
    /// Report per function and source file.
    #[arg(long, group = "granularity")]
    pub filefunctions: bool,
    /// Report per source file.
    #[arg(long = "files", group = "granularity")]
    pub files_granularity: bool,
    /// Report per source line.
    #[arg(long, group = "granularity")]
    pub lines: bool,
    /// Report per instruction address.
    #[arg(long, group = "granularity")]
    pub addresses: bool,
    #[command(flatten)]
    pub filters: FilterArgs,
}

impl ReportArgs {
    /// The granularity the flags ask for.
    pub fn granularity(&self) -> rprof_core::report::Granularity {
        use rprof_core::report::Granularity as G;
        match () {
            () if self.filefunctions => G::FileFunctions,
            () if self.files_granularity => G::Files,
            () if self.lines => G::Lines,
            () if self.addresses => G::Addresses,
            () => G::Functions,
        }
    }
}

/// pprof's sample filters, with pprof's meaning (regular expressions match a frame's function
/// name, its file name, or its binary's path).
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Keep only samples with a frame matching REGEX.
    #[arg(long, value_name = "REGEX")]
    pub focus: Option<String>,
    /// Drop samples with a frame matching REGEX.
    #[arg(long, value_name = "REGEX")]
    pub ignore: Option<String>,
    /// Remove frames matching REGEX from the stacks (their time goes to their callers).
    #[arg(long, value_name = "REGEX")]
    pub hide: Option<String>,
    /// Keep only frames matching REGEX in the stacks.
    #[arg(long, value_name = "REGEX")]
    pub show: Option<String>,
    /// Cut each stack above its outermost frame matching REGEX; drop stacks without one.
    #[arg(long = "show-from", visible_alias = "show_from", value_name = "REGEX")]
    pub show_from: Option<String>,
    /// Keep only samples with a matching label: KEY=REGEX,... for a string label (REGEX alone
    /// matches `key:value` of any label), or a number range of a numeric label
    /// (`bytes=1kB:64kB`, `bytes=:2kB`, `4MB:`).
    #[arg(long, value_name = "[KEY=]VALUE")]
    pub tagfocus: Option<String>,
    /// Drop samples with a matching label (the same forms as --tagfocus).
    #[arg(long, value_name = "[KEY=]VALUE")]
    pub tagignore: Option<String>,
    /// Cut each stack below its innermost frame matching REGEX (callees are dropped; their
    /// time goes to the matching frame).
    #[arg(
        long = "prune-from",
        visible_alias = "prune_from",
        value_name = "REGEX"
    )]
    pub prune_from: Option<String>,
}

impl FilterArgs {
    /// The filters for rprof-core's reports.
    pub fn filters(&self) -> rprof_core::report::filter::Filters {
        rprof_core::report::filter::Filters {
            focus: self.focus.clone(),
            ignore: self.ignore.clone(),
            hide: self.hide.clone(),
            show: self.show.clone(),
            show_from: self.show_from.clone(),
            tagfocus: self.tagfocus.clone(),
            tagignore: self.tagignore.clone(),
            prune_from: self.prune_from.clone(),
        }
    }
}

/// `cargo rprof top`.
#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub report: ReportArgs,
    /// Sort by cumulative value (the function and everything it calls) instead of flat.
    #[arg(long)]
    pub cum: bool,
    /// Show at most N functions (default: all for `top` and `diff`, 80 for `tree`).
    #[arg(short = 'n', long = "nodecount", value_name = "N")]
    pub nodecount: Option<usize>,
}

/// `cargo rprof peek`.
#[derive(Debug, Clone, Args)]
pub struct PeekArgs {
    /// Show the functions whose name matches this regular expression.
    #[arg(value_name = "REGEX")]
    pub regex: String,
    #[command(flatten)]
    pub report: ReportArgs,
}

/// `cargo rprof merge`.
#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// Where to write the merged profile (replaced atomically).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// Label every sample with KEY = the file name of the input it came from (e.g.
    /// `--label shard`), so reports can still tell the inputs apart.
    #[arg(long, value_name = "KEY")]
    pub label: Option<String>,
    /// The profiles to merge.
    #[arg(value_name = "PROFILE", required = true, num_args = 1..)]
    pub inputs: Vec<PathBuf>,
}

/// `cargo rprof diff`.
#[derive(Debug, Clone, Args)]
pub struct DiffArgs {
    /// The profile to compare with (the "before").
    #[arg(value_name = "BASE")]
    pub base_file: PathBuf,
    #[command(flatten)]
    pub top: TopArgs,
}

/// `cargo rprof flamegraph`.
#[derive(Debug, Clone, Args)]
pub struct FlamegraphArgs {
    #[command(flatten)]
    pub report: ReportArgs,
    /// Where to write the SVG.
    #[arg(short = 'o', long = "output", value_name = "SVG")]
    pub output: PathBuf,
    /// Title of the graph (default: the profile's type and file name).
    #[arg(long)]
    pub title: Option<String>,
}

const LIST_HELP: &str = "\
Sources are read from the paths in the profile; the standard library's /rustc/<commit>/...
paths from the toolchain's rust-src component (rustup component add rust-src). The listing works
per line whatever the granularity flags say, as pprof's does.

Example:
  cargo rprof list 'mycrate::parse' cpu.prof";

const DISASM_HELP: &str = "\
Instructions are read from the profiled binary, or from the copy `cargo rprof test` kept of it
when target/ holds another build. The regular expression must also match a sampled function
(as in pprof, so do not anchor it with `$`). x86-64 only; the report works per address
whatever the granularity flags say.

Example:
  cargo rprof disasm 'mycrate::parse' cpu.prof";

/// `cargo rprof list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Regular expression selecting the functions to list (matched against function names).
    #[arg(value_name = "REGEX")]
    pub regex: String,
    #[command(flatten)]
    pub report: ReportArgs,
    #[command(flatten)]
    pub sources: SourceArgs,
}

/// Where `list` and the web UI's source view look for source files.
#[derive(Debug, Clone, Default, Args)]
pub struct SourceArgs {
    /// Directories to search relative source paths in, separated by `:` (default: the current
    /// directory and its parents), as pprof's -source_path.
    #[arg(
        long = "source-path",
        visible_alias = "source_path",
        value_name = "DIRS"
    )]
    pub source_path: Option<String>,
    /// Path prefixes to cut from the profile's source paths before searching, separated by
    /// `:`, as pprof's -trim_path.
    #[arg(
        long = "trim-path",
        visible_alias = "trim_path",
        value_name = "PREFIXES"
    )]
    pub trim_path: Option<String>,
}

/// `cargo rprof disasm`.
#[derive(Debug, Clone, Args)]
pub struct DisasmArgs {
    /// Regular expression selecting the symbols to disassemble (matched against the binary's
    /// symbol names, mangled or demangled).
    #[arg(value_name = "REGEX")]
    pub regex: String,
    #[command(flatten)]
    pub report: ReportArgs,
    /// Print instructions in Intel syntax instead of AT&T (GNU as, objdump's default).
    #[arg(long = "intel-syntax", visible_alias = "intel_syntax")]
    pub intel_syntax: bool,
}

/// `cargo rprof web`.
#[derive(Debug, Clone, Args)]
pub struct WebArgs {
    /// The profiles, base, sample type, granularity and filters the page starts with.
    #[command(flatten)]
    pub report: ReportArgs,
    /// Where to serve the page: HOST:PORT, port 0 for a free one. Only loopback addresses
    /// unless --http-allow-remote is given.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub http: String,
    /// Serve on a non-loopback --http address: anyone who can reach it sees the profiles.
    #[arg(long)]
    pub http_allow_remote: bool,
    /// Do not open a browser (none is opened anyway without a display).
    #[arg(long)]
    pub no_browser: bool,
    #[command(flatten)]
    pub sources: SourceArgs,
}

const TESTS_HELP: &str = "\
Each file is recognised by its sample types: CPU (column cpu), memory (alloc_bytes,
alloc_objects, inuse_bytes, and peak_bytes when the file has rprof's peak_space), block or mutex (block, mutex: told apart by a `block` or `mutex` in
the file name, else the column is called delay). Files of one kind add up. Samples without the
label are the row (unlabelled); each value is followed by its share of the column's total.

Examples:
  cargo rprof tests cpu.prof mem.prof block.prof
  cargo rprof tests mem.prof --sort alloc_objects -n 10
  cargo rprof tests cpu.prof --by thread --format json";

const CHECK_HELP: &str = "\
A key regresses when NEW > BASE * (1 + PCT/100) and NEW - BASE >= VALUE; a key only NEW has
counts from 0. Defaults: for CPU profiles +25% and 50ms (run-to-run noise), for memory, block and
mutex profiles 0% and 0 (exact at --memprofilerate 1). Exit status: 0 nothing regressed, 1 some
key regressed (listed, largest change first), 2 bad usage or unreadable profiles.

Example (CI):
  cargo rprof test --memprofile base/mem.prof --memprofilerate 1   # on the main branch
  cargo rprof test --memprofile mem.prof --memprofilerate 1        # on the change
  cargo rprof check base/mem.prof mem.prof --sample-index alloc_objects --max-increase 0";

/// How `tests` prints its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Text,
    /// An array of objects, one per row, values in nanoseconds, bytes and counts.
    Json,
}

/// `cargo rprof tests`.
#[derive(Debug, Clone, Args)]
pub struct TestsArgs {
    /// The profiles to tabulate: any mix of CPU, memory, block and mutex profiles written by a
    /// `cargo rprof test` that labels samples per test.
    #[arg(value_name = "FILE", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Sort by this column, largest first (default: the first): cpu, alloc_bytes,
    /// alloc_objects, inuse_bytes, peak_bytes, block, mutex or delay.
    #[arg(long, value_name = "COLUMN")]
    pub sort: Option<String>,
    /// Print a text table or JSON.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = Format::Text)]
    pub format: Format,
    /// The label rows are grouped by: `test`, `thread`, `binary` or `bench`.
    #[arg(long, value_name = "LABEL", default_value = "test")]
    pub by: String,
    /// Show at most N rows (default: all).
    #[arg(short = 'n', long = "nodecount", value_name = "N")]
    pub nodecount: Option<usize>,
    #[command(flatten)]
    pub filters: FilterArgs,
}

/// A percentage that is a finite number, 0 or more.
fn parse_percent(text: &str) -> Result<f64, String> {
    let v: f64 = text
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("`{text}` is not a percentage"))?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("`{text}` is not a percentage of 0 or more"))
    }
}

/// `cargo rprof check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// The profile to compare with: the "before", e.g. of the main branch.
    #[arg(value_name = "BASE")]
    pub base: PathBuf,
    /// The profile under test: the "after", of the same kind as BASE.
    #[arg(value_name = "NEW")]
    pub new: PathBuf,
    /// Compare per value of this label (`test`, `thread`, ...) or, with `function`, per
    /// function (flat values).
    #[arg(long, value_name = "LABEL|function", default_value = "test")]
    pub by: String,
    /// The sample type to compare, e.g. `cpu`, `alloc_objects`, `delay` (default: the
    /// profile's default).
    #[arg(
        long = "sample-index",
        visible_alias = "sample_index",
        value_name = "NAME"
    )]
    pub sample_index: Option<String>,
    /// Allow NEW to exceed BASE by up to PCT percent (default: 25 for CPU, 0 for others).
    #[arg(long = "max-increase", value_name = "PCT", value_parser = parse_percent)]
    pub max_increase: Option<f64>,
    /// Ignore increases smaller than VALUE, in the sample type's unit: `10ms`, `1MB`, `3`
    /// (default: 50ms for CPU, 0 for others).
    #[arg(long = "min-delta", value_name = "VALUE")]
    pub min_delta: Option<String>,
    #[command(flatten)]
    pub filters: FilterArgs,
}

/// rprof's own flags of `test` and `bench` that take a value.
const OWN_VALUE_FLAGS: &[&str] = &[
    "--cpuprofile",
    "--cpuprofilerate",
    "--memprofile",
    "--memprofilerate",
    "--blockprofile",
    "--blockprofilerate",
    "--mutexprofile",
    "--mutexprofilefraction",
    "--threadcreateprofile",
    "--outputdir",
    "--http",
];

/// rprof's own flags without a value, among cargo's.
const OWN_SWITCHES: &[&str] = &["--http-allow-remote"];

/// Split the arguments after `test`/`bench` into rprof's own (as `--flag=value`), cargo's, and
/// the binaries' (after `--`).
fn split_profile_args(args: &[OsString]) -> (Vec<OsString>, Vec<OsString>, Vec<OsString>) {
    let (mut own, mut cargo, mut binary) = (Vec::new(), Vec::new(), Vec::new());
    let mut iter = args.iter();
    while let Some(a) = iter.next() {
        let s = a.to_string_lossy();
        if s == "--" {
            binary.extend(iter.by_ref().cloned());
            break;
        }
        if s == "-h" || s == "--help" || OWN_SWITCHES.contains(&s.as_ref()) {
            own.push(a.clone());
        } else if OWN_VALUE_FLAGS.contains(&s.as_ref()) {
            match iter.next() {
                Some(v) => {
                    let mut joined = OsString::from(format!("{s}="));
                    joined.push(v);
                    own.push(joined);
                }
                None => own.push(a.clone()),
            }
        } else if OWN_VALUE_FLAGS
            .iter()
            .any(|f| s.strip_prefix(f).is_some_and(|r| r.starts_with('=')))
        {
            own.push(a.clone());
        } else {
            cargo.push(a.clone());
        }
    }
    (own, cargo, binary)
}

/// Parse the arguments (`args[0]` is the program) into a command.
pub fn parse(mut args: Vec<OsString>) -> Result<Command, clap::Error> {
    // `cargo rprof ...` arrives as `cargo-rprof rprof ...`; accept `cargo-rprof ...` too.
    if args.get(1).is_none_or(|a| a != "rprof") {
        args.insert(1.min(args.len()), "rprof".into());
    }
    let sub = args.get(2).map(|a| a.to_string_lossy().into_owned());
    let mut passthrough = None;
    if matches!(sub.as_deref(), Some("test" | "bench" | "run" | "nextest")) {
        let (own, cargo, binary) = split_profile_args(&args[3..]);
        args.truncate(3);
        args.extend(own);
        passthrough = Some((cargo, binary));
    }
    let CargoCli::Rprof(cli) = CargoCli::try_parse_from(args)?;
    let mut command = cli.command;
    let profile_args = match &mut command {
        Command::Test(p) | Command::Bench(p) | Command::Nextest(p) => Some(p),
        Command::Run(r) => Some(&mut r.profile),
        _ => None,
    };
    if let (Some(p), Some((cargo, binary))) = (profile_args, passthrough) {
        p.passthrough = cargo;
        if !binary.is_empty() {
            p.passthrough.push("--".into());
            p.passthrough.extend(binary);
        }
    }
    Ok(command)
}

/// Turn `nextest` flags into a run of `cargo nextest run`: the one nextest command that runs
/// tests.
pub fn nextest_run(p: &ProfileArgs) -> Result<TestRun, CliError> {
    let mut run = test_run("nextest", p)?;
    match run.cargo_args.first() {
        Some(a) if a == "run" => Ok(run),
        Some(a) if a == "r" => {
            run.cargo_args[0] = "run".into();
            Ok(run)
        }
        other => Err(CliError::Usage(format!(
            "cargo rprof nextest profiles `cargo nextest run` only{}: write `cargo rprof nextest run [FLAGS]`",
            other.map_or(String::new(), |a| format!(", not `{}`", a.to_string_lossy()))
        ))),
    }
}

/// Turn parsed `run` flags into a run: as [`test_run`], where `--http` alone is enough.
pub fn program_run(r: &RunArgs) -> Result<TestRun, CliError> {
    let http = match &r.http {
        None => None,
        Some(addr) => {
            let p = &r.profile;
            let rates = [
                (ProfileKind::Cpu, u64::from(p.cpuprofilerate)),
                (ProfileKind::Mem, p.memprofilerate),
                (ProfileKind::Block, p.blockprofilerate),
                (ProfileKind::Mutex, p.mutexprofilefraction),
            ]
            .into_iter()
            .filter_map(|(kind, rate)| Some((kind.rate_env()?, rate)))
            .collect();
            Some(crate::session::LiveServer::new(
                addr,
                r.http_allow_remote,
                rates,
            )?)
        }
    };
    test_run_with("run", &r.profile, http)
}

/// Turn parsed `test`/`bench` flags into a run.
pub fn test_run(subcommand: &str, p: &ProfileArgs) -> Result<TestRun, CliError> {
    test_run_with(subcommand, p, None)
}

fn test_run_with(
    subcommand: &str,
    p: &ProfileArgs,
    http: Option<crate::session::LiveServer>,
) -> Result<TestRun, CliError> {
    let dir = p.outputdir.clone().unwrap_or_default();
    let wanted = [
        (ProfileKind::Cpu, &p.cpuprofile, u64::from(p.cpuprofilerate)),
        (ProfileKind::Mem, &p.memprofile, p.memprofilerate),
        (ProfileKind::Block, &p.blockprofile, p.blockprofilerate),
        (ProfileKind::Mutex, &p.mutexprofile, p.mutexprofilefraction),
        (ProfileKind::ThreadCreate, &p.threadcreateprofile, 1),
    ];
    let requests: Vec<Request> = wanted
        .into_iter()
        .filter_map(|(kind, file, rate)| {
            Some(Request {
                kind,
                output: dir.join(file.as_ref()?),
                rate,
            })
        })
        .collect();
    if requests.is_empty() && http.is_none() {
        return Err(CliError::Usage(format!(
            "no profile requested: add --cpuprofile, --memprofile, --blockprofile, --mutexprofile or --threadcreateprofile FILE (see `cargo rprof {subcommand} --help`)"
        )));
    }
    for (i, a) in requests.iter().enumerate() {
        if let Some(b) = requests[i + 1..].iter().find(|b| b.output == a.output) {
            return Err(CliError::Usage(format!(
                "{} and {} name the same file {}",
                a.kind.flag(),
                b.kind.flag(),
                a.output.display()
            )));
        }
    }
    if let Some(d) = &p.outputdir {
        if !d.is_dir() {
            return Err(CliError::Usage(format!(
                "--outputdir {}: no such directory",
                d.display()
            )));
        }
    }
    let split = p.passthrough.iter().position(|a| a == "--");
    let (cargo_args, binary_args) = match split {
        Some(i) => (p.passthrough[..i].to_vec(), p.passthrough[i + 1..].to_vec()),
        None => (p.passthrough.clone(), Vec::new()),
    };
    Ok(TestRun {
        subcommand: subcommand.to_owned(),
        cargo_args,
        binary_args,
        requests,
        http,
    })
}

/// Parse and run; returns the exit code.
pub fn run(args: Vec<OsString>) -> Result<i32, CliError> {
    let command = match parse(args) {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return Ok(0);
        }
        Err(e) => {
            let text = e.render().to_string();
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
            let mut first = lines.next().unwrap_or("invalid arguments").to_owned();
            // "the following required arguments were not provided:" names them on the next line.
            if first.ends_with(':') {
                if let Some(next) = lines.next() {
                    first = format!("{first} {next}");
                }
            }
            return Err(CliError::Usage(
                first.trim_start_matches("error: ").to_owned(),
            ));
        }
    };
    match &command {
        Command::Test(p) => session::run(&test_run("test", p)?),
        Command::Bench(p) => session::run(&test_run("bench", p)?),
        Command::Nextest(p) => session::run(&nextest_run(p)?),
        Command::Run(r) => crate::program::run(&program_run(r)?),
        Command::Top(a) => analyze::top(a).map(|()| 0),
        Command::Traces(a) => analyze::traces(a).map(|()| 0),
        Command::Tree(a) => analyze::tree(a).map(|()| 0),
        Command::Peek(a) => analyze::peek(a).map(|()| 0),
        Command::Diff(a) => analyze::diff(a).map(|()| 0),
        Command::Flamegraph(a) => analyze::flamegraph(a).map(|()| 0),
        Command::List(a) => analyze::list::list(a).map(|()| 0),
        Command::Disasm(a) => analyze::disasm::disasm(a).map(|()| 0),
        Command::Web(a) => crate::web::web(a).map(|()| 0),
        Command::Tests(a) => analyze::bylabel::tests(a).map(|()| 0),
        // A gate's errors exit 2, so CI tells "regressed" (1) from "could not check".
        Command::Merge(a) => analyze::merge::merge(a).map(|()| 0),
        Command::Check(a) => analyze::check::check(a).map_err(|e| CliError::Gate(Box::new(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn profile_args(args: &[&str]) -> Result<ProfileArgs, clap::Error> {
        match parse(os(args))? {
            Command::Test(p) | Command::Bench(p) | Command::Nextest(p) => Ok(p),
            other => panic!("not a profile command: {other:?}"),
        }
    }

    #[test]
    fn nextest_profiles_run_only_and_passes_its_options_through() {
        let p = profile_args(&[
            "cargo-rprof",
            "rprof",
            "nextest",
            "run",
            "--cpuprofile",
            "cpu.prof",
            "--partition",
            "count:1/2",
            "--",
            "parser",
        ])
        .unwrap();
        let run = nextest_run(&p).unwrap();
        assert_eq!(run.subcommand, "nextest");
        assert_eq!(run.cargo_args, os(&["run", "--partition", "count:1/2"]));
        assert_eq!(run.binary_args, os(&["parser"]));
        let p = profile_args(&["cargo-rprof", "nextest", "list", "--cpuprofile", "c"]).unwrap();
        let e = nextest_run(&p).unwrap_err().to_string();
        assert!(e.contains("`cargo nextest run` only, not `list`"), "{e}");
    }

    #[test]
    fn own_flags_anywhere_before_the_separator() {
        let p = profile_args(&[
            "cargo-rprof",
            "rprof",
            "test",
            "-p",
            "demo",
            "--cpuprofile",
            "cpu.prof",
            "--release",
            "--cpuprofilerate=1000",
            "--",
            "--cpuprofile",
            "x",
        ])
        .unwrap();
        assert_eq!(p.cpuprofile, Some(PathBuf::from("cpu.prof")));
        assert_eq!(p.cpuprofilerate, 1000);
        assert_eq!(
            p.passthrough,
            os(&["-p", "demo", "--release", "--", "--cpuprofile", "x"])
        );
        let run = test_run("test", &p).unwrap();
        assert_eq!(run.cargo_args, os(&["-p", "demo", "--release"]));
        assert_eq!(run.binary_args, os(&["--cpuprofile", "x"]));
    }

    #[test]
    fn cpuprofilerate_defaults_to_100_and_rejects_bad_values() {
        let p = profile_args(&["cargo-rprof", "rprof", "bench", "--cpuprofile", "c"]).unwrap();
        assert_eq!(p.cpuprofilerate, 100);
        for bad in ["0", "-5", "abc", "1000001"] {
            let e = profile_args(&["cargo-rprof", "test", "--cpuprofilerate", bad]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
        }
    }

    #[test]
    fn outputdir_is_joined_and_a_profile_is_required() {
        let dir = std::env::temp_dir();
        let p = profile_args(&[
            "cargo-rprof",
            "test",
            "--outputdir",
            dir.to_str().unwrap(),
            "--cpuprofile",
            "c.prof",
        ])
        .unwrap();
        assert_eq!(
            test_run("test", &p).unwrap().requests[0].output,
            dir.join("c.prof")
        );
        let p = profile_args(&["cargo-rprof", "test"]).unwrap();
        assert!(matches!(test_run("test", &p), Err(CliError::Usage(_))));
    }

    #[test]
    fn report_commands_parse() {
        match parse(os(&[
            "cargo-rprof",
            "rprof",
            "top",
            "f.prof",
            "--cum",
            "-n",
            "5",
        ]))
        .unwrap()
        {
            Command::Top(t) => {
                assert!(t.cum);
                assert_eq!(t.nodecount, Some(5));
            }
            other => panic!("{other:?}"),
        }
        match parse(os(&["cargo-rprof", "flamegraph", "f.prof", "-o", "x.svg"])).unwrap() {
            Command::Flamegraph(f) => assert_eq!(f.output, PathBuf::from("x.svg")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn list_and_disasm_take_the_regex_first() {
        match parse(os(&[
            "cargo-rprof",
            "list",
            "hot_.*",
            "cpu.prof",
            "--source-path",
            "/src:/other",
            "--trim_path",
            "/rustc/abc",
            "--focus",
            "x",
        ]))
        .unwrap()
        {
            Command::List(l) => {
                assert_eq!(l.regex, "hot_.*");
                assert_eq!(l.report.files, [PathBuf::from("cpu.prof")]);
                assert_eq!(l.sources.source_path.as_deref(), Some("/src:/other"));
                assert_eq!(l.sources.trim_path.as_deref(), Some("/rustc/abc"));
                assert_eq!(l.report.filters.focus.as_deref(), Some("x"));
            }
            other => panic!("{other:?}"),
        }
        match parse(os(&[
            "cargo-rprof",
            "disasm",
            "f",
            "cpu.prof",
            "--intel-syntax",
        ]))
        .unwrap()
        {
            Command::Disasm(d) => {
                assert_eq!(d.regex, "f");
                assert!(d.intel_syntax);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(os(&["cargo-rprof", "list", "only_a_regex"])).is_err());
    }

    #[test]
    fn web_takes_the_report_flags_and_its_own() {
        match parse(os(&[
            "cargo-rprof",
            "web",
            "a.prof",
            "b.prof",
            "--diff_base",
            "base.prof",
            "--focus",
            "hot",
            "--http",
            "127.0.0.1:8080",
            "--no-browser",
        ]))
        .unwrap()
        {
            Command::Web(w) => {
                assert_eq!(w.report.files.len(), 2);
                assert_eq!(w.report.diff_base, Some(PathBuf::from("base.prof")));
                assert_eq!(w.report.filters.focus.as_deref(), Some("hot"));
                assert_eq!(w.http, "127.0.0.1:8080");
                assert!(w.no_browser && !w.http_allow_remote);
            }
            other => panic!("{other:?}"),
        }
        match parse(os(&["cargo-rprof", "web", "a.prof"])).unwrap() {
            Command::Web(w) => assert_eq!(w.http, "127.0.0.1:0"),
            other => panic!("{other:?}"),
        }
        assert!(
            parse(os(&["cargo-rprof", "web"])).is_err(),
            "a file is required"
        );
    }

    #[test]
    fn tests_and_check_parse_their_flags() {
        match parse(os(&[
            "cargo-rprof",
            "tests",
            "cpu.prof",
            "mem.prof",
            "--sort",
            "alloc_objects",
            "--format",
            "json",
            "-n",
            "3",
            "--tagfocus",
            "test=a",
        ]))
        .unwrap()
        {
            Command::Tests(t) => {
                assert_eq!(t.files.len(), 2);
                assert_eq!(t.sort.as_deref(), Some("alloc_objects"));
                assert_eq!(
                    (t.format, t.by.as_str(), t.nodecount),
                    (Format::Json, "test", Some(3))
                );
                assert_eq!(t.filters.tagfocus.as_deref(), Some("test=a"));
            }
            other => panic!("{other:?}"),
        }
        match parse(os(&[
            "cargo-rprof",
            "check",
            "base.prof",
            "new.prof",
            "--max-increase",
            "10%",
            "--min-delta",
            "1MB",
            "--by",
            "function",
        ]))
        .unwrap()
        {
            Command::Check(c) => {
                assert_eq!((c.base, c.new), ("base.prof".into(), "new.prof".into()));
                assert_eq!(c.max_increase, Some(10.0));
                assert_eq!(c.min_delta.as_deref(), Some("1MB"));
                assert_eq!(c.by, "function");
            }
            other => panic!("{other:?}"),
        }
        for bad in ["-1", "x", "inf"] {
            let e = parse(os(&[
                "cargo-rprof",
                "check",
                "a",
                "b",
                "--max-increase",
                bad,
            ]));
            assert!(e.is_err(), "{bad}");
        }
        assert!(parse(os(&["cargo-rprof", "check", "only-one.prof"])).is_err());
        assert!(parse(os(&["cargo-rprof", "tests", "a", "--format", "xml"])).is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        CargoCli::command().debug_assert();
    }
}
