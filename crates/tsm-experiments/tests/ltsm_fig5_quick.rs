//! `ltsm_fig5 --quick` runs end to end: CSV (documented columns, every curve on every task),
//! SVG, PNG and JSON; the learned weight has moved from its start toward `w_t*`; the same
//! seed gives the same CSV bytes.

use std::path::{Path, PathBuf};
use std::process::Command;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tsm-ltsm-fig5-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn run(out: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_ltsm_fig5"))
        .args(["--quick", "--out"])
        .arg(out)
        .env("RUST_LOG", "warn")
        .status()
        .expect("run ltsm_fig5");
    assert!(status.success(), "ltsm_fig5 --quick failed: {status}");
}

#[test]
fn quick_run_writes_the_learned_weight_against_the_optimum() {
    let (a, b) = (scratch("a"), scratch("b"));
    run(&a);
    for file in [
        "ltsm_fig5.csv",
        "ltsm_fig5.svg",
        "ltsm_fig5.png",
        "ltsm_fig5.json",
    ] {
        let meta = std::fs::metadata(a.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(meta.len() > 0, "{file} is empty");
    }
    let mut reader = csv::Reader::from_path(a.join("ltsm_fig5.csv")).expect("csv");
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(String::from)
        .collect();
    assert_eq!(header, ["task", "curve", "t", "w", "std_err"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
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
    assert_eq!(
        std::fs::read(a.join("ltsm_fig5.csv")).expect("a"),
        std::fs::read(b.join("ltsm_fig5.csv")).expect("b")
    );
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}
