//! `cargo rprof list` and `cargo rprof disasm` on real profiles of the fixtures, compared with
//! `go tool pprof -list` / `-disasm` on the same files.
//!
//! - `list` is byte-identical to pprof's. pprof cannot read the standard library's
//!   `/rustc/<commit>/...` paths, which rprof maps to the toolchain's `rust-src`; so whole
//!   profiles are compared with `--trim-path /rustc/<commit> --source-path <rust-src>` given to
//!   both tools (then both read the same files), and the fixtures' own functions without flags.
//! - `disasm`: instruction text differs by design (AT&T syntax here, Go's assembler syntax in
//!   `go tool pprof`), so the rows are compared: the `ROUTINE` and `(flat, cum)` lines, and per
//!   instruction its address, flat and cum. `go tool pprof` cannot place the samples of a
//!   position-independent binary in its symbols, so that comparison uses a build of the fixture
//!   with `-C relocation-model=static`; on the usual PIE build the rows are checked against
//!   `objdump`'s instruction addresses.
//!
//! The fixtures are shared copies under `target/rprof-e2e/list-*`, so the next run reuses their
//! builds.

use std::path::{Path, PathBuf};
use std::process::Command;

use rprof::report::list::{listings, RustSrc, SourceSearch};
use rprof::report::ReportOptions;
use rprof::{cargo_rprof, go_tool, read_profile, run, Fixture, Profile};

/// `go tool pprof ARGS FILE`, expecting success.
fn go(go: &Path, args: &[String], file: &Path) -> String {
    let ran = run({
        let mut cmd = Command::new(go);
        cmd.args(["tool", "pprof"]).args(args).arg(file);
        cmd
    });
    ran.expect_code(0);
    ran.stdout
}

/// `cargo rprof ARGS FILE`, expecting success.
fn ours(args: &[String], file: &Path) -> String {
    let ran = run({
        let mut cmd = Command::new(cargo_rprof());
        cmd.arg("rprof").args(args).arg(file);
        cmd
    });
    ran.expect_code(0);
    ran.stdout
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The toolchain's rust-src directory (which may not exist) and its commit.
fn rust_src() -> (PathBuf, String) {
    let out = |args: &[&str]| {
        let o = Command::new("rustc").args(args).output().unwrap();
        String::from_utf8(o.stdout).unwrap()
    };
    let sysroot = out(&["--print", "sysroot"]);
    let commit = out(&["-vV"])
        .lines()
        .find_map(|l| l.strip_prefix("commit-hash: "))
        .unwrap()
        .trim()
        .to_owned();
    (
        Path::new(sysroot.trim()).join("lib/rustlib/src/rust"),
        commit,
    )
}

/// One `list` case on both sides: pprof's `-name=value` flags and ours.
struct ListCase<'a> {
    regex: &'a str,
    flags: &'a [(&'a str, &'a str)],
    /// Whether the regex may list standard library functions (then only compared with the
    /// std sources reachable to pprof too).
    std: bool,
}

/// Compare `list` on `file` for each case, with the std sources reachable to both tools.
fn compare_lists(go_bin: &Path, file: &Path, cases: &[ListCase<'_>]) {
    let (src, commit) = rust_src();
    let trim = format!("/rustc/{commit}");
    let src = src.display().to_string();
    for case in cases {
        for with_std in [false, true] {
            let mut theirs = vec![format!("-list={}", case.regex)];
            let mut mine = strings(&["list", case.regex]);
            for (name, value) in case.flags {
                theirs.push(format!("-{name}={value}"));
                mine.push(format!("--{}", name.replace('_', "-")));
                mine.push(value.to_string());
            }
            if with_std {
                theirs.push(format!("-trim_path={trim}"));
                theirs.push(format!("-source_path={src}"));
                mine.extend(strings(&["--trim-path", &trim, "--source-path", &src]));
            } else if case.std {
                continue; // the standard library's listings differ by design without flags
            }
            let expected = go(go_bin, &theirs, file);
            let got = ours(&mine, file);
            assert_eq!(got, expected, "list {:?} (std flags: {with_std})", mine);
            eprintln!("list {mine:?}: identical ({} lines)", got.lines().count());
        }
    }
}

/// A fixture kept for the next run (its `target/` is reused): shared copies are never dropped.
fn shared(name: &str, tag: &str) -> &'static Fixture {
    Box::leak(Box::new(Fixture::shared(name, tag)))
}

