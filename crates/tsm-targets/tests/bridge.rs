//! The bridge target score identities (De Bortoli et al. (2024), *Target Score Matching*,
//! Prop. 3.4, eqs. 12–14) and the bridge DSI against the exact marginal of a bridge between
//! two Gaussian mixtures, for several `α`, with Gaussian noise and with `W ≡ 0`.
//!
//! Tolerances: every Monte Carlo mean is compared with the exact score within 5 standard
//! errors of the mean (fixed seeds; a 5σ miss has probability ~6e-7 per comparison, and there
//! are a few hundred comparisons here).

use tsm_core::bridge::{Bridge, BridgeIdentity};
use tsm_core::target::Score;
use tsm_core::Error as CoreError;
use tsm_targets::bridge::MixtureBridge;
use tsm_targets::{Error, GaussianMixture};

const SIGMAS: f64 = 5.0;
const DRAWS: usize = 20_000;

fn ends() -> (GaussianMixture, GaussianMixture) {
    let p0 = GaussianMixture::new(
        vec![0.3, 0.7],
        vec![vec![-1.0, 0.5], vec![1.2, -0.3]],
        vec![vec![0.3, 0.5], vec![0.6, 0.2]],
    )
    .unwrap();
    let p1 = GaussianMixture::isotropic(
        vec![0.5, 0.25, 0.25],
        vec![vec![0.0, 2.0], vec![2.0, 0.0], vec![-1.5, -1.5]],
        vec![0.4, 0.8, 0.5],
    )
    .unwrap();
    (p0, p1)
}

/// Mean and standard error per identity and coordinate of each identity's integrand over
/// exact posterior draws at `y`.
fn estimate(
    model: &MixtureBridge,
    ids: &[BridgeIdentity],
    y: &[f64],
    seed: u64,
) -> Vec<(Vec<f64>, Vec<f64>)> {
    let d = y.len();
    let post = model.posterior(y).unwrap();
    let coefficients: Vec<_> = ids
        .iter()
        .map(|id| id.coefficients(model.bridge()).unwrap())
        .collect();
    let mut rng = tsm_core::rng::stream(seed, 0);
    let (mut x0, mut x1, mut s0, mut s1, mut l) = (
        vec![0.0; d],
        vec![0.0; d],
        vec![0.0; d],
        vec![0.0; d],
        vec![0.0; d],
    );
    let mut sums = vec![(vec![0.0; d], vec![0.0; d]); ids.len()];
    for _ in 0..DRAWS {
        post.sample_into(&mut rng, &mut x0, &mut x1);
        model.p0().score(&x0, &mut s0);
        model.p1().score(&x1, &mut s1);
        for (c, (sum, sq)) in coefficients.iter().zip(sums.iter_mut()) {
            c.apply_into(&x0, &x1, y, &s0, &s1, &mut l);
            for j in 0..d {
                sum[j] += l[j];
                sq[j] += l[j] * l[j];
            }
        }
    }
    let n = DRAWS as f64;
    sums.into_iter()
        .map(|(sum, sq)| {
            let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
            let se = sq
                .iter()
                .zip(&mean)
                .map(|(q, m)| ((q / n - m * m).max(0.0) * n / (n - 1.0) / n).sqrt())
                .collect();
            (mean, se)
        })
        .collect()
}

#[test]
fn bridge_identities_match_the_exact_score_for_several_alpha() {
    let (p0, p1) = ends();
    let mut seed = 0;
    for noise_var in [0.09, 0.0] {
        for alpha in [0.1, 0.35, 0.6, 0.9] {
            let model = MixtureBridge::new(
                p0.clone(),
                p1.clone(),
                Bridge::new(alpha, noise_var).unwrap(),
            )
            .unwrap();
            let marginal = model.marginal().unwrap();
            let mut ids = vec![
                BridgeIdentity::X0,
                BridgeIdentity::X1,
                BridgeIdentity::Sum,
                BridgeIdentity::Convex { weight: 0.3 },
            ];
            if noise_var > 0.0 {
                ids.push(BridgeIdentity::Dsi);
            }
            for y in [[0.3, -0.4], [1.1, 1.6], [-1.0, 0.2]] {
                let mut exact = [0.0; 2];
                marginal.score(&y, &mut exact);
                seed += 1;
                for (id, (mean, se)) in ids.iter().zip(estimate(&model, &ids, &y, seed)) {
                    for j in 0..2 {
                        assert!(
                            (mean[j] - exact[j]).abs() <= SIGMAS * se[j],
                            "{id} at α = {alpha}, s² = {noise_var}, y = {y:?}, coordinate {j}: \
                             {} ± {} vs exact {}",
                            mean[j],
                            se[j],
                            exact[j]
                        );
                    }
                }
            }
        }
    }
}

