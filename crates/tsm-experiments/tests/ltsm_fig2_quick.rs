//! `ltsm_fig2 --quick` runs end to end: CSV with the documented columns (four losses × two
//! budgets × five observations and their mean), the MMD² and C2ST pictures, the JSON; the
//! mean row is the mean of the five; the same seed gives the same CSV bytes.

use std::path::{Path, PathBuf};
use std::process::Command;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tsm-ltsm-fig2-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn run(out: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_ltsm_fig2"))
        .args(["--quick", "--out"])
        .arg(out)
        .env("RUST_LOG", "warn")
        .status()
        .expect("run ltsm_fig2");
    assert!(status.success(), "ltsm_fig2 --quick failed: {status}");
}

#[test]
fn quick_run_writes_mmd_and_c2st_against_the_budget() {
    let (a, b) = (scratch("a"), scratch("b"));
    run(&a);
    for file in [
        "ltsm_fig2.csv",
        "ltsm_fig2.svg",
        "ltsm_fig2.png",
        "ltsm_fig2_c2st.svg",
        "ltsm_fig2_c2st.png",
        "ltsm_fig2.json",
    ] {
        let meta = std::fs::metadata(a.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(meta.len() > 0, "{file} is empty");
    }
    let mut reader = csv::Reader::from_path(a.join("ltsm_fig2.csv")).expect("csv");
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(String::from)
        .collect();
    assert_eq!(
        header,
        ["task", "budget", "loss", "observation", "mmd2", "c2st"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
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
    assert_eq!(
        std::fs::read(a.join("ltsm_fig2.csv")).expect("a"),
        std::fs::read(b.join("ltsm_fig2.csv")).expect("b")
    );
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}
