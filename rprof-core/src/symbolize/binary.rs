//! One loaded binary and the lookups on it: address translation, DWARF frames with inlining,
//! the ELF symbol table as a fallback, demangling. Plain safe code over bytes; the loading
//! (files, maps, separate debug files) is in [`super::loader`].

use std::cell::OnceCell;
use std::collections::HashMap;
use std::sync::Arc;

use gimli::{AttributeValue, UnitOffset, UnitRef, UnitSectionOffset};
use memmap2::Mmap;
use object::{Object, ObjectSymbol, SymbolKind, SymbolScope};

use super::reader::SectionReader;
use super::Frame;

/// A `PT_LOAD` segment: file bytes `offset..offset + file_size` are loaded at `vaddr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Segment {
    pub(super) vaddr: u64,
    pub(super) offset: u64,
    pub(super) file_size: u64,
    pub(super) align: u64,
}

/// A function symbol of the ELF symbol table (or of the dynamic one when there is no other).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Symbol {
    addr: u64,
    /// 0 when unknown (hand-written assembly often has none).
    size: u64,
    name: Box<str>,
}

/// The DWARF of a binary, with the caches of what was read from it.
pub(super) struct Dwarf {
    ctx: addr2line::Context<SectionReader>,
    /// `DW_AT_decl_line` by (unit offset, DIE offset).
    decl_lines: HashMap<(u64, usize), i64>,
}

impl Dwarf {
    /// Index the units of `dwarf` (their address ranges; everything else is read on demand).
    pub(super) fn new(dwarf: gimli::Dwarf<SectionReader>) -> Result<Self, gimli::Error> {
        Ok(Dwarf {
            ctx: addr2line::Context::from_dwarf(dwarf)?,
            decl_lines: HashMap::new(),
        })
    }
}

/// A binary ready for lookups: its map, load segments, build id, DWARF if any, and symbol table
/// (read the first time DWARF does not name an address).
pub(super) struct Binary {
    map: Arc<Mmap>,
    build_id: Option<String>,
    segments: Vec<Segment>,
    dwarf: Option<Dwarf>,
    /// Why DWARF could not be used, when the file has some that could not be read.
    dwarf_problem: Option<String>,
    /// The first DWARF error met by a lookup since [`Binary::take_lookup_problem`].
    lookup_problem: Option<String>,
    symbols: OnceCell<Vec<Symbol>>,
    frames: HashMap<u64, Vec<Frame>>,
}

impl Binary {
    /// A binary whose ELF image is `map`; `dwarf` is `Err(reason)` when the file (or its separate
    /// debug file) has DWARF that could not be read.
    pub(super) fn new(
        map: Arc<Mmap>,
        build_id: Option<String>,
        segments: Vec<Segment>,
        dwarf: Result<Option<Dwarf>, String>,
    ) -> Self {
        let (dwarf, dwarf_problem) = match dwarf {
            Ok(d) => (d, None),
            Err(reason) => (None, Some(reason)),
        };
        Binary {
            map,
            build_id,
            segments,
            dwarf,
            dwarf_problem,
            lookup_problem: None,
            symbols: OnceCell::new(),
            frames: HashMap::new(),
        }
    }

    /// The same binary with its DWARF forgotten, to test the symbol-table fallback.
    #[cfg(test)]
    pub(super) fn without_dwarf(mut self) -> Self {
        self.dwarf = None;
        self
    }

    /// The file's bytes.
    #[cfg(feature = "disasm")]
    pub(super) fn data(&self) -> &[u8] {
        &self.map
    }

    /// The file's GNU build id, lowercase hex.
    pub(super) fn build_id(&self) -> Option<&str> {
        self.build_id.as_deref()
    }

    /// Whether lookups have DWARF (file names, lines, inlined frames) and not only symbols.
    pub(super) fn has_dwarf(&self) -> bool {
        self.dwarf.is_some()
    }

    /// Why the file's DWARF is not used, if it has some that could not be read.
    pub(super) fn dwarf_problem(&self) -> Option<&str> {
        self.dwarf_problem.as_deref()
    }

    /// The first DWARF error a lookup met (and fell back to the symbol table for), once.
    pub(super) fn take_lookup_problem(&mut self) -> Option<String> {
        self.lookup_problem.take()
    }

    /// Whether a load segment holds `file_offset` (the offset a mapping of the file starts at;
    /// mappings start at a page boundary, segments need not).
    pub(super) fn maps_offset(&self, file_offset: u64) -> bool {
        self.segment_of_mapping(file_offset).is_some()
    }

    fn segment_of_mapping(&self, file_offset: u64) -> Option<&Segment> {
        let contains = |s: &&Segment, start: u64| {
            start <= file_offset && file_offset < s.offset.saturating_add(s.file_size)
        };
        self.segments
            .iter()
            .find(|s| contains(s, s.offset))
            .or_else(|| {
                self.segments.iter().find(|s| {
                    let page = if s.align.is_power_of_two() {
                        s.align.clamp(4096, 65536)
                    } else {
                        4096
                    };
                    contains(s, s.offset & !(page - 1))
                })
            })
    }

