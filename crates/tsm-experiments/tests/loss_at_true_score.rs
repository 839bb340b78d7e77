//! Fig. 4's estimator: at the exact score the expected loss is the irreducible variance term
//! `(1/|T|) ∫ λ_t E_{x_t}[Var(L | x_t)] dt`, which for `p_0 = N(0, 1)` (cosine schedule) has
//! `Var(L_DSI | x_t) = α²/(σ²(α² + σ²))`, `Var(L_TSI | x_t) = σ²/(α²(α² + σ²))` and
//! `Var(L_κ | x_t) = 0` (App. C, independent of `x_t`); the right-hand side is computed by
//! quadrature. The Monte Carlo mean must match within 5 standard errors (fixed seed). The
//! (loss, weighting) pairs tested are those whose integrand λ_t Var is bounded on the range, so
//! that the sample standard error is itself reliable; the others are heavy-tailed by design
//! (that is the point of Fig. 4).

mod common;

use tsm_core::quadrature::integrate;
use tsm_core::schedule::{AnySchedule, Cosine, Schedule};
use tsm_core::weighting::{NormalisedWeighting, TimeRange, Weighting};
use tsm_experiments::loss_distribution::{compute, Sizes, Summary};
use tsm_targets::named;

use common::{read_records, run_quick, scratch};

#[test]
fn mean_loss_at_the_true_score_is_the_irreducible_variance() {
    let range = TimeRange::trimmed();
    let schedule = AnySchedule::Cosine(Cosine);
    let sizes = Sizes {
        estimates: 2000,
        draws: 100,
    };
    let losses = compute(
        "unit_gaussian",
        &named::unit_gaussian(),
        schedule,
        range,
        sizes,
        17,
        0,
    )
    .unwrap();
    let var_dsi = |t: f64| {
        let (a2, s2) = (Cosine.alpha(t).powi(2), Cosine.sigma_sq(t));
        a2 / (s2 * (a2 + s2))
    };
    let var_tsi = |t: f64| {
        let (a2, s2) = (Cosine.alpha(t).powi(2), Cosine.sigma_sq(t));
        s2 / (a2 * (a2 + s2))
    };
    // (loss index, weighting index, per-draw variance)
    type PerDrawVariance<'a> = &'a dyn Fn(f64) -> f64;
    let cases: [(usize, Weighting, PerDrawVariance<'_>); 2] = [
        (0, Weighting::DsmOptimal, &var_dsi),
        (1, Weighting::TsmOptimal, &var_tsi),
    ];
    for (loss, weighting, var) in cases {
        let w = NormalisedWeighting::new(weighting, schedule, 1.0, range).unwrap();
        let expected =
            integrate(|t| w.at(t) * var(t), range.t_min(), range.t_max(), 1e-12) / range.len();
        let wi = Weighting::ALL.iter().position(|x| *x == weighting).unwrap();
        let s = Summary::of("unit_gaussian", "x", "y", &losses.estimates[loss][wi]);
        assert!(
            (s.mean - expected).abs() < 5.0 * s.std_err,
            "loss {loss} {weighting:?}: mean {} vs expected {expected} (se {})",
            s.mean,
            s.std_err
        );
    }
    // L_κ has zero variance for a Gaussian: its loss at the true score is rounding noise.
    for wi in 0..4 {
        let s = Summary::of("unit_gaussian", "kappa", "w", &losses.estimates[2][wi]);
        assert!(s.max < 1e-20, "κ loss {}", s.max);
    }
}

#[test]
fn fig4_quick_writes_complete_finite_summaries() {
    let dir = scratch("tsm-test", "fig4");
    run_quick(env!("CARGO_BIN_EXE_fig4_loss_distribution"), &dir);
    for f in [
        "fig4.csv",
        "fig4_histograms.csv",
        "fig4.svg",
        "fig4.png",
        "fig4.json",
    ] {
        assert!(dir.join(f).exists(), "missing {f}");
    }
    let (header, rows) = read_records(&dir.join("fig4.csv"));
    assert_eq!(&header[..5], ["target", "loss", "weighting", "n", "mean"]);
    assert_eq!(rows.len(), 4 * 4 * 4);
    for r in &rows {
        assert_eq!(&r[3], "500", "{r:?}");
        for field in r.iter().skip(4) {
            let v: f64 = field.parse().unwrap();
            assert!(v.is_finite(), "{r:?}");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
