//! Score-matching losses on batches (paper §4.1, eq. 19):
//!
//! ```text
//! ℓ(θ) = E_{t ~ U[t_min, t_max]} E_{x_0, x_t} [ λ_t ‖s_θ(x_t, t) − L(x_0, x_t, t)‖² ]
//! ```
//!
//! with the regression target `L = a_t(α_t x_0 − x_t) + b_t ∇log p_0(x_0)` of a
//! [`ScoreIdentity`] (tsm-core: DSM's `L_DSI`, TSM's `L_TSI`, the `κ_t`, `κ̄_t` mixtures or a
//! fixed `w`) and a [`NormalisedWeighting`] `λ_t`. The Monte Carlo estimate over a batch of
//! `n` triples `(tᵢ, x_0ⁱ, εᵢ)`, `x_tⁱ = α x_0ⁱ + σ εᵢ`, is `(1/n) Σᵢ λ_{tᵢ} ‖sᵢ − Lᵢ‖²`.
//!
//! ## Time range
//! The default range is `[10⁻³, 1 − 10⁻³]` (SPEC §3): `L_DSI` has variance `∝ 1/σ_t²`, which
//! blows up at `t = 0`, and `L_TSI` has `1/α_t`, which blows up at `t = 1` for the cosine and
//! VP schedules; the trimmed range keeps both finite (and the "original" weighting
//! `1/σ_t²` integrable) while comparing all losses on the same interval. `κ`, `κ̄` and
//! Phillips are finite on all of `[0, 1]` and may use the full range.
//!
//! The per-sample scalars come from tsm-core (`ScoreIdentity::coefficients`,
//! `NormalisedWeighting::at`); nothing is re-derived here.
//!
//! # Shapes
//! A [`Batch`] holds `n` rows of dimension `d`, row-major `f32`.
//!
//! # References
//! [^1]: De Bortoli et al. (2024), *Target Score Matching*, §4.1, eqs. 2, 8, 19.

use candle::Tensor;
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};
use tsm_core::identity::ScoreIdentity;
use tsm_core::schedule::{AnySchedule, Schedule};
use tsm_core::target::{Dim, Sample, Score};
use tsm_core::weighting::{NormalisedWeighting, TimeRange, Weighting};

use crate::network::{Conditioning, ModelConfig};
use crate::{Error, Result};

/// Which regression target (paper §4.1 names).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LossKind {
    /// DSM: `L_DSI = −(x_t − α_t x_0)/σ_t²` (eq. 2).
    Dsm,
    /// TSM: `L_TSI = α_t⁻¹ ∇log p_0(x_0)` (eq. 8).
    Tsm,
    /// The mixture with `κ_t = σ_t²/(σ_t² + α_t² σ_data²)`.
    Kappa,
    /// The mixture with `κ̄_t = σ_t²/(σ_t² + α_t² σ_mode²)`.
    KappaBar,
    /// A fixed mixture `w L_DSI + (1 − w) L_TSI`.
    Fixed {
        /// `w ∈ [0, 1]`.
        w: f64,
    },
}

impl LossKind {
    /// The names [`LossKind::by_name`] accepts (`fixed:W` for a fixed weight).
    pub const NAMES: [&'static str; 5] = ["dsm", "tsm", "kappa", "kappa_bar", "fixed:W"];

    /// Parses `dsm`, `tsm`, `kappa`, `kappa_bar` or `fixed:0.3`.
    ///
    /// # Errors
    /// [`Error::Config`] listing the valid names.
    pub fn by_name(name: &str) -> Result<Self> {
        match name {
            "dsm" => Ok(Self::Dsm),
            "tsm" => Ok(Self::Tsm),
            "kappa" => Ok(Self::Kappa),
            "kappa_bar" => Ok(Self::KappaBar),
            _ => match name.strip_prefix("fixed:").map(str::parse::<f64>) {
                Some(Ok(w)) if (0.0..=1.0).contains(&w) => Ok(Self::Fixed { w }),
                _ => Err(Error::config(format!(
                    "unknown loss `{name}`; valid: {}",
                    Self::NAMES.join(", ")
                ))),
            },
        }
    }

    /// Short name (`dsm`, `tsm`, `kappa`, `kappa_bar`, `fixed`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Dsm => "dsm",
            Self::Tsm => "tsm",
            Self::Kappa => "kappa",
            Self::KappaBar => "kappa_bar",
            Self::Fixed { .. } => "fixed",
        }
    }

    /// The tsm-core identity, given the target's `σ_data²` and `σ_mode²`.
    pub fn identity(&self, sigma_data_sq: f64, sigma_mode_sq: f64) -> ScoreIdentity {
        match *self {
            Self::Dsm => ScoreIdentity::Dsi,
            Self::Tsm => ScoreIdentity::Tsi,
            Self::Kappa => ScoreIdentity::kappa(sigma_data_sq),
            Self::KappaBar => ScoreIdentity::kappa_bar(sigma_mode_sq),
            Self::Fixed { w } => ScoreIdentity::Mixture { weight: w },
        }
    }
}

