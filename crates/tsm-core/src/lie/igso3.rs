//! IGSO(3): Brownian motion on `SO(3)` (the heat kernel of `½Δ` for `⟨A, B⟩ = ½ tr(AᵀB)`),
//! accurate at every variance.
//!
//! `IGSO(3)(μ, t)` with `t = ε²` the heat-kernel time has density `f(ω(μᵀR); t)` with respect
//! to the **normalised** Haar measure, `ω` the rotation angle. Two exact forms:
//!
//! ```text
//! series:  f(ω; t) = Σ_{l≥0} (2l+1) e^{−l(l+1)t/2} sin((l+½)ω)/sin(ω/2)
//!                  = Σ_m c_m cos(mω),  c₀ = A₀, c_m = 2A_m, A_m = Σ_{l≥m}(2l+1)e^{−l(l+1)t/2}
//! images:  f(ω; t) = √(2π) t^{−3/2} e^{t/8} Σ_{k∈ℤ} (−1)^k (ω+2πk) e^{−(ω+2πk)²/2t} / sin(ω/2)
//! ```
//!
//! The image form is the series after Poisson summation over the half-integers `n = l + ½`
//! (`l(l+1) = n² − ¼`): `Σ_l (2l+1)e^{−l(l+1)t/2} sin((l+½)ω) = −e^{t/8} ∂_ω Σ_{n∈ℤ+½} e^{−n²t/2} cos nω`
//! and `Σ_{n∈ℤ+½} g(n) = Σ_k (−1)^k ĝ(k)`. Keeping `k ∈ {0, ±1}` (error `O(e^{−4π²/t})`, below
//! `10⁻¹⁷` relative for `t ≤ 1`):
//!
//! ```text
//! f = √(2π) t^{−3/2} e^{t/8} (ω / sin(ω/2)) e^{−ω²/2t} (1 + R₁),
//! R₁ = 2E[(4π²/t) sinh z/z − cosh z],   z = 2πω/t,  E = e^{−2π²/t}  (E folded into e^{±z})
//! c(ω) = f′/(ωf) = [1/ω² − cot(ω/2)/(2ω)] − 1/t + (R₁′/ω)/(1 + R₁),
//! R₁′/ω = 2E(4π²/t²)[(4π²/t)(cosh z − sinh z/z)/z² − sinh z/z]
//! ```
//!
//! with the bracket `1/12 + ω²/720 + ω⁴/30240 + ω⁶/1209600` below `ω = 0.05` and the `z`
//! functions by their Taylor series below `z = 0.1`. The truncated series has only absolute
//! accuracy (`~10⁻¹⁶ f(0)`): where `f < ~10⁻¹¹ f(0)` (e.g. `ω > 0.7` at `ε = 0.1`) it is
//! wrong, even negative, which breaks log densities, responsibilities and importance weights.
//! Hence **the image form for `t ≤ 1` and the series (`L = ⌈9/ε⌉ + 2` terms) for `t > 1`**;
//! the two agree to `~10⁻¹⁵` at `t = 1`, where the smallest `f` is `0.02 f(0)`.
//!
//! The score: body `c(ω)·log(μᵀR)`, spatial `R·body`; `c` is finite at `ω = 0` and `c(π) = 0`.
//! Leach et al. (2022)'s small-`ε` approximation is the image form with `k = 0` (their
//! `ε² = t/2`); without the `k = ±1` images `c(π) ≠ 0`.
//!
//! **Sampling**: the angle has density `(1 − cos ω)/π · f(ω)` on `[0, π]` and CDF
//! `P(ω) = [ω − sin ω + Σ_{l≥1}(2l+1)e^{−l(l+1)t/2}(sin lω/l − sin((l+1)ω)/(l+1))]/π`, which is
//! tabulated on `N = 4096` uniform intervals of `[0, ω_max]`, `ω_max = min(π, 14ε)` (the mass
//! beyond `14ε` is below `10⁻⁴⁰`), and inverted by linear interpolation (sup error of the
//! sampled CDF `≈ h²·max|p′|/8 < 2·10⁻⁶`); the axis is uniform on `S²`.
//!
//! **Semigroup**: `IGSO(3)(t₁) ∗ IGSO(3)(t₂) = IGSO(3)(t₁ + t₂)`: times add, not `ε`'s.
//!
//! # References
//! [^1]: Leach, Schmon, Degiacomi, Willcocks (2022), *Denoising Diffusion Probabilistic Models
//!       on SO(3) for Rotational Alignment*.
//! [^2]: Nikolayev & Savyolov (1970); Savyolov (2003): the isotropic Gaussian on `SO(3)`.

