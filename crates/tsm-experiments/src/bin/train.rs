//! `cargo xtask train`: trains a score network on a named target with DSM, TSM, a κ/κ̄
//! mixture, implicit or sliced score matching (`--loss ism|ssm`), writing resumable
//! checkpoints into `--out`.
//!
//! `cargo xtask train --target eight_modes --loss tsm --steps 20000 --out runs/tsm`
//!
//! The folder gets `checkpoint.json` + `step_N.safetensors` every `--checkpoint-every` steps
//! and at the end, and `loss.csv` (`step,loss`, every 10th step). Exit codes: 0 success, 1
//! error (training diverged, I/O, a bad checkpoint), 2 a bad flag value.
//!
//! **Folders.** A fresh run refuses an `--out` that already holds a run (a `checkpoint.json`)
//! unless `--force`, which deletes that run first. `--resume` continues the run in `--out`
//! bit-identically, whatever `--threads`: to the checkpoint's own total, or to `--steps` if
//! given; the flags that define the run (loss, weighting, sizes, learning rate, seed, …) are
//! the checkpoint's, and one given with a different value is refused, naming it
//! (`--checkpoint-every` and `--threads` may change). On resume `loss.csv` is cut back to the
//! checkpoint's step and what a killed run left (temporary files, a tensor file the record
//! does not name) is removed. `--resume` needs the folder to exist.
//!
//! **Divergence.** The run stops with an error naming the step when the loss or a weight turns
//! non-finite or the loss's running mean grows 10⁴-fold (`tsm_nn::train`); the last good
//! checkpoint stays, and the message says whether there is one.
//!
//! The loss, weighting, parameterisation, schedule and device flags take the libraries' own
//! names (`tsm_core::choice::Choice`), e.g. `--loss kappa_bar=0.04`,
//! `--schedule 'linear_vp(beta_min=0.1,beta_max=10)'`; the variances that `kappa`,
//! `kappa_bar` and `preconditioned` leave open are the target's, and the checkpoint records
//! the resolved numbers.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use tsm_core::schedule::AnySchedule;
use tsm_core::weighting::Weighting;
use tsm_experiments::cli::{choice, count, flag_error, float, num, usage_error};
use tsm_experiments::init_tracing;
use tsm_experiments::training::{prepare_run_dir, refuse_existing_run, run_logged, tune_cpu};
use tsm_nn::checkpoint::{self, CheckpointRecord};
use tsm_nn::engine::EngineKind;
use tsm_nn::implicit::TrainLoss;
use tsm_nn::loss::{LossConfig, TargetVariances};
use tsm_nn::optim::AdamConfig;
use tsm_nn::{
    DeviceKind, MlpConfig, ModelConfig, Parameterisation, TrainConfig, Trainer, TrainerOptions,
};
use tsm_targets::GaussianMixture;

