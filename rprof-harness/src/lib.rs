//! rprof-harness: the profilers that live inside the profiled process.
//!
//! Two ways in:
//! - the **preload library** (this crate built as a `cdylib` with feature `preload`), which
//!   `cargo rprof` puts in `LD_PRELOAD` of each test or bench binary: it reads its settings from
//!   `RPROF_*` variables, removes them (and `LD_PRELOAD`) from the environment so children run
//!   unprofiled, starts the requested profilers before `main` and writes an unsymbolized pprof
//!   file at exit;
//! - the library itself, for code that links it.
//!
//! The unsafe code sits in small modules with one job each, hazards written at their top:
//! [`unwind`] (CFI and frame-pointer walking with stack-bound checks), `modules` (the table of
//! loaded objects' call-frame information the unwinder reads lock-free), [`queue`] (the lock-free sample
//! buffer a signal handler writes into), `cpu` (the per-thread CPU timers and the `SIGPROF`
//! handler), [`thread`] (per-thread state: stack bounds, timers), `maps` (the loaded binaries).

pub mod alloc;
pub mod cpu;
#[cfg(feature = "criterion")]
pub mod criterion;
#[cfg(feature = "http")]
pub mod http;
pub mod maps;
pub mod mem;
pub mod modules;
#[cfg(feature = "api")]
pub mod pprof;
pub mod queue;
pub mod raw;
mod rng;
pub mod signal_watch;
pub mod sync;
mod sys;
pub mod thread;
#[cfg(feature = "http")]
pub mod thread_stacks;
pub mod threads;
mod tls;
pub mod unwind;

#[cfg(feature = "preload-malloc")]
mod malloc;
#[cfg(feature = "preload")]
mod preload;
#[cfg(feature = "preload")]
mod survival;
#[cfg(feature = "preload")]
mod sync_hooks;

pub use alloc::ProfiledAlloc;

/// The README's Rust examples, compiled as doctests so they stay true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
