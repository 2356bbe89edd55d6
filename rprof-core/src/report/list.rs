//! pprof's `-list` report: the source of every function matching a regular expression, each
//! line with the flat and cum value of the samples at it, laid out as `go tool pprof -list=RE`
//! prints it.
//!
//! Semantics, as pprof's `printSource` has them:
//! - The profile is read at `lines` granularity: a node is a (function, file, line) triple, one
//!   per frame of a location, so the lines of a function inlined into another are listed under
//!   the inlined function (its own file and lines), and the caller's line that called it gets
//!   their cum. Flat goes to the innermost frame of a sample's leaf location.
//! - Functions are matched by name and listed by name, then by file; one listing per (function,
//!   file). Each shows the lines from the function's first line (`start_line`, or 5 lines above
//!   the first sampled line when the profile has none) to 5 lines after its last sampled line,
//!   cut at the end of the file.
//! - The header's total is the whole profile's, before any filter (pprof's `Total:`).
//! - The granularity option does not apply (pprof forces `lines`); `unit` does.
//! - Sources are read from the paths in the profile: an absolute path as is, a relative one
//!   under each directory of the source path (the current directory by default) and their
//!   parents; pprof's `-trim_path` and its heuristic that cuts a path up to the source path's
//!   last component apply. When that finds nothing, a `/rustc/<commit>/library/...` path (the
//!   standard library) is read from the toolchain's `rust-src` component when its commit is the
//!   profile's. What cannot be found prints pprof's own error line, ` Error: open PATH: no such
//!   file or directory` or ` Error: could not find file PATH on path DIR`; a function without
//!   any file prints `No source information for NAME`.
//!
//! Differences from `go tool pprof -list`:
//! - The standard library's source is found in `rust-src` (pprof prints the error line there).
//! - When nodes of one function disagree on its start line (one function name in two binaries
//!   built differently), pprof's range depends on Go's map order; here the earliest start and
//!   the last sampled line decide.
//! - Lines are read as UTF-8 (invalid bytes replaced); pprof copies bytes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use regex::Regex;

use super::graph::{MergedSample, Prepared};
use super::units::{percentage, scaled_label};
use super::{drawn, unfiltered_total, ReportOptions, Selected};
use crate::proto::Profile;
use crate::{Error, Result};

/// Lines shown before the first and after the last sampled line (pprof's margin).
const MARGIN: i64 = 5;

/// One function's listing in one source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionListing {
    /// The function's name, as in the profile.
    pub name: String,
    /// The source file as the profile names it (cleaned, with pprof's trim rules applied);
    /// empty when the profile has no file for the function.
    pub file: String,
    /// Where the source was read; `None` when it was not found.
    pub path: Option<PathBuf>,
    /// Sum of the flat values of the function's lines in this file.
    pub flat: i64,
    /// Sum of the cum values of the function's lines in this file.
    pub cum: i64,
    /// The lines shown, in order: the function's range when the source was found, else only
    /// the lines with samples.
    pub lines: Vec<SourceLine>,
}

/// One source line of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLine {
    /// Line number, from 1.
    pub number: i64,
    /// Value of the samples whose leaf frame is at this line.
    pub flat: i64,
    /// Value of the samples with a frame at this line, each sample once.
    pub cum: i64,
    /// The line's text (without its newline); `None` when the source was not found.
    pub text: Option<String>,
}

/// Where `Rust`'s standard library sources are looked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RustSrc {
    /// The `rust-src` component of the toolchain `rustc` runs (found through
    /// `rustc --print sysroot` and `rustc -vV` the first time a `/rustc/` path is read).
    #[default]
    Toolchain,
    /// A `library/`-holding directory (what `lib/rustlib/src/rust` is in a sysroot), for the
    /// commit hash given (`None` accepts any commit).
    At {
        /// The directory holding `library/`.
        root: PathBuf,
        /// The rustc commit these sources are of.
        commit: Option<String>,
    },
    /// Never map `/rustc/` paths.
    Off,
}

