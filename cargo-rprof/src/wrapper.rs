//! The `RUSTC_WRAPPER` role: run rustc with frame pointers and line tables added to whatever
//! flags cargo computed from the user's own settings (`RUSTFLAGS`, config, profiles).
//!
//! Doing this per invocation instead of through `RUSTFLAGS` keeps every way a user sets flags
//! in effect: cargo ignores config rustflags once `RUSTFLAGS` is set, but it cannot ignore what
//! the wrapper appends. A user's own wrapper (sccache, ...) is chained.

use std::ffi::{OsStr, OsString};
use std::process::Command;

/// Set in cargo's environment to make this binary act as the rustc wrapper.
pub const WRAPPER_ENV: &str = "RPROF_RUSTC_WRAPPER";
/// The user's own `RUSTC_WRAPPER`, chained after ours.
pub const USER_WRAPPER_ENV: &str = "RPROF_USER_RUSTC_WRAPPER";

/// The flags added to one rustc command line (`args` excludes rustc itself).
pub fn extra_flags(args: &[OsString]) -> Vec<&'static str> {
    let is_build = args.iter().any(|a| a == "--crate-name")
        && !args
            .windows(2)
            .any(|w| w[0] == "--crate-name" && w[1] == "___");
    if !is_build {
        return Vec::new();
    }
    let mut flags = vec!["-C", "force-frame-pointers=yes", "-C", "strip=none"];
    let mut debuginfo = None;
    let mut iter = args.iter().map(|a| a.to_string_lossy());
    while let Some(a) = iter.next() {
        let value = if a == "-C" || a == "--codegen" {
            iter.next().map(|v| v.into_owned())
        } else {
            a.strip_prefix("-C").map(str::to_owned)
        };
        if let Some(v) = value.as_deref().and_then(|v| v.strip_prefix("debuginfo=")) {
            debuginfo = Some(v.to_owned());
        }
    }
    let has_lines = debuginfo
        .as_deref()
        .is_some_and(|d| !matches!(d, "0" | "none" | "false" | "n" | "no" | "off"));
    if !has_lines {
        flags.extend(["-C", "debuginfo=limited"]);
    }
    flags
}

/// Run `rustc ARGS...` (as `args`: rustc's path first) with the extra flags; return its status.
pub fn run(args: &[OsString]) -> i32 {
    let (rustc, rest) = args.split_first().expect("checked by the caller");
    let extra = extra_flags(rest);
    let mut cmd = match std::env::var_os(USER_WRAPPER_ENV).filter(|w| !w.is_empty()) {
        Some(user) => {
            let mut c = Command::new(user);
            c.arg(rustc);
            c
        }
        None => Command::new(rustc),
    };
    cmd.args(rest).args(extra.iter().map(OsStr::new));
    match cmd.status() {
        Ok(status) => status.code().unwrap_or(101),
        Err(e) => {
            eprintln!("error: rprof: cannot run {}: {e}", rustc.to_string_lossy());
            101
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn adds_frame_pointers_and_line_tables_to_builds_only() {
        let flags = extra_flags(&args(
            "--crate-name demo --edition=2021 src/lib.rs -C opt-level=3",
        ));
        assert_eq!(
            flags,
            [
                "-C",
                "force-frame-pointers=yes",
                "-C",
                "strip=none",
                "-C",
                "debuginfo=limited"
            ]
        );
        assert!(extra_flags(&args("-vV")).is_empty());
        assert!(extra_flags(&args("- --crate-name ___ --print=file-names")).is_empty());
    }

    #[test]
    fn keeps_richer_debuginfo() {
        for existing in [
            "-C debuginfo=2",
            "-Cdebuginfo=full",
            "--codegen debuginfo=1",
        ] {
            let flags = extra_flags(&args(&format!("--crate-name x {existing}")));
            assert!(!flags.contains(&"debuginfo=limited"), "{existing}");
        }
        let flags = extra_flags(&args("--crate-name x -C debuginfo=0"));
        assert!(flags.contains(&"debuginfo=limited"));
    }
}
