//! Training score networks on bridges (De Bortoli et al. (2024), *Target Score Matching*,
//! §3.3, Prop. 3.4, eqs. 11–15).
//!
//! The model is `Y = α X₀ + (1 − α) X₁ + W` (eq. 11), `X₀ ~ p₀`, `X₁ ~ p₁`, `W ~ N(0, s² I)`
//! (or `W ≡ 0`). A network `s_θ(y, α)` learns `∇log p_Y(y)` for every `α` of a range at once:
//! **the network's time input is `α` itself** (`t = α`, the identity map of `(0, 1)` onto the
//! time axis of the embedding), so the model, its checkpoints and
//! [`ScoreModel::forward`](crate::ScoreModel::forward) are the ordinary ones with `t` read as
//! `α`. Each row of a batch draws `α ~ U[α_min, α_max]` (the loss's time range), a triple
//! `(x₀, x₁, y)` from the joint law ([`Bridge::sample_joint`]) and the regression target of a
//! [`BridgeIdentity`]:
//!
//! | identity | target `L(x₀, x₁, y)` | loss |
//! |---|---|---|
//! | `sum` | `∇log p₀(x₀) + ∇log p₁(x₁)` | bridge TSM, eq. 15 |
//! | `dsi` | `−(y − α x₀ − (1 − α) x₁)/s²` | DSM (needs `s² > 0`) |
//! | `x0`, `x1`, `convex=W` | eqs. 12, 13 and their mixtures | valid too |
//!
//! and the loss is `(1/n) Σᵢ ‖s_θ(yᵢ, αᵢ) − Lᵢ‖²` (weights `λ ≡ 1`). Each target's
//! conditional mean given `(y, α)` is `∇log p_Y(y)` (Prop. 3.4), so each loss is minimised by
//! the exact score (the argument of Prop. 2.3).
//!
//! The model must use the plain [`Parameterisation::Score`](crate::precond::Parameterisation::Score) output: the other
//! parameterisations read `α_t`, `σ_t` of the diffusion schedule, which mean nothing here.
//! The configuration's [`LossConfig::identity`](crate::loss::LossConfig) and weighting are
//! not used by these batches (its time range is): the bridge identity is given to
//! [`BridgeBatches::new`].
//!
//! [`score_error`] measures a trained model against the exact score of a
//! [`MixtureBridge`].
//!
//! # References
//! [^1]: De Bortoli et al. (2024), *Target Score Matching*, §3.3, Prop. 3.4, eqs. 11–15.

use candle::{Device, Tensor};
use rand::Rng;
use tsm_core::bridge::{Bridge, BridgeIdentity};
use tsm_core::target::{Dim, Sample, Score};
use tsm_core::weighting::TimeRange;
use tsm_targets::bridge::MixtureBridge;
use tsm_targets::GaussianMixture;

use crate::config::TrainConfig;
use crate::loss::{Batch, BatchSource};
use crate::network::{Conditioning, ModelConfig};
use crate::{Result, ScoreModel};

/// A [`Trainer`](crate::Trainer) whose batches come from a bridge between `P0` and `P1`.
pub type BridgeTrainer<'a, P0, P1> = crate::Trainer<'a, (), BridgeBatches<'a, P0, P1>>;

/// Training batches of the bridge model (see the [module docs](self)): rows
/// `(y, α, L(x₀, x₁, y))`.
#[derive(Debug, Clone)]
pub struct BridgeBatches<'a, P0, P1> {
    p0: &'a P0,
    p1: &'a P1,
    noise_var: f64,
    identity: BridgeIdentity,
    range: TimeRange,
    model: ModelConfig,
}

