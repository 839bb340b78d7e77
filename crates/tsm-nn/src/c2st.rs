//! The classifier two-sample test (C2ST; Lopez-Paz & Oquab, 2017), the metric of the
//! standard SBI benchmark (Lueckmann et al., 2021, §3): how well can a classifier tell two
//! samples apart?
//!
//! Label the points of `a` 0 and those of `b` 1, standardise every coordinate with the pooled
//! mean and standard deviation, and estimate the held-out accuracy of a small MLP classifier
//! by stratified `k`-fold cross-validation. **0.5 means indistinguishable, 1.0 separable.**
//! With samples of unequal size the *balanced* accuracy (the mean of the two classes'
//! accuracies) is reported, so that chance is 0.5 whatever the sizes.
//!
//! The classifier follows the benchmark's (scikit-learn's `MLPClassifier` as Lueckmann et al.
//! use it): two ReLU hidden layers of `10 d` units, a logistic output, the cross-entropy with
//! an L2 penalty, Adam (learning rate `10⁻³`, minibatches of 200) until the training loss has
//! not improved by `10⁻⁴` for 10 epochs in a row (or [`C2stConfig::max_epochs`]); Glorot
//! initialisation. It is written out in plain `f64` (no candle): the networks are tiny and a
//! fold trains in well under a second for a few thousand points.
//!
//! Under `a ~ b` every held-out prediction is a fair coin whatever the classifier, so the
//! accuracy is `Binomial(N, ½)/N` up to the dependence through the shared training folds:
//! `0.5 ± 0.5/√N` with `N` the pooled size ([`C2stResult::null_std_err`]).
//!
//! Reproducible: the fold split and each fold's initialisation and minibatches come from
//! `rng::stream(seed, ·)`, and folds train in parallel into fixed slots, so the same seed gives
//! the same accuracy whatever the number of threads.

use rand::seq::SliceRandom;
use rand::Rng;
use rayon::prelude::*;
use serde::Serialize;

use crate::{Error, Result};

/// The classifier and cross-validation settings of [`c2st`]; [`Default`] is the benchmark's.
#[derive(Debug, Clone, PartialEq)]
pub struct C2stConfig {
    /// Cross-validation folds `k` (2 to 100; 5 by default).
    pub folds: usize,
    /// Units per hidden layer; `None` (the default) for `10 d`.
    pub hidden: Option<usize>,
    /// Hidden layers (1 to 8; 2 by default).
    pub layers: usize,
    /// The most training epochs per fold (1 to 10⁵; 200 by default).
    pub max_epochs: usize,
    /// Minibatch size (1 or more, capped at the training fold's size; 200 by default).
    pub batch: usize,
    /// Adam's learning rate (`> 0`; `10⁻³` by default).
    pub lr: f64,
    /// The L2 penalty `α/2 ‖W‖²` on the weights, per minibatch mean (`≥ 0`; `10⁻⁴` by default).
    pub l2: f64,
    /// Early stopping: the improvement of an epoch's mean training loss that counts
    /// (`≥ 0`; `10⁻⁴` by default) …
    pub tol: f64,
    /// … and the number of epochs in a row without one that stops training (10 by default).
    pub patience: usize,
}

impl Default for C2stConfig {
    fn default() -> Self {
        Self {
            folds: 5,
            hidden: None,
            layers: 2,
            max_epochs: 200,
            batch: 200,
            lr: 1e-3,
            l2: 1e-4,
            tol: 1e-4,
            patience: 10,
        }
    }
}

/// The outcome of [`c2st_detailed`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct C2stResult {
    /// The cross-validated (balanced) accuracy: 0.5 indistinguishable, 1.0 separable.
    pub accuracy: f64,
    /// The accuracy on each fold's held-out points (balanced within the fold).
    pub fold_accuracies: Vec<f64>,
    /// Points in `a` and in `b`.
    pub points: [usize; 2],
    /// Epochs each fold trained for.
    pub epochs: Vec<usize>,
}

