//! `train` → `train --resume` → `sample` end to end through the binaries, and clap's errors
//! naming the flag and its allowed values.

use std::path::PathBuf;
use std::process::Command;

/// A fresh folder per test (the tests run in parallel in one process).
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tsm-train-cli-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn train(args: &[&str], out: &PathBuf) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_train"))
        .args(args)
        .arg("--out")
        .arg(out)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run train")
}

#[test]
fn train_resume_sample() {
    let out = scratch("resume");
    let small = ["--hidden", "16", "--embedding-dim", "8", "--batch", "32"];
    let first = train(
        &[
            &small[..],
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
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let resumed = train(&[&small[..], &["--steps", "30", "--resume"]].concat(), &out);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("checkpoint.json")).expect("json"))
            .expect("parse");
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
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
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
    let err = String::from_utf8_lossy(&r.stderr);
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
    let err = String::from_utf8_lossy(&r.stderr);
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
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(err.contains(flag) && err.contains(names), "{err}");
    }
    let r = train(&["--device", "cuda", "--steps", "1"], &out);
    // The binaries link the same tsm-nn as this test (cargo unifies features), so this says
    // whether they were built with CUDA, whichever crate's feature turned it on.
    if !(tsm_nn::DeviceKind::Cuda { ordinal: 0 }).is_compiled() {
        assert!(!r.status.success());
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(err.contains("--features"), "{err}");
    }
    let r = Command::new(env!("CARGO_BIN_EXE_sample"))
        .args(["--checkpoint", "/nonexistent/tsm", "--n", "5"])
        .output()
        .expect("run sample");
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("checkpoint"));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn the_thread_count_does_not_change_the_bits_and_choices_reach_the_record() {
    let small = ["--hidden", "16", "--embedding-dim", "8", "--batch", "32"];
    let run = |threads: &str| {
        let out = scratch(&format!("threads-{threads}"));
        let r = train(
            &[
                &small[..],
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
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("checkpoint.json")).expect("json"))
                .expect("parse");
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
