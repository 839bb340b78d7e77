//! `fig5_training --quick` runs end to end and writes the files of docs/conventions.md with the documented
//! columns, one row per (loss, evaluation step), all values finite.

use std::path::PathBuf;
use std::process::Command;

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tsm-fig5-quick-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn quick_run_writes_csv_svg_png_json() {
    let out = scratch();
    let status = Command::new(env!("CARGO_BIN_EXE_fig5_training"))
        .args(["--quick", "--out"])
        .arg(&out)
        .env("RUST_LOG", "warn")
        .status()
        .expect("run fig5_training");
    assert!(status.success(), "fig5_training --quick failed: {status}");
    for file in ["fig5.csv", "fig5.svg", "fig5.png", "fig5.json"] {
        let meta = std::fs::metadata(out.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(meta.len() > 0, "{file} is empty");
    }
    let mut reader = csv::Reader::from_path(out.join("fig5.csv")).expect("csv");
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(String::from)
        .collect();
    assert_eq!(
        header,
        [
            "seed",
            "loss",
            "step",
            "regression_loss",
            "regression_loss_small_t",
            "regression_loss_large_t",
            "score_mse",
            "score_mse_small_t",
            "mmd2",
            "mmd2_local",
            "train_seconds"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    // --quick: 300 steps, evaluated every 15 → 4 losses × (step 0 + 20 evaluations).
    assert_eq!(rows.len(), 4 * 21);
    for loss in ["dsm", "tsm", "kappa", "kappa_bar"] {
        let steps: Vec<u64> = rows
            .iter()
            .filter(|r| &r[1] == loss)
            .map(|r| r[2].parse().expect("step"))
            .collect();
        assert_eq!(
            steps,
            (0..=20).map(|k| 15 * k).collect::<Vec<u64>>(),
            "{loss}"
        );
    }
    for r in &rows {
        for k in 3..11 {
            let v: f64 = r[k].parse().expect("number");
            assert!(v.is_finite(), "non-finite {} in {r:?}", header[k]);
        }
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("fig5.json")).expect("json"))
            .expect("parse");
    assert_eq!(json["figure"], "fig5");
    assert_eq!(json["quick"], true);
    assert!(json["wall_time_s"].as_f64().is_some());
    let _ = std::fs::remove_dir_all(&out);
}
