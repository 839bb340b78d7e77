//! Gaussian mixtures with diagonal covariances, their noised marginals and their posteriors.
//!
//! ```text
//! p_0(x)        = Σᵢ πᵢ N(x; μᵢ, diag sᵢ²)
//! p_t(x)        = Σᵢ πᵢ N(x; α_t μᵢ, diag(α_t² sᵢ² + σ_t²))                 (paper §4.1)
//! p(x_0 | x_t)  = Σᵢ πᵢ,ₜ N(x_0; νᵢ, diag γᵢ²)                              (eq. 17)
//!   πᵢ,ₜ ∝ πᵢ N(x_t; α_t μᵢ, diag(α_t² sᵢ² + σ_t²))
//!   νᵢ   = (σ_t² μᵢ + α_t sᵢ² x_t) / (σ_t² + α_t² sᵢ²)
//!   γᵢ²  = sᵢ² σ_t² / (σ_t² + α_t² sᵢ²)
//! ```
//!
//! Reading taken of eq. 17, whose printed form is ambiguous: with `c²ᵢ,ₜ = α_t sᵢ²` (the paper's
//! `α_t(σᵢ² + μᵢ²) − μᵢ μᵢ,ₜ`) and `σᵢ,ₜ² = α_t² sᵢ² + σ_t²`, the paper's
//! `νᵢ = μᵢ + c²ᵢ,ₜ/σᵢ,ₜ² (x_t − μᵢ,ₜ)` and `γᵢ² = sᵢ² − c⁴ᵢ,ₜ/σᵢ,ₜ²` are the forms above
//! (Gaussian conditioning of `x_0` on `x_t = α_t x_0 + σ_t ε`). They are finite at both ends:
//! at `σ_t = 0` the posterior is `δ(x_0 − x_t/α_t)`, at `α_t = 0` it is the prior.
//!
//! # References
//! [^1]: De Bortoli et al. (2024), *Target Score Matching*, §4.1, eq. 17.
//!
//! Layout: this file has the type, its constructors, moments, capabilities (score, log density,
//! samples) and the exact noised marginal; `posterior.rs` the exact posterior of eq. 17
//! ([`MixturePosterior`]); `softmax.rs` the streaming log-sum-exp behind the scores and the
//! log density; `kernels.rs` the vectorised batch kernels (1-D scores, two-component
//! posterior draws) with their AVX2 dispatch.

use rand::Rng;
use tsm_core::identity::ScoreIdentity;
use tsm_core::rng::normal;
use tsm_core::schedule::{check_time, Schedule};
use tsm_core::target::{Dim, LogDensity, Sample, Score};

use crate::error::check_len;
use crate::{Error, Result};

mod kernels;
mod posterior;
mod softmax;

pub use posterior::MixturePosterior;
use softmax::StreamingSoftmax;

const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// A Gaussian mixture on `ℝ^d` with diagonal covariances.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianMixture {
    dim: usize,
    weights: Vec<f64>,
    cumulative: Vec<f64>,
    // Flattened [component * dim + coordinate].
    means: Vec<f64>,
    stds: Vec<f64>,
    inv_vars: Vec<f64>,
    // log πᵢ − Σⱼ log sᵢⱼ − d/2 log 2π.
    log_norms: Vec<f64>,
}

