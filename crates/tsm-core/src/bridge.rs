//! Target score identities for bridges (De Bortoli et al. (2024), *Target Score Matching*,
//! §3.3, Prop. 3.4, eqs. 11–15).
//!
//! The model (eq. 11) interpolates two independent draws and adds independent noise:
//!
//! ```text
//! Y = α X₀ + (1 − α) X₁ + W,   X₀ ~ p₀, X₁ ~ p₁, W ~ N(0, s² I) (or W ≡ 0, s = 0), 0 < α < 1.
//! ```
//!
//! Knowing the scores `∇log p₀` and `∇log p₁` (not necessarily `p_W`), the score of `Y` is a
//! posterior mean over `p(x₀, x₁ | y) ∝ p₀(x₀) p₁(x₁) p_W(y − α x₀ − (1 − α) x₁)` of any of
//!
//! | identity | integrand `L(x₀, x₁, y)` | paper |
//! |---|---|---|
//! | [`BridgeIdentity::X0`] | `α⁻¹ ∇log p₀(x₀)` | eq. 12 |
//! | [`BridgeIdentity::X1`] | `(1 − α)⁻¹ ∇log p₁(x₁)` | eq. 13 |
//! | [`BridgeIdentity::Sum`] | `∇log p₀(x₀) + ∇log p₁(x₁)` (the target of the loss, eq. 15) | eq. 14 |
//! | [`BridgeIdentity::Convex`] | `w·(12) + (1 − w)·(13)`; `w = α` is eq. 14 | — |
//! | [`BridgeIdentity::Dsi`] | `∇_y log p_W(y − α x₀ − (1 − α) x₁) = −(y − α x₀ − (1 − α) x₁)/s²` (Gaussian `W`, `s > 0`) | eq. 2 |
//!
//! all of the form
//!
//! ```text
//! L = a · (α x₀ + (1 − α) x₁ − y) + b₀ ∇log p₀(x₀) + b₁ ∇log p₁(x₁)
//! ```
//!
//! ([`BridgeCoefficients`], in the style of [`crate::identity::Coefficients`]). Eq. 12 follows
//! from Prop. 2.1 applied to `Y = α X₀ + N` with `N = (1 − α) X₁ + W` independent of `X₀`
//! (additive noise, whatever its law): the change of variables `x₀ = α⁻¹(y − n)` in
//! `p_Y(y) = α⁻ᵈ ∫ p₀(α⁻¹(y − n)) p_N(n) dn` and a derivative in `y` give
//! `∇log p_Y(y) = α⁻¹ E[∇log p₀(X₀) | Y = y]`; eq. 13 is the same with the roles of `X₀` and
//! `X₁` exchanged, and any convex combination of the two is again an identity. None of this
//! needs `W` to have a density, so eqs. 12–14 hold for `W ≡ 0`; the DSI needs `p_W`.
//! The paper's printed `p_W(y − αx₀ − (1 − αx₁))` is read as `p_W(y − αx₀ − (1 − α)x₁)`
//! (a typo: the former is not the model of eq. 11). The derivations are written out in
//! `docs/bridges-and-noise.md`.
//!
//! ```
//! use tsm_core::bridge::{Bridge, BridgeIdentity};
//! let bridge = Bridge::new(0.25, 0.0)?;                   // W ≡ 0
//! let c = BridgeIdentity::X0.coefficients(&bridge)?;
//! // (12) at x₀ = 1, x₁ = 2, y = 1.75 with ∇log p₀(x₀) = −1: α⁻¹ · (−1) = −4.
//! assert_eq!(c.apply(1.0, 2.0, 1.75, -1.0, 0.5), -4.0);
//! // The DSI needs Gaussian noise with s > 0; α must lie in (0, 1).
//! assert!(BridgeIdentity::Dsi.coefficients(&bridge).is_err());
//! assert!(Bridge::new(1.0, 0.1).is_err());
//! # Ok::<(), tsm_core::Error>(())
//! ```
//!
//! # References
//! [^1]: De Bortoli et al. (2024), *Target Score Matching*, §3.3, Prop. 3.4, eqs. 11–15.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

use crate::choice::{split_value, unknown, Choice};
use crate::error::positive;
use crate::target::{check_dim, Sample};
use crate::{Error, Result};

/// The bridge model of eq. 11: the interpolation weight `α ∈ (0, 1)` and the variance
/// `s² ≥ 0` of the Gaussian noise `W ~ N(0, s² I)` (`s² = 0`: `W ≡ 0`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bridge {
    alpha: f64,
    noise_var: f64,
}

