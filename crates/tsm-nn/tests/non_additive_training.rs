//! Score networks trained with the non-additive TSM loss (De Bortoli et al. (2024), *Target
//! Score Matching*, Prop. 3.1, eq. 10) recover the exact score of the warped and the
//! multiplicative log-normal test models.

mod common;

use rand::Rng;
use tsm_core::noise_model::{LogNormal, NoiseModel, Warped};
use tsm_core::target::{Dim, Sample, Score};
use tsm_nn::candle::Device;
use tsm_nn::non_additive::{score_error, NoisedBatches, NoisedTrainer, NonAdditiveLoss};
use tsm_nn::{Trainer, TrainerOptions};
use tsm_targets::noise::{ExactNoisedModel, LogGaussianMixture, WarpedMixture};
use tsm_targets::GaussianMixture;

fn warped() -> WarpedMixture {
    let u = GaussianMixture::isotropic(
        vec![0.5, 0.5],
        vec![vec![-1.0, 0.5], vec![1.0, -0.5]],
        vec![0.4, 0.4],
    )
    .expect("u");
    WarpedMixture::new(u, Warped::new(2, 0.8, 0.3).expect("warp")).expect("model")
}

fn log_normal() -> LogGaussianMixture {
    let q = GaussianMixture::isotropic(
        vec![0.5, 0.5],
        vec![vec![-0.3, 0.2], vec![0.6, -0.2]],
        vec![0.2, 0.25],
    )
    .expect("q");
    LogGaussianMixture::new(q, LogNormal::new(2, 0.3).expect("noise")).expect("model")
}

/// The log-normal model with Prop. 3.1 applied mechanically: the density factor
/// `J(y) = Π yᵢ⁻¹` of `p(y | x)` ignored, so the TSM target is the transport plus the
/// log-determinant gradient only, whose conditional mean is `∇log p_Y(y) + 1/y`
/// (`docs/bridges-and-noise.md`).
#[derive(Debug, Clone, Copy)]
struct Mechanical(LogNormal);

impl Dim for Mechanical {
    fn dim(&self) -> usize {
        self.0.dim()
    }
}

impl NoiseModel for Mechanical {
    fn name(&self) -> &'static str {
        "log_normal_mechanical"
    }
    fn phi(&self, y: &[f64], x: &[f64], z: &mut [f64]) {
        self.0.phi(y, x, z)
    }
    fn phi_inv(&self, y: &[f64], z: &[f64], x: &mut [f64]) {
        self.0.phi_inv(y, z, x)
    }
    fn log_abs_det_phi_inv(&self, y: &[f64], z: &[f64]) -> f64 {
        self.0.log_abs_det_phi_inv(y, z)
    }
    fn transport(&self, y: &[f64], x: &[f64], v: &[f64], out: &mut [f64]) {
        self.0.transport(y, x, v, out)
    }
    fn add_grad_log_det(&self, y: &[f64], x: &[f64], out: &mut [f64]) {
        self.0.add_grad_log_det(y, x, out)
    }
    fn dsi_integrand(&self, x: &[f64], y: &[f64], out: &mut [f64]) {
        self.0.dsi_integrand(x, y, out)
    }
    fn sample_noised<R: Rng + ?Sized>(&self, rng: &mut R, x: &[f64], y: &mut [f64]) {
        self.0.sample_noised(rng, x, y)
    }
}

/// Trains `steps` steps on batches of `target` under `noise` with `loss` and returns the
/// relative score error of the EMA model against `exact`'s score (4000 points, fixed seed).
fn train<M, T, N>(name: &str, exact: &M, target: &T, noise: &N, loss: NonAdditiveLoss) -> f64
where
    M: ExactNoisedModel,
    T: Score + Sample,
    N: NoiseModel,
{
    let dev = Device::Cpu;
    let cfg = common::plain_config("non_additive", 13, STEPS, None);
    let src = NoisedBatches::new(target, noise, loss, &cfg).expect("batches");
    let mut t: NoisedTrainer<'_, T, N> =
        Trainer::with_source(cfg, src, &dev, TrainerOptions::with_threads(1)).expect("trainer");
    let before = score_error(&t.model(true, &dev).expect("m"), exact, 4000, 77, &dev).expect("e");
    t.run(None, |_, _| {}).expect("train");
    let after = score_error(&t.model(true, &dev).expect("m"), exact, 4000, 77, &dev).expect("e");
    eprintln!(
        "{name} {loss}: score error {:.4} of base {:.4} ({:.2}%; untrained {:.4})",
        after.mse,
        after.base,
        100.0 * after.relative(),
        before.mse
    );
    assert!(before.relative() > 0.5, "{name}: untrained {before:?}");
    after.relative()
}

/// Threshold, as the diffusion training tests: the trained model leaves less than 3% of
/// `E‖∇log p_Y‖²` unexplained (the untrained network leaves ~100%). Measured at 2000 steps
/// (seed 13): warped TSM 0.18%, DSM 0.32%; log-normal TSM 1.2%, DSM 0.7%. The evaluation's
/// Monte Carlo noise (4000 points, fixed seed) is a few % of the error, far below the margin.
/// The mechanical log-normal target misses by `E‖1/Y‖²` in the minimiser, well above 3%, so
/// the test can fail on a biased target.
const THRESHOLD: f64 = 0.03;
const STEPS: u64 = 2000;

#[test]
fn non_additive_tsm_recovers_the_exact_score() {
    let w = warped();
    let l = log_normal();
    for loss in [NonAdditiveLoss::Tsm, NonAdditiveLoss::Dsm] {
        let e = train("warped", &w, w.target(), w.noise(), loss);
        assert!(e < THRESHOLD, "warped {loss}: relative error {e}");
        let e = train("log_normal", &l, l.target(), l.noise(), loss);
        assert!(e < THRESHOLD, "log_normal {loss}: relative error {e}");
    }
    let mechanical = Mechanical(*l.noise());
    let e = train(
        "log_normal mechanical",
        &l,
        l.target(),
        &mechanical,
        NonAdditiveLoss::Tsm,
    );
    assert!(
        e > THRESHOLD,
        "the biased target passed: relative error {e}"
    );
}
