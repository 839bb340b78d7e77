//! `cargo xtask reproduce-compare`: DSM, TSM, κ̄, implicit (ISM) and sliced (SSM) score
//! matching trained with the same budget on the 2-D eight-mode mixture and a 16-D Gaussian
//! mixture, measured by the same tools.
//!
//! `cargo xtask reproduce-compare [--quick] [--out DIR] [--seed S] [--steps N]`
//!
//! Every loss trains the same network (same initial weights, same batches of `t, x_0, x_t`)
//! for the same number of steps on candle's autograd engine (the one engine that runs all
//! five, so that the wall times compare like with like), uniform weighting,
//! `t ~ U[10⁻³, 1 − 10⁻³]`, cosine schedule. ISM uses the exact Jacobian trace (`d`
//! forward-mode JVPs), SSM one Gaussian probe (variance-reduced). Then, with the EMA weights:
//! - `mmd2`: unbiased MMD² (RBF kernel, median-heuristic bandwidth of exact draws) between
//!   `n_mmd` samples of the reverse SDE (the default sampler) and as many exact draws;
//! - `score_mse`: mean `‖s_θ(x_t, t) − ∇log p_t(x_t)‖²` over a fixed set of `(t, x_t)`, `t`
//!   uniform on the range, against the exact marginal score; `score_rel_err` divides it by the
//!   mean `‖∇log p_t‖²`;
//! - `nll`: the mean `−log p(x)` in nats of held-out exact draws under the model, through the
//!   probability-flow ODE (Dormand–Prince, exact divergence by central differences of the
//!   network), with its standard error; `nll_true` the same points' exact `−log p₀(x)` and
//!   `nll_gap` the paired difference with its standard error.
//!
//! A row `exact_score` runs the same measurements with the exact mixture score in place of a
//! network: its `mmd2` is the null level and its `nll_gap` the error of the ODE solver and the
//! truncation at `t_min`.
//!
//! Output: `compare.csv`, `compare.md` (the table), `compare.svg/.png`, `compare.json`.

use anyhow::{Context, Result};
use clap::Parser;
use serde::Serialize;
use tsm_core::likelihood::{FiniteDifference, LikelihoodConfig};
use tsm_core::sampler::SamplerConfig;
use tsm_core::schedule::Schedule;
use tsm_core::target::{Dim, LogDensity, Sample, Score};
use tsm_core::weighting::Weighting;
use tsm_experiments::cli::count;
use tsm_experiments::output::RunTimer;
use tsm_experiments::plot::{save_svg_png, Panel, PanelGrid, Series};
use tsm_experiments::training::tune_cpu;
use tsm_experiments::{init_tracing, FigureArgs, OutputDir};
use tsm_nn::candle::{Device, Tensor};
use tsm_nn::engine::EngineKind;
use tsm_nn::implicit::TrainLoss;
use tsm_nn::loss::LossConfig;
use tsm_nn::mmd::{median_bandwidth, mmd2_unbiased};
use tsm_nn::score::ModelScore;
use tsm_nn::{MlpConfig, ModelConfig, ScoreModel, TrainConfig, Trainer};
use tsm_targets::{ExactMixtureScore, GaussianMixture};

/// Compares DSM, TSM, κ̄, ISM and SSM on a 2-D and a 16-D Gaussian mixture (MMD, score error,
/// PF-ODE negative log-likelihood, wall time).
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
struct Args {
    #[command(flatten)]
    common: FigureArgs,
    /// Training steps per loss and target, 1 to 10⁷ [default: 4000, quick: 400]
    #[arg(long, value_parser = count::<u64>(1..=10_000_000))]
    steps: Option<u64>,
}

/// The losses compared, in the table's order.
const LOSSES: [&str; 5] = ["dsm", "tsm", "kappa_bar", "ism", "ssm"];

