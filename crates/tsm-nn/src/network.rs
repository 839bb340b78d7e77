//! The score network of De Bortoli et al. (2024), §4.2: an MLP on `[c_in x, emb(t)]` with SiLU activations,
//! wrapped by an output [`Parameterisation`].
//!
//! ```text
//! h_0 = [c_in(t) x, (c − μ)/s, emb(t)]              (d + k + E)
//! h_ℓ = SiLU(W_ℓ h_{ℓ−1} + b_ℓ),  ℓ = 1 … depth      (hidden)
//! F   = W_out h_depth + b_out                        (d)
//! s_θ(x, t) = c_skip x + c_out F + c_score ∇log p_0(x)
//! ```
//!
//! For a **conditional** model `s_θ(x, t, c)` (the posterior score of simulation-based
//! inference, `c` the observation, `k = MlpConfig::condition_dim > 0`) the condition enters
//! the first layer as `k` extra columns after a standardisation `(c − μ)/s` per coordinate,
//! with `μ` and `s` the mean and standard deviation of the training set's conditions, stored
//! in the configuration ([`ModelConfig::condition`]) and therefore in every checkpoint. An
//! unconditional model (`k = 0`) has no such columns and is unchanged.
//!
//! Defaults ([`MlpConfig::default`]) are the paper's: three hidden layers of 128, time
//! embedding of dimension 128. Parameters are named `layers.{ℓ}.weight` (`[out, in]`, candle's
//! `Linear` layout) and `layers.{ℓ}.bias`, `ℓ = 0 … depth` (the last is the output layer).
//! Initialisation follows PyTorch's `nn.Linear`: weights and biases `U(−1/√fan_in, 1/√fan_in)`,
//! drawn from a seeded stream so that the same seed gives the same network.
//!
//! # Shapes
//! `x`: `[n, d]`, `t`: `n` host values, target score `∇log p_0(x)`: `[n, d]` → score `[n, d]`.

use std::collections::HashMap;

use candle::{DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder, VarMap};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tsm_core::schedule::AnySchedule;

use crate::embedding;
use crate::precond::Parameterisation;
use crate::{Error, Result};

/// Sizes of the MLP (paper §4.2 defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Data dimension `d` (input and output width).
    pub dim: usize,
    /// Width of each hidden layer (128).
    pub hidden: usize,
    /// Number of hidden layers (3).
    pub depth: usize,
    /// Time-embedding dimension `E` (128; even).
    pub embedding_dim: usize,
    /// Time scale `s` of the embedding (1000).
    pub time_scale: f64,
    /// Width `k` of the conditioning input (0: an unconditional model). Not written in the
    /// JSON when 0, so that unconditional checkpoints keep their format.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub condition_dim: usize,
}

fn is_zero(k: &usize) -> bool {
    *k == 0
}

impl Default for MlpConfig {
    fn default() -> Self {
        Self {
            dim: 2,
            hidden: 128,
            depth: 3,
            embedding_dim: 128,
            time_scale: 1000.0,
            condition_dim: 0,
        }
    }
}

impl MlpConfig {
    /// `(fan_in, fan_out)` of layer `ℓ = 0 … depth`.
    pub fn layer_shape(&self, layer: usize) -> (usize, usize) {
        let fan_in = if layer == 0 {
            self.dim + self.condition_dim + self.embedding_dim
        } else {
            self.hidden
        };
        let fan_out = if layer == self.depth {
            self.dim
        } else {
            self.hidden
        };
        (fan_in, fan_out)
    }

    /// Checks the sizes.
    ///
    /// # Errors
    /// [`Error::Config`] for a zero size or an odd embedding dimension.
    pub fn validate(&self) -> Result<()> {
        if self.dim == 0 || self.hidden == 0 || self.depth == 0 {
            return Err(Error::config(format!(
                "MLP sizes must be positive: {self:?}"
            )));
        }
        if self.embedding_dim == 0 || self.embedding_dim % 2 != 0 {
            return Err(Error::config(format!(
                "embedding dimension must be even and positive, got {}",
                self.embedding_dim
            )));
        }
        if !(self.time_scale.is_finite() && self.time_scale > 0.0) {
            return Err(Error::config(format!("bad time scale {}", self.time_scale)));
        }
        Ok(())
    }

