//! The exact noised score of a Gaussian mixture as a
//! [`tsm_core::sampler::NoisedScore`], for driving the samplers of
//! [`tsm_core::sampler`] without a network: a reference for what a trained model should do.
//!
//! ```
//! use tsm_core::sampler::SamplerConfig;
//! use tsm_core::schedule::Cosine;
//! use tsm_targets::{named, ExactMixtureScore};
//!
//! let target = named::easy_mixture();
//! let mut score = ExactMixtureScore { mixture: &target, schedule: Cosine };
//! let cfg = SamplerConfig {
//!     steps: 50,
//!     data_variance: target.variance_per_dim(),
//!     ..SamplerConfig::default()
//! };
//! let x = cfg.sample(&mut score, &Cosine, 100, &mut tsm_core::rng::stream(0, 0))?;
//! assert_eq!(x.len(), 100);
//! # Ok::<(), tsm_core::Error>(())
//! ```

use tsm_core::sampler::NoisedScore;
use tsm_core::schedule::Schedule;
use tsm_core::target::{Dim, Score};

use crate::GaussianMixture;

/// `∇log p_t` of a Gaussian mixture `p_0` under a schedule, in closed form: `p_t` is the
/// mixture with means `α_t μᵢ` and variances `α_t² sᵢ² + σ_t²`
/// ([`GaussianMixture::noised`]).
#[derive(Debug, Clone)]
pub struct ExactMixtureScore<'a, S> {
    /// The target `p_0`.
    pub mixture: &'a GaussianMixture,
    /// The schedule.
    pub schedule: S,
}

impl<S> Dim for ExactMixtureScore<'_, S> {
    fn dim(&self) -> usize {
        Dim::dim(self.mixture)
    }
}

impl<S: Schedule> NoisedScore for ExactMixtureScore<'_, S> {
    /// Builds `p_t` once per call (`O(K d)` for `K` components), then evaluates its score at
    /// every row with the mixture's batch kernel.
    ///
    /// # Errors
    /// [`tsm_core::Error::TimeOutOfRange`] for `t ∉ [0, 1]`; [`tsm_core::Error::DimMismatch`]
    /// for `x` and `out` of different lengths or not a multiple of `d`.
    fn noised_score(&mut self, x: &[f64], t: f64, out: &mut [f64]) -> tsm_core::Result<()> {
        let d = Dim::dim(self.mixture);
        tsm_core::target::check_dim(x.len(), out.len(), "ExactMixtureScore: out")?;
        tsm_core::target::check_dim(x.len() / d * d, x.len(), "ExactMixtureScore: x")?;
        let p_t = self.mixture.noised(&self.schedule, t).map_err(into_core)?;
        p_t.score_batch(x, out);
        Ok(())
    }
}

/// This crate's error as `tsm-core`'s: its own core errors unwrapped, anything else kept
/// whole as a score error.
fn into_core(e: crate::Error) -> tsm_core::Error {
    match e {
        crate::Error::Core(e) => e,
        other => tsm_core::ScoreError::new(other).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsm_core::schedule::Cosine;

    #[test]
    fn matches_the_noised_mixtures_score_row_by_row() {
        for target in [crate::named::easy_mixture(), crate::named::eight_modes()] {
            let d = Dim::dim(&target);
            let x: Vec<f64> = (0..7 * d).map(|i| (i as f64 * 0.37).sin() * 3.0).collect();
            let mut out = vec![0.0; x.len()];
            let mut score = ExactMixtureScore {
                mixture: &target,
                schedule: Cosine,
            };
            score.noised_score(&x, 0.3, &mut out).expect("score");
            let p_t = target.noised(&Cosine, 0.3).expect("p_t");
            let mut want = vec![0.0; d];
            for (xi, oi) in x.chunks_exact(d).zip(out.chunks_exact(d)) {
                p_t.score(xi, &mut want);
                for (a, b) in oi.iter().zip(&want) {
                    assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let target = crate::named::eight_modes();
        let mut score = ExactMixtureScore {
            mixture: &target,
            schedule: Cosine,
        };
        let mut out = [0.0; 4];
        assert!(matches!(
            score.noised_score(&[0.0; 4], 1.5, &mut out),
            Err(tsm_core::Error::TimeOutOfRange { .. })
        ));
        assert!(matches!(
            score.noised_score(&[0.0; 3], 0.5, &mut out[..3]),
            Err(tsm_core::Error::DimMismatch { .. })
        ));
        assert!(matches!(
            score.noised_score(&[0.0; 4], 0.5, &mut out[..2]),
            Err(tsm_core::Error::DimMismatch { .. })
        ));
    }
}
