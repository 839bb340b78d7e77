//! `cargo xtask bench train`: training steps/s of the Fig. 5 network (MLP 3×128, SiLU, time
//! embedding 128; batch 512, Adam, DSM on the eight-mode mixture, cosine) on the CPU, with a
//! breakdown, plus sampler and MMD throughput.
//!
//! `cargo xtask bench train [-- --steps 2000 --rounds 3] [-- --implicit]
//! [-- --vector-path avx2] [-- --task sir]`
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
//! With `--vector-path avx2|portable` the CPU engine's kernels are capped at that path
//! ([`tsm_nn::cap_vector_path`]; the same bits, only the speed changes), and for `avx2` the
//! PyTorch reference too (`ATEN_CPU_CAPABILITY=avx2`, `MKL_ENABLE_INSTRUCTIONS=AVX2`,
//! `ONEDNN_MAX_CPU_ISA=AVX2`), so that the ratio models an AVX2-only machine. With
//! `--task linear_gaussian|galton_board|sir` the engine trains the conditional model of
//! `sbi train --task …` instead (its network and loss, on its simulations), and PyTorch the
//! same network with the task's condition width;
//!
//! then the reverse-SDE sampler's throughput (network score evaluations × points per second)
//! and the time of one unbiased MMD² on 10⁴ × 10⁴ points in 2-D.
//!
//! With `--implicit`, instead: the implicit losses against the DSM step on candle's autograd
//! engine (the one engine that runs them), at `d = 2` (eight-mode mixture) and `d = 16` (a
//! standard Gaussian), same network and batch: DSM, ISM with the exact trace (`d` forward-mode
//! JVPs), ISM with one Hutchinson probe, SSM with one probe (variance-reduced), FD-SSM with one
//! probe; steps/s per round, then the median and its ratio to DSM's.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use tsm_core::identity::ScoreIdentity;
use tsm_core::sampler::SamplerConfig;
use tsm_core::target::Dim;
use tsm_core::weighting::Weighting;
use tsm_experiments::cli::{choice, count, flag_error, usage_error};
use tsm_experiments::ltsm::{sbi_run_config, RunSizes};
use tsm_experiments::training::tune_cpu;
use tsm_nn::candle::Device;
use tsm_nn::engine::EngineKind;
use tsm_nn::implicit::TrainLoss;
use tsm_nn::loss::{BatchSource, LossConfig};
use tsm_nn::sbi::{SbiLoss, SbiTrainer, SimulationBatches, SimulationSet};
use tsm_nn::score::ModelScore;
use tsm_nn::{ModelConfig, TrainConfig, Trainer, TrainerOptions, VectorPath};
use tsm_targets::sbi::SbiTask;
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
    /// Cap the CPU engine's kernels at this vector path: avx512, avx2 (with FMA) or portable
    /// [default: the widest this CPU has]. Every path computes the same bits. With avx2 the
    /// PyTorch reference is capped too (ATEN_CPU_CAPABILITY=avx2, MKL_ENABLE_INSTRUCTIONS=AVX2,
    /// ONEDNN_MAX_CPU_ISA=AVX2), so the ratio models an AVX2-only machine; with portable it is
    /// not (PyTorch has no equivalent), and the engine runs ~100× slower (software FMA): use
    /// few --steps
    #[arg(long, value_name = "PATH", value_parser = parse_vector_path)]
    vector_path: Option<VectorPath>,
    /// Time the conditional model of `sbi train --task TASK` instead of the Fig. 5 network:
    /// linear_gaussian (θ ∈ ℝ⁴, condition width k = 4), galton_board (d = 2, k = 10) or sir
    /// (d = 2, k = 30). The real `sbi train` path: its network (MLP 3×128, SiLU, time
    /// embedding 64), its default loss (mix) and Adam, batches drawn from 10⁴ simulations
    /// (simulated once, untimed), at --batch (`sbi train`'s default is 256). PyTorch gets the
    /// same network with k standard-normal condition columns. (The sampler and MMD lines
    /// stay on the Fig. 5 network.)
    #[arg(long, value_parser = choice::<SbiTask>(), conflicts_with = "implicit")]
    task: Option<SbiTask>,
    /// Check the flags, print what would run, and exit
    #[arg(long)]
    dry_run: bool,
}

/// `--vector-path`'s values, widest first.
const VECTOR_PATHS: [(&str, VectorPath); 3] = [
    ("avx512", VectorPath::Avx512),
    ("avx2", VectorPath::Avx2Fma),
    ("portable", VectorPath::Portable),
];

