//! Target Score Matching on Lie groups (De Bortoli et al. 2024, §3.2, Props. 3.2–3.3): for a
//! 3-component wrapped-normal mixture on the torus `𝕋²` and a 3-component IGSO(3) mixture on
//! `SO(3)`,
//!
//! - (a) the variance of the score estimators against `t`, as Fig. 2 does in `ℝ^d`: at each
//!   `t` (heat time `τ = σ_t²`, VE `σ_t = σ_min(σ_max/σ_min)^t`), for `y ~ p_τ` (exact), the
//!   trace of the covariance of the DSI, TSI and mixture integrands over posterior draws
//!   `x | y` (exact on the torus, self-normalised importance weights on `SO(3)`), averaged over
//!   the `y`'s;
//! - (b) score networks trained by DSM, TSM and the mixture (uniform weighting, as Fig. 5),
//!   against iterations: the mean squared error to the exact noised score over a fixed set of
//!   `(t, y ~ p_τ)` (all `t`, and `t < 0.3`), and the MMD² between geodesic-random-walk
//!   samples of the EMA network (from Haar at `σ_max²` down to `σ_min²`) and exact draws of
//!   `p_{σ_min²}`, with a Gaussian kernel in the embedding (chordal) distance — on the
//!   features `(cos θ, sin θ)` or the rotation matrix — at the median-heuristic bandwidth.
//!
//! The mixture is `w_τ DSI + (1 − w_τ) TSI` with `w_τ = τ/(τ + v)`, `κ̄`'s weight at `α = 1`,
//! `v` the weighted mean variance of the components (see `tsm_nn::lie`).
//!
//! `cargo xtask reproduce-lie [--out DIR] [--seed S] [--quick] [--steps N]`
//!
//! Output `lie.csv` (tidy) columns: `group,panel,series,x,value,std_err` with `panel` one of
//! `variance` (`x` = t, `series` = dsi/tsi/mix, `std_err` over the `y`'s), `score_mse`,
//! `score_mse_small_t`, `mmd2` (`x` = training step, `series` = dsm/tsm/mix).

use anyhow::Result;
use clap::Parser;
use serde::Serialize;
use tsm_core::identity::ScoreIdentity;
use tsm_core::lie::igso3::Igso3;
use tsm_core::lie::sampler::{geodesic_random_walk, haar_draws, GroupScore, HaarSample};
use tsm_core::lie::so3::{exp, Rotation, So3};
use tsm_core::lie::torus::{Torus, TorusPoint};
use tsm_core::lie::LieGroup;
use tsm_core::schedule::{Schedule, Ve};
use tsm_experiments::cli::count;
use tsm_experiments::output::RunTimer;
use tsm_experiments::plot::{save_svg_png, Panel, PanelGrid, Series};
use tsm_experiments::training::tune_cpu;
use tsm_experiments::{init_tracing, FigureArgs, OutputDir};
use tsm_nn::candle::Device;
use tsm_nn::lie::{
    group_loss_config, group_model_config, heat_grid, GroupBatches, GroupDiffusion,
    GroupModelScore, GroupTargetScore,
};
use tsm_nn::mmd::{median_bandwidth, mmd2_unbiased};
use tsm_nn::optim::AdamConfig;
use tsm_nn::{MlpConfig, TrainConfig, Trainer, TrainerOptions};
use tsm_targets::lie::{So3Mixture, TorusMixture};

/// Lie groups: estimator variance against t and DSM/TSM/mixture training on 𝕋² and SO(3).
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
struct Args {
    #[command(flatten)]
    common: FigureArgs,
    /// Training steps per loss and group, 1 to 10⁷ [default: 6000, quick: 300]
    #[arg(long, value_parser = count::<u64>(1..=10_000_000))]
    steps: Option<u64>,
}

/// `σ_min`, `σ_max` of the VE schedule: heat times from 0.0025 to 16 (Haar start error below
/// `2d e^{−8}` on `𝕋²` and `9e^{−16}` on `SO(3)`).
const SIGMA_MIN: f64 = 0.05;
const SIGMA_MAX: f64 = 4.0;
/// The times below which `score_mse_small_t` averages.
const SMALL_T: f64 = 0.3;

