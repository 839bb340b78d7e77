//! The two ways a training step runs:
//!
//! - [`CandleEngine`]: the network as candle-nn `Linear`s, the loss as tensor ops, gradients by
//!   candle's `backward()`, Adam as tensor ops. Runs on any device (CPU, CUDA, Metal).
//! - [`CpuEngine`]: the same maths with a hand-written backward on CPU `f32` buffers: candle's
//!   matmul for the products, fused bias + SiLU kernels with a vectorised `exp`
//!   ([`crate::kernels`]), no autograd graph, the first layer's unused input gradient skipped,
//!   and one fused Adam + EMA loop over a flat parameter buffer. The batch is split into two
//!   halves whose gradients are summed in a fixed order, so results do not depend on whether
//!   the halves run on one thread or two.
//!
//! Both compute, for a [`Batch`], `ℓ = (1/n) Σᵢ λᵢ ‖sᵢ − Lᵢ‖²` with
//! `sᵢ = c_skip xᵢ + c_out F([c_in xᵢ, emb(tᵢ)]) + c_score ∇log p_0(xᵢ)`, and the same Adam
//! update ([`crate::optim`]); they agree to float rounding (tested).

use candle::{DType, Device, Tensor, Var};
use candle_nn::VarMap;

use crate::loss::{weighted_loss, Batch};
use crate::network::{MlpConfig, ModelConfig, ScoreModel};
use crate::optim::{adam_ema_update, AdamConfig};
use crate::{kernels, Error, Result};

/// Named host tensors of a training state: parameters, their EMA and Adam's moments, each in
/// the order of [`MlpConfig::parameter_shapes`].
#[derive(Debug, Clone)]
pub struct NamedState {
    /// `θ`.
    pub params: Vec<(String, Tensor)>,
    /// `θ_ema`.
    pub ema: Vec<(String, Tensor)>,
    /// Adam's first moments.
    pub adam_m: Vec<(String, Tensor)>,
    /// Adam's second moments.
    pub adam_v: Vec<(String, Tensor)>,
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
        })
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
        let (xt, target, lambda, s0) = self.batch_tensors(b)?;
        let s = self.model.forward_with(&xt, &b.cond, s0.as_ref())?;
        Ok(weighted_loss(&s, &target, &lambda)?.to_scalar::<f32>()? as f64)
    }

    /// One Adam step (`step ≥ 1`); returns the loss before the update.
    ///
    /// # Errors
    /// [`Error::NonFiniteLoss`] (nothing updated), tensor errors.
    pub fn step(&mut self, b: &Batch, adam: &AdamConfig, step: u64) -> Result<f64> {
        let (xt, target, lambda, s0) = self.batch_tensors(b)?;
        let s = self.model.forward_with(&xt, &b.cond, s0.as_ref())?;
        let loss = weighted_loss(&s, &target, &lambda)?;
        let value = loss.to_scalar::<f32>()? as f64;
        if !value.is_finite() {
            return Err(Error::NonFiniteLoss { step, value });
        }
        let grads = loss.backward()?;
        let (step_size, bc2) = adam.bias_corrections(step);
        for (i, var) in self.vars.iter().enumerate() {
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
        Ok(NamedState {
            params: named(&params)?,
            ema: named(&self.ema)?,
            adam_m: named(&self.m)?,
            adam_v: named(&self.v)?,
        })
    }
}

/// Offsets of one layer in the flat buffer.
#[derive(Debug, Clone, Copy)]
struct LayerSlot {
    w: usize,
    b: usize,
    fan_in: usize,
    fan_out: usize,
}

/// The CPU engine with a hand-written backward (see the [module docs](self)).
#[derive(Debug)]
pub struct CpuEngine {
    cfg: MlpConfig,
    slots: Vec<LayerSlot>,
    theta: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    ema: Vec<f32>,
    pool: Option<rayon::ThreadPool>,
}

/// Reads a contiguous CPU `f32` tensor without copying.
fn with_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle::Storage::Cpu(cpu) => {
            let s = cpu.as_slice::<f32>()?;
            let (a, b) = layout
                .contiguous_offsets()
                .ok_or_else(|| Error::config("CPU engine: non-contiguous tensor"))?;
            Ok(f(&s[a..b]))
        }
        _ => Err(Error::config("the CPU engine needs CPU tensors")),
    }
}

