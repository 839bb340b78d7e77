//! Fig. 4 of *Latent Target Score Matching* (Ko & Geffner 2024): the variance-optimal DSM
//! weight `w_t*` of the MIX target `w_t A + (1 − w_t) B` against `t`, per SBI task, by Monte
//! Carlo and in closed form (Prop. 3.2).
//!
//! - **Monte Carlo:** `ŵ_t = Σ⟨Bᵢ, Bᵢ − Aᵢ⟩ / Σ‖Aᵢ − Bᵢ‖²` over `n` simulations
//!   (`Aᵢ = −εᵢ/σ_t` with a fresh `εᵢ` per time, `Bᵢ = gᵢ/α_t` from the joint scores), with
//!   its delta-method standard error (`tsm_core::simulator::estimate_optimal_weight`), drawn
//!   with a ±2 SE band.
//! - **Closed form:** `w_t* = F̂σ_t²/(F̂σ_t² + dα_t²)` with `F̂ = (1/n) Σ‖gᵢ‖²` estimated from an
//!   independent set of `n` simulations; its standard error `w*(1 − w*) SE(F̂)/F̂` (the delta
//!   method, `∂w*/∂F = w*(1 − w*)/F`) is in the CSV. The closed form with the task's reference
//!   `F` (20, 48.94, 64.4) is written too.
//!
//! The bottom row draws `ŵ_t − w_t*` with the ±2 combined standard-error band about 0.
//!
//! `cargo xtask reproduce-ltsm-fig4 [--out DIR] [--seed S] [--quick]`
//!
//! Output `ltsm_fig4.csv` columns: `task,curve,t,w,std_err` with `curve` one of `monte_carlo`,
//! `closed_form` (at `F̂`), `closed_form_reference` (at the reference `F`; no `std_err`). The JSON
//! records per task `F̂` and its SE, the reference `F`, the time where `w_t* = ½` (there the DSM
//! and LTSM targets have equal variance), and the largest `|ŵ_t − w_t*|` in units of the
//! combined standard error `√(SE(ŵ)² + SE(w*)²)`.
//!
//! Full: `n = 10⁵` simulations per set, `t = k/50`, `k = 1…49`. `--quick`: `n = 10⁴`,
//! `t = k/10`, `k = 1…9`. Same seed, same CSV bytes.

use clap::Parser;
use plotters::chart::SeriesLabelPosition;
use serde::Serialize;
use tsm_core::schedule::Cosine;
use tsm_core::simulator::{estimate_optimal_weight, LatentMix};
use tsm_experiments::ltsm::WeightRow;
use tsm_experiments::output::RunTimer;
use tsm_experiments::plot::{save_svg_png, Panel, PanelGrid, Series, Style};
use tsm_experiments::{init_tracing, FigureArgs, OutputDir};
use tsm_nn::sbi::SimulationSet;
use tsm_targets::sbi::SbiTask;

/// Reproduces Fig. 4 of Latent TSM: the variance-optimal DSM weight w_t* against t per SBI
/// task, by Monte Carlo (with a ±2 SE band) and in closed form
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: FigureArgs,
}

#[derive(Debug, Serialize)]
struct Parameters {
    simulations_per_set: usize,
    times: Vec<f64>,
    schedule: &'static str,
    tasks: Vec<TaskSummary>,
}

#[derive(Debug, Serialize)]
struct TaskSummary {
    task: String,
    dim: usize,
    score_constant_reference: f64,
    score_constant_estimate: f64,
    score_constant_std_err: f64,
    /// `t` where `w_t* = ½` (closed form at `F̂`): `σ_t²/α_t² = d/F̂`, i.e.
    /// `t = (2/π) atan(√(d/F̂))` for the cosine schedule.
    half_weight_time: f64,
    /// `max_t |ŵ_t − w_t*| / √(SE(ŵ_t)² + SE(w_t*)²)`.
    max_deviation_in_std_errs: f64,
    /// Times where that deviation is below 2 (of all times).
    within_2_std_errs: usize,
    /// Times where it is below 5.
    within_5_std_errs: usize,
}

