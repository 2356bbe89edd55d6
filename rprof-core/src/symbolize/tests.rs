//! Symbolization of real binaries: this test binary (full debug info in the dev profile) and the
//! C library (symbols only), with mappings read from `/proc/self/maps` as the sampler does.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use super::*;
use crate::builder::{MappingInfo, ProfileBuilder};
use crate::proto::Label;

#[inline(never)]
fn marker_fn() -> u32 {
    black_box(line!())
}

#[inline(always)]
fn inlined_callee(x: u64) -> u64 {
    black_box(x).wrapping_mul(3).rotate_left(7)
}

#[inline(never)]
fn inlining_caller(x: u64) -> u64 {
    let y = inlined_callee(black_box(x));
    black_box(y) + 1
}

extern "C" {
    fn getpid() -> i32;
}

/// The mapping of this process that holds `addr`, as the sampler writes it.
fn self_mapping(addr: u64) -> MappingInfo {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some((start, end)) = fields[0].split_once('-') else {
            continue;
        };
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        if start <= addr && addr < end {
            return MappingInfo {
                memory_start: start,
                memory_limit: end,
                file_offset: u64::from_str_radix(fields[2], 16).unwrap(),
                filename: fields.get(5..).unwrap_or_default().join(" "),
                build_id: String::new(),
                symbolized: false,
            };
        }
    }
    panic!("{addr:#x} is in no mapping of /proc/self/maps");
}

/// A CPU-like profile with one location per `(mapping, return address)`, each its own sample.
fn profile_of(mappings: &[MappingInfo], addresses: &[(usize, u64)]) -> Profile {
    let mut b = ProfileBuilder::new(
        &[("samples", "count"), ("cpu", "nanoseconds")],
        ("cpu", "nanoseconds"),
        10_000_000,
    );
    b.default_sample_type("cpu");
    b.time(1_700_000_000_000_000_000, 2_000_000_000);
    b.comment("made by the symbolize tests");
    let ids: Vec<u64> = mappings.iter().map(|m| b.mapping(m)).collect();
    for (i, &(m, addr)) in addresses.iter().enumerate() {
        let loc = b.location(ids[m], addr, &[]);
        let labels = vec![Label {
            key: b.string("thread"),
            str: b.string(&format!("t{i}")),
            num: 0,
            num_unit: 0,
        }];
        b.add_labeled_sample(&[loc], &[1, 10 * (i as i64 + 1)], labels);
    }
    b.build()
}

fn symbolize(profile: &Profile) -> Symbolized {
    Symbolizer::new().symbolize(profile, &|_, _| None)
}

