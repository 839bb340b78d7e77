//! A 2-D posterior tabulated on a grid of cells: the reference posterior of the count tasks.

use tsm_core::rand::Rng;
use tsm_core::target::{Dim, Sample};

/// A density on the box `[lo₁, hi₁] × [lo₂, hi₂]` tabulated at the centres of an
/// `n₁ × n₂` grid of equal cells; a draw picks a cell with probability proportional to its
/// tabulated density and a uniform point inside it.
///
/// Built from log-densities at the cell centres ([`GridPosterior::from_log_density`]), which
/// checks that the mass in the grid's **outer ring** (the cells of its first and last rows and
/// columns) is below [`GridPosterior::MAX_RING_MASS`]: a posterior with more mass there is cut
/// off by the box, and the grid is refused rather than silently truncated.
#[derive(Debug, Clone)]
pub struct GridPosterior {
    lo: [f64; 2],
    cell: [f64; 2],
    shape: [usize; 2],
    /// Normalised cell probabilities, row-major (`i` along `θ₁`, `j` along `θ₂`).
    prob: Vec<f64>,
    /// Cumulative sums of `prob`.
    cdf: Vec<f64>,
    ring_mass: f64,
    mean: [f64; 2],
    sd: [f64; 2],
}

impl GridPosterior {
    /// The largest mass allowed in the outer ring of cells: `10⁻⁶`.
    pub const MAX_RING_MASS: f64 = 1e-6;

    /// The grid posterior with log-densities (up to a constant) `log_density[i n₂ + j]` at the
    /// centre of cell `(i, j)`, `θ = (lo₁ + (i + ½) h₁, lo₂ + (j + ½) h₂)`,
    /// `h = (hi − lo)/n`. Cells at `−∞` have probability 0.
    ///
    /// # Errors
    /// - [`crate::Error::DimMismatch`] when `log_density` does not have `n₁ n₂` values;
    /// - [`tsm_core::Error::OutOfRange`] for a box that is not finite and non-empty or a grid
    ///   with fewer than 3 cells a side, and when the outer ring holds mass
    ///   `≥` [`GridPosterior::MAX_RING_MASS`] (the box cuts off posterior mass);
    /// - [`tsm_core::Error::NonFinite`] when no cell has a finite log-density (the observation
    ///   is impossible under the model) or one is `NaN` or `+∞`.
    pub fn from_log_density(
        lo: [f64; 2],
        hi: [f64; 2],
        shape: [usize; 2],
        log_density: &[f64],
    ) -> crate::Result<Self> {
        for k in 0..2 {
            if !(lo[k].is_finite() && hi[k].is_finite() && lo[k] < hi[k]) {
                return Err(tsm_core::Error::OutOfRange {
                    name: "grid box upper end",
                    value: hi[k],
                    allowed: "finite and above the lower end",
                }
                .into());
            }
            if shape[k] < 3 {
                return Err(tsm_core::Error::OutOfRange {
                    name: "grid cells per side",
                    value: shape[k] as f64,
                    allowed: "at least 3",
                }
                .into());
            }
        }
        crate::error::check_len(shape[0] * shape[1], log_density.len(), "grid log-density")?;
        let mut max = f64::NEG_INFINITY;
        for &l in log_density {
            if l.is_nan() || l == f64::INFINITY {
                return Err(tsm_core::Error::NonFinite {
                    op: "grid posterior log-density",
                    value: l,
                }
                .into());
            }
            max = max.max(l);
        }
        if max == f64::NEG_INFINITY {
            return Err(tsm_core::Error::NonFinite {
                op: "grid posterior: zero density in every cell (an observation the model \
                     cannot produce)",
                value: max,
            }
            .into());
        }
        let mut prob: Vec<f64> = log_density.iter().map(|&l| (l - max).exp()).collect();
        let total: f64 = prob.iter().sum();
        prob.iter_mut().for_each(|p| *p /= total);
        let cell = [
            (hi[0] - lo[0]) / shape[0] as f64,
            (hi[1] - lo[1]) / shape[1] as f64,
        ];
        let (n1, n2) = (shape[0], shape[1]);
        let mut ring_mass = 0.0;
        let (mut m, mut m2) = ([0.0; 2], [0.0; 2]);
        for i in 0..n1 {
            let c1 = lo[0] + (i as f64 + 0.5) * cell[0];
            for j in 0..n2 {
                let p = prob[i * n2 + j];
                if i == 0 || j == 0 || i == n1 - 1 || j == n2 - 1 {
                    ring_mass += p;
                }
                let c2 = lo[1] + (j as f64 + 0.5) * cell[1];
                m[0] += p * c1;
                m[1] += p * c2;
                m2[0] += p * c1 * c1;
                m2[1] += p * c2 * c2;
            }
        }
        if ring_mass >= Self::MAX_RING_MASS {
            return Err(tsm_core::Error::OutOfRange {
                name: "posterior mass in the grid's outer ring",
                value: ring_mass,
                allowed: "[0, 1e-6): the grid's box cuts off posterior mass",
            }
            .into());
        }
        // The jitter adds h²/12 to each coordinate's variance.
        let sd = [0, 1].map(|k| ((m2[k] - m[k] * m[k]).max(0.0) + cell[k] * cell[k] / 12.0).sqrt());
        let mut acc = 0.0;
        let cdf = prob
            .iter()
            .map(|p| {
                acc += p;
                acc
            })
            .collect();
        Ok(Self {
            lo,
            cell,
            shape,
            prob,
            cdf,
            ring_mass,
            mean: m,
            sd,
        })
    }

