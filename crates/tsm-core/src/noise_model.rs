//! The target score identity for non-additive noise (De Bortoli et al. (2024), *Target Score
//! Matching*, §3.1, Prop. 3.1, eq. 10).
//!
//! A noise model is a conditional density written through a reparameterisation,
//!
//! ```text
//! p(y | x) = F(Φ(y, x)) · J(y, x),       Φ(y, ·) a diffeomorphism of ℝ^d, x = Φ⁻¹(y, z),
//! ```
//!
//! eq. 10 being the case `J ≡ 1`. With `z = Φ(y, x)` and every `y`-derivative taken at fixed `z`,
//! the score of `p_Y(y) = ∫ p_X(x) p(y | x) dx` is the posterior mean of the integrand
//!
//! ```text
//! T(x, y) = (∂_y Φ⁻¹(y, z))ᵀ ∇log p_X(x)  +  ∇_y log|det ∂_z Φ⁻¹(y, z)|  +  d/dy log J(y, Φ⁻¹(y, z))
//!           └──── transport (Jacobian transpose) ┘  └──── log-determinant gradient ─┘   └─ density factor ─┘
//! ```
//!
//! Derivation: the change of variables `x = Φ⁻¹(y, z)` gives
//! `p_Y(y) = ∫ p_X(Φ⁻¹(y, z)) |det ∂_zΦ⁻¹(y, z)| J(y, Φ⁻¹(y, z)) F(z) dz`, where `F(z)` no longer
//! depends on `y`; differentiating under the integral and dividing by `p_Y(y)` gives
//! `∇log p_Y(y) = E[T(X, y) | Y = y]` (Prop. 3.1 for `J ≡ 1`; the third term is what a factor
//! `J` adds). For `Φ(y, x) = y − α x` (additive noise, [`Additive`]) `∂_yΦ⁻¹ = I/α` and the
//! determinant does not depend on `y`: `T = α⁻¹ ∇log p_X(x)`, eq. 8 exactly.
//!
//! **The density factor matters.** Log-normal multiplicative noise `Y = X ⊙ exp(σW)`
//! ([`LogNormal`]) has `p(y | x) = N(log y − log x; 0, σ² I) / Π yᵢ`: it is *not* of the form
//! `F(Φ(y, x))` — the `1/Π yᵢ` is a factor `J(y) = Π yᵢ⁻¹`. Applying Prop. 3.1 to
//! `Φ = log y − log x` alone gives `(x/y) ⊙ ∇log p_X(x) + 1/y`, whose posterior mean is
//! `∇log p_Y(y) + 1/y`: a biased target. The factor's term `−1/y` cancels the log-determinant
//! gradient `+1/y`, and the unbiased integrand is `(x/y) ⊙ ∇log p_X(x)`.
//!
//! The [`NoiseModel`] trait asks for `Φ`, `Φ⁻¹`, the determinant and the factor (the
//! definitions, for [`finite_difference_terms`]) and for the three terms analytically at
//! `(y, x)` (the hot path); [`NoiseModel::tsi_integrand`] assembles `T`. Derivations and the
//! built-in models' formulas: `docs/bridges-and-noise.md`.
//!
//! ```
//! use tsm_core::noise_model::{LogNormal, NoiseModel};
//! let noise = LogNormal::new(1, 0.3)?;
//! let (x, y, score_x) = ([2.0], [2.5], [-0.7]);
//! let mut t = [0.0];
//! noise.tsi_integrand(&x, &y, &score_x, &mut t);
//! assert!((t[0] - (2.0 / 2.5) * -0.7).abs() < 1e-15);   // (x/y) ∇log p_X(x)
//! assert!(noise.check_noised(&[-1.0]).is_err());          // y must be positive
//! # Ok::<(), tsm_core::Error>(())
//! ```
//!
//! # References
//! [^1]: De Bortoli et al. (2024), *Target Score Matching*, §3.1, Prop. 3.1, eqs. 8, 10.

use rand::Rng;

use crate::error::positive;
use crate::rng::normal;
use crate::target::{check_dim, Dim};
use crate::{Error, Result};

