//! The training loop: draw a batch, take an Adam step, update the EMA, checkpoint every `N`
//! steps, stop with an error on a non-finite loss.
//!
//! **Randomness.** The batch of step `k` (1-based) is drawn from `tsm_core::rng::stream(seed,
//! k)` and the initial weights from the stream `(seed, u64::MAX)`. The state of a run is
//! therefore fully described by its parameters, EMA, Adam moments and step, all of which a
//! [checkpoint] stores: 100 steps, save, resume and 100 more steps gives
//! exactly the same bits as 200 steps straight (tested).

use std::path::Path;

use candle::Device;
use serde::{Deserialize, Serialize};
use tsm_core::target::{Sample, Score};

use crate::checkpoint;
use crate::engine::{Engine, EngineKind, NamedState};
use crate::loss::{Batch, BatchSampler, LossConfig};
use crate::network::{init_parameters, ModelConfig, ScoreModel};
use crate::optim::AdamConfig;
use crate::{Error, Result};

/// Everything that defines a training run (stored in every checkpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The target's name (`tsm_targets::named`), for the sampler's plots and `TargetScaled`.
    pub target: String,
    /// The network.
    pub model: ModelConfig,
    /// The loss.
    pub loss: LossConfig,
    /// Adam and the EMA.
    pub adam: AdamConfig,
    /// Batch size (512 in the benchmarks).
    pub batch: usize,
    /// Total steps.
    pub steps: u64,
    /// Seed of every random stream.
    pub seed: u64,
    /// Checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: u64,
    /// Which engine computes the step.
    pub engine: EngineKind,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            target: "eight_modes".to_owned(),
            model: ModelConfig::default(),
            loss: LossConfig::default(),
            adam: AdamConfig::default(),
            batch: 512,
            steps: 10_000,
            seed: 0,
            checkpoint_every: 1000,
            engine: EngineKind::Cpu,
        }
    }
}

/// A training run in progress on target `T`.
#[derive(Debug)]
pub struct Trainer<'a, T> {
    cfg: TrainConfig,
    sampler: BatchSampler<'a, T>,
    engine: Engine,
    step: u64,
    last_loss: Option<f64>,
}

impl<'a, T: Score + Sample> Trainer<'a, T> {
    /// A fresh run: weights from the seed, zero Adam moments, EMA = weights.
    ///
    /// `sigma_data_sq`, `sigma_mode_sq`: the target's `σ_data²` and `σ_mode²` (for κ, κ̄
    /// and the weightings). `threads`: 1 or 2 (the CPU engine's half-batches).
    ///
    /// # Errors
    /// Bad configuration (range, names, sizes), device errors.
    pub fn new(
        cfg: TrainConfig,
        target: &'a T,
        sigma_data_sq: f64,
        sigma_mode_sq: f64,
        device: &Device,
        threads: usize,
    ) -> Result<Self> {
        let state = NamedState::fresh(init_parameters(&cfg.model.mlp, cfg.seed, &Device::Cpu)?)?;
        Self::from_state(
            cfg,
            target,
            sigma_data_sq,
            sigma_mode_sq,
            device,
            threads,
            state,
            0,
            None,
        )
    }

