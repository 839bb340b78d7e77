//! The likelihood against closed forms: a Gaussian `p₀ = N(m, v I_d)` has
//! `p_t = N(α_t m, (α_t² v + σ_t²) I_d)`, its score's divergence is `−d/(α_t² v + σ_t²)`, and
//! `log p₀` is known; Hutchinson's trace against an exact trace. Fixed seeds.

use super::*;
use crate::schedule::{AnySchedule, Cosine};

// The exact noised score of `N(m, v I_d)` (the samplers' test score); its divergence below.
use crate::sampler::tests::GaussianScore as Gaussian;

impl<S: Schedule> ScoreDivergence for Gaussian<S> {
    fn score_divergence(
        &mut self,
        x: &[f64],
        t: f64,
        out: &mut [f64],
        div: &mut [f64],
    ) -> Result<()> {
        let (a, s2) = (self.schedule.alpha(t), self.schedule.sigma_sq(t));
        div.fill(-(self.mean.len() as f64) / (a * a * self.var + s2));
        self.noised_score(x, t, out)
    }
}

fn log_normal(x: &[f64], mean: &[f64], var: f64) -> f64 {
    x.iter()
        .zip(mean)
        .map(|(x, m)| -0.5 * (std::f64::consts::TAU * var).ln() - 0.5 * (x - m).powi(2) / var)
        .sum()
}

#[test]
fn gaussian_likelihood_matches_the_closed_form_on_every_schedule() {
    // p₀ = N(m, v I₂) with v = 0.5 and the prior's v matched, so that the prior at t_max is
    // N(0, σ² + α² v) while p_{t_max} = N(α m, σ² + α² v): the gap is the mean α m, and the
    // truncation at t_min changes the variance by σ_{t_min}² − (1 − α_{t_min}²) v. Both gaps
    // are computed exactly below, and the solver's error is bounded by steps · tol · (1 + |y|).
    let (mean, var) = (vec![0.3, -0.2], 0.5);
    let points = [0.1, 0.4, -1.0, 0.8, 1.5, -0.3];
    for schedule in AnySchedule::ALL {
        let cfg = LikelihoodConfig {
            data_variance: var,
            tol: 1e-8,
            ..LikelihoodConfig::default()
        };
        let mut score = Gaussian {
            mean: mean.clone(),
            var,
            schedule,
        };
        let run = cfg.exact(&mut score, &schedule, &points).expect("run");
        let (a0, s0) = (schedule.alpha(cfg.t_min), schedule.sigma_sq(cfg.t_min));
        let (a1, s1) = (schedule.alpha(cfg.t_max), schedule.sigma_sq(cfg.t_max));
        let m0: Vec<f64> = mean.iter().map(|m| a0 * m).collect();
        let m1: Vec<f64> = mean.iter().map(|m| a1 * m).collect();
        for (p, x) in run.points.iter().zip(points.chunks_exact(2)) {
            let truth = log_normal(x, &mean, var);
            // The exact answer of the ODE with this prior: log p_{t_min}(x) plus the prior's
            // gap at the ODE's endpoint (itself exact for the Gaussian: the flow map is the
            // affine map between the two noised marginals).
            let var0 = a0 * a0 * var + s0;
            let var1 = a1 * a1 * var + s1;
            let end: Vec<f64> = x
                .iter()
                .zip(&m0)
                .zip(&m1)
                .map(|((x, m0), m1)| m1 + (x - m0) * (var1 / var0).sqrt())
                .collect();
            let zero = vec![0.0; 2];
            let ode_truth = log_normal(x, &m0, var0) + log_normal(&end, &zero, var1)
                - log_normal(&end, &m1, var1);
            let bound = run.stats.accepted as f64 * cfg.tol * (1.0 + p.log_p.abs() + 3.0);
            assert!(
                (p.log_p - ode_truth).abs() < bound,
                "{schedule}: {} vs {ode_truth} (bound {bound}, {:?})",
                p.log_p,
                run.stats
            );
            // And the gap to log p₀ itself is what the two truncations make it.
            assert!((ode_truth - truth).abs() < 0.1, "{schedule}");
            assert!(p.std_error.is_none());
            assert!((p.prior_log_p + p.divergence_integral - p.log_p).abs() < 1e-12);
        }
    }
}

