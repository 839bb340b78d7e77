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
//! | `mix_learned` | — | not built yet: refused with an error |
//!
//! with `F̂ = (1/n) Σ ‖gᵢ‖²` estimated from the set
//! ([`tsm_core::simulator::estimate_score_constant`]). The condition of row `j` is its
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
use crate::loss::{Batch, BatchSource};
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
    /// The mixture with a learned weight `w_φ(t)` (not built yet).
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
/// [`Error::Config`] for `mix_learned` (not built yet), a `target_scaled` parameterisation
/// (it needs `∇log p₀(θ_t)`, which no simulator gives), a seed other than the set's; as
/// [`TrainConfig::validate`].
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
        SbiLoss::Mix => ScoreIdentity::kappa(d as f64 / set.score_constant()?.value),
        SbiLoss::MixLearned => {
            return Err(Error::config(
                "the loss mix_learned (a learned weight w(t)) is not built yet; use mix (the \
                 optimal weight w_t*), dsm or ltsm",
            ))
        }
    };
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

/// Training batches drawn from a [`SimulationSet`] (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct SimulationBatches {
    set: Arc<SimulationSet>,
    schedule: AnySchedule,
    identity: ScoreIdentity,
    weighting: NormalisedWeighting,
    range: TimeRange,
    model: ModelConfig,
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
            for (o, v) in target[row].iter_mut().zip(&l) {
                *o = *v as f32;
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
    fn losses_parse_and_mix_learned_is_refused() {
        assert_eq!("mix".parse::<SbiLoss>().expect("mix"), SbiLoss::Mix);
        let err = "kappa".parse::<SbiLoss>().unwrap_err().to_string();
        assert!(err.contains("ltsm") && err.contains("mix_learned"), "{err}");
        let set = SimulationSet::simulate(SbiTask::LinearGaussian, 100, 0, |_| {}).expect("set");
        let base = TrainConfig::new(
            "",
            ModelConfig::default(),
            crate::loss::LossConfig::new(
                ScoreIdentity::Dsi,
                tsm_core::weighting::Weighting::Uniform,
                &crate::loss::TargetVariances::new(1.0, None).expect("v"),
            )
            .expect("loss"),
        );
        let err = sbi_config(&set, SbiLoss::MixLearned, base.clone()).unwrap_err();
        assert!(err.to_string().contains("not built yet"), "{err}");
        // MIX at w_t*: κ with σ² = d/F̂, F̂ ≈ 20 for linear_gaussian.
        let cfg = sbi_config(&set, SbiLoss::Mix, base).expect("mix");
        let f = set.score_constant().expect("F").value;
        assert_eq!(cfg.loss.identity, ScoreIdentity::kappa(4.0 / f));
        assert_eq!(cfg.target, "linear_gaussian");
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
        let base = TrainConfig {
            seed: 1,
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
        };
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
