//! Simulation-based inference (SBI) tasks: three gray-box simulators on the
//! [`Simulator`](tsm_core::simulator::Simulator) trait, with exact reference posteriors and calibration checks.
//!
//! | task ([`SbiTask`]) | `θ` | `x` | latents `z` | `F = E‖∇_θ log p(θ, z, x)‖²` | reference posterior |
//! |---|---|---|---|---|---|
//! | [`linear_gaussian`] | `ℝ⁴` | `ℝ⁴` | `z ∈ ℝ⁴` | `20` (exact) | exact Gaussian |
//! | [`galton_board`] | `ℝ²` | 10 final bins of a 20-row board | 10 × 20 left/right decisions | `≈ 48.9` | 600 × 600 grid over `[−6, 6]²` |
//! | [`sir`] | `ℝ²` | 15 reported cases and 15 reported recoveries | true infections and recoveries | `≈ 64.4` | forward algorithm, coarse-to-fine grid |
//!
//! Every task implements [`Task`]: a [`Simulator`](tsm_core::simulator::Simulator) with a joint log-density
//! ([`JointLogDensity`], for the finite-difference tests of the joint score), observation
//! validation (a count task rejects non-integer or out-of-range counts) and an exact
//! [`Task::reference_posterior`]. [`SbiTask`] names them (a [`Choice`](tsm_core::choice::Choice): `linear_gaussian`,
//! `galton_board`, `sir`), and [`SbiTask::visit`] runs code generic over [`Task`] on the
//! task a name selects. [`calibration`] holds simulation-based calibration (ranks and a
//! uniformity test).
//!
//! The tasks, formulas and readings are written out in `docs/sbi.md`; the LTSM targets and
//! the optimal weight built on the joint scores are in [`tsm_core::simulator`].
//!
//! ```
//! use tsm_core::simulator::{estimate_score_constant, Simulator};
//! use tsm_core::target::Sample;
//! use tsm_targets::sbi::{SbiTask, Task, TaskVisitor};
//!
//! let task: SbiTask = "linear_gaussian".parse()?;
//! assert_eq!((task.dim(), task.observation_dim()), (4, 4));
//!
//! /// Simulates `n` draws and estimates F, whatever the task.
//! struct ScoreConstant(usize);
//! impl TaskVisitor for ScoreConstant {
//!     type Output = tsm_core::Result<f64>;
//!     fn visit<T: Task>(self, task: &T) -> Self::Output {
//!         let (d, k) = (task.dim(), task.observation_dim());
//!         let (mut th, mut x, mut g) = (vec![0.0; self.0 * d], vec![0.0; self.0 * k], vec![0.0; self.0 * d]);
//!         task.simulate_batch(&mut tsm_core::rng::stream(1, 0), &mut th, &mut x, &mut g)?;
//!         Ok(estimate_score_constant(&g, d)?.value)
//!     }
//! }
//! let f = task.visit(ScoreConstant(20_000))?;
//! assert!((f - 20.0).abs() < 1.0);
//!
//! // The exact posterior at an observation, and draws from it.
//! let posterior = task.reference_posterior(&[0.5, -0.2, 1.0, 0.0])?;
//! let mut theta = [0.0; 4];
//! posterior.sample_into(&mut tsm_core::rng::stream(1, 1), &mut theta);
//! assert!("coin_flip".parse::<SbiTask>().is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # References
//! [^1]: Ko & Geffner (2024), *Latent Target Score Matching, with an application to
//!   Simulation-Based Inference*.
//! [^2]: Brehmer, Louppe, Pavez, Cranmer (2020), *Mining gold from implicit models to improve
//!   likelihood-free inference*, PNAS (the Galton board, which ours is inspired by).
//! [^3]: Talts, Betancourt, Simpson, Vehtari, Gelman (2018), *Validating Bayesian inference
//!   algorithms with simulation-based calibration*.

use tsm_core::simulator::JointLogDensity;

