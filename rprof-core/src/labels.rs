//! The labels of every sample: `test` (the libtest test it belongs to), `thread` (the name of the
//! thread it was taken on), `binary` (the test or bench target) and `bench` (a criterion
//! benchmark id), as pprof string labels that `-tagfocus`, `-tags` and Pyroscope read.
//!
//! The harness writes each sample with only the serial of its thread (a numeric label,
//! [`raw::THREAD`]) and, after the samples, one value-less record per thread the program created
//! ([`raw::RECORD`]: its creator, the order in which it ended, its name, and the creating stack
//! as its locations). [`apply`] turns that into the final labels once the profile is symbolized:
//!
//! 1. A stack that passes through libtest's `test::__rust_begin_short_backtrace` names its test:
//!    the first frame above it that is not the standard library's (the test function, or the
//!    closure `#[test]` wraps it in), without its crate and closure segments — `tests::burn`,
//!    as `cargo test` prints it. Such a sample is labelled with that test, whatever its thread.
//! 2. Every other sample inherits its thread's test: the thread whose stacks (samples, or the
//!    stacks that created threads) name a test is that test's libtest thread; a thread created
//!    by it, directly or through threads it created, belongs to the test **only if it ended
//!    before the test's thread did** — a thread that outlives its test (a global pool reused by
//!    later tests) cannot say for which test it works, and gets [`SHARED`], never a wrong test.
//!    On the libtest thread itself, a stack that does not pass through the marker is libtest's
//!    own work around the test (spawning, output capture) and is [`SHARED`] too — unless the
//!    stack was cut at the unwinder's depth limit, when it is the test's (its root is lost).
//! 3. Samples whose leaf is the harness's own code are [`HARNESS`]; samples of the main thread
//!    (libtest's runner) and of unknown threads are [`SHARED`].
//! 4. A doctest is a process of its own (rustdoc compiles each to a binary `rust_out`, without
//!    libtest): all its samples belong to it. rustdoc wraps a doctest's code in a function
//!    `_doctest_main_<file>_<line>_<n>`, whose name is all that survives (doctests carry no debug
//!    information), so the test is `doctest <file> (line <line>)` with the file as rustdoc
//!    mangled it (`src_value_mod_rs` for `src/value/mod.rs`). A doctest with its own `main`, or
//!    whose samples never reached its code, is [`DOCTEST`].
//!
//! A profile in which no stack names a test (a bench, a plain program) gets no `test` label.

use std::collections::HashMap;

use crate::proto::{Label, Profile, Sample};

/// The `test` label key.
pub const TEST: &str = "test";
/// The `thread` label key.
pub const THREAD: &str = "thread";
/// The `binary` label key.
pub const BINARY: &str = "binary";
/// The `bench` label key.
pub const BENCH: &str = "bench";
/// The `attempt` label key: which run of a retried test (nextest's `--retries`), from 1.
pub const ATTEMPT: &str = "attempt";
/// The test of work no single test can be charged with: the main thread, a shared pool.
pub const SHARED: &str = "(shared)";
/// The `test` value of a doctest that defines its own `main` (nothing in the binary names it).
pub const DOCTEST: &str = "(doctest)";
/// The name rustdoc gives every doctest's binary.
pub const DOCTEST_BINARY: &str = "rust_out";
/// The test of samples in the profiler's own code.
pub const HARNESS: &str = "(harness)";

/// The label keys of raw profiles, as the harness writes them and [`apply`] consumes them.
pub mod raw {
    /// On a sample: the serial of the thread it was taken on.
    pub const THREAD: &str = "rprof.thread";
    /// On a value-less thread record: the thread's serial.
    pub const RECORD: &str = "rprof.thread_record";
    /// On a thread record: the creating thread's serial (0 when unknown).
    pub const CREATOR: &str = "rprof.creator";
    /// On a thread record: when the thread ended among all threads (1 first), 0 if it did not.
    pub const EXIT_ORDER: &str = "rprof.exit_order";
    /// On a thread record: the thread's name (a string label).
    pub const NAME: &str = "rprof.thread_name";
}

