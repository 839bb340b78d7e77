//! Bridges and non-additive noise (De Bortoli et al. 2024, *Target Score Matching*, §3.1 and
//! §3.3, Props. 3.1 and 3.4): the variance of the bridge score identities against `α`, as
//! Fig. 2 does against `t`, and score networks trained with the target score losses against
//! DSM.
//!
//! `cargo xtask reproduce-bridge [--out DIR] [--seed S] [--quick]`
//!
//! The bridge is `Y = α X₀ + (1 − α) X₁ + W` between the 2-D two-mode mixture
//! `p₀ = ½N((−1, ½), 0.3² I) + ½N((1, −½), 0.3² I)` and `p₁ = N(0, I)`, `W ~ N(0, s² I)`.
//!
//! - Variance (top row, one panel per `s² ∈ {0.01, 0.1, 1}`): for each `α = k/20`, `M` points
//!   `y ~ p_Y` and `K` exact posterior draws `(x₀, x₁) ~ p(x₀, x₁ | y)` each; the variance of
//!   one draw of each integrand — (12) `α⁻¹∇log p₀(x₀)`, (13) `(1 − α)⁻¹∇log p₁(x₁)`, (14)
//!   `∇log p₀(x₀) + ∇log p₁(x₁)` and the DSI `−(y − αx₀ − (1 − α)x₁)/s²` — is the trace of its
//!   posterior covariance, averaged over `y` (with its standard error over `y`).
//! - Training (bottom row): the relative score error `E‖s_θ − ∇log p_Y‖²/E‖∇log p_Y‖²` of the
//!   EMA network against iterations, for the bridge with `s² = 0.01` (eq. 15 vs DSM; the
//!   network's time input is `α`, drawn uniformly on `[0.05, 0.95]`, evaluated at
//!   `α ∈ {0.1, …, 0.9}`), the warped model `Y = m(X) + 0.3 W`, `m(x) = x + 0.8 tanh x`, and
//!   the multiplicative log-normal model `Y = X ⊙ exp(0.3 W)` (non-additive TSM, Prop. 3.1 with
//!   the density factor, vs DSM).
//!
//! Output `bridge.csv` columns: `s2,alpha,estimator,variance,variance_se`;
//! `bridge_training.csv`: `model,loss,step,score_mse,score_base,relative_error`.

use anyhow::Result;
use clap::Parser;
use plotters::chart::SeriesLabelPosition;
use rayon::prelude::*;
use serde::Serialize;
use tsm_core::bridge::{Bridge, BridgeIdentity};
use tsm_core::identity::ScoreIdentity;
use tsm_core::noise_model::{LogNormal, Warped};
use tsm_core::target::{Sample, Score};
use tsm_core::weighting::{TimeRange, Weighting};
use tsm_experiments::output::RunTimer;
use tsm_experiments::plot::{save_svg_png, Panel, PanelGrid, Series};
use tsm_experiments::{init_tracing, FigureArgs, OutputDir};
use tsm_nn::bridge::{BridgeBatches, ScoreError};
use tsm_nn::candle::Device;
use tsm_nn::loss::{BatchSource, LossConfig, TargetVariances};
use tsm_nn::non_additive::{NoisedBatches, NonAdditiveLoss};
use tsm_nn::optim::AdamConfig;
use tsm_nn::{MlpConfig, ModelConfig, ScoreModel, TrainConfig, Trainer, TrainerOptions};
use tsm_targets::bridge::MixtureBridge;
use tsm_targets::noise::{ExactNoisedModel, LogGaussianMixture, WarpedMixture};
use tsm_targets::GaussianMixture;

/// Bridges and non-additive noise: the variance of the bridge identities (12), (13), (14)
/// and the DSI against α, and score networks trained with the TSM losses (eq. 15; Prop. 3.1)
/// against DSM, with their score error.
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
struct Args {
    #[command(flatten)]
    common: FigureArgs,
}

/// The sizes of a run.
#[derive(Debug, Clone, Copy, Serialize)]
struct Sizes {
    /// `α = k/alpha_steps`, `k = 1 … alpha_steps − 1`.
    alpha_steps: usize,
    /// Points `y ~ p_Y` per `α`.
    points: usize,
    /// Posterior draws per point.
    draws: usize,
    /// Training steps per run.
    steps: u64,
    /// Evaluate every this many steps.
    eval_every: u64,
    /// Hidden width of the MLP (3 hidden layers).
    hidden: usize,
    /// Batch size.
    batch: usize,
    /// Evaluation points per `α` (bridge) or in all (noise models).
    eval_points: usize,
}

const FULL: Sizes = Sizes {
    alpha_steps: 20,
    points: 4000,
    draws: 200,
    steps: 5000,
    eval_every: 100,
    hidden: 64,
    batch: 256,
    eval_points: 1000,
};