fn cpu_fixture(extra_config: Option<&str>) -> &'static Fixture {
    let tag = if extra_config.is_some() {
        "list-static"
    } else {
        "list"
    };
    let fixture = shared("cpu_split", tag);
    if let Some(config) = extra_config {
        std::fs::create_dir_all(fixture.path(".cargo")).unwrap();
        std::fs::write(fixture.path(".cargo/config.toml"), config).unwrap();
    }
    run(fixture.rprof(&[
        "test",
        "--cpuprofile",
        "cpu.prof",
        "--cpuprofilerate",
        "1000",
        "--",
        "split_three_to_one",
    ]))
    .expect_code(0);
    fixture
}

/// The listing lines of `function` as the engine computes them (what `list` prints).
fn listing_lines(p: &Profile, regex: &str) -> Vec<(i64, i64, i64, String)> {
    let search = SourceSearch::new(None, None, RustSrc::Toolchain);
    let l = listings(p, &ReportOptions::default(), regex, &search).unwrap();
    assert_eq!(l.len(), 1, "{regex}: {l:?}");
    l[0].lines
        .iter()
        .map(|s| (s.number, s.flat, s.cum, s.text.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn cpu_list_and_disasm() {
    let fixture = cpu_fixture(None);
    let file = fixture.path("cpu.prof");
    let p = read_profile(&file);

    // Acceptance: the hot function's hottest line is the spin loop's, by flat and by cum.
    let spin = listing_lines(&p, "^cpu_split::spin$");
    let hottest = spin.iter().max_by_key(|l| l.1).unwrap();
    assert!(hottest.1 > 0 && hottest.3.contains("*state ^="), "{spin:?}");
    let hot_three = listing_lines(&p, "^cpu_split::hot_three$");
    let by_cum = hot_three.iter().max_by_key(|l| l.2).unwrap();
    assert!(by_cum.3.contains("spin(state, 20_000)"), "{hot_three:?}");
    let text = ours(&strings(&["list", "^cpu_split::spin$"]), &file);
    assert!(
        text.contains(&format!("{:>6}:{}\n", hottest.0, hottest.3)),
        "{text}"
    );

    // Acceptance: a standard library function shows its source from rust-src when installed.
    std_function_source(&p, &file);

    disasm_rows_are_objdumps_instructions(fixture, &file);

    let Some(go_bin) = go_tool() else { return };
    compare_lists(
        &go_bin,
        &file,
        &[
            ListCase {
                regex: "hot_three",
                flags: &[],
                std: false,
            },
            ListCase {
                regex: "^cpu_split::",
                flags: &[],
                std: false,
            },
            ListCase {
                regex: "hot_one|spin",
                flags: &[("sample_index", "samples")],
                std: false,
            },
            ListCase {
                regex: ".",
                flags: &[],
                std: true,
            },
            ListCase {
                regex: ".",
                flags: &[("focus", "hot_one")],
                std: true,
            },
            ListCase {
                regex: "spin|lt",
                flags: &[("hide", "spin"), ("ignore", "hot_three")],
                std: true,
            },
        ],
    );
    // No match: pprof's message, a failure.
    let ran = run({
        let mut cmd = Command::new(cargo_rprof());
        cmd.args(["rprof", "list", "no_such_function"]).arg(&file);
        cmd
    });
    assert!(ran.code.is_some_and(|c| c != 0), "{:?}", ran.code);
    assert!(
        ran.stderr
            .contains("no matches found for regexp: no_such_function"),
        "{}",
        ran.stderr
    );
}

/// `list` of a function whose source is in the standard library (`/rustc/<commit>/...`).
fn std_function_source(p: &Profile, file: &Path) {
    let (src, commit) = rust_src();
    let prefix = format!("/rustc/{commit}/");
    let values = rprof::function_values(p, "cpu");
    let mut std_functions: Vec<&str> = p
        .function
        .iter()
        .filter(|f| p.str(f.filename).starts_with(&prefix))
        .map(|f| p.str(f.name))
        .filter(|name| values.get(*name).is_some_and(|v| v.1 != 0))
        .collect();
    std_functions.sort();
    let name = std_functions
        .first()
        .unwrap_or_else(|| panic!("no function of the standard library in the profile"));
    let regex = format!("^{}$", regex_escape(name));
    let text = ours(&strings(&["list", &regex]), file);
    let routine = text.lines().nth(1).unwrap();
    assert!(routine.contains(&format!(" in {prefix}library/")), "{text}");
    if src.join("library").is_dir() {
        assert!(!text.contains(" Error: "), "{text}");
        // Each line shown is that line of the file in rust-src.
        let path = routine.rsplit_once(" in ").unwrap().1;
        let source = std::fs::read_to_string(src.join(&path[prefix.len()..])).unwrap();
        let source: Vec<&str> = source.lines().collect();
        let mut shown = 0;
        for line in text
            .lines()
            .skip(3)
            .take_while(|l| !l.starts_with("ROUTINE"))
        {
            let (number, code) = line[22..].split_once(':').unwrap();
            let number: usize = number.trim().parse().unwrap();
            assert_eq!(code, source[number - 1], "line {number} of {path}");
            shown += 1;
        }
        assert!(shown > 1, "{text}");
        eprintln!("std source of {name} read from rust-src:\n{text}");
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI should install rust-src (rustup component add rust-src)"
        );
        let error = text.lines().nth(3).unwrap();
        assert!(
            error.starts_with(&format!(" Error: open {prefix}library/"))
                && error.ends_with(": no such file or directory"),
            "{text}"
        );
        eprintln!("rust-src is not installed: {error}");
    }
}

/// A regular expression matching `s` literally.
fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A row of a disasm report: `(address, flat, cum, text)`, or a header line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Row {
    Header(String),
    Instruction(u64, String, String, String),
}

fn disasm_rows(text: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    for line in text.lines() {
        if line.starts_with("Total:")
            || line.starts_with("ROUTINE")
            || line.contains(" (flat, cum) ")
        {
            rows.push(Row::Header(line.to_owned()));
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(flat), Some(cum), Some(addr)) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        let Some(addr) = addr
            .strip_suffix(':')
            .and_then(|a| u64::from_str_radix(a, 16).ok())
        else {
            continue; // a location line above a long instruction
        };
        let rest = line.split_once(": ").map_or("", |r| r.1);
        let text = rest.split(';').next().unwrap_or("").trim_end().to_owned();
        rows.push(Row::Instruction(addr, flat.into(), cum.into(), text));
    }
    rows
}

/// On the PIE build: `disasm`'s rows are objdump's instructions of the symbol, and the samples
/// add up to the header's values.
fn disasm_rows_are_objdumps_instructions(fixture: &Fixture, file: &Path) {
    let text = ours(&strings(&["disasm", "hot_three"]), file);
    let rows = disasm_rows(&text);
    let name = text
        .lines()
        .find_map(|l| l.strip_prefix("ROUTINE ======================== "))
        .unwrap_or_else(|| panic!("{text}"))
        .to_owned();
    assert_eq!(
        text.matches("ROUTINE").count(),
        1,
        "one symbol holds hot_three: {text}"
    );
    // The binary the profile names (still the one profiled: nothing rebuilt it).
    let p = read_profile(file);
    let binary = PathBuf::from(p.str(p.mapping[0].filename));
    assert!(binary.starts_with(&fixture.dir), "{}", binary.display());
    let nm = run({
        let mut cmd = Command::new("nm");
        cmd.args(["-S", "--defined-only"]).arg(&binary);
        cmd
    });
    nm.expect_code(0);
    let (start, size) = nm
        .stdout
        .lines()
        .find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 4 && w[3] == name).then(|| {
                (
                    u64::from_str_radix(w[0], 16).unwrap(),
                    u64::from_str_radix(w[1], 16).unwrap(),
                )
            })
        })
        .unwrap_or_else(|| panic!("{name} not in nm's output"));
    let objdump = run({
        let mut cmd = Command::new("objdump");
        cmd.args(["-d", "--no-show-raw-insn"])
            .arg(format!("--start-address={start:#x}"))
            .arg(format!("--stop-address={:#x}", start + size))
            .arg(&binary);
        cmd
    });
    objdump.expect_code(0);
    let expected: Vec<u64> = objdump
        .stdout
        .lines()
        .filter_map(|l| {
            let (addr, rest) = l.trim_start().split_once(":\t")?;
            (!rest.is_empty()).then_some(u64::from_str_radix(addr, 16).ok()?)
        })
        .collect();
    // pprof's symbol ends one byte early: the instruction holding its last byte is not
    // decoded whole (its bytes show as `?` or as what they decode to alone). Every row before
    // it is objdump's.
    let (&final_instruction, before) = expected.split_last().unwrap();
    let mut got = Vec::new();
    let mut flat_rows = 0;
    for row in &rows {
        if let Row::Instruction(addr, flat, _, _) = row {
            if *addr < final_instruction {
                got.push(*addr);
            }
            if flat != "." {
                flat_rows += 1;
            }
        }
    }
    assert_eq!(got, before, "{text}");
    assert!(flat_rows > 0, "samples in hot_three's instructions: {text}");

    // The build in target/ gone (rebuilt, cleaned): the copy `cargo rprof test` kept is read.
    let moved = binary.with_extension("moved-away");
    std::fs::rename(&binary, &moved).unwrap();
    let from_kept = run({
        let mut cmd = Command::new(cargo_rprof());
        cmd.args(["rprof", "disasm", "hot_three"]).arg(file);
        cmd
    });
    std::fs::rename(&moved, &binary).unwrap();
    from_kept.expect_code(0);
    assert_eq!(from_kept.stdout, text, "the kept copy is the same binary");
    eprintln!(
        "disasm hot_three: {} instructions as objdump decodes them",
        got.len()
    );
}

