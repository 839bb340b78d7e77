//! Fig. 1 of *Latent Target Score Matching* (Ko & Geffner 2024). Left (top row): the variance
//! of the regression targets against `t` for DSM (`A = −ε/σ_t`), LTSM
//! (`B = α_t⁻¹ ∇_θ log p(θ₀, z, x)`, Prop. 3.1) and MIX at the optimal weight
//! (`y* = w_t* A + (1 − w_t*) B`, Prop. 3.2), per SBI task. Right (bottom row): the score error
//! of conditional score networks trained with each of the three losses.
//!
//! **The variance plotted** is the target's conditional variance about the score it regresses
//! on, summed over coordinates:
//! `V_y(t) = E‖y − s_t‖² = E tr Cov(y | θ_t, x)`, `s_t = ∇log p_t(θ_t | x) = E[y | θ_t, x]`,
//! the expectation over `(θ₀, z, x) ~ p(θ) p(z|θ) p(x|θ, z)` and `ε ~ N(0, I)` at fixed `t`. It
//! is the part of the regression loss `E‖s_φ − y‖² = E‖s_φ − s_t‖² + V_y(t)` that no network
//! can remove. Because `E⟨y, s_t⟩ = E‖s_t‖²`, `V_y(t) = E‖y‖² − J_t` with
//! `J_t = E‖s_t‖²` and the second moments in closed form (`tsm_core::simulator::LatentMix`):
//! `E‖A‖² = d/σ_t²`, `E‖B‖² = F/α_t²`, `E‖y*‖² = 1/(α_t²/F + σ_t²/d)`.
//!
//! **How.** For `M` simulations `(θ₀, z, x, g)` of the task, the exact posterior `p(θ | x)` gives
//! `s_t` at any `θ_t`: in closed form for `linear_gaussian` (`N(m, v I)` →
//! `−(θ_t − α_t m)/(α_t² v + σ_t²)`), and for the count tasks from the reference grid posterior
//! (cell centres `θ_c` with masses `p_c`): `p_t(θ_t | x) ≈ Σ_c p_c N(θ_t; α_t θ_c, σ_t² I)`, so
//! `s_t = (α_t Σ_c π_c θ_c − θ_t)/σ_t²` with `π_c ∝ p_c N(θ_t; α_t θ_c, σ_t² I)` (cells below
//! `10⁻¹⁴` of the mass dropped). The point-mass sum is the midpoint rule for the Gaussian
//! convolution, accurate while the kernel's width in `θ₀`, `σ_t/α_t`, is at least the cell
//! width `h`; times where it is not are counted in the JSON (`under_resolved`). At each `t`,
//! `R` fresh `ε` per simulation give `θ_t`, the three targets and `s_t`. The standard error
//! is that of the mean over the `M` simulations of their per-simulation averages (the `R`
//! draws of one simulation share `(θ₀, z, x)`).
//! For `linear_gaussian` the closed forms (per coordinate, `k_t = 1/(α_t² v + σ_t²)`):
//! `d(1/σ_t² − k_t)`, `d(5/α_t² − k_t)`, `d(5/(α_t² + 5σ_t²) − k_t)` are drawn dashed.
//!
//! **The score error** (Fig. 1, right). Per task, three conditional score networks are trained
//! with DSM, LTSM and MIX(`w_t*`, `F` estimated from the set) on the same `budget` simulations
//! (seed `--seed`, `tsm_experiments::ltsm::train_sbi`: the `sbi train` defaults, EMA weights),
//! and evaluated on the `M` simulations above (independent of the training set) at
//! `ERROR_DRAWS = 4` fresh `θ_t` each per time, the same draws for the three networks:
//! `E‖s_φ(θ_t, t, x) − s_t(θ_t | x)‖²` with `s_t` the exact posterior score as above (the
//! reducible part of the regression loss). Standard error over the simulations.
//!
//! `cargo xtask reproduce-ltsm-fig1 [--out DIR] [--seed S] [--quick]`
//!
//! Output `ltsm_fig1.csv` columns: `task,target,t,variance,std_err,closed_form,second_moment`
//! with `target` one of `dsm`, `ltsm`, `mix`, `posterior_score` (that row's `variance` is
//! `J_t = E‖s_t‖²`), or `trained_dsm`, `trained_ltsm`, `trained_mix` (that row's `variance` is
//! the trained network's score error `E‖s_φ − s_t‖²`, `closed_form` and `second_moment`
//! empty); `closed_form` only for `linear_gaussian`; `second_moment` the closed-form `E‖y‖²`
//! (empty for `posterior_score`). Same seed, same CSV bytes.
//!
//! Full: `linear_gaussian` `M = 4,000`, `galton_board` `M = 200`, `sir` `M = 24` (its grid
//! posterior costs seconds per observation), `R = 16`, `t = k/40`. `--quick`: `M = 400, 12, 2`
//! (a coarser `sir` grid: 24/48 cells a side), `R = 8`, `t = 0.05` and `k/10`.
//! Trained networks, full: every task, budget 10⁴, 5,000 steps of the 3 × 128 MLP
//! (`RunSizes::full`). `--quick`: `linear_gaussian` only, budget 10³, 1,500 steps of a 2 × 32
//! MLP (`RunSizes::quick`).