    /// The parameter names with their shapes, in a fixed order (weights `[out, in]`).
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::with_capacity(2 * (self.depth + 1));
        for l in 0..=self.depth {
            let (i, o) = self.layer_shape(l);
            out.push((format!("layers.{l}.weight"), vec![o, i]));
            out.push((format!("layers.{l}.bias"), vec![o]));
        }
        out
    }

    /// Number of scalar parameters.
    pub fn n_parameters(&self) -> usize {
        self.parameter_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }
}

/// Everything that defines a score model: sizes, output parameterisation and schedule.
///
/// A model is built only from a resolved configuration: a `preconditioned` parameterisation
/// must carry its `σ_data²` ([`ModelConfig::resolve`]), so that a checkpoint records every
/// number the model uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// The MLP.
    pub mlp: MlpConfig,
    /// How the output becomes a score.
    pub parameterisation: Parameterisation,
    /// The noising schedule (serialised by name, e.g. `cosine`, `linear_vp`).
    pub schedule: AnySchedule,
    /// The standardisation of the conditioning input of a conditional model (`None` for an
    /// unconditional one, and then not written in the JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Standardisation>,
}

/// The standardisation `c ↦ (c − μ)/s` of a conditional model's input, per coordinate, with
/// `μ` and `s` the mean and standard deviation of the training set's conditions (a coordinate
/// that never varies gets `s = 1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardisation {
    /// `μ`, one value per coordinate.
    pub mean: Vec<f64>,
    /// `s > 0`, one value per coordinate.
    pub sd: Vec<f64>,
}

impl Standardisation {
    /// The mean and standard deviation (divisor `n − 1`) per coordinate of the rows of
    /// `conditions` (`[n, k]`, row-major); `s = 1` where the sample sd is 0.
    ///
    /// # Errors
    /// [`Error::Config`] for `k = 0`, fewer than two rows, a length not a multiple of `k`,
    /// or a non-finite value.
    pub fn fit(conditions: &[f64], k: usize) -> Result<Self> {
        if k == 0 || conditions.len() % k != 0 || conditions.len() / k < 2 {
            return Err(Error::config(format!(
                "a standardisation needs at least two whole rows of width {k} (got {} values)",
                conditions.len()
            )));
        }
        if let Some(v) = conditions.iter().find(|v| !v.is_finite()) {
            return Err(Error::config(format!("a condition holds the value {v}")));
        }
        let n = (conditions.len() / k) as f64;
        let mut mean = vec![0.0; k];
        for row in conditions.chunks_exact(k) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0.0; k];
        for row in conditions.chunks_exact(k) {
            for ((s, v), m) in var.iter_mut().zip(row).zip(&mean) {
                *s += (v - m) * (v - m);
            }
        }
        let sd = var
            .into_iter()
            .map(|s| {
                let sd = (s / (n - 1.0)).sqrt();
                if sd > 0.0 && sd.is_finite() {
                    sd
                } else {
                    1.0
                }
            })
            .collect();
        Ok(Self { mean, sd })
    }

    /// The width `k`.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Checks that `μ` and `s` have the same length `k > 0`, `μ` finite, `s` finite and
    /// positive.
    ///
    /// # Errors
    /// [`Error::Config`] naming the problem.
    pub fn validate(&self) -> Result<()> {
        if self.mean.is_empty() || self.mean.len() != self.sd.len() {
            return Err(Error::config(format!(
                "the condition's standardisation has {} means and {} sds",
                self.mean.len(),
                self.sd.len()
            )));
        }
        if !self.mean.iter().all(|m| m.is_finite())
            || !self.sd.iter().all(|s| s.is_finite() && *s > 0.0)
        {
            return Err(Error::config(
                "the condition's standardisation needs finite means and finite positive sds",
            ));
        }
        Ok(())
    }

    /// Appends `(cᵢ − μ)/s` of every row `cᵢ` of `conditions` (`[n, k]`) to `out` as `f32`.
    pub fn apply_into(&self, conditions: &[f64], out: &mut Vec<f32>) {
        let k = self.dim();
        for row in conditions.chunks_exact(k) {
            out.extend(
                row.iter()
                    .zip(&self.mean)
                    .zip(&self.sd)
                    .map(|((c, m), s)| ((c - m) / s) as f32),
            );
        }
    }
}

