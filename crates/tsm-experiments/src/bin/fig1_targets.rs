//! Fig. 1 of *Target Score Matching* (De Bortoli et al., 2024, §4.1): the four 1-D targets
//! (top) and the mixture weights `κ_t = σ_t²/(σ_t² + α_t² σ_data²)`,
//! `κ̄_t = σ_t²/(σ_t² + α_t² σ_mode²)` over `t` (bottom), cosine schedule; beside them (not in
//! the paper) the weight `w*_t` that minimises `E_{x_t}[Var(w L_DSI + (1 − w) L_TSI | x_t)]`,
//! by quadrature (`tsm_targets::exact_variance::optimal_weight`; `w*_t = κ_t` for the
//! Gaussian).
//!
//! `cargo xtask reproduce-fig1 [--out DIR] [--seed S] [--quick]`
//!
//! Output `fig1.csv` columns: `target,quantity,x,value` with `quantity` one of `density`
//! (`x` is the point), `kappa`, `kappa_bar`, `optimal_weight` (`x` is `t`; `optimal_weight`
//! on the interior times only, where DSI and TSI are both defined). Deterministic: the seed is
//! recorded but unused.

use clap::Parser;
use rayon::prelude::*;
use serde::Serialize;
use tsm_core::identity::ScoreIdentity;
use tsm_core::schedule::Cosine;
use tsm_core::target::LogDensity;
use tsm_experiments::output::RunTimer;
use tsm_experiments::plot::{save_svg_png, Panel, PanelGrid, Series, Style};
use tsm_experiments::{init_tracing, target_title, FigureArgs, OutputDir};
use tsm_targets::{exact_variance, named};

/// Reproduces Fig. 1: target densities and the mixture weights κ_t and κ̄_t.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: FigureArgs,
}

#[derive(Debug, Serialize)]
struct Row {
    target: &'static str,
    quantity: &'static str,
    x: f64,
    value: f64,
}

#[derive(Debug, Serialize)]
struct Parameters {
    schedule: &'static str,
    x_range: (f64, f64),
    x_points: usize,
    t_points: usize,
}

fn main() -> anyhow::Result<()> {
    init_tracing();
    let args = Args::parse();
    if args
        .common
        .dry_run("fig1", "the target densities and mixture weights")
    {
        return Ok(());
    }
    let out = OutputDir::create(args.common.out_dir("fig1"))?;
    let timer = RunTimer::start();
    let (x_points, t_points) = if args.common.quick {
        (101, 51)
    } else {
        (601, 201)
    };
    let x_range = (-3.0, 3.0);
    let mut rows = Vec::new();
    let mut top = Vec::new();
    let mut bottom = Vec::new();
    for (color, &name) in named::FIGURE_TARGETS.iter().enumerate() {
        let target = named::by_name(name)?;
        let density: Vec<(f64, f64)> = (0..x_points)
            .map(|i| {
                let x = x_range.0 + (x_range.1 - x_range.0) * i as f64 / (x_points - 1) as f64;
                (x, target.log_density(&[x]).exp())
            })
            .collect();
        rows.extend(density.iter().map(|&(x, value)| Row {
            target: name,
            quantity: "density",
            x,
            value,
        }));
        top.push(
            Panel::new(target_title(name), "x", "p_0(x)").with(Series::line("", color, density)),
        );
        let weights = [
            (
                "kappa",
                "κ_t",
                ScoreIdentity::kappa(target.variance_per_dim()),
            ),
            (
                "kappa_bar",
                "κ-bar_t",
                ScoreIdentity::kappa_bar(target.mode_variance()),
            ),
        ];
        let mut panel = Panel::new(target_title(name), "t", "mixture weight");
        for (k, (quantity, label, id)) in weights.into_iter().enumerate() {
            let curve: Vec<(f64, f64)> = (0..t_points)
                .map(|i| {
                    let t = i as f64 / (t_points - 1) as f64;
                    Ok((t, id.dsi_weight(&Cosine, t)?))
                })
                .collect::<anyhow::Result<_>>()?;
            rows.extend(curve.iter().map(|&(x, value)| Row {
                target: name,
                quantity,
                x,
                value,
            }));
            panel = panel.with(Series::line(label, k, curve));
        }
        // The variance-optimal constant weight on DSI of the DSI/TSI mixture at each t, by
        // quadrature (issue #18): what κ_t and κ̄_t approximate. Interior times only: at
        // t = 0 and 1 one of DSI, TSI is undefined.
        let optimal: Vec<(f64, f64)> = (1..t_points - 1)
            .into_par_iter()
            .map(|i| {
                let t = i as f64 / (t_points - 1) as f64;
                let dsi = ScoreIdentity::Dsi.coefficients(&Cosine, t)?;
                let tsi = ScoreIdentity::Tsi.coefficients(&Cosine, t)?;
                let w = exact_variance::optimal_weight(
                    &target,
                    &Cosine,
                    t,
                    &dsi,
                    &tsi,
                    exact_variance::FIGURE_REL_TOL,
                )?;
                Ok((t, w.value))
            })
            .collect::<anyhow::Result<_>>()?;
        rows.extend(optimal.iter().map(|&(x, value)| Row {
            target: name,
            quantity: "optimal_weight",
            x,
            value,
        }));
        panel = panel.with(Series::line("w*_t (exact)", 2, optimal).styled(Style::Dashed));
        bottom.push(panel);
    }
    let csv = out.write_csv("fig1.csv", &rows)?;
    let grid = PanelGrid {
        title: "Fig. 1: targets p_0 (top) and mixture weights κ_t, κ-bar_t and the variance-optimal w*_t (bottom), cosine schedule".into(),
        cols: 4,
        panels: top.into_iter().chain(bottom).collect(),
    };
    let [svg, png] = save_svg_png(out.path(), "fig1", (1600, 760), &grid)?;
    let params = Parameters {
        schedule: "cosine",
        x_range,
        x_points,
        t_points,
    };
    let record = timer.record(
        "fig1",
        args.common.seed,
        args.common.quick,
        params,
        &["fig1.csv", &svg, &png],
    );
    out.write_json("fig1.json", &record)?;
    tracing::info!("wrote {} and the SVG/PNG/JSON beside it", csv.display());
    Ok(())
}
