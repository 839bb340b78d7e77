//! Self-normalised importance sampling (SNIS) of the noised score, for a target known only
//! through an unnormalised log density and its score (paper §2, last paragraph; the estimator
//! of iDEM, Akhound-Sadegh et al. 2024, eq. 8, read as importance sampling).
//!
//! # The estimator
//!
//! The posterior is `p(x_0 | x_t) ∝ p_0(x_0) N(x_t; α_t x_0, σ_t² I)`. The proposal
//!
//! ```text
//! q(x_0) = N(x_0; x_t/α_t, (σ_t/α_t)² I) = α_t^d · N(x_t; α_t x_0, σ_t² I)
//! ```
//!
//! is, as a function of `x_0`, **exactly** the likelihood factor of the posterior (complete
//! the square: `|x_t − α_t x_0|²/σ_t² = |x_0 − x_t/α_t|²/(σ_t/α_t)²`). Hence the importance
//! weight is the prior alone,
//!
//! ```text
//! w(x_0) = p(x_0 | x_t) / q(x_0) ∝ p_0(x_0),      log w_i = log p_0(x_0ⁱ) + C,
//! ```
//!
//! and for any identity `L = a (α_t x_0 − x_t) + b ∇log p_0(x_0)` of [`crate::identity`], with
//! `K` proposals `x_0ⁱ ~ q` and normalised weights `w̄_i = w_i / Σ_k w_k`,
//!
//! ```text
//! ∇log p_t(x_t) ≈ ĥ = Σ_i w̄_i L(x_0ⁱ, x_t, t)
//! ESS            = (Σ w_i)² / Σ w_i²                       (K for equal weights, 1 at worst)
//! SE(ĥ_j)        = √( Σ_i w̄_i² (L_j(x_0ⁱ) − ĥ_j)² )          (delta method for a ratio)
//! log p_t(x_t)   ≈ log((1/K) Σ_i w_i) − d log α_t + C       (p_t(x_t) = α_t^{−d} E_q[p_0(X)])
//! ```
//!
//! Weights are formed by log-sum-exp (`w_i = exp(log w_i − max_k log w_k)`), so a constant
//! offset `C` in the log density never overflows or underflows. `L` is affine in `(x_0, ∇log
//! p_0(x_0))`, so the estimator keeps per coordinate the weighted means of `x_0` and of the
//! score and their three weighted central second moments; every identity's estimate and
//! standard error follow from these exactly, and several identities cost no more than one.
//!
//! The delta-method standard error is asymptotic (`K → ∞`); when the ESS is small it is
//! itself unreliable (with one dominant weight it tends to 0), so read it with the ESS. For a
//! Gaussian target, App. C's posterior variance times `(1 + σ_t²/(α_t² σ_tar²))^d` is the
//! asymptotic SNIS variance averaged over `x_t ~ p_t`
//! ([`crate::gaussian_variance::GaussianVariance::snis_inflation`]): it grows exponentially in
//! `d` and as `α_t → 0`, the ESS collapses accordingly.
//!
//! # Parallel use
//! One [`ImportanceSampledScore`] per rayon work item (it is `Clone + Send`), reused across
//! the points of that item, with the item's generator from [`crate::rng::stream`]. Its
//! `run` takes the arguments of [`MonteCarloScore::run`](crate::estimator::MonteCarloScore::run),
//! checks the coefficients against `(schedule, t)` in the same way, and its accessors return
//! the same errors (no estimate yet, an index out of range): see
//! [the estimator module](crate::estimator#one-shape-for-both-estimators).
//!
//! ```
//! use tsm_core::identity::ScoreIdentity;
//! use tsm_core::schedule::Cosine;
//! use tsm_core::snis::ImportanceSampledScore;
//! use tsm_core::target::{Dim, LogDensity, Score};
//!
//! /// N(0, I_d), known up to its normalising constant.
//! struct StdNormal(usize);
//! impl Dim for StdNormal {
//!     fn dim(&self) -> usize { self.0 }
//! }
//! impl Score for StdNormal {
//!     fn score(&self, x: &[f64], out: &mut [f64]) {
//!         for (o, &v) in out.iter_mut().zip(x) { *o = -v; }
//!     }
//! }
//! impl LogDensity for StdNormal {
//!     fn log_density(&self, x: &[f64]) -> f64 { -0.5 * x.iter().map(|v| v * v).sum::<f64>() }
//! }
//!
//! let t = 0.3;
//! let coeffs = [ScoreIdentity::Dsi.coefficients(&Cosine, t)?,
//!               ScoreIdentity::Tsi.coefficients(&Cosine, t)?];
//! let mut snis = ImportanceSampledScore::new(2, &coeffs);
//! let mut rng = tsm_core::rng::stream(7, 0);
//! snis.run(&StdNormal(2), &Cosine, t, &[0.5, -0.2], 4096, &mut rng)?;
//! // For N(0, I) under a variance-preserving schedule, ∇log p_t(x) = −x.
//! for k in 0..2 {
//!     assert!((snis.mean(k, 0)? + 0.5).abs() < 6.0 * snis.std_err(k, 0)?);
//! }
//! assert!(snis.ess()? > 1000.0 && snis.ess()? <= 4096.0);
//! // α_1 = 0: the proposal N(x_t/α_t, …) is undefined, a typed error.
//! assert!(snis.run(&StdNormal(2), &Cosine, 1.0, &[0.5, -0.2], 16, &mut rng).is_err());
//! # Ok::<(), tsm_core::Error>(())
//! ```
//!
//! # References
//! [^1]: De Bortoli et al. (2024), *Target Score Matching*, §2 (last paragraph), eq. 18.
//! [^2]: Akhound-Sadegh et al. (2024), *Iterated denoising energy matching*, eq. 8.
//! [^3]: Owen (2013), *Monte Carlo theory, methods and examples*, §9.2 (SNIS, delta method,
//!       effective sample size).

