//! Exact test models for the non-additive target score identity (De Bortoli et al. (2024),
//! *Target Score Matching*, §3.1, Prop. 3.1, eq. 10): a target `p_X` and a noise model
//! `p(y | x)` of `tsm_core::noise_model` whose marginal score `∇log p_Y` and posterior
//! `p(x | y)` are known exactly, because a change of variables turns each into a Gaussian
//! mixture noised additively.
//!
//! | model | target `p_X` | noise | exact because |
//! |---|---|---|---|
//! | [`AdditiveMixture`] | a Gaussian mixture | `Y = α X + σ W` | eq. 17 |
//! | [`WarpedMixture`] | `X = m⁻¹(U)`, `U ~` mixture, `m(x) = x + b tanh x` | `Y = m(X) + s W` | `Y = U + s W` |
//! | [`LogGaussianMixture`] | `X = exp(L)`, `L ~` mixture | `Y = X ⊙ exp(σ W)` | `log Y = L + σ W` |
//!
//! For each, the means of [`NoiseModel::tsi_integrand`] and [`NoiseModel::dsi_integrand`] over
//! exact posterior draws equal [`ExactNoisedModel::marginal_score`] (tested in
//! `tests/non_additive.rs`). The derivations are in `docs/bridges-and-noise.md`.
//!
//! # References
//! [^1]: De Bortoli et al. (2024), *Target Score Matching*, §3.1, Prop. 3.1, eqs. 8, 10, 17.

use tsm_core::noise_model::NoiseModel;
use tsm_core::schedule::Schedule;
use tsm_core::target::{PosteriorSample, Sample, Score};

use crate::Result;

mod additive;
mod log_normal;
mod warped;

pub use additive::AdditiveMixture;
pub use log_normal::{LogGaussianMixture, LogPosterior};
pub use warped::{WarpedMixture, WarpedPosterior};

/// A target under a noise model with an exact marginal score and exact posterior draws.
pub trait ExactNoisedModel {
    /// The noise model `p(y | x)`.
    type Noise: NoiseModel;
    /// The clean target `p_X`, known through its score (what TSM needs) and its samples.
    type Target: Score + Sample;
    /// The exact posterior `p(x | y)` at one `y`.
    type Posterior: PosteriorSample;

    /// The noise model.
    fn noise(&self) -> &Self::Noise;

    /// The clean target `p_X`.
    fn target(&self) -> &Self::Target;

    /// Writes the exact `∇log p_Y(y)` into `out`.
    ///
    /// # Errors
    /// `DimMismatch` for wrong lengths; the noise model's checks of `y`
    /// ([`NoiseModel::check_noised`]).
    fn marginal_score(&self, y: &[f64], out: &mut [f64]) -> Result<()>;

    /// The exact posterior `p(x | y)`.
    ///
    /// # Errors
    /// As [`ExactNoisedModel::marginal_score`].
    fn posterior(&self, y: &[f64]) -> Result<Self::Posterior>;
}

/// A schedule frozen at one `(α, σ)`, to reuse [`crate::GaussianMixture`]'s noised marginal and
/// posterior (eq. 17) at `t = 0` for a fixed noise level.
#[derive(Debug, Clone, Copy)]
struct Frozen {
    alpha: f64,
    sigma: f64,
}

/// The time at which a [`Frozen`] schedule is evaluated (any `t ∈ [0, 1]` gives the same).
const FROZEN_T: f64 = 0.0;

impl Schedule for Frozen {
    fn name(&self) -> &'static str {
        "frozen"
    }
    fn alpha(&self, _t: f64) -> f64 {
        self.alpha
    }
    fn sigma(&self, _t: f64) -> f64 {
        self.sigma
    }
    fn d_alpha(&self, _t: f64) -> f64 {
        0.0
    }
    fn d_sigma(&self, _t: f64) -> f64 {
        0.0
    }
    fn is_variance_preserving(&self) -> bool {
        false
    }
}
