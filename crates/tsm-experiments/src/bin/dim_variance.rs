//! Estimator variance in `d` dimensions (paper App. C; issue #5): for Gaussian targets
//! `N(0, I_d)`, `d ∈ {1, 2, 8, 32, 128}`, the variance of the score estimators DSI, TSI and the
//! optimal mix `κ_t` against `t` (cosine schedule), from exact posterior sampling (eq. 18) and
//! from self-normalised importance sampling (SNIS, paper §2), with the closed forms drawn as
//! lines over the Monte Carlo points.
//!
//! `cargo xtask reproduce-dim [--out DIR] [--seed S] [--quick]`
//!
//! For each `(d, t)` and each of `P` points `x_t ~ p_t`, both methods use `M` draws (posterior
//! draws, or SNIS proposals `N(x_t/α_t, (σ_t/α_t)² I)`) and the same three identities on them.
//! Columns of `dim_variance.csv`:
//!
//! - `variance`: mean over the points of the estimator's variance `Σ_j Var(ĥ_j)` — the
//!   per-draw sample variance over `M` for exact sampling, the delta-method `Σ w̄² (L − ĥ)²`
//!   for SNIS;
//! - `closed_form`: App. C's `Σ_j Var(L_j | x_t)/M` for exact sampling; for SNIS the same times
//!   `(1 + σ_t²/α_t²)^d`, the asymptotic SNIS variance averaged over `x_t ~ p_t`
//!   (`tsm_core::gaussian_variance`). `κ`'s is 0: every draw gives the exact score;
//! - `mse`: mean over the points of `|ĥ − ∇log p_t(x_t)|²` (= variance for exact sampling;
//!   variance + bias² for SNIS);
//! - `ess`: `M` for exact sampling, the mean SNIS effective sample size otherwise. Where it
//!   collapses (large `d`, large `t`) the delta-method variance is unreliable (it tends to 0
//!   when one weight dominates) and `mse` is the honest measure.
//!
//! Work items `(d, t)` run in parallel with rayon, item `i` seeded by `rng::stream(seed, i)`:
//! the CSV is byte-identical for a seed whatever the thread count.

use std::path::Path;

use anyhow::{Context, Result};
use clap::Parser;
use rand::Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::Serialize;
use tsm_core::estimator::MonteCarloScore;
use tsm_core::gaussian_variance::GaussianVariance;
use tsm_core::identity::{Coefficients, ScoreIdentity};
use tsm_core::schedule::Cosine;
use tsm_core::snis::ImportanceSampledScore;
use tsm_experiments::cli::{count, usage_error};
use tsm_experiments::output::RunTimer;
use tsm_experiments::plot::{save_svg_png, Panel, PanelGrid, Series, Style};
use tsm_experiments::{FigureArgs, OutputDir};
use tsm_targets::GaussianMixture;

const FIGURE: &str = "dim_variance";
/// `σ_tar²` of the targets `N(0, σ_tar² I_d)`.
const SIGMA_TAR_SQ: f64 = 1.0;
/// Identities, in CSV order.
const IDENTITIES: [ScoreIdentity; 3] = [
    ScoreIdentity::Dsi,
    ScoreIdentity::Tsi,
    ScoreIdentity::kappa(SIGMA_TAR_SQ),
];
/// In the plot, closed-form SNIS lines stop above this multiple of the largest exact-sampling
/// variance of the panel (the CSV keeps every value; at `d = 128` they reach `4e284`).
const PLOT_CAP: f64 = 1e8;

/// Estimator variance against t in d dimensions: exact posterior sampling and SNIS vs App. C.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    figure: FigureArgs,
    /// Points x_t ~ p_t per (d, t), 1 to 10⁶ [default: 1000, --quick 16]
    #[arg(long, value_parser = count::<usize>(1..=1_000_000))]
    points: Option<usize>,
    /// Draws M per point, 2 to 10⁵: posterior draws, and SNIS proposals [default: 500,
    /// --quick 64]
    #[arg(long, value_parser = count::<usize>(2..=100_000))]
    draws: Option<usize>,
}

/// The most `points × draws` per `(d, t)` (the default is 5·10⁵; 10⁹ takes hours).
const MAX_WORK: u128 = 1_000_000_000;

/// The run's sizes, recorded in the JSON.
#[derive(Debug, Clone, Serialize)]
struct Parameters {
    dims: Vec<usize>,
    times: Vec<f64>,
    points: usize,
    draws: usize,
    sigma_tar_sq: f64,
    schedule: &'static str,
    identities: Vec<&'static str>,
}

/// One CSV row (tidy).
#[derive(Debug, Clone, Serialize)]
struct Row {
    d: usize,
    t: f64,
    estimator: &'static str,
    method: &'static str,
    variance: f64,
    closed_form: f64,
    mse: f64,
    ess: f64,
}

/// Per identity, over the points of one `(d, t)`: sums of variance and squared error.
#[derive(Debug, Clone, Default)]
struct Sums {
    variance: [f64; 3],
    sq_err: [f64; 3],
}

