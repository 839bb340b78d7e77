//! Maximum mean discrepancy with a Gaussian (RBF) kernel, unbiased estimator (Gretton et al.
//! 2012, eq. 3):
//!
//! ```text
//! k(a, b) = exp(−‖a − b‖² / (2h²))
//! MMD²_u = 1/(m(m−1)) Σ_{i≠j} k(xᵢ, xⱼ) + 1/(n(n−1)) Σ_{i≠j} k(yᵢ, yⱼ) − 2/(mn) Σ_{i,j} k(xᵢ, yⱼ)
//! ```
//!
//! **Bandwidth rule** ([`median_bandwidth`]): `h` = the median of the pairwise Euclidean
//! distances within the pooled sample, computed on the first 500 points of each sample (a
//! fixed subsample, so the rule is deterministic). Fig. 5 fixes `h` once from the data so that
//! MMD values along training are comparable.
//!
//! **Two-sample test** ([`MmdTest`]): MMD² at a few *fixed* bandwidths (chosen from the
//! data's known scale, not re-derived from each sample), each with a permutation null
//! (Gretton et al. 2012, §5: under `p = q` the pooled points are exchangeable, so the
//! statistics of random relabellings are draws from the exact null), a per-bandwidth
//! threshold (the null's `1 − α` quantile) and p-value, and one p-value for all bandwidths
//! together: the largest of the standardised statistics `(MMD²_h − mean_h)/sd_h` (moments
//! over the permutations) is ranked among its own permutation values (a max-T test, Westfall
//! & Young 1993), so the level holds without a Bonferroni factor and the smallest p-value is
//! `1/(P + 1)` whatever the number of bandwidths.
//!
//! The double sums run in parallel over blocks of rows (rayon), with the coordinates stored
//! column-wise in `f32` and a vectorised `exp` (the crate's `exp_f32`); each row's sum is
//! accumulated in `f32` over ≤ 10⁴ terms of size ≤ 1 and added to an `f64` total. 10⁴ × 10⁴ in
//! 2-D takes well under a second on two cores.

use rand::seq::SliceRandom;
use rayon::prelude::*;
use serde::Serialize;

use crate::kernels::exp_f32;
use crate::{Error, Result};

/// Points, column-major in `f32`: `cols[k][i]` = coordinate `k` of point `i`.
struct Columns {
    cols: Vec<Vec<f32>>,
    n: usize,
}

impl Columns {
    fn new(x: &[f64], d: usize) -> Self {
        let n = x.len() / d;
        let cols = (0..d)
            .map(|k| (0..n).map(|i| x[i * d + k] as f32).collect())
            .collect();
        Self { cols, n }
    }
}

/// `Σ_i Σ_{j ∈ J(i)} k(aᵢ, bⱼ)` with `J(i) = {j > i}` when `upper`, else all `j`.
fn kernel_sum(a: &Columns, b: &Columns, gamma: f32, upper: bool) -> f64 {
    (0..a.n)
        .into_par_iter()
        .with_min_len(64)
        .map(|i| {
            let start = if upper { i + 1 } else { 0 };
            let len = b.n - start;
            let mut d2 = vec![0.0f32; len];
            for (ak, bk) in a.cols.iter().zip(&b.cols) {
                let ai = ak[i];
                for (o, &bj) in d2.iter_mut().zip(&bk[start..]) {
                    let r = ai - bj;
                    *o += r * r;
                }
            }
            let mut s = 0.0f32;
            for v in &d2 {
                s += exp_f32(-gamma * v);
            }
            s as f64
        })
        .sum()
}