#[test]
fn disasm_rows_match_go_pprof_on_a_non_pie_build() {
    let Some(go_bin) = go_tool() else { return };
    let fixture = cpu_fixture(Some(
        "[build]\nrustflags = [\"-C\", \"relocation-model=static\"]\n",
    ));
    let file = fixture.path("cpu.prof");
    for regex in ["hot_three", "hot_one", "cpu_split", "no_such_symbol"] {
        let ran = run({
            let mut cmd = Command::new(&go_bin);
            cmd.args(["tool", "pprof", &format!("-disasm={regex}")])
                .arg(&file);
            cmd
        });
        let mine = run({
            let mut cmd = Command::new(cargo_rprof());
            cmd.args(["rprof", "disasm", regex]).arg(&file);
            cmd
        });
        if regex == "no_such_symbol" {
            assert_eq!(ran.code, Some(1));
            assert!(mine.code.is_some_and(|c| c != 0), "{:?}", mine.code);
            assert!(
                ran.stderr
                    .contains("no matches found for regexp: no_such_symbol")
                    && mine
                        .stderr
                        .contains("no matches found for regexp: no_such_symbol"),
                "{}\n{}",
                ran.stderr,
                mine.stderr
            );
            continue;
        }
        ran.expect_code(0);
        mine.expect_code(0);
        let strip = |rows: Vec<Row>| -> Vec<Row> {
            rows.into_iter()
                .map(|r| match r {
                    Row::Instruction(a, f, c, _) => Row::Instruction(a, f, c, String::new()),
                    h => h,
                })
                .collect()
        };
        let (theirs, got) = (
            strip(disasm_rows(&ran.stdout)),
            strip(disasm_rows(&mine.stdout)),
        );
        assert!(theirs.len() > 3, "{}", ran.stdout);
        assert_eq!(got, theirs, "disasm {regex}\n{}", mine.stdout);
        eprintln!("disasm {regex}: {} rows as go tool pprof", got.len());
    }
}

