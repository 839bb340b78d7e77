//! Benchmark of the Lie-group code (issue #16 §1):
//!
//! - IGSO(3) `log f` + body-score evaluations per second (`Igso3::log_density` and
//!   `Igso3::body_score` at Haar-random rotations) at `ε = 0.05, 0.3` (image form) and `1.5`
//!   (series), and exact draws per second by rejection (`igso3_draw`, a new `Igso3` set-up per
//!   draw as in training);
//! - training steps per second (CPU engine, batch 512, the paper's MLP: 3 × 128, embedding
//!   128) of DSM and TSM on `𝕋²` and `SO(3)` (`tsm_nn::lie`) against the 2-D Euclidean DSM
//!   step of the same network on the eight-mode mixture.
//!
//! `cargo xtask bench lie [--quick] [--repeats N]`

use anyhow::Result;
use clap::Parser;
use tsm_core::identity::ScoreIdentity;
use tsm_core::lie::igso3::Igso3;
use tsm_core::lie::igso3_draw::igso3_draw;
use tsm_core::lie::so3::{Rotation, So3};
use tsm_core::lie::torus::Torus;
use tsm_core::weighting::Weighting;
use tsm_experiments::bench::report_repeats;
use tsm_experiments::cli::count;
use tsm_experiments::training::tune_cpu;
use tsm_nn::candle::Device;
use tsm_nn::lie::{
    group_loss_config, group_model_config, GroupBatches, GroupDiffusion, GroupTargetScore,
};
use tsm_nn::loss::LossConfig;
use tsm_nn::{MlpConfig, ModelConfig, TrainConfig, Trainer, TrainerOptions};
use tsm_targets::lie::{So3Mixture, TorusMixture};

/// Times IGSO(3) evaluations and group training steps.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Fewer evaluations and steps (for a smoke run)
    #[arg(long)]
    quick: bool,
    /// Number of timed repetitions, 1 to 1000 (the best and the median are reported)
    #[arg(long, default_value_t = 3, value_parser = count::<usize>(1..=1000))]
    repeats: usize,
    /// Check the flags, print what would run, and exit
    #[arg(long)]
    dry_run: bool,
}

fn group_trainer<G: GroupDiffusion>(
    group: G,
    data: Vec<G::Element>,
    target: &dyn GroupTargetScore<G>,
    identity: ScoreIdentity,
    steps: u64,
) -> Result<Trainer<'static, (), GroupBatches<G>>> {
    let model = group_model_config(&group, MlpConfig::default(), 0.05, 4.0)?;
    let loss = group_loss_config(identity);
    let cfg = TrainConfig {
        steps,
        checkpoint_every: 0,
        ..TrainConfig::new("lie:bench", model, loss)
    };
    let batches = GroupBatches::new(group, data, Some(target), &cfg)?;
    Ok(Trainer::with_source(
        cfg,
        batches,
        &Device::Cpu,
        TrainerOptions::default(),
    )?)
}

fn main() -> Result<()> {
    tune_cpu();
    let args = Args::parse();
    let (evals, steps) = if args.quick {
        (20_000usize, 20u64)
    } else {
        (400_000, 300)
    };
    if args.dry_run {
        println!(
            "dry run: would time {evals} IGSO(3) evaluations at 3 variances and {steps} training \
             steps on 𝕋², SO(3) and ℝ², {} repeat(s)",
            args.repeats
        );
        return Ok(());
    }
    let mut rng = tsm_core::rng::stream(0, 0);
    let rotations: Vec<Rotation> = (0..evals).map(|_| Rotation::uniform(&mut rng)).collect();
    for eps in [0.05, 0.3, 1.5] {
        let k = Igso3::from_std(eps)?;
        println!("IGSO(3) log density + body score, ε = {eps} ({evals} rotations):");
        report_repeats(args.repeats, evals as f64, "eval", |_| {
            let mut acc = 0.0;
            for r in &rotations {
                acc += k.log_density(&Rotation::IDENTITY, r);
                acc += k.body_score(&Rotation::IDENTITY, r)[0];
            }
            Ok(format!(", checksum {acc:.3e}"))
        })?;
        let draws = evals / 4;
        println!("IGSO(3) exact draws by rejection (igso3_draw), ε = {eps} ({draws} draws):");
        report_repeats(args.repeats, draws as f64, "draw", |r| {
            let mut rng = tsm_core::rng::stream(1, r);
            let mut acc = 0.0;
            for _ in 0..draws {
                acc += igso3_draw(eps * eps, &mut rng)?.angle();
            }
            Ok(format!(", mean angle {:.4}", acc / draws as f64))
        })?;
    }

    let torus_target = TorusMixture::new(
        &[0.5, 0.3, 0.2],
        &[vec![-2.0, 2.5], vec![1.0, -0.5], vec![3.0, 3.0]],
        &[vec![0.3, 0.5], vec![0.6, 0.2], vec![0.4, 0.4]],
    )?;
    let so3_target = So3Mixture::new(
        &[0.4, 0.35, 0.25],
        &[
            Rotation::IDENTITY,
            tsm_core::lie::so3::exp(&[0.0, 2.0, 0.0]),
            tsm_core::lie::so3::exp(&[1.5, -0.5, 1.0]),
        ],
        &[0.05, 0.1, 0.2],
    )?;
    let torus_data: Vec<_> = (0..1 << 14)
        .map(|_| torus_target.sample(&mut rng))
        .collect();
    let so3_data: Vec<_> = (0..1 << 14).map(|_| so3_target.sample(&mut rng)).collect();
    let torus = Torus::new(2)?;
    for identity in [ScoreIdentity::Dsi, ScoreIdentity::Tsi] {
        let name = identity.loss_name();
        println!("training steps, 𝕋² {name} (batch 512, MLP 3 × 128, embedding 128):");
        report_repeats(args.repeats, steps as f64, "step", |_| {
            let mut t = group_trainer(torus, torus_data.clone(), &torus_target, identity, steps)?;
            t.run(None, |_, _| {})?;
            Ok(String::new())
        })?;
        println!("training steps, SO(3) {name} (batch 512, MLP 3 × 128, embedding 128):");
        report_repeats(args.repeats, steps as f64, "step", |_| {
            let mut t = group_trainer(So3, so3_data.clone(), &so3_target, identity, steps)?;
            t.run(None, |_, _| {})?;
            Ok(String::new())
        })?;
    }
    let eight = tsm_targets::named::eight_modes();
    println!("training steps, ℝ² dsm on eight_modes (the same network and batch):");
    report_repeats(args.repeats, steps as f64, "step", |_| {
        let loss = LossConfig::for_mixture(ScoreIdentity::Dsi, Weighting::Uniform, &eight)?;
        let cfg = TrainConfig {
            steps,
            checkpoint_every: 0,
            ..TrainConfig::new("eight_modes", ModelConfig::default(), loss)
        };
        let mut t = Trainer::with_options(cfg, &eight, &Device::Cpu, TrainerOptions::default())?;
        t.run(None, |_, _| {})?;
        Ok(String::new())
    })?;
    Ok(())
}
