//! Training conditional score models for simulation-based inference (SBI) on a fixed set of
//! gray-box simulations (Ko & Geffner 2024, *Latent Target Score Matching*, §3).
//!
//! The simulator budget is spent once, up front: [`SimulationSet::simulate`] draws `n`
//! triples `(θ₀, x, g)` with `g = ∇_θ log p(θ₀, z, x)` the joint score, reproducibly from the
//! run's seed (the random stream `(seed, u64::MAX − 1)`, one stream for the whole set, so the
//! set does not depend on how it is cut into blocks for a progress bar). Training then
//! draws batches from it ([`SimulationBatches`]): row `j` uniform in the set, `t` uniform on
//! the loss's range, `θ_t = α_t θ₀ + σ_t ε`, and the regression target
//! `a_t (α_t θ₀ − θ_t) + b_t g` of the chosen [`SbiLoss`] (the coefficient form of
//! `tsm_core::identity`, with the joint score in place of `∇log p₀`):
//!
//! | [`SbiLoss`] | identity | target |
//! |---|---|---|
//! | `dsm` | `ScoreIdentity::Dsi` | `A = −ε/σ_t` |
//! | `ltsm` | `ScoreIdentity::Tsi` | `B = g/α_t` (Ko & Geffner 2024, Prop. 3.1) |
//! | `mix` | `ScoreIdentity::kappa(d/F̂)` | `w_t* A + (1 − w_t*) B`, `w_t* = F σ_t²/(F σ_t² + d α_t²)` (Prop. 3.2) |
//! | `mix_learned` | `DSI` and `TSI` | `w(t) A + (1 − w(t)) B`, `w` learned jointly ([`LearnedWeight`]) |
//!
//! with `F̂ = (1/n) Σ ‖gᵢ‖²` estimated from the set
//! ([`tsm_core::simulator::estimate_score_constant`]). A `mix_learned` batch carries both
//! targets and the weight's features ([`crate::loss::MixTargets`]); its
//! [`Batch::target`] is the `mix` target at `w_t*`, which training does not use. The condition of row `j` is its
//! observation `x_j`, standardised by the mean and sd of the set's observations
//! ([`Standardisation::fit`]), which the model's configuration — hence every checkpoint —
//! records. [`sbi_config`] resolves a [`TrainConfig`] for a set and a loss; the run's
//! [`SimulationConfig`] (task, loss, budget) goes into the configuration too, so a resumed run
//! simulates the same set again from the seed.
//!
//! ```
//! use tsm_nn::sbi::{sbi_config, SbiLoss, SimulationBatches, SimulationSet};
//! use tsm_nn::{MlpConfig, ModelConfig, TrainConfig};
//! use tsm_targets::sbi::SbiTask;
//!
//! let set = SimulationSet::simulate(SbiTask::LinearGaussian, 2000, 7, |_| {})?;
//! let base = TrainConfig {
//!     batch: 64,
//!     steps: 3,
//!     seed: 7,
//!     ..TrainConfig::new("", ModelConfig::default(), tsm_nn::loss::LossConfig::new(
//!         tsm_core::identity::ScoreIdentity::Dsi,
//!         tsm_core::weighting::Weighting::Uniform,
//!         &tsm_nn::loss::TargetVariances::new(1.0, None)?,
//!     )?)
//! };
//! let cfg = sbi_config(&set, SbiLoss::Mix, base)?;
//! assert_eq!(cfg.model.mlp.condition_dim, 4);
//! let batches = SimulationBatches::new(std::sync::Arc::new(set), &cfg)?;
//! let mut trainer = tsm_nn::sbi::SbiTrainer::with_source(
//!     cfg, batches, &tsm_nn::candle::Device::Cpu, tsm_nn::TrainerOptions::with_threads(1))?;
//! trainer.run(None, |_, _| {})?;
//! assert_eq!(trainer.step(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;

use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};
use tsm_core::identity::ScoreIdentity;
use tsm_core::schedule::{AnySchedule, Schedule};
use tsm_core::simulator::{estimate_score_constant, Estimate};
use tsm_core::weighting::{NormalisedWeighting, TimeRange};
use tsm_targets::sbi::{SbiTask, Task, TaskVisitor};

use crate::config::TrainConfig;
use crate::engine::NamedState;
use crate::loss::{Batch, BatchSource, MixTargets};
use crate::network::{Conditioning, ModelConfig, Standardisation};
use crate::{Error, Result};

/// The random stream of a run's simulations: `(seed, u64::MAX − 1)` (batches use `(seed, k)`
/// for step `k ≥ 1`, the initial weights `(seed, u64::MAX)`).
pub const SIMULATION_STREAM: u64 = u64::MAX - 1;

