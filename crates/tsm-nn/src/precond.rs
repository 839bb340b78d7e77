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
//! | `Epsilon` (`s = −ε_θ/σ_t`, Ho et al. 2020) | 1 | `−1/σ_t` | 0 | 0 |
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

use std::fmt;
use std::str::FromStr;

use tsm_core::choice::{split_value, unknown, Choice};
use tsm_core::schedule::Schedule;

use crate::Result;

/// How the network output becomes a score (see the [module docs](self)).
///
/// As a [`Choice`] it parses from and prints as `score`, `epsilon`, `target_scaled`,
/// `preconditioned` (`σ_data²` taken from the target by [`Parameterisation::resolve`]) or
/// `preconditioned=V` (`σ_data² = V`); numbers print in Rust's shortest round-trip form.
///
/// ```
/// use tsm_nn::Parameterisation;
/// let p: Parameterisation = "preconditioned".parse()?;
/// assert_eq!(p.resolve(0.25)?, Parameterisation::preconditioned(0.25));
/// assert_eq!(p.resolve(0.25)?.to_string(), "preconditioned=0.25");
/// assert!("x0".parse::<Parameterisation>().is_err()); // lists the valid names
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Parameterisation {
    /// `s = F`.
    Score,
    /// `s = −F/σ_t` (ε-prediction).
    Epsilon,
    /// `s = α_t⁻¹ ∇log p_0(x) + F` (paper Cor. 2.4); needs the target's score at the input.
    TargetScaled,
    /// App. D preconditioning with `σ_tar² = sigma_data_sq`.
    Preconditioned {
        /// `σ_tar²`, the target's variance per dimension; `None`: take it from the target
        /// ([`Parameterisation::resolve`]).
        sigma_data_sq: Option<f64>,
    },
}

impl Parameterisation {
    /// App. D preconditioning with a given `σ_data²` (the resolved form of
    /// `preconditioned=V`).
    pub const fn preconditioned(sigma_data_sq: f64) -> Self {
        Self::Preconditioned {
            sigma_data_sq: Some(sigma_data_sq),
        }
    }

    /// Fills in a `σ_data²` left to the target; every other parameterisation, and a
    /// preconditioning that already has its number, is returned unchanged.
    ///
    /// # Errors
    /// [`tsm_core::Error::NonPositive`] when the variance filled in is not finite and positive.
    pub fn resolve(self, sigma_data_sq: f64) -> Result<Self> {
        Ok(match self {
            Self::Preconditioned {
                sigma_data_sq: None,
            } => Self::preconditioned(positive(sigma_data_sq)?),
            other => other,
        })
    }

    /// Whether every number the parameterisation needs is set.
    pub fn is_resolved(&self) -> bool {
        !matches!(
            self,
            Self::Preconditioned {
                sigma_data_sq: None
            }
        )
    }

    /// Short name, without the number.
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
    ///
    /// # Errors
    /// [`tsm_core::Error::Unresolved`] for a preconditioning whose `σ_data²` was left to the
    /// target and not filled in by [`Parameterisation::resolve`];
    /// [`tsm_core::Error::NonPositive`] for a bad `σ_data²`.
    pub fn coefficients(
        &self,
        schedule: &(impl Schedule + ?Sized),
        t: f64,
    ) -> Result<OutputCoefficients> {
        let (alpha, sigma) = (schedule.alpha(t), schedule.sigma(t));
        Ok(match *self {
            Self::Score => OutputCoefficients::IDENTITY,
            Self::Epsilon => OutputCoefficients {
                c_out: -1.0 / sigma,
                ..OutputCoefficients::IDENTITY
            },
            Self::TargetScaled => OutputCoefficients {
                c_score: 1.0 / alpha,
                ..OutputCoefficients::IDENTITY
            },
            Self::Preconditioned { sigma_data_sq } => {
                let v = positive(sigma_data_sq.ok_or(tsm_core::Error::Unresolved {
                    name: "preconditioned",
                    quantity: "σ_data², the target's variance per dimension",
                    hint: "resolve it from the target (`Parameterisation::resolve`) or give it \
                           as `preconditioned=V`",
                })?)?;
                OutputCoefficients {
                    c_in: c_in(alpha, sigma, v),
                    c_out: c_out(alpha, sigma, v),
                    c_skip: c_skip(alpha, sigma, v),
                    c_score: 0.0,
                }
            }
        })
    }
}

fn positive(v: f64) -> Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(tsm_core::Error::NonPositive {
            name: "sigma_data_sq",
            value: v,
        }
        .into())
    }
}

impl Choice for Parameterisation {
    const KIND: &'static str = "parameterisation";
    const NAMES: &'static [&'static str] = &[
        "score",
        "epsilon",
        "target_scaled",
        "preconditioned",
        "preconditioned=V",
    ];
}

