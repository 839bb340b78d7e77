//! # tsm-core
//!
//! The mathematics of **Target Score Matching** (De Bortoli, Hutchinson, Wirnsberger, Doucet,
//! 2024, arXiv:2402.08667), on plain `f64` slices and without tensors:
//!
//! - [`schedule`]: noising schedules `X_t = α_t X_0 + σ_t ε` (cosine, linear VP, VE) with the
//!   forward SDE's drift `f_t` and squared diffusion `g_t²`;
//! - [`identity`]: the score identities of paper §4.1 as regression targets at a pair
//!   `(x_0, x_t)`: DSI, TSI, their mixtures (`κ_t`, `κ̄_t`, any fixed `w`) and Phillips et al.'s
//!   identity (eq. 9);
//! - [`weighting`]: the four time weightings `λ_t` of paper §4.1 / Fig. 3, normalised;
//! - [`estimator`]: Monte Carlo score estimators at a point (eq. 18) with standard errors;
//! - [`snis`]: self-normalised importance sampling of the score from an unnormalised density
//!   (§2, the iDEM estimator), with ESS and standard errors; [`gaussian_variance`]: App. C's
//!   closed-form estimator variances for a Gaussian target;
//! - [`sampler`]: reverse-SDE, probability-flow (Heun) and predictor–corrector samplers over
//!   any time-dependent score (a network's or an exact one, conditioned or not), with time
//!   grids uniform in `t`, in log-SNR, or Karras et al.'s ρ-schedule;
//! - [`likelihood`]: `log p₀(x)` through the probability-flow ODE (adaptive Dormand–Prince,
//!   exact divergence or Hutchinson's estimator with its standard error);
//! - [`simulator`]: gray-box simulators for simulation-based inference and the Latent TSM
//!   targets on their joint scores (Ko & Geffner, 2024), with the optimal weight `w_t*`;
//! - [`target`]: capability traits for a target known through its score, its (unnormalised)
//!   log density, or its samples;
//! - [`quadrature`] and [`rng`]: the small numerical utilities the rest relies on.
//!
//! **Architecture invariant:** this crate is candle-free; tensors live in `tsm-nn`.
//!
//! ```
//! use tsm_core::schedule::{Cosine, Schedule};
//! use tsm_core::identity::ScoreIdentity;
//!
//! let schedule = Cosine;
//! let kappa = ScoreIdentity::kappa(1.0);
//! // L_κ is finite at both ends of the cosine schedule.
//! assert!(kappa.coefficients(&schedule, 0.0).is_ok());
//! assert!(kappa.coefficients(&schedule, 1.0).is_ok());
//! // L_DSI is undefined at t = 0 (σ_0 = 0): a typed error, not a NaN.
//! assert!(ScoreIdentity::Dsi.coefficients(&schedule, 0.0).is_err());
//! ```
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

pub mod bridge;
pub mod choice;
mod error;
pub mod estimator;
pub mod fastmath;
pub mod gaussian_variance;
pub mod identity;
pub mod lie;
pub mod likelihood;
pub mod noise_model;
pub mod quadrature;
pub mod rng;
pub mod sampler;
pub mod schedule;
pub mod simulator;
pub mod snis;
pub mod target;
pub mod weighting;

pub use error::{Error, Result, ScoreError};

/// The `rand` crate this crate's traits are written against, re-exported so that a user
/// implementing [`target::Sample`] or [`target::PosteriorSample`] names the same `Rng` trait
/// without adding (and version-matching) a dependency of their own.
///
/// ```
/// use tsm_core::rand::Rng;
/// use tsm_core::target::{Dim, Sample};
///
/// /// Uniform on `[0, 1]^d`.
/// struct UnitCube(usize);
/// impl Dim for UnitCube {
///     fn dim(&self) -> usize { self.0 }
/// }
/// impl Sample for UnitCube {
///     fn sample_into<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]) {
///         out.iter_mut().for_each(|o| *o = rng.random::<f64>());
///     }
/// }
///
/// let mut x = [0.0; 3];
/// UnitCube(3).sample_into(&mut tsm_core::rng::stream(1, 0), &mut x);
/// assert!(x.iter().all(|v| (0.0..1.0).contains(v)));
/// ```
pub use rand;
