//! The crate's error type.

use std::fmt;
use std::sync::Arc;

/// Everything that can go wrong in `tsm-core`: every variant carries the offending values.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A time outside the schedule's range `[0, 1]` (or a non-finite time).
    #[error("time t = {t} is outside [0, 1]")]
    TimeOutOfRange {
        /// The offending time.
        t: f64,
    },
    /// A time range that is empty, reversed or not inside `[0, 1]`.
    #[error("time range [{t_min}, {t_max}] must satisfy 0 <= t_min < t_max <= 1")]
    InvalidTimeRange {
        /// Lower end.
        t_min: f64,
        /// Upper end.
        t_max: f64,
    },
    /// A parameter that must be finite and positive was not.
    #[error("parameter `{name}` must be finite and positive, got {value}")]
    NonPositive {
        /// Which parameter.
        name: &'static str,
        /// The offending value.
        value: f64,
    },
    /// An index past the end of what an accessor holds (an identity `k ≥ len()`, a coordinate
    /// `j ≥ d`).
    #[error("{what} index {index} is out of range (there are {len})")]
    IndexOutOfRange {
        /// What is indexed (`"identity"`, `"coordinate"`).
        what: &'static str,
        /// The index given.
        index: usize,
        /// How many there are.
        len: usize,
    },
    /// An estimator's result asked for before it has one: before its first `run`, after a
    /// failed `run`, or after new coefficients.
    #[error("{op}: no estimate yet (call `run` first)")]
    NoEstimate {
        /// The accessor called.
        op: &'static str,
    },
    /// A parameter outside its allowed interval.
    #[error("parameter `{name}` = {value} is outside {allowed}")]
    OutOfRange {
        /// Which parameter.
        name: &'static str,
        /// The offending value.
        value: f64,
        /// The allowed interval, in words.
        allowed: &'static str,
    },
    /// Two parameters in the wrong order (e.g. `β_min > β_max`).
    #[error("`{low}` = {low_value} must be below `{high}` = {high_value}")]
    Unordered {
        /// Name of the parameter that should be smaller.
        low: &'static str,
        /// Its value.
        low_value: f64,
        /// Name of the parameter that should be larger.
        high: &'static str,
        /// Its value.
        high_value: f64,
    },
    /// A regression target evaluated where it has no finite value (e.g. `L_DSI` at `σ_t = 0`).
    #[error("the {identity} target is undefined at t = {t} ({reason})")]
    UndefinedAt {
        /// The identity's short name.
        identity: &'static str,
        /// The time.
        t: f64,
        /// Why, in words.
        reason: &'static str,
    },
    /// An identity that only holds for a variance-preserving schedule (`σ_t² = 1 − α_t²`).
    #[error("the {identity} identity needs a variance-preserving schedule, got `{schedule}`")]
    NotVariancePreserving {
        /// The identity's short name.
        identity: &'static str,
        /// The schedule's name.
        schedule: &'static str,
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
    /// A name (schedule, weighting, identity) that is not known; lists the valid ones.
    #[error("unknown {kind} `{name}`; valid names: {valid}")]
    UnknownName {
        /// What kind of thing was looked up.
        kind: &'static str,
        /// The name given.
        name: String,
        /// The valid names, comma separated.
        valid: String,
    },
    /// A choice whose number was left to be taken from the target (e.g. `kappa_bar` without
    /// `σ_mode²`), used before it was resolved, or resolved for a target that lacks the number.
    #[error("`{name}` needs {quantity}: {hint}")]
    Unresolved {
        /// The choice's name (`kappa`, `kappa_bar`, `preconditioned`).
        name: &'static str,
        /// The missing number, in words.
        quantity: &'static str,
        /// How to supply it.
        hint: &'static str,
    },
    /// A Monte Carlo or importance-sampling estimate with too few usable draws.
    #[error("{op} needs at least {needed} draws, got {got}")]
    TooFewDraws {
        /// The operation.
        op: &'static str,
        /// Minimum number.
        needed: usize,
        /// Number given.
        got: usize,
    },
    /// All importance weights underflowed or were non-finite.
    #[error("all {count} importance weights are zero or non-finite (log-weights max = {max_log_weight})")]
    DegenerateWeights {
        /// Number of proposals.
        count: usize,
        /// The largest log-weight seen (may be −∞ or NaN).
        max_log_weight: f64,
    },
    /// A non-finite value produced from finite input.
    #[error("non-finite value in {op}: {value}")]
    NonFinite {
        /// Where.
        op: &'static str,
        /// The value.
        value: f64,
    },
    /// An error reported by a score model outside this crate (a network's tensor error, say),
    /// kept whole: its message is this error's message, and
    /// [`ScoreError::downcast_ref`] gives the original back.
    #[error(transparent)]
    Score(#[from] ScoreError),
    /// An error of the Lie-group module ([`crate::lie`]), kept whole, so that `?` carries it
    /// into code that reports through this crate's [`Result`].
    #[error(transparent)]
    Lie(#[from] crate::lie::LieError),
}

/// The error of a score model implemented outside `tsm-core` (see [`Error::Score`]).
///
/// Shared behind an `Arc` so that [`Error`] stays `Clone`; two `ScoreError`s are equal when
/// they are clones of the same error.
#[derive(Clone)]
pub struct ScoreError(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl ScoreError {
    /// Wraps `error`.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(error))
    }

    /// The wrapped error.
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }

    /// The wrapped error as an `E`, if it is one.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        let inner: &(dyn std::error::Error + 'static) = &*self.0;
        inner.downcast_ref::<E>()
    }
}

impl PartialEq for ScoreError {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for ScoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ScoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl std::error::Error for ScoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks that `value` is finite and strictly positive.
pub(crate) fn positive(name: &'static str, value: f64) -> Result<f64> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(Error::NonPositive { name, value })
    }
}

/// Formats a list of valid names for [`Error::UnknownName`].
pub(crate) fn unknown_name(kind: &'static str, name: &str, valid: &[&str]) -> Error {
    Error::UnknownName {
        kind,
        name: name.to_owned(),
        valid: valid.join(", "),
    }
}
