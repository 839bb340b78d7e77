//! `train` → `train --resume` → `sample` end to end through the binaries, and clap's errors
//! naming the flag and its allowed values.

use std::path::PathBuf;
use std::process::Command;

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tsm-train-cli-{}", std::process::id()));
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
    let out = scratch();
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
    assert_eq!(record["config"]["loss"]["kind"]["kind"], "kappa_bar");
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
    let out = scratch().join("bad");
    let r = train(&["--loss", "hsm"], &out);
    assert_eq!(r.status.code(), Some(2));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("--loss") && err.contains("dsm, tsm, kappa, kappa_bar"),
        "{err}"
    );
    let r = train(&["--device", "cuda", "--steps", "1"], &out);
    if !cfg!(feature = "cuda") {
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
}
