//! The exact bridge test model of De Bortoli et al. (2024), *Target Score Matching*, §3.3
//! (Prop. 3.4, eq. 11), with Gaussian-mixture ends.
//!
//! With `p₀ = Σᵢ πᵢ N(μᵢ, diag Sᵢ)`, `p₁ = Σⱼ ρⱼ N(νⱼ, diag Gⱼ)` and `W ~ N(0, s² I)` (or
//! `W ≡ 0`, `s = 0`), `Y = α X₀ + (1 − α) X₁ + W` is again a mixture, per coordinate:
//!
//! ```text
//! p_Y(y)           = Σᵢⱼ πᵢ ρⱼ N(y; α μᵢ + (1 − α) νⱼ, Vᵢⱼ),   Vᵢⱼ = α² Sᵢ + (1 − α)² Gⱼ + s²
//! p(i, j | y)      ∝ πᵢ ρⱼ N(y; α μᵢ + (1 − α) νⱼ, Vᵢⱼ)
//! (x₀, x₁) | i, j, y ~ N(m, C):  r = y − α μᵢ − (1 − α) νⱼ,
//!     m₀ = μᵢ + α Sᵢ r / V,   m₁ = νⱼ + (1 − α) Gⱼ r / V,
//!     C = [[Sᵢ(A + s²)/V, −α(1 − α) Sᵢ Gⱼ / V], [·, Gⱼ(α² Sᵢ + s²)/V]],   A = (1 − α)² Gⱼ
//! ```
//!
//! (Gaussian conditioning of the pair on one linear observation; coordinates are independent
//! because every covariance is diagonal.) Draws use the Cholesky factor written in closed form,
//! `L₁₁ = √(S(A + s²)/V)`, `L₂₁ = −α(1 − α) S G/(V L₁₁)`, `L₂₂ = √(G s²/(A + s²))`, with no
//! subtraction: at `s = 0` the covariance is singular (rank one), `L₂₂ = 0`, and every draw
//! satisfies `α x₀ + (1 − α) x₁ = y` to rounding. `L₁₁ > 0` always since `α < 1`, `G > 0`.
//!
//! ```
//! use tsm_core::bridge::{Bridge, BridgeIdentity};
//! use tsm_core::target::Score;
//! use tsm_targets::{bridge::MixtureBridge, GaussianMixture};
//!
//! let p0 = GaussianMixture::univariate(&[0.5, 0.5], &[-1.0, 1.0], &[0.3, 0.3])?;
//! let p1 = GaussianMixture::gaussian(1, 1.0)?;
//! let model = MixtureBridge::new(p0, p1, Bridge::new(0.4, 0.0)?)?;
//! let (y, mut exact) = ([0.3], [0.0]);
//! model.marginal()?.score(&y, &mut exact);          // ∇log p_Y(y), exactly
//! let post = model.posterior(&y)?;                   // p(x₀, x₁ | y), exactly
//! let c = BridgeIdentity::Sum.coefficients(model.bridge())?;
//! let (mut rng, n) = (tsm_core::rng::stream(0, 0), 4000);
//! let (mut x0, mut x1, mut s0, mut s1, mut l) = ([0.0], [0.0], [0.0], [0.0], [0.0]);
//! let mut mean = 0.0;
//! for _ in 0..n {
//!     post.sample_into(&mut rng, &mut x0, &mut x1);
//!     model.p0().score(&x0, &mut s0);
//!     model.p1().score(&x1, &mut s1);
//!     c.apply_into(&x0, &x1, &y, &s0, &s1, &mut l);  // eq. 14
//!     mean += l[0] / n as f64;
//! }
//! assert!((mean - exact[0]).abs() < 0.2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # References
//! [^1]: De Bortoli et al. (2024), *Target Score Matching*, §3.3, Prop. 3.4, eqs. 11–15.

use rand::Rng;
use tsm_core::bridge::Bridge;
use tsm_core::rng::normal;

use crate::error::check_len;
use crate::{Error, GaussianMixture, Result};

