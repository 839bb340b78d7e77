//! The samplers themselves: each a loop over the grid's steps that reads like its algorithm
//! (see the [module docs](super) for the equations).
//!
//! Every sampler takes the score, the starting state `x` (`[n, d]`, overwritten by the
//! result), the schedule, the grid, and an optional per-step [`Callback`]. Buffers are
//! allocated once per run; the state is checked to be finite after every step.

use rand::Rng;
use rand_distr::StandardNormal;

use super::{Callback, NoisedScore, Outcome, Step, TimeGrid};
use crate::schedule::Schedule;
use crate::{Error, Result};

/// Reverse-SDE Euler–Maruyama (Song et al. 2021, eq. 6 discretised):
/// `x ← x − [f_t x − g_t² s(x, t)] h + g_t √h z`, `h = t − t'`, `z ~ N(0, I)`; no noise on
/// the last step. One score evaluation per step.
///
/// # Errors
/// As [`Sampler::run`](super::Sampler::run).
pub fn euler_maruyama<S, R>(
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
    check_state(score.dim(), x)?;
    let mut s = vec![0.0; x.len()];
    drive(grid, x, callback, |step, x| {
        reverse_sde_step(score, schedule, step, x, &mut s, rng)
    })
}

/// Probability-flow ODE by Heun's method (Karras et al. 2022, Alg. 1 without churn), with
/// the velocity `v(x, t) = f_t x − ½ g_t² s(x, t)`:
/// `x̃ = x − h v(x, t)`, then `x ← x − h [v(x, t) + v(x̃, t')]/2`. Deterministic (no
/// noise at all); two score evaluations per step.
///
/// # Errors
/// As [`Sampler::run`](super::Sampler::run).
pub fn heun<S>(
    score: &mut S,
    x: &mut [f64],
    schedule: &(impl Schedule + ?Sized),
    grid: &TimeGrid,
    callback: Option<&mut Callback<'_>>,
) -> Result<Outcome>
where
    S: NoisedScore + ?Sized,
{
    check_state(score.dim(), x)?;
    let n = x.len();
    let (mut s, mut x_euler) = (vec![0.0; n], vec![0.0; n]);
    let (mut v1, mut v2) = (vec![0.0; n], vec![0.0; n]);
    // The probability-flow velocity v(x, t) = f_t x − ½ g_t² s(x, t) (Song et al., eq. 13).
    let velocity = |t: f64, x: &[f64], s: &[f64], out: &mut [f64]| -> Result<()> {
        let (f, g2) = sde_coefficients(schedule, t)?;
        for ((o, xi), si) in out.iter_mut().zip(x).zip(s) {
            *o = f * xi - 0.5 * g2 * si;
        }
        Ok(())
    };
    drive(grid, x, callback, |step, x| {
        let (t, t_next, h) = (step.t, step.t_next, step.t - step.t_next);
        // Euler predictor: x̃ = x − h v(x, t).
        score.noised_score(x, t, &mut s)?;
        velocity(t, x, &s, &mut v1)?;
        for ((xe, xi), vi) in x_euler.iter_mut().zip(x.iter()).zip(&v1) {
            *xe = xi - h * vi;
        }
        // Trapezoidal corrector with the velocity at the predicted point.
        score.noised_score(&x_euler, t_next, &mut s)?;
        velocity(t_next, &x_euler, &s, &mut v2)?;
        for ((xi, a), b) in x.iter_mut().zip(&v1).zip(&v2) {
            *xi -= 0.5 * h * (a + b);
        }
        Ok(())
    })
}