pub mod calibration;
pub mod galton_board;
mod grid;
pub mod linear_gaussian;
mod posterior;
pub mod sir;

pub use galton_board::GaltonBoard;
pub use grid::GridPosterior;
pub use linear_gaussian::LinearGaussian;
pub use posterior::{DiagonalGaussian, Posterior};
pub use sir::{Sir, SirGrid};

/// An SBI task: a gray-box [`Simulator`](tsm_core::simulator::Simulator) with a joint log-density, observation checks and an
/// exact reference posterior.
pub trait Task: JointLogDensity + Send + Sync {
    /// Which task this is.
    fn task(&self) -> SbiTask;

    /// The exact posterior `p(θ | x)` at a (validated) observation, to draw reference samples
    /// from: a Gaussian in closed form, or a grid posterior (see the task's docs).
    ///
    /// # Errors
    /// A bad observation (as [`Simulator::check_observation`](tsm_core::simulator::Simulator::check_observation)); a grid posterior that puts
    /// mass `≥ 10⁻⁶` on its outer ring (the grid cuts off posterior mass) or whose
    /// likelihood is zero everywhere.
    fn reference_posterior(&self, x: &[f64]) -> crate::Result<Posterior>;
}

/// The tasks by name: a [`Choice`](tsm_core::choice::Choice) (`linear_gaussian`, `galton_board`, `sir`).
///
/// ```
/// use tsm_targets::sbi::SbiTask;
/// let task: SbiTask = "galton_board".parse()?;
/// assert_eq!(task, SbiTask::GaltonBoard);
/// assert_eq!(task.to_string(), "galton_board");
/// assert!("galton".parse::<SbiTask>().unwrap_err().to_string().contains("linear_gaussian"));
/// # Ok::<(), tsm_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SbiTask {
    /// [`LinearGaussian`]: `d = 4`, exact everything.
    LinearGaussian,
    /// [`GaltonBoard`]: a 20-row board, 10 balls, `θ ∈ ℝ²`.
    GaltonBoard,
    /// [`Sir`]: a chain-binomial epidemic, `N = 50`, 15 steps, case and recovery reports.
    Sir,
}

/// Runs code generic over [`Task`] on the task an [`SbiTask`] names ([`SbiTask::visit`]):
/// the visitor is monomorphised for each task, so its inner loops cost no dispatch.
pub trait TaskVisitor {
    /// What the visit returns.
    type Output;
    /// Runs on `task`.
    fn visit<T: Task>(self, task: &T) -> Self::Output;
}

impl SbiTask {
    /// Every task, in a fixed order.
    pub const ALL: [SbiTask; 3] = [Self::LinearGaussian, Self::GaltonBoard, Self::Sir];

    /// Runs `visitor` on a fresh instance of the task.
    pub fn visit<V: TaskVisitor>(self, visitor: V) -> V::Output {
        match self {
            Self::LinearGaussian => visitor.visit(&LinearGaussian),
            Self::GaltonBoard => visitor.visit(&GaltonBoard::new()),
            Self::Sir => visitor.visit(&Sir::new()),
        }
    }

    /// `θ`'s dimension `d`.
    pub fn dim(self) -> usize {
        match self {
            Self::LinearGaussian => LinearGaussian::DIM,
            Self::GaltonBoard | Self::Sir => 2,
        }
    }

    /// The observation's dimension `k`.
    pub fn observation_dim(self) -> usize {
        match self {
            Self::LinearGaussian => LinearGaussian::DIM,
            Self::GaltonBoard => GaltonBoard::BALLS,
            Self::Sir => 2 * Sir::STEPS,
        }
    }

    /// Reference values of `F = E‖∇_θ log p(θ, z, x)‖²`, the constant of the optimal weight
    /// `w_t* = F σ_t²/(F σ_t² + d α_t²)`: exact for `linear_gaussian` (`d (1 + 1/0.5²)`), by
    /// quadrature for `galton_board`, by Monte Carlo for `sir` (`docs/sbi.md` gives the
    /// numbers with their errors and how they were computed).
    pub fn score_constant(self) -> f64 {
        match self {
            Self::LinearGaussian => LinearGaussian::SCORE_CONSTANT,
            Self::GaltonBoard => GaltonBoard::SCORE_CONSTANT,
            Self::Sir => Sir::SCORE_CONSTANT,
        }
    }

