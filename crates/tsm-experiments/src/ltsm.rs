//! Shared code of the Latent TSM figures (`ltsm_fig1_variance`, `ltsm_fig2`, `ltsm_fig4_weight`,
//! `ltsm_fig5`; Ko & Geffner 2024): the network and optimiser sizes of a figure's SBI runs, one
//! function that trains a conditional score model on a simulation set with a given loss, and
//! the CSV row of a DSM-weight curve.

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

/// One point of a DSM-weight curve `w(t)` (Figs. 4 and 5): a CSV row.
#[derive(Debug, Clone, Serialize)]
pub struct WeightRow {
    /// The SBI task.
    pub task: String,
    /// Which curve (`monte_carlo`, `closed_form`, `learned`, …).
    pub curve: &'static str,
    /// The time.
    pub t: f64,
    /// The weight.
    pub w: f64,
    /// Its standard error, for an estimate.
    pub std_err: Option<f64>,
}

impl WeightRow {
    /// The `(t, w)` points of `rows`, for a plot.
    pub fn points(rows: &[Self]) -> Vec<(f64, f64)> {
        rows.iter().map(|r| (r.t, r.w)).collect()
    }
}

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

/// The configuration of a conditional score model on `set` with `loss` and `sizes` (seed: the
/// set's; otherwise `sbi train`'s defaults, no checkpoints).
///
/// # Errors
/// As [`sbi_config`].
pub fn sbi_run_config(set: &SimulationSet, loss: SbiLoss, sizes: &RunSizes) -> Result<TrainConfig> {
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
    Ok(sbi_config(set, loss, base)?)
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
    let cfg = sbi_run_config(set, loss, sizes)?;
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
