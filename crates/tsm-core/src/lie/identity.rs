//! DSI and TSI on a Lie group (De Bortoli et al. 2024, §3.2, Props. 3.2–3.3), in body
//! coordinates at `y`.
//!
//! For `Y = X W` with `W ~ F` (density w.r.t. Haar measure) and `p(y | x) = F(x⁻¹y)`:
//!
//! ```text
//! ∇log p_Y(y) = E[ ∇_y log F(X⁻¹y) | Y = y ]                 (DSI: the noise's body score at w = x⁻¹y)
//!             = E[ dR_{X⁻¹y}(X) ∇log p_X(X) | Y = y ]          (TSI, Prop. 3.2)
//! ```
//!
//! In body coordinates the TSI integrand is `Ad_{y⁻¹x} ξ`, `ξ` the body score of `p_X` at `x`
//! (on `SO(3)`: `yᵀxξ`; on the torus: `ξ`). Derivation of DSI: along `y exp(sη)`,
//! `F(x⁻¹ y exp(sη)) = F(w exp(sη))`, so the body derivative in `y` is the body score of `F`
//! at `w`. Derivation of TSI: by left invariance of Haar measure,
//! `p_Y(y) = ∫ p_X(yu) F(u⁻¹) dμ(u)` (`x = yu`); differentiating along `y exp(sη)` and using
//! `y exp(sη) u = yu exp(s Ad_{u⁻¹} η)` gives `⟨Ad_{u⁻¹}η, ξ(yu)⟩ = ⟨η, Ad_u ξ(yu)⟩`
//! (`Ad` is orthogonal for a bi-invariant metric), and `u = y⁻¹x`.
//!
//! Prop. 3.3's loss regresses a body-frame network output `s_θ(y) ∈ ℝⁿ` on either target with
//! the Euclidean norm of the coordinates (the metric is the coordinates' dot product).

use super::{GroupNoise, LieGroup};

/// The DSI regression target at `(x, y)`: the body score of the noise at `w = x⁻¹y`.
pub fn dsi_target<G: LieGroup, N: GroupNoise<G>>(
    group: &G,
    noise: &N,
    x: &G::Element,
    y: &G::Element,
    out: &mut [f64],
) {
    let w = group.compose(&group.inverse(x), y);
    noise.body_score(&w, out);
}

/// The TSI regression target at `(x, y)` (Prop. 3.2): `Ad_{y⁻¹x} ξ`, `ξ = score_x` the body
/// score of `p_X` at `x`.
pub fn tsi_target<G: LieGroup>(
    group: &G,
    x: &G::Element,
    y: &G::Element,
    score_x: &[f64],
    out: &mut [f64],
) {
    group.transport(x, y, score_x, out);
}
