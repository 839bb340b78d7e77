//! Fig. 5 of *Target Score Matching* (De Bortoli et al. 2024, §4.2): a score network trained on the 2-D
//! eight-mode mixture (8 modes on a circle of radius 4, std 0.5) with the four regression
//! targets DSM, TSM, κ and κ̄ (uniform weighting, `t ~ U[10⁻³, 1 − 10⁻³]`, cosine schedule):
//! (left) the mean regression loss `‖s_θ(t, X_t) − L‖²` against iterations, (middle) the MMD²
//! between data and generated samples against iterations, and (right) the error to the exact
//! marginal score at small `t` — where the paper claims TSM's advantage.
//!
//! `cargo xtask reproduce-fig5 [--out DIR] [--seed S] [--quick] [--steps N] [--seeds K]`
//!
//! Network and optimiser as the paper: MLP with three hidden layers of 128, SiLU, sinusoidal
//! time embedding of dimension 128, Adam with learning rate 10⁻⁴, batch 512. Every
//! `--eval-every` steps, on a fixed evaluation set of 4096 triples `(t, x_0, x_t)` (the same for
//! every loss and step):
//! - `regression_loss`: mean of `‖s_θ(x_t, t) − L(x_0, x_t, t)‖²` with the loss's own target `L`
//!   (also over `t < 0.1` and `t > 0.9`);
//! - `score_mse`: mean of `‖s_θ(x_t, t) − ∇log p_t(x_t)‖²` against the exact marginal score
//!   (also over `t < 0.1`);
//! - `mmd2`: unbiased MMD² (RBF kernel) between `--n-mmd` samples from the EMA network
//!   (reverse-SDE Euler–Maruyama, `--sampler-steps` steps) and as many exact samples, with the
//!   bandwidth fixed once by the median heuristic on exact samples (`mmd2`) and at an eighth of
//!   it (`mmd2_local`, which resolves the modes' shape).
//!
//! Output `fig5.csv` columns: `seed,loss,step,regression_loss,regression_loss_small_t,
//! regression_loss_large_t,score_mse,score_mse_small_t,mmd2,mmd2_local,train_seconds`.

use anyhow::{Context, Result};
use clap::Parser;
use serde::Serialize;
use tsm_core::identity::ScoreIdentity;
use tsm_core::sampler::SamplerConfig;
use tsm_core::schedule::Schedule;
use tsm_core::target::{Sample, Score};
use tsm_core::weighting::{TimeRange, Weighting};
use tsm_experiments::cli::{count, flag_error, float, usage_error};
use tsm_experiments::output::RunTimer;
use tsm_experiments::plot::{save_svg_png, Panel, PanelGrid, Series, Style};
use tsm_experiments::training::tune_cpu;
use tsm_experiments::{init_tracing, FigureArgs, OutputDir};
use tsm_nn::candle::{Device, Tensor};
use tsm_nn::engine::EngineKind;
use tsm_nn::loss::{Batch, LossConfig};
use tsm_nn::mmd::{median_bandwidth, mmd2_unbiased};
use tsm_nn::score::ModelScore;
use tsm_nn::{ModelConfig, ScoreModel, TrainConfig, Trainer};
use tsm_targets::GaussianMixture;

/// Reproduces Fig. 5: DSM, TSM, κ and κ̄ training on the eight-mode mixture.
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
struct Args {
    #[command(flatten)]
    common: FigureArgs,
    /// Training steps per loss, 1 to 10⁹ [default: 20000, quick: 300]
    #[arg(long, value_parser = count::<u64>(1..=TrainConfig::MAX_STEPS))]
    steps: Option<u64>,
    /// Number of seeds, 1 to 1000 (a band over seeds when > 1) [default: 3, quick: 1]
    #[arg(long, value_parser = count::<u64>(1..=MAX_SEEDS))]
    seeds: Option<u64>,
    /// Evaluate every N steps (at most 10⁴ evaluations per run) [default: steps/20]
    #[arg(long, value_parser = count::<u64>(1..=TrainConfig::MAX_STEPS))]
    eval_every: Option<u64>,
    /// Samples for the MMD, 2 to 20000 [default: 2000, quick: 300]
    #[arg(long, value_parser = count::<usize>(2..=MAX_N_MMD as u64))]
    n_mmd: Option<usize>,
    /// Euler–Maruyama steps of the sampler, 10 to 10⁵ [default: 100, quick: 20]
    #[arg(long, value_parser = count::<usize>(10..=100_000))]
    sampler_steps: Option<usize>,
    /// Batch size (2 to 2²⁰)
    #[arg(long, default_value_t = 512,
          value_parser = count::<usize>(2..=TrainConfig::MAX_BATCH as u64))]
    batch: usize,
    /// Adam learning rate (paper: 1e-4; > 0)
    #[arg(long, default_value_t = 1e-4, value_parser = float().above(0.0))]
    lr: f64,
    /// Upper end of the training time range, in (1e-3, 1] (the evaluation keeps
    /// [1e-3, 1 - 1e-3])
    #[arg(long, default_value_t = 1.0 - 1e-3, value_parser = float().above(1e-3).at_most(1.0))]
    t_max: f64,
}

