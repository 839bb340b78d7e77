//! Exact IGSO(3) draws at a time that changes from draw to draw, by rejection, with no table.
//!
//! [`Igso3::sample`] inverts a tabulated CDF of the angle: exact to `2·10⁻⁶` and fast once the
//! table is built, but the table costs `4096 L` series terms (`L ≈ 9/ε`, millions at
//! `ε = 0.01`). Training draws one noise per example at its own time, so it needs a draw whose
//! set-up is `O(1)`: [`igso3_draw`].
//!
//! Both draw a class function, so it suffices to get the rotation angle `ω` right (the axis
//! is uniform on `S²`). Its law on `[0, π]` is `p(ω) ∝ (1 − cos ω) f(ω; t)`.
//!
//! # `t ≤ 1`: a Maxwell proposal
//! Propose `r ~ N(0, t I₃)` (angle density `∝ ω² e^{−ω²/2t}` on `[0, ∞)`). With the image form
//! of `f` (see [`super::igso3`]), `(1 − cos ω) f(ω) ∝ ω² e^{−ω²/2t} g(ω)` on `[0, π]`, where
//!
//! ```text
//! g(ω) = (2 sin(ω/2)/ω) (1 + R₁(ω)),   R₁ = 2E[(4π²/t) sinh z/z − cosh z],  z = 2πω/t,  E = e^{−2π²/t}
//! ```
//!
//! so `exp(r)` is accepted with probability `g(|r|)/M` (and refused for `|r| > π`).
//! **Bound** `g ≤ M = 1 + 4/π` for `t ≤ 1`: `2 sin(ω/2)/ω ≤ 1` and `E sinh z ≤ E cosh z ≤
//! ½e^{−2π(π−ω)/t}`. For `ω ≥ 1/π`, `(2 sin(ω/2)/ω) R₁ ≤ (4π/ω²) e^{−2π(π−ω)/t}`, increasing in `ω`
//! there (its log-derivative is `−2/ω + 2π/t > 0`), so at most `4/π` (at `ω = π`). For
//! `ω < 1/π`, `R₁ ≤ (8π²/t) e^{−(2π² − 2)/t} ≤ 79 e^{−17.7} < 2·10⁻⁶`. The acceptance rate is
//! `E_q[g]/M ≈ 1/M ≈ 0.44` at small `t`.
//!
//! # `t > 1`: a Haar proposal
//! `f ≤ f(0)`, since `f = Σ (2l+1) e^{−l(l+1)t/2} χ_l(ω)` with `|χ_l| ≤ 2l + 1 = χ_l(0)`; a Haar
//! rotation is accepted with probability `f(ω)/f(0)` (at least `0.15` for `t ≥ 1`).

use std::f64::consts::PI;

use rand::Rng;

use super::igso3::Igso3;
use super::sampler::HaarSample;
use super::so3::{exp, norm, Rotation, So3};
use super::{check_positive, LieError};
use crate::rng::normal;

/// The rejection bound `M = 1 + 4/π` of the Maxwell proposal for `t ≤ 1` (see the
/// [module docs](self)).
pub const MAXWELL_BOUND: f64 = 1.0 + 4.0 / PI;

/// The acceptance ratio `g(ω)` of the Maxwell proposal at `t ≤ 1` (see the
/// [module docs](self)); `ω ∈ [0, π]`.
pub fn maxwell_ratio(t: f64, omega: f64) -> f64 {
    let s = if omega < 1e-4 {
        1.0 - omega * omega / 24.0
    } else {
        2.0 * (0.5 * omega).sin() / omega
    };
    let z = 2.0 * PI * omega / t;
    let c = 2.0 * PI * PI / t;
    // E e^{±z} without overflow: z − 2π²/t ≤ 0 on [0, π].
    let (ep, em) = ((z - c).exp(), (-z - c).exp());
    let e_cosh = 0.5 * (ep + em);
    let e_sinh_over_z = if z < 1e-3 {
        (-c).exp() * (1.0 + z * z / 6.0)
    } else {
        0.5 * (ep - em) / z
    };
    let r1 = 2.0 * (4.0 * PI * PI / t * e_sinh_over_z - e_cosh);
    s * (1.0 + r1)
}