fn flatten(named: &[(String, Tensor)]) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    for (_, t) in named {
        out.extend(t.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(out)
}

impl CpuEngine {
    /// Builds the engine from a state; `threads` (1 or 2) run the two half-batches.
    ///
    /// # Errors
    /// Shape mismatches with `cfg`.
    pub fn new(cfg: &MlpConfig, state: &NamedState, threads: usize) -> Result<Self> {
        let mut slots = Vec::new();
        let mut off = 0;
        for l in 0..=cfg.depth {
            let (fan_in, fan_out) = cfg.layer_shape(l);
            slots.push(LayerSlot {
                w: off,
                b: off + fan_in * fan_out,
                fan_in,
                fan_out,
            });
            off += fan_in * fan_out + fan_out;
        }
        let theta = flatten(&state.params)?;
        if theta.len() != off {
            return Err(Error::config(format!(
                "state has {} parameters, the network {off}",
                theta.len()
            )));
        }
        let pool = if threads > 1 {
            rayon::ThreadPoolBuilder::new().num_threads(2).build().ok()
        } else {
            None
        };
        Ok(Self {
            cfg: *cfg,
            slots,
            m: flatten(&state.adam_m)?,
            v: flatten(&state.adam_v)?,
            ema: flatten(&state.ema)?,
            theta,
            pool,
        })
    }

    fn weight_tensors(&self) -> Result<Vec<Tensor>> {
        self.slots
            .iter()
            .map(|s| {
                Ok(Tensor::from_slice(
                    &self.theta[s.w..s.w + s.fan_in * s.fan_out],
                    (s.fan_out, s.fan_in),
                    &Device::Cpu,
                )?)
            })
            .collect()
    }

    /// Loss and gradient (into `grad`, flat) of rows `rows` of `b`, normalised by `b.n`.
    fn half(
        &self,
        w: &[Tensor],
        b: &Batch,
        rows: std::ops::Range<usize>,
        want_grad: bool,
    ) -> Result<(f64, Vec<f32>)> {
        let (n, d, e) = (rows.len(), b.d, self.cfg.embedding_dim);
        let depth = self.cfg.depth;
        // h0 = [c_in x, emb].
        let mut h0 = Vec::with_capacity(n * (d + e));
        for i in rows.clone() {
            let c = b.cond.c_in[i];
            h0.extend(b.xt[i * d..(i + 1) * d].iter().map(|x| c * x));
            h0.extend_from_slice(&b.cond.emb[i * e..(i + 1) * e]);
        }
        let mut acts = vec![Tensor::from_vec(h0, (n, d + e), &Device::Cpu)?];
        let (mut zs, mut sigs) = (Vec::with_capacity(depth), Vec::with_capacity(depth));
        for (l, wl) in w.iter().enumerate().take(depth) {
            let slot = self.slots[l];
            let zt = acts[l].matmul(&wl.t()?)?;
            let mut z = with_slice(&zt, <[f32]>::to_vec)?;
            let (mut a, mut s) = (vec![0.0f32; z.len()], vec![0.0f32; z.len()]);
            kernels::bias_silu(
                &mut z,
                &self.theta[slot.b..slot.b + slot.fan_out],
                &mut a,
                &mut s,
            );
            acts.push(Tensor::from_vec(a, (n, slot.fan_out), &Device::Cpu)?);
            zs.push(z);
            sigs.push(s);
        }
        // Output layer, score, residual, loss and dℓ/dF.
        let out = self.slots[depth];
        let ft = acts[depth].matmul(&w[depth].t()?)?;
        let bias_out = &self.theta[out.b..out.b + d];
        let inv_n = 1.0 / b.n as f64;
        let mut loss = 0.0f64;
        let mut df = vec![0.0f32; n * d];
        with_slice(&ft, |f| {
            for (r, i) in rows.clone().enumerate() {
                let (cs, co, cc, lam) = (
                    b.cond.c_skip[i],
                    b.cond.c_out[i],
                    b.cond.c_score[i],
                    b.lambda[i],
                );
                let mut r2 = 0.0f64;
                for j in 0..d {
                    let k = i * d + j;
                    let s0 = if cc != 0.0 { cc * b.score0_xt[k] } else { 0.0 };
                    let s = cs * b.xt[k] + co * (f[r * d + j] + bias_out[j]) + s0;
                    let res = s - b.target[k];
                    r2 += (res as f64) * (res as f64);
                    df[r * d + j] = (2.0 * inv_n) as f32 * lam * co * res;
                }
                loss += lam as f64 * r2;
            }
        })?;
        loss *= inv_n;
        let mut grad = Vec::new();
        if !want_grad || !loss.is_finite() {
            return Ok((loss, grad));
        }
        grad = vec![0.0f32; self.theta.len()];
        // Output layer gradients.
        for r in 0..n {
            for j in 0..d {
                grad[out.b + j] += df[r * d + j];
            }
        }
        let dft = Tensor::from_vec(df, (n, d), &Device::Cpu)?;
        let gw = dft.t()?.matmul(&acts[depth])?;
        with_slice(&gw, |g| grad[out.w..out.w + g.len()].copy_from_slice(g))?;
        let mut da = dft.matmul(&w[depth])?;
        for l in (0..depth).rev() {
            let slot = self.slots[l];
            let mut dz = vec![0.0f32; n * slot.fan_out];
            {
                let (_, rest) = grad.split_at_mut(slot.b);
                let db = &mut rest[..slot.fan_out];
                with_slice(&da, |g| {
                    kernels::silu_backward(g, &zs[l], &sigs[l], &mut dz, db)
                })?;
            }
            let dzt = Tensor::from_vec(dz, (n, slot.fan_out), &Device::Cpu)?;
            let gw = dzt.t()?.matmul(&acts[l])?;
            with_slice(&gw, |g| grad[slot.w..slot.w + g.len()].copy_from_slice(g))?;
            if l > 0 {
                da = dzt.matmul(&w[l])?;
            }
        }
        Ok((loss, grad))
    }

    fn halves(&self, b: &Batch, want_grad: bool) -> Result<(f64, Vec<f32>)> {
        let w = self.weight_tensors()?;
        let mid = b.n / 2;
        let (first, second) = match &self.pool {
            Some(pool) if mid > 0 => pool.join(
                || self.half(&w, b, 0..mid, want_grad),
                || self.half(&w, b, mid..b.n, want_grad),
            ),
            _ => (
                self.half(&w, b, 0..mid, want_grad),
                self.half(&w, b, mid..b.n, want_grad),
            ),
        };
        let ((l1, mut g1), (l2, g2)) = (first?, second?);
        if !g2.is_empty() {
            if g1.is_empty() {
                g1 = g2;
            } else {
                for (a, b) in g1.iter_mut().zip(&g2) {
                    *a += b;
                }
            }
        }
        Ok((l1 + l2, g1))
    }

    /// The loss on a batch without updating.
    ///
    /// # Errors
    /// Tensor errors.
    pub fn loss(&self, b: &Batch) -> Result<f64> {
        Ok(self.halves(b, false)?.0)
    }

    /// One Adam step (`step ≥ 1`); returns the loss before the update.
    ///
    /// # Errors
    /// [`Error::NonFiniteLoss`] (nothing updated), tensor errors.
    pub fn step(&mut self, b: &Batch, adam: &AdamConfig, step: u64) -> Result<f64> {
        let (loss, grad) = self.halves(b, true)?;
        if !loss.is_finite() {
            return Err(Error::NonFiniteLoss { step, value: loss });
        }
        adam_ema_update(
            adam,
            step,
            &mut self.theta,
            &grad,
            &mut self.m,
            &mut self.v,
            &mut self.ema,
        );
        Ok(loss)
    }

    /// The state as named host tensors.
    ///
    /// # Errors
    /// Tensor errors.
    pub fn state(&self) -> Result<NamedState> {
        let shapes = self.cfg.parameter_shapes();
        let named = |flat: &[f32]| -> Result<Vec<(String, Tensor)>> {
            let mut off = 0;
            shapes
                .iter()
                .map(|(name, shape)| {
                    let len: usize = shape.iter().product();
                    let t =
                        Tensor::from_slice(&flat[off..off + len], shape.as_slice(), &Device::Cpu)?;
                    off += len;
                    Ok((name.clone(), t))
                })
                .collect()
        };
        Ok(NamedState {
            params: named(&self.theta)?,
            ema: named(&self.ema)?,
            adam_m: named(&self.m)?,
            adam_v: named(&self.v)?,
        })
    }
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
