//! Noising schedules: `X_t = α_t X_0 + σ_t ε`, `ε ~ N(0, I)`, `t ∈ [0, 1]`.
//!
//! The forward SDE `dX_t = f_t X_t dt + g_t dB_t` (paper eq. 16) has
//! `f_t = d/dt log α_t` and `g_t² = dσ_t²/dt − 2 f_t σ_t²`; its marginal given `X_0 = x_0` is
//! `N(α_t x_0, σ_t² I)`.
//!
//! | schedule | `α_t` | `σ_t` |
//! |---|---|---|
//! | [`Cosine`] (the papers' default) | `cos(πt/2)` | `sin(πt/2)` |
//! | [`LinearVp`] | `exp(−½∫₀ᵗβ)`, `β(s) = β_min + s(β_max − β_min)` | `√(1 − α_t²)` |
//! | [`Ve`] | `1` | `σ_min (σ_max/σ_min)^t` |
//!
//! The methods take `t` unchecked (they sit in hot loops); validate user input once with
//! [`check_time`].
//!
//! # References
//! [^1]: De Bortoli et al. (2024), *Target Score Matching*, §4.1, eq. 16.
//! [^2]: Song et al. (2021), *Score-based generative modeling through SDEs* (VP and VE SDEs).

use std::f64::consts::FRAC_PI_2;
use std::fmt;
use std::str::FromStr;

use crate::choice::{unknown, Choice};
use crate::error::positive;
use crate::{Error, Result};

/// A noising schedule `t ↦ (α_t, σ_t)` on `t ∈ [0, 1]` and its forward SDE.
pub trait Schedule: std::fmt::Debug + Send + Sync {
    /// Short name (`cosine`, `linear_vp`, `ve`).
    fn name(&self) -> &'static str;
    /// Signal scale `α_t`.
    fn alpha(&self, t: f64) -> f64;
    /// Noise scale `σ_t ≥ 0`.
    fn sigma(&self, t: f64) -> f64;
    /// `dα_t/dt`.
    fn d_alpha(&self, t: f64) -> f64;
    /// `dσ_t/dt`.
    fn d_sigma(&self, t: f64) -> f64;
    /// Whether `σ_t² = 1 − α_t²` for all `t` (required by Phillips et al.'s identity, eq. 9).
    fn is_variance_preserving(&self) -> bool;

    /// `σ_t²`.
    fn sigma_sq(&self, t: f64) -> f64 {
        let s = self.sigma(t);
        s * s
    }
    /// Drift coefficient `f_t = d/dt log α_t = α_t'/α_t` (infinite where `α_t = 0`).
    fn drift(&self, t: f64) -> f64 {
        self.d_alpha(t) / self.alpha(t)
    }
    /// Squared diffusion `g_t² = dσ_t²/dt − 2 f_t σ_t²`.
    fn diffusion_sq(&self, t: f64) -> f64 {
        let s = self.sigma(t);
        2.0 * s * self.d_sigma(t) - 2.0 * self.drift(t) * s * s
    }
}

/// Returns `t` if it lies in `[0, 1]`, else [`Error::TimeOutOfRange`] (NaN included).
pub fn check_time(t: f64) -> Result<f64> {
    if (0.0..=1.0).contains(&t) {
        Ok(t)
    } else {
        Err(Error::TimeOutOfRange { t })
    }
}

/// The cosine schedule `α_t = cos(πt/2)`, `σ_t = sin(πt/2)` (the papers' default).
///
/// `α_t` is computed as `sin(π(1 − t)/2)` so that `α_1 = 0` and `σ_0 = 0` hold exactly; the
/// identities that are undefined at an end then report it instead of returning `1/6e-17`.
/// `g_t² = π tan(πt/2)`, infinite at `t = 1`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cosine;

impl Schedule for Cosine {
    fn name(&self) -> &'static str {
        "cosine"
    }
    fn alpha(&self, t: f64) -> f64 {
        (FRAC_PI_2 * (1.0 - t)).sin()
    }
    fn sigma(&self, t: f64) -> f64 {
        (FRAC_PI_2 * t).sin()
    }
    fn d_alpha(&self, t: f64) -> f64 {
        -FRAC_PI_2 * self.sigma(t)
    }
    fn d_sigma(&self, t: f64) -> f64 {
        FRAC_PI_2 * self.alpha(t)
    }
    fn is_variance_preserving(&self) -> bool {
        true
    }
    fn diffusion_sq(&self, t: f64) -> f64 {
        // dσ²/dt − 2fσ² = π sin cos + π sin³/cos = π tan(πt/2).
        std::f64::consts::PI * self.sigma(t) / self.alpha(t)
    }
}

