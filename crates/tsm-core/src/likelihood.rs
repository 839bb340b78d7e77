//! Log-likelihoods `log p₀(x)` through the probability-flow ODE (Song et al. 2021, §4.3 and
//! App. D.2), with an adaptive Dormand–Prince 5(4) solver and either the exact divergence or
//! Hutchinson's trace estimator.
//!
//! **The identity.** Along the probability-flow ODE `dx/dt = v(x, t)`,
//! `v(x, t) = f_t x − ½ g_t² s(x, t)` (Song et al. 2021, eq. 13), the density of the pushed
//! points obeys the instantaneous change of variables `d log p_t(x_t)/dt = −∇·v(x_t, t)`
//! (Chen et al. 2018; Song et al. 2021, eq. 39), so with `x_{t_min} = x`:
//!
//! `log p_{t_min}(x) = log p_{t_max}(x_{t_max}) + ∫_{t_min}^{t_max} ∇·v(x_t, t) dt`,
//! `∇·v = d f_t − ½ g_t² tr ∇_x s(x, t)`.
//!
//! The state `(x, ℓ)` with `dℓ/dt = ∇·v` is integrated from `t_min` to `t_max`, and
//! `log p_{t_max}` is replaced by the samplers' prior `N(0, (σ² + α² v) I)` at `t_max`
//! ([`crate::sampler::SamplerConfig::prior`]).
//!
//! **The divergence.** `tr ∇_x s` is either
//! - exact, from a score that can give it ([`ScoreDivergence`]; a Gaussian mixture's exact
//!   noised score implements it in closed form), or by central differences of any score
//!   along the `d` coordinate axes ([`FiniteDifference`]: `2d` extra score rows per point,
//!   an `O(h²)` error — for small `d`);
//! - or Hutchinson's estimator (Hutchinson 1989; Grathwohl et al. 2019, FFJORD)
//!   `tr J = E[zᵀ J z]` for probes with `E[z zᵀ] = I` (Rademacher or Gaussian, [`Probe`]),
//!   the Jacobian–vector products `J z ≈ [s(x + h z) − s(x − h z)]/(2h)` by central finite
//!   differences of the score (`2K` extra score rows per point for `K` probes). The probes are
//!   drawn once per point and kept fixed along the trajectory (as FFJORD does), so each probe
//!   gives an unbiased estimate `ℓ_k` of the whole integral (the trajectory `x_t` itself does
//!   not depend on the probes); the estimate is their mean, its standard error their standard
//!   deviation over `√K`.
//!
//! **The solver** is Dormand & Prince's (1980) embedded 5(4) pair with local extrapolation
//! (the fifth-order solution is kept), FSAL, Hairer et al.'s starting step and the usual
//! step-size controller `h ← h · min(10, max(0.2, 0.9 err^{−1/5}))`; the error of a step is
//! the root-mean-square over a point's components of `e_i / (tol (1 + max(|y_i|, |y_i'|)))`
//! (absolute and relative tolerance both `tol`), maximised over the points of the batch (the
//! batch shares its steps, so every point gets at least the accuracy asked for). Each
//! accepted step thus has a local error below `tol (1 + |y|)` per component; the global error
//! is at most about `steps × tol × (1 + |y|)` (the errors add up along the trajectory).
//!
//! **The truncation at `t_min`.** The ODE gives `log p_{t_min}(x)`, not `log p₀(x)`: for a
//! smooth `p₀` they differ by `O(σ_{t_min}²)` (the noised density is `p₀` convolved with
//! `N(0, σ²)` and rescaled by `α`), e.g. `σ² = 2.5·10⁻¹⁰` at the default `t_min = 10⁻⁵` of the
//! cosine schedule (Song et al. use `ε = 10⁻⁵` too). And the prior is not exactly `p_{t_max}`:
//! the tests measure both gaps in closed form for mixtures.
//!
//! **Units.** Nats; bits per dimension are `−log p / (d ln 2)` (continuous data, not
//! dequantised, so they can be negative).
//!
//! # Examples
//! ```
//! use tsm_core::likelihood::{LikelihoodConfig, ScoreDivergence};
//! use tsm_core::sampler::NoisedScore;
//! use tsm_core::schedule::{Cosine, Schedule};
//! use tsm_core::target::Dim;
//!
//! /// p₀ = N(0, 1) is invariant under the cosine schedule: s(x, t) = −x, tr ∇s = −1.
//! struct StdNormal;
//! impl Dim for StdNormal {
//!     fn dim(&self) -> usize { 1 }
//! }
//! impl NoisedScore for StdNormal {
//!     fn noised_score(&mut self, x: &[f64], _t: f64, out: &mut [f64]) -> tsm_core::Result<()> {
//!         for (o, x) in out.iter_mut().zip(x) { *o = -x; }
//!         Ok(())
//!     }
//! }
//! impl ScoreDivergence for StdNormal {
//!     fn score_divergence(&mut self, x: &[f64], t: f64, out: &mut [f64], div: &mut [f64])
//!         -> tsm_core::Result<()> {
//!         div.fill(-1.0);
//!         self.noised_score(x, t, out)
//!     }
//! }
//!
//! let run = LikelihoodConfig::default().exact(&mut StdNormal, &Cosine, &[0.5])?;
//! let want = -0.5 * (2.0 * std::f64::consts::PI).ln() - 0.125;
//! assert!((run.points[0].log_p - want).abs() < 1e-6);
//! # Ok::<(), tsm_core::Error>(())
//! ```
//!
//! # References
//! [^1]: Song et al. (2021), *Score-based generative modeling through stochastic differential
//!       equations*, eq. 13 and App. D.2 (eq. 39).
//! [^2]: Hutchinson (1989), *A stochastic estimator of the trace of the influence matrix for
//!       Laplacian smoothing splines*.
//! [^3]: Grathwohl et al. (2019), *FFJORD: free-form continuous dynamics for scalable
//!       reversible generative models*, §3.1.
//! [^4]: Dormand & Prince (1980), *A family of embedded Runge–Kutta formulae*.
//! [^5]: Hairer, Nørsett & Wanner (1993), *Solving ordinary differential equations I*, §II.4.

