//! Fig. 2 of *Target Score Matching* (De Bortoli et al., 2024, §4.1): variance of the Monte
//! Carlo score estimators (eq. 18) based on DSI, TSI, κ and κ̄ over `t`, for the four 1-D
//! targets, cosine schedule: 10,000 points `x_t ~ p_t` per `t = k/100` (`k = 1…99`), 100 exact
//! posterior draws (eq. 17) each. Also the mean squared error against the exact score
//! `∇log p_t(x_t)`, and both exactly, by quadrature (`tsm_targets::exact_variance`), drawn as
//! dashed lines over the Monte Carlo ones.
//!
//! `cargo xtask reproduce-fig2 [--out DIR] [--seed S] [--quick] [--easy-mixture-sd S]`
//!
//! Output `fig2.csv` columns (the five of docs/conventions.md, then the exact ones):
//! `target,t,estimator,variance,mse,variance_exact,mse_exact`. `fig2.json` records, beside the
//! parameters, the time the exact curves took, the cells where the Monte Carlo number is more
//! than 5 of its own standard errors from the exact one, and the rare-event cells, where that
//! standard error is not well estimated (fewer than 20 effective points; see
//! `docs/reproduction.md`).

use clap::Parser;
use plotters::chart::SeriesLabelPosition;
use tsm_core::schedule::Cosine;
use tsm_experiments::estimator_variance::{
    add_exact, compute, spreads, Row, Sizes, Spread, ESTIMATORS, MIN_EFFECTIVE_POINTS,
};
use tsm_experiments::output::RunTimer;
use tsm_experiments::plot::{save_svg_png, Panel, PanelGrid, Series, Style};
use tsm_experiments::{init_tracing, target_title, FigureArgs, OutputDir};
use tsm_targets::exact_variance::FIGURE_REL_TOL;
use tsm_targets::{named, GaussianMixture};

/// Reproduces Fig. 2: variance (and MSE) of the DSI, TSI, κ and κ̄ score estimators over t,
/// by Monte Carlo and exactly.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: FigureArgs,
    /// Standard deviation S of the easy mixture's two components, in (0, 1); the means are
    /// ±√(1 − S²), so that the total variance stays 1. The paper does not give its mixture;
    /// without this flag it is ½N(±0.6, 0.8²) [default: 0.8]
    #[arg(long, value_name = "S", value_parser = easy_mixture_sd)]
    easy_mixture_sd: Option<f64>,
}

/// Parses `--easy-mixture-sd`: a number in the open interval (0, 1).
fn easy_mixture_sd(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number (expected S in (0, 1))"))?;
    if v > 0.0 && v < 1.0 {
        Ok(v)
    } else {
        Err(format!(
            "{v} is not in (0, 1): the components' sd must be positive and below the total \
             standard deviation 1"
        ))
    }
}

