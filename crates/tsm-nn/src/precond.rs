//! Output parameterisations of the score model: how the network output `F` becomes a score.
//!
//! Every parameterisation here is affine in `F`, so one formula covers them all:
//!
//! ```text
//! s_θ(x, t) = c_skip(t) · x + c_out(t) · F_θ(c_in(t) · x, t) + c_score(t) · ∇log p_0(x)
//! ```
//!
//! | [`Parameterisation`] | `c_in` | `c_out` | `c_skip` | `c_score` |
//! |---|---|---|---|---|
//! | `Score` (plain) | 1 | 1 | 0 | 0 |
//! | `Epsilon` (`s = −ε_θ/σ_t`, Ho et al.; paper `003` §7) | 1 | `−1/σ_t` | 0 | 0 |
//! | `TargetScaled` (Cor. 2.4: `s = α_t⁻¹ ∇log p_0(x) + ε_θ(x)`) | 1 | 1 | 0 | `1/α_t` |
//! | `Preconditioned` (App. D) | `1/√(σ² + α²v)` | `−σ/(α √v √(σ² + α²v))` | `−1/(σ² + α²v)` | 0 |
//!
//! with `α = α_t`, `σ = σ_t`, `v = σ_tar²` the target's variance per dimension.
//!
//! ## Which reading of Appendix D
//! App. D follows Karras et al. (2022, App. B.6) for the TSM loss of `Y = αX + W` with a
//! Gaussian `p_X = N(0, σ_tar² I)`: `s(y) = c_o F(c_i y) + c_s y`, loss weight `λ`. Rescaling
//! to Karras' `x_0`-prediction form (its eq. 27) gives `c_i = 1/√(σ² + α²σ_tar²)`,
//! `c_o = −σ/[α σ_tar (σ² + α²σ_tar²)^{1/2}]`, `c_s = −(ασ_tar)⁻² c'_s = −1/(σ² + α²σ_tar²)`
//! and `λ = α²σ_tar²(σ² + α²σ_tar²)/σ²` (the TSM-optimal weighting). We implement these
//! coefficients. The paper's last displayed line writes the skip term as
//! `−(1/α) α² y/(α²σ_tar² + σ²)`, i.e. `c_s = −α/(…)`; that contradicts eq. 27 and would not
//! give the exact Gaussian score `−y/(σ² + α²σ_tar²)` at `F = 0`, so we read it as a typo. At
//! `F = 0` our model is exactly the Gaussian score, and `λ c_o² = 1` (unit effective weight).
//! The network is conditioned on `t` through the time embedding rather than on Karras'
//! `c_noise(σ)`.
//!
//! # References
//! [^1]: De Bortoli et al. (2024), *Target Score Matching*, Cor. 2.4 and App. D (eq. 27).
//! [^2]: Karras et al. (2022), *Elucidating the design space…*, App. B.6.

use serde::{Deserialize, Serialize};
use tsm_core::schedule::Schedule;

use crate::{Error, Result};

/// How the network output becomes a score (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Parameterisation {
    /// `s = F`.
    Score,
    /// `s = −F/σ_t` (ε-prediction).
    Epsilon,
    /// `s = α_t⁻¹ ∇log p_0(x) + F` (paper Cor. 2.4); needs the target's score at the input.
    TargetScaled,
    /// App. D preconditioning with `σ_tar² = sigma_data_sq`.
    Preconditioned {
        /// `σ_tar²`, the target's variance per dimension.
        sigma_data_sq: f64,
    },
}

impl Parameterisation {
    /// The names [`Parameterisation::by_name`] accepts.
    pub const NAMES: [&'static str; 4] = ["score", "epsilon", "target_scaled", "preconditioned"];

    /// Looks a parameterisation up by name; `preconditioned` takes the target's `σ_data²`.
    ///
    /// # Errors
    /// [`Error::Config`] listing the valid names.
    pub fn by_name(name: &str, sigma_data_sq: f64) -> Result<Self> {
        match name {
            "score" => Ok(Self::Score),
            "epsilon" => Ok(Self::Epsilon),
            "target_scaled" => Ok(Self::TargetScaled),
            "preconditioned" => Ok(Self::Preconditioned { sigma_data_sq }),
            _ => Err(Error::config(format!(
                "unknown parameterisation `{name}`; valid: {}",
                Self::NAMES.join(", ")
            ))),
        }
    }

    /// Short name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Score => "score",
            Self::Epsilon => "epsilon",
            Self::TargetScaled => "target_scaled",
            Self::Preconditioned { .. } => "preconditioned",
        }
    }

    /// Whether the model needs `∇log p_0` at its input (only [`Self::TargetScaled`]).
    pub fn needs_target_score(&self) -> bool {
        matches!(self, Self::TargetScaled)
    }

    /// The coefficients at time `t` (see the table in the [module docs](self)).
    pub fn coefficients(&self, schedule: &(impl Schedule + ?Sized), t: f64) -> OutputCoefficients {
        let (alpha, sigma) = (schedule.alpha(t), schedule.sigma(t));
        match *self {
            Self::Score => OutputCoefficients::IDENTITY,
            Self::Epsilon => OutputCoefficients {
                c_out: -1.0 / sigma,
                ..OutputCoefficients::IDENTITY
            },
            Self::TargetScaled => OutputCoefficients {
                c_score: 1.0 / alpha,
                ..OutputCoefficients::IDENTITY
            },
            Self::Preconditioned { sigma_data_sq } => OutputCoefficients {
                c_in: c_in(alpha, sigma, sigma_data_sq),
                c_out: c_out(alpha, sigma, sigma_data_sq),
                c_skip: c_skip(alpha, sigma, sigma_data_sq),
                c_score: 0.0,
            },
        }
    }
}