use anyhow::Context;
use clap::Parser;
use plotters::chart::SeriesLabelPosition;
use rayon::prelude::*;
use serde::Serialize;
use std::sync::Arc;

use tsm_core::rng::{normal, stream};
use tsm_core::sampler::ConditionalScore;
use tsm_core::schedule::{Cosine, Schedule};
use tsm_core::simulator::LatentMix;
use tsm_experiments::ltsm::{train_sbi, RunSizes};
use tsm_experiments::output::RunTimer;
use tsm_experiments::plot::{save_svg_png, Panel, PanelGrid, Series, Style};
use tsm_experiments::{init_tracing, FigureArgs, OutputDir};
use tsm_nn::candle::Device;
use tsm_nn::sbi::{SbiLoss, SimulationSet};
use tsm_nn::score::ModelConditionalScore;
use tsm_nn::ScoreModel;
use tsm_targets::sbi::{
    GaltonBoard, GridPosterior, LinearGaussian, Posterior, SbiTask, Sir, SirGrid, Task,
};

/// Reproduces Fig. 1 of Latent TSM: the variance of the DSM, LTSM and MIX regression targets
/// about the posterior score against t, per SBI task, and the score error of networks trained
/// with each loss
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: FigureArgs,
}

/// One CSV row.
#[derive(Debug, Serialize)]
struct Row {
    task: String,
    target: &'static str,
    t: f64,
    variance: f64,
    std_err: f64,
    closed_form: Option<f64>,
    second_moment: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Parameters {
    schedule: &'static str,
    draws_per_simulation: usize,
    /// Simulations the score networks are trained on.
    budget: usize,
    /// Their network and optimiser sizes.
    sizes: RunSizes,
    /// `θ_t` draws per simulation in the score error.
    error_draws_per_simulation: usize,
    grid_mass_cutoff: f64,
    sir_grid: SirGridRecord,
    tasks: Vec<TaskSummary>,
}

#[derive(Debug, Serialize)]
struct SirGridRecord {
    coarse_cells: usize,
    fine_cells: usize,
    log_range: f64,
}

#[derive(Debug, Serialize)]
struct TaskSummary {
    task: String,
    dim: usize,
    score_constant: f64,
    simulations: usize,
    /// Simulations whose reference grid was refused (mass on its outer ring), left out.
    refused_grids: usize,
    times: Vec<f64>,
    /// (simulation, time) pairs with `σ_t/α_t` below the grid's cell width.
    under_resolved: usize,
    /// Where the Monte Carlo DSM and LTSM curves cross (linear interpolation in `log V`).
    crossing_time: Option<f64>,
    /// Where `w_t* = ½`: `t = (2/π) atan(√(d/F))` (cosine schedule).
    half_weight_time: f64,
    /// `linear_gaussian`: cells with `|MC − closed form| ≤ 5 SE`, of all cells.
    within_5_std_errs: Option<(usize, usize)>,
    /// Whether score networks were trained (Fig. 1, right) on this task.
    trained: bool,
    /// Seconds spent training them and evaluating their score error.
    train_seconds: f64,
    seconds: f64,
}

/// The exact posterior at one `x`, as what `s_t` needs.
enum Exact {
    /// `N(m, v I)` per coordinate.
    Gaussian { mean: Vec<f64>, var: Vec<f64> },
    /// Cell centres and log-masses, and the largest cell width.
    Grid {
        centres: Vec<[f64; 2]>,
        log_mass: Vec<f64>,
        cell: f64,
    },
}

/// Cells below this fraction of the grid's mass are dropped from `s_t`'s sums.
const MASS_CUTOFF: f64 = 1e-14;

impl Exact {
    fn new(posterior: Posterior) -> Self {
        match posterior {
            Posterior::Gaussian(g) => Self::Gaussian {
                var: g.sd.iter().map(|s| s * s).collect(),
                mean: g.mean,
            },
            Posterior::Grid(g) => Self::from_grid(&g),
        }
    }

