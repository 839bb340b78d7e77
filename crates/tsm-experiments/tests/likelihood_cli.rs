//! `train` (a few steps) → `likelihood` end to end through the binaries: the output files'
//! format, both estimators, and the bad-input errors (a data file of the wrong dimension,
//! non-finite values, a negative tolerance, an unknown estimator) naming the problem.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh folder per test (the tests run in parallel in one process).
fn scratch(test: &str) -> PathBuf {
    common::scratch_created("tsm-likelihood", test)
}

fn trained(dir: &Path) -> PathBuf {
    let ck = dir.join("ck");
    let out = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["--hidden", "16", "--embedding-dim", "8", "--batch", "32"])
        .args(["--steps", "10", "--out"])
        .arg(&ck)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run train");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ck
}

fn likelihood(ck: &Path, data: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_likelihood"))
        .arg("--checkpoint")
        .arg(ck)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run likelihood")
}

#[test]
fn likelihood_writes_csv_and_json_and_refuses_bad_input() {
    let dir = scratch("cli");
    let ck = trained(&dir);
    let data = dir.join("points.csv");
    std::fs::write(&data, "x1,x2\n0.5,3.9\n-4.0,0.1\n2.8,2.8\n").expect("data");

    for (estimator, extra) in [
        ("exact", vec![]),
        ("hutchinson", vec!["--probes", "4", "--probe", "gaussian"]),
    ] {
        let out = dir.join(estimator);
        let args = [&["--estimator", estimator, "--tol", "1e-4"][..], &extra[..]].concat();
        let run = likelihood(&ck, &data, &out, &args);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(
            stdout.contains("nats") && stdout.contains("bits/dim"),
            "{stdout}"
        );
        let csv = std::fs::read_to_string(out.join("likelihood.csv")).expect("csv");
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some("index,log_p,bits_per_dim,std_error,target_log_p")
        );
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len(), 3);
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row[0], i.to_string());
            let log_p: f64 = row[1].parse().expect("log_p");
            let bpd: f64 = row[2].parse().expect("bpd");
            assert!(log_p.is_finite());
            // bits per dimension = −log p / (d ln 2), d = 2.
            assert!(
                (bpd + log_p / (2.0 * std::f64::consts::LN_2)).abs() < 1e-9 * (1.0 + bpd.abs())
            );
            assert_eq!(
                row[3].is_empty(),
                estimator == "exact",
                "{estimator}: {row:?}"
            );
        }
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("likelihood.json")).expect("json"))
                .expect("parse");
        assert_eq!(json["figure"], "likelihood");
        let p = &json["parameters"];
        assert_eq!(p["points"], 3);
        assert_eq!(p["dim"], 2);
        assert_eq!(p["estimator"], estimator);
        assert!(p["mean_log_p"].as_f64().expect("mean").is_finite());
        assert!(p["mean_log_p_se"].as_f64().expect("se") > 0.0);
        assert!(p["bits_per_dim"].as_f64().expect("bpd").is_finite());
    }

    // Bad input: each error names the flag, the file and the row.
    let bad = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        let run = likelihood(&ck, &path, &dir.join("bad"), &[]);
        assert!(!run.status.success(), "{name} accepted");
        String::from_utf8_lossy(&run.stderr).into_owned()
    };
    let err = bad("three.csv", "x1,x2,x3\n1,2,3\n");
    assert!(
        err.contains("--data") && err.contains("three.csv") && err.contains("dimension 2"),
        "{err}"
    );
    let err = bad("ragged.csv", "x1,x2\n1,2\n3\n");
    assert!(err.contains("ragged.csv") && err.contains("row 2"), "{err}");
    let err = bad("nan.csv", "x1,x2\n1,2\n3,NaN\n");
    assert!(
        err.contains("nan.csv") && err.contains("row 2") && err.contains("not finite"),
        "{err}"
    );
    let err = bad("inf.csv", "x1,x2\ninf,2\n");
    assert!(err.contains("row 1") && err.contains("not finite"), "{err}");
    let err = bad("text.csv", "x1,x2\n1,abc\n");
    assert!(
        err.contains("row 1") && err.contains("not a number"),
        "{err}"
    );
    let err = bad("empty.csv", "x1,x2\n");
    assert!(err.contains("no data rows"), "{err}");

    let run = likelihood(&ck, &data, &dir.join("bad"), &["--tol=-1e-5"]);
    assert_eq!(run.status.code(), Some(2));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("--tol"), "{err}");
    let run = likelihood(&ck, &data, &dir.join("bad"), &["--estimator", "trace"]);
    assert_eq!(run.status.code(), Some(2));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("exact") && err.contains("hutchinson"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
