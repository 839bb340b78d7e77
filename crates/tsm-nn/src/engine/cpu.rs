//! [`CpuEngine`]: the training step on CPU `f32` buffers with a hand-written backward (see
//! the [parent module](super)).

use candle::{Device, Tensor};

use super::pair::Pair;
use super::NamedState;
use crate::kernels::{self, gemm, panel_index, panels_len, Lhs, Rhs};
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
    /// Offsets of `Wᵀ` in the forward buffer and of `W` in the backward one (both in
    /// panels, [`kernels::Rhs::Panels`]).
    fwd: usize,
    bwd: usize,
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
    /// `Wᵀ` (`[fan_in, fan_out]`) of every layer, the right factor of the forward products,
    /// and `W` (`[fan_out, fan_in]`) of every layer above the first, that of the input
    /// gradients, both in panels ([`Rhs::Panels`]) at the layer's `fwd` and `bwd` offsets and
    /// shared by both halves: always those of `theta` (written at construction and right
    /// after every update).
    wt: Vec<f32>,
    wp: Vec<f32>,
    /// Buffers of the two half-batches, kept across steps so that a step allocates nothing.
    scratch: Box<[Scratch; 2]>,
    /// The same for [`CpuEngine::loss`], which takes `&self` (a second, concurrent call
    /// gets fresh buffers).
    eval_scratch: std::sync::Mutex<Box<[Scratch; 2]>>,
    /// The helper thread that runs the second half of each fork (`None`: one thread).
    pair: Option<Pair>,
}

/// One half-batch's activations and gradients.
#[derive(Debug, Default)]
struct Scratch {
    /// The network input `[c_in x, (c − μ)/s, emb]`, `[n, fan_in₀]`.
    h0: Vec<f32>,
    /// Per hidden layer: `σ(z)` and the activation `z σ(z)` of the pre-activation `z`,
    /// `[n, h]` (the backward pass needs no more: `SiLU'(z) = σ + zσ(1 − σ)`).
    sig: Vec<Vec<f32>>,
    act: Vec<Vec<f32>>,
    /// The output layer's product (before bias) and `dℓ/dF`, `[n, d]`.
    f: Vec<f32>,
    df: Vec<f32>,
    /// `dℓ/dz` of the layer being back-propagated and of the layer below it (the two swap
    /// as the backward pass goes down), `[n, h]`.
    dz: Vec<f32>,
    dz_below: Vec<f32>,
    /// The flat gradient of this half.
    grad: Vec<f32>,
}

/// What a half-batch reads: the layout and the parameters.
#[derive(Clone, Copy)]
struct Net<'a> {
    cfg: &'a MlpConfig,
    slots: &'a [LayerSlot],
    theta: &'a [f32],
    wt: &'a [f32],
    wp: &'a [f32],
}

fn flatten(named: &[(String, Tensor)]) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    for (_, t) in named {
        out.extend(t.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(out)
}

/// Writes `Wᵀ` of every layer of `theta` into `wt` in panels, in 16 × 16 blocks so that both
/// the reads and the writes stay within a few cache lines (the panels' padding is left at 0).
fn pack_forward(slots: &[LayerSlot], theta: &[f32], wt: &mut [f32]) {
    const B: usize = 16;
    for s in slots {
        let w = &theta[s.w..s.w + s.fan_in * s.fan_out];
        let t = &mut wt[s.fwd..s.fwd + panels_len(s.fan_in, s.fan_out)];
        for o0 in (0..s.fan_out).step_by(B) {
            for k0 in (0..s.fan_in).step_by(B) {
                for o in o0..(o0 + B).min(s.fan_out) {
                    for k in k0..(k0 + B).min(s.fan_in) {
                        t[panel_index(s.fan_in, k, o)] = w[o * s.fan_in + k];
                    }
                }
            }
        }
    }
}

/// Writes `W` of every layer above the first into `wp` in panels (rows of `W` are copied in
/// runs of a panel's width).
fn pack_backward(slots: &[LayerSlot], theta: &[f32], wp: &mut [f32]) {
    for s in slots.iter().skip(1) {
        let w = &theta[s.w..s.w + s.fan_in * s.fan_out];
        let t = &mut wp[s.bwd..s.bwd + panels_len(s.fan_out, s.fan_in)];
        for (o, row) in w.chunks_exact(s.fan_in).enumerate() {
            for (q, run) in row.chunks(kernels::PANEL).enumerate() {
                let at = panel_index(s.fan_out, o, q * kernels::PANEL);
                t[at..at + run.len()].copy_from_slice(run);
            }
        }
    }
}

/// Runs `a` and `b` on the two threads of `pair`, or one after the other without one.
fn fork(pair: Option<&Pair>, a: impl FnOnce(), b: impl FnOnce() + Send) {
    match pair {
        Some(pair) => {
            pair.join(a, b);
        }
        None => {
            a();
            b();
        }
    }
}

/// One thread's share of the update: the parameters `offset..offset + theta.len()` of the
/// flat buffers, whose network part ends at `end` (a `mix_learned` run's coefficients follow).
struct Update<'a> {
    offset: usize,
    end: usize,
    theta: &'a mut [f32],
    /// The first half-batch's gradient, to which the second's (`other`) is added.
    grad: &'a mut [f32],
    other: &'a [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
    ema: &'a mut [f32],
}