impl Default for ModelConfig {
    /// The paper's MLP in 2-D, the plain score output, the cosine schedule.
    fn default() -> Self {
        Self {
            mlp: MlpConfig::default(),
            parameterisation: Parameterisation::Score,
            schedule: AnySchedule::default(),
            condition: None,
        }
    }
}

impl ModelConfig {
    /// Fills in a parameterisation's `σ_data²` left to the target
    /// ([`Parameterisation::resolve`]).
    ///
    /// # Errors
    /// A `σ_data²` that is not finite and positive.
    pub fn resolve(mut self, sigma_data_sq: f64) -> Result<Self> {
        self.parameterisation = self.parameterisation.resolve(sigma_data_sq)?;
        Ok(self)
    }

    /// Checks the sizes and that the parameterisation is resolved.
    ///
    /// # Errors
    /// As [`MlpConfig::validate`]; [`tsm_core::Error::Unresolved`] (through
    /// [`Error::Core`]) for an unresolved or invalid parameterisation.
    ///
    /// A conditional model (`mlp.condition_dim > 0`) must carry a [`Standardisation`] of
    /// that width, an unconditional one none ([`Error::Config`] otherwise).
    pub fn validate(&self) -> Result<()> {
        self.mlp.validate()?;
        self.parameterisation.coefficients(&self.schedule, 0.5)?;
        match (&self.condition, self.mlp.condition_dim) {
            (None, 0) => {}
            (Some(st), k) if st.dim() == k => st.validate()?,
            (st, k) => {
                return Err(Error::config(format!(
                    "a model with condition_dim {k} has a standardisation of width {}",
                    st.as_ref().map_or(0, Standardisation::dim)
                )))
            }
        }
        Ok(())
    }

    /// Whether the model takes a conditioning input.
    pub fn is_conditional(&self) -> bool {
        self.mlp.condition_dim > 0
    }
}

/// The MLP `F` (without the parameterisation), a candle-nn [`Module`] on `[n, d + E]`.
#[derive(Debug, Clone)]
pub struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    /// Builds the MLP from `vb` (`vb.pp("layers.ℓ")` for each layer).
    ///
    /// # Errors
    /// Bad sizes, or a `VarBuilder` without the parameters (wrong shapes).
    pub fn new(cfg: &MlpConfig, vb: VarBuilder<'_>) -> Result<Self> {
        cfg.validate()?;
        let layers = (0..=cfg.depth)
            .map(|l| {
                let (i, o) = cfg.layer_shape(l);
                candle_nn::linear(i, o, vb.pp(format!("layers.{l}")))
            })
            .collect::<candle::Result<Vec<_>>>()?;
        Ok(Self { layers })
    }

    /// The layers `ℓ = 0 … depth` (the last is the output layer), for passes other than
    /// [`Module::forward`] (the forward-mode pass of [`crate::implicit::jvp`]).
    pub fn layers(&self) -> &[Linear] {
        &self.layers
    }
}

impl Module for Mlp {
    fn forward(&self, xs: &Tensor) -> candle::Result<Tensor> {
        let last = self.layers.len() - 1;
        let mut h = xs.clone();
        for (l, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h)?;
            if l < last {
                h = candle_nn::ops::silu(&h)?;
            }
        }
        Ok(h)
    }
}