/// The simulations are drawn in blocks of this many rows (for a progress bar; the set does
/// not depend on it).
pub const BLOCK: usize = 10_000;

/// The largest simulator budget (10⁸ simulations).
pub const MAX_BUDGET: u64 = 100_000_000;

/// A [`Trainer`](crate::Trainer) whose batches are drawn from simulations.
pub type SbiTrainer = crate::Trainer<'static, (), SimulationBatches>;

/// The SBI losses by name (a [`Choice`](tsm_core::choice::Choice): `dsm`, `ltsm`, `mix`,
/// `mix_learned`); see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SbiLoss {
    /// Denoising score matching: `A = −ε/σ_t`.
    Dsm,
    /// Latent target score matching: `B = ∇_θ log p(θ₀, z, x)/α_t`.
    Ltsm,
    /// The mixture at the optimal weight `w_t*` with `F` estimated from the simulations.
    Mix,
    /// The mixture with a learned weight `w(t)` ([`LearnedWeight`]), trained jointly with
    /// the network.
    MixLearned,
}

tsm_core::unit_choice!(SbiLoss, "loss", [
    Dsm => "dsm",
    Ltsm => "ltsm",
    Mix => "mix",
    MixLearned => "mix_learned",
]);

/// What defines an SBI run beside the network and the optimiser (recorded in
/// [`TrainConfig::simulation`]): the task, the loss and the simulator budget. The
/// simulations come from the run's seed ([`SIMULATION_STREAM`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SimulationConfig {
    /// The task.
    pub task: SbiTask,
    /// The loss (the resolved identity is [`crate::loss::LossConfig::identity`]).
    pub loss: SbiLoss,
    /// The number of simulations, `1 ..= MAX_BUDGET`.
    pub budget: u64,
}

impl SimulationConfig {
    /// Checks the budget and the model's widths against the task.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `simulation.budget`; [`Error::Config`] for a model whose
    /// `dim` or `condition_dim` is not the task's `d` or `k`.
    pub fn validate(&self, model: &ModelConfig) -> Result<()> {
        if !(1..=MAX_BUDGET).contains(&self.budget) {
            return Err(Error::invalid(
                "simulation.budget",
                self.budget,
                format!("in [1, {MAX_BUDGET}]"),
            ));
        }
        let (d, k) = (self.task.dim(), self.task.observation_dim());
        if model.mlp.dim != d || model.mlp.condition_dim != k {
            return Err(Error::config(format!(
                "task {} has θ of dimension {d} and x of dimension {k}, the model {} and {}",
                self.task, model.mlp.dim, model.mlp.condition_dim
            )));
        }
        Ok(())
    }
}

/// A fixed set of simulations `(θ₀, x, g)`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulationSet {
    task: SbiTask,
    seed: u64,
    theta: Vec<f64>,
    x: Vec<f64>,
    score: Vec<f64>,
}

impl SimulationSet {
    /// `n` simulations of `task` from the stream `(seed, SIMULATION_STREAM)`, in blocks of
    /// [`BLOCK`]; `progress(done)` after each block.
    ///
    /// # Errors
    /// [`Error::Invalid`] (`simulation.budget`) for `n = 0` or `n > MAX_BUDGET`.
    pub fn simulate(
        task: SbiTask,
        n: usize,
        seed: u64,
        progress: impl FnMut(usize),
    ) -> Result<Self> {
        if !(1..=MAX_BUDGET as usize).contains(&n) {
            return Err(Error::invalid(
                "simulation.budget",
                n,
                format!("in [1, {MAX_BUDGET}]"),
            ));
        }
        struct Run<P> {
            n: usize,
            seed: u64,
            progress: P,
        }
        impl<P: FnMut(usize)> TaskVisitor for Run<P> {
            type Output = Result<(Vec<f64>, Vec<f64>, Vec<f64>)>;
            fn visit<T: Task>(mut self, task: &T) -> Self::Output {
                let (d, k) = (task.dim(), task.observation_dim());
                let (mut th, mut x, mut g) = (
                    vec![0.0; self.n * d],
                    vec![0.0; self.n * k],
                    vec![0.0; self.n * d],
                );
                let mut rng = tsm_core::rng::stream(self.seed, SIMULATION_STREAM);
                let mut done = 0;
                for ((tb, xb), gb) in th
                    .chunks_mut(BLOCK * d)
                    .zip(x.chunks_mut(BLOCK * k))
                    .zip(g.chunks_mut(BLOCK * d))
                {
                    task.simulate_batch(&mut rng, tb, xb, gb)?;
                    done += tb.len() / d;
                    (self.progress)(done);
                }
                Ok((th, x, g))
            }
        }
        let (theta, x, score) = task.visit(Run { n, seed, progress })?;
        Ok(Self {
            task,
            seed,
            theta,
            x,
            score,
        })
    }