    fn from_grid(g: &GridPosterior) -> Self {
        let [_, n2] = g.shape();
        let (mut centres, mut log_mass) = (Vec::new(), Vec::new());
        for (k, &p) in g.probabilities().iter().enumerate() {
            if p > MASS_CUTOFF {
                centres.push(g.centre(k / n2, k % n2));
                log_mass.push(p.ln());
            }
        }
        let [h1, h2] = g.cell_size();
        Self::Grid {
            centres,
            log_mass,
            cell: h1.max(h2),
        }
    }

    /// `s_t(θ_t | x)` into `out`.
    fn score(&self, alpha: f64, sigma: f64, theta_t: &[f64], out: &mut [f64]) {
        let s2 = sigma * sigma;
        match self {
            Self::Gaussian { mean, var } => {
                for (((o, &th), &m), &v) in out.iter_mut().zip(theta_t).zip(mean).zip(var) {
                    *o = -(th - alpha * m) / (alpha * alpha * v + s2);
                }
            }
            Self::Grid {
                centres, log_mass, ..
            } => {
                let log_w = |c: &[f64; 2], l: f64| {
                    let (d1, d2) = (theta_t[0] - alpha * c[0], theta_t[1] - alpha * c[1]);
                    l - (d1 * d1 + d2 * d2) / (2.0 * s2)
                };
                let max = centres
                    .iter()
                    .zip(log_mass)
                    .map(|(c, &l)| log_w(c, l))
                    .fold(f64::NEG_INFINITY, f64::max);
                let (mut total, mut m1, mut m2) = (0.0, 0.0, 0.0);
                for (c, &l) in centres.iter().zip(log_mass) {
                    let e = log_w(c, l) - max;
                    // Terms below e⁻⁴⁰ ≈ 4·10⁻¹⁸ of the largest: skip their exp.
                    if e < -40.0 {
                        continue;
                    }
                    let w = e.exp();
                    total += w;
                    m1 += w * c[0];
                    m2 += w * c[1];
                }
                out[0] = (alpha * m1 / total - theta_t[0]) / s2;
                out[1] = (alpha * m2 / total - theta_t[1]) / s2;
            }
        }
    }

    fn cell(&self) -> f64 {
        match self {
            Self::Gaussian { .. } => 0.0,
            Self::Grid { cell, .. } => *cell,
        }
    }
}

/// Sizes of one task's run.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    simulations: usize,
    draws: usize,
}

/// One simulation kept for the trained models' score error: `θ₀`, `x` and its exact
/// posterior.
struct Simulation {
    theta: Vec<f64>,
    x: Vec<f64>,
    exact: Exact,
}

/// Per simulation: the averages over its `R` draws at every time of
/// `[‖A − s‖², ‖B − s‖², ‖y* − s‖², ‖s‖²]`, the number of under-resolved times and the
/// simulation itself; `None` when the reference grid was refused.
type PerSimulation = Option<(Vec<[f64; 4]>, usize, Simulation)>;

