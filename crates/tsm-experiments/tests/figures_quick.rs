//! Runs the `--quick` variants of Figs. 1–3 as a user would, and checks their outputs:
//! the files every figure writes (docs/conventions.md), Fig. 2's fixed CSV columns (and the exact ones appended), its
//! `--easy-mixture-sd`, Fig. 1's variance-optimal weight, completeness and finiteness, and
//! byte-for-byte reproducibility with the same seed (also across thread counts).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_same_bytes, read_records};

fn scratch(name: &str) -> PathBuf {
    common::scratch("tsm-test", name)
}

fn run(bin: &str, out: &Path, extra: &[&str], threads: Option<usize>) -> std::process::Output {
    let mut cmd = Command::new(bin);
    cmd.arg("--out").arg(out).args(extra);
    if let Some(n) = threads {
        cmd.env("RAYON_NUM_THREADS", n.to_string());
    }
    let output = cmd.output().expect("binary runs");
    assert!(
        output.status.success(),
        "{bin} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// [`common::assert_outputs`], then the PNG's signature and the JSON's keys.
fn assert_outputs(dir: &Path, stem: &str) {
    common::assert_outputs(dir, stem);
    let png = std::fs::read(dir.join(format!("{stem}.png"))).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{stem}.json"))).unwrap()).unwrap();
    for key in ["seed", "version", "wall_time_s", "parameters"] {
        assert!(json.get(key).is_some(), "{stem}.json lacks {key}");
    }
}

#[test]
fn fig2_quick_has_the_fixed_columns_is_complete_and_reproducible() {
    let bin = env!("CARGO_BIN_EXE_fig2_estimator_variance");
    let (a, b) = (scratch("fig2-a"), scratch("fig2-b"));
    run(bin, &a, &["--quick", "--seed", "3"], Some(2));
    run(bin, &b, &["--quick", "--seed", "3"], Some(1));
    assert_outputs(&a, "fig2");
    // Same seed, different thread count (2 in `a`, 1 in `b`): the same bytes.
    assert_same_bytes(&a, &b, "fig2.csv");
    let csv_a = std::fs::read(a.join("fig2.csv")).unwrap();

    let (header, rows) = read_records(&a.join("fig2.csv"));
    // The columns of docs/conventions.md, then the exact ones (appended, so that the first
    // five are what they always were).
    assert_eq!(
        header,
        [
            "target",
            "t",
            "estimator",
            "variance",
            "mse",
            "variance_exact",
            "mse_exact"
        ]
    );
    let times = 19; // --quick: t = k/20, k = 1..19
    assert_eq!(rows.len(), 4 * 4 * times);
    let mut seen = std::collections::BTreeSet::new();
    for r in &rows {
        let [variance, mse, variance_exact, mse_exact]: [f64; 4] =
            std::array::from_fn(|i| r[3 + i].parse().unwrap());
        for v in [variance, mse, variance_exact] {
            assert!(v.is_finite() && v >= 0.0, "{r:?}");
        }
        // Both Monte Carlo columns estimate E[Var(L|x_t)]/draws: one exact number.
        assert_eq!(variance_exact, mse_exact, "{r:?}");
        // κ and κ̄ on the Gaussian have no variance at all; elsewhere Monte Carlo and exact
        // are close (the test of the agreement, in standard errors, is in the library).
        if variance_exact > 0.0 && r[0] != *"hard_mixture_same_var" {
            assert!((variance / variance_exact - 1.0).abs() < 0.5, "{r:?}");
        }
        seen.insert((r[0].to_owned(), r[2].to_owned()));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("fig2.json")).unwrap()).unwrap();
    let exact = &json["parameters"]["exact"];
    assert!(exact["seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(exact["cells"].as_u64(), Some(2 * rows.len() as u64));
    let targets = [
        "unit_gaussian",
        "easy_mixture",
        "hard_mixture_same_var",
        "hard_mixture_diff_var",
    ];
    let estimators = ["dsi", "tsi", "kappa", "kappa_bar"];
    for t in targets {
        for e in estimators {
            assert!(
                seen.contains(&(t.to_owned(), e.to_owned())),
                "missing {t}/{e}"
            );
        }
    }
    // A different seed gives different numbers (the seed is really used).
    let c = scratch("fig2-c");
    run(bin, &c, &["--quick", "--seed", "4"], None);
    assert!(std::fs::read(c.join("fig2.csv")).unwrap() != csv_a);
    for d in [a, b, c] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn fig2_easy_mixture_sd_changes_that_target_only_and_is_validated() {
    let bin = env!("CARGO_BIN_EXE_fig2_estimator_variance");
    let (a, b) = (scratch("fig2-sd-a"), scratch("fig2-sd-b"));
    run(bin, &a, &["--quick"], None);
    run(bin, &b, &["--quick", "--easy-mixture-sd", "0.3"], None);
    let text_a = std::fs::read_to_string(a.join("fig2.csv")).unwrap();
    let text_b = std::fs::read_to_string(b.join("fig2.csv")).unwrap();
    let split = |text: &str, easy: bool| -> Vec<String> {
        text.lines()
            .skip(1)
            .filter(|l| l.starts_with("easy_mixture,") == easy)
            .map(str::to_owned)
            .collect()
    };
    // Each (target, t) has its own random stream: the other targets are untouched.
    assert_eq!(split(&text_a, false), split(&text_b, false));
    assert_ne!(split(&text_a, true), split(&text_b, true));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("fig2.json")).unwrap()).unwrap();
    let easy = &json["parameters"]["easy_mixture"];
    assert_eq!(easy["sd"].as_f64(), Some(0.3));
    assert!((easy["mean"].as_f64().unwrap() - 0.91f64.sqrt()).abs() < 1e-15);
    for bad in ["0", "1", "-0.2", "1.5", "nan", "abc"] {
        let output = Command::new(bin)
            .arg("--quick")
            .arg(format!("--easy-mixture-sd={bad}"))
            .output()
            .unwrap();
        assert!(!output.status.success(), "{bad} accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--easy-mixture-sd"), "{bad}: {stderr}");
    }
    for d in [a, b] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn fig1_and_fig3_quick_write_their_outputs() {
    for (bin, stem) in [
        (env!("CARGO_BIN_EXE_fig1_targets"), "fig1"),
        (env!("CARGO_BIN_EXE_fig3_weightings"), "fig3"),
    ] {
        let dir = scratch(stem);
        run(bin, &dir, &["--quick"], None);
        assert_outputs(&dir, stem);
        let text = std::fs::read_to_string(dir.join(format!("{stem}.csv"))).unwrap();
        assert!(
            !text.contains("NaN") && !text.contains("inf"),
            "{stem}: non-finite values"
        );
        if stem == "fig1" {
            // The variance-optimal weight beside κ_t and κ̄_t, on the 49 interior times of
            // --quick, for each target; for the Gaussian it is κ_t.
            let optimal: Vec<&str> = text
                .lines()
                .filter(|l| l.contains(",optimal_weight,"))
                .collect();
            assert_eq!(optimal.len(), 4 * 49);
            for line in optimal.iter().filter(|l| l.starts_with("unit_gaussian,")) {
                let f: Vec<&str> = line.split(',').collect();
                let kappa = format!("unit_gaussian,kappa,{},", f[2]);
                let kappa_line = text.lines().find(|l| l.starts_with(&kappa)).unwrap();
                let (w, k): (f64, f64) = (
                    f[3].parse().unwrap(),
                    kappa_line.split(',').nth(3).unwrap().parse().unwrap(),
                );
                assert!((w - k).abs() < 1e-7, "{line} vs {kappa_line}");
            }
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn an_unwritable_out_is_a_clear_error() {
    // A regular file where the folder should be: creating the folder must fail with a message
    // that names the flag.
    let blocker = scratch("blocker");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_fig3_weightings"))
        .arg("--out")
        .arg(blocker.join("sub"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--out"), "stderr: {stderr}");
    let _ = std::fs::remove_file(blocker);
}

#[test]
fn bad_flags_name_the_flag() {
    let output = Command::new(env!("CARGO_BIN_EXE_fig2_estimator_variance"))
        .args(["--seed", "minus-one"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--seed"));
}
