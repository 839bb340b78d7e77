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

use std::fmt;
use std::str::FromStr;

use crate::choice::{split_value, unknown, Choice};
use crate::error::positive;
use crate::schedule::Schedule;
use crate::{Error, Result};

/// A score identity used as a regression target (see the [module docs](self)).
///
/// # Names
/// As a [`Choice`] it parses from and prints as (snake_case, [`ScoreIdentity::NAMES`]):
///
/// | name | variant |
/// |---|---|
/// | `dsi` (alias `dsm`) | [`ScoreIdentity::Dsi`] |
/// | `tsi` (alias `tsm`) | [`ScoreIdentity::Tsi`] |
/// | `mixture=W` | [`ScoreIdentity::Mixture`] with `w = W ∈ [0, 1]` |
/// | `kappa`, `kappa=V` | [`ScoreIdentity::Kappa`], `σ_data²` from the target or `V` |
/// | `kappa_bar`, `kappa_bar=V` | [`ScoreIdentity::KappaBar`], `σ_mode²` from the target or `V` |
/// | `phillips` | [`ScoreIdentity::Phillips`] |
///
/// `Display` prints the canonical name (`dsi`, never `dsm`) and numbers in Rust's shortest
/// round-trip form, so `s.parse::<ScoreIdentity>()?.to_string().parse()` gives back the same
/// value, bit for bit.
///
/// # Variances left to the target
/// `kappa` and `kappa_bar` without a number carry `None`: the variance is taken from the
/// target by [`ScoreIdentity::resolve`], which must run before [`ScoreIdentity::coefficients`]
/// (an unresolved `κ` there is an [`Error::Unresolved`]). `κ̄` needs `σ_mode²`, which only a
/// Gaussian mixture defines (`Σ πᵢ σᵢ²`); for any other target pass it yourself
/// (`kappa_bar=V`, [`ScoreIdentity::kappa_bar`]) — the variance of the target's local modes
/// is the natural choice, and `σ_data²` recovers `κ`.
///
/// ```
/// use tsm_core::identity::ScoreIdentity;
/// let id: ScoreIdentity = "kappa_bar".parse()?;
/// assert_eq!(id, ScoreIdentity::KappaBar { sigma_mode_sq: None });
/// // A mixture target supplies σ_mode²; another target would need `kappa_bar=V`.
/// let resolved = id.resolve(1.0, Some(0.04))?;
/// assert_eq!(resolved, ScoreIdentity::kappa_bar(0.04));
/// assert_eq!(resolved.to_string(), "kappa_bar=0.04");
/// assert!(id.resolve(1.0, None).is_err());
/// # Ok::<(), tsm_core::Error>(())
/// ```
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
        /// `σ_data²`, the target's variance per dimension; `None`: take it from the target
        /// ([`ScoreIdentity::resolve`]).
        sigma_data_sq: Option<f64>,
    },
    /// The mixture with `κ̄_t = σ_t²/(σ_t² + α_t² σ_mode²)`, `σ_mode² = Σ π_i σ_i²`.
    KappaBar {
        /// `σ_mode²`, the mixture-weighted variance of the modes; `None`: take it from the
        /// target ([`ScoreIdentity::resolve`]; only a mixture has one).
        sigma_mode_sq: Option<f64>,
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

const KAPPA_UNRESOLVED: Error = Error::Unresolved {
    name: "kappa",
    quantity: "σ_data², the target's variance per dimension",
    hint: "resolve it from the target (`ScoreIdentity::resolve`) or give it as `kappa=V`",
};

const KAPPA_BAR_UNRESOLVED: Error = Error::Unresolved {
    name: "kappa_bar",
    quantity: "σ_mode² = Σ πᵢ σᵢ², which only a Gaussian-mixture target defines",
    hint: "give it as `kappa_bar=V` (`ScoreIdentity::kappa_bar(v)`), e.g. the variance of \
           the target's local modes",
};

impl ScoreIdentity {
    /// `κ` with a given `σ_data²` (the resolved form of `kappa=V`).
    pub const fn kappa(sigma_data_sq: f64) -> Self {
        Self::Kappa {
            sigma_data_sq: Some(sigma_data_sq),
        }
    }

    /// `κ̄` with a given `σ_mode²` (the resolved form of `kappa_bar=V`).
    pub const fn kappa_bar(sigma_mode_sq: f64) -> Self {
        Self::KappaBar {
            sigma_mode_sq: Some(sigma_mode_sq),
        }
    }

    /// Fills in the variances left to the target: `κ` takes `sigma_data_sq`, `κ̄` takes
    /// `sigma_mode_sq`; every other identity, and a `κ`/`κ̄` that already has its number, is
    /// returned unchanged.
    ///
    /// # Errors
    /// - [`Error::Unresolved`] for `κ̄` without a number when `sigma_mode_sq` is `None` (a
    ///   target that is not a mixture): the message asks for `kappa_bar=V`;
    /// - [`Error::NonPositive`] when the variance filled in is not finite and positive.
    pub fn resolve(self, sigma_data_sq: f64, sigma_mode_sq: Option<f64>) -> Result<Self> {
        Ok(match self {
            Self::Kappa {
                sigma_data_sq: None,
            } => Self::kappa(positive("sigma_data_sq", sigma_data_sq)?),
            Self::KappaBar {
                sigma_mode_sq: None,
            } => match sigma_mode_sq {
                Some(v) => Self::kappa_bar(positive("sigma_mode_sq", v)?),
                None => return Err(KAPPA_BAR_UNRESOLVED),
            },
            other => other,
        })
    }

    /// Whether every number the identity needs is set (see [`ScoreIdentity::resolve`]).
    pub fn is_resolved(&self) -> bool {
        !matches!(
            self,
            Self::Kappa {
                sigma_data_sq: None
            } | Self::KappaBar {
                sigma_mode_sq: None
            }
        )
    }

    /// Short name, as used in the figures' CSV files (`dsi`, `tsi`, `mixture`, `kappa`,
    /// `kappa_bar`, `phillips`): the name without its number.
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

    /// The name of the loss that regresses on this identity (`dsm`, `tsm`, then as
    /// [`ScoreIdentity::name`]): DSM's target is `L_DSI`, TSM's is `L_TSI`.
    pub fn loss_name(&self) -> &'static str {
        match self {
            Self::Dsi => "dsm",
            Self::Tsi => "tsm",
            other => other.name(),
        }
    }

    /// The weight `w_t` on `L_DSI` when the identity is a mixture `w L_DSI + (1 − w) L_TSI`.
    ///
    /// # Errors
    /// As [`ScoreIdentity::coefficients`] for invalid or unresolved parameters.
    pub fn dsi_weight(&self, schedule: &(impl Schedule + ?Sized), t: f64) -> Result<f64> {
        let v = self.validate(schedule)?;
        let (alpha, sigma_sq) = (schedule.alpha(t), schedule.sigma_sq(t));
        Ok(match *self {
            Self::Dsi => 1.0,
            Self::Tsi => 0.0,
            Self::Mixture { weight } => weight,
            Self::Kappa { .. } | Self::KappaBar { .. } => sigma_sq / (sigma_sq + alpha * alpha * v),
            Self::Phillips => 1.0 - alpha * alpha,
        })
    }

    /// Checks the parameters; returns the variance `v` of `κ`/`κ̄` (0 for the others).
    fn validate(&self, schedule: &(impl Schedule + ?Sized)) -> Result<f64> {
        match *self {
            Self::Mixture { weight } if !(0.0..=1.0).contains(&weight) => Err(Error::OutOfRange {
                name: "weight",
                value: weight,
                allowed: "[0, 1]",
            }),
            Self::Kappa {
                sigma_data_sq: Some(v),
            } => positive("sigma_data_sq", v),
            Self::Kappa {
                sigma_data_sq: None,
            } => Err(KAPPA_UNRESOLVED),
            Self::KappaBar {
                sigma_mode_sq: Some(v),
            } => positive("sigma_mode_sq", v),
            Self::KappaBar {
                sigma_mode_sq: None,
            } => Err(KAPPA_BAR_UNRESOLVED),
            Self::Phillips if !schedule.is_variance_preserving() => {
                Err(Error::NotVariancePreserving {
                    identity: "phillips",
                    schedule: schedule.name(),
                })
            }
            _ => Ok(0.0),
        }
    }

    /// The coefficients `(a_t, b_t)` at time `t` (see the table in the [module docs](self)).
    ///
    /// # Errors
    /// - [`Error::TimeOutOfRange`] for `t ∉ [0, 1]`;
    /// - [`Error::UndefinedAt`] where the identity has no finite value (`L_DSI` at `σ_t = 0`,
    ///   `L_TSI` at `α_t = 0`);
    /// - [`Error::OutOfRange`] / [`Error::NonPositive`] for a bad weight or variance;
    /// - [`Error::Unresolved`] for a `κ`/`κ̄` whose variance was left to the target and not
    ///   yet filled in by [`ScoreIdentity::resolve`];
    /// - [`Error::NotVariancePreserving`] for Phillips on a VE schedule.
    pub fn coefficients(
        &self,
        schedule: &(impl Schedule + ?Sized),
        t: f64,
    ) -> Result<Coefficients> {
        crate::schedule::check_time(t)?;
        let v = self.validate(schedule)?;
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
            Self::Kappa { .. } | Self::KappaBar { .. } => {
                let denom = sigma_sq + alpha * alpha * v;
                (1.0 / denom, alpha * v / denom)
            }
            Self::Phillips => (1.0, alpha),
        };
        Ok(Coefficients { alpha, a, b })
    }
}

