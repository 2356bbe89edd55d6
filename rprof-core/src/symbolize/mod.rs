//! Symbolization: turning the address-only locations our sampler writes into functions, files
//! and lines, so the profile reads well in every pprof tool (Go's pprof cannot symbolize Rust).
//!
//! - [`Symbolizer`] rewrites a whole [`Profile`]: each location of a mapping whose binary can be
//!   read gets its `line`s, innermost inlined frame first, from DWARF (through `addr2line`), or
//!   its function from the ELF symbol table when there is no DWARF for it.
//! - Every address in a profile is a return address (the sampler stores the leaf as pc + 1), so
//!   the instruction looked up is `address - 1`: the call, not what follows it.
//! - Function names are demangled Rust paths without the hash; the mangled symbol is kept as
//!   `system_name`.
//! - A binary that cannot be used (missing, not ELF, another build) leaves its mapping
//!   unsymbolized with a warning; it never fails the profile.
//!
//! Layout: `loader` opens and maps files (the only I/O and `unsafe`), `reader` lets gimli read
//! the shared map, `binary` does the lookups; this file rewrites profiles.

mod binary;
mod loader;
mod reader;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::builder::{MappingInfo, ProfileBuilder};
use crate::proto::{Label, Mapping, Profile};
use crate::{Error, Result};

use binary::Binary;

/// One source-level frame of an instruction: what a pprof `Line` and its `Function` hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    /// Demangled name without the hash, e.g. `core::ptr::drop_in_place<alloc::string::String>`.
    pub name: String,
    /// The symbol as linked (mangled), or `name` when it was never mangled.
    pub system_name: String,
    /// Source file as DWARF gives it (usually absolute); empty without DWARF.
    pub filename: String,
    /// Source line of the instruction (for an outer frame: of the inlined call); 0 if unknown.
    pub line: i64,
    /// Line where the function is declared (`DW_AT_decl_line`); 0 if unknown.
    pub start_line: i64,
}

/// Symbolizes address-only profiles against ELF binaries (DWARF with inline frames, ELF symtab
/// fallback).
///
/// Each binary is mapped and indexed once per `Symbolizer` and looked up lazily, so one
/// symbolizer should serve all profiles of a run: they share their binaries.
#[derive(Default)]
pub struct Symbolizer {
    /// Loaded binaries by the path they were read from, or why loading failed.
    binaries: HashMap<PathBuf, Result<Binary, String>>,
}

impl std::fmt::Debug for Symbolizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut paths: Vec<&PathBuf> = self.binaries.keys().collect();
        paths.sort();
        f.debug_struct("Symbolizer")
            .field("binaries", &paths)
            .finish()
    }
}

/// The result of [`Symbolizer::symbolize`]: the new profile and what could not be symbolized.
#[derive(Debug, Clone)]
pub struct Symbolized {
    /// The symbolized profile (every sample, value, label and mapping of the input kept).
    pub profile: Profile,
    /// One line per mapping left (partly) unsymbolized, saying which binary and why.
    pub warnings: Vec<String>,
}

/// The GNU build id of the ELF file at `path` (lowercase hex), `None` when it has none.
///
/// Used to check that a kept binary is the one that was profiled.
pub fn build_id(path: &Path) -> Result<Option<String>> {
    let map = loader::map_file(path)?;
    let file = loader::parse(path, &map)?;
    loader::build_id_hex(path, &file)
}

/// A binary opened for a report that reads its code (`disasm`): its bytes, the translation of
/// a process's addresses into the file's, and the DWARF frames of an instruction. Loaded as the
/// symbolizer loads binaries (separate debug files included).
#[cfg(feature = "disasm")]
pub(crate) struct CodeBinary {
    binary: Binary,
}