/// The most seeds.
const MAX_SEEDS: u64 = 1000;
/// The most MMD samples.
const MAX_N_MMD: usize = 20_000;
/// The most evaluations per run.
const MAX_EVALUATIONS: u64 = 10_000;
/// The most training steps of the whole figure (the default run takes 2.4·10⁵).
const MAX_TRAIN_STEPS: u128 = 10_000_000_000;
/// The most MMD kernel terms of the whole figure (the default run: ≈ 10⁹).
const MAX_MMD_TERMS: u128 = 1_000_000_000_000;
/// The most sampler point-steps of the whole figure (the default run: ≈ 2.5·10⁷).
const MAX_SAMPLER_WORK: u128 = 100_000_000_000;

#[derive(Debug, Clone, Serialize)]
struct Row {
    seed: u64,
    loss: &'static str,
    step: u64,
    regression_loss: f64,
    regression_loss_small_t: f64,
    regression_loss_large_t: f64,
    score_mse: f64,
    score_mse_small_t: f64,
    mmd2: f64,
    mmd2_local: f64,
    train_seconds: f64,
}

#[derive(Debug, Serialize)]
struct Parameters {
    target: &'static str,
    losses: Vec<&'static str>,
    weighting: &'static str,
    schedule: &'static str,
    t_range: (f64, f64),
    train_t_max: f64,
    steps: u64,
    seeds: Vec<u64>,
    eval_every: u64,
    batch: usize,
    lr: f64,
    ema_decay: f64,
    hidden: usize,
    depth: usize,
    embedding_dim: usize,
    eval_points: usize,
    small_t: f64,
    large_t: f64,
    n_mmd: usize,
    sampler: &'static str,
    sampler_steps: usize,
    bandwidth: f64,
    bandwidth_local: f64,
    steps_per_second: f64,
}

const SMALL_T: f64 = 0.1;
const LARGE_T: f64 = 0.9;
const EVAL_POINTS: usize = 4096;

/// The four losses, in the figure's order (`κ`, `κ̄` with the target's variances).
const LOSSES: [ScoreIdentity; 4] = [
    ScoreIdentity::Dsi,
    ScoreIdentity::Tsi,
    ScoreIdentity::Kappa {
        sigma_data_sq: None,
    },
    ScoreIdentity::KappaBar {
        sigma_mode_sq: None,
    },
];

