//! The binaries loaded into this process: the mappings of a raw profile, and the code ranges the
//! unwinder consults from a signal handler.
//!
//! [`loaded_objects`] walks `dl_iterate_phdr` (not async-signal-safe: called at start and when a
//! profile is written). [`refresh_code_ranges`] copies the executable ranges into a fixed static
//! table that [`is_code`] and [`is_framed_code`] read lock-free from handlers.

use std::ffi::CStr;
use std::sync::atomic::{AtomicUsize, Ordering};

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
            "[vdso]".to_owned()
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
        };
        for ph in phdrs {
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

const MAX_RANGES: usize = 256;
static RANGES: [[AtomicUsize; 2]; MAX_RANGES] =
    [const { [AtomicUsize::new(0), AtomicUsize::new(0)] }; MAX_RANGES];
static RANGE_COUNT: AtomicUsize = AtomicUsize::new(0);
static MAIN_RANGE: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
static HARNESS_RANGE: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

/// Copy the executable ranges of `objects` into the table the handlers read.
pub fn refresh_code_ranges(objects: &[LoadedObject]) {
    let mut n = 0;
    for o in objects {
        for s in &o.segments {
            if n == MAX_RANGES {
                break;
            }
            if o.is_main {
                MAIN_RANGE[0].store(s.start as usize, Ordering::Relaxed);
                MAIN_RANGE[1].store(s.limit as usize, Ordering::Relaxed);
            }
            // The harness's own code, when it is a library of its own (the preload).
            let here = is_harness_code as *const () as u64;
            if !o.is_main && (s.start..s.limit).contains(&here) {
                HARNESS_RANGE[0].store(s.start as usize, Ordering::Relaxed);
                HARNESS_RANGE[1].store(s.limit as usize, Ordering::Relaxed);
            }
            RANGES[n][0].store(s.start as usize, Ordering::Relaxed);
            RANGES[n][1].store(s.limit as usize, Ordering::Relaxed);
            n += 1;
        }
    }
    RANGE_COUNT.store(n, Ordering::Release);
}

/// Whether `addr` falls into a known executable segment. Async-signal-safe.
pub fn is_code(addr: u64) -> bool {
    let n = RANGE_COUNT.load(Ordering::Acquire);
    let addr = addr as usize;
    RANGES[..n]
        .iter()
        .any(|r| (r[0].load(Ordering::Relaxed)..r[1].load(Ordering::Relaxed)).contains(&addr))
}

/// Whether `addr` is in the main executable's code, which rprof builds with frame pointers.
/// Async-signal-safe.
pub fn is_framed_code(addr: u64) -> bool {
    let addr = addr as usize;
    (MAIN_RANGE[0].load(Ordering::Relaxed)..MAIN_RANGE[1].load(Ordering::Relaxed)).contains(&addr)
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
        refresh_code_ranges(&objects);
        assert!(is_code(here) && is_framed_code(here));
        assert!(!is_code(0x10));
    }
}