    /// The task.
    pub fn task(&self) -> SbiTask {
        self.task
    }

    /// The seed it was simulated from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The number of simulations.
    pub fn len(&self) -> usize {
        self.theta.len() / self.task.dim()
    }

    /// Whether the set is empty (never: a set has at least one simulation).
    pub fn is_empty(&self) -> bool {
        self.theta.is_empty()
    }

    /// The parameters `θ₀`, `[n, d]`.
    pub fn theta(&self) -> &[f64] {
        &self.theta
    }

    /// The observations `x`, `[n, k]`.
    pub fn observations(&self) -> &[f64] {
        &self.x
    }

    /// The joint scores `g = ∇_θ log p(θ₀, z, x)`, `[n, d]`.
    pub fn joint_scores(&self) -> &[f64] {
        &self.score
    }

    /// `F̂ = (1/n) Σ ‖gᵢ‖²` with its standard error.
    ///
    /// # Errors
    /// As [`estimate_score_constant`] (a non-finite score).
    pub fn score_constant(&self) -> Result<Estimate> {
        Ok(estimate_score_constant(&self.score, self.task.dim())?)
    }

    /// The variance of `θ₀` per coordinate, averaged over the coordinates (divisor `n − 1`;
    /// 1 for a single simulation): the `σ_data²` of the weighting and parameterisation.
    pub fn theta_variance(&self) -> f64 {
        let d = self.task.dim();
        let n = self.len();
        if n < 2 {
            return 1.0;
        }
        let mut total = 0.0;
        for j in 0..d {
            let col = self.theta.iter().skip(j).step_by(d);
            let mean = col.clone().sum::<f64>() / n as f64;
            total += col.map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1) as f64;
        }
        total / d as f64
    }
}

/// Resolves `base` (its Adam, batch, steps, seed, checkpointing, engine, MLP sizes,
/// parameterisation, schedule, weighting and time range are kept) into the configuration of
/// an SBI run on `set` with `loss`: the model's widths and condition standardisation, the
/// loss's identity (`mix`: `κ` with `σ² = d/F̂`) and `σ_data²` (the set's `θ` variance), the
/// parameterisation's `σ_data²`, the target label (the task's name) and
/// [`TrainConfig::simulation`]. `base.seed` must be the seed `set` was simulated from.
///
/// # Errors
/// [`Error::Config`] for a `target_scaled` parameterisation (it needs `∇log p₀(θ_t)`,
/// which no simulator gives), a seed other than the set's, `mix_learned` on a time range
/// that reaches `σ_t = 0` or `α_t = 0` (where `A`, `B` or the weight's log-SNR feature is
/// infinite); as [`TrainConfig::validate`].
///
/// `mix_learned` records `mix`'s identity (`κ` at `w_t*`): it gives the batches'
/// [`Batch::target`] and nothing else; the learned weight is [`LearnedWeight`].
pub fn sbi_config(set: &SimulationSet, loss: SbiLoss, base: TrainConfig) -> Result<TrainConfig> {
    let task = set.task;
    if base.seed != set.seed {
        return Err(Error::config(format!(
            "the simulations come from seed {}, the run has seed {}",
            set.seed, base.seed
        )));
    }
    let (d, k) = (task.dim(), task.observation_dim());
    let identity = match loss {
        SbiLoss::Dsm => ScoreIdentity::Dsi,
        SbiLoss::Ltsm => ScoreIdentity::Tsi,
        SbiLoss::Mix | SbiLoss::MixLearned => {
            ScoreIdentity::kappa(d as f64 / set.score_constant()?.value)
        }
    };
    if loss == SbiLoss::MixLearned {
        let schedule = base.model.schedule;
        let range = base.loss.range()?;
        for t in [range.t_min(), range.t_max()] {
            for id in [ScoreIdentity::Dsi, ScoreIdentity::Tsi] {
                id.coefficients(&schedule, t).map_err(|e| {
                    Error::config(format!(
                        "mix_learned needs both targets on the whole time range [{}, {}]: {e}",
                        range.t_min(),
                        range.t_max()
                    ))
                })?;
            }
        }
    }
    let sigma_data_sq = set.theta_variance();
    let mut model = base.model.clone();
    if model.parameterisation.needs_target_score() {
        return Err(Error::config(
            "the target_scaled parameterisation needs ∇log p₀(θ_t), which a simulator does not \
             give; use score, epsilon or preconditioned",
        ));
    }
    model.mlp.dim = d;
    model.mlp.condition_dim = k;
    model.condition = Some(Standardisation::fit(&set.x, k)?);
    let model = model.resolve(sigma_data_sq)?;
    let cfg = TrainConfig {
        target: task.to_string(),
        model,
        loss: crate::loss::LossConfig {
            identity,
            sigma_data_sq,
            ..base.loss
        },
        simulation: Some(SimulationConfig {
            task,
            loss,
            budget: set.len() as u64,
        }),
        ..base
    };
    cfg.validate()?;
    Ok(cfg)
}