/// `s(x) = M x + c sin(x)` (any vector field will do for a trace): `tr ∇s = tr M + c Σ cos xⱼ`.
struct Field;

const M: [[f64; 3]; 3] = [[-1.0, 0.5, 0.2], [0.3, -2.0, 0.7], [-0.4, 0.1, 0.5]];

impl Dim for Field {
    fn dim(&self) -> usize {
        3
    }
}

impl NoisedScore for Field {
    fn noised_score(&mut self, x: &[f64], _t: f64, out: &mut [f64]) -> Result<()> {
        for (xi, oi) in x.chunks_exact(3).zip(out.chunks_exact_mut(3)) {
            for (r, o) in oi.iter_mut().enumerate() {
                *o = (0..3).map(|c| M[r][c] * xi[c]).sum::<f64>() + 0.8 * xi[r].sin();
            }
        }
        Ok(())
    }
}

fn field_trace(x: &[f64]) -> f64 {
    M[0][0] + M[1][1] + M[2][2] + 0.8 * x.iter().map(|v| v.cos()).sum::<f64>()
}

#[test]
fn hutchinson_matches_the_exact_trace_within_five_standard_errors() {
    // 200 probes at each of 5 points, both probe kinds, fixed seeds: |estimate − trace| below
    // 5 of its standard errors (and the standard error is of the right size: nonzero).
    let x = [
        0.1, -0.5, 1.2, 2.0, 0.3, -1.1, 0.0, 0.0, 0.0, -0.7, 0.9, 3.0, 1.0, 1.0, 1.0,
    ];
    for (k, probe) in [Probe::Rademacher, Probe::Gaussian].into_iter().enumerate() {
        let probes = Hutchinson {
            probes: 200,
            probe,
            fd_step: 1e-4,
        };
        let mut rng = crate::rng::stream(21, k as u64);
        let est = hutchinson_trace(&mut Field, &x, 0.5, &probes, &mut rng).expect("trace");
        let mut fd = FiniteDifference::new(Field, 1e-4).expect("fd");
        let (mut s, mut div) = (vec![0.0; 15], vec![0.0; 5]);
        fd.score_divergence(&x, 0.5, &mut s, &mut div).expect("fd");
        for ((row, (m, se)), fd_tr) in x.chunks_exact(3).zip(&est).zip(&div) {
            let tr = field_trace(row);
            let se = se.expect("se");
            assert!(se > 0.0 && se < 0.5, "{probe}: se {se}");
            assert!((m - tr).abs() < 5.0 * se, "{probe}: {m} ± {se} vs {tr}");
            // The central-difference trace: O(h²) error.
            assert!((fd_tr - tr).abs() < 1e-7, "{fd_tr} vs {tr}");
        }
    }
}

#[test]
fn finite_difference_and_hutchinson_likelihoods_agree_with_the_exact_one() {
    // d = 3 Gaussian: the exact divergence, its central-difference approximation, and
    // Hutchinson with 64 Gaussian probes (fixed seed; within 5 of its standard errors).
    let (mean, var) = (vec![0.3, -0.2, 1.0], 0.7);
    let x = [0.5, 0.1, 0.9, -1.0, 0.4, 2.0];
    let cfg = LikelihoodConfig {
        data_variance: var,
        ..LikelihoodConfig::default()
    };
    let score = || Gaussian {
        mean: mean.clone(),
        var,
        schedule: Cosine,
    };
    let exact = cfg.exact(&mut score(), &Cosine, &x).expect("exact");
    let mut fd = FiniteDifference::new(score(), 1e-4).expect("fd");
    let by_fd = cfg.exact(&mut fd, &Cosine, &x).expect("fd");
    let probes = Hutchinson {
        probes: 64,
        probe: Probe::Gaussian,
        fd_step: 1e-4,
    };
    let mut rng = crate::rng::stream(5, 0);
    let hutch = cfg
        .hutchinson(&mut score(), &Cosine, &x, &probes, &mut rng)
        .expect("hutchinson");
    for ((e, f), h) in exact.points.iter().zip(&by_fd.points).zip(&hutch.points) {
        assert!((e.log_p - f.log_p).abs() < 1e-5, "{e:?} vs {f:?}");
        let se = h.std_error.expect("se");
        assert!(se > 0.0);
        assert!((e.log_p - h.log_p).abs() < 5.0 * se, "{e:?} vs {h:?}");
    }
    // Bits per dimension: −log p / (d ln 2).
    let p = exact.points[0];
    assert!((p.bits_per_dim(3) + p.log_p / (3.0 * std::f64::consts::LN_2)).abs() < 1e-15);
    let (m, se) = exact.bits_per_dim();
    assert!(m.is_finite() && se.is_some());
}

