//! Cross-crate checks of the score identities against the exact Gaussian-mixture marginals.
//!
//! Tolerances: Monte Carlo comparisons use 5 standard errors of the estimate (fixed seeds; a
//! 5σ miss has probability ~6e-7 per comparison), plus a rounding floor of 1e-9 relative for
//! estimators whose variance is exactly zero (L_κ on a Gaussian). Finite-difference and
//! closed-form comparisons use tolerances from the truncation and rounding error of the
//! formula, stated where used.

use rand::SeedableRng;
use tsm_core::estimator::MonteCarloScore;
use tsm_core::identity::{Coefficients, ScoreIdentity};
use tsm_core::rng::FastRng;
use tsm_core::schedule::{AnySchedule, Cosine, Schedule};
use tsm_core::target::{Dim, LogDensity, PosteriorSample, Score};
use tsm_targets::{named, GaussianMixture};

mod tolerances {
    /// Number of standard errors allowed for a Monte Carlo estimate.
    pub const SIGMAS: f64 = 5.0;
    /// Relative rounding floor for zero-variance estimators.
    pub const ROUNDING: f64 = 1e-9;
    /// Central-difference step, and the tolerance it implies (O(h²) truncation, O(ε/h) rounding).
    pub const FD_STEP: f64 = 1e-5;
    pub const FD_TOL: f64 = 1e-6;
}

fn all_targets() -> Vec<(&'static str, GaussianMixture)> {
    named::NAMES
        .iter()
        .map(|&n| (n, named::by_name(n).unwrap()))
        .collect()
}

fn identities(target: &GaussianMixture) -> [ScoreIdentity; 4] {
    target.figure_identities()
}

/// Points around the target's support, scaled to `p_t`'s spread.
fn probe_points(dim: usize) -> Vec<Vec<f64>> {
    [-1.3, 0.2, 0.9]
        .iter()
        .map(|&v| (0..dim).map(|j| v * (1.0 + 0.7 * j as f64)).collect())
        .collect()
}

fn finite_difference_score(f: &impl LogDensity, x: &[f64]) -> Vec<f64> {
    let h = tolerances::FD_STEP;
    (0..x.len())
        .map(|j| {
            let (mut up, mut down) = (x.to_vec(), x.to_vec());
            up[j] += h;
            down[j] -= h;
            (f.log_density(&up) - f.log_density(&down)) / (2.0 * h)
        })
        .collect()
}

#[test]
fn mixture_and_marginal_scores_match_finite_differences() {
    for (name, target) in all_targets() {
        for t in [0.0, 0.05, 0.5, 0.95, 1.0] {
            let p_t = target.noised(&Cosine, t).unwrap();
            for x in probe_points(target.dim()) {
                let mut exact = vec![0.0; x.len()];
                p_t.score(&x, &mut exact);
                let fd = finite_difference_score(&p_t, &x);
                for (e, f) in exact.iter().zip(&fd) {
                    // Scale by the score: the hard targets have scores ~100 at t = 0.
                    let tol = tolerances::FD_TOL * (1.0 + e.abs()) * 10.0;
                    assert!((e - f).abs() < tol, "{name} t={t} x={x:?}: {e} vs fd {f}");
                }
            }
        }
    }
}

#[test]
fn log_density_is_normalised_in_one_dimension() {
    for (name, target) in all_targets().into_iter().filter(|(_, t)| t.dim() == 1) {
        let mass =
            tsm_core::quadrature::integrate(|x| target.log_density(&[x]).exp(), -12.0, 12.0, 1e-12);
        assert!((mass - 1.0).abs() < 1e-9, "{name}: {mass}");
    }
}