use std::f64::consts::PI;
use std::sync::OnceLock;

use rand::Rng;

use super::so3::{exp, Rotation, So3};
use super::{check_positive, GroupNoise, LieError};
use crate::rng::normal;

/// Intervals of the tabulated angle CDF.
pub const CDF_TABLE_INTERVALS: usize = 4096;

/// `IGSO(3)(I, t)`, the heat kernel on `SO(3)` at time `t = ε²`.
#[derive(Debug, Clone)]
pub struct Igso3 {
    t: f64,
    repr: Repr,
    table: OnceLock<CdfTable>,
}

#[derive(Debug, Clone)]
enum Repr {
    /// `t ≤ 1`: `½ln(2π) − (3/2)ln t + t/8`.
    Image { log_norm: f64 },
    /// `t > 1`: the cosine coefficients `c_m`.
    Series { coefficients: Vec<f64> },
}

#[derive(Debug, Clone)]
struct CdfTable {
    omega_max: f64,
    cdf: Vec<f64>,
}

impl Igso3 {
    /// `IGSO(3)(I, t)` at heat-kernel time `t = ε²`.
    ///
    /// # Errors
    /// [`LieError::NonPositive`] unless `t` is finite and positive.
    pub fn new(t: f64) -> Result<Self, LieError> {
        let t = check_positive("IGSO(3) time t = ε²", t)?;
        let repr = if t <= 1.0 {
            Repr::Image {
                log_norm: 0.5 * (2.0 * PI).ln() - 1.5 * t.ln() + t / 8.0,
            }
        } else {
            Repr::Series {
                coefficients: series_coefficients(t),
            }
        };
        Ok(Self {
            t,
            repr,
            table: OnceLock::new(),
        })
    }

    /// `IGSO(3)(I, ε²)`.
    ///
    /// # Errors
    /// [`LieError::NonPositive`] unless `ε` is finite and positive.
    pub fn from_std(eps: f64) -> Result<Self, LieError> {
        let eps = check_positive("IGSO(3) ε", eps)?;
        Self::new(eps * eps)
    }

    /// The heat-kernel time `t = ε²`.
    pub fn time(&self) -> f64 {
        self.t
    }

    /// `log f(ω; t)`, the log density w.r.t. the normalised Haar measure of a rotation by
    /// angle `ω` (any finite `ω`; it is folded to `[0, π]`).
    ///
    /// # Errors
    /// [`LieError::NonFinite`] for a non-finite `ω`.
    pub fn log_f(&self, omega: f64) -> Result<f64, LieError> {
        Ok(self.log_f_folded(fold(omega)?))
    }

    /// `c(ω) = f′(ω)/(ω f(ω))`: the body score of `IGSO(3)(I, t)` at `exp(r)` is `c(|r|) r`.
    ///
    /// # Errors
    /// [`LieError::NonFinite`] for a non-finite `ω`.
    pub fn score_coefficient(&self, omega: f64) -> Result<f64, LieError> {
        Ok(self.c_folded(fold(omega)?))
    }

    /// `log f` at `ω ∈ [0, π]`.
    pub(crate) fn log_f_folded(&self, omega: f64) -> f64 {
        match &self.repr {
            Repr::Image { log_norm } => image_log_f(self.t, *log_norm, omega),
            Repr::Series { coefficients } => series_eval(coefficients, omega).0,
        }
    }

    /// `c` at `ω ∈ [0, π]`.
    pub(crate) fn c_folded(&self, omega: f64) -> f64 {
        match &self.repr {
            Repr::Image { .. } => image_c(self.t, omega),
            Repr::Series { coefficients } => series_eval(coefficients, omega).1,
        }
    }