impl FromStr for Parameterisation {
    type Err = tsm_core::Error;

    /// # Errors
    /// [`tsm_core::Error::UnknownName`] listing the valid names;
    /// [`tsm_core::Error::NonPositive`] for `preconditioned=V` with `V` not finite and positive.
    fn from_str(s: &str) -> Result<Self, tsm_core::Error> {
        Ok(match split_value::<Self>(s)? {
            ("score", None) => Self::Score,
            ("epsilon", None) => Self::Epsilon,
            ("target_scaled", None) => Self::TargetScaled,
            ("preconditioned", None) => Self::Preconditioned {
                sigma_data_sq: None,
            },
            ("preconditioned", Some(v)) if v.is_finite() && v > 0.0 => Self::preconditioned(v),
            ("preconditioned", Some(v)) => {
                return Err(tsm_core::Error::NonPositive {
                    name: "sigma_data_sq",
                    value: v,
                })
            }
            _ => return Err(unknown::<Self>(s)),
        })
    }
}

impl fmt::Display for Parameterisation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Preconditioned {
                sigma_data_sq: Some(v),
            } => write!(f, "preconditioned={v}"),
            other => f.write_str(other.name()),
        }
    }
}

tsm_core::serde_via_str!(Parameterisation);

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
        for s in AnySchedule::ALL {
            for &t in &[0.05, 0.3, 0.7, 0.95] {
                for &v in &[0.25, 1.0, 4.0] {
                    let c = Parameterisation::preconditioned(v)
                        .coefficients(&s, t)
                        .expect("resolved");
                    let (a, sg) = (s.alpha(t), s.sigma(t));
                    let y = 0.7;
                    let exact = -y / (a * a * v + sg * sg);
                    assert!((c.apply(0.0, y, 0.0) - exact).abs() < 1e-12 * exact.abs());
                    // Unit effective weight λ c_out² = 1 (App. D, principle iii).
                    let eff = lambda(a, sg, v) * c.c_out * c.c_out;
                    assert!((eff - 1.0).abs() < 1e-12, "{s} t={t} v={v}: {eff}");
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
        let e = Parameterisation::Epsilon.coefficients(&s, t).expect("e");
        // ε-prediction: the score −ε/σ_t.
        assert!((e.apply(0.8, 5.0, 9.0) - (-0.8 / s.sigma(t))).abs() < 1e-14);
        let ts = Parameterisation::TargetScaled
            .coefficients(&s, t)
            .expect("ts");
        assert!((ts.apply(0.8, 5.0, 9.0) - (9.0 / s.alpha(t) + 0.8)).abs() < 1e-14);
        let p = Parameterisation::Score.coefficients(&s, t).expect("p");
        assert_eq!(p.apply(0.8, 5.0, 9.0), 0.8);
    }

    #[test]
    fn names_round_trip_exactly() {
        for p in [
            Parameterisation::Score,
            Parameterisation::Epsilon,
            Parameterisation::TargetScaled,
            Parameterisation::Preconditioned {
                sigma_data_sq: None,
            },
            Parameterisation::preconditioned(0.1 + 0.2),
            Parameterisation::preconditioned(16.25),
        ] {
            let text = p.to_string();
            let back: Parameterisation = text.parse().expect("parse");
            assert_eq!(back, p, "{text}");
            assert_eq!(format!("{back:?}"), format!("{p:?}"), "bits of {text}");
        }
        for name in Parameterisation::NAMES {
            let name = name.replace("=V", "=2");
            assert!(name.parse::<Parameterisation>().is_ok(), "{name}");
        }
        let err = "x0".parse::<Parameterisation>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown parameterisation `x0`; valid names: score, epsilon, target_scaled, \
             preconditioned, preconditioned=V"
        );
        assert!("preconditioned=-1".parse::<Parameterisation>().is_err());
        assert!("score=1".parse::<Parameterisation>().is_err());
    }

    #[test]
    fn an_unresolved_preconditioning_is_a_typed_error() {
        let p: Parameterisation = "preconditioned".parse().expect("parse");
        assert!(!p.is_resolved());
        assert!(matches!(
            p.coefficients(&Cosine, 0.5),
            Err(crate::Error::Core(tsm_core::Error::Unresolved { .. }))
        ));
        let r = p.resolve(0.5).expect("resolve");
        assert!(r.is_resolved() && r.coefficients(&Cosine, 0.5).is_ok());
        assert!(p.resolve(f64::NAN).is_err());
        // A given number wins over the target's.
        assert_eq!(
            Parameterisation::preconditioned(2.0)
                .resolve(0.5)
                .expect("r"),
            Parameterisation::preconditioned(2.0)
        );
    }
}