/// Where a listing's sources are read from: pprof's `-source_path` and `-trim_path`, and the
/// toolchain's `rust-src` for the standard library. `SourceSearch::default()` reads the paths
/// as the profile has them (relative ones from the current directory) and the standard library
/// from the installed `rust-src`.
#[derive(Debug, Default)]
pub struct SourceSearch {
    /// Directories to search relative paths in, separated by `:` (pprof's `-source_path`);
    /// `None` searches the current directory.
    pub source_path: Option<String>,
    /// Path prefixes to cut from the profile's paths, separated by `:` (pprof's `-trim_path`).
    pub trim_path: Option<String>,
    /// Where the standard library's sources are.
    pub rust_src: RustSrc,
    /// Files read so far, by the profile's path: their lines and where they were found, or
    /// pprof's message for why not.
    cache: Mutex<HashMap<String, std::result::Result<SourceFile, String>>>,
    /// The toolchain's `rust-src` directory and commit, once asked.
    toolchain: OnceLock<Option<(PathBuf, String)>>,
}

impl Clone for SourceSearch {
    fn clone(&self) -> Self {
        SourceSearch {
            source_path: self.source_path.clone(),
            trim_path: self.trim_path.clone(),
            rust_src: self.rust_src.clone(),
            cache: Mutex::default(),
            toolchain: OnceLock::new(),
        }
    }
}

/// A source file read into lines.
#[derive(Debug, Clone)]
struct SourceFile {
    path: PathBuf,
    lines: Vec<String>,
}

impl SourceSearch {
    /// A search with pprof's `-source_path` and `-trim_path` (`:`-separated lists; `None` as
    /// in [`SourceSearch::default`]) and the standard library's sources in `rust_src`.
    pub fn new(source_path: Option<String>, trim_path: Option<String>, rust_src: RustSrc) -> Self {
        SourceSearch {
            source_path,
            trim_path,
            rust_src,
            ..Default::default()
        }
    }

    /// The search directories, as pprof splits its source path (the current directory when
    /// none is given).
    fn search_dirs(&self) -> Vec<String> {
        match &self.source_path {
            Some(p) => split_list(p),
            None => std::env::current_dir()
                .map(|d| vec![d.to_string_lossy().into_owned()])
                .unwrap_or_default(),
        }
    }

    /// The name a listing shows for `file`: pprof's `trimPath` against the given source path
    /// (not the current directory), then cleaned.
    fn display_name(&self, file: &str) -> String {
        let search = self.source_path.clone().unwrap_or_default();
        clean(&trim_path(
            file,
            self.trim_path.as_deref().unwrap_or(""),
            &search,
        ))
    }

    /// Read `file` (cached), or say why it cannot be, in pprof's words.
    fn read(&self, file: &str) -> std::result::Result<SourceFile, String> {
        let cached = self.cache.lock().ok().and_then(|c| c.get(file).cloned());
        if let Some(found) = cached {
            return found;
        }
        let found = self.find(file).and_then(|path| {
            let bytes = std::fs::read(&path).map_err(|e| go_error("read", &path, &e))?;
            let text = String::from_utf8_lossy(&bytes);
            let lines = text
                .split_terminator('\n')
                .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
                .collect();
            Ok(SourceFile { path, lines })
        });
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(file.to_owned(), found.clone());
        }
        found
    }

    /// pprof's `openSourceFile`, then the standard library's `rust-src`.
    fn find(&self, file: &str) -> std::result::Result<PathBuf, String> {
        let dirs = self.search_dirs();
        let pprof = open_source_file(file, &dirs, self.trim_path.as_deref().unwrap_or(""));
        if pprof.is_ok() {
            return pprof;
        }
        if let Some(path) = self.rust_src_path(file) {
            return Ok(path);
        }
        pprof
    }

    /// `/rustc/<commit>/library/...` in the `rust-src` of that commit, if it is there.
    fn rust_src_path(&self, file: &str) -> Option<PathBuf> {
        let rest = file.strip_prefix("/rustc/")?;
        let (commit, inner) = rest.split_once('/')?;
        if !inner.starts_with("library/") {
            return None;
        }
        let (root, want) = match &self.rust_src {
            RustSrc::Off => return None,
            RustSrc::At { root, commit } => (root.clone(), commit.clone()),
            RustSrc::Toolchain => {
                let (root, commit) = self.toolchain.get_or_init(toolchain_rust_src).clone()?;
                (root, Some(commit))
            }
        };
        if want.is_some_and(|w| w != commit) {
            return None;
        }
        let path = root.join(inner);
        path.is_file().then_some(path)
    }
}

