//! `sir`: a chain-binomial (Reed–Frost) epidemic with reported cases and reported recoveries.
//!
//! Population `N = 50`, starting from `S₀ = 48` susceptible and `I₀ = 2` infected, `T = 15`
//! steps. `θ ∈ ℝ²` unconstrained with prior `N(0, I)`; the infection probability per contact
//! is `β = sigmoid(θ₁ − 3)`, the recovery probability `γ = sigmoid(θ₂ − 1)`. For
//! `t = 0…14`, from `(S_t, I_t)`:
//!
//! - new infections `n_t ~ Bin(S_t, π_t)`, `π_t = 1 − (1 − β)^{I_t}`, and recoveries
//!   `r_t ~ Bin(I_t, γ)`, independently;
//! - `S_{t+1} = S_t − n_t`, `I_{t+1} = I_t + n_t − r_t`;
//! - reported cases `y_t ~ Bin(n_t, 0.8)` and reported recoveries `w_t ~ Bin(r_t, 0.8)`.
//!
//! The observation is `x = (y₀…y₁₄, w₀…w₁₄)` (`k = 30`); the latents are the true `n_t`, `r_t`
//! ([`SirLatent`]). With case reports alone, epidemics at the prior mean burn out in 3–4
//! steps and `θ₂` is barely identified (its posterior sd stays near the prior's); the recovery
//! reports bring it to about 0.2–0.45.
//!
//! **Joint score**, in a stable form: with `L_t = −I_t log(1 − β) = I_t softplus(θ₁ − 3)` (so
//! `π_t = 1 − e^{−L_t}`, `∂L_t/∂θ₁ = I_t β`) and terms with `I_t = 0` set to 0,
//!
//! ```text
//! ∂_{θ₁} log p(θ, z, x) = −θ₁ + Σ_t I_t β [n_t / expm1(L_t) − (S_t − n_t)]
//! ∂_{θ₂} log p(θ, z, x) = −θ₂ + Σ_t (r_t − I_t γ)
//! ```
//!
//! (`∂/∂L [n log(1 − e^{−L}) − (S − n) L] = n/expm1(L) − (S − n)`); the reports do not depend
//! on `θ`, so they do not enter it, and `F = E‖·‖²` does not depend on which counts are
//! reported.
//!
//! **Reference posterior**: `p(x | θ)` exactly, by the forward algorithm over the `(S, I)`
//! states ([`SirLikelihood`]): the new infections are `S_t − S_{t+1}`, so both reports are
//! emissions on the transition, and
//! `α_{t+1}(S − n, I + n − r) = Σ α_t(S, I) Bin(n; S, π(I)) Bin(y_t; n, 0.8) Bin(r; I, γ)
//! Bin(w_t; r, 0.8)`, normalised at every step (the normalisers' logs add up to
//! `log p(x | θ)`). It is tabulated coarse-to-fine: a 60 × 60 grid of cells over `[−6, 6]²`
//! (outer-ring mass `< 10⁻⁶`), then a 120 × 120 grid on the box holding every coarse cell whose
//! log-posterior is within 25 of the maximum, widened by one coarse cell on each side (outer
//! ring checked again). A full fine grid over `[−6, 6]²` would cost minutes per observation.

use tsm_core::rand::Rng;
use tsm_core::rng::normal;
use tsm_core::simulator::{JointLogDensity, Simulator};
use tsm_core::target::Dim;

use super::{check_counts, sigmoid, softplus, GridPosterior, Posterior, SbiTask, Task};

/// The `sir` task (see the [module docs](self)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sir;

/// The grids of [`Sir`]'s reference posterior ([`Sir::reference_posterior_with`]); the
/// default is the one [`Task::reference_posterior`] uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SirGrid {
    /// Cells per side of the coarse grid over `[−6, 6]²` (default 60).
    pub coarse_cells: usize,
    /// Cells per side of the fine grid (default 120).
    pub fine_cells: usize,
    /// The fine grid covers the coarse cells whose log-posterior is within this of the
    /// maximum (default 25).
    pub log_range: f64,
}

impl Default for SirGrid {
    fn default() -> Self {
        Self {
            coarse_cells: 60,
            fine_cells: 120,
            log_range: 25.0,
        }
    }
}

/// The latents of one epidemic: the true new infections and recoveries at every step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SirLatent {
    /// `n_t`, `t = 0…14`.
    pub infections: [u8; 15],
    /// `r_t`, `t = 0…14`.
    pub recoveries: [u8; 15],
}