#[cfg(feature = "disasm")]
impl CodeBinary {
    /// Map and index the ELF file at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        Ok(CodeBinary {
            binary: loader::load(path)?,
        })
    }

    /// The file's bytes.
    pub(crate) fn data(&self) -> &[u8] {
        self.binary.data()
    }

    /// The file's GNU build id, lowercase hex.
    pub(crate) fn build_id(&self) -> Option<&str> {
        self.binary.build_id()
    }

    /// The ELF virtual address of `addr` in a process that mapped the file's `file_offset` at
    /// `memory_start`.
    pub(crate) fn vaddr(&self, memory_start: u64, file_offset: u64, addr: u64) -> Option<u64> {
        self.binary.vaddr(memory_start, file_offset, addr)
    }

    /// The frames of the instruction at ELF address `vaddr`, innermost inlined first.
    pub(crate) fn frames(&mut self, vaddr: u64) -> &[Frame] {
        self.binary.frames(vaddr)
    }
}

/// A symbol's name for people: Rust paths without the hash, anything else unchanged.
#[cfg(feature = "disasm")]
pub(crate) fn demangle(raw: &str) -> String {
    binary::demangle(raw)
}

/// How the locations of one input mapping are symbolized.
enum Plan {
    /// Keep the locations as they are (already symbolized, or the binary is unusable).
    Keep,
    /// Look addresses up in the binary cached under this path.
    Lookup(PathBuf),
}

impl Symbolizer {
    /// A symbolizer with nothing loaded yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns a new profile where every location of a mapping that could be loaded has `line`s
    /// (innermost inlined frame first) and its mapping has `has_functions`, and
    /// `has_filenames`/`has_line_numbers`/`has_inline_frames` when DWARF was available for it.
    ///
    /// `resolve(filename, build_id)` returns the path of the file to read for a mapping (e.g. a
    /// kept copy of a test binary), or `None` to use `filename` itself. Mappings that cannot be
    /// read (missing file, build-id mismatch, not ELF, `[vdso]`) are left unsymbolized and
    /// reported in [`Symbolized::warnings`]: never a panic, never an error for the whole
    /// profile. Locations that already have lines, and mappings already marked
    /// `has_functions`, are kept as they are.
    pub fn symbolize(
        &mut self,
        profile: &Profile,
        resolve: &dyn Fn(&str, &str) -> Option<PathBuf>,
    ) -> Symbolized {
        let mut warnings = Vec::new();
        let mut b = ProfileBuilder::like(profile);

        // Mappings: each keeps its place, file and build id; only those with locations that
        // need symbols are looked at.
        let needs_symbols = mappings_needing_symbols(profile);
        let mut mappings = HashMap::new();
        let mut flags: HashMap<u64, [bool; 4]> = HashMap::new();
        for m in &profile.mapping {
            let id = b.mapping(&MappingInfo {
                memory_start: m.memory_start,
                memory_limit: m.memory_limit,
                file_offset: m.file_offset,
                filename: profile.str(m.filename).to_owned(),
                build_id: profile.str(m.build_id).to_owned(),
                symbolized: false,
            });
            let (plan, new_flags) = if needs_symbols.contains(&m.id) {
                self.plan(profile, m, resolve, &mut warnings)
            } else {
                let kept = [
                    m.has_functions,
                    m.has_filenames,
                    m.has_line_numbers,
                    m.has_inline_frames,
                ];
                (Plan::Keep, kept)
            };
            // Equal mappings are one in the builder: it has what either has.
            let f = flags.entry(id).or_default();
            for (acc, new) in f.iter_mut().zip(new_flags) {
                *acc |= new;
            }
            mappings.insert(m.id, (id, m, plan));
        }

        // Locations: kept lines are re-interned, missing ones looked up.
        let mut functions = HashMap::new();
        let mut locations = HashMap::new();
        for l in &profile.location {
            let mapping = match l.mapping_id {
                0 => mapping_containing(profile, l.address).and_then(|id| mappings.get(&id)),
                id => mappings.get(&id),
            };
            let mut lines = Vec::new();
            if !l.line.is_empty() {
                for line in &l.line {
                    let f = reintern_function(&mut b, profile, &mut functions, line.function_id);
                    lines.extend(f.map(|f| (f, line.line)));
                }
            } else if let Some((_, m, Plan::Lookup(path))) = mapping {
                let binary = self.binaries.get_mut(path).and_then(|r| r.as_mut().ok());
                // Return addresses: the call is the instruction before.
                let pc = l.address.checked_sub(1);
                let vaddr = binary
                    .as_ref()
                    .zip(pc)
                    .and_then(|(bin, pc)| bin.vaddr(m.memory_start, m.file_offset, pc));
                if let (Some(binary), Some(vaddr)) = (binary, vaddr) {
                    for f in binary.frames(vaddr) {
                        let id = b.function(&f.name, &f.system_name, &f.filename, f.start_line);
                        lines.push((id, f.line));
                    }
                }
            }
            let new_mapping = mapping.map_or(0, |&(id, _, _)| id);
            locations.insert(l.id, b.location(new_mapping, l.address, &lines));
        }
        for (_, _, plan) in mappings.values() {
            let Plan::Lookup(path) = plan else { continue };
            if let Some(Ok(binary)) = self.binaries.get_mut(path) {
                if let Some(problem) = binary.take_lookup_problem() {
                    warnings.push(warning(path, format!("{problem}; used the symbol table")));
                }
            }
        }

        copy_samples(&mut b, profile, &locations);
        let [drop_frames, keep_frames, doc_url] =
            [profile.drop_frames, profile.keep_frames, profile.doc_url].map(|i| {
                if i != 0 {
                    b.string(profile.str(i))
                } else {
                    0
                }
            });
        let mut out = b.build();
        out.drop_frames = drop_frames;
        out.keep_frames = keep_frames;
        out.doc_url = doc_url;
        for m in &mut out.mapping {
            if let Some(&[functions, filenames, lines, inline]) = flags.get(&m.id) {
                m.has_functions = functions;
                m.has_filenames = filenames;
                m.has_line_numbers = lines;
                m.has_inline_frames = inline;
            }
        }
        warnings.dedup();
        Symbolized {
            profile: out,
            warnings,
        }
    }

