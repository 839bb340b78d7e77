//! Samplers for the reverse process of a noising [`Schedule`], generic over the score: a
//! trained network and an exact marginal score run through the same code.
//!
//! The forward SDE is `dX = f_t X dt + g_t dB` with `f_t = d log α_t/dt` and
//! `g_t² = dσ_t²/dt − 2 f_t σ_t²` ([`crate::schedule`]). Integrating from `t_max` down to
//! `t_min` with the score `s(x, t) ≈ ∇log p_t(x)` of the noised marginal:
//!
//! - **reverse SDE** (Song et al. 2021, eq. 6): `dX = [f_t X − g_t² ∇log p_t(X)] dt + g_t dB̄`,
//!   by Euler–Maruyama, `x ← x − [f_t x − g_t² s(x, t)] h + g_t √h z` with `h = t − t'` —
//!   [`Sampler::EulerMaruyama`];
//! - **probability-flow ODE** (Song et al. 2021, eq. 13): `dX/dt = f_t X − ½ g_t² ∇log p_t(X)`,
//!   by Heun's second-order method (Karras et al. 2022, Alg. 1) — [`Sampler::Heun`];
//! - **predictor–corrector** (Song et al. 2021, Alg. 1): an Euler–Maruyama predictor step,
//!   then Langevin corrector steps at the new time, `x ← x + ε s(x, t') + √(2ε) z`, with
//!   Song et al.'s step-size rule `ε = 2 (r ‖z‖/‖s‖)²` for a signal-to-noise ratio `r`
//!   (Algs. 4–5) — [`Sampler::PredictorCorrector`];
//! - **DDIM** (Song, Meng & Ermon 2021, eqs. 12 and 16) on the score, `ε̂ = −σ_t s(x, t)`:
//!   `x ← α_{t'} x̂₀ + √(σ_{t'}² − c²) ε̂ + c z` with `x̂₀ = (x − σ_t ε̂)/α_t` and the noise
//!   level `c` set by `η ∈ [0, 1]` (`η = 0` deterministic) — [`Sampler::Ddim`], see [`ddim`].
//!
//! No noise is added on the last step (and no corrector runs after it): the last step is the
//! usual final denoising step. This holds for every sampler (tested).
//!
//! **The pieces.** A sampler takes a [`NoisedScore`] (for a conditional model: a
//! [`ConditionalScore`] with its condition fixed by [`Conditioned`]), the starting state
//! `x` — the caller's draw from the prior at `t_max`, overwritten with the result — a
//! schedule, a [`TimeGrid`], a random number generator and an optional per-step
//! [`Callback`] (to record a trajectory, draw progress, or stop early): [`Sampler::run`].
//! [`SamplerConfig::sample`] wraps today's defaults: the prior `N(0, (σ² + α² v) I)` at
//! `t_max = 1 − 10⁻³`, a log-SNR grid of `steps` steps down to `t_min = 10⁻³`.
//!
//! **Why the default grid is uniform in log-SNR.** [`TimeGrid::log_snr`] steps uniformly in
//! `u = ln(σ_t/α_t)`, not in `t`: for the cosine schedule `f_t` and `g_t²` blow up like
//! `tan(πt/2)` near `t = 1`, and a uniform-`t` Euler step there is unstable, while in `u` the
//! reverse dynamics have `O(1)` stiffness at both ends. For VE, `u = ln σ_t` is linear in `t`,
//! so the grid is uniform in `t`. [`TimeGrid::karras`] (Karras et al. 2022, eq. 5) and
//! [`TimeGrid::uniform`] are the alternatives.
//!
//! # Shapes
//! Points, states and scores are row-major `[n, d]` `f64` buffers; conditions `[n, c]` (or
//! one row `[c]` broadcast to every point).
//!
//! # Examples
//! ```
//! use tsm_core::sampler::{NoisedScore, Sampler, SamplerConfig};
//! use tsm_core::schedule::{Cosine, Schedule};
//! use tsm_core::target::Dim;
//!
//! /// The exact score of p_t when p_0 = N(0, 1): p_t = N(0, α_t² + σ_t²).
//! struct Gaussian;
//! impl Dim for Gaussian {
//!     fn dim(&self) -> usize { 1 }
//! }
//! impl NoisedScore for Gaussian {
//!     fn noised_score(&mut self, x: &[f64], t: f64, out: &mut [f64]) -> tsm_core::Result<()> {
//!         let var = Cosine.alpha(t).powi(2) + Cosine.sigma_sq(t);
//!         for (o, x) in out.iter_mut().zip(x) { *o = -x / var; }
//!         Ok(())
//!     }
//! }
//!
//! let cfg = SamplerConfig { sampler: "heun".parse()?, steps: 50, ..SamplerConfig::default() };
//! let mut rng = tsm_core::rng::stream(0, 0);
//! let x = cfg.sample(&mut Gaussian, &Cosine, 2000, &mut rng)?;
//! let var = x.iter().map(|v| v * v).sum::<f64>() / 2000.0;
//! assert!((var - 1.0).abs() < 0.15); // ≈ 1 within ~5 standard errors (√(2/2000) ≈ 0.03)
//! assert_eq!(cfg.sampler, Sampler::Heun);
//! # Ok::<(), tsm_core::Error>(())
//! ```
//!
//! # References
//! [^1]: Song et al. (2021), *Score-based generative modeling through stochastic differential
//!       equations*, eqs. 6 and 13, Algs. 1, 4 and 5.
//! [^2]: Karras et al. (2022), *Elucidating the design space of diffusion-based generative
//!       models*, Alg. 1 (Heun) and eq. 5 (the ρ-schedule).
//! [^3]: Song, Meng & Ermon (2021), *Denoising diffusion implicit models*, eqs. 12 and 16.

