//! `fig5_training --quick` runs end to end and writes the files of docs/conventions.md with the documented
//! columns, one row per (loss, evaluation step), all values finite.

mod common;

use common::{assert_outputs, read_records, run_quick, scratch};

#[test]
fn quick_run_writes_csv_svg_png_json() {
    let out = scratch("tsm-fig5", "quick");
    run_quick(env!("CARGO_BIN_EXE_fig5_training"), &out);
    assert_outputs(&out, "fig5");
    let (header, rows) = read_records(&out.join("fig5.csv"));
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
