//! Reverse-time sampling on a Lie group: the geodesic random walk (De Bortoli et al. 2022,
//! *Riemannian score-based generative modelling*, Alg. 1) from the Haar measure, in body
//! coordinates, over any [`GroupScore`] (an exact marginal score or a trained network).
//!
//! # Time is the heat time
//! The forward process is the noising of the [module](super): Brownian motion of `½Δ`, run for
//! the **heat time** `τ = σ²` (the variance of the wrapped normal on `𝕋^d`, the `t = ε²` of
//! IGSO(3)), so `p_τ = p_0 ∗ F_τ`. In body coordinates with the isometric `hat`, one step is
//! `X_{τ+dτ} = X_τ exp(dB)`, `dB ~ N(0, dτ Iₙ)`, and `∂_τ p = ½Δp`.
//!
//! # The reverse process and its drift coefficient
//! `Y_s = X_{T−s}` solves `dY = ∇log p_{T−s}(Y) ds + dB` (De Bortoli et al. 2022, Thm. 1, for
//! the generator `½Δ`): its law `q_s = p_{T−s}` satisfies the Fokker–Planck equation
//! `∂_s q = −div(q ∇log q) + ½Δq = −Δq + ½Δq = −½Δq`, which is `−∂_τ p`. So in heat time the
//! drift is the score with **coefficient 1** and the diffusion is unit — the Euclidean VE
//! reverse SDE `dx = g² s dt + g dB̄` with `g² dt = dσ²`. The geodesic random walk
//! (De Bortoli et al. 2022, Alg. 1; a bi-invariant metric makes the Riemannian exponential at
//! `x` the group's, `exp_x(x·hat v) = x exp(v)`) on a decreasing grid `τ_0 > … > τ_N`:
//!
//! ```text
//! x ← x · exp( h s(x, τ_k) + √h z ),   h = τ_k − τ_{k+1},   z ~ N(0, Iₙ),
//! ```
//!
//! with **no noise on the last step** (`x ← x · exp(h s(x, τ_{N−1}))`, the final denoising
//! step, as the Euclidean samplers of `crate::sampler`). A schedule `σ_t` in `t ∈ [0, 1]` maps
//! to the heat times `τ_k = σ²_{t_k}` (e.g. `HeatGrid::from_times` of those).
//!
//! # The starting law
//! The walk starts from the Haar measure ([`HaarSample`], [`haar_draws`]) at `τ_0`. The
//! heat kernel's distance to it decays with the first eigenvalue of `½Δ`: relative to the
//! uniform density, `sup |F_τ − 1| ≤ (1 + 2Σ_{m≥1} e^{−m²τ/2})^d − 1 ≈ 2d e^{−τ/2}` on `𝕋^d`
//! and `≤ Σ_{l≥1} (2l+1)² e^{−l(l+1)τ/2} ≈ 9 e^{−τ}` on `SO(3)`, and `p_τ = p_0 ∗ F_τ` is
//! at least as close. E.g. `τ_0 = 30` on `𝕋²` (`≈ 1.2·10⁻⁶`), `τ_0 = 15` on `SO(3)`
//! (`≈ 2.8·10⁻⁶`).
//!
//! # Example
//! ```
//! use tsm_core::lie::sampler::{geodesic_random_walk, haar_draws, GroupScore, HeatGrid};
//! use tsm_core::lie::torus::{Torus, TorusPoint, WrappedNormal};
//! use tsm_core::lie::LieError;
//!
//! /// The exact noised score of p_0 = WN(0, 0.25) on the circle: WN(0, 0.25 + τ).
//! struct Wn;
//! impl GroupScore<Torus> for Wn {
//!     fn noised_score(&mut self, x: &[TorusPoint], t: f64, out: &mut [f64]) -> Result<(), LieError> {
//!         let wn = WrappedNormal::new(0.25 + t)?;
//!         for (o, p) in out.iter_mut().zip(x) { *o = wn.score(p.angles()[0]); }
//!         Ok(())
//!     }
//! }
//!
//! let torus = Torus::new(1)?;
//! let grid = HeatGrid::geometric(30.0, 1e-3, 100)?;
//! let mut rng = tsm_core::rng::stream(0, 0);
//! let mut x = haar_draws(&torus, 2000, &mut rng);
//! geodesic_random_walk(&torus, &mut Wn, &mut x, &grid, &mut rng, None)?;
//! // E[cos x] = e^{−(0.25 + τ_N)/2} ≈ 0.882 (standard error ≈ 0.004).
//! let m = x.iter().map(|p| p.angles()[0].cos()).sum::<f64>() / 2000.0;
//! assert!((m - (-0.1255f64).exp()).abs() < 0.03);
//! # Ok::<(), LieError>(())
//! ```
//!
//! # References
//! [^1]: De Bortoli, Mathieu, Hutchinson, Thornton, Teh, Doucet (2022), *Riemannian
//!       score-based generative modelling*, Thm. 1 (time reversal) and Alg. 1 (geodesic
//!       random walk).

