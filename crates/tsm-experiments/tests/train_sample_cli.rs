//! `train` → `train --resume` → `sample` end to end through the binaries, clap's errors
//! naming the flag and its allowed values, and the reliability rules of issue #13: numbers
//! checked before any work, divergence reported once, resume and output folders, sample
//! outputs that do not clobber each other, readable messages, plain logs off a terminal.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{files, stderr};

/// A fresh folder per test (the tests run in parallel in one process).
fn scratch(test: &str) -> PathBuf {
    common::scratch("tsm-train-cli", test)
}

fn train(args: &[&str], out: &PathBuf) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_train"))
        .args(args)
        .arg("--out")
        .arg(out)
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run train")
}

/// Runs `sample` with `args`.
fn sample(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sample"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run sample")
}

/// A small network, so that the debug binaries train fast (`common::SMALL` without
/// `--threads 1`: these runs keep the default thread count).
const SMALL: [&str; 6] = ["--hidden", "16", "--embedding-dim", "8", "--batch", "32"];

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn record(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("checkpoint.json")).expect("json"))
        .expect("parse")
}

#[test]
fn train_resume_sample() {
    let out = scratch("resume");
    let first = train(
        &[
            &SMALL[..],
            &[
                "--loss",
                "kappa_bar",
                "--steps",
                "20",
                "--checkpoint-every",
                "10",
            ],
        ]
        .concat(),
        &out,
    );
    assert!(first.status.success(), "{}", stderr(&first));
    let resumed = train(&[&SMALL[..], &["--steps", "30", "--resume"]].concat(), &out);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let record = record(&out);
    assert_eq!(record["step"], 30);
    // The record holds the resolved loss: κ̄ with the eight-mode mixture's σ_mode² = 0.5².
    assert_eq!(record["config"]["loss"]["identity"], "kappa_bar=0.25");
    assert_eq!(record["config"]["model"]["schedule"], "cosine");
    let loss_csv = std::fs::read_to_string(out.join("loss.csv")).expect("loss.csv");
    assert_eq!(loss_csv.lines().next(), Some("step,loss"));
    assert_eq!(loss_csv.lines().count(), 1 + 3, "steps 10, 20, 30");

    let samples = out.join("samples.csv");
    let s = Command::new(env!("CARGO_BIN_EXE_sample"))
        .args([
            "--sampler",
            "pc",
            "--steps",
            "10",
            "--n",
            "200",
            "--checkpoint",
        ])
        .arg(&out)
        .arg("--out")
        .arg(&samples)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run sample");
    assert!(s.status.success(), "{}", stderr(&s));
    let text = std::fs::read_to_string(&samples).expect("samples");
    assert_eq!(text.lines().next(), Some("x1,x2"));
    assert_eq!(text.lines().count(), 201);
    for ext in ["svg", "png"] {
        assert!(out.join(format!("samples.{ext}")).exists(), "{ext}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn bad_flag_values_name_the_flag_and_the_choices() {
    let out = scratch("bad");
    let r = train(&["--loss", "hsm"], &out);
    assert_eq!(r.status.code(), Some(2));
    let err = stderr(&r);
    assert!(
        err.contains("--loss")
            && err.contains("'hsm'")
            && err.contains(
                "dsi, dsm, tsi, tsm, mixture=W, kappa, kappa=V, kappa_bar, kappa_bar=V, phillips"
            ),
        "{err}"
    );
    // A number out of range names the flag and the parameter.
    let r = train(&["--loss", "mixture=1.5"], &out);
    assert_eq!(r.status.code(), Some(2));
    let err = stderr(&r);
    assert!(err.contains("--loss") && err.contains("weight"), "{err}");
    for (flag, value, names) in [
        (
            "--weighting",
            "karras",
            "original, dsm_optimal, tsm_optimal, uniform",
        ),
        (
            "--parameterisation",
            "x0",
            "score, epsilon, target_scaled, preconditioned",
        ),
        ("--schedule", "quadratic", "cosine, linear_vp"),
        ("--device", "tpu", "cpu, cuda"),
        ("--threads", "0", ""),
    ] {
        let r = train(&[flag, value], &out);
        assert_eq!(r.status.code(), Some(2), "{flag} {value}");
        let err = stderr(&r);
        assert!(err.contains(flag) && err.contains(names), "{err}");
    }
    let r = train(&["--device", "cuda", "--steps", "1"], &out);
    // The binaries link the same tsm-nn as this test (cargo unifies features), so this says
    // whether they were built with CUDA, whichever crate's feature turned it on.
    if !(tsm_nn::DeviceKind::Cuda { ordinal: 0 }).is_compiled() {
        assert!(!r.status.success());
        let err = stderr(&r);
        assert!(err.contains("--features"), "{err}");
    }
    let r = Command::new(env!("CARGO_BIN_EXE_sample"))
        .args(["--checkpoint", "/nonexistent/tsm", "--n", "5"])
        .output()
        .expect("run sample");
    assert!(!r.status.success());
    assert!(stderr(&r).contains("checkpoint"));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn the_thread_count_does_not_change_the_bits_and_choices_reach_the_record() {
    let run = |threads: &str| {
        let out = scratch(&format!("threads-{threads}"));
        let r = train(
            &[
                &SMALL[..],
                &[
                    "--threads",
                    threads,
                    "--steps",
                    "5",
                    "--loss",
                    "kappa_bar=0.04",
                    "--parameterisation",
                    "preconditioned",
                    "--schedule",
                    "linear_vp(beta_min=0.1,beta_max=10)",
                ],
            ]
            .concat(),
            &out,
        );
        assert!(r.status.success(), "{}", stderr(&r));
        let record = record(&out);
        let _ = std::fs::remove_dir_all(&out);
        record
    };
    let (one, three) = (run("1"), run("3"));
    assert_eq!(
        one["fnv1a64"], three["fnv1a64"],
        "same tensors, bit for bit"
    );
    assert_eq!(one["loss"], three["loss"]);
    let cfg = &one["config"];
    assert_eq!(cfg["loss"]["identity"], "kappa_bar=0.04");
    // σ_data² of the eight-mode mixture (0.5² + 4²/2), resolved from the target.
    let v = cfg["loss"]["sigma_data_sq"].as_f64().expect("σ_data²");
    assert!((v - 8.25).abs() < 1e-12, "{v}");
    assert_eq!(
        cfg["model"]["parameterisation"],
        format!("preconditioned={v}")
    );
    assert_eq!(
        cfg["model"]["schedule"],
        "linear_vp(beta_min=0.1,beta_max=10)"
    );
}

#[test]
fn bad_numbers_are_refused_before_any_work_naming_the_flag() {
    let out = scratch("numbers");
    // Item 1: --ema-decay nan used to be stored as `null`, unloadable forever after.
    for (flag, bad) in [
        ("--ema-decay", "nan"),
        ("--ema-decay", "2"),
        ("--ema-decay", "-1"),
        ("--ema-decay", "1"),
        ("--lr", "nan"),
        ("--lr", "0"),
        ("--lr", "-1e-4"),
        ("--lr", "inf"),
        ("--t-min", "-0.1"),
        ("--t-max", "1.5"),
        ("--batch", "1"),
        ("--batch", "100000000000"),
        ("--hidden", "1000000"),
        ("--depth", "100000"),
        ("--embedding-dim", "1000000000"),
        ("--steps", "0"),
        ("--steps", "18446744073709551615"),
        ("--threads", "18446744073709551615"),
    ] {
        let r = train(&[&format!("{flag}={bad}")], &out);
        assert_eq!(r.status.code(), Some(2), "{flag} {bad}: {}", stderr(&r));
        let err = stderr(&r);
        assert!(
            err.contains(flag) && err.contains(bad),
            "{flag} {bad}: {err}"
        );
        assert!(!out.exists(), "{flag} {bad}: nothing may be written");
    }
    // Values the library refuses are named by their flag too (item 6), in short numbers.
    for (args, flag) in [
        (vec!["--embedding-dim", "7"], "--embedding-dim"),
        (vec!["--t-min", "0.5", "--t-max", "0.4"], "--t-min"),
        (vec!["--t-min=1e-300"], "--t-min"),
        (
            vec!["--hidden", "16384", "--batch", "1048576"],
            "--batch/--hidden",
        ),
    ] {
        let r = train(&args, &out);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {}", stderr(&r));
        let err = stderr(&r);
        assert!(err.contains(flag), "{args:?}: {err}");
        assert!(!err.contains("configuration mismatch"), "{err}");
        assert!(
            err.lines().all(|l| l.len() < 300),
            "{args:?}: a long line: {err}"
        );
        assert!(!out.exists());
    }
    let r = train(&["--t-min=1e-300"], &out);
    assert!(stderr(&r).contains("'1e-300'"), "{}", stderr(&r));
    // Integer forms of absurd sizes for sample and fig5 (item 5), refused up front.
    for args in [
        vec!["--n", "18446744073709551615"],
        vec!["--n", "100000000000"],
        vec!["--steps", "18446744073709551615"],
        vec!["--steps", "1000000000000"],
        vec!["--n", "10000000", "--steps", "100000"],
        vec!["--n", "0"],
        vec!["--steps", "1"],
    ] {
        let r = sample(&[&args[..], &["--checkpoint", "/nonexistent"]].concat());
        assert_eq!(r.status.code(), Some(2), "{args:?}: {}", stderr(&r));
    }
    let fig5 = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_fig5_training"))
            .args(args)
            .arg("--out")
            .arg(&out)
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("fig5")
    };
    for args in [
        vec!["--sampler-steps", "18446744073709551615"],
        vec!["--n-mmd", "100000000000"],
        vec!["--batch", "100000000000"],
        vec!["--seed", "18446744073709551615", "--seeds", "2"],
        vec!["--steps", "1000000000", "--eval-every", "1"],
        vec!["--lr", "nan"],
    ] {
        let r = fig5(&args);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {}", stderr(&r));
        assert!(!out.exists());
    }
    let r = fig5(&["--seed", "18446744073709551615", "--seeds", "2"]);
    assert!(stderr(&r).contains("--seeds"), "{}", stderr(&r));
}

#[test]
fn a_diverging_run_stops_once_naming_the_step_and_what_is_kept() {
    let out = scratch("diverge");
    // Item 2: `--loss dsm --lr 10` used to exit 0 with a loss of 8·10¹¹.
    let r = train(
        &[
            &SMALL[..],
            &["--lr", "10", "--steps", "500", "--checkpoint-every", "1"],
        ]
        .concat(),
        &out,
    );
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    let err = stderr(&r);
    assert_eq!(
        err.matches("diverged at step").count(),
        1,
        "printed once: {err}"
    );
    let step = record(&out)["step"].as_u64().expect("a checkpoint is left");
    assert!(
        err.contains(&format!("checkpoint (step {step}) is kept")),
        "{err}"
    );
    // The last good checkpoint samples (finite), and a resume diverges again, as it should.
    let s = sample(&[
        "--checkpoint",
        out.to_str().expect("utf-8"),
        "--n",
        "20",
        "--steps",
        "10",
        "--out",
        out.join("s").to_str().expect("utf-8"),
    ]);
    assert!(s.status.success(), "{}", stderr(&s));
    // Without a checkpoint the message does not claim one.
    let r = train(
        &[
            &SMALL[..],
            &[
                "--lr",
                "10",
                "--steps",
                "500",
                "--checkpoint-every",
                "0",
                "--force",
            ],
        ]
        .concat(),
        &out,
    );
    assert_eq!(r.status.code(), Some(1));
    let err = stderr(&r);
    assert!(err.contains("no checkpoint was written"), "{err}");
    assert!(!err.contains("is kept") && !err.contains("intact"), "{err}");
    assert!(!out.join("checkpoint.json").exists());
    // fig5 --quick --lr 10 used to write mmd2=NaN and exit 0.
    let f = Command::new(env!("CARGO_BIN_EXE_fig5_training"))
        .args(["--quick", "--lr", "10", "--out"])
        .arg(out.join("fig5"))
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("fig5");
    assert_eq!(f.status.code(), Some(1), "{}", stderr(&f));
    assert!(stderr(&f).contains("diverged at step"), "{}", stderr(&f));
    assert!(!out.join("fig5").join("fig5.csv").exists());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn resume_and_output_folders_follow_the_rules() {
    let out = scratch("folders");
    let first = train(
        &[&SMALL[..], &["--steps", "30", "--checkpoint-every", "10"]].concat(),
        &out,
    );
    assert!(first.status.success(), "{}", stderr(&first));
    let hash = record(&out)["fnv1a64"].clone();
    // A fresh run over it is refused (exit 1), the run untouched; --force replaces it.
    let again = train(&[&SMALL[..], &["--steps", "5"]].concat(), &out);
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    assert_eq!(record(&out)["fnv1a64"], hash);
    // --resume without --steps keeps the checkpoint's total (it used to go on to 20,000).
    let r = train(&["--resume"], &out);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(stdout(&r).contains("nothing to do"), "{}", stdout(&r));
    assert_eq!(record(&out)["step"], 30);
    // Flags that conflict with the checkpoint are refused, naming each; equal ones are fine.
    let r = train(
        &["--resume", "--lr", "1e30", "--loss", "tsm", "--steps", "40"],
        &out,
    );
    assert_eq!(r.status.code(), Some(2), "{}", stderr(&r));
    let err = stderr(&r);
    assert!(
        err.contains("--lr 1e30") && err.contains("--loss tsm"),
        "{err}"
    );
    assert!(!err.contains("--steps"), "{err}");
    let r = train(&["--resume", "--batch", "0"], &out);
    assert_eq!(r.status.code(), Some(2));
    let r = train(&["--resume", "--steps", "20"], &out);
    assert_eq!(r.status.code(), Some(2), "below the checkpoint's step");
    assert_eq!(record(&out)["step"], 30);
    // A crash after step 30's checkpoint that had logged steps 40 and 50, and left a temporary
    // file and an unnamed tensor file: the resume cuts loss.csv back and cleans up.
    let csv = out.join("loss.csv");
    let mut text = std::fs::read_to_string(&csv).expect("loss.csv");
    text.push_str("40,1.0\n50,1.0\n");
    std::fs::write(&csv, text).expect("write");
    std::fs::write(out.join(".loss.csv.4294967295.tmp"), "x").expect("temp");
    std::fs::write(out.join("step_00000040.safetensors"), "x").expect("orphan");
    let r = train(
        &[&SMALL[..], &["--resume", "--steps", "50", "--loss", "dsm"]].concat(),
        &out,
    );
    assert!(r.status.success(), "{}", stderr(&r));
    let steps: Vec<u64> = std::fs::read_to_string(&csv)
        .expect("loss.csv")
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .next()
                .and_then(|s| s.parse().ok())
                .expect("step")
        })
        .collect();
    assert_eq!(steps, [10, 20, 30, 40, 50]);
    assert_eq!(
        files(&out),
        ["checkpoint.json", "loss.csv", "step_00000050.safetensors"]
    );
    // --force replaces the run.
    let r = train(&[&SMALL[..], &["--steps", "5", "--force"]].concat(), &out);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(record(&out)["step"], 5);
    assert_eq!(std::fs::read_to_string(&csv).expect("csv"), "step,loss\n");
    // --resume on a missing folder is an error, and creates nothing.
    let missing = out.join("missing");
    let r = train(&["--resume"], &missing);
    assert_eq!(r.status.code(), Some(1));
    assert!(!missing.exists());
    // --dry-run checks and writes nothing.
    let dry = out.join("dry");
    let r = train(&[&SMALL[..], &["--dry-run"]].concat(), &dry);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(stdout(&r).contains("dry run"), "{}", stdout(&r));
    assert!(!dry.exists());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn sample_outputs_do_not_clobber_and_carry_the_check() {
    let out = scratch("sample-outputs");
    let run = out.join("run");
    let r = train(&[&SMALL[..], &["--steps", "5"]].concat(), &run);
    assert!(r.status.success(), "{}", stderr(&r));
    let ckpt = run.to_str().expect("utf-8");
    // A picture's name is refused (it used to receive the CSV, then the plot over it).
    for bad in ["s.png", "s.svg", "s.json", "s.PNG"] {
        let path = out.join(bad);
        let r = sample(&[
            "--checkpoint",
            ckpt,
            "--n",
            "5",
            "--out",
            path.to_str().expect("u"),
        ]);
        assert_eq!(r.status.code(), Some(2), "{bad}: {}", stderr(&r));
        assert!(stderr(&r).contains("--out"), "{}", stderr(&r));
        assert!(!path.exists());
    }
    // An existing folder gets samples.* inside, and nothing beside it; a stale temporary file
    // of a killed run in it is removed.
    let folder = out.join("folder");
    std::fs::create_dir_all(&folder).expect("mkdir");
    std::fs::write(folder.join(".samples.csv.4294967295.tmp"), "x").expect("temp");
    let r = sample(&[
        "--checkpoint",
        ckpt,
        "--n",
        "150",
        "--steps",
        "10",
        "--out",
        folder.to_str().expect("utf-8"),
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(
        files(&folder),
        ["samples.csv", "samples.json", "samples.png", "samples.svg"]
    );
    assert_eq!(files(&out), ["folder", "run"]);
    let text = stdout(&r);
    assert!(
        text.contains("sample check: FAIL"),
        "an untrained model: {text}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("samples.json")).expect("json"))
            .expect("parse");
    let check = &json["parameters"]["check"];
    assert_eq!(check["verdict"], "FAIL", "{json}");
    assert!(check["mmd"]["p_value"].as_f64().is_some(), "{json}");
    assert!(check["modes"]["p_value"].as_f64().is_some(), "{json}");
    // A stem gets the extensions added; --n 1 writes one sample and skips the check.
    let stem = out.join("stem").join("one");
    let r = sample(&[
        "--checkpoint",
        ckpt,
        "--n",
        "1",
        "--steps",
        "10",
        "--out",
        stem.to_str().expect("utf-8"),
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(stdout(&r).contains("skipped"), "{}", stdout(&r));
    assert_eq!(
        files(&out.join("stem")),
        ["one.csv", "one.json", "one.png", "one.svg"]
    );
    assert_eq!(
        std::fs::read_to_string(out.join("stem/one.csv"))
            .expect("csv")
            .lines()
            .count(),
        2
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn non_finite_samples_are_refused_before_anything_is_written() {
    let out = scratch("non-finite");
    let run = out.join("run");
    let r = train(&[&SMALL[..], &["--steps", "2"]].concat(), &run);
    assert!(r.status.success(), "{}", stderr(&r));
    // A finite checkpoint whose weights are so large that the network's output overflows.
    let (rec, state) = tsm_nn::checkpoint::load(&run).expect("load");
    let huge: Vec<(String, tsm_nn::candle::Tensor)> = state
        .ema()
        .iter()
        .map(|(n, t)| (n.clone(), (t * 1e30).expect("scale")))
        .collect();
    let state = tsm_nn::engine::NamedState::fresh(huge).expect("state");
    tsm_nn::checkpoint::save(&run, &rec.config, rec.step, rec.loss, &state).expect("save");
    let target = out.join("s");
    let r = sample(&[
        "--checkpoint",
        run.to_str().expect("utf-8"),
        "--n",
        "200",
        "--steps",
        "10",
        "--out",
        target.to_str().expect("utf-8"),
    ]);
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    assert!(stderr(&r).contains("finite"), "{}", stderr(&r));
    assert_eq!(files(&out), ["run"], "nothing written");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn logs_have_no_colour_codes_off_a_terminal() {
    let out = scratch("ansi");
    let r = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(SMALL)
        .args(["--steps", "2", "--out"])
        .arg(&out)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .output()
        .expect("train");
    assert!(r.status.success(), "{}", stderr(&r));
    let err = stderr(&r);
    assert!(err.contains("training"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "ANSI escape in a piped log: {err:?}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