use rand::Rng;
use rand_distr::StandardNormal;

use crate::sampler::NoisedScore;
use crate::schedule::Schedule;
use crate::target::Dim;
use crate::{Error, Result};

/// A [`NoisedScore`] that also gives the trace of its Jacobian, `tr ∇_x s(x, t)`, which the
/// exact likelihood needs.
pub trait ScoreDivergence: NoisedScore {
    /// Writes `s(xᵢ, t)` into row `i` of `out` (`[n, d]`) and `tr ∇_x s(xᵢ, t)` into `div[i]`
    /// (`[n]`), for every row `xᵢ` of `x` (`[n, d]`).
    ///
    /// # Errors
    /// As [`NoisedScore::noised_score`]; [`Error::DimMismatch`] for buffers of the wrong
    /// length.
    fn score_divergence(
        &mut self,
        x: &[f64],
        t: f64,
        out: &mut [f64],
        div: &mut [f64],
    ) -> Result<()>;
}

/// Any [`NoisedScore`] with its divergence by central differences along the coordinate axes:
/// `tr ∇s(x) ≈ Σ_j [s_j(x + h e_j) − s_j(x − h e_j)]/(2h)`, error `O(h²)`; `1 + 2d` score rows
/// per point, evaluated in one batch. For small `d`.
///
/// The step `h` trades the `O(h²)` truncation against rounding `≈ ε_mach |s|/h`: `10⁻⁴` suits
/// an `f64` score, `10⁻²` an `f32` network.
#[derive(Debug, Clone)]
pub struct FiniteDifference<S> {
    /// The score.
    pub score: S,
    /// The step `h` (finite, positive).
    pub step: f64,
    rows: Vec<f64>,
    scores: Vec<f64>,
}

impl<S> FiniteDifference<S> {
    /// Wraps `score` with the step `h`.
    ///
    /// # Errors
    /// [`Error::NonPositive`] for a step that is not finite and positive.
    pub fn new(score: S, step: f64) -> Result<Self> {
        crate::error::positive("fd_step", step)?;
        Ok(Self {
            score,
            step,
            rows: Vec::new(),
            scores: Vec::new(),
        })
    }
}

impl<S: Dim> Dim for FiniteDifference<S> {
    fn dim(&self) -> usize {
        self.score.dim()
    }
}