/// A stack this deep was cut by the harness's unwinder (its `MAX_DEPTH`): its root is lost.
const TRUNCATED_DEPTH: usize = 128;

/// The serial of the main thread in the harness's registry.
const MAIN_THREAD: i64 = 1;

/// What a raw profile says of one thread.
#[derive(Debug, Default, Clone)]
struct ThreadInfo {
    creator: i64,
    exit_order: i64,
    name: String,
    /// Tests named by stacks taken on this thread, with how many stacks named each.
    evidence: HashMap<String, usize>,
}

impl ThreadInfo {
    /// The test this thread's own stacks name most often.
    fn own_test(&self) -> Option<&str> {
        self.evidence
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(t, _)| t.as_str())
    }
}

fn num_label(profile: &Profile, sample: &Sample, key: &str) -> Option<i64> {
    sample
        .label
        .iter()
        .find(|l| l.str == 0 && profile.str(l.key) == key)
        .map(|l| l.num)
}

fn str_label<'p>(profile: &'p Profile, sample: &Sample, key: &str) -> Option<&'p str> {
    sample
        .label
        .iter()
        .find(|l| l.str != 0 && profile.str(l.key) == key)
        .map(|l| profile.str(l.str))
}

/// Function names of `locations` (leaf first), root first, inlined frames in call order.
fn names_root_first<'p>(
    profile: &'p Profile,
    locations: &'p [u64],
) -> impl Iterator<Item = &'p str> + 'p {
    locations.iter().rev().flat_map(move |&id| {
        let lines = profile.location_by_id(id).map_or(&[][..], |l| &l.line[..]);
        lines.iter().rev().filter_map(move |line| {
            let f = profile.function_by_id(line.function_id)?;
            Some(profile.str(f.name))
        })
    })
}

/// The libtest test a stack runs, as `cargo test` names it: see the module doc.
pub fn test_of_stack(profile: &Profile, locations: &[u64]) -> Option<String> {
    let mut names = names_root_first(profile, locations);
    // libtest's marker; std has one of the same name at the start of every spawned thread.
    names.find(|n| n.starts_with("test::__rust_begin_short_backtrace"))?;
    names
        .find(|n| !is_runtime_frame(n))
        .and_then(test_name_of_function)
}

/// A frame of libtest's runner: its main loop, or the function that starts each test's thread.
fn is_libtest_runner(name: &str) -> bool {
    name.starts_with("test::run_test") || name.starts_with("test::console::run_tests_console")
}

/// Frames of the standard library and libtest between libtest's marker and the test.
fn is_runtime_frame(name: &str) -> bool {
    name.starts_with('<')
        || ["core::", "std::", "alloc::", "test::"]
            .iter()
            .any(|p| name.starts_with(p))
}

/// `krate::tests::burn::{{closure}}` → `tests::burn`.
fn test_name_of_function(name: &str) -> Option<String> {
    let mut path = name;
    loop {
        let trimmed = path.strip_suffix("::{{closure}}").or_else(|| {
            let i = path.rfind("::{closure#")?;
            path[i..].ends_with('}').then(|| &path[..i])
        });
        match trimmed {
            Some(t) => path = t,
            None => break,
        }
    }
    let (_crate, rest) = path.split_once("::")?;
    Some(rest.to_owned())
}

/// The doctest a profile's process ran (see the module doc), if it ran one.
fn doctest_of(profile: &Profile) -> Option<String> {
    let names = || profile.function.iter().map(|f| profile.str(f.name));
    let wrapper = names().find_map(|name| {
        let segment = name
            .split("::")
            .find_map(|s| s.strip_prefix("_doctest_main_"))?;
        let mut parts = segment.rsplitn(3, '_');
        let (_n, line, file) = (parts.next()?, parts.next()?, parts.next()?);
        line.parse::<u32>()
            .ok()
            .map(|line| format!("doctest {file} (line {line})"))
    });
    wrapper.or_else(|| {
        names()
            .any(|name| name.strip_suffix("::main") == Some(DOCTEST_BINARY))
            .then(|| DOCTEST.to_owned())
    })
}

