//! Benchmark of the Monte Carlo score estimators: the full Fig. 2 computation
//! (4 targets × 99 t × 10,000 x_t × 100 posterior draws = 4·10⁸ draws), timed end to end.
//!
//! `cargo xtask bench mc [--quick] [--repeats N]`

use std::time::Instant;

use clap::Parser;
use tsm_core::schedule::Cosine;
use tsm_experiments::estimator_variance::{compute, Sizes};
use tsm_targets::named;

/// Times the full Fig. 2 Monte Carlo computation and prints posterior draws per second.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Use the reduced sizes of `--quick` figure runs
    #[arg(long)]
    quick: bool,
    /// Number of timed repetitions (the best and the median are reported)
    #[arg(long, default_value_t = 3)]
    repeats: usize,
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
    let mut walls = Vec::new();
    for r in 0..args.repeats.max(1) {
        let start = Instant::now();
        let rows = compute(&targets, &Cosine, sizes, r as u64)?;
        let wall = start.elapsed().as_secs_f64();
        std::hint::black_box(rows);
        println!(
            "  run {r}: {wall:.3} s wall, {:.3e} draws/s",
            draws as f64 / wall
        );
        walls.push(wall);
    }
    walls.sort_by(f64::total_cmp);
    let (best, median) = (walls[0], walls[walls.len() / 2]);
    println!(
        "best {best:.3} s ({:.3e} draws/s, {:.2} ns/draw/thread); median {median:.3} s",
        draws as f64 / best,
        best * 1e9 * rayon::current_num_threads() as f64 / draws as f64
    );
    Ok(())
}
