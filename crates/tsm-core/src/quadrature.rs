//! One-dimensional quadrature.
//!
//! - [`integrate`]: adaptive Simpson with Richardson extrapolation, scalar, no error estimate.
//!   Used to normalise the time weightings (which vary over six orders of magnitude on
//!   `[10⁻³, 1 − 10⁻³]`) and for exact expectations over `t` in tests.
//! - [`gauss_kronrod`]: globally adaptive 31-point Gauss–Kronrod for vector-valued integrands,
//!   with breakpoints and an error estimate per component (QUADPACK's strategy; Piessens et
//!   al., 1983, *QUADPACK: A Subroutine Package for Automatic Integration*). Used for the
//!   exact estimator variances of 1-D mixtures (`tsm_targets::exact_variance`).

use crate::{Error, Result};

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

/// Nodes of the 31-point Kronrod rule on `[−1, 1]` (the positive half, then 0); the odd
/// entries `1, 3, …, 15` are the nodes of the 15-point Gauss rule. Values of QUADPACK's
/// `dqk31` (Piessens et al., 1983), computed by Fullerton with 80-digit arithmetic.
#[allow(clippy::excessive_precision)] // the published 33 digits, rounded by the compiler
const KRONROD_NODES: [f64; 16] = [
    0.998_002_298_693_397_060_285_172_840_152_271,
    0.987_992_518_020_485_428_489_565_718_586_613,
    0.967_739_075_679_139_134_257_347_978_784_337,
    0.937_273_392_400_705_904_307_758_947_710_209,
    0.897_264_532_344_081_900_882_509_656_454_496,
    0.848_206_583_410_427_216_200_648_320_774_217,
    0.790_418_501_442_465_932_967_649_294_817_947,
    0.724_417_731_360_170_047_416_186_054_613_938,
    0.650_996_741_297_416_970_533_735_895_313_275,
    0.570_972_172_608_538_847_537_226_737_253_911,
    0.485_081_863_640_239_680_693_655_740_232_351,
    0.394_151_347_077_563_369_897_207_370_981_045,
    0.299_180_007_153_168_812_166_780_024_266_389,
    0.201_194_093_997_434_522_300_628_303_394_596,
    0.101_142_066_918_717_499_027_074_231_447_392,
    0.0,
];
/// Weights of the 31-point Kronrod rule, matching [`KRONROD_NODES`].
#[allow(clippy::excessive_precision)] // the published 33 digits, rounded by the compiler
const KRONROD_WEIGHTS: [f64; 16] = [
    0.005_377_479_872_923_348_987_792_051_430_128,
    0.015_007_947_329_316_122_538_374_763_075_807,
    0.025_460_847_326_715_320_186_874_001_019_653,
    0.035_346_360_791_375_846_222_037_948_478_360,
    0.044_589_751_324_764_876_608_227_299_373_280,
    0.053_481_524_690_928_087_265_343_147_239_430,
    0.062_009_567_800_670_640_285_139_230_960_803,
    0.069_854_121_318_728_258_709_520_077_099_147,
    0.076_849_680_757_720_378_894_432_777_482_659,
    0.083_080_502_823_133_021_038_289_247_286_104,
    0.088_564_443_056_211_770_647_275_443_693_774,
    0.093_126_598_170_825_321_225_486_872_747_346,
    0.096_642_726_983_623_678_505_179_907_627_589,
    0.099_173_598_721_791_959_332_393_173_484_603,
    0.100_769_845_523_875_595_044_946_662_617_570,
    0.101_330_007_014_791_549_017_374_792_767_493,
];
/// Weights of the 15-point Gauss rule at `KRONROD_NODES[1], [3], …, [15]`.
#[allow(clippy::excessive_precision)] // the published 33 digits, rounded by the compiler
const GAUSS_WEIGHTS: [f64; 8] = [
    0.030_753_241_996_117_268_354_628_393_577_204,
    0.070_366_047_488_108_124_709_267_416_450_667,
    0.107_159_220_467_171_935_011_869_546_685_869,
    0.139_570_677_926_154_314_447_804_794_511_028,
    0.166_269_205_816_993_933_553_200_860_481_209,
    0.186_161_000_015_562_211_026_800_561_866_423,
    0.198_431_485_327_111_576_456_118_326_443_839,
    0.202_578_241_925_561_272_880_620_199_967_519,
];