/// Per-sample conditioning computed on the host from the times: the embedding and the
/// output coefficients (see [`crate::precond`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conditioning {
    /// The times `tᵢ`.
    pub t: Vec<f64>,
    /// `[n, E]` embedding, row-major.
    pub emb: Vec<f32>,
    /// `c_in(tᵢ)`.
    pub c_in: Vec<f32>,
    /// `c_out(tᵢ)`.
    pub c_out: Vec<f32>,
    /// `c_skip(tᵢ)`.
    pub c_skip: Vec<f32>,
    /// `c_score(tᵢ)`.
    pub c_score: Vec<f32>,
    /// The standardised conditions `(cᵢ − μ)/s`, `[n, k]` row-major (empty for an
    /// unconditional model).
    pub condition: Vec<f32>,
}

impl Conditioning {
    /// The conditioning of the times `t` for a model.
    ///
    /// # Errors
    /// An unresolved parameterisation ([`Parameterisation::coefficients`]).
    pub fn new(
        cfg: &MlpConfig,
        param: &Parameterisation,
        schedule: &AnySchedule,
        t: &[f64],
    ) -> Result<Self> {
        let half = cfg.embedding_dim / 2;
        let freqs = embedding::frequencies(half);
        let mut emb = vec![0.0f32; t.len() * cfg.embedding_dim];
        embedding::embed_into(t, &freqs, cfg.time_scale, &mut emb);
        let n = t.len();
        let (mut c_in, mut c_out, mut c_skip, mut c_score) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for &ti in t {
            let c = param.coefficients(schedule, ti)?;
            c_in.push(c.c_in as f32);
            c_out.push(c.c_out as f32);
            c_skip.push(c.c_skip as f32);
            c_score.push(c.c_score as f32);
        }
        Ok(Self {
            t: t.to_vec(),
            emb,
            c_in,
            c_out,
            c_skip,
            c_score,
            condition: Vec::new(),
        })
    }

    /// Sets the conditions of a conditional model: `(cᵢ − μ)/s` of every row of `conditions`
    /// (`[n, k]`, raw), with the model's [`Standardisation`].
    ///
    /// # Errors
    /// [`Error::Config`] for an unconditional model or `conditions` of another length than
    /// `n k`.
    pub fn set_condition(&mut self, model: &ModelConfig, conditions: &[f64]) -> Result<()> {
        let k = model.mlp.condition_dim;
        let st = model
            .condition
            .as_ref()
            .filter(|_| k > 0)
            .ok_or_else(|| Error::config("an unconditional model takes no condition"))?;
        if conditions.len() != self.t.len() * k {
            return Err(Error::config(format!(
                "{} condition values for {} points of width {k}",
                conditions.len(),
                self.t.len()
            )));
        }
        self.condition.clear();
        self.condition.reserve(conditions.len());
        st.apply_into(conditions, &mut self.condition);
        Ok(())
    }
}

/// A score model `s_θ(x, t)`: the [`Mlp`] and its output parameterisation.
#[derive(Debug, Clone)]
pub struct ScoreModel {
    cfg: ModelConfig,
    schedule: AnySchedule,
    mlp: Mlp,
}

