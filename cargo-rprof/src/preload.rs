//! The preload library embedded in this binary, written out next to the builds that use it.

use std::path::{Path, PathBuf};

use crate::CliError;

/// The preload library's bytes (rprof-harness built as a cdylib by build.rs).
static PRELOAD: &[u8] = include_bytes!(env!("RPROF_PRELOAD_SO"));

/// Write the embedded library into `dir` (once per version) and return its path.
pub fn install(dir: &Path) -> Result<PathBuf, CliError> {
    let path = dir.join(format!(
        "librprof_preload-{}.so",
        env!("RPROF_PRELOAD_HASH")
    ));
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == PRELOAD.len() as u64) {
        return Ok(path);
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::io(format!("cannot create {}", dir.display()), e))?;
    let tmp = dir.join(format!(".preload.{}.tmp", std::process::id()));
    std::fs::write(&tmp, PRELOAD)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| CliError::io(format!("cannot write {}", path.display()), e))?;
    Ok(path)
}