use std::ops::ControlFlow;

use rand::Rng;

use super::{check_finite, check_len, check_positive, LieError, LieGroup};
use crate::rng::normal;
use crate::sampler::Outcome;

/// A time-dependent score on a group: `(x, τ) ↦ ∇log p_τ(x)` in **body coordinates**, `τ`
/// the heat time (see the [module docs](self)), on a batch.
///
/// `&mut self` lets an implementation keep buffers (a network's input tensor) between calls.
pub trait GroupScore<G: LieGroup> {
    /// Writes the body-frame score of `p_τ` at every `xᵢ` into row `i` of `out`
    /// (`[n, tangent_dim]`, row-major, `n = x.len()`).
    ///
    /// # Errors
    /// [`LieError::DimMismatch`] for an `out` of another length or an element of another
    /// dimension; whatever the model reports (e.g. [`LieError::NonPositive`] for `τ ≤ 0`).
    fn noised_score(&mut self, x: &[G::Element], t: f64, out: &mut [f64]) -> Result<(), LieError>;
}

/// A group whose Haar measure can be sampled: the starting law of the reverse walk.
pub trait HaarSample: LieGroup {
    /// One draw from the normalised Haar measure.
    fn uniform<R: Rng + ?Sized>(&self, rng: &mut R) -> Self::Element;
}

/// `n` independent draws from the Haar measure of `group`.
pub fn haar_draws<G: HaarSample, R: Rng + ?Sized>(
    group: &G,
    n: usize,
    rng: &mut R,
) -> Vec<G::Element> {
    (0..n).map(|_| group.uniform(rng)).collect()
}

/// A strictly decreasing sequence of positive heat times `τ_0 > τ_1 > … > τ_N > 0`, `N ≥ 1`.
///
/// ```
/// use tsm_core::lie::sampler::HeatGrid;
/// let grid = HeatGrid::geometric(10.0, 0.01, 3)?;
/// assert_eq!(grid.steps(), 3);
/// assert!((grid.times()[1] - 1.0).abs() < 1e-12 && (grid.times()[2] - 0.1).abs() < 1e-12);
/// assert!(HeatGrid::from_times(vec![1.0]).is_err()); // no step
/// assert!(HeatGrid::from_times(vec![1.0, 1.0]).is_err()); // not decreasing
/// # Ok::<(), tsm_core::lie::LieError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct HeatGrid {
    times: Vec<f64>,
}

impl HeatGrid {
    /// The most steps a grid may have (10⁷): more is taken for a mistake and refused.
    pub const MAX_STEPS: usize = 10_000_000;

    /// The grid with exactly these heat times.
    ///
    /// # Errors
    /// [`LieError::GridSize`] for fewer than 2 or more than `MAX_STEPS + 1` times;
    /// [`LieError::NonPositive`] for a time that is not finite and positive;
    /// [`LieError::Unordered`] where a time does not decrease strictly.
    pub fn from_times(times: Vec<f64>) -> Result<Self, LieError> {
        check_points(times.len())?;
        for &t in &times {
            check_positive("heat time", t)?;
        }
        for (i, w) in times.windows(2).enumerate() {
            if w[1] >= w[0] {
                return Err(LieError::Unordered {
                    index: i + 1,
                    value: w[1],
                    previous: w[0],
                });
            }
        }
        Ok(Self { times })
    }

