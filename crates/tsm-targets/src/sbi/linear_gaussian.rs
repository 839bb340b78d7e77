//! `linear_gaussian`: a linear-Gaussian simulator with one latent layer, where everything is
//! exact — the posterior, the noised posterior score, the optimal weight, and the posterior
//! of the latents given `(θ_t, x)`.
//!
//! `d = 4`; `θ ~ N(0, I)`, `z ~ N(θ, a² I)`, `x ~ N(z, b² I)` with `a = 0.5`, `b = 0.2`.
//!
//! - Joint score: `∇_θ log p(θ, z, x) = −θ + (z − θ)/a²`; `F = E‖·‖² = d (1 + 1/a²) = 20`
//!   (`−θ` and `z − θ` are independent with variances 1 and `a²` per coordinate).
//! - Posterior: `x | θ ~ N(θ, c² I)` with `c² = a² + b² = 0.29`, so `p(θ | x)` is Gaussian
//!   with precision `1 + 1/c²` and mean `x/(1 + c²)`; per coordinate the variance is
//!   `v = c²/(1 + c²) = 0.29/1.29`.
//! - Noised posterior: `θ_t | x ~ N(α_t x/(1 + c²), (α_t² v + σ_t²) I)`, so
//!   `∇log p_t(θ_t | x) = −(θ_t − α_t x/(1 + c²))/(α_t² v + σ_t²)`.
//! - Optimal weight: `w_t* = 5 σ_t²/(5 σ_t² + α_t²)`.
//! - Per coordinate, with `k_t = 1/(α_t² v + σ_t²)`, the targets' variances about the score are
//!   `E(A − s)² = 1/σ_t² − k_t`, `E(B − s)² = 5/α_t² − k_t`,
//!   `E(y* − s)² = 5/(α_t² + 5σ_t²) − k_t` (times `d` for squared norms).
//!
//! The posterior of the latents given a noised parameter, used to check the LTSM identity
//! (Ko & Geffner, 2024, Prop. 3.1) exactly: `θ₀ | θ_t, x` is Gaussian with precision
//! `P = 1 + 1/c² + α_t²/σ_t²` and mean `(x/c² + α_t θ_t/σ_t²)/P` (prior, the likelihood of `x`
//! with `z` integrated out, and that of `θ_t`); then `z | θ₀, x` (independent of `θ_t`) has
//! precision `1/a² + 1/b²` and mean `(θ₀/a² + x/b²)/(1/a² + 1/b²)`
//! ([`LinearGaussian::sample_latent_posterior`]).

use tsm_core::rand::Rng;
use tsm_core::rng::normal;
use tsm_core::sampler::ConditionalScore;
use tsm_core::schedule::{check_time, Schedule};
use tsm_core::simulator::{JointLogDensity, Simulator};
use tsm_core::target::{check_dim, Dim};

use super::{DiagonalGaussian, Posterior, SbiTask, Task};

/// The `linear_gaussian` task (see the [module docs](self)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinearGaussian;

const A2: f64 = LinearGaussian::LATENT_SD * LinearGaussian::LATENT_SD;
const B2: f64 = LinearGaussian::NOISE_SD * LinearGaussian::NOISE_SD;
const C2: f64 = A2 + B2;

impl LinearGaussian {
    /// `d = k = 4`.
    pub const DIM: usize = 4;
    /// `a = 0.5`: `z ~ N(θ, a² I)`.
    pub const LATENT_SD: f64 = 0.5;
    /// `b = 0.2`: `x ~ N(z, b² I)`.
    pub const NOISE_SD: f64 = 0.2;
    /// `F = d (1 + 1/a²) = 20`, exactly.
    pub const SCORE_CONSTANT: f64 = 20.0;

    /// The posterior variance per coordinate, `v = c²/(1 + c²)`, `c² = a² + b²`.
    pub fn posterior_variance() -> f64 {
        C2 / (1.0 + C2)
    }