fn main() -> anyhow::Result<()> {
    init_tracing();
    let args = Args::parse();
    let quick = args.common.quick;
    let (n, steps) = if quick { (10_000, 10) } else { (100_000, 50) };
    if args.common.dry_run(
        "ltsm_fig4",
        format!(
            "w_t* on the three SBI tasks ({n} simulations per set, {} times)",
            steps - 1
        ),
    ) {
        return Ok(());
    }
    let out = OutputDir::create(args.common.out_dir("ltsm_fig4"))?;
    let timer = RunTimer::start();
    let seed = args.common.seed;
    let times: Vec<f64> = (1..steps).map(|k| k as f64 / steps as f64).collect();
    let (mut rows, mut panels, mut summaries) = (Vec::new(), Vec::new(), Vec::new());
    let mut residual_panels = Vec::new();
    for (task_index, task) in SbiTask::ALL.into_iter().enumerate() {
        let d = task.dim();
        let name = task.to_string();
        // Two independent sets per task: the streams of seed + 2·index (Monte Carlo ŵ) and
        // seed + 2·index + 1 (F̂), so that the closed form and ŵ are independent estimates.
        let stream_seed = seed.wrapping_add(2 * task_index as u64);
        let weights_set = SimulationSet::simulate(task, n, stream_seed, |_| {})?;
        let constant_set = SimulationSet::simulate(task, n, stream_seed.wrapping_add(1), |_| {})?;
        let f_hat = constant_set.score_constant()?;
        let at_estimate = LatentMix::new(d, f_hat.value)?;
        let at_reference = LatentMix::new(d, task.score_constant())?;
        let (mut mc, mut closed, mut reference) = (Vec::new(), Vec::new(), Vec::new());
        let (mut max_dev, mut within_2, mut within_5) = (0.0f64, 0, 0);
        for (i, &t) in times.iter().enumerate() {
            // A fresh ε per time: the stream (seed + 2·index, 1 + i), apart from the simulation
            // stream of the set.
            let mut rng = tsm_core::rng::stream(stream_seed, 1 + i as u64);
            let e = estimate_optimal_weight(weights_set.joint_scores(), d, &Cosine, t, &mut rng)?;
            let w = at_estimate.optimal_weight(&Cosine, t)?;
            let w_se = w * (1.0 - w) * f_hat.std_err / f_hat.value;
            let dev = (e.value - w).abs() / (e.std_err.powi(2) + w_se.powi(2)).sqrt();
            max_dev = max_dev.max(dev);
            within_2 += usize::from(dev < 2.0);
            within_5 += usize::from(dev < 5.0);
            let row = |curve, w, std_err| WeightRow {
                task: name.clone(),
                curve,
                t,
                w,
                std_err,
            };
            mc.push(row("monte_carlo", e.value, Some(e.std_err)));
            closed.push(row("closed_form", w, Some(w_se)));
            reference.push(row(
                "closed_form_reference",
                at_reference.optimal_weight(&Cosine, t)?,
                None,
            ));
        }
        let half_weight_time =
            (2.0 / std::f64::consts::PI) * (d as f64 / f_hat.value).sqrt().atan();
        tracing::info!(
            "{name}: F̂ = {:.3} ± {:.3}, w* = ½ at t = {half_weight_time:.3}, Monte Carlo within \
             2 SE at {within_2}/{} times, largest deviation {max_dev:.2} SE",
            f_hat.value,
            f_hat.std_err,
            times.len()
        );
        summaries.push(TaskSummary {
            task: name.clone(),
            dim: d,
            score_constant_reference: task.score_constant(),
            score_constant_estimate: f_hat.value,
            score_constant_std_err: f_hat.std_err,
            half_weight_time,
            max_deviation_in_std_errs: max_dev,
            within_2_std_errs: within_2,
            within_5_std_errs: within_5,
        });
        let points = WeightRow::points;
        let band = |sign: f64| {
            mc.iter()
                .map(|r| (r.t, r.w + sign * 2.0 * r.std_err.unwrap_or(0.0)))
                .collect::<Vec<_>>()
        };
        panels.push(
            Panel::new(
                format!("{name} (d = {d}, F̂ = {:.1})", f_hat.value),
                "t",
                "DSM weight w_t*",
            )
            .with(Series::line(
                "closed form Fσ²/(Fσ² + dα²)",
                1,
                points(&closed),
            ))
            .with(Series::line("Monte Carlo", 0, points(&mc)).styled(Style::Points))
            .with(Series::line("± 2 SE", 0, band(1.0)).styled(Style::Dashed))
            .with(Series::line("", 0, band(-1.0)).styled(Style::Dashed))
            .legend(Some(SeriesLabelPosition::LowerRight)),
        );
        // The second row: ŵ_t − w_t* with the ±2 combined-SE band about 0, where the band
        // (invisible at the top's scale) can be seen.
        let residual: Vec<(f64, f64, f64)> = mc
            .iter()
            .zip(&closed)
            .map(|(m, c)| {
                let se =
                    (m.std_err.unwrap_or(0.0).powi(2) + c.std_err.unwrap_or(0.0).powi(2)).sqrt();
                (m.t, m.w - c.w, se)
            })
            .collect();
        residual_panels.push(
            Panel::new(
                format!("{name}: Monte Carlo − closed form"),
                "t",
                "ŵ_t − w_t*",
            )
            .with(Series::line(
                "ŵ_t − w_t*",
                0,
                residual.iter().map(|&(t, r, _)| (t, r)).collect(),
            ))
            .with(
                Series::line(
                    "± 2 combined SE",
                    1,
                    residual.iter().map(|&(t, _, se)| (t, 2.0 * se)).collect(),
                )
                .styled(Style::Dashed),
            )
            .with(
                Series::line(
                    "",
                    1,
                    residual.iter().map(|&(t, _, se)| (t, -2.0 * se)).collect(),
                )
                .styled(Style::Dashed),
            )
            .legend(Some(SeriesLabelPosition::LowerRight)),
        );
        rows.extend(mc);
        rows.extend(closed);
        rows.extend(reference);
    }
    out.write_csv("ltsm_fig4.csv", &rows)?;
    let grid = PanelGrid {
        title: format!(
            "Latent TSM Fig. 4: variance-optimal DSM weight w_t* ({n} simulations per estimate)"
        ),
        cols: 3,
        panels: panels.into_iter().chain(residual_panels).collect(),
    };
    let [svg, png] = save_svg_png(out.path(), "ltsm_fig4", (1500, 900), &grid)?;
    let params = Parameters {
        simulations_per_set: n,
        times,
        schedule: "cosine",
        tasks: summaries,
    };
    let record = timer.record(
        "ltsm_fig4",
        seed,
        quick,
        params,
        &["ltsm_fig4.csv", &svg, &png],
    );
    out.write_json("ltsm_fig4.json", &record)?;
    tracing::info!("wrote {}", out.path().display());
    Ok(())
}