/// The linear variance-preserving schedule of Song et al.: `β(t) = β_min + t(β_max − β_min)`,
/// `α_t = exp(−½∫₀ᵗβ)`, `σ_t² = 1 − α_t²`, `g_t² = β(t)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearVp {
    beta_min: f64,
    beta_max: f64,
}

impl LinearVp {
    /// Builds the schedule.
    ///
    /// # Parameters
    /// - `beta_min` (`β_min`): finite, `> 0`;
    /// - `beta_max` (`β_max`): finite, `≥ β_min`.
    ///
    /// # Errors
    /// [`Error::NonPositive`] or [`Error::Unordered`].
    ///
    /// # Examples
    /// ```
    /// use tsm_core::schedule::LinearVp;
    /// assert!(LinearVp::new(0.1, 20.0).is_ok());
    /// assert!(LinearVp::new(20.0, 0.1).is_err());
    /// ```
    pub fn new(beta_min: f64, beta_max: f64) -> Result<Self> {
        positive("beta_min", beta_min)?;
        positive("beta_max", beta_max)?;
        if beta_min > beta_max {
            return Err(Error::Unordered {
                low: "beta_min",
                low_value: beta_min,
                high: "beta_max",
                high_value: beta_max,
            });
        }
        Ok(Self { beta_min, beta_max })
    }

    /// The usual parameters `β_min = 0.1`, `β_max = 20`.
    pub const fn standard() -> Self {
        Self {
            beta_min: 0.1,
            beta_max: 20.0,
        }
    }

    /// `β_min`.
    pub fn beta_min(&self) -> f64 {
        self.beta_min
    }

    /// `β_max`.
    pub fn beta_max(&self) -> f64 {
        self.beta_max
    }

    /// `β(t)`.
    pub fn beta(&self, t: f64) -> f64 {
        self.beta_min + t * (self.beta_max - self.beta_min)
    }

    /// `∫₀ᵗ β(s) ds`.
    fn integral(&self, t: f64) -> f64 {
        self.beta_min * t + 0.5 * t * t * (self.beta_max - self.beta_min)
    }
}

impl Default for LinearVp {
    fn default() -> Self {
        Self::standard()
    }
}

impl Schedule for LinearVp {
    fn name(&self) -> &'static str {
        "linear_vp"
    }
    fn alpha(&self, t: f64) -> f64 {
        (-0.5 * self.integral(t)).exp()
    }
    fn sigma(&self, t: f64) -> f64 {
        // 1 − α² = −expm1(−∫β), accurate near t = 0.
        (-(-self.integral(t)).exp_m1()).sqrt()
    }
    fn sigma_sq(&self, t: f64) -> f64 {
        -(-self.integral(t)).exp_m1()
    }
    fn d_alpha(&self, t: f64) -> f64 {
        -0.5 * self.beta(t) * self.alpha(t)
    }
    fn d_sigma(&self, t: f64) -> f64 {
        // dσ²/dt = α²β, so dσ/dt = α²β / (2σ) (infinite at t = 0).
        let a = self.alpha(t);
        a * a * self.beta(t) / (2.0 * self.sigma(t))
    }
    fn is_variance_preserving(&self) -> bool {
        true
    }
    fn drift(&self, t: f64) -> f64 {
        -0.5 * self.beta(t)
    }
    fn diffusion_sq(&self, t: f64) -> f64 {
        self.beta(t)
    }
}

/// The variance-exploding schedule `α_t = 1`, `σ_t = σ_min (σ_max/σ_min)^t`,
/// `g_t² = 2σ_t² log(σ_max/σ_min)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ve {
    sigma_min: f64,
    sigma_max: f64,
}

impl Ve {
    /// Builds the schedule.
    ///
    /// # Parameters
    /// - `sigma_min` (`σ_min`): finite, `> 0`;
    /// - `sigma_max` (`σ_max`): finite, `> σ_min`.
    ///
    /// # Errors
    /// [`Error::NonPositive`] or [`Error::Unordered`].
    ///
    /// # Examples
    /// ```
    /// use tsm_core::schedule::Ve;
    /// assert!(Ve::new(0.01, 50.0).is_ok());
    /// assert!(Ve::new(0.0, 50.0).is_err());
    /// ```
    pub fn new(sigma_min: f64, sigma_max: f64) -> Result<Self> {
        positive("sigma_min", sigma_min)?;
        positive("sigma_max", sigma_max)?;
        if sigma_min >= sigma_max {
            return Err(Error::Unordered {
                low: "sigma_min",
                low_value: sigma_min,
                high: "sigma_max",
                high_value: sigma_max,
            });
        }
        Ok(Self {
            sigma_min,
            sigma_max,
        })
    }