    /// `log f(ω(μᵀR); t)`: the log density of `IGSO(3)(μ, t)` at `R`.
    pub fn log_density(&self, mean: &Rotation, r: &Rotation) -> f64 {
        self.log_f_folded(mean.tmul(r).angle())
    }

    /// The body-frame score of `IGSO(3)(μ, t)` at `R`: `c(ω) log(μᵀR)`, `ω = |log(μᵀR)|`.
    /// (Spatial frame: `R` times this.)
    pub fn body_score(&self, mean: &Rotation, r: &Rotation) -> [f64; 3] {
        let v = mean.tmul(r).log();
        let c = self.c_folded(super::so3::norm(&v));
        [c * v[0], c * v[1], c * v[2]]
    }

    /// The CDF `P(ω)` of the rotation angle, `ω ∈ [0, π]` (folded as [`Igso3::log_f`]), from
    /// the character series (absolute accuracy `~10⁻¹³`).
    ///
    /// # Errors
    /// [`LieError::NonFinite`] for a non-finite `ω`.
    pub fn angle_cdf(&self, omega: f64) -> Result<f64, LieError> {
        let omega = fold(omega)?;
        Ok(angle_cdf_series(self.t, omega))
    }

    /// One draw of the rotation angle `ω ∈ [0, π]` (by the tabulated inverse CDF, built on the
    /// first draw).
    pub fn sample_angle<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        let table = self.table.get_or_init(|| CdfTable::new(self.t));
        table.invert(rng.random::<f64>())
    }

    /// One draw `R ~ IGSO(3)(μ, t)`: `μ exp(ω a)`, `ω` from the angle law, `a` uniform on `S²`.
    pub fn sample<R: Rng + ?Sized>(&self, mean: &Rotation, rng: &mut R) -> Rotation {
        let omega = self.sample_angle(rng);
        let a = loop {
            let a = [
                normal::sample(rng),
                normal::sample(rng),
                normal::sample(rng),
            ];
            let n = super::so3::norm(&a);
            if n > 1e-12 {
                break [a[0] / n, a[1] / n, a[2] / n];
            }
        };
        mean.mul(&exp(&[omega * a[0], omega * a[1], omega * a[2]]))
    }
}

impl GroupNoise<So3> for Igso3 {
    fn log_density(&self, w: &Rotation) -> f64 {
        self.log_f_folded(w.angle())
    }

    fn body_score(&self, w: &Rotation, out: &mut [f64]) {
        out.copy_from_slice(&Igso3::body_score(self, &Rotation::IDENTITY, w));
    }

    fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Rotation {
        Igso3::sample(self, &Rotation::IDENTITY, rng)
    }
}

/// Folds a finite angle to `[0, π]` (the angle of the rotation by `ω` about a fixed axis).
fn fold(omega: f64) -> Result<f64, LieError> {
    if !omega.is_finite() {
        return Err(LieError::NonFinite {
            what: "angle",
            value: omega,
        });
    }
    Ok(super::torus::wrap(omega).abs().min(PI))
}

/// The number of series terms, `⌈9/ε⌉ + 2` (`e^{−l(l+1)t/2} < e^{−40}` beyond).
fn series_terms(t: f64) -> usize {
    (9.0 / t.sqrt()).ceil() as usize + 2
}

/// `c_m`, `m = 0..=L`.
pub(crate) fn series_coefficients(t: f64) -> Vec<f64> {
    let l_max = series_terms(t);
    let mut c = vec![0.0; l_max + 1];
    let mut acc = 0.0;
    for m in (0..=l_max).rev() {
        let l = m as f64;
        acc += (2.0 * l + 1.0) * (-l * (l + 1.0) * t / 2.0).exp();
        c[m] = if m == 0 { acc } else { 2.0 * acc };
    }
    c
}

/// `(log f, c)` from the cosine series.
pub(crate) fn series_eval(c: &[f64], omega: f64) -> (f64, f64) {
    let (mut f, mut g) = (0.0, 0.0);
    for (m, &cm) in c.iter().enumerate() {
        let mw = m as f64 * omega;
        f += cm * mw.cos();
        if m > 0 {
            let m2 = (m * m) as f64;
            g -= cm * m2 * super::so3::sinc(mw);
        }
    }
    (f.ln(), g / f)
}