/// `(name, filename, line, start_line)` of each line of the location at `address`.
fn lines_at(p: &Profile, address: u64) -> Vec<(String, String, i64, i64)> {
    let loc = p.location.iter().find(|l| l.address == address).unwrap();
    loc.line
        .iter()
        .map(|l| {
            let f = p.function_by_id(l.function_id).unwrap();
            (
                p.str(f.name).to_owned(),
                p.str(f.filename).to_owned(),
                l.line,
                f.start_line,
            )
        })
        .collect()
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("rprof-symbolize-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn symbolizes_a_function_of_the_test_binary() {
    let body_line = i64::from(marker_fn());
    let addr = marker_fn as *const () as u64;
    let exe = self_mapping(addr);
    let p = profile_of(std::slice::from_ref(&exe), &[(0, addr + 1)]);
    let out = symbolize(&p);
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    crate::codec::validate(&out.profile).unwrap();
    // With optimizations `black_box` is inlined into the marker: the marker is the outermost line.
    let lines = lines_at(&out.profile, addr + 1);
    let (name, file, line, start_line) = lines.last().unwrap();
    assert_eq!(name, "rprof_core::symbolize::tests::marker_fn", "{lines:?}");
    assert!(file.ends_with("symbolize/tests.rs"), "{file}");
    // The entry of the function is attributed to its `fn` line or its body, just below.
    assert!(
        (body_line - 1..=body_line).contains(line),
        "{line} vs {body_line}"
    );
    // Line-tables-only debug info (release) has no declaration lines.
    assert!([0, body_line - 1].contains(start_line), "{start_line}");
    let loc = out
        .profile
        .location_by_id(out.profile.sample[0].location_id[0])
        .unwrap();
    let f = out
        .profile
        .function_by_id(loc.line.last().unwrap().function_id)
        .unwrap();
    let system_name = out.profile.str(f.system_name);
    assert!(
        system_name.starts_with("_ZN") || system_name.starts_with("_R"),
        "{system_name}"
    );
    let m = &out.profile.mapping[0];
    assert!(m.has_functions && m.has_filenames && m.has_line_numbers && m.has_inline_frames);
    assert_eq!(out.profile.str(m.filename), exe.filename);
}

#[test]
fn expands_inlined_frames_innermost_first() {
    assert_eq!(inlining_caller(1), 3u64.rotate_left(7) + 1);
    let start = inlining_caller as *const () as u64;
    let exe = self_mapping(start);
    let path = Path::new(&exe.filename);
    let mut s = Symbolizer::new();
    let mut found = None;
    for pc in start..start + 1024 {
        let frames = s
            .lookup(path, exe.memory_start, exe.file_offset, pc)
            .unwrap();
        let Some(outer) = frames.last() else { break };
        if !outer.name.ends_with("tests::inlining_caller") {
            break;
        }
        // Optimized builds may show more inlined frames (`black_box`) inside the callee.
        let n = frames.len();
        if n >= 2 && frames[n - 2].name.ends_with("inlined_callee") {
            found = Some((pc, frames));
            break;
        }
    }
    let (pc, frames) = found.expect("no address of inlining_caller shows the inlined callee");
    let n = frames.len();
    let (callee, caller) = (&frames[n - 2], &frames[n - 1]);
    assert_eq!(caller.name, "rprof_core::symbolize::tests::inlining_caller");
    if cfg!(debug_assertions) {
        // Full debug info has linkage names for inlined functions too; line-tables-only has
        // only their plain names.
        assert_eq!(callee.name, "rprof_core::symbolize::tests::inlined_callee");
        assert!(callee.start_line > 0 && callee.start_line < caller.start_line);
    }
    assert!(caller.line > caller.start_line, "{frames:?}");
    assert!(
        callee.filename.ends_with("symbolize/tests.rs"),
        "{frames:?}"
    );

    // The same through a profile: the return address pc + 1 gives the same lines.
    let p = profile_of(std::slice::from_ref(&exe), &[(0, pc + 1)]);
    let out = symbolize(&p);
    let lines = lines_at(&out.profile, pc + 1);
    let got: Vec<(&str, i64)> = lines.iter().map(|l| (l.0.as_str(), l.2)).collect();
    let want: Vec<(&str, i64)> = frames.iter().map(|f| (f.name.as_str(), f.line)).collect();
    assert_eq!(got, want);
    assert!(out.profile.mapping[0].has_inline_frames);
}

#[test]
fn falls_back_to_the_symbol_table_of_libc() {
    let addr = getpid_address();
    let libc = self_mapping(addr);
    assert!(libc.filename.contains("libc"), "{}", libc.filename);
    let p = profile_of(std::slice::from_ref(&libc), &[(0, addr + 1)]);
    let out = symbolize(&p);
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    let lines = lines_at(&out.profile, addr + 1);
    let (name, ..) = lines.last().expect("getpid is in libc's dynamic symbols");
    assert!(name == "getpid" || name == "__getpid", "{name}");
    let m = &out.profile.mapping[0];
    assert!(m.has_functions);
    if !m.has_filenames {
        assert_eq!(lines, [(name.clone(), String::new(), 0, 0)]);
    }
}

/// The address of libc's `getpid`, taken without calling it.
fn getpid_address() -> u64 {
    getpid as *const () as u64
}

#[test]
fn keeps_profile_fields_samples_labels_and_folds_functions() {
    let addr = marker_fn as *const () as u64;
    let exe = self_mapping(addr);
    let unknown = MappingInfo {
        memory_start: 0x1000,
        memory_limit: 0x2000,
        filename: "/nonexistent/libgone.so".into(),
        build_id: "abcdef".into(),
        ..Default::default()
    };
    let p = profile_of(
        &[exe, unknown],
        &[(0, addr + 1), (0, addr + 2), (1, 0x1100)],
    );
    let out = symbolize(&p);
    let q = &out.profile;
    crate::codec::validate(q).unwrap();
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    assert!(out.warnings[0].contains("/nonexistent/libgone.so"));
    assert_eq!(
        q.sample_type
            .iter()
            .map(|vt| q.value_type_name(vt))
            .collect::<Vec<_>>(),
        p.sample_type
            .iter()
            .map(|vt| p.value_type_name(vt))
            .collect::<Vec<_>>()
    );
    assert_eq!(q.period, p.period);
    assert_eq!(
        q.period_type.map(|vt| q.value_type_name(&vt)),
        Some(("cpu".into(), "nanoseconds".into()))
    );
    assert_eq!(
        (q.time_nanos, q.duration_nanos),
        (p.time_nanos, p.duration_nanos)
    );
    assert_eq!(q.str(q.default_sample_type), "cpu");
    assert_eq!(q.str(q.comment[0]), "made by the symbolize tests");
    assert_eq!(q.sample.len(), 3);
    for (a, b) in p.sample.iter().zip(&q.sample) {
        assert_eq!(a.value, b.value);
        assert_eq!(p.str(a.label[0].str), q.str(b.label[0].str));
        let (la, lb) = (
            p.location_by_id(a.location_id[0]).unwrap(),
            q.location_by_id(b.location_id[0]).unwrap(),
        );
        assert_eq!(la.address, lb.address);
    }
    // Two addresses of one function: two locations, one function.
    let outer = |address: u64| {
        let loc = q.location.iter().find(|l| l.address == address).unwrap();
        loc.line.last().unwrap().function_id
    };
    assert_eq!(outer(addr + 1), outer(addr + 2));
    let mut keys: Vec<_> = q
        .function
        .iter()
        .map(|f| (f.name, f.system_name, f.filename, f.start_line))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), q.function.len(), "functions are interned once");
    // The unreadable mapping is kept with its file and build id, unsymbolized.
    let gone = &q.mapping[1];
    assert_eq!(q.str(gone.filename), "/nonexistent/libgone.so");
    assert_eq!(q.str(gone.build_id), "abcdef");
    assert!(!gone.has_functions);
    assert!(lines_at(q, 0x1100).is_empty());
}

