//! `cargo xtask sample`: draws samples from a trained checkpoint (its EMA weights) with a
//! reverse-SDE, probability-flow or predictor–corrector sampler, checks them against the
//! target, and plots them against the target density.
//!
//! `cargo xtask sample --checkpoint runs/tsm --sampler heun --steps 200 --n 5000 --out runs/tsm/samples`
//!
//! **Outputs.** `--out` names the files, never a picture: `--out runs/x/samples` (a stem) or
//! `--out runs/x/samples.csv` write `samples.csv` (columns `x1,…,xd`), `samples.svg` and
//! `samples.png` (a scatter over the density in 2-D, a histogram against it in 1-D) and
//! `samples.json` (the run and the check) into `runs/x/`; an existing folder gets
//! `samples.*` inside it; a name ending in `.svg`, `.png`, `.json` or another picture's
//! extension is refused. Nothing is written before the samples are drawn and found finite.
//!
//! **Check** (`tsm_nn::check`, at least 100 samples): an MMD² two-sample test against exact
//! draws at bandwidths fixed by the target's scale, with a permutation-null threshold and a
//! p-value, and, for a mixture, a χ² test of the mode shares; PASS when both p-values are at
//! least α = 0.01, FAIL otherwise, in the output and the JSON record. The exit status is 0
//! either way (1 for an error, 2 for a bad flag value).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::Serialize;
use tsm_core::sampler::{Sampler, SamplerConfig};
use tsm_core::target::Dim;
use tsm_experiments::cli::{choice, count, usage_error};
use tsm_experiments::init_tracing;
use tsm_experiments::output::RunTimer;
use tsm_experiments::plot::save_svg_png;
use tsm_experiments::training::{tune_cpu, SamplesPlot, TrainedRun};
use tsm_nn::check::{SampleCheck, SampleReport};
use tsm_nn::io::write_atomic;
use tsm_nn::score::ModelScore;
use tsm_nn::DeviceKind;

/// The fewest sampler steps: below them the samplers do not integrate the reverse dynamics
/// (one Euler–Maruyama step from t = 0.999 lands at |x| ~ 10³).
const MIN_STEPS: usize = 10;
/// The most sampler steps.
const MAX_STEPS: usize = 100_000;
/// The most samples (10⁷ in 2-D: ≈ 1 GB with the CSV text).
const MAX_N: usize = 10_000_000;
/// The most network evaluations × points (≈ 7 h at 4·10⁵ point-evaluations/s).
const MAX_WORK: u128 = 10_000_000_000;

/// Sample from a trained checkpoint, check the samples against the target (PASS/FAIL), and
/// plot them against the target density.
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
struct Args {
    /// Checkpoint folder (written by `train --out DIR`)
    #[arg(long, value_name = "DIR")]
    checkpoint: PathBuf,
    /// Sampler: em (reverse SDE), heun (probability-flow ODE), pc (predictor–corrector;
    /// pc=R or pc=R,K for Langevin signal-to-noise ratio R and K corrector steps)
    #[arg(long, value_parser = choice::<Sampler>(), default_value = "em")]
    sampler: Sampler,
    /// Number of sampler steps, uniform in log σ_t/α_t (10 to 10⁵; fewer do not integrate
    /// the reverse dynamics)
    #[arg(long, default_value_t = 200,
          value_parser = count::<usize>(MIN_STEPS as u64..=MAX_STEPS as u64))]
    steps: usize,
    /// Number of samples (1 to 10⁷; the check needs at least 100)
    #[arg(long, default_value_t = 5000, value_parser = count::<usize>(1..=MAX_N as u64))]
    n: usize,
    /// Use the raw weights instead of their EMA
    #[arg(long)]
    no_ema: bool,
    /// Seed of the sampler's noise (and of the check's exact draws)
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Device (cuda/metal need the cargo feature of that name)
    #[arg(long, value_parser = choice::<DeviceKind>(), default_value = "cpu")]
    device: DeviceKind,
    /// Output files: a stem (PATH.csv, .svg, .png, .json are written), PATH.csv, or an
    /// existing folder (samples.* inside); a picture's or .json extension is refused
    #[arg(long, value_name = "PATH", default_value = "results/samples")]
    out: PathBuf,
    /// Check the flags and the checkpoint, print what would run, and exit without sampling or
    /// writing anything
    #[arg(long)]
    dry_run: bool,
}

/// The JSON record's parameters.
#[derive(Debug, Serialize)]
struct Parameters<'a> {
    checkpoint: String,
    checkpoint_step: u64,
    target: &'a str,
    loss: String,
    sampler: String,
    steps: usize,
    n: usize,
    ema: bool,
    sampler_seconds: f64,
    /// The check, or why it was skipped.
    check: Option<&'a SampleReport>,
    check_skipped: Option<String>,
}

/// `(folder, stem)` of the outputs from `--out` (see the module docs).
fn outputs(out: &Path) -> (PathBuf, String) {
    let text = out.to_string_lossy();
    if out.is_dir() || text.ends_with('/') || text.ends_with(std::path::MAIN_SEPARATOR) {
        return (out.to_owned(), "samples".to_owned());
    }
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.is_empty() || name == "." || name == ".." {
        usage_error::<Args>(format!(
            "invalid value '{}' for '--out': give a file stem, a .csv name or a folder",
            out.display()
        ));
    }
    let ext = out
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let stem = match ext.as_deref() {
        Some("csv") => name[..name.len() - 4].to_owned(),
        Some(
            e @ ("svg" | "png" | "json" | "jpg" | "jpeg" | "gif" | "bmp" | "tif" | "tiff" | "webp"
            | "pdf"),
        ) => usage_error::<Args>(format!(
            "invalid value '{}' for '--out': names the CSV (or a stem), not a .{e} file — \
             the .csv, .svg, .png and .json are all written under that name",
            out.display()
        )),
        _ => name,
    };
    if stem.is_empty() {
        usage_error::<Args>(format!(
            "invalid value '{}' for '--out': the file name is empty",
            out.display()
        ));
    }
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_owned);
    (dir, stem)
}