use std::fmt;
use std::ops::ControlFlow;
use std::str::FromStr;

use rand::Rng;
use rand_distr::StandardNormal;

use crate::choice::{unknown, Choice};
use crate::schedule::Schedule;
use crate::{Error, Result};

mod grid;
mod score;
mod solvers;

pub use grid::TimeGrid;
pub use score::{ConditionalScore, Conditioned, NoisedScore};
pub use solvers::{ddim, euler_maruyama, heun, predictor_corrector};

/// One of the samplers, chosen at run time (`em`, `heun`, `pc`, `ddim`; see the
/// [module docs](self)).
///
/// Parses from and prints as its name: `em`, `heun`, `pc` (with the default `r = 0.16`, one
/// corrector step), `pc=R` (signal-to-noise ratio `R`, one corrector step), `pc=R,K` (`K`
/// corrector steps), `ddim` (deterministic, `η = 0`) or `ddim=ETA` (`η ∈ [0, 1]`).
///
/// ```
/// use tsm_core::sampler::Sampler;
///
/// assert_eq!("pc".parse::<Sampler>()?, Sampler::predictor_corrector());
/// let pc: Sampler = "pc=0.1,2".parse()?;
/// assert_eq!(pc, Sampler::PredictorCorrector { snr: 0.1, corrector_steps: 2 });
/// assert_eq!(pc.to_string(), "pc=0.1,2");
/// assert_eq!("ddim=0.5".parse::<Sampler>()?, Sampler::Ddim { eta: 0.5 });
/// assert!("euler".parse::<Sampler>().is_err()); // lists the valid names
/// # Ok::<(), tsm_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum Sampler {
    /// Reverse-SDE Euler–Maruyama ([`euler_maruyama`]); `N` score evaluations for `N` steps.
    #[default]
    EulerMaruyama,
    /// Probability-flow ODE by Heun's method ([`heun`]); `2N` score evaluations.
    Heun,
    /// Euler–Maruyama predictor + Langevin corrector ([`predictor_corrector`]);
    /// `N (1 + corrector_steps) − corrector_steps` score evaluations.
    PredictorCorrector {
        /// The Langevin signal-to-noise ratio `r` (Song et al.: 0.16).
        snr: f64,
        /// Corrector steps after each predictor step but the last (1).
        corrector_steps: usize,
    },
    /// DDIM on the score ([`ddim`]); `N` score evaluations. Deterministic for `η = 0`.
    Ddim {
        /// The noise level `η ∈ [0, 1]` (Song, Meng & Ermon 2021, eq. 16): `0` is the
        /// deterministic sampler, `1` the ancestral (DDPM) step.
        eta: f64,
    },
}

impl Sampler {
    /// Song et al.'s signal-to-noise ratio `r = 0.16`.
    pub const DEFAULT_SNR: f64 = 0.16;
    /// One corrector step per predictor step.
    pub const DEFAULT_CORRECTOR_STEPS: usize = 1;

    /// The predictor–corrector sampler with the defaults (`r = 0.16`, one corrector step).
    pub fn predictor_corrector() -> Self {
        Self::PredictorCorrector {
            snr: Self::DEFAULT_SNR,
            corrector_steps: Self::DEFAULT_CORRECTOR_STEPS,
        }
    }

    /// Deterministic DDIM (`η = 0`).
    pub const DDIM: Self = Self::Ddim { eta: 0.0 };

