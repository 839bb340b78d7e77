//! Implicit and sliced score matching: losses that need no regression target, only the
//! score model and its Jacobian in `x`.
//!
//! # The losses
//! **Implicit score matching** (Hyvärinen, 2005, Thm. 1) at noise level `t`, on the noised data
//! `x_t = α_t x_0 + σ_t ε`:
//!
//! ```text
//! J_t(θ) = E_{x_t} [ ‖s_θ(x_t, t)‖² + 2 tr ∇ₓs_θ(x_t, t) ]
//!        = E ‖s_θ(x_t, t) − ∇log p_t(x_t)‖² − E ‖∇log p_t(x_t)‖²      (integration by parts)
//! ```
//!
//! (twice Hyvärinen's `½‖s‖² + tr ∇s`, so that it is on the scale of this crate's regression
//! losses `‖s − L‖²`). Applied to `x_t ~ p_t` rather than to the clean data, its minimiser
//! at each `t` is `∇log p_t`, which is what a time-conditional model must learn; averaged
//! over `t ~ U[t_min, t_max]` with the weighting `λ_t` it has the same minimiser as the
//! DSM loss of [`crate::loss`].
//!
//! **The constant.** With DSM's target `L = (α_t x_0 − x_t)/σ_t² = −ε/σ_t`,
//! `E‖s − L‖² = E‖s‖² − 2E⟨s, L⟩ + E‖L‖²`; `E[L | x_t] = ∇log p_t(x_t)` (Vincent, 2011) and
//! `E⟨s, ∇log p_t⟩ = −E tr ∇s` (integration by parts), so for **every** model `s` and every
//! data distribution
//!
//! ```text
//! E_{x_0, ε} λ_t ‖s − L‖²  −  λ_t J_t(θ)  =  λ_t E‖ε‖²/σ_t²  =  λ_t d / σ_t².
//! ```
//!
//! The trainer's reported ISM/SSM loss adds this θ-free constant, `(1/n) Σᵢ λᵢ d/σ_{tᵢ}²`, to
//! the batch: it does not change a gradient, makes the number estimate the same quantity as
//! the DSM loss (comparable in `loss.csv`), and keeps it positive in expectation, which the
//! trainer's divergence monitor (a geometric mean) needs.
//!
//! **The trace.** `tr ∇ₓs = Σⱼ eⱼᵀ (∇ₓs) eⱼ` exactly (`d` Jacobian–vector products, for small
//! `d`), or Hutchinson's (1989) estimator `(1/K) Σₖ vₖᵀ (∇ₓs) vₖ` with `E[v vᵀ] = I`:
//! Rademacher probes (`ism=K`, the smaller variance, `2 Σ_{i≠j} J_ij²` per probe, for a
//! symmetric part) or Gaussian ones.
//!
//! **Sliced score matching**, variance-reduced (Song et al., 2019, eq. 8 and §3.2, "SSM-VR"):
//! `E_v [vᵀ (∇ₓs) v + ½ ‖s‖²]` with Gaussian `v`, in which `½ (vᵀs)²` is replaced by its
//! expectation `½‖s‖²`. Written on our scale it is `‖s‖² + 2 vᵀ(∇ₓs)v`: ISM with Hutchinson's
//! estimator on Gaussian probes (`ssm=K`).
//!
//! **Finite-difference SSM** (Pang et al., 2020, eq. 7): the directional derivative replaced by
//! `vᵀ (s(x + εv) − s(x − εv)) / (2ε)`, which costs two more forward passes and no
//! forward-mode pass (`fdssm=K`, Gaussian `v`, `ε =` [`FD_EPSILON`]).
//!
//! # How the Jacobian–vector products are computed
//! candle's autodiff is first order (no gradient of a gradient), so `(∇ₓs) v` is propagated
//! **forward** through the network's own layers as ordinary tensor operations ([`jvp`]), and the
//! ordinary backward pass then differentiates that graph in `θ` — exactly. With
//! `s = c_skip x + c_out F([c_in x, c, emb(t)])` ([`crate::precond`]):
//!
//! ```text
//! ḣ_0 = [c_in v, 0, 0]                      (the condition and time embedding do not move with x)
//! ż_ℓ = W_ℓ ḣ_{ℓ−1},  ḣ_ℓ = silu'(z_ℓ) ⊙ ż_ℓ,   silu'(z) = σ(z) (1 + z (1 − σ(z)))
//! ṡ   = c_skip v + c_out Ḟ
//! ```
//!
//! so the skip term and the input and output scales of a preconditioned or ε model are part
//! of the derivative. The `target_scaled` parameterisation (`c_score ∇log p_0(x)`) would need
//! the target's Hessian and is refused. `K` probes run as one batch of `K n` tangent rows.
//!
//! **Engines.** ISM and SSM run on the candle autograd engine only; the fast CPU engine's
//! hand-written backward would need a second hand-written pass (through the tangents), which
//! is not built. `cargo xtask train --loss ism|ssm` selects the autograd engine itself.
//!
//! # References
//! - Hyvärinen (2005), *Estimation of non-normalized statistical models by score matching*,
//!   JMLR 6, Thm. 1 (eq. 4).
//! - Vincent (2011), *A connection between score matching and denoising autoencoders*, eq. 11.
//! - Hutchinson (1989), *A stochastic estimator of the trace of the influence matrix*.
//! - Song, Garg, Shi, Ermon (2019), *Sliced score matching*, eqs. 7–8 (SSM-VR).
//! - Pang, Xu, Li, Song, Ermon, Zhu (2020), *Efficient learning of generative models via
//!   finite-difference score matching*, eq. 7.