const STEPS: usize = Sir::STEPS;
const S0: usize = Sir::INITIAL_SUSCEPTIBLE;
const I0: usize = Sir::INITIAL_INFECTED;
const N: usize = Sir::POPULATION;
/// Row length of the state arrays: `I ∈ 0…N`.
const ROW: usize = N + 1;

/// `(softplus(θ₁ − 3), β, γ)`.
#[inline]
fn rates(theta: &[f64]) -> (f64, f64, f64) {
    let a = theta[0] - Sir::BETA_SHIFT;
    (
        softplus(a),
        sigmoid(a),
        sigmoid(theta[1] - Sir::GAMMA_SHIFT),
    )
}

/// A binomial draw as a sum of Bernoulli trials (`n ≤ 50` here: exact and cheap).
#[inline]
fn binomial<R: Rng + ?Sized>(rng: &mut R, n: usize, p: f64) -> usize {
    (0..n).filter(|_| rng.random::<f64>() < p).count()
}

/// `log C(n, k)` for `k ≤ n ≤ 50` (a sum of logs: only for the log-density).
fn ln_choose(n: usize, k: usize) -> f64 {
    let k = k.min(n - k);
    (0..k).map(|i| ((n - i) as f64 / (i + 1) as f64).ln()).sum()
}

/// `log Bin(k; n, p)` with `log p` and `log(1 − p)` given (`−∞` outside `0 ≤ k ≤ n`).
fn ln_binomial(k: usize, n: usize, ln_p: f64, ln_q: f64) -> f64 {
    if k > n {
        return f64::NEG_INFINITY;
    }
    // 0 · (−∞) = 0: the terms with exponent 0 vanish.
    let term = |m: usize, l: f64| if m == 0 { 0.0 } else { m as f64 * l };
    ln_choose(n, k) + term(k, ln_p) + term(n - k, ln_q)
}

impl Sir {
    /// Population `N`.
    pub const POPULATION: usize = 50;
    /// `S₀`.
    pub const INITIAL_SUSCEPTIBLE: usize = 48;
    /// `I₀`.
    pub const INITIAL_INFECTED: usize = 2;
    /// `T`: steps `t = 0…14`.
    pub const STEPS: usize = 15;
    /// The probability that a case or a recovery is reported.
    pub const REPORT_PROBABILITY: f64 = 0.8;
    /// `β = sigmoid(θ₁ − BETA_SHIFT)`.
    pub const BETA_SHIFT: f64 = 3.0;
    /// `γ = sigmoid(θ₂ − GAMMA_SHIFT)`.
    pub const GAMMA_SHIFT: f64 = 1.0;
    /// `F = E‖∇_θ log p(θ, z, x)‖²` by Monte Carlo (`docs/sbi.md`).
    pub const SCORE_CONSTANT: f64 = 64.4;

    /// The task.
    pub fn new() -> Self {
        Self
    }

    /// The cases `y_t` and recoveries `w_t` of a validated observation, as counts.
    fn reports(x: &[f64]) -> ([usize; 15], [usize; 15]) {
        let (mut y, mut w) = ([0; 15], [0; 15]);
        for t in 0..STEPS {
            y[t] = x[t] as usize;
            w[t] = x[STEPS + t] as usize;
        }
        (y, w)
    }
}

