//! The samplers against a target whose noised score is known in closed form:
//! `p_0 = N(m, v I_d)`, so `p_t = N(α_t m, (α_t² v + σ_t²) I_d)`.

use std::cell::Cell;
use std::rc::Rc;

use rand::RngCore;

use super::*;
use crate::schedule::{AnySchedule, Cosine};
use crate::target::Dim;

/// The exact noised score of `N(m, v I_d)` under `schedule` (also the likelihood tests').
pub(crate) struct GaussianScore<S> {
    pub(crate) mean: Vec<f64>,
    pub(crate) var: f64,
    pub(crate) schedule: S,
}

impl<S> Dim for GaussianScore<S> {
    fn dim(&self) -> usize {
        self.mean.len()
    }
}

impl<S: Schedule> NoisedScore for GaussianScore<S> {
    fn noised_score(&mut self, x: &[f64], t: f64, out: &mut [f64]) -> Result<()> {
        let (a, s2) = (self.schedule.alpha(t), self.schedule.sigma_sq(t));
        let var = a * a * self.var + s2;
        let d = self.mean.len();
        for (xi, oi) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
            for ((o, x), m) in oi.iter_mut().zip(xi).zip(&self.mean) {
                *o = -(x - a * m) / var;
            }
        }
        Ok(())
    }
}

fn gaussian(mean: &[f64], var: f64) -> GaussianScore<Cosine> {
    GaussianScore {
        mean: mean.to_vec(),
        var,
        schedule: Cosine,
    }
}

fn all_samplers() -> [Sampler; 6] {
    [
        Sampler::DDIM,
        Sampler::Ddim { eta: 1.0 },
        Sampler::EulerMaruyama,
        Sampler::Heun,
        Sampler::predictor_corrector(),
        Sampler::PredictorCorrector {
            snr: 0.1,
            corrector_steps: 3,
        },
    ]
}

/// An RNG that counts the words it hands out.
struct CountingRng<R> {
    inner: R,
    draws: Rc<Cell<u64>>,
}

impl<R: RngCore> RngCore for CountingRng<R> {
    fn next_u32(&mut self) -> u32 {
        self.draws.set(self.draws.get() + 1);
        self.inner.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.draws.set(self.draws.get() + 1);
        self.inner.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.draws.set(self.draws.get() + 1);
        self.inner.fill_bytes(dest);
    }
}

#[test]
fn names_round_trip_and_unknown_names_list_the_valid_ones() {
    for s in all_samplers() {
        assert_eq!(s.to_string().parse::<Sampler>().expect("parse"), s);
    }
    assert_eq!(Sampler::EulerMaruyama.to_string(), "em");
    assert_eq!(Sampler::predictor_corrector().to_string(), "pc");
    assert_eq!(
        "pc=0.2".parse::<Sampler>().expect("pc=0.2"),
        Sampler::PredictorCorrector {
            snr: 0.2,
            corrector_steps: 1
        }
    );
    assert_eq!(
        "pc=0.16,0".parse::<Sampler>().expect("pc").to_string(),
        "pc=0.16,0"
    );
    assert_eq!("ddim".parse::<Sampler>().expect("ddim"), Sampler::DDIM);
    assert_eq!(Sampler::DDIM.to_string(), "ddim");
    assert_eq!(Sampler::Ddim { eta: 0.3 }.to_string(), "ddim=0.3");
    assert_eq!(
        "ddim=1".parse::<Sampler>().expect("ddim=1"),
        Sampler::Ddim { eta: 1.0 }
    );
    let err = "euler".parse::<Sampler>().expect_err("unknown");
    assert_eq!(
        err.to_string(),
        "unknown sampler `euler`; valid names: em, heun, pc, pc=R, pc=R,K, ddim, ddim=ETA"
    );
    for bad in [
        "pc=x",
        "pc=0.1,-1",
        "pc=0.1,1.5",
        "pc=",
        "em=1",
        "ddim=",
        "ddim=x",
    ] {
        assert!(
            matches!(bad.parse::<Sampler>(), Err(Error::UnknownName { .. })),
            "{bad}"
        );
    }
    for bad in ["ddim=1.5", "ddim=-0.1", "ddim=nan"] {
        assert!(
            matches!(
                bad.parse::<Sampler>(),
                Err(Error::OutOfRange { name: "eta", .. })
            ),
            "{bad}"
        );
    }
    for bad in ["pc=0", "pc=-0.1", "pc=nan", "pc=inf"] {
        assert!(
            matches!(
                bad.parse::<Sampler>(),
                Err(Error::NonPositive { name: "snr", .. })
            ),
            "{bad}"
        );
    }
}

