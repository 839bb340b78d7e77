//! Fig. 5 of *Latent Target Score Matching* (Ko & Geffner 2024): the learned DSM weight
//! `w(t)` of the `mix_learned` loss against the variance-optimal `w_t*`, per task.
//!
//! For each task a conditional score model is trained with `mix_learned` (the weight
//! `w(t) = sigmoid(cubic in the log-SNR)`, `tsm_nn::sbi::LearnedWeight`, trained jointly with
//! the network; it starts at `σ_t²/(σ_t² + α_t²)`, the optimum of an uninformative
//! simulator). Its `w(t)` is drawn over the closed form `w_t* = Fσ_t²/(Fσ_t² + dα_t²)` with
//! the task's reference `F`, and over the Monte Carlo estimate
//! `Σ⟨B, B − A⟩/Σ‖A − B‖²` (with its standard error) from an independent set of simulations.
//!
//! `cargo xtask reproduce-ltsm-fig5 [--out DIR] [--seed S] [--quick]`
//!
//! Output `ltsm_fig5.csv` columns: `task,curve,t,w,std_err` with `curve` one of `learned`
//! (the EMA of the coefficients, what the figure draws), `learned_raw` (the last step's
//! coefficients), `start`, `closed_form`, `monte_carlo` (`std_err` set only there). The JSON
//! adds per task the learned coefficients, `F̂` of the training set and the largest gap
//! between the learned and the optimal weight on the grid (and between their logits on
//! `t ∈ [0.05, 0.95]`).
//!
//! Full: budget 10⁴ simulations, 5,000 steps at the `sbi train` defaults (3 × 128 MLP, batch
//! 256, lr 10⁻³, EMA 0.999), `w_t*` by Monte Carlo from 10⁵ simulations at 19 times.
//! `--quick`: 2,000 simulations, 600 steps of a 2 × 32 MLP, 10⁴ simulations at 9 times.
//! Same seed, same CSV bytes.

use std::sync::Arc;

use clap::Parser;
use serde::Serialize;
use tsm_core::schedule::Cosine;
use tsm_core::simulator::{estimate_optimal_weight, LatentMix};
use tsm_core::weighting::TimeRange;
use tsm_experiments::ltsm::{train_sbi, RunSizes, WeightRow};
use tsm_experiments::output::RunTimer;
use tsm_experiments::plot::{save_svg_png, Panel, PanelGrid, Series, Style};
use tsm_experiments::training::tune_cpu;
use tsm_experiments::{init_tracing, FigureArgs, OutputDir};
use tsm_nn::sbi::{LearnedWeight, SbiLoss, SimulationSet};
use tsm_targets::sbi::SbiTask;

/// Reproduces Fig. 5 of Latent TSM: the learned DSM weight w(t) over the optimal w_t*, per
/// task.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: FigureArgs,
}

#[derive(Debug, Serialize)]
struct Parameters {
    budget: usize,
    sizes: RunSizes,
    reference_simulations: usize,
    t_points: usize,
    mc_times: Vec<f64>,
    schedule: &'static str,
    weight_lr_gain: f64,
    tasks: Vec<TaskSummary>,
}

#[derive(Debug, Serialize)]
struct TaskSummary {
    task: String,
    score_constant_reference: f64,
    score_constant_training_set: f64,
    score_constant_training_set_se: f64,
    coefficients_ema: Vec<f64>,
    coefficients_raw: Vec<f64>,
    coefficients_optimal: Vec<f64>,
    max_abs_gap: f64,
    max_logit_gap: f64,
    train_seconds: f64,
}

