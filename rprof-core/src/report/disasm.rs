//! pprof's `-disasm` report: the machine instructions of every symbol matching a regular
//! expression, each with the flat and cum value of the samples at its address, laid out as
//! `go tool pprof -disasm=RE` prints it. Instructions are decoded from the profiled binary (the
//! kept copy of it when the caller says where it is) by `iced-x86`.
//!
//! Semantics, as pprof's `PrintAssembly` has them:
//! - The profile is read at `addresses` granularity without inlined frames: one node per
//!   location address, named after the location's outermost function.
//! - Only binaries with a node whose printable name (`ADDRESS NAME FILE:LINE`) matches the
//!   expression are opened; in those, every ELF symbol whose name matches (mangled, or else
//!   demangled without its hash) and holds samples is shown, sorted by name then address. (So
//!   an expression anchored with `$` finds nothing: the printable name goes on after the
//!   function name, as in pprof.)
//! - A symbol covers `address .. address + size - 1`, as pprof computes it: its last byte is
//!   outside (a final one-byte `ret` is not shown, and an instruction that crosses that end
//!   decodes as `?`, one byte at a time, as Go's disassembler does).
//! - An instruction's values are the sum of the nodes whose address (translated into the file,
//!   which handles position-independent executables and shared libraries) lies between it and
//!   the next instruction.
//! - Each row shows, when it changed from the row above, the instruction's function and
//!   `file:line` (the innermost inlined frame, from DWARF, as `objdump --line-numbers` gives
//!   it; from the samples when DWARF has none).
//! - The granularity option does not apply (pprof forces `addresses`); `unit` does.
//!
//! Differences from `go tool pprof -disasm` (Go 1.19):
//! - Instruction text is AT&T syntax as GNU objdump prints it (or Intel with
//!   `intel_syntax`), with branch targets and RIP-relative operands named by their symbol;
//!   `go tool pprof` prints Go's own assembler syntax.
//! - `go tool pprof` cannot place samples of position-independent executables (every Rust
//!   test binary) in their symbols and finds no match there; rprof translates addresses as
//!   pprof does with GNU binutils.
//! - `go tool pprof` shows no file and line for non-Go binaries; rows here carry DWARF's.
//! - A symbol matched only through its demangled name is shown demangled (as pprof with GNU
//!   binutils does); `go tool pprof` matches mangled names only.
//! - A library without `.symtab` (a stripped libc) is read through its dynamic symbols; pprof
//!   finds nothing there.
//! - Only x86-64 code is decoded.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use iced_x86::{
    Decoder, DecoderOptions, Formatter, GasFormatter, Instruction, IntelFormatter, OpKind,
    SymbolResolver, SymbolResult,
};
use object::{Object, ObjectSection, ObjectSymbol};
use regex::Regex;

use super::graph::{base_name, MergedSample, Prepared};
use super::list::{clean, compile_symbol};
use super::units::{percentage, scaled_label};
use super::{drawn, unfiltered_total, ReportOptions, Selected};
use crate::proto::Profile;
use crate::symbolize::{demangle, CodeBinary};
use crate::{Error, Result};

/// Where the binaries of a profile are read and how their instructions are printed.
pub struct Binaries<'a> {
    /// The file to read for a mapping, given its file name and build id as the profile has
    /// them (e.g. a kept copy of a test binary); `None` reads the file name itself.
    pub resolve: &'a dyn Fn(&str, &str) -> Option<PathBuf>,
    /// Print instructions in Intel syntax instead of AT&T.
    pub intel_syntax: bool,
}

impl std::fmt::Debug for Binaries<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binaries")
            .field("intel_syntax", &self.intel_syntax)
            .finish_non_exhaustive()
    }
}

/// The disassembly of the matching symbols, and what could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disassembly {
    /// The profile's total for the sample type (before filters), as the header shows it.
    pub total: i64,
    /// The sample type's unit.
    pub unit: String,
    /// The unit values are printed in (`minimum` picks per value, as pprof's default).
    pub output_unit: String,
    /// The symbols, sorted by name then address.
    pub symbols: Vec<SymbolListing>,
    /// One line per binary that could not be read (missing, another build, not ELF).
    pub warnings: Vec<String>,
}

/// One symbol's instructions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolListing {
    /// The symbol's name as matched: as linked, or demangled when only that matched.
    pub name: String,
    /// The binary it is in (the path read).
    pub binary: PathBuf,
    /// First address (in the file's address space).
    pub start: u64,
    /// Sum of the instructions' flat values.
    pub flat: i64,
    /// Sum of the instructions' cum values.
    pub cum: i64,
    /// The instructions, by address.
    pub instructions: Vec<AsmInstruction>,
}

