//! The samplers of `tsm_core::sampler` driven by exact noised scores (no network, no candle).
//!
//! - Driven by the exact marginal score of a mixture, every sampler reproduces the mixture on
//!   every schedule and grid: the MMD² between sampler output and exact samples lies within
//!   the null distribution of MMD² at that sample size. A sampler given the score of the
//!   wrong mixture is rejected (the test can fail).
//! - Conditioned on an observation, the samplers draw the right conditional (a Gaussian
//!   posterior in closed form), for one condition broadcast and for one condition per point.
//! - No noise on the last step, a callback that stops early, and absurd grid sizes refused.
//!
//! Fixed seeds throughout.

use std::ops::ControlFlow;

use tsm_core::sampler::{
    ConditionalScore, Conditioned, Outcome, Sampler, SamplerConfig, Step, TimeGrid,
};
use tsm_core::schedule::{AnySchedule, Cosine, LinearVp, Schedule};
use tsm_core::target::{Dim, Sample};
use tsm_targets::{named, ExactMixtureScore, GaussianMixture};

const N: usize = 1000;

/// Every sampler: the four with their defaults, PC with other settings, and DDIM with
/// `η = 1` (the ancestral step) beside the deterministic `η = 0`.
const SAMPLERS: [Sampler; 6] = [
    Sampler::EulerMaruyama,
    Sampler::Heun,
    Sampler::PredictorCorrector {
        snr: Sampler::DEFAULT_SNR,
        corrector_steps: Sampler::DEFAULT_CORRECTOR_STEPS,
    },
    Sampler::PredictorCorrector {
        snr: 0.1,
        corrector_steps: 2,
    },
    Sampler::DDIM,
    Sampler::Ddim { eta: 1.0 },
];

fn exact(target: &GaussianMixture, seed: u64) -> Vec<f64> {
    let mut rng = tsm_core::rng::stream(seed, 1);
    let d = Dim::dim(target);
    let mut x = vec![0.0; N * d];
    for row in x.chunks_exact_mut(d) {
        target.sample_into(&mut rng, row);
    }
    x
}

/// The median of the pairwise distances within the pooled first ≤ 500 points of each sample.
fn median_bandwidth(x: &[f64], y: &[f64], d: usize) -> f64 {
    let mut pooled = x[..x.len().min(500 * d)].to_vec();
    pooled.extend_from_slice(&y[..y.len().min(500 * d)]);
    let rows: Vec<&[f64]> = pooled.chunks_exact(d).collect();
    let mut dists = Vec::new();
    for (i, a) in rows.iter().enumerate() {
        for b in &rows[i + 1..] {
            dists.push(
                a.iter()
                    .zip(*b)
                    .map(|(p, q)| (p - q).powi(2))
                    .sum::<f64>()
                    .sqrt(),
            );
        }
    }
    let mid = dists.len() / 2;
    *dists.select_nth_unstable_by(mid, f64::total_cmp).1
}

/// The unbiased MMD² with the RBF kernel `exp(−‖a − b‖²/(2h²))` (Gretton et al. 2012, eq. 3).
fn mmd2_unbiased(x: &[f64], y: &[f64], d: usize, h: f64) -> f64 {
    let gamma = 1.0 / (2.0 * h * h);
    let k = |a: &[f64], b: &[f64]| {
        (-gamma * a.iter().zip(b).map(|(p, q)| (p - q).powi(2)).sum::<f64>()).exp()
    };
    let within = |v: &[f64]| {
        let rows: Vec<&[f64]> = v.chunks_exact(d).collect();
        let m = rows.len() as f64;
        let mut s = 0.0;
        for (i, a) in rows.iter().enumerate() {
            for b in &rows[i + 1..] {
                s += k(a, b);
            }
        }
        2.0 * s / (m * (m - 1.0))
    };
    let (m, n) = ((x.len() / d) as f64, (y.len() / d) as f64);
    let mut cross = 0.0;
    for a in x.chunks_exact(d) {
        for b in y.chunks_exact(d) {
            cross += k(a, b);
        }
    }
    within(x) + within(y) - 2.0 * cross / (m * n)
}

