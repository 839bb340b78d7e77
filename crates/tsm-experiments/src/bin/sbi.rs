//! `cargo xtask sbi`: simulation-based inference with (Latent) Target Score Matching — simulate
//! a gray-box task, train a conditional score network on a simulator budget, and draw
//! posterior samples at observations (Ko & Geffner 2024; `docs/sbi.md`).
//!
//! ```text
//! cargo xtask sbi simulate --task sir --n 1000 --seed 1 --out sims.csv
//! cargo xtask sbi train --task linear_gaussian --loss mix --budget 10000 --out runs/lg
//! cargo xtask sbi sample --checkpoint runs/lg --observation obs.csv --n 2000 --out post.csv
//! ```
//!
//! `train` follows the rules of the `train` binary: a fresh run refuses an `--out` holding a
//! run unless `--force`; `--resume` continues it bit-identically (the simulations are drawn
//! again from the recorded seed and budget), refusing flags that differ from the checkpoint
//! and a checkpoint of another task. Bad input (an unknown task or loss, a budget of zero, an
//! observation of the wrong dimension or with non-integer counts for a count task, a
//! checkpoint of another task) ends with a one-line error and writes nothing. Exit codes: 0
//! success, 1 error, 2 a bad flag value.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args as ClapArgs, CommandFactory, FromArgMatches, Parser, Subcommand};
use plotters::coord::Shift;
use plotters::prelude::*;
use rayon::prelude::*;
use serde::Serialize;
use tsm_core::identity::ScoreIdentity;
use tsm_core::sampler::{Conditioned, Sampler, SamplerConfig};
use tsm_core::target::Sample;
use tsm_core::weighting::Weighting;
use tsm_experiments::cli::{choice, count, flag_error, float, num, usage_error};
use tsm_experiments::init_tracing;
use tsm_experiments::output::{OutputDir, RunTimer};
use tsm_experiments::plot::{plot_err, save_svg_png, Figure, FONT, PALETTE};
use tsm_experiments::plot::{Panel, PanelGrid, Series, Style};
use tsm_experiments::training::{prepare_run_dir, refuse_existing_run, run_logged, tune_cpu};
use tsm_nn::candle::Device;
use tsm_nn::checkpoint;
use tsm_nn::engine::EngineKind;
use tsm_nn::io::write_atomic;
use tsm_nn::loss::{LossConfig, TargetVariances};
use tsm_nn::optim::AdamConfig;
use tsm_nn::sbi::{sbi_config, SbiLoss, SbiTrainer, SimulationBatches, SimulationSet, MAX_BUDGET};
use tsm_nn::score::ModelConditionalScore;
use tsm_nn::{MlpConfig, ModelConfig, TrainConfig, TrainerOptions};
use tsm_targets::sbi::calibration;
use tsm_targets::sbi::{GridPosterior, Posterior, SbiTask, Task, TaskVisitor};

/// Simulation-based inference with latent target score matching: simulate, train a
/// conditional score network, sample posteriors.
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate (θ, x, joint score ∇_θ log p(θ, z, x)) as CSV
    Simulate(SimulateArgs),
    /// Train a conditional score network on a simulator budget
    Train(TrainArgs),
    /// Draw posterior samples at observations, with a corner plot
    Sample(SampleArgs),
    /// Draw from the task's exact reference posterior at observations
    Reference(ReferenceArgs),
    /// Simulation-based calibration of a trained model or of the reference posterior
    Calibrate(CalibrateArgs),
}