#[test]
fn tweedie_posterior_mean_matches_the_marginal_score() {
    // E[x_0 | x_t] = (x_t + σ_t² ∇log p_t(x_t)) / α_t, an exact identity: the tolerance is rounding.
    for (name, target) in all_targets() {
        for t in [0.01, 0.2, 0.5, 0.8, 0.99] {
            let (a, s2) = (Cosine.alpha(t), Cosine.sigma_sq(t));
            let p_t = target.noised(&Cosine, t).unwrap();
            for x_t in probe_points(target.dim()) {
                let post = target.posterior(&Cosine, t, &x_t).unwrap();
                let mut score = vec![0.0; x_t.len()];
                p_t.score(&x_t, &mut score);
                for (j, m) in post.mean().iter().enumerate() {
                    let tweedie = (x_t[j] + s2 * score[j]) / a;
                    assert!(
                        (m - tweedie).abs() < 1e-9 * (1.0 + m.abs()),
                        "{name} t={t}: {m} vs {tweedie}"
                    );
                }
                // And the sampler's draws have that mean, within 5 standard errors.
                let mut rng = FastRng::seed_from_u64(11);
                let n = 20_000;
                let mut draw = vec![0.0; x_t.len()];
                let (mut sum, mut sum_sq) = (vec![0.0; x_t.len()], vec![0.0; x_t.len()]);
                for _ in 0..n {
                    post.sample_into(&mut rng, &mut draw);
                    for j in 0..draw.len() {
                        sum[j] += draw[j];
                        sum_sq[j] += draw[j] * draw[j];
                    }
                }
                for (j, m) in post.mean().iter().enumerate() {
                    let mean = sum[j] / n as f64;
                    let var = (sum_sq[j] / n as f64 - mean * mean).max(0.0);
                    let se = (var / n as f64).sqrt();
                    assert!(
                        (mean - m).abs() <= tolerances::SIGMAS * se + 1e-12,
                        "{name} t={t}: draws {mean} vs {m} (se {se})"
                    );
                }
            }
        }
    }
}

