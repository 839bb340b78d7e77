//! The reverse-time geodesic random walk on `𝕋²` and `SO(3)` (De Bortoli et al. 2022,
//! *Riemannian score-based generative modelling*, Alg. 1; `tsm_core::lie::sampler`) run with
//! the exact noised scores of the mixtures of `tsm_targets::lie`, against exact draws of the
//! target.
//!
//! Every comparison is two-sample, with fixed seeds: a z-statistic `(m̂₁ − m̂₂)/√(v̂₁/n₁ + v̂₂/n₂)`
//! below 5 (shares and circular means), and Kolmogorov–Smirnov at level `α = 10⁻³`
//! (critical value `√(−½ ln(α/2)) √((n₁ + n₂)/(n₁n₂))`, `√(−½ ln(5·10⁻⁴)) = 1.949`). Negative
//! controls (a score with the wrong sign, the drift coefficient ½ instead of 1, the spatial
//! score taken as body) must fail the same test.

use std::f64::consts::PI;
use std::ops::ControlFlow;

use tsm_core::lie::sampler::{geodesic_random_walk, haar_draws, GroupScore, GroupStep, HeatGrid};
use tsm_core::lie::so3::{exp, Rotation, So3};
use tsm_core::lie::torus::{wrap, Torus, TorusPoint};
use tsm_core::lie::{LieError, LieGroup};
use tsm_targets::lie::{So3Mixture, TorusMixture};

/// A scalar statistic of a torus point's angles.
type AngleFeature = dyn Fn(&[f64]) -> f64;
/// A scalar statistic of a rotation.
type RotationFeature = dyn Fn(&Rotation) -> f64;

/// KS level `α = 10⁻³`: `c(α) = √(−½ ln(α/2))`.
const KS_C: f64 = 1.949;
/// z-statistics are accepted below 5.
const Z_MAX: f64 = 5.0;

/// The two-sample Kolmogorov–Smirnov statistic `sup |F̂₁ − F̂₂|`.
fn ks(mut a: Vec<f64>, mut b: Vec<f64>) -> f64 {
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n - j as f64 / m).abs());
    }
    d
}

/// The KS statistic over its critical value at `α = 10⁻³` (fails above 1).
fn ks_ratio(a: Vec<f64>, b: Vec<f64>) -> f64 {
    let (n, m) = (a.len() as f64, b.len() as f64);
    ks(a, b) / (KS_C * ((n + m) / (n * m)).sqrt())
}

/// The two-sample z of the means of `a` and `b`.
fn z(a: &[f64], b: &[f64]) -> f64 {
    let mv = |v: &[f64]| {
        let n = v.len() as f64;
        let m = v.iter().sum::<f64>() / n;
        (
            m,
            v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0) / n,
        )
    };
    let ((m1, v1), (m2, v2)) = (mv(a), mv(b));
    (m1 - m2) / (v1 + v2).sqrt()
}

/// The largest `|z|` and the largest KS ratio of a comparison, and whether it passes.
#[derive(Debug, Default)]
struct Verdict {
    max_z: f64,
    max_ks: f64,
}

impl Verdict {
    fn z(&mut self, a: &[f64], b: &[f64]) {
        self.max_z = self.max_z.max(z(a, b).abs());
    }
    fn ks(&mut self, a: Vec<f64>, b: Vec<f64>) {
        self.max_ks = self.max_ks.max(ks_ratio(a, b));
    }
    fn passes(&self) -> bool {
        self.max_z < Z_MAX && self.max_ks < 1.0
    }
}

/// A score times a constant: `−1` flips its sign, `½` is the probability-flow coefficient
/// used with the full noise (the drift coefficient in heat time is 1).
struct Scaled<S>(S, f64);

impl<G: LieGroup, S: GroupScore<G>> GroupScore<G> for Scaled<S> {
    fn noised_score(&mut self, x: &[G::Element], t: f64, out: &mut [f64]) -> Result<(), LieError> {
        self.0.noised_score(x, t, out)?;
        out.iter_mut().for_each(|o| *o *= self.1);
        Ok(())
    }
}

/// The spatial score `R ξ` handed over as body coordinates (a wrong frame).
struct SpatialAsBody(So3Mixture);