const QUICK: Sizes = Sizes {
    alpha_steps: 10,
    points: 200,
    draws: 50,
    steps: 600,
    eval_every: 100,
    hidden: 32,
    batch: 128,
    eval_points: 200,
};

/// `s²` of the variance panels; the first is the training bridge's.
const NOISE_VARS: [f64; 3] = [0.01, 0.1, 1.0];
const ESTIMATORS: [(BridgeIdentity, &str); 4] = [
    (BridgeIdentity::X0, "(12) x0"),
    (BridgeIdentity::X1, "(13) x1"),
    (BridgeIdentity::Sum, "(14) sum"),
    (BridgeIdentity::Dsi, "DSI"),
];

#[derive(Debug, Serialize)]
struct VarianceRow {
    s2: f64,
    alpha: f64,
    estimator: &'static str,
    variance: f64,
    variance_se: f64,
}

#[derive(Debug, Serialize)]
struct TrainingRow {
    model: &'static str,
    loss: &'static str,
    step: u64,
    score_mse: f64,
    score_base: f64,
    relative_error: f64,
}

#[derive(Debug, Serialize)]
struct Parameters {
    sizes: Sizes,
    p0: &'static str,
    p1: &'static str,
    noise_vars: [f64; 3],
    training_noise_var: f64,
    alpha_range: [f64; 2],
    alpha_eval: Vec<f64>,
    warped: &'static str,
    log_normal: &'static str,
    learning_rate: f64,
    ema_decay: f64,
    final_relative_error: Vec<Final>,
}

#[derive(Debug, Serialize)]
struct Final {
    model: &'static str,
    loss: &'static str,
    relative_error: f64,
}

fn ends() -> Result<(GaussianMixture, GaussianMixture)> {
    let p0 = GaussianMixture::isotropic(
        vec![0.5, 0.5],
        vec![vec![-1.0, 0.5], vec![1.0, -0.5]],
        vec![0.3, 0.3],
    )?;
    Ok((p0, GaussianMixture::gaussian(2, 1.0)?))
}

/// The variance rows of one `(s², α)` cell, from the random stream `(seed, item)`.
fn variance_cell(
    p0: &GaussianMixture,
    p1: &GaussianMixture,
    s2: f64,
    alpha: f64,
    sizes: Sizes,
    seed: u64,
    item: u64,
) -> Result<Vec<VarianceRow>> {
    let model = MixtureBridge::new(p0.clone(), p1.clone(), Bridge::new(alpha, s2)?)?;
    let marginal = model.marginal()?;
    let coefficients = ESTIMATORS
        .iter()
        .map(|(id, _)| id.coefficients(model.bridge()))
        .collect::<tsm_core::Result<Vec<_>>>()?;
    let d = 2;
    let mut rng = tsm_core::rng::stream(seed, item);
    let (mut y, mut x0, mut x1) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
    let (mut s0, mut s1, mut l) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
    let k = ESTIMATORS.len();
    // Per estimator: sum and sum of squares over points of the per-point variance.
    let (mut v_sum, mut v_sq) = (vec![0.0; k], vec![0.0; k]);
    let (mut sum, mut sq) = (vec![0.0; k * d], vec![0.0; k * d]);
    for _ in 0..sizes.points {
        marginal.sample_into(&mut rng, &mut y);
        let post = model.posterior(&y)?;
        sum.iter_mut().for_each(|v| *v = 0.0);
        sq.iter_mut().for_each(|v| *v = 0.0);
        for _ in 0..sizes.draws {
            post.sample_into(&mut rng, &mut x0, &mut x1);
            p0.score(&x0, &mut s0);
            p1.score(&x1, &mut s1);
            for (e, c) in coefficients.iter().enumerate() {
                c.apply_into(&x0, &x1, &y, &s0, &s1, &mut l);
                for j in 0..d {
                    sum[e * d + j] += l[j];
                    sq[e * d + j] += l[j] * l[j];
                }
            }
        }
        let n = sizes.draws as f64;
        for e in 0..k {
            // Unbiased per-point variance, summed over coordinates (the covariance's trace).
            let v: f64 = (0..d)
                .map(|j| {
                    let m = sum[e * d + j] / n;
                    (sq[e * d + j] / n - m * m).max(0.0) * n / (n - 1.0)
                })
                .sum();
            v_sum[e] += v;
            v_sq[e] += v * v;
        }
    }
    let m = sizes.points as f64;
    Ok(ESTIMATORS
        .iter()
        .enumerate()
        .map(|(e, (_, name))| {
            let mean = v_sum[e] / m;
            let var = (v_sq[e] / m - mean * mean).max(0.0) * m / (m - 1.0);
            VarianceRow {
                s2,
                alpha,
                estimator: name,
                variance: mean,
                variance_se: (var / m).sqrt(),
            }
        })
        .collect())
}

