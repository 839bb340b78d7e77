//! Gray-box simulators for simulation-based inference (SBI), and the Latent Target Score
//! Matching (LTSM) targets built on their joint scores.
//!
//! # The setting
//! Parameters `θ ∈ ℝ^d` are drawn from a prior `p(θ)`; the simulator draws latents
//! `z ~ p(z | θ)` (its internal random choices) and an observation `x ~ p(x | θ, z)`,
//! `x ∈ ℝ^k`. A **gray-box** simulator also returns the joint score `∇_θ log p(θ, z, x)`,
//! which is available whenever the simulator's log-density is, even though the likelihood
//! `p(x | θ) = ∫ p(z, x | θ) dz` is not. The aim is the posterior `p(θ | x)`, learned by a
//! conditional score model `s(θ_t, t, x) ≈ ∇_{θ_t} log p_t(θ_t | x)` that diffuses `θ` only:
//! `θ_t = α_t θ₀ + σ_t ε`.
//!
//! [`Simulator`] is the trait a user implements for their own model; [`JointLogDensity`]
//! adds the joint log-density where it is known, which lets
//! [`finite_difference_joint_score`] check a hand-written joint score.
//!
//! # Regression targets (Ko & Geffner, 2024)
//! At a draw `(θ₀, z, x) ~ p(θ) p(z|θ) p(x|θ, z)`, `ε ~ N(0, I)`, `θ_t = α_t θ₀ + σ_t ε`:
//!
//! | target | formula | as a [`ScoreIdentity`] (joint score in place of `∇log p₀`) |
//! |---|---|---|
//! | DSM, `A` | `−(θ_t − α_t θ₀)/σ_t² = −ε/σ_t` | [`ScoreIdentity::Dsi`]: `a = 1/σ_t²`, `b = 0` |
//! | LTSM, `B` | `α_t⁻¹ ∇_θ log p(θ₀, z, x)` (Prop. 3.1) | [`ScoreIdentity::Tsi`]: `a = 0`, `b = 1/α_t` |
//! | MIX | `w_t A + (1 − w_t) B` | [`ScoreIdentity::Mixture`] `{ weight: w_t }` |
//! | MIX at `w_t*` | `w_t* = F σ_t²/(F σ_t² + d α_t²)` (Prop. 3.2) | [`ScoreIdentity::kappa`]`(d/F)` |
//!
//! so every target is [`Coefficients::apply_into`](crate::identity::Coefficients::apply_into)
//! `(θ₀, θ_t, joint_score, out)` with the identity's coefficients, exactly as TSM's targets
//! are with `∇log p₀(θ₀)`. Each has conditional mean `∇log p_t(θ_t | x)`: for `B` because
//! `E[∇_θ log p(z | θ, x) | θ, x] = 0`, so `E[B | θ_t, x] = α_t⁻¹ E[∇log p(θ₀ | x) | θ_t, x]`,
//! the target score identity (De Bortoli et al., 2024, eq. 8) for the posterior.
//!
//! **The optimal weight is `κ_t`.** Both targets have the same conditional mean, so the MIX
//! target's second moment `E‖w A + (1 − w) B‖²` is minimised by
//! `w_t* = E⟨B, B − A⟩ / E‖A − B‖²`; `ε` is independent of `(θ₀, z, x)` and `E ε = 0`, so
//! `E⟨A, B⟩ = 0`, `E‖A‖² = d/σ_t²`, `E‖B‖² = F/α_t²` with
//! `F = E‖∇_θ log p(θ, z, x)‖²`, and
//! `w_t* = (F/α_t²)/(d/σ_t² + F/α_t²) = F σ_t²/(F σ_t² + d α_t²) = σ_t²/(σ_t² + α_t² · d/F)`:
//! De Bortoli et al.'s `κ_t` with `σ_data² = d/F` ([`LatentMix`]). For `N(0, v I)` data without
//! latents `F = d/v`, and the two coincide.
//!
//! **Time range.** `E‖B‖² = F/α_t²` diverges as `α_t → 0` (`t → 1` for the cosine and VP
//! schedules) like `1/(1 − t)²`, so `∫ λ_t E‖B‖² dt` is infinite for any weighting with
//! `λ_1 > 0`: pure LTSM needs `t ≤ t_max < 1` — the trimmed range `[10⁻³, 1 − 10⁻³]` of every
//! loss here, where `E‖B‖² ≤ 4.1·10⁵ F` — or a weighting `λ_t = O(α_t²)`. DSM diverges the
//! other way (`d/σ_t²` as `t → 0`). MIX at `w_t*` is finite on all of `[0, 1]`:
//! `E‖y*‖² = 1/(α_t²/F + σ_t²/d)`, from `F` at `t = 0` to `d` at `t = 1`
//! ([`LatentMix::second_moments`]).
//!
//! # Example: a user's simulator
//! ```
//! use tsm_core::rand::Rng;
//! use tsm_core::rng::{normal, stream};
//! use tsm_core::schedule::Cosine;
//! use tsm_core::simulator::{
//!     estimate_optimal_weight, estimate_score_constant, finite_difference_joint_score,
//!     JointLogDensity, LatentMix, Simulator,
//! };
//! use tsm_core::target::Dim;
//!
//! /// θ ~ N(0, 1), z ~ N(θ, 1), x ~ N(z, 1): one parameter, one latent, one observation.
//! struct Chain;
//!
//! impl Dim for Chain {
//!     fn dim(&self) -> usize { 1 }
//! }
//!
//! impl Simulator for Chain {
//!     type Latent = f64; // z
//!     fn observation_dim(&self) -> usize { 1 }
//!     fn new_latent(&self) -> f64 { 0.0 }
//!     fn sample_prior<R: Rng + ?Sized>(&self, rng: &mut R, theta: &mut [f64]) {
//!         theta[0] = normal::sample(rng);
//!     }
//!     fn simulate_from<R: Rng + ?Sized>(
//!         &self, rng: &mut R, theta: &[f64], z: &mut f64, x: &mut [f64],
//!     ) {
//!         *z = theta[0] + normal::sample(rng);
//!         x[0] = *z + normal::sample(rng);
//!     }
//!     // ∇_θ [log N(θ; 0, 1) + log N(z; θ, 1) + log N(x; z, 1)] = −θ + (z − θ).
//!     fn joint_score(&self, theta: &[f64], z: &f64, _x: &[f64], out: &mut [f64]) {
//!         out[0] = -theta[0] + (z - theta[0]);
//!     }
//! }
//!
//! impl JointLogDensity for Chain {
//!     fn joint_log_density(&self, theta: &[f64], z: &f64, x: &[f64]) -> f64 {
//!         -0.5 * (theta[0].powi(2) + (z - theta[0]).powi(2) + (x[0] - z).powi(2))
//!     }
//! }
//!
//! // Check the hand-written joint score against central differences of the log-density.
//! let mut fd = [0.0];
//! finite_difference_joint_score(&Chain, &[0.3], &0.8, &[1.1], 1e-5, &mut fd);
//! let mut exact = [0.0];
//! Chain.joint_score(&[0.3], &0.8, &[1.1], &mut exact);
//! assert!((fd[0] - exact[0]).abs() < 1e-8);
//!
//! // A training set: (θ, x, joint score) for 10,000 simulations, row-major.
//! let n = 10_000;
//! let (mut theta, mut x, mut score) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
//! Chain.simulate_batch(&mut stream(7, 0), &mut theta, &mut x, &mut score)?;
//!
//! // F = E‖∇_θ log p(θ, z, x)‖² = Var(−θ) + Var(z − θ) = 2, and w_t* from it.
//! let f = estimate_score_constant(&score, 1)?;
//! assert!((f.value - 2.0).abs() < 5.0 * f.std_err);
//! let mix = LatentMix::new(1, 2.0)?;
//! let w = estimate_optimal_weight(&score, 1, &Cosine, 0.5, &mut stream(7, 1))?;
//! assert!((w.value - mix.optimal_weight(&Cosine, 0.5)?).abs() < 5.0 * w.std_err);
//! # Ok::<(), tsm_core::Error>(())
//! ```
//!
//! # References
//! [^1]: Ko & Geffner (2024), *Latent Target Score Matching, with an application to
//!   Simulation-Based Inference*, Prop. 3.1 (the latent target score identity), Prop. 3.2 (the
//!   optimal mixture weight).
//! [^2]: De Bortoli et al. (2024), *Target Score Matching*, eq. 8 (TSI), App. C (`κ_t`).

