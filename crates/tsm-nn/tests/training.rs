//! Training: the two engines agree, resume is bit-identical, a NaN or a diverging loss stops
//! the run with the last checkpoint intact (and says whether there is one), a checkpoint the
//! loader would reject is never written, a damaged checkpoint is a typed error, and DSM/TSM
//! learn a Gaussian score.
//!
//! Device-parameterised: the candle engine, the learning test and the model evaluation run on
//! [`tsm_nn::test_device`] — the CPU by default, the GPU under `cargo test-cuda` /
//! `cargo test-metal` (or `TSM_TEST_DEVICE=…`). The hand-written engine is CPU-only and stays on
//! the CPU, where it is the reference the candle engine is compared with.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use candle::Device;
use rand::Rng;
use tsm_core::identity::ScoreIdentity;
use tsm_core::schedule::Cosine;
use tsm_core::target::{Dim, Sample, Score};
use tsm_core::weighting::{TimeRange, Weighting};
use tsm_nn::engine::EngineKind;
use tsm_nn::loss::{LossConfig, TargetVariances};
use tsm_nn::train::Divergence;
use tsm_nn::{checkpoint, Error, MlpConfig, ModelConfig, TrainConfig, Trainer, TrainerOptions};
use tsm_targets::{named, GaussianMixture};

/// A fresh, empty folder under the system temp dir (no tempfile crate in the workspace).
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tsm-nn-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A small network so that the dev-profile tests stay fast.
fn small(dim: usize) -> ModelConfig {
    ModelConfig {
        mlp: MlpConfig {
            dim,
            hidden: 32,
            depth: 3,
            embedding_dim: 16,
            time_scale: 1000.0,
            condition_dim: 0,
        },
        ..ModelConfig::default()
    }
}

/// A run on the eight-mode mixture with the loss `identity` (its variances resolved from the
/// target), uniform weighting.
fn config(engine: EngineKind, identity: ScoreIdentity, steps: u64) -> TrainConfig {
    let target = named::eight_modes();
    let loss =
        LossConfig::for_mixture(identity, Weighting::Uniform, &target).expect("resolved loss");
    TrainConfig {
        batch: 64,
        steps,
        seed: 7,
        checkpoint_every: 0,
        engine,
        ..TrainConfig::new("eight_modes", small(2), loss)
    }
}

const DSM: ScoreIdentity = ScoreIdentity::Dsi;
const TSM: ScoreIdentity = ScoreIdentity::Tsi;
const KAPPA: ScoreIdentity = ScoreIdentity::Kappa {
    sigma_data_sq: None,
};

fn threads(n: usize) -> TrainerOptions {
    TrainerOptions::with_threads(n)
}

fn flat_params(t: &Trainer<'_, GaussianMixture>) -> Vec<f32> {
    let state = t.state().expect("state");
    let mut out = Vec::new();
    for (_, x) in state
        .params()
        .iter()
        .chain(state.ema())
        .chain(state.adam_m())
        .chain(state.adam_v())
    {
        out.extend(
            x.flatten_all()
                .expect("flat")
                .to_vec1::<f32>()
                .expect("vec"),
        );
    }
    out
}

/// The device under test (see the module docs).
fn device() -> Device {
    tsm_nn::test_device().expect("TSM_TEST_DEVICE names a device this build can open")
}

/// The engine for `device`: the hand-written one on the CPU, candle's autograd elsewhere.
fn engine_on(device: &Device) -> EngineKind {
    if device.is_cpu() {
        EngineKind::Cpu
    } else {
        EngineKind::Candle
    }
}

/// A trainer on the device its engine runs on: the CPU engine on the CPU, the candle engine on
/// the device under test.
fn trainer(cfg: TrainConfig, target: &GaussianMixture) -> Trainer<'_, GaussianMixture> {
    let dev = match cfg.engine {
        EngineKind::Cpu => Device::Cpu,
        EngineKind::Candle => device(),
    };
    Trainer::with_options(cfg, target, &dev, threads(2)).expect("trainer")
}