#[derive(Debug, Clone, Serialize)]
struct Row {
    target: &'static str,
    dim: usize,
    loss: String,
    steps: u64,
    train_seconds: f64,
    steps_per_second: f64,
    mmd2: f64,
    score_mse: f64,
    score_rel_err: f64,
    nll: f64,
    nll_se: f64,
    nll_true: f64,
    nll_gap: f64,
    nll_gap_se: f64,
}

#[derive(Debug, Serialize)]
struct Parameters {
    targets: Vec<&'static str>,
    losses: Vec<&'static str>,
    steps: u64,
    batch: usize,
    lr: f64,
    ema_decay: f64,
    hidden: usize,
    depth: usize,
    embedding_dim: usize,
    engine: &'static str,
    eval_points: usize,
    n_mmd: usize,
    sampler_steps: usize,
    n_nll: usize,
    ode_tol: f64,
    fd_step: f64,
}

/// The sizes of a run.
struct Sizes {
    steps: u64,
    batch: usize,
    hidden: usize,
    depth: usize,
    embedding_dim: usize,
    lr: f64,
    ema_decay: f64,
    eval_points: usize,
    n_mmd: usize,
    sampler_steps: usize,
    n_nll: usize,
    ode_tol: f64,
}

/// Where the likelihood's ODE starts: the lower end of the training range, so that the
/// networks are not asked for scores at times they never saw (the exact `p_{10⁻³}` differs from
/// `p₀` by a variance `σ² ≈ 2.5·10⁻⁶`, far below the table's precision).
const NLL_T_MIN: f64 = 1e-3;

/// The finite-difference step of the divergence of an `f32` network (tsm-core's advice).
const FD_STEP: f64 = 1e-2;

/// The 16-D mixture: four equal modes at `±2.5` on the first two coordinates, isotropic
/// standard deviation 0.6.
fn mixture16() -> Result<GaussianMixture> {
    let mut means = Vec::new();
    for (a, b) in [(2.5, 2.5), (2.5, -2.5), (-2.5, 2.5), (-2.5, -2.5)] {
        let mut m = vec![0.0; 16];
        (m[0], m[1]) = (a, b);
        means.push(m);
    }
    Ok(GaussianMixture::isotropic(
        vec![0.25; 4],
        means,
        vec![0.6; 4],
    )?)
}

/// What is measured of one score (a network or the exact one).
struct Measured {
    mmd2: f64,
    score_mse: f64,
    score_rel_err: f64,
    nll: (f64, f64),
    gap: (f64, f64),
}

/// The fixed evaluation data of a target.
struct Eval {
    t: Vec<f64>,
    xt: Vec<f64>,
    exact_scores: Vec<f64>,
    exact_samples: Vec<f64>,
    h: f64,
    nll_points: Vec<f64>,
    nll_true: Vec<f64>,
}

fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, (var / n).sqrt())
}

fn eval_data(target: &GaussianMixture, sizes: &Sizes, seed: u64) -> Result<Eval> {
    let d = target.dim();
    let schedule = tsm_core::schedule::Cosine;
    let range = tsm_core::weighting::TimeRange::trimmed();
    let mut rng = tsm_core::rng::stream(seed, u64::MAX - 1);
    let n = sizes.eval_points;
    let (mut t, mut xt, mut exact_scores) = (Vec::new(), vec![0.0; n * d], vec![0.0; n * d]);
    let mut x0 = vec![0.0; d];
    for i in 0..n {
        let ti = range.lerp(rand::Rng::random::<f64>(&mut rng));
        target.sample_into(&mut rng, &mut x0);
        let (a, s) = (schedule.alpha(ti), schedule.sigma(ti));
        for j in 0..d {
            let e: f64 = rand::Rng::sample(&mut rng, rand_distr::StandardNormal);
            xt[i * d + j] = a * x0[j] + s * e;
        }
        target.noised(&schedule, ti)?.score(
            &xt[i * d..(i + 1) * d],
            &mut exact_scores[i * d..(i + 1) * d],
        );
        t.push(ti);
    }
    let draws = |stream: u64, m: usize| {
        let mut rng = tsm_core::rng::stream(seed, stream);
        let mut x = vec![0.0; m * d];
        for row in x.chunks_exact_mut(d) {
            target.sample_into(&mut rng, row);
        }
        x
    };
    let exact_samples = draws(u64::MAX - 3, sizes.n_mmd);
    let h = median_bandwidth(&exact_samples, &draws(u64::MAX - 4, sizes.n_mmd), d)?;
    let nll_points = draws(u64::MAX - 5, sizes.n_nll);
    let nll_true = nll_points
        .chunks_exact(d)
        .map(|x| -target.log_density(x))
        .collect();
    Ok(Eval {
        t,
        xt,
        exact_scores,
        exact_samples,
        h,
        nll_points,
        nll_true,
    })
}

