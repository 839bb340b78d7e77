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

use tsm_core::likelihood::ScoreDivergence;
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

impl<S: Schedule> ScoreDivergence for ExactMixtureScore<'_, S> {
    /// The score and the exact trace of its Jacobian. With responsibilities `rₖ(x)` and the
    /// components' scores `sₖ = −(x − α_t μₖ)/vₖ` (`vₖ = α_t² sₖ² + σ_t²` per coordinate),
    /// `s = Σ rₖ sₖ` and `∇rₖ = rₖ (sₖ − s)`, so
    /// `tr ∇s = Σₖ rₖ (‖sₖ‖² − Σⱼ 1/vₖⱼ) − ‖s‖²`.
    ///
    /// # Errors
    /// As [`NoisedScore::noised_score`]; [`tsm_core::Error::DimMismatch`] for `div` of
    /// another length than the number of rows.
    fn score_divergence(
        &mut self,
        x: &[f64],
        t: f64,
        out: &mut [f64],
        div: &mut [f64],
    ) -> tsm_core::Result<()> {
        let d = Dim::dim(self.mixture);
        tsm_core::target::check_dim(x.len(), out.len(), "ExactMixtureScore: out")?;
        tsm_core::target::check_dim(x.len() / d * d, x.len(), "ExactMixtureScore: x")?;
        tsm_core::target::check_dim(x.len() / d, div.len(), "ExactMixtureScore: div")?;
        let p_t = self.mixture.noised(&self.schedule, t).map_err(into_core)?;
        let k = p_t.n_components();
        let mut log_r = vec![0.0; k];
        let mut sk = vec![0.0; k * d];
        let mut trace_k = vec![0.0; k];
        for ((xi, oi), di) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)).zip(div) {
            for c in 0..k {
                let (m, sd) = match (p_t.component_mean(c), p_t.component_std(c)) {
                    (Some(m), Some(sd)) => (m, sd),
                    _ => continue,
                };
                let mut l = p_t.weights()[c].ln();
                let mut tr = 0.0;
                for j in 0..d {
                    let v = sd[j] * sd[j];
                    let r = xi[j] - m[j];
                    l -= 0.5 * (r * r / v + v.ln());
                    sk[c * d + j] = -r / v;
                    tr -= 1.0 / v;
                }
                log_r[c] = l;
                trace_k[c] = tr;
            }
            let max = log_r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = log_r.iter().map(|l| (l - max).exp()).sum();
            oi.fill(0.0);
            let mut acc = 0.0;
            for c in 0..k {
                let r = (log_r[c] - max).exp() / total;
                let s = &sk[c * d..(c + 1) * d];
                for (o, v) in oi.iter_mut().zip(s) {
                    *o += r * v;
                }
                acc += r * (s.iter().map(|v| v * v).sum::<f64>() + trace_k[c]);
            }
            *di = acc - oi.iter().map(|v| v * v).sum::<f64>();
        }
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
    fn the_divergence_is_the_trace_of_the_scores_jacobian() {
        // Against central differences of the score itself (h = 1e-5: error O(h²) ≈ 1e-9
        // relative, rounding ≈ 1e-11 / h).
        for target in [crate::named::easy_mixture(), crate::named::eight_modes()] {
            let d = Dim::dim(&target);
            let x: Vec<f64> = (0..5 * d).map(|i| (i as f64 * 0.61).cos() * 2.5).collect();
            let mut score = ExactMixtureScore {
                mixture: &target,
                schedule: Cosine,
            };
            let (mut out, mut div) = (vec![0.0; x.len()], vec![0.0; 5]);
            score
                .score_divergence(&x, 0.2, &mut out, &mut div)
                .expect("div");
            let mut plain = vec![0.0; x.len()];
            score.noised_score(&x, 0.2, &mut plain).expect("score");
            for (a, b) in out.iter().zip(&plain) {
                assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
            }
            let h = 1e-5;
            for (i, xi) in x.chunks_exact(d).enumerate() {
                let mut tr = 0.0;
                for j in 0..d {
                    let (mut p, mut m) = (xi.to_vec(), xi.to_vec());
                    p[j] += h;
                    m[j] -= h;
                    let (mut sp, mut sm) = (vec![0.0; d], vec![0.0; d]);
                    score.noised_score(&p, 0.2, &mut sp).expect("score");
                    score.noised_score(&m, 0.2, &mut sm).expect("score");
                    tr += (sp[j] - sm[j]) / (2.0 * h);
                }
                assert!(
                    (div[i] - tr).abs() < 1e-5 * (1.0 + tr.abs()),
                    "{} vs {tr}",
                    div[i]
                );
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
