//! The computation behind Fig. 4 of De Bortoli et al. (2024), §4.1: the distribution of the score-matching
//! loss (eq. 19) **at the true score** `s = ∇log p_t`, for each target × loss × weighting.
//!
//! One estimate of the loss is
//!
//! ```text
//! ℓ̂ = (1/M) Σⱼ λ(tⱼ) ‖L(x₀ʲ, x_tʲ, tⱼ) − ∇log p_tⱼ(x_tʲ)‖²,
//!     tⱼ ~ U[t_min, t_max], x₀ʲ ~ p_0, x_tʲ ~ N(α_t x₀ʲ, σ_t²),
//! ```
//!
//! with `M = 100`; the figure shows 10,000 such estimates. Its expectation is the irreducible
//! part of the loss, `(1/|T|) ∫ λ_t E_{x_t}[Var(L | x_t)] dt`. The same draws serve every
//! (loss, weighting) pair of a target, so the 16 estimates of one row are correlated but each is
//! exactly the estimator above.
//!
//! Time range: DSM's target has infinite variance at `t = 0` (`Var(L_DSI | x_t) ~ d/σ_t²`) and
//! TSM's at `t = 1` (`~ σ_t²/α_t²`), and the original weighting `1/σ_t²` is not integrable at
//! `t = 0`; `t` is therefore drawn on `[10⁻³, 1 − 10⁻³]` (docs/conventions.md, *Time ranges*), and each weighting is
//! normalised over that range.

use rayon::prelude::*;
use serde::Serialize;
use tsm_core::identity::{Coefficients, ScoreIdentity};
use tsm_core::schedule::{AnySchedule, Schedule};
use tsm_core::target::{Dim, Sample, Score};
use tsm_core::weighting::{NormalisedWeighting, TimeRange, Weighting};
use tsm_targets::GaussianMixture;

/// The losses, with their CSV names.
pub const LOSSES: [&str; 4] = ["dsm", "tsm", "kappa", "kappa_bar"];

/// Sizes of the computation.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sizes {
    /// Loss estimates per (target, loss, weighting).
    pub estimates: usize,
    /// Draws `(t, x_0, x_t)` per estimate.
    pub draws: usize,
}

impl Sizes {
    /// The paper's: 10,000 estimates of 100 draws.
    pub const FULL: Self = Self {
        estimates: 10_000,
        draws: 100,
    };
    /// A reduced run for tests.
    pub const QUICK: Self = Self {
        estimates: 500,
        draws: 100,
    };
}

/// The loss estimates of one target: `estimates[loss][weighting]` is a vector of
/// `sizes.estimates` values.
#[derive(Debug, Clone)]
pub struct TargetLosses {
    /// Target name.
    pub target: String,
    /// `[loss][weighting][estimate]`.
    pub estimates: Vec<Vec<Vec<f64>>>,
}

/// Estimates per work item; items are contiguous blocks of estimates with their own streams.
const BLOCK: usize = 250;

/// Runs the computation for one target.
///
/// # Errors
/// Identity or weighting errors (none on the trimmed range).
pub fn compute(
    name: &str,
    target: &GaussianMixture,
    schedule: AnySchedule,
    range: TimeRange,
    sizes: Sizes,
    seed: u64,
    stream_offset: u64,
) -> anyhow::Result<TargetLosses> {
    let identities = target.figure_identities();
    // The weightings use σ_data² of the target (1 for the four figure targets).
    let weightings: Vec<NormalisedWeighting> = Weighting::ALL
        .iter()
        .map(|&w| NormalisedWeighting::new(w, schedule, target.variance_per_dim(), range))
        .collect::<Result<_, _>>()?;
    let blocks = sizes.estimates.div_ceil(BLOCK);
    let per_block: Vec<Vec<[[f64; 4]; 4]>> = (0..blocks)
        .into_par_iter()
        .map(|b| {
            let count = BLOCK.min(sizes.estimates - b * BLOCK);
            let mut rng = tsm_core::rng::stream(seed, stream_offset + b as u64);
            one_block(
                target,
                &schedule,
                range,
                &identities,
                &weightings,
                count,
                sizes.draws,
                &mut rng,
            )
        })
        .collect::<anyhow::Result<_>>()?;
    let mut estimates: Vec<Vec<Vec<f64>>> = (0..4)
        .map(|_| {
            (0..4)
                .map(|_| Vec::with_capacity(sizes.estimates))
                .collect()
        })
        .collect();
    for e in per_block.iter().flatten() {
        for (l, row) in e.iter().enumerate() {
            for (w, &v) in row.iter().enumerate() {
                estimates[l][w].push(v);
            }
        }
    }
    Ok(TargetLosses {
        target: name.to_owned(),
        estimates,
    })
}

