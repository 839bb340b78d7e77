//! Fig. 3 of *Target Score Matching* (De Bortoli et al. 2024, §4.1): the four time weightings `λ_t`
//! (original `1/σ_t²`, DSM-optimal, TSM-optimal, uniform) for `σ_data² = 1`, cosine schedule,
//! each normalised to integrate to one over `t ∈ [10⁻³, 1 − 10⁻³]` (the original weighting is
//! not integrable at `t = 0`). Log y-axis.
//!
//! `cargo xtask reproduce-fig3 [--out DIR] [--seed S] [--quick]`
//!
//! Output `fig3.csv` columns: `weighting,t,lambda,lambda_unnormalised`. Deterministic: the seed
//! is recorded but unused.

use clap::Parser;
use serde::Serialize;
use tsm_core::schedule::{AnySchedule, Cosine};
use tsm_core::weighting::{NormalisedWeighting, TimeRange, Weighting};
use tsm_experiments::output::RunTimer;
use tsm_experiments::plot::{save_svg_png, Panel, PanelGrid, Series};
use tsm_experiments::{init_tracing, FigureArgs, OutputDir};

/// Reproduces Fig. 3: the four weighting functions λ_t over t (σ_data² = 1).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: FigureArgs,
}

#[derive(Debug, Serialize)]
struct Row {
    weighting: &'static str,
    t: f64,
    lambda: f64,
    lambda_unnormalised: f64,
}

#[derive(Debug, Serialize)]
struct Parameters {
    schedule: &'static str,
    sigma_data_sq: f64,
    normalised_over: (f64, f64),
    t_points: usize,
}

const LABELS: [&str; 4] = ["Original", "DSM optimal", "TSM optimal", "Uniform"];

fn main() -> anyhow::Result<()> {
    init_tracing();
    let args = Args::parse();
    if args.common.dry_run("fig3", "the four weightings") {
        return Ok(());
    }
    let out = OutputDir::create(args.common.out_dir("fig3"))?;
    let timer = RunTimer::start();
    let range = TimeRange::trimmed();
    let t_points = if args.common.quick { 99 } else { 999 };
    let sigma_data_sq = 1.0;
    let mut rows = Vec::new();
    let mut panel = Panel::new("λ_t, normalised over [0.001, 0.999]", "t", "λ_t").log_y(true);
    for (k, (w, label)) in Weighting::ALL.into_iter().zip(LABELS).enumerate() {
        let normalised =
            NormalisedWeighting::new(w, AnySchedule::Cosine(Cosine), sigma_data_sq, range)?;
        let curve: Vec<Row> = (0..t_points)
            .map(|i| {
                let t = range.lerp(i as f64 / (t_points - 1) as f64);
                Row {
                    weighting: w.name(),
                    t,
                    lambda: normalised.at(t),
                    lambda_unnormalised: w.unnormalised(&Cosine, t, sigma_data_sq),
                }
            })
            .collect();
        panel = panel.with(Series::line(
            label,
            k,
            curve.iter().map(|r| (r.t, r.lambda)).collect(),
        ));
        rows.extend(curve);
    }
    out.write_csv("fig3.csv", &rows)?;
    let grid = PanelGrid {
        title: "Fig. 3: weighting functions, σ_data² = 1, cosine schedule".into(),
        cols: 1,
        panels: vec![panel],
    };
    let [svg, png] = save_svg_png(out.path(), "fig3", (900, 600), &grid)?;
    let params = Parameters {
        schedule: "cosine",
        sigma_data_sq,
        normalised_over: (range.t_min(), range.t_max()),
        t_points,
    };
    let record = timer.record(
        "fig3",
        args.common.seed,
        args.common.quick,
        params,
        &["fig3.csv", &svg, &png],
    );
    out.write_json("fig3.json", &record)?;
    tracing::info!("wrote {}", out.path().display());
    Ok(())
}
