//! The training loop: draw a batch, take an Adam step, update the EMA, checkpoint every `N`
//! steps, stop with an error on a non-finite loss.
//!
//! **Randomness.** The batch of step `k` (1-based) is drawn from `tsm_core::rng::stream(seed,
//! k)` and the initial weights from the stream `(seed, u64::MAX)`. The state of a run is
//! therefore fully described by its parameters, EMA, Adam moments and step, all of which a
//! [checkpoint] stores: 100 steps, save, resume and 100 more steps gives
//! exactly the same bits as 200 steps straight (tested).

use std::num::NonZeroUsize;
use std::path::Path;

use candle::Device;
use tsm_core::target::{Sample, Score};

use crate::checkpoint;
use crate::config::TrainConfig;
use crate::engine::{Engine, NamedState};
use crate::loss::{Batch, BatchSampler};
use crate::network::{init_parameters, ModelConfig, ScoreModel};
use crate::{Error, Result};

/// How a [`Trainer`] runs (not part of the run's definition: the results do not depend on
/// it, so it is not recorded in checkpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainerOptions {
    /// Threads of the CPU engine (at least 1). The batch is split in a fixed way whatever
    /// the count, so the bits of a run do not depend on it.
    pub threads: usize,
}

impl Default for TrainerOptions {
    /// As many threads as the machine offers (`std::thread::available_parallelism`, 1 if
    /// unknown).
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
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
    /// A fresh run of `cfg` on `target`: weights from the seed, zero Adam moments, EMA =
    /// weights; default [`TrainerOptions`].
    ///
    /// The configuration must be resolved (see [`crate::config`]): the loss's variances and
    /// the parameterisation's `σ_data²` are read from it, never from `target`.
    ///
    /// # Errors
    /// - [`Error::TargetDimension`] when `target`'s dimension is not the model's;
    /// - as [`TrainConfig::validate`]: a bad batch size, learning rate or time range, an
    ///   unresolved identity or parameterisation;
    /// - device errors.
    pub fn new(cfg: TrainConfig, target: &'a T, device: &Device) -> Result<Self> {
        Self::with_options(cfg, target, device, TrainerOptions::default())
    }

    /// As [`Trainer::new`] with explicit [`TrainerOptions`].
    ///
    /// # Errors
    /// As [`Trainer::new`]; [`Error::Config`] for zero threads.
    pub fn with_options(
        cfg: TrainConfig,
        target: &'a T,
        device: &Device,
        options: TrainerOptions,
    ) -> Result<Self> {
        let state = NamedState::fresh(init_parameters(&cfg.model.mlp, cfg.seed, &Device::Cpu)?)?;
        Self::from_state(cfg, target, device, options, state, 0, None)
    }

    /// Continues the run saved in `dir` (its configuration; `steps` may be raised by the
    /// caller through [`Trainer::set_total_steps`]); default [`TrainerOptions`].
    ///
    /// # Errors
    /// [`Error::Checkpoint`] for a bad checkpoint; as [`Trainer::new`].
    pub fn resume(dir: &Path, target: &'a T, device: &Device) -> Result<Self> {
        Self::resume_with_options(dir, target, device, TrainerOptions::default())
    }

    /// As [`Trainer::resume`] with explicit [`TrainerOptions`].
    ///
    /// # Errors
    /// As [`Trainer::resume`].
    pub fn resume_with_options(
        dir: &Path,
        target: &'a T,
        device: &Device,
        options: TrainerOptions,
    ) -> Result<Self> {
        let (record, state) = checkpoint::load(dir)?;
        Self::from_state(
            record.config,
            target,
            device,
            options,
            state,
            record.step,
            record.loss,
        )
    }

    fn from_state(
        cfg: TrainConfig,
        target: &'a T,
        device: &Device,
        options: TrainerOptions,
        state: NamedState,
        step: u64,
        last_loss: Option<f64>,
    ) -> Result<Self> {
        if options.threads == 0 {
            return Err(Error::config("threads must be at least 1"));
        }
        cfg.validate()?;
        let sampler = BatchSampler::new(target, &cfg.loss, &cfg.model)?;
        let engine = Engine::new(cfg.engine, &cfg.model, &state, device, options.threads)?;
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
            if ema { state.ema() } else { state.params() },
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
