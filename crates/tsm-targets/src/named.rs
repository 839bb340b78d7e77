//! The targets of the papers' figures, by name (defined in docs/conventions.md).
//!
//! The four 1-D targets of De Bortoli et al. (2024), Figs. 1–4, all have total variance 1:
//!
//! | name | weights | means | stds |
//! |---|---|---|---|
//! | `unit_gaussian` | 1 | 0 | 1 |
//! | `easy_mixture` | ½, ½ | ±0.6 | 0.8 |
//! | `hard_mixture_same_var` | ½, ½ | ±0.98 | √(1 − 0.98²) |
//! | `hard_mixture_diff_var` | ½, ½ | −m, +m | 0.1, 0.25 |
//!
//! with `m = √(1 − (0.1² + 0.25²)/2)`; in the last, the component at `−m` has std 0.1 (the
//! paper does not say which; the figure is symmetric in this choice up to reflection).
//! `eight_modes` is Fig. 5's 2-D target: 8 modes equally spaced on a circle of radius 4, std
//! 0.5, equal weights.

use crate::{Error, GaussianMixture};

/// The 1-D targets of Figs. 1–4, in the paper's order.
pub const FIGURE_TARGETS: [&str; 4] = [
    "unit_gaussian",
    "easy_mixture",
    "hard_mixture_same_var",
    "hard_mixture_diff_var",
];

/// Every name [`by_name`] knows.
pub const NAMES: [&str; 5] = [
    "unit_gaussian",
    "easy_mixture",
    "hard_mixture_same_var",
    "hard_mixture_diff_var",
    "eight_modes",
];

/// Looks a named target up.
///
/// # Errors
/// [`Error::UnknownTarget`] listing [`NAMES`].
pub fn by_name(name: &str) -> crate::Result<GaussianMixture> {
    match name {
        "unit_gaussian" => Ok(unit_gaussian()),
        "easy_mixture" => Ok(easy_mixture()),
        "hard_mixture_same_var" => Ok(hard_mixture_same_var()),
        "hard_mixture_diff_var" => Ok(hard_mixture_diff_var()),
        "eight_modes" => Ok(eight_modes()),
        _ => Err(Error::UnknownTarget {
            name: name.to_owned(),
            valid: NAMES.join(", "),
        }),
    }
}

/// The four targets of Figs. 1–4 with their names, in the paper's order.
pub fn figure_targets() -> Vec<(&'static str, GaussianMixture)> {
    vec![
        ("unit_gaussian", unit_gaussian()),
        ("easy_mixture", easy_mixture()),
        ("hard_mixture_same_var", hard_mixture_same_var()),
        ("hard_mixture_diff_var", hard_mixture_diff_var()),
    ]
}

fn build(weights: &[f64], means: &[f64], stds: &[f64]) -> GaussianMixture {
    // The parameters below are constants that satisfy every check of `univariate`.
    GaussianMixture::univariate(weights, means, stds).expect("named targets are valid")
}

/// `N(0, 1)`.
pub fn unit_gaussian() -> GaussianMixture {
    build(&[1.0], &[0.0], &[1.0])
}

/// `½N(−0.6, 0.8²) + ½N(0.6, 0.8²)`.
pub fn easy_mixture() -> GaussianMixture {
    build(&[0.5, 0.5], &[-0.6, 0.6], &[0.8, 0.8])
}

/// `½N(−0.98, 1 − 0.98²) + ½N(0.98, 1 − 0.98²)`.
pub fn hard_mixture_same_var() -> GaussianMixture {
    let s = (1.0f64 - 0.98 * 0.98).sqrt();
    build(&[0.5, 0.5], &[-0.98, 0.98], &[s, s])
}

/// `½N(−m, 0.1²) + ½N(m, 0.25²)`, `m = √(1 − (0.1² + 0.25²)/2)`.
pub fn hard_mixture_diff_var() -> GaussianMixture {
    let m = (1.0f64 - (0.1f64.powi(2) + 0.25f64.powi(2)) / 2.0).sqrt();
    build(&[0.5, 0.5], &[-m, m], &[0.1, 0.25])
}

/// Fig. 5's 2-D target: 8 equal-weight modes on a circle of radius 4, std 0.5.
pub fn eight_modes() -> GaussianMixture {
    let means = (0..8)
        .map(|k| {
            let angle = std::f64::consts::TAU * k as f64 / 8.0;
            vec![4.0 * angle.cos(), 4.0 * angle.sin()]
        })
        .collect();
    GaussianMixture::isotropic(vec![0.125; 8], means, vec![0.5; 8])
        .expect("named targets are valid")
}