/// Parses `--vector-path`.
fn parse_vector_path(s: &str) -> std::result::Result<VectorPath, String> {
    VECTOR_PATHS
        .iter()
        .find(|(name, _)| *name == s)
        .map(|(_, p)| *p)
        .ok_or_else(|| "must be one of avx512, avx2, portable".to_owned())
}

/// The `--vector-path` name of `path`.
fn path_name(path: VectorPath) -> &'static str {
    VECTOR_PATHS
        .iter()
        .find(|(_, p)| *p == path)
        .map_or("?", |(name, _)| name)
}

/// The environment that caps the PyTorch reference at the engine's vector path, and what to
/// say about it.
fn torch_caps(path: VectorPath) -> (&'static [(&'static str, &'static str)], &'static str) {
    match path {
        VectorPath::Avx512 => (&[], "pytorch not capped"),
        VectorPath::Avx2Fma => (
            &[
                ("ATEN_CPU_CAPABILITY", "avx2"),
                ("MKL_ENABLE_INSTRUCTIONS", "AVX2"),
                ("ONEDNN_MAX_CPU_ISA", "AVX2"),
            ],
            "pytorch capped to AVX2 (ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
             ONEDNN_MAX_CPU_ISA=AVX2)",
        ),
        VectorPath::Portable => (
            &[],
            "pytorch NOT capped (it has no portable path to cap to)",
        ),
    }
}

/// The simulator budget of `--task` (`sbi train`'s default).
const TASK_BUDGET: usize = 10_000;

/// What the engine trains: the Fig. 5 network on the eight-mode mixture, or the conditional
/// model of `sbi train` on an SBI task's simulations.
enum Workload {
    Fig5(GaussianMixture),
    Sbi(Arc<SimulationSet>),
}

impl Workload {
    /// The Fig. 5 workload, or `task`'s on `budget` simulations from seed 0.
    fn new(task: Option<SbiTask>, budget: usize) -> Result<Self> {
        Ok(match task {
            None => Self::Fig5(tsm_targets::named::eight_modes()),
            Some(task) => Self::Sbi(Arc::new(SimulationSet::simulate(task, budget, 0, |_| {})?)),
        })
    }

    /// The configuration of a run of `steps` steps.
    fn config(&self, engine: EngineKind, batch: usize, steps: u64) -> Result<TrainConfig> {
        match self {
            Self::Fig5(target) => config(target, engine, batch, steps),
            Self::Sbi(set) => {
                // `sbi train`'s configuration at its default sizes (`RunSizes::full`).
                let sizes = RunSizes {
                    batch,
                    ..RunSizes::full(steps)
                };
                Ok(TrainConfig {
                    engine,
                    ..sbi_run_config(set, SbiLoss::Mix, &sizes)?
                })
            }
        }
    }

    /// One line on the model, for the header (`budget`: the simulations a timed run draws).
    fn describe(&self, budget: usize) -> Result<String> {
        Ok(match self {
            Self::Fig5(_) => "Fig. 5 network".to_owned(),
            Self::Sbi(set) => {
                let m = self.config(EngineKind::Cpu, 2, 1)?.model.mlp;
                format!(
                    "conditional model of `sbi train --task {}` (d = {}, condition k = {}, MLP \
                     {}×{}, embedding {}, loss mix, {} simulations)",
                    set.task(),
                    m.dim,
                    m.condition_dim,
                    m.depth,
                    m.hidden,
                    m.embedding_dim,
                    budget
                )
            }
        })
    }

    /// A short name of the model, for the ratio line.
    fn short(&self) -> String {
        match self {
            Self::Fig5(_) => "Fig. 5 network".to_owned(),
            Self::Sbi(set) => format!("sbi {} model", set.task()),
        }
    }

    /// tools/train_torch.py's flags for the same network.
    fn torch_args(&self) -> Result<Vec<String>> {
        let m = self.config(EngineKind::Cpu, 2, 1)?.model.mlp;
        Ok(vec![
            "--dim".into(),
            m.dim.to_string(),
            "--cond".into(),
            m.condition_dim.to_string(),
            "--emb".into(),
            m.embedding_dim.to_string(),
        ])
    }
}