use std::fmt;
use std::str::FromStr;

use candle::{Module, Tensor};
use rand::Rng;
use rand_distr::StandardNormal;
use tsm_core::choice::{unknown, Choice};
use tsm_core::identity::ScoreIdentity;
use tsm_core::schedule::Schedule;

use crate::network::{Conditioning, ScoreModel};
use crate::{Error, Result, TrainConfig};

/// The step `ε` of finite-difference SSM (on Gaussian probes of norm `≈ √d`): small enough
/// that the `O(ε²)` truncation error is far below the Monte Carlo noise of one probe, large
/// enough that `f32` rounding (`≈ 10⁻⁷ |s| / ε`) is too.
pub const FD_EPSILON: f64 = 1e-2;

/// The most probes per point (the tangent batch is `K n` rows).
pub const MAX_PROBES: usize = 1024;

/// A loss built from the model's Jacobian rather than a regression target (see the
/// [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImplicitLoss {
    /// ISM with the exact trace (`d` Jacobian–vector products).
    Ism,
    /// ISM with Hutchinson's trace estimator on `probes` Rademacher probes.
    IsmHutchinson {
        /// Probes per point.
        probes: usize,
    },
    /// Sliced score matching, variance-reduced, on `probes` Gaussian probes.
    Ssm {
        /// Probes per point.
        probes: usize,
    },
    /// Finite-difference SSM (Pang et al., 2020) on `probes` Gaussian probes.
    FdSsm {
        /// Probes per point.
        probes: usize,
    },
}

/// The distribution of a probe `v` (`E[v vᵀ] = I` for both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `±1` with probability ½ each.
    Rademacher,
    /// Standard normal.
    Gaussian,
}

impl ImplicitLoss {
    /// The probes per point and their kind (`None` for the exact trace).
    pub fn probes(&self) -> Option<(usize, Probe)> {
        match *self {
            Self::Ism => None,
            Self::IsmHutchinson { probes } => Some((probes, Probe::Rademacher)),
            Self::Ssm { probes } | Self::FdSsm { probes } => Some((probes, Probe::Gaussian)),
        }
    }

    /// Checks the number of probes (1 to [`MAX_PROBES`]).
    ///
    /// # Errors
    /// [`Error::Invalid`] for the field `loss.probes`.
    pub fn validate(&self) -> Result<()> {
        match self.probes() {
            Some((k, _)) if !(1..=MAX_PROBES).contains(&k) => Err(Error::invalid(
                "loss.probes",
                k,
                format!("in [1, {MAX_PROBES}]"),
            )),
            _ => Ok(()),
        }
    }
}

/// The loss a training run minimises: a regression on a [`ScoreIdentity`]'s target (DSM, TSM,
/// `κ`, `κ̄`, …) or an [`ImplicitLoss`] (ISM, SSM).
///
/// As a [`Choice`] (kind `loss`) it parses every [`ScoreIdentity`] name and `ism` (exact
/// trace), `ism=hutchinson` (one Rademacher probe), `ism=K` (`K` Rademacher probes), `ssm`,
/// `ssm=K` (Gaussian probes, variance-reduced), `fdssm`, `fdssm=K` (finite differences).
///
/// ```
/// use tsm_nn::implicit::{ImplicitLoss, TrainLoss};
/// assert_eq!("ism=hutchinson".parse::<TrainLoss>()?, TrainLoss::Implicit(ImplicitLoss::IsmHutchinson { probes: 1 }));
/// assert_eq!("ssm=4".parse::<TrainLoss>()?.to_string(), "ssm=4");
/// assert_eq!("kappa_bar=0.5".parse::<TrainLoss>()?.to_string(), "kappa_bar=0.5");
/// assert!("hsm".parse::<TrainLoss>().is_err()); // lists the valid names
/// # Ok::<(), tsm_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TrainLoss {
    /// Regression on the identity's target ([`crate::loss`]).
    Identity(ScoreIdentity),
    /// ISM or SSM.
    Implicit(ImplicitLoss),
}

impl TrainLoss {
    /// The identity a [`crate::loss::LossConfig`] records: the regression's own, or DSM's for
    /// an implicit loss (whose time range must then keep `σ_t > 0`, as the constant
    /// `λ_t d/σ_t²` needs; the identity is otherwise unused).
    pub fn identity(&self) -> ScoreIdentity {
        match *self {
            Self::Identity(id) => id,
            Self::Implicit(_) => ScoreIdentity::Dsi,
        }
    }

