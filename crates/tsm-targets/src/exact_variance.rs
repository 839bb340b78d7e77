//! Exact variances of the Monte Carlo score estimators for a 1-D Gaussian mixture, by nested
//! adaptive quadrature: the numbers that Fig. 2 of De Bortoli et al. (2024), *Target Score
//! Matching*, estimates by Monte Carlo.
//!
//! # What is computed
//! An identity `L = a (α x₀ − x_t) + b ∇log p₀(x₀)` (any [`Coefficients`] at `t`; eqs. 2, 8 and
//! §4.1) has, given `x_t = y`, the posterior mean
//!
//! ```text
//! m(y) = E[L | y] = (a σ² + b α) ∇log p_t(y)
//! ```
//!
//! (Tweedie, `α E[x₀|y] − y = σ² ∇log p_t(y)`, and the target score identity,
//! `E[∇log p₀(x₀)|y] = α ∇log p_t(y)`); for every score identity `a σ² + b α = 1`. The module
//! computes
//!
//! ```text
//! V  = E_{y~p_t}[ Var(L | y) ] = ∫ p_t(y) ∫ p(x₀|y) (L(x₀, y) − m(y))² dx₀ dy,
//! ```
//!
//! the variance per posterior draw. The `n`-draw estimator of eq. 18, the mean of `n`
//! i.i.d. exact posterior draws, is unbiased, so its mean squared error against the true
//! score, averaged over `y ~ p_t`, is exactly `V/n` — which is also the expectation of Fig. 2's
//! "variance" column (the unbiased sample variance over the draws, divided by `n`, averaged over
//! points). [`Exact::per_estimate`] gives it.
//!
//! # How: nested adaptive Gauss–Kronrod quadrature
//! `p_t = Σᵢ πᵢ N(α μᵢ, Sᵢ²)`, `Sᵢ² = α² sᵢ² + σ²`, and the posterior is
//! `p(x₀|y) = Σᵢ wᵢ(y) N(νᵢ(y), γᵢ²)` (eq. 17), both exact mixtures.
//! - **Outer**, over `y`: on `[minᵢ(α μᵢ − Z Sᵢ), maxᵢ(α μᵢ + Z Sᵢ)]`, `Z = 12`, with breakpoints
//!   at the modes `α μᵢ` and at the points where two components of `p_t` have equal weighted
//!   densities (where the posterior switches between components and `Var(L|y)` peaks: the
//!   rare-event region of the hard mixtures).
//! - **Inner**, over `x₀ = νᵢ + γᵢ z`, one Gaussian component of the posterior at a time.
//!   Write `∇log p₀(x) = g(ν) + g'(ν)(x − ν) + r(x)`, the tangent at the component's centre
//!   plus a residual. Then `L − m = D + C z + b r`, with `D = a(αν − y) + b g(ν) − m` and
//!   `C = (aα + b g'(ν)) γ`, and
//!
//!   ```text
//!   E[(L − m)² | component] = D² + C² + 2b (D E[r] + C E[z r]) + b² E[r²]:
//!   ```
//!
//!   Gaussian moments in closed form, and three integrals `∫ φ(z) (r, z r, r²) dz` on
//!   `[−Z, Z]` (breakpoints at `z = 0` and where two components of the *prior* have equal
//!   weighted densities, where `∇log p₀` switches from one component's linear score to the
//!   other's), shared by all the identities.
//!
//! *Why this split, and not closed forms or `E[L²] − E[L]²`.* `α x₀ − y` is Gaussian within a
//! posterior component, but `∇log p₀(x₀)` is a ratio of mixtures (a logistic blend of the
//! components' linear scores) whose Gaussian expectations have no closed form, so some
//! quadrature is needed. `E[L²] − E[L]²`, or the equivalent
//! `a² σ² + b² J(p₀) − (aσ² + bα)² J(p_t)` (`J` the Fisher information; see the tests),
//! subtracts numbers of order `b² J(p₀)` to get variances many decades smaller (`L_κ̄` on the
//! hard mixtures at small `t`: `6.5·10⁻⁵` from terms of order 25), losing the digits the
//! figure needs. The tangent split keeps every term of the size of the result: the residual
//! is `O(γ²)` where `∇log p₀` is smooth on the posterior's scale and vanishes (to rounding)
//! where one prior component has all the responsibility, so the quadrature measures only
//! how far the posterior is from Gaussian. With one component `r ≡ 0` and the inner moment is
//! App. C's `c² γ²`, `c = a α − b/s²` (a slope that cancels to rounding counts as 0, as in
//! `tsm_core::gaussian_variance`). [`expected_moments`], which also wants `E[(L − m)⁴|y]`,
//! integrates `(L − m)²` and `(L − m)⁴` directly instead.
//!
//! # Error estimate and tolerances
//! The reported error is the sum of (i) the outer quadrature's error estimate (QUADPACK's,
//! summed over subintervals), (ii) the outer integral of the inner error estimates (the
//! quadrature's, propagated through the formula above, plus `8ε` of the terms for rounding),
//! and (iii) bounds on what the cuts at `Z = 12` leave out: `|L − m| ≤ A + B|u|` in the
//! standardised variable `u` of each cut Gaussian (`|∇log p₀(x)| ≤ maxⱼ (|x| + |μⱼ|)/sⱼ²`,
//! the mixture's score being a convex combination of its components'), so a cut tail adds at
//! most `∫_{|u|>Z} φ(u)(A + B|u|)² du ≤ 2(A² Φ̄ + 2AB φ(Z) + B²(Zφ(Z) + Φ̄))`,
//! `Φ̄ = Φ(−Z) ≤ φ(Z)/Z`, `φ(12) = 2.1·10⁻³²`. For a requested relative tolerance `ρ`, the outer
//! integral gets `ρ/2`, each inner one `ρ/10` of `max(E[(L − m)²|y], V̂)`, where `V̂` is a
//! first, cheap pass of the closed-form parts `D² + C²` (so that no inner integral is refined
//! where its whole contribution is negligible); the reported error is then about `ρ V` or
//! less, and says so where the quadrature could not do better.
//!
//! # Optimal weight
//! For two identities `L₁, L₂` and `L_w = w L₁ + (1 − w) L₂`, `E_y[Var(L_w|y)]` is the
//! quadratic `w² V₁ + (1 − w)² V₂ + 2 w (1 − w) C`, `C = E_y[Cov(L₁, L₂ | y)]`, minimal at
//!
//! ```text
//! w* = (V₂ − C) / (V₁ + V₂ − 2C) = 1/2 + (V₂ − V₁) / (2 V_Δ),     V_Δ = E_y[Var(L₁ − L₂ | y)],
//! ```
//!
//! with `C = (V₁ + V₂ − V_Δ)/2`; all three are variances of affine `L`s, computed by the same
//! quadrature ([`optimal_weight`]). For a Gaussian target and `L₁, L₂` = DSI, TSI, `w* = κ_t`
//! (App. C).
//!
//! # References
//! [^1]: De Bortoli et al. (2024), *Target Score Matching*, eqs. 2, 8, 17, 18, §4.1 (Fig. 2),
//!   App. C.
//! [^2]: Piessens et al. (1983), *QUADPACK*: the Gauss–Kronrod rule and its error estimate
//!   (`tsm_core::quadrature::gauss_kronrod`).

use tsm_core::fastmath;
use tsm_core::identity::Coefficients;
use tsm_core::quadrature::{gauss_kronrod, gauss_kronrod_batch, Tolerance, KRONROD_POINTS};
use tsm_core::schedule::{check_time, Schedule};
use tsm_core::target::{Dim, LogDensity, Score};

use crate::{Error, GaussianMixture, Result};

/// The relative tolerance of the figures' exact curves, `10⁻⁶`: a thousand times below the
/// best Monte Carlo standard error they are compared with, at about a millisecond per
/// (target, t) for the four identities of Fig. 2.
pub const FIGURE_REL_TOL: f64 = 1e-6;