/// Tolerances of [`gauss_kronrod`]: component `k` of the integral is accepted when its error
/// estimate is at most `max(rel · |value_k|, abs[k])`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance<const N: usize> {
    /// Relative tolerance, `≥ 0` (e.g. `1e-10`).
    pub rel: f64,
    /// Absolute tolerance per component, `≥ 0`: the floor below which an error is accepted
    /// whatever the value (set it at the rounding level of the integrand when a component
    /// may vanish).
    pub abs: [f64; N],
    /// The most subintervals before giving up (then [`Integral::converged`] is `false`).
    pub max_intervals: usize,
}

impl<const N: usize> Tolerance<N> {
    /// Relative tolerance `rel`, no absolute floor, at most 2,000 subintervals.
    pub fn relative(rel: f64) -> Self {
        Self {
            rel,
            abs: [0.0; N],
            max_intervals: 2000,
        }
    }
}

/// A vector of integrals with error estimates, from [`gauss_kronrod`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Integral<const N: usize> {
    /// The integrals `∫ f_k`.
    pub value: [f64; N],
    /// Their estimated absolute errors (QUADPACK's estimate, summed over subintervals).
    pub error: [f64; N],
    /// Integrand evaluations ([`KRONROD_POINTS`] per subinterval visited).
    pub evaluations: usize,
    /// Subintervals in the final partition.
    pub intervals: usize,
    /// Whether every component met its tolerance within `max_intervals` (if not, `value` is
    /// the best estimate and `error` says how good it is).
    pub converged: bool,
}

/// The number of abscissae of the 31-point Kronrod rule, i.e. of one call of the integrand
/// of [`gauss_kronrod_batch`].
pub const KRONROD_POINTS: usize = 31;

/// Nodes on each side of the centre.
const HALF: usize = KRONROD_POINTS / 2;

/// One subinterval with the 31-point estimates of its integrals and errors.
#[derive(Debug, Clone, Copy)]
struct Panel<const N: usize> {
    a: f64,
    b: f64,
    value: [f64; N],
    error: [f64; N],
}

/// `∫_{p₀}^{p_m} f(x) dx` for a vector-valued `f`, by globally adaptive 31-point
/// Gauss–Kronrod quadrature (QUADPACK's `qag`/`qagp` strategy, Piessens et al., 1983).
///
/// `points = [p₀, p₁, …, p_m]` (strictly increasing, finite, `m ≥ 1`) are the ends and the
/// breakpoints: the initial partition is `[p_{i−1}, p_i]`, so put a point wherever `f` has a
/// peak, a kink or a fast transition (no rule finds a peak that none of its nodes comes near).
/// On each subinterval the 31-point Kronrod rule gives the value and its difference from the
/// embedded 15-point Gauss rule the error, scaled as QUADPACK does
/// (`ε = I_asc · min(1, (200 |K − G|/I_asc)^{3/2})`, floored at `50 ε_mach ∫|f|`), which is
/// reliable for smooth integrands. The subinterval with the largest error relative to its
/// component's tolerance is bisected until every component meets [`Tolerance`] or the
/// partition has `max_intervals` pieces.
///
/// # Errors
/// [`Error::OutOfRange`] for fewer than two points, non-finite points or a negative or
/// non-finite tolerance; [`Error::Unordered`] for points that do not increase;
/// [`Error::NonFinite`] if `f` returns a non-finite value; any error `f` returns.
///
/// # Examples
/// ```
/// use tsm_core::quadrature::{gauss_kronrod, Tolerance};
/// // ∫_{-1}^{2} (|x|, x²) dx with the kink of |x| as a breakpoint.
/// let i = gauss_kronrod(|x| Ok([x.abs(), x * x]), &[-1.0, 0.0, 2.0], &Tolerance::relative(1e-12))?;
/// assert!((i.value[0] - 2.5).abs() < 1e-14 && (i.value[1] - 3.0).abs() < 1e-14);
/// assert!(i.converged && i.error[0] < 1e-12);
/// # Ok::<(), tsm_core::Error>(())
/// ```
pub fn gauss_kronrod<const N: usize>(
    mut f: impl FnMut(f64) -> Result<[f64; N]>,
    points: &[f64],
    tolerance: &Tolerance<N>,
) -> Result<Integral<N>> {
    gauss_kronrod_batch(
        |xs, out| {
            for (x, o) in xs.iter().zip(out.iter_mut()) {
                *o = f(*x)?;
            }
            Ok(())
        },
        points,
        tolerance,
    )
}