/// Whether the leaf of `locations` is the profiler's own work, in its preload library. Its
/// `syscall` interposer issues the program's system calls itself: time there is the kernel
/// working for the program (a futex wait, a wake), not the profiler.
fn leaf_in_harness(profile: &Profile, locations: &[u64]) -> bool {
    let Some(leaf) = locations.first().and_then(|&id| profile.location_by_id(id)) else {
        return false;
    };
    let forwards = leaf.line.last().is_some_and(|line| {
        profile
            .function_by_id(line.function_id)
            .is_some_and(|f| profile.str(f.name) == "syscall")
    });
    !forwards
        && leaf.mapping_id != 0
        && profile
            .mapping
            .get(leaf.mapping_id as usize - 1)
            .is_some_and(|m| {
                let file = profile.str(m.filename);
                let base = file.rsplit('/').next().unwrap_or(file);
                base.starts_with("librprof_preload")
            })
}

/// Replace the raw thread serials and records of a symbolized `profile` by the labels `test`
/// and `thread`, and add `binary` when given. A profile without records is returned with only
/// `binary` added.
pub fn apply(profile: &Profile, binary: Option<&str>) -> Profile {
    apply_inner(profile, binary, None)
}

/// The one test a whole process ran, as a process-per-test runner (nextest) names it.
#[derive(Debug, Clone, Copy)]
pub struct ProcessTest<'a> {
    /// The test's name.
    pub name: &'a str,
    /// Which attempt of it this process was, when the test may be retried.
    pub attempt: Option<u32>,
}

/// [`apply`] for a process that ran one known test (nextest runs a process per test): the
/// samples the stacks give a test are that test's, under the name the runner gave it, and
/// carry an `attempt` label when the test may be retried. libtest's own work and threads that
/// outlive the test stay `(shared)`, as in a run of many tests, so each test costs the same
/// under either runner.
pub fn apply_for_test(profile: &Profile, binary: Option<&str>, test: ProcessTest<'_>) -> Profile {
    apply_inner(profile, binary, Some(test))
}

fn apply_inner(profile: &Profile, binary: Option<&str>, whole: Option<ProcessTest<'_>>) -> Profile {
    let mut threads: HashMap<i64, ThreadInfo> = HashMap::new();
    for s in &profile.sample {
        if let Some(serial) = num_label(profile, s, raw::RECORD) {
            let t = threads.entry(serial).or_default();
            t.creator = num_label(profile, s, raw::CREATOR).unwrap_or(0);
            t.exit_order = num_label(profile, s, raw::EXIT_ORDER).unwrap_or(0);
            t.name = str_label(profile, s, raw::NAME).unwrap_or("").to_owned();
        }
    }
    // The test each stack names, and the evidence it gives its thread.
    let mut stack_tests: Vec<Option<String>> = Vec::with_capacity(profile.sample.len());
    for s in &profile.sample {
        let test = test_of_stack(profile, &s.location_id);
        let on = num_label(profile, s, raw::RECORD)
            .map(|_| num_label(profile, s, raw::CREATOR).unwrap_or(0))
            .or_else(|| num_label(profile, s, raw::THREAD));
        if let (Some(test), Some(serial)) = (&test, on) {
            *threads
                .entry(serial)
                .or_default()
                .evidence
                .entry(test.clone())
                .or_default() += 1;
        }
        stack_tests.push(test);
    }
    // A libtest binary: some stack names a test, or runs libtest's runner (a short run may have
    // sampled only the main thread, or only the threads libtest created).
    let any_test = stack_tests.iter().any(Option::is_some)
        || profile
            .sample
            .iter()
            .any(|s| names_root_first(profile, &s.location_id).any(is_libtest_runner));
    let doctest = if any_test {
        None
    } else {
        // A doctest whose samples never reached its code (only the runtime's start) is still
        // known by its binary's name.
        doctest_of(profile).or_else(|| (binary == Some(DOCTEST_BINARY)).then(|| DOCTEST.to_owned()))
    };
    let inherited: HashMap<i64, Option<String>> = threads
        .keys()
        .map(|&serial| (serial, inherited_test(&threads, serial)))
        .collect();

    let raw_keys = [
        raw::THREAD,
        raw::RECORD,
        raw::CREATOR,
        raw::EXIT_ORDER,
        raw::NAME,
    ];
    let mut out = profile.clone();
    out.sample.clear();
    let mut strings = StringTable::new(&mut out);
    for (s, test) in profile.sample.iter().zip(stack_tests) {
        if num_label(profile, s, raw::RECORD).is_some() {
            continue;
        }
        let serial = num_label(profile, s, raw::THREAD);
        let mut label: Vec<Label> = s
            .label
            .iter()
            .filter(|l| !raw_keys.contains(&profile.str(l.key)))
            .cloned()
            .collect();
        if any_test {
            let on = serial.and_then(|t| threads.get(&t));
            let test = if leaf_in_harness(profile, &s.location_id) {
                Some(HARNESS.to_owned())
            } else if test.is_some() {
                test
            } else if let Some(own) = on.and_then(ThreadInfo::own_test) {
                (s.location_id.len() >= TRUNCATED_DEPTH).then(|| own.to_owned())
            } else {
                serial.and_then(|t| inherited.get(&t).cloned().flatten())
            };
            let test = match (test.as_deref(), whole) {
                // The process ran one test: what the stacks give a test is that test, under
                // the name the runner gave it.
                (Some(t), Some(whole)) if t != HARNESS => whole.name,
                (Some(t), _) => t,
                (None, _) => SHARED,
            };
            label.push(strings.label(TEST, test));
            if let Some(attempt) = whole.and_then(|w| w.attempt) {
                label.push(strings.label(ATTEMPT, &attempt.to_string()));
            }
        } else if let Some(doctest) = &doctest {
            let test = if leaf_in_harness(profile, &s.location_id) {
                HARNESS
            } else {
                doctest
            };
            label.push(strings.label(TEST, test));
        }
        if let Some(t) = serial.and_then(|t| threads.get(&t)) {
            if !t.name.is_empty() {
                label.push(strings.label(THREAD, &t.name));
            }
        }
        if let Some(binary) = binary {
            label.push(strings.label(BINARY, binary));
        }
        strings.out.sample.push(Sample {
            location_id: s.location_id.clone(),
            value: s.value.clone(),
            label,
        });
    }
    out
}

