//! App. C's closed forms ([`tsm_core::gaussian_variance`]) against Monte Carlo from exact
//! posterior sampling, and their algebra.
//!
//! Tolerances: a sample variance of `N` normal draws has relative standard error
//! `√(2/(N−1))`; the trace over `d` independent coordinates with equal variances has
//! `√(2/(d(N−1)))`. We allow 5 of them (fixed seeds; a 5σ miss has probability ~6e-7).
//! Algebraic identities are checked to a rounding tolerance of 1e-12 relative.

use rand::Rng;
use rand_distr::StandardNormal;
use tsm_core::estimator::MonteCarloScore;
use tsm_core::gaussian_variance::GaussianVariance;
use tsm_core::identity::{Coefficients, ScoreIdentity};
use tsm_core::schedule::{Cosine, LinearVp, Schedule};
use tsm_core::target::ExactPosterior;
use tsm_core::target::{Dim, PosteriorSample, Score};
use tsm_core::{Error, Result};

const SIGMAS: f64 = 5.0;
const ROUNDING: f64 = 1e-12;

/// `p_0 = N(0, σ_tar² I_d)`.
struct Gaussian {
    dim: usize,
    var: f64,
}

impl Dim for Gaussian {
    fn dim(&self) -> usize {
        self.dim
    }
}

impl Score for Gaussian {
    fn score(&self, x: &[f64], out: &mut [f64]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = -v / self.var;
        }
    }
}

/// `p(x_0 | x_t) = N(α σ_tar² x_t / D, v I)` (App. C).
struct Posterior {
    mean: Vec<f64>,
    std: f64,
}

impl Posterior {
    fn new(target: &Gaussian, schedule: &(impl Schedule + ?Sized), t: f64, x_t: &[f64]) -> Self {
        let (a, s2) = (schedule.alpha(t), schedule.sigma_sq(t));
        let d = a * a * target.var + s2;
        Self {
            mean: x_t.iter().map(|y| a * target.var * y / d).collect(),
            std: (target.var * s2 / d).sqrt(),
        }
    }
}

impl Dim for Posterior {
    fn dim(&self) -> usize {
        self.mean.len()
    }
}

impl ExactPosterior for Gaussian {
    type Posterior = Posterior;
    fn posterior<S: Schedule + ?Sized>(
        &self,
        schedule: &S,
        t: f64,
        x_t: &[f64],
    ) -> Result<Posterior> {
        Ok(Posterior::new(self, schedule, t, x_t))
    }
}

impl PosteriorSample for Posterior {
    fn sample_into<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]) {
        for (o, &m) in out.iter_mut().zip(&self.mean) {
            let z: f64 = rng.sample(StandardNormal);
            *o = m + self.std * z;
        }
    }
}

#[test]
fn closed_forms_match_exact_posterior_sampling_in_d_1_and_32() -> Result<()> {
    let n = 20_000;
    for (di, dim) in [1usize, 32].into_iter().enumerate() {
        let rel_tol = SIGMAS * (2.0 / (dim as f64 * (n as f64 - 1.0))).sqrt();
        for var in [1.0, 2.25] {
            let target = Gaussian { dim, var };
            for (ti, t) in [0.05, 0.3, 0.6, 0.95].into_iter().enumerate() {
                let g = GaussianVariance::new(dim, var, &Cosine, t)?;
                let ids = [
                    ScoreIdentity::Dsi,
                    ScoreIdentity::Tsi,
                    ScoreIdentity::Mixture { weight: 0.3 },
                    ScoreIdentity::kappa(var),
                ];
                let coeffs = ids
                    .iter()
                    .map(|id| id.coefficients(&Cosine, t))
                    .collect::<Result<Vec<Coefficients>>>()?;
                let expected = [g.dsi()?, g.tsi()?, g.mixture(0.3)?];
                let mut rng = tsm_core::rng::stream(11, (di * 100 + ti) as u64);
                // A point x_t ~ p_t: the closed forms do not depend on it.
                let x_t: Vec<f64> = (0..dim)
                    .map(|_| g.marginal_variance().sqrt() * rng.sample::<f64, _>(StandardNormal))
                    .collect();
                let mut mc = MonteCarloScore::new(dim, &coeffs);
                mc.run(&target, &Cosine, t, &x_t, n, &mut rng)?;
                for (k, &want) in expected.iter().enumerate() {
                    let got = (0..dim)
                        .map(|j| mc.draw_variance(k, j))
                        .sum::<Result<f64>>()?;
                    assert!(
                        (got / want - 1.0).abs() < rel_tol,
                        "{} d={dim} σ_tar²={var} t={t}: MC {got} vs closed form {want}",
                        ids[k].name()
                    );
                    // The general form through the coefficients agrees with the named ones.
                    assert!((g.identity(&coeffs[k]) / want - 1.0).abs() < ROUNDING);
                }
                // κ: zero variance; the per-draw values agree to rounding.
                let kappa = (0..dim)
                    .map(|j| mc.draw_variance(3, j))
                    .sum::<Result<f64>>()?;
                assert!(
                    kappa < 1e-20 * expected[0].max(expected[1]),
                    "κ d={dim} t={t}: {kappa}"
                );
                assert_eq!(g.identity(&coeffs[3]), 0.0);
                assert_eq!(g.snis_identity(&coeffs[3]), 0.0);
                // And the κ estimate is the exact score −x_t/D.
                for (j, &y) in x_t.iter().enumerate() {
                    assert!((mc.mean(3, j)? - g.score(y)).abs() < 1e-9 * (1.0 + g.score(y).abs()));
                }
            }
        }
    }
    Ok(())
}