/// A loss: target, weighting and time range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossConfig {
    /// The regression target.
    pub kind: LossKind,
    /// The weighting's name (`original`, `dsm_optimal`, `tsm_optimal`, `uniform`).
    pub weighting: WeightingName,
    /// `t_min` of `t ~ U[t_min, t_max]`.
    pub t_min: f64,
    /// `t_max`.
    pub t_max: f64,
}

/// A serialisable [`Weighting`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightingName {
    /// `1/σ_t²`.
    Original,
    /// Karras: `σ_t²(σ_t² + σ_data²)/σ_data²`.
    DsmOptimal,
    /// App. D: `α_t²σ_data²(σ_t² + α_t²σ_data²)/σ_t²`.
    TsmOptimal,
    /// `1`.
    Uniform,
}

impl From<WeightingName> for Weighting {
    fn from(w: WeightingName) -> Self {
        match w {
            WeightingName::Original => Weighting::Original,
            WeightingName::DsmOptimal => Weighting::DsmOptimal,
            WeightingName::TsmOptimal => Weighting::TsmOptimal,
            WeightingName::Uniform => Weighting::Uniform,
        }
    }
}

impl From<Weighting> for WeightingName {
    fn from(w: Weighting) -> Self {
        match w {
            Weighting::Original => Self::Original,
            Weighting::DsmOptimal => Self::DsmOptimal,
            Weighting::TsmOptimal => Self::TsmOptimal,
            Weighting::Uniform => Self::Uniform,
        }
    }
}

impl Default for LossConfig {
    /// DSM, uniform weighting, `[10⁻³, 1 − 10⁻³]`.
    fn default() -> Self {
        let r = TimeRange::trimmed();
        Self {
            kind: LossKind::Dsm,
            weighting: WeightingName::Uniform,
            t_min: r.t_min(),
            t_max: r.t_max(),
        }
    }
}

/// One training batch, on the host (see the [module docs](self)).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Rows `n`.
    pub n: usize,
    /// Dimension `d`.
    pub d: usize,
    /// `x_t`, `[n, d]`.
    pub xt: Vec<f32>,
    /// The regression targets `L`, `[n, d]`.
    pub target: Vec<f32>,
    /// `λ_{tᵢ}` (normalised), `[n]`.
    pub lambda: Vec<f32>,
    /// `∇log p_0(x_t)`, `[n, d]` (empty unless the model needs it).
    pub score0_xt: Vec<f32>,
    /// Times, embedding and output coefficients.
    pub cond: Conditioning,
}

/// Draws [`Batch`]es for a target, a loss and a model configuration.
#[derive(Debug, Clone)]
pub struct BatchSampler<'a, T> {
    target: &'a T,
    schedule: AnySchedule,
    identity: ScoreIdentity,
    weighting: NormalisedWeighting,
    range: TimeRange,
    model: ModelConfig,
}

impl<'a, T: Score + Sample> BatchSampler<'a, T> {
    /// A sampler for `target` with variances `σ_data²` and `σ_mode²` (for κ, κ̄ and the
    /// weightings).
    ///
    /// # Errors
    /// A bad time range, variance or schedule name; a target of another dimension.
    pub fn new(
        target: &'a T,
        sigma_data_sq: f64,
        sigma_mode_sq: f64,
        loss: &LossConfig,
        model: &ModelConfig,
    ) -> Result<Self> {
        let schedule = model.schedule()?;
        let range = TimeRange::new(loss.t_min, loss.t_max)?;
        let identity = loss.kind.identity(sigma_data_sq, sigma_mode_sq);
        // Reject an identity undefined somewhere on the range (e.g. DSM from t = 0) now.
        identity.coefficients(&schedule, range.t_min())?;
        identity.coefficients(&schedule, range.t_max())?;
        let weighting =
            NormalisedWeighting::new(loss.weighting.into(), schedule, sigma_data_sq, range)?;
        if Dim::dim(target) != model.mlp.dim || Dim::dim(target) != model.mlp.dim {
            return Err(Error::config(format!(
                "target of dimension {} for a model of dimension {}",
                Dim::dim(target),
                model.mlp.dim
            )));
        }
        Ok(Self {
            target,
            schedule,
            identity,
            weighting,
            range,
            model: model.clone(),
        })
    }

    /// The time range.
    pub fn range(&self) -> TimeRange {
        self.range
    }

