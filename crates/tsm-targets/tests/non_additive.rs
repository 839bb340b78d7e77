//! The target score identity for non-additive noise (De Bortoli et al. (2024), *Target Score
//! Matching*, Prop. 3.1, eq. 10) against the exact test models of `tsm_targets::noise`:
//! additive (eq. 8), warped `Y = m(X) + sW`, and multiplicative log-normal `Y = X ⊙ exp(σW)`
//! — with the negative control that applying Prop. 3.1 mechanically to the latter (without
//! the density factor `1/Π yᵢ`) estimates `∇log p_Y(y) + 1/y`, not the score.
//!
//! Tolerances: Monte Carlo means are compared with exact scores within 5 standard errors
//! (fixed seeds; ~6e-7 false-alarm probability per comparison); the additive integrand equals
//! eq. 8's coefficients bit for bit (the same floating-point operations).

use tsm_core::identity::ScoreIdentity;
use tsm_core::noise_model::{Additive, LogNormal, NoiseModel, Warped};
use tsm_core::schedule::{Cosine, Schedule};
use tsm_core::target::{PosteriorSample, Score};
use tsm_targets::noise::{AdditiveMixture, ExactNoisedModel, LogGaussianMixture, WarpedMixture};
use tsm_targets::GaussianMixture;

const SIGMAS: f64 = 5.0;
const DRAWS: usize = 20_000;

fn mixture() -> GaussianMixture {
    GaussianMixture::new(
        vec![0.4, 0.6],
        vec![vec![-0.8, 0.4], vec![0.9, -0.5]],
        vec![vec![0.35, 0.5], vec![0.5, 0.3]],
    )
    .unwrap()
}

/// Means and standard errors of `integrand(x, y, ∇log p_X(x))` over exact posterior draws.
struct Estimate {
    mean: Vec<f64>,
    se: Vec<f64>,
}

fn estimate<M: ExactNoisedModel>(
    model: &M,
    y: &[f64],
    seed: u64,
    integrand: impl Fn(&M::Noise, &[f64], &[f64], &[f64], &mut [f64]),
) -> Estimate {
    let d = y.len();
    let post = model.posterior(y).unwrap();
    let mut rng = tsm_core::rng::stream(seed, 0);
    let (mut x, mut g, mut t) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
    let (mut sum, mut sq) = (vec![0.0; d], vec![0.0; d]);
    for _ in 0..DRAWS {
        post.sample_into(&mut rng, &mut x);
        model.target().score(&x, &mut g);
        integrand(model.noise(), &x, y, &g, &mut t);
        for j in 0..d {
            sum[j] += t[j];
            sq[j] += t[j] * t[j];
        }
    }
    let n = DRAWS as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let se = sq
        .iter()
        .zip(&mean)
        .map(|(q, m)| ((q / n - m * m).max(0.0) / (n - 1.0)).sqrt())
        .collect();
    Estimate { mean, se }
}

fn tsi<N: NoiseModel>(noise: &N, x: &[f64], y: &[f64], g: &[f64], out: &mut [f64]) {
    noise.tsi_integrand(x, y, g, out);
}

fn dsi<N: NoiseModel>(noise: &N, x: &[f64], y: &[f64], _g: &[f64], out: &mut [f64]) {
    noise.dsi_integrand(x, y, out);
}

/// Checks TSI and DSI at each `y` against the exact marginal score.
fn check_model<M: ExactNoisedModel>(model: &M, ys: &[[f64; 2]], seed: u64, label: &str) {
    for (k, y) in ys.iter().enumerate() {
        let mut exact = [0.0; 2];
        model.marginal_score(y, &mut exact).unwrap();
        for (name, est) in [
            (
                "tsi",
                estimate(model, y, seed + 2 * k as u64, tsi::<M::Noise>),
            ),
            (
                "dsi",
                estimate(model, y, seed + 2 * k as u64 + 1, dsi::<M::Noise>),
            ),
        ] {
            for j in 0..2 {
                assert!(
                    (est.mean[j] - exact[j]).abs() <= SIGMAS * est.se[j],
                    "{label}, {name} at y = {y:?}, coordinate {j}: {} ± {} vs exact {}",
                    est.mean[j],
                    est.se[j],
                    exact[j]
                );
            }
        }
    }
}

