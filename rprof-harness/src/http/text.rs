//! The `debug=1` and `debug=2` text forms of the live profiles, laid out as Go's
//! net/http/pprof writes them: a header line, then per sample its values, `@` and its
//! addresses, and one `#` line per (inlined) frame.

use std::collections::HashMap;
use std::fmt::Write;

use rprof_core::proto::Sample;
use rprof_core::Profile;

/// The frames of location `id`: (address, [(function, file, line)] innermost first).
fn frames(profile: &Profile, index: &HashMap<u64, usize>, id: u64) -> (u64, Vec<String>) {
    let Some(l) = index.get(&id).map(|&i| &profile.location[i]) else {
        return (0, Vec::new());
    };
    let names = l
        .line
        .iter()
        .map(|line| {
            let f = profile.function.iter().find(|f| f.id == line.function_id);
            match f {
                Some(f) => format!(
                    "{}\t{}:{}",
                    profile.str(f.name),
                    profile.str(f.filename),
                    line.line
                ),
                None => "?".to_owned(),
            }
        })
        .collect();
    (l.address, names)
}

fn location_index(profile: &Profile) -> HashMap<u64, usize> {
    profile
        .location
        .iter()
        .enumerate()
        .map(|(i, l)| (l.id, i))
        .collect()
}

/// `@ 0x.. 0x..` and the `#` lines of one stack, then a blank line.
fn write_stack(out: &mut String, profile: &Profile, index: &HashMap<u64, usize>, stack: &[u64]) {
    let frames: Vec<(u64, Vec<String>)> =
        stack.iter().map(|&id| frames(profile, index, id)).collect();
    out.push_str(" @");
    for (addr, _) in &frames {
        let _ = write!(out, " {addr:#x}");
    }
    out.push('\n');
    for (addr, names) in &frames {
        if names.is_empty() {
            let _ = writeln!(out, "#\t{addr:#x}");
        }
        for name in names {
            let _ = writeln!(out, "#\t{addr:#x}\t{name}");
        }
    }
    out.push('\n');
}

/// Sample values by sample type name.
fn value(profile: &Profile, s: &Sample, name: &str) -> i64 {
    profile
        .sample_type
        .iter()
        .position(|t| profile.str(t.r#type) == name)
        .and_then(|i| s.value.get(i))
        .copied()
        .unwrap_or(0)
}

fn total(profile: &Profile, name: &str) -> i64 {
    profile.sample.iter().map(|s| value(profile, s, name)).sum()
}

/// The heap profile's text form (`heap profile: inuse_objects: inuse_bytes [alloc_objects:
/// alloc_bytes] @ heap/rate`).
pub fn heap(profile: &Profile) -> String {
    let line = |io: i64, ib: i64, ao: i64, ab: i64| format!("{io}: {ib} [{ao}: {ab}]");
    let index = location_index(profile);
    let mut out = format!(
        "heap profile: {} @ heap/{}\n",
        line(
            total(profile, "inuse_objects"),
            total(profile, "inuse_space"),
            total(profile, "alloc_objects"),
            total(profile, "alloc_space")
        ),
        profile.period
    );
    for s in &profile.sample {
        out.push_str(&line(
            value(profile, s, "inuse_objects"),
            value(profile, s, "inuse_space"),
            value(profile, s, "alloc_objects"),
            value(profile, s, "alloc_space"),
        ));
        write_stack(&mut out, profile, &index, &s.location_id);
    }
    out
}

/// The block or mutex profile's text form (Go's `--- contention:` format, delays in ns).
pub fn contention(profile: &Profile) -> String {
    let index = location_index(profile);
    let mut out = String::from("--- contention:\ncycles/second=1000000000\n");
    for s in &profile.sample {
        let _ = write!(
            out,
            "{} {}",
            value(profile, s, "delay"),
            value(profile, s, "contentions")
        );
        write_stack(&mut out, profile, &index, &s.location_id);
    }
    out
}

/// A count profile's text form (`<name> profile: total N`, then `count @ addresses`), samples
/// with the same stack added up; `labels` lists each stack's values of that label key.
pub fn counts(profile: &Profile, name: &str, label: Option<&str>) -> String {
    let index = location_index(profile);
    let mut groups: Vec<(&[u64], i64, Vec<&str>)> = Vec::new();
    for s in &profile.sample {
        let n = s.value.first().copied().unwrap_or(0);
        let tag = label.and_then(|key| {
            s.label
                .iter()
                .find(|l| profile.str(l.key) == key)
                .map(|l| profile.str(l.str))
        });
        match groups.iter_mut().find(|g| g.0 == s.location_id.as_slice()) {
            Some(g) => {
                g.1 += n;
                g.2.extend(tag);
            }
            None => groups.push((&s.location_id, n, tag.into_iter().collect())),
        }
    }
    groups.sort_by_key(|g| std::cmp::Reverse(g.1));
    let mut out = format!(
        "{name} profile: total {}\n",
        groups.iter().map(|g| g.1).sum::<i64>()
    );
    for (stack, n, tags) in groups {
        let _ = write!(out, "{n}");
        if !tags.is_empty() {
            // Before the addresses' comment lines, as Go puts `# labels:`.
            write_stack(&mut out, profile, &index, stack);
            out.pop();
            let _ = writeln!(
                out,
                "# {}: {}\n",
                label.unwrap_or_default(),
                tags.join(", ")
            );
        } else {
            write_stack(&mut out, profile, &index, stack);
        }
    }
    out
}

/// The threads profile's `debug=2` form: every thread, its id and name, and its stack one
/// frame a line, as Go's goroutine dump; `silent` lists the threads that did not answer.
pub fn thread_dump(profile: &Profile, silent: &[(i32, String)]) -> String {
    let index = location_index(profile);
    let mut out = String::new();
    for s in &profile.sample {
        let tid = s
            .label
            .iter()
            .find(|l| profile.str(l.key) == "thread_id")
            .map_or(0, |l| l.num);
        let name = s
            .label
            .iter()
            .find(|l| profile.str(l.key) == rprof_core::labels::THREAD)
            .map_or("", |l| profile.str(l.str));
        let _ = writeln!(out, "thread {tid} \"{name}\":");
        for &id in &s.location_id {
            let (addr, names) = frames(profile, &index, id);
            if names.is_empty() {
                let _ = writeln!(out, "{addr:#x}\n\t?");
            }
            for n in names {
                let (function, place) = n.split_once('\t').unwrap_or((&n, ""));
                let _ = writeln!(out, "{function}\n\t{place} {addr:#x}");
            }
        }
        out.push('\n');
    }
    for (tid, name) in silent {
        let _ = writeln!(
            out,
            "thread {tid} \"{name}\": no stack (it did not answer: the signal is blocked, or the thread is stopped)\n"
        );
    }
    out
}
