//! `sbi reference` and `sbi calibrate` end to end through the binary (issue #15 §6 and §9):
//! reference draws against the closed-form posterior, the file naming, simulation-based
//! calibration of the reference posteriors with a negative control, and bad input as a
//! one-line error that writes nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tsm-sbi-ref-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch");
    dir
}

/// Runs `sbi` with `args` in `dir`.
fn sbi(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sbi"))
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run sbi")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The file names in `dir`, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The rows of a CSV of numbers after its header, and the header.
fn read_csv(path: &Path) -> (String, Vec<Vec<f64>>) {
    let text = std::fs::read_to_string(path).expect("csv");
    let mut lines = text.lines();
    let head = lines.next().expect("header").to_owned();
    let rows = lines
        .map(|l| l.split(',').map(|v| v.parse().expect("number")).collect())
        .collect();
    (head, rows)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("json")).expect("valid json")
}

#[test]
fn reference_draws_match_the_exact_gaussian_and_name_their_files() {
    let dir = scratch("gaussian");
    std::fs::write(
        dir.join("obs.csv"),
        "x1,x2,x3,x4\n0.5,-0.2,1.0,0.0\n1.5,0.3,-2.0,0.7\n",
    )
    .expect("obs");
    let args = [
        "reference",
        "--task",
        "linear_gaussian",
        "--observation",
        "obs.csv",
        "--n",
        "4000",
        "--seed",
        "5",
        "--out",
        "ref.csv",
    ];
    let o = sbi(&dir, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        files(&dir),
        ["obs.csv", "ref.json", "ref_1.csv", "ref_2.csv"]
    );
    // θ ~ N(0, I), x | θ ~ N(θ, (0.5² + 0.2²) I): the posterior is N(x/1.29, 0.29/1.29 · I).
    let sd = (0.29f64 / 1.29).sqrt();
    for (file, x) in [
        ("ref_1.csv", [0.5, -0.2, 1.0, 0.0]),
        ("ref_2.csv", [1.5, 0.3, -2.0, 0.7]),
    ] {
        let (head, rows) = read_csv(&dir.join(file));
        assert_eq!(head, "theta1,theta2,theta3,theta4");
        assert_eq!(rows.len(), 4000);
        for j in 0..4 {
            let col: Vec<f64> = rows.iter().map(|r| r[j]).collect();
            let mean = col.iter().sum::<f64>() / 4000.0;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 3999.0;
            // 5 standard errors (fixed seed): se(mean) = sd/√n, se(var) ≈ var·√(2/n).
            assert!(
                (mean - x[j] / 1.29).abs() < 5.0 * sd / 4000f64.sqrt(),
                "{file} {j}"
            );
            assert!(
                (var - sd * sd).abs() < 5.0 * sd * sd * (2.0f64 / 4000.0).sqrt(),
                "{file} {j}"
            );
        }
    }
    let record = json(&dir.join("ref.json"));
    let obs = &record["parameters"]["observations"];
    assert_eq!(obs[1]["file"], "ref_2.csv");
    assert_eq!(obs[0]["kind"], "gaussian");
    assert!((obs[0]["sd"][0].as_f64().expect("sd") - sd).abs() < 1e-12);
    // Same seed, same bytes.
    let first = std::fs::read(dir.join("ref_2.csv")).expect("csv");
    let again = sbi(&dir, &args);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(first, std::fs::read(dir.join("ref_2.csv")).expect("csv"));
}

#[test]
fn a_grid_reference_records_its_outer_ring_mass() {
    let dir = scratch("grid");
    std::fs::write(
        dir.join("obs.csv"),
        "x1,x2,x3,x4,x5,x6,x7,x8,x9,x10\n10,11,9,10,12,8,10,11,10,9\n",
    )
    .expect("obs");
    let o = sbi(
        &dir,
        &[
            "reference",
            "--task",
            "galton_board",
            "--observation",
            "obs.csv",
            "--n",
            "200",
            "--out",
            "out/gb.csv",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // One observation: the file is --out itself.
    assert_eq!(files(&dir.join("out")), ["gb.csv", "gb.json"]);
    let (head, rows) = read_csv(&dir.join("out/gb.csv"));
    assert_eq!((head.as_str(), rows.len()), ("theta1,theta2", 200));
    let info = &json(&dir.join("out/gb.json"))["parameters"]["observations"][0];
    assert_eq!(info["kind"], "grid");
    assert_eq!(info["grid_cells"][0], 600);
    assert!(info["ring_mass"].as_f64().expect("ring") < 1e-6);
}

#[test]
fn bad_reference_input_is_a_one_line_error_and_writes_nothing() {
    let dir = scratch("bad");
    let gb_head = "x1,x2,x3,x4,x5,x6,x7,x8,x9,x10\n";
    for (name, text) in [
        ("lg.csv", "x1,x2,x3,x4\n0.5,-0.2,1.0,0.0\n".to_owned()),
        ("short.csv", "x1,x2,x3\n0.5,-0.2,1.0\n".to_owned()),
        (
            "frac.csv",
            format!("{gb_head}10,11,9,10,12,8,10,11,10,9.5\n"),
        ),
        // Every ball in bin 0: the posterior runs off the grid's box (outer-ring mass).
        (
            "edge.csv",
            format!("{gb_head}10,11,9,10,12,8,10,11,10,9\n0,0,0,0,0,0,0,0,0,0\n"),
        ),
    ] {
        std::fs::write(dir.join(name), text).expect("obs");
    }
    let before = files(&dir);
    for (args, wanted) in [
        (
            vec!["--task", "linear_gaussian", "--observation", "short.csv"],
            "expected 4",
        ),
        (
            vec!["--task", "galton_board", "--observation", "frac.csv"],
            "row 1 is not an observation of galton_board",
        ),
        (
            vec!["--task", "galton_board", "--observation", "edge.csv"],
            "outer ring",
        ),
        (
            vec!["--task", "coin_flip", "--observation", "lg.csv"],
            "valid names: linear_gaussian",
        ),
        (
            vec!["--task", "linear_gaussian", "--observation", "missing.csv"],
            "cannot read",
        ),
        (
            vec![
                "--task",
                "linear_gaussian",
                "--observation",
                "lg.csv",
                "--n",
                "0",
            ],
            "--n",
        ),
        (
            vec![
                "--task",
                "linear_gaussian",
                "--observation",
                "lg.csv",
                "--out",
                "lg.csv",
            ],
            "overwrite",
        ),
    ] {
        let mut full = vec!["reference"];
        full.extend(&args);
        if !args.contains(&"--out") {
            full.extend(["--out", "ref.csv"]);
        }
        let o = sbi(&dir, &full);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.contains(wanted), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        // Status 1: one line; status 2 (a bad flag value, clap's format): the first line
        // names the flag, then clap's hint.
        match o.status.code() {
            Some(1) => assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}"),
            Some(2) => assert!(err.lines().next().is_some_and(|l| l.contains(wanted))),
            other => panic!("{args:?}: status {other:?}: {err}"),
        }
        assert_eq!(files(&dir), before, "{args:?} wrote something");
    }
}