    /// The box's lower corner.
    pub fn lo(&self) -> [f64; 2] {
        self.lo
    }

    /// The box's upper corner.
    pub fn hi(&self) -> [f64; 2] {
        [0, 1].map(|k| self.lo[k] + self.cell[k] * self.shape[k] as f64)
    }

    /// Cells per side, `[n₁, n₂]`.
    pub fn shape(&self) -> [usize; 2] {
        self.shape
    }

    /// The cell widths `[h₁, h₂]`.
    pub fn cell_size(&self) -> [f64; 2] {
        self.cell
    }

    /// The centre of cell `(i, j)`.
    pub fn centre(&self, i: usize, j: usize) -> [f64; 2] {
        [
            self.lo[0] + (i as f64 + 0.5) * self.cell[0],
            self.lo[1] + (j as f64 + 0.5) * self.cell[1],
        ]
    }

    /// The normalised cell probabilities, row-major (`i n₂ + j`).
    pub fn probabilities(&self) -> &[f64] {
        &self.prob
    }

    /// The mass in the outer ring of cells (below [`GridPosterior::MAX_RING_MASS`]).
    pub fn ring_mass(&self) -> f64 {
        self.ring_mass
    }

    /// The mean.
    pub fn mean(&self) -> [f64; 2] {
        self.mean
    }

    /// The standard deviations (of the jittered distribution: cell variance plus `h²/12`).
    pub fn sd(&self) -> [f64; 2] {
        self.sd
    }
}

impl Dim for GridPosterior {
    fn dim(&self) -> usize {
        2
    }
}

impl Sample for GridPosterior {
    fn sample_into<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]) {
        let total = self.cdf.last().copied().unwrap_or(1.0);
        let u = rng.random::<f64>() * total;
        // The first cell whose cumulative mass exceeds u: never a zero-probability cell.
        let k = self
            .cdf
            .partition_point(|&c| c <= u)
            .min(self.prob.len() - 1);
        let (i, j) = (k / self.shape[1], k % self.shape[1]);
        out[0] = self.lo[0] + (i as f64 + rng.random::<f64>()) * self.cell[0];
        out[1] = self.lo[1] + (j as f64 + rng.random::<f64>()) * self.cell[1];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsm_core::rng::stream;

    fn gaussian_grid(mean: [f64; 2], sd: [f64; 2], n: usize) -> crate::Result<GridPosterior> {
        let (lo, hi) = ([-6.0, -6.0], [6.0, 6.0]);
        let h = 12.0 / n as f64;
        let mut l = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                let c = [-6.0 + (i as f64 + 0.5) * h, -6.0 + (j as f64 + 0.5) * h];
                l[i * n + j] = -0.5
                    * (((c[0] - mean[0]) / sd[0]).powi(2) + ((c[1] - mean[1]) / sd[1]).powi(2));
            }
        }
        GridPosterior::from_log_density(lo, hi, [n, n], &l)
    }

    #[test]
    fn moments_and_draws_of_a_tabulated_gaussian() {
        let g = gaussian_grid([1.0, -0.5], [0.5, 0.8], 300).unwrap();
        for k in 0..2 {
            assert!((g.mean()[k] - [1.0, -0.5][k]).abs() < 1e-6);
            assert!((g.sd()[k] - [0.5, 0.8][k]).abs() < 1e-3);
        }
        assert!(g.ring_mass() < 1e-9);
        // Draws: 5 standard errors on the mean (fixed seed).
        let mut rng = stream(11, 0);
        let n = 20_000;
        let mut s = [0.0; 2];
        let mut sum = [0.0; 2];
        for _ in 0..n {
            g.sample_into(&mut rng, &mut s);
            sum[0] += s[0];
            sum[1] += s[1];
        }
        for k in 0..2 {
            let se = g.sd()[k] / (n as f64).sqrt();
            assert!((sum[k] / n as f64 - g.mean()[k]).abs() < 5.0 * se);
        }
    }

    #[test]
    fn a_posterior_cut_off_by_the_box_is_refused() {
        let err = gaussian_grid([5.5, 0.0], [0.5, 0.5], 100).unwrap_err();
        assert!(err.to_string().contains("outer ring"), "{err}");
        let none =
            GridPosterior::from_log_density([0.0; 2], [1.0; 2], [3, 3], &[f64::NEG_INFINITY; 9]);
        assert!(none.is_err());
        assert!(GridPosterior::from_log_density([0.0; 2], [1.0; 2], [3, 3], &[0.0; 8]).is_err());
        assert!(GridPosterior::from_log_density([0.0; 2], [0.0, 1.0], [3, 3], &[0.0; 9]).is_err());
    }
}
