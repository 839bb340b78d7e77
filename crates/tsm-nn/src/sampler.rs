//! Samplers for the reverse process on any [`Schedule`] (paper `003` §§5, 6, 8; Song et al.
//! 2021), generic over a score function so that they run with a network or with an exact
//! marginal score (no network) alike.
//!
//! The forward SDE is `dX = f_t X dt + g_t dB` (`f_t = d log α_t/dt`,
//! `g_t² = dσ_t²/dt − 2 f_t σ_t²`). Integrating from `t_max` down to `t_min`:
//!
//! - reverse SDE: `dX = [f_t X − g_t² ∇log p_t(X)] dt + g_t dB̄` — [`euler_maruyama`];
//! - probability-flow ODE: `dX/dt = f_t X − ½ g_t² ∇log p_t(X)` — [`heun`] (2nd order);
//! - predictor–corrector: an Euler–Maruyama predictor, then Langevin corrector steps
//!   `x ← x + ε s(x, t) + √(2ε) z` with `ε = 2 (r ‖z‖/‖s‖)²` (signal-to-noise ratio `r`, Song
//!   et al.'s rule) — [`predictor_corrector`].
//!
//! **Time grid.** Steps are uniform in the log noise-to-signal ratio `u = ln(σ_t/α_t)`, not in
//! `t`: for the cosine schedule `f_t` and `g_t²` blow up like `tan(πt/2)` near `t = 1`, and a
//! uniform-`t` Euler step there is unstable, while in `u` the reverse dynamics have `O(1)`
//! stiffness at both ends. For VE, `u = ln σ_t` is linear in `t`, so the grid is uniform in `t`.
//! The prior is `x_{t_max} ~ N(0, (σ² + α² v) I)` with `v` the data variance per dimension; no
//! noise is added on the last step (the usual final denoising step).
//!
//! # Shapes
//! Points are row-major `[n, d]` `f64` buffers.
//!
//! # References
//! [^1]: Song et al. (2021), *Score-based generative modeling through SDEs*, Algs. 1–2 (PC).
//! [^2]: Karras et al. (2022), Alg. 1 (Heun).

use rand::Rng;
use rand_distr::StandardNormal;
use tsm_core::schedule::Schedule;
use tsm_core::target::{Dim, Score};
use tsm_targets::GaussianMixture;

use crate::{Error, Result};

/// A time-dependent score `(x, t) ↦ ∇log p_t(x)` on a batch.
pub trait ScoreFn {
    /// The dimension `d`.
    fn dim(&self) -> usize;
    /// Writes `s(xᵢ, t)` for every row of `x` (`[n, d]`) into `out` (`[n, d]`).
    ///
    /// # Errors
    /// Whatever the implementation reports (tensor errors for a network).
    fn score(&mut self, x: &[f64], t: f64, out: &mut [f64]) -> Result<()>;
}

/// The exact marginal score `∇log p_t` of a Gaussian mixture (no network).
#[derive(Debug, Clone)]
pub struct ExactMixtureScore<'a, S> {
    /// The target `p_0`.
    pub mixture: &'a GaussianMixture,
    /// The schedule.
    pub schedule: S,
}

impl<S: Schedule> ScoreFn for ExactMixtureScore<'_, S> {
    fn dim(&self) -> usize {
        Dim::dim(self.mixture)
    }
    fn score(&mut self, x: &[f64], t: f64, out: &mut [f64]) -> Result<()> {
        let p_t = self.mixture.noised(&self.schedule, t)?;
        let d = Dim::dim(self.mixture);
        for (xi, oi) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
            p_t.score(xi, oi);
        }
        Ok(())
    }
}

/// Settings shared by the samplers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerConfig {
    /// Number of steps `N` (score evaluations: `N` for EM, `2N` for Heun, `N(1 + corrector)` for PC).
    pub steps: usize,
    /// Start time (`1 − 10⁻³`).
    pub t_max: f64,
    /// End time (`10⁻³`).
    pub t_min: f64,
    /// Data variance per dimension `v` for the prior `N(0, (σ² + α² v) I)`.
    pub data_variance: f64,
    /// Langevin signal-to-noise ratio `r` (0.16, Song et al.).
    pub snr: f64,
    /// Corrector steps per predictor step (1).
    pub corrector_steps: usize,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            steps: 200,
            t_max: 1.0 - 1e-3,
            t_min: 1e-3,
            data_variance: 1.0,
            snr: 0.16,
            corrector_steps: 1,
        }
    }
}