/// One instruction with its samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsmInstruction {
    /// Its address in the file's address space (what `objdump` shows).
    pub address: u64,
    /// The instruction as text; `?` for bytes that do not decode.
    pub text: String,
    /// The function it belongs to (innermost inlined), or empty.
    pub function: String,
    /// Base name of its source file, or empty.
    pub file: String,
    /// Its source line, or 0.
    pub line: i64,
    /// Value of the samples whose leaf is at this instruction.
    pub flat: i64,
    /// Value of the samples with a frame at this instruction.
    pub cum: i64,
}

/// A node of the address-level graph (pprof's `NodeInfo` at `addresses` granularity with
/// `noinlines`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AddrKey {
    address: u64,
    name: String,
    file: String,
    line: i64,
    mapping: u64,
}

impl AddrKey {
    /// pprof's `PrintableName`.
    fn printable(&self, objfile: &str) -> String {
        let mut parts = Vec::new();
        if self.address != 0 {
            parts.push(format!("{:016x}", self.address));
        }
        if !self.name.is_empty() {
            parts.push(self.name.clone());
        }
        if self.line != 0 {
            parts.push(format!("{}:{}", self.file, self.line));
        } else if !self.file.is_empty() {
            parts.push(self.file.clone());
        } else if !self.name.is_empty() {
        } else if !objfile.is_empty() {
            parts.push(format!("[{}]", base_name(objfile)));
        } else {
            parts.push("<unknown>".to_owned());
        }
        parts.join(" ")
    }
}

struct AddrNode {
    key: AddrKey,
    flat: i64,
    cum: i64,
}