    /// The ELF virtual address of `addr` in a process that mapped the file's `file_offset` at
    /// `memory_start`: `p_vaddr + (addr - memory_start + file_offset - p_offset)` with the load
    /// segment whose file range holds that file offset. This removes the load bias of a PIE or
    /// shared library and is the identity for a non-PIE executable.
    pub(super) fn vaddr(&self, memory_start: u64, file_offset: u64, addr: u64) -> Option<u64> {
        let in_file = addr.checked_sub(memory_start)?.checked_add(file_offset)?;
        let segment = self
            .segments
            .iter()
            .find(|s| s.offset <= in_file && in_file - s.offset < s.file_size)
            .or_else(|| self.segment_of_mapping(file_offset))?;
        Some(
            segment
                .vaddr
                .wrapping_add(in_file)
                .wrapping_sub(segment.offset),
        )
    }

    /// The frames of the instruction at ELF virtual address `vaddr`, innermost inlined first;
    /// empty when neither DWARF nor the symbol table knows it. Cached per address.
    pub(super) fn frames(&mut self, vaddr: u64) -> &[Frame] {
        if !self.frames.contains_key(&vaddr) {
            let frames = self.find_frames(vaddr);
            self.frames.insert(vaddr, frames);
        }
        &self.frames[&vaddr]
    }

    fn find_frames(&mut self, vaddr: u64) -> Vec<Frame> {
        let mut found = Vec::new();
        if let Some(dwarf) = &mut self.dwarf {
            match dwarf_frames(dwarf, vaddr) {
                Ok(frames) => found = frames,
                Err(e) => {
                    self.lookup_problem.get_or_insert_with(|| {
                        format!("unreadable DWARF at address {vaddr:#x}: {e}")
                    });
                }
            }
        }
        if found.is_empty() {
            return match self.symbol(vaddr) {
                Some(sym) => vec![Frame {
                    name: demangle(&sym.name),
                    system_name: sym.name.to_string(),
                    filename: String::new(),
                    line: 0,
                    start_line: 0,
                }],
                None => Vec::new(),
            };
        }
        let last = found.len() - 1;
        found
            .into_iter()
            .enumerate()
            .map(|(i, f)| {
                let mut raw = f.raw_name;
                // The outermost frame is a real function, so the symbol table knows it too. When
                // DWARF has no name, or a plain one (no linkage name), the symbol can say more:
                // `marker_fn` is `_ZN…9marker_fn17h…E`, and glibc's internal `__GI_getpid` is
                // the `getpid` everyone calls.
                if i == last && raw.as_deref().is_none_or(|r| !is_mangled(r)) {
                    if let Some(sym) = self.symbol(vaddr) {
                        let better = raw.as_deref().is_none_or(|r| {
                            demangle(&sym.name).ends_with(r) || r.ends_with(&*sym.name)
                        });
                        if better {
                            raw = Some(sym.name.to_string());
                        }
                    }
                }
                let raw = raw.unwrap_or_else(|| "??".to_owned());
                Frame {
                    name: demangle(&raw),
                    system_name: raw,
                    filename: f.file.unwrap_or_default(),
                    line: f.line,
                    start_line: f.start_line,
                }
            })
            .collect()
    }

    /// The function symbol containing `vaddr`.
    fn symbol(&self, vaddr: u64) -> Option<&Symbol> {
        let symbols = self.symbols.get_or_init(|| read_symbols(&self.map));
        let i = symbols
            .partition_point(|s| s.addr <= vaddr)
            .checked_sub(1)?;
        let s = &symbols[i];
        (s.size == 0 || vaddr - s.addr < s.size).then_some(s)
    }
}

/// A frame as DWARF gives it, before names are chosen.
struct RawFrame {
    raw_name: Option<String>,
    file: Option<String>,
    line: i64,
    start_line: i64,
}

fn dwarf_frames(dwarf: &mut Dwarf, vaddr: u64) -> Result<Vec<RawFrame>, gimli::Error> {
    let Dwarf { ctx, decl_lines } = dwarf;
    let mut out = Vec::new();
    let mut offsets = Vec::new();
    let mut iter = ctx.find_frames(vaddr).skip_all_loads()?;
    while let Some(frame) = iter.next()? {
        let raw_name = match &frame.function {
            Some(f) => Some(f.raw_name()?.into_owned()),
            None => None,
        };
        let (file, line) = match &frame.location {
            Some(loc) => (loc.file.map(str::to_owned), loc.line.map_or(0, i64::from)),
            None => (None, 0),
        };
        offsets.push(frame.dw_die_offset);
        out.push(RawFrame {
            raw_name,
            file,
            line,
            start_line: 0,
        });
    }
    if offsets.iter().any(Option::is_some) {
        if let Some(unit) = ctx.find_dwarf_and_unit(vaddr).skip_all_loads() {
            let unit_key = match unit.header.offset() {
                UnitSectionOffset::DebugInfoOffset(o) => o.0 as u64,
                UnitSectionOffset::DebugTypesOffset(o) => o.0 as u64 | 1 << 63,
            };
            for (frame, offset) in out.iter_mut().zip(offsets) {
                if let Some(offset) = offset {
                    frame.start_line = *decl_lines
                        .entry((unit_key, offset.0))
                        .or_insert_with(|| decl_line(unit, offset, 8));
                }
            }
        }
    }
    Ok(out)
}