/// The times `t_max = τ_0 > τ_1 > … > τ_N = t_min`, uniform in `u = ln(σ_t/α_t)`.
///
/// # Errors
/// [`Error::Config`] for no steps or a bad range.
pub fn time_grid(schedule: &(impl Schedule + ?Sized), cfg: &SamplerConfig) -> Result<Vec<f64>> {
    if cfg.steps == 0 || !(0.0 < cfg.t_min && cfg.t_min < cfg.t_max && cfg.t_max < 1.0) {
        return Err(Error::config(format!(
            "sampler needs steps > 0 and 0 < t_min < t_max < 1, got {} steps on [{}, {}]",
            cfg.steps, cfg.t_min, cfg.t_max
        )));
    }
    let u = |t: f64| (schedule.sigma(t) / schedule.alpha(t)).ln();
    let (u0, u1) = (u(cfg.t_max), u(cfg.t_min));
    let mut grid = Vec::with_capacity(cfg.steps + 1);
    for k in 0..=cfg.steps {
        let target = u0 + (u1 - u0) * k as f64 / cfg.steps as f64;
        // u is increasing in t: bisection on [t_min, t_max].
        let (mut lo, mut hi) = (cfg.t_min, cfg.t_max);
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if u(mid) < target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        grid.push(0.5 * (lo + hi));
    }
    grid[0] = cfg.t_max;
    grid[cfg.steps] = cfg.t_min;
    Ok(grid)
}

fn prior(
    schedule: &(impl Schedule + ?Sized),
    cfg: &SamplerConfig,
    n: usize,
    d: usize,
    rng: &mut (impl Rng + ?Sized),
) -> Vec<f64> {
    let (a, s) = (schedule.alpha(cfg.t_max), schedule.sigma(cfg.t_max));
    let std = (s * s + a * a * cfg.data_variance).sqrt();
    (0..n * d)
        .map(|_| std * rng.sample::<f64, _>(StandardNormal))
        .collect()
}

/// Reverse-SDE Euler–Maruyama: `x ← x − [f x − g² s(x, t)] h + g √h z` (`h = t − t'`).
///
/// # Errors
/// As the score function; a bad configuration.
pub fn euler_maruyama(
    score: &mut impl ScoreFn,
    schedule: &(impl Schedule + ?Sized),
    cfg: &SamplerConfig,
    n: usize,
    rng: &mut (impl Rng + ?Sized),
) -> Result<Vec<f64>> {
    let d = score.dim();
    let grid = time_grid(schedule, cfg)?;
    let mut x = prior(schedule, cfg, n, d, rng);
    let mut s = vec![0.0; n * d];
    for (k, w) in grid.windows(2).enumerate() {
        let (t, h) = (w[0], w[0] - w[1]);
        let (f, g2) = (schedule.drift(t), schedule.diffusion_sq(t));
        score.score(&x, t, &mut s)?;
        let last = k + 2 == grid.len();
        for (xi, si) in x.iter_mut().zip(&s) {
            // Step backwards in time along the reverse SDE.
            *xi -= (f * *xi - g2 * si) * h;
            if !last {
                *xi += (g2 * h).sqrt() * rng.sample::<f64, _>(StandardNormal);
            }
        }
    }
    Ok(x)
}

/// Probability-flow ODE with Heun's method: `v(x, t) = f x − ½ g² s(x, t)`,
/// `x̃ = x − h v(x, t)`, `x ← x − h [v(x, t) + v(x̃, t')]/2`.
///
/// # Errors
/// As the score function; a bad configuration.
pub fn heun(
    score: &mut impl ScoreFn,
    schedule: &(impl Schedule + ?Sized),
    cfg: &SamplerConfig,
    n: usize,
    rng: &mut (impl Rng + ?Sized),
) -> Result<Vec<f64>> {
    let d = score.dim();
    let grid = time_grid(schedule, cfg)?;
    let mut x = prior(schedule, cfg, n, d, rng);
    let (mut s, mut v1) = (vec![0.0; n * d], vec![0.0; n * d]);
    let (mut v2, mut x_euler) = (vec![0.0; n * d], vec![0.0; n * d]);
    let velocity = |t: f64, x: &[f64], s: &[f64], out: &mut [f64]| {
        let (f, g2) = (schedule.drift(t), schedule.diffusion_sq(t));
        for ((o, xi), si) in out.iter_mut().zip(x).zip(s) {
            *o = f * xi - 0.5 * g2 * si;
        }
    };
    for w in grid.windows(2) {
        let (t, t_next, h) = (w[0], w[1], w[0] - w[1]);
        // Euler predictor.
        score.score(&x, t, &mut s)?;
        velocity(t, &x, &s, &mut v1);
        for ((xe, xi), vi) in x_euler.iter_mut().zip(&x).zip(&v1) {
            *xe = xi - h * vi;
        }
        // Trapezoidal corrector with the velocity at the predicted point.
        score.score(&x_euler, t_next, &mut s)?;
        velocity(t_next, &x_euler, &s, &mut v2);
        for ((xi, a), b) in x.iter_mut().zip(&v1).zip(&v2) {
            *xi -= 0.5 * h * (a + b);
        }
    }
    Ok(x)
}