/// The median-heuristic bandwidth `h` on the pooled first ≤ 500 points of `x` and `y`.
///
/// # Errors
/// [`Error::Config`] for fewer than 2 pooled points or all points equal.
pub fn median_bandwidth(x: &[f64], y: &[f64], d: usize) -> Result<f64> {
    let take = |v: &[f64]| v[..v.len().min(500 * d)].to_vec();
    let mut pooled = take(x);
    pooled.extend(take(y));
    let n = pooled.len() / d;
    let mut dists = Vec::with_capacity(n * (n - 1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            let r2: f64 = (0..d)
                .map(|k| (pooled[i * d + k] - pooled[j * d + k]).powi(2))
                .sum();
            dists.push(r2.sqrt());
        }
    }
    if dists.is_empty() {
        return Err(Error::config("MMD bandwidth needs at least 2 points"));
    }
    let mid = dists.len() / 2;
    let (_, m, _) = dists.select_nth_unstable_by(mid, f64::total_cmp);
    if *m > 0.0 {
        Ok(*m)
    } else {
        Err(Error::config("MMD bandwidth: the median distance is zero"))
    }
}

/// Unbiased `MMD²` between samples `x` (`[m, d]`) and `y` (`[n, d]`) with bandwidth `h`.
///
/// # Errors
/// [`Error::Config`] for fewer than 2 points in a sample, ragged buffers or `h ≤ 0`.
pub fn mmd2_unbiased(x: &[f64], y: &[f64], d: usize, h: f64) -> Result<f64> {
    if d == 0 || x.len() % d != 0 || y.len() % d != 0 || x.len() < 2 * d || y.len() < 2 * d {
        return Err(Error::config(format!(
            "MMD needs two samples of ≥ 2 points in dimension {d}, got lengths {} and {}",
            x.len(),
            y.len()
        )));
    }
    if !(h.is_finite() && h > 0.0) {
        return Err(Error::config(format!(
            "MMD bandwidth must be positive, got {h}"
        )));
    }
    let gamma = (1.0 / (2.0 * h * h)) as f32;
    let (cx, cy) = (Columns::new(x, d), Columns::new(y, d));
    let (m, n) = (cx.n as f64, cy.n as f64);
    let kxx = 2.0 * kernel_sum(&cx, &cx, gamma, true) / (m * (m - 1.0));
    let kyy = 2.0 * kernel_sum(&cy, &cy, gamma, true) / (n * (n - 1.0));
    let kxy = kernel_sum(&cx, &cy, gamma, false) / (m * n);
    Ok(kxx + kyy - 2.0 * kxy)
}

/// A permutation two-sample test on MMD² at fixed bandwidths (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq)]
pub struct MmdTest {
    /// The kernel bandwidths `h` (each finite and positive).
    pub bandwidths: Vec<f64>,
    /// Random relabellings of the pooled points (at least 19; 300 by default).
    pub permutations: usize,
    /// At most this many points of each sample enter the test (the first ones: samples are
    /// i.i.d., so the first `m` are a random subset); 1000 by default. The cost is
    /// `O(permutations · bandwidths · (2m)²)`.
    pub max_points: usize,
    /// Seed of the relabellings.
    pub seed: u64,
}

/// The result of an [`MmdTest`] at one bandwidth.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BandwidthResult {
    /// The bandwidth `h`.
    pub bandwidth: f64,
    /// The unbiased MMD² of the two samples.
    pub mmd2: f64,
    /// The `1 − α` quantile of the permutation null: MMD² above it rejects at this bandwidth
    /// alone.
    pub threshold: f64,
    /// The permutation p-value at this bandwidth, `(1 + #{null ≥ observed}) / (1 + P)`.
    pub p_value: f64,
}

/// The result of an [`MmdTest`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MmdTestResult {
    /// Per bandwidth.
    pub bandwidths: Vec<BandwidthResult>,
    /// The p-value of all bandwidths together (the largest standardised MMD² over the
    /// bandwidths, calibrated by the same permutations).
    pub p_value: f64,
    /// The points of each sample used.
    pub points: usize,
    /// The number of permutations.
    pub permutations: usize,
    /// The level the thresholds are for.
    pub alpha: f64,
}

impl MmdTest {
    /// The defaults (300 permutations, 1000 points a side, seed 0) at `bandwidths`.
    pub fn new(bandwidths: Vec<f64>) -> Self {
        Self {
            bandwidths,
            permutations: 300,
            max_points: 1000,
            seed: 0,
        }
    }