fn main() -> Result<()> {
    tune_cpu();
    init_tracing();
    let args = Args::parse();
    let (dir, stem) = outputs(&args.out);
    let evaluations = match args.sampler {
        Sampler::EulerMaruyama => 1,
        Sampler::Heun => 2,
        Sampler::PredictorCorrector {
            corrector_steps, ..
        } => corrector_steps as u128 + 1,
        _ => 2,
    };
    let work = args.n as u128 * args.steps as u128 * evaluations;
    if work > MAX_WORK {
        usage_error::<Args>(format!(
            "--n {} × --steps {} ({} network evaluations per point and step) is {work:.1e} \
             point-evaluations, more than {MAX_WORK:.0e} (hours of work); lower --n or --steps",
            args.n, args.steps, evaluations
        ));
    }
    let device = args.device.open().context("--device")?;
    let run = TrainedRun::open(&args.checkpoint)?;
    let (record, target) = (&run.record, &run.target);
    let cfg = &record.config;
    let d = Dim::dim(target);
    if args.dry_run {
        println!(
            "dry run: would draw {} samples with {} ({} steps) from {} (step {}, loss {}) into \
             {}/{stem}.{{csv,svg,png,json}}",
            args.n,
            args.sampler,
            args.steps,
            args.checkpoint.display(),
            record.step,
            cfg.loss.identity,
            dir.display()
        );
        return Ok(());
    }
    let model = run.model(!args.no_ema, &device)?;
    let schedule = cfg.model.schedule;
    let scfg = SamplerConfig {
        sampler: args.sampler,
        steps: args.steps,
        data_variance: target.variance_per_dim(),
        ..SamplerConfig::default()
    };
    let mut score = ModelScore::new(&model, Some(target), &device);
    let mut rng = tsm_core::rng::stream(args.seed, 0);
    let timer = RunTimer::start();
    let x = scfg.sample(&mut score, &schedule, args.n, &mut rng)?;
    let seconds = timer.elapsed_s();
    let bad = x.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        bail!(
            "the samples hold {bad} non-finite values (of {}): the model's score is not finite \
             along the way (a diverged training run?); nothing written",
            x.len()
        );
    }
    let (report, skipped) = if args.n >= SampleCheck::MIN_SAMPLES {
        let check = SampleCheck {
            seed: args.seed,
            ..SampleCheck::for_target(target)
        };
        (Some(check.run(&x, target)?), None)
    } else {
        let why = format!(
            "fewer than {} samples: too few to tell good from bad",
            SampleCheck::MIN_SAMPLES
        );
        (None, Some(why))
    };

    // Outputs, after everything was computed.
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("--out {}: cannot create its folder", args.out.display()))?;
    for f in tsm_nn::io::remove_stale_temps(&dir)? {
        tracing::info!(file = %f.display(), "removed a leftover of an interrupted run");
    }
    let mut csv = (1..=d)
        .map(|k| format!("x{k}"))
        .collect::<Vec<_>>()
        .join(",");
    csv.push('\n');
    for row in x.chunks_exact(d) {
        csv.push_str(
            &row.iter()
                .map(|v| format!("{v}"))
                .collect::<Vec<_>>()
                .join(","),
        );
        csv.push('\n');
    }
    let csv_path = dir.join(format!("{stem}.csv"));
    write_atomic(&csv_path, csv.as_bytes()).context("--out")?;
    let plot = SamplesPlot {
        title: format!(
            "{} — {} ({} {} steps, step {}){}",
            cfg.target,
            cfg.loss.identity.loss_name(),
            args.sampler,
            args.steps,
            record.step,
            report
                .as_ref()
                .map_or_else(String::new, |r| format!(": {}", r.verdict))
        ),
        samples: &x,
        target,
    };
    let [svg, png] = save_svg_png(&dir, &stem, (700, 700), &plot)?;
    let json = format!("{stem}.json");
    let parameters = Parameters {
        checkpoint: args.checkpoint.display().to_string(),
        checkpoint_step: record.step,
        target: &cfg.target,
        loss: cfg.loss.identity.to_string(),
        sampler: args.sampler.to_string(),
        steps: args.steps,
        n: args.n,
        ema: !args.no_ema,
        sampler_seconds: seconds,
        check: report.as_ref(),
        check_skipped: skipped.clone(),
    };
    let run = timer.record(
        "sample",
        args.seed,
        false,
        parameters,
        &[&format!("{stem}.csv"), &svg, &png, &json],
    );
    let mut bytes = serde_json::to_vec_pretty(&run)?;
    bytes.push(b'\n');
    write_atomic(&dir.join(&json), &bytes).context("--out")?;
    tracing::info!(n = args.n, seconds, out = %csv_path.display(), "sampled");
    println!(
        "{} samples in {seconds:.2} s ({}, {} steps) → {}",
        args.n,
        args.sampler,
        args.steps,
        csv_path.display()
    );
    match (&report, &skipped) {
        (Some(r), _) => println!("{r}"),
        (None, Some(why)) => println!("sample check: skipped ({why})"),
        (None, None) => {}
    }
    Ok(())
}