impl ScoreIdentity {
    /// The names [`Choice::NAMES`] lists, as an array that a choice extending the identities
    /// (the training losses) builds on with [`crate::choice::concat_names`].
    pub const NAME_LIST: [&'static str; 10] = [
        "dsi",
        "dsm",
        "tsi",
        "tsm",
        "mixture=W",
        "kappa",
        "kappa=V",
        "kappa_bar",
        "kappa_bar=V",
        "phillips",
    ];
}

impl Choice for ScoreIdentity {
    const KIND: &'static str = "loss";
    const NAMES: &'static [&'static str] = &Self::NAME_LIST;
}

impl FromStr for ScoreIdentity {
    type Err = Error;

    /// Parses a name of [`ScoreIdentity::NAMES`](Choice::NAMES) (see the [type docs](Self)).
    ///
    /// # Errors
    /// [`Error::UnknownName`] listing the valid names; [`Error::OutOfRange`] for a weight
    /// outside `[0, 1]`; [`Error::NonPositive`] for a variance that is not finite and positive.
    fn from_str(s: &str) -> Result<Self> {
        Ok(match split_value::<Self>(s)? {
            ("dsi" | "dsm", None) => Self::Dsi,
            ("tsi" | "tsm", None) => Self::Tsi,
            ("mixture", Some(weight)) => {
                if !(0.0..=1.0).contains(&weight) {
                    return Err(Error::OutOfRange {
                        name: "weight",
                        value: weight,
                        allowed: "[0, 1]",
                    });
                }
                Self::Mixture { weight }
            }
            ("kappa", v) => Self::Kappa {
                sigma_data_sq: v.map(|v| positive("sigma_data_sq", v)).transpose()?,
            },
            ("kappa_bar", v) => Self::KappaBar {
                sigma_mode_sq: v.map(|v| positive("sigma_mode_sq", v)).transpose()?,
            },
            ("phillips", None) => Self::Phillips,
            _ => return Err(unknown::<Self>(s)),
        })
    }
}

