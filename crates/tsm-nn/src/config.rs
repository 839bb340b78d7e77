//! The configuration of a training run: everything a checkpoint records.
//!
//! A [`TrainConfig`] is self-contained: the model's parameterisation and the loss carry every
//! number they use, resolved from the target's variances before training
//! ([`LossConfig::new`], [`ModelConfig::resolve`]). A checkpoint's record is therefore enough
//! to rebuild the run, and nothing is passed beside the configuration that could contradict
//! it.
//!
//! ```
//! use tsm_core::identity::ScoreIdentity;
//! use tsm_core::weighting::Weighting;
//! use tsm_nn::loss::LossConfig;
//! use tsm_nn::{ModelConfig, Parameterisation, TrainConfig};
//!
//! let target = tsm_targets::named::eight_modes();
//! let loss = LossConfig::for_mixture("kappa_bar".parse()?, Weighting::Uniform, &target)?;
//! assert_eq!(loss.identity, ScoreIdentity::kappa_bar(target.mode_variance()));
//! let model = ModelConfig {
//!     parameterisation: "preconditioned".parse()?,
//!     ..ModelConfig::default()
//! }
//! .resolve(target.variance_per_dim())?;
//! let cfg = TrainConfig { steps: 100, ..TrainConfig::new("eight_modes", model, loss) };
//! assert!(cfg.validate().is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::engine::EngineKind;
use crate::loss::LossConfig;
use crate::network::ModelConfig;
use crate::optim::AdamConfig;
use crate::{Error, Result};

/// Everything that defines a training run (stored in every checkpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The target's name (`tsm_targets::named`), a label for the sampler's plots; the
    /// trainer checks the target it is given against the model's dimension only.
    pub target: String,
    /// The network, with its parameterisation resolved.
    pub model: ModelConfig,
    /// The loss, resolved.
    pub loss: LossConfig,
    /// Adam and the EMA.
    pub adam: AdamConfig,
    /// Batch size (512 in the benchmarks).
    pub batch: usize,
    /// Total steps.
    pub steps: u64,
    /// Seed of every random stream.
    pub seed: u64,
    /// Checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: u64,
    /// Which engine computes the step.
    pub engine: EngineKind,
}

impl TrainConfig {
    /// A run on the target called `target` with `model` and `loss`, and the defaults for the
    /// rest: Adam as [`AdamConfig::default`], batch 512, 10 000 steps, seed 0, a checkpoint
    /// every 1000 steps, the CPU engine.
    pub fn new(target: impl Into<String>, model: ModelConfig, loss: LossConfig) -> Self {
        Self {
            target: target.into(),
            model,
            loss,
            adam: AdamConfig::default(),
            batch: 512,
            steps: 10_000,
            seed: 0,
            checkpoint_every: 1000,
            engine: EngineKind::Cpu,
        }
    }

