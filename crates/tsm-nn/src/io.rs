//! Atomic file writes, shared by the checkpoints and the experiments' outputs, and the
//! clean-up of the temporary files a killed process leaves.
//!
//! Every temporary file is a hidden sibling of its destination named `.NAME.PID.tmp` (`PID`:
//! the writing process). A process killed between the write and the rename leaves one behind;
//! nothing ever reads such a file, and [`remove_stale_temps`] deletes those whose process is
//! gone (the binaries call it when they start writing into a folder).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Writes `bytes` to `path` atomically: into a temporary sibling (same folder, so the rename
/// stays on one file system), flushed to disk with `fsync`, then renamed over `path`. A
/// crash leaves either the old file or the new one under `path`, never a half-written one
/// (at worst a stray `.NAME.PID.tmp`).
///
/// # Errors
/// [`Error::Io`] naming the file that could not be written or renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    let tmp = temp_path(path);
    let written = fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io(&tmp)(e));
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io(path)(e));
    }
    Ok(())
}

/// The temporary sibling `.NAME.PID.tmp` of `path` for this process.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |s| s.to_string_lossy());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// The process id in a temporary file's name `.NAME.PID.tmp`, if it is one.
fn temp_owner(name: &str) -> Option<u32> {
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (_, pid) = inner.rsplit_once('.')?;
    pid.parse().ok()
}

/// Whether the process `pid` may still be running: on Linux, whether `/proc/PID` exists;
/// elsewhere (no cheap way to tell) always, so nothing that may be in use is removed.
fn may_be_running(pid: u32) -> bool {
    let proc = Path::new("/proc");
    if proc.join("self").exists() {
        proc.join(pid.to_string()).exists()
    } else {
        true
    }
}

/// Removes the temporary files (`.NAME.PID.tmp`) in `dir` whose writing process is gone (a
/// process killed mid-write), never this process's nor a running one's; returns the files
/// removed. A missing folder has none.
///
/// # Errors
/// [`Error::Io`] when `dir` exists but cannot be listed.
pub fn remove_stale_temps(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                path: dir.to_owned(),
                source,
            })
        }
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_owner) else {
            continue;
        };
        if pid != std::process::id()
            && !may_be_running(pid)
            && entry.file_type().is_ok_and(|t| t.is_file())
            && fs::remove_file(entry.path()).is_ok()
        {
            removed.push(entry.path());
        }
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_and_report_the_path() {
        let dir = std::env::temp_dir().join(format!("tsm-nn-io-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("a.csv");
        write_atomic(&file, b"one").expect("first");
        write_atomic(&file, b"two").expect("second");
        assert_eq!(fs::read(&file).expect("read"), b"two");
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["a.csv"]);
        let missing = dir.join("no/such/folder/b.csv");
        match write_atomic(&missing, b"x") {
            Err(Error::Io { path, .. }) => assert!(path.starts_with(dir.join("no"))),
            other => panic!("expected an I/O error, got {other:?}"),
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn stale_temporary_files_are_removed_and_live_ones_kept() {
        let dir = std::env::temp_dir().join(format!("tsm-nn-io-stale-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        // A pid that cannot be running (above Linux's pid_max of 2^22), ours, and files that
        // only look alike.
        let dead = dir.join(".fig5.csv.4294967295.tmp");
        let ours = temp_path(&dir.join("a.csv"));
        let others = [".hidden", "x.tmp", ".a.b.tmp", "a.csv"].map(|n| dir.join(n));
        for f in others.iter().chain([&dead, &ours]) {
            fs::write(f, b"x").expect("write");
        }
        let removed = remove_stale_temps(&dir).expect("clean");
        if Path::new("/proc/self").exists() {
            assert_eq!(removed, std::slice::from_ref(&dead));
            assert!(!dead.exists());
        }
        assert!(ours.exists() && others.iter().all(|f| f.exists()));
        assert_eq!(temp_owner(".step_00000001.safetensors.12.tmp"), Some(12));
        assert!(remove_stale_temps(&dir.join("missing"))
            .expect("none")
            .is_empty());
        let _ = fs::remove_dir_all(&dir);
    }
}