impl fmt::Display for ScoreIdentity {
    /// The canonical name, with its number where it has one (`kappa_bar=0.04`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Mixture { weight } => write!(f, "mixture={weight}"),
            Self::Kappa {
                sigma_data_sq: Some(v),
            }
            | Self::KappaBar {
                sigma_mode_sq: Some(v),
            } => write!(f, "{}={v}", self.name()),
            _ => f.write_str(self.name()),
        }
    }
}

crate::serde_via_str!(ScoreIdentity);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{Cosine, LinearVp, Ve};

    const KAPPA: ScoreIdentity = ScoreIdentity::kappa(0.7);

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
            ScoreIdentity::kappa_bar(0.3),
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
            ScoreIdentity::kappa(0.0).coefficients(&s, 0.5),
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

    /// One of each variant, with numbers that do not print short (exact f64 round trip).
    fn every_variant() -> Vec<ScoreIdentity> {
        vec![
            ScoreIdentity::Dsi,
            ScoreIdentity::Tsi,
            ScoreIdentity::Mixture { weight: 0.3 },
            ScoreIdentity::Mixture { weight: 0.0 },
            ScoreIdentity::Mixture { weight: 1.0 / 3.0 },
            ScoreIdentity::Kappa {
                sigma_data_sq: None,
            },
            ScoreIdentity::kappa(0.1 + 0.2),
            ScoreIdentity::kappa(1e-300),
            ScoreIdentity::KappaBar {
                sigma_mode_sq: None,
            },
            ScoreIdentity::kappa_bar(std::f64::consts::PI * 1e7),
            ScoreIdentity::Phillips,
        ]
    }

    #[test]
    fn names_round_trip_exactly() {
        for id in every_variant() {
            let text = id.to_string();
            let back: ScoreIdentity = text.parse().expect(&text);
            assert_eq!(back, id, "{text}");
            // Bit-exact numbers, not merely ==.
            if let (
                ScoreIdentity::Kappa {
                    sigma_data_sq: Some(a),
                },
                ScoreIdentity::Kappa {
                    sigma_data_sq: Some(b),
                },
            ) = (id, back)
            {
                assert_eq!(a.to_bits(), b.to_bits());
            }
        }
        for (alias, id) in [
            ("dsm", ScoreIdentity::Dsi),
            ("tsm", ScoreIdentity::Tsi),
            ("kappa_bar=0.04", ScoreIdentity::kappa_bar(0.04)),
            ("mixture=0.5", ScoreIdentity::Mixture { weight: 0.5 }),
        ] {
            assert_eq!(alias.parse::<ScoreIdentity>().expect(alias), id);
        }
        assert_eq!(ScoreIdentity::Dsi.to_string(), "dsi");
        assert_eq!(ScoreIdentity::kappa_bar(0.04).to_string(), "kappa_bar=0.04");
        // Every listed name parses, with a number in place of the placeholder.
        for name in ScoreIdentity::NAMES {
            let name = name.replace("=W", "=0.5").replace("=V", "=2");
            assert!(name.parse::<ScoreIdentity>().is_ok(), "{name}");
        }
    }

    #[test]
    fn csv_and_loss_names_are_stable() {
        let names: Vec<_> = every_variant().iter().map(|i| i.name()).collect();
        assert_eq!(
            names,
            [
                "dsi",
                "tsi",
                "mixture",
                "mixture",
                "mixture",
                "kappa",
                "kappa",
                "kappa",
                "kappa_bar",
                "kappa_bar",
                "phillips"
            ]
        );
        assert_eq!(ScoreIdentity::Dsi.loss_name(), "dsm");
        assert_eq!(ScoreIdentity::Tsi.loss_name(), "tsm");
        assert_eq!(ScoreIdentity::kappa_bar(1.0).loss_name(), "kappa_bar");
    }

    #[test]
    fn bad_names_and_numbers_are_typed_errors() {
        let err = "hsm".parse::<ScoreIdentity>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown loss `hsm`; valid names: dsi, dsm, tsi, tsm, mixture=W, kappa, kappa=V, \
             kappa_bar, kappa_bar=V, phillips"
        );
        for bad in ["mixture", "dsi=0.3", "phillips=1", "kappa=x", "", "KAPPA"] {
            assert!(
                matches!(bad.parse::<ScoreIdentity>(), Err(Error::UnknownName { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            "mixture=1.5".parse::<ScoreIdentity>(),
            Err(Error::OutOfRange { .. })
        ));
        for bad in ["kappa=0", "kappa=-1", "kappa_bar=NaN", "kappa_bar=inf"] {
            assert!(
                matches!(bad.parse::<ScoreIdentity>(), Err(Error::NonPositive { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn resolve_fills_in_the_target_variances() {
        let kappa = ScoreIdentity::Kappa {
            sigma_data_sq: None,
        };
        let kappa_bar = ScoreIdentity::KappaBar {
            sigma_mode_sq: None,
        };
        assert!(!kappa.is_resolved() && !kappa_bar.is_resolved());
        assert_eq!(kappa.resolve(2.0, None).unwrap(), ScoreIdentity::kappa(2.0));
        assert_eq!(
            kappa_bar.resolve(2.0, Some(0.5)).unwrap(),
            ScoreIdentity::kappa_bar(0.5)
        );
        // A number given by the user wins over the target's.
        assert_eq!(
            ScoreIdentity::kappa_bar(0.1)
                .resolve(2.0, Some(0.5))
                .unwrap(),
            ScoreIdentity::kappa_bar(0.1)
        );
        for id in [ScoreIdentity::Dsi, ScoreIdentity::Phillips] {
            assert_eq!(id.resolve(2.0, None).unwrap(), id);
        }
        // κ̄ for a target without σ_mode²: a typed error that says how to pass it.
        let err = kappa_bar.resolve(2.0, None).unwrap_err();
        assert!(matches!(
            err,
            Error::Unresolved {
                name: "kappa_bar",
                ..
            }
        ));
        assert!(err.to_string().contains("kappa_bar=V"), "{err}");
        assert!(matches!(
            kappa.resolve(-1.0, None),
            Err(Error::NonPositive { .. })
        ));
        // Unresolved κ/κ̄ cannot produce coefficients.
        for id in [kappa, kappa_bar] {
            assert!(matches!(
                id.coefficients(&Cosine, 0.5),
                Err(Error::Unresolved { .. })
            ));
            assert!(matches!(
                id.dsi_weight(&Cosine, 0.5),
                Err(Error::Unresolved { .. })
            ));
        }
    }
}
