//! The training loop: draw a batch, take an Adam step, update the EMA, checkpoint every `N`
//! steps, stop with [`Error::Diverged`] when the run diverges.
//!
//! **Divergence.** [`Trainer::run`] stops, without saving, when
//! - a step's loss is not finite (checked before that step's update);
//! - a parameter, EMA weight or Adam moment is not finite, checked before every checkpoint
//!   and at the end of the run (so a checkpoint never holds one);
//! - the loss's running geometric mean `exp(m_k)`, `m_k = 0.9 m_{k−1} + 0.1 ln ℓ_k`, grows
//!   past [`TrainerOptions::divergence_factor`] (10⁴) times its lowest value in the run. A
//!   diverging run (too large a learning rate) grows by many decades within tens of steps;
//!   a healthy one decreases, and a single heavy-tailed batch (DSM's `1/σ_t²` near `t = 0`)
//!   moves `m` by a tenth of its logarithm, far from the bound.
//!
//! The error names the step and says whether a checkpoint is left: the last one written into
//! (or resumed from) the run's folder, which is the last good one since nothing is saved
//! after the divergence is seen.
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
use crate::error::num;
use crate::loss::{Batch, BatchSampler, BatchSource};
use crate::network::{ModelConfig, ScoreModel};
use crate::{Error, Result};

/// How a [`Trainer`] runs (not part of the run's definition: the results do not depend on
/// it, so it is not recorded in checkpoints).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainerOptions {
    /// Threads of the CPU engine (1 to [`TrainerOptions::MAX_THREADS`]). The batch is split
    /// in a fixed way whatever the count, so the bits of a run do not depend on it.
    pub threads: usize,
    /// The run stops as diverged when the loss's running geometric mean exceeds this many
    /// times its lowest value (see the [module docs](self)); `> 1`, `f64::INFINITY` turns
    /// the check off (non-finite values still stop the run). Default 10⁴.
    pub divergence_factor: f64,
}

impl TrainerOptions {
    /// The most threads (1024).
    pub const MAX_THREADS: usize = 1024;
    /// The default [`TrainerOptions::divergence_factor`].
    pub const DIVERGENCE_FACTOR: f64 = 1e4;

    /// The defaults with `threads` threads.
    pub fn with_threads(threads: usize) -> Self {
        Self {
            threads,
            ..Self::default()
        }
    }

    /// Checks the thread count and the divergence factor.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `threads` or `divergence_factor`.
    pub fn validate(&self) -> Result<()> {
        if !(1..=Self::MAX_THREADS).contains(&self.threads) {
            return Err(Error::invalid(
                "threads",
                self.threads,
                format!("in [1, {}]", Self::MAX_THREADS),
            ));
        }
        if self.divergence_factor.is_nan() || self.divergence_factor <= 1.0 {
            return Err(Error::invalid(
                "divergence_factor",
                num(self.divergence_factor),
                "> 1 (infinity turns the check off)",
            ));
        }
        Ok(())
    }
}

impl Default for TrainerOptions {
    /// As many threads as the machine offers (`std::thread::available_parallelism`, 1 if
    /// unknown, at most [`TrainerOptions::MAX_THREADS`]); the divergence factor 10⁴.
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism()
                .map_or(1, NonZeroUsize::get)
                .min(Self::MAX_THREADS),
            divergence_factor: Self::DIVERGENCE_FACTOR,
        }
    }
}

/// What [`Trainer::run`] found when it stopped a run as diverged ([`Error::Diverged`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Divergence {
    /// The step's loss was NaN or infinite.
    NonFiniteLoss {
        /// The loss.
        value: f64,
    },
    /// A tensor of the training state held a NaN or an infinity.
    NonFiniteState {
        /// The tensor's name (`layers.0.weight`, `adam_v.layers.2.bias`, …).
        tensor: String,
    },
    /// The loss's running geometric mean grew past `factor` times its lowest value.
    LossGrowth {
        /// The running geometric mean of the loss.
        running: f64,
        /// Its lowest value in the run.
        lowest: f64,
        /// [`TrainerOptions::divergence_factor`].
        factor: f64,
    },
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NonFiniteLoss { value } => write!(f, "the loss is {value}"),
            Self::NonFiniteState { tensor } => {
                write!(f, "tensor `{tensor}` holds non-finite values")
            }
            Self::LossGrowth {
                running,
                lowest,
                factor,
            } => write!(
                f,
                "the loss's running mean {running:.3e} is more than {} times its lowest \
                 value {lowest:.3e} (lower the learning rate)",
                num(*factor),
            ),
        }
    }
}

