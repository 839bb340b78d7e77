//! `cargo xtask likelihood`: the log-likelihood of data points under a trained checkpoint,
//! through the probability-flow ODE (`tsm_core::likelihood`): nats and bits per dimension per
//! point and on average, with a standard error.
//!
//! `cargo xtask likelihood --checkpoint runs/tsm --data points.csv [--tol 1e-5]
//! [--estimator exact|hutchinson] [--probes 16] [--out results/likelihood]`
//!
//! The data file is a CSV with the header `x1,…,x_d` (`d` the checkpoint's dimension) and one
//! point per row. The divergence of the network's score is its Jacobian trace by central
//! differences along the axes (`exact`, `2d` extra rows per point) or Hutchinson's estimator
//! with finite-difference Jacobian–vector products (`hutchinson`, `2K` extra rows for `K`
//! probes); the network runs in `f32`, hence the default difference step `--fd-step 1e-2`.
//! Writes `OUT/likelihood.csv` (one row per point, with the checkpoint target's exact
//! `log p₀` beside the estimate) and `OUT/likelihood.json` (the run record with the means).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::Serialize;
use tsm_core::likelihood::{
    Estimator, FiniteDifference, Hutchinson, LikelihoodConfig, LikelihoodRun, Probe,
};
use tsm_core::target::{Dim, LogDensity};
use tsm_experiments::cli::{choice, count, float};
use tsm_experiments::init_tracing;
use tsm_experiments::output::{OutputDir, RunTimer};
use tsm_experiments::training::{tune_cpu, TrainedRun};
use tsm_nn::score::ModelScore;
use tsm_nn::DeviceKind;

/// The most data points.
const MAX_POINTS: usize = 10_000_000;

/// Log-likelihood of data points under a trained checkpoint (probability-flow ODE).
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
struct Args {
    /// Checkpoint folder (written by `train --out DIR`)
    #[arg(long, value_name = "DIR")]
    checkpoint: PathBuf,
    /// Data: a CSV with the header x1,…,x_d and one point per row
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// The ODE solver's absolute and relative tolerance (Dormand–Prince 5(4))
    #[arg(long, default_value_t = 1e-5, value_parser = float().above(0.0).at_most(1.0))]
    tol: f64,
    /// Divergence: exact (Jacobian trace by central differences) or hutchinson
    #[arg(long, value_parser = choice::<Estimator>(), default_value = "exact")]
    estimator: Estimator,
    /// Hutchinson probes per point (2 or more give a per-point standard error)
    #[arg(long, default_value_t = 16, value_parser = count::<usize>(1..=10_000))]
    probes: usize,
    /// Hutchinson's probe distribution
    #[arg(long, value_parser = choice::<Probe>(), default_value = "rademacher")]
    probe: Probe,
    /// Finite-difference step of the Jacobian terms (the network runs in f32)
    #[arg(long, default_value_t = 1e-2, value_parser = float().above(0.0).at_most(1.0))]
    fd_step: f64,
    /// Start time of the ODE at the data (the truncation of t → 0)
    #[arg(long, default_value_t = 1e-5, value_parser = float().above(0.0).below(0.5))]
    t_min: f64,
    /// Points per batch (they share the solver's steps)
    #[arg(long, default_value_t = 256, value_parser = count::<usize>(1..=65_536))]
    batch: usize,
    /// Use the raw weights instead of their EMA
    #[arg(long)]
    no_ema: bool,
    /// Seed of Hutchinson's probes
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Device (cuda/metal need the cargo feature of that name)
    #[arg(long, value_parser = choice::<DeviceKind>(), default_value = "cpu")]
    device: DeviceKind,
    /// Output folder (likelihood.csv and likelihood.json are written in it)
    #[arg(long, value_name = "DIR", default_value = "results/likelihood")]
    out: PathBuf,
}

/// One CSV row.
#[derive(Debug, Serialize)]
struct Row {
    index: usize,
    log_p: f64,
    bits_per_dim: f64,
    /// Hutchinson's standard error over the probes (empty for `exact` or one probe).
    std_error: Option<f64>,
    /// The checkpoint target's exact `log p₀` at the point.
    target_log_p: f64,
}

/// The JSON record's parameters and results.
#[derive(Debug, Serialize)]
struct Parameters {
    checkpoint: String,
    checkpoint_step: u64,
    target: String,
    data: String,
    points: usize,
    dim: usize,
    estimator: String,
    probes: Option<usize>,
    probe: Option<String>,
    fd_step: f64,
    tol: f64,
    t_min: f64,
    t_max: f64,
    ema: bool,
    /// Mean log-likelihood (nats) and its standard error over the points.
    mean_log_p: f64,
    mean_log_p_se: Option<f64>,
    /// Mean bits per dimension and its standard error.
    bits_per_dim: f64,
    bits_per_dim_se: Option<f64>,
    /// The target's exact mean `log p₀` over the same points.
    target_mean_log_p: f64,
    /// Score-network batch evaluations (each of `n (1 + 2d)` or `n (1 + 2K)` rows).
    evaluations: usize,
    accepted_steps: usize,
    rejected_steps: usize,
    points_per_second: f64,
}