/// A noise model `p(y | x) = F(Φ(y, x)) · J(y, x)` on `ℝ^d` (see the [module docs](self)).
///
/// The slice methods take lengths and the support on trust (checked in debug builds at most):
/// validate points once with [`NoiseModel::check_clean`] and [`NoiseModel::check_noised`].
pub trait NoiseModel: Dim {
    /// A short name (`additive`, `warped`, `log_normal`).
    fn name(&self) -> &'static str;

    /// `z = Φ(y, x)`.
    fn phi(&self, y: &[f64], x: &[f64], z: &mut [f64]);

    /// `x = Φ⁻¹(y, z)`, the inverse of `Φ(y, ·)`.
    fn phi_inv(&self, y: &[f64], z: &[f64], x: &mut [f64]);

    /// `log|det ∂_z Φ⁻¹(y, z)|`.
    fn log_abs_det_phi_inv(&self, y: &[f64], z: &[f64]) -> f64;

    /// `log J(y, x)`, the factor of `p(y | x)` outside `F(Φ(y, x))`; `0` by default (eq. 10).
    fn log_density_factor(&self, _y: &[f64], _x: &[f64]) -> f64 {
        0.0
    }

    /// The transport term: writes `(∂_y Φ⁻¹(y, z))ᵀ v` at `z = Φ(y, x)` into `out`.
    fn transport(&self, y: &[f64], x: &[f64], v: &[f64], out: &mut [f64]);

    /// Adds `∇_y log|det ∂_z Φ⁻¹(y, z)|` (at fixed `z = Φ(y, x)`) to `out`.
    fn add_grad_log_det(&self, y: &[f64], x: &[f64], out: &mut [f64]);

    /// Adds `d/dy log J(y, Φ⁻¹(y, z))` (at fixed `z = Φ(y, x)`) to `out`; nothing by default.
    fn add_grad_density_factor(&self, _y: &[f64], _x: &[f64], _out: &mut [f64]) {}

    /// The target score identity's integrand `T(x, y)` of Prop. 3.1 (with the density
    /// factor's term), given `score_x = ∇log p_X(x)`: its mean over `p(x | y)` is
    /// `∇log p_Y(y)`.
    fn tsi_integrand(&self, x: &[f64], y: &[f64], score_x: &[f64], out: &mut [f64]) {
        self.transport(y, x, score_x, out);
        self.add_grad_log_det(y, x, out);
        self.add_grad_density_factor(y, x, out);
    }

    /// The denoising integrand `∇_y log p(y | x)` (its posterior mean is also `∇log p_Y(y)`).
    fn dsi_integrand(&self, x: &[f64], y: &[f64], out: &mut [f64]);

    /// Writes one draw `y ~ p(y | x)` into `y`.
    fn sample_noised<R: Rng + ?Sized>(&self, rng: &mut R, x: &[f64], y: &mut [f64]);

    /// Checks a clean point `x`: its length, finiteness, and the model's support.
    ///
    /// # Errors
    /// [`Error::DimMismatch`]; [`Error::NonFinite`]; the model's own (e.g.
    /// [`Error::OutOfRange`] naming `x` for a non-positive entry of a log-normal model).
    fn check_clean(&self, x: &[f64]) -> Result<()> {
        check_point(self.dim(), x, "x", "NoiseModel::check_clean")
    }

    /// Checks a noised point `y` as [`NoiseModel::check_clean`] checks `x`.
    ///
    /// # Errors
    /// As [`NoiseModel::check_clean`], naming `y`.
    fn check_noised(&self, y: &[f64]) -> Result<()> {
        check_point(self.dim(), y, "y", "NoiseModel::check_noised")
    }
}

fn check_point(dim: usize, p: &[f64], _name: &'static str, op: &'static str) -> Result<()> {
    check_dim(dim, p.len(), op)?;
    match p.iter().find(|v| !v.is_finite()) {
        Some(&value) => Err(Error::NonFinite { op, value }),
        None => Ok(()),
    }
}