/// The running geometric mean of the loss and its lowest value (see the module docs).
#[derive(Debug, Clone, Copy)]
struct LossMonitor {
    log_mean: f64,
    lowest: f64,
}

impl LossMonitor {
    /// Updates with a finite loss; returns the growth past `factor`, if any.
    fn update(monitor: &mut Option<Self>, loss: f64, factor: f64) -> Option<Divergence> {
        let l = loss.max(f64::MIN_POSITIVE).ln();
        let m = monitor.get_or_insert(Self {
            log_mean: l,
            lowest: l,
        });
        m.log_mean = 0.9 * m.log_mean + 0.1 * l;
        m.lowest = m.lowest.min(m.log_mean);
        (m.log_mean - m.lowest > factor.ln()).then(|| Divergence::LossGrowth {
            running: m.log_mean.exp(),
            lowest: m.lowest.exp(),
            factor,
        })
    }
}

/// The first tensor of `state` holding a NaN or an infinity.
fn non_finite_tensor(state: &NamedState) -> Result<Option<String>> {
    for (prefix, named) in [
        ("", state.params()),
        ("ema.", state.ema()),
        ("adam_m.", state.adam_m()),
        ("adam_v.", state.adam_v()),
    ] {
        for (name, t) in named {
            let values = t
                .flatten_all()?
                .to_dtype(candle::DType::F32)?
                .to_vec1::<f32>()?;
            if !values.iter().all(|v| v.is_finite()) {
                return Ok(Some(format!("{prefix}{name}")));
            }
        }
    }
    Ok(None)
}

/// The batch of step `k` of a run of `cfg`: drawn by `sampler` from the stream `(seed, k)`.
fn draw_batch<S: BatchSource>(sampler: &S, cfg: &TrainConfig, k: u64) -> Result<Batch> {
    let mut rng = tsm_core::rng::stream(cfg.seed, k);
    sampler.sample(&mut rng, cfg.batch, None)
}

/// Marks the target type and lifetime of a [`Trainer`] whose batches do not hold them.
type TargetMarker<'a, T> = std::marker::PhantomData<(&'a (), fn() -> T)>;

/// A training run in progress on target `T`, its batches drawn by `S`: a [`BatchSampler`]
/// of the target (the default), or any other [`BatchSource`] (e.g. simulations for a
/// conditional model, [`crate::sbi::SimulationBatches`], with `T = ()`).
#[derive(Debug)]
pub struct Trainer<'a, T, S = BatchSampler<'a, T>> {
    cfg: TrainConfig,
    sampler: S,
    _target: TargetMarker<'a, T>,
    engine: Engine,
    step: u64,
    last_loss: Option<f64>,
    divergence_factor: f64,
    monitor: Option<LossMonitor>,
    /// The last checkpoint written by (or resumed into) this trainer: folder and step.
    saved: Option<(std::path::PathBuf, u64)>,
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
    /// As [`Trainer::new`]; as [`TrainerOptions::validate`].
    pub fn with_options(
        cfg: TrainConfig,
        target: &'a T,
        device: &Device,
        options: TrainerOptions,
    ) -> Result<Self> {
        let state = NamedState::fresh(crate::sbi::initial_parameters(&cfg, &Device::Cpu)?)?;
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
        Self::resume_from(dir, device, options, |cfg| {
            Self::batch_sampler(cfg, target, options)
        })
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
        let sampler = Self::batch_sampler(&cfg, target, options)?;
        Trainer::from_source_state(cfg, sampler, device, options, state, step, last_loss)
    }

