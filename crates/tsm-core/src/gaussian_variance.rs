//! Closed-form variances of the Monte Carlo score estimators for a Gaussian target (paper
//! App. C), re-derived, and the matching asymptotic variance of self-normalised importance
//! sampling ([`crate::snis`]).
//!
//! # Setting (App. C)
//! `p_0 = N(0, σ_tar² I_d)`, `Y = α X + σ W`, `W ~ N(0, I_d)`, `α = α_t > 0`, `σ = σ_t`. Write
//! `u = α² σ_tar²` (signal variance) and `D = u + σ²` (the marginal variance, `Y ~ N(0, D I)`).
//! The posterior is
//!
//! ```text
//! p(x | y) = N(x; α σ_tar² y / D, v I),      v = σ_tar² σ² / D.
//! ```
//!
//! # Per-draw variances given `y` (summed over the `d` coordinates)
//! Every identity `L = a (α x − y) + b ∇log p_0(x) = (a α − b/σ_tar²) x − a y` is affine in
//! `x`, with slope `c = a α − b/σ_tar²`, so `Σ_i Var(L_i | y) = d c² v` (independent of `y`):
//!
//! ```text
//! Σ_i Var(L_DSI,i | y) = d α² σ_tar² / (σ² D)      = d α² (σ_tar/σ)² / (α² σ_tar² + σ²)
//! Σ_i Var(L_TSI,i | y) = d σ² / (α² σ_tar² D)      = d (σ/σ_tar)² / (α² (α² σ_tar² + σ²))
//! Σ_i Cov(L_DSI,i, L_TSI,i | y) = −d / D
//! Σ_i Var(L_w,i | y)   = w² V_DSI + (1 − w)² V_TSI + 2 w (1 − w) C  = d (w α/σ² − (1 − w)/(α σ_tar²))² v
//! ```
//!
//! The paper's App. C prints the TSI line without the `1/α²` that `Var(X/(α σ_tar²))` carries
//! (its comparison "DSI ≤ TSI iff σ_tar² ≤ σ²/α" inherits that); with it, DSI has the smaller
//! variance iff `α² σ_tar² ≤ σ²`. The mixture's variance is a quadratic in `w`, minimal and
//! **zero** at
//!
//! ```text
//! κ = σ² / (σ² + α² σ_tar²)          (then L_κ = −y/D = ∇log p_t(y) for every draw).
//! ```
//!
//! # Self-normalised importance sampling
//! With the proposal `q = N(y/α, (σ/α)² I)` of [`crate::snis`], the asymptotic (`K → ∞`)
//! variance of the SNIS estimate is `E_q[w̃² (L − ∇log p_t)²]/K` (`w̃ = p(x|y)/q(x)`). For this
//! target it depends on `y`, through `exp(β y²)` factors; its mean over `y ~ p_t` is, by
//! Gaussian integrals (see `docs/snis.md`),
//!
//! ```text
//! E_y[ K · Var_SNIS(L | y) ] = (Σ_i Var(L_i | y)) · (1 + σ²/(α² σ_tar²))^d
//! E_y[ E_q[w̃²] ]            = (1 + σ²/(α² σ_tar²))^d          (≈ mean of K/ESS for large K)
//! ```
//!
//! an inflation of the exact-posterior variance that is exponential in `d` and diverges as
//! `α_t → 0` — the ESS collapse of the importance-sampling reading of iDEM (paper §2).
//!
//! # References
//! [^1]: De Bortoli et al. (2024), *Target Score Matching*, App. C and §2 (last paragraph).

use crate::identity::Coefficients;
use crate::schedule::{check_time, Schedule};
use crate::{Error, Result};