    /// The short name, without parameters (`em`, `heun`, `pc`, `ddim`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::EulerMaruyama => "em",
            Self::Heun => "heun",
            Self::PredictorCorrector { .. } => "pc",
            Self::Ddim { .. } => "ddim",
        }
    }

    /// Whether the sampler draws no random numbers (Heun, DDIM with `η = 0`): the same
    /// starting state gives the same samples.
    pub fn is_deterministic(&self) -> bool {
        matches!(self, Self::Heun) || matches!(self, Self::Ddim { eta } if *eta == 0.0)
    }

    /// Runs the sampler from the state `x` (`[n, d]`, the caller's draw at `grid.t_max()`)
    /// down the grid; `x` holds the samples at `grid.t_min()` on return (or the state where
    /// the callback stopped the run). The callback is called after every step; returning
    /// [`ControlFlow::Break`] stops the run there.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] if `x.len()` is not a multiple of `d ≥ 1`;
    /// [`Error::NonFinite`] for a non-finite starting state, a non-finite `f_t` or `g_t²` on
    /// the grid (e.g. the cosine schedule at `t = 1`), or a state that became non-finite;
    /// [`Error::NonPositive`] for a bad `snr`; [`Error::OutOfRange`] for DDIM's `η ∉ [0, 1]`;
    /// whatever the score reports.
    pub fn run<S, R>(
        &self,
        score: &mut S,
        x: &mut [f64],
        schedule: &(impl Schedule + ?Sized),
        grid: &TimeGrid,
        rng: &mut R,
        callback: Option<&mut Callback<'_>>,
    ) -> Result<Outcome>
    where
        S: NoisedScore + ?Sized,
        R: Rng + ?Sized,
    {
        match *self {
            Self::EulerMaruyama => euler_maruyama(score, x, schedule, grid, rng, callback),
            Self::Heun => heun(score, x, schedule, grid, callback),
            Self::PredictorCorrector {
                snr,
                corrector_steps,
            } => predictor_corrector(
                score,
                x,
                schedule,
                grid,
                snr,
                corrector_steps,
                rng,
                callback,
            ),
            Self::Ddim { eta } => ddim(score, x, schedule, grid, eta, rng, callback),
        }
    }
}

impl Choice for Sampler {
    const KIND: &'static str = "sampler";
    const NAMES: &'static [&'static str] =
        &["em", "heun", "pc", "pc=R", "pc=R,K", "ddim", "ddim=ETA"];
}

impl fmt::Display for Sampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::PredictorCorrector {
                snr,
                corrector_steps,
            } if *self != Self::predictor_corrector() => {
                write!(f, "pc={snr}")?;
                if corrector_steps != Self::DEFAULT_CORRECTOR_STEPS {
                    write!(f, ",{corrector_steps}")?;
                }
                Ok(())
            }
            Self::Ddim { eta } if eta != 0.0 => write!(f, "ddim={eta}"),
            _ => f.write_str(self.name()),
        }
    }
}

impl FromStr for Sampler {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "em" => Ok(Self::EulerMaruyama),
            "heun" => Ok(Self::Heun),
            "pc" => Ok(Self::predictor_corrector()),
            "ddim" => Ok(Self::DDIM),
            other if other.starts_with("ddim=") => {
                let eta: f64 = other["ddim=".len()..]
                    .trim()
                    .parse()
                    .map_err(|_| unknown::<Self>(s))?;
                solvers::check_eta(eta)?;
                Ok(Self::Ddim { eta })
            }
            other => {
                let params = other
                    .strip_prefix("pc=")
                    .ok_or_else(|| unknown::<Self>(s))?;
                let (snr, steps) = match params.split_once(',') {
                    Some((snr, steps)) => (snr, Some(steps)),
                    None => (params, None),
                };
                let snr: f64 = snr.trim().parse().map_err(|_| unknown::<Self>(s))?;
                let corrector_steps = match steps {
                    Some(k) => k.trim().parse().map_err(|_| unknown::<Self>(s))?,
                    None => Self::DEFAULT_CORRECTOR_STEPS,
                };
                crate::error::positive("snr", snr)?;
                Ok(Self::PredictorCorrector {
                    snr,
                    corrector_steps,
                })
            }
        }
    }
}

crate::serde_via_str!(Sampler);

/// The per-step callback: called after each step with the new state; return
/// [`ControlFlow::Break`] to stop the run there.
///
/// ```
/// use std::ops::ControlFlow;
/// use tsm_core::sampler::{NoisedScore, Sampler, Step, TimeGrid};
/// use tsm_core::schedule::Cosine;
/// use tsm_core::target::Dim;
///
/// /// `N(0, 1)` is invariant under a variance-preserving schedule: `∇log p_t(x) = −x`.
/// struct StdNormal;
/// impl Dim for StdNormal {
///     fn dim(&self) -> usize { 1 }
/// }
/// impl NoisedScore for StdNormal {
///     fn noised_score(&mut self, x: &[f64], _t: f64, out: &mut [f64]) -> tsm_core::Result<()> {
///         for (o, x) in out.iter_mut().zip(x) { *o = -x; }
///         Ok(())
///     }
/// }
///
/// let grid = TimeGrid::uniform(0.9, 0.1, 10)?;
/// let mut x = vec![0.5, -1.0, 2.0];
/// // Record the trajectory, and stop once past t = 0.45.
/// let mut trajectory = Vec::new();
/// let mut record = |step: &Step<'_>| {
///     trajectory.push(step.x.to_vec());
///     if step.t_next < 0.45 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
/// };
/// let mut rng = tsm_core::rng::stream(0, 0);
/// let done = Sampler::Heun.run(&mut StdNormal, &mut x, &Cosine, &grid, &mut rng, Some(&mut record))?;
/// assert!(done.stopped_early);
/// assert_eq!((done.steps, trajectory.len()), (6, 6));
/// assert_eq!(trajectory.last(), Some(&x));
/// # Ok::<(), tsm_core::Error>(())
/// ```
pub type Callback<'c> = dyn FnMut(&Step<'_>) -> ControlFlow<()> + 'c;