/// The Euler–Maruyama sampler as it was before it moved to `tsm-core` (prior, grid and loop
/// verbatim): `SamplerConfig::sample` must reproduce it bit for bit, so that the figures'
/// CSVs do not change.
fn reference_em(
    score: &mut impl NoisedScore,
    schedule: &impl Schedule,
    cfg: &SamplerConfig,
    n: usize,
    rng: &mut impl Rng,
) -> Vec<f64> {
    let d = score.dim();
    let grid = cfg.grid(schedule).expect("grid").times().to_vec();
    let (a, s) = (schedule.alpha(cfg.t_max), schedule.sigma(cfg.t_max));
    let std = (s * s + a * a * cfg.data_variance).sqrt();
    let mut x: Vec<f64> = (0..n * d)
        .map(|_| std * rng.sample::<f64, _>(StandardNormal))
        .collect();
    let mut s = vec![0.0; n * d];
    for (k, w) in grid.windows(2).enumerate() {
        let (t, h) = (w[0], w[0] - w[1]);
        let (f, g2) = (schedule.drift(t), schedule.diffusion_sq(t));
        score.noised_score(&x, t, &mut s).expect("score");
        let last = k + 2 == grid.len();
        for (xi, si) in x.iter_mut().zip(&s) {
            *xi -= (f * *xi - g2 * si) * h;
            if !last {
                *xi += (g2 * h).sqrt() * rng.sample::<f64, _>(StandardNormal);
            }
        }
    }
    x
}

#[test]
fn euler_maruyama_reproduces_the_previous_implementation_bit_for_bit() {
    for schedule in AnySchedule::ALL {
        let name = schedule.name();
        let cfg = SamplerConfig {
            steps: 37,
            data_variance: 0.7,
            ..SamplerConfig::default()
        };
        let mut score = GaussianScore {
            mean: vec![1.0, -2.0],
            var: 0.7,
            schedule,
        };
        let mut rng = crate::rng::stream(3, 1);
        let new = cfg
            .sample(&mut score, &schedule, 50, &mut rng)
            .expect("run");
        let mut rng = crate::rng::stream(3, 1);
        let old = reference_em(&mut score, &schedule, &cfg, 50, &mut rng);
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&new), bits(&old), "{name}");
    }
}

#[test]
fn predictor_corrector_without_corrector_steps_is_euler_maruyama() {
    let grid = TimeGrid::log_snr(&Cosine, 0.999, 0.001, 25).expect("grid");
    let run = |sampler: Sampler| {
        let mut x = vec![0.3, -0.2, 1.5, 0.0];
        let mut rng = crate::rng::stream(9, 0);
        sampler
            .run(
                &mut gaussian(&[0.0, 1.0], 0.5),
                &mut x,
                &Cosine,
                &grid,
                &mut rng,
                None,
            )
            .expect("run");
        x
    };
    let pc0 = Sampler::PredictorCorrector {
        snr: 0.16,
        corrector_steps: 0,
    };
    assert_eq!(run(pc0), run(Sampler::EulerMaruyama));
}

