//! `galton_board`: a two-parameter Galton board, inspired by Brehmer et al. (2020) (not their
//! simulator: theirs has 31 nails, starts mid-board and has a scalar `θ`).
//!
//! 20 rows `r = 0…19`, final bins `0…20`. A ball starts at position `k = 0`; at row `r` it
//! goes right (`k ← k + 1`) with probability `p_r(k; θ) = sigmoid(θ₁ + θ₂ u)`,
//! `u = (2k − r)/(r + 1) ∈ (−1, 1)` — the nails' tilt depends on `θ` and on where the ball
//! is — and left otherwise. `θ ∈ ℝ²` with prior `N(0, I)`. An observation is the final bins of
//! 10 independent balls in simulation order; the latents `z` are the 10 × 20 left/right
//! decisions `d ∈ {0, 1}` ([`Simulator::Latent`] is one 20-bit word per ball, bit `r` = the
//! decision at row `r`).
//!
//! - Joint log-density: `log N(θ; 0, I) + Σ_balls Σ_rows [d log p + (1 − d) log(1 − p)]`
//!   (`x` is a function of `z`: `−∞` if `x` is not the balls' final bins).
//! - Joint score: `∇_θ log p(θ, z, x) = −θ + Σ_balls Σ_rows (d − p)(1, u)ᵀ`.
//! - `F = 2 + 10 E_θ Σ_r E[p(1 − p)(1 + u²) | θ]` (the decisions' score terms are martingale
//!   differences, so cross terms vanish), computed by quadrature
//!   ([`GaltonBoard::score_constant_by_quadrature`]): `F = 48.9365…`.
//! - Reference posterior: one dynamic programme over `(row, k)` per `θ` gives the single-ball
//!   bin law `P₂₀(k | θ)` (`P_{r+1}(k) = P_r(k)(1 − p_r(k)) + P_r(k − 1) p_r(k − 1)`), and
//!   `p(x | θ) = Π_k P₂₀(k | θ)^{n_k}` with `n_k` the balls in bin `k`. It is tabulated on a
//!   600 × 600 grid of cells over `[−6, 6]²` (the table of `log P₂₀(k | θ)` does not depend on
//!   `x`: it is built once per [`GaltonBoard`] and reused for every observation), the outer
//!   ring must hold mass `< 10⁻⁶`, and draws are uniform inside a cell ([`GridPosterior`]).
//!   (`[−4, 4]²` is too small: it cuts off more than `10⁻³` of the posterior mass for about
//!   2% of prior-predictive observations.)

use std::sync::{Arc, OnceLock};

use tsm_core::rand::Rng;
use tsm_core::rng::normal;
use tsm_core::simulator::{JointLogDensity, Simulator};
use tsm_core::target::Dim;

use super::{check_counts, sigmoid, softplus, GridPosterior, Posterior, SbiTask, Task};

/// The `galton_board` task (see the [module docs](self)). Cloning shares the reference grid.
#[derive(Debug, Clone, Default)]
pub struct GaltonBoard {
    /// `log P₂₀(k | θ)` at every grid cell, built on first use.
    table: OnceLock<Arc<Vec<f64>>>,
}

/// The decision probability at row `r`, position `k`: `(u, p)`.
#[inline(always)]
fn nail(theta: &[f64], r: usize, k: usize) -> (f64, f64) {
    let u = (2.0 * k as f64 - r as f64) / (r as f64 + 1.0);
    (u, sigmoid(theta[0] + theta[1] * u))
}

impl GaltonBoard {
    /// Rows of nails.
    pub const ROWS: usize = 20;
    /// Balls per observation (`k = 10`).
    pub const BALLS: usize = 10;
    /// Final bins `0…ROWS`.
    pub const BINS: usize = Self::ROWS + 1;
    /// `F = E‖∇_θ log p(θ, z, x)‖²` by quadrature (six significant digits; see
    /// [`GaltonBoard::score_constant_by_quadrature`]).
    pub const SCORE_CONSTANT: f64 = 48.9365;
    /// Cells per side of the reference grid.
    pub const GRID_CELLS: usize = 600;
    /// The reference grid's box is `[−GRID_HALF_WIDTH, GRID_HALF_WIDTH]²`.
    pub const GRID_HALF_WIDTH: f64 = 6.0;

    /// The task (its reference grid is built on the first [`Task::reference_posterior`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The single-ball bin law `P₂₀(k | θ)`, `k = 0…20`, by the dynamic programme over rows.
    pub fn bin_probabilities(theta: &[f64]) -> [f64; 21] {
        let mut prob = [0.0; 21];
        prob[0] = 1.0;
        for r in 0..Self::ROWS {
            // In place, right to left: prob[k + 1] already holds its row-r mass times (1 − p).
            for k in (0..=r).rev() {
                let (_, p) = nail(theta, r, k);
                prob[k + 1] += prob[k] * p;
                prob[k] *= 1.0 - p;
            }
        }
        prob
    }

