//! `cargo xtask bench train`: training steps/s of the Fig. 5 network (MLP 3×128, SiLU, time
//! embedding 128; batch 512, Adam, DSM on the eight-mode mixture, cosine) on the CPU, with a
//! breakdown, plus sampler and MMD throughput.
//!
//! `cargo xtask bench train [-- --steps 2000 --rounds 3] [-- --implicit]`
//!
//! Prints, per round (interleaved so that machine noise hits every variant alike):
//! - `cpu engine, 2 threads`: the default (hand-written backward, two half-batches in parallel);
//! - `cpu engine, 1 thread`;
//! - `candle autograd`: candle-nn `Linear` + `silu`, `backward()`, tensor Adam;
//! - `batch sampling only`: drawing `(t, x_0, ε)`, targets, weights and the time embedding;
//!
//! - with `--vs-pytorch [PYTHON]`, `pytorch, 2 threads`: tools/train_torch.py right after the
//!   CPU engine in every round, and the ratio of the two per round and its median;
//!
//! then the reverse-SDE sampler's throughput (network score evaluations × points per second)
//! and the time of one unbiased MMD² on 10⁴ × 10⁴ points in 2-D.
//!
//! With `--implicit`, instead: the implicit losses against the DSM step on candle's autograd
//! engine (the one engine that runs them), at `d = 2` (eight-mode mixture) and `d = 16` (a
//! standard Gaussian), same network and batch: DSM, ISM with the exact trace (`d` forward-mode
//! JVPs), ISM with one Hutchinson probe, SSM with one probe (variance-reduced), FD-SSM with one
//! probe; steps/s per round, then the median and its ratio to DSM's.

use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use tsm_core::identity::ScoreIdentity;
use tsm_core::sampler::SamplerConfig;
use tsm_core::target::Dim;
use tsm_core::weighting::Weighting;
use tsm_experiments::cli::{count, flag_error, usage_error};
use tsm_experiments::training::tune_cpu;
use tsm_nn::candle::Device;
use tsm_nn::engine::EngineKind;
use tsm_nn::implicit::TrainLoss;
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
    /// Also time the PyTorch reference step (tools/train_torch.py: the same network, batch,
    /// loss and Adam, 2 threads) with this Python, interleaved with the CPU engine round by
    /// round, and print the ratio (default interpreter: python3; it needs `torch`)
    #[arg(long, value_name = "PYTHON", num_args = 0..=1, default_missing_value = "python3")]
    vs_pytorch: Option<String>,
    /// Time the implicit losses (ISM exact and Hutchinson, SSM, FD-SSM) against DSM on
    /// candle's autograd engine at d = 2 and d = 16 instead of the default variants (each
    /// loss runs --steps/4 timed steps per round)
    #[arg(long, conflicts_with = "vs_pytorch")]
    implicit: bool,
    /// Check the flags, print what would run, and exit
    #[arg(long)]
    dry_run: bool,
}

/// The losses of `--implicit`, DSM first (the reference of the ratios).
const IMPLICIT_LOSSES: [&str; 5] = ["dsm", "ism", "ism=hutchinson", "ssm", "fdssm"];

/// Steps/s of `loss` on candle's autograd engine, Fig. 5 network, on `target`.
fn implicit_steps_per_s(
    target: &GaussianMixture,
    loss: &str,
    batch: usize,
    steps: u64,
) -> Result<f64> {
    let loss: TrainLoss = loss.parse()?;
    let model = ModelConfig {
        mlp: tsm_nn::MlpConfig {
            dim: target.dim(),
            ..tsm_nn::MlpConfig::default()
        },
        ..ModelConfig::default()
    };
    let lc = LossConfig::for_mixture(loss.identity(), Weighting::Uniform, target)?;
    let cfg = TrainConfig {
        batch,
        steps: 5,
        checkpoint_every: 0,
        engine: EngineKind::Candle,
        implicit: loss.implicit(),
        ..TrainConfig::new("bench", model, lc)
    };
    let mut t = Trainer::with_options(cfg, target, &Device::Cpu, TrainerOptions::with_threads(1))?;
    t.run(None, |_, _| {})?; // warm-up
    t.set_total_steps(5 + steps)?;
    let start = Instant::now();
    t.run(None, |_, _| {})?;
    Ok(steps as f64 / start.elapsed().as_secs_f64())
}