/// Train a score network (the MLP of De Bortoli et al. 2024, §4.2) with DSM, TSM, κ, κ̄, ISM or
/// SSM on a named target.
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
struct Args {
    /// Target name (unit_gaussian, easy_mixture, hard_mixture_same_var, hard_mixture_diff_var, eight_modes)
    #[arg(long, default_value = "eight_modes")]
    target: String,
    /// The loss: a regression target — dsm/dsi, tsm/tsi, mixture=W (w L_DSI + (1 − w) L_TSI),
    /// kappa and kappa_bar (variance from the target, or kappa=V, kappa_bar=V), phillips — or
    /// implicit score matching: ism (exact Jacobian trace), ism=hutchinson or ism=K (Hutchinson,
    /// K Rademacher probes), ssm or ssm=K (sliced, variance-reduced, K Gaussian probes), fdssm or
    /// fdssm=K (finite-difference SSM); ism/ssm/fdssm train on the autograd engine
    #[arg(long, value_parser = choice::<TrainLoss>(), default_value = "dsm")]
    loss: TrainLoss,
    /// Time weighting λ_t (normalised over the time range)
    #[arg(long, value_parser = choice::<Weighting>(), default_value = "uniform")]
    weighting: Weighting,
    /// Output parameterisation of the network (preconditioned: σ_data² from the target, or
    /// preconditioned=V)
    #[arg(long, value_parser = choice::<Parameterisation>(), default_value = "score")]
    parameterisation: Parameterisation,
    /// Noising schedule (standard parameters, or e.g. linear_vp(beta_min=0.1,beta_max=10))
    #[arg(long, value_parser = choice::<AnySchedule>(), default_value = "cosine")]
    schedule: AnySchedule,
    /// Total training steps, 1 to 10⁹ [default: 20000; with --resume: the checkpoint's]
    #[arg(long, value_parser = count::<u64>(1..=TrainConfig::MAX_STEPS))]
    steps: Option<u64>,
    /// Batch size (2 to 2²⁰)
    #[arg(long, default_value_t = 512,
          value_parser = count::<usize>(2..=TrainConfig::MAX_BATCH as u64))]
    batch: usize,
    /// Adam learning rate (> 0)
    #[arg(long, default_value_t = 1e-4, value_parser = float().above(0.0))]
    lr: f64,
    /// EMA decay of the weights, in [0, 1)
    #[arg(long, default_value_t = 0.999, value_parser = float().at_least(0.0).below(1.0))]
    ema_decay: f64,
    /// Lower end of t ~ U[t_min, t_max], in [0, 1) (L_DSI blows up at t = 0)
    #[arg(long, default_value_t = 1e-3, value_parser = float().at_least(0.0).below(1.0))]
    t_min: f64,
    /// Upper end, in (0, 1] (L_TSI blows up at t = 1 for cosine/VP)
    #[arg(long, default_value_t = 1.0 - 1e-3, value_parser = float().above(0.0).at_most(1.0))]
    t_max: f64,
    /// Hidden width (1 to 2¹⁴)
    #[arg(long, default_value_t = 128,
          value_parser = count::<usize>(1..=TrainConfig::MAX_HIDDEN as u64))]
    hidden: usize,
    /// Number of hidden layers (1 to 1000)
    #[arg(long, default_value_t = 3,
          value_parser = count::<usize>(1..=TrainConfig::MAX_DEPTH as u64))]
    depth: usize,
    /// Time-embedding dimension (even, 2 to 2¹⁴)
    #[arg(long, default_value_t = 128,
          value_parser = count::<usize>(2..=TrainConfig::MAX_EMBEDDING_DIM as u64))]
    embedding_dim: usize,
    /// Seed of the initial weights and of every batch
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Device (cuda/metal need the cargo feature of that name)
    #[arg(long, value_parser = choice::<DeviceKind>(), default_value = "cpu")]
    device: DeviceKind,
    /// Threads of the CPU engine, 1 to 1024 (the results do not depend on it) [default: the
    /// machine's available parallelism]
    #[arg(long, value_parser = count::<usize>(1..=TrainerOptions::MAX_THREADS as u64))]
    threads: Option<usize>,
    /// Checkpoint every N steps (and at the end; 0: only at the end)
    #[arg(long, default_value_t = 1000)]
    checkpoint_every: u64,
    /// Use candle's autograd engine on the CPU too (slower; the default CPU engine has a hand-written backward)
    #[arg(long)]
    autograd: bool,
    /// Output folder for checkpoints and loss.csv
    #[arg(long, value_name = "DIR", default_value = "results/train")]
    out: PathBuf,
    /// Continue the run saved in --out (its configuration; --steps may extend it)
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Start a fresh run even if --out holds one (which is deleted first)
    #[arg(long)]
    force: bool,
    /// Check the flags (and the checkpoint with --resume), print what would run, and exit
    /// without training or writing anything
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
    ("loss.t_min", "--t-min"),
    ("loss.t_max", "--t-max"),
    ("threads", "--threads"),
];

/// The default of `--steps` for a fresh run.
const DEFAULT_STEPS: u64 = 20_000;