#[test]
fn bad_input_is_a_typed_error() {
    let mut score = Gaussian {
        mean: vec![0.0, 0.0],
        var: 1.0,
        schedule: Cosine,
    };
    let cfg = LikelihoodConfig::default();
    let run = |cfg: LikelihoodConfig, score: &mut Gaussian<Cosine>, x: &[f64]| {
        cfg.exact(score, &Cosine, x)
    };
    assert!(matches!(
        run(cfg, &mut score, &[0.0, f64::NAN]),
        Err(Error::NonFinite { .. })
    ));
    assert!(matches!(
        run(cfg, &mut score, &[0.0, 1.0, 2.0]),
        Err(Error::DimMismatch { .. })
    ));
    assert!(matches!(
        run(cfg, &mut score, &[]),
        Err(Error::TooFewDraws { .. })
    ));
    for tol in [-1e-6, 0.0, f64::NAN, f64::INFINITY] {
        let bad = LikelihoodConfig { tol, ..cfg };
        assert!(
            matches!(
                run(bad, &mut score, &[0.0, 1.0]),
                Err(Error::NonPositive { name: "tol", .. })
            ),
            "{tol}"
        );
    }
    let reversed = LikelihoodConfig {
        t_min: 0.5,
        t_max: 0.4,
        ..cfg
    };
    assert!(matches!(
        run(reversed, &mut score, &[0.0, 1.0]),
        Err(Error::InvalidTimeRange { .. })
    ));
    // The cosine schedule's drift is infinite at t = 1.
    let to_one = LikelihoodConfig { t_max: 1.0, ..cfg };
    assert!(matches!(
        run(to_one, &mut score, &[0.0, 1.0]),
        Err(Error::NonFinite { .. })
    ));
    let few = LikelihoodConfig {
        max_steps: 3,
        ..cfg
    };
    assert!(matches!(
        run(few, &mut score, &[0.0, 1.0]),
        Err(Error::OutOfRange { .. })
    ));
    let mut rng = crate::rng::stream(0, 0);
    let none = Hutchinson {
        probes: 0,
        probe: Probe::Rademacher,
        fd_step: 1e-4,
    };
    assert!(matches!(
        cfg.hutchinson(&mut score, &Cosine, &[0.0, 1.0], &none, &mut rng),
        Err(Error::OutOfRange { name: "probes", .. })
    ));
    let bad_step = Hutchinson {
        probes: 2,
        probe: Probe::Rademacher,
        fd_step: -1.0,
    };
    assert!(matches!(
        cfg.hutchinson(&mut score, &Cosine, &[0.0, 1.0], &bad_step, &mut rng),
        Err(Error::NonPositive {
            name: "fd_step",
            ..
        })
    ));
    assert!(FiniteDifference::new(Field, 0.0).is_err());
    // Names.
    assert_eq!("gaussian".parse::<Probe>().expect("probe"), Probe::Gaussian);
    assert_eq!(Probe::Rademacher.to_string(), "rademacher");
    assert_eq!(
        "hutchinson".parse::<Estimator>().expect("est"),
        Estimator::Hutchinson
    );
    assert!("trace".parse::<Estimator>().is_err());
    assert!("normal".parse::<Probe>().is_err());
}
