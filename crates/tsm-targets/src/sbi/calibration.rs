//! Simulation-based calibration (SBC; Talts et al., 2018): is a posterior approximation
//! calibrated on average over the prior predictive?
//!
//! Draw `θ* ~ p(θ)`, `x ~ p(x | θ*)`, then `L` draws `θ⁽¹⁾…θ⁽ᴸ⁾` from the posterior being
//! checked at `x`. If that posterior is exact, `θ*` and the draws are exchangeable, so the rank
//! of `θ*_j` among `θ⁽·⁾_j` (the number of draws below it) is uniform on `{0, …, L}` for every
//! coordinate `j`. With a uniform `U` added, `(rank + U)/(L + 1)` is exactly `Uniform(0, 1)`
//! ([`normalised_rank`]), so a Kolmogorov–Smirnov test ([`ks_uniform`]) checks uniformity
//! without binning; [`rank_histogram`] gives the usual picture.

use tsm_core::rand::Rng;

/// The rank of `value` among `draws`: how many draws are strictly below it.
pub fn rank(value: f64, draws: impl IntoIterator<Item = f64>) -> usize {
    draws.into_iter().filter(|&d| d < value).count()
}

/// `(rank + U)/(L + 1)` with `U ~ Uniform(0, 1)`: exactly `Uniform(0, 1)` when `rank` is
/// uniform on `{0, …, L}` (`L = draws`).
pub fn normalised_rank<R: Rng + ?Sized>(rank: usize, draws: usize, rng: &mut R) -> f64 {
    (rank as f64 + rng.random::<f64>()) / (draws as f64 + 1.0)
}

/// Counts of ranks in `0..=draws` grouped into `bins` equal bins (rank `k` goes to bin
/// `k · bins / (draws + 1)`).
pub fn rank_histogram(ranks: &[usize], draws: usize, bins: usize) -> Vec<usize> {
    let bins = bins.max(1);
    let mut h = vec![0; bins];
    for &r in ranks {
        h[(r.min(draws) * bins / (draws + 1)).min(bins - 1)] += 1;
    }
    h
}

/// The result of a uniformity test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UniformityTest {
    /// The Kolmogorov–Smirnov statistic `D = sup |F̂(u) − u|`.
    pub statistic: f64,
    /// The asymptotic p-value of `D` (with Stephens' small-sample correction).
    pub p_value: f64,
    /// The number of values tested.
    pub n: usize,
}

/// The Kolmogorov–Smirnov test of `values` (in `[0, 1]`) against `Uniform(0, 1)`: the
/// statistic `D = max_i max(i/n − u₍ᵢ₎, u₍ᵢ₎ − (i − 1)/n)` over the sorted values, and the
/// p-value `Q_KS(λ) = 2 Σ_{k≥1} (−1)^{k−1} e^{−2k²λ²}` at
/// `λ = (√n + 0.12 + 0.11/√n) D` (Stephens, 1970; accurate to a few percent for `n ≥ 5`).
///
/// # Errors
/// [`tsm_core::Error::TooFewDraws`] for fewer than 5 values;
/// [`tsm_core::Error::OutOfRange`] for a value outside `[0, 1]` (or NaN).
pub fn ks_uniform(values: &[f64]) -> crate::Result<UniformityTest> {
    let n = values.len();
    if n < 5 {
        return Err(tsm_core::Error::TooFewDraws {
            op: "ks_uniform",
            needed: 5,
            got: n,
        }
        .into());
    }
    if let Some(&bad) = values.iter().find(|v| !(0.0..=1.0).contains(*v)) {
        return Err(tsm_core::Error::OutOfRange {
            name: "ks_uniform value",
            value: bad,
            allowed: "[0, 1]",
        }
        .into());
    }
    let mut u = values.to_vec();
    u.sort_by(f64::total_cmp);
    let nf = n as f64;
    let statistic = u
        .iter()
        .enumerate()
        .map(|(i, &v)| ((i + 1) as f64 / nf - v).max(v - i as f64 / nf))
        .fold(0.0, f64::max);
    let sq = nf.sqrt();
    let lambda = (sq + 0.12 + 0.11 / sq) * statistic;
    Ok(UniformityTest {
        statistic,
        p_value: kolmogorov_q(lambda),
        n,
    })
}

/// `Q_KS(λ) = 2 Σ_{k≥1} (−1)^{k−1} e^{−2k²λ²}`, 1 for small `λ` (where the series converges
/// slowly and `Q ≈ 1`).
fn kolmogorov_q(lambda: f64) -> f64 {
    if lambda < 0.2 {
        return 1.0;
    }
    let mut sum = 0.0;
    for k in 1..=100 {
        let kf = f64::from(k);
        let term = (-2.0 * kf * kf * lambda * lambda).exp();
        sum += if k % 2 == 1 { term } else { -term };
        if term < 1e-17 {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsm_core::rng::stream;

    #[test]
    fn ks_accepts_uniforms_and_rejects_a_shift() {
        let mut rng = stream(1, 0);
        let u: Vec<f64> = (0..500).map(|_| rng.random::<f64>()).collect();
        let test = ks_uniform(&u).unwrap();
        assert!(test.p_value > 1e-3, "{test:?}");
        let shifted: Vec<f64> = u.iter().map(|v| v * v).collect();
        assert!(ks_uniform(&shifted).unwrap().p_value < 1e-6);
        assert!(ks_uniform(&u[..3]).is_err());
        assert!(ks_uniform(&[0.1, 0.2, 1.5, 0.3, 0.4]).is_err());
    }

    #[test]
    fn kolmogorov_distribution_known_values() {
        // Q_KS(1.3581) = 0.05 and Q_KS(1.6276) = 0.01 (the classical critical values).
        assert!((kolmogorov_q(1.3581) - 0.05).abs() < 1e-4);
        assert!((kolmogorov_q(1.6276) - 0.01).abs() < 1e-4);
    }

    #[test]
    fn ranks_and_histograms() {
        assert_eq!(rank(0.5, [0.1, 0.7, 0.4, 0.5]), 2);
        assert_eq!(rank_histogram(&[0, 1, 2, 3, 9], 9, 5), vec![2, 2, 0, 0, 1]);
        let mut rng = stream(2, 0);
        for r in 0..=9 {
            let u = normalised_rank(r, 9, &mut rng);
            assert!(u >= r as f64 / 10.0 && u < (r + 1) as f64 / 10.0);
        }
    }
}
