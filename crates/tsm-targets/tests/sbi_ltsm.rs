//! Latent TSM on the SBI tasks (Ko & Geffner, 2024): the DSM and LTSM targets' conditional
//! means are the posterior score (Prop. 3.1), their variances match the closed forms, and the
//! optimal weight `w_t*` by Monte Carlo matches `F σ_t²/(F σ_t² + d α_t²)` on every task
//! (Prop. 3.2).
//!
//! Every Monte Carlo check uses a fixed seed and a tolerance of 5 standard errors.

use tsm_core::identity::ScoreIdentity;
use tsm_core::rng::{normal, stream};
use tsm_core::schedule::{Cosine, Schedule};
use tsm_core::simulator::{estimate_optimal_weight, estimate_score_constant, LatentMix, Simulator};
use tsm_targets::sbi::{LinearGaussian, SbiTask, Task, TaskVisitor};

const SEED: u64 = 2024;

/// Mean and standard error of each column of `rows` (`n × m`).
fn column_stats(rows: &[Vec<f64>]) -> Vec<(f64, f64)> {
    let n = rows.len() as f64;
    (0..rows[0].len())
        .map(|c| {
            let mean = rows.iter().map(|r| r[c]).sum::<f64>() / n;
            let var = rows.iter().map(|r| (r[c] - mean).powi(2)).sum::<f64>() / (n - 1.0);
            (mean, (var / n).sqrt())
        })
        .collect()
}

#[test]
fn dsm_ltsm_and_mix_targets_average_to_the_exact_posterior_score() {
    // At (θ_t, x) from the generative process, draw (θ₀, z) ~ p(θ₀, z | θ_t, x) exactly and
    // average the targets, built from the identities' coefficients with the joint score in
    // place of ∇log p₀: each mean must equal ∇log p_t(θ_t | x) (5 standard errors).
    let task = LinearGaussian;
    let mix = LatentMix::new(4, LinearGaussian::SCORE_CONSTANT)
        .unwrap()
        .identity();
    let identities = [ScoreIdentity::Dsi, ScoreIdentity::Tsi, mix];
    let draws = 20_000;
    for (item, t) in [0.05, 0.3, 0.6, 0.9].into_iter().enumerate() {
        let mut rng = stream(SEED, item as u64);
        let (alpha, sigma) = (Cosine.alpha(t), Cosine.sigma(t));
        let (mut th, mut z, mut x, mut g) = ([0.0; 4], task.new_latent(), [0.0; 4], [0.0; 4]);
        task.simulate(&mut rng, &mut th, &mut z, &mut x, &mut g);
        let mut theta_t = [0.0; 4];
        normal::fill(&mut rng, &mut theta_t);
        for j in 0..4 {
            theta_t[j] = alpha * th[j] + sigma * theta_t[j];
        }
        let mut exact = [0.0; 4];
        task.noised_posterior_score(&Cosine, t, &theta_t, &x, &mut exact)
            .unwrap();
        let coefficients: Vec<_> = identities
            .iter()
            .map(|id| id.coefficients(&Cosine, t).unwrap())
            .collect();
        let (mut theta0, mut z0, mut joint, mut out) = ([0.0; 4], [0.0; 4], [0.0; 4], [0.0; 4]);
        let mut rows = Vec::with_capacity(draws);
        for _ in 0..draws {
            task.sample_latent_posterior(&Cosine, t, &theta_t, &x, &mut rng, &mut theta0, &mut z0)
                .unwrap();
            task.joint_score(&theta0, &z0, &x, &mut joint);
            let mut row = Vec::with_capacity(12);
            for c in &coefficients {
                c.apply_into(&theta0, &theta_t, &joint, &mut out);
                row.extend_from_slice(&out);
            }
            rows.push(row);
        }
        for (k, (mean, se)) in column_stats(&rows).into_iter().enumerate() {
            let (id, j) = (identities[k / 4], k % 4);
            assert!(
                (mean - exact[j]).abs() < 5.0 * se,
                "t={t} {id}: coordinate {j}: {mean} ± {se} vs exact {}",
                exact[j]
            );
        }
    }
}

