//! Time weightings `λ_t` of the score-matching loss (paper §4.1, Fig. 3), eq. 19:
//! `ℓ(θ) = ∫ λ_t E‖L(X_0, X_t, t) − s_θ(X_t, t)‖² dt`.
//!
//! | weighting | `λ_t` (before normalisation) |
//! |---|---|
//! | [`Weighting::Original`] (Song et al., as printed in the paper) | `1/σ_t²` |
//! | [`Weighting::DsmOptimal`] (Karras et al.) | `σ_t² (σ_t² + σ_data²)/σ_data²` |
//! | [`Weighting::TsmOptimal`] (paper App. D) | `α_t² σ_data² (σ_t² + α_t² σ_data²)/σ_t²` |
//! | [`Weighting::Uniform`] | `1` |
//!
//! The paper normalises each to integrate to one over the time range used; so does
//! [`NormalisedWeighting`], by adaptive quadrature.
//!
//! # References
//! [^1]: De Bortoli et al. (2024), *Target Score Matching*, §4.1 and App. D.
//! [^2]: Karras et al. (2022), *Elucidating the design space of diffusion-based generative models*.

use crate::error::positive;
use crate::schedule::{AnySchedule, Schedule};
use crate::{Error, Result};

/// A time weighting `λ_t` (see the [module docs](self)).
///
/// As a [`Choice`](crate::choice::Choice) it parses from and prints as its snake_case name: `original`,
/// `dsm_optimal`, `tsm_optimal`, `uniform`.
///
/// ```
/// use tsm_core::weighting::Weighting;
/// let w: Weighting = "dsm_optimal".parse()?;
/// assert_eq!(w, Weighting::DsmOptimal);
/// assert_eq!(w.to_string(), "dsm_optimal");
/// assert!("karras".parse::<Weighting>().is_err()); // lists the valid names
/// # Ok::<(), tsm_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Weighting {
    /// `λ_t = 1/σ_t²`.
    Original,
    /// `λ_t = σ_t² (σ_t² + σ_data²)/σ_data²`.
    DsmOptimal,
    /// `λ_t = α_t² σ_data² (σ_t² + α_t² σ_data²)/σ_t²`.
    TsmOptimal,
    /// `λ_t = 1`.
    Uniform,
}

impl Weighting {
    /// All four, in the paper's order.
    pub const ALL: [Weighting; 4] = [
        Self::Original,
        Self::DsmOptimal,
        Self::TsmOptimal,
        Self::Uniform,
    ];

    /// The unnormalised `λ_t` (infinite where it diverges, e.g. `1/σ_0²`).
    pub fn unnormalised(
        &self,
        schedule: &(impl Schedule + ?Sized),
        t: f64,
        sigma_data_sq: f64,
    ) -> f64 {
        let (a2, s2, v) = (
            schedule.alpha(t).powi(2),
            schedule.sigma_sq(t),
            sigma_data_sq,
        );
        match self {
            Self::Original => 1.0 / s2,
            Self::DsmOptimal => s2 * (s2 + v) / v,
            Self::TsmOptimal => a2 * v * (s2 + a2 * v) / s2,
            Self::Uniform => 1.0,
        }
    }
}

crate::unit_choice!(Weighting, "weighting", [
    Original => "original",
    DsmOptimal => "dsm_optimal",
    TsmOptimal => "tsm_optimal",
    Uniform => "uniform",
]);

/// A time interval `[t_min, t_max] ⊆ [0, 1]` on which `t` is drawn uniformly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeRange {
    t_min: f64,
    t_max: f64,
}

impl TimeRange {
    /// Builds the range.
    ///
    /// # Errors
    /// [`Error::InvalidTimeRange`] unless `0 ≤ t_min < t_max ≤ 1`.
    pub fn new(t_min: f64, t_max: f64) -> Result<Self> {
        if 0.0 <= t_min && t_min < t_max && t_max <= 1.0 {
            Ok(Self { t_min, t_max })
        } else {
            Err(Error::InvalidTimeRange { t_min, t_max })
        }
    }

    /// `[10⁻³, 1 − 10⁻³]`: where a quantity diverges at an end (the trimmed range of
    /// `docs/conventions.md`).
    pub fn trimmed() -> Self {
        Self {
            t_min: 1e-3,
            t_max: 1.0 - 1e-3,
        }
    }

