//! Monte Carlo score estimators at a point (paper eq. 18):
//!
//! ```text
//! ∇log p_t(x_t) ≈ (1/N) Σᵢ L(X₀ⁱ, x_t, t),   X₀ⁱ ~ p(x_0 | x_t)
//! ```
//!
//! for any identity `L` of [`crate::identity`]. [`MonteCarloScore`] evaluates several
//! identities on the **same** posterior draws (their estimates are then correlated, but each is
//! exactly eq. 18), keeps per-coordinate running moments shifted by the first draw (no
//! catastrophic cancellation when the per-draw variance is ~0, as for `L_κ` on a Gaussian), and
//! allocates nothing per draw.
//!
//! # References
//! [^1]: De Bortoli et al. (2024), *Target Score Matching*, eq. 18.

use rand::Rng;

use crate::identity::Coefficients;
use crate::target::{check_dim, PosteriorSample, Score};
use crate::{Error, Result};

/// Reusable Monte Carlo estimator of `∇log p_t(x_t)` for several identities at once.
#[derive(Debug, Clone)]
pub struct MonteCarloScore {
    dim: usize,
    coefficients: Vec<Coefficients>,
    x0: Vec<f64>,
    score0: Vec<f64>,
    // Indexed [identity * dim + coordinate].
    shift: Vec<f64>,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    draws: usize,
}

impl MonteCarloScore {
    /// An estimator in dimension `dim` for the identities with the given coefficients.
    pub fn new(dim: usize, coefficients: &[Coefficients]) -> Self {
        let n = dim * coefficients.len();
        Self {
            dim,
            coefficients: coefficients.to_vec(),
            x0: vec![0.0; dim],
            score0: vec![0.0; dim],
            shift: vec![0.0; n],
            sum: vec![0.0; n],
            sum_sq: vec![0.0; n],
            draws: 0,
        }
    }

    /// Replaces the coefficients (e.g. for a new `t`), keeping the buffers.
    ///
    /// # Errors
    /// [`Error::DimMismatch`] if the number of identities changes.
    pub fn set_coefficients(&mut self, coefficients: &[Coefficients]) -> Result<()> {
        check_dim(
            self.coefficients.len(),
            coefficients.len(),
            "MonteCarloScore::set_coefficients",
        )?;
        self.coefficients.copy_from_slice(coefficients);
        Ok(())
    }

    /// Draws `n` samples `x_0 ~ posterior` and accumulates every identity at `(x_0, x_t)`.
    ///
    /// # Errors
    /// [`Error::DimMismatch`] if `x_t`, the posterior or the target has another dimension;
    /// [`Error::TooFewDraws`] for `n < 2` (a standard error needs two draws).
    pub fn run<P, T, R>(
        &mut self,
        posterior: &P,
        target: &T,
        x_t: &[f64],
        n: usize,
        rng: &mut R,
    ) -> Result<()>
    where
        P: PosteriorSample + ?Sized,
        T: Score + ?Sized,
        R: Rng + ?Sized,
    {
        check_dim(self.dim, x_t.len(), "MonteCarloScore::run (x_t)")?;
        check_dim(
            self.dim,
            posterior.dim(),
            "MonteCarloScore::run (posterior)",
        )?;
        check_dim(self.dim, target.dim(), "MonteCarloScore::run (target)")?;
        if n < 2 {
            return Err(Error::TooFewDraws {
                op: "MonteCarloScore::run",
                needed: 2,
                got: n,
            });
        }
        let d = self.dim;
        // The first draw fixes the shifts.
        posterior.sample_into(rng, &mut self.x0);
        target.score(&self.x0, &mut self.score0);
        for (k, c) in self.coefficients.iter().enumerate() {
            for j in 0..d {
                self.shift[k * d + j] = c.apply(self.x0[j], x_t[j], self.score0[j]);
            }
        }
        self.sum.fill(0.0);
        self.sum_sq.fill(0.0);
        for _ in 1..n {
            posterior.sample_into(rng, &mut self.x0);
            target.score(&self.x0, &mut self.score0);
            for (k, c) in self.coefficients.iter().enumerate() {
                let range = k * d..(k + 1) * d;
                let (shift, sum, sum_sq) = (
                    &self.shift[range.clone()],
                    &mut self.sum[range.clone()],
                    &mut self.sum_sq[range],
                );
                for j in 0..d {
                    let v = c.apply(self.x0[j], x_t[j], self.score0[j]) - shift[j];
                    sum[j] += v;
                    sum_sq[j] += v * v;
                }
            }
        }
        self.draws = n;
        Ok(())
    }

    /// Number of draws in the last [`run`](Self::run).
    pub fn draws(&self) -> usize {
        self.draws
    }

    /// Number of identities.
    pub fn len(&self) -> usize {
        self.coefficients.len()
    }

    /// True if there are no identities.
    pub fn is_empty(&self) -> bool {
        self.coefficients.is_empty()
    }

    /// The estimate (eq. 18) of identity `k`, coordinate `j`.
    pub fn mean(&self, k: usize, j: usize) -> f64 {
        let i = k * self.dim + j;
        self.shift[i] + self.sum[i] / self.draws as f64
    }

    /// The per-draw sample variance of identity `k`, coordinate `j` (divisor `N − 1`).
    pub fn draw_variance(&self, k: usize, j: usize) -> f64 {
        let i = k * self.dim + j;
        let n = self.draws as f64;
        ((self.sum_sq[i] - self.sum[i] * self.sum[i] / n) / (n - 1.0)).max(0.0)
    }

    /// The estimator's variance `Σ_j Var(L_j)/N` (trace over coordinates, as in App. C).
    pub fn estimator_variance(&self, k: usize) -> f64 {
        (0..self.dim).map(|j| self.draw_variance(k, j)).sum::<f64>() / self.draws as f64
    }

    /// The standard error `√(Var(L_j)/N)` of identity `k`, coordinate `j`.
    pub fn std_err(&self, k: usize, j: usize) -> f64 {
        (self.draw_variance(k, j) / self.draws as f64).sqrt()
    }

    /// The estimate of identity `k` as a vector.
    pub fn mean_vec(&self, k: usize) -> Vec<f64> {
        (0..self.dim).map(|j| self.mean(k, j)).collect()
    }

    /// The standard errors of identity `k` as a vector.
    pub fn std_err_vec(&self, k: usize) -> Vec<f64> {
        (0..self.dim).map(|j| self.std_err(k, j)).collect()
    }
}
