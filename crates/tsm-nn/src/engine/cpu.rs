//! [`CpuEngine`]: the training step on CPU `f32` buffers with a hand-written backward (see
//! the [parent module](super)).

use candle::{Device, Tensor};

use super::NamedState;
use crate::kernels;
use crate::loss::{Batch, MixTargets};
use crate::network::MlpConfig;
use crate::optim::{adam_ema_update, AdamConfig};
use crate::sbi::LearnedWeight;
use crate::{Error, Result};

/// The learned-weight MIX part of `b` (`mix_learned`, [`LearnedWeight`]), checked against
/// the coefficients `c` that the state holds after the network (empty for other runs).
fn learned_mix<'a>(b: &'a Batch, c: &[f32]) -> Result<Option<&'a MixTargets>> {
    match (&b.mix, c.is_empty()) {
        (None, true) => Ok(None),
        (Some(m), false) => {
            m.check(b.n, b.d, c.len())?;
            Ok(Some(m))
        }
        _ => Err(Error::config(
            "a learned-weight MIX batch needs a state with a learned weight, and such a state \
             needs its batches",
        )),
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

/// The CPU engine with a hand-written backward (see the [engine module](crate::engine)).
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
    /// Builds the engine from a state, with a pool of `threads` threads (0: the machine's
    /// [`available_parallelism`](std::thread::available_parallelism); 1: no pool) that runs
    /// the two half-batches side by side and their matrix products. The results are the same
    /// bits whatever `threads` (see the [parent module](super)).
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
        // A mix_learned state ends with the learned weight's coefficients.
        let learned = (state.params.last()).is_some_and(|(n, _)| n == LearnedWeight::PARAMETER);
        if theta.len() != off + if learned { LearnedWeight::FEATURES } else { 0 } {
            return Err(Error::config(format!(
                "state has {} parameters, the network {off}",
                theta.len()
            )));
        }
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            n => n,
        };
        // A pool that cannot be built leaves the halves on the caller's thread: the same bits.
        let pool = if threads > 1 {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .ok()
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
        let k = self.cfg.condition_dim;
        let depth = self.cfg.depth;
        if b.cond.condition.len() != b.n * k {
            return Err(Error::config(format!(
                "CPU engine: {} condition values for a batch of {} and condition width {k}",
                b.cond.condition.len(),
                b.n
            )));
        }
        // h0 = [c_in x, (c − μ)/s, emb] (the middle block only for a conditional model).
        let mut h0 = Vec::with_capacity(n * (d + k + e));
        for i in rows.clone() {
            let c = b.cond.c_in[i];
            h0.extend(b.xt[i * d..(i + 1) * d].iter().map(|x| c * x));
            h0.extend_from_slice(&b.cond.condition[i * k..(i + 1) * k]);
            h0.extend_from_slice(&b.cond.emb[i * e..(i + 1) * e]);
        }
        let mut acts = vec![Tensor::from_vec(h0, (n, d + k + e), &Device::Cpu)?];
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
        // mix_learned: regress on y = B + w(A − B); dc accumulates the coefficients' gradient
        // ∂ℓ/∂c = −(2/n) Σᵢ λᵢ ⟨sᵢ − yᵢ, Aᵢ − Bᵢ⟩ wᵢ(1 − wᵢ) φᵢ (crate::sbi::LearnedWeight).
        let c = &self.theta[out.b + d..];
        let mix = learned_mix(b, c)?;
        let mut dc = [0.0f64; LearnedWeight::FEATURES];
        with_slice(&ft, |f| {
            for (r, i) in rows.clone().enumerate() {
                let (cs, co, cc, lam) = (
                    b.cond.c_skip[i],
                    b.cond.c_out[i],
                    b.cond.c_score[i],
                    b.lambda[i],
                );
                let w = mix.map_or(0.0, |m| m.weight(i, c));
                let (mut r2, mut dw) = (0.0f64, 0.0f64);
                for j in 0..d {
                    let k = i * d + j;
                    let s0 = if cc != 0.0 { cc * b.score0_xt[k] } else { 0.0 };
                    let s = cs * b.xt[k] + co * (f[r * d + j] + bias_out[j]) + s0;
                    let res = s - mix.map_or(b.target[k], |m| m.target(k, w));
                    if let Some(m) = mix {
                        dw += res as f64 * (m.dsm[k] - m.ltsm[k]) as f64;
                    }
                    r2 += (res as f64) * (res as f64);
                    df[r * d + j] = (2.0 * inv_n) as f32 * lam * co * res;
                }
                loss += lam as f64 * r2;
                if let Some(m) = mix {
                    let gw = -2.0 * inv_n * lam as f64 * dw * (w * (1.0 - w)) as f64;
                    let phi = &m.features[i * c.len()..(i + 1) * c.len()];
                    for (g, f) in dc.iter_mut().zip(phi) {
                        *g += gw * *f as f64;
                    }
                }
            }
        })?;
        loss *= inv_n;
        let mut grad = Vec::new();
        if !want_grad || !loss.is_finite() {
            return Ok((loss, grad));
        }
        grad = vec![0.0f32; self.theta.len()];
        for (g, v) in grad[out.b + d..].iter_mut().zip(&dc) {
            *g = *v as f32;
        }
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
        // The network, then a mix_learned run's coefficients at their own learning rate
        // (LearnedWeight::LR_GAIN); the update is elementwise, so the split changes no bit.
        let end = self.slots.last().map_or(0, |s| s.b + s.fan_out);
        let fast = AdamConfig {
            lr: adam.lr * LearnedWeight::LR_GAIN,
            ..*adam
        };
        for (part, cfg) in [(0..end, adam), (end..self.theta.len(), &fast)] {
            adam_ema_update(
                cfg,
                step,
                &mut self.theta[part.clone()],
                &grad[part.clone()],
                &mut self.m[part.clone()],
                &mut self.v[part.clone()],
                &mut self.ema[part],
            );
        }
        Ok(loss)
    }

    /// The state as named host tensors.
    ///
    /// # Errors
    /// Tensor errors.
    pub fn state(&self) -> Result<NamedState> {
        let mut shapes = self.cfg.parameter_shapes();
        if self.theta.len() > self.slots.last().map_or(0, |s| s.b + s.fan_out) {
            shapes.push((
                LearnedWeight::PARAMETER.to_owned(),
                vec![LearnedWeight::FEATURES],
            ));
        }
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
        Ok(NamedState::from_parts(
            named(&self.theta)?,
            named(&self.ema)?,
            named(&self.m)?,
            named(&self.v)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use tsm_core::identity::ScoreIdentity;
    use tsm_core::weighting::Weighting;
    use tsm_targets::named;

    use super::*;
    use crate::loss::{BatchSampler, LossConfig};
    use crate::network::{init_parameters, ModelConfig};

    /// The flat parameters, EMA and moments of `steps` Adam steps on the same batches with a
    /// pool of `threads` threads.
    fn train(threads: usize, steps: u64) -> Vec<u32> {
        let target = named::eight_modes();
        let model = ModelConfig {
            mlp: MlpConfig {
                hidden: 24,
                embedding_dim: 8,
                ..MlpConfig::default()
            },
            ..ModelConfig::default()
        };
        let loss =
            LossConfig::for_mixture(ScoreIdentity::Tsi, Weighting::Uniform, &target).expect("loss");
        let sampler = BatchSampler::new(&target, &loss, &model).expect("sampler");
        let params = init_parameters(&model.mlp, 3, &Device::Cpu).expect("init");
        let state = NamedState::fresh(params).expect("state");
        let mut engine = CpuEngine::new(&model.mlp, &state, threads).expect("engine");
        let mut rng = tsm_core::rng::stream(9, 0);
        for step in 1..=steps {
            // An odd batch: the halves have different sizes.
            let batch = sampler.sample(&mut rng, 77, None).expect("batch");
            engine
                .step(&batch, &AdamConfig::default(), step)
                .expect("step");
        }
        let state = engine.state().expect("state");
        [state.params(), state.ema(), state.adam_m(), state.adam_v()]
            .into_iter()
            .flatten()
            .flat_map(|(_, t)| {
                t.flatten_all()
                    .and_then(|t| t.to_vec1::<f32>())
                    .expect("f32")
            })
            .map(f32::to_bits)
            .collect()
    }

    #[test]
    fn the_bits_do_not_depend_on_the_thread_count() {
        // Before, the pool had 2 threads whatever the caller asked; now it has the caller's
        // count (0: the machine's), and 1, 2, 3 and the machine's give the same bits.
        let one = train(1, 3);
        for threads in [2, 3, 0] {
            assert!(train(threads, 3) == one, "{threads} threads differ from 1");
        }
    }
}
