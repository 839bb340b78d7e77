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
        "reproduce-compare",
        "compare_losses",
        "DSM, TSM, κ̄, ISM and SSM on a 2-D and a 16-D mixture: MMD, score error, NLL, time",
    ),
    (
        "reproduce-ltsm-fig2",
        "ltsm_fig2",
        "Latent TSM Fig. 2: MMD² and C2ST to the reference posterior vs the simulator budget",
    ),
    (
        "reproduce-ltsm-fig1",
        "ltsm_fig1_variance",
        "Latent TSM Fig. 1: variance of the DSM, LTSM and MIX regression targets against t, per SBI task",
    ),
    (
        "reproduce-ltsm-fig4",
        "ltsm_fig4_weight",
        "Latent TSM Fig. 4: the variance-optimal DSM weight w_t* against t, Monte Carlo and closed form",
    ),
    (
        "reproduce-ltsm-fig5",
        "ltsm_fig5",
        "Latent TSM Fig. 5: the learned DSM weight w(t) over w_t*, per SBI task",
    ),
    (
        "reproduce-dim",
        "dim_variance",
        "Estimator variance against t in d dimensions (App. C)",
    ),
    (
        "reproduce-lie",
        "lie_figure",
        "Lie groups: estimator variance against t, DSM/TSM/mix training on the torus and SO(3)",
    ),
    (
        "reproduce-bridge",
        "fig_bridge",
        "Bridges and non-additive noise: identity variance against α, TSM vs DSM training",
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
    (
        "likelihood",
        "likelihood",
        "Log-likelihood of data under a trained checkpoint (see `cargo xtask likelihood --help`)",
    ),
    (
        "sbi",
        "sbi",
        "Simulation-based inference: sbi simulate | train | sample | reference | calibrate (see `cargo xtask sbi --help`)",
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
    "reproduce-bridge",
    "reproduce-lie",
    "reproduce-ltsm-fig4",
    "reproduce-ltsm-fig5",
];

/// Benchmark binaries run by `bench`.
const BENCHES: &[(&str, &str)] = &[
    ("mc", "bench_mc"),
    ("train", "bench_train"),
    ("snis", "bench_snis"),
    ("sbi", "bench_sbi"),
    ("likelihood", "bench_likelihood"),
    ("lie", "bench_lie"),
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
            let (wanted, flags) = split_bench_args(&rest)?;
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

/// Splits `bench`'s arguments into the benchmarks asked for and the arguments for them.
///
/// The names come first (`cargo xtask bench mc snis --repeats 5`): every argument before the
/// first one that starts with `-` (or before a `--`, which is dropped) must name a benchmark;
/// that argument and everything after it go to each benchmark unchanged, values included
/// (`--repeats 5` passes `5` on, it is not a benchmark's name). No name means every benchmark.
///
/// # Errors
/// An unknown benchmark name, listing the valid ones.
fn split_bench_args(args: &[String]) -> Result<(Vec<&'static str>, Vec<String>)> {
    let first_flag = args
        .iter()
        .position(|a| a.starts_with('-'))
        .unwrap_or(args.len());
    let mut wanted = Vec::new();
    for name in &args[..first_flag] {
        match BENCHES.iter().find(|(n, _)| n == name) {
            Some((n, _)) => wanted.push(*n),
            None => {
                let valid: Vec<&str> = BENCHES.iter().map(|(n, _)| *n).collect();
                bail!("unknown benchmark `{name}`; valid: {}", valid.join(", "));
            }
        }
    }
    let flags = match args.get(first_flag).map(String::as_str) {
        Some("--") => args[first_flag + 1..].to_vec(),
        _ => args[first_flag..].to_vec(),
    };
    Ok((wanted, flags))
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
        "  {:<16} Benchmarks: mc, train, snis, sbi, likelihood (default all), then their flags; e.g. `cargo xtask bench mc --repeats 5`",
        "bench"
    );
    println!("\nEnvironment: TSM_FEATURES=cuda (or metal) builds the binaries with that feature.");
}

#[cfg(test)]
mod tests {
    use super::split_bench_args;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn a_flag_value_is_not_a_benchmark_name() {
        // The command of docs/performance.md; it failed with "unknown benchmark `5`".
        let (wanted, flags) = split_bench_args(&args("mc --repeats 5")).expect("valid");
        assert_eq!(wanted, ["mc"]);
        assert_eq!(flags, args("--repeats 5"));
    }

    #[test]
    fn names_come_first_and_flags_go_to_every_benchmark() {
        let (wanted, flags) = split_bench_args(&args("mc snis --quick --repeats 3")).expect("ok");
        assert_eq!(wanted, ["mc", "snis"]);
        assert_eq!(flags, args("--quick --repeats 3"));
        let (wanted, flags) = split_bench_args(&args("--repeats 2")).expect("ok");
        assert!(wanted.is_empty(), "no name: every benchmark");
        assert_eq!(flags, args("--repeats 2"));
        let (wanted, flags) = split_bench_args(&[]).expect("ok");
        assert!(wanted.is_empty() && flags.is_empty());
        let (wanted, flags) = split_bench_args(&args("train -- --repeats 4")).expect("ok");
        assert_eq!(wanted, ["train"]);
        assert_eq!(flags, args("--repeats 4"));
    }

    #[test]
    fn an_unknown_name_lists_the_valid_ones() {
        let err = split_bench_args(&args("mcc --repeats 5")).expect_err("unknown");
        assert!(err.to_string().contains("`mcc`"), "{err}");
        assert!(err.to_string().contains("mc, train, snis"), "{err}");
    }
}