    /// `Σ_r E[p(1 − p)(1 + u²) | θ]`: the expected squared score of one ball's decisions.
    fn ball_information(theta: &[f64]) -> f64 {
        let mut prob = [0.0; 21];
        prob[0] = 1.0;
        let mut info = 0.0;
        for r in 0..Self::ROWS {
            for k in (0..=r).rev() {
                let (u, p) = nail(theta, r, k);
                info += prob[k] * p * (1.0 - p) * (1.0 + u * u);
                prob[k + 1] += prob[k] * p;
                prob[k] *= 1.0 - p;
            }
        }
        info
    }

    /// `F = 2 + 10 E_θ Σ_r E[p(1 − p)(1 + u²) | θ]` by the trapezoid rule over `[−9, 9]²` with
    /// step `0.1`: for a Gaussian-weighted integrand analytic in a strip of half-width about
    /// `π/2` the error is of order `e^{−π²/h} ≈ 10⁻⁴³`, and the prior mass outside the box
    /// is `≈ 10⁻¹⁹`, so the result is exact to rounding. About 33,000 dynamic programmes.
    pub fn score_constant_by_quadrature() -> f64 {
        let h = 0.1;
        let m = 90i32;
        let weight = |v: f64| (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt() * h;
        let mut total = 0.0;
        for i in -m..=m {
            let t1 = f64::from(i) * h;
            let mut row = 0.0;
            for j in -m..=m {
                let t2 = f64::from(j) * h;
                row += weight(t2) * Self::ball_information(&[t1, t2]);
            }
            total += weight(t1) * row;
        }
        2.0 + Self::BALLS as f64 * total
    }

    /// The grid's table of `log P₂₀(k | θ)` (cell-major: 21 values per cell).
    fn table(&self) -> &Arc<Vec<f64>> {
        self.table.get_or_init(|| {
            let n = Self::GRID_CELLS;
            let h = 2.0 * Self::GRID_HALF_WIDTH / n as f64;
            let mut table = Vec::with_capacity(n * n * Self::BINS);
            for i in 0..n {
                let t1 = -Self::GRID_HALF_WIDTH + (i as f64 + 0.5) * h;
                for j in 0..n {
                    let t2 = -Self::GRID_HALF_WIDTH + (j as f64 + 0.5) * h;
                    let prob = Self::bin_probabilities(&[t1, t2]);
                    table.extend(prob.iter().map(|p| p.ln()));
                }
            }
            Arc::new(table)
        })
    }

    /// `log p(x | θ) = Σ_k n_k log P₂₀(k | θ)` for a validated observation.
    pub fn log_likelihood(theta: &[f64], x: &[f64]) -> f64 {
        let prob = Self::bin_probabilities(theta);
        x.iter().map(|&b| prob[b as usize].ln()).sum()
    }
}

impl Dim for GaltonBoard {
    fn dim(&self) -> usize {
        2
    }
}

impl Simulator for GaltonBoard {
    /// One word per ball, bit `r` = the decision at row `r` (1: right).
    type Latent = [u32; 10];

    fn observation_dim(&self) -> usize {
        Self::BALLS
    }

    fn new_latent(&self) -> [u32; 10] {
        [0; 10]
    }

    fn sample_prior<R: Rng + ?Sized>(&self, rng: &mut R, theta: &mut [f64]) {
        normal::fill(rng, theta);
    }

    fn simulate_from<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        theta: &[f64],
        z: &mut [u32; 10],
        x: &mut [f64],
    ) {
        let mut g = [0.0; 2];
        self.drop_balls(rng, theta, z, x, &mut g);
    }

    /// `−θ + Σ_balls Σ_rows (d − p)(1, u)ᵀ`, replaying each ball's path from its decisions.
    fn joint_score(&self, theta: &[f64], z: &[u32; 10], _x: &[f64], out: &mut [f64]) {
        let mut g = [-theta[0], -theta[1]];
        for &bits in z {
            let mut k = 0;
            for r in 0..Self::ROWS {
                let d = ((bits >> r) & 1) as usize;
                let (u, p) = nail(theta, r, k);
                let e = d as f64 - p;
                g[0] += e;
                g[1] += e * u;
                k += d;
            }
        }
        out[..2].copy_from_slice(&g);
    }

