//! Benchmark of the probability-flow ODE likelihood (`tsm_core::likelihood`): log-likelihood
//! evaluations (data points) per second at d = 2 and d = 16, with the exact divergence and
//! with Hutchinson's estimator (16 Rademacher probes), for the exact score of a Gaussian
//! mixture (`f64`, closed-form Jacobian trace) and for an untrained default-width score
//! network on the CPU (`f32`, Jacobian terms by central differences, `--fd-step 1e-2`).
//! Tolerance `10⁻⁵`, batches of 256 points, fixed seeds.
//!
//! `cargo xtask bench likelihood [--quick] [--repeats N]`

use anyhow::Result;
use clap::Parser;
use tsm_core::likelihood::{FiniteDifference, Hutchinson, LikelihoodConfig, Probe};
use tsm_core::schedule::Cosine;
use tsm_core::target::{Dim, Sample};
use tsm_experiments::bench::report_repeats;
use tsm_experiments::cli::count;
use tsm_nn::score::ModelScore;
use tsm_nn::{DeviceKind, ModelConfig, ScoreModel};
use tsm_targets::{named, ExactMixtureScore, GaussianMixture};

/// Times likelihood evaluations and prints points per second.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Fewer points (64 instead of 256)
    #[arg(long)]
    quick: bool,
    /// Number of timed repetitions, 1 to 1000 (the best and the median are reported)
    #[arg(long, default_value_t = 3, value_parser = count::<usize>(1..=1000))]
    repeats: usize,
    /// Check the flags, print what would run, and exit
    #[arg(long)]
    dry_run: bool,
}

/// A 16-D mixture of four isotropic components (means ±2 on the first two axes, std 0.5).
fn mixture16() -> Result<GaussianMixture> {
    let means = (0..4)
        .map(|k| {
            let mut m = vec![0.0; 16];
            m[k / 2] = if k % 2 == 0 { 2.0 } else { -2.0 };
            m
        })
        .collect();
    Ok(GaussianMixture::isotropic(
        vec![0.25; 4],
        means,
        vec![0.5; 4],
    )?)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let n = if args.quick { 64 } else { 256 };
    let probes = Hutchinson {
        probes: 16,
        probe: Probe::Rademacher,
        fd_step: 1e-2,
    };
    println!(
        "PF-ODE likelihood: {n} points per run, tol 1e-5, exact divergence and Hutchinson (16 \
         Rademacher probes)"
    );
    if args.dry_run {
        return Ok(());
    }
    let device = "cpu".parse::<DeviceKind>()?.open()?;
    for target in [named::eight_modes(), mixture16()?] {
        let d = Dim::dim(&target);
        let mut rng = tsm_core::rng::stream(1, d as u64);
        let mut x = vec![0.0; n * d];
        for row in x.chunks_exact_mut(d) {
            target.sample_into(&mut rng, row);
        }
        let cfg = LikelihoodConfig {
            tol: 1e-5,
            data_variance: target.variance_per_dim(),
            ..LikelihoodConfig::default()
        };
        let exact_score = || ExactMixtureScore {
            mixture: &target,
            schedule: Cosine,
        };
        println!("d = {d}, exact mixture score (f64), exact divergence:");
        report_repeats(args.repeats, n as f64, "point", |_| {
            let run = cfg.exact(&mut exact_score(), &Cosine, &x)?;
            Ok(format!(", {} evaluations", run.stats.evaluations))
        })?;
        println!("d = {d}, exact mixture score (f64), Hutchinson:");
        report_repeats(args.repeats, n as f64, "point", |r| {
            let mut rng = tsm_core::rng::stream(2, r);
            let run = cfg.hutchinson(&mut exact_score(), &Cosine, &x, &probes, &mut rng)?;
            Ok(format!(", {} evaluations", run.stats.evaluations))
        })?;
        let mut mc = ModelConfig::default();
        mc.mlp.dim = d;
        let (_vars, model) = ScoreModel::init(&mc, 0, &device)?;
        let mut fd = FiniteDifference::new(
            ModelScore::<GaussianMixture>::new(&model, None, &device),
            probes.fd_step,
        )?;
        println!("d = {d}, network (f32, untrained), central-difference trace:");
        report_repeats(args.repeats, n as f64, "point", |_| {
            let run = cfg.exact(&mut fd, &Cosine, &x)?;
            Ok(format!(", {} evaluations", run.stats.evaluations))
        })?;
        println!("d = {d}, network (f32, untrained), Hutchinson:");
        report_repeats(args.repeats, n as f64, "point", |r| {
            let mut rng = tsm_core::rng::stream(2, r);
            let run = cfg.hutchinson(&mut fd.score, &Cosine, &x, &probes, &mut rng)?;
            Ok(format!(", {} evaluations", run.stats.evaluations))
        })?;
    }
    Ok(())
}