    /// The implicit loss, if this is one.
    pub fn implicit(&self) -> Option<ImplicitLoss> {
        match *self {
            Self::Identity(_) => None,
            Self::Implicit(l) => Some(l),
        }
    }

    /// Fills in an identity's variances ([`ScoreIdentity::resolve`]); an implicit loss has
    /// none.
    ///
    /// # Errors
    /// As [`ScoreIdentity::resolve`].
    pub fn resolve(self, sigma_data_sq: f64, sigma_mode_sq: Option<f64>) -> Result<Self> {
        Ok(match self {
            Self::Identity(id) => Self::Identity(id.resolve(sigma_data_sq, sigma_mode_sq)?),
            other => other,
        })
    }

    /// The loss a configuration trains with.
    pub fn of(cfg: &TrainConfig) -> Self {
        cfg.implicit
            .map_or(Self::Identity(cfg.loss.identity), Self::Implicit)
    }
}

impl Choice for TrainLoss {
    const KIND: &'static str = "loss";
    /// The identities' names, then the implicit losses'.
    const NAMES: &'static [&'static str] = &tsm_core::choice::concat_names::<10, 7, 17>(
        ScoreIdentity::NAME_LIST,
        [
            "ism",
            "ism=hutchinson",
            "ism=K",
            "ssm",
            "ssm=K",
            "fdssm",
            "fdssm=K",
        ],
    );
}

impl FromStr for TrainLoss {
    type Err = tsm_core::Error;

    /// # Errors
    /// [`tsm_core::Error::UnknownName`] listing the valid names (also for a number of probes
    /// that is not an integer in `[1, MAX_PROBES]`); an identity's own errors (a weight
    /// outside `[0, 1]`, a non-positive variance).
    fn from_str(s: &str) -> Result<Self, tsm_core::Error> {
        let (name, value) = match s.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (s.trim(), None),
        };
        let probes = |v: Option<&str>| -> Result<usize, tsm_core::Error> {
            match v {
                None => Ok(1),
                Some(v) => v
                    .parse::<usize>()
                    .ok()
                    .filter(|k| (1..=MAX_PROBES).contains(k))
                    .ok_or_else(|| unknown::<Self>(s)),
            }
        };
        let implicit = match (name, value) {
            ("ism", None) => ImplicitLoss::Ism,
            ("ism", Some("hutchinson")) => ImplicitLoss::IsmHutchinson { probes: 1 },
            ("ism", v) => ImplicitLoss::IsmHutchinson { probes: probes(v)? },
            ("ssm", v) => ImplicitLoss::Ssm { probes: probes(v)? },
            ("fdssm", v) => ImplicitLoss::FdSsm { probes: probes(v)? },
            _ => {
                return match s.parse::<ScoreIdentity>() {
                    Ok(id) => Ok(Self::Identity(id)),
                    Err(tsm_core::Error::UnknownName { .. }) => Err(unknown::<Self>(s)),
                    Err(e) => Err(e),
                }
            }
        };
        Ok(Self::Implicit(implicit))
    }
}

impl fmt::Display for ImplicitLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Ism => f.write_str("ism"),
            Self::IsmHutchinson { probes } => write!(f, "ism={probes}"),
            Self::Ssm { probes: 1 } => f.write_str("ssm"),
            Self::Ssm { probes } => write!(f, "ssm={probes}"),
            Self::FdSsm { probes: 1 } => f.write_str("fdssm"),
            Self::FdSsm { probes } => write!(f, "fdssm={probes}"),
        }
    }
}

impl FromStr for ImplicitLoss {
    type Err = tsm_core::Error;

    /// The implicit names of [`TrainLoss`].
    ///
    /// # Errors
    /// [`tsm_core::Error::UnknownName`] for anything else.
    fn from_str(s: &str) -> Result<Self, tsm_core::Error> {
        match s.parse::<TrainLoss>() {
            Ok(TrainLoss::Implicit(l)) => Ok(l),
            _ => Err(unknown::<TrainLoss>(s)),
        }
    }
}

impl fmt::Display for TrainLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Identity(id) => id.fmt(f),
            Self::Implicit(l) => l.fmt(f),
        }
    }
}

tsm_core::serde_via_str!(ImplicitLoss);
tsm_core::serde_via_str!(TrainLoss);

/// `K` probes per point for `n` points in dimension `d`, drawn from `rng`: `[K n, d]`
/// row-major, probe `k` of point `i` in row `k n + i`.
pub fn draw_probes<R: Rng + ?Sized>(
    kind: Probe,
    k: usize,
    n: usize,
    d: usize,
    rng: &mut R,
) -> Vec<f32> {
    (0..k * n * d)
        .map(|_| match kind {
            Probe::Rademacher => {
                if rng.random::<bool>() {
                    1.0
                } else {
                    -1.0
                }
            }
            Probe::Gaussian => rng.sample::<f64, _>(StandardNormal) as f32,
        })
        .collect()
}