impl Update<'_> {
    /// Sums the halves' gradients, then Adam + EMA: the network at `adam`'s rate, a
    /// `mix_learned` run's coefficients at their own (`LearnedWeight::LR_GAIN`).
    fn run(&mut self, adam: &AdamConfig, step: u64) {
        for (a, b) in self.grad.iter_mut().zip(self.other) {
            *a += b;
        }
        let fast = AdamConfig {
            lr: adam.lr * LearnedWeight::LR_GAIN,
            ..*adam
        };
        let len = self.theta.len();
        let split = self.end.clamp(self.offset, self.offset + len) - self.offset;
        for (part, cfg) in [(0..split, adam), (split..len, &fast)] {
            adam_ema_update(
                cfg,
                step,
                &mut self.theta[part.clone()],
                &self.grad[part.clone()],
                &mut self.m[part.clone()],
                &mut self.v[part.clone()],
                &mut self.ema[part],
            );
        }
    }
}

/// `dℓ/dz` of hidden layer `l` into `dz`, and its bias gradient into `grad`, from
/// `upstream`, `dℓ/dz` of the layer above (`dℓ/dF` for the output layer):
/// `dz = (upstream·W_above) ⊙ SiLU'(z_l)`, `db_l = Σ_rows dz`, in one pass over the product.
fn backward_into(
    net: Net<'_>,
    l: usize,
    upstream: &[f32],
    act: &[Vec<f32>],
    sig: &[Vec<f32>],
    dz: &mut Vec<f32>,
    grad: &mut [f32],
) {
    let (below, above) = (net.slots[l], net.slots[l + 1]);
    let n = upstream.len() / above.fan_out;
    fit(dz, n * below.fan_out);
    let db = &mut grad[below.b..below.b + below.fan_out];
    db.fill(0.0);
    kernels::gemm_silu_backward(
        n,
        below.fan_out,
        above.fan_out,
        rows(upstream, above.fan_out),
        Rhs::Panels(&net.wp[above.bwd..]),
        &act[l],
        &sig[l],
        dz,
        db,
        below.fan_out,
    );
}

/// Resizes `v` to `len` (reusing its allocation; the contents are overwritten by the caller).
fn fit(v: &mut Vec<f32>, len: usize) {
    v.resize(len, 0.0);
}

/// `row-major [n, cols]` as the left factor of a product.
fn rows(data: &[f32], cols: usize) -> Lhs<'_> {
    Lhs {
        data,
        row: cols,
        col: 1,
    }
}

/// `[n, cols]` read transposed (`[cols, n]`) as the left factor of a product.
fn columns(data: &[f32], cols: usize) -> Lhs<'_> {
    Lhs {
        data,
        row: 1,
        col: cols,
    }
}