#[derive(Debug, ClapArgs)]
struct SimulateArgs {
    /// Task: linear_gaussian, galton_board, sir
    #[arg(long, value_parser = choice::<SbiTask>())]
    task: SbiTask,
    /// Number of simulations, 1 to 10⁸
    #[arg(long, value_parser = count::<usize>(1..=MAX_BUDGET))]
    n: usize,
    /// Seed of the simulations
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output CSV (header theta1…theta_d, x1…x_k, score1…score_d)
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Check the flags, print what would run, and exit without simulating or writing
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, ClapArgs)]
struct TrainArgs {
    /// Task: linear_gaussian, galton_board, sir [default: linear_gaussian; with --resume: the
    /// checkpoint's]
    #[arg(long, value_parser = choice::<SbiTask>())]
    task: Option<SbiTask>,
    /// Loss: dsm (denoising), ltsm (latent TSM, the joint score), mix (w_t* DSM + (1 − w_t*)
    /// LTSM, w_t* = Fσ²/(Fσ² + dα²) with F from the simulations), mix_learned (w(t) DSM +
    /// (1 − w(t)) LTSM, w(t) = sigmoid of a cubic in the log-SNR, learned jointly)
    #[arg(long, value_parser = choice::<SbiLoss>(), default_value = "mix")]
    loss: SbiLoss,
    /// Simulator budget: simulations drawn once from --seed, 1 to 10⁸
    #[arg(long, default_value_t = 10_000, value_parser = count::<u64>(1..=MAX_BUDGET))]
    budget: u64,
    /// Total training steps, 1 to 10⁹ [default: 5000; with --resume: the checkpoint's]
    #[arg(long, value_parser = count::<u64>(1..=TrainConfig::MAX_STEPS))]
    steps: Option<u64>,
    /// Batch size (2 to 2²⁰)
    #[arg(long, default_value_t = 256,
          value_parser = count::<usize>(2..=TrainConfig::MAX_BATCH as u64))]
    batch: usize,
    /// Adam learning rate (> 0)
    #[arg(long, default_value_t = 1e-3, value_parser = float().above(0.0))]
    lr: f64,
    /// EMA decay of the weights, in [0, 1)
    #[arg(long, default_value_t = 0.999, value_parser = float().at_least(0.0).below(1.0))]
    ema_decay: f64,
    /// Hidden width (1 to 2¹⁴)
    #[arg(long, default_value_t = 128,
          value_parser = count::<usize>(1..=TrainConfig::MAX_HIDDEN as u64))]
    hidden: usize,
    /// Number of hidden layers (1 to 1000)
    #[arg(long, default_value_t = 3,
          value_parser = count::<usize>(1..=TrainConfig::MAX_DEPTH as u64))]
    depth: usize,
    /// Time-embedding dimension (even, 2 to 2¹⁴)
    #[arg(long, default_value_t = 64,
          value_parser = count::<usize>(2..=TrainConfig::MAX_EMBEDDING_DIM as u64))]
    embedding_dim: usize,
    /// Seed of the simulations, the initial weights and every batch
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Threads of the CPU engine, 1 to 1024 (the results do not depend on it) [default: the
    /// machine's available parallelism]
    #[arg(long, value_parser = count::<usize>(1..=TrainerOptions::MAX_THREADS as u64))]
    threads: Option<usize>,
    /// Checkpoint every N steps (and at the end; 0: only at the end)
    #[arg(long, default_value_t = 1000)]
    checkpoint_every: u64,
    /// Use candle's autograd engine (slower; the default CPU engine has a hand-written backward)
    #[arg(long)]
    autograd: bool,
    /// Output folder for checkpoints and loss.csv
    #[arg(long, value_name = "DIR", default_value = "results/sbi")]
    out: PathBuf,
    /// Continue the run saved in --out (its configuration; --steps may extend it)
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Start a fresh run even if --out holds one (which is deleted first)
    #[arg(long)]
    force: bool,
    /// Check the flags (and the checkpoint with --resume), print what would run, and exit
    /// without simulating, training or writing anything
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, ClapArgs)]
struct SampleArgs {
    /// Checkpoint folder (written by `sbi train --out DIR`)
    #[arg(long, value_name = "DIR")]
    checkpoint: PathBuf,
    /// Observations: a CSV with header x1,…,x_k and one row per observation
    #[arg(long, value_name = "FILE")]
    observation: PathBuf,
    /// The task the checkpoint must have been trained on (checked) [default: the checkpoint's]
    #[arg(long, value_parser = choice::<SbiTask>())]
    task: Option<SbiTask>,
    /// Posterior samples per observation, 1 to 10⁶
    #[arg(long, default_value_t = 1000, value_parser = count::<usize>(1..=1_000_000))]
    n: usize,
    /// Sampler: em, heun, pc (pc=R,K), ddim (ddim=ETA)
    #[arg(long, value_parser = choice::<Sampler>(), default_value = "em")]
    sampler: Sampler,
    /// Sampler steps, 1 to 10⁵
    #[arg(long, default_value_t = 200, value_parser = count::<usize>(1..=100_000))]
    steps: usize,
    /// Seed of the sampler
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Use the raw weights instead of their EMA
    #[arg(long)]
    no_ema: bool,
    /// Reference posterior to overlay: `exact` (the task's reference posterior, drawn) or a
    /// CSV of draws with header theta1,…,theta_d (one observation only)
    #[arg(long, value_name = "FILE")]
    reference: Option<PathBuf>,
    /// Output CSV (header theta1,…,theta_d), with FILE.svg and FILE.png beside it; several
    /// observations write FILE_1.csv, FILE_2.csv, …
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Check the flags, the checkpoint and the observations, print what would run, and exit
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, ClapArgs)]
struct ReferenceArgs {
    /// Task: linear_gaussian (exact Gaussian posterior), galton_board (600 × 600 grid), sir
    /// (forward algorithm on a coarse-to-fine grid; seconds per observation)
    #[arg(long, value_parser = choice::<SbiTask>())]
    task: SbiTask,
    /// Observations: a CSV with header x1,…,x_k and one row per observation
    #[arg(long, value_name = "FILE")]
    observation: PathBuf,
    /// Draws per observation, 1 to 10⁷
    #[arg(long, default_value_t = 10_000, value_parser = count::<usize>(1..=10_000_000))]
    n: usize,
    /// Seed of the draws (observation i uses the stream (seed, i))
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output CSV (header theta1,…,theta_d) and FILE's stem .json (the posterior's kind,
    /// mean, sd, grid and outer-ring mass per observation); several observations write
    /// FILE_1.csv, FILE_2.csv, … and one JSON
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Check the flags and the observations, print what would run, and exit
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, ClapArgs)]
struct CalibrateArgs {
    /// Checkpoint folder of the model to calibrate (written by `sbi train --out DIR`)
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "reference",
        conflicts_with = "reference"
    )]
    checkpoint: Option<PathBuf>,
    /// Calibrate the task's exact reference posterior instead of a model (needs --task)
    #[arg(long, requires = "task")]
    reference: bool,
    /// With --reference: multiply the draws' distance from the posterior mean by F (F < 1
    /// over-narrow, F > 1 over-wide): a deliberately wrong posterior, to see that the check
    /// rejects one (0.01 to 100)
    #[arg(long, value_name = "F", default_value_t = 1.0, requires = "reference",
          value_parser = float().at_least(0.01).at_most(100.0))]
    reference_scale: f64,
    /// Task: linear_gaussian, galton_board, sir (with --checkpoint: checked against it)
    #[arg(long, value_parser = choice::<SbiTask>())]
    task: Option<SbiTask>,
    /// Prior-predictive pairs (θ*, x), 5 to 10⁵
    #[arg(long, default_value_t = 200, value_parser = count::<usize>(5..=100_000))]
    pairs: usize,
    /// Posterior draws L per pair (ranks run over 0…L), 1 to 10⁵
    #[arg(long, default_value_t = 99, value_parser = count::<usize>(1..=100_000))]
    draws: usize,
    /// Bins of the rank histogram, 1 to 1000 (at most L + 1)
    #[arg(long, default_value_t = 10, value_parser = count::<usize>(1..=1000))]
    bins: usize,
    /// Significance level of the uniformity test: calibrated when every coordinate's
    /// Kolmogorov–Smirnov p-value is at least alpha/d (Bonferroni over the d coordinates)
    #[arg(long, default_value_t = 1e-3, value_parser = float().above(0.0).below(1.0))]
    alpha: f64,
    /// Sampler of the model's posterior: em, heun, pc (pc=R,K), ddim (ddim=ETA)
    #[arg(long, value_parser = choice::<Sampler>(), default_value = "em")]
    sampler: Sampler,
    /// Sampler steps, 1 to 10⁵
    #[arg(long, default_value_t = 200, value_parser = count::<usize>(1..=100_000))]
    steps: usize,
    /// Use the model's raw weights instead of their EMA
    #[arg(long)]
    no_ema: bool,
    /// Seed of the pairs, the posterior draws and the ranks' tie-breaking
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder: calibrate.csv (ranks), calibrate.svg/.png (rank histograms),
    /// calibrate.json (the test per coordinate)
    #[arg(long, value_name = "DIR", default_value = "results/sbi_calibrate")]
    out: PathBuf,
    /// Check the flags (and the checkpoint), print what would run, and exit
    #[arg(long)]
    dry_run: bool,
}

/// Library configuration fields and the flags that set them.
const FLAGS: &[(&str, &str)] = &[
    ("batch", "--batch"),
    ("steps", "--steps"),
    ("adam.lr", "--lr"),
    ("adam.ema_decay", "--ema-decay"),
    ("model.mlp.hidden", "--hidden"),
    ("model.mlp.depth", "--depth"),
    ("model.mlp.embedding_dim", "--embedding-dim"),
    ("memory", "--batch/--hidden/--depth/--embedding-dim"),
    ("simulation.budget", "--budget"),
    ("threads", "--threads"),
];

/// The most sampler work: points × steps × score evaluations per step.
const MAX_WORK: u128 = 10_000_000_000;

