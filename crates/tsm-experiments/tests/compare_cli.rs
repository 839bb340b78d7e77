//! `compare_losses --quick` (cargo xtask reproduce-compare --quick): the table's files and
//! the checks its rows can fail.

mod common;

use std::process::Command;

fn csv_rows(path: &std::path::Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut r = csv::Reader::from_path(path).expect("csv");
    let headers = r.headers().expect("headers").clone();
    r.records()
        .map(|rec| {
            let rec = rec.expect("record");
            headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

#[test]
fn quick_comparison_writes_its_table_and_the_exact_score_row_is_exact() {
    let dir = common::scratch("tsm-compare", "quick");
    let out = Command::new(env!("CARGO_BIN_EXE_compare_losses"))
        .args(["--quick", "--out"])
        .arg(&dir)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "compare.csv",
        "compare.md",
        "compare.svg",
        "compare.png",
        "compare.json",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let rows = csv_rows(&dir.join("compare.csv"));
    // Two targets × (the exact score + five losses).
    assert_eq!(rows.len(), 12);
    let num = |r: &std::collections::HashMap<String, String>, k: &str| -> f64 {
        r[k].parse().unwrap_or_else(|_| panic!("{k} = {}", r[k]))
    };
    for r in &rows {
        for k in [
            "mmd2",
            "score_mse",
            "score_rel_err",
            "nll",
            "nll_gap",
            "train_seconds",
        ] {
            assert!(num(r, k).is_finite(), "{} {}: {k}", r["target"], r["loss"]);
        }
    }
    let losses: Vec<&str> = rows.iter().map(|r| r["loss"].as_str()).collect();
    assert_eq!(
        &losses[..6],
        ["exact_score", "dsm", "tsm", "kappa_bar", "ism", "ssm"]
    );
    for r in rows.iter().filter(|r| r["loss"] == "exact_score") {
        // With the exact score the PF-ODE likelihood is the true one: the solver's relative
        // tolerance (1e-4) on a state of size ≈ |log p| + ‖x‖ ≲ 50 allows ≈ 5e-3 nats, the
        // truncation at t_min = 1e-3 (σ² ≈ 2.5e-6) changes log p by ≈ d σ² / σ_mode² ≲ 1e-4.
        assert!(
            num(r, "nll_gap").abs() < 1e-2,
            "{}: {}",
            r["target"],
            r["nll_gap"]
        );
        assert_eq!(num(r, "score_mse"), 0.0);
        // Exact samples against exact draws: MMD² at the null (|MMD²| below 0.01 at n = 200,
        // whose null sd is ≈ 2e-3 here).
        assert!(
            num(r, "mmd2").abs() < 1e-2,
            "{}: {}",
            r["target"],
            r["mmd2"]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