use rand::Rng;

use crate::error::positive;
use crate::identity::ScoreIdentity;
use crate::rng::normal;
use crate::schedule::Schedule;
use crate::target::Dim;
use crate::{Error, Result};

/// A gray-box simulator: a prior over `θ ∈ ℝ^d`, a simulation `(z, x) ~ p(z, x | θ)` and the
/// joint score `∇_θ log p(θ, z, x)` (see the [module docs](self) for a complete example).
///
/// [`Dim::dim`] is `θ`'s dimension `d`; [`Simulator::observation_dim`] is `x`'s, `k`.
///
/// # The latents stay inside the record
/// LTSM's target needs only the joint score, so the latents `z` are an opaque
/// [`Simulator::Latent`] that the simulator writes and reads back: a fixed array, a vector
/// whose length varies from run to run (cleared and refilled, so its allocation is reused), or
/// a whole execution trace. Training code never looks inside it; it exists so that the joint
/// score (and log-density) can be evaluated at a `z` the simulator did not just produce — in
/// tests, or at posterior draws of `(θ₀, z)`.
///
/// # Contract
/// The slice methods are the hot path and take lengths on trust (`theta.len() == dim`,
/// `x.len() == observation_dim`, checked in debug builds); validate an observation from
/// outside once with [`Simulator::check_observation`]. [`Simulator::simulate_batch`] checks
/// its buffers itself.
pub trait Simulator: Dim {
    /// The simulator's latents `z` (its internal random choices), opaque to callers.
    type Latent: Clone + std::fmt::Debug;