impl Sir {
    /// The coarse-to-fine grid posterior at `x` on the given grids: `p(θ) p(x | θ)` on the
    /// coarse grid over `[−6, 6]²`, then on a fine grid over the box of the coarse cells whose
    /// log-posterior is within `grid.log_range` of the maximum, widened by one coarse cell on
    /// each side (see the [module docs](self)).
    ///
    /// # Errors
    /// As [`Task::reference_posterior`]; [`tsm_core::Error::OutOfRange`] for fewer than 3
    /// cells a side or a `log_range` that is not positive.
    pub fn reference_posterior_with(&self, x: &[f64], grid: SirGrid) -> crate::Result<Posterior> {
        if grid.log_range.is_nan() || grid.log_range <= 0.0 {
            return Err(tsm_core::Error::OutOfRange {
                name: "SirGrid::log_range",
                value: grid.log_range,
                allowed: "(0, ∞)",
            }
            .into());
        }
        let mut lik = SirLikelihood::new(x)?;
        let (lo, hi, nc) = ([-6.0; 2], [6.0; 2], grid.coarse_cells);
        let coarse_lp = lik.log_posterior_grid(lo, hi, nc);
        // Checks the coarse grid's outer ring and that some cell has a finite density.
        let coarse = GridPosterior::from_log_density(lo, hi, [nc, nc], &coarse_lp)?;
        let max = coarse_lp.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (mut first, mut last) = ([usize::MAX; 2], [0usize; 2]);
        for (k, &l) in coarse_lp.iter().enumerate() {
            if l >= max - grid.log_range {
                let ij = [k / nc, k % nc];
                for a in 0..2 {
                    first[a] = first[a].min(ij[a]);
                    last[a] = last[a].max(ij[a]);
                }
            }
        }
        let h = coarse.cell_size();
        // The selected cells, widened by one coarse cell on each side, inside [−6, 6]².
        let fine_lo = [0, 1].map(|a| (lo[a] + (first[a] as f64 - 1.0) * h[a]).max(lo[a]));
        let fine_hi = [0, 1].map(|a| (lo[a] + (last[a] as f64 + 2.0) * h[a]).min(hi[a]));
        let nf = grid.fine_cells;
        let fine_lp = lik.log_posterior_grid(fine_lo, fine_hi, nf);
        GridPosterior::from_log_density(fine_lo, fine_hi, [nf, nf], &fine_lp).map(Posterior::Grid)
    }
}

impl Dim for Sir {
    fn dim(&self) -> usize {
        2
    }
}

impl Simulator for Sir {
    type Latent = SirLatent;

    fn observation_dim(&self) -> usize {
        2 * STEPS
    }

    fn new_latent(&self) -> SirLatent {
        SirLatent::default()
    }

    fn sample_prior<R: Rng + ?Sized>(&self, rng: &mut R, theta: &mut [f64]) {
        normal::fill(rng, theta);
    }

    fn simulate_from<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        theta: &[f64],
        z: &mut SirLatent,
        x: &mut [f64],
    ) {
        let mut g = [0.0; 2];
        epidemic(rng, theta, z, x, &mut g);
    }

    fn joint_score(&self, theta: &[f64], z: &SirLatent, _x: &[f64], out: &mut [f64]) {
        let (c, beta, gamma) = rates(theta);
        let mut g = [-theta[0], -theta[1]];
        let (mut s, mut i) = (S0, I0);
        for t in 0..STEPS {
            let (n, r) = (usize::from(z.infections[t]), usize::from(z.recoveries[t]));
            if i > 0 {
                let l = i as f64 * c;
                g[0] += i as f64 * beta * (n as f64 / l.exp_m1() - (s - n) as f64);
            }
            g[1] += r as f64 - i as f64 * gamma;
            s -= n;
            i = i + n - r;
        }
        out[..2].copy_from_slice(&g);
    }

    /// Simulates and accumulates the joint score along the way.
    fn simulate<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        theta: &mut [f64],
        z: &mut SirLatent,
        x: &mut [f64],
        joint_score: &mut [f64],
    ) {
        self.sample_prior(rng, theta);
        let mut g = [-theta[0], -theta[1]];
        epidemic(rng, theta, z, x, &mut g);
        joint_score[..2].copy_from_slice(&g);
    }

    /// Length 30; cases `y_t` whole numbers in `0..=48` summing to at most 48 (the
    /// susceptibles), recoveries `w_t` whole numbers in `0..=50` summing to at most 50.
    ///
    /// # Errors
    /// [`tsm_core::Error::DimMismatch`], [`tsm_core::Error::NonFinite`] or
    /// [`tsm_core::Error::OutOfRange`] naming the offending count or total.
    fn check_observation(&self, x: &[f64]) -> tsm_core::Result<()> {
        tsm_core::target::check_dim(2 * STEPS, x.len(), "sir observation")?;
        let (cases, recoveries) = x.split_at(STEPS);
        check_counts(
            cases,
            S0 as f64,
            "sir observation: reported cases y_t (whole numbers in 0..=48)",
        )?;
        check_counts(
            recoveries,
            N as f64,
            "sir observation: reported recoveries w_t (whole numbers in 0..=50)",
        )?;
        let total_cases: f64 = cases.iter().sum();
        if total_cases > S0 as f64 {
            return Err(tsm_core::Error::OutOfRange {
                name: "sir observation: total reported cases",
                value: total_cases,
                allowed: "at most 48 (the initial susceptibles)",
            });
        }
        let total_recoveries: f64 = recoveries.iter().sum();
        if total_recoveries > N as f64 {
            return Err(tsm_core::Error::OutOfRange {
                name: "sir observation: total reported recoveries",
                value: total_recoveries,
                allowed: "at most 50 (the population)",
            });
        }
        Ok(())
    }
}