/// The `d` basis vectors as probes for `n` points: `[d n, d]`, row `j n + i` is `eⱼ`, so that
/// `Σⱼ eⱼᵀ (∇ₓs) eⱼ = tr ∇ₓs`.
pub fn basis_probes(n: usize, d: usize) -> Vec<f32> {
    let mut v = vec![0.0f32; d * n * d];
    for j in 0..d {
        for i in 0..n {
            v[(j * n + i) * d + j] = 1.0;
        }
    }
    v
}

/// A conditioning repeated `k` times (rows `k n + i` are those of point `i`).
fn repeat_conditioning(cond: &Conditioning, k: usize) -> Conditioning {
    let rep = |v: &[f32]| v.repeat(k);
    Conditioning {
        t: cond.t.repeat(k),
        emb: rep(&cond.emb),
        c_in: rep(&cond.c_in),
        c_out: rep(&cond.c_out),
        c_skip: rep(&cond.c_skip),
        c_score: rep(&cond.c_score),
        condition: rep(&cond.condition),
    }
}

fn refuse_target_scaled(model: &ScoreModel) -> Result<()> {
    if model.config().parameterisation.needs_target_score() {
        return Err(Error::config(
            "ISM/SSM need ∇ₓs, and the target_scaled parameterisation's ∇ₓs holds the \
             target's Hessian; use score, epsilon or preconditioned",
        ));
    }
    Ok(())
}

/// The score `s_θ(x, t)` (`[n, d]`) and its Jacobian–vector products `(∇ₓs_θ) v` for the
/// `K n` tangent rows `v` (`[K n, d]`, row `k n + i` a tangent at point `i`), by the
/// forward-mode pass of the [module docs](self#how-the-jacobianvector-products-are-computed).
/// Both are ordinary tensors of candle's graph: `backward()` differentiates them in `θ`.
///
/// # Errors
/// [`Error::Config`] for the `target_scaled` parameterisation, shapes that do not fit;
/// tensor errors.
pub fn jvp(
    model: &ScoreModel,
    x: &Tensor,
    cond: &Conditioning,
    v: &Tensor,
) -> Result<(Tensor, Tensor)> {
    refuse_target_scaled(model)?;
    let cfg = &model.config().mlp;
    let (n, d) = x.dims2()?;
    let (kn, dv) = v.dims2()?;
    if d != cfg.dim || dv != d || n == 0 || kn % n != 0 || cond.t.len() != n {
        return Err(Error::config(format!(
            "jvp: x [{n}, {d}], tangents [{kn}, {dv}] and {} times do not fit a model of \
             dimension {}",
            cond.t.len(),
            cfg.dim
        )));
    }
    let k = kn / n;
    let dev = x.device();
    let col = |c: &[f32], reps: usize| Tensor::from_vec(c.repeat(reps), (n * reps, 1), dev);
    let emb = Tensor::from_slice(&cond.emb, (n, cfg.embedding_dim), dev)?;
    let x_in = x.broadcast_mul(&col(&cond.c_in, 1)?)?;
    let c = cfg.condition_dim;
    let input = if c > 0 {
        if cond.condition.len() != n * c {
            return Err(Error::config("jvp: the condition does not fit the model"));
        }
        let cc = Tensor::from_slice(&cond.condition, (n, c), dev)?;
        Tensor::cat(&[&x_in, &cc, &emb], 1)?
    } else {
        Tensor::cat(&[&x_in, &emb], 1)?
    };
    let v_in = v.broadcast_mul(&col(&cond.c_in, k)?)?;
    let layers = model.mlp().layers();
    let last = layers.len() - 1;
    let mut h = input;
    let mut h_dot: Option<Tensor> = None;
    let mut out = None;
    for (l, layer) in layers.iter().enumerate() {
        let z = layer.forward(&h)?;
        let z_dot = match &h_dot {
            // Only the first d input columns move with x.
            None => v_in.matmul(&layer.weight().narrow(1, 0, d)?.t()?.contiguous()?)?,
            Some(hd) => hd.matmul(&layer.weight().t()?.contiguous()?)?,
        };
        if l < last {
            let width = z.dim(1)?;
            let sig = (z.neg()?.exp()? + 1.0)?.recip()?;
            // silu'(z) = σ(z) (1 + z (1 − σ(z))).
            let dsilu = (&sig * ((&z * sig.affine(-1.0, 1.0)?)? + 1.0)?)?;
            h_dot = Some(
                z_dot
                    .reshape((k, n, width))?
                    .broadcast_mul(&dsilu.unsqueeze(0)?)?
                    .reshape((kn, width))?,
            );
            h = z.silu()?;
        } else {
            out = Some((z, z_dot));
        }
    }
    let (f, f_dot) = out.ok_or_else(|| Error::config("jvp: a network without layers"))?;
    let mut s = f.broadcast_mul(&col(&cond.c_out, 1)?)?;
    let mut s_dot = f_dot.broadcast_mul(&col(&cond.c_out, k)?)?;
    if cond.c_skip.iter().any(|&c| c != 0.0) {
        s = (s + x.broadcast_mul(&col(&cond.c_skip, 1)?)?)?;
        s_dot = (s_dot + v.broadcast_mul(&col(&cond.c_skip, k)?)?)?;
    }
    Ok((s, s_dot))
}