const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// The bridge `Y = α X₀ + (1 − α) X₁ + W` between two Gaussian mixtures (see the
/// [module docs](self)).
#[derive(Debug, Clone, PartialEq)]
pub struct MixtureBridge {
    p0: GaussianMixture,
    p1: GaussianMixture,
    bridge: Bridge,
    // Flattened [component * dim + coordinate]: means and variances of p₀ and p₁.
    means0: Vec<f64>,
    vars0: Vec<f64>,
    means1: Vec<f64>,
    vars1: Vec<f64>,
}

/// The means and the variances of a mixture's components, flattened.
fn flat_moments(p: &GaussianMixture) -> (Vec<f64>, Vec<f64>) {
    let n = p.n_components();
    let means = (0..n)
        .filter_map(|i| p.component_mean(i))
        .flatten()
        .copied()
        .collect();
    let vars = (0..n)
        .filter_map(|i| p.component_std(i))
        .flatten()
        .map(|s| s * s)
        .collect();
    (means, vars)
}

impl MixtureBridge {
    /// The model with ends `p₀`, `p₁` and the bridge's `α` and `s²`.
    ///
    /// # Errors
    /// [`Error::DimMismatch`] when `p₀` and `p₁` have different dimensions. (Bad `α` or `s²`
    /// are refused by [`Bridge::new`], bad variances by [`GaussianMixture::new`].)
    pub fn new(p0: GaussianMixture, p1: GaussianMixture, bridge: Bridge) -> Result<Self> {
        use tsm_core::target::Dim;
        check_len(p0.dim(), p1.dim(), "MixtureBridge::new (p1's dimension)")?;
        let (means0, vars0) = flat_moments(&p0);
        let (means1, vars1) = flat_moments(&p1);
        Ok(Self {
            p0,
            p1,
            bridge,
            means0,
            vars0,
            means1,
            vars1,
        })
    }

    /// `p₀`.
    pub fn p0(&self) -> &GaussianMixture {
        &self.p0
    }

    /// `p₁`.
    pub fn p1(&self) -> &GaussianMixture {
        &self.p1
    }

    /// The bridge (`α`, `s²`).
    pub fn bridge(&self) -> &Bridge {
        &self.bridge
    }

    fn dim(&self) -> usize {
        use tsm_core::target::Dim;
        self.p0.dim()
    }

    /// Component `(i, j)`'s `(S, G)` variances and `(μ, ν)` means at coordinate `c`.
    fn parts(&self, i: usize, j: usize, c: usize) -> (f64, f64, f64, f64) {
        let d = self.dim();
        let (a, b) = (i * d + c, j * d + c);
        (self.vars0[a], self.vars1[b], self.means0[a], self.means1[b])
    }

    /// The exact marginal `p_Y = Σᵢⱼ πᵢ ρⱼ N(α μᵢ + (1 − α) νⱼ, α² Sᵢ + (1 − α)² Gⱼ + s²)`,
    /// components ordered `i · n₁ + j`.
    ///
    /// # Errors
    /// None in practice (the components are valid by construction); the mixture constructor's
    /// errors are passed on.
    pub fn marginal(&self) -> Result<GaussianMixture> {
        let (d, a) = (self.dim(), self.bridge.alpha());
        let (n0, n1) = (self.p0.n_components(), self.p1.n_components());
        let mut weights = Vec::with_capacity(n0 * n1);
        let mut means = Vec::with_capacity(n0 * n1);
        let mut stds = Vec::with_capacity(n0 * n1);
        for i in 0..n0 {
            for j in 0..n1 {
                weights.push(self.p0.weights()[i] * self.p1.weights()[j]);
                let (m, s): (Vec<f64>, Vec<f64>) = (0..d)
                    .map(|c| {
                        let (sv, gv, mu, nu) = self.parts(i, j, c);
                        let var = a * a * sv + (1.0 - a) * (1.0 - a) * gv + self.bridge.noise_var();
                        (a * mu + (1.0 - a) * nu, var.sqrt())
                    })
                    .unzip();
                means.push(m);
                stds.push(s);
            }
        }
        // Renormalise against rounding in the products (they sum to 1 within a few ulps).
        let total: f64 = weights.iter().sum();
        weights.iter_mut().for_each(|w| *w /= total);
        GaussianMixture::new(weights, means, stds)
    }

