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
//! The default range is `[10⁻³, 1 − 10⁻³]` (`docs/conventions.md`): `L_DSI` has variance `∝ 1/σ_t²`, which
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

//! ## Resolved configuration
//! A [`LossConfig`] holds every number the loss uses: the identity with its variance filled
//! in (`κ` needs `σ_data²`, `κ̄` needs `σ_mode²`), the weighting and the `σ_data²` it is
//! normalised with, and the time range. Build it from the target's [`TargetVariances`]
//! ([`LossConfig::new`], or [`LossConfig::for_mixture`] for a Gaussian mixture), so that the
//! checkpoint that records it records the whole loss.

use candle::Tensor;
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};
use tsm_core::identity::ScoreIdentity;
use tsm_core::schedule::{AnySchedule, Schedule};
use tsm_core::target::{Dim, Sample, Score};
use tsm_core::weighting::{NormalisedWeighting, TimeRange, Weighting};
use tsm_targets::GaussianMixture;

use crate::network::{Conditioning, ModelConfig};
use crate::{Error, Result};

/// The two variances of a target that the losses and parameterisations use: `σ_data²`, its
/// variance per dimension (for `κ`, the weightings and App. D's preconditioning), and
/// `σ_mode²`, the mixture-weighted variance of its modes (for `κ̄`; only a mixture has one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetVariances {
    sigma_data_sq: f64,
    sigma_mode_sq: Option<f64>,
}

impl TargetVariances {
    /// The variances of a target that is not a mixture, or whose `σ_mode²` is chosen by the
    /// user (`κ̄` then needs `kappa_bar=V`).
    ///
    /// # Errors
    /// [`tsm_core::Error::NonPositive`] for a variance that is not finite and positive;
    /// [`tsm_core::Error::Unordered`] for `σ_mode² > σ_data²`, which no target has (by the law
    /// of total variance, `σ_data² = σ_mode² + Σ πᵢ ‖μᵢ − μ‖²/d`): the two were swapped.
    pub fn new(sigma_data_sq: f64, sigma_mode_sq: Option<f64>) -> Result<Self> {
        let positive = |name, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(value)
            } else {
                Err(tsm_core::Error::NonPositive { name, value })
            }
        };
        positive("sigma_data_sq", sigma_data_sq)?;
        if let Some(m) = sigma_mode_sq {
            positive("sigma_mode_sq", m)?;
            // A relative slack of a few roundings: the two are computed by different sums.
            if m > sigma_data_sq * (1.0 + 1e-12) {
                return Err(tsm_core::Error::Unordered {
                    low: "sigma_mode_sq",
                    low_value: m,
                    high: "sigma_data_sq",
                    high_value: sigma_data_sq,
                }
                .into());
            }
        }
        Ok(Self {
            sigma_data_sq,
            sigma_mode_sq,
        })
    }

    /// A Gaussian mixture's `σ_data²` ([`GaussianMixture::variance_per_dim`]) and `σ_mode²`
    /// ([`GaussianMixture::mode_variance`]).
    ///
    /// # Errors
    /// As [`TargetVariances::new`] (not for a valid mixture).
    pub fn of_mixture(target: &GaussianMixture) -> Result<Self> {
        Self::new(target.variance_per_dim(), Some(target.mode_variance()))
    }

    /// `σ_data²`.
    pub fn sigma_data_sq(&self) -> f64 {
        self.sigma_data_sq
    }

    /// `σ_mode²`, if the target has one.
    pub fn sigma_mode_sq(&self) -> Option<f64> {
        self.sigma_mode_sq
    }
}

/// A loss: regression target, weighting, the `σ_data²` the weighting uses, and the time
/// range — every number resolved (see the [module docs](self#resolved-configuration)).
///
/// Serialised (in checkpoints) with the identity and the weighting by name:
/// `{"identity": "kappa_bar=0.25", "weighting": "uniform", "sigma_data_sq": 16.25, …}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossConfig {
    /// The regression target, with its variance filled in
    /// ([`ScoreIdentity::resolve`]).
    pub identity: ScoreIdentity,
    /// The time weighting `λ_t`, normalised over the range.
    pub weighting: Weighting,
    /// The target's `σ_data²`, for the weighting.
    pub sigma_data_sq: f64,
    /// `t_min` of `t ~ U[t_min, t_max]`.
    pub t_min: f64,
    /// `t_max`.
    pub t_max: f64,
}

impl LossConfig {
    /// The loss `identity` with `weighting` for a target with `variances`, on the trimmed
    /// range `[10⁻³, 1 − 10⁻³]` ([`TimeRange::trimmed`]; change it with
    /// [`LossConfig::with_range`]).
    ///
    /// # Errors
    /// As [`ScoreIdentity::resolve`]: `κ̄` without a number for a target without `σ_mode²`.
    pub fn new(
        identity: ScoreIdentity,
        weighting: Weighting,
        variances: &TargetVariances,
    ) -> Result<Self> {
        let range = TimeRange::trimmed();
        Ok(Self {
            identity: identity.resolve(variances.sigma_data_sq, variances.sigma_mode_sq)?,
            weighting,
            sigma_data_sq: variances.sigma_data_sq,
            t_min: range.t_min(),
            t_max: range.t_max(),
        })
    }

