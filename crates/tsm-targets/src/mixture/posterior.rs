//! The exact posterior `p(x_0 | x_t)` of a [`GaussianMixture`] (eq. 17; formulas in the
//! [parent module](super)).

use rand::Rng;
use tsm_core::rng::normal;
use tsm_core::schedule::{check_time, Schedule};
use tsm_core::target::ExactPosterior;
use tsm_core::target::{check_dim, Dim, PosteriorSample};

use super::kernels::place_two_components;
use super::{pick, GaussianMixture, LN_2PI};
use crate::error::check_len;
use crate::Result;

impl GaussianMixture {
    /// The exact posterior `p(x_0 | x_t)` (eq. 17).
    ///
    /// # Errors
    /// As [`GaussianMixture::posterior_into`].
    pub fn posterior(
        &self,
        schedule: &(impl Schedule + ?Sized),
        t: f64,
        x_t: &[f64],
    ) -> Result<MixturePosterior> {
        let mut post = MixturePosterior::with_shape(self.n_components(), self.dim);
        self.posterior_into(schedule, t, x_t, &mut post)?;
        Ok(post)
    }

    /// Writes the exact posterior `p(x_0 | x_t)` (eq. 17) into `post`, reusing its buffers.
    ///
    /// # Errors
    /// `Error::Core(TimeOutOfRange)` for `t ∉ [0, 1]`; [`Error::DimMismatch`] if `x_t` or
    /// `post` has the wrong shape (a posterior of a mixture with other components or
    /// dimension); `Error::Core(NonFinite)` if `x_t` is not finite.
    ///
    /// [`Error::DimMismatch`]: crate::Error::DimMismatch
    pub fn posterior_into(
        &self,
        schedule: &(impl Schedule + ?Sized),
        t: f64,
        x_t: &[f64],
        post: &mut MixturePosterior,
    ) -> Result<()> {
        check_time(t)?;
        let (d, n) = (self.dim, self.n_components());
        check_len(d, x_t.len(), "GaussianMixture::posterior (x_t)")?;
        check_len(d, post.dim, "GaussianMixture::posterior (buffer dim)")?;
        check_len(
            n,
            post.cumulative.len(),
            "GaussianMixture::posterior (buffer components)",
        )?;
        Ok(self.write_posterior(schedule, t, x_t, post)?)
    }

    /// The body of [`GaussianMixture::posterior_into`] with `tsm-core`'s errors (for
    /// [`ExactPosterior`]); `post` has this mixture's shape.
    fn write_posterior(
        &self,
        schedule: &(impl Schedule + ?Sized),
        t: f64,
        x_t: &[f64],
        post: &mut MixturePosterior,
    ) -> tsm_core::Result<()> {
        check_time(t)?;
        let (d, n) = (self.dim, self.n_components());
        check_dim(d, x_t.len(), "GaussianMixture::posterior (x_t)")?;
        debug_assert!(post.dim == d && post.cumulative.len() == n);
        if let Some(&value) = x_t.iter().find(|v| !v.is_finite()) {
            return Err(tsm_core::Error::NonFinite {
                op: "posterior x_t",
                value,
            });
        }
        let (a, s2) = (schedule.alpha(t), schedule.sigma_sq(t));
        let mut max_log = f64::NEG_INFINITY;
        for i in 0..n {
            let mut log_w = self.weights[i].ln();
            for j in 0..d {
                let k = i * d + j;
                let prior_var = self.stds[k] * self.stds[k];
                let marg_var = a * a * prior_var + s2;
                let r = x_t[j] - a * self.means[k];
                log_w -= 0.5 * (r * r / marg_var + marg_var.ln() + LN_2PI);
                post.means[k] = (s2 * self.means[k] + a * prior_var * x_t[j]) / marg_var;
                post.stds[k] = (prior_var * s2 / marg_var).sqrt();
            }
            post.cumulative[i] = log_w;
            max_log = max_log.max(log_w);
        }
        // Normalise the weights (log-sum-exp) and accumulate.
        let mut acc = 0.0;
        for c in post.cumulative.iter_mut() {
            acc += (*c - max_log).exp();
            *c = acc;
        }
        for c in post.cumulative.iter_mut() {
            *c /= acc;
        }
        if let Some(last) = post.cumulative.last_mut() {
            *last = f64::INFINITY;
        }
        Ok(())
    }
}

/// The exact posterior for [`MonteCarloScore`](tsm_core::estimator::MonteCarloScore): the
/// estimator asks for it at the `(schedule, t, x_t)` of its run.
impl ExactPosterior for GaussianMixture {
    type Posterior = MixturePosterior;

    /// As [`GaussianMixture::posterior`], with `tsm-core`'s errors: `TimeOutOfRange`,
    /// `DimMismatch` for `x_t`, `NonFinite` for a non-finite `x_t`.
    fn posterior<S: Schedule + ?Sized>(
        &self,
        schedule: &S,
        t: f64,
        x_t: &[f64],
    ) -> tsm_core::Result<MixturePosterior> {
        let mut post = MixturePosterior::with_shape(self.n_components(), self.dim);
        self.write_posterior(schedule, t, x_t, &mut post)?;
        Ok(post)
    }