/// The closed forms of App. C for `p_0 = N(0, σ_tar² I_d)` at one time `t` (see the
/// [module docs](self)).
///
/// # Examples
/// ```
/// use tsm_core::gaussian_variance::GaussianVariance;
/// use tsm_core::schedule::Cosine;
///
/// let g = GaussianVariance::new(32, 1.0, &Cosine, 0.5)?;
/// // The optimal weight κ makes the mixture's variance vanish.
/// assert!(g.mixture(g.kappa())?.abs() < 1e-12);
/// assert!(g.dsi()? > 0.0 && g.tsi()? > 0.0);
/// // DSI is undefined at t = 0 (σ_0 = 0), TSI at t = 1 (α_1 = 0): typed errors.
/// assert!(GaussianVariance::new(1, 1.0, &Cosine, 0.0)?.dsi().is_err());
/// assert!(GaussianVariance::new(1, 1.0, &Cosine, 1.0)?.tsi().is_err());
/// assert!(GaussianVariance::new(1, -1.0, &Cosine, 0.5).is_err());
/// # Ok::<(), tsm_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GaussianVariance {
    dim: usize,
    sigma_tar_sq: f64,
    t: f64,
    alpha: f64,
    sigma_sq: f64,
}

impl GaussianVariance {
    /// The Gaussian case at time `t` of `schedule`.
    ///
    /// # Parameters
    /// - `dim` (`d`): `≥ 1`;
    /// - `sigma_tar_sq` (`σ_tar²`): finite, `> 0`;
    /// - `t`: in `[0, 1]`, with `α_t² σ_tar² + σ_t² > 0`.
    ///
    /// # Errors
    /// [`Error::DimMismatch`] for `d = 0`, [`Error::NonPositive`], [`Error::TimeOutOfRange`].
    pub fn new(
        dim: usize,
        sigma_tar_sq: f64,
        schedule: &(impl Schedule + ?Sized),
        t: f64,
    ) -> Result<Self> {
        if dim == 0 {
            return Err(Error::DimMismatch {
                expected: 1,
                got: 0,
                op: "GaussianVariance::new (dimension)",
            });
        }
        crate::error::positive("sigma_tar_sq", sigma_tar_sq)?;
        check_time(t)?;
        let (alpha, sigma_sq) = (schedule.alpha(t), schedule.sigma_sq(t));
        let g = Self {
            dim,
            sigma_tar_sq,
            t,
            alpha,
            sigma_sq,
        };
        crate::error::positive("α_t² σ_tar² + σ_t²", g.marginal_variance())?;
        Ok(g)
    }

    /// `D = α² σ_tar² + σ²`, the variance per coordinate of `Y ~ p_t`.
    pub fn marginal_variance(&self) -> f64 {
        self.alpha * self.alpha * self.sigma_tar_sq + self.sigma_sq
    }

    /// `v = σ_tar² σ² / D`, the posterior variance per coordinate.
    pub fn posterior_variance(&self) -> f64 {
        self.sigma_tar_sq * self.sigma_sq / self.marginal_variance()
    }

    /// The exact score `∇log p_t(y) = −y/D`, coordinate by coordinate.
    pub fn score(&self, y: f64) -> f64 {
        -y / self.marginal_variance()
    }

    /// The variance-optimal weight `κ = σ²/(σ² + α² σ_tar²)` on `L_DSI` (App. C).
    pub fn kappa(&self) -> f64 {
        self.sigma_sq / self.marginal_variance()
    }

    /// `Σ_i Var(L_DSI,i | y) = d α² σ_tar² / (σ² D)`.
    ///
    /// # Errors
    /// [`Error::UndefinedAt`] where `σ_t = 0`.
    pub fn dsi(&self) -> Result<f64> {
        self.mixture(1.0)
    }

    /// `Σ_i Var(L_TSI,i | y) = d σ² / (α² σ_tar² D)`.
    ///
    /// # Errors
    /// [`Error::UndefinedAt`] where `α_t = 0`.
    pub fn tsi(&self) -> Result<f64> {
        self.mixture(0.0)
    }

