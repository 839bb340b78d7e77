//! Helpers shared by the process-level tests in this folder (`mod common;` in each; Cargo does
//! not build `tests/common/mod.rs` as a test of its own): scratch folders, running a figure
//! binary with `--quick`, checking its outputs, reading its CSV, and running the `sbi` binary.

// Each test file uses only some of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `temp_dir()/PREFIX-PID-NAME`, removed if a previous run left it (not created).
pub fn scratch(prefix: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// [`scratch`], then created empty.
pub fn scratch_created(prefix: &str, name: &str) -> PathBuf {
    let dir = scratch(prefix, name);
    std::fs::create_dir_all(&dir).expect("scratch");
    dir
}

/// Runs the figure binary at `exe` (an `env!("CARGO_BIN_EXE_…")`) with `--quick --out OUT`
/// and asserts that it succeeds.
pub fn run_quick(exe: &str, out: &Path) {
    let name = Path::new(exe)
        .file_name()
        .map_or_else(|| exe.to_owned(), |n| n.to_string_lossy().into_owned());
    let status = Command::new(exe)
        .args(["--quick", "--out"])
        .arg(out)
        .env("RUST_LOG", "warn")
        .status()
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    assert!(status.success(), "{name} --quick failed: {status}");
}

/// Asserts that each of `files` exists in `dir` and is not empty.
pub fn assert_nonempty(dir: &Path, files: &[&str]) {
    for file in files {
        let meta = std::fs::metadata(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(meta.len() > 0, "{file} is empty");
    }
}

/// Asserts that a figure's `STEM.csv`, `.svg`, `.png` and `.json` exist in `dir` and are not
/// empty.
pub fn assert_outputs(dir: &Path, stem: &str) {
    let files = ["csv", "svg", "png", "json"].map(|ext| format!("{stem}.{ext}"));
    assert_nonempty(dir, &files.each_ref().map(String::as_str));
}

/// The header and the records of the CSV at `path`.
pub fn read_records(path: &Path) -> (Vec<String>, Vec<csv::StringRecord>) {
    let mut reader = csv::Reader::from_path(path).expect("csv");
    let header = reader
        .headers()
        .expect("header")
        .iter()
        .map(String::from)
        .collect();
    let rows = reader.records().map(|r| r.expect("row")).collect();
    (header, rows)
}

/// Asserts that `a/FILE` and `b/FILE` hold the same bytes.
pub fn assert_same_bytes(a: &Path, b: &Path, file: &str) {
    assert_eq!(
        std::fs::read(a.join(file)).expect("a"),
        std::fs::read(b.join(file)).expect("b"),
        "{file} differs between {} and {}",
        a.display(),
        b.display()
    );
}

/// A small, fast `sbi train` network.
pub const SMALL: [&str; 8] = [
    "--hidden",
    "16",
    "--embedding-dim",
    "8",
    "--batch",
    "32",
    "--threads",
    "1",
];

/// Runs `sbi` with `args` in `dir`.
pub fn sbi(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sbi"))
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run sbi")
}

/// A process's standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The file names in `dir`, sorted.
pub fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