/// The toolchain's `lib/rustlib/src/rust` and its commit hash, when `rustc` runs and the
/// component is installed.
fn toolchain_rust_src() -> Option<(PathBuf, String)> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&rustc)
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let sysroot = run(&["--print", "sysroot"])?;
    let version = run(&["-vV"])?;
    let commit = version
        .lines()
        .find_map(|l| l.strip_prefix("commit-hash: "))?
        .trim()
        .to_owned();
    let root = Path::new(sysroot.trim()).join("lib/rustlib/src/rust");
    root.join("library").is_dir().then_some((root, commit))
}

/// Go's `filepath.SplitList`: `:`-separated, empty for an empty string.
fn split_list(list: &str) -> Vec<String> {
    if list.is_empty() {
        return Vec::new();
    }
    list.split(':').map(str::to_owned).collect()
}

/// Go's `filepath.Clean` for slash-separated paths (shared with the graph's node keys).
pub(crate) use super::graph::clean_path as clean;

/// Go's `filepath.Base`.
fn go_base(path: &str) -> String {
    super::graph::base_name(path).to_owned()
}

/// pprof's `trimPath`: without trim prefixes, cut the path after the first `/<base>/` of a
/// search directory; then cut a trim prefix (or `/proc/self/cwd/`).
fn trim_path(path: &str, trim: &str, search: &str) -> String {
    if trim.is_empty() {
        for dir in split_list(search) {
            let want = format!("/{}/", go_base(&dir));
            if let Some(found) = path.find(&want) {
                return path[found + want.len()..].to_owned();
            }
        }
    }
    let mut prefixes = split_list(trim);
    prefixes.push("/proc/self/cwd/./".to_owned());
    prefixes.push("/proc/self/cwd/".to_owned());
    for mut prefix in prefixes {
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        if let Some(rest) = path.strip_prefix(&prefix) {
            return rest.to_owned();
        }
    }
    path.to_owned()
}

/// pprof's `openSourceFile`: an absolute path must exist; a relative one is searched in each
/// directory and its parents. The error is pprof's message.
fn open_source_file(
    file: &str,
    dirs: &[String],
    trim: &str,
) -> std::result::Result<PathBuf, String> {
    let path = trim_path(file, trim, &dirs.join(":"));
    if path.starts_with('/') {
        return match std::fs::File::open(&path) {
            Ok(_) => Ok(PathBuf::from(path)),
            Err(e) => Err(go_error("open", Path::new(&path), &e)),
        };
    }
    for dir in dirs {
        let mut dir = clean(dir);
        loop {
            let candidate = clean(&format!("{dir}/{path}"));
            if std::fs::File::open(&candidate).is_ok() {
                return Ok(PathBuf::from(candidate));
            }
            let parent = go_dir(&dir);
            if parent == dir {
                break;
            }
            dir = parent;
        }
    }
    Err(format!(
        "could not find file {path} on path {}",
        dirs.join(":")
    ))
}

/// Go's `filepath.Dir`.
fn go_dir(path: &str) -> String {
    match path.rfind('/') {
        Some(0) => "/".to_owned(),
        Some(i) => clean(&path[..i]),
        None => ".".to_owned(),
    }
}

/// An I/O error as Go's `os` package words it: `open /x: no such file or directory`.
fn go_error(op: &str, path: &Path, e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    let text = match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    };
    format!("{op} {}: {text}", path.display())
}

/// A node of the line-level graph: pprof's `NodeInfo` at `lines` granularity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LineKey {
    name: String,
    file: String,
    line: i64,
    objfile: String,
    start_line: i64,
}

/// Flat and cum per line node, for the sample type chosen.
struct LineGraph {
    keys: Vec<LineKey>,
    flat: Vec<i64>,
    cum: Vec<i64>,
}

