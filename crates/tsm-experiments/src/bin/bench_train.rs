//! `cargo xtask bench train`: training steps/s of the Fig. 5 network (MLP 3×128, SiLU, time
//! embedding 128; batch 512, Adam, DSM on the eight-mode mixture, cosine) on the CPU, with a
//! breakdown, plus sampler and MMD throughput.
//!
//! `cargo xtask bench train [-- --steps 2000 --rounds 3]`
//!
//! Prints, per round (interleaved so that machine noise hits every variant alike):
//! - `cpu engine, 2 threads`: the default (hand-written backward, two half-batches in parallel);
//! - `cpu engine, 1 thread`;
//! - `candle autograd`: candle-nn `Linear` + `silu`, `backward()`, tensor Adam;
//! - `batch sampling only`: drawing `(t, x_0, ε)`, targets, weights and the time embedding;
//!
//! then the reverse-SDE sampler's throughput (network score evaluations × points per second)
//! and the time of one unbiased MMD² on 10⁴ × 10⁴ points in 2-D.

use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use tsm_core::identity::ScoreIdentity;
use tsm_core::sampler::SamplerConfig;
use tsm_core::weighting::Weighting;
use tsm_experiments::cli::{count, flag_error, usage_error};
use tsm_experiments::training::tune_cpu;
use tsm_nn::candle::Device;
use tsm_nn::engine::EngineKind;
use tsm_nn::loss::LossConfig;
use tsm_nn::score::ModelScore;
use tsm_nn::{ModelConfig, TrainConfig, Trainer, TrainerOptions};
use tsm_targets::GaussianMixture;

/// Training and sampling throughput of the Fig. 5 network.
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
struct Args {
    /// Timed steps per variant and round, 1 to 10⁷
    #[arg(long, default_value_t = 1000, value_parser = count::<u64>(1..=10_000_000))]
    steps: u64,
    /// Rounds (variants interleaved), 1 to 1000
    #[arg(long, default_value_t = 3, value_parser = count::<usize>(1..=1000))]
    rounds: usize,
    /// Batch size (2 to 2²⁰)
    #[arg(long, default_value_t = 512,
          value_parser = count::<usize>(2..=TrainConfig::MAX_BATCH as u64))]
    batch: usize,
    /// Skip the candle autograd variant
    #[arg(long)]
    no_autograd: bool,
    /// Check the flags, print what would run, and exit
    #[arg(long)]
    dry_run: bool,
}

/// The most `rounds × steps` (the default is 3000).
const MAX_WORK: u128 = 100_000_000;

fn config(
    target: &GaussianMixture,
    engine: EngineKind,
    batch: usize,
    steps: u64,
) -> Result<TrainConfig> {
    let loss = LossConfig::for_mixture(ScoreIdentity::Dsi, Weighting::DsmOptimal, target)?;
    Ok(TrainConfig {
        batch,
        steps,
        checkpoint_every: 0,
        engine,
        ..TrainConfig::new("eight_modes", ModelConfig::default(), loss)
    })
}

/// A trainer on the eight-mode mixture with `threads` CPU-engine threads.
fn trainer(
    target: &GaussianMixture,
    engine: EngineKind,
    threads: usize,
    batch: usize,
    steps: u64,
) -> Result<Trainer<'_, GaussianMixture>> {
    Ok(Trainer::with_options(
        config(target, engine, batch, steps)?,
        target,
        &Device::Cpu,
        TrainerOptions::with_threads(threads),
    )?)
}

fn steps_per_s(engine: EngineKind, threads: usize, batch: usize, steps: u64) -> Result<f64> {
    let target = tsm_targets::named::eight_modes();
    let mut t = trainer(&target, engine, threads, batch, 50)?;
    t.run(None, |_, _| {})?; // warm-up
    t.set_total_steps(50 + steps)?;
    let start = Instant::now();
    t.run(None, |_, _| {})?;
    Ok(steps as f64 / start.elapsed().as_secs_f64())
}

fn sampling_per_s(batch: usize, steps: u64) -> Result<f64> {
    let target = tsm_targets::named::eight_modes();
    let t = trainer(&target, EngineKind::Cpu, 1, batch, 1)?;
    let start = Instant::now();
    for k in 1..=steps {
        std::hint::black_box(t.batch_of_step(k)?);
    }
    Ok(steps as f64 / start.elapsed().as_secs_f64())
}