fn compute_item(
    d: usize,
    t: f64,
    points: usize,
    draws: usize,
    seed: u64,
    item: u64,
) -> Result<Vec<Row>> {
    let target = GaussianMixture::gaussian(d, SIGMA_TAR_SQ.sqrt())?;
    let g = GaussianVariance::new(d, SIGMA_TAR_SQ, &Cosine, t)?;
    let coeffs = IDENTITIES
        .iter()
        .map(|id| id.coefficients(&Cosine, t))
        .collect::<tsm_core::Result<Vec<Coefficients>>>()?;
    let mut rng = tsm_core::rng::stream(seed, item);
    let mut mc = MonteCarloScore::new(d, &coeffs);
    let mut snis = ImportanceSampledScore::new(d, &coeffs);
    let mut x_t = vec![0.0; d];
    let (mut exact, mut is) = (Sums::default(), Sums::default());
    let mut ess = 0.0;
    let scale = g.marginal_variance().sqrt();
    for _ in 0..points {
        for x in x_t.iter_mut() {
            *x = scale * rng.sample::<f64, _>(StandardNormal);
        }
        mc.run(&target, &Cosine, t, &x_t, draws, &mut rng)?;
        snis.run(&target, &Cosine, t, &x_t, draws, &mut rng)?;
        ess += snis.ess()?;
        for k in 0..IDENTITIES.len() {
            exact.variance[k] += mc.estimator_variance(k)?;
            is.variance[k] += snis.estimator_variance(k)?;
            for (j, &y) in x_t.iter().enumerate() {
                let score = g.score(y);
                exact.sq_err[k] += (mc.mean(k, j)? - score).powi(2);
                is.sq_err[k] += (snis.mean(k, j)? - score).powi(2);
            }
        }
    }
    let (n, m) = (points as f64, draws as f64);
    let mut rows = Vec::with_capacity(2 * IDENTITIES.len());
    for (k, id) in IDENTITIES.iter().enumerate() {
        rows.push(Row {
            d,
            t,
            estimator: id.name(),
            method: "exact",
            variance: exact.variance[k] / n,
            closed_form: g.identity(&coeffs[k]) / m,
            mse: exact.sq_err[k] / n,
            ess: m,
        });
        rows.push(Row {
            d,
            t,
            estimator: id.name(),
            method: "snis",
            variance: is.variance[k] / n,
            closed_form: g.snis_identity(&coeffs[k]) / m,
            mse: is.sq_err[k] / n,
            ess: ess / n,
        });
    }
    Ok(rows)
}

