//! The binaries loaded into this process: the mappings of a raw profile, and the code ranges the
//! unwinder consults from a signal handler.
//!
//! [`loaded_objects`] walks `dl_iterate_phdr` (not async-signal-safe: called at start, by the
//! module watcher and when a profile is written) and finds each object's code segments, build id
//! and call-frame sections; [`crate::modules`] turns them into the unwinder's table.

use std::ffi::CStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rprof_core::builder::MappingInfo;

/// An executable segment of a loaded object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeSegment {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub limit: u64,
    /// File offset of `start`.
    pub file_offset: u64,
}

/// A loaded ELF object (the executable, a shared library, the vdso).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedObject {
    /// Path as the dynamic loader knows it (the executable's from `/proc/self/exe`).
    pub path: String,
    /// Lowercase hex GNU build id, or empty.
    pub build_id: String,
    /// Its executable segments.
    pub segments: Vec<CodeSegment>,
    /// Whether this is the main executable.
    pub is_main: bool,
    /// Load bias: the object's stated addresses plus `base` are where it is in memory.
    pub base: u64,
    /// Its DWARF call-frame information, when it has an `.eh_frame_hdr` index.
    pub cfi: Option<CfiSections>,
}

/// Where an object's `.eh_frame_hdr` and `.eh_frame` sections are mapped (absolute addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CfiSections {
    /// `.eh_frame_hdr`: start and length.
    pub eh_frame_hdr: (u64, u64),
    /// `.eh_frame`: start and length (up to and including its zero terminator).
    pub eh_frame: (u64, u64),
}

/// Every loaded object with its executable segments.
pub fn loaded_objects() -> Vec<LoadedObject> {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: dl_iterate_phdr passes a valid info for the duration of the call, and `data`
        // is the Vec we passed in.
        let (info, out) = unsafe { (&*info, &mut *(data as *mut Vec<LoadedObject>)) };
        let is_main = out.is_empty();
        let name = if info.dlpi_name.is_null() {
            String::new()
        } else {
            // SAFETY: dlpi_name is a NUL-terminated string owned by the loader.
            unsafe { CStr::from_ptr(info.dlpi_name) }
                .to_string_lossy()
                .into_owned()
        };
        let path = if is_main && name.is_empty() {
            std::fs::read_link("/proc/self/exe")
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else if name.is_empty() {
            return 0;
        } else if name.starts_with("linux-vdso") || name.starts_with("linux-gate") {
            rprof_core::VDSO_MAPPING.to_owned()
        } else {
            name
        };
        let base = info.dlpi_addr;
        // SAFETY: dlpi_phdr points at dlpi_phnum program headers.
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
        let mut obj = LoadedObject {
            path,
            build_id: String::new(),
            segments: Vec::new(),
            is_main,
            base,
            cfi: None,
        };
        let mut eh_frame_hdr = None;
        for ph in phdrs {
            if ph.p_type == libc::PT_GNU_EH_FRAME {
                eh_frame_hdr = Some((base + ph.p_vaddr, ph.p_memsz));
            }
            if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
                obj.segments.push(CodeSegment {
                    start: base + ph.p_vaddr,
                    limit: base + ph.p_vaddr + ph.p_memsz,
                    file_offset: ph.p_offset,
                });
            } else if ph.p_type == libc::PT_NOTE && obj.build_id.is_empty() {
                // SAFETY: a PT_NOTE segment is mapped (it lies inside a PT_LOAD) at base + vaddr.
                let notes = unsafe {
                    std::slice::from_raw_parts(
                        (base + ph.p_vaddr) as *const u8,
                        ph.p_memsz as usize,
                    )
                };
                obj.build_id = gnu_build_id(notes).unwrap_or_default();
            }
        }
        if let Some(hdr) = eh_frame_hdr {
            let loads: Vec<(u64, u64)> = phdrs
                .iter()
                .filter(|ph| ph.p_type == libc::PT_LOAD)
                .map(|ph| (base + ph.p_vaddr, base + ph.p_vaddr + ph.p_memsz))
                .collect();
            obj.cfi = cfi_sections(hdr, &loads);
        }
        if !obj.segments.is_empty() {
            out.push(obj);
        }
        0
    }
    let mut out: Vec<LoadedObject> = Vec::new();
    // SAFETY: `each` only touches `out` through `data` for the duration of the call.
    unsafe { libc::dl_iterate_phdr(Some(each), &mut out as *mut _ as *mut libc::c_void) };
    out
}