    /// The posterior mean `x/(1 + c²)` at an observation (`x.len() == 4`, unchecked).
    fn posterior_mean(x: &[f64]) -> impl Iterator<Item = f64> + '_ {
        x.iter().map(|&v| v / (1.0 + C2))
    }

    /// The exact noised posterior score `∇log p_t(θ_t | x) = −(θ_t − α_t x/(1 + c²))/(α_t² v +
    /// σ_t²)` into `out`.
    ///
    /// # Errors
    /// [`tsm_core::Error::TimeOutOfRange`] for `t ∉ [0, 1]`,
    /// [`tsm_core::Error::DimMismatch`] unless `theta_t`, `x`, `out` have 4 values.
    pub fn noised_posterior_score(
        &self,
        schedule: &(impl Schedule + ?Sized),
        t: f64,
        theta_t: &[f64],
        x: &[f64],
        out: &mut [f64],
    ) -> tsm_core::Result<()> {
        check_time(t)?;
        check_dim(Self::DIM, theta_t.len(), "noised_posterior_score theta_t")?;
        check_dim(Self::DIM, x.len(), "noised_posterior_score x")?;
        check_dim(Self::DIM, out.len(), "noised_posterior_score out")?;
        let alpha = schedule.alpha(t);
        let var = alpha * alpha * Self::posterior_variance() + schedule.sigma_sq(t);
        for ((o, &th), m) in out.iter_mut().zip(theta_t).zip(Self::posterior_mean(x)) {
            *o = -(th - alpha * m) / var;
        }
        Ok(())
    }

    /// One exact draw of `(θ₀, z) | θ_t, x` (see the [module docs](self)) into `theta0` and
    /// `z`. At `σ_t = 0`, `θ₀ = θ_t/α_t`.
    ///
    /// # Errors
    /// [`tsm_core::Error::TimeOutOfRange`] for `t ∉ [0, 1]`,
    /// [`tsm_core::Error::DimMismatch`] unless every slice has 4 values.
    #[allow(clippy::too_many_arguments)]
    pub fn sample_latent_posterior<R: Rng + ?Sized>(
        &self,
        schedule: &(impl Schedule + ?Sized),
        t: f64,
        theta_t: &[f64],
        x: &[f64],
        rng: &mut R,
        theta0: &mut [f64],
        z: &mut [f64],
    ) -> tsm_core::Result<()> {
        check_time(t)?;
        for (len, what) in [
            (theta_t.len(), "sample_latent_posterior theta_t"),
            (x.len(), "sample_latent_posterior x"),
            (theta0.len(), "sample_latent_posterior theta0"),
            (z.len(), "sample_latent_posterior z"),
        ] {
            check_dim(Self::DIM, len, what)?;
        }
        let (alpha, sigma_sq) = (schedule.alpha(t), schedule.sigma_sq(t));
        let z_precision = 1.0 / A2 + 1.0 / B2;
        for j in 0..Self::DIM {
            theta0[j] = if sigma_sq == 0.0 {
                theta_t[j] / alpha
            } else {
                let precision = 1.0 + 1.0 / C2 + alpha * alpha / sigma_sq;
                let mean = (x[j] / C2 + alpha * theta_t[j] / sigma_sq) / precision;
                mean + normal::sample(rng) / precision.sqrt()
            };
            let mean = (theta0[j] / A2 + x[j] / B2) / z_precision;
            z[j] = mean + normal::sample(rng) / z_precision.sqrt();
        }
        Ok(())
    }
}

impl Dim for LinearGaussian {
    fn dim(&self) -> usize {
        Self::DIM
    }
}

impl Simulator for LinearGaussian {
    /// `z ∈ ℝ⁴`.
    type Latent = [f64; 4];

    fn observation_dim(&self) -> usize {
        Self::DIM
    }

    fn new_latent(&self) -> [f64; 4] {
        [0.0; 4]
    }

    fn sample_prior<R: Rng + ?Sized>(&self, rng: &mut R, theta: &mut [f64]) {
        normal::fill(rng, theta);
    }

    fn simulate_from<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        theta: &[f64],
        z: &mut [f64; 4],
        x: &mut [f64],
    ) {
        for j in 0..Self::DIM {
            z[j] = theta[j] + Self::LATENT_SD * normal::sample(rng);
            x[j] = z[j] + Self::NOISE_SD * normal::sample(rng);
        }
    }

    /// `−θ + (z − θ)/a²`.
    fn joint_score(&self, theta: &[f64], z: &[f64; 4], _x: &[f64], out: &mut [f64]) {
        for j in 0..Self::DIM {
            out[j] = -theta[j] + (z[j] - theta[j]) / A2;
        }
    }
}

impl JointLogDensity for LinearGaussian {
    /// `log N(θ; 0, I) + log N(z; θ, a² I) + log N(x; z, b² I)`, normalised.
    fn joint_log_density(&self, theta: &[f64], z: &[f64; 4], x: &[f64]) -> f64 {
        let d = Self::DIM as f64;
        let ln_2pi = (2.0 * std::f64::consts::PI).ln();
        let mut l = -1.5 * d * ln_2pi - d * (A2.ln() + B2.ln()) / 2.0;
        for j in 0..Self::DIM {
            l -= 0.5
                * (theta[j].powi(2) + (z[j] - theta[j]).powi(2) / A2 + (x[j] - z[j]).powi(2) / B2);
        }
        l
    }
}