/// As [`gauss_kronrod`], with the integrand evaluated at the [`KRONROD_POINTS`] abscissae of a
/// subinterval at once (`f(xs, out)` writes `f(xs[i])` into `out[i]`), so that it can share
/// work between them or vectorise.
///
/// # Errors
/// As [`gauss_kronrod`].
pub fn gauss_kronrod_batch<const N: usize>(
    mut f: impl FnMut(&[f64; KRONROD_POINTS], &mut [[f64; N]; KRONROD_POINTS]) -> Result<()>,
    points: &[f64],
    tolerance: &Tolerance<N>,
) -> Result<Integral<N>> {
    check_points(points)?;
    let tol_ok = |v: f64| v.is_finite() && v >= 0.0;
    if !tol_ok(tolerance.rel) {
        return Err(Error::OutOfRange {
            name: "Tolerance::rel",
            value: tolerance.rel,
            allowed: "[0, ∞)",
        });
    }
    if let Some(&value) = tolerance.abs.iter().find(|&&v| !tol_ok(v)) {
        return Err(Error::OutOfRange {
            name: "Tolerance::abs",
            value,
            allowed: "[0, ∞)",
        });
    }
    let mut panels: Vec<Panel<N>> = Vec::with_capacity(2 * points.len() + 16);
    let (mut value, mut error) = ([0.0; N], [0.0; N]);
    for w in points.windows(2) {
        let p = kronrod_panel(&mut f, w[0], w[1])?;
        add(&mut value, &mut error, &p, 1.0);
        panels.push(p);
    }
    let mut evaluations = KRONROD_POINTS * panels.len();
    let max_intervals = tolerance.max_intervals.max(panels.len());
    let mut converged = false;
    loop {
        let allowed: [f64; N] =
            std::array::from_fn(|k| (tolerance.rel * value[k].abs()).max(tolerance.abs[k]));
        // Running sums of errors drift by rounding; they decide only when to stop refining.
        if (0..N).all(|k| error[k] <= allowed[k]) {
            converged = true;
            break;
        }
        if panels.len() >= max_intervals {
            break;
        }
        // The panel whose error is largest relative to the allowance of its component.
        let ratio = |p: &Panel<N>| {
            (0..N).fold(0.0f64, |worst, k| {
                let r = if allowed[k] > 0.0 {
                    p.error[k] / allowed[k]
                } else if p.error[k] > 0.0 {
                    f64::INFINITY
                } else {
                    0.0
                };
                worst.max(r)
            })
        };
        let mut worst = (0, f64::NEG_INFINITY);
        for (i, p) in panels.iter().enumerate() {
            let r = ratio(p);
            if r > worst.1 {
                worst = (i, r);
            }
        }
        let old = panels[worst.0];
        let mid = 0.5 * (old.a + old.b);
        if mid <= old.a || mid >= old.b {
            // No room left to bisect: rounding limits the accuracy here.
            break;
        }
        let (left, right) = (
            kronrod_panel(&mut f, old.a, mid)?,
            kronrod_panel(&mut f, mid, old.b)?,
        );
        add(&mut value, &mut error, &old, -1.0);
        add(&mut value, &mut error, &left, 1.0);
        add(&mut value, &mut error, &right, 1.0);
        panels[worst.0] = left;
        panels.push(right);
        evaluations += 2 * KRONROD_POINTS;
    }
    // Final sums afresh, without the drift of the running ones.
    let (mut value, mut error) = ([0.0; N], [0.0; N]);
    for p in &panels {
        add(&mut value, &mut error, p, 1.0);
    }
    Ok(Integral {
        value,
        error,
        evaluations,
        intervals: panels.len(),
        converged,
    })
}

