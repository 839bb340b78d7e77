//! The torus `𝕋^d = [−π, π)^d` (addition mod 2π) and its Brownian motion, the wrapped normal.
//!
//! The group is abelian: `Ad` is the identity, so body and spatial coordinates coincide and the
//! transport of Prop. 3.2 (De Bortoli et al. 2024) is the identity; a tangent vector is a
//! vector of `ℝ^d`.
//!
//! # The wrapped normal
//! ```text
//! WN(δ; 0, s²) = Σ_{k ∈ ℤ} N(δ + 2πk; 0, s²)        (per coordinate, δ = wrap(y − x))
//! ∂_δ log WN   = Σ_k softmax_k · (−(δ + 2πk)/s²)
//! ```
//! evaluated with `|k| ≤ K = max(1, ⌈4s/π⌉)` in log-sum-exp form. **Truncation bound**: for
//! `δ ∈ [−π, π)` an omitted term has `|δ + 2πk| ≥ (2K + 1)π`, while the largest kept term has
//! `|δ + 2πk| ≤ π`, so each omitted term is below `exp(−4K(K + 1)π²/(2s²)) ≤ e⁻³²` times the
//! kept sum (`K(K + 1) ≥ K² ≥ 16s²/π²`, and `K ≥ 1` covers small `s`); both tails together are
//! below `2.1·e⁻³² < 3·10⁻¹⁴` relative, for the density and (each term's weight being the
//! same) the score. The Fourier form `(2π)⁻¹[1 + 2Σ_n e^{−n²s²/2} cos nδ]` is accurate only in
//! absolute terms and is not used: it fails for `log p` and scores in the tails.

use std::f64::consts::PI;

use rand::Rng;

use super::{check_finite, check_len, check_positive, GroupNoise, LieError, LieGroup};
use crate::rng::normal;

const TAU: f64 = 2.0 * PI;

/// Wraps an angle to `[−π, π)`.
///
/// ```
/// use tsm_core::lie::torus::wrap;
/// assert!((wrap(3.5) - (3.5 - 2.0 * std::f64::consts::PI)).abs() < 1e-15);
/// assert_eq!(wrap(-std::f64::consts::PI), -std::f64::consts::PI);
/// ```
pub fn wrap(x: f64) -> f64 {
    let w = x - TAU * ((x + PI) / TAU).floor();
    // Rounding can land exactly on π (or just below −π): fold back into [−π, π).
    if w >= PI {
        w - TAU
    } else if w < -PI {
        w + TAU
    } else {
        w
    }
}

/// A point of `𝕋^d`: `d` angles in `[−π, π)`.
#[derive(Debug, Clone, PartialEq)]
pub struct TorusPoint(Vec<f64>);

impl TorusPoint {
    /// The point with angles `wrap(θ_c)`.
    ///
    /// # Errors
    /// [`LieError::NonFinite`] for a non-finite angle.
    pub fn new(angles: &[f64]) -> Result<Self, LieError> {
        check_finite(angles, "angle")?;
        Ok(Self(angles.iter().map(|&a| wrap(a)).collect()))
    }

    /// The angles, each in `[−π, π)`.
    pub fn angles(&self) -> &[f64] {
        &self.0
    }

    /// The number of angles `d`.
    pub fn dim(&self) -> usize {
        self.0.len()
    }
}

/// The torus `𝕋^d` as a Lie group (addition mod 2π).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Torus {
    d: usize,
}

impl Torus {
    /// `𝕋^d`.
    ///
    /// # Errors
    /// [`LieError::DimMismatch`] for `d = 0`.
    pub fn new(d: usize) -> Result<Self, LieError> {
        if d == 0 {
            return Err(LieError::DimMismatch {
                expected: 1,
                got: 0,
                op: "Torus::new (d >= 1)",
            });
        }
        Ok(Self { d })
    }

    /// The dimension `d`.
    pub fn dim(&self) -> usize {
        self.d
    }