fn main() -> Result<()> {
    tune_cpu();
    init_tracing();
    let matches = Args::command().get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let target = tsm_targets::named::by_name(&args.target).context("--target")?;
    let variances = TargetVariances::of_mixture(&target)?;
    let device = args.device.open().context("--device")?;
    let options = args
        .threads
        .map_or_else(TrainerOptions::default, TrainerOptions::with_threads);
    // ISM/SSM need the autograd engine (the CPU engine has no pass through the JVPs).
    let engine = if device.is_cpu() && !args.autograd && args.loss.implicit().is_none() {
        EngineKind::Cpu
    } else {
        EngineKind::Candle
    };
    let out = &args.out;

    // Everything is checked before anything is written.
    let mut trainer = if args.resume {
        if !out.is_dir() {
            bail!(
                "--resume: {} is not a folder (nothing to resume; drop --resume to start a run)",
                out.display()
            );
        }
        let record = checkpoint::read_record(out)
            .with_context(|| format!("--resume from {}", out.display()))?;
        let conflicts = conflicts(&args, &matches, &record, &variances, engine);
        if !conflicts.is_empty() {
            usage_error::<Args>(format!(
                "--resume continues the run in {} as it was configured; these flags differ \
                 from its checkpoint: {} (drop them, or start a new run in another folder)",
                out.display(),
                conflicts.join(", ")
            ));
        }
        let steps = args.steps.unwrap_or(record.config.steps);
        if steps < record.step {
            usage_error::<Args>(format!(
                "invalid value '{steps}' for '--steps': the checkpoint in {} is already at \
                 step {}",
                out.display(),
                record.step
            ));
        }
        let mut t = Trainer::resume_with_options(out, &target, &device, options)
            .map_err(|e| flag_error::<Args>(e, FLAGS))
            .with_context(|| format!("--resume from {}", out.display()))?;
        t.set_total_steps(steps)
            .map_err(|e| flag_error::<Args>(e, FLAGS))?;
        if matches.value_source("checkpoint_every") == Some(ValueSource::CommandLine) {
            t.set_checkpoint_every(args.checkpoint_every);
        }
        t
    } else {
        refuse_existing_run(out, args.force)?;
        let cfg = fresh_config(&args, &target, &variances, engine)?;
        Trainer::with_options(cfg, &target, &device, options)
            .map_err(|e| flag_error::<Args>(e, FLAGS))?
    };
    let (from, to) = (trainer.step(), trainer.config().steps);
    if args.dry_run {
        let cfg = trainer.config();
        println!(
            "dry run: would train {} on {} from step {from} to {to} (batch {}, lr {}, {} \
             parameters, ≈ {:.0} MB) into {}{}",
            TrainLoss::of(cfg),
            cfg.target,
            cfg.batch,
            num(cfg.adam.lr),
            cfg.model.mlp.n_parameters(),
            cfg.memory_estimate().unwrap_or(0) as f64 / 1e6,
            out.display(),
            if args.resume {
                " (resuming)"
            } else if args.force {
                " (replacing the run there)"
            } else {
                ""
            }
        );
        return Ok(());
    }

    // Now the folder: create it, or clean and cut back what a previous run left.
    let loss_path = prepare_run_dir(out, args.resume.then_some(from), args.force)?;
    if from == to {
        println!(
            "the run in {} is already at step {to} of {to}; nothing to do",
            out.display()
        );
        return Ok(());
    }
    tracing::info!(
        target = %trainer.config().target,
        loss = %TrainLoss::of(trainer.config()),
        step = from,
        steps = to,
        "training"
    );
    run_logged(&mut trainer, out, &loss_path)?;
    tracing::info!(
        step = trainer.step(),
        loss = trainer.last_loss(),
        out = %out.display(),
        "done"
    );
    Ok(())
}

