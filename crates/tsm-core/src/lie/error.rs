//! The error type of the Lie-group module and of the group targets built on it.

/// Everything that can go wrong with group elements, group noise and group targets; every
/// variant names the offending value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LieError {
    /// A matrix that is not a rotation: `‖RᵀR − I‖_max` above tolerance or `det R ≤ 0`.
    #[error(
        "not a rotation matrix: max |RᵀR − I| = {orthogonality_error:e} (tolerance {tolerance:e}), det = {det}"
    )]
    NotRotation {
        /// `max_ij |(RᵀR − I)_ij|`.
        orthogonality_error: f64,
        /// `det R`.
        det: f64,
        /// The tolerance on the orthogonality error.
        tolerance: f64,
    },
    /// A non-finite coordinate, angle or matrix entry.
    #[error("non-finite {what}: {value}")]
    NonFinite {
        /// What was given (`"angle"`, `"matrix entry"`, `"tangent coordinate"`).
        what: &'static str,
        /// The value.
        value: f64,
    },
    /// A variance, heat-kernel time or standard deviation that must be finite and positive.
    #[error("`{name}` must be finite and positive, got {value}")]
    NonPositive {
        /// Which parameter.
        name: &'static str,
        /// The value.
        value: f64,
    },
    /// Slices of the wrong length.
    #[error("dimension mismatch in {op}: expected {expected}, got {got}")]
    DimMismatch {
        /// Expected length.
        expected: usize,
        /// Actual length.
        got: usize,
        /// The operation that checked.
        op: &'static str,
    },
    /// A mixture without components.
    #[error("a mixture needs at least one component")]
    Empty,
    /// Mixture weights that are negative, non-finite, or do not sum to one (within 1e-9).
    #[error("mixture weight {index} = {value} is invalid (weights must be finite, >= 0 and sum to 1; sum = {sum})")]
    InvalidWeight {
        /// Which component (the first bad one; `usize::MAX` if only the sum is off).
        index: usize,
        /// Its value (the sum if only the sum is off).
        value: f64,
        /// The sum of all weights.
        sum: f64,
    },
    /// A heat-time grid with fewer than two or more than `max` times (see
    /// `lie::sampler::HeatGrid`).
    #[error("a heat-time grid needs between 2 and {max} times, got {points}")]
    GridSize {
        /// The number of times given.
        points: usize,
        /// The most times a grid may have.
        max: usize,
    },
    /// Heat-time grid times that do not decrease strictly.
    #[error("heat-time grid: time {index} = {value} does not decrease strictly from {previous}")]
    Unordered {
        /// The index of the offending time.
        index: usize,
        /// Its value.
        value: f64,
        /// The time before it.
        previous: f64,
    },
    /// A sample size too small for an estimate.
    #[error("{op} needs at least {needed} draws, got {got}")]
    TooFewDraws {
        /// The operation.
        op: &'static str,
        /// Minimum number.
        needed: usize,
        /// Number given.
        got: usize,
    },
    /// An error reported by a group score model outside this crate (a network's tensor
    /// error, say), kept whole: its message is this error's message.
    #[error(transparent)]
    Score(#[from] crate::ScoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `?` carries a `LieError` into `tsm_core::Result` whole.
    #[test]
    fn lie_errors_convert_into_the_crate_error() {
        fn heat(t: f64) -> crate::Result<f64> {
            Ok(crate::lie::igso3::Igso3::new(t)?.time())
        }
        assert_eq!(heat(0.5), Ok(0.5));
        let e = heat(-1.0).expect_err("negative time");
        assert!(matches!(
            e,
            crate::Error::Lie(LieError::NonPositive { value, .. }) if value == -1.0
        ));
        assert!(e.to_string().contains("-1"), "{e}");
    }
}