    /// `steps` steps uniform in `ln τ` (equivalently in `ln σ`: the uniform-`t` grid of a VE
    /// schedule) from `t_max` down to `t_min` (both ends exact).
    ///
    /// # Errors
    /// As [`HeatGrid::from_times`] (`t_min ≥ t_max` is [`LieError::Unordered`]).
    pub fn geometric(t_max: f64, t_min: f64, steps: usize) -> Result<Self, LieError> {
        check_points(steps.saturating_add(1))?;
        let (hi, lo) = (
            check_positive("heat time", t_max)?.ln(),
            check_positive("heat time", t_min)?.ln(),
        );
        let mut times: Vec<f64> = (0..=steps)
            .map(|k| (hi + (lo - hi) * k as f64 / steps as f64).exp())
            .collect();
        times[0] = t_max;
        times[steps] = t_min;
        Self::from_times(times)
    }

    /// The times `τ_0, …, τ_N`.
    pub fn times(&self) -> &[f64] {
        &self.times
    }

    /// The number of steps `N`.
    pub fn steps(&self) -> usize {
        self.times.len() - 1
    }

    /// The first (largest) time `τ_0`.
    pub fn t_max(&self) -> f64 {
        self.times[0]
    }

    /// The last (smallest) time `τ_N`.
    pub fn t_min(&self) -> f64 {
        self.times[self.times.len() - 1]
    }
}

fn check_points(points: usize) -> Result<(), LieError> {
    if (2..=HeatGrid::MAX_STEPS + 1).contains(&points) {
        Ok(())
    } else {
        Err(LieError::GridSize {
            points,
            max: HeatGrid::MAX_STEPS + 1,
        })
    }
}

/// What a [`GroupCallback`] sees after step `index`: the state `x` at `t_next`.
#[derive(Debug)]
#[non_exhaustive]
pub struct GroupStep<'a, G: LieGroup> {
    /// The step's index `k` (`0` to `N − 1`).
    pub index: usize,
    /// The heat time `τ_k` the step started from.
    pub t: f64,
    /// The heat time `τ_{k+1}` it ended at.
    pub t_next: f64,
    /// The state at `t_next`.
    pub x: &'a [G::Element],
}

/// The per-step callback of [`geodesic_random_walk`]: called after each step with the new
/// state; return [`ControlFlow::Break`] to stop the run there.
pub type GroupCallback<'c, G> = dyn FnMut(&GroupStep<'_, G>) -> ControlFlow<()> + 'c;

