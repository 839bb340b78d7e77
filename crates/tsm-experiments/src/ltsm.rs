//! Shared code of the Latent TSM figures (`ltsm_fig2`, `ltsm_fig5`; Ko & Geffner 2024): the
//! network and optimiser sizes of a figure's SBI runs and one function that trains a
//! conditional score model on a simulation set with a given loss.

use std::sync::Arc;

use anyhow::{Context, Result};
use serde::Serialize;
use tsm_core::identity::ScoreIdentity;
use tsm_core::weighting::Weighting;
use tsm_nn::candle::Device;
use tsm_nn::loss::{LossConfig, TargetVariances};
use tsm_nn::optim::AdamConfig;
use tsm_nn::sbi::{sbi_config, SbiLoss, SbiTrainer, SimulationBatches, SimulationSet};
use tsm_nn::{MlpConfig, ModelConfig, TrainConfig, TrainerOptions};

/// The sizes of a figure's SBI training runs (everything else is the `sbi train` default:
/// cosine schedule, score parameterisation, uniform weighting on `[10⁻³, 1 − 10⁻³]`, CPU
/// engine).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RunSizes {
    /// Hidden width.
    pub hidden: usize,
    /// Hidden layers.
    pub depth: usize,
    /// Time-embedding dimension.
    pub embedding_dim: usize,
    /// Batch size.
    pub batch: usize,
    /// Adam steps.
    pub steps: u64,
    /// Adam learning rate.
    pub lr: f64,
    /// EMA decay.
    pub ema_decay: f64,
}

impl RunSizes {
    /// The `sbi train` defaults: MLP 3 × 128, embedding 64, batch 256, lr 10⁻³, EMA 0.999,
    /// with `steps` steps.
    pub fn full(steps: u64) -> Self {
        Self {
            hidden: 128,
            depth: 3,
            embedding_dim: 64,
            batch: 256,
            steps,
            lr: 1e-3,
            ema_decay: 0.999,
        }
    }

    /// A small network for `--quick` runs: MLP 2 × 32, embedding 16, batch 128, EMA 0.99.
    pub fn quick(steps: u64) -> Self {
        Self {
            hidden: 32,
            depth: 2,
            embedding_dim: 16,
            batch: 128,
            steps,
            lr: 1e-3,
            ema_decay: 0.99,
        }
    }
}

/// Trains a conditional score model on `set` with `loss` and `sizes` (seed: the set's), on
/// the CPU engine with `threads` threads; returns the trainer at its last step.
///
/// # Errors
/// The configuration (as [`sbi_config`]) or a diverged run.
pub fn train_sbi(
    set: &Arc<SimulationSet>,
    loss: SbiLoss,
    sizes: &RunSizes,
    threads: usize,
) -> Result<SbiTrainer> {
    let base = TrainConfig {
        model: ModelConfig {
            mlp: MlpConfig {
                hidden: sizes.hidden,
                depth: sizes.depth,
                embedding_dim: sizes.embedding_dim,
                ..MlpConfig::default()
            },
            ..ModelConfig::default()
        },
        adam: AdamConfig {
            lr: sizes.lr,
            ema_decay: sizes.ema_decay,
            ..AdamConfig::default()
        },
        batch: sizes.batch,
        steps: sizes.steps,
        seed: set.seed(),
        checkpoint_every: 0,
        ..TrainConfig::new(
            "",
            ModelConfig::default(),
            LossConfig::new(
                ScoreIdentity::Dsi,
                Weighting::Uniform,
                &TargetVariances::new(1.0, None)?,
            )?,
        )
    };
    let cfg = sbi_config(set, loss, base)?;
    let batches = SimulationBatches::new(set.clone(), &cfg)?;
    let mut trainer = SbiTrainer::with_source(
        cfg,
        batches,
        &Device::Cpu,
        TrainerOptions::with_threads(threads),
    )?;
    trainer
        .run(None, |_, _| {})
        .with_context(|| format!("training {loss} on {}", set.task()))?;
    Ok(trainer)
}