#[allow(clippy::too_many_arguments)]
fn one_block(
    target: &GaussianMixture,
    schedule: &AnySchedule,
    range: TimeRange,
    identities: &[ScoreIdentity; 4],
    weightings: &[NormalisedWeighting],
    count: usize,
    draws: usize,
    rng: &mut tsm_core::rng::FastRng,
) -> anyhow::Result<Vec<[[f64; 4]; 4]>> {
    use rand::Rng;
    let d = target.dim();
    let (mut x0, mut xt, mut g0, mut exact) =
        (vec![0.0; d], vec![0.0; d], vec![0.0; d], vec![0.0; d]);
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let mut sums = [[0.0; 4]; 4];
        for _ in 0..draws {
            let t = range.lerp(rng.random::<f64>());
            let (a, s) = (schedule.alpha(t), schedule.sigma(t));
            target.sample_into(rng, &mut x0);
            for j in 0..d {
                xt[j] = a * x0[j] + s * tsm_core::rng::normal::sample(rng);
            }
            target.score(&x0, &mut g0);
            target.noised_score(schedule, t, &xt, &mut exact);
            for (l, id) in identities.iter().enumerate() {
                let c: Coefficients = id.coefficients(schedule, t)?;
                let sq: f64 = (0..d)
                    .map(|j| (c.apply(x0[j], xt[j], g0[j]) - exact[j]).powi(2))
                    .sum();
                for (w, weighting) in weightings.iter().enumerate() {
                    sums[l][w] += weighting.at(t) * sq;
                }
            }
        }
        out.push(sums.map(|row| row.map(|v| v / draws as f64)));
    }
    Ok(out)
}

/// Summary statistics of a sample (the CSV row of Fig. 4).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Target name.
    pub target: String,
    /// Loss (`dsm`, `tsm`, `kappa`, `kappa_bar`).
    pub loss: &'static str,
    /// Weighting name.
    pub weighting: &'static str,
    /// Number of estimates.
    pub n: usize,
    /// Sample mean.
    pub mean: f64,
    /// Standard error of the mean.
    pub std_err: f64,
    /// Sample variance.
    pub variance: f64,
    /// Minimum.
    pub min: f64,
    /// 1% quantile.
    pub q01: f64,
    /// 5% quantile.
    pub q05: f64,
    /// 25% quantile.
    pub q25: f64,
    /// Median.
    pub q50: f64,
    /// 75% quantile.
    pub q75: f64,
    /// 95% quantile.
    pub q95: f64,
    /// 99% quantile.
    pub q99: f64,
    /// Maximum.
    pub max: f64,
    /// Number of non-finite estimates (excluded from the statistics).
    pub non_finite: usize,
}

impl Summary {
    /// Summarises `values` (sorted internally; non-finite values are counted and dropped).
    pub fn of(target: &str, loss: &'static str, weighting: &'static str, values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let variance = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0);
        // Linear interpolation between order statistics (type 7, as numpy's default).
        let q = |p: f64| {
            let h = p * (n - 1) as f64;
            let (lo, frac) = (h.floor() as usize, h - h.floor());
            v[lo] + frac * (v[(lo + 1).min(n - 1)] - v[lo])
        };
        Self {
            target: target.to_owned(),
            loss,
            weighting,
            n,
            mean,
            std_err: (variance / n as f64).sqrt(),
            variance,
            min: v[0],
            q01: q(0.01),
            q05: q(0.05),
            q25: q(0.25),
            q50: q(0.5),
            q75: q(0.75),
            q95: q(0.95),
            q99: q(0.99),
            max: v[n - 1],
            non_finite: values.len() - n,
        }
    }
}
