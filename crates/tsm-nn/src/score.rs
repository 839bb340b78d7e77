//! A trained [`ScoreModel`] as a [`NoisedScore`] for the samplers of [`tsm_core::sampler`]:
//! host `f64` points in, scores out, evaluated in chunks on the model's device; a trained
//! conditional model ([`crate::sbi`]) as a [`ConditionalScore`] ([`ModelConditionalScore`]),
//! which [`tsm_core::sampler::Conditioned`] turns into a [`NoisedScore`] of `θ` alone, so
//! that the same samplers draw from the posterior `p(θ | x_obs)`.

use candle::{Device, Tensor};
use tsm_core::sampler::{ConditionalScore, NoisedScore};
use tsm_core::target::{check_dim, Dim, Score};

use crate::{Result, ScoreModel};

/// `s_θ(·, t)` on host buffers. `target` supplies `∇log p_0(x)` for the Cor. 2.4
/// parameterisation (ignored otherwise).
#[derive(Debug)]
pub struct ModelScore<'a, T> {
    model: &'a ScoreModel,
    target: Option<&'a T>,
    device: Device,
    chunk: usize,
}

impl<'a, T: Score> ModelScore<'a, T> {
    /// Wraps `model` (on `device`); `target` is needed by `TargetScaled` models.
    pub fn new(model: &'a ScoreModel, target: Option<&'a T>, device: &Device) -> Self {
        Self {
            model,
            target,
            device: device.clone(),
            chunk: 4096,
        }
    }

    /// The model's score at every row of `x` into `out`, `chunk` rows at a time.
    fn evaluate(&self, x: &[f64], t: f64, out: &mut [f64]) -> Result<()> {
        let d = self.dim();
        let needs = self.model.config().parameterisation.needs_target_score();
        let mut s0 = vec![0.0f64; d];
        for (xc, oc) in x.chunks(self.chunk * d).zip(out.chunks_mut(self.chunk * d)) {
            let n = xc.len() / d;
            let xf: Vec<f32> = xc.iter().map(|&v| v as f32).collect();
            let xt = Tensor::from_vec(xf, (n, d), &self.device)?;
            let score0 = match (needs, self.target) {
                (true, Some(target)) => {
                    let mut buf = Vec::with_capacity(n * d);
                    for xi in xc.chunks_exact(d) {
                        target.score(xi, &mut s0);
                        buf.extend(s0.iter().map(|&v| v as f32));
                    }
                    Some(Tensor::from_vec(buf, (n, d), &self.device)?)
                }
                _ => None,
            };
            let s = self.model.forward(&xt, &vec![t; n], score0.as_ref())?;
            let v = s.flatten_all()?.to_vec1::<f32>()?;
            for (o, &vi) in oc.iter_mut().zip(&v) {
                *o = vi as f64;
            }
        }
        Ok(())
    }
}

impl<T> Dim for ModelScore<'_, T> {
    fn dim(&self) -> usize {
        self.model.config().mlp.dim
    }
}

impl<T: Score> NoisedScore for ModelScore<'_, T> {
    /// # Errors
    /// [`tsm_core::Error::DimMismatch`] for `x` and `out` of different lengths or not a
    /// multiple of `d`; the model's own errors (candle's) as [`tsm_core::Error::Score`].
    fn noised_score(&mut self, x: &[f64], t: f64, out: &mut [f64]) -> tsm_core::Result<()> {
        let d = self.dim();
        check_dim(x.len(), out.len(), "ModelScore: out")?;
        check_dim(x.len() / d.max(1) * d, x.len(), "ModelScore: x")?;
        Ok(self.evaluate(x, t, out)?)
    }
}

/// A trained conditional model `s_θ(θ_t, t, c)` on host buffers, as a [`ConditionalScore`]
/// (the conditions are raw observations: the model standardises them).
///
/// ```
/// use tsm_core::sampler::{Conditioned, SamplerConfig};
/// use tsm_nn::network::Standardisation;
/// use tsm_nn::score::ModelConditionalScore;
/// use tsm_nn::candle::Device;
/// use tsm_nn::{MlpConfig, ModelConfig, ScoreModel};
///
/// let cfg = ModelConfig {
///     mlp: MlpConfig { dim: 2, condition_dim: 3, hidden: 8, embedding_dim: 4, ..MlpConfig::default() },
///     condition: Some(Standardisation { mean: vec![0.0; 3], sd: vec![1.0; 3] }),
///     ..ModelConfig::default()
/// };
/// let (_, model) = ScoreModel::init(&cfg, 0, &Device::Cpu)?;
/// let score = ModelConditionalScore::new(&model, &Device::Cpu)?;
/// let mut posterior = Conditioned::broadcast(score, vec![1.0, 2.0, 3.0])?;
/// let cfg = SamplerConfig { steps: 5, ..SamplerConfig::default() };
/// let theta = cfg.sample(&mut posterior, model.schedule(), 10, &mut tsm_core::rng::stream(0, 0))?;
/// assert_eq!(theta.len(), 20);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ModelConditionalScore<'a> {
    model: &'a ScoreModel,
    device: Device,
    chunk: usize,
}