/// Measures a score: `eval_score(x, t, out)` for the score error, `score` for the sampler
/// and the likelihood.
fn measure<S>(
    score: &mut S,
    eval_score: impl Fn(&[f64], f64, &mut [f64]) -> Result<()>,
    target: &GaussianMixture,
    eval: &Eval,
    sizes: &Sizes,
    seed: u64,
) -> Result<Measured>
where
    S: tsm_core::sampler::NoisedScore + tsm_core::likelihood::ScoreDivergence,
{
    let d = target.dim();
    let schedule = tsm_core::schedule::Cosine;
    let (mut se_sum, mut norm_sum) = (0.0, 0.0);
    let mut s = vec![0.0; d];
    for (i, &t) in eval.t.iter().enumerate() {
        eval_score(&eval.xt[i * d..(i + 1) * d], t, &mut s)?;
        for (j, sj) in s.iter().enumerate() {
            let e = eval.exact_scores[i * d + j];
            se_sum += (sj - e).powi(2);
            norm_sum += e * e;
        }
    }
    let sampler = SamplerConfig {
        steps: sizes.sampler_steps,
        data_variance: target.variance_per_dim(),
        ..SamplerConfig::default()
    };
    let mut rng = tsm_core::rng::stream(seed, u64::MAX - 2);
    let x = sampler.sample(score, &schedule, sizes.n_mmd, &mut rng)?;
    if x.iter().any(|v| !v.is_finite()) {
        anyhow::bail!("the sampler produced non-finite values");
    }
    let mmd2 = mmd2_unbiased(&x, &eval.exact_samples, d, eval.h)?;
    let lcfg = LikelihoodConfig {
        data_variance: target.variance_per_dim(),
        tol: sizes.ode_tol,
        t_min: NLL_T_MIN,
        ..LikelihoodConfig::default()
    };
    let run = lcfg.exact(score, &schedule, &eval.nll_points)?;
    let nll: Vec<f64> = run.points.iter().map(|p| -p.log_p).collect();
    let gap: Vec<f64> = nll.iter().zip(&eval.nll_true).map(|(a, b)| a - b).collect();
    Ok(Measured {
        mmd2,
        score_mse: se_sum / eval.t.len() as f64,
        score_rel_err: se_sum / norm_sum,
        nll: mean_se(&nll),
        gap: mean_se(&gap),
    })
}

fn row(
    target: &'static str,
    d: usize,
    loss: &str,
    steps: u64,
    secs: f64,
    m: &Measured,
    eval: &Eval,
) -> Row {
    Row {
        target,
        dim: d,
        loss: loss.to_owned(),
        steps,
        train_seconds: secs,
        steps_per_second: if secs > 0.0 { steps as f64 / secs } else { 0.0 },
        mmd2: m.mmd2,
        score_mse: m.score_mse,
        score_rel_err: m.score_rel_err,
        nll: m.nll.0,
        nll_se: m.nll.1,
        nll_true: mean_se(&eval.nll_true).0,
        nll_gap: m.gap.0,
        nll_gap_se: m.gap.1,
    }
}