    /// `σ_min = 0.01`, `σ_max = 10` (enough to cover a unit-variance target).
    pub const fn standard() -> Self {
        Self {
            sigma_min: 0.01,
            sigma_max: 10.0,
        }
    }

    /// `σ_min`.
    pub fn sigma_min(&self) -> f64 {
        self.sigma_min
    }

    /// `σ_max`.
    pub fn sigma_max(&self) -> f64 {
        self.sigma_max
    }

    fn log_ratio(&self) -> f64 {
        (self.sigma_max / self.sigma_min).ln()
    }
}

impl Default for Ve {
    fn default() -> Self {
        Self::standard()
    }
}

impl Schedule for Ve {
    fn name(&self) -> &'static str {
        "ve"
    }
    fn alpha(&self, _t: f64) -> f64 {
        1.0
    }
    fn sigma(&self, t: f64) -> f64 {
        self.sigma_min * (t * self.log_ratio()).exp()
    }
    fn d_alpha(&self, _t: f64) -> f64 {
        0.0
    }
    fn d_sigma(&self, t: f64) -> f64 {
        self.sigma(t) * self.log_ratio()
    }
    fn is_variance_preserving(&self) -> bool {
        false
    }
    fn drift(&self, _t: f64) -> f64 {
        0.0
    }
}

/// One of the built-in schedules, chosen at run time (by name on a command line).
///
/// Enum dispatch keeps it `Copy` and fast in inner loops.
///
/// # Names
/// As a [`Choice`] it parses from and prints as:
///
/// | name | schedule |
/// |---|---|
/// | `cosine` | [`Cosine`] |
/// | `linear_vp` | [`LinearVp::standard`] (`β_min = 0.1`, `β_max = 20`) |
/// | `linear_vp(beta_min=B,beta_max=B)` | [`LinearVp::new`] |
/// | `ve` | [`Ve::standard`] (`σ_min = 0.01`, `σ_max = 10`) |
/// | `ve(sigma_min=S,sigma_max=S)` | [`Ve::new`] |
///
/// In the parameterised forms both keys are required, in any order, separated by a comma
/// (spaces allowed). `Display` prints the bare name for the standard parameters and the
/// parameterised form otherwise, with numbers in Rust's shortest round-trip form, so that
/// parsing what it prints gives back the same schedule, bit for bit.
///
/// ```
/// use tsm_core::schedule::{AnySchedule, LinearVp, Schedule};
/// let s: AnySchedule = "linear_vp(beta_min=0.05, beta_max=10)".parse()?;
/// assert_eq!(s, AnySchedule::LinearVp(LinearVp::new(0.05, 10.0)?));
/// assert_eq!(s.to_string(), "linear_vp(beta_min=0.05,beta_max=10)");
/// assert_eq!(s.name(), "linear_vp");
/// assert_eq!("cosine".parse::<AnySchedule>()?.to_string(), "cosine");
/// assert!("quadratic".parse::<AnySchedule>().is_err()); // lists the valid names
/// # Ok::<(), tsm_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AnySchedule {
    /// [`Cosine`].
    Cosine(Cosine),
    /// [`LinearVp`].
    LinearVp(LinearVp),
    /// [`Ve`].
    Ve(Ve),
}

impl AnySchedule {
    /// The three built-in schedules with their standard parameters.
    pub const ALL: [AnySchedule; 3] = [
        Self::Cosine(Cosine),
        Self::LinearVp(LinearVp::standard()),
        Self::Ve(Ve::standard()),
    ];

    fn inner(&self) -> &dyn Schedule {
        match self {
            Self::Cosine(s) => s,
            Self::LinearVp(s) => s,
            Self::Ve(s) => s,
        }
    }
}

impl Choice for AnySchedule {
    const KIND: &'static str = "schedule";
    const NAMES: &'static [&'static str] = &[
        "cosine",
        "linear_vp",
        "linear_vp(beta_min=B,beta_max=B)",
        "ve",
        "ve(sigma_min=S,sigma_max=S)",
    ];
}

/// The two numbers of `key=V,key=V` (keys in any order), or `None` if malformed.
fn two_parameters(text: &str, keys: [&str; 2]) -> Option<[f64; 2]> {
    let mut values = [None; 2];
    for part in text.split(',') {
        let (key, value) = part.split_once('=')?;
        let i = keys.iter().position(|k| *k == key.trim())?;
        if values[i].is_some() {
            return None;
        }
        values[i] = Some(value.trim().parse::<f64>().ok()?);
    }
    Some([values[0]?, values[1]?])
}