/// The Monte Carlo of one task.
fn run_task<T: Task>(
    task: &T,
    posterior: impl Fn(&[f64]) -> tsm_targets::Result<Posterior> + Sync,
    times: &[f64],
    sizes: Sizes,
    seed: u64,
) -> anyhow::Result<Vec<PerSimulation>> {
    let d = task.dim();
    let mix = LatentMix::new(d, task.task().score_constant())?;
    let weights: Vec<f64> = times
        .iter()
        .map(|&t| mix.optimal_weight(&Cosine, t))
        .collect::<Result<_, _>>()?;
    (0..sizes.simulations)
        .into_par_iter()
        .map(|i| -> anyhow::Result<PerSimulation> {
            // Simulation i: its own stream (seed, i), so the result does not depend on threads.
            let mut rng = stream(seed, i as u64);
            let (mut theta, mut z, mut x, mut g) = (
                vec![0.0; d],
                task.new_latent(),
                vec![0.0; task.observation_dim()],
                vec![0.0; d],
            );
            task.simulate(&mut rng, &mut theta, &mut z, &mut x, &mut g);
            let exact = match posterior(&x) {
                Ok(p) => Exact::new(p),
                Err(e) => {
                    tracing::warn!("{}: simulation {i} left out: {e}", task.task());
                    return Ok(None);
                }
            };
            let (mut eps, mut theta_t, mut s) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
            let mut under = 0;
            let mut out = Vec::with_capacity(times.len());
            for (&t, &w) in times.iter().zip(&weights) {
                let (alpha, sigma) = (Cosine.alpha(t), Cosine.sigma(t));
                under += usize::from(sigma / alpha < exact.cell());
                let mut acc = [0.0; 4];
                for _ in 0..sizes.draws {
                    normal::fill(&mut rng, &mut eps);
                    for j in 0..d {
                        theta_t[j] = alpha * theta[j] + sigma * eps[j];
                    }
                    exact.score(alpha, sigma, &theta_t, &mut s);
                    for j in 0..d {
                        let (a, b) = (-eps[j] / sigma, g[j] / alpha);
                        let y = w * a + (1.0 - w) * b;
                        acc[0] += (a - s[j]).powi(2);
                        acc[1] += (b - s[j]).powi(2);
                        acc[2] += (y - s[j]).powi(2);
                        acc[3] += s[j] * s[j];
                    }
                }
                out.push(acc.map(|v| v / sizes.draws as f64));
            }
            Ok(Some((out, under, Simulation { theta, x, exact })))
        })
        .collect()
}

/// The trained models' mean squared score error at every time:
/// `(E‖s_φ(θ_t, t, x) − s_t(θ_t | x)‖², its standard error)` per model, over `sims` and
/// `draws` fresh `θ_t = α_t θ₀ + σ_t ε` each (the same draws for every model). The standard
/// error is that of the mean over simulations of their per-simulation averages.
fn score_errors(
    models: &[ScoreModel],
    sims: &[&Simulation],
    times: &[f64],
    draws: usize,
    seed: u64,
) -> anyhow::Result<Vec<Vec<(f64, f64)>>> {
    let d = sims[0].theta.len();
    let k = sims[0].x.len();
    let m = sims.len();
    let n = m * draws;
    let mut errors = vec![Vec::with_capacity(times.len()); models.len()];
    for (ti, &t) in times.iter().enumerate() {
        let (alpha, sigma) = (Cosine.alpha(t), Cosine.sigma(t));
        // θ_t and s_t for every (simulation, draw): stream (seed, ERROR_STREAM + i·T + ti).
        let per_sim: Vec<(Vec<f64>, Vec<f64>)> = sims
            .par_iter()
            .enumerate()
            .map(|(i, sim)| {
                let mut rng = stream(seed, ERROR_STREAM + (i * times.len() + ti) as u64);
                let (mut eps, mut theta_t, mut s) =
                    (vec![0.0; d], vec![0.0; d * draws], vec![0.0; d * draws]);
                for (th, sc) in theta_t.chunks_exact_mut(d).zip(s.chunks_exact_mut(d)) {
                    normal::fill(&mut rng, &mut eps);
                    for j in 0..d {
                        th[j] = alpha * sim.theta[j] + sigma * eps[j];
                    }
                    sim.exact.score(alpha, sigma, th, sc);
                }
                (theta_t, s)
            })
            .collect();
        let theta_t: Vec<f64> = per_sim.iter().flat_map(|p| p.0.iter().copied()).collect();
        let exact: Vec<f64> = per_sim.iter().flat_map(|p| p.1.iter().copied()).collect();
        let condition: Vec<f64> = sims
            .iter()
            .flat_map(|sim| std::iter::repeat_n(sim.x.iter().copied(), draws).flatten())
            .collect();
        debug_assert_eq!(condition.len(), n * k);
        let mut learned = vec![0.0; n * d];
        for (model, out) in models.iter().zip(errors.iter_mut()) {
            ModelConditionalScore::new(model, &Device::Cpu)?.conditional_score(
                &theta_t,
                t,
                &condition,
                &mut learned,
            )?;
            let per: Vec<f64> = learned
                .chunks_exact(d * draws)
                .zip(exact.chunks_exact(d * draws))
                .map(|(l, e)| {
                    l.iter().zip(e).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / draws as f64
                })
                .collect();
            let mean = per.iter().sum::<f64>() / m as f64;
            let var = per.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (m as f64 - 1.0);
            anyhow::ensure!(
                mean.is_finite(),
                "non-finite score error at t = {t} (a diverged model?)"
            );
            out.push((mean, (var / m as f64).sqrt()));
        }
    }
    Ok(errors)
}

