//! rprof-core: the pprof data model and everything rprof does with a profile once it exists.
//!
//! - [`proto`]: the pprof protobuf messages, field for field.
//! - [`codec`]: gzip + protobuf encoding and decoding, with validation of what is read.
//! - [`builder`]: building a profile from stacks, interning strings, functions and locations.
//! - [`labels`]: the `test`, `thread`, `binary` and `bench` labels of samples.
//! - [`merge`]: merging profiles of one kind (several test binaries of a run) into one.
//! - `symbolize` (feature `symbolize`): turning address-only locations into functions and lines.
//! - `report` (feature `report`): `top`, `traces` and flame graphs, as `go tool pprof` shows them.
//!
//! This crate knows nothing of processes, signals or cargo: it reads and writes profiles.

pub mod builder;
pub mod codec;
pub mod edit;
mod error;
pub mod labels;
pub mod merge;
mod model;
pub mod proto;
#[cfg(feature = "report")]
pub mod report;
#[cfg(feature = "symbolize")]
pub mod symbolize;

pub use builder::ProfileBuilder;
pub use error::Error;
pub use proto::Profile;

/// The comment a heap profile carries when allocations reached it through
/// `rprof_harness::ProfiledAlloc` (written by the harness, read by `cargo rprof`).
pub const PROFILED_ALLOC_COMMENT: &str = "rprof: allocations reported by ProfiledAlloc";

/// The comment that marks a block profile (block and mutex profiles have the same sample types).
pub const BLOCK_PROFILE_COMMENT: &str = "rprof: block profile";

/// The comment that marks a mutex profile.
pub const MUTEX_PROFILE_COMMENT: &str = "rprof: mutex profile";

/// The comment of a raw profile written as a checkpoint while its process ran (see
/// [`checkpoint_path`]), not at its end.
pub const CHECKPOINT_COMMENT: &str = "rprof: checkpoint";

/// Where a raw profile's checkpoint is written: beside it, with `.checkpoint` added. A process
/// killed without a chance to write its profile (SIGKILL) leaves only this.
pub fn checkpoint_path(raw: &std::path::Path) -> std::path::PathBuf {
    let mut name = raw.as_os_str().to_owned();
    name.push(".checkpoint");
    name.into()
}

/// The comment of a raw profile written because signal `sig` was ending its process.
pub fn ended_by_signal_comment(sig: i32) -> String {
    format!("{ENDED_BY_SIGNAL_PREFIX}{sig}")
}

/// The comment of a raw memory profile saying when its peak-heap snapshot was taken (Unix
/// nanoseconds); post-processing turns it into the run summary's line and removes it.
pub fn peak_comment(at_ns: i64) -> String {
    format!("{PEAK_AT_PREFIX}{at_ns}")
}

/// What [`peak_comment`] starts with.
pub const PEAK_AT_PREFIX: &str = "rprof: peak at ";

/// When the peak a comment made by [`peak_comment`] names happened (Unix nanoseconds).
pub fn peak_at(comment: &str) -> Option<i64> {
    comment.strip_prefix(PEAK_AT_PREFIX)?.parse().ok()
}

/// What [`ended_by_signal_comment`] starts with; the signal's number follows.
pub const ENDED_BY_SIGNAL_PREFIX: &str = "rprof: ended by signal ";

/// The signal a comment made by [`ended_by_signal_comment`] names.
pub fn ended_by_signal(comment: &str) -> Option<i32> {
    comment.strip_prefix(ENDED_BY_SIGNAL_PREFIX)?.parse().ok()
}

/// The mapping file name of the vDSO, the kernel's code mapped into every process.
pub const VDSO_MAPPING: &str = "[vdso]";

/// The file name under which a copy of the vDSO image with GNU build id `build_id` is kept next
/// to raw profiles, so that `[vdso]` frames can be symbolized (the vDSO is never a file on disk).
pub fn kept_vdso_name(build_id: &str) -> String {
    format!("vdso-{build_id}.so")
}

/// Result with rprof-core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