/// The most memory the simulations may take (8 GiB).
const MAX_SIMULATION_BYTES: u64 = 8 << 30;

fn main() -> std::process::ExitCode {
    tune_cpu();
    init_tracing();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let sub = matches.subcommand().map(|(_, m)| m);
    let result = match cli.command {
        Command::Simulate(args) => simulate(&args),
        Command::Train(args) => train(&args, sub.unwrap_or(&matches)),
        Command::Sample(args) => sample(&args),
        Command::Reference(args) => reference(&args),
        Command::Calibrate(args) => calibrate(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: the context and its causes joined by ": ".
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Bytes that `n` simulations of `task` take (θ, x and the joint score in `f64`).
fn simulation_bytes(task: SbiTask, n: u64) -> u64 {
    n.saturating_mul((2 * task.dim() + task.observation_dim()) as u64 * 8)
}

fn check_budget_memory(task: SbiTask, n: u64, flag: &str) {
    let bytes = simulation_bytes(task, n);
    if bytes > MAX_SIMULATION_BYTES {
        usage_error::<Cli>(format!(
            "invalid value '{n}' for '{flag}': {n} simulations of {task} take {:.1} GiB, more \
             than {} GiB",
            bytes as f64 / f64::from(1u32 << 30),
            MAX_SIMULATION_BYTES >> 30
        ));
    }
}

/// A progress bar for `n` simulations.
fn simulation_bar(n: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(n);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {pos}/{len} simulations, {per_sec} (eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// `n` simulations with a progress bar.
fn simulate_set(task: SbiTask, n: usize, seed: u64) -> Result<SimulationSet> {
    let bar = simulation_bar(n as u64);
    let set = SimulationSet::simulate(task, n, seed, |done| bar.set_position(done as u64));
    bar.finish_and_clear();
    Ok(set?)
}

fn header(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}{i}")).collect()
}

fn simulate(args: &SimulateArgs) -> Result<()> {
    check_budget_memory(args.task, args.n as u64, "--n");
    check_out_file(&args.out)?;
    if args.dry_run {
        println!(
            "dry run: would simulate {} draws of {} from seed {} into {}",
            args.n,
            args.task,
            args.seed,
            args.out.display()
        );
        return Ok(());
    }
    let set = simulate_set(args.task, args.n, args.seed)?;
    let (d, k) = (args.task.dim(), args.task.observation_dim());
    let mut text = String::new();
    let mut cols = header("theta", d);
    cols.extend(header("x", k));
    cols.extend(header("score", d));
    text.push_str(&cols.join(","));
    text.push('\n');
    let (th, x, g) = (set.theta(), set.observations(), set.joint_scores());
    for i in 0..set.len() {
        let row: Vec<String> = th[i * d..(i + 1) * d]
            .iter()
            .chain(&x[i * k..(i + 1) * k])
            .chain(&g[i * d..(i + 1) * d])
            .map(|v| v.to_string())
            .collect();
        text.push_str(&row.join(","));
        text.push('\n');
    }
    write_atomic(&args.out, text.as_bytes())
        .with_context(|| format!("--out {}", args.out.display()))?;
    println!(
        "wrote {} simulations of {} to {}",
        set.len(),
        args.task,
        args.out.display()
    );
    Ok(())
}

/// An output file must be a file name in an existing (or creatable) folder, not a folder.
fn check_out_file(out: &Path) -> Result<()> {
    let text = out.to_string_lossy();
    if out.is_dir() || text.ends_with('/') || out.file_name().is_none() {
        usage_error::<Cli>(format!(
            "invalid value '{}' for '--out': give a file name, not a folder",
            out.display()
        ));
    }
    Ok(())
}

fn train(args: &TrainArgs, matches: &ArgMatches) -> Result<()> {
    // Both engines run on the CPU here (the candle one with --autograd).
    let device = Device::Cpu;
    let options = args
        .threads
        .map_or_else(TrainerOptions::default, TrainerOptions::with_threads);
    let engine = if args.autograd {
        EngineKind::Candle
    } else {
        EngineKind::Cpu
    };
    let out = &args.out;
    // Everything is checked before anything is written (or simulated, in a dry run).
    let (cfg, resuming) = if args.resume {
        if !out.is_dir() {
            bail!(
                "--resume: {} is not a folder (nothing to resume; drop --resume to start a run)",
                out.display()
            );
        }
        let record = checkpoint::read_record(out)
            .with_context(|| format!("--resume from {}", out.display()))?;
        let Some(sim) = record.config.simulation else {
            bail!(
                "--resume: the run in {} is not a simulation-based run (train it with `train`)",
                out.display()
            );
        };
        if let Some(task) = args.task.filter(|t| *t != sim.task) {
            bail!(
                "--task {task}: the checkpoint in {} is of another task ({})",
                out.display(),
                sim.task
            );
        }
        let conflicts = conflicts(args, matches, &record.config);
        if !conflicts.is_empty() {
            usage_error::<Cli>(format!(
                "--resume continues the run in {} as it was configured; these flags differ \
                 from its checkpoint: {} (drop them, or start a new run in another folder)",
                out.display(),
                conflicts.join(", ")
            ));
        }
        let mut cfg = record.config.clone();
        let steps = args.steps.unwrap_or(cfg.steps);
        if steps < record.step {
            usage_error::<Cli>(format!(
                "invalid value '{steps}' for '--steps': the checkpoint in {} is already at step {}",
                out.display(),
                record.step
            ));
        }
        cfg.steps = steps;
        if matches.value_source("checkpoint_every") == Some(ValueSource::CommandLine) {
            cfg.checkpoint_every = args.checkpoint_every;
        }
        (cfg, Some(record.step))
    } else {
        refuse_existing_run(out, args.force)?;
        let task = args.task.unwrap_or(SbiTask::LinearGaussian);
        check_budget_memory(task, args.budget, "--budget");
        // The configuration is resolved on the real set; a dry run checks it on a few
        // simulations (the flags' checks do not depend on the set).
        let n = if args.dry_run {
            args.budget.min(100)
        } else {
            args.budget
        };
        let set = if args.dry_run {
            SimulationSet::simulate(task, n as usize, args.seed, |_| {})?
        } else {
            simulate_set(task, n as usize, args.seed)?
        };
        let cfg = sbi_config(&set, args.loss, base_config(args, engine)?)
            .map_err(|e| flag_error::<Cli>(e, FLAGS))
            .context("the configuration")?;
        if !args.dry_run {
            return run_training(args, cfg, Some(Arc::new(set)), None, &device, options);
        }
        (cfg, None)
    };
    options
        .validate()
        .map_err(|e| flag_error::<Cli>(e, FLAGS))?;
    cfg.validate().map_err(|e| flag_error::<Cli>(e, FLAGS))?;
    if args.dry_run {
        let sim = cfg.simulation.context("an SBI configuration")?;
        println!(
            "dry run: would train {} ({}) on {} with {} simulations from step {} to {} (batch \
             {}, lr {}, {} parameters) into {}{}",
            sim.loss,
            cfg.loss.identity,
            sim.task,
            sim.budget,
            resuming.unwrap_or(0),
            cfg.steps,
            cfg.batch,
            num(cfg.adam.lr),
            cfg.model.mlp.n_parameters(),
            out.display(),
            if resuming.is_some() {
                " (resuming)"
            } else if args.force {
                " (replacing the run there)"
            } else {
                ""
            }
        );
        return Ok(());
    }
    run_training(args, cfg, None, resuming, &device, options)
}

/// The flags' part of the configuration (the task's widths, the loss's identity and the
/// standardisation are filled in by [`sbi_config`]).
fn base_config(args: &TrainArgs, engine: EngineKind) -> Result<TrainConfig> {
    let loss = LossConfig::new(
        ScoreIdentity::Dsi,
        Weighting::Uniform,
        &TargetVariances::new(1.0, None)?,
    )?;
    Ok(TrainConfig {
        model: ModelConfig {
            mlp: MlpConfig {
                hidden: args.hidden,
                depth: args.depth,
                embedding_dim: args.embedding_dim,
                ..MlpConfig::default()
            },
            ..ModelConfig::default()
        },
        adam: AdamConfig {
            lr: args.lr,
            ema_decay: args.ema_decay,
            ..AdamConfig::default()
        },
        batch: args.batch,
        steps: args.steps.unwrap_or(DEFAULT_STEPS),
        seed: args.seed,
        checkpoint_every: args.checkpoint_every,
        engine,
        ..TrainConfig::new("", ModelConfig::default(), loss)
    })
}

/// The default of `--steps` for a fresh run.
const DEFAULT_STEPS: u64 = 5000;

/// Trains `cfg` into `--out`: a fresh run on `set`, or the run resumed at step `resumed`
/// (its set simulated again from the record).
fn run_training(
    args: &TrainArgs,
    cfg: TrainConfig,
    set: Option<Arc<SimulationSet>>,
    resumed: Option<u64>,
    device: &Device,
    options: TrainerOptions,
) -> Result<()> {
    let out = &args.out;
    let sim = cfg.simulation.context("an SBI configuration")?;
    let set = match set {
        Some(set) => set,
        None => Arc::new(simulate_set(sim.task, sim.budget as usize, cfg.seed)?),
    };
    let batches = SimulationBatches::new(set, &cfg)?;
    let mut trainer = match resumed {
        Some(_) => {
            let mut t = SbiTrainer::resume_with_source(out, batches, device, options)
                .with_context(|| format!("--resume from {}", out.display()))?;
            t.set_total_steps(cfg.steps)
                .map_err(|e| flag_error::<Cli>(e, FLAGS))?;
            t.set_checkpoint_every(cfg.checkpoint_every);
            t
        }
        None => SbiTrainer::with_source(cfg, batches, device, options)
            .map_err(|e| flag_error::<Cli>(e, FLAGS))?,
    };
    let from = trainer.step();
    let loss_path = prepare_run_dir(out, resumed.map(|_| from), args.force)?;
    let to = trainer.config().steps;
    if from == to {
        println!(
            "the run in {} is already at step {to} of {to}; nothing to do",
            out.display()
        );
        return Ok(());
    }
    run_logged(&mut trainer, out, &loss_path)?;
    println!(
        "trained {} on {} ({} simulations) to step {} into {}",
        sim.loss,
        sim.task,
        sim.budget,
        trainer.step(),
        out.display()
    );
    Ok(())
}

/// The flags given on the command line whose value differs from the checkpoint's.
fn conflicts(args: &TrainArgs, matches: &ArgMatches, cfg: &TrainConfig) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |id: &str, ours: String, theirs: String| {
        if matches.value_source(id) == Some(ValueSource::CommandLine) && ours != theirs {
            out.push(format!(
                "--{} {ours} (checkpoint: {theirs})",
                id.replace('_', "-")
            ));
        }
    };
    if let Some(sim) = &cfg.simulation {
        check("loss", args.loss.to_string(), sim.loss.to_string());
        check("budget", args.budget.to_string(), sim.budget.to_string());
    }
    let mlp = &cfg.model.mlp;
    for (id, ours, theirs) in [
        ("batch", args.batch, cfg.batch),
        ("hidden", args.hidden, mlp.hidden),
        ("depth", args.depth, mlp.depth),
        ("embedding_dim", args.embedding_dim, mlp.embedding_dim),
    ] {
        check(id, ours.to_string(), theirs.to_string());
    }
    check("lr", num(args.lr), num(cfg.adam.lr));
    check("ema_decay", num(args.ema_decay), num(cfg.adam.ema_decay));
    check("seed", args.seed.to_string(), cfg.seed.to_string());
    let engine = if args.autograd {
        EngineKind::Candle
    } else {
        EngineKind::Cpu
    };
    if engine != cfg.engine {
        check(
            "autograd",
            format!("{engine:?}").to_lowercase(),
            format!("{:?}", cfg.engine).to_lowercase(),
        );
    }
    out
}

/// Reads a CSV of numbers whose header is `prefix1,…,prefix{width}`; returns the rows.
fn read_rows(path: &Path, flag: &str, prefix: &str, width: usize) -> Result<Vec<Vec<f64>>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{flag} {}: cannot read", path.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let head = lines
        .next()
        .with_context(|| format!("{flag} {}: empty file", path.display()))?;
    let want = header(prefix, width).join(",");
    let got: Vec<&str> = head.split(',').map(str::trim).collect();
    if got.join(",") != want {
        bail!(
            "{flag} {}: the header has {} columns `{}`, expected {width}: `{want}`",
            path.display(),
            got.len(),
            head.trim()
        );
    }
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let row = line
            .split(',')
            .map(|v| v.trim().parse::<f64>())
            .collect::<Result<Vec<f64>, _>>()
            .with_context(|| format!("{flag} {}: row {} is not numbers", path.display(), i + 1))?;
        if row.len() != width {
            bail!(
                "{flag} {}: row {} has {} values, expected {width}",
                path.display(),
                i + 1,
                row.len()
            );
        }
        rows.push(row);
    }
    if rows.is_empty() {
        bail!("{flag} {}: no rows after the header", path.display());
    }
    Ok(rows)
}

/// The output files of observation `i` (1-based) of `total`: CSV path and plot stem.
fn sample_outputs(out: &Path, i: usize, total: usize) -> (PathBuf, PathBuf, String) {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_owned);
    let stem = out.file_stem().map_or_else(
        || "posterior".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    );
    let stem = if total > 1 {
        format!("{stem}_{i}")
    } else {
        stem
    };
    (dir.join(format!("{stem}.csv")), dir, stem)
}