/// One epidemic at `θ`: latents, reports, and the joint score's likelihood terms added to `g`.
fn epidemic<R: Rng + ?Sized>(
    rng: &mut R,
    theta: &[f64],
    z: &mut SirLatent,
    x: &mut [f64],
    g: &mut [f64; 2],
) {
    let (c, beta, gamma) = rates(theta);
    let (mut s, mut i) = (S0, I0);
    for t in 0..STEPS {
        let n = if i > 0 {
            let l = i as f64 * c;
            let n = binomial(rng, s, -(-l).exp_m1());
            g[0] += i as f64 * beta * (n as f64 / l.exp_m1() - (s - n) as f64);
            n
        } else {
            0
        };
        let r = binomial(rng, i, gamma);
        g[1] += r as f64 - i as f64 * gamma;
        x[t] = binomial(rng, n, Sir::REPORT_PROBABILITY) as f64;
        x[STEPS + t] = binomial(rng, r, Sir::REPORT_PROBABILITY) as f64;
        // n ≤ s ≤ 48 and r ≤ i ≤ 50 fit in a u8.
        z.infections[t] = n as u8;
        z.recoveries[t] = r as u8;
        s -= n;
        i = i + n - r;
    }
}

impl JointLogDensity for Sir {
    /// `log N(θ; 0, I) + Σ_t [log Bin(n_t; S_t, π_t) + log Bin(r_t; I_t, γ)
    /// + log Bin(y_t; n_t, 0.8) + log Bin(w_t; r_t, 0.8)]`, with `log π_t = log(−expm1(−L_t))`
    /// and `log(1 − π_t) = −L_t`; `−∞` for counts the model cannot produce.
    fn joint_log_density(&self, theta: &[f64], z: &SirLatent, x: &[f64]) -> f64 {
        let a = theta[0] - Self::BETA_SHIFT;
        let b = theta[1] - Self::GAMMA_SHIFT;
        let c = softplus(a);
        let (ln_gamma, ln_1m_gamma) = (-softplus(-b), -softplus(b));
        let (ln_report, ln_miss) = (
            Self::REPORT_PROBABILITY.ln(),
            (1.0 - Self::REPORT_PROBABILITY).ln(),
        );
        let (y, w) = Self::reports(x);
        let mut l =
            -0.5 * (theta[0] * theta[0] + theta[1] * theta[1]) - (2.0 * std::f64::consts::PI).ln();
        let (mut s, mut i) = (S0, I0);
        for t in 0..STEPS {
            let (n, r) = (usize::from(z.infections[t]), usize::from(z.recoveries[t]));
            if n > s || r > i {
                return f64::NEG_INFINITY;
            }
            l += if i == 0 {
                if n == 0 {
                    0.0
                } else {
                    return f64::NEG_INFINITY;
                }
            } else {
                let big_l = i as f64 * c;
                ln_binomial(n, s, (-(-big_l).exp_m1()).ln(), -big_l)
            };
            l += ln_binomial(r, i, ln_gamma, ln_1m_gamma);
            l += ln_binomial(y[t], n, ln_report, ln_miss);
            l += ln_binomial(w[t], r, ln_report, ln_miss);
            s -= n;
            i = i + n - r;
        }
        l
    }
}

/// The exact likelihood `p(x | θ)` of one [`Sir`] observation by the forward algorithm over
/// the `(S, I)` states (see the [module docs](self)), with its buffers: build once per
/// observation, evaluate at many `θ`.
#[derive(Debug, Clone)]
pub struct SirLikelihood {
    cases: [usize; 15],
    recoveries: [usize; 15],
    /// `Σ_{s ≥ t} y_s`: the susceptibles that must remain for the future reports.
    cases_from: [usize; 16],
    /// `Bin(y_t; n, 0.8)` for `n = 0…48`, per step.
    case_emission: Vec<[f64; ROW]>,
    /// `Bin(w_t; r, 0.8)` for `r = 0…50`, per step.
    recovery_emission: Vec<[f64; ROW]>,
    alpha: Vec<f64>,
    next: Vec<f64>,
    /// `Bin(r; I, γ)` at the current θ, row `I`.
    recovery_pmf: Vec<[f64; ROW]>,
    /// `Bin(I − j; I, γ) Bin(w_t; I − j, 0.8)` for `j = 0…I − w_t` at the current step.
    recovery_weight: Vec<[f64; ROW]>,
    /// `Bin(n; S, π(I))` for `n = 0…S` at the current θ, row `S·ROW + I`, valid where
    /// `stamp` equals `current` (computed on first use: a state recurs over the steps).
    infection_pmf: Vec<[f64; ROW]>,
    stamp: Vec<u32>,
    current: u32,
    ratios: Ratios,
    /// `π(I) = 1 − (1 − β)^I` and `(1 − β)^I` at the current θ.
    infect: [f64; ROW],
    escape: [f64; ROW],
}

