//! `sbi reference` and `sbi calibrate` end to end through the binary (issue #15 §6 and §9):
//! reference draws against the closed-form posterior, the file naming, simulation-based
//! calibration of the reference posteriors with a negative control, and bad input as a
//! one-line error that writes nothing.

mod common;

use std::path::{Path, PathBuf};

use common::{files, sbi, stderr, SMALL};

fn scratch(test: &str) -> PathBuf {
    common::scratch_created("tsm-sbi-ref", test)
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

/// Runs `sbi calibrate --reference --task TASK` with `extra` flags into `dir/out`; returns
/// the JSON record.
fn calibrate_reference(dir: &Path, task: &str, pairs: &str, extra: &[&str]) -> serde_json::Value {
    let out = format!("cal-{task}-{}", extra.join("_"));
    let mut args = vec![
        "calibrate",
        "--reference",
        "--task",
        task,
        "--pairs",
        pairs,
        "--draws",
        "99",
        "--seed",
        "11",
        "--out",
        &out,
    ];
    args.extend(extra);
    let o = sbi(dir, &args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    assert_eq!(
        files(&dir.join(&out)),
        [
            "calibrate.csv",
            "calibrate.json",
            "calibrate.png",
            "calibrate.svg"
        ]
    );
    json(&dir.join(&out).join("calibrate.json"))
}

/// The smallest KS p-value over the coordinates of a calibrate record.
fn min_p(record: &serde_json::Value) -> f64 {
    record["parameters"]["coordinates"]
        .as_array()
        .expect("coordinates")
        .iter()
        .map(|c| c["p_value"].as_f64().expect("p"))
        .fold(1.0, f64::min)
}

/// SBC of the exact reference posteriors passes, and the same posteriors with their spread
/// halved fail (the negative control).
///
/// Threshold: `calibrate` calls a posterior calibrated when every coordinate's KS p-value is
/// at least `α/d` with `α = 10⁻³` (Bonferroni over the `d` coordinates). For an exact
/// posterior the randomised normalised ranks are exactly Uniform(0, 1), so each p-value is
/// (asymptotically) uniform and the check fails a correct posterior with probability at most
/// `10⁻³` over seeds; the seeds are fixed, so the test is deterministic. `sir` is left out of
/// the test suite (its grid posterior takes ~10 s per observation in release); the library's
/// ignored `sir_reference_is_calibrated_long` runs the same check on 50 pairs.
#[test]
fn reference_posteriors_pass_calibration_and_a_wrong_one_fails() {
    let dir = scratch("calibrate");
    for (task, pairs, d) in [("linear_gaussian", "500", 4), ("galton_board", "150", 2)] {
        let good = calibrate_reference(&dir, task, pairs, &[]);
        let p = &good["parameters"];
        assert_eq!(p["calibrated"], true, "{task}: {p}");
        assert!(min_p(&good) >= 1e-3 / d as f64, "{task}: {p}");
        // Pairs whose grid posterior is refused (an x far in the tail) are skipped, and
        // their count recorded; the rest are ranked.
        let skipped = p["skipped"].as_array().expect("skipped").len();
        assert!(skipped <= 2, "{task}: {p}");
        let kept = pairs.parse::<u64>().expect("pairs") - skipped as u64;
        let hist: u64 = p["coordinates"][0]["histogram"]
            .as_array()
            .expect("histogram")
            .iter()
            .map(|h| h.as_u64().expect("count"))
            .sum();
        assert_eq!(hist, kept);
        let (_, rows) = read_csv(&dir.join(format!("cal-{task}-")).join("calibrate.csv"));
        assert_eq!(rows.len() as u64, kept * d as u64);
        // Negative control: the same posteriors, half as wide: ranks pile up at both ends.
        let narrow = calibrate_reference(&dir, task, pairs, &["--reference-scale", "0.5"]);
        assert_eq!(narrow["parameters"]["calibrated"], false, "{task}");
        assert!(
            min_p(&narrow) < 1e-3 / d as f64 / 10.0,
            "{task}: {}",
            min_p(&narrow)
        );
    }
}

#[test]
fn calibrate_runs_a_trained_model_and_refuses_bad_input() {
    let dir = scratch("calibrate-model");
    let mut args = vec![
        "train",
        "--task",
        "linear_gaussian",
        "--budget",
        "300",
        "--steps",
        "3",
        "--out",
        "run",
    ];
    args.extend(SMALL);
    let t = sbi(&dir, &args);
    assert!(t.status.success(), "{}", stderr(&t));
    let o = sbi(
        &dir,
        &[
            "calibrate",
            "--checkpoint",
            "run",
            "--pairs",
            "20",
            "--draws",
            "9",
            "--steps",
            "20",
            "--out",
            "cal",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let record = json(&dir.join("cal/calibrate.json"));
    assert_eq!(record["parameters"]["task"], "linear_gaussian");
    assert_eq!(record["parameters"]["steps"], 20);
    assert_eq!(
        record["parameters"]["coordinates"].as_array().map(Vec::len),
        Some(4)
    );
    let before = files(&dir);
    for (args, wanted, code) in [
        (
            vec!["--checkpoint", "run", "--task", "sir"],
            "trained on the task linear_gaussian, not sir",
            1,
        ),
        (vec!["--checkpoint", "nowhere"], "--checkpoint", 1),
        (vec!["--reference"], "--task", 2),
        (
            vec!["--reference", "--task", "sir", "--checkpoint", "run"],
            "cannot be used",
            2,
        ),
        (
            vec![
                "--reference",
                "--task",
                "linear_gaussian",
                "--draws",
                "9",
                "--bins",
                "11",
            ],
            "--bins",
            2,
        ),
        (
            vec!["--reference", "--task", "linear_gaussian", "--pairs", "4"],
            "--pairs",
            2,
        ),
        (
            vec!["--checkpoint", "run", "--reference-scale", "0.5"],
            "--reference",
            2,
        ),
    ] {
        let mut full = vec!["calibrate", "--out", "new"];
        full.extend(&args);
        let o = sbi(&dir, &full);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(wanted), "{args:?}: {err}");
        if code == 1 {
            assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        }
        assert_eq!(files(&dir), before, "{args:?} wrote something");
    }
}