/// `vᵀ(∇ₓs) v` for every tangent row, by [`jvp`]: `[K, n]`, with the score `[n, d]`.
///
/// # Errors
/// As [`jvp`].
pub fn directional_jvp(
    model: &ScoreModel,
    x: &Tensor,
    cond: &Conditioning,
    v: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let n = x.dim(0)?;
    let (s, s_dot) = jvp(model, x, cond, v)?;
    let k = v.dim(0)? / n;
    Ok((s, (v * s_dot)?.sum(1)?.reshape((k, n))?))
}

/// `vᵀ(s(x + εv) − s(x − εv))/(2ε)` for every tangent row (Pang et al., 2020, eq. 7): `[K, n]`.
///
/// # Errors
/// As [`jvp`]; `ε` not finite and positive.
pub fn directional_fd(
    model: &ScoreModel,
    x: &Tensor,
    cond: &Conditioning,
    v: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    refuse_target_scaled(model)?;
    if !(eps.is_finite() && eps > 0.0) {
        return Err(Error::invalid("eps", eps, "finite and positive"));
    }
    let (n, _) = x.dims2()?;
    let kn = v.dim(0)?;
    if n == 0 || kn % n != 0 {
        return Err(Error::config(
            "directional_fd: tangents do not fit the points",
        ));
    }
    let k = kn / n;
    let cond_k = repeat_conditioning(cond, k);
    let x_k = Tensor::cat(&vec![x; k], 0)?;
    let step = (v * eps)?;
    let plus = model.forward_with(&(&x_k + &step)?, &cond_k, None)?;
    let minus = model.forward_with(&(&x_k - &step)?, &cond_k, None)?;
    let diff = ((plus - minus)? / (2.0 * eps))?;
    Ok((v * diff)?.sum(1)?.reshape((k, n))?)
}

/// Per point, `‖s(xᵢ)‖²` and the trace term `2 Tᵢ` of the loss (`Tᵢ` the exact trace or its
/// estimate), each `[n]`: the loss is `(1/n) Σᵢ λᵢ (‖sᵢ‖² + 2 Tᵢ)`. Probes come from `rng`.
///
/// # Errors
/// As [`jvp`].
pub fn loss_terms<R: Rng + ?Sized>(
    loss: ImplicitLoss,
    model: &ScoreModel,
    x: &Tensor,
    cond: &Conditioning,
    rng: &mut R,
) -> Result<(Tensor, Tensor)> {
    loss.validate()?;
    let (n, d) = x.dims2()?;
    let dev = x.device();
    let (s, trace) = match loss.probes() {
        None => {
            let v = Tensor::from_vec(basis_probes(n, d), (d * n, d), dev)?;
            let (s, q) = directional_jvp(model, x, cond, &v)?;
            (s, q.sum(0)?)
        }
        Some((k, kind)) => {
            let v = Tensor::from_vec(draw_probes(kind, k, n, d, rng), (k * n, d), dev)?;
            if matches!(loss, ImplicitLoss::FdSsm { .. }) {
                let s = model.forward_with(x, cond, None)?;
                let q = directional_fd(model, x, cond, &v, FD_EPSILON)?;
                (s, q.mean(0)?)
            } else {
                let (s, q) = directional_jvp(model, x, cond, &v)?;
                (s, q.mean(0)?)
            }
        }
    };
    Ok((s.sqr()?.sum(1)?, (trace * 2.0)?))
}

/// The θ-free constant `(1/n) Σᵢ λᵢ d/σ_{tᵢ}²` that makes the ISM loss estimate the DSM
/// loss's value (see the [module docs](self)).
pub fn dsm_offset(model: &ScoreModel, lambda: &[f32], t: &[f64]) -> f64 {
    let d = model.config().mlp.dim as f64;
    let s = model.schedule();
    let n = lambda.len().max(1) as f64;
    lambda
        .iter()
        .zip(t)
        .map(|(&l, &ti)| l as f64 * d / s.sigma(ti).powi(2))
        .sum::<f64>()
        / n
}

/// The training loss of an implicit loss on a batch: `(1/n) Σᵢ λᵢ (‖sᵢ‖² + 2 Tᵢ)` plus
/// [`dsm_offset`], a scalar tensor whose `backward()` gives the exact gradient of the
/// estimate (probes held fixed).
///
/// # Errors
/// As [`jvp`]; a time with `σ_t = 0` (the offset would be infinite).
pub fn loss_tensor<R: Rng + ?Sized>(
    loss: ImplicitLoss,
    model: &ScoreModel,
    x: &Tensor,
    cond: &Conditioning,
    lambda: &[f32],
    rng: &mut R,
) -> Result<Tensor> {
    let offset = dsm_offset(model, lambda, &cond.t);
    if !offset.is_finite() {
        return Err(Error::config(
            "ISM/SSM need σ_t > 0 on the whole time range (t_min > 0)",
        ));
    }
    let (sq, tr) = loss_terms(loss, model, x, cond, rng)?;
    let lam = Tensor::from_slice(lambda, lambda.len(), x.device())?;
    Ok((((sq + tr)? * lam)?.mean_all()? + offset)?)
}

