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
//! The double sums run in parallel over blocks of rows (rayon), with the coordinates stored
//! column-wise in `f32` and a vectorised `exp` (the crate's `exp_f32`); each row's sum is
//! accumulated in `f32` over ≤ 10⁴ terms of size ≤ 1 and added to an `f64` total. 10⁴ × 10⁴ in
//! 2-D takes well under a second on two cores.

use rayon::prelude::*;

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
}
