//! `disasm` on this test binary: a profile whose samples sit in a function of this process,
//! with the mapping read from `/proc/self/maps` as the sampler writes it.

use std::hint::black_box;

use super::*;
use crate::builder::MappingInfo;
use crate::ProfileBuilder;

#[inline(never)]
fn disasm_marker(x: u64) -> u64 {
    let mut y = black_box(x);
    for i in 0..black_box(8) {
        y = y.rotate_left(5) ^ i;
    }
    black_box(y)
}

/// The mapping of this process that holds `addr`, with the file's build id.
fn self_mapping(addr: u64) -> MappingInfo {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (start, end) = fields[0].split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        if start <= addr && addr < end {
            let filename = fields.get(5..).unwrap_or_default().join(" ");
            let build_id = crate::symbolize::build_id(Path::new(&filename))
                .unwrap()
                .unwrap_or_default();
            return MappingInfo {
                memory_start: start,
                memory_limit: end,
                file_offset: u64::from_str_radix(fields[2], 16).unwrap(),
                filename,
                build_id,
                symbolized: false,
            };
        }
    }
    panic!("{addr:#x} is in no mapping of /proc/self/maps");
}

/// 70ms with the leaf at `marker + 5` and 30ms at `marker + 1` (symbolized), under a caller
/// location.
fn profile(mapping: &MappingInfo) -> (Profile, u64) {
    let marker = disasm_marker as *const () as u64;
    black_box(disasm_marker(3));
    let mut b = ProfileBuilder::new(&[("cpu", "nanoseconds")], ("cpu", "nanoseconds"), 1);
    let m = b.mapping(mapping);
    let f = b.function("caller", "caller", "", 0);
    let caller = b.location(0, 0x10, &[(f, 1)]);
    // As the symbolizer names it: pprof opens only binaries whose samples match by name.
    let name = "rprof_core::report::disasm::tests::disasm_marker";
    let g = b.function(name, name, file!(), 11);
    let hot = b.location(m, marker + 5, &[(g, 13)]);
    let warm = b.location(m, marker + 1, &[(g, 12)]);
    b.add_sample(&[hot, caller], &[70_000_000]);
    b.add_sample(&[warm, caller], &[30_000_000]);
    (b.build(), marker)
}

fn no_resolve(_: &str, _: &str) -> Option<PathBuf> {
    None
}

const BINARIES: Binaries<'static> = Binaries {
    resolve: &no_resolve,
    intel_syntax: false,
};

#[test]
fn samples_land_on_the_instructions_of_the_symbol() {
    let marker = disasm_marker as *const () as u64;
    let mapping = self_mapping(marker);
    let (p, marker) = profile(&mapping);
    let d = disassembly(&p, &ReportOptions::default(), "disasm_marker", &BINARIES).unwrap();
    assert_eq!(d.symbols.len(), 1, "{:?}", d.symbols);
    let sym = &d.symbols[0];
    assert!(sym.name.contains("disasm_marker"), "{}", sym.name);
    assert!(
        sym.name.starts_with("_ZN") || sym.name.starts_with("_R"),
        "{}",
        sym.name
    );
    assert_eq!((sym.flat, sym.cum), (100_000_000, 100_000_000));
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);

    // The ELF address of the marker: the listing starts there, and each sample is on the
    // instruction that holds its address.
    let bias = marker - sym.start;
    assert_eq!(sym.instructions[0].address, sym.start);
    let holding = |a: u64| {
        let a = a - bias;
        sym.instructions
            .iter()
            .rposition(|i| i.address <= a)
            .unwrap()
    };
    let (warm, hot) = (holding(marker + 1), holding(marker + 5));
    for (i, ins) in sym.instructions.iter().enumerate() {
        let want = match i {
            _ if i == warm && i == hot => 100_000_000,
            _ if i == warm => 30_000_000,
            _ if i == hot => 70_000_000,
            _ => 0,
        };
        assert_eq!((ins.flat, ins.cum), (want, want), "{ins:?}");
        assert_ne!(ins.text, "", "{ins:?}");
    }
    // DWARF names the function and file of the instructions.
    assert!(sym.instructions[0].function.ends_with("disasm_marker"));
    assert_eq!(sym.instructions[0].file, "tests.rs");

    let text = d.render();
    assert!(
        text.starts_with("Total: 100ms\nROUTINE ======================== "),
        "{text}"
    );
    assert!(
        text.contains("     100ms      100ms (flat, cum)   100% of Total\n"),
        "{text}"
    );
}