impl CpuEngine {
    /// Builds the engine from a state for `threads` threads (0: the machine's
    /// [`available_parallelism`](std::thread::available_parallelism)). With two or more, a
    /// helper thread runs the second half-batch and half of the update beside the caller
    /// (the step has two halves, so more threads would idle); with 1, the caller runs it all.
    /// The results are the same bits whatever `threads` (see the [parent module](super)).
    ///
    /// # Errors
    /// Shape mismatches with `cfg`.
    pub fn new(cfg: &MlpConfig, state: &NamedState, threads: usize) -> Result<Self> {
        let mut slots = Vec::new();
        let (mut off, mut fwd, mut bwd) = (0, 0, 0);
        for l in 0..=cfg.depth {
            let (fan_in, fan_out) = cfg.layer_shape(l);
            slots.push(LayerSlot {
                w: off,
                b: off + fan_in * fan_out,
                fan_in,
                fan_out,
                fwd,
                bwd,
            });
            off += fan_in * fan_out + fan_out;
            fwd += panels_len(fan_in, fan_out);
            // The first layer's input gradient is never needed.
            if l > 0 {
                bwd += panels_len(fan_out, fan_in);
            }
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
        // A helper that cannot be started leaves everything on the caller: the same bits.
        let pair = if threads > 1 { Pair::new() } else { None };
        let (m, v, ema) = (
            flatten(&state.adam_m)?,
            flatten(&state.adam_v)?,
            flatten(&state.ema)?,
        );
        if [m.len(), v.len(), ema.len()] != [theta.len(); 3] {
            return Err(Error::config(format!(
                "state has {} parameters but {}, {} and {} Adam moments and EMA weights",
                theta.len(),
                m.len(),
                v.len(),
                ema.len()
            )));
        }
        let (mut wt, mut wp) = (vec![0.0; fwd], vec![0.0; bwd]);
        pack_forward(&slots, &theta, &mut wt);
        pack_backward(&slots, &theta, &mut wp);
        Ok(Self {
            cfg: *cfg,
            slots,
            m,
            v,
            ema,
            theta,
            wt,
            wp,
            scratch: Default::default(),
            eval_scratch: Default::default(),
            pair,
        })
    }

    /// Loss and gradient (into `ws.grad`, flat) of rows `range` of `b`, normalised by `b.n`.
    fn half(
        net: Net<'_>,
        ws: &mut Scratch,
        b: &Batch,
        range: std::ops::Range<usize>,
        want_grad: bool,
    ) -> Result<f64> {
        let (n, d, e) = (range.len(), b.d, net.cfg.embedding_dim);
        let k = net.cfg.condition_dim;
        let depth = net.cfg.depth;
        if b.cond.condition.len() != b.n * k {
            return Err(Error::config(format!(
                "CPU engine: {} condition values for a batch of {} and condition width {k}",
                b.cond.condition.len(),
                b.n
            )));
        }
        // h0 = [c_in x, (c − μ)/s, emb] (the middle block only for a conditional model).
        ws.h0.clear();
        for i in range.clone() {
            let c = b.cond.c_in[i];
            ws.h0.extend(b.xt[i * d..(i + 1) * d].iter().map(|x| c * x));
            ws.h0
                .extend_from_slice(&b.cond.condition[i * k..(i + 1) * k]);
            ws.h0.extend_from_slice(&b.cond.emb[i * e..(i + 1) * e]);
        }
        ws.sig.resize_with(depth, Vec::new);
        ws.act.resize_with(depth, Vec::new);
        for l in 0..depth {
            let s = net.slots[l];
            let (done, rest) = ws.act.split_at_mut(l);
            let input = if l == 0 { &ws.h0 } else { &done[l - 1] };
            let (sig, act) = (&mut ws.sig[l], &mut rest[0]);
            fit(sig, n * s.fan_out);
            fit(act, n * s.fan_out);
            kernels::gemm_bias_silu(
                n,
                s.fan_out,
                s.fan_in,
                rows(input, s.fan_in),
                Rhs::Panels(&net.wt[s.fwd..]),
                &net.theta[s.b..s.b + s.fan_out],
                sig,
                act,
                s.fan_out,
            );
        }
        // Output layer, score, residual, loss and dℓ/dF.
        let out = net.slots[depth];
        let last = if depth == 0 {
            &ws.h0
        } else {
            &ws.act[depth - 1]
        };
        fit(&mut ws.f, n * d);
        gemm(
            n,
            d,
            out.fan_in,
            rows(last, out.fan_in),
            Rhs::Panels(&net.wt[out.fwd..]),
            &mut ws.f,
            d,
        );
        let bias_out = &net.theta[out.b..out.b + d];
        let inv_n = 1.0 / b.n as f64;
        let mut loss = 0.0f64;
        fit(&mut ws.df, n * d);
        let (f, df) = (&ws.f, &mut ws.df);
        // mix_learned: regress on y = B + w(A − B); dc accumulates the coefficients' gradient
        // ∂ℓ/∂c = −(2/n) Σᵢ λᵢ ⟨sᵢ − yᵢ, Aᵢ − Bᵢ⟩ wᵢ(1 − wᵢ) φᵢ (crate::sbi::LearnedWeight).
        let c = &net.theta[out.b + d..];
        let mix = learned_mix(b, c)?;
        let mut dc = [0.0f64; LearnedWeight::FEATURES];
        for (r, i) in range.clone().enumerate() {
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
        loss *= inv_n;
        if !want_grad || !loss.is_finite() {
            return Ok(loss);
        }
        fit(&mut ws.grad, net.theta.len());
        let grad = &mut ws.grad;
        for (g, v) in grad[out.b + d..].iter_mut().zip(&dc) {
            *g = *v as f32;
        }
        // The output layer's bias: db = Σ_rows dF.
        for j in 0..d {
            grad[out.b + j] = ws.df.iter().skip(j).step_by(d).sum();
        }
        // From the output layer down: dW = (dℓ/dz)ᵀ·input, and (above the first layer) the
        // layer below's dz = (dz·W) ⊙ SiLU'(z) with its db; the output layer's dℓ/dz is dF.
        for l in (0..=depth).rev() {
            let s = net.slots[l];
            let input = if l == 0 { &ws.h0 } else { &ws.act[l - 1] };
            let upstream = if l == depth { &ws.df } else { &ws.dz };
            gemm(
                s.fan_out,
                s.fan_in,
                n,
                columns(upstream, s.fan_out),
                Rhs::Rows {
                    data: input,
                    ld: s.fan_in,
                },
                &mut grad[s.w..],
                s.fan_in,
            );
            if l > 0 {
                backward_into(
                    net,
                    l - 1,
                    upstream,
                    &ws.act,
                    &ws.sig,
                    &mut ws.dz_below,
                    grad,
                );
                std::mem::swap(&mut ws.dz, &mut ws.dz_below);
            }
        }
        Ok(loss)
    }

    /// Loss of both half-batches of `b`, and (with `want_grad`) their gradients in each
    /// half's `grad`, which the update sums.
    fn halves(
        net: Net<'_>,
        scratch: &mut [Scratch; 2],
        pair: Option<&Pair>,
        b: &Batch,
        want_grad: bool,
    ) -> Result<f64> {
        let mid = b.n / 2;
        let [first, second] = scratch;
        let (l1, l2) = match pair {
            Some(pair) if mid > 0 => pair.join(
                || Self::half(net, first, b, 0..mid, want_grad),
                || Self::half(net, second, b, mid..b.n, want_grad),
            ),
            _ => (
                Self::half(net, first, b, 0..mid, want_grad),
                Self::half(net, second, b, mid..b.n, want_grad),
            ),
        };
        Ok(l1? + l2?)
    }

    /// The loss on a batch without updating.
    ///
    /// # Errors
    /// Tensor errors.
    pub fn loss(&self, b: &Batch) -> Result<f64> {
        let net = Net {
            cfg: &self.cfg,
            slots: &self.slots,
            theta: &self.theta,
            wt: &self.wt,
            wp: &self.wp,
        };
        match self.eval_scratch.try_lock() {
            Ok(mut scratch) => Self::halves(net, &mut scratch, self.pair.as_ref(), b, false),
            Err(_) => Self::halves(net, &mut Default::default(), self.pair.as_ref(), b, false),
        }
    }

    /// One Adam step (`step ≥ 1`); returns the loss before the update.
    ///
    /// # Errors
    /// [`Error::NonFiniteLoss`] (nothing updated), tensor errors.
    pub fn step(&mut self, b: &Batch, adam: &AdamConfig, step: u64) -> Result<f64> {
        let loss = self.gradient(b, step)?;
        // Both threads update half of the parameters (the update is elementwise, so the
        // split changes no bit), then one packs the new `Wᵀ` for the next step's forward
        // products and the other the new `W` for its input gradients.
        let mid = self.theta.len() / 2;
        let [first, second] = &mut *self.scratch;
        let (g1, g2) = first.grad.split_at_mut(mid);
        let (t1, t2) = self.theta.split_at_mut(mid);
        let (m1, m2) = self.m.split_at_mut(mid);
        let (v1, v2) = self.v.split_at_mut(mid);
        let (e1, e2) = self.ema.split_at_mut(mid);
        let (h1, h2) = second.grad.split_at(mid);
        let end = self.slots.last().map_or(0, |s| s.b + s.fan_out);
        let mut lower = Update {
            offset: 0,
            end,
            theta: t1,
            grad: g1,
            other: h1,
            m: m1,
            v: v1,
            ema: e1,
        };
        let mut upper = Update {
            offset: mid,
            end,
            theta: t2,
            grad: g2,
            other: h2,
            m: m2,
            v: v2,
            ema: e2,
        };
        let (slots, pair) = (&self.slots, self.pair.as_ref());
        fork(pair, || lower.run(adam, step), || upper.run(adam, step));
        let (theta, wt, wp) = (&self.theta, &mut self.wt, &mut self.wp);
        fork(
            pair,
            || pack_forward(slots, theta, wt),
            || pack_backward(slots, theta, wp),
        );
        Ok(loss)
    }

    /// [`step`](Self::step), with `meanwhile(loss)` run on the calling thread while the
    /// helper thread applies the whole update (Adam + EMA, then packing the weights): the
    /// trainer reports the step and draws the next batch there, so that the two serial parts
    /// of a step overlap. The same bits as `step`. `meanwhile` runs once the loss is known
    /// to be finite (without a helper thread, after the update); returns the loss and
    /// `meanwhile`'s result.
    ///
    /// # Errors
    /// As [`step`](Self::step); `meanwhile` has not run then.
    pub fn step_and<R>(
        &mut self,
        b: &Batch,
        adam: &AdamConfig,
        step: u64,
        meanwhile: impl FnOnce(f64) -> R,
    ) -> Result<(f64, R)> {
        let loss = self.gradient(b, step)?;
        let [first, second] = &mut *self.scratch;
        let all = Update {
            offset: 0,
            end: self.slots.last().map_or(0, |s| s.b + s.fan_out),
            theta: &mut self.theta,
            grad: &mut first.grad,
            other: &second.grad,
            m: &mut self.m,
            v: &mut self.v,
            ema: &mut self.ema,
        };
        let (slots, wt, wp) = (&self.slots, &mut self.wt, &mut self.wp);
        let apply = move || {
            let mut all = all;
            all.run(adam, step);
            pack_forward(slots, all.theta, wt);
            pack_backward(slots, all.theta, wp);
        };
        let out = match &self.pair {
            Some(pair) => pair.join(|| meanwhile(loss), apply).0,
            None => {
                apply();
                meanwhile(loss)
            }
        };
        Ok((loss, out))
    }

    /// The loss of `b` and the gradients of its two halves (in `scratch[0].grad` and
    /// `scratch[1].grad`, which the update sums); [`Error::NonFiniteLoss`] naming `step` for a
    /// non-finite loss.
    fn gradient(&mut self, b: &Batch, step: u64) -> Result<f64> {
        let net = Net {
            cfg: &self.cfg,
            slots: &self.slots,
            theta: &self.theta,
            wt: &self.wt,
            wp: &self.wp,
        };
        let loss = Self::halves(net, &mut self.scratch, self.pair.as_ref(), b, true)?;
        if !loss.is_finite() {
            return Err(Error::NonFiniteLoss { step, value: loss });
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

    /// The flat parameters, EMA and moments of `steps` Adam steps on the same batches with
    /// `threads` threads.
    fn train(threads: usize, steps: u64) -> Vec<u32> {
        train_with(threads, steps, false)
    }

    /// As [`train`], through [`CpuEngine::step_and`] (the update on the helper thread while
    /// the caller runs a closure) when `overlapped`.
    fn train_with(threads: usize, steps: u64, overlapped: bool) -> Vec<u32> {
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
            if overlapped {
                let (_, seen) = engine
                    .step_and(&batch, &AdamConfig::default(), step, |loss| loss)
                    .expect("step");
                assert!(seen.is_finite());
            } else {
                engine
                    .step(&batch, &AdamConfig::default(), step)
                    .expect("step");
            }
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
    fn the_overlapped_update_gives_the_bits_of_the_split_one() {
        for threads in [1, 2] {
            assert!(
                train_with(threads, 3, true) == train(1, 3),
                "step_and with {threads} threads differs from step"
            );
        }
    }

    #[test]
    fn the_bits_do_not_depend_on_the_vector_path() {
        // Whole steps (products, fused epilogues, embedding, update) with each path this CPU
        // has forced in turn, against the portable one.
        use crate::kernels::{vector_path, with_vector_cap, VectorPath};
        let portable = with_vector_cap(VectorPath::Portable, || train(2, 3));
        for path in [VectorPath::Avx2Fma, VectorPath::Avx512] {
            if path > with_vector_cap(VectorPath::Avx512, vector_path) {
                continue;
            }
            assert!(
                with_vector_cap(path, || train(2, 3)) == portable,
                "{path:?} differs from the portable path"
            );
        }
    }

    #[test]
    fn the_bits_do_not_depend_on_the_thread_count() {
        // 1 thread runs both halves and the whole update on the caller; 2, 3 and the
        // machine's count (0) split them with the helper thread: the same bits.
        let one = train(1, 3);
        for threads in [2, 3, 0] {
            assert!(train(threads, 3) == one, "{threads} threads differ from 1");
        }
    }
}