/// Sizes of one run.
#[derive(Debug, Clone, Copy, Serialize)]
struct Sizes {
    variance_times: usize,
    variance_ys: usize,
    posterior_draws: usize,
    steps: u64,
    eval_every: u64,
    batch: usize,
    train_draws: usize,
    eval_points: usize,
    n_mmd: usize,
    walk_steps: usize,
    hidden: usize,
    depth: usize,
    embedding_dim: usize,
    lr: f64,
    ema_decay: f64,
}

impl Sizes {
    fn new(quick: bool, steps: Option<u64>) -> Self {
        let steps = steps.unwrap_or(if quick { 300 } else { 6000 });
        let evaluations = if quick { 3 } else { 12 };
        Self {
            variance_times: if quick { 8 } else { 25 },
            variance_ys: if quick { 6 } else { 32 },
            posterior_draws: if quick { 200 } else { 4000 },
            steps,
            eval_every: (steps / evaluations).max(1),
            batch: if quick { 128 } else { 512 },
            train_draws: if quick { 2048 } else { 1 << 16 },
            eval_points: if quick { 256 } else { 2048 },
            n_mmd: if quick { 200 } else { 1500 },
            walk_steps: if quick { 40 } else { 200 },
            hidden: if quick { 48 } else { 128 },
            depth: if quick { 2 } else { 3 },
            embedding_dim: if quick { 16 } else { 64 },
            lr: 1e-3,
            ema_decay: if quick { 0.9 } else { 0.995 },
        }
    }
}

/// One CSV row.
#[derive(Debug, Clone, Serialize)]
struct Row {
    group: &'static str,
    panel: &'static str,
    series: &'static str,
    x: f64,
    value: f64,
    /// Over the `y`'s for `variance`; empty for the training panels (one run).
    std_err: Option<f64>,
}

/// A target on a group with exact noised marginals and posterior draws.
trait Exact {
    type G: GroupDiffusion + HaarSample;
    const NAME: &'static str;
    fn group(&self) -> Self::G;
    /// The mixture's `v`.
    fn mode_variance(&self) -> f64;
    fn target_score(&self) -> &dyn GroupTargetScore<Self::G>;
    /// `n` exact draws of `p_0` (the training set).
    fn p0_draws(&self, n: usize, rng: &mut Rng) -> Vec<Elem<Self>>;
    /// `n` exact draws of `p_τ`.
    fn noised_draws(&self, tau: f64, n: usize, rng: &mut Rng) -> Result<Vec<Elem<Self>>>;
    /// The exact body score of `p_τ` at `y`.
    fn noised_score(&self, tau: f64, y: &Elem<Self>) -> Result<Vec<f64>>;
    /// Posterior draws `x | y` at `τ` and their normalised weights.
    fn posterior(
        &self,
        tau: f64,
        y: &Elem<Self>,
        n: usize,
        rng: &mut Rng,
    ) -> Result<(Vec<Elem<Self>>, Vec<f64>)>;
}

type Rng = tsm_core::rng::FastRng;
type Elem<T> = <<T as Exact>::G as LieGroup>::Element;

struct TorusTarget(TorusMixture);

impl Exact for TorusTarget {
    type G = Torus;
    const NAME: &'static str = "torus";
    fn group(&self) -> Torus {
        Torus::new(2).unwrap_or_else(|_| unreachable!("d = 2 > 0"))
    }
    fn mode_variance(&self) -> f64 {
        // Σ πᵢ mean_c sᵢ_c² of the mixture below.
        0.5 * (0.09 + 0.25) / 2.0 + 0.3 * (0.36 + 0.04) / 2.0 + 0.2 * 0.16
    }
    fn target_score(&self) -> &dyn GroupTargetScore<Torus> {
        &self.0
    }
    fn p0_draws(&self, n: usize, rng: &mut Rng) -> Vec<TorusPoint> {
        (0..n).map(|_| self.0.sample(rng)).collect()
    }
    fn noised_draws(&self, tau: f64, n: usize, rng: &mut Rng) -> Result<Vec<TorusPoint>> {
        let p = self.0.noised(tau)?;
        Ok((0..n).map(|_| p.sample(rng)).collect())
    }
    fn noised_score(&self, tau: f64, y: &TorusPoint) -> Result<Vec<f64>> {
        Ok(self.0.noised(tau)?.score(y))
    }
    fn posterior(
        &self,
        tau: f64,
        y: &TorusPoint,
        n: usize,
        rng: &mut Rng,
    ) -> Result<(Vec<TorusPoint>, Vec<f64>)> {
        let post = self.0.posterior(tau, y)?;
        Ok((
            (0..n).map(|_| post.sample(rng)).collect(),
            vec![1.0 / n as f64; n],
        ))
    }
}