fn address_graph(profile: &Profile, samples: &[MergedSample<'_>], index: usize) -> Vec<AddrNode> {
    let mut nodes: Vec<AddrNode> = Vec::new();
    let mut ids: HashMap<AddrKey, usize> = HashMap::new();
    let mut loc_node: HashMap<u64, usize> = HashMap::new();
    for loc in &profile.location {
        // pprof keeps only the outermost frame of each location (`noinlines`).
        let (name, file, line) = match loc
            .line
            .last()
            .and_then(|l| Some((profile.function_by_id(l.function_id)?, l.line)))
        {
            Some((f, line)) => {
                let name = match profile.str(f.name) {
                    "" => profile.str(f.system_name),
                    n => n,
                };
                let file = match profile.str(f.filename) {
                    "" => String::new(),
                    raw => clean(raw),
                };
                (name.to_owned(), file, line)
            }
            None => (String::new(), String::new(), 0),
        };
        let key = AddrKey {
            address: loc.address,
            name,
            file,
            line,
            mapping: loc.mapping_id,
        };
        let n = *ids.entry(key).or_insert_with_key(|key| {
            nodes.push(AddrNode {
                key: key.clone(),
                flat: 0,
                cum: 0,
            });
            nodes.len() - 1
        });
        loc_node.insert(loc.id, n);
    }
    let mut seen = vec![usize::MAX; nodes.len()];
    for (sample_no, sample) in samples.iter().enumerate() {
        let w = sample.values.get(index).copied().unwrap_or(0);
        if w == 0 {
            continue;
        }
        for &loc in sample.locations.iter() {
            if let Some(&n) = loc_node.get(&loc) {
                if seen[n] != sample_no {
                    seen[n] = sample_no;
                    nodes[n].cum += w;
                }
            }
        }
        if let Some(&n) = sample.locations.first().and_then(|l| loc_node.get(l)) {
            nodes[n].flat += w;
        }
    }
    nodes.retain(|n| n.flat != 0 || n.cum != 0);
    nodes
}

/// Go's `strconv.ParseUint(s, 0, 64)`: `0x` hex, `0o`/leading `0` octal, `0b` binary, decimal.
fn parse_address(s: &str) -> Option<u64> {
    let s = s.replace('_', "");
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or(s.strip_prefix("0X")) {
        (h.to_owned(), 16)
    } else if let Some(b) = s.strip_prefix("0b").or(s.strip_prefix("0B")) {
        (b.to_owned(), 2)
    } else if let Some(o) = s.strip_prefix("0o").or(s.strip_prefix("0O")) {
        (o.to_owned(), 8)
    } else if s.len() > 1 && s.starts_with('0') {
        (s[1..].to_owned(), 8)
    } else {
        (s, 10)
    };
    u64::from_str_radix(&digits, radix).ok()
}

/// An ELF symbol: its name, start and pprof's end (exclusive: `start + size - 1`).
#[derive(Debug, Clone)]
struct ElfSymbol {
    name: String,
    start: u64,
    end: u64,
}

/// The symbols of `data` matching `symbol` (or holding `address`), named as matched.
fn matching_symbols(data: &[u8], symbol: &Regex, address: Option<u64>) -> Vec<ElfSymbol> {
    let Ok(file) = object::File::parse(data) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    // `.symtab`, or for a stripped library (libc) its dynamic symbols.
    let symbols: Vec<object::Symbol<'_, '_>> = if file.symbols().next().is_some() {
        file.symbols().collect()
    } else {
        file.dynamic_symbols().collect()
    };
    for s in symbols {
        let (start, size) = (s.address(), s.size());
        if size == 0 {
            continue;
        }
        let Ok(raw) = s.name() else { continue };
        if raw.is_empty() {
            continue;
        }
        let end = start + size - 1;
        let holds_address = address.is_some_and(|a| start <= a && a < start + size);
        let name = if holds_address || symbol.is_match(raw) {
            Some(raw.to_owned())
        } else {
            let demangled = demangle(raw);
            (demangled != raw && symbol.is_match(&demangled)).then_some(demangled)
        };
        if let Some(name) = name {
            out.push(ElfSymbol { name, start, end });
        }
    }
    out
}

/// The code bytes at `start..end` (ELF addresses) and the address they start at.
fn code_bytes(data: &[u8], start: u64, end: u64) -> Option<&[u8]> {
    let file = object::File::parse(data).ok()?;
    let section = file
        .sections()
        .find(|s| s.address() <= start && start < s.address() + s.size())?;
    let bytes = section.data().ok()?;
    let from = usize::try_from(start - section.address()).ok()?;
    let to = usize::try_from(end.min(section.address() + section.size()) - section.address())
        .ok()?
        .min(bytes.len());
    bytes.get(from..to.max(from))
}

/// Names branch targets and RIP-relative operands after the symbols that hold them.
#[derive(Clone)]
struct Names {
    /// Symbols by start address, with their size and demangled name.
    symbols: Rc<Vec<(u64, u64, String)>>,
}

impl Names {
    fn new(data: &[u8]) -> Self {
        let mut symbols = Vec::new();
        if let Ok(file) = object::File::parse(data) {
            for s in file.symbols() {
                if s.size() == 0 || s.address() == 0 {
                    continue;
                }
                if let Ok(name) = s.name() {
                    if !name.is_empty() {
                        symbols.push((s.address(), s.size(), demangle(name)));
                    }
                }
            }
        }
        symbols.sort();
        Names {
            symbols: Rc::new(symbols),
        }
    }
}

impl SymbolResolver for Names {
    fn symbol(
        &mut self,
        instruction: &Instruction,
        _operand: u32,
        instruction_operand: Option<u32>,
        address: u64,
        _address_size: u32,
    ) -> Option<SymbolResult<'_>> {
        // Branch targets and memory operands name code or data; immediates are numbers.
        let kind = instruction.op_kind(instruction_operand?);
        if !matches!(
            kind,
            OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 | OpKind::Memory
        ) {
            return None;
        }
        let i = self
            .symbols
            .partition_point(|s| s.0 <= address)
            .checked_sub(1)?;
        let (start, size, name) = &self.symbols[i];
        (address - start < *size).then(|| SymbolResult::with_str(*start, name.as_str()))
    }
}

/// Decode `bytes` (at ELF address `start`) into (address, text) pairs; undecodable bytes are
/// `?`, one byte each, as Go's disassembler does.
fn decode(bytes: &[u8], start: u64, intel: bool, names: Names) -> Vec<(u64, String)> {
    let mut formatter: Box<dyn Formatter> = if intel {
        Box::new(IntelFormatter::with_options(Some(Box::new(names)), None))
    } else {
        Box::new(GasFormatter::with_options(Some(Box::new(names)), None))
    };
    // objdump's look: operands in column 8, lowercase hex, no leading zeros.
    let o = formatter.options_mut();
    o.set_first_operand_char_index(7);
    o.set_uppercase_hex(false);
    o.set_small_hex_numbers_in_decimal(false);
    o.set_branch_leading_zeros(false);
    let mut out = Vec::new();
    let mut offset = 0usize;
    while offset < bytes.len() {
        let ip = start + offset as u64;
        let mut decoder = Decoder::with_ip(64, &bytes[offset..], ip, DecoderOptions::NONE);
        let instruction = decoder.decode();
        if instruction.is_invalid() || instruction.len() == 0 {
            out.push((ip, "?".to_owned()));
            offset += 1;
            continue;
        }
        let mut text = String::new();
        formatter.format(&instruction, &mut text);
        out.push((ip, text));
        offset += instruction.len();
    }
    out
}

