//! Property tests of the mixture's validated constructor and its exact formulas, over random
//! parameters (proptest, deterministic per test name).

use proptest::prelude::*;
use tsm_core::schedule::{Cosine, Schedule};
use tsm_core::target::{LogDensity, Score};
use tsm_targets::{Error, GaussianMixture};

/// A valid 1-D mixture: 1–4 components, weights normalised, means in [−3, 3], stds in [0.05, 2].
fn mixture() -> impl Strategy<Value = GaussianMixture> {
    (1usize..=4)
        .prop_flat_map(|n| {
            (
                prop::collection::vec(0.05f64..1.0, n),
                prop::collection::vec(-3.0f64..3.0, n),
                prop::collection::vec(0.05f64..2.0, n),
            )
        })
        .prop_map(|(w, m, s)| {
            let total: f64 = w.iter().sum();
            let w: Vec<f64> = w.iter().map(|x| x / total).collect();
            GaussianMixture::univariate(&w, &m, &s)
                .expect("normalised weights and positive stds are valid")
        })
}

proptest! {
    #[test]
    fn weights_off_by_more_than_the_tolerance_are_rejected(scale in 1.001f64..10.0) {
        let w = [0.5 * scale, 0.5];
        let got = GaussianMixture::univariate(&w, &[0.0, 1.0], &[1.0, 1.0]);
        let rejected = matches!(got, Err(Error::InvalidWeights { .. }));
        prop_assert!(rejected, "{:?}", got);
    }

    #[test]
    fn non_positive_stds_are_rejected(s in -5.0f64..=0.0) {
        let got = GaussianMixture::univariate(&[1.0], &[0.0], &[s]);
        let rejected = matches!(got, Err(Error::NonPositiveStd { .. }));
        prop_assert!(rejected, "{:?}", got);
    }

    #[test]
    fn scores_are_finite_and_match_finite_differences(m in mixture(), x in -6.0f64..6.0, t in 0.0f64..=1.0) {
        let p_t = m.noised(&Cosine, t).unwrap();
        let mut s = [0.0];
        p_t.score(&[x], &mut s);
        prop_assert!(s[0].is_finite());
        // Central difference of log p_t, h = 1e-6: truncation h²|∂³log p|/6 ≤ ~1e-5 even where
        // responsibilities switch between modes of std 0.05 (|∂³log p| ≲ 1e7), rounding
        // ε|log p|/h ≤ ~1e-6 for |log p| ≲ 2000.
        let h = 1e-6;
        let fd = (p_t.log_density(&[x + h]) - p_t.log_density(&[x - h])) / (2.0 * h);
        prop_assert!((fd - s[0]).abs() < 1e-4 * (1.0 + s[0].abs()), "{} vs {}", fd, s[0]);
    }

    #[test]
    fn tweedie_holds_for_any_mixture(m in mixture(), x in -4.0f64..4.0, t in 0.01f64..0.99) {
        let post = m.posterior(&Cosine, t, &[x]).unwrap();
        let mut s = [0.0];
        m.noised_score(&Cosine, t, &[x], &mut s);
        let tweedie = (x + Cosine.sigma_sq(t) * s[0]) / Cosine.alpha(t);
        let mean = post.mean()[0];
        prop_assert!((mean - tweedie).abs() < 1e-8 * (1.0 + mean.abs()), "{} vs {}", mean, tweedie);
    }
}