struct So3Target(So3Mixture);

impl Exact for So3Target {
    type G = So3;
    const NAME: &'static str = "so3";
    fn group(&self) -> So3 {
        So3
    }
    fn mode_variance(&self) -> f64 {
        0.4 * 0.05 + 0.35 * 0.1 + 0.25 * 0.2
    }
    fn target_score(&self) -> &dyn GroupTargetScore<So3> {
        &self.0
    }
    fn p0_draws(&self, n: usize, rng: &mut Rng) -> Vec<Rotation> {
        (0..n).map(|_| self.0.sample(rng)).collect()
    }
    fn noised_draws(&self, tau: f64, n: usize, rng: &mut Rng) -> Result<Vec<Rotation>> {
        let p = self.0.noised(tau)?;
        Ok((0..n).map(|_| p.sample(rng)).collect())
    }
    fn noised_score(&self, tau: f64, y: &Rotation) -> Result<Vec<f64>> {
        Ok(self.0.noised(tau)?.body_score(y).to_vec())
    }
    fn posterior(
        &self,
        tau: f64,
        y: &Rotation,
        n: usize,
        rng: &mut Rng,
    ) -> Result<(Vec<Rotation>, Vec<f64>)> {
        let draws = self.0.posterior_draws(&Igso3::new(tau)?, y, n, rng)?;
        Ok((draws.draws().to_vec(), draws.weights().to_vec()))
    }
}

fn torus_target() -> Result<TorusTarget> {
    Ok(TorusTarget(TorusMixture::new(
        &[0.5, 0.3, 0.2],
        &[vec![-2.0, 2.5], vec![1.0, -0.5], vec![3.0, 3.0]],
        &[vec![0.3, 0.5], vec![0.6, 0.2], vec![0.4, 0.4]],
    )?))
}

fn so3_target() -> Result<So3Target> {
    Ok(So3Target(So3Mixture::new(
        &[0.4, 0.35, 0.25],
        &[
            Rotation::IDENTITY,
            exp(&[0.0, 2.0, 0.0]),
            exp(&[1.5, -0.5, 1.0]),
        ],
        &[0.05, 0.1, 0.2],
    )?))
}

const ESTIMATORS: [&str; 3] = ["dsi", "tsi", "mix"];
const LOSSES: [&str; 3] = ["dsm", "tsm", "mix"];

