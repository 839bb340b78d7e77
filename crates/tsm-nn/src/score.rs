//! A trained [`ScoreModel`] as a [`ScoreFn`] for the samplers: host `f64` points in, scores
//! out, evaluated in chunks on the model's device.

use candle::{Device, Tensor};
use tsm_core::target::Score;

use crate::sampler::ScoreFn;
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
}

impl<T: Score> ScoreFn for ModelScore<'_, T> {
    fn dim(&self) -> usize {
        self.model.config().mlp.dim
    }

    fn score(&mut self, x: &[f64], t: f64, out: &mut [f64]) -> Result<()> {
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