/// `--implicit`: the implicit losses against DSM at d = 2 and d = 16.
fn bench_implicit(args: &Args) -> Result<()> {
    let steps = (args.steps / 4).max(1);
    let targets = [
        ("d = 2 (eight_modes)", tsm_targets::named::eight_modes()),
        ("d = 16 (N(0, I))", GaussianMixture::gaussian(16, 1.0)?),
    ];
    println!(
        "bench_train --implicit: Fig. 5 network, candle autograd, batch {}, {} timed steps per loss and round, {} rounds",
        args.batch, steps, args.rounds
    );
    let mut results = vec![vec![Vec::new(); IMPLICIT_LOSSES.len()]; targets.len()];
    for round in 0..args.rounds {
        for (ti, (name, target)) in targets.iter().enumerate() {
            let mut line = Vec::new();
            for (li, loss) in IMPLICIT_LOSSES.iter().enumerate() {
                let r = implicit_steps_per_s(target, loss, args.batch, steps)?;
                results[ti][li].push(r);
                line.push(format!("{loss} {r:.1}/s"));
            }
            println!("round {}, {name}: {}", round + 1, line.join(", "));
        }
    }
    let median = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    };
    for (ti, (name, _)) in targets.iter().enumerate() {
        let dsm = median(&results[ti][0]);
        for (li, loss) in IMPLICIT_LOSSES.iter().enumerate() {
            let m = median(&results[ti][li]);
            println!(
                "{name:>20} {loss:>15}: median {m:7.1} steps/s, {:.2}× the DSM step's time",
                dsm / m
            );
        }
    }
    Ok(())
}

/// The PyTorch reference step, next to this crate in the repository.
const TORCH_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tools/train_torch.py");

/// Checks that `python` imports torch and that the reference script is there.
fn check_pytorch(python: &str) -> std::result::Result<(), String> {
    if !std::path::Path::new(TORCH_SCRIPT).is_file() {
        return Err(format!("the reference script {TORCH_SCRIPT} is missing"));
    }
    let out = std::process::Command::new(python)
        .args(["-c", "import torch"])
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{python} cannot import torch (install it into a virtual environment, e.g. \
             `python3 -m venv /tmp/torch && /tmp/torch/bin/pip install torch numpy`, then pass \
             --vs-pytorch /tmp/torch/bin/python)"
        ))
    }
}

/// Steps/s of the PyTorch reference step, 2 threads (its own 100 warm-up steps untimed).
fn pytorch_steps_per_s(python: &str, batch: usize, steps: u64) -> Result<f64> {
    let out = std::process::Command::new(python)
        .arg(TORCH_SCRIPT)
        .args(["--threads", "2", "--steps", &steps.to_string()])
        .args(["--batch", &batch.to_string()])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        anyhow::bail!(
            "the PyTorch reference failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // "torch 2.x threads=2 batch=512: 640.1 steps/s (loss 1.358)"
    text.split_whitespace()
        .zip(text.split_whitespace().skip(1))
        .find_map(|(v, unit)| (unit == "steps/s").then(|| v.parse::<f64>().ok()).flatten())
        .ok_or_else(|| anyhow::anyhow!("no steps/s in the PyTorch output: {text}"))
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
    if let Some(python) = &args.vs_pytorch {
        if let Err(e) = check_pytorch(python) {
            usage_error::<Args>(format!("--vs-pytorch: {e}"));
        }
    }
    if args.dry_run {
        println!(
            "dry run: would time {} rounds of {} steps at batch {}{}",
            args.rounds,
            args.steps,
            args.batch,
            if args.implicit {
                " (implicit losses against DSM)"
            } else {
                ""
            }
        );
        return Ok(());
    }
    if args.implicit {
        return bench_implicit(&args);
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
        ("pytorch, 2 threads", vec![]),
    ];
    let mut ratios = Vec::new();
    for round in 0..args.rounds {
        results[0]
            .1
            .push(steps_per_s(EngineKind::Cpu, 2, args.batch, args.steps)?);
        // A B A B …: PyTorch right after the engine, so that drift hits both alike.
        if let Some(python) = &args.vs_pytorch {
            let torch = pytorch_steps_per_s(python, args.batch, args.steps)?;
            results[5].1.push(torch);
            ratios.push(results[0].1[round] / torch);
        }
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

    if !ratios.is_empty() {
        let mut s = ratios.clone();
        s.sort_by(f64::total_cmp);
        println!(
            "cpu engine (2 threads) / pytorch (2 threads), same rounds: median {:.2}× (min {:.2}, max {:.2}; per round {})",
            s[s.len() / 2],
            s[0],
            s[s.len() - 1],
            ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
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
