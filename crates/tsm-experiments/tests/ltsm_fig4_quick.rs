//! `ltsm_fig4_weight --quick` runs end to end: CSV (documented columns, every curve on every
//! task), SVG, PNG and JSON; the Monte Carlo `ŵ_t` agrees with the closed form at `F̂` within
//! 5 combined standard errors at every time on every task, and `w_t*` rises from near 0 to
//! near 1; the same seed gives the same CSV bytes.
//!
//! The library-level acceptance test of the same agreement, with 40,000 simulations per task,
//! is `monte_carlo_optimal_weight_matches_the_closed_form_on_every_task` in
//! `crates/tsm-targets/tests/sbi_ltsm.rs`; this one checks the figure's own numbers.

mod common;

use std::path::Path;

use common::{assert_outputs, assert_same_bytes, read_records, run_quick, scratch};

fn run(out: &Path) {
    run_quick(env!("CARGO_BIN_EXE_ltsm_fig4_weight"), out);
}

#[test]
fn quick_run_writes_the_optimal_weight_and_monte_carlo_matches_the_closed_form() {
    let (a, b) = (scratch("tsm-ltsm-fig4", "a"), scratch("tsm-ltsm-fig4", "b"));
    run(&a);
    assert_outputs(&a, "ltsm_fig4");
    let (header, rows) = read_records(&a.join("ltsm_fig4.csv"));
    assert_eq!(header, ["task", "curve", "t", "w", "std_err"]);
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
    assert_same_bytes(&a, &b, "ltsm_fig4.csv");
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}