#[test]
fn additive_model_is_eq_8_and_matches_the_exact_score() {
    let target = mixture();
    for (k, t) in [0.2, 0.5, 0.8].into_iter().enumerate() {
        let noise = Additive::at(2, &Cosine, t).unwrap();
        let model = AdditiveMixture::new(target.clone(), noise).unwrap();
        let ys = [[0.3, -0.2], [-1.0, 0.9]];
        check_model(&model, &ys, 100 * k as u64, &format!("additive t = {t}"));
        // Bit for bit eq. 8 (and the DSI, eq. 2) on posterior draws.
        let tsi_c = ScoreIdentity::Tsi.coefficients(&Cosine, t).unwrap();
        let dsi_c = ScoreIdentity::Dsi.coefficients(&Cosine, t).unwrap();
        let post = model.posterior(&ys[0]).unwrap();
        let mut rng = tsm_core::rng::stream(7, k as u64);
        let (mut x, mut g) = ([0.0; 2], [0.0; 2]);
        for _ in 0..100 {
            post.sample_into(&mut rng, &mut x);
            target.score(&x, &mut g);
            let (mut ours, mut eq8) = ([0.0; 2], [0.0; 2]);
            noise.tsi_integrand(&x, &ys[0], &g, &mut ours);
            tsi_c.apply_into(&x, &ys[0], &g, &mut eq8);
            assert_eq!(ours, eq8);
            noise.dsi_integrand(&x, &ys[0], &mut ours);
            dsi_c.apply_into(&x, &ys[0], &g, &mut eq8);
            for j in 0..2 {
                assert!((ours[j] - eq8[j]).abs() <= 1e-14 * eq8[j].abs().max(1.0));
            }
        }
        assert_eq!(noise.alpha(), Cosine.alpha(t));
    }
}

#[test]
fn warped_model_matches_the_exact_score() {
    for (k, (b, s)) in [(-0.6, 0.3), (0.8, 1.0), (3.0, 0.5)]
        .into_iter()
        .enumerate()
    {
        let noise = Warped::new(2, b, s).unwrap();
        let model = WarpedMixture::new(mixture(), noise).unwrap();
        check_model(
            &model,
            &[[0.3, -0.2], [-1.4, 1.1]],
            1000 + 10 * k as u64,
            &format!("warped b = {b}, s = {s}"),
        );
    }
}

#[test]
fn log_normal_model_matches_the_exact_score_and_the_mechanical_integrand_does_not() {
    for (k, sigma) in [0.2, 0.5].into_iter().enumerate() {
        let noise = LogNormal::new(2, sigma).unwrap();
        let model = LogGaussianMixture::new(mixture(), noise).unwrap();
        let ys = [[0.6, 1.4], [2.0, 0.8]];
        check_model(
            &model,
            &ys,
            2000 + 10 * k as u64,
            &format!("log-normal σ = {sigma}"),
        );
        // Negative control: Prop. 3.1 with Φ = log y − log x alone (no density factor).
        let mechanical = |n: &LogNormal, x: &[f64], y: &[f64], g: &[f64], out: &mut [f64]| {
            n.transport(y, x, g, out);
            n.add_grad_log_det(y, x, out);
        };
        for (i, y) in ys.iter().enumerate() {
            let mut exact = [0.0; 2];
            model.marginal_score(y, &mut exact).unwrap();
            let est = estimate(&model, y, 3000 + 10 * k as u64 + i as u64, mechanical);
            for j in 0..2 {
                let (m, se) = (est.mean[j], est.se[j]);
                assert!(
                    (m - exact[j]).abs() > SIGMAS * se,
                    "the mechanical integrand should be biased: {m} ± {se} vs {}",
                    exact[j]
                );
                // …by exactly 1/y.
                assert!(
                    (m - exact[j] - 1.0 / y[j]).abs() <= SIGMAS * se,
                    "bias {} vs 1/y = {}",
                    m - exact[j],
                    1.0 / y[j]
                );
            }
        }
    }
}

#[test]
fn bad_input_is_a_typed_error() {
    let noise = LogNormal::new(2, 0.3).unwrap();
    let model = LogGaussianMixture::new(mixture(), noise).unwrap();
    let mut out = [0.0; 2];
    let err = model.marginal_score(&[1.0, -0.5], &mut out).unwrap_err();
    assert!(err.to_string().contains("-0.5"), "{err}");
    assert!(model.posterior(&[0.0, 1.0]).is_err());
    assert!(model.posterior(&[1.0]).is_err());
    assert!(LogGaussianMixture::new(mixture(), LogNormal::new(3, 0.3).unwrap()).is_err());
    assert!(WarpedMixture::new(mixture(), Warped::new(1, 0.5, 0.3).unwrap()).is_err());
    assert!(
        AdditiveMixture::new(mixture(), Additive::new(2, 0.9, 0.1).unwrap())
            .unwrap()
            .posterior(&[f64::NAN, 0.0])
            .is_err()
    );
}

/// Non-positive or non-finite noise scales are typed errors that name the parameter and
/// print the value (issue #16's acceptance: "a non-positive variance → a typed error naming
/// the value").
#[test]
fn non_positive_noise_scales_name_the_parameter_and_the_value() {
    use tsm_core::Error as CoreError;
    for bad in [0.0, -0.25, f64::NAN, f64::INFINITY] {
        let cases = [
            ("sigma", LogNormal::new(2, bad).unwrap_err()),
            ("noise_sd", Warped::new(2, 0.5, bad).unwrap_err()),
            ("sigma", Additive::new(2, 0.9, bad).unwrap_err()),
        ];
        for (name, err) in cases {
            assert!(
                matches!(&err, CoreError::NonPositive { name: n, value } if *n == name
                    && (value.to_bits() == bad.to_bits())),
                "{name} = {bad}: {err:?}"
            );
            assert!(
                err.to_string().contains(name) && err.to_string().contains(&format!("{bad}")),
                "{err}"
            );
        }
    }
}