/// One exact draw `W ~ IGSO(3)(I, t)` by rejection (see the [module docs](self)); no table,
/// so the set-up costs `O(1)` whatever `t` (for a new `t` at every draw, as in training).
///
/// # Errors
/// [`LieError::NonPositive`] unless `t` is finite and positive.
pub fn igso3_draw<R: Rng + ?Sized>(t: f64, rng: &mut R) -> Result<Rotation, LieError> {
    let t = check_positive("IGSO(3) time t = ε²", t)?;
    if t <= 1.0 {
        let sd = t.sqrt();
        loop {
            let r = [
                sd * normal::sample(rng),
                sd * normal::sample(rng),
                sd * normal::sample(rng),
            ];
            let omega = norm(&r);
            if omega > PI {
                continue;
            }
            if rng.random::<f64>() * MAXWELL_BOUND < maxwell_ratio(t, omega) {
                return Ok(exp(&r));
            }
        }
    }
    let kernel = Igso3::new(t)?;
    let log_f0 = kernel.log_f(0.0)?;
    loop {
        let r = So3.uniform(rng);
        let log_ratio = kernel.log_f(r.angle())? - log_f0;
        if rng.random::<f64>().ln() < log_ratio {
            return Ok(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `g ≤ M` on a fine grid of `ω ∈ [0, π]` and `t ∈ [10⁻⁴, 1]`; the largest `g` is
    /// `g(π) = 4/π` (`2 sin(π/2)/π · 2`: the `k = −1` image equals the `k = 0` term there), so
    /// `M` wastes at most a factor `1 + π/4` of the proposals.
    #[test]
    fn the_maxwell_bound_holds() {
        let mut worst: f64 = 0.0;
        for i in 0..=200 {
            let t = 10f64.powf(-4.0 + 4.0 * i as f64 / 200.0);
            for j in 0..=2000 {
                let omega = PI * j as f64 / 2000.0;
                let g = maxwell_ratio(t, omega);
                assert!(g.is_finite() && g >= 0.0, "t={t} ω={omega}: {g}");
                worst = worst.max(g);
            }
        }
        assert!(worst <= MAXWELL_BOUND, "max g = {worst}");
        assert!((worst - 4.0 / PI).abs() < 1e-9, "max g = {worst}");
    }

    /// `g` is the ratio of the target angle law to the Maxwell law: `(1 − cos ω) f(ω)/
    /// (ω² e^{−ω²/2t} g(ω))` is constant in `ω`, with `f` from [`Igso3::log_f`].
    #[test]
    fn the_ratio_is_the_density_ratio() {
        for &t in &[1e-3, 0.04, 0.3, 1.0] {
            let k = Igso3::new(t).expect("kernel");
            let at = |omega: f64| {
                // 1 − cos ω = 2 sin²(ω/2), without cancellation at small ω.
                let log_target =
                    (2.0 * (0.5 * omega).sin().powi(2)).ln() + k.log_f(omega).expect("f");
                let log_q = 2.0 * omega.ln() - omega * omega / (2.0 * t);
                log_target - log_q - maxwell_ratio(t, omega).ln()
            };
            let c0 = at(1e-3 * t.sqrt());
            for j in 1..=50 {
                let omega = (PI - 1e-9) * j as f64 / 50.0;
                if omega * omega / (2.0 * t) > 600.0 {
                    continue; // f underflows far in the tail
                }
                let c = at(omega);
                assert!((c - c0).abs() < 1e-9, "t={t} ω={omega}: {c} vs {c0}");
            }
        }
    }

    /// The drawn angles follow [`Igso3::angle_cdf`]: KS at level `10⁻³` (critical value
    /// `1.949/√n`), 20 000 draws per `t`, on both sides of the switch at `t = 1` (fixed seed).
    #[test]
    fn draws_match_the_angle_law() {
        let n = 20_000;
        for (i, &t) in [1e-4, 0.01, 0.25, 0.9, 1.0, 1.2, 3.0, 9.0]
            .iter()
            .enumerate()
        {
            let mut rng = crate::rng::stream(71, i as u64);
            let k = Igso3::new(t).expect("kernel");
            let mut w: Vec<f64> = (0..n)
                .map(|_| igso3_draw(t, &mut rng).expect("draw").angle())
                .collect();
            w.sort_by(f64::total_cmp);
            let d = w
                .iter()
                .enumerate()
                .map(|(j, &omega)| {
                    let f = k.angle_cdf(omega).expect("cdf");
                    (f - j as f64 / n as f64)
                        .abs()
                        .max(((j + 1) as f64 / n as f64 - f).abs())
                })
                .fold(0.0, f64::max);
            let crit = 1.949 / (n as f64).sqrt();
            assert!(d < crit, "t={t}: D = {d}, critical {crit}");
        }
    }

    #[test]
    fn bad_times_are_typed_errors() {
        let mut rng = crate::rng::stream(0, 0);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                igso3_draw(bad, &mut rng),
                Err(LieError::NonPositive { .. })
            ));
        }
    }
}
