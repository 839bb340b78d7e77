//! Score identities as regression targets at a pair `(x_0, x_t)` (paper §4.1).
//!
//! Every identity here is an integrand `L(x_0, x_t, t)` whose posterior mean is the noised
//! score, `∇log p_t(x_t) = ∫ L(x_0, x_t, t) p(x_0|x_t) dx_0`, and which is an affine
//! combination of two pieces:
//!
//! ```text
//! L = a_t · (α_t x_0 − x_t) + b_t · ∇log p_0(x_0)
//! ```
//!
//! | identity | `a_t` | `b_t` | paper |
//! |---|---|---|---|
//! | DSI `∇log p(x_t|x_0) = −(x_t − α_t x_0)/σ_t²` | `1/σ_t²` | `0` | eq. 2 |
//! | TSI `α_t⁻¹ ∇log p_0(x_0)` | `0` | `1/α_t` | eq. 8 |
//! | `L_w = w L_DSI + (1 − w) L_TSI` | `w/σ_t²` | `(1 − w)/α_t` | §4.1 |
//! | `L_κ`, `κ_t = σ_t²/(σ_t² + α_t² v)` | `1/(σ_t² + α_t² v)` | `α_t v/(σ_t² + α_t² v)` | App. C |
//! | Phillips et al. `α_t(x_0 + ∇log p_0(x_0)) − x_t` | `1` | `α_t` | eq. 9 |
//!
//! `v` is `σ_data²` (the target's variance per dimension) for `κ_t` and `σ_mode² = Σ π_i σ_i²`
//! for `κ̄_t`. Writing the `κ` coefficients in closed form, rather than as `κ_t/σ_t²` and
//! `(1 − κ_t)/α_t`, keeps them finite at both ends (`0·∞` never happens).
//!
//! Where each is undefined (for the cosine schedule, `σ_0 = 0` and `α_1 = 0`):
//! - `L_DSI` at `σ_t = 0` (`t = 0`), and a fixed-`w` mixture with `w > 0` there too;
//! - `L_TSI` at `α_t = 0` (`t = 1`), and a fixed-`w` mixture with `w < 1` there too;
//! - `L_κ`, `L_κ̄` and Phillips are finite on all of `[0, 1]`; Phillips is an identity only for
//!   variance-preserving schedules (`σ_t² = 1 − α_t²`), where it is the mixture with
//!   `w = 1 − α_t²`.
//!
//! # References
//! [^1]: De Bortoli et al. (2024), *Target Score Matching*, eqs. 2, 8, 9, §4.1, App. C.
//! [^2]: Phillips et al. (2024), *Particle denoising diffusion sampler*.

use crate::error::unknown_name;
use crate::schedule::Schedule;
use crate::{Error, Result};

/// A score identity used as a regression target (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScoreIdentity {
    /// Denoising score identity, `L_DSI = −(x_t − α_t x_0)/σ_t²` (eq. 2; DSM's target).
    Dsi,
    /// Target score identity, `L_TSI = α_t⁻¹ ∇log p_0(x_0)` (eq. 8; TSM's target).
    Tsi,
    /// A fixed mixture `w L_DSI + (1 − w) L_TSI`, `w ∈ [0, 1]`.
    Mixture {
        /// The weight `w` on `L_DSI`.
        weight: f64,
    },
    /// The mixture with `κ_t = σ_t²/(σ_t² + α_t² σ_data²)`, variance-optimal for a Gaussian
    /// target (App. C).
    Kappa {
        /// `σ_data²`, the target's variance per dimension.
        sigma_data_sq: f64,
    },
    /// The mixture with `κ̄_t = σ_t²/(σ_t² + α_t² σ_mode²)`, `σ_mode² = Σ π_i σ_i²`.
    KappaBar {
        /// `σ_mode²`, the mixture-weighted variance of the modes.
        sigma_mode_sq: f64,
    },
    /// Phillips et al.'s identity `α_t(x_0 + ∇log p_0(x_0)) − x_t` (eq. 9).
    Phillips,
}