#[test]
fn memory_block_and_merged_lists_match_go_pprof() {
    let mem = shared("mem_sites", "list");
    run(mem.rprof(&[
        "test",
        "--memprofile",
        "mem.prof",
        "--memprofilerate",
        "1",
        "--",
        "exact",
    ]))
    .expect_code(0);
    let sync = shared("sync_waits", "list");
    run(sync.rprof(&[
        "test",
        "--blockprofile",
        "block.prof",
        "--",
        "mutex_contention",
    ]))
    .expect_code(0);
    // Two test binaries: one profile merged from both.
    let multi = shared("multi", "list");
    run(multi.rprof(&[
        "test",
        "--cpuprofile",
        "cpu.prof",
        "--cpuprofilerate",
        "1000",
    ]))
    .expect_code(0);
    let Some(go_bin) = go_tool() else { return };
    compare_lists(
        &go_bin,
        &multi.path("cpu.prof"),
        &[ListCase {
            regex: ".",
            flags: &[],
            std: true,
        }],
    );
    compare_lists(
        &go_bin,
        &mem.path("mem.prof"),
        &[
            ListCase {
                regex: ".",
                flags: &[],
                std: true,
            },
            ListCase {
                regex: ".",
                flags: &[("sample_index", "alloc_space")],
                std: true,
            },
            ListCase {
                regex: "^mem_sites::",
                flags: &[("sample_index", "alloc_objects")],
                std: false,
            },
        ],
    );
    compare_lists(
        &go_bin,
        &sync.path("block.prof"),
        &[
            ListCase {
                regex: ".",
                flags: &[],
                std: true,
            },
            ListCase {
                regex: "^sync_waits::",
                flags: &[("sample_index", "contentions")],
                std: false,
            },
        ],
    );
}