impl Bridge {
    /// The model `Y = α X₀ + (1 − α) X₁ + W`, `W ~ N(0, noise_var · I)`.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] naming `alpha` for `α ∉ (0, 1)` (or not finite), naming
    /// `noise_var` for a negative or non-finite `s²`.
    pub fn new(alpha: f64, noise_var: f64) -> Result<Self> {
        if !(alpha > 0.0 && alpha < 1.0) {
            return Err(Error::OutOfRange {
                name: "alpha",
                value: alpha,
                allowed: "(0, 1)",
            });
        }
        if !(noise_var.is_finite() && noise_var >= 0.0) {
            return Err(Error::OutOfRange {
                name: "noise_var",
                value: noise_var,
                allowed: "[0, ∞) (0 for W ≡ 0)",
            });
        }
        Ok(Self { alpha, noise_var })
    }

    /// `α`.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// `s²`, the variance of each coordinate of `W` (0 when `W ≡ 0`).
    pub fn noise_var(&self) -> f64 {
        self.noise_var
    }

    /// The noiseless interpolant `α x₀ + (1 − α) x₁`, per coordinate.
    #[inline(always)]
    pub fn interpolate(&self, x0: f64, x1: f64) -> f64 {
        self.alpha * x0 + (1.0 - self.alpha) * x1
    }

    /// Writes `y = α x₀ + (1 − α) x₁ + s ε`, `ε ~ N(0, I)`, into `y` (eq. 11 given the ends).
    ///
    /// # Errors
    /// [`Error::DimMismatch`] unless `x0`, `x1` and `y` have the same length.
    pub fn sample_y<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        x0: &[f64],
        x1: &[f64],
        y: &mut [f64],
    ) -> Result<()> {
        check_dim(x0.len(), x1.len(), "Bridge::sample_y (x1)")?;
        check_dim(x0.len(), y.len(), "Bridge::sample_y (y)")?;
        let s = self.noise_var.sqrt();
        for ((o, &a), &b) in y.iter_mut().zip(x0).zip(x1) {
            let noise = if s > 0.0 {
                s * crate::rng::normal::sample(rng)
            } else {
                0.0
            };
            *o = self.interpolate(a, b) + noise;
        }
        Ok(())
    }

    /// One draw `(x₀, x₁, y)` of the joint law `p₀(x₀) p₁(x₁) p(y | x₀, x₁)`: the training
    /// triples of the loss of eq. 15.
    ///
    /// # Errors
    /// [`Error::DimMismatch`] unless `p0`, `p1` and the three buffers share one dimension.
    pub fn sample_joint<P0, P1, R>(
        &self,
        p0: &P0,
        p1: &P1,
        rng: &mut R,
        x0: &mut [f64],
        x1: &mut [f64],
        y: &mut [f64],
    ) -> Result<()>
    where
        P0: Sample + ?Sized,
        P1: Sample + ?Sized,
        R: Rng + ?Sized,
    {
        check_dim(p0.dim(), p1.dim(), "Bridge::sample_joint (p1)")?;
        check_dim(p0.dim(), x0.len(), "Bridge::sample_joint (x0)")?;
        check_dim(p0.dim(), x1.len(), "Bridge::sample_joint (x1)")?;
        p0.sample_into(rng, x0);
        p1.sample_into(rng, x1);
        self.sample_y(rng, x0, x1, y)
    }
}

/// A bridge score identity (see the [module docs](self)).
///
/// # Names
/// As a [`Choice`]: `x0` (eq. 12), `x1` (eq. 13), `sum` (eq. 14, the target of eq. 15's
/// loss), `convex=W` (`W·(12) + (1 − W)·(13)`, `W ∈ [0, 1]`), `dsi` (alias `dsm`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BridgeIdentity {
    /// `α⁻¹ ∇log p₀(x₀)` (eq. 12); its variance grows like `α⁻²` as `α → 0`.
    X0,
    /// `(1 − α)⁻¹ ∇log p₁(x₁)` (eq. 13); its variance grows like `(1 − α)⁻²` as `α → 1`.
    X1,
    /// `∇log p₀(x₀) + ∇log p₁(x₁)` (eq. 14 = `α·(12) + (1 − α)·(13)`), bounded in `α`; the
    /// regression target of the bridge TSM loss (eq. 15).
    Sum,
    /// `w·(12) + (1 − w)·(13)` for a fixed `w ∈ [0, 1]`.
    Convex {
        /// The weight `w` on eq. 12.
        weight: f64,
    },
    /// The denoising identity `−(y − α x₀ − (1 − α) x₁)/s²` (needs Gaussian `W`, `s² > 0`).
    Dsi,
}