impl C2stResult {
    /// The accuracy's standard error when the samples come from one distribution:
    /// `½ √(1/(4 n_a) + 1/(4 n_b))`, i.e. `0.5/√N` for equal sizes (`N = n_a + n_b`).
    pub fn null_std_err(&self) -> f64 {
        let [na, nb] = self.points.map(|n| n as f64);
        0.5 * (0.25 / na + 0.25 / nb).sqrt()
    }
}

/// The C2ST accuracy of samples `a` and `b` (row-major, dimension `dim`): 0.5 when a
/// classifier cannot tell them apart, 1.0 when it separates them (see the [module
/// docs](self)).
///
/// ```
/// use tsm_nn::c2st::{c2st, C2stConfig};
/// let mut rng = tsm_core::rng::stream(0, 0);
/// let mut a = vec![0.0; 400];
/// let mut b = vec![0.0; 400];
/// tsm_core::rng::normal::fill(&mut rng, &mut a);
/// tsm_core::rng::normal::fill(&mut rng, &mut b);
/// b.iter_mut().for_each(|v| *v += 10.0); // far apart
/// let acc = c2st(&a, &b, 2, &C2stConfig::default(), 1)?;
/// assert!(acc > 0.97, "{acc}");
/// # Ok::<(), tsm_nn::Error>(())
/// ```
///
/// # Errors
/// [`Error::Invalid`] for `dim = 0`, ragged buffers, non-finite values, a sample with fewer
/// points than folds, or a configuration value out of its range.
pub fn c2st(a: &[f64], b: &[f64], dim: usize, cfg: &C2stConfig, seed: u64) -> Result<f64> {
    Ok(c2st_detailed(a, b, dim, cfg, seed)?.accuracy)
}

/// [`c2st`] with the per-fold accuracies and epochs.
///
/// # Errors
/// As [`c2st`].
pub fn c2st_detailed(
    a: &[f64],
    b: &[f64],
    dim: usize,
    cfg: &C2stConfig,
    seed: u64,
) -> Result<C2stResult> {
    check_config(cfg)?;
    if dim == 0 {
        return Err(Error::invalid("c2st dim", dim, "at least 1"));
    }
    for (name, x) in [("c2st sample a", a), ("c2st sample b", b)] {
        if x.len() % dim != 0 {
            return Err(Error::invalid(
                name,
                format!("{} values", x.len()),
                format!("a multiple of the dimension {dim}"),
            ));
        }
        if x.len() / dim < cfg.folds {
            return Err(Error::invalid(
                name,
                format!("{} points", x.len() / dim),
                format!("at least as many points as folds ({})", cfg.folds),
            ));
        }
        if let Some(v) = x.iter().find(|v| !v.is_finite()) {
            return Err(Error::invalid(name, v, "finite values"));
        }
    }
    let points = [a.len() / dim, b.len() / dim];
    let data = standardise(a, b, dim);
    let labels: Vec<f64> = (0..points[0] + points[1])
        .map(|i| if i < points[0] { 0.0 } else { 1.0 })
        .collect();
    // Stratified folds: each class shuffled, point i of a class in fold i mod k.
    let mut rng = tsm_core::rng::stream(seed, 0);
    let mut fold_of = vec![0usize; labels.len()];
    for (start, n) in [(0, points[0]), (points[0], points[1])] {
        let mut idx: Vec<usize> = (start..start + n).collect();
        idx.shuffle(&mut rng);
        for (i, &p) in idx.iter().enumerate() {
            fold_of[p] = i % cfg.folds;
        }
    }
    let hidden = cfg.hidden.unwrap_or(10 * dim).max(1);
    let per_fold: Vec<([usize; 2], [usize; 2], usize)> = (0..cfg.folds)
        .into_par_iter()
        .map(|fold| {
            let train: Vec<usize> = (0..labels.len()).filter(|&i| fold_of[i] != fold).collect();
            let test: Vec<usize> = (0..labels.len()).filter(|&i| fold_of[i] == fold).collect();
            let mut rng = tsm_core::rng::stream(seed, 1 + fold as u64);
            let mut net = Mlp::new(dim, hidden, cfg.layers, &mut rng);
            let epochs = net.fit(&data, &labels, &train, cfg, &mut rng);
            // Correct predictions and held-out points per class.
            let (mut correct, mut total) = ([0usize; 2], [0usize; 2]);
            let mut scratch = net.scratch();
            for &i in &test {
                let class = usize::from(labels[i] > 0.5);
                let z = net.forward(&data[i * dim..(i + 1) * dim], &mut scratch);
                total[class] += 1;
                if (z > 0.0) == (class == 1) {
                    correct[class] += 1;
                }
            }
            (correct, total, epochs)
        })
        .collect();
    let balanced = |c: [usize; 2], t: [usize; 2]| {
        0.5 * (c[0] as f64 / t[0].max(1) as f64 + c[1] as f64 / t[1].max(1) as f64)
    };
    let (mut correct, mut total) = ([0usize; 2], [0usize; 2]);
    for (c, t, _) in &per_fold {
        for k in 0..2 {
            correct[k] += c[k];
            total[k] += t[k];
        }
    }
    Ok(C2stResult {
        accuracy: balanced(correct, total),
        fold_accuracies: per_fold.iter().map(|(c, t, _)| balanced(*c, *t)).collect(),
        points,
        epochs: per_fold.iter().map(|p| p.2).collect(),
    })
}