#[test]
fn the_mixture_variance_is_the_quadratic_with_the_covariance_and_kappa_zeroes_it() -> Result<()> {
    for schedule in [
        tsm_core::schedule::AnySchedule::Cosine(Cosine),
        tsm_core::schedule::AnySchedule::LinearVp(LinearVp::standard()),
    ] {
        for dim in [1, 7] {
            for t in [0.02, 0.3, 0.7, 0.98] {
                let g = GaussianVariance::new(dim, 0.6, &schedule, t)?;
                let (vd, vt, c) = (g.dsi()?, g.tsi()?, g.covariance());
                // Closed forms as printed in the module docs.
                let (a, s2) = (schedule.alpha(t), schedule.sigma_sq(t));
                let dd = a * a * 0.6 + s2;
                let d = dim as f64;
                assert!((vd / (d * a * a * 0.6 / (s2 * dd)) - 1.0).abs() < ROUNDING);
                assert!((vt / (d * s2 / (a * a * 0.6 * dd)) - 1.0).abs() < ROUNDING);
                assert!((c / (-d / dd) - 1.0).abs() < ROUNDING);
                for w in [0.0, 0.1, 0.5, 0.9, 1.0] {
                    let quad = w * w * vd + (1.0 - w) * (1.0 - w) * vt + 2.0 * w * (1.0 - w) * c;
                    let direct = g.mixture(w)?;
                    assert!(
                        (direct - quad).abs() < ROUNDING * (vd + vt),
                        "t={t} w={w}: {direct} vs {quad}"
                    );
                    let coeffs = ScoreIdentity::Mixture { weight: w }.coefficients(&schedule, t)?;
                    assert!((g.identity(&coeffs) - direct).abs() < ROUNDING * (vd + vt));
                }
                // The quadratic's minimiser (V_T − C)/(V_D + V_T − 2C) is κ, and the minimum 0.
                let w_star = (vt - c) / (vd + vt - 2.0 * c);
                assert!((w_star - g.kappa()).abs() < 1e-9, "t={t}");
                assert!(g.mixture(g.kappa())? < ROUNDING * (vd + vt));
                let kappa = ScoreIdentity::kappa(0.6);
                assert!((kappa.dsi_weight(&schedule, t)? - g.kappa()).abs() < ROUNDING);
                // DSI beats TSI iff α² σ_tar² ≤ σ² (App. C, with the 1/α² restored).
                assert_eq!(vd <= vt, a * a * 0.6 <= s2, "t={t}");
            }
        }
    }
    Ok(())
}

#[test]
fn ends_and_bad_input_are_typed_errors() -> Result<()> {
    let at0 = GaussianVariance::new(3, 1.0, &Cosine, 0.0)?;
    assert!(matches!(at0.dsi(), Err(Error::UndefinedAt { .. })));
    assert_eq!(at0.tsi()?, 0.0); // the posterior is a point mass
    let at1 = GaussianVariance::new(3, 1.0, &Cosine, 1.0)?;
    assert!(matches!(at1.tsi(), Err(Error::UndefinedAt { .. })));
    assert_eq!(at1.dsi()?, 0.0); // y carries no information on x: L_DSI = −y/σ²
    assert_eq!(at1.snis_inflation(), f64::INFINITY);
    assert!(matches!(at1.mixture(1.5), Err(Error::OutOfRange { .. })));
    assert!(matches!(
        GaussianVariance::new(0, 1.0, &Cosine, 0.5),
        Err(Error::DimMismatch { .. })
    ));
    assert!(matches!(
        GaussianVariance::new(1, 0.0, &Cosine, 0.5),
        Err(Error::NonPositive { .. })
    ));
    assert!(matches!(
        GaussianVariance::new(1, 1.0, &Cosine, 1.5),
        Err(Error::TimeOutOfRange { .. })
    ));
    Ok(())
}