/// The coefficients of a bridge identity:
/// `L = a (α x₀ + (1 − α) x₁ − y) + b₀ ∇log p₀(x₀) + b₁ ∇log p₁(x₁)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BridgeCoefficients {
    /// `α`.
    pub alpha: f64,
    /// Coefficient of `α x₀ + (1 − α) x₁ − y`.
    pub a: f64,
    /// Coefficient of `∇log p₀(x₀)`.
    pub b0: f64,
    /// Coefficient of `∇log p₁(x₁)`.
    pub b1: f64,
}

impl BridgeCoefficients {
    /// `L` for one coordinate, from `x₀`, `x₁`, `y` and the scores `s₀ = ∇log p₀(x₀)`,
    /// `s₁ = ∇log p₁(x₁)` at that coordinate.
    #[inline(always)]
    pub fn apply(&self, x0: f64, x1: f64, y: f64, score0: f64, score1: f64) -> f64 {
        let residual = self.alpha * x0 + (1.0 - self.alpha) * x1 - y;
        self.a * residual + self.b0 * score0 + self.b1 * score1
    }

    /// `L` for a vector; all slices have the same length (checked in debug builds).
    #[inline]
    pub fn apply_into(
        &self,
        x0: &[f64],
        x1: &[f64],
        y: &[f64],
        score0: &[f64],
        score1: &[f64],
        out: &mut [f64],
    ) {
        let d = out.len();
        debug_assert!(
            x0.len() == d
                && x1.len() == d
                && y.len() == d
                && score0.len() == d
                && score1.len() == d
        );
        for j in 0..d {
            out[j] = self.apply(x0[j], x1[j], y[j], score0[j], score1[j]);
        }
    }

    /// The per-sample regression loss `‖s_θ(y) − L(x₀, x₁, y)‖²` (eq. 15 for
    /// [`BridgeIdentity::Sum`]); `prediction` is `s_θ(y)`.
    pub fn squared_error(
        &self,
        prediction: &[f64],
        x0: &[f64],
        x1: &[f64],
        y: &[f64],
        score0: &[f64],
        score1: &[f64],
    ) -> f64 {
        debug_assert_eq!(prediction.len(), x0.len());
        (0..prediction.len())
            .map(|j| {
                let r = prediction[j] - self.apply(x0[j], x1[j], y[j], score0[j], score1[j]);
                r * r
            })
            .sum()
    }
}

impl BridgeIdentity {
    /// Short name, as in CSV files: `x0`, `x1`, `sum`, `convex`, `dsi` (without a number).
    pub fn name(&self) -> &'static str {
        match self {
            Self::X0 => "x0",
            Self::X1 => "x1",
            Self::Sum => "sum",
            Self::Convex { .. } => "convex",
            Self::Dsi => "dsi",
        }
    }

    /// The coefficients for `bridge`.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] for a convex weight outside `[0, 1]`; [`Error::NonPositive`]
    /// naming `noise_var` for the DSI of a bridge with `W ≡ 0` (no density to differentiate).
    pub fn coefficients(&self, bridge: &Bridge) -> Result<BridgeCoefficients> {
        let alpha = bridge.alpha;
        let (a, b0, b1) = match *self {
            Self::X0 => (0.0, 1.0 / alpha, 0.0),
            Self::X1 => (0.0, 0.0, 1.0 / (1.0 - alpha)),
            Self::Sum => (0.0, 1.0, 1.0),
            Self::Convex { weight } => {
                check_weight(weight)?;
                (0.0, weight / alpha, (1.0 - weight) / (1.0 - alpha))
            }
            Self::Dsi => (1.0 / positive("noise_var", bridge.noise_var)?, 0.0, 0.0),
        };
        Ok(BridgeCoefficients { alpha, a, b0, b1 })
    }
}

fn check_weight(weight: f64) -> Result<f64> {
    if (0.0..=1.0).contains(&weight) {
        Ok(weight)
    } else {
        Err(Error::OutOfRange {
            name: "weight",
            value: weight,
            allowed: "[0, 1]",
        })
    }
}

impl Choice for BridgeIdentity {
    const KIND: &'static str = "bridge identity";
    const NAMES: &'static [&'static str] = &["x0", "x1", "sum", "convex=W", "dsi", "dsm"];
}

impl FromStr for BridgeIdentity {
    type Err = Error;

    /// Parses a name of [`BridgeIdentity::NAMES`](Choice::NAMES).
    ///
    /// # Errors
    /// [`Error::UnknownName`] listing the valid names; [`Error::OutOfRange`] for a convex
    /// weight outside `[0, 1]`.
    fn from_str(s: &str) -> Result<Self> {
        Ok(match split_value::<Self>(s)? {
            ("x0", None) => Self::X0,
            ("x1", None) => Self::X1,
            ("sum", None) => Self::Sum,
            ("convex", Some(w)) => Self::Convex {
                weight: check_weight(w)?,
            },
            ("dsi" | "dsm", None) => Self::Dsi,
            _ => return Err(unknown::<Self>(s)),
        })
    }
}

