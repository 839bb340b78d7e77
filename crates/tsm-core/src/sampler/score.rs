//! What the samplers need from a model: the score of the noised marginal, `∇log p_t(x)`, on a
//! batch — optionally conditioned on an observation.
//!
//! - [`NoisedScore`]: `(x, t) ↦ ∇log p_t(x)`, what every sampler takes (a trained network,
//!   or an exact marginal score);
//! - [`ConditionalScore`]: `(x, t, c) ↦ ∇_x log p_t(x | c)`, e.g. the posterior `p(θ | x)` of
//!   simulation-based inference with `c` the observation;
//! - [`Conditioned`]: a conditional score with its condition fixed — one row shared by every
//!   point, or one row per point — is a [`NoisedScore`], so the same samplers draw from
//!   `p(· | c)` without a sampler per use.
//!
//! # Shapes
//! Points `x` and scores are row-major `[n, d]`; conditions row-major `[n, c]`.

use crate::target::Dim;
use crate::{Error, Result};

/// A time-dependent score `(x, t) ↦ ∇log p_t(x)` on a batch, for the samplers.
///
/// `&mut self` lets an implementation keep buffers (a network's input tensor) between calls.
pub trait NoisedScore: Dim {
    /// Writes `∇log p_t(xᵢ)` for every row `xᵢ` of `x` (`[n, d]`) into the same row of `out`
    /// (`[n, d]`).
    ///
    /// # Errors
    /// Whatever the model reports: a time it cannot evaluate, a network's tensor error
    /// (wrapped in [`Error::Score`]).
    fn noised_score(&mut self, x: &[f64], t: f64, out: &mut [f64]) -> Result<()>;
}

/// A time-dependent score conditioned on an input `c ∈ ℝ^{condition_dim}`:
/// `(x, t, c) ↦ ∇_x log p_t(x | c)`.
///
/// Sample from `p(· | c)` with [`Conditioned`], which turns it into a [`NoisedScore`].
pub trait ConditionalScore: Dim {
    /// The dimension of the conditioning input.
    fn condition_dim(&self) -> usize;

    /// Writes `∇_x log p_t(xᵢ | cᵢ)` for every row `xᵢ` of `x` (`[n, d]`), `cᵢ` the same row
    /// of `condition` (`[n, condition_dim]`), into the same row of `out` (`[n, d]`).
    ///
    /// # Errors
    /// As [`NoisedScore::noised_score`].
    fn conditional_score(
        &mut self,
        x: &[f64],
        t: f64,
        condition: &[f64],
        out: &mut [f64],
    ) -> Result<()>;
}

/// A [`ConditionalScore`] with its condition fixed: a [`NoisedScore`] of `x` alone.
///
/// Built with [`Conditioned::broadcast`] (one condition for every point: draws from one
/// `p(· | c)`) or [`Conditioned::per_point`] (row `i` of the batch conditioned on row `i` of
/// the conditions: draws for many observations at once).
///
/// # Examples
/// ```
/// use tsm_core::sampler::{ConditionalScore, Conditioned, NoisedScore};
/// use tsm_core::target::Dim;
///
/// /// ∇log N(x; c, 1): the score of a unit Gaussian centred on the condition (at any t).
/// struct Shifted;
/// impl Dim for Shifted {
///     fn dim(&self) -> usize { 1 }
/// }
/// impl ConditionalScore for Shifted {
///     fn condition_dim(&self) -> usize { 1 }
///     fn conditional_score(&mut self, x: &[f64], _t: f64, c: &[f64], out: &mut [f64])
///         -> tsm_core::Result<()> {
///         for ((o, x), c) in out.iter_mut().zip(x).zip(c) { *o = c - x; }
///         Ok(())
///     }
/// }
///
/// let mut score = Conditioned::broadcast(Shifted, vec![2.0])?;
/// let mut out = [0.0; 2];
/// score.noised_score(&[0.0, 1.0], 0.5, &mut out)?;
/// assert_eq!(out, [2.0, 1.0]);
/// assert!(Conditioned::broadcast(Shifted, vec![1.0, 2.0]).is_err()); // wrong length
/// # Ok::<(), tsm_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Conditioned<S> {
    score: S,
    condition: Vec<f64>,
    per_point: bool,
    /// The broadcast condition repeated once per point; grown on the first call of a batch
    /// size and reused after.
    rows: Vec<f64>,
}

impl<S: ConditionalScore> Conditioned<S> {
    /// Conditions every point on the same `condition` (`condition_dim` values).
    ///
    /// # Errors
    /// [`Error::DimMismatch`] if `condition.len() ≠ condition_dim`.
    pub fn broadcast(score: S, condition: Vec<f64>) -> Result<Self> {
        crate::target::check_dim(
            score.condition_dim(),
            condition.len(),
            "Conditioned::broadcast",
        )?;
        Ok(Self {
            score,
            condition,
            per_point: false,
            rows: Vec::new(),
        })
    }