#[test]
fn no_noise_is_added_on_the_last_step_by_any_sampler() {
    // A one-step grid from the same state with two different seeds: the same result.
    let grid = TimeGrid::from_times(vec![0.5, 0.3]).expect("grid");
    for sampler in all_samplers() {
        let run = |seed: u64| {
            let mut x = vec![0.7, -1.1, 0.2, 2.0];
            let mut rng = crate::rng::stream(seed, 0);
            sampler
                .run(
                    &mut gaussian(&[1.0, 0.0], 0.5),
                    &mut x,
                    &Cosine,
                    &grid,
                    &mut rng,
                    None,
                )
                .expect("run");
            x
        };
        assert_eq!(run(1), run(2), "{sampler}");
    }
    // On a longer grid: no random numbers are drawn after the second-to-last step.
    let grid = TimeGrid::log_snr(&Cosine, 0.999, 0.001, 10).expect("grid");
    for sampler in all_samplers() {
        let draws = Rc::new(Cell::new(0));
        let mut rng = CountingRng {
            inner: crate::rng::stream(4, 0),
            draws: Rc::clone(&draws),
        };
        let mut before_last = None;
        let mut record = |step: &Step<'_>| {
            if step.index + 2 == grid.steps() {
                before_last = Some(draws.get());
            }
            ControlFlow::Continue(())
        };
        let mut x = vec![0.5; 6];
        sampler
            .run(
                &mut gaussian(&[1.0, 0.0], 0.5),
                &mut x,
                &Cosine,
                &grid,
                &mut rng,
                Some(&mut record),
            )
            .expect("run");
        assert_eq!(before_last, Some(draws.get()), "{sampler}");
        // The stochastic samplers did draw before (the count can tell).
        if sampler.is_deterministic() {
            assert_eq!(draws.get(), 0, "{sampler}");
        } else {
            assert!(draws.get() > 0, "{sampler}");
        }
    }
}

#[test]
fn the_callback_sees_every_step_and_can_stop_early() {
    let grid = TimeGrid::uniform(0.9, 0.1, 8).expect("grid");
    for sampler in all_samplers() {
        let score = &mut gaussian(&[0.0], 1.0);
        // A full run, recording the trajectory.
        let mut trajectory = Vec::new();
        let mut x = vec![0.4, -0.4];
        let mut record = |s: &Step<'_>| {
            trajectory.push((s.index, s.t, s.t_next, s.x.to_vec()));
            ControlFlow::Continue(())
        };
        let mut rng = crate::rng::stream(2, 0);
        let done = sampler
            .run(score, &mut x, &Cosine, &grid, &mut rng, Some(&mut record))
            .expect("run");
        assert_eq!(
            done,
            Outcome {
                steps: 8,
                stopped_early: false
            }
        );
        assert_eq!(trajectory.len(), 8);
        for (k, (index, t, t_next, _)) in trajectory.iter().enumerate() {
            assert_eq!(
                (*index, *t, *t_next),
                (k, grid.times()[k], grid.times()[k + 1])
            );
        }
        assert_eq!(trajectory[7].3, x);
        // Stopped after step 2: the state after step 2 of the same run.
        let mut y = vec![0.4, -0.4];
        let mut stop = |s: &Step<'_>| {
            if s.index == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let mut rng = crate::rng::stream(2, 0);
        let done = sampler
            .run(score, &mut y, &Cosine, &grid, &mut rng, Some(&mut stop))
            .expect("run");
        assert_eq!(
            done,
            Outcome {
                steps: 3,
                stopped_early: true
            },
            "{sampler}"
        );
        assert_eq!(y, trajectory[2].3, "{sampler}");
    }
}