impl<S: NoisedScore> NoisedScore for FiniteDifference<S> {
    fn noised_score(&mut self, x: &[f64], t: f64, out: &mut [f64]) -> Result<()> {
        self.score.noised_score(x, t, out)
    }
}

impl<S: NoisedScore> ScoreDivergence for FiniteDifference<S> {
    fn score_divergence(
        &mut self,
        x: &[f64],
        t: f64,
        out: &mut [f64],
        div: &mut [f64],
    ) -> Result<()> {
        let d = self.score.dim();
        let n = check_rows(d, x)?;
        crate::target::check_dim(x.len(), out.len(), "FiniteDifference: out")?;
        crate::target::check_dim(n, div.len(), "FiniteDifference: div")?;
        let h = self.step;
        // Rows: the n points, then for each point and axis j the pair x ± h e_j.
        let total = n * (1 + 2 * d) * d;
        self.rows.clear();
        self.rows.reserve(total);
        self.rows.extend_from_slice(x);
        for xi in x.chunks_exact(d) {
            for j in 0..d {
                for sign in [1.0, -1.0] {
                    let start = self.rows.len();
                    self.rows.extend_from_slice(xi);
                    self.rows[start + j] += sign * h;
                }
            }
        }
        self.scores.resize(total, 0.0);
        self.score.noised_score(&self.rows, t, &mut self.scores)?;
        out.copy_from_slice(&self.scores[..n * d]);
        let pairs = &self.scores[n * d..];
        for (i, di) in div.iter_mut().enumerate() {
            let mut tr = 0.0;
            for j in 0..d {
                let plus = &pairs[((i * d + j) * 2) * d..][..d];
                let minus = &pairs[((i * d + j) * 2 + 1) * d..][..d];
                tr += (plus[j] - minus[j]) / (2.0 * h);
            }
            *di = tr;
        }
        Ok(())
    }
}

/// The distribution of Hutchinson's probes `z` (both have `E[z zᵀ] = I`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Probe {
    /// `zⱼ = ±1` with probability ½ each: the smallest variance, `2 Σ_{i≠j} J_ij²`-ish
    /// (`Var = 2‖J‖_F² − 2 Σ J_ii²` for symmetric `J`).
    #[default]
    Rademacher,
    /// `z ~ N(0, I)`: `Var = 2‖J‖_F²` for symmetric `J`.
    Gaussian,
}

crate::unit_choice!(Probe, "probe", [Rademacher => "rademacher", Gaussian => "gaussian"]);

/// How the divergence is computed: `exact` (a [`ScoreDivergence`], e.g. [`FiniteDifference`]
/// for a network) or `hutchinson` (probes and finite-difference JVPs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Estimator {
    /// The exact trace (or its central-difference approximation).
    #[default]
    Exact,
    /// Hutchinson's stochastic trace estimator.
    Hutchinson,
}

crate::unit_choice!(Estimator, "divergence estimator", [
    Exact => "exact",
    Hutchinson => "hutchinson",
]);

/// Hutchinson's probes for one run: `K` per point, fixed along the trajectory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hutchinson {
    /// Probes per point `K ≥ 1` (a standard error needs `K ≥ 2`).
    pub probes: usize,
    /// Their distribution.
    pub probe: Probe,
    /// The finite-difference step `h` of the JVPs `[s(x + h z) − s(x − h z)]/(2h)`.
    pub fd_step: f64,
}

/// The settings of a likelihood computation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LikelihoodConfig {
    /// Where the ODE starts, at the data (`10⁻⁵`; see the module docs on the truncation).
    pub t_min: f64,
    /// Where it ends, at the prior (`1 − 10⁻³`, the samplers' `t_max`).
    pub t_max: f64,
    /// Data variance per dimension `v` of the prior `N(0, (σ² + α² v) I)` (1).
    pub data_variance: f64,
    /// The solver's absolute and relative tolerance (`10⁻⁶`).
    pub tol: f64,
    /// The most steps (accepted and rejected) before giving up (`100 000`).
    pub max_steps: usize,
}

impl Default for LikelihoodConfig {
    fn default() -> Self {
        Self {
            t_min: 1e-5,
            t_max: 1.0 - 1e-3,
            data_variance: 1.0,
            tol: 1e-6,
            max_steps: 100_000,
        }
    }
}