/// Steps/s of `t` over `steps` steps after its own `warm` steps.
fn time_trainer<T, S: BatchSource>(mut t: Trainer<'_, T, S>, warm: u64, steps: u64) -> Result<f64> {
    t.run(None, |_, _| {})?; // warm-up
    t.set_total_steps(warm + steps)?;
    let start = Instant::now();
    t.run(None, |_, _| {})?;
    Ok(steps as f64 / start.elapsed().as_secs_f64())
}

/// Batches drawn per second by `t`.
fn sample_batches<T, S: BatchSource>(t: &Trainer<'_, T, S>, steps: u64) -> Result<f64> {
    let start = Instant::now();
    for k in 1..=steps {
        std::hint::black_box(t.batch_of_step(k)?);
    }
    Ok(steps as f64 / start.elapsed().as_secs_f64())
}

/// Forward passes and losses per second of `t` on a fixed batch.
fn forward_batches<T, S: BatchSource>(t: &Trainer<'_, T, S>, steps: u64) -> Result<f64> {
    let b = t.batch_of_step(1)?;
    let start = Instant::now();
    for _ in 0..steps {
        std::hint::black_box(t.loss_on(&b)?);
    }
    Ok(steps as f64 / start.elapsed().as_secs_f64())
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

/// Steps/s of the PyTorch reference step, 2 threads (its own 100 warm-up steps untimed), with
/// `extra` flags and `env` set, and the CPU capability it reports (`cpu=AVX2`, …).
fn pytorch_steps_per_s(
    python: &str,
    batch: usize,
    steps: u64,
    extra: &[String],
    env: &[(&str, &str)],
) -> Result<(f64, String)> {
    let out = std::process::Command::new(python)
        .arg(TORCH_SCRIPT)
        .args(["--threads", "2", "--steps", &steps.to_string()])
        .args(["--batch", &batch.to_string()])
        .args(extra)
        .envs(env.iter().copied())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        anyhow::bail!(
            "the PyTorch reference failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // "torch 2.x threads=2 batch=512 dim=2 cond=0 emb=128 cpu=AVX512: 640.1 steps/s (loss 1.358)"
    let rate = text
        .split_whitespace()
        .zip(text.split_whitespace().skip(1))
        .find_map(|(v, unit)| (unit == "steps/s").then(|| v.parse::<f64>().ok()).flatten())
        .ok_or_else(|| anyhow::anyhow!("no steps/s in the PyTorch output: {text}"))?;
    let cpu = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("cpu="))
        .map_or("unknown", |c| c.trim_end_matches(':'))
        .to_owned();
    Ok((rate, cpu))
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

fn steps_per_s(
    work: &Workload,
    engine: EngineKind,
    threads: usize,
    batch: usize,
    steps: u64,
) -> Result<f64> {
    match work {
        Workload::Fig5(target) => {
            time_trainer(trainer(target, engine, threads, batch, 50)?, 50, steps)
        }
        Workload::Sbi(set) => {
            let cfg = work.config(engine, batch, 50)?;
            let batches = SimulationBatches::new(set.clone(), &cfg)?;
            let options = TrainerOptions::with_threads(threads);
            let t = SbiTrainer::with_source(cfg, batches, &Device::Cpu, options)?;
            time_trainer(t, 50, steps)
        }
    }
}

/// Batches drawn per second (`(t, x_0, ε)` or the simulation rows, targets, weights and the
/// time embedding).
fn sampling_per_s(work: &Workload, batch: usize, steps: u64) -> Result<f64> {
    match work {
        Workload::Fig5(target) => {
            sample_batches(&trainer(target, EngineKind::Cpu, 1, batch, 1)?, steps)
        }
        Workload::Sbi(set) => sample_batches(&sbi_trainer(work, set, batch)?, steps),
    }
}

/// Forward pass and loss of the CPU engine on a fixed batch (no backward, no update).
fn forward_per_s(work: &Workload, batch: usize, steps: u64) -> Result<f64> {
    match work {
        Workload::Fig5(target) => {
            forward_batches(&trainer(target, EngineKind::Cpu, 1, batch, 1)?, steps)
        }
        Workload::Sbi(set) => forward_batches(&sbi_trainer(work, set, batch)?, steps),
    }
}

/// A one-thread CPU-engine trainer of the conditional model on `set`.
fn sbi_trainer(work: &Workload, set: &Arc<SimulationSet>, batch: usize) -> Result<SbiTrainer> {
    let cfg = work.config(EngineKind::Cpu, batch, 1)?;
    let batches = SimulationBatches::new(set.clone(), &cfg)?;
    Ok(SbiTrainer::with_source(
        cfg,
        batches,
        &Device::Cpu,
        TrainerOptions::with_threads(1),
    )?)
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
    // The vector path: capped before anything runs, refused if the CPU lacks it.
    let widest = tsm_nn::vector_path();
    if let Some(path) = args.vector_path {
        tsm_nn::cap_vector_path(path);
        if tsm_nn::vector_path() != path {
            usage_error::<Args>(format!(
                "invalid value '{}' for '--vector-path': this CPU has at most {} (allowed: {})",
                path_name(path),
                path_name(widest),
                VECTOR_PATHS
                    .iter()
                    .filter(|(_, p)| *p <= widest)
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let path = tsm_nn::vector_path();
    // A dry run checks the configuration on a few simulations (as `sbi train --dry-run`).
    let budget = if args.dry_run { 100 } else { TASK_BUDGET };
    let work = Workload::new(args.task, budget)?;
    let flags = [("batch", "--batch"), ("memory", "--batch")];
    match work.config(EngineKind::Cpu, args.batch, args.steps) {
        Ok(cfg) => cfg.validate().map_err(|e| flag_error::<Args>(e, &flags))?,
        // `sbi_config` validates too: its error may name a flag.
        Err(e) => {
            return Err(match e.downcast::<tsm_nn::Error>() {
                Ok(e) => flag_error::<Args>(e, &flags),
                Err(e) => e,
            })
        }
    }
    if let Some(python) = &args.vs_pytorch {
        if let Err(e) = check_pytorch(python) {
            usage_error::<Args>(format!("--vs-pytorch: {e}"));
        }
    }
    if args.dry_run {
        println!(
            "dry run: would time {} rounds of {} steps at batch {}{}, {}, vector path {}",
            args.rounds,
            args.steps,
            args.batch,
            if args.implicit {
                " (implicit losses against DSM)"
            } else {
                ""
            },
            work.describe(TASK_BUDGET)?,
            path_name(path)
        );
        return Ok(());
    }
    if args.implicit {
        return bench_implicit(&args);
    }
    println!(
        "bench_train: {}, batch {}, {} timed steps per variant, {} rounds, RAYON_NUM_THREADS={}, vector path {}",
        work.describe(TASK_BUDGET)?,
        args.batch,
        args.steps,
        args.rounds,
        std::env::var("RAYON_NUM_THREADS").unwrap_or_default(),
        path_name(path)
    );
    let (torch_env, torch_note) = torch_caps(path);
    let torch_args = work.torch_args()?;
    if let Some(python) = &args.vs_pytorch {
        println!(
            "pytorch: {python} {TORCH_SCRIPT} --threads 2 --batch {} {}; {torch_note}",
            args.batch,
            torch_args.join(" ")
        );
    }
    let mut results: Vec<(&str, Vec<f64>)> = vec![
        ("cpu engine, 2 threads", vec![]),
        ("cpu engine, 1 thread", vec![]),
        ("candle autograd", vec![]),
        ("batch sampling only", vec![]),
        ("forward + loss only", vec![]),
        ("pytorch, 2 threads", vec![]),
    ];
    let mut ratios = Vec::new();
    let mut torch_cpu = String::new();
    for round in 0..args.rounds {
        results[0].1.push(steps_per_s(
            &work,
            EngineKind::Cpu,
            2,
            args.batch,
            args.steps,
        )?);
        // A B A B …: PyTorch right after the engine, so that drift hits both alike.
        if let Some(python) = &args.vs_pytorch {
            let (torch, cpu) =
                pytorch_steps_per_s(python, args.batch, args.steps, &torch_args, torch_env)?;
            results[5].1.push(torch);
            ratios.push(results[0].1[round] / torch);
            torch_cpu = cpu;
        }
        results[1].1.push(steps_per_s(
            &work,
            EngineKind::Cpu,
            1,
            args.batch,
            args.steps,
        )?);
        if !args.no_autograd {
            results[2].1.push(steps_per_s(
                &work,
                EngineKind::Candle,
                1,
                args.batch,
                (args.steps / 4).max(1),
            )?);
        }
        results[3]
            .1
            .push(sampling_per_s(&work, args.batch, args.steps)?);
        results[4]
            .1
            .push(forward_per_s(&work, args.batch, args.steps)?);
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
            "cpu engine (2 threads) / pytorch (2 threads), same rounds, {}, vector path {} \
             (pytorch cpu={torch_cpu}): median {:.2}× (min {:.2}, max {:.2}; per round {})",
            work.short(),
            path_name(path),
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