#[test]
fn a_demangled_match_shows_the_demangled_name() {
    let mapping = self_mapping(disasm_marker as *const () as u64);
    let (p, _) = profile(&mapping);
    let d = disassembly(
        &p,
        &ReportOptions::default(),
        "report::disasm::tests::disasm_marker\\b",
        &BINARIES,
    )
    .unwrap();
    assert_eq!(
        d.symbols[0].name,
        "rprof_core::report::disasm::tests::disasm_marker"
    );
    let intel = Binaries {
        resolve: &no_resolve,
        intel_syntax: true,
    };
    let d = disassembly(&p, &ReportOptions::default(), "disasm_marker", &intel).unwrap();
    assert!(
        d.symbols[0]
            .instructions
            .iter()
            .all(|i| !i.text.contains('%')),
        "Intel syntax has no %registers"
    );
}

#[test]
fn another_build_is_not_disassembled() {
    let mut mapping = self_mapping(disasm_marker as *const () as u64);
    mapping.build_id = "00112233".into();
    let (p, _) = profile(&mapping);
    let e = disassembly(&p, &ReportOptions::default(), "disasm_marker", &BINARIES)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("no matches found for regexp: disasm_marker (cannot disassemble with "),
        "{e}"
    );
    assert!(
        e.contains("the profile's is 00112233 (another build)"),
        "{e}"
    );
}

#[test]
fn a_kept_copy_is_read_through_resolve() {
    let mut mapping = self_mapping(disasm_marker as *const () as u64);
    let real = PathBuf::from(&mapping.filename);
    mapping.filename = "/gone/binary".into();
    let (p, _) = profile(&mapping);
    let resolve = move |name: &str, _: &str| (name == "/gone/binary").then(|| real.clone());
    let binaries = Binaries {
        resolve: &resolve,
        intel_syntax: false,
    };
    let d = disassembly(&p, &ReportOptions::default(), "disasm_marker", &binaries).unwrap();
    assert_eq!(d.symbols.len(), 1);
}

#[test]
fn no_match_is_an_error() {
    let mapping = self_mapping(disasm_marker as *const () as u64);
    let (p, _) = profile(&mapping);
    let e = disasm(&p, &ReportOptions::default(), "zzz_nothing", &BINARIES).unwrap_err();
    assert_eq!(e.to_string(), "no matches found for regexp: zzz_nothing");
}

#[test]
fn go_number_syntax_selects_addresses() {
    assert_eq!(parse_address("0x1f"), Some(31));
    assert_eq!(parse_address("017"), Some(15));
    assert_eq!(parse_address("0b11"), Some(3));
    assert_eq!(parse_address("1_000"), Some(1000));
    assert_eq!(parse_address("0"), Some(0));
    assert_eq!(parse_address("hot_one"), None);
}

#[test]
fn long_instructions_get_their_location_on_a_line_above() {
    let ins = |address, text: &str, line, flat| AsmInstruction {
        address,
        text: text.to_owned(),
        function: "f".into(),
        file: "a.rs".into(),
        line,
        flat,
        cum: flat,
    };
    let d = Disassembly {
        total: 10,
        unit: "count".into(),
        output_unit: "minimum".into(),
        symbols: vec![SymbolListing {
            name: "f".into(),
            binary: PathBuf::from("/bin/x"),
            start: 0x10,
            flat: 3,
            cum: 3,
            instructions: vec![
                ins(0x10, "push   %rbp", 1, 0),
                ins(0x11, "mov    %rsp,%rbp", 1, 3),
                ins(0x14, &format!("call   {}", "x".repeat(40)), 2, 0),
            ],
        }],
        warnings: Vec::new(),
    };
    let text = d.render();
    let expected = format!(
        "Total: 10\n\
         ROUTINE ======================== f\n\
         \x20        3          3 (flat, cum) 30.00% of Total\n\
         \x20        .          .         10: push   %rbp                             ;f a.rs:1\n\
         \x20        3          3         11: mov    %rsp,%rbp\n\
         {:74};f a.rs:2\n\
         \x20        .          .         14: call   {}\n",
        "",
        "x".repeat(40)
    );
    assert_eq!(text, expected);
}
