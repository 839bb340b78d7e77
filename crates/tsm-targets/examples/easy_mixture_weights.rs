//! The "easy mixture" of De Bortoli et al. (2024), Fig. 2, is not printed in the paper. For
//! `½N(−m, s²) + ½N(m, s²)`, `m = √(1 − s²)` (total variance 1), this prints, from the exact
//! estimator variances (`tsm_targets::exact_variance`, cosine schedule, `t = k/100`):
//! where DSI's variance drops below TSI's, from where `κ` is worse than DSI, and how far `κ̄`
//! is from the variance-optimal constant weight `w*_t` of the DSI/TSI mixture for `t ≥ 0.2` —
//! the three statements of the paper's paragraph on the easy mixture (§4.1).
//!
//! `cargo run --release -p tsm-targets --example easy_mixture_weights [s …]`
//! (default `s` = 0.8 0.5 0.4 0.35 0.3 0.25 0.2; the figures use 0.8).

use tsm_core::identity::ScoreIdentity;
use tsm_core::schedule::Cosine;
use tsm_targets::exact_variance::{expected_variances, optimal_weight};
use tsm_targets::GaussianMixture;

const REL_TOL: f64 = 1e-10;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<f64> = std::env::args()
        .skip(1)
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    let sds = if args.is_empty() {
        vec![0.8, 0.5, 0.4, 0.35, 0.3, 0.25, 0.2]
    } else {
        args
    };
    println!(
        "   s      m  DSI<TSI from  κ>DSI from  max_(t≥0.2) V(κ̄)/V(w*)−1  max_(t≥0.2) |κ̄_t − w*_t|"
    );
    for s in sds {
        let m = (1.0 - s * s).sqrt();
        let target = GaussianMixture::univariate(&[0.5, 0.5], &[-m, m], &[s, s])?;
        let [dsi_id, tsi_id, kappa_id, kappa_bar_id] = target.figure_identities();
        let (mut crossing, mut kappa_worse) = (None, None);
        let (mut excess, mut gap) = ((0.0f64, 0.0), 0.0f64);
        for k in 1..100 {
            let t = k as f64 / 100.0;
            let [dsi, tsi, kappa, kappa_bar] =
                [dsi_id, tsi_id, kappa_id, kappa_bar_id].map(|id| id.coefficients(&Cosine, t));
            let (dsi, tsi, kappa, kappa_bar) = (dsi?, tsi?, kappa?, kappa_bar?);
            let w = optimal_weight(&target, &Cosine, t, &dsi, &tsi, REL_TOL)?.value;
            let best = ScoreIdentity::Mixture {
                weight: w.clamp(0.0, 1.0),
            }
            .coefficients(&Cosine, t)?;
            let v = expected_variances(
                &target,
                &Cosine,
                t,
                &[dsi, tsi, kappa, kappa_bar, best],
                REL_TOL,
            )?;
            let value = |i: usize| v[i].value;
            if crossing.is_none() && value(0) < value(1) {
                crossing = Some(t);
            }
            if kappa_worse.is_none() && value(2) > value(0) {
                kappa_worse = Some(t);
            }
            if t >= 0.2 {
                let r = value(3) / value(4) - 1.0;
                if r > excess.0 {
                    excess = (r, t);
                }
                gap = gap.max((kappa_bar_id.dsi_weight(&Cosine, t)? - w).abs());
            }
        }
        let show = |t: Option<f64>| t.map_or("never".to_owned(), |t| format!("t = {t:.2}"));
        println!(
            "{s:5.2} {m:6.4}  {:>12}  {:>10}  {:>9.4}% (at t = {:.2})  {gap:>16.4}",
            show(crossing),
            show(kappa_worse),
            100.0 * excess.0,
            excess.1
        );
    }
    Ok(())
}