/// Forward pass and loss of the CPU engine on a fixed batch (no backward, no update).
fn forward_per_s(batch: usize, steps: u64) -> Result<f64> {
    let target = tsm_targets::named::eight_modes();
    let t = trainer(&target, EngineKind::Cpu, 1, batch, 1)?;
    let b = t.batch_of_step(1)?;
    let start = Instant::now();
    for _ in 0..steps {
        std::hint::black_box(t.loss_on(&b)?);
    }
    Ok(steps as f64 / start.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    tune_cpu();
    tsm_experiments::init_tracing();
    let args = Args::parse();
    let work = args.rounds as u128 * u128::from(args.steps);
    if work > MAX_WORK {
        usage_error::<Args>(format!(
            "--rounds × --steps is {work}, more than {MAX_WORK:.0e} (days of work); lower them"
        ));
    }
    let target = tsm_targets::named::eight_modes();
    if let Err(e) = config(&target, EngineKind::Cpu, args.batch, args.steps)?.validate() {
        return Err(flag_error::<Args>(
            e,
            &[("batch", "--batch"), ("memory", "--batch")],
        ));
    }
    if args.dry_run {
        println!(
            "dry run: would time {} rounds of {} steps at batch {}",
            args.rounds, args.steps, args.batch
        );
        return Ok(());
    }
    println!(
        "bench_train: Fig. 5 network, batch {}, {} timed steps per variant, {} rounds, RAYON_NUM_THREADS={}",
        args.batch,
        args.steps,
        args.rounds,
        std::env::var("RAYON_NUM_THREADS").unwrap_or_default()
    );
    let mut results: Vec<(&str, Vec<f64>)> = vec![
        ("cpu engine, 2 threads", vec![]),
        ("cpu engine, 1 thread", vec![]),
        ("candle autograd", vec![]),
        ("batch sampling only", vec![]),
        ("forward + loss only", vec![]),
    ];
    for round in 0..args.rounds {
        results[0]
            .1
            .push(steps_per_s(EngineKind::Cpu, 2, args.batch, args.steps)?);
        results[1]
            .1
            .push(steps_per_s(EngineKind::Cpu, 1, args.batch, args.steps)?);
        if !args.no_autograd {
            results[2].1.push(steps_per_s(
                EngineKind::Candle,
                1,
                args.batch,
                (args.steps / 4).max(1),
            )?);
        }
        results[3].1.push(sampling_per_s(args.batch, args.steps)?);
        results[4].1.push(forward_per_s(args.batch, args.steps)?);
        println!(
            "round {}: {}",
            round + 1,
            results
                .iter()
                .filter_map(|(n, v)| v.last().map(|x| format!("{n} {x:.0}/s")))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for (name, v) in &results {
        if v.is_empty() {
            continue;
        }
        let mut s = v.clone();
        s.sort_by(f64::total_cmp);
        println!(
            "{name:>24}: median {:7.1} steps/s (min {:.1}, max {:.1})",
            s[s.len() / 2],
            s[0],
            s[s.len() - 1]
        );
    }

    // Sampler throughput with the network.
    let target = tsm_targets::named::eight_modes();
    let v = target.variance_per_dim();
    let t = trainer(&target, EngineKind::Cpu, 1, 512, 1)?;
    let model = t.model(true, &Device::Cpu)?;
    let mut score = ModelScore::new(&model, Some(&target), &Device::Cpu);
    let (n, steps) = (10_000, 50);
    let cfg = SamplerConfig {
        steps,
        data_variance: v,
        ..SamplerConfig::default()
    };
    let mut rng = tsm_core::rng::stream(0, 0);
    let start = Instant::now();
    let x = cfg.sample(&mut score, &cfg_schedule(), n, &mut rng)?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sampler (EM, network): {n} points × {steps} steps in {secs:.2} s = {:.2e} point-steps/s",
        (n * steps) as f64 / secs
    );

    // MMD² on 10⁴ × 10⁴ in 2-D.
    let mut exact = vec![0.0; n * 2];
    for row in exact.chunks_exact_mut(2) {
        tsm_core::target::Sample::sample_into(&target, &mut rng, row);
    }
    let start = Instant::now();
    let h = tsm_nn::mmd::median_bandwidth(&x, &exact, 2)?;
    let m = tsm_nn::mmd::mmd2_unbiased(&x, &exact, 2, h)?;
    println!(
        "MMD² 1e4 × 1e4 (2-D, {} rayon threads): {:.3} s (value {m:.3e}, h {h:.2})",
        rayon::current_num_threads(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn cfg_schedule() -> tsm_core::schedule::AnySchedule {
    tsm_core::schedule::AnySchedule::default()
}
