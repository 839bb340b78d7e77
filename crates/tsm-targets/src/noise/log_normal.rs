//! The log-normal test model: `X = exp(L)` with `L` a Gaussian mixture, noised
//! multiplicatively, `Y = X ⊙ exp(σ W)`.
//!
//! `log Y = L + σ W` is eq. 17's additive model in `l = log x`, so `log Y ~ q ⊕ σ² I` (`q` the
//! law of `L`) and `l | log y` is its exact posterior. Changing variables,
//! `p_X(x) = q(log x)/Π xᵢ`, so `∇log p_X(x) = (∇log q(log x) − 1)/x` and likewise
//! `∇log p_Y(y) = (∇log q_σ(log y) − 1)/y`, `q_σ = q ⊕ σ² I`.

use rand::Rng;
use tsm_core::noise_model::{LogNormal, NoiseModel};
use tsm_core::target::{Dim, LogDensity, PosteriorSample, Sample, Score};

use super::{ExactNoisedModel, Frozen, FROZEN_T};
use crate::error::check_len;
use crate::{GaussianMixture, MixturePosterior, Result};

/// The positive target `p_X` of `X = exp(L)`, `L ~ q` a Gaussian mixture, under [`LogNormal`]
/// noise. Its support is `(0, ∞)^d`: [`Score::score`] takes `x` on trust there (NaN outside);
/// check points with [`NoiseModel::check_clean`].
///
/// `log Y = L + σ W` is eq. 17's additive model in `l = log x`, so `log Y ~ q ⊕ σ² I` and
/// `l | log y` is its exact posterior. Changing variables, `p_X(x) = q(log x)/Π xᵢ`, so
/// `∇log p_X(x) = (∇log q(log x) − 1)/x` and `∇log p_Y(y) = (∇log q_σ(log y) − 1)/y`,
/// `q_σ = q ⊕ σ² I`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogGaussianMixture {
    log_target: GaussianMixture,
    noise: LogNormal,
}

impl LogGaussianMixture {
    /// The model: the law `q` of `log X` and the noise.
    ///
    /// # Errors
    /// `DimMismatch` when the dimensions differ.
    pub fn new(log_target: GaussianMixture, noise: LogNormal) -> Result<Self> {
        check_len(
            log_target.dim(),
            noise.dim(),
            "LogGaussianMixture::new (noise dimension)",
        )?;
        Ok(Self { log_target, noise })
    }

    /// `q`, the law of `log X`.
    pub fn log_target(&self) -> &GaussianMixture {
        &self.log_target
    }

    fn frozen(&self) -> Frozen {
        Frozen {
            alpha: 1.0,
            sigma: self.noise.sigma(),
        }
    }
}

impl Dim for LogGaussianMixture {
    fn dim(&self) -> usize {
        self.log_target.dim()
    }
}

impl Score for LogGaussianMixture {
    /// `(∇log q(log x) − 1)/x` (allocates one buffer of length `d`).
    fn score(&self, x: &[f64], out: &mut [f64]) {
        let l: Vec<f64> = x.iter().map(|x| x.ln()).collect();
        self.log_target.score(&l, out);
        for (o, &x) in out.iter_mut().zip(x) {
            *o = (*o - 1.0) / x;
        }
    }
}

impl LogDensity for LogGaussianMixture {
    /// `log q(log x) − Σ log xᵢ` (normalised), `−∞` off the support.
    fn log_density(&self, x: &[f64]) -> f64 {
        if x.iter().any(|&x| x.is_nan() || x <= 0.0) {
            return f64::NEG_INFINITY;
        }
        let l: Vec<f64> = x.iter().map(|x| x.ln()).collect();
        self.log_target.log_density(&l) - l.iter().sum::<f64>()
    }
}

impl Sample for LogGaussianMixture {
    fn sample_into<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]) {
        self.log_target.sample_into(rng, out);
        out.iter_mut().for_each(|o| *o = o.exp());
    }
}

impl ExactNoisedModel for LogGaussianMixture {
    type Noise = LogNormal;
    type Target = Self;
    type Posterior = LogPosterior;

    fn noise(&self) -> &LogNormal {
        &self.noise
    }
    fn target(&self) -> &Self {
        self
    }
    /// `(∇log q_σ(log y) − 1)/y`.
    fn marginal_score(&self, y: &[f64], out: &mut [f64]) -> Result<()> {
        self.noise.check_noised(y)?;
        check_len(
            self.dim(),
            out.len(),
            "LogGaussianMixture::marginal_score (out)",
        )?;
        let l: Vec<f64> = y.iter().map(|y| y.ln()).collect();
        self.log_target
            .noised(&self.frozen(), FROZEN_T)?
            .score(&l, out);
        for (o, &y) in out.iter_mut().zip(y) {
            *o = (*o - 1.0) / y;
        }
        Ok(())
    }
    fn posterior(&self, y: &[f64]) -> Result<LogPosterior> {
        self.noise.check_noised(y)?;
        let l: Vec<f64> = y.iter().map(|y| y.ln()).collect();
        Ok(LogPosterior {
            log_x: self.log_target.posterior(&self.frozen(), FROZEN_T, &l)?,
        })
    }
}

/// The exact posterior `p(x | y)` of a [`LogGaussianMixture`]: `x = exp(l)`,
/// `l ~ p(l | log y)`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogPosterior {
    log_x: MixturePosterior,
}

impl LogPosterior {
    /// The posterior of `log x` (eq. 17 with `α = 1`).
    pub fn of_log(&self) -> &MixturePosterior {
        &self.log_x
    }
}

impl Dim for LogPosterior {
    fn dim(&self) -> usize {
        self.log_x.dim()
    }
}

impl PosteriorSample for LogPosterior {
    fn sample_into<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]) {
        self.log_x.sample_into(rng, out);
        out.iter_mut().for_each(|o| *o = o.exp());
    }
}
