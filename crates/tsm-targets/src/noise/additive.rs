//! A Gaussian mixture under additive noise `Y = α X + σ W`: the case of Prop. 3.1 that is
//! eq. 8.

use tsm_core::noise_model::{Additive, NoiseModel};
use tsm_core::target::{Dim, Score};

use super::{ExactNoisedModel, Frozen, FROZEN_T};
use crate::error::check_len;
use crate::{GaussianMixture, MixturePosterior, Result};

/// A [`GaussianMixture`] `p_X` under [`Additive`] noise: `p_Y` is the mixture with means
/// `α μᵢ` and variances `α² sᵢ² + σ²`, `p(x | y)` is eq. 17's.
#[derive(Debug, Clone, PartialEq)]
pub struct AdditiveMixture {
    target: GaussianMixture,
    noise: Additive,
}

impl AdditiveMixture {
    /// The model.
    ///
    /// # Errors
    /// `DimMismatch` when the target's and the noise's dimensions differ.
    pub fn new(target: GaussianMixture, noise: Additive) -> Result<Self> {
        check_len(
            target.dim(),
            noise.dim(),
            "AdditiveMixture::new (noise dimension)",
        )?;
        Ok(Self { target, noise })
    }

    fn frozen(&self) -> Frozen {
        Frozen {
            alpha: self.noise.alpha(),
            sigma: self.noise.sigma(),
        }
    }
}

impl ExactNoisedModel for AdditiveMixture {
    type Noise = Additive;
    type Target = GaussianMixture;
    type Posterior = MixturePosterior;

    fn noise(&self) -> &Additive {
        &self.noise
    }
    fn target(&self) -> &GaussianMixture {
        &self.target
    }
    fn marginal_score(&self, y: &[f64], out: &mut [f64]) -> Result<()> {
        self.noise.check_noised(y)?;
        check_len(
            self.target.dim(),
            out.len(),
            "AdditiveMixture::marginal_score (out)",
        )?;
        self.target.noised(&self.frozen(), FROZEN_T)?.score(y, out);
        Ok(())
    }
    fn posterior(&self, y: &[f64]) -> Result<MixturePosterior> {
        self.noise.check_noised(y)?;
        self.target.posterior(&self.frozen(), FROZEN_T, y)
    }
}