impl GroupScore<So3> for SpatialAsBody {
    fn noised_score(&mut self, x: &[Rotation], t: f64, out: &mut [f64]) -> Result<(), LieError> {
        self.0.noised_score(x, t, out)?;
        for (r, o) in x.iter().zip(out.chunks_exact_mut(3)) {
            let s = r.apply(&[o[0], o[1], o[2]]);
            o.copy_from_slice(&s);
        }
        Ok(())
    }
}

/// A zero score (the walk is then pure noise): for the last-step test.
struct Zero;

impl<G: LieGroup> GroupScore<G> for Zero {
    fn noised_score(
        &mut self,
        _x: &[G::Element],
        _t: f64,
        out: &mut [f64],
    ) -> Result<(), LieError> {
        out.fill(0.0);
        Ok(())
    }
}

fn torus_mixture() -> TorusMixture {
    TorusMixture::new(
        &[0.5, 0.3, 0.2],
        &[vec![-2.0, 2.5], vec![1.0, -0.5], vec![3.0, 3.0]],
        &[vec![0.3, 0.5], vec![0.6, 0.2], vec![0.4, 0.4]],
    )
    .expect("mixture")
}

fn so3_mixture() -> So3Mixture {
    So3Mixture::new(
        &[0.5, 0.3, 0.2],
        &[
            exp(&[1.0, 0.5, -0.3]),
            exp(&[-1.2, 0.8, 1.5]),
            exp(&[0.2, -2.0, 0.4]),
        ],
        &[0.09, 0.25, 0.16],
    )
    .expect("mixture")
}

/// Torus: `τ` from 30 (Haar within `≈ 1.2·10⁻⁶`) to `10⁻³`, 200 steps uniform in `ln τ`.
const TORUS_T_MAX: f64 = 30.0;
/// SO(3): `τ` from 15 (Haar within `≈ 2.8·10⁻⁶`) to `10⁻³`.
const SO3_T_MAX: f64 = 15.0;
const T_MIN: f64 = 1e-3;
const STEPS: usize = 200;

/// The walk's draws on `𝕋²` (from Haar) compared with exact draws of `p_{τ_N}`: the shares of
/// the nearest mean, the circular means `E[cos x_c]`, `E[sin x_c]` (z < 5), and KS on
/// `x₁`, `x₂`, `x₁ + x₂`, `x₁ − x₂` (wrapped).
fn torus_verdict<S: GroupScore<Torus>>(score: &mut S, seed: u64) -> Verdict {
    let n = 4000;
    let target = torus_mixture();
    let torus = Torus::new(2).expect("torus");
    let grid = HeatGrid::geometric(TORUS_T_MAX, T_MIN, STEPS).expect("grid");
    let mut rng = tsm_core::rng::stream(seed, 0);
    let mut x = haar_draws(&torus, n, &mut rng);
    geodesic_random_walk(&torus, score, &mut x, &grid, &mut rng, None).expect("walk");
    let exact_target = target.noised(T_MIN).expect("noised");
    let y: Vec<TorusPoint> = (0..n).map(|_| exact_target.sample(&mut rng)).collect();

    let means = [[-2.0, 2.5], [1.0, -0.5], [3.0, 3.0]];
    let nearest = |p: &TorusPoint| {
        let a = p.angles();
        (0..3)
            .min_by(|&i, &j| {
                let d = |k: usize| {
                    (0..2)
                        .map(|c| wrap(a[c] - means[k][c]).powi(2))
                        .sum::<f64>()
                };
                d(i).total_cmp(&d(j))
            })
            .unwrap_or(0)
    };
    let mut v = Verdict::default();
    for k in 0..3 {
        let share = |ps: &[TorusPoint]| -> Vec<f64> {
            ps.iter()
                .map(|p| f64::from(u8::from(nearest(p) == k)))
                .collect()
        };
        v.z(&share(&x), &share(&y));
    }
    let feature = |ps: &[TorusPoint], f: &AngleFeature| -> Vec<f64> {
        ps.iter().map(|p| f(p.angles())).collect()
    };
    for c in 0..2 {
        let cos = move |a: &[f64]| a[c].cos();
        let sin = move |a: &[f64]| a[c].sin();
        v.z(&feature(&x, &cos), &feature(&y, &cos));
        v.z(&feature(&x, &sin), &feature(&y, &sin));
    }
    let projections: [&AngleFeature; 4] = [&|a| a[0], &|a| a[1], &|a| wrap(a[0] + a[1]), &|a| {
        wrap(a[0] - a[1])
    }];
    for f in projections {
        v.ks(feature(&x, f), feature(&y, f));
    }
    v
}

