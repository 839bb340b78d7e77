//! The streaming log-sum-exp behind the mixture's score, noised score and log density.

/// One-pass log-sum-exp: terms `e^{lᵢ}` are summed relative to the running maximum, and a
/// caller's running weighted sum `acc` is rescaled whenever the maximum moves, so that no term
/// overflows or underflows and nothing is allocated.
pub(super) struct StreamingSoftmax {
    max_log: f64,
    total: f64,
}

impl StreamingSoftmax {
    pub(super) fn new() -> Self {
        Self {
            max_log: f64::NEG_INFINITY,
            total: 0.0,
        }
    }

    /// Adds a term with log-weight `l` and returns its weight `e^{l − max}` relative to the
    /// (possibly new) maximum; `acc` is rescaled to the new maximum first.
    #[inline]
    pub(super) fn push(&mut self, l: f64, acc: &mut [f64]) -> f64 {
        let w = if l > self.max_log {
            let rescale = (self.max_log - l).exp();
            self.total *= rescale;
            acc.iter_mut().for_each(|a| *a *= rescale);
            self.max_log = l;
            1.0
        } else {
            (l - self.max_log).exp()
        };
        self.total += w;
        w
    }

    /// `Σ e^{lᵢ − max}`.
    pub(super) fn total(&self) -> f64 {
        self.total
    }

    /// `log Σ e^{lᵢ}`.
    pub(super) fn log_total(&self) -> f64 {
        self.max_log + self.total.ln()
    }
}
