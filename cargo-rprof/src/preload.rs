//! The preload library embedded in this binary, written out next to the builds that use it.

use std::path::{Path, PathBuf};

use crate::CliError;

/// The preload library's bytes (rprof-harness built as a cdylib by build.rs), with the malloc
/// interposer: for runs that write a memory profile.
static PRELOAD: &[u8] = include_bytes!(env!("RPROF_PRELOAD_SO"));
/// The same without the malloc interposer: every other run, whose allocations then cost
/// nothing extra.
static PRELOAD_LIGHT: &[u8] = include_bytes!(env!("RPROF_PRELOAD_LIGHT_SO"));
/// With the malloc interposer and the live endpoints (and their in-process symbolizer).
static PRELOAD_HTTP: &[u8] = include_bytes!(env!("RPROF_PRELOAD_HTTP_SO"));

/// Which embedded library a run needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// CPU, block, mutex and thread-creation profiles: no malloc interposer.
    Light,
    /// Memory profiles: the malloc interposer.
    Memory,
    /// Live endpoints (`run --http`): the interposer and the HTTP server.
    Live,
}

/// Write the embedded library of `variant` into `dir` (once per version) and return its path.
pub fn install(dir: &Path, variant: Variant) -> Result<PathBuf, CliError> {
    let (bytes, name) = match variant {
        Variant::Memory => (
            PRELOAD,
            format!("librprof_preload-{}.so", env!("RPROF_PRELOAD_HASH")),
        ),
        Variant::Light => (
            PRELOAD_LIGHT,
            format!(
                "librprof_preload_light-{}.so",
                env!("RPROF_PRELOAD_LIGHT_HASH")
            ),
        ),
        Variant::Live => (
            PRELOAD_HTTP,
            format!(
                "librprof_preload_http-{}.so",
                env!("RPROF_PRELOAD_HTTP_HASH")
            ),
        ),
    };
    let path = dir.join(name);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64) {
        return Ok(path);
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::io(format!("cannot create {}", dir.display()), e))?;
    let tmp = dir.join(format!(".preload.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| CliError::io(format!("cannot write {}", path.display()), e))?;
    Ok(path)
}
