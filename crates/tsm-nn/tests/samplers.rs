//! Samplers driven by the exact marginal score of a mixture reproduce the mixture: the MMD²
//! between sampler output and exact samples lies within the null distribution of MMD² at that
//! sample size. A sampler given the score of the wrong mixture is rejected (the test can fail).

use tsm_core::schedule::{AnySchedule, Cosine};
use tsm_core::target::{Dim, Sample};
use tsm_nn::mmd::{median_bandwidth, mmd2_unbiased};
use tsm_nn::sampler::{sample_by_name, ExactMixtureScore, SamplerConfig};
use tsm_targets::{named, GaussianMixture};

const N: usize = 1000;

fn exact(target: &GaussianMixture, seed: u64) -> Vec<f64> {
    let mut rng = tsm_core::rng::stream(seed, 1);
    let d = Dim::dim(target);
    let mut x = vec![0.0; N * d];
    for row in x.chunks_exact_mut(d) {
        target.sample_into(&mut rng, row);
    }
    x
}

/// `(mean, sd)` of MMD² between independent exact samples of size `N` (20 replicates), and
/// the bandwidth: the median heuristic over 8 (≈ 0.6, about the modes' std), so that the kernel resolves the modes' shape
/// (with the plain median, `h ≈ 5` spans the whole circle of radius 4 and cannot tell a mode
/// std of 0.5 from 0.8).
fn null(target: &GaussianMixture) -> (f64, f64, f64) {
    let d = Dim::dim(target);
    let h = median_bandwidth(&exact(target, 1000), &exact(target, 1001), d).expect("h") / 8.0;
    let vals: Vec<f64> = (0..20)
        .map(|r| {
            mmd2_unbiased(&exact(target, 2 * r), &exact(target, 2 * r + 1), d, h).expect("mmd")
        })
        .collect();
    let mean = vals.iter().sum::<f64>() / 20.0;
    let sd = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 19.0).sqrt();
    (mean, sd, h)
}

#[test]
fn exact_score_samplers_reproduce_the_eight_mode_mixture() {
    let target = named::eight_modes();
    let (mean, sd, h) = null(&target);
    // The unbiased MMD² has mean 0 under the null; a correct sampler's value is one more draw
    // from (nearly) the same distribution. Accept below mean + 4 sd of 20 null replicates
    // (fixed seeds; a one-sided Chebyshev bound puts a false rejection below 6%, and in practice
    // the null is far lighter-tailed).
    let threshold = mean + 4.0 * sd;
    let cfg = SamplerConfig {
        steps: 200,
        data_variance: target.variance_per_dim(),
        ..SamplerConfig::default()
    };
    let reference = exact(&target, 77);
    for (k, name) in ["em", "heun", "pc"].into_iter().enumerate() {
        let mut score = ExactMixtureScore {
            mixture: &target,
            schedule: Cosine,
        };
        let mut rng = tsm_core::rng::stream(5, k as u64);
        let x = sample_by_name(name, &mut score, &Cosine, &cfg, N, &mut rng).expect("sample");
        let m = mmd2_unbiased(&x, &reference, 2, h).expect("mmd");
        eprintln!("{name}: MMD² {m}, threshold {threshold}");
        assert!(
            m < threshold,
            "{name}: MMD² {m} above null mean {mean} + 4 sd {sd}"
        );
    }
    // Negative control: the exact score of the mixture with std 0.8 instead of 0.5.
    let wide = GaussianMixture::isotropic(
        vec![0.125; 8],
        (0..8)
            .map(|k| {
                let a = std::f64::consts::TAU * k as f64 / 8.0;
                vec![4.0 * a.cos(), 4.0 * a.sin()]
            })
            .collect(),
        vec![0.8; 8],
    )
    .expect("wide");
    let mut wrong = ExactMixtureScore {
        mixture: &wide,
        schedule: Cosine,
    };
    let mut rng = tsm_core::rng::stream(5, 9);
    let x = sample_by_name("em", &mut wrong, &Cosine, &cfg, N, &mut rng).expect("sample");
    let m = mmd2_unbiased(&x, &reference, 2, h).expect("mmd");
    assert!(
        m > threshold,
        "wrong score not detected: {m} vs {threshold}"
    );
}

#[test]
fn samplers_work_on_every_schedule_in_1d() {
    let target = named::easy_mixture();
    let (mean, sd, h) = null(&target);
    let threshold = mean + 4.0 * sd;
    for name in AnySchedule::NAMES {
        let schedule = AnySchedule::by_name(name).expect("schedule");
        let cfg = SamplerConfig {
            steps: 200,
            data_variance: target.variance_per_dim(),
            ..SamplerConfig::default()
        };
        let mut score = ExactMixtureScore {
            mixture: &target,
            schedule,
        };
        let mut rng = tsm_core::rng::stream(6, 0);
        let x = sample_by_name("heun", &mut score, &schedule, &cfg, N, &mut rng).expect("sample");
        let m = mmd2_unbiased(&x, &exact(&target, 78), 1, h).expect("mmd");
        assert!(m < threshold, "{name}: MMD² {m} vs threshold {threshold}");
    }
}
