//! Benchmark of the self-normalised importance-sampling score estimator (`tsm_core::snis`):
//! `K = 1,000` proposals at each of 10,000 points `x_t ~ p_t` of `N(0, I_32)` (cosine schedule,
//! `t` cycling over `0.05 … 0.95`), DSI, TSI and `κ` estimated on the same proposals, in
//! parallel with rayon (one estimator per work item, seeded by `rng::stream`).
//!
//! `cargo xtask bench snis [--quick] [--repeats N] [--dim D] [--points P] [--proposals K]`

use anyhow::Result;
use clap::Parser;
use rand::Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use tsm_core::identity::{Coefficients, ScoreIdentity};
use tsm_core::schedule::{Cosine, Schedule};
use tsm_core::snis::ImportanceSampledScore;
use tsm_experiments::bench::report_repeats;
use tsm_experiments::cli::{count, usage_error};
use tsm_targets::GaussianMixture;

/// Times SNIS score estimation and prints the wall time and proposals per second.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Reduced sizes (1,000 points) for a smoke run
    #[arg(long)]
    quick: bool,
    /// Number of timed repetitions, 1 to 1000 (the best and the median are reported)
    #[arg(long, default_value_t = 3, value_parser = count::<usize>(1..=1000))]
    repeats: usize,
    /// Dimension d of the Gaussian target N(0, I_d), 1 to 4096
    #[arg(long, default_value_t = 32, value_parser = count::<usize>(1..=4096))]
    dim: usize,
    /// Number of points x_t, 1 to 10⁷
    #[arg(long, default_value_t = 10_000, value_parser = count::<usize>(1..=10_000_000))]
    points: usize,
    /// Proposals K per point, 2 to 10⁶
    #[arg(long, default_value_t = 1_000, value_parser = count::<usize>(2..=1_000_000))]
    proposals: usize,
    /// Check the flags, print what would run, and exit
    #[arg(long)]
    dry_run: bool,
}

/// The most `repeats × points × proposals × dim` (the default is 10⁹; this is hours).
const MAX_WORK: u128 = 10_000_000_000_000;

/// Points per rayon work item (each item owns one estimator and one random stream).
const CHUNK: usize = 64;

/// One full pass; returns a checksum of the estimates (so nothing is optimised away) and the
/// mean ESS.
fn run_once(
    target: &GaussianMixture,
    dim: usize,
    points: usize,
    proposals: usize,
    seed: u64,
) -> Result<(f64, f64)> {
    let times: Vec<f64> = (1..=19).map(|k| k as f64 / 20.0).collect();
    let ids = [
        ScoreIdentity::Dsi,
        ScoreIdentity::Tsi,
        ScoreIdentity::kappa(1.0),
    ];
    let items = points.div_ceil(CHUNK);
    let parts = (0..items)
        .into_par_iter()
        .map(|item| -> Result<(f64, f64)> {
            let mut rng = tsm_core::rng::stream(seed, item as u64);
            let mut snis: Option<ImportanceSampledScore> = None;
            let mut x_t = vec![0.0; dim];
            let (mut checksum, mut ess) = (0.0, 0.0);
            let end = ((item + 1) * CHUNK).min(points);
            for p in item * CHUNK..end {
                let t = times[p % times.len()];
                let coeffs = ids
                    .iter()
                    .map(|id| id.coefficients(&Cosine, t))
                    .collect::<tsm_core::Result<Vec<Coefficients>>>()?;
                let est = match snis.as_mut() {
                    Some(s) => {
                        s.set_coefficients(&coeffs)?;
                        s
                    }
                    None => snis.insert(ImportanceSampledScore::new(dim, &coeffs)),
                };
                // x_t ~ p_t = N(0, (α_t² + σ_t²) I) = N(0, I) for the cosine schedule.
                let scale = (Cosine.alpha(t).powi(2) + Cosine.sigma_sq(t)).sqrt();
                for x in x_t.iter_mut() {
                    *x = scale * rng.sample::<f64, _>(StandardNormal);
                }
                est.run(target, &Cosine, t, &x_t, proposals, &mut rng)?;
                checksum += est.mean(0, 0)? + est.mean(1, 0)? + est.mean(2, 0)?;
                ess += est.ess()?;
            }
            Ok((checksum, ess))
        })
        .collect::<Result<Vec<_>>>()?;
    let (checksum, ess) = parts
        .iter()
        .fold((0.0, 0.0), |(c, e), &(pc, pe)| (c + pc, e + pe));
    Ok((checksum, ess / points as f64))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let points = if args.quick {
        args.points.min(1_000)
    } else {
        args.points
    };
    let work = args.repeats as u128 * points as u128 * args.proposals as u128 * args.dim as u128;
    if work > MAX_WORK {
        usage_error::<Args>(format!(
            "--repeats × --points × --proposals × --dim is {work:.1e}, more than {MAX_WORK:.0e} \
             (hours of work); lower them"
        ));
    }
    if args.dry_run {
        println!(
            "dry run: would time SNIS with d = {}, {points} points × {} proposals, {} repeats",
            args.dim, args.proposals, args.repeats
        );
        return Ok(());
    }
    let target = GaussianMixture::gaussian(args.dim, 1.0)?;
    let total = points as f64 * args.proposals as f64;
    println!(
        "SNIS score: d = {}, {} points x {} proposals = {:.3e} proposals, 3 identities, {} threads",
        args.dim,
        points,
        args.proposals,
        total,
        rayon::current_num_threads()
    );
    report_repeats(args.repeats, total, "proposal", |r| {
        let (checksum, mean_ess) = run_once(&target, args.dim, points, args.proposals, r)?;
        std::hint::black_box(checksum);
        Ok(format!(", mean ESS {mean_ess:.1}"))
    })?;
    Ok(())
}
