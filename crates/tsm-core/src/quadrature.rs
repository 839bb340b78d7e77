//! One-dimensional quadrature: adaptive Simpson with Richardson extrapolation.
//!
//! Used to normalise the time weightings (which vary over six orders of magnitude on
//! `[10⁻³, 1 − 10⁻³]`) and for exact expectations over `t` in tests.

/// `∫_a^b f(t) dt` to relative tolerance `rel_tol` (absolute `rel_tol · |estimate|`), by
/// adaptive Simpson with at most 50 levels of bisection.
///
/// # Examples
/// ```
/// let i = tsm_core::quadrature::integrate(|t| 1.0 / t, 1e-3, 1.0, 1e-12);
/// assert!((i - 1e3f64.ln()).abs() < 1e-9);
/// ```
pub fn integrate(f: impl Fn(f64) -> f64, a: f64, b: f64, rel_tol: f64) -> f64 {
    // Start from 64 panels so that steep ends are resolved before the error test applies.
    let panels = 64;
    let h = (b - a) / panels as f64;
    (0..panels)
        .map(|k| {
            let (lo, hi) = (a + k as f64 * h, a + (k + 1) as f64 * h);
            let (flo, fmid, fhi) = (f(lo), f(0.5 * (lo + hi)), f(hi));
            let whole = simpson(lo, hi, flo, fmid, fhi);
            let tol = rel_tol * whole.abs().max(f64::MIN_POSITIVE);
            adapt(&f, lo, hi, flo, fmid, fhi, whole, tol, 50)
        })
        .sum()
}

fn simpson(a: f64, b: f64, fa: f64, fm: f64, fb: f64) -> f64 {
    (b - a) / 6.0 * (fa + 4.0 * fm + fb)
}

#[allow(clippy::too_many_arguments)]
fn adapt(
    f: &impl Fn(f64) -> f64,
    a: f64,
    b: f64,
    fa: f64,
    fm: f64,
    fb: f64,
    whole: f64,
    tol: f64,
    depth: u32,
) -> f64 {
    let m = 0.5 * (a + b);
    let (lm, rm) = (0.5 * (a + m), 0.5 * (m + b));
    let (flm, frm) = (f(lm), f(rm));
    let left = simpson(a, m, fa, flm, fm);
    let right = simpson(m, b, fm, frm, fb);
    let delta = left + right - whole;
    if depth == 0 || delta.abs() <= 15.0 * tol {
        left + right + delta / 15.0
    } else {
        adapt(f, a, m, fa, flm, fm, left, 0.5 * tol, depth - 1)
            + adapt(f, m, b, fm, frm, fb, right, 0.5 * tol, depth - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::integrate;

    #[test]
    fn integrates_known_functions() {
        let pi = std::f64::consts::PI;
        assert!((integrate(f64::sin, 0.0, pi, 1e-12) - 2.0).abs() < 1e-10);
        let i = integrate(|t| 1.0 / (t * t), 1e-3, 1.0, 1e-12);
        assert!((i - 999.0).abs() < 1e-7, "{i}");
        assert!((integrate(|_| 1.0, 0.2, 0.7, 1e-12) - 0.5).abs() < 1e-14);
    }
}