fn sample(args: &SampleArgs) -> Result<()> {
    check_out_file(&args.out)?;
    let evaluations: u128 = match args.sampler {
        Sampler::EulerMaruyama | Sampler::Ddim { .. } => 1,
        Sampler::Heun => 2,
        Sampler::PredictorCorrector {
            corrector_steps, ..
        } => corrector_steps as u128 + 1,
        _ => 2,
    };
    let work = args.n as u128 * args.steps as u128 * evaluations;
    if work > MAX_WORK {
        usage_error::<Cli>(format!(
            "--n {} × --steps {} ({evaluations} network evaluations per point and step) is \
             {work:.1e} point-evaluations, more than {MAX_WORK:.0e}; lower --n or --steps",
            args.n, args.steps
        ));
    }
    let (record, state) = checkpoint::load(&args.checkpoint).context("--checkpoint")?;
    let cfg = &record.config;
    let Some(sim) = cfg.simulation else {
        bail!(
            "--checkpoint {}: not a simulation-based run (its target is {}; sample it with \
             `sample`)",
            args.checkpoint.display(),
            cfg.target
        );
    };
    let task = sim.task;
    if let Some(wanted) = args.task.filter(|t| *t != task) {
        bail!(
            "--checkpoint {}: trained on the task {task}, not {wanted}",
            args.checkpoint.display()
        );
    }
    let d = task.dim();
    let observations = read_observations(task, &args.observation, "--observation")?;
    let exact = args
        .reference
        .as_deref()
        .is_some_and(|p| p.as_os_str() == "exact");
    let reference_file = match &args.reference {
        Some(path) if !exact => {
            if observations.len() > 1 {
                bail!(
                    "--reference {}: a file of draws fits one observation, and --observation \
                     has {} (use --reference exact)",
                    path.display(),
                    observations.len()
                );
            }
            Some(read_rows(path, "--reference", "theta", d)?.concat())
        }
        _ => None,
    };
    let total = observations.len();
    for i in 1..=total {
        let (csv, _, _) = sample_outputs(&args.out, i, total);
        if same_file(&csv, &args.observation) || same_file(&csv, &args.checkpoint) {
            bail!("--out {}: would overwrite an input", csv.display());
        }
    }
    if args.dry_run {
        println!(
            "dry run: would draw {} posterior samples of {task} for each of {total} \
             observations with {} ({} steps) from {} (step {}) into {}",
            args.n,
            args.sampler,
            args.steps,
            args.checkpoint.display(),
            record.step,
            args.out.display()
        );
        return Ok(());
    }
    let weights = if args.no_ema {
        state.params()
    } else {
        state.ema()
    };
    let model = tsm_nn::train::model_from_named(&cfg.model, weights, &Device::Cpu)?;
    let sampler = SamplerConfig {
        sampler: args.sampler,
        steps: args.steps,
        data_variance: cfg.loss.sigma_data_sq,
        ..SamplerConfig::default()
    };
    // Every reference posterior first (a grid one can fail), then the samples.
    let references = observations
        .iter()
        .map(|x| -> Result<Option<Vec<f64>>> {
            if exact {
                let posterior = task.reference_posterior(x).context("--reference exact")?;
                let mut rng = tsm_core::rng::stream(args.seed, u64::MAX);
                let mut draws = vec![0.0; args.n * d];
                for row in draws.chunks_exact_mut(d) {
                    posterior.sample_into(&mut rng, row);
                }
                Ok(Some(draws))
            } else {
                Ok(reference_file.clone())
            }
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(dir) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--out: creating {}", dir.display()))?;
    }
    for (i, (x, reference)) in observations.iter().zip(&references).enumerate() {
        let score = ModelConditionalScore::new(&model, &Device::Cpu)?;
        let mut posterior = Conditioned::broadcast(score, x.clone())?;
        let mut rng = tsm_core::rng::stream(args.seed, i as u64);
        let draws = sampler.sample(&mut posterior, model.schedule(), args.n, &mut rng)?;
        let (csv, dir, stem) = sample_outputs(&args.out, i + 1, total);
        let mut text = header("theta", d).join(",");
        text.push('\n');
        for row in draws.chunks_exact(d) {
            let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
            text.push_str(&cells.join(","));
            text.push('\n');
        }
        write_atomic(&csv, text.as_bytes()).with_context(|| format!("--out {}", csv.display()))?;
        let plot = Corner {
            title: format!("{task}: posterior at observation {} ({})", i + 1, sim.loss),
            d,
            draws: &draws,
            reference: reference.as_deref(),
        };
        save_svg_png(
            &dir,
            &stem,
            (220 * d as u32 + 80, 220 * d as u32 + 60),
            &plot,
        )?;
        println!("wrote {} and {stem}.svg/.png", csv.display());
    }
    Ok(())
}

/// Whether `a` and `b` name the same existing file (`./obs.csv` and `obs.csv` do).
fn same_file(a: &Path, b: &Path) -> bool {
    matches!(
        (std::fs::canonicalize(a), std::fs::canonicalize(b)),
        (Ok(a), Ok(b)) if a == b
    )
}

/// Reads the observations of `task` from `path` (flag `flag`) and checks every row.
fn read_observations(task: SbiTask, path: &Path, flag: &str) -> Result<Vec<Vec<f64>>> {
    let observations = read_rows(path, flag, "x", task.observation_dim())?;
    for (i, x) in observations.iter().enumerate() {
        task.check_observation(x).with_context(|| {
            format!(
                "{flag} {}: row {} is not an observation of {task}",
                path.display(),
                i + 1
            )
        })?;
    }
    Ok(observations)
}

/// The reference posterior of `task` at each observation, computed in parallel (a `sir` grid
/// takes seconds), with the seconds each took; one [`GaltonBoard`](tsm_targets::sbi::GaltonBoard)
/// serves every row (it tabulates its bin laws once).
fn reference_posteriors(
    task: SbiTask,
    observations: &[Vec<f64>],
) -> Vec<tsm_targets::Result<(Posterior, f64)>> {
    struct References<'a>(&'a [Vec<f64>]);
    impl TaskVisitor for References<'_> {
        type Output = Vec<tsm_targets::Result<(Posterior, f64)>>;
        fn visit<T: Task>(self, task: &T) -> Self::Output {
            self.0
                .par_iter()
                .map(|x| {
                    let start = std::time::Instant::now();
                    let posterior = task.reference_posterior(x)?;
                    Ok((posterior, start.elapsed().as_secs_f64()))
                })
                .collect()
        }
    }
    task.visit(References(observations))
}

