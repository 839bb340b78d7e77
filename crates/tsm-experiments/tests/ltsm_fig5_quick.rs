//! `ltsm_fig5 --quick` runs end to end: CSV (documented columns, every curve on every task),
//! SVG, PNG and JSON; the learned weight has moved from its start toward `w_t*`; the same
//! seed gives the same CSV bytes.

mod common;

use std::path::Path;

use common::{assert_outputs, assert_same_bytes, read_records, run_quick, scratch};

fn run(out: &Path) {
    run_quick(env!("CARGO_BIN_EXE_ltsm_fig5"), out);
}

#[test]
fn quick_run_writes_the_learned_weight_against_the_optimum() {
    let (a, b) = (scratch("tsm-ltsm-fig5", "a"), scratch("tsm-ltsm-fig5", "b"));
    run(&a);
    assert_outputs(&a, "ltsm_fig5");
    let (header, rows) = read_records(&a.join("ltsm_fig5.csv"));
    assert_eq!(header, ["task", "curve", "t", "w", "std_err"]);
    let value = |task: &str, curve: &str, t: f64| -> f64 {
        rows.iter()
            .filter(|r| &r[0] == task && &r[1] == curve)
            .min_by(|p, q| {
                let d = |r: &csv::StringRecord| (r[2].parse::<f64>().expect("t") - t).abs();
                d(p).total_cmp(&d(q))
            })
            .map(|r| r[3].parse().expect("w"))
            .unwrap_or_else(|| panic!("no {curve} for {task}"))
    };
    for task in ["linear_gaussian", "galton_board", "sir"] {
        for curve in [
            "learned",
            "learned_raw",
            "start",
            "closed_form",
            "monte_carlo",
        ] {
            assert!(
                rows.iter().any(|r| &r[0] == task && &r[1] == curve),
                "{task} {curve}"
            );
        }
        // At t = 0.5 the start (σ² = ½) is far below w_t* (0.83 to 0.97): the learned weight
        // must have gone at least half of the way.
        let (w, ws, w0) = (
            value(task, "learned", 0.5),
            value(task, "closed_form", 0.5),
            value(task, "start", 0.5),
        );
        assert!(
            (w - ws).abs() < 0.5 * (w0 - ws).abs(),
            "{task}: {w} {ws} {w0}"
        );
    }
    for r in &rows {
        let w: f64 = r[3].parse().expect("w");
        assert!(w.is_finite(), "{r:?}");
        assert_eq!(r[4].is_empty(), &r[1] != "monte_carlo", "{r:?}");
    }
    // Same seed, same bytes.
    run(&b);
    assert_same_bytes(&a, &b, "ltsm_fig5.csv");
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}