fn check_positive_point(dim: usize, p: &[f64], name: &'static str, op: &'static str) -> Result<()> {
    check_point(dim, p, name, op)?;
    match p.iter().find(|&&v| v <= 0.0) {
        Some(&value) => Err(Error::OutOfRange {
            name,
            value,
            allowed: "(0, ∞) (the log-normal model's support)",
        }),
        None => Ok(()),
    }
}

fn check_dimension(dim: usize) -> Result<usize> {
    if dim == 0 {
        Err(Error::NonPositive {
            name: "dim",
            value: 0.0,
        })
    } else {
        Ok(dim)
    }
}

/// Additive noise `Y = α X + σ W`, `W ~ N(0, I)`: `Φ(y, x) = y − α x`, `F = N(0, σ² I)`.
///
/// `Φ⁻¹(y, z) = (y − z)/α`, so `∂_yΦ⁻¹ = I/α` and `log|det ∂_zΦ⁻¹| = −d log α` does not depend
/// on `y`: the integrand is `α⁻¹ ∇log p_X(x)`, eq. 8, computed as
/// [`ScoreIdentity::Tsi`](crate::identity::ScoreIdentity::Tsi)'s coefficients compute it (the
/// same bits).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Additive {
    dim: usize,
    alpha: f64,
    sigma: f64,
}

impl Additive {
    /// The model in dimension `dim` with scale `α` and noise standard deviation `σ`.
    ///
    /// # Errors
    /// [`Error::NonPositive`] naming `dim`, `alpha` or `sigma` when it is not positive.
    pub fn new(dim: usize, alpha: f64, sigma: f64) -> Result<Self> {
        Ok(Self {
            dim: check_dimension(dim)?,
            alpha: positive("alpha", alpha)?,
            sigma: positive("sigma", sigma)?,
        })
    }

    /// The model at time `t` of a schedule: `α = α_t`, `σ = σ_t`.
    ///
    /// # Errors
    /// [`Error::TimeOutOfRange`]; as [`Additive::new`] where `α_t` or `σ_t` vanishes.
    pub fn at(
        dim: usize,
        schedule: &(impl crate::schedule::Schedule + ?Sized),
        t: f64,
    ) -> Result<Self> {
        crate::schedule::check_time(t)?;
        Self::new(dim, schedule.alpha(t), schedule.sigma(t))
    }

    /// `α`.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// `σ`.
    pub fn sigma(&self) -> f64 {
        self.sigma
    }
}

impl Dim for Additive {
    fn dim(&self) -> usize {
        self.dim
    }
}

impl NoiseModel for Additive {
    fn name(&self) -> &'static str {
        "additive"
    }
    fn phi(&self, y: &[f64], x: &[f64], z: &mut [f64]) {
        for ((z, &y), &x) in z.iter_mut().zip(y).zip(x) {
            *z = y - self.alpha * x;
        }
    }
    fn phi_inv(&self, y: &[f64], z: &[f64], x: &mut [f64]) {
        for ((x, &y), &z) in x.iter_mut().zip(y).zip(z) {
            *x = (y - z) / self.alpha;
        }
    }
    fn log_abs_det_phi_inv(&self, _y: &[f64], _z: &[f64]) -> f64 {
        -(self.dim as f64) * self.alpha.ln()
    }
    fn transport(&self, _y: &[f64], _x: &[f64], v: &[f64], out: &mut [f64]) {
        // `0·(α x − y) + α⁻¹ v`, as `Coefficients::apply` of eq. 8 evaluates it.
        let b = 1.0 / self.alpha;
        for (o, &v) in out.iter_mut().zip(v) {
            *o = b * v;
        }
    }
    fn add_grad_log_det(&self, _y: &[f64], _x: &[f64], _out: &mut [f64]) {}
    fn dsi_integrand(&self, x: &[f64], y: &[f64], out: &mut [f64]) {
        let inv_var = 1.0 / (self.sigma * self.sigma);
        for ((o, &x), &y) in out.iter_mut().zip(x).zip(y) {
            *o = -(y - self.alpha * x) * inv_var;
        }
    }
    fn sample_noised<R: Rng + ?Sized>(&self, rng: &mut R, x: &[f64], y: &mut [f64]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = self.alpha * x + self.sigma * normal::sample(rng);
        }
    }
}