    /// How to symbolize mapping `m`, and the `has_*` flags it gets; a mapping that cannot be
    /// symbolized keeps its flags and gets a warning.
    fn plan(
        &mut self,
        profile: &Profile,
        m: &Mapping,
        resolve: &dyn Fn(&str, &str) -> Option<PathBuf>,
        warnings: &mut Vec<String>,
    ) -> (Plan, [bool; 4]) {
        let filename = profile.str(m.filename);
        let build_id = profile.str(m.build_id);
        match self.prepare(filename, build_id, m.file_offset, resolve) {
            Ok((path, binary)) => {
                if let Some(problem) = binary.dwarf_problem() {
                    warnings.push(warning(
                        &path,
                        format!("unusable DWARF ({problem}); used the symbol table"),
                    ));
                }
                let dwarf = binary.has_dwarf();
                (Plan::Lookup(path), [true, dwarf, dwarf, dwarf])
            }
            Err(w) => {
                warnings.push(w);
                (Plan::Keep, [false; 4])
            }
        }
    }

    /// Symbolize one address of one file (used by tests and the in-process API): the frames,
    /// innermost inlined first, of the instruction at `pc` in a process that mapped the file
    /// `path` at offset `file_offset` to `memory_start`. `pc` is looked up as given: pass
    /// `return_address - 1` for a return address. Empty when nothing knows the address.
    pub fn lookup(
        &mut self,
        path: &Path,
        memory_start: u64,
        file_offset: u64,
        pc: u64,
    ) -> Result<Vec<Frame>> {
        let binary = self.load(path).map_err(|reason| Error::Symbolize {
            path: path.to_owned(),
            reason: reason.to_owned(),
        })?;
        Ok(binary
            .vaddr(memory_start, file_offset, pc)
            .map(|vaddr| binary.frames(vaddr).to_vec())
            .unwrap_or_default())
    }

    /// The binary at `path`, loaded on first use; `Err` is why it cannot be used.
    fn load(&mut self, path: &Path) -> Result<&mut Binary, &str> {
        self.binaries
            .entry(path.to_owned())
            .or_insert_with(|| {
                loader::load(path).map_err(|e| match e {
                    Error::Symbolize { reason, .. } => reason,
                    Error::Io { source, .. } => source.to_string(),
                    other => other.to_string(),
                })
            })
            .as_mut()
            .map_err(|reason| reason.as_str())
    }