fn check_config(cfg: &C2stConfig) -> Result<()> {
    if !(2..=100).contains(&cfg.folds) {
        return Err(Error::invalid("c2st folds", cfg.folds, "2 to 100"));
    }
    if !(1..=8).contains(&cfg.layers) {
        return Err(Error::invalid("c2st layers", cfg.layers, "1 to 8"));
    }
    if cfg.hidden == Some(0) || cfg.hidden.is_some_and(|h| h > 1 << 14) {
        return Err(Error::invalid(
            "c2st hidden",
            format!("{:?}", cfg.hidden),
            "None or 1 to 16384",
        ));
    }
    if !(1..=100_000).contains(&cfg.max_epochs) {
        return Err(Error::invalid(
            "c2st max_epochs",
            cfg.max_epochs,
            "1 to 10⁵",
        ));
    }
    if cfg.batch == 0 {
        return Err(Error::invalid("c2st batch", cfg.batch, "at least 1"));
    }
    if !(cfg.lr.is_finite() && cfg.lr > 0.0) {
        return Err(Error::invalid("c2st lr", cfg.lr, "finite and > 0"));
    }
    for (name, v) in [("c2st l2", cfg.l2), ("c2st tol", cfg.tol)] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(Error::invalid(name, v, "finite and ≥ 0"));
        }
    }
    Ok(())
}

/// The pooled points, each coordinate standardised by the pooled mean and standard deviation
/// (a constant coordinate is only centred).
fn standardise(a: &[f64], b: &[f64], dim: usize) -> Vec<f64> {
    let mut data = a.to_vec();
    data.extend_from_slice(b);
    let n = (data.len() / dim) as f64;
    for k in 0..dim {
        let mean = data.iter().skip(k).step_by(dim).sum::<f64>() / n;
        let var = data
            .iter()
            .skip(k)
            .step_by(dim)
            .map(|v| (v - mean) * (v - mean))
            .sum::<f64>()
            / n;
        let sd = if var > 0.0 { var.sqrt() } else { 1.0 };
        for v in data.iter_mut().skip(k).step_by(dim) {
            *v = (*v - mean) / sd;
        }
    }
    data
}

/// A dense layer `out = W x + b`, `W` row-major `[n_out, n_in]`, with its Adam moments.
struct Dense {
    n_in: usize,
    n_out: usize,
    w: Vec<f64>,
    b: Vec<f64>,
    gw: Vec<f64>,
    gb: Vec<f64>,
    mw: Vec<f64>,
    vw: Vec<f64>,
    mb: Vec<f64>,
    vb: Vec<f64>,
}