    /// The exact posterior `p(x₀, x₁ | y)`.
    ///
    /// # Errors
    /// [`Error::DimMismatch`] for `y` of the wrong length; `Error::Core(NonFinite)` for a
    /// non-finite `y`.
    pub fn posterior(&self, y: &[f64]) -> Result<BridgePosterior> {
        let d = self.dim();
        check_len(d, y.len(), "MixtureBridge::posterior (y)")?;
        if let Some(&value) = y.iter().find(|v| !v.is_finite()) {
            return Err(Error::Core(tsm_core::Error::NonFinite {
                op: "MixtureBridge::posterior y",
                value,
            }));
        }
        let (a, s2) = (self.bridge.alpha(), self.bridge.noise_var());
        let (n0, n1) = (self.p0.n_components(), self.p1.n_components());
        let n = n0 * n1;
        let mut post = BridgePosterior {
            dim: d,
            cumulative: vec![0.0; n],
            mean0: vec![0.0; n * d],
            mean1: vec![0.0; n * d],
            l11: vec![0.0; n * d],
            l21: vec![0.0; n * d],
            l22: vec![0.0; n * d],
        };
        let mut max_log = f64::NEG_INFINITY;
        for i in 0..n0 {
            for j in 0..n1 {
                let k = i * n1 + j;
                let mut log_w = self.p0.weights()[i].ln() + self.p1.weights()[j].ln();
                for c in 0..d {
                    let (sv, gv, mu, nu) = self.parts(i, j, c);
                    let big_a = (1.0 - a) * (1.0 - a) * gv;
                    let v = a * a * sv + big_a + s2;
                    let r = y[c] - a * mu - (1.0 - a) * nu;
                    log_w -= 0.5 * (r * r / v + v.ln() + LN_2PI);
                    let kc = k * d + c;
                    post.mean0[kc] = mu + a * sv * r / v;
                    post.mean1[kc] = nu + (1.0 - a) * gv * r / v;
                    let l11 = (sv * (big_a + s2) / v).sqrt();
                    post.l11[kc] = l11;
                    post.l21[kc] = -a * (1.0 - a) * sv * gv / (v * l11);
                    post.l22[kc] = (gv * s2 / (big_a + s2)).sqrt();
                }
                post.cumulative[k] = log_w;
                max_log = max_log.max(log_w);
            }
        }
        if !max_log.is_finite() {
            return Err(Error::Core(tsm_core::Error::DegenerateWeights {
                count: n,
                max_log_weight: max_log,
            }));
        }
        let mut acc = 0.0;
        for c in post.cumulative.iter_mut() {
            acc += (*c - max_log).exp();
            *c = acc;
        }
        post.cumulative.iter_mut().for_each(|c| *c /= acc);
        if let Some(last) = post.cumulative.last_mut() {
            *last = f64::INFINITY;
        }
        Ok(post)
    }
}

/// The exact posterior `p(x₀, x₁ | y)` of a [`MixtureBridge`]: a mixture over component pairs
/// `(i, j)` (index `i · n₁ + j`) of Gaussians, independent across coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgePosterior {
    dim: usize,
    cumulative: Vec<f64>,
    // [pair * dim + coordinate]
    mean0: Vec<f64>,
    mean1: Vec<f64>,
    l11: Vec<f64>,
    l21: Vec<f64>,
    l22: Vec<f64>,
}

impl BridgePosterior {
    /// The posterior weights of the component pairs `p(i, j | y)`, index `i · n₁ + j`.
    pub fn weights(&self) -> Vec<f64> {
        let mut prev = 0.0;
        self.cumulative
            .iter()
            .map(|&c| {
                let c = if c.is_infinite() { 1.0 } else { c };
                let w = c - prev;
                prev = c;
                w
            })
            .collect()
    }

    /// The posterior means `(E[x₀ | y], E[x₁ | y])`.
    pub fn mean(&self) -> (Vec<f64>, Vec<f64>) {
        let w = self.weights();
        let d = self.dim;
        let avg = |m: &[f64]| -> Vec<f64> {
            (0..d)
                .map(|c| w.iter().enumerate().map(|(k, wk)| wk * m[k * d + c]).sum())
                .collect()
        };
        (avg(&self.mean0), avg(&self.mean1))
    }