    /// The dimension `k` of an observation `x`.
    fn observation_dim(&self) -> usize;

    /// A latent record to simulate into (reused across simulations).
    fn new_latent(&self) -> Self::Latent;

    /// Writes a prior draw `θ ~ p(θ)` into `theta` (`d` values).
    fn sample_prior<R: Rng + ?Sized>(&self, rng: &mut R, theta: &mut [f64]);

    /// Simulates at a given `θ`: `z ~ p(z | θ)` into `z` and `x ~ p(x | θ, z)` into `x`.
    fn simulate_from<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        theta: &[f64],
        z: &mut Self::Latent,
        x: &mut [f64],
    );

    /// Writes the joint score `∇_θ log p(θ, z, x)` into `out` (`d` values).
    ///
    /// Defined wherever `p(θ, z, x) > 0`; at a simulated `(θ, z, x)` it is finite.
    fn joint_score(&self, theta: &[f64], z: &Self::Latent, x: &[f64], out: &mut [f64]);

    /// Checks an observation given from outside (a file, a command line): its length is
    /// `observation_dim` and its values are finite. Simulators with a discrete or bounded
    /// observation space override it to check those constraints too.
    ///
    /// # Errors
    /// [`Error::DimMismatch`] for a wrong length, [`Error::NonFinite`] for a NaN or infinity.
    fn check_observation(&self, x: &[f64]) -> Result<()> {
        crate::target::check_dim(self.observation_dim(), x.len(), "observation")?;
        match x.iter().find(|v| !v.is_finite()) {
            Some(&value) => Err(Error::NonFinite {
                op: "observation",
                value,
            }),
            None => Ok(()),
        }
    }

    /// One complete simulation: `θ ~ p(θ)`, `(z, x) ~ p(z, x | θ)` and the joint score.
    fn simulate<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        theta: &mut [f64],
        z: &mut Self::Latent,
        x: &mut [f64],
        joint_score: &mut [f64],
    ) {
        self.sample_prior(rng, theta);
        self.simulate_from(rng, theta, z, x);
        self.joint_score(theta, z, x, joint_score);
    }

    /// `n` simulations into row-major buffers: `theta` `[n, d]`, `x` `[n, k]`, `joint_score`
    /// `[n, d]`, with one latent record reused throughout (no allocation per draw).
    /// Returns `n`.
    ///
    /// # Errors
    /// [`Error::DimMismatch`] when `theta` is not a whole number of rows or the other buffers
    /// do not have `n` rows.
    fn simulate_batch<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        theta: &mut [f64],
        x: &mut [f64],
        joint_score: &mut [f64],
    ) -> Result<usize> {
        let (d, k) = (self.dim(), self.observation_dim());
        if d == 0 || theta.len() % d != 0 {
            return Err(Error::DimMismatch {
                expected: d * (theta.len() / d.max(1) + 1),
                got: theta.len(),
                op: "simulate_batch theta (a multiple of dim)",
            });
        }
        let n = theta.len() / d;
        crate::target::check_dim(
            n * k,
            x.len(),
            "simulate_batch x (n rows of observation_dim)",
        )?;
        crate::target::check_dim(n * d, joint_score.len(), "simulate_batch joint_score")?;
        let mut z = self.new_latent();
        for i in 0..n {
            self.simulate(
                rng,
                &mut theta[i * d..(i + 1) * d],
                &mut z,
                &mut x[i * k..(i + 1) * k],
                &mut joint_score[i * d..(i + 1) * d],
            );
        }
        Ok(n)
    }
}