use rand::Rng;
use rand_distr::StandardNormal;

use crate::estimator::{check_coefficients, check_index};
use crate::identity::Coefficients;
use crate::schedule::{check_time, Schedule};
use crate::target::{check_dim, LogDensity};
use crate::{Error, Result};

/// Reusable SNIS estimator of `∇log p_t(x_t)` for several identities on the same proposals
/// (see the [module docs](self) for the formulas).
///
/// Buffers grow to the largest `K` seen and are then reused: nothing is allocated per
/// proposal or per point.
#[derive(Debug, Clone)]
pub struct ImportanceSampledScore {
    dim: usize,
    coefficients: Vec<Coefficients>,
    // Proposals and their scores, indexed [proposal * dim + coordinate].
    x0: Vec<f64>,
    score0: Vec<f64>,
    log_w: Vec<f64>,
    // Per coordinate: weighted means of x_0 and ∇log p_0, and Σ w̄² (·)(·) central moments.
    mean_x: Vec<f64>,
    mean_s: Vec<f64>,
    m_xx: Vec<f64>,
    m_xs: Vec<f64>,
    m_ss: Vec<f64>,
    x_t: Vec<f64>,
    proposals: usize,
    ess: f64,
    log_mean_weight: f64,
    log_alpha: f64,
}

impl ImportanceSampledScore {
    /// An estimator in dimension `dim` for the identities with the given coefficients.
    pub fn new(dim: usize, coefficients: &[Coefficients]) -> Self {
        Self {
            dim,
            coefficients: coefficients.to_vec(),
            x0: Vec::new(),
            score0: Vec::new(),
            log_w: Vec::new(),
            mean_x: vec![0.0; dim],
            mean_s: vec![0.0; dim],
            m_xx: vec![0.0; dim],
            m_xs: vec![0.0; dim],
            m_ss: vec![0.0; dim],
            x_t: vec![0.0; dim],
            proposals: 0,
            ess: 0.0,
            log_mean_weight: f64::NAN,
            log_alpha: f64::NAN,
        }
    }

