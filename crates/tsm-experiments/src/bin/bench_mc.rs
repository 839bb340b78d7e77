//! Benchmark of the Monte Carlo score estimators: the full Fig. 2 computation
//! (4 targets × 99 t × 10,000 x_t × 100 posterior draws = 4·10⁸ draws), timed end to end.
//!
//! `cargo xtask bench mc [--quick] [--repeats N]`

use clap::Parser;
use tsm_core::schedule::Cosine;
use tsm_experiments::bench::report_repeats;
use tsm_experiments::cli::count;
use tsm_experiments::estimator_variance::{compute, Sizes};
use tsm_targets::named;

/// Times the full Fig. 2 Monte Carlo computation and prints posterior draws per second.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Use the reduced sizes of `--quick` figure runs
    #[arg(long)]
    quick: bool,
    /// Number of timed repetitions, 1 to 1000 (the best and the median are reported)
    #[arg(long, default_value_t = 3, value_parser = count::<usize>(1..=1000))]
    repeats: usize,
    /// Check the flags, print what would run, and exit
    #[arg(long)]
    dry_run: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sizes = if args.quick {
        Sizes::QUICK
    } else {
        Sizes::FULL
    };
    let targets = named::figure_targets();
    let draws = sizes.total_draws(targets.len());
    println!(
        "Fig. 2 Monte Carlo: {} targets x {} t x {} points x {} draws = {:.3e} posterior draws, {} threads",
        targets.len(),
        sizes.time_steps - 1,
        sizes.points,
        sizes.draws,
        draws as f64,
        rayon::current_num_threads()
    );
    if args.dry_run {
        return Ok(());
    }
    report_repeats(args.repeats, draws as f64, "draw", |r| {
        std::hint::black_box(compute(&targets, &Cosine, sizes, r)?);
        Ok(String::new())
    })?;
    Ok(())
}
