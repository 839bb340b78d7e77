//! The computation behind Fig. 2 (paper `001` §4.1): variance and error of the Monte Carlo
//! score estimators (eq. 18) over `t`, shared by the figure binary and the benchmark.
//!
//! For each target and `t = k/K` (`k = 1…K−1`): draw `points` values `x_t ~ p_t`; for each,
//! draw `draws` samples `x_0 ~ p(x_0|x_t)` (eq. 17) and evaluate DSI, TSI, `κ` and `κ̄` on the
//! same draws. Reported per (target, t, estimator):
//! - `variance`: mean over points of (sample variance of `L` over the draws)/`draws`, i.e. the
//!   variance of the estimator (SPEC §4);
//! - `mse`: mean over points of (estimate − `∇log p_t(x_t)`)², against the exact marginal score.
//!
//! Each (target, t) pair is one rayon work item with its own random stream
//! (`tsm_core::rng::stream(seed, item)`), so the output is the same whatever the thread count.

use rayon::prelude::*;
use serde::Serialize;
use tsm_core::estimator::MonteCarloScore;
use tsm_core::identity::Coefficients;
use tsm_core::schedule::Schedule;
use tsm_core::target::{Dim, Sample, Score};
use tsm_targets::GaussianMixture;

/// The estimators of Fig. 2, in the paper's order, with their CSV names.
pub const ESTIMATORS: [&str; 4] = ["dsi", "tsi", "kappa", "kappa_bar"];

/// Sizes of the computation.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sizes {
    /// `K`: times are `k/K`, `k = 1…K−1`.
    pub time_steps: usize,
    /// Points `x_t ~ p_t` per time.
    pub points: usize,
    /// Posterior draws per point.
    pub draws: usize,
}

impl Sizes {
    /// The paper's sizes: 99 times, 10,000 points, 100 draws.
    pub const FULL: Self = Self {
        time_steps: 100,
        points: 10_000,
        draws: 100,
    };
    /// A reduced run for tests: 19 times, 200 points, 100 draws.
    pub const QUICK: Self = Self {
        time_steps: 20,
        points: 200,
        draws: 100,
    };

    /// The time grid `k/K`, `k = 1…K−1`.
    pub fn times(&self) -> Vec<f64> {
        (1..self.time_steps)
            .map(|k| k as f64 / self.time_steps as f64)
            .collect()
    }

    /// Total posterior draws for `targets` targets.
    pub fn total_draws(&self, targets: usize) -> u64 {
        (targets * (self.time_steps - 1) * self.points * self.draws) as u64
    }
}

/// One row of Fig. 2's CSV (`target,t,estimator,variance,mse`; SPEC §5).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Target name.
    pub target: String,
    /// Time.
    pub t: f64,
    /// Estimator name (`dsi`, `tsi`, `kappa`, `kappa_bar`).
    pub estimator: &'static str,
    /// Variance of the estimator, averaged over points.
    pub variance: f64,
    /// Mean squared error against the exact score.
    pub mse: f64,
}

/// Runs the computation for named targets; rows are ordered by target, then `t`, then estimator.
///
/// # Errors
/// Propagates identity or posterior errors (none occur on the open grid `0 < t < 1`).
pub fn compute(
    targets: &[(&str, GaussianMixture)],
    schedule: &impl Schedule,
    sizes: Sizes,
    seed: u64,
) -> anyhow::Result<Vec<Row>> {
    let times = sizes.times();
    let items: Vec<(usize, usize)> = (0..targets.len())
        .flat_map(|i| (0..times.len()).map(move |k| (i, k)))
        .collect();
    let per_item: Vec<[(f64, f64); 4]> = items
        .par_iter()
        .enumerate()
        .map(|(item, &(i, k))| {
            one_time(&targets[i].1, schedule, times[k], sizes, seed, item as u64)
        })
        .collect::<anyhow::Result<_>>()?;
    let mut rows = Vec::with_capacity(items.len() * ESTIMATORS.len());
    for (&(i, k), stats) in items.iter().zip(&per_item) {
        for (name, &(variance, mse)) in ESTIMATORS.iter().zip(stats) {
            rows.push(Row {
                target: targets[i].0.to_owned(),
                t: times[k],
                estimator: name,
                variance,
                mse,
            });
        }
    }
    Ok(rows)
}

/// `(variance, mse)` of each estimator at one time.
fn one_time(
    target: &GaussianMixture,
    schedule: &impl Schedule,
    t: f64,
    sizes: Sizes,
    seed: u64,
    item: u64,
) -> anyhow::Result<[(f64, f64); 4]> {
    let identities = target.figure_identities();
    let coefficients: Vec<Coefficients> = identities
        .iter()
        .map(|id| id.coefficients(schedule, t))
        .collect::<Result<_, _>>()?;
    let d = target.dim();
    let marginal = target.noised(schedule, t)?;
    let mut rng = tsm_core::rng::stream(seed, item);
    let mut mc = MonteCarloScore::new(d, &coefficients);
    let (mut x_t, mut exact) = (vec![0.0; d], vec![0.0; d]);
    let mut sums = [(0.0, 0.0); 4];
    for _ in 0..sizes.points {
        marginal.sample_into(&mut rng, &mut x_t);
        marginal.score(&x_t, &mut exact);
        mc.run(target, schedule, t, &x_t, sizes.draws, &mut rng)?;
        for (k, (var_sum, se_sum)) in sums.iter_mut().enumerate() {
            *var_sum += mc.estimator_variance(k)?;
            *se_sum += (0..d)
                .map(|j| Ok((mc.mean(k, j)? - exact[j]).powi(2)))
                .sum::<tsm_core::Result<f64>>()?;
        }
    }
    let n = sizes.points as f64;
    Ok(sums.map(|(v, e)| (v / n, e / n)))
}