#[test]
fn target_variances_match_the_closed_forms_and_cross() {
    // E‖A − s‖² = d(1/σ² − k), E‖B − s‖² = d(5/α² − k), E‖y* − s‖² = d(5/(α² + 5σ²) − k),
    // k = 1/(α² v + σ²), over (θ₀, z, x, ε) at fixed t (5 standard errors; fixed seed). LTSM
    // is below DSM at small t and above it towards t = 1; the curves cross where w_t* = ½,
    // i.e. 5σ² = α², t = (2/π) atan(1/√5) ≈ 0.268 for the cosine schedule.
    let task = LinearGaussian;
    let v = LinearGaussian::posterior_variance();
    let mix = LatentMix::new(4, LinearGaussian::SCORE_CONSTANT).unwrap();
    let n = 40_000;
    for (item, t) in [0.05, 0.15, 0.4, 0.7, 0.95].into_iter().enumerate() {
        let mut rng = stream(SEED, 100 + item as u64);
        let (alpha, sigma) = (Cosine.alpha(t), Cosine.sigma(t));
        let (a2, s2) = (alpha * alpha, sigma * sigma);
        let k = 1.0 / (a2 * v + s2);
        let closed = [
            4.0 * (1.0 / s2 - k),
            4.0 * (5.0 / a2 - k),
            4.0 * (5.0 / (a2 + 5.0 * s2) - k),
        ];
        let coefficients = [
            ScoreIdentity::Dsi.coefficients(&Cosine, t).unwrap(),
            ScoreIdentity::Tsi.coefficients(&Cosine, t).unwrap(),
            mix.identity().coefficients(&Cosine, t).unwrap(),
        ];
        let (mut th, mut z, mut x, mut g) = ([0.0; 4], task.new_latent(), [0.0; 4], [0.0; 4]);
        let (mut eps, mut theta_t, mut s, mut y) = ([0.0; 4], [0.0; 4], [0.0; 4], [0.0; 4]);
        let mut rows = Vec::with_capacity(n);
        for _ in 0..n {
            task.simulate(&mut rng, &mut th, &mut z, &mut x, &mut g);
            normal::fill(&mut rng, &mut eps);
            for j in 0..4 {
                theta_t[j] = alpha * th[j] + sigma * eps[j];
            }
            task.noised_posterior_score(&Cosine, t, &theta_t, &x, &mut s)
                .unwrap();
            let row: Vec<f64> = coefficients
                .iter()
                .map(|c| {
                    c.apply_into(&th, &theta_t, &g, &mut y);
                    y.iter().zip(&s).map(|(a, b)| (a - b).powi(2)).sum()
                })
                .collect();
            rows.push(row);
        }
        let stats = column_stats(&rows);
        for (name, ((mean, se), exact)) in
            ["dsm", "ltsm", "mix"].iter().zip(stats.iter().zip(closed))
        {
            assert!(
                (mean - exact).abs() < 5.0 * se,
                "t={t} {name}: {mean} ± {se} vs closed form {exact}"
            );
        }
        // The mixture at w_t* has the smallest variance; the DSM and LTSM curves cross.
        assert!(closed[2] <= closed[0].min(closed[1]));
        let crossing = (2.0 / std::f64::consts::PI) * (1.0 / 5f64.sqrt()).atan();
        assert!((mix.optimal_weight(&Cosine, crossing).unwrap() - 0.5).abs() < 1e-12);
        if t < crossing {
            assert!(closed[1] < closed[0] && stats[1].0 < stats[0].0, "t={t}");
        } else {
            assert!(closed[1] > closed[0] && stats[1].0 > stats[0].0, "t={t}");
        }
    }
}

/// Simulates `n` joint scores of a task.
struct JointScores {
    n: usize,
    item: u64,
}

impl TaskVisitor for JointScores {
    type Output = Vec<f64>;
    fn visit<T: Task>(self, task: &T) -> Vec<f64> {
        let (d, k) = (task.dim(), task.observation_dim());
        let (mut th, mut x, mut g) = (
            vec![0.0; self.n * d],
            vec![0.0; self.n * k],
            vec![0.0; self.n * d],
        );
        task.simulate_batch(&mut stream(SEED, self.item), &mut th, &mut x, &mut g)
            .unwrap();
        g
    }
}

