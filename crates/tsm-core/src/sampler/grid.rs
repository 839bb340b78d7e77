//! Time grids `1 ≥ τ_0 > τ_1 > … > τ_N ≥ 0` for the samplers, validated once.
//!
//! | builder | spacing |
//! |---|---|
//! | [`TimeGrid::uniform`] | uniform in `t` |
//! | [`TimeGrid::log_snr`] | uniform in `u = ln(σ_t/α_t)` (the default, see the [module docs](super)) |
//! | [`TimeGrid::karras`] | Karras et al. (2022), eq. 5: uniform in `σ^{1/ρ}`, `σ = σ_t/α_t` |
//! | [`TimeGrid::from_times`] | the caller's times |
//!
//! The schedule-based grids are computed in `u` and mapped back to `t` by bisection, which
//! needs `u` increasing in `t` (true of every built-in schedule).

use crate::schedule::Schedule;
use crate::{Error, Result};

/// A strictly decreasing sequence of times in `[0, 1]` with at least one step.
///
/// # Examples
/// ```
/// use tsm_core::sampler::TimeGrid;
/// use tsm_core::schedule::Cosine;
///
/// let grid = TimeGrid::log_snr(&Cosine, 1.0 - 1e-3, 1e-3, 100)?;
/// assert_eq!(grid.steps(), 100);
/// assert_eq!((grid.t_max(), grid.t_min()), (1.0 - 1e-3, 1e-3));
/// assert!(TimeGrid::uniform(1.0, 0.0, usize::MAX).is_err()); // refused, not allocated
/// # Ok::<(), tsm_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TimeGrid {
    times: Vec<f64>,
}

/// Bisection iterations for the schedule-based grids: `2⁻⁶⁰` of the range is below `f64`
/// resolution on `[0, 1]`.
const BISECTION_STEPS: usize = 60;

impl TimeGrid {
    /// The most steps a grid may have (10⁷): more is taken for a mistake, and refused
    /// rather than allocated.
    pub const MAX_STEPS: usize = 10_000_000;

    /// The grid with exactly these times.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] for fewer than 2 or more than `MAX_STEPS + 1` times;
    /// [`Error::TimeOutOfRange`] for a time outside `[0, 1]` (NaN included);
    /// [`Error::Unordered`] where a time does not decrease strictly.
    pub fn from_times(times: Vec<f64>) -> Result<Self> {
        check_steps(times.len().saturating_sub(1))?;
        for &t in &times {
            crate::schedule::check_time(t)?;
        }
        if let Some(w) = times.windows(2).find(|w| w[1] >= w[0]) {
            return Err(Error::Unordered {
                low: "the next grid time",
                low_value: w[1],
                high: "the grid time before it",
                high_value: w[0],
            });
        }
        Ok(Self { times })
    }

    /// `steps` steps uniform in `t` from `t_max` down to `t_min` (both ends exact).
    ///
    /// # Errors
    /// [`Error::OutOfRange`] for `steps ∉ [1, MAX_STEPS]`; [`Error::InvalidTimeRange`] unless
    /// `0 ≤ t_min < t_max ≤ 1`.
    pub fn uniform(t_max: f64, t_min: f64, steps: usize) -> Result<Self> {
        let points = check_steps(steps)?;
        check_range(t_max, t_min)?;
        let mut times: Vec<f64> = (0..points)
            .map(|k| t_max + (t_min - t_max) * k as f64 / steps as f64)
            .collect();
        times[0] = t_max;
        times[steps] = t_min;
        Self::from_times(times)
    }

    /// `steps` steps uniform in the log noise-to-signal ratio `u = ln(σ_t/α_t)` from `t_max`
    /// down to `t_min` (both ends exact) — the default grid (see the [module docs](super)).
    /// For VE, `u = ln σ_t` is linear in `t` and the grid is uniform in `t`.
    ///
    /// # Errors
    /// As [`TimeGrid::uniform`]; [`Error::NonFinite`] where `u` is infinite at an end (e.g.
    /// `t = 0` or `t = 1` for the cosine schedule); [`Error::Unordered`] if `u` does not
    /// increase from `t_min` to `t_max`.
    pub fn log_snr(
        schedule: &(impl Schedule + ?Sized),
        t_max: f64,
        t_min: f64,
        steps: usize,
    ) -> Result<Self> {
        let (u_max, u_min) = log_snr_ends(schedule, t_max, t_min, steps)?;
        Self::from_log_snr(schedule, t_max, t_min, steps, |k| {
            u_max + (u_min - u_max) * k as f64 / steps as f64
        })
    }