    /// Continues the run saved in `dir` (its configuration; `steps` may be raised by the
    /// caller through [`Trainer::set_total_steps`]).
    ///
    /// # Errors
    /// [`Error::Checkpoint`] for a bad checkpoint; as [`Trainer::new`].
    pub fn resume(
        dir: &Path,
        target: &'a T,
        sigma_data_sq: f64,
        sigma_mode_sq: f64,
        device: &Device,
        threads: usize,
    ) -> Result<Self> {
        let (record, state) = checkpoint::load(dir)?;
        Self::from_state(
            record.config,
            target,
            sigma_data_sq,
            sigma_mode_sq,
            device,
            threads,
            state,
            record.step,
            record.loss,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn from_state(
        cfg: TrainConfig,
        target: &'a T,
        sigma_data_sq: f64,
        sigma_mode_sq: f64,
        device: &Device,
        threads: usize,
        state: NamedState,
        step: u64,
        last_loss: Option<f64>,
    ) -> Result<Self> {
        if cfg.batch < 2 {
            return Err(Error::config(format!(
                "batch must be at least 2, got {}",
                cfg.batch
            )));
        }
        if !(cfg.adam.lr.is_finite() && cfg.adam.lr > 0.0) {
            return Err(Error::config(format!(
                "learning rate must be positive, got {}",
                cfg.adam.lr
            )));
        }
        let sampler =
            BatchSampler::new(target, sigma_data_sq, sigma_mode_sq, &cfg.loss, &cfg.model)?;
        let engine = Engine::new(cfg.engine, &cfg.model, &state, device, threads)?;
        Ok(Self {
            cfg,
            sampler,
            engine,
            step,
            last_loss,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// Steps done.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The last step's loss.
    pub fn last_loss(&self) -> Option<f64> {
        self.last_loss
    }

    /// Sets the total number of steps (e.g. to extend a resumed run).
    pub fn set_total_steps(&mut self, steps: u64) {
        self.cfg.steps = steps;
    }

    /// The batch of step `k` (drawn from the stream `(seed, k)`).
    ///
    /// # Errors
    /// As [`BatchSampler::sample`].
    pub fn batch_of_step(&self, k: u64) -> Result<Batch> {
        let mut rng = tsm_core::rng::stream(self.cfg.seed, k);
        self.sampler.sample(&mut rng, self.cfg.batch, None)
    }

    /// The sampler of training batches.
    pub fn sampler(&self) -> &BatchSampler<'a, T> {
        &self.sampler
    }

    /// The loss of the current parameters on `batch` (no update).
    ///
    /// # Errors
    /// Tensor errors.
    pub fn loss_on(&self, batch: &Batch) -> Result<f64> {
        self.engine.loss(batch)
    }

    /// One step; returns its loss.
    ///
    /// # Errors
    /// [`Error::NonFiniteLoss`] naming the step (parameters untouched).
    pub fn train_step(&mut self) -> Result<f64> {
        let k = self.step + 1;
        let batch = self.batch_of_step(k)?;
        let loss = self.engine.step(&batch, &self.cfg.adam, k)?;
        self.step = k;
        self.last_loss = Some(loss);
        Ok(loss)
    }

    /// Trains until `config().steps`, checkpointing into `dir` every `checkpoint_every` steps
    /// and at the end; `on_step(step, loss)` after each step (progress bars, logs).
    ///
    /// # Errors
    /// [`Error::NonFiniteLoss`] naming the step, with the last checkpoint left intact; I/O.
    pub fn run(&mut self, dir: Option<&Path>, mut on_step: impl FnMut(u64, f64)) -> Result<()> {
        while self.step < self.cfg.steps {
            let loss = match self.train_step() {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!("{e}");
                    return Err(e);
                }
            };
            on_step(self.step, loss);
            let every = self.cfg.checkpoint_every;
            if let Some(dir) = dir {
                if (every > 0 && self.step % every == 0) || self.step == self.cfg.steps {
                    self.save(dir)?;
                    tracing::debug!(step = self.step, "checkpoint saved");
                }
            }
        }
        Ok(())
    }

    /// Saves a checkpoint into `dir`.
    ///
    /// # Errors
    /// I/O and tensor errors.
    pub fn save(&self, dir: &Path) -> Result<()> {
        checkpoint::save(
            dir,
            &self.cfg,
            self.step,
            self.last_loss,
            &self.engine.state()?,
        )?;
        Ok(())
    }

    /// The training state (parameters, EMA, moments).
    ///
    /// # Errors
    /// Device errors.
    pub fn state(&self) -> Result<NamedState> {
        self.engine.state()
    }

    /// A [`ScoreModel`] with the current parameters (`ema = false`) or their EMA.
    ///
    /// # Errors
    /// Device errors.
    pub fn model(&self, ema: bool, device: &Device) -> Result<ScoreModel> {
        let state = self.engine.state()?;
        model_from_named(
            &self.cfg.model,
            if ema { &state.ema } else { &state.params },
            device,
        )
    }
}

/// A [`ScoreModel`] from named tensors (e.g. a checkpoint's EMA).
///
/// # Errors
/// Missing tensors or wrong shapes.
pub fn model_from_named(
    cfg: &ModelConfig,
    named: &[(String, candle::Tensor)],
    device: &Device,
) -> Result<ScoreModel> {
    let map = crate::network::to_map(
        named
            .iter()
            .map(|(n, t)| Ok((n.clone(), t.to_device(device)?)))
            .collect::<Result<Vec<_>>>()?,
    );
    let vb = candle_nn::VarBuilder::from_tensors(map, candle::DType::F32, device);
    ScoreModel::new(cfg, vb)
}