/// What `sbi reference` records about one observation's posterior.
#[derive(Debug, Serialize)]
struct ReferenceInfo {
    row: usize,
    file: String,
    /// `gaussian` or `grid`.
    kind: &'static str,
    mean: Vec<f64>,
    sd: Vec<f64>,
    /// Grid posteriors: the box's corners, cells per side, and the outer ring's mass.
    grid_lo: Option<[f64; 2]>,
    grid_hi: Option<[f64; 2]>,
    grid_cells: Option<[usize; 2]>,
    ring_mass: Option<f64>,
    seconds: f64,
}

#[derive(Debug, Serialize)]
struct ReferenceParams {
    task: String,
    observation: String,
    n: usize,
    max_ring_mass: f64,
    observations: Vec<ReferenceInfo>,
}

fn reference(args: &ReferenceArgs) -> Result<()> {
    check_out_file(&args.out)?;
    let timer = RunTimer::start();
    let task = args.task;
    let d = task.dim();
    let observations = read_observations(task, &args.observation, "--observation")?;
    let total = observations.len();
    let (_, dir, stem) = sample_outputs(&args.out, 1, 1);
    let json = dir.join(format!("{stem}.json"));
    for i in 1..=total {
        let (csv, _, _) = sample_outputs(&args.out, i, total);
        if same_file(&csv, &args.observation) || same_file(&json, &args.observation) {
            bail!("--out {}: would overwrite an input", csv.display());
        }
    }
    if args.dry_run {
        println!(
            "dry run: would draw {} reference posterior samples of {task} for each of {total} \
             observations into {}",
            args.n,
            args.out.display()
        );
        return Ok(());
    }
    // Every posterior first (a grid one can fail its outer-ring check), then the files.
    let mut posteriors = Vec::with_capacity(total);
    for (i, p) in reference_posteriors(task, &observations)
        .into_iter()
        .enumerate()
    {
        posteriors.push(p.with_context(|| {
            format!(
                "--observation {}: row {}: reference posterior",
                args.observation.display(),
                i + 1
            )
        })?);
    }
    if !dir.as_os_str().is_empty() {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("--out: creating {}", dir.display()))?;
    }
    let mut infos = Vec::with_capacity(total);
    for (i, (posterior, seconds)) in posteriors.iter().enumerate() {
        let mut rng = tsm_core::rng::stream(args.seed, i as u64);
        let draws = posterior.sample_n(&mut rng, args.n);
        let (csv, _, _) = sample_outputs(&args.out, i + 1, total);
        write_atomic(&csv, theta_csv(&draws, d).as_bytes())
            .with_context(|| format!("--out {}", csv.display()))?;
        let grid = match posterior {
            Posterior::Grid(g) => Some(g),
            _ => None,
        };
        infos.push(ReferenceInfo {
            row: i + 1,
            file: csv
                .file_name()
                .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
            kind: if grid.is_some() { "grid" } else { "gaussian" },
            mean: posterior.mean(),
            sd: posterior.sd(),
            grid_lo: grid.map(GridPosterior::lo),
            grid_hi: grid.map(GridPosterior::hi),
            grid_cells: grid.map(GridPosterior::shape),
            ring_mass: grid.map(GridPosterior::ring_mass),
            seconds: *seconds,
        });
        println!("wrote {}", csv.display());
    }
    let files: Vec<String> = infos.iter().map(|r| r.file.clone()).collect();
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    let record = timer.record(
        "sbi_reference",
        args.seed,
        false,
        ReferenceParams {
            task: task.to_string(),
            observation: args.observation.display().to_string(),
            n: args.n,
            max_ring_mass: GridPosterior::MAX_RING_MASS,
            observations: infos,
        },
        &files,
    );
    let mut bytes = serde_json::to_vec_pretty(&record)?;
    bytes.push(b'\n');
    write_atomic(&json, &bytes).with_context(|| format!("--out {}", json.display()))?;
    println!("wrote {}", json.display());
    Ok(())
}