/// The acceptance threshold for MMD² at sample size `N` and the bandwidth.
///
/// The bandwidth is the median heuristic over 8 (≈ 0.6 for the eight modes, about the modes'
/// std), so that the kernel resolves the modes' shape (with the plain median, `h ≈ 5` spans
/// the whole circle of radius 4 and cannot tell a mode std of 0.5 from 0.8). The unbiased MMD²
/// has mean 0 under the null; a correct sampler's value is one more draw from (nearly) the
/// same distribution. Accept below the mean + 4 sd of 20 null replicates (fixed seeds; a
/// one-sided Chebyshev bound puts a false rejection below 6%, and in practice the null is far
/// lighter-tailed).
fn threshold(target: &GaussianMixture) -> (f64, f64) {
    let d = Dim::dim(target);
    let h = median_bandwidth(&exact(target, 1000), &exact(target, 1001), d) / 8.0;
    let vals: Vec<f64> = (0..20)
        .map(|r| mmd2_unbiased(&exact(target, 2 * r), &exact(target, 2 * r + 1), d, h))
        .collect();
    let mean = vals.iter().sum::<f64>() / 20.0;
    let sd = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 19.0).sqrt();
    (mean + 4.0 * sd, h)
}

/// Runs `sampler` from the default prior down `grid` with the mixture's exact score.
fn sample_on(
    target: &GaussianMixture,
    schedule: AnySchedule,
    sampler: Sampler,
    grid: &TimeGrid,
    seed: (u64, u64),
) -> Vec<f64> {
    let cfg = SamplerConfig {
        data_variance: target.variance_per_dim(),
        t_max: grid.t_max(),
        ..SamplerConfig::default()
    };
    let mut rng = tsm_core::rng::stream(seed.0, seed.1);
    let mut x = cfg
        .prior(&schedule, N, Dim::dim(target), &mut rng)
        .expect("prior");
    let mut score = ExactMixtureScore {
        mixture: target,
        schedule,
    };
    let done = sampler
        .run(&mut score, &mut x, &schedule, grid, &mut rng, None)
        .expect("sample");
    assert_eq!(done.steps, grid.steps());
    x
}