    /// `steps` steps of Karras et al.'s (2022, eq. 5) ρ-schedule in the noise-to-signal ratio
    /// `σ = σ_t/α_t`:
    ///
    /// `σ_k = (σ_max^{1/ρ} + k/N (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ`, `k = 0, …, N`,
    ///
    /// with `σ_max = σ(t_max)`, `σ_min = σ(t_min)`, mapped back to `t` by the schedule. Larger
    /// `ρ` concentrates the steps at small noise; `ρ = 1` is uniform in `σ`, `ρ → ∞` uniform
    /// in `ln σ` (= [`TimeGrid::log_snr`]). Karras et al. use ρ = 7 ([`Self::DEFAULT_RHO`]).
    /// Unlike their grid, this one ends at `σ_min > 0`, not at 0 (the samplers' last step is
    /// the denoising step).
    ///
    /// # Errors
    /// As [`TimeGrid::log_snr`]; [`Error::NonPositive`] for `ρ` not finite and positive.
    pub fn karras(
        schedule: &(impl Schedule + ?Sized),
        t_max: f64,
        t_min: f64,
        steps: usize,
        rho: f64,
    ) -> Result<Self> {
        crate::error::positive("rho", rho)?;
        let (u_max, u_min) = log_snr_ends(schedule, t_max, t_min, steps)?;
        let (a, b) = ((u_max / rho).exp(), (u_min / rho).exp()); // σ_max^{1/ρ}, σ_min^{1/ρ}
        Self::from_log_snr(schedule, t_max, t_min, steps, |k| {
            rho * (a + (b - a) * k as f64 / steps as f64).ln()
        })
    }

    /// Karras et al.'s ρ = 7.
    pub const DEFAULT_RHO: f64 = 7.0;

