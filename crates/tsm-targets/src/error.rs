//! The crate's error type.

/// Everything that can go wrong when building or using a target.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No components.
    #[error("a mixture needs at least one component")]
    Empty,
    /// Mixture weights that do not sum to one (within 1e-9).
    #[error("mixture weights must sum to 1, got {sum}")]
    InvalidWeights {
        /// Their sum.
        sum: f64,
    },
    /// A negative or non-finite mixture weight.
    #[error("mixture weight {index} must be finite and >= 0, got {value}")]
    NegativeWeight {
        /// Which component.
        index: usize,
        /// The value.
        value: f64,
    },
    /// A zero, negative or non-finite standard deviation.
    #[error(
        "std of component {component}, coordinate {coordinate} must be finite and > 0, got {value}"
    )]
    NonPositiveStd {
        /// Which component.
        component: usize,
        /// Which coordinate.
        coordinate: usize,
        /// The value.
        value: f64,
    },
    /// A non-finite mean.
    #[error("mean of component {component}, coordinate {coordinate} must be finite, got {value}")]
    NonFiniteMean {
        /// Which component.
        component: usize,
        /// Which coordinate.
        coordinate: usize,
        /// The value.
        value: f64,
    },
    /// Vectors of inconsistent lengths.
    #[error("dimension mismatch in {op}: expected {expected}, got {got}")]
    DimMismatch {
        /// Expected length.
        expected: usize,
        /// Actual length.
        got: usize,
        /// What was being checked.
        op: &'static str,
    },
    /// An unknown target name; lists the valid ones.
    #[error("unknown target `{name}`; valid targets: {valid}")]
    UnknownTarget {
        /// The name given.
        name: String,
        /// The valid names, comma separated.
        valid: String,
    },
    /// An error from `tsm-core` (a time out of range, say).
    #[error(transparent)]
    Core(#[from] tsm_core::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn check_len(expected: usize, got: usize, op: &'static str) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::DimMismatch { expected, got, op })
    }
}