/// The learned DSM weight of the `mix_learned` loss (Ko & Geffner 2024, §3.3 and Fig. 5):
///
/// ```text
/// w(t) = sigmoid(g(t)),   g(t) = Σ_{k=0..3} c_k v_tᵏ,   v_t = −λ_t/8,   λ_t = log(α_t²/σ_t²)
/// ```
///
/// **Why these features.** With `E⟨A, B⟩ = 0` (the noise `ε` is independent of the
/// simulation) the optimal weight of Prop. 3.2 is `w_t* = Fσ_t²/(Fσ_t² + dα_t²) =
/// sigmoid(log(F/d) − λ_t)`: a sigmoid of an affine function of the log-SNR. So
/// `c = (log(F/d), 8, 0, 0)` is `w_t*` exactly, for every task and schedule
/// ([`LearnedWeight::optimal`]), and the square and cube let the learned weight take
/// another shape should training find one of lower variance. The scale 8 keeps `|v_t| ≤ 1.6`
/// on the trimmed cosine range (`|λ_t| ≤ 12.9`), so the four features are of order one.
///
/// **Start.** `c = (0, 8, 0, 0)` ([`LearnedWeight::INITIAL`]): `w(t) = σ_t²/(σ_t² + α_t²)`,
/// the optimum of a simulator whose observation says nothing about `θ` (`F = d`; in general
/// `F = d + E tr I(θ) ≥ d`). No random draw, so the network's initial weights are those of
/// the other losses. (Starting at `w ≡ ½` puts half of `B`'s variance `F/α_t²`, about
/// `10⁷` at `t = 0.999`, into the first steps' targets.)
///
/// **Which gradient reaches `w`.** The one MIX loss `ℓ = (1/n) Σᵢ λᵢ ‖sᵢ − yᵢ‖²`,
/// `yᵢ = wᵢ Aᵢ + (1 − wᵢ) Bᵢ`, is minimised jointly. The network does not depend on `c`, nor
/// `y` on the network, so each gets its plain partial gradient: the network's is that of a
/// fixed target, and
/// `∂ℓ/∂c_k = −(2/n) Σᵢ λᵢ ⟨sᵢ − yᵢ, Aᵢ − Bᵢ⟩ wᵢ (1 − wᵢ) φ_k(tᵢ)`, i.e. `w`'s loss with a
/// stop-gradient on `s`. In expectation the `s` term vanishes at every `t`
/// (`E[A − B | θ_t, x] = 0`, both targets having the posterior score as conditional mean, and
/// `s` is a function of `(θ_t, x)`), so the expected gradient in `w(t)` is
/// `λ_t ∂_w E‖y‖² = λ_t ∂_w Var(y)`: minimised at `w_t*` whatever the network. Keeping `s` in
/// the residual leaves that mean and only centres the estimate.
///
/// **Training.** The coefficients are the parameter [`LearnedWeight::PARAMETER`] of the
/// training state, updated by the same Adam step at [`LearnedWeight::LR_GAIN`] times the
/// learning rate, and averaged by the same EMA; the checkpoint stores them (parameters, EMA,
/// moments) like the network's, so a run resumes bit-identically. Sampling does not use
/// them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LearnedWeight {
    coefficients: [f64; LearnedWeight::FEATURES],
}

impl LearnedWeight {
    /// The number of features `K` (and coefficients).
    pub const FEATURES: usize = 4;
    /// The name of the coefficients in the training state and checkpoints.
    pub const PARAMETER: &'static str = "mix_weight";
    /// The coefficients' learning rate over the network's. With the SBI default `lr = 10⁻³`,
    /// `g` moves by up to `0.01` a step, so `log(F/d)` (1.6 to 3.5 for the three tasks) is
    /// reached in a few hundred steps while the network trains for thousands.
    pub const LR_GAIN: f64 = 10.0;
    /// The log-SNR's scale in `v_t = −λ_t/8`.
    pub const LOG_SNR_SCALE: f64 = 8.0;
    /// The starting coefficients: `w(t) = σ_t²/(σ_t² + α_t²)`.
    pub const INITIAL: [f64; LearnedWeight::FEATURES] = [0.0, 8.0, 0.0, 0.0];

