//! `ltsm_fig4_weight --quick` runs end to end: CSV (documented columns, every curve on every
//! task), SVG, PNG and JSON; the Monte Carlo `ŵ_t` agrees with the closed form at `F̂` within
//! 5 combined standard errors at every time on every task, and `w_t*` rises from near 0 to
//! near 1; the same seed gives the same CSV bytes.
//!
//! The library-level acceptance test of the same agreement, with 40,000 simulations per task,
//! is `monte_carlo_optimal_weight_matches_the_closed_form_on_every_task` in
//! `crates/tsm-targets/tests/sbi_ltsm.rs`; this one checks the figure's own numbers.

use std::path::{Path, PathBuf};
use std::process::Command;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tsm-ltsm-fig4-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn run(out: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_ltsm_fig4_weight"))
        .args(["--quick", "--out"])
        .arg(out)
        .env("RUST_LOG", "warn")
        .status()
        .expect("run ltsm_fig4_weight");
    assert!(
        status.success(),
        "ltsm_fig4_weight --quick failed: {status}"
    );
}

#[test]
fn quick_run_writes_the_optimal_weight_and_monte_carlo_matches_the_closed_form() {
    let (a, b) = (scratch("a"), scratch("b"));
    run(&a);
    for file in [
        "ltsm_fig4.csv",
        "ltsm_fig4.svg",
        "ltsm_fig4.png",
        "ltsm_fig4.json",
    ] {
        let meta = std::fs::metadata(a.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(meta.len() > 0, "{file} is empty");
    }
    let mut reader = csv::Reader::from_path(a.join("ltsm_fig4.csv")).expect("csv");
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(String::from)
        .collect();
    assert_eq!(header, ["task", "curve", "t", "w", "std_err"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    // (t, w, std_err) of one curve, in time order.
    let curve = |task: &str, curve: &str| -> Vec<(f64, f64, f64)> {
        rows.iter()
            .filter(|r| &r[0] == task && &r[1] == curve)
            .map(|r| {
                let se = if r[4].is_empty() {
                    0.0
                } else {
                    r[4].parse().expect("std_err")
                };
                (r[2].parse().expect("t"), r[3].parse().expect("w"), se)
            })
            .collect()
    };
    for task in ["linear_gaussian", "galton_board", "sir"] {
        let (mc, closed, reference) = (
            curve(task, "monte_carlo"),
            curve(task, "closed_form"),
            curve(task, "closed_form_reference"),
        );
        assert_eq!(mc.len(), 9, "{task}");
        assert_eq!(closed.len(), 9, "{task}");
        assert_eq!(reference.len(), 9, "{task}");
        for ((m, c), r) in mc.iter().zip(&closed).zip(&reference) {
            assert_eq!(m.0, c.0);
            // Monte Carlo against the closed form at the independent F̂: 5 combined standard
            // errors (fixed seed).
            let se = (m.2 * m.2 + c.2 * c.2).sqrt();
            assert!(se > 0.0 && se < 0.05, "{task} t={}: se {se}", m.0);
            assert!(
                (m.1 - c.1).abs() < 5.0 * se,
                "{task} t={}: {} vs {} (5 × {se})",
                m.0,
                m.1,
                c.1
            );
            // F̂ is within a few percent of the reference F, so the two closed forms nearly agree.
            assert!(
                (c.1 - r.1).abs() < 0.02,
                "{task} t={}: {} vs {}",
                m.0,
                c.1,
                r.1
            );
        }
        // w_t* rises with t from near LTSM (0) to near DSM (1).
        assert!(closed.windows(2).all(|p| p[1].1 > p[0].1), "{task}");
        assert!(
            closed[0].1 < 0.5 && closed[8].1 > 0.95,
            "{task}: {closed:?}"
        );
    }
    // Same seed, same bytes.
    run(&b);
    assert_eq!(
        std::fs::read(a.join("ltsm_fig4.csv")).expect("a"),
        std::fs::read(b.join("ltsm_fig4.csv")).expect("b")
    );
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}