/// The reverse-time geodesic random walk (De Bortoli et al. 2022, Alg. 1) in body coordinates:
/// `x ← x · exp(h s(x, τ_k) + √h z)`, `h = τ_k − τ_{k+1}`, `z ~ N(0, Iₙ)`, no noise on the
/// last step (see the [module docs](self) for the derivation of the unit drift coefficient).
///
/// `x` is the caller's draw at `grid.t_max()` (e.g. [`haar_draws`]) and holds the samples at
/// `grid.t_min()` on return (or the state where the callback stopped the run). One score
/// evaluation per step.
///
/// # Errors
/// [`LieError::DimMismatch`] for a starting element of another dimension
/// ([`LieGroup::check_element`]); [`LieError::NonFinite`] for a non-finite score; whatever the
/// score reports.
pub fn geodesic_random_walk<G, S, R>(
    group: &G,
    score: &mut S,
    x: &mut [G::Element],
    grid: &HeatGrid,
    rng: &mut R,
    mut callback: Option<&mut GroupCallback<'_, G>>,
) -> Result<Outcome, LieError>
where
    G: LieGroup,
    S: GroupScore<G> + ?Sized,
    R: Rng + ?Sized,
{
    for g in x.iter() {
        group.check_element(g)?;
    }
    let n = group.tangent_dim();
    let mut s = vec![0.0; x.len() * n];
    let mut v = vec![0.0; n];
    let steps = grid.steps();
    for (k, w) in grid.times().windows(2).enumerate() {
        let (t, t_next) = (w[0], w[1]);
        let h = t - t_next;
        let last = k + 1 == steps;
        score.noised_score(x, t, &mut s)?;
        check_len(x.len() * n, s.len(), "GroupScore output")?;
        check_finite(&s, "score")?;
        let sqrt_h = h.sqrt();
        for (xi, si) in x.iter_mut().zip(s.chunks_exact(n)) {
            for (vj, sj) in v.iter_mut().zip(si) {
                *vj = h * sj;
                if !last {
                    *vj += sqrt_h * normal::sample(rng);
                }
            }
            *xi = group.compose(xi, &group.exp(&v)?);
        }
        if let Some(cb) = callback.as_deref_mut() {
            let step = GroupStep {
                index: k,
                t,
                t_next,
                x,
            };
            if cb(&step).is_break() {
                return Ok(Outcome {
                    steps: k + 1,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lie::igso3::Igso3;
    use crate::lie::so3::{Rotation, So3};
    use crate::lie::torus::{Torus, TorusPoint, WrappedNormal};

    /// The exact noised score of `WN(μ, s²)` on the circle: `WN(μ, s² + τ)`.
    struct Wn {
        mu: f64,
        var: f64,
    }

    impl GroupScore<Torus> for Wn {
        fn noised_score(
            &mut self,
            x: &[TorusPoint],
            t: f64,
            out: &mut [f64],
        ) -> Result<(), LieError> {
            check_len(x.len(), out.len(), "Wn")?;
            let wn = WrappedNormal::new(self.var + t)?;
            for (o, p) in out.iter_mut().zip(x) {
                *o = wn.score(p.angles()[0] - self.mu);
            }
            Ok(())
        }
    }

    /// The exact noised score of `IGSO(3)(I, t₀)`: `IGSO(3)(I, t₀ + τ)` (times add).
    struct Heat(f64);

    impl GroupScore<So3> for Heat {
        fn noised_score(
            &mut self,
            x: &[Rotation],
            t: f64,
            out: &mut [f64],
        ) -> Result<(), LieError> {
            check_len(3 * x.len(), out.len(), "Heat")?;
            let k = Igso3::new(self.0 + t)?;
            for (o, r) in out.chunks_exact_mut(3).zip(x) {
                o.copy_from_slice(&k.body_score(&Rotation::IDENTITY, r));
            }
            Ok(())
        }
    }

    #[test]
    fn grids_are_validated() {
        assert!(matches!(
            HeatGrid::from_times(vec![]),
            Err(LieError::GridSize { points: 0, .. })
        ));
        assert!(matches!(
            HeatGrid::geometric(1.0, 0.1, 0),
            Err(LieError::GridSize { points: 1, .. })
        ));
        assert!(matches!(
            HeatGrid::geometric(1.0, 0.1, usize::MAX),
            Err(LieError::GridSize { .. })
        ));
        assert!(matches!(
            HeatGrid::from_times(vec![1.0, 0.5, 0.5]),
            Err(LieError::Unordered { index: 2, .. })
        ));
        assert!(matches!(
            HeatGrid::geometric(0.1, 1.0, 5),
            Err(LieError::Unordered { .. })
        ));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                HeatGrid::from_times(vec![2.0, bad]),
                Err(LieError::NonPositive { .. })
            ));
        }
        let g = HeatGrid::geometric(30.0, 1e-3, 7).expect("grid");
        assert_eq!((g.t_max(), g.t_min(), g.steps()), (30.0, 1e-3, 7));
        let r: Vec<f64> = g.times().windows(2).map(|w| w[0] / w[1]).collect();
        assert!(r.iter().all(|q| (q - r[0]).abs() < 1e-12));
    }

    #[test]
    fn bad_states_and_scores_are_typed_errors() {
        let torus = Torus::new(1).expect("torus");
        let grid = HeatGrid::geometric(1.0, 0.1, 3).expect("grid");
        let mut rng = crate::rng::stream(1, 0);
        // A point of 𝕋² on 𝕋¹.
        let mut x = vec![TorusPoint::new(&[0.0, 1.0]).expect("point")];
        let mut score = Wn { mu: 0.0, var: 0.1 };
        assert!(matches!(
            geodesic_random_walk(&torus, &mut score, &mut x, &grid, &mut rng, None),
            Err(LieError::DimMismatch { .. })
        ));
        // A score that returns NaN.
        struct Nan;
        impl GroupScore<Torus> for Nan {
            fn noised_score(
                &mut self,
                _x: &[TorusPoint],
                _t: f64,
                out: &mut [f64],
            ) -> Result<(), LieError> {
                out.fill(f64::NAN);
                Ok(())
            }
        }
        let mut x = vec![TorusPoint::new(&[0.0]).expect("point")];
        assert!(matches!(
            geodesic_random_walk(&torus, &mut Nan, &mut x, &grid, &mut rng, None),
            Err(LieError::NonFinite { what: "score", .. })
        ));
    }

    /// With the exact score of `WN(μ, 0.09)` the walk's draws have the exact circular moments
    /// `E[cos(x − μ)] = e^{−(s² + τ_N)/2}`, `E[sin(x − μ)] = 0`, within 5 standard errors
    /// (2000 draws, 100 steps, fixed seed).
    #[test]
    fn torus_walk_matches_the_circular_moments() {
        let torus = Torus::new(1).expect("torus");
        let grid = HeatGrid::geometric(30.0, 1e-3, 100).expect("grid");
        let mut rng = crate::rng::stream(2, 0);
        let n = 2000;
        let mut x = haar_draws(&torus, n, &mut rng);
        let mut score = Wn { mu: 2.5, var: 0.09 };
        geodesic_random_walk(&torus, &mut score, &mut x, &grid, &mut rng, None).expect("walk");
        let exact = (-(0.09 + grid.t_min()) / 2.0).exp();
        let c: Vec<f64> = x.iter().map(|p| (p.angles()[0] - 2.5).cos()).collect();
        let s: Vec<f64> = x.iter().map(|p| (p.angles()[0] - 2.5).sin()).collect();
        for (vals, target) in [(c, exact), (s, 0.0)] {
            let m = vals.iter().sum::<f64>() / n as f64;
            let var = vals.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1) as f64;
            let z = (m - target) / (var / n as f64).sqrt();
            assert!(z.abs() < 5.0, "z = {z}");
        }
    }

    /// On `SO(3)` with the exact score of `IGSO(3)(I, 0.2)`: `E[χ₁(ω)] = E[1 + 2 cos ω]
    /// = 3 e^{−(t₀ + τ_N)}` (the character expansion `f = Σ (2l+1) e^{−l(l+1)t/2} χ_l` and
    /// the orthonormality of characters), within 5 standard errors (2000 draws, 100 steps,
    /// fixed seed).
    #[test]
    fn so3_walk_matches_the_first_character() {
        let grid = HeatGrid::geometric(15.0, 1e-3, 100).expect("grid");
        let mut rng = crate::rng::stream(3, 0);
        let n = 2000;
        let mut x = haar_draws(&So3, n, &mut rng);
        geodesic_random_walk(&So3, &mut Heat(0.2), &mut x, &grid, &mut rng, None).expect("walk");
        let chi: Vec<f64> = x.iter().map(|r| 1.0 + 2.0 * r.angle().cos()).collect();
        let m = chi.iter().sum::<f64>() / n as f64;
        let var = chi.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1) as f64;
        let z = (m - 3.0 * (-(0.2 + grid.t_min())).exp()) / (var / n as f64).sqrt();
        assert!(z.abs() < 5.0, "z = {z}");
    }
}