/// Panel (a): the trace of the covariance of each integrand over posterior draws, averaged
/// over exact `y ~ p_τ`, at each `t`.
fn variance_rows<T: Exact>(
    target: &T,
    ve: &Ve,
    sizes: &Sizes,
    seed: u64,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let group = target.group();
    let n = group.tangent_dim();
    let v = target.mode_variance();
    for i in 0..sizes.variance_times {
        let t = i as f64 / (sizes.variance_times - 1) as f64;
        let tau = ve.sigma_sq(t);
        let w = tau / (tau + v);
        let mut rng = tsm_core::rng::stream(seed, 1000 + i as u64);
        let ys = target.noised_draws(tau, sizes.variance_ys, &mut rng)?;
        let mut traces = vec![Vec::new(); 3];
        let (mut dsi, mut s0, mut tsi) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        for y in &ys {
            let (xs, ws) = target.posterior(tau, y, sizes.posterior_draws, &mut rng)?;
            // Weighted first and second moments of each integrand.
            let mut mean = vec![0.0; 3 * n];
            let mut sq = vec![0.0; 3 * n];
            for (x, &wi) in xs.iter().zip(&ws) {
                let noise = group.compose(&group.inverse(x), y);
                group.heat_score(tau, &noise, &mut dsi)?;
                target.target_score().body_score(x, &mut s0)?;
                group.transport(x, y, &s0, &mut tsi);
                for c in 0..n {
                    let vals = [dsi[c], tsi[c], w * dsi[c] + (1.0 - w) * tsi[c]];
                    for (k, val) in vals.iter().enumerate() {
                        mean[k * n + c] += wi * val;
                        sq[k * n + c] += wi * val * val;
                    }
                }
            }
            for (k, tr) in traces.iter_mut().enumerate() {
                let trace: f64 = (0..n)
                    .map(|c| (sq[k * n + c] - mean[k * n + c].powi(2)).max(0.0))
                    .sum();
                tr.push(trace);
            }
        }
        for (k, tr) in traces.iter().enumerate() {
            let m = tr.len() as f64;
            let mean = tr.iter().sum::<f64>() / m;
            let var = tr.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (m - 1.0).max(1.0);
            rows.push(Row {
                group: T::NAME,
                panel: "variance",
                series: ESTIMATORS[k],
                x: t,
                value: mean,
                std_err: Some((var / m).sqrt()),
            });
        }
    }
    Ok(())
}

/// The features of every element, row-major.
fn features<G: GroupDiffusion>(group: &G, xs: &[G::Element]) -> Vec<f64> {
    let f = group.feature_dim();
    let mut out = vec![0.0; xs.len() * f];
    for (x, row) in xs.iter().zip(out.chunks_exact_mut(f)) {
        group.features_into(x, row);
    }
    out
}

/// The fixed evaluation set of panel (b): times, exact draws `y ~ p_τ` and their exact
/// scores; exact reference samples of `p_{σ_min²}` for the MMD and its bandwidth.
struct Eval<T: Exact> {
    times: Vec<f64>,
    ys: Vec<Elem<T>>,
    scores: Vec<f64>,
    reference: Vec<f64>,
    bandwidth: f64,
}

fn eval_set<T: Exact>(target: &T, ve: &Ve, sizes: &Sizes, seed: u64) -> Result<Eval<T>> {
    let mut rng = tsm_core::rng::stream(seed, 2000);
    let group = target.group();
    let (mut times, mut ys, mut scores) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..sizes.eval_points {
        let t = (i as f64 + 0.5) / sizes.eval_points as f64;
        let tau = ve.sigma_sq(t);
        let y = target
            .noised_draws(tau, 1, &mut rng)?
            .pop()
            .ok_or_else(|| anyhow::anyhow!("no draw"))?;
        scores.extend(target.noised_score(tau, &y)?);
        times.push(t);
        ys.push(y);
    }
    let tau_min = ve.sigma_sq(0.0);
    let reference = features(
        &group,
        &target.noised_draws(tau_min, sizes.n_mmd, &mut rng)?,
    );
    let other = features(
        &group,
        &target.noised_draws(tau_min, sizes.n_mmd, &mut rng)?,
    );
    let bandwidth = median_bandwidth(&reference, &other, group.feature_dim())?;
    Ok(Eval {
        times,
        ys,
        scores,
        reference,
        bandwidth,
    })
}

