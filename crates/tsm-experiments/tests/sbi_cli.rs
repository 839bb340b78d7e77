//! `sbi simulate`, `sbi train` (fresh, `--resume`, `--force`) and `sbi sample` end to end
//! through the binary, and the bad-input cases of issue #15: a one-line error naming the
//! problem, nothing written.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{files, sbi, stderr, SMALL};

fn scratch(test: &str) -> PathBuf {
    common::scratch_created("tsm-sbi-cli", test)
}

/// Trains `task` for `steps` into `dir/out`.
fn train(dir: &Path, task: &str, steps: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "train", "--task", task, "--loss", "mix", "--budget", "300", "--steps", steps, "--out",
        "run",
    ];
    args.extend(SMALL);
    args.extend(extra);
    sbi(dir, &args)
}

#[test]
fn simulate_writes_a_reproducible_csv_with_a_header() {
    let dir = scratch("simulate");
    let a = sbi(
        &dir,
        &[
            "simulate",
            "--task",
            "galton_board",
            "--n",
            "20",
            "--seed",
            "3",
            "--out",
            "a.csv",
        ],
    );
    assert!(a.status.success(), "{}", stderr(&a));
    let b = sbi(
        &dir,
        &[
            "simulate",
            "--task",
            "galton_board",
            "--n",
            "20",
            "--seed",
            "3",
            "--out",
            "b.csv",
        ],
    );
    assert!(b.status.success());
    let text = std::fs::read_to_string(dir.join("a.csv")).expect("csv");
    assert_eq!(
        text,
        std::fs::read_to_string(dir.join("b.csv")).expect("csv")
    );
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("theta1,theta2,x1,x2,x3,x4,x5,x6,x7,x8,x9,x10,score1,score2")
    );
    assert_eq!(lines.count(), 20);
    // Unknown task: clap's error listing the valid names; nothing written.
    let bad = sbi(
        &dir,
        &[
            "simulate",
            "--task",
            "coin_flip",
            "--n",
            "5",
            "--out",
            "c.csv",
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("linear_gaussian"), "{}", stderr(&bad));
    assert!(!dir.join("c.csv").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn train_resume_and_sample_end_to_end() {
    let dir = scratch("end-to-end");
    let first = train(&dir, "linear_gaussian", "20", &["--checkpoint-every", "10"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let run = dir.join("run");
    assert!(files(&run).contains(&"checkpoint.json".to_owned()));
    let json = std::fs::read_to_string(run.join("checkpoint.json")).expect("record");
    assert!(
        json.contains("\"task\": \"linear_gaussian\"") && json.contains("\"condition_dim\": 4")
    );
    // A fresh run into the same folder is refused without --force …
    let again = train(&dir, "linear_gaussian", "20", &[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("--resume"), "{}", stderr(&again));
    // … resume extends it; a flag that differs from the checkpoint is named; another task
    // is refused.
    let resumed = sbi(
        &dir,
        &[
            "train",
            "--resume",
            "--steps",
            "30",
            "--out",
            "run",
            "--threads",
            "2",
        ],
    );
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let loss_rows = std::fs::read_to_string(run.join("loss.csv"))
        .expect("loss")
        .lines()
        .count();
    assert_eq!(loss_rows, 4, "header + steps 10, 20, 30");
    let conflict = sbi(
        &dir,
        &["train", "--resume", "--budget", "500", "--out", "run"],
    );
    assert_eq!(conflict.status.code(), Some(2));
    assert!(
        stderr(&conflict).contains("--budget 500 (checkpoint: 300)"),
        "{}",
        stderr(&conflict)
    );
    let other = sbi(
        &dir,
        &["train", "--resume", "--task", "sir", "--out", "run"],
    );
    assert_eq!(other.status.code(), Some(1));
    assert!(
        stderr(&other).contains("another task"),
        "{}",
        stderr(&other)
    );

    // Sampling at two observations: one CSV + SVG + PNG each.
    std::fs::write(dir.join("obs.csv"), "x1,x2,x3,x4\n1,-1.5,0.5,2\n0,0,0,0\n").expect("obs");
    let s = sbi(
        &dir,
        &[
            "sample",
            "--checkpoint",
            "run",
            "--observation",
            "obs.csv",
            "--n",
            "50",
            "--steps",
            "20",
            "--out",
            "post.csv",
            "--reference",
            "exact",
        ],
    );
    assert!(s.status.success(), "{}", stderr(&s));
    for f in [
        "post_1.csv",
        "post_1.svg",
        "post_1.png",
        "post_2.csv",
        "post_2.svg",
        "post_2.png",
    ] {
        assert!(dir.join(f).exists(), "{f}");
    }
    let post = std::fs::read_to_string(dir.join("post_1.csv")).expect("post");
    assert!(post.starts_with("theta1,theta2,theta3,theta4\n"));
    assert_eq!(post.lines().count(), 51);
    // A file of reference draws, one observation.
    std::fs::write(dir.join("one.csv"), "x1,x2,x3,x4\n1,-1.5,0.5,2\n").expect("obs");
    std::fs::write(
        dir.join("ref.csv"),
        "theta1,theta2,theta3,theta4\n0.7,-1.1,0.4,1.5\n0.8,-1.2,0.3,1.6\n",
    )
    .expect("ref");
    let s = sbi(
        &dir,
        &[
            "sample",
            "--checkpoint",
            "run",
            "--observation",
            "one.csv",
            "--n",
            "20",
            "--steps",
            "10",
            "--out",
            "single.csv",
            "--reference",
            "ref.csv",
        ],
    );
    assert!(s.status.success(), "{}", stderr(&s));
    assert!(dir.join("single.csv").exists() && dir.join("single.png").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_is_a_one_line_error_and_writes_nothing() {
    let dir = scratch("bad-input");
    let t = train(&dir, "galton_board", "3", &[]);
    assert!(t.status.success(), "{}", stderr(&t));
    let before = files(&dir);
    let cases: &[(&[&str], &str, i32)] = &[
        // An observation of the wrong dimension (galton_board has 10 balls).
        (
            &[
                "sample",
                "--checkpoint",
                "run",
                "--observation",
                "short.csv",
                "--n",
                "5",
                "--out",
                "o.csv",
            ],
            "expected 10",
            1,
        ),
        // Non-integer counts for a count task.
        (
            &[
                "sample",
                "--checkpoint",
                "run",
                "--observation",
                "frac.csv",
                "--n",
                "5",
                "--out",
                "o.csv",
            ],
            "not an observation of galton_board",
            1,
        ),
        // A checkpoint of another task.
        (
            &[
                "sample",
                "--checkpoint",
                "run",
                "--task",
                "sir",
                "--observation",
                "ok.csv",
                "--n",
                "5",
                "--out",
                "o.csv",
            ],
            "trained on the task galton_board, not sir",
            1,
        ),
        // An unknown task or loss, a budget of zero.
        (
            &["train", "--task", "coin_flip", "--out", "new"],
            "valid names",
            2,
        ),
        (
            &["train", "--loss", "kappa", "--out", "new"],
            "mix_learned",
            2,
        ),
        (&["train", "--budget", "0", "--out", "new"], "--budget", 2),
        // A budget whose simulations would not fit in memory.
        (
            &[
                "train",
                "--task",
                "sir",
                "--budget",
                "100000000",
                "--out",
                "new",
            ],
            "GiB",
            2,
        ),
    ];
    std::fs::write(dir.join("short.csv"), "x1,x2,x3\n1,2,3\n").expect("short");
    std::fs::write(
        dir.join("frac.csv"),
        "x1,x2,x3,x4,x5,x6,x7,x8,x9,x10\n1,2,3,4,5,6,7,8,9,10.5\n",
    )
    .expect("frac");
    std::fs::write(
        dir.join("ok.csv"),
        "x1,x2,x3,x4,x5,x6,x7,x8,x9,x10\n1,2,3,4,5,6,7,8,9,10\n",
    )
    .expect("ok");
    let before_inputs = files(&dir);
    for (args, needle, code) in cases {
        let o = sbi(&dir, args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(*code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        if *code == 1 {
            assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
        }
        assert_eq!(files(&dir), before_inputs, "{args:?} wrote something");
    }
    assert!(before.iter().all(|f| before_inputs.contains(f)));
    // A checkpoint of an unconditional run is named as such.
    let plain = Command::new(env!("CARGO_BIN_EXE_train"))
        .args([
            "--hidden",
            "8",
            "--embedding-dim",
            "4",
            "--batch",
            "8",
            "--steps",
            "1",
            "--out",
        ])
        .arg(dir.join("plain"))
        .env("RUST_LOG", "error")
        .output()
        .expect("train");
    assert!(plain.status.success());
    let o = sbi(
        &dir,
        &[
            "sample",
            "--checkpoint",
            "plain",
            "--observation",
            "ok.csv",
            "--n",
            "5",
            "--out",
            "o.csv",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not a simulation-based run"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.join("o.csv").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mix_learned_trains_resumes_and_samples() {
    // The learned weight lives in the checkpoint (`mix_weight`, with its EMA and moments);
    // the run resumes and `sample` loads the network beside it.
    let dir = scratch("mix-learned");
    let mut args = vec![
        "train",
        "--task",
        "galton_board",
        "--loss",
        "mix_learned",
        "--budget",
        "300",
        "--steps",
        "20",
        "--out",
        "run",
    ];
    args.extend(SMALL);
    let first = sbi(&dir, &args);
    assert!(first.status.success(), "{}", stderr(&first));
    let json = std::fs::read_to_string(dir.join("run/checkpoint.json")).expect("record");
    assert!(json.contains("\"loss\": \"mix_learned\""), "{json}");
    let resumed = sbi(
        &dir,
        &["train", "--resume", "--steps", "30", "--out", "run"],
    );
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    std::fs::write(
        dir.join("obs.csv"),
        "x1,x2,x3,x4,x5,x6,x7,x8,x9,x10\n10,11,9,12,10,10,8,13,11,10\n",
    )
    .expect("obs");
    let s = sbi(
        &dir,
        &[
            "sample",
            "--checkpoint",
            "run",
            "--observation",
            "obs.csv",
            "--n",
            "20",
            "--steps",
            "10",
            "--out",
            "post.csv",
        ],
    );
    assert!(s.status.success(), "{}", stderr(&s));
    let post = std::fs::read_to_string(dir.join("post.csv")).expect("post");
    assert!(post.starts_with("theta1,theta2\n"));
    assert_eq!(post.lines().count(), 21);
    let _ = std::fs::remove_dir_all(&dir);
}