    /// A point of this torus.
    ///
    /// # Errors
    /// [`LieError::DimMismatch`] if `angles.len() != d`; [`LieError::NonFinite`].
    pub fn point(&self, angles: &[f64]) -> Result<TorusPoint, LieError> {
        check_len(self.d, angles.len(), "Torus::point")?;
        TorusPoint::new(angles)
    }
}

impl LieGroup for Torus {
    type Element = TorusPoint;

    fn tangent_dim(&self) -> usize {
        self.d
    }

    fn identity(&self) -> TorusPoint {
        TorusPoint(vec![0.0; self.d])
    }

    fn compose(&self, a: &TorusPoint, b: &TorusPoint) -> TorusPoint {
        TorusPoint(a.0.iter().zip(&b.0).map(|(x, y)| wrap(x + y)).collect())
    }

    fn inverse(&self, a: &TorusPoint) -> TorusPoint {
        TorusPoint(a.0.iter().map(|x| wrap(-x)).collect())
    }

    fn exp(&self, v: &[f64]) -> Result<TorusPoint, LieError> {
        self.point(v)
    }

    fn log(&self, g: &TorusPoint, out: &mut [f64]) {
        debug_assert_eq!(out.len(), self.d);
        out.copy_from_slice(&g.0);
    }

    fn adjoint(&self, _g: &TorusPoint, v: &[f64], out: &mut [f64]) {
        out.copy_from_slice(v);
    }

    fn transport(&self, _x: &TorusPoint, _y: &TorusPoint, xi: &[f64], out: &mut [f64]) {
        out.copy_from_slice(xi);
    }

    fn check_element(&self, g: &TorusPoint) -> Result<(), LieError> {
        check_len(self.d, g.dim(), "torus point")
    }
}

impl super::sampler::HaarSample for Torus {
    /// `d` independent angles uniform on `[−π, π)` (Haar measure of `𝕋^d`).
    fn uniform<R: Rng + ?Sized>(&self, rng: &mut R) -> TorusPoint {
        TorusPoint(
            (0..self.d)
                .map(|_| wrap(-PI + TAU * rng.random::<f64>()))
                .collect(),
        )
    }
}

/// The wrapped normal `WN(0, s²)` on `𝕋¹`: the law of `wrap(s Z)`, i.e. Brownian motion of
/// `½Δ` at time `s²`. Densities are with respect to Lebesgue measure on `[−π, π)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WrappedNormal {
    var: f64,
    /// Images `|k| ≤ terms` are kept.
    terms: i64,
    log_norm: f64,
}

impl WrappedNormal {
    /// `WN(0, var)`.
    ///
    /// # Errors
    /// [`LieError::NonPositive`] unless `var` is finite and positive.
    pub fn new(var: f64) -> Result<Self, LieError> {
        let var = check_positive("wrapped normal variance", var)?;
        let s = var.sqrt();
        let terms = ((4.0 * s / PI).ceil() as i64).max(1);
        Ok(Self {
            var,
            terms,
            log_norm: -0.5 * (TAU * var).ln(),
        })
    }

    /// The variance `s²` (the heat-kernel time).
    pub fn var(&self) -> f64 {
        self.var
    }

    /// The truncation `K`: images `|k| ≤ K` are summed (see the [module docs](self)).
    pub fn terms(&self) -> i64 {
        self.terms
    }

    /// `(log WN(δ), ∂_δ log WN(δ))` at `δ` (wrapped first).
    pub fn log_density_and_score(&self, delta: f64) -> (f64, f64) {
        let d = wrap(delta);
        let inv2 = 0.5 / self.var;
        // The largest term is the image nearest 0, k = 0 since d is wrapped.
        let e0 = -d * d * inv2;
        let (mut z, mut g) = (0.0, 0.0);
        for k in -self.terms..=self.terms {
            let u = d + TAU * k as f64;
            let w = (-u * u * inv2 - e0).exp();
            z += w;
            g += w * u;
        }
        (self.log_norm + e0 + z.ln(), -g / (z * self.var))
    }