    /// Conditions row `i` of every batch on row `i` of `conditions` (`[n, condition_dim]`);
    /// the batches must then have `n` rows.
    ///
    /// # Errors
    /// [`Error::DimMismatch`] if `conditions.len()` is not a multiple of `condition_dim`.
    pub fn per_point(score: S, conditions: Vec<f64>) -> Result<Self> {
        let c = score.condition_dim();
        let whole_rows = match c {
            0 => 0,
            c => conditions.len() / c * c,
        };
        crate::target::check_dim(whole_rows, conditions.len(), "Conditioned::per_point")?;
        Ok(Self {
            score,
            condition: conditions,
            per_point: true,
            rows: Vec::new(),
        })
    }

    /// The condition: one row (broadcast) or one row per point.
    pub fn condition(&self) -> &[f64] {
        &self.condition
    }

    /// The conditional score.
    pub fn inner(&self) -> &S {
        &self.score
    }

    /// The conditional score, mutably.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.score
    }

    /// Unwraps the conditional score.
    pub fn into_inner(self) -> S {
        self.score
    }
}

impl<S: ConditionalScore> Dim for Conditioned<S> {
    fn dim(&self) -> usize {
        self.score.dim()
    }
}

impl<S: ConditionalScore> NoisedScore for Conditioned<S> {
    /// # Errors
    /// [`Error::DimMismatch`] for a per-point condition with another number of rows than `x`;
    /// as the conditional score.
    fn noised_score(&mut self, x: &[f64], t: f64, out: &mut [f64]) -> Result<()> {
        let (d, c) = (self.score.dim(), self.score.condition_dim());
        let n = x.len().checked_div(d).unwrap_or(0);
        let len = n.checked_mul(c).ok_or(Error::OutOfRange {
            name: "points × condition_dim",
            value: n as f64 * c as f64,
            allowed: "below usize::MAX",
        })?;
        if self.per_point {
            crate::target::check_dim(len, self.condition.len(), "Conditioned::per_point rows")?;
            return self.score.conditional_score(x, t, &self.condition, out);
        }
        if self.rows.len() != len {
            self.rows.clear();
            for _ in 0..n {
                self.rows.extend_from_slice(&self.condition);
            }
        }
        self.score.conditional_score(x, t, &self.rows, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `∇_x log N(x; c, I)` in 2-D with a 2-D condition.
    struct Shifted;

    impl Dim for Shifted {
        fn dim(&self) -> usize {
            2
        }
    }

    impl ConditionalScore for Shifted {
        fn condition_dim(&self) -> usize {
            2
        }
        fn conditional_score(
            &mut self,
            x: &[f64],
            _t: f64,
            condition: &[f64],
            out: &mut [f64],
        ) -> Result<()> {
            crate::target::check_dim(x.len(), condition.len(), "Shifted")?;
            for ((o, x), c) in out.iter_mut().zip(x).zip(condition) {
                *o = c - x;
            }
            Ok(())
        }
    }

    #[test]
    fn broadcast_condition_reaches_every_point() {
        let mut s = Conditioned::broadcast(Shifted, vec![1.0, -1.0]).expect("condition");
        let mut out = [0.0; 6];
        s.noised_score(&[0.0; 6], 0.5, &mut out).expect("score");
        assert_eq!(out, [1.0, -1.0, 1.0, -1.0, 1.0, -1.0]);
        // Another batch size reuses the adapter.
        let mut out = [0.0; 2];
        s.noised_score(&[1.0, 1.0], 0.5, &mut out).expect("score");
        assert_eq!(out, [0.0, -2.0]);
        assert_eq!(s.dim(), 2);
    }

    #[test]
    fn per_point_condition_goes_to_its_row() {
        let mut s = Conditioned::per_point(Shifted, vec![1.0, 2.0, 3.0, 4.0]).expect("condition");
        let mut out = [0.0; 4];
        s.noised_score(&[0.0; 4], 0.5, &mut out).expect("score");
        assert_eq!(out, [1.0, 2.0, 3.0, 4.0]);
        // Three points for two conditions: a typed error.
        let mut out = [0.0; 6];
        assert!(matches!(
            s.noised_score(&[0.0; 6], 0.5, &mut out),
            Err(Error::DimMismatch {
                expected: 6,
                got: 4,
                ..
            })
        ));
    }

    #[test]
    fn conditions_of_the_wrong_length_are_typed_errors() {
        assert!(matches!(
            Conditioned::broadcast(Shifted, vec![1.0]),
            Err(Error::DimMismatch {
                expected: 2,
                got: 1,
                ..
            })
        ));
        assert!(matches!(
            Conditioned::per_point(Shifted, vec![1.0, 2.0, 3.0]),
            Err(Error::DimMismatch {
                expected: 2,
                got: 3,
                ..
            })
        ));
    }
}