/// The test a thread whose own stacks name none inherits: that of the nearest creator whose
/// stacks do, provided the thread ended before that creator did.
fn inherited_test(threads: &HashMap<i64, ThreadInfo>, serial: i64) -> Option<String> {
    let me = threads.get(&serial)?;
    let mut at = me.creator;
    // A creator chain is finite and acyclic (a thread is created after its creator), but a
    // corrupt file must not loop: bound the walk.
    for _ in 0..threads.len() {
        if at == 0 || at == MAIN_THREAD {
            return None;
        }
        let creator = threads.get(&at)?;
        if let Some(test) = creator.own_test() {
            let contained =
                me.exit_order != 0 && creator.exit_order != 0 && me.exit_order < creator.exit_order;
            return contained.then(|| test.to_owned());
        }
        at = creator.creator;
    }
    None
}

/// Interns label strings into a profile's string table.
struct StringTable<'p> {
    out: &'p mut Profile,
    index: HashMap<String, i64>,
}

impl<'p> StringTable<'p> {
    fn new(out: &'p mut Profile) -> Self {
        let index = out
            .string_table
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i as i64))
            .collect();
        StringTable { out, index }
    }

    fn intern(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.out.string_table.len() as i64;
        self.out.string_table.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }

    fn label(&mut self, key: &str, value: &str) -> Label {
        Label {
            key: self.intern(key),
            str: self.intern(value),
            ..Default::default()
        }
    }
}