/// `s = c_skip x + c_out F(c_in x, t) + c_score ∇log p_0(x)` at one time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutputCoefficients {
    /// Input scale `c_in`.
    pub c_in: f64,
    /// Output scale `c_out`.
    pub c_out: f64,
    /// Skip coefficient `c_skip`.
    pub c_skip: f64,
    /// Coefficient `c_score` of the target score at the input.
    pub c_score: f64,
}

impl OutputCoefficients {
    /// `s = F`.
    pub const IDENTITY: Self = Self {
        c_in: 1.0,
        c_out: 1.0,
        c_skip: 0.0,
        c_score: 0.0,
    };

    /// The score for one coordinate from the network output `f`, the input `x` and the target
    /// score `s0` at `x`.
    #[inline(always)]
    pub fn apply(&self, f: f64, x: f64, s0: f64) -> f64 {
        self.c_skip * x + self.c_out * f + self.c_score * s0
    }
}

/// App. D `c_in = 1/√(σ² + α²σ_tar²)`: unit-variance network input for a Gaussian target.
pub fn c_in(alpha: f64, sigma: f64, sigma_data_sq: f64) -> f64 {
    1.0 / (sigma * sigma + alpha * alpha * sigma_data_sq).sqrt()
}

/// App. D `c_out = −σ/[α σ_tar (σ² + α²σ_tar²)^{1/2}]` (from eq. 27: `c_o = −c'_o/(ασ_tar)²`).
pub fn c_out(alpha: f64, sigma: f64, sigma_data_sq: f64) -> f64 {
    -sigma / (alpha * sigma_data_sq.sqrt() * (sigma * sigma + alpha * alpha * sigma_data_sq).sqrt())
}

/// App. D `c_skip = −1/(σ² + α²σ_tar²)` (from eq. 27: `c_s = −c'_s/(ασ_tar)²`).
pub fn c_skip(alpha: f64, sigma: f64, sigma_data_sq: f64) -> f64 {
    -1.0 / (sigma * sigma + alpha * alpha * sigma_data_sq)
}

/// App. D loss weight `λ = α²σ_tar²(σ² + α²σ_tar²)/σ²` (the TSM-optimal weighting).
pub fn lambda(alpha: f64, sigma: f64, sigma_data_sq: f64) -> f64 {
    let a2v = alpha * alpha * sigma_data_sq;
    a2v * (sigma * sigma + a2v) / (sigma * sigma)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsm_core::schedule::{AnySchedule, Cosine};

    #[test]
    fn preconditioned_model_at_zero_output_is_the_gaussian_score() {
        // For p_0 = N(0, v), p_t = N(0, α²v + σ²) and ∇log p_t(y) = −y/(α²v + σ²).
        for name in AnySchedule::NAMES {
            let s = AnySchedule::by_name(name).expect("schedule");
            for &t in &[0.05, 0.3, 0.7, 0.95] {
                for &v in &[0.25, 1.0, 4.0] {
                    let c =
                        Parameterisation::Preconditioned { sigma_data_sq: v }.coefficients(&s, t);
                    let (a, sg) = (s.alpha(t), s.sigma(t));
                    let y = 0.7;
                    let exact = -y / (a * a * v + sg * sg);
                    assert!((c.apply(0.0, y, 0.0) - exact).abs() < 1e-12 * exact.abs());
                    // Unit effective weight λ c_out² = 1 (App. D, principle iii).
                    let eff = lambda(a, sg, v) * c.c_out * c.c_out;
                    assert!((eff - 1.0).abs() < 1e-12, "{name} t={t} v={v}: {eff}");
                    // Unit input variance: c_in² (α²v + σ²) = 1 (principle i).
                    let var_in = c.c_in * c.c_in * (a * a * v + sg * sg);
                    assert!((var_in - 1.0).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn preconditioned_regression_target_has_unit_variance() {
        // Principle (ii): the network's effective target (L − c_skip y)/c_out with L the TSM
        // target −X/(α v) has unit variance under p(x, y) for a Gaussian target. Closed form:
        // Var[(−X/(αv) + y/(σ² + α²v))/c_out] with Y = αX + σZ.
        let (s, t, v) = (Cosine, 0.4, 2.0);
        let (a, sg) = (s.alpha(t), s.sigma(t));
        let d = sg * sg + a * a * v;
        // Coefficients of X and Z in (−X/(αv) + (αX + σZ)/d).
        let cx = -1.0 / (a * v) + a / d;
        let cz = sg / d;
        let var = (cx * cx * v + cz * cz) / c_out(a, sg, v).powi(2);
        assert!((var - 1.0).abs() < 1e-12, "{var}");
    }

    #[test]
    fn epsilon_and_target_scaled_algebra() {
        let (s, t) = (Cosine, 0.3);
        let e = Parameterisation::Epsilon.coefficients(&s, t);
        // ε-prediction: the score −ε/σ_t.
        assert!((e.apply(0.8, 5.0, 9.0) - (-0.8 / s.sigma(t))).abs() < 1e-14);
        let ts = Parameterisation::TargetScaled.coefficients(&s, t);
        assert!((ts.apply(0.8, 5.0, 9.0) - (9.0 / s.alpha(t) + 0.8)).abs() < 1e-14);
        let p = Parameterisation::Score.coefficients(&s, t);
        assert_eq!(p.apply(0.8, 5.0, 9.0), 0.8);
        assert!(Parameterisation::by_name("x0", 1.0).is_err());
    }
}
