//! The reference posteriors' common type.

use tsm_core::rand::Rng;
use tsm_core::rng::normal;
use tsm_core::target::{Dim, Sample};

use super::GridPosterior;

/// `N(mean, diag(sd²))`: the exact posterior of [`LinearGaussian`](super::LinearGaussian).
#[derive(Debug, Clone, PartialEq)]
pub struct DiagonalGaussian {
    /// The mean.
    pub mean: Vec<f64>,
    /// The standard deviation of each coordinate.
    pub sd: Vec<f64>,
}

impl Dim for DiagonalGaussian {
    fn dim(&self) -> usize {
        self.mean.len()
    }
}

impl Sample for DiagonalGaussian {
    fn sample_into<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]) {
        normal::fill(rng, out);
        for ((o, m), s) in out.iter_mut().zip(&self.mean).zip(&self.sd) {
            *o = m + s * *o;
        }
    }
}

/// A task's exact posterior `p(θ | x)` ([`Task::reference_posterior`](super::Task)): draw
/// from it with [`Sample::sample_into`].
#[derive(Debug, Clone)]
pub enum Posterior {
    /// A Gaussian in closed form.
    Gaussian(DiagonalGaussian),
    /// A density tabulated on a grid of cells, drawn with uniform jitter inside a cell.
    Grid(GridPosterior),
}

impl Posterior {
    /// The posterior mean (of the grid distribution for a grid posterior).
    pub fn mean(&self) -> Vec<f64> {
        match self {
            Self::Gaussian(g) => g.mean.clone(),
            Self::Grid(g) => g.mean().to_vec(),
        }
    }

    /// The posterior standard deviation of each coordinate (of the jittered grid distribution
    /// for a grid posterior).
    pub fn sd(&self) -> Vec<f64> {
        match self {
            Self::Gaussian(g) => g.sd.clone(),
            Self::Grid(g) => g.sd().to_vec(),
        }
    }

    /// `n` independent draws, row-major `[n, d]`.
    pub fn sample_n<R: Rng + ?Sized>(&self, rng: &mut R, n: usize) -> Vec<f64> {
        let d = self.dim();
        let mut out = vec![0.0; n * d];
        for row in out.chunks_exact_mut(d) {
            self.sample_into(rng, row);
        }
        out
    }
}

impl Dim for Posterior {
    fn dim(&self) -> usize {
        match self {
            Self::Gaussian(g) => g.dim(),
            Self::Grid(g) => g.dim(),
        }
    }
}

impl Sample for Posterior {
    fn sample_into<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]) {
        match self {
            Self::Gaussian(g) => g.sample_into(rng, out),
            Self::Grid(g) => g.sample_into(rng, out),
        }
    }
}