/// `(R₁, R₁′/ω)` of the image form, with `E` folded into `e^{±z}`.
fn image_remainder(t: f64, omega: f64) -> (f64, f64) {
    let z = 2.0 * PI * omega / t;
    let a = 2.0 * PI * PI / t;
    let q = 4.0 * PI * PI / t;
    let (ep, em) = ((z - a).exp(), (-z - a).exp());
    let e_cosh = 0.5 * (ep + em);
    let (e_sinhc, e_g) = if z < 0.1 {
        let e = (-a).exp();
        let z2 = z * z;
        (
            e * (1.0 + z2 / 6.0 + z2 * z2 / 120.0 + z2 * z2 * z2 / 5040.0),
            e * (1.0 / 3.0 + z2 / 30.0 + z2 * z2 / 840.0 + z2 * z2 * z2 / 45360.0),
        )
    } else {
        let s = 0.5 * (ep - em) / z;
        (s, (e_cosh - s) / (z * z))
    };
    let r1 = 2.0 * (q * e_sinhc - e_cosh);
    let r1p = 2.0 * (q / t) * (q * e_g - e_sinhc);
    (r1, r1p)
}

fn image_log_f(t: f64, log_norm: f64, omega: f64) -> f64 {
    let (r1, _) = image_remainder(t, omega);
    log_norm + (2.0 / super::so3::sinc(0.5 * omega)).ln() - omega * omega / (2.0 * t) + r1.ln_1p()
}

fn image_c(t: f64, omega: f64) -> f64 {
    let bracket = if omega < 0.05 {
        let w2 = omega * omega;
        1.0 / 12.0 + w2 / 720.0 + w2 * w2 / 30240.0 + w2 * w2 * w2 / 1_209_600.0
    } else {
        1.0 / (omega * omega) - 1.0 / (2.0 * omega * (0.5 * omega).tan())
    };
    let (r1, r1p) = image_remainder(t, omega);
    bracket - 1.0 / t + r1p / (1.0 + r1)
}

/// The angle CDF from the series, `ω ∈ [0, π]` (Chebyshev recurrence for `sin lω`).
fn angle_cdf_series(t: f64, omega: f64) -> f64 {
    let l_max = series_terms(t);
    let (s1, c1) = omega.sin_cos();
    let mut acc = omega - s1;
    // sin(lω) for l = 1 and l + 1 = 2.
    let (mut s_l, mut s_next) = (s1, 2.0 * c1 * s1);
    for l in 1..=l_max {
        let lf = l as f64;
        let w = (2.0 * lf + 1.0) * (-lf * (lf + 1.0) * t / 2.0).exp();
        acc += w * (s_l / lf - s_next / (lf + 1.0));
        let s_after = 2.0 * c1 * s_next - s_l;
        s_l = s_next;
        s_next = s_after;
    }
    (acc / PI).clamp(0.0, 1.0)
}

impl CdfTable {
    fn new(t: f64) -> Self {
        let omega_max = (14.0 * t.sqrt()).min(PI);
        let n = CDF_TABLE_INTERVALS;
        let mut cdf: Vec<f64> = (0..=n)
            .map(|i| angle_cdf_series(t, omega_max * i as f64 / n as f64))
            .collect();
        // Monotone against rounding, and exactly 0 and 1 at the ends.
        cdf[0] = 0.0;
        for i in 1..=n {
            cdf[i] = cdf[i].max(cdf[i - 1]);
        }
        let total = cdf[n];
        cdf.iter_mut().for_each(|p| *p /= total);
        Self { omega_max, cdf }
    }