#[test]
fn symbolizing_twice_changes_nothing() {
    let addr = marker_fn as *const () as u64;
    let p = profile_of(&[self_mapping(addr)], &[(0, addr + 1)]);
    let mut s = Symbolizer::new();
    let once = s.symbolize(&p, &|_, _| None).profile;
    let twice = s.symbolize(&once, &|_, _| None);
    assert!(twice.warnings.is_empty());
    assert_eq!(twice.profile, once);
}

#[test]
fn resolve_picks_the_file_to_read() {
    let addr = marker_fn as *const () as u64;
    let mut exe = self_mapping(addr);
    let real = std::mem::replace(&mut exe.filename, "/gone/after/the/run/test-binary".into());
    exe.build_id = build_id(Path::new(&real)).unwrap().unwrap_or_default();
    let p = profile_of(std::slice::from_ref(&exe), &[(0, addr + 1)]);
    let seen = std::cell::RefCell::new(Vec::new());
    let out = Symbolizer::new().symbolize(&p, &|file, id| {
        seen.borrow_mut().push((file.to_owned(), id.to_owned()));
        Some(PathBuf::from(&real))
    });
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    assert_eq!(
        *seen.borrow(),
        [(exe.filename.clone(), exe.build_id.clone())]
    );
    let lines = lines_at(&out.profile, addr + 1);
    let name = &lines.last().unwrap().0;
    assert_eq!(name, "rprof_core::symbolize::tests::marker_fn");
    // The mapping still names the profiled file, so pprof could find it again.
    assert_eq!(
        out.profile.str(out.profile.mapping[0].filename),
        exe.filename
    );
}

#[test]
fn build_id_mismatch_leaves_the_mapping_unsymbolized() {
    let addr = getpid_address();
    let mut libc = self_mapping(addr);
    let real = build_id(Path::new(&libc.filename)).unwrap();
    assert!(real.as_ref().is_some_and(|id| id.len() >= 16), "{real:?}");
    libc.build_id = "00112233445566778899aabbccddeeff00112233".into();
    let p = profile_of(std::slice::from_ref(&libc), &[(0, addr + 1)]);
    let out = symbolize(&p);
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    assert!(out.warnings[0].contains("build id"), "{}", out.warnings[0]);
    assert!(out.warnings[0].contains(&libc.filename));
    assert!(lines_at(&out.profile, addr + 1).is_empty());
    assert!(!out.profile.mapping[0].has_functions);
    assert_eq!(
        out.profile.str(out.profile.mapping[0].build_id),
        libc.build_id
    );
}