    /// `log WN(δ; 0, s²)`.
    pub fn log_density(&self, delta: f64) -> f64 {
        self.log_density_and_score(delta).0
    }

    /// `∂_δ log WN(δ; 0, s²)`.
    pub fn score(&self, delta: f64) -> f64 {
        self.log_density_and_score(delta).1
    }

    /// One draw `wrap(s Z)`.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        wrap(self.var.sqrt() * normal::sample(rng))
    }
}

/// Brownian motion on `𝕋^d` at time `s²`: independent [`WrappedNormal`]s per coordinate.
#[derive(Debug, Clone, PartialEq)]
pub struct TorusHeat {
    d: usize,
    wn: WrappedNormal,
}

impl TorusHeat {
    /// `WN(0, var I_d)` on `𝕋^d`.
    ///
    /// # Errors
    /// As [`WrappedNormal::new`].
    pub fn new(torus: &Torus, var: f64) -> Result<Self, LieError> {
        Ok(Self {
            d: torus.dim(),
            wn: WrappedNormal::new(var)?,
        })
    }

    /// The per-coordinate wrapped normal.
    pub fn coordinate(&self) -> &WrappedNormal {
        &self.wn
    }
}

impl GroupNoise<Torus> for TorusHeat {
    fn log_density(&self, w: &TorusPoint) -> f64 {
        w.0.iter().map(|&a| self.wn.log_density(a)).sum()
    }

    fn body_score(&self, w: &TorusPoint, out: &mut [f64]) {
        debug_assert_eq!(out.len(), self.d);
        for (o, &a) in out.iter_mut().zip(&w.0) {
            *o = self.wn.score(a);
        }
    }

    fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> TorusPoint {
        TorusPoint((0..self.d).map(|_| self.wn.sample(rng)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quadrature::integrate;

    /// The wrapped normal with many images (`|k| ≤ 60`), summed directly in log space (shifted
    /// by the largest term): the reference `(log WN, score)`.
    fn reference(delta: f64, var: f64) -> (f64, f64) {
        let e = |k: i64| -(delta + TAU * k as f64).powi(2) / (2.0 * var);
        let m = (-60i64..=60).map(e).fold(f64::NEG_INFINITY, f64::max);
        let (mut z, mut g) = (0.0, 0.0);
        for k in -60i64..=60 {
            let u = delta + TAU * k as f64;
            let w = (e(k) - m).exp();
            z += w;
            g += -w * u / var;
        }
        (m + z.ln() - 0.5 * (TAU * var).ln(), g / z)
    }

    #[test]
    fn wrap_is_in_range_and_idempotent() {
        for &x in &[
            -7.0,
            -PI,
            -PI - 1e-17,
            0.0,
            PI,
            PI - 1e-16,
            3.0 * PI,
            1e6,
            -1e6,
        ] {
            let w = wrap(x);
            assert!((-PI..PI).contains(&w), "wrap({x}) = {w}");
            assert_eq!(wrap(w), w);
            assert!(((x - w) / TAU - ((x - w) / TAU).round()).abs() < 1e-9);
        }
    }

    #[test]
    fn group_laws() {
        let t = Torus::new(3).unwrap();
        let a = t.point(&[0.3, -3.0, 3.1]).unwrap();
        let b = t.point(&[3.0, 2.0, -0.4]).unwrap();
        let c = t.point(&[-2.5, 1.0, 3.1]).unwrap();
        let close = |p: &TorusPoint, q: &TorusPoint| {
            p.0.iter().zip(&q.0).all(|(x, y)| wrap(x - y).abs() < 1e-14)
        };
        assert!(close(
            &t.compose(&t.compose(&a, &b), &c),
            &t.compose(&a, &t.compose(&b, &c))
        ));
        assert!(close(&t.compose(&a, &t.inverse(&a)), &t.identity()));
        assert!(close(&t.compose(&a, &t.identity()), &a));
        let mut v = [0.0; 3];
        t.log(&a, &mut v);
        assert!(close(&t.exp(&v).unwrap(), &a));
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        assert!(matches!(
            TorusPoint::new(&[0.0, f64::NAN]),
            Err(LieError::NonFinite { .. })
        ));
        let t = Torus::new(2).unwrap();
        assert!(matches!(t.point(&[0.0]), Err(LieError::DimMismatch { .. })));
        assert!(matches!(
            t.exp(&[f64::INFINITY, 0.0]),
            Err(LieError::NonFinite { .. })
        ));
        assert!(Torus::new(0).is_err());
        for v in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                WrappedNormal::new(v),
                Err(LieError::NonPositive { .. })
            ));
        }
    }