    /// The weight with coefficients `c` (`K` finite numbers).
    ///
    /// # Errors
    /// [`Error::Config`] for another count or a non-finite coefficient.
    pub fn new(c: &[f64]) -> Result<Self> {
        let coefficients: [f64; Self::FEATURES] = c.try_into().map_err(|_| {
            Error::config(format!(
                "a learned weight has {} coefficients, not {}",
                Self::FEATURES,
                c.len()
            ))
        })?;
        if !coefficients.iter().all(|v| v.is_finite()) {
            return Err(Error::config(format!(
                "non-finite learned-weight coefficients {coefficients:?}"
            )));
        }
        Ok(Self { coefficients })
    }

    /// The starting weight ([`LearnedWeight::INITIAL`]).
    pub fn initial() -> Self {
        Self {
            coefficients: Self::INITIAL,
        }
    }

    /// The coefficients of `w_t* = sigmoid(log(F/d) − λ_t)`: `(log(F/d), 8, 0, 0)`.
    ///
    /// # Errors
    /// [`Error::Config`] unless `F` is finite and positive and `d ≥ 1`.
    pub fn optimal(f: f64, d: usize) -> Result<Self> {
        if !(f.is_finite() && f > 0.0 && d > 0) {
            return Err(Error::config(format!(
                "the optimal weight needs F > 0 and d ≥ 1, not F = {f}, d = {d}"
            )));
        }
        Self::new(&[(f / d as f64).ln(), Self::LOG_SNR_SCALE, 0.0, 0.0])
    }

    /// The coefficients of a training state: its parameters, or their EMA.
    ///
    /// # Errors
    /// [`Error::Config`] for a state without [`LearnedWeight::PARAMETER`] (a run of another
    /// loss) or with a tensor of the wrong size.
    pub fn from_state(state: &NamedState, ema: bool) -> Result<Self> {
        let named = if ema { state.ema() } else { state.params() };
        let (_, t) = named
            .iter()
            .find(|(name, _)| name == Self::PARAMETER)
            .ok_or_else(|| {
                Error::config("the training state has no learned weight (not a mix_learned run)")
            })?;
        let c = t
            .flatten_all()?
            .to_dtype(candle::DType::F64)?
            .to_vec1::<f64>()?;
        Self::new(&c)
    }

    /// The coefficients `c`.
    pub fn coefficients(&self) -> &[f64] {
        &self.coefficients
    }

    /// The features `φ(t) = (1, v_t, v_t², v_t³)`, `v_t = −log(α_t²/σ_t²)/8`.
    ///
    /// # Errors
    /// [`Error::Config`] where `α_t` or `σ_t` is 0 (infinite log-SNR).
    pub fn features(schedule: &impl Schedule, t: f64) -> Result<[f64; Self::FEATURES]> {
        let (alpha, sigma) = (schedule.alpha(t), schedule.sigma(t));
        let lambda = 2.0 * (alpha.ln() - sigma.ln());
        if !lambda.is_finite() {
            return Err(Error::config(format!(
                "the learned weight's log-SNR is not finite at t = {t} (α = {alpha}, σ = {sigma})"
            )));
        }
        let v = -lambda / Self::LOG_SNR_SCALE;
        Ok([1.0, v, v * v, v * v * v])
    }

    /// `w(t) = sigmoid(⟨c, φ(t)⟩)`.
    ///
    /// # Errors
    /// As [`LearnedWeight::features`].
    pub fn at(&self, schedule: &impl Schedule, t: f64) -> Result<f64> {
        let phi = Self::features(schedule, t)?;
        let g: f64 = self.coefficients.iter().zip(&phi).map(|(c, f)| c * f).sum();
        Ok(1.0 / (1.0 + (-g).exp()))
    }
}

/// Whether the run `cfg` learns a MIX weight (an SBI run with `mix_learned`).
pub fn learns_weight(cfg: &TrainConfig) -> bool {
    cfg.simulation
        .is_some_and(|s| s.loss == SbiLoss::MixLearned)
}

/// The named shapes of the training state of `cfg`: the network's
/// ([`MlpConfig::parameter_shapes`](crate::network::MlpConfig::parameter_shapes)), then
/// [`LearnedWeight::PARAMETER`] `[K]` for a `mix_learned` run.
pub fn parameter_shapes(cfg: &TrainConfig) -> Vec<(String, Vec<usize>)> {
    let mut shapes = cfg.model.mlp.parameter_shapes();
    if learns_weight(cfg) {
        shapes.push((
            LearnedWeight::PARAMETER.to_owned(),
            vec![LearnedWeight::FEATURES],
        ));
    }
    shapes
}

