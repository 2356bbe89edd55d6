//! The command line: `cargo rprof test|bench` (profile) and `top|traces|flamegraph` (analyze).
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
}

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

/// rprof's own flags for `test` and `bench`.
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
    /// `go tool pprof A B` merges them.
    #[arg(value_name = "FILE", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
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
];

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
        if s == "-h" || s == "--help" {
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
    if matches!(sub.as_deref(), Some("test" | "bench")) {
        let (own, cargo, binary) = split_profile_args(&args[3..]);
        args.truncate(3);
        args.extend(own);
        passthrough = Some((cargo, binary));
    }
    let CargoCli::Rprof(cli) = CargoCli::try_parse_from(args)?;
    let mut command = cli.command;
    if let (Command::Test(p) | Command::Bench(p), Some((cargo, binary))) =
        (&mut command, passthrough)
    {
        p.passthrough = cargo;
        if !binary.is_empty() {
            p.passthrough.push("--".into());
            p.passthrough.extend(binary);
        }
    }
    Ok(command)
}

/// Turn parsed `test`/`bench` flags into a run.
pub fn test_run(subcommand: &str, p: &ProfileArgs) -> Result<TestRun, CliError> {
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
    if requests.is_empty() {
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
            let first = text.lines().next().unwrap_or("invalid arguments");
            return Err(CliError::Usage(
                first.trim_start_matches("error: ").to_owned(),
            ));
        }
    };
    match &command {
        Command::Test(p) => session::run(&test_run("test", p)?),
        Command::Bench(p) => session::run(&test_run("bench", p)?),
        Command::Top(a) => analyze::top(a).map(|()| 0),
        Command::Traces(a) => analyze::traces(a).map(|()| 0),
        Command::Tree(a) => analyze::tree(a).map(|()| 0),
        Command::Peek(a) => analyze::peek(a).map(|()| 0),
        Command::Diff(a) => analyze::diff(a).map(|()| 0),
        Command::Flamegraph(a) => analyze::flamegraph(a).map(|()| 0),
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
            Command::Test(p) | Command::Bench(p) => Ok(p),
            other => panic!("not a profile command: {other:?}"),
        }
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
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        CargoCli::command().debug_assert();
    }
}
