//! [`CandleEngine`]: the network as candle-nn `Linear`s, the loss as tensor ops, gradients by
//! candle's `backward()`, Adam as tensor ops; any device (see the [parent module](super)).

use candle::{DType, Device, Tensor, Var};
use candle_nn::VarMap;

use super::NamedState;
use crate::loss::{learned_mix_loss, weighted_loss, Batch};
use crate::network::{ModelConfig, ScoreModel};
use crate::optim::AdamConfig;
use crate::{Error, Result};

/// The generic candle engine (autograd).
#[derive(Debug)]
pub struct CandleEngine {
    model: ScoreModel,
    vars: Vec<Var>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    ema: Vec<Tensor>,
    names: Vec<String>,
    device: Device,
    /// An implicit loss (ISM/SSM) in place of the regression, with the seed of its probes.
    implicit: Option<(crate::implicit::ImplicitLoss, u64)>,
}

impl CandleEngine {
    /// Builds the engine on `device` from a state.
    ///
    /// # Errors
    /// Shape mismatches with `cfg`, device errors.
    pub fn new(cfg: &ModelConfig, state: &NamedState, device: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let mut vars = Vec::new();
        {
            let mut data = varmap
                .data()
                .lock()
                .map_err(|_| Error::config("VarMap lock poisoned"))?;
            for (name, t) in &state.params {
                let var = Var::from_tensor(&t.to_device(device)?)?;
                data.insert(name.clone(), var.clone());
                vars.push(var);
            }
        }
        let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, device);
        let model = ScoreModel::new(cfg, vb)?;
        let on = |named: &[(String, Tensor)]| -> Result<Vec<Tensor>> {
            named
                .iter()
                .map(|(_, t)| Ok(t.to_device(device)?))
                .collect()
        };
        Ok(Self {
            model,
            m: on(&state.adam_m)?,
            v: on(&state.adam_v)?,
            ema: on(&state.ema)?,
            names: state.params.iter().map(|(n, _)| n.clone()).collect(),
            vars,
            device: device.clone(),
            implicit: None,
        })
    }

    /// Trains with `loss` (ISM/SSM, [`crate::implicit`]) instead of the regression, its probes
    /// of step `k` drawn from [`crate::implicit::probe_rng`]`(seed, k)`.
    pub fn set_implicit(&mut self, loss: Option<crate::implicit::ImplicitLoss>, seed: u64) {
        self.implicit = loss.map(|l| (l, seed));
    }

    /// The batch's loss as a tensor of the graph: the regression's, or the implicit loss's
    /// with the probes of `step`.
    fn loss_tensor(&self, b: &Batch, step: u64) -> Result<Tensor> {
        let (xt, target, lambda, s0) = self.batch_tensors(b)?;
        if let Some((loss, seed)) = self.implicit {
            let mut rng = crate::implicit::probe_rng(seed, step);
            return crate::implicit::loss_tensor(
                loss,
                &self.model,
                &xt,
                &b.cond,
                &b.lambda,
                &mut rng,
            );
        }
        let s = self.model.forward_with(&xt, &b.cond, s0.as_ref())?;
        // mix_learned: the regression on `w A + (1 − w) B` with `w` of the learned
        // coefficients, the one graph reaching both (crate::sbi::LearnedWeight).
        match (&b.mix, self.learned_weight()) {
            (None, None) => weighted_loss(&s, &target, &lambda),
            (Some(mix), Some(c)) => {
                let k = c.as_tensor().elem_count();
                mix.check(b.n, b.d, k)?;
                let dev = &self.device;
                let dsm = Tensor::from_slice(&mix.dsm, (b.n, b.d), dev)?;
                let ltsm = Tensor::from_slice(&mix.ltsm, (b.n, b.d), dev)?;
                let phi = Tensor::from_slice(&mix.features, (b.n, k), dev)?;
                learned_mix_loss(&s, &dsm, &ltsm, &phi, c.as_tensor(), &lambda)
            }
            _ => Err(Error::config(
                "a learned-weight MIX batch needs a state with a learned weight, and such a \
                 state needs its batches",
            )),
        }
    }

    /// The learned MIX weight's coefficients (`mix_learned` runs only).
    fn learned_weight(&self) -> Option<&Var> {
        let name = crate::sbi::LearnedWeight::PARAMETER;
        let i = self.names.iter().position(|n| n == name)?;
        self.vars.get(i)
    }

    fn batch_tensors(&self, b: &Batch) -> Result<(Tensor, Tensor, Tensor, Option<Tensor>)> {
        let dev = &self.device;
        let xt = Tensor::from_slice(&b.xt, (b.n, b.d), dev)?;
        let target = Tensor::from_slice(&b.target, (b.n, b.d), dev)?;
        let lambda = Tensor::from_slice(&b.lambda, b.n, dev)?;
        let s0 = if b.score0_xt.is_empty() {
            None
        } else {
            Some(Tensor::from_slice(&b.score0_xt, (b.n, b.d), dev)?)
        };
        Ok((xt, target, lambda, s0))
    }

    /// The loss on a batch without updating.
    ///
    /// # Errors
    /// Tensor errors.
    pub fn loss(&self, b: &Batch) -> Result<f64> {
        Ok(self.loss_tensor(b, 0)?.to_scalar::<f32>()? as f64)
    }

    /// One Adam step (`step ≥ 1`); returns the loss before the update.
    ///
    /// # Errors
    /// [`Error::NonFiniteLoss`] (nothing updated), tensor errors.
    pub fn step(&mut self, b: &Batch, adam: &AdamConfig, step: u64) -> Result<f64> {
        let loss = self.loss_tensor(b, step)?;
        let value = loss.to_scalar::<f32>()? as f64;
        if !value.is_finite() {
            return Err(Error::NonFiniteLoss { step, value });
        }
        let grads = loss.backward()?;
        for (i, var) in self.vars.iter().enumerate() {
            // The learned MIX weight's coefficients learn faster (crate::sbi::LearnedWeight).
            let adam = &if self.names[i] == crate::sbi::LearnedWeight::PARAMETER {
                AdamConfig {
                    lr: adam.lr * crate::sbi::LearnedWeight::LR_GAIN,
                    ..*adam
                }
            } else {
                *adam
            };
            let (step_size, bc2) = adam.bias_corrections(step);
            let g = grads
                .get(var.as_tensor())
                .ok_or_else(|| Error::config(format!("no gradient for {}", self.names[i])))?;
            self.m[i] = ((&self.m[i] * adam.beta1)? + (g * (1.0 - adam.beta1))?)?;
            self.v[i] = ((&self.v[i] * adam.beta2)? + (g.sqr()? * (1.0 - adam.beta2))?)?;
            let denom = ((&self.v[i] * bc2)?.sqrt()? + adam.eps)?;
            let update = ((&self.m[i] / denom)? * step_size)?;
            var.set(&(var.as_tensor() - update)?)?;
            self.ema[i] =
                ((&self.ema[i] * adam.ema_decay)? + (var.as_tensor() * (1.0 - adam.ema_decay))?)?;
        }
        Ok(value)
    }

    /// The state as named host tensors.
    ///
    /// # Errors
    /// Device errors.
    pub fn state(&self) -> Result<NamedState> {
        let named = |ts: &[Tensor]| -> Result<Vec<(String, Tensor)>> {
            self.names
                .iter()
                .zip(ts)
                .map(|(n, t)| Ok((n.clone(), t.to_device(&Device::Cpu)?)))
                .collect()
        };
        let params: Vec<Tensor> = self.vars.iter().map(|v| v.as_tensor().clone()).collect();
        Ok(NamedState::from_parts(
            named(&params)?,
            named(&self.ema)?,
            named(&self.m)?,
            named(&self.v)?,
        ))
    }
}