/// Half-width of the outer range and of the inner windows, in standard deviations.
const Z_CUT: f64 = 12.0;
/// Identities integrated together (the vector integrands hold this many of each moment).
const BLOCK: usize = 4;
/// `1/√(2π)`.
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// An exact expectation with its error estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exact {
    /// The value.
    pub value: f64,
    /// The estimated absolute error (quadrature and tail cut; see the [module docs](self)).
    pub error: f64,
}

impl Exact {
    /// The value and error divided by `draws`: for a per-draw variance `V`, the variance (and
    /// the mean squared error against the true score) of the mean of `draws` i.i.d. posterior
    /// draws, eq. 18. `draws = 0` gives `+∞`.
    pub fn per_estimate(self, draws: usize) -> Self {
        let n = draws as f64;
        Self {
            value: self.value / n,
            error: self.error / n,
        }
    }
}

/// The exact per-draw variance `V = E_y[Var(L|y)]` of an identity together with the moments
/// that give the spread of Fig. 2's Monte Carlo quantities over points `y ~ p_t`, and how many
/// points carry them.
///
/// With `V(y) = Var(L|y)` and `μ₄(y) = E[(L − m(y))⁴|y]`, a column's per-point quantity `X`
/// (the squared error of the mean of `n` draws, or their unbiased sample variance over `n`)
/// has `E[X|y] = V(y)/n` and `E[X²|y] = h(y) = A μ₄(y) + B V(y)²`, with
/// `(A, B) = (1/n³, 3(n − 1)/n³)` for the squared error and
/// `(1/n³, (1 − (n − 3)/(n(n − 1)))/n²)` for the sample variance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExactMoments {
    /// `V = E_y[Var(L|y)]`.
    pub variance: Exact,
    /// `E_y[V(y)²]` (to the requested relative tolerance; no error bound).
    pub variance_sq: f64,
    /// `E_y[μ₄(y)]` (likewise).
    pub fourth_moment: f64,
    /// `E_y[V(y)⁴]`, `E_y[μ₄(y) V(y)²]` and `E_y[μ₄(y)²]`, for `E_y[h(y)²]` (likewise).
    pub variance_fourth: f64,
    /// See [`ExactMoments::variance_fourth`].
    pub fourth_variance_sq: f64,
    /// See [`ExactMoments::variance_fourth`].
    pub fourth_sq: f64,
}

/// Which of Fig. 2's two Monte Carlo columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// The unbiased sample variance of the draws over their number, averaged over points.
    Variance,
    /// The squared error of the draws' mean against the true score, averaged over points.
    Mse,
}

impl ExactMoments {
    /// `(E[X], A, B)` of the column's per-point quantity (see the type's docs).
    fn column(&self, column: Column, draws: usize) -> Result<(f64, f64, f64)> {
        let n = match column {
            Column::Variance => check_draws(draws, 2, "ExactMoments (variance column)")?,
            Column::Mse => check_draws(draws, 1, "ExactMoments (mse column)")?,
        };
        let b = match column {
            Column::Variance => (1.0 - (n - 3.0) / (n * (n - 1.0))) / (n * n),
            Column::Mse => 3.0 * (n - 1.0) / (n * n * n),
        };
        Ok((self.variance.value / n, 1.0 / (n * n * n), b))
    }

    /// The standard deviation over points `y ~ p_t` of the column's per-point quantity `X`:
    /// `√(E_y[h(y)] − E[X]²)`. For the sample variance, `Var(s²|y) = μ₄(y)/n −
    /// V(y)² (n − 3)/(n(n − 1))`; for the squared error, `E[(L̄ − m)⁴|y] = (μ₄(y) +
    /// 3(n − 1)V(y)²)/n³`.
    ///
    /// # Errors
    /// `Error::Core(TooFewDraws)` for `draws < 2` (variance) or `draws = 0` (mse).
    pub fn column_sd(&self, column: Column, draws: usize) -> Result<f64> {
        let (mean, a, b) = self.column(column, draws)?;
        let second = a * self.fourth_moment + b * self.variance_sq;
        Ok((second - mean * mean).max(0.0).sqrt())
    }

    /// How many of `points` points carry the column's mean and its standard error: the
    /// smaller of `P E[X]²/E[X²]` (the points that carry the mean; for `X` mostly ~0 and
    /// rarely large, about the expected number of points that see the rare event) and
    /// `P E_y[h]²/E_y[h²]` (the same for `E[X²]`, whose estimate is the standard error's: the
    /// relative variance of the sample `E[X²]` is at least `1/that − 1/P`). `+∞` where `V = 0`.
    ///
    /// # Errors
    /// As [`ExactMoments::column_sd`].
    pub fn effective_points(&self, column: Column, points: usize, draws: usize) -> Result<f64> {
        let (mean, a, b) = self.column(column, draws)?;
        let h_mean = a * self.fourth_moment + b * self.variance_sq;
        let h_sq = a * a * self.fourth_sq
            + 2.0 * a * b * self.fourth_variance_sq
            + b * b * self.variance_fourth;
        if mean <= 0.0 || h_mean <= 0.0 {
            return Ok(f64::INFINITY);
        }
        let p = points as f64;
        Ok((p * mean * mean / h_mean).min(p * h_mean * h_mean / h_sq))
    }
}

fn check_draws(draws: usize, needed: usize, op: &'static str) -> Result<f64> {
    if draws < needed {
        return Err(tsm_core::Error::TooFewDraws {
            op,
            needed,
            got: draws,
        }
        .into());
    }
    Ok(draws as f64)
}

/// `E_{y~p_t}[Var(L|y)]` per posterior draw for each identity, exactly (see the
/// [module docs](self)), to relative tolerance `rel_tol`; divide by the number of draws with
/// [`Exact::per_estimate`] for the variance and MSE of the Monte Carlo estimator.
///
/// # Parameters
/// - `target`: a 1-D Gaussian mixture;
/// - `t ∈ [0, 1]`, `coefficients`: identities at `t` (any number; they are integrated four at a
///   time);
/// - `rel_tol ∈ [10⁻¹³, 10⁻¹]`: the reported error is at most about `rel_tol · value` (more
///   where the quadrature gives up at its interval limit, which the error then says).
///
/// # Errors
/// [`Error::DimMismatch`] unless the target is 1-D; `Error::Core(TimeOutOfRange)` for
/// `t ∉ [0, 1]`; `Error::Core(NonFinite)` for non-finite coefficients;
/// `Error::Core(OutOfRange)` for `rel_tol` outside its range or coefficients whose `alpha` is
/// not the schedule's `α_t` (taken at another time).
///
/// # Examples
/// ```
/// use tsm_core::gaussian_variance::GaussianVariance;
/// use tsm_core::identity::ScoreIdentity;
/// use tsm_core::schedule::Cosine;
/// use tsm_targets::{exact_variance, named};
///
/// let (target, t) = (named::unit_gaussian(), 0.3);
/// let dsi = ScoreIdentity::Dsi.coefficients(&Cosine, t)?;
/// let v = exact_variance::expected_variances(&target, &Cosine, t, &[dsi], 1e-11)?[0];
/// let closed = GaussianVariance::new(1, 1.0, &Cosine, t)?.dsi()?;   // App. C
/// assert!((v.value - closed).abs() <= 1e-10 * closed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn expected_variances(
    target: &GaussianMixture,
    schedule: &(impl Schedule + ?Sized),
    t: f64,
    coefficients: &[Coefficients],
    rel_tol: f64,
) -> Result<Vec<Exact>> {
    Ok(nested(target, schedule, t, coefficients, rel_tol, false)?
        .into_iter()
        .map(|m| m.variance)
        .collect())
}

