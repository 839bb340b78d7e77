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

use crate::error::num;
use crate::{Error, Result};

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
    /// Checks every number: `lr` and `eps` finite and positive; `β₁`, `β₂` and the EMA decay
    /// `δ` in `[0, 1)` (at `δ = 1` the EMA never leaves the initial weights; past 1 or below 0
    /// it is not an average and blows up).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the field (`adam.lr`, `adam.beta1`, `adam.beta2`,
    /// `adam.eps`, `adam.ema_decay`).
    pub fn validate(&self) -> Result<()> {
        for (field, value) in [("adam.lr", self.lr), ("adam.eps", self.eps)] {
            if !(value.is_finite() && value > 0.0) {
                return Err(Error::invalid(field, num(value), "finite and > 0"));
            }
        }
        for (field, value) in [
            ("adam.beta1", self.beta1),
            ("adam.beta2", self.beta2),
            ("adam.ema_decay", self.ema_decay),
        ] {
            if !(0.0..1.0).contains(&value) {
                return Err(Error::invalid(field, num(value), "in [0, 1)"));
            }
        }
        Ok(())
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_is_checked_and_named() {
        assert!(AdamConfig::default().validate().is_ok());
        let field = |cfg: AdamConfig| match cfg.validate() {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected Error::Invalid, got {other:?}"),
        };
        let d = AdamConfig::default();
        for bad in [0.0, -1e-4, f64::NAN, f64::INFINITY] {
            assert_eq!(field(AdamConfig { lr: bad, ..d }), "adam.lr");
            assert_eq!(field(AdamConfig { eps: bad, ..d }), "adam.eps");
        }
        for bad in [1.0, 2.0, -1.0, f64::NAN, f64::NEG_INFINITY] {
            assert_eq!(
                field(AdamConfig {
                    ema_decay: bad,
                    ..d
                }),
                "adam.ema_decay"
            );
            assert_eq!(field(AdamConfig { beta1: bad, ..d }), "adam.beta1");
            assert_eq!(field(AdamConfig { beta2: bad, ..d }), "adam.beta2");
        }
        // The ends that are allowed: no EMA (δ = 0), any finite positive learning rate.
        assert!(AdamConfig {
            ema_decay: 0.0,
            lr: 1e30,
            ..d
        }
        .validate()
        .is_ok());
        let msg = AdamConfig { lr: 1e-300, ..d }
            .validate()
            .map(|()| String::new());
        assert!(msg.is_ok(), "tiny but positive");
        let msg = AdamConfig {
            ema_decay: -1e-300,
            ..d
        }
        .validate()
        .expect_err("negative")
        .to_string();
        assert!(msg.contains("-1e-300") && msg.len() < 80, "{msg}");
    }
}