    /// [`LossConfig::new`] with a Gaussian mixture's variances
    /// ([`TargetVariances::of_mixture`]).
    ///
    /// # Errors
    /// As [`LossConfig::new`].
    pub fn for_mixture(
        identity: ScoreIdentity,
        weighting: Weighting,
        target: &GaussianMixture,
    ) -> Result<Self> {
        Self::new(identity, weighting, &TargetVariances::of_mixture(target)?)
    }

    /// The same loss on another time range.
    pub fn with_range(self, range: TimeRange) -> Self {
        Self {
            t_min: range.t_min(),
            t_max: range.t_max(),
            ..self
        }
    }

    /// The time range.
    ///
    /// # Errors
    /// [`tsm_core::Error::InvalidTimeRange`] unless `0 ≤ t_min < t_max ≤ 1`.
    pub fn range(&self) -> Result<TimeRange> {
        Ok(TimeRange::new(self.t_min, self.t_max)?)
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
    /// The two targets and the weight's features of the learned-weight MIX loss
    /// (`mix_learned`, [`crate::sbi::LearnedWeight`]); `None` for every other loss.
    pub mix: Option<MixTargets>,
}

/// What a batch of the learned-weight MIX loss carries beside `x_t` (Ko & Geffner 2024,
/// §3.3): both regression targets and the features `φ(tᵢ)` of the weight
/// `wᵢ = sigmoid(⟨c, φ(tᵢ)⟩)`. The engines regress on `yᵢ = wᵢ Aᵢ + (1 − wᵢ) Bᵢ` and train
/// the coefficients `c` jointly with the network (see [`crate::sbi::LearnedWeight`] for the
/// gradient that reaches `c`); [`Batch::target`] then holds the MIX target at the optimal
/// weight `w_t*`, which the engines do not use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MixTargets {
    /// The DSM targets `A = −ε/σ_t`, `[n, d]`.
    pub dsm: Vec<f32>,
    /// The LTSM targets `B = ∇_θ log p(θ₀, z, x)/α_t`, `[n, d]`.
    pub ltsm: Vec<f32>,
    /// The weight's features `φ(tᵢ)`, `[n, K]` row-major.
    pub features: Vec<f32>,
}

impl MixTargets {
    /// Checks the sizes against a batch of `n` rows of dimension `d` and `k` coefficients.
    ///
    /// # Errors
    /// [`Error::Config`] naming the sizes.
    pub fn check(&self, n: usize, d: usize, k: usize) -> Result<()> {
        if self.dsm.len() != n * d || self.ltsm.len() != n * d || self.features.len() != n * k {
            return Err(Error::config(format!(
                "a learned-weight MIX batch of {n} rows, d = {d} and {k} weight coefficients \
                 has {}, {} and {} values of A, B and features",
                self.dsm.len(),
                self.ltsm.len(),
                self.features.len()
            )));
        }
        Ok(())
    }

    /// Row `i`'s weight `wᵢ = sigmoid(⟨c, φ(tᵢ)⟩)` (`f32`, as the autograd engine computes
    /// it).
    pub fn weight(&self, i: usize, c: &[f32]) -> f32 {
        let k = c.len();
        let g: f32 = self.features[i * k..(i + 1) * k]
            .iter()
            .zip(c)
            .map(|(f, c)| f * c)
            .sum();
        1.0 / (1.0 + (-g).exp())
    }

    /// The target `y = B + w (A − B)` at flat index `j` (row-major `[n, d]`).
    pub fn target(&self, j: usize, w: f32) -> f32 {
        self.ltsm[j] + (self.dsm[j] - self.ltsm[j]) * w
    }
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
    /// A sampler of batches from `target` for the (resolved) `loss` and `model`.
    ///
    /// # Errors
    /// - [`Error::TargetDimension`] for a target whose dimension is not the model's;
    /// - a bad time range or `σ_data²`, an identity undefined somewhere on the range (DSM
    ///   from `t = 0`), an unresolved identity or parameterisation (through [`Error::Core`]).
    pub fn new(target: &'a T, loss: &LossConfig, model: &ModelConfig) -> Result<Self> {
        if Dim::dim(target) != model.mlp.dim {
            return Err(Error::TargetDimension {
                model: model.mlp.dim,
                target: Dim::dim(target),
            });
        }
        model.validate()?;
        let schedule = model.schedule;
        let range = loss.range()?;
        let identity = loss.identity;
        // Reject an identity undefined somewhere on the range (e.g. DSM from t = 0), or
        // unresolved, now.
        identity.coefficients(&schedule, range.t_min())?;
        identity.coefficients(&schedule, range.t_max())?;
        let weighting =
            NormalisedWeighting::new(loss.weighting, schedule, loss.sigma_data_sq, range)?;
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
        )?;
        Ok(Batch {
            n,
            d,
            xt,
            target,
            lambda,
            score0_xt,
            cond,
            mix: None,
        })
    }
}