    /// Simulates and accumulates the joint score along the way (one sigmoid per decision).
    fn simulate<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        theta: &mut [f64],
        z: &mut [u32; 10],
        x: &mut [f64],
        joint_score: &mut [f64],
    ) {
        self.sample_prior(rng, theta);
        let mut g = [-theta[0], -theta[1]];
        self.drop_balls(rng, theta, z, x, &mut g);
        joint_score[..2].copy_from_slice(&g);
    }

    /// Length 10, every value a whole number in `0..=20`.
    ///
    /// # Errors
    /// [`tsm_core::Error::DimMismatch`], [`tsm_core::Error::NonFinite`] or
    /// [`tsm_core::Error::OutOfRange`] (a non-integer or out-of-range bin).
    fn check_observation(&self, x: &[f64]) -> tsm_core::Result<()> {
        tsm_core::target::check_dim(Self::BALLS, x.len(), "galton_board observation")?;
        check_counts(
            x,
            Self::ROWS as f64,
            "galton_board observation: a final bin (whole number in 0..=20)",
        )
    }
}

impl GaltonBoard {
    /// Drops the 10 balls at `θ`, writing decisions and bins and adding `Σ (d − p)(1, u)` to
    /// `g`.
    fn drop_balls<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        theta: &[f64],
        z: &mut [u32; 10],
        x: &mut [f64],
        g: &mut [f64; 2],
    ) {
        for (bits, xb) in z.iter_mut().zip(x.iter_mut()) {
            let mut k = 0;
            *bits = 0;
            for r in 0..Self::ROWS {
                let (u, p) = nail(theta, r, k);
                let d = usize::from(rng.random::<f64>() < p);
                *bits |= (d as u32) << r;
                let e = d as f64 - p;
                g[0] += e;
                g[1] += e * u;
                k += d;
            }
            *xb = k as f64;
        }
    }
}

impl JointLogDensity for GaltonBoard {
    fn joint_log_density(&self, theta: &[f64], z: &[u32; 10], x: &[f64]) -> f64 {
        let mut l =
            -0.5 * (theta[0] * theta[0] + theta[1] * theta[1]) - (2.0 * std::f64::consts::PI).ln();
        for (&bits, &xb) in z.iter().zip(x) {
            if bits >> Self::ROWS != 0 || f64::from(bits.count_ones()) != xb {
                return f64::NEG_INFINITY;
            }
            let mut k = 0;
            for r in 0..Self::ROWS {
                let d = ((bits >> r) & 1) as usize;
                let u = (2.0 * k as f64 - r as f64) / (r as f64 + 1.0);
                let eta = theta[0] + theta[1] * u;
                // log σ(η) = −softplus(−η), log(1 − σ(η)) = −softplus(η).
                l -= if d == 1 {
                    softplus(-eta)
                } else {
                    softplus(eta)
                };
                k += d;
            }
        }
        l
    }
}

impl Task for GaltonBoard {
    fn task(&self) -> SbiTask {
        SbiTask::GaltonBoard
    }

    /// The 600 × 600 grid posterior over `[−6, 6]²` (see the [module docs](self)); the first
    /// call builds the table of bin laws (about 75 million sigmoids).
    fn reference_posterior(&self, x: &[f64]) -> crate::Result<Posterior> {
        self.check_observation(x)?;
        let mut counts = [0.0; 21];
        for &b in x {
            counts[b as usize] += 1.0;
        }
        let bins: Vec<(usize, f64)> = counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0.0)
            .map(|(k, &c)| (k, c))
            .collect();
        let n = Self::GRID_CELLS;
        let w = Self::GRID_HALF_WIDTH;
        let h = 2.0 * w / n as f64;
        let table = self.table();
        let mut log_post = Vec::with_capacity(n * n);
        for i in 0..n {
            let t1 = -w + (i as f64 + 0.5) * h;
            for j in 0..n {
                let t2 = -w + (j as f64 + 0.5) * h;
                let cell = &table[(i * n + j) * Self::BINS..][..Self::BINS];
                let ll: f64 = bins.iter().map(|&(k, c)| c * cell[k]).sum();
                log_post.push(-0.5 * (t1 * t1 + t2 * t2) + ll);
            }
        }
        GridPosterior::from_log_density([-w, -w], [w, w], [n, n], &log_post).map(Posterior::Grid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsm_core::rng::stream;
    use tsm_core::simulator::finite_difference_joint_score;

    #[test]
    fn bin_law_sums_to_one_and_mirrors() {
        for theta in [[0.0, 0.0], [1.3, -0.7], [-4.0, 5.0]] {
            let p = GaltonBoard::bin_probabilities(&theta);
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-13);
            // Reflecting k ↦ 20 − k maps u ↦ −u and right ↔ left: P(k | θ₁, θ₂) = P(20 − k | −θ₁, θ₂).
            let q = GaltonBoard::bin_probabilities(&[-theta[0], theta[1]]);
            for k in 0..21 {
                assert!((p[k] - q[20 - k]).abs() < 1e-14);
            }
        }
        // θ = 0: every decision is a fair coin, so the bins are Binomial(20, ½).
        let p = GaltonBoard::bin_probabilities(&[0.0, 0.0]);
        let mut c = 1.0;
        for k in 0..21 {
            assert!((p[k] - c / 2f64.powi(20)).abs() < 1e-15);
            c = c * (20 - k) as f64 / (k + 1) as f64;
        }
    }