    /// Replaces the coefficients (e.g. for a new `t`), keeping the buffers. The last run's
    /// estimates belonged to the old time and are dropped.
    ///
    /// # Errors
    /// [`Error::DimMismatch`] if the number of identities changes.
    pub fn set_coefficients(&mut self, coefficients: &[Coefficients]) -> Result<()> {
        check_dim(
            self.coefficients.len(),
            coefficients.len(),
            "ImportanceSampledScore::set_coefficients",
        )?;
        self.coefficients.copy_from_slice(coefficients);
        self.proposals = 0;
        Ok(())
    }

    /// Draws `k` proposals `x_0 ~ N(x_t/α_t, (σ_t/α_t)² I)`, weights them by
    /// `log w = target.log_density(x_0)` (log-sum-exp) and accumulates the weighted moments
    /// from which every identity's estimate, standard error and the ESS follow.
    ///
    /// Proposals with `log w = −∞` (outside the target's support) get weight zero and their
    /// score is never read.
    ///
    /// # Errors
    /// - [`Error::TimeOutOfRange`] for `t ∉ [0, 1]`;
    /// - [`Error::UndefinedAt`] where `α_t = 0` (the proposal is undefined);
    /// - [`Error::OutOfRange`] if a coefficient's `alpha` is not the schedule's `α_t`
    ///   (coefficients computed for another time);
    /// - [`Error::DimMismatch`] if `x_t` or the target has another dimension;
    /// - [`Error::TooFewDraws`] for `k < 2`;
    /// - [`Error::NonFinite`] if `x_t` is not finite, or a log density is NaN or `+∞`, or a
    ///   score with positive weight is not finite;
    /// - [`Error::DegenerateWeights`] if every log-weight is `−∞` (all weights zero).
    ///
    /// After an error there is no estimate (the accessors return errors) until the next
    /// successful run.
    pub fn run<T, S, R>(
        &mut self,
        target: &T,
        schedule: &S,
        t: f64,
        x_t: &[f64],
        k: usize,
        rng: &mut R,
    ) -> Result<()>
    where
        T: LogDensity + ?Sized,
        S: Schedule + ?Sized,
        R: Rng + ?Sized,
    {
        self.proposals = 0;
        check_time(t)?;
        let d = self.dim;
        check_dim(d, x_t.len(), "ImportanceSampledScore::run (x_t)")?;
        check_dim(d, target.dim(), "ImportanceSampledScore::run (target)")?;
        if k < 2 {
            return Err(Error::TooFewDraws {
                op: "ImportanceSampledScore::run",
                needed: 2,
                got: k,
            });
        }
        let (alpha, sigma) = (schedule.alpha(t), schedule.sigma(t));
        if alpha == 0.0 || !alpha.is_finite() || !sigma.is_finite() {
            return Err(Error::UndefinedAt {
                identity: "snis",
                t,
                reason: "α_t = 0: the proposal N(x_t/α_t, (σ_t/α_t)² I) is undefined",
            });
        }
        check_coefficients(&self.coefficients, alpha)?;
        if let Some(&value) = x_t.iter().find(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                op: "ImportanceSampledScore::run (x_t)",
                value,
            });
        }
        self.x_t.copy_from_slice(x_t);
        if self.log_w.len() < k {
            self.x0.resize(k * d, 0.0);
            self.score0.resize(k * d, 0.0);
            self.log_w.resize(k, 0.0);
        }

        // Pass 1: proposals, log-weights, scores.
        let (inv_alpha, scale) = (1.0 / alpha, sigma / alpha);
        let mut max_log_w = f64::NEG_INFINITY;
        for i in 0..k {
            let x0 = &mut self.x0[i * d..(i + 1) * d];
            for (x, &y) in x0.iter_mut().zip(x_t) {
                let z: f64 = rng.sample(StandardNormal);
                *x = y * inv_alpha + scale * z;
            }
            let lw = target.log_density(x0);
            if lw.is_nan() || lw == f64::INFINITY {
                return Err(Error::NonFinite {
                    op: "ImportanceSampledScore::run (log density at a proposal)",
                    value: lw,
                });
            }
            self.log_w[i] = lw;
            max_log_w = max_log_w.max(lw);
            if lw > f64::NEG_INFINITY {
                target.score(x0, &mut self.score0[i * d..(i + 1) * d]);
            }
        }
        if max_log_w == f64::NEG_INFINITY {
            return Err(Error::DegenerateWeights {
                count: k,
                max_log_weight: max_log_w,
            });
        }

        // Pass 2: weights relative to the largest (log-sum-exp), weighted means.
        let (mut sum_w, mut sum_w2) = (0.0, 0.0);
        self.mean_x.fill(0.0);
        self.mean_s.fill(0.0);
        for i in 0..k {
            let w = (self.log_w[i] - max_log_w).exp();
            self.log_w[i] = w; // now the unnormalised weight in (0, 1]
            if w == 0.0 {
                continue;
            }
            sum_w += w;
            sum_w2 += w * w;
            let (x0, s0) = (
                &self.x0[i * d..(i + 1) * d],
                &self.score0[i * d..(i + 1) * d],
            );
            for j in 0..d {
                self.mean_x[j] += w * x0[j];
                self.mean_s[j] += w * s0[j];
            }
        }
        // sum_w ≥ 1: the largest weight is exactly exp(0).
        let inv_sum = 1.0 / sum_w;
        self.mean_x.iter_mut().for_each(|m| *m *= inv_sum);
        self.mean_s.iter_mut().for_each(|m| *m *= inv_sum);
        if let Some(&value) = self.mean_s.iter().find(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                op: "ImportanceSampledScore::run (score at a weighted proposal)",
                value,
            });
        }

        // Pass 3: central second moments with squared normalised weights.
        self.m_xx.fill(0.0);
        self.m_xs.fill(0.0);
        self.m_ss.fill(0.0);
        for i in 0..k {
            let w = self.log_w[i] * inv_sum;
            if w == 0.0 {
                continue;
            }
            let w2 = w * w;
            let (x0, s0) = (
                &self.x0[i * d..(i + 1) * d],
                &self.score0[i * d..(i + 1) * d],
            );
            for j in 0..d {
                let (dx, ds) = (x0[j] - self.mean_x[j], s0[j] - self.mean_s[j]);
                self.m_xx[j] += w2 * dx * dx;
                self.m_xs[j] += w2 * dx * ds;
                self.m_ss[j] += w2 * ds * ds;
            }
        }
        self.ess = sum_w * sum_w / sum_w2;
        self.log_mean_weight = max_log_w + (sum_w / k as f64).ln();
        self.log_alpha = alpha.ln();
        self.proposals = k;
        Ok(())
    }

    /// Number of proposals `K` in the last successful [`run`](Self::run) (0 when there is
    /// no estimate).
    pub fn proposals(&self) -> usize {
        self.proposals
    }

    /// Number of identities.
    pub fn len(&self) -> usize {
        self.coefficients.len()
    }

    /// True if there are no identities.
    pub fn is_empty(&self) -> bool {
        self.coefficients.is_empty()
    }

    /// The dimension `d`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// `Ok(())` once there is an estimate.
    fn estimated(&self, op: &'static str) -> Result<()> {
        if self.proposals == 0 {
            Err(Error::NoEstimate { op })
        } else {
            Ok(())
        }
    }

    /// The coefficients of identity `k`, once there is an estimate and `k`, `j` are in range.
    fn at(&self, k: usize, j: usize, op: &'static str) -> Result<&Coefficients> {
        self.estimated(op)?;
        check_index(k, self.len(), j, self.dim)?;
        Ok(&self.coefficients[k])
    }

    /// The effective sample size `(Σ w_i)² / Σ w_i²` of the last run, in `[1, K]`.
    ///
    /// # Errors
    /// [`Error::NoEstimate`] when there is no estimate (before a run, after a failed one or
    /// new coefficients).
    pub fn ess(&self) -> Result<f64> {
        self.estimated("ImportanceSampledScore::ess")?;
        Ok(self.ess)
    }

    /// `log p_t(x_t) + C` estimated as `log((1/K) Σ w_i) − d log α_t`, where `C` is the
    /// constant left out of the target's log density (0 if it is normalised).
    ///
    /// Its delta-method standard error is `√((K/ESS − 1)/K)`.
    ///
    /// # Errors
    /// As [`ImportanceSampledScore::ess`].
    pub fn log_marginal(&self) -> Result<f64> {
        self.estimated("ImportanceSampledScore::log_marginal")?;
        Ok(self.log_mean_weight - self.dim as f64 * self.log_alpha)
    }

    /// The estimate `ĥ = Σ w̄_i L(x_0ⁱ)` of identity `k`, coordinate `j`.
    ///
    /// # Errors
    /// [`Error::NoEstimate`] when there is no estimate; [`Error::IndexOutOfRange`] for
    /// `k ≥ len()` or `j ≥ d`.
    pub fn mean(&self, k: usize, j: usize) -> Result<f64> {
        let c = self.at(k, j, "ImportanceSampledScore::mean")?;
        Ok(c.a * (c.alpha * self.mean_x[j] - self.x_t[j]) + c.b * self.mean_s[j])
    }

    /// `Σ w̄_i² (L_j(x_0ⁱ) − ĥ_j)²`: the delta-method variance of identity `k`, coordinate `j`.
    ///
    /// # Errors
    /// As [`ImportanceSampledScore::mean`].
    pub fn variance(&self, k: usize, j: usize) -> Result<f64> {
        let c = self.at(k, j, "ImportanceSampledScore::variance")?;
        Ok(self.variance_of(c, j))
    }

    /// The delta-method variance of the identity with coefficients `c`, coordinate `j`.
    #[inline]
    fn variance_of(&self, c: &Coefficients, j: usize) -> f64 {
        let ax = c.a * c.alpha;
        (ax * ax * self.m_xx[j] + 2.0 * ax * c.b * self.m_xs[j] + c.b * c.b * self.m_ss[j]).max(0.0)
    }

    /// The delta-method standard error of identity `k`, coordinate `j`.
    ///
    /// # Errors
    /// As [`ImportanceSampledScore::mean`].
    pub fn std_err(&self, k: usize, j: usize) -> Result<f64> {
        Ok(self.variance(k, j)?.sqrt())
    }

    /// The estimator's variance `Σ_j SE_j²` (trace over coordinates, as in App. C).
    ///
    /// # Errors
    /// As [`ImportanceSampledScore::mean`].
    pub fn estimator_variance(&self, k: usize) -> Result<f64> {
        let c = self.at(k, 0, "ImportanceSampledScore::estimator_variance")?;
        Ok((0..self.dim).map(|j| self.variance_of(c, j)).sum())
    }

    /// The estimate of identity `k` as a vector.
    ///
    /// # Errors
    /// As [`ImportanceSampledScore::mean`].
    pub fn mean_vec(&self, k: usize) -> Result<Vec<f64>> {
        (0..self.dim).map(|j| self.mean(k, j)).collect()
    }

    /// The standard errors of identity `k` as a vector.
    ///
    /// # Errors
    /// As [`ImportanceSampledScore::mean`].
    pub fn std_err_vec(&self, k: usize) -> Result<Vec<f64>> {
        (0..self.dim).map(|j| self.std_err(k, j)).collect()
    }
}
