//! Absurd values over every flag of every binary (issue #13): each binary's value-taking
//! flags are read from its own `--help` (so a flag added later is swept too), and each is run
//! with `0, 1, -1, 1e300, nan, inf, 2⁶⁴ − 1, 2³², 10¹² (as an integer and as 1e12)` under
//! `--dry-run` (every check, no work; `likelihood`, which has none, with a missing `--data`
//! file, so that an accepted value stops there). Every run must end by itself, quickly, with status 0
//! (accepted), 1 (an error) or 2 (a refused flag): no signal, no panic, no abort, no hang —
//! and, being dry runs, write nothing. A binary with subcommands (`sbi`) is swept per
//! subcommand, with the flags that subcommand requires given first.
//!
//! The values a dry run accepts are the values a real run accepts: each binary checks its
//! flags, their products and the library's configuration before the dry-run exit.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every binary of the crate.
const BINARIES: &[(&str, &str)] = &[
    ("train", env!("CARGO_BIN_EXE_train")),
    ("sample", env!("CARGO_BIN_EXE_sample")),
    ("fig1_targets", env!("CARGO_BIN_EXE_fig1_targets")),
    (
        "fig2_estimator_variance",
        env!("CARGO_BIN_EXE_fig2_estimator_variance"),
    ),
    ("fig3_weightings", env!("CARGO_BIN_EXE_fig3_weightings")),
    (
        "fig4_loss_distribution",
        env!("CARGO_BIN_EXE_fig4_loss_distribution"),
    ),
    ("fig5_training", env!("CARGO_BIN_EXE_fig5_training")),
    ("dim_variance", env!("CARGO_BIN_EXE_dim_variance")),
    ("bench_mc", env!("CARGO_BIN_EXE_bench_mc")),
    ("bench_snis", env!("CARGO_BIN_EXE_bench_snis")),
    ("bench_train", env!("CARGO_BIN_EXE_bench_train")),
    ("bench_sbi", env!("CARGO_BIN_EXE_bench_sbi")),
    ("bench_likelihood", env!("CARGO_BIN_EXE_bench_likelihood")),
    ("likelihood", env!("CARGO_BIN_EXE_likelihood")),
    ("bench_lie", env!("CARGO_BIN_EXE_bench_lie")),
    ("compare_losses", env!("CARGO_BIN_EXE_compare_losses")),
    ("fig_bridge", env!("CARGO_BIN_EXE_fig_bridge")),
    ("lie_figure", env!("CARGO_BIN_EXE_lie_figure")),
    (
        "ltsm_fig1_variance",
        env!("CARGO_BIN_EXE_ltsm_fig1_variance"),
    ),
    ("ltsm_fig2", env!("CARGO_BIN_EXE_ltsm_fig2")),
    ("ltsm_fig4_weight", env!("CARGO_BIN_EXE_ltsm_fig4_weight")),
    ("ltsm_fig5", env!("CARGO_BIN_EXE_ltsm_fig5")),
];

/// Binaries with subcommands: `(name, binary, arguments before the swept flag)`, the
/// subcommand and the flags it requires (`{root}` is the scratch folder, where
/// `sbi_checkpoint` and `observation.csv` are made).
const SUBCOMMANDS: &[(&str, &str, &[&str])] = &[
    (
        "sbi simulate",
        env!("CARGO_BIN_EXE_sbi"),
        &["simulate", "--task=sir", "--n=10"],
    ),
    ("sbi train", env!("CARGO_BIN_EXE_sbi"), &["train"]),
    (
        "sbi sample",
        env!("CARGO_BIN_EXE_sbi"),
        &[
            "sample",
            "--checkpoint={root}/sbi_checkpoint",
            "--observation={root}/observation.csv",
        ],
    ),
    (
        "sbi reference",
        env!("CARGO_BIN_EXE_sbi"),
        &[
            "reference",
            "--task=linear_gaussian",
            "--observation={root}/observation.csv",
        ],
    ),
    (
        "sbi calibrate --reference",
        env!("CARGO_BIN_EXE_sbi"),
        &["calibrate", "--reference", "--task=linear_gaussian"],
    ),
    (
        "sbi calibrate --checkpoint",
        env!("CARGO_BIN_EXE_sbi"),
        &["calibrate", "--checkpoint={root}/sbi_checkpoint"],
    ),
];

/// Binaries without `--dry-run` whose every accepted run stops at a missing input file
/// (`--data`) before any work: their flags are swept all the same.
const MISSING_INPUT: &[&str] = &["likelihood"];

const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "1e300",
    "nan",
    "inf",
    "18446744073709551615",
    "4294967296",
    "1000000000000",
    "1e12",
];

/// Flags that name files rather than numbers (given a scratch value instead).
const PATH_FLAGS: &[&str] = &[
    "--out",
    "--checkpoint",
    "--data",
    "--observation",
    "--reference",
];

/// A run that takes longer than this is a hang (debug binaries, two busy cores).
const TIMEOUT: Duration = Duration::from_secs(60);