impl GaussianMixture {
    /// A mixture with diagonal covariances.
    ///
    /// # Parameters
    /// - `weights` (`πᵢ`): finite, `≥ 0`, summing to 1 within `1e-9`;
    /// - `means` (`μᵢ`): one finite vector of length `d ≥ 1` per component;
    /// - `stds` (`sᵢ`): one vector of length `d` per component, entries finite and `> 0`.
    ///
    /// # Errors
    /// [`Error::Empty`], [`Error::InvalidWeights`], [`Error::NegativeWeight`],
    /// [`Error::DimMismatch`], [`Error::NonFiniteMean`], [`Error::NonPositiveStd`].
    ///
    /// # Examples
    /// ```
    /// use tsm_targets::GaussianMixture;
    /// let ok = GaussianMixture::new(vec![0.5, 0.5], vec![vec![-1.0], vec![1.0]], vec![vec![0.5], vec![0.5]]);
    /// assert!(ok.is_ok());
    /// let bad = GaussianMixture::new(vec![0.5, 0.6], vec![vec![-1.0], vec![1.0]], vec![vec![0.5], vec![0.5]]);
    /// assert!(bad.is_err());
    /// ```
    pub fn new(weights: Vec<f64>, means: Vec<Vec<f64>>, stds: Vec<Vec<f64>>) -> Result<Self> {
        let n = weights.len();
        if n == 0 {
            return Err(Error::Empty);
        }
        check_len(n, means.len(), "GaussianMixture::new (means per component)")?;
        check_len(n, stds.len(), "GaussianMixture::new (stds per component)")?;
        for (index, &value) in weights.iter().enumerate() {
            if !(value.is_finite() && value >= 0.0) {
                return Err(Error::NegativeWeight { index, value });
            }
        }
        let sum: f64 = weights.iter().sum();
        if (sum - 1.0).abs() > 1e-9 {
            return Err(Error::InvalidWeights { sum });
        }
        let dim = means[0].len();
        if dim == 0 {
            return Err(Error::DimMismatch {
                expected: 1,
                got: 0,
                op: "GaussianMixture::new (dimension)",
            });
        }
        for (component, (m, s)) in means.iter().zip(&stds).enumerate() {
            check_len(dim, m.len(), "GaussianMixture::new (mean length)")?;
            check_len(dim, s.len(), "GaussianMixture::new (std length)")?;
            for (coordinate, (&mv, &sv)) in m.iter().zip(s).enumerate() {
                if !mv.is_finite() {
                    return Err(Error::NonFiniteMean {
                        component,
                        coordinate,
                        value: mv,
                    });
                }
                if !(sv.is_finite() && sv > 0.0) {
                    return Err(Error::NonPositiveStd {
                        component,
                        coordinate,
                        value: sv,
                    });
                }
            }
        }
        Ok(Self::from_validated(
            dim,
            weights,
            means.concat(),
            stds.concat(),
        ))
    }

    /// A mixture with isotropic components `N(μᵢ, sᵢ² I)`; errors as [`GaussianMixture::new`].
    pub fn isotropic(weights: Vec<f64>, means: Vec<Vec<f64>>, stds: Vec<f64>) -> Result<Self> {
        check_len(
            means.len(),
            stds.len(),
            "GaussianMixture::isotropic (stds per component)",
        )?;
        let stds = means
            .iter()
            .zip(&stds)
            .map(|(m, &s)| vec![s; m.len()])
            .collect();
        Self::new(weights, means, stds)
    }

    /// A one-dimensional mixture; errors as [`GaussianMixture::new`].
    pub fn univariate(weights: &[f64], means: &[f64], stds: &[f64]) -> Result<Self> {
        check_len(
            weights.len(),
            means.len(),
            "GaussianMixture::univariate (means)",
        )?;
        check_len(
            weights.len(),
            stds.len(),
            "GaussianMixture::univariate (stds)",
        )?;
        Self::new(
            weights.to_vec(),
            means.iter().map(|&m| vec![m]).collect(),
            stds.iter().map(|&s| vec![s]).collect(),
        )
    }

    /// The isotropic Gaussian `N(0, s² I_d)`; errors for `d = 0` or `s ≤ 0`.
    pub fn gaussian(dim: usize, std: f64) -> Result<Self> {
        Self::isotropic(vec![1.0], vec![vec![0.0; dim]], vec![std])
    }