/// Reads the data CSV: the header must be `x1,…,x_d`, every row `d` finite numbers.
fn read_data(path: &Path, d: usize) -> Result<Vec<f64>> {
    let name = path.display();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("--data {name}: cannot open the file"))?;
    let header = reader
        .headers()
        .with_context(|| format!("--data {name}: cannot read the header"))?
        .clone();
    let want: Vec<String> = (1..=d).map(|j| format!("x{j}")).collect();
    let got: Vec<&str> = header.iter().map(str::trim).collect();
    if got != want {
        bail!(
            "--data {name}: the header is `{}`, but the checkpoint's model has dimension {d}, \
             so it must be `{}`",
            got.join(","),
            want.join(",")
        );
    }
    let mut x = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let row = i + 1;
        let record = record.with_context(|| format!("--data {name}: row {row} is unreadable"))?;
        if record.len() != d {
            bail!(
                "--data {name}: row {row} has {} values, the dimension is {d}",
                record.len()
            );
        }
        for (j, field) in record.iter().enumerate() {
            let v: f64 = field.trim().parse().with_context(|| {
                format!(
                    "--data {name}: row {row}, x{}: `{field}` is not a number",
                    j + 1
                )
            })?;
            if !v.is_finite() {
                bail!("--data {name}: row {row}, x{}: {v} is not finite", j + 1);
            }
            x.push(v);
        }
        if x.len() / d > MAX_POINTS {
            bail!("--data {name}: more than {MAX_POINTS} points");
        }
    }
    if x.is_empty() {
        bail!("--data {name}: no data rows after the header");
    }
    Ok(x)
}

fn main() -> Result<()> {
    tune_cpu();
    init_tracing();
    let args = Args::parse();
    let timer = RunTimer::start();
    let device = args.device.open().context("--device")?;
    let run = TrainedRun::open(&args.checkpoint)?;
    let (record, target) = (&run.record, &run.target);
    let cfg = &record.config;
    let d = Dim::dim(target);
    let x = read_data(&args.data, d)?;
    let n = x.len() / d;
    let out = OutputDir::create(&args.out)?;
    let model = run.model(!args.no_ema, &device)?;
    let schedule = cfg.model.schedule;
    let lcfg = LikelihoodConfig {
        t_min: args.t_min,
        tol: args.tol,
        data_variance: target.variance_per_dim(),
        ..LikelihoodConfig::default()
    };
    lcfg.validate().context("--tol / --t-min")?;
    let score = ModelScore::new(&model, Some(target), &device);
    let mut fd = FiniteDifference::new(score, args.fd_step).context("--fd-step")?;
    let probes = Hutchinson {
        probes: args.probes,
        probe: args.probe,
        fd_step: args.fd_step,
    };
    let mut rng = tsm_core::rng::stream(args.seed, 0);
    let bar = indicatif::ProgressBar::new(n as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {pos}/{len} points, {per_sec} (eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    let start = std::time::Instant::now();
    let mut all = LikelihoodRun {
        dim: d,
        points: Vec::with_capacity(n),
        stats: Default::default(),
    };
    for chunk in x.chunks(args.batch * d) {
        let run = match args.estimator {
            Estimator::Exact => lcfg.exact(&mut fd, &schedule, chunk),
            Estimator::Hutchinson => {
                lcfg.hutchinson(&mut fd.score, &schedule, chunk, &probes, &mut rng)
            }
        }
        .context("the likelihood ODE")?;
        all.points.extend(run.points);
        all.stats.accepted += run.stats.accepted;
        all.stats.rejected += run.stats.rejected;
        all.stats.evaluations += run.stats.evaluations;
        bar.inc((chunk.len() / d) as u64);
    }
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let rows: Vec<Row> = all
        .points
        .iter()
        .zip(x.chunks_exact(d))
        .enumerate()
        .map(|(index, (p, xi))| Row {
            index,
            log_p: p.log_p,
            bits_per_dim: p.bits_per_dim(d),
            std_error: p.std_error,
            target_log_p: target.log_density(xi),
        })
        .collect();
    let (mean, se) = all.mean_log_p();
    let (bpd, bpd_se) = all.bits_per_dim();
    let target_mean = rows.iter().map(|r| r.target_log_p).sum::<f64>() / n as f64;
    let hutchinson = args.estimator == Estimator::Hutchinson;
    let parameters = Parameters {
        checkpoint: args.checkpoint.display().to_string(),
        checkpoint_step: record.step,
        target: cfg.target.clone(),
        data: args.data.display().to_string(),
        points: n,
        dim: d,
        estimator: args.estimator.to_string(),
        probes: hutchinson.then_some(args.probes),
        probe: hutchinson.then(|| args.probe.to_string()),
        fd_step: args.fd_step,
        tol: args.tol,
        t_min: lcfg.t_min,
        t_max: lcfg.t_max,
        ema: !args.no_ema,
        mean_log_p: mean,
        mean_log_p_se: se,
        bits_per_dim: bpd,
        bits_per_dim_se: bpd_se,
        target_mean_log_p: target_mean,
        evaluations: all.stats.evaluations,
        accepted_steps: all.stats.accepted,
        rejected_steps: all.stats.rejected,
        points_per_second: n as f64 / seconds.max(1e-9),
    };
    out.write_csv("likelihood.csv", &rows)?;
    let files = ["likelihood.csv", "likelihood.json"];
    let run_record = timer.record("likelihood", args.seed, false, parameters, &files);
    out.write_json("likelihood.json", &run_record)?;
    let pm = |se: Option<f64>| se.map_or(String::new(), |s| format!(" ± {s:.4}"));
    println!(
        "{n} points (d = {d}, {}): log p = {mean:.4}{} nats, {bpd:.4}{} bits/dim \
         (target's exact log p₀: {target_mean:.4}); {:.1} points/s; wrote {}",
        args.estimator,
        pm(se),
        pm(bpd_se),
        n as f64 / seconds.max(1e-9),
        out.path().display()
    );
    Ok(())
}