/// The factors of the binomial pmf's recursions, `(n − k)/(k + 1)` (upwards) and
/// `k/(n − k + 1)` (downwards), for `n ≤ 50`: multiplications instead of divisions in the
/// forward algorithm's inner loops.
#[derive(Debug, Clone)]
struct Ratios {
    up: Vec<[f64; ROW]>,
    down: Vec<[f64; ROW]>,
}

impl Ratios {
    fn new() -> Self {
        let mut up = vec![[0.0; ROW]; ROW];
        let mut down = vec![[0.0; ROW]; ROW];
        for n in 0..ROW {
            for k in 0..=n {
                up[n][k] = (n - k) as f64 / (k + 1) as f64;
                down[n][k] = k as f64 / (n - k + 1) as f64;
            }
        }
        Self { up, down }
    }

    /// `Bin(k; n, p)` into `out[k]` for (at least) `k = lo…hi`, by the multiplicative
    /// recursion from the more likely end: `(1 − p)ⁿ` upwards when `p ≤ ½`, `pⁿ` downwards
    /// otherwise, both `≥ 2⁻⁵⁰` for `n ≤ 50`, so the start never underflows. `q = 1 − p` is
    /// passed separately so that it keeps full precision when `p` is tiny.
    #[inline]
    fn pmf(&self, n: usize, p: f64, q: f64, lo: usize, hi: usize, out: &mut [f64; ROW]) {
        if p == 0.0 || q == 0.0 {
            out[..=n].fill(0.0);
            out[if p == 0.0 { 0 } else { n }] = 1.0;
            return;
        }
        if p <= 0.5 {
            let (ratio, up) = (p / q, &self.up[n]);
            out[0] = q.powi(n as i32);
            for k in 0..hi.min(n) {
                out[k + 1] = out[k] * ratio * up[k];
            }
        } else {
            let (ratio, down) = (q / p, &self.down[n]);
            out[n] = p.powi(n as i32);
            for k in (lo.max(1)..=n).rev() {
                out[k - 1] = out[k] * ratio * down[k];
            }
        }
    }
}

/// `Bin(k; n, p)` for every `k = 0…n` (see [`Ratios::pmf`]).
fn binomial_pmf(n: usize, p: f64, q: f64, out: &mut [f64; ROW]) {
    Ratios::new().pmf(n, p, q, 0, n, out);
}

impl SirLikelihood {
    /// Prepares the emissions of observation `x`.
    ///
    /// # Errors
    /// As [`Sir`]'s [`Simulator::check_observation`].
    pub fn new(x: &[f64]) -> crate::Result<Self> {
        Sir.check_observation(x)?;
        let (cases, recoveries) = Sir::reports(x);
        let mut cases_from = [0; 16];
        for t in (0..STEPS).rev() {
            cases_from[t] = cases_from[t + 1] + cases[t];
        }
        let p = Sir::REPORT_PROBABILITY;
        let emission = |reported: usize| {
            let mut e = [0.0; ROW];
            let mut pmf = [0.0; ROW];
            for (m, em) in e.iter_mut().enumerate().skip(reported) {
                binomial_pmf(m, p, 1.0 - p, &mut pmf);
                *em = pmf[reported];
            }
            e
        };
        Ok(Self {
            cases,
            recoveries,
            cases_from,
            case_emission: cases.iter().map(|&y| emission(y)).collect(),
            recovery_emission: recoveries.iter().map(|&w| emission(w)).collect(),
            alpha: vec![0.0; (S0 + 1) * ROW],
            next: vec![0.0; (S0 + 1) * ROW],
            recovery_pmf: vec![[0.0; ROW]; ROW],
            recovery_weight: vec![[0.0; ROW]; ROW],
            infection_pmf: vec![[0.0; ROW]; (S0 + 1) * ROW],
            stamp: vec![0; (S0 + 1) * ROW],
            current: 0,
            ratios: Ratios::new(),
            infect: [0.0; ROW],
            escape: [0.0; ROW],
        })
    }

