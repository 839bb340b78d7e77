//! `cargo xtask <command>`: the project's task runner (rust-analyzer's xtask convention).
//!
//! Every figure, the training CLI and the benchmarks are binaries of `tsm-experiments`; xtask
//! builds them in release mode and runs them with the remaining arguments, so that
//! `cargo xtask reproduce-fig2 --quick --out /tmp/f2` is
//! `cargo run --release -p tsm-experiments --bin fig2_estimator_variance -- --quick --out /tmp/f2`.
//! Run `cargo xtask help` for the list.

use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

/// `(command, binary, what it does)`.
const TASKS: &[(&str, &str, &str)] = &[
    (
        "reproduce-fig1",
        "fig1_targets",
        "Fig. 1: the four 1-D targets and κ_t, κ̄_t",
    ),
    (
        "reproduce-fig2",
        "fig2_estimator_variance",
        "Fig. 2: variance of the Monte Carlo score estimators",
    ),
    (
        "reproduce-fig3",
        "fig3_weightings",
        "Fig. 3: the four time weightings",
    ),
    (
        "reproduce-fig4",
        "fig4_loss_distribution",
        "Fig. 4: distribution of the loss at the true score",
    ),
    (
        "reproduce-fig5",
        "fig5_training",
        "Fig. 5: training DSM/TSM/κ/κ̄ on the 2-D eight-mode mixture",
    ),
    (
        "reproduce-dim",
        "dim_variance",
        "Estimator variance against t in d dimensions (App. C)",
    ),
    (
        "train",
        "train",
        "Train a score network (see `cargo xtask train --help`)",
    ),
    (
        "sample",
        "sample",
        "Sample from a trained checkpoint (see `cargo xtask sample --help`)",
    ),
];

/// Figures run by `reproduce-all`, in order.
const ALL_FIGURES: &[&str] = &[
    "reproduce-fig1",
    "reproduce-fig2",
    "reproduce-fig3",
    "reproduce-fig4",
    "reproduce-fig5",
    "reproduce-dim",
];

/// Benchmark binaries run by `bench`.
const BENCHES: &[(&str, &str)] = &[
    ("mc", "bench_mc"),
    ("train", "bench_train"),
    ("snis", "bench_snis"),
];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(command) = args.next() else {
        print_help();
        return Ok(());
    };
    let rest: Vec<String> = args.collect();
    match command.as_str() {
        "help" | "--help" | "-h" => {
            print_help();
            Ok(())
        }
        "reproduce-all" => {
            for figure in ALL_FIGURES {
                let (_, bin, _) = task(figure).context("reproduce-all lists a known task")?;
                run_bin(bin, &rest)?;
            }
            Ok(())
        }
        "bench" => {
            let wanted: Vec<&str> = rest
                .iter()
                .filter(|a| !a.starts_with('-'))
                .map(String::as_str)
                .collect();
            let flags: Vec<String> = rest
                .iter()
                .filter(|a| a.starts_with('-'))
                .cloned()
                .collect();
            for name in &wanted {
                if !BENCHES.iter().any(|(n, _)| n == name) {
                    let valid: Vec<&str> = BENCHES.iter().map(|(n, _)| *n).collect();
                    bail!("unknown benchmark `{name}`; valid: {}", valid.join(", "));
                }
            }
            for (name, bin) in BENCHES {
                if wanted.is_empty() || wanted.contains(name) {
                    run_bin(bin, &flags)?;
                }
            }
            Ok(())
        }
        other => match task(other) {
            Some((_, bin, _)) => run_bin(bin, &rest),
            None => {
                print_help();
                bail!("unknown command `{other}`")
            }
        },
    }
}

fn task(command: &str) -> Option<&'static (&'static str, &'static str, &'static str)> {
    TASKS.iter().find(|(c, _, _)| *c == command)
}

fn run_bin(bin: &str, args: &[String]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(project_root()).args([
        "run",
        "--quiet",
        "--release",
        "--package",
        "tsm-experiments",
        "--bin",
        bin,
    ]);
    if let Ok(features) = std::env::var("TSM_FEATURES") {
        cmd.args(["--features", &features]);
    }
    cmd.arg("--").args(args);
    let status = cmd
        .status()
        .with_context(|| format!("could not start cargo for `{bin}`"))?;
    if !status.success() {
        bail!("`{bin}` failed ({status})");
    }
    Ok(())
}

fn project_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| ".".into())
}

fn print_help() {
    println!("Usage: cargo xtask <command> [args...]\n");
    println!("Commands (arguments after the command go to the binary; try `<command> --help`):");
    for (command, bin, what) in TASKS {
        println!("  {command:<16} {what}  [bin: {bin}]");
    }
    println!(
        "  {:<16} Every figure above, in order (same arguments to each)",
        "reproduce-all"
    );
    println!(
        "  {:<16} Benchmarks: mc, train, snis (default all); e.g. `cargo xtask bench mc`",
        "bench"
    );
    println!("\nEnvironment: TSM_FEATURES=cuda (or metal) builds the binaries with that feature.");
}