/// Score MSE (all `t`, `t < SMALL_T`) and MMD² of the walk's samples.
fn evaluate<T: Exact>(
    target: &T,
    score: &mut GroupModelScore<T::G>,
    eval: &Eval<T>,
    sizes: &Sizes,
    grid: &tsm_core::lie::sampler::HeatGrid,
    seed: u64,
) -> Result<(f64, f64, f64)> {
    let group = target.group();
    let n = group.tangent_dim();
    let mut out = vec![0.0; n];
    let (mut all, mut small, mut n_small) = (0.0, 0.0, 0usize);
    for (i, (y, &t)) in eval.ys.iter().zip(&eval.times).enumerate() {
        score.score_at_time(std::slice::from_ref(y), t, &mut out)?;
        let e: f64 = out
            .iter()
            .zip(&eval.scores[i * n..(i + 1) * n])
            .map(|(a, b)| (a - b).powi(2))
            .sum();
        all += e;
        if t < SMALL_T {
            small += e;
            n_small += 1;
        }
    }
    let mut rng = tsm_core::rng::stream(seed, 3000);
    let mut x = haar_draws(&group, sizes.n_mmd, &mut rng);
    geodesic_random_walk(
        &group,
        score as &mut dyn GroupScore<T::G>,
        &mut x,
        grid,
        &mut rng,
        None,
    )?;
    let mmd2 = mmd2_unbiased(
        &features(&group, &x),
        &eval.reference,
        group.feature_dim(),
        eval.bandwidth,
    )?;
    Ok((
        all / eval.ys.len() as f64,
        small / n_small.max(1) as f64,
        mmd2,
    ))
}