    /// The dimension `d` of `x₀` (and of `x₁`, `y`).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Writes one exact draw `(x₀, x₁) ~ p(x₀, x₁ | y)` into `x0`, `x1` (lengths `d`, checked
    /// in debug builds).
    pub fn sample_into<R: Rng + ?Sized>(&self, rng: &mut R, x0: &mut [f64], x1: &mut [f64]) {
        debug_assert!(x0.len() == self.dim && x1.len() == self.dim);
        let k = if self.cumulative.len() == 1 {
            0
        } else {
            let u = rng.random::<f64>();
            self.cumulative.iter().take_while(|&&c| c <= u).count()
        };
        let d = self.dim;
        for c in 0..d {
            let kc = k * d + c;
            let (z1, z2) = (normal::sample(rng), normal::sample(rng));
            x0[c] = self.mean0[kc] + self.l11[kc] * z1;
            x1[c] = self.mean1[kc] + self.l21[kc] * z1 + self.l22[kc] * z2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsm_core::target::{LogDensity, Sample};

    fn model(alpha: f64, s2: f64) -> MixtureBridge {
        let p0 = GaussianMixture::new(
            vec![0.3, 0.7],
            vec![vec![-1.0, 0.5], vec![1.2, -0.3]],
            vec![vec![0.3, 0.5], vec![0.6, 0.2]],
        )
        .unwrap();
        let p1 = GaussianMixture::isotropic(
            vec![0.5, 0.5],
            vec![vec![0.0, 2.0], vec![2.0, 0.0]],
            vec![0.4, 0.8],
        )
        .unwrap();
        MixtureBridge::new(p0, p1, Bridge::new(alpha, s2).unwrap()).unwrap()
    }

    #[test]
    fn noiseless_draws_satisfy_the_constraint() {
        let m = model(0.35, 0.0);
        let y = [0.4, -0.2];
        let post = m.posterior(&y).unwrap();
        let mut rng = tsm_core::rng::stream(1, 0);
        let (mut x0, mut x1) = ([0.0; 2], [0.0; 2]);
        for _ in 0..1000 {
            post.sample_into(&mut rng, &mut x0, &mut x1);
            for c in 0..2 {
                let back = 0.35 * x0[c] + 0.65 * x1[c];
                assert!((back - y[c]).abs() < 1e-13 * (1.0 + x0[c].abs() + x1[c].abs()));
            }
        }
    }

    /// The marginal is the law of draws of the model: its mean matches the empirical mean of
    /// joint draws within 5 standard errors (fixed seed), and it is normalised (the pair
    /// weights sum to 1).
    #[test]
    fn marginal_matches_joint_draws() {
        let m = model(0.6, 0.05);
        let marginal = m.marginal().unwrap();
        assert!((marginal.weights().iter().sum::<f64>() - 1.0).abs() < 1e-15);
        let mut rng = tsm_core::rng::stream(2, 0);
        let n = 40_000;
        let (mut x0, mut x1, mut y) = ([0.0; 2], [0.0; 2], [0.0; 2]);
        let (mut s, mut s2) = ([0.0; 2], [0.0; 2]);
        for _ in 0..n {
            m.bridge()
                .sample_joint(m.p0(), m.p1(), &mut rng, &mut x0, &mut x1, &mut y)
                .unwrap();
            for c in 0..2 {
                s[c] += y[c];
                s2[c] += y[c] * y[c];
            }
        }
        let exact = marginal.mean();
        for c in 0..2 {
            let mean = s[c] / n as f64;
            let se = ((s2[c] / n as f64 - mean * mean) / n as f64).sqrt();
            assert!((mean - exact[c]).abs() < 5.0 * se, "{mean} vs {}", exact[c]);
        }
        assert!(marginal.log_density(&[0.1, 0.2]).is_finite());
        let mut draw = [0.0; 2];
        marginal.sample_into(&mut rng, &mut draw);
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let m = model(0.5, 0.1);
        assert!(matches!(
            m.posterior(&[0.1]),
            Err(Error::DimMismatch { .. })
        ));
        assert!(matches!(
            m.posterior(&[0.1, f64::NAN]),
            Err(Error::Core(tsm_core::Error::NonFinite { .. }))
        ));
        let p1 = GaussianMixture::gaussian(3, 1.0).unwrap();
        assert!(matches!(
            MixtureBridge::new(m.p0().clone(), p1, *m.bridge()),
            Err(Error::DimMismatch { .. })
        ));
    }
}