impl Dense {
    /// Glorot-uniform weights and biases (`U(±√(6/(n_in + n_out)))`), as scikit-learn's MLP.
    fn new<R: Rng + ?Sized>(n_in: usize, n_out: usize, rng: &mut R) -> Self {
        let bound = (6.0 / (n_in + n_out) as f64).sqrt();
        let mut draw = |n: usize| -> Vec<f64> {
            (0..n)
                .map(|_| bound * (2.0 * rng.random::<f64>() - 1.0))
                .collect()
        };
        let w = draw(n_in * n_out);
        let b = draw(n_out);
        Self {
            n_in,
            n_out,
            gw: vec![0.0; w.len()],
            gb: vec![0.0; n_out],
            mw: vec![0.0; w.len()],
            vw: vec![0.0; w.len()],
            mb: vec![0.0; n_out],
            vb: vec![0.0; n_out],
            w,
            b,
        }
    }

    fn forward(&self, x: &[f64], out: &mut [f64]) {
        for (o, (row, b)) in out
            .iter_mut()
            .zip(self.w.chunks_exact(self.n_in).zip(&self.b))
        {
            *o = b + row.iter().zip(x).map(|(w, x)| w * x).sum::<f64>();
        }
    }
}

/// A ReLU MLP with one logit output.
struct Mlp {
    layers: Vec<Dense>,
    step: i32,
}

/// Per-layer activations of one point (input of each layer, then the logit).
struct Scratch {
    acts: Vec<Vec<f64>>,
    deltas: Vec<Vec<f64>>,
}

impl Mlp {
    fn new<R: Rng + ?Sized>(dim: usize, hidden: usize, depth: usize, rng: &mut R) -> Self {
        let mut layers = Vec::with_capacity(depth + 1);
        let mut n_in = dim;
        for _ in 0..depth {
            layers.push(Dense::new(n_in, hidden, rng));
            n_in = hidden;
        }
        layers.push(Dense::new(n_in, 1, rng));
        Self { layers, step: 0 }
    }

    fn scratch(&self) -> Scratch {
        let mut acts: Vec<Vec<f64>> = vec![vec![0.0; self.layers[0].n_in]];
        acts.extend(self.layers.iter().map(|l| vec![0.0; l.n_out]));
        let deltas = self.layers.iter().map(|l| vec![0.0; l.n_out]).collect();
        Scratch { acts, deltas }
    }