/// The disassembly `disasm` prints, with the binaries that could not be read.
/// No matching symbol with samples is [`Error::NoMatch`].
pub fn disassembly(
    profile: &Profile,
    opts: &ReportOptions,
    regex: &str,
    binaries: &Binaries<'_>,
) -> Result<Disassembly> {
    let symbol = compile_symbol(regex)?;
    let address = parse_address(regex);
    let original = profile;
    let mut keep = None;
    let profile = drawn(original, opts, &mut keep)?;
    let prepared = Prepared::new(profile);
    let mut sel = Selected::new(profile, &prepared, opts)?;
    sel.total = unfiltered_total(original, opts, &sel);
    let nodes = address_graph(profile, &prepared.samples, sel.index);

    let objfile = |mapping: u64| {
        profile
            .mapping
            .iter()
            .find(|m| m.id == mapping)
            .map_or("", |m| profile.str(m.filename))
    };
    let mut wanted: Vec<&str> = Vec::new();
    for n in &nodes {
        let file = objfile(n.key.mapping);
        if !file.is_empty() && symbol.is_match(&n.key.printable(file)) && !wanted.contains(&file) {
            wanted.push(file);
        }
    }

    let mut warnings = Vec::new();
    let mut symbols = Vec::new();
    let mut opened: HashMap<PathBuf, CodeBinary> = HashMap::new();
    let mut names: HashMap<PathBuf, Names> = HashMap::new();
    for m in &profile.mapping {
        let file = profile.str(m.filename);
        let by_address = address.is_some_and(|a| m.memory_start <= a && a <= m.memory_limit);
        if !wanted.contains(&file) && !by_address {
            continue;
        }
        let build_id = profile.str(m.build_id);
        let path = (binaries.resolve)(file, build_id).unwrap_or_else(|| PathBuf::from(file));
        if !opened.contains_key(&path) {
            match open_checked(&path, build_id) {
                Ok(b) => {
                    opened.insert(path.clone(), b);
                }
                Err(why) => {
                    warnings.push(why);
                    continue;
                }
            }
        }
        let Some(binary) = opened.get_mut(&path) else {
            continue;
        };
        // The samples of this mapping, at the file's addresses.
        let mut samples: Vec<(u64, &AddrNode)> = nodes
            .iter()
            .filter(|n| n.key.mapping == m.id)
            .filter_map(|n| {
                let a = binary.vaddr(m.memory_start, m.file_offset, n.key.address)?;
                Some((a, n))
            })
            .collect();
        samples.sort_by_key(|s| s.0);
        for sym in matching_symbols(binary.data(), &symbol, address) {
            let inside: Vec<&(u64, &AddrNode)> = samples
                .iter()
                .filter(|(a, _)| sym.start <= *a && *a < sym.end)
                .collect();
            if inside.is_empty() {
                continue;
            }
            let names = names
                .entry(path.clone())
                .or_insert_with(|| Names::new(binary.data()))
                .clone();
            let code = code_bytes(binary.data(), sym.start, sym.end).unwrap_or_default();
            let decoded = decode(code, sym.start, binaries.intel_syntax, names);
            symbols.push(annotate(sym, &path, decoded, &inside, binary));
        }
    }
    symbols.sort_by(|a, b| a.name.cmp(&b.name).then(a.start.cmp(&b.start)));
    if symbols.is_empty() {
        if let Some(why) = warnings.first() {
            return Err(Error::NoMatch(format!(
                "no matches found for regexp: {regex} ({why})"
            )));
        }
        return Err(Error::NoMatch(format!(
            "no matches found for regexp: {regex}"
        )));
    }
    Ok(Disassembly {
        total: sel.total,
        unit: sel.unit.to_owned(),
        output_unit: opts.unit.clone().unwrap_or_else(|| "minimum".to_owned()),
        symbols,
        warnings,
    })
}

/// Open `path` and check it is the build the profile names.
fn open_checked(path: &Path, build_id: &str) -> std::result::Result<CodeBinary, String> {
    let name = path.to_string_lossy();
    if name.starts_with('[') && !path.exists() {
        return Err(format!(
            "cannot disassemble {name}: a mapping of the kernel's, not a file"
        ));
    }
    let binary = CodeBinary::open(path).map_err(|e| format!("cannot disassemble: {e}"))?;
    if let Some(have) = binary.build_id() {
        if !build_id.is_empty() && have != build_id {
            return Err(format!(
                "cannot disassemble with {}: build id {have}, the profile's is {build_id} (another build)",
                path.display()
            ));
        }
    }
    Ok(binary)
}