/// Find `.eh_frame` from `.eh_frame_hdr` (its first field points at it) and measure it by walking
/// its records to the zero terminator, never past the end of the loaded segment holding it.
fn cfi_sections(hdr: (u64, u64), loads: &[(u64, u64)]) -> Option<CfiSections> {
    let within = |addr: u64, len: u64| {
        loads
            .iter()
            .find(|&&(start, end)| addr >= start && addr < end)
            .filter(|&&(_, end)| addr.checked_add(len).is_some_and(|e| e <= end))
            .map(|&(_, end)| end)
    };
    within(hdr.0, hdr.1.max(8))?;
    // SAFETY: the header lies inside a loaded segment of this object (checked above).
    let head = unsafe { std::slice::from_raw_parts(hdr.0 as *const u8, 8) };
    let (version, encoding) = (head[0], head[1]);
    if version != 1 {
        return None;
    }
    let word = i32::from_ne_bytes(head[4..8].try_into().ok()?);
    // DW_EH_PE_* encodings seen in practice for eh_frame_ptr.
    let eh_frame = match encoding {
        0x1b => (hdr.0 + 4).checked_add_signed(word as i64)?, // pcrel | sdata4
        0x3b => hdr.0.checked_add_signed(word as i64)?,       // datarel | sdata4
        _ => return None,
    };
    let end = within(eh_frame, 4)?;
    let mut at = eh_frame;
    while at + 4 <= end {
        // SAFETY: `at .. at + 4` lies inside the loaded segment that holds `.eh_frame`.
        let len = unsafe { (at as *const u32).read_unaligned() };
        if len == 0 {
            at += 4;
            break;
        }
        let next = if len == u32::MAX {
            if at + 12 > end {
                break;
            }
            // SAFETY: as above, 8 more bytes checked against the segment's end.
            let len64 = unsafe { ((at + 4) as *const u64).read_unaligned() };
            (at + 12).checked_add(len64)
        } else {
            Some(at + 4 + len as u64)
        };
        match next {
            Some(next) if next <= end => at = next,
            _ => break,
        }
    }
    Some(CfiSections {
        eh_frame_hdr: hdr,
        eh_frame: (eh_frame, at - eh_frame),
    })
}

/// The GNU build id in a block of ELF notes, as lowercase hex.
fn gnu_build_id(mut notes: &[u8]) -> Option<String> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let align4 = |n: usize| (n + 3) & !3;
    while notes.len() >= 12 {
        let word = |i: usize| u32::from_ne_bytes(notes[i..i + 4].try_into().unwrap());
        let (namesz, descsz, kind) = (word(0) as usize, word(4) as usize, word(8));
        let name_end = 12 + align4(namesz);
        let desc_end = name_end + align4(descsz);
        if desc_end > notes.len() {
            return None;
        }
        if kind == NT_GNU_BUILD_ID && &notes[12..12 + namesz] == b"GNU\0" {
            let desc = &notes[name_end..name_end + descsz];
            return Some(desc.iter().map(|b| format!("{b:02x}")).collect());
        }
        notes = &notes[desc_end..];
    }
    None
}

/// The mappings of a raw profile: one per executable segment.
pub fn mapping_infos(objects: &[LoadedObject]) -> Vec<MappingInfo> {
    objects
        .iter()
        .flat_map(|o| {
            o.segments.iter().map(|s| MappingInfo {
                memory_start: s.start,
                memory_limit: s.limit,
                file_offset: s.file_offset,
                filename: o.path.clone(),
                build_id: o.build_id.clone(),
                symbolized: false,
            })
        })
        .collect()
}

static HARNESS_RANGE: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
/// Every object seen loaded since start, so that a profile written after a `dlclose` still maps
/// the addresses sampled in the unloaded library.
static SEEN: Mutex<Vec<LoadedObject>> = Mutex::new(Vec::new());

/// Note `objects` (loaded now): remember them for [`profile_objects`] and find the harness's own
/// code range. Not for handlers.
pub fn remember(objects: &[LoadedObject]) {
    let here = is_harness_code as *const () as u64;
    for o in objects.iter().filter(|o| !o.is_main) {
        for s in o
            .segments
            .iter()
            .filter(|s| (s.start..s.limit).contains(&here))
        {
            HARNESS_RANGE[0].store(s.start as usize, Ordering::Relaxed);
            HARNESS_RANGE[1].store(s.limit as usize, Ordering::Relaxed);
        }
    }
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    for o in objects {
        if !seen.contains(o) {
            seen.push(o.clone());
        }
    }
}

