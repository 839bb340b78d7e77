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
//! # One shape for both estimators
//! [`MonteCarloScore::run`] and
//! [`ImportanceSampledScore::run`](crate::snis::ImportanceSampledScore::run) take the same
//! arguments, `(target, schedule, t, x_t, n, rng)`, so a caller switches between
//! exact posterior sampling (a target that is [`ExactPosterior`]) and importance sampling (a
//! target known through its [`LogDensity`](crate::target::LogDensity)) by changing the type
//! only. Both keep the identities' [`Coefficients`] given at construction, and both check them
//! against `(schedule, t)` on every run ([`Error::OutOfRange`] naming `coefficients.alpha` when
//! a coefficient's `α` is not the schedule's `α_t`): coefficients computed for another time
//! are an error, not a wrong number. The Monte Carlo estimator builds the posterior
//! `p(x_0 | x_t)` itself, from the same `(schedule, t, x_t)`, so its draws cannot belong to
//! another time either.
//!
//! The check reads `α_t`: under a schedule whose `α_t` does not change with `t` (the
//! variance-exploding [`Ve`](crate::schedule::Ve), `α_t = 1`) coefficients of another time
//! cannot be told apart, so compute them with
//! [`ScoreIdentity::coefficients`](crate::identity::ScoreIdentity::coefficients) at the `t`
//! you run at.
//!
//! # Results
//! The accessors ([`MonteCarloScore::mean`], …) return [`Result`]: before the first successful
//! run, after a failed one, or after [`MonteCarloScore::set_coefficients`] there is no estimate
//! ([`Error::NoEstimate`]), and an identity index `k ≥ len()` or a coordinate
//! `j ≥ dim` is an [`Error::IndexOutOfRange`] — never a NaN or another identity's number.
//!
//! ```
//! use tsm_core::estimator::MonteCarloScore;
//! use tsm_core::identity::ScoreIdentity;
//! use tsm_core::rand::Rng;
//! use tsm_core::schedule::{Cosine, Schedule};
//! use tsm_core::target::{Dim, ExactPosterior, PosteriorSample, Score};
//!
//! /// N(0, 1) in one dimension; its posterior is N(α_t x_t, σ_t²) under a VP schedule.
//! struct StdNormal;
//! impl Dim for StdNormal {
//!     fn dim(&self) -> usize { 1 }
//! }
//! impl Score for StdNormal {
//!     fn score(&self, x: &[f64], out: &mut [f64]) { out[0] = -x[0]; }
//! }
//! struct Normal { mean: f64, std: f64 }
//! impl Dim for Normal {
//!     fn dim(&self) -> usize { 1 }
//! }
//! impl PosteriorSample for Normal {
//!     fn sample_into<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]) {
//!         out[0] = self.mean + self.std * tsm_core::rng::normal::sample(rng);
//!     }
//! }
//! impl ExactPosterior for StdNormal {
//!     type Posterior = Normal;
//!     fn posterior<S: Schedule + ?Sized>(
//!         &self, schedule: &S, t: f64, x_t: &[f64],
//!     ) -> tsm_core::Result<Normal> {
//!         Ok(Normal { mean: schedule.alpha(t) * x_t[0], std: schedule.sigma(t) })
//!     }
//! }
//!
//! let t = 0.4;
//! let mut mc = MonteCarloScore::new(1, &[ScoreIdentity::Dsi.coefficients(&Cosine, t)?]);
//! assert!(mc.mean(0, 0).is_err()); // no estimate before a run
//! mc.run(&StdNormal, &Cosine, t, &[0.7], 10_000, &mut tsm_core::rng::stream(3, 0))?;
//! // ∇log p_t(x) = −x for N(0, 1) under a variance-preserving schedule; 5 standard errors.
//! assert!((mc.mean(0, 0)? + 0.7).abs() < 5.0 * mc.std_err(0, 0)?);
//! assert!(mc.mean(1, 0).is_err() && mc.mean(0, 1).is_err()); // one identity, d = 1
//! // Coefficients of t = 0.4 at t = 0.6: a typed error, not a wrong number.
//! assert!(mc.run(&StdNormal, &Cosine, 0.6, &[0.7], 100, &mut tsm_core::rng::stream(3, 1)).is_err());
//! # Ok::<(), tsm_core::Error>(())
//! ```
//!
//! # References
//! [^1]: De Bortoli et al. (2024), *Target Score Matching*, eq. 18.

use rand::Rng;

use crate::identity::Coefficients;
use crate::schedule::{check_time, Schedule};
use crate::target::{check_dim, ExactPosterior, PosteriorSample};
use crate::{Error, Result};