/// A warped additive model `Y = m(X) + s W`, `m(x) = x + b tanh x` elementwise (`b > −1`, so
/// that `m′ = 1 + b sech² x > 0`), `W ~ N(0, I)`: `Φ(y, x) = y − m(x)`, `F = N(0, s² I)`.
///
/// `Φ⁻¹(y, z) = m⁻¹(y − z)` (safeguarded Newton, [`Warped::warp_inverse`]), so with
/// `x = Φ⁻¹(y, z)`: `∂_yΦ⁻¹ = diag(1/m′(x))`, `log|det ∂_zΦ⁻¹| = −Σ log m′(xᵢ)`, whose
/// `y`-gradient at fixed `z` is `−m″(xᵢ)/m′(xᵢ)² = 2b sech²xᵢ tanh xᵢ / m′(xᵢ)²`. The integrand is
/// `J_m⁻ᵀ [∇log p_X(x) − ∇_x log|det J_m(x)|]`, `J_m = diag m′`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Warped {
    dim: usize,
    b: f64,
    noise_sd: f64,
}

impl Warped {
    /// The model in dimension `dim` with warp strength `b > −1` and noise standard deviation
    /// `s > 0`.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] naming `b` for `b ≤ −1` or non-finite; [`Error::NonPositive`]
    /// naming `dim` or `noise_sd`.
    pub fn new(dim: usize, b: f64, noise_sd: f64) -> Result<Self> {
        if !(b.is_finite() && b > -1.0) {
            return Err(Error::OutOfRange {
                name: "b",
                value: b,
                allowed: "(−1, ∞)",
            });
        }
        Ok(Self {
            dim: check_dimension(dim)?,
            b,
            noise_sd: positive("noise_sd", noise_sd)?,
        })
    }

    /// The warp strength `b`.
    pub fn b(&self) -> f64 {
        self.b
    }

    /// The noise standard deviation `s`.
    pub fn noise_sd(&self) -> f64 {
        self.noise_sd
    }

    /// `m(x) = x + b tanh x`.
    #[inline]
    pub fn warp(&self, x: f64) -> f64 {
        x + self.b * x.tanh()
    }

    /// `m′(x) = 1 + b sech² x` (positive for `b > −1`).
    #[inline]
    pub fn warp_derivative(&self, x: f64) -> f64 {
        1.0 + self.b * sech_sq(x)
    }

    /// `m⁻¹(u)`: Newton's method safeguarded by bisection on `[u − |b|, u + |b|]` (the root
    /// lies there since `|m(x) − x| < |b|`), to a relative step of a few ulps.
    pub fn warp_inverse(&self, u: f64) -> f64 {
        warp_inverse(self.b, u)
    }
}

/// `sech² x = 1/cosh² x` (0 past `cosh` overflow, which is right).
#[inline]
fn sech_sq(x: f64) -> f64 {
    let c = x.cosh();
    1.0 / (c * c)
}

fn warp_inverse(b: f64, u: f64) -> f64 {
    if b == 0.0 || !u.is_finite() {
        return u;
    }
    let (mut lo, mut hi) = (u - b.abs(), u + b.abs());
    let mut x = u - b * u.tanh();
    if !(x > lo && x < hi) {
        x = 0.5 * (lo + hi);
    }
    for _ in 0..200 {
        let f = x + b * x.tanh() - u;
        if f == 0.0 {
            return x;
        }
        // m is increasing: the root is below x when m(x) > u.
        if f > 0.0 {
            hi = x;
        } else {
            lo = x;
        }
        let mut next = x - f / (1.0 + b * sech_sq(x));
        if !(next > lo && next < hi) {
            next = 0.5 * (lo + hi);
        }
        if (next - x).abs() <= 4.0 * f64::EPSILON * x.abs().max(1.0) || hi - lo <= 0.0 {
            return next;
        }
        x = next;
    }
    x
}

impl Dim for Warped {
    fn dim(&self) -> usize {
        self.dim
    }
}

