//! Loading binaries for the symbolizer: opening and mapping files (the symbolizer's only
//! `unsafe`), checking that they are ELF, and finding their DWARF, in the file itself or in a
//! separate debug file (`/usr/lib/debug/.build-id/…` or `.gnu_debuglink`).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gimli::RunTimeEndian;
use memmap2::Mmap;
use object::{BinaryFormat, CompressionFormat, Object, ObjectSection, ObjectSegment};

use super::binary::{Binary, Dwarf, Segment};
use super::reader::{Backing, SectionReader};
use crate::{Error, Result};

/// Debug sections larger than this are not decompressed (a corrupt header must not make us
/// allocate gigabytes).
const MAX_DECOMPRESSED: u64 = 1 << 31;

/// Map `path` read-only.
pub(super) fn map_file(path: &Path) -> Result<Arc<Mmap>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read-only and private to this process; the hazard is another process
    // truncating or rewriting the binary while it is mapped (a SIGBUS or changed bytes). Binaries
    // being symbolized are finished build outputs or installed libraries that nothing rewrites
    // in place (linkers and package managers write a new file and rename it), and every byte
    // read from the map goes through bounds-checked parsers, so changed contents give parse
    // errors, not undefined behaviour in our code.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    Ok(Arc::new(map))
}

/// Parse `data` (the contents of `path`) as an ELF file.
pub(super) fn parse<'data>(path: &Path, data: &'data [u8]) -> Result<object::File<'data>> {
    let fail = |reason: String| Error::Symbolize {
        path: path.to_owned(),
        reason,
    };
    let file =
        object::File::parse(data).map_err(|e| fail(format!("not a valid ELF file ({e})")))?;
    if file.format() != BinaryFormat::Elf {
        return Err(fail(format!("a {:?} file, not ELF", file.format())));
    }
    Ok(file)
}

/// The GNU build id of `file`, lowercase hex.
pub(super) fn build_id_hex(path: &Path, file: &object::File<'_>) -> Result<Option<String>> {
    let id = file.build_id().map_err(|e| Error::Symbolize {
        path: path.to_owned(),
        reason: format!("unreadable build id note ({e})"),
    })?;
    Ok(id.map(|bytes| bytes.iter().map(|b| format!("{b:02x}")).collect()))
}

/// Load `path` for lookups: map it, read its load segments and build id, and index its DWARF
/// (or that of its separate debug file). Fails when the file cannot be read or is not an ELF
/// file with loadable segments.
pub(super) fn load(path: &Path) -> Result<Binary> {
    let map = map_file(path)?;
    let file = parse(path, &map)?;
    let build_id = build_id_hex(path, &file)?;
    let segments: Vec<Segment> = file
        .segments()
        .filter_map(|s| {
            let (offset, file_size) = s.file_range();
            Some(Segment {
                vaddr: s.address(),
                offset,
                file_size,
                align: s.align(),
            })
            .filter(|s| s.file_size > 0)
        })
        .collect();
    if segments.is_empty() {
        return Err(Error::Symbolize {
            path: path.to_owned(),
            reason: "no loadable segments (not an executable or shared library)".into(),
        });
    }
    let dwarf = if has_debug_info(&file) {
        load_dwarf(&file, &map)
    } else {
        separate_debug_info(path, &file, build_id.as_deref())
    };
    Ok(Binary::new(Arc::clone(&map), build_id, segments, dwarf))
}

fn has_debug_info(file: &object::File<'_>) -> bool {
    file.section_by_name(".debug_info")
        .is_some_and(|s| s.size() > 0)
}

/// Index the DWARF of `file` (whose bytes are `map`); `Err` says why it could not be read.
fn load_dwarf(file: &object::File<'_>, map: &Arc<Mmap>) -> Result<Option<Dwarf>, String> {
    let endian = if file.is_little_endian() {
        RunTimeEndian::Little
    } else {
        RunTimeEndian::Big
    };
    let dwarf = gimli::Dwarf::load(|id| section(file, map, id.name(), endian))?;
    Dwarf::new(dwarf)
        .map(Some)
        .map_err(|e| format!("cannot index DWARF ({e})"))
}