fn line_graph(
    profile: &Profile,
    samples: &[MergedSample<'_>],
    index: usize,
    sources: &SourceSearch,
) -> LineGraph {
    let mut g = LineGraph {
        keys: Vec::new(),
        flat: Vec::new(),
        cum: Vec::new(),
    };
    let mut ids: HashMap<LineKey, usize> = HashMap::new();
    let objfiles: HashMap<u64, &str> = profile
        .mapping
        .iter()
        .map(|m| (m.id, profile.str(m.filename)))
        .collect();
    let mut display: HashMap<&str, String> = HashMap::new();
    let mut loc_nodes: HashMap<u64, Vec<usize>> = HashMap::new();
    for loc in &profile.location {
        let objfile = objfiles.get(&loc.mapping_id).copied().unwrap_or("");
        let mut keys = Vec::new();
        if loc.line.is_empty() {
            keys.push(LineKey {
                name: String::new(),
                file: String::new(),
                line: 0,
                objfile: objfile.to_owned(),
                start_line: 0,
            });
        }
        for line in &loc.line {
            let key = match profile.function_by_id(line.function_id) {
                None => LineKey {
                    name: String::new(),
                    file: String::new(),
                    line: 0,
                    objfile: objfile.to_owned(),
                    start_line: 0,
                },
                Some(f) => {
                    let raw = profile.str(f.filename);
                    let file = if raw.is_empty() {
                        String::new()
                    } else {
                        display
                            .entry(raw)
                            .or_insert_with(|| sources.display_name(raw))
                            .clone()
                    };
                    let name = match profile.str(f.name) {
                        "" => profile.str(f.system_name),
                        n => n,
                    };
                    LineKey {
                        name: name.to_owned(),
                        file,
                        line: line.line,
                        objfile: objfile.to_owned(),
                        start_line: f.start_line,
                    }
                }
            };
            keys.push(key);
        }
        let nodes = keys
            .into_iter()
            .map(|k| {
                *ids.entry(k).or_insert_with_key(|k| {
                    g.keys.push(k.clone());
                    g.flat.push(0);
                    g.cum.push(0);
                    g.keys.len() - 1
                })
            })
            .collect();
        loc_nodes.insert(loc.id, nodes);
    }
    // The sample number that last counted each node's cum (once per sample, recursion or not).
    let mut seen = vec![usize::MAX; g.keys.len()];
    for (sample_no, sample) in samples.iter().enumerate() {
        let w = sample.values.get(index).copied().unwrap_or(0);
        if w == 0 {
            continue;
        }
        let mut leaf = None;
        for &loc in sample.locations.iter().rev() {
            for &n in loc_nodes
                .get(&loc)
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .rev()
            {
                if seen[n] != sample_no {
                    seen[n] = sample_no;
                    g.cum[n] += w;
                }
                leaf = Some(n);
            }
        }
        if let Some(n) = leaf {
            g.flat[n] += w;
        }
    }
    g
}

/// Compile the report's regular expression, naming it in the error as pprof does.
pub(crate) fn compile_symbol(regex: &str) -> Result<Regex> {
    Regex::new(regex).map_err(|e| {
        let text = e.to_string();
        let why = text.lines().last().unwrap_or_default();
        Error::Filter(format!(
            "parsing argument regexp {regex}: {}",
            why.trim_start_matches("error: ")
        ))
    })
}

/// Check that `regex` is a valid regular expression for [`list`] (or `disasm`), so that a
/// command line can fail before reading anything.
pub fn check_regex(regex: &str) -> Result<()> {
    compile_symbol(regex).map(drop)
}

/// The listings `list` prints: for every function whose name matches `regex` and that has
/// samples (after the options' filters), one listing per source file, sorted by name then
/// file. No match is [`Error::NoMatch`].
pub fn listings(
    profile: &Profile,
    opts: &ReportOptions,
    regex: &str,
    sources: &SourceSearch,
) -> Result<Vec<FunctionListing>> {
    Ok(collect(profile, opts, regex, sources)?.1)
}

/// The listings and the header's total, formatted.
fn collect(
    profile: &Profile,
    opts: &ReportOptions,
    regex: &str,
    sources: &SourceSearch,
) -> Result<(Header, Vec<FunctionListing>)> {
    let symbol = compile_symbol(regex)?;
    let original = profile;
    let mut keep = None;
    let profile = drawn(original, opts, &mut keep)?;
    let prepared = Prepared::new(profile);
    let mut sel = Selected::new(profile, &prepared, opts)?;
    sel.total = unfiltered_total(original, opts, &sel);
    let header = Header {
        total: sel.total,
        unit: sel.unit.to_owned(),
        output_unit: opts.unit.clone().unwrap_or_else(|| "minimum".to_owned()),
    };

    let g = line_graph(profile, &prepared.samples, sel.index, sources);
    // Function name -> file -> nodes.
    let mut functions: BTreeMap<&str, BTreeMap<&str, Vec<usize>>> = BTreeMap::new();
    for (n, key) in g.keys.iter().enumerate() {
        if (g.flat[n] == 0 && g.cum[n] == 0) || !symbol.is_match(&key.name) {
            continue;
        }
        functions
            .entry(&key.name)
            .or_default()
            .entry(&key.file)
            .or_default()
            .push(n);
    }
    if functions.is_empty() {
        return Err(Error::NoMatch(format!(
            "no matches found for regexp: {regex}"
        )));
    }
    let mut out = Vec::new();
    for (name, files) in functions {
        for (file, nodes) in files {
            if file.is_empty() {
                // pprof skips nodes without a file; a function with no other prints
                // "No source information".
                continue;
            }
            out.push(listing(name, file, &nodes, &g, sources));
        }
        if out.last().is_none_or(|l| l.name != name) {
            out.push(FunctionListing {
                name: name.to_owned(),
                file: String::new(),
                path: None,
                flat: 0,
                cum: 0,
                lines: Vec::new(),
            });
        }
    }
    Ok((header, out))
}

fn listing(
    name: &str,
    file: &str,
    nodes: &[usize],
    g: &LineGraph,
    sources: &SourceSearch,
) -> FunctionListing {
    let flat: i64 = nodes.iter().map(|&n| g.flat[n]).sum();
    let cum: i64 = nodes.iter().map(|&n| g.cum[n]).sum();
    let mut per_line: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for &n in nodes {
        let e = per_line.entry(g.keys[n].line).or_default();
        e.0 += g.flat[n];
        e.1 += g.cum[n];
    }
    // pprof's range: from the function's start line (or MARGIN above a sampled line) to
    // MARGIN below the last sampled line.
    let start = nodes
        .iter()
        .map(|&n| match g.keys[n].start_line {
            0 => g.keys[n].line - MARGIN,
            s => s,
        })
        .min()
        .unwrap_or(1)
        .max(1);
    let end = nodes.iter().map(|&n| g.keys[n].line).max().unwrap_or(0) + MARGIN;
    let (path, lines) = match sources.read(file) {
        Ok(src) => {
            let mut lines = Vec::new();
            for number in start..=end {
                let Some(text) = usize::try_from(number - 1)
                    .ok()
                    .and_then(|i| src.lines.get(i))
                else {
                    break;
                };
                let (flat, cum) = per_line.get(&number).copied().unwrap_or_default();
                lines.push(SourceLine {
                    number,
                    flat,
                    cum,
                    text: Some(text.clone()),
                });
            }
            (Some(src.path), lines)
        }
        Err(_) => {
            let lines = per_line
                .iter()
                .filter(|(_, &(f, c))| f != 0 || c != 0)
                .map(|(&number, &(flat, cum))| SourceLine {
                    number,
                    flat,
                    cum,
                    text: None,
                })
                .collect();
            (None, lines)
        }
    };
    FunctionListing {
        name: name.to_owned(),
        file: file.to_owned(),
        path,
        flat,
        cum,
        lines,
    }
}

/// What the text report's header needs.
struct Header {
    total: i64,
    unit: String,
    /// The `--unit` values are printed in.
    output_unit: String,
}

/// pprof's `-list` report as text: `Total:`, then for each listing a `ROUTINE` line, the
/// `(flat, cum)` line and the source lines with their values (`.` for zero), or pprof's
/// error line when the source was not found.
pub fn list(
    profile: &Profile,
    opts: &ReportOptions,
    regex: &str,
    sources: &SourceSearch,
) -> Result<String> {
    use std::fmt::Write as _;
    let (header, listings) = collect(profile, opts, regex, sources)?;
    let format = |v: i64| scaled_label(v, &header.unit, &header.output_unit);
    let dot = |v: i64| if v == 0 { ".".to_owned() } else { format(v) };
    let mut out = String::new();
    let _ = writeln!(out, "Total: {}", format(header.total));
    for l in &listings {
        if l.file.is_empty() {
            let _ = writeln!(out, "No source information for {}", l.name);
            continue;
        }
        let _ = writeln!(
            out,
            "ROUTINE ======================== {} in {}",
            l.name, l.file
        );
        let _ = writeln!(
            out,
            "{:>10} {:>10} (flat, cum) {} of Total",
            format(l.flat),
            format(l.cum),
            percentage(l.cum, header.total)
        );
        if l.path.is_none() {
            let why = sources.read(&l.file).err().unwrap_or_default();
            let _ = writeln!(out, " Error: {why}");
            continue;
        }
        for line in &l.lines {
            let _ = writeln!(
                out,
                "{:>10} {:>10} {:>6}:{}",
                dot(line.flat),
                dot(line.cum),
                line.number,
                line.text.as_deref().unwrap_or("")
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