/// The walk's draws on `SO(3)` (from Haar) compared with exact draws of `p_{τ_N}` by KS: the
/// rotation angle `ω(R)`, the distances `ω(μⱼᵀR)` to the three means, and the projections
/// `eₖ·R eₖ` of the frame's axes.
fn so3_verdict<S: GroupScore<So3>>(score: &mut S, seed: u64) -> Verdict {
    let n = 3000;
    let target = so3_mixture();
    let grid = HeatGrid::geometric(SO3_T_MAX, T_MIN, STEPS).expect("grid");
    let mut rng = tsm_core::rng::stream(seed, 0);
    let mut x = haar_draws(&So3, n, &mut rng);
    geodesic_random_walk(&So3, score, &mut x, &grid, &mut rng, None).expect("walk");
    let exact_target = target.noised(T_MIN).expect("noised");
    let y: Vec<Rotation> = (0..n).map(|_| exact_target.sample(&mut rng)).collect();

    let means = [
        exp(&[1.0, 0.5, -0.3]),
        exp(&[-1.2, 0.8, 1.5]),
        exp(&[0.2, -2.0, 0.4]),
    ];
    let mut features: Vec<Box<RotationFeature>> = vec![Box::new(|r| r.angle())];
    for m in means {
        features.push(Box::new(move |r| m.tmul(r).angle()));
    }
    for k in 0..3 {
        features.push(Box::new(move |r| r.matrix()[k][k]));
    }
    let mut v = Verdict::default();
    for f in &features {
        v.ks(x.iter().map(f).collect(), y.iter().map(f).collect());
    }
    v
}

/// With the exact score the walk's draws on `𝕋²` match exact draws; the score with the wrong
/// sign and the drift coefficient ½ (with the full noise) fail the same test.
#[test]
fn torus_walk_matches_exact_draws_and_controls_fail() {
    let exact = torus_verdict(&mut torus_mixture(), 61);
    eprintln!("torus, exact score: {exact:?}");
    assert!(exact.passes(), "exact score rejected: {exact:?}");
    let flipped = torus_verdict(&mut Scaled(torus_mixture(), -1.0), 61);
    eprintln!("torus, −score: {flipped:?}");
    assert!(!flipped.passes(), "sign-flipped score not rejected");
    let half = torus_verdict(&mut Scaled(torus_mixture(), 0.5), 61);
    eprintln!("torus, ½·score: {half:?}");
    assert!(!half.passes(), "drift coefficient ½ not rejected");
}

/// With the exact body score the walk's draws on `SO(3)` match exact draws; the spatial score
/// `Rξ` taken as body and the score with the wrong sign fail the same test.
#[test]
fn so3_walk_matches_exact_draws_and_controls_fail() {
    let exact = so3_verdict(&mut so3_mixture(), 62);
    eprintln!("SO(3), exact body score: {exact:?}");
    assert!(exact.passes(), "exact score rejected: {exact:?}");
    let spatial = so3_verdict(&mut SpatialAsBody(so3_mixture()), 62);
    eprintln!("SO(3), spatial as body: {spatial:?}");
    assert!(!spatial.passes(), "spatial-frame score not rejected");
    let flipped = so3_verdict(&mut Scaled(so3_mixture(), -1.0), 62);
    eprintln!("SO(3), −score: {flipped:?}");
    assert!(!flipped.passes(), "sign-flipped score not rejected");
}