/// Predictor–corrector (Song et al. 2021, Algs. 1 and 4): a reverse-SDE Euler–Maruyama
/// predictor step to `t'`, then `corrector_steps` Langevin steps targeting `p_{t'}`,
/// `x ← x + ε s(x, t') + √(2ε) z` with `ε = 2 (r ‖z‖/‖s‖)²` (norms over the whole batch,
/// `r = snr`). The last step is a plain denoising predictor step: no noise, no corrector.
/// `1 + corrector_steps` score evaluations per step (one on the last).
///
/// # Errors
/// [`Error::NonPositive`] for `snr` not finite and positive; as
/// [`Sampler::run`](super::Sampler::run).
#[allow(clippy::too_many_arguments)] // the samplers' common arguments plus the two knobs
pub fn predictor_corrector<S, R>(
    score: &mut S,
    x: &mut [f64],
    schedule: &(impl Schedule + ?Sized),
    grid: &TimeGrid,
    snr: f64,
    corrector_steps: usize,
    rng: &mut R,
    callback: Option<&mut Callback<'_>>,
) -> Result<Outcome>
where
    S: NoisedScore + ?Sized,
    R: Rng + ?Sized,
{
    crate::error::positive("snr", snr)?;
    check_state(score.dim(), x)?;
    let (mut s, mut z) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>().sqrt();
    drive(grid, x, callback, |step, x| {
        // Predictor: one reverse-SDE Euler–Maruyama step (no noise on the last step).
        reverse_sde_step(score, schedule, step, x, &mut s, rng)?;
        if step.last {
            return Ok(()); // no corrector after the last predictor step
        }
        // Corrector: Langevin MCMC targeting p_{t'}.
        for _ in 0..corrector_steps {
            score.noised_score(x, step.t_next, &mut s)?;
            z.iter_mut().for_each(|zi| *zi = rng.sample(StandardNormal));
            let eps = 2.0 * (snr * norm(&z) / norm(&s).max(1e-30)).powi(2);
            for ((xi, si), zi) in x.iter_mut().zip(&s).zip(&z) {
                *xi += eps * si + (2.0 * eps).sqrt() * zi;
            }
        }
        Ok(())
    })
}

/// DDIM (Song, Meng & Ermon 2021, eq. 12, with their σ_τ(η) of eq. 16), written on the
/// score: with `ε̂ = −σ_t s(x, t)` the predicted noise and `x̂₀ = (x − σ_t ε̂)/α_t` the
/// predicted clean point,
///
/// `x ← α_{t'} x̂₀ + √(σ_{t'}² − c²) ε̂ + c z`,
/// `c = η (σ_{t'}/σ_t) √(σ_t² − (α_t/α_{t'})² σ_{t'}²)`, `z ~ N(0, I)`.
///
/// For a variance-preserving schedule (`σ² = 1 − α²`) this is DDIM exactly (their `ᾱ` is our
/// `α²`, and `c` is their `σ_τ(η)`); `η = 0` is the deterministic sampler, `η = 1` the
/// ancestral DDPM step. The same formula holds for any `(α_t, σ_t)`, since it only uses
/// the Gaussian posterior `q(x_{t'} | x_t, x₀)` with the right marginals: for VE (`α = 1`)
/// the deterministic step is `x ← x + (σ_{t'} − σ_t) ε̂`, Euler's method for the
/// probability-flow ODE in `σ` (Karras et al. 2022, eq. 4). No noise on the last step
/// (`c = 0`, a deterministic DDIM step); `η = 0` draws no random numbers at all. One score
/// evaluation per step.
///
/// # Errors
/// [`Error::OutOfRange`] for `η ∉ [0, 1]`; [`Error::NonFinite`] where `α_{t'}/α_t` is not
/// finite (e.g. the cosine schedule at `t = 1`, where `α_t = 0`); as
/// [`Sampler::run`](super::Sampler::run).
pub fn ddim<S, R>(
    score: &mut S,
    x: &mut [f64],
    schedule: &(impl Schedule + ?Sized),
    grid: &TimeGrid,
    eta: f64,
    rng: &mut R,
    callback: Option<&mut Callback<'_>>,
) -> Result<Outcome>
where
    S: NoisedScore + ?Sized,
    R: Rng + ?Sized,
{
    check_eta(eta)?;
    check_state(score.dim(), x)?;
    let mut s = vec![0.0; x.len()];
    drive(grid, x, callback, |step, x| {
        let (t, t_next) = (step.t, step.t_next);
        let (a, sig) = (schedule.alpha(t), schedule.sigma(t));
        let (a_next, sig_next) = (schedule.alpha(t_next), schedule.sigma(t_next));
        let ratio = a_next / a;
        if !ratio.is_finite() {
            return Err(Error::NonFinite {
                op: "DDIM's α_{t'}/α_t on the time grid",
                value: ratio,
            });
        }
        // c = η (σ'/σ) √(σ² − (α/α')² σ'²); the radicand is ≥ 0 up to rounding for a
        // schedule whose signal-to-noise ratio decreases in t.
        let c = if step.last || eta == 0.0 {
            0.0
        } else {
            let radicand = sig * sig - (sig_next / ratio).powi(2);
            eta * (sig_next / sig) * radicand.max(0.0).sqrt()
        };
        let eps_scale = (sig_next * sig_next - c * c).max(0.0).sqrt();
        score.noised_score(x, t, &mut s)?;
        for (xi, si) in x.iter_mut().zip(s.iter()) {
            let eps = -sig * si; // ε̂ = −σ_t s(x, t)
            let x0 = (*xi - sig * eps) / a; // x̂₀ = (x − σ_t ε̂)/α_t
            *xi = a_next * x0 + eps_scale * eps;
            if c > 0.0 {
                *xi += c * rng.sample::<f64, _>(StandardNormal);
            }
        }
        Ok(())
    })
}