fn main() -> Result<()> {
    tsm_experiments::init_tracing();
    let args = Args::parse();
    let quick = args.figure.quick;
    let dims = vec![1usize, 2, 8, 32, 128];
    let times: Vec<f64> = if quick {
        vec![0.1, 0.3, 0.5, 0.7, 0.9]
    } else {
        (1..=19).map(|k| k as f64 / 20.0).collect()
    };
    let points = args.points.unwrap_or(if quick { 16 } else { 1000 });
    let draws = args.draws.unwrap_or(if quick { 64 } else { 500 });
    if points as u128 * draws as u128 > MAX_WORK {
        usage_error::<Args>(format!(
            "--points {points} × --draws {draws} is more than {MAX_WORK:.0e} draws per (d, t) \
             (hours of work); lower them"
        ));
    }
    if args.figure.dry_run(
        FIGURE,
        format_args!(
            "d in {dims:?} at {} times, {points} points × {draws} draws",
            times.len()
        ),
    ) {
        return Ok(());
    }
    let out = OutputDir::create(args.figure.out_dir(FIGURE))?;
    let seed = args.figure.seed;
    tracing::info!(
        "{FIGURE}: d in {dims:?}, {} times, {points} points x {draws} draws, seed {seed}, {} threads",
        times.len(),
        rayon::current_num_threads()
    );
    let timer = RunTimer::start();
    let items: Vec<(usize, f64)> = dims
        .iter()
        .flat_map(|&d| times.iter().map(move |&t| (d, t)))
        .collect();
    let rows: Vec<Row> = items
        .par_iter()
        .enumerate()
        .map(|(i, &(d, t))| {
            compute_item(d, t, points, draws, seed, i as u64)
                .with_context(|| format!("d = {d}, t = {t}"))
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    let compute_s = timer.elapsed_s();
    tracing::info!("computed {} rows in {compute_s:.1} s", rows.len());

    let csv = format!("{FIGURE}.csv");
    out.write_csv(&csv, &rows)?;
    let [svg, png] = save_svg_png(
        out.path(),
        FIGURE,
        (1500, 950),
        &figure(&rows, &dims, draws),
    )?;
    let parameters = Parameters {
        dims,
        times,
        points,
        draws,
        sigma_tar_sq: SIGMA_TAR_SQ,
        schedule: "cosine",
        identities: IDENTITIES.iter().map(|id| id.name()).collect(),
    };
    let json = format!("{FIGURE}.json");
    let record = timer.record(FIGURE, seed, quick, parameters, &[&csv, &svg, &png, &json]);
    out.write_json(&json, &record)?;
    report(out.path(), &rows);
    Ok(())
}

/// Logs the largest SNIS/closed-form gap and the smallest ESS, so a reader sees the collapse.
fn report(dir: &Path, rows: &[Row]) {
    if let Some(worst) = rows
        .iter()
        .filter(|r| r.method == "snis")
        .min_by(|a, b| a.ess.total_cmp(&b.ess))
    {
        tracing::info!(
            "smallest mean SNIS ESS: {:.2} at d = {}, t = {}",
            worst.ess,
            worst.d,
            worst.t
        );
    }
    tracing::info!("wrote {}", dir.display());
}

/// One panel per `d` (points: Monte Carlo; lines: closed forms), and a sixth with the SNIS ESS.
fn figure(rows: &[Row], dims: &[usize], draws: usize) -> PanelGrid {
    // (estimator, method, colour, label)
    let curves = [
        ("dsi", "exact", 0, "DSI, exact posterior"),
        ("tsi", "exact", 1, "TSI, exact posterior"),
        ("dsi", "snis", 2, "DSI, SNIS"),
        ("tsi", "snis", 3, "TSI, SNIS"),
    ];
    let select = |d: usize, est: &'static str, method: &'static str| {
        rows.iter()
            .filter(move |r| r.d == d && r.estimator == est && r.method == method)
    };
    let mut panels = Vec::new();
    for (pi, &d) in dims.iter().enumerate() {
        let first = pi == 0;
        let label = |s: &str| if first { s.to_owned() } else { String::new() };
        let exact_max = rows
            .iter()
            .filter(|r| r.d == d && r.method == "exact")
            .map(|r| r.variance.max(r.closed_form))
            .fold(0.0, f64::max);
        let cap = PLOT_CAP * exact_max;
        let mut panel = Panel::new(
            format!("d = {d}"),
            "t",
            format!("variance of the estimate (M = {draws})"),
        )
        .log_y(true);
        let mut floor = f64::INFINITY;
        for &(est, method, color, name) in &curves {
            let points: Vec<(f64, f64)> =
                select(d, est, method).map(|r| (r.t, r.variance)).collect();
            floor = points
                .iter()
                .map(|p| p.1)
                .filter(|v| *v > 0.0)
                .fold(floor, f64::min);
            panel = panel.with(Series::line(label(name), color, points).styled(Style::Points));
            let line: Vec<(f64, f64)> = select(d, est, method)
                .map(|r| (r.t, r.closed_form))
                .take_while(|p| p.1 <= cap)
                .collect();
            let style = if method == "exact" {
                Style::Line
            } else {
                Style::Dashed
            };
            panel = panel.with(Series::line(String::new(), color, line).styled(style));
        }
        // κ's variance is 0 in theory and rounding-level in practice: draw it at a floor a
        // decade below the other points rather than stretch the axis over 30 decades.
        let floor = if floor.is_finite() {
            floor / 10.0
        } else {
            1e-6
        };
        for (method, color, below) in [("exact", 4, 1.0), ("snis", 5, 0.25)] {
            let pts = select(d, "kappa", method)
                .map(|r| (r.t, r.variance.max(floor * below)))
                .collect();
            let name = format!("κ, {method} (0; drawn at floor)");
            panel = panel.with(Series::line(label(&name), color, pts).styled(Style::Points));
        }
        panels.push(panel);
    }
    // ESS panel: mean SNIS ESS against t per d, with the asymptotic M/(1 + σ²/α²)^d (≥ 1).
    let mut ess = Panel::new(
        "SNIS effective sample size",
        "t",
        format!("mean ESS of M = {draws}"),
    )
    .log_y(true);
    for (i, &d) in dims.iter().enumerate() {
        let pts = select(d, "dsi", "snis").map(|r| (r.t, r.ess)).collect();
        ess = ess.with(Series::line(format!("d = {d}"), i, pts).styled(Style::Points));
        let line = select(d, "dsi", "snis")
            .map(|r| {
                let g = GaussianVariance::new(d, SIGMA_TAR_SQ, &Cosine, r.t)
                    .map(|g| g.snis_inflation())
                    .unwrap_or(f64::INFINITY);
                (r.t, (draws as f64 / g).clamp(1.0, draws as f64))
            })
            .collect();
        ess = ess.with(Series::line(String::new(), i, line).styled(Style::Dashed));
    }
    panels.push(ess);
    PanelGrid {
        title: format!(
            "Score-estimator variance for N(0, I_d), cosine schedule: points Monte Carlo, lines App. C \
             (SNIS: × (1 + σ²/α²)^d, cut above {PLOT_CAP:.0e} × the exact maximum)"
        ),
        cols: 3,
        panels,
    }
}
