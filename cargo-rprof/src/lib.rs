//! cargo-rprof: the `cargo rprof` subcommand, a thin layer over rprof-core and the preload
//! library built from rprof-harness.
//!
//! One binary plays three roles, chosen by how it is invoked:
//! - `cargo rprof test|bench|run|top|traces|flamegraph|web ...`: the user-facing CLI ([`cli`]);
//! - `cargo-rprof __rprof-runner BINARY ARGS...`: cargo's target runner for each test or bench
//!   binary ([`runner`]): keep a copy of the binary, start it under the preload library;
//! - `RUSTC_WRAPPER`: adds frame pointers and line tables to every crate built ([`wrapper`]).

pub mod analyze;
pub mod cli;
mod error;
pub mod postprocess;
pub mod preload;
pub mod program;
pub mod runner;
pub mod session;
pub mod sessions;
pub mod signals;
mod term;
pub mod web;
pub mod wrapper;

pub use error::CliError;

/// Entry point: dispatch on the role, run it, print errors as one readable chain.
/// Returns the process exit code.
pub fn main() -> i32 {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == runner::RUNNER_ARG) {
        return runner::run(&args[2..]);
    }
    if std::env::var_os(wrapper::WRAPPER_ENV).is_some() && args.len() > 1 {
        return wrapper::run(&args[1..]);
    }
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            term::error(&e);
            e.exit_code()
        }
    }
}