    /// `log p(x | θ)`; `−∞` where the observation is impossible (or below `10⁻³⁰⁸` of a
    /// step's total, lost to underflow).
    pub fn log_likelihood(&mut self, theta: &[f64]) -> f64 {
        let (c, _, gamma) = rates(theta);
        let gamma_q = sigmoid(Sir::GAMMA_SHIFT - theta[1]);
        for (i, row) in self.recovery_pmf.iter_mut().enumerate() {
            self.ratios.pmf(i, gamma, gamma_q, 0, i, row);
            let l = i as f64 * c;
            self.infect[i] = -(-l).exp_m1();
            self.escape[i] = (-l).exp();
        }
        self.current = self.current.wrapping_add(1);
        if self.current == 0 {
            self.stamp.fill(0);
            self.current = 1;
        }
        self.alpha.fill(0.0);
        self.alpha[S0 * ROW + I0] = 1.0;
        let mut log_lik = 0.0;
        // The rectangle [s_lo, s_hi] × [i_lo, i_hi] holding the non-zero states.
        let (mut s_lo, mut s_hi, mut i_lo, mut i_hi) = (S0, S0, I0, I0);
        for t in 0..STEPS {
            let (y, w) = (self.cases[t], self.recoveries[t]);
            let case_e = &self.case_emission[t];
            let rec_e = &self.recovery_emission[t];
            for i in i_lo.max(w)..=i_hi {
                let (pmf, weight) = (&self.recovery_pmf[i], &mut self.recovery_weight[i]);
                for j in 0..=i - w {
                    weight[j] = pmf[i - j] * rec_e[i - j];
                }
            }
            self.next.fill(0.0);
            for s in s_lo..=s_hi {
                // Future reports need susceptibles: S_{t+1} = s − n ≥ Σ_{u > t} y_u.
                let Some(n_max) = s.checked_sub(self.cases_from[t + 1]) else {
                    continue;
                };
                if n_max < y {
                    continue;
                }
                for i in i_lo.max(w)..=i_hi.min(N - s) {
                    let a = self.alpha[s * ROW + i];
                    if a == 0.0 {
                        continue;
                    }
                    let state = s * ROW + i;
                    if self.stamp[state] != self.current {
                        self.stamp[state] = self.current;
                        let pmf = &mut self.infection_pmf[state];
                        self.ratios
                            .pmf(s, self.infect[i], self.escape[i], 0, s, pmf);
                    }
                    let infection = &self.infection_pmf[state];
                    let weight = &self.recovery_weight[i][..=i - w];
                    for n in y..=n_max {
                        let mass = a * infection[n] * case_e[n];
                        if mass == 0.0 {
                            continue;
                        }
                        // (s, i) → (s − n, i + n − r), r = i − j: columns n + j.
                        let row = &mut self.next[(s - n) * ROW + n..][..weight.len()];
                        for (dst, &wv) in row.iter_mut().zip(weight) {
                            *dst += mass * wv;
                        }
                    }
                }
            }
            let total: f64 = self.next.iter().sum();
            if total.is_nan() || total <= 0.0 {
                return f64::NEG_INFINITY;
            }
            log_lik += total.ln();
            let scale = 1.0 / total;
            (s_lo, s_hi, i_lo, i_hi) = (usize::MAX, 0, usize::MAX, 0);
            for (k, v) in self.next.iter_mut().enumerate() {
                if *v != 0.0 {
                    *v *= scale;
                    let (s, i) = (k / ROW, k % ROW);
                    s_lo = s_lo.min(s);
                    s_hi = s_hi.max(s);
                    i_lo = i_lo.min(i);
                    i_hi = i_hi.max(i);
                }
            }
            std::mem::swap(&mut self.alpha, &mut self.next);
        }
        log_lik
    }

    /// `log p(θ) + log p(x | θ)` on an `n × n` grid of cell centres over `[lo, hi]`.
    fn log_posterior_grid(&mut self, lo: [f64; 2], hi: [f64; 2], n: usize) -> Vec<f64> {
        let h = [(hi[0] - lo[0]) / n as f64, (hi[1] - lo[1]) / n as f64];
        let mut out = Vec::with_capacity(n * n);
        for i in 0..n {
            let t1 = lo[0] + (i as f64 + 0.5) * h[0];
            for j in 0..n {
                let t2 = lo[1] + (j as f64 + 0.5) * h[1];
                out.push(-0.5 * (t1 * t1 + t2 * t2) + self.log_likelihood(&[t1, t2]));
            }
        }
        out
    }
}

