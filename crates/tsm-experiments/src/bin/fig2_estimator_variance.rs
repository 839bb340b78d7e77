//! Fig. 2 of *Target Score Matching* (paper `001`, §4.1): variance of the Monte Carlo score
//! estimators (eq. 18) based on DSI, TSI, κ and κ̄ over `t`, for the four 1-D targets, cosine
//! schedule: 10,000 points `x_t ~ p_t` per `t = k/100` (`k = 1…99`), 100 exact posterior draws
//! (eq. 17) each. Also the mean squared error against the exact score `∇log p_t(x_t)`.
//!
//! `cargo xtask reproduce-fig2 [--out DIR] [--seed S] [--quick]`
//!
//! Output `fig2.csv` columns (SPEC §5): `target,t,estimator,variance,mse`.

use clap::Parser;
use plotters::chart::SeriesLabelPosition;
use tsm_core::schedule::Cosine;
use tsm_experiments::estimator_variance::{compute, Row, Sizes, ESTIMATORS};
use tsm_experiments::output::RunTimer;
use tsm_experiments::plot::{save_svg_png, Panel, PanelGrid, Series};
use tsm_experiments::{init_tracing, target_title, FigureArgs, OutputDir};
use tsm_targets::named;

/// Reproduces Fig. 2: variance (and MSE) of the DSI, TSI, κ and κ̄ score estimators over t.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: FigureArgs,
}

#[derive(Debug, serde::Serialize)]
struct Parameters {
    schedule: &'static str,
    sizes: Sizes,
    targets: Vec<&'static str>,
    estimators: [&'static str; 4],
    posterior_draws_total: u64,
    draws_per_second: f64,
}

const LABELS: [&str; 4] = ["DSI", "TSI", "κ", "κ-bar"];

fn main() -> anyhow::Result<()> {
    init_tracing();
    let args = Args::parse();
    let out = OutputDir::create(args.common.out_dir("fig2"))?;
    let sizes = if args.common.quick {
        Sizes::QUICK
    } else {
        Sizes::FULL
    };
    let targets = named::figure_targets();
    let draws = sizes.total_draws(targets.len());
    tracing::info!(
        "Fig. 2: {} posterior draws on {} threads",
        draws,
        rayon::current_num_threads()
    );
    let timer = RunTimer::start();
    let rows = compute(&targets, &Cosine, sizes, args.common.seed)?;
    let compute_s = timer.elapsed_s();
    tracing::info!(
        "computed in {compute_s:.2} s ({:.3e} draws/s)",
        draws as f64 / compute_s
    );
    out.write_csv("fig2.csv", &rows)?;

    let panel = |name: &str, ylabel: &str, pick: fn(&Row) -> f64| {
        ESTIMATORS.iter().zip(LABELS).enumerate().fold(
            Panel::new(target_title(name), "t", ylabel).log_y(true),
            |panel, (k, (est, label))| {
                let pts = rows
                    .iter()
                    .filter(|r| r.target == name && r.estimator == *est)
                    .map(|r| (r.t, pick(r)))
                    .collect();
                panel.with(Series::line(label, k, pts))
            },
        )
    };
    let variance: Vec<Panel> = named::FIGURE_TARGETS
        .iter()
        .map(|n| panel(n, "estimator variance", |r| r.variance))
        .collect();
    let mse: Vec<Panel> = named::FIGURE_TARGETS
        .iter()
        .map(|n| panel(n, "MSE vs exact score", |r| r.mse))
        .collect();
    // One legend, where the first panel has room for it.
    let mut panels: Vec<Panel> = variance
        .into_iter()
        .chain(mse)
        .map(|p| p.legend(None))
        .collect();
    panels[0].legend = Some(SeriesLabelPosition::MiddleRight);
    let grid = PanelGrid {
        title: "Fig. 2: variance of the Monte Carlo score estimators (top) and their MSE (bottom)"
            .into(),
        cols: 4,
        panels,
    };
    let [svg, png] = save_svg_png(out.path(), "fig2", (1700, 800), &grid)?;
    let params = Parameters {
        schedule: "cosine",
        sizes,
        targets: named::FIGURE_TARGETS.to_vec(),
        estimators: ESTIMATORS,
        posterior_draws_total: draws,
        draws_per_second: draws as f64 / compute_s,
    };
    let record = timer.record(
        "fig2",
        args.common.seed,
        args.common.quick,
        params,
        &["fig2.csv", &svg, &png],
    );
    out.write_json("fig2.json", &record)?;
    tracing::info!("wrote {}", out.path().display());
    Ok(())
}