/// The training configuration shared by every run.
fn config(sizes: Sizes, seed: u64) -> Result<TrainConfig> {
    let loss = LossConfig::new(
        ScoreIdentity::Tsi,
        Weighting::Uniform,
        &TargetVariances::new(1.0, None)?,
    )?
    .with_range(TimeRange::new(ALPHA_RANGE[0], ALPHA_RANGE[1])?);
    let model = ModelConfig {
        mlp: MlpConfig {
            dim: 2,
            hidden: sizes.hidden,
            depth: 3,
            embedding_dim: 16,
            time_scale: 1000.0,
            condition_dim: 0,
        },
        ..ModelConfig::default()
    };
    Ok(TrainConfig {
        batch: sizes.batch,
        steps: sizes.steps,
        seed,
        checkpoint_every: 0,
        adam: AdamConfig {
            lr: LR,
            ema_decay: EMA,
            ..Default::default()
        },
        ..TrainConfig::new("bridge", model, loss)
    })
}

const ALPHA_RANGE: [f64; 2] = [0.05, 0.95];
const LR: f64 = 3e-3;
const EMA: f64 = 0.99;

/// Trains from `source` and records the score error every `eval_every` steps (and at 0).
fn curve<S: BatchSource>(
    cfg: TrainConfig,
    source: S,
    model: &'static str,
    loss: &'static str,
    every: u64,
    eval: impl Fn(&ScoreModel) -> tsm_nn::Result<ScoreError>,
) -> Result<Vec<TrainingRow>> {
    let dev = Device::Cpu;
    let mut t: Trainer<'_, (), S> =
        Trainer::with_source(cfg, source, &dev, TrainerOptions::default())?;
    let mut rows = Vec::new();
    loop {
        let e = eval(&t.model(true, &dev)?)?;
        rows.push(TrainingRow {
            model,
            loss,
            step: t.step(),
            score_mse: e.mse,
            score_base: e.base,
            relative_error: e.relative(),
        });
        if t.step() >= t.config().steps {
            break;
        }
        for _ in 0..every.min(t.config().steps - t.step()) {
            t.train_step()?;
        }
    }
    tracing::info!(
        "{model} {loss}: relative score error {:.4}",
        rows.last().map_or(f64::NAN, |r| r.relative_error)
    );
    Ok(rows)
}

fn noise_curve<M>(
    exact: &M,
    loss: NonAdditiveLoss,
    model: &'static str,
    sizes: Sizes,
    seed: u64,
) -> Result<Vec<TrainingRow>>
where
    M: ExactNoisedModel,
    M::Target: Score + Sample,
{
    let cfg = config(sizes, seed)?;
    let source = NoisedBatches::new(exact.target(), exact.noise(), loss, &cfg)?;
    let dev = Device::Cpu;
    curve(cfg, source, model, loss.name(), sizes.eval_every, |m| {
        tsm_nn::non_additive::score_error(m, exact, sizes.eval_points, seed ^ 0xe7a1, &dev)
    })
}