/// One point's log-likelihood.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointLikelihood {
    /// `log p_{t_min}(x)` in nats (the mean over the probes for Hutchinson).
    pub log_p: f64,
    /// Hutchinson's standard error of `log_p` over the probes (`None` for the exact
    /// divergence or a single probe).
    pub std_error: Option<f64>,
    /// The prior's `log N(x_{t_max}; 0, (σ² + α² v) I)`.
    pub prior_log_p: f64,
    /// `∫ ∇·v dt` along the trajectory (`log_p − prior_log_p`).
    pub divergence_integral: f64,
}

impl PointLikelihood {
    /// Bits per dimension, `−log p / (d ln 2)`.
    pub fn bits_per_dim(&self, d: usize) -> f64 {
        -self.log_p / (d as f64 * std::f64::consts::LN_2)
    }
}

/// The solver's work on one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SolverStats {
    /// Accepted steps.
    pub accepted: usize,
    /// Rejected steps.
    pub rejected: usize,
    /// Right-hand-side evaluations (each one score batch, larger for finite differences).
    pub evaluations: usize,
}

/// The result of a likelihood run over a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct LikelihoodRun {
    /// The dimension `d`.
    pub dim: usize,
    /// One entry per point, in order.
    pub points: Vec<PointLikelihood>,
    /// The solver's work.
    pub stats: SolverStats,
}

impl LikelihoodRun {
    /// The mean `log p` over the points and its standard error `sd/√n` (which holds the
    /// spread of the data and Hutchinson's noise together; `None` for one point).
    pub fn mean_log_p(&self) -> (f64, Option<f64>) {
        mean_se(self.points.iter().map(|p| p.log_p))
    }

    /// The mean bits per dimension and its standard error.
    pub fn bits_per_dim(&self) -> (f64, Option<f64>) {
        let scale = self.dim as f64 * std::f64::consts::LN_2;
        let (m, se) = self.mean_log_p();
        (-m / scale, se.map(|s| s / scale))
    }
}

/// The mean of `values` and its standard error (`None` below two values).
fn mean_se(values: impl Iterator<Item = f64> + Clone) -> (f64, Option<f64>) {
    let n = values.clone().count();
    let mean = values.clone().sum::<f64>() / n.max(1) as f64;
    if n < 2 {
        return (mean, None);
    }
    let var = values.map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, Some((var / n as f64).sqrt()))
}