/// What a [`Callback`] sees after step `index`: the state `x` at `t_next`.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Step<'a> {
    /// The step's index `k` (`0` to `N − 1`).
    pub index: usize,
    /// The time `τ_k` the step started from.
    pub t: f64,
    /// The time `τ_{k+1}` it ended at.
    pub t_next: f64,
    /// The state at `t_next` (`[n, d]`).
    pub x: &'a [f64],
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The number of steps taken.
    pub steps: usize,
    /// Whether the callback stopped the run before the grid's last step.
    pub stopped_early: bool,
}

/// Today's defaults in one value: the sampler, a log-SNR grid of `steps` steps from `t_max`
/// down to `t_min`, and the prior `N(0, (σ² + α² v) I)` at `t_max` (the noised marginal of a
/// centred target with variance `v` per dimension, replaced by a Gaussian).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerConfig {
    /// The sampler ([`Sampler::EulerMaruyama`]).
    pub sampler: Sampler,
    /// Number of steps `N` (200).
    pub steps: usize,
    /// Start time (`1 − 10⁻³`).
    pub t_max: f64,
    /// End time (`10⁻³`).
    pub t_min: f64,
    /// Data variance per dimension `v` for the prior (1).
    pub data_variance: f64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            sampler: Sampler::EulerMaruyama,
            steps: 200,
            t_max: 1.0 - 1e-3,
            t_min: 1e-3,
            data_variance: 1.0,
        }
    }
}

impl SamplerConfig {
    /// The grid: `steps` steps uniform in log-SNR ([`TimeGrid::log_snr`]).
    ///
    /// # Errors
    /// As [`TimeGrid::log_snr`].
    pub fn grid(&self, schedule: &(impl Schedule + ?Sized)) -> Result<TimeGrid> {
        TimeGrid::log_snr(schedule, self.t_max, self.t_min, self.steps)
    }

    /// `n` draws from the prior `N(0, (σ² + α² v) I_d)` at `t_max`, row-major `[n, d]`, drawn
    /// in order with `StandardNormal`.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] for a negative or non-finite `v`, or `n · d` past `usize`;
    /// [`Error::TimeOutOfRange`] for `t_max ∉ [0, 1]`.
    pub fn prior<R: Rng + ?Sized>(
        &self,
        schedule: &(impl Schedule + ?Sized),
        n: usize,
        d: usize,
        rng: &mut R,
    ) -> Result<Vec<f64>> {
        let v = self.data_variance;
        if !(v.is_finite() && v >= 0.0) {
            return Err(Error::OutOfRange {
                name: "data_variance",
                value: v,
                allowed: "[0, ∞)",
            });
        }
        let t = crate::schedule::check_time(self.t_max)?;
        let len = n.checked_mul(d).ok_or(Error::OutOfRange {
            name: "n · d",
            value: n as f64 * d as f64,
            allowed: "below usize::MAX",
        })?;
        let (a, s) = (schedule.alpha(t), schedule.sigma(t));
        let std = (s * s + a * a * v).sqrt();
        Ok((0..len)
            .map(|_| std * rng.sample::<f64, _>(StandardNormal))
            .collect())
    }

    /// `n` samples: the prior draws first, then the sampler down the grid (in that order on
    /// `rng`, so that a seed reproduces).
    ///
    /// # Errors
    /// As [`SamplerConfig::grid`], [`SamplerConfig::prior`] and [`Sampler::run`].
    pub fn sample<S, R>(
        &self,
        score: &mut S,
        schedule: &(impl Schedule + ?Sized),
        n: usize,
        rng: &mut R,
    ) -> Result<Vec<f64>>
    where
        S: NoisedScore + ?Sized,
        R: Rng + ?Sized,
    {
        let grid = self.grid(schedule)?;
        let mut x = self.prior(schedule, n, score.dim(), rng)?;
        self.sampler
            .run(score, &mut x, schedule, &grid, rng, None)?;
        Ok(x)
    }
}

#[cfg(test)]
pub(crate) mod tests;
