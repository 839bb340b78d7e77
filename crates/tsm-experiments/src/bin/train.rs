//! `cargo xtask train`: trains a score network on a named target with DSM, TSM or a κ/κ̄
//! mixture, writing resumable checkpoints into `--out`.
//!
//! `cargo xtask train --target eight_modes --loss tsm --steps 20000 --out runs/tsm`
//!
//! The folder gets `checkpoint.json` + `step_N.safetensors` every `--checkpoint-every` steps
//! and at the end, and `loss.csv` (`step,loss`, every 10th step). `--resume` continues the run
//! in `--out` bit-identically (up to the new `--steps`), whatever `--threads`. Exit codes: 0
//! success, 1 error (bad flag values exit with clap's 2).
//!
//! The loss, weighting, parameterisation, schedule and device flags take the libraries' own
//! names (`tsm_core::choice::Choice`), e.g. `--loss kappa_bar=0.04`,
//! `--schedule 'linear_vp(beta_min=0.1,beta_max=10)'`; the variances that `kappa`,
//! `kappa_bar` and `preconditioned` leave open are the target's, and the checkpoint records
//! the resolved numbers.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;
use tsm_core::identity::ScoreIdentity;
use tsm_core::schedule::AnySchedule;
use tsm_core::weighting::{TimeRange, Weighting};
use tsm_experiments::cli::choice;
use tsm_experiments::init_tracing;
use tsm_experiments::training::{progress_bar, tune_cpu};
use tsm_nn::engine::EngineKind;
use tsm_nn::loss::{LossConfig, TargetVariances};
use tsm_nn::optim::AdamConfig;
use tsm_nn::{
    DeviceKind, MlpConfig, ModelConfig, Parameterisation, TrainConfig, Trainer, TrainerOptions,
};

/// Train a score network (the MLP of De Bortoli et al. 2024, §4.2) with DSM, TSM, κ or κ̄ on a
/// named target.
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
struct Args {
    /// Target name (unit_gaussian, easy_mixture, hard_mixture_same_var, hard_mixture_diff_var, eight_modes)
    #[arg(long, default_value = "eight_modes")]
    target: String,
    /// Regression target of the loss: dsm/dsi, tsm/tsi, mixture=W (w L_DSI + (1 − w) L_TSI),
    /// kappa and kappa_bar (variance from the target, or kappa=V, kappa_bar=V), phillips
    #[arg(long, value_parser = choice::<ScoreIdentity>(), default_value = "dsm")]
    loss: ScoreIdentity,
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
    /// Total training steps
    #[arg(long, default_value_t = 20_000)]
    steps: u64,
    /// Batch size
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// Adam learning rate
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// EMA decay of the weights
    #[arg(long, default_value_t = 0.999)]
    ema_decay: f64,
    /// Lower end of t ~ U[t_min, t_max] (L_DSI blows up at t = 0)
    #[arg(long, default_value_t = 1e-3)]
    t_min: f64,
    /// Upper end (L_TSI blows up at t = 1 for cosine/VP)
    #[arg(long, default_value_t = 1.0 - 1e-3)]
    t_max: f64,
    /// Hidden width
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// Number of hidden layers
    #[arg(long, default_value_t = 3)]
    depth: usize,
    /// Time-embedding dimension (even)
    #[arg(long, default_value_t = 128)]
    embedding_dim: usize,
    /// Seed of the initial weights and of every batch
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Device (cuda/metal need the cargo feature of that name)
    #[arg(long, value_parser = choice::<DeviceKind>(), default_value = "cpu")]
    device: DeviceKind,
    /// Threads of the CPU engine (the results do not depend on it) [default: the machine's
    /// available parallelism]
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    threads: Option<usize>,
    /// Checkpoint every N steps (and at the end)
    #[arg(long, default_value_t = 1000)]
    checkpoint_every: u64,
    /// Use candle's autograd engine on the CPU too (slower; the default CPU engine has a hand-written backward)
    #[arg(long)]
    autograd: bool,
    /// Output folder for checkpoints and loss.csv
    #[arg(long, value_name = "DIR", default_value = "results/train")]
    out: PathBuf,
    /// Continue the run saved in --out (its configuration; --steps may extend it)
    #[arg(long)]
    resume: bool,
}

fn main() -> Result<()> {
    tune_cpu();
    init_tracing();
    let args = Args::parse();
    let target = tsm_targets::named::by_name(&args.target).context("--target")?;
    let variances = TargetVariances::of_mixture(&target)?;
    let device = args.device.open().context("--device")?;
    let options = args
        .threads
        .map_or_else(TrainerOptions::default, TrainerOptions::with_threads);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("--out {}: cannot create", args.out.display()))?;
    let mut trainer = if args.resume {
        let mut t = Trainer::resume_with_options(&args.out, &target, &device, options)
            .with_context(|| format!("--resume from {}", args.out.display()))?;
        if t.config().target != args.target {
            bail!(
                "--resume: the checkpoint in {} is for target `{}`, not `{}`",
                args.out.display(),
                t.config().target,
                args.target
            );
        }
        t.set_total_steps(args.steps)?;
        t
    } else {
        let cfg = TrainConfig {
            target: args.target.clone(),
            model: ModelConfig {
                mlp: MlpConfig {
                    dim: tsm_core::target::Dim::dim(&target),
                    hidden: args.hidden,
                    depth: args.depth,
                    embedding_dim: args.embedding_dim,
                    ..MlpConfig::default()
                },
                parameterisation: args.parameterisation,
                schedule: args.schedule,
            }
            .resolve(variances.sigma_data_sq())
            .context("--parameterisation")?,
            loss: LossConfig::new(args.loss, args.weighting, &variances)
                .context("--loss")?
                .with_range(TimeRange::new(args.t_min, args.t_max).context("--t-min/--t-max")?),
            adam: AdamConfig {
                lr: args.lr,
                ema_decay: args.ema_decay,
                ..AdamConfig::default()
            },
            batch: args.batch,
            steps: args.steps,
            seed: args.seed,
            checkpoint_every: args.checkpoint_every,
            engine: if device.is_cpu() && !args.autograd {
                EngineKind::Cpu
            } else {
                EngineKind::Candle
            },
        };
        Trainer::with_options(cfg, &target, &device, options)?
    };
    tracing::info!(
        target = %args.target,
        loss = %trainer.config().loss.identity,
        step = trainer.step(),
        steps = trainer.config().steps,
        "training"
    );
    let loss_path = args.out.join("loss.csv");
    let mut loss_csv = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&loss_path)
        .with_context(|| format!("opening {}", loss_path.display()))?;
    if trainer.step() == 0 {
        // A fresh run: start the file over.
        loss_csv.set_len(0)?;
        writeln!(loss_csv, "step,loss")?;
    }
    let bar = progress_bar(trainer.config().steps, trainer.step());
    let mut running = None::<f64>;
    let mut io_error = None;
    let result = trainer.run(Some(&args.out), |step, loss| {
        running = Some(running.map_or(loss, |r| 0.99 * r + 0.01 * loss));
        if step % 10 == 0 {
            bar.set_position(step);
            bar.set_message(format!("{:.4}", running.unwrap_or(loss)));
            if let Err(e) = writeln!(loss_csv, "{step},{loss}") {
                io_error.get_or_insert(e);
            }
        }
    });
    bar.finish();
    result?;
    if let Some(e) = io_error {
        return Err(e).context("writing loss.csv");
    }
    tracing::info!(
        step = trainer.step(),
        loss = trainer.last_loss(),
        out = %args.out.display(),
        "done"
    );
    Ok(())
}