#[test]
fn exact_score_samplers_reproduce_the_eight_mode_mixture() {
    let target = named::eight_modes();
    let (threshold, h) = threshold(&target);
    let reference = exact(&target, 77);
    for (k, sampler) in SAMPLERS.into_iter().enumerate() {
        let cfg = SamplerConfig {
            sampler,
            steps: 200,
            data_variance: target.variance_per_dim(),
            ..SamplerConfig::default()
        };
        let mut score = ExactMixtureScore {
            mixture: &target,
            schedule: Cosine,
        };
        let mut rng = tsm_core::rng::stream(5, k as u64);
        let x = cfg
            .sample(&mut score, &Cosine, N, &mut rng)
            .expect("sample");
        let m = mmd2_unbiased(&x, &reference, 2, h);
        eprintln!("{sampler}: MMD² {m}, threshold {threshold}");
        assert!(m < threshold, "{sampler}: MMD² {m} above {threshold}");
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
    let cfg = SamplerConfig {
        data_variance: target.variance_per_dim(),
        ..SamplerConfig::default()
    };
    let mut rng = tsm_core::rng::stream(5, 9);
    let x = cfg
        .sample(&mut wrong, &Cosine, N, &mut rng)
        .expect("sample");
    let m = mmd2_unbiased(&x, &reference, 2, h);
    assert!(
        m > threshold,
        "wrong score not detected: {m} vs {threshold}"
    );
}

#[test]
fn every_sampler_works_on_every_schedule_in_1d() {
    let target = named::easy_mixture();
    let (threshold, h) = threshold(&target);
    let reference = exact(&target, 78);
    for schedule in AnySchedule::ALL {
        let grid = TimeGrid::log_snr(&schedule, 1.0 - 1e-3, 1e-3, 200).expect("grid");
        for (k, sampler) in SAMPLERS.into_iter().enumerate() {
            let x = sample_on(&target, schedule, sampler, &grid, (6, k as u64));
            let m = mmd2_unbiased(&x, &reference, 1, h);
            assert!(
                m < threshold,
                "{schedule} {sampler}: MMD² {m} vs threshold {threshold}"
            );
        }
    }
}

#[test]
fn every_sampler_works_on_the_karras_and_uniform_grids() {
    let target = named::eight_modes();
    let (threshold, h) = threshold(&target);
    let reference = exact(&target, 79);
    // Karras et al.'s ρ = 7 on every schedule; uniform in t on the linear VP schedule (the
    // grid Song et al. use with it; on the cosine schedule a uniform-t Euler step near t = 1
    // is unstable, which is why the log-SNR grid is the default).
    let mut cases: Vec<(AnySchedule, TimeGrid)> = AnySchedule::ALL
        .into_iter()
        .map(|s| {
            let grid = TimeGrid::karras(&s, 1.0 - 1e-3, 1e-3, 200, TimeGrid::DEFAULT_RHO);
            (s, grid.expect("karras grid"))
        })
        .collect();
    let vp = AnySchedule::LinearVp(LinearVp::standard());
    cases.push((vp, TimeGrid::uniform(1.0 - 1e-3, 1e-3, 200).expect("grid")));
    for (c, (schedule, grid)) in cases.iter().enumerate() {
        // The grids: strictly decreasing, ends exact.
        assert!(grid.times().windows(2).all(|w| w[0] > w[1]));
        assert_eq!((grid.t_max(), grid.t_min()), (1.0 - 1e-3, 1e-3));
        for (k, sampler) in SAMPLERS.into_iter().enumerate() {
            let x = sample_on(&target, *schedule, sampler, grid, (7, (10 * c + k) as u64));
            let m = mmd2_unbiased(&x, &reference, 2, h);
            assert!(
                m < threshold,
                "{schedule} grid {c} {sampler}: MMD² {m} vs threshold {threshold}"
            );
        }
    }
}

#[test]
fn no_sampler_adds_noise_on_the_last_step() {
    // One step from the same state with two different seeds: the same result.
    let target = named::eight_modes();
    let grid = TimeGrid::from_times(vec![0.4, 0.05]).expect("grid");
    for sampler in SAMPLERS {
        let run = |seed: u64| {
            let mut x: Vec<f64> = (0..40).map(|i| (i as f64 * 0.7).sin() * 3.0).collect();
            let mut score = ExactMixtureScore {
                mixture: &target,
                schedule: Cosine,
            };
            let mut rng = tsm_core::rng::stream(seed, 0);
            sampler
                .run(&mut score, &mut x, &Cosine, &grid, &mut rng, None)
                .expect("run");
            x
        };
        assert_eq!(run(1), run(2), "{sampler}");
    }
}

#[test]
fn a_callback_records_the_trajectory_and_stops_early() {
    let target = named::eight_modes();
    let grid = TimeGrid::log_snr(&Cosine, 1.0 - 1e-3, 1e-3, 30).expect("grid");
    let cfg = SamplerConfig {
        data_variance: target.variance_per_dim(),
        ..SamplerConfig::default()
    };
    for sampler in SAMPLERS {
        let run = |stop_at: Option<usize>, trajectory: &mut Vec<Vec<f64>>| {
            let mut rng = tsm_core::rng::stream(8, 0);
            let mut x = cfg.prior(&Cosine, 50, 2, &mut rng).expect("prior");
            let mut score = ExactMixtureScore {
                mixture: &target,
                schedule: Cosine,
            };
            let mut callback = |step: &Step<'_>| {
                trajectory.push(step.x.to_vec());
                match stop_at {
                    Some(k) if step.index == k => ControlFlow::Break(()),
                    _ => ControlFlow::Continue(()),
                }
            };
            let done = sampler
                .run(
                    &mut score,
                    &mut x,
                    &Cosine,
                    &grid,
                    &mut rng,
                    Some(&mut callback),
                )
                .expect("run");
            (done, x)
        };
        let mut full = Vec::new();
        let (done, x) = run(None, &mut full);
        assert_eq!(
            done,
            Outcome {
                steps: 30,
                stopped_early: false
            }
        );
        assert_eq!(full.len(), 30);
        assert_eq!(full[29], x);
        let mut part = Vec::new();
        let (done, y) = run(Some(11), &mut part);
        assert_eq!(
            done,
            Outcome {
                steps: 12,
                stopped_early: true
            },
            "{sampler}"
        );
        assert_eq!(part.len(), 12);
        assert_eq!(y, full[11], "{sampler}");
    }
}

/// The posterior of `θ ~ N(0, I_2)` given `c = θ + τ ε` (`τ² = 0.5`):
/// `N(μ(c), s² I)` with `μ(c) = c/(1 + τ²)`, `s² = τ²/(1 + τ²)`. Its noised version is
/// `N(α_t μ(c), (α_t² s² + σ_t²) I)`, so `∇log p_t(θ | c) = −(θ − α_t μ(c))/(α_t² s² + σ_t²)`.
struct GaussianPosterior;

const TAU_SQ: f64 = 0.5;
const POST_VAR: f64 = TAU_SQ / (1.0 + TAU_SQ);

impl Dim for GaussianPosterior {
    fn dim(&self) -> usize {
        2
    }
}

