//! Simulation-based calibration (Talts et al., 2018) of the SBI tasks' reference posteriors:
//! over prior-predictive pairs `(θ*, x)`, the rank of each coordinate of `θ*` among `L` draws
//! from the reference posterior at `x` must be uniform. Each coordinate's normalised ranks
//! `(rank + U)/(L + 1)` are tested with Kolmogorov–Smirnov at significance `10⁻³` per
//! coordinate (fixed seeds, so each test is deterministic; a correct posterior fails with
//! probability `≤ d · 10⁻³` over seeds).
//!
//! The suite runs small versions (`linear_gaussian` with 500 pairs, `galton_board` with 60,
//! `sir` with one observation on a reduced grid). The long versions are ignored by default:
//!
//! ```sh
//! cargo test --release -p tsm-targets --test sbi_reference -- --ignored
//! ```

use tsm_core::rng::stream;
use tsm_core::simulator::Simulator;
use tsm_core::target::Sample;
use tsm_targets::sbi::calibration::{ks_uniform, normalised_rank, rank};
use tsm_targets::sbi::{GaltonBoard, LinearGaussian, Posterior, Sir, SirGrid, Task};

const SEED: u64 = 77;
const SIGNIFICANCE: f64 = 1e-3;

/// SBC over `pairs` prior-predictive pairs with `draws` posterior draws each; returns the
/// p-value of each coordinate.
fn sbc<T: Task>(
    task: &T,
    reference: impl Fn(&T, &[f64]) -> Posterior,
    pairs: usize,
    draws: usize,
    seed: u64,
) -> Vec<f64> {
    let (d, k) = (task.dim(), task.observation_dim());
    let mut normalised = vec![Vec::with_capacity(pairs); d];
    let (mut theta, mut z, mut x, mut g) =
        (vec![0.0; d], task.new_latent(), vec![0.0; k], vec![0.0; d]);
    for p in 0..pairs {
        let mut rng = stream(seed, p as u64);
        task.simulate(&mut rng, &mut theta, &mut z, &mut x, &mut g);
        let posterior = reference(task, &x);
        let samples = posterior.sample_n(&mut rng, draws);
        for j in 0..d {
            let r = rank(theta[j], samples.chunks_exact(d).map(|s| s[j]));
            normalised[j].push(normalised_rank(r, draws, &mut rng));
        }
    }
    normalised
        .iter()
        .map(|u| ks_uniform(u).unwrap().p_value)
        .collect()
}

fn check(name: &str, p_values: &[f64]) {
    for (j, &p) in p_values.iter().enumerate() {
        assert!(
            p > SIGNIFICANCE,
            "{name}: SBC ranks of θ{} are not uniform (KS p = {p:.2e}); all p-values {p_values:?}",
            j + 1
        );
    }
}

fn reference<T: Task>(task: &T, x: &[f64]) -> Posterior {
    task.reference_posterior(x).unwrap()
}

#[test]
fn linear_gaussian_reference_is_calibrated() {
    check(
        "linear_gaussian",
        &sbc(&LinearGaussian, reference, 500, 99, SEED),
    );
}

#[test]
fn a_miscalibrated_posterior_fails_the_check() {
    // The test can fail: the exact posterior with its sd halved (over-confident) is rejected.
    let narrow = |task: &LinearGaussian, x: &[f64]| match task.reference_posterior(x).unwrap() {
        Posterior::Gaussian(mut g) => {
            g.sd.iter_mut().for_each(|s| *s *= 0.5);
            Posterior::Gaussian(g)
        }
        other => other,
    };
    let p = sbc(&LinearGaussian, narrow, 500, 99, SEED);
    assert!(p.iter().all(|&p| p < SIGNIFICANCE), "{p:?}");
}

#[test]
fn galton_board_reference_is_calibrated() {
    // 60 pairs: each reference posterior costs one pass over the 600 × 600 grid (the table of
    // bin laws is built once and shared).
    let task = GaltonBoard::new();
    check("galton_board", &sbc(&task, reference, 60, 99, SEED));
}

#[test]
fn sir_reference_on_a_reduced_grid() {
    // One prior-predictive observation on a 20 × 20 coarse and 32 × 32 fine grid (the default
    // is 60 and 120): the coarse-to-fine box holds the posterior (outer-ring mass checked),
    // lies inside [−6, 6]², and the truth is within 6 posterior sds of the mean.
    let task = Sir::new();
    let (mut theta, mut z, mut x, mut g) = ([0.0; 2], task.new_latent(), [0.0; 30], [0.0; 2]);
    task.simulate(&mut stream(SEED, 9), &mut theta, &mut z, &mut x, &mut g);
    let grid = SirGrid {
        coarse_cells: 20,
        fine_cells: 32,
        ..SirGrid::default()
    };
    let Posterior::Grid(post) = task.reference_posterior_with(&x, grid).unwrap() else {
        panic!("sir's reference is a grid posterior");
    };
    assert!(post.ring_mass() < 1e-6);
    let (lo, hi) = (post.lo(), post.hi());
    for j in 0..2 {
        assert!(-6.0 <= lo[j] && lo[j] < hi[j] && hi[j] <= 6.0);
        // The fine box is narrower than the prior's: the observation is informative.
        assert!(hi[j] - lo[j] < 12.0);
        let zscore = (theta[j] - post.mean()[j]) / post.sd()[j];
        assert!(
            zscore.abs() < 6.0,
            "θ*={theta:?} mean {:?} sd {:?}",
            post.mean(),
            post.sd()
        );
    }
    // Draws stay in the box.
    let mut s = [0.0; 2];
    let mut rng = stream(SEED, 10);
    for _ in 0..1000 {
        post.sample_into(&mut rng, &mut s);
        assert!((0..2).all(|j| lo[j] <= s[j] && s[j] <= hi[j]));
    }
}

#[test]
#[ignore = "long: about 30 s in release"]
fn galton_board_reference_is_calibrated_long() {
    let task = GaltonBoard::new();
    check("galton_board", &sbc(&task, reference, 1_000, 99, SEED + 1));
}

#[test]
#[ignore = "long: about 5 minutes in release (the default grids, ~6 s per observation)"]
fn sir_reference_is_calibrated_long() {
    check("sir", &sbc(&Sir::new(), reference, 50, 99, SEED + 2));
}
