//! Adam (Kingma & Ba 2015) with PyTorch's conventions, and an exponential moving average
//! (EMA) of the weights for sampling (Song & Ermon 2020).
//!
//! At step `k = 1, 2, …` with gradient `g`:
//!
//! ```text
//! m ← β₁ m + (1 − β₁) g,        v ← β₂ v + (1 − β₂) g²
//! θ ← θ − lr · (m / (1 − β₁ᵏ)) / (√(v / (1 − β₂ᵏ)) + ε)
//! θ_ema ← δ θ_ema + (1 − δ) θ
//! ```

use serde::{Deserialize, Serialize};

/// Adam's hyper-parameters and the EMA decay.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    /// Learning rate (paper §4.2: `10⁻⁴`).
    pub lr: f64,
    /// `β₁` (0.9).
    pub beta1: f64,
    /// `β₂` (0.999).
    pub beta2: f64,
    /// `ε` (1e-8).
    pub eps: f64,
    /// EMA decay `δ` (0.999).
    pub ema_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            ema_decay: 0.999,
        }
    }
}

impl AdamConfig {
    /// `(lr / (1 − β₁ᵏ), 1 / (1 − β₂ᵏ))` at step `k ≥ 1`.
    pub fn bias_corrections(&self, step: u64) -> (f64, f64) {
        let k = step as i32;
        (
            self.lr / (1.0 - self.beta1.powi(k)),
            1.0 / (1.0 - self.beta2.powi(k)),
        )
    }
}

/// One fused Adam + EMA update over flat buffers (all the same length), step `k ≥ 1`.
pub fn adam_ema_update(
    cfg: &AdamConfig,
    step: u64,
    theta: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    ema: &mut [f32],
) {
    let (step_size, bc2) = cfg.bias_corrections(step);
    let (b1, b2) = (cfg.beta1 as f32, cfg.beta2 as f32);
    let (step_size, bc2, eps) = (step_size as f32, bc2 as f32, cfg.eps as f32);
    let (d, one_minus_d) = (cfg.ema_decay as f32, (1.0 - cfg.ema_decay) as f32);
    for ((((p, &g), mi), vi), e) in theta
        .iter_mut()
        .zip(grad)
        .zip(m.iter_mut())
        .zip(v.iter_mut())
        .zip(ema.iter_mut())
    {
        *mi = b1 * *mi + (1.0 - b1) * g;
        *vi = b2 * *vi + (1.0 - b2) * g * g;
        *p -= step_size * *mi / ((*vi * bc2).sqrt() + eps);
        *e = d * *e + one_minus_d * *p;
    }
}