impl Task for Sir {
    fn task(&self) -> SbiTask {
        SbiTask::Sir
    }

    /// The coarse-to-fine grid posterior with the default [`SirGrid`] (see the
    /// [module docs](self)).
    fn reference_posterior(&self, x: &[f64]) -> crate::Result<Posterior> {
        self.reference_posterior_with(x, SirGrid::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsm_core::rng::stream;
    use tsm_core::simulator::finite_difference_joint_score;

    #[test]
    fn the_joint_score_matches_finite_differences() {
        // h = 1e-5: truncation h²/6 · |∂³ log p| (≲ 1e-10 · 10³ for these sums of ≤ 15·50
        // smooth terms) and rounding 1e-16 · |log p| / h ≲ 1e-16 · 300 / 1e-5 = 3e-9, so a
        // tolerance of 1e-5 absolute plus 1e-7 relative is ample and still catches any wrong
        // term (each is O(0.01) or more).
        let task = Sir::new();
        let mut rng = stream(5, 0);
        let (mut th, mut z, mut x, mut g, mut g2, mut fd) = (
            [0.0; 2],
            task.new_latent(),
            [0.0; 30],
            [0.0; 2],
            [0.0; 2],
            [0.0; 2],
        );
        let mut nontrivial = 0;
        for rep in 0..40 {
            task.simulate(&mut rng, &mut th, &mut z, &mut x, &mut g);
            if rep % 4 == 0 {
                // Larger epidemics than the prior's typical one.
                th = [th[0] + 2.0, th[1] - 1.0];
                task.simulate_from(&mut rng, &th, &mut z, &mut x);
                task.joint_score(&th, &z, &x, &mut g);
            }
            task.joint_score(&th, &z, &x, &mut g2);
            assert!((g[0] - g2[0]).abs() < 1e-12 * (1.0 + g[0].abs()));
            assert!((g[1] - g2[1]).abs() < 1e-12 * (1.0 + g[1].abs()));
            finite_difference_joint_score(&task, &th, &z, &x, 1e-5, &mut fd);
            for j in 0..2 {
                assert!(
                    (fd[j] - g[j]).abs() < 1e-5 + 1e-7 * g[j].abs(),
                    "{th:?} {z:?}: {fd:?} vs {g:?}"
                );
            }
            nontrivial +=
                usize::from(z.infections.iter().map(|&n| usize::from(n)).sum::<usize>() > 3);
        }
        assert!(nontrivial >= 5, "the draws should include real epidemics");
    }

    #[test]
    fn binomial_pmfs_sum_to_one_at_both_ends() {
        let mut out = [0.0; ROW];
        for (n, p) in [
            (48, 1e-4),
            (48, 0.3),
            (50, 0.97),
            (0, 0.5),
            (20, 1.0 - 1e-12),
        ] {
            binomial_pmf(n, p, 1.0 - p, &mut out);
            let total: f64 = out[..=n].iter().sum();
            assert!((total - 1.0).abs() < 1e-12, "n={n} p={p}: {total}");
            let mean: f64 = out[..=n]
                .iter()
                .enumerate()
                .map(|(k, v)| k as f64 * v)
                .sum();
            assert!((mean - n as f64 * p).abs() < 1e-10 * (1.0 + n as f64));
        }
    }

    /// The forward algorithm written naively: a map of states, every `(n, r)` pair, log
    /// binomials from the log-density's code (no pruning, no pmf recursion, no index tricks).
    fn naive_log_likelihood(theta: &[f64], x: &[f64]) -> f64 {
        use std::collections::HashMap;
        let (y, w) = Sir::reports(x);
        let a = theta[0] - Sir::BETA_SHIFT;
        let b = theta[1] - Sir::GAMMA_SHIFT;
        let c = softplus(a);
        let (lg, lq) = (-softplus(-b), -softplus(b));
        let (lr, lm) = (0.8f64.ln(), 0.2f64.ln());
        let mut states: HashMap<(usize, usize), f64> = HashMap::from([((S0, I0), 1.0)]);
        let mut log_lik = 0.0;
        for t in 0..STEPS {
            let mut next: HashMap<(usize, usize), f64> = HashMap::new();
            for (&(s, i), &p) in &states {
                for n in 0..=s {
                    let ln_inf = if i == 0 {
                        if n == 0 {
                            0.0
                        } else {
                            continue;
                        }
                    } else {
                        let l = i as f64 * c;
                        ln_binomial(n, s, (-(-l).exp_m1()).ln(), -l)
                    };
                    for r in 0..=i {
                        let lp = ln_inf
                            + ln_binomial(r, i, lg, lq)
                            + ln_binomial(y[t], n, lr, lm)
                            + ln_binomial(w[t], r, lr, lm);
                        *next.entry((s - n, i + n - r)).or_insert(0.0) += p * lp.exp();
                    }
                }
            }
            let total: f64 = next.values().sum();
            log_lik += total.ln();
            next.values_mut().for_each(|v| *v /= total);
            states = next;
        }
        log_lik
    }

    #[test]
    fn forward_algorithm_matches_a_naive_one() {
        // Relative agreement 1e-9 in the likelihood: both are exact sums of the same terms in
        // different orders (rounding ~1e-13 relative over ~10⁵ terms).
        let task = Sir::new();
        let mut rng = stream(6, 0);
        let (mut th, mut z, mut x, mut g) = ([0.0; 2], task.new_latent(), [0.0; 30], [0.0; 2]);
        for rep in 0..2 {
            task.simulate(&mut rng, &mut th, &mut z, &mut x, &mut g);
            if rep == 0 {
                th = [th[0] + 2.5, th[1]];
                task.simulate_from(&mut rng, &th, &mut z, &mut x);
            }
            let mut lik = SirLikelihood::new(&x).unwrap();
            for theta in [th, [th[0] + 0.5, th[1] - 0.3]] {
                let fast = lik.log_likelihood(&theta);
                let naive = naive_log_likelihood(&theta, &x);
                assert!(
                    (fast - naive).abs() < 1e-9 * (1.0 + naive.abs()),
                    "x={x:?} θ={theta:?}: {fast} vs {naive}"
                );
            }
        }
    }

    #[test]
    fn likelihood_matches_monte_carlo_over_latent_paths() {
        // p(x | θ) = E_{z ~ p(z|θ)} Π_t Bin(y_t; n_t, 0.8) Bin(w_t; r_t, 0.8): checks the
        // reading of the reports independently of the forward algorithm. x: one reported case
        // at t = 0 and one reported recovery at t = 1, nothing else (probability ≈ 0.04 at
        // this θ). 5 standard errors, fixed seed.
        let mut x = [0.0; 30];
        x[0] = 1.0;
        x[16] = 1.0;
        let theta = [-1.0, 1.0];
        let exact = SirLikelihood::new(&x).unwrap().log_likelihood(&theta).exp();
        let task = Sir::new();
        let (mut z, mut sim_x) = (task.new_latent(), [0.0; 30]);
        let mut rng = stream(7, 0);
        let (y, w) = Sir::reports(&x);
        let (lr, lm) = (0.8f64.ln(), 0.2f64.ln());
        let m = 20_000;
        let (mut sum, mut sum_sq) = (0.0, 0.0);
        for _ in 0..m {
            task.simulate_from(&mut rng, &theta, &mut z, &mut sim_x);
            let mut l = 0.0;
            for t in 0..STEPS {
                l += ln_binomial(y[t], usize::from(z.infections[t]), lr, lm);
                l += ln_binomial(w[t], usize::from(z.recoveries[t]), lr, lm);
            }
            let e = l.exp();
            sum += e;
            sum_sq += e * e;
        }
        let mean = sum / m as f64;
        let se = ((sum_sq / m as f64 - mean * mean) / (m as f64 - 1.0)).sqrt();
        assert!(exact > 1e-3, "{exact}");
        assert!((mean - exact).abs() < 5.0 * se, "{mean} ± {se} vs {exact}");
    }

    #[test]
    fn observations_are_checked() {
        let task = Sir::new();
        let ok = [0.0; 30];
        assert!(task.check_observation(&ok).is_ok());
        assert!(task.check_observation(&ok[..29]).is_err());
        let mut x = ok;
        x[3] = 1.5;
        assert!(task.check_observation(&x).is_err());
        x[3] = 49.0;
        assert!(task.check_observation(&x).is_err());
        x[3] = 30.0;
        x[4] = 30.0;
        let err = task.check_observation(&x).unwrap_err();
        assert!(err.to_string().contains("total reported cases"), "{err}");
        let mut x = ok;
        x[20] = -2.0;
        assert!(task.check_observation(&x).is_err());
        assert!(SirLikelihood::new(&x).is_err());
    }
}