const LANES: usize = 8;

/// `(Σ v, Σ v²)` with `v = L(x0[i], x_t, s[i]) − shift`, accumulated in eight lanes (lane `l`
/// takes the elements `i ≡ l mod 8`, then the lanes are added in order). The AVX-512 and AVX2
/// kernels and the portable one perform the same IEEE operations in the same order, so they agree bit for
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
    let level = crate::fastmath::level();
    #[cfg(target_arch = "x86_64")]
    let done = if level == crate::fastmath::Level::Avx512 {
        // SAFETY: `level` reports AVX-512 F only where the CPU has it; `body ≤ n` bounds every
        // load.
        unsafe {
            avx512::shifted_sums(
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
    } else if level == crate::fastmath::Level::Avx2 {
        // SAFETY: `level` reports AVX2 only where the CPU has it; `body ≤ n` bounds every load.
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

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Coefficients, LANES};

    /// The eight-lane body of [`super::shifted_sums_contiguous`] in one 512-bit register per
    /// sum (lane `l` of the register is lane `l` of the portable code); `x0.len()` is a
    /// multiple of 8.
    #[target_feature(enable = "avx512f")]
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
            _mm512_set1_pd(c.a),
            _mm512_set1_pd(c.b),
            _mm512_set1_pd(c.alpha),
        );
        let (xt, sh) = (_mm512_set1_pd(x_t), _mm512_set1_pd(shift));
        let (mut s, mut q) = (_mm512_setzero_pd(), _mm512_setzero_pd());
        for (xs, ss) in x0.chunks_exact(LANES).zip(score0.chunks_exact(LANES)) {
            // SAFETY: each chunk has 8 elements: one 512-bit load each.
            let (x, g) = unsafe { (_mm512_loadu_pd(xs.as_ptr()), _mm512_loadu_pd(ss.as_ptr())) };
            // v = a (α x − x_t) + b s − shift, as in `Coefficients::apply`.
            let v = _mm512_sub_pd(
                _mm512_add_pd(
                    _mm512_mul_pd(a, _mm512_sub_pd(_mm512_mul_pd(alpha, x), xt)),
                    _mm512_mul_pd(b, g),
                ),
                sh,
            );
            s = _mm512_add_pd(s, v);
            q = _mm512_add_pd(q, _mm512_mul_pd(v, v));
        }
        // SAFETY: the arrays have 8 elements.
        unsafe {
            _mm512_storeu_pd(sum.as_mut_ptr(), s);
            _mm512_storeu_pd(sum_sq.as_mut_ptr(), q);
        }
    }
}

/// Checks that every coefficient was computed at this `t` of `schedule`: its `alpha` must be
/// the schedule's `α_t` (to `1e-12` relative). Shared by both estimators' `run`.
///
/// # Errors
/// [`Error::OutOfRange`] naming `coefficients.alpha`.
pub(crate) fn check_coefficients(coefficients: &[Coefficients], alpha: f64) -> Result<()> {
    for c in coefficients {
        if (c.alpha - alpha).abs() > 1e-12 * alpha.abs().max(1.0) || c.alpha.is_nan() {
            return Err(Error::OutOfRange {
                name: "coefficients.alpha",
                value: c.alpha,
                allowed: "{the schedule's α_t at the t of the run}",
            });
        }
    }
    Ok(())
}

/// Checks an identity index `k < len` and a coordinate `j < dim` for the accessors.
pub(crate) fn check_index(k: usize, len: usize, j: usize, dim: usize) -> Result<()> {
    if k >= len {
        return Err(Error::IndexOutOfRange {
            what: "identity",
            index: k,
            len,
        });
    }
    if j >= dim {
        return Err(Error::IndexOutOfRange {
            what: "coordinate",
            index: j,
            len: dim,
        });
    }
    Ok(())
}

/// Reusable Monte Carlo estimator of `∇log p_t(x_t)` for several identities at once.
///
/// `P` is the posterior type of the targets it runs on ([`ExactPosterior::Posterior`]),
/// inferred from the first [`run`](Self::run); the estimator keeps one posterior and rewrites
/// it in place at every run.
#[derive(Debug, Clone)]
pub struct MonteCarloScore<P> {
    dim: usize,
    coefficients: Vec<Coefficients>,
    posterior: Option<P>,
    // Batches of draws and their target scores, [draw * dim + coordinate]; grown, never shrunk.
    x0: Vec<f64>,
    score0: Vec<f64>,
    // Indexed [identity * dim + coordinate].
    shift: Vec<f64>,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    // 0 while there is no estimate (before a run, after a failed one or new coefficients).
    draws: usize,
}

