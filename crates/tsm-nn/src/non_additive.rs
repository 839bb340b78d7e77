//! Training score networks under non-additive noise (De Bortoli et al. (2024), *Target Score
//! Matching*, §3.1, Prop. 3.1, eq. 10).
//!
//! For a noise model `p(y | x)` of [`tsm_core::noise_model`] and a target `p_X` known by its
//! score, a network `s_θ(y)` learns `∇log p_Y(y)` by regressing on
//!
//! | [`NonAdditiveLoss`] | target `L(x, y)` | |
//! |---|---|---|
//! | `tsm` | [`NoiseModel::tsi_integrand`]: `(∂_yΦ⁻¹)ᵀ ∇log p_X(x) + ∇_y log\|det ∂_zΦ⁻¹\| + ∇_y log J` | Prop. 3.1 |
//! | `dsm` | [`NoiseModel::dsi_integrand`]: `∇_y log p(y \| x)` | Vincent (2011) |
//!
//! over pairs `x ~ p_X`, `y ~ p(y | x)`; the loss is `(1/n) Σᵢ ‖s_θ(yᵢ) − Lᵢ‖²` (weights
//! `λ ≡ 1`). Both targets have conditional mean `∇log p_Y(y)` given `y`, so both losses are
//! minimised by the exact score. For the multiplicative log-normal model the TSM target
//! includes the density factor's term (`J(y) = Π yᵢ⁻¹`, which cancels the log-determinant's
//! `1/y`): Prop. 3.1 applied mechanically would regress on `∇log p_Y(y) + 1/y`
//! (`docs/bridges-and-noise.md`).
//!
//! A noise model here is one noise level, so the network's time input is the constant
//! [`NOISE_TIME`]; the model and its checkpoints are the ordinary ones, evaluated at that
//! time. The model must use the plain [`Parameterisation::Score`](crate::precond::Parameterisation::Score) output (the others read a
//! diffusion schedule). The configuration's identity, weighting and time range are not used.
//!
//! [`score_error`] measures a trained model against the exact score of an
//! [`ExactNoisedModel`].
//!
//! # References
//! [^1]: De Bortoli et al. (2024), *Target Score Matching*, §3.1, Prop. 3.1, eq. 10.
//! [^2]: Vincent (2011), *A connection between score matching and denoising autoencoders*.

use candle::{Device, Tensor};
use rand::Rng;
use tsm_core::noise_model::NoiseModel;
use tsm_core::target::{Dim, Sample, Score};
use tsm_targets::noise::ExactNoisedModel;

use crate::bridge::ScoreError;
use crate::config::TrainConfig;
use crate::loss::{Batch, BatchSource};
use crate::network::{Conditioning, ModelConfig};
use crate::{Result, ScoreModel};

/// The network's time input for a one-level noise model (any fixed value would do).
pub const NOISE_TIME: f64 = 0.5;

/// The regression target of a non-additive noise model, by name (a
/// [`Choice`](tsm_core::choice::Choice): `tsm`, `dsm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NonAdditiveLoss {
    /// The target score identity of Prop. 3.1 ([`NoiseModel::tsi_integrand`]).
    Tsm,
    /// Denoising score matching ([`NoiseModel::dsi_integrand`]).
    Dsm,
}

tsm_core::unit_choice!(NonAdditiveLoss, "loss", [
    Tsm => "tsm",
    Dsm => "dsm",
]);

/// A [`Trainer`](crate::Trainer) whose batches come from a target under a noise model.
pub type NoisedTrainer<'a, T, N> = crate::Trainer<'a, (), NoisedBatches<'a, T, N>>;

/// Training batches `(y, L(x, y))` of a target `T` under a noise model `N` (see the
/// [module docs](self)).
#[derive(Debug, Clone)]
pub struct NoisedBatches<'a, T, N> {
    target: &'a T,
    noise: &'a N,
    loss: NonAdditiveLoss,
    model: ModelConfig,
}

impl<'a, T: Score + Sample, N: NoiseModel> NoisedBatches<'a, T, N> {
    /// Batches for the run `cfg`: `x ~ target`, `y ~ noise(· | x)`, the target of `loss`.
    ///
    /// # Errors
    /// As [`TrainConfig::validate`]; [`crate::Error::TargetDimension`] when the target or the noise
    /// model does not have the model's dimension; [`crate::Error::Config`] for a parameterisation
    /// other than `score`.
    pub fn new(
        target: &'a T,
        noise: &'a N,
        loss: NonAdditiveLoss,
        cfg: &TrainConfig,
    ) -> Result<Self> {
        cfg.validate_plain_score(
            &[Dim::dim(target), Dim::dim(noise)],
            "a non-additive noise model",
        )?;
        Ok(Self {
            target,
            noise,
            loss,
            model: cfg.model.clone(),
        })
    }

    /// The loss.
    pub fn loss(&self) -> NonAdditiveLoss {
        self.loss
    }
}