    /// `Σ_i Cov(L_DSI,i, L_TSI,i | y) = −d/D` (finite wherever both are defined).
    pub fn covariance(&self) -> f64 {
        -(self.dim as f64) / self.marginal_variance()
    }

    /// `Σ_i Var(L_w,i | y)` for `L_w = w L_DSI + (1 − w) L_TSI`:
    /// `d (w α/σ² − (1 − w)/(α σ_tar²))² v`, i.e. `w² V_DSI + (1 − w)² V_TSI + 2 w (1 − w) C`.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] for `w ∉ [0, 1]`; [`Error::UndefinedAt`] for `w > 0` at `σ_t = 0`
    /// or `w < 1` at `α_t = 0` (as [`crate::identity::ScoreIdentity::Mixture`]).
    pub fn mixture(&self, w: f64) -> Result<f64> {
        if !(0.0..=1.0).contains(&w) {
            return Err(Error::OutOfRange {
                name: "w",
                value: w,
                allowed: "[0, 1]",
            });
        }
        let undefined = |reason| Error::UndefinedAt {
            identity: "gaussian variance",
            t: self.t,
            reason,
        };
        let dsi_slope = if w == 0.0 {
            0.0
        } else if self.sigma_sq == 0.0 {
            return Err(undefined("σ_t = 0 and w > 0"));
        } else {
            w * self.alpha / self.sigma_sq
        };
        let tsi_slope = if w == 1.0 {
            0.0
        } else if self.alpha == 0.0 {
            return Err(undefined("α_t = 0 and w < 1"));
        } else {
            (1.0 - w) / (self.alpha * self.sigma_tar_sq)
        };
        let c = dsi_slope - tsi_slope;
        Ok(self.dim as f64 * c * c * self.posterior_variance())
    }

    /// `Σ_i Var(L_i | y) = d (a α − b/σ_tar²)² v` for any identity with coefficients
    /// `L = a (α x − y) + b ∇log p_0(x)` (DSI, TSI, `κ`, `κ̄`, Phillips, fixed `w`).
    ///
    /// `c.alpha` is taken as given; pass coefficients computed at the same `t`. A slope that
    /// cancels to within rounding of its two terms (`L_κ`, whose coefficients are computed
    /// in another order) is exactly 0: the identity has no variance.
    pub fn identity(&self, c: &Coefficients) -> f64 {
        let (dsi_part, tsi_part) = (c.a * c.alpha, c.b / self.sigma_tar_sq);
        let slope = dsi_part - tsi_part;
        if slope.abs() <= 4.0 * f64::EPSILON * (dsi_part.abs() + tsi_part.abs()) {
            return 0.0;
        }
        self.dim as f64 * slope * slope * self.posterior_variance()
    }

    /// `(1 + σ²/(α² σ_tar²))^d = (D/(α² σ_tar²))^d`: the mean over `y ~ p_t` of `E_q[w̃²]`,
    /// the factor by which SNIS inflates the exact-posterior variance (and, for large `K`,
    /// about the mean of `K/ESS`). `+∞` at `α_t = 0`.
    pub fn snis_inflation(&self) -> f64 {
        let u = self.alpha * self.alpha * self.sigma_tar_sq;
        (self.marginal_variance() / u).powf(self.dim as f64)
    }

    /// `E_y[K · Var_SNIS(L | y)] = (Σ_i Var(L_i | y)) · (1 + σ²/(α² σ_tar²))^d`: the
    /// asymptotic per-proposal SNIS variance of the identity with coefficients `c`, averaged
    /// over `y ~ p_t`. Divide by `K` for the estimator's variance.
    ///
    /// Zero for `L_κ` (every proposal gives the exact score), `+∞` at `α_t = 0` otherwise.
    pub fn snis_identity(&self, c: &Coefficients) -> f64 {
        let v = self.identity(c);
        if v == 0.0 {
            0.0
        } else {
            v * self.snis_inflation()
        }
    }
}