#[test]
fn samplers_draw_the_gaussian_target() {
    // p_0 = N((1, −2), 0.25 I), 4000 draws, 200 log-SNR steps. Fixed seeds; mean and
    // variance within 5 standard errors (the discretisation bias is below 2.5 of them).
    let (mean, var, n) = ([1.0, -2.0], 0.25, 4000);
    for schedule in AnySchedule::ALL {
        let name = schedule.name();
        for (k, sampler) in all_samplers().into_iter().enumerate() {
            let mut score = GaussianScore {
                mean: mean.to_vec(),
                var,
                schedule,
            };
            // Start from the exact p_{t_max} (the default prior is centred, and VE's
            // σ_max = 10 does not swamp a mean of 2).
            let grid = TimeGrid::log_snr(&schedule, 1.0 - 1e-3, 1e-3, 200).expect("grid");
            let (a, s2) = (
                schedule.alpha(grid.t_max()),
                schedule.sigma_sq(grid.t_max()),
            );
            let std = (a * a * var + s2).sqrt();
            let mut rng = crate::rng::stream(11, k as u64);
            let mut x: Vec<f64> = (0..n)
                .flat_map(|_| mean)
                .map(|m| a * m + std * rng.sample::<f64, _>(StandardNormal))
                .collect();
            sampler
                .run(&mut score, &mut x, &schedule, &grid, &mut rng, None)
                .expect("sample");
            for j in 0..2 {
                let col: Vec<f64> = x.iter().skip(j).step_by(2).copied().collect();
                let m = col.iter().sum::<f64>() / n as f64;
                let v = col.iter().map(|c| (c - m).powi(2)).sum::<f64>() / (n - 1) as f64;
                let se_m = (var / n as f64).sqrt();
                let se_v = var * (2.0 / (n - 1) as f64).sqrt();
                assert!(
                    (m - mean[j]).abs() < 5.0 * se_m,
                    "{name} {sampler}: mean {m} vs {}",
                    mean[j]
                );
                assert!(
                    (v - var).abs() < 5.0 * se_v,
                    "{name} {sampler}: var {v} vs {var}"
                );
            }
        }
    }
}

#[test]
fn bad_input_is_a_typed_error() {
    let grid = TimeGrid::uniform(0.9, 0.1, 4).expect("grid");
    let mut rng = crate::rng::stream(0, 0);
    for sampler in all_samplers() {
        let score = &mut gaussian(&[0.0, 0.0], 1.0);
        // A ragged state.
        let mut x = vec![0.0; 3];
        assert!(matches!(
            sampler.run(score, &mut x, &Cosine, &grid, &mut rng, None),
            Err(Error::OutOfRange {
                name: "x.len()",
                ..
            })
        ));
        // A non-finite start.
        let mut x = vec![0.0, f64::NAN];
        assert!(matches!(
            sampler.run(score, &mut x, &Cosine, &grid, &mut rng, None),
            Err(Error::NonFinite { .. })
        ));
        // The cosine schedule's drift is infinite at t = 1.
        let to_one = TimeGrid::uniform(1.0, 0.5, 4).expect("grid");
        let mut x = vec![0.0, 0.0];
        assert!(matches!(
            sampler.run(score, &mut x, &Cosine, &to_one, &mut rng, None),
            Err(Error::NonFinite { .. })
        ));
    }
    let bad_snr = Sampler::PredictorCorrector {
        snr: -1.0,
        corrector_steps: 1,
    };
    let mut x = vec![0.0, 0.0];
    assert!(matches!(
        bad_snr.run(
            &mut gaussian(&[0.0, 0.0], 1.0),
            &mut x,
            &Cosine,
            &grid,
            &mut rng,
            None
        ),
        Err(Error::NonPositive { name: "snr", .. })
    ));
    let bad_eta = Sampler::Ddim { eta: 2.0 };
    let mut x = vec![0.0, 0.0];
    assert!(matches!(
        bad_eta.run(
            &mut gaussian(&[0.0, 0.0], 1.0),
            &mut x,
            &Cosine,
            &grid,
            &mut rng,
            None
        ),
        Err(Error::OutOfRange { name: "eta", .. })
    ));
    let cfg = SamplerConfig {
        data_variance: -1.0,
        ..SamplerConfig::default()
    };
    assert!(cfg.prior(&Cosine, 2, 2, &mut rng).is_err());
    assert!(cfg.prior(&Cosine, usize::MAX, 2, &mut rng).is_err());
    let cfg = SamplerConfig {
        steps: usize::MAX,
        ..SamplerConfig::default()
    };
    assert!(cfg
        .sample(&mut gaussian(&[0.0], 1.0), &Cosine, 2, &mut rng)
        .is_err());
}

/// A model whose evaluation fails with a foreign error.
struct Broken;

impl Dim for Broken {
    fn dim(&self) -> usize {
        1
    }
}