/// What draws the training batches of a [`crate::Trainer`]: a [`BatchSampler`] of a target,
/// or simulations for a conditional model ([`crate::sbi::SimulationBatches`]).
pub trait BatchSource {
    /// Draws a batch of `n` from `rng`; `t` uniform on the loss's range unless `times` is
    /// given (cycled).
    ///
    /// # Errors
    /// As the implementation's (an identity undefined at a drawn time).
    fn sample<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        n: usize,
        times: Option<&[f64]>,
    ) -> Result<Batch>;
}

impl<T: Score + Sample> BatchSource for BatchSampler<'_, T> {
    fn sample<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        n: usize,
        times: Option<&[f64]>,
    ) -> Result<Batch> {
        BatchSampler::sample(self, rng, n, times)
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

/// The learned-weight MIX loss `(1/n) Σᵢ λᵢ ‖sᵢ − yᵢ‖²`, `yᵢ = Bᵢ + wᵢ (Aᵢ − Bᵢ)`,
/// `wᵢ = sigmoid(⟨c, φᵢ⟩)`, on tensors `s, A, B: [n, d]`, `φ: [n, K]`, `c: [K]`, `λ: [n]`; a
/// scalar tensor whose graph reaches both `s` and `c` ([`crate::sbi::LearnedWeight`]).
///
/// # Errors
/// Shape mismatches.
pub fn learned_mix_loss(
    score: &Tensor,
    dsm: &Tensor,
    ltsm: &Tensor,
    features: &Tensor,
    coefficients: &Tensor,
    lambda: &Tensor,
) -> Result<Tensor> {
    let g = features.matmul(&coefficients.unsqueeze(1)?)?;
    let w = (g.neg()?.exp()? + 1.0)?.recip()?;
    let target = (ltsm + (dsm - ltsm)?.broadcast_mul(&w)?)?;
    weighted_loss(score, &target, lambda)
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

    fn dsm(target: &GaussianMixture) -> LossConfig {
        LossConfig::for_mixture(ScoreIdentity::Dsi, Weighting::Uniform, target).expect("loss")
    }

    #[test]
    fn dsm_target_is_minus_eps_over_sigma() {
        // For DSM, L = (α x0 − x_t)/σ² = −ε/σ; check E over a batch: L σ + ... via identity.
        let target = named::eight_modes();
        let model = ModelConfig::default();
        let s = BatchSampler::new(&target, &dsm(&target), &model).expect("sampler");
        let mut rng = tsm_core::rng::stream(1, 0);
        let b = s.sample(&mut rng, 2000, None).expect("batch");
        // (σ L)² averaged is E ε² = 1 per coordinate; standard error √(2/4000) ≈ 0.022.
        let sched = model.schedule;
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
            ..dsm(&target)
        };
        assert!(BatchSampler::new(&target, &loss, &model).is_err());
        assert!(BatchSampler::new(&target, &dsm(&target), &model).is_ok());
    }

    #[test]
    fn the_config_is_resolved_from_the_target() {
        let target = named::hard_mixture_diff_var();
        let v = TargetVariances::of_mixture(&target).expect("variances");
        assert_eq!(v.sigma_data_sq(), target.variance_per_dim());
        assert_eq!(v.sigma_mode_sq(), Some(target.mode_variance()));
        let kappa_bar = "kappa_bar".parse().expect("parse");
        let loss = LossConfig::new(kappa_bar, Weighting::TsmOptimal, &v).expect("loss");
        assert_eq!(
            loss.identity,
            ScoreIdentity::kappa_bar(target.mode_variance())
        );
        assert_eq!(loss.sigma_data_sq, target.variance_per_dim());
        // A target without σ_mode²: κ̄ needs the user's number.
        let no_mode = TargetVariances::new(1.0, None).expect("variances");
        let err = LossConfig::new(kappa_bar, Weighting::Uniform, &no_mode).unwrap_err();
        assert!(err.to_string().contains("kappa_bar=V"), "{err}");
        let given = LossConfig::new(ScoreIdentity::kappa_bar(0.3), Weighting::Uniform, &no_mode)
            .expect("given");
        assert_eq!(given.identity, ScoreIdentity::kappa_bar(0.3));
    }

    #[test]
    fn swapped_or_bad_variances_are_rejected() {
        let target = named::eight_modes();
        let (v, vm) = (target.variance_per_dim(), target.mode_variance());
        assert!(vm < v);
        assert!(matches!(
            TargetVariances::new(vm, Some(v)),
            Err(Error::Core(tsm_core::Error::Unordered { .. }))
        ));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(TargetVariances::new(bad, None).is_err(), "{bad}");
            assert!(TargetVariances::new(1.0, Some(bad)).is_err(), "{bad}");
        }
        // A single Gaussian: σ_mode² = σ_data² exactly.
        let g = named::unit_gaussian();
        assert!(TargetVariances::of_mixture(&g).is_ok());
        // A loss with a bad σ_data² does not build a sampler.
        let model = ModelConfig::default();
        let loss = LossConfig {
            sigma_data_sq: -1.0,
            ..dsm(&target)
        };
        assert!(BatchSampler::new(&target, &loss, &model).is_err());
    }
}