/// A reader of section `name`: straight from the map, or decompressed; empty when absent.
fn section(
    file: &object::File<'_>,
    map: &Arc<Mmap>,
    name: &str,
    endian: RunTimeEndian,
) -> Result<SectionReader, String> {
    let Some(section) = file.section_by_name(name) else {
        return Ok(SectionReader::empty_section(endian));
    };
    let range = section
        .compressed_file_range()
        .map_err(|e| format!("section {name}: {e}"))?;
    let outside = || format!("section {name} lies outside the file");
    let offset = usize::try_from(range.offset).map_err(|_| outside())?;
    let size = usize::try_from(range.compressed_size).map_err(|_| outside())?;
    match range.format {
        CompressionFormat::None => {
            SectionReader::new(Backing::Map(Arc::clone(map)), offset, size, endian)
                .ok_or_else(outside)
        }
        CompressionFormat::Zlib => {
            let data = offset
                .checked_add(size)
                .and_then(|end| map.get(offset..end))
                .ok_or_else(outside)?;
            if range.uncompressed_size > MAX_DECOMPRESSED {
                return Err(format!(
                    "section {name} claims {} bytes uncompressed",
                    range.uncompressed_size
                ));
            }
            let mut out = Vec::with_capacity(range.uncompressed_size as usize);
            flate2::read::ZlibDecoder::new(data)
                .take(range.uncompressed_size)
                .read_to_end(&mut out)
                .map_err(|e| format!("section {name}: bad zlib data ({e})"))?;
            if out.len() as u64 != range.uncompressed_size {
                return Err(format!("section {name}: truncated zlib data"));
            }
            let len = out.len();
            SectionReader::new(Backing::Owned(Arc::from(out)), 0, len, endian).ok_or_else(outside)
        }
        other => Err(format!(
            "section {name} is compressed as {other:?}, which is not supported"
        )),
    }
}

/// The DWARF of a separate debug file for `path`, if one is installed: by build id under
/// `/usr/lib/debug/.build-id/`, else by `.gnu_debuglink` next to the file, in its `.debug/`
/// directory or under `/usr/lib/debug`. A candidate whose build id differs is skipped.
fn separate_debug_info(
    path: &Path,
    file: &object::File<'_>,
    build_id: Option<&str>,
) -> Result<Option<Dwarf>, String> {
    let mut candidates = Vec::new();
    if let Some(id) = build_id.filter(|id| id.len() > 2 && id.is_ascii()) {
        candidates.push(PathBuf::from(format!(
            "/usr/lib/debug/.build-id/{}/{}.debug",
            &id[..2],
            &id[2..]
        )));
    }
    let link = file.gnu_debuglink().ok().flatten();
    if let Some(name) = link.and_then(|(name, _crc)| std::str::from_utf8(name).ok()) {
        let dir = path.parent().unwrap_or(Path::new(""));
        candidates.push(dir.join(name));
        candidates.push(dir.join(".debug").join(name));
        let relative = dir.strip_prefix("/").unwrap_or(dir);
        candidates.push(Path::new("/usr/lib/debug").join(relative).join(name));
    }
    for candidate in candidates {
        if candidate == path || !candidate.is_file() {
            continue;
        }
        let Ok(map) = map_file(&candidate) else {
            continue;
        };
        let Ok(debug) = parse(&candidate, &map) else {
            continue;
        };
        if !has_debug_info(&debug) {
            continue;
        }
        if let (Some(want), Ok(Some(have))) = (build_id, build_id_hex(&candidate, &debug)) {
            if want != have {
                continue;
            }
        }
        return load_dwarf(&debug, &map).map_err(|e| format!("{}: {e}", candidate.display()));
    }
    Ok(None)
}
