//! The vectorised batch kernels of the mixture: the score of a 1-D mixture at many points and
//! the two-component posterior draws, each compiled three times by
//! [`tsm_core::multiversion!`] (AVX-512 or AVX2 when the CPU has it, the baseline otherwise;
//! the same IEEE operations, so the same bits — tested with each path forced in turn).

use tsm_core::fastmath;

use super::GaussianMixture;

tsm_core::multiversion! {
    avx512;
    /// `z ← m_c + s_c z` with `c = 1` where `u ≥ threshold`, else `c = 0`.
    pub(super) fn place_two_components(z: &mut [f64], u: &[u32], threshold: u64, means: &[f64], stds: &[f64])
        => place_two_components_kernel
}

#[inline(always)]
fn place_two_components_kernel(
    z: &mut [f64],
    u: &[u32],
    threshold: u64,
    means: &[f64],
    stds: &[f64],
) {
    let (m0, m1, s0, s1) = (means[0], means[1], stds[0], stds[1]);
    for (o, &u) in z.iter_mut().zip(u) {
        let second = u64::from(u) >= threshold;
        let m = if second { m1 } else { m0 };
        let s = if second { s1 } else { s0 };
        *o = m + s * *o;
    }
}

impl GaussianMixture {
    /// Vectorisable score of a 1-D mixture at many points.
    ///
    /// Two passes per point over the components: the largest log-term first, then the
    /// responsibilities with one [`fastmath::exp`] each; with two components the
    /// responsibility is a logistic function of the log-ratio (one exp per point).
    pub(super) fn score_batch_1d(&self, xs: &[f64], out: &mut [f64]) {
        score_batch_1d(self, xs, out);
    }
}

tsm_core::multiversion! {
    avx512;
    fn score_batch_1d(mixture: &GaussianMixture, xs: &[f64], out: &mut [f64]) => score_batch_1d_kernel
}

#[inline(always)]
fn score_batch_1d_kernel(mixture: &GaussianMixture, xs: &[f64], out: &mut [f64]) {
    let (mu, iv, ln) = (&mixture.means, &mixture.inv_vars, &mixture.log_norms);
    match mixture.n_components() {
        1 => {
            for (o, &x) in out.iter_mut().zip(xs) {
                *o = -(x - mu[0]) * iv[0];
            }
        }
        2 => {
            for (o, &x) in out.iter_mut().zip(xs) {
                let (r0, r1) = (x - mu[0], x - mu[1]);
                let l0 = ln[0] - 0.5 * r0 * r0 * iv[0];
                let l1 = ln[1] - 0.5 * r1 * r1 * iv[1];
                // Responsibility of component 1: 1/(1 + e^{l0 − l1}); finite for any gap.
                let p1 = 1.0 / (1.0 + fastmath::exp(l0 - l1));
                let (g0, g1) = (-r0 * iv[0], -r1 * iv[1]);
                *o = g0 + p1 * (g1 - g0);
            }
        }
        n => {
            for (o, &x) in out.iter_mut().zip(xs) {
                let mut max_log = f64::NEG_INFINITY;
                for i in 0..n {
                    let r = x - mu[i];
                    max_log = max_log.max(ln[i] - 0.5 * r * r * iv[i]);
                }
                let (mut total, mut acc) = (0.0, 0.0);
                for i in 0..n {
                    let r = x - mu[i];
                    let w = fastmath::exp(ln[i] - 0.5 * r * r * iv[i] - max_log);
                    total += w;
                    acc -= w * r * iv[i];
                }
                *o = acc / total;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::GaussianMixture;
    use tsm_core::target::Score;

    #[test]
    fn every_dispatch_level_gives_the_portable_bits() {
        // Each level the CPU has (AVX-512, AVX2), forced in turn, against the baseline build
        // of the same kernels: bit for bit, for 1, 2 and 4 components and the placement of
        // two-component draws.
        use tsm_core::fastmath::{available_levels, with_cap, Level};
        let four = GaussianMixture::univariate(
            &[0.1, 0.2, 0.3, 0.4],
            &[-2.0, -0.5, 0.5, 3.0],
            &[0.3, 0.5, 0.2, 1.0],
        )
        .unwrap();
        let xs: Vec<f64> = (0..203).map(|i| -40.0 + 0.4 * i as f64).collect();
        let u: Vec<u32> = (0..203u32).map(|i| i.wrapping_mul(0x9E37_79B9)).collect();
        let run = |level: Level| {
            with_cap(Some(level), || {
                let mut out = Vec::new();
                for target in [
                    crate::named::unit_gaussian(),
                    crate::named::hard_mixture_diff_var(),
                    four.clone(),
                ] {
                    let mut batch = vec![0.0; xs.len()];
                    target.score_batch(&xs, &mut batch);
                    out.extend(batch.iter().map(|v| v.to_bits()));
                }
                let mut z = xs.clone();
                super::place_two_components(&mut z, &u, 1 << 31, &[-1.0, 2.0], &[0.3, 0.7]);
                out.extend(z.iter().map(|v| v.to_bits()));
                out
            })
        };
        let portable = run(Level::Portable);
        for level in available_levels() {
            assert!(run(level) == portable, "{level:?}");
        }
    }

    #[test]
    fn batch_kernels_match_the_pointwise_ones() {
        // score_batch (vectorised 1-D kernels) against score, for 1, 2 and 4+ components.
        let four = GaussianMixture::univariate(
            &[0.1, 0.2, 0.3, 0.4],
            &[-2.0, -0.5, 0.5, 3.0],
            &[0.3, 0.5, 0.2, 1.0],
        )
        .unwrap();
        for target in [
            crate::named::unit_gaussian(),
            crate::named::hard_mixture_diff_var(),
            four,
        ] {
            let xs: Vec<f64> = (0..101).map(|i| -6.0 + 0.12 * i as f64).collect();
            let mut batch = vec![0.0; xs.len()];
            target.score_batch(&xs, &mut batch);
            for (x, b) in xs.iter().zip(&batch) {
                let mut one = [0.0];
                target.score(&[*x], &mut one);
                assert!(
                    (one[0] - b).abs() <= 1e-12 * (1.0 + b.abs()),
                    "x={x}: {} vs {b}",
                    one[0]
                );
            }
        }
    }
}
