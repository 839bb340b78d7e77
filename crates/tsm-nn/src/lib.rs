//! # tsm-nn
//!
//! Candle score networks, losses, training, samplers and metrics for Target Score Matching
//! (paper `001`, De Bortoli et al. 2024; §4.2 and Fig. 5).
//!
//! - [`network`]: the paper's MLP with a sinusoidal time embedding ([`embedding`]), as a
//!   candle-nn `Module` built from a `VarBuilder`;
//! - [`precond`]: output parameterisations — plain score, ε-prediction, the TSM-scaled model of
//!   Cor. 2.4 and App. D's preconditioning;
//! - [`loss`]: DSM, TSM, `κ`, `κ̄` and fixed-`w` regression losses with the four weightings;
//! - [`engine`], [`optim`], [`train`], [`checkpoint`]: Adam + EMA training with atomic,
//!   resumable checkpoints; a generic candle engine and a fast hand-written CPU engine;
//! - [`score`]: a trained model as a `tsm_core::sampler::NoisedScore`, for the samplers of
//!   `tsm-core` (reverse-SDE Euler–Maruyama, probability-flow Heun, predictor–corrector);
//! - [`mmd`]: the unbiased RBF-kernel MMD²;
//! - [`device`]: `cpu` / `cuda` / `metal` by name.
//!
//! **Architecture invariant:** depends on `tsm-core` and `tsm-targets`, never the reverse.
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

pub mod checkpoint;
mod device;
pub mod embedding;
pub mod engine;
mod error;
pub mod kernels;
pub mod loss;
pub mod mmd;
pub mod network;
pub mod optim;
pub mod precond;
pub mod score;
pub mod train;

/// candle-core, re-exported so that users need not depend on it to build tensors.
pub use candle;
pub use device::{device, DEVICE_NAMES};
pub use error::{Error, Result};
pub use network::{MlpConfig, ModelConfig, ScoreModel};
pub use precond::Parameterisation;
pub use train::{TrainConfig, Trainer};