#[test]
fn cpu_engine_matches_candle_autograd() {
    let target = named::eight_modes();
    for kind in [DSM, TSM, KAPPA] {
        let mut a = trainer(config(EngineKind::Cpu, kind, 20), &target);
        let mut b = trainer(config(EngineKind::Candle, kind, 20), &target);
        for _ in 0..20 {
            let (la, lb) = (
                a.train_step().expect("cpu"),
                b.train_step().expect("candle"),
            );
            // Same maths, different float summation order: agreement to f32 rounding.
            assert!(
                (la - lb).abs() <= 1e-4 * lb.abs().max(1.0),
                "{kind:?}: {la} vs {lb}"
            );
        }
        let (sa, sb) = (a.state().expect("a"), b.state().expect("b"));
        let flat = |v: &[(String, candle::Tensor)]| -> Vec<f32> {
            v.iter()
                .flat_map(|(_, t)| t.flatten_all().expect("f").to_vec1::<f32>().expect("v"))
                .collect()
        };
        // Parameters: 20 Adam steps of size ≤ lr = 1e-4; rounding differences in the
        // gradients move them by far less than 1e-6.
        for (x, y) in [(sa.params(), sb.params()), (sa.ema(), sb.ema())] {
            let worst = flat(x)
                .iter()
                .zip(&flat(y))
                .map(|(p, q)| (p - q).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-6, "{kind:?}: max parameter difference {worst}");
        }
        // Moments: relative to their scale (gradients reach 1e3 for DSM near t = 0).
        for (x, y) in [(sa.adam_m(), sb.adam_m()), (sa.adam_v(), sb.adam_v())] {
            let (fx, fy) = (flat(x), flat(y));
            let scale = fy.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
            let worst = fx
                .iter()
                .zip(&fy)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0f32, f32::max);
            assert!(
                worst <= 1e-4 * scale,
                "{kind:?}: moment difference {worst} (scale {scale})"
            );
        }
    }
}

#[test]
fn resume_is_bit_identical() {
    let target = named::eight_modes();
    for engine in [EngineKind::Cpu, EngineKind::Candle] {
        let dir = scratch(&format!("resume-{engine:?}"));
        let mut straight = trainer(config(engine, KAPPA, 200), &target);
        straight.run(None, |_, _| {}).expect("200 steps");

        let mut first = trainer(config(engine, KAPPA, 100), &target);
        first.run(Some(&dir), |_, _| {}).expect("100 steps");
        // A different thread count must not change the bits.
        let dev = match engine {
            EngineKind::Cpu => Device::Cpu,
            EngineKind::Candle => device(),
        };
        let mut resumed =
            Trainer::resume_with_options(&dir, &target, &dev, threads(1)).expect("resume");
        assert_eq!(
            resumed.config(),
            first.config(),
            "the record is the whole config"
        );
        assert_eq!(resumed.step(), 100);
        resumed.set_total_steps(200).expect("200 ≥ 100");
        assert!(resumed.set_total_steps(99).is_err(), "below the steps done");
        resumed.run(Some(&dir), |_, _| {}).expect("100 more");
        assert_eq!(flat_params(&straight), flat_params(&resumed), "{engine:?}");
        assert_eq!(straight.last_loss(), resumed.last_loss());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A target whose score turns NaN when asked to (to force a NaN loss).
struct Poisoned {
    inner: GaussianMixture,
    poisoned: AtomicBool,
}

impl Dim for Poisoned {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
}

impl Score for Poisoned {
    fn score(&self, x: &[f64], out: &mut [f64]) {
        self.inner.score(x, out);
        if self.poisoned.load(Ordering::Relaxed) {
            out[0] = f64::NAN;
        }
    }
}

impl Sample for Poisoned {
    fn sample_into<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]) {
        self.inner.sample_into(rng, out)
    }
}