    /// The times `τ_k` (`u(τ_k) = target(k)`, ends exact) by bisection on `[t_min, t_max]`.
    fn from_log_snr(
        schedule: &(impl Schedule + ?Sized),
        t_max: f64,
        t_min: f64,
        steps: usize,
        target: impl Fn(usize) -> f64,
    ) -> Result<Self> {
        let u = |t: f64| log_snr(schedule, t);
        let mut times = Vec::with_capacity(check_steps(steps)?);
        for k in 0..=steps {
            let target = target(k);
            // u is increasing in t: bisection on [t_min, t_max].
            let (mut lo, mut hi) = (t_min, t_max);
            for _ in 0..BISECTION_STEPS {
                let mid = 0.5 * (lo + hi);
                if u(mid) < target {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            times.push(0.5 * (lo + hi));
        }
        times[0] = t_max;
        times[steps] = t_min;
        Self::from_times(times)
    }

    /// The times `τ_0 > … > τ_N`.
    pub fn times(&self) -> &[f64] {
        &self.times
    }

    /// The number of steps `N` (one less than the number of times).
    pub fn steps(&self) -> usize {
        self.times.len() - 1
    }

    /// The start time `τ_0`.
    pub fn t_max(&self) -> f64 {
        self.times[0]
    }

    /// The end time `τ_N`.
    pub fn t_min(&self) -> f64 {
        self.times[self.times.len() - 1]
    }

    /// The steps `(τ_k, τ_{k+1})`, in order.
    pub fn intervals(&self) -> impl ExactSizeIterator<Item = (f64, f64)> + '_ {
        self.times.windows(2).map(|w| (w[0], w[1]))
    }
}

/// `u(t) = ln(σ_t/α_t)`.
fn log_snr(schedule: &(impl Schedule + ?Sized), t: f64) -> f64 {
    (schedule.sigma(t) / schedule.alpha(t)).ln()
}

/// Checks `1 ≤ steps ≤ MAX_STEPS`; returns the number of times, `steps + 1`.
fn check_steps(steps: usize) -> Result<usize> {
    match steps.checked_add(1) {
        Some(points) if (1..=TimeGrid::MAX_STEPS).contains(&steps) => Ok(points),
        _ => Err(Error::OutOfRange {
            name: "steps",
            value: steps as f64,
            allowed: "[1, 10^7]",
        }),
    }
}

/// Checks `0 ≤ t_min < t_max ≤ 1`.
fn check_range(t_max: f64, t_min: f64) -> Result<()> {
    if 0.0 <= t_min && t_min < t_max && t_max <= 1.0 {
        Ok(())
    } else {
        Err(Error::InvalidTimeRange { t_min, t_max })
    }
}

/// Validates a schedule-based grid's arguments; returns `(u(t_max), u(t_min))`.
fn log_snr_ends(
    schedule: &(impl Schedule + ?Sized),
    t_max: f64,
    t_min: f64,
    steps: usize,
) -> Result<(f64, f64)> {
    check_steps(steps)?;
    check_range(t_max, t_min)?;
    let (u_max, u_min) = (log_snr(schedule, t_max), log_snr(schedule, t_min));
    for u in [u_max, u_min] {
        if !u.is_finite() {
            return Err(Error::NonFinite {
                op: "ln(σ_t/α_t) at an end of the time grid",
                value: u,
            });
        }
    }
    if u_min >= u_max {
        return Err(Error::Unordered {
            low: "ln(σ_t/α_t) at t_min",
            low_value: u_min,
            high: "ln(σ_t/α_t) at t_max",
            high_value: u_max,
        });
    }
    Ok((u_max, u_min))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{AnySchedule, Cosine, Ve};

    fn schedules() -> Vec<AnySchedule> {
        AnySchedule::ALL.to_vec()
    }

    /// The grid builder before the samplers moved to `tsm-core`, verbatim: the default grid
    /// must reproduce it bit for bit (so that the figures' CSVs do not change).
    fn reference_grid(schedule: &impl Schedule, t_max: f64, t_min: f64, steps: usize) -> Vec<f64> {
        let u = |t: f64| (schedule.sigma(t) / schedule.alpha(t)).ln();
        let (u0, u1) = (u(t_max), u(t_min));
        let mut grid = Vec::with_capacity(steps + 1);
        for k in 0..=steps {
            let target = u0 + (u1 - u0) * k as f64 / steps as f64;
            let (mut lo, mut hi) = (t_min, t_max);
            for _ in 0..60 {
                let mid = 0.5 * (lo + hi);
                if u(mid) < target {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            grid.push(0.5 * (lo + hi));
        }
        grid[0] = t_max;
        grid[steps] = t_min;
        grid
    }

    #[test]
    fn log_snr_grid_reproduces_the_previous_grid_bit_for_bit() {
        for s in schedules() {
            for steps in [1, 2, 20, 100, 200] {
                let g = TimeGrid::log_snr(&s, 1.0 - 1e-3, 1e-3, steps).expect("grid");
                let r = reference_grid(&s, 1.0 - 1e-3, 1e-3, steps);
                let bits = |v: &[f64]| v.iter().map(|t| t.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(g.times()), bits(&r), "{s:?}, {steps} steps");
            }
        }
    }

    #[test]
    fn every_builder_is_strictly_decreasing_with_exact_ends() {
        for s in schedules() {
            let grids = [
                TimeGrid::uniform(1.0 - 1e-3, 1e-3, 200),
                TimeGrid::log_snr(&s, 1.0 - 1e-3, 1e-3, 200),
                TimeGrid::karras(&s, 1.0 - 1e-3, 1e-3, 200, TimeGrid::DEFAULT_RHO),
            ];
            for g in grids {
                let g = g.expect("grid");
                assert_eq!(g.steps(), 200);
                assert_eq!(g.times().len(), 201);
                assert!(g.times().windows(2).all(|w| w[0] > w[1]), "{s:?}");
                assert_eq!((g.t_max(), g.t_min()), (1.0 - 1e-3, 1e-3));
                assert_eq!(g.intervals().len(), 200);
            }
        }
    }

    #[test]
    fn uniform_grid_has_equal_steps() {
        let g = TimeGrid::uniform(1.0, 0.0, 4).expect("grid");
        assert_eq!(g.times(), &[1.0, 0.75, 0.5, 0.25, 0.0]);
    }

    #[test]
    fn karras_grid_follows_the_rho_formula() {
        let (t_max, t_min, n) = (1.0 - 1e-3, 1e-3, 50);
        for s in schedules() {
            for rho in [1.0, 3.0, 7.0] {
                let g = TimeGrid::karras(&s, t_max, t_min, n, rho).expect("grid");
                let sigma = |t: f64| s.sigma(t) / s.alpha(t);
                let (a, b) = (sigma(t_max).powf(1.0 / rho), sigma(t_min).powf(1.0 / rho));
                for (k, &t) in g.times().iter().enumerate() {
                    let want = (a + k as f64 / n as f64 * (b - a)).powf(rho);
                    let got = sigma(t);
                    assert!(
                        (got - want).abs() <= 1e-9 * want,
                        "{s:?} ρ = {rho}, k = {k}: σ = {got} vs {want}"
                    );
                }
            }
        }
        // ρ = 1 on VE (α = 1) is uniform in σ_t.
        let ve = Ve::standard();
        let g = TimeGrid::karras(&ve, 1.0, 0.0, 10, 1.0).expect("grid");
        let d: Vec<f64> = g
            .times()
            .windows(2)
            .map(|w| ve.sigma(w[0]) - ve.sigma(w[1]))
            .collect();
        assert!(d.iter().all(|x| (x - d[0]).abs() < 1e-9 * d[0]), "{d:?}");
    }

    #[test]
    fn bad_sizes_are_errors_not_panics_or_huge_allocations() {
        for steps in [0, TimeGrid::MAX_STEPS + 1, usize::MAX - 1, usize::MAX] {
            let out_of_range =
                |r: Result<TimeGrid>| matches!(r, Err(Error::OutOfRange { name: "steps", .. }));
            assert!(out_of_range(TimeGrid::uniform(1.0, 0.0, steps)), "{steps}");
            assert!(out_of_range(TimeGrid::log_snr(&Cosine, 0.9, 0.1, steps)));
            assert!(out_of_range(TimeGrid::karras(
                &Cosine, 0.9, 0.1, steps, 7.0
            )));
        }
        assert!(matches!(
            TimeGrid::from_times(vec![0.5]),
            Err(Error::OutOfRange { .. })
        ));
        assert!(TimeGrid::from_times(vec![]).is_err());
    }

    #[test]
    fn bad_times_are_typed_errors() {
        assert!(matches!(
            TimeGrid::from_times(vec![0.9, 0.5, 0.5]),
            Err(Error::Unordered { .. })
        ));
        assert!(matches!(
            TimeGrid::from_times(vec![0.1, 0.5]),
            Err(Error::Unordered { .. })
        ));
        for bad in [f64::NAN, 1.5, -0.1] {
            assert!(matches!(
                TimeGrid::from_times(vec![bad, 0.0]),
                Err(Error::TimeOutOfRange { .. })
            ));
        }
        for (t_max, t_min) in [
            (0.1, 0.9),
            (0.5, 0.5),
            (1.1, 0.1),
            (0.9, -0.1),
            (f64::NAN, 0.1),
        ] {
            assert!(matches!(
                TimeGrid::uniform(t_max, t_min, 10),
                Err(Error::InvalidTimeRange { .. })
            ));
        }
        // ln(σ/α) is infinite at both ends of the cosine schedule.
        assert!(matches!(
            TimeGrid::log_snr(&Cosine, 1.0, 0.1, 10),
            Err(Error::NonFinite { .. })
        ));
        assert!(matches!(
            TimeGrid::karras(&Cosine, 0.9, 0.0, 10, 7.0),
            Err(Error::NonFinite { .. })
        ));
        assert!(matches!(
            TimeGrid::karras(&Cosine, 0.9, 0.1, 10, 0.0),
            Err(Error::NonPositive { name: "rho", .. })
        ));
        // But VE's σ_t is positive at t = 0: its grids may span all of [0, 1].
        assert!(TimeGrid::log_snr(&Ve::standard(), 1.0, 0.0, 10).is_ok());
    }
}