impl<'a, P0, P1> BridgeBatches<'a, P0, P1>
where
    P0: Score + Sample,
    P1: Score + Sample,
{
    /// Batches for the run `cfg` on the bridge between `p0` and `p1` with noise variance
    /// `noise_var` (`s²`; 0 for `W ≡ 0`), regressing on `identity`; `α` uniform on
    /// `cfg.loss`'s time range.
    ///
    /// # Errors
    /// - as [`TrainConfig::validate`];
    /// - [`crate::Error::TargetDimension`] when `p0` or `p1` does not have the model's dimension;
    /// - [`crate::Error::Config`] for a parameterisation other than `score`;
    /// - [`tsm_core::Error::OutOfRange`] naming `alpha` for a range reaching 0 or 1 (`α` must
    ///   lie in `(0, 1)`), naming `noise_var` for a negative or non-finite `s²`;
    ///   [`tsm_core::Error::NonPositive`] for the DSI with `s² = 0`; a convex weight outside
    ///   `[0, 1]` (all through [`crate::Error::Core`]).
    pub fn new(
        p0: &'a P0,
        p1: &'a P1,
        noise_var: f64,
        identity: BridgeIdentity,
        cfg: &TrainConfig,
    ) -> Result<Self> {
        cfg.validate_plain_score(&[Dim::dim(p0), Dim::dim(p1)], "a bridge model")?;
        let range = cfg.loss.range()?;
        // Both ends of the α range must be valid bridges, and the identity defined there.
        for alpha in [range.t_min(), range.t_max()] {
            identity.coefficients(&Bridge::new(alpha, noise_var)?)?;
        }
        Ok(Self {
            p0,
            p1,
            noise_var,
            identity,
            range,
            model: cfg.model.clone(),
        })
    }

    /// The regression target's identity.
    pub fn identity(&self) -> BridgeIdentity {
        self.identity
    }

    /// The range of `α`.
    pub fn range(&self) -> TimeRange {
        self.range
    }
}

impl<P0, P1> BatchSource for BridgeBatches<'_, P0, P1>
where
    P0: Score + Sample,
    P1: Score + Sample,
{
    /// `α` uniform on the range unless `times` (values of `α`, cycled) is given.
    fn sample<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        n: usize,
        times: Option<&[f64]>,
    ) -> Result<Batch> {
        let d = self.model.mlp.dim;
        let mut alphas = Vec::with_capacity(n);
        let (mut yt, mut target) = (vec![0.0f32; n * d], vec![0.0f32; n * d]);
        let (mut x0, mut x1, mut y) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
        let (mut s0, mut s1, mut l) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
        for i in 0..n {
            let alpha = match times {
                Some(ts) => ts[i % ts.len()],
                None => self.range.lerp(rng.random::<f64>()),
            };
            let bridge = Bridge::new(alpha, self.noise_var)?;
            let c = self.identity.coefficients(&bridge)?;
            bridge.sample_joint(self.p0, self.p1, rng, &mut x0, &mut x1, &mut y)?;
            if c.b0 != 0.0 {
                self.p0.score(&x0, &mut s0);
            }
            if c.b1 != 0.0 {
                self.p1.score(&x1, &mut s1);
            }
            c.apply_into(&x0, &x1, &y, &s0, &s1, &mut l);
            let row = i * d..(i + 1) * d;
            for (o, v) in yt[row.clone()].iter_mut().zip(&y) {
                *o = *v as f32;
            }
            for (o, v) in target[row].iter_mut().zip(&l) {
                *o = *v as f32;
            }
            alphas.push(alpha);
        }
        let cond = Conditioning::new(
            &self.model.mlp,
            &self.model.parameterisation,
            &self.model.schedule,
            &alphas,
        )?;
        Ok(Batch {
            n,
            d,
            xt: yt,
            target,
            lambda: vec![1.0; n],
            score0_xt: Vec::new(),
            cond,
            mix: None,
        })
    }
}

