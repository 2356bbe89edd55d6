//! Cargo-style status lines on stderr: a right-aligned bold verb, colored when stderr is a terminal.

use std::io::IsTerminal;

fn color() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}

/// `   Verb message`, like cargo's `   Compiling foo`.
pub(crate) fn status(verb: &str, message: impl std::fmt::Display) {
    if color() {
        eprintln!("\x1b[1;32m{verb:>12}\x1b[0m {message}");
    } else {
        eprintln!("{verb:>12} {message}");
    }
}

/// `warning: message`.
pub(crate) fn warning(message: impl std::fmt::Display) {
    if color() {
        eprintln!("\x1b[1;33mwarning\x1b[0m: {message}");
    } else {
        eprintln!("warning: {message}");
    }
}

/// `error: message: cause: cause`, one line.
pub(crate) fn error(e: &dyn std::error::Error) {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = s.source();
    }
    if color() {
        eprintln!("\x1b[1;31merror\x1b[0m: {line}");
    } else {
        eprintln!("error: {line}");
    }
}

/// `note: message`.
pub(crate) fn note(message: impl std::fmt::Display) {
    if color() {
        eprintln!("\x1b[1;36mnote\x1b[0m: {message}");
    } else {
        eprintln!("note: {message}");
    }
}

/// `error: message`, for a failure that is not an error value (a regression gate's verdict).
pub(crate) fn failure(message: impl std::fmt::Display) {
    if color() {
        eprintln!("\x1b[1;31merror\x1b[0m: {message}");
    } else {
        eprintln!("error: {message}");
    }
}
