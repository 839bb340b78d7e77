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
use crate::error::num;
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
    /// For a conditional model trained on simulations ([`crate::sbi`]): the task, the SBI
    /// loss and the simulator budget (`None`, and then not written in the JSON, otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulation: Option<crate::sbi::SimulationConfig>,
    /// An implicit loss (ISM, SSM: [`crate::implicit`]) that replaces the regression on
    /// `loss.identity`; `loss` still gives the weighting and the time range. `None` (and then
    /// not written in the JSON): the regression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub implicit: Option<crate::implicit::ImplicitLoss>,
}

impl TrainConfig {
    /// Checks a run whose batches come from a model without a diffusion schedule (a bridge, a
    /// non-additive noise model): the config itself, the `dims` of the model's parts against
    /// the network's, and the plain `score` output (the other parameterisations read `α_t`
    /// and `σ_t`). `what` names the model in the error.
    ///
    /// # Errors
    /// As [`TrainConfig::validate`]; [`Error::TargetDimension`]; [`Error::Config`] for another
    /// parameterisation.
    pub fn validate_plain_score(&self, dims: &[usize], what: &str) -> Result<()> {
        self.validate()?;
        let d = self.model.mlp.dim;
        if let Some(&p) = dims.iter().find(|&&p| p != d) {
            return Err(Error::TargetDimension {
                model: d,
                target: p,
            });
        }
        if self.model.parameterisation != crate::precond::Parameterisation::Score {
            return Err(Error::config(format!(
                "{what} is trained with the plain `score` output, not `{}` (the others read a \
                 diffusion schedule's α_t and σ_t)",
                self.model.parameterisation
            )));
        }
        Ok(())
    }

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
            simulation: None,
            implicit: None,
        }
    }

    /// The largest batch (2²⁰): more is taken for a mistake and refused before allocating.
    pub const MAX_BATCH: usize = 1 << 20;
    /// The most steps of a run (10⁹: about a month at the CPU engine's speed).
    pub const MAX_STEPS: u64 = 1_000_000_000;
    /// The widest hidden layer (2¹⁴).
    pub const MAX_HIDDEN: usize = 1 << 14;
    /// The most hidden layers (1000).
    pub const MAX_DEPTH: usize = 1000;
    /// The largest time-embedding dimension (2¹⁴).
    pub const MAX_EMBEDDING_DIM: usize = 1 << 14;
    /// The most memory a run may be estimated to need (8 GiB, see
    /// [`TrainConfig::memory_estimate`]).
    pub const MAX_MEMORY_BYTES: u64 = 8 << 30;

    /// A rough upper estimate of the memory a run needs, in bytes: `4 (6P + B (E + k + 2d +
    /// 4hL))` for `P` parameters (the parameters, their EMA, Adam's two moments, the gradient
    /// and a copy), batch `B`, embedding `E`, condition width `k`, dimension `d`, width `h` and depth `L` (the
    /// activations kept for the backward pass), all in `f32`. `None` if it overflows `u64`.
    pub fn memory_estimate(&self) -> Option<u64> {
        let m = &self.model.mlp;
        let u = |x: usize| u64::try_from(x).ok();
        // Parameters: (d + k + E) h + (L − 1) h² + h d weights, L h + d biases.
        let (d, e, h, l) = (u(m.dim)?, u(m.embedding_dim)?, u(m.hidden)?, u(m.depth)?);
        let k = u(m.condition_dim)?;
        let params = d
            .checked_add(k)?
            .checked_add(e)?
            .checked_mul(h)?
            .checked_add(l.checked_sub(1)?.checked_mul(h.checked_mul(h)?)?)?
            .checked_add(h.checked_mul(d)?)?
            .checked_add(l.checked_mul(h)?)?
            .checked_add(d)?;
        let per_row = e
            .checked_add(k)?
            .checked_add(d.checked_mul(2)?)?
            .checked_add(h.checked_mul(l)?.checked_mul(4)?)?;
        params
            .checked_mul(6)?
            .checked_add(u(self.batch)?.checked_mul(per_row)?)?
            .checked_mul(4)
    }

    /// Checks everything that can be checked without the target, before any work: the batch
    /// size, the number of steps, every Adam number ([`AdamConfig::validate`]), the
    /// network's sizes and the memory they need, that the parameterisation and the loss are
    /// resolved, the time range, and that the loss is defined at both of its ends (the
    /// trainer also checks the target's dimension).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the field (`batch`, `steps`, `adam.*`, `model.mlp.dim`,
    /// `model.mlp.hidden`, `model.mlp.depth`, `model.mlp.embedding_dim`, `memory`,
    /// `loss.t_min`, `loss.t_max`); [`Error::Core`] for an unresolved identity or
    /// parameterisation or a bad variance.
    pub fn validate(&self) -> Result<()> {
        if !(2..=Self::MAX_BATCH).contains(&self.batch) {
            return Err(Error::invalid(
                "batch",
                self.batch,
                format!("in [2, {}]", Self::MAX_BATCH),
            ));
        }
        if self.steps > Self::MAX_STEPS {
            return Err(Error::invalid(
                "steps",
                self.steps,
                format!("at most {}", Self::MAX_STEPS),
            ));
        }
        self.adam.validate()?;
        let m = &self.model.mlp;
        for (field, value, max) in [
            ("model.mlp.dim", m.dim, Self::MAX_HIDDEN),
            ("model.mlp.hidden", m.hidden, Self::MAX_HIDDEN),
            ("model.mlp.depth", m.depth, Self::MAX_DEPTH),
            (
                "model.mlp.embedding_dim",
                m.embedding_dim,
                Self::MAX_EMBEDDING_DIM,
            ),
        ] {
            if !(1..=max).contains(&value) {
                return Err(Error::invalid(field, value, format!("in [1, {max}]")));
            }
        }
        if m.condition_dim > Self::MAX_HIDDEN {
            return Err(Error::invalid(
                "model.mlp.condition_dim",
                m.condition_dim,
                format!("in [0, {}]", Self::MAX_HIDDEN),
            ));
        }
        if m.embedding_dim % 2 != 0 {
            return Err(Error::invalid(
                "model.mlp.embedding_dim",
                m.embedding_dim,
                "even",
            ));
        }
        match self.memory_estimate() {
            Some(bytes) if bytes <= Self::MAX_MEMORY_BYTES => {}
            estimate => {
                return Err(Error::invalid(
                    "memory",
                    estimate.map_or_else(
                        || "more than 2^64 bytes".to_owned(),
                        |b| format!("≈ {:.1} GiB", b as f64 / f64::from(1u32 << 30)),
                    ),
                    format!(
                        "at most {} GiB (a smaller batch, model.mlp.hidden, depth or \
                         embedding_dim)",
                        Self::MAX_MEMORY_BYTES >> 30
                    ),
                ));
            }
        }
        self.model.validate()?;
        if let Some(implicit) = &self.implicit {
            crate::implicit::validate_run(implicit, self)?;
        }
        if let Some(sim) = &self.simulation {
            sim.validate(&self.model)?;
        }
        let (t_min, t_max) = (self.loss.t_min, self.loss.t_max);
        if !(0.0..1.0).contains(&t_min) {
            return Err(Error::invalid("loss.t_min", num(t_min), "in [0, 1)"));
        }
        if !(t_max > 0.0 && t_max <= 1.0) {
            return Err(Error::invalid("loss.t_max", num(t_max), "in (0, 1]"));
        }
        if t_min >= t_max {
            return Err(Error::invalid(
                "loss.t_min",
                num(t_min),
                format!("below loss.t_max = {}", num(t_max)),
            ));
        }
        for (field, t) in [("loss.t_min", t_min), ("loss.t_max", t_max)] {
            match self.loss.identity.coefficients(&self.model.schedule, t) {
                Ok(_) => {}
                Err(tsm_core::Error::UndefinedAt {
                    identity, reason, ..
                }) => {
                    return Err(Error::invalid(
                        field,
                        num(t),
                        format!("a time where the {identity} target is defined (there: {reason})"),
                    ))
                }
                Err(e) => return Err(e.into()),
            }
        }
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
        assert!(matches!(
            cfg.validate(),
            Err(Error::Invalid { field: "batch", .. })
        ));
    }

    /// The field an invalid configuration is refused for.
    fn refused(cfg: &TrainConfig) -> &'static str {
        match cfg.validate() {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected Error::Invalid, got {other:?}"),
        }
    }

    #[test]
    fn every_number_is_bounded_and_named() {
        let base = config();
        let with = |f: &dyn Fn(&mut TrainConfig)| {
            let mut c = base.clone();
            f(&mut c);
            c
        };
        for nan_or_out in [f64::NAN, f64::INFINITY, -1.0, 1.5] {
            assert_eq!(
                refused(&with(&|c| c.adam.ema_decay = nan_or_out)),
                "adam.ema_decay"
            );
            assert_eq!(refused(&with(&|c| c.loss.t_min = nan_or_out)), "loss.t_min");
            assert_eq!(refused(&with(&|c| c.loss.t_max = nan_or_out)), "loss.t_max");
        }
        assert_eq!(
            refused(&with(&|c| c.adam.ema_decay = 1.0)),
            "adam.ema_decay"
        );
        assert_eq!(refused(&with(&|c| c.adam.lr = 0.0)), "adam.lr");
        assert_eq!(refused(&with(&|c| c.batch = usize::MAX)), "batch");
        assert_eq!(refused(&with(&|c| c.steps = u64::MAX)), "steps");
        assert_eq!(
            refused(&with(&|c| c.model.mlp.hidden = 1_000_000)),
            "model.mlp.hidden"
        );
        assert_eq!(
            refused(&with(&|c| c.model.mlp.depth = 100_000)),
            "model.mlp.depth"
        );
        assert_eq!(
            refused(&with(&|c| c.model.mlp.embedding_dim = 1_000_000_000)),
            "model.mlp.embedding_dim"
        );
        assert_eq!(
            refused(&with(&|c| c.model.mlp.embedding_dim = 7)),
            "model.mlp.embedding_dim"
        );
        // Each size within its bound, but together too big for memory.
        let huge = with(&|c| {
            c.model.mlp.hidden = TrainConfig::MAX_HIDDEN;
            c.batch = TrainConfig::MAX_BATCH;
        });
        assert_eq!(refused(&huge), "memory");
        // The reversed range, and an end where the loss is undefined (DSI at σ_t = 0),
        // printed in a readable form.
        assert_eq!(
            refused(&with(&|c| (c.loss.t_min, c.loss.t_max) = (0.5, 0.4))),
            "loss.t_min"
        );
        let mut dsi = with(&|c| c.loss.t_min = 1e-300);
        dsi.loss.identity = ScoreIdentity::Dsi;
        dsi.model.schedule = AnySchedule::default(); // cosine: σ_t rounds to 0 there
        assert_eq!(refused(&dsi), "loss.t_min");
        let msg = dsi.validate().expect_err("undefined").to_string();
        assert!(msg.contains("1e-300") && msg.len() < 150, "{msg}");
        // The default sizes need a few MB.
        let bytes = base.memory_estimate().expect("estimate");
        assert!((1 << 20..64 << 20).contains(&bytes), "{bytes}");
    }
}