/// The objects a profile written now should map: those loaded now, then those seen loaded
/// earlier and since unloaded. Not for handlers.
pub fn profile_objects() -> Vec<LoadedObject> {
    let mut objects = loaded_objects();
    remember(&objects);
    let seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    for o in seen.iter() {
        if !objects.contains(o) {
            objects.push(o.clone());
        }
    }
    objects
}

/// The vDSO's ELF image as the kernel maps it (it carries its own symbol table), or `None` when
/// the process has no vDSO.
pub fn vdso_image() -> Option<&'static [u8]> {
    // SAFETY: getauxval has no preconditions.
    let base = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) } as usize;
    if base == 0 {
        return None;
    }
    // SAFETY: the kernel maps the whole vDSO image at AT_SYSINFO_EHDR, starting with its ELF
    // header (64 bytes on a 64-bit kernel).
    let header = unsafe { std::slice::from_raw_parts(base as *const u8, 64) };
    if &header[..4] != b"\x7fELF" || header[4] != 2 {
        return None;
    }
    let half = |at: usize| u16::from_ne_bytes([header[at], header[at + 1]]) as usize;
    let shoff = u64::from_ne_bytes(header[40..48].try_into().ok()?) as usize;
    // The section headers come last in the image; the mapping is at least that large.
    let size = shoff.checked_add(half(60).checked_mul(half(58))?)?;
    if !(64..=(1 << 20)).contains(&size) {
        return None;
    }
    // SAFETY: the image spans `size` bytes from its header (its section headers end there),
    // all mapped for the life of the process.
    Some(unsafe { std::slice::from_raw_parts(base as *const u8, size) })
}

/// Write a copy of the vDSO image into `dir` as [`rprof_core::kept_vdso_name`] (unless one with
/// that build id is there already), so that its frames can be symbolized after the process is
/// gone. Returns the file's path. Not for handlers.
pub fn keep_vdso(dir: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    let image = vdso_image().ok_or_else(|| std::io::Error::other("no vdso"))?;
    let build_id = loaded_objects()
        .into_iter()
        .find(|o| o.path == rprof_core::VDSO_MAPPING)
        .map(|o| o.build_id)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| std::io::Error::other("the vdso has no build id"))?;
    let path = dir.join(rprof_core::kept_vdso_name(&build_id));
    if !path.exists() {
        let tmp = dir.join(format!(
            ".{}.{}",
            rprof_core::kept_vdso_name(&build_id),
            std::process::id()
        ));
        std::fs::write(&tmp, image)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(path)
}

/// Whether `addr` is in the preload library's code (never true when the harness is linked
/// into the program). Async-signal-safe.
pub fn is_harness_code(addr: u64) -> bool {
    let addr = addr as usize;
    (HARNESS_RANGE[0].load(Ordering::Relaxed)..HARNESS_RANGE[1].load(Ordering::Relaxed))
        .contains(&addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_executable_and_libc_with_build_ids() {
        let objects = loaded_objects();
        let main = &objects[0];
        assert!(main.is_main);
        assert_eq!(
            std::path::Path::new(&main.path),
            std::env::current_exe().unwrap()
        );
        let here = finds_the_executable_and_libc_with_build_ids as *const () as usize as u64;
        assert!(main
            .segments
            .iter()
            .any(|s| (s.start..s.limit).contains(&here)));
        let libc = objects.iter().find(|o| o.path.contains("libc.so")).unwrap();
        assert_eq!(libc.build_id.len(), 40, "{libc:?}");
        assert!(main.cfi.is_some_and(|c| c.eh_frame.1 > 0));
        let vdso = objects.iter().find(|o| o.path == "[vdso]").unwrap();
        assert!(vdso.cfi.is_some_and(|c| c.eh_frame.1 > 0), "{vdso:?}");
        let dir = std::env::temp_dir().join(format!("rprof-vdso-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kept = keep_vdso(&dir).unwrap();
        let image = std::fs::read(&kept).unwrap();
        assert_eq!(&image[..4], b"\x7fELF");
        assert!(image.windows(20).any(|w| w == b"__vdso_clock_gettime"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