/// Panel (b): DSM, TSM and the mixture on one group.
fn training_rows<T: Exact>(
    target: &T,
    sizes: &Sizes,
    seed: u64,
    rows: &mut Vec<Row>,
    steps_per_s: &mut Vec<(String, f64)>,
) -> Result<()> {
    let group = target.group();
    let ve = Ve::new(SIGMA_MIN, SIGMA_MAX)?;
    let mlp = MlpConfig {
        hidden: sizes.hidden,
        depth: sizes.depth,
        embedding_dim: sizes.embedding_dim,
        ..MlpConfig::default()
    };
    let model = group_model_config(&group, mlp, SIGMA_MIN, SIGMA_MAX)?;
    let grid = heat_grid(&model, sizes.walk_steps)?;
    let eval = eval_set(target, &ve, sizes, seed)?;
    let mut rng = tsm_core::rng::stream(seed, 4000);
    let data = target.p0_draws(sizes.train_draws, &mut rng);
    for (k, identity) in [
        ScoreIdentity::Dsi,
        ScoreIdentity::Tsi,
        ScoreIdentity::kappa_bar(target.mode_variance()),
    ]
    .into_iter()
    .enumerate()
    {
        let loss = group_loss_config(identity);
        let cfg = TrainConfig {
            adam: AdamConfig {
                lr: sizes.lr,
                ema_decay: sizes.ema_decay,
                ..AdamConfig::default()
            },
            batch: sizes.batch,
            steps: sizes.steps,
            seed,
            checkpoint_every: 0,
            ..TrainConfig::new(format!("lie:{}_mixture", T::NAME), model.clone(), loss)
        };
        let batches = GroupBatches::new(
            group.clone(),
            data.clone(),
            Some(target.target_score()),
            &cfg,
        )?;
        let mut trainer =
            Trainer::<(), _>::with_source(cfg, batches, &Device::Cpu, TrainerOptions::default())?;
        let mut secs = 0.0;
        loop {
            let model = trainer.model(true, &Device::Cpu)?;
            let mut score = GroupModelScore::new(group.clone(), model, &Device::Cpu)?;
            let (mse, mse_small, mmd2) = evaluate(target, &mut score, &eval, sizes, &grid, seed)?;
            let step = trainer.step() as f64;
            for (panel, value) in [
                ("score_mse", mse),
                ("score_mse_small_t", mse_small),
                ("mmd2", mmd2),
            ] {
                rows.push(Row {
                    group: T::NAME,
                    panel,
                    series: LOSSES[k],
                    x: step,
                    value,
                    std_err: None,
                });
            }
            if trainer.step() >= sizes.steps {
                break;
            }
            trainer.set_total_steps((trainer.step() + sizes.eval_every).min(sizes.steps))?;
            let start = std::time::Instant::now();
            trainer.run(None, |_, _| {})?;
            secs += start.elapsed().as_secs_f64();
        }
        tracing::info!(group = T::NAME, loss = LOSSES[k], "trained");
        steps_per_s.push((
            format!("{}_{}", T::NAME, LOSSES[k]),
            sizes.steps as f64 / secs.max(1e-9),
        ));
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct Parameters {
    torus_mixture: &'static str,
    so3_mixture: &'static str,
    schedule: String,
    weighting: &'static str,
    mix_weight: &'static str,
    sizes: Sizes,
    small_t: f64,
    walk: &'static str,
    mmd_kernel: &'static str,
    train_steps_per_second: Vec<(String, f64)>,
}

fn main() -> Result<()> {
    tune_cpu();
    init_tracing();
    let args = Args::parse();
    let quick = args.common.quick;
    let sizes = Sizes::new(quick, args.steps);
    if args.common.dry_run(
        "lie",
        format_args!(
            "the estimator variance at {} times and DSM/TSM/mix training for {} steps on the \
             torus and SO(3)",
            sizes.variance_times, sizes.steps
        ),
    ) {
        return Ok(());
    }
    let out = OutputDir::create(args.common.out_dir("lie"))?;
    let timer = RunTimer::start();
    let seed = args.common.seed;
    let ve = Ve::new(SIGMA_MIN, SIGMA_MAX)?;
    let (torus, so3) = (torus_target()?, so3_target()?);
    let mut rows = Vec::new();
    variance_rows(&torus, &ve, &sizes, seed, &mut rows)?;
    variance_rows(&so3, &ve, &sizes, seed, &mut rows)?;
    let mut speeds = Vec::new();
    training_rows(&torus, &sizes, seed, &mut rows, &mut speeds)?;
    training_rows(&so3, &sizes, seed, &mut rows, &mut speeds)?;
    let csv = out.write_csv("lie.csv", &rows)?;

    let mut panels = Vec::new();
    for (group, title) in [("torus", "𝕋²"), ("so3", "SO(3)")] {
        for (panel, heading, x_label, names) in [
            (
                "variance",
                format!("{title}: estimator variance (trace) vs t"),
                "t",
                ESTIMATORS,
            ),
            (
                "score_mse",
                format!("{title}: score MSE vs exact, all t"),
                "iteration",
                LOSSES,
            ),
            (
                "mmd2",
                format!("{title}: MMD² (walk vs exact), chordal RBF"),
                "iteration",
                LOSSES,
            ),
        ] {
            let mut p = Panel::new(heading, x_label, panel).log_y(true);
            for (c, name) in names.iter().enumerate() {
                let pts: Vec<(f64, f64)> = rows
                    .iter()
                    .filter(|r| r.group == group && r.panel == panel && r.series == *name)
                    .map(|r| (r.x, r.value.max(1e-6)))
                    .collect();
                p = p.with(Series::line(name.to_uppercase(), c, pts));
            }
            panels.push(p);
        }
    }
    let grid = PanelGrid {
        title: "TSM on Lie groups: 3-component mixtures on 𝕋² and SO(3), VE heat time".into(),
        cols: 3,
        panels,
    };
    let [svg, png] = save_svg_png(out.path(), "lie", (1500, 900), &grid)?;
    let params = Parameters {
        torus_mixture: "π = (0.5, 0.3, 0.2), μ = (−2, 2.5), (1, −0.5), (3, 3), s = (0.3, 0.5), (0.6, 0.2), (0.4, 0.4)",
        so3_mixture: "π = (0.4, 0.35, 0.25), μ = I, exp(0, 2, 0), exp(1.5, −0.5, 1), t = (0.05, 0.1, 0.2)",
        schedule: format!("ve(sigma_min={SIGMA_MIN},sigma_max={SIGMA_MAX}), heat time σ_t²"),
        weighting: "uniform",
        mix_weight: "w_τ = τ/(τ + v) on DSI, v = Σ πᵢ (component variance)",
        sizes,
        small_t: SMALL_T,
        walk: "geodesic random walk from Haar at σ_max², uniform in t, no noise on the last step",
        mmd_kernel: "Gaussian in the embedding distance ((cos, sin) or the rotation matrix), median bandwidth",
        train_steps_per_second: speeds,
    };
    let record = timer.record(
        "lie",
        seed,
        quick,
        params,
        &["lie.csv", &svg, &png, "lie.json"],
    );
    out.write_json("lie.json", &record)?;
    tracing::info!(csv = %csv.display(), seconds = timer.elapsed_s(), "lie written");
    Ok(())
}
