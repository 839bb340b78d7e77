//! The learned MIX weight (`mix_learned`, `tsm_nn::sbi::LearnedWeight`): the two engines
//! give the same loss and gradients, the weight lives in the checkpoint (resumed
//! bit-identically, the network still loads for sampling), and a quick run on
//! `linear_gaussian` moves `w(t)` from its start to the closed-form `w_t*`.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use tsm_core::schedule::Cosine;
use tsm_nn::candle::Device;
use tsm_nn::engine::EngineKind;
use tsm_nn::sbi::{LearnedWeight, SbiLoss, SbiTrainer, SimulationBatches, SimulationSet};
use tsm_nn::{checkpoint, TrainConfig};
use tsm_targets::sbi::SbiTask;

use common::{resume_to, trainer};

fn scratch(name: &str) -> PathBuf {
    common::scratch("tsm-sbi-lw", name)
}

/// A small mix_learned run.
fn config(set: &SimulationSet, engine: EngineKind, steps: u64) -> TrainConfig {
    common::config(set, SbiLoss::MixLearned, engine, steps)
}

/// Every tensor of a state, by list and name.
fn named(t: &SbiTrainer) -> Vec<(String, Vec<f32>)> {
    let state = t.state().expect("state");
    let mut out = Vec::new();
    for (list, tensors) in [
        ("params", state.params()),
        ("ema", state.ema()),
        ("adam_m", state.adam_m()),
        ("adam_v", state.adam_v()),
    ] {
        for (name, x) in tensors {
            let v = x.flatten_all().expect("f").to_vec1::<f32>().expect("v");
            out.push((format!("{list}.{name}"), v));
        }
    }
    out
}

#[test]
fn engines_give_the_same_loss_and_gradients() {
    // After one Adam step from zero moments, adam_m = (1 − β₁) g exactly: the first moments
    // are the gradients, network and learned weight alike. sir: d = 2, k = 30. The engines
    // sum in other orders (f32), so agreement is to rounding: each tensor within 10⁻⁴ of its
    // largest entry.
    let set = Arc::new(SimulationSet::simulate(SbiTask::Sir, 2000, 4, |_| {}).expect("set"));
    let mut a = trainer(&set, config(&set, EngineKind::Cpu, 20));
    let mut b = trainer(&set, config(&set, EngineKind::Candle, 20));
    let batch = a.batch_of_step(1).expect("batch");
    assert!(batch.mix.is_some());
    let (la, lb) = (
        a.loss_on(&batch).expect("cpu"),
        b.loss_on(&batch).expect("candle"),
    );
    assert!((la - lb).abs() <= 1e-5 * lb.abs(), "loss {la} vs {lb}");
    let (sa, sb) = (
        a.train_step().expect("cpu"),
        b.train_step().expect("candle"),
    );
    assert_eq!(sa, la);
    assert!((sa - sb).abs() <= 1e-5 * sb.abs());
    let (na, nb) = (named(&a), named(&b));
    assert_eq!(na.len(), nb.len());
    let mut saw_weight = false;
    for ((name, x), (name_b, y)) in na.iter().zip(&nb) {
        assert_eq!(name, name_b);
        if !name.starts_with("adam_m.") {
            continue;
        }
        let scale = y.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let worst = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max);
        assert!(scale > 0.0, "{name}: no gradient");
        assert!(worst <= 1e-4 * scale, "{name}: {worst} of {scale}");
        if name == "adam_m.mix_weight" {
            saw_weight = true;
            // A non-trivial gradient in each coefficient.
            assert!(y.iter().all(|v| v.abs() > 0.0), "{y:?}");
        }
    }
    assert!(saw_weight);
    // And they stay together over 20 steps.
    for _ in 1..20 {
        let (la, lb) = (
            a.train_step().expect("cpu"),
            b.train_step().expect("candle"),
        );
        assert!((la - lb).abs() <= 1e-4 * lb.abs().max(1.0), "{la} vs {lb}");
    }
    let (wa, wb) = (
        LearnedWeight::from_state(&a.state().expect("a"), false).expect("wa"),
        LearnedWeight::from_state(&b.state().expect("b"), false).expect("wb"),
    );
    for (p, q) in wa.coefficients().iter().zip(wb.coefficients()) {
        assert!((p - q).abs() < 1e-4, "{wa:?} vs {wb:?}");
    }
}

