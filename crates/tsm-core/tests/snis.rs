//! Self-normalised importance sampling of the score ([`tsm_core::snis`]) on Gaussian targets,
//! where the noised score and App. C's variances are exact.
//!
//! Tolerances: every Monte Carlo comparison allows 5 standard errors (fixed seeds; a 5σ miss
//! has probability ~6e-7), with the standard error computed from the same sample (the spread
//! over points of the squared error, or the delta-method SE of SNIS). Points are drawn where
//! the quantity averaged over `x_t` has finite variance (`2σ_t² < α_t² σ_tar²`, see the test).

use rand::Rng;
use rand_distr::StandardNormal;
use tsm_core::gaussian_variance::GaussianVariance;
use tsm_core::identity::{Coefficients, ScoreIdentity};
use tsm_core::schedule::{Cosine, Schedule, Ve};
use tsm_core::snis::ImportanceSampledScore;
use tsm_core::target::{Dim, LogDensity, Score};
use tsm_core::{Error, Result};

const SIGMAS: f64 = 5.0;

/// `N(0, σ_tar² I_d)` with an arbitrary additive constant in its log density.
struct Gaussian {
    dim: usize,
    var: f64,
    offset: f64,
}

impl Gaussian {
    fn new(dim: usize, var: f64) -> Self {
        Self {
            dim,
            var,
            offset: 0.0,
        }
    }
    /// The normalised log density (offset 0 and the 2π term).
    fn normalised(dim: usize, var: f64) -> Self {
        Self {
            dim,
            var,
            offset: -0.5 * dim as f64 * (2.0 * std::f64::consts::PI * var).ln(),
        }
    }
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

impl LogDensity for Gaussian {
    fn log_density(&self, x: &[f64]) -> f64 {
        self.offset - 0.5 * x.iter().map(|v| v * v).sum::<f64>() / self.var
    }
}

/// A target given by closures (flat, degenerate or broken densities).
struct Custom<L: Fn(&[f64]) -> f64> {
    dim: usize,
    log_density: L,
}

impl<L: Fn(&[f64]) -> f64> Dim for Custom<L> {
    fn dim(&self) -> usize {
        self.dim
    }
}

impl<L: Fn(&[f64]) -> f64> Score for Custom<L> {
    fn score(&self, _x: &[f64], out: &mut [f64]) {
        out.fill(0.0);
    }
}

impl<L: Fn(&[f64]) -> f64> LogDensity for Custom<L> {
    fn log_density(&self, x: &[f64]) -> f64 {
        (self.log_density)(x)
    }
}

fn coefficients(
    ids: &[ScoreIdentity],
    schedule: &impl Schedule,
    t: f64,
) -> Result<Vec<Coefficients>> {
    ids.iter().map(|id| id.coefficients(schedule, t)).collect()
}

fn draw_point(rng: &mut impl Rng, dim: usize, var: f64) -> Vec<f64> {
    (0..dim)
        .map(|_| var.sqrt() * rng.sample::<f64, _>(StandardNormal))
        .collect()
}

/// Mean and standard error of the mean.
fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

#[test]
fn error_falls_like_one_over_root_k_and_matches_the_closed_form() -> Result<()> {
    // N(0, I_2), cosine, t = 0.25: 2σ² = 0.29 < α² = 0.85, so the squared error averaged over
    // x_t ~ p_t has finite variance. MSE(K) = V/K + O(1/K²): with K = 256 and 16K the O(1/K²)
    // part moves the ratio by ~(inflation 1.4)/256 ≈ 0.5%, well inside the MC error.
    let (dim, var, t, points) = (2, 1.0, 0.25, 2000);
    let target = Gaussian::new(dim, var);
    let ids = [ScoreIdentity::Dsi, ScoreIdentity::Tsi];
    let coeffs = coefficients(&ids, &Cosine, t)?;
    let g = GaussianVariance::new(dim, var, &Cosine, t)?;
    let ks = [256usize, 4096];
    let mut snis = ImportanceSampledScore::new(dim, &coeffs);
    // mse[k_index][identity] = per-point squared errors; se2 likewise for K·SE².
    let mut sq_err = vec![vec![Vec::with_capacity(points); ids.len()]; ks.len()];
    let mut k_se2 = vec![vec![Vec::with_capacity(points); ids.len()]; ks.len()];
    for (ki, &k) in ks.iter().enumerate() {
        let mut rng = tsm_core::rng::stream(21, ki as u64);
        for _ in 0..points {
            let x_t = draw_point(&mut rng, dim, g.marginal_variance());
            snis.run(&target, &Cosine, t, &x_t, k, &mut rng)?;
            for id in 0..ids.len() {
                let mut e = 0.0;
                for (j, &y) in x_t.iter().enumerate() {
                    e += (snis.mean(id, j)? - g.score(y)).powi(2);
                }
                sq_err[ki][id].push(e);
                k_se2[ki][id].push(k as f64 * snis.estimator_variance(id)?);
            }
        }
    }
    for (id, identity) in ids.iter().enumerate() {
        let (m_small, se_small) = mean_se(&sq_err[0][id]);
        let (m_large, se_large) = mean_se(&sq_err[1][id]);
        let ratio = m_small / m_large;
        let ratio_se = ratio * ((se_small / m_small).powi(2) + (se_large / m_large).powi(2)).sqrt();
        let want = (ks[1] / ks[0]) as f64;
        assert!(
            (ratio - want).abs() < SIGMAS * ratio_se,
            "{}: MSE ratio {ratio} ± {ratio_se}, want {want}",
            identity.name()
        );
        // K · MSE and K · SE² both estimate E_y[K Var_SNIS] = (App. C variance) · inflation.
        let closed = g.snis_identity(&coeffs[id]);
        for (what, sample) in [("K·MSE", &sq_err[1][id]), ("K·SE²", &k_se2[1][id])] {
            let scale = if what == "K·MSE" { ks[1] as f64 } else { 1.0 };
            let (m, se) = mean_se(sample);
            let (m, se) = (m * scale, se * scale);
            assert!(
                (m - closed).abs() < SIGMAS * se,
                "{} {what}: {m} ± {se}, closed form {closed}",
                identity.name()
            );
        }
    }
    Ok(())
}

#[test]
fn kappa_is_exact_for_a_gaussian_whatever_the_weights() -> Result<()> {
    // L_κ = −x_t/D for every proposal, so the weighted mean is exact and its SE is rounding.
    let (dim, var) = (32, 1.7);
    let target = Gaussian::new(dim, var);
    for t in [0.1, 0.5, 0.9] {
        let coeffs = coefficients(&[ScoreIdentity::kappa(var)], &Cosine, t)?;
        let g = GaussianVariance::new(dim, var, &Cosine, t)?;
        let mut rng = tsm_core::rng::stream(5, 0);
        let x_t = draw_point(&mut rng, dim, g.marginal_variance());
        let mut snis = ImportanceSampledScore::new(dim, &coeffs);
        snis.run(&target, &Cosine, t, &x_t, 64, &mut rng)?;
        for (j, &y) in x_t.iter().enumerate() {
            let exact = g.score(y);
            assert!(
                (snis.mean(0, j)? - exact).abs() < 1e-9 * (1.0 + exact.abs()),
                "t={t}"
            );
            assert!(snis.std_err(0, j)? < 1e-6 * (1.0 + exact.abs()), "t={t}");
        }
    }
    Ok(())
}

#[test]
fn flat_weights_give_ess_k_and_constant_offsets_change_nothing() -> Result<()> {
    let (dim, k, t) = (3, 500, 0.4);
    let coeffs = coefficients(&[ScoreIdentity::Dsi, ScoreIdentity::Tsi], &Cosine, t)?;
    let x_t = [0.3, -1.0, 2.0];
    let flat = Custom {
        dim,
        log_density: |_: &[f64]| -12.5,
    };
    let mut snis = ImportanceSampledScore::new(dim, &coeffs);
    snis.run(&flat, &Cosine, t, &x_t, k, &mut tsm_core::rng::stream(1, 0))?;
    assert!(
        (snis.ess()? - k as f64).abs() < 1e-9 * k as f64,
        "{}",
        snis.ess()?
    );
    assert_eq!(snis.proposals(), k);
    // Flat target: TSI is exactly 0; DSI is the plain mean of (αx_0 − x_t)/σ², which is
    // ((x_t + σ z̄) − x_t)/σ² = z̄/σ with SE 1/(σ√K) per coordinate.
    let sigma = Cosine.sigma(t);
    for j in 0..dim {
        assert_eq!(snis.mean(1, j)?, 0.0);
        let se = snis.std_err(0, j)?;
        assert!((se * sigma * (k as f64).sqrt() - 1.0).abs() < SIGMAS * (0.5 / k as f64).sqrt());
        assert!(snis.mean(0, j)?.abs() < SIGMAS * se);
    }

    // A log density shifted by ±700 (e^±700 is at the edge of f64) gives the same estimate and
    // ESS: the weights are formed by log-sum-exp.
    let g = Gaussian::new(dim, 1.0);
    let mut reference = ImportanceSampledScore::new(dim, &coeffs);
    reference.run(&g, &Cosine, t, &x_t, k, &mut tsm_core::rng::stream(2, 0))?;
    for offset in [-1e6, -700.0, 700.0, 1e6] {
        let shifted = Gaussian {
            offset,
            ..Gaussian::new(dim, 1.0)
        };
        snis.run(
            &shifted,
            &Cosine,
            t,
            &x_t,
            k,
            &mut tsm_core::rng::stream(2, 0),
        )?;
        assert!((snis.ess()? - reference.ess()?).abs() < 1e-9 * reference.ess()?);
        for id in 0..2 {
            for j in 0..dim {
                let (a, b) = (snis.mean(id, j)?, reference.mean(id, j)?);
                assert!((a - b).abs() < 1e-9 * (1.0 + b.abs()), "offset {offset}");
            }
        }
        assert!((snis.log_marginal()? - reference.log_marginal()? - offset).abs() < 1e-6);
    }
    Ok(())
}

#[test]
fn log_marginal_estimates_the_noised_density() -> Result<()> {
    // p_t(x_t) = α^{−d} E_q[p_0]: SE of its log ≈ √((K/ESS − 1)/K) (delta method).
    for (dim, t) in [(1, 0.3), (4, 0.5), (16, 0.2)] {
        let var = 1.3;
        let target = Gaussian::normalised(dim, var);
        let g = GaussianVariance::new(dim, var, &Cosine, t)?;
        let coeffs = coefficients(&[ScoreIdentity::Dsi], &Cosine, t)?;
        let mut snis = ImportanceSampledScore::new(dim, &coeffs);
        let mut rng = tsm_core::rng::stream(9, dim as u64);
        let k = 20_000;
        for _ in 0..5 {
            let x_t = draw_point(&mut rng, dim, g.marginal_variance());
            snis.run(&target, &Cosine, t, &x_t, k, &mut rng)?;
            let exact = Gaussian::normalised(dim, g.marginal_variance()).log_density(&x_t);
            let se = ((k as f64 / snis.ess()? - 1.0) / k as f64).sqrt();
            assert!(
                (snis.log_marginal()? - exact).abs() < SIGMAS * se + 1e-12,
                "d={dim} t={t}: {} vs {exact} (SE {se})",
                snis.log_marginal()?
            );
        }
    }
    Ok(())
}

#[test]
fn ess_collapses_with_dimension_as_the_closed_form_says() -> Result<()> {
    // E_y[E_q[w̃²]] = (1 + σ²/(α²σ_tar²))^d: at t = 0.5 on N(0, I_d) this is 2^d, so the ESS of
    // K = 1000 proposals is ~K/2 at d = 1 and ~1 at d = 64. A loose, one-sided check.
    let t = 0.5;
    let mut ess = Vec::new();
    for dim in [1usize, 8, 64] {
        let target = Gaussian::new(dim, 1.0);
        let coeffs = coefficients(&[ScoreIdentity::Dsi], &Cosine, t)?;
        let mut snis = ImportanceSampledScore::new(dim, &coeffs);
        let mut rng = tsm_core::rng::stream(4, dim as u64);
        let mut total = 0.0;
        for _ in 0..50 {
            let x_t = draw_point(&mut rng, dim, 1.0);
            snis.run(&target, &Cosine, t, &x_t, 1000, &mut rng)?;
            total += snis.ess()?;
        }
        ess.push(total / 50.0);
    }
    assert!(ess[0] > 300.0 && ess[0] < 700.0, "{ess:?}");
    assert!(ess[1] < ess[0] / 4.0, "{ess:?}");
    assert!(ess[2] < 5.0, "{ess:?}");
    Ok(())
}

#[test]
fn buffers_are_reused_without_changing_results() -> Result<()> {
    let (dim, t) = (5, 0.35);
    let target = Gaussian::new(dim, 0.8);
    let coeffs = coefficients(&[ScoreIdentity::Dsi, ScoreIdentity::Tsi], &Cosine, t)?;
    let x_t = [0.1, 0.2, -0.3, 0.4, -0.5];
    let mut fresh = ImportanceSampledScore::new(dim, &coeffs);
    fresh.run(
        &target,
        &Cosine,
        t,
        &x_t,
        300,
        &mut tsm_core::rng::stream(3, 3),
    )?;
    let mut reused = ImportanceSampledScore::new(dim, &coeffs);
    reused.run(
        &target,
        &Cosine,
        t,
        &x_t,
        1000,
        &mut tsm_core::rng::stream(3, 4),
    )?;
    reused.run(
        &target,
        &Cosine,
        t,
        &x_t,
        300,
        &mut tsm_core::rng::stream(3, 3),
    )?;
    for id in 0..2 {
        assert_eq!(fresh.mean_vec(id)?, reused.mean_vec(id)?);
        assert_eq!(fresh.std_err_vec(id)?, reused.std_err_vec(id)?);
    }
    assert_eq!(fresh.ess()?, reused.ess()?);
    Ok(())
}

#[test]
fn degenerate_weights_and_bad_input_are_typed_errors() -> Result<()> {
    let (dim, t) = (2, 0.5);
    let coeffs = coefficients(&[ScoreIdentity::Dsi], &Cosine, t)?;
    let mut snis = ImportanceSampledScore::new(dim, &coeffs);
    let mut rng = tsm_core::rng::stream(0, 0);
    let x_t = [0.0, 0.0];

    // All weights underflow: a density that is zero wherever the proposal goes.
    let nowhere = Custom {
        dim,
        log_density: |_: &[f64]| f64::NEG_INFINITY,
    };
    assert!(matches!(
        snis.run(&nowhere, &Cosine, t, &x_t, 100, &mut rng),
        Err(Error::DegenerateWeights { count: 100, .. })
    ));
    // Zero density on half the space is fine: those proposals get weight 0.
    let half = Custom {
        dim,
        log_density: |x: &[f64]| if x[0] > 0.0 { 0.0 } else { f64::NEG_INFINITY },
    };
    snis.run(&half, &Cosine, t, &x_t, 1000, &mut rng)?;
    assert!(
        snis.ess()? > 400.0 && snis.ess()? < 600.0,
        "{}",
        snis.ess()?
    );
    assert!(snis.mean(0, 0)?.is_finite());
    // A NaN or +∞ log density is a bug in the density, not a zero weight.
    for bad in [f64::NAN, f64::INFINITY] {
        let broken = Custom {
            dim,
            log_density: move |_: &[f64]| bad,
        };
        assert!(matches!(
            snis.run(&broken, &Cosine, t, &x_t, 10, &mut rng),
            Err(Error::NonFinite { .. })
        ));
    }
    let g = Gaussian::new(dim, 1.0);
    // α_1 = 0: the proposal is undefined (and L_TSI with it).
    assert!(matches!(
        snis.run(&g, &Cosine, 1.0, &x_t, 10, &mut rng),
        Err(Error::UndefinedAt { .. })
    ));
    assert!(matches!(
        snis.run(&g, &Cosine, 1.5, &x_t, 10, &mut rng),
        Err(Error::TimeOutOfRange { .. })
    ));
    // Coefficients computed at another time.
    assert!(matches!(
        snis.run(&g, &Cosine, 0.2, &x_t, 10, &mut rng),
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(
        snis.run(&g, &Cosine, t, &[0.0; 3], 10, &mut rng),
        Err(Error::DimMismatch { .. })
    ));
    assert!(matches!(
        snis.run(&Gaussian::new(3, 1.0), &Cosine, t, &x_t, 10, &mut rng),
        Err(Error::DimMismatch { .. })
    ));
    assert!(matches!(
        snis.run(&g, &Cosine, t, &x_t, 1, &mut rng),
        Err(Error::TooFewDraws { .. })
    ));
    assert!(matches!(
        snis.run(&g, &Cosine, t, &[f64::NAN, 0.0], 10, &mut rng),
        Err(Error::NonFinite { .. })
    ));
    assert!(matches!(
        snis.set_coefficients(&[]),
        Err(Error::DimMismatch { .. })
    ));
    // VE (α = 1): the proposal is N(x_t, σ_t² I), iDEM's original form; it works.
    let ve = Ve::standard();
    let c_ve = coefficients(&[ScoreIdentity::Tsi], &ve, 0.3)?;
    let mut snis_ve = ImportanceSampledScore::new(dim, &c_ve);
    snis_ve.run(&g, &ve, 0.3, &x_t, 100, &mut rng)?;
    assert!(snis_ve.mean(0, 0)?.is_finite());
    Ok(())
}

#[test]
fn accessors_before_a_run_or_out_of_range_are_typed_errors() -> Result<()> {
    // Before, `log_marginal` was NaN and `mean` a finite number made of zeroed buffers before
    // any run; `mean(0, d)` read past the coordinates and `mean(len, 0)` panicked.
    let (dim, t) = (2, 0.4);
    let coeffs = coefficients(&[ScoreIdentity::Dsi, ScoreIdentity::Tsi], &Cosine, t)?;
    let mut snis = ImportanceSampledScore::new(dim, &coeffs);
    let none = |r: Result<f64>| matches!(r, Err(Error::NoEstimate { .. }));
    assert!(none(snis.mean(0, 0)) && none(snis.std_err(0, 0)) && none(snis.variance(0, 0)));
    assert!(none(snis.ess()) && none(snis.log_marginal()));
    assert!(none(snis.estimator_variance(0)));
    assert!(snis.mean_vec(0).is_err() && snis.std_err_vec(0).is_err());

    let g = Gaussian::new(dim, 1.0);
    let x_t = [0.3, -0.2];
    snis.run(&g, &Cosine, t, &x_t, 100, &mut tsm_core::rng::stream(6, 0))?;
    let out = |r: Result<f64>| matches!(r, Err(Error::IndexOutOfRange { .. }));
    assert!(out(snis.mean(0, dim)) && out(snis.mean(2, 0)));
    assert!(out(snis.std_err(0, dim)) && out(snis.variance(2, 0)));
    assert!(out(snis.estimator_variance(2)));
    assert!(snis.mean(1, dim - 1)?.is_finite() && snis.ess()? >= 1.0);

    // New coefficients (another t) drop the estimate, whose moments belong to the old t; so
    // does a failed run.
    snis.set_coefficients(&coefficients(
        &[ScoreIdentity::Dsi, ScoreIdentity::Tsi],
        &Cosine,
        0.6,
    )?)?;
    assert!(none(snis.mean(0, 0)));
    snis.run(
        &g,
        &Cosine,
        0.6,
        &x_t,
        100,
        &mut tsm_core::rng::stream(6, 1),
    )?;
    assert!(snis.mean(0, 0)?.is_finite());
    assert!(snis
        .run(&g, &Cosine, 0.6, &x_t, 1, &mut tsm_core::rng::stream(6, 2))
        .is_err());
    assert!(none(snis.mean(0, 0)) && snis.proposals() == 0);
    Ok(())
}