/// A [`Simulator`] whose joint log-density `log p(θ, z, x)` is known, up to an additive
/// constant independent of `(θ, z, x)`: for tests of the joint score and for exact reference
/// computations.
pub trait JointLogDensity: Simulator {
    /// `log p(θ) + log p(z | θ) + log p(x | θ, z) + C`; `−∞` where the density is zero
    /// (e.g. an `x` that `z` cannot produce).
    fn joint_log_density(&self, theta: &[f64], z: &Self::Latent, x: &[f64]) -> f64;
}

/// Central finite differences of the joint log-density in `θ`:
/// `out[j] = (log p(θ + h e_j, z, x) − log p(θ − h e_j, z, x)) / 2h`, error `O(h²)`.
///
/// For checking a hand-written [`Simulator::joint_score`] (`theta.len() == out.len() == d`).
pub fn finite_difference_joint_score<S: JointLogDensity + ?Sized>(
    simulator: &S,
    theta: &[f64],
    z: &S::Latent,
    x: &[f64],
    h: f64,
    out: &mut [f64],
) {
    let mut shifted = theta.to_vec();
    for (j, o) in out.iter_mut().enumerate() {
        shifted[j] = theta[j] + h;
        let up = simulator.joint_log_density(&shifted, z, x);
        shifted[j] = theta[j] - h;
        let down = simulator.joint_log_density(&shifted, z, x);
        shifted[j] = theta[j];
        *o = (up - down) / (2.0 * h);
    }
}

/// The variance-optimal mixture of the DSM and LTSM targets for a simulator with `d`
/// parameters and joint-score constant `F = E‖∇_θ log p(θ, z, x)‖²` (Ko & Geffner, 2024,
/// Prop. 3.2; derivation in the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatentMix {
    dim: usize,
    score_constant: f64,
}