/// The expected variance ordering (docs/bridges-and-noise.md): eq. 12's integrand is the low-variance one near `α = 1`,
/// eq. 13's near `α = 0` (their variances scale as `α⁻²` and `(1 − α)⁻²`: a factor ~80 here,
/// far beyond the Monte Carlo error of the variance estimates).
#[test]
fn eq_12_wins_near_alpha_one_and_eq_13_near_alpha_zero() {
    let (p0, p1) = ends();
    let ids = [BridgeIdentity::X0, BridgeIdentity::X1];
    for (alpha, better) in [(0.9, 0), (0.1, 1)] {
        let model =
            MixtureBridge::new(p0.clone(), p1.clone(), Bridge::new(alpha, 0.01).unwrap()).unwrap();
        let est = estimate(&model, &ids, &[0.3, -0.4], 99);
        let var = |k: usize| est[k].1.iter().map(|s| s * s).sum::<f64>();
        assert!(
            var(better) < var(1 - better),
            "α = {alpha}: variances {} vs {}",
            var(0),
            var(1)
        );
    }
}

#[test]
fn bad_input_is_a_typed_error_naming_the_value() {
    for alpha in [0.0, 1.0, -0.5, 2.0] {
        let err = Bridge::new(alpha, 0.1).unwrap_err();
        assert!(
            matches!(err, CoreError::OutOfRange { name: "alpha", value, .. } if value == alpha),
            "{err}"
        );
        assert!(err.to_string().contains("alpha"), "{err}");
    }
    let err = Bridge::new(0.5, -0.2).unwrap_err();
    assert!(
        matches!(err, CoreError::OutOfRange { name: "noise_var", value, .. } if value == -0.2),
        "{err}"
    );
    // Non-positive variances of the ends are refused by the mixtures.
    for bad in [0.0, -0.3] {
        let err = GaussianMixture::univariate(&[1.0], &[0.0], &[bad]).unwrap_err();
        assert!(
            matches!(err, Error::NonPositiveStd { value, .. } if value == bad),
            "{err}"
        );
    }
    // The DSI of a noiseless bridge has no density to differentiate.
    let (p0, p1) = ends();
    let model = MixtureBridge::new(p0, p1, Bridge::new(0.5, 0.0).unwrap()).unwrap();
    assert!(matches!(
        BridgeIdentity::Dsi.coefficients(model.bridge()),
        Err(CoreError::NonPositive {
            name: "noise_var",
            ..
        })
    ));
    assert!(matches!(
        model.posterior(&[0.1, 0.2, 0.3]),
        Err(Error::DimMismatch { .. })
    ));
}

/// `α` and `s²` that are not finite are refused like out-of-range ones, naming the value.
#[test]
fn non_finite_alpha_and_noise_variance_are_typed_errors() {
    for alpha in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let err = Bridge::new(alpha, 0.1).unwrap_err();
        assert!(
            matches!(err, CoreError::OutOfRange { name: "alpha", value, .. }
                if value.to_bits() == alpha.to_bits()),
            "{err}"
        );
        assert!(err.to_string().contains(&format!("{alpha}")), "{err}");
    }
    for s2 in [f64::NAN, f64::INFINITY, -1e-300] {
        let err = Bridge::new(0.5, s2).unwrap_err();
        assert!(
            matches!(err, CoreError::OutOfRange { name: "noise_var", value, .. }
                if value.to_bits() == s2.to_bits()),
            "{err}"
        );
        assert!(err.to_string().contains("noise_var"), "{err}");
    }
}