/// No noise on the last step: with a zero score every step but the last moves the state, the
/// last leaves it exactly as it was; and a one-step walk is deterministic (two seeds agree).
#[test]
fn no_noise_on_the_last_step() {
    let torus = Torus::new(2).expect("torus");
    let grid = HeatGrid::from_times(vec![1.0, 0.5, 0.25, 0.1]).expect("grid");
    let mut rng = tsm_core::rng::stream(63, 0);
    let start = haar_draws(&torus, 5, &mut rng);
    let mut x = start.clone();
    let mut states: Vec<Vec<TorusPoint>> = Vec::new();
    let mut record = |s: &GroupStep<'_, Torus>| {
        states.push(s.x.to_vec());
        ControlFlow::Continue(())
    };
    let done = geodesic_random_walk(
        &torus,
        &mut Zero,
        &mut x,
        &grid,
        &mut rng,
        Some(&mut record),
    )
    .expect("walk");
    assert_eq!((done.steps, done.stopped_early), (3, false));
    assert_ne!(states[0], start);
    assert_ne!(states[1], states[0]);
    assert_eq!(states[2], states[1]);
    assert_eq!(x, states[2]);

    // One step with the exact score on SO(3): the drift only, the same for any seed.
    let one = HeatGrid::from_times(vec![0.5, 0.1]).expect("grid");
    let start = haar_draws(&So3, 5, &mut rng);
    let run = |seed: u64| {
        let mut x = start.clone();
        let mut rng = tsm_core::rng::stream(seed, 0);
        geodesic_random_walk(&So3, &mut so3_mixture(), &mut x, &one, &mut rng, None).expect("walk");
        x
    };
    let (a, b) = (run(1), run(2));
    assert_eq!(a, b);
    assert_ne!(a, start);
}

/// The callback can stop the run; the outcome says so.
#[test]
fn the_callback_stops_the_run() {
    let grid = HeatGrid::geometric(10.0, 0.01, 6).expect("grid");
    let mut rng = tsm_core::rng::stream(64, 0);
    let mut x = haar_draws(&So3, 3, &mut rng);
    let mut stop = |s: &GroupStep<'_, So3>| {
        if s.index == 1 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let done = geodesic_random_walk(
        &So3,
        &mut so3_mixture(),
        &mut x,
        &grid,
        &mut rng,
        Some(&mut stop),
    )
    .expect("walk");
    assert_eq!((done.steps, done.stopped_early), (2, true));
}

/// Bad input is a typed error: an empty or one-time grid, unordered times, an output buffer of
/// the wrong length, a point of another dimension, a non-positive time.
#[test]
fn bad_input_is_a_typed_error() {
    assert!(matches!(
        HeatGrid::from_times(vec![]),
        Err(LieError::GridSize { points: 0, .. })
    ));
    assert!(matches!(
        HeatGrid::from_times(vec![1.0]),
        Err(LieError::GridSize { points: 1, .. })
    ));
    assert!(matches!(
        HeatGrid::from_times(vec![1.0, 2.0]),
        Err(LieError::Unordered { index: 1, .. })
    ));

    let mut torus_target = torus_mixture();
    let p = TorusPoint::new(&[0.1, PI - 0.1]).expect("point");
    let mut out = [0.0; 3];
    assert!(matches!(
        torus_target.noised_score(std::slice::from_ref(&p), 0.1, &mut out),
        Err(LieError::DimMismatch {
            expected: 2,
            got: 3,
            ..
        })
    ));
    let q = TorusPoint::new(&[0.1]).expect("point");
    let mut out = [0.0; 1];
    assert!(matches!(
        torus_target.noised_score(std::slice::from_ref(&q), 0.1, &mut out),
        Err(LieError::DimMismatch { .. })
    ));
    let mut out = [0.0; 2];
    assert!(matches!(
        torus_target.noised_score(std::slice::from_ref(&p), 0.0, &mut out),
        Err(LieError::NonPositive { .. })
    ));
    let mut so3_target = so3_mixture();
    let mut out = [0.0; 4];
    assert!(matches!(
        so3_target.noised_score(&[Rotation::IDENTITY], 0.1, &mut out),
        Err(LieError::DimMismatch {
            expected: 3,
            got: 4,
            ..
        })
    ));

    // A point of 𝕋¹ in a walk on 𝕋².
    let torus = Torus::new(2).expect("torus");
    let grid = HeatGrid::geometric(1.0, 0.1, 2).expect("grid");
    let mut rng = tsm_core::rng::stream(65, 0);
    let mut x = vec![p, q];
    assert!(matches!(
        geodesic_random_walk(&torus, &mut torus_mixture(), &mut x, &grid, &mut rng, None),
        Err(LieError::DimMismatch {
            expected: 2,
            got: 1,
            ..
        })
    ));
}