/// One row of `calibrate.csv`.
#[derive(Debug, Serialize)]
struct RankRow {
    pair: usize,
    coordinate: usize,
    theta_star: f64,
    rank: usize,
    normalised_rank: f64,
}

/// A prior-predictive pair left out of the calibration, and why.
#[derive(Debug, Serialize)]
struct SkippedPair {
    pair: usize,
    reason: String,
}

/// The uniformity test of one coordinate's ranks.
#[derive(Debug, Serialize)]
struct CoordinateTest {
    coordinate: usize,
    ks_statistic: f64,
    p_value: f64,
    histogram: Vec<usize>,
}

#[derive(Debug, Serialize)]
struct CalibrateParams {
    task: String,
    posterior: String,
    reference_scale: Option<f64>,
    /// Pairs asked for; `skipped` of them had no reference posterior and are left out.
    pairs: usize,
    skipped: Vec<SkippedPair>,
    draws: usize,
    bins: usize,
    alpha: f64,
    sampler: Option<String>,
    steps: Option<usize>,
    coordinates: Vec<CoordinateTest>,
    calibrated: bool,
}

fn calibrate(args: &CalibrateArgs) -> Result<()> {
    let timer = RunTimer::start();
    if args.bins > args.draws + 1 {
        usage_error::<Cli>(format!(
            "invalid value '{}' for '--bins': at most --draws + 1 = {}",
            args.bins,
            args.draws + 1
        ));
    }
    let total = args.pairs as u128 * args.draws as u128;
    if total > MAX_WORK / 1000 {
        usage_error::<Cli>(format!(
            "--pairs {} × --draws {} is {total:.1e} posterior draws, more than {:.0e}",
            args.pairs,
            args.draws,
            MAX_WORK / 1000
        ));
    }
    // The model (or None for the reference posterior), and the task.
    let loaded = match &args.checkpoint {
        Some(dir) => {
            let (record, state) = checkpoint::load(dir).context("--checkpoint")?;
            let Some(sim) = record.config.simulation else {
                bail!(
                    "--checkpoint {}: not a simulation-based run (its target is {})",
                    dir.display(),
                    record.config.target
                );
            };
            if let Some(wanted) = args.task.filter(|t| *t != sim.task) {
                bail!(
                    "--checkpoint {}: trained on the task {}, not {wanted}",
                    dir.display(),
                    sim.task
                );
            }
            let work = total * args.steps as u128;
            if work > MAX_WORK {
                usage_error::<Cli>(format!(
                    "--pairs × --draws × --steps is {work:.1e} point-steps, more than \
                     {MAX_WORK:.0e}; lower one of them"
                ));
            }
            Some((record, state, sim.task))
        }
        None => None,
    };
    let task = match (&loaded, args.task) {
        (Some((_, _, task)), _) => *task,
        (None, Some(task)) => task,
        (None, None) => bail!("--reference needs --task"),
    };
    let (d, k) = (task.dim(), task.observation_dim());
    let posterior_name = match &args.checkpoint {
        Some(dir) => format!("model in {}", dir.display()),
        None if args.reference_scale != 1.0 => {
            format!("reference (spread × {})", num(args.reference_scale))
        }
        None => "reference".to_owned(),
    };
    if args.dry_run {
        println!(
            "dry run: would calibrate the {posterior_name} posterior of {task} on {} \
             prior-predictive pairs with {} draws each into {}",
            args.pairs,
            args.draws,
            args.out.display()
        );
        return Ok(());
    }
    let out = OutputDir::create(&args.out)?;
    let pairs = simulate_set(task, args.pairs, args.seed)?;
    let (theta_star, x) = (pairs.theta(), pairs.observations());
    let l = args.draws;
    // Posterior draws, [pairs · L, d]: pair i's are rows i L … (i + 1) L − 1.
    // Pairs whose reference posterior is refused (a grid that would cut off mass) are
    // skipped: the choice depends on x alone, and θ* | x is the posterior whatever set of x
    // is kept, so the ranks of the kept pairs are still uniform.
    let mut kept: Vec<usize> = (0..args.pairs).collect();
    let mut skipped = Vec::new();
    let draws = match &loaded {
        None => {
            let rows: Vec<Vec<f64>> = x.chunks_exact(k).map(<[f64]>::to_vec).collect();
            let mut draws = Vec::with_capacity(args.pairs * l * d);
            kept.clear();
            for (i, p) in reference_posteriors(task, &rows).into_iter().enumerate() {
                let posterior = match p {
                    Ok((posterior, _)) => posterior,
                    Err(e) => {
                        eprintln!(
                            "warning: pair {} skipped: its reference posterior: {e}",
                            i + 1
                        );
                        skipped.push(SkippedPair {
                            pair: i + 1,
                            reason: e.to_string(),
                        });
                        continue;
                    }
                };
                kept.push(i);
                let mut block =
                    posterior.sample_n(&mut tsm_core::rng::stream(args.seed, i as u64), l);
                if args.reference_scale != 1.0 {
                    let mean = posterior.mean();
                    for row in block.chunks_exact_mut(d) {
                        for (v, m) in row.iter_mut().zip(&mean) {
                            *v = m + args.reference_scale * (*v - m);
                        }
                    }
                }
                draws.extend(block);
            }
            draws
        }
        Some((record, state, _)) => {
            let cfg = &record.config;
            let weights = if args.no_ema {
                state.params()
            } else {
                state.ema()
            };
            let model = tsm_nn::train::model_from_named(&cfg.model, weights, &Device::Cpu)?;
            let conditions: Vec<f64> = x
                .chunks_exact(k)
                .flat_map(|row| std::iter::repeat_n(row, l).flatten().copied())
                .collect();
            let score = ModelConditionalScore::new(&model, &Device::Cpu)?;
            let mut posterior = Conditioned::per_point(score, conditions)?;
            let sampler = SamplerConfig {
                sampler: args.sampler,
                steps: args.steps,
                data_variance: cfg.loss.sigma_data_sq,
                ..SamplerConfig::default()
            };
            let mut rng = tsm_core::rng::stream(args.seed, 0);
            sampler.sample(&mut posterior, model.schedule(), args.pairs * l, &mut rng)?
        }
    };
    // Ranks of θ*_j among the draws, randomised ranks, and a KS test per coordinate.
    let mut jitter = tsm_core::rng::stream(args.seed, u64::MAX);
    let mut rows = Vec::with_capacity(kept.len() * d);
    let mut ranks = vec![Vec::with_capacity(kept.len()); d];
    let mut uniforms = vec![Vec::with_capacity(kept.len()); d];
    if kept.len() < 5 {
        bail!(
            "only {} of {} pairs have a reference posterior (the uniformity test needs 5)",
            kept.len(),
            args.pairs
        );
    }
    for (slot, &i) in kept.iter().enumerate() {
        let block = &draws[slot * l * d..(slot + 1) * l * d];
        for j in 0..d {
            let star = theta_star[i * d + j];
            let r = calibration::rank(star, block.iter().skip(j).step_by(d).copied());
            let u = calibration::normalised_rank(r, l, &mut jitter);
            ranks[j].push(r);
            uniforms[j].push(u);
            rows.push(RankRow {
                pair: i + 1,
                coordinate: j + 1,
                theta_star: star,
                rank: r,
                normalised_rank: u,
            });
        }
    }
    let mut coordinates = Vec::with_capacity(d);
    for j in 0..d {
        let test = calibration::ks_uniform(&uniforms[j])?;
        coordinates.push(CoordinateTest {
            coordinate: j + 1,
            ks_statistic: test.statistic,
            p_value: test.p_value,
            histogram: calibration::rank_histogram(&ranks[j], l, args.bins),
        });
    }
    let level = args.alpha / d as f64;
    let calibrated = coordinates.iter().all(|c| c.p_value >= level);
    out.write_csv("calibrate.csv", &rows)?;
    let plot = rank_plot(task, &posterior_name, &coordinates, kept.len(), args.bins);
    let cols = d.min(4);
    let [svg, png] = save_svg_png(
        out.path(),
        "calibrate",
        (300 * cols as u32 + 40, 300 * d.div_ceil(cols) as u32 + 50),
        &plot,
    )?;
    for c in &coordinates {
        println!(
            "θ{}: KS D = {:.4}, p = {:.3e}",
            c.coordinate, c.ks_statistic, c.p_value
        );
    }
    println!(
        "{}: the {posterior_name} posterior of {task} is {} at level {} (needs every p ≥ {:.1e})",
        if calibrated { "PASS" } else { "FAIL" },
        if calibrated {
            "calibrated"
        } else {
            "not calibrated"
        },
        args.alpha,
        level
    );
    let record = timer.record(
        "sbi_calibrate",
        args.seed,
        false,
        CalibrateParams {
            task: task.to_string(),
            posterior: posterior_name,
            reference_scale: args.reference.then_some(args.reference_scale),
            pairs: args.pairs,
            skipped,
            draws: l,
            bins: args.bins,
            alpha: args.alpha,
            sampler: loaded.as_ref().map(|_| args.sampler.to_string()),
            steps: loaded.as_ref().map(|_| args.steps),
            coordinates,
            calibrated,
        },
        &["calibrate.csv", &svg, &png],
    );
    out.write_json("calibrate.json", &record)?;
    println!("wrote {}", out.path().display());
    Ok(())
}

