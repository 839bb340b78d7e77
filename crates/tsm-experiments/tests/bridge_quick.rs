//! `fig_bridge --quick` (bridges and non-additive noise) runs end to end, writes the files of
//! docs/conventions.md with the documented columns, complete and finite, and the same seed
//! gives the same CSV bytes whatever the thread count.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_nonempty, assert_same_bytes, read_records};

fn scratch(name: &str) -> PathBuf {
    common::scratch("tsm-bridge", name)
}

fn run(out: &Path, threads: usize) {
    let output = Command::new(env!("CARGO_BIN_EXE_fig_bridge"))
        .args(["--quick", "--seed", "4", "--out"])
        .arg(out)
        .env("RAYON_NUM_THREADS", threads.to_string())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run fig_bridge");
    assert!(
        output.status.success(),
        "fig_bridge --quick failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn quick_run_is_complete_finite_and_reproducible() {
    let (a, b) = (scratch("a"), scratch("b"));
    run(&a, 2);
    run(&b, 1);
    assert_nonempty(
        &a,
        &[
            "bridge.csv",
            "bridge_training.csv",
            "bridge.svg",
            "bridge.png",
            "bridge.json",
        ],
    );
    // Same seed, different thread count (2 in `a`, 1 in `b`): the same bytes.
    for csv in ["bridge.csv", "bridge_training.csv"] {
        assert_same_bytes(&a, &b, csv);
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("bridge.json")).expect("json")).expect("json");
    for key in ["seed", "version", "wall_time_s", "parameters"] {
        assert!(json.get(key).is_some(), "bridge.json lacks {key}");
    }

    let (header, variance) = read_records(&a.join("bridge.csv"));
    assert_eq!(
        header,
        ["s2", "alpha", "estimator", "variance", "variance_se"]
    );
    // --quick: 3 noise levels × α ∈ {0.1, …, 0.9} × 4 estimators.
    assert_eq!(variance.len(), 3 * 9 * 4);
    for r in &variance {
        let (v, se): (f64, f64) = (r[3].parse().expect("v"), r[4].parse().expect("se"));
        assert!(
            v.is_finite() && v > 0.0 && se.is_finite() && se >= 0.0,
            "{r:?}"
        );
    }
    // Eq. 12's variance scales as α⁻², eq. 13's as (1 − α)⁻²: at α = 0.1 the first is far
    // above the second (by ~10⁴ here, where the standard errors are a few %).
    let at = |s2: &str, alpha: &str, est: &str| -> f64 {
        variance
            .iter()
            .find(|r| &r[0] == s2 && &r[1] == alpha && &r[2] == est)
            .expect("cell")[3]
            .parse()
            .expect("v")
    };
    assert!(at("0.01", "0.1", "(12) x0") > 100.0 * at("0.01", "0.1", "(13) x1"));
    assert!(at("0.01", "0.9", "(13) x1") > 10.0 * at("0.01", "0.9", "(12) x0"));

    let (header, training) = read_records(&a.join("bridge_training.csv"));
    assert_eq!(
        header,
        [
            "model",
            "loss",
            "step",
            "score_mse",
            "score_base",
            "relative_error"
        ]
    );
    // 6 runs × (step 0 + 600/100 evaluations).
    assert_eq!(training.len(), 6 * 7);
    for r in &training {
        let e: f64 = r[5].parse().expect("relative error");
        assert!(e.is_finite() && e >= 0.0, "{r:?}");
    }
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}
