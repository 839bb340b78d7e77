//! The SBI tasks through their common interface: joint scores against finite differences of
//! the joint log-density at random draws, batch simulation, and typed errors for bad input.

use tsm_core::rng::stream;
use tsm_core::simulator::finite_difference_joint_score;
use tsm_core::Error as CoreError;
use tsm_targets::sbi::{SbiTask, Task, TaskVisitor};

/// Joint score vs central differences at `draws` simulated `(θ, z, x)`, and at `θ` moved off
/// the simulated value (the score is a function of `(θ, z, x)`, not only at the draw).
///
/// Tolerance `10⁻⁵ (1 + |g|)`: with `h = 10⁻⁵` the truncation error `h²/6 · |∂³ log p|` is
/// below `10⁻⁷` (the log-densities are sums of at most a few hundred smooth terms with third
/// derivatives of order one), and the rounding error `ε |log p| / h` is below `10⁻⁸`
/// (`|log p| < 10³`); a wrong term in a score is of order `10⁻²` or more.
struct FiniteDifferences {
    draws: usize,
}

impl TaskVisitor for FiniteDifferences {
    type Output = ();
    fn visit<T: Task>(self, task: &T) {
        let (d, k) = (task.dim(), task.observation_dim());
        let mut rng = stream(31, task.task() as u64);
        let (mut th, mut z, mut x, mut g) =
            (vec![0.0; d], task.new_latent(), vec![0.0; k], vec![0.0; d]);
        let (mut fd, mut g2) = (vec![0.0; d], vec![0.0; d]);
        for _ in 0..self.draws {
            task.simulate(&mut rng, &mut th, &mut z, &mut x, &mut g);
            assert!(task.joint_log_density(&th, &z, &x).is_finite());
            for shift in [0.0, 0.3] {
                let theta: Vec<f64> = th.iter().map(|v| v + shift).collect();
                task.joint_score(&theta, &z, &x, &mut g2);
                if shift == 0.0 {
                    // `simulate` (which may fuse the score into the simulation) agrees.
                    for (a, b) in g.iter().zip(&g2) {
                        assert!((a - b).abs() < 1e-10 * (1.0 + a.abs()));
                    }
                }
                finite_difference_joint_score(task, &theta, &z, &x, 1e-5, &mut fd);
                for (a, b) in fd.iter().zip(&g2) {
                    assert!(
                        (a - b).abs() < 1e-5 * (1.0 + b.abs()),
                        "{}: θ={theta:?}: finite differences {fd:?} vs joint score {g2:?}",
                        task.task()
                    );
                }
            }
        }
    }
}

#[test]
fn joint_scores_match_finite_differences_on_every_task() {
    for task in SbiTask::ALL {
        task.visit(FiniteDifferences { draws: 20 });
    }
}

#[test]
fn simulated_observations_pass_their_checks() {
    struct Batch;
    impl TaskVisitor for Batch {
        type Output = ();
        fn visit<T: Task>(self, task: &T) {
            let (d, k, n) = (task.dim(), task.observation_dim(), 200);
            let (mut th, mut x, mut g) = (vec![0.0; n * d], vec![0.0; n * k], vec![0.0; n * d]);
            assert_eq!(
                task.simulate_batch(&mut stream(32, 0), &mut th, &mut x, &mut g),
                Ok(n)
            );
            for row in x.chunks_exact(k) {
                task.check_observation(row).unwrap();
            }
            assert!(g.iter().chain(&th).all(|v| v.is_finite()));
            // Buffers of the wrong shape are refused.
            let mut short = vec![0.0; n * k - 1];
            assert!(matches!(
                task.simulate_batch(&mut stream(32, 1), &mut th, &mut short, &mut g),
                Err(CoreError::DimMismatch { .. })
            ));
        }
    }
    for task in SbiTask::ALL {
        task.visit(Batch);
    }
}

#[test]
fn bad_observations_are_typed_errors_naming_the_problem() {
    for task in SbiTask::ALL {
        let k = task.observation_dim();
        // Wrong length.
        let err = task.check_observation(&vec![0.0; k + 1]).unwrap_err();
        assert!(
            matches!(err, CoreError::DimMismatch { .. }),
            "{task}: {err}"
        );
        assert!(task.reference_posterior(&vec![0.0; k - 1]).is_err());
        // Not finite.
        let mut x = vec![1.0; k];
        x[0] = f64::NAN;
        assert!(matches!(
            task.check_observation(&x),
            Err(CoreError::NonFinite { .. })
        ));
    }
    // Count tasks: non-integer, negative or out-of-range counts.
    for (task, too_big) in [(SbiTask::GaltonBoard, 21.0), (SbiTask::Sir, 49.0)] {
        let k = task.observation_dim();
        for bad in [0.5, -1.0, too_big] {
            let mut x = vec![0.0; k];
            x[1] = bad;
            let err = task.check_observation(&x).unwrap_err();
            assert!(matches!(err, CoreError::OutOfRange { .. }), "{task}: {err}");
            let message = err.to_string();
            assert!(
                message.contains(task.name()) && message.contains(&bad.to_string()),
                "{message}"
            );
            assert!(task.reference_posterior(&x).is_err());
        }
    }
    // sir: more reported cases than susceptibles.
    let mut x = vec![0.0; 30];
    x[0] = 25.0;
    x[1] = 24.0;
    let err = SbiTask::Sir.check_observation(&x).unwrap_err();
    assert!(err.to_string().contains("total reported cases"), "{err}");
    // Unknown task names list the valid ones.
    let err = "lotka_volterra".parse::<SbiTask>().unwrap_err();
    assert!(
        err.to_string()
            .contains("linear_gaussian, galton_board, sir"),
        "{err}"
    );
}