/// Evaluation state shared by all runs.
struct Eval {
    batches: Vec<(&'static str, Batch)>,
    exact_scores: Vec<f32>,
    exact_samples: Vec<f64>,
    h: f64,
    sampler: SamplerConfig,
    n_mmd: usize,
}

fn model_scores(model: &ScoreModel, b: &Batch) -> Result<Vec<f32>> {
    let x = Tensor::from_slice(&b.xt, (b.n, b.d), &Device::Cpu)?;
    Ok(model
        .forward_with(&x, &b.cond, None)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

fn evaluate(
    trainer: &Trainer<'_, GaussianMixture>,
    target: &GaussianMixture,
    eval: &Eval,
    loss: &'static str,
    seed: u64,
) -> Result<Row> {
    let schedule = trainer.config().model.schedule;
    let batch = &eval
        .batches
        .iter()
        .find(|(l, _)| *l == loss)
        .ok_or_else(|| anyhow::anyhow!("no evaluation batch"))?
        .1;
    let model = trainer.model(false, &Device::Cpu)?;
    let s = model_scores(&model, batch)?;
    let d = batch.d;
    let (mut reg, mut reg_s, mut reg_l, mut mse, mut mse_s) =
        ([0.0; 2], [0.0; 2], [0.0; 2], [0.0; 2], [0.0; 2]);
    for i in 0..batch.n {
        let (mut r2, mut e2) = (0.0, 0.0);
        for j in i * d..(i + 1) * d {
            r2 += (s[j] as f64 - batch.target[j] as f64).powi(2);
            e2 += (s[j] as f64 - eval.exact_scores[j] as f64).powi(2);
        }
        let t = batch.cond.t[i];
        let add = |acc: &mut [f64; 2], v: f64| {
            acc[0] += v;
            acc[1] += 1.0;
        };
        add(&mut reg, r2);
        add(&mut mse, e2);
        if t < SMALL_T {
            add(&mut reg_s, r2);
            add(&mut mse_s, e2);
        }
        if t > LARGE_T {
            add(&mut reg_l, r2);
        }
    }
    let mean = |a: [f64; 2]| a[0] / a[1].max(1.0);
    let ema = trainer.model(true, &Device::Cpu)?;
    let mut score = ModelScore::new(&ema, Some(target), &Device::Cpu);
    let mut rng = tsm_core::rng::stream(seed, u64::MAX - 2);
    let x = eval
        .sampler
        .sample(&mut score, &schedule, eval.n_mmd, &mut rng)?;
    let bad = x.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        anyhow::bail!(
            "{loss}, seed {seed}, step {}: {bad} of the {} sampled values are not finite (the \
             model's score is not finite)",
            trainer.step(),
            x.len()
        );
    }
    Ok(Row {
        seed,
        loss,
        step: trainer.step(),
        regression_loss: mean(reg),
        regression_loss_small_t: mean(reg_s),
        regression_loss_large_t: mean(reg_l),
        score_mse: mean(mse),
        score_mse_small_t: mean(mse_s),
        mmd2: mmd2_unbiased(&x, &eval.exact_samples, 2, eval.h)?,
        mmd2_local: mmd2_unbiased(&x, &eval.exact_samples, 2, eval.h / 8.0)?,
        train_seconds: 0.0,
    })
}

fn main() -> Result<()> {
    tune_cpu();
    init_tracing();
    let args = Args::parse();
    let quick = args.common.quick;
    let steps = args.steps.unwrap_or(if quick { 300 } else { 20_000 });
    let n_seeds = args.seeds.unwrap_or(if quick { 1 } else { 3 }).max(1);
    let eval_every = args.eval_every.unwrap_or((steps / 20).max(1)).max(1);
    let n_mmd = args.n_mmd.unwrap_or(if quick { 300 } else { 2000 });
    let sampler_steps = args.sampler_steps.unwrap_or(if quick { 20 } else { 100 });
    // Sizes, before any work: the seeds fit in u64, the evaluations and the work are bounded.
    if args.common.seed.checked_add(n_seeds - 1).is_none() {
        usage_error::<Args>(format!(
            "--seed {} with --seeds {n_seeds}: the last seed would pass 2^64 - 1",
            args.common.seed
        ));
    }
    let evaluations = steps.div_ceil(eval_every);
    if evaluations > MAX_EVALUATIONS {
        usage_error::<Args>(format!(
            "--eval-every {eval_every} with --steps {steps}: {evaluations} evaluations per run, \
             more than {MAX_EVALUATIONS}"
        ));
    }
    let runs = u128::from(n_seeds) * LOSSES.len() as u128;
    let points = runs * u128::from(evaluations + 1);
    for (work, bound, flags) in [
        (
            runs * u128::from(steps),
            MAX_TRAIN_STEPS,
            "--steps × --seeds",
        ),
        (
            points * (n_mmd as u128).pow(2),
            MAX_MMD_TERMS,
            "--n-mmd² × evaluations (--steps/--eval-every) × --seeds",
        ),
        (
            points * n_mmd as u128 * sampler_steps as u128,
            MAX_SAMPLER_WORK,
            "--n-mmd × --sampler-steps × evaluations × --seeds",
        ),
    ] {
        if work > bound {
            usage_error::<Args>(format!(
                "{flags} is {work:.1e}, more than {bound:.0e} (days of work); lower them"
            ));
        }
    }
    let target = tsm_targets::named::eight_modes();
    let v = target.variance_per_dim();
    let model = ModelConfig::default();
    let eval_range = TimeRange::trimmed();
    let loss_config = |identity| LossConfig::for_mixture(identity, Weighting::Uniform, &target);
    let schedule = model.schedule;
    let train_range = TimeRange::new(eval_range.t_min(), args.t_max)?;
    let train_config = |identity, seed| -> Result<TrainConfig> {
        Ok(TrainConfig {
            adam: tsm_nn::optim::AdamConfig {
                lr: args.lr,
                ..Default::default()
            },
            batch: args.batch,
            steps,
            seed,
            checkpoint_every: 0,
            engine: EngineKind::Cpu,
            ..TrainConfig::new(
                "eight_modes",
                model.clone(),
                loss_config(identity)?.with_range(train_range),
            )
        })
    };
    // Every run's configuration, before any work (a value the library refuses names its flag).
    for identity in LOSSES {
        if let Err(e) = train_config(identity, args.common.seed)?.validate() {
            return Err(flag_error::<Args>(
                e,
                &[
                    ("batch", "--batch"),
                    ("memory", "--batch"),
                    ("adam.lr", "--lr"),
                    ("loss.t_max", "--t-max"),
                ],
            ));
        }
    }
    if args.common.dry_run {
        println!(
            "dry run: would train {} losses × {n_seeds} seed(s) × {steps} steps (batch {}), \
             evaluating every {eval_every} steps with {n_mmd} samples of {sampler_steps} \
             sampler steps, into {}",
            LOSSES.len(),
            args.batch,
            args.common.out_dir("fig5").display()
        );
        return Ok(());
    }
    let out = OutputDir::create(args.common.out_dir("fig5"))?;
    let timer = RunTimer::start();

    // Fixed evaluation data: the same (t, x_0, x_t) for every loss (same stream), each loss's
    // own regression target, and the exact marginal score at every x_t.
    let mut batches = Vec::new();
    for identity in LOSSES {
        let lc = loss_config(identity)?.with_range(eval_range);
        let sampler = tsm_nn::loss::BatchSampler::new(&target, &lc, &model)?;
        let mut rng = tsm_core::rng::stream(args.common.seed, u64::MAX - 1);
        batches.push((
            identity.loss_name(),
            sampler.sample(&mut rng, EVAL_POINTS, None)?,
        ));
    }
    let first = &batches[0].1;
    let mut exact_scores = vec![0.0f32; first.xt.len()];
    let mut buf = [0.0; 2];
    for i in 0..first.n {
        let p_t = target.noised(&schedule, first.cond.t[i])?;
        let x = [first.xt[2 * i] as f64, first.xt[2 * i + 1] as f64];
        p_t.score(&x, &mut buf);
        exact_scores[2 * i] = buf[0] as f32;
        exact_scores[2 * i + 1] = buf[1] as f32;
    }
    let exact = |stream: u64| {
        let mut rng = tsm_core::rng::stream(args.common.seed, stream);
        let mut x = vec![0.0; n_mmd * 2];
        for row in x.chunks_exact_mut(2) {
            target.sample_into(&mut rng, row);
        }
        x
    };
    let exact_samples = exact(u64::MAX - 3);
    let h = median_bandwidth(&exact_samples, &exact(u64::MAX - 4), 2)?;
    let eval = Eval {
        batches,
        exact_scores,
        exact_samples,
        h,
        sampler: SamplerConfig {
            steps: sampler_steps,
            data_variance: v,
            ..SamplerConfig::default()
        },
        n_mmd,
    };

    let seeds: Vec<u64> = (0..n_seeds).map(|k| args.common.seed + k).collect();
    let mut rows = Vec::new();
    let (mut train_steps, mut train_secs) = (0u64, 0.0f64);
    for &seed in &seeds {
        for identity in LOSSES {
            let loss = identity.loss_name();
            let mut trainer = Trainer::new(train_config(identity, seed)?, &target, &Device::Cpu)?;
            let mut row = evaluate(&trainer, &target, &eval, loss, seed)?;
            rows.push(row.clone());
            let mut secs = 0.0;
            while trainer.step() < steps {
                let next = (trainer.step() + eval_every).min(steps);
                trainer.set_total_steps(next)?;
                let start = std::time::Instant::now();
                trainer
                    .run(None, |_, _| {})
                    .with_context(|| format!("training {loss}, seed {seed}"))?;
                secs += start.elapsed().as_secs_f64();
                row = evaluate(&trainer, &target, &eval, loss, seed)?;
                row.train_seconds = secs;
                rows.push(row.clone());
            }
            train_steps += steps;
            train_secs += secs;
            tracing::info!(
                seed,
                loss,
                regression_loss = row.regression_loss,
                score_mse_small_t = row.score_mse_small_t,
                mmd2 = row.mmd2,
                steps_per_s = steps as f64 / secs,
                "trained"
            );
        }
    }
    let csv = out.write_csv("fig5.csv", &rows)?;

    // Plots: mean over seeds (line) and min/max (dashed) per loss.
    let labels = [
        ("dsm", "DSM"),
        ("tsm", "TSM"),
        ("kappa", "κ"),
        ("kappa_bar", "κ-bar"),
    ];
    let series = |metric: fn(&Row) -> f64| -> Vec<Series> {
        let mut out = Vec::new();
        for (c, (name, label)) in labels.iter().enumerate() {
            let mut steps_seen: Vec<u64> = rows
                .iter()
                .filter(|r| r.loss == *name)
                .map(|r| r.step)
                .collect();
            steps_seen.sort_unstable();
            steps_seen.dedup();
            let (mut mean, mut lo, mut hi) = (Vec::new(), Vec::new(), Vec::new());
            for s in steps_seen {
                let vals: Vec<f64> = rows
                    .iter()
                    .filter(|r| r.loss == *name && r.step == s)
                    .map(metric)
                    .collect();
                let x = s as f64;
                mean.push((x, vals.iter().sum::<f64>() / vals.len() as f64));
                lo.push((x, vals.iter().copied().fold(f64::INFINITY, f64::min)));
                hi.push((x, vals.iter().copied().fold(f64::NEG_INFINITY, f64::max)));
            }
            out.push(Series::line(*label, c, mean));
            if n_seeds > 1 {
                out.push(Series::line("", c, lo).styled(Style::Dashed));
                out.push(Series::line("", c, hi).styled(Style::Dashed));
            }
        }
        out
    };
    let mut left = Panel::new("Mean regression loss ‖s_θ − L‖²", "iteration", "loss").log_y(true);
    let mut middle = Panel::new(
        "MMD² (data vs samples), median bandwidth",
        "iteration",
        "MMD²",
    )
    .log_y(true);
    let mut right = Panel::new(
        "Score error at t < 0.1 vs exact ∇log p_t",
        "iteration",
        "MSE",
    )
    .log_y(true);
    for s in series(|r| r.regression_loss) {
        left = left.with(s);
    }
    for s in series(|r| r.mmd2.max(1e-6)) {
        middle = middle.with(s);
    }
    for s in series(|r| r.score_mse_small_t) {
        right = right.with(s);
    }
    let grid = PanelGrid {
        title: format!(
            "Fig. 5 — eight-mode mixture, uniform weighting, {} seed{}",
            n_seeds,
            if n_seeds > 1 {
                "s (dashed: min/max)"
            } else {
                ""
            }
        ),
        cols: 3,
        panels: vec![left, middle, right],
    };
    let [svg, png] = save_svg_png(out.path(), "fig5", (1500, 500), &grid)?;
    let params = Parameters {
        target: "eight_modes",
        losses: LOSSES.iter().map(|l| l.loss_name()).collect(),
        weighting: "uniform",
        schedule: schedule.name(),
        t_range: (eval_range.t_min(), eval_range.t_max()),
        train_t_max: args.t_max,
        steps,
        seeds: seeds.clone(),
        eval_every,
        batch: args.batch,
        lr: args.lr,
        ema_decay: tsm_nn::optim::AdamConfig::default().ema_decay,
        hidden: model.mlp.hidden,
        depth: model.mlp.depth,
        embedding_dim: model.mlp.embedding_dim,
        eval_points: EVAL_POINTS,
        small_t: SMALL_T,
        large_t: LARGE_T,
        n_mmd,
        sampler: "em",
        sampler_steps,
        bandwidth: h,
        bandwidth_local: h / 8.0,
        steps_per_second: train_steps as f64 / train_secs.max(1e-9),
    };
    let record = timer.record(
        "fig5",
        args.common.seed,
        quick,
        params,
        &["fig5.csv", &svg, &png, "fig5.json"],
    );
    out.write_json("fig5.json", &record)?;
    tracing::info!(csv = %csv.display(), seconds = timer.elapsed_s(), "fig5 written");
    Ok(())
}