/// pprof's `annotateAssembly`: each instruction gets the samples up to the next one.
fn annotate(
    sym: ElfSymbol,
    path: &Path,
    decoded: Vec<(u64, String)>,
    samples: &[&(u64, &AddrNode)],
    binary: &mut CodeBinary,
) -> SymbolListing {
    let mut instructions = Vec::with_capacity(decoded.len());
    let mut s = 0;
    for (i, (address, text)) in decoded.iter().enumerate() {
        let next = decoded.get(i + 1).map_or(u64::MAX, |d| d.0);
        let (mut function, mut file, mut line) = match binary.frames(*address).first() {
            Some(f) => (
                f.name.clone(),
                if f.filename.is_empty() {
                    String::new()
                } else {
                    base_name(&f.filename).to_owned()
                },
                f.line,
            ),
            None => (String::new(), String::new(), 0),
        };
        let (mut flat, mut cum) = (0, 0);
        while s < samples.len() && samples[s].0 < next {
            let node = samples[s].1;
            flat += node.flat;
            cum += node.cum;
            if file.is_empty() && !node.key.file.is_empty() {
                file = base_name(&node.key.file).to_owned();
            }
            if line == 0 {
                line = node.key.line;
            }
            if function.is_empty() {
                function = node.key.name.clone();
            }
            s += 1;
        }
        instructions.push(AsmInstruction {
            address: *address,
            text: text.clone(),
            function,
            file,
            line,
            flat,
            cum,
        });
    }
    // pprof's header sums the symbol's nodes, also those no instruction starts at.
    let flat = samples.iter().map(|s| s.1.flat).sum();
    let cum = samples.iter().map(|s| s.1.cum).sum();
    SymbolListing {
        name: sym.name,
        binary: path.to_owned(),
        start: sym.start,
        flat,
        cum,
        instructions,
    }
}

impl Disassembly {
    /// The report as `go tool pprof -disasm` lays it out: `Total:`, then per symbol a
    /// `ROUTINE` line, the `(flat, cum)` line and one row per instruction with its location
    /// when that changed (on the row when the instruction is short, above it when not).
    pub fn render(&self) -> String {
        let format = |v: i64| scaled_label(v, &self.unit, &self.output_unit);
        let dot = |v: i64| if v == 0 { ".".to_owned() } else { format(v) };
        let mut out = String::new();
        let _ = writeln!(out, "Total: {}", format(self.total));
        for sym in &self.symbols {
            let _ = writeln!(out, "ROUTINE ======================== {}", sym.name);
            let _ = writeln!(
                out,
                "{:>10} {:>10} (flat, cum) {} of Total",
                format(sym.flat),
                format(sym.cum),
                percentage(sym.cum, self.total)
            );
            let (mut function, mut file, mut line) = ("", "", 0);
            for i in &sym.instructions {
                let mut loc = String::new();
                if i.function != function || i.file != file || i.line != line {
                    (function, file, line) = (&i.function, &i.file, i.line);
                    if !i.function.is_empty() {
                        loc = format!("{} ", i.function);
                    }
                    if !i.file.is_empty() {
                        loc.push_str(&i.file);
                        if i.line != 0 {
                            let _ = write!(loc, ":{}", i.line);
                        }
                    }
                }
                let (flat, cum) = (dot(i.flat), dot(i.cum));
                if loc.is_empty() {
                    let _ = writeln!(out, "{flat:>10} {cum:>10} {:>10x}: {}", i.address, i.text);
                } else if i.text.len() < 40 {
                    let _ = writeln!(
                        out,
                        "{flat:>10} {cum:>10} {:>10x}: {:<40};{loc}",
                        i.address, i.text
                    );
                } else {
                    let _ = writeln!(out, "{:74};{loc}", "");
                    let _ = writeln!(out, "{flat:>10} {cum:>10} {:>10x}: {}", i.address, i.text);
                }
            }
        }
        out
    }
}

/// pprof's `-disasm` report as text (see [`Disassembly::render`]); binaries that could not be
/// read are skipped (see [`disassembly`] for them).
pub fn disasm(
    profile: &Profile,
    opts: &ReportOptions,
    regex: &str,
    binaries: &Binaries<'_>,
) -> Result<String> {
    Ok(disassembly(profile, opts, regex, binaries)?.render())
}

#[cfg(test)]
mod tests;
