//! Targets on Lie groups with exact noised marginals (De Bortoli et al. 2024, §3.2): mixtures
//! of wrapped normals on the torus ([`TorusMixture`]) and of IGSO(3) components on `SO(3)`
//! ([`So3Mixture`]).
//!
//! Brownian motion is a heat semigroup, so noising a mixture of heat kernels by the heat
//! kernel at time `σ²` adds `σ²` to every component's time: the noised marginal is again such
//! a mixture and its score is exact. Posteriors: exact draws on the torus (by unwrapping),
//! self-normalised importance sampling on `SO(3)` ([`So3Mixture::posterior_draws`]).
//! Scores are in body coordinates (see `tsm_core::lie`). Both mixtures implement
//! `tsm_core::lie::sampler::GroupScore` with their exact noised scores (heat time `τ = σ²`),
//! for the reverse-time geodesic random walk.
//!
//! ```
//! use tsm_core::lie::{identity, so3::{So3, Rotation}, igso3::Igso3};
//! use tsm_targets::lie::So3Mixture;
//!
//! let target = So3Mixture::new(&[1.0], &[Rotation::IDENTITY], &[0.25])?;
//! let noise = Igso3::new(0.09)?;                   // σ = 0.3
//! let y = tsm_core::lie::so3::exp(&[0.2, 0.1, -0.3]);
//! let exact = target.noised(noise.time())?.body_score(&y);
//! let mut rng = tsm_core::rng::stream(0, 0);
//! let draws = target.posterior_draws(&noise, &y, 4000, &mut rng)?;
//! // TSI (Prop. 3.2): E[Ad_{y⁻¹x} ∇log p_X(x) | y] over the weighted draws.
//! let est = draws.mean(3, |x, out| {
//!     identity::tsi_target(&So3, x, &y, &target.body_score(x), out)
//! });
//! for k in 0..3 {
//!     assert!((est.mean[k] - exact[k]).abs() < 5.0 * est.std_err[k]);
//! }
//! # Ok::<(), tsm_core::lie::LieError>(())
//! ```

mod so3;
mod torus;

pub use so3::{So3Mixture, WeightedDraws};
pub use torus::{TorusMixture, TorusPosterior};

use tsm_core::lie::LieError;

/// A Monte Carlo mean of a vector function with its standard error per coordinate.
#[derive(Debug, Clone, PartialEq)]
pub struct MeanEstimate {
    /// The (weighted) mean.
    pub mean: Vec<f64>,
    /// Its standard error: `sd/√n` for equal weights, `√(Σ w̄ᵢ²(hᵢ − ĥ)²)` for normalised
    /// importance weights `w̄`.
    pub std_err: Vec<f64>,
}

/// The weighted mean and standard error of `n` values of dimension `k` (row-major), with
/// normalised weights `w` (equal weights if `None`).
pub(crate) fn mean_estimate(values: &[f64], weights: Option<&[f64]>, k: usize) -> MeanEstimate {
    let n = values.len() / k;
    let w = |i: usize| weights.map_or(1.0 / n as f64, |w| w[i]);
    let mut mean = vec![0.0; k];
    for i in 0..n {
        for j in 0..k {
            mean[j] += w(i) * values[i * k + j];
        }
    }
    let mut var = vec![0.0; k];
    for i in 0..n {
        for j in 0..k {
            let dev = values[i * k + j] - mean[j];
            var[j] += w(i) * w(i) * dev * dev;
        }
    }
    // Equal weights: Σ (1/n)² (h − ĥ)² = s²(n−1)/n², so rescale to the usual s²/n.
    if weights.is_none() && n > 1 {
        var.iter_mut()
            .for_each(|v| *v *= n as f64 / (n as f64 - 1.0));
    }
    MeanEstimate {
        mean,
        std_err: var.into_iter().map(f64::sqrt).collect(),
    }
}

/// Validated mixture weights and their logs.
pub(crate) fn check_weights(weights: &[f64]) -> Result<Vec<f64>, LieError> {
    if weights.is_empty() {
        return Err(LieError::Empty);
    }
    let sum: f64 = weights.iter().sum();
    if let Some((index, &value)) = weights
        .iter()
        .enumerate()
        .find(|(_, w)| !w.is_finite() || **w < 0.0)
    {
        return Err(LieError::InvalidWeight { index, value, sum });
    }
    if (sum - 1.0).abs() > 1e-9 {
        return Err(LieError::InvalidWeight {
            index: usize::MAX,
            value: sum,
            sum,
        });
    }
    Ok(weights.iter().map(|w| w.ln()).collect())
}

/// `log Σ exp(aᵢ)` and the softmax written into `a`.
pub(crate) fn log_softmax(a: &mut [f64]) -> f64 {
    let m = a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    let mut z = 0.0;
    for v in a.iter_mut() {
        *v = (*v - m).exp();
        z += *v;
    }
    a.iter_mut().for_each(|v| *v /= z);
    m + z.ln()
}