    /// The target's batches for `cfg`, once the options and the configuration are checked.
    fn batch_sampler(
        cfg: &TrainConfig,
        target: &'a T,
        options: TrainerOptions,
    ) -> Result<BatchSampler<'a, T>> {
        options.validate()?;
        cfg.validate()?;
        BatchSampler::new(target, &cfg.loss, &cfg.model)
    }
}

impl<'a, T, S: BatchSource> Trainer<'a, T, S> {
    /// A fresh run of `cfg` whose batches `source` draws (built for that configuration):
    /// weights from the seed, zero Adam moments, EMA = weights.
    ///
    /// # Errors
    /// As [`TrainerOptions::validate`] and [`TrainConfig::validate`]; device errors.
    pub fn with_source(
        cfg: TrainConfig,
        source: S,
        device: &Device,
        options: TrainerOptions,
    ) -> Result<Self> {
        let state = NamedState::fresh(crate::sbi::initial_parameters(&cfg, &Device::Cpu)?)?;
        Self::from_source_state(cfg, source, device, options, state, 0, None)
    }

    /// Continues the run saved in `dir`, its batches drawn by `source` (built from the
    /// checkpoint's configuration, [`checkpoint::read_record`]).
    ///
    /// # Errors
    /// [`Error::Checkpoint`] for a bad checkpoint; as [`Trainer::with_source`].
    pub fn resume_with_source(
        dir: &Path,
        source: S,
        device: &Device,
        options: TrainerOptions,
    ) -> Result<Self> {
        Self::resume_from(dir, device, options, |_| Ok(source))
    }

    /// Loads the run saved in `dir` and continues it with the batches of `source(config)`.
    fn resume_from(
        dir: &Path,
        device: &Device,
        options: TrainerOptions,
        source: impl FnOnce(&TrainConfig) -> Result<S>,
    ) -> Result<Self> {
        let (record, state) = checkpoint::load(dir)?;
        let source = source(&record.config)?;
        let mut trainer = Self::from_source_state(
            record.config,
            source,
            device,
            options,
            state,
            record.step,
            record.loss,
        )?;
        trainer.saved = Some((dir.to_owned(), record.step));
        Ok(trainer)
    }