/// The coefficients of an identity at one time: `L = a (α x_0 − x_t) + b ∇log p_0(x_0)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coefficients {
    /// `α_t`.
    pub alpha: f64,
    /// Coefficient of `α_t x_0 − x_t`.
    pub a: f64,
    /// Coefficient of `∇log p_0(x_0)`.
    pub b: f64,
}

impl Coefficients {
    /// `L` for one coordinate.
    #[inline(always)]
    pub fn apply(&self, x0: f64, xt: f64, score0: f64) -> f64 {
        self.a * (self.alpha * x0 - xt) + self.b * score0
    }

    /// `L` for a vector: `out[i] = a (α x0[i] − xt[i]) + b score0[i]`.
    ///
    /// The slices must all have the same length (checked in debug builds).
    #[inline]
    pub fn apply_into(&self, x0: &[f64], xt: &[f64], score0: &[f64], out: &mut [f64]) {
        debug_assert!(
            x0.len() == xt.len() && xt.len() == score0.len() && score0.len() == out.len()
        );
        for (((o, &x0), &xt), &s) in out.iter_mut().zip(x0).zip(xt).zip(score0) {
            *o = self.apply(x0, xt, s);
        }
    }
}

impl ScoreIdentity {
    /// The short names of the identities that [`ScoreIdentity::by_name`] resolves.
    pub const NAMES: [&'static str; 5] = ["dsi", "tsi", "kappa", "kappa_bar", "phillips"];

    /// Looks up an identity by short name; `kappa` and `kappa_bar` take the target's
    /// `σ_data²` and `σ_mode²`.
    ///
    /// # Errors
    /// [`Error::UnknownName`] listing [`ScoreIdentity::NAMES`].
    pub fn by_name(name: &str, sigma_data_sq: f64, sigma_mode_sq: f64) -> Result<Self> {
        match name {
            "dsi" | "dsm" => Ok(Self::Dsi),
            "tsi" | "tsm" => Ok(Self::Tsi),
            "kappa" => Ok(Self::Kappa { sigma_data_sq }),
            "kappa_bar" => Ok(Self::KappaBar { sigma_mode_sq }),
            "phillips" => Ok(Self::Phillips),
            _ => Err(unknown_name("identity", name, &Self::NAMES)),
        }
    }

    /// Short name, as used in CSV files (`dsi`, `tsi`, `mixture`, `kappa`, `kappa_bar`, `phillips`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Dsi => "dsi",
            Self::Tsi => "tsi",
            Self::Mixture { .. } => "mixture",
            Self::Kappa { .. } => "kappa",
            Self::KappaBar { .. } => "kappa_bar",
            Self::Phillips => "phillips",
        }
    }

    /// The weight `w_t` on `L_DSI` when the identity is a mixture `w L_DSI + (1 − w) L_TSI`.
    ///
    /// # Errors
    /// As [`ScoreIdentity::coefficients`] for invalid parameters.
    pub fn dsi_weight(&self, schedule: &(impl Schedule + ?Sized), t: f64) -> Result<f64> {
        self.validate(schedule)?;
        let (alpha, sigma_sq) = (schedule.alpha(t), schedule.sigma_sq(t));
        Ok(match *self {
            Self::Dsi => 1.0,
            Self::Tsi => 0.0,
            Self::Mixture { weight } => weight,
            Self::Kappa { sigma_data_sq: v } | Self::KappaBar { sigma_mode_sq: v } => {
                sigma_sq / (sigma_sq + alpha * alpha * v)
            }
            Self::Phillips => 1.0 - alpha * alpha,
        })
    }

    fn validate(&self, schedule: &(impl Schedule + ?Sized)) -> Result<()> {
        match *self {
            Self::Mixture { weight } if !(0.0..=1.0).contains(&weight) => Err(Error::OutOfRange {
                name: "weight",
                value: weight,
                allowed: "[0, 1]",
            }),
            Self::Kappa { sigma_data_sq: v } => {
                crate::error::positive("sigma_data_sq", v).map(drop)
            }
            Self::KappaBar { sigma_mode_sq: v } => {
                crate::error::positive("sigma_mode_sq", v).map(drop)
            }
            Self::Phillips if !schedule.is_variance_preserving() => {
                Err(Error::NotVariancePreserving {
                    identity: "phillips",
                    schedule: schedule.name(),
                })
            }
            _ => Ok(()),
        }
    }

    /// The coefficients `(a_t, b_t)` at time `t` (see the table in the [module docs](self)).
    ///
    /// # Errors
    /// - [`Error::TimeOutOfRange`] for `t ∉ [0, 1]`;
    /// - [`Error::UndefinedAt`] where the identity has no finite value (`L_DSI` at `σ_t = 0`,
    ///   `L_TSI` at `α_t = 0`);
    /// - [`Error::OutOfRange`] / [`Error::NonPositive`] for a bad weight or variance;
    /// - [`Error::NotVariancePreserving`] for Phillips on a VE schedule.
    pub fn coefficients(
        &self,
        schedule: &(impl Schedule + ?Sized),
        t: f64,
    ) -> Result<Coefficients> {
        crate::schedule::check_time(t)?;
        self.validate(schedule)?;
        let alpha = schedule.alpha(t);
        let sigma_sq = schedule.sigma_sq(t);
        let undefined = |reason| Error::UndefinedAt {
            identity: self.name(),
            t,
            reason,
        };
        let (a, b) = match *self {
            Self::Dsi => {
                if sigma_sq == 0.0 {
                    return Err(undefined("σ_t = 0"));
                }
                (1.0 / sigma_sq, 0.0)
            }
            Self::Tsi => {
                if alpha == 0.0 {
                    return Err(undefined("α_t = 0"));
                }
                (0.0, 1.0 / alpha)
            }
            Self::Mixture { weight } => {
                let a = if weight == 0.0 {
                    0.0
                } else if sigma_sq == 0.0 {
                    return Err(undefined("σ_t = 0 and w > 0"));
                } else {
                    weight / sigma_sq
                };
                let b = if weight == 1.0 {
                    0.0
                } else if alpha == 0.0 {
                    return Err(undefined("α_t = 0 and w < 1"));
                } else {
                    (1.0 - weight) / alpha
                };
                (a, b)
            }
            Self::Kappa { sigma_data_sq: v } | Self::KappaBar { sigma_mode_sq: v } => {
                let denom = sigma_sq + alpha * alpha * v;
                (1.0 / denom, alpha * v / denom)
            }
            Self::Phillips => (1.0, alpha),
        };
        Ok(Coefficients { alpha, a, b })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{Cosine, LinearVp, Ve};

    const KAPPA: ScoreIdentity = ScoreIdentity::Kappa { sigma_data_sq: 0.7 };

    #[test]
    fn mixture_coefficients_are_the_convex_combination() {
        let s = Cosine;
        for &t in &[0.1, 0.5, 0.9] {
            let d = ScoreIdentity::Dsi.coefficients(&s, t).unwrap();
            let ts = ScoreIdentity::Tsi.coefficients(&s, t).unwrap();
            for id in [
                KAPPA,
                ScoreIdentity::Mixture { weight: 0.3 },
                ScoreIdentity::Phillips,
            ] {
                let w = id.dsi_weight(&s, t).unwrap();
                let c = id.coefficients(&s, t).unwrap();
                assert!(
                    (c.a - w * d.a).abs() < 1e-12 * c.a.abs().max(1.0),
                    "{id:?} a at {t}"
                );
                assert!(
                    (c.b - (1.0 - w) * ts.b).abs() < 1e-12 * c.b.abs().max(1.0),
                    "{id:?} b at {t}"
                );
            }
        }
    }

    #[test]
    fn finite_ends_are_finite_and_undefined_ends_are_errors() {
        let s = Cosine;
        // L_κ, L_κ̄ and Phillips are finite at both ends; their limits are the TSI end (w = 0)
        // at t = 0 and the DSI end (w = 1) at t = 1.
        for id in [
            KAPPA,
            ScoreIdentity::KappaBar { sigma_mode_sq: 0.3 },
            ScoreIdentity::Phillips,
        ] {
            for t in [0.0, 1.0] {
                let c = id.coefficients(&s, t).unwrap();
                assert!(c.a.is_finite() && c.b.is_finite(), "{id:?} at {t}");
            }
            assert_eq!(id.dsi_weight(&s, 0.0).unwrap(), 0.0);
            assert_eq!(id.dsi_weight(&s, 1.0).unwrap(), 1.0);
        }
        // (1 − κ_t)/α_t → 0 at t = 1 rather than 0·∞.
        assert_eq!(KAPPA.coefficients(&s, 1.0).unwrap().b, 0.0);
        assert!(matches!(
            ScoreIdentity::Dsi.coefficients(&s, 0.0),
            Err(Error::UndefinedAt { .. })
        ));
        assert!(ScoreIdentity::Dsi.coefficients(&s, 1.0).is_ok());
        assert!(matches!(
            ScoreIdentity::Tsi.coefficients(&s, 1.0),
            Err(Error::UndefinedAt { .. })
        ));
        assert!(ScoreIdentity::Tsi.coefficients(&s, 0.0).is_ok());
        // Pure endpoints of a fixed mixture inherit the defined side only.
        assert!(ScoreIdentity::Mixture { weight: 0.0 }
            .coefficients(&s, 0.0)
            .is_ok());
        assert!(ScoreIdentity::Mixture { weight: 1.0 }
            .coefficients(&s, 1.0)
            .is_ok());
        assert!(ScoreIdentity::Mixture { weight: 0.5 }
            .coefficients(&s, 0.0)
            .is_err());
    }

    #[test]
    fn bad_parameters_are_typed_errors() {
        let s = Cosine;
        assert!(matches!(
            ScoreIdentity::Mixture { weight: 1.5 }.coefficients(&s, 0.5),
            Err(Error::OutOfRange { .. })
        ));
        assert!(matches!(
            ScoreIdentity::Kappa { sigma_data_sq: 0.0 }.coefficients(&s, 0.5),
            Err(Error::NonPositive { .. })
        ));
        assert!(matches!(
            KAPPA.coefficients(&s, 1.5),
            Err(Error::TimeOutOfRange { .. })
        ));
        assert!(matches!(
            ScoreIdentity::Phillips.coefficients(&Ve::standard(), 0.5),
            Err(Error::NotVariancePreserving { .. })
        ));
        assert!(ScoreIdentity::Phillips
            .coefficients(&LinearVp::standard(), 0.5)
            .is_ok());
        assert!(ScoreIdentity::by_name("foo", 1.0, 1.0).is_err());
    }

    #[test]
    fn apply_matches_the_formulas() {
        let s = Cosine;
        let t = 0.37;
        let (a, sig2) = (s.alpha(t), s.sigma_sq(t));
        let (x0, xt, g) = (0.4, -0.3, 1.7);
        let dsi = ScoreIdentity::Dsi
            .coefficients(&s, t)
            .unwrap()
            .apply(x0, xt, g);
        assert!((dsi - (-(xt - a * x0) / sig2)).abs() < 1e-12);
        let tsi = ScoreIdentity::Tsi
            .coefficients(&s, t)
            .unwrap()
            .apply(x0, xt, g);
        assert!((tsi - g / a).abs() < 1e-12);
        let ph = ScoreIdentity::Phillips
            .coefficients(&s, t)
            .unwrap()
            .apply(x0, xt, g);
        assert!((ph - (a * (x0 + g) - xt)).abs() < 1e-12);
    }
}
