//! The warped test model: `X = m⁻¹(U)` with `U` a Gaussian mixture, noised by
//! `Y = m(X) + s W`, `m(x) = x + b tanh x` (elementwise, `b > −1`).
//!
//! `Y = U + s W` is eq. 17's additive model in `u`, so `p_Y` is the mixture `p_U ⊕ s² I` and
//! `u | y` is its exact posterior; `x = m⁻¹(u)`. The target's score is the change of variables
//! `p_X(x) = p_U(m(x)) Π m′(xᵢ)`:
//! `∇log p_X(x) = m′(x) ⊙ ∇log p_U(m(x)) + m″(x)/m′(x)`, `m″(x) = −2b sech²x tanh x`.

use rand::Rng;
use tsm_core::noise_model::{NoiseModel, Warped};
use tsm_core::target::{Dim, LogDensity, PosteriorSample, Sample, Score};

use super::{ExactNoisedModel, Frozen, FROZEN_T};
use crate::error::check_len;
use crate::{GaussianMixture, MixturePosterior, Result};

/// The target `p_X` of `X = m⁻¹(U)`, `U ~ p_U` a Gaussian mixture, with the warp `m` of a
/// [`Warped`] noise model, under that noise model.
///
/// `Y = m(X) + s W = U + s W` is eq. 17's additive model in `u`, so `p_Y = p_U ⊕ s² I` and
/// `u | y` is its exact posterior; `x = m⁻¹(u)`. The score is the change of variables
/// `p_X(x) = p_U(m(x)) Π m′(xᵢ)`: `∇log p_X(x) = m′(x) ⊙ ∇log p_U(m(x)) + m″(x)/m′(x)`,
/// `m″(x) = −2b sech²x tanh x`.
#[derive(Debug, Clone, PartialEq)]
pub struct WarpedMixture {
    p_u: GaussianMixture,
    noise: Warped,
}

impl WarpedMixture {
    /// The model: `p_U` and the noise (whose warp `m` also defines `p_X`).
    ///
    /// # Errors
    /// `DimMismatch` when the dimensions differ.
    pub fn new(p_u: GaussianMixture, noise: Warped) -> Result<Self> {
        check_len(
            p_u.dim(),
            noise.dim(),
            "WarpedMixture::new (noise dimension)",
        )?;
        Ok(Self { p_u, noise })
    }

    /// `p_U`, the law of `m(X)`.
    pub fn pushforward(&self) -> &GaussianMixture {
        &self.p_u
    }

    fn frozen(&self) -> Frozen {
        Frozen {
            alpha: 1.0,
            sigma: self.noise.noise_sd(),
        }
    }
}

impl Dim for WarpedMixture {
    fn dim(&self) -> usize {
        self.p_u.dim()
    }
}

impl Score for WarpedMixture {
    /// `m′(x) ⊙ ∇log p_U(m(x)) + m″(x)/m′(x)` (allocates one buffer of length `d`).
    fn score(&self, x: &[f64], out: &mut [f64]) {
        let u: Vec<f64> = x.iter().map(|&x| self.noise.warp(x)).collect();
        self.p_u.score(&u, out);
        let b = self.noise.b();
        for (o, &x) in out.iter_mut().zip(x) {
            let m1 = self.noise.warp_derivative(x);
            let c = x.cosh();
            let m2 = -2.0 * b * x.tanh() / (c * c);
            *o = m1 * *o + m2 / m1;
        }
    }
}

impl LogDensity for WarpedMixture {
    /// `log p_U(m(x)) + Σ log m′(xᵢ)` (normalised).
    fn log_density(&self, x: &[f64]) -> f64 {
        let u: Vec<f64> = x.iter().map(|&x| self.noise.warp(x)).collect();
        self.p_u.log_density(&u)
            + x.iter()
                .map(|&x| self.noise.warp_derivative(x).ln())
                .sum::<f64>()
    }
}

impl Sample for WarpedMixture {
    fn sample_into<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]) {
        self.p_u.sample_into(rng, out);
        out.iter_mut()
            .for_each(|o| *o = self.noise.warp_inverse(*o));
    }
}

impl ExactNoisedModel for WarpedMixture {
    type Noise = Warped;
    type Target = Self;
    type Posterior = WarpedPosterior;

    fn noise(&self) -> &Warped {
        &self.noise
    }
    fn target(&self) -> &Self {
        self
    }
    /// `∇log p_Y(y)` of `p_Y = p_U ⊕ s² I`.
    fn marginal_score(&self, y: &[f64], out: &mut [f64]) -> Result<()> {
        self.noise.check_noised(y)?;
        check_len(self.dim(), out.len(), "WarpedMixture::marginal_score (out)")?;
        self.p_u.noised(&self.frozen(), FROZEN_T)?.score(y, out);
        Ok(())
    }
    fn posterior(&self, y: &[f64]) -> Result<WarpedPosterior> {
        self.noise.check_noised(y)?;
        Ok(WarpedPosterior {
            u: self.p_u.posterior(&self.frozen(), FROZEN_T, y)?,
            noise: self.noise,
        })
    }
}

/// The exact posterior `p(x | y)` of a [`WarpedMixture`]: `x = m⁻¹(u)`, `u ~ p(u | y)`.
#[derive(Debug, Clone, PartialEq)]
pub struct WarpedPosterior {
    u: MixturePosterior,
    noise: Warped,
}

impl WarpedPosterior {
    /// The posterior of `u = m(x)` (eq. 17 with `α = 1`, `σ = s`).
    pub fn of_pushforward(&self) -> &MixturePosterior {
        &self.u
    }
}

impl Dim for WarpedPosterior {
    fn dim(&self) -> usize {
        self.u.dim()
    }
}

impl PosteriorSample for WarpedPosterior {
    fn sample_into<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]) {
        self.u.sample_into(rng, out);
        out.iter_mut()
            .for_each(|o| *o = self.noise.warp_inverse(*o));
    }
}