impl NoiseModel for Warped {
    fn name(&self) -> &'static str {
        "warped"
    }
    fn phi(&self, y: &[f64], x: &[f64], z: &mut [f64]) {
        for ((z, &y), &x) in z.iter_mut().zip(y).zip(x) {
            *z = y - self.warp(x);
        }
    }
    fn phi_inv(&self, y: &[f64], z: &[f64], x: &mut [f64]) {
        for ((x, &y), &z) in x.iter_mut().zip(y).zip(z) {
            *x = self.warp_inverse(y - z);
        }
    }
    fn log_abs_det_phi_inv(&self, y: &[f64], z: &[f64]) -> f64 {
        y.iter()
            .zip(z)
            .map(|(&y, &z)| -self.warp_derivative(self.warp_inverse(y - z)).ln())
            .sum()
    }
    fn transport(&self, _y: &[f64], x: &[f64], v: &[f64], out: &mut [f64]) {
        for ((o, &x), &v) in out.iter_mut().zip(x).zip(v) {
            *o = v / self.warp_derivative(x);
        }
    }
    fn add_grad_log_det(&self, _y: &[f64], x: &[f64], out: &mut [f64]) {
        for (o, &x) in out.iter_mut().zip(x) {
            let m1 = self.warp_derivative(x);
            *o += 2.0 * self.b * sech_sq(x) * x.tanh() / (m1 * m1);
        }
    }
    fn dsi_integrand(&self, x: &[f64], y: &[f64], out: &mut [f64]) {
        let inv_var = 1.0 / (self.noise_sd * self.noise_sd);
        for ((o, &x), &y) in out.iter_mut().zip(x).zip(y) {
            *o = -(y - self.warp(x)) * inv_var;
        }
    }
    fn sample_noised<R: Rng + ?Sized>(&self, rng: &mut R, x: &[f64], y: &mut [f64]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = self.warp(x) + self.noise_sd * normal::sample(rng);
        }
    }
}

/// Multiplicative log-normal noise `Y = X ⊙ exp(σ W)`, `W ~ N(0, I)`, on `x > 0`:
/// `p(y | x) = N(log y − log x; 0, σ² I) / Π yᵢ`, i.e. `Φ(y, x) = log y − log x`,
/// `F = N(0, σ² I)` and the density factor `J(y) = Π yᵢ⁻¹`.
///
/// With `x = Φ⁻¹(y, z) = y ⊙ e⁻ᶻ`: transport `(x/y) ⊙ v`; `log|det ∂_zΦ⁻¹| = Σ log xᵢ`, whose
/// `y`-gradient at fixed `z` is `1/y`; the factor's `d/dy log J = −1/y` cancels it, and
/// [`NoiseModel::tsi_integrand`] is `(x/y) ⊙ ∇log p_X(x)` (computed so, without the
/// cancellation). Dropping the factor — Prop. 3.1 applied mechanically — adds `1/y` to the
/// mean (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogNormal {
    dim: usize,
    sigma: f64,
}

impl LogNormal {
    /// The model in dimension `dim` with log-scale standard deviation `σ > 0`.
    ///
    /// # Errors
    /// [`Error::NonPositive`] naming `dim` or `sigma`.
    pub fn new(dim: usize, sigma: f64) -> Result<Self> {
        Ok(Self {
            dim: check_dimension(dim)?,
            sigma: positive("sigma", sigma)?,
        })
    }

    /// `σ`.
    pub fn sigma(&self) -> f64 {
        self.sigma
    }
}

impl Dim for LogNormal {
    fn dim(&self) -> usize {
        self.dim
    }
}