impl FromStr for AnySchedule {
    type Err = Error;

    /// Parses a name of [`AnySchedule::NAMES`](Choice::NAMES) (see the [type docs](Self)).
    ///
    /// # Errors
    /// [`Error::UnknownName`] listing the valid names (also for malformed parameters);
    /// [`Error::NonPositive`] or [`Error::Unordered`] for parameters that
    /// [`LinearVp::new`] or [`Ve::new`] reject.
    fn from_str(s: &str) -> Result<Self> {
        let (name, parameters) = match s.split_once('(') {
            None => (s, None),
            Some((name, rest)) => (
                name.trim(),
                Some(rest.strip_suffix(')').ok_or_else(|| unknown::<Self>(s))?),
            ),
        };
        let pair = |keys| two_parameters(parameters.unwrap_or(""), keys);
        match (name, parameters) {
            ("cosine", None) => Ok(Self::Cosine(Cosine)),
            ("linear_vp", None) => Ok(Self::LinearVp(LinearVp::standard())),
            ("ve", None) => Ok(Self::Ve(Ve::standard())),
            ("linear_vp", Some(_)) => match pair(["beta_min", "beta_max"]) {
                Some([lo, hi]) => Ok(Self::LinearVp(LinearVp::new(lo, hi)?)),
                None => Err(unknown::<Self>(s)),
            },
            ("ve", Some(_)) => match pair(["sigma_min", "sigma_max"]) {
                Some([lo, hi]) => Ok(Self::Ve(Ve::new(lo, hi)?)),
                None => Err(unknown::<Self>(s)),
            },
            _ => Err(unknown::<Self>(s)),
        }
    }
}

impl fmt::Display for AnySchedule {
    /// The bare name for standard parameters, else `name(key=V,key=V)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LinearVp(s) if *s != LinearVp::standard() => write!(
                f,
                "linear_vp(beta_min={},beta_max={})",
                s.beta_min, s.beta_max
            ),
            Self::Ve(s) if *s != Ve::standard() => {
                write!(f, "ve(sigma_min={},sigma_max={})", s.sigma_min, s.sigma_max)
            }
            _ => f.write_str(self.name()),
        }
    }
}

crate::serde_via_str!(AnySchedule);

impl Default for AnySchedule {
    fn default() -> Self {
        Self::Cosine(Cosine)
    }
}

