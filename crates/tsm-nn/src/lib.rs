//! # tsm-nn
//!
//! Candle score networks, losses, training, samplers and metrics for Target Score Matching
//! (De Bortoli et al. 2024, *Target Score Matching*, §4.2 and Fig. 5).
//!
//! - [`network`]: the paper's MLP with a sinusoidal time embedding ([`embedding`]), as a
//!   candle-nn `Module` built from a `VarBuilder`;
//! - [`precond`]: output parameterisations — plain score, ε-prediction, the TSM-scaled model of
//!   Cor. 2.4 and App. D's preconditioning;
//! - [`loss`]: DSM, TSM, `κ`, `κ̄` and fixed-`w` regression losses with the four weightings;
//! - [`config`], [`engine`], [`optim`], [`train`], [`checkpoint`]: Adam + EMA training from a
//!   self-contained configuration, with atomic, resumable checkpoints ([`io`]); a generic
//!   candle engine and a fast hand-written CPU engine;
//! - [`score`]: a trained model as a `tsm_core::sampler::NoisedScore`, for the samplers of
//!   `tsm-core` (reverse-SDE Euler–Maruyama, probability-flow Heun, predictor–corrector);
//! - [`implicit`]: implicit (Hyvärinen 2005) and sliced (Song et al. 2019) score matching,
//!   with a forward-mode Jacobian–vector product through the network, and finite-difference
//!   SSM (Pang et al. 2020);
//! - [`sbi`]: conditional score models for simulation-based inference, trained on a fixed
//!   set of gray-box simulations with the DSM, LTSM or MIX loss (Ko & Geffner 2024);
//! - [`lie`]: score networks on the torus and `SO(3)` (tangent outputs, geometric inputs),
//!   trained by DSM, TSM or a mixture with the same trainer, sampled by the geodesic random walk;
//! - [`bridge`], [`non_additive`]: score networks on bridges (Prop. 3.4, loss eq. 15, `α` as
//!   the time input) and under non-additive noise (Prop. 3.1), DSM or TSM, same trainer;
//! - [`mmd`]: the unbiased RBF-kernel MMD² and a permutation two-sample test on it;
//! - [`c2st`]: the classifier two-sample test (cross-validated MLP accuracy, 0.5 =
//!   indistinguishable), the SBI benchmark's metric;
//! - [`check`]: a PASS/FAIL check of samples against a Gaussian-mixture target (MMD² test at
//!   the target's scales, mode shares by χ²);
//! - [`DeviceKind`]: `cpu` / `cuda` / `metal` by name.
//!
//! **Architecture invariant:** depends on `tsm-core` and `tsm-targets`, never the reverse.
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

pub mod bridge;
pub mod c2st;
pub mod check;
pub mod checkpoint;
pub mod config;
mod device;
pub mod embedding;
pub mod engine;
mod error;
pub mod implicit;
pub mod io;
mod kernels;
pub mod lie;
pub mod loss;
pub mod mmd;
pub mod network;
pub mod non_additive;
pub mod optim;
pub mod precond;
pub mod sbi;
pub mod score;
pub mod train;

/// candle-core, re-exported so that users need not depend on it to build tensors.
pub use candle;
/// candle-nn, re-exported so that users need not depend on it (nor match its version) to
/// build the networks: [`network::Mlp::new`] and [`ScoreModel::new`] take its `VarBuilder`,
/// and [`network::Mlp`] is its `Module`.
///
/// ```
/// use tsm_nn::candle::{DType, Device, Tensor};
/// use tsm_nn::candle_nn::{Module, VarBuilder};
/// use tsm_nn::{network::Mlp, MlpConfig};
///
/// let cfg = MlpConfig { hidden: 8, embedding_dim: 4, ..MlpConfig::default() };
/// let mlp = Mlp::new(&cfg, VarBuilder::zeros(DType::F32, &Device::Cpu))?;
/// let input = Tensor::zeros((3, cfg.dim + cfg.embedding_dim), DType::F32, &Device::Cpu)?;
/// assert_eq!(mlp.forward(&input)?.dims(), &[3, cfg.dim]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub use candle_nn;
pub use config::TrainConfig;
pub use device::{test_device, DeviceKind};
pub use error::{Error, Result};
pub use kernels::{cap_vector_path, vector_path, VectorPath};
pub use network::{MlpConfig, ModelConfig, ScoreModel};
pub use precond::Parameterisation;
pub use train::{Trainer, TrainerOptions};