fn main() -> Result<()> {
    tune_cpu();
    init_tracing();
    let args = Args::parse();
    let quick = args.common.quick;
    let sizes = if quick {
        Sizes {
            steps: args.steps.unwrap_or(400),
            batch: 128,
            hidden: 64,
            depth: 2,
            embedding_dim: 16,
            lr: 2e-3,
            ema_decay: 0.9,
            eval_points: 512,
            n_mmd: 200,
            sampler_steps: 20,
            n_nll: 24,
            ode_tol: 1e-4,
        }
    } else {
        Sizes {
            steps: args.steps.unwrap_or(4000),
            batch: 512,
            hidden: 128,
            depth: 3,
            embedding_dim: 128,
            lr: 1e-3,
            ema_decay: 0.99,
            eval_points: 4096,
            n_mmd: 1000,
            sampler_steps: 100,
            n_nll: 200,
            ode_tol: 1e-5,
        }
    };
    let seed = args.common.seed;
    let targets: Vec<(&'static str, GaussianMixture)> = vec![
        ("eight_modes", tsm_targets::named::eight_modes()),
        ("mixture16", mixture16()?),
    ];
    let train_config = |name: &'static str, target: &GaussianMixture, loss: TrainLoss| {
        let model = ModelConfig {
            mlp: MlpConfig {
                dim: target.dim(),
                hidden: sizes.hidden,
                depth: sizes.depth,
                embedding_dim: sizes.embedding_dim,
                ..MlpConfig::default()
            },
            ..ModelConfig::default()
        };
        let lc = LossConfig::for_mixture(loss.identity(), Weighting::Uniform, target)?;
        let cfg = TrainConfig {
            adam: tsm_nn::optim::AdamConfig {
                lr: sizes.lr,
                ema_decay: sizes.ema_decay,
                ..Default::default()
            },
            batch: sizes.batch,
            steps: sizes.steps,
            seed,
            checkpoint_every: 0,
            engine: EngineKind::Candle,
            implicit: loss.implicit(),
            ..TrainConfig::new(name, model, lc)
        };
        cfg.validate()?;
        anyhow::Ok(cfg)
    };
    let losses: Vec<TrainLoss> = LOSSES
        .iter()
        .map(|l| l.parse::<TrainLoss>())
        .collect::<std::result::Result<_, _>>()?;
    for (name, target) in &targets {
        for &l in &losses {
            train_config(name, target, l)?;
        }
    }
    if args.common.dry_run {
        println!(
            "dry run: would train {} losses × {} targets × {} steps into {}",
            LOSSES.len(),
            targets.len(),
            sizes.steps,
            args.common.out_dir("compare").display()
        );
        return Ok(());
    }
    let out = OutputDir::create(args.common.out_dir("compare"))?;
    let timer = RunTimer::start();
    let mut rows = Vec::new();
    for (name, target) in &targets {
        let d = target.dim();
        let eval = eval_data(target, &sizes, seed)?;
        {
            let mut exact = ExactMixtureScore {
                mixture: target,
                schedule: tsm_core::schedule::Cosine,
            };
            let scorer = |x: &[f64], t: f64, out: &mut [f64]| -> Result<()> {
                target.noised(&tsm_core::schedule::Cosine, t)?.score(x, out);
                Ok(())
            };
            let m = measure(&mut exact, scorer, target, &eval, &sizes, seed)?;
            rows.push(row(name, d, "exact_score", 0, 0.0, &m, &eval));
        }
        for (&loss, label) in losses.iter().zip(LOSSES) {
            let cfg = train_config(name, target, loss)?;
            let mut trainer = Trainer::new(cfg, target, &Device::Cpu)?;
            let start = std::time::Instant::now();
            trainer
                .run(None, |_, _| {})
                .with_context(|| format!("training {loss} on {name}"))?;
            let secs = start.elapsed().as_secs_f64();
            let model: ScoreModel = trainer.model(true, &Device::Cpu)?;
            let scorer = |x: &[f64], t: f64, out: &mut [f64]| -> Result<()> {
                let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
                let xt = Tensor::from_vec(xf, (1, d), &Device::Cpu)?;
                let s = model
                    .forward(&xt, &[t], None)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                for (o, v) in out.iter_mut().zip(s) {
                    *o = v as f64;
                }
                Ok(())
            };
            let score = ModelScore::new(&model, Some(target), &Device::Cpu);
            let mut fd = FiniteDifference::new(score, FD_STEP)?;
            let m = measure(&mut fd, scorer, target, &eval, &sizes, seed)?;
            let r = row(name, d, label, sizes.steps, secs, &m, &eval);
            tracing::info!(
                target = name,
                loss = %loss,
                mmd2 = r.mmd2,
                score_rel_err = r.score_rel_err,
                nll_gap = r.nll_gap,
                seconds = secs,
                "compared"
            );
            rows.push(r);
        }
    }
    let csv = out.write_csv("compare.csv", &rows)?;
    let mut md = String::from(
        "| target | d | loss | steps | train s | steps/s | MMD² | score MSE | score rel. err. | NLL (nats) | NLL − true |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.2e} | {:.3} | {:.3} | {:.3} ± {:.3} | {:+.3} ± {:.3} |\n",
            r.target,
            r.dim,
            r.loss,
            r.steps,
            r.train_seconds,
            r.steps_per_second,
            r.mmd2,
            r.score_mse,
            r.score_rel_err,
            r.nll,
            r.nll_se,
            r.nll_gap,
            r.nll_gap_se
        ));
    }
    std::fs::write(out.path().join("compare.md"), &md).context("compare.md")?;

    // Plot: per target, the three metrics against the loss (x = 0 exact score, 1 DSM, …).
    let mut panels = Vec::new();
    type Metric = fn(&Row) -> f64;
    let metrics: [(&str, Metric, bool); 3] = [
        ("MMD²", |r| r.mmd2.max(1e-6), true),
        ("score rel. err.", |r| r.score_rel_err, true),
        ("NLL − true (nats)", |r| r.nll_gap, false),
    ];
    for (title, metric, log) in metrics {
        let mut p = Panel::new(
            format!("{title} — 0 exact, 1 DSM, 2 TSM, 3 κ̄, 4 ISM, 5 SSM"),
            "loss",
            title,
        )
        .log_y(log);
        for (c, (name, _)) in targets.iter().enumerate() {
            let pts = rows
                .iter()
                .filter(|r| r.target == *name)
                .enumerate()
                .map(|(i, r)| (i as f64, metric(r)))
                .collect();
            p = p.with(Series::line(*name, c, pts));
        }
        panels.push(p);
    }
    let grid = PanelGrid {
        title: format!(
            "DSM, TSM, κ̄, ISM, SSM after {} steps each (same network, batches, engine)",
            sizes.steps
        ),
        cols: 3,
        panels,
    };
    let [svg, png] = save_svg_png(out.path(), "compare", (1500, 500), &grid)?;
    let params = Parameters {
        targets: targets.iter().map(|(n, _)| *n).collect(),
        losses: LOSSES.to_vec(),
        steps: sizes.steps,
        batch: sizes.batch,
        lr: sizes.lr,
        ema_decay: sizes.ema_decay,
        hidden: sizes.hidden,
        depth: sizes.depth,
        embedding_dim: sizes.embedding_dim,
        engine: "candle",
        eval_points: sizes.eval_points,
        n_mmd: sizes.n_mmd,
        sampler_steps: sizes.sampler_steps,
        n_nll: sizes.n_nll,
        ode_tol: sizes.ode_tol,
        fd_step: FD_STEP,
    };
    let record = timer.record(
        "compare",
        seed,
        quick,
        params,
        &["compare.csv", "compare.md", &svg, &png, "compare.json"],
    );
    out.write_json("compare.json", &record)?;
    tracing::info!(csv = %csv.display(), seconds = timer.elapsed_s(), "compare written");
    Ok(())
}