/// Stream offset of the score-error draws (the variance draws use streams `0..M`).
const ERROR_STREAM: u64 = 1 << 40;
/// `θ_t` draws per simulation for the score error.
const ERROR_DRAWS: usize = 4;
/// The trained models' losses, in the figure's order, and their CSV `target`s.
const TRAINED: [(SbiLoss, &str); 3] = [
    (SbiLoss::Dsm, "trained_dsm"),
    (SbiLoss::Ltsm, "trained_ltsm"),
    (SbiLoss::Mix, "trained_mix"),
];

const TARGETS: [&str; 4] = ["dsm", "ltsm", "mix", "posterior_score"];
const LABELS: [&str; 4] = ["DSM (A)", "LTSM (B)", "MIX (w_t*)", "J_t = E‖s_t‖²"];

fn main() -> anyhow::Result<()> {
    init_tracing();
    let args = Args::parse();
    let quick = args.common.quick;
    let (draws, steps) = if quick { (8, 10) } else { (16, 40) };
    // Fig. 1 (right): the training runs. Quick: `linear_gaussian` only.
    let (budget, run_sizes) = if quick {
        (1_000, RunSizes::quick(1_500))
    } else {
        (10_000, RunSizes::full(5_000))
    };
    let trains = |task: SbiTask| !quick || task == SbiTask::LinearGaussian;
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let simulations = |task: SbiTask| match (task, quick) {
        (SbiTask::LinearGaussian, true) => 400,
        (SbiTask::LinearGaussian, false) => 4_000,
        (SbiTask::GaltonBoard, true) => 12,
        (SbiTask::GaltonBoard, false) => 200,
        (SbiTask::Sir, true) => 2,
        (SbiTask::Sir, false) => 24,
    };
    let sir_grid = if quick {
        SirGrid {
            coarse_cells: 24,
            fine_cells: 48,
            ..SirGrid::default()
        }
    } else {
        SirGrid::default()
    };
    if args.common.dry_run(
        "ltsm_fig1",
        format!(
            "the DSM, LTSM and MIX target variances on the three SBI tasks ({}, {} and {} \
             simulations, {draws} draws each, {} times) and the score error of networks \
             trained with each loss ({} steps on {budget} simulations, {})",
            simulations(SbiTask::LinearGaussian),
            simulations(SbiTask::GaltonBoard),
            simulations(SbiTask::Sir),
            steps - usize::from(!quick),
            run_sizes.steps,
            if quick {
                "linear_gaussian only"
            } else {
                "every task"
            }
        ),
    ) {
        return Ok(());
    }
    let out = OutputDir::create(args.common.out_dir("ltsm_fig1"))?;
    let timer = RunTimer::start();
    let seed = args.common.seed;
    let (mut rows, mut panels, mut summaries) = (Vec::new(), Vec::new(), Vec::new());
    let mut error_panels = Vec::new();
    for (task_index, task) in SbiTask::ALL.into_iter().enumerate() {
        let started = RunTimer::start();
        let d = task.dim();
        let name = task.to_string();
        let sizes = Sizes {
            simulations: simulations(task),
            draws,
        };
        // Quick: t = 0.05 (well below every task's crossing) and k/10.
        let times: Vec<f64> = quick
            .then_some(0.05)
            .into_iter()
            .chain((1..steps).map(|k| k as f64 / steps as f64))
            .collect();
        let task_seed = seed.wrapping_add(task_index as u64);
        let per_sim = match task {
            SbiTask::LinearGaussian => run_task(
                &LinearGaussian,
                |x| LinearGaussian.reference_posterior(x),
                &times,
                sizes,
                task_seed,
            )?,
            SbiTask::GaltonBoard => {
                // One board, so that its table of bin laws is built once.
                let board = GaltonBoard::new();
                run_task(
                    &board,
                    |x| board.reference_posterior(x),
                    &times,
                    sizes,
                    task_seed,
                )?
            }
            SbiTask::Sir => run_task(
                &Sir::new(),
                |x| Sir::new().reference_posterior_with(x, sir_grid),
                &times,
                sizes,
                task_seed,
            )?,
        };
        let kept: Vec<&(Vec<[f64; 4]>, usize, Simulation)> = per_sim.iter().flatten().collect();
        let refused = per_sim.len() - kept.len();
        anyhow::ensure!(
            kept.len() >= 2,
            "{name}: fewer than two simulations with a reference posterior"
        );
        let under_resolved: usize = kept.iter().map(|(_, u, _)| u).sum();
        let m = kept.len() as f64;
        let mix = LatentMix::new(d, task.score_constant())?;
        let mut task_rows = Vec::new();
        let mut within = (0, 0);
        for (k, &t) in times.iter().enumerate() {
            let moments = mix.second_moments(&Cosine, t)?;
            let closed = if task == SbiTask::LinearGaussian {
                let (a2, s2) = (Cosine.alpha(t).powi(2), Cosine.sigma_sq(t));
                let kt = 1.0 / (a2 * LinearGaussian::posterior_variance() + s2);
                let df = d as f64;
                Some([
                    df * (1.0 / s2 - kt),
                    df * (5.0 / a2 - kt),
                    df * (5.0 / (a2 + 5.0 * s2) - kt),
                    df * kt,
                ])
            } else {
                None
            };
            for (c, target) in TARGETS.into_iter().enumerate() {
                let values = kept.iter().map(|(v, _, _)| v[k][c]);
                let mean = values.clone().sum::<f64>() / m;
                let var = values.map(|v| (v - mean).powi(2)).sum::<f64>() / (m - 1.0);
                let std_err = (var / m).sqrt();
                let closed_form = closed.map(|cl| cl[c]);
                if let Some(cf) = closed_form {
                    within.1 += 1;
                    within.0 += usize::from((mean - cf).abs() <= 5.0 * std_err);
                }
                task_rows.push(Row {
                    task: name.clone(),
                    target,
                    t,
                    variance: mean,
                    std_err,
                    closed_form,
                    second_moment: [
                        Some(moments.dsm),
                        Some(moments.ltsm),
                        Some(moments.mix),
                        None,
                    ][c],
                });
            }
        }
        // Fig. 1 (right): conditional score networks trained with DSM, LTSM and MIX(w_t*) on
        // the same simulations, their score error on the simulations above (fresh to them).
        let train_started = RunTimer::start();
        let trained = if trains(task) {
            let set = Arc::new(SimulationSet::simulate(task, budget, seed, |_| {})?);
            let mut models = Vec::new();
            for (loss, _) in TRAINED {
                let trainer = train_sbi(&set, loss, &run_sizes, threads)?;
                let model = trainer.model(true, &Device::Cpu)?;
                anyhow::ensure!(
                    model.schedule().name() == "cosine",
                    "{name}: the trained model's schedule is not the cosine"
                );
                models.push(model);
            }
            let sims: Vec<&Simulation> = kept.iter().map(|(_, _, s)| s).collect();
            let errors = score_errors(&models, &sims, &times, ERROR_DRAWS, task_seed)?;
            for ((_, target), curve) in TRAINED.into_iter().zip(&errors) {
                for (&t, &(mean, std_err)) in times.iter().zip(curve) {
                    task_rows.push(Row {
                        task: name.clone(),
                        target,
                        t,
                        variance: mean,
                        std_err,
                        closed_form: None,
                        second_moment: None,
                    });
                }
            }
            true
        } else {
            false
        };
        let train_seconds = train_started.elapsed_s();
        let curve = |target: &str, pick: fn(&Row) -> Option<f64>| -> Vec<(f64, f64)> {
            task_rows
                .iter()
                .filter(|r| r.target == target)
                .filter_map(|r| pick(r).map(|v| (r.t, v)))
                .collect()
        };
        let crossing_time = {
            let (dsm, ltsm) = (
                curve("dsm", |r| Some(r.variance)),
                curve("ltsm", |r| Some(r.variance)),
            );
            dsm.windows(2).zip(ltsm.windows(2)).find_map(|(a, b)| {
                let (g0, g1) = ((b[0].1 / a[0].1).ln(), (b[1].1 / a[1].1).ln());
                (g0 < 0.0 && g1 >= 0.0).then(|| a[0].0 + (a[1].0 - a[0].0) * g0 / (g0 - g1))
            })
        };
        let half_weight_time =
            (2.0 / std::f64::consts::PI) * (d as f64 / task.score_constant()).sqrt().atan();
        let seconds = started.elapsed_s() - train_seconds;
        tracing::info!(
            "{name}: {} simulations ({refused} refused grids, {under_resolved} under-resolved \
             cells), DSM/LTSM crossing at t = {crossing_time:?} (w* = ½ at {half_weight_time:.3}), \
             {seconds:.1} s",
            kept.len()
        );
        let mut panel = Panel::new(
            format!("{name} (d = {d}, F = {:.1})", task.score_constant()),
            "t",
            "E‖y − s_t‖²",
        )
        .log_y(true);
        for (c, (target, label)) in TARGETS.into_iter().zip(LABELS).enumerate() {
            let color = if c == 3 { 6 } else { c };
            panel = panel.with(Series::line(
                label,
                color,
                curve(target, |r| Some(r.variance)),
            ));
            if task == SbiTask::LinearGaussian {
                panel = panel.with(
                    Series::line("", color, curve(target, |r| r.closed_form)).styled(Style::Dashed),
                );
            }
        }
        panels.push(panel.legend(Some(SeriesLabelPosition::LowerLeft)));
        if trained {
            let mut panel = Panel::new(
                format!(
                    "{name}: trained models (budget {budget}, {} steps)",
                    run_sizes.steps
                ),
                "t",
                "E‖s_φ − s_t‖²",
            )
            .log_y(true);
            for (c, (loss, target)) in TRAINED.into_iter().enumerate() {
                panel = panel.with(Series::line(
                    loss.to_string(),
                    c,
                    curve(target, |r| Some(r.variance)),
                ));
            }
            error_panels.push(panel.legend(Some(SeriesLabelPosition::UpperRight)));
        }
        summaries.push(TaskSummary {
            task: name,
            dim: d,
            score_constant: task.score_constant(),
            simulations: kept.len(),
            refused_grids: refused,
            times,
            under_resolved,
            crossing_time,
            half_weight_time,
            within_5_std_errs: (task == SbiTask::LinearGaussian).then_some(within),
            trained,
            train_seconds,
            seconds,
        });
        rows.extend(task_rows);
    }
    out.write_csv("ltsm_fig1.csv", &rows)?;
    let grid = PanelGrid {
        title: "Latent TSM Fig. 1: variance of the regression targets about the posterior score \
                (Monte Carlo; dashed: closed form)"
            .into(),
        cols: 3,
        panels: panels.into_iter().chain(error_panels).collect(),
    };
    let [svg, png] = save_svg_png(out.path(), "ltsm_fig1", (1500, 1000), &grid)?;
    let params = Parameters {
        schedule: "cosine",
        draws_per_simulation: draws,
        budget,
        sizes: run_sizes,
        error_draws_per_simulation: ERROR_DRAWS,
        grid_mass_cutoff: MASS_CUTOFF,
        sir_grid: SirGridRecord {
            coarse_cells: sir_grid.coarse_cells,
            fine_cells: sir_grid.fine_cells,
            log_range: sir_grid.log_range,
        },
        tasks: summaries,
    };
    let record = timer.record(
        "ltsm_fig1",
        seed,
        quick,
        params,
        &["ltsm_fig1.csv", &svg, &png],
    );
    out.write_json("ltsm_fig1.json", &record)
        .context("writing ltsm_fig1.json")?;
    tracing::info!("wrote {}", out.path().display());
    Ok(())
}