#[test]
fn the_weight_is_checkpointed_resumed_bit_identically_and_ignored_by_sampling() {
    let set =
        Arc::new(SimulationSet::simulate(SbiTask::GaltonBoard, 1000, 9, |_| {}).expect("set"));
    for engine in [EngineKind::Cpu, EngineKind::Candle] {
        let dir = scratch(&format!("resume-{engine:?}"));
        let mut straight = trainer(&set, config(&set, engine, 40));
        straight.run(None, |_, _| {}).expect("40 steps");
        let mut first = trainer(&set, config(&set, engine, 20));
        first.run(Some(&dir), |_, _| {}).expect("20 steps");
        let (record, state) = checkpoint::load(&dir).expect("load");
        let w = LearnedWeight::from_state(&state, true).expect("EMA weight");
        assert_ne!(w, LearnedWeight::initial(), "the EMA moved");
        assert_eq!(
            record.config.simulation.expect("sim").loss,
            SbiLoss::MixLearned
        );
        let batches = SimulationBatches::new(set.clone(), &record.config).expect("batches");
        let resumed = resume_to(&dir, batches, 40);
        assert!(named(&straight) == named(&resumed), "{engine:?}");
        // The network loads for sampling from the checkpoint's EMA (the weight is skipped).
        let (record, state) = checkpoint::load(&dir).expect("load");
        let model =
            tsm_nn::train::model_from_named(&record.config.model, state.ema(), &Device::Cpu)
                .expect("model");
        assert_eq!(model.config().mlp.condition_dim, 10);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_quick_run_moves_the_weight_to_the_closed_form() {
    // linear_gaussian: w_t* = 5σ²/(5σ² + α²) (F = 20, d = 4), i.e. the logit
    // g*(t) = log 5 − λ_t; the start is w(t) = σ²/(σ² + α²), the logit g₀(t) = −λ_t, so
    // training must raise the logit by log 5 = 1.61 at every t. After 600 steps (batch 256,
    // lr 10⁻³, the weight's 10⁻²) the learned logit must be within 0.2 of g*(t) on
    // t = 0.1…0.9 (an eighth of the way it had to go), and the weight closer to w_t* than the
    // start at every t. Measured: the largest logit gap is 0.06 (at t = 0.7); the rest is the
    // coefficients' Adam jitter (steps of 10⁻² in each of four coefficients), F̂'s error
    // from the finite set (20,000 simulations: under 1%, 0.01 in the logit) and the MC noise
    // of the gradient's ⟨s − y, A − B⟩ term, so 0.2 leaves a margin of 3 while a wrong sign
    // or a weight that does not learn (gap 1.61) fails. Fixed seeds.
    let set = Arc::new(
        SimulationSet::simulate(SbiTask::LinearGaussian, 20_000, 11, |_| {}).expect("set"),
    );
    let mut cfg = config(&set, EngineKind::Cpu, 600);
    cfg.batch = 256;
    cfg.adam.lr = 1e-3;
    let mut t = trainer(&set, cfg);
    t.run(None, |_, _| {}).expect("train");
    let learned = LearnedWeight::from_state(&t.state().expect("state"), false).expect("w");
    let optimal = LearnedWeight::optimal(20.0, 4).expect("w*");
    let start = LearnedWeight::initial();
    eprintln!("learned coefficients {:?}", learned.coefficients());
    for i in 1..=9 {
        let time = i as f64 / 10.0;
        let (w, ws, w0) = (
            learned.at(&Cosine, time).expect("w"),
            optimal.at(&Cosine, time).expect("w*"),
            start.at(&Cosine, time).expect("w0"),
        );
        let logit = |p: f64| (p / (1.0 - p)).ln();
        eprintln!(
            "t = {time}: w {w:.4}, w* {ws:.4}, start {w0:.4}, logit gap {:.3}",
            logit(w) - logit(ws)
        );
        assert!((w - ws).abs() < (w0 - ws).abs(), "t = {time}");
        assert!((logit(w) - logit(ws)).abs() < 0.2, "t = {time}");
    }
}