    /// Rewrites `post` in place (reshaped first if it belongs to a mixture of another shape).
    fn posterior_into<S: Schedule + ?Sized>(
        &self,
        schedule: &S,
        t: f64,
        x_t: &[f64],
        post: &mut MixturePosterior,
    ) -> tsm_core::Result<()> {
        if post.dim != self.dim || post.cumulative.len() != self.n_components() {
            *post = MixturePosterior::with_shape(self.n_components(), self.dim);
        }
        self.write_posterior(schedule, t, x_t, post)
    }
}

/// The posterior `p(x_0 | x_t)` of a [`GaussianMixture`] at one `x_t` (eq. 17): a mixture with
/// weights `πᵢ,ₜ`, means `νᵢ`, standard deviations `γᵢ`.
#[derive(Debug, Clone, PartialEq)]
pub struct MixturePosterior {
    dim: usize,
    cumulative: Vec<f64>,
    means: Vec<f64>,
    stds: Vec<f64>,
}

impl MixturePosterior {
    /// An unfilled buffer for `n` components in dimension `d` (private: every public way to a
    /// `MixturePosterior` fills it, so its accessors never show an unfilled one).
    fn with_shape(n_components: usize, dim: usize) -> Self {
        Self {
            dim,
            cumulative: vec![0.0; n_components],
            means: vec![0.0; n_components * dim],
            stds: vec![0.0; n_components * dim],
        }
    }

    /// The posterior weights `πᵢ,ₜ`.
    pub fn weights(&self) -> Vec<f64> {
        let mut prev = 0.0;
        self.cumulative
            .iter()
            .map(|&c| {
                let c = if c.is_infinite() { 1.0 } else { c };
                let w = c - prev;
                prev = c;
                w
            })
            .collect()
    }

    /// The posterior mean `E[x_0 | x_t] = Σᵢ πᵢ,ₜ νᵢ`.
    pub fn mean(&self) -> Vec<f64> {
        let w = self.weights();
        (0..self.dim)
            .map(|j| {
                w.iter()
                    .enumerate()
                    .map(|(i, wi)| wi * self.means[i * self.dim + j])
                    .sum()
            })
            .collect()
    }

    /// The component means `νᵢ`, flattened `[component * dim + coordinate]`.
    pub fn component_means(&self) -> &[f64] {
        &self.means
    }

    /// The component standard deviations `γᵢ`, flattened like the means.
    pub fn component_stds(&self) -> &[f64] {
        &self.stds
    }
}

impl Dim for MixturePosterior {
    fn dim(&self) -> usize {
        self.dim
    }
}

impl PosteriorSample for MixturePosterior {
    #[inline]
    fn sample_into<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]) {
        let d = self.dim;
        let i = if self.cumulative.len() == 1 {
            0
        } else {
            pick(&self.cumulative, rng.random::<f64>())
        };
        for j in 0..d {
            let z = normal::sample(rng);
            out[j] = self.means[i * d + j] + self.stds[i * d + j] * z;
        }
    }

    fn sample_batch<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]) {
        let (d, n) = (self.dim, self.cumulative.len());
        match (d, n) {
            (1, 1) => {
                let (m, s) = (self.means[0], self.stds[0]);
                normal::fill(rng, out);
                for o in out.iter_mut() {
                    *o = m + s * *o;
                }
            }
            (1, 2) => {
                // Component 1 when a 32-bit uniform integer is ≥ ⌈π₀,ₜ 2³²⌉ (the weights are
                // resolved to 2⁻³², far below any Monte Carlo error here). The integers come in
                // blocks, so the choice is a loop of compares and selects that vectorises.
                let threshold = (self.cumulative[0] * 4_294_967_296.0).ceil() as u64;
                normal::fill(rng, out);
                let mut uniforms = [0u32; 64];
                for block in out.chunks_mut(64) {
                    let uniforms = &mut uniforms[..block.len()];
                    rng.fill(uniforms);
                    place_two_components(block, uniforms, threshold, &self.means, &self.stds);
                }
            }
            _ => {
                for o in out.chunks_exact_mut(d) {
                    self.sample_into(rng, o);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tsm_core::schedule::Cosine;
    use tsm_core::target::PosteriorSample;

    #[test]
    fn posterior_is_a_point_mass_at_t0_and_the_prior_at_t1() {
        let target = crate::named::easy_mixture();
        let post = target.posterior(&Cosine, 0.0, &[0.3]).unwrap();
        assert!(post.component_stds().iter().all(|&s| s == 0.0));
        assert!(post
            .component_means()
            .iter()
            .all(|&m| (m - 0.3).abs() < 1e-15));
        let prior = target.posterior(&Cosine, 1.0, &[0.3]).unwrap();
        assert_eq!(prior.component_stds(), &[0.8, 0.8]);
        assert!((prior.weights()[0] - 0.5).abs() < 1e-15);
    }

    #[test]
    fn batched_posterior_draws_have_the_posterior_moments() {
        // The (1, 2) fast path of sample_batch: mean within 5 standard errors of the exact one.
        use rand::SeedableRng;
        let target = crate::named::hard_mixture_same_var();
        let post = target.posterior(&Cosine, 0.6, &[0.2]).unwrap();
        let mut draws = vec![0.0; 200_001];
        post.sample_batch(&mut tsm_core::rng::FastRng::seed_from_u64(8), &mut draws);
        let n = draws.len() as f64;
        let mean = draws.iter().sum::<f64>() / n;
        let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let exact = post.mean()[0];
        assert!(
            (mean - exact).abs() < 5.0 * (var / n).sqrt(),
            "{mean} vs {exact}"
        );
    }
}
