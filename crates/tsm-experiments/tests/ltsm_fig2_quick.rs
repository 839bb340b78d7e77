//! `ltsm_fig2 --quick` runs end to end: CSV with the documented columns (four losses × two
//! budgets × five observations and their mean), the MMD² and C2ST pictures, the JSON; the
//! mean row is the mean of the five; the same seed gives the same CSV bytes.

mod common;

use std::path::Path;

use common::{
    assert_nonempty, assert_outputs, assert_same_bytes, read_records, run_quick, scratch,
};

fn run(out: &Path) {
    run_quick(env!("CARGO_BIN_EXE_ltsm_fig2"), out);
}

#[test]
fn quick_run_writes_mmd_and_c2st_against_the_budget() {
    let (a, b) = (scratch("tsm-ltsm-fig2", "a"), scratch("tsm-ltsm-fig2", "b"));
    run(&a);
    assert_outputs(&a, "ltsm_fig2");
    assert_nonempty(&a, &["ltsm_fig2_c2st.svg", "ltsm_fig2_c2st.png"]);
    let (header, rows) = read_records(&a.join("ltsm_fig2.csv"));
    assert_eq!(
        header,
        ["task", "budget", "loss", "observation", "mmd2", "c2st"]
    );
    assert_eq!(rows.len(), 2 * 4 * 6);
    for budget in ["300", "1000"] {
        for loss in ["dsm", "ltsm", "mix", "mix_learned"] {
            let group: Vec<&csv::StringRecord> = rows
                .iter()
                .filter(|r| &r[0] == "linear_gaussian" && &r[1] == budget && &r[2] == loss)
                .collect();
            let obs: Vec<&str> = group.iter().map(|r| &r[3]).collect();
            assert_eq!(obs, ["1", "2", "3", "4", "5", "mean"], "{budget} {loss}");
            for column in [4, 5] {
                let values: Vec<f64> = group
                    .iter()
                    .map(|r| r[column].parse().expect("number"))
                    .collect();
                assert!(values.iter().all(|v| v.is_finite()), "{values:?}");
                let mean = values[..5].iter().sum::<f64>() / 5.0;
                assert!((values[5] - mean).abs() < 1e-12, "{values:?}");
            }
            let acc: f64 = group[5][5].parse().expect("c2st");
            assert!((0.0..=1.0).contains(&acc), "{acc}");
        }
    }
    run(&b);
    assert_same_bytes(&a, &b, "ltsm_fig2.csv");
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}