impl NoiseModel for LogNormal {
    fn name(&self) -> &'static str {
        "log_normal"
    }
    fn phi(&self, y: &[f64], x: &[f64], z: &mut [f64]) {
        for ((z, &y), &x) in z.iter_mut().zip(y).zip(x) {
            *z = y.ln() - x.ln();
        }
    }
    fn phi_inv(&self, y: &[f64], z: &[f64], x: &mut [f64]) {
        for ((x, &y), &z) in x.iter_mut().zip(y).zip(z) {
            *x = y * (-z).exp();
        }
    }
    fn log_abs_det_phi_inv(&self, y: &[f64], z: &[f64]) -> f64 {
        // ∂_zΦ⁻¹ = −diag(y e⁻ᶻ).
        y.iter().zip(z).map(|(&y, &z)| y.ln() - z).sum()
    }
    fn log_density_factor(&self, y: &[f64], _x: &[f64]) -> f64 {
        -y.iter().map(|y| y.ln()).sum::<f64>()
    }
    fn transport(&self, y: &[f64], x: &[f64], v: &[f64], out: &mut [f64]) {
        for (((o, &y), &x), &v) in out.iter_mut().zip(y).zip(x).zip(v) {
            *o = x / y * v;
        }
    }
    fn add_grad_log_det(&self, y: &[f64], _x: &[f64], out: &mut [f64]) {
        for (o, &y) in out.iter_mut().zip(y) {
            *o += 1.0 / y;
        }
    }
    fn add_grad_density_factor(&self, y: &[f64], _x: &[f64], out: &mut [f64]) {
        for (o, &y) in out.iter_mut().zip(y) {
            *o -= 1.0 / y;
        }
    }
    /// `(x/y) ⊙ ∇log p_X(x)`: the three terms with `+1/y − 1/y` cancelled exactly.
    fn tsi_integrand(&self, x: &[f64], y: &[f64], score_x: &[f64], out: &mut [f64]) {
        self.transport(y, x, score_x, out);
    }
    fn dsi_integrand(&self, x: &[f64], y: &[f64], out: &mut [f64]) {
        // ∇_y [−(log y − log x)²/(2σ²) − log y].
        let inv_var = 1.0 / (self.sigma * self.sigma);
        for ((o, &x), &y) in out.iter_mut().zip(x).zip(y) {
            *o = -((y.ln() - x.ln()) * inv_var + 1.0) / y;
        }
    }
    fn sample_noised<R: Rng + ?Sized>(&self, rng: &mut R, x: &[f64], y: &mut [f64]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = x * (self.sigma * normal::sample(rng)).exp();
        }
    }
    fn check_clean(&self, x: &[f64]) -> Result<()> {
        check_positive_point(self.dim, x, "x", "LogNormal::check_clean")
    }
    fn check_noised(&self, y: &[f64]) -> Result<()> {
        check_positive_point(self.dim, y, "y", "LogNormal::check_noised")
    }
}

/// The three terms of [`NoiseModel::tsi_integrand`] by central differences of the model's
/// definitions (`Φ`, `Φ⁻¹`, `log|det ∂_zΦ⁻¹|`, `log J`), for checking an implementation.
#[derive(Debug, Clone, PartialEq)]
pub struct FiniteDifferenceTerms {
    /// `(∂_y Φ⁻¹(y, z))ᵀ v` at `z = Φ(y, x)`.
    pub transport: Vec<f64>,
    /// `∇_y log|det ∂_z Φ⁻¹(y, z)|` at fixed `z`.
    pub grad_log_det: Vec<f64>,
    /// `d/dy log J(y, Φ⁻¹(y, z))` at fixed `z`.
    pub grad_density_factor: Vec<f64>,
}