#[test]
fn nan_stops_the_run_and_keeps_the_last_checkpoint() {
    let dir = scratch("nan");
    let target = Poisoned {
        inner: named::eight_modes(),
        poisoned: AtomicBool::new(false),
    };
    let cfg = TrainConfig {
        checkpoint_every: 10,
        ..config(EngineKind::Cpu, TSM, 40)
    };
    let mut t = Trainer::with_options(cfg, &target, &Device::Cpu, threads(1)).expect("trainer");
    let mut seen = 0;
    let err = t
        .run(Some(&dir), |step, _| {
            seen = step;
            if step == 25 {
                target.poisoned.store(true, Ordering::Relaxed);
            }
        })
        .expect_err("NaN must stop the run");
    let msg = err.to_string();
    match err {
        Error::Diverged {
            step,
            reason: Divergence::NonFiniteLoss { value },
            last_checkpoint,
        } => {
            assert_eq!(step, 26);
            assert!(value.is_nan());
            assert_eq!(last_checkpoint, Some(20));
        }
        other => panic!("wrong error {other}"),
    }
    assert!(
        msg.contains("step 26") && msg.contains("checkpoint (step 20) is kept"),
        "{msg}"
    );
    assert_eq!((seen, t.step()), (25, 25), "no update from the NaN step");
    let (record, _) = checkpoint::load(&dir).expect("the step-20 checkpoint is loadable");
    assert_eq!(record.step, 20);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_diverging_run_stops_naming_the_step_and_keeps_the_last_good_checkpoint() {
    // DSM with lr = 10 on the eight-mode mixture: Adam moves every weight by ~10 per step and
    // the loss grows by decades within a few steps, finite all along (the issue's
    // `train --loss dsm --lr 10`, which used to end with a loss of 8·10¹¹).
    let target = named::eight_modes();
    let diverging = |checkpoint_every| TrainConfig {
        adam: tsm_nn::optim::AdamConfig {
            lr: 10.0,
            ..Default::default()
        },
        checkpoint_every,
        ..config(EngineKind::Cpu, DSM, 2000)
    };
    let dir = scratch("diverge");
    let mut t = trainer(diverging(1), &target);
    let err = t.run(Some(&dir), |_, _| {}).expect_err("diverges");
    let msg = err.to_string();
    let Error::Diverged {
        step,
        last_checkpoint,
        ..
    } = err
    else {
        panic!("wrong error {err}");
    };
    assert!(step < 200, "caught early: step {step}");
    assert_eq!(
        last_checkpoint,
        Some(step - 1),
        "saved every step until then"
    );
    assert_eq!(t.step(), step, "stopped there");
    assert!(msg.contains(&format!("step {step}")), "{msg}");
    let (record, state) = checkpoint::load(&dir).expect("the last good checkpoint loads");
    assert_eq!(record.step, step - 1);
    assert!(record.loss.is_some_and(f64::is_finite));
    for (_, x) in state.params().iter().chain(state.ema()) {
        let v = x.flatten_all().expect("f").to_vec1::<f32>().expect("v");
        assert!(v.iter().all(|v| v.is_finite()));
    }
    // Without a checkpoint yet, the message says so rather than claim one.
    let dir2 = scratch("diverge-none");
    let mut t = trainer(diverging(0), &target);
    let err = t.run(Some(&dir2), |_, _| {}).expect_err("diverges");
    assert!(
        matches!(
            err,
            Error::Diverged {
                last_checkpoint: None,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("no checkpoint was written"),
        "{err}"
    );
    assert!(!dir2.join(checkpoint::RECORD_FILE).exists());
    // The paper's learning rate on the same run trains without a false alarm.
    let mut ok = trainer(config(EngineKind::Cpu, DSM, 300), &target);
    ok.run(None, |_, _| {}).expect("lr 1e-4 does not diverge");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

#[test]
fn a_checkpoint_the_loader_would_reject_is_never_written() {
    // `train --ema-decay nan` used to store `"ema_decay": null`, which nothing could load.
    let target = named::eight_modes();
    let mut cfg = config(EngineKind::Cpu, DSM, 2);
    cfg.adam.ema_decay = f64::NAN;
    assert!(matches!(
        Trainer::new(cfg.clone(), &target, &Device::Cpu),
        Err(Error::Invalid {
            field: "adam.ema_decay",
            ..
        })
    ));
    // Saving it directly (bypassing the trainer's check) is refused before the commit point.
    let good = trainer(config(EngineKind::Cpu, DSM, 2), &target);
    let state = good.state().expect("state");
    let dir = scratch("reject");
    let err = checkpoint::save(&dir, &cfg, 0, None, &state).expect_err("refused");
    assert!(err.to_string().contains("not saved"), "{err}");
    // A non-finite loss in the record (JSON null) is refused the same way.
    let err =
        checkpoint::save(&dir, good.config(), 1, Some(f64::NAN), &state).expect_err("NaN loss");
    assert!(err.to_string().contains("not saved"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "nothing written: {left:?}");
    // A record edited by hand into an invalid configuration is a one-line checkpoint error.
    checkpoint::save(&dir, good.config(), 0, None, &state).expect("valid");
    let path = dir.join(checkpoint::RECORD_FILE);
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(
        &path,
        text.replace("\"ema_decay\": 0.999", "\"ema_decay\": 2.0"),
    )
    .expect("write");
    let err = checkpoint::load(&dir).map(drop).expect_err("invalid");
    assert!(matches!(err, Error::Checkpoint { .. }), "{err}");
    assert!(err.to_string().contains("adam.ema_decay"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn leftovers_of_an_interrupted_save_are_removed() {
    let target = named::eight_modes();
    let dir = scratch("leftovers");
    let mut t = trainer(
        TrainConfig {
            checkpoint_every: 1,
            ..config(EngineKind::Cpu, DSM, 3)
        },
        &target,
    );
    t.run(Some(&dir), |_, _| {}).expect("train");
    // What a kill between the tensor file's rename and the record's commit, or during a
    // write, leaves: an unnamed tensor file and temporary files of a dead process.
    let orphan = dir.join("step_00000004.safetensors");
    let temps = [
        ".step_00000004.safetensors.4294967295.tmp",
        ".checkpoint.json.4294967295.tmp",
    ]
    .map(|n| dir.join(n));
    for f in temps.iter().chain([&orphan]) {
        std::fs::write(f, b"partial").expect("write");
    }
    let removed = checkpoint::remove_leftovers(&dir).expect("clean");
    assert!(removed.contains(&orphan), "{removed:?}");
    assert!(!orphan.exists());
    if std::path::Path::new("/proc/self").exists() {
        assert!(temps.iter().all(|f| !f.exists()), "{removed:?}");
    }
    let (record, _) = checkpoint::load(&dir).expect("the committed checkpoint is untouched");
    assert_eq!(record.step, 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn damaged_checkpoints_are_typed_errors() {
    let dir = scratch("damaged");
    let target = named::eight_modes();
    let mut t = trainer(config(EngineKind::Cpu, DSM, 3), &target);
    t.run(Some(&dir), |_, _| {}).expect("train");
    let record = checkpoint::read_record(&dir).expect("record");
    let file = dir.join(&record.file);
    let bytes = std::fs::read(&file).expect("read");
    let is_checkpoint_err = |r: tsm_nn::Result<_>| matches!(r, Err(Error::Checkpoint { .. }));

    std::fs::write(&file, &bytes[..bytes.len() / 2]).expect("truncate");
    assert!(
        is_checkpoint_err(checkpoint::load(&dir).map(drop)),
        "truncated"
    );

    let mut flipped = bytes.clone();
    let k = flipped.len() - 10;
    flipped[k] ^= 0xff;
    std::fs::write(&file, &flipped).expect("flip");
    assert!(
        is_checkpoint_err(checkpoint::load(&dir).map(drop)),
        "bit flip"
    );

    std::fs::remove_file(&file).expect("rm");
    assert!(
        is_checkpoint_err(checkpoint::load(&dir).map(drop)),
        "missing file"
    );

    std::fs::write(
        dir.join(checkpoint::RECORD_FILE),
        b"{\"format\": 1, \"step\":",
    )
    .expect("json");
    let err = checkpoint::load(&dir).map(drop).expect_err("bad json");
    assert!(err.to_string().contains("checkpoint.json"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Mean over `t ∈ {0.05, 0.10, …, 0.95}` and `x_t ~ p_t` of `‖s_θ(x_t, t) − ∇log p_t(x_t)‖²`,
/// and the same for `s = 0` (the score's second moment), on 200 points per time; EMA weights.
fn score_error(t: &Trainer<'_, GaussianMixture>, target: &GaussianMixture) -> (f64, f64) {
    let dev = device();
    let model = t.model(true, &dev).expect("EMA model");
    let d = Dim::dim(target);
    let mut rng = tsm_core::rng::stream(99, 0);
    let (mut err, mut base, mut count) = (0.0, 0.0, 0.0);
    for k in 1..=19 {
        let time = k as f64 * 0.05;
        let p_t = target.noised(&Cosine, time).expect("p_t");
        let mut xs = vec![0.0; 200 * d];
        for x in xs.chunks_exact_mut(d) {
            p_t.sample_into(&mut rng, x);
        }
        let xf: Vec<f32> = xs.iter().map(|&v| v as f32).collect();
        let xt = candle::Tensor::from_vec(xf, (200, d), &dev).expect("x");
        let s: Vec<f32> = model
            .forward(&xt, &[time; 200], None)
            .expect("forward")
            .flatten_all()
            .expect("f")
            .to_vec1()
            .expect("v");
        let mut exact = vec![0.0; d];
        for (i, x) in xs.chunks_exact(d).enumerate() {
            p_t.score(x, &mut exact);
            for j in 0..d {
                err += (s[i * d + j] as f64 - exact[j]).powi(2);
                base += exact[j].powi(2);
            }
            count += 1.0;
        }
    }
    (err / count, base / count)
}

#[test]
fn dsm_and_tsm_learn_a_gaussian_score() {
    // p_0 = N(0, 0.5² I) in 2-D: p_t = N(0, (α_t² 0.25 + σ_t²) I), ∇log p_t(x) = −x/(α_t² 0.25 + σ_t²),
    // linear in x with a t-dependent slope between −1 and −4.
    let target = GaussianMixture::gaussian(2, 0.5).expect("gaussian");
    for kind in [DSM, TSM] {
        let cfg = TrainConfig {
            loss: LossConfig::for_mixture(kind, Weighting::Uniform, &target)
                .expect("loss")
                .with_range(TimeRange::new(0.02, 0.98).expect("range")),
            adam: tsm_nn::optim::AdamConfig {
                lr: 3e-3,
                ema_decay: 0.99,
                ..Default::default()
            },
            batch: 256,
            ..config(engine_on(&device()), kind, 600)
        };
        let mut t = trainer(cfg, &target);
        let (before, base) = score_error(&t, &target);
        t.run(None, |_, _| {}).expect("train");
        let (after, _) = score_error(&t, &target);
        // Threshold: 10% of E‖∇log p_t‖² (≈ 3.9 here), i.e. the model explains 90% of the
        // score's second moment; the untrained network is at ~100%. The floor is set by the
        // gradient noise of the targets near the ends (DSM's variance ∝ 1/σ_t², TSM's ∝ 1/α_t²,
        // both ≈ 10³ at t = 0.02 and 0.98) at lr 3e-3; the EMA of the weights (δ = 0.99)
        // averages that noise out (trained errors: 1.2% DSM, 1.4% TSM). The evaluation's own Monte Carlo noise (3800 points, fixed
        // seed) is a few % of the error, far below the margin.
        eprintln!("{kind:?}: score error {after:.4} of base {base:.4} (untrained {before:.4})");
        assert!(
            before > 0.5 * base,
            "{kind:?}: untrained error {before} vs base {base}"
        );
        assert!(
            after < 0.10 * base,
            "{kind:?}: score error {after} (base {base}, before {before})"
        );
    }
}

#[test]
fn bad_configurations_are_errors() {
    let target = named::eight_modes();
    let new = |cfg| Trainer::new(cfg, &target, &Device::Cpu);
    let bad = TrainConfig {
        batch: 1,
        ..config(EngineKind::Cpu, DSM, 1)
    };
    assert!(matches!(
        new(bad),
        Err(Error::Invalid { field: "batch", .. })
    ));
    let wrong_dim = TrainConfig {
        model: small(3),
        ..config(EngineKind::Cpu, DSM, 1)
    };
    assert!(matches!(
        new(wrong_dim),
        Err(Error::TargetDimension {
            model: 3,
            target: 2
        })
    ));
    // An unresolved κ̄ (its σ_mode² left to a target that is not given) is refused, not run
    // with a made-up number.
    let mut unresolved = config(EngineKind::Cpu, KAPPA, 1);
    unresolved.loss.identity = "kappa_bar".parse().expect("kappa_bar");
    assert!(matches!(
        new(unresolved),
        Err(Error::Core(tsm_core::Error::Unresolved { .. }))
    ));
    // Invalid variances in the configuration.
    for bad in [0.0, -1.0, f64::NAN] {
        let mut cfg = config(EngineKind::Cpu, DSM, 1);
        cfg.loss.sigma_data_sq = bad;
        assert!(new(cfg).is_err(), "σ_data² = {bad}");
    }
    // The variances swapped (σ_mode² given as σ_data² and back) are refused where they enter.
    let (v, vm) = (target.variance_per_dim(), target.mode_variance());
    assert!(matches!(
        TargetVariances::new(vm, Some(v)),
        Err(Error::Core(tsm_core::Error::Unordered { .. }))
    ));
    assert!(new(config(EngineKind::Cpu, DSM, 1)).is_ok());
    let zero_threads = Trainer::with_options(
        config(EngineKind::Cpu, DSM, 1),
        &target,
        &Device::Cpu,
        threads(0),
    );
    assert!(matches!(
        zero_threads,
        Err(Error::Invalid {
            field: "threads",
            ..
        })
    ));
}

#[test]
fn an_old_checkpoint_format_is_named() {
    let dir = scratch("old-format");
    let target = named::eight_modes();
    let mut t = trainer(config(EngineKind::Cpu, DSM, 2), &target);
    t.run(Some(&dir), |_, _| {}).expect("train");
    // A format-1 record (the loss kind as `{"kind": "dsm"}`, no variances).
    let path = dir.join(checkpoint::RECORD_FILE);
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    record["format"] = 1.into();
    record["config"]["loss"] = serde_json::json!({"kind": {"kind": "dsm"}, "weighting": "uniform",
        "t_min": 0.001, "t_max": 0.999});
    std::fs::write(&path, serde_json::to_vec(&record).expect("json")).expect("write");
    let err = checkpoint::load(&dir).map(drop).expect_err("old format");
    let msg = err.to_string();
    assert!(matches!(err, Error::Checkpoint { .. }));
    assert!(
        msg.contains("format 1") && msg.contains(&format!("format {}", checkpoint::FORMAT_VERSION)),
        "{msg}"
    );
    assert_eq!(msg.lines().count(), 1, "{msg}");
    let _ = std::fs::remove_dir_all(&dir);
}