impl NoisedScore for Broken {
    fn noised_score(&mut self, _x: &[f64], _t: f64, _out: &mut [f64]) -> Result<()> {
        let io = std::io::Error::other("device lost");
        Err(crate::ScoreError::new(io).into())
    }
}

#[test]
fn a_models_own_error_comes_back_whole() {
    let grid = TimeGrid::uniform(0.9, 0.1, 4).expect("grid");
    let mut x = vec![0.0];
    let err = Sampler::Heun
        .run(
            &mut Broken,
            &mut x,
            &Cosine,
            &grid,
            &mut crate::rng::stream(0, 0),
            None,
        )
        .expect_err("broken model");
    assert_eq!(err.to_string(), "device lost");
    let Error::Score(inner) = &err else {
        panic!("not a score error: {err:?}")
    };
    assert!(inner.downcast_ref::<std::io::Error>().is_some());
    assert_eq!(err.clone(), err);
}

/// One DDIM step by hand, from the formula of Song, Meng & Ermon (2021, eqs. 12 and 16) in
/// their notation (`ᾱ = α²` on a variance-preserving schedule), against the sampler.
#[test]
fn ddim_step_matches_the_papers_formula() {
    let score = &mut gaussian(&[0.5], 0.3);
    let (t, t_next) = (0.6, 0.35);
    let grid = TimeGrid::from_times(vec![t, t_next, 0.1]).expect("grid");
    for eta in [0.0, 0.4, 1.0] {
        let x0 = 1.3;
        let mut x = vec![x0];
        let mut first = None;
        let mut record = |s: &Step<'_>| {
            first = Some(s.x[0]);
            ControlFlow::Break(())
        };
        let mut rng = crate::rng::stream(8, 0);
        Sampler::Ddim { eta }
            .run(score, &mut x, &Cosine, &grid, &mut rng, Some(&mut record))
            .expect("run");
        // The paper's step with the same normal draw (drawn only when σ_τ(η) > 0).
        let (ab, ab_next) = (Cosine.alpha(t).powi(2), Cosine.alpha(t_next).powi(2));
        let mut s = [0.0];
        score.noised_score(&[x0], t, &mut s).expect("score");
        let eps = -(1.0 - ab).sqrt() * s[0];
        let sigma_eta = eta * ((1.0 - ab_next) / (1.0 - ab)).sqrt() * (1.0 - ab / ab_next).sqrt();
        let pred_x0 = (x0 - (1.0 - ab).sqrt() * eps) / ab.sqrt();
        let mut want = ab_next.sqrt() * pred_x0 + (1.0 - ab_next - sigma_eta.powi(2)).sqrt() * eps;
        if eta > 0.0 {
            let z: f64 = crate::rng::stream(8, 0).sample(StandardNormal);
            want += sigma_eta * z;
        }
        let got = first.expect("one step");
        assert!((got - want).abs() < 1e-12, "η = {eta}: {got} vs {want}");
    }
}

/// On VE (`α = 1`) deterministic DDIM is Euler's method in `σ` for the probability-flow ODE:
/// `x ← x + (σ_{t'} − σ_t) ε̂` (Karras et al. 2022, eq. 4).
#[test]
fn ddim_on_ve_is_euler_in_sigma() {
    let ve = crate::schedule::Ve::standard();
    let mut score = GaussianScore {
        mean: vec![0.2, -0.4],
        var: 0.5,
        schedule: ve,
    };
    let grid = TimeGrid::from_times(vec![0.8, 0.5]).expect("grid");
    let start = vec![3.0, -1.0];
    let mut x = start.clone();
    let mut rng = crate::rng::stream(0, 0);
    Sampler::DDIM
        .run(&mut score, &mut x, &ve, &grid, &mut rng, None)
        .expect("run");
    let mut s = vec![0.0; 2];
    score.noised_score(&start, 0.8, &mut s).expect("score");
    let (sig, sig_next) = (ve.sigma(0.8), ve.sigma(0.5));
    for j in 0..2 {
        let want = start[j] + (sig_next - sig) * (-sig * s[j]);
        assert!((x[j] - want).abs() < 1e-12 * (1.0 + want.abs()), "{j}");
    }
}