/// The second moments of the three regression targets at one time (see
/// [`LatentMix::second_moments`]); subtract `J_t = E‖∇log p_t(θ_t | x)‖²` for their
/// variances about the true score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetMoments {
    /// `E‖A‖² = d/σ_t²` (DSM; `+∞` at `σ_t = 0`).
    pub dsm: f64,
    /// `E‖B‖² = F/α_t²` (LTSM; `+∞` at `α_t = 0`).
    pub ltsm: f64,
    /// `E‖w_t* A + (1 − w_t*) B‖² = 1/(α_t²/F + σ_t²/d)` (MIX at `w_t*`; finite on `[0, 1]`).
    pub mix: f64,
}

impl LatentMix {
    /// The mixture for `d = dim` parameters and `F = score_constant`.
    ///
    /// # Errors
    /// [`Error::NonPositive`] for `dim = 0` or an `F` that is not finite and positive.
    pub fn new(dim: usize, score_constant: f64) -> Result<Self> {
        positive("dim", dim as f64)?;
        positive("score_constant", score_constant)?;
        Ok(Self {
            dim,
            score_constant,
        })
    }

    /// `d`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// `F = E‖∇_θ log p(θ, z, x)‖²`.
    pub fn score_constant(&self) -> f64 {
        self.score_constant
    }

    /// The MIX target at `w_t*` as an identity: `κ_t` with `σ_data² = d/F`, whose
    /// coefficients `a = 1/(σ_t² + α_t² d/F)`, `b = α_t (d/F)/(σ_t² + α_t² d/F)` are finite on
    /// all of `[0, 1]`.
    pub fn identity(&self) -> ScoreIdentity {
        ScoreIdentity::kappa(self.dim as f64 / self.score_constant)
    }

    /// `w_t* = F σ_t²/(F σ_t² + d α_t²)`, the weight on the DSM target (Prop. 3.2).
    ///
    /// # Errors
    /// [`Error::TimeOutOfRange`] for `t ∉ [0, 1]`.
    pub fn optimal_weight(&self, schedule: &(impl Schedule + ?Sized), t: f64) -> Result<f64> {
        crate::schedule::check_time(t)?;
        self.identity().dsi_weight(schedule, t)
    }

    /// The targets' second moments at `t` ([`TargetMoments`]).
    ///
    /// # Errors
    /// [`Error::TimeOutOfRange`] for `t ∉ [0, 1]`.
    pub fn second_moments(
        &self,
        schedule: &(impl Schedule + ?Sized),
        t: f64,
    ) -> Result<TargetMoments> {
        crate::schedule::check_time(t)?;
        let (alpha_sq, sigma_sq) = (schedule.alpha(t).powi(2), schedule.sigma_sq(t));
        let (d, f) = (self.dim as f64, self.score_constant);
        let ratio = |num: f64, den: f64| if den == 0.0 { f64::INFINITY } else { num / den };
        Ok(TargetMoments {
            dsm: ratio(d, sigma_sq),
            ltsm: ratio(f, alpha_sq),
            mix: 1.0 / (alpha_sq / f + sigma_sq / d),
        })
    }
}

/// A Monte Carlo estimate and its standard error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// The estimate.
    pub value: f64,
    /// Its standard error.
    pub std_err: f64,
}

/// Checks that `scores` holds at least two rows of `dim` values; returns the row count.
fn score_rows(scores: &[f64], dim: usize, op: &'static str) -> Result<usize> {
    if dim == 0 || scores.len() % dim != 0 {
        return Err(Error::DimMismatch {
            expected: dim * (scores.len() / dim.max(1) + 1),
            got: scores.len(),
            op,
        });
    }
    let n = scores.len() / dim;
    if n < 2 {
        return Err(Error::TooFewDraws {
            op,
            needed: 2,
            got: n,
        });
    }
    Ok(n)
}