    /// Tests whether `x` and `y` (row-major, dimension `d`, finite) come from the same
    /// distribution; thresholds at level `alpha`.
    ///
    /// # Errors
    /// [`Error::Invalid`] for bad bandwidths, fewer than 19 permutations, `alpha ∉ (0, 1)`,
    /// fewer than 2 points in a sample, ragged buffers or non-finite values.
    pub fn run(&self, x: &[f64], y: &[f64], d: usize, alpha: f64) -> Result<MmdTestResult> {
        if self.bandwidths.is_empty() || !self.bandwidths.iter().all(|h| h.is_finite() && *h > 0.0)
        {
            return Err(Error::invalid(
                "bandwidths",
                format!("{:?}", self.bandwidths),
                "finite, positive and at least one",
            ));
        }
        if self.permutations < 19 {
            return Err(Error::invalid(
                "permutations",
                self.permutations,
                "at least 19",
            ));
        }
        if !(alpha > 0.0 && alpha < 1.0) {
            return Err(Error::invalid("alpha", alpha, "in (0, 1)"));
        }
        if d == 0 || x.len() % d != 0 || y.len() % d != 0 {
            return Err(Error::invalid(
                "points",
                format!("lengths {} and {}", x.len(), y.len()),
                format!("whole rows of dimension {d}"),
            ));
        }
        let m = (x.len() / d).min(y.len() / d).min(self.max_points);
        if m < 2 {
            return Err(Error::invalid("points", m, "at least 2 a side"));
        }
        if !x.iter().chain(y).all(|v| v.is_finite()) {
            return Err(Error::invalid("points", "non-finite values", "finite"));
        }
        // Pooled points, coordinates clamped where the kernel is 0 anyway (keeps f32 finite).
        let pooled: Vec<f32> = x[..m * d]
            .iter()
            .chain(&y[..m * d])
            .map(|&v| v.clamp(-1e15, 1e15) as f32)
            .collect();
        let n = 2 * m;
        // Labels: +1 for the first sample, −1 for the second; P random relabellings.
        let mut rng = tsm_core::rng::stream(self.seed, 0);
        let mut labels: Vec<Vec<f32>> = Vec::with_capacity(self.permutations + 1);
        let observed: Vec<f32> = (0..n).map(|i| if i < m { 1.0 } else { -1.0 }).collect();
        for _ in 0..self.permutations {
            let mut s = observed.clone();
            s.shuffle(&mut rng);
            labels.push(s);
        }
        labels.insert(0, observed);
        let (mf, nf) = (m as f64, n as f64);
        let mut stats: Vec<Vec<f64>> = Vec::with_capacity(self.bandwidths.len());
        for &h in &self.bandwidths {
            let k = kernel_matrix(&pooled, d, n, h);
            // S = Σ_{i≠j} K_ij; for labels s, C = Σ_{i∈X, j∈Y} K_ij = (N + S − sᵀKs)/4 and
            // MMD²_u = S/(m(m−1)) − C (2/(m(m−1)) + 2/m²).
            let total: f64 = k
                .par_chunks(n)
                .map(|row| row.iter().map(|&v| f64::from(v)).sum::<f64>())
                .sum::<f64>()
                - nf;
            let mmd2 = |q: f64| {
                let c = (nf + total - q) / 4.0;
                total / (mf * (mf - 1.0)) - c * (2.0 / (mf * (mf - 1.0)) + 2.0 / (mf * mf))
            };
            stats.push(
                labels
                    .par_chunks(GROUP)
                    .flat_map_iter(|group| quadratic_forms(&k, group, n))
                    .map(mmd2)
                    .collect(),
            );
        }
        // Per bandwidth, the observed statistic's p-value among all P + 1 labellings; all
        // bandwidths together: the largest standardised statistic max_k (S_k − mean_k)/sd_k,
        // ranked the same way (the moments over all P + 1 labellings, so exchangeability is
        // kept and the test is exact).
        let total = (self.permutations + 1) as f64;
        let p_of =
            |column: &[f64], v: f64| column.iter().filter(|&&u| u >= v).count() as f64 / total;
        let standardised: Vec<f64> = {
            let moments: Vec<(f64, f64)> = stats
                .iter()
                .map(|col| {
                    let mean = col.iter().sum::<f64>() / total;
                    let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / total;
                    (mean, var.sqrt().max(f64::MIN_POSITIVE))
                })
                .collect();
            (0..labels.len())
                .map(|j| {
                    stats
                        .iter()
                        .zip(&moments)
                        .map(|(col, &(mean, sd))| (col[j] - mean) / sd)
                        .fold(f64::NEG_INFINITY, f64::max)
                })
                .collect()
        };
        let p_value = p_of(&standardised, standardised[0]);
        let bandwidths = self
            .bandwidths
            .iter()
            .zip(&stats)
            .map(|(&bandwidth, col)| {
                let mut null = col[1..].to_vec();
                null.sort_by(f64::total_cmp);
                // The smallest null value with at most α of the null above it.
                let rank = ((1.0 - alpha) * null.len() as f64).ceil() as usize;
                BandwidthResult {
                    bandwidth,
                    mmd2: col[0],
                    threshold: null[rank.clamp(1, null.len()) - 1],
                    p_value: p_of(col, col[0]),
                }
            })
            .collect();
        Ok(MmdTestResult {
            bandwidths,
            p_value,
            points: m,
            permutations: self.permutations,
            alpha,
        })
    }
}