    fn from_validated(dim: usize, weights: Vec<f64>, means: Vec<f64>, stds: Vec<f64>) -> Self {
        let mut acc = 0.0;
        let mut cumulative: Vec<f64> = weights
            .iter()
            .map(|w| {
                acc += w;
                acc
            })
            .collect();
        // Guard the last bin against rounding so that a uniform draw always lands somewhere.
        if let Some(last) = cumulative.last_mut() {
            *last = f64::INFINITY;
        }
        let inv_vars = stds.iter().map(|s| 1.0 / (s * s)).collect();
        let log_norms = weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                w.ln()
                    - stds[i * dim..(i + 1) * dim]
                        .iter()
                        .map(|s| s.ln())
                        .sum::<f64>()
                    - 0.5 * dim as f64 * LN_2PI
            })
            .collect();
        Self {
            dim,
            weights,
            cumulative,
            means,
            stds,
            inv_vars,
            log_norms,
        }
    }

    /// Number of components.
    pub fn n_components(&self) -> usize {
        self.weights.len()
    }
    /// The weights `πᵢ`.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }
    /// The mean `μᵢ` of component `i`; `None` for `i ≥ n_components()` (as `slice::get`).
    pub fn component_mean(&self, i: usize) -> Option<&[f64]> {
        self.means.chunks_exact(self.dim).nth(i)
    }
    /// The standard deviations `sᵢ` of component `i`; `None` for `i ≥ n_components()`.
    pub fn component_std(&self, i: usize) -> Option<&[f64]> {
        self.stds.chunks_exact(self.dim).nth(i)
    }

    /// The mean `Σ πᵢ μᵢ`.
    pub fn mean(&self) -> Vec<f64> {
        (0..self.dim)
            .map(|j| {
                (0..self.n_components())
                    .map(|i| self.weights[i] * self.means[i * self.dim + j])
                    .sum()
            })
            .collect()
    }

    /// `σ_data²`: the variance of the mixture, averaged over coordinates.
    pub fn variance_per_dim(&self) -> f64 {
        let mean = self.mean();
        let total: f64 = (0..self.dim)
            .map(|j| {
                (0..self.n_components())
                    .map(|i| {
                        let k = i * self.dim + j;
                        self.weights[i] * (self.stds[k].powi(2) + (self.means[k] - mean[j]).powi(2))
                    })
                    .sum::<f64>()
            })
            .sum();
        total / self.dim as f64
    }

    /// `σ_mode² = Σ πᵢ sᵢ²`, averaged over coordinates.
    pub fn mode_variance(&self) -> f64 {
        let total: f64 = (0..self.n_components())
            .map(|i| {
                let stds = &self.stds[i * self.dim..(i + 1) * self.dim];
                self.weights[i] * stds.iter().map(|s| s * s).sum::<f64>()
            })
            .sum();
        total / self.dim as f64
    }

    /// The four identities of the paper's Figs. 2 and 4 for this target, in the paper's order:
    /// DSI, TSI, `κ` with this target's `σ_data²`, and `κ̄` with its `σ_mode²`.
    pub fn figure_identities(&self) -> [ScoreIdentity; 4] {
        [
            ScoreIdentity::Dsi,
            ScoreIdentity::Tsi,
            ScoreIdentity::kappa(self.variance_per_dim()),
            ScoreIdentity::kappa_bar(self.mode_variance()),
        ]
    }

    /// `log πᵢ + log N(x; μᵢ, diag sᵢ²)` for component `i` (no checks).
    #[inline(always)]
    fn component_log_density(&self, i: usize, x: &[f64]) -> f64 {
        let d = self.dim;
        let (m, iv) = (
            &self.means[i * d..(i + 1) * d],
            &self.inv_vars[i * d..(i + 1) * d],
        );
        let mut q = 0.0;
        for j in 0..d {
            let r = x[j] - m[j];
            q += r * r * iv[j];
        }
        self.log_norms[i] - 0.5 * q
    }

    /// The exact noised marginal `p_t` (a mixture with means `α_t μᵢ`, variances
    /// `α_t² sᵢ² + σ_t²`).
    ///
    /// # Errors
    /// `Error::Core(TimeOutOfRange)` for `t ∉ [0, 1]`.
    pub fn noised(&self, schedule: &(impl Schedule + ?Sized), t: f64) -> Result<Self> {
        check_time(t)?;
        let (a, s2) = (schedule.alpha(t), schedule.sigma_sq(t));
        let means = self.means.iter().map(|m| a * m).collect();
        let stds = self
            .stds
            .iter()
            .map(|s| (a * a * s * s + s2).sqrt())
            .collect();
        Ok(Self::from_validated(
            self.dim,
            self.weights.clone(),
            means,
            stds,
        ))
    }

    /// The score of the exact noised marginal, `∇log p_t(x)`, without building `p_t`
    /// (no allocation; the same value as `self.noised(schedule, t)?.score(x, out)`).
    ///
    /// `t` and the lengths are taken on trust (checked in debug builds): validate `t` with
    /// [`check_time`] once outside the loop.
    pub fn noised_score(
        &self,
        schedule: &(impl Schedule + ?Sized),
        t: f64,
        x: &[f64],
        out: &mut [f64],
    ) {
        debug_assert!(check_time(t).is_ok());
        debug_assert!(x.len() == self.dim && out.len() == self.dim);
        let (a, s2) = (schedule.alpha(t), schedule.sigma_sq(t));
        let d = self.dim;
        out.fill(0.0);
        let mut softmax = StreamingSoftmax::new();
        for i in 0..self.n_components() {
            let mut l = self.weights[i].ln() - 0.5 * d as f64 * LN_2PI;
            for j in 0..d {
                let k = i * d + j;
                let var = a * a * self.stds[k] * self.stds[k] + s2;
                let r = x[j] - a * self.means[k];
                l -= 0.5 * (r * r / var + var.ln());
            }
            let w = softmax.push(l, out);
            for j in 0..d {
                let k = i * d + j;
                let var = a * a * self.stds[k] * self.stds[k] + s2;
                out[j] -= w * (x[j] - a * self.means[k]) / var;
            }
        }
        let total = softmax.total();
        out.iter_mut().for_each(|o| *o /= total);
    }
}

