//! The sample check tells good samples from bad: samples of the exact eight-mode score
//! (`tsm_targets::ExactMixtureScore` driven by `tsm_core`'s samplers) PASS with every sampler,
//! and clearly wrong sets — two modes missing, modes too wide, a one-step sampler — FAIL.
//!
//! Fixed seeds throughout; each test's level is α = 0.01, so an exact set FAILs with
//! probability at most 2% per seed (the seeds below are not chosen to pass: the p-values they
//! give are printed by `--nocapture`).

use tsm_core::sampler::{Sampler, SamplerConfig};
use tsm_core::schedule::Cosine;
use tsm_core::target::Sample;
use tsm_nn::check::SampleCheck;
use tsm_targets::{named, ExactMixtureScore, GaussianMixture};

const N: usize = 5000;

/// `N` samples of `target`'s exact score with `sampler` and `steps` steps.
fn exact_score_samples(target: &GaussianMixture, sampler: Sampler, steps: usize) -> Vec<f64> {
    let cfg = SamplerConfig {
        sampler,
        steps,
        data_variance: target.variance_per_dim(),
        ..SamplerConfig::default()
    };
    let mut score = ExactMixtureScore {
        mixture: target,
        schedule: Cosine,
    };
    cfg.sample(&mut score, &Cosine, N, &mut tsm_core::rng::stream(3, 0))
        .expect("sample")
}

/// `N` exact draws of `mixture`.
fn draws(mixture: &GaussianMixture) -> Vec<f64> {
    let mut rng = tsm_core::rng::stream(4, 0);
    let mut x = vec![0.0; 2 * N];
    for row in x.chunks_exact_mut(2) {
        mixture.sample_into(&mut rng, row);
    }
    x
}

/// The eight-mode circle (radius 4) with component std `std` and the modes `keep` only.
fn circle(std: f64, keep: impl Fn(usize) -> bool) -> GaussianMixture {
    let modes: Vec<usize> = (0..8).filter(|&k| keep(k)).collect();
    let means = modes
        .iter()
        .map(|&k| {
            let a = 2.0 * std::f64::consts::PI * k as f64 / 8.0;
            vec![4.0 * a.cos(), 4.0 * a.sin()]
        })
        .collect();
    let w = 1.0 / modes.len() as f64;
    GaussianMixture::isotropic(vec![w; modes.len()], means, vec![std; modes.len()])
        .expect("mixture")
}

#[test]
fn exact_score_samples_pass_with_every_sampler() {
    let target = named::eight_modes();
    let check = SampleCheck::for_target(&target);
    for sampler in ["em", "heun", "pc"] {
        let x = exact_score_samples(&target, sampler.parse().expect("sampler"), 200);
        let start = std::time::Instant::now();
        let report = check.run(&x, &target).expect("check");
        eprintln!(
            "{sampler}: {report} ({:.2} s)",
            start.elapsed().as_secs_f64()
        );
        assert!(report.pass, "{sampler}: {report}");
        assert_eq!(report.verdict, "PASS");
    }
}

#[test]
fn clearly_wrong_samples_fail() {
    let target = named::eight_modes();
    let check = SampleCheck::for_target(&target);
    // The same circle as the target (same mode positions), to check the check itself.
    let same = draws(&circle(0.5, |_| true));
    let report = check.run(&same, &target).expect("check");
    assert!(report.pass, "exact draws: {report}");
    let wrong = [
        (
            "two modes missing",
            draws(&circle(0.5, |k| k != 2 && k != 5)),
        ),
        ("modes too wide (std 0.8)", draws(&circle(0.8, |_| true))),
        (
            "modes too narrow (std 0.35)",
            draws(&circle(0.35, |_| true)),
        ),
        (
            "one Euler–Maruyama step",
            exact_score_samples(&target, Sampler::EulerMaruyama, 1),
        ),
    ];
    for (what, x) in wrong {
        let report = check.run(&x, &target).expect("check");
        eprintln!("{what}: {report}");
        assert!(!report.pass, "{what}: {report}");
        assert_eq!(report.verdict, "FAIL");
    }
    // The missing modes are what the mode-share test sees: their share is ~0 (a few points
    // of the neighbouring modes, 6 standard deviations away, fall in their regions).
    let x = draws(&circle(0.5, |k| k != 2 && k != 5));
    let modes = check
        .run(&x, &target)
        .expect("check")
        .modes
        .expect("mixture");
    assert!(modes.p_value < 1e-10, "{modes:?}");
    assert!(
        modes.shares[2] < 0.01 && modes.shares[5] < 0.01,
        "{modes:?}"
    );
    // Too few or non-finite samples are refused, not judged.
    assert!(check.run(&x[..2 * 50], &target).is_err());
    let mut nan = x.clone();
    nan[7] = f64::NAN;
    assert!(check.run(&nan, &target).is_err());
}