#[test]
fn score_constants_match_the_reference_values() {
    // F = E‖∇_θ log p(θ, z, x)‖²: exact 20 (linear_gaussian), the quadrature value
    // (galton_board), and the design value 64.4 (sir, given to 3 digits: ±0.05 on top of
    // 5 standard errors). Fixed seed.
    for (i, task) in SbiTask::ALL.into_iter().enumerate() {
        let g = task.visit(JointScores {
            n: 40_000,
            item: 200 + i as u64,
        });
        let f = estimate_score_constant(&g, task.dim()).unwrap();
        let rounding = if task == SbiTask::Sir { 0.05 } else { 0.0 };
        assert!(
            (f.value - task.score_constant()).abs() < 5.0 * f.std_err + rounding,
            "{task}: {f:?} vs {}",
            task.score_constant()
        );
        assert!(f.std_err < 0.01 * f.value, "{task}: {f:?}");
    }
}

#[test]
fn monte_carlo_optimal_weight_matches_the_closed_form_on_every_task() {
    // ŵ_t = Σ⟨B, B − A⟩ / Σ‖A − B‖² against w_t* = F σ²/(F σ² + d α²). For sir, F is estimated
    // from independent simulations and its error propagated: ∂w*/∂F = w*(1 − w*)/F, so the
    // tolerance is 5 √(SE(ŵ)² + (w*(1 − w*) SE(F̂)/F̂)²). Fixed seeds.
    let times = [0.1, 0.3, 0.5, 0.7, 0.9];
    for (i, task) in SbiTask::ALL.into_iter().enumerate() {
        let d = task.dim();
        let g = task.visit(JointScores {
            n: 40_000,
            item: 300 + i as u64,
        });
        let (f, f_se) = if task == SbiTask::Sir {
            let other = task.visit(JointScores {
                n: 40_000,
                item: 400,
            });
            let e = estimate_score_constant(&other, d).unwrap();
            (e.value, e.std_err)
        } else {
            (task.score_constant(), 0.0)
        };
        let mix = LatentMix::new(d, f).unwrap();
        for (j, t) in times.into_iter().enumerate() {
            let w = estimate_optimal_weight(
                &g,
                d,
                &Cosine,
                t,
                &mut stream(SEED, 500 + 10 * i as u64 + j as u64),
            )
            .unwrap();
            let exact = mix.optimal_weight(&Cosine, t).unwrap();
            let se = (w.std_err.powi(2) + (exact * (1.0 - exact) * f_se / f).powi(2)).sqrt();
            assert!(
                (w.value - exact).abs() < 5.0 * se,
                "{task} t={t}: {w:?} vs {exact} (tolerance 5 × {se})"
            );
            // Precise enough to be a test: w_t* varies over [0, 1].
            assert!(se < 0.01, "{task} t={t}: {se}");
        }
    }
}

#[test]
fn the_weight_standard_error_is_calibrated() {
    // The delta-method standard error of ŵ against the spread of 200 independent estimates
    // from 1,000 draws each (linear_gaussian, t = 0.3 where w* ≈ 0.52): the ratio of the
    // empirical sd to the mean reported SE is within 1 ± 5·0.05 (the sd of a sample sd from
    // 200 values is ≈ 1/√400 = 5% of it). Fixed seed.
    let reps = 200;
    let mut values = Vec::with_capacity(reps);
    let mut ses = Vec::with_capacity(reps);
    for r in 0..reps {
        let g = SbiTask::LinearGaussian.visit(JointScores {
            n: 1_000,
            item: 1_000 + r as u64,
        });
        let w = estimate_optimal_weight(&g, 4, &Cosine, 0.3, &mut stream(SEED, 5_000 + r as u64))
            .unwrap();
        values.push(w.value);
        ses.push(w.std_err);
    }
    let n = reps as f64;
    let mean = values.iter().sum::<f64>() / n;
    let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let mean_se = ses.iter().sum::<f64>() / n;
    let ratio = sd / mean_se;
    assert!(
        (ratio - 1.0).abs() < 0.25,
        "empirical sd {sd} vs reported SE {mean_se}"
    );
}
