//! Fault injection (issue #13): `train` checkpointing every step is killed with SIGKILL
//! (`kill -9`) after random delays, a handful of times, resumed each time; every checkpoint
//! left behind must load, hold exactly the tensors of an uninterrupted run at its step (the
//! record's FNV-1a hash), and resume bit-identically; the finished run must equal the
//! uninterrupted one (tensors and `loss.csv`, byte for byte), with nothing left over.
//!
//! The delays come from a fixed-seed generator, so the test is repeatable up to the machine's
//! timing (which only moves where the kills land, not what must hold).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use tsm_nn::candle::Device;
use tsm_nn::{checkpoint, Trainer, TrainerOptions};

const STEPS: u64 = 200;

fn scratch(name: &str) -> PathBuf {
    common::scratch("tsm-fault", name)
}

fn train_command(out: &Path, resume: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_train"));
    c.args([
        "--hidden",
        "16",
        "--embedding-dim",
        "8",
        "--batch",
        "32",
        "--loss",
        "kappa_bar",
        "--seed",
        "5",
        "--steps",
        &STEPS.to_string(),
        "--checkpoint-every",
        "1",
        "--out",
    ])
    .arg(out)
    .env("RUST_LOG", "warn")
    .env("RUST_BACKTRACE", "0")
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if resume {
        c.arg("--resume");
    }
    c
}

/// The record's hash at every step of the run configured in `dir`'s checkpoint, from an
/// uninterrupted in-process run of the same configuration (saved after each step).
fn reference_hashes(dir: &Path) -> HashMap<u64, String> {
    let record = checkpoint::read_record(dir).expect("record");
    let target = tsm_targets::named::by_name(&record.config.target).expect("target");
    let mut cfg = record.config.clone();
    cfg.checkpoint_every = 0;
    let mut t = Trainer::with_options(cfg, &target, &Device::Cpu, TrainerOptions::with_threads(1))
        .expect("trainer");
    let tmp = scratch("reference-steps");
    let mut out = HashMap::new();
    for step in 1..=STEPS {
        t.train_step().expect("step");
        t.save(&tmp).expect("save");
        out.insert(step, checkpoint::read_record(&tmp).expect("record").fnv1a64);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    out
}

/// A small deterministic generator (SplitMix64) for the delays.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn killed_training_leaves_checkpoints_that_load_and_resume_bit_identically() {
    // The uninterrupted run, timed to place the kills.
    let straight = scratch("straight");
    let start = Instant::now();
    let status = train_command(&straight, false).status().expect("train");
    assert!(status.success());
    let full = start.elapsed();
    let reference = reference_hashes(&straight);
    let final_record = checkpoint::read_record(&straight).expect("record");
    assert_eq!(final_record.step, STEPS);
    assert_eq!(
        final_record.fnv1a64, reference[&STEPS],
        "the CLI and the library agree"
    );

    let dir = scratch("killed");
    let mut rng = 20_26u64;
    let mut kills = 0;
    let mut seen_steps = Vec::new();
    for round in 0..6 {
        let resume = dir.join(checkpoint::RECORD_FILE).exists();
        let mut child = train_command(&dir, resume).spawn().expect("spawn");
        // Between 5% and 35% of an uninterrupted run's wall time.
        let fraction = 0.05 + 0.30 * (next(&mut rng) % 1000) as f64 / 1000.0;
        std::thread::sleep(full.mul_f64(fraction));
        let finished = child.try_wait().expect("try_wait").is_some();
        if !finished {
            child.kill().expect("SIGKILL");
            kills += 1;
        }
        let status = child.wait().expect("wait");
        assert!(
            finished || status.code().is_none(),
            "round {round}: killed by a signal"
        );
        if !dir.join(checkpoint::RECORD_FILE).exists() {
            continue; // killed before its first checkpoint: the next round starts afresh
        }
        // The checkpoint left loads and holds the uninterrupted run's tensors at its step.
        let (record, _) = checkpoint::load(&dir)
            .unwrap_or_else(|e| panic!("round {round}: the checkpoint left must load: {e}"));
        assert_eq!(
            record.fnv1a64, reference[&record.step],
            "round {round}: step {} differs from the uninterrupted run",
            record.step
        );
        seen_steps.push(record.step);
        // It resumes bit-identically: one more step gives the uninterrupted run's next state.
        if record.step < STEPS {
            let target = tsm_targets::named::eight_modes();
            let mut t = Trainer::resume_with_options(
                &dir,
                &target,
                &Device::Cpu,
                TrainerOptions::with_threads(1),
            )
            .expect("resume");
            t.train_step().expect("step");
            let next_dir = scratch(&format!("next-{round}"));
            t.save(&next_dir).expect("save");
            let next_record = checkpoint::read_record(&next_dir).expect("record");
            assert_eq!(next_record.fnv1a64, reference[&(record.step + 1)]);
            let _ = std::fs::remove_dir_all(&next_dir);
        }
    }
    eprintln!(
        "{kills} kills; checkpoints left at steps {seen_steps:?} (uninterrupted run {:.2} s)",
        full.as_secs_f64()
    );
    assert!(kills >= 3, "the kills must land mid-run ({kills} did)");

    // Finish: the run equals the uninterrupted one, and nothing is left over.
    let resume = dir.join(checkpoint::RECORD_FILE).exists();
    let status = train_command(&dir, resume).status().expect("finish");
    assert!(status.success());
    let record = checkpoint::read_record(&dir).expect("record");
    assert_eq!(
        (record.step, &record.fnv1a64),
        (STEPS, &final_record.fnv1a64)
    );
    let read = |d: &Path| std::fs::read_to_string(d.join("loss.csv")).expect("loss.csv");
    assert_eq!(read(&dir), read(&straight), "loss.csv, byte for byte");
    assert_eq!(
        common::files(&dir),
        [
            "checkpoint.json".to_owned(),
            "loss.csv".to_owned(),
            format!("step_{STEPS:08}.safetensors")
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&straight);
}