/// The initial parameters of `cfg`: the network's from the seed
/// ([`init_parameters`](crate::network::init_parameters)), then [`LearnedWeight::INITIAL`]
/// for a `mix_learned` run.
///
/// # Errors
/// As [`init_parameters`](crate::network::init_parameters).
pub fn initial_parameters(
    cfg: &TrainConfig,
    device: &candle::Device,
) -> Result<Vec<(String, candle::Tensor)>> {
    let mut params = crate::network::init_parameters(&cfg.model.mlp, cfg.seed, device)?;
    if learns_weight(cfg) {
        let c = LearnedWeight::INITIAL.map(|v| v as f32);
        params.push((
            LearnedWeight::PARAMETER.to_owned(),
            candle::Tensor::from_slice(&c, LearnedWeight::FEATURES, device)?,
        ));
    }
    Ok(params)
}

/// Training batches drawn from a [`SimulationSet`] (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct SimulationBatches {
    set: Arc<SimulationSet>,
    schedule: AnySchedule,
    identity: ScoreIdentity,
    weighting: NormalisedWeighting,
    range: TimeRange,
    model: ModelConfig,
    learned: bool,
}

impl SimulationBatches {
    /// The batches of the run `cfg` from `set`.
    ///
    /// # Errors
    /// [`Error::Config`] for a configuration without [`TrainConfig::simulation`] or one whose
    /// task, budget or seed is not the set's; as [`TrainConfig::validate`].
    pub fn new(set: Arc<SimulationSet>, cfg: &TrainConfig) -> Result<Self> {
        cfg.validate()?;
        let sim = cfg.simulation.as_ref().ok_or_else(|| {
            Error::config("not a simulation-based run (the configuration has no simulation)")
        })?;
        if sim.task != set.task || sim.budget != set.len() as u64 || cfg.seed != set.seed {
            return Err(Error::config(format!(
                "the run wants {} simulations of {} from seed {}, the set has {} of {} from \
                 seed {}",
                sim.budget,
                sim.task,
                cfg.seed,
                set.len(),
                set.task,
                set.seed
            )));
        }
        let schedule = cfg.model.schedule;
        let range = cfg.loss.range()?;
        let weighting =
            NormalisedWeighting::new(cfg.loss.weighting, schedule, cfg.loss.sigma_data_sq, range)?;
        Ok(Self {
            set,
            schedule,
            identity: cfg.loss.identity,
            weighting,
            range,
            model: cfg.model.clone(),
            learned: sim.loss == SbiLoss::MixLearned,
        })
    }

    /// The simulations.
    pub fn set(&self) -> &SimulationSet {
        &self.set
    }
}