    /// Draws a batch of `n` from `rng`; `t` is uniform on the range unless `times` is given.
    ///
    /// # Errors
    /// An identity undefined at a drawn time (cannot happen on a range checked by `new`).
    pub fn sample<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        n: usize,
        times: Option<&[f64]>,
    ) -> Result<Batch> {
        let d = self.model.mlp.dim;
        let need_s0 = self.model.parameterisation.needs_target_score();
        let mut t = Vec::with_capacity(n);
        let (mut xt, mut target) = (vec![0.0f32; n * d], vec![0.0f32; n * d]);
        let mut score0_xt = if need_s0 {
            vec![0.0f32; n * d]
        } else {
            Vec::new()
        };
        let mut lambda = Vec::with_capacity(n);
        let (mut x0, mut x, mut s0, mut l) =
            (vec![0.0; d], vec![0.0; d], vec![0.0; d], vec![0.0; d]);
        for i in 0..n {
            let ti = match times {
                Some(ts) => ts[i % ts.len()],
                None => self.range.lerp(rng.random::<f64>()),
            };
            self.target.sample_into(rng, &mut x0);
            let (alpha, sigma) = (self.schedule.alpha(ti), self.schedule.sigma(ti));
            for j in 0..d {
                let eps: f64 = rng.sample(StandardNormal);
                x[j] = alpha * x0[j] + sigma * eps;
            }
            let c = self.identity.coefficients(&self.schedule, ti)?;
            if c.b != 0.0 {
                self.target.score(&x0, &mut s0);
            }
            c.apply_into(&x0, &x, &s0, &mut l);
            let row = i * d..(i + 1) * d;
            for (o, v) in xt[row.clone()].iter_mut().zip(&x) {
                *o = *v as f32;
            }
            for (o, v) in target[row.clone()].iter_mut().zip(&l) {
                *o = *v as f32;
            }
            if need_s0 {
                self.target.score(&x, &mut s0);
                for (o, v) in score0_xt[row].iter_mut().zip(&s0) {
                    *o = *v as f32;
                }
            }
            lambda.push(self.weighting.at(ti) as f32);
            t.push(ti);
        }
        let cond = Conditioning::new(
            &self.model.mlp,
            &self.model.parameterisation,
            &self.schedule,
            &t,
        );
        Ok(Batch {
            n,
            d,
            xt,
            target,
            lambda,
            score0_xt,
            cond,
        })
    }
}

/// `(1/n) Σᵢ λᵢ ‖sᵢ − Lᵢ‖²` on tensors `s, L: [n, d]`, `λ: [n]`; a scalar tensor.
///
/// # Errors
/// Shape mismatches.
pub fn weighted_loss(score: &Tensor, target: &Tensor, lambda: &Tensor) -> Result<Tensor> {
    let per_sample = (score - target)?.sqr()?.sum(1)?;
    Ok((per_sample * lambda)?.mean_all()?)
}

/// `(1/n) Σᵢ λᵢ ‖sᵢ − Lᵢ‖²` on host buffers (`f64` accumulation).
pub fn weighted_loss_host(score: &[f32], target: &[f32], lambda: &[f32], d: usize) -> f64 {
    let n = lambda.len();
    let mut total = 0.0f64;
    for i in 0..n {
        let mut r2 = 0.0f64;
        for j in i * d..(i + 1) * d {
            let r = (score[j] - target[j]) as f64;
            r2 += r * r;
        }
        total += lambda[i] as f64 * r2;
    }
    total / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsm_targets::named;

    #[test]
    fn dsm_target_is_minus_eps_over_sigma() {
        // For DSM, L = (α x0 − x_t)/σ² = −ε/σ; check E over a batch: L σ + ... via identity.
        let target = named::eight_modes();
        let model = ModelConfig::default();
        let loss = LossConfig::default();
        let s = BatchSampler::new(
            &target,
            target.variance_per_dim(),
            target.mode_variance(),
            &loss,
            &model,
        )
        .expect("sampler");
        let mut rng = tsm_core::rng::stream(1, 0);
        let b = s.sample(&mut rng, 2000, None).expect("batch");
        // (σ L)² averaged is E ε² = 1 per coordinate; standard error √(2/4000) ≈ 0.022.
        let sched = model.schedule().expect("schedule");
        let mut m = 0.0;
        for i in 0..b.n {
            let sg = sched.sigma(b.cond.t[i]);
            for j in 0..2 {
                m += (sg * b.target[i * 2 + j] as f64).powi(2);
            }
        }
        m /= (2 * b.n) as f64;
        assert!((m - 1.0).abs() < 5.0 * 0.022, "{m}");
        assert!(b.cond.t.iter().all(|&t| (1e-3..=1.0 - 1e-3).contains(&t)));
    }

    #[test]
    fn dsm_from_time_zero_is_rejected() {
        let target = named::unit_gaussian();
        let model = ModelConfig {
            mlp: crate::MlpConfig {
                dim: 1,
                ..Default::default()
            },
            ..Default::default()
        };
        let loss = LossConfig {
            t_min: 0.0,
            ..LossConfig::default()
        };
        assert!(BatchSampler::new(&target, 1.0, 1.0, &loss, &model).is_err());
        assert!(LossKind::by_name("fixed:0.3").is_ok());
        assert!(LossKind::by_name("fixed:3").is_err());
        assert!(LossKind::by_name("hsm").is_err());
    }
}