    #[test]
    fn simulated_bins_follow_the_dynamic_programme() {
        // The fraction of balls in the most likely bin, 5 standard errors (fixed seed).
        let task = GaltonBoard::new();
        let theta = [0.4, 1.5];
        let p = GaltonBoard::bin_probabilities(&theta);
        let (mut z, mut x) = (task.new_latent(), [0.0; 10]);
        let mut counts = [0usize; 21];
        let mut rng = stream(3, 0);
        let reps = 5_000;
        for _ in 0..reps {
            task.simulate_from(&mut rng, &theta, &mut z, &mut x);
            for &b in &x {
                counts[b as usize] += 1;
            }
        }
        let n = (reps * 10) as f64;
        for k in 0..21 {
            let se = (p[k] * (1.0 - p[k]) / n).sqrt();
            assert!(
                (counts[k] as f64 / n - p[k]).abs() < 5.0 * se + 1e-12,
                "bin {k}"
            );
        }
    }

    #[test]
    fn the_joint_score_matches_finite_differences() {
        // Central differences with h = 1e-5: truncation error h²/6 · |∂³ log p| ≲ 1e-10 · 200
        // (each of the 200 decision terms has a bounded third derivative ≤ 0.1·(1 + |u|)³),
        // rounding error ~ 1e-16 · |log p| / h ≈ 1e-16 · 150 / 1e-5 ≈ 2e-9: tolerance 1e-6.
        let task = GaltonBoard::new();
        let mut rng = stream(4, 0);
        let (mut th, mut z, mut x, mut g, mut g2, mut fd) = (
            [0.0; 2],
            task.new_latent(),
            [0.0; 10],
            [0.0; 2],
            [0.0; 2],
            [0.0; 2],
        );
        for _ in 0..10 {
            task.simulate(&mut rng, &mut th, &mut z, &mut x, &mut g);
            // The fused score equals the replayed one.
            task.joint_score(&th, &z, &x, &mut g2);
            assert!((g[0] - g2[0]).abs() < 1e-12 && (g[1] - g2[1]).abs() < 1e-12);
            finite_difference_joint_score(&task, &th, &z, &x, 1e-5, &mut fd);
            for j in 0..2 {
                assert!((fd[j] - g[j]).abs() < 1e-6, "{fd:?} vs {g:?}");
            }
            // Off the simulated θ too: the score is a function of (θ, z, x).
            let shifted = [th[0] + 0.7, th[1] - 1.1];
            task.joint_score(&shifted, &z, &x, &mut g2);
            finite_difference_joint_score(&task, &shifted, &z, &x, 1e-5, &mut fd);
            for j in 0..2 {
                assert!((fd[j] - g2[j]).abs() < 1e-6, "{fd:?} vs {g2:?}");
            }
        }
        // x inconsistent with z has zero density.
        x[0] += 1.0;
        assert_eq!(task.joint_log_density(&th, &z, &x), f64::NEG_INFINITY);
    }

    #[test]
    fn the_score_constant_is_the_quadrature_value() {
        let f = GaltonBoard::score_constant_by_quadrature();
        assert!((f - GaltonBoard::SCORE_CONSTANT).abs() < 1e-4, "{f}");
        // Halving the step changes nothing visible: the trapezoid rule has converged.
        assert!((f - 48.936_517_957_7).abs() < 1e-9, "{f}");
    }

    #[test]
    fn observations_are_checked() {
        let task = GaltonBoard::new();
        assert!(task.check_observation(&[3.0; 10]).is_ok());
        assert!(task.check_observation(&[3.0; 9]).is_err());
        let mut x = [3.0; 10];
        x[4] = 2.5;
        let err = task.check_observation(&x).unwrap_err();
        assert!(err.to_string().contains("2.5"), "{err}");
        x[4] = 21.0;
        assert!(task.check_observation(&x).is_err());
        x[4] = -1.0;
        assert!(task.check_observation(&x).is_err());
        x[4] = f64::NAN;
        assert!(task.check_observation(&x).is_err());
        assert!(task.reference_posterior(&[0.5; 10]).is_err());
    }
}
