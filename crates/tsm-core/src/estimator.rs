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
//! allocates nothing per draw: draws and scores go into buffers that grow to the largest `N`
//! seen and are reused.
//!
//! # References
//! [^1]: De Bortoli et al. (2024), *Target Score Matching*, eq. 18.

use rand::Rng;

use crate::identity::Coefficients;
use crate::target::{check_dim, PosteriorSample, Score};
use crate::{Error, Result};

const LANES: usize = 8;

/// `(Σ v, Σ v²)` with `v = L(x0[i], x_t, s[i]) − shift`, accumulated in eight lanes (lane `l`
/// takes the elements `i ≡ l mod 8`, then the lanes are added in order). The AVX2 kernel and
/// the portable one perform the same IEEE operations in the same order, so they agree bit for
/// bit and results do not depend on the CPU.
#[inline]
fn shifted_sums_contiguous(
    c: &Coefficients,
    x0: &[f64],
    x_t: f64,
    score0: &[f64],
    shift: f64,
) -> (f64, f64) {
    debug_assert_eq!(x0.len(), score0.len());
    let n = x0.len().min(score0.len());
    let body = n - n % LANES;
    let (mut sum, mut sum_sq) = ([0.0; LANES], [0.0; LANES]);
    #[cfg(target_arch = "x86_64")]
    let done = if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is available (checked above) and `body ≤ n` bounds every load.
        unsafe {
            avx2::shifted_sums(
                c,
                &x0[..body],
                x_t,
                &score0[..body],
                shift,
                &mut sum,
                &mut sum_sq,
            )
        };
        true
    } else {
        false
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = false;
    if !done {
        for (xs, ss) in x0[..body]
            .chunks_exact(LANES)
            .zip(score0[..body].chunks_exact(LANES))
        {
            for l in 0..LANES {
                let v = c.apply(xs[l], x_t, ss[l]) - shift;
                sum[l] += v;
                sum_sq[l] += v * v;
            }
        }
    }
    for (l, (&x, &s)) in x0[body..n].iter().zip(&score0[body..n]).enumerate() {
        let v = c.apply(x, x_t, s) - shift;
        sum[l] += v;
        sum_sq[l] += v * v;
    }
    (sum.iter().sum(), sum_sq.iter().sum())
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Coefficients, LANES};

    /// The eight-lane body of [`super::shifted_sums_contiguous`]; `x0.len()` is a multiple of 8.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn shifted_sums(
        c: &Coefficients,
        x0: &[f64],
        x_t: f64,
        score0: &[f64],
        shift: f64,
        sum: &mut [f64; LANES],
        sum_sq: &mut [f64; LANES],
    ) {
        let (a, b, alpha) = (
            _mm256_set1_pd(c.a),
            _mm256_set1_pd(c.b),
            _mm256_set1_pd(c.alpha),
        );
        let (xt, sh) = (_mm256_set1_pd(x_t), _mm256_set1_pd(shift));
        let (mut s0, mut s1) = (_mm256_setzero_pd(), _mm256_setzero_pd());
        let (mut q0, mut q1) = (_mm256_setzero_pd(), _mm256_setzero_pd());
        // v = a (α x − x_t) + b s − shift, as in `Coefficients::apply`.
        let value = |x: __m256d, s: __m256d| {
            _mm256_sub_pd(
                _mm256_add_pd(
                    _mm256_mul_pd(a, _mm256_sub_pd(_mm256_mul_pd(alpha, x), xt)),
                    _mm256_mul_pd(b, s),
                ),
                sh,
            )
        };
        for (xs, ss) in x0.chunks_exact(LANES).zip(score0.chunks_exact(LANES)) {
            // SAFETY: each chunk has 8 elements, so both 4-wide loads are in bounds.
            let (v0, v1) = unsafe {
                (
                    value(_mm256_loadu_pd(xs.as_ptr()), _mm256_loadu_pd(ss.as_ptr())),
                    value(
                        _mm256_loadu_pd(xs.as_ptr().add(4)),
                        _mm256_loadu_pd(ss.as_ptr().add(4)),
                    ),
                )
            };
            s0 = _mm256_add_pd(s0, v0);
            s1 = _mm256_add_pd(s1, v1);
            q0 = _mm256_add_pd(q0, _mm256_mul_pd(v0, v0));
            q1 = _mm256_add_pd(q1, _mm256_mul_pd(v1, v1));
        }
        // SAFETY: the arrays have 8 elements.
        unsafe {
            _mm256_storeu_pd(sum.as_mut_ptr(), s0);
            _mm256_storeu_pd(sum.as_mut_ptr().add(4), s1);
            _mm256_storeu_pd(sum_sq.as_mut_ptr(), q0);
            _mm256_storeu_pd(sum_sq.as_mut_ptr().add(4), q1);
        }
    }
}

/// Reusable Monte Carlo estimator of `∇log p_t(x_t)` for several identities at once.
#[derive(Debug, Clone)]
pub struct MonteCarloScore {
    dim: usize,
    coefficients: Vec<Coefficients>,
    // Batches of draws and their target scores, [draw * dim + coordinate]; grown, never shrunk.
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
            x0: Vec::new(),
            score0: Vec::new(),
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
        // Draw everything first, then score in one batch, then accumulate: each stage is a
        // tight loop over contiguous memory that the compiler vectorises.
        if self.x0.len() < n * d {
            self.x0.resize(n * d, 0.0);
            self.score0.resize(n * d, 0.0);
        }
        let (x0, score0) = (&mut self.x0[..n * d], &mut self.score0[..n * d]);
        posterior.sample_batch(rng, x0);
        target.score_batch(x0, score0);
        for (k, c) in self.coefficients.iter().enumerate() {
            for j in 0..d {
                // Shift by the first draw: the sums stay small when the variance is tiny.
                let shift = c.apply(x0[j], x_t[j], score0[j]);
                let (sum, sum_sq) = if d == 1 {
                    shifted_sums_contiguous(c, &x0[1..], x_t[0], &score0[1..], shift)
                } else {
                    let (mut sum, mut sum_sq) = (0.0, 0.0);
                    for (&x, &s) in x0[d + j..]
                        .iter()
                        .step_by(d)
                        .zip(score0[d + j..].iter().step_by(d))
                    {
                        let v = c.apply(x, x_t[j], s) - shift;
                        sum += v;
                        sum_sq += v * v;
                    }
                    (sum, sum_sq)
                };
                self.shift[k * d + j] = shift;
                self.sum[k * d + j] = sum;
                self.sum_sq[k * d + j] = sum_sq;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_and_portable_sums_agree_bit_for_bit() {
        let c = Coefficients {
            alpha: 0.8,
            a: 1.7,
            b: -0.3,
        };
        let x0: Vec<f64> = (0..203).map(|i| (i as f64 * 0.37).sin()).collect();
        let s: Vec<f64> = (0..203).map(|i| (i as f64 * 0.11).cos()).collect();
        let fast = shifted_sums_contiguous(&c, &x0, 0.2, &s, 0.05);
        let (mut sum, mut sum_sq) = ([0.0; LANES], [0.0; LANES]);
        for (i, (&x, &g)) in x0.iter().zip(&s).enumerate() {
            let v = c.apply(x, 0.2, g) - 0.05;
            sum[i % LANES] += v;
            sum_sq[i % LANES] += v * v;
        }
        let slow: (f64, f64) = (sum.iter().sum(), sum_sq.iter().sum());
        assert_eq!(fast.0.to_bits(), slow.0.to_bits());
        assert_eq!(fast.1.to_bits(), slow.1.to_bits());
    }
}
