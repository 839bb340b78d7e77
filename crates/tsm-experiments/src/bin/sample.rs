//! `cargo xtask sample`: draws samples from a trained checkpoint (its EMA weights) with a
//! reverse-SDE, probability-flow or predictor–corrector sampler, and plots them against the
//! target density.
//!
//! `cargo xtask sample --checkpoint runs/tsm --sampler heun --steps 200 --n 5000 --out samples.csv`
//!
//! Writes `FILE` (CSV, columns `x1,…,xd`), and `FILE` with extensions `.svg` and `.png`: a
//! scatter over the density (2-D) or a histogram against it (1-D). Also prints the MMD² to
//! exact target samples (RBF kernel, median-heuristic bandwidth).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use tsm_core::sampler::{Sampler, SamplerConfig};
use tsm_core::target::{Dim, Sample};
use tsm_experiments::cli::choice;
use tsm_experiments::init_tracing;
use tsm_experiments::plot::save_svg_png;
use tsm_experiments::training::{tune_cpu, SamplesPlot};
use tsm_nn::io::write_atomic;
use tsm_nn::score::ModelScore;
use tsm_nn::{checkpoint, DeviceKind};

/// Sample from a trained checkpoint and plot the samples against the target density.
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
    /// Number of sampler steps (uniform in log σ_t/α_t)
    #[arg(long, default_value_t = 200)]
    steps: usize,
    /// Number of samples
    #[arg(long, default_value_t = 5000)]
    n: usize,
    /// Use the raw weights instead of their EMA
    #[arg(long)]
    no_ema: bool,
    /// Seed of the sampler's noise
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Device (cuda/metal need the cargo feature of that name)
    #[arg(long, value_parser = choice::<DeviceKind>(), default_value = "cpu")]
    device: DeviceKind,
    /// Output CSV file; the plots go beside it (.svg, .png)
    #[arg(long, value_name = "FILE", default_value = "results/samples.csv")]
    out: PathBuf,
}

fn main() -> Result<()> {
    tune_cpu();
    init_tracing();
    let args = Args::parse();
    let device = args.device.open().context("--device")?;
    let (record, state) = checkpoint::load(&args.checkpoint).context("--checkpoint")?;
    let cfg = &record.config;
    let target = tsm_targets::named::by_name(&cfg.target)?;
    let weights = if args.no_ema {
        state.params()
    } else {
        state.ema()
    };
    let model = tsm_nn::train::model_from_named(&cfg.model, weights, &device)?;
    let schedule = cfg.model.schedule;
    let scfg = SamplerConfig {
        sampler: args.sampler,
        steps: args.steps,
        data_variance: target.variance_per_dim(),
        ..SamplerConfig::default()
    };
    let mut score = ModelScore::new(&model, Some(&target), &device);
    let mut rng = tsm_core::rng::stream(args.seed, 0);
    let start = std::time::Instant::now();
    let x = scfg.sample(&mut score, &schedule, args.n, &mut rng)?;
    let seconds = start.elapsed().as_secs_f64();
    let d = Dim::dim(&target);
    // CSV.
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
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("--out {}: cannot create its folder", args.out.display()))?;
    }
    write_atomic(&args.out, csv.as_bytes()).context("--out")?;
    // MMD² to exact samples.
    let mut exact = vec![0.0; args.n * d];
    let mut rng = tsm_core::rng::stream(args.seed, 1);
    for row in exact.chunks_exact_mut(d) {
        target.sample_into(&mut rng, row);
    }
    let h = tsm_nn::mmd::median_bandwidth(&exact, &x, d)?;
    let mmd2 = tsm_nn::mmd::mmd2_unbiased(&x, &exact, d, h)?;
    // Plots beside the CSV.
    let dir = args.out.parent().map(PathBuf::from).unwrap_or_default();
    let stem = args
        .out
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("samples")
        .to_owned();
    let plot = SamplesPlot {
        title: format!(
            "{} — {} ({} {} steps, step {})",
            cfg.target,
            cfg.loss.identity.loss_name(),
            args.sampler,
            args.steps,
            record.step
        ),
        samples: &x,
        target: &target,
    };
    save_svg_png(
        if dir.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            &dir
        },
        &stem,
        (700, 700),
        &plot,
    )?;
    tracing::info!(
        n = args.n,
        seconds,
        mmd2,
        bandwidth = h,
        out = %args.out.display(),
        "sampled"
    );
    println!(
        "{} samples in {seconds:.2} s; MMD² to exact samples = {mmd2:.3e} (h = {h:.3})",
        args.n
    );
    Ok(())
}