#[derive(Debug, serde::Serialize)]
struct Parameters {
    schedule: &'static str,
    sizes: Sizes,
    targets: Vec<&'static str>,
    /// The easy mixture's components: `½N(−m, s²) + ½N(m, s²)`.
    easy_mixture: EasyMixture,
    estimators: [&'static str; 4],
    posterior_draws_total: u64,
    draws_per_second: f64,
    exact: ExactRecord,
}

#[derive(Debug, serde::Serialize)]
struct EasyMixture {
    mean: f64,
    sd: f64,
}

#[derive(Debug, serde::Serialize)]
struct ExactRecord {
    /// Relative tolerance of the quadrature.
    rel_tol: f64,
    /// Wall time of the exact curves (all targets, times and estimators), seconds.
    seconds: f64,
    /// Cells (target, t, estimator, column) with `|MC − exact| ≤ 5 SE` (the Monte Carlo
    /// standard error), of all cells.
    cells_within_5_se: usize,
    cells: usize,
    /// Cells whose exact variance is 0 (`κ`, `κ̄` on the Gaussian), where the Monte Carlo
    /// number is rounding (at most 1e-30 here) and has no meaningful standard error.
    cells_without_variance: usize,
    /// The other cells: the rare-event cells, where the Monte Carlo standard error is not well
    /// estimated either.
    outside_5_se: Vec<Outside>,
    /// Wall time of the exact spreads (the fourth moments behind `rare_event_cells`), seconds.
    spread_seconds: f64,
    /// Cells with fewer than 20 effective points (`estimator_variance::Spread`): the Monte
    /// Carlo number and its standard error rest on a handful of points, whatever they say.
    rare_event_cells: Vec<RareCell>,
}

#[derive(Debug, serde::Serialize)]
struct RareCell {
    target: String,
    t: f64,
    estimator: &'static str,
    column: &'static str,
    effective_points: f64,
    monte_carlo: f64,
    std_err: f64,
    exact: f64,
    exact_std_err: f64,
}

#[derive(Debug, serde::Serialize)]
struct Outside {
    target: String,
    t: f64,
    estimator: &'static str,
    column: &'static str,
    monte_carlo: f64,
    std_err: f64,
    exact: f64,
}

const LABELS: [&str; 4] = ["DSI", "TSI", "κ", "κ-bar"];

fn main() -> anyhow::Result<()> {
    init_tracing();
    let args = Args::parse();
    if args.common.dry_run("fig2", "the estimators' variances") {
        return Ok(());
    }
    let out = OutputDir::create(args.common.out_dir("fig2"))?;
    let sizes = if args.common.quick {
        Sizes::QUICK
    } else {
        Sizes::FULL
    };
    let mut targets = named::figure_targets();
    let easy = match args.easy_mixture_sd {
        // The named mixture itself, so that the default run is the one it always was.
        None => EasyMixture { mean: 0.6, sd: 0.8 },
        Some(sd) => {
            let mean = (1.0 - sd * sd).sqrt();
            let mixture = GaussianMixture::univariate(&[0.5, 0.5], &[-mean, mean], &[sd, sd])?;
            for (name, target) in targets.iter_mut() {
                if *name == "easy_mixture" {
                    *target = mixture.clone();
                }
            }
            EasyMixture { mean, sd }
        }
    };
    let draws = sizes.total_draws(targets.len());
    tracing::info!(
        "Fig. 2: {} posterior draws on {} threads",
        draws,
        rayon::current_num_threads()
    );
    let timer = RunTimer::start();
    let mut rows = compute(&targets, &Cosine, sizes, args.common.seed)?;
    let compute_s = timer.elapsed_s();
    tracing::info!(
        "computed in {compute_s:.2} s ({:.3e} draws/s)",
        draws as f64 / compute_s
    );
    let exact_start = std::time::Instant::now();
    add_exact(&mut rows, &targets, &Cosine, sizes.draws)?;
    let exact_s = exact_start.elapsed().as_secs_f64();
    tracing::info!("exact curves in {exact_s:.3} s");
    out.write_csv("fig2.csv", &rows)?;
    let spread_start = std::time::Instant::now();
    let spread = spreads(&rows, &targets, &Cosine, sizes)?;
    let spread_s = spread_start.elapsed().as_secs_f64();
    let exact = compare(&rows, &spread, exact_s, spread_s);
    tracing::info!(
        "Monte Carlo within 5 standard errors of exact in {} of {} cells, {} without \
         variance, {} outside; {} rare-event cells (fig2.json)",
        exact.cells_within_5_se,
        exact.cells,
        exact.cells_without_variance,
        exact.outside_5_se.len(),
        exact.rare_event_cells.len()
    );

    let easy_title = match args.easy_mixture_sd {
        None => target_title("easy_mixture"),
        Some(sd) => format!("{} (sd {sd})", target_title("easy_mixture")),
    };
    let title = |name: &str| {
        if name == "easy_mixture" {
            easy_title.clone()
        } else {
            target_title(name)
        }
    };
    let panel = |name: &str, ylabel: &str, pick: fn(&Row) -> f64, exact: fn(&Row) -> f64| {
        ESTIMATORS.iter().zip(LABELS).enumerate().fold(
            Panel::new(title(name), "t", ylabel).log_y(true),
            |panel, (k, (est, label))| {
                let cell = || {
                    rows.iter()
                        .filter(|r| r.target == name && r.estimator == *est)
                };
                let mc = cell().map(|r| (r.t, pick(r))).collect();
                let ex = cell().map(|r| (r.t, exact(r))).collect();
                panel
                    .with(Series::line(label, k, mc))
                    .with(Series::line("", k, ex).styled(Style::Dashed))
            },
        )
    };
    let exact_value = |r: &Row| r.variance_exact.unwrap_or(f64::NAN);
    let variance: Vec<Panel> = named::FIGURE_TARGETS
        .iter()
        .map(|n| panel(n, "estimator variance", |r| r.variance, exact_value))
        .collect();
    let mse: Vec<Panel> = named::FIGURE_TARGETS
        .iter()
        .map(|n| {
            panel(
                n,
                "MSE vs exact score",
                |r| r.mse,
                |r| r.mse_exact.unwrap_or(f64::NAN),
            )
        })
        .collect();
    // One legend, where the first panel has room for it.
    let mut panels: Vec<Panel> = variance
        .into_iter()
        .chain(mse)
        .map(|p| p.legend(None))
        .collect();
    panels[0].legend = Some(SeriesLabelPosition::MiddleRight);
    let grid = PanelGrid {
        title: "Fig. 2: variance of the Monte Carlo score estimators (top) and their MSE \
                (bottom); dashed: exact, by quadrature"
            .into(),
        cols: 4,
        panels,
    };
    let [svg, png] = save_svg_png(out.path(), "fig2", (1700, 800), &grid)?;
    let params = Parameters {
        schedule: "cosine",
        sizes,
        targets: named::FIGURE_TARGETS.to_vec(),
        easy_mixture: easy,
        estimators: ESTIMATORS,
        posterior_draws_total: draws,
        draws_per_second: draws as f64 / compute_s,
        exact,
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

/// Monte Carlo against exact, cell by cell and column by column, in units of the Monte Carlo
/// standard error, and the rare-event cells.
fn compare(rows: &[Row], spread: &[Spread], seconds: f64, spread_seconds: f64) -> ExactRecord {
    let mut outside = Vec::new();
    let mut rare = Vec::new();
    let (mut within, mut without_variance) = (0, 0);
    for (r, s) in rows.iter().zip(spread) {
        for (column, mc, se, exact, exact_se, effective) in [
            (
                "variance",
                r.variance,
                r.variance_se,
                r.variance_exact,
                s.variance_std_err,
                s.variance_effective_points,
            ),
            (
                "mse",
                r.mse,
                r.mse_se,
                r.mse_exact,
                s.mse_std_err,
                s.mse_effective_points,
            ),
        ] {
            let exact = exact.unwrap_or(f64::NAN);
            if exact == 0.0 && mc.abs() <= 1e-30 {
                without_variance += 1;
            } else if (mc - exact).abs() <= 5.0 * se {
                within += 1;
            } else {
                outside.push(Outside {
                    target: r.target.clone(),
                    t: r.t,
                    estimator: r.estimator,
                    column,
                    monte_carlo: mc,
                    std_err: se,
                    exact,
                });
            }
            if effective < MIN_EFFECTIVE_POINTS {
                rare.push(RareCell {
                    target: r.target.clone(),
                    t: r.t,
                    estimator: r.estimator,
                    column,
                    effective_points: effective,
                    monte_carlo: mc,
                    std_err: se,
                    exact,
                    exact_std_err: exact_se,
                });
            }
        }
    }
    ExactRecord {
        rel_tol: FIGURE_REL_TOL,
        seconds,
        cells_within_5_se: within,
        cells: 2 * rows.len(),
        cells_without_variance: without_variance,
        outside_5_se: outside,
        spread_seconds,
        rare_event_cells: rare,
    }
}