impl ConditionalScore for GaussianPosterior {
    fn condition_dim(&self) -> usize {
        2
    }

    fn conditional_score(
        &mut self,
        x: &[f64],
        t: f64,
        condition: &[f64],
        out: &mut [f64],
    ) -> tsm_core::Result<()> {
        let (a, s2) = (Cosine.alpha(t), Cosine.sigma_sq(t));
        let var = a * a * POST_VAR + s2;
        for ((o, x), c) in out.iter_mut().zip(x).zip(condition) {
            *o = -(x - a * c / (1.0 + TAU_SQ)) / var;
        }
        Ok(())
    }
}

/// Checks that the rows of `x` have mean `μ(c)` and variance `s²` per coordinate, within 5
/// standard errors.
fn check_posterior(x: &[f64], c: &[f64], what: &str) {
    let n = (x.len() / 2) as f64;
    for j in 0..2 {
        let col: Vec<f64> = x.iter().skip(j).step_by(2).copied().collect();
        let m = col.iter().sum::<f64>() / n;
        let v = col.iter().map(|y| (y - m).powi(2)).sum::<f64>() / (n - 1.0);
        let want = c[j] / (1.0 + TAU_SQ);
        let (se_m, se_v) = ((POST_VAR / n).sqrt(), POST_VAR * (2.0 / (n - 1.0)).sqrt());
        assert!((m - want).abs() < 5.0 * se_m, "{what}: mean {m} vs {want}");
        assert!(
            (v - POST_VAR).abs() < 5.0 * se_v,
            "{what}: var {v} vs {POST_VAR}"
        );
    }
}

#[test]
fn conditioning_draws_the_posterior_of_each_observation() {
    // Two observations whose posterior means are 2 and more apart (hundreds of standard
    // errors): a sampler that ignored the condition would fail.
    let (c1, c2) = ([1.5, -1.5], [-1.5, 3.0]);
    let n = 2000;
    for (k, sampler) in SAMPLERS.into_iter().enumerate() {
        let cfg = SamplerConfig {
            sampler,
            data_variance: POST_VAR,
            ..SamplerConfig::default()
        };
        // One condition broadcast to every point, one run per observation.
        for (i, c) in [c1, c2].iter().enumerate() {
            let mut score = Conditioned::broadcast(GaussianPosterior, c.to_vec()).expect("c");
            let mut rng = tsm_core::rng::stream(10, (10 * k + i) as u64);
            let x = cfg
                .sample(&mut score, &Cosine, n, &mut rng)
                .expect("sample");
            check_posterior(&x, c, &format!("{sampler}, broadcast {c:?}"));
        }
        // One condition per point: the first half of the batch c1, the second half c2.
        let rows: Vec<f64> = (0..2 * n)
            .flat_map(|i| if i < n { c1 } else { c2 })
            .collect();
        let mut score = Conditioned::per_point(GaussianPosterior, rows).expect("rows");
        let mut rng = tsm_core::rng::stream(11, k as u64);
        let x = cfg
            .sample(&mut score, &Cosine, 2 * n, &mut rng)
            .expect("sample");
        check_posterior(&x[..2 * n], &c1, &format!("{sampler}, per point {c1:?}"));
        check_posterior(&x[2 * n..], &c2, &format!("{sampler}, per point {c2:?}"));
        // A batch of another size than the conditions: a typed error, not a panic.
        let mut rng = tsm_core::rng::stream(11, k as u64);
        assert!(matches!(
            cfg.sample(&mut score, &Cosine, n, &mut rng),
            Err(tsm_core::Error::DimMismatch { .. })
        ));
    }
}

#[test]
fn absurd_grid_sizes_are_errors_not_panics() {
    let target = named::easy_mixture();
    for steps in [0, TimeGrid::MAX_STEPS + 1, usize::MAX] {
        assert!(TimeGrid::uniform(0.9, 0.1, steps).is_err());
        assert!(TimeGrid::log_snr(&Cosine, 0.9, 0.1, steps).is_err());
        assert!(TimeGrid::karras(&Cosine, 0.9, 0.1, steps, 7.0).is_err());
        let cfg = SamplerConfig {
            steps,
            ..SamplerConfig::default()
        };
        let mut score = ExactMixtureScore {
            mixture: &target,
            schedule: Cosine,
        };
        let mut rng = tsm_core::rng::stream(0, 0);
        assert!(matches!(
            cfg.sample(&mut score, &Cosine, 10, &mut rng),
            Err(tsm_core::Error::OutOfRange { name: "steps", .. })
        ));
    }
}