impl BatchSource for SimulationBatches {
    fn sample<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        n: usize,
        times: Option<&[f64]>,
    ) -> Result<Batch> {
        let (d, k) = (self.set.task.dim(), self.set.task.observation_dim());
        let rows = self.set.len();
        let mut t = Vec::with_capacity(n);
        let (mut xt, mut target) = (vec![0.0f32; n * d], vec![0.0f32; n * d]);
        let mut lambda = Vec::with_capacity(n);
        let mut conditions = Vec::with_capacity(n * k);
        let (mut th, mut l) = (vec![0.0; d], vec![0.0; d]);
        let mut mix = self.learned.then(|| MixTargets {
            dsm: vec![0.0f32; n * d],
            ltsm: vec![0.0f32; n * d],
            features: Vec::with_capacity(n * LearnedWeight::FEATURES),
        });
        for i in 0..n {
            let ti = match times {
                Some(ts) => ts[i % ts.len()],
                None => self.range.lerp(rng.random::<f64>()),
            };
            let j = rng.random_range(0..rows);
            let theta0 = &self.set.theta[j * d..(j + 1) * d];
            let g = &self.set.score[j * d..(j + 1) * d];
            let (alpha, sigma) = (self.schedule.alpha(ti), self.schedule.sigma(ti));
            for (v, x0) in th.iter_mut().zip(theta0) {
                let eps: f64 = rng.sample(StandardNormal);
                *v = alpha * x0 + sigma * eps;
            }
            let c = self.identity.coefficients(&self.schedule, ti)?;
            c.apply_into(theta0, &th, g, &mut l);
            let row = i * d..(i + 1) * d;
            for (o, v) in xt[row.clone()].iter_mut().zip(&th) {
                *o = *v as f32;
            }
            for (o, v) in target[row.clone()].iter_mut().zip(&l) {
                *o = *v as f32;
            }
            if let Some(mix) = mix.as_mut() {
                for (id, out) in [
                    (ScoreIdentity::Dsi, &mut mix.dsm),
                    (ScoreIdentity::Tsi, &mut mix.ltsm),
                ] {
                    id.coefficients(&self.schedule, ti)?
                        .apply_into(theta0, &th, g, &mut l);
                    for (o, v) in out[row.clone()].iter_mut().zip(&l) {
                        *o = *v as f32;
                    }
                }
                let phi = LearnedWeight::features(&self.schedule, ti)?;
                mix.features.extend(phi.iter().map(|&v| v as f32));
            }
            conditions.extend_from_slice(&self.set.x[j * k..(j + 1) * k]);
            lambda.push(self.weighting.at(ti) as f32);
            t.push(ti);
        }
        let mut cond = Conditioning::new(
            &self.model.mlp,
            &self.model.parameterisation,
            &self.schedule,
            &t,
        )?;
        cond.set_condition(&self.model, &conditions)?;
        Ok(Batch {
            n,
            d,
            xt,
            target,
            lambda,
            score0_xt: Vec::new(),
            cond,
            mix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_does_not_depend_on_its_blocks_and_is_reproducible() {
        let a = SimulationSet::simulate(SbiTask::GaltonBoard, 25_001, 3, |_| {}).expect("a");
        let b = SimulationSet::simulate(SbiTask::GaltonBoard, 25_001, 3, |_| {}).expect("b");
        assert_eq!(a, b);
        // One stream: the first 100 rows of a bigger set are the 100 of a small one.
        let small = SimulationSet::simulate(SbiTask::GaltonBoard, 100, 3, |_| {}).expect("s");
        assert_eq!(small.theta(), &a.theta()[..200]);
        assert_eq!(small.observations(), &a.observations()[..1000]);
        let mut seen = Vec::new();
        SimulationSet::simulate(SbiTask::Sir, 25_001, 3, |done| seen.push(done)).expect("sir");
        assert_eq!(seen, [10_000, 20_000, 25_001]);
        assert!(SimulationSet::simulate(SbiTask::Sir, 0, 3, |_| {}).is_err());
    }

    #[test]
    fn losses_parse_and_mix_learned_needs_both_targets_on_its_range() {
        assert_eq!("mix".parse::<SbiLoss>().expect("mix"), SbiLoss::Mix);
        let err = "kappa".parse::<SbiLoss>().unwrap_err().to_string();
        assert!(err.contains("ltsm") && err.contains("mix_learned"), "{err}");
        let set = SimulationSet::simulate(SbiTask::LinearGaussian, 100, 0, |_| {}).expect("set");
        let base = base_config(0); // TrainConfig::new's seed
                                   // mix_learned records mix's identity (its batches' unused `target`) and refuses a
                                   // range reaching σ_t = 0 (A and the log-SNR infinite) or α_t = 0 (B infinite).
        let learned = sbi_config(&set, SbiLoss::MixLearned, base.clone()).expect("learned");
        assert_eq!(
            learned.simulation.map(|s| s.loss),
            Some(SbiLoss::MixLearned)
        );
        for (t_min, t_max) in [(0.0, 0.5), (0.5, 1.0)] {
            let wide = TrainConfig {
                loss: crate::loss::LossConfig {
                    t_min,
                    t_max,
                    ..base.loss
                },
                ..base.clone()
            };
            let err = sbi_config(&set, SbiLoss::MixLearned, wide).unwrap_err();
            assert!(err.to_string().contains("needs both targets"), "{err}");
        }
        // MIX at w_t*: κ with σ² = d/F̂, F̂ ≈ 20 for linear_gaussian.
        let cfg = sbi_config(&set, SbiLoss::Mix, base).expect("mix");
        let f = set.score_constant().expect("F").value;
        assert_eq!(cfg.loss.identity, ScoreIdentity::kappa(4.0 / f));
        assert_eq!(learned.loss.identity, cfg.loss.identity);
        assert_eq!(cfg.target, "linear_gaussian");
    }

    #[test]
    fn the_optimal_coefficients_give_the_closed_form_weight() {
        // w_t* = Fσ²/(Fσ² + dα²) (Ko & Geffner 2024, Prop. 3.2 with E⟨A, B⟩ = 0) and the start
        // σ²/(σ² + α²), at t across the cosine range, to rounding.
        let sched = tsm_core::schedule::Cosine;
        let (f, d) = (48.9, 2);
        let w = LearnedWeight::optimal(f, d).expect("w*");
        for i in 1..100 {
            let t = i as f64 / 100.0;
            let (a2, s2) = (sched.alpha(t).powi(2), sched.sigma(t).powi(2));
            let exact = f * s2 / (f * s2 + d as f64 * a2);
            assert!(
                (w.at(&sched, t).expect("w") - exact).abs() < 1e-12,
                "t = {t}"
            );
            let start = LearnedWeight::initial().at(&sched, t).expect("w0");
            assert!((start - s2 / (s2 + a2)).abs() < 1e-12, "t = {t}");
        }
        assert!(LearnedWeight::features(&sched, 0.0).is_err());
        assert!(LearnedWeight::features(&sched, 1.0).is_err());
        assert!(LearnedWeight::new(&[0.0; 3]).is_err());
        assert!(LearnedWeight::new(&[f64::NAN, 0.0, 0.0, 0.0]).is_err());
        assert!(LearnedWeight::optimal(0.0, 2).is_err());
    }

    /// The default training config (DSI, uniform weighting, `σ_data² = 1`) with `seed`: the
    /// base that `sbi_config` specialises.
    fn base_config(seed: u64) -> TrainConfig {
        TrainConfig {
            seed,
            ..TrainConfig::new(
                "",
                ModelConfig::default(),
                crate::loss::LossConfig::new(
                    ScoreIdentity::Dsi,
                    tsm_core::weighting::Weighting::Uniform,
                    &crate::loss::TargetVariances::new(1.0, None).expect("v"),
                )
                .expect("loss"),
            )
        }
    }

    #[test]
    fn mix_learned_batches_carry_both_targets_and_the_features() {
        let set = Arc::new(
            SimulationSet::simulate(SbiTask::LinearGaussian, 500, 2, |_| {}).expect("set"),
        );
        let base = base_config(2);
        let cfg = sbi_config(&set, SbiLoss::MixLearned, base.clone()).expect("cfg");
        let batches = SimulationBatches::new(set.clone(), &cfg).expect("batches");
        let b = batches
            .sample(&mut tsm_core::rng::stream(1, 1), 50, None)
            .expect("batch");
        let mix = b.mix.as_ref().expect("mix");
        mix.check(50, 4, LearnedWeight::FEATURES).expect("sizes");
        // The batch's `target` is mix's at w_t*: w* A + (1 − w*) B, with w* = κ's weight.
        let f = set.score_constant().expect("F").value;
        let w_star = LearnedWeight::optimal(f, 4).expect("w*");
        for i in 0..50 {
            let t = b.cond.t[i];
            let phi = LearnedWeight::features(&cfg.model.schedule, t).expect("phi");
            for (k, p) in phi.iter().enumerate() {
                assert_eq!(mix.features[i * 4 + k], *p as f32);
            }
            let w = w_star.at(&cfg.model.schedule, t).expect("w");
            for j in i * 4..(i + 1) * 4 {
                let y = w * mix.dsm[j] as f64 + (1.0 - w) * mix.ltsm[j] as f64;
                let tol = 1e-5 * (mix.dsm[j].abs() + mix.ltsm[j].abs()) as f64;
                assert!((b.target[j] as f64 - y).abs() <= tol, "{i} {j}");
            }
        }
        // Other losses carry none.
        let mix_cfg = sbi_config(&set, SbiLoss::Mix, base).expect("mix");
        let other = SimulationBatches::new(set, &mix_cfg).expect("batches");
        let b = other
            .sample(&mut tsm_core::rng::stream(1, 1), 5, None)
            .expect("batch");
        assert!(b.mix.is_none());
    }

    #[test]
    fn batch_targets_have_the_identities_conditional_means() {
        // linear_gaussian, DSM and LTSM batches at one time t = 0.3: E[L | θ_t, x] is the
        // posterior score for both, so E⟨L, θ_t⟩ must agree between the two (each estimated
        // over 40,000 rows; the two are independent). Fixed seeds; tolerance 5 standard
        // errors of the difference.
        let set = Arc::new(
            SimulationSet::simulate(SbiTask::LinearGaussian, 40_000, 1, |_| {}).expect("set"),
        );
        let base = base_config(1);
        let mut stats = Vec::new();
        for loss in [SbiLoss::Dsm, SbiLoss::Ltsm] {
            let cfg = sbi_config(&set, loss, base.clone()).expect("cfg");
            let batches = SimulationBatches::new(set.clone(), &cfg).expect("batches");
            let mut rng = tsm_core::rng::stream(5, loss as u64);
            let b = batches
                .sample(&mut rng, 40_000, Some(&[0.3]))
                .expect("batch");
            let v: Vec<f64> = (0..b.n)
                .map(|i| {
                    (0..4)
                        .map(|j| b.target[i * 4 + j] as f64 * b.xt[i * 4 + j] as f64)
                        .sum()
                })
                .collect();
            let m = v.iter().sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64;
            stats.push((m, var / v.len() as f64));
            assert_eq!(b.cond.condition.len(), 4 * b.n);
        }
        // By Stein's identity E⟨∇log p_t(θ_t | x), θ_t⟩ = −d = −4 exactly, for both.
        for (m, se2) in &stats {
            assert!((m + 4.0).abs() < 5.0 * se2.sqrt(), "{stats:?}");
        }
    }
}