/// The configuration of a fresh run from the flags (exits with status 2 naming the flag for
/// a value the library refuses).
fn fresh_config(
    args: &Args,
    target: &GaussianMixture,
    variances: &TargetVariances,
    engine: EngineKind,
) -> Result<TrainConfig> {
    let model = ModelConfig {
        mlp: MlpConfig {
            dim: tsm_core::target::Dim::dim(target),
            hidden: args.hidden,
            depth: args.depth,
            embedding_dim: args.embedding_dim,
            ..MlpConfig::default()
        },
        parameterisation: args.parameterisation,
        schedule: args.schedule,
        condition: None,
    }
    .resolve(variances.sigma_data_sq())
    .context("--parameterisation")?;
    let mut loss =
        LossConfig::new(args.loss.identity(), args.weighting, variances).context("--loss")?;
    (loss.t_min, loss.t_max) = (args.t_min, args.t_max);
    let cfg = TrainConfig {
        target: args.target.clone(),
        model,
        loss,
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
        simulation: None,
        implicit: args.loss.implicit(),
    };
    cfg.validate()
        .map_err(|e| flag_error::<Args>(e, FLAGS))
        .context("the configuration (--loss, --weighting, --parameterisation, --schedule)")?;
    Ok(cfg)
}

/// The flags given on the command line whose value differs from the checkpoint's, as
/// `--flag VALUE (checkpoint: VALUE)`.
fn conflicts(
    args: &Args,
    matches: &ArgMatches,
    record: &CheckpointRecord,
    variances: &TargetVariances,
    engine: EngineKind,
) -> Vec<String> {
    let cfg = &record.config;
    let mut out = Vec::new();
    // The flag `id` as given, if given and `ours` differs from the checkpoint's `theirs`.
    let mut check = |id: &str, ours: String, theirs: String| {
        if matches.value_source(id) == Some(ValueSource::CommandLine) && ours != theirs {
            let given = matches
                .get_raw(id)
                .and_then(|mut v| v.next())
                .map_or_else(String::new, |v| format!(" {}", v.to_string_lossy()));
            let flag = id.replace('_', "-");
            out.push(format!("--{flag}{given} (checkpoint: {theirs})"));
        }
    };
    check("target", args.target.clone(), cfg.target.clone());
    // Choices compare resolved, as the checkpoint records them (kappa_bar = kappa_bar=0.25).
    let loss = args
        .loss
        .resolve(variances.sigma_data_sq(), variances.sigma_mode_sq())
        .unwrap_or(args.loss);
    check("loss", loss.to_string(), TrainLoss::of(cfg).to_string());
    check(
        "weighting",
        args.weighting.to_string(),
        cfg.loss.weighting.to_string(),
    );
    let parameterisation = args
        .parameterisation
        .resolve(variances.sigma_data_sq())
        .unwrap_or(args.parameterisation);
    check(
        "parameterisation",
        parameterisation.to_string(),
        cfg.model.parameterisation.to_string(),
    );
    check(
        "schedule",
        args.schedule.to_string(),
        cfg.model.schedule.to_string(),
    );
    let mlp = &cfg.model.mlp;
    for (id, ours, theirs) in [
        ("batch", args.batch, cfg.batch),
        ("hidden", args.hidden, mlp.hidden),
        ("depth", args.depth, mlp.depth),
        ("embedding_dim", args.embedding_dim, mlp.embedding_dim),
    ] {
        check(id, ours.to_string(), theirs.to_string());
    }
    for (id, ours, theirs) in [
        ("lr", args.lr, cfg.adam.lr),
        ("ema_decay", args.ema_decay, cfg.adam.ema_decay),
        ("t_min", args.t_min, cfg.loss.t_min),
        ("t_max", args.t_max, cfg.loss.t_max),
    ] {
        check(id, num(ours), num(theirs));
    }
    check("seed", args.seed.to_string(), cfg.seed.to_string());
    if engine != cfg.engine {
        let theirs = format!("the {:?} engine", cfg.engine).to_lowercase();
        check("device", format!("{engine:?}"), theirs.clone());
        check("autograd", format!("{engine:?}"), theirs);
    }
    out
}