impl<'a> ModelConditionalScore<'a> {
    /// Wraps a conditional `model` (on `device`).
    ///
    /// # Errors
    /// [`crate::Error::Config`] for an unconditional model or one that needs `∇log p₀`.
    pub fn new(model: &'a ScoreModel, device: &Device) -> Result<Self> {
        let cfg = model.config();
        if !cfg.is_conditional() || cfg.parameterisation.needs_target_score() {
            return Err(crate::Error::config(
                "not a conditional model (or one that needs ∇log p₀ at the input)",
            ));
        }
        Ok(Self {
            model,
            device: device.clone(),
            chunk: 4096,
        })
    }
}

impl Dim for ModelConditionalScore<'_> {
    fn dim(&self) -> usize {
        self.model.config().mlp.dim
    }
}

impl ConditionalScore for ModelConditionalScore<'_> {
    fn condition_dim(&self) -> usize {
        self.model.config().mlp.condition_dim
    }

    /// # Errors
    /// [`tsm_core::Error::DimMismatch`] for `x`, `out` and `condition` of inconsistent
    /// lengths; the model's own errors as [`tsm_core::Error::Score`].
    fn conditional_score(
        &mut self,
        x: &[f64],
        t: f64,
        condition: &[f64],
        out: &mut [f64],
    ) -> tsm_core::Result<()> {
        let (d, k) = (self.dim(), self.condition_dim());
        check_dim(x.len(), out.len(), "ModelConditionalScore: out")?;
        check_dim(x.len() / d * d, x.len(), "ModelConditionalScore: x")?;
        check_dim(
            x.len() / d * k,
            condition.len(),
            "ModelConditionalScore: condition",
        )?;
        let mut run = || -> Result<()> {
            for ((xc, cc), oc) in x
                .chunks(self.chunk * d)
                .zip(condition.chunks(self.chunk * k))
                .zip(out.chunks_mut(self.chunk * d))
            {
                let n = xc.len() / d;
                let xf: Vec<f32> = xc.iter().map(|&v| v as f32).collect();
                let xt = Tensor::from_vec(xf, (n, d), &self.device)?;
                let s = self.model.forward_conditional(&xt, &vec![t; n], cc, None)?;
                let v = s.flatten_all()?.to_vec1::<f32>()?;
                for (o, &vi) in oc.iter_mut().zip(&v) {
                    *o = vi as f64;
                }
            }
            Ok(())
        };
        Ok(run()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ModelConfig, Parameterisation};
    use tsm_core::sampler::SamplerConfig;
    use tsm_targets::GaussianMixture;

    #[test]
    fn a_network_drives_the_core_samplers() {
        let (_, model) = ScoreModel::init(&ModelConfig::default(), 0, &Device::Cpu).expect("init");
        let mut score = ModelScore::<GaussianMixture>::new(&model, None, &Device::Cpu);
        let cfg = SamplerConfig {
            steps: 5,
            ..SamplerConfig::default()
        };
        for sampler in ["em", "heun", "pc"] {
            let cfg = SamplerConfig {
                sampler: sampler.parse().expect("sampler"),
                ..cfg
            };
            let mut rng = tsm_core::rng::stream(0, 0);
            let x = cfg
                .sample(&mut score, model.schedule(), 7, &mut rng)
                .expect("sample");
            assert_eq!(x.len(), 14);
            assert!(x.iter().all(|v| v.is_finite()), "{sampler}");
        }
        let mut out = [0.0; 4];
        assert!(matches!(
            score.noised_score(&[0.0; 3], 0.5, &mut out[..3]),
            Err(tsm_core::Error::DimMismatch { .. })
        ));
    }

    #[test]
    fn the_models_own_errors_reach_the_caller_whole() {
        // A Cor. 2.4 model without the target's score: the network reports an error, which
        // the sampler hands back as a score error that is still tsm-nn's.
        let cfg = ModelConfig {
            parameterisation: Parameterisation::TargetScaled,
            ..ModelConfig::default()
        };
        let (_, model) = ScoreModel::init(&cfg, 0, &Device::Cpu).expect("init");
        let mut score = ModelScore::<GaussianMixture>::new(&model, None, &Device::Cpu);
        let mut rng = tsm_core::rng::stream(0, 0);
        let err = SamplerConfig::default()
            .sample(&mut score, model.schedule(), 3, &mut rng)
            .expect_err("no target score");
        let tsm_core::Error::Score(inner) = &err else {
            panic!("not a score error: {err:?}")
        };
        let original = inner
            .downcast_ref::<crate::Error>()
            .expect("tsm-nn's error");
        assert_eq!(err.to_string(), original.to_string());
        // And back into tsm-nn's error: the same message.
        let back = crate::Error::from(err.clone());
        assert_eq!(back.to_string(), err.to_string());
    }
}