/// Picks a component by inverse CDF on cumulative weights whose last entry is `+∞`.
#[inline(always)]
fn pick(cumulative: &[f64], u: f64) -> usize {
    // Branch-free for the common 1–2 component case: count the bins below u.
    cumulative.iter().take_while(|&&c| c <= u).count()
}

impl Dim for GaussianMixture {
    fn dim(&self) -> usize {
        self.dim
    }
}

impl Score for GaussianMixture {
    /// `∇log p(x) = Σᵢ rᵢ(x) · (−(x − μᵢ)/sᵢ²)`, `rᵢ` the responsibilities, by a one-pass
    /// streaming log-sum-exp (no allocation).
    fn score(&self, x: &[f64], out: &mut [f64]) {
        debug_assert_eq!(x.len(), self.dim);
        debug_assert_eq!(out.len(), self.dim);
        let d = self.dim;
        if self.n_components() == 1 {
            for j in 0..d {
                out[j] = -(x[j] - self.means[j]) * self.inv_vars[j];
            }
            return;
        }
        out.fill(0.0);
        let mut softmax = StreamingSoftmax::new();
        for i in 0..self.n_components() {
            let l = self.component_log_density(i, x);
            let (m, iv) = (
                &self.means[i * d..(i + 1) * d],
                &self.inv_vars[i * d..(i + 1) * d],
            );
            let w = softmax.push(l, out);
            for j in 0..d {
                out[j] -= w * (x[j] - m[j]) * iv[j];
            }
        }
        let inv = 1.0 / softmax.total();
        out.iter_mut().for_each(|o| *o *= inv);
    }

    fn score_batch(&self, xs: &[f64], out: &mut [f64]) {
        debug_assert_eq!(xs.len(), out.len());
        if self.dim == 1 {
            self.score_batch_1d(xs, out);
        } else {
            for (x, o) in xs
                .chunks_exact(self.dim)
                .zip(out.chunks_exact_mut(self.dim))
            {
                self.score(x, o);
            }
        }
    }
}

impl LogDensity for GaussianMixture {
    /// The normalised `log p(x)`, by log-sum-exp.
    fn log_density(&self, x: &[f64]) -> f64 {
        debug_assert_eq!(x.len(), self.dim);
        let mut softmax = StreamingSoftmax::new();
        for i in 0..self.n_components() {
            softmax.push(self.component_log_density(i, x), &mut []);
        }
        softmax.log_total()
    }
}