/// Rank histograms, one panel per coordinate, with the uniform expectation and its 99%
/// binomial band (`pairs/bins ± 2.576 √(pairs p (1 − p))`, `p = 1/bins`).
fn rank_plot(
    task: SbiTask,
    posterior: &str,
    coordinates: &[CoordinateTest],
    pairs: usize,
    bins: usize,
) -> PanelGrid {
    let p = 1.0 / bins as f64;
    let expected = pairs as f64 * p;
    let half = 2.576 * (pairs as f64 * p * (1.0 - p)).sqrt();
    let flat = |y: f64| vec![(0.0, y), (bins as f64, y)];
    let panels = coordinates
        .iter()
        .map(|c| {
            let steps: Vec<(f64, f64)> = c
                .histogram
                .iter()
                .enumerate()
                .flat_map(|(b, &h)| [(b as f64, h as f64), (b as f64 + 1.0, h as f64)])
                .collect();
            Panel::new(
                format!("θ{} (KS p = {:.2e})", c.coordinate, c.p_value),
                "rank bin",
                "pairs",
            )
            .with(Series::line("ranks", 0, steps))
            .with(Series::line("uniform", 1, flat(expected)).styled(Style::Dashed))
            .with(
                Series::line("99% band", 2, flat((expected - half).max(0.0))).styled(Style::Dashed),
            )
            .with(Series::line("", 2, flat(expected + half)).styled(Style::Dashed))
        })
        .collect();
    PanelGrid {
        title: format!("{task}: SBC rank histograms, {posterior} posterior, {pairs} pairs"),
        cols: coordinates.len().min(4),
        panels,
    }
}

