//! Session directories (`<target-dir>/rprof/sessions/<millis>-<pid>`): one per run, holding its
//! kept binaries and raw profiles, and never removed while the run that owns it is alive.
//!
//! The owner holds an exclusive `flock` on the session's `lock` file for as long as it runs;
//! the kernel drops it when the process ends, however it ends. Pruning (at the start of every
//! run) removes only sessions whose lock it can take itself (dead ones), never one younger than
//! [`GRACE`] (a session between its creation and its lock), and keeps the [`KEEP`] newest dead
//! ones for a look at what a recent run kept. Any number of concurrent runs can share a target
//! directory.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::CliError;

/// How many finished sessions to keep (each holds copies of the binaries it ran).
pub const KEEP: usize = 5;
/// Sessions younger than this are never pruned, locked or not.
pub const GRACE: Duration = Duration::from_secs(60);
/// The lock file inside a session.
const LOCK: &str = "lock";

/// A session directory this process owns: held locked until dropped (or the process ends).
#[derive(Debug)]
pub struct Session {
    /// The directory.
    pub dir: PathBuf,
    _lock: File,
}

/// Create a fresh session under `sessions`, lock it, then prune dead ones.
pub fn create(sessions: &Path) -> Result<Session, CliError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let dir = sessions.join(format!("{stamp}-{}", std::process::id()));
    for sub in ["bin", "raw"] {
        std::fs::create_dir_all(dir.join(sub))
            .map_err(|e| CliError::io(format!("cannot create {}", dir.display()), e))?;
    }
    let lock = File::create(dir.join(LOCK))
        .map_err(|e| CliError::io(format!("cannot create {}", dir.join(LOCK).display()), e))?;
    if !try_lock(&lock) {
        return Err(CliError::Usage(format!(
            "cannot lock the new session {}: another process holds it",
            dir.display()
        )));
    }
    prune(sessions, &dir);
    Ok(Session { dir, _lock: lock })
}

/// Take an exclusive lock on `file` without waiting; false when another process holds one.
fn try_lock(file: &File) -> bool {
    // SAFETY: flock on a file descriptor we own; no memory is passed.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Whether the session at `dir` is dead: older than [`GRACE`] and its lock free (a session
/// without a lock file was made by an older rprof, which kept no lock: dead when old).
fn is_dead(dir: &Path) -> bool {
    let old = std::fs::metadata(dir)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age >= GRACE);
    if !old {
        return false;
    }
    match File::open(dir.join(LOCK)) {
        // Our probe's lock goes away when `f` is dropped: taking it only tells us nobody holds it.
        Ok(f) => try_lock(&f),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Remove dead sessions beyond the [`KEEP`] newest dead ones; `current` is never touched.
fn prune(sessions: &Path, current: &Path) {
    let Ok(entries) = std::fs::read_dir(sessions) else {
        return;
    };
    let mut dead: Vec<PathBuf> = entries
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p != current && p.is_dir() && is_dead(p))
        .collect();
    // Names start with the creation time in milliseconds: newest last.
    dead.sort();
    let excess = dead.len().saturating_sub(KEEP);
    for stale in dead.into_iter().take(excess) {
        let _ = std::fs::remove_dir_all(stale);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(dir: &Path, secs: u64) {
        let t = std::time::SystemTime::now() - Duration::from_secs(secs);
        let f = File::open(dir).unwrap();
        f.set_modified(t).unwrap();
    }

    #[test]
    fn live_and_young_sessions_survive_pruning_dead_old_ones_go() {
        let root = std::env::temp_dir().join(format!("rprof-sessions-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // Eight old dead sessions, one old live one (locked by a file we keep open), one
        // young dead one.
        for i in 0..8 {
            let d = root.join(format!("10000000000{i:02}-1"));
            std::fs::create_dir_all(&d).unwrap();
            File::create(d.join(LOCK)).unwrap();
            age(&d, 3600);
        }
        let live = root.join("1000000000000-2");
        std::fs::create_dir_all(&live).unwrap();
        let held = File::create(live.join(LOCK)).unwrap();
        assert!(try_lock(&held));
        age(&live, 3600);
        let young = root.join("1000000000099-3");
        std::fs::create_dir_all(&young).unwrap();

        let mine = create(&root).unwrap();
        let left: Vec<String> = {
            let mut v: Vec<String> = std::fs::read_dir(&root)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        // The live one (the oldest name of all), the 5 newest dead ones, the young one, ours.
        assert!(left.contains(&"1000000000000-2".to_owned()), "{left:?}");
        for i in 3..8 {
            assert!(left.contains(&format!("10000000000{i:02}-1")), "{left:?}");
        }
        for i in 0..3 {
            assert!(!left.contains(&format!("10000000000{i:02}-1")), "{left:?}");
        }
        assert!(left.contains(&"1000000000099-3".to_owned()), "{left:?}");
        assert!(mine.dir.is_dir());
        assert_eq!(left.len(), 1 + 5 + 1 + 1, "{left:?}");
        // Another process could not take our session's lock.
        let probe = File::open(mine.dir.join(LOCK)).unwrap();
        // flock locks belong to the open file description: a second open of the file in
        // this process conflicts like another process's would.
        assert!(!try_lock(&probe));
        drop(held);
        let _ = std::fs::remove_dir_all(&root);
    }
}