    /// The truncated sum is within the stated bound (3e-14 relative) of the 121-image sum,
    /// for the density and the score, over the whole circle and s from 0.01 to 20.
    #[test]
    fn truncation_error_is_within_the_stated_bound() {
        for &s in &[0.01, 0.3, 1.0, 2.0, 3.2, 5.0, 20.0] {
            let wn = WrappedNormal::new(s * s).unwrap();
            for i in 0..=200 {
                let delta = -PI + TAU * i as f64 / 200.0;
                let (lp, sc) = wn.log_density_and_score(delta);
                let (lp_ref, sc_ref) = reference(wrap(delta), s * s);
                assert!(
                    (lp - lp_ref).abs() < 3e-14 * lp_ref.abs().max(1.0),
                    "s={s} δ={delta}"
                );
                let scale = sc_ref.abs().max(1.0 / s);
                assert!(
                    (sc - sc_ref).abs() < 3e-14 * scale * 10.0,
                    "s={s} δ={delta}: {sc} vs {sc_ref}"
                );
            }
        }
    }

    /// In the tails at small s the log density is the nearest image's (no underflow to −∞).
    #[test]
    fn tails_are_accurate_at_small_variance() {
        let s: f64 = 0.05;
        let wn = WrappedNormal::new(s * s).unwrap();
        let d: f64 = 3.0;
        let near = -0.5 * (TAU * s * s).ln() - d * d / (2.0 * s * s);
        let far = -0.5 * (TAU * s * s).ln() - (d - TAU).powi(2) / (2.0 * s * s);
        let exact = near + (far - near).exp().ln_1p();
        assert!((wn.log_density(d) - exact).abs() < 1e-12 * exact.abs());
        assert!(wn.log_density(d).is_finite());
    }

    #[test]
    fn normalised_and_score_matches_finite_differences() {
        for &s in &[0.05, 0.5, 1.0, 3.0] {
            let wn = WrappedNormal::new(s * s).unwrap();
            let mass = integrate(|x| wn.log_density(x).exp(), -PI, PI, 1e-12);
            assert!((mass - 1.0).abs() < 1e-9, "s={s}: mass {mass}");
            for &x in &[-3.0, -1.0, 0.2, 2.9] {
                let h = 1e-5;
                let fd = (wn.log_density(x + h) - wn.log_density(x - h)) / (2.0 * h);
                assert!(
                    (fd - wn.score(x)).abs() < 1e-6 * (1.0 + fd.abs()),
                    "s={s} x={x}"
                );
            }
        }
    }

    /// Heat semigroup: WN(s₁²) ∗ WN(s₂²) = WN(s₁² + s₂²), checked by quadrature of the
    /// convolution at a few points.
    #[test]
    fn variances_add_under_convolution() {
        let (a, b) = (
            WrappedNormal::new(0.7).unwrap(),
            WrappedNormal::new(1.9).unwrap(),
        );
        let c = WrappedNormal::new(2.6).unwrap();
        for &y in &[-2.0, 0.0, 1.3, 3.0] {
            let conv = integrate(
                |x| (a.log_density(x) + b.log_density(y - x)).exp(),
                -PI,
                PI,
                1e-12,
            );
            assert!((conv.ln() - c.log_density(y)).abs() < 1e-9);
        }
    }
}