/// Central differences with step `h` of the terms of Prop. 3.1's integrand at `(x, y)`,
/// transporting `v`: column `j` moves `y` to `y ± h eⱼ` at the fixed `z = Φ(y, x)`.
///
/// # Errors
/// As [`NoiseModel::check_clean`] / [`NoiseModel::check_noised`]; [`Error::DimMismatch`] for
/// `v`; [`Error::NonPositive`] for `h`.
pub fn finite_difference_terms<N: NoiseModel + ?Sized>(
    model: &N,
    x: &[f64],
    y: &[f64],
    v: &[f64],
    h: f64,
) -> Result<FiniteDifferenceTerms> {
    model.check_clean(x)?;
    model.check_noised(y)?;
    check_dim(model.dim(), v.len(), "finite_difference_terms (v)")?;
    positive("h", h)?;
    let d = model.dim();
    let mut z = vec![0.0; d];
    model.phi(y, x, &mut z);
    let (mut up, mut down) = (y.to_vec(), y.to_vec());
    let (mut x_up, mut x_down) = (vec![0.0; d], vec![0.0; d]);
    let mut terms = FiniteDifferenceTerms {
        transport: vec![0.0; d],
        grad_log_det: vec![0.0; d],
        grad_density_factor: vec![0.0; d],
    };
    for j in 0..d {
        up[j] = y[j] + h;
        down[j] = y[j] - h;
        model.phi_inv(&up, &z, &mut x_up);
        model.phi_inv(&down, &z, &mut x_down);
        terms.transport[j] = (0..d)
            .map(|i| v[i] * (x_up[i] - x_down[i]) / (2.0 * h))
            .sum();
        terms.grad_log_det[j] =
            (model.log_abs_det_phi_inv(&up, &z) - model.log_abs_det_phi_inv(&down, &z)) / (2.0 * h);
        terms.grad_density_factor[j] = (model.log_density_factor(&up, &x_up)
            - model.log_density_factor(&down, &x_down))
            / (2.0 * h);
        up[j] = y[j];
        down[j] = y[j];
    }
    Ok(terms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::ScoreIdentity;
    use crate::schedule::{Cosine, Schedule};

    /// Central differences with h = 1e-5 on O(1) quantities: truncation O(h²) ~ 1e-10 times the
    /// third derivative, rounding O(ε/h) ~ 1e-11; 1e-7 (relative to max(1, |value|)) leaves
    /// room for both and still fails on any wrong term (all are O(0.1) or larger here).
    const FD_STEP: f64 = 1e-5;
    const FD_TOL: f64 = 1e-7;

    fn analytic_terms<N: NoiseModel>(m: &N, x: &[f64], y: &[f64], v: &[f64]) -> [Vec<f64>; 3] {
        let d = x.len();
        let mut transport = vec![0.0; d];
        m.transport(y, x, v, &mut transport);
        let mut det = vec![0.0; d];
        m.add_grad_log_det(y, x, &mut det);
        let mut factor = vec![0.0; d];
        m.add_grad_density_factor(y, x, &mut factor);
        [transport, det, factor]
    }

    fn assert_close(a: &[f64], b: &[f64], what: &str) {
        for (&a, &b) in a.iter().zip(b) {
            assert!(
                (a - b).abs() <= FD_TOL * a.abs().max(1.0),
                "{what}: analytic {a} vs finite differences {b}"
            );
        }
    }

    fn check_model<N: NoiseModel>(m: &N, points: &[(Vec<f64>, Vec<f64>)]) {
        for (x, y) in points {
            let v: Vec<f64> = (0..x.len()).map(|j| 0.7 - 0.9 * j as f64).collect();
            let fd = finite_difference_terms(m, x, y, &v, FD_STEP).unwrap();
            let [transport, det, factor] = analytic_terms(m, x, y, &v);
            assert_close(&transport, &fd.transport, m.name());
            assert_close(&det, &fd.grad_log_det, m.name());
            assert_close(&factor, &fd.grad_density_factor, m.name());
            // Φ⁻¹ inverts Φ.
            let mut z = vec![0.0; x.len()];
            let mut back = vec![0.0; x.len()];
            m.phi(y, x, &mut z);
            m.phi_inv(y, &z, &mut back);
            for (a, b) in back.iter().zip(x) {
                assert!(
                    (a - b).abs() < 1e-12 * b.abs().max(1.0),
                    "{}: {a} vs {b}",
                    m.name()
                );
            }
        }
    }

    fn points() -> Vec<(Vec<f64>, Vec<f64>)> {
        vec![
            (vec![0.3, -1.2], vec![0.8, -0.4]),
            (vec![2.1, 0.05], vec![1.5, 2.6]),
            (vec![0.6, 1.7], vec![0.2, 0.9]),
        ]
    }

    /// Points in the log-normal model's support `(0, ∞)²`.
    fn positive_points() -> Vec<(Vec<f64>, Vec<f64>)> {
        vec![
            (vec![0.3, 1.2], vec![0.8, 0.4]),
            (vec![2.1, 0.05], vec![1.5, 2.6]),
            (vec![0.6, 1.7], vec![0.2, 0.9]),
        ]
    }

    #[test]
    fn analytic_terms_match_finite_differences() {
        check_model(&Additive::new(2, 0.6, 0.8).unwrap(), &points());
        for b in [-0.8, 0.5, 2.0] {
            check_model(&Warped::new(2, b, 0.3).unwrap(), &points());
        }
        check_model(&LogNormal::new(2, 0.4).unwrap(), &positive_points());
    }

    #[test]
    fn log_normal_integrand_is_the_sum_of_its_terms_and_the_mechanical_one_is_off_by_one_over_y() {
        let m = LogNormal::new(2, 0.4).unwrap();
        for (x, y) in positive_points() {
            let v = [0.3, -1.1];
            let [transport, det, factor] = analytic_terms(&m, &x, &y, &v);
            let mut t = [0.0; 2];
            m.tsi_integrand(&x, &y, &v, &mut t);
            for j in 0..2 {
                let sum = transport[j] + det[j] + factor[j];
                assert!((t[j] - sum).abs() < 1e-14 * (1.0 + 1.0 / y[j]));
                // Prop. 3.1 without the density factor: +1/y.
                assert!(((transport[j] + det[j]) - (t[j] + 1.0 / y[j])).abs() < 1e-14 / y[j]);
            }
        }
    }

    #[test]
    fn additive_reduces_to_eq_8_bit_for_bit() {
        let s = Cosine;
        for t in [0.05, 0.3, 0.77, 0.99] {
            let m = Additive::at(2, &s, t).unwrap();
            let c = ScoreIdentity::Tsi.coefficients(&s, t).unwrap();
            for (x, y) in points() {
                let g = [1.3 * x[0] - 0.2, -0.7 * x[1]];
                let mut ours = [0.0; 2];
                m.tsi_integrand(&x, &y, &g, &mut ours);
                let mut eq8 = [0.0; 2];
                c.apply_into(&x, &y, &g, &mut eq8);
                assert_eq!(ours, eq8, "t = {t}");
            }
            assert_eq!(m.alpha(), s.alpha(t));
        }
    }

    #[test]
    fn warp_inverse_inverts_the_warp_across_scales() {
        for b in [-0.999, -0.5, 0.0, 0.3, 5.0, 100.0] {
            let m = Warped::new(1, b, 1.0).unwrap();
            for x in [-40.0, -3.0, -0.1, 0.0, 1e-9, 0.7, 12.0] {
                let back = m.warp_inverse(m.warp(x));
                assert!(
                    (back - x).abs() <= 1e-12 * x.abs().max(1.0),
                    "b = {b}: {back} vs {x}"
                );
            }
        }
    }

    #[test]
    fn bad_input_is_a_typed_error_naming_the_value() {
        assert!(matches!(
            Warped::new(1, -1.0, 0.1),
            Err(Error::OutOfRange { name: "b", .. })
        ));
        assert!(matches!(
            Warped::new(1, 0.5, 0.0),
            Err(Error::NonPositive {
                name: "noise_sd",
                ..
            })
        ));
        assert!(matches!(
            LogNormal::new(1, -0.3),
            Err(Error::NonPositive { name: "sigma", .. })
        ));
        assert!(matches!(
            Additive::new(0, 1.0, 1.0),
            Err(Error::NonPositive { name: "dim", .. })
        ));
        assert!(matches!(
            Additive::at(1, &Cosine, 0.0),
            Err(Error::NonPositive { name: "sigma", .. })
        ));
        let m = LogNormal::new(2, 0.3).unwrap();
        let err = m.check_noised(&[1.0, -2.5]).unwrap_err();
        assert!(matches!(err, Error::OutOfRange { name: "y", .. }), "{err}");
        assert!(err.to_string().contains("-2.5"), "{err}");
        assert!(matches!(
            m.check_clean(&[0.0, 1.0]),
            Err(Error::OutOfRange { name: "x", .. })
        ));
        assert!(matches!(
            m.check_clean(&[1.0]),
            Err(Error::DimMismatch { .. })
        ));
        assert!(matches!(
            Additive::new(1, 1.0, 1.0)
                .unwrap()
                .check_noised(&[f64::NAN]),
            Err(Error::NonFinite { .. })
        ));
    }
}
