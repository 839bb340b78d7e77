//! Output folders and files: every figure writes `<name>.csv`, `.svg`, `.png` and a
//! `<name>.json` run record (parameters, seed, crate version, wall time), as
//! `docs/conventions.md` describes.
//!
//! Files are written with [`tsm_nn::io::write_atomic`] (a temporary sibling, fsync, rename),
//! so an interrupted run never leaves a half-written file under the final name; the
//! temporary files a killed run leaves are removed by the next run into the folder.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;
use tsm_nn::io::write_atomic;

/// A validated, writable output folder.
#[derive(Debug, Clone)]
pub struct OutputDir {
    path: PathBuf,
}

impl OutputDir {
    /// Creates `path` (and parents), removes the temporary files a killed run left there
    /// ([`tsm_nn::io::remove_stale_temps`]) and checks that a file can be written in it.
    ///
    /// # Errors
    /// Names the `--out` flag and the path when the folder cannot be created or written.
    pub fn create(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        fs::create_dir_all(&path).with_context(|| {
            format!("--out {}: cannot create the output folder", path.display())
        })?;
        // Temporary files of a run killed mid-write (never read; see `tsm_nn::io`).
        for f in tsm_nn::io::remove_stale_temps(&path)? {
            tracing::info!(file = %f.display(), "removed a leftover of an interrupted run");
        }
        let probe = path.join(".tsm-write-probe");
        fs::write(&probe, b"")
            .and_then(|()| fs::remove_file(&probe))
            .with_context(|| {
                format!(
                    "--out {}: the output folder is not writable",
                    path.display()
                )
            })?;
        Ok(Self { path })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `folder/file`.
    pub fn file(&self, file: &str) -> PathBuf {
        self.path.join(file)
    }

    /// Writes rows as a tidy CSV (header from the struct's field names), atomically.
    pub fn write_csv<T: Serialize>(&self, file: &str, rows: &[T]) -> Result<PathBuf> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        for row in rows {
            writer.serialize(row)?;
        }
        let bytes = writer.into_inner().context("flushing CSV")?;
        let path = self.file(file);
        write_atomic(&path, &bytes)?;
        Ok(path)
    }

    /// Writes a value as pretty JSON, atomically.
    pub fn write_json<T: Serialize>(&self, file: &str, value: &T) -> Result<PathBuf> {
        let mut bytes = serde_json::to_vec_pretty(value)?;
        bytes.push(b'\n');
        let path = self.file(file);
        write_atomic(&path, &bytes)?;
        Ok(path)
    }
}

/// The JSON record written beside every figure.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord<P: Serialize> {
    /// Figure or run name.
    pub figure: String,
    /// `tsm-experiments` version.
    pub version: &'static str,
    /// The seed.
    pub seed: u64,
    /// Whether this was a `--quick` run.
    pub quick: bool,
    /// Figure-specific parameters.
    pub parameters: P,
    /// Wall time of the computation, in seconds.
    pub wall_time_s: f64,
    /// Threads used by rayon.
    pub threads: usize,
    /// Files written (names inside the output folder).
    pub files: Vec<String>,
}

/// Times a run and builds its [`RunRecord`].
#[derive(Debug)]
pub struct RunTimer {
    start: Instant,
}

impl RunTimer {
    /// Starts the clock.
    pub fn start() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    /// Seconds since start.
    pub fn elapsed_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// The record of a finished run.
    pub fn record<P: Serialize>(
        &self,
        figure: &str,
        seed: u64,
        quick: bool,
        parameters: P,
        files: &[&str],
    ) -> RunRecord<P> {
        RunRecord {
            figure: figure.to_owned(),
            version: env!("CARGO_PKG_VERSION"),
            seed,
            quick,
            parameters,
            wall_time_s: self.elapsed_s(),
            threads: rayon::current_num_threads(),
            files: files.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_killed_runs_temporary_files_are_removed_on_the_next_run() {
        let dir = std::env::temp_dir().join(format!("tsm-output-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        // A pid above Linux's pid_max: that process cannot be running.
        let stale = dir.join(".fig3.csv.4294967295.tmp");
        fs::write(&stale, b"half").expect("write");
        let out = OutputDir::create(&dir).expect("create");
        out.write_csv("a.csv", &[(1, 2)]).expect("csv");
        if Path::new("/proc/self").exists() {
            assert!(!stale.exists());
        }
        let names: Vec<_> = fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(
            names.is_empty() || !Path::new("/proc/self").exists(),
            "{names:?}"
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