fn main() -> Result<()> {
    init_tracing();
    let args = Args::parse();
    if args.common.dry_run(
        "bridge",
        "the bridge identities' variances and the TSM vs DSM training runs",
    ) {
        return Ok(());
    }
    let out = OutputDir::create(args.common.out_dir("bridge"))?;
    let sizes = if args.common.quick { QUICK } else { FULL };
    let seed = args.common.seed;
    let timer = RunTimer::start();
    let (p0, p1) = ends()?;

    // Variance against α.
    let alphas: Vec<f64> = (1..sizes.alpha_steps)
        .map(|k| k as f64 / sizes.alpha_steps as f64)
        .collect();
    let cells: Vec<(f64, f64)> = NOISE_VARS
        .iter()
        .flat_map(|&s2| alphas.iter().map(move |&a| (s2, a)))
        .collect();
    let variance: Vec<VarianceRow> = cells
        .par_iter()
        .enumerate()
        .map(|(item, &(s2, a))| variance_cell(&p0, &p1, s2, a, sizes, seed, item as u64))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    tracing::info!("variances in {:.2} s", timer.elapsed_s());
    out.write_csv("bridge.csv", &variance)?;

    // Training.
    let s2 = NOISE_VARS[0];
    let alpha_eval: Vec<f64> = (1..=9).map(|k| k as f64 / 10.0).collect();
    let dev = Device::Cpu;
    let mut training = Vec::new();
    for (identity, loss) in [
        (BridgeIdentity::Sum, "tsm (eq. 15)"),
        (BridgeIdentity::Dsi, "dsm"),
    ] {
        let cfg = config(sizes, seed)?;
        let source = BridgeBatches::new(&p0, &p1, s2, identity, &cfg)?;
        training.extend(curve(cfg, source, "bridge", loss, sizes.eval_every, |m| {
            tsm_nn::bridge::score_error(
                m,
                (&p0, &p1),
                s2,
                &alpha_eval,
                sizes.eval_points,
                seed ^ 0xe7a1,
                &dev,
            )
        })?);
    }
    let u = GaussianMixture::isotropic(
        vec![0.5, 0.5],
        vec![vec![-1.0, 0.5], vec![1.0, -0.5]],
        vec![0.4, 0.4],
    )?;
    let warped = WarpedMixture::new(u, Warped::new(2, 0.8, 0.3)?)?;
    let q = GaussianMixture::isotropic(
        vec![0.5, 0.5],
        vec![vec![-0.3, 0.2], vec![0.6, -0.2]],
        vec![0.2, 0.25],
    )?;
    let log_normal = LogGaussianMixture::new(q, LogNormal::new(2, 0.3)?)?;
    for loss in [NonAdditiveLoss::Tsm, NonAdditiveLoss::Dsm] {
        training.extend(noise_curve(&warped, loss, "warped", sizes, seed)?);
        training.extend(noise_curve(&log_normal, loss, "log_normal", sizes, seed)?);
    }
    out.write_csv("bridge_training.csv", &training)?;

    // The figure.
    let mut panels: Vec<Panel> = NOISE_VARS
        .iter()
        .map(|&s2| {
            ESTIMATORS.iter().enumerate().fold(
                Panel::new(
                    format!("Bridge identities, s² = {s2}"),
                    "α",
                    "estimator variance",
                )
                .log_y(true)
                .legend(Some(SeriesLabelPosition::UpperMiddle)),
                |panel, (k, (_, name))| {
                    let pts = variance
                        .iter()
                        .filter(|r| r.s2 == s2 && r.estimator == *name)
                        .map(|r| (r.alpha, r.variance))
                        .collect();
                    panel.with(Series::line(*name, k, pts))
                },
            )
        })
        .collect();
    for (model, title) in [
        ("bridge", format!("Bridge training, s² = {s2}")),
        ("warped", "Warped noise".to_owned()),
        ("log_normal", "Log-normal noise".to_owned()),
    ] {
        let mut losses: Vec<&str> = training
            .iter()
            .filter(|r| r.model == model)
            .map(|r| r.loss)
            .collect();
        losses.dedup();
        let panel = losses.iter().enumerate().fold(
            Panel::new(title, "iteration", "relative score error")
                .log_y(true)
                .legend(Some(SeriesLabelPosition::UpperRight)),
            |panel, (k, loss)| {
                let pts = training
                    .iter()
                    .filter(|r| r.model == model && r.loss == *loss)
                    .map(|r| (r.step as f64, r.relative_error))
                    .collect();
                panel.with(Series::line(*loss, k, pts))
            },
        );
        panels.push(panel);
    }
    let grid = PanelGrid {
        title: "Bridges and non-additive noise: identity variance against α (top); TSM vs DSM \
                training (bottom)"
            .into(),
        cols: 3,
        panels,
    };
    let [svg, png] = save_svg_png(out.path(), "bridge", (1500, 900), &grid)?;
    let final_relative_error = {
        let mut f: Vec<Final> = Vec::new();
        for r in &training {
            f.retain(|x| !(x.model == r.model && x.loss == r.loss));
            f.push(Final {
                model: r.model,
                loss: r.loss,
                relative_error: r.relative_error,
            });
        }
        f
    };
    let params = Parameters {
        sizes,
        p0: "½N((−1, ½), 0.3² I) + ½N((1, −½), 0.3² I)",
        p1: "N(0, I)",
        noise_vars: NOISE_VARS,
        training_noise_var: s2,
        alpha_range: ALPHA_RANGE,
        alpha_eval,
        warped: "Y = m(X) + 0.3 W, m(x) = x + 0.8 tanh x, m(X) ~ ½N((−1, ½), 0.4² I) + ½N((1, −½), 0.4² I)",
        log_normal: "Y = X exp(0.3 W), log X ~ ½N((−0.3, 0.2), 0.2² I) + ½N((0.6, −0.2), 0.25² I)",
        learning_rate: LR,
        ema_decay: EMA,
        final_relative_error,
    };
    let record = timer.record(
        "bridge",
        seed,
        args.common.quick,
        params,
        &["bridge.csv", "bridge_training.csv", &svg, &png],
    );
    out.write_json("bridge.json", &record)?;
    tracing::info!("wrote {}", out.path().display());
    Ok(())
}