impl ScoreModel {
    /// Builds the model from `vb`.
    ///
    /// # Errors
    /// Bad sizes, an unresolved parameterisation ([`ModelConfig::validate`]), or a
    /// `VarBuilder` without the parameters.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder<'_>) -> Result<Self> {
        cfg.validate()?;
        Ok(Self {
            cfg: cfg.clone(),
            schedule: cfg.schedule,
            mlp: Mlp::new(&cfg.mlp, vb)?,
        })
    }

    /// A freshly initialised model (PyTorch's `nn.Linear` initialisation from the stream
    /// `(seed, u64::MAX)`) and the [`VarMap`] holding its trainable parameters.
    ///
    /// # Errors
    /// As [`ScoreModel::new`].
    pub fn init(cfg: &ModelConfig, seed: u64, device: &Device) -> Result<(VarMap, Self)> {
        let varmap = VarMap::new();
        {
            let mut data = varmap
                .data()
                .lock()
                .map_err(|_| Error::config("VarMap lock poisoned"))?;
            for (name, tensor) in init_parameters(&cfg.mlp, seed, device)? {
                data.insert(name, candle::Var::from_tensor(&tensor)?);
            }
        }
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let model = Self::new(cfg, vb)?;
        Ok((varmap, model))
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The schedule.
    pub fn schedule(&self) -> &AnySchedule {
        &self.schedule
    }

    /// The MLP `F` (without the parameterisation).
    pub fn mlp(&self) -> &Mlp {
        &self.mlp
    }

    /// The host-side conditioning for times `t`.
    ///
    /// # Errors
    /// None in practice: the parameterisation was checked by [`ScoreModel::new`].
    pub fn conditioning(&self, t: &[f64]) -> Result<Conditioning> {
        Conditioning::new(&self.cfg.mlp, &self.cfg.parameterisation, &self.schedule, t)
    }

    /// `s_θ(x, tᵢ)` for a batch `x: [n, d]`; `score0` is `∇log p_0(x)` (`[n, d]`), required
    /// by [`Parameterisation::TargetScaled`] and ignored otherwise.
    ///
    /// # Errors
    /// Shape mismatches, or a missing `score0` when the parameterisation needs it.
    pub fn forward(&self, x: &Tensor, t: &[f64], score0: Option<&Tensor>) -> Result<Tensor> {
        let cond = self.conditioning(t)?;
        self.forward_with(x, &cond, score0)
    }

    /// `s_θ(x, tᵢ, cᵢ)` of a conditional model, `conditions` the raw conditions `[n, k]`
    /// (standardised here with the model's [`Standardisation`]).
    ///
    /// # Errors
    /// As [`ScoreModel::forward`]; an unconditional model, or conditions of the wrong length.
    pub fn forward_conditional(
        &self,
        x: &Tensor,
        t: &[f64],
        conditions: &[f64],
        score0: Option<&Tensor>,
    ) -> Result<Tensor> {
        let mut cond = self.conditioning(t)?;
        cond.set_condition(&self.cfg, conditions)?;
        self.forward_with(x, &cond, score0)
    }

    /// As [`ScoreModel::forward`] with precomputed conditioning.
    ///
    /// # Errors
    /// As [`ScoreModel::forward`].
    pub fn forward_with(
        &self,
        x: &Tensor,
        cond: &Conditioning,
        score0: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (n, d) = x.dims2()?;
        if d != self.cfg.mlp.dim || cond.t.len() != n {
            return Err(Error::config(format!(
                "input [{n}, {d}] with {} times does not fit a model of dimension {}",
                cond.t.len(),
                self.cfg.mlp.dim
            )));
        }
        let dev = x.device();
        let col = |v: &[f32]| Tensor::from_slice(v, (n, 1), dev);
        let emb = Tensor::from_slice(&cond.emb, (n, self.cfg.mlp.embedding_dim), dev)?;
        let x_in = x.broadcast_mul(&col(&cond.c_in)?)?;
        let k = self.cfg.mlp.condition_dim;
        let input = if k > 0 {
            if cond.condition.len() != n * k {
                return Err(Error::config(format!(
                    "a conditional model of condition width {k} got {} condition values for \
                     {n} points",
                    cond.condition.len()
                )));
            }
            let c = Tensor::from_slice(&cond.condition, (n, k), dev)?;
            Tensor::cat(&[&x_in, &c, &emb], 1)?
        } else if cond.condition.is_empty() {
            Tensor::cat(&[&x_in, &emb], 1)?
        } else {
            return Err(Error::config("an unconditional model takes no condition"));
        };
        let f = self.mlp.forward(&input)?;
        let mut s = f.broadcast_mul(&col(&cond.c_out)?)?;
        if cond.c_skip.iter().any(|&c| c != 0.0) {
            s = (s + x.broadcast_mul(&col(&cond.c_skip)?)?)?;
        }
        if self.cfg.parameterisation.needs_target_score() {
            let s0 = score0.ok_or_else(|| {
                Error::config("the target_scaled parameterisation needs ∇log p_0 at the input")
            })?;
            s = (s + s0.broadcast_mul(&col(&cond.c_score)?)?)?;
        }
        Ok(s)
    }
}

