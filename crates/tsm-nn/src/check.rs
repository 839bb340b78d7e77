//! A check of generated samples against a Gaussian-mixture target, with a verdict a user can
//! read: PASS when the samples are indistinguishable from exact draws by two tests at level
//! `α` (0.01 each), FAIL otherwise.
//!
//! 1. **MMD² two-sample test** ([`MmdTest`]) against as many exact draws, at bandwidths
//!    fixed by the target's scale ([`SampleCheck::bandwidths`]): half, one and two mode
//!    standard deviations `σ_mode` (the modes' shape and spacing) and the data's standard
//!    deviation `σ_data` (the overall spread), per coordinate. A permutation null gives each
//!    bandwidth a threshold and a p-value, and one p-value for all of them (min-p).
//! 2. **Mode shares** (mixtures only): each point goes to the component with the largest
//!    `w_k N(x; μ_k, Σ_k)`; the counts of the samples and of a large exact reference sample
//!    (ten times as many, at least 10⁵) are compared by Pearson's χ² test of homogeneity on
//!    the `2 × K` table, `K − 1` degrees of freedom (categories with an expected count below
//!    5 are pooled). This sees a missing or over-weighted mode at any distance, which MMD
//!    with a local bandwidth may only see weakly.
//!
//! The verdict is PASS when both p-values are at least `α`; the chance that exact samples
//! FAIL is at most `2α` (union bound).
//!
//! ```
//! use tsm_core::target::Sample;
//! use tsm_nn::check::SampleCheck;
//!
//! let target = tsm_targets::named::eight_modes();
//! let mut rng = tsm_core::rng::stream(1, 0);
//! let mut x = vec![0.0; 2 * 1000];
//! for row in x.chunks_exact_mut(2) {
//!     target.sample_into(&mut rng, row);
//! }
//! let report = SampleCheck::for_target(&target).run(&x, &target)?;
//! assert!(report.pass, "{report}");
//! # Ok::<(), tsm_nn::Error>(())
//! ```

use std::fmt;

use serde::Serialize;
use tsm_core::target::{Dim, Sample};
use tsm_targets::GaussianMixture;

use crate::mmd::{MmdTest, MmdTestResult};
use crate::{Error, Result};

/// The two tests of the [module docs](self) and their level.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleCheck {
    /// The level of each test (0.01).
    pub alpha: f64,
    /// The MMD test, with its bandwidths.
    pub mmd: MmdTest,
    /// Seed of the exact draws the samples are compared with.
    pub seed: u64,
}

/// The outcome of a [`SampleCheck`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleReport {
    /// `"PASS"` or `"FAIL"`.
    pub verdict: &'static str,
    /// Whether both tests passed.
    pub pass: bool,
    /// The level of each test.
    pub alpha: f64,
    /// The number of samples checked.
    pub n: usize,
    /// The MMD² test.
    pub mmd: MmdTestResult,
    /// The mode-share test (`None` for a single Gaussian).
    pub modes: Option<ModeShares>,
}

/// The mode-share test of a [`SampleCheck`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModeShares {
    /// The share of the samples in each component's region.
    pub shares: Vec<f64>,
    /// The share of the exact reference draws in each region.
    pub expected: Vec<f64>,
    /// The number of exact reference draws.
    pub reference: usize,
    /// Pearson's χ² of the `2 × K` table.
    pub chi2: f64,
    /// Its degrees of freedom (categories after pooling, minus one).
    pub dof: usize,
    /// `P(χ²_dof ≥ chi2)`.
    pub p_value: f64,
}

impl SampleCheck {
    /// The level of each test.
    pub const ALPHA: f64 = 0.01;
    /// The fewest samples a check accepts: below it neither test has power to speak of.
    pub const MIN_SAMPLES: usize = 100;

    /// The check for `target`: level 0.01, [`MmdTest::new`] at
    /// [`SampleCheck::bandwidths`], seed 0.
    pub fn for_target(target: &GaussianMixture) -> Self {
        Self {
            alpha: Self::ALPHA,
            mmd: MmdTest::new(Self::bandwidths(target)),
            seed: 0,
        }
    }

    /// `σ_mode/2, σ_mode, 2σ_mode, σ_data` (per-coordinate standard deviations of the modes
    /// and of the whole target), sorted, without near-duplicates (within 10%).
    pub fn bandwidths(target: &GaussianMixture) -> Vec<f64> {
        let (mode, data) = (
            target.mode_variance().sqrt(),
            target.variance_per_dim().sqrt(),
        );
        let mut h = vec![0.5 * mode, mode, 2.0 * mode, data];
        h.sort_by(f64::total_cmp);
        h.dedup_by(|b, a| *b <= *a * 1.1);
        h
    }