/// `F = E‖∇_θ log p(θ, z, x)‖²` estimated from `n` joint scores (row-major `[n, d]`, e.g. from
/// [`Simulator::simulate_batch`]): the sample mean of `‖g_i‖²`, standard error `s/√n` with
/// `s` the sample standard deviation of `‖g_i‖²`.
///
/// # Errors
/// [`Error::DimMismatch`] when `scores` is not a whole number of rows; [`Error::TooFewDraws`]
/// for fewer than 2 rows; [`Error::NonFinite`] for a non-finite score.
pub fn estimate_score_constant(scores: &[f64], dim: usize) -> Result<Estimate> {
    let n = score_rows(scores, dim, "estimate_score_constant")?;
    let (mut sum, mut sum_sq) = (0.0, 0.0);
    for g in scores.chunks_exact(dim) {
        let norm_sq: f64 = g.iter().map(|v| v * v).sum();
        sum += norm_sq;
        sum_sq += norm_sq * norm_sq;
    }
    let nf = n as f64;
    let mean = sum / nf;
    let var = ((sum_sq - nf * mean * mean) / (nf - 1.0)).max(0.0);
    finite_estimate("estimate_score_constant", mean, (var / nf).sqrt())
}

fn finite_estimate(op: &'static str, value: f64, std_err: f64) -> Result<Estimate> {
    for v in [value, std_err] {
        if !v.is_finite() {
            return Err(Error::NonFinite { op, value: v });
        }
    }
    Ok(Estimate { value, std_err })
}