/// Fresh parameters `U(−1/√fan_in, 1/√fan_in)` for every weight and bias, in the order of
/// [`MlpConfig::parameter_shapes`], from the random stream `(seed, u64::MAX)`.
///
/// # Errors
/// Bad sizes, or a device error.
pub fn init_parameters(
    cfg: &MlpConfig,
    seed: u64,
    device: &Device,
) -> Result<Vec<(String, Tensor)>> {
    cfg.validate()?;
    let mut rng = tsm_core::rng::stream(seed, u64::MAX);
    let mut out = Vec::new();
    for (name, shape) in cfg.parameter_shapes() {
        let layer: usize = name
            .split('.')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let bound = 1.0 / (cfg.layer_shape(layer).0 as f32).sqrt();
        let len: usize = shape.iter().product();
        let values: Vec<f32> = (0..len).map(|_| rng.random_range(-bound..bound)).collect();
        out.push((name, Tensor::from_vec(values, shape, device)?));
    }
    Ok(out)
}

/// Copies named tensors into a map (a helper for checkpoints).
pub(crate) fn to_map(named: Vec<(String, Tensor)>) -> HashMap<String, Tensor> {
    named.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsm_core::schedule::Schedule;

    #[test]
    fn output_shape_and_parameter_count() {
        let cfg = ModelConfig::default();
        let (varmap, model) = ScoreModel::init(&cfg, 0, &Device::Cpu).expect("init");
        let x = Tensor::zeros((5, 2), DType::F32, &Device::Cpu).expect("x");
        let s = model
            .forward(&x, &[0.1, 0.2, 0.3, 0.4, 0.5], None)
            .expect("forward");
        assert_eq!(s.dims(), &[5, 2]);
        // (2+128)·128+128 + 2·(128·128+128) + 128·2+2.
        assert_eq!(
            cfg.mlp.n_parameters(),
            130 * 128 + 128 + 2 * (128 * 128 + 128) + 258
        );
        assert_eq!(varmap.all_vars().len(), 8);
    }

    #[test]
    fn target_scaled_needs_the_target_score() {
        let cfg = ModelConfig {
            parameterisation: Parameterisation::TargetScaled,
            ..ModelConfig::default()
        };
        let (_, model) = ScoreModel::init(&cfg, 0, &Device::Cpu).expect("init");
        let x = Tensor::zeros((1, 2), DType::F32, &Device::Cpu).expect("x");
        assert!(model.forward(&x, &[0.5], None).is_err());
        // With it: s = F + s0/α, so the difference of two calls is (s0' − s0)/α.
        let s0 = Tensor::new(&[[1.0f32, -2.0]], &Device::Cpu).expect("s0");
        let zero = Tensor::zeros((1, 2), DType::F32, &Device::Cpu).expect("0");
        let a = model.forward(&x, &[0.5], Some(&s0)).expect("a");
        let b = model.forward(&x, &[0.5], Some(&zero)).expect("b");
        let diff: Vec<f32> = (a - b)
            .expect("diff")
            .flatten_all()
            .expect("f")
            .to_vec1()
            .expect("v");
        let alpha = model.schedule().alpha(0.5) as f32;
        assert!((diff[0] - 1.0 / alpha).abs() < 1e-5 && (diff[1] + 2.0 / alpha).abs() < 1e-5);
    }

    #[test]
    fn an_unresolved_preconditioning_cannot_build_a_model() {
        let cfg = ModelConfig {
            parameterisation: Parameterisation::Preconditioned {
                sigma_data_sq: None,
            },
            ..ModelConfig::default()
        };
        assert!(matches!(
            ScoreModel::init(&cfg, 0, &Device::Cpu),
            Err(Error::Core(tsm_core::Error::Unresolved { .. }))
        ));
        let resolved = cfg.resolve(0.5).expect("resolve");
        assert_eq!(
            resolved.parameterisation,
            Parameterisation::preconditioned(0.5)
        );
        assert!(ScoreModel::init(&resolved, 0, &Device::Cpu).is_ok());
    }
}
