//! The probability-flow ODE likelihood of `tsm_core::likelihood` driven by the exact noised
//! score of Gaussian mixtures (d = 1 and 2), against the mixtures' true `log p₀(x)`.
//!
//! The ODE computes `log p_{t_min}(x)` with the prior `N(0, (σ² + α² v) I)` standing in for
//! `p_{t_max}`. Both substitutions are measured in closed form here and put below the
//! solver's tolerance by the choice of the ends (`t_min = 10⁻⁶`, `t_max = 1 − 10⁻⁶` on the
//! cosine schedule: `σ_{t_min}² ≈ 2.5·10⁻¹²`, `α_{t_max}² ≈ 2.5·10⁻¹²`), so what remains is
//! the solver's error: each accepted Dormand–Prince step keeps its local error below
//! `tol (1 + |y|)` per component, so the global error is below `steps · tol · (1 + |y|)`
//! (the bound asserted). Fixed seeds throughout.

use tsm_core::likelihood::{FiniteDifference, Hutchinson, LikelihoodConfig, Probe};
use tsm_core::schedule::{Cosine, Schedule};
use tsm_core::target::{Dim, LogDensity, Sample};
use tsm_targets::{named, ExactMixtureScore, GaussianMixture};

fn draws(target: &GaussianMixture, n: usize, seed: u64) -> Vec<f64> {
    let d = Dim::dim(target);
    let mut rng = tsm_core::rng::stream(seed, 0);
    let mut x = vec![0.0; n * d];
    for row in x.chunks_exact_mut(d) {
        target.sample_into(&mut rng, row);
    }
    x
}

fn config(target: &GaussianMixture, tol: f64) -> LikelihoodConfig {
    LikelihoodConfig {
        t_min: 1e-6,
        t_max: 1.0 - 1e-6,
        data_variance: target.variance_per_dim(),
        tol,
        ..LikelihoodConfig::default()
    }
}

/// The largest `|log p_{t_max}(y) − log prior(y)|` over `y` on a grid covering the prior's
/// bulk (±6 sd per coordinate): the prior substitution's error.
fn prior_gap(target: &GaussianMixture, cfg: &LikelihoodConfig) -> f64 {
    let d = Dim::dim(target);
    let t = cfg.t_max;
    let p_t = target.noised(&Cosine, t).expect("p_t");
    let var = Cosine.sigma_sq(t) + Cosine.alpha(t).powi(2) * cfg.data_variance;
    let grid: Vec<f64> = (-60..=60).map(|i| i as f64 * 0.1 * var.sqrt()).collect();
    let mut worst: f64 = 0.0;
    let mut y = vec![0.0; d];
    for a in &grid {
        for b in grid.iter().step_by(if d == 1 { grid.len() } else { 1 }) {
            y[0] = *a;
            if d == 2 {
                y[1] = *b;
            }
            let sq: f64 = y.iter().map(|v| v * v).sum();
            let prior = -0.5 * d as f64 * (std::f64::consts::TAU * var).ln() - 0.5 * sq / var;
            worst = worst.max((p_t.log_density(&y) - prior).abs());
        }
    }
    worst
}

#[test]
fn exact_score_likelihood_is_the_true_log_density_in_1d_and_2d() {
    for target in [
        named::easy_mixture(),
        named::hard_mixture_diff_var(),
        named::eight_modes(),
    ] {
        let d = Dim::dim(&target);
        let x = draws(&target, 16, 3);
        for tol in [1e-6, 1e-8] {
            let cfg = config(&target, tol);
            let mut score = ExactMixtureScore {
                mixture: &target,
                schedule: Cosine,
            };
            let run = cfg.exact(&mut score, &Cosine, &x).expect("likelihood");
            let p_min = target.noised(&Cosine, cfg.t_min).expect("p_t_min");
            let gap_prior = prior_gap(&target, &cfg);
            for (p, xi) in run.points.iter().zip(x.chunks_exact(d)) {
                let truth = target.log_density(xi);
                let gap_min = (p_min.log_density(xi) - truth).abs();
                let bound = run.stats.accepted as f64 * tol * (1.0 + truth.abs() + xi.len() as f64);
                // The two substitutions are below the solver's bound: the test is about it.
                assert!(gap_min < 0.1 * bound, "t_min gap {gap_min} vs {bound}");
                assert!(gap_prior < 0.1 * bound, "prior gap {gap_prior} vs {bound}");
                let err = (p.log_p - truth).abs();
                assert!(
                    err < bound,
                    "d={d} tol {tol}: {} vs {truth} ({bound})",
                    p.log_p
                );
            }
        }
    }
}

#[test]
fn finite_difference_and_hutchinson_routes_agree_with_the_exact_divergence() {
    let target = named::eight_modes();
    let x = draws(&target, 6, 4);
    let cfg = config(&target, 1e-7);
    let score = || ExactMixtureScore {
        mixture: &target,
        schedule: Cosine,
    };
    let exact = cfg.exact(&mut score(), &Cosine, &x).expect("exact");
    let mut fd = FiniteDifference::new(score(), 1e-5).expect("fd");
    let by_fd = cfg.exact(&mut fd, &Cosine, &x).expect("fd");
    for probe in [Probe::Rademacher, Probe::Gaussian] {
        let probes = Hutchinson {
            probes: 32,
            probe,
            fd_step: 1e-5,
        };
        let mut rng = tsm_core::rng::stream(9, 0);
        let hutch = cfg
            .hutchinson(&mut score(), &Cosine, &x, &probes, &mut rng)
            .expect("hutchinson");
        for ((e, f), h) in exact.points.iter().zip(&by_fd.points).zip(&hutch.points) {
            assert!((e.log_p - f.log_p).abs() < 1e-4, "{e:?} vs {f:?}");
            let se = h.std_error.expect("se");
            assert!(
                (e.log_p - h.log_p).abs() < 5.0 * se,
                "{probe}: {} ± {se} vs {}",
                h.log_p,
                e.log_p
            );
        }
    }
}