impl<T: Score + Sample, N: NoiseModel> BatchSource for NoisedBatches<'_, T, N> {
    /// `times` is ignored: every row is at [`NOISE_TIME`].
    fn sample<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        n: usize,
        _times: Option<&[f64]>,
    ) -> Result<Batch> {
        let d = self.model.mlp.dim;
        let (mut yt, mut target) = (vec![0.0f32; n * d], vec![0.0f32; n * d]);
        let (mut x, mut y, mut g, mut l) = (vec![0.0; d], vec![0.0; d], vec![0.0; d], vec![0.0; d]);
        for i in 0..n {
            self.target.sample_into(rng, &mut x);
            self.noise.sample_noised(rng, &x, &mut y);
            match self.loss {
                NonAdditiveLoss::Tsm => {
                    self.target.score(&x, &mut g);
                    self.noise.tsi_integrand(&x, &y, &g, &mut l);
                }
                NonAdditiveLoss::Dsm => self.noise.dsi_integrand(&x, &y, &mut l),
            }
            if let Some(&value) = l.iter().find(|v| !v.is_finite()) {
                return Err(tsm_core::Error::NonFinite {
                    op: "NoisedBatches: regression target",
                    value,
                }
                .into());
            }
            let row = i * d..(i + 1) * d;
            for (o, v) in yt[row.clone()].iter_mut().zip(&y) {
                *o = *v as f32;
            }
            for (o, v) in target[row].iter_mut().zip(&l) {
                *o = *v as f32;
            }
        }
        let cond = Conditioning::new(
            &self.model.mlp,
            &self.model.parameterisation,
            &self.model.schedule,
            &vec![NOISE_TIME; n],
        )?;
        Ok(Batch {
            n,
            d,
            xt: yt,
            target,
            lambda: vec![1.0; n],
            cond,
            ..Batch::default()
        })
    }
}

/// The error of `model` (trained at [`NOISE_TIME`]) against the exact `∇log p_Y` of `exact`,
/// over `points` draws `y ~ p_Y` (`x ~ p_X`, then the noise) from the random stream
/// `(seed, 0)`.
///
/// # Errors
/// Mismatched dimensions; the exact model's errors (a point off its support); the model's.
pub fn score_error<M: ExactNoisedModel>(
    model: &ScoreModel,
    exact: &M,
    points: usize,
    seed: u64,
    device: &Device,
) -> Result<ScoreError> {
    let d = Dim::dim(exact.noise());
    let mut rng = tsm_core::rng::stream(seed, 0);
    let mut ys = vec![0.0; points * d];
    let mut x = vec![0.0; d];
    for y in ys.chunks_exact_mut(d) {
        exact.target().sample_into(&mut rng, &mut x);
        exact.noise().sample_noised(&mut rng, &x, y);
    }
    let yf: Vec<f32> = ys.iter().map(|&v| v as f32).collect();
    let s: Vec<f32> = model
        .forward(
            &Tensor::from_vec(yf, (points, d), device)?,
            &vec![NOISE_TIME; points],
            None,
        )?
        .flatten_all()?
        .to_vec1()?;
    let (mut err, mut base) = (0.0, 0.0);
    let mut score = vec![0.0; d];
    for (y, si) in ys.chunks_exact(d).zip(s.chunks_exact(d)) {
        exact.marginal_score(y, &mut score)?;
        for j in 0..d {
            err += (si[j] as f64 - score[j]).powi(2);
            base += score[j].powi(2);
        }
    }
    let n = points.max(1) as f64;
    Ok(ScoreError {
        mse: err / n,
        base: base / n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::tests::config;
    use crate::precond::Parameterisation;
    use crate::Error;
    use tsm_core::noise_model::{LogNormal, Warped};
    use tsm_targets::noise::{LogGaussianMixture, WarpedMixture};
    use tsm_targets::GaussianMixture;

    fn log_model() -> LogGaussianMixture {
        let q = GaussianMixture::isotropic(
            vec![0.5, 0.5],
            vec![vec![-0.3, 0.2], vec![0.6, -0.2]],
            vec![0.2, 0.25],
        )
        .expect("q");
        LogGaussianMixture::new(q, LogNormal::new(2, 0.3).expect("noise")).expect("model")
    }

    #[test]
    fn batches_hold_positive_draws_and_finite_targets() {
        let m = log_model();
        let cfg = config((0.1, 0.9), 1);
        for loss in [NonAdditiveLoss::Tsm, NonAdditiveLoss::Dsm] {
            let src = NoisedBatches::new(m.target(), m.noise(), loss, &cfg).expect("src");
            let b = src
                .sample(&mut tsm_core::rng::stream(1, 1), 32, None)
                .expect("batch");
            assert!(b.xt.iter().all(|&y| y > 0.0));
            assert!(b.target.iter().all(|v| v.is_finite()));
            assert!(b.cond.t.iter().all(|&t| t == NOISE_TIME));
        }
        assert_eq!(
            "dsm".parse::<NonAdditiveLoss>().expect("dsm"),
            NonAdditiveLoss::Dsm
        );
        assert!("kappa".parse::<NonAdditiveLoss>().is_err());
    }

    #[test]
    fn bad_configurations_are_typed_errors() {
        let u = GaussianMixture::gaussian(3, 1.0).expect("u");
        let w = WarpedMixture::new(u, Warped::new(3, 0.5, 0.3).expect("warp")).expect("model");
        let cfg = config((0.1, 0.9), 1);
        assert!(matches!(
            NoisedBatches::new(w.target(), w.noise(), NonAdditiveLoss::Tsm, &cfg),
            Err(Error::TargetDimension {
                model: 2,
                target: 3
            })
        ));
        let m = log_model();
        let mut eps = config((0.1, 0.9), 1);
        eps.model.parameterisation = Parameterisation::Epsilon;
        assert!(matches!(
            NoisedBatches::new(m.target(), m.noise(), NonAdditiveLoss::Tsm, &eps),
            Err(Error::Config { .. })
        ));
    }
}