/// Add the string label `key=value` to every sample of `profile` (e.g. `bench` for a profile
/// written through the criterion hook).
pub fn add_label(profile: &mut Profile, key: &str, value: &str) {
    let mut strings = StringTable::new(profile);
    let label = strings.label(key, value);
    for s in &mut profile.sample {
        s.label.retain(|l| l.key != label.key);
        s.label.push(label.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::ProfileBuilder;

    const LIBTEST: &str = "test::__rust_begin_short_backtrace::<fn()>";

    /// A CPU-like profile builder with helpers for stacks of function names (root first).
    struct Raw {
        b: ProfileBuilder,
        next_address: u64,
    }

    impl Raw {
        fn new() -> Raw {
            Raw {
                b: ProfileBuilder::new(&[("samples", "count")], ("cpu", "nanoseconds"), 1),
                next_address: 0x1000,
            }
        }

        fn stack(&mut self, root_first: &[&str]) -> Vec<u64> {
            let mut ids: Vec<u64> = root_first
                .iter()
                .map(|name| {
                    let f = self.b.function(name, name, "", 0);
                    self.next_address += 1;
                    self.b.location(0, self.next_address, &[(f, 1)])
                })
                .collect();
            ids.reverse();
            ids
        }

        fn num(&mut self, key: &str, num: i64) -> Label {
            Label {
                key: self.b.string(key),
                num,
                ..Default::default()
            }
        }

        fn sample(&mut self, thread: i64, root_first: &[&str], value: i64) {
            let ids = self.stack(root_first);
            let label = self.num(raw::THREAD, thread);
            self.b.add_labeled_sample(&ids, &[value], vec![label]);
        }

        /// A thread record: `serial` created by `creator` from `root_first`, ended `exit`-th.
        fn thread(
            &mut self,
            serial: i64,
            creator: i64,
            exit: i64,
            name: &str,
            root_first: &[&str],
        ) {
            let ids = self.stack(root_first);
            let labels = vec![
                self.num(raw::RECORD, serial),
                self.num(raw::CREATOR, creator),
                self.num(raw::EXIT_ORDER, exit),
                Label {
                    key: self.b.string(raw::NAME),
                    str: self.b.string(name),
                    ..Default::default()
                },
            ];
            self.b.add_labeled_sample(&ids, &[0], labels);
        }
    }

    fn by_label(p: &Profile, key: &str) -> Vec<(String, i64)> {
        let mut m: HashMap<String, i64> = HashMap::new();
        for s in &p.sample {
            let v = str_label(p, s, key).unwrap_or("").to_owned();
            *m.entry(v).or_default() += s.value[0];
        }
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort();
        v
    }

    #[test]
    fn test_names_as_cargo_prints_them() {
        let name = |n| test_name_of_function(n);
        assert_eq!(
            name("krate::tests::burn::{{closure}}").unwrap(),
            "tests::burn"
        );
        assert_eq!(name("krate::a::b::{closure#0}").unwrap(), "a::b");
        assert_eq!(name("krate::top_level").unwrap(), "top_level");
        assert_eq!(name("lonely"), None);
    }

    /// The test thread's own stacks name the test; a joined worker inherits it; a pool thread
    /// that outlived the test, the main thread and libtest's own frames are `(shared)`.
    #[test]
    fn tests_found_inherited_and_shared() {
        let mut r = Raw::new();
        let in_test = [
            "start_thread",
            "test::run_test",
            LIBTEST,
            "core::ops::function::FnOnce::call_once",
            "k::tests::a::{{closure}}",
            "k::tests::a",
            "k::work",
        ];
        r.thread(1, 0, 0, "main", &[]);
        r.thread(2, 1, 5, "tests::a", &["main", "test::run_tests"]);
        r.thread(3, 2, 4, "worker", &in_test);
        r.thread(4, 2, 0, "pool", &in_test);
        r.sample(2, &in_test, 10);
        r.sample(
            2,
            &["start_thread", "test::run_test", "alloc::vec::Vec::new"],
            1,
        );
        r.sample(3, &["start_thread", "k::worker_body"], 20);
        r.sample(4, &["start_thread", "k::pool_body"], 40);
        r.sample(1, &["main", "test::run_tests"], 100);
        let p = apply(&r.b.build(), Some("bin"));
        assert_eq!(
            by_label(&p, TEST),
            vec![("(shared)".into(), 141), ("tests::a".into(), 30)]
        );
        assert_eq!(
            by_label(&p, THREAD),
            vec![
                ("main".into(), 100),
                ("pool".into(), 40),
                ("tests::a".into(), 11),
                ("worker".into(), 20)
            ]
        );
        assert_eq!(by_label(&p, BINARY), vec![("bin".into(), 171)]);
        assert!(p
            .sample
            .iter()
            .all(|s| s.label.iter().all(|l| !p.str(l.key).starts_with("rprof."))));
        assert_eq!(p.sample.len(), 5, "thread records are gone");
    }

    /// A worker created by a thread of the test (not the test's thread itself) still inherits
    /// it; a stack cut at the depth limit on the test's thread stays the test's.
    #[test]
    fn grandchildren_and_truncated_stacks() {
        let mut r = Raw::new();
        let in_test = ["start_thread", LIBTEST, "k::t::{{closure}}"];
        r.thread(2, 1, 9, "t", &["main"]);
        r.thread(3, 2, 5, "child", &in_test);
        r.thread(4, 3, 4, "grandchild", &["start_thread", "k::spawner"]);
        r.sample(2, &in_test, 1);
        r.sample(4, &["start_thread", "k::leaf"], 7);
        let deep: Vec<&str> = std::iter::repeat_n("k::recurse", TRUNCATED_DEPTH).collect();
        r.sample(2, &deep, 3);
        let p = apply(&r.b.build(), None);
        assert_eq!(by_label(&p, TEST), vec![("t".into(), 11)]);
    }

    /// A libtest binary whose stacks name no test (a short run) still gets `test` labels.
    #[test]
    fn libtest_runner_without_tests_is_shared() {
        let mut r = Raw::new();
        r.thread(1, 0, 0, "main", &[]);
        r.sample(1, &["main", "test::console::run_tests_console"], 5);
        let p = apply(&r.b.build(), None);
        assert_eq!(by_label(&p, TEST), vec![("(shared)".into(), 5)]);
    }

    /// A profile where no stack names a test (a bench, a program) gets no `test` label.
    #[test]
    fn no_test_no_label() {
        let mut r = Raw::new();
        r.thread(1, 0, 0, "main", &[]);
        r.sample(1, &["main", "k::bench"], 5);
        let p = apply(&r.b.build(), None);
        assert_eq!(by_label(&p, TEST), vec![("".into(), 5)]);
        assert_eq!(by_label(&p, THREAD), vec![("main".into(), 5)]);
    }

    /// Every sample of a doctest's process is the doctest's, named from rustdoc's wrapper.
    #[test]
    fn doctests_are_named_from_their_wrapper() {
        let mut r = Raw::new();
        r.thread(1, 0, 0, "rust_out", &[]);
        r.thread(2, 1, 1, "", &["main", "rust_out::main"]);
        r.sample(1, &["main", "std::rt::lang_start", "rust_out::main"], 2);
        r.sample(
            1,
            &[
                "main",
                "rust_out::main",
                "rust_out::main::_doctest_main_src_value_mod_rs_292_0",
            ],
            5,
        );
        r.sample(2, &["start_thread", "k::work"], 3);
        let p = apply(&r.b.build(), Some("rust_out"));
        assert_eq!(
            by_label(&p, TEST),
            vec![("doctest src_value_mod_rs (line 292)".into(), 10)]
        );
        // Its own `main`: nothing names it.
        let mut r = Raw::new();
        r.thread(1, 0, 0, "rust_out", &[]);
        r.sample(1, &["main", "rust_out::main"], 4);
        let p = apply(&r.b.build(), None);
        assert_eq!(by_label(&p, TEST), vec![(DOCTEST.into(), 4)]);
        // Never reached its code: its binary's name says what it was.
        let mut r = Raw::new();
        r.thread(1, 0, 0, "rust_out", &[]);
        r.sample(1, &["main", "std::rt::lang_start"], 3);
        let p = apply(&r.b.build(), Some(DOCTEST_BINARY));
        assert_eq!(by_label(&p, TEST), vec![(DOCTEST.into(), 3)]);
    }

    #[test]
    fn add_label_replaces() {
        let mut r = Raw::new();
        r.sample(9, &["x"], 2);
        let mut p = apply(&r.b.build(), None);
        add_label(&mut p, BENCH, "a");
        add_label(&mut p, BENCH, "b");
        assert_eq!(by_label(&p, BENCH), vec![("b".into(), 2)]);
    }
}