/// Checks DDIM's `η ∈ [0, 1]`.
pub(super) fn check_eta(eta: f64) -> Result<f64> {
    if (0.0..=1.0).contains(&eta) {
        Ok(eta)
    } else {
        Err(Error::OutOfRange {
            name: "eta",
            value: eta,
            allowed: "[0, 1]",
        })
    }
}

/// One step `τ_k → τ_{k+1}` as a sampler's body sees it.
struct Interval {
    t: f64,
    t_next: f64,
    /// Whether this is the grid's last step (the denoising step: no noise).
    last: bool,
}

/// One reverse-SDE Euler–Maruyama step from `t` to `t'`, the shared predictor: `s` is the
/// score buffer. Keeps the arithmetic and the order of the normal draws of the samplers'
/// first version, so that same-seed runs reproduce.
fn reverse_sde_step<S, R>(
    score: &mut S,
    schedule: &(impl Schedule + ?Sized),
    step: &Interval,
    x: &mut [f64],
    s: &mut [f64],
    rng: &mut R,
) -> Result<()>
where
    S: NoisedScore + ?Sized,
    R: Rng + ?Sized,
{
    let (t, h) = (step.t, step.t - step.t_next);
    let (f, g2) = sde_coefficients(schedule, t)?;
    score.noised_score(x, t, s)?;
    for (xi, si) in x.iter_mut().zip(s.iter()) {
        // Step backwards in time along the reverse SDE's drift …
        *xi -= (f * *xi - g2 * si) * h;
        // … and its Brownian increment, except on the last step.
        if !step.last {
            *xi += (g2 * h).sqrt() * rng.sample::<f64, _>(StandardNormal);
        }
    }
    Ok(())
}

/// Runs `body` over the grid's steps; after each, checks that the state is finite and hands
/// it to the callback, which may stop the run.
fn drive(
    grid: &TimeGrid,
    x: &mut [f64],
    mut callback: Option<&mut Callback<'_>>,
    mut body: impl FnMut(&Interval, &mut [f64]) -> Result<()>,
) -> Result<Outcome> {
    let steps = grid.steps();
    for (index, (t, t_next)) in grid.intervals().enumerate() {
        let last = index + 1 == steps;
        body(&Interval { t, t_next, last }, x)?;
        if let Some(&value) = x.iter().find(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                op: "the sampler's state (a step too large for the score?)",
                value,
            });
        }
        if let Some(callback) = callback.as_mut() {
            let step = Step {
                index,
                t,
                t_next,
                x,
            };
            if callback(&step).is_break() {
                return Ok(Outcome {
                    steps: index + 1,
                    stopped_early: !last,
                });
            }
        }
    }
    Ok(Outcome {
        steps,
        stopped_early: false,
    })
}

/// The forward SDE's `(f_t, g_t²)`, which must be finite where a sampler steps.
fn sde_coefficients(schedule: &(impl Schedule + ?Sized), t: f64) -> Result<(f64, f64)> {
    let (f, g2) = (schedule.drift(t), schedule.diffusion_sq(t));
    match (f.is_finite(), g2.is_finite()) {
        (true, true) => Ok((f, g2)),
        (false, _) => Err(Error::NonFinite {
            op: "the forward SDE's drift f_t on the time grid",
            value: f,
        }),
        (true, false) => Err(Error::NonFinite {
            op: "the forward SDE's diffusion g_t² on the time grid",
            value: g2,
        }),
    }
}

/// Checks that `x` is a finite `[n, d]` buffer.
fn check_state(d: usize, x: &[f64]) -> Result<()> {
    if d == 0 || x.len() % d != 0 {
        return Err(Error::OutOfRange {
            name: "x.len()",
            value: x.len() as f64,
            allowed: "multiples of the score's dimension d ≥ 1",
        });
    }
    match x.iter().find(|v| !v.is_finite()) {
        Some(&value) => Err(Error::NonFinite {
            op: "the sampler's starting state",
            value,
        }),
        None => Ok(()),
    }
}