#[test]
fn unreadable_files_give_warnings_not_errors() {
    let exe = std::env::current_exe().unwrap();
    let head = std::fs::read(&exe).unwrap()[..8192].to_vec();
    let garbage = temp_file("garbage", &[0x5a; 10_000]);
    let truncated = temp_file("truncated", &head);
    let empty = temp_file("empty", b"");
    let cases = [
        "/nonexistent/dir/binary".to_owned(),
        garbage.display().to_string(),
        truncated.display().to_string(),
        empty.display().to_string(),
        "[vdso]".to_owned(),
        String::new(),
    ];
    let mappings: Vec<MappingInfo> = cases
        .iter()
        .enumerate()
        .map(|(i, f)| MappingInfo {
            memory_start: 0x10_0000 * (i as u64 + 1),
            memory_limit: 0x10_0000 * (i as u64 + 1) + 0x1000,
            filename: f.clone(),
            ..Default::default()
        })
        .collect();
    let addresses: Vec<(usize, u64)> = mappings
        .iter()
        .enumerate()
        .map(|(i, m)| (i, m.memory_start + 0x10))
        .collect();
    let out = symbolize(&profile_of(&mappings, &addresses));
    assert_eq!(out.warnings.len(), cases.len(), "{:#?}", out.warnings);
    for (case, warning) in cases.iter().zip(&out.warnings) {
        assert!(warning.contains(case.as_str()), "{warning} vs {case}");
    }
    assert!(out.profile.location.iter().all(|l| l.line.is_empty()));
    assert!(out.profile.mapping.iter().all(|m| !m.has_functions));
    assert!(Symbolizer::new().lookup(&garbage, 0, 0, 0x10).is_err());
    assert!(build_id(&garbage).is_err());
    assert!(matches!(
        build_id(Path::new("/nonexistent/dir/binary")),
        Err(Error::Io { .. })
    ));
    for f in [garbage, truncated, empty] {
        std::fs::remove_file(f).unwrap();
    }
}

#[test]
fn addresses_nobody_knows_stay_bare() {
    let addr = marker_fn as *const () as u64;
    let exe = self_mapping(addr);
    // 0 is never a return address; the last byte of the mapping is usually padding.
    let p = profile_of(std::slice::from_ref(&exe), &[(0, 0), (0, exe.memory_limit)]);
    let out = symbolize(&p);
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    assert!(lines_at(&out.profile, 0).is_empty());
    assert_eq!(out.profile.location.len(), 2);
}

#[test]
fn without_dwarf_the_symbol_table_names_functions() {
    let addr = marker_fn as *const () as u64;
    let exe = self_mapping(addr);
    let path = PathBuf::from(&exe.filename);
    let mut s = Symbolizer::new();
    let symbols_only = loader::load(&path).unwrap().without_dwarf();
    s.binaries.insert(path, Ok(symbols_only));
    let p = profile_of(std::slice::from_ref(&exe), &[(0, addr + 1), (0, addr + 3)]);
    let out = s.symbolize(&p, &|_, _| None);
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    let expected = [(
        "rprof_core::symbolize::tests::marker_fn".to_owned(),
        String::new(),
        0,
        0,
    )];
    assert_eq!(lines_at(&out.profile, addr + 1), expected);
    assert_eq!(lines_at(&out.profile, addr + 3), expected);
    assert_eq!(out.profile.function.len(), 1);
    let m = &out.profile.mapping[0];
    assert!(m.has_functions);
    assert!(!m.has_filenames && !m.has_line_numbers && !m.has_inline_frames);
}

#[test]
fn corrupt_dwarf_falls_back_to_symbols() {
    use object::{Object, ObjectSection};
    let addr = marker_fn as *const () as u64;
    let exe = self_mapping(addr);
    let mut bytes = std::fs::read(&exe.filename).unwrap();
    let (start, size) = {
        let file = object::File::parse(&*bytes).unwrap();
        let info = file.section_by_name(".debug_info").unwrap();
        info.file_range().unwrap()
    };
    // Scramble the whole of .debug_info: unit headers, DIEs, everything.
    let mut x = 0x9e37_79b9_u32;
    for b in &mut bytes[start as usize..(start + size) as usize] {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let path = temp_file("corrupt-dwarf", &bytes);
    let mut mapping = exe.clone();
    mapping.filename = path.display().to_string();
    let p = profile_of(std::slice::from_ref(&mapping), &[(0, addr + 1)]);
    let out = symbolize(&p);
    std::fs::remove_file(&path).unwrap();
    let lines = lines_at(&out.profile, addr + 1);
    assert_eq!(
        lines.last().map(|l| l.0.as_str()),
        Some("rprof_core::symbolize::tests::marker_fn"),
        "{lines:?} {:?}",
        out.warnings
    );
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    assert!(out.warnings[0].contains("DWARF"), "{}", out.warnings[0]);
    assert!(out.profile.mapping[0].has_functions && !out.profile.mapping[0].has_filenames);
}

#[test]
fn a_symbolizer_can_move_to_another_thread() {
    fn send<T: Send>(_: &T) {}
    let mut s = Symbolizer::new();
    let addr = marker_fn as *const () as u64;
    let exe = self_mapping(addr);
    s.lookup(
        Path::new(&exe.filename),
        exe.memory_start,
        exe.file_offset,
        addr,
    )
    .unwrap();
    send(&s);
    assert!(format!("{s:?}").contains(&exe.filename));
}