#[test]
fn every_estimator_is_unbiased_for_the_exact_marginal_score() {
    let n = 20_000;
    for (name, target) in all_targets() {
        let ids = identities(&target);
        for (ti, t) in [0.02, 0.1, 0.3, 0.6, 0.9].into_iter().enumerate() {
            let coeffs: Vec<Coefficients> = ids
                .iter()
                .map(|id| id.coefficients(&Cosine, t).unwrap())
                .collect();
            let mut mc = MonteCarloScore::new(target.dim(), &coeffs);
            let p_t = target.noised(&Cosine, t).unwrap();
            for (xi, x_t) in probe_points(target.dim()).into_iter().enumerate() {
                let mut rng = tsm_core::rng::stream(7, (ti * 10 + xi) as u64);
                mc.run(&target, &Cosine, t, &x_t, n, &mut rng).unwrap();
                let mut exact = vec![0.0; x_t.len()];
                p_t.score(&x_t, &mut exact);
                for (k, id) in ids.iter().enumerate() {
                    for (j, e) in exact.iter().enumerate() {
                        let (m, se) = (mc.mean(k, j).unwrap(), mc.std_err(k, j).unwrap());
                        let tol = tolerances::SIGMAS * se + tolerances::ROUNDING * (1.0 + e.abs());
                        assert!(
                            (m - e).abs() <= tol,
                            "{name} {} t={t} x_t={x_t:?} coord {j}: estimate {m} vs exact {e} (se {se})",
                            id.name()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn gaussian_per_draw_variances_match_appendix_c() {
    // p_0 = N(0, s²), cosine schedule. Per-draw variances given x_t (App. C, derived again):
    //   Var(L_DSI | y) = α² s² / (σ² (α² s² + σ²))
    //   Var(L_TSI | y) = σ² / (α² s² (α² s² + σ²))
    // (the paper prints the second without its 1/α²; Var(X/(α s²)) carries it). The sample
    // variance of N normal draws has relative standard error √(2/(N−1)); we allow 5 of them.
    let n = 200_000;
    let rel_tol = tolerances::SIGMAS * (2.0 / (n as f64 - 1.0)).sqrt();
    for s in [0.5, 1.0, 2.0] {
        let target = GaussianMixture::gaussian(1, s).unwrap();
        let ids = [
            ScoreIdentity::Dsi,
            ScoreIdentity::Tsi,
            ScoreIdentity::kappa(s * s),
        ];
        for (ti, t) in [0.05, 0.3, 0.7, 0.95].into_iter().enumerate() {
            let (a, s2) = (Cosine.alpha(t), Cosine.sigma_sq(t));
            let coeffs: Vec<Coefficients> = ids
                .iter()
                .map(|id| id.coefficients(&Cosine, t).unwrap())
                .collect();
            let mut mc = MonteCarloScore::new(1, &coeffs);
            let x_t = [0.4];
            mc.run(
                &target,
                &Cosine,
                t,
                &x_t,
                n,
                &mut tsm_core::rng::stream(3, ti as u64),
            )
            .unwrap();
            let var = |k| mc.draw_variance(k, 0).unwrap();
            let denom = a * a * s * s + s2;
            let dsi = a * a * s * s / (s2 * denom);
            let tsi = s2 / (a * a * s * s * denom);
            assert!((var(0) / dsi - 1.0).abs() < rel_tol, "DSI s={s} t={t}");
            assert!((var(1) / tsi - 1.0).abs() < rel_tol, "TSI s={s} t={t}");
            // κ_t cancels the randomness exactly: its per-draw variance is rounding noise.
            assert!(var(2) < 1e-24 * dsi.max(tsi), "κ s={s} t={t}: {}", var(2));
        }
    }
}

#[test]
fn the_variance_minimising_weight_is_kappa() {
    // For a Gaussian, L_DSI and L_TSI are affine in the same x_0, so the weight minimising the
    // sample variance of w L_DSI + (1 − w) L_TSI, w* = (V_T − C)/(V_D + V_T − 2C), is exact up
    // to rounding, whatever the sample: compare with κ_t = σ²/(σ² + α² s²).
    let s: f64 = 1.3;
    let target = GaussianMixture::gaussian(1, s).unwrap();
    for t in [0.1, 0.4, 0.8] {
        let post = target.posterior(&Cosine, t, &[0.7]).unwrap();
        let d = ScoreIdentity::Dsi.coefficients(&Cosine, t).unwrap();
        let ts = ScoreIdentity::Tsi.coefficients(&Cosine, t).unwrap();
        let mut rng = FastRng::seed_from_u64(5);
        let (mut vals_d, mut vals_t) = (Vec::new(), Vec::new());
        let mut x0 = [0.0];
        let mut g = [0.0];
        for _ in 0..1000 {
            post.sample_into(&mut rng, &mut x0);
            target.score(&x0, &mut g);
            vals_d.push(d.apply(x0[0], 0.7, g[0]));
            vals_t.push(ts.apply(x0[0], 0.7, g[0]));
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (md, mt) = (mean(&vals_d), mean(&vals_t));
        let cov = |a: &[f64], ma: f64, b: &[f64], mb: f64| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - ma) * (y - mb))
                .sum::<f64>()
                / (a.len() - 1) as f64
        };
        let (vd, vt, c) = (
            cov(&vals_d, md, &vals_d, md),
            cov(&vals_t, mt, &vals_t, mt),
            cov(&vals_d, md, &vals_t, mt),
        );
        let w_star = (vt - c) / (vd + vt - 2.0 * c);
        let kappa = ScoreIdentity::kappa(s * s).dsi_weight(&Cosine, t).unwrap();
        assert!(
            (w_star - kappa).abs() < 1e-6,
            "t={t}: w* = {w_star}, κ = {kappa}"
        );
    }
}

#[test]
fn estimators_are_finite_at_the_ends_where_their_limits_are() {
    // Cosine: σ_0 = 0 and α_1 = 0. L_κ, L_κ̄ (and the exact posterior) are finite at both
    // ends; L_DSI is undefined at t = 0 and L_TSI at t = 1, which the identities report as
    // errors. Just inside the ends every estimator is finite.
    for (name, target) in all_targets() {
        let x_t = vec![0.3; target.dim()];
        for t in [0.0, 1e-9, 1.0 - 1e-9, 1.0] {
            for id in identities(&target) {
                match id.coefficients(&Cosine, t) {
                    Ok(c) => {
                        let mut mc = MonteCarloScore::new(target.dim(), &[c]);
                        mc.run(
                            &target,
                            &Cosine,
                            t,
                            &x_t,
                            100,
                            &mut FastRng::seed_from_u64(1),
                        )
                        .unwrap();
                        assert!(
                            mc.mean_vec(0).unwrap().iter().all(|v| v.is_finite()),
                            "{name} {} t={t}",
                            id.name()
                        );
                        assert!(
                            mc.estimator_variance(0).unwrap().is_finite(),
                            "{name} {} t={t}",
                            id.name()
                        );
                    }
                    Err(_) => {
                        let undefined_end = (id == ScoreIdentity::Dsi && t == 0.0)
                            || (id == ScoreIdentity::Tsi && t == 1.0);
                        assert!(
                            undefined_end,
                            "{name} {} unexpectedly undefined at t={t}",
                            id.name()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn other_schedules_give_unbiased_estimators_too() {
    // The identities hold for any α_t, σ_t: spot-check the VE and linear VP schedules.
    let target = named::easy_mixture();
    for name in ["linear_vp", "ve"] {
        let schedule: AnySchedule = name.parse().unwrap();
        let t = 0.4;
        let ids = identities(&target);
        let coeffs: Vec<Coefficients> = ids
            .iter()
            .map(|id| id.coefficients(&schedule, t).unwrap())
            .collect();
        let mut mc = MonteCarloScore::new(1, &coeffs);
        let x_t = [0.5 * schedule.alpha(t)];
        mc.run(
            &target,
            &schedule,
            t,
            &x_t,
            50_000,
            &mut FastRng::seed_from_u64(9),
        )
        .unwrap();
        let mut exact = [0.0];
        target.noised(&schedule, t).unwrap().score(&x_t, &mut exact);
        for k in 0..ids.len() {
            let tol = tolerances::SIGMAS * mc.std_err(k, 0).unwrap()
                + tolerances::ROUNDING * (1.0 + exact[0].abs());
            assert!(
                (mc.mean(k, 0).unwrap() - exact[0]).abs() <= tol,
                "{name} {}",
                ids[k].name()
            );
        }
    }
}

#[test]
fn coefficients_of_another_time_are_a_typed_error() {
    // Before, `MonteCarloScore::run(&posterior, &target, &x_t, …)` took a posterior built at
    // any time: coefficients of t = 0.3 with draws at t = 0.7 returned a wrong number. Now the
    // estimator builds the posterior at the run's (schedule, t, x_t) and checks the
    // coefficients against it.
    let target = named::hard_mixture_diff_var();
    let coeffs: Vec<Coefficients> = identities(&target)
        .iter()
        .map(|id| id.coefficients(&Cosine, 0.3).unwrap())
        .collect();
    let mut mc = MonteCarloScore::new(1, &coeffs);
    let mut rng = FastRng::seed_from_u64(4);
    let err = mc.run(&target, &Cosine, 0.7, &[0.2], 100, &mut rng);
    assert!(
        matches!(
            err,
            Err(tsm_core::Error::OutOfRange {
                name: "coefficients.alpha",
                ..
            })
        ),
        "{err:?}"
    );
    assert!(mc.mean(0, 0).is_err(), "no estimate after the failed run");
    mc.run(&target, &Cosine, 0.3, &[0.2], 100, &mut rng)
        .unwrap();
    assert!(mc.mean(0, 0).unwrap().is_finite());
    // A non-finite x_t reaches the posterior's check: a typed error too.
    assert!(matches!(
        mc.run(&target, &Cosine, 0.3, &[f64::NAN], 100, &mut rng),
        Err(tsm_core::Error::NonFinite { .. })
    ));
}
