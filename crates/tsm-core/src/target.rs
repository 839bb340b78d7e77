//! What we may know about a target `p_0` on `ℝ^d`, split by capability.
//!
//! - [`Dim`]: the dimension `d`, the one accessor every capability shares (so that a type
//!   implementing several of them has one unambiguous `x.dim()`);
//! - [`Score`]: `∇log p_0(x)` — all that TSM's loss needs;
//! - [`LogDensity`]: an (unnormalised) `log p_0(x)` as well — what importance sampling needs;
//! - [`Sample`]: i.i.d. draws `x ~ p_0` — what training data needs;
//! - [`ExactPosterior`]: exact draws from `p(x_0 | x_t)` (a [`PosteriorSample`]) — what the
//!   Monte Carlo score estimator needs.
//!
//! The slice methods are the hot path and take lengths on trust (checked in debug builds);
//! validate once at the boundary with [`check_dim`].
//! States on a Lie group, or scores conditioned on an observation, will get traits of their
//! own beside these rather than overloading them.

use rand::Rng;

use crate::schedule::Schedule;
use crate::{Error, Result};

/// The dimension `d` of the space `ℝ^d` that a target, a posterior or a score lives on.
///
/// It is the supertrait of every capability trait, so that a type implementing several of
/// them (a target with a score and samples) answers `x.dim()` without ambiguity.
pub trait Dim {
    /// The dimension `d`.
    fn dim(&self) -> usize;
}

/// A target on `ℝ^d` whose score `∇log p_0` can be evaluated.
pub trait Score: Dim {
    /// Writes `∇log p_0(x)` into `out` (`x.len() == out.len() == dim`).
    fn score(&self, x: &[f64], out: &mut [f64]);

    /// The score at many points: `xs` holds `m` points row-major (`m · dim` values), `out` the
    /// same shape. Override it with a vectorised kernel where one exists.
    fn score_batch(&self, xs: &[f64], out: &mut [f64]) {
        let d = self.dim();
        for (x, o) in xs.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
            self.score(x, o);
        }
    }
}

/// A target whose log density is known, possibly up to an additive constant.
pub trait LogDensity: Score {
    /// `log p_0(x) + C` for a constant `C` independent of `x` (`x.len() == dim`).
    fn log_density(&self, x: &[f64]) -> f64;
}

/// A target that can be sampled exactly.
pub trait Sample: Dim {
    /// Writes one draw `x ~ p_0` into `out` (`out.len() == dim`).
    fn sample_into<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]);
}

/// Draws from a posterior `p(x_0 | x_t)` at a fixed `x_t`.
pub trait PosteriorSample: Dim {
    /// Writes one draw `x_0 ~ p(x_0 | x_t)` into `out` (`out.len() == dim`).
    fn sample_into<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]);

    /// Writes `m` independent draws row-major into `out` (`m · dim` values).
    fn sample_batch<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]) {
        let d = self.dim();
        for o in out.chunks_exact_mut(d) {
            self.sample_into(rng, o);
        }
    }
}

/// A target whose posterior `p(x_0 | x_t)` under the noising `X_t = α_t X_0 + σ_t ε` can be
/// sampled exactly: what [`MonteCarloScore`](crate::estimator::MonteCarloScore) draws from (eq. 18).
///
/// The estimator asks for the posterior at the `(schedule, t, x_t)` it runs at, so its draws
/// and its coefficients always refer to the same time (see the [estimator docs](crate::estimator)).
pub trait ExactPosterior: Score {
    /// The posterior at one `(t, x_t)`.
    type Posterior: PosteriorSample;

    /// The posterior `p(x_0 | x_t)` at time `t` of `schedule`.
    ///
    /// # Errors
    /// The implementation's: typically [`Error::TimeOutOfRange`], [`Error::DimMismatch`] for
    /// `x_t`, [`Error::NonFinite`] for a non-finite `x_t`.
    fn posterior<S: Schedule + ?Sized>(
        &self,
        schedule: &S,
        t: f64,
        x_t: &[f64],
    ) -> Result<Self::Posterior>;

    /// Rewrites `post` as the posterior at `(t, x_t)`, reusing its buffers where it can
    /// (whatever `post` held before, e.g. another target's posterior). The default builds a
    /// new one with [`ExactPosterior::posterior`].
    ///
    /// # Errors
    /// As [`ExactPosterior::posterior`].
    fn posterior_into<S: Schedule + ?Sized>(
        &self,
        schedule: &S,
        t: f64,
        x_t: &[f64],
        post: &mut Self::Posterior,
    ) -> Result<()> {
        *post = self.posterior(schedule, t, x_t)?;
        Ok(())
    }
}

/// Returns `Ok(())` if `got == expected`, else [`Error::DimMismatch`] naming `op`.
pub fn check_dim(expected: usize, got: usize, op: &'static str) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::DimMismatch { expected, got, op })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `N(0, I_d)` with a score and samples.
    struct StdNormal(usize);

    impl Dim for StdNormal {
        fn dim(&self) -> usize {
            self.0
        }
    }
    impl Score for StdNormal {
        fn score(&self, x: &[f64], out: &mut [f64]) {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = -v;
            }
        }
    }
    impl Sample for StdNormal {
        fn sample_into<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]) {
            crate::rng::normal::fill(rng, out);
        }
    }

    fn dim_of<T: Score + Sample>(t: &T) -> usize {
        // With `dim` declared in both traits this was ambiguous (E0034).
        t.dim()
    }

    #[test]
    fn one_dimension_accessor_for_every_capability() {
        let target = StdNormal(3);
        assert_eq!(target.dim(), 3);
        assert_eq!(dim_of(&target), 3);
        assert!(check_dim(target.dim(), 2, "test").is_err());
    }
}
