//! `list` on small profiles built by hand over source files written for the test.

use std::path::PathBuf;

use super::*;
use crate::builder::MappingInfo;
use crate::ProfileBuilder;

const MS: i64 = 1_000_000;

/// A directory of its own for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rprof-list-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A source file of `n` lines `line 1` .. `line n`.
fn source(dir: &Path, rel: &str, n: usize) -> String {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let text: String = (1..=n).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// `work` (starting at line 3 of `file`) runs 50ms at line 10 and 30ms in `inl` (line 22 of
/// `inl_file`, starting at line 20), inlined at its line 12; `main` calls it from line 2.
fn profile(file: &str, inl_file: &str) -> Profile {
    let mut b = ProfileBuilder::new(&[("cpu", "nanoseconds")], ("cpu", "nanoseconds"), MS);
    let m = b.mapping(&MappingInfo {
        memory_start: 0x1000,
        memory_limit: 0x9000,
        file_offset: 0,
        filename: "/bin/prog".into(),
        build_id: String::new(),
        symbolized: true,
    });
    let main = b.function("main", "main", file, 1);
    let work = b.function("work", "work", file, 3);
    let inl = b.function("inl", "inl", inl_file, 20);
    let nofile = b.function("nofile", "nofile", "", 0);
    let main_l = b.location(m, 0x1100, &[(main, 2)]);
    let work_l = b.location(m, 0x1200, &[(work, 10)]);
    let inl_l = b.location(m, 0x1300, &[(inl, 22), (work, 12)]);
    let nofile_l = b.location(m, 0x1400, &[(nofile, 0)]);
    b.add_sample(&[work_l, main_l], &[50 * MS]);
    b.add_sample(&[inl_l, main_l], &[30 * MS]);
    b.add_sample(&[nofile_l, main_l], &[20 * MS]);
    b.build()
}

fn line(l: &FunctionListing, number: i64) -> (i64, i64) {
    let s = l.lines.iter().find(|s| s.number == number).unwrap();
    (s.flat, s.cum)
}

#[test]
fn lines_get_flat_and_cum_and_inlined_callees_their_own_listing() {
    let dir = temp_dir("inline");
    let file = source(&dir, "src/main.rs", 40);
    let p = profile(&file, &file);
    let l = listings(
        &p,
        &ReportOptions::default(),
        "^(work|inl)$",
        &SourceSearch::default(),
    )
    .unwrap();
    let names: Vec<&str> = l.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["inl", "work"]);
    let (inl, work) = (&l[0], &l[1]);

    // work: from its start line to 5 lines below its last sampled line.
    assert_eq!(work.lines.first().unwrap().number, 3);
    assert_eq!(work.lines.last().unwrap().number, 17);
    assert_eq!(line(work, 10), (50 * MS, 50 * MS));
    // The inlined call: cum at the caller's line, flat at the callee's.
    assert_eq!(line(work, 12), (0, 30 * MS));
    assert_eq!((work.flat, work.cum), (50 * MS, 80 * MS));
    assert_eq!(line(inl, 22), (30 * MS, 30 * MS));
    assert_eq!(inl.lines.first().unwrap().number, 20);
    assert_eq!(inl.lines.last().unwrap().number, 27);
    assert_eq!(
        work.lines[0].text.as_deref(),
        Some("line 3"),
        "the text of each line"
    );
    assert_eq!(work.path.as_deref(), Some(Path::new(&file)));

    let text = list(
        &p,
        &ReportOptions::default(),
        "^work$",
        &SourceSearch::default(),
    )
    .unwrap();
    let expected_head = format!(
        "Total: 100ms\nROUTINE ======================== work in {file}\n      50ms       80ms (flat, cum) 80.00% of Total\n         .          .      3:line 3\n"
    );
    assert!(text.starts_with(&expected_head), "{text}");
    assert!(
        text.contains("\n      50ms       50ms     10:line 10\n"),
        "{text}"
    );
    assert!(
        text.contains("\n         .       30ms     12:line 12\n"),
        "{text}"
    );
    assert!(text.ends_with("     17:line 17\n"), "{text}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_range_stops_at_the_end_of_the_file() {
    let dir = temp_dir("short");
    let file = source(&dir, "a.rs", 11);
    let l = listings(
        &profile(&file, &file),
        &ReportOptions::default(),
        "^work$",
        &SourceSearch::default(),
    )
    .unwrap();
    assert_eq!(l[0].lines.last().unwrap().number, 11);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_sources_and_files_print_pprofs_lines() {
    let p = profile("/no/such/dir/main.rs", "/no/such/dir/inl.rs");
    let l = listings(
        &p,
        &ReportOptions::default(),
        "work",
        &SourceSearch::default(),
    )
    .unwrap();
    assert_eq!(l[0].path, None);
    // Without the source, only the sampled lines, without text.
    let numbers: Vec<(i64, Option<&str>)> = l[0]
        .lines
        .iter()
        .map(|s| (s.number, s.text.as_deref()))
        .collect();
    assert_eq!(numbers, [(10, None), (12, None)]);
    let text = list(
        &p,
        &ReportOptions::default(),
        "work|nofile",
        &SourceSearch::default(),
    )
    .unwrap();
    assert_eq!(
        text,
        "Total: 100ms\n\
         No source information for nofile\n\
         ROUTINE ======================== work in /no/such/dir/main.rs\n      \
         50ms       80ms (flat, cum) 80.00% of Total\n \
         Error: open /no/such/dir/main.rs: no such file or directory\n"
    );
}

#[test]
fn no_match_and_bad_regex_are_errors() {
    let p = profile("/x.rs", "/x.rs");
    let e = list(
        &p,
        &ReportOptions::default(),
        "zzz",
        &SourceSearch::default(),
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "no matches found for regexp: zzz");
    let e = check_regex("(").unwrap_err().to_string();
    assert!(e.starts_with("parsing argument regexp (: "), "{e}");
}

#[test]
fn relative_paths_are_searched_in_the_source_path_and_its_parents() {
    let dir = temp_dir("relative");
    source(&dir, "src/lib.rs", 20);
    let deeper = dir.join("a/b");
    std::fs::create_dir_all(&deeper).unwrap();
    let p = profile("src/lib.rs", "src/lib.rs");
    let search = SourceSearch::new(
        Some(deeper.to_string_lossy().into_owned()),
        None,
        RustSrc::Off,
    );
    let l = listings(&p, &ReportOptions::default(), "^work$", &search).unwrap();
    assert_eq!(l[0].path, Some(dir.join("src/lib.rs")));
    assert_eq!(l[0].lines[0].text.as_deref(), Some("line 3"));

    // Not found: pprof's message names the search path.
    let elsewhere = SourceSearch::new(Some("/no/such/dir".into()), None, RustSrc::Off);
    let text = list(&p, &ReportOptions::default(), "^work$", &elsewhere).unwrap();
    assert!(
        text.ends_with(" Error: could not find file src/lib.rs on path /no/such/dir\n"),
        "{text}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn standard_library_paths_map_to_rust_src_of_the_same_commit() {
    let sysroot = temp_dir("sysroot");
    source(&sysroot, "library/core/src/cmp.rs", 30);
    let std_file = "/rustc/0123abcd/library/core/src/cmp.rs";
    let p = profile(std_file, std_file);
    let search = |commit: &str| {
        SourceSearch::new(
            None,
            None,
            RustSrc::At {
                root: sysroot.clone(),
                commit: Some(commit.to_owned()),
            },
        )
    };
    let l = listings(&p, &ReportOptions::default(), "^work$", &search("0123abcd")).unwrap();
    assert_eq!(l[0].file, std_file, "the listing names the profile's path");
    assert_eq!(
        l[0].path,
        Some(sysroot.join("library/core/src/cmp.rs")),
        "read from rust-src"
    );
    assert_eq!(l[0].lines[0].text.as_deref(), Some("line 3"));

    // Another toolchain's sources would show the wrong lines: not used.
    let text = list(&p, &ReportOptions::default(), "^work$", &search("ffff")).unwrap();
    assert!(
        text.ends_with(&format!(
            " Error: open {std_file}: no such file or directory\n"
        )),
        "{text}"
    );
    std::fs::remove_dir_all(sysroot).unwrap();
}

#[test]
fn trim_path_cuts_prefixes_for_display_and_search() {
    assert_eq!(trim_path("/proc/self/cwd/src/a.rs", "", ""), "src/a.rs");
    assert_eq!(trim_path("/build/x/src/a.rs", "/build/x", ""), "src/a.rs");
    assert_eq!(
        trim_path("/build/x/src/a.rs", "/other:/build/x/", ""),
        "src/a.rs"
    );
    // The heuristic: cut after the search directory's last component.
    assert_eq!(
        trim_path("/remote/proj/src/a.rs", "", "/home/me/proj"),
        "src/a.rs"
    );
    assert_eq!(
        trim_path("/remote/proj/src/a.rs", "", ""),
        "/remote/proj/src/a.rs"
    );
    assert_eq!(clean("/a/./b//../c/"), "/a/c");
    assert_eq!(clean("./a"), "a");
    assert_eq!(clean("/.."), "/");
    assert_eq!(clean("../a/.."), "..");
}

#[test]
fn filters_change_the_lines_not_the_total() {
    let dir = temp_dir("filters");
    let file = source(&dir, "m.rs", 40);
    let p = profile(&file, &file);
    let opts = ReportOptions {
        filters: crate::report::filter::Filters {
            focus: Some("inl".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let text = list(&p, &opts, "^work$", &SourceSearch::default()).unwrap();
    assert!(text.starts_with("Total: 100ms\n"), "{text}");
    assert!(
        text.contains("         0       30ms (flat, cum) 30.00% of Total\n"),
        "{text}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