impl LikelihoodConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::NonPositive`] for a tolerance that is not finite and positive;
    /// [`Error::InvalidTimeRange`] unless `0 ≤ t_min < t_max ≤ 1`; [`Error::OutOfRange`] for
    /// a negative or non-finite data variance or `max_steps = 0`.
    pub fn validate(&self) -> Result<()> {
        crate::error::positive("tol", self.tol)?;
        if !(0.0 <= self.t_min && self.t_min < self.t_max && self.t_max <= 1.0) {
            return Err(Error::InvalidTimeRange {
                t_min: self.t_min,
                t_max: self.t_max,
            });
        }
        if !(self.data_variance.is_finite() && self.data_variance >= 0.0) {
            return Err(Error::OutOfRange {
                name: "data_variance",
                value: self.data_variance,
                allowed: "[0, ∞)",
            });
        }
        if self.max_steps == 0 {
            return Err(Error::OutOfRange {
                name: "max_steps",
                value: 0.0,
                allowed: "[1, ∞)",
            });
        }
        Ok(())
    }

    /// `log p_{t_min}(xᵢ)` for every row of `x` (`[n, d]`) with the exact divergence of
    /// `score` (or its [`FiniteDifference`] approximation).
    ///
    /// # Errors
    /// As [`LikelihoodConfig::validate`]; [`Error::DimMismatch`] if `x.len()` is not a
    /// multiple of `d ≥ 1`; [`Error::NonFinite`] for a non-finite point or an ODE state that
    /// became non-finite, or non-finite `f_t`, `g_t²` on `[t_min, t_max]`;
    /// [`Error::OutOfRange`] if the solver needs more than `max_steps` steps or its step
    /// underflows; whatever the score reports.
    pub fn exact<S>(
        &self,
        score: &mut S,
        schedule: &(impl Schedule + ?Sized),
        x: &[f64],
    ) -> Result<LikelihoodRun>
    where
        S: ScoreDivergence + ?Sized,
    {
        self.validate()?;
        let d = score.dim();
        let n = check_points(d, x)?;
        let (mut s, mut div) = (vec![0.0; n * d], vec![0.0; n]);
        let rhs = |t: f64, y: &[f64], dy: &mut [f64]| -> Result<()> {
            let (f, g2) = coefficients(schedule, t)?;
            let x = &y[..n * d];
            score.score_divergence(x, t, &mut s, &mut div)?;
            let (dx, dl) = dy.split_at_mut(n * d);
            velocity(f, g2, x, &s, dx);
            for (o, tr) in dl.iter_mut().zip(&div) {
                *o = d as f64 * f - 0.5 * g2 * tr;
            }
            Ok(())
        };
        self.solve(schedule, x, d, 1, rhs)
    }

    /// `log p_{t_min}(xᵢ)` for every row of `x` (`[n, d]`) with Hutchinson's estimator of the
    /// divergence: `K` probes per point drawn from `rng` (in row order), fixed along the
    /// trajectory, JVPs by central differences of the score.
    ///
    /// # Errors
    /// As [`LikelihoodConfig::exact`]; [`Error::OutOfRange`] for `probes = 0`;
    /// [`Error::NonPositive`] for a bad `fd_step`.
    pub fn hutchinson<S, R>(
        &self,
        score: &mut S,
        schedule: &(impl Schedule + ?Sized),
        x: &[f64],
        probes: &Hutchinson,
        rng: &mut R,
    ) -> Result<LikelihoodRun>
    where
        S: NoisedScore + ?Sized,
        R: Rng + ?Sized,
    {
        self.validate()?;
        check_probes(probes)?;
        let d = score.dim();
        let n = check_points(d, x)?;
        let k = probes.probes;
        let z = draw_probes(n * k * d, probes.probe, rng);
        let mut jvp = Jvp::new(n, k, d, probes.fd_step);
        let rhs = |t: f64, y: &[f64], dy: &mut [f64]| -> Result<()> {
            let (f, g2) = coefficients(schedule, t)?;
            let x = &y[..n * d];
            let (dx, dl) = dy.split_at_mut(n * d);
            jvp.eval(score, x, t, &z, dl)?;
            velocity(f, g2, x, jvp.score(n * d), dx);
            for o in dl.iter_mut() {
                // dl holds zᵀ J z on entry.
                *o = d as f64 * f - 0.5 * g2 * *o;
            }
            Ok(())
        };
        self.solve(schedule, x, d, k, rhs)
    }

    /// Integrates the state `(x, ℓ₁ … ℓ_K)` of every point from `t_min` to `t_max` and adds
    /// the prior's log density.
    fn solve(
        &self,
        schedule: &(impl Schedule + ?Sized),
        x: &[f64],
        d: usize,
        k: usize,
        rhs: impl FnMut(f64, &[f64], &mut [f64]) -> Result<()>,
    ) -> Result<LikelihoodRun> {
        let n = x.len() / d;
        let mut y = x.to_vec();
        y.resize(n * d + n * k, 0.0);
        let layout = Layout { n, d, k };
        let stats = dormand_prince(rhs, &mut y, self.t_min, self.t_max, self, &layout)?;
        let t = self.t_max;
        let (a, s) = (schedule.alpha(t), schedule.sigma(t));
        let var = s * s + a * a * self.data_variance;
        let (xs, ls) = y.split_at(n * d);
        let points = xs
            .chunks_exact(d)
            .zip(ls.chunks_exact(k))
            .map(|(xt, l)| {
                let sq: f64 = xt.iter().map(|v| v * v).sum();
                let prior = -0.5 * d as f64 * (std::f64::consts::TAU * var).ln() - 0.5 * sq / var;
                let (integral, se) = mean_se(l.iter().copied());
                PointLikelihood {
                    log_p: prior + integral,
                    std_error: se,
                    prior_log_p: prior,
                    divergence_integral: integral,
                }
            })
            .collect::<Vec<_>>();
        if let Some(p) = points.iter().find(|p| !p.log_p.is_finite()) {
            return Err(Error::NonFinite {
                op: "the log-likelihood (the prior's variance at t_max is 0?)",
                value: p.log_p,
            });
        }
        Ok(LikelihoodRun {
            dim: d,
            points,
            stats,
        })
    }
}

/// Hutchinson's estimate of `tr ∇_x s(xᵢ, t)` at every row of `x` (`[n, d]`): for each point
/// the mean of `zᵀ J z` over `K` probes (JVPs by central differences) and its standard error
/// (`None` for `K = 1`).
///
/// # Errors
/// [`Error::DimMismatch`], [`Error::NonFinite`] for bad points; [`Error::OutOfRange`] for
/// `probes = 0`; [`Error::NonPositive`] for a bad `fd_step`; whatever the score reports.
pub fn hutchinson_trace<S, R>(
    score: &mut S,
    x: &[f64],
    t: f64,
    probes: &Hutchinson,
    rng: &mut R,
) -> Result<Vec<(f64, Option<f64>)>>
where
    S: NoisedScore + ?Sized,
    R: Rng + ?Sized,
{
    check_probes(probes)?;
    let d = score.dim();
    let n = check_points(d, x)?;
    let k = probes.probes;
    let z = draw_probes(n * k * d, probes.probe, rng);
    let mut jvp = Jvp::new(n, k, d, probes.fd_step);
    let mut quad = vec![0.0; n * k];
    jvp.eval(score, x, t, &z, &mut quad)?;
    Ok(quad
        .chunks_exact(k)
        .map(|q| mean_se(q.iter().copied()))
        .collect())
}

/// The score at the points and the quadratic forms `z_kᵀ J z_k` by central differences, in
/// one batch of `n (1 + 2K)` rows.
struct Jvp {
    n: usize,
    k: usize,
    d: usize,
    h: f64,
    rows: Vec<f64>,
    scores: Vec<f64>,
}

impl Jvp {
    fn new(n: usize, k: usize, d: usize, h: f64) -> Self {
        let total = n * (1 + 2 * k) * d;
        Self {
            n,
            k,
            d,
            h,
            rows: vec![0.0; total],
            scores: vec![0.0; total],
        }
    }

    /// The score rows of the points (after [`Jvp::eval`]).
    fn score(&self, len: usize) -> &[f64] {
        &self.scores[..len]
    }

    /// Evaluates; `quad[i K + k] = z_{ik}ᵀ J(xᵢ) z_{ik}` (the score rows at the points stay
    /// in `self`, [`Jvp::score`]).
    fn eval<S: NoisedScore + ?Sized>(
        &mut self,
        score: &mut S,
        x: &[f64],
        t: f64,
        z: &[f64],
        quad: &mut [f64],
    ) -> Result<()> {
        let (n, k, d, h) = (self.n, self.k, self.d, self.h);
        self.rows[..n * d].copy_from_slice(x);
        for i in 0..n {
            for p in 0..k {
                let zp = &z[(i * k + p) * d..][..d];
                for (sign, slot) in [(1.0, 0), (-1.0, 1)] {
                    let start = n * d + ((i * k + p) * 2 + slot) * d;
                    for j in 0..d {
                        self.rows[start + j] = x[i * d + j] + sign * h * zp[j];
                    }
                }
            }
        }
        score.noised_score(&self.rows, t, &mut self.scores)?;
        for i in 0..n {
            for p in 0..k {
                let zp = &z[(i * k + p) * d..][..d];
                let plus = &self.scores[n * d + ((i * k + p) * 2) * d..][..d];
                let minus = &self.scores[n * d + ((i * k + p) * 2 + 1) * d..][..d];
                quad[i * k + p] = zp
                    .iter()
                    .zip(plus.iter().zip(minus))
                    .map(|(zj, (a, b))| zj * (a - b))
                    .sum::<f64>()
                    / (2.0 * h);
            }
        }
        Ok(())
    }
}

fn draw_probes<R: Rng + ?Sized>(len: usize, probe: Probe, rng: &mut R) -> Vec<f64> {
    (0..len)
        .map(|_| match probe {
            Probe::Rademacher => {
                if rng.random::<bool>() {
                    1.0
                } else {
                    -1.0
                }
            }
            Probe::Gaussian => rng.sample(StandardNormal),
        })
        .collect()
}

fn check_probes(probes: &Hutchinson) -> Result<()> {
    crate::error::positive("fd_step", probes.fd_step)?;
    if probes.probes == 0 {
        return Err(Error::OutOfRange {
            name: "probes",
            value: 0.0,
            allowed: "[1, ∞)",
        });
    }
    Ok(())
}

/// The probability-flow velocity `v = f_t x − ½ g_t² s` (Song et al. 2021, eq. 13).
fn velocity(f: f64, g2: f64, x: &[f64], s: &[f64], out: &mut [f64]) {
    for ((o, xi), si) in out.iter_mut().zip(x).zip(s) {
        *o = f * xi - 0.5 * g2 * si;
    }
}

/// `(f_t, g_t²)`, finite.
fn coefficients(schedule: &(impl Schedule + ?Sized), t: f64) -> Result<(f64, f64)> {
    let (f, g2) = (schedule.drift(t), schedule.diffusion_sq(t));
    if !f.is_finite() {
        return Err(Error::NonFinite {
            op: "the forward SDE's drift f_t on [t_min, t_max]",
            value: f,
        });
    }
    if !g2.is_finite() {
        return Err(Error::NonFinite {
            op: "the forward SDE's diffusion g_t² on [t_min, t_max]",
            value: g2,
        });
    }
    Ok((f, g2))
}

/// The number of rows of a buffer of `d`-vectors.
fn check_rows(d: usize, x: &[f64]) -> Result<usize> {
    if d == 0 || x.len() % d != 0 {
        return Err(Error::DimMismatch {
            expected: (x.len() / d.max(1) + 1) * d,
            got: x.len(),
            op: "likelihood: the points must be whole rows of the score's dimension d ≥ 1",
        });
    }
    Ok(x.len() / d)
}

/// Whole rows, at least one, all finite.
fn check_points(d: usize, x: &[f64]) -> Result<usize> {
    let n = check_rows(d, x)?;
    if n == 0 {
        return Err(Error::TooFewDraws {
            op: "likelihood",
            needed: 1,
            got: 0,
        });
    }
    if let Some(&value) = x.iter().find(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            op: "likelihood: a data point",
            value,
        });
    }
    Ok(n)
}

/// How the state vector is laid out: `n` points of `d` coordinates, then `n` rows of `k`
/// divergence integrals.
struct Layout {
    n: usize,
    d: usize,
    k: usize,
}

impl Layout {
    /// The step's error: per point, the RMS over its `d + k` components of
    /// `e / (tol (1 + max(|y|, |y'|)))`; the maximum over the points.
    fn error(&self, tol: f64, y: &[f64], y_new: &[f64], e: &[f64]) -> f64 {
        let (n, d, k) = (self.n, self.d, self.k);
        let scaled = |i: usize| {
            let r = e[i] / (tol * (1.0 + y[i].abs().max(y_new[i].abs())));
            r * r
        };
        let mut worst: f64 = 0.0;
        for p in 0..n {
            let mut sum = 0.0;
            for j in 0..d {
                sum += scaled(p * d + j);
            }
            for j in 0..k {
                sum += scaled(n * d + p * k + j);
            }
            worst = worst.max((sum / (d + k) as f64).sqrt());
        }
        worst
    }
}

/// Dormand & Prince's (1980) RK5(4)7M: the nodes, the coupling coefficients, the fifth-order
/// weights (= the last row, FSAL) and the error weights `b − b̂`.
const C: [f64; 7] = [0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];
const A: [[f64; 6]; 7] = [
    [0.0; 6],
    [1.0 / 5.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [3.0 / 40.0, 9.0 / 40.0, 0.0, 0.0, 0.0, 0.0],
    [44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0, 0.0, 0.0, 0.0],
    [
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
        0.0,
        0.0,
    ],
    [
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
        0.0,
    ],
    [
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
];
const E: [f64; 7] = [
    71.0 / 57600.0,
    0.0,
    -71.0 / 16695.0,
    71.0 / 1920.0,
    -17253.0 / 339200.0,
    22.0 / 525.0,
    -1.0 / 40.0,
];

/// Integrates `dy/dt = rhs(t, y)` from `t0` to `t1` in place.
fn dormand_prince(
    mut rhs: impl FnMut(f64, &[f64], &mut [f64]) -> Result<()>,
    y: &mut [f64],
    t0: f64,
    t1: f64,
    cfg: &LikelihoodConfig,
    layout: &Layout,
) -> Result<SolverStats> {
    let m = y.len();
    let tol = cfg.tol;
    let mut stats = SolverStats::default();
    let mut k: Vec<Vec<f64>> = vec![vec![0.0; m]; 7];
    let (mut stage, mut y_new, mut err) = (vec![0.0; m], vec![0.0; m], vec![0.0; m]);
    rhs(t0, y, &mut k[0])?;
    stats.evaluations += 1;
    // Starting step (Hairer, Nørsett & Wanner 1993, §II.4): h₀ = 0.01 ‖y‖/‖f‖, refined by
    // the second derivative's size from one Euler step.
    let norm = |v: &[f64], y: &[f64]| {
        (v.iter()
            .zip(y)
            .map(|(a, b)| (a / (tol * (1.0 + b.abs()))).powi(2))
            .sum::<f64>()
            / m as f64)
            .sqrt()
    };
    let span = t1 - t0;
    let (d0, d1) = (norm(y, y), norm(&k[0], y));
    let mut h = if d0 < 1e-5 || d1 < 1e-5 {
        1e-6
    } else {
        0.01 * d0 / d1
    }
    .min(span);
    for ((s, yi), fi) in stage.iter_mut().zip(y.iter()).zip(&k[0]) {
        *s = yi + h * fi;
    }
    rhs(t0 + h, &stage, &mut k[1])?;
    stats.evaluations += 1;
    let diff: Vec<f64> = k[1].iter().zip(&k[0]).map(|(a, b)| a - b).collect();
    let d2 = norm(&diff, y) / h;
    let h1 = if d1.max(d2) <= 1e-15 {
        (h * 1e-3).max(1e-6)
    } else {
        (0.01 / d1.max(d2)).powf(0.2)
    };
    h = (100.0 * h).min(h1).min(span);

    let mut t = t0;
    let mut rejected_last = false;
    while t < t1 {
        if stats.accepted + stats.rejected >= cfg.max_steps {
            return Err(Error::OutOfRange {
                name: "likelihood ODE steps (max_steps; raise it or the tolerance)",
                value: (stats.accepted + stats.rejected) as f64,
                allowed: "at most max_steps",
            });
        }
        let last = t + h >= t1;
        if last {
            h = t1 - t;
        }
        if h <= 1e-14 * t.abs().max(1.0) {
            return Err(Error::OutOfRange {
                name: "likelihood ODE step size (the score is too rough for the tolerance?)",
                value: h,
                allowed: "above 1e-14 t",
            });
        }
        for i in 1..7 {
            for (j, s) in stage.iter_mut().enumerate() {
                let mut acc = y[j];
                for (a, kk) in A[i][..i].iter().zip(&k[..i]) {
                    acc += h * a * kk[j];
                }
                *s = acc;
            }
            let ti = if i == 6 { t + h } else { t + C[i] * h };
            rhs(ti, &stage, &mut k[i])?;
            stats.evaluations += 1;
            if i == 6 {
                y_new.copy_from_slice(&stage); // the fifth-order solution (FSAL row)
            }
        }
        for (j, e) in err.iter_mut().enumerate() {
            *e = h * E.iter().zip(&k).map(|(c, kk)| c * kk[j]).sum::<f64>();
        }
        let error = layout.error(tol, y, &y_new, &err);
        if !error.is_finite() {
            return Err(Error::NonFinite {
                op: "the likelihood ODE's state",
                value: error,
            });
        }
        if error <= 1.0 {
            t = if last { t1 } else { t + h };
            y.copy_from_slice(&y_new);
            k.swap(0, 6); // FSAL: f(t + h, y_new) is the next step's first stage
            stats.accepted += 1;
            let grow = if error == 0.0 {
                10.0
            } else {
                (0.9 * error.powf(-0.2)).clamp(0.2, 10.0)
            };
            h *= if rejected_last { grow.min(1.0) } else { grow };
            rejected_last = false;
        } else {
            stats.rejected += 1;
            h *= (0.9 * error.powf(-0.2)).clamp(0.2, 1.0);
            rejected_last = true;
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests;