/// `DW_AT_decl_line` of a subprogram or inlined subroutine, following `DW_AT_abstract_origin`
/// and `DW_AT_specification` within the unit; 0 when not found.
fn decl_line(unit: UnitRef<'_, SectionReader>, offset: UnitOffset, depth: u32) -> i64 {
    let Ok(entry) = unit.entry(offset) else {
        return 0;
    };
    if let Ok(Some(v)) = entry.attr_value(gimli::DW_AT_decl_line) {
        if let Some(line) = v.udata_value() {
            return i64::try_from(line).unwrap_or(0);
        }
    }
    if depth == 0 {
        return 0;
    }
    for attr in [gimli::DW_AT_abstract_origin, gimli::DW_AT_specification] {
        let target = match entry.attr_value(attr) {
            Ok(Some(AttributeValue::UnitRef(o))) => Some(o),
            Ok(Some(AttributeValue::DebugInfoRef(o))) => o.to_unit_offset(&unit.header),
            _ => None,
        };
        if let Some(target) = target {
            return decl_line(unit, target, depth - 1);
        }
    }
    0
}

/// A symbol's name for people: Rust paths without the hash (legacy and v0 manglings), anything
/// else unchanged.
pub(super) fn demangle(raw: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(raw))
}

fn is_mangled(raw: &str) -> bool {
    raw.starts_with("_Z") || rustc_demangle::try_demangle(raw).is_ok()
}

/// The function symbols of an ELF image, sorted by address, one per address: `.symtab` when the
/// file has one, `.dynsym` otherwise. Among aliases the plainest name wins (`getpid` over
/// `__getpid`, a global over a local), except that the vDSO's `__vdso_` names win over their
/// plain aliases, so that `__vdso_clock_gettime` is not mistaken for libc's `clock_gettime`.
pub(super) fn read_symbols(data: &[u8]) -> Vec<Symbol> {
    let Ok(file) = object::File::parse(data) else {
        return Vec::new();
    };
    let mut all = collect_symbols(file.symbols());
    if all.is_empty() {
        all = collect_symbols(file.dynamic_symbols());
    }
    all.sort_unstable_by_key(|a| (a.0.addr, a.1));
    let mut out: Vec<Symbol> = Vec::with_capacity(all.len());
    for (sym, _) in all {
        match out.last_mut() {
            Some(prev) if prev.addr == sym.addr => prev.size = prev.size.max(sym.size),
            _ => out.push(sym),
        }
    }
    out
}

fn collect_symbols<'data>(
    symbols: impl Iterator<Item = impl ObjectSymbol<'data>>,
) -> Vec<(Symbol, (usize, u8))> {
    symbols
        .filter(|s| s.kind() == SymbolKind::Text && s.is_definition() && s.address() != 0)
        .filter_map(|s| {
            let name = s.name().ok().filter(|n| !n.is_empty())?;
            let underscores = if name.starts_with("__vdso_") {
                0
            } else {
                1 + name.bytes().take_while(|&b| b == b'_').count()
            };
            let scope = match s.scope() {
                SymbolScope::Dynamic => 0,
                SymbolScope::Linkage => 1,
                SymbolScope::Compilation => 2,
                SymbolScope::Unknown => 3,
            };
            let sym = Symbol {
                addr: s.address(),
                size: s.size(),
                name: name.into(),
            };
            Some((sym, (underscores, scope)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demangles_legacy_v0_and_passes_others_through() {
        assert_eq!(
            demangle("_ZN10rprof_core9symbolize5tests9marker_fn17h0123456789abcdefE"),
            "rprof_core::symbolize::tests::marker_fn"
        );
        assert_eq!(
            demangle("_RNvNtCs1234_10rprof_core9symbolize9marker_fn"),
            "rprof_core::symbolize::marker_fn"
        );
        assert_eq!(demangle("getpid"), "getpid");
        assert!(is_mangled("_RNvNtCs1234_10rprof_core9symbolize9marker_fn"));
        assert!(!is_mangled("marker_fn"));
    }

    #[test]
    fn garbage_has_no_symbols() {
        assert!(read_symbols(b"not an elf file at all").is_empty());
    }
}
