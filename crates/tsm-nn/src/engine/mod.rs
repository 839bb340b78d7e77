//! The two ways a training step runs:
//!
//! - [`CandleEngine`]: the network as candle-nn `Linear`s, the loss as tensor ops, gradients by
//!   candle's `backward()`, Adam as tensor ops. Runs on any device (CPU, CUDA, Metal).
//! - [`CpuEngine`]: the same maths with a hand-written backward on CPU `f32` buffers: the
//!   crate's own register-blocked matrix product (AVX-512, AVX2 + FMA or portable, the same bits on
//!   each) and fused bias + SiLU kernels with a vectorised `exp` (the crate's private
//!   `kernels.rs`), buffers reused across steps, no autograd graph, the first layer's unused
//!   input gradient skipped, and one fused Adam + EMA loop over a flat parameter buffer. The
//!   batch is split into two halves whose gradients are summed in a fixed order; with two or
//!   more `threads` the caller runs one half and a helper thread the other (`pair.rs`: it
//!   spins between jobs instead of sleeping, so a fork costs about a microsecond, not a
//!   futex wake-up), and they then split the Adam update and the weight transpose, which
//!   are elementwise. So results do not depend on the thread count (tested for 1, 2 and 3
//!   threads).
//!
//! Both compute, for a [`Batch`], `ℓ = (1/n) Σᵢ λᵢ ‖sᵢ − Lᵢ‖²` with
//! `sᵢ = c_skip xᵢ + c_out F([c_in xᵢ, emb(tᵢ)]) + c_score ∇log p_0(xᵢ)`, and the same Adam
//! update ([`crate::optim`]); they agree to float rounding (tested).
//!
//! Layout: this file has the [`Engine`] that the trainer drives, [`EngineKind`] and the
//! [`NamedState`] both engines load and save; `candle.rs` and `cpu.rs` have one engine each, `pair.rs` the CPU engine's helper thread.

use ::candle::{Device, Tensor};

use crate::loss::Batch;
use crate::network::ModelConfig;
use crate::optim::AdamConfig;
use crate::{Error, Result};

mod candle;
mod cpu;
mod pair;

pub use self::candle::CandleEngine;
pub use self::cpu::CpuEngine;

/// Named host tensors of a training state: parameters, their EMA and Adam's moments, each in
/// the order of [`MlpConfig::parameter_shapes`](crate::network::MlpConfig::parameter_shapes).
///
/// The four lists have the same names and shapes, in the same order; the fields are private
/// so that only [`NamedState::fresh`], the engines and checkpoint loading (which checks every
/// name and shape) build one.
#[derive(Debug, Clone)]
pub struct NamedState {
    params: Vec<(String, Tensor)>,
    ema: Vec<(String, Tensor)>,
    adam_m: Vec<(String, Tensor)>,
    adam_v: Vec<(String, Tensor)>,
}

fn zeros_like_named(named: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>> {
    named
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.zeros_like()?)))
        .collect()
}

impl NamedState {
    /// A fresh state: `θ` given, EMA = `θ`, zero moments.
    ///
    /// # Errors
    /// Device errors.
    pub fn fresh(params: Vec<(String, Tensor)>) -> Result<Self> {
        let ema = params
            .iter()
            .map(|(n, t)| Ok((n.clone(), t.copy()?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            adam_m: zeros_like_named(&params)?,
            adam_v: zeros_like_named(&params)?,
            ema,
            params,
        })
    }

    /// A state from its four lists, which must have the same names and shapes in the same
    /// order (checked by the callers: the engines build them so, checkpoint loading checks).
    pub(crate) fn from_parts(
        params: Vec<(String, Tensor)>,
        ema: Vec<(String, Tensor)>,
        adam_m: Vec<(String, Tensor)>,
        adam_v: Vec<(String, Tensor)>,
    ) -> Self {
        Self {
            params,
            ema,
            adam_m,
            adam_v,
        }
    }

    /// The parameters `θ`, named and ordered as
    /// [`MlpConfig::parameter_shapes`](crate::network::MlpConfig::parameter_shapes).
    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// Their exponential moving average `θ_ema` (what sampling uses).
    pub fn ema(&self) -> &[(String, Tensor)] {
        &self.ema
    }

    /// Adam's first moments.
    pub fn adam_m(&self) -> &[(String, Tensor)] {
        &self.adam_m
    }

    /// Adam's second moments.
    pub fn adam_v(&self) -> &[(String, Tensor)] {
        &self.adam_v
    }
}

/// Which engine runs the training step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// [`CandleEngine`] (any device).
    Candle,
    /// [`CpuEngine`] (CPU only).
    Cpu,
}