impl Sample for GaussianMixture {
    fn sample_into<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]) {
        let i = pick(&self.cumulative, rng.random::<f64>());
        let d = self.dim;
        for j in 0..d {
            let z = normal::sample(rng);
            out[j] = self.means[i * d + j] + self.stds[i * d + j] * z;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsm_core::schedule::Cosine;

    #[test]
    fn bad_input_is_a_typed_error() {
        let m = |w: Vec<f64>, mu: Vec<Vec<f64>>, s: Vec<Vec<f64>>| GaussianMixture::new(w, mu, s);
        assert!(matches!(
            m(
                vec![0.5, 0.6],
                vec![vec![0.0], vec![1.0]],
                vec![vec![1.0], vec![1.0]]
            ),
            Err(Error::InvalidWeights { .. })
        ));
        assert!(matches!(
            m(
                vec![1.5, -0.5],
                vec![vec![0.0], vec![1.0]],
                vec![vec![1.0], vec![1.0]]
            ),
            Err(Error::NegativeWeight { index: 1, .. })
        ));
        assert!(matches!(
            m(vec![1.0], vec![vec![0.0]], vec![vec![0.0]]),
            Err(Error::NonPositiveStd {
                component: 0,
                coordinate: 0,
                ..
            })
        ));
        assert!(matches!(
            m(vec![1.0], vec![vec![0.0]], vec![vec![-1.0]]),
            Err(Error::NonPositiveStd { .. })
        ));
        assert!(matches!(
            m(
                vec![0.5, 0.5],
                vec![vec![0.0, 1.0], vec![1.0]],
                vec![vec![1.0, 1.0], vec![1.0]]
            ),
            Err(Error::DimMismatch { .. })
        ));
        assert!(matches!(
            m(vec![1.0], vec![vec![f64::NAN]], vec![vec![1.0]]),
            Err(Error::NonFiniteMean { .. })
        ));
        assert!(matches!(m(vec![], vec![], vec![]), Err(Error::Empty)));
        assert!(matches!(
            GaussianMixture::univariate(&[1.0], &[0.0, 1.0], &[1.0]),
            Err(Error::DimMismatch { .. })
        ));
        assert!(matches!(
            GaussianMixture::isotropic(vec![1.0], vec![vec![0.0]], vec![1.0, 2.0]),
            Err(Error::DimMismatch { .. })
        ));
        let g = GaussianMixture::gaussian(2, 1.0).unwrap();
        assert!(matches!(
            g.noised(&Cosine, 1.5),
            Err(Error::Core(tsm_core::Error::TimeOutOfRange { .. }))
        ));
        assert!(matches!(
            g.posterior(&Cosine, 0.5, &[0.0]),
            Err(Error::DimMismatch { .. })
        ));
        assert!(matches!(
            g.posterior(&Cosine, -0.1, &[0.0, 0.0]),
            Err(Error::Core(_))
        ));
        assert!(matches!(
            g.posterior(&Cosine, 0.5, &[f64::NAN, 0.0]),
            Err(Error::Core(_))
        ));
        assert!(crate::named::by_name("banana")
            .unwrap_err()
            .to_string()
            .contains("unit_gaussian, easy_mixture"));
    }

    #[test]
    fn noised_score_equals_the_score_of_the_noised_mixture() {
        for name in crate::named::NAMES {
            let target = crate::named::by_name(name).unwrap();
            for t in [0.0, 0.3, 0.99, 1.0] {
                let p_t = target.noised(&Cosine, t).unwrap();
                let x = vec![0.37; target.dim()];
                let (mut a, mut b) = (vec![0.0; x.len()], vec![0.0; x.len()]);
                p_t.score(&x, &mut a);
                target.noised_score(&Cosine, t, &x, &mut b);
                for (u, v) in a.iter().zip(&b) {
                    assert!(
                        (u - v).abs() <= 1e-12 * (1.0 + u.abs()),
                        "{name} t={t}: {u} vs {v}"
                    );
                }
            }
        }
    }

    #[test]
    fn component_accessors_past_the_end_are_none() {
        // Before, component_mean(i) panicked for i ≥ n_components() (slice index out of range).
        let m = GaussianMixture::isotropic(
            vec![0.25, 0.75],
            vec![vec![1.0, 2.0], vec![-3.0, 4.0]],
            vec![0.5, 2.0],
        )
        .unwrap();
        assert_eq!(m.component_mean(1), Some(&[-3.0, 4.0][..]));
        assert_eq!(m.component_std(0), Some(&[0.5, 0.5][..]));
        assert_eq!(m.component_mean(2), None);
        assert_eq!(m.component_std(2), None);
        assert_eq!(m.component_mean(usize::MAX), None);
    }

    #[test]
    fn named_targets_have_unit_variance() {
        for name in crate::named::FIGURE_TARGETS {
            let t = crate::named::by_name(name).unwrap();
            assert!((t.variance_per_dim() - 1.0).abs() < 1e-12, "{name}");
        }
        let hard = crate::named::hard_mixture_diff_var();
        assert!((hard.mode_variance() - (0.01 + 0.0625) / 2.0).abs() < 1e-15);
    }

    #[test]
    fn samples_have_the_mixture_moments() {
        // Mean and variance of 100k draws within 5 standard errors (SE of the variance ≈ √(μ₄/n)).
        use rand::SeedableRng;
        let target = crate::named::hard_mixture_diff_var();
        let mut rng = tsm_core::rng::FastRng::seed_from_u64(2);
        let n = 100_000;
        let mut x = [0.0];
        let (mut s1, mut s2, mut s4) = (0.0, 0.0, 0.0);
        for _ in 0..n {
            target.sample_into(&mut rng, &mut x);
            s1 += x[0];
            s2 += x[0] * x[0];
            s4 += x[0].powi(4);
        }
        let nf = n as f64;
        let mean = s1 / nf;
        assert!(mean.abs() < 5.0 * (1.0 / nf).sqrt(), "{mean}");
        let var = s2 / nf - mean * mean;
        assert!(
            (var - 1.0).abs() < 5.0 * ((s4 / nf - 1.0) / nf).sqrt(),
            "{var}"
        );
    }
}