fn add<const N: usize>(value: &mut [f64; N], error: &mut [f64; N], p: &Panel<N>, sign: f64) {
    for k in 0..N {
        value[k] += sign * p.value[k];
        error[k] = (error[k] + sign * p.error[k]).max(0.0);
    }
}

fn check_points(points: &[f64]) -> Result<()> {
    if points.len() < 2 {
        return Err(Error::OutOfRange {
            name: "number of quadrature points",
            value: points.len() as f64,
            allowed: "at least 2 (the two ends)",
        });
    }
    if let Some(&value) = points.iter().find(|p| !p.is_finite()) {
        return Err(Error::OutOfRange {
            name: "quadrature point",
            value,
            allowed: "finite values",
        });
    }
    if let Some(w) = points.windows(2).find(|w| w[0] >= w[1]) {
        return Err(Error::Unordered {
            low: "quadrature point",
            low_value: w[0],
            high: "the next quadrature point",
            high_value: w[1],
        });
    }
    Ok(())
}

/// The 31-point Kronrod estimate on `[a, b]` with QUADPACK's error estimate.
fn kronrod_panel<const N: usize>(
    f: &mut impl FnMut(&[f64; KRONROD_POINTS], &mut [[f64; N]; KRONROD_POINTS]) -> Result<()>,
    a: f64,
    b: f64,
) -> Result<Panel<N>> {
    let (centre, half) = (0.5 * (a + b), 0.5 * (b - a));
    // Abscissae: 2j and 2j + 1 are centre ∓ KRONROD_NODES[j]·half, the last the centre.
    let mut xs = [centre; KRONROD_POINTS];
    for (j, &x) in KRONROD_NODES[..HALF].iter().enumerate() {
        xs[2 * j] = centre - half * x;
        xs[2 * j + 1] = centre + half * x;
    }
    let mut values = [[0.0; N]; KRONROD_POINTS];
    f(&xs, &mut values)?;
    // The sums run over the nodes in the outer loop and the components in the inner one, so
    // that they vectorise across components; each component's sums are the same operations
    // in the same order as one component at a time.
    let centre_values = values[2 * HALF];
    let mut kronrod: [f64; N] = std::array::from_fn(|k| KRONROD_WEIGHTS[HALF] * centre_values[k]);
    let mut gauss: [f64; N] = std::array::from_fn(|k| GAUSS_WEIGHTS[HALF / 2] * centre_values[k]);
    let mut abs: [f64; N] = std::array::from_fn(|k| KRONROD_WEIGHTS[HALF] * centre_values[k].abs());
    for j in 0..HALF {
        let (lo, hi) = (&values[2 * j], &values[2 * j + 1]);
        let w = KRONROD_WEIGHTS[j];
        for k in 0..N {
            kronrod[k] += w * (lo[k] + hi[k]);
            abs[k] += w * (lo[k].abs() + hi[k].abs());
        }
        if j % 2 == 1 {
            let g = GAUSS_WEIGHTS[j / 2];
            for k in 0..N {
                gauss[k] += g * (lo[k] + hi[k]);
            }
        }
    }
    // A non-finite value makes its component's `abs` non-finite (the weights are positive);
    // only then look for the first one (`abs` may also overflow with finite values).
    if abs.iter().any(|v| !v.is_finite()) {
        if let Some(&value) = values.iter().flatten().find(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                op: "gauss_kronrod integrand",
                value,
            });
        }
    }
    let mean: [f64; N] = std::array::from_fn(|k| 0.5 * kronrod[k]);
    let mut asc: [f64; N] =
        std::array::from_fn(|k| KRONROD_WEIGHTS[HALF] * (centre_values[k] - mean[k]).abs());
    for j in 0..HALF {
        let (lo, hi) = (&values[2 * j], &values[2 * j + 1]);
        let w = KRONROD_WEIGHTS[j];
        for k in 0..N {
            asc[k] += w * ((lo[k] - mean[k]).abs() + (hi[k] - mean[k]).abs());
        }
    }
    let mut value = [0.0; N];
    let mut error = [0.0; N];
    for k in 0..N {
        let (kronrod, abs, asc) = (kronrod[k] * half, abs[k] * half, asc[k] * half);
        let mut err = (kronrod - gauss[k] * half).abs();
        if asc != 0.0 && err != 0.0 {
            let r = 200.0 * err / asc;
            err = asc * (r * r.sqrt()).min(1.0);
        }
        if abs > f64::MIN_POSITIVE / (50.0 * f64::EPSILON) {
            err = err.max(50.0 * f64::EPSILON * abs);
        }
        value[k] = kronrod;
        error[k] = err;
    }
    Ok(Panel { a, b, value, error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrates_known_functions() {
        let pi = std::f64::consts::PI;
        assert!((integrate(f64::sin, 0.0, pi, 1e-12) - 2.0).abs() < 1e-10);
        let i = integrate(|t| 1.0 / (t * t), 1e-3, 1.0, 1e-12);
        assert!((i - 999.0).abs() < 1e-7, "{i}");
        assert!((integrate(|_| 1.0, 0.2, 0.7, 1e-12) - 0.5).abs() < 1e-14);
    }

    /// The rules are exact for polynomials: Kronrod-31 to degree 46, Gauss-15 to degree 29
    /// (this checks every node and weight constant).
    #[test]
    fn rules_are_exact_for_polynomials_of_their_degree() {
        for degree in 0..=46 {
            let exact = if degree % 2 == 1 {
                0.0
            } else {
                2.0 / (degree as f64 + 1.0)
            };
            let mut f = |xs: &[f64; KRONROD_POINTS], out: &mut [[f64; 1]; KRONROD_POINTS]| {
                for (x, o) in xs.iter().zip(out.iter_mut()) {
                    *o = [x.powi(degree)];
                }
                Ok(())
            };
            let p = kronrod_panel(&mut f, -1.0, 1.0).unwrap();
            assert!((p.value[0] - exact).abs() < 4e-16, "K31, degree {degree}");
            let mut gauss = GAUSS_WEIGHTS[HALF / 2] * 0f64.powi(degree);
            for j in 0..HALF / 2 {
                let x = KRONROD_NODES[2 * j + 1];
                gauss += GAUSS_WEIGHTS[j] * (x.powi(degree) + (-x).powi(degree));
            }
            if degree <= 29 {
                assert!((gauss - exact).abs() < 4e-16, "G15, degree {degree}");
            } else if degree % 2 == 0 {
                // Beyond its degree the Gauss rule is wrong, so the error estimate is alive.
                assert!((gauss - exact).abs() > 1e-12, "G15, degree {degree}");
            }
        }
    }

    #[test]
    fn adapts_to_peaks_and_reports_honest_errors() {
        let pi = std::f64::consts::PI;
        // A narrow Gaussian peak off-centre (at a breakpoint: no rule finds a peak that none of
        // its nodes comes near), a kink, and a smooth function, at once.
        let f = |x: f64| {
            Ok([
                (-(x - 0.3f64).powi(2) / (2.0 * 1e-6)).exp(),
                x.abs(),
                x.sin(),
            ])
        };
        let exact = [
            (2.0 * pi * 1e-6).sqrt(),
            0.5 * (1.0 + 4.0),
            (-1.0f64).cos() - 2.0f64.cos(),
        ];
        let i = gauss_kronrod(f, &[-1.0, 0.0, 0.3, 2.0], &Tolerance::relative(1e-11)).unwrap();
        assert!(i.converged);
        for k in 0..3 {
            let err = (i.value[k] - exact[k]).abs();
            assert!(err <= i.error[k].max(1e-16), "{k}: {err} > {}", i.error[k]);
            assert!(err <= 1e-11 * exact[k], "{k}: {err}");
        }
        assert_eq!(i.evaluations, KRONROD_POINTS * (3 + 2 * (i.intervals - 3)));
    }

    #[test]
    fn a_vanishing_component_converges_on_its_absolute_floor() {
        let tol = Tolerance {
            rel: 1e-12,
            abs: [0.0, 1e-15],
            max_intervals: 200,
        };
        // The second component is rounding noise around zero.
        let f = |x: f64| Ok([x.exp(), (0.1 + x) - x - 0.1]);
        let i = gauss_kronrod(f, &[0.0, 1.0], &tol).unwrap();
        assert!(i.converged, "{i:?}");
        assert!((i.value[0] - (1f64.exp() - 1.0)).abs() < 1e-14);
        // Without the floor it cannot converge, and says so.
        let i = gauss_kronrod(f, &[0.0, 1.0], &Tolerance::relative(1e-12)).unwrap();
        assert!(!i.converged);
    }

    /// The panel's sums run across components at once: each component's value and error are
    /// the bits of that component integrated alone.
    #[test]
    fn a_panel_of_several_components_is_each_component_alone() {
        let fs = [
            |x: f64| (3.0 * x).sin() * x.exp(),
            |x: f64| 1.0 / (1.0 + 25.0 * x * x),
            |x: f64| (x - 0.3).abs().sqrt(),
        ];
        let mut all = |xs: &[f64; KRONROD_POINTS], out: &mut [[f64; 3]; KRONROD_POINTS]| {
            for (x, o) in xs.iter().zip(out.iter_mut()) {
                *o = std::array::from_fn(|k| fs[k](*x));
            }
            Ok(())
        };
        let together = kronrod_panel(&mut all, -0.7, 1.3).unwrap();
        for (k, f) in fs.iter().enumerate() {
            let mut one = |xs: &[f64; KRONROD_POINTS], out: &mut [[f64; 1]; KRONROD_POINTS]| {
                for (x, o) in xs.iter().zip(out.iter_mut()) {
                    *o = [f(*x)];
                }
                Ok(())
            };
            let alone = kronrod_panel(&mut one, -0.7, 1.3).unwrap();
            assert_eq!(together.value[k].to_bits(), alone.value[0].to_bits(), "{k}");
            assert_eq!(together.error[k].to_bits(), alone.error[0].to_bits(), "{k}");
        }
        // A non-finite value among finite components is still reported.
        let mut bad = |xs: &[f64; KRONROD_POINTS], out: &mut [[f64; 2]; KRONROD_POINTS]| {
            for (x, o) in xs.iter().zip(out.iter_mut()) {
                *o = [*x, if *x > 0.5 { f64::NAN } else { 1.0 }];
            }
            Ok(())
        };
        assert!(matches!(
            kronrod_panel(&mut bad, 0.0, 1.0),
            Err(Error::NonFinite { .. })
        ));
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let f = |x: f64| Ok([x]);
        let tol = Tolerance::relative(1e-10);
        assert!(matches!(
            gauss_kronrod(f, &[0.0], &tol),
            Err(Error::OutOfRange { .. })
        ));
        assert!(matches!(
            gauss_kronrod(f, &[0.0, f64::INFINITY], &tol),
            Err(Error::OutOfRange { .. })
        ));
        assert!(matches!(
            gauss_kronrod(f, &[0.0, 1.0, 1.0], &tol),
            Err(Error::Unordered { .. })
        ));
        assert!(matches!(
            gauss_kronrod(f, &[0.0, 1.0], &Tolerance::relative(-1.0)),
            Err(Error::OutOfRange { .. })
        ));
        assert!(matches!(
            gauss_kronrod(|x: f64| Ok([1.0 / x]), &[0.0, 1.0], &tol),
            Err(Error::NonFinite { .. })
        ));
    }
}