/// The flags of `bin` (after the arguments `pre`, e.g. a subcommand) that take a value, from
/// its `--help`.
fn value_flags(bin: &str, pre: &[String]) -> Vec<String> {
    let help = Command::new(bin)
        .args(pre.iter().take(1))
        .arg("--help")
        .output()
        .expect("--help");
    assert!(help.status.success(), "{bin} --help");
    String::from_utf8_lossy(&help.stdout)
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace().skip_while(|w| !w.starts_with("--"));
            let flag = words.next()?.trim_end_matches(',');
            words
                .next()
                .is_some_and(|w| w.starts_with('<'))
                .then(|| flag.to_owned())
        })
        .collect()
}

struct Case {
    name: &'static str,
    /// Arguments before the rest (a subcommand and its required flags).
    pre: Vec<String>,
    bin: &'static str,
    args: Vec<String>,
}

/// Runs a case; returns its exit status, or a failure description.
fn run(case: &Case) -> Result<i32, String> {
    let start = Instant::now();
    let mut child = Command::new(case.bin)
        .args(&case.pre)
        .args(&case.args)
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{} {:?}: no end after {TIMEOUT:?}",
                case.name, case.args
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    let bad_text = [
        "panicked",
        "memory allocation",
        "stack overflow",
        "RUST_BACKTRACE",
    ]
    .iter()
    .find(|t| stderr.contains(*t));
    match (status.code(), bad_text) {
        (Some(code @ 0..=2), None) => Ok(code),
        (code, _) => Err(format!(
            "{} {:?}: status {code:?} ({status}), stderr: {stderr}",
            case.name, case.args
        )),
    }
}

/// A small finished run for `sample --checkpoint`.
fn checkpoint(dir: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_train"))
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
        .arg(dir)
        .env("RUST_LOG", "error")
        .status()
        .expect("train");
    assert!(status.success());
}

/// A small finished SBI run for `sbi sample --checkpoint`, and an observation for it.
fn sbi_checkpoint(root: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_sbi"))
        .args([
            "train",
            "--budget",
            "50",
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
        .arg(root.join("sbi_checkpoint"))
        .env("RUST_LOG", "error")
        .status()
        .expect("sbi train");
    assert!(status.success());
    std::fs::write(root.join("observation.csv"), "x1,x2,x3,x4\n0.5,0,-1,2\n").expect("obs");
}

#[test]
fn absurd_values_of_every_flag_end_cleanly() {
    let root = std::env::temp_dir().join(format!("tsm-absurd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let ckpt = root.join("checkpoint");
    checkpoint(&ckpt);
    sbi_checkpoint(&root);
    let out: PathBuf = root.join("out");
    let mut cases = Vec::new();
    let root_text = root.display().to_string();
    let all = BINARIES
        .iter()
        .map(|&(name, bin)| (name, bin, Vec::new()))
        .chain(SUBCOMMANDS.iter().map(|&(name, bin, pre)| {
            let pre = pre
                .iter()
                .map(|a| a.replace("{root}", &root_text))
                .collect();
            (name, bin, pre)
        }));
    for (name, bin, pre) in all {
        let flags = value_flags(bin, &pre);
        let dry = !MISSING_INPUT.contains(&name);
        let mut common = Vec::new();
        if dry {
            common.push("--dry-run".to_owned());
        } else {
            common.push(format!("--data={}", root.join("missing.csv").display()));
        }
        if flags.iter().any(|f| f == "--out") {
            let file = name.replace(' ', "_");
            common.push(format!("--out={}", out.join(file).display()));
        }
        if flags.iter().any(|f| f == "--checkpoint") && pre.is_empty() {
            common.push(format!("--checkpoint={}", ckpt.display()));
        }
        // The dry run with defaults is accepted (the binary knows --dry-run).
        let base = Case {
            name,
            pre: pre.clone(),
            bin,
            args: common.clone(),
        };
        let started = Instant::now();
        let ok = Command::new(bin)
            .args(&base.pre)
            .args(&base.args)
            .env("RUST_LOG", "error")
            .output()
            .expect("dry run");
        assert_eq!(
            ok.status.code(),
            Some(if dry { 0 } else { 1 }),
            "{name} {:?}: {}",
            base.args,
            String::from_utf8_lossy(&ok.stderr)
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{name} --dry-run did work"
        );
        for flag in flags.iter().filter(|f| !PATH_FLAGS.contains(&f.as_str())) {
            for value in VALUES {
                let mut args = common.clone();
                args.push(format!("{flag}={value}"));
                cases.push(Case {
                    name,
                    pre: pre.clone(),
                    bin,
                    args,
                });
            }
        }
    }
    let total = cases.len();
    let started = Instant::now();
    let threads = 4;
    let results: Vec<Result<i32, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let cases = &cases;
                s.spawn(move || {
                    cases
                        .iter()
                        .skip(k)
                        .step_by(threads)
                        .map(run)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    let tally = |c: i32| results.iter().filter(|r| **r == Ok(c)).count();
    eprintln!(
        "{total} runs over {} binaries in {:.1} s: {} accepted, {} errors, {} refused flags",
        BINARIES.len() + SUBCOMMANDS.len(),
        started.elapsed().as_secs_f64(),
        tally(0),
        tally(1),
        tally(2)
    );
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{}",
        failures
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(!out.exists(), "a dry run wrote into {}", out.display());
    let _ = std::fs::remove_dir_all(&root);
}