impl<P: PosteriorSample> MonteCarloScore<P> {
    /// An estimator in dimension `dim` for the identities with the given coefficients (all
    /// computed at the `t` that [`run`](Self::run) will be given).
    pub fn new(dim: usize, coefficients: &[Coefficients]) -> Self {
        let n = dim * coefficients.len();
        Self {
            dim,
            coefficients: coefficients.to_vec(),
            posterior: None,
            x0: Vec::new(),
            score0: Vec::new(),
            shift: vec![0.0; n],
            sum: vec![0.0; n],
            sum_sq: vec![0.0; n],
            draws: 0,
        }
    }

    /// Replaces the coefficients (e.g. for a new `t`), keeping the buffers. The last run's
    /// estimates belonged to the old coefficients and are dropped.
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
        self.draws = 0;
        Ok(())
    }

    /// Draws `n` samples `x_0 ~ p(x_0 | x_t)` from the target's exact posterior at time `t` of
    /// `schedule` and accumulates every identity at `(x_0, x_t)` (eq. 18).
    ///
    /// The arguments are those of
    /// [`ImportanceSampledScore::run`](crate::snis::ImportanceSampledScore::run).
    ///
    /// # Errors
    /// - [`Error::TimeOutOfRange`] for `t ∉ [0, 1]`;
    /// - [`Error::DimMismatch`] if `x_t` or the target has another dimension;
    /// - [`Error::TooFewDraws`] for `n < 2` (a standard error needs two draws);
    /// - [`Error::OutOfRange`] if a coefficient's `alpha` is not the schedule's `α_t`
    ///   (coefficients computed for another time);
    /// - the target's errors from [`ExactPosterior::posterior`] (e.g. [`Error::NonFinite`]
    ///   for a non-finite `x_t`).
    ///
    /// After an error there is no estimate (the accessors return errors) until the next
    /// successful run.
    pub fn run<T, S, R>(
        &mut self,
        target: &T,
        schedule: &S,
        t: f64,
        x_t: &[f64],
        n: usize,
        rng: &mut R,
    ) -> Result<()>
    where
        T: ExactPosterior<Posterior = P> + ?Sized,
        S: Schedule + ?Sized,
        R: Rng + ?Sized,
    {
        self.draws = 0;
        check_time(t)?;
        check_dim(self.dim, x_t.len(), "MonteCarloScore::run (x_t)")?;
        check_dim(self.dim, target.dim(), "MonteCarloScore::run (target)")?;
        if n < 2 {
            return Err(Error::TooFewDraws {
                op: "MonteCarloScore::run",
                needed: 2,
                got: n,
            });
        }
        check_coefficients(&self.coefficients, schedule.alpha(t))?;
        let posterior = match &mut self.posterior {
            Some(post) => {
                target.posterior_into(schedule, t, x_t, post)?;
                post
            }
            empty @ None => empty.insert(target.posterior(schedule, t, x_t)?),
        };
        check_dim(
            self.dim,
            posterior.dim(),
            "MonteCarloScore::run (posterior)",
        )?;
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

    /// Number of draws in the last successful [`run`](Self::run) (0 when there is no
    /// estimate).
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

    /// The dimension `d`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The flat index of `(k, j)`, once there is an estimate.
    fn index(&self, k: usize, j: usize, op: &'static str) -> Result<usize> {
        if self.draws == 0 {
            return Err(Error::NoEstimate { op });
        }
        check_index(k, self.len(), j, self.dim)?;
        Ok(k * self.dim + j)
    }

    /// The estimate (eq. 18) of identity `k`, coordinate `j`.
    ///
    /// # Errors
    /// [`Error::NoEstimate`] when there is no estimate (see the [module docs](self));
    /// [`Error::IndexOutOfRange`] for `k ≥ len()` or `j ≥ d`.
    pub fn mean(&self, k: usize, j: usize) -> Result<f64> {
        let i = self.index(k, j, "MonteCarloScore::mean")?;
        Ok(self.shift[i] + self.sum[i] / self.draws as f64)
    }

    /// The per-draw sample variance of identity `k`, coordinate `j` (divisor `N − 1`).
    ///
    /// # Errors
    /// As [`MonteCarloScore::mean`].
    pub fn draw_variance(&self, k: usize, j: usize) -> Result<f64> {
        let i = self.index(k, j, "MonteCarloScore::draw_variance")?;
        Ok(self.variance_at(i))
    }

    /// The per-draw variance at flat index `i`, once there is an estimate.
    #[inline]
    fn variance_at(&self, i: usize) -> f64 {
        let n = self.draws as f64;
        ((self.sum_sq[i] - self.sum[i] * self.sum[i] / n) / (n - 1.0)).max(0.0)
    }

    /// The estimator's variance `Σ_j Var(L_j)/N` (trace over coordinates, as in App. C).
    ///
    /// # Errors
    /// As [`MonteCarloScore::mean`].
    pub fn estimator_variance(&self, k: usize) -> Result<f64> {
        let first = self.index(k, 0, "MonteCarloScore::estimator_variance")?;
        let total = (first..first + self.dim)
            .map(|i| self.variance_at(i))
            .sum::<f64>();
        Ok(total / self.draws as f64)
    }

    /// The standard error `√(Var(L_j)/N)` of identity `k`, coordinate `j`.
    ///
    /// # Errors
    /// As [`MonteCarloScore::mean`].
    pub fn std_err(&self, k: usize, j: usize) -> Result<f64> {
        let i = self.index(k, j, "MonteCarloScore::std_err")?;
        Ok((self.variance_at(i) / self.draws as f64).sqrt())
    }

    /// The estimate of identity `k` as a vector.
    ///
    /// # Errors
    /// As [`MonteCarloScore::mean`].
    pub fn mean_vec(&self, k: usize) -> Result<Vec<f64>> {
        (0..self.dim).map(|j| self.mean(k, j)).collect()
    }

    /// The standard errors of identity `k` as a vector.
    ///
    /// # Errors
    /// As [`MonteCarloScore::mean`].
    pub fn std_err_vec(&self, k: usize) -> Result<Vec<f64>> {
        (0..self.dim).map(|j| self.std_err(k, j)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::ScoreIdentity;
    use crate::schedule::Cosine;
    use crate::target::{Dim, Score};

    /// `N(0, 1)` in one dimension: posterior `N(α x_t/D, σ²/D)`, `D = α² + σ²`, and
    /// `∇log p_t(x) = −x/D`.
    struct StdNormal;

    #[derive(Debug, Clone)]
    struct Normal {
        mean: f64,
        std: f64,
    }

    impl Dim for StdNormal {
        fn dim(&self) -> usize {
            1
        }
    }
    impl Score for StdNormal {
        fn score(&self, x: &[f64], out: &mut [f64]) {
            out[0] = -x[0];
        }
    }
    impl Dim for Normal {
        fn dim(&self) -> usize {
            1
        }
    }
    impl PosteriorSample for Normal {
        fn sample_into<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]) {
            out[0] = self.mean + self.std * crate::rng::normal::sample(rng);
        }
    }
    impl ExactPosterior for StdNormal {
        type Posterior = Normal;
        fn posterior<S: Schedule + ?Sized>(&self, s: &S, t: f64, x_t: &[f64]) -> Result<Normal> {
            check_time(t)?;
            let (a, s2) = (s.alpha(t), s.sigma_sq(t));
            let d = a * a + s2;
            Ok(Normal {
                mean: a * x_t[0] / d,
                std: (s2 / d).sqrt(),
            })
        }
    }

    fn coefficients(t: f64) -> Vec<Coefficients> {
        [ScoreIdentity::Dsi, ScoreIdentity::Tsi]
            .iter()
            .map(|id| id.coefficients(&Cosine, t))
            .collect::<Result<_>>()
            .expect("defined at 0 < t < 1")
    }

    #[test]
    fn estimates_the_exact_score_from_the_posterior_it_builds() -> Result<()> {
        // Fixed seed; each identity within 5 standard errors of ∇log p_t(x_t) = −x_t.
        let mut mc = MonteCarloScore::new(1, &coefficients(0.3));
        mc.run(
            &StdNormal,
            &Cosine,
            0.3,
            &[0.8],
            20_000,
            &mut crate::rng::stream(5, 0),
        )?;
        for k in 0..2 {
            let (mean, se) = (mc.mean(k, 0)?, mc.std_err(k, 0)?);
            assert!((mean + 0.8).abs() < 5.0 * se, "identity {k}: {mean} ± {se}");
        }
        assert_eq!(mc.draws(), 20_000);
        Ok(())
    }

    #[test]
    fn coefficients_of_another_time_are_an_error() {
        // Before, `run` took the posterior and x_t only: coefficients computed at t = 0.3 with
        // draws from the posterior at t = 0.7 returned a wrong number without complaint.
        let mut mc = MonteCarloScore::new(1, &coefficients(0.3));
        let err = mc.run(
            &StdNormal,
            &Cosine,
            0.7,
            &[0.8],
            100,
            &mut crate::rng::stream(5, 1),
        );
        assert!(
            matches!(
                err,
                Err(Error::OutOfRange {
                    name: "coefficients.alpha",
                    ..
                })
            ),
            "{err:?}"
        );
        assert!(mc.mean(0, 0).is_err(), "no estimate after a failed run");
        assert!(matches!(
            mc.run(
                &StdNormal,
                &Cosine,
                1.5,
                &[0.8],
                100,
                &mut crate::rng::stream(5, 1)
            ),
            Err(Error::TimeOutOfRange { .. })
        ));
    }

    #[test]
    fn accessors_before_a_run_are_errors_not_nan() {
        // Before, `mean` was 0/0 = NaN and `std_err` NaN.
        let mc: MonteCarloScore<Normal> = MonteCarloScore::new(1, &coefficients(0.3));
        let none = |r: Result<f64>| matches!(r, Err(Error::NoEstimate { .. }));
        assert!(none(mc.mean(0, 0)));
        assert!(none(mc.draw_variance(0, 0)));
        assert!(none(mc.std_err(0, 0)));
        assert!(none(mc.estimator_variance(0)));
        assert!(mc.mean_vec(0).is_err() && mc.std_err_vec(0).is_err());
        assert_eq!(mc.draws(), 0);
    }

    #[test]
    fn out_of_range_accessors_are_errors_not_another_identitys_number() -> Result<()> {
        // Before, mean(0, 1) in d = 1 read identity 1's estimate, and mean(2, 0) panicked.
        let mut mc = MonteCarloScore::new(1, &coefficients(0.3));
        mc.run(
            &StdNormal,
            &Cosine,
            0.3,
            &[0.8],
            100,
            &mut crate::rng::stream(5, 2),
        )?;
        let out = |r: Result<f64>| matches!(r, Err(Error::IndexOutOfRange { .. }));
        assert!(out(mc.mean(0, 1)), "coordinate past d");
        assert!(out(mc.mean(2, 0)), "identity past len()");
        assert!(out(mc.std_err(0, 1)) && out(mc.draw_variance(2, 0)));
        assert!(out(mc.estimator_variance(2)));
        assert!(mc.mean_vec(2).is_err());
        assert!(mc.mean(1, 0)?.is_finite());
        Ok(())
    }

    #[test]
    fn new_coefficients_drop_the_old_estimate() -> Result<()> {
        let mut mc = MonteCarloScore::new(1, &coefficients(0.3));
        mc.run(
            &StdNormal,
            &Cosine,
            0.3,
            &[0.8],
            100,
            &mut crate::rng::stream(5, 3),
        )?;
        mc.set_coefficients(&coefficients(0.6))?;
        assert!(mc.mean(0, 0).is_err(), "estimate of the old coefficients");
        mc.run(
            &StdNormal,
            &Cosine,
            0.6,
            &[0.8],
            100,
            &mut crate::rng::stream(5, 3),
        )?;
        assert!(mc.mean(0, 0)?.is_finite());
        Ok(())
    }

    #[test]
    fn vector_and_portable_sums_agree_bit_for_bit() {
        let c = Coefficients {
            alpha: 0.8,
            a: 1.7,
            b: -0.3,
        };
        let x0: Vec<f64> = (0..203).map(|i| (i as f64 * 0.37).sin()).collect();
        let s: Vec<f64> = (0..203).map(|i| (i as f64 * 0.11).cos()).collect();
        // Each dispatch level the CPU has, forced in turn, against the portable loop below.
        for level in crate::fastmath::available_levels() {
            let fast = crate::fastmath::with_cap(Some(level), || {
                shifted_sums_contiguous(&c, &x0, 0.2, &s, 0.05)
            });
            let slow = portable(&c, &x0, &s);
            assert_eq!(fast.0.to_bits(), slow.0.to_bits(), "{level:?}");
            assert_eq!(fast.1.to_bits(), slow.1.to_bits(), "{level:?}");
        }
    }

    fn portable(c: &Coefficients, x0: &[f64], s: &[f64]) -> (f64, f64) {
        let (mut sum, mut sum_sq) = ([0.0; LANES], [0.0; LANES]);
        for (i, (&x, &g)) in x0.iter().zip(s).enumerate() {
            let v = c.apply(x, 0.2, g) - 0.05;
            sum[i % LANES] += v;
            sum_sq[i % LANES] += v * v;
        }
        (sum.iter().sum(), sum_sq.iter().sum())
    }
}