    /// Lower end.
    pub fn t_min(&self) -> f64 {
        self.t_min
    }
    /// Upper end.
    pub fn t_max(&self) -> f64 {
        self.t_max
    }
    /// Length `t_max − t_min`.
    pub fn len(&self) -> f64 {
        self.t_max - self.t_min
    }
    /// Always false: a valid range has positive length.
    pub fn is_empty(&self) -> bool {
        false
    }
    /// Maps `u ∈ [0, 1)` to `t_min + u (t_max − t_min)`.
    pub fn lerp(&self, u: f64) -> f64 {
        self.t_min + u * (self.t_max - self.t_min)
    }
}

impl Default for TimeRange {
    fn default() -> Self {
        Self::trimmed()
    }
}

/// A weighting normalised so that `∫_{t_min}^{t_max} λ_t dt = 1` for a given schedule and
/// `σ_data²`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormalisedWeighting {
    weighting: Weighting,
    schedule: AnySchedule,
    sigma_data_sq: f64,
    range: TimeRange,
    scale: f64,
}

impl NormalisedWeighting {
    /// Normalises `weighting` over `range`.
    ///
    /// # Errors
    /// [`Error::NonPositive`] for a bad `σ_data²`; [`Error::NonFinite`] if the integral
    /// diverges on `range` (e.g. `1/σ_t²` on a range that includes `t = 0`).
    pub fn new(
        weighting: Weighting,
        schedule: AnySchedule,
        sigma_data_sq: f64,
        range: TimeRange,
    ) -> Result<Self> {
        positive("sigma_data_sq", sigma_data_sq)?;
        let integral = crate::quadrature::integrate(
            |t| weighting.unnormalised(&schedule, t, sigma_data_sq),
            range.t_min,
            range.t_max,
            1e-10,
        );
        if !(integral.is_finite() && integral > 0.0) {
            return Err(Error::NonFinite {
                op: "weighting normalisation",
                value: integral,
            });
        }
        Ok(Self {
            weighting,
            schedule,
            sigma_data_sq,
            range,
            scale: 1.0 / integral,
        })
    }

    /// `λ_t`, normalised.
    pub fn at(&self, t: f64) -> f64 {
        self.scale
            * self
                .weighting
                .unnormalised(&self.schedule, t, self.sigma_data_sq)
    }

    /// The underlying weighting.
    pub fn weighting(&self) -> Weighting {
        self.weighting
    }
    /// The range it is normalised over.
    pub fn range(&self) -> TimeRange {
        self.range
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::choice::Choice;
    use crate::quadrature::integrate;

    #[test]
    fn normalised_weightings_integrate_to_one() {
        for w in Weighting::ALL {
            for s in AnySchedule::ALL {
                let n = NormalisedWeighting::new(w, s, 1.0, TimeRange::trimmed()).unwrap();
                let total = integrate(|t| n.at(t), 1e-3, 1.0 - 1e-3, 1e-12);
                assert!((total - 1.0).abs() < 1e-8, "{w:?} {s}: {total}");
            }
        }
    }

    #[test]
    fn weightings_match_their_formulas_at_a_point() {
        let s = crate::schedule::Cosine;
        let t: f64 = 0.3;
        let (a, sg) = (
            (std::f64::consts::FRAC_PI_2 * t).cos(),
            (std::f64::consts::FRAC_PI_2 * t).sin(),
        );
        let v = 2.0;
        let close = |x: f64, y: f64| (x - y).abs() < 1e-12 * y.abs();
        assert!(close(
            Weighting::Original.unnormalised(&s, t, v),
            1.0 / (sg * sg)
        ));
        assert!(close(
            Weighting::DsmOptimal.unnormalised(&s, t, v),
            sg * sg * (sg * sg + v) / v
        ));
        assert!(close(
            Weighting::TsmOptimal.unnormalised(&s, t, v),
            a * a * v * (sg * sg + a * a * v) / (sg * sg)
        ));
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        assert!(TimeRange::new(0.5, 0.5).is_err());
        assert!(TimeRange::new(-0.1, 0.5).is_err());
        assert!(TimeRange::new(0.1, 1.1).is_err());
        let err = "karras".parse::<Weighting>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown weighting `karras`; valid names: original, dsm_optimal, tsm_optimal, uniform"
        );
        let full = TimeRange::new(0.0, 1.0).unwrap();
        assert!(matches!(
            NormalisedWeighting::new(Weighting::Original, AnySchedule::default(), 1.0, full),
            Err(Error::NonFinite { .. })
        ));
    }

    #[test]
    fn names_round_trip() {
        for w in Weighting::ALL {
            assert_eq!(w.to_string().parse::<Weighting>().unwrap(), w);
            assert_eq!(w.to_string(), w.name());
        }
        assert_eq!(Weighting::ALL.len(), Weighting::NAMES.len());
    }
}
