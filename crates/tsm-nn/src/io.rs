//! Atomic file writes, shared by the checkpoints and the experiments' outputs.

use std::fs;
use std::io::Write;
use std::path::Path;

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
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |s| s.to_string_lossy());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
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
}