/// A trained model's error against an exact score: `mse = mean ‖s_θ − ∇log p‖²` over the
/// evaluation points and `base = mean ‖∇log p‖²` (the error of `s ≡ 0`), so that `mse/base`
/// is the share of the score's second moment left unexplained.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ScoreError {
    /// `mean ‖s_θ(y) − ∇log p(y)‖²`.
    pub mse: f64,
    /// `mean ‖∇log p(y)‖²`.
    pub base: f64,
}

impl ScoreError {
    /// `mse / base`.
    pub fn relative(&self) -> f64 {
        self.mse / self.base
    }
}

/// The error of `model` (trained with `t = α`) against the exact bridge score
/// `∇log p_Y` of the [`MixtureBridge`] between the ends `(p0, p1)` with noise variance `noise_var`:
/// `points` draws `y ~ p_Y` per `α` of `alphas` (from the random stream `(seed, k)` for the
/// `k`-th `α`), all pooled.
///
/// # Errors
/// A bad `α` or `noise_var` (typed, through [`crate::Error::Core`]); mismatched dimensions; the
/// model's errors.
pub fn score_error(
    model: &ScoreModel,
    (p0, p1): (&GaussianMixture, &GaussianMixture),
    noise_var: f64,
    alphas: &[f64],
    points: usize,
    seed: u64,
    device: &Device,
) -> Result<ScoreError> {
    let d = Dim::dim(p0);
    let (mut err, mut base, mut count) = (0.0, 0.0, 0usize);
    for (k, &alpha) in alphas.iter().enumerate() {
        let bridge = Bridge::new(alpha, noise_var)?;
        let marginal = MixtureBridge::new(p0.clone(), p1.clone(), bridge)?.marginal()?;
        let mut rng = tsm_core::rng::stream(seed, k as u64);
        let mut ys = vec![0.0; points * d];
        for y in ys.chunks_exact_mut(d) {
            marginal.sample_into(&mut rng, y);
        }
        let yf: Vec<f32> = ys.iter().map(|&v| v as f32).collect();
        let s: Vec<f32> = model
            .forward(
                &Tensor::from_vec(yf, (points, d), device)?,
                &vec![alpha; points],
                None,
            )?
            .flatten_all()?
            .to_vec1()?;
        let mut exact = vec![0.0; d];
        for (y, si) in ys.chunks_exact(d).zip(s.chunks_exact(d)) {
            marginal.score(y, &mut exact);
            for j in 0..d {
                err += (si[j] as f64 - exact[j]).powi(2);
                base += exact[j].powi(2);
            }
            count += 1;
        }
    }
    let n = count.max(1) as f64;
    Ok(ScoreError {
        mse: err / n,
        base: base / n,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::loss::{LossConfig, TargetVariances};
    use crate::precond::Parameterisation;
    use crate::Error;
    use crate::{MlpConfig, Trainer, TrainerOptions};
    use tsm_core::identity::ScoreIdentity;
    use tsm_core::weighting::Weighting;

    fn ends() -> (GaussianMixture, GaussianMixture) {
        let p0 = GaussianMixture::isotropic(
            vec![0.5, 0.5],
            vec![vec![-1.0, 0.5], vec![1.0, -0.5]],
            vec![0.3, 0.3],
        )
        .expect("p0");
        (p0, GaussianMixture::gaussian(2, 1.0).expect("p1"))
    }

    pub(crate) fn config(range: (f64, f64), steps: u64) -> TrainConfig {
        let loss = LossConfig::new(
            ScoreIdentity::Tsi,
            Weighting::Uniform,
            &TargetVariances::new(1.0, None).expect("variances"),
        )
        .expect("loss")
        .with_range(TimeRange::new(range.0, range.1).expect("range"));
        let model = ModelConfig {
            mlp: MlpConfig {
                dim: 2,
                hidden: 32,
                depth: 3,
                embedding_dim: 16,
                time_scale: 1000.0,
                condition_dim: 0,
            },
            ..ModelConfig::default()
        };
        TrainConfig {
            batch: 64,
            steps,
            seed: 5,
            checkpoint_every: 0,
            ..TrainConfig::new("bridge", model, loss)
        }
    }

    #[test]
    fn batches_hold_the_identity_targets_at_alpha_as_time() {
        let (p0, p1) = ends();
        let cfg = config((0.2, 0.8), 1);
        let src = BridgeBatches::new(&p0, &p1, 0.0, BridgeIdentity::Sum, &cfg).expect("src");
        let mut rng = tsm_core::rng::stream(1, 1);
        let b = src.sample(&mut rng, 16, None).expect("batch");
        assert_eq!((b.n, b.d, b.xt.len(), b.target.len()), (16, 2, 32, 32));
        assert!(b.cond.t.iter().all(|a| (0.2..=0.8).contains(a)));
        assert!(b.lambda.iter().all(|&l| l == 1.0));
        // Fixed α: the rows of `times`, cycled.
        let b = src.sample(&mut rng, 4, Some(&[0.3, 0.6])).expect("batch");
        assert_eq!(b.cond.t, [0.3, 0.6, 0.3, 0.6]);
        // The same stream gives the same batch.
        let again = |k| {
            src.sample(&mut tsm_core::rng::stream(9, k), 8, None)
                .expect("b")
        };
        assert_eq!(again(2), again(2));
    }

    #[test]
    fn bad_configurations_are_typed_errors_naming_the_value() {
        let (p0, p1) = ends();
        let cfg = config((0.0, 0.8), 1);
        let err = BridgeBatches::new(&p0, &p1, 0.1, BridgeIdentity::Sum, &cfg).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Core(tsm_core::Error::OutOfRange { name: "alpha", value, .. }) if value == 0.0
            ),
            "{err}"
        );
        let cfg = config((0.1, 1.0), 1);
        assert!(BridgeBatches::new(&p0, &p1, 0.1, BridgeIdentity::X1, &cfg).is_err());
        let cfg = config((0.1, 0.9), 1);
        let err = BridgeBatches::new(&p0, &p1, -0.5, BridgeIdentity::Sum, &cfg).unwrap_err();
        assert!(err.to_string().contains("-0.5"), "{err}");
        let err = BridgeBatches::new(&p0, &p1, 0.0, BridgeIdentity::Dsi, &cfg).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Core(tsm_core::Error::NonPositive {
                    name: "noise_var",
                    ..
                })
            ),
            "{err}"
        );
        let p3 = GaussianMixture::gaussian(3, 1.0).expect("p3");
        assert!(matches!(
            BridgeBatches::new(&p0, &p3, 0.1, BridgeIdentity::Sum, &cfg),
            Err(Error::TargetDimension { .. })
        ));
        let mut eps = config((0.1, 0.9), 1);
        eps.model.parameterisation = Parameterisation::Epsilon;
        assert!(matches!(
            BridgeBatches::new(&p0, &p1, 0.1, BridgeIdentity::Sum, &eps),
            Err(Error::Config { .. })
        ));
    }

    #[test]
    fn a_short_run_trains_and_the_error_is_measured() {
        let (p0, p1) = ends();
        let cfg = config((0.1, 0.9), 3);
        let src = BridgeBatches::new(&p0, &p1, 0.0, BridgeIdentity::Sum, &cfg).expect("src");
        let mut t: BridgeTrainer<'_, _, _> =
            Trainer::with_source(cfg, src, &Device::Cpu, TrainerOptions::with_threads(1))
                .expect("trainer");
        t.run(None, |_, _| {}).expect("run");
        assert_eq!(t.step(), 3);
        let model = t.model(true, &Device::Cpu).expect("model");
        let e =
            score_error(&model, (&p0, &p1), 0.0, &[0.3, 0.7], 50, 1, &Device::Cpu).expect("error");
        assert!(e.mse.is_finite() && e.base > 0.0);
        assert!(score_error(&model, (&p0, &p1), 0.0, &[1.0], 5, 1, &Device::Cpu).is_err());
    }
}