/// The variance-optimal DSM weight at `t` estimated by Monte Carlo (Ko & Geffner, 2024,
/// Prop. 3.2): `ŵ = Σ uᵢ / Σ vᵢ` with `uᵢ = ⟨Bᵢ, Bᵢ − Aᵢ⟩`, `vᵢ = ‖Aᵢ − Bᵢ‖²`,
/// `Bᵢ = gᵢ/α_t` from the joint scores `gᵢ` (row-major `[n, d]`) and `Aᵢ = −εᵢ/σ_t` with a fresh
/// `εᵢ ~ N(0, I)` per row drawn from `rng`.
///
/// The standard error is the delta method's for a ratio of means,
/// `SE(ū/v̄)² ≈ Σ (uᵢ − ŵ vᵢ)² / (n (n − 1) v̄²)`; like the ratio itself it is accurate for
/// large `n` (the ratio has an `O(1/n)` bias, negligible against the `O(1/√n)` error).
/// Compare with the closed form [`LatentMix::optimal_weight`]. The scores may be reused
/// across times (fresh `ε` each call): every per-`t` estimate is then still a Monte Carlo
/// estimate over `(θ₀, z, x, ε)`, only correlated across `t`.
///
/// # Errors
/// [`Error::TimeOutOfRange`] for `t ∉ [0, 1]`; [`Error::UndefinedAt`] at `σ_t = 0` or
/// `α_t = 0` (where one target is infinite; `w_t*` is 0 or 1 there); as
/// [`estimate_score_constant`] for the scores.
pub fn estimate_optimal_weight<R: Rng + ?Sized>(
    scores: &[f64],
    dim: usize,
    schedule: &(impl Schedule + ?Sized),
    t: f64,
    rng: &mut R,
) -> Result<Estimate> {
    let n = score_rows(scores, dim, "estimate_optimal_weight")?;
    let a = ScoreIdentity::Dsi.coefficients(schedule, t)?;
    let b = ScoreIdentity::Tsi.coefficients(schedule, t)?;
    // A = a (α θ₀ − θ_t) = −a σ ε = −ε/σ; B = b g = g/α.
    let scale_a = -a.a * schedule.sigma(t);
    let mut eps = vec![0.0; dim];
    let mut uv = Vec::with_capacity(n);
    let (mut sum_u, mut sum_v) = (0.0, 0.0);
    for g in scores.chunks_exact(dim) {
        normal::fill(rng, &mut eps);
        let (mut u, mut v) = (0.0, 0.0);
        for (&gj, &ej) in g.iter().zip(&eps) {
            let (aj, bj) = (scale_a * ej, b.b * gj);
            u += bj * (bj - aj);
            v += (aj - bj) * (aj - bj);
        }
        sum_u += u;
        sum_v += v;
        uv.push((u, v));
    }
    let w = sum_u / sum_v;
    let nf = n as f64;
    let v_mean = sum_v / nf;
    let resid: f64 = uv.iter().map(|&(u, v)| (u - w * v).powi(2)).sum();
    let std_err = (resid / (nf * (nf - 1.0))).sqrt() / v_mean;
    finite_estimate("estimate_optimal_weight", w, std_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;
    use crate::schedule::Cosine;

    /// θ ~ N(0, I₂), z ~ N(θ, c² I), x = z (no observation noise): F = 2(1 + 1/c²).
    struct Toy {
        c: f64,
    }
    impl Dim for Toy {
        fn dim(&self) -> usize {
            2
        }
    }
    impl Simulator for Toy {
        type Latent = Vec<f64>;
        fn observation_dim(&self) -> usize {
            2
        }
        fn new_latent(&self) -> Vec<f64> {
            Vec::new()
        }
        fn sample_prior<R: Rng + ?Sized>(&self, rng: &mut R, theta: &mut [f64]) {
            normal::fill(rng, theta);
        }
        fn simulate_from<R: Rng + ?Sized>(
            &self,
            rng: &mut R,
            theta: &[f64],
            z: &mut Vec<f64>,
            x: &mut [f64],
        ) {
            z.clear();
            for (xj, &tj) in x.iter_mut().zip(theta) {
                let zj = tj + self.c * normal::sample(rng);
                z.push(zj);
                *xj = zj;
            }
        }
        fn joint_score(&self, theta: &[f64], z: &Vec<f64>, _x: &[f64], out: &mut [f64]) {
            for ((o, &t), &zj) in out.iter_mut().zip(theta).zip(z) {
                *o = -t + (zj - t) / (self.c * self.c);
            }
        }
    }
    impl JointLogDensity for Toy {
        fn joint_log_density(&self, theta: &[f64], z: &Vec<f64>, _x: &[f64]) -> f64 {
            theta
                .iter()
                .zip(z)
                .map(|(&t, &zj)| -0.5 * t * t - 0.5 * ((zj - t) / self.c).powi(2))
                .sum()
        }
    }

    #[test]
    fn batch_checks_its_buffers() {
        let toy = Toy { c: 0.5 };
        let mut rng = stream(1, 0);
        let (mut th, mut x, mut g) = (vec![0.0; 6], vec![0.0; 6], vec![0.0; 6]);
        assert_eq!(toy.simulate_batch(&mut rng, &mut th, &mut x, &mut g), Ok(3));
        assert!(g.iter().all(|v| v.is_finite() && *v != 0.0));
        let mut short = vec![0.0; 4];
        assert!(matches!(
            toy.simulate_batch(&mut rng, &mut th, &mut short, &mut g),
            Err(Error::DimMismatch { .. })
        ));
        let mut odd = vec![0.0; 5];
        assert!(matches!(
            toy.simulate_batch(&mut rng, &mut odd, &mut x, &mut g),
            Err(Error::DimMismatch { .. })
        ));
        assert!(toy.check_observation(&[0.0, 1.0]).is_ok());
        assert!(matches!(
            toy.check_observation(&[0.0]),
            Err(Error::DimMismatch { .. })
        ));
        assert!(matches!(
            toy.check_observation(&[0.0, f64::NAN]),
            Err(Error::NonFinite { .. })
        ));
    }

    #[test]
    fn finite_differences_match_the_joint_score() {
        let toy = Toy { c: 0.5 };
        let mut rng = stream(2, 0);
        let (mut th, mut z, mut x, mut g) = (vec![0.0; 2], toy.new_latent(), [0.0; 2], [0.0; 2]);
        let mut fd = [0.0; 2];
        for _ in 0..5 {
            toy.simulate(&mut rng, &mut th, &mut z, &mut x, &mut g);
            finite_difference_joint_score(&toy, &th, &z, &x, 1e-4, &mut fd);
            // Quadratic log-density: central differences are exact up to rounding.
            for (a, b) in fd.iter().zip(&g) {
                assert!((a - b).abs() < 1e-7, "{fd:?} vs {g:?}");
            }
        }
    }

    #[test]
    fn the_optimal_mix_is_kappa_with_d_over_f() {
        let mix = LatentMix::new(2, 10.0).unwrap();
        for t in [0.0, 0.1, 0.5, 0.9, 1.0] {
            let (a2, s2) = (Cosine.alpha(t).powi(2), Cosine.sigma_sq(t));
            let w = mix.optimal_weight(&Cosine, t).unwrap();
            assert!((w - 10.0 * s2 / (10.0 * s2 + 2.0 * a2)).abs() < 1e-15);
            // The κ coefficients are those of w A + (1 − w) B where both are finite.
            let c = mix.identity().coefficients(&Cosine, t).unwrap();
            if s2 > 0.0 && a2 > 0.0 {
                assert!((c.a - w / s2).abs() < 1e-12 * c.a.abs().max(1.0));
                assert!((c.b - (1.0 - w) / Cosine.alpha(t)).abs() < 1e-12);
            }
            // E‖y*‖² = w² d/σ² + (1 − w)² F/α² (A ⟂ B), and it is the smaller of the three.
            let m = mix.second_moments(&Cosine, t).unwrap();
            if s2 > 0.0 && a2 > 0.0 {
                let direct = w * w * 2.0 / s2 + (1.0 - w).powi(2) * 10.0 / a2;
                assert!((m.mix - direct).abs() < 1e-12 * direct);
            }
            assert!(m.mix <= m.dsm.min(m.ltsm));
        }
        let ends = (
            mix.second_moments(&Cosine, 0.0).unwrap(),
            mix.second_moments(&Cosine, 1.0).unwrap(),
        );
        assert_eq!(ends.0.dsm, f64::INFINITY);
        assert!((ends.0.mix - 10.0).abs() < 1e-12);
        assert_eq!(ends.1.ltsm, f64::INFINITY);
        assert!((ends.1.mix - 2.0).abs() < 1e-12);
        assert!(LatentMix::new(0, 1.0).is_err());
        assert!(LatentMix::new(2, f64::NAN).is_err());
        assert!(mix.optimal_weight(&Cosine, 1.5).is_err());
    }

    #[test]
    fn monte_carlo_weight_and_constant_match_closed_forms() {
        // Fixed seeds; 5 standard errors.
        let toy = Toy { c: 0.5 };
        let n = 20_000;
        let (mut th, mut x, mut g) = (vec![0.0; 2 * n], vec![0.0; 2 * n], vec![0.0; 2 * n]);
        toy.simulate_batch(&mut stream(3, 0), &mut th, &mut x, &mut g)
            .unwrap();
        let f = estimate_score_constant(&g, 2).unwrap();
        assert!((f.value - 10.0).abs() < 5.0 * f.std_err, "{f:?}");
        let mix = LatentMix::new(2, 10.0).unwrap();
        for (i, t) in [0.05, 0.3, 0.6, 0.9].into_iter().enumerate() {
            let w =
                estimate_optimal_weight(&g, 2, &Cosine, t, &mut stream(3, 1 + i as u64)).unwrap();
            let exact = mix.optimal_weight(&Cosine, t).unwrap();
            assert!(
                (w.value - exact).abs() < 5.0 * w.std_err,
                "t={t}: {w:?} vs {exact}"
            );
            assert!(w.std_err > 0.0 && w.std_err < 0.05);
        }
        assert!(matches!(
            estimate_optimal_weight(&g, 2, &Cosine, 0.0, &mut stream(3, 9)),
            Err(Error::UndefinedAt { .. })
        ));
        assert!(matches!(
            estimate_score_constant(&g[..3], 2),
            Err(Error::DimMismatch { .. })
        ));
        assert!(matches!(
            estimate_score_constant(&g[..2], 2),
            Err(Error::TooFewDraws { .. })
        ));
    }
}