    fn from_source_state(
        cfg: TrainConfig,
        sampler: S,
        device: &Device,
        options: TrainerOptions,
        state: NamedState,
        step: u64,
        last_loss: Option<f64>,
    ) -> Result<Self> {
        options.validate()?;
        cfg.validate()?;
        let engine = Engine::new(cfg.engine, &cfg.model, &state, device, options.threads)?
            .with_implicit(cfg.implicit, cfg.seed)?;
        Ok(Self {
            cfg,
            sampler,
            _target: std::marker::PhantomData,
            engine,
            step,
            last_loss,
            divergence_factor: options.divergence_factor,
            monitor: None,
            saved: None,
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
    ///
    /// # Errors
    /// [`Error::Invalid`] (field `steps`) below the steps already done or above
    /// [`TrainConfig::MAX_STEPS`].
    pub fn set_total_steps(&mut self, steps: u64) -> Result<()> {
        if !(self.step..=TrainConfig::MAX_STEPS).contains(&steps) {
            return Err(Error::invalid(
                "steps",
                steps,
                format!(
                    "in [{}, {}] (at least the steps already done)",
                    self.step,
                    TrainConfig::MAX_STEPS
                ),
            ));
        }
        self.cfg.steps = steps;
        Ok(())
    }

    /// Sets how often [`Trainer::run`] checkpoints (0: only at the end). It does not change
    /// the run's results, so a resumed run may change it.
    pub fn set_checkpoint_every(&mut self, every: u64) {
        self.cfg.checkpoint_every = every;
    }

    /// The batch of step `k` (drawn from the stream `(seed, k)`).
    ///
    /// # Errors
    /// As [`BatchSource::sample`].
    pub fn batch_of_step(&self, k: u64) -> Result<Batch> {
        draw_batch(&self.sampler, &self.cfg, k)
    }

    /// The sampler of training batches.
    pub fn sampler(&self) -> &S {
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
    /// and at the end; `on_step(step, loss)` for each step (progress bars, logs), called once
    /// the step's loss is known, while the CPU engine applies that step's update on its
    /// helper thread, and before the next step's batch is drawn. The results are those of
    /// calling [`Trainer::train_step`] in a loop.
    ///
    /// # Errors
    /// [`Error::Diverged`] naming the step (see the [module docs](self)), with the last
    /// checkpoint left as it was; I/O.
    pub fn run(&mut self, dir: Option<&Path>, mut on_step: impl FnMut(u64, f64)) -> Result<()> {
        // While the engine applies a step's update, this thread checks the loss, reports the
        // step (`on_step`) and then draws the next step's batch: a batch depends only on the
        // seed and its step, and it is drawn after `on_step` returns, so a callback that
        // changes the target (an annealing schedule, a fault injection) is seen by the next
        // batch, as with [`Trainer::train_step`] one step at a time.
        let mut next: Option<(u64, Result<Batch>)> = None;
        while self.step < self.cfg.steps {
            let k = self.step + 1;
            let batch = match next.take() {
                Some((j, batch)) if j == k => batch?,
                _ => self.batch_of_step(k)?,
            };
            let (sampler, cfg, monitor) = (&self.sampler, &self.cfg, &mut self.monitor);
            let factor = self.divergence_factor;
            let ahead = (k < cfg.steps).then_some(k + 1);
            let stepped = self.engine.step_and(&batch, &cfg.adam, k, |loss| {
                let growth = LossMonitor::update(monitor, loss, factor);
                if growth.is_some() {
                    return (growth, None);
                }
                on_step(k, loss);
                (None, ahead.map(|j| (j, draw_batch(sampler, cfg, j))))
            });
            let (loss, (growth, drawn)) = match stepped {
                Ok(r) => r,
                Err(Error::NonFiniteLoss { step, value }) => {
                    return Err(self.diverged(dir, step, Divergence::NonFiniteLoss { value }))
                }
                Err(e) => return Err(e),
            };
            self.step = k;
            self.last_loss = Some(loss);
            if let Some(growth) = growth {
                return Err(self.diverged(dir, k, growth));
            }
            next = drawn;
            let every = self.cfg.checkpoint_every;
            let last = self.step == self.cfg.steps;
            let save = dir.filter(|_| (every > 0 && self.step % every == 0) || last);
            if save.is_some() || last {
                let state = self.engine.state()?;
                if let Some(tensor) = non_finite_tensor(&state)? {
                    return Err(self.diverged(
                        dir,
                        self.step,
                        Divergence::NonFiniteState { tensor },
                    ));
                }
                if let Some(dir) = save {
                    self.save_state(dir, &state)?;
                    tracing::debug!(step = self.step, "checkpoint saved");
                }
            }
        }
        Ok(())
    }

    /// The error of a run into `dir` that diverged at `step`.
    fn diverged(&self, dir: Option<&Path>, step: u64, reason: Divergence) -> Error {
        Error::Diverged {
            step,
            reason,
            last_checkpoint: self
                .saved
                .as_ref()
                .filter(|(saved, _)| Some(saved.as_path()) == dir)
                .map(|&(_, step)| step),
        }
    }

    /// Saves a checkpoint into `dir`.
    ///
    /// # Errors
    /// I/O and tensor errors; [`Error::Checkpoint`] for a state with non-finite values
    /// (nothing is written).
    pub fn save(&mut self, dir: &Path) -> Result<()> {
        let state = self.engine.state()?;
        self.save_state(dir, &state)
    }

    fn save_state(&mut self, dir: &Path, state: &NamedState) -> Result<()> {
        checkpoint::save(dir, &self.cfg, self.step, self.last_loss, state)?;
        self.saved = Some((dir.to_owned(), self.step));
        Ok(())
    }

    /// The step of the last checkpoint this trainer wrote into `dir` or was resumed from.
    pub fn last_checkpoint(&self, dir: &Path) -> Option<u64> {
        self.saved
            .as_ref()
            .filter(|(saved, _)| saved == dir)
            .map(|&(_, step)| step)
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