/// The `n × n` Gaussian kernel matrix of `n` points (row-major `f32`, dimension `d`).
fn kernel_matrix(points: &[f32], d: usize, n: usize, h: f64) -> Vec<f32> {
    let gamma = (1.0 / (2.0 * h * h)) as f32;
    let mut k = vec![0.0f32; n * n];
    k.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        let a = &points[i * d..(i + 1) * d];
        for (j, out) in row.iter_mut().enumerate() {
            let b = &points[j * d..(j + 1) * d];
            let mut r2 = 0.0f32;
            for (p, q) in a.iter().zip(b) {
                r2 += (p - q) * (p - q);
            }
            *out = exp_f32(-gamma * r2);
        }
    });
    k
}

/// Relabellings evaluated together in one pass over the kernel matrix.
const GROUP: usize = 8;

/// `sᵀ K s` for each `s` of `group` (at most [`GROUP`] of them): one pass over `K`, each row's
/// sums in `f32`, the totals in `f64`.
fn quadratic_forms(k: &[f32], group: &[Vec<f32>], n: usize) -> Vec<f64> {
    // The labels interleaved, [j][g], so that each K_ij meets all of them at once.
    let mut t = vec![0.0f32; n * GROUP];
    for (g, s) in group.iter().enumerate() {
        for (j, &v) in s.iter().enumerate() {
            t[j * GROUP + g] = v;
        }
    }
    let mut out = [0.0f64; GROUP];
    for (i, row) in k.chunks_exact(n).enumerate() {
        let mut acc = [0.0f32; GROUP];
        for (&kij, tj) in row.iter().zip(t.chunks_exact(GROUP)) {
            for g in 0..GROUP {
                acc[g] += kij * tj[g];
            }
        }
        let si = &t[i * GROUP..(i + 1) * GROUP];
        for g in 0..GROUP {
            out[g] += f64::from(si[g]) * f64::from(acc[g]);
        }
    }
    out[..group.len()].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f64], y: &[f64], d: usize, h: f64) -> f64 {
        let k = |a: &[f64], b: &[f64]| {
            (-(a.iter().zip(b).map(|(p, q)| (p - q).powi(2)).sum::<f64>()) / (2.0 * h * h)).exp()
        };
        let (m, n) = (x.len() / d, y.len() / d);
        let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
        for i in 0..m {
            for j in 0..m {
                if i != j {
                    sxx += k(&x[i * d..][..d], &x[j * d..][..d]);
                }
            }
            for j in 0..n {
                sxy += k(&x[i * d..][..d], &y[j * d..][..d]);
            }
        }
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    syy += k(&y[i * d..][..d], &y[j * d..][..d]);
                }
            }
        }
        let (m, n) = (m as f64, n as f64);
        sxx / (m * (m - 1.0)) + syy / (n * (n - 1.0)) - 2.0 * sxy / (m * n)
    }

    #[test]
    fn matches_the_naive_double_sum() {
        let x: Vec<f64> = (0..60).map(|i| ((i * 37) % 11) as f64 * 0.3).collect();
        let y: Vec<f64> = (0..80).map(|i| ((i * 13) % 7) as f64 * 0.5 - 0.4).collect();
        let h = median_bandwidth(&x, &y, 2).expect("h");
        let fast = mmd2_unbiased(&x, &y, 2, h).expect("mmd");
        let slow = naive(&x, &y, 2, h);
        assert!((fast - slow).abs() < 1e-5, "{fast} vs {slow}");
        assert!(mmd2_unbiased(&x[..1], &y, 2, h).is_err());
    }

    /// `n` draws of `N(shift, scale² I_2)`.
    fn normal(n: usize, shift: f64, scale: f64, stream: u64) -> Vec<f64> {
        use rand::Rng;
        let mut rng = tsm_core::rng::stream(11, stream);
        (0..2 * n)
            .map(|_| shift + scale * rng.sample::<f64, _>(rand_distr::StandardNormal))
            .collect()
    }

    #[test]
    fn the_permutation_test_keeps_its_level_and_sees_a_shift() {
        // Fixed seeds. Under p = q the p-value is uniform on {1/(P+1), …, 1}; over 20 pairs
        // of N(0, I) samples its mean is 1/2 ± 0.065 (sd of a uniform mean over 20); the
        // number below 0.05 is binomial(20, 0.05). The test allows 4 sd, and at most 4 below
        // 0.05 (probability 0.997).
        let test = MmdTest {
            permutations: 99,
            max_points: 200,
            ..MmdTest::new(vec![0.5, 1.0, 2.0])
        };
        let mut ps = Vec::new();
        for k in 0..20 {
            let (x, y) = (
                normal(200, 0.0, 1.0, 2 * k),
                normal(200, 0.0, 1.0, 2 * k + 1),
            );
            let r = test.run(&x, &y, 2, 0.05).expect("test");
            // The statistic is the unbiased MMD² (to f32 rounding of the kernel).
            let direct = mmd2_unbiased(&x, &y, 2, 1.0).expect("mmd");
            assert!(
                (r.bandwidths[1].mmd2 - direct).abs() < 1e-5,
                "{r:?} vs {direct}"
            );
            ps.push(r.p_value);
        }
        let mean = ps.iter().sum::<f64>() / 20.0;
        assert!((mean - 0.5).abs() < 4.0 * 0.065, "{ps:?}");
        assert!(ps.iter().filter(|&&p| p < 0.05).count() <= 4, "{ps:?}");
        // A shift of half a standard deviation, and a scale of 1.5, are seen at 200 points.
        let x = normal(200, 0.0, 1.0, 100);
        for y in [normal(200, 0.5, 1.0, 101), normal(200, 0.0, 1.5, 102)] {
            let r = test.run(&x, &y, 2, 0.05).expect("test");
            assert!(r.p_value <= 0.02, "{r:?}");
            assert!(r.bandwidths.iter().any(|b| b.mmd2 > b.threshold), "{r:?}");
        }
        // Bad input is a typed error.
        assert!(test.run(&x, &[f64::NAN, 0.0, 1.0, 1.0], 2, 0.05).is_err());
        assert!(MmdTest::new(vec![]).run(&x, &x, 2, 0.05).is_err());
        assert!(test.run(&x, &x, 2, 1.0).is_err());
    }
}