impl Task for LinearGaussian {
    fn task(&self) -> SbiTask {
        SbiTask::LinearGaussian
    }

    /// `N(x/(1 + c²), v I)`, exactly.
    fn reference_posterior(&self, x: &[f64]) -> crate::Result<Posterior> {
        self.check_observation(x)?;
        Ok(Posterior::Gaussian(DiagonalGaussian {
            mean: Self::posterior_mean(x).collect(),
            sd: vec![Self::posterior_variance().sqrt(); Self::DIM],
        }))
    }
}

/// The exact noised posterior score of [`LinearGaussian`] as a [`ConditionalScore`]
/// (`(θ_t, t, x) ↦ ∇log p_t(θ_t | x)`): drives the samplers of `tsm_core::sampler` with the
/// exact score, the reference for a trained conditional network.
#[derive(Debug, Clone, Copy)]
pub struct LinearGaussianScore<S> {
    /// The noising schedule.
    pub schedule: S,
}

impl<S> Dim for LinearGaussianScore<S> {
    fn dim(&self) -> usize {
        LinearGaussian::DIM
    }
}

impl<S: Schedule> ConditionalScore for LinearGaussianScore<S> {
    fn condition_dim(&self) -> usize {
        LinearGaussian::DIM
    }

    /// # Errors
    /// [`tsm_core::Error::TimeOutOfRange`] for `t ∉ [0, 1]`,
    /// [`tsm_core::Error::DimMismatch`] for buffers of different row counts.
    fn conditional_score(
        &mut self,
        x: &[f64],
        t: f64,
        condition: &[f64],
        out: &mut [f64],
    ) -> tsm_core::Result<()> {
        check_dim(x.len(), out.len(), "LinearGaussianScore out")?;
        check_dim(x.len(), condition.len(), "LinearGaussianScore condition")?;
        check_dim(
            x.len() / 4 * 4,
            x.len(),
            "LinearGaussianScore x (rows of 4)",
        )?;
        for ((th, c), o) in x
            .chunks_exact(4)
            .zip(condition.chunks_exact(4))
            .zip(out.chunks_exact_mut(4))
        {
            LinearGaussian.noised_posterior_score(&self.schedule, t, th, c, o)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsm_core::rng::stream;
    use tsm_core::schedule::Cosine;

    #[test]
    fn the_joint_score_is_the_gradient_of_the_joint_log_density() {
        // Quadratic log-density: central differences are exact up to rounding (1e-6 for h = 1e-4
        // and log-densities of order 10², rounding error ~ 1e-14·10²/1e-4).
        let task = LinearGaussian;
        let mut rng = stream(1, 0);
        let (mut th, mut z, mut x, mut g, mut fd) =
            ([0.0; 4], [0.0; 4], [0.0; 4], [0.0; 4], [0.0; 4]);
        for _ in 0..10 {
            task.simulate(&mut rng, &mut th, &mut z, &mut x, &mut g);
            tsm_core::simulator::finite_difference_joint_score(&task, &th, &z, &x, 1e-4, &mut fd);
            for j in 0..4 {
                assert!((fd[j] - g[j]).abs() < 1e-6, "{fd:?} vs {g:?}");
            }
        }
    }

    #[test]
    fn the_reference_posterior_is_the_conjugate_one() {
        let p = LinearGaussian
            .reference_posterior(&[1.29, 0.0, -2.58, 0.5])
            .unwrap();
        let mean = p.mean();
        assert!((mean[0] - 1.0).abs() < 1e-15 && (mean[2] + 2.0).abs() < 1e-15);
        assert!((p.sd()[1].powi(2) - 0.29 / 1.29).abs() < 1e-15);
        assert!(LinearGaussian.reference_posterior(&[0.0; 3]).is_err());
        assert!(LinearGaussian
            .reference_posterior(&[0.0, 0.0, f64::NAN, 0.0])
            .is_err());
    }

    #[test]
    fn exact_score_as_a_conditional_score() {
        let mut s = LinearGaussianScore { schedule: Cosine };
        let mut out = [0.0; 8];
        s.conditional_score(&[0.1; 8], 0.3, &[0.5; 8], &mut out)
            .unwrap();
        let mut one = [0.0; 4];
        LinearGaussian
            .noised_posterior_score(&Cosine, 0.3, &[0.1; 4], &[0.5; 4], &mut one)
            .unwrap();
        assert_eq!(&out[4..], &one);
        assert!(s
            .conditional_score(&[0.1; 8], 1.3, &[0.5; 8], &mut out)
            .is_err());
        assert!(s
            .conditional_score(&[0.1; 8], 0.3, &[0.5; 4], &mut out)
            .is_err());
    }
}