    /// The logit at `x`; `s.acts` holds every layer's output (ReLU applied on hidden ones).
    fn forward(&self, x: &[f64], s: &mut Scratch) -> f64 {
        s.acts[0].copy_from_slice(x);
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let (inp, out) = s.acts.split_at_mut(l + 1);
            layer.forward(&inp[l], &mut out[0]);
            if l < last {
                out[0].iter_mut().for_each(|v| *v = v.max(0.0));
            }
        }
        s.acts[last + 1][0]
    }

    /// Adds `d loss/d params` at one point with logit gradient `dz` to the layers' gradients.
    fn backward(&mut self, dz: f64, s: &mut Scratch) {
        let last = self.layers.len() - 1;
        s.deltas[last][0] = dz;
        for l in (0..=last).rev() {
            let layer = &mut self.layers[l];
            let inp = &s.acts[l];
            for (o, &d) in s.deltas[l].iter().enumerate() {
                layer.gb[o] += d;
                if d != 0.0 {
                    for (g, x) in layer.gw[o * layer.n_in..(o + 1) * layer.n_in]
                        .iter_mut()
                        .zip(inp)
                    {
                        *g += d * x;
                    }
                }
            }
            if l > 0 {
                let (lower, upper) = s.deltas.split_at_mut(l);
                let below = &mut lower[l - 1];
                below.iter_mut().for_each(|v| *v = 0.0);
                for (o, &d) in upper[0].iter().enumerate() {
                    if d != 0.0 {
                        let row = &layer.w[o * layer.n_in..(o + 1) * layer.n_in];
                        for (b, w) in below.iter_mut().zip(row) {
                            *b += d * w;
                        }
                    }
                }
                // ReLU': the activation of layer l − 1 is positive.
                for (b, a) in below.iter_mut().zip(&s.acts[l]) {
                    if *a <= 0.0 {
                        *b = 0.0;
                    }
                }
            }
        }
    }

    /// One Adam step on the mean gradient over `n` points plus the L2 penalty's.
    fn adam_step(&mut self, n: usize, cfg: &C2stConfig) {
        const B1: f64 = 0.9;
        const B2: f64 = 0.999;
        const EPS: f64 = 1e-8;
        self.step += 1;
        let c1 = 1.0 - B1.powi(self.step);
        let c2 = 1.0 - B2.powi(self.step);
        let scale = 1.0 / n as f64;
        let update = |p: &mut [f64], g: &mut [f64], m: &mut [f64], v: &mut [f64], decay: f64| {
            for i in 0..p.len() {
                let gi = g[i] * scale + decay * p[i];
                m[i] = B1 * m[i] + (1.0 - B1) * gi;
                v[i] = B2 * v[i] + (1.0 - B2) * gi * gi;
                p[i] -= cfg.lr * (m[i] / c1) / ((v[i] / c2).sqrt() + EPS);
                g[i] = 0.0;
            }
        };
        for layer in &mut self.layers {
            update(
                &mut layer.w,
                &mut layer.gw,
                &mut layer.mw,
                &mut layer.vw,
                cfg.l2 * scale,
            );
            update(
                &mut layer.b,
                &mut layer.gb,
                &mut layer.mb,
                &mut layer.vb,
                0.0,
            );
        }
    }

    /// Trains on the points `train` of `data` with minibatch Adam and early stopping on the
    /// epoch's mean cross-entropy; returns the number of epochs run.
    fn fit<R: Rng + ?Sized>(
        &mut self,
        data: &[f64],
        labels: &[f64],
        train: &[usize],
        cfg: &C2stConfig,
        rng: &mut R,
    ) -> usize {
        let dim = self.layers[0].n_in;
        let batch = cfg.batch.min(train.len()).max(1);
        let mut order = train.to_vec();
        let mut scratch = self.scratch();
        let (mut best, mut stale) = (f64::INFINITY, 0);
        for epoch in 1..=cfg.max_epochs {
            order.shuffle(rng);
            let mut loss = 0.0;
            for chunk in order.chunks(batch) {
                for &i in chunk {
                    let z = self.forward(&data[i * dim..(i + 1) * dim], &mut scratch);
                    let y = labels[i];
                    // Cross-entropy with logits: softplus(z) − y z; its z-gradient σ(z) − y.
                    loss += z.max(0.0) + (-z.abs()).exp().ln_1p() - y * z;
                    self.backward(sigmoid(z) - y, &mut scratch);
                }
                self.adam_step(chunk.len(), cfg);
            }
            loss /= order.len() as f64;
            if loss > best - cfg.tol {
                stale += 1;
                if stale >= cfg.patience {
                    return epoch;
                }
            } else {
                stale = 0;
            }
            best = best.min(loss);
        }
        cfg.max_epochs
    }
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsm_core::rng::{normal, stream};

    fn gaussian(n: usize, d: usize, mean: f64, sd: f64, seed: u64) -> Vec<f64> {
        let mut x = vec![0.0; n * d];
        normal::fill(&mut stream(seed, 99), &mut x);
        x.iter_mut().for_each(|v| *v = mean + sd * *v);
        x
    }

    #[test]
    fn one_distribution_gives_chance_accuracy() {
        // Two samples of N(0, I₂), 1000 points each: every held-out prediction is a fair
        // coin, so the accuracy is 0.5 with standard error 0.5/√2000 ≈ 0.011; a 5σ band
        // (fixed seeds) fails ~1 run in 1.7 million when the code is right.
        let (a, b) = (
            gaussian(1000, 2, 0.0, 1.0, 1),
            gaussian(1000, 2, 0.0, 1.0, 2),
        );
        let r = c2st_detailed(&a, &b, 2, &C2stConfig::default(), 7).unwrap();
        let se = r.null_std_err();
        assert!((se - 0.5 / 2000f64.sqrt()).abs() < 1e-12);
        assert!((r.accuracy - 0.5).abs() < 5.0 * se, "{r:?}");
        assert_eq!(r.fold_accuracies.len(), 5);
        // Same seed, same answer (folds train in parallel into fixed slots).
        let again = c2st_detailed(&a, &b, 2, &C2stConfig::default(), 7).unwrap();
        assert_eq!(r, again);
    }

    #[test]
    fn separated_gaussians_are_told_apart() {
        // Means 8 sd apart: the Bayes accuracy is Φ(4) ≈ 0.99997.
        let (a, b) = (gaussian(500, 2, 0.0, 1.0, 3), gaussian(500, 2, 8.0, 1.0, 4));
        let acc = c2st(&a, &b, 2, &C2stConfig::default(), 1).unwrap();
        assert!(acc > 0.99, "{acc}");
    }

    #[test]
    fn a_variance_difference_needs_the_hidden_layers() {
        // Same mean, sd 1 against sd 3 in 2-D: no linear classifier beats 0.5; the Bayes
        // classifier (a circle, |x|² = 2 ln 9 · 9/8 = 4.94) reaches (P(χ²₂ < 4.94) +
        // P(9 χ²₂ > 4.94))/2 = (0.916 + 0.760)/2 = 0.838. The MLP must come close to it, and
        // cannot beat it by more than sampling noise (5 × 0.011).
        let (a, b) = (
            gaussian(1000, 2, 0.0, 1.0, 5),
            gaussian(1000, 2, 0.0, 3.0, 6),
        );
        let acc = c2st(&a, &b, 2, &C2stConfig::default(), 2).unwrap();
        assert!(acc > 0.78 && acc < 0.838 + 0.056, "{acc}");
    }

    #[test]
    fn unequal_sizes_report_balanced_accuracy() {
        let (a, b) = (gaussian(300, 1, 0.0, 1.0, 8), gaussian(900, 1, 0.0, 1.0, 9));
        let r = c2st_detailed(&a, &b, 1, &C2stConfig::default(), 3).unwrap();
        // Balanced accuracy under the null: sd ½√(1/1200 + 1/3600) ≈ 0.0167; 5σ.
        assert!((r.accuracy - 0.5).abs() < 5.0 * r.null_std_err(), "{r:?}");
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let cfg = C2stConfig::default();
        let a = gaussian(20, 2, 0.0, 1.0, 1);
        assert!(c2st(&a, &a[..39], 2, &cfg, 0).is_err());
        assert!(c2st(&a, &a[..8], 2, &cfg, 0).is_err()); // 4 points < 5 folds
        assert!(c2st(&a, &a, 0, &cfg, 0).is_err());
        let mut nan = a.clone();
        nan[3] = f64::NAN;
        assert!(c2st(&a, &nan, 2, &cfg, 0).is_err());
        for bad in [
            C2stConfig {
                folds: 1,
                ..cfg.clone()
            },
            C2stConfig {
                lr: 0.0,
                ..cfg.clone()
            },
            C2stConfig {
                hidden: Some(0),
                ..cfg.clone()
            },
            C2stConfig {
                batch: 0,
                ..cfg.clone()
            },
            C2stConfig {
                l2: f64::NAN,
                ..cfg.clone()
            },
        ] {
            let err = c2st(&a, &a, 2, &bad, 0).unwrap_err();
            assert!(matches!(err, Error::Invalid { .. }), "{err}");
        }
    }
}
