//! Lie groups for Target Score Matching beyond `ℝ^d` (De Bortoli et al. 2024, §3.2,
//! Props. 3.2–3.3): the torus `𝕋^d` and the rotation group `SO(3)`, Brownian motion on them
//! (the wrapped normal and IGSO(3)), and the two score identities, DSI and TSI, as regression
//! targets in one named frame.
//!
//! # Conventions
//! - **Noise on the right**: `Y = X W`, `W` the heat kernel of `½Δ` at time `t = σ²`
//!   (on `ℝ`: `N(0, σ²)`), so `p(y | x) = F(x⁻¹ y)`.
//! - **Metric**: bi-invariant; on `SO(3)` `⟨A, B⟩ = ½ tr(AᵀB)`, for which
//!   `hat: ℝ³ → so(3)` is an isometry and the rotation angle is the geodesic distance to `I`.
//! - **Frame: body (left-trivialised) coordinates.** A tangent vector at `g` is given by its
//!   coordinates `v ∈ ℝⁿ` in the left-invariant frame: `v` stands for `dL_g(hat v) = g·hat(v)`,
//!   the velocity at `s = 0` of `s ↦ g exp(s v)`. The Riemannian gradient of `f` at `g` in this
//!   frame is the `ξ` with `⟨ξ, v⟩ = d/ds f(g exp(s v))|₀` for every `v`. Spatial
//!   (right-trivialised) coordinates are `Ad_g v` ([`LieGroup::body_to_spatial`]). Every
//!   tangent vector, score and regression target in this module is in body coordinates.
//! - **Transport of Prop. 3.2**: `dR_{x⁻¹y}(x)` maps `T_x G` to `T_y G`; in body coordinates it
//!   is `ξ ↦ Ad_{y⁻¹x} ξ` (on `SO(3)`: `yᵀ x ξ`; on the torus: the identity), because
//!   `x exp(sξ) x⁻¹y = y exp(s Ad_{y⁻¹x} ξ)`.
//!
//! # Modules
//! - [`torus`]: `𝕋^d = [−π, π)^d` ([`torus::Torus`]) and the wrapped normal
//!   ([`torus::WrappedNormal`]);
//! - [`so3`]: rotations ([`so3::So3`], [`so3::Rotation`]) with a log that is stable near `π`;
//! - [`igso3`]: IGSO(3), the heat kernel on `SO(3)`, accurate at every variance (image form
//!   for `ε ≤ 1`, character series for `ε > 1`);
//! - [`igso3_draw`]: exact IGSO(3) draws by rejection with an `O(1)` set-up (a new time per
//!   draw, as in training);
//! - [`identity`]: DSI and TSI on a group (Props. 3.2, 3.3);
//! - [`sampler`]: the reverse-time geodesic random walk from the Haar measure (De Bortoli et
//!   al. 2022, Alg. 1) over a [`sampler::GroupScore`].
//!
//! # References
//! [^1]: De Bortoli, Hutchinson, Wirnsberger, Doucet (2024), *Target Score Matching*, §3.2,
//!       Props. 3.2–3.3.

mod error;
pub mod identity;
pub mod igso3;
pub mod igso3_draw;
pub mod sampler;
pub mod so3;
pub mod torus;

use rand::Rng;

pub use error::LieError;

/// A Lie group with a bi-invariant metric, its tangent vectors in **body coordinates** (see
/// the [module docs](self)).
pub trait LieGroup {
    /// A group element.
    type Element: Clone + std::fmt::Debug;

    /// The dimension `n` of the group (the length of a tangent vector).
    fn tangent_dim(&self) -> usize;

    /// The identity element `e`.
    fn identity(&self) -> Self::Element;

    /// The product `a b`.
    fn compose(&self, a: &Self::Element, b: &Self::Element) -> Self::Element;

    /// The inverse `a⁻¹`.
    fn inverse(&self, a: &Self::Element) -> Self::Element;

    /// The exponential map `exp(hat v)` of `v ∈ ℝⁿ`.
    ///
    /// # Errors
    /// [`LieError::DimMismatch`] if `v.len() != n`, [`LieError::NonFinite`] for a non-finite
    /// coordinate.
    fn exp(&self, v: &[f64]) -> Result<Self::Element, LieError>;

    /// The principal logarithm: writes the `v` with `exp(v) = g` and the smallest norm into
    /// `out` (`out.len() == n`; where two are smallest, e.g. rotations by `π`, either).
    fn log(&self, g: &Self::Element, out: &mut [f64]);

    /// The adjoint action `Ad_g v` (`g hat(v) g⁻¹ = hat(Ad_g v)`); it maps body coordinates at
    /// `g` to spatial ones.
    fn adjoint(&self, g: &Self::Element, v: &[f64], out: &mut [f64]);

    /// Body coordinates `v` at `g` to spatial (right-trivialised) coordinates `Ad_g v`.
    fn body_to_spatial(&self, g: &Self::Element, v: &[f64], out: &mut [f64]) {
        self.adjoint(g, v, out);
    }

    /// Checks that `g` belongs to this group (e.g. a torus point with `d` angles); the
    /// default accepts every value of the element type.
    ///
    /// # Errors
    /// [`LieError::DimMismatch`] for an element of another dimension.
    fn check_element(&self, g: &Self::Element) -> Result<(), LieError> {
        let _ = g;
        Ok(())
    }

    /// The transport `dR_{x⁻¹y}(x): T_x G → T_y G` of Prop. 3.2 (De Bortoli et al. 2024), in
    /// body coordinates: `ξ` at `x` ↦ `Ad_{y⁻¹x} ξ` at `y`.
    fn transport(&self, x: &Self::Element, y: &Self::Element, xi: &[f64], out: &mut [f64]) {
        let g = self.compose(&self.inverse(y), x);
        self.adjoint(&g, xi, out);
    }
}

/// Brownian motion on a group at a fixed time: the law of the noise `W` in `Y = X W`.
pub trait GroupNoise<G: LieGroup> {
    /// `log F(w)`, the log density of `W` at `w` with respect to the group's reference measure
    /// (the torus: Lebesgue measure on `[−π, π)^d`; `SO(3)`: the normalised Haar measure).
    fn log_density(&self, w: &G::Element) -> f64;

    /// The body-frame score `∇log F(w)` (the `ξ` with `⟨ξ, v⟩ = d/ds log F(w exp(sv))|₀`).
    fn body_score(&self, w: &G::Element, out: &mut [f64]);

    /// One draw `w ~ F`.
    fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> G::Element;
}

/// Checks a slice length for [`LieError::DimMismatch`].
pub(crate) fn check_len(expected: usize, got: usize, op: &'static str) -> Result<(), LieError> {
    if expected == got {
        Ok(())
    } else {
        Err(LieError::DimMismatch { expected, got, op })
    }
}

/// Checks that every value is finite, for [`LieError::NonFinite`].
pub(crate) fn check_finite(values: &[f64], what: &'static str) -> Result<(), LieError> {
    match values.iter().find(|v| !v.is_finite()) {
        Some(&value) => Err(LieError::NonFinite { what, value }),
        None => Ok(()),
    }
}

/// Checks that a variance (or heat-kernel time) is finite and positive.
pub(crate) fn check_positive(name: &'static str, value: f64) -> Result<f64, LieError> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(LieError::NonPositive { name, value })
    }
}