/// Draws `[n, d]` as CSV with header `theta1,…,theta_d`.
fn theta_csv(draws: &[f64], d: usize) -> String {
    let mut text = header("theta", d).join(",");
    text.push('\n');
    for row in draws.chunks_exact(d) {
        let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        text.push_str(&cells.join(","));
        text.push('\n');
    }
    text
}

/// A corner plot: marginal histograms on the diagonal, pairwise scatter below it; the
/// reference posterior's draws overlaid in a second colour.
struct Corner<'a> {
    title: String,
    d: usize,
    draws: &'a [f64],
    reference: Option<&'a [f64]>,
}

impl Corner<'_> {
    /// The plotted range of coordinate `j`: the draws' (and reference's) 0.5% to 99.5%
    /// quantiles, widened by 10%.
    fn range(&self, j: usize) -> (f64, f64) {
        let mut col: Vec<f64> = self
            .draws
            .iter()
            .skip(j)
            .step_by(self.d)
            .chain(self.reference.unwrap_or(&[]).iter().skip(j).step_by(self.d))
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        if col.is_empty() {
            return (-1.0, 1.0);
        }
        col.sort_by(f64::total_cmp);
        let q = |p: f64| col[((col.len() - 1) as f64 * p).round() as usize];
        let (lo, hi) = (q(0.005), q(0.995));
        let pad = ((hi - lo) * 0.1).max(1e-6);
        (lo - pad, hi + pad)
    }
}

impl Figure for Corner<'_> {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let d = self.d;
        let area = area.titled(&self.title, (FONT, 18)).map_err(plot_err)?;
        let cells = area.split_evenly((d, d));
        let ranges: Vec<(f64, f64)> = (0..d).map(|j| self.range(j)).collect();
        let column =
            |x: &[f64], j: usize| -> Vec<f64> { x.iter().skip(j).step_by(d).copied().collect() };
        for r in 0..d {
            for c in 0..=r {
                let cell = &cells[r * d + c];
                let (xl, xh) = ranges[c];
                if r == c {
                    let bins = 30;
                    let w = (xh - xl) / bins as f64;
                    let hist = |x: &[f64]| -> Vec<f64> {
                        let mut h = vec![0.0; bins];
                        let col = column(x, c);
                        for v in &col {
                            if (xl..xh).contains(v) {
                                h[((v - xl) / w) as usize % bins] += 1.0;
                            }
                        }
                        let n = col.len().max(1) as f64 * w;
                        h.iter_mut().for_each(|v| *v /= n);
                        h
                    };
                    let ours = hist(self.draws);
                    let theirs = self.reference.map(hist);
                    let top = ours
                        .iter()
                        .chain(theirs.iter().flatten())
                        .fold(0.0f64, |a, &b| a.max(b))
                        .max(1e-9)
                        * 1.1;
                    let mut chart = ChartBuilder::on(cell)
                        .margin(4)
                        .x_label_area_size(22)
                        .y_label_area_size(30)
                        .build_cartesian_2d(xl..xh, 0.0..top)
                        .map_err(plot_err)?;
                    chart
                        .configure_mesh()
                        .x_desc(format!("θ{}", c + 1))
                        .light_line_style(WHITE.mix(0.0))
                        .label_style((FONT, 10))
                        .draw()
                        .map_err(plot_err)?;
                    chart
                        .draw_series(ours.iter().enumerate().map(|(b, &h)| {
                            let x0 = xl + b as f64 * w;
                            Rectangle::new([(x0, 0.0), (x0 + w, h)], PALETTE[0].mix(0.5).filled())
                        }))
                        .map_err(plot_err)?;
                    if let Some(theirs) = theirs {
                        let steps: Vec<(f64, f64)> = theirs
                            .iter()
                            .enumerate()
                            .flat_map(|(b, &h)| {
                                let x0 = xl + b as f64 * w;
                                [(x0, h), (x0 + w, h)]
                            })
                            .collect();
                        chart
                            .draw_series(LineSeries::new(steps, PALETTE[1].stroke_width(2)))
                            .map_err(plot_err)?;
                    }
                } else {
                    let (yl, yh) = ranges[r];
                    let mut chart = ChartBuilder::on(cell)
                        .margin(4)
                        .x_label_area_size(22)
                        .y_label_area_size(30)
                        .build_cartesian_2d(xl..xh, yl..yh)
                        .map_err(plot_err)?;
                    chart
                        .configure_mesh()
                        .x_desc(format!("θ{}", c + 1))
                        .y_desc(format!("θ{}", r + 1))
                        .light_line_style(WHITE.mix(0.0))
                        .label_style((FONT, 10))
                        .draw()
                        .map_err(plot_err)?;
                    let points = |x: &'_ [f64]| -> Vec<(f64, f64)> {
                        x.chunks_exact(d)
                            .map(|p| (p[c], p[r]))
                            .filter(|(a, b)| (xl..xh).contains(a) && (yl..yh).contains(b))
                            .take(3000)
                            .collect()
                    };
                    if let Some(reference) = self.reference {
                        chart
                            .draw_series(
                                points(reference)
                                    .into_iter()
                                    .map(|p| Circle::new(p, 1, PALETTE[1].mix(0.4).filled())),
                            )
                            .map_err(plot_err)?;
                    }
                    chart
                        .draw_series(
                            points(self.draws)
                                .into_iter()
                                .map(|p| Circle::new(p, 1, PALETTE[0].mix(0.5).filled())),
                        )
                        .map_err(plot_err)?;
                }
            }
        }
        Ok(())
    }
}