fn main() -> anyhow::Result<()> {
    tune_cpu();
    init_tracing();
    let args = Args::parse();
    let quick = args.common.quick;
    let (budget, sizes, n_ref, t_points, n_mc) = if quick {
        (2_000, RunSizes::quick(600), 10_000, 49, 9)
    } else {
        (10_000, RunSizes::full(5_000), 100_000, 199, 19)
    };
    if args.common.dry_run(
        "ltsm_fig5",
        format!(
            "mix_learned on the three tasks ({budget} simulations, {} steps)",
            sizes.steps
        ),
    ) {
        return Ok(());
    }
    let out = OutputDir::create(args.common.out_dir("ltsm_fig5"))?;
    let timer = RunTimer::start();
    let seed = args.common.seed;
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let range = TimeRange::trimmed();
    let grid: Vec<f64> = (0..t_points)
        .map(|i| range.lerp(i as f64 / (t_points - 1) as f64))
        .collect();
    let mc_times: Vec<f64> = (1..=n_mc).map(|i| i as f64 / (n_mc + 1) as f64).collect();
    let (mut rows, mut panels, mut summaries) = (Vec::new(), Vec::new(), Vec::new());
    for task in SbiTask::ALL {
        let d = task.dim();
        let started = RunTimer::start();
        let set = Arc::new(SimulationSet::simulate(task, budget, seed, |_| {})?);
        let trainer = train_sbi(&set, SbiLoss::MixLearned, &sizes, threads)?;
        let train_seconds = started.elapsed_s();
        let state = trainer.state()?;
        let learned = LearnedWeight::from_state(&state, true)?;
        let raw = LearnedWeight::from_state(&state, false)?;
        let f_ref = task.score_constant();
        let optimal = LatentMix::new(d, f_ref)?;
        let name = task.to_string();
        let curve = |curve: &'static str, w: &dyn Fn(f64) -> anyhow::Result<f64>| {
            grid.iter()
                .map(|&t| {
                    Ok(WeightRow {
                        task: name.clone(),
                        curve,
                        t,
                        w: w(t)?,
                        std_err: None,
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()
        };
        let learned_rows = curve("learned", &|t| Ok(learned.at(&Cosine, t)?))?;
        let raw_rows = curve("learned_raw", &|t| Ok(raw.at(&Cosine, t)?))?;
        let start_rows = curve("start", &|t| Ok(LearnedWeight::initial().at(&Cosine, t)?))?;
        let closed_rows = curve("closed_form", &|t| Ok(optimal.optimal_weight(&Cosine, t)?))?;
        // w_t* by Monte Carlo on an independent set (the stream of seed + 1), fresh ε per
        // time from the stream (seed + 1, i).
        let reference = SimulationSet::simulate(task, n_ref, seed.wrapping_add(1), |_| {})?;
        let mut mc_rows = Vec::new();
        for (i, &t) in mc_times.iter().enumerate() {
            let mut rng = tsm_core::rng::stream(seed.wrapping_add(1), i as u64);
            let e = estimate_optimal_weight(reference.joint_scores(), d, &Cosine, t, &mut rng)?;
            mc_rows.push(WeightRow {
                task: name.clone(),
                curve: "monte_carlo",
                t,
                w: e.value,
                std_err: Some(e.std_err),
            });
        }
        let logit = |p: f64| (p / (1.0 - p)).ln();
        let (mut max_abs_gap, mut max_logit_gap) = (0.0f64, 0.0f64);
        for (l, c) in learned_rows.iter().zip(&closed_rows) {
            max_abs_gap = max_abs_gap.max((l.w - c.w).abs());
            // The logit only where the weight is not saturated: near t = 0 or 1 (w within
            // 10⁻³ of 0 or 1) the loss barely sees it.
            if (0.05..=0.95).contains(&l.t) {
                max_logit_gap = max_logit_gap.max((logit(l.w) - logit(c.w)).abs());
            }
        }
        let f_hat = set.score_constant()?;
        tracing::info!(
            "{task}: learned coefficients {:?}, largest gap to w_t* {max_abs_gap:.4} \
             (logit {max_logit_gap:.3}), {train_seconds:.1} s",
            learned.coefficients()
        );
        summaries.push(TaskSummary {
            task: name.clone(),
            score_constant_reference: f_ref,
            score_constant_training_set: f_hat.value,
            score_constant_training_set_se: f_hat.std_err,
            coefficients_ema: learned.coefficients().to_vec(),
            coefficients_raw: raw.coefficients().to_vec(),
            coefficients_optimal: LearnedWeight::optimal(f_ref, d)?.coefficients().to_vec(),
            max_abs_gap,
            max_logit_gap,
            train_seconds,
        });
        let points = WeightRow::points;
        panels.push(
            Panel::new(
                format!("{name} (F = {f_ref:.1}, d = {d})"),
                "t",
                "DSM weight w(t)",
            )
            .with(Series::line("learned w(t)", 0, points(&learned_rows)))
            .with(Series::line("w_t* closed form", 1, points(&closed_rows)).styled(Style::Dashed))
            .with(Series::line("w_t* Monte Carlo", 2, points(&mc_rows)).styled(Style::Points))
            .with(Series::line("start σ²/(σ² + α²)", 3, points(&start_rows)).styled(Style::Dashed)),
        );
        rows.extend(learned_rows);
        rows.extend(raw_rows);
        rows.extend(start_rows);
        rows.extend(closed_rows);
        rows.extend(mc_rows);
    }
    out.write_csv("ltsm_fig5.csv", &rows)?;
    let grid_plot = PanelGrid {
        title: format!(
            "Latent TSM Fig. 5: learned DSM weight vs w_t* ({budget} simulations, {} steps)",
            sizes.steps
        ),
        cols: 3,
        panels,
    };
    let [svg, png] = save_svg_png(out.path(), "ltsm_fig5", (1500, 520), &grid_plot)?;
    let params = Parameters {
        budget,
        sizes,
        reference_simulations: n_ref,
        t_points,
        mc_times,
        schedule: "cosine",
        weight_lr_gain: LearnedWeight::LR_GAIN,
        tasks: summaries,
    };
    let record = timer.record(
        "ltsm_fig5",
        seed,
        quick,
        params,
        &["ltsm_fig5.csv", &svg, &png],
    );
    out.write_json("ltsm_fig5.json", &record)?;
    tracing::info!("wrote {}", out.path().display());
    Ok(())
}
