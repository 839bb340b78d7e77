//! Helpers shared by the training tests in this folder (`mod common;` in each; Cargo does not
//! build `tests/common/mod.rs` as a test of its own). Each test uses only some of them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tsm_core::identity::ScoreIdentity;
use tsm_core::weighting::{TimeRange, Weighting};
use tsm_nn::candle::Device;
use tsm_nn::engine::EngineKind;
use tsm_nn::loss::{LossConfig, TargetVariances};
use tsm_nn::optim::AdamConfig;
use tsm_nn::sbi::{sbi_config, SbiLoss, SbiTrainer, SimulationBatches, SimulationSet};
use tsm_nn::{MlpConfig, ModelConfig, TrainConfig, Trainer, TrainerOptions};

/// `temp_dir()/PREFIX-PID-NAME`, removed if a previous run left it (not created).
pub fn scratch(prefix: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A small unconditional TSM run of a plain-score network on `ℝ²` (the bridge and
/// non-additive models): a 3 × 32 MLP with a 16-wide embedding, uniform weighting on `range`
/// (the loss's default without one), batch 256, Adam at 3·10⁻³ with EMA 0.99, `steps` steps
/// from `seed`, no periodic checkpoints.
pub fn plain_config(name: &str, seed: u64, steps: u64, range: Option<TimeRange>) -> TrainConfig {
    let loss = LossConfig::new(
        ScoreIdentity::Tsi,
        Weighting::Uniform,
        &TargetVariances::new(1.0, None).expect("variances"),
    )
    .expect("loss");
    let loss = match range {
        Some(range) => loss.with_range(range),
        None => loss,
    };
    let model = ModelConfig {
        mlp: MlpConfig {
            dim: 2,
            hidden: 32,
            depth: 3,
            embedding_dim: 16,
            time_scale: 1000.0,
            condition_dim: 0,
        },
        ..ModelConfig::default()
    };
    TrainConfig {
        batch: 256,
        steps,
        seed,
        checkpoint_every: 0,
        adam: AdamConfig {
            lr: 3e-3,
            ema_decay: 0.99,
            ..Default::default()
        },
        ..TrainConfig::new(name, model, loss)
    }
}

/// A small conditional run on `set` with `loss`: a 2 × 32 MLP with a 16-wide embedding,
/// batch 64, `steps` steps, the set's seed, no periodic checkpoints.
pub fn config(set: &SimulationSet, loss: SbiLoss, engine: EngineKind, steps: u64) -> TrainConfig {
    let base = TrainConfig {
        model: ModelConfig {
            mlp: MlpConfig {
                hidden: 32,
                depth: 2,
                embedding_dim: 16,
                ..MlpConfig::default()
            },
            ..ModelConfig::default()
        },
        batch: 64,
        steps,
        seed: set.seed(),
        engine,
        checkpoint_every: 0,
        ..TrainConfig::new(
            "",
            ModelConfig::default(),
            LossConfig::new(
                ScoreIdentity::Dsi,
                Weighting::Uniform,
                &TargetVariances::new(1.0, None).expect("variances"),
            )
            .expect("loss"),
        )
    };
    sbi_config(set, loss, base).expect("config")
}

/// A trainer drawing its batches from `set`, on the CPU with two threads.
pub fn trainer(set: &Arc<SimulationSet>, cfg: TrainConfig) -> SbiTrainer {
    let batches = SimulationBatches::new(set.clone(), &cfg).expect("batches");
    Trainer::with_source(cfg, batches, &Device::Cpu, TrainerOptions::with_threads(2))
        .expect("trainer")
}

/// Resumes the checkpoint in `dir` with `batches` (CPU, one thread) and runs it on to `total`
/// steps, checkpointing into `dir`.
pub fn resume_to(dir: &Path, batches: SimulationBatches, total: u64) -> SbiTrainer {
    let mut resumed: SbiTrainer =
        Trainer::resume_with_source(dir, batches, &Device::Cpu, TrainerOptions::with_threads(1))
            .expect("resume");
    resumed.set_total_steps(total).expect("total steps");
    resumed.run(Some(dir), |_, _| {}).expect("resumed run");
    resumed
}