    /// Find and check the binary for a mapping: the path it is cached under and the binary, or
    /// the warning saying why the mapping stays unsymbolized.
    fn prepare(
        &mut self,
        filename: &str,
        build_id: &str,
        file_offset: u64,
        resolve: &dyn Fn(&str, &str) -> Option<PathBuf>,
    ) -> Result<(PathBuf, &Binary), String> {
        let warn = |path: &Path, reason: String| {
            warning(
                path,
                format!("{reason}; its addresses are left unsymbolized"),
            )
        };
        let path = match resolve(filename, build_id) {
            Some(path) => path,
            None if filename.is_empty() => {
                return Err(warn(
                    Path::new("(anonymous mapping)"),
                    "the mapping has no file name".into(),
                ))
            }
            None if filename.starts_with('[') => {
                return Err(warn(
                    Path::new(filename),
                    "not a file (a kernel-provided mapping)".into(),
                ))
            }
            None => PathBuf::from(filename),
        };
        let binary = self
            .load(&path)
            .map_err(|reason| warn(&path, reason.to_owned()))?;
        if !build_id.is_empty() {
            if let Some(have) = binary.build_id() {
                if !have.eq_ignore_ascii_case(build_id) {
                    return Err(warn(
                        &path,
                        format!(
                            "build id {have} differs from the profiled binary's {build_id} \
                             (the file was rebuilt or replaced)"
                        ),
                    ));
                }
            }
        }
        if !binary.maps_offset(file_offset) {
            return Err(warn(
                &path,
                format!("no loadable segment holds file offset {file_offset:#x}"),
            ));
        }
        Ok((path, binary))
    }
}

/// A warning about `path`, worded like [`Error::Symbolize`].
fn warning(path: &Path, reason: String) -> String {
    Error::Symbolize {
        path: path.to_owned(),
        reason,
    }
    .to_string()
}

/// Copy the samples of `profile` with their values and labels, `locations` mapping its location
/// ids to the builder's.
fn copy_samples(b: &mut ProfileBuilder, profile: &Profile, locations: &HashMap<u64, u64>) {
    let string = |b: &mut ProfileBuilder, i: i64| {
        if i != 0 {
            b.string(profile.str(i))
        } else {
            0
        }
    };
    for s in &profile.sample {
        let stack: Vec<u64> = s
            .location_id
            .iter()
            .filter_map(|id| locations.get(id).copied())
            .collect();
        let labels = s
            .label
            .iter()
            .map(|l| Label {
                key: string(b, l.key),
                str: string(b, l.str),
                num: l.num,
                num_unit: string(b, l.num_unit),
            })
            .collect();
        b.add_labeled_sample(&stack, &s.value, labels);
    }
}

/// Ids of the mappings not yet symbolized that have locations without lines.
fn mappings_needing_symbols(profile: &Profile) -> std::collections::HashSet<u64> {
    let mut ids = std::collections::HashSet::new();
    for l in profile.location.iter().filter(|l| l.line.is_empty()) {
        let id = if l.mapping_id != 0 {
            Some(l.mapping_id)
        } else {
            mapping_containing(profile, l.address)
        };
        ids.extend(id);
    }
    ids.retain(|id| {
        profile
            .mapping
            .iter()
            .any(|m| m.id == *id && !m.has_functions)
    });
    ids
}

/// The mapping whose address range holds `address`, for locations without a mapping id.
fn mapping_containing(profile: &Profile, address: u64) -> Option<u64> {
    profile
        .mapping
        .iter()
        .find(|m| m.memory_start <= address && address < m.memory_limit)
        .map(|m| m.id)
}

/// The new id of input function `id`, interned on first use; `None` for a dangling id.
fn reintern_function(
    b: &mut ProfileBuilder,
    profile: &Profile,
    done: &mut HashMap<u64, u64>,
    id: u64,
) -> Option<u64> {
    if let Some(&new) = done.get(&id) {
        return Some(new);
    }
    let f = profile.function_by_id(id)?;
    let new = b.function(
        profile.str(f.name),
        profile.str(f.system_name),
        profile.str(f.filename),
        f.start_line,
    );
    done.insert(id, new);
    Some(new)
}