impl fmt::Display for BridgeIdentity {
    /// The canonical name, with the weight in Rust's shortest round-trip form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Convex { weight } => write!(f, "convex={weight}"),
            other => f.write_str(other.name()),
        }
    }
}

crate::serde_via_str!(BridgeIdentity);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_parameters_are_typed_errors_naming_the_value() {
        for alpha in [0.0, 1.0, -0.2, 1.5, f64::NAN] {
            let err = Bridge::new(alpha, 0.1).unwrap_err();
            assert!(
                matches!(err, Error::OutOfRange { name: "alpha", .. }),
                "{err}"
            );
            assert!(err.to_string().contains(&format!("{alpha}")), "{err}");
        }
        for var in [-0.1, f64::INFINITY, f64::NAN] {
            let err = Bridge::new(0.5, var).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::OutOfRange {
                        name: "noise_var",
                        ..
                    }
                ),
                "{err}"
            );
        }
        let noiseless = Bridge::new(0.5, 0.0).unwrap();
        assert!(matches!(
            BridgeIdentity::Dsi.coefficients(&noiseless),
            Err(Error::NonPositive {
                name: "noise_var",
                ..
            })
        ));
        assert!(matches!(
            BridgeIdentity::Convex { weight: 1.2 }.coefficients(&noiseless),
            Err(Error::OutOfRange { name: "weight", .. })
        ));
    }

    #[test]
    fn coefficients_match_eqs_12_to_14() {
        let bridge = Bridge::new(0.3, 0.04).unwrap();
        let (x0, x1, y, s0, s1) = (0.7, -1.1, 0.2, 1.3, -0.4);
        let eval = |id: BridgeIdentity| id.coefficients(&bridge).unwrap().apply(x0, x1, y, s0, s1);
        assert_eq!(eval(BridgeIdentity::X0), s0 / 0.3);
        assert_eq!(eval(BridgeIdentity::X1), s1 / 0.7);
        assert_eq!(eval(BridgeIdentity::Sum), s0 + s1);
        // Eq. 14 is the convex combination with w = α.
        let convex = eval(BridgeIdentity::Convex { weight: 0.3 });
        assert!((convex - (s0 + s1)).abs() < 1e-15);
        let dsi = -(y - 0.3 * x0 - 0.7 * x1) / 0.04;
        assert!((eval(BridgeIdentity::Dsi) - dsi).abs() < 1e-13);
        let c = BridgeIdentity::Sum.coefficients(&bridge).unwrap();
        let err = c.squared_error(
            &[1.0, 0.0],
            &[x0, x0],
            &[x1, x1],
            &[y, y],
            &[s0, 0.0],
            &[s1, 0.0],
        );
        assert!((err - ((1.0 - s0 - s1).powi(2))).abs() < 1e-15);
    }

    #[test]
    fn names_round_trip() {
        for id in [
            BridgeIdentity::X0,
            BridgeIdentity::X1,
            BridgeIdentity::Sum,
            BridgeIdentity::Convex { weight: 0.1 + 0.2 },
            BridgeIdentity::Dsi,
        ] {
            let text = id.to_string();
            assert_eq!(text.parse::<BridgeIdentity>().unwrap(), id, "{text}");
        }
        assert_eq!(
            "dsm".parse::<BridgeIdentity>().unwrap(),
            BridgeIdentity::Dsi
        );
        assert!(matches!(
            "x2".parse::<BridgeIdentity>(),
            Err(Error::UnknownName { .. })
        ));
        assert!(matches!(
            "convex=2".parse::<BridgeIdentity>(),
            Err(Error::OutOfRange { .. })
        ));
    }

    #[test]
    fn noiseless_draws_lie_on_the_interpolant() {
        let bridge = Bridge::new(0.4, 0.0).unwrap();
        let mut rng = crate::rng::stream(3, 0);
        let mut y = [0.0; 2];
        bridge
            .sample_y(&mut rng, &[1.0, -2.0], &[3.0, 0.5], &mut y)
            .unwrap();
        assert_eq!(y, [0.4 * 1.0 + 0.6 * 3.0, 0.4 * -2.0 + 0.6 * 0.5]);
        assert!(bridge
            .sample_y(&mut rng, &[1.0], &[3.0, 0.5], &mut y)
            .is_err());
    }
}