/// As [`expected_variances`], with the moments that give the spread of the Monte Carlo
/// quantities over points ([`ExactMoments::column_sd`], [`ExactMoments::effective_points`]).
///
/// # Errors
/// As [`expected_variances`].
pub fn expected_moments(
    target: &GaussianMixture,
    schedule: &(impl Schedule + ?Sized),
    t: f64,
    coefficients: &[Coefficients],
    rel_tol: f64,
) -> Result<Vec<ExactMoments>> {
    nested(target, schedule, t, coefficients, rel_tol, true)
}

/// The variance-optimal constant weight `w*` of `w L₁ + (1 − w) L₂` at `t`:
/// `w* = 1/2 + (V₂ − V₁)/(2 V_Δ)`, `V_Δ = E_y[Var(L₁ − L₂|y)]` (see the [module docs](self)).
/// Not clamped to `[0, 1]`.
///
/// # Errors
/// As [`expected_variances`]; `Error::Core(NonFinite)` if `V_Δ = 0` (`L₁ − L₂` is constant
/// given `y`, so every weight is optimal).
pub fn optimal_weight(
    target: &GaussianMixture,
    schedule: &(impl Schedule + ?Sized),
    t: f64,
    first: &Coefficients,
    second: &Coefficients,
    rel_tol: f64,
) -> Result<Exact> {
    let difference = Coefficients {
        alpha: first.alpha,
        a: first.a - second.a,
        b: first.b - second.b,
    };
    let v = expected_variances(target, schedule, t, &[*first, *second, difference], rel_tol)?;
    let (v1, v2, vd) = (v[0], v[1], v[2]);
    if vd.value <= 0.0 {
        return Err(tsm_core::Error::NonFinite {
            op: "optimal_weight (L₁ − L₂ has no variance)",
            value: vd.value,
        }
        .into());
    }
    let w = 0.5 + (v2.value - v1.value) / (2.0 * vd.value);
    let error = (v1.error + v2.error) / (2.0 * vd.value) + (w - 0.5).abs() * vd.error / vd.value;
    Ok(Exact { value: w, error })
}

tsm_core::multiversion! {
    avx512;
    /// `x = centre + width z` and `φ(z)` at the nodes (vectorised).
    fn normal_nodes(
        zs: &[f64; KRONROD_POINTS],
        centre: f64,
        width: f64,
        x: &mut [f64; KRONROD_POINTS],
        phi: &mut [f64; KRONROD_POINTS]
    ) => normal_nodes_kernel
}

#[inline(always)]
fn normal_nodes_kernel(
    zs: &[f64; KRONROD_POINTS],
    centre: f64,
    width: f64,
    x: &mut [f64; KRONROD_POINTS],
    phi: &mut [f64; KRONROD_POINTS],
) {
    for i in 0..KRONROD_POINTS {
        x[i] = centre + width * zs[i];
        phi[i] = FRAC_1_SQRT_2PI * fastmath::exp(-0.5 * zs[i] * zs[i]);
    }
}

/// This crate's error as `tsm-core`'s, for the integrands of `gauss_kronrod` (the shape
/// errors cannot occur there: the buffers are made for the target).
fn into_core(e: Error) -> tsm_core::Error {
    match e {
        Error::Core(c) => c,
        Error::DimMismatch { expected, got, op } => {
            tsm_core::Error::DimMismatch { expected, got, op }
        }
        _ => tsm_core::Error::NonFinite {
            op: "exact_variance posterior",
            value: f64::NAN,
        },
    }
}

/// The points where two weighted Gaussian densities `πᵢ N(x; mᵢ, sᵢ²)` are equal.
fn crossovers(weights: &[f64], means: &[f64], stds: &[f64]) -> Vec<f64> {
    let n = weights.len();
    let mut out = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            let (vi, vj) = (stds[i] * stds[i], stds[j] * stds[j]);
            // log πᵢ − log sᵢ − (x − mᵢ)²/(2 vᵢ) = (same for j)  ⇔  A x² + B x + C = 0.
            let a = 0.5 / vj - 0.5 / vi;
            let b = means[i] / vi - means[j] / vj;
            let c = means[j] * means[j] / (2.0 * vj) - means[i] * means[i] / (2.0 * vi)
                + (weights[i] / stds[i]).ln()
                - (weights[j] / stds[j]).ln();
            if a.abs() <= 1e-12 * (b.abs() + c.abs()).max(f64::MIN_POSITIVE) {
                if b != 0.0 {
                    out.push(-c / b);
                }
            } else {
                let disc = b * b - 4.0 * a * c;
                if disc >= 0.0 {
                    // The numerically stable pair of roots.
                    let q = -0.5 * (b + b.signum() * disc.sqrt());
                    out.push(q / a);
                    if q != 0.0 {
                        out.push(c / q);
                    }
                }
            }
        }
    }
    out.retain(|x| x.is_finite());
    out
}

/// `[lo, the interior points within (lo, hi) …, hi]`, sorted, without near-duplicates.
fn partition(lo: f64, hi: f64, interior: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let gap = 1e-9 * (hi - lo);
    let mut pts: Vec<f64> = interior
        .into_iter()
        .filter(|&x| x > lo + gap && x < hi - gap)
        .collect();
    pts.sort_by(f64::total_cmp);
    let mut out = vec![lo];
    for x in pts {
        if x - out[out.len() - 1] > gap {
            out.push(x);
        }
    }
    out.push(hi);
    out
}

/// Up to [`BLOCK`] identities integrated together.
struct Block {
    alpha: f64,
    a: [f64; BLOCK],
    b: [f64; BLOCK],
    /// `a σ² + b α`: `m = mean_factor · ∇log p_t(y)`.
    mean_factor: [f64; BLOCK],
    /// `a α − b/s²` for a one-component target (the slope of the affine `L`).
    slope: [f64; BLOCK],
    len: usize,
}

/// Tolerances of the nested quadrature.
struct Accuracy {
    outer_rel: f64,
    /// Relative to `E[(L − m)²|y]`, estimated by its closed-form part (see
    /// [`Problem::inner`]), or to `E_y` of that part, whichever is larger.
    inner_rel: f64,
    /// `E_y` of the closed-form part of `E[(L − m)²|y]`, per identity (`None` while it is
    /// being computed: then only the closed-form part is integrated).
    closed_form: Option<[f64; BLOCK]>,
    /// Whether the fourth moments are wanted (then the inner integrand is `(L − m)²` and
    /// `(L − m)⁴` directly, else the three residual moments).
    fourth: bool,
}

/// Inner moments at one `y`: `E[(L−m)²|y]`, their error estimates and `E[(L−m)⁴|y]`.
struct InnerMoments {
    second: [f64; BLOCK],
    second_error: [f64; BLOCK],
    fourth: [f64; BLOCK],
}

/// One posterior component at one `y`, and the bounds that size its tolerances.
struct Component {
    /// `∇log p₀` and its derivative at the centre: the tangent that the residual is taken
    /// from.
    score_centre: f64,
    score_slope: f64,
    weight: f64,
    centre: f64,
    width: f64,
    /// `|L − m| ≤ size₀ + size₁ |z|` on the whole line, per identity.
    size0: [f64; BLOCK],
    size1: [f64; BLOCK],
    /// A bound on `|∇log p₀|` on the window `|z| ≤ Z`.
    score_max: f64,
    /// `L − m = D + C z + b r(ν + γ z)` (see [`Problem::residual`]): `D` and `C` per identity.
    d: [f64; BLOCK],
    slope: [f64; BLOCK],
    /// The absolute error allowed for `E[(L − m)²]` over this component, per identity.
    allowed: [f64; BLOCK],
}

/// Everything fixed at one `t`.
struct Problem<'a> {
    target: &'a GaussianMixture,
    marginal: GaussianMixture,
    alpha: f64,
    sigma_sq: f64,
    prior_means: Vec<f64>,
    prior_stds: Vec<f64>,
    /// Where the prior's responsibilities switch (breakpoints of `∇log p₀`).
    prior_crossovers: Vec<f64>,
    marginal_means: Vec<f64>,
    marginal_stds: Vec<f64>,
    /// `ln πᵢ − ln sᵢ` of the prior's components and of `p_t`'s (`ln πᵢ − ln Sᵢ`), computed
    /// once rather than at every quadrature node.
    prior_log_norms: Vec<f64>,
    marginal_log_norms: Vec<f64>,
}