/// Predictor–corrector: an Euler–Maruyama predictor step to `t'`, then
/// `corrector_steps` Langevin steps at `t'` with step `ε = 2 (r ‖z‖/‖s‖)²`.
///
/// # Errors
/// As the score function; a bad configuration.
pub fn predictor_corrector(
    score: &mut impl ScoreFn,
    schedule: &(impl Schedule + ?Sized),
    cfg: &SamplerConfig,
    n: usize,
    rng: &mut (impl Rng + ?Sized),
) -> Result<Vec<f64>> {
    let d = score.dim();
    let grid = time_grid(schedule, cfg)?;
    let mut x = prior(schedule, cfg, n, d, rng);
    let (mut s, mut z) = (vec![0.0; n * d], vec![0.0; n * d]);
    for (k, w) in grid.windows(2).enumerate() {
        let (t, t_next, h) = (w[0], w[1], w[0] - w[1]);
        let (f, g2) = (schedule.drift(t), schedule.diffusion_sq(t));
        // Predictor: one reverse-SDE Euler–Maruyama step.
        score.score(&x, t, &mut s)?;
        for (xi, si) in x.iter_mut().zip(&s) {
            *xi -= (f * *xi - g2 * si) * h;
            *xi += (g2 * h).sqrt() * rng.sample::<f64, _>(StandardNormal);
        }
        if k + 2 == grid.len() {
            break; // no corrector after the last predictor step
        }
        // Corrector: Langevin MCMC targeting p_{t'}.
        for _ in 0..cfg.corrector_steps {
            score.score(&x, t_next, &mut s)?;
            z.iter_mut().for_each(|zi| *zi = rng.sample(StandardNormal));
            let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>().sqrt();
            let eps = 2.0 * (cfg.snr * norm(&z) / norm(&s).max(1e-30)).powi(2);
            for ((xi, si), zi) in x.iter_mut().zip(&s).zip(&z) {
                *xi += eps * si + (2.0 * eps).sqrt() * zi;
            }
        }
    }
    Ok(x)
}

/// The sampler names.
pub const SAMPLER_NAMES: [&str; 3] = ["em", "heun", "pc"];

/// Runs the sampler called `name` (`em`, `heun`, `pc`).
///
/// # Errors
/// [`Error::Config`] for an unknown name; as the samplers.
pub fn sample_by_name(
    name: &str,
    score: &mut impl ScoreFn,
    schedule: &(impl Schedule + ?Sized),
    cfg: &SamplerConfig,
    n: usize,
    rng: &mut (impl Rng + ?Sized),
) -> Result<Vec<f64>> {
    match name {
        "em" => euler_maruyama(score, schedule, cfg, n, rng),
        "heun" => heun(score, schedule, cfg, n, rng),
        "pc" => predictor_corrector(score, schedule, cfg, n, rng),
        _ => Err(Error::config(format!(
            "unknown sampler `{name}`; valid: {}",
            SAMPLER_NAMES.join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsm_core::schedule::{AnySchedule, Cosine};

    #[test]
    fn grid_is_monotone_with_exact_ends() {
        for name in AnySchedule::NAMES {
            let s = AnySchedule::by_name(name).expect("schedule");
            let g = time_grid(&s, &SamplerConfig::default()).expect("grid");
            assert_eq!(g.len(), 201);
            assert!(g.windows(2).all(|w| w[0] > w[1]), "{name}");
            assert_eq!((g[0], g[200]), (1.0 - 1e-3, 1e-3));
        }
        assert!(time_grid(
            &Cosine,
            &SamplerConfig {
                steps: 0,
                ..Default::default()
            }
        )
        .is_err());
    }
}