    /// Checks `samples` (row-major, the target's dimension) against `target`.
    ///
    /// # Errors
    /// [`Error::Invalid`] for fewer than [`SampleCheck::MIN_SAMPLES`] samples, ragged or
    /// non-finite samples, or a bad level; as [`MmdTest::run`].
    pub fn run(&self, samples: &[f64], target: &GaussianMixture) -> Result<SampleReport> {
        let d = Dim::dim(target);
        if samples.len() % d != 0 {
            return Err(Error::invalid(
                "samples",
                format!("{} values", samples.len()),
                format!("whole rows of dimension {d}"),
            ));
        }
        let n = samples.len() / d;
        if n < Self::MIN_SAMPLES {
            return Err(Error::invalid(
                "samples",
                n,
                format!("at least {} points", Self::MIN_SAMPLES),
            ));
        }
        if let Some(bad) = samples.iter().find(|v| !v.is_finite()) {
            return Err(Error::invalid("samples", bad, "finite"));
        }
        let draws = |count: usize, stream: u64| {
            let mut rng = tsm_core::rng::stream(self.seed, stream);
            let mut x = vec![0.0; count * d];
            for row in x.chunks_exact_mut(d) {
                target.sample_into(&mut rng, row);
            }
            x
        };
        let m = n.min(self.mmd.max_points);
        let mmd = self.mmd.run(samples, &draws(m, 1), d, self.alpha)?;
        let modes = if target.n_components() > 1 {
            let reference = (10 * n).clamp(100_000, 10_000_000);
            mode_shares(target, samples, &draws(reference, 2))
        } else {
            None
        };
        let pass =
            mmd.p_value >= self.alpha && modes.as_ref().is_none_or(|s| s.p_value >= self.alpha);
        Ok(SampleReport {
            verdict: if pass { "PASS" } else { "FAIL" },
            pass,
            alpha: self.alpha,
            n,
            mmd,
            modes,
        })
    }
}

/// The component of `target` with the largest `w_k N(x; μ_k, Σ_k)` for each row of `x`,
/// counted.
fn counts(target: &GaussianMixture, x: &[f64]) -> Vec<u64> {
    let d = Dim::dim(target);
    let k = target.n_components();
    let consts: Vec<f64> = (0..k)
        .map(|c| {
            let log_std: f64 = target
                .component_std(c)
                .map_or(0.0, |s| s.iter().map(|v| v.ln()).sum());
            target.weights()[c].ln() - log_std
        })
        .collect();
    let mut out = vec![0u64; k];
    for row in x.chunks_exact(d) {
        let mut best = (f64::NEG_INFINITY, 0);
        for (c, &konst) in consts.iter().enumerate() {
            let (Some(mu), Some(s)) = (target.component_mean(c), target.component_std(c)) else {
                continue;
            };
            let q: f64 = row
                .iter()
                .zip(mu)
                .zip(s)
                .map(|((x, m), s)| ((x - m) / s).powi(2))
                .sum();
            let score = konst - 0.5 * q;
            if score > best.0 {
                best = (score, c);
            }
        }
        out[best.1] += 1;
    }
    out
}

/// The mode-share χ² test of `samples` against the exact `reference` draws (`None` when
/// fewer than two categories remain after pooling).
fn mode_shares(target: &GaussianMixture, samples: &[f64], reference: &[f64]) -> Option<ModeShares> {
    let (a, b) = (counts(target, samples), counts(target, reference));
    let (na, nb) = (a.iter().sum::<u64>() as f64, b.iter().sum::<u64>() as f64);
    let total = na + nb;
    // Pool the categories whose smaller expected count is below 5 into one.
    let expected_min = |ca: u64, cb: u64| (ca + cb) as f64 * na.min(nb) / total;
    let mut cells: Vec<(u64, u64)> = Vec::new();
    let mut pooled = (0u64, 0u64);
    for (&ca, &cb) in a.iter().zip(&b) {
        if expected_min(ca, cb) < 5.0 {
            pooled = (pooled.0 + ca, pooled.1 + cb);
        } else {
            cells.push((ca, cb));
        }
    }
    if pooled.0 + pooled.1 > 0 {
        cells.push(pooled);
    }
    if cells.len() < 2 {
        return None;
    }
    let chi2: f64 = cells
        .iter()
        .map(|&(ca, cb)| {
            let col = (ca + cb) as f64;
            [(ca as f64, na), (cb as f64, nb)]
                .iter()
                .map(|&(o, row)| {
                    let e = row * col / total;
                    (o - e).powi(2) / e
                })
                .sum::<f64>()
        })
        .sum();
    let dof = cells.len() - 1;
    Some(ModeShares {
        shares: a.iter().map(|&c| c as f64 / na).collect(),
        expected: b.iter().map(|&c| c as f64 / nb).collect(),
        reference: nb as usize,
        chi2,
        dof,
        p_value: chi2_sf(chi2, dof as f64),
    })
}

