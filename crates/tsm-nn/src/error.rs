//! The crate's error type: one enum, variants carrying the offending values.

use std::path::PathBuf;

/// Everything that can go wrong in `tsm-nn`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error from candle (shapes, dtypes, devices, safetensors parsing).
    #[error(transparent)]
    Candle(#[from] candle::Error),
    /// An error from `tsm-core` (a time out of range, an unknown schedule or weighting name).
    #[error(transparent)]
    Core(#[from] tsm_core::Error),
    /// An error from `tsm-targets` (an unknown target name, say).
    #[error(transparent)]
    Targets(#[from] tsm_targets::Error),
    /// A device that is unknown, or whose cargo feature was not built.
    #[error("device `{name}` is not available: {reason}")]
    Device {
        /// The device asked for.
        name: String,
        /// Why, in words (names the missing cargo feature where that is the cause).
        reason: String,
    },
    /// A non-finite training loss, found before the step's update (nothing was updated).
    /// [`Trainer::run`](crate::Trainer::run) reports it as [`Error::Diverged`].
    #[error("training loss is {value} at step {step} (no update was made)")]
    NonFiniteLoss {
        /// The step (1-based: the step whose update would have used this loss).
        step: u64,
        /// The loss value (NaN or ±∞).
        value: f64,
    },
    /// A training run that diverged ([`crate::train::Divergence`]); it stopped at `step`
    /// without saving, so the last checkpoint written (if any) is the last good one.
    #[error("training diverged at step {step}: {reason}; {}", checkpoint_note(*.last_checkpoint))]
    Diverged {
        /// The step at which the divergence was detected.
        step: u64,
        /// What was detected.
        reason: crate::train::Divergence,
        /// The step of the last checkpoint this run wrote into (or resumed from) its folder,
        /// kept as it was; `None` when there is none.
        last_checkpoint: Option<u64>,
    },
    /// A configuration value outside its allowed range (a bad flag value, typically):
    /// `field` names the [`TrainConfig`](crate::TrainConfig) field (`batch`, `adam.lr`,
    /// `loss.t_min`, `model.mlp.hidden`, …) so that a CLI can name its flag.
    #[error("`{field}` = {value} is invalid: must be {allowed}")]
    Invalid {
        /// The field's path in the configuration.
        field: &'static str,
        /// The offending value, formatted.
        value: String,
        /// What is allowed, in words.
        allowed: String,
    },
    /// A checkpoint that is missing, truncated or corrupt.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file that could not be read.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A target whose dimension is not the model's.
    #[error("the target has dimension {target}, the model {model}")]
    TargetDimension {
        /// The model's dimension (`MlpConfig::dim`).
        model: usize,
        /// The target's dimension.
        target: usize,
    },
    /// A configuration that does not fit (a checkpoint for another network, a bad flag value).
    #[error("configuration mismatch: {what}")]
    Config {
        /// What does not fit, in words.
        what: String,
    },
    /// An I/O error on a named file.
    #[error("I/O on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// `x` in its shortest round-trip form, in scientific notation when the plain one would be
/// long (`1e-300`, not three hundred digits).
pub(crate) fn num(x: f64) -> String {
    if x == 0.0 || !x.is_finite() || (1e-4..1e15).contains(&x.abs()) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// The end of [`Error::Diverged`]'s message: whether a checkpoint is left.
fn checkpoint_note(last: Option<u64>) -> String {
    match last {
        Some(step) => format!("the last good checkpoint (step {step}) is kept"),
        None => "no checkpoint was written".to_owned(),
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::Config`].
    pub(crate) fn config(what: impl Into<String>) -> Self {
        Self::Config { what: what.into() }
    }
    /// Shorthand for [`Error::Invalid`].
    pub(crate) fn invalid(
        field: &'static str,
        value: impl std::fmt::Display,
        allowed: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            field,
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }
    /// Shorthand for [`Error::Checkpoint`].
    pub(crate) fn checkpoint(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Checkpoint {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// A `tsm-nn` error as `tsm-core`'s, for code that reports through `tsm_core::Result` (a
/// [`ModelScore`](crate::score::ModelScore) driving the samplers of `tsm_core::sampler`):
/// `tsm-core`'s own errors come back unwrapped, anything else (candle's) is kept whole as
/// [`tsm_core::Error::Score`]. The other way, a `tsm_core::Error` is an [`Error::Core`].
impl From<Error> for tsm_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(e) => e,
            other => tsm_core::ScoreError::new(other).into(),
        }
    }
}

/// A Lie-group error (`tsm_core::lie::LieError`) as this crate's, through
/// [`tsm_core::Error::Lie`], so that `?` carries it in the group training code ([`crate::lie`]).
impl From<tsm_core::lie::LieError> for Error {
    fn from(e: tsm_core::lie::LieError) -> Self {
        Error::Core(e.into())
    }
}