/// The stream of a training step's probes: distinct from the batch's `(seed, step)`.
pub fn probe_rng(seed: u64, step: u64) -> tsm_core::rng::FastRng {
    tsm_core::rng::stream(seed ^ 0x5353_4d5f_5052_4f42, step)
}

/// Checks that a run can train with `loss`: its probes, the autograd engine, a
/// parameterisation other than `target_scaled`, an unconditional model.
///
/// # Errors
/// [`Error::Invalid`] naming `loss.probes`, `engine` or `model.parameterisation`.
pub fn validate_run(loss: &ImplicitLoss, cfg: &TrainConfig) -> Result<()> {
    loss.validate()?;
    if cfg.engine != crate::engine::EngineKind::Candle {
        return Err(Error::invalid(
            "engine",
            "cpu",
            format!(
                "candle for {loss}: the CPU engine's hand-written backward has no pass through \
                 the Jacobian–vector products"
            ),
        ));
    }
    if cfg.model.parameterisation.needs_target_score() {
        return Err(Error::invalid(
            "model.parameterisation",
            cfg.model.parameterisation,
            format!("score, epsilon or preconditioned for {loss} (target_scaled's ∇ₓs holds the target's Hessian)"),
        ));
    }
    if cfg.model.is_conditional() {
        return Err(Error::invalid(
            "model.mlp.condition_dim",
            cfg.model.mlp.condition_dim,
            format!("0 for {loss} (conditional models train with the sbi losses)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::{BatchSampler, LossConfig};
    use crate::{ModelConfig, Parameterisation};
    use candle::Device;
    use tsm_core::weighting::Weighting;
    use tsm_targets::GaussianMixture;

    /// A small random model of dimension `d` with parameterisation `p` (σ_data² = 4).
    fn model(d: usize, p: &str, seed: u64) -> ScoreModel {
        let cfg = ModelConfig {
            mlp: crate::MlpConfig {
                dim: d,
                hidden: 32,
                depth: 2,
                embedding_dim: 8,
                ..crate::MlpConfig::default()
            },
            parameterisation: p.parse::<Parameterisation>().expect("p"),
            ..ModelConfig::default()
        }
        .resolve(4.0)
        .expect("resolve");
        ScoreModel::init(&cfg, seed, &Device::Cpu).expect("init").1
    }

    /// `n` points of `N(0, 4 I)` at time `t` and their conditioning.
    fn points(m: &ScoreModel, n: usize, t: f64, seed: u64) -> (Tensor, Conditioning) {
        let d = m.config().mlp.dim;
        let mut rng = tsm_core::rng::stream(seed, 0);
        let x = draw_probes(Probe::Gaussian, 1, n, d, &mut rng)
            .into_iter()
            .map(|v| 2.0 * v)
            .collect::<Vec<_>>();
        let x = Tensor::from_vec(x, (n, d), &Device::Cpu).expect("x");
        let cond = m.conditioning(&vec![t; n]).expect("cond");
        (x, cond)
    }

    const PARAMS: [&str; 3] = ["score", "epsilon", "preconditioned"];

    fn host(t: &Tensor) -> Vec<f32> {
        t.flatten_all()
            .expect("flat")
            .to_vec1::<f32>()
            .expect("vec")
    }

    #[test]
    fn the_forward_mode_primal_is_the_model() {
        for p in PARAMS {
            let m = model(3, p, 1);
            let (x, cond) = points(&m, 16, 0.3, 2);
            let v = Tensor::from_vec(basis_probes(16, 3), (48, 3), &Device::Cpu).expect("v");
            let (s, _) = jvp(&m, &x, &cond, &v).expect("jvp");
            let want = m.forward_with(&x, &cond, None).expect("forward");
            for (a, b) in host(&s).iter().zip(host(&want)) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{p}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn jvp_and_finite_differences_agree() {
        // Central differences have error ε²/6 |∂³s| + rounding ≈ 6e-8 |s|/ε in f32; with
        // ε = 1e-2 and |s| ≲ 10 both are below 1e-4, against a tolerance of 2e-3 (1 + |vᵀJv|).
        // A missing c_skip (−1/(σ² + α² 4) ≈ −0.3 at t = 0.3) or c_in (≈ 0.5) in the tangent
        // moves vᵀJv by O(1) and fails.
        for p in PARAMS {
            let m = model(3, p, 3);
            let (x, cond) = points(&m, 32, 0.3, 4);
            let mut rng = tsm_core::rng::stream(5, 0);
            let v = Tensor::from_vec(
                draw_probes(Probe::Gaussian, 4, 32, 3, &mut rng),
                (128, 3),
                &Device::Cpu,
            )
            .expect("v");
            let (_, by_jvp) = directional_jvp(&m, &x, &cond, &v).expect("jvp");
            let by_fd = directional_fd(&m, &x, &cond, &v, FD_EPSILON).expect("fd");
            assert_eq!(by_jvp.dims(), &[4, 32]);
            for (a, b) in host(&by_jvp).iter().zip(host(&by_fd)) {
                assert!(
                    (a - b).abs() <= 2e-3 * (1.0 + a.abs()),
                    "{p}: jvp {a} vs fd {b}"
                );
            }
        }
    }

    /// `[d, n]` values `eⱼᵀ J eⱼ` and their per-point sum, the exact trace.
    fn exact_trace(m: &ScoreModel, x: &Tensor, cond: &Conditioning) -> Vec<f64> {
        let (n, d) = x.dims2().expect("dims");
        let v = Tensor::from_vec(basis_probes(n, d), (d * n, d), &Device::Cpu).expect("v");
        let (_, q) = directional_jvp(m, x, cond, &v).expect("jvp");
        host(&q.sum(0).expect("sum"))
            .iter()
            .map(|&v| v as f64)
            .collect()
    }

    #[test]
    fn hutchinson_matches_the_exact_trace_within_its_standard_error() {
        // Fixed seeds; for each of 8 points, the mean of K = 4000 probe values vᵀJv against
        // the exact trace, within 5 standard errors (the sample sd over the probes / √K).
        // Rademacher probes have variance 2 Σ_{i≠j} J_ij² (of the symmetric part), Gaussian
        // 2 ‖J_sym‖²_F: both finite, both unbiased.
        let (n, d, k) = (8, 3, 4000);
        let m = model(d, "preconditioned", 7);
        let (x, cond) = points(&m, n, 0.5, 8);
        let exact = exact_trace(&m, &x, &cond);
        for kind in [Probe::Rademacher, Probe::Gaussian] {
            let mut rng = tsm_core::rng::stream(9, kind as u64);
            let v = Tensor::from_vec(
                draw_probes(kind, k, n, d, &mut rng),
                (k * n, d),
                &Device::Cpu,
            )
            .expect("v");
            let (_, q) = directional_jvp(&m, &x, &cond, &v).expect("jvp");
            let q = host(&q);
            for i in 0..n {
                let vals: Vec<f64> = (0..k).map(|j| q[j * n + i] as f64).collect();
                let mean = vals.iter().sum::<f64>() / k as f64;
                let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (k - 1) as f64;
                let se = (var / k as f64).sqrt().max(1e-6);
                let z = (mean - exact[i]) / se;
                assert!(
                    z.abs() < 5.0,
                    "{kind:?} point {i}: {mean} vs {} (z = {z})",
                    exact[i]
                );
            }
        }
    }

    #[test]
    fn ism_equals_dsm_minus_the_constant_d_over_sigma_squared() {
        // For data N(0, 4 I) in d = 3 noised to x_t at the fixed time t = 0.4, the paired
        // per-point difference λ‖s − L‖² − λ(‖s‖² + 2 tr ∇s) has expectation λ d/σ_t² for any
        // model s (module docs): checked at 5 standard errors (n = 8192, fixed seed), for
        // every parameterisation, on a random network. Dropping the skip term from the JVP
        // moves the mean by 2 d |c_skip| ≈ 1.4 here, over 20 standard errors.
        let target = GaussianMixture::gaussian(3, 2.0).expect("target");
        let n = 8192;
        for p in PARAMS {
            let m = model(3, p, 11);
            let loss = LossConfig::for_mixture(ScoreIdentity::Dsi, Weighting::Uniform, &target)
                .expect("loss");
            let sampler = BatchSampler::new(&target, &loss, m.config()).expect("sampler");
            let t = 0.4;
            let b = sampler
                .sample(&mut tsm_core::rng::stream(12, 0), n, Some(&[t]))
                .expect("batch");
            let x = Tensor::from_slice(&b.xt, (n, 3), &Device::Cpu).expect("x");
            let s = host(&m.forward_with(&x, &b.cond, None).expect("s"));
            let (sq, tr) = loss_terms(
                ImplicitLoss::Ism,
                &m,
                &x,
                &b.cond,
                &mut tsm_core::rng::stream(0, 0),
            )
            .expect("ism");
            let (sq, tr) = (host(&sq), host(&tr));
            let diffs: Vec<f64> = (0..n)
                .map(|i| {
                    let dsm: f64 = (0..3)
                        .map(|j| (s[i * 3 + j] - b.target[i * 3 + j]) as f64)
                        .map(|r| r * r)
                        .sum();
                    b.lambda[i] as f64 * (dsm - sq[i] as f64 - tr[i] as f64)
                })
                .collect();
            let mean = diffs.iter().sum::<f64>() / n as f64;
            let var = diffs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            let se = (var / n as f64).sqrt();
            let sigma = m.schedule().sigma(t);
            let constant = b.lambda[0] as f64 * 3.0 / (sigma * sigma);
            assert!(
                (mean - constant).abs() < 5.0 * se,
                "{p}: E[DSM − ISM] = {mean} ± {se}, expected {constant}"
            );
            // The offset the trainer adds is the same constant.
            let offset = dsm_offset(&m, &b.lambda, &b.cond.t);
            assert!((offset - constant).abs() < 1e-9 * constant);
        }
    }

    #[test]
    fn the_fd_and_jvp_losses_agree_and_the_estimators_are_unbiased() {
        // The same probes through the FD and JVP routes give the same loss terms (tolerance
        // as `jvp_and_finite_differences_agree`).
        let m = model(2, "epsilon", 13);
        let (x, cond) = points(&m, 64, 0.6, 14);
        let a = loss_terms(
            ImplicitLoss::Ssm { probes: 3 },
            &m,
            &x,
            &cond,
            &mut tsm_core::rng::stream(1, 1),
        )
        .expect("ssm");
        let b = loss_terms(
            ImplicitLoss::FdSsm { probes: 3 },
            &m,
            &x,
            &cond,
            &mut tsm_core::rng::stream(1, 1),
        )
        .expect("fdssm");
        for (u, v) in host(&a.1).iter().zip(host(&b.1)) {
            assert!((u - v).abs() <= 2e-3 * (1.0 + u.abs()), "{u} vs {v}");
        }
    }

    #[test]
    fn the_loss_names_round_trip() {
        for (text, want) in [
            ("ism", TrainLoss::Implicit(ImplicitLoss::Ism)),
            (
                "ism=hutchinson",
                TrainLoss::Implicit(ImplicitLoss::IsmHutchinson { probes: 1 }),
            ),
            (
                "ism=8",
                TrainLoss::Implicit(ImplicitLoss::IsmHutchinson { probes: 8 }),
            ),
            ("ssm", TrainLoss::Implicit(ImplicitLoss::Ssm { probes: 1 })),
            (
                "ssm=2",
                TrainLoss::Implicit(ImplicitLoss::Ssm { probes: 2 }),
            ),
            (
                "fdssm=3",
                TrainLoss::Implicit(ImplicitLoss::FdSsm { probes: 3 }),
            ),
            ("dsm", TrainLoss::Identity(ScoreIdentity::Dsi)),
            (
                "kappa_bar=0.5",
                TrainLoss::Identity(ScoreIdentity::kappa_bar(0.5)),
            ),
        ] {
            let got: TrainLoss = text.parse().expect(text);
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string().parse::<TrainLoss>().expect("back"), got);
        }
        for name in TrainLoss::NAMES {
            let name = name
                .replace("=W", "=0.5")
                .replace("=V", "=2")
                .replace("=K", "=3");
            assert!(name.parse::<TrainLoss>().is_ok(), "{name}");
        }
        for bad in [
            "hsm",
            "ism=0",
            "ism=2000",
            "ssm=1.5",
            "ism=rademacher",
            "ssm=-1",
        ] {
            let err = bad.parse::<TrainLoss>().expect_err(bad).to_string();
            assert!(
                err.contains("ism=K") && err.contains("kappa_bar"),
                "{bad}: {err}"
            );
        }
        // An identity's own error stays (the weight's range).
        let err = "mixture=1.5"
            .parse::<TrainLoss>()
            .expect_err("w")
            .to_string();
        assert!(err.contains("weight"), "{err}");
    }

    #[test]
    fn a_run_refuses_the_cpu_engine_and_target_scaled() {
        let target = tsm_targets::named::eight_modes();
        let loss =
            LossConfig::for_mixture(ScoreIdentity::Dsi, Weighting::Uniform, &target).expect("loss");
        let mut cfg = TrainConfig {
            implicit: Some(ImplicitLoss::Ism),
            ..TrainConfig::new("eight_modes", ModelConfig::default(), loss)
        };
        assert!(matches!(
            cfg.validate(),
            Err(Error::Invalid {
                field: "engine",
                ..
            })
        ));
        cfg.engine = crate::engine::EngineKind::Candle;
        assert!(cfg.validate().is_ok());
        cfg.model.parameterisation = Parameterisation::TargetScaled;
        assert!(matches!(
            cfg.validate(),
            Err(Error::Invalid {
                field: "model.parameterisation",
                ..
            })
        ));
        // The record: absent when None (old checkpoints read as before), by name otherwise.
        cfg.model.parameterisation = Parameterisation::Score;
        let json = serde_json::to_string(&cfg).expect("json");
        assert!(json.contains("\"implicit\":\"ism\""), "{json}");
        let back: TrainConfig = serde_json::from_str(&json).expect("back");
        assert_eq!(back, cfg);
        cfg.implicit = None;
        let json = serde_json::to_string(&cfg).expect("json");
        assert!(!json.contains("implicit"), "{json}");
    }
}
