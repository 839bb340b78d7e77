//! Benchmark of the SBI tasks (`tsm_targets::sbi`): simulations with joint score per second
//! (in parallel with rayon, one random stream per block of simulations), the Monte Carlo
//! estimate of `F = E‖∇_θ log p(θ, z, x)‖²` from them, and the seconds per observation of the
//! reference posteriors (serial library code, prior-predictive observations).
//!
//! `cargo run --release -p tsm-experiments --bin bench_sbi -- [--quick] [--repeats N]
//! [--simulations N] [--observations M] [--task NAME]`

use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use rayon::prelude::*;
use tsm_core::rng::stream;
use tsm_core::simulator::estimate_score_constant;
use tsm_experiments::bench::report_repeats;
use tsm_experiments::cli::{choice, count};
use tsm_targets::sbi::{SbiTask, Task, TaskVisitor};

/// Times simulation and reference posteriors of the SBI tasks.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Reduced sizes (10⁵ simulations, one observation) for a smoke run
    #[arg(long)]
    quick: bool,
    /// Number of timed repetitions of the simulations, 1 to 1000 (the best and the median
    /// are reported)
    #[arg(long, default_value_t = 3, value_parser = count::<usize>(1..=1000))]
    repeats: usize,
    /// Simulations per task and repetition, 2 to 10⁷
    #[arg(long, default_value_t = 1_000_000, value_parser = count::<usize>(2..=10_000_000))]
    simulations: usize,
    /// Observations whose reference posterior is timed, per task, 0 to 1000 (0: skip)
    #[arg(long, default_value_t = 3, value_parser = count::<usize>(0..=1000))]
    observations: usize,
    /// One task only (linear_gaussian, galton_board, sir); all by default
    #[arg(long, value_parser = choice::<SbiTask>())]
    task: Option<SbiTask>,
    /// Check the flags, print what would run, and exit
    #[arg(long)]
    dry_run: bool,
}

/// Simulations per rayon work item.
const CHUNK: usize = 10_000;

struct Bench {
    repeats: usize,
    simulations: usize,
    observations: usize,
}

impl TaskVisitor for Bench {
    type Output = Result<()>;

    fn visit<T: Task>(self, task: &T) -> Result<()> {
        let (d, k, n) = (task.dim(), task.observation_dim(), self.simulations);
        println!(
            "{}: {n} simulations with joint score (d = {d}, k = {k}), {} threads",
            task.task(),
            rayon::current_num_threads()
        );
        report_repeats(self.repeats, n as f64, "simulation", |r| {
            let scores: Vec<Vec<f64>> = (0..n.div_ceil(CHUNK))
                .into_par_iter()
                .map(|item| -> Result<Vec<f64>> {
                    let m = CHUNK.min(n - item * CHUNK);
                    let (mut th, mut x, mut g) =
                        (vec![0.0; m * d], vec![0.0; m * k], vec![0.0; m * d]);
                    task.simulate_batch(&mut stream(r, item as u64), &mut th, &mut x, &mut g)?;
                    Ok(g)
                })
                .collect::<Result<_>>()?;
            let f = estimate_score_constant(&scores.concat(), d)?;
            Ok(format!(", F = {:.3} ± {:.3}", f.value, f.std_err))
        })?;
        if self.observations == 0 {
            return Ok(());
        }
        let mut seconds = Vec::new();
        let (mut th, mut z, mut x, mut g) =
            (vec![0.0; d], task.new_latent(), vec![0.0; k], vec![0.0; d]);
        for o in 0..self.observations {
            task.simulate(
                &mut stream(1_000, o as u64),
                &mut th,
                &mut z,
                &mut x,
                &mut g,
            );
            let start = Instant::now();
            let posterior = task.reference_posterior(&x)?;
            let wall = start.elapsed().as_secs_f64();
            println!(
                "  reference posterior {o}: {wall:.3} s (θ* = {th:.3?}, mean {:.3?}, sd {:.3?})",
                posterior.mean(),
                posterior.sd()
            );
            seconds.push(wall);
        }
        let rest = &seconds[1.min(seconds.len() - 1)..];
        println!(
            "  reference posterior: first {:.3} s, then {:.3} s per observation (mean of {}; 1 thread)",
            seconds[0],
            rest.iter().sum::<f64>() / rest.len() as f64,
            rest.len()
        );
        Ok(())
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let (simulations, observations) = if args.quick {
        (100_000, 1)
    } else {
        (args.simulations, args.observations)
    };
    let tasks = match args.task {
        Some(task) => vec![task],
        None => SbiTask::ALL.to_vec(),
    };
    if args.dry_run {
        println!(
            "dry run: would time {} task(s): {} × {simulations} simulations, {observations} \
             reference posteriors",
            tasks.len(),
            args.repeats
        );
        return Ok(());
    }
    for task in tasks {
        task.visit(Bench {
            repeats: args.repeats,
            simulations,
            observations,
        })?;
    }
    Ok(())
}