    /// Checks an observation for this task (see [`Simulator::check_observation`](tsm_core::simulator::Simulator::check_observation)).
    ///
    /// # Errors
    /// As the task's [`Simulator::check_observation`](tsm_core::simulator::Simulator::check_observation).
    pub fn check_observation(self, x: &[f64]) -> tsm_core::Result<()> {
        struct Check<'a>(&'a [f64]);
        impl TaskVisitor for Check<'_> {
            type Output = tsm_core::Result<()>;
            fn visit<T: Task>(self, task: &T) -> Self::Output {
                task.check_observation(self.0)
            }
        }
        self.visit(Check(x))
    }

    /// The task's exact posterior at `x` ([`Task::reference_posterior`]); for many
    /// observations of `galton_board`, keep one [`GaltonBoard`] (it caches its grid).
    ///
    /// # Errors
    /// As [`Task::reference_posterior`].
    pub fn reference_posterior(self, x: &[f64]) -> crate::Result<Posterior> {
        struct Reference<'a>(&'a [f64]);
        impl TaskVisitor for Reference<'_> {
            type Output = crate::Result<Posterior>;
            fn visit<T: Task>(self, task: &T) -> Self::Output {
                task.reference_posterior(self.0)
            }
        }
        self.visit(Reference(x))
    }
}

tsm_core::unit_choice!(SbiTask, "task", [
    LinearGaussian => "linear_gaussian",
    GaltonBoard => "galton_board",
    Sir => "sir",
]);

/// Checks that every value of `x` is a whole number in `0..=max`: the check of a count task's
/// observation (`what` names the count in the error).
pub(crate) fn check_counts(x: &[f64], max: f64, what: &'static str) -> tsm_core::Result<()> {
    for &v in x {
        if !v.is_finite() {
            return Err(tsm_core::Error::NonFinite { op: what, value: v });
        }
        if v < 0.0 || v > max || v.fract() != 0.0 {
            return Err(tsm_core::Error::OutOfRange {
                name: what,
                value: v,
                allowed: "the whole numbers from 0 to the task's maximum (see the task's docs)",
            });
        }
    }
    Ok(())
}

/// `log(1 + eˣ)` without overflow.
#[inline]
pub(crate) fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// `1/(1 + e⁻ˣ)`.
#[inline]
pub(crate) fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_valid_ones() {
        for task in SbiTask::ALL {
            assert_eq!(task.to_string().parse::<SbiTask>().unwrap(), task);
            struct Info;
            impl TaskVisitor for Info {
                type Output = (SbiTask, usize, usize);
                fn visit<T: Task>(self, t: &T) -> Self::Output {
                    (t.task(), t.dim(), t.observation_dim())
                }
            }
            assert_eq!(task.visit(Info), (task, task.dim(), task.observation_dim()));
        }
        let err = "banana".parse::<SbiTask>().unwrap_err();
        assert!(matches!(err, tsm_core::Error::UnknownName { .. }));
        assert!(err.to_string().contains("galton_board"), "{err}");
    }

    #[test]
    fn stable_logistic_functions() {
        for x in [-800.0, -30.0, -1.0, 0.0, 2.0, 40.0, 800.0] {
            let s = sigmoid(x);
            assert!((0.0..=1.0).contains(&s));
            let sp = softplus(x);
            assert!(sp.is_finite() && sp >= 0.0);
            // log σ(x) = −softplus(−x).
            if x.abs() < 30.0 {
                assert!((s.ln() + softplus(-x)).abs() < 1e-14);
            }
        }
        assert_eq!(softplus(800.0), 800.0);
    }
}