    fn invert(&self, u: f64) -> f64 {
        let n = self.cdf.len() - 1;
        // The last index with cdf[j] <= u.
        let j = self.cdf.partition_point(|&p| p <= u).clamp(1, n) - 1;
        let (lo, hi) = (self.cdf[j], self.cdf[j + 1]);
        let frac = if hi > lo { (u - lo) / (hi - lo) } else { 0.5 };
        self.omega_max * (j as f64 + frac) / n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quadrature::integrate;

    const EPSILONS: [f64; 9] = [0.01, 0.02, 0.05, 0.1, 0.3, 0.7, 1.0, 1.5, 3.0];

    /// `(1 − cos ω)/π · f(ω)`, with `1 − cos ω = 2 sin²(ω/2)` (no cancellation near 0, where
    /// the quadrature's relative tolerance would otherwise chase rounding noise).
    fn angle_density(g: &Igso3, w: f64) -> f64 {
        2.0 * (0.5 * w).sin().powi(2) / PI * g.log_f_folded(w).exp()
    }

    #[test]
    fn normalised_at_every_variance() {
        for &eps in &EPSILONS {
            let g = Igso3::from_std(eps).unwrap();
            // Beyond 20ε (when below π) the density is below ~e⁻²⁰⁰ε⁻³ < 10⁻⁸⁰: check it, and
            // integrate up to the cut only (adaptive Simpson's relative tolerance would chase
            // the underflowing tail).
            let cut = (20.0 * eps).min(PI);
            if cut < PI {
                assert!(angle_density(&g, cut) < 1e-80);
            }
            let mass = integrate(|w| angle_density(&g, w), 0.0, cut, 1e-12);
            assert!((mass - 1.0).abs() < 1e-9, "ε={eps}: mass {mass}");
            // The series CDF agrees with quadrature of the density.
            for &w in &[0.5 * eps, eps, 2.0 * eps, PI] {
                let w = w.min(PI);
                let q = integrate(|u| angle_density(&g, u), 0.0, w, 1e-12);
                assert!((g.angle_cdf(w).unwrap() - q).abs() < 1e-9, "ε={eps}, ω={w}");
            }
            assert!((g.angle_cdf(PI).unwrap() - 1.0).abs() < 1e-12);
        }
    }

    /// Image form and series agree where they meet (t = 1), for log f and c, to 1e-13.
    #[test]
    fn image_and_series_agree_at_the_switch() {
        for &t in &[0.6, 1.0, 1.3] {
            let log_norm = 0.5 * (2.0 * PI).ln() - 1.5 * f64::ln(t) + t / 8.0;
            let c = series_coefficients(t);
            for i in 0..=100 {
                let w = PI * i as f64 / 100.0;
                let (ls, cs) = series_eval(&c, w);
                let (li, ci) = (image_log_f(t, log_norm, w), image_c(t, w));
                assert!((ls - li).abs() < 1e-13, "t={t} ω={w}: {ls} vs {li}");
                assert!(
                    (cs - ci).abs() < 1e-12 * (1.0 + cs.abs()),
                    "t={t} ω={w}: {cs} vs {ci}"
                );
            }
        }
    }

    /// A direct sum over the images |k| ≤ 3 in log space (signed terms): an independent check
    /// of the folded R₁ algebra, in the tails too.
    fn log_f_images_direct(t: f64, w: f64) -> f64 {
        let terms: Vec<(f64, f64)> = (-3i64..=3)
            .map(|k| {
                let u = w + 2.0 * PI * k as f64;
                let sign = if k % 2 == 0 { 1.0 } else { -1.0 } * u.signum();
                (sign, u.abs().ln() - u * u / (2.0 * t))
            })
            .collect();
        let m = terms.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = terms.iter().map(|(sg, l)| sg * (l - m).exp()).sum();
        0.5 * (2.0 * PI).ln() - 1.5 * t.ln() + t / 8.0 + m + s.ln() - (0.5 * w).sin().ln()
    }

    /// Tails at small ε: log f is accurate to 1e-12 relative all the way to π, where the
    /// truncated series is wrong (asserted: the series fails this same check).
    #[test]
    fn tails_are_accurate_at_small_variance() {
        for &eps in &[0.01, 0.05, 0.1, 0.2] {
            let t = eps * eps;
            let g = Igso3::new(t).unwrap();
            let series = series_coefficients(t);
            let mut series_fails = false;
            for i in 1..=60 {
                let w = 0.05 * i as f64;
                let w = w.min(PI - 1e-9);
                let exact = log_f_images_direct(t, w);
                let got = g.log_f(w).unwrap();
                assert!(
                    (got - exact).abs() <= 1e-12 * exact.abs().max(1.0),
                    "ε={eps} ω={w}: {got} vs {exact}"
                );
                let (ls, _) = series_eval(&series, w);
                if (ls - exact).abs().is_nan() || (ls - exact).abs() > 1e-12 * exact.abs().max(1.0)
                {
                    series_fails = true;
                }
            }
            assert!(
                series_fails,
                "ε={eps}: the truncated series should fail in the tails"
            );
        }
    }

    /// c(π) = 0 (f is symmetric about π): needs the k = ±1 images; k = 0 alone gives
    /// 1/π² − 1/t ≠ 0.
    #[test]
    fn score_vanishes_at_pi() {
        for &eps in &EPSILONS {
            let g = Igso3::from_std(eps).unwrap();
            let c = g.score_coefficient(PI).unwrap();
            assert!(c.abs() < 1e-9 / (eps * eps), "ε={eps}: c(π) = {c}");
        }
    }

    /// The heat equation ∂_t log f = ½[ℓ″ + ℓ′² + cot(ω/2) ℓ′], ℓ′ = ω c(ω), with ∂_t and ℓ″
    /// by central differences: checks log f and its score together, in the tails too.
    #[test]
    fn solves_the_heat_equation_in_log_space() {
        for &eps in &EPSILONS {
            let t = eps * eps;
            let g = Igso3::new(t).unwrap();
            let (gp, gm) = (
                Igso3::new(t * (1.0 + 1e-5)).unwrap(),
                Igso3::new(t * (1.0 - 1e-5)).unwrap(),
            );
            for &w in &[0.3 * eps, eps, 3.0 * eps, 1.0, 2.0, 3.0] {
                if w >= PI {
                    continue;
                }
                let dt = (gp.log_f(w).unwrap() - gm.log_f(w).unwrap()) / (2e-5 * t);
                let lp = |g: &Igso3, w: f64| w * g.score_coefficient(w).unwrap();
                let h = 1e-5 * w.min(eps);
                let l1 = lp(&g, w);
                let l2 = (lp(&g, w + h) - lp(&g, w - h)) / (2.0 * h);
                let rhs = 0.5 * (l2 + l1 * l1 + l1 / (0.5 * w).tan());
                let scale = dt.abs().max(l1 * l1).max(l2.abs()).max(1.0);
                assert!(
                    (dt - rhs).abs() < 1e-6 * scale,
                    "ε={eps} ω={w}: {dt} vs {rhs}"
                );
            }
        }
    }

    /// Body and spatial scores on rotations against central differences of the log density.
    #[test]
    fn score_matches_finite_differences_in_both_frames() {
        let mut rng = crate::rng::stream(21, 0);
        for &eps in &EPSILONS {
            let g = Igso3::from_std(eps).unwrap();
            let mean = Rotation::uniform(&mut rng);
            for &w in &[0.5 * eps, 3.0 * eps, 1.5, 2.9] {
                if w >= PI {
                    continue;
                }
                let r = mean.mul(&exp(&[0.6 * w, -0.48 * w, 0.64 * w]));
                let body = g.body_score(&mean, &r);
                let spatial = r.apply(&body);
                let h = 1e-4 * eps.min(0.1);
                for i in 0..3 {
                    let mut e = [0.0; 3];
                    e[i] = h;
                    let m = [-e[0], -e[1], -e[2]];
                    let fd_body = (g.log_density(&mean, &r.mul(&exp(&e)))
                        - g.log_density(&mean, &r.mul(&exp(&m))))
                        / (2.0 * h);
                    let fd_spatial = (g.log_density(&mean, &exp(&e).mul(&r))
                        - g.log_density(&mean, &exp(&m).mul(&r)))
                        / (2.0 * h);
                    let scale = 1.0 + w / (eps * eps);
                    assert!(
                        (fd_body - body[i]).abs() < 1e-6 * scale,
                        "ε={eps} ω={w} body {i}: {fd_body} vs {}",
                        body[i]
                    );
                    assert!(
                        (fd_spatial - spatial[i]).abs() < 1e-6 * scale,
                        "ε={eps} ω={w} spatial {i}"
                    );
                }
            }
        }
    }

    /// Kolmogorov–Smirnov distance of n draws to a CDF.
    fn ks(mut draws: Vec<f64>, cdf: impl Fn(f64) -> f64) -> f64 {
        draws.sort_by(f64::total_cmp);
        let n = draws.len() as f64;
        draws
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let p = cdf(x);
                (p - i as f64 / n).abs().max(((i + 1) as f64 / n - p).abs())
            })
            .fold(0.0, f64::max)
    }

    /// KS critical value at level 1e-3 for n draws (fixed seeds: the test is deterministic).
    fn ks_critical(n: usize) -> f64 {
        1.95 / (n as f64).sqrt()
    }

    #[test]
    fn sampler_matches_the_angle_law() {
        let n = 20_000;
        for (k, &eps) in EPSILONS.iter().enumerate() {
            let g = Igso3::from_std(eps).unwrap();
            let mut rng = crate::rng::stream(22, k as u64);
            let draws: Vec<f64> = (0..n)
                .map(|_| g.sample(&Rotation::IDENTITY, &mut rng).angle())
                .collect();
            let d = ks(draws, |w| g.angle_cdf(w).unwrap_or(f64::NAN));
            assert!(d < ks_critical(n), "ε={eps}: KS {d}");
        }
    }

    /// IGSO(3)(t₁) ∗ IGSO(3)(t₂) = IGSO(3)(t₁ + t₂): KS on the angle of W₁W₂, across the
    /// image/series switch.
    #[test]
    fn semigroup_times_add() {
        let n = 20_000;
        for (k, &(t1, t2)) in [(0.01, 0.04), (0.04, 0.25), (0.5, 1.5)].iter().enumerate() {
            let (a, b, c) = (
                Igso3::new(t1).unwrap(),
                Igso3::new(t2).unwrap(),
                Igso3::new(t1 + t2).unwrap(),
            );
            let mut rng = crate::rng::stream(23, k as u64);
            let draws: Vec<f64> = (0..n)
                .map(|_| {
                    let w1 = a.sample(&Rotation::IDENTITY, &mut rng);
                    w1.mul(&b.sample(&Rotation::IDENTITY, &mut rng)).angle()
                })
                .collect();
            let d = ks(draws.clone(), |w| c.angle_cdf(w).unwrap_or(f64::NAN));
            assert!(d < ks_critical(n), "t = {t1} + {t2}: KS {d}");
            // The wrong rule (ε's add) is rejected by the same test.
            let wrong = Igso3::from_std(t1.sqrt() + t2.sqrt()).unwrap();
            let d_wrong = ks(draws, |w| wrong.angle_cdf(w).unwrap_or(f64::NAN));
            assert!(
                d_wrong > ks_critical(n),
                "t = {t1} + {t2}: wrong rule KS {d_wrong}"
            );
        }
    }

    #[test]
    fn small_variance_limit() {
        // f ≈ 2√(2π) ε⁻³ e^{−ω²/2ε²}.
        let eps: f64 = 0.01;
        let g = Igso3::from_std(eps).unwrap();
        let w = 0.02;
        let approx = (2.0 * (2.0 * PI).sqrt() * eps.powi(-3)).ln() - w * w / (2.0 * eps * eps);
        assert!((g.log_f(w).unwrap() - approx).abs() < 1e-4);
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        for t in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(Igso3::new(t), Err(LieError::NonPositive { .. })));
        }
        let g = Igso3::new(0.1).unwrap();
        assert!(matches!(g.log_f(f64::NAN), Err(LieError::NonFinite { .. })));
        assert!(matches!(
            g.score_coefficient(f64::INFINITY),
            Err(LieError::NonFinite { .. })
        ));
        // Angles fold: a rotation by −ω or 2π − ω is a rotation by ω.
        assert_eq!(g.log_f(-0.4).unwrap(), g.log_f(0.4).unwrap());
        assert!((g.log_f(2.0 * PI - 0.4).unwrap() - g.log_f(0.4).unwrap()).abs() < 1e-12);
    }
}
