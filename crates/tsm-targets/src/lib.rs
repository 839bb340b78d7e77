//! # tsm-targets
//!
//! Targets with a known score for Target Score Matching. Today: Gaussian mixtures in `d`
//! dimensions with diagonal covariances, whose noised marginals `p_t` and posteriors
//! `p(x_0 | x_t)` are again Gaussian mixtures in closed form (De Bortoli et al. 2024, §4.1, eq. 17), and the
//! named targets of the paper's figures ([`named`]). [`ExactMixtureScore`] drives the samplers
//! of `tsm_core::sampler` with a mixture's exact noised score. Lie-group, bridge and simulator
//! targets will live here too.
//!
//! ```
//! use tsm_core::schedule::Cosine;
//! use tsm_core::target::Score;
//! use tsm_targets::named;
//!
//! let target = named::by_name("easy_mixture").unwrap();
//! let p_t = target.noised(&Cosine, 0.5).unwrap();     // the exact marginal at t = 0.5
//! let mut s = [0.0];
//! p_t.score(&[0.3], &mut s);                           // ∇log p_t(0.3)
//! assert!(s[0].is_finite());
//! assert!(named::by_name("banana").is_err());          // lists the valid names
//! ```
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

pub mod bridge;
mod error;
pub mod exact_variance;
pub mod lie;
pub mod mixture;
pub mod named;
pub mod noise;
pub mod noised_score;
pub mod sbi;

pub use error::{Error, Result};
pub use mixture::{GaussianMixture, MixturePosterior};
pub use noised_score::ExactMixtureScore;

/// The README's code, compiled and run as doctests of this crate (the one that sees both
/// `tsm-core` and `tsm-targets`, as a user's crate would): if the README's library example
/// breaks, `cargo test --doc -p tsm-targets` fails.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