    /// Checks what can be checked without the target: the batch size, the learning rate, the
    /// network's sizes, that the parameterisation and the loss are resolved, and the time
    /// range (the trainer also checks the target's dimension and the loss on the range).
    ///
    /// # Errors
    /// [`Error::Config`] for a batch below 2 or a learning rate that is not positive;
    /// [`Error::Core`] for an unresolved identity or parameterisation, a bad variance or
    /// range.
    pub fn validate(&self) -> Result<()> {
        if self.batch < 2 {
            return Err(Error::config(format!(
                "batch must be at least 2, got {}",
                self.batch
            )));
        }
        if !(self.adam.lr.is_finite() && self.adam.lr > 0.0) {
            return Err(Error::config(format!(
                "learning rate must be positive, got {}",
                self.adam.lr
            )));
        }
        self.model.validate()?;
        let range = self.loss.range()?;
        self.loss
            .identity
            .coefficients(&self.model.schedule, range.t_max())?;
        if !(self.loss.sigma_data_sq.is_finite() && self.loss.sigma_data_sq > 0.0) {
            return Err(tsm_core::Error::NonPositive {
                name: "sigma_data_sq",
                value: self.loss.sigma_data_sq,
            }
            .into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeviceKind, Parameterisation};
    use tsm_core::identity::ScoreIdentity;
    use tsm_core::schedule::AnySchedule;
    use tsm_core::weighting::Weighting;

    fn config() -> TrainConfig {
        let target = tsm_targets::named::eight_modes();
        let loss =
            LossConfig::for_mixture(ScoreIdentity::kappa_bar(0.3), Weighting::Uniform, &target)
                .expect("loss");
        let model = ModelConfig {
            parameterisation: Parameterisation::preconditioned(target.variance_per_dim()),
            schedule: "linear_vp(beta_min=0.05,beta_max=12.5)"
                .parse()
                .expect("schedule"),
            ..ModelConfig::default()
        };
        TrainConfig::new("eight_modes", model, loss)
    }

    #[test]
    fn the_json_record_round_trips_exactly() {
        let cfg = config();
        let json = serde_json::to_string(&cfg).expect("json");
        assert!(json.contains(r#""identity":"kappa_bar=0.3""#), "{json}");
        let v = tsm_targets::named::eight_modes().variance_per_dim();
        let p = format!(r#""parameterisation":"preconditioned={v}""#);
        assert!(json.contains(&p), "{json}");
        assert!(
            json.contains(r#""schedule":"linear_vp(beta_min=0.05,beta_max=12.5)""#),
            "{json}"
        );
        let back: TrainConfig = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, cfg);
        assert_eq!(format!("{back:?}"), format!("{cfg:?}"));
    }

    #[test]
    fn every_choice_serialises_as_its_name() {
        fn round_trip<T>(value: T, name: &str)
        where
            T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
        {
            let json = serde_json::to_string(&value).expect("json");
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<T>(&json).expect("parse"), value);
        }
        round_trip(ScoreIdentity::Tsi, "tsi");
        round_trip(ScoreIdentity::Mixture { weight: 0.25 }, "mixture=0.25");
        round_trip(ScoreIdentity::kappa(1.0 / 3.0), "kappa=0.3333333333333333");
        round_trip(
            ScoreIdentity::KappaBar {
                sigma_mode_sq: None,
            },
            "kappa_bar",
        );
        round_trip(Weighting::DsmOptimal, "dsm_optimal");
        round_trip(AnySchedule::default(), "cosine");
        round_trip(Parameterisation::TargetScaled, "target_scaled");
        round_trip(DeviceKind::Cuda { ordinal: 2 }, "cuda:2");
        // A bad name in a record is a parse error that lists the valid names.
        let err = serde_json::from_str::<Weighting>("\"karras\"").unwrap_err();
        assert!(err.to_string().contains("dsm_optimal"), "{err}");
    }

    #[test]
    fn unresolved_or_bad_configurations_are_errors() {
        assert!(config().validate().is_ok());
        let mut cfg = config();
        cfg.loss.identity = "kappa".parse().expect("kappa");
        assert!(matches!(
            cfg.validate(),
            Err(Error::Core(tsm_core::Error::Unresolved {
                name: "kappa",
                ..
            }))
        ));
        let mut cfg = config();
        cfg.model.parameterisation = "preconditioned".parse().expect("p");
        assert!(matches!(
            cfg.validate(),
            Err(Error::Core(tsm_core::Error::Unresolved { .. }))
        ));
        let mut cfg = config();
        cfg.loss.sigma_data_sq = f64::NAN;
        assert!(cfg.validate().is_err());
        let mut cfg = config();
        (cfg.loss.t_min, cfg.loss.t_max) = (0.9, 0.1);
        assert!(cfg.validate().is_err());
        let mut cfg = config();
        cfg.batch = 1;
        assert!(matches!(cfg.validate(), Err(Error::Config { .. })));
    }
}