impl Schedule for AnySchedule {
    fn name(&self) -> &'static str {
        self.inner().name()
    }
    fn alpha(&self, t: f64) -> f64 {
        self.inner().alpha(t)
    }
    fn sigma(&self, t: f64) -> f64 {
        self.inner().sigma(t)
    }
    fn d_alpha(&self, t: f64) -> f64 {
        self.inner().d_alpha(t)
    }
    fn d_sigma(&self, t: f64) -> f64 {
        self.inner().d_sigma(t)
    }
    fn is_variance_preserving(&self) -> bool {
        self.inner().is_variance_preserving()
    }
    fn sigma_sq(&self, t: f64) -> f64 {
        self.inner().sigma_sq(t)
    }
    fn drift(&self, t: f64) -> f64 {
        self.inner().drift(t)
    }
    fn diffusion_sq(&self, t: f64) -> f64 {
        self.inner().diffusion_sq(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<AnySchedule> {
        AnySchedule::ALL.to_vec()
    }

    /// Central difference, step h; its error is O(h²) times the third derivative.
    fn derivative(f: impl Fn(f64) -> f64, t: f64) -> f64 {
        let h = 1e-6;
        (f(t + h) - f(t - h)) / (2.0 * h)
    }

    #[test]
    fn derivatives_match_finite_differences() {
        for s in all() {
            for &t in &[0.05, 0.3, 0.5, 0.8, 0.95] {
                let da = derivative(|u| s.alpha(u), t);
                let ds = derivative(|u| s.sigma(u), t);
                assert!(
                    (s.d_alpha(t) - da).abs() < 1e-6 * (1.0 + da.abs()),
                    "{s:?} α' at {t}"
                );
                assert!(
                    (s.d_sigma(t) - ds).abs() < 1e-6 * (1.0 + ds.abs()),
                    "{s:?} σ' at {t}"
                );
                // g² from its definition, with the derivatives by finite differences.
                let f = da / s.alpha(t);
                let g2 = derivative(|u| s.sigma_sq(u), t) - 2.0 * f * s.sigma_sq(t);
                assert!(
                    (s.diffusion_sq(t) - g2).abs() < 1e-5 * (1.0 + g2.abs()),
                    "{s:?} g² at {t}"
                );
            }
        }
    }

    #[test]
    fn variance_preserving_schedules_preserve_variance() {
        for s in all().into_iter().filter(|s| s.is_variance_preserving()) {
            for k in 0..=100 {
                let t = k as f64 / 100.0;
                let total = s.alpha(t).powi(2) + s.sigma_sq(t);
                assert!((total - 1.0).abs() < 1e-14, "{s:?} at {t}: {total}");
            }
        }
    }

    #[test]
    fn cosine_ends_are_exact() {
        assert_eq!(Cosine.sigma(0.0), 0.0);
        assert_eq!(Cosine.alpha(1.0), 0.0);
        assert_eq!(Cosine.alpha(0.0), 1.0);
        assert_eq!(Cosine.sigma(1.0), 1.0);
    }

    #[test]
    fn bad_parameters_are_typed_errors() {
        assert!(matches!(
            LinearVp::new(-1.0, 20.0),
            Err(Error::NonPositive {
                name: "beta_min",
                ..
            })
        ));
        assert!(matches!(
            LinearVp::new(2.0, 1.0),
            Err(Error::Unordered { .. })
        ));
        assert!(matches!(
            Ve::new(1.0, f64::NAN),
            Err(Error::NonPositive {
                name: "sigma_max",
                ..
            })
        ));
        assert!(matches!(Ve::new(1.0, 1.0), Err(Error::Unordered { .. })));
        let err = "quadratic".parse::<AnySchedule>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown schedule `quadratic`; valid names: cosine, linear_vp, \
             linear_vp(beta_min=B,beta_max=B), ve, ve(sigma_min=S,sigma_max=S)"
        );
    }

    #[test]
    fn time_outside_unit_interval_is_an_error() {
        assert!(check_time(0.0).is_ok() && check_time(1.0).is_ok());
        for t in [-1e-9, 1.0 + 1e-9, f64::NAN, f64::INFINITY] {
            assert!(
                matches!(check_time(t), Err(Error::TimeOutOfRange { .. })),
                "{t}"
            );
        }
    }

    #[test]
    fn names_round_trip_exactly() {
        let schedules = [
            AnySchedule::Cosine(Cosine),
            AnySchedule::LinearVp(LinearVp::standard()),
            AnySchedule::LinearVp(LinearVp::new(0.1 + 0.2, 1.0 / 3.0 * 60.0).unwrap()),
            AnySchedule::Ve(Ve::standard()),
            AnySchedule::Ve(Ve::new(1e-3, 50.0).unwrap()),
        ];
        for s in schedules {
            let text = s.to_string();
            let back: AnySchedule = text.parse().expect(&text);
            assert_eq!(back, s, "{text}");
            assert_eq!(format!("{back:?}"), format!("{s:?}"), "bits of {text}");
        }
        assert_eq!(
            AnySchedule::ALL.map(|s| s.to_string()),
            ["cosine", "linear_vp", "ve"]
        );
        // The standard parameters spelled out print as the bare name.
        let s: AnySchedule = "ve(sigma_max=10, sigma_min=0.01)".parse().unwrap();
        assert_eq!(s.to_string(), "ve");
        // Every listed form parses, with numbers in place of the placeholders.
        for name in <AnySchedule as Choice>::NAMES {
            let name = name.replace("=B,", "=0.1,").replace("=B)", "=20)");
            let name = name.replace("=S,", "=0.01,").replace("=S)", "=10)");
            assert!(name.parse::<AnySchedule>().is_ok(), "{name}");
        }
    }

    #[test]
    fn malformed_parameters_are_typed_errors() {
        for bad in [
            "cosine()",
            "linear_vp(",
            "linear_vp()",
            "linear_vp(beta_min=0.1)",
            "linear_vp(beta_min=0.1,beta_min=20)",
            "linear_vp(beta_min=0.1,beta_max=x)",
            "linear_vp(sigma_min=0.1,sigma_max=20)",
            "ve(sigma_min=0.01,sigma_max=10,extra=1)",
            "ve(sigma_min=0.01,sigma_max=10)x",
        ] {
            assert!(
                matches!(bad.parse::<AnySchedule>(), Err(Error::UnknownName { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            "linear_vp(beta_min=20,beta_max=0.1)".parse::<AnySchedule>(),
            Err(Error::Unordered { .. })
        ));
        assert!(matches!(
            "ve(sigma_min=0,sigma_max=10)".parse::<AnySchedule>(),
            Err(Error::NonPositive { .. })
        ));
    }
}