/// `P(χ²_k ≥ x)`: the regularised upper incomplete gamma function `Q(k/2, x/2)`.
pub fn chi2_sf(x: f64, k: f64) -> f64 {
    if x.is_nan() || k.is_nan() || k <= 0.0 {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    gamma_q(0.5 * k, 0.5 * x)
}

/// `ln Γ(a)`, `a > 0` (Lanczos, g = 7, 9 terms; relative error ~1e-15).
fn ln_gamma(a: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if a < 0.5 {
        // Reflection: Γ(a) Γ(1 − a) = π / sin(πa).
        return (std::f64::consts::PI / (std::f64::consts::PI * a).sin()).ln() - ln_gamma(1.0 - a);
    }
    let a = a - 1.0;
    let t = a + 7.5;
    let sum = G[1..]
        .iter()
        .enumerate()
        .fold(G[0], |s, (i, g)| s + g / (a + (i + 1) as f64));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (a + 0.5) * t.ln() - t + sum.ln()
}

/// `Q(a, x) = Γ(a, x)/Γ(a)`: the series of `P` below `x = a + 1`, Lentz's continued fraction
/// above (Press et al., *Numerical Recipes*, §6.2).
fn gamma_q(a: f64, x: f64) -> f64 {
    let front = (a * x.ln() - x - ln_gamma(a)).exp();
    if x < a + 1.0 {
        let (mut term, mut sum, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..10_000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        (1.0 - sum * front).max(0.0)
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (front * h).min(1.0)
    }
}

impl fmt::Display for SampleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = |v: f64| {
            if v < 1e-3 {
                format!("{v:.1e}")
            } else {
                format!("{v:.3}")
            }
        };
        writeln!(
            f,
            "sample check: {} (each test at α = {}; PASS needs p ≥ α)",
            self.verdict, self.alpha
        )?;
        writeln!(
            f,
            "  MMD² vs exact draws ({} vs {} points, {} permutations): p = {}",
            self.mmd.points,
            self.mmd.points,
            self.mmd.permutations,
            p(self.mmd.p_value)
        )?;
        for b in &self.mmd.bandwidths {
            writeln!(
                f,
                "    h = {:<6.3} MMD² = {:>10.3e}  threshold {:.3e}  p = {}",
                b.bandwidth,
                b.mmd2,
                b.threshold,
                p(b.p_value)
            )?;
        }
        match &self.modes {
            Some(m) => {
                writeln!(
                    f,
                    "  mode shares ({} modes, χ² = {:.1} on {} dof vs {} exact draws): p = {}",
                    m.shares.len(),
                    m.chi2,
                    m.dof,
                    m.reference,
                    p(m.p_value)
                )?;
                let list = |v: &[f64]| {
                    v.iter()
                        .map(|s| format!("{s:.3}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                writeln!(f, "    samples: {}", list(&m.shares))?;
                write!(f, "    exact:   {}", list(&m.expected))
            }
            None => write!(f, "  mode shares: not a mixture"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chi_square_tail_matches_tables_and_closed_forms() {
        // Table values: the 95% and 99% quantiles of χ²_1 and χ²_7, and χ²_2's tail e^{−x/2}.
        for (x, k, p) in [
            (3.841_458_820_694_124, 1.0, 0.05),
            (6.634_896_601_021_213, 1.0, 0.01),
            (14.067_140_449_340_169, 7.0, 0.05),
            (18.475_306_906_582_357, 7.0, 0.01),
        ] {
            let q = chi2_sf(x, k);
            assert!((q - p).abs() < 1e-12, "χ²_{k}({x}): {q} vs {p}");
        }
        for x in [0.1, 1.0, 3.0, 10.0, 50.0, 300.0] {
            let q = chi2_sf(x, 2.0);
            let exact = (-x / 2.0f64).exp();
            assert!(
                (q - exact).abs() <= 1e-13 * exact.max(1e-300) + 1e-300,
                "{x}: {q}"
            );
        }
        assert_eq!(chi2_sf(0.0, 3.0), 1.0);
        assert!(chi2_sf(1e4, 7.0) < 1e-300 || chi2_sf(1e4, 7.0) == 0.0);
        // ln Γ at integers and at 1/2.
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-13);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-13);
    }

    #[test]
    fn bandwidths_follow_the_targets_scale() {
        let eight = tsm_targets::named::eight_modes();
        let h = SampleCheck::bandwidths(&eight);
        assert_eq!(h.len(), 4);
        assert!(
            (h[0] - 0.25).abs() < 1e-12 && (h[1] - 0.5).abs() < 1e-12,
            "{h:?}"
        );
        assert!((h[3] - 8.25f64.sqrt()).abs() < 1e-12, "{h:?}");
        // A single Gaussian: σ_mode = σ_data, three bandwidths.
        let g = GaussianMixture::gaussian(2, 1.0).expect("gaussian");
        assert_eq!(SampleCheck::bandwidths(&g), [0.5, 1.0, 2.0]);
    }
}