/// Either engine.
#[derive(Debug)]
pub enum Engine {
    /// The candle autograd engine.
    Candle(CandleEngine),
    /// The CPU engine.
    Cpu(CpuEngine),
}

impl Engine {
    /// Builds the engine of kind `kind` on `device`.
    ///
    /// # Errors
    /// [`Error::Config`] for the CPU engine on another device; shape mismatches.
    pub fn new(
        kind: EngineKind,
        cfg: &ModelConfig,
        state: &NamedState,
        device: &Device,
        threads: usize,
    ) -> Result<Self> {
        match kind {
            EngineKind::Candle => Ok(Self::Candle(CandleEngine::new(cfg, state, device)?)),
            EngineKind::Cpu if device.is_cpu() => {
                Ok(Self::Cpu(CpuEngine::new(&cfg.mlp, state, threads)?))
            }
            EngineKind::Cpu => Err(Error::config("the cpu engine runs on the CPU device only")),
        }
    }

    /// The engine training with an implicit loss (ISM/SSM, [`crate::implicit`]) instead of
    /// the regression when `loss` is `Some`, its probes from `seed`.
    ///
    /// # Errors
    /// [`Error::Config`] for an implicit loss on the CPU engine (its hand-written backward
    /// has no pass through the Jacobian–vector products).
    pub fn with_implicit(
        mut self,
        loss: Option<crate::implicit::ImplicitLoss>,
        seed: u64,
    ) -> Result<Self> {
        match (&mut self, loss) {
            (_, None) => {}
            (Self::Candle(e), l) => e.set_implicit(l, seed),
            (Self::Cpu(_), Some(l)) => {
                return Err(Error::config(format!(
                    "{l} runs on the candle (autograd) engine only"
                )))
            }
        }
        Ok(self)
    }

    /// One Adam step; returns the loss before the update.
    ///
    /// # Errors
    /// As the engines' `step`.
    pub fn step(&mut self, b: &Batch, adam: &AdamConfig, step: u64) -> Result<f64> {
        match self {
            Self::Candle(e) => e.step(b, adam, step),
            Self::Cpu(e) => e.step(b, adam, step),
        }
    }

    /// [`step`](Self::step), with `meanwhile(loss)` run on the calling thread during the
    /// update where the engine can overlap the two ([`CpuEngine::step_and`]), otherwise
    /// after it; returns the loss and `meanwhile`'s result.
    ///
    /// # Errors
    /// As the engines' `step` (`meanwhile` has not run then).
    pub fn step_and<R>(
        &mut self,
        b: &Batch,
        adam: &AdamConfig,
        step: u64,
        meanwhile: impl FnOnce(f64) -> R,
    ) -> Result<(f64, R)> {
        match self {
            Self::Candle(e) => {
                let loss = e.step(b, adam, step)?;
                Ok((loss, meanwhile(loss)))
            }
            Self::Cpu(e) => e.step_and(b, adam, step, meanwhile),
        }
    }

    /// The loss on a batch without updating.
    ///
    /// # Errors
    /// As the engines' `loss`.
    pub fn loss(&self, b: &Batch) -> Result<f64> {
        match self {
            Self::Candle(e) => e.loss(b),
            Self::Cpu(e) => e.loss(b),
        }
    }

    /// The state as named host tensors.
    ///
    /// # Errors
    /// Device errors.
    pub fn state(&self) -> Result<NamedState> {
        match self {
            Self::Candle(e) => e.state(),
            Self::Cpu(e) => e.state(),
        }
    }
}