fn nested(
    target: &GaussianMixture,
    schedule: &(impl Schedule + ?Sized),
    t: f64,
    coefficients: &[Coefficients],
    rel_tol: f64,
    fourth: bool,
) -> Result<Vec<ExactMoments>> {
    if target.dim() != 1 {
        return Err(Error::DimMismatch {
            expected: 1,
            got: target.dim(),
            op: "exact_variance (the target must be 1-D)",
        });
    }
    check_time(t)?;
    if !(1e-13..=1e-1).contains(&rel_tol) {
        return Err(tsm_core::Error::OutOfRange {
            name: "rel_tol",
            value: rel_tol,
            allowed: "[1e-13, 0.1]",
        }
        .into());
    }
    let alpha = schedule.alpha(t);
    for c in coefficients {
        if let Some(&value) = [c.alpha, c.a, c.b].iter().find(|v| !v.is_finite()) {
            return Err(tsm_core::Error::NonFinite {
                op: "exact_variance coefficients",
                value,
            }
            .into());
        }
        if (c.alpha - alpha).abs() > 1e-12 * alpha.abs().max(1.0) {
            return Err(tsm_core::Error::OutOfRange {
                name: "Coefficients::alpha (coefficients must be taken at the same t)",
                value: c.alpha,
                allowed: "α_t of the schedule at t",
            }
            .into());
        }
    }
    let n = target.n_components();
    // `i < n` and the target is 1-D, so every lookup has a value (NaN would be caught by the
    // quadrature's finiteness check).
    let first = |v: Option<&[f64]>| v.map_or(f64::NAN, |v| v[0]);
    let prior_means: Vec<f64> = (0..n).map(|i| first(target.component_mean(i))).collect();
    let prior_stds: Vec<f64> = (0..n).map(|i| first(target.component_std(i))).collect();
    let marginal = target.noised(schedule, t)?;
    let marginal_means: Vec<f64> = (0..n).map(|i| first(marginal.component_mean(i))).collect();
    let marginal_stds: Vec<f64> = (0..n).map(|i| first(marginal.component_std(i))).collect();
    let log_norms = |weights: &[f64], stds: &[f64]| -> Vec<f64> {
        (0..n).map(|i| weights[i].ln() - stds[i].ln()).collect()
    };
    let problem = Problem {
        target,
        alpha,
        sigma_sq: schedule.sigma_sq(t),
        prior_crossovers: crossovers(target.weights(), &prior_means, &prior_stds),
        prior_log_norms: log_norms(target.weights(), &prior_stds),
        marginal_log_norms: log_norms(marginal.weights(), &marginal_stds),
        prior_means,
        prior_stds,
        marginal_means,
        marginal_stds,
        marginal,
    };
    let mut out = Vec::with_capacity(coefficients.len());
    for chunk in coefficients.chunks(BLOCK) {
        let block = problem.block(chunk);
        // A cheap first pass, the closed-form part of the inner moments on the initial outer
        // partition, sizes the inner tolerances of the second: an inner error is then small
        // against the result even where E[(L − m)²|y] is not.
        let mut accuracy = Accuracy {
            outer_rel: 0.5 * rel_tol,
            inner_rel: 0.1 * rel_tol,
            closed_form: None,
            fourth,
        };
        let closed = problem.pass(schedule, t, &block, &accuracy)?;
        accuracy.closed_form = Some(std::array::from_fn(|k| {
            closed.get(k).map_or(0.0, |m| m.variance.value)
        }));
        out.extend(problem.pass(schedule, t, &block, &accuracy)?);
    }
    Ok(out)
}

/// `∫_{|u| > Z} φ(u) (A + B|u|)² du ≤ 2 (A² Φ̄ + 2AB φ(Z) + B² (Z φ(Z) + Φ̄))`, with
/// `Φ̄ = Φ(−Z) ≤ φ(Z)/Z` (Mills' ratio): what the cut at `Z` can leave out of a squared
/// deviation bounded by `A + B|u|`.
fn tail_bound(a: f64, b: f64) -> f64 {
    let phi = FRAC_1_SQRT_2PI * (-0.5 * Z_CUT * Z_CUT).exp();
    let upper_tail = phi / Z_CUT;
    2.0 * (a * a * upper_tail + 2.0 * a * b * phi + b * b * (Z_CUT * phi + upper_tail))
}

impl Problem<'_> {
    fn block(&self, chunk: &[Coefficients]) -> Block {
        let mut block = Block {
            alpha: self.alpha,
            a: [0.0; BLOCK],
            b: [0.0; BLOCK],
            mean_factor: [0.0; BLOCK],
            slope: [0.0; BLOCK],
            len: chunk.len(),
        };
        let s0_sq = self.prior_stds[0] * self.prior_stds[0];
        for (k, c) in chunk.iter().enumerate() {
            block.a[k] = c.a;
            block.b[k] = c.b;
            block.mean_factor[k] = c.a * self.sigma_sq + c.b * c.alpha;
            // As `GaussianVariance::identity`: a slope that cancels to rounding is 0.
            let (dsi_part, tsi_part) = (c.a * c.alpha, c.b / s0_sq);
            let slope = dsi_part - tsi_part;
            block.slope[k] =
                if slope.abs() <= 4.0 * f64::EPSILON * (dsi_part.abs() + tsi_part.abs()) {
                    0.0
                } else {
                    slope
                };
        }
        block
    }

    /// One pass of the nested quadrature.
    fn pass(
        &self,
        schedule: &(impl Schedule + ?Sized),
        t: f64,
        block: &Block,
        accuracy: &Accuracy,
    ) -> Result<Vec<ExactMoments>> {
        // Outer range and breakpoints: the modes of p_t and where its components cross.
        let (means, stds) = (&self.marginal_means, &self.marginal_stds);
        let lo = (0..means.len())
            .map(|i| means[i] - Z_CUT * stds[i])
            .fold(f64::INFINITY, f64::min);
        let hi = (0..means.len())
            .map(|i| means[i] + Z_CUT * stds[i])
            .fold(f64::NEG_INFINITY, f64::max);
        let points = partition(
            lo,
            hi,
            means
                .iter()
                .copied()
                .chain(crossovers(self.marginal.weights(), means, stds)),
        );
        // Components: [p V | p err V | p V² | p μ₄ | p V⁴ | p μ₄V² | p μ₄²], four of each;
        // only p V (and p V², p μ₄ when the fourth moments are wanted) drive the refinement.
        let mut abs = [f64::MAX; 7 * BLOCK];
        let floor = self.rounding_floor(block);
        for k in 0..block.len {
            abs[k] = floor[k];
            if accuracy.fourth {
                abs[2 * BLOCK + k] = floor[k] * floor[k];
                abs[3 * BLOCK + k] = floor[k] * floor[k];
            }
        }
        let tolerance = Tolerance {
            rel: accuracy.outer_rel,
            abs,
            max_intervals: if accuracy.closed_form.is_some() {
                4000
            } else {
                points.len() - 1
            },
        };
        let outer = gauss_kronrod(
            |y| {
                let density = self.marginal.log_density(&[y]).exp();
                if density == 0.0 {
                    return Ok([0.0; 7 * BLOCK]);
                }
                let inner = self.inner(schedule, t, y, block, accuracy)?;
                let mut v = [0.0; 7 * BLOCK];
                for k in 0..BLOCK {
                    let (second, fourth) = (inner.second[k], inner.fourth[k]);
                    let second_sq = second * second;
                    v[k] = density * second;
                    v[BLOCK + k] = density * inner.second_error[k];
                    v[2 * BLOCK + k] = density * second_sq;
                    v[3 * BLOCK + k] = density * fourth;
                    v[4 * BLOCK + k] = density * second_sq * second_sq;
                    v[5 * BLOCK + k] = density * fourth * second_sq;
                    v[6 * BLOCK + k] = density * fourth * fourth;
                }
                Ok(v)
            },
            &points,
            &tolerance,
        )?;
        let outer_tail = self.outer_tail_bound(block);
        Ok((0..block.len)
            .map(|k| ExactMoments {
                variance: Exact {
                    value: outer.value[k],
                    // The inner errors' integral is itself an estimate: its own quadrature
                    // error does not add.
                    error: outer.error[k] + outer.value[BLOCK + k] + outer_tail[k],
                },
                variance_sq: outer.value[2 * BLOCK + k],
                fourth_moment: outer.value[3 * BLOCK + k],
                variance_fourth: outer.value[4 * BLOCK + k],
                fourth_variance_sq: outer.value[5 * BLOCK + k],
                fourth_sq: outer.value[6 * BLOCK + k],
            })
            .collect())
    }

    /// What the outer cut leaves out, `∫_{y ∉ [lo, hi]} p_t(y) Var(L|y) dy`, bounded with
    /// `Var(L|y) ≤ E[(aα x₀ + b ∇log p₀(x₀))² | y] ≤ (P + Q|y|)²`: `|∇log p₀(x)| ≤
    /// (|x| + M)/s_min²` (`M = maxᵢ |μᵢ|`), `E[x₀²|y] ≤ maxᵢ (νᵢ(y)² + γᵢ²)` and
    /// `|νᵢ(y)| ≤ σ²|μᵢ|/Sᵢ² + α sᵢ² |y|/Sᵢ²`; each component of `p_t` is cut `Z Sᵢ` from its
    /// mean, so [`tail_bound`] applies to each.
    fn outer_tail_bound(&self, block: &Block) -> [f64; BLOCK] {
        let s_min_sq = self
            .prior_stds
            .iter()
            .fold(f64::INFINITY, |m, s| m.min(s * s));
        let big_m = self.prior_means.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let n = self.prior_means.len();
        let (mut nu0, mut nu1) = (0.0f64, 0.0f64);
        for i in 0..n {
            let (s_sq, marg_sq) = (
                self.prior_stds[i] * self.prior_stds[i],
                self.marginal_stds[i] * self.marginal_stds[i],
            );
            let gamma = (s_sq * self.sigma_sq / marg_sq).sqrt();
            nu0 = nu0.max(self.sigma_sq * self.prior_means[i].abs() / marg_sq + gamma);
            nu1 = nu1.max(self.alpha * s_sq / marg_sq);
        }
        let mut out = [0.0; BLOCK];
        for k in 0..block.len {
            let k1 = (block.a[k] * self.alpha).abs() + block.b[k].abs() / s_min_sq;
            let k0 = block.b[k].abs() * big_m / s_min_sq;
            let (p, q) = (k0 + k1 * nu0, k1 * nu1);
            out[k] = (0..n)
                .map(|i| {
                    let (m, s) = (self.marginal_means[i], self.marginal_stds[i]);
                    self.target.weights()[i] * tail_bound(p + q * m.abs(), q * s)
                })
                .sum();
        }
        out
    }

    /// The rounding level of `(L − m)²` averaged over the joint law (the outer absolute floor):
    /// `(16 ε)² · 4 (a² (2 α² M₂ + σ²) + b² G₀ + (aσ² + bα)² G_t)`, where `M₂ = E[x₀²]` and
    /// `G₀ = Σᵢ E[(x₀ − μᵢ)²]/sᵢ⁴ ≥ E[(∇log p₀)²]`, `G_t` the same for `p_t` (closed forms).
    fn rounding_floor(&self, block: &Block) -> [f64; BLOCK] {
        let weights = self.target.weights();
        // E[(x − c)²] under Σ πᵢ N(meansᵢ, stdsᵢ²).
        let moment = |means: &[f64], stds: &[f64], c: f64| -> f64 {
            weights
                .iter()
                .zip(means.iter().zip(stds))
                .map(|(p, (m, s))| p * (s * s + (m - c) * (m - c)))
                .sum()
        };
        let fisher_bound = |means: &[f64], stds: &[f64]| -> f64 {
            means
                .iter()
                .zip(stds)
                .map(|(&m, &s)| moment(means, stds, m) / (s * s).powi(2))
                .sum()
        };
        let m2 = moment(&self.prior_means, &self.prior_stds, 0.0);
        let g0 = fisher_bound(&self.prior_means, &self.prior_stds);
        let gt = fisher_bound(&self.marginal_means, &self.marginal_stds);
        let mut out = [0.0; BLOCK];
        for k in 0..block.len {
            let size = block.a[k].powi(2) * (2.0 * self.alpha * self.alpha * m2 + self.sigma_sq)
                + block.b[k].powi(2) * g0
                + block.mean_factor[k].powi(2) * gt;
            out[k] = (16.0 * f64::EPSILON).powi(2) * 4.0 * size;
        }
        out
    }

    /// `maxᵢ (|x| + |μᵢ|)/sᵢ²`, a bound on `|∇log p₀|` at points of size `|x|` (each
    /// component's score is `−(x − μᵢ)/sᵢ²`, and the mixture's a convex combination).
    fn score_bound(&self, x_abs: f64) -> f64 {
        self.prior_means
            .iter()
            .zip(&self.prior_stds)
            .map(|(m, s)| (x_abs + m.abs()) / (s * s))
            .fold(0.0, f64::max)
    }

    /// The inner moments at `y`.
    fn inner(
        &self,
        schedule: &(impl Schedule + ?Sized),
        t: f64,
        y: f64,
        block: &Block,
        accuracy: &Accuracy,
    ) -> tsm_core::Result<InnerMoments> {
        let mut moments = InnerMoments {
            second: [0.0; BLOCK],
            second_error: [0.0; BLOCK],
            fourth: [0.0; BLOCK],
        };
        let posterior = self
            .target
            .posterior(schedule, t, &[y])
            .map_err(into_core)?;
        let (nu, gamma) = (posterior.component_means(), posterior.component_stds());
        if self.target.n_components() == 1 {
            // L = c x₀ + const: Var(L|y) = c² γ², E[(L − m)⁴|y] = 3 c⁴ γ⁴ (App. C).
            for k in 0..block.len {
                let v = (block.slope[k] * gamma[0]).powi(2);
                moments.second[k] = v;
                moments.fourth[k] = 3.0 * v * v;
            }
            return Ok(moments);
        }
        let mut score_t = [0.0];
        self.target.noised_score(schedule, t, &[y], &mut score_t);
        let mut mean = [0.0; BLOCK];
        for k in 0..block.len {
            mean[k] = block.mean_factor[k] * score_t[0];
        }
        let s_min_sq = self
            .prior_stds
            .iter()
            .fold(f64::INFINITY, |m, s| m.min(s * s));
        // The components, with the closed-form part `D² + C²` of each `E[(L − m)²]`: its
        // weighted sum sizes the inner tolerances (relative to `E[(L − m)²|y]`, so that the
        // inner errors add about `inner_rel` of the result).
        let mut components = Vec::with_capacity(self.target.n_components());
        let mut scale = [0.0; BLOCK];
        for (i, weight) in self.posterior_weights(y).into_iter().enumerate() {
            if weight == 0.0 {
                continue;
            }
            let (centre, width) = (nu[i], gamma[i]);
            // The reference: the tangent of ∇log p₀ at the centre (see `residual`).
            let (score_centre, score_slope) = self.score_and_slope(centre);
            // |L − m| ≤ |a|(α|x₀| + |y|) + |b| |∇log p₀(x₀)| + |m|, |x₀| ≤ |ν| + γ|z|.
            let (mut size0, mut size1) = ([0.0; BLOCK], [0.0; BLOCK]);
            let (mut d, mut slope) = ([0.0; BLOCK], [0.0; BLOCK]);
            for k in 0..block.len {
                let (a, b) = (block.a[k].abs(), block.b[k].abs());
                size0[k] = a * (block.alpha * centre.abs() + y.abs())
                    + b * self.score_bound(centre.abs())
                    + mean[k].abs();
                size1[k] = (a * block.alpha + b / s_min_sq) * width;
                d[k] =
                    block.a[k] * (block.alpha * centre - y) + block.b[k] * score_centre - mean[k];
                slope[k] = (block.a[k] * block.alpha + block.b[k] * score_slope) * width;
                scale[k] += weight * (d[k] * d[k] + slope[k] * slope[k]);
            }
            components.push(Component {
                score_centre,
                score_slope,
                weight,
                centre,
                width,
                size0,
                size1,
                score_max: self.score_bound(centre.abs() + Z_CUT * width),
                d,
                slope,
                allowed: [0.0; BLOCK],
            });
        }
        let Some(closed_form) = accuracy.closed_form else {
            moments.second = scale;
            return Ok(moments);
        };
        for component in components.iter_mut() {
            for k in 0..block.len {
                component.allowed[k] = (accuracy.inner_rel * scale[k].max(closed_form[k])
                    / component.weight)
                    .min(f64::MAX);
            }
        }
        for component in &components {
            let (weight, centre, width) = (component.weight, component.centre, component.width);
            let (second, error, fourth) = if width == 0.0 {
                // σ_t = 0: the posterior component is a point mass.
                let dev = self.deviation(block, centre, y, &mean);
                let mut second = [0.0; BLOCK];
                let mut fourth = [0.0; BLOCK];
                for k in 0..BLOCK {
                    second[k] = dev[k] * dev[k];
                    fourth[k] = second[k] * second[k];
                }
                (second, [0.0; BLOCK], fourth)
            } else if accuracy.fourth {
                self.direct(block, accuracy, y, component, &mean)?
            } else {
                self.residual(block, accuracy, component)?
            };
            for k in 0..block.len {
                moments.second[k] += weight * second[k];
                moments.second_error[k] +=
                    weight * (error[k] + tail_bound(component.size0[k], component.size1[k]));
                moments.fourth[k] += weight * fourth[k];
            }
        }
        Ok(moments)
    }

    /// `E[(L − m)²]` over one posterior component `N(ν, γ²)` from three residual moments.
    ///
    /// With `∇log p₀(x) = g(ν) + g'(ν)(x − ν) + r(x)` (the tangent at the centre and the
    /// residual), `L − m = D + C z + b r(ν + γ z)`, `D = a(αν − y) + b g(ν) − m`,
    /// `C = (aα + b g'(ν)) γ`, so
    ///
    /// ```text
    /// E[(L − m)²] = D² + C² + 2b (D E[r] + C E[z r]) + b² E[r²],
    /// ```
    ///
    /// Gaussian moments in closed form and three integrals of the residual `r`, which is small
    /// where `∇log p₀` is close to its tangent (vanishing, to rounding, where one prior
    /// component has all the responsibility) — so the quadrature works on the deviation
    /// from a Gaussian posterior only, and once for all the identities; the terms are of the
    /// size of the result rather than cancelling. Returns `(second, error, fourth = 0)` per
    /// identity.
    #[allow(clippy::type_complexity)]
    fn residual(
        &self,
        block: &Block,
        accuracy: &Accuracy,
        c: &Component,
    ) -> tsm_core::Result<([f64; BLOCK], [f64; BLOCK], [f64; BLOCK])> {
        let (d, slope) = (&c.d, &c.slope);
        // Tolerances of E[r], E[z r], E[r²] so that each identity's error is within its
        // allowance (a third each), and floors at the rounding level of r.
        let r_floor = 16.0
            * f64::EPSILON
            * (c.score_max + c.score_centre.abs() + c.score_slope.abs() * Z_CUT * c.width);
        let mut abs = [f64::MAX; 3];
        let mut needed = false;
        let mut negligible = true;
        for k in 0..block.len {
            let allowed = c.allowed[k];
            negligible &= (c.size0[k] + Z_CUT * c.size1[k]).powi(2) <= allowed;
            let b = block.b[k].abs();
            if b == 0.0 {
                continue;
            }
            needed = true;
            abs[0] = abs[0].min(allowed / (6.0 * b * d[k].abs()).max(f64::MIN_POSITIVE));
            abs[1] = abs[1].min(allowed / (6.0 * b * slope[k].abs()).max(f64::MIN_POSITIVE));
            abs[2] = abs[2].min(allowed / (3.0 * b * b));
        }
        abs[0] = abs[0].max(r_floor);
        abs[1] = abs[1].max(r_floor);
        abs[2] = abs[2].max(r_floor * r_floor);
        let (g, g_error) = if !needed {
            ([0.0; 3], [0.0; 3])
        } else if negligible {
            // |L − m| is within tolerance of 0 on the whole window: no quadrature, and the
            // whole bound as the error.
            let mut out = ([0.0; BLOCK], [0.0; BLOCK], [0.0; BLOCK]);
            for k in 0..block.len {
                out.1[k] = (c.size0[k] + Z_CUT * c.size1[k]).powi(2);
            }
            return Ok(out);
        } else {
            let points = partition(
                -Z_CUT,
                Z_CUT,
                std::iter::once(0.0).chain(
                    self.prior_crossovers
                        .iter()
                        .map(|x| (x - c.centre) / c.width),
                ),
            );
            let integral = gauss_kronrod_batch(
                |zs, out: &mut [[f64; 3]; KRONROD_POINTS]| {
                    let mut x0 = [0.0; KRONROD_POINTS];
                    let mut phi = [0.0; KRONROD_POINTS];
                    normal_nodes(zs, c.centre, c.width, &mut x0, &mut phi);
                    let mut score = [0.0; KRONROD_POINTS];
                    self.target.score_batch(&x0, &mut score);
                    for i in 0..KRONROD_POINTS {
                        let r = score[i] - c.score_centre - c.score_slope * (x0[i] - c.centre);
                        out[i] = [phi[i] * r, phi[i] * zs[i] * r, phi[i] * r * r];
                    }
                    Ok(())
                },
                &points,
                &Tolerance {
                    rel: accuracy.inner_rel,
                    abs,
                    max_intervals: 400,
                },
            )?;
            (integral.value, integral.error)
        };
        let (mut second, mut error) = ([0.0; BLOCK], [0.0; BLOCK]);
        for k in 0..block.len {
            let b = block.b[k];
            let (dk, ck) = (d[k], slope[k]);
            let cross = 2.0 * b * (dk * g[0] + ck * g[1]);
            let terms = dk * dk + ck * ck + cross.abs() + b * b * g[2].abs();
            let value = dk * dk + ck * ck + cross + b * b * g[2];
            second[k] = value.max(0.0);
            error[k] = 2.0 * b.abs() * (dk.abs() * g_error[0] + ck.abs() * g_error[1])
                + b * b * g_error[2]
                + 8.0 * f64::EPSILON * terms
                + (second[k] - value);
        }
        Ok((second, error, [0.0; BLOCK]))
    }

    /// `E[(L − m)²]` and `E[(L − m)⁴]` over one posterior component `N(ν, γ²)` by direct
    /// quadrature of the powers (the path of [`expected_moments`]); returns
    /// `(second, error, fourth)` per identity.
    #[allow(clippy::type_complexity)]
    fn direct(
        &self,
        block: &Block,
        accuracy: &Accuracy,
        y: f64,
        c: &Component,
        mean: &[f64; BLOCK],
    ) -> tsm_core::Result<([f64; BLOCK], [f64; BLOCK], [f64; BLOCK])> {
        let points = partition(
            -Z_CUT,
            Z_CUT,
            std::iter::once(0.0).chain(
                self.prior_crossovers
                    .iter()
                    .map(|x| (x - c.centre) / c.width),
            ),
        );
        // Floors at the rounding level of (L − m)², (16 ε T)², T the size of L's terms.
        let x_abs = c.centre.abs() + Z_CUT * c.width;
        let mut abs = [f64::MAX; 2 * BLOCK];
        for k in 0..block.len {
            let size = block.a[k].abs() * (block.alpha * x_abs + y.abs())
                + block.b[k].abs() * c.score_max
                + mean[k].abs();
            let floor = (16.0 * f64::EPSILON * size).powi(2);
            abs[k] = floor.max(c.allowed[k]);
            abs[BLOCK + k] = floor * floor;
        }
        let integral = gauss_kronrod_batch(
            |zs, out: &mut [[f64; 2 * BLOCK]; KRONROD_POINTS]| {
                let mut x0 = [0.0; KRONROD_POINTS];
                let mut phi = [0.0; KRONROD_POINTS];
                normal_nodes(zs, c.centre, c.width, &mut x0, &mut phi);
                let mut score = [0.0; KRONROD_POINTS];
                self.target.score_batch(&x0, &mut score);
                for i in 0..KRONROD_POINTS {
                    let shift = block.alpha * x0[i] - y;
                    for k in 0..BLOCK {
                        let dev = block.a[k] * shift + block.b[k] * score[i] - mean[k];
                        let d2 = dev * dev;
                        out[i][k] = phi[i] * d2;
                        out[i][BLOCK + k] = phi[i] * d2 * d2;
                    }
                }
                Ok(())
            },
            &points,
            &Tolerance {
                rel: accuracy.inner_rel,
                abs,
                max_intervals: 400,
            },
        )?;
        let (mut second, mut error, mut fourth) = ([0.0; BLOCK], [0.0; BLOCK], [0.0; BLOCK]);
        second.copy_from_slice(&integral.value[..BLOCK]);
        error.copy_from_slice(&integral.error[..BLOCK]);
        fourth.copy_from_slice(&integral.value[BLOCK..]);
        Ok((second, error, fourth))
    }

    /// `L_k(x₀, y) − m_k(y)` for the block.
    fn deviation(&self, block: &Block, x0: f64, y: f64, mean: &[f64; BLOCK]) -> [f64; BLOCK] {
        let mut g = [0.0];
        self.target.score(&[x0], &mut g);
        let shift = block.alpha * x0 - y;
        let mut dev = [0.0; BLOCK];
        for k in 0..block.len {
            dev[k] = block.a[k] * shift + block.b[k] * g[0] - mean[k];
        }
        dev
    }

    /// `g(x) = ∇log p₀(x) = Σⱼ ρⱼ gⱼ` and `g'(x) = Σⱼ ρⱼ gⱼ² − g² − Σⱼ ρⱼ/sⱼ²`
    /// (`ρⱼ` the prior responsibilities, `gⱼ = −(x − μⱼ)/sⱼ²`; differentiate
    /// `ρⱼ' = ρⱼ (gⱼ − g)`).
    fn score_and_slope(&self, x: f64) -> (f64, f64) {
        let n = self.prior_means.len();
        let log_terms: Vec<f64> = (0..n)
            .map(|j| {
                let r = (x - self.prior_means[j]) / self.prior_stds[j];
                self.prior_log_norms[j] - 0.5 * r * r
            })
            .collect();
        let max = log_terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (mut total, mut g, mut g_sq, mut curvature) = (0.0, 0.0, 0.0, 0.0);
        for j in 0..n {
            let rho = (log_terms[j] - max).exp();
            let var = self.prior_stds[j] * self.prior_stds[j];
            let gj = -(x - self.prior_means[j]) / var;
            total += rho;
            g += rho * gj;
            g_sq += rho * gj * gj;
            curvature += rho / var;
        }
        let g = g / total;
        (g, (g_sq - curvature) / total - g * g)
    }

    /// The posterior weights `wᵢ(y) ∝ πᵢ N(y; α μᵢ, Sᵢ²)` (eq. 17), by log-sum-exp, so that a
    /// small weight keeps its relative precision (the rare-event contributions are made of
    /// them; the cumulative form of `MixturePosterior` resolves weights to `ε` only).
    fn posterior_weights(&self, y: f64) -> Vec<f64> {
        let logs: Vec<f64> = (0..self.marginal_means.len())
            .map(|i| {
                let (m, s) = (self.marginal_means[i], self.marginal_stds[i]);
                let r = (y - m) / s;
                self.marginal_log_norms[i] - 0.5 * r * r
            })
            .collect();
        let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = logs.iter().map(|l| (l - max).exp()).collect();
        let total: f64 = w.iter().sum();
        w.into_iter().map(|v| v / total).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::named;
    use tsm_core::gaussian_variance::GaussianVariance;
    use tsm_core::identity::ScoreIdentity;
    use tsm_core::schedule::Cosine;

    const TIMES: [f64; 5] = [0.01, 0.2, 0.5, 0.8, 0.99];

    fn identities(v: f64) -> [ScoreIdentity; 5] {
        [
            ScoreIdentity::Dsi,
            ScoreIdentity::Tsi,
            ScoreIdentity::kappa(v),
            ScoreIdentity::kappa_bar(0.5 * v),
            ScoreIdentity::Mixture { weight: 0.3 },
        ]
    }

    /// Quadrature against App. C's closed forms (as corrected in `gaussian_variance`), to
    /// 1e-10 relative, for `N(μ, s²)` as a one-component mixture (closed-form inner moment)
    /// and as two identical components (the inner quadrature path).
    #[test]
    fn gaussian_matches_appendix_c_to_1e_10() {
        let s = 0.7f64;
        let one = GaussianMixture::univariate(&[1.0], &[0.4], &[s]).unwrap();
        let two = GaussianMixture::univariate(&[0.3, 0.7], &[0.4, 0.4], &[s, s]).unwrap();
        for target in [&one, &two] {
            for t in TIMES {
                let closed = GaussianVariance::new(1, s * s, &Cosine, t).unwrap();
                let coefficients: Vec<Coefficients> = identities(s * s)
                    .iter()
                    .map(|id| id.coefficients(&Cosine, t).unwrap())
                    .collect();
                let exact = expected_variances(target, &Cosine, t, &coefficients, 1e-11).unwrap();
                for (c, e) in coefficients.iter().zip(&exact) {
                    let want = closed.identity(c);
                    // κ has no variance: the closed form is 0, ours rounding (two components).
                    let scale = closed.dsi().unwrap().max(closed.tsi().unwrap());
                    let tol = if want == 0.0 {
                        1e-24 * scale
                    } else {
                        1e-10 * want
                    };
                    assert!(
                        (e.value - want).abs() <= tol,
                        "{} components, t = {t}, {c:?}: {} vs {want}",
                        target.n_components(),
                        e.value
                    );
                    assert!(e.error <= 1e-10 * want.max(1e-20 * scale), "{e:?}");
                }
            }
        }
    }

    /// `∫ p (∇log p)²`, the Fisher information, of a 1-D mixture.
    fn fisher(p: &GaussianMixture) -> f64 {
        let n = p.n_components();
        let (lo, hi) = (-30.0, 30.0);
        let mut points = vec![lo];
        points.extend((0..n).map(|i| p.component_mean(i).unwrap()[0]));
        points.push(hi);
        points.sort_by(f64::total_cmp);
        points.dedup();
        gauss_kronrod(
            |x| {
                let mut g = [0.0];
                p.score(&[x], &mut g);
                Ok([p.log_density(&[x]).exp() * g[0] * g[0]])
            },
            &points,
            &Tolerance::relative(1e-14),
        )
        .unwrap()
        .value[0]
    }

    /// An independent route: `E_y[Var(L|y)] = a² σ² + b² J(p₀) − (aσ² + bα)² J(p_t)`
    /// (`L = −aσε + b∇log p₀(x₀)` under the joint law, and `E[L|y] = m(y)`), which
    /// cancels, so it is compared where the cancellation leaves digits.
    #[test]
    fn mixtures_match_the_fisher_information_identity() {
        for (name, target) in named::figure_targets().into_iter().skip(1) {
            let j0 = fisher(&target);
            for t in [0.05, 0.3, 0.6, 0.9] {
                let (alpha, sigma_sq) = (Cosine.alpha(t), Cosine.sigma_sq(t));
                let jt = fisher(&target.noised(&Cosine, t).unwrap());
                let coefficients: Vec<Coefficients> = target
                    .figure_identities()
                    .iter()
                    .map(|id| id.coefficients(&Cosine, t).unwrap())
                    .collect();
                let exact = expected_variances(&target, &Cosine, t, &coefficients, 1e-11).unwrap();
                for (c, e) in coefficients.iter().zip(&exact) {
                    let mean_factor = c.a * sigma_sq + c.b * alpha;
                    let parts = c.a * c.a * sigma_sq + c.b * c.b * j0;
                    let fisher_route = parts - mean_factor * mean_factor * jt;
                    let tol = e.error + 1e-12 * parts;
                    assert!(
                        (e.value - fisher_route).abs() <= tol,
                        "{name}, t = {t}, {c:?}: {} vs {fisher_route} (tol {tol})",
                        e.value
                    );
                }
            }
        }
    }

    /// The error estimate is honest: a loose result is within its error of a tight one.
    #[test]
    fn loose_results_are_within_their_error_of_tight_ones() {
        for (name, target) in named::figure_targets().into_iter().skip(1) {
            for t in [0.01, 0.1, 0.5, 0.99] {
                let coefficients: Vec<Coefficients> = target
                    .figure_identities()
                    .iter()
                    .map(|id| id.coefficients(&Cosine, t).unwrap())
                    .collect();
                let loose = expected_variances(&target, &Cosine, t, &coefficients, 1e-4).unwrap();
                let tight = expected_variances(&target, &Cosine, t, &coefficients, 1e-11).unwrap();
                for (l, f) in loose.iter().zip(&tight) {
                    assert!(l.error <= 1e-4 * l.value, "{name}, t = {t}: {l:?}");
                    assert!(
                        (l.value - f.value).abs() <= l.error + f.error,
                        "{name}, t = {t}: {l:?} vs {f:?}"
                    );
                }
            }
        }
    }

    /// At `t = 0` the posterior is a point mass (no identity that is defined there varies);
    /// at `t = 1` it is the prior and `L_κ = L_DSI = −x_t/σ₁²` does not depend on `x₀`.
    #[test]
    fn the_ends_have_no_variance_for_kappa() {
        let target = named::hard_mixture_diff_var();
        for t in [0.0, 1.0] {
            let c = target.figure_identities()[2]
                .coefficients(&Cosine, t)
                .unwrap();
            let v = expected_variances(&target, &Cosine, t, &[c], 1e-8).unwrap()[0];
            assert!(v.value.abs() < 1e-20, "t = {t}: {v:?}");
        }
    }

    /// The rare-event cell of Fig. 2 (issue #18): κ̄ on the equal-variance hard mixture at
    /// t = 0.01, 6.45e-7 for 100 draws by an independent quadrature.
    #[test]
    fn kappa_bar_on_the_hard_mixture_at_small_t() {
        let target = named::hard_mixture_same_var();
        let c = target.figure_identities()[3]
            .coefficients(&Cosine, 0.01)
            .unwrap();
        let [v] = expected_variances(&target, &Cosine, 0.01, &[c], 1e-11).unwrap()[..] else {
            unreachable!()
        };
        let v = v.per_estimate(100);
        assert!((v.value - 6.45e-7).abs() < 0.005e-7, "{v:?}");
        assert!(v.error < 1e-9 * v.value, "{v:?}");
    }

    #[test]
    fn optimal_weight_is_kappa_for_a_gaussian_and_a_minimum_for_mixtures() {
        let gaussian = named::unit_gaussian();
        for t in TIMES {
            let dsi = ScoreIdentity::Dsi.coefficients(&Cosine, t).unwrap();
            let tsi = ScoreIdentity::Tsi.coefficients(&Cosine, t).unwrap();
            let w = optimal_weight(&gaussian, &Cosine, t, &dsi, &tsi, 1e-11).unwrap();
            let kappa = GaussianVariance::new(1, 1.0, &Cosine, t).unwrap().kappa();
            assert!(
                (w.value - kappa).abs() <= 1e-10 * kappa,
                "t = {t}: {w:?} vs {kappa}"
            );
        }
        let target = named::hard_mixture_diff_var();
        for t in [0.05, 0.5, 0.95] {
            let dsi = ScoreIdentity::Dsi.coefficients(&Cosine, t).unwrap();
            let tsi = ScoreIdentity::Tsi.coefficients(&Cosine, t).unwrap();
            let w = optimal_weight(&target, &Cosine, t, &dsi, &tsi, 1e-11)
                .unwrap()
                .value;
            let at = |w: f64| {
                let c = ScoreIdentity::Mixture { weight: w }
                    .coefficients(&Cosine, t)
                    .unwrap();
                expected_variances(&target, &Cosine, t, &[c], 1e-11).unwrap()[0].value
            };
            let (best, delta) = (at(w), 0.01f64.min(w).min(1.0 - w));
            assert!(
                best < at(w - delta) && best < at(w + delta),
                "t = {t}: w* = {w}"
            );
        }
    }

    /// For a Gaussian `Var(L|y) = V` at every `y` and `s²(n − 1)/V ~ χ²_{n−1}`: the spread of
    /// the "variance" column is `V/n · √(2/(n − 1))`; `(L̄ − m)² ~ (V/n) χ²₁`: spread `√2 V/n`.
    #[test]
    fn column_spreads_match_chi_square_for_a_gaussian() {
        let t = 0.3;
        let c = ScoreIdentity::Dsi.coefficients(&Cosine, t).unwrap();
        let m = expected_moments(&named::unit_gaussian(), &Cosine, t, &[c], 1e-11).unwrap()[0];
        let (v, n) = (m.variance.value, 100.0);
        let sd = m.column_sd(Column::Variance, 100).unwrap();
        assert!((sd - v / n * (2.0 / (n - 1.0)).sqrt()).abs() < 1e-12 * sd);
        let sd = m.column_sd(Column::Mse, 100).unwrap();
        assert!((sd - 2f64.sqrt() * v / n).abs() < 1e-12 * sd);
        assert!(m.column_sd(Column::Variance, 1).is_err());
        // V(y) is constant, so every point carries E[X²] alike and the effective points are
        // those of the mean: P/(1 + 2/(n − 1)) and P/3.
        let p = m.effective_points(Column::Variance, 1000, 100).unwrap();
        assert!((p - 1000.0 / (1.0 + 2.0 / 99.0)).abs() < 1e-9 * p, "{p}");
        let p = m.effective_points(Column::Mse, 1000, 100).unwrap();
        assert!((p - 1000.0 / 3.0).abs() < 1e-9 * p, "{p}");
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let c = ScoreIdentity::Dsi.coefficients(&Cosine, 0.5).unwrap();
        assert!(matches!(
            expected_variances(&named::eight_modes(), &Cosine, 0.5, &[c], 1e-11),
            Err(Error::DimMismatch { .. })
        ));
        assert!(expected_variances(&named::unit_gaussian(), &Cosine, 1.5, &[c], 1e-11).is_err());
        let bad = Coefficients { a: f64::NAN, ..c };
        assert!(expected_variances(&named::unit_gaussian(), &Cosine, 0.5, &[bad], 1e-11).is_err());
        let other_time = ScoreIdentity::Dsi.coefficients(&Cosine, 0.4).unwrap();
        assert!(
            expected_variances(&named::unit_gaussian(), &Cosine, 0.5, &[other_time], 1e-11)
                .is_err()
        );
        for rel_tol in [0.0, 1e-14, 0.5, f64::NAN] {
            assert!(
                expected_variances(&named::unit_gaussian(), &Cosine, 0.5, &[c], rel_tol).is_err()
            );
        }
    }
}
